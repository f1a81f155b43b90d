//! Source tasks: a shard's [`Reader`] is the task's input, its [`SourceBody`] the per-shard
//! operators of every branch that scans the table; [`run_task`] drives them.
//!
//! The reader pulls batches from its [`SourceShard`], waits its turn under watermark
//! [`Alignment`], goes idle after the source's idle timeout, and turns barrier requests into
//! barriers at the first record boundary it can name as a position. Barriers never wait
//! behind alignment. After a stop barrier it reads nothing more, but still acknowledges
//! completed checkpoints to the system it reads (Kafka offsets). Draining ends it as if its
//! input had ended.
//!
//! The body keeps, for shards that read several splits (Kinesis shards, Kafka partitions), a
//! chain of per-shard operators per split, so each split has its own watermark generator, and
//! sends on the minimum over its live splits (see the runtime's module doc).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::checkpoint::{self, Ack, BarrierRequest};
use super::task::{Step, TaskBody, TaskEvent, TaskInput, run_task};
use super::{Chain, JobMetrics, OutputExchange, TaskEnv, YIELD_EVERY, with_source};
use crate::connectors::SourceShard;
use crate::message::{Barrier, Message, Timestamp, Watermark};
use crate::operators::OpSpec;
use crate::{Error, Result};

/// Watermark alignment of a job's source shards (Flink's `scan.watermark.alignment`): a shard
/// whose watermark is more than `max_drift` ahead of the slowest active shard waits. Without
/// it, a join of two sources (or a window over shards read at different speeds) would buffer
/// the faster input without bound while the watermark waits for the slower one.
pub(crate) struct Alignment {
    /// Per shard: its watermark; `i64::MAX` when it has none yet, is idle or has ended.
    watermarks: Vec<std::sync::atomic::AtomicI64>,
    max_drift: i64,
    moved: tokio::sync::Notify,
}

