//! `POST /v1/tables/{table}/records`: authenticate, throttle (the request bucket before the
//! body is read, the record bucket once it is decoded), read the body within `max_body`
//! (gzip inflated within it too), decode NDJSON, JSON or CSV into the table's columns with the
//! `tenant`, `received-at` and `request-id` metadata filled by the server, and append to the
//! table's journal, fsynced before the answer (or queued, with `?wait=accepted`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write as _;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::{ArrayRef, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::DataType;
use governor::clock::{Clock, DefaultClock};
use serde_json::{Value, json};

use super::config::{Caller, Limit};
use super::{Shared, error, too_large};
use crate::format::ErrorPolicy;
use crate::format::messages::{MessageDecoder, MessageMeta};
use crate::sql::catalog::Table;
use crate::{Error, Result};

/// How long a stored response to an `Idempotency-Key` is replayed.
const IDEMPOTENCY_MS: i64 = 24 * 3600 * 1000;

/// Responses stored by `Idempotency-Key` (per tenant), kept in the journal directory across
/// restarts: a retried POST gets the first answer back instead of appending twice.
pub(crate) struct Idempotency {
    path: std::path::PathBuf,
    stored: Mutex<HashMap<String, (u16, Value, i64)>>,
    in_flight: Mutex<std::collections::HashSet<String>>,
}

impl Idempotency {
    /// Load what is still fresh from `<dir>/idempotency.jsonl`, and rewrite the file with it.
    pub(crate) fn open(dir: &std::path::Path) -> Result<Self> {
        let path = dir.join("idempotency.jsonl");
        let now = chrono::Utc::now().timestamp_millis();
        let mut stored = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                let Ok(v) = serde_json::from_str::<Value>(line) else {
                    continue; // a torn last line
                };
                let (Some(k), Some(status), Some(at)) =
                    (v["key"].as_str(), v["status"].as_u64(), v["at"].as_i64())
                else {
                    continue;
                };
                if now - at < IDEMPOTENCY_MS {
                    stored.insert(k.to_string(), (status as u16, v["body"].clone(), at));
                }
            }
        }
        let text: String = stored
            .iter()
            .map(|(k, (status, body, at))| {
                json!({"key": k, "status": status, "body": body, "at": at}).to_string() + "\n"
            })
            .collect();
        std::fs::write(&path, text).map_err(|source| Error::Io {
            context: format!("writing {}", path.display()),
            source,
        })?;
        Ok(Self {
            path,
            stored: Mutex::new(stored),
            in_flight: Mutex::default(),
        })
    }

    fn replay(&self, key: &str) -> Option<Response> {
        let stored = self.stored.lock().ok()?;
        let (status, body, at) = stored.get(key)?;
        if chrono::Utc::now().timestamp_millis() - at >= IDEMPOTENCY_MS {
            return None;
        }
        let mut r = (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
            axum::Json(body.clone()),
        )
            .into_response();
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        Some(r)
    }

    /// Keep an answer (fsynced before it is given).
    fn store(&self, key: &str, status: StatusCode, body: &Value) -> Result<()> {
        let at = chrono::Utc::now().timestamp_millis();
        let line = json!({"key": key, "status": status.as_u16(), "body": body, "at": at});
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all((line.to_string() + "\n").as_bytes())?;
                f.sync_data()?;
                Ok(f)
            })
            .map_err(|source| Error::Io {
                context: format!("appending to {}", self.path.display()),
                source,
            })?;
        let _ = f.flush();
        if let Ok(mut s) = self.stored.lock() {
            s.insert(key.to_string(), (status.as_u16(), body.clone(), at));
        }
        Ok(())
    }
}

/// A request holding an `Idempotency-Key`: released when dropped.
struct InFlight<'a>(&'a Idempotency, String);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut f) = self.0.in_flight.lock() {
            f.remove(&self.1);
        }
    }
}

/// Errors listed in a response.
const LISTED: usize = 20;

/// The metadata keys an http table may declare.
const METADATA: &[&str] = &["tenant", "received-at", "request-id"];

static REQUESTS: AtomicU64 = AtomicU64::new(0);

enum Body3 {
    Ndjson,
    Json,
    Csv,
}

/// Headers describing a bucket after a request: limit, remaining, seconds to full.
fn rate_headers(headers: &mut HeaderMap, limit: &Limit, remaining: u32) {
    let reset = (limit.burst - remaining.min(limit.burst)).div_ceil(limit.rate.max(1));
    for (name, v) in [
        ("x-ratelimit-limit", limit.burst),
        ("x-ratelimit-remaining", remaining),
        ("x-ratelimit-reset", reset),
    ] {
        headers.insert(name, HeaderValue::from(v));
    }
}

