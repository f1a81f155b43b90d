//! Avro messages, through arrow-avro's vectorized decoder and encoder.
//!
//! - `'format' = 'avro'`: each message is one Avro-encoded record with no header (Flink's
//!   `avro` format). The writer schema is `'avro.schema'` (Avro schema JSON) if given, else
//!   the one derived from the table's columns.
//! - `'format' = 'avro-confluent'`: each message is Confluent's wire format (a zero byte, a
//!   4-byte big-endian schema id, the record). The writer schema is given in the DDL with
//!   `'avro-confluent.schema'` (else derived from the columns); `'avro-confluent.schema-id'`
//!   is the id a sink writes and, when set, the only id a source accepts. Fetching schemas
//!   from a registry (`'avro-confluent.url'`) is not supported yet.
//!
//! Records are matched to the table's columns by field name and cast to the declared types.

use std::sync::Arc;

use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{
    AvroSchema, Fingerprint, FingerprintAlgorithm, FingerprintStrategy, SchemaStore,
};
use arrow_avro::writer::WriterBuilder;
use arrow_avro::writer::format::{AvroBinaryFormat, AvroSoeFormat};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use crate::sql::catalog::Table;
use crate::{Error, Result, not_supported, plan_err};

/// How records are framed in messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Framing {
    /// The record alone.
    Raw,
    /// Confluent's wire format; `Some(id)`: the schema id written, and the only one read.
    Confluent(Option<u32>),
}

/// Whether `format` is one of the Avro formats.
pub fn is_avro(format: &str) -> bool {
    matches!(
        format.to_ascii_lowercase().as_str(),
        "avro" | "avro-confluent"
    )
}

/// The framing and writer schema of an Avro table (`schema`: its columns, declared names).
fn settings(table: &Table, schema: &Schema) -> Result<(Framing, AvroSchema)> {
    let format = table
        .option("format")
        .unwrap_or("json")
        .to_ascii_lowercase();
    let (framing, key) = match format.as_str() {
        "avro" => (Framing::Raw, "avro.schema"),
        "avro-confluent" => {
            if table.option("avro-confluent.url").is_some() {
                return not_supported!(
                    "'avro-confluent.url' (a schema registry): give the writer schema with \
                     'avro-confluent.schema' and its id with 'avro-confluent.schema-id'"
                );
            }
            let id = match table.option("avro-confluent.schema-id") {
                None => None,
                Some(v) => Some(v.trim().parse::<u32>().map_err(|_| {
                    Error::Plan(format!(
                        "'avro-confluent.schema-id' = '{v}' is not a number"
                    ))
                })?),
            };
            (Framing::Confluent(id), "avro-confluent.schema")
        }
        other => return plan_err!("'{other}' is not an Avro format"),
    };
    let schema = match table.option(key) {
        Some(json) => {
            let s = AvroSchema::new(json.to_string());
            if let Err(e) = s.fingerprint(FingerprintAlgorithm::Rabin) {
                return plan_err!(
                    "table {}: '{key}' is not an Avro schema: {e}",
                    table.def.name
                );
            }
            s
        }
        None => AvroSchema::try_from(schema).map_err(|e| {
            Error::Plan(format!(
                "table {}: no Avro schema for its columns: {e}",
                table.def.name
            ))
        })?,
    };
    Ok((framing, schema))
}

/// What [`AvroDecoder::decode`] returns: the good rows, the indices of the good messages when
/// some were bad, and the bad ones (index, error).
pub type Decoded = (Option<RecordBatch>, Option<Vec<u32>>, Vec<(usize, String)>);

/// Decodes Avro messages (see the module doc).
pub struct AvroDecoder {
    framing: Framing,
    writer: AvroSchema,
    /// The single-object-encoding header of the writer schema, fed before each record.
    prefix: Vec<u8>,
    decoder: Decoder,
    target: SchemaRef,
}

impl AvroDecoder {
    /// A decoder of `table`'s messages into rows of `target` (the payload columns, declared names).
    pub fn new(table: &Table, target: SchemaRef) -> Result<Self> {
        let (framing, writer) = settings(table, &target)?;
        let Fingerprint::Rabin(fp) = writer.fingerprint(FingerprintAlgorithm::Rabin)? else {
            return plan_err!("internal: not a Rabin fingerprint");
        };
        let mut prefix = vec![0xC3, 0x01];
        prefix.extend_from_slice(&fp.to_le_bytes());
        let decoder = Self::build(&writer)?;
        Ok(Self {
            framing,
            writer,
            prefix,
            decoder,
            target,
        })
    }

    fn build(writer: &AvroSchema) -> Result<Decoder> {
        let mut store = SchemaStore::new();
        store.register(writer.clone())?;
        Ok(ReaderBuilder::new()
            .with_batch_size(super::messages::MAX_POLL)
            .with_writer_schema_store(store)
            .build_decoder()?)
    }

