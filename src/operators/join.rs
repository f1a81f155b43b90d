//! Streaming hash join of two inputs: window, interval and regular joins (INNER, LEFT, RIGHT,
//! FULL), as one operator with per-side eviction rules.
//!
//! Each side keeps the batches it received, a 64-bit hash per row (DataFusion's `create_hashes`
//! over the key columns), and a chained hash index (hash → entry → next entry, as DataFusion's
//! `JoinHashMap`): inserting a batch costs one map update per row and no allocation per key.
//! A batch from one side probes the other side's index; candidate pairs are assembled with
//! `interleave` (stored side) and `take` (probing side) into whole output columns, and the key
//! equality plus the join's residual condition are evaluated on them as DataFusion expressions.
//! Hash collisions are thus filtered by the same vectorized comparison.
//!
//! Eviction follows the watermark:
//! - *window join*: a row is dropped once the watermark reaches its `window_end`;
//! - *interval join* (`l.ts BETWEEN r.ts - a AND r.ts + b`): a left row once its time + `a`
//!   is behind the watermark (no right row that could match it can still come), a right row
//!   once its time + `b` is;
//! - *regular join*: nothing is evicted by the watermark; `'table.exec.state.ttl'` drops rows
//!   stored longer ago than the TTL (processing time, as Flink).
//!
//! Outer joins: when the outer side's rows are evicted by the watermark, the ones that never
//! matched are emitted padded with NULLs at that moment, so the output stays append-only. A
//! regular outer join cannot know that a row will never match: it emits the NULL-padded row
//! at once (+I) and retracts it (-D) when the first match arrives, so its output is a
//! changelog. Evicted batches leave dead index entries behind; the index is rebuilt once they
//! outnumber the live ones.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::compute::{and, interleave, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::HashMap;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::physical_expr::PhysicalExpr;

use super::{Emitter, Operator, StateSnapshot, eval, time_millis};
use crate::changelog::RowKind;
use crate::message::Timestamp;
use crate::{Result, exec_err};

/// A probe's output batch, the probe rows that matched, and the (probe, stored) pairs.
type Matches = (RecordBatch, Vec<u32>, Vec<(u32, u32)>);
/// INNER, LEFT, RIGHT or FULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Matches only.
    Inner,
    /// Every left row, NULL-padded when unmatched.
    Left,
    /// Every right row, NULL-padded when unmatched.
    Right,
    /// Both.
    Full,
    /// Left rows that have a match (`IN` / `EXISTS` subqueries, INTERSECT): each emitted once,
    /// when its first match is known. Only left columns are output.
    Semi,
    /// Left rows without a match (`NOT EXISTS`, EXCEPT). A regular anti join emits a row at
    /// once and retracts it (-D) when its first match arrives; a window or interval anti join
    /// emits the rows still unmatched when they are evicted (append-only).
    Anti,
}

impl JoinKind {
    /// Whether unmatched rows of `side` (0 left, 1 right) are emitted.
    pub fn outer(self, side: usize) -> bool {
        matches!(
            (self, side),
            (JoinKind::Left, 0) | (JoinKind::Right, 1) | (JoinKind::Full, _)
        )
    }
}

/// When a stored row can no longer match: once `time + after_ms < watermark`.
#[derive(Debug, Clone, Copy)]
pub struct Expire {
    /// Event-time column of that side.
    pub time_col: usize,
    /// Added to the row's time before comparing with the watermark.
    pub after_ms: i64,
}

/// How a join bounds its state, which decides what its output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinMode {
    /// Both sides windowed on the same windows: rows are freed when their window ends.
    Window,
    /// The condition bounds the sides' time attributes against each other.
    Interval,
    /// Unbounded (or with `'table.exec.state.ttl'`): every row is kept.
    Regular,
    /// A stream probing a reference table ([`super::LookupJoin`]).
    Lookup,
}

impl fmt::Display for JoinMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JoinMode::Window => "window join",
            JoinMode::Interval => "interval join",
            JoinMode::Regular => "regular join",
            JoinMode::Lookup => "lookup join",
        })
    }
}

/// The static description of a join.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    /// Window, interval, regular or lookup join.
    pub mode: JoinMode,
    /// INNER / LEFT / RIGHT / FULL.
    pub kind: JoinKind,
    /// Equi-join keys over the left and right rows.
    pub keys: [Vec<Arc<dyn PhysicalExpr>>; 2],
    /// Residual condition over the joined row (left columns then right columns).
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Input schemas.
    pub inputs: [SchemaRef; 2],
    /// Left columns then right columns (only left columns for semi and anti joins), then the
    /// op column when `updating`.
    pub output_schema: SchemaRef,
    /// Left columns then right columns: what the residual condition is evaluated over.
    pub joined_schema: SchemaRef,
    /// NULL keys match each other (INTERSECT, EXCEPT, `IS NOT DISTINCT FROM`).
    pub null_equal: bool,
    /// Per side: when its rows are evicted.
    pub expire: [Option<Expire>; 2],
    /// Regular joins: drop rows stored longer than this (processing time).
    pub ttl: Option<Duration>,
    /// Whether the output is a changelog (a regular outer join).
    pub updating: bool,
    /// The side every instance receives whole (a broadcast input), if any: its stored rows
    /// are the same in every instance, so a checkpoint restores them whole to each.
    pub broadcast: Option<usize>,
    /// `NOT IN (SELECT …)`, a regular anti join on one key with SQL's three-valued logic: once
    /// the right side holds a NULL key no left row is in the result, and a left row with a
    /// NULL key is only while the right side is empty. The planner broadcasts the right side,
    /// so every instance sees all of it.
    pub null_aware: bool,
}

impl fmt::Display for JoinSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = |side: usize| super::exprs_text(&self.keys[side]);
        write!(
            f,
            "Join: {} {:?} on [{}] = [{}]",
            self.mode,
            self.kind,
            keys(0),
            keys(1)
        )?;
        if let Some(c) = &self.filter {
            write!(f, " if {c}")?;
        }
        if self.null_aware {
            write!(f, " (NOT IN: null-aware)")?;
        }
        for (side, name) in [(0, "left"), (1, "right")] {
            if let Some(e) = self.expire[side] {
                let col = self.inputs[side].field(e.time_col).name().clone();
                write!(
                    f,
                    "; {name} rows evicted when {col} + {} ms < watermark",
                    e.after_ms
                )?;
            }
        }
        if let Some(ttl) = self.ttl {
            write!(f, "; state TTL {} s", ttl.as_secs_f64())?;
        }
        if self.updating {
            write!(f, " [changelog]")?;
        }
        Ok(())
    }
}

