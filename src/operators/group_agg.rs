//! GROUP BY without a window TVF: the updating (changelog) aggregate, and the aggregate over an
//! already-windowed stream (grouped by its `window_start, window_end`, as Nexmark q5's
//! "maximum per window" is).
//!
//! Keys are interned with DataFusion's `GroupValues` into dense group ids, and each group's
//! key is kept once in Arrow's row format. A batch's rows are bucketed by group (a counting
//! sort) and every aggregate's state, held per aggregate over all groups (`agg_columns.rs`:
//! typed vectors for the common aggregates, a DataFusion `Accumulator` per group for the
//! rest), takes each touched group's span of rows. Results are evaluated for the touched groups
//! only, straight into Arrow arrays.
//!
//! - *Updating*: after each batch, every touched group emits -U (its previous result) and +U
//!   (the new one), +I when it is new, -D when its last row was retracted; nothing when the
//!   result did not change (as Flink does). The previous result is evaluated before the batch
//!   is applied rather than stored per group (aggregates are deterministic, so it is what was
//!   emitted). State is one entry per key ever seen.
//! - *Windowed*: one table per `window_end`; when the watermark reaches it the window's
//!   groups are emitted once and freed (append-only).
//! - `'table.exec.state.ttl'` (updating only): a group not written for that long (wall clock,
//!   as Flink's processing-time TTL; its write time survives a restore, so downtime counts) is
//!   dropped without output, and a later row of its key starts it afresh. Groups are swept at
//!   most every tenth of the TTL; the interned keys are rebuilt without them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::agg_columns::{AggColumn, Span, agg_columns, retain_at};
use super::{Emitter, Operator, StateSnapshot, aggregate_inputs, eval, split_by_time};
use crate::Result;
use crate::changelog::{self, RowKind};
use crate::message::Timestamp;

/// The static description of a non-TVF aggregate.
#[derive(Debug, Clone)]
pub struct GroupAggSpec {
    /// GROUP BY expressions over the input.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Schema of the key columns (for interning).
    pub key_schema: SchemaRef,
    /// Aggregates, DataFusion's.
    pub aggs: Vec<Arc<AggregateFunctionExpr>>,
    /// Per aggregate: its FILTER (WHERE ...) predicate.
    pub agg_filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Keys then aggregates (then the op column when the output is updating).
    pub output_schema: SchemaRef,
    /// Windowed: the input column holding each row's `window_end`.
    pub window_end: Option<usize>,
    /// Whether the input is a changelog (-U/-D rows are retracted).
    pub input_updating: bool,
    /// Per aggregate over a changelog: MIN, MAX or a DISTINCT aggregate, kept as a multiset
    /// of values so any row can be taken back ([`super::MultisetAccumulator`]).
    /// With the argument's type.
    pub multiset: Vec<Option<(super::Multiset, datafusion::arrow::datatypes::DataType)>>,
    /// `'table.exec.state.ttl'`: drop a group not written for this long (updating only).
    pub ttl: Option<std::time::Duration>,
}

impl GroupAggSpec {
    fn updating_output(&self) -> bool {
        self.window_end.is_none()
    }
}

impl fmt::Display for GroupAggSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self.keys.iter().map(|k| k.to_string()).collect();
        let aggs: Vec<String> = self.aggs.iter().map(|a| a.name().to_string()).collect();
        match self.window_end {
            Some(c) => write!(
                f,
                "GroupAggregate (per window, fires at window_end col {c}): keys [{}] aggs [{}]",
                keys.join(", "),
                aggs.join(", ")
            ),
            None => write!(
                f,
                "GroupAggregate (updating{}): keys [{}] aggs [{}] [changelog]",
                if self.input_updating {
                    ", retracting"
                } else {
                    ""
                },
                keys.join(", "),
                aggs.join(", ")
            ),
        }
    }
}

