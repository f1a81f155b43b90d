//! The description of a windowed aggregation ([`WindowAggSpec`]) and the window geometry
//! ([`WindowKind`]) shared by the sliced (TUMBLE / HOP / CUMULATE) and the session operators.
//!
//! Windows are aligned to the epoch, shifted by the TVF's `OFFSET` argument (Flink's: a
//! 10-minute TUMBLE with a 1-minute offset has windows 08:01–08:11, …). TUMBLE, HOP and
//! CUMULATE windows are unions of
//! *slices* of equal width (TUMBLE: the size; HOP: gcd(size, slide); CUMULATE: the step), so
//! each row is aggregated into exactly one slice, and a window is the merge of its slices'
//! partial states: the cost per row does not grow with size / slide.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::Result;
use crate::message::Timestamp;

/// Window kinds, sizes in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `TUMBLE(.., size)`
    Tumble {
        /// Window size.
        size: i64,
        /// Shift of the windows' alignment from the epoch.
        offset: i64,
    },
    /// `HOP(.., slide, size)`
    Hop {
        /// Distance between window starts.
        slide: i64,
        /// Window size.
        size: i64,
        /// Shift of the windows' alignment from the epoch.
        offset: i64,
    },
    /// `CUMULATE(.., step, max_size)`
    Cumulate {
        /// Growth step.
        step: i64,
        /// Largest window size.
        max_size: i64,
        /// Shift of the windows' alignment from the epoch.
        offset: i64,
    },
    /// `SESSION(.., gap)`
    Session {
        /// Inactivity gap that closes a session.
        gap: i64,
    },
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn floor_to(t: i64, width: i64) -> i64 {
    t - t.rem_euclid(width)
}

impl WindowKind {
    /// Width of the slices windows are made of.
    pub fn slice_width(&self) -> i64 {
        match *self {
            WindowKind::Tumble { size, .. } => size,
            WindowKind::Hop { slide, size, .. } => gcd(size, slide),
            WindowKind::Cumulate { step, .. } => step,
            WindowKind::Session { gap } => gap,
        }
    }

    /// The `OFFSET` the windows are shifted by.
    pub fn offset(&self) -> i64 {
        match *self {
            WindowKind::Tumble { offset, .. }
            | WindowKind::Hop { offset, .. }
            | WindowKind::Cumulate { offset, .. } => offset,
            WindowKind::Session { .. } => 0,
        }
    }

    /// `t` rounded down to a multiple of `width` after the offset.
    fn align(&self, t: Timestamp, width: i64) -> Timestamp {
        let off = self.offset();
        floor_to(t - off, width) + off
    }

    /// Start of the slice holding event time `t`.
    pub fn slice_start(&self, t: Timestamp) -> Timestamp {
        self.align(t, self.slice_width())
    }

    /// End of the last window that contains the slice starting at `s`: once the watermark
    /// passes it, rows of that slice are late for every window.
    pub fn last_window_end(&self, s: Timestamp) -> Timestamp {
        match *self {
            WindowKind::Tumble { size, .. } => s + size,
            WindowKind::Hop { slide, size, .. } => self.align(s, slide) + size,
            WindowKind::Cumulate { max_size, .. } => self.align(s, max_size) + max_size,
            WindowKind::Session { gap } => s + gap,
        }
    }

    /// Ends of all windows that contain the slice starting at `s`, ascending.
    pub fn window_ends(&self, s: Timestamp) -> Vec<Timestamp> {
        match *self {
            WindowKind::Tumble { size, .. } => vec![s + size],
            WindowKind::Hop { slide, size, .. } => {
                let mut ends = Vec::new();
                let mut ws = self.align(s, slide);
                while ws > s - size {
                    ends.push(ws + size);
                    ws -= slide;
                }
                ends.reverse();
                ends
            }
            WindowKind::Cumulate { step, max_size, .. } => {
                let last = self.align(s, max_size) + max_size;
                (1..)
                    .map(|k| s + k * step)
                    .take_while(|e| *e <= last)
                    .collect()
            }
            WindowKind::Session { gap } => vec![s + gap],
        }
    }

