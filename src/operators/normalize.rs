//! Changelog normalisation (Flink's `ChangelogNormalize`): an upsert stream (each row the new
//! value of its key, `-D` for a key deleted, as `'connector' = 'upsert-kafka'` reads a
//! compacted topic) into a full changelog that operators downstream can retract from.
//!
//! Per primary key, the last row is kept. A new value of a key emits `-U` of the row it had
//! and `+U` of the new one (`+I` for a new key; nothing when the row is unchanged); a delete
//! emits `-D` of the row the key had (nothing for an unknown key). Keyed: the rows of a key
//! meet in one instance. State: one row per live key, snapshotted by key group.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::RowConverter;
use datafusion::physical_expr::PhysicalExpr;

use super::{Emitter, Operator, PartitionKeys, StateSnapshot, rows_table, table_rows, whole_rows};
use crate::Result;
use crate::changelog::{self, RowKind};

/// The static description: the primary key, and the rows' schema (without the op column).
#[derive(Debug, Clone)]
pub struct NormalizeSpec {
    /// The primary key's columns.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The rows' columns (the input's, less its op column).
    pub schema: SchemaRef,
}

impl fmt::Display for NormalizeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ChangelogNormalize: key=[{}] (last row per key; upserts to -U/+U)",
            super::exprs_text(&self.keys)
        )
    }
}

/// The running operator.
pub(crate) struct Normalize {
    spec: NormalizeSpec,
    keys: PartitionKeys,
    rows: RowConverter,
    /// Key (row format) → the key's current row (row format).
    last: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

impl Normalize {
    pub(crate) fn new(spec: NormalizeSpec) -> Result<Self> {
        Ok(Self {
            keys: PartitionKeys::new(&spec.keys, &spec.schema)?,
            rows: whole_rows(&spec.schema)?,
            spec,
            last: HashMap::new(),
            bytes: 0,
        })
    }

    /// Apply the changes of `batch` (rows of the spec's schema, then the op column).
    fn apply(&mut self, batch: &RecordBatch, out: &mut Emitter) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let width = self.spec.schema.fields().len();
        let data =
            RecordBatch::try_new(self.spec.schema.clone(), batch.columns()[..width].to_vec())?;
        let ops = changelog::ops_of(batch)
            .map(<[i8]>::to_vec)
            .unwrap_or_else(|| vec![0; n]);
        let keys = self.keys.of(&data)?;
        let rows = self.rows.convert_columns(data.columns())?;
        let mut emitted: Vec<(RowKind, Vec<u8>)> = vec![];
        for (i, key) in keys.into_iter().enumerate() {
            let row = rows.row(i).as_ref().to_vec();
            if RowKind::from_i8(ops[i]).is_accumulate() {
                let size = key.len() + row.len();
                match self.last.insert(key, row.clone()) {
                    Some(old) if old == row => {}
                    Some(old) => {
                        self.bytes = self.bytes + row.len() - old.len();
                        emitted.push((RowKind::UpdateBefore, old));
                        emitted.push((RowKind::UpdateAfter, row));
                    }
                    None => {
                        self.bytes += size;
                        emitted.push((RowKind::Insert, row));
                    }
                }
            } else if let Some(old) = self.last.remove(&key) {
                self.bytes = self.bytes.saturating_sub(key.len() + old.len());
                emitted.push((RowKind::Delete, old));
            }
        }
        if emitted.is_empty() {
            return Ok(());
        }
        let parser = self.rows.parser();
        let columns = self
            .rows
            .convert_rows(emitted.iter().map(|(_, r)| parser.parse(r)))?;
        let kinds = emitted.iter().map(|(k, _)| *k as i8).collect();
        let schema = changelog::with_op_field(&self.spec.schema);
        out.emit(changelog::batch_with_ops(schema, columns, kinds)?);
        Ok(())
    }
}

