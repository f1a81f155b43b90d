//! Parquet files as sources: columns are matched to the table by name and cast when the file's
//! types differ from the declared ones.
//!
//! One file stays one split with one position (rows handed on), but its row groups are decoded
//! by several threads at once: worker `k` of `w` decodes row groups `k`, `k + w`, … in turn,
//! each into a small bounded channel, and the reader takes the groups' batches back in file
//! order. Memory stays bounded by a few batches per worker, whatever the file's size.

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};

use crate::error::Context;
use crate::{Error, Result, plan_err};

/// At most this many threads decode one file's row groups.
const MAX_WORKERS: usize = 8;
/// Decoded batches a worker may hold ahead of the reader.
const AHEAD: usize = 2;
/// Rows per decoded batch.
const BATCH_ROWS: usize = 8192;

/// What a worker hands on (errors travel beside it): a batch of its group, or that group's end.
enum Part {
    Batch(RecordBatch),
    GroupEnd,
}

/// A Parquet file reader.
pub struct ParquetReader {
    path: PathBuf,
    schema: SchemaRef,
    /// An object's bytes, read instead of the file at `path` (which names it).
    bytes: Option<bytes::Bytes>,
    /// The running decode, once the file is opened.
    decode: Option<Decode>,
    /// Rows handed out so far (the checkpoint position), and where a reopen starts.
    rows: u64,
    workers: usize,
    /// Only these columns are decoded (the others are NULL); None: all.
    read: Option<super::ReadColumns>,
}

/// The file's row groups being decoded: one receiver per worker, taken from in group order.
struct Decode {
    /// Where each column of the schema is in the projected batches (None: not read, NULL).
    order: Vec<Option<usize>>,
    parts: Vec<Receiver<Result<Part>>>,
    /// The group whose batches come next, and how many groups there are.
    group: usize,
    groups: usize,
    /// Batches of the groups are handed out from this worker's receiver.
    first: usize,
    /// Nothing more to read (the end, or an error already returned).
    done: bool,
}

/// Where the decode reads its bytes from: a file opened by each worker, or shared bytes.
#[derive(Clone)]
enum Input {
    File(PathBuf),
    Bytes(bytes::Bytes),
}

impl ParquetReader {
    /// Read `path` as rows of `schema`.
    pub fn new(path: PathBuf, schema: SchemaRef) -> Self {
        Self {
            path,
            schema,
            bytes: None,
            decode: None,
            rows: 0,
            workers: default_workers(),
            read: None,
        }
    }

    /// Read `bytes` (an object named `name`) as rows of `schema`.
    pub fn over_bytes(name: PathBuf, bytes: bytes::Bytes, schema: SchemaRef) -> Self {
        Self {
            path: name,
            schema,
            bytes: Some(bytes),
            decode: None,
            rows: 0,
            workers: default_workers(),
            read: None,
        }
    }

    /// Decode only the columns in `read` (the others are NULL and need not be in the file).
    pub(crate) fn reading(mut self, read: Option<super::ReadColumns>) -> Self {
        self.read = read;
        self
    }

