//! Shared helpers for the end-to-end tests: bid data files, running a streaming query through
//! `weir::Engine`, running the batch reference in DataFusion, and comparing rows.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::{JsonReadOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use weir::connectors::nexmark::Kind;

/// The bid columns as weir declares them.
pub const BID_COLUMNS: &str = "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, \
     date_time TIMESTAMP(3), extra STRING";

/// Nexmark bid rows (about 92% of `events`).
pub fn bids(events: u64) -> Vec<RecordBatch> {
    weir::connectors::nexmark::bounded_rows(Kind::Bid, events).expect("generates")
}

/// Rows of batches as JSON lines (timestamps as 'YYYY-MM-DD HH:MM:SS.fff').
pub fn json_lines(batches: &[RecordBatch]) -> Vec<String> {
    let mut lines = vec![];
    for b in batches {
        let mut buf = Vec::new();
        {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut buf);
            w.write(b).unwrap();
            w.finish().unwrap();
        }
        lines.extend(
            String::from_utf8(buf)
                .unwrap()
                .lines()
                .map(|l| l.to_string()),
        );
    }
    lines
}

/// Event time (ms) of a JSON line written by [`json_lines`].
pub fn line_time(line: &str) -> i64 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let s = v["date_time"].as_str().unwrap();
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// Shuffle lines within consecutive blocks of `block` lines (deterministically): out of order,
/// but by less than the block's time span.
pub fn shuffle_blocks(lines: &mut [String], block: usize) {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for chunk in lines.chunks_mut(block) {
        for i in (1..chunk.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.swap(i, (state % (i as u64 + 1)) as usize);
        }
    }
}

pub fn write_lines(path: &Path, lines: &[String]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

/// A temporary directory that lives as long as the value.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `CREATE TABLE bid (...) WITH (filesystem json at path)`.
pub fn bid_ddl(name: &str, path: &Path, delay_s: u32) -> String {
    format!(
        "CREATE TABLE {name} ({BID_COLUMNS}, WATERMARK FOR date_time AS date_time - INTERVAL '{delay_s}' SECOND) \
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
        path.display()
    )
}

/// Run DDL then one SELECT through weir; all output rows.
pub async fn stream(ddl: &str, query: &str) -> Vec<RecordBatch> {
    let engine = weir::Engine::new();
    engine.execute(ddl).await.unwrap();
    let mut sub = engine.subscribe(query).await.unwrap();
    let mut out = vec![];
    while let Some(b) = sub.next().await {
        out.push(b.unwrap());
    }
    out
}

/// A batch DataFusion context with `table` read from JSON lines at `path` with weir's schema.
pub async fn batch_ctx(tables: &[(&str, &Path, SchemaRef)]) -> SessionContext {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    // Like for like: the reference answers with weir's functions and result types.
    weir::functions::register(&ctx);
    for (name, path, schema) in tables {
        let ext = path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let opts = JsonReadOptions::default()
            .schema(schema)
            .file_extension(&ext);
        ctx.register_json(*name, path.to_str().unwrap(), opts)
            .await
            .unwrap();
    }
    ctx
}

pub async fn batch(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

/// Rows as sorted strings, for order-insensitive comparison.
pub fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = vec![];
    for b in batches {
        let fmts: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                fmts.iter()
                    .map(|f| f.value(r).to_string())
                    .collect::<Vec<_>>()
                    .join(" | "),
            );
        }
    }
    out.sort();
    out
}

/// An updating result (last column the op) applied in order: the final table's rows, sorted.
/// An append-only result's rows as they are.
#[allow(dead_code)]
pub fn final_rows(batches: &[RecordBatch]) -> Vec<String> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int8Type;
    let updating = batches.first().is_some_and(|b| {
        b.schema()
            .fields()
            .last()
            .is_some_and(|f| f.name() == "__op")
    });
    if !updating {
        return rows(batches);
    }
    let opts = FormatOptions::default().with_null("NULL");
    let mut table: std::collections::BTreeMap<String, i64> = Default::default();
    for b in batches {
        let n = b.num_columns() - 1;
        let fmts: Vec<_> = b.columns()[..n]
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        let ops = b.column(n).as_primitive::<Int8Type>();
        for r in 0..b.num_rows() {
            let row = fmts
                .iter()
                .map(|f| f.value(r).to_string())
                .collect::<Vec<_>>()
                .join(" | ");
            // +I and +U add a row, -U and -D remove one.
            *table.entry(row).or_default() += if matches!(ops.value(r), 1 | 3) { -1 } else { 1 };
        }
    }
    let mut out = vec![];
    for (row, n) in table {
        assert!(n >= 0, "row {row} retracted more often than inserted");
        out.extend(std::iter::repeat_n(row, n as usize));
    }
    out
}

/// Assert two results hold the same rows, showing the first differences.
pub fn assert_same_rows(streaming: &[RecordBatch], batch: &[RecordBatch], what: &str) {
    let (s, b) = (rows(streaming), rows(batch));
    if s != b {
        let only_s: Vec<_> = s.iter().filter(|r| !b.contains(r)).take(5).collect();
        let only_b: Vec<_> = b.iter().filter(|r| !s.contains(r)).take(5).collect();
        panic!(
            "{what}: streaming has {} rows, batch {}\nonly streaming: {only_s:#?}\nonly batch: {only_b:#?}",
            s.len(),
            b.len()
        );
    }
    assert!(!s.is_empty(), "{what}: no rows at all");
}

/// The weir bid schema.
pub fn bid_schema() -> SchemaRef {
    Kind::Bid.schema()
}

/// Every file under `dir`, recursively (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Whether a path's file name is hidden (in-progress or unpublished output).
pub fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}