/// The wall clock in ms (state TTL times are absolute, as Flink's).
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Groups of one table: interned keys, each group's key row and row count, and every
/// aggregate's state over all groups (see `agg_columns.rs`). Group ids are dense, in order
/// of first sight.
struct GroupTable {
    /// Key → group id (`None` without GROUP BY keys: one group, id 0).
    values: Option<Box<dyn GroupValues>>,
    /// Each group's key in Arrow's row format, by id (for output and snapshots).
    keys: Option<(RowConverter, Rows)>,
    /// Per group: rows added minus rows taken back.
    rows: Vec<i64>,
    /// Per group: when it was last written (wall clock, ms), for the state TTL.
    written_ms: Vec<i64>,
    /// Per aggregate: its state for every group.
    aggs: Vec<Box<dyn AggColumn>>,
    /// Scratch: the last batch's group id per row.
    ids: Vec<usize>,
    /// Scratch, per group id: `u32::MAX`, or while a batch is bucketed its row count, then
    /// its next slot.
    slot: Vec<u32>,
}

/// What one batch did to an updating table, for its changelog.
struct Changes {
    /// The groups touched, in order of first sight in the batch.
    touched: Vec<u32>,
    /// The touched groups that had rows before the batch (in `touched` order)...
    before: Vec<u32>,
    /// ...and their results then, per aggregate: what was last emitted for them.
    old: Vec<ArrayRef>,
}

