//! Connectors: where rows come from and go to, chosen by `WITH ('connector' = '...')`.
//!
//! A source is a set of *shards* ([`SourceShard`]): the files of a directory, the generator
//! shards of nexmark, the batches an application pushes. Each shard gets its own watermark.
//! A sink ([`Sink`]) receives the batches a job produces.
//!
//! | connector | source | sink |
//! |---|---|---|
//! | `filesystem` | file or directory (one shard per file), json / csv / parquet | rolled, partitioned files, local or `s3://` (multipart upload) |
//! | `kinesis` | a Kinesis stream: one split per shard, reshards followed | PutRecords |
//! | `kafka` | a Kafka topic: one split per partition | produce, keyed |
//! | `jdbc` | | PostgreSQL: COPY for appends, upserts on the primary key for updates |
//! | `nexmark` | built-in deterministic Nexmark generator (person, auction, bid) | |
//! | `push` | batches pushed through [`crate::PushHandle`] | |
//! | `print` | | `+I[...]` lines on stdout |
//! | `blackhole` | | discards (for benchmarks) |

pub mod aws;
pub mod blackhole;
pub mod filesystem;
pub mod fs_sink;
pub mod http;
pub mod jdbc;
pub mod kafka;
pub mod kinesis;
pub mod lookup_table;
pub mod nexmark;
pub mod object_store;
pub mod options;
pub mod print;
pub mod push;
pub mod values;
pub mod webhook;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;

use crate::runtime::JobMetrics;
use crate::sql::catalog::Table;
use crate::{Result, plan_err};

/// One shard of a source: yields batches in the shard's order, `None` when it has ended.
pub trait SourceShard: Send {
    /// A name for messages (file path, generator shard).
    fn name(&self) -> String;
    /// The next batch, or `None` at the end of a bounded shard.
    ///
    /// Must be cancel-safe: the runtime drops the future when something else comes first (a
    /// barrier to inject, a completed checkpoint, idleness) and calls again. So state changes
    /// only after the last `.await` of a call (or is redone idempotently by the next call):
    /// nothing read may be lost with a dropped future.
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<RecordBatch>>>;
    /// For a shard that reads several *splits* (Kinesis shards, Kafka partitions): the split
    /// the last batch came from. Each split gets its own watermark, and the shard's is the
    /// minimum over its live splits. `None` (the default): the shard is a single split.
    /// An empty batch with a split *announces* it: until it has rows it holds the watermark
    /// back (a reader announces all the splits it is about to read, so that the first one
    /// read cannot push the watermark past the others' rows).
    fn split(&self) -> Option<u64> {
        None
    }
    /// Splits that have ended since the last call: they stop holding the watermark back.
    fn finished_splits(&mut self) -> Vec<u64> {
        Vec::new()
    }
    /// Whether `next_batch` never waits (a generator, a file read to its end): the runtime
    /// then calls it directly instead of racing it against barriers and idleness, which it
    /// checks before each batch instead. Default: it may wait.
    fn reads_without_waiting(&self) -> bool {
        false
    }
    /// Whether a checkpoint can record and replay this shard's position; an error says why
    /// not (a pipe cannot be read again; a connector without positions yet).
    fn check_replayable(&self) -> Result<()> {
        crate::not_supported!("checkpointing a source of this connector ({})", self.name())
    }
    /// The position of the next batch, if the shard is at a point it can resume from (a
    /// line file between blocks of whole lines); `None` makes the runtime read on to one.
    fn position(&self) -> Option<serde_json::Value> {
        None
    }
    /// Resume from a position [`SourceShard::position`] returned.
    fn restore(&mut self, _position: &serde_json::Value) -> Result<()> {
        crate::not_supported!("restoring a source of this connector ({})", self.name())
    }
    /// A checkpoint that recorded `position` completed (Kafka commits the offsets to its
    /// consumer group, so lag tools see them). Best effort: the checkpoint is the truth.
    fn checkpoint_complete(&mut self, _position: &serde_json::Value) {}
}

/// What a multi-split reader hands the runtime, in order: announcements of new splits, rows,
/// and ends of splits (see [`SourceShard::split`]). An end is reported only after the split's
/// last rows.
///
/// A reader that can resume (Kafka, Kinesis) tags rows with the split's position after them
/// ([`SplitQueue::rows_at`]: an offset, a sequence number); [`SplitQueue::offsets`] then says
/// where each split resumes once everything handed out so far is processed, and
/// [`SplitQueue::ended`] which splits were handed out to their end.
#[derive(Default)]
pub struct SplitQueue {
    items: std::collections::VecDeque<SplitItem>,
    last_split: Option<u64>,
    finished: Vec<u64>,
    offsets: std::collections::BTreeMap<u64, serde_json::Value>,
    ended: std::collections::BTreeSet<u64>,
}

