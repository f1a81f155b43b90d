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
    /// Watermark progress at the sources and at the sink, for latency figures (`weir bench`).
    pub trace: Option<LatencyTrace>,
    /// Epoch of the last completed checkpoint (0: none yet).
    pub checkpoint_epoch: AtomicU64,
    /// Its duration, trigger to commit (ms).
    pub checkpoint_ms: AtomicU64,
    /// Its size (bytes of state files).
    pub checkpoint_bytes: AtomicU64,
    /// Its alignment time: trigger to the barrier reaching the sink (ms).
    pub alignment_ms: AtomicU64,
    /// Checkpoints that failed (unwritable directory, timeout).
    pub checkpoint_failures: AtomicU64,
    /// Events read before the checkpoint this run was restored from.
    pub events_before: AtomicU64,
    /// How long restoring took: reading the checkpoint and loading its state into the
    /// operators (ms; 0 for a fresh run).
    pub restore_ms: AtomicU64,
}

/// When watermarks were seen: at the sources (after each batch, with its row count) and at
/// the sink. An event's latency is the time from its batch's ingestion to the moment the sink's
/// watermark passed the end of the first window holding it (windowed queries), or passed the
/// watermark its source had after the batch (any query: by then everything the batch caused
/// has reached the sink, since watermarks travel behind the rows they follow).
#[derive(Debug, Default)]
pub struct LatencyTrace {
    /// (when, source watermark, rows of the batch).
    pub sources: std::sync::Mutex<Vec<(Instant, Timestamp, usize)>>,
    /// (when, sink watermark).
    pub sink: std::sync::Mutex<Vec<(Instant, Timestamp)>>,
}

impl LatencyTrace {
    /// Weighted p50 and p99 (ms) of the latency of events: with `window_ms`, until their
    /// window of that width (aligned to the epoch) closes, when the watermark reaches its end
    /// (`delay_ms` is the sources' watermark delay); without, until the sink's watermark
    /// reaches the source's watermark after their batch. None when no such moment was seen.
    pub fn percentiles(&self, window_ms: Option<i64>, delay_ms: i64) -> Option<(f64, f64)> {
        let sources = self.sources.lock().ok()?;
        let sink = self.sink.lock().ok()?;
        let mut samples: Vec<(f64, usize)> = vec![];
        for (at, wm, rows) in sources.iter() {
            let end = match window_ms {
                Some(w) => {
                    let t = wm.saturating_add(delay_ms);
                    t.div_euclid(w) * w + w
                }
                None => *wm,
            };
            let i = sink.partition_point(|(_, w)| *w < end);
            if let Some((closed, _)) = sink.get(i) {
                samples.push((
                    closed.saturating_duration_since(*at).as_secs_f64() * 1000.0,
                    *rows,
                ));
            }
        }
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: usize = samples.iter().map(|s| s.1).sum();
        let at = |q: f64| {
            let want = (total as f64 * q).ceil() as usize;
            let mut seen = 0;
            for (v, n) in &samples {
                seen += n;
                if seen >= want {
                    return *v;
                }
            }
            samples.last().map_or(0.0, |s| s.0)
        };
        Some((at(0.5), at(0.99)))
    }
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
            trace: None,
            checkpoint_epoch: AtomicU64::new(0),
            checkpoint_ms: AtomicU64::new(0),
            checkpoint_bytes: AtomicU64::new(0),
            alignment_ms: AtomicU64::new(0),
            checkpoint_failures: AtomicU64::new(0),
            events_before: AtomicU64::new(0),
            restore_ms: AtomicU64::new(0),
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
