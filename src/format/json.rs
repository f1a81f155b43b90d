//! JSON lines: one object per line, decoded with arrow-json's vectorized decoder.
//! Timestamps may be 'YYYY-MM-DD HH:MM:SS[.fff]', ISO-8601, or epoch milliseconds.
//! A declared field that is absent from a record makes the record malformed (an explicit
//! `null` is a NULL); fields that are not declared are ignored.

use std::path::PathBuf;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::json::reader::Decoder;
use datafusion::arrow::record_batch::RecordBatch;

use super::ErrorPolicy;
use super::lines::{BlockDecoder, LineReader};
use crate::Result;

/// Batch size of decoded JSON.
pub const BATCH_ROWS: usize = 8192;

pub(crate) struct JsonDecoder {
    schema: SchemaRef,
    decoder: Decoder,
    /// Debezium change events rather than rows ([`super::debezium`]): the declared field
    /// names each row image must have. Batches then end with the changelog's op column.
    debezium: Option<Vec<String>>,
}

impl JsonDecoder {
    pub(crate) fn new(schema: SchemaRef) -> Result<Self> {
        let decoder = Self::build(&schema)?;
        Ok(Self {
            schema,
            decoder,
            debezium: None,
        })
    }

    /// arrow-json's decoder. A value of the wrong type (`"price": "x12"`) decodes as NULL
    /// instead of failing the whole block; the check after the decode tells such a NULL from
    /// an explicit one and drops the row as malformed, so wrong-typed values cost a look at
    /// their own lines only.
    fn build(schema: &SchemaRef) -> Result<Decoder> {
        Ok(ReaderBuilder::new(schema.clone())
            .with_batch_size(BATCH_ROWS)
            .with_ignore_type_conflicts(true)
            .build_decoder()?)
    }

    /// A decoder of Debezium change events into changelog rows.
    pub(crate) fn debezium(schema: SchemaRef) -> Result<Self> {
        let fields = schema.fields().iter().map(|f| f.name().clone()).collect();
        Ok(Self {
            debezium: Some(fields),
            ..Self::new(schema)?
        })
    }

    /// Decode the rows of `bytes` (whole JSON lines).
    fn decode_rows(&mut self, bytes: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
        let mut out = Vec::new();
        let mut off = 0;
        while off < bytes.len() {
            let n = self.decoder.decode(&bytes[off..])?;
            off += n;
            if n == 0 || self.decoder.len() >= BATCH_ROWS {
                if let Some(b) = self.decoder.flush()? {
                    out.push(b);
                } else if n == 0 {
                    break;
                }
            }
        }
        if let Some(b) = self.decoder.flush()? {
            out.push(b);
        }
        Ok(out)
    }
}

impl BlockDecoder for JsonDecoder {
    fn decode_block(&mut self, bytes: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
        let Some(fields) = &self.debezium else {
            return self.decode_rows(bytes);
        };
        // Change events to rows (one or two each), then the rows in one go.
        let mut rows = Vec::with_capacity(bytes.len());
        let mut ops = Vec::new();
        for line in bytes.split(|b| *b == b'\n') {
            if !line.iter().any(|b| !b.is_ascii_whitespace()) {
                continue;
            }
            let events =
                super::debezium::event_rows(line, fields).map_err(ArrowError::JsonError)?;
            for (kind, row) in events {
                rows.extend_from_slice(&row);
                rows.push(b'\n');
                ops.push(kind as i8);
            }
        }
        let schema = crate::changelog::with_op_field(&self.schema);
        let mut at = 0;
        self.decode_rows(&rows)?
            .into_iter()
            .map(|b| {
                let n = b.num_rows();
                let mut columns = b.columns().to_vec();
                let kinds = ops.get(at..at + n).unwrap_or_default().to_vec();
                at += n;
                columns.push(std::sync::Arc::new(
                    datafusion::arrow::array::Int8Array::from(kinds),
                ));
                RecordBatch::try_new(schema.clone(), columns)
            })
            .collect()
    }

    fn reset(&mut self) -> Result<()> {
        self.decoder = Self::build(&self.schema)?;
        Ok(())
    }

    fn fork(&self) -> Result<Self> {
        Ok(Self {
            debezium: self.debezium.clone(),
            ..Self::new(self.schema.clone())?
        })
    }

    fn needs_check(&self, batch: &RecordBatch) -> bool {
        // Change events are checked as they are turned into rows.
        self.debezium.is_none() && batch.columns().iter().any(|c| c.null_count() > 0)
    }

