//! Kafka: a partitioned source and a sink (`'connector' = 'kafka'`), through librdkafka
//! (rdkafka, which builds its own copy).
//!
//! Options (Flink's names): `'topic'`, `'properties.bootstrap.servers'`,
//! `'properties.group.id'`, any other `'properties.*'` (passed to librdkafka as is),
//! `'format'` (`json`; `debezium-json` for a sink taking an updating query).
//!
//! ## Source
//! - `'scan.startup.mode'`: `earliest-offset` (default), `latest-offset`, `group-offsets`
//!   (the group's committed offsets, else `'properties.auto.offset.reset'`), `timestamp`
//!   (`'scan.startup.timestamp-millis'`), `specific-offsets`
//!   (`'scan.startup.specific-offsets'` = `'partition:0,offset:42;partition:1,offset:300'`).
//! - `'scan.bounded.mode'`: `unbounded` (default) or `latest-offset`: each partition ends when
//!   the reader reaches its end (the high watermark of its fetches), and the job ends when
//!   every partition has — a backfill of what a topic holds.
//! - The job's parallelism gives the number of readers; partition `p` is read by reader
//!   `p % readers`, each partition a split with its own watermark. Without checkpoints and
//!   with a group id, offsets are committed to the group as they are consumed (librdkafka's
//!   auto-commit).
//! - With checkpoints, a reader's position is the next offset of each of its partitions
//!   (after the rows it has handed on). Auto-commit is off: the offsets are committed to the
//!   group only when a checkpoint that covers them completes, so lag tools see progress and a
//!   restore never depends on them. A restore resumes every recorded partition at its offset,
//!   and a partition added to the topic since then from its beginning (Flink's rule for
//!   discovered partitions). A restored job keeps the number of readers its checkpoint was
//!   taken with (their positions are per reader); the stages after them take the new
//!   parallelism.
//! - Metadata columns: `topic`, `partition`, `offset`, `timestamp`, `timestamp-type`.
//!
//! ## Sink
//! Rows are JSON messages. `'key.fields'` (`a;b`) makes the key: with `'key.format'` =
//! `raw` (one field) its text, with `json` an object of the fields; messages with the same
//! key go to the same partition. Deliveries are confirmed as they complete (checked with
//! every batch and every second; at most 100k outstanding): a failed delivery fails the job.
//! At the end every delivery is awaited and the producer flushed.
//!
//! `'sink.delivery-guarantee'` (Flink's option): `at-least-once` (the default) or `none`.
//! With checkpoints, every delivery is awaited at each barrier, so a restore repeats at most
//! what was sent after the last checkpoint. `exactly-once` (Kafka transactions) is refused:
//! the broker the tests run against (tansu 0.6.0) does not implement transactions (EndTxn),
//! so weir's use of them could not be verified.
//!
//! ## `'connector' = 'upsert-kafka'`
//! Flink's upsert-kafka: a (compacted) topic whose message key is the table's `PRIMARY KEY`
//! (`'key.format'` `raw` or `json`) and whose value is the whole row (`'value.format'` =
//! `json`, `'value.fields-include'` = `ALL`), a message without a value (a tombstone) deleting
//! its key.
//! - Read, it is read from the earliest offset as an upsert stream (`+U` per value, `-D` per
//!   tombstone), which the planner normalises into a full changelog (last row per key,
//!   [`crate::operators::NormalizeSpec`]).
//! - Written, it takes an updating query: `+I` / `+U` are written as the key's value, `-D` as a
//!   tombstone, and `-U` is skipped (the `+U` that follows replaces it).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{
    Array, ArrayRef, Int32Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::FutureExt;
use futures::future::BoxFuture;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage, Timestamp as KafkaTimestamp};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::{Sink, SourceEnv, SourceShard, SplitQueue};
use crate::format::ErrorPolicy;
use crate::format::messages::{MAX_POLL, MessageDecoder, MessageMeta};
use crate::sql::catalog::Table;
use crate::{Error, Result, connector_err, plan_err};

