//! Decoding messages (a Kinesis record's data, a Kafka message's value): one JSON record per
//! message (or one Avro record: [`super::avro`]), into batches of a table's physical columns, with its `METADATA` columns filled from
//! each message's metadata (shard, sequence number, offset, arrival time...).
//!
//! A poll's messages are decoded in one go by arrow-json's vectorized decoder, each message
//! fed separately so that one can never run into the next. When a message is not exactly one
//! JSON object, the poll is decoded again message by message to isolate it; bad messages are
//! counted, reported with their location (stream/shard/sequence number, topic/partition/offset)
//! and skipped or dead-lettered, per the table's error policy.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, UInt32Array, new_null_array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::json::reader::Decoder;
use datafusion::arrow::record_batch::RecordBatch;

use super::ErrorPolicy;
use super::avro::AvroDecoder;
use super::cast_to;
use super::json::JsonDecoder;
use super::lines::BlockDecoder;
use crate::Result;
use crate::sql::catalog::Table;

/// The most messages one `decode` call takes (sources poll at most this many at a time).
pub const MAX_POLL: usize = 16384;

/// The metadata of a poll's messages, as columns.
pub trait MessageMeta {
    /// The column for metadata `key`, one value per message (before any are dropped).
    fn column(&self, key: &str) -> Result<ArrayRef>;
    /// Where message `i` came from, for error messages.
    fn location(&self, i: usize) -> String;
}

/// See the module doc.
pub struct MessageDecoder {
    physical: SchemaRef,
    payload_schema: SchemaRef,
    payload_cols: Vec<usize>,
    meta_cols: Vec<(usize, String)>,
    decoder: Decoder,
    checker: JsonDecoder,
    avro: Option<AvroDecoder>,
    /// `debezium-json`: messages are change events ([`super::debezium`]); the declared field
    /// names each row image must have.
    debezium: Option<Vec<String>>,
    policy: ErrorPolicy,
}

/// The metadata of the rows of change events: each row's message's.
struct RowsMeta<'a> {
    messages: &'a dyn MessageMeta,
    /// Per row: its message.
    message_of: &'a [u32],
}

impl MessageMeta for RowsMeta<'_> {
    fn column(&self, key: &str) -> Result<ArrayRef> {
        let col = self.messages.column(key)?;
        Ok(take(
            &col,
            &UInt32Array::from(self.message_of.to_vec()),
            None,
        )?)
    }

    fn location(&self, i: usize) -> String {
        let message = self.message_of.get(i).copied().unwrap_or_default();
        self.messages.location(message as usize)
    }
}

/// A wrong-typed value decodes as NULL (the checker then drops its record as malformed)
/// rather than failing the whole poll, as in files (`format::json`).
fn decoder(schema: &SchemaRef) -> Result<Decoder> {
    Ok(ReaderBuilder::new(schema.clone())
        .with_batch_size(MAX_POLL)
        .with_ignore_type_conflicts(true)
        .build_decoder()?)
}

