//! `'connector' = 'http'` tables, which only `weir serve` runs: as a source, an ingest
//! journal that `POST /v1/tables/{t}/records` appends to; as a sink, the served state behind
//! `GET /v1/tables/{t}` and its server-sent events.
//!
//! **The journal** of a table is a directory of Arrow IPC stream segments under the server's
//! journal directory, named by the offset (row number) of their first row. An append writes
//! one IPC message and fsyncs the file before the POST is acknowledged, so an acknowledged
//! record survives `kill -9`. After a restart, appends go to a new segment (the last one may
//! end in a torn message: it is read up to its last whole batch, which is exactly what was
//! acknowledged, and perhaps one batch whose acknowledgement never left). The active segment is
//! also kept in memory; readers behind it read sealed segments from disk.
//!
//! A job reads a journal with one shard whose checkpointed position is its offset, so a
//! restored job re-reads exactly the rows after its checkpoint. A sealed segment is deleted
//! once every reader is past it (checkpointing readers count only completed checkpoints) and
//! it is older than `'http.retention'`.
//!
//! **Served tables** keep, per table, the retained tail of rows (`'http.retain'`) with their
//! sequence numbers and, for a table with a PRIMARY KEY, the latest row per key; each write is
//! also broadcast to subscribers. A slow subscriber falls behind the broadcast buffer and is
//! told so; it never holds the job up. The served state is the sink's pre-commit info, so it is
//! part of every checkpoint and a restored job serves what its checkpoint served.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use super::{Sink, SourceEnv, SourceShard};
use crate::sql::catalog::Table;
use crate::sql::interval::parse_duration_option;
use crate::{Error, Result, plan_err};

/// A sealed segment is about this large.
const SEGMENT_BYTES: u64 = 16 << 20;
/// Batches a reader takes from memory per call.
const READ_BATCHES: usize = 64;
/// Events buffered per subscriber before it is told it lagged.
const BROADCAST: usize = 1024;

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

fn locked<'a, T>(m: &'a Mutex<T>, what: &str) -> Result<MutexGuard<'a, T>> {
    m.lock().map_err(|_| Error::Execution {
        operator: what.into(),
        message: "lock poisoned".into(),
    })
}

/// The http tables of one server: their journals and their served state.
pub struct HttpHub {
    dir: PathBuf,
    journals: Mutex<HashMap<String, Arc<Journal>>>,
    served: Mutex<HashMap<String, Arc<Served>>>,
    /// This server run's epoch (ms at start): the first part of event ids.
    epoch: u64,
}

impl HttpHub {
    /// A hub whose journals live under `dir` (created).
    pub fn new(dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Ok(Self {
            dir,
            journals: Mutex::default(),
            served: Mutex::default(),
            epoch,
        })
    }

    /// The journal of http table `table` (opened on first use).
    pub fn journal(&self, table: &Table) -> Result<Arc<Journal>> {
        let mut journals = locked(&self.journals, "http journal")?;
        if let Some(j) = journals.get(&table.def.name) {
            return Ok(j.clone());
        }
        let retention = duration_option(table, "http.retention", 24 * 3600 * 1000)?;
        let max_bytes = match table.option("http.max-journal-size") {
            None => u64::MAX,
            Some(v) => crate::sql::interval::parse_size_option(v).ok_or_else(|| {
                Error::Plan(format!(
                    "'http.max-journal-size' = '{v}' is not a size such as '1 GB'"
                ))
            })?,
        };
        let j = Journal::open(
            &table.def.name,
            self.dir.join(&table.def.name),
            table.physical.clone(),
            retention,
            max_bytes,
        )?;
        journals.insert(table.def.name.clone(), j.clone());
        Ok(j)
    }

