//! Sliced window aggregation for TUMBLE, HOP and CUMULATE.
//!
//! ```text
//!   row ──► slice (ts floored to the slice width) ──► live slice: GroupValues + GroupsAccumulators
//!                                                        │ watermark ≥ slice end
//!                                                        ▼
//!   TUMBLE: the slice *is* the window ──► evaluate, emit, free
//!   HOP / CUMULATE: freeze the slice into partial states (keys + state columns)
//!                   ──► each window ending ≤ watermark merges its slices' states, evaluates, emits
//!                   ──► a frozen slice is freed once the last window containing it has fired
//! ```
//!
//! Keys are interned with DataFusion's vectorized `GroupValues`, aggregates are DataFusion's
//! `GroupsAccumulator`s (or row accumulators behind `GroupsAccumulatorAdapter`, e.g. for
//! COUNT(DISTINCT)), so a batch is processed column-wise, never row by row.
//!
//! A row is late only when every window containing it has fired; it is then handed to the
//! late-data output. A row whose slice was already frozen but whose later windows are still
//! open is added to those windows (Flink's semantics for hopping windows).

use std::collections::{BTreeMap, BTreeSet};

use datafusion::arrow::array::{ArrayRef, AsArray, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

use super::window_spec::{WindowAggSpec, WindowKind};
use super::{Emitter, Operator, StateSnapshot, eval, time_millis};
use crate::Result;
use crate::message::Timestamp;

pub(crate) use groups::{Groups, new_accumulators};

mod groups {
    //! Group-key interning shared by the window operators.
    use datafusion::arrow::array::ArrayRef;
    use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
    use datafusion::physical_expr::GroupsAccumulatorAdapter;
    use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
    use datafusion::physical_plan::aggregates::order::GroupOrdering;

    use crate::Result;
    use crate::operators::WindowAggSpec;

    /// Interned group keys; a window with no keys has a single group.
    pub(crate) struct Groups {
        values: Option<Box<dyn GroupValues>>,
        single: bool,
    }

    impl Groups {
        pub(crate) fn new(spec: &WindowAggSpec) -> Result<Self> {
            let values = if spec.keys.is_empty() {
                None
            } else {
                Some(new_group_values(
                    spec.key_schema.clone(),
                    &GroupOrdering::None,
                )?)
            };
            Ok(Self {
                values,
                single: false,
            })
        }

        /// Group index of each of `rows` rows with key columns `keys`.
        pub(crate) fn intern(
            &mut self,
            keys: &[ArrayRef],
            rows: usize,
            out: &mut Vec<usize>,
        ) -> Result<()> {
            match &mut self.values {
                Some(v) => v.intern(keys, out)?,
                None => {
                    out.clear();
                    out.resize(rows, 0);
                    self.single |= rows > 0;
                }
            }
            Ok(())
        }

        pub(crate) fn len(&self) -> usize {
            match &self.values {
                Some(v) => v.len(),
                None => usize::from(self.single),
            }
        }

        pub(crate) fn emit(&mut self) -> Result<Vec<ArrayRef>> {
            match &mut self.values {
                Some(v) => Ok(v.emit(EmitTo::All)?),
                None => Ok(vec![]),
            }
        }

        pub(crate) fn size(&self) -> usize {
            self.values.as_ref().map_or(0, |v| v.size())
        }
    }

    /// One accumulator per aggregate, as DataFusion's hash aggregation makes them.
    pub(crate) fn new_accumulators(
        spec: &WindowAggSpec,
    ) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
        spec.aggs
            .iter()
            .map(|a| -> Result<Box<dyn GroupsAccumulator>> {
                if a.groups_accumulator_supported() {
                    Ok(a.create_groups_accumulator()?)
                } else {
                    let captured = a.clone();
                    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                        captured.create_accumulator()
                    })))
                }
            })
            .collect()
    }
}

/// Aggregation inputs of one batch, evaluated once.
pub(crate) struct Inputs {
    pub keys: Vec<ArrayRef>,
    pub args: Vec<Vec<ArrayRef>>,
    pub filters: Vec<Option<ArrayRef>>,
}

