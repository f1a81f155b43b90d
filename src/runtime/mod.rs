//! The runtime: runs a [`Pipeline`]'s dataflow graph.
//!
//! ```text
//!  shard 0 ─► [watermark gen, stateless ops] ─┐ exchange         ┌─► stage instance 0 ─┐
//!  shard 1 ─► [watermark gen, stateless ops] ─┼─ (key groups, ──►┤                     ├─► sink
//!  shard n ─► [watermark gen, stateless ops] ─┘  split by take)  └─► stage instance P-1 ┘
//! ```
//!
//! Every source shard and every stage instance is a tokio task. A stage (and the sink) reads
//! its inputs through an [`gate::InputGate`]: one bounded channel per producer (backpressure),
//! watermarks merged (min over non-idle inputs; finished inputs count as +∞) and checkpoint
//! barriers aligned, all in one place. The task loop pushes batches and merged watermarks
//! through its operators ([`chain::Chain`]) and hands what comes out to its [`Router`]: split
//! by key group over the next stage's instances, or all to one. Watermarks, idleness,
//! barriers and `End` are broadcast. Operators never see channels.
//!
//! The sink task also coordinates checkpoints ([`checkpoint`]): it asks the sources for
//! barrier n, collects every task's snapshot, writes them in the background, and publishes the
//! sink's output once the epoch record is created. When every input has ended, each stage sees
//! a final +∞ watermark and `on_end`, then (with checkpoints) a final checkpoint is taken and
//! the sink is finished. On cancellation the tasks stop, open windows are *not* fired (their
//! results would be incomplete); without checkpoints the sink flushes what it has, with them
//! it discards what no checkpoint covers.
//!
//! Where this departs from ARCHITECTURE.md, and why:
//! - Each source shard is a task of its own rather than shards grouped into P source
//!   instances: tokio spreads the tasks over the cores, and a shard never waits for another
//!   shard's I/O. Splittable sources (Nexmark) default to P shards. The source task has its
//!   own loop (it pulls from its shard); stage and sink tasks share the gate.
//! - Source watermark alignment ([`Alignment`]): a shard more than a max drift ahead of the
//!   slowest waits. Without it a join of two sources buffers the faster one without bound.
//!   A barrier request wakes a waiting shard: barriers never wait behind alignment.
//! - A source takes a barrier only at a record boundary it can name as a position (for line
//!   files: after a block of whole lines), so it may read on briefly after the request.
//! - A table scanned by several branches of one plan (a self-join) is read once; each batch
//!   goes through every branch's per-shard operators.
//! - *Splits*: a source shard may read several splits (a Kinesis reader its Kinesis shards, a
//!   Kafka reader its partitions, an `s3://` reader its objects), whose number changes while
//!   the job runs (reshards). The task keeps one chain of per-shard operators per split, so each
//!   split has its own watermark generator, and sends on the minimum over its live splits.
//!   A split is announced (an empty batch) before its rows, so it holds the watermark back
//!   from the start; an ended split stops counting. The architecture's one-watermark-per-shard
//!   would let a fast Kinesis shard make a slow one's rows late.
//! - Stop *with drain* ([`RunContext::drain`]): sources end as if their input had ended, so
//!   windows fire; cancellation does not fire them. Stop *with a final checkpoint*
//!   ([`RunContext::stop`]): the sources stop after a last barrier, which is committed.

mod chain;
pub mod checkpoint;
pub mod exchange;
pub(crate) mod gate;
pub mod metrics;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

pub use chain::Chain;
pub use exchange::{OutputExchange, Router};
pub use metrics::JobMetrics;

use crate::connectors::{Sink, SourceShard};
use crate::graph::{Exchange, Flow, Pipeline, Stage};
use crate::message::{Barrier, Message, Timestamp, Watermark};
use crate::state::KeyGroupRange;
use crate::{Error, Result};
use checkpoint::{Ack, BarrierRequest, Checkpointing, Coordinator};
use gate::{GateEvent, InputGate};

/// Everything a running job needs besides its plan.
pub struct RunContext {
    /// Live counters.
    pub metrics: Arc<JobMetrics>,
    /// Flips to true to stop the job at once (cancel).
    pub cancel: watch::Receiver<bool>,
    /// Where late rows go (None: counted and dropped).
    pub late_sink: Option<Box<dyn Sink>>,
    /// Flips to true to stop *with drain*: the sources end as if their input had ended, so
    /// every window fires and the sink gets complete results (Flink's `stop --drain`).
    pub drain: Option<watch::Receiver<bool>>,
}

/// A job's checkpointing and the controls that go with it (see [`run_checkpointed`]).
#[derive(Default)]
pub struct Durability {
    /// Flips to true to stop *with a final checkpoint* (with checkpointing; else a cancel).
    pub stop: Option<watch::Receiver<bool>>,
    /// Checkpoints, when the job has a checkpoint directory.
    pub checkpoint: Option<Checkpointing>,
    /// Triggers a checkpoint now (`Job::checkpoint`); answered when it is committed.
    pub checkpoint_now: Option<mpsc::Receiver<tokio::sync::oneshot::Sender<Result<u64>>>>,
}

/// The opened shards of one source of the graph (in [`Flow::sources`] order).
pub struct OpenSource {
    /// Table name, for errors.
    pub name: String,
    /// Its shards.
    pub shards: Vec<Box<dyn SourceShard>>,
    /// A silent shard becomes idle after this long.
    pub idle_timeout: Option<Duration>,
    /// `'scan.watermark.alignment.max-drift'` (ms): how far ahead of the job's slowest shard
    /// a shard may read. The job uses the smallest given, else [`DEFAULT_MAX_DRIFT_MS`].
    pub max_drift_ms: Option<i64>,
}

