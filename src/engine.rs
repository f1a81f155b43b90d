//! The embedding API: [`Engine`] runs SQL, [`Job`] is a running continuous query,
//! [`Subscription`] streams a query's output batches to the application, and [`PushHandle`]
//! feeds a `'connector' = 'push'` table from the application.
//!
//! ```no_run
//! # async fn demo() -> weir::Result<()> {
//! use futures::StreamExt;
//! let engine = weir::Engine::new();
//! engine.execute("CREATE TABLE bid (auction BIGINT, price BIGINT, date_time TIMESTAMP(3),
//!     WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
//!     WITH ('connector' = 'nexmark', 'nexmark.events' = '100000')").await?;
//! let mut rows = engine.subscribe("SELECT window_start, COUNT(*) AS bids
//!     FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
//!     GROUP BY window_start, window_end").await?;
//! while let Some(batch) = rows.next().await {
//!     println!("{} rows", batch?.num_rows());
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, StringArray, new_null_array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};

use crate::connectors::print::TablePrinter;
use crate::connectors::push::{ChannelSink, PushRegistry, conform};
use crate::connectors::{Sink, SourceEnv, open_sink, open_source};
use crate::planner::{Pipeline, Planner};
use crate::runtime::metrics::format_time;
use crate::runtime::{JobMetrics, OpenSource, Outcome, RunContext};
use crate::sql::interval::parse_duration_option;
use crate::sql::types::display_type;
use crate::sql::{Catalog, Located, Statement, parse_sql};
use crate::{Error, Result, plan_err};

/// What a statement produced.
pub enum StatementOutput {
    /// DDL and SET: a confirmation.
    Done(String),
    /// SHOW TABLES, DESCRIBE: a small result table.
    Rows(RecordBatch),
    /// EXPLAIN: the dataflow graph.
    Explain(String),
    /// A continuous query or INSERT that is now running.
    Job(Job),
    /// Something the user must see although no job started (a job whose checkpoints say it
    /// had already finished).
    Notice(String),
}

impl fmt::Debug for StatementOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Done(s) => write!(f, "Done({s})"),
            Self::Rows(b) => write!(f, "Rows({} rows)", b.num_rows()),
            Self::Explain(s) => write!(f, "Explain({s})"),
            Self::Job(j) => write!(f, "Job({})", j.name),
            Self::Notice(s) => write!(f, "Notice({s})"),
        }
    }
}

/// Where the rows of a bare SELECT go when run by [`Engine::execute_with`].
#[derive(Clone)]
pub enum SelectOutput {
    /// Aligned tables on stdout, one per emitted batch.
    Print,
    /// Discard (benchmarks).
    Discard,
    /// Into a channel.
    Channel(mpsc::Sender<Result<RecordBatch>>),
}

/// Final figures of a job.
#[derive(Debug, Clone)]
pub struct JobSummary {
    /// Finished (bounded input done) or stopped.
    pub outcome: Outcome,
    /// Wall time.
    pub elapsed: Duration,
    /// Rows read from sources.
    pub events_in: u64,
    /// Rows written out.
    pub rows_out: u64,
    /// Rows dropped (or routed) as late.
    pub late_rows: u64,
    /// Malformed records skipped.
    pub malformed: u64,
    /// Events read before the checkpoint this run was restored from (0 for a fresh run).
    pub events_before: u64,
    /// The last completed checkpoint (0: none), its duration, size and alignment time.
    pub checkpoint: (u64, Duration, u64, Duration),
    /// How long restoring from a checkpoint took (reading it, loading operators' state).
    pub restore: Duration,
}

impl fmt::Display for JobSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "{}: {} events in {:.2} s ({:.0} events/s), {} rows out, {} late rows, {} malformed records skipped",
            match self.outcome {
                Outcome::Finished => "finished",
                Outcome::Stopped => "stopped",
            },
            self.events_in,
            secs,
            self.events_in as f64 / secs,
            self.rows_out,
            self.late_rows,
            self.malformed
        )?;
        if self.events_before > 0 {
            write!(
                f,
                " ({} more were read before the checkpoint it resumed from)",
                self.events_before
            )?;
        }
        let (epoch, took, bytes, aligned) = self.checkpoint;
        if epoch > 0 {
            write!(
                f,
                "; last checkpoint {epoch}: {} ms, {} KiB, alignment {} ms",
                took.as_millis(),
                bytes / 1024,
                aligned.as_millis()
            )?;
        }
        if !self.restore.is_zero() {
            write!(f, "; restore took {} ms", self.restore.as_millis())?;
        }
        Ok(())
    }
}

/// A running continuous query.
pub struct Job {
    /// The statement, shortened.
    pub name: String,
    /// The job's identity: `'pipeline.name'`, else its sink table (`#2`, `#3` for further
    /// INSERTs into it), else `select-<n>`. Checkpoints are kept under it.
    pub identity: String,
    metrics: Arc<JobMetrics>,
    cancel: watch::Sender<bool>,
    drain: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    checkpoint_now: mpsc::Sender<tokio::sync::oneshot::Sender<Result<u64>>>,
    checkpointing: bool,
    /// Rows of each push table the restored checkpoint covers.
    push_positions: HashMap<String, u64>,
    handle: tokio::task::JoinHandle<Result<Outcome>>,
}