    fn screen(&self, line: &[u8]) -> Option<String> {
        if self.debezium.is_some() {
            return None;
        }
        if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Some("not a JSON object".into());
        }
        serde_json::from_slice::<serde::de::IgnoredAny>(line)
            .err()
            .map(|e| format!("invalid JSON: {e}"))
    }

    fn check(&self, batch: &RecordBatch, lines: &[&[u8]]) -> Vec<(usize, String, bool)> {
        let mut bad = Vec::new();
        for (row, line) in lines.iter().enumerate().take(batch.num_rows()) {
            let null_cols: Vec<usize> = (0..batch.num_columns())
                .filter(|c| batch.column(*c).is_null(row))
                .collect();
            if null_cols.is_empty() {
                continue;
            }
            let Ok(obj) =
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line)
            else {
                bad.push((row, "not a JSON object".to_string(), false));
                continue;
            };
            // A NULL where the record holds a value: the value has the wrong type.
            if let Some((field, value)) = null_cols.iter().find_map(|c| {
                let field = self.schema.field(*c);
                obj.get(field.name())
                    .filter(|v| !v.is_null())
                    .map(|v| (field, v))
            }) {
                let mut shown = value.to_string();
                if shown.len() > 60 {
                    let cut = (0..=60)
                        .rev()
                        .find(|i| shown.is_char_boundary(*i))
                        .unwrap_or(0);
                    shown.truncate(cut);
                    shown.push('…');
                }
                bad.push((
                    row,
                    format!(
                        "field '{}': {shown} is not a valid {}",
                        field.name(),
                        crate::sql::types::display_type(field.data_type())
                    ),
                    false,
                ));
                continue;
            }
            let missing: Vec<&str> = null_cols
                .iter()
                .map(|c| self.schema.field(*c).name().as_str())
                .filter(|name| !obj.contains_key(*name))
                .collect();
            if !missing.is_empty() {
                bad.push((
                    row,
                    format!("missing field(s): {}", missing.join(", ")),
                    true,
                ));
            }
        }
        bad
    }
}

/// A JSON-lines file reader.
pub struct JsonLinesReader {
    lines: LineReader<JsonDecoder>,
    schema: SchemaRef,
}

impl JsonLinesReader {
    /// Read `path` as rows of `schema`, finding each field under its key in `keys`
    /// (the column names as declared, which may differ in case from the SQL names).
    pub fn new(
        path: PathBuf,
        schema: SchemaRef,
        keys: SchemaRef,
        policy: ErrorPolicy,
    ) -> Result<Self> {
        Ok(Self {
            lines: LineReader::new(path, JsonDecoder::new(keys)?, policy).one_record_per_line(),
            schema,
        })
    }

    /// Decode only the columns in `read`: the others are NULL, and a record is not checked
    /// for them (a missing or wrong-typed value there is not malformed, as it is not read).
    pub(crate) fn reading(mut self, read: Option<super::ReadColumns>) -> Result<Self> {
        self.lines = self.lines.reading(read, |d, read| match &d.debezium {
            // Change events (a changelog source) are read whole.
            Some(_) => Ok(None),
            None => Ok(Some((
                d.schema.clone(),
                JsonDecoder::new(read.project(&d.schema))?,
            ))),
        })?;
        Ok(self)
    }

    /// Read `bytes` (an object named `name`) instead of a file.
    pub fn over_bytes(mut self, bytes: bytes::Bytes) -> Self {
        self.lines = self.lines.over_bytes(bytes);
        self
    }

    /// Read blocks of `block` bytes, `workers` at once (tests).
    #[cfg(test)]
    pub(crate) fn with_blocks(mut self, block: usize, workers: usize) -> Self {
        self.lines = self.lines.with_blocks(block, workers);
        self
    }

    /// Keep reading the file as it grows.
    pub fn following(mut self) -> Self {
        self.lines = self.lines.following();
        self
    }

    /// Read a pipe: rows go on as each read brings complete lines.
    pub fn streaming(mut self) -> Self {
        self.lines = self.lines.streaming();
        self
    }

    /// The position of the next batch, at a line boundary (see [`super::lines::LinePosition`]).
    pub fn position(&self) -> Option<super::lines::LinePosition> {
        self.lines.position()
    }

    /// Continue from a position.
    pub fn seek(&mut self, pos: super::lines::LinePosition) -> Result<()> {
        self.lines.seek(pos)
    }

    /// Read `path` as Debezium change events into changelog rows of `schema` (see
    /// `format::debezium`); the batches end with the changelog's op column.
    pub fn debezium(
        path: PathBuf,
        schema: SchemaRef,
        keys: SchemaRef,
        policy: ErrorPolicy,
    ) -> Result<Self> {
        // An event may give two rows, so checkpoints fall only between blocks.
        Ok(Self {
            lines: LineReader::new(path, JsonDecoder::debezium(keys)?, policy),
            schema: crate::changelog::with_op_field(&schema),
        })
    }

