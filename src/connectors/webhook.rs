//! `'connector' = 'webhook'`: a sink that POSTs each batch of rows as JSON to `'url'` (an
//! alert to a chat or pager endpoint).
//!
//! - **Body:** `{"table": "<name>", "rows": [{column: value, …}, …]}`, at most
//!   [`ROWS_PER_POST`] rows per request. An updating table's rows add `"op"` (`+I`, `-U`, `+U`,
//!   `-D`). Values as everywhere in weir's HTTP API ([`row_objects`]): timestamps as
//!   `"YYYY-MM-DD HH:MM:SS.fff"`, DECIMAL and integers beyond 2^53 as strings.
//! - **Signature:** with `'webhook.secret'`, `X-Weir-Signature: sha256=<hex HMAC-SHA256 of the
//!   body>`, so the endpoint can check the sender.
//! - **Retries:** a connection error, a timeout (`'webhook.timeout'`, default 10 s), a 5xx, 408
//!   or 429 is retried up to `'sink.max-retries'` times (default 5) with exponential backoff
//!   (200 ms doubling, at most 10 s, or the endpoint's `Retry-After` when shorter than a
//!   minute). Another 4xx is not retried: the endpoint refuses the body.
//! - **Never blocked forever:** after the last attempt the body is appended to
//!   `'dead-letter.path'` (one JSON line per request) or, without one, dropped; either way with
//!   a line on stderr, and the job goes on.
//!
//! At-least-once: every request of a batch is answered (or given up) before the next batch,
//! so a checkpoint barrier finds nothing in flight; a restore may send the rows after the
//! last checkpoint again.

use std::path::PathBuf;
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::ArrayFormatter;
use futures::future::BoxFuture;
use serde_json::{Map, Value};

use super::Sink;
use crate::sql::catalog::Table;
use crate::{Error, Result, plan_err};

/// Rows per request at most.
pub const ROWS_PER_POST: usize = 1000;

/// The largest integer a JSON number carries exactly in every client (2^53).
const EXACT_INT: u64 = 1 << 53;

/// The sink.
pub struct WebhookSink {
    table: String,
    url: reqwest::Url,
    client: reqwest::Client,
    secret: Option<Vec<u8>>,
    max_retries: u32,
    dead_letter: Option<PathBuf>,
    schema: SchemaRef,
    /// Requests given up (dead-lettered or dropped).
    given_up: u64,
}

impl WebhookSink {
    /// From the table's options (checked at `CREATE TABLE`; the URL and durations here).
    pub fn new(table: &Table, schema: SchemaRef) -> Result<Self> {
        let name = &table.def.name;
        let Some(url) = table.option("url") else {
            return plan_err!("table {name}: the webhook connector needs a 'url'");
        };
        let url = reqwest::Url::parse(url)
            .map_err(|e| Error::Plan(format!("table {name}: 'url' = '{url}': {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return plan_err!("table {name}: 'url' must be http:// or https://, not {url}");
        }
        if let Some(f) = table.option("format")
            && !f.eq_ignore_ascii_case("json")
        {
            return plan_err!("table {name}: the webhook connector sends 'format' = 'json' only");
        }
        let timeout = match table.option("webhook.timeout") {
            None => Duration::from_secs(10),
            Some(v) => match crate::sql::interval::parse_duration_option(v) {
                Some(ms) if ms > 0 => Duration::from_millis(ms as u64),
                _ => {
                    return plan_err!(
                        "table {name}: 'webhook.timeout' = '{v}' is not a duration such as '10 s'"
                    );
                }
            },
        };
        let max_retries = match table.option("sink.max-retries") {
            None => 5,
            Some(v) => v.parse::<u32>().map_err(|_| {
                Error::Plan(format!(
                    "table {name}: 'sink.max-retries' = '{v}' is not a count"
                ))
            })?,
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Plan(format!("table {name}: HTTP client: {e}")))?;
        Ok(Self {
            table: name.clone(),
            url,
            client,
            secret: table
                .option("webhook.secret")
                .map(|s| s.as_bytes().to_vec()),
            max_retries,
            dead_letter: table.option("dead-letter.path").map(PathBuf::from),
            schema,
            given_up: 0,
        })
    }

    /// The `X-Weir-Signature` header value of `body`.
    fn signature(secret: &[u8], body: &[u8]) -> std::result::Result<String, String> {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
            .map_err(|e| format!("'webhook.secret': {e}"))?;
        mac.update(body);
        Ok(format!(
            "sha256={}",
            hex::encode(mac.finalize().into_bytes())
        ))
    }

    /// POST `body`, retrying as the module doc says; Err: given up, with why.
    async fn post(&self, body: &[u8]) -> std::result::Result<(), String> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            let mut req = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
            if let Some(secret) = &self.secret {
                req = req.header("X-Weir-Signature", Self::signature(secret, body)?);
            }
            let (why, retry_after) = match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    let status = resp.status();
                    let retryable = status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                        || status == reqwest::StatusCode::REQUEST_TIMEOUT;
                    if !retryable {
                        return Err(format!("the endpoint answered {status}"));
                    }
                    let after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .filter(|s| *s < 60)
                        .map(Duration::from_secs);
                    (format!("the endpoint answered {status}"), after)
                }
                Err(e) if e.is_timeout() => ("no answer within the timeout".to_string(), None),
                Err(e) => (format!("{e}"), None),
            };
            if attempt >= self.max_retries {
                return Err(format!("{why} (after {} attempts)", attempt + 1));
            }
            attempt += 1;
            tokio::time::sleep(retry_after.unwrap_or(delay)).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    /// A request given up: dead-lettered (or dropped), said on stderr.
    fn give_up(&mut self, body: &[u8], why: &str) -> Result<()> {
        self.given_up += 1;
        let whereto = match &self.dead_letter {
            Some(path) => {
                crate::format::append_dead_letter(path, body)?;
                format!("written to {}", path.display())
            }
            None => "dropped (set 'dead-letter.path' to keep such rows)".to_string(),
        };
        eprintln!(
            "weir: webhook sink of table {} gave up a request to {}: {why}; its rows were {whereto} \
             ({} request(s) given up so far)",
            self.table, self.url, self.given_up
        );
        Ok(())
    }
}