impl Job {
    /// Live counters.
    pub fn metrics(&self) -> &Arc<JobMetrics> {
        &self.metrics
    }

    /// Stop at once: open windows are not fired. Without checkpoints the sinks flush what
    /// they have; with checkpoints, output no checkpoint covers is discarded and a restart
    /// resumes from the last checkpoint.
    pub fn cancel(&self) {
        let _ = self.cancel.send(true);
    }

    /// Stop with a final checkpoint (with checkpointing on; else the same as
    /// [`Job::cancel`]): the sources stop after a last barrier, its checkpoint is committed
    /// and published, so a restart continues exactly where this run stopped.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// A handle that can stop the job with a final checkpoint from elsewhere.
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }

    /// Whether the job checkpoints.
    pub fn is_checkpointing(&self) -> bool {
        self.checkpointing
    }

    /// For a job restored from a checkpoint: how many rows of push table `table` the
    /// checkpoint covers, so the application pushes again from that row on (0 for a fresh
    /// job, or a table the job does not read).
    pub fn resume_position(&self, table: &str) -> u64 {
        self.push_positions
            .get(&table.to_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// Take a checkpoint now and wait until it is committed; returns its epoch.
    pub async fn checkpoint(&self) -> Result<u64> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.checkpoint_now
            .send(tx)
            .await
            .map_err(|_| Error::Execution {
                operator: "job".into(),
                message: "the job has ended".into(),
            })?;
        rx.await.map_err(|_| Error::Execution {
            operator: "job".into(),
            message: "the job ended before the checkpoint completed".into(),
        })?
    }

    /// Stop *with drain* (Flink's `stop --drain`): the sources stop reading and end as if
    /// their input had ended, so every open window fires and the sinks get complete results;
    /// [`Job::wait`] then reports the job finished. For unbounded sources (Kinesis, Kafka).
    pub fn drain(&self) {
        let _ = self.drain.send(true);
    }

    /// A handle that can drain the job from elsewhere (see [`Job::drain`]).
    pub fn drainer(&self) -> watch::Sender<bool> {
        self.drain.clone()
    }

    /// Whether the job has ended (finished, stopped or failed); [`Job::wait`] tells which.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// A handle that can stop the job from elsewhere.
    pub fn canceller(&self) -> watch::Sender<bool> {
        self.cancel.clone()
    }

    /// Wait for the job to end.
    pub async fn wait(self) -> Result<JobSummary> {
        let outcome = self.handle.await.map_err(|e| Error::Execution {
            operator: "job".into(),
            message: format!("job task failed: {e}"),
        })??;
        Ok(summary(&self.metrics, outcome))
    }
}

fn summary(m: &JobMetrics, outcome: Outcome) -> JobSummary {
    JobSummary {
        outcome,
        elapsed: m.started.elapsed(),
        events_in: JobMetrics::get(&m.events_in),
        rows_out: JobMetrics::get(&m.rows_out),
        late_rows: JobMetrics::get(&m.late_rows),
        malformed: JobMetrics::get(&m.malformed),
        events_before: JobMetrics::get(&m.events_before),
        checkpoint: (
            JobMetrics::get(&m.checkpoint_epoch),
            Duration::from_millis(JobMetrics::get(&m.checkpoint_ms)),
            JobMetrics::get(&m.checkpoint_bytes),
            Duration::from_millis(JobMetrics::get(&m.alignment_ms)),
        ),
        restore: Duration::from_millis(JobMetrics::get(&m.restore_ms)),
    }
}

/// A query's output as an async stream of batches. Ends when the (bounded) query finishes;
/// a failure of the job arrives as the last item. Dropping it stops the job.
pub struct Subscription {
    rx: mpsc::Receiver<Result<RecordBatch>>,
    schema: SchemaRef,
    job: Option<Job>,
}

impl Subscription {
    /// Schema of the batches.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The job behind the stream.
    pub fn job(&self) -> Option<&Job> {
        self.job.as_ref()
    }
}

impl futures::Stream for Subscription {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(job) = &self.job {
            job.cancel();
        }
    }
}

/// Feeds a `'connector' = 'push'` table.
#[derive(Clone)]
pub struct PushHandle {
    table: String,
    schema: SchemaRef,
    registry: PushRegistry,
}

impl PushHandle {
    /// Send a batch to every query reading the table. Columns are matched by name and cast to
    /// the declared types; watermarks follow the table's WATERMARK declaration.
    pub async fn push(&self, batch: RecordBatch) -> Result<()> {
        let batch = conform(&batch, &self.schema)?;
        self.registry.push(&self.table, batch).await
    }

    /// End the table's stream: queries reading it see the end of a bounded input.
    pub fn close(&self) -> Result<()> {
        self.registry.close(&self.table)
    }

