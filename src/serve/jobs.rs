//! Jobs over HTTP: `POST /v1/jobs` (a job file's SQL), `GET /v1/jobs[/{id}]`,
//! `DELETE /v1/jobs/{id}` (stop with a final checkpoint; `?drain=true`, `?cancel=true`), the
//! submitted files kept for the next start, and `/metrics`.
//!
//! A submission is checked whole before anything starts: its statements run against a copy of
//! the catalog (DDL applied, INSERTs planned), so a syntax or planning error anywhere answers
//! 400 with its line and column and starts nothing. DDL is server-wide; a table created again
//! with the same definition is a no-op, with another one a 409. SETs apply to the file's own
//! jobs only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Server, Shared, error};
use crate::engine::{SelectOutput, StatementOutput};
use crate::runtime::JobMetrics;
use crate::sql::{Located, Statement, parse_sql};
use crate::{Error, Result};

/// A refused submission: its status and JSON body (and the error, when there is one).
pub(crate) struct Refused(StatusCode, Value, Option<Error>);

impl Refused {
    fn new(status: StatusCode, e: Error) -> Self {
        let message = e.to_string();
        let mut body = json!({ "error": message });
        if let Some((line, column)) = position(&message) {
            body["line"] = json!(line);
            body["column"] = json!(column);
        }
        Self(status, body, Some(e))
    }

    /// As a weir error (for job files given on the command line).
    pub(crate) fn into_error(self) -> Error {
        self.2.unwrap_or_else(|| {
            Error::Plan(
                self.1["error"]
                    .as_str()
                    .unwrap_or("the job file was refused")
                    .to_string(),
            )
        })
    }
}

/// "Line: N, Column: M" in a message.
fn position(message: &str) -> Option<(u64, u64)> {
    let at = message.rfind("Line: ")?;
    let rest = &message[at + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, column.parse().ok()?))
}

struct Entry {
    id: String,
    statement: String,
    /// The submitted file it came from (removed once all its jobs were deleted).
    file: Option<PathBuf>,
    metrics: Arc<JobMetrics>,
    stop: watch::Sender<bool>,
    cancel: watch::Sender<bool>,
    drain: watch::Sender<bool>,
    /// "running", then how it ended.
    status: watch::Sender<String>,
    deleted: std::sync::atomic::AtomicBool,
    /// Events/s over the last second (f64 bits), and the sample it came from.
    rate: AtomicU64,
    last: Mutex<(Instant, u64)>,
}

impl Entry {
    fn running(&self) -> bool {
        *self.status.borrow() == "running"
    }

    fn json(&self) -> Value {
        let m = &self.metrics;
        let wm = m.watermark.load(Ordering::Relaxed);
        let now = chrono::Utc::now().timestamp_millis();
        let (watermark, lag) = if wm == i64::MIN {
            (Value::Null, Value::Null)
        } else {
            (
                Value::String(crate::runtime::metrics::format_time(wm)),
                json!(now - wm),
            )
        };
        json!({
            "id": self.id,
            "statement": self.statement,
            "status": *self.status.borrow(),
            "events_in": JobMetrics::get(&m.events_in),
            "events_before": JobMetrics::get(&m.events_before),
            "events_out": JobMetrics::get(&m.rows_out),
            "events_per_s": f64::from_bits(self.rate.load(Ordering::Relaxed)).round(),
            "watermark": watermark,
            "watermark_lag_ms": lag,
            "late_rows": JobMetrics::get(&m.late_rows),
            "malformed": JobMetrics::get(&m.malformed),
            "checkpoint": {
                "epoch": JobMetrics::get(&m.checkpoint_epoch),
                "duration_ms": JobMetrics::get(&m.checkpoint_ms),
                "bytes": JobMetrics::get(&m.checkpoint_bytes),
                "failures": JobMetrics::get(&m.checkpoint_failures),
            },
            "state_bytes": JobMetrics::get(&m.state_bytes),
        })
    }
}

