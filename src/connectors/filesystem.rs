//! The filesystem source: `'path'` is a file or a directory; each file is a shard with its own
//! watermark. Files and directories whose names start with `.` or `_` (in-progress and
//! metadata files) are skipped; directories are read recursively in name order.
//! `'format'`: `json` (JSON lines), `csv`, `parquet`.
//! With `'source.monitor-interval'` the source is unbounded: new files are picked up and growing
//! files are followed (the whole path is then one shard).
//!
//! `s3://bucket/prefix` paths ([`ObjectReader`]): the objects under the prefix (listed once,
//! when the job starts) are dealt over the job's parallelism in key order; each object is
//! fetched whole and is a split with its own watermark.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;

use std::sync::Arc;

use super::object_store::{S3Url, get_object, is_object_url, list_objects, s3_store};
use super::{SourceEnv, SourceShard, SplitQueue};
use crate::format::ErrorPolicy;
use crate::format::csv::CsvReader;
use crate::format::json::JsonLinesReader;
use crate::format::parquet::ParquetReader;
use crate::sql::catalog::Table;
use crate::{Error, Result, not_supported, plan_err};

// One per file: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Reader {
    Json(JsonLinesReader),
    Csv(CsvReader),
    Parquet(ParquetReader),
}

impl Reader {
    /// Decode only the columns the job reads ([`crate::format::ReadColumns`]).
    fn reading(self, table: &Table) -> Result<Self> {
        let read = crate::format::ReadColumns::of(table);
        Ok(match self {
            Reader::Json(r) => Reader::Json(r.reading(read)?),
            Reader::Csv(r) => Reader::Csv(r.reading(read)?),
            Reader::Parquet(r) => Reader::Parquet(r.reading(read)),
        })
    }
}

/// One file.
pub struct FileShard {
    path: PathBuf,
    reader: Reader,
}

impl SourceShard for FileShard {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn reads_without_waiting(&self) -> bool {
        true
    }

    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<RecordBatch>>> {
        Box::pin(async move { next_of(&mut self.reader) })
    }

    fn check_replayable(&self) -> Result<()> {
        check_not_pipe(&self.path)
    }

    fn position(&self) -> Option<serde_json::Value> {
        self.reader.position()
    }

    fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        self.reader.restore(position, &self.path)
    }
}

/// Whether `path` is a named pipe or a device (a terminal, `/dev/stdin` on a pipe): read as
/// one stream until EOF.
fn is_pipe(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path)
        .map(|m| m.file_type().is_fifo() || m.file_type().is_char_device())
        .unwrap_or(false)
}

/// A named pipe or `/dev/stdin` (`producer | weir run job.sql`): read as one stream until EOF,
/// each read decoded as soon as it brings complete lines, so rows go on while the producer
/// still writes. A read blocks until the producer writes, so it runs on tokio's blocking
/// pool, never on a runtime worker.
pub struct PipeShard {
    path: PathBuf,
    reader: Option<Reader>,
    /// The read in progress: kept across a dropped `next_batch` future (cancel safety).
    reading: Option<tokio::task::JoinHandle<(Reader, Result<Option<RecordBatch>>)>>,
}

impl SourceShard for PipeShard {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<RecordBatch>>> {
        Box::pin(async move {
            if self.reading.is_none() {
                let Some(mut reader) = self.reader.take() else {
                    return Ok(None);
                };
                self.reading = Some(tokio::task::spawn_blocking(move || {
                    let batch = next_of(&mut reader);
                    (reader, batch)
                }));
            }
            let Some(reading) = self.reading.as_mut() else {
                return Ok(None);
            };
            let joined = reading.await;
            self.reading = None;
            let (reader, batch) = joined.map_err(|e| Error::Execution {
                operator: "source".into(),
                message: format!("reading {}: {e}", self.path.display()),
            })?;
            self.reader = Some(reader);
            batch
        })
    }