impl GroupTable {
    fn new(spec: &GroupAggSpec) -> Result<Self> {
        let (values, keys) = if spec.keys.is_empty() {
            (None, None)
        } else {
            let fields = spec
                .key_schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect();
            let converter = RowConverter::new(fields)?;
            let rows = converter.empty_rows(0, 0);
            let values = new_group_values(spec.key_schema.clone(), &GroupOrdering::None)?;
            (Some(values), Some((converter, rows)))
        };
        let aggs = agg_columns(&spec.aggs, &spec.multiset, spec.input_updating)?;
        Ok(Self {
            values,
            keys,
            rows: vec![],
            written_ms: vec![],
            aggs,
            ids: vec![],
            slot: vec![],
        })
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    /// Room for `groups` groups (new ones empty).
    fn grow(&mut self, groups: usize) {
        self.rows.resize(groups, 0);
        self.written_ms.resize(groups, 0);
        for a in &mut self.aggs {
            a.grow(groups);
        }
    }

    /// Add (and retract) the rows of `batch`. A group last written before `expired_before`
    /// (the state TTL) is started afresh, as if it had been dropped: expired state is never
    /// used, swept or not. With `want_old`, the touched groups' results before the batch are
    /// kept for the changelog.
    fn update(
        &mut self,
        spec: &GroupAggSpec,
        batch: &RecordBatch,
        expired_before: Option<i64>,
        want_old: bool,
    ) -> Result<Changes> {
        let rows = batch.num_rows();
        let keys = spec
            .keys
            .iter()
            .map(|k| eval(k, batch))
            .collect::<Result<Vec<ArrayRef>>>()?;
        match &mut self.values {
            Some(v) => v.intern(&keys, &mut self.ids)?,
            None => {
                self.ids.clear();
                self.ids.resize(rows, 0);
            }
        }
        // Bucket rows by group (a counting sort); a new group's first row gives its key.
        let known = self.len();
        let mut touched: Vec<u32> = vec![];
        let mut firsts: Vec<u32> = vec![];
        for (row, id) in self.ids.iter().enumerate() {
            if *id >= self.slot.len() {
                self.slot.resize(*id + 1, u32::MAX);
            }
            let slot = &mut self.slot[*id];
            if *slot == u32::MAX {
                *slot = 0;
                touched.push(*id as u32);
                if *id >= known {
                    firsts.push(row as u32);
                }
            }
            *slot += 1;
        }
        if !firsts.is_empty() {
            self.grow(known + firsts.len());
            if let Some((converter, key_rows)) = &mut self.keys {
                let idx = UInt32Array::from(firsts);
                let new_keys = keys
                    .iter()
                    .map(|k| Ok(take(k.as_ref(), &idx, None)?))
                    .collect::<Result<Vec<_>>>()?;
                converter.append(key_rows, &new_keys)?;
            }
        }
        let mut spans = Vec::with_capacity(touched.len());
        let mut offset = 0u32;
        for g in &touched {
            let n = self.slot[*g as usize];
            self.slot[*g as usize] = offset;
            spans.push(Span {
                group: *g,
                from: offset,
                to: offset + n,
            });
            offset += n;
        }
        let mut order = vec![0u32; rows];
        for (row, id) in self.ids.iter().enumerate() {
            let slot = &mut self.slot[*id];
            order[*slot as usize] = row as u32;
            *slot += 1;
        }
        for g in &touched {
            self.slot[*g as usize] = u32::MAX;
        }
        // Expired groups start afresh.
        if let Some(before) = expired_before {
            let expired: Vec<u32> = touched
                .iter()
                .copied()
                .filter(|g| {
                    let g = *g as usize;
                    self.written_ms[g] < before && self.rows[g] != 0
                })
                .collect();
            for g in &expired {
                self.rows[*g as usize] = 0;
            }
            for a in &mut self.aggs {
                a.reset(&expired);
            }
        }
        let (before, old) = if want_old {
            self.live_results(&touched)?
        } else {
            (vec![], vec![])
        };
        // Reorder every input column once so each group's rows are one contiguous span
        // (a zero-copy slice for the aggregates kept per group), instead of a gather per
        // group and aggregate.
        let (args, filters) = aggregate_inputs(&spec.aggs, &spec.agg_filters, batch)?;
        let identity = order.iter().enumerate().all(|(i, r)| i == *r as usize);
        let idx = UInt32Array::from(order);
        // Aggregates over the same column get the same array: gather it once.
        let mut gathered: Vec<(ArrayRef, ArrayRef)> = vec![];
        let mut sort = |a: &ArrayRef| -> Result<ArrayRef> {
            if identity {
                return Ok(a.clone());
            }
            if let Some((_, s)) = gathered.iter().find(|(o, _)| Arc::ptr_eq(o, a)) {
                return Ok(s.clone());
            }
            let s = take(a.as_ref(), &idx, None)?;
            gathered.push((a.clone(), s.clone()));
            Ok(s)
        };
        let args = args
            .iter()
            .map(|cols| cols.iter().map(&mut sort).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        let filters = filters
            .iter()
            .map(|f| f.as_ref().map(&mut sort).transpose())
            .collect::<Result<Vec<_>>>()?;
        // Over a changelog: which rows accumulate (+I/+U) and which retract (-U/-D).
        let accumulate: Option<BooleanArray> = match spec.input_updating {
            true => changelog::ops_of(batch).map(|ops| {
                idx.values()
                    .iter()
                    .map(|r| Some(RowKind::from_i8(ops[*r as usize]).is_accumulate()))
                    .collect()
            }),
            false => None,
        };
        for s in &spans {
            let n = &mut self.rows[s.group as usize];
            match &accumulate {
                Some(mask) => {
                    for r in s.from..s.to {
                        *n += if mask.value(r as usize) { 1 } else { -1 };
                    }
                }
                None => *n += i64::from(s.to - s.from),
            }
        }
        for (i, agg) in self.aggs.iter_mut().enumerate() {
            agg.update(&spans, &args[i], filters[i].as_ref(), accumulate.as_ref())?;
        }
        Ok(Changes {
            touched,
            before,
            old,
        })
    }

    /// Of `groups`, those holding rows, and their results per aggregate.
    fn live_results(&mut self, groups: &[u32]) -> Result<(Vec<u32>, Vec<ArrayRef>)> {
        let live: Vec<u32> = groups
            .iter()
            .copied()
            .filter(|g| self.rows[*g as usize] > 0)
            .collect();
        let results = self
            .aggs
            .iter_mut()
            .map(|a| a.evaluate(&live))
            .collect::<Result<Vec<_>>>()?;
        Ok((live, results))
    }

    /// Drop the groups not written since `before_ms`; the interned keys are rebuilt.
    fn expire(&mut self, spec: &GroupAggSpec, before_ms: i64) -> Result<()> {
        let keep: Vec<u32> = (0..self.len() as u32)
            .filter(|g| self.written_ms[*g as usize] >= before_ms)
            .collect();
        if keep.len() == self.len() {
            return Ok(());
        }
        // The interned keys are rebuilt from the kept ones; the rest is kept in place.
        let mut fresh = GroupTable::new(spec)?;
        if let (Some((converter, old)), Some((_, rows)), Some(values)) =
            (&self.keys, &mut fresh.keys, &mut fresh.values)
        {
            for g in &keep {
                rows.push(old.row(*g as usize));
            }
            if !keep.is_empty() {
                // Distinct keys interned in order get the ids 0, 1, 2, …: the groups' positions.
                let keys = converter.convert_rows(rows.iter())?;
                values.intern(&keys, &mut fresh.ids)?;
            }
        }
        self.values = fresh.values;
        self.keys = fresh.keys;
        retain_at(&mut self.rows, &keep);
        retain_at(&mut self.written_ms, &keep);
        for a in &mut self.aggs {
            a.retain(&keep);
        }
        Ok(())
    }

    /// The keys of `groups`, as columns of the output schema's types.
    fn key_columns(&self, spec: &GroupAggSpec, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        let Some((converter, rows)) = &self.keys else {
            return Ok(vec![]);
        };
        let keys = converter.convert_rows(groups.iter().map(|g| rows.row(*g as usize)))?;
        keys.iter()
            .zip(spec.output_schema.fields())
            .map(|(k, f)| crate::format::cast_to(k, f.data_type()))
            .collect()
    }

    /// The current results of `groups`, per aggregate, as the output schema's types.
    fn results(&mut self, spec: &GroupAggSpec, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        let fields = &spec.output_schema.fields()[spec.keys.len()..];
        self.aggs
            .iter_mut()
            .zip(fields)
            .map(|(a, f)| crate::format::cast_to(&a.evaluate(groups)?, f.data_type()))
            .collect()
    }

    fn size(&self) -> usize {
        self.values.as_ref().map_or(0, |v| v.size())
            + self.keys.as_ref().map_or(0, |(c, r)| c.size() + r.size())
            + (self.rows.capacity() + self.written_ms.capacity()) * 8
            + self.slot.capacity() * 4
            + self.aggs.iter().map(|a| a.size()).sum::<usize>()
    }

    /// This table's rows of a snapshot's `groups` table (see [`groups_names`]).
    fn snapshot_columns(&mut self, spec: &GroupAggSpec, end: Timestamp) -> Result<Vec<ArrayRef>> {
        use datafusion::arrow::array::Int64Array;
        let n = self.len();
        let all: Vec<u32> = (0..n as u32).collect();
        let has_last = BooleanArray::from_iter(self.rows.iter().map(|r| Some(*r > 0)));
        let no_last = datafusion::arrow::compute::not(&has_last)?;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_value(end, n)),
            Arc::new(Int64Array::from_iter_values(self.rows.iter().copied())),
            Arc::new(has_last),
        ];
        columns.extend(self.key_columns(spec, &all)?);
        for last in self.results(spec, &all)? {
            columns.push(datafusion::arrow::compute::nullif(&last, &no_last)?);
        }
        for a in &mut self.aggs {
            columns.extend(a.state(n)?);
        }
        columns.push(Arc::new(Int64Array::from_iter_values(
            self.written_ms.iter().copied(),
        )));
        Ok(columns)
    }
}

