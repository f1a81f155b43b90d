//! CSV: decoded with arrow-csv. A first line that names the table's columns is taken as a
//! header and skipped; `'csv.field-delimiter'` sets the delimiter (default `,`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use datafusion::arrow::csv::ReaderBuilder;
use datafusion::arrow::csv::reader::Decoder;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

use super::ErrorPolicy;
use super::json::BATCH_ROWS;
use super::lines::{BlockDecoder, LineReader};
use crate::Result;
use crate::error::Context;

pub(crate) struct CsvDecoder {
    schema: SchemaRef,
    delimiter: u8,
    /// The columns decoded (indices into `schema`); None: all.
    projection: Option<Vec<usize>>,
    decoder: Decoder,
}

impl CsvDecoder {
    fn new(schema: SchemaRef, delimiter: u8, read: Option<&super::ReadColumns>) -> Self {
        let projection = read.map(|r| (0..schema.fields().len()).filter(|i| r.reads(*i)).collect());
        Self {
            decoder: Self::build(&schema, delimiter, &projection),
            schema,
            delimiter,
            projection,
        }
    }

    fn build(schema: &SchemaRef, delimiter: u8, projection: &Option<Vec<usize>>) -> Decoder {
        let builder = ReaderBuilder::new(schema.clone())
            .with_delimiter(delimiter)
            .with_batch_size(BATCH_ROWS);
        match projection {
            Some(p) => builder.with_projection(p.clone()),
            None => builder,
        }
        .build_decoder()
    }
}

impl BlockDecoder for CsvDecoder {
    fn decode_block(&mut self, bytes: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
        let mut out = Vec::new();
        let mut off = 0;
        loop {
            // The decoder stops at a full batch: flush it and go on with the rest.
            let n = self.decoder.decode(&bytes[off..])?;
            off += n;
            let full = self.decoder.capacity() == 0;
            if full || n == 0 || off >= bytes.len() {
                match self.decoder.flush()? {
                    Some(b) if b.num_rows() > 0 => out.push(b),
                    _ => {}
                }
            }
            if off >= bytes.len() || (n == 0 && !full) {
                break;
            }
        }
        Ok(out)
    }

    fn reset(&mut self) -> Result<()> {
        self.decoder = Self::build(&self.schema, self.delimiter, &self.projection);
        Ok(())
    }

    fn fork(&self) -> Result<Self> {
        Ok(Self {
            schema: self.schema.clone(),
            delimiter: self.delimiter,
            projection: self.projection.clone(),
            decoder: Self::build(&self.schema, self.delimiter, &self.projection),
        })
    }
}

/// A CSV file reader.
pub struct CsvReader(LineReader<CsvDecoder>);

fn first_line_is_header(path: &Path, schema: &SchemaRef, delimiter: u8) -> Result<bool> {
    let f = std::fs::File::open(path).context(|| format!("opening {}", path.display()))?;
    let mut line = String::new();
    BufReader::new(f)
        .read_line(&mut line)
        .context(|| format!("reading {}", path.display()))?;
    Ok(is_header(&line, schema, delimiter))
}

fn is_header(line: &str, schema: &SchemaRef, delimiter: u8) -> bool {
    let names: Vec<String> = line
        .trim_end_matches(['\n', '\r'])
        .split(delimiter as char)
        .map(|s| s.trim().trim_matches('"').to_ascii_lowercase())
        .collect();
    let expected: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.name().to_ascii_lowercase())
        .collect();
    names == expected
}

impl CsvReader {
    /// Read `path` as rows of `schema`.
    pub fn new(
        path: PathBuf,
        schema: SchemaRef,
        delimiter: u8,
        policy: ErrorPolicy,
    ) -> Result<Self> {
        let header = first_line_is_header(&path, &schema, delimiter)?;
        let decoder = CsvDecoder::new(schema, delimiter, None);
        Ok(Self(
            LineReader::new(path, decoder, policy).with_header_check(header),
        ))
    }

    /// Decode only the columns in `read` (the others are NULL, and not checked).
    pub(crate) fn reading(self, read: Option<super::ReadColumns>) -> Result<Self> {
        Ok(Self(self.0.reading(read, |d, read| {
            let projected = CsvDecoder::new(d.schema.clone(), d.delimiter, Some(read));
            Ok(Some((d.schema.clone(), projected)))
        })?))
    }

    /// Read `bytes` (an object, named `name` in messages) as rows of `schema`.
    pub fn over_bytes(
        name: PathBuf,
        bytes: bytes::Bytes,
        schema: SchemaRef,
        delimiter: u8,
        policy: ErrorPolicy,
    ) -> Self {
        let end = bytes
            .iter()
            .position(|b| *b == b'\n')
            .unwrap_or(bytes.len());
        let header = is_header(&String::from_utf8_lossy(&bytes[..end]), &schema, delimiter);
        let decoder = CsvDecoder::new(schema, delimiter, None);
        Self(
            LineReader::new(name, decoder, policy)
                .over_bytes(bytes)
                .with_header_check(header),
        )
    }

    /// Keep reading the file as it grows.
    pub fn following(self) -> Self {
        Self(self.0.following())
    }

    /// Read a pipe: rows go on as each read brings complete lines.
    pub fn streaming(self) -> Self {
        Self(self.0.streaming())
    }

    /// The position of the next batch, at a line boundary (see [`super::lines::LinePosition`]).
    pub fn position(&self) -> Option<super::lines::LinePosition> {
        self.0.position()
    }

    /// Continue from a position.
    pub fn seek(&mut self, pos: super::lines::LinePosition) -> Result<()> {
        self.0.seek(pos)
    }

    /// The next batch, or None at the end.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        self.0.next()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;
    use crate::runtime::JobMetrics;

    /// Every row of a file larger than a batch per block comes out, in order, whether all
    /// columns are decoded or only some (the others NULL). A block used to give only its
    /// first batch.
    #[test]
    fn every_row_of_every_block_is_read() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Int64, true),
        ]));
        let rows = 50_000i64;
        let mut text = String::from("a,b,c\n");
        for i in 0..rows {
            text.push_str(&format!("{i},s{i},{}\n", i * 2));
        }
        let text = bytes::Bytes::from(text);
        let metrics = Arc::new(JobMetrics::default());
        for read in [None, Some([true, false, true])] {
            let mut r = CsvReader::over_bytes(
                "mem.csv".into(),
                text.clone(),
                schema.clone(),
                b',',
                ErrorPolicy::lenient(metrics.clone()),
            );
            if let Some(read) = read {
                r = r
                    .reading(Some(super::super::ReadColumns { read: read.into() }))
                    .expect("projects");
            }
            let (mut a, mut c, mut b_nulls, mut n) = (vec![], vec![], 0, 0);
            while let Some(batch) = r.next_batch().expect("decodes") {
                assert_eq!(batch.schema(), schema);
                a.extend(
                    batch
                        .column(0)
                        .as_primitive::<Int64Type>()
                        .values()
                        .iter()
                        .copied(),
                );
                c.extend(
                    batch
                        .column(2)
                        .as_primitive::<Int64Type>()
                        .values()
                        .iter()
                        .copied(),
                );
                b_nulls += batch.column(1).null_count();
                n += batch.num_rows();
            }
            assert_eq!(a, (0..rows).collect::<Vec<_>>(), "read {read:?}");
            assert_eq!(c, (0..rows).map(|i| i * 2).collect::<Vec<_>>());
            assert_eq!(b_nulls, if read.is_some() { n } else { 0 });
        }
        assert_eq!(JobMetrics::get(&metrics.malformed), 0);
    }
}
