//! `INTERSECT ALL` and `EXCEPT ALL`: set operations that keep duplicates by count.
//!
//! The SQL rewriter turns `a INTERSECT ALL b` into a `UNION ALL` of both branches, each row
//! tagged with its side in a last column (see `planner::rewrite`). This operator receives that
//! union hash-partitioned by the whole row (less the tag), so all copies of a row meet in one
//! instance, and keeps per distinct row how often each side has it (NULLs equal, as set
//! operations compare rows). A row occurs `min(l, r)` times in an INTERSECT ALL and
//! `max(l - r, 0)` times in an EXCEPT ALL; each input row changes that by at most one, and the
//! change is emitted as one `+I` (one more copy) or `-D` (one copy fewer).
//!
//! Over append-only inputs INTERSECT ALL only ever adds copies, so its output is append-only;
//! EXCEPT ALL retracts a copy when the right side catches up, so its output is a changelog.
//! Updating inputs are counted down by their retractions. State: one row per distinct input
//! row with its two counts, snapshotted by the row's key group.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::RowConverter;
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;

use super::{Emitter, Operator, StateSnapshot, rows_table, table_rows, whole_rows};
use crate::changelog::{self, RowKind};
use crate::{Result, exec_err};

/// Which set operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetAllKind {
    /// `INTERSECT ALL`: `min(l, r)` copies.
    Intersect,
    /// `EXCEPT ALL`: `max(l - r, 0)` copies.
    Except,
}

impl SetAllKind {
    /// Copies of a row the left side has `l` times and the right side `r` times.
    fn copies(self, [l, r]: [i64; 2]) -> i64 {
        match self {
            SetAllKind::Intersect => l.min(r).max(0),
            SetAllKind::Except => (l - r).max(0),
        }
    }
}

/// The static description.
#[derive(Debug, Clone)]
pub struct SetAllSpec {
    /// INTERSECT ALL or EXCEPT ALL.
    pub kind: SetAllKind,
    /// The union's columns: the rows' columns, then the side tag (0 left, 1 right). Without
    /// the op column.
    pub schema: SchemaRef,
    /// Whether the input carries the op column (a branch is updating).
    pub updating_input: bool,
    /// Whether the output is a changelog: EXCEPT ALL, or any updating input.
    pub updating: bool,
}

impl SetAllSpec {
    /// The columns that make a row (all but the side tag).
    fn width(&self) -> usize {
        self.schema.fields().len() - 1
    }

    /// The rows' columns as expressions: the exchange's (and the snapshot's) keys.
    pub fn row_keys(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        self.schema.fields()[..self.width()]
            .iter()
            .enumerate()
            .map(|(i, f)| Arc::new(Column::new(f.name(), i)) as Arc<dyn PhysicalExpr>)
            .collect()
    }

    /// The rows' schema (without the side tag).
    fn row_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.schema.fields()[..self.width()].to_vec()))
    }

    /// The snapshot's schema: the rows' columns, then the two counts.
    fn state_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self.schema.fields()[..self.width()]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("__left", DataType::Int64, false));
        fields.push(Field::new("__right", DataType::Int64, false));
        Arc::new(Schema::new(fields))
    }
}

impl fmt::Display for SetAllSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, rule) = match self.kind {
            SetAllKind::Intersect => ("INTERSECT ALL", "min(left, right)"),
            SetAllKind::Except => ("EXCEPT ALL", "max(left - right, 0)"),
        };
        write!(f, "{name}: per row, {rule} copies")?;
        if self.updating {
            write!(f, " [changelog]")?;
        }
        Ok(())
    }
}

/// The running operator.
pub(crate) struct SetAll {
    spec: SetAllSpec,
    rows: RowConverter,
    /// Row (row format) → how often the left and the right side have it.
    counts: HashMap<Vec<u8>, [i64; 2]>,
    bytes: usize,
}

impl SetAll {
    pub(crate) fn new(spec: SetAllSpec) -> Result<Self> {
        Ok(Self {
            rows: whole_rows(&spec.row_schema())?,
            spec,
            counts: HashMap::new(),
            bytes: 0,
        })
    }