/// The column names of a snapshot's `groups` table: window, row count, whether a result was
/// emitted, keys, last results (what a group emitted last), aggregate states, write time.
fn groups_names(spec: &GroupAggSpec, state_width: usize) -> Vec<String> {
    let mut names = vec!["__end".to_string(), "__rows".into(), "__has_last".into()];
    names.extend((0..spec.keys.len()).map(|i| format!("k{i}")));
    names.extend((0..spec.aggs.len()).map(|i| format!("l{i}")));
    names.extend((0..state_width).map(|i| format!("s{i}")));
    names.push("__written".into());
    names
}

/// Columns of equal length: do rows `old[bs[i]]` and `new[as_[i]]` hold the same values?
fn same_rows(old: &[ArrayRef], new: &[ArrayRef], bs: &[u32], as_: &[u32]) -> Result<Vec<bool>> {
    let mut same = vec![true; bs.len()];
    if bs.is_empty() {
        return Ok(same);
    }
    let (bi, ai) = (
        UInt32Array::from(bs.to_vec()),
        UInt32Array::from(as_.to_vec()),
    );
    for (o, n) in old.iter().zip(new) {
        let o = take(o.as_ref(), &bi, None)?;
        let n = take(n.as_ref(), &ai, None)?;
        match datafusion::arrow::compute::kernels::cmp::not_distinct(&o, &n) {
            Ok(eq) => {
                for (s, e) in same.iter_mut().zip(eq.values().iter()) {
                    *s &= e;
                }
            }
            // Types the comparison kernel does not take (nested ones): compare as scalars.
            Err(_) => {
                for (i, s) in same.iter_mut().enumerate() {
                    *s &=
                        ScalarValue::try_from_array(&o, i)? == ScalarValue::try_from_array(&n, i)?;
                }
            }
        }
    }
    Ok(same)
}

