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
    decoder: Decoder,
}

impl CsvDecoder {
    fn build(schema: &SchemaRef, delimiter: u8) -> Decoder {
        ReaderBuilder::new(schema.clone())
            .with_delimiter(delimiter)
            .with_batch_size(BATCH_ROWS)
            .build_decoder()
    }
}

impl BlockDecoder for CsvDecoder {
    fn decode_block(&mut self, bytes: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
        let mut out = Vec::new();
        let mut off = 0;
        loop {
            let n = self.decoder.decode(&bytes[off..])?;
            off += n;
            if n == 0 || off >= bytes.len() {
                match self.decoder.flush()? {
                    Some(b) if b.num_rows() > 0 => out.push(b),
                    _ => {}
                }
                if off >= bytes.len() {
                    break;
                }
                if n == 0 && self.decoder.capacity() > 0 {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn reset(&mut self) -> Result<()> {
        self.decoder = Self::build(&self.schema, self.delimiter);
        Ok(())
    }

    fn fork(&self) -> Result<Self> {
        Ok(Self {
            schema: self.schema.clone(),
            delimiter: self.delimiter,
            decoder: Self::build(&self.schema, self.delimiter),
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
        let decoder = CsvDecoder {
            decoder: CsvDecoder::build(&schema, delimiter),
            schema,
            delimiter,
        };
        Ok(Self(
            LineReader::new(path, decoder, policy).with_header_check(header),
        ))
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
        let decoder = CsvDecoder {
            decoder: CsvDecoder::build(&schema, delimiter),
            schema,
            delimiter,
        };
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