/// Default bound on how far (event time) a shard may run ahead of the slowest one.
pub const DEFAULT_MAX_DRIFT_MS: i64 = 30_000;

/// Batches buffered per producer→consumer channel.
const CHANNEL_CAPACITY: usize = 8;

/// How long a source task runs before it hands its worker back to the scheduler.
const YIELD_EVERY: Duration = Duration::from_millis(5);

/// What tasks report to the sink task besides data.
pub(crate) enum Control {
    /// Late rows, for the late-data output.
    Late(Vec<RecordBatch>),
    /// A task failed; the job stops with this error.
    Failed(Error),
}

/// Watermark alignment of a job's source shards (Flink's `scan.watermark.alignment`): a shard
/// whose watermark is more than `max_drift` ahead of the slowest active shard waits. Without
/// it, a join of two sources (or a window over shards read at different speeds) would buffer
/// the faster input without bound while the watermark waits for the slower one.
pub struct Alignment {
    /// Per shard: its watermark; `i64::MAX` when it has none yet, is idle or has ended.
    watermarks: Vec<std::sync::atomic::AtomicI64>,
    max_drift: i64,
    moved: tokio::sync::Notify,
}

impl Alignment {
    fn new(shards: usize, max_drift: i64) -> Self {
        Self {
            watermarks: (0..shards)
                .map(|_| std::sync::atomic::AtomicI64::new(Timestamp::MAX))
                .collect(),
            max_drift,
            moved: tokio::sync::Notify::new(),
        }
    }

    fn set(&self, shard: usize, wm: Timestamp) {
        if let Some(w) = self.watermarks.get(shard) {
            let old = w.swap(wm, Ordering::Relaxed);
            if old != wm {
                self.moved.notify_waiters();
            }
        }
    }

    /// Wait while `shard` is too far ahead of the slowest shard.
    async fn wait_turn(&self, shard: usize, cancel: &mut watch::Receiver<bool>) {
        loop {
            let Some(mine) = self
                .watermarks
                .get(shard)
                .map(|w| w.load(Ordering::Relaxed))
            else {
                return;
            };
            let slowest = self
                .watermarks
                .iter()
                .map(|w| w.load(Ordering::Relaxed))
                .min()
                .unwrap_or(Timestamp::MAX);
            if mine == Timestamp::MAX || mine <= slowest.saturating_add(self.max_drift) {
                return;
            }
            // Re-check on any move, and now and then in case a notification was missed.
            tokio::select! {
                _ = self.moved.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = cancel.changed() => return,
            }
        }
    }
}

/// Shared by every task of a job.
#[derive(Clone)]
struct TaskEnv {
    metrics: Arc<JobMetrics>,
    cancel: watch::Receiver<bool>,
    drain: Option<watch::Receiver<bool>>,
    /// The sink task's control channel: late rows and failures go straight there.
    control: mpsc::Sender<Control>,
    /// Checkpoint acknowledgements for the coordinator.
    acks: mpsc::UnboundedSender<Ack>,
    /// Barrier requests for the source tasks.
    barriers: watch::Receiver<BarrierRequest>,
    /// The last completed checkpoint's epoch (sources acknowledge it to their systems).
    completed: watch::Receiver<u64>,
    /// Align barriers (exactly-once) or not (at-least-once).
    exactly_once: bool,
    /// Number of key groups.
    key_groups: usize,
}

impl TaskEnv {
    async fn fail(&self, e: Error) {
        let _ = self.control.send(Control::Failed(e)).await;
    }

    /// Report what a chain collected besides its output: malformed counts and late rows.
    async fn drain(&self, chain: &mut Chain) {
        JobMetrics::add(&self.metrics.malformed, chain.take_malformed());
        let late = chain.take_late();
        if !late.is_empty() {
            let rows: usize = late.iter().map(|b| b.num_rows()).sum();
            JobMetrics::add(&self.metrics.late_rows, rows as u64);
            let _ = self.control.send(Control::Late(late)).await;
        }
    }
}

/// One branch of the plan reading a shard: its per-shard operators and where their output goes.
struct Consumer {
    chain: Chain,
    router: Box<dyn OutputExchange>,
    /// The per-shard operators, for shards that read several splits.
    specs: Vec<crate::operators::OpSpec>,
    /// Per split (Kinesis shard, Kafka partition): its own operators (so its own watermark
    /// generator), its watermark, and when it last had rows (for idleness).
    splits: std::collections::HashMap<u64, SplitState>,
    /// The watermark sent on for a multi-split shard: the minimum over its live splits.
    emitted: Timestamp,
}

/// One split of a multi-split shard (see [`Consumer`]).
struct SplitState {
    chain: Chain,
    watermark: Timestamp,
    last_rows: std::time::Instant,
}

impl Consumer {
    fn new(specs: &[crate::operators::OpSpec], router: Box<dyn OutputExchange>) -> Result<Self> {
        Ok(Self {
            chain: Chain::new(specs)?,
            router,
            specs: specs.to_vec(),
            splits: Default::default(),
            emitted: Timestamp::MIN,
        })
    }

    /// Make sure split `s` is known: a split announced before its first rows holds the
    /// watermark back until it has rows (or goes idle).
    fn register(&mut self, s: u64) -> Result<()> {
        if !self.splits.contains_key(&s) {
            self.splits.insert(
                s,
                SplitState {
                    chain: Chain::new(&self.specs)?,
                    watermark: Timestamp::MIN,
                    last_rows: std::time::Instant::now(),
                },
            );
        }
        Ok(())
    }

