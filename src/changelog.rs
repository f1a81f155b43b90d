//! Updating results: the changelog column and its row kinds.
//!
//! An updating stream (unwindowed aggregates, outer joins without a time bound, Top-N) carries
//! one extra, last column named [`OP_COLUMN`] (Int8) holding each row's [`RowKind`], as Flink's
//! `RowKind` and Debezium's `op` do. Append-only streams have no such column.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int8Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef};

use crate::Result;

/// Name of the op column of an updating stream.
pub const OP_COLUMN: &str = "__op";

/// What a changelog row does to the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum RowKind {
    /// +I: a new row.
    Insert = 0,
    /// -U: the old version of an updated row (retracted).
    UpdateBefore = 1,
    /// +U: the new version of an updated row.
    UpdateAfter = 2,
    /// -D: a deleted row.
    Delete = 3,
}

impl RowKind {
    /// The short form Flink prints (`+I`, `-U`, `+U`, `-D`).
    pub fn short(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    /// From the op column's value.
    pub fn from_i8(v: i8) -> RowKind {
        match v {
            1 => RowKind::UpdateBefore,
            2 => RowKind::UpdateAfter,
            3 => RowKind::Delete,
            _ => RowKind::Insert,
        }
    }

    /// Whether the row adds to the result (+I, +U) rather than retracting (-U, -D).
    pub fn is_accumulate(self) -> bool {
        matches!(self, RowKind::Insert | RowKind::UpdateAfter)
    }
}

/// The op column's field.
pub fn op_field() -> Field {
    Field::new(OP_COLUMN, DataType::Int8, false)
}

/// `schema` with the op column appended.
pub fn with_op_field(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(op_field());
    Arc::new(Schema::new(fields))
}

/// Whether a schema is that of an updating stream.
pub fn is_changelog(schema: &Schema) -> bool {
    schema
        .fields()
        .last()
        .is_some_and(|f| f.name() == OP_COLUMN)
}

/// Append an op column to `columns` and build the batch.
pub fn batch_with_ops(
    schema: SchemaRef,
    mut columns: Vec<ArrayRef>,
    ops: Vec<i8>,
) -> Result<RecordBatch> {
    columns.push(Arc::new(Int8Array::from(ops)));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The ops of a changelog batch (all +I for an append-only batch).
pub fn ops_of(batch: &RecordBatch) -> Option<&[i8]> {
    if !is_changelog(batch.schema_ref()) {
        return None;
    }
    let col = batch.column(batch.num_columns() - 1);
    (col.data_type() == &DataType::Int8).then(|| col.as_primitive::<Int8Type>().values().as_ref())
}

/// A batch without its op column.
pub fn strip_ops(batch: &RecordBatch) -> RecordBatch {
    if is_changelog(batch.schema_ref()) {
        let keep: Vec<usize> = (0..batch.num_columns() - 1).collect();
        batch.project(&keep).unwrap_or_else(|_| batch.clone())
    } else {
        batch.clone()
    }
}

/// Number of rows of each kind in a batch, for tests and summaries.
pub fn count_kinds(batch: &RecordBatch) -> [usize; 4] {
    let mut n = [0; 4];
    match ops_of(batch) {
        Some(ops) => ops
            .iter()
            .for_each(|o| n[RowKind::from_i8(*o) as usize] += 1),
        None => n[0] = batch.num_rows(),
    }
    n
}

/// A column of Int8 ops with every row `kind`.
pub fn uniform_ops(kind: RowKind, rows: usize) -> ArrayRef {
    Arc::new(Int8Array::from(vec![kind as i8; rows]))
}