/// How an `upsert-kafka` table's message keys hold its primary key.
#[derive(Clone)]
struct UpsertKey {
    /// The key columns' positions among the physical columns.
    columns: Vec<usize>,
    /// `'key.format'` = `raw`: the one key column's text; else a JSON object of the columns.
    raw: bool,
    /// The key columns' declared names and types.
    names: Vec<(String, datafusion::arrow::datatypes::DataType)>,
    /// Every payload column's declared name (a tombstone's row has them all, NULL but the key).
    payload: Vec<String>,
}

impl UpsertKey {
    /// The key of an `upsert-kafka` table (None for any other connector).
    fn of(table: &Table) -> Result<Option<Self>> {
        if !table.reads_upserts() {
            return Ok(None);
        }
        let name = &table.def.name;
        if table.def.primary_key.is_empty() {
            return plan_err!(
                "upsert-kafka table {name} needs a PRIMARY KEY (...) NOT ENFORCED: the message key"
            );
        }
        for option in ["key.format", "value.format"] {
            if table.option(option).is_none() {
                return plan_err!("upsert-kafka table {name} needs '{option}'");
            }
        }
        if table
            .option("value.fields-include")
            .is_some_and(|v| v.eq_ignore_ascii_case("EXCEPT_KEY"))
        {
            return crate::not_supported!(
                "'value.fields-include' = 'EXCEPT_KEY' (the value holds every column: ALL)"
            );
        }
        let raw = table
            .option("key.format")
            .is_some_and(|f| f.eq_ignore_ascii_case("raw"));
        let mut columns = vec![];
        let mut names = vec![];
        for k in &table.def.primary_key {
            let i = table.physical.index_of(k).map_err(|_| {
                Error::Plan(format!(
                    "upsert-kafka table {name}: no primary key column {k}"
                ))
            })?;
            columns.push(i);
            names.push((
                table.declared_name(k).to_string(),
                table.physical.field(i).data_type().clone(),
            ));
        }
        if raw && columns.len() != 1 {
            return plan_err!(
                "upsert-kafka table {name}: 'key.format' = 'raw' takes a one-column primary key"
            );
        }
        let payload = table
            .payload_schema()
            .0
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        Ok(Some(Self {
            columns,
            raw,
            names,
            payload,
        }))
    }

    /// The row a tombstone with message key `key` deletes, as a JSON record: the key's
    /// columns, every other column NULL.
    fn tombstone(&self, key: Option<&[u8]>) -> std::result::Result<Vec<u8>, String> {
        use serde_json::Value;
        let key = key.ok_or("a tombstone (no value) without a key")?;
        let mut row: serde_json::Map<String, Value> = self
            .payload
            .iter()
            .map(|f| (f.clone(), Value::Null))
            .collect();
        if self.raw {
            let text = std::str::from_utf8(key).map_err(|_| "a raw key that is not UTF-8")?;
            let (name, ty) = &self.names[0];
            let number = ty
                .is_numeric()
                .then(|| text.parse::<serde_json::Number>().ok());
            let value = match number.flatten() {
                Some(n) => Value::Number(n),
                None => Value::String(text.to_string()),
            };
            row.insert(name.clone(), value);
        } else {
            let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(key) else {
                return Err("a key that is not a JSON object".into());
            };
            for (name, _) in &self.names {
                let v = fields
                    .remove(name)
                    .ok_or_else(|| format!("a key without its field {name}"))?;
                row.insert(name.clone(), v);
            }
        }
        serde_json::to_vec(&row).map_err(|e| e.to_string())
    }
}

/// The metadata keys a Kafka table can declare.
pub const METADATA_KEYS: &[&str] = &[
    "topic",
    "partition",
    "offset",
    "timestamp",
    "timestamp-type",
];

fn topic(table: &Table) -> Result<String> {
    match table.option("topic") {
        Some(t) if !t.contains(';') => Ok(t.to_string()),
        Some(t) => crate::not_supported!("reading several topics ('topic' = '{t}')"),
        None => plan_err!(
            "table {}: the kafka connector needs a 'topic'",
            table.def.name
        ),
    }
}

