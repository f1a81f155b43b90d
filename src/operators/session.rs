//! Session window aggregation: per-key gap merging.
//!
//! ```text
//!   rows ──► buffer (evaluated keys, event time, aggregate inputs)
//!   watermark ≥ earliest possible session end ──► sort buffer by (keys, time)
//!        ──► split into sessions where the gap between consecutive rows of a key > gap
//!        ──► sessions with last time + gap ≤ watermark: aggregate (group = session), emit
//!        ──► rows of still-open sessions stay buffered
//! ```
//!
//! Sorting, splitting and aggregating are column-wise (lexsort, partition, GroupsAccumulator).
//! The buffer holds the input rows of open sessions, so state grows with the rows of a
//! session that never closes (a key that is active without a gap); incremental per-session
//! accumulators are the planned improvement. A row is late when its own session window
//! `[ts, ts + gap)` ended at or before the watermark.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, UInt32Array};
use datafusion::arrow::compute::{SortColumn, concat, lexsort_to_indices, take};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::EmitTo;

use super::window::{Inputs, new_accumulators, take_batch};
use super::window_spec::{WindowAggSpec, WindowKind};
use super::{Emitter, Operator, time_millis};
use crate::Result;
use crate::message::Timestamp;

/// Buffered, evaluated input rows.
struct Chunk {
    inputs: Inputs,
    ts: ArrayRef,
}

/// Runtime half of a SESSION [`WindowAggSpec`].
pub struct SessionAggregate {
    spec: WindowAggSpec,
    gap: i64,
    wm: Timestamp,
    buffer: Vec<Chunk>,
    /// No buffered session can end before this.
    next_close: Timestamp,
}

impl SessionAggregate {
    /// An operator with no state yet.
    pub fn new(spec: WindowAggSpec) -> Result<Self> {
        let WindowKind::Session { gap } = spec.kind else {
            return crate::plan_err!("SessionAggregate needs a SESSION window, got {}", spec.kind);
        };
        Ok(Self { spec, gap, wm: Timestamp::MIN, buffer: vec![], next_close: Timestamp::MAX })
    }