/// The server's jobs.
pub(crate) struct Jobs {
    dir: PathBuf,
    entries: Mutex<BTreeMap<String, Arc<Entry>>>,
    /// One submission at a time (its SETs are swapped in and out).
    submitting: tokio::sync::Mutex<()>,
    next_file: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `path` lies under one of `dirs` (lexically; `..` is refused).
fn under(path: &str, dirs: &[PathBuf]) -> bool {
    if crate::connectors::object_store::is_object_url(path) {
        return true;
    }
    let p = FsPath::new(path.strip_prefix("file://").unwrap_or(path));
    if p.components().any(|c| matches!(c, Component::ParentDir)) || !p.is_absolute() {
        return false;
    }
    dirs.iter().any(|d| p.starts_with(d))
}

impl Jobs {
    pub(crate) fn new(dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
        let next = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .strip_suffix(".sql")
                            .and_then(|n| n.parse::<u64>().ok())
                    })
                    .max()
                    .map_or(0, |n| n + 1)
            })
            .unwrap_or(0);
        Ok(Self {
            dir,
            entries: Mutex::default(),
            submitting: tokio::sync::Mutex::new(()),
            next_file: AtomicU64::new(next),
        })
    }

    /// Start a job file's jobs. `keep`: a submission over HTTP, checked against `data_dirs`
    /// and kept in the jobs directory (`Some(None)`: a new file; `Some(Some(path))`: resumed
    /// from that file). Returns the new jobs' ids.
    pub(crate) async fn start(
        &self,
        server: &Server,
        sql: &str,
        keep: Option<Option<PathBuf>>,
    ) -> std::result::Result<Vec<String>, Refused> {
        let _one = self.submitting.lock().await;
        let bad = |e: Error| Refused::new(StatusCode::BAD_REQUEST, e);
        let stmts = parse_sql(sql).map_err(bad)?;
        if keep.is_some() {
            check_paths(&stmts, &server.settings().data_dirs).map_err(bad)?;
        }
        let engine = &server.engine;
        let catalog = engine.catalog().map_err(bad)?;
        // Statements to skip: tables that exist with the same definition.
        let mut skip = vec![false; stmts.len()];
        let scratch = engine.scratch().map_err(bad)?;
        for (i, stmt) in stmts.iter().enumerate() {
            match &stmt.statement {
                Statement::CreateTable(def) => {
                    if let Ok(existing) = catalog.table(&def.name) {
                        let mut a = existing.def.clone();
                        let mut b = def.clone();
                        a.if_not_exists = false;
                        b.if_not_exists = false;
                        if a == b || def.if_not_exists {
                            skip[i] = true;
                            continue;
                        }
                        return Err(Refused(
                            StatusCode::CONFLICT,
                            json!({ "error": format!(
                                "table {} exists with another definition{}",
                                def.name,
                                stmt.position()
                            ), "line": stmt.line, "column": stmt.column }),
                            None,
                        ));
                    }
                    scratch
                        .run_located(stmt, SelectOutput::Discard)
                        .await
                        .map_err(bad)?;
                }
                Statement::Query(_) => {
                    return Err(bad(Error::Plan(format!(
                        "a submitted job writes with INSERT INTO: a bare SELECT has nowhere to \
                         go (insert into an http table to serve its rows){}",
                        stmt.position()
                    ))));
                }
                Statement::Insert { .. } => {
                    for s in std::iter::once(stmt).chain(&stmt.set) {
                        let mut one = s.clone();
                        one.set.clear();
                        scratch
                            .plan(&one)
                            .await
                            .map_err(|e| bad(crate::engine::located_error(e, &one)))?;
                    }
                }
                _ => {
                    scratch
                        .run_located(stmt, SelectOutput::Discard)
                        .await
                        .map_err(bad)?;
                }
            }
        }
        // Now for real; the file's SETs apply to its own jobs only.
        let saved = engine.settings().map_err(bad)?;
        let mut started: Vec<crate::engine::Job> = vec![];
        let mut failure = None;
        for (stmt, skip) in stmts.iter().zip(skip) {
            if skip {
                continue;
            }
            match engine.run_located(stmt, SelectOutput::Discard).await {
                Ok(StatementOutput::Job(job)) => started.push(job),
                Ok(StatementOutput::Notice(n)) => eprintln!("weir serve: {n}"),
                Ok(_) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let _ = engine.restore_settings(saved);
        if let Some(e) = failure {
            for j in &started {
                j.cancel();
            }
            for j in started {
                let id = j.identity.clone();
                let _ = j.wait().await;
                let _ = engine.release_identity(&id);
            }
            return Err(bad(e));
        }
        let file = match keep {
            Some(Some(path)) => Some(path),
            Some(None) if !started.is_empty() => {
                let n = self.next_file.fetch_add(1, Ordering::Relaxed);
                let path = self.dir.join(format!("{n:06}.sql"));
                std::fs::write(&path, sql).map_err(|source| {
                    bad(Error::Io {
                        context: format!("keeping the job file in {}", path.display()),
                        source,
                    })
                })?;
                Some(path)
            }
            _ => None,
        };
        let mut ids = vec![];
        for job in started {
            ids.push(job.identity.clone());
            self.add(server, job, file.clone());
        }
        Ok(ids)
    }

    fn add(&self, server: &Server, job: crate::engine::Job, file: Option<PathBuf>) {
        let (status, _) = watch::channel("running".to_string());
        let entry = Arc::new(Entry {
            id: job.identity.clone(),
            statement: job.name.clone(),
            file,
            metrics: job.metrics().clone(),
            stop: job.stopper(),
            cancel: job.canceller(),
            drain: job.drainer(),
            status,
            deleted: Default::default(),
            rate: AtomicU64::new(0),
            last: Mutex::new((Instant::now(), 0)),
        });
        lock(&self.entries).insert(entry.id.clone(), entry.clone());
        let engine = server.engine.clone();
        tokio::spawn(async move {
            let status = match job.wait().await {
                Ok(summary) => {
                    eprintln!("weir serve: job {}: {summary}", entry.id);
                    match summary.outcome {
                        crate::runtime::Outcome::Finished => "finished".to_string(),
                        crate::runtime::Outcome::Stopped => "stopped".to_string(),
                    }
                }
                Err(e) => {
                    eprintln!("weir serve: job {} failed: {e}", entry.id);
                    format!("failed: {e}")
                }
            };
            entry.status.send_replace(status);
            let _ = engine.release_identity(&entry.id);
        });
    }

    /// Start the jobs submitted in earlier runs (kept files), in order.
    pub(crate) async fn resume(&self, server: &Server) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "sql"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        for path in files {
            let sql = match std::fs::read_to_string(&path) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("weir serve: cannot read {}: {e}", path.display());
                    continue;
                }
            };
            match self.start(server, &sql, Some(Some(path.clone()))).await {
                Ok(ids) => eprintln!(
                    "weir serve: resumed {} ({})",
                    path.display(),
                    ids.join(", ")
                ),
                Err(Refused(_, body, _)) => eprintln!(
                    "weir serve: could not resume {}: {}",
                    path.display(),
                    body["error"]
                ),
            }
        }
    }

    /// Stop every running job with a final checkpoint and wait (a job that takes too long is
    /// cancelled).
    pub(crate) async fn stop_all(&self) {
        let entries: Vec<_> = lock(&self.entries).values().cloned().collect();
        for e in &entries {
            let _ = e.stop.send(true);
        }
        for e in &entries {
            let mut rx = e.status.subscribe();
            let ended = rx.wait_for(|s| s != "running");
            if tokio::time::timeout(Duration::from_secs(60), ended)
                .await
                .is_err()
            {
                let _ = e.cancel.send(true);
            }
        }
    }
}

