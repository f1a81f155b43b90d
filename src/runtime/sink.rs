//! The sink task: an [`InputGate`] over the last stage's instances and a [`SinkDriver`], run
//! by [`run_task`]. The driver writes what arrives and coordinates checkpoints: its mailbox
//! holds the tasks' acknowledgements and failures, the checkpoint timer, the background writes
//! of checkpoints, checkpoint and stop requests, and the sink's own tick (file rolling).
//!
//! On a barrier the sink pre-commits its output; once the coordinator has every task's
//! snapshot it writes the checkpoint in the background, and when the epoch record exists the
//! sink publishes (see [`super::checkpoint`]). When every input has ended, a final checkpoint
//! publishes everything.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, oneshot, watch};

use super::checkpoint::{self, Ack, BarrierRequest, Coordinator};
use super::gate::InputGate;
use super::task::{Step, TaskBody, TaskEvent, run_task};
use super::{Control, JobMetrics, Outcome};
use crate::connectors::Sink;
use crate::message::Timestamp;
use crate::{Error, Result};

type ManifestFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<crate::state::store::Manifest>> + Send>,
>;

/// Answers to `Job::checkpoint`: the epoch once committed.
pub(super) type CheckpointWaiter = oneshot::Sender<Result<u64>>;

/// The sink task's body: writes what the last stage emits, and coordinates checkpoints.
pub(super) struct SinkDriver<'a> {
    sink: &'a mut Box<dyn Sink>,
    late_sink: &'a mut Option<Box<dyn Sink>>,
    metrics: &'a Arc<JobMetrics>,
    coordinator: Option<&'a mut Coordinator>,
    barriers: watch::Sender<BarrierRequest>,
    completed: watch::Sender<u64>,
    sink_watermark: Timestamp,
    cancel: watch::Receiver<bool>,
    /// Stop with a final checkpoint when this flips.
    stop: Option<watch::Receiver<bool>>,
    /// Checkpoint-now requests.
    now: Option<mpsc::Receiver<CheckpointWaiter>>,
    control_rx: &'a mut mpsc::Receiver<Control>,
    ack_rx: &'a mut mpsc::UnboundedReceiver<Ack>,
    tick: tokio::time::Interval,
    timer: tokio::time::Interval,
    /// The checkpoint being written in the background.
    writing: Option<(checkpoint::Writing, ManifestFuture)>,
    /// Checkpoint-now requests waiting for the next commit.
    waiters: Vec<CheckpointWaiter>,
    stop_requested: bool,
}

/// The sink driver's mail.
pub(super) enum SinkMail {
    Control(Control),
    Ack(Ack),
    Written(Result<crate::state::store::Manifest>),
    Tick,
    Timer,
    CheckpointNow(CheckpointWaiter),
    Stop,
}

/// Wait for `stop` to flip (never, without one).
async fn stop_flipped(stop: &mut Option<watch::Receiver<bool>>) {
    match stop.as_mut() {
        Some(s) => {
            if s.wait_for(|v| *v).await.is_err() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending().await,
    }
}

/// The sink task's channels to the rest of the job.
pub(super) struct SinkControls<'a> {
    /// Barrier requests to the sources.
    pub(super) barriers: watch::Sender<BarrierRequest>,
    /// Completed checkpoints, for the sources.
    pub(super) completed: watch::Sender<u64>,
    pub(super) cancel: watch::Receiver<bool>,
    /// Stop with a final checkpoint when this flips.
    pub(super) stop: Option<watch::Receiver<bool>>,
    /// Checkpoint-now requests.
    pub(super) now: Option<mpsc::Receiver<CheckpointWaiter>>,
    /// Late rows and failures from the tasks.
    pub(super) control_rx: &'a mut mpsc::Receiver<Control>,
    /// The tasks' checkpoint acknowledgements.
    pub(super) ack_rx: &'a mut mpsc::UnboundedReceiver<Ack>,
}

