//! The state of one aggregate over every group of a group aggregate's table (`group_agg.rs`),
//! held per aggregate rather than per group.
//!
//! The common aggregates over an append-only input are kept *columnar*: one typed vector per
//! aggregate indexed by group id (COUNT; COUNT(DISTINCT) of a BIGINT, a hash set per group;
//! MIN and MAX of a BIGINT or a string; SUM of a BIGINT; AVG), updated
//! row by row from the group-sorted batch and evaluated for the groups a batch touched straight
//! into an Arrow array. Every other aggregate, and every aggregate over a changelog, keeps one
//! DataFusion `Accumulator` per group ([`Boxed`]), fed a zero-copy slice per group.
//!
//! Why: where a batch touches thousands of groups with a row or two each (Nexmark q16 per
//! channel and day, q17 per auction and day), the per-group cost of boxed accumulators
//! (a virtual call, an array slice and a filter kernel per aggregate and group, and a
//! `ScalarValue` per result) outweighed the aggregation itself, and their state took about
//! 1.4 KB per group. A columnar count is 8 bytes per group.
//!
//! Snapshots keep DataFusion's state layout (`state_fields`) for every aggregate, columnar or
//! not, so a checkpoint reads back the same whichever way its aggregates are held.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, ListArray, StringArray,
    UInt64Array, new_empty_array,
};
use datafusion::arrow::buffer::{BooleanBuffer, OffsetBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef, Float64Type, Int64Type};
use datafusion::common::{HashSet, ScalarValue};
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::distinct_table::{Counted, DistinctTable};
use crate::Result;

/// A touched group's rows in the group-sorted batch: `from..to`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub group: u32,
    pub from: u32,
    pub to: u32,
}

/// One aggregate's state for every group of a table (ids `0..groups`).
pub(crate) trait AggColumn: Send {
    /// Make room for `groups` groups in all (new groups start empty).
    fn grow(&mut self, groups: usize);
    /// Add the rows of each span. `args` and the masks are in group-sorted order; `filter` is
    /// the aggregate's FILTER, `ops` (over a changelog) true for rows to add and false for rows
    /// to take back. A table updates each of its aggregates once per batch, in order, with the
    /// same spans (and resets and retains them all alike): [`DistinctMember`]s rely on it.
    fn update(
        &mut self,
        spans: &[Span],
        args: &[ArrayRef],
        filter: Option<&ArrayRef>,
        ops: Option<&BooleanArray>,
    ) -> Result<()>;
    /// The current results of `groups`, in that order.
    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef>;
    /// Empty these groups again.
    fn reset(&mut self, groups: &[u32]);
    /// Keep only these groups (ascending), renumbered `0..keep.len()`.
    fn retain(&mut self, keep: &[u32]);
    /// DataFusion's partial state of groups `0..groups`, one array per state field.
    fn state(&mut self, groups: usize) -> Result<Vec<ArrayRef>>;
    /// Merge row `row` of a snapshot's state arrays into `group`.
    fn merge(&mut self, group: u32, state: &[ArrayRef], row: usize) -> Result<()>;
    /// Bytes held.
    fn size(&self) -> usize;
}

/// The states of a table's aggregates, one per aggregate: [`agg_column`] each, except that
/// COUNT(DISTINCT) aggregates of the same BIGINT argument that differ only in FILTER share
/// one table of distinct values ([`DistinctShare`]), as Flink shares one distinct view among
/// them.
pub(crate) fn agg_columns(
    aggs: &[Arc<AggregateFunctionExpr>],
    multiset: &[Option<(super::Multiset, DataType)>],
    input_updating: bool,
) -> Result<Vec<Box<dyn AggColumn>>> {
    let mut cols = Vec::with_capacity(aggs.len());
    // Per shared argument: the aggregates (indices) counting its distinct values.
    let mut shares: Vec<Vec<usize>> = vec![];
    for (i, a) in aggs.iter().enumerate() {
        let m = multiset.get(i).cloned().flatten();
        let shareable = m.is_none() && !input_updating && distinct_bigint(a)?.is_some();
        if shareable {
            let arg = &a.expressions()[0];
            match shares.iter_mut().find(|s| {
                s.len() < MASK_BITS && aggs[s[0]].expressions()[0].as_ref() == arg.as_ref()
            }) {
                Some(s) => s.push(i),
                None => shares.push(vec![i]),
            }
        }
        cols.push(agg_column(a, m, input_updating)?);
    }
    for members in shares.into_iter().filter(|s| s.len() > 1) {
        let Some(item) = distinct_bigint(&aggs[members[0]])? else {
            continue;
        };
        let shared = Arc::new(Mutex::new(DistinctShare {
            item,
            members: members.len(),
            table: DistinctTable::new(members.len()),
            staged: vec![None; members.len()],
            rows: vec![],
        }));
        for (bit, i) in members.into_iter().enumerate() {
            cols[i] = Box::new(DistinctMember {
                shared: shared.clone(),
                bit,
            });
        }
    }
    Ok(cols)
}

/// The list item field of a COUNT(DISTINCT) of one BIGINT argument (the kind kept columnar).
fn distinct_bigint(agg: &AggregateFunctionExpr) -> Result<Option<FieldRef>> {
    let state = agg.state_fields()?;
    let name = agg.fun().name().to_lowercase();
    Ok(
        match (name.as_str(), agg.field().data_type(), state.as_slice()) {
            ("count", DataType::Int64, [s])
                if agg.is_distinct() && agg.expressions().len() == 1 =>
            {
                match s.data_type() {
                    DataType::List(item) if item.data_type() == &DataType::Int64 => {
                        Some(item.clone())
                    }
                    _ => None,
                }
            }
            _ => None,
        },
    )
}

