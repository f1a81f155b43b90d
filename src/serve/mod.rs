//! `weir serve`: one process that ingests over HTTP, runs jobs, and serves their results.
//!
//! The server is axum on the engine's tokio runtime. It owns:
//! - the listener and its security rules (loopback only without tenants; the first stderr line
//!   is always `listening on http://HOST:PORT`);
//! - `serve.toml` ([`config`]), reloaded on SIGHUP without dropping connections;
//! - ingest into http tables ([`ingest`]) through their fsynced journals
//!   (`connectors::http`);
//! - the jobs API and the submitted job files kept for the next start ([`jobs`]);
//! - results: `GET` and server-sent events of http sink tables ([`results`]);
//! - `/metrics`, `/healthz`, `/readyz` and the live page ([`page`]).
//!
//! On SIGINT/SIGTERM every job stops with a final checkpoint (when it checkpoints) and its
//! sinks are flushed; submitted jobs still running are resumed on the next start.
//!
//! With `tls_cert` and `tls_key` it serves HTTPS (rustls, through axum-server), and SIGHUP
//! reloads the certificate too.

pub(crate) mod config;
mod ingest;
mod jobs;
mod page;
mod results;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::connectors::http::HttpHub;
use crate::{Engine, Error, Result};
use config::{Caller, Settings, TenantStats};

/// How `weir serve` was started.
pub struct ServeOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// `serve.toml`.
    pub config: Option<PathBuf>,
    /// Job files run at start (not kept: they are given again on the next start).
    pub jobs: Vec<PathBuf>,
    /// Instances of each keyed operator (default: the number of cores).
    pub parallelism: Option<usize>,
}

/// The state every handler shares.
pub(crate) struct Server {
    engine: Engine,
    hub: Arc<HttpHub>,
    settings: RwLock<Arc<Settings>>,
    config_path: Option<PathBuf>,
    stats: Mutex<HashMap<String, Arc<TenantStats>>>,
    jobs: jobs::Jobs,
    idempotency: ingest::Idempotency,
    ready: AtomicBool,
    /// With TLS: the certificate, reloaded on SIGHUP.
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
}

type Shared = Arc<Server>;

/// A JSON error response.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

impl Server {
    fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Who is calling: from `Authorization: Bearer`, or `?access_token=` (browsers'
    /// EventSource cannot send headers), or the live page's cookie. A 401 when the key is
    /// missing or unknown.
    #[allow(clippy::result_large_err)]
    fn caller(&self, headers: &HeaderMap, query_token: Option<&str>) -> Result<Caller, Response> {
        let settings = self.settings();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix("weir_key="))
            .next();
        let key = bearer.or(query_token).or(cookie);
        match settings.caller(key) {
            Some(c) => Ok(c),
            None => {
                let mut r = error(
                    StatusCode::UNAUTHORIZED,
                    if key.is_some() {
                        "unknown key"
                    } else {
                        "a key is required: Authorization: Bearer <key>"
                    },
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"weir\""),
                );
                Err(r)
            }
        }
    }

    /// Whether `caller` may use the jobs API and the SQL box.
    fn is_admin(&self, caller: &Caller) -> bool {
        matches!(caller, Caller::Admin) || !self.settings().secured()
    }
}