impl Operator for Normalize {
    fn name(&self) -> &str {
        "changelog normalize"
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<()> {
        self.apply(&batch, out)
    }

    fn snapshot(&mut self, key_groups: usize) -> Result<Option<StateSnapshot>> {
        let mut tables = vec![];
        if !self.last.is_empty() {
            let parser = self.rows.parser();
            let columns = self
                .rows
                .convert_rows(self.last.values().map(|r| parser.parse(r)))?;
            let batch = RecordBatch::try_new(self.spec.schema.clone(), columns)?;
            tables.extend(rows_table(
                "rows",
                &[batch],
                &self.spec.schema,
                &self.spec.keys,
                key_groups,
            )?);
        }
        Ok(Some(StateSnapshot {
            tables,
            meta: serde_json::Value::Null,
        }))
    }

    fn restore(&mut self, snapshot: StateSnapshot) -> Result<()> {
        if let Some(t) = snapshot.table("rows") {
            let data = table_rows(t, &self.spec.schema)?;
            let keys = self.keys.of(&data)?;
            let rows = self.rows.convert_columns(data.columns())?;
            for (i, key) in keys.into_iter().enumerate() {
                let row = rows.row(i).as_ref().to_vec();
                self.bytes += key.len() + row.len();
                self.last.insert(key, row);
            }
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.bytes
    }
}

super::operator_spec!(NormalizeSpec, stateful = true, Normalize::new);

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::Column;

    fn spec() -> NormalizeSpec {
        NormalizeSpec {
            keys: vec![Arc::new(Column::new("k", 0))],
            schema: Arc::new(Schema::new(vec![
                Field::new("k", DataType::Int64, true),
                Field::new("v", DataType::Utf8, true),
            ])),
        }
    }

    fn upserts(rows: &[(i64, Option<&str>)]) -> RecordBatch {
        let schema = changelog::with_op_field(&spec().schema);
        let ops = rows
            .iter()
            .map(|(_, v)| if v.is_some() { RowKind::UpdateAfter } else { RowKind::Delete } as i8)
            .collect();
        changelog::batch_with_ops(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1))),
            ],
            ops,
        )
        .unwrap()
    }

    fn changes(op: &mut Normalize, rows: &[(i64, Option<&str>)]) -> Vec<String> {
        let mut out = Emitter::default();
        op.apply(&upserts(rows), &mut out).unwrap();
        let mut got = vec![];
        for m in std::mem::take(&mut out.messages) {
            let crate::message::Message::Batch(b) = m else {
                continue;
            };
            let ops = changelog::ops_of(&b).unwrap().to_vec();
            let k = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let v = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
            for (i, op) in ops.iter().enumerate() {
                got.push(format!(
                    "{}{}={}",
                    RowKind::from_i8(*op).short(),
                    k.value(i),
                    v.value(i)
                ));
            }
        }
        got
    }

    /// Upserts before a snapshot and after a restore at another parallelism give the
    /// changelog of an uninterrupted run.
    #[test]
    fn restore_at_other_parallelism_gives_the_same_changelog() {
        use crate::operators::test_util::assert_rescales_alike;
        let spec = crate::operators::OpSpec::new(spec());
        let keys = spec_keys();
        let batch = |from: i64| {
            let rows: Vec<(i64, Option<String>)> = (0..300)
                .map(|i| {
                    let k = (i * 7 + from) % 41;
                    let v = ((i + from) % 5 != 0).then(|| format!("v{}", i + from));
                    (k, v)
                })
                .collect();
            let refs: Vec<(i64, Option<&str>)> =
                rows.iter().map(|(k, v)| (*k, v.as_deref())).collect();
            (upserts(&refs), from)
        };
        let before: Vec<_> = (0..3).map(|b| batch(b * 1000)).collect();
        let after: Vec<_> = (3..6).map(|b| batch(b * 1000)).collect();
        let straight = assert_rescales_alike(&spec, &keys, &before, &after);
        assert!(straight.len() > 500, "{}", straight.len());
    }

    fn spec_keys() -> Vec<Arc<dyn PhysicalExpr>> {
        vec![Arc::new(Column::new("k", 0))]
    }

    #[test]
    fn upserts_become_a_full_changelog_and_survive_a_restore() {
        let mut op = Normalize::new(spec()).unwrap();
        assert_eq!(
            changes(
                &mut op,
                &[
                    (1, Some("a")),
                    (2, Some("b")),
                    (1, Some("c")),
                    (1, Some("c"))
                ]
            ),
            vec!["+I1=a", "+I2=b", "-U1=a", "+U1=c"]
        );
        assert_eq!(changes(&mut op, &[(3, None), (2, None)]), vec!["-D2=b"]);
        // Restored at two instances, each with its key groups, the state is the same.
        let snap = op.snapshot(128).unwrap().unwrap();
        let mut restored = Normalize::new(spec()).unwrap();
        restored.restore(snap).unwrap();
        assert_eq!(
            changes(&mut restored, &[(1, Some("d"))]),
            vec!["-U1=c", "+U1=d"]
        );
        assert_eq!(changes(&mut restored, &[(2, Some("e"))]), vec!["+I2=e"]);
    }
}