enum SplitItem {
    Announce(u64),
    Rows(u64, RecordBatch, Option<serde_json::Value>),
    /// Records consumed without rows (all malformed): only the position moves.
    Advance(u64, serde_json::Value),
    Finished(u64),
}

impl SplitQueue {
    /// A new split: it holds the watermark back until it has rows.
    pub fn announce(&mut self, split: u64) {
        self.items.push_back(SplitItem::Announce(split));
    }

    /// Rows of `split`.
    pub fn rows(&mut self, split: u64, batch: RecordBatch) {
        self.items.push_back(SplitItem::Rows(split, batch, None));
    }

    /// Rows of `split`, after which the split resumes at `next`.
    pub fn rows_at(&mut self, split: u64, batch: RecordBatch, next: serde_json::Value) {
        self.items
            .push_back(SplitItem::Rows(split, batch, Some(next)));
    }

    /// Records of `split` up to `next` were consumed without giving rows.
    pub fn advance(&mut self, split: u64, next: serde_json::Value) {
        self.items.push_back(SplitItem::Advance(split, next));
    }

    /// Where each split resumes: the positions after everything handed out (see
    /// [`SplitQueue::rows_at`]).
    pub fn offsets(&self) -> &std::collections::BTreeMap<u64, serde_json::Value> {
        &self.offsets
    }

    /// Resume `split` at `next` (a restored position).
    pub fn set_offset(&mut self, split: u64, next: serde_json::Value) {
        self.offsets.insert(split, next);
    }

    /// Whether `split`'s end has been handed out.
    pub fn ended(&self, split: u64) -> bool {
        self.ended.contains(&split)
    }

    /// `split` has ended.
    pub fn finish(&mut self, split: u64) {
        self.items.push_back(SplitItem::Finished(split));
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The next batch to hand out (empty for announcements and ends).
    pub fn pop(&mut self, schema: &SchemaRef) -> Option<RecordBatch> {
        self.skip_advances();
        let out = match self.items.pop_front()? {
            SplitItem::Announce(s) => {
                self.last_split = Some(s);
                RecordBatch::new_empty(schema.clone())
            }
            SplitItem::Rows(s, b, next) => {
                self.last_split = Some(s);
                if let Some(n) = next {
                    self.offsets.insert(s, n);
                }
                b
            }
            SplitItem::Advance(..) => return None,
            SplitItem::Finished(s) => {
                self.last_split = None;
                self.finished.push(s);
                self.ended.insert(s);
                RecordBatch::new_empty(schema.clone())
            }
        };
        // Records consumed without rows right after these are done too.
        self.skip_advances();
        Some(out)
    }

    fn skip_advances(&mut self) {
        while let Some(SplitItem::Advance(s, n)) = self.items.front() {
            self.offsets.insert(*s, n.clone());
            self.items.pop_front();
        }
    }

    /// For [`SourceShard::split`].
    pub fn split(&self) -> Option<u64> {
        self.last_split
    }

    /// For [`SourceShard::finished_splits`].
    pub fn take_finished(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.finished)
    }
}

