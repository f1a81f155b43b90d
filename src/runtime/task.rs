//! The one task loop that runs every task of a job: source shards, stage instances and the sink.
//!
//! ```text
//!   TaskInput::next ──► TaskEvent ──► TaskBody::on_event ──► operators ──► OutputExchange
//!   (an InputGate, or                  (a source's per-shard chains,
//!    a source shard's reader)           a stage's chain, the sink)
//!                        TaskBody::mail ──► TaskBody::on_mail   (timers, checkpoint
//!                                                                coordination: the sink)
//! ```
//!
//! A task is an *input* and a *body*. The input decides what happens next: an
//! [`InputGate`](super::gate::InputGate) merges a stage's or the sink's channels (watermarks,
//! idleness, aligned barriers); a source's [`Reader`](super::source::Reader) reads its shard,
//! waits for watermark alignment and injects barriers at record boundaries. The body reacts:
//! it pushes rows and watermarks through its operators, snapshots them on a barrier and hands
//! what comes out to its exchange. Work that is not input, such as the sink's timers and the
//! checkpoint coordinator's acknowledgements, comes through the body's *mailbox*, which is
//! served before the input (as in Flink's mailbox model), so a busy input never starves it.
//! Cancellation is checked first of all. A body without a mailbox (sources, stages) has its
//! input tried first when an event is ready, which spares registering for cancellation per
//! batch; cancellation is still looked at before each event.
//!
//! [`run_task`] is the loop; the three kinds of task differ only in their input and body.

use std::future::Future;

use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;
use tokio::sync::watch;

use super::gate::{GateEvent, InputGate};
use crate::message::{Barrier, Timestamp};
use crate::{Error, Result};

/// What a task's input hands its body.
#[derive(Debug)]
pub(crate) enum TaskEvent {
    /// Rows on input `port`; from a source, rows of `split` when its shard reads several.
    Batch {
        port: usize,
        split: Option<u64>,
        rows: RecordBatch,
    },
    /// A source split was announced: it holds the watermark back until it has rows.
    SplitStarted(u64),
    /// Source splits ended: they no longer hold the watermark back.
    SplitsEnded(Vec<u64>),
    /// The input's watermark advanced.
    Watermark(Timestamp),
    /// Every input is idle (a source: its shard had nothing for its idle timeout).
    Idle,
    /// Barrier aligned over every input. A source names the position it was taken at.
    Barrier {
        barrier: Barrier,
        position: Option<Value>,
    },
    /// Every input has ended. A source names its final position, if it has one.
    End { position: Option<Value> },
}

impl From<GateEvent> for TaskEvent {
    fn from(ev: GateEvent) -> Self {
        match ev {
            GateEvent::Batch(port, rows) => TaskEvent::Batch {
                port,
                split: None,
                rows,
            },
            GateEvent::Watermark(wm) => TaskEvent::Watermark(wm),
            GateEvent::Idle => TaskEvent::Idle,
            GateEvent::Barrier(barrier) => TaskEvent::Barrier {
                barrier,
                position: None,
            },
            GateEvent::End => TaskEvent::End { position: None },
        }
    }
}

/// Where a task's events come from.
pub(crate) trait TaskInput: Send {
    /// The next event. `Ok(None)`: the inputs went away without an end (the producing tasks
    /// stopped: the job is being cancelled or has failed). Must be cancel-safe: the loop
    /// drops the future when mail or cancellation comes first.
    fn next(&mut self) -> impl Future<Output = Result<Option<TaskEvent>>> + Send;

    /// Whether a `next` that is not ready may be dropped and started again at no cost (a
    /// channel; not a network read that would be sent again).
    fn retry_is_cheap(&self) -> bool {
        true
    }
}

impl TaskInput for InputGate {
    async fn next(&mut self) -> Result<Option<TaskEvent>> {
        Ok(InputGate::next(self).await.map(TaskEvent::from))
    }
}

/// Whether a task goes on after an event.
pub(crate) enum Step<T> {
    Continue,
    Done(T),
}

/// What a task does with its events.
pub(crate) trait TaskBody: Send {
    /// What the task returns when it is done.
    type Output;
    /// Work besides the input (see the module doc).
    type Mail: Send;
    /// Whether the body has a mailbox at all (else its input is tried first, without racing
    /// it against mail).
    const MAILBOX: bool = true;

    /// The next piece of mail; never ready by default. Must be cancel-safe.
    fn mail(&mut self) -> impl Future<Output = Self::Mail> + Send {
        std::future::pending()
    }

    /// Handle a piece of mail.
    fn on_mail(
        &mut self,
        _mail: Self::Mail,
    ) -> impl Future<Output = Result<Step<Self::Output>>> + Send {
        async { Ok(Step::Continue) }
    }

