//! Window assignment for a window TVF used without aggregation
//! (`SELECT * FROM TABLE(TUMBLE(...))`): appends window_start, window_end and window_time.
//! A HOP or CUMULATE row belongs to several windows and is repeated once per window.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use super::window::take_batch;
use super::window_spec::WindowKind;
use super::{Emitter, Operator, time_millis};
use crate::{Result, not_supported};

/// Spec of a window-assigning projection.
#[derive(Debug, Clone)]
pub struct WindowAssignSpec {
    /// TUMBLE, HOP or CUMULATE.
    pub kind: WindowKind,
    /// Event-time column index.
    pub time_col: usize,
    /// Input columns followed by window_start, window_end, window_time.
    pub output_schema: SchemaRef,
    /// The session time zone whose wall clock window_start and window_end show (see
    /// [`super::WindowAggSpec::local`]).
    pub local: Option<crate::functions::zone::Zone>,
}

impl fmt::Display for WindowAssignSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WindowAssign: {}", self.kind)
    }
}

impl Operator for WindowAssignSpec {
    fn name(&self) -> &str {
        "WindowAssign"
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<()> {
        let ts = time_millis(batch.column(self.time_col))?;
        let (rows, starts, ends): (Option<UInt32Array>, Vec<i64>, Vec<i64>) = match self.kind {
            WindowKind::Tumble { size, offset } => {
                let starts: Vec<i64> = ts
                    .iter()
                    .map(|t| t - (t - offset).rem_euclid(size))
                    .collect();
                let ends = starts.iter().map(|s| s + size).collect();
                (None, starts, ends)
            }
            WindowKind::Hop { .. } | WindowKind::Cumulate { .. } => {
                let (mut idx, mut starts, mut ends) = (vec![], vec![], vec![]);
                for (i, &t) in ts.iter().enumerate() {
                    let s = self.kind.slice_start(t);
                    for end in self.kind.window_ends(s) {
                        idx.push(i as u32);
                        starts.push(self.kind.window_start(end));
                        ends.push(end);
                    }
                }
                (Some(UInt32Array::from(idx)), starts, ends)
            }
            WindowKind::Session { .. } => {
                return not_supported!("SESSION windows without aggregation");
            }
        };
        drop(ts);
        let batch = match rows {
            Some(idx) => take_batch(&batch, &idx)?,
            None => batch,
        };
        let n_in = batch.num_columns();
        let tz = |i: usize| match self.output_schema.field(n_in + i).data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let times: Vec<i64> = ends.iter().map(|e| e - 1).collect();
        let (starts, ends) = match &self.local {
            Some(zone) => (
                starts.iter().map(|t| zone.wall_clock_ms(*t)).collect(),
                ends.iter().map(|t| zone.wall_clock_ms(*t)).collect(),
            ),
            None => (starts, ends),
        };
        let mut cols = batch.columns().to_vec();
        for (i, v) in [starts, ends, times].into_iter().enumerate() {
            cols.push(
                Arc::new(TimestampMillisecondArray::from(v).with_timezone_opt(tz(i))) as ArrayRef,
            );
        }
        out.emit(RecordBatch::try_new(self.output_schema.clone(), cols)?);
        Ok(())
    }
}

super::operator_spec!(WindowAssignSpec, stateful = false, Ok::<_, crate::Error>);
