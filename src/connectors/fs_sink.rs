//! The filesystem sink: rolled, optionally Hive-partitioned files, the way Firehose delivers.
//!
//! - `'path'`: the output directory; `'format'`: json | csv | parquet.
//! - Rolling: a file is closed when it reaches `'sink.rolling-policy.file-size'` (default 128MB)
//!   or has been open for `'sink.rolling-policy.rollover-interval'` (default 30 min), checked
//!   every `'sink.rolling-policy.check-interval'` (default 1 min), and at the end of the job.
//! - In-progress files are hidden (`.part-<job>-<n>.<ext>.inprogress`) and renamed to
//!   `part-<job>-<n>.<ext>` when complete, so readers only ever see whole files.
//! - `PARTITIONED BY (a, b)` or `'sink.partition-by' = 'a,b'`: rows go to `a=<v>/b=<v>/`
//!   directories; the partition columns are not repeated inside the files (Hive / Flink).
//!
//! - `'path'` = `s3://bucket/prefix`: the same files, as objects (see
//!   [`super::object_store`]): each file is streamed with multipart upload while it is
//!   written, and becomes visible only when it is rolled and the upload completed.
//! - When the job fails, open files are dropped: in-progress files removed, uploads aborted.
//!
//! ## Exactly-once, with checkpoints
//! Files roll at every checkpoint and get deterministic names
//! (`part-{lineage}-{job}-{epoch:06}-{n}`), so a replayed epoch writes the same names.
//! - Local: files are written hidden and renamed when the checkpoint that covers them
//!   completes.
//! - `s3://`: each file is a multipart upload whose parts are uploaded as it is written; at
//!   the checkpoint the rest is uploaded and the upload id and part ids go into the
//!   checkpoint (sinks.json). The commit completes the uploads, and a restore replays the
//!   commit of a checkpoint that completed but was not yet published. An upload no
//!   checkpoint covers (a killed run's open file) stays invisible and is aborted when the
//!   job fails or is cancelled; after `kill -9` it lingers as an incomplete upload until the
//!   bucket's lifecycle rule (`AbortIncompleteMultipartUpload`) reclaims it, as with Flink's
//!   S3 sink.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, UInt32Array};
use datafusion::arrow::compute::{cast, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;

use super::object_store::{
    S3Url, StagedObject, StagedUpload, Upload, complete_staged, is_object_url, s3_bucket,
};
use super::{Delivery, Sink};
use crate::error::Context;
use crate::format::writer::{FileFormat, FormatWriter};
use crate::sql::catalog::Table;
use crate::sql::interval::{parse_duration_option, parse_size_option};
use crate::{Result, plan_err};

/// Where finished files go.
enum Target {
    Local(PathBuf),
    S3 {
        store: Arc<dyn ::object_store::ObjectStore>,
        bucket: Arc<::object_store::aws::AmazonS3>,
        url: S3Url,
        part_size: usize,
    },
}

/// How an open file becomes visible.
enum Dest {
    /// Renamed from the hidden in-progress name.
    Local { tmp: PathBuf, done: PathBuf },
    /// Its multipart upload is completed.
    S3(Upload),
    /// Its multipart upload is completed when a checkpoint that covers it completes.
    Staged(StagedUpload),
}

struct OpenFile {
    writer: FormatWriter,
    dest: Dest,
    opened: Instant,
}

/// See the module doc.
pub struct FileSink {
    target: Target,
    format: FileFormat,
    partition_cols: Vec<usize>,
    partition_names: Vec<String>,
    data_cols: Vec<usize>,
    data_schema: SchemaRef,
    file_size: u64,
    rollover: Duration,
    check_interval: Duration,
    open: HashMap<String, OpenFile>,
    job: String,
    counter: u64,
    /// With checkpoints: files closed but not yet covered by a completed checkpoint.
    exactly_once: Option<ExactlyOnce>,
}

/// Two-phase commit state of a checkpointed file sink.
struct ExactlyOnce {
    /// The job's lineage tag: in every file name, so names are deterministic and leftovers
    /// of this job can be found.
    tag: String,
    /// The epoch the files being written will be published with.
    epoch: u64,
    /// Closed hidden files of this epoch: (hidden, published) paths.
    closed: Vec<(PathBuf, PathBuf)>,
    /// Uploaded objects of this epoch, not yet completed.
    staged: Vec<StagedObject>,
}

impl FileSink {
    /// A sink for rows of `schema` into `table`.
    pub fn new(table: &Table, schema: SchemaRef) -> Result<Self> {
        let Some(path) = table.option("path") else {
            return plan_err!(
                "sink {}: the filesystem connector needs a 'path' directory",
                table.def.name
            );
        };
        table.reject_metadata("filesystem")?;
        let format = FileFormat::parse(table.option("format").unwrap_or("json"))?;
        let mut partition_names = table.def.partitioned_by.clone();
        if let Some(p) = table.option("sink.partition-by") {
            partition_names.extend(
                p.split(',')
                    .map(|s| s.trim().to_lowercase())
                    .filter(|s| !s.is_empty()),
            );
        }
        let mut partition_cols = vec![];
        for p in &partition_names {
            let Ok(i) = schema.index_of(p) else {
                return plan_err!(
                    "sink {}: partition column {p} is not among the columns written",
                    table.def.name
                );
            };
            partition_cols.push(i);
        }
        let partition_names: Vec<String> = partition_names
            .iter()
            .map(|p| table.declared_name(p).to_string())
            .collect();
        let mut data_cols: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !partition_cols.contains(i))
            .collect();
        // Files carry the sink's columns as declared (`userId`, not the normalised `userid`).
        let mut data_fields: Vec<_> = data_cols
            .iter()
            .map(|i| {
                let f = schema.field(*i);
                f.clone().with_name(table.declared_name(f.name()))
            })
            .collect();
        if format.takes_changelog() {
            // The changelog's op column follows the data columns.
            data_cols.push(schema.fields().len());
            data_fields.push(crate::changelog::op_field());
        }
        let data_schema = Arc::new(Schema::new(data_fields));
        let opt_ms = |key: &str, default: i64| -> Result<Duration> {
            match table.option(key) {
                None => Ok(Duration::from_millis(default as u64)),
                Some(v) => match parse_duration_option(v) {
                    Some(ms) if ms > 0 => Ok(Duration::from_millis(ms as u64)),
                    _ => plan_err!(
                        "option '{key}' = '{v}' is not a duration such as '30 min' or '10 s'"
                    ),
                },
            }
        };
        let file_size = match table.option("sink.rolling-policy.file-size") {
            None => 128 << 20,
            Some(v) => match parse_size_option(v) {
                Some(s) if s > 0 => s,
                _ => {
                    return plan_err!(
                        "option 'sink.rolling-policy.file-size' = '{v}' is not a size such as '128MB'"
                    );
                }
            },
        };
        let rollover = opt_ms("sink.rolling-policy.rollover-interval", 30 * 60_000)?;
        let check_interval = opt_ms("sink.rolling-policy.check-interval", 60_000)?.min(rollover);
        let target = if is_object_url(path) {
            let url = S3Url::parse(path)?;
            let part_size = match table.option("sink.s3.part-size") {
                None => 8 << 20,
                Some(v) => match parse_size_option(v) {
                    Some(s) if s >= 5 << 20 => s as usize,
                    _ => {
                        return plan_err!(
                            "option 'sink.s3.part-size' = '{v}' must be a size of at least 5MB (S3's minimum part)"
                        );
                    }
                },
            };
            let bucket = s3_bucket(table, &url)?;
            Target::S3 {
                store: bucket.clone(),
                bucket,
                url,
                part_size,
            }
        } else {
            let dir = PathBuf::from(path.strip_prefix("file://").unwrap_or(path));
            std::fs::create_dir_all(&dir)
                .context(|| format!("creating sink directory {}", dir.display()))?;
            Target::Local(dir)
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let job = format!("{:x}-{}", nanos, std::process::id());
        Ok(Self {
            target,
            format,
            partition_cols,
            partition_names,
            data_cols,
            data_schema,
            file_size,
            rollover,
            check_interval,
            open: HashMap::new(),
            job,
            counter: 0,
            exactly_once: None,
        })
    }

    /// Close every open file (see [`FileSink::roll`]).
    async fn roll_all(&mut self) -> Result<()> {
        let keys: Vec<String> = self.open.keys().cloned().collect();
        for k in keys {
            self.roll(&k).await?;
        }
        Ok(())
    }

    async fn roll(&mut self, key: &str) -> Result<()> {
        if let Some(f) = self.open.remove(key) {
            let closed = f.writer.close();
            match f.dest {
                Dest::Local { tmp, done } if self.exactly_once.is_some() => {
                    // Published when the checkpoint that covers it completes.
                    closed?;
                    if let Some(eo) = self.exactly_once.as_mut() {
                        eo.closed.push((tmp, done));
                    }
                }
                Dest::Local { tmp, done } => {
                    closed?;
                    std::fs::rename(&tmp, &done)
                        .context(|| format!("publishing {}", done.display()))?;
                }
                Dest::S3(upload) => match closed {
                    Ok(()) => upload.complete().await?,
                    Err(e) => {
                        let _ = upload.abort().await;
                        return Err(e);
                    }
                },
                Dest::Staged(upload) => match closed {
                    Ok(()) => {
                        let staged = upload.stage().await?;
                        if let Some(eo) = self.exactly_once.as_mut() {
                            eo.staged.push(staged);
                        }
                    }
                    Err(e) => {
                        let _ = upload.abort().await;
                        return Err(e);
                    }
                },
            }
        }
        Ok(())
    }

    async fn open_file(&mut self, key: &str) -> Result<OpenFile> {
        self.counter += 1;
        let name = match &self.exactly_once {
            // Deterministic: a replayed epoch writes the same names again.
            Some(eo) => format!(
                "part-{}-{:06}-{}.{}",
                eo.tag,
                eo.epoch,
                self.counter,
                self.format.extension()
            ),
            None => format!(
                "part-{}-{}.{}",
                self.job,
                self.counter,
                self.format.extension()
            ),
        };
        let (writer, dest) = match &self.target {
            Target::Local(root) => {
                let dir = root.join(key);
                std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
                let tmp = dir.join(format!(".{name}.inprogress"));
                let writer = FormatWriter::create(&tmp, self.format, self.data_schema.clone())?;
                let done = dir.join(name);
                (writer, Dest::Local { tmp, done })
            }
            Target::S3 {
                store,
                bucket,
                url,
                part_size,
            } => {
                let object = if key.is_empty() {
                    url.key(&name)
                } else {
                    url.key(&format!("{key}/{name}"))
                };
                let shown = format!("s3://{}/{object}", url.bucket);
                let (dest, out) = if self.exactly_once.is_some() {
                    let (upload, out) = StagedUpload::start(bucket, object, *part_size).await?;
                    (Dest::Staged(upload), out)
                } else {
                    let (upload, out) = Upload::start(store, object, *part_size).await?;
                    (Dest::S3(upload), out)
                };
                let writer = FormatWriter::new(out, shown, self.format, self.data_schema.clone())?;
                (writer, dest)
            }
        };
        Ok(OpenFile {
            writer,
            dest,
            opened: Instant::now(),
        })
    }

    async fn write_part(&mut self, key: String, batch: RecordBatch) -> Result<()> {
        if !self.open.contains_key(&key) {
            let f = self.open_file(&key).await?;
            self.open.insert(key.clone(), f);
        }
        let Some(f) = self.open.get_mut(&key) else {
            return Ok(());
        };
        f.writer.write(&batch)?;
        match &mut f.dest {
            Dest::S3(upload) => upload.pump().await?,
            Dest::Staged(upload) => upload.pump().await?,
            Dest::Local { .. } => {}
        }
        if f.writer.size() >= self.file_size {
            self.roll(&key).await?;
        }
        Ok(())
    }

    fn partition_key(&self, cols: &[ArrayRef], row: usize) -> String {
        let mut key = String::new();
        for (name, col) in self.partition_names.iter().zip(cols) {
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(name);
            key.push('=');
            if col.is_null(row) {
                key.push_str("__HIVE_DEFAULT_PARTITION__");
            } else {
                let v = col
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::StringArray>()
                    .map(|a| a.value(row))
                    .unwrap_or("");
                escape_into(v, &mut key);
            }
        }
        key
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let data = batch.project(&self.data_cols)?;
        let data = RecordBatch::try_new(self.data_schema.clone(), data.columns().to_vec())?;
        if self.partition_cols.is_empty() {
            return self.write_part(String::new(), data).await;
        }
        let cols: Vec<ArrayRef> = self
            .partition_cols
            .iter()
            .map(|i| {
                let c = batch.column(*i);
                Ok(match c.data_type() {
                    DataType::Timestamp(..) => {
                        let fmt = datafusion::arrow::util::display::FormatOptions::default()
                            .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S"));
                        let f = datafusion::arrow::util::display::ArrayFormatter::try_new(
                            c.as_ref(),
                            &fmt,
                        )?;
                        let v: Vec<Option<String>> = (0..c.len())
                            .map(|r| c.is_valid(r).then(|| f.value(r).to_string()))
                            .collect();
                        Arc::new(datafusion::arrow::array::StringArray::from(v)) as ArrayRef
                    }
                    _ => cast(c, &DataType::Utf8)?,
                })
            })
            .collect::<Result<_>>()?;
        // Group rows by partition, keeping first-seen order. Rows come in runs of one
        // partition (a day, an hour): a row equal to the previous one's partition values joins
        // its group without a lookup, and a partition's path is built once per batch.
        use datafusion::arrow::array::{AsArray, StringArray};
        let strs: Vec<Option<&StringArray>> = cols.iter().map(|c| c.as_string_opt()).collect();
        let value = |c: usize, r: usize| -> Option<&str> {
            strs[c].filter(|a| a.is_valid(r)).map(|a| a.value(r))
        };
        let same = |a: usize, b: usize| (0..cols.len()).all(|c| value(c, a) == value(c, b));
        let mut groups: Vec<(String, Vec<u32>)> = vec![];
        let mut index: HashMap<Vec<Option<&str>>, usize> = HashMap::new();
        let mut last: Option<(usize, usize)> = None; // (a row of the group, the group)
        for r in 0..batch.num_rows() {
            let g = match last {
                Some((row, g)) if same(row, r) => g,
                _ => {
                    let values = (0..cols.len()).map(|c| value(c, r)).collect();
                    *index.entry(values).or_insert_with(|| {
                        groups.push((self.partition_key(&cols, r), vec![]));
                        groups.len() - 1
                    })
                }
            };
            last = Some((r, g));
            groups[g].1.push(r as u32);
        }
        for (key, rows) in groups {
            let part = match rows.len() == data.num_rows() {
                true => data.clone(),
                false => take_record_batch(&data, &UInt32Array::from(rows))?,
            };
            self.write_part(key, part).await?;
        }
        Ok(())
    }
}

/// Hive-style escaping of a partition value.
fn escape_into(v: &str, out: &mut String) {
    for ch in v.chars() {
        if ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.' | ' ' | ':') {
            out.push(ch);
        } else {
            let mut buf = [0u8; 4];
            for b in ch.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
}

impl Sink for FileSink {
    fn write_batch(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(batch))
    }

    fn tick(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let due: Vec<String> = self
                .open
                .iter()
                .filter(|(_, f)| f.opened.elapsed() >= self.rollover)
                .map(|(k, _)| k.clone())
                .collect();
            for k in due {
                self.roll(&k).await?;
            }
            Ok(())
        })
    }

    fn tick_interval_ms(&self) -> u64 {
        self.check_interval.as_millis() as u64
    }

    /// Roll (publish) every open file, unless files are published by checkpoints.
    fn flush(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.exactly_once.is_some() {
                return Ok(());
            }
            self.roll_all().await
        })
    }

    /// As [`Sink::flush`]: with checkpoints, everything covered was published by the final
    /// checkpoint's commit, and what is still open is not covered by any checkpoint.
    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        self.flush()
    }

    /// Open files are not published: local in-progress files are removed, uploads aborted
    /// (their parts deleted).
    fn abort(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(eo) = self.exactly_once.as_mut() {
                for (tmp, _) in eo.closed.drain(..) {
                    let _ = std::fs::remove_file(tmp);
                }
                // Staged objects of an epoch not yet checkpointed: their uploads stay
                // incomplete (invisible); the job is failing, so no commit will come.
                eo.staged.clear();
            }
            for (_, f) in self.open.drain() {
                drop(f.writer);
                match f.dest {
                    Dest::Local { tmp, .. } => {
                        let _ = std::fs::remove_file(tmp);
                    }
                    Dest::S3(upload) => {
                        let _ = upload.abort().await;
                    }
                    Dest::Staged(upload) => {
                        let _ = upload.abort().await;
                    }
                }
            }
        })
    }

    fn delivery(&self) -> Result<Delivery> {
        Ok(Delivery::ExactlyOnce)
    }

    fn begin_checkpointing(
        &mut self,
        tag: &str,
        restored: Option<(u64, serde_json::Value, bool)>,
    ) -> BoxFuture<'_, Result<()>> {
        let tag = tag.to_string();
        Box::pin(async move {
            let mut epoch = 1;
            if let Some((e, info, committed)) = restored {
                if !committed {
                    publish_all(self.bucket(), e, &info).await?;
                }
                epoch = e + 1;
            }
            // Hidden files of this lineage that no completed checkpoint covers.
            if let Target::Local(root) = &self.target {
                remove_leftovers(root, &format!(".part-{tag}-"))?;
            }
            self.exactly_once = Some(ExactlyOnce {
                tag,
                epoch,
                closed: vec![],
                staged: vec![],
            });
            Ok(())
        })
    }

    fn pre_commit(&mut self, epoch: u64) -> BoxFuture<'_, Result<serde_json::Value>> {
        Box::pin(async move {
            self.roll_all().await?;
            let Some(eo) = self.exactly_once.as_mut() else {
                return Ok(serde_json::Value::Null);
            };
            let files: Vec<(String, String)> = eo
                .closed
                .drain(..)
                .map(|(t, d)| (t.display().to_string(), d.display().to_string()))
                .collect();
            let objects = std::mem::take(&mut eo.staged);
            eo.epoch = epoch + 1;
            self.counter = 0;
            Ok(serde_json::json!({ "files": files, "objects": objects }))
        })
    }

    fn commit(&mut self, epoch: u64, info: serde_json::Value) -> BoxFuture<'_, Result<()>> {
        let bucket = self.bucket();
        Box::pin(async move { publish_all(bucket, epoch, &info).await })
    }
}