impl MessageDecoder {
    /// A decoder for `table`'s messages (format `json`). `known_meta` lists the metadata keys
    /// the connector provides.
    pub fn new(table: &Table, policy: ErrorPolicy, known_meta: &[&str]) -> Result<Self> {
        let format = table.option("format").unwrap_or("json");
        let (mut payload_schema, mut payload_cols) = table.payload_schema();
        let mut debezium = None;
        let avro = if super::avro::is_avro(format) {
            Some(AvroDecoder::new(table, payload_schema.clone())?)
        } else if format.eq_ignore_ascii_case("json") {
            None
        } else if format.eq_ignore_ascii_case("debezium-json") {
            let names = payload_schema.fields().iter().map(|f| f.name().clone());
            debezium = Some(names.collect());
            None
        } else {
            return crate::not_supported!(
                "message format '{format}' (json, debezium-json, avro, avro-confluent)"
            );
        };
        // JSON messages: only the fields the job reads are decoded (and checked).
        if let (None, None, Some(read)) = (&avro, &debezium, super::ReadColumns::of(table)) {
            let keep: Vec<usize> = (0..payload_cols.len())
                .filter(|c| read.reads(payload_cols[*c]))
                .collect();
            if !keep.is_empty() {
                payload_schema = Arc::new(payload_schema.project(&keep)?);
                payload_cols = keep.iter().map(|c| payload_cols[*c]).collect();
            }
        }
        let mut meta_cols = vec![];
        for (i, key) in table.metadata_columns() {
            if !known_meta.contains(&key) {
                return crate::plan_err!(
                    "table {}: unknown metadata key '{key}' for connector '{}' (one of: {})",
                    table.def.name,
                    table.connector(),
                    known_meta.join(", ")
                );
            }
            meta_cols.push((i, key.to_string()));
        }
        Ok(Self {
            physical: table.physical.clone(),
            decoder: decoder(&payload_schema)?,
            checker: JsonDecoder::new(payload_schema.clone())?,
            avro,
            debezium,
            payload_schema,
            payload_cols,
            meta_cols,
            policy,
        })
    }

    /// Decode one poll's messages. Returns `None` when every message was malformed.
    pub fn decode(
        &mut self,
        payloads: &[&[u8]],
        meta: &dyn MessageMeta,
    ) -> Result<Option<RecordBatch>> {
        if payloads.is_empty() {
            return Ok(None);
        }
        if let Some(avro) = &mut self.avro {
            let (batch, kept, bad) = avro.decode(payloads)?;
            for (i, message) in bad {
                self.policy
                    .malformed(&meta.location(i), &message, payloads[i], false)?;
            }
            return match batch {
                Some(b) => self.with_metadata(b, kept, meta),
                None => Ok(None),
            };
        }
        if self.debezium.is_some() {
            return self.decode_changes(payloads, meta);
        }
        match self.decode_json(payloads, meta)? {
            Some((payload, kept)) => self.with_metadata(payload, kept, meta),
            None => Ok(None),
        }
    }

    /// Change events: their rows, decoded as JSON, with the changelog's op column last.
    fn decode_changes(
        &mut self,
        payloads: &[&[u8]],
        meta: &dyn MessageMeta,
    ) -> Result<Option<RecordBatch>> {
        let fields = self.debezium.clone().unwrap_or_default();
        let (mut rows, mut ops, mut message_of) = (vec![], vec![], vec![]);
        for (i, p) in payloads.iter().enumerate() {
            match super::debezium::event_rows(p, &fields) {
                Ok(events) => {
                    for (kind, row) in events {
                        rows.push(row);
                        ops.push(kind);
                        message_of.push(i as u32);
                    }
                }
                Err(message) => self
                    .policy
                    .malformed(&meta.location(i), &message, p, false)?,
            }
        }
        self.decode_changelog(&rows, &ops, &message_of, meta)
    }

    /// Changelog rows: each a JSON record with its op, from message `message_of[i]` (for its
    /// metadata and for messages). The physical columns, then the op column.
    pub fn decode_changelog(
        &mut self,
        rows: &[Vec<u8>],
        ops: &[crate::changelog::RowKind],
        message_of: &[u32],
        meta: &dyn MessageMeta,
    ) -> Result<Option<RecordBatch>> {
        let refs: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
        let rows_meta = RowsMeta {
            messages: meta,
            message_of,
        };
        let Some((payload, kept)) = self.decode_json(&refs, &rows_meta)? else {
            return Ok(None);
        };
        let ops: Vec<i8> = match &kept {
            None => ops.iter().map(|k| *k as i8).collect(),
            Some(k) => k.iter().map(|r| ops[*r as usize] as i8).collect(),
        };
        let Some(batch) = self.with_metadata(payload, kept, &rows_meta)? else {
            return Ok(None);
        };
        let schema = crate::changelog::with_op_field(&self.physical);
        let columns = batch.columns().to_vec();
        Ok(Some(crate::changelog::batch_with_ops(
            schema, columns, ops,
        )?))
    }

