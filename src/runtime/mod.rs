//! The runtime: runs a [`Pipeline`]'s dataflow graph.
//!
//! ```text
//!  shard 0 ─► [watermark gen, stateless ops] ─┐ exchange         ┌─► stage instance 0 ─┐
//!  shard 1 ─► [watermark gen, stateless ops] ─┼─ (hash keys, ───►┤                     ├─► sink
//!  shard n ─► [watermark gen, stateless ops] ─┘  split by take)  └─► stage instance P-1 ┘
//! ```
//!
//! Every source shard and every stage instance is a tokio task. A task reads one bounded
//! channel (backpressure) of [`Envelope`]s tagged with the input port and the sending task,
//! keeps a watermark per sender (min over non-idle senders; finished senders count as +∞),
//! pushes batches and merged watermarks through its operators ([`chain::Chain`]), and hands
//! what comes out to its [`Router`]: hash-partitioned over the next stage's instances, or all
//! to one. Watermarks, idleness and `End` are broadcast. Operators never see channels.
//!
//! The sink task receives the last stage's output, late rows and errors. When every input
//! has ended, each stage sees a final +∞ watermark and `on_end`, then the sink is finished.
//! On cancellation the tasks stop, open windows are *not* fired (their results would be
//! incomplete), and the sink flushes and closes what it has.
//!
//! Where this departs from ARCHITECTURE.md, and why:
//! - Each source shard is a task of its own rather than shards grouped into P source
//!   instances: tokio spreads the tasks over the cores, and a shard never waits for another
//!   shard's I/O. Splittable sources (Nexmark) default to P shards.
//! - Source watermark alignment ([`Alignment`]): a shard more than a max drift ahead of the
//!   slowest waits. Without it a join of two sources buffers the faster one without bound.
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
//!   windows fire; cancellation does not fire them.

mod chain;
pub mod exchange;
pub mod metrics;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, watch};

pub use chain::Chain;
pub use exchange::Router;
pub use metrics::JobMetrics;

use crate::connectors::{Sink, SourceShard};
use crate::message::{Message, Timestamp, Watermark};
use crate::planner::{Exchange, Flow, Pipeline, Stage};
use crate::{Error, Result};

/// Everything a running job needs besides its plan.
pub struct RunContext {
    /// Live counters.
    pub metrics: Arc<JobMetrics>,
    /// Flips to true to stop the job.
    pub cancel: watch::Receiver<bool>,
    /// Where late rows go (None: counted and dropped).
    pub late_sink: Option<Box<dyn Sink>>,
    /// Flips to true to stop *with drain*: the sources end as if their input had ended, so
    /// every window fires and the sink gets complete results (Flink's `stop --drain`).
    pub drain: Option<watch::Receiver<bool>>,
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

/// What travels on a channel between tasks.
pub struct Envelope {
    /// Input port of the receiving stage (0 or, for joins, 1).
    pub port: usize,
    /// Index of the sending task among the producers of that port.
    pub sender: usize,
    /// The payload.
    pub item: Item,
}

/// The payload of an [`Envelope`].
pub enum Item {
    /// Data, watermarks, `End`.
    Msg(Message),
    /// Late rows, for the sink task's late-data output.
    Late(Vec<RecordBatch>),
    /// A task failed; the job stops with this error.
    Failed(Error),
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

/// Per-sender input states of one task, flattened over its ports.
struct Inputs {
    offsets: Vec<usize>,
    states: Vec<InputState>,
}

impl Inputs {
    fn new(senders_per_port: &[usize]) -> Self {
        let mut offsets = vec![0];
        for n in senders_per_port {
            offsets.push(offsets.last().copied().unwrap_or(0) + n);
        }
        let total = offsets.last().copied().unwrap_or(0);
        Self {
            offsets,
            states: vec![InputState::Active(Timestamp::MIN); total],
        }
    }

