//! Session window aggregation: per-key gap merging, with state bounded by open sessions.
//!
//! ```text
//!   rows ──► raw buffer (evaluated keys, event time, aggregate inputs)
//!               │ watermark may close a session, or the buffer is large
//!               ▼
//!   raw rows ──► fragments: sort by (keys, time), split where a key's gap > gap,
//!                aggregate each run into partial state (GroupsAccumulator::state)
//!   fragments ∪ open sessions ──► sort by (keys, start), merge those within gap
//!                (GroupsAccumulator::merge_batch)
//!        ├─► sessions with last time + gap ≤ watermark: evaluate, emit, forget
//!        └─► still-open sessions: one partial-state row each
//! ```
//!
//! Between compactions the operator holds at most [`COMPACT_ROWS`] raw rows plus one partial
//! state per open session, so a key that never pauses does not grow its state. A row is late
//! when its own session window `[ts, ts + gap)` ended at or before the watermark.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, UInt32Array};
use datafusion::arrow::compute::{SortColumn, concat, lexsort_to_indices, take};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

use super::window::{Inputs, new_accumulators, take_batch};
use super::window_spec::{WindowAggSpec, WindowKind};
use super::{Emitter, Operator, StateSnapshot, time_millis};
use crate::Result;
use crate::message::Timestamp;

/// Raw rows buffered before they are folded into partial states.
pub const COMPACT_ROWS: usize = 32 * 1024;

/// Buffered, evaluated input rows.
struct Chunk {
    inputs: Inputs,
    ts: ArrayRef,
}

/// Partial aggregates of session pieces: one row each.
struct Fragments {
    keys: Vec<ArrayRef>,
    start: ArrayRef,
    last: ArrayRef,
    states: Vec<Vec<ArrayRef>>,
}

impl Fragments {
    fn len(&self) -> usize {
        self.start.len()
    }

    fn take(&self, idx: &UInt32Array) -> Result<Self> {
        let t = |a: &ArrayRef| -> Result<ArrayRef> { Ok(take(a.as_ref(), idx, None)?) };
        Ok(Self {
            keys: self.keys.iter().map(t).collect::<Result<_>>()?,
            start: t(&self.start)?,
            last: t(&self.last)?,
            states: self
                .states
                .iter()
                .map(|s| s.iter().map(t).collect::<Result<_>>())
                .collect::<Result<_>>()?,
        })
    }

    fn concat(a: &Self, b: &Self) -> Result<Self> {
        let c = |x: &ArrayRef, y: &ArrayRef| -> Result<ArrayRef> {
            Ok(concat(&[x.as_ref(), y.as_ref()])?)
        };
        Ok(Self {
            keys: a
                .keys
                .iter()
                .zip(&b.keys)
                .map(|(x, y)| c(x, y))
                .collect::<Result<_>>()?,
            start: c(&a.start, &b.start)?,
            last: c(&a.last, &b.last)?,
            states: a
                .states
                .iter()
                .zip(&b.states)
                .map(|(xs, ys)| {
                    xs.iter()
                        .zip(ys)
                        .map(|(x, y)| c(x, y))
                        .collect::<Result<_>>()
                })
                .collect::<Result<_>>()?,
        })
    }

    fn size(&self) -> usize {
        self.keys
            .iter()
            .chain([&self.start, &self.last])
            .chain(self.states.iter().flatten())
            .map(|a| a.get_array_memory_size())
            .sum()
    }
}

/// Runtime half of a SESSION [`WindowAggSpec`].
pub struct SessionAggregate {
    spec: WindowAggSpec,
    gap: i64,
    wm: Timestamp,
    buffer: Vec<Chunk>,
    buffered_rows: usize,
    open: Option<Fragments>,
    /// No session (buffered or open) can end before this.
    next_close: Timestamp,
}

