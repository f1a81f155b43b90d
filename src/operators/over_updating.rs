//! OVER aggregations over an updating (changelog) input: `agg(x) OVER (PARTITION BY k ORDER BY
//! c ROWS BETWEEN n PRECEDING AND CURRENT ROW)` where the input's rows are inserted, updated
//! and retracted, as in Nexmark q6 (the average of a seller's last closed auctions, whose
//! prices change as bids arrive). Flink refuses this; weir defines it as the batch answer kept
//! up to date: after any change, the output is what the same OVER query computes over the
//! input rows present, and the changelog moves the previous output to it.
//!
//! Each partition keeps its current input rows ordered by the ORDER BY columns (ties broken
//! by the whole row, so the order is deterministic), with a count for identical rows, and the
//! output it emitted last. A batch's changes to a partition are applied, the partition's
//! output is computed again from its first changed row on (one pass with a sliding accumulator,
//! which a `ROWS n` frame starts n rows earlier), and only the difference is
//! emitted: `-U` / `+U` pairs for output rows that changed, `+I` for new rows, `-D` for rows
//! that went away.
//! The ORDER BY need not be a time attribute: the input is not ordered by the watermark.
//!
//! The same machinery answers Top-N over an updating input (`ROW_NUMBER() OVER (PARTITION BY
//! k ORDER BY c) … WHERE rn <= n`): a partition's output is its first n rows with their row
//! numbers, and a change that moves a row in or out of the top, or renumbers it, is emitted.
//!
//! Frames: `ROWS BETWEEN n PRECEDING AND CURRENT ROW`, `ROWS` / `RANGE BETWEEN UNBOUNDED
//! PRECEDING AND CURRENT ROW` (RANGE: rows with equal ORDER BY values share the value). The
//! work per change is the size of its partition, so this suits many small partitions (sellers,
//! devices), not one huge one. State: every input row present; a snapshot holds them with
//! their counts and their partition's key group; the emitted output is recomputed on restore.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{HashMap, ScalarValue};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::{Emitter, Frame, Operator, PartitionKeys, StateSnapshot, eval_all};
use crate::Result;
use crate::changelog::{RowKind, batch_with_ops, ops_of, strip_ops};

/// The static description of an OVER aggregation over an updating input.
#[derive(Debug, Clone)]
pub struct UpdatingOverSpec {
    /// PARTITION BY expressions.
    pub partition: Vec<Arc<dyn PhysicalExpr>>,
    /// ORDER BY expressions with their directions.
    pub order: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
    /// `Rows(n)`, `Rows(None)` or `Range(None)`.
    pub frame: Frame,
    /// The aggregates (DataFusion's).
    pub aggs: Vec<Arc<AggregateFunctionExpr>>,
    /// Top-N over an updating input (`ROW_NUMBER() … WHERE rn <= n`): the first n rows of
    /// each partition with their row number, instead of aggregates.
    pub limit: Option<usize>,
    /// Input schema (without the op column).
    pub input_schema: SchemaRef,
    /// Input columns, one per aggregate, then the op column.
    pub output_schema: SchemaRef,
}

impl fmt::Display for UpdatingOverSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: Vec<String>| v.join(", ");
        let frame = match self.frame {
            Frame::Rows(Some(n)) => format!("ROWS {n} PRECEDING"),
            Frame::Rows(None) => "ROWS UNBOUNDED PRECEDING".to_string(),
            Frame::Range(_) => "RANGE UNBOUNDED PRECEDING".to_string(),
        };
        let partition = super::exprs_text(&self.partition);
        let order = list(
            self.order
                .iter()
                .map(|(e, o)| format!("{e}{}", if o.descending { " DESC" } else { "" }))
                .collect(),
        );
        if let Some(n) = self.limit {
            return write!(
                f,
                "TopN (updating input): partition=[{partition}], order=[{order}], n={n} [changelog]"
            );
        }
        write!(
            f,
            "OverAggregate (updating): partition=[{partition}], order=[{order}], {frame}, aggs=[{}] [changelog]",
            list(self.aggs.iter().map(|a| a.name().to_string()).collect()),
        )
    }
}

