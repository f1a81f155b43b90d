//! The runtime: runs a [`Pipeline`].
//!
//! ```text
//!  shard 0 ─► [watermark gen, stateless ops] ─┐
//!  shard 1 ─► [watermark gen, stateless ops] ─┼─► merge: per-input watermark, min over
//!  shard n ─► [watermark gen, stateless ops] ─┘   non-idle inputs ─► [stateful ops, ...] ─► sink
//! ```
//!
//! Each source shard is a tokio task feeding one bounded channel (backpressure) that the merge
//! loop reads. Operators are called through [`chain::Chain`], which forwards watermarks and
//! routes late rows; operators never see channels. A finished shard counts as watermark +∞;
//! when all have finished the operators see a final +∞ watermark and `on_end`, then the sink is
//! finished. On cancellation the shards stop, open windows are *not* fired (their results
//! would be incomplete), and the sink flushes and closes what it has.
//!
//! Departure from the architecture note: one merge task runs all stateful operators of a job
//! (parallelism 1 after the shards); key-partitioned parallel instances come with joins.

mod chain;
pub mod metrics;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use chain::Chain;
pub use metrics::JobMetrics;

use crate::connectors::{Sink, SourceShard};
use crate::message::{Message, Timestamp, Watermark};
use crate::planner::Pipeline;
use crate::{Error, Result};