/// The running aggregate (updating or windowed, per its spec).
pub struct GroupAggregate {
    spec: GroupAggSpec,
    table: Option<GroupTable>,
    windows: BTreeMap<Timestamp, GroupTable>,
    watermark: Timestamp,
    /// When the state TTL last swept the groups (wall clock, ms).
    swept_ms: i64,
}

impl GroupAggregate {
    /// An empty aggregate.
    pub fn new(spec: GroupAggSpec) -> Result<Self> {
        let table = if spec.window_end.is_none() {
            Some(GroupTable::new(&spec)?)
        } else {
            None
        };
        Ok(Self {
            spec,
            table,
            windows: BTreeMap::new(),
            watermark: Timestamp::MIN,
            swept_ms: now_ms(),
        })
    }

    /// The changelog of one batch: per touched group in order, -U/+U when its result
    /// changed, +I when it is new, -D when its last row was taken back, nothing when the
    /// result did not change (as Flink does).
    fn emit_changes(
        spec: &GroupAggSpec,
        table: &mut GroupTable,
        changes: Changes,
        out: &mut Emitter,
    ) -> Result<()> {
        let Changes {
            touched,
            before,
            old,
        } = changes;
        let (after, new) = table.live_results(&touched)?;
        // Walk the touched groups with a cursor into `before` and one into `after` (both
        // are in `touched` order).
        let (was_in, is_in) = (&before, &after);
        let walk = || {
            let (mut b, mut a) = (0usize, 0usize);
            touched.iter().map(move |g| {
                let was = (was_in.get(b) == Some(g)).then(|| {
                    b += 1;
                    b - 1
                });
                let is = (is_in.get(a) == Some(g)).then(|| {
                    a += 1;
                    a - 1
                });
                (*g, was, is)
            })
        };
        let (mut bs, mut as_) = (vec![], vec![]);
        for (_, was, is) in walk() {
            if let (Some(b), Some(a)) = (was, is) {
                bs.push(b as u32);
                as_.push(a as u32);
            }
        }
        let same = same_rows(&old, &new, &bs, &as_)?;
        let mut same = same.into_iter();
        // Output rows: a group and an index into `old` followed by `new`.
        let shift = before.len() as u32;
        let (mut groups, mut picks, mut ops, mut deleted) = (vec![], vec![], vec![], vec![]);
        for (g, was, is) in walk() {
            match (was, is) {
                (None, Some(a)) => {
                    groups.push(g);
                    picks.push(shift + a as u32);
                    ops.push(RowKind::Insert as i8);
                }
                (Some(b), Some(a)) => {
                    if !same.next().unwrap_or(false) {
                        groups.extend([g, g]);
                        picks.extend([b as u32, shift + a as u32]);
                        ops.extend([RowKind::UpdateBefore as i8, RowKind::UpdateAfter as i8]);
                    }
                }
                (Some(b), None) => {
                    groups.push(g);
                    picks.push(b as u32);
                    ops.push(RowKind::Delete as i8);
                    deleted.push(g);
                }
                (None, None) => {}
            }
        }
        for a in &mut table.aggs {
            a.reset(&deleted);
        }
        if ops.is_empty() {
            return Ok(());
        }
        let mut columns = table.key_columns(spec, &groups)?;
        let picks = UInt32Array::from(picks);
        let fields = &spec.output_schema.fields()[spec.keys.len()..];
        for ((o, n), f) in old.iter().zip(&new).zip(fields) {
            let both = datafusion::arrow::compute::concat(&[o.as_ref(), n.as_ref()])?;
            let col = take(both.as_ref(), &picks, None)?;
            columns.push(crate::format::cast_to(&col, f.data_type())?);
        }
        out.emit(changelog::batch_with_ops(
            spec.output_schema.clone(),
            columns,
            ops,
        )?);
        Ok(())
    }
}