const NONE: u32 = u32::MAX;

/// The columns of `rows` of a batch.
fn take_rows(batch: &RecordBatch, rows: Vec<u32>) -> Result<Vec<ArrayRef>> {
    let idx = UInt32Array::from(rows);
    batch
        .columns()
        .iter()
        .map(|c| Ok(take(c.as_ref(), &idx, None)?))
        .collect()
}

struct Stored {
    batch: RecordBatch,
    /// Times a row has matched (outer sides only need to know "ever").
    matched: Vec<u32>,
    max_time: Timestamp,
    inserted: Instant,
}

struct Entry {
    batch: u32,
    row: u32,
    next: u32,
}

/// One side's rows and their hash index.
#[derive(Default)]
pub(crate) struct Side {
    batches: Vec<Option<Stored>>,
    hashes: Vec<Vec<u64>>,
    heads: HashMap<u64, u32>,
    entries: Vec<Entry>,
    dead_entries: usize,
    /// Evicted batches whose slots are still in `batches`.
    dead_slots: usize,
    bytes: usize,
    /// Batches before this one are in the index.
    indexed: usize,
}

/// Probes of at most this many rows scan the stored hashes instead of using the index.
const SCAN_PROBE_ROWS: usize = 8;

impl Side {
    fn insert(
        &mut self,
        batch: RecordBatch,
        hashes: Vec<u64>,
        matched: Vec<u32>,
        max_time: Timestamp,
    ) {
        self.bytes += batch.get_array_memory_size() + hashes.len() * 20;
        self.batches.push(Some(Stored {
            batch,
            matched,
            max_time,
            inserted: Instant::now(),
        }));
        self.hashes.push(hashes);
    }

    /// Add the batches stored since the last call to the index. Indexing waits for a probe
    /// that needs it: a side probed only by a few rows at a time (q7's per-window maximum
    /// probing the bids) is scanned instead, and never pays for an index.
    pub(crate) fn index_pending(&mut self) {
        for id in self.indexed..self.batches.len() {
            if self.batches[id].is_some() {
                let h = std::mem::take(&mut self.hashes[id]);
                self.index(id as u32, &h);
                self.hashes[id] = h;
            }
        }
        self.indexed = self.batches.len();
    }

    fn index(&mut self, id: u32, hashes: &[u64]) {
        self.entries.reserve(hashes.len());
        for (row, h) in hashes.iter().enumerate() {
            let slot = self.heads.entry(*h).or_insert(NONE);
            let next = *slot;
            *slot = self.entries.len() as u32;
            self.entries.push(Entry {
                batch: id,
                row: row as u32,
                next,
            });
        }
    }

    /// Stored rows whose hash equals each probe hash: (probe row, stored batch, stored row).
    fn candidates(&self, hashes: &[u64]) -> (Vec<u32>, Vec<(u32, u32)>) {
        let (mut probe, mut stored) = (vec![], vec![]);
        // Batches not indexed yet (a side only ever probed by a few rows at a time) are
        // scanned: each stored hash compared with the few probe hashes.
        let scan_from = self.indexed;
        for (b, slot) in self.batches.iter().enumerate().skip(scan_from) {
            if slot.is_none() {
                continue;
            }
            for (row, h) in self.hashes[b].iter().enumerate() {
                for (r, p) in hashes.iter().enumerate() {
                    if h == p {
                        probe.push(r as u32);
                        stored.push((b as u32, row as u32));
                    }
                }
            }
        }
        if self.indexed == 0 {
            return (probe, stored);
        }
        for (r, h) in hashes.iter().enumerate() {
            let Some(&head) = self.heads.get(h) else {
                continue;
            };
            let mut e = head;
            while e != NONE {
                let entry = &self.entries[e as usize];
                if self.batches[entry.batch as usize].is_some() {
                    probe.push(r as u32);
                    stored.push((entry.batch, entry.row));
                }
                e = entry.next;
            }
        }
        (probe, stored)
    }

    /// Drop the batches `evict` selects; returns them.
    fn evict(&mut self, mut evict: impl FnMut(&Stored) -> bool) -> Vec<Stored> {
        let mut out = vec![];
        for (id, (slot, hashes)) in self.batches.iter_mut().zip(&mut self.hashes).enumerate() {
            if slot.as_ref().is_some_and(&mut evict)
                && let Some(s) = slot.take()
            {
                self.dead_slots += 1;
                if id < self.indexed {
                    self.dead_entries += hashes.len();
                }
                self.bytes = self
                    .bytes
                    .saturating_sub(s.batch.get_array_memory_size() + hashes.len() * 20);
                *hashes = vec![];
                out.push(s);
            }
        }
        // Compact once the dead index entries, or the empty slots of a side that is only
        // scanned, outnumber the live ones.
        if (self.dead_entries > 1024 && self.dead_entries * 2 > self.entries.len())
            || (self.dead_slots > 64 && self.dead_slots * 2 > self.batches.len())
        {
            self.rebuild();
        }
        out
    }

    /// Compact the batches and rebuild the index without dead entries.
    fn rebuild(&mut self) {
        let batches = std::mem::take(&mut self.batches);
        let hashes = std::mem::take(&mut self.hashes);
        let was_indexed = self.indexed;
        self.heads.clear();
        self.entries.clear();
        self.dead_entries = 0;
        self.dead_slots = 0;
        // Batches that were indexed stay indexed; the others stay waiting for a large probe.
        let mut pending = vec![];
        for (id, (b, h)) in batches.into_iter().zip(hashes).enumerate() {
            let Some(b) = b else { continue };
            if id < was_indexed {
                let new_id = self.batches.len() as u32;
                self.index(new_id, &h);
                self.batches.push(Some(b));
                self.hashes.push(h);
            } else {
                pending.push((b, h));
            }
        }
        self.indexed = self.batches.len();
        for (b, h) in pending {
            self.batches.push(Some(b));
            self.hashes.push(h);
        }
    }
}

impl Side {
    /// A store of `batches` of input `side` of `join`, indexed by the join's keys.
    pub(crate) fn build(
        join: &StreamingJoin,
        side: usize,
        batches: Vec<RecordBatch>,
    ) -> Result<Self> {
        let mut store = Side::default();
        for b in batches {
            if b.num_rows() == 0 {
                continue;
            }
            let hashes = join.hashes(side, &b)?;
            let n = b.num_rows();
            store.insert(b, hashes, vec![0; n], Timestamp::MIN);
        }
        store.index_pending();
        Ok(store)
    }