    /// The minimum watermark over live splits, if it moved past what was sent. With an idle
    /// timeout, splits without rows for that long do not count (unless all are idle: then the
    /// largest of theirs, as for whole shards).
    fn split_watermark(&mut self, idle: Option<Duration>) -> Option<Timestamp> {
        let active = |st: &&SplitState| idle.is_none_or(|d| st.last_rows.elapsed() < d);
        let min = match self
            .splits
            .values()
            .filter(active)
            .map(|st| st.watermark)
            .min()
        {
            Some(m) => m,
            None => self.splits.values().map(|st| st.watermark).max()?,
        };
        (min > self.emitted).then(|| {
            self.emitted = min;
            min
        })
    }

    /// The per-shard operators' state of this branch, for a checkpoint (single-split shards).
    fn snapshot(&mut self) -> Result<Value> {
        Ok(metas(&self.chain.snapshot(0)?))
    }

    fn restore(&mut self, state: &Value) -> Result<()> {
        self.chain.restore_metas(state)
    }
}

/// The scalar state of a chain's operators, as JSON (one entry per operator).
fn metas(snaps: &[Option<crate::state::StateSnapshot>]) -> Value {
    Value::Array(
        snaps
            .iter()
            .map(|s| s.as_ref().map_or(Value::Null, |s| s.meta.clone()))
            .collect(),
    )
}

/// One source shard's task and what it needs (see [`run_shard`]).
struct ShardTask {
    shard: Box<dyn SourceShard>,
    consumers: Vec<Consumer>,
    env: TaskEnv,
    source: String,
    idle_timeout: Option<Duration>,
    align: Arc<Alignment>,
    slot: usize,
    /// Task number, for checkpoint acknowledgements.
    task: usize,
    /// `table:shard`: where its position is kept in a checkpoint.
    key: String,
    /// Rows read from the shard, over every run (part of its checkpointed position).
    rows: u64,
    /// Positions of checkpoints taken and not yet known complete, oldest first.
    uncompleted: std::collections::VecDeque<(u64, Value)>,
}

impl ShardTask {
    /// Position and per-branch operator state, if the shard is at a record boundary.
    fn checkpoint_state(&mut self) -> Result<Option<Value>> {
        let Some(position) = self.shard.position() else {
            return Ok(None);
        };
        let chains = self
            .consumers
            .iter_mut()
            .map(|c| c.snapshot())
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(
            json!({ "position": position, "chains": chains, "rows": self.rows }),
        ))
    }

    fn chains(&mut self) -> Value {
        Value::Array(
            self.consumers
                .iter_mut()
                .map(|c| c.snapshot().unwrap_or(Value::Null))
                .collect(),
        )
    }

    /// Take up where a checkpoint left the shard. `Ok(false)`: it had already finished.
    fn restore(&mut self, state: &Value) -> Result<bool> {
        self.rows = state.get("rows").and_then(Value::as_u64).unwrap_or(0);
        if let Some(Value::Array(chains)) = state.get("chains") {
            for (c, s) in self.consumers.iter_mut().zip(chains) {
                c.restore(s)?;
            }
        }
        if state.get("done").and_then(Value::as_bool) == Some(true) {
            return Ok(false);
        }
        if let Some(p) = state.get("position") {
            self.shard.restore(p)?;
        }
        Ok(true)
    }

    /// Inject barrier `epoch` after everything read so far.
    async fn inject(&mut self, epoch: u64, state: Value) -> Result<()> {
        if let Some(p) = state.get("position") {
            self.uncompleted.push_back((epoch, p.clone()));
        }
        let _ = self.env.acks.send(Ack::Source {
            task: self.task,
            epoch,
            shards: vec![(self.key.clone(), state)],
        });
        for c in &mut self.consumers {
            c.router.send(Message::Barrier(Barrier { epoch })).await?;
        }
        Ok(())
    }

    /// Checkpoint `epoch` completed: the shard may acknowledge its position to the system it
    /// reads (Kafka commits offsets to the group).
    fn checkpoint_completed(&mut self, epoch: u64) {
        let mut last = None;
        while self.uncompleted.front().is_some_and(|(e, _)| *e <= epoch) {
            last = self.uncompleted.pop_front();
        }
        if let Some((_, position)) = last {
            self.shard.checkpoint_complete(&position);
        }
    }

    /// The shard ended: tell the coordinator where (it is part of every later checkpoint).
    fn finished(&mut self) {
        let chains = self.chains();
        let _ = self.env.acks.send(Ack::Finished {
            task: self.task,
            shards: vec![(
                self.key.clone(),
                checkpoint::done_position(chains, self.rows, self.shard.position()),
            )],
        });
    }
}

/// A source shard's task. A table scanned by several branches of a plan (a self-join, as in
/// Nexmark q5 and q7) is read once: each batch goes through every branch's operators.
async fn run_shard(mut t: ShardTask, restored: Option<Value>) {
    if let Some(state) = restored {
        match t.restore(&state) {
            Ok(true) => {}
            Ok(false) => {
                t.align.set(t.slot, Timestamp::MAX);
                for c in &mut t.consumers {
                    let _ = c.router.send(Message::End).await;
                }
                return t.finished();
            }
            Err(e) => return t.env.fail(with_source(e, &t.source)).await,
        }
    }
    if let Err(e) = shard_loop(&mut t).await
        && !matches!(e, Error::Cancelled)
    {
        let source = t.source.clone();
        t.env.fail(with_source(e, &source)).await;
    }
}