/// Where a job's rows go.
pub trait Sink: Send {
    /// Write one batch.
    fn write_batch(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>>;
    /// Write one batch that arrived on sink input `port` (a statement set's jobs write to
    /// several tables: [`FanOutSink`]). Default: any port is the one sink.
    fn write_batch_at(&mut self, _port: usize, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        self.write_batch(batch)
    }
    /// Called periodically (every [`Sink::tick_interval_ms`]) for time-based work such as rolling files.
    fn tick(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    /// How often `tick` should run.
    fn tick_interval_ms(&self) -> u64 {
        1000
    }
    /// Flush and close: called once, at the end of the job or when it is stopped.
    fn finish(&mut self) -> BoxFuture<'_, Result<()>>;
    /// The job failed: drop what is in progress without publishing it (best effort).
    fn abort(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    /// Make everything written so far delivered and visible (roll files, flush buffers, await
    /// deliveries): how a sink that is not part of the checkpoint's commit (the late-data
    /// table) delivers at least once. Default: nothing is held back.
    fn flush(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    /// The job's watermark at the sink advanced to `wm` (ms; served tables tell their
    /// subscribers). Default: nothing.
    fn on_watermark(&mut self, _wm: i64) {}
    /// How the sink delivers under checkpoints; an error refuses checkpointing the job.
    fn delivery(&self) -> Result<Delivery> {
        Ok(Delivery::AtLeastOnce)
    }
    /// Checkpointing starts (before any batch): `tag` names this job's lineage in the sink's
    /// outputs; `restored` is the checkpoint the job resumes from (its epoch, what the sink
    /// pre-committed then, and whether that was published). An exactly-once sink publishes
    /// it now if it was not (idempotently) and drops leftovers of uncommitted epochs.
    fn begin_checkpointing(
        &mut self,
        _tag: &str,
        _restored: Option<(u64, serde_json::Value, bool)>,
    ) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    /// Barrier `epoch` reached the sink: close what epoch `epoch` wrote and say what to
    /// publish once the checkpoint completes (written into the checkpoint). The info is a
    /// JSON object of arrays (or null): if the checkpoint fails, its arrays are appended to
    /// the next checkpoint's, so [`Sink::commit`] of that one publishes both.
    fn pre_commit(&mut self, _epoch: u64) -> BoxFuture<'_, Result<serde_json::Value>> {
        Box::pin(async { Ok(serde_json::Value::Null) })
    }
    /// Checkpoint `epoch` completed: publish what [`Sink::pre_commit`] said. Must tolerate
    /// "already done" (a restore replays it).
    fn commit(&mut self, _epoch: u64, _info: serde_json::Value) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// The sinks of a statement set run as one job: input port `i` writes to `sinks[i]`. With
/// checkpoints, each sink keeps its own two-phase commit: what they pre-commit travels as
/// `{"fanout": [info, …]}` (merged sink by sink when a checkpoint fails), and each gets its
/// own tag, so their files and progress rows never collide.
pub struct FanOutSink {
    sinks: Vec<Box<dyn Sink>>,
}

impl FanOutSink {
    /// Port `i` writes to `sinks[i]`.
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        Self { sinks }
    }

    fn infos(info: serde_json::Value, n: usize) -> Vec<serde_json::Value> {
        let mut parts = match info {
            serde_json::Value::Object(mut o) => match o.remove("fanout") {
                Some(serde_json::Value::Array(a)) => a,
                _ => vec![],
            },
            _ => vec![],
        };
        parts.resize(n, serde_json::Value::Null);
        parts
    }
}

impl Sink for FanOutSink {
    fn write_batch(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        self.write_batch_at(0, batch)
    }

    fn on_watermark(&mut self, wm: i64) {
        for s in &mut self.sinks {
            s.on_watermark(wm);
        }
    }

    fn write_batch_at(&mut self, port: usize, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            match self.sinks.get_mut(port) {
                Some(s) => s.write_batch(batch).await,
                None => crate::exec_err!("sink", "no sink for input {port} of the statement set"),
            }
        })
    }

    fn tick(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            for s in &mut self.sinks {
                s.tick().await?;
            }
            Ok(())
        })
    }

    fn tick_interval_ms(&self) -> u64 {
        self.sinks
            .iter()
            .map(|s| s.tick_interval_ms())
            .min()
            .unwrap_or(1000)
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            for s in &mut self.sinks {
                s.finish().await?;
            }
            Ok(())
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            for s in &mut self.sinks {
                s.abort().await;
            }
        })
    }

    fn flush(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            for s in &mut self.sinks {
                s.flush().await?;
            }
            Ok(())
        })
    }

    fn delivery(&self) -> Result<Delivery> {
        let mut all = Delivery::ExactlyOnce;
        for s in &self.sinks {
            if s.delivery()? == Delivery::AtLeastOnce {
                all = Delivery::AtLeastOnce;
            }
        }
        Ok(all)
    }

    fn begin_checkpointing(
        &mut self,
        tag: &str,
        restored: Option<(u64, serde_json::Value, bool)>,
    ) -> BoxFuture<'_, Result<()>> {
        let tag = tag.to_string();
        Box::pin(async move {
            let n = self.sinks.len();
            let parts = restored.map(|(epoch, info, done)| {
                Self::infos(info, n)
                    .into_iter()
                    .map(move |i| (epoch, i, done))
            });
            let mut parts: Vec<Option<(u64, serde_json::Value, bool)>> = match parts {
                Some(p) => p.map(Some).collect(),
                None => vec![None; n],
            };
            for (i, s) in self.sinks.iter_mut().enumerate() {
                s.begin_checkpointing(&format!("{tag}-{i}"), parts[i].take())
                    .await?;
            }
            Ok(())
        })
    }

    fn pre_commit(&mut self, epoch: u64) -> BoxFuture<'_, Result<serde_json::Value>> {
        Box::pin(async move {
            let mut infos = vec![];
            for s in &mut self.sinks {
                infos.push(s.pre_commit(epoch).await?);
            }
            Ok(serde_json::json!({ "fanout": infos }))
        })
    }

    fn commit(&mut self, epoch: u64, info: serde_json::Value) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let infos = Self::infos(info, self.sinks.len());
            for (s, i) in self.sinks.iter_mut().zip(infos) {
                s.commit(epoch, i).await?;
            }
            Ok(())
        })
    }
}