    /// The record of a message, after checking its framing.
    fn body<'a>(&self, payload: &'a [u8]) -> std::result::Result<&'a [u8], String> {
        match self.framing {
            Framing::Raw => Ok(payload),
            Framing::Confluent(want) => {
                if payload.len() < 5 || payload[0] != 0 {
                    return Err("not in Confluent's wire format (magic byte 0, schema id)".into());
                }
                let id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
                if want.is_some_and(|w| w != id) {
                    return Err(format!(
                        "schema id {id}, not the table's {}",
                        want.unwrap_or(0)
                    ));
                }
                Ok(&payload[5..])
            }
        }
    }

    /// Feed one message; `Err` if it is not exactly one record.
    fn feed(&mut self, payload: &[u8]) -> std::result::Result<(), String> {
        let body = self.body(payload)?;
        let before = self.decoder.capacity();
        let n = self
            .decoder
            .decode(&self.prefix)
            .map_err(|e| e.to_string())?;
        if n != self.prefix.len() {
            return Err("decoder is full".into());
        }
        let n = self.decoder.decode(body).map_err(|e| e.to_string())?;
        if n != body.len() || self.decoder.capacity() + 1 != before {
            return Err(format!(
                "not one Avro record of the table's schema ({} of {} bytes read)",
                n,
                body.len()
            ));
        }
        Ok(())
    }

    /// Decode a poll's messages: the good ones as rows of the target schema (`None` if none),
    /// the indices of the good ones when some were bad, and the bad ones with their errors.
    pub fn decode(&mut self, payloads: &[&[u8]]) -> Result<Decoded> {
        let mut clean = true;
        for p in payloads {
            if self.feed(p).is_err() {
                clean = false;
                break;
            }
        }
        if clean {
            let b = self.decoder.flush()?;
            return Ok((b.map(|b| self.conform(b)).transpose()?, None, vec![]));
        }
        // Message by message, to isolate the bad ones.
        let mut good = vec![];
        let mut kept = vec![];
        let mut bad = vec![];
        for (i, p) in payloads.iter().enumerate() {
            self.decoder = Self::build(&self.writer)?;
            match self.feed(p) {
                Ok(()) => {
                    if let Some(b) = self.decoder.flush()? {
                        good.push(self.conform(b)?);
                        kept.push(i as u32);
                    }
                }
                Err(e) => bad.push((i, e)),
            }
        }
        self.decoder = Self::build(&self.writer)?;
        let batch = if good.is_empty() {
            None
        } else {
            Some(concat_batches(&self.target, &good)?)
        };
        Ok((batch, Some(kept), bad))
    }

    /// Avro's columns as the target's: by name, cast to the declared types.
    fn conform(&self, b: RecordBatch) -> Result<RecordBatch> {
        let cols: Vec<ArrayRef> = self
            .target
            .fields()
            .iter()
            .map(|f| {
                let Some((i, _)) = b
                    .schema()
                    .fields()
                    .iter()
                    .enumerate()
                    .find(|(_, af)| af.name().eq_ignore_ascii_case(f.name()))
                else {
                    return plan_err!("the Avro schema has no field {}", f.name());
                };
                super::cast_to(b.column(i), f.data_type())
            })
            .collect::<Result<_>>()?;
        Ok(RecordBatch::try_new(self.target.clone(), cols)?)
    }
}

/// Encodes rows as Avro messages, one per row (see the module doc).
pub struct AvroEncoder {
    encoder: arrow_avro::writer::Encoder,
    schema: SchemaRef,
}

impl AvroEncoder {
    /// An encoder of rows of `schema` (declared names) for `table`.
    pub fn new(table: &Table, schema: SchemaRef) -> Result<Self> {
        let (framing, writer) = settings(table, &schema)?;
        let mut metadata = schema.metadata().clone();
        metadata.insert(
            arrow_avro::schema::SCHEMA_METADATA_KEY.to_string(),
            writer.json_string.clone(),
        );
        let with_schema = Schema::new_with_metadata(schema.fields().clone(), metadata);
        let builder = WriterBuilder::new(with_schema);
        let encoder = match framing {
            Framing::Raw => builder.build_encoder::<AvroBinaryFormat>()?,
            Framing::Confluent(Some(id)) => builder
                .with_fingerprint_strategy(FingerprintStrategy::Id(id))
                .build_encoder::<AvroSoeFormat>()?,
            Framing::Confluent(None) => {
                return plan_err!(
                    "table {}: an avro-confluent sink needs 'avro-confluent.schema-id' (the id its messages carry)",
                    table.def.name
                );
            }
        };
        Ok(Self {
            encoder,
            schema: Arc::new(Schema::new(schema.fields().clone())),
        })
    }

    /// One message per row of `batch` (whose columns are in the encoder's order).
    pub fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        let b = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?;
        self.encoder.encode(&b)?;
        let rows = self.encoder.flush();
        rows.iter().map(|r| Ok(r.to_vec())).collect()
    }
}

impl From<arrow_avro::errors::AvroError> for Error {
    fn from(e: arrow_avro::errors::AvroError) -> Self {
        Error::Plan(format!("avro: {e}"))
    }
}
