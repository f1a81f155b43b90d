//! Kinesis Data Streams: a sharded source and a sink (`'connector' = 'kinesis'`).
//!
//! Options (Flink's names): `'stream'`, `'aws.region'`, `'aws.endpoint'`,
//! `'aws.credentials.basic.accesskeyid'` / `secretkey` (else the SDK's default chain),
//! `'format'` (`json`, `avro`, `avro-confluent`), and for the source `'scan.stream.initpos'` (`TRIM_HORIZON`,
//! `LATEST`, `AT_TIMESTAMP` with `'scan.stream.initpos-timestamp'`, epoch millis or ISO-8601)
//! and `'scan.shard.getrecords.intervalmillis'` (how long a caught-up shard waits before its
//! next GetRecords, default 200).
//!
//! ## Source
//! The job's parallelism gives the number of *readers* ([`KinesisReader`], each a source
//! shard of the runtime). Every Kinesis shard is a *split* of one reader, with its own
//! watermark (the runtime keeps one watermark generator per split; a reader's watermark is
//! the minimum over its open splits). Lineage roots (shards whose parents are gone) are dealt
//! round-robin over the readers; a child shard goes to the reader of its parent, and is read
//! only after *all* its parents are finished (a merge's two parents may be on two readers:
//! the shared [`Coordinator`] knows), so per-key event-time order survives a reshard. A
//! reader whose shards are all finished, with no children left to read, ends.
//!
//! Throttling (`ProvisionedThroughputExceededException`, KMS throttling) backs off
//! exponentially per shard; an expired iterator is renewed after the last sequence number
//! read. Sequence numbers are kept as opaque strings (up to 56 digits, beyond u128), ordered
//! by length then text ([`seq_cmp`]).
//!
//! With checkpoints, a reader's position is, per Kinesis shard it has read, the last
//! sequence number it handed on and whether it handed on the shard's end. Positions are keyed
//! by shard id and shared by all the table's readers (the lineage is the stream's), so a
//! restore at any parallelism resumes each shard after its sequence number
//! (AFTER_SEQUENCE_NUMBER), keeps finished parents finished (their children are read next),
//! and reads shards the checkpoint does not know (created since, or not read from yet) from
//! TRIM_HORIZON. Split ids are a hash of the shard id, so per-shard watermarks restore with
//! their shard.
//!
//! Metadata columns: `timestamp` (approximate arrival), `shard-id`, `sequence-number`,
//! `partition-key`.
//!
//! ## Sink
//! Rows are encoded per `'format'` ([`MessageEncoder`]: JSON, Avro, or Debezium JSON for an
//! updating query) and sent with PutRecords in requests within the API's limits
//! (500 records, 5 MiB). The partition key is the `PARTITIONED BY` column(s) (joined by
//! `'sink.partitioner-field-delimiter'`, default `|`), else random. Of a partially failed
//! request only the failed records are sent again, with backoff
//! (`'sink.max-retries'`, default 10).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, Record, ShardIteratorType};
use datafusion::arrow::array::{Array, ArrayRef, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use tokio::sync::{Mutex, OnceCell};

use super::aws::AwsOptions;
use super::{Sink, SourceEnv, SourceShard, SplitQueue};
use crate::format::ErrorPolicy;
use crate::format::messages::{MessageDecoder, MessageEncoder, MessageMeta};
use crate::sql::catalog::Table;
use crate::{Error, Result, connector_err, plan_err};

/// The metadata keys a Kinesis table can declare.
pub const METADATA_KEYS: &[&str] = &["timestamp", "shard-id", "sequence-number", "partition-key"];

/// Order of two Kinesis sequence numbers: decimal strings without leading zeros, so a longer
/// one is larger, and equal lengths compare as text.
pub fn seq_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Where a reader starts in the shards that exist when the job starts.
#[derive(Debug, Clone, Copy)]
enum InitPos {
    TrimHorizon,
    Latest,
    AtTimestamp(i64),
}

fn init_pos(table: &Table) -> Result<InitPos> {
    match table
        .option("scan.stream.initpos")
        .unwrap_or("TRIM_HORIZON")
        .to_ascii_uppercase()
        .as_str()
    {
        "TRIM_HORIZON" => Ok(InitPos::TrimHorizon),
        "LATEST" => Ok(InitPos::Latest),
        "AT_TIMESTAMP" => {
            let Some(ts) = table.option("scan.stream.initpos-timestamp") else {
                return plan_err!(
                    "table {}: 'scan.stream.initpos' = 'AT_TIMESTAMP' needs 'scan.stream.initpos-timestamp'",
                    table.def.name
                );
            };
            let ms = ts.trim().parse::<i64>().ok().or_else(|| {
                chrono::DateTime::parse_from_rfc3339(ts.trim())
                    .ok()
                    .map(|d| d.timestamp_millis())
            });
            match ms {
                Some(ms) => Ok(InitPos::AtTimestamp(ms)),
                None => plan_err!(
                    "'scan.stream.initpos-timestamp' = '{ts}' is neither epoch milliseconds nor an ISO-8601 time"
                ),
            }
        }
        other => plan_err!(
            "'scan.stream.initpos' = '{other}': expected TRIM_HORIZON, LATEST or AT_TIMESTAMP"
        ),
    }
}

fn stream_name(table: &Table) -> Result<String> {
    match table
        .option("stream")
        .or_else(|| table.option("stream.name"))
    {
        Some(s) => Ok(s.to_string()),
        None => plan_err!(
            "table {}: the kinesis connector needs a 'stream'",
            table.def.name
        ),
    }
}

/// A client, made once per table on first use (loading credentials may do I/O).
struct LazyClient {
    options: AwsOptions,
    client: OnceCell<Client>,
}

impl LazyClient {
    fn new(table: &Table) -> Self {
        Self {
            options: AwsOptions::from_table(table),
            client: OnceCell::new(),
        }
    }

    async fn get(&self) -> &Client {
        self.client
            .get_or_init(|| async { Client::new(&self.options.sdk_config().await) })
            .await
    }
}

/// An SDK error as text, with the service's error code.
fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: &aws_sdk_kinesis::error::SdkError<E>,
) -> String {
    match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => {
            let text = aws_sdk_kinesis::error::DisplayErrorContext(e).to_string();
            super::aws::credentials_hint(&text).unwrap_or(text)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShardState {
    /// Known, not yet read (waiting for its parents, or for its reader).
    Pending,
    /// Being read by its owner.
    Reading,
    /// Read to its end (or skipped: closed before a LATEST start).
    Finished,
}

#[derive(Debug)]
struct ShardInfo {
    parents: Vec<String>,
    owner: usize,
    state: ShardState,
    /// Iterator type for its first GetShardIterator: the start position for shards that
    /// existed at the start, TRIM_HORIZON for shards created since.
    start: InitPos,
    /// A restored shard resumes after this sequence number.
    resume: Option<String>,
}

/// A shard's position in a restored checkpoint.
#[derive(Debug, Clone, Default)]
struct RestoredShard {
    seq: Option<String>,
    finished: bool,
}

/// What the readers of one table share: the shard lineage, who reads what, and the restored
/// positions.
#[derive(Default)]
pub struct Coordinator {
    listed: bool,
    shards: BTreeMap<String, ShardInfo>,
    next_root: usize,
    /// Positions of the checkpoint the job resumes from, by shard id (None: a fresh start).
    restored: Option<BTreeMap<String, RestoredShard>>,
}

impl Coordinator {
    /// Merge a listing of the stream's shards (id, parents, closed).
    fn update(&mut self, listed: Vec<(String, Vec<String>, bool)>, readers: usize, init: InitPos) {
        let first = !self.listed;
        self.listed = true;
        let ids: std::collections::HashSet<&str> =
            listed.iter().map(|(id, ..)| id.as_str()).collect();
        // A listing is in creation order: parents come before their children.
        let mut fresh = vec![];
        for (id, parents, closed) in &listed {
            if self.shards.contains_key(id) {
                continue;
            }
            // Parents that are no longer listed (trimmed) count as finished.
            let parents: Vec<String> = parents
                .iter()
                .filter(|p| ids.contains(p.as_str()) || self.shards.contains_key(*p))
                .cloned()
                .collect();
            fresh.push((id.clone(), parents, *closed));
        }
        for (id, parents, closed) in fresh {
            let owner = match parents.first().and_then(|p| self.shards.get(p)) {
                Some(parent) => parent.owner,
                None => {
                    let o = self.next_root % readers.max(1);
                    self.next_root += 1;
                    o
                }
            };
            let restored = self.restored.as_ref().map(|r| r.get(&id).cloned());
            let (state, start, resume) = match (first, init, restored) {
                // A restore: as the checkpoint says; a shard it does not know from the start.
                (_, _, Some(Some(r))) if r.finished => {
                    (ShardState::Finished, InitPos::TrimHorizon, None)
                }
                (_, _, Some(Some(r))) => (ShardState::Pending, InitPos::TrimHorizon, r.seq),
                (_, _, Some(None)) => (ShardState::Pending, InitPos::TrimHorizon, None),
                // At a LATEST start, closed shards hold only old records.
                (true, InitPos::Latest, None) if closed => (ShardState::Finished, init, None),
                (true, _, None) => (ShardState::Pending, init, None),
                (false, _, None) => (ShardState::Pending, InitPos::TrimHorizon, None),
            };
            self.shards.insert(
                id,
                ShardInfo {
                    parents,
                    owner,
                    state,
                    start,
                    resume,
                },
            );
        }
    }

    /// Shards `reader` may start now: its pending ones whose parents are all finished.
    fn claim(&mut self, reader: usize) -> Vec<(String, InitPos, Option<String>)> {
        let ready: Vec<String> = self
            .shards
            .iter()
            .filter(|(_, s)| s.owner == reader && s.state == ShardState::Pending)
            .filter(|(_, s)| {
                s.parents.iter().all(|p| {
                    self.shards
                        .get(p)
                        .is_none_or(|ps| ps.state == ShardState::Finished)
                })
            })
            .map(|(id, _)| id.clone())
            .collect();
        ready
            .into_iter()
            .filter_map(|id| {
                let s = self.shards.get_mut(&id)?;
                s.state = ShardState::Reading;
                Some((id, s.start, s.resume.clone()))
            })
            .collect()
    }

    /// Whether `reader` has nothing left: every shard of its own is finished and has its
    /// children listed, so no new shard can come its way (a closed shard always has children,
    /// unless the stream is being deleted: then the reader waits).
    fn done(&self, reader: usize) -> bool {
        self.listed
            && self
                .shards
                .iter()
                .filter(|(_, s)| s.owner == reader)
                .all(|(id, s)| {
                    s.state == ShardState::Finished
                        && self.shards.values().any(|c| c.parents.contains(id))
                })
    }

    /// The shards of `reader` that are not finished, in id order.
    fn unfinished(&self, reader: usize) -> Vec<String> {
        self.shards
            .iter()
            .filter(|(_, s)| s.owner == reader && s.state != ShardState::Finished)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn finish(&mut self, id: &str) {
        if let Some(s) = self.shards.get_mut(id) {
            s.state = ShardState::Finished;
        }
    }
}

/// Send a request (a fluent builder of the SDK), retrying it as [`retry`] does.
macro_rules! send_retrying {
    ($ctx:expr, $req:expr) => {
        retry(&$ctx, || {
            let req = $req.clone();
            async move {
                req.send()
                    .await
                    .map_err(|e| (is_retryable(e.code()), describe(&e)))
            }
        })
        .await?
    };
}

struct Shared {
    name: String,
    stream: String,
    init: InitPos,
    readers: usize,
    poll_interval: Duration,
    client: LazyClient,
    coordinator: Mutex<Coordinator>,
}

impl Shared {
    async fn list_shards(&self) -> Result<Vec<(String, Vec<String>, bool)>> {
        let client = self.client.get().await;
        let mut out = vec![];
        let mut token: Option<String> = None;
        loop {
            let mut req = client.list_shards();
            req = match &token {
                Some(t) => req.next_token(t),
                None => req.stream_name(&self.stream),
            };
            let resp = send_retrying!(format!("kinesis stream {}: ListShards", self.stream), req);
            for s in resp.shards() {
                let mut parents = vec![];
                if let Some(p) = s.parent_shard_id() {
                    parents.push(p.to_string());
                }
                if let Some(p) = s.adjacent_parent_shard_id() {
                    parents.push(p.to_string());
                }
                let closed = s
                    .sequence_number_range()
                    .is_some_and(|r| r.ending_sequence_number().is_some());
                out.push((s.shard_id().to_string(), parents, closed));
            }
            token = resp.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }
}

fn is_retryable(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ProvisionedThroughputExceededException"
                | "KMSThrottlingException"
                | "LimitExceededException"
                | "ThrottlingException"
                | "InternalFailure"
                | "ServiceUnavailable"
        ) | None
    )
}

/// Run `f` until it succeeds, backing off on retryable errors (at most 8 tries).
async fn retry<T, F, Fut>(context: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, (bool, String)>>,
{
    let mut delay = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err((retryable, message)) => {
                tries += 1;
                if !retryable || tries >= 8 {
                    return connector_err!(context, "{message}");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One Kinesis shard being read.
struct Active {
    id: String,
    split: u64,
    iterator: Option<String>,
    start: InitPos,
    last_seq: Option<String>,
    next_poll: Instant,
    backoff: Duration,
}

/// One reader (a runtime source shard) of a Kinesis stream: see the module doc.
pub struct KinesisReader {
    shared: Arc<Shared>,
    index: usize,
    active: Vec<Active>,
    next: usize,
    splits: HashMap<String, u64>,
    decoder: MessageDecoder,
    must_list: bool,
    last_list: Instant,
    queue: SplitQueue,
    schema: SchemaRef,
    /// A shard read to its end whose end is being reported (see `next`).
    ending: Option<Active>,
}

/// Open the readers of a Kinesis table.
pub fn open(table: &Table, env: &SourceEnv) -> Result<Vec<Box<dyn SourceShard>>> {
    let stream = stream_name(table)?;
    let init = init_pos(table)?;
    let poll_ms = match table.option("scan.shard.getrecords.intervalmillis") {
        None => 200,
        Some(v) => match v.trim().parse::<u64>() {
            Ok(ms) => ms,
            Err(_) => {
                return plan_err!(
                    "'scan.shard.getrecords.intervalmillis' = '{v}' is not a number of milliseconds"
                );
            }
        },
    };
    let readers = env.parallelism.max(1);
    // Every reader's checkpointed shards, merged: the lineage is the stream's.
    let restored = env.restored.as_ref().map(|sources| {
        let mut shards: BTreeMap<String, RestoredShard> = BTreeMap::new();
        let prefix = format!("{}:", table.def.name);
        for (key, state) in sources.iter() {
            if !key.starts_with(&prefix) {
                continue;
            }
            let Some(map) = state
                .get("position")
                .and_then(|p| p.get("shards"))
                .and_then(|s| s.as_object())
            else {
                continue;
            };
            for (id, v) in map {
                let e = shards.entry(id.clone()).or_default();
                e.finished |= v.get("finished").and_then(|f| f.as_bool()) == Some(true);
                if let Some(seq) = v.get("seq").and_then(|s| s.as_str())
                    && e.seq.as_deref().is_none_or(|cur| seq_cmp(seq, cur).is_gt())
                {
                    e.seq = Some(seq.to_string());
                }
            }
        }
        shards
    });
    let shared = Arc::new(Shared {
        name: table.def.name.clone(),
        stream,
        init,
        readers,
        poll_interval: Duration::from_millis(poll_ms),
        client: LazyClient::new(table),
        coordinator: Mutex::new(Coordinator {
            restored,
            ..Coordinator::default()
        }),
    });
    let mut out: Vec<Box<dyn SourceShard>> = vec![];
    for index in 0..readers {
        let policy = ErrorPolicy::from_table(table, "json", env.metrics.clone())?;
        out.push(Box::new(KinesisReader {
            shared: shared.clone(),
            index,
            active: vec![],
            next: 0,
            splits: HashMap::new(),
            decoder: MessageDecoder::new(table, policy, METADATA_KEYS)?,
            must_list: true,
            last_list: Instant::now(),
            queue: SplitQueue::default(),
            schema: table.read_schema(),
            ending: None,
        }));
    }
    Ok(out)
}

/// How often a reader with nothing to read looks for new shards.
const LIST_INTERVAL: Duration = Duration::from_secs(10);

/// Metadata of one GetRecords response.
struct RecordsMeta<'a> {
    stream: &'a str,
    shard: &'a str,
    records: &'a [Record],
}

impl MessageMeta for RecordsMeta<'_> {
    fn column(&self, key: &str) -> Result<ArrayRef> {
        Ok(match key {
            "shard-id" => crate::format::messages::repeat_str(self.shard, self.records.len()),
            "sequence-number" => Arc::new(StringArray::from_iter_values(
                self.records.iter().map(|r| r.sequence_number()),
            )),
            "partition-key" => Arc::new(StringArray::from_iter_values(
                self.records.iter().map(|r| r.partition_key()),
            )),
            "timestamp" => Arc::new(
                TimestampMillisecondArray::from_iter(self.records.iter().map(|r| {
                    r.approximate_arrival_timestamp()
                        .and_then(|t| t.to_millis().ok())
                }))
                .with_timezone("UTC"),
            ),
            other => return plan_err!("kinesis has no metadata '{other}'"),
        })
    }

    fn location(&self, i: usize) -> String {
        format!(
            "kinesis stream {}, shard {}, sequence number {}",
            self.stream,
            self.shard,
            self.records[i].sequence_number()
        )
    }
}

impl KinesisReader {
    /// List the stream's shards and take the ones this reader may start.
    async fn discover(&mut self) -> Result<()> {
        let listed = self.shared.list_shards().await?;
        let mut coord = self.shared.coordinator.lock().await;
        coord.update(listed, self.shared.readers, self.shared.init);
        // Every shard of this reader that is not finished is announced as soon as it is known,
        // before it can be read (a child waits for its parents): until it has rows it holds
        // the watermark back, so the rows it holds are not late. See `SourceShard::split`.
        for id in coord.unfinished(self.index) {
            if let std::collections::hash_map::Entry::Vacant(e) = self.splits.entry(id) {
                let split = split_of(e.key());
                e.insert(split);
                self.queue.announce(split);
            }
        }
        for (id, start, resume) in coord.claim(self.index) {
            let split = *self
                .splits
                .entry(id.clone())
                .or_insert_with(|| split_of(&id));
            if let Some(seq) = &resume {
                self.queue.set_offset(split, seq.clone().into());
            }
            self.active.push(Active {
                id,
                split,
                iterator: None,
                start,
                last_seq: resume,
                next_poll: Instant::now(),
                backoff: Duration::ZERO,
            });
        }
        self.must_list = false;
        self.last_list = Instant::now();
        Ok(())
    }

    async fn iterator(
        shared: Arc<Shared>,
        id: String,
        last_seq: Option<String>,
        start: InitPos,
    ) -> Result<Option<String>> {
        let client = shared.client.get().await;
        let mut req = client
            .get_shard_iterator()
            .stream_name(&shared.stream)
            .shard_id(&id);
        req = match (&last_seq, start) {
            (Some(seq), _) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            (None, InitPos::TrimHorizon) => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            (None, InitPos::Latest) => req.shard_iterator_type(ShardIteratorType::Latest),
            (None, InitPos::AtTimestamp(ms)) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_millis(ms)),
        };
        let ctx = format!(
            "kinesis stream {}, shard {id}: GetShardIterator",
            shared.stream
        );
        let resp = send_retrying!(ctx, req);
        Ok(resp.shard_iterator().map(str::to_string))
    }

    /// Poll shard `i` once: `Some(batch)` when records came, and whether the shard ended.
    async fn poll(&mut self, i: usize) -> Result<(Option<RecordBatch>, bool)> {
        if self.active[i].iterator.is_none() {
            let a = &self.active[i];
            let it = Self::iterator(
                self.shared.clone(),
                a.id.clone(),
                a.last_seq.clone(),
                a.start,
            )
            .await?;
            match it {
                Some(it) => self.active[i].iterator = Some(it),
                None => return Ok((None, true)),
            }
        }
        let client = self.shared.client.get().await.clone();
        let a = &mut self.active[i];
        let Some(iterator) = a.iterator.clone() else {
            return Ok((None, true));
        };
        let resp = client
            .get_records()
            .shard_iterator(iterator)
            .limit(crate::format::messages::MAX_POLL.min(10_000) as i32)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                match e.code() {
                    Some("ExpiredIteratorException") => {
                        a.iterator = None;
                    }
                    code if is_retryable(code) && a.backoff < Duration::from_secs(60) => {
                        a.backoff = (a.backoff * 2).max(Duration::from_millis(200));
                        a.next_poll = Instant::now() + a.backoff;
                    }
                    _ => {
                        return connector_err!(
                            format!(
                                "kinesis stream {}, shard {}: GetRecords",
                                self.shared.stream, a.id
                            ),
                            "{}",
                            describe(&e)
                        );
                    }
                }
                return Ok((None, false));
            }
        };
        a.backoff = Duration::ZERO;
        a.iterator = resp.next_shard_iterator().map(str::to_string);
        let records = resp.records();
        let caught_up = records.is_empty() || resp.millis_behind_latest() == Some(0);
        a.next_poll = if caught_up {
            Instant::now() + self.shared.poll_interval
        } else {
            Instant::now()
        };
        let ended = a.iterator.is_none();
        if records.is_empty() {
            return Ok((None, ended));
        }
        if let Some(last) = records.last() {
            a.last_seq = Some(last.sequence_number().to_string());
        }
        let payloads: Vec<&[u8]> = records.iter().map(|r| r.data().as_ref()).collect();
        let meta = RecordsMeta {
            stream: &self.shared.stream,
            shard: &self.active[i].id,
            records,
        };
        let batch = self.decoder.decode(&payloads, &meta)?;
        Ok((batch, ended))
    }

    async fn next(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if let Some(b) = self.queue.pop(&self.schema) {
                return Ok(Some(b));
            }
            // A shard read to its end: finished in the coordinator, its children found, then
            // its end queued. Redone whole if a dropped call stopped it half-way (cancel
            // safety: see `SourceShard::next_batch`); each step is idempotent.
            if let Some(a) = &self.ending {
                let (id, split) = (a.id.clone(), a.split);
                self.shared.coordinator.lock().await.finish(&id);
                // The children are announced before the parent's end is reported, so the
                // watermark never runs ahead of their rows.
                self.discover().await?;
                self.ending = None;
                self.queue.finish(split);
                continue;
            }
            if self.must_list
                || (self.active.is_empty() && self.last_list.elapsed() >= LIST_INTERVAL)
            {
                self.discover().await?;
                // New shards are announced before any is polled.
                continue;
            }
            if self.active.is_empty() {
                if self.shared.coordinator.lock().await.done(self.index) {
                    return Ok(None);
                }
                tokio::time::sleep(Duration::from_millis(200).min(LIST_INTERVAL)).await;
                self.must_list = true;
                continue;
            }
            // The next shard due, round-robin.
            let now = Instant::now();
            let n = self.active.len();
            let due = (0..n)
                .map(|k| (self.next + k) % n)
                .find(|i| self.active[*i].next_poll <= now);
            let Some(i) = due else {
                let wake = self.active.iter().map(|a| a.next_poll).min().unwrap_or(now);
                tokio::time::sleep_until(wake.into()).await;
                continue;
            };
            self.next = i + 1;
            let split = self.active[i].split;
            let before = self.active[i].last_seq.clone();
            let (batch, ended) = self.poll(i).await?;
            let after = self.active[i].last_seq.clone();
            match (batch, after) {
                (Some(b), Some(seq)) => self.queue.rows_at(split, b, seq.into()),
                (Some(b), None) => self.queue.rows(split, b),
                // Records consumed without rows (all malformed): only the position moves.
                (None, Some(seq)) if before.as_ref() != Some(&seq) => {
                    self.queue.advance(split, seq.into())
                }
                (None, _) => {}
            }
            if ended {
                self.ending = Some(self.active.remove(i));
            }
        }
    }
}