impl FileSink {
    fn bucket(&self) -> Option<Arc<::object_store::aws::AmazonS3>> {
        match &self.target {
            Target::S3 { bucket, .. } => Some(bucket.clone()),
            Target::Local(_) => None,
        }
    }
}

/// Publish what checkpoint `epoch` covers: local files renamed, uploads completed.
/// Idempotent: a replayed commit finds them published.
async fn publish_all(
    bucket: Option<Arc<::object_store::aws::AmazonS3>>,
    epoch: u64,
    info: &serde_json::Value,
) -> Result<()> {
    publish(epoch, info)?;
    let objects: Vec<StagedObject> = match info.get("objects") {
        Some(o) if !o.is_null() => {
            serde_json::from_value(o.clone()).map_err(|e| crate::Error::Execution {
                operator: "filesystem sink".into(),
                message: format!("checkpoint {epoch}: unreadable list of uploads: {e}"),
            })?
        }
        _ => vec![],
    };
    if objects.is_empty() {
        return Ok(());
    }
    let Some(bucket) = &bucket else {
        return Err(crate::Error::Execution {
            operator: "filesystem sink".into(),
            message: format!(
                "checkpoint {epoch} covers s3:// uploads, but the sink's path is local now"
            ),
        });
    };
    for (i, o) in objects.iter().enumerate() {
        if i == 1 {
            crate::failpoint!("sink-mid-commit");
        }
        complete_staged(bucket, o).await?;
    }
    Ok(())
}