impl Inputs {
    pub(crate) fn evaluate(spec: &WindowAggSpec, batch: &RecordBatch) -> Result<Self> {
        let keys = spec
            .keys
            .iter()
            .map(|k| eval(k, batch))
            .collect::<Result<Vec<_>>>()?;
        let (args, filters) = super::aggregate_inputs(&spec.aggs, &spec.agg_filters, batch)?;
        Ok(Self {
            keys,
            args,
            filters,
        })
    }

    pub(crate) fn take(&self, idx: &UInt32Array) -> Result<Self> {
        let t = |a: &ArrayRef| -> Result<ArrayRef> { Ok(take(a.as_ref(), idx, None)?) };
        Ok(Self {
            keys: self.keys.iter().map(t).collect::<Result<_>>()?,
            args: self
                .args
                .iter()
                .map(|v| v.iter().map(t).collect::<Result<_>>())
                .collect::<Result<_>>()?,
            filters: self
                .filters
                .iter()
                .map(|f| f.as_ref().map(t).transpose())
                .collect::<Result<_>>()?,
        })
    }
}

struct Slice {
    groups: Groups,
    accs: Vec<Box<dyn GroupsAccumulator>>,
}

impl Slice {
    /// Its groups' keys and partial states (the accumulators' `state()`), consuming it.
    fn freeze(mut self) -> Result<Frozen> {
        let rows = self.groups.len();
        let keys = self.groups.emit()?;
        let states = self
            .accs
            .iter_mut()
            .map(|a| Ok(a.state(EmitTo::All)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Frozen { keys, states, rows })
    }
}

/// Partial states of a closed slice.
struct Frozen {
    keys: Vec<ArrayRef>,
    states: Vec<Vec<ArrayRef>>,
    rows: usize,
}

/// Runtime half of a TUMBLE / HOP / CUMULATE [`WindowAggSpec`].
pub struct SlicedWindowAggregate {
    spec: WindowAggSpec,
    wm: Timestamp,
    live: BTreeMap<Timestamp, Slice>,
    frozen: BTreeMap<Timestamp, Vec<Frozen>>,
    pending: BTreeSet<Timestamp>,
    scratch: Vec<usize>,
}

impl SlicedWindowAggregate {
    /// An operator with no state yet.
    pub fn new(spec: WindowAggSpec) -> Result<Self> {
        Ok(Self {
            spec,
            wm: Timestamp::MIN,
            live: BTreeMap::new(),
            frozen: BTreeMap::new(),
            pending: BTreeSet::new(),
            scratch: Vec::new(),
        })
    }

    fn is_tumble(&self) -> bool {
        matches!(self.spec.kind, WindowKind::Tumble { .. })
    }

