//! Golden SQL tests: each `tests/sql/NAME.sql` runs through weir (`$DATA` is `tests/data`),
//! and the output of every query — its column names, its rows, sorted, and its late and
//! malformed counts, or its error — must equal `tests/sql/NAME.out`. An updating query's
//! changelog is applied: its final rows are compared. `WEIR_BLESS=1 cargo test --test golden` rewrites the files.

mod common;

use std::fmt::Write;
use std::path::Path;

use futures::StreamExt;
use weir::engine::{SelectOutput, StatementOutput};

async fn run(sql: &str) -> String {
    let engine = weir::Engine::new();
    let mut out = String::new();
    // Sections separated by a `-- ---` line are parsed apart, so one file can show several
    // errors; each keeps its line numbers.
    let mut line = 0;
    for section in sql.split("\n-- ---\n") {
        let text = format!("{}{section}", "\n".repeat(line));
        line += section.lines().count() + 1;
        let statements = match weir::sql::parse_sql(&text) {
            Ok(s) => s,
            Err(e) => {
                let _ = writeln!(out, "-- error: {e}");
                continue;
            }
        };
        for stmt in statements {
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            match engine.run_located(&stmt, SelectOutput::Channel(tx)).await {
                Ok(StatementOutput::Job(job)) => {
                    let results: Vec<_> = tokio_stream(rx).collect().await;
                    let _ = writeln!(out, "-- query at line {}", stmt.line);
                    let batches: Vec<_> = match results.into_iter().collect() {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = writeln!(out, "-- error: {e}");
                            let _ = job.wait().await;
                            continue;
                        }
                    };
                    let summary = match job.wait().await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = writeln!(out, "-- error: {e}");
                            continue;
                        }
                    };
                    if let Some(b) = batches.first()
                        && !b.schema().fields().is_empty()
                    {
                        let names: Vec<_> = b
                            .schema()
                            .fields()
                            .iter()
                            .map(|f| f.name().clone())
                            .collect();
                        let _ = writeln!(out, "-- columns: {}", names.join(", "));
                    }
                    let updating = batches.first().is_some_and(|b| {
                        b.schema()
                            .fields()
                            .last()
                            .is_some_and(|f| f.name() == "__op")
                    });
                    if updating {
                        // A changelog's rows depend on how batches met at parallelism > 1:
                        // the result it ends in does not.
                        let rows = common::final_rows(&batches);
                        for row in &rows {
                            let _ = writeln!(out, "{row}");
                        }
                        let _ = writeln!(
                            out,
                            "-- changelog applied: {} rows, {} late, {} malformed",
                            rows.len(),
                            summary.late_rows,
                            summary.malformed
                        );
                    } else {
                        for row in common::rows(&batches) {
                            let _ = writeln!(out, "{row}");
                        }
                        let _ = writeln!(
                            out,
                            "-- {} rows, {} late, {} malformed",
                            summary.rows_out, summary.late_rows, summary.malformed
                        );
                    }
                }
                Ok(_) => drop(rx),
                Err(e) => {
                    let _ = writeln!(out, "-- error at line {}: {e}", stmt.line);
                }
            }
        }
    }
    out
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<weir::Result<datafusion::arrow::array::RecordBatch>>,
) -> impl futures::Stream<Item = weir::Result<datafusion::arrow::array::RecordBatch>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_sql_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let data = root.join("data");
    let bless = std::env::var("WEIR_BLESS").is_ok();
    let mut files: Vec<_> = std::fs::read_dir(root.join("sql"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 4);
    let mut failures = vec![];
    for f in files {
        let sql = std::fs::read_to_string(&f)
            .unwrap()
            .replace("$DATA", data.to_str().unwrap());
        let got = run(&sql).await;
        let expected_path = f.with_extension("out");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}\n--- got\n{got}",
                f.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