/// The state of aggregate `agg` for a table: columnar where its function and types allow it
/// (over an append-only input only), else one boxed accumulator per group.
pub(crate) fn agg_column(
    agg: &Arc<AggregateFunctionExpr>,
    multiset: Option<(super::Multiset, DataType)>,
    input_updating: bool,
) -> Result<Box<dyn AggColumn>> {
    if !input_updating
        && multiset.is_none()
        && let Some(c) = columnar(agg)?
    {
        return Ok(c);
    }
    let boxed = Boxed {
        agg: agg.clone(),
        multiset,
        sliding: input_updating,
        out: agg.field().data_type().clone(),
        accs: vec![],
        bytes: 0,
    };
    Ok(Box::new(boxed))
}

fn columnar(agg: &AggregateFunctionExpr) -> Result<Option<Box<dyn AggColumn>>> {
    let state = agg.state_fields()?;
    let types: Vec<&DataType> = state.iter().map(|f| f.data_type()).collect();
    let out = agg.field().data_type().clone();
    let name = agg.fun().name().to_lowercase();
    let distinct = agg.is_distinct();
    let args = agg.expressions().len();
    Ok(match (name.as_str(), distinct, out, types.as_slice()) {
        ("count", false, DataType::Int64, [DataType::Int64]) => {
            Some(Box::new(Count { counts: vec![] }))
        }
        ("count", true, DataType::Int64, [DataType::List(_)]) if args == 1 => distinct_bigint(agg)?
            .map(|item| -> Box<dyn AggColumn> {
                Box::new(DistinctCount {
                    item,
                    sets: vec![],
                    held: 0,
                })
            }),
        // BIGINT and the types stored as one (TIMESTAMP, ...), ordered as their i64.
        ("min" | "max", _, out, [state]) if args == 1 && *state == &out && i64_backed(&out) => {
            Some(Box::new(Extreme {
                max: name == "max",
                out,
                values: Vec::<Option<i64>>::new(),
                heap: 0,
            }))
        }
        ("min" | "max", _, DataType::Utf8, [DataType::Utf8]) if args == 1 => {
            Some(Box::new(Extreme {
                max: name == "max",
                out: DataType::Utf8,
                values: Vec::<Option<Box<str>>>::new(),
                heap: 0,
            }))
        }
        ("sum", false, DataType::Int64, [DataType::Int64]) if args == 1 => {
            Some(Box::new(Sum { sums: vec![] }))
        }
        // DOUBLE, or Flink's AVG of an integer (the argument's type, truncated toward zero,
        // as `functions::aggregate` answers through a cast of DataFusion's DOUBLE).
        ("avg" | "mean", false, out, [DataType::UInt64, DataType::Float64])
            if args == 1 && (out == DataType::Float64 || out.is_integer()) =>
        {
            Some(Box::new(Avg {
                out,
                counts: vec![],
                sums: vec![],
            }))
        }
        _ => None,
    })
}

/// Types whose values are an i64 ordered as the value (BIGINT, TIMESTAMP, DATE64, TIME64,
/// INTERVAL as a duration).
fn i64_backed(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int64
            | DataType::Timestamp(_, _)
            | DataType::Date64
            | DataType::Time64(_)
            | DataType::Duration(_)
    )
}

/// Rows that count: the FILTER's true rows whose arguments are all non-NULL (None: all).
fn counted_rows(args: &[ArrayRef], filter: Option<&ArrayRef>) -> Option<BooleanBuffer> {
    let mut valid: Option<BooleanBuffer> = None;
    let mut and = |b: BooleanBuffer| {
        valid = Some(match valid.take() {
            Some(v) => &v & &b,
            None => b,
        })
    };
    if let Some(f) = filter {
        let f = f.as_boolean();
        and(f.values().clone());
        if let Some(n) = f.logical_nulls() {
            and(n.inner().clone());
        }
    }
    for a in args {
        if let Some(n) = a.logical_nulls() {
            and(n.inner().clone());
        }
    }
    valid
}

/// Calls `f` for each counted row of `from..to`.
fn each_row(valid: &Option<BooleanBuffer>, span: &Span, mut f: impl FnMut(usize)) {
    let (from, to) = (span.from as usize, span.to as usize);
    match valid {
        None => (from..to).for_each(f),
        Some(v) => {
            for r in from..to {
                if v.value(r) {
                    f(r)
                }
            }
        }
    }
}