/// librdkafka settings from the `'properties.*'` options.
fn client_config(table: &Table) -> Result<ClientConfig> {
    let mut c = ClientConfig::new();
    for (k, v) in &table.def.options {
        if let Some(key) = k.strip_prefix("properties.") {
            c.set(key, v);
        }
    }
    if c.get("bootstrap.servers").is_none() {
        return plan_err!(
            "table {}: the kafka connector needs 'properties.bootstrap.servers'",
            table.def.name
        );
    }
    Ok(c)
}

/// Run a blocking librdkafka call off the runtime's worker threads.
async fn blocking<T: Send + 'static>(
    context: String,
    f: impl FnOnce() -> rdkafka::error::KafkaResult<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| kafka_err(context, e)),
        Err(e) => connector_err!(context, "{e}"),
    }
}

fn kafka_err(context: impl Into<String>, e: KafkaError) -> Error {
    Error::Connector {
        context: context.into(),
        message: e.to_string(),
    }
}

#[derive(Debug, Clone)]
enum Startup {
    Earliest,
    Latest,
    Group,
    Timestamp(i64),
    Specific(BTreeMap<i32, i64>),
}

fn startup(table: &Table) -> Result<Startup> {
    let mode = table
        .option("scan.startup.mode")
        .unwrap_or("earliest-offset")
        .to_ascii_lowercase();
    Ok(match mode.as_str() {
        "earliest-offset" => Startup::Earliest,
        "latest-offset" => Startup::Latest,
        "group-offsets" => Startup::Group,
        "timestamp" => {
            let v = table.option("scan.startup.timestamp-millis").unwrap_or("");
            match v.trim().parse() {
                Ok(ms) => Startup::Timestamp(ms),
                Err(_) => {
                    return plan_err!(
                        "'scan.startup.mode' = 'timestamp' needs 'scan.startup.timestamp-millis' (epoch milliseconds), not '{v}'"
                    );
                }
            }
        }
        "specific-offsets" => {
            let spec = table.option("scan.startup.specific-offsets").unwrap_or("");
            let mut offsets = BTreeMap::new();
            for part in spec.split(';').filter(|p| !p.trim().is_empty()) {
                let mut partition = None;
                let mut offset = None;
                for kv in part.split(',') {
                    match kv.split_once(':') {
                        Some(("partition", v)) => partition = v.trim().parse::<i32>().ok(),
                        Some(("offset", v)) => offset = v.trim().parse::<i64>().ok(),
                        _ => {}
                    }
                }
                match (partition, offset) {
                    (Some(p), Some(o)) => {
                        offsets.insert(p, o);
                    }
                    _ => {
                        return plan_err!(
                            "'scan.startup.specific-offsets': '{part}' is not 'partition:N,offset:M'"
                        );
                    }
                }
            }
            Startup::Specific(offsets)
        }
        other => {
            return plan_err!(
                "'scan.startup.mode' = '{other}': expected earliest-offset, latest-offset, group-offsets, timestamp or specific-offsets"
            );
        }
    })
}

/// One reader of a topic: see the module doc.
pub struct KafkaReader {
    table: String,
    topic: String,
    index: usize,
    readers: usize,
    config: ClientConfig,
    startup: Startup,
    bounded: bool,
    max_poll: usize,
    consumer: Option<Arc<StreamConsumer>>,
    /// Assigned partitions not yet at their end (bounded mode).
    open: std::collections::BTreeSet<i32>,
    decoder: MessageDecoder,
    queue: SplitQueue,
    schema: SchemaRef,
    /// Partitions' offsets from a restored checkpoint (they override the startup mode).
    restored: Option<BTreeMap<i32, i64>>,
    /// Commit offsets to the group after completed checkpoints (the user named a group).
    commit_on_checkpoint: bool,
    /// An `upsert-kafka` table's key: messages are upserts and tombstones.
    upsert: Option<UpsertKey>,
}

