//! The interactive shell (`weir` with no arguments): multi-line statements ended by `;`,
//! history, completion of keywords, tables and columns, `SHOW TABLES`, `DESCRIBE`, `EXPLAIN`,
//! `\help`, `\q`. A continuous SELECT prints its rows as windows close; Ctrl-C stops that
//! query and returns to the prompt.
//!
//! An INSERT (or statement set) runs in the background, as in Flink's SQL client: the prompt
//! returns at once, `SHOW JOBS` lists the jobs of the session, and `STOP JOB '<id>'` stops
//! one with a final checkpoint when it checkpoints (`WITH DRAIN` fires its open windows
//! first). Quitting stops the running jobs the same way and waits for them.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Editor, Helper};

use crate::engine::{Engine, SelectOutput, StatementOutput};
use crate::sql::statement::is_complete;
use crate::{Error, Result};

const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "HAVING",
    "AS",
    "AND",
    "OR",
    "NOT",
    "NULL",
    "CREATE",
    "TABLE",
    "VIEW",
    "WITH",
    "WATERMARK",
    "FOR",
    "INTERVAL",
    "SECOND",
    "MINUTE",
    "HOUR",
    "DAY",
    "INSERT",
    "INTO",
    "TUMBLE",
    "HOP",
    "SESSION",
    "CUMULATE",
    "DESCRIPTOR",
    "PARTITION",
    "PARTITIONED",
    "window_start",
    "window_end",
    "window_time",
    "COUNT",
    "SUM",
    "MIN",
    "MAX",
    "AVG",
    "DISTINCT",
    "CAST",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "SHOW",
    "TABLES",
    "VIEWS",
    "DESCRIBE",
    "EXPLAIN",
    "SET",
    "RESET",
    "DROP",
    "LIMIT",
    "BIGINT",
    "INT",
    "DOUBLE",
    "DECIMAL",
    "VARCHAR",
    "STRING",
    "BOOLEAN",
    "TIMESTAMP",
    "TIMESTAMP_LTZ",
    "DATE",
    "TUMBLE_START",
    "TUMBLE_END",
    "HOP_START",
    "HOP_END",
    "SESSION_START",
    "SESSION_END",
];

const HELP: &str = "\
Statements end with ';' and may span lines.
  CREATE TABLE t (..., WATERMARK FOR ts AS ts - INTERVAL '4' SECOND) WITH ('connector' = ...);
  CREATE VIEW v AS SELECT ...;        INSERT INTO sink SELECT ...;
  SELECT ... FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))
    GROUP BY window_start, window_end, ...;   -- rows print as windows close; Ctrl-C stops
  SHOW TABLES;  SHOW VIEWS;  DESCRIBE t;  EXPLAIN SELECT ...;  SET 'key' = 'value';
  INSERT jobs run in the background: SHOW JOBS;  STOP JOB 'id' [WITH DRAIN];
Commands: \\help  \\q (quit)";

/// Completion and multi-line validation.
struct WeirHelper {
    words: Arc<Mutex<Vec<String>>>,
}

impl Completer for WeirHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let prefix = &line[start..pos];
        if prefix.is_empty() {
            return Ok((start, vec![]));
        }
        let lower = prefix.to_lowercase();
        let upper_case = prefix.chars().next().is_some_and(|c| c.is_uppercase());
        let mut out: Vec<Pair> = Vec::new();
        let words = self.words.lock().map(|w| w.clone()).unwrap_or_default();
        for w in words
            .iter()
            .map(String::as_str)
            .chain(KEYWORDS.iter().copied())
        {
            if w.to_lowercase().starts_with(&lower)
                && !out.iter().any(|p| p.replacement.eq_ignore_ascii_case(w))
            {
                let replacement = if KEYWORDS.contains(&w) && !upper_case {
                    w.to_lowercase()
                } else {
                    w.to_string()
                };
                out.push(Pair {
                    display: w.to_string(),
                    replacement,
                });
            }
        }
        Ok((start, out))
    }
}

impl Hinter for WeirHelper {
    type Hint = String;
}

impl Highlighter for WeirHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Borrowed(line)
    }
}

impl Validator for WeirHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = ctx.input().trim();
        let last_line = input.lines().last().unwrap_or("").trim();
        if input.is_empty()
            || is_command(input)
            || last_line.starts_with('\\')
            || is_complete(input)
        {
            Ok(ValidationResult::Valid(None))
        } else {
            Ok(ValidationResult::Incomplete)
        }
    }
}

impl Helper for WeirHelper {}

fn is_command(input: &str) -> bool {
    input.starts_with('\\') || matches!(input.to_lowercase().as_str(), "quit" | "exit" | "help")
}

