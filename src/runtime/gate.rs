//! The input gate: one receiver per input of a task, watermark merging and barrier alignment.
//!
//! ```text
//!   input 0 ─┐                      ┌─ Batch(port, rows)
//!   input 1 ─┼─► InputGate::next ───┼─ Watermark(min over non-idle inputs; ended = +∞)
//!   input n ─┘   (round robin over  ├─ Idle (every live input idle)
//!                 unblocked inputs) ├─ Barrier(n) once every live input delivered it
//!                                   └─ End (every input ended)
//! ```
//!
//! Alignment (exactly-once): an input that delivered barrier n is *blocked*: the gate stops
//! reading it, while the other inputs keep flowing, until barrier n has come on every input
//! that has not ended. A finished input counts as having delivered every later barrier. Then
//! the gate hands out `Barrier(n)` once and unblocks every input. With at-least-once
//! checkpoints nothing is blocked: the barrier is handed out when the last input delivers it.
//!
//! Alignment is written here once; the task loops of stages and of the sink only react to
//! what the gate hands them.

use std::future::poll_fn;
use std::task::Poll;

use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;

use crate::message::{Barrier, Message, Timestamp, Watermark};

/// What the gate hands its task.
#[derive(Debug)]
pub(crate) enum GateEvent {
    /// Rows from input port `port`.
    Batch(usize, RecordBatch),
    /// The merged watermark advanced.
    Watermark(Timestamp),
    /// Every live input is idle.
    Idle,
    /// Barrier aligned over every input.
    Barrier(Barrier),
    /// Every input has ended.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum InputState {
    Active(Timestamp),
    Idle(Timestamp),
    Ended,
}

/// Min over active inputs; +∞ when all ended. When every live input is idle, the max of
/// their watermarks (as Flink's watermark valve does), so progress already seen is not held.
pub(crate) fn merged_watermark(inputs: &[InputState]) -> Timestamp {
    let mut min_active = None::<Timestamp>;
    let mut max_idle = None::<Timestamp>;
    for s in inputs {
        match *s {
            InputState::Active(t) => min_active = Some(min_active.map_or(t, |m| m.min(t))),
            InputState::Idle(t) => max_idle = Some(max_idle.map_or(t, |m| m.max(t))),
            InputState::Ended => {}
        }
    }
    min_active.or(max_idle).unwrap_or(Timestamp::MAX)
}

struct GateInput {
    port: usize,
    rx: mpsc::Receiver<Message>,
    /// Delivered the barrier being aligned.
    blocked: bool,
}

/// The inputs of one task (see the module doc).
pub(crate) struct InputGate {
    inputs: Vec<GateInput>,
    states: Vec<InputState>,
    /// Round-robin start, so one busy input cannot starve the others.
    next: usize,
    /// The barrier being aligned, and how many live inputs delivered it.
    aligning: Option<(Barrier, usize)>,
    /// Block inputs that delivered a barrier (exactly-once) or not (at-least-once).
    exactly_once: bool,
    /// The last barrier handed out: older ones are stale.
    completed: u64,
    emitted_wm: Timestamp,
    idle_sent: bool,
    ended: bool,
    /// Events decided but not handed out yet (a barrier completed by an `End` is followed by
    /// the end itself).
    queued: std::collections::VecDeque<GateEvent>,
}

impl InputGate {
    /// A gate over `inputs` (input port, receiver).
    pub(crate) fn new(inputs: Vec<(usize, mpsc::Receiver<Message>)>, exactly_once: bool) -> Self {
        let n = inputs.len();
        Self {
            inputs: inputs
                .into_iter()
                .map(|(port, rx)| GateInput {
                    port,
                    rx,
                    blocked: false,
                })
                .collect(),
            states: vec![InputState::Active(Timestamp::MIN); n],
            next: 0,
            aligning: None,
            exactly_once,
            completed: 0,
            emitted_wm: Timestamp::MIN,
            idle_sent: false,
            ended: n == 0,
            queued: Default::default(),
        }
    }

    /// The next event; `None` when an input's sender went away without `End` (its task
    /// stopped: the job is being cancelled or has failed).
    pub(crate) async fn next(&mut self) -> Option<GateEvent> {
        loop {
            if let Some(ev) = self.queued.pop_front() {
                return Some(ev);
            }
            if self.ended {
                return None;
            }
            let (i, msg) = self.recv().await?;
            self.observe(i, msg);
        }
    }

