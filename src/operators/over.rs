//! OVER aggregations: `agg(...) OVER (PARTITION BY k ORDER BY rowtime <frame>)`, Flink's
//! event-time OVER windows.
//!
//! Rows are buffered until the watermark passes their time, then emitted in time order, each
//! with its aggregates over its frame, which ends at the current row:
//! - `ROWS BETWEEN n PRECEDING AND CURRENT ROW`: the row and the n rows before it in its
//!   partition (rows of equal time in arrival order);
//! - `RANGE BETWEEN INTERVAL 'x' PRECEDING AND CURRENT ROW`: the rows whose time lies in
//!   `[t - x, t]`, so rows of equal time (peers) get the same values;
//! - `UNBOUNDED PRECEDING` (either unit): every earlier row of the partition.
//!
//! `LAG(x [, n [, default]])` and `LEAD(...)` read the row n before (after) the current one in
//! the partition's time order (rows of equal time in arrival order). For LEAD a row waits until
//! its n-th successor has been passed by the watermark too (or the input has ended, when it
//! gets the default): Flink has no LEAD on streams, since a row's successor is not known when
//! the watermark passes it.
//!
//! Without aggregates and partitions it is `ORDER BY rowtime` on a stream: rows in time order.
//!
//! The result is append-only. A row at or behind the watermark when it arrives is late and
//! dropped, as in Flink.
//!
//! State per partition: one accumulator per aggregate (DataFusion's, with `retract_batch` for
//! a bounded frame) and, for a bounded frame, the rows still in it, freed as the frame moves
//! past them. A snapshot keeps the buffered rows, a bounded frame's rows (the accumulators are
//! rebuilt from them on restore), an unbounded frame's accumulator states, LAG's last values
//! and the rows waiting for their LEAD, each row with its partition's key group.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::{
    Emitter, Operator, PartitionKeys, StateSnapshot, drop_late, eval_all, rows_table, table_rows,
    time_millis,
};
use crate::Result;
use crate::message::Timestamp;

/// The frame of an OVER window; it always ends at the current row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// `ROWS BETWEEN n PRECEDING` (`None`: UNBOUNDED PRECEDING).
    Rows(Option<u64>),
    /// `RANGE BETWEEN INTERVAL ms PRECEDING` (`None`: UNBOUNDED PRECEDING).
    Range(Option<i64>),
}

impl Frame {
    fn bounded(self) -> bool {
        matches!(self, Frame::Rows(Some(_)) | Frame::Range(Some(_)))
    }
}

/// `LAG(expr [, n [, default]])` or `LEAD(...)`: the value of `expr` n rows before (after) the
/// current one in its partition's time order.
#[derive(Debug, Clone)]
pub struct OffsetFn {
    /// LEAD (else LAG).
    pub lead: bool,
    /// The expression read from the other row.
    pub expr: Arc<dyn PhysicalExpr>,
    /// How many rows back (forward).
    pub n: usize,
    /// The value when there is no such row (of the expression's type), evaluated on the
    /// current row.
    pub default: Arc<dyn PhysicalExpr>,
}

/// Where an output column (after the input's) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverOutput {
    /// The i-th aggregate.
    Agg(usize),
    /// The i-th LAG/LEAD.
    Offset(usize),
}

/// The static description of an OVER aggregation.
#[derive(Debug, Clone)]
pub struct OverSpec {
    /// PARTITION BY expressions.
    pub partition: Vec<Arc<dyn PhysicalExpr>>,
    /// The ORDER BY time attribute's column.
    pub time_col: usize,
    /// The frame.
    pub frame: Frame,
    /// The aggregates (DataFusion's).
    pub aggs: Vec<Arc<AggregateFunctionExpr>>,
    /// LAG / LEAD.
    pub offsets: Vec<OffsetFn>,
    /// The output columns after the input's, in order.
    pub outputs: Vec<OverOutput>,
    /// Input schema.
    pub input_schema: SchemaRef,
    /// Input columns, then one per entry of `outputs`.
    pub output_schema: SchemaRef,
}

impl OverSpec {
    /// The largest LAG (`lead == false`) or LEAD offset; 0 without one.
    fn max_offset(&self, lead: bool) -> usize {
        self.offsets
            .iter()
            .filter(|o| o.lead == lead)
            .map(|o| o.n)
            .max()
            .unwrap_or(0)
    }
}