    /// Decode with `workers` threads (at least one) instead of one per core up to 8; the rows
    /// are the same whatever the count.
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Read the footer, find the group holding row `self.rows`, and start the workers.
    fn open(&self) -> Result<Decode> {
        let ctx = || format!("reading Parquet file {}", self.path.display());
        let input = match &self.bytes {
            Some(b) => Input::Bytes(b.clone()),
            None => Input::File(self.path.clone()),
        };
        let meta = match &input {
            Input::Bytes(b) => ArrowReaderMetadata::load(b, ArrowReaderOptions::default()),
            Input::File(p) => {
                let file = File::open(p).context(ctx)?;
                ArrowReaderMetadata::load(&file, ArrowReaderOptions::default())
            }
        }
        .context(ctx)?;
        let file_schema = meta.schema().clone();
        // Leaf indices of the wanted columns, and where each lands in the projected output.
        let mut wanted = Vec::new();
        for (i, f) in self.schema.fields().iter().enumerate() {
            if self.read.as_ref().is_some_and(|r| !r.reads(i)) {
                wanted.push(None);
                continue;
            }
            let Some((idx, _)) = file_schema
                .fields()
                .iter()
                .enumerate()
                .find(|(_, ff)| ff.name().eq_ignore_ascii_case(f.name()))
            else {
                return plan_err!(
                    "Parquet file {} has no column {}",
                    self.path.display(),
                    f.name()
                );
            };
            wanted.push(Some(idx));
        }
        let mut sorted: Vec<usize> = wanted.iter().flatten().copied().collect();
        sorted.sort_unstable();
        let mask = ProjectionMask::roots(meta.parquet_schema(), sorted.iter().copied());
        let order = wanted
            .iter()
            .map(|w| w.map(|w| sorted.iter().position(|s| *s == w).unwrap_or(0)))
            .collect();
        // The group holding the first row not handed out yet, and the rows to skip in it.
        let sizes: Vec<u64> = meta
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows().max(0) as u64)
            .collect();
        let mut start = 0;
        let mut skip = self.rows;
        while start < sizes.len() && skip >= sizes[start] {
            skip -= sizes[start];
            start += 1;
        }
        let groups = sizes.len();
        let workers = self.workers.min(groups.saturating_sub(start)).max(1);
        let mut parts = Vec::with_capacity(workers);
        for k in 0..workers {
            let (tx, rx) = sync_channel(AHEAD);
            parts.push(rx);
            let job = Worker {
                input: input.clone(),
                meta: meta.clone(),
                mask: mask.clone(),
                groups: (start + k..groups).step_by(workers).collect(),
                skip: if k == 0 { skip } else { 0 },
                path: self.path.clone(),
            };
            std::thread::Builder::new()
                .name("weir-parquet".into())
                .spawn(move || job.run(tx))
                .context(ctx)?;
        }
        Ok(Decode {
            order,
            parts,
            group: start,
            groups,
            first: start,
            done: false,
        })
    }

    /// Rows read so far: where a checkpoint resumes.
    pub fn position(&self) -> u64 {
        self.rows
    }

    /// Resume after `rows` rows (before the first batch is read).
    pub fn seek(&mut self, rows: u64) {
        self.decode = None;
        self.rows = rows;
    }

    /// The next batch in file order, or None at the end.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.decode.is_none() {
            self.decode = Some(self.open()?);
        }
        let Some(d) = self.decode.as_mut() else {
            return Ok(None);
        };
        let batch = loop {
            if d.done || d.group >= d.groups {
                return Ok(None);
            }
            let worker = (d.group - d.first) % d.parts.len();
            match d.parts[worker].recv() {
                Ok(Ok(Part::Batch(b))) => break b,
                Ok(Ok(Part::GroupEnd)) => d.group += 1,
                Ok(Err(e)) => {
                    d.done = true;
                    return Err(e);
                }
                Err(_) => {
                    d.done = true;
                    return Err(Error::Execution {
                        operator: format!("Parquet file {}", self.path.display()),
                        message: format!("the thread decoding row group {} stopped", d.group),
                    });
                }
            }
        };
        self.rows += batch.num_rows() as u64;
        let rows = batch.num_rows();
        let cols = d
            .order
            .iter()
            .zip(self.schema.fields())
            .map(|(i, f)| match i {
                Some(i) => super::cast_to(batch.column(*i), f.data_type()),
                None => Ok(datafusion::arrow::array::new_null_array(
                    f.data_type(),
                    rows,
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(RecordBatch::try_new(self.schema.clone(), cols)?))
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_WORKERS)
}

/// One decoding thread: its row groups in order, each as batches then [`Part::GroupEnd`].
struct Worker {
    input: Input,
    meta: ArrowReaderMetadata,
    mask: ProjectionMask,
    groups: Vec<usize>,
    /// Rows to skip at the start of the first group (a resumed position).
    skip: u64,
    path: PathBuf,
}

impl Worker {
    fn run(self, tx: SyncSender<Result<Part>>) {
        for (i, &g) in self.groups.iter().enumerate() {
            let skip = if i == 0 { self.skip } else { 0 };
            if let Err(e) = self.group(g, skip, &tx) {
                // The reader may be gone (dropped or reopened): then nobody needs the error.
                let _ = tx.send(Err(e));
                return;
            }
            if tx.send(Ok(Part::GroupEnd)).is_err() {
                return;
            }
        }
    }

    /// Decode group `g` into `tx`; Ok also when the reader went away.
    fn group(&self, g: usize, skip: u64, tx: &SyncSender<Result<Part>>) -> Result<()> {
        let ctx = || {
            format!(
                "reading Parquet file {} (row group {g})",
                self.path.display()
            )
        };
        let reader = match &self.input {
            Input::Bytes(b) => configure(
                ParquetRecordBatchReaderBuilder::new_with_metadata(b.clone(), self.meta.clone()),
                &self.mask,
                g,
                skip,
            )
            .build(),
            Input::File(p) => configure(
                ParquetRecordBatchReaderBuilder::new_with_metadata(
                    File::open(p).context(ctx)?,
                    self.meta.clone(),
                ),
                &self.mask,
                g,
                skip,
            )
            .build(),
        }
        .context(ctx)?;
        for batch in reader {
            let batch = batch.context(ctx)?;
            if tx.send(Ok(Part::Batch(batch))).is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}

fn configure<T: parquet::file::reader::ChunkReader + 'static>(
    builder: ParquetRecordBatchReaderBuilder<T>,
    mask: &ProjectionMask,
    group: usize,
    skip: u64,
) -> ParquetRecordBatchReaderBuilder<T> {
    let builder = builder
        .with_projection(mask.clone())
        .with_row_groups(vec![group])
        .with_batch_size(BATCH_ROWS);
    if skip > 0 {
        builder.with_offset(skip as usize)
    } else {
        builder
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::*;

    /// `rows` rows of (id, name) in row groups of `group` rows.
    fn write(path: &std::path::Path, rows: i64, group: usize) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(group))
            .build();
        let file = File::create(path).unwrap();
        let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
        let mut start = 0;
        while start < rows {
            let end = (start + 7000).min(rows);
            let ids = Int64Array::from_iter_values(start..end);
            let names = StringArray::from_iter_values((start..end).map(|i| format!("n{i}")));
            let batch =
                RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(names)]).unwrap();
            w.write(&batch).unwrap();
            start = end;
        }
        w.close().unwrap();
    }

    /// The table's columns in another order and case than the file's.
    fn table() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("NAME", DataType::Utf8, true),
            Field::new("id", DataType::Int64, true),
        ]))
    }

    /// Every id read from position `from`, checking each row's name and the position after
    /// each batch.
    fn read_all(r: &mut ParquetReader, from: u64) -> Vec<i64> {
        let mut ids = Vec::new();
        while let Some(b) = r.next_batch().unwrap() {
            let names = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            let col = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 0..b.num_rows() {
                assert_eq!(names.value(i), format!("n{}", col.value(i)));
                ids.push(col.value(i));
            }
            assert_eq!(r.position(), from + ids.len() as u64);
        }
        ids
    }

    #[test]
    fn row_groups_decoded_at_once_come_back_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        // 5 groups of 10,000 rows and one of 500: two batches per full group.
        write(&path, 50_500, 10_000);
        let want: Vec<i64> = (0..50_500).collect();
        for workers in [1, 2, 3, 8] {
            let mut r = ParquetReader::new(path.clone(), table()).with_workers(workers);
            assert_eq!(read_all(&mut r, 0), want, "{workers} workers");
            assert_eq!(r.position(), 50_500);
            assert!(r.next_batch().unwrap().is_none());
        }
        let bytes = bytes::Bytes::from(std::fs::read(&path).unwrap());
        let mut r = ParquetReader::over_bytes(path.clone(), bytes, table()).with_workers(2);
        assert_eq!(read_all(&mut r, 0), want);
    }

    #[test]
    fn a_resumed_position_starts_inside_its_row_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        write(&path, 50_500, 10_000);
        for (at, workers) in [
            (15_000, 2),
            (15_000, 1),
            (40_000, 3),
            (50_499, 2),
            (50_500, 2),
        ] {
            let mut r = ParquetReader::new(path.clone(), table()).with_workers(workers);
            r.seek(at);
            let got = read_all(&mut r, at);
            assert_eq!(got, (at as i64..50_500).collect::<Vec<_>>(), "from {at}");
            assert_eq!(r.position(), 50_500);
        }
        // A reader dropped half-way leaves no thread blocked on it (the test would hang).
        let mut r = ParquetReader::new(path.clone(), table()).with_workers(4);
        assert!(r.next_batch().unwrap().is_some());
        drop(r);
    }

    #[test]
    fn a_missing_column_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        write(&path, 10, 10_000);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "price",
            DataType::Int64,
            true,
        )]));
        let err = ParquetReader::new(path, schema).next_batch().unwrap_err();
        assert!(err.to_string().contains("no column price"), "{err}");
    }
}