/// Open the readers of a Kafka table.
pub fn open(table: &Table, env: &SourceEnv) -> Result<Vec<Box<dyn SourceShard>>> {
    let topic = topic(table)?;
    let upsert = UpsertKey::of(table)?;
    let mut config = client_config(table)?;
    // The Java consumer's `max.poll.records` (which librdkafka does not know): the most
    // records one poll hands on.
    let max_poll = config.get("max.poll.records").map(str::to_string);
    config.remove("max.poll.records");
    let max_poll = match max_poll {
        None => MAX_POLL,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => n.min(MAX_POLL),
            _ => {
                return plan_err!("'properties.max.poll.records' = '{v}' is not a positive number");
            }
        },
    };
    let user_group = config.get("group.id").is_some();
    if !user_group {
        config.set("group.id", format!("weir-{}", table.def.name));
        // Without a group of the user's, nothing is committed.
        config.set("enable.auto.commit", "false");
    }
    if env.checkpointing {
        // Offsets go to the group after each completed checkpoint, not as consumed.
        config.set("enable.auto.commit", "false");
    }
    let bounded = match table
        .option("scan.bounded.mode")
        .unwrap_or("unbounded")
        .to_ascii_lowercase()
        .as_str()
    {
        "unbounded" => false,
        "latest-offset" => true,
        other => {
            return crate::not_supported!(
                "'scan.bounded.mode' = '{other}' (unbounded, latest-offset)"
            );
        }
    };
    if bounded {
        config.set("enable.partition.eof", "true");
    }
    let startup = startup(table)?;
    if matches!(startup, Startup::Group) && config.get("auto.offset.reset").is_none() {
        config.set("auto.offset.reset", "earliest");
    }
    let readers = env.parallelism.max(1);
    let mut out: Vec<Box<dyn SourceShard>> = vec![];
    for index in 0..readers {
        let policy = ErrorPolicy::from_table(table, "json", env.metrics.clone())?;
        out.push(Box::new(KafkaReader {
            table: table.def.name.clone(),
            topic: topic.clone(),
            index,
            readers,
            config: config.clone(),
            startup: startup.clone(),
            bounded,
            max_poll,
            consumer: None,
            open: Default::default(),
            decoder: MessageDecoder::new(table, policy, METADATA_KEYS)?,
            queue: SplitQueue::default(),
            schema: table.read_schema(),
            restored: None,
            commit_on_checkpoint: env.checkpointing && user_group,
            upsert: upsert.clone(),
        }));
    }
    Ok(out)
}

struct MessagesMeta<'a> {
    messages: &'a [OwnedMessage],
}

impl MessageMeta for MessagesMeta<'_> {
    fn column(&self, key: &str) -> Result<ArrayRef> {
        let m = self.messages;
        Ok(match key {
            "topic" => Arc::new(StringArray::from_iter_values(m.iter().map(|x| x.topic()))),
            "partition" => Arc::new(Int32Array::from_iter_values(
                m.iter().map(|x| x.partition()),
            )),
            "offset" => Arc::new(Int64Array::from_iter_values(m.iter().map(|x| x.offset()))),
            "timestamp" => Arc::new(
                TimestampMillisecondArray::from_iter(m.iter().map(|x| x.timestamp().to_millis()))
                    .with_timezone("UTC"),
            ),
            "timestamp-type" => {
                Arc::new(StringArray::from_iter_values(m.iter().map(
                    |x| match x.timestamp() {
                        KafkaTimestamp::NotAvailable => "NoTimestampType",
                        KafkaTimestamp::CreateTime(_) => "CreateTime",
                        KafkaTimestamp::LogAppendTime(_) => "LogAppendTime",
                    },
                )))
            }
            other => return plan_err!("kafka has no metadata '{other}'"),
        })
    }

    fn location(&self, i: usize) -> String {
        let m = &self.messages[i];
        format!(
            "kafka topic {}, partition {}, offset {}",
            m.topic(),
            m.partition(),
            m.offset()
        )
    }
}