    /// Count (and report, or dead-letter) a message that cannot be read.
    pub fn reject(&self, location: &str, message: &str, raw: &[u8]) -> Result<()> {
        self.policy.malformed(location, message, raw, false)
    }

    /// JSON records, one per payload: the decoded ones, and which payloads they are (None:
    /// all). `None` when there are none.
    fn decode_json(
        &mut self,
        payloads: &[&[u8]],
        meta: &dyn MessageMeta,
    ) -> Result<Option<(RecordBatch, Option<Vec<u32>>)>> {
        if payloads.is_empty() {
            return Ok(None);
        }
        let (payload, kept) = match self.decode_all(payloads) {
            Ok(Some(b)) => (b, None),
            Ok(None) | Err(_) => {
                self.decoder = decoder(&self.payload_schema)?;
                self.decode_each(payloads, meta)?
            }
        };
        // Rows that decoded but lack a declared field.
        let (payload, kept) = if self.checker.needs_check(&payload) {
            let raw: Vec<&[u8]> = match &kept {
                None => payloads.to_vec(),
                Some(k) => k.iter().map(|i| payloads[*i as usize]).collect(),
            };
            let bad = self.checker.check(&payload, &raw);
            if bad.is_empty() {
                (payload, kept)
            } else {
                let mut keep = vec![true; payload.num_rows()];
                for (row, msg, missing_field) in &bad {
                    let original = kept.as_ref().map_or(*row, |k| k[*row] as usize);
                    self.policy.malformed(
                        &meta.location(original),
                        msg,
                        raw[*row],
                        *missing_field,
                    )?;
                    keep[*row] = false;
                }
                let mask = BooleanArray::from(keep.clone());
                let payload = filter_record_batch(&payload, &mask)?;
                let indices: Vec<u32> = keep
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| **k)
                    .map(|(r, _)| kept.as_ref().map_or(r as u32, |k| k[r]))
                    .collect();
                (payload, Some(indices))
            }
        } else {
            (payload, kept)
        };
        Ok(Some((payload, kept)))
    }

    /// The table's physical columns: the payload's, and the metadata of the kept messages.
    fn with_metadata(
        &self,
        payload: RecordBatch,
        kept: Option<Vec<u32>>,
        meta: &dyn MessageMeta,
    ) -> Result<Option<RecordBatch>> {
        if payload.num_rows() == 0 {
            return Ok(None);
        }
        // Columns not read stay NULL.
        let rows = payload.num_rows();
        let mut columns: Vec<ArrayRef> = (0..self.physical.fields().len())
            .map(|i| new_null_array(self.physical.field(i).data_type(), rows))
            .collect();
        for (c, i) in self.payload_cols.iter().enumerate() {
            columns[*i] = payload.column(c).clone();
        }
        for (i, key) in &self.meta_cols {
            let col = meta.column(key)?;
            let col = match &kept {
                None => col,
                Some(k) => take(&col, &UInt32Array::from(k.clone()), None)?,
            };
            columns[*i] = cast_to(&col, self.physical.field(*i).data_type())?;
        }
        Ok(Some(RecordBatch::try_new(self.physical.clone(), columns)?))
    }

    /// Every message, in one decoder: `None` if any message is not exactly one record.
    fn decode_all(&mut self, payloads: &[&[u8]]) -> Result<Option<RecordBatch>> {
        for (i, p) in payloads.iter().enumerate() {
            if !self.feed(p)? || self.decoder.len() != i + 1 {
                return Ok(None);
            }
        }
        Ok(self.decoder.flush()?)
    }

    /// Feed one whole message; false if it left a partial record.
    fn feed(&mut self, payload: &[u8]) -> Result<bool> {
        let mut off = 0;
        while off < payload.len() {
            let n = self.decoder.decode(&payload[off..])?;
            if n == 0 {
                return Ok(false);
            }
            off += n;
        }
        Ok(!self.decoder.has_partial_record())
    }

    /// Message by message: the good ones, and their indices.
    fn decode_each(
        &mut self,
        payloads: &[&[u8]],
        meta: &dyn MessageMeta,
    ) -> Result<(RecordBatch, Option<Vec<u32>>)> {
        let mut good = vec![];
        let mut kept = vec![];
        for (i, p) in payloads.iter().enumerate() {
            let result = match self.feed(p) {
                Ok(true) if self.decoder.len() == 1 => self.decoder.flush().map_err(Into::into),
                Ok(true) if self.decoder.is_empty() => {
                    Err(crate::Error::Plan("empty message".into()))
                }
                Ok(true) => Err(crate::Error::Plan(
                    "more than one JSON value in one message".into(),
                )),
                Ok(false) => Err(crate::Error::Plan("incomplete JSON value".into())),
                Err(e) => Err(e),
            };
            match result {
                Ok(Some(b)) => {
                    good.push(b);
                    kept.push(i as u32);
                }
                Ok(None) => {}
                Err(e) => {
                    self.decoder = decoder(&self.payload_schema)?;
                    let message = match e {
                        crate::Error::Plan(m) => m,
                        other => other.to_string(),
                    };
                    self.policy
                        .malformed(&meta.location(i), &message, p, false)?;
                }
            }
        }
        let batch = concat_batches(&self.payload_schema, &good)?;
        Ok((batch, Some(kept)))
    }
}