    /// The served state of http sink table `table`, for rows of `schema`.
    pub fn served(&self, table: &Table, schema: &SchemaRef) -> Result<Arc<Served>> {
        let mut served = locked(&self.served, "http table")?;
        if let Some(s) = served.get(&table.def.name) {
            return Ok(s.clone());
        }
        let retain = match table.option("http.retain") {
            None => 10_000,
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| Error::Plan(format!("'http.retain' = '{v}' is not a count")))?,
        };
        let data: SchemaRef = if crate::changelog::is_changelog(schema) {
            let n = schema.fields().len() - 1;
            Arc::new(schema.project(&(0..n).collect::<Vec<_>>())?)
        } else {
            schema.clone()
        };
        let mut key = vec![];
        for k in &table.def.primary_key {
            match data.index_of(k) {
                Ok(i) => key.push(i),
                Err(_) => return plan_err!("table {}: no key column {k}", table.def.name),
            }
        }
        let s = Arc::new(Served {
            schema: data,
            key,
            retain,
            epoch: self.epoch,
            tx: broadcast::channel(BROADCAST).0,
            state: Mutex::new(ServedState::default()),
        });
        served.insert(table.def.name.clone(), s.clone());
        Ok(s)
    }

    /// The served state of `table`, if anything serves it yet.
    pub fn served_table(&self, table: &str) -> Option<Arc<Served>> {
        locked(&self.served, "http table")
            .ok()
            .and_then(|s| s.get(table).cloned())
    }

    /// Every journal opened so far (for metrics).
    pub fn journals(&self) -> Vec<Arc<Journal>> {
        locked(&self.journals, "http journal")
            .map(|j| j.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The shard that reads `table`'s journal for one job.
    pub fn open_source(&self, table: &Table, env: &SourceEnv) -> Result<Vec<Box<dyn SourceShard>>> {
        let journal = self.journal(table)?;
        let start = match table.option("scan.startup.mode") {
            None | Some("earliest-offset") => journal.first_offset()?,
            Some("latest-offset") => journal.end_offset(),
            Some(other) => {
                return plan_err!(
                    "table {}: 'scan.startup.mode' = '{other}' (earliest-offset or latest-offset)",
                    table.def.name
                );
            }
        };
        let reader = journal.register(start)?;
        Ok(vec![Box::new(JournalShard {
            end: journal.end.subscribe(),
            journal,
            offset: start,
            pending: VecDeque::new(),
            reader,
            checkpointing: env.checkpointing,
        })])
    }

    /// The sink that serves what a job writes into `table`.
    pub fn open_sink(&self, table: &Table, schema: SchemaRef) -> Result<Box<dyn Sink>> {
        let served = self.served(table, &schema)?;
        Ok(Box::new(ServedSink { served, schema }))
    }
}

fn duration_option(table: &Table, key: &str, default_ms: i64) -> Result<Duration> {
    match table.option(key) {
        None => Ok(Duration::from_millis(default_ms as u64)),
        Some(v) => match parse_duration_option(v) {
            Some(ms) if ms >= 0 => Ok(Duration::from_millis(ms as u64)),
            _ => plan_err!("'{key}' = '{v}' is not a duration such as '24 h'"),
        },
    }
}

struct Segment {
    first: u64,
    rows: u64,
    bytes: u64,
    path: PathBuf,
    sealed_at: SystemTime,
    /// The active segment's batches with their first offsets.
    cached: Option<Vec<(u64, RecordBatch)>>,
}

struct JournalInner {
    segments: Vec<Segment>,
    writer: Option<StreamWriter<File>>,
    next: u64,
    bytes: u64,
}

/// One http table's ingest journal (see the module doc).
pub struct Journal {
    table: String,
    dir: PathBuf,
    schema: SchemaRef,
    retention: Duration,
    max_bytes: u64,
    inner: Mutex<JournalInner>,
    end: watch::Sender<u64>,
    /// Per reader: the offset before which it needs nothing.
    readers: Mutex<HashMap<u64, u64>>,
    next_reader: AtomicU64,
    /// Records appended by this run.
    pub appended: AtomicU64,
    queue: tokio::sync::mpsc::Sender<Queued>,
}

/// A batch waiting for the writer thread, and who waits for it to be durable.
type Queued = (
    RecordBatch,
    Option<tokio::sync::oneshot::Sender<Result<u64>>>,
);

/// Batches queued per journal before appends answer 503.
const QUEUED: usize = 1024;

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.arrow"))
}

/// The whole batches of a segment file (a torn last message ends it).
fn read_segment(path: &Path, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let f = File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let reader =
        StreamReader::try_new(std::io::BufReader::new(f), None).map_err(|e| Error::Execution {
            operator: "http journal".into(),
            message: format!("{}: {e}", path.display()),
        })?;
    if reader.schema().fields() != schema.fields() {
        return plan_err!(
            "the journal segment {} holds rows of another schema than its table's; move it away",
            path.display()
        );
    }
    let mut out = vec![];
    for b in reader {
        match b {
            Ok(b) => out.push(b),
            Err(_) => break,
        }
    }
    Ok(out)
}