/// Filesystem paths in submitted SQL must lie under `data_dirs`.
fn check_paths(stmts: &[Located], dirs: &[PathBuf]) -> Result<()> {
    for stmt in stmts {
        let (what, paths): (String, Vec<&str>) = match &stmt.statement {
            Statement::CreateTable(def) => (
                format!("table {}", def.name),
                ["path", "dead-letter.path"]
                    .iter()
                    .filter_map(|k| def.options.get(*k).map(String::as_str))
                    .collect(),
            ),
            Statement::Set {
                key: Some(k),
                value,
            } if k.contains("dir") || k.contains("path") => {
                (format!("SET '{k}'"), vec![value.as_str()])
            }
            _ => continue,
        };
        for p in paths {
            if !under(p, dirs) {
                return Err(Error::Plan(format!(
                    "{what}: path '{p}' is not under the server's data_dirs ({}){}",
                    if dirs.is_empty() {
                        "none configured".to_string()
                    } else {
                        dirs.iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    stmt.position()
                )));
            }
        }
    }
    Ok(())
}

#[allow(clippy::result_large_err)]
fn admin(server: &Server, headers: &HeaderMap) -> std::result::Result<(), Response> {
    let caller = server.caller(headers, None)?;
    if server.is_admin(&caller) {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            "the jobs API needs an admin key (admin_keys_sha256)",
        ))
    }
}