    /// The table's schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// A weir engine: a catalog, settings, and the jobs it starts.
#[derive(Clone, Default)]
pub struct Engine {
    catalog: Arc<Mutex<Catalog>>,
    push: PushRegistry,
    names: Arc<Mutex<JobNames>>,
    /// The http tables, under `weir serve`.
    http: Arc<std::sync::OnceLock<Arc<crate::connectors::http::HttpHub>>>,
}

/// How the jobs of an engine are named (see [`Job::identity`]).
#[derive(Default)]
struct JobNames {
    /// INSERTs started per sink (for `#2`, `#3`).
    per_sink: HashMap<String, usize>,
    /// Bare SELECTs started.
    selects: usize,
    /// Identities in use.
    used: std::collections::HashSet<String>,
}

/// What a job had already done, found in its checkpoints.
// Made once per job start.
#[allow(clippy::large_enum_variant)]
enum Prior {
    /// Nothing to resume, or a checkpoint to resume from.
    Run(Option<crate::runtime::checkpoint::Checkpointing>),
    /// Its bounded input had ended at checkpoint n.
    Finished(u64),
}

/// `e` with the position of `stmt` added (unless it names one).
pub(crate) fn located_error(e: Error, stmt: &Located) -> Error {
    located(e, stmt)
}

fn located(e: Error, stmt: &Located) -> Error {
    let add = |m: String| {
        if m.contains("Line:") {
            m
        } else {
            format!("{m}{}", stmt.position())
        }
    };
    match e {
        Error::Plan(m) => Error::Plan(add(m)),
        Error::NotSupported(m) => Error::NotSupported(add(m)),
        Error::DataFusion { context, source } => Error::Plan(add(format!("{context}: {source}"))),
        Error::Arrow { context, source } => Error::Plan(add(format!("{context}: {source}"))),
        other => other,
    }
}

impl Engine {
    /// An engine with an empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve http tables from `hub` (what `weir serve` does; elsewhere they are refused).
    pub(crate) fn serve_http(&self, hub: Arc<crate::connectors::http::HttpHub>) -> Result<()> {
        self.http.set(hub).map_err(|_| Error::Execution {
            operator: "engine".into(),
            message: "http tables are already served".into(),
        })
    }

    /// One table of the catalog (a copy), without copying the whole catalog.
    pub(crate) fn table(&self, name: &str) -> Result<crate::sql::catalog::Table> {
        self.lock()?.table(name).cloned()
    }

    /// A scratch engine over a copy of this one's catalog (to plan without starting).
    pub(crate) fn scratch(&self) -> Result<Engine> {
        let e = Engine::new();
        *e.lock()? = self.catalog()?;
        Ok(e)
    }

    /// The session settings (`weir serve` gives each submitted file its own SETs).
    pub(crate) fn settings(&self) -> Result<std::collections::BTreeMap<String, String>> {
        Ok(self.lock()?.settings.clone())
    }

    /// Put back settings taken with [`Engine::settings`].
    pub(crate) fn restore_settings(
        &self,
        settings: std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        self.lock()?.settings = settings;
        Ok(())
    }

    /// A stopped job's identity may be used again (a job submitted again resumes its
    /// checkpoints under the same name).
    pub(crate) fn release_identity(&self, identity: &str) -> Result<()> {
        let mut names = self.names.lock().map_err(|_| Error::Execution {
            operator: "engine".into(),
            message: "job names lock poisoned".into(),
        })?;
        names.used.remove(identity);
        let (base, n) = match identity.rsplit_once('#') {
            Some((b, n)) => (b, n.parse::<usize>().unwrap_or(0)),
            None => (identity, 1),
        };
        if let Some(count) = names.per_sink.get_mut(base)
            && *count == n
        {
            *count -= 1;
        }
        Ok(())
    }

    /// The sink for `table`: http tables are served by the hub, others opened as usual.
    fn open_sink(
        &self,
        table: &crate::sql::catalog::Table,
        schema: SchemaRef,
    ) -> Result<Box<dyn Sink>> {
        match (table.connector(), self.http.get()) {
            ("http", Some(hub)) => hub.open_sink(table, schema),
            _ => open_sink(table, schema),
        }
    }

    /// Register a user-defined scalar function (a vectorised DataFusion UDF: arrays in, an
    /// array out), usable in every query planned afterwards, computed columns included. It
    /// replaces a built-in function of the same name.
    pub fn register_udf(&self, udf: datafusion::logical_expr::ScalarUDF) -> Result<()> {
        let mut c = self.lock()?;
        c.udfs.retain(|f| f.name() != udf.name());
        c.udfs.push(udf);
        Ok(())
    }

    /// Register a user-defined aggregate function (a DataFusion `AggregateUDF`), usable in
    /// every query planned afterwards, window and OVER aggregates included. Its accumulator's
    /// `state()` / `merge_batch` are what checkpoints store.
    pub fn register_udaf(&self, udaf: datafusion::logical_expr::AggregateUDF) -> Result<()> {
        let mut c = self.lock()?;
        c.udafs.retain(|f| f.name() != udaf.name());
        c.udafs.push(udaf);
        Ok(())
    }

