//! Tables fed by the embedding application (`'connector' = 'push'`), and the in-process sink
//! behind [`crate::Subscription`].
//!
//! Every running query that reads a push table gets its own shard; a pushed batch goes to all
//! of them. Batches pushed while no query reads the table are kept and given to the next
//! query that starts reading it, so nothing pushed is lost.
//!
//! With checkpoints, a shard's position is the number of rows it has consumed. The
//! application keeps its own feed: after a restore, [`crate::Job::resume_position`] says how
//! many rows of each push table the checkpoint covers, and the application pushes again from
//! that row on (rows it had pushed after the checkpoint included).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::{Sink, SourceShard};
use crate::sql::catalog::Table;
use crate::{Error, Result, plan_err};

#[derive(Default)]
struct PushTable {
    subscribers: Vec<mpsc::Sender<RecordBatch>>,
    backlog: VecDeque<RecordBatch>,
    closed: bool,
}

/// The push tables of one engine.
#[derive(Clone, Default)]
pub struct PushRegistry {
    tables: Arc<Mutex<HashMap<String, PushTable>>>,
}

impl PushRegistry {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, PushTable>>> {
        self.tables.lock().map_err(|_| Error::Execution {
            operator: "push".into(),
            message: "registry lock poisoned".into(),
        })
    }

    /// A new shard reading `table` from now on.
    pub fn subscribe(&self, table: &Table) -> Result<Vec<Box<dyn SourceShard>>> {
        let mut tables = self.lock()?;
        let t = tables.entry(table.def.name.clone()).or_default();
        let (tx, rx) = mpsc::channel(16);
        let backlog = std::mem::take(&mut t.backlog);
        if !t.closed {
            t.subscribers.push(tx);
        }
        Ok(vec![Box::new(PushShard {
            name: table.def.name.clone(),
            backlog,
            rx,
            rows: 0,
        })])
    }

    /// Send a batch to every reader of `table` (or keep it for the next one).
    pub async fn push(&self, table: &str, batch: RecordBatch) -> Result<()> {
        let senders = {
            let mut tables = self.lock()?;
            let t = tables.entry(table.to_string()).or_default();
            if t.closed {
                return plan_err!("push table {table} was closed");
            }
            t.subscribers.retain(|s| !s.is_closed());
            if t.subscribers.is_empty() {
                t.backlog.push_back(batch);
                return Ok(());
            }
            t.subscribers.clone()
        };
        for s in senders {
            // A reader that has stopped is simply skipped.
            let _ = s.send(batch.clone()).await;
        }
        Ok(())
    }

    /// End the table's stream: readers see the end of a bounded input.
    pub fn close(&self, table: &str) -> Result<()> {
        let mut tables = self.lock()?;
        let t = tables.entry(table.to_string()).or_default();
        t.closed = true;
        t.subscribers.clear();
        Ok(())
    }
}

struct PushShard {
    name: String,
    backlog: VecDeque<RecordBatch>,
    rx: mpsc::Receiver<RecordBatch>,
    /// Rows consumed, over every run (its checkpointed position).
    rows: u64,
}

impl SourceShard for PushShard {
    fn name(&self) -> String {
        format!("push:{}", self.name)
    }

    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<RecordBatch>>> {
        Box::pin(async move {
            let b = match self.backlog.pop_front() {
                Some(b) => Some(b),
                None => self.rx.recv().await,
            };
            if let Some(b) = &b {
                self.rows += b.num_rows() as u64;
            }
            Ok(b)
        })
    }

    fn check_replayable(&self) -> Result<()> {
        Ok(())
    }

    fn position(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "rows": self.rows }))
    }

    /// The application pushes again from the restored row on: counting goes on from there.
    fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        self.rows = position.get("rows").and_then(|r| r.as_u64()).unwrap_or(0);
        Ok(())
    }
}

/// Align a pushed batch with the table's schema: columns by name, cast where types differ.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let cols = schema
        .fields()
        .iter()
        .map(|f| {
            let Some(c) = batch.column_by_name(f.name()) else {
                return plan_err!("pushed batch has no column {}", f.name());
            };
            crate::format::cast_to(c, f.data_type())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Sends a job's output batches to a [`crate::Subscription`].
pub struct ChannelSink {
    /// Where the batches go.
    pub tx: mpsc::Sender<Result<RecordBatch>>,
}

impl Sink for ChannelSink {
    fn write_batch(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            // If the subscriber went away the job's rows have nowhere to go: stop quietly.
            let _ = self.tx.send(Ok(batch)).await;
            Ok(())
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}