    /// Rows held.
    pub(crate) fn rows(&self) -> usize {
        self.batches
            .iter()
            .flatten()
            .map(|s| s.batch.num_rows())
            .sum()
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes + self.entries.len() * 12 + self.heads.len() * 12
    }
}

/// Stored batches and (index among them, row) per reference: see [`StreamingJoin::locate`].
type Located<'s> = (Vec<&'s RecordBatch>, Vec<(usize, usize)>);

/// The running join.
pub struct StreamingJoin {
    spec: JoinSpec,
    /// Per input: the columns its keys and the join condition read (checked on candidate
    /// pairs before the other columns are gathered).
    checked: [Vec<bool>; 2],
    /// The inputs' schemas and the joined one with every field nullable: the batches the
    /// check sees hold NULL in the columns it does not read.
    check_schemas: [SchemaRef; 3],
    sides: [Side; 2],
    watermark: Timestamp,
    last_ttl_check: Instant,
    /// Null-aware anti join: right rows seen, and those with a NULL key.
    right_rows: u64,
    right_nulls: u64,
}

impl StreamingJoin {
    /// A join with empty state.
    pub fn new(spec: JoinSpec) -> Self {
        use datafusion::physical_expr::utils::collect_columns;
        let widths = [spec.inputs[0].fields().len(), spec.inputs[1].fields().len()];
        let mut checked = [vec![false; widths[0]], vec![false; widths[1]]];
        for (side, keys) in spec.keys.iter().enumerate() {
            for c in keys.iter().flat_map(collect_columns) {
                if let Some(x) = checked[side].get_mut(c.index()) {
                    *x = true;
                }
            }
        }
        for c in spec.filter.iter().flat_map(collect_columns) {
            let (side, i) = match c.index().checked_sub(widths[0]) {
                Some(r) => (1, r),
                None => (0, c.index()),
            };
            if let Some(x) = checked[side].get_mut(i) {
                *x = true;
            }
        }
        // A column the check does not read is a NullArray there (it allocates nothing).
        let unread = |s: &SchemaRef, checked: &[bool]| -> SchemaRef {
            let fields: Vec<_> = (s.fields().iter().zip(checked))
                .map(|(f, c)| match c {
                    true => f.as_ref().clone().with_nullable(true),
                    false => datafusion::arrow::datatypes::Field::new(
                        f.name(),
                        datafusion::arrow::datatypes::DataType::Null,
                        true,
                    ),
                })
                .collect();
            Arc::new(datafusion::arrow::datatypes::Schema::new(fields))
        };
        let both: Vec<bool> = checked.concat();
        let check_schemas = [
            unread(&spec.inputs[0], &checked[0]),
            unread(&spec.inputs[1], &checked[1]),
            unread(&spec.joined_schema, &both),
        ];
        Self {
            spec,
            checked,
            check_schemas,
            sides: [Side::default(), Side::default()],
            watermark: Timestamp::MIN,
            last_ttl_check: Instant::now(),
            right_rows: 0,
            right_nulls: 0,
        }
    }

    fn hashes(&self, side: usize, batch: &RecordBatch) -> Result<Vec<u64>> {
        let arrays = self.spec.keys[side]
            .iter()
            .map(|k| eval(k, batch))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let mut hashes = vec![0; batch.num_rows()];
        create_hashes(&arrays, &RandomState::with_seed(0x6a6f_696e), &mut hashes)?;
        Ok(hashes)
    }

    /// Output columns for pairs of (left rows, right rows); `None` pads a side with NULLs.
    fn assemble(
        &self,
        left: Option<Vec<ArrayRef>>,
        right: Option<Vec<ArrayRef>>,
        rows: usize,
        kind: Option<RowKind>,
    ) -> Result<RecordBatch> {
        let mut cols = vec![];
        for (side, part) in [(0, left), (1, right)] {
            match part {
                Some(c) => cols.extend(c),
                None => cols.extend(
                    self.spec.inputs[side]
                        .fields()
                        .iter()
                        .map(|f| new_null_array(f.data_type(), rows)),
                ),
            }
        }
        if self.spec.updating {
            cols.push(crate::changelog::uniform_ops(
                kind.unwrap_or(RowKind::Insert),
                rows,
            ));
        }
        Ok(RecordBatch::try_new(self.spec.output_schema.clone(), cols)?)
    }

    /// Rows of stored batches, gathered with `interleave`.
    fn gather(&self, side: usize, refs: &[(u32, u32)]) -> Result<Vec<ArrayRef>> {
        self.gather_from(&self.sides[side], side, refs)
    }

    /// Rows of `store` (holding rows of input `side`), gathered with `interleave`.
    fn gather_from(&self, store: &Side, side: usize, refs: &[(u32, u32)]) -> Result<Vec<ArrayRef>> {
        let (batches, indices) = Self::locate(store, refs)?;
        (0..self.spec.inputs[side].fields().len())
            .map(|c| self.gather_col(side, c, &batches, &indices))
            .collect()
    }