impl SourceShard for KinesisReader {
    fn name(&self) -> String {
        format!(
            "kinesis stream {} (table {}, reader {}/{})",
            self.shared.stream, self.shared.name, self.index, self.shared.readers
        )
    }

    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<RecordBatch>>> {
        Box::pin(self.next())
    }

    fn split(&self) -> Option<u64> {
        self.queue.split()
    }

    fn finished_splits(&mut self) -> Vec<u64> {
        self.queue.take_finished()
    }

    fn check_replayable(&self) -> Result<()> {
        Ok(())
    }

    /// Per shard this reader has: the last sequence number handed on, and whether its end
    /// was.
    fn position(&self) -> Option<serde_json::Value> {
        let shards: serde_json::Map<String, serde_json::Value> = self
            .splits
            .iter()
            .map(|(id, split)| {
                (
                    id.clone(),
                    serde_json::json!({
                        "seq": self.queue.offsets().get(split),
                        "finished": self.queue.ended(*split),
                    }),
                )
            })
            .collect();
        Some(serde_json::json!({ "shards": shards }))
    }

    /// The table's readers were opened with every reader's positions (see [`open`]).
    fn restore(&mut self, _position: &serde_json::Value) -> Result<()> {
        Ok(())
    }
}

/// A shard's split id: stable across runs, so its watermark is restored with it.
fn split_of(shard: &str) -> u64 {
    crate::state::stable_hash(shard.as_bytes())
}

