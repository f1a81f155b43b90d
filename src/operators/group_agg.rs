//! GROUP BY without a window TVF: the updating (changelog) aggregate, and the aggregate over an
//! already-windowed stream (grouped by its `window_start, window_end`, as Nexmark q5's
//! "maximum per window" is).
//!
//! Keys are interned with DataFusion's `GroupValues`; the batch's rows are bucketed by group
//! and each touched group's DataFusion `Accumulator` is fed whole slices (`update_batch`, or
//! `retract_batch` for -U/-D rows of an updating input). Unlike `GroupsAccumulator`, an
//! `Accumulator` can be evaluated without being consumed, which a result that keeps changing
//! needs.
//!
//! - *Updating*: after each batch, every touched group emits -U (its previous result) and +U
//!   (the new one), +I when it is new, -D when its last row was retracted; nothing when the
//!   result did not change (as Flink does). State is one entry per key ever seen.
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
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

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

struct Group {
    key: Vec<ScalarValue>,
    accs: Vec<Box<dyn Accumulator>>,
    rows: i64,
    last: Option<Vec<ScalarValue>>,
    /// When it was last written (wall clock, ms), for the state TTL.
    written_ms: i64,
}

/// The wall clock in ms (state TTL times are absolute, as Flink's).
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Groups of one table: interned keys and their accumulators.
struct GroupTable {
    values: Option<Box<dyn GroupValues>>,
    groups: Vec<Group>,
    ids: Vec<usize>,
}