    /// Start of the window ending at `end`.
    pub fn window_start(&self, end: Timestamp) -> Timestamp {
        match *self {
            WindowKind::Tumble { size, .. } | WindowKind::Hop { size, .. } => end - size,
            WindowKind::Cumulate { max_size, .. } => self.align(end - 1, max_size),
            WindowKind::Session { gap } => end - gap,
        }
    }
}

impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = |ms: i64| {
            if ms % 1000 == 0 {
                format!("{}s", ms / 1000)
            } else {
                format!("{ms}ms")
            }
        };
        match *self {
            WindowKind::Tumble { size, .. } => write!(f, "TUMBLE(size={}", d(size))?,
            WindowKind::Hop { slide, size, .. } => {
                write!(f, "HOP(slide={}, size={}", d(slide), d(size))?
            }
            WindowKind::Cumulate { step, max_size, .. } => {
                write!(f, "CUMULATE(step={}, max={}", d(step), d(max_size))?
            }
            WindowKind::Session { gap } => write!(f, "SESSION(gap={}", d(gap))?,
        }
        match self.offset() {
            0 => write!(f, ")"),
            off => write!(f, ", offset={})", d(off)),
        }
    }
}

/// Where each GROUP BY expression's output column comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupOut {
    /// The window's start.
    WindowStart,
    /// The window's (exclusive) end.
    WindowEnd,
    /// The window's time attribute: end - 1 ms.
    WindowTime,
    /// The i-th key expression.
    Key(usize),
}

/// A windowed aggregation: `GROUP BY window_start, window_end, keys` with aggregates.
#[derive(Debug, Clone)]
pub struct WindowAggSpec {
    /// Window geometry.
    pub kind: WindowKind,
    /// Event-time column index in the input.
    pub time_col: usize,
    /// Its name (for EXPLAIN).
    pub time_name: String,
    /// Key expressions (GROUP BY items other than window columns; SESSION's partition keys).
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Schema of the key columns.
    pub key_schema: SchemaRef,
    /// Output order of the GROUP BY items.
    pub group_out: Vec<GroupOut>,
    /// Aggregate functions (DataFusion's).
    pub aggs: Vec<Arc<AggregateFunctionExpr>>,
    /// `FILTER (WHERE ...)` of each aggregate.
    pub agg_filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Output schema: GROUP BY items then aggregates.
    pub output_schema: SchemaRef,
    /// Over a TIMESTAMP_LTZ in a session time zone other than UTC: that zone, whose wall clock
    /// window_start and window_end show (TIMESTAMPs, as in Flink; window_time stays an
    /// instant).
    pub local: Option<crate::functions::zone::Zone>,
}

impl fmt::Display for WindowAggSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WindowAggregate: {} on {}", self.kind, self.time_name)?;
        let keys: Vec<String> = self.keys.iter().map(|k| k.to_string()).collect();
        write!(f, ", keys=[{}]", keys.join(", "))?;
        let aggs: Vec<&str> = self.aggs.iter().map(|a| a.name()).collect();
        write!(f, ", aggs=[{}]", aggs.join(", "))?;
        write!(
            f,
            ", fires when the watermark passes window_end; state freed then"
        )
    }
}

impl WindowAggSpec {
    /// Assemble an output batch from window bounds, key columns and aggregate results.
    pub(crate) fn output_batch(
        &self,
        starts: Vec<i64>,
        ends: Vec<i64>,
        keys: &[ArrayRef],
        aggs: Vec<ArrayRef>,
    ) -> Result<RecordBatch> {
        let n = starts.len();
        let (starts, ends_shown) = match &self.local {
            Some(zone) => (
                starts.iter().map(|t| zone.wall_clock_ms(*t)).collect(),
                ends.iter().map(|t| zone.wall_clock_ms(*t)).collect(),
            ),
            None => (starts, ends.clone()),
        };
        let tz_of = |i: usize| match self.output_schema.field(i).data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.output_schema.fields().len());
        for (i, g) in self.group_out.iter().enumerate() {
            let col: ArrayRef = match g {
                GroupOut::WindowStart => Arc::new(
                    TimestampMillisecondArray::from(starts.clone()).with_timezone_opt(tz_of(i)),
                ),
                GroupOut::WindowEnd => Arc::new(
                    TimestampMillisecondArray::from(ends_shown.clone()).with_timezone_opt(tz_of(i)),
                ),
                GroupOut::WindowTime => Arc::new(
                    TimestampMillisecondArray::from(ends.iter().map(|e| e - 1).collect::<Vec<_>>())
                        .with_timezone_opt(tz_of(i)),
                ),
                GroupOut::Key(k) => keys[*k].clone(),
            };
            cols.push(col);
        }
        cols.extend(aggs);
        // Align types with the planned schema (e.g. the nullability or timezone of a key).
        let cols = cols
            .into_iter()
            .zip(self.output_schema.fields())
            .map(|(c, f)| crate::format::cast_to(&c, f.data_type()))
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        Ok(RecordBatch::try_new_with_options(
            self.output_schema.clone(),
            cols,
            &options,
        )?)
    }
}