    fn concat_buffer(&mut self) -> Result<Option<Chunk>> {
        if self.buffer.is_empty() {
            return Ok(None);
        }
        if self.buffer.len() == 1 {
            return Ok(self.buffer.pop());
        }
        let chunks = std::mem::take(&mut self.buffer);
        let cat = |get: &dyn Fn(&Chunk) -> &ArrayRef| -> Result<ArrayRef> {
            let parts: Vec<&dyn Array> = chunks.iter().map(|c| get(c).as_ref()).collect();
            Ok(concat(&parts)?)
        };
        let first = &chunks[0].inputs;
        let keys = (0..first.keys.len()).map(|k| cat(&|c| &c.inputs.keys[k])).collect::<Result<Vec<_>>>()?;
        let args = (0..first.args.len())
            .map(|a| (0..first.args[a].len()).map(|j| cat(&|c| &c.inputs.args[a][j])).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        let filters = (0..first.filters.len())
            .map(|f| match first.filters[f] {
                Some(_) => {
                    if chunks.iter().any(|c| c.inputs.filters[f].is_none()) {
                        return crate::plan_err!("internal: FILTER column missing from a buffered chunk");
                    }
                    cat(&|c| c.inputs.filters[f].as_ref().unwrap_or(&c.ts)).map(Some)
                }
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        let ts = cat(&|c| &c.ts)?;
        Ok(Some(Chunk { inputs: Inputs { keys, args, filters }, ts }))
    }

    fn close_sessions(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        let Some(all) = self.concat_buffer()? else { return Ok(()) };
        // Sort by (keys, time).
        let mut sort_cols: Vec<SortColumn> =
            all.inputs.keys.iter().map(|k| SortColumn { values: k.clone(), options: None }).collect();
        sort_cols.push(SortColumn { values: all.ts.clone(), options: None });
        let order = lexsort_to_indices(&sort_cols, None)?;
        let sorted = all.inputs.take(&order)?;
        let ts_sorted = take(all.ts.as_ref(), &order, None)?;
        let ts = ts_sorted.as_primitive::<datafusion::arrow::datatypes::Int64Type>().values();
        let key_ranges = if sorted.keys.is_empty() {
            vec![0..ts.len()]
        } else {
            datafusion::arrow::compute::partition(&sorted.keys)?.ranges()
        };
        let (mut closed, mut group_ids, mut open) = (Vec::new(), Vec::new(), Vec::new());
        let (mut starts, mut ends, mut first_rows) = (Vec::new(), Vec::new(), Vec::new());
        let mut next_close = Timestamp::MAX;
        for range in key_ranges {
            let mut s = range.start;
            while s < range.end {
                let mut e = s + 1;
                while e < range.end && ts[e] - ts[e - 1] <= self.gap {
                    e += 1;
                }
                let end = ts[e - 1] + self.gap;
                if end <= wm {
                    let id = starts.len();
                    starts.push(ts[s]);
                    ends.push(end);
                    first_rows.push(s as u32);
                    closed.extend(s as u32..e as u32);
                    group_ids.extend(std::iter::repeat_n(id, e - s));
                } else {
                    next_close = next_close.min(end);
                    open.extend(s as u32..e as u32);
                }
                s = e;
            }
        }
        self.next_close = next_close;
        if !open.is_empty() {
            let idx = UInt32Array::from(open);
            self.buffer.push(Chunk { inputs: sorted.take(&idx)?, ts: take(ts_sorted.as_ref(), &idx, None)? });
        }
        if starts.is_empty() {
            return Ok(());
        }
        let closed_rows = sorted.take(&UInt32Array::from(closed))?;
        let mut accs = new_accumulators(&self.spec)?;
        let n = starts.len();
        for (i, acc) in accs.iter_mut().enumerate() {
            let filter = closed_rows.filters[i].as_ref().map(|f| f.as_boolean());
            acc.update_batch(&closed_rows.args[i], &group_ids, filter, n)?;
        }
        let aggs = accs.iter_mut().map(|a| Ok(a.evaluate(EmitTo::All)?)).collect::<Result<Vec<_>>>()?;
        let first_rows = UInt32Array::from(first_rows);
        let keys = sorted.keys.iter().map(|k| Ok(take(k.as_ref(), &first_rows, None)?)).collect::<Result<Vec<_>>>()?;
        out.emit(self.spec.output_batch(starts, ends, &keys, aggs)?);
        Ok(())
    }
}

impl Operator for SessionAggregate {
    fn name(&self) -> &str {
        "SessionAggregate"
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Emitter) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let ts = time_millis(batch.column(self.spec.time_col))?;
        let (gap, wm) = (self.gap, self.wm);
        let late: Vec<u32> = ts.iter().enumerate().filter(|(_, t)| **t + gap <= wm).map(|(i, _)| i as u32).collect();
        let ts_arr: ArrayRef = std::sync::Arc::new(Int64Array::from(ts.to_vec()));
        let min_ts = ts.iter().copied().min().unwrap_or(Timestamp::MAX);
        drop(ts);
        let (batch, ts_arr) = if late.is_empty() {
            (batch, ts_arr)
        } else {
            let late_set: std::collections::HashSet<u32> = late.iter().copied().collect();
            out.late(take_batch(&batch, &UInt32Array::from(late))?);
            let keep = UInt32Array::from((0..batch.num_rows() as u32).filter(|i| !late_set.contains(i)).collect::<Vec<_>>());
            (take_batch(&batch, &keep)?, take(ts_arr.as_ref(), &keep, None)?)
        };
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.next_close = self.next_close.min(min_ts.saturating_add(self.gap));
        let inputs = Inputs::evaluate(&self.spec, &batch)?;
        self.buffer.push(Chunk { inputs, ts: ts_arr });
        Ok(())
    }

    fn on_watermark(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        if wm <= self.wm {
            return Ok(());
        }
        self.wm = wm;
        if wm >= self.next_close {
            self.close_sessions(wm, out)?;
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.buffer
            .iter()
            .map(|c| {
                c.ts.get_array_memory_size()
                    + c.inputs.keys.iter().map(|k| k.get_array_memory_size()).sum::<usize>()
                    + c.inputs.args.iter().flatten().map(|a| a.get_array_memory_size()).sum::<usize>()
            })
            .sum()
    }
}