    fn feed(&mut self, slice_start: Timestamp, inputs: &Inputs, rows: usize) -> Result<()> {
        let Self {
            spec,
            live,
            pending,
            scratch,
            wm,
            ..
        } = self;
        let slice = match live.entry(slice_start) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                pending.extend(
                    spec.kind
                        .window_ends(slice_start)
                        .into_iter()
                        .filter(|end| end > wm),
                );
                e.insert(Slice {
                    groups: Groups::new(spec)?,
                    accs: new_accumulators(spec)?,
                })
            }
        };
        slice.groups.intern(&inputs.keys, rows, scratch)?;
        let total = slice.groups.len();
        for (i, acc) in slice.accs.iter_mut().enumerate() {
            let filter = inputs.filters[i].as_ref().map(|f| f.as_boolean());
            acc.update_batch(&inputs.args[i], scratch, filter, total)?;
        }
        Ok(())
    }

    fn evaluate(accs: &mut [Box<dyn GroupsAccumulator>]) -> Result<Vec<ArrayRef>> {
        accs.iter_mut()
            .map(|a| Ok(a.evaluate(EmitTo::All)?))
            .collect()
    }

    fn fire_tumble(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        let WindowKind::Tumble { size, .. } = self.spec.kind else {
            return Ok(());
        };
        while let Some(entry) = self.live.first_entry() {
            let start = *entry.key();
            if start + size > wm {
                break;
            }
            let mut slice = entry.remove();
            self.pending.remove(&(start + size));
            let keys = slice.groups.emit()?;
            let aggs = Self::evaluate(&mut slice.accs)?;
            let n = aggs
                .first()
                .map_or(0, |a| a.len())
                .max(keys.first().map_or(0, |k| k.len()));
            out.emit(
                self.spec
                    .output_batch(vec![start; n], vec![start + size; n], &keys, aggs)?,
            );
        }
        Ok(())
    }

    fn freeze_closed_slices(&mut self, wm: Timestamp) -> Result<()> {
        let width = self.spec.kind.slice_width();
        while let Some(entry) = self.live.first_entry() {
            let start = *entry.key();
            if start + width > wm {
                break;
            }
            let frozen = entry.remove().freeze()?;
            self.frozen.entry(start).or_default().push(frozen);
        }
        Ok(())
    }

    /// A live slice holding the partial states `states` of groups `keys`.
    fn rebuild(
        &mut self,
        keys: &[ArrayRef],
        states: &[Vec<ArrayRef>],
        rows: usize,
    ) -> Result<Slice> {
        let mut slice = Slice {
            groups: Groups::new(&self.spec)?,
            accs: new_accumulators(&self.spec)?,
        };
        slice.groups.intern(keys, rows, &mut self.scratch)?;
        let total = slice.groups.len();
        for (acc, st) in slice.accs.iter_mut().zip(states) {
            acc.merge_batch(st, &self.scratch, total)?;
        }
        Ok(slice)
    }

    fn fire_window(&mut self, end: Timestamp, out: &mut Emitter) -> Result<()> {
        let start = self.spec.kind.window_start(end);
        let mut groups = Groups::new(&self.spec)?;
        let mut accs = new_accumulators(&self.spec)?;
        for (_, parts) in self.frozen.range(start..end) {
            for part in parts {
                groups.intern(&part.keys, part.rows, &mut self.scratch)?;
                let total = groups.len();
                for (acc, state) in accs.iter_mut().zip(&part.states) {
                    acc.merge_batch(state, &self.scratch, total)?;
                }
            }
        }
        let n = groups.len();
        if n == 0 {
            return Ok(());
        }
        let keys = groups.emit()?;
        let aggs = Self::evaluate(&mut accs)?;
        out.emit(
            self.spec
                .output_batch(vec![start; n], vec![end; n], &keys, aggs)?,
        );
        Ok(())
    }
}

