//! Stage tasks: an instance of a stage is an [`InputGate`] over its producers and a
//! [`StageBody`], its chain of operators, run by [`run_task`].

use std::sync::atomic::Ordering;

use super::checkpoint::Ack;
use super::gate::InputGate;
use super::task::{Step, TaskBody, TaskEvent, run_task};
use super::{Chain, OutputExchange, TaskEnv};
use crate::message::{Message, Watermark};
use crate::state::KeyGroupRange;
use crate::{Error, Result};

/// A stage instance's operators, router and checkpoint identity.
pub(super) struct StageBody {
    pub(super) chain: Chain,
    pub(super) router: Box<dyn OutputExchange>,
    pub(super) env: TaskEnv,
    /// Task number, for checkpoint acknowledgements.
    pub(super) task: usize,
    /// Per operator of the chain: its state id (None for stateless operators).
    pub(super) op_ids: Vec<Option<String>>,
    /// The key groups this instance owns.
    pub(super) range: KeyGroupRange,
    /// State size last added to the job's metrics.
    pub(super) reported_state: u64,
}

impl StageBody {
    /// Snapshot every stateful operator for the checkpoint coordinator.
    fn snapshot(&mut self, epoch: u64) -> Result<()> {
        let snaps = self.chain.snapshot(self.env.key_groups)?;
        let ops = snaps
            .into_iter()
            .zip(&self.op_ids)
            .filter_map(|(s, id)| Some((id.clone()?, self.range, s?)))
            .collect();
        let _ = self.env.acks.send(Ack::Stage {
            task: self.task,
            epoch,
            ops,
        });
        crate::failpoint!("after-snapshot");
        Ok(())
    }

    fn report_state(&mut self) {
        let size = self.chain.state_size() as u64;
        self.env
            .metrics
            .state_bytes
            .fetch_add(size.wrapping_sub(self.reported_state), Ordering::Relaxed);
        self.reported_state = size;
    }
}

impl TaskBody for StageBody {
    type Output = ();
    type Mail = ();
    const MAILBOX: bool = false;

    async fn on_event(&mut self, ev: TaskEvent) -> Result<Step<()>> {
        let mut done = false;
        let out = match ev {
            TaskEvent::Batch { port, rows, .. } => self.chain.push(port, Message::Batch(rows))?,
            TaskEvent::Watermark(wm) => {
                let out = self
                    .chain
                    .push(0, Message::Watermark(Watermark::EventTime(wm)))?;
                self.report_state();
                out
            }
            TaskEvent::Idle => vec![Message::Watermark(Watermark::Idle)],
            TaskEvent::Barrier { barrier, .. } => {
                self.snapshot(barrier.epoch)?;
                vec![Message::Barrier(barrier)]
            }
            TaskEvent::End { .. } => {
                done = true;
                self.chain.push(0, Message::End)?
            }
            TaskEvent::SplitStarted(_) | TaskEvent::SplitsEnded(_) => vec![],
        };
        self.env.drain(&mut self.chain).await;
        for m in out {
            self.router.send(m).await?;
        }
        if !done {
            return Ok(Step::Continue);
        }
        self.env
            .metrics
            .state_bytes
            .fetch_sub(self.reported_state, Ordering::Relaxed);
        let _ = self.env.acks.send(Ack::Finished {
            task: self.task,
            shards: vec![],
        });
        Ok(Step::Done(()))
    }
}

/// A stage instance's task.
pub(super) async fn run_stage(mut gate: InputGate, mut body: StageBody) {
    let mut cancel = body.env.cancel.clone();
    if let Err(e) = run_task(&mut gate, &mut body, &mut cancel).await
        && !matches!(e, Error::Cancelled)
    {
        body.env.fail(e).await;
    }
}