    /// Handle an input event.
    fn on_event(
        &mut self,
        ev: TaskEvent,
    ) -> impl Future<Output = Result<Step<Self::Output>>> + Send;

    /// The inputs went away without an end.
    fn on_closed(&mut self) -> Result<Self::Output> {
        Err(Error::Cancelled)
    }
}

/// The task loop: cancellation first, then mail, then input, until the body is done.
pub(crate) async fn run_task<I: TaskInput, B: TaskBody>(
    input: &mut I,
    body: &mut B,
    cancel: &mut watch::Receiver<bool>,
) -> Result<B::Output> {
    enum Next<M> {
        Cancelled,
        Mail(M),
        Event(Result<Option<TaskEvent>>),
    }
    use futures::FutureExt;
    loop {
        // Without a mailbox, an input with an event ready is served at once (after a look at
        // cancellation), without registering for cancellation and mail: the common case of a
        // busy stage or source, and cheaper per batch than racing them.
        let ready = if B::MAILBOX || !input.retry_is_cheap() {
            None
        } else if cancel.has_changed().unwrap_or(true) {
            Some(Next::Cancelled)
        } else {
            input.next().now_or_never().map(Next::Event)
        };
        let next = match ready {
            Some(next) => next,
            None => tokio::select! {
                biased;
                _ = cancel.changed() => Next::Cancelled,
                mail = body.mail() => Next::Mail(mail),
                ev = input.next() => Next::Event(ev),
            },
        };
        let step = match next {
            Next::Cancelled => return Err(Error::Cancelled),
            Next::Mail(mail) => body.on_mail(mail).await?,
            Next::Event(ev) => match ev? {
                Some(ev) => body.on_event(ev).await?,
                None => return body.on_closed(),
            },
        };
        if let Step::Done(out) = step {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::test_util::int_batch;
    use tokio::sync::mpsc;

    /// An input that always has rows, up to `left`, then ends.
    struct Busy {
        left: usize,
    }

    impl TaskInput for Busy {
        async fn next(&mut self) -> Result<Option<TaskEvent>> {
            if self.left == 0 {
                return Ok(Some(TaskEvent::End { position: None }));
            }
            self.left -= 1;
            Ok(Some(TaskEvent::Batch {
                port: 0,
                split: None,
                rows: int_batch(&[1]),
            }))
        }
    }

    /// Counts rows; records at which row count each piece of mail was handled.
    struct Counter {
        rows: usize,
        mail: mpsc::UnboundedReceiver<u32>,
        handled: Vec<(u32, usize)>,
    }

    impl TaskBody for Counter {
        type Output = usize;
        type Mail = Option<u32>;

        async fn mail(&mut self) -> Option<u32> {
            self.mail.recv().await
        }

        async fn on_mail(&mut self, mail: Option<u32>) -> Result<Step<usize>> {
            match mail {
                Some(m) => self.handled.push((m, self.rows)),
                None => return Ok(Step::Done(self.rows)),
            }
            Ok(Step::Continue)
        }

        async fn on_event(&mut self, ev: TaskEvent) -> Result<Step<usize>> {
            match ev {
                TaskEvent::Batch { .. } => self.rows += 1,
                TaskEvent::End { .. } => return Ok(Step::Done(self.rows)),
                _ => {}
            }
            Ok(Step::Continue)
        }
    }

    /// Mail waiting is served before more input: a busy input never starves timers and
    /// checkpoint coordination.
    #[tokio::test]
    async fn mail_comes_before_input() {
        let (tx, rx) = mpsc::unbounded_channel();
        let (_cancel_tx, mut cancel) = watch::channel(false);
        tx.send(7).unwrap();
        let mut body = Counter {
            rows: 0,
            mail: rx,
            handled: vec![],
        };
        let rows = run_task(&mut Busy { left: 5 }, &mut body, &mut cancel)
            .await
            .unwrap();
        assert_eq!(body.handled, vec![(7, 0)]);
        assert_eq!(rows, 5);
    }

    /// Cancellation comes first of all, even with mail and input waiting.
    #[tokio::test]
    async fn cancellation_comes_first() {
        let (tx, rx) = mpsc::unbounded_channel();
        let (cancel_tx, mut cancel) = watch::channel(false);
        tx.send(1).unwrap();
        cancel_tx.send(true).unwrap();
        let mut body = Counter {
            rows: 0,
            mail: rx,
            handled: vec![],
        };
        let r = run_task(&mut Busy { left: 5 }, &mut body, &mut cancel).await;
        assert!(matches!(r, Err(Error::Cancelled)));
        assert!(body.handled.is_empty() && body.rows == 0);
    }
}
