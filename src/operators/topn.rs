//! Top-N and deduplication: `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)` filtered by
//! `rn <= N`.
//!
//! - *Windowed* (partitioned by a window's `window_start, window_end`): a window's rows are
//!   buffered until the watermark reaches its end, then sorted once (`lexsort_to_indices` over
//!   the partition and order columns), cut into partitions (`partition`), and the first N of
//!   each emitted with their row number. Append-only; the buffer is freed.
//! - *Unwindowed*: each partition keeps its current top N rows: the sort key in Arrow's row
//!   format (compared as bytes) and the rest of the row packed ([`crate::state::packed`]: no
//!   per-value validity bytes or string blocks); an ORDER BY column is kept only in the sort
//!   key and read back from it. The bytes of every ranked row live in one
//!   arena of 1 MiB chunks (no allocation per row); a partition holds only slots (16 bytes a
//!   row), its first inline (a deduplication's partition allocates nothing) and the rest on
//!   the heap, growing to at most N. Rows pushed out leave dead bytes behind, counted per
//!   chunk; once they pass an eighth of the live ones, the live rows of the chunks with the
//!   most dead bytes are copied to the arena's end and those chunks freed, one at a time,
//!   until a sixteenth is left. The state stays within 1.125× of its rows' bytes plus a
//!   chunk.
//!   After a batch, every partition
//!   whose ranking changed emits the difference per rank: -U of the row that held the rank,
//!   +U of the one that holds it now (+I when the rank is new). Ties keep arrival order.
//!   `'table.exec.state.ttl'`: a partition whose ranking was not written for that long (wall
//!   clock, surviving a restore) is dropped without output; a later row of it starts a new
//!   ranking. Partitions are swept at most every tenth of the TTL, and their interned keys
//!   rebuilt without the dropped ones.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::{
    SortColumn, concat_batches, lexsort_to_indices, take, take_record_batch,
};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use smallvec::SmallVec;

use super::{Emitter, Operator, StateSnapshot, eval, split_by_time};
use crate::Result;
use crate::changelog::{self, RowKind};
use crate::message::Timestamp;
use crate::state::packed::RowPacker;

/// The static description of a Top-N.
#[derive(Debug, Clone)]
pub struct TopNSpec {
    /// PARTITION BY expressions.
    pub partition: Vec<Arc<dyn PhysicalExpr>>,
    /// Their schema (for interning).
    pub partition_schema: SchemaRef,
    /// ORDER BY.
    pub order: Vec<PhysicalSortExpr>,
    /// Rows kept per partition.
    pub n: usize,
    /// Input schema.
    pub input_schema: SchemaRef,
    /// Input columns, then the row number (then the op column when unwindowed).
    pub output_schema: SchemaRef,
    /// Windowed: the input column holding `window_end`.
    pub window_end: Option<usize>,
    /// `'table.exec.state.ttl'` (unwindowed only).
    pub ttl: Option<std::time::Duration>,
}

impl fmt::Display for TopNSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part: Vec<String> = self.partition.iter().map(|k| k.to_string()).collect();
        let order: Vec<String> = self.order.iter().map(|k| k.to_string()).collect();
        write!(
            f,
            "TopN: first {} per [{}] by [{}]",
            self.n,
            part.join(", "),
            order.join(", ")
        )?;
        if self.window_end.is_some() {
            write!(f, " per window, at window end")
        } else {
            write!(f, " [changelog]")
        }
    }
}

/// A partition's ranked rows, best first (ties in arrival order): the first inline, the rest
/// on the heap.
type Ranking = SmallVec<[Slot; 1]>;

/// Where a ranked row's sort key, then its whole row, lie in the [`Arena`]. Within a batch a
/// slot also names its row: the arena only appends until the batch ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    chunk: u32,
    off: u32,
    key_len: u32,
    row_len: u32,
}

impl Slot {
    fn len(self) -> usize {
        self.key_len as usize + self.row_len as usize
    }
}

/// Bytes of a chunk of the arena (a longer row gets a chunk of its own).
const CHUNK: usize = 1 << 20;
/// Dead bytes below this are never worth a compaction.
const MIN_COMPACT: usize = 4 << 20;

/// The bytes of every ranked row (sort key in Arrow's row format, then the packed row),
/// appended to chunks. Freed rows stay as dead bytes until a compaction copies the live rows
/// of the chunks with the most dead bytes out and frees those chunks ([`TopN::compact`]).
struct Arena {
    chunks: Vec<Vec<u8>>,
    /// Dead bytes per chunk.
    dead_in: Vec<usize>,
    /// Chunks freed by a compaction, for reuse.
    spare: Vec<usize>,
    /// The chunk rows are appended to.
    current: Option<usize>,
    live: usize,
    dead: usize,
    /// Bytes of a new chunk ([`CHUNK`]; smaller in tests).
    chunk: usize,
}

impl Default for Arena {
    fn default() -> Self {
        Self::with_chunk(CHUNK)
    }
}

impl Arena {
    fn with_chunk(chunk: usize) -> Self {
        Self {
            chunks: vec![],
            dead_in: vec![],
            spare: vec![],
            current: None,
            live: 0,
            dead: 0,
            chunk,
        }
    }