impl Sink for WebhookSink {
    fn write_batch(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let mut at = 0;
            while at < batch.num_rows() {
                let n = ROWS_PER_POST.min(batch.num_rows() - at);
                let rows = row_objects(&batch.slice(at, n), &self.schema)?;
                at += n;
                let body = serde_json::to_vec(&serde_json::json!({
                    "table": self.table,
                    "rows": rows,
                }))
                .map_err(|e| Error::Execution {
                    operator: format!("webhook sink of table {}", self.table),
                    message: e.to_string(),
                })?;
                if let Err(why) = self.post(&body).await {
                    self.give_up(&body, &why)?;
                }
            }
            Ok(())
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Rows as JSON objects (column name → value), as weir's HTTP API encodes them: timestamps,
/// dates and times as text in Flink's form (`"2026-01-01 10:00:00.000"`), DECIMAL and
/// integers beyond 2^53 as strings (JavaScript numbers would round them), non-finite floats as
/// strings, lists and maps as text. A changelog's rows add `"op"`.
pub fn row_objects(batch: &RecordBatch, schema: &SchemaRef) -> Result<Vec<Value>> {
    let ops = crate::changelog::ops_of(batch).map(<[i8]>::to_vec);
    let data = crate::changelog::strip_ops(batch);
    let opts = super::print::format_options();
    let mut columns: Vec<Vec<Value>> = Vec::with_capacity(data.num_columns());
    for col in data.columns() {
        let fmt = ArrayFormatter::try_new(col.as_ref(), &opts)?;
        let text = |r: usize| Value::String(fmt.value(r).to_string());
        let int = |v: i128| {
            if v.unsigned_abs() <= u128::from(EXACT_INT) {
                Value::from(v as i64)
            } else {
                Value::String(v.to_string())
            }
        };
        use datafusion::arrow::datatypes as t;
        let values = (0..col.len())
            .map(|r| {
                if col.is_null(r) {
                    return Value::Null;
                }
                match col.data_type() {
                    DataType::Boolean => Value::Bool(col.as_boolean().value(r)),
                    DataType::Int8 => int(col.as_primitive::<t::Int8Type>().value(r).into()),
                    DataType::Int16 => int(col.as_primitive::<t::Int16Type>().value(r).into()),
                    DataType::Int32 => int(col.as_primitive::<t::Int32Type>().value(r).into()),
                    DataType::Int64 => int(col.as_primitive::<t::Int64Type>().value(r).into()),
                    DataType::UInt8 => int(col.as_primitive::<t::UInt8Type>().value(r).into()),
                    DataType::UInt16 => int(col.as_primitive::<t::UInt16Type>().value(r).into()),
                    DataType::UInt32 => int(col.as_primitive::<t::UInt32Type>().value(r).into()),
                    DataType::UInt64 => int(col.as_primitive::<t::UInt64Type>().value(r).into()),
                    DataType::Float32 | DataType::Float64 => {
                        let v = match col.data_type() {
                            DataType::Float32 => {
                                f64::from(col.as_primitive::<t::Float32Type>().value(r))
                            }
                            _ => col.as_primitive::<t::Float64Type>().value(r),
                        };
                        serde_json::Number::from_f64(v).map_or_else(|| text(r), Value::Number)
                    }
                    DataType::Utf8 => Value::String(col.as_string::<i32>().value(r).to_string()),
                    DataType::LargeUtf8 => {
                        Value::String(col.as_string::<i64>().value(r).to_string())
                    }
                    DataType::Utf8View => Value::String(col.as_string_view().value(r).to_string()),
                    _ => text(r),
                }
            })
            .collect();
        columns.push(values);
    }
    let names: Vec<&String> = schema
        .fields()
        .iter()
        .take(data.num_columns())
        .map(|f| f.name())
        .collect();
    let mut out = Vec::with_capacity(batch.num_rows());
    for r in 0..batch.num_rows() {
        let mut obj = Map::new();
        for (c, name) in names.iter().enumerate() {
            obj.insert((*name).clone(), columns[c][r].clone());
        }
        if let Some(ops) = &ops {
            obj.insert(
                "op".into(),
                Value::String(
                    crate::changelog::RowKind::from_i8(ops[r])
                        .short()
                        .to_string(),
                ),
            );
        }
        out.push(Value::Object(obj));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn values_are_encoded_for_javascript_clients() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(7), Some(1 << 60), None])),
                Arc::new(Float64Array::from(vec![1.5, f64::NAN, 2.0])),
                Arc::new(StringArray::from(vec!["a", "b", "c"])),
            ],
        )
        .expect("batch");
        let rows = row_objects(&batch, &schema).expect("rows");
        assert_eq!(
            Value::Array(rows),
            serde_json::json!([
                {"id": 7, "x": 1.5, "s": "a"},
                {"id": "1152921504606846976", "x": "NaN", "s": "b"},
                {"id": null, "x": 2.0, "s": "c"},
            ])
        );
    }

    /// The signature of RFC 4231's test case 2 (key "Jefe").
    #[test]
    fn signature_is_hmac_sha256_in_hex() {
        assert_eq!(
            WebhookSink::signature(b"Jefe", b"what do ya want for nothing?").expect("signs"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