fn throttled(limit: &Limit, wait: std::time::Duration, what: &str) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u32;
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        format!("over the tenant's {what} rate; retry after {secs} s"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    rate_headers(r.headers_mut(), limit, 0);
    r
}

/// Whether a body read failed on the length limit (a streamed or inflated body too large).
fn over_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.to_string().contains("length limit exceeded") {
            return true;
        }
        cur = err.source();
    }
    false
}

pub(crate) async fn post_records(
    State(server): State<Shared>,
    Path(table_name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let settings = server.settings();
    let caller = match server.caller(&headers, query.get("access_token").map(String::as_str)) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let tenant = match &caller {
        Caller::Tenant(t) => t.clone(),
        // An admin key writes as the anonymous tenant (no tenant metadata).
        Caller::Admin => settings.anonymous.clone(),
    };
    tenant.stats.requests.fetch_add(1, Ordering::Relaxed);
    let fail = |status: StatusCode, r: Response| {
        if status == StatusCode::TOO_MANY_REQUESTS {
            tenant.stats.throttled.fetch_add(1, Ordering::Relaxed);
        } else if status.is_client_error() {
            tenant.stats.rejected_4xx.fetch_add(1, Ordering::Relaxed);
        }
        r
    };
    let name = table_name.to_lowercase();
    let table = match server.engine.table(&name) {
        Ok(t) if t.connector() == "http" => t,
        Ok(_) => {
            return fail(
                StatusCode::NOT_FOUND,
                error(
                    StatusCode::NOT_FOUND,
                    format!("table {table_name} is not an http table"),
                ),
            );
        }
        Err(_) => {
            return fail(
                StatusCode::NOT_FOUND,
                error(StatusCode::NOT_FOUND, format!("no table {table_name}")),
            );
        }
    };
    if settings.secured() && matches!(caller, Caller::Tenant(_)) && !tenant.may_write(&name) {
        return fail(
            StatusCode::FORBIDDEN,
            error(
                StatusCode::FORBIDDEN,
                format!("tenant {} may not write table {name}", tenant.id),
            ),
        );
    }
    // A retried request with an Idempotency-Key gets the stored answer.
    let idem_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| format!("{}\u{0}{name}\u{0}{k}", tenant.id));
    let _in_flight = match &idem_key {
        None => None,
        Some(k) => {
            if let Some(r) = server.idempotency.replay(k) {
                return r;
            }
            let fresh = server
                .idempotency
                .in_flight
                .lock()
                .map(|mut f| f.insert(k.clone()))
                .unwrap_or(false);
            if !fresh {
                return fail(
                    StatusCode::CONFLICT,
                    error(
                        StatusCode::CONFLICT,
                        "a request with this Idempotency-Key is in progress",
                    ),
                );
            }
            Some(InFlight(&server.idempotency, k.clone()))
        }
    };
    // The request bucket, before the body is read.
    let mut remaining = None;
    if let Some(limit) = &tenant.requests {
        match limit.bucket.check() {
            Ok(snap) => remaining = Some(snap.remaining_burst_capacity()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return fail(
                    StatusCode::TOO_MANY_REQUESTS,
                    throttled(limit, wait, "request"),
                );
            }
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_lowercase());
    let kind = match content_type.as_deref() {
        None | Some("application/x-ndjson" | "application/jsonl" | "application/ndjson") => {
            Body3::Ndjson
        }
        Some("application/json") => Body3::Json,
        Some("text/csv") => Body3::Csv,
        Some(other) => {
            return fail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "content type {other} is not supported: application/x-ndjson, \
                         application/json or text/csv"
                    ),
                ),
            );
        }
    };
    let bytes = match axum::body::to_bytes(body, settings.max_body).await {
        Ok(b) => b,
        Err(e) => {
            let status = if over_limit(&e) {
                return fail(StatusCode::PAYLOAD_TOO_LARGE, too_large(settings.max_body));
            } else {
                StatusCode::BAD_REQUEST
            };
            return fail(
                status,
                error(status, format!("could not read the body: {e}")),
            );
        }
    };
    let skip = match query.get("on_error").map(String::as_str) {
        None | Some("reject") => false,
        Some("skip") => true,
        Some(other) => {
            return fail(
                StatusCode::BAD_REQUEST,
                error(
                    StatusCode::BAD_REQUEST,
                    format!("on_error={other}: reject (the default) or skip"),
                ),
            );
        }
    };
    let wait_accepted = match query.get("wait").map(String::as_str) {
        None | Some("durable") => false,
        Some("accepted") => true,
        Some(other) => {
            return fail(
                StatusCode::BAD_REQUEST,
                error(
                    StatusCode::BAD_REQUEST,
                    format!("wait={other}: durable (the default) or accepted"),
                ),
            );
        }
    };
    let journal = match server.hub.journal(&table) {
        Ok(j) => j,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if journal.is_full() {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the journal of table {name} is over 'http.max-journal-size': the jobs reading it \
                 are behind"
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(5u32));
        return r;
    }
    let tenant_id = (!tenant.id.is_empty()).then(|| tenant.id.clone());
    let decoded =
        tokio::task::spawn_blocking(move || decode(&table, &bytes, kind, tenant_id, skip)).await;
    let (batch, bad) = match decoded {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            return fail(
                StatusCode::BAD_REQUEST,
                error(StatusCode::BAD_REQUEST, e.to_string()),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let accepted = batch.as_ref().map_or(0, |b| b.num_rows());
    let errors: Vec<Value> = bad.iter().take(LISTED).cloned().collect();
    if !bad.is_empty() && !skip {
        let body = json!({
            "error": format!("{} records are malformed; nothing was appended (?on_error=skip \
                              accepts the others)", bad.len()),
            "accepted": 0,
            "rejected": bad.len(),
            "errors": errors,
        });
        if let Some(k) = &idem_key
            && let Err(e) = server.idempotency.store(k, StatusCode::BAD_REQUEST, &body)
        {
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        let mut r = (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        if let (Some(limit), Some(rem)) = (&tenant.requests, remaining) {
            rate_headers(r.headers_mut(), limit, rem);
        }
        return fail(StatusCode::BAD_REQUEST, r);
    }
    // The record bucket, charged once the body is decoded.
    if let (Some(limit), Some(n)) = (&tenant.records, NonZeroU32::new(accepted as u32)) {
        match limit.bucket.check_n(n) {
            Ok(Ok(_)) => {}
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return fail(
                    StatusCode::TOO_MANY_REQUESTS,
                    throttled(limit, wait, "record"),
                );
            }
            Err(_) => {
                return fail(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "{accepted} records in one request can never pass the tenant's \
                             record burst ({}): send smaller bodies",
                            limit.burst
                        ),
                    ),
                );
            }
        }
    }
    let status = match batch {
        Some(batch) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if !journal.submit(batch, (!wait_accepted).then_some(tx)) {
                let mut r = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the journal of table {name} cannot keep up; retry later"),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1u32));
                return r;
            }
            if wait_accepted {
                StatusCode::ACCEPTED
            } else {
                match rx.await {
                    Ok(Ok(_)) => StatusCode::OK,
                    Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    Err(_) => {
                        return error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "the journal writer stopped",
                        );
                    }
                }
            }
        }
        None if wait_accepted => StatusCode::ACCEPTED,
        None => StatusCode::OK,
    };
    tenant
        .stats
        .records
        .fetch_add(accepted as u64, Ordering::Relaxed);
    let mut body = json!({ "accepted": accepted, "rejected": bad.len() });
    if !bad.is_empty() {
        body["errors"] = Value::Array(errors);
    }
    if let Some(k) = &idem_key
        && let Err(e) = server.idempotency.store(k, status, &body)
    {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let mut r = (status, axum::Json(body)).into_response();
    if let (Some(limit), Some(rem)) = (&tenant.requests, remaining) {
        rate_headers(r.headers_mut(), limit, rem);
    }
    r
}