/// Encodes rows as messages, one per row, in a sink table's `'format'`: `json`,
/// `debezium-json` (changelogs), `avro` or `avro-confluent`. Fields carry the columns' names
/// as declared (`userId`, not the normalised `userid`), as the filesystem sink writes them.
pub struct MessageEncoder {
    /// The data columns under their declared names.
    schema: SchemaRef,
    kind: EncoderKind,
}

enum EncoderKind {
    Json,
    Debezium,
    Avro(super::avro::AvroEncoder),
}

impl MessageEncoder {
    /// An encoder for rows of `schema` (a changelog's op column included) into `table`.
    pub fn new(table: &Table, schema: &SchemaRef) -> Result<Self> {
        let data = Arc::new(datafusion::arrow::datatypes::Schema::new(
            schema
                .fields()
                .iter()
                .filter(|f| f.name() != crate::changelog::OP_COLUMN)
                .map(|f| f.as_ref().clone().with_name(table.declared_name(f.name())))
                .collect::<Vec<_>>(),
        ));
        let format = table
            .option("format")
            .unwrap_or("json")
            .to_ascii_lowercase();
        let kind = match format.as_str() {
            "json" => EncoderKind::Json,
            "debezium-json" => EncoderKind::Debezium,
            "avro" | "avro-confluent" => {
                EncoderKind::Avro(super::avro::AvroEncoder::new(table, data.clone())?)
            }
            other => {
                return crate::not_supported!(
                    "{} sink format '{other}' (json, debezium-json, avro, avro-confluent)",
                    table.connector()
                );
            }
        };
        Ok(Self { schema: data, kind })
    }

    /// Whether the format can carry an updating query's retractions.
    pub fn takes_changelog(format: &str) -> bool {
        format.eq_ignore_ascii_case("debezium-json")
    }

    /// One message per row of `batch`.
    pub fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        let data = crate::changelog::strip_ops(batch);
        let data = RecordBatch::try_new(self.schema.clone(), data.columns().to_vec())?;
        match &mut self.kind {
            EncoderKind::Json => super::writer::json_rows(&data),
            EncoderKind::Avro(e) => e.encode(&data),
            EncoderKind::Debezium => {
                let mut cols = data.columns().to_vec();
                let mut fields: Vec<_> = self.schema.fields().iter().cloned().collect();
                if let Ok(i) = batch.schema().index_of(crate::changelog::OP_COLUMN) {
                    cols.push(batch.column(i).clone());
                    fields.push(Arc::new(crate::changelog::op_field()));
                }
                let with_ops = RecordBatch::try_new(
                    Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
                    cols,
                )?;
                super::writer::debezium_rows(&with_ops)
            }
        }
    }
}