/// `a` as BIGINT (cast when the planner handed a narrower integer).
fn int64(a: &ArrayRef) -> Result<Int64Array> {
    Ok(match a.data_type() {
        DataType::Int64 => a.as_primitive::<Int64Type>().clone(),
        _ => cast(a, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone(),
    })
}

/// The counted rows and the BIGINT argument of `op`, an aggregate of one BIGINT kept columnar.
fn bigint_rows(
    op: &str,
    args: &[ArrayRef],
    filter: Option<&ArrayRef>,
    ops: Option<&BooleanArray>,
) -> Result<(Option<BooleanBuffer>, Int64Array)> {
    appends_only(op, ops)?;
    Ok((counted_rows(args, filter), int64(&args[0])?))
}

fn appends_only(op: &str, ops: Option<&BooleanArray>) -> Result<()> {
    match ops {
        None => Ok(()),
        Some(_) => crate::exec_err!(
            "group aggregate",
            "{op} kept columnar was handed a changelog (internal error)"
        ),
    }
}

/// Keep the elements at `keep` (ascending indices) of `v`.
pub(crate) fn retain_at<T>(v: &mut Vec<T>, keep: &[u32]) {
    let mut next = keep.iter().peekable();
    let mut i = 0u32;
    v.retain(|_| {
        let kept = next.peek().is_some_and(|k| **k == i);
        if kept {
            next.next();
        }
        i += 1;
        kept
    });
}

/// DataFusion's COUNT(DISTINCT) state: each group's values (`lengths` of them, in group
/// order, in `values`) as a list per group.
fn distinct_state(
    item: &FieldRef,
    lengths: impl Iterator<Item = usize>,
    values: Int64Array,
) -> Result<Vec<ArrayRef>> {
    if values.len() > i32::MAX as usize {
        return crate::exec_err!("group aggregate", "COUNT(DISTINCT) state over 2^31 values");
    }
    let list = ListArray::try_new(
        item.clone(),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(values),
        None,
    )?;
    Ok(vec![Arc::new(list)])
}

/// Row `row` of a COUNT(DISTINCT) state (see [`distinct_state`]): its values, or None.
fn distinct_state_row(state: &[ArrayRef], row: usize) -> Result<Option<Int64Array>> {
    let Some(list) = state[0].as_list_opt::<i32>() else {
        return crate::exec_err!("group aggregate", "COUNT(DISTINCT) state is not a list");
    };
    if list.is_null(row) {
        return Ok(None);
    }
    Ok(Some(int64(&list.value(row))?))
}

/// COUNT(*) and COUNT(x, ...) (non-NULL arguments).
struct Count {
    counts: Vec<i64>,
}

impl AggColumn for Count {
    fn grow(&mut self, groups: usize) {
        self.counts.resize(groups, 0);
    }

    fn update(
        &mut self,
        spans: &[Span],
        args: &[ArrayRef],
        filter: Option<&ArrayRef>,
        ops: Option<&BooleanArray>,
    ) -> Result<()> {
        appends_only("COUNT", ops)?;
        let valid = counted_rows(args, filter);
        for s in spans {
            let len = (s.to - s.from) as usize;
            let n = match &valid {
                None => len,
                Some(v) => v
                    .inner()
                    .count_set_bits_offset(v.offset() + s.from as usize, len),
            };
            self.counts[s.group as usize] += n as i64;
        }
        Ok(())
    }

    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef> {
        Ok(Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|g| self.counts[*g as usize]),
        )))
    }

    fn reset(&mut self, groups: &[u32]) {
        for g in groups {
            self.counts[*g as usize] = 0;
        }
    }

    fn retain(&mut self, keep: &[u32]) {
        retain_at(&mut self.counts, keep);
    }

    fn state(&mut self, groups: usize) -> Result<Vec<ArrayRef>> {
        Ok(vec![Arc::new(Int64Array::from_iter_values(
            self.counts[..groups].iter().copied(),
        ))])
    }

    fn merge(&mut self, group: u32, state: &[ArrayRef], row: usize) -> Result<()> {
        let c = int64(&state[0])?;
        if c.is_valid(row) {
            self.counts[group as usize] += c.value(row);
        }
        Ok(())
    }

    fn size(&self) -> usize {
        self.counts.capacity() * 8
    }
}

/// COUNT(DISTINCT x) of a BIGINT: a set of values per group, as DataFusion's accumulator
/// keeps (8 bytes a value; one set of (group, value) pairs for all groups took 16 and, being
/// one table, doubled all at once when it grew).
struct DistinctCount {
    item: FieldRef,
    sets: Vec<HashSet<i64>>,
    /// Values held over all groups (so `size` does not walk the groups: it is asked for
    /// after every watermark).
    held: usize,
}

impl AggColumn for DistinctCount {
    fn grow(&mut self, groups: usize) {
        self.sets.resize_with(groups, HashSet::default);
    }

    fn update(
        &mut self,
        spans: &[Span],
        args: &[ArrayRef],
        filter: Option<&ArrayRef>,
        ops: Option<&BooleanArray>,
    ) -> Result<()> {
        let (valid, values) = bigint_rows("COUNT(DISTINCT)", args, filter, ops)?;
        let values = values.values();
        for s in spans {
            let set = &mut self.sets[s.group as usize];
            let before = set.len();
            each_row(&valid, s, |r| {
                set.insert(values[r]);
            });
            self.held += set.len() - before;
        }
        Ok(())
    }

    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef> {
        Ok(Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|g| self.sets[*g as usize].len() as i64),
        )))
    }

    fn reset(&mut self, groups: &[u32]) {
        for g in groups {
            let set = std::mem::take(&mut self.sets[*g as usize]);
            self.held -= set.len();
        }
    }

    fn retain(&mut self, keep: &[u32]) {
        retain_at(&mut self.sets, keep);
        self.held = self.sets.iter().map(|s| s.len()).sum();
    }

    fn state(&mut self, groups: usize) -> Result<Vec<ArrayRef>> {
        // Each group's values, as a list per group (DataFusion's COUNT DISTINCT state).
        let sets = &self.sets[..groups];
        let values: Int64Array = sets.iter().flat_map(|s| s.iter().copied()).collect();
        distinct_state(&self.item, sets.iter().map(|s| s.len()), values)
    }

    fn merge(&mut self, group: u32, state: &[ArrayRef], row: usize) -> Result<()> {
        let Some(values) = distinct_state_row(state, row)? else {
            return Ok(());
        };
        let set = &mut self.sets[group as usize];
        let before = set.len();
        set.extend(values.iter().flatten());
        self.held += set.len() - before;
        Ok(())
    }

    fn size(&self) -> usize {
        // A value takes 8 bytes and a control byte, in tables at most 7/8 full.
        self.sets.capacity() * std::mem::size_of::<HashSet<i64>>() + self.held * 9 * 8 / 7
    }
}

/// Aggregates sharing one [`DistinctShare`] at most (one bit each in a value's mask).
const MASK_BITS: usize = DistinctTable::MAX_MEMBERS;