    /// Receive from the next unblocked input that has something.
    async fn recv(&mut self) -> Option<(usize, Message)> {
        let n = self.inputs.len();
        poll_fn(|cx| {
            let mut open = false;
            for k in 0..n {
                let i = (self.next + k) % n;
                if self.inputs[i].blocked || self.states[i] == InputState::Ended {
                    continue;
                }
                open = true;
                match self.inputs[i].rx.poll_recv(cx) {
                    Poll::Ready(Some(m)) => {
                        self.next = (i + 1) % n;
                        return Poll::Ready(Some((i, m)));
                    }
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => {}
                }
            }
            if open {
                Poll::Pending
            } else {
                // Every input is blocked or ended: cannot happen while aligning (the barrier
                // completes when the last live input delivers it).
                Poll::Ready(None)
            }
        })
        .await
    }

    fn observe(&mut self, i: usize, msg: Message) {
        match msg {
            Message::Batch(b) => {
                let port = self.inputs[i].port;
                self.queued.push_back(GateEvent::Batch(port, b));
                return;
            }
            Message::Watermark(Watermark::EventTime(t)) => {
                self.states[i] = InputState::Active(t);
                self.idle_sent = false;
            }
            Message::Watermark(Watermark::Idle) => {
                if let InputState::Active(t) = self.states[i] {
                    self.states[i] = InputState::Idle(t);
                }
            }
            Message::End => {
                self.states[i] = InputState::Ended;
                // An ended input counts as having delivered the barrier being aligned.
                self.try_complete_barrier();
            }
            Message::Barrier(b) => {
                self.on_barrier(i, b);
                return;
            }
        }
        self.progress()
    }

    fn progress(&mut self) {
        let wm = merged_watermark(&self.states);
        if self.states.iter().all(|s| *s == InputState::Ended) {
            // The watermark jumps to +∞ first, so every window fires before the end.
            if self.emitted_wm < Timestamp::MAX {
                self.emitted_wm = Timestamp::MAX;
                self.queued.push_back(GateEvent::Watermark(Timestamp::MAX));
            }
            self.ended = true;
            self.queued.push_back(GateEvent::End);
            return;
        }
        if wm > self.emitted_wm {
            self.emitted_wm = wm;
            self.queued.push_back(GateEvent::Watermark(wm));
            return;
        }
        let all_idle = self.states.iter().any(|s| matches!(s, InputState::Idle(_)))
            && !self
                .states
                .iter()
                .any(|s| matches!(s, InputState::Active(_)));
        if all_idle && !self.idle_sent {
            self.idle_sent = true;
            self.queued.push_back(GateEvent::Idle);
        }
    }

    fn on_barrier(&mut self, i: usize, b: Barrier) {
        if b.epoch <= self.completed {
            return;
        }
        match self.aligning {
            // A barrier of a checkpoint given up for a newer one: ignore it.
            Some((current, _)) if b.epoch < current.epoch => return,
            Some((current, _)) if b.epoch > current.epoch => {
                // A newer checkpoint replaced the one being aligned (which timed out or was
                // given up for a stop): start over with it.
                for input in &mut self.inputs {
                    input.blocked = false;
                }
                self.aligning = Some((b, 0));
            }
            None => self.aligning = Some((b, 0)),
            _ => {}
        }
        if let Some((_, count)) = &mut self.aligning {
            *count += 1;
        }
        if self.exactly_once {
            self.inputs[i].blocked = true;
        }
        self.try_complete_barrier();
    }

