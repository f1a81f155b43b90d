//! Event-time temporal join: `FROM orders AS o JOIN rates FOR SYSTEM_TIME AS OF o.order_time
//! AS r ON o.currency = r.currency`, each order joined with the version of its rate that was
//! valid at the order's time (Flink's event-time temporal join against a versioned table).
//!
//! The right side is a *versioned table*: a stream with a primary key and a watermark, each
//! row a new version of its key, valid from its event time until the key's next version. The
//! operator keeps, per key, the versions in time order; a left row waits until the watermark
//! (the minimum over both inputs, merged by the input gate) passes its time, so every version
//! that could be valid at that time has arrived, then it is joined with the latest version at
//! or before its time (INNER: dropped without one; LEFT: padded with NULLs). The output is
//! append-only and keeps the left side's time attributes.
//!
//! A versioned table read as a changelog (debezium-json, upsert-kafka; Flink's usual versioned
//! tables) is taken as Flink's temporal join takes it: `+I` and `+U` rows are versions, `-U`
//! rows are skipped (the `+U` that follows is the new version), and a `-D` row ends its key at
//! the row's event time (a join at or after it finds no version).
//!
//! State: the left rows still ahead of the watermark, and per key the versions from the one
//! valid at the watermark onwards (older ones can no longer be chosen, and are freed). A
//! snapshot holds both, each row with its key group.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::{
    Emitter, Operator, StateSnapshot, eval, eval_all, rows_table, table_rows, time_millis,
};
use crate::message::Timestamp;
use crate::{Result, exec_err};

/// The static description of an event-time temporal join.
#[derive(Debug, Clone)]
pub struct TemporalJoinSpec {
    /// Equi-join keys over the left rows and over the versions (the versioned table's primary
    /// key).
    pub keys: [Vec<Arc<dyn PhysicalExpr>>; 2],
    /// The left rows' event-time column (the `AS OF` column).
    pub left_time: usize,
    /// The versions' event-time column.
    pub right_time: usize,
    /// LEFT JOIN: left rows without a version are kept, padded with NULLs.
    pub outer: bool,
    /// Residual condition over the joined row (INNER joins only).
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Input schemas.
    pub inputs: [SchemaRef; 2],
    /// Left columns then right columns.
    pub output_schema: SchemaRef,
    /// The versioned table's name, for EXPLAIN.
    pub table: String,
}

impl fmt::Display for TemporalJoinSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = |side: usize| super::exprs_text(&self.keys[side]);
        write!(
            f,
            "TemporalJoin: {} {} AS OF {} on [{}] = [{}] (version valid at the left row's time; rows wait for the watermark)",
            if self.outer { "LEFT" } else { "INNER" },
            self.table,
            self.inputs[0].field(self.left_time).name(),
            keys(0),
            keys(1)
        )?;
        if let Some(c) = &self.filter {
            write!(f, " if {c}")?;
        }
        Ok(())
    }
}

/// A key's versions: time → whether it deletes the key, and the row (row format).
type Versions = BTreeMap<Timestamp, (bool, Vec<u8>)>;

/// The running join.
pub struct TemporalJoin {
    spec: TemporalJoinSpec,
    watermark: Timestamp,
    /// Left rows ahead of the watermark.
    pending: Vec<RecordBatch>,
    /// Per key: its versions.
    versions: HashMap<Vec<u8>, Versions>,
    /// Keys given versions since the last clean-up.
    dirty: HashSet<Vec<u8>>,
    keys: RowConverter,
    rows: RowConverter,
    bytes: usize,
}

impl TemporalJoin {
    /// A new instance.
    pub fn new(spec: TemporalJoinSpec) -> Result<Self> {
        let keys = RowConverter::new(
            spec.keys[1]
                .iter()
                .map(|k| Ok(SortField::new(k.data_type(&spec.inputs[1])?)))
                .collect::<Result<Vec<_>>>()?,
        )?;
        let rows = super::whole_rows(&spec.inputs[1])?;
        Ok(Self {
            spec,
            watermark: Timestamp::MIN,
            pending: vec![],
            versions: HashMap::new(),
            dirty: HashSet::new(),
            keys,
            rows,
            bytes: 0,
        })
    }