/// The distinct values of one BIGINT argument for several COUNT(DISTINCT) aggregates that
/// differ only in FILTER (Nexmark q15/q16: all bidders, and those of each price rank): one
/// [`DistinctTable`] of (group, value) slots, each with a bit per aggregate that has counted
/// the value, and each aggregate's count per group. A row is looked up once for all of them,
/// where separate sets took one lookup (a cache miss in a large set) per aggregate whose
/// FILTER it passed.
///
/// The group aggregate updates every aggregate of its table once per batch, in order, with
/// the same spans; each member stages its counted rows and the last one applies the batch.
struct DistinctShare {
    item: FieldRef,
    members: usize,
    table: DistinctTable,
    /// Per member: the rows it counts in the batch being applied (`Some(None)`: all rows).
    staged: Vec<Option<Option<BooleanBuffer>>>,
    /// The batch's rows to count, reused from batch to batch.
    rows: Vec<Counted>,
}

impl DistinctShare {
    /// Count the staged rows of `spans` for every member.
    fn apply(&mut self, spans: &[Span], values: &[i64]) -> Result<()> {
        let staged = std::mem::replace(&mut self.staged, vec![None; self.members]);
        let mut masks: Vec<Option<BooleanBuffer>> = Vec::with_capacity(self.members);
        for s in staged {
            match s {
                Some(m) => masks.push(m),
                None => {
                    return crate::exec_err!(
                        "group aggregate",
                        "a shared COUNT(DISTINCT) was applied before all its aggregates staged \
                         their rows (internal error)"
                    );
                }
            }
        }
        let mut rows = std::mem::take(&mut self.rows);
        rows.clear();
        for s in spans {
            let (from, to) = (s.from as usize, s.to as usize);
            for (r, value) in values.iter().enumerate().take(to).skip(from) {
                let mut mask = 0u32;
                for (bit, m) in masks.iter().enumerate() {
                    if m.as_ref().is_none_or(|m| m.value(r)) {
                        mask |= 1 << bit;
                    }
                }
                if mask != 0 {
                    rows.push(Counted {
                        group: s.group,
                        value: *value,
                        mask,
                    });
                }
            }
        }
        self.table.add(&rows);
        self.rows = rows;
        Ok(())
    }
}

/// One COUNT(DISTINCT) aggregate of a [`DistinctShare`].
struct DistinctMember {
    shared: Arc<Mutex<DistinctShare>>,
    bit: usize,
}

impl DistinctMember {
    fn share(&self) -> std::sync::MutexGuard<'_, DistinctShare> {
        // A panic while holding the lock cannot leave the share half-updated in a way a later
        // reader could misread: the job fails with that panic first.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AggColumn for DistinctMember {
    fn grow(&mut self, groups: usize) {
        // Every member grows alike; growing the table to a size it has does nothing.
        self.share().table.grow(groups);
    }

    fn update(
        &mut self,
        spans: &[Span],
        args: &[ArrayRef],
        filter: Option<&ArrayRef>,
        ops: Option<&BooleanArray>,
    ) -> Result<()> {
        let (valid, values) = bigint_rows("COUNT(DISTINCT)", args, filter, ops)?;
        let mut s = self.share();
        s.staged[self.bit] = Some(valid);
        if self.bit + 1 == s.members {
            s.apply(spans, values.values())?;
        }
        Ok(())
    }

    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef> {
        let s = self.share();
        Ok(Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|g| s.table.count(*g, self.bit)),
        )))
    }

    fn reset(&mut self, groups: &[u32]) {
        // Every member is reset with the same groups; the first empties them.
        if self.bit == 0 {
            self.share().table.reset(groups);
        }
    }

    fn retain(&mut self, keep: &[u32]) {
        // Every member is retained with the same groups; the first renumbers them.
        if self.bit == 0 {
            self.share().table.retain(keep);
        }
    }

    fn state(&mut self, groups: usize) -> Result<Vec<ArrayRef>> {
        // This member's values per group, as a list per group (DataFusion's state).
        let s = self.share();
        let lengths = (0..groups).map(|g| s.table.count(g as u32, self.bit) as usize);
        let values = Int64Array::from(s.table.values(groups, self.bit));
        distinct_state(&s.item, lengths, values)
    }

    fn merge(&mut self, group: u32, state: &[ArrayRef], row: usize) -> Result<()> {
        let Some(values) = distinct_state_row(state, row)? else {
            return Ok(());
        };
        let mask = 1u32 << self.bit;
        let rows: Vec<Counted> = values
            .iter()
            .flatten()
            .map(|value| Counted { group, value, mask })
            .collect();
        self.share().table.add(&rows);
        Ok(())
    }

    fn size(&self) -> usize {
        // The first member reports the share.
        if self.bit != 0 {
            return 0;
        }
        let s = self.share();
        s.table.size() + s.rows.capacity() * std::mem::size_of::<Counted>()
    }
}

/// A value MIN and MAX can keep: BIGINT or string.
trait Ordered: Sized + Send {
    fn read(a: &ArrayRef) -> Result<ArrayRef>;
    /// Whether row `r` of `a` (as [`Self::read`] gave it) beats `held`; if so, its value.
    fn better(a: &ArrayRef, r: usize, held: &Option<Self>, max: bool) -> Option<Self>;
    fn array(values: Vec<Option<&Self>>) -> ArrayRef;
    fn size(&self) -> usize;
}

impl Ordered for i64 {
    fn read(a: &ArrayRef) -> Result<ArrayRef> {
        Ok(Arc::new(int64(a)?))
    }
    fn better(a: &ArrayRef, r: usize, held: &Option<Self>, max: bool) -> Option<Self> {
        let v = a.as_primitive::<Int64Type>().value(r);
        match held {
            Some(h) if (max && v <= *h) || (!max && v >= *h) => None,
            _ => Some(v),
        }
    }
    fn array(values: Vec<Option<&Self>>) -> ArrayRef {
        Arc::new(
            values
                .into_iter()
                .map(|v| v.copied())
                .collect::<Int64Array>(),
        )
    }
    fn size(&self) -> usize {
        0
    }
}