/// A constant column of `n` rows (for metadata that is the same for a whole poll).
pub fn repeat_str(value: &str, n: usize) -> ArrayRef {
    Arc::new(datafusion::arrow::array::StringArray::from(vec![value; n]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::JobMetrics;
    use crate::sql::statement::{Statement, parse_sql};
    use datafusion::arrow::array::{Int64Array, StringArray};

    struct Meta(Vec<&'static str>);
    impl MessageMeta for Meta {
        fn column(&self, key: &str) -> Result<ArrayRef> {
            assert_eq!(key, "shard-id");
            Ok(Arc::new(StringArray::from(self.0.clone())))
        }
        fn location(&self, i: usize) -> String {
            format!("message {i}")
        }
    }

    fn table() -> Table {
        let stmts = parse_sql(
            "CREATE TABLE t (a BIGINT, s STRING METADATA FROM 'shard-id' VIRTUAL, b STRING) \
             WITH ('connector' = 'kinesis')",
        )
        .unwrap();
        let Statement::CreateTable(def) = stmts[0].statement.clone() else {
            panic!()
        };
        Table::new(def).unwrap()
    }

    #[test]
    fn decodes_messages_and_isolates_bad_ones() {
        let t = table();
        let metrics = Arc::new(JobMetrics::default());
        let mut d =
            MessageDecoder::new(&t, ErrorPolicy::lenient(metrics.clone()), &["shard-id"]).unwrap();
        let meta = Meta(vec!["s0", "s1", "s2", "s3", "s4"]);
        // A truncated record must not swallow the next one.
        let payloads: Vec<&[u8]> = vec![
            br#"{"a": 1, "b": "x"}"#,
            br#"{"a": 2, "b":"#,
            br#""y"}"#,
            br#"{"b": "no a"}"#,
            b"{\"a\": 5,\n \"b\": \"z\", \"extra\": 1}",
        ];
        let b = d.decode(&payloads, &meta).unwrap().unwrap();
        let a: &Int64Array = b.column(0).as_any().downcast_ref().unwrap();
        assert_eq!(a.values(), &[1, 5]);
        let s: &StringArray = b.column(1).as_any().downcast_ref().unwrap();
        assert_eq!((s.value(0), s.value(1)), ("s0", "s4"));
        assert_eq!(JobMetrics::get(&metrics.malformed), 3);
        // The fast path afterwards.
        let good: Vec<&[u8]> = vec![br#"{"a": 7, "b": "q"}"#, br#"{"a": 8, "b": null}"#];
        let b = d.decode(&good, &Meta(vec!["x", "y"])).unwrap().unwrap();
        assert_eq!(b.num_rows(), 2);
    }

    /// A job that does not read `b`: it is NULL and not checked (a wrong-typed or missing `b`
    /// is not malformed); `a` and the metadata are as before.
    #[test]
    fn only_the_columns_read_are_decoded() {
        let mut t = table();
        t.read = Some(vec![true, true, false].into());
        let metrics = Arc::new(JobMetrics::default());
        let mut d =
            MessageDecoder::new(&t, ErrorPolicy::lenient(metrics.clone()), &["shard-id"]).unwrap();
        let payloads: Vec<&[u8]> = vec![
            br#"{"a": 1, "b": "x"}"#,
            br#"{"a": 2, "b": 17}"#,
            br#"{"a": 3}"#,
            br#"{"a": "bad", "b": "y"}"#,
        ];
        let b = d
            .decode(&payloads, &Meta(vec!["s0", "s1", "s2", "s3"]))
            .unwrap()
            .unwrap();
        let a: &Int64Array = b.column(0).as_any().downcast_ref().unwrap();
        assert_eq!(a.values(), &[1, 2, 3]);
        let s: &StringArray = b.column(1).as_any().downcast_ref().unwrap();
        assert_eq!((s.value(0), s.value(2)), ("s0", "s2"));
        assert_eq!(b.column(2).null_count(), 3);
        assert_eq!(JobMetrics::get(&metrics.malformed), 1, "only the bad a");
    }
}