    /// Change the counts of `row` by `delta`; the change in its copies.
    fn count(&mut self, row: &[u8], delta: [i64; 2]) -> i64 {
        let before = self.counts.get(row).copied().unwrap_or([0, 0]);
        let after = [before[0] + delta[0], before[1] + delta[1]];
        if after == [0, 0] {
            if self.counts.remove(row).is_some() {
                self.bytes = self.bytes.saturating_sub(row.len() + 16);
            }
        } else if let Some(c) = self.counts.get_mut(row) {
            *c = after;
        } else {
            self.bytes += row.len() + 16;
            self.counts.insert(row.to_vec(), after);
        }
        self.spec.kind.copies(after) - self.spec.kind.copies(before)
    }
}

impl Operator for SetAll {
    fn name(&self) -> &str {
        match self.spec.kind {
            SetAllKind::Intersect => "intersect all",
            SetAllKind::Except => "except all",
        }
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let width = self.spec.width();
        let Some(side) = batch.column(width).as_primitive_opt::<Int64Type>().cloned() else {
            return exec_err!(self.name(), "the side tag is not a BIGINT");
        };
        let ops = if self.spec.updating_input {
            changelog::ops_of(&batch).map(<[i8]>::to_vec)
        } else {
            None
        };
        let rows = self.rows.convert_columns(&batch.columns()[..width])?;
        // (input row, +1 or -1 copy)
        let mut changes: Vec<(usize, i64)> = vec![];
        for i in 0..n {
            let sign = match &ops {
                Some(ops) if !RowKind::from_i8(ops[i]).is_accumulate() => -1,
                _ => 1,
            };
            let mut delta = [0, 0];
            delta[usize::from(side.value(i) != 0)] = sign;
            let d = self.count(rows.row(i).as_ref(), delta);
            if d != 0 {
                changes.push((i, d));
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        let idx = datafusion::arrow::array::UInt32Array::from_iter_values(
            changes.iter().map(|(i, _)| *i as u32),
        );
        let mut cols: Vec<ArrayRef> = batch.columns()[..width]
            .iter()
            .map(|c| Ok(datafusion::arrow::compute::take(c.as_ref(), &idx, None)?))
            .collect::<Result<_>>()?;
        // The tag of every output row is the left side's.
        cols.push(ScalarValue::Int64(Some(0)).to_array_of_size(changes.len())?);
        if self.spec.updating {
            let kinds = changes
                .iter()
                .map(|(_, d)| {
                    if *d > 0 {
                        RowKind::Insert
                    } else {
                        RowKind::Delete
                    }
                })
                .map(|k| k as i8)
                .collect();
            let schema = changelog::with_op_field(&self.spec.schema);
            out.emit(changelog::batch_with_ops(schema, cols, kinds)?);
        } else {
            out.emit(RecordBatch::try_new(self.spec.schema.clone(), cols)?);
        }
        Ok(())
    }

    fn snapshot(&mut self, key_groups: usize) -> Result<Option<StateSnapshot>> {
        let mut tables = vec![];
        if !self.counts.is_empty() {
            let parser = self.rows.parser();
            let mut cols = self
                .rows
                .convert_rows(self.counts.keys().map(|r| parser.parse(r)))?;
            for side in 0..2 {
                cols.push(Arc::new(Int64Array::from_iter_values(
                    self.counts.values().map(|c| c[side]),
                )));
            }
            let schema = self.spec.state_schema();
            let batch = RecordBatch::try_new(schema.clone(), cols)?;
            tables.extend(rows_table(
                "counts",
                &[batch],
                &schema,
                &self.spec.row_keys(),
                key_groups,
            )?);
        }
        Ok(Some(StateSnapshot {
            tables,
            meta: serde_json::Value::Null,
        }))
    }

    fn restore(&mut self, snapshot: StateSnapshot) -> Result<()> {
        let Some(t) = snapshot.table("counts") else {
            return Ok(());
        };
        let data = table_rows(t, &self.spec.state_schema())?;
        let width = self.spec.width();
        let rows = self.rows.convert_columns(&data.columns()[..width])?;
        let (l, r) = (
            data.column(width).as_primitive::<Int64Type>(),
            data.column(width + 1).as_primitive::<Int64Type>(),
        );
        for i in 0..data.num_rows() {
            if l.is_null(i) || r.is_null(i) {
                return exec_err!(self.name(), "a restored row has no counts");
            }
            self.count(rows.row(i).as_ref(), [l.value(i), r.value(i)]);
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.bytes
    }
}

super::operator_spec!(SetAllSpec, stateful = true, SetAll::new);

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: SetAllKind) -> SetAllSpec {
        SetAllSpec {
            kind,
            schema: Arc::new(Schema::new(vec![
                Field::new("v", DataType::Int64, true),
                Field::new("__weir_side", DataType::Int64, false),
            ])),
            updating_input: false,
            updating: kind == SetAllKind::Except,
        }
    }

    fn tagged(values: &[Option<i64>], side: i64) -> RecordBatch {
        RecordBatch::try_new(
            spec(SetAllKind::Intersect).schema,
            vec![
                Arc::new(Int64Array::from(values.to_vec())),
                Arc::new(Int64Array::from(vec![side; values.len()])),
            ],
        )
        .expect("batch")
    }

    /// The rows present once every change is applied.
    fn result(op: &mut SetAll, batches: &[RecordBatch]) -> Vec<String> {
        let mut out = Emitter::default();
        for b in batches {
            op.process_batch(0, b.clone(), &mut out).expect("process");
        }
        let mut table: std::collections::BTreeMap<String, i64> = Default::default();
        for b in crate::operators::test_util::emitted(out) {
            let ops = changelog::ops_of(&b).map(<[i8]>::to_vec);
            let data = RecordBatch::try_new(
                spec(SetAllKind::Intersect).schema,
                b.columns()[..2].to_vec(),
            )
            .expect("data");
            let col = data.column(0).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                let v = if col.is_null(i) {
                    "NULL".to_string()
                } else {
                    col.value(i).to_string()
                };
                let sign = match &ops {
                    Some(o) if !RowKind::from_i8(o[i]).is_accumulate() => -1,
                    _ => 1,
                };
                *table.entry(v).or_default() += sign;
            }
        }
        let mut out = vec![];
        for (v, n) in table {
            assert!(n >= 0, "{v} retracted more often than inserted");
            out.extend(std::iter::repeat_n(v, n as usize));
        }
        out
    }