/// Sort permutation by (keys, time) and the ranges of equal keys in that order.
fn sort_by_keys(
    keys: &[ArrayRef],
    time: &ArrayRef,
) -> Result<(UInt32Array, Vec<std::ops::Range<usize>>)> {
    let mut cols: Vec<SortColumn> = keys
        .iter()
        .map(|k| SortColumn {
            values: k.clone(),
            options: None,
        })
        .collect();
    cols.push(SortColumn {
        values: time.clone(),
        options: None,
    });
    let order = lexsort_to_indices(&cols, None)?;
    let sorted_keys = keys
        .iter()
        .map(|k| Ok(take(k.as_ref(), &order, None)?))
        .collect::<Result<Vec<_>>>()?;
    let ranges = if sorted_keys.is_empty() {
        std::iter::once(0..order.len()).collect()
    } else {
        datafusion::arrow::compute::partition(&sorted_keys)?.ranges()
    };
    Ok((order, ranges))
}

impl SessionAggregate {
    /// An operator with no state yet.
    pub fn new(spec: WindowAggSpec) -> Result<Self> {
        let WindowKind::Session { gap } = spec.kind else {
            return crate::plan_err!("SessionAggregate needs a SESSION window, got {}", spec.kind);
        };
        Ok(Self {
            spec,
            gap,
            wm: Timestamp::MIN,
            buffer: vec![],
            buffered_rows: 0,
            open: None,
            next_close: Timestamp::MAX,
        })
    }

