//! The `weir` command line: the REPL (no arguments), `weir run job.sql`, `weir serve` and its
//! clients (`weir submit`, `weir jobs`, `weir stop`), `weir checkpoints` and `weir bench`.
//!
//! The `weir` binary is [`main_with`] with nothing added. A crate can build its own `weir`
//! with extra functions by calling it with a setup hook, as `examples/custom_functions.rs`
//! does:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     weir::cli::main_with(|engine| {
//!         // engine.register_udf(my_udf())?;
//!         let _ = engine;
//!         Ok(())
//!     })
//! }
//! ```

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::engine::{SelectOutput, StatementOutput, status_line};
use crate::runtime::JobMetrics;
use crate::{Engine, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "weir: streaming SQL over sharded event streams"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run every statement of a SQL file; bounded jobs exit when done, others on Ctrl-C/SIGTERM.
    Run {
        /// The job file.
        file: std::path::PathBuf,
        /// Do not print the status line or the job summaries.
        #[arg(long, short)]
        quiet: bool,
        /// Instances of each keyed operator (default: the number of cores; the file's
        /// `SET 'parallelism'` overrides it).
        #[arg(long, short)]
        parallelism: Option<usize>,
        /// With a checkpoint directory: ignore the jobs' checkpoints and start a new lineage
        /// (new file names, nothing of the old lineage taken as done).
        #[arg(long)]
        no_restore: bool,
        /// Restore checkpoint N (a completed one) instead of the latest.
        #[arg(long, value_name = "N")]
        from_checkpoint: Option<u64>,
        /// Drop checkpointed state that no operator of the (changed) job claims.
        #[arg(long)]
        allow_non_restored_state: bool,
    },
    /// Serve HTTP: ingest into http tables, jobs over HTTP, results, metrics, a live page.
    Serve {
        /// Address to listen on (port 0: any free port; the first stderr line names it).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// serve.toml: tenants, keys, limits, directories.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// Instances of each keyed operator (default: the number of cores).
        #[arg(long, short)]
        parallelism: Option<usize>,
        /// Job files to run at start.
        jobs: Vec<std::path::PathBuf>,
    },
    /// Submit a job file to a running `weir serve`.
    Submit {
        /// The job file.
        file: std::path::PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the jobs of a running `weir serve`.
    Jobs {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop a job of a running `weir serve` (a final checkpoint; resumable).
    Stop {
        /// The job's id (see `weir jobs`).
        id: String,
        /// Drain instead: end its sources so every window fires.
        #[arg(long, conflicts_with = "cancel")]
        drain: bool,
        /// Cancel instead: stop at once, without a final checkpoint.
        #[arg(long)]
        cancel: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the jobs, checkpoints and state sizes of a checkpoint directory.
    Checkpoints {
        /// The directory (`state.checkpoints.dir`): a path or `s3://bucket/prefix`.
        dir: String,
    },
    /// Measure throughput.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

/// Where a running `weir serve` is.
#[derive(clap::Args)]
struct ServerArgs {
    /// The server's URL (default: $WEIR_SERVER, else http://127.0.0.1:8080).
    #[arg(long)]
    server: Option<String>,
    /// An admin key (default: $WEIR_KEY).
    #[arg(long)]
    key: Option<String>,
}

#[derive(Subcommand)]
enum Bench {
    /// The Nexmark generator alone: events/s per core.
    Generator {
        /// Events of the sequence to generate.
        #[arg(long, default_value_t = 20_000_000)]
        events: u64,
        /// Table: bid, auction or person.
        #[arg(long, default_value = "bid")]
        table: String,
    },
    /// The Nexmark suite: each query of sql/nexmark/ on the generator, into a blackhole.
    Nexmark {
        /// Events of the Nexmark sequence per query.
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        /// Queries to run, e.g. q0,q5,q7 (default: every query of the suite, q0 to q22).
        #[arg(long, value_delimiter = ',')]
        queries: Vec<String>,
        /// Instances of each keyed operator (default: the number of cores).
        #[arg(long, short)]
        parallelism: Option<usize>,
        /// Also run each query as a DataFusion batch query over the same generated data.
        #[arg(long)]
        batch_baseline: bool,
        /// `table` (default) or `json`.
        #[arg(long, default_value = "table")]
        format: String,
        /// Where the query files are.
        #[arg(long, default_value = "sql/nexmark")]
        dir: std::path::PathBuf,
        /// Pace the generator to this many events per second of wall clock (all shards
        /// together), to measure latency below full speed.
        #[arg(long)]
        rate: Option<u64>,
    },
    /// One query of the suite, measured in this process (used by `bench nexmark`).
    #[command(hide = true)]
    NexmarkOne {
        #[arg(long)]
        query: String,
        #[arg(long)]
        events: u64,
        #[arg(long)]
        parallelism: Option<usize>,
        #[arg(long)]
        batch: bool,
        #[arg(long)]
        dir: std::path::PathBuf,
        #[arg(long)]
        rate: Option<u64>,
    },
}

/// glibc's allocator hands every allocation above its mmap threshold straight to `mmap` and
/// gives freed memory back at once, so a stream of Arrow batches (columns of hundreds of KiB,
/// allocated and freed thousands of times a second) pays a page fault per page, again and
/// again: measured on Nexmark q0, about a tenth of the CPU. Keep such memory for reuse instead;
/// it stays bounded by what the job holds at once.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

/// Run the `weir` command line (arguments from the process), with `setup` applied to the
/// engine of the REPL and of `weir run` before any statement: register user-defined functions
/// there (`Engine::register_udf` / `register_udaf`).
pub fn main_with(setup: impl Fn(&Engine) -> Result<()>) -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        None => {
            let engine = Engine::new();
            match setup(&engine) {
                Ok(()) => crate::repl::run(engine, &runtime),
                Err(e) => Err(e),
            }
        }
        Some(Command::Run {
            file,
            quiet,
            parallelism,
            no_restore,
            from_checkpoint,
            allow_non_restored_state,
        }) => runtime.block_on(run_file(
            &setup,
            &file,
            quiet,
            parallelism,
            RestoreFlags {
                no_restore,
                from_checkpoint,
                allow_non_restored_state,
            },
        )),
        Some(Command::Serve {
            listen,
            config,
            parallelism,
            jobs,
        }) => runtime.block_on(async {
            let engine = Engine::new();
            setup(&engine)?;
            crate::serve::serve(
                engine,
                crate::serve::ServeOptions {
                    listen,
                    config,
                    jobs,
                    parallelism,
                },
            )
            .await
        }),
        Some(Command::Submit { file, server }) => runtime.block_on(async {
            let sql = std::fs::read_to_string(&file).map_err(|source| crate::Error::Io {
                context: format!("reading {}", file.display()),
                source,
            })?;
            let body = client(&server, reqwest::Method::POST, "/v1/jobs", Some(sql)).await?;
            for id in body["jobs"].as_array().into_iter().flatten() {
                println!("{}", id.as_str().unwrap_or_default());
            }
            Ok(())
        }),
        Some(Command::Jobs { server }) => runtime.block_on(async {
            let body = client(&server, reqwest::Method::GET, "/v1/jobs", None).await?;
            println!(
                "{:<24} {:<10} {:>12} {:>12} {:>12} {:>10} {:>10}",
                "ID", "STATUS", "EVENTS/S", "IN", "OUT", "LAG S", "MALFORMED"
            );
            for j in body["jobs"].as_array().into_iter().flatten() {
                let lag = j["watermark_lag_ms"]
                    .as_i64()
                    .map_or("-".to_string(), |l| format!("{:.1}", l as f64 / 1000.0));
                println!(
                    "{:<24} {:<10} {:>12} {:>12} {:>12} {:>10} {:>10}",
                    j["id"].as_str().unwrap_or_default(),
                    j["status"].as_str().unwrap_or_default(),
                    j["events_per_s"],
                    j["events_in"],
                    j["events_out"],
                    lag,
                    j["malformed"]
                );
            }
            Ok(())
        }),
        Some(Command::Stop {
            id,
            drain,
            cancel,
            server,
        }) => runtime.block_on(async {
            let how = if drain {
                "?drain=true"
            } else if cancel {
                "?cancel=true"
            } else {
                ""
            };
            let path = format!(
                "/v1/jobs/{}{how}",
                url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
            );
            let body = client(&server, reqwest::Method::DELETE, &path, None).await?;
            println!(
                "{}: {}",
                body["id"].as_str().unwrap_or_default(),
                body["status"].as_str().unwrap_or_default()
            );
            Ok(())
        }),
        Some(Command::Checkpoints { dir }) => runtime.block_on(list_checkpoints(&dir)),
        Some(Command::Bench {
            what: Bench::Generator { events, table },
        }) => bench_generator(events, &table),
        Some(Command::Bench {
            what:
                Bench::Nexmark {
                    events,
                    queries,
                    parallelism,
                    batch_baseline,
                    format,
                    dir,
                    rate,
                },
        }) => bench_nexmark(
            events,
            queries,
            parallelism,
            batch_baseline,
            &format,
            &dir,
            rate,
        ),
        Some(Command::Bench {
            what:
                Bench::NexmarkOne {
                    query,
                    events,
                    parallelism,
                    batch,
                    dir,
                    rate,
                },
        }) => runtime.block_on(bench_nexmark_one(
            &query,
            events,
            parallelism,
            batch,
            &dir,
            rate,
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One request to a running `weir serve`; its JSON answer, or its error as a weir error.
async fn client(
    args: &ServerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<String>,
) -> Result<serde_json::Value> {
    let base = args
        .server
        .clone()
        .or_else(|| std::env::var("WEIR_SERVER").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let key = args.key.clone().or_else(|| std::env::var("WEIR_KEY").ok());
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut req = reqwest::Client::new().request(method, &url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let failed = |message: String| crate::Error::Execution {
        operator: format!("weir serve at {base}"),
        message,
    };
    let resp = req.send().await.map_err(|e| failed(e.to_string()))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| failed(e.to_string()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    if !status.is_success() {
        let message = json["error"]
            .as_str()
            .map_or(json.to_string(), str::to_string);
        return Err(failed(format!("{status}: {message}")));
    }
    Ok(json)
}

/// `weir run` flags about restoring from checkpoints.
struct RestoreFlags {
    no_restore: bool,
    from_checkpoint: Option<u64>,
    allow_non_restored_state: bool,
}

async fn run_file(
    setup: &dyn Fn(&Engine) -> Result<()>,
    path: &std::path::Path,
    quiet: bool,
    parallelism: Option<usize>,
    restore: RestoreFlags,
) -> Result<()> {
    let sql = std::fs::read_to_string(path).map_err(|source| crate::Error::Io {
        context: format!("reading {}", path.display()),
        source,
    })?;
    let engine = Engine::new();
    setup(&engine)?;
    if let Some(p) = parallelism {
        engine
            .execute(&format!("SET 'parallelism' = '{p}';"))
            .await?;
    }
    if restore.no_restore {
        engine.execute("SET 'weir.restore' = 'false';").await?;
    }
    if let Some(n) = restore.from_checkpoint {
        engine
            .execute(&format!("SET 'execution.savepoint.path' = '{n}';"))
            .await?;
    }
    if restore.allow_non_restored_state {
        engine
            .execute("SET 'execution.savepoint.ignore-unclaimed-state' = 'true';")
            .await?;
    }
    let mut jobs = Vec::new();
    for stmt in crate::sql::parse_sql(&sql)? {
        match engine.run_located(&stmt, SelectOutput::Print).await? {
            StatementOutput::Job(job) => jobs.push(job),
            StatementOutput::Rows(batch) => println!(
                "{}",
                datafusion::arrow::util::pretty::pretty_format_batches(&[batch])?
            ),
            StatementOutput::Explain(text) => println!("{text}"),
            StatementOutput::Done(msg) => {
                if !quiet {
                    eprintln!("{msg}");
                }
            }
            // Already printed by the engine.
            StatementOutput::Notice(_) => {}
        }
    }
    if jobs.is_empty() {
        return Ok(());
    }
    let metrics: Vec<_> = jobs.iter().map(|j| j.metrics().clone()).collect();
    let cancels: Vec<_> = jobs.iter().map(|j| j.canceller()).collect();
    let stops: Vec<_> = jobs.iter().map(|j| j.stopper()).collect();
    let checkpointing = jobs.iter().any(|j| j.is_checkpointing());
    let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
    let status = !quiet && std::io::stderr().is_terminal();
    let status_task = status.then(|| tokio::spawn(status_loop(metrics.clone())));
    let waiting = futures::future::join_all(jobs.into_iter().map(|j| j.wait()));
    tokio::pin!(waiting);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| crate::Error::Io {
            context: "installing the SIGTERM handler".into(),
            source,
        })?;
    let stopped = tokio::select! {
        r = &mut waiting => Some(r),
        _ = tokio::signal::ctrl_c() => None,
        _ = sigterm.recv() => None,
    };
    let results = match stopped {
        Some(r) => r,
        None if checkpointing => {
            // Stop with a final checkpoint; a second Ctrl-C (or SIGTERM) stops at once.
            eprintln!("\nstopping: taking a final checkpoint (Ctrl-C again to stop at once)...");
            for s in &stops {
                let _ = s.send(true);
            }
            tokio::select! {
                r = &mut waiting => r,
                _ = tokio::signal::ctrl_c() => { stop(&cancels); waiting.await }
                _ = sigterm.recv() => { stop(&cancels); waiting.await }
            }
        }
        None => {
            stop(&cancels);
            waiting.await
        }
    };
    if let Some(t) = status_task {
        t.abort();
        eprint!("\r\x1b[2K");
    }
    let mut first_error = None;
    for (name, r) in names.iter().zip(results) {
        match r {
            Ok(summary) => {
                if !quiet {
                    eprintln!("job {name}\n  {summary}");
                }
            }
            Err(e) => {
                eprintln!("job {name}\n  failed: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `weir checkpoints DIR`: every job's checkpoints with their age, size and operators.
async fn list_checkpoints(dir: &str) -> Result<()> {
    print!("{}", crate::state::describe_checkpoints(dir).await?);
    Ok(())
}

fn stop(cancels: &[tokio::sync::watch::Sender<bool>]) {
    eprintln!("\nstopping: flushing sinks...");
    for c in cancels {
        let _ = c.send(true);
    }
}

async fn status_loop(metrics: Vec<std::sync::Arc<JobMetrics>>) {
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let events: u64 = metrics.iter().map(|m| JobMetrics::get(&m.events_in)).sum();
        let now = Instant::now();
        let rate = (events - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
        last = (now, events);
        if let Some(m) = metrics.first() {
            eprint!("\r\x1b[2K{}", status_line(m, rate));
        }
    }
}

fn bench_generator(events: u64, table: &str) -> Result<()> {
    use crate::connectors::nexmark::{Config, Generator, Kind};
    let kind = match table {
        "bid" => Kind::Bid,
        "auction" => Kind::Auction,
        "person" => Kind::Person,
        other => return Err(crate::Error::Plan(format!("unknown nexmark table {other}"))),
    };
    let config = Config::bounded(events);
    let mut g = Generator::new(kind, config, 0);
    let start = Instant::now();
    let mut rows = 0usize;
    let mut bytes = 0usize;
    while let Some(b) = g.next_batch()? {
        rows += b.num_rows();
        bytes += b.get_array_memory_size();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "nexmark generator ({table} table, 1 core): {events} events of the sequence ({rows} {table} rows) in {secs:.3} s = {:.1}M events/s per core ({:.0} MB of Arrow data)",
        events as f64 / secs / 1e6,
        bytes as f64 / 1e6
    );
    Ok(())
}

fn bench_nexmark(
    events: u64,
    queries: Vec<String>,
    parallelism: Option<usize>,
    batch_baseline: bool,
    format: &str,
    dir: &std::path::Path,
    rate: Option<u64>,
) -> Result<()> {
    use crate::bench::{Measurement, render, suite};
    let queries: Vec<String> = if queries.is_empty() {
        suite(dir)?
    } else {
        queries
    };
    let exe = std::env::current_exe().map_err(|source| crate::Error::Io {
        context: "finding the weir executable".into(),
        source,
    })?;
    let mut rows = vec![];
    for q in &queries {
        let modes: &[bool] = if batch_baseline {
            &[false, true]
        } else {
            &[false]
        };
        for &batch in modes {
            let mut cmd = std::process::Command::new(&exe);
            cmd.args([
                "bench",
                "nexmark-one",
                "--query",
                q,
                "--events",
                &events.to_string(),
            ]);
            cmd.arg("--dir").arg(dir);
            if let Some(p) = parallelism {
                cmd.args(["--parallelism", &p.to_string()]);
            }
            if batch {
                cmd.arg("--batch");
            } else if let Some(r) = rate {
                cmd.args(["--rate", &r.to_string()]);
            }
            let mode = if batch { "batch" } else { "stream" };
            if format != "json" {
                eprintln!("running {q} ({mode}, {events} events)...");
            }
            let out = cmd.output().map_err(|source| crate::Error::Io {
                context: format!("running {q}"),
                source,
            })?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let parsed = stdout
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str::<Measurement>(l).ok());
            rows.push(match parsed {
                Some(m) if out.status.success() => m,
                _ => {
                    let err = String::from_utf8_lossy(&out.stderr);
                    let why = err
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("failed")
                        .trim();
                    Measurement::failed(
                        q,
                        mode,
                        events,
                        why.trim_start_matches("weir: error: ").to_string(),
                    )
                }
            });
        }
    }
    if format == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(|e| crate::Error::Plan(e.to_string()))?
        );
    } else {
        print!("{}", render(&rows));
        println!(
            "events/s/core = events / (wall x {} cores); stream rows include generating the events, batch rows do not \
             (their input s column is that time); events/cpu-s = events / process CPU time",
            crate::planner::default_parallelism()
        );
    }
    Ok(())
}

async fn bench_nexmark_one(
    query: &str,
    events: u64,
    parallelism: Option<usize>,
    batch: bool,
    dir: &std::path::Path,
    rate: Option<u64>,
) -> Result<()> {
    let m = if batch {
        crate::bench::run_batch(query, events).await?
    } else {
        crate::bench::run_stream(
            query,
            &dir.join(format!("{query}.sql")),
            events,
            parallelism,
            rate,
        )
        .await?
    };
    println!(
        "{}",
        serde_json::to_string(&m).map_err(|e| crate::Error::Plan(e.to_string()))?
    );
    Ok(())
}