fn history_path() -> Option<std::path::PathBuf> {
    if let Ok(p) = std::env::var("WEIR_HISTORY") {
        return Some(p.into());
    }
    std::env::var("HOME")
        .ok()
        .map(|h| std::path::Path::new(&h).join(".weir_history"))
}

fn refresh_words(engine: &Engine, words: &Arc<Mutex<Vec<String>>>) {
    let Ok(catalog) = engine.catalog() else {
        return;
    };
    let mut out: Vec<String> = catalog
        .tables
        .keys()
        .chain(catalog.views.keys())
        .cloned()
        .collect();
    for t in catalog.tables.values() {
        out.extend(t.schema.fields().iter().map(|f| f.name().clone()));
    }
    out.sort();
    out.dedup();
    if let Ok(mut w) = words.lock() {
        *w = out;
    }
}

/// Run the REPL until `\q` or end of input.
pub fn run(engine: Engine, runtime: &tokio::runtime::Runtime) -> Result<()> {
    let words = Arc::new(Mutex::new(Vec::new()));
    let config = rustyline::Config::builder()
        .completion_type(rustyline::CompletionType::List)
        .auto_add_history(false)
        .max_history_size(2000)
        .map_err(readline_error)?
        .build();
    let mut editor: Editor<WeirHelper, rustyline::history::FileHistory> =
        Editor::with_config(config).map_err(readline_error)?;
    editor.set_helper(Some(WeirHelper {
        words: words.clone(),
    }));
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "weir {} — streaming SQL. Statements end with ';'. \\help for help, \\q to quit.",
        env!("CARGO_PKG_VERSION")
    );
    let mut jobs = Jobs::default();
    loop {
        runtime.block_on(jobs.reap());
        refresh_words(&engine, &words);
        let line = match editor.readline("weir> ") {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => {
                println!("(Ctrl-C: input cleared; \\q quits)");
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(readline_error(e)),
        };
        let mut input = line.trim();
        if input.is_empty() {
            continue;
        }
        // A backslash command on a continuation line discards the unfinished statement.
        if let Some(last) = input
            .lines()
            .last()
            .map(str::trim)
            .filter(|l| l.starts_with('\\'))
        {
            if input.lines().count() > 1 {
                println!("(unfinished statement discarded)");
            }
            input = last;
        }
        let _ = editor.add_history_entry(input);
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
        match input.trim_end_matches(';').to_lowercase().as_str() {
            "\\q" | "\\quit" | "quit" | "exit" => break,
            "\\help" | "\\h" | "\\?" | "help" => {
                println!("{HELP}");
                continue;
            }
            c if c.starts_with('\\') => {
                println!("unknown command {input}; \\help lists them");
                continue;
            }
            _ => {}
        }
        if let Err(e) = runtime.block_on(run_input(&engine, &mut jobs, input)) {
            eprintln!("ERROR: {e}");
        }
    }
    runtime.block_on(jobs.stop_all());
    Ok(())
}

async fn run_input(engine: &Engine, jobs: &mut Jobs, sql: &str) -> Result<()> {
    if let Some(r) = jobs.command(sql).await {
        return r;
    }
    // Statements run one at a time, so a SELECT's rows are not mixed with later output.
    for stmt in crate::sql::parse_sql(sql)? {
        let background = !matches!(stmt.statement, crate::sql::statement::Statement::Query(_));
        let out = engine.run_located(&stmt, SelectOutput::Print).await?;
        match out {
            StatementOutput::Job(job) if background => jobs.submit(job),
            out => print_output(out).await?,
        }
    }
    Ok(())
}

/// The session's background jobs (INSERTs), by identity, in submission order.
#[derive(Default)]
struct Jobs {
    list: Vec<(String, JobState)>,
}

enum JobState {
    Running(crate::engine::Job),
    Ended(String),
}

impl Jobs {
    fn submit(&mut self, job: crate::engine::Job) {
        let id = job.identity.clone();
        println!("Job '{id}' submitted: SHOW JOBS lists it, STOP JOB '{id}' stops it.");
        self.list.retain(|(i, _)| *i != id);
        self.list.push((id, JobState::Running(job)));
    }

    /// Collect jobs that ended, printing how.
    async fn reap(&mut self) {
        for (id, state) in &mut self.list {
            if matches!(state, JobState::Running(j) if j.is_finished()) {
                let JobState::Running(job) =
                    std::mem::replace(state, JobState::Ended(String::new()))
                else {
                    continue;
                };
                let how = match job.wait().await {
                    Ok(s) => format!("{s}"),
                    Err(e) => format!("FAILED: {e}"),
                };
                eprintln!("Job '{id}' {how}.");
                *state = JobState::Ended(how);
            }
        }
    }