impl Journal {
    fn open(
        table: &str,
        dir: PathBuf,
        schema: SchemaRef,
        retention: Duration,
        max_bytes: u64,
    ) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let mut firsts = vec![];
        for e in std::fs::read_dir(&dir).map_err(io(format!("listing {}", dir.display())))? {
            let e = e.map_err(io(format!("listing {}", dir.display())))?;
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(n) = name
                .strip_suffix(".arrow")
                .and_then(|n| n.parse::<u64>().ok())
            {
                firsts.push(n);
            }
        }
        firsts.sort_unstable();
        let mut segments = vec![];
        let mut bytes = 0;
        for first in firsts {
            let path = segment_path(&dir, first);
            let rows = if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) == 0 {
                0
            } else {
                read_segment(&path, &schema)?
                    .iter()
                    .map(|b| b.num_rows() as u64)
                    .sum()
            };
            let meta = std::fs::metadata(&path).map_err(io(format!("{}", path.display())))?;
            bytes += meta.len();
            segments.push(Segment {
                first,
                rows,
                bytes: meta.len(),
                path,
                sealed_at: meta.modified().unwrap_or_else(|_| SystemTime::now()),
                cached: None,
            });
        }
        // Segments that a torn write left short: offsets go on from the rows they hold.
        let next = segments.last().map_or(0, |s| s.first + s.rows);
        let (queue, rx) = tokio::sync::mpsc::channel(QUEUED);
        let journal = Arc::new(Self {
            table: table.into(),
            dir,
            schema,
            retention,
            max_bytes,
            inner: Mutex::new(JournalInner {
                segments,
                writer: None,
                next,
                bytes,
            }),
            end: watch::channel(next).0,
            readers: Mutex::default(),
            next_reader: AtomicU64::new(0),
            appended: AtomicU64::new(0),
            queue,
        });
        let writer = journal.clone();
        std::thread::Builder::new()
            .name(format!("journal-{table}"))
            .spawn(move || writer.write_loop(rx))
            .map_err(io("starting a journal writer"))?;
        Ok(journal)
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The rows' schema (the table's physical columns).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The offset after the last appended row.
    pub fn end_offset(&self) -> u64 {
        *self.end.borrow()
    }

    /// The first offset still in the journal.
    pub fn first_offset(&self) -> Result<u64> {
        let g = locked(&self.inner, "http journal")?;
        Ok(g.segments.first().map_or(g.next, |s| s.first))
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        locked(&self.inner, "http journal").map_or(0, |g| g.bytes)
    }

    /// Whether the journal is over `'http.max-journal-size'` (appends answer 503).
    pub fn is_full(&self) -> bool {
        self.bytes() >= self.max_bytes
    }

    /// Append `batches` durably (written, then one fsync for all); returns the offset after
    /// them. Blocking: the journal's writer thread calls it.
    fn append_all(&self, batches: &[RecordBatch]) -> Result<u64> {
        let mut g = locked(&self.inner, "http journal")?;
        let roll = match g.segments.last() {
            Some(s) => g.writer.is_none() || s.bytes >= SEGMENT_BYTES,
            None => true,
        };
        if roll {
            if let Some(mut w) = g.writer.take() {
                w.finish().map_err(|e| self.failed(e))?;
                w.get_ref()
                    .sync_data()
                    .map_err(io(format!("syncing the journal of {}", self.table)))?;
            }
            if let Some(s) = g.segments.last_mut() {
                s.cached = None;
                s.sealed_at = SystemTime::now();
            }
            let first = g.next;
            let path = segment_path(&self.dir, first);
            let f = File::create(&path).map_err(io(format!("creating {}", path.display())))?;
            let w = StreamWriter::try_new(f, &self.schema).map_err(|e| self.failed(e))?;
            // The new file's name must survive a crash too.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io(format!("syncing {}", self.dir.display())))?;
            g.writer = Some(w);
            g.segments.push(Segment {
                first,
                rows: 0,
                bytes: 0,
                path,
                sealed_at: SystemTime::now(),
                cached: Some(vec![]),
            });
            self.collect(&mut g)?;
        }
        let written = (|| {
            let Some(w) = g.writer.as_mut() else {
                return plan_err!("internal: no journal writer");
            };
            for b in batches {
                w.write(b).map_err(|e| self.failed(e))?;
            }
            w.flush().map_err(|e| self.failed(e))?;
            let file = w.get_ref();
            file.sync_data()
                .map_err(io(format!("syncing the journal of {}", self.table)))?;
            Ok(file
                .metadata()
                .map_err(io(format!("the journal of {}", self.table)))?
                .len())
        })();
        let len = match written {
            Ok(len) => len,
            Err(e) => {
                // What was written is not acknowledged: go on in a new segment.
                g.writer = None;
                return Err(e);
            }
        };
        let g = &mut *g;
        let mut rows = 0;
        if let Some(s) = g.segments.last_mut() {
            g.bytes = g.bytes - s.bytes + len;
            s.bytes = len;
            for b in batches {
                let n = b.num_rows() as u64;
                if let Some(c) = &mut s.cached {
                    c.push((g.next, b.clone()));
                }
                s.rows += n;
                g.next += n;
                rows += n;
            }
        }
        self.appended.fetch_add(rows, Ordering::Relaxed);
        self.end.send_replace(g.next);
        Ok(g.next)
    }

    /// Queue `batch` for the writer thread; `ack` hears once it is durable. `false` when the
    /// queue is full (the disk cannot keep up): the caller answers 503.
    pub fn submit(
        &self,
        batch: RecordBatch,
        ack: Option<tokio::sync::oneshot::Sender<Result<u64>>>,
    ) -> bool {
        self.queue.try_send((batch, ack)).is_ok()
    }

    /// The writer thread: takes what is queued, appends it with one fsync (group commit) and
    /// acknowledges each request.
    fn write_loop(self: Arc<Self>, mut rx: tokio::sync::mpsc::Receiver<Queued>) {
        while let Some(first) = rx.blocking_recv() {
            let mut items = vec![first];
            while items.len() < 256 {
                match rx.try_recv() {
                    Ok(i) => items.push(i),
                    Err(_) => break,
                }
            }
            let batches: Vec<RecordBatch> = items.iter().map(|(b, _)| b.clone()).collect();
            let result = self.append_all(&batches);
            if let Err(e) = &result {
                eprintln!(
                    "weir serve: appending to the journal of {} failed: {e}",
                    self.table
                );
            }
            for (_, ack) in items {
                if let Some(ack) = ack {
                    let _ = ack.send(match &result {
                        Ok(n) => Ok(*n),
                        Err(e) => Err(self.failed(e)),
                    });
                }
            }
        }
    }

    fn failed(&self, e: impl std::fmt::Display) -> Error {
        Error::Execution {
            operator: format!("http journal of {}", self.table),
            message: e.to_string(),
        }
    }

    /// Delete sealed segments every reader is past and that are older than the retention.
    fn collect(&self, g: &mut JournalInner) -> Result<()> {
        let needed = locked(&self.readers, "http journal")?
            .values()
            .copied()
            .min()
            .unwrap_or(u64::MAX);
        let now = SystemTime::now();
        while g.segments.len() > 1 {
            let s = &g.segments[0];
            let old = now
                .duration_since(s.sealed_at)
                .is_ok_and(|age| age >= self.retention);
            if s.first + s.rows > needed || !old {
                break;
            }
            std::fs::remove_file(&s.path).map_err(io(format!("removing {}", s.path.display())))?;
            g.bytes -= s.bytes;
            g.segments.remove(0);
        }
        Ok(())
    }

    /// Rows from `from` on: a few batches (empty at the end). Reads a sealed segment from
    /// disk (blocking) when `from` is not in memory.
    fn read(&self, from: u64) -> Result<Vec<RecordBatch>> {
        let (path, first) = {
            let g = locked(&self.inner, "http journal")?;
            if from >= g.next {
                return Ok(vec![]);
            }
            let Some(s) = g
                .segments
                .iter()
                .rev()
                .find(|s| s.first <= from)
                .or(g.segments.first())
            else {
                return Ok(vec![]);
            };
            if let Some(cached) = &s.cached {
                return Ok(from_offset(
                    cached.iter().map(|(o, b)| (*o, b.clone())),
                    from,
                    READ_BATCHES,
                ));
            }
            (s.path.clone(), s.first)
        };
        let mut offset = first;
        let with_offsets = read_segment(&path, &self.schema)?.into_iter().map(|b| {
            let o = offset;
            offset += b.num_rows() as u64;
            (o, b)
        });
        // The rest of the segment at once: a reader catching up reads each file once.
        Ok(from_offset(with_offsets, from, usize::MAX))
    }

    fn is_cached(&self, from: u64) -> bool {
        locked(&self.inner, "http journal").is_ok_and(|g| {
            from >= g.next
                || g.segments
                    .last()
                    .is_some_and(|s| s.first <= from && s.cached.is_some())
        })
    }

    fn register(&self, start: u64) -> Result<u64> {
        let id = self.next_reader.fetch_add(1, Ordering::Relaxed);
        locked(&self.readers, "http journal")?.insert(id, start);
        Ok(id)
    }

    fn mark(&self, reader: u64, offset: u64) {
        if let Ok(mut r) = locked(&self.readers, "http journal") {
            r.insert(reader, offset);
        }
    }

    fn unregister(&self, reader: u64) {
        if let Ok(mut r) = locked(&self.readers, "http journal") {
            r.remove(&reader);
        }
    }
}