impl Operator for SlicedWindowAggregate {
    fn name(&self) -> &str {
        "WindowAggregate"
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let kind = self.spec.kind;
        let ts = time_millis(batch.column(self.spec.time_col))?;
        let first = kind.slice_start(ts[0]);
        let single = ts
            .iter()
            .all(|&t| t >= first && t - first < kind.slice_width());
        if single && kind.last_window_end(first) > self.wm {
            let inputs = Inputs::evaluate(&self.spec, &batch)?;
            return self.feed(first, &inputs, rows);
        }
        // Rows of several slices: group row indices by slice (few distinct slices per batch).
        let mut by_slice: Vec<(Timestamp, Vec<u32>)> = Vec::new();
        for (i, &t) in ts.iter().enumerate() {
            let s = kind.slice_start(t);
            match by_slice.iter_mut().rev().find(|(k, _)| *k == s) {
                Some((_, v)) => v.push(i as u32),
                None => by_slice.push((s, vec![i as u32])),
            }
        }
        drop(ts);
        let inputs = Inputs::evaluate(&self.spec, &batch)?;
        for (s, idx) in by_slice {
            let idx = UInt32Array::from(idx);
            if kind.last_window_end(s) <= self.wm {
                out.late(take_batch(&batch, &idx)?);
            } else {
                self.feed(s, &inputs.take(&idx)?, idx.len())?;
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        if wm <= self.wm {
            return Ok(());
        }
        self.wm = wm;
        if self.is_tumble() {
            return self.fire_tumble(wm, out);
        }
        self.freeze_closed_slices(wm)?;
        while let Some(&end) = self.pending.first() {
            if end > wm {
                break;
            }
            self.pending.pop_first();
            self.fire_window(end, out)?;
        }
        let kind = self.spec.kind;
        self.frozen.retain(|s, _| kind.last_window_end(*s) > wm);
        Ok(())
    }

    /// Table `slices`: one row per group and slice, live slices as partial states (the
    /// accumulators' `state()`, merged back right after, so the operator runs on), frozen
    /// ones as they are.
    fn snapshot(&mut self, key_groups: usize) -> Result<Option<StateSnapshot>> {
        let mut parts: Vec<SlicePart> = vec![];
        let starts: Vec<Timestamp> = self.live.keys().copied().collect();
        for start in starts {
            let Some(slice) = self.live.remove(&start) else {
                continue;
            };
            let Frozen { keys, states, rows } = slice.freeze()?;
            let rebuilt = self.rebuild(&keys, &states, rows)?;
            self.live.insert(start, rebuilt);
            parts.push(SlicePart {
                start,
                frozen: false,
                keys,
                states: states.concat(),
                rows,
            });
        }
        for (start, frozen) in &self.frozen {
            for f in frozen {
                parts.push(SlicePart {
                    start: *start,
                    frozen: true,
                    keys: f.keys.clone(),
                    states: f.states.concat(),
                    rows: f.rows,
                });
            }
        }
        let mut tables = vec![];
        if !parts.is_empty() {
            tables.push(("slices".to_string(), slices_table(&parts, key_groups)?));
        }
        Ok(Some(StateSnapshot {
            tables,
            meta: serde_json::json!({ "wm": self.wm }),
        }))
    }

    fn restore(&mut self, snapshot: StateSnapshot) -> Result<()> {
        self.wm = snapshot.meta_i64("wm").unwrap_or(Timestamp::MIN);
        let Some(table) = snapshot.table("slices") else {
            return Ok(());
        };
        let nkeys = self.spec.keys.len();
        let widths = super::state_widths(&self.spec.aggs)?;
        let starts = table
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let frozen = table.column(1).as_boolean();
        let mut groups: BTreeMap<(Timestamp, bool), Vec<u32>> = BTreeMap::new();
        for r in 0..table.num_rows() {
            groups
                .entry((starts.value(r), frozen.value(r)))
                .or_default()
                .push(r as u32);
        }
        for ((start, is_frozen), idx) in groups {
            let idx = UInt32Array::from(idx);
            let part = take_batch(table, &idx)?;
            let keys: Vec<ArrayRef> = (0..nkeys).map(|i| part.column(2 + i).clone()).collect();
            let mut col = 2 + nkeys;
            let mut states = vec![];
            for w in &widths {
                states.push((col..col + w).map(|c| part.column(c).clone()).collect());
                col += w;
            }
            let rows = idx.len();
            if is_frozen {
                self.frozen
                    .entry(start)
                    .or_default()
                    .push(Frozen { keys, states, rows });
            } else {
                let slice = match self.live.remove(&start) {
                    // Rows of one slice from several old instances: merge into one.
                    Some(mut s) => {
                        s.groups.intern(&keys, rows, &mut self.scratch)?;
                        let total = s.groups.len();
                        for (acc, st) in s.accs.iter_mut().zip(&states) {
                            acc.merge_batch(st, &self.scratch, total)?;
                        }
                        s
                    }
                    None => self.rebuild(&keys, &states, rows)?,
                };
                self.live.insert(start, slice);
            }
        }
        let kind = self.spec.kind;
        for start in self.live.keys().chain(self.frozen.keys()) {
            self.pending.extend(
                kind.window_ends(*start)
                    .into_iter()
                    .filter(|end| *end > self.wm),
            );
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        let live: usize = self
            .live
            .values()
            .map(|s| s.groups.size() + s.accs.iter().map(|a| a.size()).sum::<usize>())
            .sum();
        let frozen: usize = self
            .frozen
            .values()
            .flatten()
            .map(|f| {
                f.keys
                    .iter()
                    .map(|k| k.get_array_memory_size())
                    .sum::<usize>()
                    + f.states
                        .iter()
                        .flatten()
                        .map(|s| s.get_array_memory_size())
                        .sum::<usize>()
            })
            .sum();
        live + frozen
    }
}

/// One slice's groups in a snapshot.
struct SlicePart {
    start: Timestamp,
    frozen: bool,
    keys: Vec<ArrayRef>,
    /// Every aggregate's state columns, in order.
    states: Vec<ArrayRef>,
    rows: usize,
}

/// The `slices` table of a snapshot: slice start, frozen or live, keys, every state column,
/// and the key group.
fn slices_table(parts: &[SlicePart], key_groups: usize) -> Result<RecordBatch> {
    use datafusion::arrow::array::{BooleanArray, Int64Array};
    let nkeys = parts[0].keys.len();
    let ncols = nkeys + parts[0].states.len();
    let mut columns: Vec<ArrayRef> = vec![
        std::sync::Arc::new(Int64Array::from_iter_values(
            parts
                .iter()
                .flat_map(|p| std::iter::repeat_n(p.start, p.rows)),
        )),
        std::sync::Arc::new(BooleanArray::from_iter(
            parts
                .iter()
                .flat_map(|p| std::iter::repeat_n(Some(p.frozen), p.rows)),
        )),
    ];
    let mut keys = vec![];
    for c in 0..ncols {
        let arrays: Vec<&dyn datafusion::arrow::array::Array> = parts
            .iter()
            .map(|p| {
                if c < nkeys {
                    p.keys[c].as_ref()
                } else {
                    p.states[c - nkeys].as_ref()
                }
            })
            .collect();
        let col = datafusion::arrow::compute::concat(&arrays)?;
        if c < nkeys {
            keys.push(col.clone());
        }
        columns.push(col);
    }
    let mut names = vec!["__slice".to_string(), "__frozen".to_string()];
    names.extend((0..ncols).map(|c| format!("c{c}")));
    let rows = parts.iter().map(|p| p.rows).sum();
    crate::state::keyed_batch(&names, columns, &keys, rows, key_groups)
}

pub(crate) fn take_batch(batch: &RecordBatch, idx: &UInt32Array) -> Result<RecordBatch> {
    Ok(datafusion::arrow::compute::take_record_batch(batch, idx)?)
}

#[cfg(test)]
mod tests {
    use crate::operators::test_util::{rescaled_run, stage_spec, through};

    /// Batches, each with the watermark that follows it.
    type Timed = Vec<(datafusion::arrow::record_batch::RecordBatch, i64)>;

    /// Rows: 40 keys over 60 s, with windows open at the snapshot.
    fn input(ops: &[crate::operators::OpSpec]) -> (Timed, Timed) {
        let batch = |from: i64| {
            let rows: Vec<(i64, i64, i64)> =
                (0..500).map(|i| (from + i * 20, (i * 7) % 40, i)).collect();
            (through(ops, &rows), from + 500 * 20 - 1000)
        };
        let before = (0..3).map(|b| batch(b * 10_000)).collect();
        let after = (3..6).map(|b| batch(b * 10_000)).collect();
        (before, after)
    }

    #[tokio::test]
    async fn snapshot_restore_at_other_parallelism_gives_the_same_rows() {
        for query in [
            "SELECT window_start, k, COUNT(*) AS n, SUM(v) AS s, COUNT(DISTINCT v) AS d \
             FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)) \
             GROUP BY window_start, window_end, k",
            "SELECT window_start, window_end, k, MAX(v) AS m, AVG(v) AS a \
             FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '15' SECOND)) \
             GROUP BY window_start, window_end, k",
            "SELECT window_start, window_end, COUNT(*) AS n \
             FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '20' SECOND)) \
             GROUP BY window_start, window_end",
        ] {
            let (spec, keys, source) = stage_spec(query).await;
            let (before, after) = input(&source);
            let straight = rescaled_run(&spec, &keys, &before, &after, 1, 0);
            assert!(straight.len() > 10, "{query}: {}", straight.len());
            for (p1, p2) in [(1, 1), (2, 3), (3, 1), (1, 2)] {
                let got = rescaled_run(&spec, &keys, &before, &after, p1, p2);
                assert_eq!(got, straight, "{query} at {p1} -> {p2}");
            }
        }
    }
}
