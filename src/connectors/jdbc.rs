//! The PostgreSQL sink (`'connector' = 'jdbc'`, Flink's option names): the warehouse end of
//! a pipeline.
//!
//! Options: `'url'` (`jdbc:postgresql://host:port/db`, or a `postgresql://` URL),
//! `'table-name'` (may be `schema.table`), `'username'`, `'password'`,
//! `'sink.buffer-flush.max-rows'` (default 10000), `'sink.buffer-flush.interval'`
//! (default 1 s), `'sink.max-retries'` (default 3). The target table must exist.
//!
//! - **Append** (the sink table declares no primary key): rows are buffered and loaded with
//!   `COPY ... FROM STDIN` (text format), one transaction per flush.
//! - **Upsert** (`PRIMARY KEY (...) NOT ENFORCED` declared, as Flink requires for updating
//!   queries): a flush keeps the last change per key (`-U` rows are dropped: the `+U` that
//!   follows replaces the row), COPYs them into a temporary staging table, then in one
//!   transaction deletes the keys whose last change is `-D` and inserts the rest with
//!   `INSERT ... ON CONFLICT (key) DO UPDATE`. The target table needs a primary key or unique
//!   index on those columns.
//!
//! A failed flush is retried on a new connection (a flush is one transaction, and upserts
//! are idempotent, so a retry neither loses nor duplicates rows).
//!
//! ## Exactly-once, with checkpoints
//! Rows are staged, not written, until the checkpoint that covers them completes, so output
//! appears once per checkpoint interval (that is the latency).
//! - The sink creates two tables beside the target, in its schema: `<table>__weir_stage`
//!   (the target's columns plus lineage, job, epoch, a delete flag and a sequence number) and
//!   `weir_progress (job, lineage, sink, subtask, epoch)`; `job` is a hash of the job's
//!   identity.
//! - Full buffers and the barrier COPY the rows into the stage table (epoch 0 while the epoch
//!   is open); the barrier stamps them with the checkpoint's epoch, in one transaction.
//! - On commit, one transaction checks `weir_progress` for the epoch; if absent, it moves the
//!   epoch's staged rows into the target (for an upsert sink, the last change per key, in
//!   order), inserts the progress row and deletes the staged rows. A replayed commit finds the
//!   progress row and does nothing.
//! - A restore replays the commit of a checkpoint that completed but was not yet published
//!   and deletes staged rows of epochs no completed checkpoint covers (a new lineage
//!   starts clean: `--no-restore` gives one).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use datafusion::arrow::array::{Array, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::SinkExt;
use futures::future::BoxFuture;
use tokio_postgres::{Client, NoTls};

use super::Sink;
use crate::changelog::{self, RowKind};
use crate::sql::catalog::Table;
use crate::sql::interval::parse_duration_option;
use crate::{Error, Result, connector_err, plan_err};

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn pg_err(context: impl Into<String>, e: tokio_postgres::Error) -> Error {
    let message = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    Error::Connector {
        context: context.into(),
        message,
    }
}

/// See the module doc.
pub struct JdbcSink {
    config: tokio_postgres::Config,
    target: String,
    shown: String,
    /// Quoted column names, in the schema's order.
    columns: Vec<String>,
    /// Positions of the primary key columns (empty: append).
    key: Vec<usize>,
    client: Option<Client>,
    buffer: Vec<RecordBatch>,
    buffered: usize,
    max_rows: usize,
    interval: Duration,
    max_retries: u32,
    /// `"schema".` of the target (or empty) and its unquoted table name.
    schema_prefix: String,
    table_name: String,
    /// With checkpoints: where rows are staged.
    staging: Option<Staging>,
}

/// The exactly-once state of a checkpointed sink (see the module doc).
struct Staging {
    lineage: String,
    job: String,
    sink: String,
    stage: String,
    progress: String,
}

