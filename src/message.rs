//! What flows on every edge of a dataflow: [`Message`], and the event-time type [`Watermark`].
//!
//! Rows are never passed one at a time: data is always an Arrow [`RecordBatch`].

use datafusion::arrow::record_batch::RecordBatch;

/// Event time in milliseconds since the Unix epoch (UTC).
pub type Timestamp = i64;

/// The event time below which no more rows will come on an edge, or "idle".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watermark {
    /// No rows with an event time below this (ms since epoch) will follow.
    EventTime(Timestamp),
    /// The input has been silent for its idle timeout: do not let it hold the watermark back.
    Idle,
}

/// A checkpoint epoch marker (aligned Chandy–Lamport barrier): sources inject it at a
/// position they can resume from, input gates align it, and every task snapshots its
/// operators when it passes (see `runtime::checkpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    /// Checkpoint epoch.
    pub epoch: u64,
}

/// One message on an edge.
#[derive(Debug, Clone)]
pub enum Message {
    /// Rows, typically 1k–8k of them.
    Batch(RecordBatch),
    /// Event-time progress.
    Watermark(Watermark),
    /// Checkpoint barrier.
    Barrier(Barrier),
    /// Bounded input finished: the watermark jumps to +∞ and everything is flushed.
    End,
}