/// What a sink guarantees with checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Output appears once per checkpointed row, even across crashes.
    ExactlyOnce,
    /// Output may repeat rows written after the last checkpoint when the job is restored.
    AtLeastOnce,
}

/// What opening a source may need from the engine.
#[derive(Clone)]
pub struct SourceEnv {
    /// The job's counters (malformed records are counted by the decoders).
    pub metrics: Arc<JobMetrics>,
    /// Tables fed by the application.
    pub push: push::PushRegistry,
    /// The job's parallelism (splittable sources default to this many shards).
    pub parallelism: usize,
    /// Whether the job checkpoints (Kafka then commits offsets only after checkpoints).
    pub checkpointing: bool,
    /// The source positions of the checkpoint the job resumes from, by `table:shard` (for
    /// readers that share their splits: Kinesis).
    pub restored: Option<Arc<std::collections::BTreeMap<String, serde_json::Value>>>,
    /// The http tables of `weir serve` (None elsewhere: http tables are refused).
    pub http: Option<Arc<http::HttpHub>>,
}

/// Open the shards of a source table.
pub fn open_source(table: &Table, env: &SourceEnv) -> Result<Vec<Box<dyn SourceShard>>> {
    match table.connector() {
        "filesystem" => filesystem::open(table, env),
        "kinesis" => kinesis::open(table, env),
        "kafka" | "upsert-kafka" => kafka::open(table, env),
        "nexmark" => nexmark::open(table, env.parallelism),
        "push" => env.push.subscribe(table),
        "values" => values::open(table),
        "http" => match &env.http {
            Some(hub) => hub.open_source(table, env),
            None => needs_serve(table),
        },
        other @ ("print" | "blackhole" | "jdbc" | "webhook") => plan_err!(
            "table {} uses connector '{other}', which can only be written to",
            table.def.name
        ),
        other => plan_err!(
            "table {}: unknown connector '{other}' (filesystem, kinesis, kafka, upsert-kafka, nexmark, push, http, print, blackhole, jdbc, webhook)",
            table.def.name
        ),
    }
}

/// Open a sink table for rows of `schema`.
pub fn open_sink(table: &Table, schema: SchemaRef) -> Result<Box<dyn Sink>> {
    if !table.def.computed.is_empty() {
        return plan_err!(
            "table {} has computed columns and cannot be written to",
            table.def.name
        );
    }
    // VIRTUAL metadata columns are read-only: the sink gets the other columns.
    let is_virtual = |name: &str| {
        table
            .def
            .columns
            .iter()
            .any(|c| c.name == name && c.metadata.as_ref().is_some_and(|m| m.is_virtual))
    };
    if table.def.columns.iter().any(|c| is_virtual(&c.name)) {
        let keep: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !is_virtual(schema.field(*i).name()))
            .collect();
        let mut def = table.def.clone();
        def.columns.retain(|c| !is_virtual(&c.name));
        let writable = Table::new(def)?;
        let inner = open_sink(&writable, Arc::new(schema.project(&keep)?))?;
        return Ok(Box::new(ProjectingSink { keep, inner }));
    }
    match table.connector() {
        "print" => Ok(Box::new(print::PrintSink::new(
            table.option("print-identifier").map(str::to_string),
        ))),
        "blackhole" => Ok(Box::new(blackhole::BlackholeSink)),
        "filesystem" => Ok(Box::new(fs_sink::FileSink::new(table, schema)?)),
        "kinesis" => Ok(Box::new(kinesis::KinesisSink::new(table, schema)?)),
        "kafka" | "upsert-kafka" => Ok(Box::new(kafka::KafkaSink::new(table, schema)?)),
        "jdbc" => Ok(Box::new(jdbc::JdbcSink::new(table, schema)?)),
        "webhook" => Ok(Box::new(webhook::WebhookSink::new(table, schema)?)),
        "http" => needs_serve(table),
        other @ ("nexmark" | "push") => plan_err!(
            "table {} uses connector '{other}', which can only be read",
            table.def.name
        ),
        other => plan_err!("table {}: unknown connector '{other}'", table.def.name),
    }
}

