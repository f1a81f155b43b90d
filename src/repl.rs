//! The interactive shell (`weir` with no arguments): multi-line statements ended by `;`,
//! history, completion of keywords, tables and columns, `SHOW TABLES`, `DESCRIBE`, `EXPLAIN`,
//! `\help`, `\q`. A continuous SELECT prints its rows as windows close; Ctrl-C stops that
//! query and returns to the prompt.

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
    loop {
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
        if let Err(e) = runtime.block_on(run_input(&engine, input)) {
            eprintln!("ERROR: {e}");
        }
    }
    Ok(())
}

async fn run_input(engine: &Engine, sql: &str) -> Result<()> {
    // Statements run one at a time, so a SELECT's rows are not mixed with later output.
    for stmt in crate::sql::parse_sql(sql)? {
        let out = engine.run_located(&stmt, SelectOutput::Print).await?;
        print_output(out).await?;
    }
    Ok(())
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