    /// Record a control message; returns the message if it is data for the operators.
    fn observe(&mut self, port: usize, sender: usize, msg: Message) -> Option<Message> {
        let Some(i) = self
            .offsets
            .get(port)
            .map(|o| o + sender)
            .filter(|i| *i < self.states.len())
        else {
            return None;
        };
        match msg {
            Message::Batch(b) => return Some(Message::Batch(b)),
            Message::Watermark(Watermark::EventTime(t)) => self.states[i] = InputState::Active(t),
            Message::Watermark(Watermark::Idle) => {
                if let InputState::Active(t) = self.states[i] {
                    self.states[i] = InputState::Idle(t);
                }
            }
            Message::End => self.states[i] = InputState::Ended,
            Message::Barrier(_) => {}
        }
        None
    }

    fn watermark(&self) -> Option<Timestamp> {
        merged_watermark(&self.states)
    }

    fn all_ended(&self) -> bool {
        self.states.iter().all(|s| *s == InputState::Ended)
    }

    /// Every live input idle (and at least one of them).
    fn all_idle(&self) -> bool {
        self.states.iter().any(|s| matches!(s, InputState::Idle(_)))
            && self
                .states
                .iter()
                .all(|s| !matches!(s, InputState::Active(_)))
    }
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
    /// The sink task's channel: late rows and failures go straight there.
    control: mpsc::Sender<Envelope>,
}

impl TaskEnv {
    async fn fail(&self, e: Error) {
        let _ = self
            .control
            .send(Envelope {
                port: 0,
                sender: 0,
                item: Item::Failed(e),
            })
            .await;
    }