impl Ordered for Box<str> {
    fn read(a: &ArrayRef) -> Result<ArrayRef> {
        Ok(match a.data_type() {
            DataType::Utf8 => a.clone(),
            _ => cast(a, &DataType::Utf8)?,
        })
    }
    fn better(a: &ArrayRef, r: usize, held: &Option<Self>, max: bool) -> Option<Self> {
        let v = a.as_string::<i32>().value(r);
        match held {
            Some(h) if (max && v <= &**h) || (!max && v >= &**h) => None,
            _ => Some(v.into()),
        }
    }
    fn array(values: Vec<Option<&Self>>) -> ArrayRef {
        Arc::new(
            values
                .into_iter()
                .map(|v| v.map(|s| &**s))
                .collect::<StringArray>(),
        )
    }
    fn size(&self) -> usize {
        self.len()
    }
}

/// MIN or MAX (NULLs ignored; NULL while a group has no value).
struct Extreme<T> {
    max: bool,
    /// The result type (the argument's).
    out: DataType,
    values: Vec<Option<T>>,
    /// Heap bytes the values hold (strings), kept so `size` does not walk the groups.
    heap: usize,
}

impl<T: Ordered> Extreme<T> {
    /// Values as the result type (a TIMESTAMP is kept as its i64).
    fn typed(&self, a: ArrayRef) -> Result<ArrayRef> {
        Ok(match a.data_type() == &self.out {
            true => a,
            false => cast(&a, &self.out)?,
        })
    }

    fn offer(&mut self, group: u32, a: &ArrayRef, r: usize) {
        let held = &mut self.values[group as usize];
        if let Some(v) = T::better(a, r, held, self.max) {
            self.heap += v.size();
            if let Some(old) = held.replace(v) {
                self.heap -= old.size();
            }
        }
    }
}

impl<T: Ordered> AggColumn for Extreme<T> {
    fn grow(&mut self, groups: usize) {
        self.values.resize_with(groups, || None);
    }

    fn update(
        &mut self,
        spans: &[Span],
        args: &[ArrayRef],
        filter: Option<&ArrayRef>,
        ops: Option<&BooleanArray>,
    ) -> Result<()> {
        appends_only("MIN/MAX", ops)?;
        let valid = counted_rows(args, filter);
        let a = T::read(&args[0])?;
        for s in spans {
            each_row(&valid, s, |r| self.offer(s.group, &a, r));
        }
        Ok(())
    }

    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef> {
        self.typed(T::array(
            groups
                .iter()
                .map(|g| self.values[*g as usize].as_ref())
                .collect(),
        ))
    }

    fn reset(&mut self, groups: &[u32]) {
        for g in groups {
            if let Some(old) = self.values[*g as usize].take() {
                self.heap -= old.size();
            }
        }
    }

    fn retain(&mut self, keep: &[u32]) {
        retain_at(&mut self.values, keep);
        self.heap = self.values.iter().flatten().map(|v| v.size()).sum();
    }

    fn state(&mut self, groups: usize) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.typed(T::array(
            self.values[..groups].iter().map(|v| v.as_ref()).collect(),
        ))?])
    }

    fn merge(&mut self, group: u32, state: &[ArrayRef], row: usize) -> Result<()> {
        let a = T::read(&state[0])?;
        if a.is_valid(row) {
            self.offer(group, &a, row);
        }
        Ok(())
    }

    fn size(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<Option<T>>() + self.heap
    }
}

/// SUM of a BIGINT (wrapping, as DataFusion's; NULL while a group has no value).
struct Sum {
    sums: Vec<Option<i64>>,
}

impl AggColumn for Sum {
    fn grow(&mut self, groups: usize) {
        self.sums.resize(groups, None);
    }

    fn update(
        &mut self,
        spans: &[Span],
        args: &[ArrayRef],
        filter: Option<&ArrayRef>,
        ops: Option<&BooleanArray>,
    ) -> Result<()> {
        let (valid, values) = bigint_rows("SUM", args, filter, ops)?;
        let values = values.values();
        for s in spans {
            let sum = &mut self.sums[s.group as usize];
            each_row(&valid, s, |r| {
                *sum = Some(sum.unwrap_or(0).wrapping_add(values[r]));
            });
        }
        Ok(())
    }

    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef> {
        Ok(Arc::new(
            groups
                .iter()
                .map(|g| self.sums[*g as usize])
                .collect::<Int64Array>(),
        ))
    }

    fn reset(&mut self, groups: &[u32]) {
        for g in groups {
            self.sums[*g as usize] = None;
        }
    }

    fn retain(&mut self, keep: &[u32]) {
        retain_at(&mut self.sums, keep);
    }

    fn state(&mut self, groups: usize) -> Result<Vec<ArrayRef>> {
        Ok(vec![Arc::new(
            self.sums[..groups].iter().copied().collect::<Int64Array>(),
        )])
    }

    fn merge(&mut self, group: u32, state: &[ArrayRef], row: usize) -> Result<()> {
        let s = int64(&state[0])?;
        if s.is_valid(row) {
            let sum = &mut self.sums[group as usize];
            *sum = Some(sum.unwrap_or(0).wrapping_add(s.value(row)));
        }
        Ok(())
    }

    fn size(&self) -> usize {
        self.sums.capacity() * 16
    }
}

/// AVG: count and (DOUBLE) sum per group, the quotient cast to the result type.
struct Avg {
    out: DataType,
    counts: Vec<u64>,
    sums: Vec<f64>,
}

impl AggColumn for Avg {
    fn grow(&mut self, groups: usize) {
        self.counts.resize(groups, 0);
        self.sums.resize(groups, 0.0);
    }