impl KafkaReader {
    /// An upsert-kafka partition's messages: a value is the key's new row (`+U`), a
    /// tombstone deletes it (`-D`).
    fn upserts(
        &mut self,
        key: UpsertKey,
        msgs: &[OwnedMessage],
        meta: &MessagesMeta<'_>,
    ) -> Result<Option<RecordBatch>> {
        use crate::changelog::RowKind;
        let (mut rows, mut ops, mut message_of) = (vec![], vec![], vec![]);
        for (i, m) in msgs.iter().enumerate() {
            let row = match m.payload() {
                Some(value) => Ok((value.to_vec(), RowKind::UpdateAfter)),
                None => key.tombstone(m.key()).map(|r| (r, RowKind::Delete)),
            };
            match row {
                Ok((row, kind)) => {
                    rows.push(row);
                    ops.push(kind);
                    message_of.push(i as u32);
                }
                Err(why) => {
                    let raw = m.key().unwrap_or_default();
                    self.decoder.reject(&meta.location(i), &why, raw)?;
                }
            }
        }
        self.decoder
            .decode_changelog(&rows, &ops, &message_of, meta)
    }

    fn context(&self) -> String {
        format!("kafka topic {} (table {})", self.topic, self.table)
    }

    /// Create the consumer and assign this reader's partitions.
    async fn connect(&mut self) -> Result<Arc<StreamConsumer>> {
        let consumer: StreamConsumer = self
            .config
            .create()
            .map_err(|e| kafka_err(self.context(), e))?;
        let consumer = Arc::new(consumer);
        let c = consumer.clone();
        let topic = self.topic.clone();
        let partitions = blocking(format!("{}: metadata", self.context()), move || {
            c.fetch_metadata(Some(&topic), Duration::from_secs(30))
                .map(|m| {
                    m.topics()
                        .iter()
                        .filter(|t| t.name() == topic && t.error().is_none())
                        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                        .collect::<Vec<i32>>()
                })
        })
        .await?;
        if partitions.is_empty() {
            return connector_err!(
                self.context(),
                "the topic does not exist or has no partitions"
            );
        }
        let mut tpl = TopicPartitionList::new();
        for p in partitions
            .into_iter()
            .filter(|p| (*p as usize) % self.readers == self.index)
        {
            let restored = self.restored.as_ref().map(|r| r.get(&p));
            let offset = match (&self.startup, restored) {
                (_, Some(Some(o))) => Offset::Offset(*o),
                // A partition the checkpoint does not know is new: read it all.
                (_, Some(None)) => Offset::Beginning,
                (startup, None) => match startup {
                    Startup::Earliest => Offset::Beginning,
                    Startup::Latest => Offset::End,
                    Startup::Group => Offset::Stored,
                    Startup::Timestamp(_) => Offset::Beginning,
                    Startup::Specific(m) => {
                        m.get(&p).map_or(Offset::Beginning, |o| Offset::Offset(*o))
                    }
                },
            };
            tpl.add_partition_offset(&self.topic, p, offset)
                .map_err(|e| kafka_err(self.context(), e))?;
            self.open.insert(p);
        }
        if let (Startup::Timestamp(ms), None) = (&self.startup, &self.restored) {
            let ms = *ms;
            let c = consumer.clone();
            let wanted = tpl.clone();
            tpl = blocking(
                format!("{}: offsets for timestamp", self.context()),
                move || {
                    let mut t = wanted;
                    t.set_all_offsets(Offset::Offset(ms))?;
                    c.offsets_for_times(t, Duration::from_secs(30))
                },
            )
            .await?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| kafka_err(self.context(), e))?;
        Ok(consumer)
    }