    #[test]
    fn intersect_all_keeps_the_smaller_count() {
        let mut op = SetAll::new(spec(SetAllKind::Intersect)).expect("op");
        let got = result(
            &mut op,
            &[
                tagged(&[Some(1), Some(1), Some(1), Some(2), None, None], 0),
                tagged(&[Some(1), Some(1), Some(3), None], 1),
                tagged(&[Some(2), Some(2)], 1),
            ],
        );
        assert_eq!(got, ["1", "1", "2", "NULL"]);
    }

    #[test]
    fn except_all_subtracts_counts_and_retracts() {
        let mut op = SetAll::new(spec(SetAllKind::Except)).expect("op");
        let got = result(
            &mut op,
            &[
                tagged(&[Some(1), Some(1), Some(1), Some(2), None, None], 0),
                tagged(&[Some(1), Some(3), None, None, None], 1),
                tagged(&[Some(2)], 1),
            ],
        );
        assert_eq!(got, ["1", "1"]);
    }

    /// Counts before a snapshot and after a restore at another parallelism give the changes of
    /// an uninterrupted run.
    #[test]
    fn restore_at_other_parallelism_gives_the_same_changelog() {
        use crate::operators::test_util::assert_rescales_alike;
        let spec = spec(SetAllKind::Except);
        let keys = spec.row_keys();
        let op = crate::operators::OpSpec::new(spec);
        let batch = |from: i64| {
            let values: Vec<Option<i64>> = (0..200)
                .map(|i| ((i + from) % 9 != 0).then_some((i * 7 + from) % 23))
                .collect();
            (tagged(&values, from % 2), from)
        };
        let before: Vec<_> = (0..3).map(|b| batch(b * 1001)).collect();
        let after: Vec<_> = (3..6).map(|b| batch(b * 1001)).collect();
        let straight = assert_rescales_alike(&op, &keys, &before, &after);
        assert!(straight.len() > 50, "{}", straight.len());
    }
}