    fn check_replayable(&self) -> Result<()> {
        check_not_pipe(&self.path)
    }
}

/// A pipe cannot be read again after a restart, so a job reading it cannot checkpoint.
fn check_not_pipe(path: &Path) -> Result<()> {
    if is_pipe(path) || path.starts_with("/dev/") || path.starts_with("/proc/") {
        return plan_err!(
            "{} is a pipe: it cannot be read again after a restart, so a job reading it \
             cannot be checkpointed (unset 'state.checkpoints.dir', or read a file)",
            path.display()
        );
    }
    Ok(())
}

impl Reader {
    /// JSON and CSV: the byte offset of the next complete line (and its number); Parquet:
    /// rows read (the row group and row within it follow from the file's metadata).
    fn position(&self) -> Option<serde_json::Value> {
        match self {
            Reader::Json(r) => r.position().map(|p| serde_json::json!(p)),
            Reader::Csv(r) => r.position().map(|p| serde_json::json!(p)),
            Reader::Parquet(r) => Some(serde_json::json!({ "rows": r.position() })),
        }
    }

    /// Continue from what [`Reader::position`] returned (`path` names the file in errors).
    fn restore(&mut self, position: &serde_json::Value, path: &Path) -> Result<()> {
        let bad = || Error::Execution {
            operator: "restore".into(),
            message: format!(
                "checkpointed position {position} does not fit {}",
                path.display()
            ),
        };
        match self {
            Reader::Json(r) => r.seek(serde_json::from_value(position.clone()).map_err(|_| bad())?),
            Reader::Csv(r) => r.seek(serde_json::from_value(position.clone()).map_err(|_| bad())?),
            Reader::Parquet(r) => {
                r.seek(
                    position
                        .get("rows")
                        .and_then(|v| v.as_u64())
                        .ok_or_else(bad)?,
                );
                Ok(())
            }
        }
    }
}

/// All data files under `path`, sorted, skipping hidden (`.`) and metadata (`_`) entries.
pub fn list_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        context: format!("path {}", path.display()),
        source,
    })?;
    if !meta.is_dir() {
        // A file, or a pipe / device read as one.
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| Error::Io {
            context: format!("listing {}", dir.display()),
            source,
        })?;
        for e in entries {
            let e = e.map_err(|source| Error::Io {
                context: format!("listing {}", dir.display()),
                source,
            })?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                dirs.push(p)
            } else {
                out.push(p)
            }
        }
    }
    out.sort();
    Ok(out)
}

fn make_reader(
    table: &Table,
    env: &SourceEnv,
    format: &str,
    f: &Path,
    follow: bool,
) -> Result<Reader> {
    match format {
        "json" | "debezium-json" => {
            let policy = ErrorPolicy::from_table(table, "json", env.metrics.clone())?;
            let open = if format == "json" {
                JsonLinesReader::new
            } else {
                JsonLinesReader::debezium
            };
            let r = open(
                f.to_path_buf(),
                table.physical.clone(),
                table.declared_schema(),
                policy,
            )?;
            Reader::Json(if follow { r.following() } else { r })
        }
        "csv" => {
            let policy = ErrorPolicy::from_table(table, "csv", env.metrics.clone())?;
            let delim = csv_delimiter(table)?;
            let r = CsvReader::new(f.to_path_buf(), table.physical.clone(), delim, policy)?;
            Reader::Csv(if follow { r.following() } else { r })
        }
        "parquet" => Reader::Parquet(ParquetReader::new(f.to_path_buf(), table.physical.clone())),
        other => return not_supported!("format '{other}' (json, debezium-json, csv, parquet)"),
    }
    .reading(table)
}