    fn try_complete_barrier(&mut self) {
        let Some((b, delivered)) = self.aligning else {
            return;
        };
        let live = self
            .states
            .iter()
            .filter(|s| **s != InputState::Ended)
            .count();
        // Blocked inputs that since ended no longer count twice.
        let delivered_live = if self.exactly_once {
            self.inputs
                .iter()
                .zip(&self.states)
                .filter(|(inp, s)| inp.blocked && **s != InputState::Ended)
                .count()
        } else {
            delivered.min(live)
        };
        if delivered_live < live {
            return;
        }
        self.aligning = None;
        self.completed = b.epoch;
        for input in &mut self.inputs {
            input.blocked = false;
        }
        self.queued.push_back(GateEvent::Barrier(b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::test_util::int_batch;

    fn rows(ev: &GateEvent) -> Option<(usize, i64)> {
        match ev {
            GateEvent::Batch(port, b) => {
                use datafusion::arrow::array::AsArray;
                let v = b
                    .column(0)
                    .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                    .value(0);
                Some((*port, v))
            }
            _ => None,
        }
    }

    #[test]
    fn watermark_is_min_over_active_inputs() {
        use InputState::*;
        assert_eq!(merged_watermark(&[Active(5), Active(3)]), 3);
        assert_eq!(merged_watermark(&[Active(5), Idle(3)]), 5);
        assert_eq!(merged_watermark(&[Idle(5), Idle(3)]), 5);
        assert_eq!(merged_watermark(&[Ended, Active(7)]), 7);
        assert_eq!(merged_watermark(&[Ended, Ended]), Timestamp::MAX);
    }

    /// A two-input task holds back the input that delivered the barrier first, while the
    /// other keeps flowing; the barrier comes out once both delivered it.
    #[tokio::test]
    async fn barrier_blocks_the_first_input_while_the_other_flows() {
        let (tx0, rx0) = mpsc::channel(16);
        let (tx1, rx1) = mpsc::channel(16);
        let mut gate = InputGate::new(vec![(0, rx0), (1, rx1)], true);
        let b = Barrier { epoch: 1 };
        tx0.send(Message::Batch(int_batch(&[1]))).await.unwrap();
        tx0.send(Message::Barrier(b)).await.unwrap();
        // Rows after the barrier on input 0 belong to the next epoch: held back.
        tx0.send(Message::Batch(int_batch(&[2]))).await.unwrap();
        for v in [10, 11, 12] {
            tx1.send(Message::Batch(int_batch(&[v]))).await.unwrap();
        }
        let mut seen = vec![];
        for _ in 0..4 {
            let ev = gate.next().await.unwrap();
            seen.push(rows(&ev).unwrap());
        }
        seen.sort();
        assert_eq!(seen, vec![(0, 1), (1, 10), (1, 11), (1, 12)]);
        // Input 1 still flows; input 0's row 2 stays parked.
        tx1.send(Message::Batch(int_batch(&[13]))).await.unwrap();
        assert_eq!(rows(&gate.next().await.unwrap()), Some((1, 13)));
        tx1.send(Message::Barrier(b)).await.unwrap();
        tx1.send(Message::Batch(int_batch(&[14]))).await.unwrap();
        assert!(matches!(
            gate.next().await.unwrap(),
            GateEvent::Barrier(Barrier { epoch: 1 })
        ));
        let mut after = vec![
            rows(&gate.next().await.unwrap()).unwrap(),
            rows(&gate.next().await.unwrap()).unwrap(),
        ];
        after.sort();
        assert_eq!(after, vec![(0, 2), (1, 14)]);
    }

    /// A finished input counts as having delivered every later barrier.
    #[tokio::test]
    async fn an_ended_input_does_not_hold_barriers() {
        let (tx0, rx0) = mpsc::channel(16);
        let (tx1, rx1) = mpsc::channel(16);
        let mut gate = InputGate::new(vec![(0, rx0), (0, rx1)], true);
        tx0.send(Message::End).await.unwrap();
        tx1.send(Message::Watermark(Watermark::EventTime(5)))
            .await
            .unwrap();
        assert!(matches!(gate.next().await, Some(GateEvent::Watermark(5))));
        tx1.send(Message::Barrier(Barrier { epoch: 3 }))
            .await
            .unwrap();
        assert!(matches!(
            gate.next().await,
            Some(GateEvent::Barrier(Barrier { epoch: 3 }))
        ));
        // The last input's end: the watermark jumps to +∞, then the end.
        tx1.send(Message::End).await.unwrap();
        assert!(matches!(
            gate.next().await,
            Some(GateEvent::Watermark(Timestamp::MAX))
        ));
        assert!(matches!(gate.next().await, Some(GateEvent::End)));
    }

    #[tokio::test]
    async fn at_least_once_does_not_block() {
        let (tx0, rx0) = mpsc::channel(16);
        let (tx1, rx1) = mpsc::channel(16);
        let mut gate = InputGate::new(vec![(0, rx0), (1, rx1)], false);
        tx0.send(Message::Barrier(Barrier { epoch: 1 }))
            .await
            .unwrap();
        tx0.send(Message::Batch(int_batch(&[2]))).await.unwrap();
        assert_eq!(rows(&gate.next().await.unwrap()), Some((0, 2)));
        tx1.send(Message::Barrier(Barrier { epoch: 1 }))
            .await
            .unwrap();
        assert!(matches!(gate.next().await, Some(GateEvent::Barrier(_))));
    }
}