async fn shard_loop(t: &mut ShardTask) -> Result<()> {
    let mut cancel = t.env.cancel.clone();
    let mut drain = t.env.drain.clone();
    let mut barriers = t.env.barriers.clone();
    let mut completed = t.env.completed.clone();
    // Requests made before this task started count too (a stop right after the start):
    // the initial request is epoch 0.
    let mut injected = 0;
    let mut pending: Option<BarrierRequest> = None;
    let mut idle = false;
    let mut watermark = Timestamp::MAX;
    let idle_timeout = t.idle_timeout;
    let mut last_yield = std::time::Instant::now();
    loop {
        if *cancel.borrow() {
            return Err(Error::Cancelled);
        }
        if let Some(req) = pending
            && let Some(state) = t.checkpoint_state()?
        {
            pending = None;
            injected = req.epoch;
            t.inject(req.epoch, state).await?;
            if req.stop {
                // Stop with a final checkpoint: nothing after the barrier, but its completion
                // is still acknowledged (Kafka offsets).
                loop {
                    tokio::select! {
                        _ = cancel.wait_for(|c| *c) => return Err(Error::Cancelled),
                        r = completed.changed() => {
                            if r.is_err() {
                                return Err(Error::Cancelled);
                            }
                            let epoch = *completed.borrow_and_update();
                            t.checkpoint_completed(epoch);
                        }
                    }
                }
            }
        }
        let draining = drain.as_mut().is_some_and(|d| *d.borrow());
        if !draining && pending.is_none() {
            // Barriers never wait behind watermark alignment.
            tokio::select! {
                _ = t.align.wait_turn(t.slot, &mut cancel) => {}
                r = barriers.changed() => {
                    if r.is_ok() {
                        let req = *barriers.borrow_and_update();
                        if req.epoch > injected {
                            pending = Some(req);
                        }
                    }
                    continue;
                }
            }
        }
        let shard = &mut t.shard;
        let next = tokio::select! {
            biased;
            _ = cancel.changed() => return Err(Error::Cancelled),
            r = barriers.changed(), if pending.is_none() => {
                if r.is_ok() {
                    let req = *barriers.borrow_and_update();
                    if req.epoch > injected {
                        pending = Some(req);
                    }
                }
                continue;
            }
            r = completed.changed() => {
                if r.is_ok() {
                    let epoch = *completed.borrow_and_update();
                    t.checkpoint_completed(epoch);
                }
                continue;
            }
            _ = async {
                match drain.as_mut() {
                    Some(d) if !draining => {
                        if d.wait_for(|v| *v).await.is_err() {
                            std::future::pending::<()>().await
                        }
                    }
                    _ => std::future::pending::<()>().await,
                }
            } => Some(Ok(None)),
            r = async {
                if draining { Ok(None) } else { shard.next_batch().await }
            } => Some(r),
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
                t.align.set(t.slot, Timestamp::MAX);
                for (i, c) in t.consumers.iter_mut().enumerate() {
                    // Splits silent for the idle timeout stop holding the shard back: its
                    // watermark moves to what its splits with rows have reached.
                    if let Some(wm) = c.split_watermark(idle_timeout) {
                        if i == 0 {
                            watermark = wm;
                        }
                        c.router
                            .send(Message::Watermark(Watermark::EventTime(wm)))
                            .await?;
                    }
                    c.router.send(Message::Watermark(Watermark::Idle)).await?;
                }
                continue;
            }
            Some(r) => r,
        };
        if idle && watermark != Timestamp::MAX {
            t.align.set(t.slot, watermark);
        }
        idle = false;
        // Splits that ended no longer hold the watermark back.
        let finished = t.shard.finished_splits();
        if !finished.is_empty() {
            for (i, c) in t.consumers.iter_mut().enumerate() {
                for f in &finished {
                    c.splits.remove(f);
                }
                if let Some(wm) = c.split_watermark(idle_timeout) {
                    if i == 0 {
                        watermark = wm;
                        t.align.set(t.slot, wm);
                    }
                    c.router
                        .send(Message::Watermark(Watermark::EventTime(wm)))
                        .await?;
                }
            }
        }
        let batch = match result? {
            Some(b) if b.num_rows() == 0 => {
                // An empty batch of a split announces it.
                if let Some(s) = t.shard.split() {
                    for c in &mut t.consumers {
                        c.register(s)?;
                    }
                }
                continue;
            }
            Some(b) => b,
            None => {
                t.align.set(t.slot, Timestamp::MAX);
                for c in &mut t.consumers {
                    let _ = c.router.send(Message::End).await;
                }
                t.finished();
                return Ok(());
            }
        };
        let rows = batch.num_rows();
        JobMetrics::add(&t.env.metrics.events_in, rows as u64);
        t.rows += rows as u64;
        let split = t.shard.split();
        for (i, c) in t.consumers.iter_mut().enumerate() {
            let out = match split {
                None => {
                    let out = c.chain.push(0, Message::Batch(batch.clone()))?;
                    t.env.drain(&mut c.chain).await;
                    out
                }
                Some(s) => {
                    c.register(s)?;
                    let Some(st) = c.splits.get_mut(&s) else {
                        return Ok(());
                    };
                    st.last_rows = std::time::Instant::now();
                    let mut out = st.chain.push(0, Message::Batch(batch.clone()))?;
                    t.env.drain(&mut st.chain).await;
                    // The split's watermark is kept; the shard's is the minimum over splits.
                    out.retain(|m| match m {
                        Message::Watermark(Watermark::EventTime(t)) => {
                            st.watermark = st.watermark.max(*t);
                            false
                        }
                        _ => true,
                    });
                    if let Some(wm) = c.split_watermark(idle_timeout) {
                        out.push(Message::Watermark(Watermark::EventTime(wm)));
                    }
                    out
                }
            };
            if i == 0
                && let Some(wm) = out.iter().rev().find_map(|m| match m {
                    Message::Watermark(Watermark::EventTime(t)) => Some(*t),
                    _ => None,
                })
            {
                watermark = wm;
                t.align.set(t.slot, wm);
                if let Some(trace) = &t.env.metrics.trace
                    && let Ok(mut tr) = trace.sources.lock()
                {
                    tr.push((std::time::Instant::now(), wm, rows));
                }
            }
            for m in out {
                c.router.send(m).await?;
            }
        }
        // A source decodes and routes synchronously: hand the worker back every few
        // milliseconds, so timers (checkpoint triggers, file rolling) and other tasks are not
        // held up for a whole cooperative budget of batches. Yielding after every batch cost
        // 8-11% on the fastest Nexmark queries.
        if last_yield.elapsed() >= YIELD_EVERY {
            tokio::task::yield_now().await;
            last_yield = std::time::Instant::now();
        }
    }
}