/// The error for an http table outside `weir serve`.
fn needs_serve<T>(table: &Table) -> Result<T> {
    plan_err!(
        "table {}: http tables need `weir serve` (they are fed and served over its HTTP API)",
        table.def.name
    )
}

/// Drops columns (VIRTUAL metadata) before the sink it wraps.
struct ProjectingSink {
    keep: Vec<usize>,
    inner: Box<dyn Sink>,
}

impl Sink for ProjectingSink {
    fn on_watermark(&mut self, wm: i64) {
        self.inner.on_watermark(wm);
    }

    fn write_batch(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let b = batch.project(&self.keep)?;
            self.inner.write_batch(b).await
        })
    }

    fn tick(&mut self) -> BoxFuture<'_, Result<()>> {
        self.inner.tick()
    }

    fn tick_interval_ms(&self) -> u64 {
        self.inner.tick_interval_ms()
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

    fn delivery(&self) -> Result<Delivery> {
        self.inner.delivery()
    }

    fn begin_checkpointing(
        &mut self,
        tag: &str,
        restored: Option<(u64, serde_json::Value, bool)>,
    ) -> BoxFuture<'_, Result<()>> {
        self.inner.begin_checkpointing(tag, restored)
    }

    fn pre_commit(&mut self, epoch: u64) -> BoxFuture<'_, Result<serde_json::Value>> {
        self.inner.pre_commit(epoch)
    }

    fn commit(&mut self, epoch: u64, info: serde_json::Value) -> BoxFuture<'_, Result<()>> {
        self.inner.commit(epoch, info)
    }
}

/// Whether `table` can take an updating query's output (a changelog).
pub fn check_accepts_changelog(table: &Table) -> Result<()> {
    match table.connector() {
        // Each row carries its op.
        "print" | "blackhole" | "webhook" | "http" => Ok(()),
        "jdbc" => {
            if table.def.primary_key.is_empty() {
                plan_err!(
                    "table {} (jdbc) cannot take an updating query without a PRIMARY KEY: \
                     declare `PRIMARY KEY (...) NOT ENFORCED` (the query's grouping columns) so its \
                     rows can be upserted and deleted",
                    table.def.name
                )
            } else {
                Ok(())
            }
        }
        // Upserts by primary key, deletes as tombstones (checked when the sink opens).
        "upsert-kafka" => Ok(()),
        connector @ ("kafka" | "kinesis") => {
            let format = table.option("format").unwrap_or("json");
            if crate::format::messages::MessageEncoder::takes_changelog(format) {
                Ok(())
            } else {
                plan_err!(
                    "table {} ({connector}, format '{format}') cannot take an updating query: use \
                     'format' = 'debezium-json', or a windowed query, whose results are final",
                    table.def.name
                )
            }
        }
        "filesystem" => {
            let format = table.option("format").unwrap_or("json");
            if crate::format::writer::FileFormat::parse(format)?.takes_changelog() {
                Ok(())
            } else {
                plan_err!(
                    "table {} (filesystem, format '{format}') cannot take an updating query: its rows would be \
                     updated and retracted, which '{format}' files cannot express; use 'format' = 'debezium-json', \
                     or a windowed query, whose results are final",
                    table.def.name
                )
            }
        }
        other => plan_err!(
            "table {} (connector '{other}') cannot take an updating query",
            table.def.name
        ),
    }
}

/// Parse a numeric option; `default` when it is not set.
pub fn number_option<T: std::str::FromStr>(table: &Table, key: &str, default: T) -> Result<T> {
    match table.option(key) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| {
            crate::Error::Plan(format!(
                "option '{key}' of table {} must be a number, not '{v}'",
                table.def.name
            ))
        }),
    }
}

/// The positions in `schema` of the columns `names` (for `what`: "PARTITIONED BY", ...).
pub fn column_indices(
    table: &Table,
    schema: &SchemaRef,
    names: &[String],
    what: &str,
) -> Result<Vec<usize>> {
    names
        .iter()
        .map(|n| {
            schema.index_of(n).map_err(|_| {
                crate::Error::Plan(format!(
                    "table {}: {what} column {n} is not among the columns written",
                    table.def.name
                ))
            })
        })
        .collect()
}

/// Parse a boolean option (`'true'` / `'false'`).
pub fn bool_option(table: &Table, key: &str, default: bool) -> Result<bool> {
    match table.option(key) {
        None => Ok(default),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => plan_err!(
            "option '{key}' of table {} must be 'true' or 'false', not '{v}'",
            table.def.name
        ),
    }
}