/// A reader of one object's bytes (`name` names it in messages).
fn make_object_reader(
    table: &Table,
    env: &SourceEnv,
    format: &str,
    name: PathBuf,
    bytes: bytes::Bytes,
) -> Result<Reader> {
    match format {
        "json" | "debezium-json" => {
            let policy = ErrorPolicy::from_table(table, "json", env.metrics.clone())?;
            let open = if format == "json" {
                JsonLinesReader::new
            } else {
                JsonLinesReader::debezium
            };
            Reader::Json(
                open(
                    name,
                    table.physical.clone(),
                    table.declared_schema(),
                    policy,
                )?
                .over_bytes(bytes),
            )
        }
        "csv" => {
            let policy = ErrorPolicy::from_table(table, "csv", env.metrics.clone())?;
            let delim = csv_delimiter(table)?;
            Reader::Csv(CsvReader::over_bytes(
                name,
                bytes,
                table.physical.clone(),
                delim,
                policy,
            ))
        }
        "parquet" => Reader::Parquet(ParquetReader::over_bytes(
            name,
            bytes,
            table.physical.clone(),
        )),
        other => return not_supported!("format '{other}' (json, debezium-json, csv, parquet)"),
    }
    .reading(table)
}

fn csv_delimiter(table: &Table) -> Result<u8> {
    match table.option("csv.field-delimiter").unwrap_or(",") {
        "\\t" => Ok(b'\t'),
        d if d.len() == 1 => Ok(d.as_bytes()[0]),
        d => plan_err!("'csv.field-delimiter' must be one character, not '{d}'"),
    }
}

/// One reader of an `s3://` path: see the module doc.
pub struct ObjectReader {
    table: Table,
    env: SourceEnv,
    format: String,
    url: S3Url,
    store: Arc<dyn ::object_store::ObjectStore>,
    listing: Arc<tokio::sync::OnceCell<Vec<::object_store::path::Path>>>,
    index: usize,
    readers: usize,
    /// This reader's objects not yet opened, with their split numbers (listed on first use).
    mine: Option<std::collections::VecDeque<(u64, ::object_store::path::Path)>>,
    current: Option<(u64, Reader)>,
    /// The object being read.
    current_key: Option<String>,
    /// Objects read to their end (handed on whole).
    done: std::collections::BTreeSet<String>,
    /// A checkpointed position to resume from, applied once the objects are listed.
    restored: Option<serde_json::Value>,
    queue: SplitQueue,
}

impl ObjectReader {
    async fn next(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if let Some(b) = self.queue.pop(&self.table.physical) {
                return Ok(Some(b));
            }
            if let Some((split, reader)) = &mut self.current {
                match next_of(reader)? {
                    Some(b) => self.queue.rows(*split, b),
                    None => {
                        self.queue.finish(*split);
                        self.current = None;
                        if let Some(k) = self.current_key.take() {
                            self.done.insert(k);
                        }
                    }
                }
                continue;
            }
            let Some(mine) = &mut self.mine else {
                let (store, url) = (&self.store, &self.url);
                let objects = self
                    .listing
                    .get_or_try_init(|| list_objects(store, url))
                    .await?;
                if let Some(done) = self
                    .restored
                    .as_ref()
                    .and_then(|r| r.get("done"))
                    .and_then(|d| d.as_array())
                {
                    self.done = done
                        .iter()
                        .filter_map(|k| k.as_str().map(str::to_string))
                        .collect();
                }
                let done = &self.done;
                // Objects read whole before the checkpoint are skipped (and not announced).
                let mine: std::collections::VecDeque<_> = objects
                    .iter()
                    .skip(self.index)
                    .step_by(self.readers)
                    .cloned()
                    .enumerate()
                    .map(|(i, key)| (i as u64, key))
                    .filter(|(_, key)| !done.contains(key.as_ref()))
                    .collect();
                // Every object of this reader holds the watermark back until it is read:
                // see `SourceShard::split`.
                for (split, _) in &mine {
                    self.queue.announce(*split);
                }
                self.mine = Some(mine);
                continue;
            };
            // Fetched before it is taken off the list: `next_batch` must be cancel-safe (see
            // `SourceShard::next_batch`).
            let Some((split, key)) = mine.front().cloned() else {
                return Ok(None);
            };
            let bytes = get_object(&self.store, &key).await?;
            if let Some(mine) = &mut self.mine {
                mine.pop_front();
            }
            let name = PathBuf::from(format!("s3://{}/{key}", self.url.bucket));
            let mut reader =
                make_object_reader(&self.table, &self.env, &self.format, name.clone(), bytes)?;
            if let Some(at) = self
                .restored
                .as_ref()
                .and_then(|r| r.get("current"))
                .filter(|c| c.get("key").and_then(|k| k.as_str()) == Some(key.as_ref()))
                .and_then(|c| c.get("at"))
            {
                reader.restore(at, &name)?;
                self.restored = None;
            }
            self.current = Some((split, reader));
            self.current_key = Some(key.to_string());
        }
    }
}