/// Rename the hidden files of checkpoint `epoch` to their published names; a file already
/// published is left as it is (a replayed commit).
fn publish(epoch: u64, info: &serde_json::Value) -> Result<()> {
    let files: Vec<(String, String)> = match info.get("files") {
        Some(f) => serde_json::from_value(f.clone()).map_err(|e| crate::Error::Execution {
            operator: "filesystem sink".into(),
            message: format!("checkpoint {epoch}: unreadable list of files to publish: {e}"),
        })?,
        None => vec![],
    };
    for (i, (tmp, done)) in files.iter().enumerate() {
        if i == 1 {
            crate::failpoint!("sink-mid-commit");
        }
        let (tmp, done) = (std::path::Path::new(tmp), std::path::Path::new(done));
        if tmp.exists() {
            std::fs::rename(tmp, done).context(|| format!("publishing {}", done.display()))?;
        } else if !done.exists() {
            return Err(crate::Error::Execution {
                operator: "filesystem sink".into(),
                message: format!(
                    "checkpoint {epoch} covers {}, but neither it nor its hidden file {} exists",
                    done.display(),
                    tmp.display()
                ),
            });
        }
    }
    Ok(())
}

/// Remove hidden files whose names start with `prefix` under `root` (recursively).
fn remove_leftovers(root: &std::path::Path, prefix: &str) -> Result<()> {
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if e.file_name().to_string_lossy().starts_with(prefix) {
                std::fs::remove_file(&p).context(|| format!("removing {}", p.display()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::escape_into;

    #[test]
    fn escapes_partition_values() {
        let mut s = String::new();
        escape_into("a/b=c 2026-01-01", &mut s);
        assert_eq!(s, "a%2Fb%3Dc 2026-01-01");
    }
}