    fn update(
        &mut self,
        spans: &[Span],
        args: &[ArrayRef],
        filter: Option<&ArrayRef>,
        ops: Option<&BooleanArray>,
    ) -> Result<()> {
        appends_only("AVG", ops)?;
        let valid = counted_rows(args, filter);
        let values = match args[0].data_type() {
            DataType::Float64 => args[0].as_primitive::<Float64Type>().clone(),
            _ => cast(&args[0], &DataType::Float64)?
                .as_primitive::<Float64Type>()
                .clone(),
        };
        let values = values.values();
        for s in spans {
            let g = s.group as usize;
            let (mut n, mut sum) = (0u64, 0.0f64);
            each_row(&valid, s, |r| {
                n += 1;
                sum += values[r];
            });
            self.counts[g] += n;
            self.sums[g] += sum;
        }
        Ok(())
    }

    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef> {
        let avg: ArrayRef = Arc::new(
            groups
                .iter()
                .map(|g| {
                    let g = *g as usize;
                    (self.counts[g] > 0).then(|| self.sums[g] / self.counts[g] as f64)
                })
                .collect::<Float64Array>(),
        );
        Ok(match self.out {
            DataType::Float64 => avg,
            _ => cast(&avg, &self.out)?,
        })
    }

    fn reset(&mut self, groups: &[u32]) {
        for g in groups {
            self.counts[*g as usize] = 0;
            self.sums[*g as usize] = 0.0;
        }
    }

    fn retain(&mut self, keep: &[u32]) {
        retain_at(&mut self.counts, keep);
        retain_at(&mut self.sums, keep);
    }

    fn state(&mut self, groups: usize) -> Result<Vec<ArrayRef>> {
        let counts = UInt64Array::from_iter_values(self.counts[..groups].iter().copied());
        let sums: Float64Array = (0..groups)
            .map(|g| (self.counts[g] > 0).then_some(self.sums[g]))
            .collect();
        Ok(vec![Arc::new(counts), Arc::new(sums)])
    }

    fn merge(&mut self, group: u32, state: &[ArrayRef], row: usize) -> Result<()> {
        let g = group as usize;
        let (Some(counts), Some(sums)) = (
            state[0].as_primitive_opt::<datafusion::arrow::datatypes::UInt64Type>(),
            state[1].as_primitive_opt::<Float64Type>(),
        ) else {
            return crate::exec_err!("group aggregate", "AVG state of unexpected types");
        };
        if counts.is_valid(row) {
            self.counts[g] += counts.value(row);
        }
        if sums.is_valid(row) {
            self.sums[g] += sums.value(row);
        }
        Ok(())
    }

    fn size(&self) -> usize {
        self.counts.capacity() * 8 + self.sums.capacity() * 8
    }
}

/// Any other aggregate: one DataFusion `Accumulator` per group, fed a slice per group.
struct Boxed {
    agg: Arc<AggregateFunctionExpr>,
    multiset: Option<(super::Multiset, DataType)>,
    /// Over a changelog: accumulators that can take rows back.
    sliding: bool,
    out: DataType,
    /// Per group; `None` until first used (making one can fail) or after a reset.
    accs: Vec<Option<Box<dyn Accumulator>>>,
    /// The accumulators' bytes, kept as they change (`size` is asked for after every
    /// watermark: summing every group's then cost half of Nexmark q4's and q17's time).
    bytes: usize,
}

impl Boxed {
    fn fresh(&self) -> Result<Box<dyn Accumulator>> {
        Ok(match self.multiset.clone() {
            Some((kind, arg)) => Box::new(super::MultisetAccumulator::new(kind, arg)?),
            None if self.sliding => self.agg.create_sliding_accumulator()?,
            None => self.agg.create_accumulator()?,
        })
    }
}

impl AggColumn for Boxed {
    fn grow(&mut self, groups: usize) {
        // Accumulators are made on first use (`update`, `merge`): making one can fail.
        if self.accs.len() < groups {
            self.accs.resize_with(groups, || None);
        }
    }