/// Output rows: each one's row bytes and its values, in order.
type Outputs = Vec<(Vec<u8>, Vec<ScalarValue>)>;

/// A partition: its rows (ORDER BY bytes, row bytes) with counts, and what it emitted last
/// (each output row's row bytes and aggregate values, in order).
#[derive(Default)]
struct Part {
    rows: BTreeMap<(Vec<u8>, Vec<u8>), usize>,
    /// Rows held, repeats counted.
    total: usize,
    emitted: Outputs,
}

/// A partition's entry: (ORDER BY bytes, row bytes).
type Entry = (Vec<u8>, Vec<u8>);

/// Bytes an entry of a partition's rows takes.
fn entry_bytes(entry: &Entry) -> usize {
    entry.0.len() + entry.1.len() + 48
}

/// Bytes output rows take.
fn output_bytes<'a>(rows: impl IntoIterator<Item = &'a (Vec<u8>, Vec<ScalarValue>)>) -> usize {
    rows.into_iter()
        .map(|(r, v)| r.len() + v.iter().map(ScalarValue::size).sum::<usize>())
        .sum()
}

/// The running operator.
pub struct UpdatingOver {
    spec: UpdatingOverSpec,
    parts: HashMap<Vec<u8>, Part>,
    keys: PartitionKeys,
    order: RowConverter,
    rows: RowConverter,
    bytes: usize,
}

impl UpdatingOver {
    /// A new instance.
    pub fn new(spec: UpdatingOverSpec) -> Result<Self> {
        let schema = &spec.input_schema;
        let keys = PartitionKeys::new(&spec.partition, schema)?;
        let order = RowConverter::new(
            spec.order
                .iter()
                .map(|(e, o)| Ok(SortField::new_with_options(e.data_type(schema)?, *o)))
                .collect::<Result<Vec<_>>>()?,
        )?;
        let rows = super::whole_rows(schema)?;
        Ok(Self {
            spec,
            parts: HashMap::default(),
            keys,
            order,
            rows,
            bytes: 0,
        })
    }

    fn key_bytes(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        self.keys.of(batch)
    }

