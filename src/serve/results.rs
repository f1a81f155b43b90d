//! Results of http sink tables: `GET /v1/tables/{table}` (the latest row per key, or the
//! retained tail; `?key=` for one row) and `GET /v1/tables/{table}/subscribe`, server-sent
//! events whose ids (`epoch:seq`) let a reconnecting client resume without gap or duplicate.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use super::config::Caller;
use super::{Shared, error};
use crate::connectors::http::{Served, ServedEvent};

/// Events queued per subscriber connection (beyond the shared broadcast buffer).
const QUEUED: usize = 16;

/// The served state of `name`, if the caller may read it.
#[allow(clippy::result_large_err)]
fn readable(
    server: &Shared,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    name: &str,
) -> Result<Arc<Served>, Response> {
    let caller = server.caller(headers, query.get("access_token").map(String::as_str))?;
    let name = name.to_lowercase();
    let table = match server.engine.table(&name) {
        Ok(t) if t.connector() == "http" => t,
        _ => {
            return Err(error(
                StatusCode::NOT_FOUND,
                format!("no http table {name}"),
            ));
        }
    };
    if let Caller::Tenant(t) = &caller
        && server.settings().secured()
        && !t.may_read(&name)
    {
        return Err(error(
            StatusCode::FORBIDDEN,
            format!("tenant {} may not read table {name}", t.id),
        ));
    }
    server
        .hub
        .served(&table, &table.schema)
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `GET /v1/tables`: the http tables a job writes, that the caller may read, with their
/// columns and key.
pub(crate) async fn list_tables(
    State(server): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let caller = match server.caller(&headers, query.get("access_token").map(String::as_str)) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let secured = server.settings().secured();
    let catalog = match server.engine.catalog() {
        Ok(c) => c,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut tables = vec![];
    for (name, t) in &catalog.tables {
        if t.connector() != "http" {
            continue;
        }
        if let Caller::Tenant(tenant) = &caller
            && secured
            && !tenant.may_read(name)
        {
            continue;
        }
        if let Some(s) = server.hub.served_table(name) {
            tables.push(serde_json::json!({
                "name": name,
                "columns": s.columns(),
                "key": s.key_columns(),
            }));
        }
    }
    axum::Json(serde_json::json!({ "tables": tables })).into_response()
}

pub(crate) async fn get_table(
    State(server): State<Shared>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let served = match readable(&server, &headers, &query, &name) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let keys = served.key_columns();
    let wanted: Option<Vec<String>> = if let Some(k) = query.get("key") {
        if keys.len() == 1 {
            Some(vec![k.clone()])
        } else {
            // One value per key column, comma-separated.
            Some(k.split(',').map(str::to_string).collect())
        }
    } else if !keys.is_empty() && keys.iter().all(|k| query.contains_key(k)) {
        Some(keys.iter().map(|k| query[k].clone()).collect())
    } else {
        None
    };
    if let Some(key) = wanted {
        if keys.is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                format!("table {name} has no PRIMARY KEY to look rows up by"),
            );
        }
        if key.len() != keys.len() {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the key of {name} is ({})", keys.join(", ")),
            );
        }
        return match served.lookup(&key) {
            Ok(Some(row)) => axum::Json(row).into_response(),
            Ok(None) => error(
                StatusCode::NOT_FOUND,
                format!("no row with key {}", key.join(",")),
            ),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    }
    match served.snapshot() {
        Ok(s) => axum::Json(Value::Array(s.rows)).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn rows_event(epoch: u64, seq: u64, rows: &[Value]) -> Event {
    named_rows("rows", epoch, seq, rows)
}

fn named_rows(name: &str, epoch: u64, seq: u64, rows: &[Value]) -> Event {
    Event::default()
        .event(name)
        .id(format!("{epoch}:{seq}"))
        .data(Value::Array(rows.to_vec()).to_string())
}

pub(crate) async fn subscribe(
    State(server): State<Shared>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let served = match readable(&server, &headers, &query, &name) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query.get("last_event_id").cloned());
    // Subscribe before the snapshot, so that nothing falls between the two.
    let rx = served.subscribe();
    let (tx, out) = mpsc::channel::<Event>(QUEUED);
    tokio::spawn(feed(served, rx, tx, last_id));
    let stream = futures::stream::unfold(out, |mut out| async move {
        out.recv().await.map(|e| (Ok::<_, Infallible>(e), out))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// One subscriber: the start (a resumed tail, or a reset and snapshot), then every event. A
/// subscriber that falls behind the broadcast buffer gets `lagged` and a fresh snapshot.
async fn feed(
    served: Arc<Served>,
    mut rx: broadcast::Receiver<ServedEvent>,
    tx: mpsc::Sender<Event>,
    last_id: Option<String>,
) {
    let epoch = served.epoch();
    let resumed = last_id.as_deref().and_then(|id| {
        let (e, s) = id.split_once(':')?;
        let (e, s) = (e.parse::<u64>().ok()?, s.parse::<u64>().ok()?);
        if e != epoch {
            return None;
        }
        served.since(s).ok().flatten()
    });
    let mut sent = match resumed {
        Some((seq, rows)) => {
            if !rows.is_empty() && tx.send(rows_event(epoch, seq, &rows)).await.is_err() {
                return;
            }
            seq
        }
        None => {
            if last_id.is_some()
                && tx
                    .send(Event::default().event("reset").data("{}"))
                    .await
                    .is_err()
            {
                return;
            }
            match snapshot(&served, &tx).await {
                Some(seq) => seq,
                None => return,
            }
        }
    };
    loop {
        match rx.recv().await {
            Ok(ServedEvent::Rows(first, rows)) => {
                let last = first + rows.len() as u64 - 1;
                if last <= sent {
                    continue;
                }
                let skip = sent.saturating_sub(first - 1) as usize;
                if tx
                    .send(rows_event(epoch, last, &rows[skip..]))
                    .await
                    .is_err()
                {
                    return;
                }
                sent = last;
            }
            Ok(ServedEvent::Watermark(wm)) => {
                if tx.send(watermark_event(wm)).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let lagged = Event::default()
                    .event("lagged")
                    .data(format!("{{\"missed_events\": {n}}}"));
                if tx.send(lagged).await.is_err() {
                    return;
                }
                match snapshot(&served, &tx).await {
                    Some(seq) => sent = seq,
                    None => return,
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn watermark_event(wm: i64) -> Event {
    Event::default().event("watermark").data(
        serde_json::json!({ "watermark": crate::runtime::metrics::format_time(wm) }).to_string(),
    )
}

/// Send the table's current contents (and watermark); the sequence number they cover (None:
/// gone).
async fn snapshot(served: &Served, tx: &mpsc::Sender<Event>) -> Option<u64> {
    let snap = served.snapshot().ok()?;
    let ev = named_rows("snapshot", served.epoch(), snap.seq, &snap.rows);
    tx.send(ev).await.ok()?;
    if let Some(wm) = served.watermark() {
        tx.send(watermark_event(wm)).await.ok()?;
    }
    Some(snap.seq)
}