/// PutRecords limits.
const MAX_RECORDS: usize = 500;
const MAX_REQUEST_BYTES: usize = 5 << 20;
const MAX_RECORD_BYTES: usize = 1 << 20;

/// The Kinesis sink: see the module doc.
pub struct KinesisSink {
    stream: String,
    client: LazyClient,
    key_cols: Vec<usize>,
    delimiter: String,
    max_retries: u32,
    counter: u64,
    encoder: MessageEncoder,
}

impl KinesisSink {
    /// A sink into `table`'s stream for rows of `schema`.
    pub fn new(table: &Table, schema: SchemaRef) -> Result<Self> {
        let stream = stream_name(table)?;
        let encoder = MessageEncoder::new(table, &schema)?;
        table.reject_metadata("kinesis sink")?;
        let key_cols =
            super::column_indices(table, &schema, &table.def.partitioned_by, "PARTITIONED BY")?;
        let max_retries = super::number_option(table, "sink.max-retries", 10)?;
        Ok(Self {
            stream,
            client: LazyClient::new(table),
            key_cols,
            delimiter: table
                .option("sink.partitioner-field-delimiter")
                .unwrap_or("|")
                .to_string(),
            max_retries,
            counter: 0,
            encoder,
        })
    }

    fn partition_keys(&mut self, batch: &RecordBatch) -> Result<Vec<String>> {
        let n = batch.num_rows();
        if self.key_cols.is_empty() {
            // Random keys spread records over the shards.
            let base = self.counter;
            self.counter += n as u64;
            return Ok((0..n as u64)
                .map(|i| {
                    let x = (base + i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    format!("{:016x}", x ^ (x >> 29))
                })
                .collect());
        }
        let cols: Vec<ArrayRef> = self
            .key_cols
            .iter()
            .map(|i| {
                Ok(datafusion::arrow::compute::cast(
                    batch.column(*i),
                    &datafusion::arrow::datatypes::DataType::Utf8,
                )?)
            })
            .collect::<Result<_>>()?;
        let cols: Vec<&StringArray> = cols
            .iter()
            .filter_map(|c| c.as_any().downcast_ref::<StringArray>())
            .collect();
        Ok((0..n)
            .map(|r| {
                let parts: Vec<&str> = cols
                    .iter()
                    .map(|c| if c.is_valid(r) { c.value(r) } else { "null" })
                    .collect();
                let k = parts.join(&self.delimiter);
                if k.is_empty() { "-".to_string() } else { k }
            })
            .collect())
    }

    async fn put(&self, mut entries: Vec<PutRecordsRequestEntry>) -> Result<()> {
        let client = self.client.get().await;
        let ctx = format!("kinesis stream {}: PutRecords", self.stream);
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        while !entries.is_empty() {
            let resp = client
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(entries.clone()))
                .send()
                .await;
            let failed: Vec<PutRecordsRequestEntry> = match resp {
                Ok(r) if r.failed_record_count().unwrap_or(0) == 0 => return Ok(()),
                Ok(r) => r
                    .records()
                    .iter()
                    .zip(entries)
                    .filter(|(res, _)| res.error_code().is_some())
                    .map(|(_, e)| e)
                    .collect(),
                Err(e) if is_retryable(e.code()) => entries,
                Err(e) => return connector_err!(ctx, "{}", describe(&e)),
            };
            attempt += 1;
            if attempt > self.max_retries {
                return connector_err!(
                    ctx,
                    "{} records still failing after {} retries",
                    failed.len(),
                    self.max_retries
                );
            }
            entries = failed;
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let records = self.encoder.encode(&batch)?;
        let keys = self.partition_keys(&batch)?;
        let mut request = vec![];
        let mut bytes = 0;
        for (line, key) in records.iter().zip(keys) {
            let size = line.len() + key.len();
            if size > MAX_RECORD_BYTES {
                return connector_err!(
                    format!("kinesis stream {}", self.stream),
                    "a record of {size} bytes is over Kinesis's 1 MiB limit"
                );
            }
            if request.len() == MAX_RECORDS || bytes + size > MAX_REQUEST_BYTES {
                self.put(std::mem::take(&mut request)).await?;
                bytes = 0;
            }
            bytes += size;
            request.push(
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(line.to_vec()))
                    .partition_key(key)
                    .build()
                    .map_err(|e| Error::Connector {
                        context: format!("kinesis stream {}", self.stream),
                        message: e.to_string(),
                    })?,
            );
        }
        if !request.is_empty() {
            self.put(request).await?;
        }
        Ok(())
    }
}