    async fn next(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if let Some(b) = self.queue.pop(&self.schema) {
                return Ok(Some(b));
            }
            let consumer = match &self.consumer {
                Some(c) => c.clone(),
                None => {
                    let c = self.connect().await?;
                    self.consumer = Some(c.clone());
                    // Announce every partition before reading: see `SourceShard::split`.
                    for p in &self.open {
                        self.queue.announce(*p as u64);
                    }
                    continue;
                }
            };
            if self.open.is_empty() {
                // Every partition ended (bounded), or none is this reader's.
                return Ok(None);
            }
            let mut messages: Vec<OwnedMessage> = vec![];
            let mut ended = vec![];
            let mut next = Some(consumer.recv().await);
            while let Some(r) = next.take() {
                match r {
                    Ok(m) => messages.push(m.detach()),
                    Err(KafkaError::PartitionEOF(p)) => ended.push(p),
                    Err(e) => return Err(kafka_err(self.context(), e)),
                }
                if messages.len() < self.max_poll {
                    next = consumer.recv().now_or_never();
                }
            }
            // One batch per partition, in arrival order of partitions.
            let mut by_partition: BTreeMap<i32, Vec<OwnedMessage>> = BTreeMap::new();
            for m in messages {
                by_partition.entry(m.partition()).or_default().push(m);
            }
            for (p, msgs) in by_partition {
                let next = msgs.last().map_or(0, |m| m.offset() + 1);
                let meta = MessagesMeta { messages: &msgs };
                let decoded = match &self.upsert {
                    Some(key) => self.upserts(key.clone(), &msgs, &meta)?,
                    None => {
                        let payloads: Vec<&[u8]> =
                            msgs.iter().map(|m| m.payload().unwrap_or(b"")).collect();
                        self.decoder.decode(&payloads, &meta)?
                    }
                };
                match decoded {
                    Some(b) => self.queue.rows_at(p as u64, b, next.into()),
                    None => self.queue.advance(p as u64, next.into()),
                }
            }
            if self.bounded {
                for p in ended {
                    if self.open.remove(&p) {
                        self.queue.finish(p as u64);
                    }
                }
            }
        }
    }
}

impl SourceShard for KafkaReader {
    fn name(&self) -> String {
        format!(
            "kafka topic {} (table {}, reader {}/{})",
            self.topic, self.table, self.index, self.readers
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

    fn position(&self) -> Option<serde_json::Value> {
        let offsets: BTreeMap<String, serde_json::Value> = self
            .queue
            .offsets()
            .iter()
            .map(|(p, o)| (p.to_string(), o.clone()))
            .collect();
        Some(serde_json::json!({ "offsets": offsets }))
    }

    fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        let offsets: BTreeMap<String, i64> = position
            .get("offsets")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| Error::Connector {
                context: self.context(),
                message: format!("unreadable checkpointed offsets: {e}"),
            })?
            .unwrap_or_default();
        let mut restored = BTreeMap::new();
        for (p, o) in offsets {
            let Ok(p) = p.parse::<i32>() else {
                return connector_err!(
                    self.context(),
                    "checkpointed partition '{p}' is not a number"
                );
            };
            restored.insert(p, o);
            self.queue.set_offset(p as u64, o.into());
        }
        self.restored = Some(restored);
        Ok(())
    }

    fn checkpoint_complete(&mut self, position: &serde_json::Value) {
        if !self.commit_on_checkpoint {
            return;
        }
        let Some(consumer) = &self.consumer else {
            return;
        };
        let Some(offsets) = position.get("offsets").and_then(|o| o.as_object()) else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            if let (Ok(p), Some(o)) = (p.parse::<i32>(), o.as_i64()) {
                let _ = tpl.add_partition_offset(&self.topic, p, Offset::Offset(o));
            }
        }
        if tpl.count() > 0
            && let Err(e) = consumer.commit(&tpl, rdkafka::consumer::CommitMode::Async)
        {
            // Lag tools fall behind; the checkpoint still holds the positions.
            eprintln!("weir: {}: committing offsets: {e}", self.context());
        }
    }
}