impl Operator for GroupAggregate {
    fn name(&self) -> &str {
        "group aggregate"
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
        let Some(end_col) = self.spec.window_end else {
            let Some(table) = self.table.as_mut() else {
                return Ok(());
            };
            let now = now_ms();
            let ttl_ms = self.spec.ttl.map(|t| t.as_millis() as i64);
            let changes = table.update(&self.spec, &batch, ttl_ms.map(|t| now - t), true)?;
            if self.spec.ttl.is_some() {
                for g in &changes.touched {
                    table.written_ms[*g as usize] = now;
                }
            }
            Self::emit_changes(&self.spec, table, changes, out)?;
            if let Some(ttl_ms) = ttl_ms
                && now - self.swept_ms >= (ttl_ms / 10).max(1)
            {
                self.swept_ms = now;
                table.expire(&self.spec, now - ttl_ms)?;
            }
            return Ok(());
        };
        for (end, part) in split_by_time(&batch, end_col)? {
            if end <= self.watermark {
                out.late(part);
                continue;
            }
            let table = match self.windows.entry(end) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(GroupTable::new(&self.spec)?)
                }
            };
            table.update(&self.spec, &part, None, false)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        self.watermark = wm;
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() > wm {
                break;
            }
            let mut table = entry.remove();
            if table.len() == 0 {
                continue;
            }
            let all: Vec<u32> = (0..table.len() as u32).collect();
            let mut columns = table.key_columns(&self.spec, &all)?;
            columns.extend(table.results(&self.spec, &all)?);
            out.emit(RecordBatch::try_new(
                self.spec.output_schema.clone(),
                columns,
            )?);
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.table.as_ref().map_or(0, |t| t.size())
            + self.windows.values().map(|t| t.size()).sum::<usize>()
    }

    /// Table `groups`: per group its window (`i64::MIN` for the updating aggregate), row
    /// count, whether it has emitted a result and that result, key, every aggregate's
    /// DataFusion state and write time, and the key group.
    fn snapshot(&mut self, key_groups: usize) -> Result<Option<StateSnapshot>> {
        let spec = &self.spec;
        let mut parts: Vec<Vec<ArrayRef>> = vec![];
        if let Some(t) = self.table.as_mut().filter(|t| t.len() > 0) {
            parts.push(t.snapshot_columns(spec, Timestamp::MIN)?);
        }
        for (end, t) in self.windows.iter_mut() {
            if t.len() > 0 {
                parts.push(t.snapshot_columns(spec, *end)?);
            }
        }
        let mut tables = vec![];
        if let Some(first) = parts.first() {
            let width = super::state_widths(&spec.aggs)?.iter().sum();
            let columns = (0..first.len())
                .map(|c| {
                    let pieces: Vec<&dyn Array> = parts.iter().map(|p| p[c].as_ref()).collect();
                    Ok(datafusion::arrow::compute::concat(&pieces)?)
                })
                .collect::<Result<Vec<ArrayRef>>>()?;
            let rows = columns[0].len();
            let keys = columns[3..3 + spec.keys.len()].to_vec();
            let batch = crate::state::keyed_batch(
                &groups_names(spec, width),
                columns,
                &keys,
                rows,
                key_groups,
            )?;
            tables.push(("groups".to_string(), batch));
        }
        Ok(Some(StateSnapshot {
            tables,
            meta: serde_json::json!({ "wm": self.watermark }),
        }))
    }

    fn restore(&mut self, snapshot: StateSnapshot) -> Result<()> {
        self.watermark = snapshot.meta_i64("wm").unwrap_or(Timestamp::MIN);
        let Some(t) = snapshot.table("groups") else {
            return Ok(());
        };
        let nkeys = self.spec.keys.len();
        let nout = self.spec.aggs.len();
        let widths = super::state_widths(&self.spec.aggs)?;
        let ends = t
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let counts = t
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let written = t.column_by_name("__written").map(|c| {
            c.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .clone()
        });
        let restored_at = now_ms();
        let keys_at = 3;
        let state_at = keys_at + nkeys + nout;
        for r in 0..t.num_rows() {
            let end = ends.value(r);
            let table = if end == Timestamp::MIN && self.spec.window_end.is_none() {
                match self.table.as_mut() {
                    Some(t) => t,
                    None => continue,
                }
            } else {
                match self.windows.entry(end) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(GroupTable::new(&self.spec)?)
                    }
                }
            };
            let key_arrays: Vec<ArrayRef> = (0..nkeys)
                .map(|i| t.column(keys_at + i).slice(r, 1))
                .collect();
            let id = match &mut table.values {
                Some(v) => {
                    v.intern(&key_arrays, &mut table.ids)?;
                    table.ids.first().copied().unwrap_or(0)
                }
                None => 0,
            };
            if id >= table.len() {
                table.grow(id + 1);
                if let Some((converter, rows)) = &mut table.keys {
                    converter.append(rows, &key_arrays)?;
                }
            }
            table.rows[id] = counts.value(r);
            table.written_ms[id] = written.as_ref().map_or(restored_at, |w| w.value(r));
            let mut col = state_at;
            for (agg, w) in table.aggs.iter_mut().zip(&widths) {
                let state: Vec<ArrayRef> = t.columns()[col..col + w].to_vec();
                agg.merge(id as u32, &state, r)?;
                col += w;
            }
        }
        Ok(())
    }
}

