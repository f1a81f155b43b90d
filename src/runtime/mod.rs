//! The runtime: runs a [`Pipeline`]'s dataflow graph.
//!
//! ```text
//!  shard 0 ─► [watermark gen, stateless ops] ─┐ exchange         ┌─► stage instance 0 ─┐
//!  shard 1 ─► [watermark gen, stateless ops] ─┼─ (key groups, ──►┤                     ├─► sink
//!  shard n ─► [watermark gen, stateless ops] ─┘  split by take)  └─► stage instance P-1 ┘
//! ```
//!
//! Every source shard, every stage instance and the sink is a task, and every task runs the
//! same loop ([`task::run_task`]): an *input* hands events to a *body*. A stage (and the sink)
//! reads its inputs through an [`gate::InputGate`]: one bounded channel per producer
//! (backpressure), watermarks merged (min over non-idle inputs; finished inputs count as +∞)
//! and checkpoint barriers aligned, all in one place. A source shard's input is its reader
//! ([`source`]): the shard, watermark alignment and barrier injection. The body pushes batches
//! and watermarks through its operators ([`chain::Chain`]) and hands what comes out to its
//! [`Router`]: split by key group over the next stage's instances, or all to one. Watermarks,
//! idleness, barriers and `End` are broadcast. Operators never see channels. This module only
//! spawns the tasks of a graph.
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
//!   shard's I/O. Splittable sources (Nexmark) default to P shards.
//! - Source watermark alignment ([`source::Alignment`]): a shard more than a max drift ahead of the
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
//!   ([`Durability::stop`]): the sources stop after a last barrier, which is committed.

mod chain;
pub mod checkpoint;
pub mod exchange;
pub(crate) mod gate;
pub mod metrics;
mod sink;
mod source;
mod stage;
mod task;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, watch};

pub use chain::Chain;
pub use exchange::{OutputExchange, Router};
pub use metrics::JobMetrics;

use crate::connectors::{Sink, SourceShard};
use crate::graph::{Exchange, Flow, Pipeline, Stage};
use crate::message::{Message, Timestamp};
use crate::state::KeyGroupRange;
use crate::{Error, Result};
use checkpoint::{Ack, BarrierRequest, Checkpointing, Coordinator};
use gate::InputGate;
use sink::{SinkControls, SinkDriver};
use source::{Alignment, Consumer, Reader, SourceBody};
use stage::StageBody;

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
    /// `'scan.watermark.idle-advance'` (http tables): while the source is idle, every idle
    /// timeout its watermark moves to the wall clock minus this delay (ms).
    pub idle_advance_ms: Option<i64>,
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
                let reader = Reader::new(
                    shard,
                    &self.env,
                    self.align.clone(),
                    slot,
                    source.idle_timeout,
                    source.idle_advance_ms.is_some(),
                );
                let body = SourceBody {
                    consumers,
                    env: self.env.clone(),
                    align: self.align.clone(),
                    slot,
                    idle_timeout: source.idle_timeout,
                    idle_advance_ms: source.idle_advance_ms,
                    task,
                    key,
                    rows: 0,
                    watermark: Timestamp::MAX,
                    idle: false,
                };
                self.tasks.push(tokio::spawn(source::run_source(
                    reader,
                    body,
                    source.name.clone(),
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
            self.tasks.push(tokio::spawn(stage::run_stage(
                InputGate::new(inputs, self.env.exactly_once),
                StageBody {
                    chain,
                    router: Box::new(router),
                    env: self.env.clone(),
                    task,
                    op_ids: op_ids.clone(),
                    range,
                    reported_state: 0,
                },
            )));
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
    // A statement set's flows feed the sink's inputs (ports) of their tables.
    let spawned = pipeline
        .roots()
        .into_iter()
        .try_for_each(|(port, flow)| spawner.spawn(flow, port, &mut root, &[], Exchange::Hash))
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
    let result = SinkDriver::new(
        &mut sink,
        &mut late_sink,
        &metrics,
        coordinator.as_mut(),
        SinkControls {
            barriers: barrier_tx,
            completed: completed_tx,
            cancel,
            stop,
            now: checkpoint_now,
            control_rx: &mut control_rx,
            ack_rx: &mut ack_rx,
        },
    )
    .run(gate)
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