/// The key columns' schema, under their declared names.
fn key_schema(table: &Table, schema: &SchemaRef, fields: &[usize]) -> Result<SchemaRef> {
    let projected = schema.project(fields)?;
    Ok(Arc::new(datafusion::arrow::datatypes::Schema::new(
        projected
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_name(table.declared_name(f.name())))
            .collect::<Vec<_>>(),
    )))
}

/// How a sink makes message keys.
enum KeyFormat {
    None,
    Raw(usize),
    Json(Vec<usize>, SchemaRef),
}

/// The Kafka sink: see the module doc.
pub struct KafkaSink {
    topic: String,
    producer: FutureProducer,
    key: KeyFormat,
    value: crate::format::messages::MessageEncoder,
    /// Deliveries not yet confirmed, oldest first.
    pending: VecDeque<rdkafka::producer::DeliveryFuture>,
    /// `upsert-kafka`: rows are upserts of their key, `-D` a tombstone, `-U` skipped.
    upsert: bool,
}

/// Deliveries a sink leaves outstanding before it waits for the oldest.
const MAX_IN_FLIGHT: usize = 100_000;

impl KafkaSink {
    /// A sink into `table`'s topic for rows of `schema`.
    pub fn new(table: &Table, schema: SchemaRef) -> Result<Self> {
        let topic = topic(table)?;
        table.reject_metadata("kafka sink")?;
        match table
            .option("sink.delivery-guarantee")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("at-least-once") | Some("none") => {}
            Some("exactly-once") => {
                return crate::not_supported!(
                    "'sink.delivery-guarantee' = 'exactly-once' on kafka table {} (Kafka \
                     transactions); use 'at-least-once' (the default): with checkpoints, a \
                     restore repeats at most what was sent after the last checkpoint",
                    table.def.name
                );
            }
            Some(other) => {
                return plan_err!(
                    "table {}: 'sink.delivery-guarantee' = '{other}': expected at-least-once, \
                     none or exactly-once",
                    table.def.name
                );
            }
        }
        let upsert = UpsertKey::of(table)?;
        let value_schema = if upsert.is_some() && crate::changelog::is_changelog(&schema) {
            // The rows without their op, which decides what is written.
            let keep: Vec<usize> = (0..schema.fields().len() - 1).collect();
            Arc::new(schema.project(&keep)?)
        } else {
            schema.clone()
        };
        let value = crate::format::messages::MessageEncoder::new(table, &value_schema)?;
        let fields: Vec<usize> = match (&upsert, table.option("key.fields")) {
            (Some(key), _) => key.columns.clone(),
            (None, None) => vec![],
            (None, Some(f)) => f
                .split(';')
                .map(|c| c.trim().to_lowercase())
                .filter(|c| !c.is_empty())
                .map(|c| {
                    schema.index_of(&c).map_err(|_| {
                        Error::Plan(format!(
                            "'key.fields': sink {} has no column {c}",
                            table.def.name
                        ))
                    })
                })
                .collect::<Result<_>>()?,
        };
        let key = match (
            table.option("key.format").map(str::to_ascii_lowercase),
            fields.len(),
        ) {
            (_, 0) => KeyFormat::None,
            (Some(f), 1) if f == "raw" => KeyFormat::Raw(fields[0]),
            (Some(f), _) if f == "raw" => {
                return plan_err!("'key.format' = 'raw' takes one key field");
            }
            (None, _) => KeyFormat::Json(fields.clone(), key_schema(table, &schema, &fields)?),
            (Some(f), _) if f == "json" => {
                KeyFormat::Json(fields.clone(), key_schema(table, &schema, &fields)?)
            }
            (Some(f), _) => return crate::not_supported!("'key.format' = '{f}' (raw, json)"),
        };
        let mut config = client_config(table)?;
        if config.get("linger.ms").is_none() {
            config.set("linger.ms", "5");
        }
        let producer: FutureProducer = config
            .create()
            .map_err(|e| kafka_err(format!("kafka topic {topic}: producer"), e))?;
        Ok(Self {
            topic,
            producer,
            key,
            value,
            pending: VecDeque::new(),
            upsert: upsert.is_some(),
        })
    }

    fn keys(&self, batch: &RecordBatch) -> Result<Option<Vec<Vec<u8>>>> {
        Ok(match &self.key {
            KeyFormat::None => None,
            KeyFormat::Raw(i) => {
                let c = datafusion::arrow::compute::cast(
                    batch.column(*i),
                    &datafusion::arrow::datatypes::DataType::Utf8,
                )?;
                let s = c
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| Error::Plan("key column is not text".into()))?;
                Some(
                    (0..s.len())
                        .map(|r| {
                            if s.is_valid(r) {
                                s.value(r).as_bytes().to_vec()
                            } else {
                                vec![]
                            }
                        })
                        .collect(),
                )
            }
            KeyFormat::Json(cols, schema) => {
                let cols: Vec<ArrayRef> = cols.iter().map(|i| batch.column(*i).clone()).collect();
                let keys = RecordBatch::try_new(schema.clone(), cols)?;
                Some(crate::format::writer::json_rows(&keys)?)
            }
        })
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        use crate::changelog::RowKind;
        // Upserts: what each row writes (its value, a tombstone, or nothing for -U).
        let kinds: Option<Vec<RowKind>> = match crate::changelog::ops_of(&batch) {
            Some(ops) if self.upsert => Some(ops.iter().map(|o| RowKind::from_i8(*o)).collect()),
            _ => None,
        };
        let values = match &kinds {
            Some(_) => self.value.encode(&crate::changelog::strip_ops(&batch))?,
            None => self.value.encode(&batch)?,
        };
        let keys = self.keys(&batch)?;
        let ctx = || format!("kafka topic {}: produce", self.topic);
        let deliveries = &mut self.pending;
        for (i, v) in values.iter().enumerate() {
            let kind = kinds.as_ref().map(|k| k[i]);
            if kind == Some(RowKind::UpdateBefore) {
                continue;
            }
            let mut record = FutureRecord::to(&self.topic);
            if kind != Some(RowKind::Delete) {
                record = record.payload(v.as_slice());
            }
            if let Some(k) = &keys {
                record = record.key(k[i].as_slice());
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(d) => {
                        deliveries.push_back(d);
                        break;
                    }
                    Err((
                        KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        r,
                    )) => {
                        record = r;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(kafka_err(ctx(), e)),
                }
            }
        }
        self.settle(false).await
    }

    /// Check the deliveries that completed (all of them with `all`, and the oldest while more
    /// than [`MAX_IN_FLIGHT`] are outstanding): a failed delivery fails the job.
    async fn settle(&mut self, all: bool) -> Result<()> {
        let ctx = || format!("kafka topic {}: produce", self.topic);
        loop {
            let wait = all || self.pending.len() > MAX_IN_FLIGHT;
            let Some(front) = self.pending.front_mut() else {
                break;
            };
            let outcome = if wait {
                Some(front.await)
            } else {
                front.now_or_never()
            };
            let Some(outcome) = outcome else {
                break;
            };
            self.pending.pop_front();
            match outcome {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(kafka_err(ctx(), e)),
                Err(_) => return connector_err!(ctx(), "the producer went away"),
            }
        }
        Ok(())
    }
}

impl Sink for KafkaSink {
    fn delivery(&self) -> Result<super::Delivery> {
        Ok(super::Delivery::AtLeastOnce)
    }

    fn flush(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.settle(true))
    }

    /// Every row before the barrier is delivered before the checkpoint completes.
    fn pre_commit(&mut self, _epoch: u64) -> BoxFuture<'_, Result<serde_json::Value>> {
        Box::pin(async move {
            self.settle(true).await?;
            Ok(serde_json::Value::Null)
        })
    }

    fn write_batch(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(batch))
    }

    fn tick(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.settle(false))
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.settle(true).await?;
            let p = self.producer.clone();
            blocking(format!("kafka topic {}: flush", self.topic), move || {
                p.flush(Duration::from_secs(60))
            })
            .await
        })
    }
}