/// Sessions merge; the other windows are cut into slices.
impl super::OperatorSpec for WindowAggSpec {
    fn instantiate(&self) -> Result<Box<dyn super::Operator>> {
        Ok(match self.kind {
            WindowKind::Session { .. } => Box::new(super::SessionAggregate::new(self.clone())?),
            _ => Box::new(super::SlicedWindowAggregate::new(self.clone())?),
        })
    }

    fn is_stateful(&self) -> bool {
        true
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_slices_and_window_ends() {
        let hop = WindowKind::Hop {
            slide: 2,
            size: 10,
            offset: 0,
        };
        assert_eq!(hop.slice_width(), 2);
        assert_eq!(hop.slice_start(7), 6);
        assert_eq!(hop.window_ends(6), vec![8, 10, 12, 14, 16]);
        assert_eq!(hop.last_window_end(6), 16);
        assert_eq!(hop.window_start(16), 6);
        let odd = WindowKind::Hop {
            slide: 4,
            size: 10,
            offset: 0,
        };
        assert_eq!(odd.slice_width(), 2);
        // slice [6,8) is in windows starting at 4 and 0: ends 14 and 10.
        assert_eq!(odd.window_ends(6), vec![10, 14]);
    }

    #[test]
    fn cumulate_windows() {
        let c = WindowKind::Cumulate {
            step: 2,
            max_size: 6,
            offset: 0,
        };
        assert_eq!(c.window_ends(2), vec![4, 6]);
        assert_eq!(c.window_start(4), 0);
        assert_eq!(c.window_start(8), 6);
        assert_eq!(c.last_window_end(8), 12);
    }

    #[test]
    fn negative_times_align_to_the_epoch() {
        let t = WindowKind::Tumble {
            size: 10,
            offset: 0,
        };
        assert_eq!(t.slice_start(-1), -10);
    }

    #[test]
    fn offsets_shift_the_alignment() {
        // Flink: TUMBLE(.., INTERVAL '10' MINUTES, INTERVAL '1' MINUTES) has windows
        // [08:01, 08:11), …; a negative offset shifts the other way.
        let t = WindowKind::Tumble {
            size: 10,
            offset: 1,
        };
        assert_eq!(t.slice_start(0), -9);
        assert_eq!(t.slice_start(1), 1);
        assert_eq!(t.slice_start(10), 1);
        assert_eq!(t.slice_start(11), 11);
        let neg = WindowKind::Tumble {
            size: 10,
            offset: -1,
        };
        assert_eq!(neg.slice_start(9), 9);
        assert_eq!(neg.slice_start(8), -1);
        let hop = WindowKind::Hop {
            slide: 4,
            size: 8,
            offset: 1,
        };
        assert_eq!(hop.slice_start(6), 5);
        // Windows [1, 9) and [5, 13) hold the slice [5, 9).
        assert_eq!(hop.window_ends(5), vec![9, 13]);
        let c = WindowKind::Cumulate {
            step: 2,
            max_size: 6,
            offset: 1,
        };
        assert_eq!(c.slice_start(2), 1);
        assert_eq!(c.window_ends(1), vec![3, 5, 7]);
        assert_eq!(c.window_start(5), 1);
        assert_eq!(c.last_window_end(3), 7);
    }
}