impl Sink for KinesisSink {
    /// Each batch is put (and its failed records retried) before the next is taken, so every
    /// row before a barrier is in the stream when the checkpoint completes.
    fn delivery(&self) -> Result<super::Delivery> {
        Ok(super::Delivery::AtLeastOnce)
    }

    fn write_batch(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(batch))
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_order_by_length_then_text() {
        let a = "49590338271490256608559692538361571095921575989136588898";
        let b = "49590338271490256608559692540925702759324208523137515618";
        assert!(seq_cmp(a, b).is_lt());
        assert!(seq_cmp("9", "10").is_lt());
        assert!(seq_cmp(b, b).is_eq());
    }

    #[test]
    fn children_wait_for_all_parents_and_follow_the_first_parent() {
        let mut c = Coordinator::default();
        let s = |id: &str, p: &[&str], closed| {
            (
                id.to_string(),
                p.iter().map(|x| x.to_string()).collect(),
                closed,
            )
        };
        c.update(
            vec![s("a", &[], false), s("b", &[], false)],
            2,
            InitPos::TrimHorizon,
        );
        assert_eq!(c.claim(0).len(), 1);
        assert_eq!(c.claim(1).len(), 1);
        // a and b merge into m.
        c.update(
            vec![
                s("a", &[], true),
                s("b", &[], true),
                s("m", &["a", "b"], false),
            ],
            2,
            InitPos::TrimHorizon,
        );
        assert!(c.claim(0).is_empty());
        c.finish("a");
        assert!(c.claim(0).is_empty(), "m waits for b too");
        assert!(!c.done(1));
        c.finish("b");
        assert!(
            c.done(1),
            "reader 1 has nothing left: m belongs to reader 0"
        );
        let m = c.claim(0);
        assert_eq!(m.len(), 1);
        assert!(matches!(m[0].1, InitPos::TrimHorizon));
    }
}