/// The metadata of one request's records.
struct Meta {
    tenant: Option<String>,
    received_ms: i64,
    request_id: String,
    lines: Vec<usize>,
}

impl MessageMeta for Meta {
    fn column(&self, key: &str) -> Result<ArrayRef> {
        let n = self.lines.len();
        Ok(match key {
            "tenant" => Arc::new(StringArray::from(vec![self.tenant.clone(); n])),
            "received-at" => Arc::new(TimestampMillisecondArray::from(vec![self.received_ms; n])),
            "request-id" => crate::format::messages::repeat_str(&self.request_id, n),
            other => return crate::plan_err!("unknown metadata key '{other}'"),
        })
    }

    fn location(&self, i: usize) -> String {
        self.lines.get(i).copied().unwrap_or_default().to_string()
    }
}

/// The column an error message is about (Arrow's and weir's messages quote it).
fn column_of(message: &str) -> Option<String> {
    for marker in ["field '", "field `", "column '", "field \""] {
        if let Some(at) = message.find(marker) {
            let rest = &message[at + marker.len()..];
            let close = marker.chars().last()?;
            if let Some(end) = rest.find(close) {
                return Some(rest[..end].to_string());
            }
        }
    }
    None
}

/// The request's records as one batch of the table's physical columns, and the bad lines.
fn decode(
    table: &Table,
    bytes: &[u8],
    kind: Body3,
    tenant: Option<String>,
    skip: bool,
) -> Result<(
    Option<datafusion::arrow::record_batch::RecordBatch>,
    Vec<Value>,
)> {
    let mut bad: Vec<Value> = vec![];
    let mut payloads: Vec<(usize, Cow<'_, [u8]>)> = vec![];
    match kind {
        Body3::Ndjson => {
            for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                payloads.push((i + 1, Cow::Borrowed(line)));
            }
        }
        Body3::Json => {
            let v: Value = serde_json::from_slice(bytes)
                .map_err(|e| Error::Plan(format!("the body is not JSON: {e}")))?;
            match v {
                Value::Array(items) => {
                    for (i, item) in items.into_iter().enumerate() {
                        payloads.push((i + 1, Cow::Owned(item.to_string().into_bytes())));
                    }
                }
                obj @ Value::Object(_) => {
                    payloads.push((1, Cow::Owned(obj.to_string().into_bytes())))
                }
                _ => return crate::plan_err!("a JSON body is an object or an array of objects"),
            }
        }
        Body3::Csv => {
            let (payload_schema, _) = table.payload_schema();
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(true)
                .from_reader(bytes);
            let header: Vec<String> = reader
                .headers()
                .map_err(|e| Error::Plan(format!("the CSV body has no header row: {e}")))?
                .iter()
                .map(|h| h.trim().to_lowercase())
                .collect();
            for (i, rec) in reader.records().enumerate() {
                let line = rec
                    .as_ref()
                    .ok()
                    .and_then(|r| r.position())
                    .map_or(i + 2, |p| p.line() as usize);
                let rec = match rec {
                    Ok(r) => r,
                    Err(e) => {
                        bad.push(json!({ "line": line, "error": e.to_string() }));
                        continue;
                    }
                };
                if rec.len() != header.len() {
                    bad.push(json!({ "line": line, "error": format!(
                        "{} fields where the header has {}", rec.len(), header.len()) }));
                    continue;
                }
                let mut obj = serde_json::Map::new();
                for (name, text) in header.iter().zip(rec.iter()) {
                    let ty = payload_schema
                        .field_with_name(name)
                        .map(|f| f.data_type().clone())
                        .unwrap_or(DataType::Utf8);
                    obj.insert(name.clone(), csv_value(text, &ty));
                }
                payloads.push((
                    line,
                    Cow::Owned(Value::Object(obj).to_string().into_bytes()),
                ));
            }
        }
    }
    let collected = Arc::new(Mutex::new(vec![]));
    let mut policy = ErrorPolicy::lenient(Default::default()).collecting(collected.clone());
    if skip {
        policy.dead_letter = table
            .option("dead-letter.path")
            .map(std::path::PathBuf::from);
    }
    let mut decoder = MessageDecoder::new(table, policy, METADATA)?;
    let n = REQUESTS.fetch_add(1, Ordering::Relaxed);
    let now = chrono::Utc::now();
    let meta = Meta {
        tenant,
        received_ms: now.timestamp_millis(),
        request_id: format!("{:x}-{n:x}", now.timestamp_micros()),
        lines: payloads.iter().map(|(l, _)| *l).collect(),
    };
    let refs: Vec<&[u8]> = payloads.iter().map(|(_, p)| p.as_ref()).collect();
    let batch = decoder.decode(&refs, &meta)?;
    let collected = collected.lock().map(|c| c.clone()).unwrap_or_default();
    for (location, message) in collected {
        let line = location.parse::<usize>().unwrap_or_default();
        let mut e = json!({ "line": line, "error": message });
        if let Some(c) = column_of(&message) {
            e["column"] = Value::String(c);
        }
        bad.push(e);
    }
    bad.sort_by_key(|e| e["line"].as_u64().unwrap_or_default());
    Ok((batch, bad))
}

/// A CSV field as the JSON value the decoder expects for a column of type `ty`.
fn csv_value(text: &str, ty: &DataType) -> Value {
    if text.is_empty() && !matches!(ty, DataType::Utf8 | DataType::LargeUtf8) {
        return Value::Null;
    }
    let numeric = ty.is_numeric();
    if numeric && let Ok(v) = serde_json::from_str::<serde_json::Number>(text.trim()) {
        return Value::Number(v);
    }
    if matches!(ty, DataType::Boolean) {
        match text.trim().to_lowercase().as_str() {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            _ => {}
        }
    }
    Value::String(text.to_string())
}
