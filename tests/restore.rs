//! Golden restore: every job file of `sql/`, `tests/sql/` and `tests/jobs/` with bounded input
//! is run three
//! ways — straight to the end (the golden output); at parallelism 2, checkpointed part-way and
//! cancelled (what no checkpoint covers is discarded); then restored at parallelism 3 and run
//! to the end. The published output of the last two together must equal the golden output.
//! Sinks are rewritten to filesystem sinks and `'nexmark.events'` is capped. Files that cannot
//! take part are listed with the reason (unbounded input, bare SELECTs printing to the
//! terminal, processing time, and what checkpoints do not support yet).

mod common;

use std::path::{Path, PathBuf};

use weir::{Engine, StatementOutput};

const EVENTS: u64 = 300_000;

/// The job file rewritten for the test: nexmark capped, `$DATA` as in the golden tests, and
/// every table an INSERT writes into a JSON filesystem sink under `out/<table>/`
/// (debezium-json for updating queries, which need a changelog format).
fn rewrite(sql: &str, out: &Path, updating: bool) -> String {
    let data = std::env::current_dir().unwrap().join("tests/data");
    let mut s = String::new();
    for line in sql.replace("$DATA", data.to_str().unwrap()).lines() {
        let mut l = line.to_string();
        if let Some(i) = l.find("'nexmark.events' = '") {
            let rest = &l[i + 20..];
            if let Some(j) = rest.find('\'') {
                let n: u64 = rest[..j].parse().unwrap_or(EVENTS);
                l = format!(
                    "{}'nexmark.events' = '{}'{}",
                    &l[..i],
                    n.min(EVENTS),
                    &rest[j + 1..]
                );
            }
        }
        s.push_str(&l);
        s.push('\n');
    }
    let lower = s.to_lowercase();
    let targets: Vec<String> = lower
        .split("insert into")
        .skip(1)
        .filter_map(|r| r.split_whitespace().next())
        .map(|t| {
            t.trim_matches(|c: char| !c.is_alphanumeric() && c != '_')
                .to_string()
        })
        .collect();
    let format = if updating { "debezium-json" } else { "json" };
    let mut result = String::new();
    for stmt in s.split_inclusive(';') {
        let lower = stmt.to_lowercase();
        let name = lower
            .split("create table")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(|n| {
                n.trim_matches(|c: char| !c.is_alphanumeric() && c != '_')
                    .to_string()
            });
        match name.filter(|n| targets.contains(n)) {
            Some(name) => {
                let start = lower.rfind("with (").unwrap_or(stmt.len());
                let end = stmt[start..]
                    .find(");")
                    .map_or(stmt.len(), |e| start + e + 1);
                result.push_str(&stmt[..start]);
                result.push_str(&format!(
                    "WITH ('connector' = 'filesystem', 'path' = '{}/{name}', 'format' = '{format}')",
                    out.display()
                ));
                result.push_str(&stmt[end..]);
            }
            None => result.push_str(stmt),
        }
    }
    result
}

