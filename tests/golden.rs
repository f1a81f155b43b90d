//! Golden SQL tests: each `tests/sql/NAME.sql` runs through weir (`$DATA` is `tests/data`),
//! and the output of every query — its rows, sorted, and its late and malformed counts — must
//! equal `tests/sql/NAME.out`. `WEIR_BLESS=1 cargo test --test golden` rewrites the files.

mod common;

use std::fmt::Write;
use std::path::Path;

use futures::StreamExt;
use weir::engine::{SelectOutput, StatementOutput};

async fn run(sql: &str) -> String {
    let engine = weir::Engine::new();
    let mut out = String::new();
    for stmt in weir::sql::parse_sql(sql).unwrap() {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        match engine
            .run_located(&stmt, SelectOutput::Channel(tx))
            .await
            .unwrap()
        {
            StatementOutput::Job(job) => {
                let metrics = job.metrics().clone();
                let batches: Vec<_> = tokio_stream(rx).collect().await;
                let summary = job.wait().await.unwrap();
                let _ = writeln!(out, "-- query at line {}", stmt.line);
                for row in common::rows(&batches) {
                    let _ = writeln!(out, "{row}");
                }
                let _ = writeln!(
                    out,
                    "-- {} rows, {} late, {} malformed",
                    summary.rows_out, summary.late_rows, summary.malformed
                );
                drop(metrics);
            }
            _ => drop(rx),
        }
    }
    out
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<weir::Result<datafusion::arrow::array::RecordBatch>>,
) -> impl futures::Stream<Item = datafusion::arrow::array::RecordBatch> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(|r| r.unwrap())))
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