/// A stage instance: its gate, operators, router and checkpoint identity.
struct StageTask {
    gate: InputGate,
    chain: Chain,
    router: Box<dyn OutputExchange>,
    env: TaskEnv,
    task: usize,
    /// Per operator of the chain: its state id (None for stateless operators).
    op_ids: Vec<Option<String>>,
    /// The key groups this instance owns.
    range: KeyGroupRange,
}

async fn run_stage(mut t: StageTask) {
    if let Err(e) = stage_loop(&mut t).await
        && !matches!(e, Error::Cancelled)
    {
        t.env.fail(e).await;
    }
}

async fn stage_loop(t: &mut StageTask) -> Result<()> {
    let mut reported_state = 0u64;
    let mut cancel = t.env.cancel.clone();
    loop {
        let ev = tokio::select! {
            biased;
            _ = cancel.changed() => return Err(Error::Cancelled),
            ev = t.gate.next() => ev,
        };
        let Some(ev) = ev else {
            return Err(Error::Cancelled);
        };
        let out = match ev {
            GateEvent::Batch(port, b) => t.chain.push(port, Message::Batch(b))?,
            GateEvent::Watermark(wm) => {
                let out = t
                    .chain
                    .push(0, Message::Watermark(Watermark::EventTime(wm)))?;
                let size = t.chain.state_size() as u64;
                t.env
                    .metrics
                    .state_bytes
                    .fetch_add(size.wrapping_sub(reported_state), Ordering::Relaxed);
                reported_state = size;
                out
            }
            GateEvent::Idle => vec![Message::Watermark(Watermark::Idle)],
            GateEvent::Barrier(b) => {
                let snaps = t.chain.snapshot(t.env.key_groups)?;
                let ops = snaps
                    .into_iter()
                    .zip(&t.op_ids)
                    .filter_map(|(s, id)| Some((id.clone()?, t.range, s?)))
                    .collect();
                let _ = t.env.acks.send(Ack::Stage {
                    task: t.task,
                    epoch: b.epoch,
                    ops,
                });
                crate::failpoint!("after-snapshot");
                vec![Message::Barrier(b)]
            }
            GateEvent::End => {
                let out = t.chain.push(0, Message::End)?;
                t.env.drain(&mut t.chain).await;
                for m in out {
                    t.router.send(m).await?;
                }
                t.env
                    .metrics
                    .state_bytes
                    .fetch_sub(reported_state, Ordering::Relaxed);
                let _ = t.env.acks.send(Ack::Finished {
                    task: t.task,
                    shards: vec![],
                });
                return Ok(());
            }
        };
        t.env.drain(&mut t.chain).await;
        for m in out {
            t.router.send(m).await?;
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// All bounded input was processed.
    Finished,
    /// Stopped by cancellation or a stop (Ctrl-C, SIGTERM, `Job::cancel`, `Job::stop`).
    Stopped,
}

/// The receiving ends of a stage's (or the sink's) inputs, one list per instance: each
/// producer connects one channel to every instance.
struct Inboxes {
    per_instance: Vec<Vec<(usize, mpsc::Receiver<Message>)>>,
}

impl Inboxes {
    fn new(instances: usize) -> Self {
        Self {
            per_instance: (0..instances).map(|_| vec![]).collect(),
        }
    }

    /// Channels from one new producer into input `port` of every instance.
    fn connect(&mut self, port: usize) -> Vec<mpsc::Sender<Message>> {
        self.per_instance
            .iter_mut()
            .map(|inbox| {
                let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
                inbox.push((port, rx));
                tx
            })
            .collect()
    }
}

/// Spawns the tasks of a graph.
struct Spawner<'a> {
    sources: Vec<OpenSource>,
    /// Per scan of a table in the plan: one consumer per shard.
    readers: Vec<(String, Vec<Consumer>)>,
    align: Arc<Alignment>,
    next_slot: usize,
    parallelism: usize,
    env: TaskEnv,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    next_task: usize,
    restored: Option<&'a checkpoint::Restored>,
    /// Operator state ids handed out, with how many identical ones came before.
    ids: HashMap<String, usize>,
    /// State id → description, for the manifest.
    descriptions: BTreeMap<String, String>,
}

impl Spawner<'_> {
    /// Spawn `flow` feeding input `port` of `targets`, partitioned by `keys`.
    fn spawn(
        &mut self,
        flow: &Flow,
        port: usize,
        targets: &mut Inboxes,
        keys: &[Arc<dyn datafusion::physical_expr::PhysicalExpr>],
        exchange: Exchange,
    ) -> Result<()> {
        match flow {
            Flow::Source { table, ops } => {
                let name = &table.def.name;
                let Some(shards) = self
                    .sources
                    .iter()
                    .find(|s| &s.name == name)
                    .map(|s| s.shards.len())
                else {
                    return Err(Error::Execution {
                        operator: "runtime".into(),
                        message: format!("source {name} was not opened"),
                    });
                };
                let consumers = (0..shards)
                    .map(|i| {
                        let router = Router::new(
                            i,
                            targets.connect(port),
                            keys.to_vec(),
                            exchange,
                            self.env.key_groups,
                        );
                        Consumer::new(ops, Box::new(router))
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.readers.push((name.clone(), consumers));
                Ok(())
            }
            Flow::Stage(stage) => self.spawn_stage(flow, stage, port, targets, keys, exchange),
        }
    }

    /// One task per shard of each opened table, feeding every scan of that table.
    fn spawn_readers(&mut self) -> Result<()> {
        let mut readers = std::mem::take(&mut self.readers);
        for source in std::mem::take(&mut self.sources) {
            let mut per_shard: Vec<Vec<Consumer>> =
                (0..source.shards.len()).map(|_| vec![]).collect();
            for (_, consumers) in readers.iter_mut().filter(|(n, _)| *n == source.name) {
                for (i, c) in std::mem::take(consumers).into_iter().enumerate() {
                    if let Some(slot) = per_shard.get_mut(i) {
                        slot.push(c);
                    }
                }
            }
            for (shard, consumers) in source.shards.into_iter().zip(per_shard) {
                if consumers.is_empty() {
                    continue;
                }
                let slot = self.next_slot;
                self.next_slot += 1;
                let task = self.next_task;
                self.next_task += 1;
                let key = format!("{}:{}", source.name, shard.name());
                let restored = self.restored.and_then(|r| r.sources.get(&key).cloned());
                self.tasks.push(tokio::spawn(run_shard(
                    ShardTask {
                        shard,
                        consumers,
                        env: self.env.clone(),
                        source: source.name.clone(),
                        idle_timeout: source.idle_timeout,
                        align: self.align.clone(),
                        slot,
                        task,
                        key,
                        rows: 0,
                        uncompleted: Default::default(),
                    },
                    restored,
                )));
            }
        }
        Ok(())
    }

    /// The state id of each operator of a stage: a stable hash of what the operator is and
    /// of the tables it reads, with an ordinal among identical ones.
    fn op_ids(&mut self, flow: &Flow, stage: &Stage) -> Vec<Option<String>> {
        let mut tables: Vec<String> = flow.sources().iter().map(|t| t.def.name.clone()).collect();
        tables.sort();
        tables.dedup();
        stage
            .ops
            .iter()
            .map(|op| {
                if !op.is_stateful() {
                    return None;
                }
                let identity = format!("{}|{}", op.state_identity(), tables.join(","));
                let n = self.ids.entry(identity.clone()).or_insert(0);
                *n += 1;
                let id = format!(
                    "{:016x}",
                    crate::state::stable_hash(format!("{identity}#{n}").as_bytes())
                );
                self.descriptions.insert(id.clone(), op.to_string());
                Some(id)
            })
            .collect()
    }

    fn spawn_stage(
        &mut self,
        flow: &Flow,
        stage: &Stage,
        port: usize,
        targets: &mut Inboxes,
        keys: &[Arc<dyn datafusion::physical_expr::PhysicalExpr>],
        exchange: Exchange,
    ) -> Result<()> {
        let p = stage.parallelism(self.parallelism);
        let mut inboxes = Inboxes::new(p);
        for (i, input) in stage.inputs.iter().enumerate() {
            self.spawn(&input.flow, i, &mut inboxes, &input.keys, input.exchange)?;
        }
        let op_ids = self.op_ids(flow, stage);
        let kg = self.env.key_groups;
        for (j, inputs) in inboxes.per_instance.into_iter().enumerate() {
            let mut chain = Chain::new(&stage.ops)?;
            let range = if p == 1 {
                KeyGroupRange::all(kg)
            } else {
                KeyGroupRange::of(j, p, kg)
            };
            if let Some(r) = self.restored {
                for (i, id) in op_ids.iter().enumerate() {
                    let Some(pieces) = id.as_ref().and_then(|id| r.ops.get(id)) else {
                        continue;
                    };
                    if let Some(snap) = crate::state::merge_pieces(pieces, range)? {
                        chain.restore(i, snap)?;
                    }
                }
            }
            let task = self.next_task;
            self.next_task += 1;
            let router = Router::new(j, targets.connect(port), keys.to_vec(), exchange, kg);
            self.tasks.push(tokio::spawn(run_stage(StageTask {
                gate: InputGate::new(inputs, self.env.exactly_once),
                chain,
                router: Box::new(router),
                env: self.env.clone(),
                task,
                op_ids: op_ids.clone(),
                range,
            })));
        }
        Ok(())
    }
}

/// Run a pipeline to completion (bounded input) or until cancelled. `sources` are the opened
/// tables of [`Flow::sources`], each once: a table scanned twice is read once.
pub async fn run(
    pipeline: &Pipeline,
    sources: Vec<OpenSource>,
    sink: Box<dyn Sink>,
    ctx: RunContext,
) -> Result<Outcome> {
    run_checkpointed(pipeline, sources, sink, ctx, Durability::default()).await
}

/// [`run`], with checkpoints and a stop that takes a final one.
pub async fn run_checkpointed(
    pipeline: &Pipeline,
    sources: Vec<OpenSource>,
    mut sink: Box<dyn Sink>,
    ctx: RunContext,
    durability: Durability,
) -> Result<Outcome> {
    let RunContext {
        metrics,
        cancel,
        mut late_sink,
        drain,
    } = ctx;
    let Durability {
        stop,
        checkpoint,
        checkpoint_now,
    } = durability;
    let (control_tx, mut control_rx) = mpsc::channel::<Control>(16);
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Ack>();
    let (barrier_tx, barrier_rx) = watch::channel(BarrierRequest::default());
    let (completed_tx, completed_rx) = watch::channel(0u64);
    let (exactly_once, key_groups) = match &checkpoint {
        Some(c) => (c.config.exactly_once, c.config.key_groups),
        None => (true, crate::state::DEFAULT_MAX_PARALLELISM),
    };
    let env = TaskEnv {
        metrics: metrics.clone(),
        cancel: cancel.clone(),
        drain,
        control: control_tx,
        acks: ack_tx,
        barriers: barrier_rx,
        completed: completed_rx,
        exactly_once,
        key_groups,
    };
    let shards = sources.iter().map(|s| s.shards.len()).sum();
    let drift = sources
        .iter()
        .filter_map(|s| s.max_drift_ms)
        .min()
        .unwrap_or(DEFAULT_MAX_DRIFT_MS);
    let restored = checkpoint.as_ref().and_then(|c| c.restored.as_ref());
    let mut spawner = Spawner {
        align: Arc::new(Alignment::new(shards, drift)),
        next_slot: 0,
        sources,
        readers: vec![],
        parallelism: pipeline.parallelism,
        env,
        tasks: vec![],
        next_task: 0,
        restored,
        ids: HashMap::new(),
        descriptions: BTreeMap::new(),
    };
    let mut root = Inboxes::new(1);
    let spawn_started = std::time::Instant::now();
    let spawned = spawner
        .spawn(&pipeline.root, 0, &mut root, &[], Exchange::Hash)
        .and_then(|_| spawner.spawn_readers());
    let _abort_on_exit = AbortOnDrop(std::mem::take(&mut spawner.tasks));
    let task_count = spawner.next_task;
    let descriptions = std::mem::take(&mut spawner.descriptions);
    drop(spawner);
    spawned?;
    if let Some(r) = restored {
        // Operators restore their state as they are spawned.
        metrics.restore_ms.store(
            r.load_ms + spawn_started.elapsed().as_millis() as u64,
            Ordering::Relaxed,
        );
    }
    let mut coordinator = match checkpoint {
        Some(cp) => {
            check_claimed(&cp, &descriptions)?;
            Some(Coordinator::new(
                cp,
                task_count,
                descriptions,
                pipeline.parallelism,
            ))
        }
        None => None,
    };
    if let Some(c) = &coordinator {
        metrics
            .events_before
            .store(c.events_before, Ordering::Relaxed);
    }
    let gate = InputGate::new(root.per_instance.pop().unwrap_or_default(), exactly_once);
    let mut driver = SinkDriver {
        gate,
        sink: &mut sink,
        late_sink: &mut late_sink,
        metrics: &metrics,
        coordinator: coordinator.as_mut(),
        barriers: barrier_tx,
        completed: completed_tx,
        sink_watermark: Timestamp::MIN,
    };
    let result = driver
        .run(cancel, stop, checkpoint_now, &mut control_rx, &mut ack_rx)
        .await;
    let checkpointing = coordinator.is_some();
    match &result {
        Ok(Outcome::Finished) => {}
        Ok(Outcome::Stopped) if !checkpointing => {
            // Without checkpoints a stopped job flushes and publishes what it has.
        }
        Ok(Outcome::Stopped) | Err(_) => {
            // A failed job, or a cancelled one whose output no checkpoint covers, publishes
            // nothing half-written (in-progress files and uploads).
            sink.abort().await;
            if let Some(late) = late_sink.as_mut() {
                late.abort().await;
            }
            return result;
        }
    }
    let finish = async {
        sink.finish().await?;
        if let Some(late) = late_sink.as_mut() {
            late.finish().await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = finish {
        sink.abort().await;
        return Err(e);
    }
    result
}

/// State in a checkpoint that no operator of the job claims is an error, unless allowed.
fn check_claimed(cp: &Checkpointing, ours: &BTreeMap<String, String>) -> Result<()> {
    let Some(r) = &cp.restored else {
        return Ok(());
    };
    let unclaimed: Vec<String> = r
        .ops
        .keys()
        .filter(|id| !ours.contains_key(*id))
        .map(|id| {
            format!(
                "{id} ({})",
                r.descriptions.get(id).map(String::as_str).unwrap_or("?")
            )
        })
        .collect();
    let fresh: Vec<&String> = ours
        .iter()
        .filter(|(id, _)| !r.ops.contains_key(*id))
        .map(|(_, d)| d)
        .collect();
    if !fresh.is_empty() && r.epoch > 0 {
        for d in &fresh {
            eprintln!("weir: operator starts with empty state (new in this job): {d}");
        }
    }
    if !unclaimed.is_empty() && !cp.allow_unclaimed {
        return Err(Error::Plan(format!(
            "checkpoint {} holds state that no operator of this job claims: {}. The query \
             changed the keys, window or aggregates of these operators. Run with \
             --allow-non-restored-state (or SET 'execution.savepoint.ignore-unclaimed-state' \
             = 'true') to drop it, or --no-restore to start a new lineage",
            r.epoch,
            unclaimed.join("; ")
        )));
    }
    Ok(())
}

/// The sink task: writes what the last stage emits, and coordinates checkpoints.
struct SinkDriver<'a> {
    gate: InputGate,
    sink: &'a mut Box<dyn Sink>,
    late_sink: &'a mut Option<Box<dyn Sink>>,
    metrics: &'a Arc<JobMetrics>,
    coordinator: Option<&'a mut Coordinator>,
    barriers: watch::Sender<BarrierRequest>,
    completed: watch::Sender<u64>,
    sink_watermark: Timestamp,
}

type ManifestFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<crate::state::store::Manifest>> + Send>,
>;

impl SinkDriver<'_> {
    async fn run(
        &mut self,
        mut cancel: watch::Receiver<bool>,
        mut stop: Option<watch::Receiver<bool>>,
        mut now: Option<mpsc::Receiver<tokio::sync::oneshot::Sender<Result<u64>>>>,
        control_rx: &mut mpsc::Receiver<Control>,
        ack_rx: &mut mpsc::UnboundedReceiver<Ack>,
    ) -> Result<Outcome> {
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.sink.tick_interval_ms().max(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let interval = self
            .coordinator
            .as_ref()
            .map_or(Duration::from_secs(3600), |c| c.cp.config.interval);
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut writing: Option<(checkpoint::Writing, ManifestFuture)> = None;
        let mut waiters: Vec<tokio::sync::oneshot::Sender<Result<u64>>> = vec![];
        let mut stop_requested = false;
        let checkpointing = self.coordinator.is_some();
        loop {
            // Start writing a checkpoint every task acknowledged.
            if writing.is_none()
                && let Some(c) = self.coordinator.as_deref_mut()
                && let Some((w, job)) = c.take_complete()
            {
                writing = Some((w, Box::pin(job)));
            }
            tokio::select! {
                biased;
                _ = cancel.changed() => return Ok(Outcome::Stopped),
                Some(c) = control_rx.recv() => match c {
                    Control::Failed(e) => return Err(e),
                    Control::Late(batches) => write_late(self.late_sink, batches).await?,
                },
                Some(ack) = ack_rx.recv() => {
                    if let Some(c) = self.coordinator.as_deref_mut() {
                        c.on_ack(ack);
                    }
                }
                r = async { match writing.as_mut() { Some((_, f)) => f.await, None => std::future::pending().await } } => {
                    let Some((w, _)) = writing.take() else { continue };
                    let done = self.committed(w, r).await;
                    let stopped = match &done {
                        Ok(Some(stop)) => *stop,
                        _ => false,
                    };
                    for tx in waiters.drain(..) {
                        let _ = tx.send(match &done {
                            Ok(Some(_)) => Ok(JobMetrics::get(&self.metrics.checkpoint_epoch)),
                            Ok(None) => Err(Error::Execution { operator: "checkpoint".into(), message: "the checkpoint failed".into() }),
                            Err(e) => Err(Error::Execution { operator: "checkpoint".into(), message: e.to_string() }),
                        });
                    }
                    done?;
                    if stopped {
                        return Ok(Outcome::Stopped);
                    }
                    if stop_requested && !self.coordinator.as_deref().is_some_and(|c| c.stopping()) {
                        self.trigger(true);
                    }
                }
                _ = tick.tick() => self.sink.tick().await?,
                _ = timer.tick(), if checkpointing => {
                    let (due, timed_out) = self.coordinator.as_deref().map_or((false, false), |c| (c.due(), c.timed_out()));
                    if timed_out && writing.is_none()
                        && let Some(c) = self.coordinator.as_deref_mut()
                            && let Some(epoch) = c.abandon() {
                                c.failed(epoch, &Error::Execution { operator: "checkpoint".into(), message: "timed out ('execution.checkpointing.timeout')".into() })?;
                                JobMetrics::add(&self.metrics.checkpoint_failures, 1);
                            }
                    if due && writing.is_none() {
                        self.trigger(false);
                    }
                }
                Some(tx) = async { match now.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                    if !checkpointing {
                        let _ = tx.send(Err(Error::Plan("checkpointing is off: set 'state.checkpoints.dir'".into())));
                    } else {
                        waiters.push(tx);
                        if writing.is_none() && self.coordinator.as_deref().is_some_and(|c| c.due()) {
                            self.trigger(false);
                        }
                    }
                }
                _ = async { match stop.as_mut() { Some(s) => { if s.wait_for(|v| *v).await.is_err() { std::future::pending::<()>().await } } None => std::future::pending().await } }, if !stop_requested => {
                    stop_requested = true;
                    stop = None;
                    if !checkpointing {
                        return Ok(Outcome::Stopped);
                    }
                    if writing.is_none() {
                        if let Some(c) = self.coordinator.as_deref_mut() {
                            c.abandon();
                        }
                        self.trigger(true);
                    }
                }
                // Last: with `biased`, a busy input must not starve the timers above.
                ev = self.gate.next() => {
                    let Some(ev) = ev else {
                        if *cancel.borrow() {
                            return Ok(Outcome::Stopped);
                        }
                        // A task stopped without End: its failure is on the control channel.
                        if let Ok(Control::Failed(e)) = control_rx.try_recv() {
                            return Err(e);
                        }
                        return Err(Error::Execution {
                            operator: "runtime".into(),
                            message: "every task stopped before the end of input".into(),
                        });
                    };
                    match ev {
                        GateEvent::Batch(_, b) => {
                            JobMetrics::add(&self.metrics.rows_out, b.num_rows() as u64);
                            self.sink.write_batch(b).await?;
                        }
                        GateEvent::Watermark(wm) => self.watermark(wm),
                        GateEvent::Idle => {}
                        GateEvent::Barrier(b) => {
                            // Late rows go out at least once: delivered before the checkpoint.
                            if let Some(late) = self.late_sink.as_mut() {
                                late.flush().await?;
                            }
                            let info = self.sink.pre_commit(b.epoch).await?;
                            crate::failpoint!("sink-after-pre-commit");
                            if let Some(c) = self.coordinator.as_deref_mut() {
                                c.on_sink(b.epoch, info);
                            }
                        }
                        GateEvent::End => break,
                    }
                }
            }
        }
        // Late rows or errors reported just before the end.
        while let Ok(c) = control_rx.try_recv() {
            match c {
                Control::Failed(e) => return Err(e),
                Control::Late(batches) => write_late(self.late_sink, batches).await?,
            }
        }
        // Bounded input ended: a final checkpoint publishes everything.
        if let Some((w, f)) = writing.take() {
            let r = f.await;
            self.committed(w, r).await?;
        }
        while let Ok(ack) = ack_rx.try_recv() {
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
        for tx in waiters {
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

fn with_source(e: Error, source: &str) -> Error {
    match e {
        Error::Io {
            context,
            source: io,
        } => Error::Io {
            context: format!("source {source}: {context}"),
            source: io,
        },
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