pub(crate) async fn submit(
    State(server): State<Shared>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(r) = admin(&server, &headers) {
        return r;
    }
    // Planning futures are not Send: run the submission on this worker thread, blocking it.
    let started = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(server.jobs.start(&server, &body, Some(None)))
    });
    match started {
        Ok(ids) => (StatusCode::CREATED, axum::Json(json!({ "jobs": ids }))).into_response(),
        Err(Refused(status, body, _)) => (status, axum::Json(body)).into_response(),
    }
}

pub(crate) async fn list(State(server): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&server, &headers) {
        return r;
    }
    let jobs: Vec<Value> = lock(&server.jobs.entries)
        .values()
        .map(|e| e.json())
        .collect();
    axum::Json(json!({ "jobs": jobs })).into_response()
}

#[allow(clippy::result_large_err)]
fn entry(server: &Server, id: &str) -> std::result::Result<Arc<Entry>, Response> {
    lock(&server.jobs.entries)
        .get(id)
        .cloned()
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no job {id}")))
}

pub(crate) async fn show(
    State(server): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admin(&server, &headers) {
        return r;
    }
    match entry(&server, &id) {
        Ok(e) => axum::Json(e.json()).into_response(),
        Err(r) => r,
    }
}

pub(crate) async fn delete(
    State(server): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admin(&server, &headers) {
        return r;
    }
    let e = match entry(&server, &id) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let flag = |k: &str| query.get(k).is_some_and(|v| v == "true" || v.is_empty());
    let action = if flag("cancel") {
        let _ = e.cancel.send(true);
        "cancel"
    } else if flag("drain") {
        let _ = e.drain.send(true);
        "drain"
    } else {
        let _ = e.stop.send(true);
        "stop"
    };
    e.deleted.store(true, Ordering::SeqCst);
    let mut rx = e.status.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|s| s != "running")).await;
    // A file whose jobs were all deleted is not resumed on the next start.
    if let Some(file) = &e.file {
        let all_deleted = lock(&server.jobs.entries)
            .values()
            .filter(|o| o.file.as_ref() == Some(file))
            .all(|o| o.deleted.load(Ordering::SeqCst));
        if all_deleted {
            let _ = std::fs::remove_file(file);
        }
    }
    let mut body = e.json();
    body["action"] = json!(action);
    axum::Json(body).into_response()
}

