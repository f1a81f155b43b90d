//! Live counters of a running job, shared by its tasks and read by the status line.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use crate::message::Timestamp;

/// Counters of one job. All are monotonic except the watermark.
#[derive(Debug)]
pub struct JobMetrics {
    /// Rows read from sources (after decoding).
    pub events_in: AtomicU64,
    /// Rows written to the sink.
    pub rows_out: AtomicU64,
    /// Rows that arrived after their windows fired.
    pub late_rows: AtomicU64,
    /// Records that could not be decoded (or had no event time) and were skipped.
    pub malformed: AtomicU64,
    /// Merged watermark, ms since epoch (i64::MIN: none yet).
    pub watermark: AtomicI64,
    /// Bytes of operator state after the last batch.
    pub state_bytes: AtomicU64,
    /// When the job started.
    pub started: Instant,
}

impl Default for JobMetrics {
    fn default() -> Self {
        Self {
            events_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            late_rows: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            watermark: AtomicI64::new(Timestamp::MIN),
            state_bytes: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

impl JobMetrics {
    /// Add to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Read a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The merged watermark, if any.
    pub fn watermark(&self) -> Option<Timestamp> {
        let wm = self.watermark.load(Ordering::Relaxed);
        (wm != Timestamp::MIN).then_some(wm)
    }
}

/// Format an event time for humans (UTC).
pub fn format_time(ts: Timestamp) -> String {
    if ts == Timestamp::MAX {
        return "+∞ (end of input)".into();
    }
    chrono::DateTime::from_timestamp_millis(ts)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| ts.to_string())
}