/// The batches from offset `from` on (the first one sliced), at most `limit`.
fn from_offset(
    batches: impl Iterator<Item = (u64, RecordBatch)>,
    from: u64,
    limit: usize,
) -> Vec<RecordBatch> {
    batches
        .filter(|(o, b)| o + b.num_rows() as u64 > from)
        .take(limit)
        .map(|(o, b)| {
            if o < from {
                let skip = (from - o) as usize;
                b.slice(skip, b.num_rows() - skip)
            } else {
                b
            }
        })
        .collect()
}

struct JournalShard {
    journal: Arc<Journal>,
    end: watch::Receiver<u64>,
    offset: u64,
    pending: VecDeque<RecordBatch>,
    reader: u64,
    checkpointing: bool,
}

impl Drop for JournalShard {
    fn drop(&mut self) {
        self.journal.unregister(self.reader);
    }
}

impl SourceShard for JournalShard {
    fn name(&self) -> String {
        format!("http:{}", self.journal.table)
    }

    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<RecordBatch>>> {
        Box::pin(async move {
            loop {
                if let Some(b) = self.pending.pop_front() {
                    self.offset += b.num_rows() as u64;
                    if !self.checkpointing {
                        self.journal.mark(self.reader, self.offset);
                    }
                    return Ok(Some(b));
                }
                let from = self.offset;
                let batches = if self.journal.is_cached(from) {
                    self.journal.read(from)?
                } else {
                    let j = self.journal.clone();
                    tokio::task::spawn_blocking(move || j.read(from))
                        .await
                        .map_err(|e| Error::Execution {
                            operator: "http source".into(),
                            message: e.to_string(),
                        })??
                };
                if batches.is_empty() {
                    // Wait for an append past our offset.
                    if self.end.wait_for(|end| *end > from).await.is_err() {
                        return Ok(None);
                    }
                    continue;
                }
                self.pending = batches.into();
            }
        })
    }