impl JdbcSink {
    /// A sink into `table` for rows of `schema`.
    pub fn new(table: &Table, schema: SchemaRef) -> Result<Self> {
        table.reject_metadata("jdbc")?;
        let Some(url) = table.option("url") else {
            return plan_err!("table {}: the jdbc connector needs a 'url'", table.def.name);
        };
        let url = url.strip_prefix("jdbc:").unwrap_or(url);
        if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
            return crate::not_supported!(
                "jdbc url '{url}': only PostgreSQL (jdbc:postgresql://host:port/db)"
            );
        }
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::Plan(format!("table {}: 'url': {e}", table.def.name)))?;
        if let Some(u) = table.option("username") {
            config.user(u);
        }
        if let Some(p) = table.option("password") {
            config.password(p);
        }
        let Some(name) = table.option("table-name") else {
            return plan_err!(
                "table {}: the jdbc connector needs a 'table-name'",
                table.def.name
            );
        };
        let target = name
            .split('.')
            .map(quote_ident)
            .collect::<Vec<_>>()
            .join(".");
        let (schema_prefix, table_name) = match name.rsplit_once('.') {
            Some((schema, t)) => (
                format!(
                    "{}.",
                    schema
                        .split('.')
                        .map(quote_ident)
                        .collect::<Vec<_>>()
                        .join(".")
                ),
                t.to_string(),
            ),
            None => (String::new(), name.to_string()),
        };
        let data_fields: Vec<_> = schema
            .fields()
            .iter()
            .filter(|f| f.name() != changelog::OP_COLUMN)
            .collect();
        let columns = data_fields
            .iter()
            .map(|f| quote_ident(table.declared_name(f.name())))
            .collect();
        let key = super::column_indices(table, &schema, &table.def.primary_key, "primary key")?;
        let max_rows = match table.option("sink.buffer-flush.max-rows") {
            None => 10_000,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    Error::Plan(format!(
                        "'sink.buffer-flush.max-rows' = '{v}' is not a positive number"
                    ))
                })?,
        };
        let interval = match table.option("sink.buffer-flush.interval") {
            None => Duration::from_secs(1),
            Some(v) => match parse_duration_option(v) {
                Some(ms) if ms > 0 => Duration::from_millis(ms as u64),
                _ => {
                    return plan_err!(
                        "'sink.buffer-flush.interval' = '{v}' is not a duration such as '1 s'"
                    );
                }
            },
        };
        let max_retries = super::number_option(table, "sink.max-retries", 3)?;
        Ok(Self {
            config,
            shown: format!("postgresql table {name}"),
            target,
            columns,
            key,
            client: None,
            buffer: vec![],
            buffered: 0,
            max_rows,
            interval,
            max_retries,
            schema_prefix,
            table_name,
            staging: None,
        })
    }

    async fn connect(&mut self) -> Result<&Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = Some(self.open().await?);
        }
        match &self.client {
            Some(c) => Ok(c),
            None => connector_err!(&self.shown, "not connected"),
        }
    }

    async fn open(&self) -> Result<Client> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| pg_err(format!("{}: connecting", self.shown), e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut setup = String::from("SET TIME ZONE 'UTC';");
        if !self.key.is_empty() {
            setup.push_str(&format!(
                "CREATE TEMP TABLE weir_stage (LIKE {} EXCLUDING ALL, weir_delete boolean) ON COMMIT DELETE ROWS;",
                self.target
            ));
        }
        client
            .batch_execute(&setup)
            .await
            .map_err(|e| pg_err(format!("{}: preparing", self.shown), e))?;
        Ok(client)
    }

    /// COPY text of `batch`'s data columns, plus a `weir_delete` column when `deletes` is given.
    fn copy_text(&self, batch: &RecordBatch, deletes: Option<&[bool]>) -> Result<Vec<u8>> {
        let options = FormatOptions::default()
            .with_null("\\N")
            .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
            .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f+00"));
        let data: Vec<&Arc<dyn Array>> = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(f, _)| f.name() != changelog::OP_COLUMN)
            .map(|(_, c)| c)
            .collect();
        for c in &data {
            if matches!(
                c.data_type(),
                DataType::List(_)
                    | DataType::Struct(_)
                    | DataType::Map(..)
                    | DataType::LargeList(_)
            ) {
                return crate::not_supported!(
                    "writing a {} column to PostgreSQL",
                    crate::sql::types::display_type(c.data_type())
                );
            }
        }
        let formatters: Vec<ArrayFormatter> = data
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<_, _>>()?;
        let mut out = Vec::with_capacity(batch.num_rows() * 16 * data.len().max(1));
        let mut value = String::new();
        for r in 0..batch.num_rows() {
            for (i, (c, f)) in data.iter().zip(&formatters).enumerate() {
                if i > 0 {
                    out.push(b'\t');
                }
                if c.is_null(r) {
                    out.extend_from_slice(b"\\N");
                    continue;
                }
                value.clear();
                use std::fmt::Write;
                let _ = write!(value, "{}", f.value(r));
                for b in value.bytes() {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        _ => out.push(b),
                    }
                }
            }
            if let Some(d) = deletes {
                out.extend_from_slice(if d[r] { b"\tt" } else { b"\tf" });
            }
            out.push(b'\n');
        }
        Ok(out)
    }

    /// The last change per key of `batch` (a changelog), `-U` rows dropped; and which are deletes.
    fn reduce(&self, batch: &RecordBatch) -> Result<(RecordBatch, Vec<bool>)> {
        let ops: Vec<i8> = changelog::ops_of(batch)
            .map(<[i8]>::to_vec)
            .unwrap_or_else(|| vec![0; batch.num_rows()]);
        let fields: Vec<SortField> = self
            .key
            .iter()
            .map(|i| SortField::new(batch.column(*i).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        let cols: Vec<_> = self.key.iter().map(|i| batch.column(*i).clone()).collect();
        let rows = converter.convert_columns(&cols)?;
        let mut last: HashMap<&[u8], usize> = HashMap::with_capacity(batch.num_rows());
        for (r, op) in ops.iter().enumerate() {
            if RowKind::from_i8(*op) == RowKind::UpdateBefore {
                continue;
            }
            last.insert(rows.row(r).data(), r);
        }
        let mut keep: Vec<u32> = last.values().map(|r| *r as u32).collect();
        keep.sort_unstable();
        let deletes = keep
            .iter()
            .map(|r| RowKind::from_i8(ops[*r as usize]) == RowKind::Delete)
            .collect();
        let reduced = take_record_batch(batch, &UInt32Array::from(keep))?;
        Ok((reduced, deletes))
    }

    /// For an upsert: the key columns (`a, b`), the join of target `t` with the changes
    /// aliased `alias` on them, and the ON CONFLICT action.
    fn upsert_clauses(&self, alias: &str) -> (String, String, String) {
        let key: Vec<String> = self.key.iter().map(|i| self.columns[*i].clone()).collect();
        let on = key
            .iter()
            .map(|k| format!("t.{k} = {alias}.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let updates: Vec<String> = self
            .columns
            .iter()
            .filter(|c| !key.contains(c))
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let action = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        (key.join(", "), on, action)
    }

    async fn flush_once(&mut self, batch: &RecordBatch) -> Result<()> {
        let columns = self.columns.join(", ");
        let (text, statements) = if self.key.is_empty() {
            let text = self.copy_text(batch, None)?;
            (text, None)
        } else {
            let (reduced, deletes) = self.reduce(batch)?;
            let text = self.copy_text(&reduced, Some(&deletes))?;
            let (keys, on, action) = self.upsert_clauses("s");
            let sql = format!(
                "DELETE FROM {t} t USING weir_stage s WHERE s.weir_delete AND {on};
                 INSERT INTO {t} ({columns}) SELECT {columns} FROM weir_stage WHERE NOT weir_delete
                 ON CONFLICT ({keys}) {action};",
                t = self.target,
            );
            (text, Some(sql))
        };
        let shown = self.shown.clone();
        let target = self.target.clone();
        let client = self.connect().await?;
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| pg_err(&shown, e))?;
        let copy = match &statements {
            None => format!("COPY {target} ({columns}) FROM STDIN"),
            Some(_) => format!("COPY weir_stage ({columns}, weir_delete) FROM STDIN"),
        };
        let sink = client
            .copy_in::<_, Bytes>(&copy)
            .await
            .map_err(|e| pg_err(format!("{shown}: COPY"), e))?;
        futures::pin_mut!(sink);
        sink.send(Bytes::from(text))
            .await
            .map_err(|e| pg_err(format!("{shown}: COPY"), e))?;
        sink.finish()
            .await
            .map_err(|e| pg_err(format!("{shown}: COPY"), e))?;
        if let Some(sql) = &statements {
            client
                .batch_execute(sql)
                .await
                .map_err(|e| pg_err(format!("{shown}: upsert"), e))?;
        }
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| pg_err(format!("{shown}: COMMIT"), e))
    }

    async fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let batch = concat_batches(&self.buffer[0].schema(), &self.buffer)?;
        let mut attempt = 0;
        loop {
            match self.flush_once(&batch).await {
                Ok(()) => break,
                Err(e) if attempt < self.max_retries => {
                    attempt += 1;
                    eprintln!("weir: {e}; retrying ({attempt}/{})", self.max_retries);
                    if let Some(c) = self.client.take() {
                        let _ = c.batch_execute("ROLLBACK").await;
                    }
                    tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
                }
                Err(e) => return Err(e),
            }
        }
        self.buffer.clear();
        self.buffered = 0;
        Ok(())
    }
}