/// Run `weir serve` until SIGINT/SIGTERM.
pub async fn serve(engine: Engine, opts: ServeOptions) -> Result<()> {
    let stats = Mutex::default();
    let settings = Settings::load(opts.config.as_deref(), &stats)?;
    let ip = opts.listen.ip();
    if !settings.secured() && !ip.is_loopback() {
        return Err(Error::Plan(format!(
            "refusing to listen on {ip} without tenants: binding to an address other than \
             loopback needs [[tenant]] entries with keys_sha256 in serve.toml (--config)"
        )));
    }
    let listener = std::net::TcpListener::bind(opts.listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| Error::Io {
            context: format!("listening on {}", opts.listen),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Io {
        context: "the listening address".into(),
        source,
    })?;
    let tls = match &settings.tls {
        None => None,
        Some((cert, key)) => {
            // reqwest's provider; a second install (tests, embedding) is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .map_err(|source| Error::Io {
                        context: format!(
                            "loading tls_cert {} and tls_key {}",
                            cert.display(),
                            key.display()
                        ),
                        source,
                    })?,
            )
        }
    };
    eprintln!(
        "listening on {}://{addr}",
        if tls.is_some() { "https" } else { "http" }
    );
    if !settings.secured() {
        eprintln!(
            "weir serve: no tenants configured: accepting requests without a key, on loopback only"
        );
    }
    let journal_dir = settings.journal_dir.clone();
    let hub = Arc::new(HttpHub::new(journal_dir.clone())?);
    engine.serve_http(hub.clone())?;
    if let Some(p) = opts.parallelism {
        engine
            .execute(&format!("SET 'parallelism' = '{p}';"))
            .await?;
    }
    if let Some(dir) = &settings.checkpoint_dir {
        engine
            .execute(&format!(
                "SET 'state.checkpoints.dir' = '{}';",
                dir.replace('\'', "''")
            ))
            .await?;
    }
    let jobs_dir = settings
        .journal_dir
        .parent()
        .map_or_else(|| PathBuf::from("weir-data"), PathBuf::from)
        .join("jobs");
    let cors = settings.cors_origins.clone();
    let server = Arc::new(Server {
        engine,
        hub,
        settings: RwLock::new(Arc::new(settings)),
        config_path: opts.config.clone(),
        stats,
        jobs: jobs::Jobs::new(jobs_dir)?,
        idempotency: ingest::Idempotency::open(&journal_dir)?,
        ready: AtomicBool::new(false),
        tls: tls.clone(),
    });
    let app = router(server.clone(), &cors)?;
    let handle = axum_server::Handle::new();
    let serving = match tls {
        Some(config) => {
            let server =
                axum_server::from_tcp_rustls(listener, config).map_err(|source| Error::Io {
                    context: format!("serving HTTPS on {addr}"),
                    source,
                })?;
            let handle = handle.clone();
            tokio::spawn(async move { server.handle(handle).serve(app.into_make_service()).await })
        }
        None => {
            let server = axum_server::from_tcp(listener).map_err(|source| Error::Io {
                context: format!("serving HTTP on {addr}"),
                source,
            })?;
            let handle = handle.clone();
            tokio::spawn(async move { server.handle(handle).serve(app.into_make_service()).await })
        }
    };
    // Job files from the command line, then the submitted jobs of earlier runs.
    for path in &opts.jobs {
        let sql = std::fs::read_to_string(path).map_err(|source| Error::Io {
            context: format!("reading {}", path.display()),
            source,
        })?;
        server
            .jobs
            .start(&server, &sql, None)
            .await
            .map_err(|e| e.into_error())?;
    }
    server.jobs.resume(&server).await;
    server.ready.store(true, Ordering::SeqCst);
    tokio::spawn(jobs::sample_rates(server.clone()));
    wait_for_signals(&server).await?;
    eprintln!("weir serve: stopping: a final checkpoint for checkpointing jobs, sinks flushed...");
    server.jobs.stop_all().await;
    // Open event streams would hold a graceful shutdown forever: give them a moment.
    handle.graceful_shutdown(Some(Duration::from_secs(2)));
    let _ = tokio::time::timeout(Duration::from_secs(3), serving).await;
    Ok(())
}

async fn wait_for_signals(server: &Shared) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let sig = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|source| Error::Io {
            context: format!("installing the {name} handler"),
            source,
        })
    };
    let mut term = sig(SignalKind::terminate(), "SIGTERM")?;
    let mut int = sig(SignalKind::interrupt(), "SIGINT")?;
    let mut hup = sig(SignalKind::hangup(), "SIGHUP")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => reload(server).await,
        }
    }
}

/// SIGHUP: read serve.toml (and the TLS certificate) again. Connections stay; a bad file keeps
/// the old settings.
async fn reload(server: &Shared) {
    match Settings::load(server.config_path.as_deref(), &server.stats) {
        Ok(new) => {
            if let (Some(config), Some((cert, key))) = (&server.tls, &new.tls)
                && let Err(e) = config.reload_from_pem_file(cert, key).await
            {
                eprintln!("weir serve: reload failed, keeping the old certificate: {e}");
                return;
            }
            let old = server.settings();
            if !new.secured() && old.secured() {
                eprintln!(
                    "weir serve: reload refused: the new configuration has no tenants, and this \
                     server may be listening beyond loopback"
                );
                return;
            }
            if let Ok(mut s) = server.settings.write() {
                *s = Arc::new(new);
            }
            eprintln!("weir serve: configuration reloaded");
        }
        Err(e) => eprintln!("weir serve: reload failed, keeping the old configuration: {e}"),
    }
}

fn router(server: Shared, cors_origins: &[String]) -> Result<Router> {
    let max_body = server.settings().max_body;
    let mut app = Router::new()
        .route("/", get(page::page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(jobs::metrics))
        .route("/v1/tables/{table}/records", post(ingest::post_records))
        .route("/v1/tables", get(results::list_tables))
        .route("/v1/tables/{table}", get(results::get_table))
        .route("/v1/tables/{table}/subscribe", get(results::subscribe))
        .route("/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::show).delete(jobs::delete))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(tower_http::decompression::RequestDecompressionLayer::new().gzip(true))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(max_body))
        .layer(axum::middleware::from_fn_with_state(
            server.clone(),
            declared_length,
        ))
        .with_state(server);
    if !cors_origins.is_empty() {
        let origins = cors_origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o)
                    .map_err(|_| Error::Plan(format!("serve.toml: cors origin '{o}' is not valid")))
            })
            .collect::<Result<Vec<_>>>()?;
        app = app.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    header::CONTENT_ENCODING,
                ]),
        );
    }
    Ok(app)
}

/// A body whose declared length is over `max_body` gets 413 before any of it is read (a
/// streamed body is cut off by the limit layer and the handlers' limited reads).
async fn declared_length(State(server): State<Shared>, req: Request, next: Next) -> Response {
    let max = server.settings().max_body;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large(max);
    }
    next.run(req).await
}

pub(crate) fn too_large(max: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is over max_body ({max} bytes)"),
    )
}

async fn readyz(State(server): State<Shared>) -> Response {
    if server.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "restoring jobs")
    }
}