    /// A snapshot of the catalog.
    pub fn catalog(&self) -> Result<Catalog> {
        Ok(self.lock()?.clone())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Catalog>> {
        self.catalog.lock().map_err(|_| Error::Execution {
            operator: "engine".into(),
            message: "catalog lock poisoned".into(),
        })
    }

    /// Run every statement of `sql`; the rows of a bare SELECT are printed as tables.
    pub async fn execute(&self, sql: &str) -> Result<Vec<StatementOutput>> {
        self.execute_with(sql, SelectOutput::Print).await
    }

    /// Run every statement of `sql`, sending the rows of bare SELECTs to `output`.
    pub async fn execute_with(
        &self,
        sql: &str,
        output: SelectOutput,
    ) -> Result<Vec<StatementOutput>> {
        let mut out = Vec::new();
        for stmt in parse_sql(sql)? {
            out.push(self.run_located(&stmt, output.clone()).await?);
        }
        Ok(out)
    }

    /// Run one parsed statement; errors name the statement's position.
    pub async fn run_located(
        &self,
        stmt: &Located,
        output: SelectOutput,
    ) -> Result<StatementOutput> {
        self.run_statement(stmt, output)
            .await
            .map_err(|e| located(e, stmt))
    }

    /// Start one SELECT and stream its output.
    pub async fn subscribe(&self, sql: &str) -> Result<Subscription> {
        let stmts = parse_sql(sql)?;
        let [stmt] = stmts.as_slice() else {
            return plan_err!(
                "subscribe takes exactly one SELECT statement, got {}",
                stmts.len()
            );
        };
        let Statement::Query(_) = &stmt.statement else {
            return plan_err!("subscribe takes a SELECT statement{}", stmt.position());
        };
        let (tx, rx) = mpsc::channel(16);
        let pipeline = self.plan(stmt).await.map_err(|e| located(e, stmt))?;
        let schema = pipeline.schema.clone();
        let sink = Box::new(ChannelSink { tx: tx.clone() });
        let identity = self.identity(None)?;
        let job = match self
            .start(pipeline, sink, Some(tx), short_name(stmt), identity)
            .await
            .map_err(|e| located(e, stmt))?
        {
            StatementOutput::Job(j) => j,
            _ => {
                return plan_err!(
                    "this query had already finished (its checkpoints say so): nothing to \
                     subscribe to"
                );
            }
        };
        Ok(Subscription {
            rx,
            schema,
            job: Some(job),
        })
    }

    /// A handle to push batches into a `'connector' = 'push'` table.
    pub fn push_handle(&self, table: &str) -> Result<PushHandle> {
        let catalog = self.lock()?;
        let t = catalog
            .table(&table.to_lowercase())
            .or_else(|_| catalog.table(table))?;
        if t.connector() != "push" {
            return plan_err!(
                "table {table} uses connector '{}', not 'push'",
                t.connector()
            );
        }
        Ok(PushHandle {
            table: t.def.name.clone(),
            schema: t.physical.clone(),
            registry: self.push.clone(),
        })
    }

    /// Plan a query or INSERT.
    pub async fn plan(&self, stmt: &Located) -> Result<Pipeline> {
        let catalog = self.catalog()?;
        let mut planner = Planner::new(&catalog)?;
        planner.plan(&stmt.statement).await
    }

    async fn run_statement(&self, stmt: &Located, output: SelectOutput) -> Result<StatementOutput> {
        match &stmt.statement {
            Statement::CreateTable(def) => {
                let name = def.name.clone();
                let (exprs, fields) = if def.computed.is_empty() {
                    (vec![], vec![])
                } else {
                    let catalog = self.catalog()?;
                    crate::planner::computed_columns(def, &catalog).await?
                };
                let created = self.lock()?.create_table_with(def.clone(), fields, exprs)?;
                Ok(StatementOutput::Done(if created {
                    format!("Table {name} created.")
                } else {
                    format!("Table {name} exists.")
                }))
            }
            Statement::CreateView(def) => {
                // Plan the view's query now so that mistakes surface at CREATE VIEW.
                let mut probe = self.catalog()?;
                probe.create_view(def.clone())?;
                let mut planner = Planner::new(&probe)?;
                let select = Statement::Query(crate::planner::rewrite::select_all_from(&def.name)?);
                if let Err(e) = planner.plan(&select).await {
                    return Err(match e {
                        Error::Plan(m) => Error::Plan(format!("in view {}: {m}", def.name)),
                        Error::NotSupported(m) => {
                            Error::NotSupported(format!("{m} (in view {})", def.name))
                        }
                        other => other,
                    });
                }
                let created = self.lock()?.create_view(def.clone())?;
                Ok(StatementOutput::Done(if created {
                    format!("View {} created.", def.name)
                } else {
                    format!("View {} exists.", def.name)
                }))
            }
            Statement::Drop {
                name,
                if_exists,
                view,
            } => {
                self.lock()?.drop_object(name, *view, *if_exists)?;
                Ok(StatementOutput::Done(format!(
                    "{} {name} dropped.",
                    if *view { "View" } else { "Table" }
                )))
            }
            Statement::Set { key: None, .. } => {
                let c = self.lock()?;
                let keys: Vec<String> = c.settings.keys().cloned().collect();
                let values: Vec<String> = c.settings.values().cloned().collect();
                Ok(StatementOutput::Rows(two_columns(
                    ("key", keys),
                    ("value", values),
                )?))
            }
            Statement::Set {
                key: Some(k),
                value,
            } => {
                crate::settings::validate(k, value)?;
                self.lock()?.settings.insert(k.clone(), value.clone());
                Ok(StatementOutput::Done(format!("Set {k} = {value}.")))
            }
            Statement::Reset(key) => {
                let mut c = self.lock()?;
                match key {
                    Some(k) => {
                        c.settings.remove(k);
                    }
                    None => c.settings.clear(),
                }
                Ok(StatementOutput::Done("Reset.".into()))
            }
            Statement::ShowTables | Statement::ShowViews => {
                let c = self.lock()?;
                let names: Vec<String> = if matches!(stmt.statement, Statement::ShowTables) {
                    c.tables.keys().cloned().collect()
                } else {
                    c.views.keys().cloned().collect()
                };
                let batch = RecordBatch::try_new(
                    Arc::new(Schema::new(vec![Field::new("name", DataType::Utf8, false)])),
                    vec![Arc::new(StringArray::from(names)) as ArrayRef],
                )?;
                Ok(StatementOutput::Rows(batch))
            }
            Statement::Describe(name) => self.describe(name).await,
            Statement::Explain(inner) => {
                let inner = Located {
                    statement: inner.as_ref().clone(),
                    line: stmt.line,
                    column: stmt.column,
                    set: vec![],
                };
                Ok(StatementOutput::Explain(self.plan(&inner).await?.explain()))
            }
            Statement::Query(_) => {
                let pipeline = self.plan(stmt).await?;
                let (sink, tx): (Box<dyn Sink>, _) = match output {
                    SelectOutput::Print => (Box::new(TablePrinter), None),
                    SelectOutput::Discard => {
                        (Box::new(crate::connectors::blackhole::BlackholeSink), None)
                    }
                    SelectOutput::Channel(tx) => {
                        (Box::new(ChannelSink { tx: tx.clone() }), Some(tx))
                    }
                };
                let identity = self.identity(None)?;
                self.start(pipeline, sink, tx, short_name(stmt), identity)
                    .await
            }
            Statement::Insert { .. } if !stmt.set.is_empty() => self.start_set(stmt).await,
            Statement::Insert { .. } => {
                let pipeline = self.plan(stmt).await?;
                let Some(table) = pipeline.sink.clone() else {
                    return plan_err!("INSERT without a target");
                };
                if pipeline.updating {
                    crate::connectors::check_accepts_changelog(&table)?;
                }
                let sink = self.open_sink(&table, pipeline.schema.clone())?;
                let identity = self.identity(Some(&table.def.name))?;
                self.start(pipeline, sink, None, short_name(stmt), identity)
                    .await
            }
        }
    }

    /// A statement set: its INSERTs planned one by one, then run as one job whose sink
    /// writes each INSERT's rows to its table ([`crate::connectors::FanOutSink`]). INSERTs
    /// into one table share its sink. The job is named after its tables, sorted.
    async fn start_set(&self, stmt: &Located) -> Result<StatementOutput> {
        let mut first = stmt.clone();
        let rest = std::mem::take(&mut first.set);
        let mut pipelines = vec![];
        for s in std::iter::once(&first).chain(&rest) {
            pipelines.push(self.plan(s).await.map_err(|e| located(e, s))?);
        }
        // One sink per table, in order of first appearance; each INSERT feeds its table's.
        let mut tables: Vec<(crate::sql::catalog::Table, bool)> = vec![];
        let mut ports = vec![];
        for p in &pipelines {
            let Some(table) = p.sink.clone() else {
                return plan_err!("INSERT without a target");
            };
            let port = match tables
                .iter()
                .position(|(t, _)| t.def.name == table.def.name)
            {
                Some(i) => {
                    if tables[i].1 != p.updating {
                        return crate::not_supported!(
                            "a statement set writing both updating and append-only rows into table {}",
                            table.def.name
                        );
                    }
                    i
                }
                None => {
                    if p.updating {
                        crate::connectors::check_accepts_changelog(&table)?;
                    }
                    tables.push((table, p.updating));
                    tables.len() - 1
                }
            };
            ports.push(port);
        }
        let mut sinks = vec![];
        for (table, _) in &tables {
            // The rows of the first INSERT into the table (every INSERT conforms to it).
            let port = sinks.len();
            let Some(first) = ports.iter().position(|p| *p == port) else {
                return plan_err!("internal: no INSERT into table {}", table.def.name);
            };
            sinks.push(self.open_sink(table, pipelines[first].schema.clone())?);
        }
        let mut names: Vec<String> = tables.iter().map(|(t, _)| t.def.name.clone()).collect();
        names.sort();
        let identity = self.identity(Some(&names.join(",")))?;
        let mut pipelines = pipelines.into_iter();
        let Some(mut job) = pipelines.next() else {
            return plan_err!("an empty statement set");
        };
        for (p, port) in pipelines.zip(ports.iter().skip(1)) {
            if p.parallelism != job.parallelism {
                return plan_err!("the INSERTs of a statement set run at one parallelism");
            }
            job.also.push((*port, p.root));
        }
        let sink: Box<dyn Sink> = if sinks.len() == 1 {
            sinks.remove(0)
        } else {
            Box::new(crate::connectors::FanOutSink::new(sinks))
        };
        let name = format!("STATEMENT SET ({})", names.join(", "));
        self.start(job, sink, None, name, identity).await
    }

    async fn describe(&self, name: &str) -> Result<StatementOutput> {
        let c = self.catalog()?;
        let (schema, wm, pk) = match c.tables.get(name) {
            Some(t) => (
                t.schema.clone(),
                t.def.watermark.clone(),
                t.def.primary_key.clone(),
            ),
            None if c.views.contains_key(name) => {
                let mut planner = Planner::new(&c)?;
                let p = planner
                    .plan(&Statement::Query(crate::planner::rewrite::select_all_from(
                        name,
                    )?))
                    .await?;
                (p.schema, None, vec![])
            }
            None => return plan_err!("table or view {name} does not exist"),
        };
        let mut cols: [Vec<String>; 5] = Default::default();
        for f in schema.fields() {
            cols[0].push(f.name().clone());
            let mut t = display_type(f.data_type());
            if wm.as_ref().is_some_and(|w| &w.column == f.name()) {
                t.push_str(" *ROWTIME*");
            }
            cols[1].push(t);
            cols[2].push(if f.is_nullable() { "TRUE" } else { "FALSE" }.into());
            cols[3].push(if pk.contains(f.name()) {
                "PRI".into()
            } else {
                String::new()
            });
            cols[4].push(match &wm {
                Some(w) if &w.column == f.name() => format!(
                    "`{0}` - INTERVAL '{1}' SECOND",
                    w.column,
                    w.delay_ms as f64 / 1000.0
                ),
                _ => String::new(),
            });
        }
        let names = ["name", "type", "null", "key", "watermark"];
        let fields: Vec<Field> = names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, false))
            .collect();
        let arrays: Vec<ArrayRef> = cols
            .into_iter()
            .map(|c| Arc::new(StringArray::from(c)) as ArrayRef)
            .collect();
        Ok(StatementOutput::Rows(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            arrays,
        )?))
    }

    /// The identity of the next job: `'pipeline.name'` (which applies to this job only),
    /// else its sink table with `#2`, `#3` for further INSERTs into it, else `select-<n>`.
    fn identity(&self, sink: Option<&str>) -> Result<String> {
        let given = self.lock()?.settings.remove("pipeline.name");
        let mut names = self.names.lock().map_err(|_| Error::Execution {
            operator: "engine".into(),
            message: "job names lock poisoned".into(),
        })?;
        let identity = match (given, sink) {
            (Some(n), _) => {
                if names.used.contains(&n) {
                    return plan_err!(
                        "two jobs are named '{n}' ('pipeline.name'): a job's name decides which \
                         checkpoints are its own, so each job needs its own"
                    );
                }
                n
            }
            (None, Some(t)) => {
                let n = names.per_sink.entry(t.to_string()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    t.to_string()
                } else {
                    format!("{t}#{n}")
                }
            }
            (None, None) => {
                names.selects += 1;
                format!("select-{}", names.selects)
            }
        };
        names.used.insert(identity.clone());
        Ok(identity)
    }

    async fn start(
        &self,
        pipeline: Pipeline,
        mut sink: Box<dyn Sink>,
        errors: Option<mpsc::Sender<Result<RecordBatch>>>,
        name: String,
        identity: String,
    ) -> Result<StatementOutput> {
        let catalog = self.catalog()?;
        let checkpointing = match self
            .prior_run(&catalog, &pipeline, &mut sink, &identity)
            .await?
        {
            Prior::Run(c) => c,
            Prior::Finished(n) => {
                let msg = format!("{identity} already finished (checkpoint {n}): nothing to do");
                eprintln!("{msg}");
                return Ok(StatementOutput::Notice(msg));
            }
        };
        let mut metrics = JobMetrics::default();
        // `weir bench` asks for watermark traces (for latency figures).
        if catalog
            .settings
            .get("weir.trace-latency")
            .is_some_and(|v| v == "true")
        {
            metrics.trace = Some(Default::default());
        }
        let metrics = Arc::new(metrics);
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let (drain_tx, drain_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (now_tx, now_rx) = mpsc::channel(4);
        let env = SourceEnv {
            metrics: metrics.clone(),
            push: self.push.clone(),
            parallelism: pipeline.parallelism,
            checkpointing: checkpointing.is_some(),
            restored: checkpointing
                .as_ref()
                .and_then(|c| c.restored.as_ref())
                .map(|r| Arc::new(r.sources.clone())),
            http: self.http.get().cloned(),
        };
        let default_idle = catalog
            .settings
            .get("table.exec.source.idle-timeout")
            .cloned();
        let mut sources = vec![];
        let mut late_sink = None;
        // A table scanned by several branches (a self-join, a statement set) is read once.
        for table in pipeline.sources() {
            let idle = table
                .option("scan.watermark.idle-timeout")
                .map(str::to_string)
                .or_else(|| default_idle.clone());
            let idle_timeout = match idle {
                None => None,
                Some(v) => match parse_duration_option(&v) {
                    Some(ms) if ms > 0 => Some(Duration::from_millis(ms as u64)),
                    Some(_) => None,
                    None => {
                        return plan_err!("idle timeout '{v}' is not a duration such as '10 s'");
                    }
                },
            };
            let max_drift_ms = match table.option("scan.watermark.alignment.max-drift") {
                None => None,
                Some(v) => match parse_duration_option(v) {
                    Some(ms) if ms > 0 => Some(ms),
                    _ => {
                        return plan_err!(
                            "'scan.watermark.alignment.max-drift' = '{v}' is not a duration such as '30 s'"
                        );
                    }
                },
            };
            let mut env = env.clone();
            // A restored generator or Kafka source keeps the number of shards (readers) its
            // positions were taken with; the stages after it take the new parallelism.
            let prefix = match table.connector() {
                "nexmark" if table.option("nexmark.shards").is_none() => Some("nexmark:"),
                "kafka" | "upsert-kafka" => Some("kafka topic "),
                "filesystem"
                    if table
                        .option("path")
                        .is_some_and(crate::connectors::object_store::is_object_url) =>
                {
                    Some("s3://")
                }
                _ => None,
            };
            if let Some(n) = prefix.and_then(|p| {
                checkpointing
                    .as_ref()
                    .and_then(|c| c.restored_shards(&table.def.name, p))
            }) {
                env.parallelism = n;
            }
            let shards = open_source(&table, &env)?;
            if checkpointing.is_some() {
                for shard in &shards {
                    shard.check_replayable().map_err(|e| match e {
                        Error::NotSupported(m) => {
                            Error::NotSupported(format!("{m} (table {})", table.def.name))
                        }
                        other => other,
                    })?;
                }
            }
            let idle_advance_ms = if table.connector() == "http"
                && crate::connectors::bool_option(&table, "scan.watermark.idle-advance", false)?
            {
                let Some(wm) = &table.def.watermark else {
                    return plan_err!(
                        "table {}: 'scan.watermark.idle-advance' needs a WATERMARK declaration",
                        table.def.name
                    );
                };
                if idle_timeout.is_none() {
                    return plan_err!(
                        "table {}: 'scan.watermark.idle-advance' needs \
                         'scan.watermark.idle-timeout' (how long without records before the \
                         watermark follows the wall clock)",
                        table.def.name
                    );
                }
                Some(wm.delay_ms)
            } else {
                None
            };
            sources.push(OpenSource {
                name: table.def.name.clone(),
                shards,
                idle_timeout,
                idle_advance_ms,
                max_drift_ms,
            });
            if let (None, Some(t)) = (&late_sink, table.option("late-data.table")) {
                // With checkpoints, late rows are flushed at every barrier: at least once.
                let target = catalog.table(&t.to_lowercase())?.clone();
                let inner = self.open_sink(&target, target.schema.clone())?;
                late_sink = Some(Box::new(ConformingSink {
                    schema: target.schema.clone(),
                    inner,
                }) as Box<dyn Sink>);
            }
        }
        let is_checkpointing = checkpointing.is_some();
        let mut push_positions = HashMap::new();
        if let Some(r) = checkpointing.as_ref().and_then(|c| c.restored.as_ref()) {
            for (key, state) in &r.sources {
                if let Some((table, _)) = key.split_once(":push:")
                    && let Some(rows) = state
                        .get("position")
                        .and_then(|p| p.get("rows"))
                        .and_then(|r| r.as_u64())
                {
                    *push_positions.entry(table.to_string()).or_insert(0) += rows;
                }
            }
        }
        let ctx = RunContext {
            metrics: metrics.clone(),
            cancel: cancel_rx,
            late_sink,
            drain: Some(drain_rx),
        };
        let durability = crate::runtime::Durability {
            stop: Some(stop_rx),
            checkpoint: checkpointing,
            checkpoint_now: Some(now_rx),
        };
        let handle = tokio::spawn(async move {
            let result =
                crate::runtime::run_checkpointed(&pipeline, sources, sink, ctx, durability).await;
            if let (Err(e), Some(tx)) = (&result, errors) {
                let _ = tx
                    .send(Err(Error::Execution {
                        operator: "job".into(),
                        message: e.to_string(),
                    }))
                    .await;
            }
            result
        });
        Ok(StatementOutput::Job(Job {
            name,
            identity,
            metrics,
            cancel: cancel_tx,
            drain: drain_tx,
            stop: stop_tx,
            checkpoint_now: now_tx,
            checkpointing: is_checkpointing,
            push_positions,
            handle,
        }))
    }

    /// With a checkpoint directory: check the job can be checkpointed, find its checkpoints
    /// and what it restores from (printing what), and get the sink ready for two-phase
    /// commits. `Prior::Finished` when its last checkpoint says it had finished.
    async fn prior_run(
        &self,
        catalog: &Catalog,
        pipeline: &Pipeline,
        sink: &mut Box<dyn Sink>,
        identity: &str,
    ) -> Result<Prior> {
        use crate::runtime::checkpoint::{self, Checkpointing};
        use crate::state::store::{CheckpointStore, JobRecord};
        let Some((dir, config)) = crate::settings::checkpoint_config(&catalog.settings)? else {
            return Ok(Prior::Run(None));
        };
        pipeline.check_checkpointable()?;
        sink.delivery()?;
        if pipeline.parallelism > config.key_groups {
            return plan_err!(
                "parallelism {} is more than 'pipeline.max-parallelism' = {}: there would be \
                 instances without key groups",
                pipeline.parallelism,
                config.key_groups
            );
        }
        let store = CheckpointStore::open(&dir, identity)?;
        let fresh = catalog
            .settings
            .get("weir.restore")
            .is_some_and(|v| v.eq_ignore_ascii_case("false"));
        let record: Option<JobRecord> = store.get_json("job.json").await?;
        let record = match record {
            Some(r) if !fresh => {
                if r.max_parallelism != config.key_groups {
                    return plan_err!(
                        "'pipeline.max-parallelism' is {} but the job's checkpoints in {} were \
                         taken with {}: it cannot change once a job has checkpoints (run with \
                         --no-restore to start a new lineage)",
                        config.key_groups,
                        store.shown(),
                        r.max_parallelism
                    );
                }
                r
            }
            _ => {
                let r = JobRecord {
                    job: identity.to_string(),
                    lineage: new_lineage(),
                    max_parallelism: config.key_groups,
                    weir_version: env!("CARGO_PKG_VERSION").to_string(),
                };
                store.put_json("job.json", &r).await?;
                r
            }
        };
        let chosen = match catalog.settings.get("execution.savepoint.path") {
            None => None,
            Some(p) => Some(chosen_epoch(p)?),
        };
        let load_started = std::time::Instant::now();
        let mut restored = checkpoint::load(&store, &record.lineage, chosen).await?;
        if let Some(r) = restored.as_mut() {
            r.load_ms = load_started.elapsed().as_millis() as u64;
        }
        let tag = format!(
            "{}-{:08x}",
            record.lineage.get(..8).unwrap_or(&record.lineage),
            crate::state::stable_hash(identity.as_bytes()) as u32
        );
        sink.begin_checkpointing(
            &tag,
            restored
                .as_ref()
                .map(|r| (r.epoch, r.sink.clone(), r.committed)),
        )
        .await?;
        if let Some(r) = &restored {
            if r.finished {
                return Ok(Prior::Finished(r.epoch));
            }
            let age = chrono::Utc::now().timestamp_millis() - r.time_ms;
            eprintln!(
                "restored {identity} from checkpoint {} ({} old): {}",
                r.epoch,
                checkpoint::age(age),
                checkpoint::describe_sources(&r.sources)
            );
        }
        let allow_unclaimed = catalog
            .settings
            .get("execution.savepoint.ignore-unclaimed-state")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Ok(Prior::Run(Some(Checkpointing {
            store,
            config,
            lineage: record.lineage,
            restored,
            allow_unclaimed,
        })))
    }
}