    fn push(&mut self, key: &[u8], row: &[u8]) -> Result<Slot> {
        let len = key.len() + row.len();
        let chunk = match self.current {
            Some(c) if self.chunks[c].capacity() - self.chunks[c].len() >= len => c,
            _ => {
                let fresh = Vec::with_capacity(self.chunk.max(len));
                let c = match self.spare.pop() {
                    Some(c) => {
                        self.chunks[c] = fresh;
                        c
                    }
                    None => {
                        self.chunks.push(fresh);
                        self.dead_in.push(0);
                        self.chunks.len() - 1
                    }
                };
                self.current = Some(c);
                c
            }
        };
        let c = &mut self.chunks[chunk];
        let too_long = || crate::Error::Plan(format!("Top-N: a row of {len} bytes is too long"));
        let at = Slot {
            chunk: u32::try_from(chunk).map_err(|_| too_long())?,
            off: u32::try_from(c.len()).map_err(|_| too_long())?,
            key_len: u32::try_from(key.len()).map_err(|_| too_long())?,
            row_len: u32::try_from(row.len()).map_err(|_| too_long())?,
        };
        c.extend_from_slice(key);
        c.extend_from_slice(row);
        self.live += len;
        Ok(at)
    }

    fn key(&self, at: Slot) -> &[u8] {
        let start = at.off as usize;
        &self.chunks[at.chunk as usize][start..start + at.key_len as usize]
    }

    fn row(&self, at: Slot) -> &[u8] {
        let start = at.off as usize + at.key_len as usize;
        &self.chunks[at.chunk as usize][start..start + at.row_len as usize]
    }

    /// The row at `at` is no longer ranked (its bytes stay until a compaction).
    fn free(&mut self, at: Slot) {
        self.live = self.live.saturating_sub(at.len());
        self.dead += at.len();
        self.dead_in[at.chunk as usize] += at.len();
    }

    /// Whether enough bytes are dead to be worth copying live rows out: an eighth of the live
    /// ones.
    fn wants_compaction(&self) -> bool {
        self.dead >= MIN_COMPACT && self.dead * 8 > self.live
    }

    /// The chunks to compact so that at most `keep_dead` dead bytes stay: those with the most
    /// dead bytes first.
    fn victims(&self, keep_dead: usize) -> Vec<usize> {
        let mut by_dead: Vec<usize> = (0..self.chunks.len())
            .filter(|c| self.dead_in[*c] > 0)
            .collect();
        by_dead.sort_unstable_by_key(|c| std::cmp::Reverse(self.dead_in[*c]));
        let mut dead = self.dead;
        by_dead
            .into_iter()
            .take_while(|c| {
                let go = dead > keep_dead;
                dead = dead.saturating_sub(self.dead_in[*c]);
                go
            })
            .collect()
    }

    /// Free chunk `c` (`used` bytes), whose live rows have been copied out.
    fn drop_chunk(&mut self, c: usize, used: usize) {
        self.live = self.live.saturating_sub(used - self.dead_in[c]);
        self.dead = self.dead.saturating_sub(self.dead_in[c]);
        self.dead_in[c] = 0;
        self.chunks[c] = Vec::new();
        if self.current == Some(c) {
            self.current = None;
        }
        self.spare.push(c);
    }

    /// Heap bytes held.
    fn size(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<u8>>()
            + (self.dead_in.capacity() + self.spare.capacity()) * std::mem::size_of::<usize>()
    }
}

/// The running Top-N.
pub struct TopN {
    spec: TopNSpec,
    windows: BTreeMap<Timestamp, Vec<RecordBatch>>,
    watermark: Timestamp,
    groups: Option<Box<dyn GroupValues>>,
    ranked: Vec<Ranking>,
    /// Slots on the heap over all partitions (beyond each one's inline slot).
    heap_slots: usize,
    sort_rows: RowConverter,
    /// Packs the input columns that the sort key does not already hold ([`TopN::rest`]).
    full_rows: RowPacker,
    /// Per input column: `Key(k)` when it is ORDER BY expression k (a plain column, read back
    /// from the sort key), `Rest(j)` when it is column j of the packed rest.
    columns: Vec<Held>,
    ids: Vec<usize>,
    /// Bytes of the windowed buffers.
    bytes: usize,
    /// The bytes of the ranked rows (unwindowed).
    arena: Arena,
    /// Ranked rows held over all partitions.
    held: usize,
    /// Per partition: when its ranking was last written (wall clock, ms), for the TTL (empty
    /// without one).
    written: Vec<i64>,
    /// When the TTL last swept the partitions.
    swept_ms: i64,
}

/// Where an input column of a ranked row is kept.
#[derive(Debug, Clone, Copy)]
enum Held {
    /// ORDER BY expression k: read back from the sort key.
    Key(usize),
    /// Column j of the packed rest of the row.
    Rest(usize),
}