impl SourceShard for ObjectReader {
    fn name(&self) -> String {
        format!(
            "s3://{}/{} (reader {}/{})",
            self.url.bucket, self.url.prefix, self.index, self.readers
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

    /// The objects read whole, and the one being read with its position in it (as a file's).
    fn position(&self) -> Option<serde_json::Value> {
        if let Some(r) = &self.restored
            && self.mine.is_none()
        {
            // Not started yet: still where the checkpoint left it.
            return Some(r.clone());
        }
        let current = match (&self.current, &self.current_key) {
            (Some((_, reader)), Some(key)) => {
                Some(serde_json::json!({ "key": key, "at": reader.position()? }))
            }
            // The restored object part-read, not reopened yet.
            _ => self
                .restored
                .as_ref()
                .and_then(|r| r.get("current"))
                .filter(|c| !c.is_null())
                .cloned(),
        };
        Some(serde_json::json!({ "done": self.done, "current": current }))
    }

    fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        self.restored = Some(position.clone());
        Ok(())
    }
}

fn next_of(reader: &mut Reader) -> Result<Option<RecordBatch>> {
    match reader {
        Reader::Json(r) => r.next_batch(),
        Reader::Csv(r) => r.next_batch(),
        Reader::Parquet(r) => r.next_batch(),
    }
}

/// Open one shard per file; with `'source.monitor-interval'`, one continuous shard.
pub fn open(table: &Table, env: &SourceEnv) -> Result<Vec<Box<dyn SourceShard>>> {
    let Some(path) = table.option("path") else {
        return plan_err!(
            "table {}: the filesystem connector needs a 'path'",
            table.def.name
        );
    };
    table.reject_metadata("filesystem")?;
    let path = path.strip_prefix("file://").unwrap_or(path);
    if !table.def.partitioned_by.is_empty() {
        return not_supported!(
            "reading a PARTITIONED BY table (partition values from directory names)"
        );
    }
    let format = table
        .option("format")
        .unwrap_or("json")
        .to_ascii_lowercase();
    if is_object_url(path) {
        if table.option("source.monitor-interval").is_some() {
            return not_supported!("'source.monitor-interval' on s3:// paths");
        }
        let url = S3Url::parse(path)?;
        let store = s3_store(table, &url)?;
        let listing = Arc::new(tokio::sync::OnceCell::new());
        let readers = env.parallelism.max(1);
        return Ok((0..readers)
            .map(|index| {
                Box::new(ObjectReader {
                    table: table.clone(),
                    env: env.clone(),
                    format: format.clone(),
                    url: url.clone(),
                    store: store.clone(),
                    listing: listing.clone(),
                    index,
                    readers,
                    mine: None,
                    current: None,
                    current_key: None,
                    done: Default::default(),
                    restored: None,
                    queue: SplitQueue::default(),
                }) as Box<dyn SourceShard>
            })
            .collect());
    }
    if let Some(interval) = table.option("source.monitor-interval") {
        let Some(ms) = crate::sql::interval::parse_duration_option(interval).filter(|ms| *ms > 0)
        else {
            return plan_err!(
                "'source.monitor-interval' = '{interval}' is not a duration such as '1 s'"
            );
        };
        let shard = FollowShard {
            table: table.clone(),
            env: env.clone(),
            format,
            root: PathBuf::from(path),
            interval: Duration::from_millis(ms as u64),
            readers: Vec::new(),
            next: 0,
            restored: BTreeMap::new(),
        };
        return Ok(vec![Box::new(shard)]);
    }
    let files = list_files(Path::new(path))?;
    let mut shards: Vec<Box<dyn SourceShard>> = Vec::with_capacity(files.len());
    for f in files {
        if is_pipe(&f) {
            let reader = match make_reader(table, env, &format, &f, false)? {
                Reader::Json(r) => Reader::Json(r.streaming()),
                Reader::Csv(r) => Reader::Csv(r.streaming()),
                Reader::Parquet(_) => {
                    return plan_err!(
                        "table {}: {} is a pipe, and Parquet cannot be read from a pipe \
                         (json and csv can)",
                        table.def.name,
                        f.display()
                    );
                }
            };
            shards.push(Box::new(PipeShard {
                path: f,
                reader: Some(reader),
                reading: None,
            }));
            continue;
        }
        let reader = make_reader(table, env, &format, &f, false)?;
        shards.push(Box::new(FileShard { path: f, reader }));
    }
    Ok(shards)
}

/// `'source.monitor-interval'`: an unbounded source over a file or directory. Files that
/// appear are read in name order, and every file is followed as it grows (complete lines of
/// JSON or CSV; Parquet files are read once). The whole path is one shard with one watermark,
/// so new data should arrive in roughly increasing event time.
///
/// Its checkpointed position is every file seen, with its position; a restore resumes those
/// and reads files that appeared since from their start.
struct FollowShard {
    table: Table,
    env: SourceEnv,
    format: String,
    root: PathBuf,
    interval: Duration,
    readers: Vec<(PathBuf, Reader)>,
    next: usize,
    /// Checkpointed positions per file, applied as the files are found again.
    restored: BTreeMap<String, serde_json::Value>,
}

impl FollowShard {
    fn discover(&mut self) -> Result<()> {
        let files = match list_files(&self.root) {
            Ok(f) => f,
            // The directory may not exist yet: wait for it.
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        for f in files {
            if !self.readers.iter().any(|(p, _)| *p == f) {
                let mut reader = make_reader(&self.table, &self.env, &self.format, &f, true)?;
                if let Some(at) = self.restored.remove(&f.display().to_string()) {
                    reader.restore(&at, &f)?;
                }
                self.readers.push((f, reader));
            }
        }
        Ok(())
    }

    fn poll(&mut self) -> Result<Option<RecordBatch>> {
        for _ in 0..self.readers.len() {
            let i = self.next % self.readers.len();
            if let Some(b) = next_of(&mut self.readers[i].1)? {
                return Ok(Some(b));
            }
            self.next = i + 1;
        }
        Ok(None)
    }
}

impl SourceShard for FollowShard {
    fn name(&self) -> String {
        format!("{} (monitored)", self.root.display())
    }

    fn check_replayable(&self) -> Result<()> {
        check_not_pipe(&self.root)
    }

    fn position(&self) -> Option<serde_json::Value> {
        let mut files: BTreeMap<String, serde_json::Value> = self.restored.clone();
        for (p, r) in &self.readers {
            files.insert(p.display().to_string(), r.position()?);
        }
        Some(serde_json::json!({ "files": files }))
    }

    fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        if let Some(files) = position.get("files").and_then(|f| f.as_object()) {
            self.restored = files.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        Ok(())
    }

    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<RecordBatch>>> {
        Box::pin(async move {
            loop {
                if let Some(b) = self.poll()? {
                    return Ok(Some(b));
                }
                self.discover()?;
                if let Some(b) = self.poll()? {
                    return Ok(Some(b));
                }
                tokio::time::sleep(self.interval).await;
            }
        })
    }
}