    /// The stored batches `refs` point into, and each ref as (index among them, row).
    fn locate<'s>(store: &'s Side, refs: &[(u32, u32)]) -> Result<Located<'s>> {
        let mut ids: Vec<u32> = refs.iter().map(|(b, _)| *b).collect();
        ids.sort_unstable();
        ids.dedup();
        let pos: HashMap<u32, usize> = ids.iter().enumerate().map(|(i, b)| (*b, i)).collect();
        let indices = refs.iter().map(|(b, r)| (pos[b], *r as usize)).collect();
        let batches = ids
            .iter()
            .map(|b| store.batches[*b as usize].as_ref().map(|s| &s.batch))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| crate::Error::Execution {
                operator: "join".into(),
                message: "probe hit an evicted batch".into(),
            })?;
        Ok((batches, indices))
    }

    /// Column `c` of the rows at `indices` of `batches` (of input `side`).
    fn gather_col(
        &self,
        side: usize,
        c: usize,
        batches: &[&RecordBatch],
        indices: &[(usize, usize)],
    ) -> Result<ArrayRef> {
        if indices.is_empty() {
            let f = self.spec.inputs[side].field(c);
            return Ok(new_null_array(f.data_type(), 0));
        }
        let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
        Ok(interleave(&arrays, indices)?)
    }

    /// Pairs (probe row of `side`, stored row of the other side) that satisfy the condition,
    /// as an output batch and the pairs kept.
    fn probe(&self, side: usize, batch: &RecordBatch, hashes: &[u64]) -> Result<Option<Matches>> {
        self.probe_store(&self.sides[1 - side], side, batch, hashes)
    }

    /// [`Self::probe`] against an explicit store of the other side's rows.
    fn probe_store(
        &self,
        store: &Side,
        side: usize,
        batch: &RecordBatch,
        hashes: &[u64],
    ) -> Result<Option<Matches>> {
        let other = 1 - side;
        let (probe_rows, stored) = store.candidates(hashes);
        if probe_rows.is_empty() {
            return Ok(None);
        }
        // First only the columns the keys and the condition read, for every candidate pair
        // (equal hashes); then the other columns for the pairs that match only.
        let idx = UInt32Array::from(probe_rows.clone());
        let probe_cols = self.checked_columns(side, idx.len(), |c| {
            Ok(take(batch.column(c).as_ref(), &idx, None)?)
        })?;
        let (stored_batches, stored_at) = Self::locate(store, &stored)?;
        let stored_cols = self.checked_columns(other, stored_at.len(), |c| {
            self.gather_col(other, c, &stored_batches, &stored_at)
        })?;
        let n = probe_rows.len();
        let keep = self.matching(side, &probe_cols, &stored_cols)?;
        // The pairs kept (None: all of them).
        let keep = keep.filter(|k| k.true_count() < n);
        let (probe_rows, stored, stored_at) = match &keep {
            Some(k) => {
                let (mut p, mut s, mut at) = (vec![], vec![], vec![]);
                for (i, k) in k.iter().enumerate() {
                    if k == Some(true) {
                        p.push(probe_rows[i]);
                        s.push(stored[i]);
                        at.push(stored_at[i]);
                    }
                }
                (p, s, at)
            }
            None => (probe_rows, stored, stored_at),
        };
        let m = probe_rows.len();
        let idx = UInt32Array::from(probe_rows.clone());
        let probe_cols = self.complete(side, probe_cols, keep.as_ref(), |c| {
            Ok(take(batch.column(c).as_ref(), &idx, None)?)
        })?;
        let stored_cols = self.complete(other, stored_cols, keep.as_ref(), |c| {
            self.gather_col(other, c, &stored_batches, &stored_at)
        })?;
        let (left, right) = if side == 0 {
            (probe_cols, stored_cols)
        } else {
            (stored_cols, probe_cols)
        };
        let joined = if self.semi_or_anti() {
            // Only which pairs match matters: the caller outputs left rows.
            let cols: Vec<ArrayRef> = left.into_iter().chain(right).collect();
            RecordBatch::try_new(self.spec.joined_schema.clone(), cols)?
        } else {
            self.assemble(Some(left), Some(right), m, Some(RowKind::Insert))?
        };
        Ok(Some((joined, probe_rows, stored)))
    }

    /// The columns of input `side` the check reads, from `fetch`; a `NullArray` of `rows` for
    /// the others.
    fn checked_columns(
        &self,
        side: usize,
        rows: usize,
        fetch: impl Fn(usize) -> Result<ArrayRef>,
    ) -> Result<Vec<ArrayRef>> {
        (self.checked[side].iter().enumerate())
            .map(|(c, checked)| match checked {
                true => fetch(c),
                false => Ok(Arc::new(datafusion::arrow::array::NullArray::new(rows)) as ArrayRef),
            })
            .collect()
    }

    /// [`Self::checked_columns`] for the pairs kept (`keep`; None: all): the checked columns
    /// filtered, the others from `fetch`.
    fn complete(
        &self,
        side: usize,
        checked_cols: Vec<ArrayRef>,
        keep: Option<&BooleanArray>,
        fetch: impl Fn(usize) -> Result<ArrayRef>,
    ) -> Result<Vec<ArrayRef>> {
        (checked_cols.into_iter().enumerate())
            .map(|(c, col)| match (self.checked[side][c], keep) {
                (true, Some(k)) => Ok(datafusion::arrow::compute::filter(col.as_ref(), k)?),
                (true, None) => Ok(col),
                (false, _) => fetch(c),
            })
            .collect()
    }

    /// Which candidate pairs (probe rows of `side` against stored rows, columns as
    /// [`Self::checked_columns`] gave them) have equal keys and meet the condition; None when
    /// there is nothing to check.
    fn matching(
        &self,
        side: usize,
        probe_cols: &[ArrayRef],
        stored_cols: &[ArrayRef],
    ) -> Result<Option<BooleanArray>> {
        let (left, right) = if side == 0 {
            (probe_cols, stored_cols)
        } else {
            (stored_cols, probe_cols)
        };
        let left_b = RecordBatch::try_new(self.check_schemas[0].clone(), left.to_vec())?;
        let right_b = RecordBatch::try_new(self.check_schemas[1].clone(), right.to_vec())?;
        let mut keep: Option<BooleanArray> = None;
        for (lk, rk) in self.spec.keys[0].iter().zip(&self.spec.keys[1]) {
            let (l, r) = (eval(lk, &left_b)?, eval(rk, &right_b)?);
            let m = if self.spec.null_equal {
                datafusion::arrow::compute::kernels::cmp::not_distinct(&l, &r)?
            } else {
                eq(&l, &r)?
            };
            keep = Some(match keep {
                Some(k) => and(&k, &m)?,
                None => m,
            });
        }
        if let Some(f) = &self.spec.filter {
            let cols: Vec<ArrayRef> = left.iter().chain(right).cloned().collect();
            let checked = RecordBatch::try_new(self.check_schemas[2].clone(), cols)?;
            let m = eval(f, &checked)?;
            let m = m
                .as_any()
                .downcast_ref::<BooleanArray>()
                .cloned()
                .ok_or_else(|| crate::Error::Execution {
                    operator: "join".into(),
                    message: format!("join condition {f} is not boolean"),
                })?;
            keep = Some(match keep {
                Some(k) => and(&k, &m)?,
                None => m,
            });
        }
        Ok(keep)
    }

    /// NULL-padded output for `rows` of a batch of `side`.
    fn unmatched(
        &self,
        side: usize,
        batch: &RecordBatch,
        rows: Vec<u32>,
        kind: RowKind,
    ) -> Result<RecordBatch> {
        let n = rows.len();
        let cols = take_rows(batch, rows)?;
        if side == 0 {
            self.assemble(Some(cols), None, n, Some(kind))
        } else {
            self.assemble(None, Some(cols), n, Some(kind))
        }
    }

    /// Lookup join: join `batch` (left rows) with `table` (right rows) without storing it;
    /// with `outer`, unmatched left rows are emitted padded with NULLs.
    pub(crate) fn lookup(
        &self,
        table: &Side,
        batch: &RecordBatch,
        outer: bool,
        out: &mut Emitter,
    ) -> Result<()> {
        let hashes = self.hashes(0, batch)?;
        let mut matched = vec![false; batch.num_rows()];
        if let Some((joined, probe_rows, _)) = self.probe_store(table, 0, batch, &hashes)? {
            for r in probe_rows {
                matched[r as usize] = true;
            }
            out.emit(joined);
        }
        if outer {
            let rows: Vec<u32> = (0..batch.num_rows() as u32)
                .filter(|r| !matched[*r as usize])
                .collect();
            if !rows.is_empty() {
                out.emit(self.unmatched(0, batch, rows, RowKind::Insert)?);
            }
        }
        Ok(())
    }

    /// The spec this join runs.
    /// The snapshot table of `side`'s stored rows; a broadcast side's is restored whole to
    /// every instance (see [`crate::state::BROADCAST_PREFIX`]).
    /// Keep a batch of `side` (with how often each row matched), then apply the state TTL.
    fn store(
        &mut self,
        side: usize,
        batch: RecordBatch,
        hashes: Vec<u64>,
        matched: Vec<u32>,
    ) -> Result<()> {
        let max_time = match self.spec.expire[side] {
            Some(e) => {
                let col = batch.column(e.time_col).clone();
                let times = time_millis(&col)?;
                times.iter().copied().max().unwrap_or(Timestamp::MIN)
            }
            None => Timestamp::MIN,
        };
        self.sides[side].insert(batch, hashes, matched, max_time);
        self.expire_ttl();
        Ok(())
    }

    fn semi_or_anti(&self) -> bool {
        matches!(self.spec.kind, JoinKind::Semi | JoinKind::Anti)
    }

    /// Output rows of a semi or anti join: left columns (then the op column).
    fn left_rows(&self, cols: Vec<ArrayRef>, rows: usize, kind: RowKind) -> Result<RecordBatch> {
        let mut cols = cols;
        if self.spec.updating {
            cols.push(crate::changelog::uniform_ops(kind, rows));
        }
        Ok(RecordBatch::try_new(self.spec.output_schema.clone(), cols)?)
    }

    /// A batch of a semi or anti join: left rows are emitted (semi: matched; regular anti:
    /// unmatched, +I) and stored; right rows are stored, and the stored left rows they match
    /// for the first time are emitted (semi) or retracted (regular anti, -D).
    fn process_semi(
        &mut self,
        side: usize,
        batch: RecordBatch,
        hashes: Vec<u64>,
        out: &mut Emitter,
    ) -> Result<()> {
        let anti = self.spec.kind == JoinKind::Anti;
        let mut matched = vec![0u32; batch.num_rows()];
        let probe = self.probe(side, &batch, &hashes)?;
        if side == 0 {
            if let Some((_, probe_rows, _)) = &probe {
                for r in probe_rows {
                    matched[*r as usize] += 1;
                }
            }
            let rows: Vec<u32> = (0..batch.num_rows() as u32)
                .filter(|r| (matched[*r as usize] > 0) != anti)
                .collect();
            if !rows.is_empty() && (!anti || self.spec.updating) {
                let n = rows.len();
                let cols = take_rows(&batch, rows)?;
                out.emit(self.left_rows(cols, n, RowKind::Insert)?);
            }
        } else if let Some((_, _, stored)) = &probe {
            let mut first: Vec<(u32, u32)> = vec![];
            for (b, r) in stored {
                if let Some(s) = self.sides[0].batches[*b as usize].as_mut() {
                    if s.matched[*r as usize] == 0 {
                        first.push((*b, *r));
                    }
                    s.matched[*r as usize] += 1;
                }
            }
            if !first.is_empty() && (!anti || self.spec.updating) {
                let n = first.len();
                let cols = self.gather(0, &first)?;
                let kind = if anti {
                    RowKind::Delete
                } else {
                    RowKind::Insert
                };
                out.emit(self.left_rows(cols, n, kind)?);
            }
        }
        self.store(side, batch, hashes, matched)
    }

    /// A batch of a null-aware anti join (`NOT IN`, see [`JoinSpec::null_aware`]): as
    /// [`Self::process_semi`], and besides, the first right row retracts the left rows with a
    /// NULL key, and the first NULL on the right retracts every row (the result stays empty).
    fn process_not_in(
        &mut self,
        side: usize,
        batch: RecordBatch,
        hashes: Vec<u64>,
        out: &mut Emitter,
    ) -> Result<()> {
        let key = self.key_column(side, &batch)?;
        if side == 0 {
            if self.right_nulls > 0 {
                return Ok(());
            }
            let mut matched = vec![0u32; batch.num_rows()];
            if let Some((_, probe_rows, _)) = self.probe(0, &batch, &hashes)? {
                for r in probe_rows {
                    matched[r as usize] += 1;
                }
            }
            if self.right_rows > 0 {
                for (i, m) in matched.iter_mut().enumerate() {
                    if key.is_null(i) {
                        *m = 1;
                    }
                }
            }
            let rows: Vec<u32> = (0..batch.num_rows() as u32)
                .filter(|r| matched[*r as usize] == 0)
                .collect();
            if !rows.is_empty() {
                let n = rows.len();
                let cols = take_rows(&batch, rows)?;
                out.emit(self.left_rows(cols, n, RowKind::Insert)?);
            }
            return self.store(0, batch, hashes, matched);
        }
        let nulls = key.null_count() as u64;
        let first_rows = self.right_rows == 0;
        if self.right_nulls == 0 && (nulls > 0 || first_rows) {
            // Retract the left rows in the result: all of them after a NULL, else those with
            // a NULL key.
            let mut gone: Vec<(u32, u32)> = vec![];
            for b in 0..self.sides[0].batches.len() {
                let Some(stored) = &self.sides[0].batches[b] else {
                    continue;
                };
                let keys = if nulls > 0 {
                    None
                } else {
                    Some(self.key_column(0, &stored.batch)?)
                };
                let Some(stored) = self.sides[0].batches[b].as_mut() else {
                    continue;
                };
                for (r, m) in stored.matched.iter_mut().enumerate() {
                    if *m == 0 && keys.as_ref().is_none_or(|k| k.is_null(r)) {
                        *m = 1;
                        gone.push((b as u32, r as u32));
                    }
                }
            }
            if !gone.is_empty() {
                let n = gone.len();
                let cols = self.gather(0, &gone)?;
                out.emit(self.left_rows(cols, n, RowKind::Delete)?);
            }
            if nulls > 0 {
                // Nothing on the left can be in the result again.
                self.sides[0] = Side::default();
            }
        }
        self.right_rows += batch.num_rows() as u64;
        self.right_nulls += nulls;
        self.process_semi(1, batch, hashes, out)
    }

    /// The (single) join key of `side`'s rows.
    fn key_column(&self, side: usize, batch: &RecordBatch) -> Result<ArrayRef> {
        match self.spec.keys[side].as_slice() {
            [k] => eval(k, batch),
            _ => exec_err!("join", "NOT IN needs exactly one key column"),
        }
    }

    /// Count the right rows held (and those with a NULL key), after a restore.
    fn recount_right(&mut self) -> Result<()> {
        let (mut rows, mut nulls) = (0, 0);
        for stored in self.sides[1].batches.iter().flatten() {
            rows += stored.batch.num_rows() as u64;
            nulls += self.key_column(1, &stored.batch)?.null_count() as u64;
        }
        self.right_rows = rows;
        self.right_nulls = nulls;
        Ok(())
    }

    fn side_table(&self, side: usize) -> String {
        if self.spec.broadcast == Some(side) {
            format!("{}side{side}", crate::state::BROADCAST_PREFIX)
        } else {
            format!("side{side}")
        }
    }

    pub(crate) fn spec(&self) -> &JoinSpec {
        &self.spec
    }

    fn expire_ttl(&mut self) {
        let Some(ttl) = self.spec.ttl else { return };
        if self.last_ttl_check.elapsed() < Duration::from_millis(200).min(ttl) {
            return;
        }
        self.last_ttl_check = Instant::now();
        for side in &mut self.sides {
            side.evict(|s| s.inserted.elapsed() >= ttl);
        }
    }
}

