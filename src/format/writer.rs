//! Encoding batches into files: JSON lines, CSV (with a header), Parquet (Snappy).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::Context;
use crate::{Result, not_supported};

/// Output file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// JSON lines.
    Json,
    /// CSV with a header line.
    Csv,
    /// Parquet, Snappy-compressed.
    Parquet,
    /// Debezium JSON envelopes (`{"before":..,"after":..,"op":"c"|"d"}`) of a changelog.
    DebeziumJson,
}

impl FileFormat {
    /// From a `'format'` option.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            "parquet" => Ok(Self::Parquet),
            "debezium-json" => Ok(Self::DebeziumJson),
            other => not_supported!("sink format '{other}' (json, csv, parquet, debezium-json)"),
        }
    }

    /// File extension.
    pub fn extension(&self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Parquet => "parquet",
            Self::DebeziumJson => "json",
        }
    }

    /// Whether the format can carry retractions (an updating query's output).
    pub fn takes_changelog(&self) -> bool {
        matches!(self, Self::DebeziumJson)
    }
}

/// Counts bytes written through it.
struct Counting<W> {
    inner: W,
    bytes: Arc<AtomicU64>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where an encoder writes: a local file, or an upload (see `connectors::object_store`).
pub type Output = Box<dyn Write + Send>;

// One per open file: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Json(datafusion::arrow::json::LineDelimitedWriter<Counting<BufWriter<Output>>>),
    Csv(datafusion::arrow::csv::Writer<Counting<BufWriter<Output>>>),
    Parquet(ArrowWriter<Output>),
    Debezium(Counting<BufWriter<Output>>),
}

/// An open output file.
pub struct FormatWriter {
    inner: Inner,
    path: String,
    bytes: Arc<AtomicU64>,
}

impl FormatWriter {
    /// Create `path` for rows of `schema`.
    pub fn create(path: &Path, format: FileFormat, schema: SchemaRef) -> Result<Self> {
        let name = path.display().to_string();
        let file = File::create(path).context(|| format!("creating {name}"))?;
        Self::new(Box::new(file), name, format, schema)
    }

    /// Encode into `out` (named `name` in messages) rows of `schema`.
    pub fn new(out: Output, name: String, format: FileFormat, schema: SchemaRef) -> Result<Self> {
        let file = out;
        let bytes = Arc::new(AtomicU64::new(0));
        let counting = Counting {
            inner: BufWriter::new(file),
            bytes: bytes.clone(),
        };
        let inner = match format {
            FileFormat::Json => {
                Inner::Json(datafusion::arrow::json::LineDelimitedWriter::new(counting))
            }
            FileFormat::DebeziumJson => Inner::Debezium(counting),
            FileFormat::Csv => Inner::Csv(
                datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .with_timestamp_format("%Y-%m-%d %H:%M:%S%.3f".into())
                    .build(counting),
            ),
            FileFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .build();
                let file = counting
                    .inner
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .context(|| format!("creating {name}"))?;
                Inner::Parquet(
                    ArrowWriter::try_new(file, schema, Some(props))
                        .context(|| format!("creating {name}"))?,
                )
            }
        };
        Ok(Self {
            inner,
            path: name,
            bytes,
        })
    }

    /// Append a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let path = &self.path;
        match &mut self.inner {
            Inner::Json(w) => w.write(batch).context(|| format!("writing {path}")),
            Inner::Csv(w) => w.write(batch).context(|| format!("writing {path}")),
            Inner::Parquet(w) => w.write(batch).context(|| format!("writing {path}")),
            Inner::Debezium(w) => w
                .write_all(&debezium_lines(batch)?)
                .context(|| format!("writing {path}")),
        }
    }

    /// Bytes written so far (for Parquet, including the row group being built).
    pub fn size(&self) -> u64 {
        match &self.inner {
            Inner::Json(_) | Inner::Csv(_) | Inner::Debezium(_) => {
                self.bytes.load(Ordering::Relaxed)
            }
            Inner::Parquet(w) => (w.bytes_written() + w.in_progress_size()) as u64,
        }
    }

    /// Flush and close the file.
    pub fn close(self) -> Result<()> {
        let path = self.path;
        match self.inner {
            Inner::Json(mut w) => {
                w.finish().context(|| format!("writing {path}"))?;
                w.into_inner()
                    .inner
                    .flush()
                    .context(|| format!("writing {path}"))
            }
            Inner::Csv(w) => w
                .into_inner()
                .inner
                .flush()
                .context(|| format!("writing {path}")),
            Inner::Debezium(mut w) => w.inner.flush().context(|| format!("writing {path}")),
            Inner::Parquet(w) => w.close().map(|_| ()).context(|| format!("closing {path}")),
        }
    }
}

/// The rows of `batch` as JSON objects, one buffer per row (for messages).
pub fn json_rows(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    let buf = json_buffer(batch)?;
    Ok(buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

fn json_buffer(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut buf);
    w.write(batch)?;
    w.finish()?;
    Ok(buf)
}

/// The ops of a changelog batch (all +I for an append-only one) and its data rows as JSON.
fn changelog_json(batch: &RecordBatch) -> Result<(Vec<i8>, Vec<u8>)> {
    let ops: Vec<i8> = crate::changelog::ops_of(batch)
        .map(<[i8]>::to_vec)
        .unwrap_or_else(|| vec![0; batch.num_rows()]);
    Ok((ops, json_buffer(&crate::changelog::strip_ops(batch))?))
}

/// Append the Debezium envelope of one row (`line`, a JSON object) with changelog op `op`.
fn debezium_envelope(line: &[u8], op: i8, out: &mut Vec<u8>) {
    if crate::changelog::RowKind::from_i8(op).is_accumulate() {
        out.extend_from_slice(b"{\"before\":null,\"after\":");
        out.extend_from_slice(line);
        out.extend_from_slice(b",\"op\":\"c\"}");
    } else {
        out.extend_from_slice(b"{\"before\":");
        out.extend_from_slice(line);
        out.extend_from_slice(b",\"after\":null,\"op\":\"d\"}");
    }
}

/// Debezium envelopes for the rows of a changelog batch (its last column is the op):
/// +I and +U become `"op":"c"` with `after`, -U and -D `"op":"d"` with `before`, as Flink's
/// debezium-json encoder writes them. One line per row.
pub fn debezium_lines(batch: &RecordBatch) -> Result<Vec<u8>> {
    let (ops, rows) = changelog_json(batch)?;
    let mut out = Vec::with_capacity(rows.len() + batch.num_rows() * 40);
    for (line, op) in rows
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .zip(ops)
    {
        debezium_envelope(line, op, &mut out);
        out.push(b'\n');
    }
    Ok(out)
}

/// The same envelopes, one buffer per row (for messages).
pub fn debezium_rows(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    let (ops, rows) = changelog_json(batch)?;
    Ok(rows
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .zip(ops)
        .map(|(line, op)| {
            let mut out = Vec::with_capacity(line.len() + 40);
            debezium_envelope(line, op, &mut out);
            out
        })
        .collect())
}