/// Published lines under `dir`, sorted.
fn output(dir: &Path) -> Vec<String> {
    let mut lines = vec![];
    for p in common::files_under(dir) {
        if !common::is_hidden(&p) {
            lines.extend(
                std::fs::read_to_string(&p)
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    lines.sort();
    apply_changelog(lines)
}

/// Debezium-json lines (an updating query's output) applied in order: each `before` removed,
/// each `after` added, so outputs compare by their final table, not by the intermediate
/// updates (which depend on how input was batched). Plain lines are returned as they are.
fn apply_changelog(lines: Vec<String>) -> Vec<String> {
    if !lines.iter().any(|l| l.starts_with("{\"before\"")) {
        return lines;
    }
    // Lines are sorted, so replay them in file order: read again unsorted is not needed for
    // a multiset: every before must match an after somewhere.
    let mut table: std::collections::BTreeMap<String, i64> = Default::default();
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if let Some(b) = v.get("before").filter(|b| !b.is_null()) {
            *table.entry(b.to_string()).or_default() -= 1;
        }
        if let Some(a) = v.get("after").filter(|a| !a.is_null()) {
            *table.entry(a.to_string()).or_default() += 1;
        }
    }
    let mut out = vec![];
    for (row, n) in table {
        assert!(n >= 0, "row {row} retracted more often than inserted");
        out.extend(std::iter::repeat_n(row, n as usize));
    }
    out
}

enum Run {
    /// Every job ran; `finished` when all had finished before they were cancelled.
    Done {
        finished: bool,
    },
    Excluded(String),
}

/// Run `sql` with `settings`; `checkpoint_then_cancel`: take one checkpoint part-way, then
/// cancel every job.
async fn run(sql: &str, settings: &str, checkpoint_then_cancel: bool) -> Run {
    let engine = Engine::new();
    engine.execute(settings).await.unwrap();
    let mut jobs = vec![];
    let statements = match weir::sql::parse_sql(sql) {
        Ok(s) => s,
        // A golden file showing parse errors (its `-- ---` sections are parsed apart there).
        Err(e) => return Run::Excluded(format!("does not parse as one script: {e}")),
    };
    for stmt in statements {
        match engine
            .run_located(&stmt, weir::engine::SelectOutput::Discard)
            .await
        {
            Ok(StatementOutput::Job(j)) => {
                if j.identity.starts_with("select-") {
                    j.cancel();
                    return Run::Excluded("a bare SELECT prints to the terminal".into());
                }
                jobs.push(j)
            }
            Ok(_) => {}
            Err(e) => return Run::Excluded(e.to_string()),
        }
    }
    if checkpoint_then_cancel {
        for j in &jobs {
            // A checkpoint a few batches in (or the final one, when the job is that fast).
            let _ = j.checkpoint().await;
        }
        for j in &jobs {
            j.cancel();
        }
    }
    let mut finished = true;
    for j in jobs {
        let r = j.wait().await;
        if !checkpoint_then_cancel {
            r.unwrap();
        } else if !matches!(r, Ok(s) if s.outcome == weir::runtime::Outcome::Finished) {
            finished = false;
        }
    }
    Run::Done { finished }
}

fn job_files() -> Vec<PathBuf> {
    let mut files = vec![];
    for dir in ["sql", "sql/nexmark", "sql/bench", "tests/sql", "tests/jobs"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "sql") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bounded_job_restores_to_its_golden_output() {
    let mut checked = vec![];
    let mut excluded = vec![];
    let mut restored = 0;
    for file in job_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let lower = text.to_lowercase();
        let why = if lower.contains("'connector' = 'nexmark'") && !lower.contains("nexmark.events")
        {
            Some("unbounded input".to_string())
        } else if lower.contains("row_number()") {
            Some(
                "Top-N: tied rows keep arrival order, which depends on the parallelism (the \
                 operator's restore is checked in its unit test)"
                    .to_string(),
            )
        } else if lower.contains("proctime()") {
            Some("processing time (PROCTIME): the answer depends on the wall clock".into())
        } else if lower.contains("'connector' = 'jdbc'")
            || lower.contains("'connector' = 'kafka'")
            || lower.contains("'connector' = 'kinesis'")
        {
            Some("needs an external server".into())
        } else {
            None
        };
        if let Some(why) = why {
            excluded.push(format!("{}: {why}", file.display()));
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let golden_dir = tmp.path().join("golden");
        let restored_dir = tmp.path().join("restored");
        let chk = tmp.path().join("chk");
        let mut updating = false;
        let golden_sql = rewrite(&text, &golden_dir, false);
        if let Run::Excluded(why) = run(&golden_sql, "SET 'parallelism' = '1';", false).await {
            if !why.contains("cannot take an updating query") {
                excluded.push(format!("{}: {why}", file.display()));
                continue;
            }
            // An updating query: into debezium-json files.
            updating = true;
            let golden_sql = rewrite(&text, &golden_dir, true);
            if let Run::Excluded(why) = run(&golden_sql, "SET 'parallelism' = '1';", false).await {
                excluded.push(format!("{}: {why}", file.display()));
                continue;
            }
        }
        let sql = rewrite(&text, &restored_dir, updating);
        let settings = |p: usize| {
            format!(
                "SET 'parallelism' = '{p}'; SET 'state.checkpoints.dir' = '{}'; \
                 SET 'execution.checkpointing.interval' = '1 h';",
                chk.display()
            )
        };
        let mid_run = match run(&sql, &settings(2), true).await {
            Run::Excluded(why) => {
                excluded.push(format!("{}: {why}", file.display()));
                continue;
            }
            Run::Done { finished } => !finished,
        };
        let _ = run(&sql, &settings(3), false).await;
        let golden = output(&golden_dir);
        let got = output(&restored_dir);
        assert_eq!(
            got.len(),
            golden.len(),
            "{}: {} rows after the restore, {} golden",
            file.display(),
            got.len(),
            golden.len()
        );
        assert_eq!(got, golden, "{}", file.display());
        assert!(
            !golden.is_empty(),
            "{}: no output to compare",
            file.display()
        );
        checked.push(format!(
            "{} ({} rows{})",
            file.display(),
            golden.len(),
            if mid_run {
                ", stopped part-way and restored"
            } else {
                ", had finished before the checkpoint"
            }
        ));
        restored += usize::from(mid_run);
    }
    eprintln!("golden restore: checked\n  {}", checked.join("\n  "));
    eprintln!("excluded\n  {}", excluded.join("\n  "));
    assert!(
        checked.len() >= 5 && restored >= 3,
        "too few job files checked or restored part-way: {checked:?}; excluded: {excluded:?}"
    );
}