    fn update(
        &mut self,
        spans: &[Span],
        args: &[ArrayRef],
        filter: Option<&ArrayRef>,
        ops: Option<&BooleanArray>,
    ) -> Result<()> {
        for s in spans {
            let (from, len) = (s.from as usize, (s.to - s.from) as usize);
            let acc = self.get(s.group)?;
            let was = acc.size();
            // The rows to add and to take back, as masks over the group's slice (None: all).
            let (add, sub, added) = match ops {
                Some(mask) => {
                    let mask = mask.slice(from, len);
                    let added = mask.true_count();
                    let sub = datafusion::arrow::compute::not(&mask)?;
                    (Some(mask), Some(sub), added)
                }
                None => (None, None, len),
            };
            for (retract, mask, n) in [(false, add, added), (true, sub, len - added)] {
                if n == 0 {
                    continue;
                }
                let mask = mask.filter(|_| n < len);
                let mask = match (filter, &mask) {
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
                let cols = args
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
            let is = acc.size();
            self.bytes = self.bytes.saturating_sub(was) + is;
        }
        Ok(())
    }

    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef> {
        if groups.is_empty() {
            return Ok(new_empty_array(&self.out));
        }
        let values = groups
            .iter()
            .map(|g| Ok(self.get(*g)?.evaluate()?))
            .collect::<Result<Vec<ScalarValue>>>()?;
        crate::format::cast_to(&ScalarValue::iter_to_array(values)?, &self.out)
    }

    fn reset(&mut self, groups: &[u32]) {
        for g in groups {
            // Made afresh on next use.
            if let Some(Some(a)) = self.accs.get_mut(*g as usize).map(Option::take) {
                self.bytes = self.bytes.saturating_sub(a.size());
            }
        }
    }

    fn retain(&mut self, keep: &[u32]) {
        retain_at(&mut self.accs, keep);
        self.bytes = self.accs.iter().flatten().map(|a| a.size()).sum();
    }

    fn state(&mut self, groups: usize) -> Result<Vec<ArrayRef>> {
        let fields = self.agg.state_fields()?;
        let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(groups); fields.len()];
        for g in 0..groups as u32 {
            // `state` may drain an accumulator: merge it straight back into a fresh one.
            let st = self.get(g)?.state()?;
            let mut fresh = self.fresh()?;
            let arrays = st
                .iter()
                .map(|v| Ok(v.to_array()?))
                .collect::<Result<Vec<_>>>()?;
            fresh.merge_batch(&arrays)?;
            self.accs[g as usize] = Some(fresh);
            for (c, v) in columns.iter_mut().zip(st) {
                c.push(v);
            }
        }
        self.bytes = self.accs.iter().flatten().map(|a| a.size()).sum();
        columns
            .into_iter()
            .zip(fields)
            .map(|(values, field)| {
                if values.is_empty() {
                    return Ok(new_empty_array(field.data_type()));
                }
                Ok(ScalarValue::iter_to_array(values)?)
            })
            .collect()
    }

    fn merge(&mut self, group: u32, state: &[ArrayRef], row: usize) -> Result<()> {
        let arrays: Vec<ArrayRef> = state.iter().map(|a| a.slice(row, 1)).collect();
        let acc = self.get(group)?;
        let was = acc.size();
        acc.merge_batch(&arrays)?;
        let is = acc.size();
        self.bytes = self.bytes.saturating_sub(was) + is;
        Ok(())
    }

    fn size(&self) -> usize {
        self.bytes + self.accs.capacity() * 16
    }
}

impl Boxed {
    /// Group `g`'s accumulator, made if it does not exist yet.
    fn get(&mut self, g: u32) -> Result<&mut Box<dyn Accumulator>> {
        let g = g as usize;
        if self.accs.len() <= g {
            self.accs.resize_with(g + 1, || None);
        }
        if self.accs[g].is_none() {
            let fresh = self.fresh()?;
            self.bytes += fresh.size();
            self.accs[g] = Some(fresh);
        }
        match &mut self.accs[g] {
            Some(a) => Ok(a),
            None => crate::exec_err!("group aggregate", "accumulator {g} missing"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::test_util::{stage_spec, through};
    use crate::operators::{GroupAggSpec, OpSpec, aggregate_inputs};
    use datafusion::arrow::array::RecordBatch;

    /// Every columnar kind, with FILTERs and NULL arguments.
    const QUERY: &str = "SELECT k, COUNT(*) AS a, COUNT(NULLIF(v, 3)) FILTER (WHERE v > 2) AS b, \
        COUNT(DISTINCT NULLIF(v % 7, 2)) AS c, \
        COUNT(DISTINCT v % 5) FILTER (WHERE v % 2 = 0) AS d, MIN(v) AS e, \
        MAX(NULLIF(v, 49)) AS f, SUM(v) FILTER (WHERE v < 40) AS g, AVG(v) AS h, \
        MIN(CAST(v AS STRING)) AS i, MAX(CAST(v AS STRING)) FILTER (WHERE v > 5) AS j, \
        AVG(CAST(NULLIF(v, 4) AS DOUBLE)) AS l, MAX(ts) AS m, MIN(ts) FILTER (WHERE v > 10) AS n \
        FROM t GROUP BY k";

    fn show(a: &ArrayRef) -> Vec<String> {
        (0..a.len())
            .map(|i| ScalarValue::try_from_array(a, i).unwrap().to_string())
            .collect()
    }

    fn boxed(agg: &Arc<AggregateFunctionExpr>) -> Box<dyn AggColumn> {
        Box::new(Boxed {
            agg: agg.clone(),
            multiset: None,
            sliding: false,
            out: agg.field().data_type().clone(),
            accs: vec![],
            bytes: 0,
        })
    }

    /// The group aggregate `query` plans, and the source to feed it through.
    async fn group_agg(query: &str) -> (GroupAggSpec, Vec<OpSpec>) {
        let (spec, _, source) = stage_spec(query).await;
        let spec = spec
            .downcast_ref::<GroupAggSpec>()
            .expect("a group aggregate")
            .clone();
        (spec, source)
    }

    /// Batch `batch` of (ts, k, v) rows: runs of 15 rows per group of 4 (contiguous, as the
    /// group aggregate sorts them), one group left out of odd batches; `step` varies v.
    fn runs(source: &[OpSpec], batch: i64, step: i64) -> (RecordBatch, Vec<Span>) {
        let n = if batch % 2 == 1 { 45 } else { 60 };
        let rows: Vec<(i64, i64, i64)> = (0..n)
            .map(|i| (i, (i / 15 + batch) % 4, (i * 7 + batch * step) % 50))
            .collect();
        let input = through(source, &rows);
        assert_eq!(input.num_rows(), rows.len());
        let spans = (0..n as u32 / 15)
            .map(|s| Span {
                group: rows[(s * 15) as usize].1 as u32,
                from: s * 15,
                to: s * 15 + 15,
            })
            .collect();
        (input, spans)
    }

    /// COUNT(DISTINCT) aggregates of one argument differing only in FILTER share a map
    /// (a different argument gets its own), and each answers as DataFusion's accumulator:
    /// after every batch, from a state merged both ways, and after a reset and a retain.
    #[tokio::test]
    async fn shared_distinct_counts_match_datafusion_accumulators() {
        let query = "SELECT k, COUNT(DISTINCT NULLIF(v % 7, 2)) AS a, \
            COUNT(DISTINCT NULLIF(v % 7, 2)) FILTER (WHERE v > 20) AS b, COUNT(*) AS c, \
            COUNT(DISTINCT NULLIF(v % 7, 2)) FILTER (WHERE v % 3 = 0) AS d, \
            COUNT(DISTINCT v % 5) FILTER (WHERE v < 30) AS e, COUNT(DISTINCT v % 5) AS f \
            FROM t GROUP BY k";
        let (spec, source) = group_agg(query).await;
        let groups = 4usize;
        let all: Vec<u32> = (0..groups as u32).collect();
        let fresh = || {
            let multiset = vec![None; spec.aggs.len()];
            let mut cols = agg_columns(&spec.aggs, &multiset, false).unwrap();
            for c in &mut cols {
                c.grow(groups);
            }
            cols
        };
        let mut cols = fresh();
        let mut refs: Vec<Box<dyn AggColumn>> = spec.aggs.iter().map(boxed).collect();
        for r in &mut refs {
            r.grow(groups);
        }
        let check = |cols: &mut [Box<dyn AggColumn>],
                     refs: &mut [Box<dyn AggColumn>],
                     groups: &[u32],
                     when: &str| {
            for (i, (c, r)) in cols.iter_mut().zip(refs.iter_mut()).enumerate() {
                assert_eq!(
                    show(&c.evaluate(groups).unwrap()),
                    show(&r.evaluate(groups).unwrap()),
                    "{} {when}",
                    spec.aggs[i].name()
                );
            }
        };
        for batch in 0..5i64 {
            let (input, spans) = runs(&source, batch, 13);
            let (args, filters) = aggregate_inputs(&spec.aggs, &spec.agg_filters, &input).unwrap();
            for (i, (c, r)) in cols.iter_mut().zip(refs.iter_mut()).enumerate() {
                c.update(&spans, &args[i], filters[i].as_ref(), None)
                    .unwrap();
                r.update(&spans, &args[i], filters[i].as_ref(), None)
                    .unwrap();
            }
            check(&mut cols, &mut refs, &all, &format!("after batch {batch}"));
        }
        // Shared: only the first of a share reports its bytes.
        let sizes: Vec<bool> = cols.iter().map(|c| c.size() > 0).collect();
        assert_eq!(sizes, [true, false, true, false, true, false]);
        let (mut from_ours, mut into_theirs) = (fresh(), vec![]);
        for (i, a) in spec.aggs.iter().enumerate() {
            let (cs, rs) = (
                cols[i].state(groups).unwrap(),
                refs[i].state(groups).unwrap(),
            );
            let mut r2 = boxed(a);
            r2.grow(groups);
            for g in 0..groups {
                from_ours[i].merge(g as u32, &rs, g).unwrap();
                r2.merge(g as u32, &cs, g).unwrap();
            }
            into_theirs.push(r2);
        }
        check(&mut from_ours, &mut refs, &all, "from a state");
        check(&mut cols, &mut into_theirs, &all, "into DataFusion's");
        for (c, r) in cols.iter_mut().zip(refs.iter_mut()) {
            c.reset(&[1]);
            r.reset(&[1]);
        }
        for (c, r) in cols.iter_mut().zip(refs.iter_mut()) {
            c.retain(&[0, 1, 3]);
            r.retain(&[0, 1, 3]);
        }
        check(&mut cols, &mut refs, &[0, 1, 2], "after a reset and retain");
    }

    /// Each columnar aggregate answers as DataFusion's own accumulator per group, through
    /// updates, a snapshot state merged both ways (the layouts are DataFusion's), a reset and
    /// a retain.
    #[tokio::test]
    async fn columnar_aggregates_match_datafusion_accumulators() {
        let (spec, source) = group_agg(QUERY).await;
        let groups = 4usize;
        let all: Vec<u32> = (0..groups as u32).collect();
        let mut cols: Vec<Box<dyn AggColumn>> = vec![];
        let mut refs: Vec<Box<dyn AggColumn>> = vec![];
        for a in &spec.aggs {
            let c = columnar(a).unwrap();
            cols.push(c.unwrap_or_else(|| panic!("{} is not kept columnar", a.name())));
            refs.push(boxed(a));
        }
        for batch in 0..4i64 {
            let (input, spans) = runs(&source, batch, 11);
            let (args, filters) = aggregate_inputs(&spec.aggs, &spec.agg_filters, &input).unwrap();
            for (i, (c, r)) in cols.iter_mut().zip(refs.iter_mut()).enumerate() {
                c.grow(groups);
                r.grow(groups);
                c.update(&spans, &args[i], filters[i].as_ref(), None)
                    .unwrap();
                r.update(&spans, &args[i], filters[i].as_ref(), None)
                    .unwrap();
                let name = spec.aggs[i].name();
                assert_eq!(
                    show(&c.evaluate(&all).unwrap()),
                    show(&r.evaluate(&all).unwrap()),
                    "{name} after batch {batch}"
                );
            }
        }
        for (i, (c, r)) in cols.iter_mut().zip(refs.iter_mut()).enumerate() {
            let name = spec.aggs[i].name();
            let (cs, rs) = (c.state(groups).unwrap(), r.state(groups).unwrap());
            let (mut c2, mut r2) = (
                columnar(&spec.aggs[i]).unwrap().unwrap(),
                boxed(&spec.aggs[i]),
            );
            c2.grow(groups);
            r2.grow(groups);
            for g in 0..groups {
                c2.merge(g as u32, &rs, g).unwrap();
                r2.merge(g as u32, &cs, g).unwrap();
            }
            let want = show(&r.evaluate(&all).unwrap());
            assert_eq!(
                show(&c2.evaluate(&all).unwrap()),
                want,
                "{name} from a state"
            );
            assert_eq!(
                show(&r2.evaluate(&all).unwrap()),
                want,
                "{name} into DataFusion's"
            );
            c.reset(&[1]);
            r.reset(&[1]);
            c.retain(&[0, 1, 3]);
            r.retain(&[0, 1, 3]);
            assert_eq!(
                show(&c.evaluate(&[0, 1, 2]).unwrap()),
                show(&r.evaluate(&[0, 1, 2]).unwrap()),
                "{name} after a reset and retain"
            );
        }
    }
}