impl GroupTable {
    fn new(spec: &GroupAggSpec) -> Result<Self> {
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
            groups: vec![],
            ids: vec![],
        })
    }

    fn new_accs(spec: &GroupAggSpec) -> Result<Vec<Box<dyn Accumulator>>> {
        spec.aggs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                Ok(match spec.multiset.get(i).cloned().flatten() {
                    Some((kind, arg)) => Box::new(super::MultisetAccumulator::new(kind, arg)?)
                        as Box<dyn Accumulator>,
                    None if spec.input_updating => a.create_sliding_accumulator()?,
                    None => a.create_accumulator()?,
                })
            })
            .collect()
    }

    /// Add (and retract) the rows of `batch`; returns the groups touched, in first-seen order.
    /// A group last written before `expired_before` (the state TTL) is started afresh, as if
    /// it had been dropped: expired state is never used, swept or not.
    fn update(
        &mut self,
        spec: &GroupAggSpec,
        batch: &RecordBatch,
        expired_before: Option<i64>,
    ) -> Result<Vec<usize>> {
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
        // Bucket rows by group (counting sort).
        let mut touched: Vec<usize> = vec![];
        let mut start: Vec<u32> = vec![];
        for (row, id) in self.ids.iter().enumerate() {
            while self.groups.len() <= *id {
                let key = keys
                    .iter()
                    .map(|k| ScalarValue::try_from_array(k, row))
                    .collect::<datafusion::error::Result<Vec<_>>>()?;
                self.groups.push(Group {
                    key,
                    accs: Self::new_accs(spec)?,
                    rows: 0,
                    last: None,
                    written_ms: 0,
                });
            }
            if start.len() <= *id {
                start.resize(*id + 1, u32::MAX);
            }
            if start[*id] == u32::MAX {
                start[*id] = 0;
                touched.push(*id);
                let g = &mut self.groups[*id];
                if expired_before.is_some_and(|b| g.written_ms < b) && g.rows != 0 {
                    g.accs = Self::new_accs(spec)?;
                    g.rows = 0;
                    g.last = None;
                }
            }
            start[*id] += 1;
        }
        let mut offset = 0u32;
        for g in &touched {
            let n = start[*g];
            start[*g] = offset;
            offset += n;
        }
        let mut order = vec![0u32; rows];
        let mut fill = start.clone();
        for (row, id) in self.ids.iter().enumerate() {
            order[fill[*id] as usize] = row as u32;
            fill[*id] += 1;
        }
        // Reorder every input column once so each group's rows are one contiguous slice:
        // per group and aggregate, a zero-copy slice (filtered only where its FILTER or the
        // changelog splits the group) instead of a gather per group and aggregate, which cost
        // more than the aggregate itself where most groups get a row or two per batch.
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
        for g in &touched {
            let (from, to) = (start[*g] as usize, fill[*g] as usize);
            let len = to - from;
            // The rows to add and to take back, as masks over the group's slice (None: all).
            let (add, sub, added) = match &accumulate {
                Some(mask) => {
                    let mask = mask.slice(from, len);
                    let added = mask.true_count();
                    let sub = datafusion::arrow::compute::not(&mask)?;
                    (Some(mask), Some(sub), added)
                }
                None => (None, None, len),
            };
            let group = &mut self.groups[*g];
            group.rows += added as i64 - (len - added) as i64;
            for (retract, mask, n) in [(false, add, added), (true, sub, len - added)] {
                if n == 0 {
                    continue;
                }
                let mask = mask.filter(|_| n < len);
                for (i, acc) in group.accs.iter_mut().enumerate() {
                    let mask = match (&filters[i], &mask) {
                        (Some(f), m) => {
                            let f = f.slice(from, len);
                            let f = f.as_boolean();
                            match m {
                                Some(m) => Some(datafusion::arrow::compute::and(f, m)?),
                                None => Some(f.clone()),
                            }
                        }
                        (None, m) => m.clone(),
                    };
                    let keep = mask.as_ref().map_or(len, |m| m.true_count());
                    if keep == 0 {
                        continue;
                    }
                    let cols = args[i]
                        .iter()
                        .map(|a| {
                            let a = a.slice(from, len);
                            Ok(match &mask {
                                Some(m) if keep < len => {
                                    datafusion::arrow::compute::filter(a.as_ref(), m)?
                                }
                                _ => a,
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    if retract {
                        acc.retract_batch(&cols)?
                    } else {
                        acc.update_batch(&cols)?
                    }
                }
            }
        }
        Ok(touched)
    }

    /// Drop the groups not written since `before_ms`; the interned keys are rebuilt.
    fn expire(&mut self, spec: &GroupAggSpec, before_ms: i64) -> Result<()> {
        if !self.groups.iter().any(|g| g.written_ms < before_ms) {
            return Ok(());
        }
        let kept: Vec<Group> = std::mem::take(&mut self.groups)
            .into_iter()
            .filter(|g| g.written_ms >= before_ms)
            .collect();
        let mut fresh = GroupTable::new(spec)?;
        if let (Some(values), false) = (fresh.values.as_mut(), kept.is_empty()) {
            let keys = (0..spec.keys.len())
                .map(|i| ScalarValue::iter_to_array(kept.iter().map(|g| g.key[i].clone())))
                .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
            // Distinct keys interned in order get the ids 0, 1, 2, …: the groups' positions.
            values.intern(&keys, &mut fresh.ids)?;
        }
        fresh.groups = kept;
        *self = fresh;
        Ok(())
    }

    fn evaluate(&mut self, g: usize) -> Result<Vec<ScalarValue>> {
        Ok(self.groups[g]
            .accs
            .iter_mut()
            .map(|a| a.evaluate())
            .collect::<datafusion::error::Result<Vec<_>>>()?)
    }

    fn size(&self) -> usize {
        self.values.as_ref().map_or(0, |v| v.size())
            + self
                .groups
                .iter()
                .map(|g| g.accs.iter().map(|a| a.size()).sum::<usize>() + 64)
                .sum::<usize>()
    }
}

/// Builds output batches from rows of scalars.
struct RowsOut {
    schema: SchemaRef,
    columns: Vec<Vec<ScalarValue>>,
    ops: Vec<i8>,
    updating: bool,
}

impl RowsOut {
    fn new(schema: SchemaRef, updating: bool) -> Self {
        let n = schema.fields().len() - usize::from(updating);
        Self {
            schema,
            columns: vec![vec![]; n],
            ops: vec![],
            updating,
        }
    }

    fn push(&mut self, key: &[ScalarValue], values: &[ScalarValue], kind: RowKind) {
        for (c, v) in self.columns.iter_mut().zip(key.iter().chain(values)) {
            c.push(v.clone());
        }
        self.ops.push(kind as i8);
    }

    /// [`Self::push`] of values the caller no longer needs (moved, not cloned).
    fn push_owned(&mut self, key: &[ScalarValue], values: Vec<ScalarValue>, kind: RowKind) {
        let (keys, rest) = self.columns.split_at_mut(key.len());
        for (c, v) in keys.iter_mut().zip(key) {
            c.push(v.clone());
        }
        for (c, v) in rest.iter_mut().zip(values) {
            c.push(v);
        }
        self.ops.push(kind as i8);
    }

    fn finish(self, out: &mut Emitter) -> Result<()> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let mut cols = vec![];
        for (values, field) in self.columns.into_iter().zip(self.schema.fields()) {
            let array = ScalarValue::iter_to_array(values)?;
            cols.push(crate::format::cast_to(&array, field.data_type())?);
        }
        let batch = if self.updating {
            changelog::batch_with_ops(self.schema, cols, self.ops)?
        } else {
            RecordBatch::try_new(self.schema, cols)?
        };
        out.emit(batch);
        Ok(())
    }
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

    fn emit_changes(
        spec: &GroupAggSpec,
        table: &mut GroupTable,
        touched: &[usize],
        out: &mut Emitter,
    ) -> Result<()> {
        let mut rows = RowsOut::new(spec.output_schema.clone(), true);
        for g in touched {
            let now = if table.groups[*g].rows > 0 {
                Some(table.evaluate(*g)?)
            } else {
                None
            };
            let group = &mut table.groups[*g];
            match (group.last.take(), now) {
                (None, Some(new)) => {
                    rows.push(&group.key, &new, RowKind::Insert);
                    group.last = Some(new);
                }
                (Some(old), Some(new)) => {
                    if old != new {
                        rows.push_owned(&group.key, old, RowKind::UpdateBefore);
                        rows.push(&group.key, &new, RowKind::UpdateAfter);
                    }
                    group.last = Some(new);
                }
                (Some(old), None) => {
                    rows.push_owned(&group.key, old, RowKind::Delete);
                    group.accs = GroupTable::new_accs(spec)?;
                }
                (None, None) => {}
            }
        }
        rows.finish(out)
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
            let touched = table.update(&self.spec, &batch, ttl_ms.map(|t| now - t))?;
            Self::emit_changes(&self.spec, table, &touched, out)?;
            if let Some(ttl) = self.spec.ttl {
                for g in &touched {
                    table.groups[*g].written_ms = now;
                }
                let ttl_ms = ttl.as_millis() as i64;
                if now - self.swept_ms >= (ttl_ms / 10).max(1) {
                    self.swept_ms = now;
                    table.expire(&self.spec, now - ttl_ms)?;
                }
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
            table.update(&self.spec, &part, None)?;
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
            let mut rows = RowsOut::new(self.spec.output_schema.clone(), false);
            for g in 0..table.groups.len() {
                let values = table.evaluate(g)?;
                rows.push_owned(&table.groups[g].key, values, RowKind::Insert);
            }
            rows.finish(out)?;
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.table.as_ref().map_or(0, |t| t.size())
            + self.windows.values().map(|t| t.size()).sum::<usize>()
    }

    /// Table `groups`: per group its window (`i64::MIN` for the updating aggregate), key,
    /// row count, last emitted result and every accumulator's state, and the key group.
    /// Accumulators are merged back from their states right after, so the operator runs on.
    fn snapshot(&mut self, key_groups: usize) -> Result<Option<StateSnapshot>> {
        let mut rows: Vec<GroupRow> = vec![];
        let spec = &self.spec;
        let mut take = |end: Timestamp, table: &mut GroupTable| -> Result<()> {
            for g in &mut table.groups {
                let mut state = vec![];
                let mut fresh = GroupTable::new_accs(spec)?;
                for (acc, new) in g.accs.iter_mut().zip(fresh.iter_mut()) {
                    let st = acc.state()?;
                    let arrays = st
                        .iter()
                        .map(|v| Ok(v.to_array()?))
                        .collect::<Result<Vec<_>>>()?;
                    new.merge_batch(&arrays)?;
                    state.extend(st);
                }
                g.accs = fresh;
                rows.push(GroupRow {
                    end,
                    key: g.key.clone(),
                    rows: g.rows,
                    last: g.last.clone(),
                    state,
                    written_ms: g.written_ms,
                });
            }
            Ok(())
        };
        if let Some(t) = self.table.as_mut() {
            take(Timestamp::MIN, t)?;
        }
        for (end, t) in self.windows.iter_mut() {
            take(*end, t)?;
        }
        let mut tables = vec![];
        if !rows.is_empty() {
            tables.push(("groups".to_string(), groups_table(spec, &rows, key_groups)?));
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
        let has_last = t.column(2).as_boolean();
        let written = t.column_by_name("__written").map(|c| {
            c.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .clone()
        });
        let restored_at = now_ms();
        let keys_at = 3;
        let last_at = keys_at + nkeys;
        let state_at = last_at + nout;
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
            match &mut table.values {
                Some(v) => v.intern(&key_arrays, &mut table.ids)?,
                None => {
                    table.ids.clear();
                    table.ids.push(0);
                }
            }
            let id = table.ids.first().copied().unwrap_or(0);
            let key = key_arrays
                .iter()
                .map(|a| ScalarValue::try_from_array(a, 0))
                .collect::<datafusion::error::Result<Vec<_>>>()?;
            let last = if has_last.value(r) {
                Some(
                    (0..nout)
                        .map(|i| ScalarValue::try_from_array(t.column(last_at + i), r))
                        .collect::<datafusion::error::Result<Vec<_>>>()?,
                )
            } else {
                None
            };
            let mut accs = GroupTable::new_accs(&self.spec)?;
            let mut col = state_at;
            for (acc, w) in accs.iter_mut().zip(&widths) {
                let arrays: Vec<ArrayRef> =
                    (col..col + w).map(|c| t.column(c).slice(r, 1)).collect();
                acc.merge_batch(&arrays)?;
                col += w;
            }
            let group = Group {
                key,
                accs,
                rows: counts.value(r),
                last,
                written_ms: written.as_ref().map_or(restored_at, |w| w.value(r)),
            };
            if id < table.groups.len() {
                table.groups[id] = group;
            } else {
                table.groups.push(group);
            }
        }
        Ok(())
    }
}

/// One group in a snapshot.
struct GroupRow {
    end: Timestamp,
    key: Vec<ScalarValue>,
    rows: i64,
    last: Option<Vec<ScalarValue>>,
    state: Vec<ScalarValue>,
    written_ms: i64,
}

/// The `groups` table of a snapshot (see [`GroupAggregate::snapshot`]).
fn groups_table(spec: &GroupAggSpec, rows: &[GroupRow], key_groups: usize) -> Result<RecordBatch> {
    use datafusion::arrow::array::{BooleanArray, Int64Array};
    let nkeys = spec.keys.len();
    let out_fields = spec.output_schema.fields();
    let mut names = vec!["__end".to_string(), "__rows".into(), "__has_last".into()];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.end))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.rows))),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.last.is_some())),
        )),
    ];
    let mut keys = vec![];
    for i in 0..nkeys {
        let col = ScalarValue::iter_to_array(rows.iter().map(|r| r.key[i].clone()))?;
        keys.push(col.clone());
        names.push(format!("k{i}"));
        columns.push(col);
    }
    for i in 0..spec.aggs.len() {
        let field = &out_fields[nkeys + i];
        let null = ScalarValue::try_from(field.data_type())?;
        let col = ScalarValue::iter_to_array(rows.iter().map(|r| {
            r.last
                .as_ref()
                .and_then(|l| l.get(i).cloned())
                .unwrap_or_else(|| null.clone())
        }))?;
        names.push(format!("l{i}"));
        columns.push(crate::format::cast_to(&col, field.data_type())?);
    }
    let width = rows[0].state.len();
    for i in 0..width {
        let col = ScalarValue::iter_to_array(rows.iter().map(|r| r.state[i].clone()))?;
        names.push(format!("s{i}"));
        columns.push(col);
    }
    names.push("__written".into());
    columns.push(Arc::new(Int64Array::from_iter_values(
        rows.iter().map(|r| r.written_ms),
    )));
    crate::state::keyed_batch(&names, columns, &keys, rows.len(), key_groups)
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