/// A new lineage id: time and process, in hex.
fn new_lineage() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:016x}",
        crate::state::stable_hash(format!("{nanos}-{}", std::process::id()).as_bytes())
    )
}

/// The epoch of `'execution.savepoint.path'`: a checkpoint folder (`…/chk-0000000042`) or
/// its number.
fn chosen_epoch(path: &str) -> Result<u64> {
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path);
    last.strip_prefix("chk-")
        .unwrap_or(last)
        .parse()
        .map_err(|_| {
            Error::Plan(format!(
                "'execution.savepoint.path' = '{path}' is not a checkpoint folder (…/chk-N) or \
                 a checkpoint number"
            ))
        })
}

fn short_name(stmt: &Located) -> String {
    let s = match &stmt.statement {
        Statement::Query(q) => q.to_string(),
        Statement::Insert { statement, .. } => statement.to_string(),
        other => format!("{other:?}"),
    };
    // Show window TVF arguments as written (`TABLE bid`), not as the parser's marker.
    let s = s.replace(
        &format!("{}.", crate::sql::dialect::TABLE_ARG_MARKER),
        "TABLE ",
    );
    if s.len() > 80 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(77).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

fn two_columns(a: (&str, Vec<String>), b: (&str, Vec<String>)) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new(a.0, DataType::Utf8, false),
            Field::new(b.0, DataType::Utf8, false),
        ])),
        vec![
            Arc::new(StringArray::from(a.1)) as ArrayRef,
            Arc::new(StringArray::from(b.1)),
        ],
    )?)
}

