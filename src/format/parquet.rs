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
}

impl ParquetReader {
    /// Read `path` as rows of `schema`.
    pub fn new(path: PathBuf, schema: SchemaRef) -> Self {
        Self {
            path,
            schema,
            reader: None,
            bytes: None,
        }
    }

    /// Read `bytes` (an object named `name`) as rows of `schema`.
    pub fn over_bytes(name: PathBuf, bytes: bytes::Bytes, schema: SchemaRef) -> Self {
        Self {
            path: name,
            schema,
            reader: None,
            bytes: Some(bytes),
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
        let reader = builder
            .with_projection(mask)
            .with_batch_size(8192)
            .build()
            .context(ctx)?;
        let order = wanted
            .iter()
            .map(|w| sorted.iter().position(|s| s == w).unwrap_or(0))
            .collect();
        Ok((reader, order))
    }

    /// The next batch, or None at the end.
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
