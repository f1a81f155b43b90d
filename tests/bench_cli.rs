//! `weir bench nexmark` runs the query set and reports every column, in both formats.

use std::process::Command;

fn bench(args: &[&str]) -> std::process::Output {
    let dir = format!("{}/sql/nexmark", env!("CARGO_MANIFEST_DIR"));
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["bench", "nexmark", "--events", "100000", "--dir", &dir])
        .args(args)
        .output()
        .expect("weir runs")
}

#[test]
fn nexmark_suite_runs_the_default_queries() {
    let out = bench(&[
        "--batch-baseline",
        "--queries",
        "q0,q1,q2,q3,q5,q7,q8,q11,q12",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = bench(&[
        "--format",
        "json",
        "--queries",
        "q0,q1,q2,q3,q5,q7,q8,q11,q12,q6",
    ]);
    assert!(json.status.success());
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).expect("json");
    for q in ["q0", "q1", "q2", "q3", "q5", "q7", "q8", "q11", "q12"] {
        let r = rows
            .iter()
            .find(|r| r["query"] == q && r["mode"] == "stream")
            .expect("a row per query");
        assert!(r["error"].is_null(), "{q}: {}", r["error"]);
        assert!(
            r["wall_s"].as_f64().unwrap() > 0.0 && r["peak_rss_mib"].as_f64().unwrap() > 0.0,
            "{q}"
        );
    }
    // Windowed queries report latency.
    let q7 = rows.iter().find(|r| r["query"] == "q7").unwrap();
    assert!(q7["latency_p99_ms"].as_f64().is_some(), "{q7}");
    // q6 (an OVER over an updating input) runs.
    let q6 = rows.iter().find(|r| r["query"] == "q6").unwrap();
    assert!(q6["error"].is_null(), "{q6}");
    assert!(q6["rows_out"].as_u64().unwrap_or(0) > 0, "{q6}");
    // A query weir cannot run says so.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("qx.sql"),
        "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, \
           url STRING, date_time TIMESTAMP(3), extra STRING, \
           WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) \
         WITH ('connector' = 'nexmark', 'nexmark.events' = '1000');\n\
         CREATE TABLE nexmark_qx (auction BIGINT, half BIGINT) WITH ('connector' = 'blackhole');\n\
         INSERT INTO nexmark_qx SELECT auction, \
           NTILE(2) OVER (PARTITION BY auction ORDER BY date_time) FROM bid;\n",
    )
    .unwrap();
    let out_x = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["bench", "nexmark", "--events", "1000", "--format", "json"])
        .args(["--queries", "qx", "--dir"])
        .arg(dir.path())
        .output()
        .expect("weir runs");
    let rows_x: Vec<serde_json::Value> = serde_json::from_slice(&out_x.stdout).expect("json");
    let qx = rows_x.iter().find(|r| r["query"] == "qx").unwrap();
    assert!(
        qx["error"]
            .as_str()
            .unwrap_or("")
            .contains("not supported yet"),
        "{qx}"
    );
    // The table: a header and one line per query and mode, stream and batch row counts equal.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("events/s/core") && text.contains("p99 ms"),
        "{text}"
    );
    for q in ["q0", "q3", "q5", "q7", "q8", "q11"] {
        let counts: Vec<&str> = text
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(q))
            .map(|l| l.split_whitespace().nth(3).unwrap_or(""))
            .collect();
        assert_eq!(counts.len(), 2, "{q}: stream and batch rows in\n{text}");
        assert_eq!(
            counts[0], counts[1],
            "{q}: streaming and batch rows out differ\n{text}"
        );
    }
}