impl fmt::Display for OverSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part: Vec<String> = self.partition.iter().map(|k| k.to_string()).collect();
        if self.aggs.is_empty() {
            return write!(
                f,
                "SortByTime: {} (rows emitted in time order as the watermark passes them)",
                self.input_schema.field(self.time_col).name()
            );
        }
        let mut aggs: Vec<String> = self.aggs.iter().map(|a| a.name().to_string()).collect();
        for o in &self.offsets {
            let f = if o.lead { "LEAD" } else { "LAG" };
            aggs.push(format!("{f}({}, {})", o.expr, o.n));
        }
        let frame = match self.frame {
            Frame::Rows(None) => "ROWS UNBOUNDED PRECEDING".to_string(),
            Frame::Rows(Some(n)) => format!("ROWS {n} PRECEDING"),
            Frame::Range(None) => "RANGE UNBOUNDED PRECEDING".to_string(),
            Frame::Range(Some(ms)) => format!("RANGE {ms} ms PRECEDING"),
        };
        write!(
            f,
            "OverAggregate: partition=[{}], order={}, {frame}, aggs=[{}]",
            part.join(", "),
            self.input_schema.field(self.time_col).name(),
            aggs.join(", ")
        )
    }
}

/// One entry of a bounded frame: rows of one time (a peer group, or one row for ROWS), their
/// input rows and their aggregate arguments.
struct Entry {
    time: Timestamp,
    rows: RecordBatch,
    args: Vec<Vec<ArrayRef>>,
}

/// A partition's state.
struct Part {
    accs: Vec<Box<dyn Accumulator>>,
    frame: VecDeque<Entry>,
    /// Rows in `frame`.
    rows: usize,
    /// The LAG/LEAD expressions' values of the partition's last rows (as many as the largest
    /// LAG offset), oldest first.
    lags: VecDeque<Vec<ScalarValue>>,
    /// Rows the watermark has passed that wait for their LEAD rows, in order.
    waiting: Option<RecordBatch>,
}

/// The values one partition's rows got: per aggregate and per LAG/LEAD.
struct Values {
    aggs: Vec<Vec<ScalarValue>>,
    offsets: Vec<Vec<ScalarValue>>,
}

/// The running OVER aggregation.
pub struct OverAggregate {
    spec: OverSpec,
    watermark: Timestamp,
    pending: Vec<RecordBatch>,
    parts: HashMap<Vec<u8>, Part>,
    keys: PartitionKeys,
    bytes: usize,
}

impl OverAggregate {
    /// A new instance.
    pub fn new(spec: OverSpec) -> Result<Self> {
        let keys = PartitionKeys::new(&spec.partition, &spec.input_schema)?;
        Ok(Self {
            spec,
            watermark: Timestamp::MIN,
            pending: vec![],
            parts: HashMap::new(),
            keys,
            bytes: 0,
        })
    }