    /// `SHOW JOBS` and `STOP JOB '<id>' [WITH SAVEPOINT] [WITH DRAIN]` (Flink's statements);
    /// `None` for anything else.
    async fn command(&mut self, sql: &str) -> Option<Result<()>> {
        let words: Vec<String> = sql
            .trim()
            .trim_end_matches(';')
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let upper: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
        match upper
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["SHOW", "JOBS"] => {
                self.reap().await;
                self.show();
                Some(Ok(()))
            }
            ["STOP", "JOB", _, rest @ ..] => {
                let drain = match rest {
                    [] | ["WITH", "SAVEPOINT"] => false,
                    ["WITH", "DRAIN"] | ["WITH", "SAVEPOINT", "WITH", "DRAIN"] => true,
                    _ => {
                        return Some(Err(Error::Plan(
                            "expected STOP JOB '<id>' [WITH SAVEPOINT] [WITH DRAIN]".into(),
                        )));
                    }
                };
                let id = words[2].trim_matches('\'').to_string();
                Some(self.stop(&id, drain).await)
            }
            _ => None,
        }
    }

    fn show(&self) {
        if self.list.is_empty() {
            println!("No jobs.");
            return;
        }
        println!(
            "{:<32} {:<10} {:>12} {:>12}  checkpoint",
            "id", "status", "events", "rows out"
        );
        for (id, state) in &self.list {
            match state {
                JobState::Running(j) => {
                    let m = j.metrics();
                    let get = crate::runtime::JobMetrics::get;
                    let cp = if j.is_checkpointing() {
                        match get(&m.checkpoint_epoch) {
                            0 => "none yet".to_string(),
                            n => format!("{n}"),
                        }
                    } else {
                        "off".to_string()
                    };
                    println!(
                        "{id:<32} {:<10} {:>12} {:>12}  {cp}",
                        "RUNNING",
                        get(&m.events_in),
                        get(&m.rows_out)
                    );
                }
                JobState::Ended(how) => {
                    let status = match how.split(':').next() {
                        Some("finished") => "FINISHED",
                        Some("stopped") => "STOPPED",
                        _ => "FAILED",
                    };
                    println!("{id:<32} {status:<10}  {how}");
                }
            }
        }
    }

    async fn stop(&mut self, id: &str, drain: bool) -> Result<()> {
        let Some(pos) = self.list.iter().position(|(i, _)| i == id) else {
            let known: Vec<&str> = self.list.iter().map(|(i, _)| i.as_str()).collect();
            return Err(Error::Plan(format!(
                "no job '{id}' in this session (jobs: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        let state = std::mem::replace(&mut self.list[pos].1, JobState::Ended(String::new()));
        let JobState::Running(job) = state else {
            self.list[pos].1 = state;
            println!("Job '{id}' has already ended.");
            return Ok(());
        };
        if drain {
            job.drain();
        } else {
            job.stop();
        }
        let how = match job.wait().await {
            Ok(s) => format!("{s}"),
            Err(e) => format!("FAILED: {e}"),
        };
        println!("Job '{id}' {how}.");
        self.list[pos].1 = JobState::Ended(how);
        Ok(())
    }

    /// Stop every running job (with a final checkpoint when it checkpoints) and wait.
    async fn stop_all(&mut self) {
        let ids: Vec<String> = self
            .list
            .iter()
            .filter(|(_, s)| matches!(s, JobState::Running(_)))
            .map(|(i, _)| i.clone())
            .collect();
        for id in ids {
            if let Err(e) = self.stop(&id, false).await {
                eprintln!("ERROR: {e}");
            }
        }
    }
}

/// Print a statement's result; for a running query, wait for it (Ctrl-C stops it).
pub async fn print_output(out: StatementOutput) -> Result<()> {
    match out {
        StatementOutput::Done(msg) | StatementOutput::Notice(msg) => println!("{msg}"),
        StatementOutput::Explain(text) => println!("{text}"),
        StatementOutput::Rows(batch) => {
            let table = datafusion::arrow::util::pretty::pretty_format_batches(&[batch])?;
            println!("{table}");
        }
        StatementOutput::Job(job) => {
            eprintln!("Running (Ctrl-C stops the query)...");
            let canceller = job.canceller();
            let wait = job.wait();
            tokio::pin!(wait);
            let summary = tokio::select! {
                r = &mut wait => r?,
                _ = tokio::signal::ctrl_c() => {
                    let _ = canceller.send(true);
                    wait.await?
                }
            };
            eprintln!("Query {summary}.");
        }
    }
    Ok(())
}

fn readline_error(e: ReadlineError) -> Error {
    Error::Io {
        context: "terminal".into(),
        source: std::io::Error::other(e.to_string()),
    }
}