impl JdbcSink {
    /// COPY the buffered rows into the stage table with epoch 0 (the open epoch).
    async fn stage_buffer(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let batch = concat_batches(&self.buffer[0].schema(), &self.buffer)?;
        let (rows, deletes) = if self.key.is_empty() {
            let n = batch.num_rows();
            (batch, vec![false; n])
        } else {
            self.reduce(&batch)?
        };
        let mut text = self.copy_text(&rows, Some(&deletes))?;
        let Some(st) = &self.staging else {
            return Ok(());
        };
        // Each line gets the lineage, job and open epoch.
        let suffix = format!("\t{}\t{}\t0\n", st.lineage, st.job);
        let mut lines = Vec::with_capacity(text.len() + rows.num_rows() * suffix.len());
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            lines.extend_from_slice(line);
            lines.extend_from_slice(suffix.as_bytes());
        }
        text = lines;
        let copy = format!(
            "COPY {} ({}, weir_delete, weir_lineage, weir_job, weir_epoch) FROM STDIN",
            st.stage,
            self.columns.join(", ")
        );
        let shown = self.shown.clone();
        let client = self.connect().await?;
        let sink = client
            .copy_in::<_, Bytes>(&copy)
            .await
            .map_err(|e| pg_err(format!("{shown}: staging"), e))?;
        futures::pin_mut!(sink);
        sink.send(Bytes::from(text))
            .await
            .map_err(|e| pg_err(format!("{shown}: staging"), e))?;
        sink.finish()
            .await
            .map_err(|e| pg_err(format!("{shown}: staging"), e))?;
        self.buffer.clear();
        self.buffered = 0;
        Ok(())
    }

    /// Create the stage and progress tables; publish a restored checkpoint's epochs if it
    /// was not; drop staged rows no completed checkpoint covers.
    async fn begin_staging(
        &mut self,
        tag: &str,
        restored: Option<(u64, serde_json::Value, bool)>,
    ) -> Result<()> {
        let (lineage, job) = tag.split_once('-').unwrap_or((tag, ""));
        let staging = Staging {
            lineage: lineage.to_string(),
            job: job.to_string(),
            sink: self.table_name.clone(),
            stage: format!(
                "{}{}",
                self.schema_prefix,
                quote_ident(&format!("{}__weir_stage", self.table_name))
            ),
            progress: format!("{}weir_progress", self.schema_prefix),
        };
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {progress} (job text NOT NULL, lineage text NOT NULL, \
               sink text NOT NULL, subtask int NOT NULL, epoch bigint NOT NULL, \
               committed_at timestamptz NOT NULL DEFAULT now(), \
               PRIMARY KEY (job, lineage, sink, subtask, epoch));
             CREATE TABLE IF NOT EXISTS {stage} (LIKE {target} EXCLUDING ALL, \
               weir_delete boolean NOT NULL, weir_lineage text NOT NULL, weir_job text NOT NULL, \
               weir_epoch bigint NOT NULL, weir_seq bigserial);",
            progress = staging.progress,
            stage = staging.stage,
            target = self.target,
        );
        let shown = self.shown.clone();
        self.connect()
            .await?
            .batch_execute(&ddl)
            .await
            .map_err(|e| {
                pg_err(
                    format!("{shown}: creating the stage and progress tables"),
                    e,
                )
            })?;
        self.staging = Some(staging);
        let covered = match restored {
            Some((e, info, committed)) => {
                if !committed {
                    self.publish(e, &info).await?;
                }
                e
            }
            None => 0,
        };
        let Some(st) = &self.staging else {
            return Ok(());
        };
        let sql = format!(
            "DELETE FROM {} WHERE weir_lineage = $1 AND weir_job = $2 \
               AND (weir_epoch = 0 OR weir_epoch > $3)",
            st.stage
        );
        let (lineage, job) = (st.lineage.clone(), st.job.clone());
        self.connect()
            .await?
            .execute(&sql, &[&lineage, &job, &(covered as i64)])
            .await
            .map_err(|e| pg_err(format!("{shown}: dropping uncommitted staged rows"), e))?;
        Ok(())
    }

    /// Stage what is buffered and stamp the open epoch's rows with `epoch`.
    async fn pre_commit_staged(&mut self, epoch: u64) -> Result<serde_json::Value> {
        self.stage_buffer().await?;
        let Some(st) = &self.staging else {
            return Ok(serde_json::Value::Null);
        };
        let sql = format!(
            "UPDATE {} SET weir_epoch = $3 WHERE weir_lineage = $1 AND weir_job = $2 \
               AND weir_epoch = 0",
            st.stage
        );
        let (lineage, job) = (st.lineage.clone(), st.job.clone());
        let shown = self.shown.clone();
        self.connect()
            .await?
            .execute(&sql, &[&lineage, &job, &(epoch as i64)])
            .await
            .map_err(|e| pg_err(format!("{shown}: staging epoch {epoch}"), e))?;
        Ok(serde_json::json!({ "epochs": [epoch] }))
    }

    /// Move the staged rows of the epochs `info` lists into the target, once: see the module
    /// doc.
    async fn publish(&mut self, epoch: u64, info: &serde_json::Value) -> Result<()> {
        let epochs: Vec<i64> = match info.get("epochs") {
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| Error::Execution {
                operator: self.shown.clone(),
                message: format!("checkpoint {epoch}: unreadable list of staged epochs: {e}"),
            })?,
            None => vec![],
        };
        let Some(st) = &self.staging else {
            return Ok(());
        };
        let columns = self.columns.join(", ");
        let of_epochs = "weir_lineage = $1 AND weir_job = $2 AND weir_epoch = ANY($3)";
        let apply = if self.key.is_empty() {
            format!(
                "INSERT INTO {t} ({columns}) SELECT {columns} FROM {s} \
                 WHERE {of_epochs} AND NOT weir_delete ORDER BY weir_seq",
                t = self.target,
                s = st.stage,
            )
        } else {
            let (keys, on, action) = self.upsert_clauses("l");
            let last = format!(
                "SELECT DISTINCT ON ({keys}) * FROM {s} WHERE {of_epochs} \
                 ORDER BY {keys}, weir_seq DESC",
                s = st.stage
            );
            format!(
                "WITH l AS ({last}), d AS (DELETE FROM {t} t USING l WHERE l.weir_delete AND {on}) \
                 INSERT INTO {t} ({columns}) SELECT {columns} FROM l WHERE NOT weir_delete \
                 ON CONFLICT ({keys}) {action}",
                t = self.target,
            )
        };
        let progress_check = format!(
            "SELECT 1 FROM {} WHERE job = $1 AND lineage = $2 AND sink = $3 AND subtask = 0 \
               AND epoch = $4",
            st.progress
        );
        let progress_insert = format!(
            "INSERT INTO {} (job, lineage, sink, subtask, epoch) VALUES ($1, $2, $3, 0, $4)",
            st.progress
        );
        let cleanup = format!("DELETE FROM {} WHERE {of_epochs}", st.stage);
        let (lineage, job, sink) = (st.lineage.clone(), st.job.clone(), st.sink.clone());
        let shown = self.shown.clone();
        let ctx = |what: &str| format!("{shown}: committing epoch {epoch} ({what})");
        let client = self.connect().await?;
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| pg_err(ctx("BEGIN"), e))?;
        let done = client
            .query_opt(&progress_check, &[&job, &lineage, &sink, &(epoch as i64)])
            .await
            .map_err(|e| pg_err(ctx("progress"), e))?;
        if done.is_none() {
            client
                .execute(&apply, &[&lineage, &job, &epochs])
                .await
                .map_err(|e| pg_err(ctx("rows"), e))?;
            crate::failpoint!("sink-mid-commit");
            client
                .execute(&progress_insert, &[&job, &lineage, &sink, &(epoch as i64)])
                .await
                .map_err(|e| pg_err(ctx("progress"), e))?;
            client
                .execute(&cleanup, &[&lineage, &job, &epochs])
                .await
                .map_err(|e| pg_err(ctx("cleanup"), e))?;
        }
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| pg_err(ctx("COMMIT"), e))
    }
}