    /// Each row's key (row format) on `side`.
    fn key_bytes(&self, side: usize, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        let cols = eval_all(&self.spec.keys[side], batch)?;
        // The left keys may differ in type from the right ones (INT = BIGINT): as the right's.
        let cols = cols
            .iter()
            .zip(&self.spec.keys[1])
            .map(|(c, k)| {
                let t = k.data_type(&self.spec.inputs[1])?;
                Ok(datafusion::arrow::compute::cast(c, &t)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = self.keys.convert_columns(&cols)?;
        Ok(rows.iter().map(|r| r.as_ref().to_vec()).collect())
    }

    /// Store versions (right rows).
    fn add_versions(&mut self, batch: &RecordBatch) -> Result<u64> {
        // A changelog's rows: -U skipped, -D a deletion of the key from its time on.
        let ops = crate::changelog::ops_of(batch).map(<[i8]>::to_vec);
        let width = self.spec.inputs[1].fields().len();
        let batch = RecordBatch::try_new(
            self.spec.inputs[1].clone(),
            batch.columns()[..width].to_vec(),
        )?;
        let deletes = |i: usize| {
            ops.as_ref()
                .map(|o| crate::changelog::RowKind::from_i8(o[i]))
                .map_or(Some(false), |k| match k {
                    crate::changelog::RowKind::UpdateBefore => None,
                    crate::changelog::RowKind::Delete => Some(true),
                    _ => Some(false),
                })
        };
        self.add_rows(&batch, deletes)
    }

    /// Versions (or, where `deletes` says so, deletions; `None`: skipped) of `batch`'s rows.
    fn add_rows(
        &mut self,
        batch: &RecordBatch,
        deletes: impl Fn(usize) -> Option<bool>,
    ) -> Result<u64> {
        let times = time_millis(batch.column(self.spec.right_time))?.into_owned();
        let nulls = batch.column(self.spec.right_time).clone();
        let keys = self.key_bytes(1, batch)?;
        let rows = self.rows.convert_columns(batch.columns())?;
        let mut skipped = 0;
        for (i, key) in keys.into_iter().enumerate() {
            if nulls.is_null(i) {
                skipped += 1;
                continue;
            }
            let Some(deleted) = deletes(i) else {
                continue;
            };
            let row = rows.row(i).as_ref().to_vec();
            self.bytes += row.len() + key.len() + 48;
            self.versions
                .entry(key.clone())
                .or_default()
                .insert(times[i], (deleted, row));
            self.dirty.insert(key);
        }
        Ok(skipped)
    }

    /// Join the pending left rows at or before `wm` and emit them.
    fn fire(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        if self.pending.is_empty() {
            return self.clean(wm);
        }
        let all = concat_batches(&self.spec.inputs[0], &self.pending)?;
        self.pending.clear();
        let times = time_millis(all.column(self.spec.left_time))?.into_owned();
        let ready: datafusion::arrow::array::BooleanArray =
            times.iter().map(|t| Some(*t <= wm)).collect();
        let rest = filter_record_batch(&all, &datafusion::arrow::compute::not(&ready)?)?;
        self.bytes = rest.get_array_memory_size() + self.version_bytes();
        if rest.num_rows() > 0 {
            self.pending.push(rest);
        }
        let left = filter_record_batch(&all, &ready)?;
        if left.num_rows() > 0 {
            out.emit(self.join(&left)?);
        }
        self.clean(wm)
    }

    /// The left rows joined with their versions.
    fn join(&self, left: &RecordBatch) -> Result<RecordBatch> {
        let times = time_millis(left.column(self.spec.left_time))?.into_owned();
        let keys = self.key_bytes(0, left)?;
        let mut picked: Vec<&[u8]> = vec![];
        let mut left_idx: Vec<u32> = vec![];
        let mut right_idx: Vec<Option<u32>> = vec![];
        for (i, key) in keys.iter().enumerate() {
            let version = self
                .versions
                .get(key)
                .and_then(|v| v.range(..=times[i]).next_back())
                .and_then(|(_, (deleted, row))| (!deleted).then_some(row.as_slice()));
            match version {
                Some(row) => {
                    left_idx.push(i as u32);
                    right_idx.push(Some(picked.len() as u32));
                    picked.push(row);
                }
                None if self.spec.outer => {
                    left_idx.push(i as u32);
                    right_idx.push(None);
                }
                None => {}
            }
        }
        let parser = self.rows.parser();
        let right_cols = if picked.is_empty() {
            self.spec.inputs[1]
                .fields()
                .iter()
                .map(|f| datafusion::arrow::array::new_empty_array(f.data_type()))
                .collect()
        } else {
            self.rows
                .convert_rows(picked.iter().map(|r| parser.parse(r)))?
        };
        let left_take = UInt32Array::from(left_idx);
        let right_take = UInt32Array::from(right_idx);
        let mut columns: Vec<ArrayRef> = left
            .columns()
            .iter()
            .map(|c| Ok(take(c.as_ref(), &left_take, None)?))
            .collect::<Result<_>>()?;
        for c in &right_cols {
            columns.push(take(c.as_ref(), &right_take, None)?);
        }
        let columns = columns
            .into_iter()
            .zip(self.spec.output_schema.fields())
            .map(|(c, f)| crate::format::cast_to(&c, f.data_type()))
            .collect::<Result<Vec<_>>>()?;
        let joined = RecordBatch::try_new(self.spec.output_schema.clone(), columns)?;
        match &self.spec.filter {
            Some(f) => {
                let keep = eval(f, &joined)?;
                let Some(keep) = keep
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::BooleanArray>()
                else {
                    return exec_err!("temporal join", "the join condition is not a boolean");
                };
                Ok(filter_record_batch(&joined, keep)?)
            }
            None => Ok(joined),
        }
    }

    /// Free the versions no left row can choose any more: per key, those older than its
    /// latest version at or before the watermark.
    fn clean(&mut self, wm: Timestamp) -> Result<()> {
        for key in std::mem::take(&mut self.dirty) {
            let Some(v) = self.versions.get_mut(&key) else {
                continue;
            };
            let Some(valid) = v.range(..=wm).next_back().map(|(t, _)| *t) else {
                // Every version is still ahead: check again later.
                self.dirty.insert(key);
                continue;
            };
            let newer = v.split_off(&valid);
            *v = newer;
            if v.len() > 1 {
                self.dirty.insert(key);
            }
        }
        self.bytes = self
            .pending
            .iter()
            .map(|b| b.get_array_memory_size())
            .sum::<usize>()
            + self.version_bytes();
        Ok(())
    }

    fn version_bytes(&self) -> usize {
        self.versions
            .iter()
            .map(|(k, v)| {
                v.values()
                    .map(|(_, r)| r.len() + k.len() + 48)
                    .sum::<usize>()
            })
            .sum()
    }
}

impl Operator for TemporalJoin {
    fn name(&self) -> &str {
        "temporal join"
    }

    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Emitter) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        match input {
            0 => {
                let col = batch.column(self.spec.left_time);
                if col.null_count() > 0 {
                    out.malformed += col.null_count() as u64;
                    let keep = datafusion::arrow::compute::is_not_null(col)?;
                    let kept = filter_record_batch(&batch, &keep)?;
                    self.bytes += kept.get_array_memory_size();
                    self.pending.push(kept);
                } else {
                    self.bytes += batch.get_array_memory_size();
                    self.pending.push(batch);
                }
                Ok(())
            }
            1 => {
                out.malformed += self.add_versions(&batch)?;
                Ok(())
            }
            other => exec_err!("temporal join", "input {other} of a two-input join"),
        }
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
        let spec = &self.spec;
        let mut tables: Vec<(String, RecordBatch)> = rows_table(
            "pending",
            &self.pending,
            &spec.inputs[0],
            &spec.keys[0],
            key_groups,
        )?
        .into_iter()
        .collect();
        for (name, deleted) in [("versions", false), ("deletions", true)] {
            let rows: Vec<&[u8]> = self
                .versions
                .values()
                .flat_map(|v| v.values().filter(|(d, _)| *d == deleted))
                .map(|(_, r)| r.as_slice())
                .collect();
            if rows.is_empty() {
                continue;
            }
            let parser = self.rows.parser();
            let cols = self
                .rows
                .convert_rows(rows.iter().map(|r| parser.parse(r)))?;
            let batch = RecordBatch::try_new(spec.inputs[1].clone(), cols)?;
            tables.extend(rows_table(
                name,
                &[batch],
                &spec.inputs[1],
                &spec.keys[1],
                key_groups,
            )?);
        }
        Ok(Some(StateSnapshot {
            tables,
            meta: serde_json::json!({ "wm": self.watermark }),
        }))
    }

    fn restore(&mut self, snapshot: StateSnapshot) -> Result<()> {
        self.watermark = snapshot.meta_i64("wm").unwrap_or(Timestamp::MIN);
        if let Some(t) = snapshot.table("pending") {
            let rows = table_rows(t, &self.spec.inputs[0])?;
            self.bytes += rows.get_array_memory_size();
            self.pending.push(rows);
        }
        for (name, deleted) in [("versions", false), ("deletions", true)] {
            if let Some(t) = snapshot.table(name) {
                let rows = table_rows(t, &self.spec.inputs[1])?;
                self.add_rows(&rows, |_| Some(deleted))?;
            }
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.bytes
    }
}

super::operator_spec!(TemporalJoinSpec, stateful = true, TemporalJoin::new);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changelog::{RowKind, batch_with_ops, with_op_field};
    use datafusion::arrow::array::{Int64Array, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::physical_expr::expressions::Column;

    fn spec() -> TemporalJoinSpec {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        let left = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("ts", ts.clone(), true),
        ]));
        let right = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
            Field::new("vt", ts.clone(), true),
        ]));
        let mut out: Vec<Field> = left.fields().iter().map(|f| f.as_ref().clone()).collect();
        out.extend(
            right
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
        TemporalJoinSpec {
            keys: [
                vec![Arc::new(Column::new("k", 0))],
                vec![Arc::new(Column::new("k", 0))],
            ],
            left_time: 1,
            right_time: 2,
            outer: true,
            filter: None,
            inputs: [left, right],
            output_schema: Arc::new(Schema::new(out)),
            table: "rates".into(),
        }
    }

    fn changes(rows: &[(i64, i64, i64, RowKind)]) -> RecordBatch {
        let s = spec();
        batch_with_ops(
            with_op_field(&s.inputs[1]),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.2),
                )),
            ],
            rows.iter().map(|r| r.3 as i8).collect(),
        )
        .unwrap()
    }

    fn orders(times: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            spec().inputs[0].clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(times.iter().map(|_| 1))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    times.iter().copied(),
                )),
            ],
        )
        .unwrap()
    }

    /// The version each order finds: (order time, version value or None).
    fn joined(op: &mut TemporalJoin, times: &[i64], wm: i64) -> Vec<(i64, Option<i64>)> {
        let mut out = Emitter::default();
        op.process_batch(0, orders(times), &mut out).unwrap();
        op.on_watermark(wm, &mut out).unwrap();
        let mut got = vec![];
        for m in out.messages {
            let crate::message::Message::Batch(b) = m else {
                continue;
            };
            let t = b
                .column(1)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            let v = b.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 0..b.num_rows() {
                got.push((t.value(i), v.is_valid(i).then(|| v.value(i))));
            }
        }
        got.sort();
        got
    }

    /// A changelog versioned table: -U is skipped, -D deletes the key from its time on, and
    /// the deletion survives a snapshot and restore.
    #[test]
    fn deletes_end_a_key_and_survive_a_restore() {
        let mut op = TemporalJoin::new(spec()).unwrap();
        let mut out = Emitter::default();
        let log = changes(&[
            (1, 10, 0, RowKind::Insert),
            (1, 10, 0, RowKind::UpdateBefore),
            (1, 20, 10, RowKind::UpdateAfter),
            (1, 20, 30, RowKind::Delete),
        ]);
        op.process_batch(1, log, &mut out).unwrap();
        assert_eq!(
            joined(&mut op, &[5, 15], 20),
            vec![(5, Some(10)), (15, Some(20))]
        );
        let snap = op.snapshot(128).unwrap().unwrap();
        let mut restored = TemporalJoin::new(spec()).unwrap();
        restored.restore(snap).unwrap();
        assert_eq!(
            joined(&mut restored, &[25, 35], 40),
            vec![(25, Some(20)), (35, None)]
        );
    }
}
