//! The per-shard watermark generator: an ordinary operator placed right after a source shard.
//!
//! The watermark is the largest event time seen on the shard minus the declared delay
//! (`WATERMARK FOR ts AS ts - INTERVAL '4' SECOND`). It is tracked *per row*: when a row is
//! behind the watermark that the rows before it established, the batch is split there and the
//! watermark is emitted between the parts. So whether a row is late does not depend on how the
//! input happened to be cut into batches. In-order input is never split.
//!
//! Rows with a NULL event time cannot be placed in time: they are dropped and counted as
//! malformed.

use std::fmt;

use datafusion::arrow::array::Array;
use datafusion::arrow::compute::{filter_record_batch, is_not_null};
use datafusion::arrow::record_batch::RecordBatch;

use super::{Emitter, Operator, time_millis};
use crate::Result;
use crate::message::Timestamp;

/// Spec of a watermark generator.
#[derive(Debug, Clone)]
pub struct WatermarkGenSpec {
    /// Event-time column index in the source schema.
    pub time_col: usize,
    /// Its name, for EXPLAIN.
    pub time_name: String,
    /// Bounded out-of-orderness in milliseconds.
    pub delay_ms: i64,
}

impl fmt::Display for WatermarkGenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Watermark: {} - {} ms (per shard)",
            self.time_name, self.delay_ms
        )
    }
}

/// Runtime half of [`WatermarkGenSpec`].
pub struct WatermarkGenerator {
    spec: WatermarkGenSpec,
    max_ts: Timestamp,
    emitted: Timestamp,
}

impl WatermarkGenerator {
    /// A generator that has seen nothing.
    pub fn new(spec: WatermarkGenSpec) -> Self {
        Self {
            spec,
            max_ts: Timestamp::MIN,
            emitted: Timestamp::MIN,
        }
    }

    fn watermark(&self) -> Timestamp {
        self.max_ts.saturating_sub(self.spec.delay_ms)
    }
}

impl Operator for WatermarkGenerator {
    fn name(&self) -> &str {
        "Watermark"
    }

    fn forwards_watermarks(&self) -> bool {
        false
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<()> {
        let col = batch.column(self.spec.time_col);
        let batch = if col.null_count() > 0 {
            out.malformed += col.null_count() as u64;
            filter_record_batch(&batch, &is_not_null(col)?)?
        } else {
            batch
        };
        let ts = time_millis(batch.column(self.spec.time_col))?;
        let mut seg_start = 0;
        for (i, &t) in ts.iter().enumerate() {
            let wm = self.watermark();
            if t < wm && wm > self.emitted {
                // Row i is behind the watermark of the rows before it: let the operators
                // downstream see that watermark before they see row i.
                out.emit(batch.slice(seg_start, i - seg_start));
                out.emit_watermark(wm);
                self.emitted = wm;
                seg_start = i;
            }
            self.max_ts = self.max_ts.max(t);
        }
        out.emit(batch.slice(seg_start, batch.num_rows() - seg_start));
        let wm = self.watermark();
        if wm > self.emitted && self.max_ts != Timestamp::MIN {
            out.emit_watermark(wm);
            self.emitted = wm;
        }
        Ok(())
    }

    /// A watermark pushed in from the source (the wall clock of an idle http table with
    /// `'scan.watermark.idle-advance'`, or the end of input): the generator moves on to it, so
    /// what it emits afterwards never goes back.
    fn on_watermark(&mut self, t: Timestamp, out: &mut Emitter) -> Result<()> {
        if t > self.emitted {
            self.max_ts = self.max_ts.max(t.saturating_add(self.spec.delay_ms));
            out.emit_watermark(t);
            self.emitted = t;
        }
        Ok(())
    }

    /// The shard's progress: the largest event time seen and the watermark sent.
    fn snapshot(&mut self, _key_groups: usize) -> Result<Option<crate::state::StateSnapshot>> {
        Ok(Some(crate::state::StateSnapshot {
            tables: vec![],
            meta: serde_json::json!({ "max_ts": self.max_ts }),
        }))
    }

    fn restore(&mut self, snapshot: crate::state::StateSnapshot) -> Result<()> {
        // The restored watermark is sent again with the first batch of the new run.
        self.max_ts = snapshot.meta_i64("max_ts").unwrap_or(Timestamp::MIN);
        self.emitted = Timestamp::MIN;
        Ok(())
    }
}

super::operator_spec!(
    WatermarkGenSpec,
    stateful = false,
    |s| Ok::<_, crate::Error>(WatermarkGenerator::new(s))
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Message, Watermark};
    use crate::operators::test_util::tkv;

    fn run(rows: &[(i64, i64, i64)]) -> Vec<String> {
        let mut op = WatermarkGenerator::new(WatermarkGenSpec {
            time_col: 0,
            time_name: "ts".into(),
            delay_ms: 10,
        });
        let mut out = Emitter::default();
        op.process_batch(0, tkv(rows), &mut out).unwrap();
        out.messages
            .iter()
            .map(|m| match m {
                Message::Batch(b) => format!("rows:{}", b.num_rows()),
                Message::Watermark(Watermark::EventTime(t)) => format!("wm:{t}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn in_order_input_is_not_split() {
        assert_eq!(
            run(&[(100, 0, 0), (105, 0, 0), (120, 0, 0)]),
            vec!["rows:3", "wm:110"]
        );
    }

    #[test]
    fn out_of_order_within_delay_is_not_split() {
        assert_eq!(
            run(&[(100, 0, 0), (95, 0, 0), (120, 0, 0)]),
            vec!["rows:3", "wm:110"]
        );
    }

    #[test]
    fn a_row_behind_the_watermark_sees_it_first() {
        // After 200 the watermark is 190; the row at 50 must arrive after that watermark.
        assert_eq!(
            run(&[(100, 0, 0), (200, 0, 0), (50, 0, 0), (210, 0, 0)]),
            vec!["rows:2", "wm:190", "rows:2", "wm:200"]
        );
    }
}