    fn check_replayable(&self) -> Result<()> {
        Ok(())
    }

    fn position(&self) -> Option<Value> {
        Some(serde_json::json!({ "offset": self.offset }))
    }

    fn restore(&mut self, position: &Value) -> Result<()> {
        let Some(offset) = position.get("offset").and_then(Value::as_u64) else {
            return plan_err!("http source: a checkpointed position without an offset");
        };
        let first = self.journal.first_offset()?;
        if offset < first {
            eprintln!(
                "weir: the journal of table {} no longer holds rows {offset}..{first} that the \
                 checkpoint needs (deleted after 'http.retention'); reading on from {first}",
                self.journal.table
            );
        }
        self.offset = offset.max(first);
        self.pending.clear();
        self.journal.mark(self.reader, self.offset);
        Ok(())
    }

    fn checkpoint_complete(&mut self, position: &Value) {
        if let Some(o) = position.get("offset").and_then(Value::as_u64) {
            self.journal.mark(self.reader, o);
        }
    }
}

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum ServedEvent {
    /// Rows with the sequence number of the first.
    Rows(u64, Arc<Vec<Value>>),
    /// The writing job's watermark (ms) advanced.
    Watermark(i64),
}

/// Watermark events go out at most this often per table.
const WATERMARK_EVERY: Duration = Duration::from_millis(200);