impl<'a> SinkDriver<'a> {
    pub(super) fn new(
        sink: &'a mut Box<dyn Sink>,
        late_sink: &'a mut Option<Box<dyn Sink>>,
        metrics: &'a Arc<JobMetrics>,
        coordinator: Option<&'a mut Coordinator>,
        controls: SinkControls<'a>,
    ) -> Self {
        let mut tick =
            tokio::time::interval(Duration::from_millis(sink.tick_interval_ms().max(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let interval = coordinator
            .as_ref()
            .map_or(Duration::from_secs(3600), |c| c.cp.config.interval);
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let SinkControls {
            barriers,
            completed,
            cancel,
            stop,
            now,
            control_rx,
            ack_rx,
        } = controls;
        Self {
            sink,
            late_sink,
            metrics,
            coordinator,
            barriers,
            completed,
            sink_watermark: Timestamp::MIN,
            cancel,
            stop,
            now,
            control_rx,
            ack_rx,
            tick,
            timer,
            writing: None,
            waiters: vec![],
            stop_requested: false,
        }
    }

    /// Run the sink task until the end of input, a stop or a failure.
    pub(super) async fn run(&mut self, mut gate: InputGate) -> Result<Outcome> {
        let mut cancel = self.cancel.clone();
        match run_task(&mut gate, self, &mut cancel).await {
            Err(Error::Cancelled) => Ok(Outcome::Stopped),
            r => r,
        }
    }

    fn checkpointing(&self) -> bool {
        self.coordinator.is_some()
    }

    /// A checkpoint's files were written (or failed to be).
    async fn written(&mut self, r: Result<crate::state::store::Manifest>) -> Result<Step<Outcome>> {
        let Some((w, _)) = self.writing.take() else {
            return Ok(Step::Continue);
        };
        let done = self.committed(w, r).await;
        let stopped = matches!(done, Ok(Some(true)));
        for tx in self.waiters.drain(..) {
            let _ = tx.send(match &done {
                Ok(Some(_)) => Ok(JobMetrics::get(&self.metrics.checkpoint_epoch)),
                Ok(None) => Err(Error::Execution {
                    operator: "checkpoint".into(),
                    message: "the checkpoint failed".into(),
                }),
                Err(e) => Err(Error::Execution {
                    operator: "checkpoint".into(),
                    message: e.to_string(),
                }),
            });
        }
        done?;
        if stopped {
            return Ok(Step::Done(Outcome::Stopped));
        }
        if self.stop_requested && !self.coordinator.as_deref().is_some_and(|c| c.stopping()) {
            self.trigger(true);
        }
        Ok(Step::Continue)
    }

    /// The checkpoint timer: give up a checkpoint that timed out, start one that is due.
    fn timer_fired(&mut self) -> Result<()> {
        let (due, timed_out) = self
            .coordinator
            .as_deref()
            .map_or((false, false), |c| (c.due(), c.timed_out()));
        if timed_out
            && self.writing.is_none()
            && let Some(c) = self.coordinator.as_deref_mut()
            && let Some(epoch) = c.abandon()
        {
            c.failed(
                epoch,
                &Error::Execution {
                    operator: "checkpoint".into(),
                    message: "timed out ('execution.checkpointing.timeout')".into(),
                },
            )?;
            JobMetrics::add(&self.metrics.checkpoint_failures, 1);
        }
        if due && self.writing.is_none() {
            self.trigger(false);
        }
        Ok(())
    }

    /// Bounded input ended: a final checkpoint publishes everything.
    async fn finish(&mut self) -> Result<Outcome> {
        // Late rows or errors reported just before the end.
        while let Ok(c) = self.control_rx.try_recv() {
            match c {
                Control::Failed(e) => return Err(e),
                Control::Late(batches) => write_late(self.late_sink, batches).await?,
            }
        }
        if let Some((w, f)) = self.writing.take() {
            let r = f.await;
            self.committed(w, r).await?;
        }
        while let Ok(ack) = self.ack_rx.try_recv() {
            if let Some(c) = self.coordinator.as_deref_mut() {
                c.on_ack(ack);
            }
        }
        if let Some(c) = self.coordinator.as_deref_mut() {
            c.abandon();
            let epoch = c.next_epoch();
            if let Some(late) = self.late_sink.as_mut() {
                late.flush().await?;
            }
            let info = self.sink.pre_commit(epoch).await?;
            let (epoch, job) = c.final_checkpoint(info.clone());
            let started = std::time::Instant::now();
            let r = job.await;
            let w = checkpoint::Writing {
                epoch,
                started,
                aligned_ms: 0,
                stop: false,
                sink: info,
            };
            if self.committed(w, r).await?.is_none() {
                return Err(Error::Execution {
                    operator: "checkpoint".into(),
                    message: "the final checkpoint could not be written: the output of this \
                              run is not published; run the job again to resume"
                        .into(),
                });
            }
        }
        for tx in self.waiters.drain(..) {
            let _ = tx.send(Ok(JobMetrics::get(&self.metrics.checkpoint_epoch)));
        }
        Ok(Outcome::Finished)
    }

    fn trigger(&mut self, stop: bool) {
        if let Some(c) = self.coordinator.as_deref_mut() {
            let req = c.trigger(stop);
            let _ = self.barriers.send(req);
        }
    }

    fn watermark(&mut self, wm: Timestamp) {
        if wm > self.sink_watermark {
            self.sink_watermark = wm;
            if wm < Timestamp::MAX {
                self.metrics.watermark.fetch_max(wm, Ordering::Relaxed);
                self.sink.on_watermark(wm);
            }
            if let Some(trace) = &self.metrics.trace
                && let Ok(mut t) = trace.sink.lock()
            {
                t.push((std::time::Instant::now(), wm));
            }
        }
    }

    /// A checkpoint's files are written (or failed): publish the sink's epoch and mark it
    /// committed. `Ok(Some(stop))` when committed; `Ok(None)` when it failed tolerably.
    async fn committed(
        &mut self,
        w: checkpoint::Writing,
        r: Result<crate::state::store::Manifest>,
    ) -> Result<Option<bool>> {
        let Some(c) = self.coordinator.as_deref_mut() else {
            return Ok(None);
        };
        let manifest = match r {
            Ok(m) => m,
            Err(e) => {
                JobMetrics::add(&self.metrics.checkpoint_failures, 1);
                // Its output is published by the next checkpoint that completes.
                c.carry(w.sink);
                c.failed(w.epoch, &e)?;
                return Ok(None);
            }
        };
        // The epoch record exists: the checkpoint is complete. Publishing is idempotent, so
        // a crash from here on is repaired by the restore replaying this commit.
        self.sink.commit(w.epoch, w.sink).await?;
        crate::failpoint!("sink-after-commit");
        c.committed(w.epoch).await?;
        let _ = self.completed.send(w.epoch);
        let m = self.metrics;
        m.checkpoint_epoch.store(w.epoch, Ordering::Relaxed);
        m.checkpoint_ms
            .store(w.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        m.checkpoint_bytes
            .store(manifest.bytes as u64, Ordering::Relaxed);
        m.alignment_ms.store(w.aligned_ms, Ordering::Relaxed);
        Ok(Some(w.stop))
    }
}

impl TaskBody for SinkDriver<'_> {
    type Output = Outcome;
    type Mail = SinkMail;

    async fn mail(&mut self) -> SinkMail {
        // Start writing a checkpoint every task acknowledged.
        if self.writing.is_none()
            && let Some(c) = self.coordinator.as_deref_mut()
            && let Some((w, job)) = c.take_complete()
        {
            self.writing = Some((w, Box::pin(job)));
        }
        let checkpointing = self.checkpointing();
        let Self {
            control_rx,
            ack_rx,
            writing,
            tick,
            timer,
            now,
            stop,
            stop_requested,
            ..
        } = self;
        tokio::select! {
            biased;
            Some(c) = control_rx.recv() => SinkMail::Control(c),
            Some(ack) = ack_rx.recv() => SinkMail::Ack(ack),
            r = async {
                match writing.as_mut() {
                    Some((_, f)) => f.await,
                    None => std::future::pending().await,
                }
            } => SinkMail::Written(r),
            _ = tick.tick() => SinkMail::Tick,
            _ = timer.tick(), if checkpointing => SinkMail::Timer,
            Some(tx) = async {
                match now.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => SinkMail::CheckpointNow(tx),
            _ = stop_flipped(stop), if !*stop_requested => SinkMail::Stop,
        }
    }

    async fn on_mail(&mut self, mail: SinkMail) -> Result<Step<Outcome>> {
        match mail {
            SinkMail::Control(Control::Failed(e)) => return Err(e),
            SinkMail::Control(Control::Late(batches)) => {
                write_late(self.late_sink, batches).await?
            }
            SinkMail::Ack(ack) => {
                if let Some(c) = self.coordinator.as_deref_mut() {
                    c.on_ack(ack);
                }
            }
            SinkMail::Written(r) => return self.written(r).await,
            SinkMail::Tick => self.sink.tick().await?,
            SinkMail::Timer => self.timer_fired()?,
            SinkMail::CheckpointNow(tx) => {
                if !self.checkpointing() {
                    let _ = tx.send(Err(Error::Plan(
                        "checkpointing is off: set 'state.checkpoints.dir'".into(),
                    )));
                } else {
                    self.waiters.push(tx);
                    if self.writing.is_none()
                        && self.coordinator.as_deref().is_some_and(|c| c.due())
                    {
                        self.trigger(false);
                    }
                }
            }
            SinkMail::Stop => {
                self.stop_requested = true;
                self.stop = None;
                if !self.checkpointing() {
                    return Ok(Step::Done(Outcome::Stopped));
                }
                if self.writing.is_none() {
                    if let Some(c) = self.coordinator.as_deref_mut() {
                        c.abandon();
                    }
                    self.trigger(true);
                }
            }
        }
        Ok(Step::Continue)
    }

    async fn on_event(&mut self, ev: TaskEvent) -> Result<Step<Outcome>> {
        match ev {
            TaskEvent::Batch { port, rows, .. } => {
                JobMetrics::add(&self.metrics.rows_out, rows.num_rows() as u64);
                self.sink.write_batch_at(port, rows).await?;
            }
            TaskEvent::Watermark(wm) => self.watermark(wm),
            TaskEvent::Barrier { barrier, .. } => {
                // Late rows go out at least once: delivered before the checkpoint.
                if let Some(late) = self.late_sink.as_mut() {
                    late.flush().await?;
                }
                let info = self.sink.pre_commit(barrier.epoch).await?;
                crate::failpoint!("sink-after-pre-commit");
                if let Some(c) = self.coordinator.as_deref_mut() {
                    c.on_sink(barrier.epoch, info);
                }
            }
            TaskEvent::End { .. } => return Ok(Step::Done(self.finish().await?)),
            TaskEvent::Idle | TaskEvent::SplitStarted(_) | TaskEvent::SplitsEnded(_) => {}
        }
        Ok(Step::Continue)
    }

    fn on_closed(&mut self) -> Result<Outcome> {
        if *self.cancel.borrow() {
            return Ok(Outcome::Stopped);
        }
        // A task stopped without End: its failure is on the control channel.
        if let Ok(Control::Failed(e)) = self.control_rx.try_recv() {
            return Err(e);
        }
        Err(Error::Execution {
            operator: "runtime".into(),
            message: "every task stopped before the end of input".into(),
        })
    }
}

/// Late rows go to the late-data table, if the job has one.
async fn write_late(
    late_sink: &mut Option<Box<dyn Sink>>,
    batches: Vec<RecordBatch>,
) -> Result<()> {
    if let Some(late) = late_sink.as_mut() {
        for b in batches {
            late.write_batch(b).await?;
        }
    }
    Ok(())
}
