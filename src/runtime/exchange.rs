//! The keyed exchange: where a task's output goes.
//!
//! A [`Router`] hashes the key columns of a whole batch (DataFusion's `create_hashes`, the same
//! seed in every task so equal keys from two join inputs meet in the same instance), maps each
//! hash to its key group and each key group to the instance owning it ([`crate::state`]), and
//! splits the batch with `take`. Watermarks, idleness, barriers and `End` go to every target.
//! With one target there is nothing to hash. Each router has its own channel to each target,
//! so the target's input gate can hold one producer back while others flow.
//!
//! Tasks send through the [`OutputExchange`] trait, whose one implementation today is this
//! local `Router`, so that a partitioned log (a Kafka topic) or a network exchange can take its
//! place between machines without touching the operators or the task loops.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;
use tokio::sync::mpsc;

use crate::graph::Exchange;
use crate::message::Message;
use crate::operators::eval;
use crate::state::{instance_of, key_group};
use crate::{Error, Result};

/// The sending side of an exchange: what a task hands its output to.
pub trait OutputExchange: Send {
    /// Send a message downstream: a batch goes to the instance(s) its exchange picks;
    /// watermarks, idleness, barriers and `End` to every instance. Waits while a target is
    /// full (backpressure). `Err(Cancelled)` when the receivers are gone.
    fn send(&mut self, msg: Message) -> futures::future::BoxFuture<'_, Result<()>>;
}

impl OutputExchange for Router {
    fn send(&mut self, msg: Message) -> futures::future::BoxFuture<'_, Result<()>> {
        Box::pin(Router::send(self, msg))
    }
}

/// Sends one task's output to the next stage (or the sink) over local channels.
pub struct Router {
    sender: usize,
    targets: Vec<mpsc::Sender<Message>>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    exchange: Exchange,
    key_groups: usize,
    hashes: Vec<u64>,
}

impl Router {
    /// Output of producer `sender` into `targets` (one channel per instance), partitioned by
    /// the key groups of `keys` when there is more than one target.
    pub fn new(
        sender: usize,
        targets: Vec<mpsc::Sender<Message>>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        exchange: Exchange,
        key_groups: usize,
    ) -> Self {
        Self {
            sender,
            targets,
            keys,
            exchange,
            key_groups,
            hashes: vec![],
        }
    }

    /// Send a message; a batch is split by key. `Err(Cancelled)` when the receivers are gone.
    pub async fn send(&mut self, msg: Message) -> Result<()> {
        let n = self.targets.len();
        match msg {
            Message::Batch(batch) if n > 1 => match self.exchange {
                Exchange::Hash => {
                    let parts = self.partition(&batch)?;
                    for (target, part) in parts.into_iter().enumerate() {
                        if let Some(part) = part {
                            self.send_to(target, Message::Batch(part)).await?;
                        }
                    }
                    Ok(())
                }
                Exchange::Forward => self.send_to(self.sender % n, Message::Batch(batch)).await,
                Exchange::Broadcast => {
                    for target in 0..n {
                        self.send_to(target, Message::Batch(batch.clone())).await?;
                    }
                    Ok(())
                }
            },
            Message::Batch(batch) => self.send_to(0, Message::Batch(batch)).await,
            other => {
                for target in 0..n {
                    self.send_to(target, other.clone()).await?;
                }
                Ok(())
            }
        }
    }

    async fn send_to(&self, target: usize, msg: Message) -> Result<()> {
        self.targets[target]
            .send(msg)
            .await
            .map_err(|_| Error::Cancelled)
    }

    /// Split a batch into one (possibly absent) batch per target.
    pub fn partition(&mut self, batch: &RecordBatch) -> Result<Vec<Option<RecordBatch>>> {
        partition_batch(
            batch,
            &self.keys,
            self.targets.len(),
            self.key_groups,
            &mut self.hashes,
        )
    }
}

/// Hash `keys` over `batch` and split its rows over `n` partitions (by key group, each
/// partition owning a contiguous range of the `key_groups`) with `take`.
pub fn partition_batch(
    batch: &RecordBatch,
    keys: &[Arc<dyn PhysicalExpr>],
    n: usize,
    key_groups: usize,
    hashes: &mut Vec<u64>,
) -> Result<Vec<Option<RecordBatch>>> {
    let rows = batch.num_rows();
    let arrays = keys
        .iter()
        .map(|k| eval(k, batch))
        .collect::<Result<Vec<ArrayRef>>>()?;
    crate::state::hash_keys(&arrays, rows, hashes)?;
    let mut counts = vec![0usize; n];
    let targets: Vec<u32> = hashes
        .iter()
        .map(|h| {
            let t = instance_of(key_group(*h, key_groups), key_groups, n);
            counts[t] += 1;
            t as u32
        })
        .collect();
    if let Some(only) = counts.iter().position(|c| *c == rows) {
        let mut out = vec![None; n];
        out[only] = Some(batch.clone());
        return Ok(out);
    }
    let mut indices: Vec<Vec<u32>> = counts.iter().map(|c| Vec::with_capacity(*c)).collect();
    for (row, t) in targets.iter().enumerate() {
        indices[*t as usize].push(row as u32);
    }
    indices
        .into_iter()
        .map(|idx| {
            if idx.is_empty() {
                Ok(None)
            } else {
                Ok(Some(take_record_batch(batch, &UInt32Array::from(idx))?))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::Column;

    #[test]
    fn equal_keys_land_in_the_same_partition() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let keys: Vec<Arc<dyn PhysicalExpr>> = vec![Arc::new(Column::new("k", 0))];
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(
                (0..1000).map(|i| i % 37),
            ))],
        )
        .expect("batch");
        let parts = partition_batch(&batch, &keys, 4, 128, &mut vec![]).expect("partition");
        let mut seen = std::collections::HashMap::new();
        let mut total = 0;
        for (p, part) in parts.iter().enumerate() {
            let Some(part) = part else { continue };
            total += part.num_rows();
            let col = part
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("int64");
            for v in col.values() {
                assert_eq!(
                    *seen.entry(*v).or_insert(p),
                    p,
                    "key {v} split over partitions"
                );
            }
        }
        assert_eq!(total, 1000);
        assert!(parts.iter().filter(|p| p.is_some()).count() > 1);
    }
}