    /// Each row's (ORDER BY bytes, row bytes).
    fn entries(&self, batch: &RecordBatch) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let exprs: Vec<_> = self.spec.order.iter().map(|(e, _)| e.clone()).collect();
        let order = self.order.convert_columns(&eval_all(&exprs, batch)?)?;
        let rows = self.rows.convert_columns(batch.columns())?;
        Ok(order
            .iter()
            .zip(rows.iter())
            .map(|(o, r)| (o.as_ref().to_vec(), r.as_ref().to_vec()))
            .collect())
    }

    /// The output a partition's rows give: each row (with its repeats) and its aggregates,
    /// from the first row at or after `from` on (the rows before it are unchanged by the
    /// changes at and after `from`: a frame ends at its row). Returns how many rows come
    /// before that point, and the output from it.
    fn compute<'a>(&self, part: &'a Part, from: Option<&Entry>) -> Result<(usize, Outputs)> {
        if let Some(n) = self.spec.limit {
            // Top-N: the first n rows and their row numbers.
            let mut prefix = 0;
            let mut firsts: Vec<&[u8]> = Vec::with_capacity(n.min(part.total));
            'walk: for (entry, repeats) in &part.rows {
                for _ in 0..*repeats {
                    if firsts.len() == n {
                        break 'walk;
                    }
                    if from.is_some_and(|f| entry < f) {
                        prefix += 1;
                    }
                    firsts.push(&entry.1);
                }
            }
            return Ok((
                prefix,
                firsts
                    .into_iter()
                    .enumerate()
                    .skip(prefix)
                    .map(|(i, r)| (r.to_vec(), vec![ScalarValue::UInt64(Some(i as u64 + 1))]))
                    .collect(),
            ));
        }
        // The rows the accumulators must see, from `start` on (their ORDER BY and row bytes),
        // and how many come before `from`. A ROWS n frame needs only the n rows before the
        // first recomputed one, found by walking back from it; the other frames need all.
        let mut order_keys: Vec<&[u8]> = vec![];
        let mut row_keys: Vec<&[u8]> = vec![];
        let mut push = |entry: &'a Entry, repeats: usize| {
            for _ in 0..repeats {
                order_keys.push(&entry.0);
                row_keys.push(&entry.1);
            }
        };
        let (prefix, start) = match (self.spec.frame, from) {
            (Frame::Rows(Some(k)), Some(f)) => {
                use std::ops::Bound;
                let mut lead: Vec<&Entry> = vec![];
                'back: for (entry, repeats) in part
                    .rows
                    .range::<Entry, _>((Bound::Unbounded, Bound::Excluded(f)))
                    .rev()
                {
                    for _ in 0..*repeats {
                        if lead.len() == k as usize {
                            break 'back;
                        }
                        lead.push(entry);
                    }
                }
                for entry in lead.iter().rev() {
                    push(entry, 1);
                }
                let mut after = 0;
                for (entry, repeats) in part
                    .rows
                    .range::<Entry, _>((Bound::Included(f), Bound::Unbounded))
                {
                    after += repeats;
                    push(entry, *repeats);
                }
                let prefix = part.total.saturating_sub(after);
                (prefix, prefix.saturating_sub(lead.len()))
            }
            _ => {
                let mut prefix = 0;
                for (entry, repeats) in &part.rows {
                    if from.is_some_and(|f| entry < f) {
                        prefix += repeats;
                    }
                    push(entry, *repeats);
                }
                // Other frames run from the partition's first row (and without `from`,
                // nothing comes before it).
                (prefix, 0)
            }
        };
        if start + row_keys.len() <= prefix {
            return Ok((prefix, vec![]));
        }
        let parser = self.rows.parser();
        let columns = self
            .rows
            .convert_rows(row_keys.iter().map(|r| parser.parse(r)))?;
        let batch = RecordBatch::try_new(self.spec.input_schema.clone(), columns)?;
        let args = super::aggregate_inputs(&self.spec.aggs, &[], &batch)?.0;
        let n = row_keys.len();
        let mut accs = self
            .spec
            .aggs
            .iter()
            .map(|a| {
                Ok(match self.spec.frame {
                    Frame::Rows(Some(_)) => a.create_sliding_accumulator()?,
                    _ => a.create_accumulator()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut values: Vec<Vec<ScalarValue>> = Vec::with_capacity(n);
        let mut i = 0;
        while i < n {
            // One row, or (RANGE) the run of rows with its ORDER BY values.
            let mut end = i + 1;
            if matches!(self.spec.frame, Frame::Range(_)) {
                while end < n && order_keys[end] == order_keys[i] {
                    end += 1;
                }
            }
            for (acc, a) in accs.iter_mut().zip(&args) {
                let run: Vec<ArrayRef> = a.iter().map(|c| c.slice(i, end - i)).collect();
                acc.update_batch(&run)?;
            }
            if let Frame::Rows(Some(k)) = self.spec.frame
                && i > k as usize
            {
                let old = i - k as usize - 1;
                for (acc, a) in accs.iter_mut().zip(&args) {
                    let gone: Vec<ArrayRef> = a.iter().map(|c| c.slice(old, 1)).collect();
                    acc.retract_batch(&gone)?;
                }
            }
            let v = accs
                .iter_mut()
                .map(|a| Ok(a.evaluate()?))
                .collect::<Result<Vec<_>>>()?;
            for _ in i..end {
                values.push(v.clone());
            }
            i = end;
        }
        // A RANGE run that began before `from` was recomputed whole: report from its start.
        let mut first = prefix;
        if matches!(self.spec.frame, Frame::Range(_)) {
            while first > start && order_keys[first - 1 - start] == order_keys[first - start] {
                first -= 1;
            }
        }
        Ok((
            first,
            row_keys[first - start..]
                .iter()
                .map(|r| r.to_vec())
                .zip(values.into_iter().skip(first - start))
                .collect(),
        ))
    }

    /// Output rows from (row bytes, values, op) triples.
    fn output(&self, changes: Vec<(Vec<u8>, Vec<ScalarValue>, RowKind)>) -> Result<RecordBatch> {
        let parser = self.rows.parser();
        let mut columns = self
            .rows
            .convert_rows(changes.iter().map(|(r, _, _)| parser.parse(r)))?;
        let width = self.spec.input_schema.fields().len();
        // The value columns: one per aggregate, or Top-N's row number.
        let values = self.spec.output_schema.fields().len() - width - 1;
        for (a, field) in self
            .spec
            .output_schema
            .fields()
            .iter()
            .skip(width)
            .take(values)
            .enumerate()
        {
            let array = ScalarValue::iter_to_array(changes.iter().map(|(_, v, _)| v[a].clone()))?;
            columns.push(datafusion::arrow::compute::cast(&array, field.data_type())?);
        }
        let ops = changes.iter().map(|(_, _, k)| *k as i8).collect();
        batch_with_ops(self.spec.output_schema.clone(), columns, ops)
    }
}

impl Operator for UpdatingOver {
    fn name(&self) -> &str {
        "over aggregate (updating)"
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<()> {
        let ops: Vec<i8> = match ops_of(&batch) {
            Some(o) => o.to_vec(),
            None => vec![RowKind::Insert as i8; batch.num_rows()],
        };
        let data = strip_ops(&batch);
        let keys = self.key_bytes(&data)?;
        let entries = self.entries(&data)?;
        // Apply the changes, partition by partition, in arrival order; note each partition's
        // first changed position.
        let mut touched: Vec<Vec<u8>> = vec![];
        let mut first: HashMap<Vec<u8>, Entry> = HashMap::new();
        for ((key, entry), op) in keys.into_iter().zip(entries).zip(ops) {
            match first.get_mut(&key) {
                Some(f) => {
                    if entry < *f {
                        *f = entry.clone();
                    }
                }
                None => {
                    touched.push(key.clone());
                    first.insert(key.clone(), entry.clone());
                }
            }
            let part = match self.parts.get_mut(&key) {
                Some(p) => p,
                None => self.parts.entry(key).or_default(),
            };
            if RowKind::from_i8(op).is_accumulate() {
                part.total += 1;
                match part.rows.get_mut(&entry) {
                    Some(n) => *n += 1,
                    None => {
                        self.bytes += entry_bytes(&entry);
                        part.rows.insert(entry, 1);
                    }
                }
            } else {
                match part.rows.get_mut(&entry) {
                    Some(n) if *n > 1 => {
                        *n -= 1;
                        part.total -= 1;
                    }
                    Some(_) => {
                        part.rows.remove(&entry);
                        part.total -= 1;
                        self.bytes = self.bytes.saturating_sub(entry_bytes(&entry));
                    }
                    // A retraction of a row never seen: nothing to undo.
                    None => out.malformed += 1,
                }
            }
        }
        let mut changes = vec![];
        for key in touched {
            let Some(part) = self.parts.get(&key) else {
                continue;
            };
            let (prefix, new) = self.compute(part, first.get(&key))?;
            let Some(part) = self.parts.get_mut(&key) else {
                continue;
            };
            // The output before the first change stands; the rest is compared.
            let mut kept = std::mem::take(&mut part.emitted);
            let old = kept.split_off(prefix.min(kept.len()));
            // The difference as multisets: what went away (-U, or -D when nothing replaces
            // it) and what came (+U after a -U, else +I).
            let mut counts: HashMap<&(Vec<u8>, Vec<ScalarValue>), i64> = HashMap::default();
            for o in &old {
                *counts.entry(o).or_default() -= 1;
            }
            for n in &new {
                *counts.entry(n).or_default() += 1;
            }
            let mut gone = vec![];
            for o in &old {
                if let Some(c) = counts.get_mut(o)
                    && *c < 0
                {
                    *c += 1;
                    gone.push(o);
                }
            }
            let mut came = vec![];
            for n in &new {
                if let Some(c) = counts.get_mut(n)
                    && *c > 0
                {
                    *c -= 1;
                    came.push(n);
                }
            }
            drop(counts);
            let paired = gone.len().min(came.len());
            for (i, o) in gone.iter().enumerate() {
                let kind = if i < paired {
                    RowKind::UpdateBefore
                } else {
                    RowKind::Delete
                };
                changes.push((o.0.clone(), o.1.clone(), kind));
            }
            for (i, n) in came.iter().enumerate() {
                let kind = if i < paired {
                    RowKind::UpdateAfter
                } else {
                    RowKind::Insert
                };
                changes.push((n.0.clone(), n.1.clone(), kind));
            }
            self.bytes = (self.bytes + output_bytes(&new)).saturating_sub(output_bytes(&old));
            kept.extend(new);
            part.emitted = kept;
            if part.rows.is_empty() {
                self.bytes = self.bytes.saturating_sub(output_bytes(&part.emitted));
                self.parts.remove(&key);
            }
        }
        if !changes.is_empty() {
            out.emit(self.output(changes)?);
        }
        Ok(())
    }

    fn snapshot(&mut self, key_groups: usize) -> Result<Option<StateSnapshot>> {
        let mut row_keys: Vec<&[u8]> = vec![];
        let mut counts: Vec<u64> = vec![];
        for part in self.parts.values() {
            for ((_, r), n) in &part.rows {
                row_keys.push(r);
                counts.push(*n as u64);
            }
        }
        if row_keys.is_empty() {
            return Ok(None);
        }
        let parser = self.rows.parser();
        let mut columns = self
            .rows
            .convert_rows(row_keys.iter().map(|r| parser.parse(r)))?;
        let data = RecordBatch::try_new(self.spec.input_schema.clone(), columns.clone())?;
        let keys = eval_all(&self.spec.partition, &data)?;
        let mut names: Vec<String> = self
            .spec
            .input_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        names.push("__count".into());
        columns.push(Arc::new(UInt64Array::from(counts)));
        let n = row_keys.len();
        Ok(Some(StateSnapshot {
            tables: vec![(
                "rows".to_string(),
                crate::state::keyed_batch(&names, columns, &keys, n, key_groups)?,
            )],
            meta: serde_json::json!({}),
        }))
    }

    fn restore(&mut self, snapshot: StateSnapshot) -> Result<()> {
        let Some(t) = snapshot.table("rows") else {
            return Ok(());
        };
        let width = self.spec.input_schema.fields().len();
        let columns = t.columns()[..width]
            .iter()
            .zip(self.spec.input_schema.fields())
            .map(|(c, f)| Ok(datafusion::arrow::compute::cast(c, f.data_type())?))
            .collect::<Result<Vec<_>>>()?;
        let data = RecordBatch::try_new(self.spec.input_schema.clone(), columns)?;
        let counts = datafusion::arrow::compute::cast(
            t.column(width),
            &datafusion::arrow::datatypes::DataType::UInt64,
        )?;
        let counts = datafusion::arrow::array::AsArray::as_primitive::<
            datafusion::arrow::datatypes::UInt64Type,
        >(&counts)
        .clone();
        let keys = self.key_bytes(&data)?;
        let entries = self.entries(&data)?;
        for ((key, entry), n) in keys.into_iter().zip(entries).zip(counts.values()) {
            let part = self.parts.entry(key).or_default();
            part.total += *n as usize;
            let held = part.rows.entry(entry).or_default();
            *held += *n as usize;
        }
        // What each partition emitted is what its rows give.
        let keys: Vec<Vec<u8>> = self.parts.keys().cloned().collect();
        for key in keys {
            let Some(part) = self.parts.get(&key) else {
                continue;
            };
            let (_, emitted) = self.compute(part, None)?;
            if let Some(part) = self.parts.get_mut(&key) {
                self.bytes +=
                    output_bytes(&emitted) + part.rows.keys().map(entry_bytes).sum::<usize>();
                part.emitted = emitted;
            }
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.bytes
    }
}

/// The output schema: the input's columns, one column per aggregate (named by `names`), and
/// the op column.
pub fn output_schema(input: &Schema, names: &[Field]) -> SchemaRef {
    let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(names.iter().cloned());
    crate::changelog::with_op_field(&Schema::new(fields))
}

super::operator_spec!(UpdatingOverSpec, stateful = true, UpdatingOver::new);