/// Every second: each job's events/s.
pub(crate) async fn sample_rates(server: Shared) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let entries: Vec<_> = lock(&server.jobs.entries).values().cloned().collect();
        for e in entries {
            let now = Instant::now();
            let events = JobMetrics::get(&e.metrics.events_in);
            let mut last = lock(&e.last);
            let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
            let rate = if e.running() {
                events.saturating_sub(last.1) as f64 / secs
            } else {
                0.0
            };
            e.rate.store(rate.to_bits(), Ordering::Relaxed);
            *last = (now, events);
        }
    }
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(server): State<Shared>) -> Response {
    let mut out = String::new();
    let entries: Vec<_> = lock(&server.jobs.entries).values().cloned().collect();
    let now = chrono::Utc::now().timestamp_millis();
    type Get = fn(&JobMetrics, i64) -> Option<f64>;
    let job_series: [(&str, &str, &str, Get); 9] = [
        (
            "weir_job_events_in_total",
            "counter",
            "Rows read from sources",
            |m, _| Some(JobMetrics::get(&m.events_in) as f64),
        ),
        (
            "weir_job_events_out_total",
            "counter",
            "Rows written out",
            |m, _| Some(JobMetrics::get(&m.rows_out) as f64),
        ),
        (
            "weir_job_late_rows_total",
            "counter",
            "Rows dropped or routed as late",
            |m, _| Some(JobMetrics::get(&m.late_rows) as f64),
        ),
        (
            "weir_job_malformed_total",
            "counter",
            "Malformed records skipped",
            |m, _| Some(JobMetrics::get(&m.malformed) as f64),
        ),
        (
            "weir_job_watermark_lag_seconds",
            "gauge",
            "Wall clock minus the watermark",
            |m, now| {
                let wm = m.watermark.load(Ordering::Relaxed);
                (wm != i64::MIN).then(|| (now - wm) as f64 / 1000.0)
            },
        ),
        (
            "weir_job_checkpoint_epoch",
            "gauge",
            "The last completed checkpoint",
            |m, _| Some(JobMetrics::get(&m.checkpoint_epoch) as f64),
        ),
        (
            "weir_job_checkpoint_duration_seconds",
            "gauge",
            "The last checkpoint's duration",
            |m, _| Some(JobMetrics::get(&m.checkpoint_ms) as f64 / 1000.0),
        ),
        (
            "weir_job_checkpoint_bytes",
            "gauge",
            "The last checkpoint's size",
            |m, _| Some(JobMetrics::get(&m.checkpoint_bytes) as f64),
        ),
        (
            "weir_job_state_bytes",
            "gauge",
            "Bytes of operator state",
            |m, _| Some(JobMetrics::get(&m.state_bytes) as f64),
        ),
    ];
    for (name, kind, help, get) in job_series {
        let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} {kind}");
        for e in &entries {
            if let Some(v) = get(&e.metrics, now) {
                let _ = writeln!(out, "{name}{{job=\"{}\"}} {v}", label(&e.id));
            }
        }
    }
    let stats: Vec<_> = lock(&server.stats)
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    type Stat = fn(&super::config::TenantStats) -> u64;
    let tenant_series: [(&str, &str, Stat); 4] = [
        ("weir_tenant_requests_total", "Ingest requests", |s| {
            s.requests.load(Ordering::Relaxed)
        }),
        ("weir_tenant_records_total", "Records accepted", |s| {
            s.records.load(Ordering::Relaxed)
        }),
        (
            "weir_tenant_rejected_total",
            "Requests answered 4xx other than 429",
            |s| s.rejected_4xx.load(Ordering::Relaxed),
        ),
        (
            "weir_tenant_throttled_total",
            "Requests answered 429",
            |s| s.throttled.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, get) in tenant_series {
        let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} counter");
        for (id, s) in &stats {
            let id = if id.is_empty() { "anonymous" } else { id };
            let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {}", label(id), get(s));
        }
    }
    let journals = server.hub.journals();
    let _ = writeln!(
        out,
        "# HELP weir_journal_bytes Bytes of an http table's ingest journal on disk.\n# TYPE weir_journal_bytes gauge"
    );
    for j in &journals {
        let _ = writeln!(
            out,
            "weir_journal_bytes{{table=\"{}\"}} {}",
            label(j.table()),
            j.bytes()
        );
    }
    let _ = writeln!(
        out,
        "# HELP weir_journal_offset The offset after an http table's last appended record.\n# TYPE weir_journal_offset gauge"
    );
    for j in &journals {
        let _ = writeln!(
            out,
            "weir_journal_offset{{table=\"{}\"}} {}",
            label(j.table()),
            j.end_offset()
        );
    }
    let _ = writeln!(
        out,
        "# HELP weir_journal_records_total Records appended to an http table's journal by this run.\n# TYPE weir_journal_records_total counter"
    );
    for j in &journals {
        let _ = writeln!(
            out,
            "weir_journal_records_total{{table=\"{}\"}} {}",
            label(j.table()),
            j.appended.load(Ordering::Relaxed)
        );
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response()
}
