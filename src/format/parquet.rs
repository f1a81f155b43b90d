//! Parquet files as sources: columns are matched to the table by name and cast when the file's
//! types differ from the declared ones.

use std::fs::File;
use std::path::PathBuf;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::error::Context;
use crate::{Result, plan_err};

/// A Parquet file reader.
pub struct ParquetReader {
    path: PathBuf,
    schema: SchemaRef,
    reader: Option<(ParquetRecordBatchReader, Vec<usize>)>,
    /// An object's bytes, read instead of the file at `path` (which names it).
    bytes: Option<bytes::Bytes>,
    /// Rows handed out so far (the checkpoint position), and rows to skip when opening.
    rows: u64,
    skip: u64,
}

impl ParquetReader {
    /// Read `path` as rows of `schema`.
    pub fn new(path: PathBuf, schema: SchemaRef) -> Self {
        Self {
            path,
            schema,
            reader: None,
            bytes: None,
            rows: 0,
            skip: 0,
        }
    }

    /// Read `bytes` (an object named `name`) as rows of `schema`.
    pub fn over_bytes(name: PathBuf, bytes: bytes::Bytes, schema: SchemaRef) -> Self {
        Self {
            path: name,
            schema,
            reader: None,
            bytes: Some(bytes),
            rows: 0,
            skip: 0,
        }
    }

    fn open(&self) -> Result<(ParquetRecordBatchReader, Vec<usize>)> {
        let ctx = || format!("reading Parquet file {}", self.path.display());
        match &self.bytes {
            Some(b) => {
                self.build(ParquetRecordBatchReaderBuilder::try_new(b.clone()).context(ctx)?)
            }
            None => {
                let file = File::open(&self.path).context(ctx)?;
                self.build(ParquetRecordBatchReaderBuilder::try_new(file).context(ctx)?)
            }
        }
    }

    fn build<T: parquet::file::reader::ChunkReader + 'static>(
        &self,
        builder: ParquetRecordBatchReaderBuilder<T>,
    ) -> Result<(ParquetRecordBatchReader, Vec<usize>)> {
        let ctx = || format!("reading Parquet file {}", self.path.display());
        let file_schema = builder.schema().clone();
        // Leaf indices of the wanted columns, and where each lands in the projected output.
        let mut wanted = Vec::new();
        for f in self.schema.fields() {
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
            wanted.push(idx);
        }
        let mut sorted = wanted.clone();
        sorted.sort_unstable();
        let mask = ProjectionMask::roots(builder.parquet_schema(), sorted.iter().copied());
        let mut builder = builder.with_projection(mask).with_batch_size(8192);
        if self.skip > 0 {
            builder = builder.with_offset(self.skip as usize);
        }
        let reader = builder.build().context(ctx)?;
        let order = wanted
            .iter()
            .map(|w| sorted.iter().position(|s| s == w).unwrap_or(0))
            .collect();
        Ok((reader, order))
    }

    /// The next batch, or None at the end.
    /// Rows read so far: where a checkpoint resumes.
    pub fn position(&self) -> u64 {
        self.rows
    }

    /// Resume after `rows` rows (before the first batch is read).
    pub fn seek(&mut self, rows: u64) {
        self.reader = None;
        self.skip = rows;
        self.rows = rows;
    }

    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.reader.is_none() {
            self.reader = Some(self.open()?);
        }
        let Some((reader, order)) = self.reader.as_mut() else {
            return Ok(None);
        };
        let Some(batch) = reader.next() else {
            return Ok(None);
        };
        let batch = batch.context(|| format!("reading Parquet file {}", self.path.display()))?;
        self.rows += batch.num_rows() as u64;
        let cols = order
            .iter()
            .zip(self.schema.fields())
            .map(|(i, f)| {
                let c = batch.column(*i);
                super::cast_to(c, f.data_type())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(RecordBatch::try_new(self.schema.clone(), cols)?))
    }
}