impl GroupAggSpec {
    /// Whether the operator's output carries the op column.
    pub fn is_updating(&self) -> bool {
        self.updating_output()
    }
}

super::operator_spec!(GroupAggSpec, stateful = true, GroupAggregate::new);

#[cfg(test)]
mod tests {
    use crate::operators::test_util::{rescaled_run, stage_spec, through};

    #[tokio::test]
    async fn snapshot_restore_at_other_parallelism_gives_the_same_changelog() {
        let query = "SELECT k, COUNT(*) AS n, SUM(v) AS s, MAX(v) AS m, COUNT(DISTINCT v % 5) AS d \
                     FROM t GROUP BY k";
        let (spec, keys, source) = stage_spec(query).await;
        let batch = |from: i64| {
            let rows: Vec<(i64, i64, i64)> = (0..300)
                .map(|i| (from + i * 10, (i * 13) % 50, i + from))
                .collect();
            (through(&source, &rows), from)
        };
        let before: Vec<_> = (0..3).map(|b| batch(b * 5_000)).collect();
        let after: Vec<_> = (3..6).map(|b| batch(b * 5_000)).collect();
        let straight = rescaled_run(&spec, &keys, &before, &after, 1, 0);
        assert!(straight.len() > 100, "{}", straight.len());
        for (p1, p2) in [(1, 1), (2, 3), (3, 1), (1, 2)] {
            let got = rescaled_run(&spec, &keys, &before, &after, p1, p2);
            assert_eq!(got, straight, "{p1} -> {p2}");
        }
    }

    /// With a state TTL, a group not written for longer is dropped without output: a later
    /// row of its key starts it afresh (+I with the new count), while a group written within
    /// the TTL goes on (-U/+U). The write time survives a snapshot and restore.
    #[tokio::test]
    async fn state_ttl_drops_groups_not_written_since() {
        use crate::operators::test_util::{emitted, rows};
        use crate::operators::{Emitter, OpSpec};
        let (spec, _, source) = stage_spec("SELECT k, COUNT(*) AS n FROM t GROUP BY k").await;
        let mut g = spec
            .downcast_ref::<crate::operators::GroupAggSpec>()
            .expect("a group aggregate")
            .clone();
        g.ttl = Some(std::time::Duration::from_millis(2000));
        let spec = OpSpec::new(g);
        let mut op = spec.instantiate().unwrap();
        let mut out = Emitter::default();
        op.process_batch(0, through(&source, &[(0, 1, 0), (0, 2, 0)]), &mut out)
            .unwrap();
        // Key 2 is written again within the TTL, key 1 is not.
        std::thread::sleep(std::time::Duration::from_millis(1200));
        op.process_batch(0, through(&source, &[(0, 2, 0)]), &mut out)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1200));
        // A snapshot and restore in between keeps the write times.
        let snap = op.snapshot(128).unwrap().unwrap();
        let mut op = spec.instantiate().unwrap();
        op.restore(snap).unwrap();
        op.process_batch(0, through(&source, &[(0, 3, 0)]), &mut out)
            .unwrap();
        op.process_batch(0, through(&source, &[(0, 1, 0), (0, 2, 0)]), &mut out)
            .unwrap();
        let got = rows(&emitted(out));
        // Sorted rows `k | n | op` (op 0 = +I, 1 = -U, 2 = +U): key 1 starts afresh (+I 1
        // twice), key 2 goes on.
        let want = [
            "1 | 1 | 0",
            "1 | 1 | 0",
            "2 | 1 | 0",
            "2 | 1 | 1",
            "2 | 2 | 1",
            "2 | 2 | 2",
            "2 | 3 | 2",
            "3 | 1 | 0",
        ];
        assert_eq!(got, want);
    }
}