impl Operator for StreamingJoin {
    fn name(&self) -> &str {
        "join"
    }

    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Emitter) -> Result<()> {
        if input > 1 {
            return exec_err!("join", "input {input} of a two-input join");
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let side = input;
        let other = 1 - side;
        let hashes = self.hashes(side, &batch)?;
        if hashes.len() > SCAN_PROBE_ROWS {
            self.sides[other].index_pending();
        }
        if self.spec.null_aware {
            return self.process_not_in(side, batch, hashes, out);
        }
        if self.semi_or_anti() {
            return self.process_semi(side, batch, hashes, out);
        }
        let mut matched = vec![0u32; batch.num_rows()];
        if let Some((joined, probe_rows, stored)) = self.probe(side, &batch, &hashes)? {
            // A regular outer join retracts the NULL-padded rows of the other side that
            // match for the first time.
            if self.spec.updating && self.spec.kind.outer(other) {
                let mut first: Vec<(u32, u32)> = vec![];
                for (b, r) in &stored {
                    if let Some(s) = self.sides[other].batches[*b as usize].as_ref()
                        && s.matched[*r as usize] == 0
                        && !first.contains(&(*b, *r))
                    {
                        first.push((*b, *r));
                    }
                }
                if !first.is_empty() {
                    let cols = self.gather(other, &first)?;
                    let n = first.len();
                    let b = if other == 0 {
                        self.assemble(Some(cols), None, n, Some(RowKind::Delete))?
                    } else {
                        self.assemble(None, Some(cols), n, Some(RowKind::Delete))?
                    };
                    out.emit(b);
                }
            }
            for r in &probe_rows {
                matched[*r as usize] += 1;
            }
            for (b, r) in &stored {
                if let Some(s) = self.sides[other].batches[*b as usize].as_mut() {
                    s.matched[*r as usize] += 1;
                }
            }
            out.emit(joined);
        }
        // A regular outer join emits unmatched rows now (they may be retracted later).
        if self.spec.updating && self.spec.kind.outer(side) {
            let rows: Vec<u32> = (0..batch.num_rows() as u32)
                .filter(|r| matched[*r as usize] == 0)
                .collect();
            if !rows.is_empty() {
                out.emit(self.unmatched(side, &batch, rows, RowKind::Insert)?);
            }
        }
        self.store(side, batch, hashes, matched)
    }

    fn on_watermark(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        self.watermark = wm;
        for side in 0..2 {
            let Some(e) = self.spec.expire[side] else {
                continue;
            };
            let gone = self.sides[side].evict(|s| s.max_time.saturating_add(e.after_ms) < wm);
            if self.spec.kind == JoinKind::Anti && side == 0 && !self.spec.updating {
                // A window or interval anti join: rows still unmatched can no longer match.
                for s in gone {
                    let rows: Vec<u32> = (0..s.batch.num_rows() as u32)
                        .filter(|r| s.matched[*r as usize] == 0)
                        .collect();
                    if !rows.is_empty() {
                        let n = rows.len();
                        let cols = take_rows(&s.batch, rows)?;
                        out.emit(self.left_rows(cols, n, RowKind::Insert)?);
                    }
                }
                continue;
            }
            if self.spec.kind.outer(side) && !self.spec.updating {
                for s in gone {
                    let rows: Vec<u32> = (0..s.batch.num_rows() as u32)
                        .filter(|r| s.matched[*r as usize] == 0)
                        .collect();
                    if !rows.is_empty() {
                        out.emit(self.unmatched(side, &s.batch, rows, RowKind::Insert)?);
                    }
                }
            }
        }
        self.expire_ttl();
        Ok(())
    }

    /// Tables `side0` and `side1`: every stored row with how often it matched, its batch's
    /// largest event time, and when it was stored (wall clock, ms: a state TTL counts the
    /// time the job was down, as Flink's does), with the key group of its join keys.
    fn snapshot(&mut self, key_groups: usize) -> Result<Option<StateSnapshot>> {
        use datafusion::arrow::array::{Int64Array, UInt32Array};
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut tables = vec![];
        for side in 0..2 {
            let mut parts = vec![];
            for stored in self.sides[side].batches.iter().flatten() {
                let b = &stored.batch;
                let n = b.num_rows();
                let keys = self.spec.keys[side]
                    .iter()
                    .map(|k| eval(k, b))
                    .collect::<Result<Vec<ArrayRef>>>()?;
                let inserted = now_ms - stored.inserted.elapsed().as_millis() as i64;
                let mut names: Vec<String> = b
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                names.extend(["__matched".into(), "__max_time".into(), "__inserted".into()]);
                let mut cols = b.columns().to_vec();
                cols.push(Arc::new(UInt32Array::from(stored.matched.clone())));
                cols.push(Arc::new(Int64Array::from(vec![stored.max_time; n])));
                cols.push(Arc::new(Int64Array::from(vec![inserted; n])));
                parts.push(crate::state::keyed_batch(
                    &names, cols, &keys, n, key_groups,
                )?);
            }
            if let Some(first) = parts.first() {
                let all = datafusion::arrow::compute::concat_batches(&first.schema(), &parts)?;
                tables.push((self.side_table(side), all));
            }
        }
        // Beside a broadcast input the other side arrives by forward, not by key: an
        // instance's rows may be of any key group.
        let meta = match self.spec.broadcast {
            Some(_) => serde_json::json!({ "wm": self.watermark, crate::state::ANY_RANGE: true }),
            None => serde_json::json!({ "wm": self.watermark }),
        };
        Ok(Some(StateSnapshot { tables, meta }))
    }

    fn restore(&mut self, snapshot: StateSnapshot) -> Result<()> {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::{Int64Type, UInt32Type};
        self.watermark = snapshot.meta_i64("wm").unwrap_or(Timestamp::MIN);
        let now_ms = chrono::Utc::now().timestamp_millis();
        for side in 0..2 {
            let Some(t) = snapshot.table(&self.side_table(side)) else {
                continue;
            };
            let width = self.spec.inputs[side].fields().len();
            let matched = t.column(width).as_primitive::<UInt32Type>();
            let max_time = t.column(width + 1).as_primitive::<Int64Type>();
            let inserted = t.column(width + 2).as_primitive::<Int64Type>();
            // One stored batch per original (max time, insertion time): eviction and TTL act
            // per batch as before.
            let mut start = 0;
            while start < t.num_rows() {
                let mut end = start + 1;
                while end < t.num_rows()
                    && max_time.value(end) == max_time.value(start)
                    && inserted.value(end) == inserted.value(start)
                {
                    end += 1;
                }
                let rows = t.slice(start, end - start);
                let batch = RecordBatch::try_new(
                    self.spec.inputs[side].clone(),
                    rows.columns()[..width].to_vec(),
                )?;
                let hashes = self.hashes(side, &batch)?;
                let m = matched.values()[start..end].to_vec();
                let age = (now_ms - inserted.value(start)).max(0) as u64;
                self.sides[side].insert(batch, hashes, m, max_time.value(start));
                if let Some(Some(s)) = self.sides[side].batches.last_mut() {
                    s.inserted = Instant::now()
                        .checked_sub(Duration::from_millis(age))
                        .unwrap_or(s.inserted);
                }
                start = end;
            }
        }
        if self.spec.null_aware {
            self.recount_right()?;
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.sides
            .iter()
            .map(|s| s.bytes + s.entries.len() * 12 + s.heads.len() * 12)
            .sum()
    }
}

super::operator_spec!(JoinSpec, stateful = true, |s| Ok::<_, crate::Error>(
    StreamingJoin::new(s)
));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::test_util::rows;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::Column;

    fn side_schema(prefix: &str) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(format!("{prefix}k"), DataType::Int64, true),
            Field::new(format!("{prefix}t"), DataType::Int64, false),
        ]))
    }

    fn batch(schema: &SchemaRef, k: &[i64], t: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(k.to_vec())),
                Arc::new(Int64Array::from(t.to_vec())),
            ],
        )
        .expect("batch")
    }

    fn spec(kind: JoinKind, expire: [Option<Expire>; 2]) -> JoinSpec {
        let (l, r) = (side_schema("l"), side_schema("r"));
        let mut fields: Vec<Field> = l
            .fields()
            .iter()
            .chain(r.fields().iter())
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let joined = Arc::new(Schema::new(fields.clone()));
        if matches!(kind, JoinKind::Semi | JoinKind::Anti) {
            fields.truncate(l.fields().len());
        }
        let updating =
            !matches!(kind, JoinKind::Inner | JoinKind::Semi) && expire.iter().all(Option::is_none);
        if updating {
            fields.push(crate::changelog::op_field());
        }
        JoinSpec {
            mode: JoinMode::Regular,
            kind,
            keys: [
                vec![Arc::new(Column::new("lk", 0))],
                vec![Arc::new(Column::new("rk", 0))],
            ],
            filter: None,
            inputs: [l, r],
            output_schema: Arc::new(Schema::new(fields)),
            joined_schema: joined,
            null_equal: false,
            expire,
            ttl: None,
            updating,
            broadcast: None,
            null_aware: false,
        }
    }

    fn all(em: &mut Emitter) -> Vec<String> {
        let batches: Vec<RecordBatch> = em
            .messages
            .drain(..)
            .filter_map(|m| match m {
                crate::message::Message::Batch(b) => Some(b),
                _ => None,
            })
            .collect();
        rows(&batches)
    }

    #[test]
    fn inner_join_matches_whichever_side_comes_first() {
        let mut j = StreamingJoin::new(spec(JoinKind::Inner, [None, None]));
        let (l, r) = (side_schema("l"), side_schema("r"));
        let mut em = Emitter::default();
        j.process_batch(0, batch(&l, &[1, 2, 3], &[10, 20, 30]), &mut em)
            .expect("left");
        assert!(all(&mut em).is_empty());
        j.process_batch(1, batch(&r, &[2, 3, 3, 4], &[1, 2, 3, 4]), &mut em)
            .expect("right");
        assert_eq!(
            all(&mut em),
            vec!["2 | 20 | 2 | 1", "3 | 30 | 3 | 2", "3 | 30 | 3 | 3"]
        );
        j.process_batch(0, batch(&l, &[4], &[40]), &mut em)
            .expect("left again");
        assert_eq!(all(&mut em), vec!["4 | 40 | 4 | 4"]);
    }

    #[test]
    fn null_keys_never_match() {
        let mut j = StreamingJoin::new(spec(JoinKind::Inner, [None, None]));
        let (l, r) = (side_schema("l"), side_schema("r"));
        let lb = RecordBatch::try_new(
            l,
            vec![
                Arc::new(Int64Array::from(vec![None, Some(1)])),
                Arc::new(Int64Array::from(vec![1, 2])),
            ],
        )
        .expect("b");
        let rb = RecordBatch::try_new(
            r,
            vec![
                Arc::new(Int64Array::from(vec![None, Some(1)])),
                Arc::new(Int64Array::from(vec![3, 4])),
            ],
        )
        .expect("b");
        let mut em = Emitter::default();
        j.process_batch(0, lb, &mut em).expect("left");
        j.process_batch(1, rb, &mut em).expect("right");
        assert_eq!(all(&mut em), vec!["1 | 2 | 1 | 4"]);
    }

    #[test]
    fn evicted_outer_rows_are_emitted_padded() {
        let expire = Some(Expire {
            time_col: 1,
            after_ms: 0,
        });
        let mut j = StreamingJoin::new(spec(JoinKind::Left, [expire, expire]));
        let (l, r) = (side_schema("l"), side_schema("r"));
        let mut em = Emitter::default();
        j.process_batch(0, batch(&l, &[1, 2], &[10, 20]), &mut em)
            .expect("left");
        j.process_batch(1, batch(&r, &[1], &[11]), &mut em)
            .expect("right");
        assert_eq!(all(&mut em), vec!["1 | 10 | 1 | 11"]);
        j.on_watermark(15, &mut em).expect("wm");
        assert!(
            all(&mut em).is_empty(),
            "left batch max time 20 not yet expired"
        );
        j.on_watermark(21, &mut em).expect("wm");
        assert_eq!(all(&mut em), vec!["2 | 20 |  | "]);
        assert_eq!(j.sides[0].batches.iter().flatten().count(), 0);
        assert_eq!(j.sides[1].batches.iter().flatten().count(), 0);
    }

    #[test]
    fn regular_left_join_retracts_padded_rows() {
        let mut j = StreamingJoin::new(spec(JoinKind::Left, [None, None]));
        let (l, r) = (side_schema("l"), side_schema("r"));
        let mut em = Emitter::default();
        j.process_batch(0, batch(&l, &[1], &[10]), &mut em)
            .expect("left");
        assert_eq!(all(&mut em), vec!["1 | 10 |  |  | 0"]);
        j.process_batch(1, batch(&r, &[1, 1], &[5, 6]), &mut em)
            .expect("right");
        assert_eq!(
            all(&mut em),
            vec![
                "1 | 10 |  |  | 3",
                "1 | 10 | 1 | 5 | 0",
                "1 | 10 | 1 | 6 | 0"
            ]
        );
    }

    #[test]
    fn index_is_rebuilt_after_eviction() {
        let expire = Some(Expire {
            time_col: 1,
            after_ms: 0,
        });
        let mut j = StreamingJoin::new(spec(JoinKind::Inner, [expire, expire]));
        let l = side_schema("l");
        let r = side_schema("r");
        let mut em = Emitter::default();
        for t in 0..100 {
            let keys: Vec<i64> = (0..100).collect();
            j.process_batch(0, batch(&l, &keys, &vec![t; 100]), &mut em)
                .expect("left");
            j.on_watermark(t - 5, &mut em).expect("wm");
        }
        assert!(
            j.sides[0].entries.len() < 3000,
            "dead entries were dropped: {}",
            j.sides[0].entries.len()
        );
        j.process_batch(1, batch(&r, &[7], &[99]), &mut em)
            .expect("right");
        assert_eq!(
            all(&mut em).len(),
            j.sides[0].batches.iter().flatten().count()
        );
    }

    #[test]
    fn a_scanned_side_does_not_keep_evicted_slots() {
        let expire = Some(Expire {
            time_col: 1,
            after_ms: 0,
        });
        let mut j = StreamingJoin::new(spec(JoinKind::Inner, [expire, expire]));
        let (l, r) = (side_schema("l"), side_schema("r"));
        let mut em = Emitter::default();
        for t in 0..1000 {
            j.process_batch(0, batch(&l, &[t, t + 1], &[t, t]), &mut em)
                .expect("left");
            // One-row probes: the left side is scanned, never indexed.
            j.process_batch(1, batch(&r, &[t], &[t]), &mut em)
                .expect("right");
            j.on_watermark(t - 5, &mut em).expect("wm");
        }
        assert_eq!(j.sides[0].indexed, 0, "the left side was never indexed");
        assert!(
            j.sides[0].batches.len() < 200,
            "slots were compacted: {}",
            j.sides[0].batches.len()
        );
        // Each right row t matched left rows (t, t) and (t - 1, t - 1 + 1).
        assert_eq!(all(&mut em).len(), 1999);
    }

    #[test]
    fn state_ttl_drops_old_rows() {
        let mut spec = spec(JoinKind::Inner, [None, None]);
        spec.ttl = Some(Duration::from_millis(1));
        let mut j = StreamingJoin::new(spec);
        let (l, r) = (side_schema("l"), side_schema("r"));
        let mut em = Emitter::default();
        j.process_batch(0, batch(&l, &[1], &[10]), &mut em)
            .expect("left");
        std::thread::sleep(Duration::from_millis(10));
        j.on_watermark(0, &mut em).expect("wm");
        j.process_batch(1, batch(&r, &[1], &[11]), &mut em)
            .expect("right");
        assert!(all(&mut em).is_empty(), "the left row outlived its TTL");
    }
    fn nullable(schema: &SchemaRef, k: &[Option<i64>], t: i64) -> RecordBatch {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(k.to_vec())),
                Arc::new(Int64Array::from(vec![t; k.len()])),
            ],
        )
        .expect("batch")
    }

    /// `NOT IN`: a left NULL is in the result only while the right side is empty, and a
    /// right NULL empties the result for good.
    #[test]
    fn not_in_follows_three_valued_logic() {
        let mut spec = spec(JoinKind::Anti, [None, None]);
        spec.null_aware = true;
        let mut j = StreamingJoin::new(spec);
        let (l, r) = (side_schema("l"), side_schema("r"));
        let mut em = Emitter::default();
        j.process_batch(0, nullable(&l, &[Some(1), None, Some(2)], 1), &mut em)
            .expect("left");
        assert_eq!(all(&mut em), vec![" | 1 | 0", "1 | 1 | 0", "2 | 1 | 0"]);
        // The first right row retracts the NULL key, and its match.
        j.process_batch(1, nullable(&r, &[Some(2)], 2), &mut em)
            .expect("right");
        assert_eq!(all(&mut em), vec![" | 1 | 3", "2 | 1 | 3"]);
        j.process_batch(0, nullable(&l, &[Some(3), None], 3), &mut em)
            .expect("left");
        assert_eq!(all(&mut em), vec!["3 | 3 | 0"]);
        // A NULL on the right: nothing is in the result, now or later.
        j.process_batch(1, nullable(&r, &[None], 4), &mut em)
            .expect("right");
        assert_eq!(all(&mut em), vec!["1 | 1 | 3", "3 | 3 | 3"]);
        j.process_batch(0, nullable(&l, &[Some(5)], 5), &mut em)
            .expect("left");
        assert!(all(&mut em).is_empty());
        // Restored, the join still knows the right side holds a NULL.
        let snap = j.snapshot(128).expect("snapshot").expect("state");
        let mut spec2 = j.spec().clone();
        spec2.null_aware = true;
        let mut k = StreamingJoin::new(spec2);
        k.restore(snap).expect("restore");
        k.process_batch(0, nullable(&l, &[Some(6)], 6), &mut em)
            .expect("left");
        assert!(all(&mut em).is_empty());
    }
}