impl Sink for JdbcSink {
    fn delivery(&self) -> Result<super::Delivery> {
        Ok(super::Delivery::ExactlyOnce)
    }

    fn begin_checkpointing(
        &mut self,
        tag: &str,
        restored: Option<(u64, serde_json::Value, bool)>,
    ) -> BoxFuture<'_, Result<()>> {
        let tag = tag.to_string();
        Box::pin(async move { self.begin_staging(&tag, restored).await })
    }

    fn pre_commit(&mut self, epoch: u64) -> BoxFuture<'_, Result<serde_json::Value>> {
        Box::pin(self.pre_commit_staged(epoch))
    }

    fn commit(&mut self, epoch: u64, info: serde_json::Value) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.publish(epoch, &info).await })
    }

    fn write_batch(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.buffered += batch.num_rows();
            self.buffer.push(batch);
            if self.buffered >= self.max_rows {
                if self.staging.is_some() {
                    self.stage_buffer().await?;
                } else {
                    self.flush().await?;
                }
            }
            Ok(())
        })
    }

    fn tick(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.staging.is_some() {
                // Output waits for the checkpoint that covers it.
                return Ok(());
            }
            self.flush().await
        })
    }

    fn tick_interval_ms(&self) -> u64 {
        self.interval.as_millis() as u64
    }

    fn flush(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.staging.is_some() {
                return Ok(());
            }
            JdbcSink::flush(self).await
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.staging.is_some() {
                // The final checkpoint published everything it covers; nothing else may be.
                return Ok(());
            }
            self.flush().await
        })
    }
}
