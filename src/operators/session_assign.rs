//! The SESSION window TVF without aggregation: `SELECT * FROM TABLE(SESSION(TABLE t PARTITION
//! BY k, DESCRIPTOR(ts), INTERVAL '5' SECOND))` gives each row with the `window_start`,
//! `window_end` and `window_time` of its session.
//!
//! A session's bounds are known only once it is over (a later row may extend it), so rows wait
//! per partition until the watermark passes their session's end (last row + gap); then the
//! session's rows are emitted with its bounds. A row that arrives when the watermark has
//! already passed its time + gap could only have joined a session already emitted: it is late
//! and dropped, as in Flink. State: the waiting rows, snapshotted with their partition's key
//! group.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;

use super::{
    Emitter, Operator, PartitionKeys, StateSnapshot, drop_late, rows_table, table_rows, time_millis,
};
use crate::Result;
use crate::message::Timestamp;

/// The static description of a SESSION TVF without aggregation.
#[derive(Debug, Clone)]
pub struct SessionAssignSpec {
    /// Inactivity gap (ms).
    pub gap: i64,
    /// PARTITION BY expressions.
    pub partition: Vec<Arc<dyn PhysicalExpr>>,
    /// Event-time column.
    pub time_col: usize,
    /// Input schema.
    pub input_schema: SchemaRef,
    /// Input columns, then window_start, window_end, window_time.
    pub output_schema: SchemaRef,
}

impl fmt::Display for SessionAssignSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part: Vec<String> = self.partition.iter().map(|p| p.to_string()).collect();
        write!(
            f,
            "SessionAssign: gap={} ms, partition=[{}] (rows wait until their session closes)",
            self.gap,
            part.join(", ")
        )
    }
}

/// The running operator.
pub struct SessionAssign {
    spec: SessionAssignSpec,
    watermark: Timestamp,
    pending: Vec<RecordBatch>,
    keys: PartitionKeys,
    bytes: usize,
}

impl SessionAssign {
    /// A new instance.
    pub fn new(spec: SessionAssignSpec) -> Result<Self> {
        let keys = PartitionKeys::new(&spec.partition, &spec.input_schema)?;
        Ok(Self {
            spec,
            watermark: Timestamp::MIN,
            pending: vec![],
            keys,
            bytes: 0,
        })
    }

    /// Emit the sessions that ended at or before `wm`; keep the rest waiting.
    fn fire(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let all = concat_batches(&self.spec.input_schema, &self.pending)?;
        self.pending.clear();
        let times = time_millis(all.column(self.spec.time_col))?.into_owned();
        let keys = self.keys.of(&all)?;
        let mut by_key: HashMap<&[u8], Vec<u32>> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            by_key.entry(k.as_slice()).or_default().push(i as u32);
        }
        let gap = self.spec.gap;
        let (mut emit, mut starts, mut ends) = (vec![], vec![], vec![]);
        let mut keep = vec![false; all.num_rows()];
        for rows in by_key.values_mut() {
            rows.sort_by_key(|r| (times[*r as usize], *r));
            let mut i = 0;
            while i < rows.len() {
                // One session: rows at most the gap after the previous one (windows that
                // touch merge, as Flink's).
                let start = times[rows[i] as usize];
                let mut last = start;
                let mut j = i + 1;
                while j < rows.len() && times[rows[j] as usize] <= last + gap {
                    last = last.max(times[rows[j] as usize]);
                    j += 1;
                }
                let end = last + gap;
                if end <= wm {
                    for r in &rows[i..j] {
                        emit.push(*r);
                        starts.push(start);
                        ends.push(end);
                    }
                } else {
                    for r in &rows[i..j] {
                        keep[*r as usize] = true;
                    }
                }
                i = j;
            }
        }
        let rest = filter_record_batch(&all, &datafusion::arrow::array::BooleanArray::from(keep))?;
        self.bytes = rest.get_array_memory_size();
        if rest.num_rows() > 0 {
            self.pending.push(rest);
        }
        if emit.is_empty() {
            return Ok(());
        }
        let rows = take_record_batch(&all, &UInt32Array::from(emit))?;
        let width = self.spec.input_schema.fields().len();
        let tz = |i: usize| match self.spec.output_schema.field(width + i).data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let times: Vec<i64> = ends.iter().map(|e| e - 1).collect();
        let mut columns = rows.columns().to_vec();
        for (i, v) in [starts, ends, times].into_iter().enumerate() {
            columns.push(
                Arc::new(TimestampMillisecondArray::from(v).with_timezone_opt(tz(i))) as ArrayRef,
            );
        }
        out.emit(RecordBatch::try_new(
            self.spec.output_schema.clone(),
            columns,
        )?);
        Ok(())
    }
}

impl Operator for SessionAssign {
    fn name(&self) -> &str {
        "session assign"
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<()> {
        let (wm, gap) = (self.watermark, self.spec.gap);
        let kept = drop_late(
            batch,
            self.spec.time_col,
            |t| t.saturating_add(gap) <= wm,
            out,
        )?;
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
        let spec = &self.spec;
        let tables = rows_table(
            "pending",
            &self.pending,
            &spec.input_schema,
            &spec.partition,
            key_groups,
        )?;
        Ok(Some(StateSnapshot {
            tables: tables.into_iter().collect(),
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
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.bytes
    }
}

super::operator_spec!(SessionAssignSpec, stateful = true, SessionAssign::new);
