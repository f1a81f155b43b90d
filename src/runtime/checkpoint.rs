//! Checkpoints: the coordinator's side of the protocol, what a restore reads back, and
//! retention.
//!
//! ```text
//!  tick ──► Barrier(n) requested from every source task (watch channel: never queued)
//!  source task: at its next record boundary → position + watermarks → Ack, Barrier(n) on
//!  stage task:  gate aligned Barrier(n) → operator snapshots → Ack, Barrier(n) on
//!  sink:        gate aligned Barrier(n) → pre_commit(n) (close epoch n's files)
//!  every live task acked n ──► background: state files, sources.json, sinks.json,
//!                              manifest.json, then epochs/epoch-n.json created if absent
//!                              (THE commit point)
//!                          ──► sink.commit(n) (idempotent) ──► chk-n/committed ──► retention
//! ```
//!
//! At most one checkpoint is in flight; a tick that finds one open is skipped. Tasks that
//! have finished (bounded input) count as having acked every later barrier; a source that
//! finished reports its final position once, and it is part of every later checkpoint.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::state::store::{
    CheckpointStore, EpochRecord, Manifest, OperatorEntry, StateFile, chk_dir, epoch_file,
};
use crate::state::{KeyGroupRange, StateSnapshot, from_ipc, to_ipc};
use crate::{Error, Result};

/// Checkpoint settings (Flink's names; see [`crate::engine`]).
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// `'execution.checkpointing.interval'`.
    pub interval: Duration,
    /// `'execution.checkpointing.timeout'`.
    pub timeout: Duration,
    /// `'state.checkpoints.num-retained'`.
    pub retained: usize,
    /// `'execution.checkpointing.tolerable-failed-checkpoints'`.
    pub tolerable_failures: u64,
    /// `'execution.checkpointing.mode'`: EXACTLY_ONCE aligns barriers; AT_LEAST_ONCE does not.
    pub exactly_once: bool,
    /// `'execution.checkpointing.min-pause'`.
    pub min_pause: Duration,
    /// `'pipeline.max-parallelism'`: the number of key groups.
    pub key_groups: usize,
}

/// A job's checkpointing: where, how often, and what it restores.
pub struct Checkpointing {
    pub(crate) store: CheckpointStore,
    /// The settings.
    pub config: CheckpointConfig,
    pub(crate) lineage: String,
    /// The checkpoint this run starts from.
    pub(crate) restored: Option<Restored>,
    /// `--allow-non-restored-state`.
    pub(crate) allow_unclaimed: bool,
}

impl Checkpointing {
    /// How many shards of `table` whose names start with `prefix` the restored checkpoint
    /// has positions for (a generator must keep its shard count).
    pub(crate) fn restored_shards(&self, table: &str, prefix: &str) -> Option<usize> {
        let r = self.restored.as_ref()?;
        let p = format!("{table}:{prefix}");
        let n = r.sources.keys().filter(|k| k.starts_with(&p)).count();
        (n > 0).then_some(n)
    }
}

/// Merge what a sink pre-committed for a failed checkpoint (`carried`) into the next one's:
/// a sink's info is a JSON object of arrays (or null), and arrays under one key are
/// concatenated, so the next completed checkpoint publishes both.
pub(crate) fn merge_sink_info(carried: Value, next: Value) -> Value {
    match (carried, next) {
        (Value::Null, n) => n,
        (c, Value::Null) => c,
        (Value::Object(mut c), Value::Object(n)) => {
            for (k, v) in n {
                match (c.get_mut(&k), v) {
                    // A statement set's sinks (`FanOutSink`): merged sink by sink.
                    (Some(Value::Array(a)), Value::Array(b)) if k == "fanout" => {
                        let old = std::mem::take(a);
                        let mut old = old.into_iter();
                        *a = b
                            .into_iter()
                            .map(|n| merge_sink_info(old.next().unwrap_or(Value::Null), n))
                            .collect();
                    }
                    (Some(Value::Array(a)), Value::Array(b)) => a.extend(b),
                    (_, v) => {
                        c.insert(k, v);
                    }
                }
            }
            Value::Object(c)
        }
        (_, n) => n,
    }
}