/// Writes batches into a table by column name (used for late rows): missing columns are NULL.
struct ConformingSink {
    schema: SchemaRef,
    inner: Box<dyn Sink>,
}

impl Sink for ConformingSink {
    fn write_batch(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let cols = self
                .schema
                .fields()
                .iter()
                .map(|f| match batch.column_by_name(f.name()) {
                    Some(c) => crate::format::cast_to(c, f.data_type()),
                    None => Ok(new_null_array(f.data_type(), batch.num_rows())),
                })
                .collect::<Result<Vec<_>>>()?;
            let nullable = Arc::new(Schema::new(
                self.schema
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_nullable(true))
                    .collect::<Vec<_>>(),
            ));
            self.inner
                .write_batch(RecordBatch::try_new(nullable, cols)?)
                .await
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        self.inner.finish()
    }

    fn abort(&mut self) -> BoxFuture<'_, ()> {
        self.inner.abort()
    }

    fn flush(&mut self) -> BoxFuture<'_, Result<()>> {
        self.inner.flush()
    }

    fn delivery(&self) -> Result<crate::connectors::Delivery> {
        self.inner.delivery()
    }
}

/// The figures shown on a status line.
pub fn status_line(m: &JobMetrics, rate: f64) -> String {
    let mut line = format!(
        "{:>10.0} events/s | watermark {} | {} rows out | {} late | {} malformed | state {} KiB",
        rate,
        m.watermark().map(format_time).unwrap_or_else(|| "-".into()),
        JobMetrics::get(&m.rows_out),
        JobMetrics::get(&m.late_rows),
        JobMetrics::get(&m.malformed),
        JobMetrics::get(&m.state_bytes) / 1024
    );
    let epoch = JobMetrics::get(&m.checkpoint_epoch);
    if epoch > 0 {
        line.push_str(&format!(
            " | checkpoint {epoch}: {} ms, {} KiB, aligned in {} ms",
            JobMetrics::get(&m.checkpoint_ms),
            JobMetrics::get(&m.checkpoint_bytes) / 1024,
            JobMetrics::get(&m.alignment_ms)
        ));
    }
    let failed = JobMetrics::get(&m.checkpoint_failures);
    if failed > 0 {
        line.push_str(&format!(" | {failed} checkpoints failed"));
    }
    line
}