/// Everything a running job needs besides its plan.
pub struct RunContext {
    /// Live counters.
    pub metrics: Arc<JobMetrics>,
    /// Flips to true to stop the job.
    pub cancel: watch::Receiver<bool>,
    /// A silent shard becomes idle after this long.
    pub idle_timeout: Option<Duration>,
    /// Where late rows go (None: counted and dropped).
    pub late_sink: Option<Box<dyn Sink>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum InputState {
    Active(Timestamp),
    Idle(Timestamp),
    Ended,
}

/// Min over active inputs; +∞ when all ended. When every live input is idle, the max of
/// their watermarks (as Flink's watermark valve does), so progress already seen is not held.
fn merged_watermark(inputs: &[InputState]) -> Option<Timestamp> {
    let mut min_active = None::<Timestamp>;
    let mut max_idle = None::<Timestamp>;
    for s in inputs {
        match *s {
            InputState::Active(t) => min_active = Some(min_active.map_or(t, |m| m.min(t))),
            InputState::Idle(t) => max_idle = Some(max_idle.map_or(t, |m| m.max(t))),
            InputState::Ended => {}
        }
    }
    match (min_active, max_idle) {
        (Some(t), _) => Some(t),
        (None, Some(t)) => Some(t),
        (None, None) => Some(Timestamp::MAX),
    }
}

type ShardMessage = (usize, Result<Message>);

async fn run_shard(
    index: usize,
    mut shard: Box<dyn SourceShard>,
    mut chain: Chain,
    tx: mpsc::Sender<ShardMessage>,
    mut cancel: watch::Receiver<bool>,
    metrics: Arc<JobMetrics>,
    idle_timeout: Option<Duration>,
) {
    let mut idle = false;
    loop {
        if *cancel.borrow() {
            return;
        }
        let next = tokio::select! {
            biased;
            _ = cancel.changed() => return,
            r = shard.next_batch() => Some(r),
            _ = async {
                match idle_timeout {
                    Some(d) if !idle => tokio::time::sleep(d).await,
                    _ => std::future::pending::<()>().await,
                }
            } => None,
        };
        let result = match next {
            None => {
                idle = true;
                if tx.send((index, Ok(Message::Watermark(Watermark::Idle)))).await.is_err() {
                    return;
                }
                continue;
            }
            Some(r) => r,
        };
        idle = false;
        let batch = match result {
            Ok(Some(b)) => b,
            Ok(None) => {
                let _ = tx.send((index, Ok(Message::End))).await;
                return;
            }
            Err(e) => {
                let _ = tx.send((index, Err(e))).await;
                return;
            }
        };
        JobMetrics::add(&metrics.events_in, batch.num_rows() as u64);
        let out = match chain.push(Message::Batch(batch)) {
            Ok(out) => out,
            Err(e) => {
                let _ = tx.send((index, Err(e))).await;
                return;
            }
        };
        JobMetrics::add(&metrics.malformed, chain.take_malformed());
        for m in out {
            if tx.send((index, Ok(m))).await.is_err() {
                return;
            }
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// All bounded input was processed.
    Finished,
    /// Stopped by cancellation (Ctrl-C, SIGTERM, `Job::cancel`).
    Stopped,
}

/// Run a pipeline to completion (bounded input) or until cancelled.
pub async fn run(pipeline: &Pipeline, shards: Vec<Box<dyn SourceShard>>, mut sink: Box<dyn Sink>, ctx: RunContext) -> Result<Outcome> {
    let RunContext { metrics, cancel, idle_timeout, mut late_sink } = ctx;
    let n = shards.len();
    let (tx, mut rx) = mpsc::channel::<ShardMessage>(4 + 2 * n);
    let mut tasks = Vec::with_capacity(n);
    for (i, shard) in shards.into_iter().enumerate() {
        let chain = Chain::new(&pipeline.shard_ops)?;
        tasks.push(tokio::spawn(run_shard(i, shard, chain, tx.clone(), cancel.clone(), metrics.clone(), idle_timeout)));
    }
    drop(tx);
    let _abort_on_exit = AbortOnDrop(tasks);

    let mut chain = Chain::new(&pipeline.merged_ops)?;
    let mut inputs = vec![InputState::Active(Timestamp::MIN); n];
    let mut current = Timestamp::MIN;
    let mut cancel = cancel;
    let mut tick = tokio::time::interval(Duration::from_millis(sink.tick_interval_ms().max(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut outcome = Outcome::Finished;
    if n == 0 {
        inputs.clear();
    }
    loop {
        let msg = tokio::select! {
            biased;
            _ = cancel.changed() => { outcome = Outcome::Stopped; break }
            m = rx.recv() => m,
            _ = tick.tick() => {
                metrics.state_bytes.store(chain.state_size() as u64, std::sync::atomic::Ordering::Relaxed);
                sink.tick().await?;
                continue
            }
        };
        let Some((i, msg)) = msg else {
            // Every shard task is gone: all ended (handled below) or stopped by cancellation.
            if *cancel.borrow() {
                outcome = Outcome::Stopped;
            }
            break;
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => return Err(with_source(e, pipeline)),
        };
        let forward = match msg {
            Message::Batch(b) => Some(Message::Batch(b)),
            Message::Watermark(Watermark::EventTime(t)) => {
                inputs[i] = InputState::Active(t);
                None
            }
            Message::Watermark(Watermark::Idle) => {
                if let InputState::Active(t) = inputs[i] {
                    inputs[i] = InputState::Idle(t);
                }
                None
            }
            Message::End => {
                inputs[i] = InputState::Ended;
                None
            }
            Message::Barrier(_) => None,
        };
        let mut to_sink = match forward {
            Some(m) => chain.push(m)?,
            None => vec![],
        };
        if let Some(wm) = merged_watermark(&inputs) {
            if wm > current {
                current = wm;
                metrics.watermark.store(wm, std::sync::atomic::Ordering::Relaxed);
                to_sink.extend(chain.push(Message::Watermark(Watermark::EventTime(wm)))?);
            }
        }
        deliver(&mut chain, to_sink, sink.as_mut(), late_sink.as_mut(), &metrics).await?;
        if inputs.iter().all(|s| *s == InputState::Ended) {
            break;
        }
    }
    if outcome == Outcome::Finished {
        if current < Timestamp::MAX {
            let out = chain.push(Message::Watermark(Watermark::EventTime(Timestamp::MAX)))?;
            deliver(&mut chain, out, sink.as_mut(), late_sink.as_mut(), &metrics).await?;
        }
        let out = chain.push(Message::End)?;
        deliver(&mut chain, out, sink.as_mut(), late_sink.as_mut(), &metrics).await?;
    }
    sink.finish().await?;
    if let Some(late) = late_sink.as_mut() {
        late.finish().await?;
    }
    Ok(outcome)
}

async fn deliver(
    chain: &mut Chain,
    out: Vec<Message>,
    sink: &mut dyn Sink,
    late_sink: Option<&mut Box<dyn Sink>>,
    metrics: &JobMetrics,
) -> Result<()> {
    for m in out {
        if let Message::Batch(b) = m {
            JobMetrics::add(&metrics.rows_out, b.num_rows() as u64);
            sink.write_batch(b).await?;
        }
    }
    JobMetrics::add(&metrics.malformed, chain.take_malformed());
    let late = chain.take_late();
    if !late.is_empty() {
        let rows: usize = late.iter().map(|b| b.num_rows()).sum();
        JobMetrics::add(&metrics.late_rows, rows as u64);
        if let Some(late_sink) = late_sink {
            for b in late {
                late_sink.write_batch(b).await?;
            }
        }
    }
    Ok(())
}

fn with_source(e: Error, pipeline: &Pipeline) -> Error {
    match e {
        Error::Io { context, source } => Error::Io { context: format!("source {}: {context}", pipeline.source.def.name), source },
        other => other,
    }
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_is_min_over_active_inputs() {
        use InputState::*;
        assert_eq!(merged_watermark(&[Active(5), Active(3)]), Some(3));
        assert_eq!(merged_watermark(&[Active(5), Idle(3)]), Some(5));
        assert_eq!(merged_watermark(&[Idle(5), Idle(3)]), Some(5));
        assert_eq!(merged_watermark(&[Ended, Active(7)]), Some(7));
        assert_eq!(merged_watermark(&[Ended, Ended]), Some(Timestamp::MAX));
    }
}