impl Alignment {
    pub(crate) fn new(shards: usize, max_drift: i64) -> Self {
        Self {
            watermarks: (0..shards)
                .map(|_| std::sync::atomic::AtomicI64::new(Timestamp::MAX))
                .collect(),
            max_drift,
            moved: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn set(&self, shard: usize, wm: Timestamp) {
        if let Some(w) = self.watermarks.get(shard) {
            let old = w.swap(wm, Ordering::Relaxed);
            if old != wm {
                self.moved.notify_waiters();
            }
        }
    }

    /// Whether `shard` may read on: it is not too far ahead of the slowest shard.
    fn may_read(&self, shard: usize) -> bool {
        let Some(mine) = self
            .watermarks
            .get(shard)
            .map(|w| w.load(Ordering::Relaxed))
        else {
            return true;
        };
        let slowest = self
            .watermarks
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .min()
            .unwrap_or(Timestamp::MAX);
        mine == Timestamp::MAX || mine <= slowest.saturating_add(self.max_drift)
    }

    /// Wait while `shard` is too far ahead of the slowest shard.
    async fn wait_turn(&self, shard: usize, cancel: &mut watch::Receiver<bool>) {
        loop {
            if self.may_read(shard) {
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

/// One branch of the plan reading a shard: its per-shard operators and where their output goes.
pub(super) struct Consumer {
    chain: Chain,
    router: Box<dyn OutputExchange>,
    /// The per-shard operators, for shards that read several splits.
    specs: Vec<OpSpec>,
    /// Per split (Kinesis shard, Kafka partition): its own operators (so its own watermark
    /// generator), its watermark, and when it last had rows (for idleness).
    splits: HashMap<u64, SplitState>,
    /// The watermark sent on for a multi-split shard: the minimum over its live splits.
    emitted: Timestamp,
}

/// One split of a multi-split shard (see [`Consumer`]).
struct SplitState {
    chain: Chain,
    watermark: Timestamp,
    last_rows: Instant,
}

impl Consumer {
    pub(super) fn new(specs: &[OpSpec], router: Box<dyn OutputExchange>) -> Result<Self> {
        Ok(Self {
            chain: Chain::new(specs)?,
            router,
            specs: specs.to_vec(),
            splits: Default::default(),
            emitted: Timestamp::MIN,
        })
    }

    /// Split `s`, made known if it was not: a split announced before its first rows holds
    /// the watermark back until it has rows (or goes idle).
    fn split(&mut self, s: u64) -> Result<&mut SplitState> {
        if !self.splits.contains_key(&s) {
            let state = SplitState {
                chain: Chain::new(&self.specs)?,
                watermark: Timestamp::MIN,
                last_rows: Instant::now(),
            };
            self.splits.insert(s, state);
        }
        self.splits.get_mut(&s).ok_or_else(|| Error::Execution {
            operator: "source".into(),
            message: format!("split {s} vanished"),
        })
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

    /// Rows of the shard through this branch's operators (those of their split, if any).
    async fn push(
        &mut self,
        env: &TaskEnv,
        split: Option<u64>,
        rows: &RecordBatch,
        idle_timeout: Option<Duration>,
    ) -> Result<Vec<Message>> {
        let Some(s) = split else {
            let out = self.chain.push(0, Message::Batch(rows.clone()))?;
            env.drain(&mut self.chain).await;
            return Ok(out);
        };
        let st = self.split(s)?;
        st.last_rows = Instant::now();
        let mut out = st.chain.push(0, Message::Batch(rows.clone()))?;
        env.drain(&mut st.chain).await;
        // The split's watermark is kept; the shard's is the minimum over splits.
        out.retain(|m| match m {
            Message::Watermark(Watermark::EventTime(t)) => {
                st.watermark = st.watermark.max(*t);
                false
            }
            _ => true,
        });
        if let Some(wm) = self.split_watermark(idle_timeout) {
            out.push(Message::Watermark(Watermark::EventTime(wm)));
        }
        Ok(out)
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

/// A source task's input: its shard, read under alignment, with barriers injected.
pub(super) struct Reader {
    shard: Box<dyn SourceShard>,
    align: Arc<Alignment>,
    slot: usize,
    idle_timeout: Option<Duration>,
    /// Idle again every idle timeout while nothing arrives (the watermark advances each time).
    idle_repeats: bool,
    cancel: watch::Receiver<bool>,
    drain: Option<watch::Receiver<bool>>,
    barriers: watch::Receiver<BarrierRequest>,
    completed: watch::Receiver<u64>,
    /// The last epoch injected. Requests made before the task started count too (a stop
    /// right after the start): the initial request is epoch 0.
    injected: u64,
    /// A barrier requested and not injected yet (waiting for a record boundary).
    pending: Option<BarrierRequest>,
    /// Went idle and has had nothing since.
    idle: bool,
    /// Injected a stop barrier: reads nothing more.
    stopped: bool,
    /// Restored as finished, or ended: the next event is the end.
    done: bool,
    /// Positions of checkpoints taken and not yet known complete, oldest first.
    uncompleted: VecDeque<(u64, Value)>,
    /// Events decided but not handed out yet (the splits that ended before a batch).
    queued: VecDeque<TaskEvent>,
    last_yield: Instant,
}

impl Reader {
    pub(super) fn new(
        shard: Box<dyn SourceShard>,
        env: &TaskEnv,
        align: Arc<Alignment>,
        slot: usize,
        idle_timeout: Option<Duration>,
        idle_repeats: bool,
    ) -> Self {
        Self {
            shard,
            align,
            slot,
            idle_timeout,
            idle_repeats,
            cancel: env.cancel.clone(),
            drain: env.drain.clone(),
            barriers: env.barriers.clone(),
            completed: env.completed.clone(),
            injected: 0,
            pending: None,
            idle: false,
            stopped: false,
            done: false,
            uncompleted: Default::default(),
            queued: Default::default(),
            last_yield: Instant::now(),
        }
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

    /// Note a barrier request newer than the last barrier injected.
    fn requested(&mut self) {
        let req = *self.barriers.borrow_and_update();
        if req.epoch > self.injected {
            self.pending = Some(req);
        }
    }

    /// After a stop barrier: nothing more is read, but completions are still acknowledged,
    /// until the job is cancelled.
    async fn stopped(&mut self) -> Result<Option<TaskEvent>> {
        loop {
            let completed = tokio::select! {
                _ = self.cancel.wait_for(|c| *c) => false,
                r = self.completed.changed() => r.is_ok(),
            };
            if !completed {
                return Err(Error::Cancelled);
            }
            let epoch = *self.completed.borrow_and_update();
            self.checkpoint_completed(epoch);
        }
    }
}

impl TaskInput for Reader {
    fn retry_is_cheap(&self) -> bool {
        self.shard.reads_without_waiting()
    }

    async fn next(&mut self) -> Result<Option<TaskEvent>> {
        // A source decodes and routes synchronously: hand the worker back every few
        // milliseconds, so timers (checkpoint triggers, file rolling) and other tasks are not
        // held up for a whole cooperative budget of batches. Yielding after every batch cost
        // 8-11% on the fastest Nexmark queries.
        if self.last_yield.elapsed() >= YIELD_EVERY {
            tokio::task::yield_now().await;
            self.last_yield = Instant::now();
        }
        loop {
            if let Some(ev) = self.queued.pop_front() {
                return Ok(Some(ev));
            }
            if self.stopped {
                return self.stopped().await;
            }
            if *self.cancel.borrow() {
                return Err(Error::Cancelled);
            }
            if self.done {
                self.done = false;
                self.stopped = true;
                return Ok(Some(TaskEvent::End {
                    position: self.shard.position(),
                }));
            }
            if let Some(req) = self.pending
                && let Some(position) = self.shard.position()
            {
                self.pending = None;
                self.injected = req.epoch;
                self.uncompleted.push_back((req.epoch, position.clone()));
                // Stop with a final checkpoint: nothing after the barrier, but its completion
                // is still acknowledged (Kafka offsets).
                self.stopped = req.stop;
                return Ok(Some(TaskEvent::Barrier {
                    barrier: Barrier { epoch: req.epoch },
                    position: Some(position),
                }));
            }
            let draining = self.drain.as_mut().is_some_and(|d| *d.borrow());
            // A shard that never waits, with its turn under alignment and nothing to react
            // to: read it directly (racing it against barrier and completion notices costs
            // more than the batch, for a generator's small batches). Those notices are
            // looked at before each batch instead.
            if !draining && self.pending.is_none() && self.shard.reads_without_waiting() {
                if self.barriers.has_changed().unwrap_or(false) {
                    self.requested();
                    continue;
                }
                if self.completed.has_changed().unwrap_or(false) {
                    let epoch = *self.completed.borrow_and_update();
                    self.checkpoint_completed(epoch);
                    continue;
                }
                if self.align.may_read(self.slot) {
                    let read = self.shard.next_batch().await;
                    self.take(read)?;
                    continue;
                }
            }
            if !draining && self.pending.is_none() {
                // Barriers never wait behind watermark alignment.
                let requested = tokio::select! {
                    _ = self.align.wait_turn(self.slot, &mut self.cancel) => None,
                    r = self.barriers.changed() => Some(r.is_ok()),
                };
                match requested {
                    Some(true) => {
                        self.requested();
                        continue;
                    }
                    Some(false) => continue,
                    None => {}
                }
            }
            enum Next {
                Requested,
                Completed,
                Read(Option<Result<Option<RecordBatch>>>),
            }
            let (idle_timeout, idle, pending) = (
                self.idle_timeout,
                self.idle && !self.idle_repeats,
                self.pending.is_some(),
            );
            let (shard, drain) = (&mut self.shard, &mut self.drain);
            let next = tokio::select! {
                biased;
                _ = self.cancel.changed() => return Err(Error::Cancelled),
                r = self.barriers.changed(), if !pending => {
                    if r.is_err() {
                        continue;
                    }
                    Next::Requested
                }
                r = self.completed.changed() => {
                    if r.is_err() {
                        continue;
                    }
                    Next::Completed
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
                } => Next::Read(Some(Ok(None))),
                r = async {
                    if draining { Ok(None) } else { shard.next_batch().await }
                } => Next::Read(Some(r)),
                _ = async {
                    match idle_timeout {
                        Some(d) if !idle => tokio::time::sleep(d).await,
                        _ => std::future::pending::<()>().await,
                    }
                } => Next::Read(None),
            };
            let next = match next {
                Next::Requested => {
                    self.requested();
                    continue;
                }
                Next::Completed => {
                    let epoch = *self.completed.borrow_and_update();
                    self.checkpoint_completed(epoch);
                    continue;
                }
                Next::Read(r) => r,
            };
            let Some(result) = next else {
                self.idle = true;
                return Ok(Some(TaskEvent::Idle));
            };
            self.take(result)?;
        }
    }
}

impl Reader {
    /// What a read gave: queue its events (ended splits, an announced split, rows, the end).
    fn take(&mut self, result: Result<Option<RecordBatch>>) -> Result<()> {
        self.idle = false;
        // Splits that ended no longer hold the watermark back.
        let finished = self.shard.finished_splits();
        if !finished.is_empty() {
            self.queued.push_back(TaskEvent::SplitsEnded(finished));
        }
        match result? {
            Some(b) if b.num_rows() == 0 => {
                // An empty batch of a split announces it.
                if let Some(s) = self.shard.split() {
                    self.queued.push_back(TaskEvent::SplitStarted(s));
                }
            }
            Some(rows) => self.queued.push_back(TaskEvent::Batch {
                port: 0,
                split: self.shard.split(),
                rows,
            }),
            None => self.done = true,
        }
        Ok(())
    }
}

/// A source task's body: every branch's per-shard operators, and the shard's checkpoint
/// identity.
pub(super) struct SourceBody {
    pub(super) consumers: Vec<Consumer>,
    pub(super) env: TaskEnv,
    pub(super) align: Arc<Alignment>,
    pub(super) slot: usize,
    pub(super) idle_timeout: Option<Duration>,
    /// See [`super::OpenSource::idle_advance_ms`].
    pub(super) idle_advance_ms: Option<i64>,
    /// Task number, for checkpoint acknowledgements.
    pub(super) task: usize,
    /// `table:shard`: where its position is kept in a checkpoint.
    pub(super) key: String,
    /// Rows read from the shard, over every run (part of its checkpointed position).
    pub(super) rows: u64,
    /// The first branch's last watermark, which alignment compares.
    pub(super) watermark: Timestamp,
    /// Went idle (alignment no longer counts the shard) and has had nothing since.
    pub(super) idle: bool,
}

impl SourceBody {
    fn chains(&mut self) -> Result<Value> {
        Ok(Value::Array(
            self.consumers
                .iter_mut()
                .map(|c| c.snapshot())
                .collect::<Result<Vec<_>>>()?,
        ))
    }

    /// Take up where a checkpoint left the shard's operators. `false`: it had finished.
    fn restore(&mut self, state: &Value) -> Result<bool> {
        self.rows = state.get("rows").and_then(Value::as_u64).unwrap_or(0);
        if let Some(Value::Array(chains)) = state.get("chains") {
            for (c, s) in self.consumers.iter_mut().zip(chains) {
                c.restore(s)?;
            }
        }
        Ok(state.get("done").and_then(Value::as_bool) != Some(true))
    }

    /// Send `wm` on through branch `i`; the first branch's watermark is the shard's.
    fn note_watermark(&mut self, i: usize, wm: Timestamp) {
        if i == 0 {
            self.watermark = wm;
            self.align.set(self.slot, wm);
        }
    }

    async fn send_all(&mut self, msg: Message) -> Result<()> {
        for c in &mut self.consumers {
            c.router.send(msg.clone()).await?;
        }
        Ok(())
    }
}

impl TaskBody for SourceBody {
    type Output = ();
    type Mail = ();
    const MAILBOX: bool = false;

    async fn on_event(&mut self, ev: TaskEvent) -> Result<Step<()>> {
        if matches!(ev, TaskEvent::Idle) {
            self.idle = true;
            self.align.set(self.slot, Timestamp::MAX);
            let idle_timeout = self.idle_timeout;
            if let Some(delay) = self.idle_advance_ms {
                // The wall clock moves the watermark of a quiet single-split shard on.
                let wm = chrono::Utc::now().timestamp_millis().saturating_sub(delay);
                for (i, c) in self.consumers.iter_mut().enumerate() {
                    if !c.splits.is_empty() {
                        continue;
                    }
                    let out = c
                        .chain
                        .push(0, Message::Watermark(Watermark::EventTime(wm)))?;
                    self.env.drain(&mut c.chain).await;
                    for m in out {
                        if let (0, Message::Watermark(Watermark::EventTime(t))) = (i, &m) {
                            self.watermark = *t;
                        }
                        c.router.send(m).await?;
                    }
                }
            }
            for (i, c) in self.consumers.iter_mut().enumerate() {
                // Splits silent for the idle timeout stop holding the shard back: its
                // watermark moves to what its splits with rows have reached.
                if let Some(wm) = c.split_watermark(idle_timeout) {
                    if i == 0 {
                        self.watermark = wm;
                    }
                    c.router
                        .send(Message::Watermark(Watermark::EventTime(wm)))
                        .await?;
                }
                c.router.send(Message::Watermark(Watermark::Idle)).await?;
            }
            return Ok(Step::Continue);
        }
        if !matches!(ev, TaskEvent::Barrier { .. }) {
            if self.idle && self.watermark != Timestamp::MAX {
                self.align.set(self.slot, self.watermark);
            }
            self.idle = false;
        }
        match ev {
            TaskEvent::SplitsEnded(ended) => {
                for i in 0..self.consumers.len() {
                    let c = &mut self.consumers[i];
                    for f in &ended {
                        c.splits.remove(f);
                    }
                    if let Some(wm) = c.split_watermark(self.idle_timeout) {
                        c.router
                            .send(Message::Watermark(Watermark::EventTime(wm)))
                            .await?;
                        self.note_watermark(i, wm);
                    }
                }
            }
            TaskEvent::SplitStarted(s) => {
                for c in &mut self.consumers {
                    c.split(s)?;
                }
            }
            TaskEvent::Batch { split, rows, .. } => {
                let n = rows.num_rows();
                JobMetrics::add(&self.env.metrics.events_in, n as u64);
                self.rows += n as u64;
                for i in 0..self.consumers.len() {
                    let out = self.consumers[i]
                        .push(&self.env, split, &rows, self.idle_timeout)
                        .await?;
                    if i == 0
                        && let Some(wm) = out.iter().rev().find_map(|m| match m {
                            Message::Watermark(Watermark::EventTime(t)) => Some(*t),
                            _ => None,
                        })
                    {
                        self.note_watermark(0, wm);
                        if let Some(trace) = &self.env.metrics.trace
                            && let Ok(mut tr) = trace.sources.lock()
                        {
                            tr.push((Instant::now(), wm, n));
                        }
                    }
                    for m in out {
                        self.consumers[i].router.send(m).await?;
                    }
                }
            }
            TaskEvent::Barrier { barrier, position } => {
                let state =
                    json!({ "position": position, "chains": self.chains()?, "rows": self.rows });
                let _ = self.env.acks.send(Ack::Source {
                    task: self.task,
                    epoch: barrier.epoch,
                    shards: vec![(self.key.clone(), state)],
                });
                self.send_all(Message::Barrier(barrier)).await?;
            }
            TaskEvent::End { position } => {
                self.align.set(self.slot, Timestamp::MAX);
                for c in &mut self.consumers {
                    let _ = c.router.send(Message::End).await;
                }
                // Tell the coordinator where the shard ended: part of every later checkpoint.
                let chains = self.chains().unwrap_or(Value::Null);
                let _ = self.env.acks.send(Ack::Finished {
                    task: self.task,
                    shards: vec![(
                        self.key.clone(),
                        checkpoint::done_position(chains, self.rows, position),
                    )],
                });
                return Ok(Step::Done(()));
            }
            TaskEvent::Watermark(_) | TaskEvent::Idle => {}
        }
        Ok(Step::Continue)
    }
}

/// A source shard's task. A table scanned by several branches of a plan (a self-join, as in
/// Nexmark q5 and q7) is read once: each batch goes through every branch's operators.
pub(super) async fn run_source(
    mut reader: Reader,
    mut body: SourceBody,
    source: String,
    restored: Option<Value>,
) {
    if let Some(state) = restored {
        let resumed = body.restore(&state).and_then(|running| {
            match state.get("position") {
                Some(p) if running => reader.shard.restore(p)?,
                _ => {}
            }
            Ok(running)
        });
        match resumed {
            Ok(running) => reader.done = !running,
            Err(e) => return body.env.fail(with_source(e, &source)).await,
        }
    }
    let mut cancel = body.env.cancel.clone();
    if let Err(e) = run_task(&mut reader, &mut body, &mut cancel).await
        && !matches!(e, Error::Cancelled)
    {
        body.env.fail(with_source(e, &source)).await;
    }
}