/// What a restore read from a checkpoint.
#[derive(Debug, Clone, Default)]
pub(crate) struct Restored {
    pub epoch: u64,
    pub time_ms: i64,
    pub finished: bool,
    pub committed: bool,
    pub events_in: u64,
    /// Per operator id: the pieces of its state (one per old key-group range).
    pub ops: HashMap<String, Vec<(KeyGroupRange, StateSnapshot)>>,
    /// Operator descriptions, for messages.
    pub descriptions: HashMap<String, String>,
    /// Per source shard key (`table:shard`): position and watermarks.
    pub sources: BTreeMap<String, Value>,
    /// What the sink had to publish at that checkpoint.
    pub sink: Value,
    /// How long reading it took (ms).
    pub load_ms: u64,
}

/// What a task reports to the coordinator.
pub(crate) enum Ack {
    /// A stage instance snapshotted its operators for `epoch`.
    Stage {
        task: usize,
        epoch: u64,
        ops: Vec<(String, KeyGroupRange, StateSnapshot)>,
    },
    /// A source task recorded its shard's position for `epoch`.
    Source {
        task: usize,
        epoch: u64,
        shards: Vec<(String, Value)>,
    },
    /// A task finished (its inputs ended); a source says where its shard ended.
    Finished {
        task: usize,
        shards: Vec<(String, Value)>,
    },
}

/// A barrier request to the source tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BarrierRequest {
    pub epoch: u64,
    /// Stop after this barrier (stop with a final checkpoint).
    pub stop: bool,
}

struct InFlight {
    epoch: u64,
    started: Instant,
    stop: bool,
    acked: HashSet<usize>,
    ops: Vec<(String, KeyGroupRange, StateSnapshot)>,
    sources: BTreeMap<String, Value>,
    sink: Option<(Value, Instant)>,
}

/// The coordinator's bookkeeping (it runs in the sink's task: see [`super::run`]).
pub(crate) struct Coordinator {
    pub(crate) cp: Checkpointing,
    tasks: HashSet<usize>,
    finished_sources: BTreeMap<String, Value>,
    descriptions: BTreeMap<String, String>,
    parallelism: usize,
    next_epoch: u64,
    in_flight: Option<InFlight>,
    last_done: Instant,
    failures: u64,
    pub(crate) events_before: u64,
    /// What the sink pre-committed for checkpoints that then failed: published with the next
    /// checkpoint that completes (see [`merge_sink_info`]).
    carried: Value,
}

/// A checkpoint whose files are being written.
pub(crate) struct Writing {
    pub epoch: u64,
    pub started: Instant,
    pub aligned_ms: u64,
    pub stop: bool,
    pub sink: Value,
}

impl Coordinator {
    pub(crate) fn new(
        cp: Checkpointing,
        tasks: usize,
        descriptions: BTreeMap<String, String>,
        parallelism: usize,
    ) -> Self {
        let (next_epoch, events_before, finished_sources) = match &cp.restored {
            Some(r) => (r.epoch + 1, r.events_in, BTreeMap::new()),
            None => (1, 0, BTreeMap::new()),
        };
        Self {
            cp,
            tasks: (0..tasks).collect(),
            finished_sources,
            descriptions,
            parallelism,
            next_epoch,
            in_flight: None,
            last_done: Instant::now(),
            failures: 0,
            events_before,
            carried: Value::Null,
        }
    }

    /// Whether a periodic checkpoint is due.
    pub(crate) fn due(&self) -> bool {
        self.in_flight.is_none() && self.last_done.elapsed() >= self.cp.config.min_pause
    }