    /// Report what a chain collected besides its output: malformed counts and late rows.
    async fn drain(&self, chain: &mut Chain) {
        JobMetrics::add(&self.metrics.malformed, chain.take_malformed());
        let late = chain.take_late();
        if !late.is_empty() {
            let rows: usize = late.iter().map(|b| b.num_rows()).sum();
            JobMetrics::add(&self.metrics.late_rows, rows as u64);
            let _ = self
                .control
                .send(Envelope {
                    port: 0,
                    sender: 0,
                    item: Item::Late(late),
                })
                .await;
        }
    }
}

/// One branch of the plan reading a shard: its per-shard operators and where their output goes.
struct Consumer {
    chain: Chain,
    router: Router,
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
    fn new(specs: &[crate::operators::OpSpec], router: Router) -> Result<Self> {
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
}

/// A source shard's task. A table scanned by several branches of a plan (a self-join, as in
/// Nexmark q5 and q7) is read once: each batch goes through every branch's operators.
async fn run_shard(
    mut shard: Box<dyn SourceShard>,
    mut consumers: Vec<Consumer>,
    env: TaskEnv,
    source: String,
    idle_timeout: Option<Duration>,
    align: Arc<Alignment>,
    slot: usize,
) {
    let mut cancel = env.cancel.clone();
    let mut drain = env.drain.clone();
    let mut idle = false;
    let mut watermark = Timestamp::MAX;
    loop {
        if *cancel.borrow() {
            return;
        }
        let draining = drain.as_mut().is_some_and(|d| *d.borrow());
        if !draining {
            align.wait_turn(slot, &mut cancel).await;
        }
        let next = tokio::select! {
            biased;
            _ = cancel.changed() => return,
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
                align.set(slot, Timestamp::MAX);
                for (i, c) in consumers.iter_mut().enumerate() {
                    // Splits silent for the idle timeout stop holding the shard back: its
                    // watermark moves to what its splits with rows have reached.
                    if let Some(wm) = c.split_watermark(idle_timeout) {
                        if i == 0 {
                            watermark = wm;
                        }
                        if c.router
                            .send(Message::Watermark(Watermark::EventTime(wm)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    if c.router
                        .send(Message::Watermark(Watermark::Idle))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                continue;
            }
            Some(r) => r,
        };
        if idle && watermark != Timestamp::MAX {
            align.set(slot, watermark);
        }
        idle = false;
        // Splits that ended no longer hold the watermark back.
        let finished = shard.finished_splits();
        if !finished.is_empty() {
            for (i, c) in consumers.iter_mut().enumerate() {
                for f in &finished {
                    c.splits.remove(f);
                }
                if let Some(wm) = c.split_watermark(idle_timeout) {
                    if i == 0 {
                        watermark = wm;
                        align.set(slot, wm);
                    }
                    if c.router
                        .send(Message::Watermark(Watermark::EventTime(wm)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let batch = match result {
            Ok(Some(b)) if b.num_rows() == 0 => {
                // An empty batch of a split announces it.
                if let Some(s) = shard.split() {
                    for c in &mut consumers {
                        if let Err(e) = c.register(s) {
                            return env.fail(e).await;
                        }
                    }
                }
                continue;
            }
            Ok(Some(b)) => b,
            Ok(None) => {
                align.set(slot, Timestamp::MAX);
                for c in &mut consumers {
                    let _ = c.router.send(Message::End).await;
                }
                return;
            }
            Err(e) => return env.fail(with_source(e, &source)).await,
        };
        let rows = batch.num_rows();
        JobMetrics::add(&env.metrics.events_in, rows as u64);
        let split = shard.split();
        for (i, c) in consumers.iter_mut().enumerate() {
            let out = match split {
                None => {
                    let out = match c.chain.push(0, Message::Batch(batch.clone())) {
                        Ok(out) => out,
                        Err(e) => return env.fail(e).await,
                    };
                    env.drain(&mut c.chain).await;
                    out
                }
                Some(s) => {
                    if let Err(e) = c.register(s) {
                        return env.fail(e).await;
                    }
                    let Some(st) = c.splits.get_mut(&s) else {
                        return;
                    };
                    st.last_rows = std::time::Instant::now();
                    let mut out = match st.chain.push(0, Message::Batch(batch.clone())) {
                        Ok(out) => out,
                        Err(e) => return env.fail(e).await,
                    };
                    env.drain(&mut st.chain).await;
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
            if i == 0 {
                if let Some(wm) = out.iter().rev().find_map(|m| match m {
                    Message::Watermark(Watermark::EventTime(t)) => Some(*t),
                    _ => None,
                }) {
                    watermark = wm;
                    align.set(slot, wm);
                    if let Some(trace) = &env.metrics.trace {
                        if let Ok(mut t) = trace.sources.lock() {
                            t.push((std::time::Instant::now(), wm, rows));
                        }
                    }
                }
            }
            for m in out {
                if let Err(e) = c.router.send(m).await {
                    if !matches!(e, Error::Cancelled) {
                        env.fail(e).await;
                    }
                    return;
                }
            }
        }
    }
}

async fn run_stage(
    mut rx: mpsc::Receiver<Envelope>,
    mut inputs: Inputs,
    mut chain: Chain,
    mut router: Router,
    env: TaskEnv,
) {
    if let Err(e) = stage_loop(&mut rx, &mut inputs, &mut chain, &mut router, &env).await {
        if !matches!(e, Error::Cancelled) {
            env.fail(e).await;
        }
    }
}

async fn stage_loop(
    rx: &mut mpsc::Receiver<Envelope>,
    inputs: &mut Inputs,
    chain: &mut Chain,
    router: &mut Router,
    env: &TaskEnv,
) -> Result<()> {
    let mut current = Timestamp::MIN;
    let mut idle = false;
    let mut reported_state = 0u64;
    let mut cancel = env.cancel.clone();
    loop {
        let envelope = tokio::select! {
            biased;
            _ = cancel.changed() => return Err(Error::Cancelled),
            m = rx.recv() => m,
        };
        let Some(Envelope { port, sender, item }) = envelope else {
            return Err(Error::Cancelled);
        };
        let Item::Msg(msg) = item else { continue };
        let mut out = match inputs.observe(port, sender, msg) {
            Some(data) => chain.push(port, data)?,
            None => vec![],
        };
        if let Some(wm) = inputs.watermark() {
            if wm > current {
                current = wm;
                out.extend(chain.push(0, Message::Watermark(Watermark::EventTime(wm)))?);
                let size = chain.state_size() as u64;
                env.metrics
                    .state_bytes
                    .fetch_add(size.wrapping_sub(reported_state), Ordering::Relaxed);
                reported_state = size;
            }
        }
        env.drain(chain).await;
        for m in out {
            if matches!(m, Message::Watermark(Watermark::EventTime(_))) {
                idle = false;
            }
            router.send(m).await?;
        }
        if inputs.all_ended() {
            let out = chain.push(0, Message::End)?;
            env.drain(chain).await;
            for m in out {
                router.send(m).await?;
            }
            env.metrics
                .state_bytes
                .fetch_sub(reported_state, Ordering::Relaxed);
            return Ok(());
        }
        if !idle && inputs.all_idle() {
            idle = true;
            router.send(Message::Watermark(Watermark::Idle)).await?;
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

/// Spawns the tasks of a graph.
struct Spawner {
    sources: Vec<OpenSource>,
    /// Per scan of a table in the plan: one consumer per shard.
    readers: Vec<(String, Vec<Consumer>)>,
    align: Arc<Alignment>,
    next_slot: usize,
    parallelism: usize,
    env: TaskEnv,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Spawner {
    /// Spawn `flow` feeding input `port` of `targets`, partitioned by `keys`. Returns how
    /// many tasks send on that port.
    fn spawn(
        &mut self,
        flow: &Flow,
        port: usize,
        targets: &[mpsc::Sender<Envelope>],
        keys: &[Arc<dyn datafusion::physical_expr::PhysicalExpr>],
        exchange: Exchange,
    ) -> Result<usize> {
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
                        Consumer::new(
                            ops,
                            Router::new(port, i, targets.to_vec(), keys.to_vec(), exchange),
                        )
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.readers.push((name.clone(), consumers));
                Ok(shards)
            }
            Flow::Stage(stage) => self.spawn_stage(stage, port, targets, keys, exchange),
        }
    }

    /// One task per shard of each opened table, feeding every scan of that table.
    fn spawn_readers(&mut self) -> Result<()> {
        let mut readers = std::mem::take(&mut self.readers);
        for source in std::mem::take(&mut self.sources) {
            let mut per_shard: Vec<Vec<Consumer>> =
                (0..source.shards.len()).map(|_| vec![]).collect();
            for (name, consumers) in readers.iter_mut().filter(|(n, _)| *n == source.name) {
                let _ = name;
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
                self.tasks.push(tokio::spawn(run_shard(
                    shard,
                    consumers,
                    self.env.clone(),
                    source.name.clone(),
                    source.idle_timeout,
                    self.align.clone(),
                    slot,
                )));
            }
        }
        Ok(())
    }

    fn spawn_stage(
        &mut self,
        stage: &Stage,
        port: usize,
        targets: &[mpsc::Sender<Envelope>],
        keys: &[Arc<dyn datafusion::physical_expr::PhysicalExpr>],
        exchange: Exchange,
    ) -> Result<usize> {
        let p = stage.parallelism(self.parallelism);
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..p).map(|_| mpsc::channel::<Envelope>(16)).unzip();
        let mut counts = vec![];
        for (i, input) in stage.inputs.iter().enumerate() {
            counts.push(self.spawn(&input.flow, i, &senders, &input.keys, input.exchange)?);
        }
        drop(senders);
        for (j, rx) in receivers.into_iter().enumerate() {
            let chain = Chain::new(&stage.ops)?;
            let router = Router::new(port, j, targets.to_vec(), keys.to_vec(), exchange);
            self.tasks.push(tokio::spawn(run_stage(
                rx,
                Inputs::new(&counts),
                chain,
                router,
                self.env.clone(),
            )));
        }
        Ok(p)
    }
}

/// Run a pipeline to completion (bounded input) or until cancelled. `sources` are the opened
/// tables of [`Flow::sources`], each once: a table scanned twice is read once.
pub async fn run(
    pipeline: &Pipeline,
    sources: Vec<OpenSource>,
    mut sink: Box<dyn Sink>,
    ctx: RunContext,
) -> Result<Outcome> {
    let RunContext {
        metrics,
        cancel,
        mut late_sink,
        drain,
    } = ctx;
    let (tx, mut rx) = mpsc::channel::<Envelope>(16);
    let env = TaskEnv {
        metrics: metrics.clone(),
        cancel: cancel.clone(),
        drain,
        control: tx.clone(),
    };
    let shards = sources.iter().map(|s| s.shards.len()).sum();
    let drift = sources
        .iter()
        .filter_map(|s| s.max_drift_ms)
        .min()
        .unwrap_or(DEFAULT_MAX_DRIFT_MS);
    let mut spawner = Spawner {
        align: Arc::new(Alignment::new(shards, drift)),
        next_slot: 0,
        sources,
        readers: vec![],
        parallelism: pipeline.parallelism,
        env,
        tasks: vec![],
    };
    let producers = spawner
        .spawn(&pipeline.root, 0, &[tx], &[], Exchange::Hash)
        .and_then(|p| spawner.spawn_readers().map(|_| p));
    let _abort_on_exit = AbortOnDrop(std::mem::take(&mut spawner.tasks));
    drop(spawner);
    let producers = producers?;
    let result: Result<Outcome> = async {
        let mut inputs = Inputs::new(&[producers]);
        let mut cancel = cancel;
        let mut tick =
            tokio::time::interval(Duration::from_millis(sink.tick_interval_ms().max(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut outcome = Outcome::Finished;
        let mut sink_watermark = Timestamp::MIN;
        while !inputs.all_ended() {
            let envelope = tokio::select! {
                biased;
                _ = cancel.changed() => { outcome = Outcome::Stopped; break }
                m = rx.recv() => m,
                _ = tick.tick() => {
                    sink.tick().await?;
                    continue
                }
            };
            let Some(Envelope { port, sender, item }) = envelope else {
                if *cancel.borrow() {
                    outcome = Outcome::Stopped;
                    break;
                }
                return Err(Error::Execution {
                    operator: "runtime".into(),
                    message: "every task stopped before the end of input".into(),
                });
            };
            match item {
                Item::Failed(e) => return Err(e),
                Item::Late(batches) => write_late(&mut late_sink, batches).await?,
                Item::Msg(msg) => {
                    if let Some(Message::Batch(b)) = inputs.observe(port, sender, msg) {
                        JobMetrics::add(&metrics.rows_out, b.num_rows() as u64);
                        sink.write_batch(b).await?;
                    }
                    if let Some(wm) = inputs.watermark() {
                        if wm > sink_watermark {
                            sink_watermark = wm;
                            if wm < Timestamp::MAX {
                                metrics.watermark.fetch_max(wm, Ordering::Relaxed);
                            }
                            if let Some(trace) = &metrics.trace {
                                if let Ok(mut t) = trace.sink.lock() {
                                    t.push((std::time::Instant::now(), wm));
                                }
                            }
                        }
                    }
                }
            }
        }
        if outcome == Outcome::Finished {
            // Late rows or errors reported just before the end.
            while let Ok(Envelope { item, .. }) = rx.try_recv() {
                match item {
                    Item::Failed(e) => return Err(e),
                    Item::Late(batches) => write_late(&mut late_sink, batches).await?,
                    Item::Msg(_) => {}
                }
            }
        }
        sink.finish().await?;
        if let Some(late) = late_sink.as_mut() {
            late.finish().await?;
        }
        Ok(outcome)
    }
    .await;
    if result.is_err() {
        // A failed job publishes nothing half-written (in-progress files and uploads).
        sink.abort().await;
        if let Some(late) = late_sink.as_mut() {
            late.abort().await;
        }
    }
    result
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