    /// The next batch, or None at the end.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self.lines.next()? {
            Some(b) => Ok(Some(RecordBatch::try_new(
                self.schema.clone(),
                b.columns().to_vec(),
            )?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;
    use crate::runtime::JobMetrics;

    /// Bad lines of every kind (broken syntax, not an object, a wrong type, a missing field)
    /// among good ones: exactly the bad ones are counted, and the good rows come out in order.
    #[test]
    fn bad_lines_are_isolated_and_the_rest_kept_in_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let mut text = String::new();
        let mut want = vec![];
        let mut bad = 0;
        for i in 0..20_000i64 {
            match i % 97 {
                5 => text.push_str(&format!("{{\"a\": {i}, \"b\": \n")),
                17 => text.push_str("[1, 2]\n"),
                29 => text.push_str(&format!("{{\"a\": \"x{i}\", \"b\": \"s\"}}\n")),
                41 => text.push_str(&format!("{{\"b\": \"only b {i}\"}}\n")),
                _ => {
                    text.push_str(&format!("{{\"a\": {i}, \"b\": \"v{i}\"}}\n"));
                    want.push(i);
                    continue;
                }
            }
            bad += 1;
        }
        let text = bytes::Bytes::from(text);
        // One 4 MiB block, and blocks of 4 KiB decoded one, two and four at once: the same
        // rows in the same order, the bad lines reported in line order.
        let mut reports = vec![];
        for (block, workers) in [(4 << 20, 1), (4096, 1), (4096, 2), (4096, 4)] {
            let metrics = Arc::new(JobMetrics::default());
            let collected = Arc::new(std::sync::Mutex::new(vec![]));
            let policy =
                crate::format::ErrorPolicy::lenient(metrics.clone()).collecting(collected.clone());
            let mut r =
                JsonLinesReader::new("mem.json".into(), schema.clone(), schema.clone(), policy)
                    .expect("reader")
                    .over_bytes(text.clone())
                    .with_blocks(block, workers);
            let mut got = vec![];
            let mut offsets = vec![];
            while let Some(b) = r.next_batch().expect("decodes") {
                got.extend(
                    b.column(0)
                        .as_primitive::<Int64Type>()
                        .values()
                        .iter()
                        .copied(),
                );
                offsets.extend(r.position().map(|p| p.offset));
            }
            assert_eq!(got, want, "block {block}, {workers} workers");
            assert_eq!(JobMetrics::get(&metrics.malformed), bad);
            assert!(offsets.is_sorted(), "positions go forward");
            assert_eq!(offsets.last().copied(), Some(text.len() as u64));
            let reported = collected.lock().expect("lock").clone();
            let lines: Vec<u64> = reported
                .iter()
                .map(|(loc, _)| {
                    loc.rsplit(':')
                        .next()
                        .and_then(|l| l.parse().ok())
                        .expect("line")
                })
                .collect();
            assert!(lines.is_sorted(), "reported in line order: {lines:?}");
            reports.push(reported);
        }
        assert!(reports.windows(2).all(|w| w[0] == w[1]));
        // Wrong-typed values are named with the field and the declared type.
        assert!(
            reports[0].iter().any(|(loc, msg)| loc == "mem.json:30"
                && msg == "field 'a': \"x29\" is not a valid BIGINT"),
            "{:?}",
            &reports[0][..4]
        );
    }

    /// A position taken after any batch (blocks read ahead on other threads) resumes exactly
    /// at the next row: a reader seeked there reads the rest of the rows, no more, no fewer.
    #[test]
    fn every_position_resumes_at_the_next_row() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let text: String = (0..30_000i64)
            .map(|i| format!("{{\"a\": {i}}}\n"))
            .collect();
        let text = bytes::Bytes::from(text);
        let metrics = Arc::new(JobMetrics::default());
        let reader = || {
            JsonLinesReader::new(
                "mem.json".into(),
                schema.clone(),
                schema.clone(),
                crate::format::ErrorPolicy::lenient(metrics.clone()),
            )
            .expect("reader")
            .over_bytes(text.clone())
            .with_blocks(4096, 2)
        };
        let values = |b: &RecordBatch| -> Vec<i64> {
            b.column(0).as_primitive::<Int64Type>().values().to_vec()
        };
        let mut r = reader();
        let mut seen = 0i64;
        let mut positions = vec![];
        while let Some(b) = r.next_batch().expect("decodes") {
            assert_eq!(values(&b)[0], seen, "in order");
            seen += b.num_rows() as i64;
            if let Some(p) = r.position() {
                positions.push((p, seen));
            }
        }
        assert_eq!(seen, 30_000);
        assert!(positions.len() > 50, "{} positions", positions.len());
        for (p, at) in positions.iter().step_by(7) {
            let mut r = reader();
            r.seek(*p).expect("seeks");
            let mut rest = vec![];
            while let Some(b) = r.next_batch().expect("decodes") {
                rest.extend(values(&b));
            }
            assert_eq!(rest, (*at..30_000).collect::<Vec<_>>(), "from {p:?}");
        }
    }
}