    /// Whether the checkpoint in flight has run past its timeout.
    pub(crate) fn timed_out(&self) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|f| f.started.elapsed() > self.cp.config.timeout)
    }

    /// Start checkpoint n: returns the barrier request for the sources.
    pub(crate) fn trigger(&mut self, stop: bool) -> BarrierRequest {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.in_flight = Some(InFlight {
            epoch,
            started: Instant::now(),
            stop,
            acked: HashSet::new(),
            ops: vec![],
            sources: BTreeMap::new(),
            sink: None,
        });
        BarrierRequest { epoch, stop }
    }

    /// Give up the checkpoint in flight (timeout, or the job ended before it completed).
    pub(crate) fn abandon(&mut self) -> Option<u64> {
        let f = self.in_flight.take()?;
        if let Some((info, _)) = f.sink {
            self.carry(info);
        }
        Some(f.epoch)
    }

    /// Keep what the sink pre-committed for a checkpoint that will not complete.
    pub(crate) fn carry(&mut self, info: Value) {
        let carried = std::mem::take(&mut self.carried);
        self.carried = merge_sink_info(carried, info);
    }

    /// Whether a stop checkpoint is in flight.
    pub(crate) fn stopping(&self) -> bool {
        self.in_flight.as_ref().is_some_and(|f| f.stop)
    }

    pub(crate) fn on_ack(&mut self, ack: Ack) {
        match ack {
            Ack::Stage { task, epoch, ops } => {
                if let Some(f) = self.in_flight.as_mut().filter(|f| f.epoch == epoch) {
                    f.acked.insert(task);
                    f.ops.extend(ops);
                }
            }
            Ack::Source {
                task,
                epoch,
                shards,
            } => {
                if let Some(f) = self.in_flight.as_mut().filter(|f| f.epoch == epoch) {
                    f.acked.insert(task);
                    f.sources.extend(shards);
                }
            }
            Ack::Finished { task, shards } => {
                self.tasks.remove(&task);
                self.finished_sources.extend(shards);
            }
        }
    }

    /// The sink aligned barrier `epoch` and pre-committed `info`.
    pub(crate) fn on_sink(&mut self, epoch: u64, info: Value) {
        if let Some(f) = self.in_flight.as_mut().filter(|f| f.epoch == epoch) {
            f.sink = Some((info, Instant::now()));
        }
    }

    /// If every live task and the sink acked the checkpoint in flight, hand out what to
    /// write (the write itself runs in the background).
    pub(crate) fn take_complete(
        &mut self,
    ) -> Option<(
        Writing,
        impl std::future::Future<Output = Result<Manifest>> + use<>,
    )> {
        let f = self.in_flight.as_ref()?;
        if f.sink.is_none() || !self.tasks.iter().all(|t| f.acked.contains(t)) {
            return None;
        }
        let f = self.in_flight.take()?;
        let (sink, aligned_at) = f.sink?;
        let sink = merge_sink_info(std::mem::take(&mut self.carried), sink);
        let mut sources = self.finished_sources.clone();
        sources.extend(f.sources);
        let writing = Writing {
            epoch: f.epoch,
            started: f.started,
            aligned_ms: aligned_at.duration_since(f.started).as_millis() as u64,
            stop: f.stop,
            sink: sink.clone(),
        };
        let job = self.write_job(f.epoch, f.ops, sources, sink, false);
        Some((writing, job))
    }

    /// The final checkpoint at the end of bounded input: every source finished, no operator
    /// state left (everything fired), the sink's last files.
    pub(crate) fn final_checkpoint(
        &mut self,
        sink: Value,
    ) -> (
        u64,
        impl std::future::Future<Output = Result<Manifest>> + use<>,
    ) {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let sources = self.finished_sources.clone();
        let sink = merge_sink_info(std::mem::take(&mut self.carried), sink);
        (epoch, self.write_job(epoch, vec![], sources, sink, true))
    }

    /// The epoch the final checkpoint will have.
    pub(crate) fn next_epoch(&self) -> u64 {
        self.next_epoch
    }

    fn write_job(
        &self,
        epoch: u64,
        ops: Vec<(String, KeyGroupRange, StateSnapshot)>,
        sources: BTreeMap<String, Value>,
        sink: Value,
        finished: bool,
    ) -> impl std::future::Future<Output = Result<Manifest>> + use<> {
        let store = self.cp.store.clone();
        let lineage = self.cp.lineage.clone();
        let key_groups = self.cp.config.key_groups;
        let parallelism = self.parallelism;
        let descriptions = self.descriptions.clone();
        // Rows read up to the barrier, over every run: the sources' own counts.
        let events_in = sources
            .values()
            .filter_map(|v| v.get("rows").and_then(Value::as_u64))
            .sum();
        async move {
            write_checkpoint(
                &store,
                epoch,
                lineage,
                parallelism,
                key_groups,
                ops,
                descriptions,
                sources,
                sink,
                finished,
                events_in,
            )
            .await
        }
    }

    /// A checkpoint failed: returns an error once more than the tolerable number failed.
    pub(crate) fn failed(&mut self, epoch: u64, e: &Error) -> Result<()> {
        self.failures += 1;
        self.last_done = Instant::now();
        eprintln!(
            "weir: checkpoint {epoch} failed ({} of {} tolerated): {e}",
            self.failures, self.cp.config.tolerable_failures
        );
        if self.failures > self.cp.config.tolerable_failures {
            return Err(Error::Execution {
                operator: "checkpoint".into(),
                message: format!(
                    "{} checkpoints failed in a row, more than \
                     'execution.checkpointing.tolerable-failed-checkpoints' = {}: stopping \
                     rather than running without durability (last error: {e})",
                    self.failures, self.cp.config.tolerable_failures
                ),
            });
        }
        Ok(())
    }

    /// Checkpoint `epoch` is committed: mark it and drop checkpoints beyond retention.
    pub(crate) async fn committed(&mut self, epoch: u64) -> Result<()> {
        self.failures = 0;
        self.last_done = Instant::now();
        let store = &self.cp.store;
        crate::failpoint!("before-committed-marker");
        store
            .put(&format!("{}/committed", chk_dir(epoch)), b"ok\n".to_vec())
            .await?;
        retain(store, &self.cp.lineage, self.cp.config.retained).await
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_checkpoint(
    store: &CheckpointStore,
    epoch: u64,
    lineage: String,
    parallelism: usize,
    key_groups: usize,
    ops: Vec<(String, KeyGroupRange, StateSnapshot)>,
    descriptions: BTreeMap<String, String>,
    sources: BTreeMap<String, Value>,
    sink: Value,
    finished: bool,
    events_in: u64,
) -> Result<Manifest> {
    let dir = chk_dir(epoch);
    let time_ms = chrono::Utc::now().timestamp_millis();
    let mut entries: BTreeMap<String, OperatorEntry> = BTreeMap::new();
    let mut total = 0usize;
    for (id, range, snap) in ops {
        let entry = entries.entry(id.clone()).or_insert_with(|| OperatorEntry {
            id: id.clone(),
            description: descriptions.get(&id).cloned().unwrap_or_default(),
            files: vec![],
            meta: vec![],
        });
        entry.meta.push((range.start, range.end, snap.meta.clone()));
        for (table, batch) in &snap.tables {
            let bytes = to_ipc(std::slice::from_ref(batch))?;
            let file = format!("{dir}/op-{id}/{}-{table}.arrow", range.file_stem());
            total += bytes.len();
            entry.files.push(StateFile {
                start: range.start,
                end: range.end,
                table: table.clone(),
                file: file.clone(),
                bytes: bytes.len(),
            });
            store.put(&file, bytes).await?;
        }
    }
    store
        .put_json(&format!("{dir}/sources.json"), &sources)
        .await?;
    store.put_json(&format!("{dir}/sinks.json"), &sink).await?;
    let manifest = Manifest {
        epoch,
        lineage: lineage.clone(),
        time_ms,
        finished,
        parallelism,
        max_parallelism: key_groups,
        events_in,
        operators: entries.into_values().collect(),
        bytes: total,
    };
    store
        .put_json(&format!("{dir}/manifest.json"), &manifest)
        .await?;
    crate::failpoint!("checkpoint-after-manifest");
    let record = EpochRecord {
        epoch,
        lineage,
        time_ms,
        finished,
    };
    let bytes = serde_json::to_vec_pretty(&record).map_err(|e| Error::Execution {
        operator: "checkpoint".into(),
        message: e.to_string(),
    })?;
    if !store.put_if_absent(&epoch_file(epoch), bytes).await? {
        return Err(Error::Execution {
            operator: "checkpoint".into(),
            message: format!(
                "{}/{} already exists: another run of this job is writing the same \
                 checkpoints",
                store.shown(),
                epoch_file(epoch)
            ),
        });
    }
    crate::failpoint!("checkpoint-after-epoch-record");
    Ok(manifest)
}

/// Keep the newest `retained` committed checkpoints of `lineage`; delete older ones (each
/// checkpoint's files are its own, so nothing a kept checkpoint references is deleted).
async fn retain(store: &CheckpointStore, lineage: &str, retained: usize) -> Result<()> {
    let mut mine = vec![];
    for e in store.epochs().await? {
        if let Some(r) = store.get_json::<EpochRecord>(&epoch_file(e)).await?
            && r.lineage == lineage
        {
            mine.push(e);
        }
    }
    if mine.len() <= retained.max(1) {
        return Ok(());
    }
    let cut = mine.len() - retained.max(1);
    for e in &mine[..cut] {
        // The epoch record last: a folder without one is a leftover a restore deletes.
        store.delete_all(&chk_dir(*e)).await?;
        store.delete(&epoch_file(*e)).await?;
    }
    Ok(())
}

/// Read the checkpoint to restore: `chosen` (`--from-checkpoint`), else the newest one of
/// `lineage` with an epoch record. Checkpoint folders above it that never committed are
/// deleted. A committed checkpoint that cannot be read is an error naming the file.
pub(crate) async fn load(
    store: &CheckpointStore,
    lineage: &str,
    chosen: Option<u64>,
) -> Result<Option<Restored>> {
    let epochs = store.epochs().await?;
    let mut found = None;
    for e in epochs.iter().rev() {
        if chosen.is_some_and(|c| c != *e) {
            continue;
        }
        let Some(rec) = store.get_json::<EpochRecord>(&epoch_file(*e)).await? else {
            continue;
        };
        if rec.lineage == lineage || chosen.is_some() {
            found = Some(rec);
            break;
        }
    }
    if let Some(c) = chosen
        && found.is_none()
    {
        return Err(Error::Plan(format!(
            "checkpoint {c} of {} has no epoch record: it never completed",
            store.shown()
        )));
    }
    // Leftovers of checkpoints that never reached their commit point.
    let committed_max = found.as_ref().map_or(0, |r| r.epoch);
    for d in store.checkpoint_dirs().await? {
        if d > committed_max && !epochs.contains(&d) {
            store.delete_all(&chk_dir(d)).await?;
        }
    }
    let Some(rec) = found else {
        return Ok(None);
    };
    let dir = chk_dir(rec.epoch);
    let unreadable = |file: &str| Error::Execution {
        operator: "restore".into(),
        message: format!(
            "checkpoint {} is committed but {}/{file} is missing or unreadable",
            rec.epoch,
            store.shown()
        ),
    };
    let manifest: Manifest = store
        .get_json(&format!("{dir}/manifest.json"))
        .await?
        .ok_or_else(|| unreadable(&format!("{dir}/manifest.json")))?;
    let sources: BTreeMap<String, Value> = store
        .get_json(&format!("{dir}/sources.json"))
        .await?
        .ok_or_else(|| unreadable(&format!("{dir}/sources.json")))?;
    let sink: Value = store
        .get_json(&format!("{dir}/sinks.json"))
        .await?
        .ok_or_else(|| unreadable(&format!("{dir}/sinks.json")))?;
    let committed = store.get(&format!("{dir}/committed")).await?.is_some();
    let mut ops: HashMap<String, Vec<(KeyGroupRange, StateSnapshot)>> = HashMap::new();
    let mut descriptions = HashMap::new();
    for op in &manifest.operators {
        descriptions.insert(op.id.clone(), op.description.clone());
        let pieces = ops.entry(op.id.clone()).or_default();
        for (start, end, meta) in &op.meta {
            pieces.push((
                KeyGroupRange {
                    start: *start,
                    end: *end,
                },
                StateSnapshot {
                    tables: vec![],
                    meta: meta.clone(),
                },
            ));
        }
        for f in &op.files {
            let bytes = store
                .get(&f.file)
                .await?
                .ok_or_else(|| unreadable(&f.file))?;
            let batch = from_ipc(&bytes, &format!("{}/{}", store.shown(), f.file))?;
            let Some(batch) = batch else { continue };
            let range = KeyGroupRange {
                start: f.start,
                end: f.end,
            };
            match pieces.iter_mut().find(|(r, _)| *r == range) {
                Some((_, s)) => s.tables.push((f.table.clone(), batch)),
                None => pieces.push((
                    range,
                    StateSnapshot {
                        tables: vec![(f.table.clone(), batch)],
                        meta: Value::Null,
                    },
                )),
            }
        }
    }
    Ok(Some(Restored {
        epoch: rec.epoch,
        time_ms: rec.time_ms,
        finished: rec.finished,
        committed,
        events_in: manifest.events_in,
        ops,
        descriptions,
        sources,
        sink,
        load_ms: 0,
    }))
}

/// `12 s`, `3 min`, `2 h`: an age for messages.
pub(crate) fn age(ms: i64) -> String {
    let s = (ms.max(0) / 1000) as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

/// The source positions of a restore, as one line.
pub(crate) fn describe_sources(sources: &BTreeMap<String, Value>) -> String {
    if sources.is_empty() {
        return "no source positions".into();
    }
    sources
        .iter()
        .map(|(k, v)| {
            let pos = if v.get("done").and_then(Value::as_bool) == Some(true) {
                "done".to_string()
            } else {
                v.get("position").map(|p| p.to_string()).unwrap_or_default()
            };
            format!("{k} @ {pos}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// JSON for a finished source shard that read `rows` rows in all.
pub(crate) fn done_position(chains: Value, rows: u64, position: Option<Value>) -> Value {
    match position {
        // Kept for sources whose readers share what they read (Kinesis shard lineage).
        Some(p) => json!({ "done": true, "chains": chains, "rows": rows, "position": p }),
        None => json!({ "done": true, "chains": chains, "rows": rows }),
    }
}

#[cfg(test)]
mod tests {
    use super::merge_sink_info;
    use serde_json::json;

    #[test]
    fn a_failed_checkpoints_sink_output_is_published_with_the_next() {
        let failed = json!({ "files": [["a.tmp", "a"]], "objects": [] });
        let next = json!({ "files": [["b.tmp", "b"]], "objects": [{ "key": "k" }] });
        assert_eq!(
            merge_sink_info(failed, next),
            json!({ "files": [["a.tmp", "a"], ["b.tmp", "b"]], "objects": [{ "key": "k" }] })
        );
        assert_eq!(
            merge_sink_info(serde_json::Value::Null, json!({ "epochs": [3] })),
            json!({ "epochs": [3] })
        );
        assert_eq!(
            merge_sink_info(json!({ "epochs": [2] }), serde_json::Value::Null),
            json!({ "epochs": [2] })
        );
    }
}