/// Slots a ranking holds on the heap (none while it fits inline).
fn heap_slots(list: &Ranking) -> usize {
    if list.spilled() { list.capacity() } else { 0 }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl TopN {
    /// An empty Top-N.
    pub fn new(spec: TopNSpec) -> Result<Self> {
        let sort_fields = spec
            .order
            .iter()
            .map(|o| {
                Ok(SortField::new_with_options(
                    o.expr.data_type(&spec.input_schema)?,
                    o.options,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let groups = if spec.partition.is_empty() {
            None
        } else {
            Some(new_group_values(
                spec.partition_schema.clone(),
                &GroupOrdering::None,
            )?)
        };
        // An ORDER BY column is stored once, in the sort key, when the row format gives it back
        // as it was (flat types).
        let mut columns = vec![];
        let mut rest = vec![];
        for (i, f) in spec.input_schema.fields().iter().enumerate() {
            let in_key = spec.order.iter().position(|o| {
                o.expr
                    .downcast_ref::<datafusion::physical_expr::expressions::Column>()
                    .is_some_and(|c| c.index() == i)
            });
            let flat = matches!(
                f.data_type(),
                DataType::Boolean
                    | DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Binary
                    | DataType::LargeBinary
            ) || f.data_type().primitive_width().is_some();
            match in_key {
                Some(k) if flat => columns.push(Held::Key(k)),
                _ => {
                    columns.push(Held::Rest(rest.len()));
                    rest.push(f.as_ref().clone());
                }
            }
        }
        Ok(Self {
            sort_rows: RowConverter::new(sort_fields)?,
            full_rows: RowPacker::new(Arc::new(Schema::new(rest)))?,
            columns,
            spec,
            windows: BTreeMap::new(),
            watermark: Timestamp::MIN,
            groups,
            ranked: vec![],
            heap_slots: 0,
            ids: vec![],
            bytes: 0,
            arena: Arena::default(),
            held: 0,
            written: vec![],
            swept_ms: now_ms(),
        })
    }

    fn fire(&self, batches: Vec<RecordBatch>, out: &mut Emitter) -> Result<()> {
        let batch = concat_batches(&self.spec.input_schema, &batches)?;
        let mut sort = vec![];
        let parts = self
            .spec
            .partition
            .iter()
            .map(|p| eval(p, &batch))
            .collect::<Result<Vec<_>>>()?;
        for p in &parts {
            sort.push(SortColumn {
                values: p.clone(),
                options: None,
            });
        }
        for o in &self.spec.order {
            sort.push(SortColumn {
                values: eval(&o.expr, &batch)?,
                options: Some(o.options),
            });
        }
        let order = lexsort_to_indices(&sort, None)?;
        let sorted_parts = parts
            .iter()
            .map(|p| Ok(take(p.as_ref(), &order, None)?))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let ranges = if sorted_parts.is_empty() {
            std::iter::once(0..batch.num_rows()).collect()
        } else {
            datafusion::arrow::compute::partition(&sorted_parts)?.ranges()
        };
        let (mut keep, mut rn) = (vec![], vec![]);
        for r in ranges {
            for (i, pos) in r.clone().take(self.spec.n).enumerate() {
                keep.push(order.value(pos));
                rn.push(i as i64 + 1);
            }
        }
        let rows = take_record_batch(&batch, &UInt32Array::from(keep))?;
        let mut cols = rows.columns().to_vec();
        cols.push(self.rn_column(rn)?);
        out.emit(RecordBatch::try_new(self.spec.output_schema.clone(), cols)?);
        Ok(())
    }

    fn update(&mut self, batch: &RecordBatch, out: &mut Emitter) -> Result<()> {
        let rows = batch.num_rows();
        let keys = self
            .spec
            .order
            .iter()
            .map(|o| eval(&o.expr, batch))
            .collect::<Result<Vec<_>>>()?;
        let keys = self.sort_rows.convert_columns(&keys)?;
        let full = self.full_rows.pack(&self.rest(batch))?;
        self.intern_partitions(batch)?;
        let now = now_ms();
        let expired_before = self.spec.ttl.map(|t| now - t.as_millis() as i64);
        // Partition → its ranking before this batch, first time touched (`seen`: the partitions
        // already there).
        let mut before: Vec<(usize, Ranking)> = vec![];
        let mut seen: HashSet<usize> = HashSet::new();
        for r in 0..rows {
            let g = self.ids[r];
            if self.ranked.len() <= g {
                self.ranked.resize_with(g + 1, Ranking::new);
                if self.spec.ttl.is_some() {
                    self.written.resize(g + 1, now);
                }
            }
            // Expired state is never used, swept or not.
            if expired_before.is_some_and(|b| self.written[g] < b) && !self.ranked[g].is_empty() {
                let list = std::mem::take(&mut self.ranked[g]);
                self.heap_slots -= heap_slots(&list);
                for x in list {
                    self.arena.free(x);
                    self.held -= 1;
                }
            }
            let key = keys.row(r);
            let list = &self.ranked[g];
            let pos = list.partition_point(|x| self.arena.key(*x) <= key.as_ref());
            if pos >= self.spec.n {
                continue;
            }
            if seen.insert(g) {
                before.push((g, list.clone()));
            }
            if self.spec.ttl.is_some() {
                self.written[g] = now;
            }
            let at = self.arena.push(key.as_ref(), full.row(r))?;
            self.held += 1;
            let list = &mut self.ranked[g];
            // The last row is pushed out first, so a ranking never holds more than N.
            if list.len() >= self.spec.n
                && let Some(x) = list.pop()
            {
                self.arena.free(x);
                self.held -= 1;
            }
            if list.len() == list.capacity() {
                let before = heap_slots(list);
                // Doubling, but never past N.
                list.reserve_exact(list.len().clamp(1, self.spec.n - list.len()));
                self.heap_slots += heap_slots(list) - before;
            }
            list.insert(pos, at);
        }
        let mut out_rows: Vec<Slot> = vec![];
        let (mut rn, mut ops) = (vec![], vec![]);
        for (g, old) in before {
            let new = &self.ranked[g];
            for i in 0..old.len().max(new.len()) {
                let now = new.get(i);
                if old.get(i) == now {
                    continue;
                }
                if let Some(prev) = old.get(i) {
                    // Still in the arena: freed bytes stay until a compaction.
                    out_rows.push(*prev);
                    rn.push(i as i64 + 1);
                    ops.push(if now.is_some() {
                        RowKind::UpdateBefore
                    } else {
                        RowKind::Delete
                    } as i8);
                }
                if let Some(x) = now {
                    out_rows.push(*x);
                    rn.push(i as i64 + 1);
                    ops.push(if old.get(i).is_some() {
                        RowKind::UpdateAfter
                    } else {
                        RowKind::Insert
                    } as i8);
                }
            }
        }
        if !out_rows.is_empty() {
            let mut cols = self.unpack(&out_rows)?;
            cols.push(self.rn_column(rn)?);
            out.emit(changelog::batch_with_ops(
                self.spec.output_schema.clone(),
                cols,
                ops,
            )?);
        }
        if let Some(ttl) = self.spec.ttl {
            let ttl_ms = ttl.as_millis() as i64;
            if now - self.swept_ms >= (ttl_ms / 10).max(1) {
                self.swept_ms = now;
                self.expire(now - ttl_ms)?;
            }
        }
        if self.arena.wants_compaction() {
            self.compact(self.arena.live / 16)?;
        }
        Ok(())
    }
}

impl TopN {
    /// Drop the partitions not written since `before_ms` (without output) and rebuild the
    /// interned partition keys without them.
    fn expire(&mut self, before_ms: i64) -> Result<()> {
        let n = self.ranked.len();
        let keep: Vec<bool> = (0..n).map(|g| self.written[g] >= before_ms).collect();
        if keep.iter().all(|k| *k) {
            return Ok(());
        }
        let ranked = std::mem::take(&mut self.ranked);
        let written = std::mem::take(&mut self.written);
        let mut kept = vec![];
        for ((list, w), k) in ranked.into_iter().zip(written).zip(&keep) {
            if *k {
                kept.push((list, w));
            } else {
                self.heap_slots -= heap_slots(&list);
                for x in list {
                    self.arena.free(x);
                    self.held -= 1;
                }
            }
        }
        if let Some(g) = self.groups.as_mut() {
            use datafusion::arrow::compute::filter;
            use datafusion::logical_expr::EmitTo;
            let keys = g.emit(EmitTo::All)?;
            // Keys of partitions interned but never ranked (their rows did not make the top
            // N) have no entry: they are dropped too.
            let mask = datafusion::arrow::array::BooleanArray::from(
                (0..keys.first().map_or(0, |k| k.len()))
                    .map(|i| keep.get(i).copied().unwrap_or(false))
                    .collect::<Vec<bool>>(),
            );
            let kept_keys = keys
                .iter()
                .map(|k| Ok(filter(k.as_ref(), &mask)?))
                .collect::<Result<Vec<ArrayRef>>>()?;
            let mut fresh =
                new_group_values(self.spec.partition_schema.clone(), &GroupOrdering::None)?;
            if kept_keys.first().is_some_and(|k| !k.is_empty()) {
                // Distinct keys interned in order get the ids 0, 1, 2, …
                fresh.intern(&kept_keys, &mut self.ids)?;
            }
            *g = fresh;
            let (lists, times): (Vec<_>, Vec<_>) = kept.into_iter().unzip();
            self.ranked = lists;
            self.written = times;
        } else {
            let (lists, times): (Vec<_>, Vec<_>) = kept.into_iter().unzip();
            self.ranked = lists;
            self.written = times;
        }
        Ok(())
    }

    /// The input columns of `batch` that are packed (not held by the sort key).
    fn rest(&self, batch: &RecordBatch) -> Vec<ArrayRef> {
        (self.columns.iter().zip(batch.columns()))
            .filter(|(h, _)| matches!(h, Held::Rest(_)))
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// The input columns of the rows at `slots`: the packed ones, and those read back from
    /// the sort key.
    fn unpack(&self, slots: &[Slot]) -> Result<Vec<ArrayRef>> {
        let rest = self
            .full_rows
            .unpack(slots.iter().map(|at| self.arena.row(*at)))?;
        let keys = if self.columns.iter().any(|h| matches!(h, Held::Key(_))) {
            let parser = self.sort_rows.parser();
            self.sort_rows
                .convert_rows(slots.iter().map(|at| parser.parse(self.arena.key(*at))))?
        } else {
            vec![]
        };
        Ok(self
            .columns
            .iter()
            .map(|h| match h {
                Held::Key(k) => keys[*k].clone(),
                Held::Rest(j) => rest[*j].clone(),
            })
            .collect())
    }

    /// The partition of each row of `batch`, into `self.ids`.
    fn intern_partitions(&mut self, batch: &RecordBatch) -> Result<()> {
        match &mut self.groups {
            Some(g) => {
                let parts = self
                    .spec
                    .partition
                    .iter()
                    .map(|p| eval(p, batch))
                    .collect::<Result<Vec<_>>>()?;
                g.intern(&parts, &mut self.ids)?;
            }
            None => {
                self.ids.clear();
                self.ids.resize(batch.num_rows(), 0);
            }
        }
        Ok(())
    }

    /// Row numbers in the output schema's type (DataFusion's ROW_NUMBER is UInt64).
    fn rn_column(&self, rn: Vec<i64>) -> Result<ArrayRef> {
        let field = self
            .spec
            .output_schema
            .field(self.spec.input_schema.fields().len());
        Ok(cast(
            &(Arc::new(Int64Array::from(rn)) as ArrayRef),
            field.data_type(),
        )?)
    }

    /// Copy the live rows out of the arena's chunks with the most dead bytes, and free those
    /// chunks, until at most `keep_dead` dead bytes are left (between batches only: a batch
    /// still reads the rows it pushed out). A chunk is freed as soon as its rows are copied,
    /// so a compaction holds at most one chunk more than the rows need.
    fn compact(&mut self, keep_dead: usize) -> Result<()> {
        let victims = self.arena.victims(keep_dead);
        if victims.is_empty() {
            return Ok(());
        }
        // The victim chunks' slots (partition, index), grouped by chunk (a counting sort).
        let mut order = vec![usize::MAX; self.arena.chunks.len()];
        for (i, c) in victims.iter().enumerate() {
            order[*c] = i;
        }
        let mut starts = vec![0usize; victims.len() + 1];
        for x in self.ranked.iter().flatten() {
            if let Some(&v) = order.get(x.chunk as usize).filter(|v| **v != usize::MAX) {
                starts[v + 1] += 1;
            }
        }
        for v in 1..starts.len() {
            starts[v] += starts[v - 1];
        }
        let mut next = starts.clone();
        let mut slots = vec![(0u32, 0u32); starts[victims.len()]];
        for (g, list) in self.ranked.iter().enumerate() {
            for (i, x) in list.iter().enumerate() {
                if let Some(&v) = order.get(x.chunk as usize).filter(|v| **v != usize::MAX) {
                    slots[next[v]] = (g as u32, i as u32);
                    next[v] += 1;
                }
            }
        }
        if self.arena.current.is_some_and(|c| order[c] != usize::MAX) {
            // Rows copied out must not go into a chunk that is yet to be freed.
            self.arena.current = None;
        }
        for (v, &c) in victims.iter().enumerate() {
            // Taken out while its rows are copied (pushes never go to it: it is neither the
            // current chunk nor spare).
            let old = std::mem::take(&mut self.arena.chunks[c]);
            for &(g, i) in &slots[starts[v]..starts[v + 1]] {
                let x = &mut self.ranked[g as usize][i as usize];
                let (start, key_end) = (x.off as usize, (x.off + x.key_len) as usize);
                let end = key_end + x.row_len as usize;
                *x = self.arena.push(&old[start..key_end], &old[key_end..end])?;
            }
            self.arena.drop_chunk(c, old.len());
        }
        Ok(())
    }

    /// Heap bytes of the unwindowed rankings: the arena, and the slots of every partition.
    fn ranked_size(&self) -> usize {
        self.arena.size()
            + self.ranked.capacity() * std::mem::size_of::<Ranking>()
            + self.heap_slots * std::mem::size_of::<Slot>()
            + self.written.capacity() * std::mem::size_of::<i64>()
    }
}

impl Operator for TopN {
    fn name(&self) -> &str {
        "top-n"
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
            return self.update(&batch, out);
        };
        for (end, part) in split_by_time(&batch, end_col)? {
            if end <= self.watermark {
                out.late(part);
                continue;
            }
            self.bytes += part.get_array_memory_size();
            self.windows.entry(end).or_default().push(part);
        }
        Ok(())
    }

    fn on_watermark(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        self.watermark = wm;
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() > wm {
                break;
            }
            let batches = entry.remove();
            self.bytes = self
                .bytes
                .saturating_sub(batches.iter().map(|b| b.get_array_memory_size()).sum());
            self.fire(batches, out)?;
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.bytes + self.ranked_size()
    }

    /// Windowed: table `windows`, the buffered rows with their `window_end`. Unwindowed: table
    /// `ranked`, every partition's current top rows with their places in it (ties keep
    /// arrival order). Both with the key group of the PARTITION BY values.
    fn snapshot(&mut self, key_groups: usize) -> Result<Option<StateSnapshot>> {
        let mut parts: Vec<(RecordBatch, Vec<i64>)> = vec![];
        for (end, batches) in &self.windows {
            for b in batches {
                parts.push((b.clone(), vec![*end; b.num_rows()]));
            }
        }
        let mut places = vec![];
        let mut written = vec![];
        // Without a TTL no write times are kept: a restore with one starts them here.
        let taken_at = now_ms();
        let mut rows: Vec<Slot> = vec![];
        for (g, list) in self.ranked.iter().enumerate() {
            for (place, x) in list.iter().enumerate() {
                rows.push(*x);
                places.push(place as i64);
                written.push(self.written.get(g).copied().unwrap_or(taken_at));
            }
        }
        let mut written = Some(written);
        if !rows.is_empty() {
            let cols = self.unpack(&rows)?;
            parts.push((
                RecordBatch::try_new(self.spec.input_schema.clone(), cols)?,
                places,
            ));
        }
        let mut tables = vec![];
        let name = if self.spec.window_end.is_some() {
            "windows"
        } else {
            "ranked"
        };
        let mut keyed = vec![];
        for (b, extra) in parts {
            let n = b.num_rows();
            let keys = self
                .spec
                .partition
                .iter()
                .map(|p| eval(p, &b))
                .collect::<Result<Vec<_>>>()?;
            let mut names: Vec<String> = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            names.push("__extra".into());
            let mut cols = b.columns().to_vec();
            cols.push(Arc::new(Int64Array::from(extra)));
            if self.spec.window_end.is_none()
                && let Some(w) = written.take()
            {
                names.push("__written".into());
                cols.push(Arc::new(Int64Array::from(w)));
            }
            keyed.push(crate::state::keyed_batch(
                &names, cols, &keys, n, key_groups,
            )?);
        }
        if let Some(first) = keyed.first() {
            tables.push((name.to_string(), concat_batches(&first.schema(), &keyed)?));
        }
        Ok(Some(StateSnapshot {
            tables,
            meta: serde_json::json!({ "wm": self.watermark }),
        }))
    }

    fn restore(&mut self, snapshot: StateSnapshot) -> Result<()> {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::Int64Type;
        self.watermark = snapshot.meta_i64("wm").unwrap_or(Timestamp::MIN);
        let width = self.spec.input_schema.fields().len();
        let input = |t: &RecordBatch| {
            RecordBatch::try_new(
                self.spec.input_schema.clone(),
                t.columns()[..width].to_vec(),
            )
        };
        if let Some(t) = snapshot.table("windows") {
            let ends = t.column(width).as_primitive::<Int64Type>().clone();
            let rows = input(t)?;
            let mut start = 0;
            while start < rows.num_rows() {
                let end = ends.value(start);
                let mut stop = start + 1;
                while stop < rows.num_rows() && ends.value(stop) == end {
                    stop += 1;
                }
                let part = rows.slice(start, stop - start);
                self.bytes += part.get_array_memory_size();
                self.windows.entry(end).or_default().push(part);
                start = stop;
            }
        }
        if let Some(t) = snapshot.table("ranked") {
            // Each row's place among its partition's ties (snapshots before December 2026: its
            // arrival number, which orders ties the same way).
            let places = t.column(width).as_primitive::<Int64Type>().clone();
            let written = t
                .column_by_name("__written")
                .map(|c| c.as_primitive::<Int64Type>().clone());
            let restored_at = now_ms();
            let rows = input(t)?;
            let keys = self
                .spec
                .order
                .iter()
                .map(|o| eval(&o.expr, &rows))
                .collect::<Result<Vec<_>>>()?;
            let keys = self.sort_rows.convert_columns(&keys)?;
            let full = self.full_rows.pack(&self.rest(&rows))?;
            self.intern_partitions(&rows)?;
            let mut restored: Vec<(usize, i64, Slot)> = Vec::with_capacity(rows.num_rows());
            for r in 0..rows.num_rows() {
                let g = self.ids[r];
                if self.ranked.len() <= g {
                    self.ranked.resize_with(g + 1, Ranking::new);
                    if self.spec.ttl.is_some() {
                        self.written.resize(g + 1, restored_at);
                    }
                }
                if let Some(w) = written.as_ref().filter(|_| self.spec.ttl.is_some()) {
                    self.written[g] = w.value(r);
                }
                let at = self.arena.push(keys.row(r).as_ref(), full.row(r))?;
                self.held += 1;
                restored.push((g, places.value(r), at));
            }
            let arena = &self.arena;
            restored.sort_by(|a, b| {
                (a.0.cmp(&b.0))
                    .then_with(|| arena.key(a.2).cmp(arena.key(b.2)))
                    .then(a.1.cmp(&b.1))
            });
            for (g, _, at) in restored {
                let list = &mut self.ranked[g];
                let before = heap_slots(list);
                list.push(at);
                self.heap_slots += heap_slots(list) - before;
            }
        }
        Ok(())
    }
}

super::operator_spec!(TopNSpec, stateful = true, TopN::new);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::test_util::rows;
    use datafusion::arrow::compute::SortOptions;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::Column;

    fn spec(n: usize, window_end: Option<usize>) -> TopNSpec {
        let input = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let mut out: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        out.push(Field::new("rn", DataType::Int64, false));
        if window_end.is_none() {
            out.push(changelog::op_field());
        }
        TopNSpec {
            partition: vec![Arc::new(Column::new("k", 0))],
            partition_schema: Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)])),
            order: vec![PhysicalSortExpr {
                expr: Arc::new(Column::new("v", 1)),
                options: SortOptions {
                    descending: true,
                    nulls_first: false,
                },
            }],
            n,
            input_schema: input,
            output_schema: Arc::new(Schema::new(out)),
            window_end,
            ttl: None,
        }
    }

    fn batch(k: &[i64], v: &[i64]) -> RecordBatch {
        let s = spec(1, Some(0)).input_schema;
        RecordBatch::try_new(
            s,
            vec![
                Arc::new(Int64Array::from(k.to_vec())),
                Arc::new(Int64Array::from(v.to_vec())),
            ],
        )
        .expect("batch")
    }

    /// With a state TTL, a partition whose ranking was not written for longer starts a new
    /// ranking (a row that would not have made it now does, +I), while one written within
    /// the TTL goes on; the write times survive a snapshot and restore, and the sweep frees
    /// the dropped partitions.
    #[test]
    fn state_ttl_drops_rankings_not_written_since() {
        let mut sp = spec(1, None);
        sp.ttl = Some(std::time::Duration::from_millis(2000));
        let mut t = TopN::new(sp.clone()).expect("topn");
        let mut em = Emitter::default();
        t.process_batch(0, batch(&[1, 2], &[5, 5]), &mut em)
            .expect("b1");
        assert_eq!(drain(&mut em), vec!["1 | 5 | 1 | 0", "2 | 5 | 1 | 0"]);
        std::thread::sleep(std::time::Duration::from_millis(1200));
        t.process_batch(0, batch(&[2], &[6]), &mut em).expect("b2");
        assert_eq!(drain(&mut em), vec!["2 | 5 | 1 | 1", "2 | 6 | 1 | 2"]);
        std::thread::sleep(std::time::Duration::from_millis(1200));
        let snap = t.snapshot(128).expect("snapshot").expect("state");
        let mut t = TopN::new(sp).expect("topn");
        t.restore(snap).expect("restore");
        // Partition 1 expired: 3 ranks first in a new ranking. Partition 2 goes on.
        t.process_batch(0, batch(&[1, 2], &[3, 7]), &mut em)
            .expect("b3");
        assert_eq!(
            drain(&mut em),
            vec!["1 | 3 | 1 | 0", "2 | 6 | 1 | 1", "2 | 7 | 1 | 2"]
        );
        assert_eq!(t.ranked.iter().filter(|l| !l.is_empty()).count(), 2);
        // A sweep drops partition 1 and re-interns partition 2, whose ranking goes on.
        std::thread::sleep(std::time::Duration::from_millis(1200));
        t.process_batch(0, batch(&[2], &[8]), &mut em).expect("b4");
        drain(&mut em);
        t.expire(now_ms() - 1000).expect("sweep");
        assert_eq!(t.ranked.len(), 1);
        t.process_batch(0, batch(&[2, 1], &[9, 1]), &mut em)
            .expect("b5");
        assert_eq!(
            drain(&mut em),
            vec!["1 | 1 | 1 | 0", "2 | 8 | 1 | 1", "2 | 9 | 1 | 2"]
        );
    }

    fn drain(em: &mut Emitter) -> Vec<String> {
        let b: Vec<RecordBatch> = em
            .messages
            .drain(..)
            .filter_map(|m| match m {
                crate::message::Message::Batch(b) => Some(b),
                _ => None,
            })
            .collect();
        rows(&b)
    }

    #[test]
    fn unwindowed_top2_emits_rank_changes() {
        let mut t = TopN::new(spec(2, None)).expect("topn");
        let mut em = Emitter::default();
        t.process_batch(0, batch(&[1, 1, 2], &[10, 20, 5]), &mut em)
            .expect("b1");
        // ops: 0 = +I, 1 = -U, 2 = +U, 3 = -D
        assert_eq!(
            drain(&mut em),
            vec!["1 | 10 | 2 | 0", "1 | 20 | 1 | 0", "2 | 5 | 1 | 0"]
        );
        t.process_batch(0, batch(&[1, 1], &[15, 1]), &mut em)
            .expect("b2");
        assert_eq!(drain(&mut em), vec!["1 | 10 | 2 | 1", "1 | 15 | 2 | 2"]);
        t.process_batch(0, batch(&[1], &[30]), &mut em).expect("b3");
        // rank 1: 20 → 30 (-U 20, +U 30); rank 2: 15 → 20 (-U 15, +U 20)
        assert_eq!(
            drain(&mut em),
            vec![
                "1 | 15 | 2 | 1",
                "1 | 20 | 1 | 1",
                "1 | 20 | 2 | 2",
                "1 | 30 | 1 | 2"
            ]
        );
    }

    /// Rankings kept through compactions of the arena (forced after every batch) end where a
    /// direct top 2 of all rows ends, and the changelog folds to them.
    #[test]
    fn compacted_rankings_match_a_direct_top_n() {
        for n in [1, 2, 5] {
            for (chunk, rows) in [(64, 500), (100, 37), (256, 7)] {
                compacted_top_n_matches_a_direct_one(n, chunk, rows);
            }
        }
    }

    fn compacted_top_n_matches_a_direct_one(n: usize, chunk: usize, rows: i64) {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::Int64Type;
        let mut t = TopN::new(spec(n, None)).expect("topn");
        // Chunks of a few rows, so a compaction walks many of them.
        t.arena = Arena::with_chunk(chunk);
        let mut em = Emitter::default();
        let mut all: Vec<(i64, i64)> = vec![];
        let mut folded: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        let mut compacted_dead = false;
        for b in 0..40i64 {
            let k: Vec<i64> = (0..rows).map(|i| (i * 7 + b) % 13).collect();
            // Rising on the whole, so rows keep entering the rankings and pushing others out.
            let v: Vec<i64> = (0..rows)
                .map(|i| (i * 7919 + b * 104_729) % 1000 + b * 50)
                .collect();
            all.extend(k.iter().copied().zip(v.iter().copied()));
            t.process_batch(0, batch(&k, &v), &mut em).expect("batch");
            // A batch's lines come sorted: retractions are applied before insertions.
            let lines: Vec<Vec<i64>> = drain(&mut em)
                .iter()
                .map(|l| l.split(" | ").map(|x| x.parse().expect("int")).collect())
                .collect();
            for f in lines.iter().filter(|f| matches!(f[3], 1 | 3)) {
                assert_eq!(folded.remove(&(f[0], f[2])), Some(f[1]), "retracted {f:?}");
            }
            for f in lines.iter().filter(|f| matches!(f[3], 0 | 2)) {
                folded.insert((f[0], f[2]), f[1]);
            }
            compacted_dead |= t.arena.dead > 0;
            // Every other batch a partial compaction: the deadest chunks only.
            let keep = if b % 2 == 0 { 0 } else { t.arena.live / 8 };
            t.compact(keep).expect("compacts");
            assert!(t.arena.dead <= keep, "{} dead bytes left", t.arena.dead);
            // Every ranked row still reads back as what the changelog says it is.
            let mut held: Vec<(i64, i64)> = vec![];
            for list in &t.ranked {
                let cols = t.unpack(list).expect("unpacks");
                let (k, v) = (
                    cols[0].as_primitive::<Int64Type>(),
                    cols[1].as_primitive::<Int64Type>(),
                );
                held.extend((0..k.len()).map(|i| (k.value(i), v.value(i))));
            }
            held.sort_unstable();
            let mut said: Vec<(i64, i64)> = folded.iter().map(|((k, _), v)| (*k, *v)).collect();
            said.sort_unstable();
            assert_eq!(held, said, "batch {b}, top {n}");
        }
        assert!(compacted_dead, "no compaction had dead bytes to drop");
        let mut want: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        for k in 0..13 {
            let mut vs: Vec<i64> = all.iter().filter(|x| x.0 == k).map(|x| x.1).collect();
            vs.sort_by(|a, b| b.cmp(a));
            for (i, v) in vs.iter().take(n).enumerate() {
                want.insert((k, i as i64 + 1), *v);
            }
        }
        assert_eq!(folded, want, "top {n}");
        assert_eq!(t.held, 13 * n);
        assert!(t.arena.chunks.len() > 1, "one chunk only");
        // No ranking holds more slots than N; the heap count is their sum.
        assert!(t.ranked.iter().all(|l| l.capacity() <= n.max(1)));
        assert_eq!(t.heap_slots, t.ranked.iter().map(heap_slots).sum::<usize>());
        let slots: usize = t.ranked.iter().flatten().map(|x| x.len()).sum();
        assert_eq!(t.arena.live, slots);
    }

    #[test]
    fn windowed_topn_fires_at_window_end() {
        let mut t = TopN::new(spec(1, Some(0))).expect("topn");
        let mut em = Emitter::default();
        // k doubles as window_end here.
        t.process_batch(0, batch(&[10, 10, 20], &[3, 7, 1]), &mut em)
            .expect("b");
        assert!(drain(&mut em).is_empty());
        t.on_watermark(10, &mut em).expect("wm");
        assert_eq!(drain(&mut em), vec!["10 | 7 | 1"]);
        t.on_watermark(25, &mut em).expect("wm");
        assert_eq!(drain(&mut em), vec!["20 | 1 | 1"]);
        assert_eq!(t.state_size(), 0);
    }

    #[tokio::test]
    async fn snapshot_restore_at_other_parallelism_gives_the_same_changelog() {
        use crate::operators::test_util::{rescaled_run, stage_spec, through};
        let query = "SELECT k, v, rn FROM (SELECT k, v, ROW_NUMBER() OVER \
                     (PARTITION BY k ORDER BY v DESC) AS rn FROM t) WHERE rn <= 3";
        let (spec, keys, source) = stage_spec(query).await;
        let batch = |from: i64| {
            let rows: Vec<(i64, i64, i64)> = (0..200)
                .map(|i| (from + i * 10, (i * 13) % 30, (i * 7919 + from) % 1000))
                .collect();
            (through(&source, &rows), from)
        };
        let before: Vec<_> = (0..3).map(|b| batch(b * 5_000)).collect();
        let after: Vec<_> = (3..6).map(|b| batch(b * 5_000)).collect();
        let straight = rescaled_run(&spec, &keys, &before, &after, 1, 0);
        assert!(straight.len() > 50, "{}", straight.len());
        for (p1, p2) in [(1, 1), (2, 3), (3, 1)] {
            let got = rescaled_run(&spec, &keys, &before, &after, p1, p2);
            assert_eq!(got, straight, "{p1} -> {p2}");
        }
    }
}