#[derive(Default)]
struct ServedState {
    /// Rows written so far (the last row's sequence number).
    seq: u64,
    tail: VecDeque<(u64, Value)>,
    latest: BTreeMap<String, Value>,
    /// The last watermark told, and when.
    watermark: Option<(i64, std::time::Instant)>,
}

/// What an http sink table serves (see the module doc).
pub struct Served {
    schema: SchemaRef,
    key: Vec<usize>,
    retain: usize,
    epoch: u64,
    tx: broadcast::Sender<ServedEvent>,
    state: Mutex<ServedState>,
}

/// A snapshot of a served table.
pub struct Snapshot {
    /// The sequence number of the last row it covers.
    pub seq: u64,
    /// For a keyed table the latest row per key, else the tail.
    pub rows: Vec<Value>,
}

impl Served {
    /// This run's epoch, the first part of event ids.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The key columns' names (empty: not keyed).
    pub fn key_columns(&self) -> Vec<String> {
        self.key
            .iter()
            .map(|i| self.schema.field(*i).name().clone())
            .collect()
    }

    /// The column names, in order.
    pub fn columns(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// New events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ServedEvent> {
        self.tx.subscribe()
    }

    /// The current contents.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let s = locked(&self.state, "http table")?;
        let rows = if self.key.is_empty() {
            s.tail.iter().map(|(_, r)| r.clone()).collect()
        } else {
            s.latest.values().cloned().collect()
        };
        Ok(Snapshot { seq: s.seq, rows })
    }

    /// The retained rows after sequence number `after`, if the tail still holds all of them.
    pub fn since(&self, after: u64) -> Result<Option<(u64, Vec<Value>)>> {
        let s = locked(&self.state, "http table")?;
        let oldest = s.tail.front().map_or(s.seq + 1, |(q, _)| *q);
        if after > s.seq || after + 1 < oldest {
            return Ok(None);
        }
        let rows = s
            .tail
            .iter()
            .filter(|(q, _)| *q > after)
            .map(|(_, r)| r.clone())
            .collect();
        Ok(Some((s.seq, rows)))
    }

    /// The latest row of key `key` (values in key-column order, as text).
    pub fn lookup(&self, key: &[String]) -> Result<Option<Value>> {
        let s = locked(&self.state, "http table")?;
        Ok(s.latest.get(&key_text_of(key)).cloned())
    }

    /// The last watermark told to subscribers (ms).
    pub fn watermark(&self) -> Option<i64> {
        locked(&self.state, "http table")
            .ok()
            .and_then(|s| s.watermark.map(|(w, _)| w))
    }

    fn advance(&self, wm: i64) {
        let Ok(mut s) = locked(&self.state, "http table") else {
            return;
        };
        let due = match s.watermark {
            None => true,
            Some((last, at)) => wm > last && at.elapsed() >= WATERMARK_EVERY,
        };
        if due {
            s.watermark = Some((wm, std::time::Instant::now()));
            drop(s);
            let _ = self.tx.send(ServedEvent::Watermark(wm));
        }
    }

    /// The served state, for a checkpoint.
    fn to_json(&self) -> Result<Value> {
        let s = locked(&self.state, "http table")?;
        Ok(serde_json::json!({
            "seq": s.seq,
            "tail": s.tail.iter().map(|(q, r)| serde_json::json!([q, r])).collect::<Vec<_>>(),
            "latest": s.latest.iter().map(|(k, r)| serde_json::json!([k, r])).collect::<Vec<_>>(),
        }))
    }

    /// Take the served state of a checkpoint, unless this run already serves rows.
    fn restore_json(&self, v: &Value) -> Result<()> {
        let mut s = locked(&self.state, "http table")?;
        if s.seq > 0 {
            return Ok(());
        }
        s.seq = v["seq"].as_u64().unwrap_or(0);
        s.tail = v["tail"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e[0].as_u64()?, e[1].clone())))
            .collect();
        s.latest = v["latest"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e[0].as_str()?.to_string(), e[1].clone())))
            .collect();
        Ok(())
    }

    fn write(&self, rows: Vec<Value>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let names = self.key_columns();
        let mut s = locked(&self.state, "http table")?;
        let first = s.seq + 1;
        for row in &rows {
            s.seq += 1;
            let seq = s.seq;
            s.tail.push_back((seq, row.clone()));
            if s.tail.len() > self.retain {
                s.tail.pop_front();
            }
            if !names.is_empty() {
                let key: Vec<String> = names.iter().map(|n| value_text(&row[n])).collect();
                let key = key_text_of(&key);
                match row.get("op").and_then(Value::as_str) {
                    Some("-D" | "-U") => {
                        s.latest.remove(&key);
                    }
                    _ => {
                        let mut latest = row.clone();
                        if let Some(o) = latest.as_object_mut() {
                            o.remove("op");
                        }
                        s.latest.insert(key, latest);
                    }
                }
            }
        }
        drop(s);
        // No subscriber is fine.
        let _ = self.tx.send(ServedEvent::Rows(first, Arc::new(rows)));
        Ok(())
    }
}