    fn concat_buffer(&mut self) -> Result<Option<Chunk>> {
        let chunks = std::mem::take(&mut self.buffer);
        self.buffered_rows = 0;
        if chunks.len() <= 1 {
            return Ok(chunks.into_iter().next());
        }
        let cat = |get: &dyn Fn(&Chunk) -> Option<&ArrayRef>| -> Result<Option<ArrayRef>> {
            let parts: Option<Vec<&dyn Array>> =
                chunks.iter().map(|c| get(c).map(|a| a.as_ref())).collect();
            parts.map(|p| Ok(concat(&p)?)).transpose()
        };
        let first = &chunks[0].inputs;
        let missing =
            || crate::Error::Plan("internal: buffered session chunks differ in shape".into());
        let keys = (0..first.keys.len())
            .map(|k| cat(&|c| Some(&c.inputs.keys[k]))?.ok_or_else(missing))
            .collect::<Result<Vec<_>>>()?;
        let args = (0..first.args.len())
            .map(|a| {
                (0..first.args[a].len())
                    .map(|j| cat(&|c| Some(&c.inputs.args[a][j]))?.ok_or_else(missing))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let filters = (0..first.filters.len())
            .map(|f| cat(&|c| c.inputs.filters[f].as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let ts = cat(&|c| Some(&c.ts))?.ok_or_else(missing)?;
        Ok(Some(Chunk {
            inputs: Inputs {
                keys,
                args,
                filters,
            },
            ts,
        }))
    }

    /// Raw rows → one fragment per run of a key's rows within `gap` of each other.
    fn fragments_of(&self, rows: Chunk) -> Result<Fragments> {
        let (order, ranges) = sort_by_keys(&rows.inputs.keys, &rows.ts)?;
        let sorted = rows.inputs.take(&order)?;
        let ts_sorted = take(rows.ts.as_ref(), &order, None)?;
        let ts = ts_sorted.as_primitive::<Int64Type>().values();
        let (mut group_ids, mut firsts, mut starts, mut lasts) =
            (Vec::with_capacity(ts.len()), vec![], vec![], vec![]);
        for range in ranges {
            let mut s = range.start;
            while s < range.end {
                let mut e = s + 1;
                while e < range.end && ts[e] - ts[e - 1] <= self.gap {
                    e += 1;
                }
                group_ids.extend(std::iter::repeat_n(starts.len(), e - s));
                firsts.push(s as u32);
                starts.push(ts[s]);
                lasts.push(ts[e - 1]);
                s = e;
            }
        }
        let n = starts.len();
        let mut accs = new_accumulators(&self.spec)?;
        let mut states = Vec::with_capacity(accs.len());
        for (i, acc) in accs.iter_mut().enumerate() {
            let filter = sorted.filters[i].as_ref().map(|f| f.as_boolean());
            acc.update_batch(&sorted.args[i], &group_ids, filter, n)?;
            states.push(acc.state(EmitTo::All)?);
        }
        let firsts = UInt32Array::from(firsts);
        let keys = sorted
            .keys
            .iter()
            .map(|k| Ok(take(k.as_ref(), &firsts, None)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Fragments {
            keys,
            start: std::sync::Arc::new(Int64Array::from(starts)),
            last: std::sync::Arc::new(Int64Array::from(lasts)),
            states,
        })
    }

    /// Fold buffered rows into the open sessions; emit the sessions the watermark closed.
    fn compact(&mut self, out: &mut Emitter) -> Result<()> {
        let Some(raw) = self.concat_buffer()? else {
            if self.open.is_none() {
                return Ok(());
            }
            return self.merge(None, out);
        };
        let fresh = self.fragments_of(raw)?;
        self.merge(Some(fresh), out)
    }

    fn merge(&mut self, fresh: Option<Fragments>, out: &mut Emitter) -> Result<()> {
        let all = match (self.open.take(), fresh) {
            (Some(a), Some(b)) => Fragments::concat(&a, &b)?,
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return Ok(()),
        };
        let (order, ranges) = sort_by_keys(&all.keys, &all.start)?;
        let all = all.take(&order)?;
        let (starts, lasts) = (
            all.start.as_primitive::<Int64Type>().values(),
            all.last.as_primitive::<Int64Type>().values(),
        );
        // Merge fragments of a key that are within `gap` of each other.
        let mut sessions: Vec<(usize, i64, i64)> = vec![]; // (first fragment, start, last)
        let mut session_of = vec![0usize; all.len()];
        for range in ranges {
            let mut current: Option<usize> = None;
            for f in range {
                match current {
                    Some(s) if starts[f] - sessions[s].2 <= self.gap => {
                        sessions[s].2 = sessions[s].2.max(lasts[f]);
                    }
                    _ => {
                        sessions.push((f, starts[f], lasts[f]));
                        current = Some(sessions.len() - 1);
                    }
                }
                session_of[f] = sessions.len() - 1;
            }
        }
        // Closed sessions get the first group ids, so they can be evaluated with EmitTo::First.
        let closed: Vec<bool> = sessions.iter().map(|s| s.2 + self.gap <= self.wm).collect();
        let n_closed = closed.iter().filter(|c| **c).count();
        let mut remap = vec![0usize; sessions.len()];
        let (mut next_closed, mut next_open) = (0, n_closed);
        for (i, c) in closed.iter().enumerate() {
            if *c {
                remap[i] = next_closed;
                next_closed += 1;
            } else {
                remap[i] = next_open;
                next_open += 1;
            }
        }
        let group_ids: Vec<usize> = session_of.iter().map(|s| remap[*s]).collect();
        let mut accs: Vec<Box<dyn GroupsAccumulator>> = new_accumulators(&self.spec)?;
        for (acc, state) in accs.iter_mut().zip(&all.states) {
            acc.merge_batch(state, &group_ids, sessions.len())?;
        }
        let pick = |want_closed: bool| -> UInt32Array {
            let mut v: Vec<(usize, u32)> = sessions
                .iter()
                .enumerate()
                .filter(|(i, _)| closed[*i] == want_closed)
                .map(|(i, s)| (remap[i], s.0 as u32))
                .collect();
            v.sort_unstable();
            UInt32Array::from(v.into_iter().map(|(_, f)| f).collect::<Vec<_>>())
        };
        let ordered = |want_closed: bool, field: fn(&(usize, i64, i64)) -> i64| -> Vec<i64> {
            let mut v: Vec<(usize, i64)> = sessions
                .iter()
                .enumerate()
                .filter(|(i, _)| closed[*i] == want_closed)
                .map(|(i, s)| (remap[i], field(s)))
                .collect();
            v.sort_unstable();
            v.into_iter().map(|(_, x)| x).collect()
        };
        if n_closed > 0 {
            let aggs = accs
                .iter_mut()
                .map(|a| Ok(a.evaluate(EmitTo::First(n_closed))?))
                .collect::<Result<Vec<_>>>()?;
            let firsts = pick(true);
            let keys = all
                .keys
                .iter()
                .map(|k| Ok(take(k.as_ref(), &firsts, None)?))
                .collect::<Result<Vec<_>>>()?;
            let ends = ordered(true, |s| s.2)
                .into_iter()
                .map(|l| l + self.gap)
                .collect();
            out.emit(
                self.spec
                    .output_batch(ordered(true, |s| s.1), ends, &keys, aggs)?,
            );
        }
        self.next_close = Timestamp::MAX;
        if n_closed < sessions.len() {
            let states = accs
                .iter_mut()
                .map(|a| Ok(a.state(EmitTo::All)?))
                .collect::<Result<Vec<_>>>()?;
            let firsts = pick(false);
            let keys = all
                .keys
                .iter()
                .map(|k| Ok(take(k.as_ref(), &firsts, None)?))
                .collect::<Result<Vec<_>>>()?;
            let lasts = ordered(false, |s| s.2);
            self.next_close = lasts
                .iter()
                .map(|l| l + self.gap)
                .min()
                .unwrap_or(Timestamp::MAX);
            self.open = Some(Fragments {
                keys,
                start: std::sync::Arc::new(Int64Array::from(ordered(false, |s| s.1))),
                last: std::sync::Arc::new(Int64Array::from(lasts)),
                states,
            });
        }
        Ok(())
    }
}

impl Operator for SessionAggregate {
    fn name(&self) -> &str {
        "SessionAggregate"
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let ts = time_millis(batch.column(self.spec.time_col))?;
        let (gap, wm) = (self.gap, self.wm);
        let late: Vec<bool> = ts.iter().map(|t| t.saturating_add(gap) <= wm).collect();
        let ts_arr: ArrayRef = std::sync::Arc::new(Int64Array::from(ts.to_vec()));
        drop(ts);
        let (batch, ts_arr) = if late.iter().any(|l| *l) {
            let idx = |want: bool| {
                UInt32Array::from(
                    (0..late.len() as u32)
                        .filter(|i| late[*i as usize] == want)
                        .collect::<Vec<_>>(),
                )
            };
            out.late(take_batch(&batch, &idx(true))?);
            let keep = idx(false);
            (
                take_batch(&batch, &keep)?,
                take(ts_arr.as_ref(), &keep, None)?,
            )
        } else {
            (batch, ts_arr)
        };
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let min_ts = ts_arr
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .copied()
            .min()
            .unwrap_or(Timestamp::MAX);
        self.next_close = self.next_close.min(min_ts.saturating_add(self.gap));
        self.buffered_rows += batch.num_rows();
        self.buffer.push(Chunk {
            inputs: Inputs::evaluate(&self.spec, &batch)?,
            ts: ts_arr,
        });
        if self.buffered_rows >= COMPACT_ROWS {
            self.compact(out)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        if wm <= self.wm {
            return Ok(());
        }
        self.wm = wm;
        if wm >= self.next_close {
            self.compact(out)?;
        }
        Ok(())
    }

    /// Table `fragments`: the open session pieces (keys, first and last event time, partial
    /// states), with the raw buffer folded in first (not merged or emitted: that waits for
    /// the watermark, as before), and the key group of the keys.
    fn snapshot(&mut self, key_groups: usize) -> Result<Option<StateSnapshot>> {
        if let Some(raw) = self.concat_buffer()? {
            let fresh = self.fragments_of(raw)?;
            self.open = Some(match self.open.take() {
                Some(open) => Fragments::concat(&open, &fresh)?,
                None => fresh,
            });
        }
        let mut tables = vec![];
        if let Some(f) = &self.open {
            let mut names = vec![];
            let mut cols = vec![];
            for (i, k) in f.keys.iter().enumerate() {
                names.push(format!("k{i}"));
                cols.push(k.clone());
            }
            names.extend(["__start".to_string(), "__last".to_string()]);
            cols.extend([f.start.clone(), f.last.clone()]);
            for (i, st) in f.states.iter().flatten().enumerate() {
                names.push(format!("s{i}"));
                cols.push(st.clone());
            }
            let batch = crate::state::keyed_batch(&names, cols, &f.keys, f.len(), key_groups)?;
            tables.push(("fragments".to_string(), batch));
        }
        Ok(Some(StateSnapshot {
            tables,
            meta: serde_json::json!({ "wm": self.wm }),
        }))
    }

    fn restore(&mut self, snapshot: StateSnapshot) -> Result<()> {
        self.wm = snapshot.meta_i64("wm").unwrap_or(Timestamp::MIN);
        let Some(t) = snapshot.table("fragments") else {
            return Ok(());
        };
        let nkeys = self.spec.keys.len();
        let keys: Vec<ArrayRef> = (0..nkeys).map(|i| t.column(i).clone()).collect();
        let start = t.column(nkeys).clone();
        let last = t.column(nkeys + 1).clone();
        let mut col = nkeys + 2;
        let mut states = vec![];
        for w in super::state_widths(&self.spec.aggs)? {
            states.push((col..col + w).map(|c| t.column(c).clone()).collect());
            col += w;
        }
        self.next_close = last
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .map(|l| l.saturating_add(self.gap))
            .min()
            .unwrap_or(Timestamp::MAX);
        self.open = Some(Fragments {
            keys,
            start,
            last,
            states,
        });
        Ok(())
    }

    fn state_size(&self) -> usize {
        let raw: usize = self
            .buffer
            .iter()
            .map(|c| {
                c.ts.get_array_memory_size()
                    + c.inputs
                        .keys
                        .iter()
                        .map(|k| k.get_array_memory_size())
                        .sum::<usize>()
                    + c.inputs
                        .args
                        .iter()
                        .flatten()
                        .map(|a| a.get_array_memory_size())
                        .sum::<usize>()
            })
            .sum();
        raw + self.open.as_ref().map_or(0, Fragments::size)
    }
}

#[cfg(test)]
mod tests {
    use crate::operators::test_util::{rescaled_run, stage_spec, through};

    #[tokio::test]
    async fn snapshot_restore_at_other_parallelism_gives_the_same_sessions() {
        let query = "SELECT window_start, window_end, k, COUNT(*) AS n, SUM(v) AS s \
                     FROM TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '1' SECOND)) \
                     GROUP BY window_start, window_end, k";
        let (spec, keys, source) = stage_spec(query).await;
        // Keys pause now and then, so sessions close on both sides of the snapshot.
        let batch = |from: i64| {
            let rows: Vec<(i64, i64, i64)> = (0..400)
                .filter(|i| (i / 80) % 3 != 1)
                .map(|i| (from + i * 25, (i * 7) % 20, i))
                .collect();
            (through(&source, &rows), from + 400 * 25 - 1000)
        };
        let before: Vec<_> = (0..3).map(|b| batch(b * 10_000)).collect();
        let after: Vec<_> = (3..6).map(|b| batch(b * 10_000)).collect();
        let straight = rescaled_run(&spec, &keys, &before, &after, 1, 0);
        assert!(straight.len() > 40, "{}", straight.len());
        for (p1, p2) in [(1, 1), (2, 3), (3, 1)] {
            let got = rescaled_run(&spec, &keys, &before, &after, p1, p2);
            assert_eq!(got, straight, "{p1} -> {p2}");
        }
    }
}