    fn new_part(&self) -> Result<Part> {
        let accs = self
            .spec
            .aggs
            .iter()
            .map(|a| {
                Ok(if self.spec.frame.bounded() {
                    a.create_sliding_accumulator()?
                } else {
                    a.create_accumulator()?
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Part {
            accs,
            frame: VecDeque::new(),
            rows: 0,
            lags: VecDeque::new(),
            waiting: None,
        })
    }

    /// The partition key of each row, as bytes (empty without PARTITION BY).
    fn key_bytes(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        self.keys.of(batch)
    }

    fn args(&self, batch: &RecordBatch) -> Result<Vec<Vec<ArrayRef>>> {
        Ok(super::aggregate_inputs(&self.spec.aggs, &[], batch)?.0)
    }

    /// Add rows of one time to a partition's frame (updating its accumulators), then drop
    /// what the frame has moved past. Returns the aggregates' values for those rows.
    fn advance(
        frame: Frame,
        part: &mut Part,
        time: Timestamp,
        rows: RecordBatch,
        args: Vec<Vec<ArrayRef>>,
    ) -> Result<Vec<ScalarValue>> {
        for (acc, a) in part.accs.iter_mut().zip(&args) {
            acc.update_batch(a)?;
        }
        if frame.bounded() {
            part.rows += rows.num_rows();
            part.frame.push_back(Entry { time, rows, args });
            loop {
                let expired = match (frame, part.frame.front()) {
                    (Frame::Rows(Some(n)), Some(_)) => part.rows as u64 > n + 1,
                    (Frame::Range(Some(ms)), Some(e)) => e.time < time.saturating_sub(ms),
                    _ => false,
                };
                if !expired {
                    break;
                }
                if let Some(old) = part.frame.pop_front() {
                    part.rows -= old.rows.num_rows();
                    for (acc, a) in part.accs.iter_mut().zip(&old.args) {
                        acc.retract_batch(a)?;
                    }
                }
            }
        }
        part.accs.iter_mut().map(|a| Ok(a.evaluate()?)).collect()
    }

    /// Emit every buffered row at or before `wm`, in time order per partition.
    fn fire(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        // Rows waiting for their LEAD rows go through again, before the new rows (which are
        // later: they were ahead of the watermark that released the waiting ones).
        let waiting: Vec<RecordBatch> = self
            .parts
            .values_mut()
            .filter_map(|p| p.waiting.take())
            .collect();
        if !waiting.is_empty() {
            self.pending.splice(0..0, waiting);
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let all = concat_batches(&self.spec.input_schema, &self.pending)?;
        self.pending.clear();
        let times = time_millis(all.column(self.spec.time_col))?.into_owned();
        let ready_mask: datafusion::arrow::array::BooleanArray =
            times.iter().map(|t| Some(*t <= wm)).collect();
        let rest = filter_record_batch(&all, &datafusion::arrow::compute::not(&ready_mask)?)?;
        if rest.num_rows() > 0 {
            self.pending.push(rest);
        }
        let ready = filter_record_batch(&all, &ready_mask)?;
        if ready.num_rows() == 0 {
            self.bytes = self.pending_bytes() + self.frame_bytes();
            return Ok(());
        }
        let times = time_millis(ready.column(self.spec.time_col))?.into_owned();
        let keys = self.key_bytes(&ready)?;
        // Partition, then time, then arrival order.
        let mut order: Vec<u32> = (0..ready.num_rows() as u32).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            keys[a]
                .cmp(&keys[b])
                .then(times[a].cmp(&times[b]))
                .then(a.cmp(&b))
        });
        let idx = UInt32Array::from(order.clone());
        let sorted = take_record_batch(&ready, &idx)?;
        let leads = self.spec.max_offset(true) > 0;
        let (args, offs) = (self.args(&sorted)?, self.offset_values(&sorted)?);
        let width = self.spec.outputs.len();
        let mut values: Vec<Vec<ScalarValue>> = vec![vec![]; width];
        let mut emitted = vec![];
        let last = wm == Timestamp::MAX;
        let mut start = 0;
        while start < order.len() {
            let key = &keys[order[start] as usize];
            let mut end = start + 1;
            while end < order.len() && keys[order[end] as usize] == *key {
                end += 1;
            }
            let len = end - start;
            if !self.parts.contains_key(key) {
                let part = self.new_part()?;
                self.parts.insert(key.clone(), part);
            }
            let rows = sorted.slice(start, len);
            let args = args
                .iter()
                .map(|cols| cols.iter().map(|c| c.slice(start, len)).collect())
                .collect();
            let offs = offs.iter().map(|c| c.slice(start, len)).collect();
            let part = self
                .parts
                .get_mut(key)
                .ok_or_else(|| crate::Error::Plan("internal: OVER partition".into()))?;
            let (done, v) = Self::partition_rows(&self.spec, part, &rows, args, offs, last)?;
            if done > 0 {
                for (col, o) in values.iter_mut().zip(&self.spec.outputs) {
                    match *o {
                        OverOutput::Agg(i) => col.extend_from_slice(&v.aggs[i]),
                        OverOutput::Offset(i) => col.extend_from_slice(&v.offsets[i]),
                    }
                }
                if leads {
                    emitted.push(rows.slice(0, done));
                }
            }
            start = end;
        }
        let rows = if leads {
            concat_batches(&self.spec.input_schema, &emitted)?
        } else {
            sorted
        };
        if rows.num_rows() > 0 {
            let mut columns = rows.columns().to_vec();
            for (col, field) in values.into_iter().zip(
                self.spec
                    .output_schema
                    .fields()
                    .iter()
                    .skip(self.spec.input_schema.fields().len()),
            ) {
                let array = ScalarValue::iter_to_array(col)?;
                columns.push(datafusion::arrow::compute::cast(&array, field.data_type())?);
            }
            out.emit(RecordBatch::try_new(
                self.spec.output_schema.clone(),
                columns,
            )?);
        }
        self.bytes = self.pending_bytes() + self.frame_bytes();
        Ok(())
    }

    /// The LAG/LEAD expressions over `rows`, then their defaults.
    fn offset_values(&self, rows: &RecordBatch) -> Result<Vec<ArrayRef>> {
        let offsets = &self.spec.offsets;
        let exprs: Vec<_> = offsets
            .iter()
            .map(|o| o.expr.clone())
            .chain(offsets.iter().map(|o| o.default.clone()))
            .collect();
        eval_all(&exprs, rows)
    }

    /// One partition's rows, in order (the rows that waited for their LEAD first): the rows
    /// that can be emitted (all, when `last` or without LEAD; else those whose LEAD rows are
    /// here, without splitting rows of one time in a RANGE frame) advance the frame and get
    /// their values; the rest wait in the partition. Returns how many rows got values.
    fn partition_rows(
        spec: &OverSpec,
        part: &mut Part,
        rows: &RecordBatch,
        args: Vec<Vec<ArrayRef>>,
        offs: Vec<ArrayRef>,
        last: bool,
    ) -> Result<(usize, Values)> {
        let len = rows.num_rows();
        let times = time_millis(rows.column(spec.time_col))?;
        let max_lead = spec.max_offset(true);
        let mut done = if last {
            len
        } else {
            len.saturating_sub(max_lead)
        };
        if matches!(spec.frame, Frame::Range(_)) {
            while done > 0 && done < len && times[done - 1] == times[done] {
                done -= 1;
            }
        }
        if done < len {
            part.waiting = Some(rows.slice(done, len - done));
        }
        let mut values = Values {
            aggs: vec![vec![]; spec.aggs.len()],
            offsets: vec![vec![]; spec.offsets.len()],
        };
        if done == 0 {
            return Ok((0, values));
        }
        // Aggregates: one run of rows of one time (one row for ROWS frames) at a time.
        let mut start = 0;
        while start < done {
            let t = times[start];
            let mut end = start + 1;
            if matches!(spec.frame, Frame::Range(_)) {
                while end < done && times[end] == t {
                    end += 1;
                }
            }
            let n = end - start;
            let run_args: Vec<Vec<ArrayRef>> = args
                .iter()
                .map(|cols| cols.iter().map(|c| c.slice(start, n)).collect())
                .collect();
            let v = Self::advance(spec.frame, part, t, rows.slice(start, n), run_args)?;
            for (col, x) in values.aggs.iter_mut().zip(v) {
                col.extend(std::iter::repeat_n(x, n));
            }
            start = end;
        }
        if spec.offsets.is_empty() {
            return Ok((done, values));
        }
        // LAG / LEAD: the other row is in `rows`, in the partition's history, or absent.
        let history = part.lags.len();
        let m = spec.offsets.len();
        for (j, o) in spec.offsets.iter().enumerate() {
            let (arr, default) = (&offs[j], &offs[m + j]);
            let col = &mut values.offsets[j];
            for i in 0..done {
                let v = if o.lead {
                    if i + o.n < len {
                        ScalarValue::try_from_array(arr, i + o.n)?
                    } else {
                        ScalarValue::try_from_array(default, i)?
                    }
                } else if i >= o.n {
                    ScalarValue::try_from_array(arr, i - o.n)?
                } else if o.n - i <= history {
                    part.lags[history - (o.n - i)][j].clone()
                } else {
                    ScalarValue::try_from_array(default, i)?
                };
                col.push(v);
            }
        }
        let keep = spec.max_offset(false);
        for i in done.saturating_sub(keep)..done {
            let row = offs[..m]
                .iter()
                .map(|a| ScalarValue::try_from_array(a, i))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            part.lags.push_back(row);
        }
        while part.lags.len() > keep {
            part.lags.pop_front();
        }
        Ok((done, values))
    }

    fn pending_bytes(&self) -> usize {
        self.pending.iter().map(|b| b.get_array_memory_size()).sum()
    }

    fn frame_bytes(&self) -> usize {
        self.parts
            .values()
            .map(|p| {
                p.accs.iter().map(|a| a.size()).sum::<usize>()
                    + p.lags.iter().map(|l| 16 * l.len()).sum::<usize>()
                    + p.waiting.as_ref().map_or(0, |w| w.get_array_memory_size())
                    + p.frame
                        .iter()
                        .map(|e| e.rows.num_rows() * 64)
                        .sum::<usize>()
            })
            .sum()
    }

    /// The partition keys of a snapshot table whose first `n_keys` columns are key columns.
    fn table_keys(&self, t: &RecordBatch, n_keys: usize) -> Result<Vec<Vec<u8>>> {
        Ok(match self.keys.converter() {
            Some(conv) => {
                let rows = conv.convert_columns(&t.columns()[..n_keys])?;
                rows.iter().map(|r| r.as_ref().to_vec()).collect()
            }
            None => vec![vec![]; t.num_rows()],
        })
    }

    /// The partitions' key columns (one row per key of `keys`).
    fn key_columns(&self, keys: &[&Vec<u8>]) -> Result<Vec<ArrayRef>> {
        let Some(conv) = self.keys.converter() else {
            return Ok(vec![]);
        };
        let parser = conv.parser();
        let rows: Vec<_> = keys.iter().map(|k| parser.parse(k)).collect();
        Ok(conv.convert_rows(rows)?)
    }

    /// LAG's history: one row per remembered row, oldest first per partition.
    fn lags_table(&self, key_groups: usize) -> Result<Option<(String, RecordBatch)>> {
        let mut keys = vec![];
        let mut rows = vec![];
        for (key, part) in &self.parts {
            for l in &part.lags {
                keys.push(key);
                rows.push(l);
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let key_cols = self.key_columns(&keys)?;
        let mut names: Vec<String> = (0..key_cols.len()).map(|i| format!("key{i}")).collect();
        let mut columns = key_cols.clone();
        for j in 0..self.spec.offsets.len() {
            names.push(format!("v{j}"));
            columns.push(ScalarValue::iter_to_array(
                rows.iter().map(|r| r[j].clone()),
            )?);
        }
        let n = rows.len();
        Ok(Some((
            "lags".to_string(),
            crate::state::keyed_batch(&names, columns, &key_cols, n, key_groups)?,
        )))
    }
}

impl Operator for OverAggregate {
    fn name(&self) -> &str {
        "over aggregate"
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<()> {
        let wm = self.watermark;
        let kept = drop_late(batch, self.spec.time_col, |t| t <= wm, out)?;
        if kept.num_rows() > 0 {
            self.bytes += kept.get_array_memory_size();
            self.pending.push(kept);
        }
        Ok(())
    }

    fn on_watermark(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        if wm <= self.watermark {
            return Ok(());
        }
        self.watermark = wm;
        self.fire(wm, out)
    }

    fn on_end(&mut self, out: &mut Emitter) -> Result<()> {
        self.fire(Timestamp::MAX, out)
    }

    fn snapshot(&mut self, key_groups: usize) -> Result<Option<StateSnapshot>> {
        let (schema, part) = (&self.spec.input_schema, &self.spec.partition);
        let mut tables: Vec<(String, RecordBatch)> =
            rows_table("pending", &self.pending, schema, part, key_groups)?
                .into_iter()
                .collect();
        let waiting: Vec<RecordBatch> = self
            .parts
            .values()
            .filter_map(|p| p.waiting.clone())
            .collect();
        tables.extend(rows_table("waiting", &waiting, schema, part, key_groups)?);
        if self.spec.max_offset(false) > 0 {
            tables.extend(self.lags_table(key_groups)?);
        }
        if self.spec.frame.bounded() {
            let rows: Vec<RecordBatch> = self
                .parts
                .values()
                .flat_map(|p| p.frame.iter().map(|e| e.rows.clone()))
                .collect();
            tables.extend(rows_table("frame", &rows, schema, part, key_groups)?);
        } else if !self.parts.is_empty() {
            // One row per partition: its key columns and its accumulators' states.
            let mut key_rows = vec![];
            let mut states: Vec<Vec<Vec<ScalarValue>>> = vec![];
            for (key, part) in &mut self.parts {
                key_rows.push(key.clone());
                states.push(
                    part.accs
                        .iter_mut()
                        .map(|a| Ok(a.state()?))
                        .collect::<Result<Vec<_>>>()?,
                );
            }
            let mut names = vec![];
            let mut columns: Vec<ArrayRef> = vec![];
            let key_cols = self.key_columns(&key_rows.iter().collect::<Vec<_>>())?;
            for (i, c) in key_cols.iter().enumerate() {
                names.push(format!("key{i}"));
                columns.push(c.clone());
            }
            for (a, agg) in self.spec.aggs.iter().enumerate() {
                for (s, field) in agg.state_fields()?.iter().enumerate() {
                    names.push(format!("a{a}_{}", field.name()));
                    let values = states.iter().map(|st| st[a][s].clone());
                    columns.push(ScalarValue::iter_to_array(values)?);
                }
            }
            let rows = key_rows.len();
            tables.push((
                "accumulators".to_string(),
                crate::state::keyed_batch(&names, columns, &key_cols, rows, key_groups)?,
            ));
        }
        Ok(Some(StateSnapshot {
            tables,
            meta: serde_json::json!({ "wm": self.watermark }),
        }))
    }

    fn restore(&mut self, snapshot: StateSnapshot) -> Result<()> {
        self.watermark = snapshot.meta_i64("wm").unwrap_or(Timestamp::MIN);
        if let Some(t) = snapshot.table("pending") {
            let rows = table_rows(t, &self.spec.input_schema)?;
            self.bytes += rows.get_array_memory_size();
            self.pending.push(rows);
        }
        if let Some(t) = snapshot.table("frame") {
            // The frames' rows, oldest first per partition: fed again, they rebuild the
            // accumulators (whose value is the aggregate over the frame).
            let rows = table_rows(t, &self.spec.input_schema)?;
            let times = time_millis(rows.column(self.spec.time_col))?.into_owned();
            let keys = self.key_bytes(&rows)?;
            let args = self.args(&rows)?;
            let frame = self.spec.frame;
            for i in 0..rows.num_rows() {
                if !self.parts.contains_key(&keys[i]) {
                    let part = self.new_part()?;
                    self.parts.insert(keys[i].clone(), part);
                }
                if let Some(part) = self.parts.get_mut(&keys[i]) {
                    let row_args = args
                        .iter()
                        .map(|cols| cols.iter().map(|c| c.slice(i, 1)).collect())
                        .collect();
                    Self::advance(frame, part, times[i], rows.slice(i, 1), row_args)?;
                }
            }
        }
        if let Some(t) = snapshot.table("waiting") {
            // Rows waiting for their LEAD rows, in order per partition.
            let rows = table_rows(t, &self.spec.input_schema)?;
            let keys = self.key_bytes(&rows)?;
            for (i, key) in keys.iter().enumerate() {
                if !self.parts.contains_key(key) {
                    let part = self.new_part()?;
                    self.parts.insert(key.clone(), part);
                }
                if let Some(part) = self.parts.get_mut(key) {
                    let row = rows.slice(i, 1);
                    part.waiting = Some(match part.waiting.take() {
                        Some(w) => concat_batches(&self.spec.input_schema, [&w, &row])?,
                        None => row,
                    });
                }
            }
        }
        if let Some(t) = snapshot.table("lags") {
            let n_keys = self.spec.partition.len();
            let keys = self.table_keys(t, n_keys)?;
            for (r, key) in keys.into_iter().enumerate() {
                if !self.parts.contains_key(&key) {
                    let part = self.new_part()?;
                    self.parts.insert(key.clone(), part);
                }
                let row = (n_keys..n_keys + self.spec.offsets.len())
                    .map(|c| ScalarValue::try_from_array(t.column(c), r))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                if let Some(part) = self.parts.get_mut(&key) {
                    part.lags.push_back(row);
                }
            }
        }
        if let Some(t) = snapshot.table("accumulators") {
            let n_keys = self.spec.partition.len();
            let keys = self.table_keys(t, n_keys)?;
            let widths = super::state_widths(&self.spec.aggs)?;
            for (r, key) in keys.into_iter().enumerate() {
                let mut part = self.new_part()?;
                let mut col = n_keys;
                for (acc, w) in part.accs.iter_mut().zip(&widths) {
                    let states: Vec<ArrayRef> =
                        (col..col + w).map(|c| t.column(c).slice(r, 1)).collect();
                    acc.merge_batch(&states)?;
                    col += w;
                }
                match self.parts.get_mut(&key) {
                    // LAG history or waiting rows restored first: keep them.
                    Some(p) => p.accs = part.accs,
                    None => {
                        self.parts.insert(key, part);
                    }
                }
            }
        }
        self.bytes = self.pending_bytes() + self.frame_bytes();
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.bytes
    }
}

super::operator_spec!(OverSpec, stateful = true, OverAggregate::new);

#[cfg(test)]
mod tests {
    use crate::operators::test_util::{rescaled_run, stage_spec, varied_tkv as input};

    /// Rows `(ts, k, v)` through the source's operators (the watermark generator).
    #[tokio::test]
    async fn order_by_time_emits_rows_in_time_order() {
        use crate::operators::test_util::{emitted, through};
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::TimestampMillisecondType;
        let (spec, _, source) = stage_spec("SELECT ts, k, v FROM t ORDER BY ts").await;
        let mut op = spec.instantiate().unwrap();
        let mut out = crate::operators::Emitter::default();
        // Out of order within the 1 s watermark delay.
        for from in [0, 700, 1400] {
            let rows: Vec<(i64, i64, i64)> =
                (0..50).map(|i| (from + (i * 37) % 600, i % 3, i)).collect();
            op.process_batch(0, through(&source, &rows), &mut out)
                .unwrap();
            op.on_watermark(from - 1000, &mut out).unwrap();
        }
        op.on_watermark(i64::MAX, &mut out).unwrap();
        op.on_end(&mut out).unwrap();
        let times: Vec<i64> = emitted(out)
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<TimestampMillisecondType>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(times.len(), 150);
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    }

    #[tokio::test]
    async fn snapshot_restore_at_other_parallelism_gives_the_same_rows() {
        for frame in [
            "ROWS BETWEEN 3 PRECEDING AND CURRENT ROW",
            "RANGE BETWEEN INTERVAL '50' MILLISECOND PRECEDING AND CURRENT ROW",
            "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW",
            "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW",
        ] {
            let query = format!(
                "SELECT k, ts, v, SUM(v) OVER w AS s, MAX(v) OVER w AS hi, COUNT(*) OVER w AS n \
                 FROM t WINDOW w AS (PARTITION BY k ORDER BY ts {frame})"
            );
            let (spec, keys, source) = stage_spec(&query).await;
            let before: Vec<_> = (0..3).map(|b| input(&source, b * 2_000)).collect();
            let after: Vec<_> = (3..6).map(|b| input(&source, b * 2_000)).collect();
            let straight = rescaled_run(&spec, &keys, &before, &after, 1, 0);
            assert!(straight.len() > 1000, "{frame}: {}", straight.len());
            for (p1, p2) in [(1, 1), (2, 3), (3, 1)] {
                let got = rescaled_run(&spec, &keys, &before, &after, p1, p2);
                assert_eq!(got, straight, "{frame}: {p1} -> {p2}");
            }
        }
    }

    #[tokio::test]
    async fn lag_and_lead_survive_a_restore_at_other_parallelism() {
        let query = "SELECT k, ts, v, LAG(v) OVER w AS p, LAG(v, 3, -1) OVER w AS p3, \
                     LEAD(v, 2) OVER w AS n2, SUM(v) OVER w AS s \
                     FROM t WINDOW w AS (PARTITION BY k ORDER BY ts)";
        let (spec, keys, source) = stage_spec(query).await;
        let before: Vec<_> = (0..3).map(|b| input(&source, b * 2_000)).collect();
        let after: Vec<_> = (3..6).map(|b| input(&source, b * 2_000)).collect();
        let straight = rescaled_run(&spec, &keys, &before, &after, 1, 0);
        assert_eq!(straight.len(), 1200);
        for (p1, p2) in [(1, 1), (2, 3), (3, 1)] {
            let got = rescaled_run(&spec, &keys, &before, &after, p1, p2);
            assert_eq!(got, straight, "{p1} -> {p2}");
        }
    }
}