/// A JSON value as the text a `?key=` parameter would give.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn key_text_of(key: &[String]) -> String {
    serde_json::to_string(key).unwrap_or_default()
}

struct ServedSink {
    served: Arc<Served>,
    schema: SchemaRef,
}

impl Sink for ServedSink {
    fn write_batch(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let rows = super::webhook::row_objects(&batch, &self.schema)?;
            self.served.write(rows)
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn on_watermark(&mut self, wm: i64) {
        self.served.advance(wm);
    }

    /// A restored job serves what its checkpoint served (rows written after it are written
    /// again by the replay).
    fn begin_checkpointing(
        &mut self,
        _tag: &str,
        restored: Option<(u64, Value, bool)>,
    ) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if let Some((_, info, _)) = restored
                && let Some(state) = info["served"].as_array().and_then(|a| a.last())
            {
                self.served.restore_json(state)?;
            }
            Ok(())
        })
    }

    /// The served state goes into the checkpoint.
    fn pre_commit(&mut self, _epoch: u64) -> BoxFuture<'_, Result<Value>> {
        Box::pin(async move { Ok(serde_json::json!({ "served": [self.served.to_json()?] })) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn batch(schema: &SchemaRef, from: i64, n: i64) -> RecordBatch {
        RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(from..from + n))],
        )
        .unwrap()
    }

    fn values(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                let c = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                (0..c.len()).map(|i| c.value(i)).collect::<Vec<_>>()
            })
            .collect()
    }

    /// Everything from `from` on, as a reader would take it.
    fn read_all(j: &Journal, mut from: u64) -> Vec<i64> {
        let mut out = vec![];
        loop {
            let got = j.read(from).unwrap();
            if got.is_empty() {
                return out;
            }
            from += got.iter().map(|b| b.num_rows() as u64).sum::<u64>();
            out.extend(values(&got));
        }
    }

    #[test]
    fn a_journal_survives_a_restart_and_reads_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let open = || {
            Journal::open(
                "t",
                dir.path().join("t"),
                schema.clone(),
                Duration::from_secs(3600),
                u64::MAX,
            )
            .unwrap()
        };
        let j = open();
        // 100 small batches: more than a reader takes from memory at once.
        for i in 0..100 {
            assert_eq!(
                j.append_all(&[batch(&schema, i * 3, 3)]).unwrap(),
                (i as u64 + 1) * 3
            );
        }
        assert_eq!(read_all(&j, 0), (0..300).collect::<Vec<_>>());
        assert_eq!(read_all(&j, 151), (151..300).collect::<Vec<_>>());
        drop(j);
        // After a restart: the old segment is read from disk, new rows go to a new one.
        let j = open();
        assert_eq!(j.end_offset(), 300);
        j.append_all(&[batch(&schema, 300, 5), batch(&schema, 305, 5)])
            .unwrap();
        assert_eq!(j.end_offset(), 310);
        assert_eq!(read_all(&j, 0), (0..310).collect::<Vec<_>>());
        assert_eq!(read_all(&j, 299), (299..310).collect::<Vec<_>>());
        assert_eq!(read_all(&j, 301), (301..310).collect::<Vec<_>>());
        // A torn last message (a crash mid-write) ends its segment at the last whole batch.
        let seg = segment_path(&dir.path().join("t"), 300);
        let len = std::fs::metadata(&seg).unwrap().len();
        drop(j);
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 20).unwrap();
        let j = open();
        assert_eq!(j.end_offset(), 305);
        assert_eq!(read_all(&j, 0), (0..305).collect::<Vec<_>>());
    }
}
