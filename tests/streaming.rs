//! End-to-end behaviour over files: late rows, sharded directories, malformed records, sinks,
//! errors. Where a result is checked, it is checked against DataFusion's batch answer.

mod common;

use std::sync::Arc;

use common::*;
use datafusion::arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use futures::StreamExt;
use weir::engine::{SelectOutput, StatementOutput};

const TUMBLE_Q: &str = "SELECT window_start, window_end, auction, COUNT(*) AS n, SUM(price) AS total \
    FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) \
    GROUP BY window_start, window_end, auction";
const TUMBLE_B: &str = "SELECT date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01 00:00:00') AS window_start, \
    date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01 00:00:00') + INTERVAL '10 seconds' AS window_end, \
    auction, COUNT(*) AS n, SUM(price) AS total FROM bid GROUP BY 1, 2, auction";

async fn run_job(sql: &str) -> weir::JobSummary {
    let engine = weir::Engine::new();
    let mut summary = None;
    for out in engine
        .execute_with(sql, SelectOutput::Discard)
        .await
        .unwrap()
    {
        if let StatementOutput::Job(j) = out {
            summary = Some(j.wait().await.unwrap());
        }
    }
    summary.expect("a job ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_rows_are_dropped_counted_and_routed() {
    let dir = tempdir();
    let lines = json_lines(&bids(200_000));
    // Copies of the first 50 rows (event time ~0 s) re-sent after ~16 s of event time: the
    // watermark (16 s - 4 s) has passed their window's end (10 s), so they are late.
    let mut with_late = lines.clone();
    for (i, l) in lines[..50].iter().enumerate() {
        with_late.insert(150_000 + i * 7, l.clone());
    }
    assert!(line_time(&lines[150_000]) - 4000 > 10_000 + line_time(&lines[0]));
    let file = dir.path().join("late.json");
    write_lines(&file, &with_late);
    let clean = dir.path().join("clean.json");
    write_lines(&clean, &lines);

    let s = stream(&bid_ddl("bid", &file, 4), TUMBLE_Q).await;
    let ctx = batch_ctx(&[("bid", &clean, bid_schema())]).await;
    assert_same_rows(&s, &batch(&ctx, TUMBLE_B).await, "late rows dropped");

    // The count shows in the job summary, and the option routes them to a late-data table.
    let late_dir = dir.path().join("late_out");
    let summary = run_job(&format!(
        "CREATE TABLE bid ({BID_COLUMNS}, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) \
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json', 'late-data.table' = 'late_bids'); \
         CREATE TABLE late_bids (auction BIGINT, price BIGINT, date_time TIMESTAMP(3)) \
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json'); {TUMBLE_Q};",
        file.display(),
        late_dir.display()
    ))
    .await;
    assert_eq!(summary.late_rows, 50);
    let routed: usize = weir::connectors::filesystem::list_files(&late_dir)
        .unwrap()
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
        .sum();
    assert_eq!(routed, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_is_sharded_one_shard_per_file() {
    let dir = tempdir();
    let lines = json_lines(&bids(150_000));
    // Four files, each in time order, interleaving in time: round-robin blocks of 1000 rows.
    let shard_dir = dir.path().join("shards");
    std::fs::create_dir(&shard_dir).unwrap();
    let mut parts: Vec<Vec<String>> = vec![vec![]; 4];
    for (i, chunk) in lines.chunks(1000).enumerate() {
        parts[i % 4].extend_from_slice(chunk);
    }
    for (i, p) in parts.iter().enumerate() {
        write_lines(&shard_dir.join(format!("part-{i}.json")), p);
    }
    // Hidden and metadata files are not data.
    std::fs::write(shard_dir.join(".part-9.json.inprogress"), "garbage\n").unwrap();
    std::fs::write(shard_dir.join("_SUCCESS"), "").unwrap();
    let whole = dir.path().join("all.json");
    write_lines(&whole, &lines);
    // A 1 s delay: each shard alone is in order, so only the min-merge keeps rows on time.
    let s = stream(&bid_ddl("bid", &shard_dir, 1), TUMBLE_Q).await;
    let ctx = batch_ctx(&[("bid", &whole, bid_schema())]).await;
    assert_same_rows(&s, &batch(&ctx, TUMBLE_B).await, "4-file directory");

    let engine = weir::Engine::new();
    engine
        .execute(&bid_ddl("bid", &shard_dir, 1))
        .await
        .unwrap();
    let out = engine
        .execute(&format!("EXPLAIN {TUMBLE_Q}"))
        .await
        .unwrap();
    let StatementOutput::Explain(text) = &out[0] else {
        panic!("not an explain")
    };
    assert!(
        text.contains("one per file") && text.contains("WindowAggregate: TUMBLE(size=10s)"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_skipped_and_counted_or_fail_the_job() {
    let dir = tempdir();
    let mut lines = json_lines(&bids(20_000));
    let clean = dir.path().join("clean.json");
    write_lines(&clean, &lines);
    lines.insert(100, "{\"auction\": 1000, \"bidder\": 1001, \"price\": \"twelve\", \"channel\": \"x\", \"url\": \"u\", \"date_time\": \"2026-01-01 00:00:00.500\", \"extra\": \"\"}".into());
    lines.insert(2000, "this is not json".into());
    lines.insert(5000, "{\"auction\": 1000, \"bidder\": 1001, \"channel\": \"x\", \"url\": \"u\", \"date_time\": \"2026-01-01 00:00:01.500\", \"extra\": \"\"}".into());
    lines.insert(7000, "".into());
    let file = dir.path().join("dirty.json");
    write_lines(&file, &lines);

    let s = stream(&bid_ddl("bid", &file, 4), TUMBLE_Q).await;
    let ctx = batch_ctx(&[("bid", &clean, bid_schema())]).await;
    assert_same_rows(&s, &batch(&ctx, TUMBLE_B).await, "malformed skipped");

    let dead = dir.path().join("dead.jsonl");
    let ddl = |opts: &str| {
        format!(
            "CREATE TABLE bid ({BID_COLUMNS}, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) \
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json'{opts}); {TUMBLE_Q};",
            file.display()
        )
    };
    let summary = run_job(&ddl(&format!(
        ", 'dead-letter.path' = '{}'",
        dead.display()
    )))
    .await;
    assert_eq!(summary.malformed, 3);
    let dead_lines = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(dead_lines.lines().count(), 3);
    assert!(dead_lines.contains("dirty.json:2001"), "{dead_lines}");

    // Flink's options switch to failing the job, naming file and line.
    let engine = weir::Engine::new();
    let out = engine
        .execute_with(
            &ddl(", 'json.ignore-parse-errors' = 'false'"),
            SelectOutput::Discard,
        )
        .await
        .unwrap();
    let Some(StatementOutput::Job(job)) = out.into_iter().last() else {
        panic!("no job")
    };
    let err = job.wait().await.unwrap_err().to_string();
    assert!(err.contains("dirty.json:101"), "{err}");

    let engine = weir::Engine::new();
    let out = engine
        .execute_with(
            &ddl(", 'json.fail-on-missing-field' = 'true'"),
            SelectOutput::Discard,
        )
        .await
        .unwrap();
    let Some(StatementOutput::Job(job)) = out.into_iter().last() else {
        panic!("no job")
    };
    let err = job.wait().await.unwrap_err().to_string();
    assert!(
        err.contains("missing field") && err.contains("price"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_sink_rolls_partitions_and_matches_batch() {
    let dir = tempdir();
    let file = dir.path().join("bids.json");
    write_lines(&file, &json_lines(&bids(60_000)));
    let out = dir.path().join("lake");
    let summary = run_job(&format!(
        "{} CREATE TABLE lake (channel STRING, auction BIGINT, euro DECIMAL(23, 3), date_time TIMESTAMP(3)) \
         PARTITIONED BY (channel) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet', \
         'sink.rolling-policy.file-size' = '16kb'); \
         INSERT INTO lake SELECT channel, auction, 0.908 * price, date_time FROM bid WHERE channel IN ('Google', 'Apple', 'Baidu');",
        bid_ddl("bid", &file, 4),
        out.display()
    ))
    .await;
    assert!(summary.rows_out > 1000);
    let files = weir::connectors::filesystem::list_files(&out).unwrap();
    assert!(files.len() > 3, "files were rolled by size: {files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.to_string_lossy().contains("channel="))
    );
    // No in-progress files remain.
    let hidden = std::fs::read_dir(out.join("channel=Google"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(hidden, 0);
    // Read the lake back with DataFusion (Hive partitions) and compare with the batch answer.
    let ctx = batch_ctx(&[("bid", &file, bid_schema())]).await;
    let opts = datafusion::prelude::ParquetReadOptions::default()
        .table_partition_cols(vec![("channel".to_string(), DataType::Utf8)]);
    ctx.register_parquet("lake", out.to_str().unwrap(), opts)
        .await
        .unwrap();
    let got = batch(&ctx, "SELECT channel, auction, euro, date_time FROM lake").await;
    let want = batch(
        &ctx,
        "SELECT channel, auction, CAST(CAST(0.908 AS DECIMAL(3, 3)) * price AS DECIMAL(23, 3)) AS euro, date_time \
         FROM bid WHERE channel IN ('Google', 'Apple', 'Baidu')",
    )
    .await;
    assert_same_rows(&got, &want, "Parquet sink");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_errors_name_line_and_column() {
    let engine = weir::Engine::new();
    engine
        .execute("CREATE TABLE t (a INT) WITH ('connector' = 'blackhole');")
        .await
        .unwrap();
    // A script is parsed whole before anything runs: a syntax error anywhere runs nothing.
    let err = engine.execute("CREATE TABLE u (a INT)\n  WITH ('connector' = 'blackhole');\nSELECT a FROM t\n  WHERE a >;").await.unwrap_err().to_string();
    assert!(err.contains("Line: 4"), "{err}");
    assert!(engine.execute("DESCRIBE u;").await.is_err());
    let err = engine
        .execute("SELECT nope FROM t;")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope") && err.contains("Line: 1"), "{err}");
    let err = engine
        .execute("\n\nSELECT a, SUM(a) OVER (PARTITION BY a ORDER BY a) FROM t;")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("not supported yet") && err.contains("Line: 3"),
        "{err}"
    );
    let err = engine
        .execute(
            "CREATE TABLE s (a INT, ts TIMESTAMP(3)) WITH ('connector' = 'blackhole');\n\
                  SELECT * FROM s x JOIN s y ON x.a < y.a;",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("not supported yet: joins without an equality"),
        "{err}"
    );
    let err = engine
        .execute("SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("WATERMARK"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_statements() {
    let engine = weir::Engine::new();
    engine
        .execute(
            "CREATE TABLE Clicks (user_id STRING NOT NULL, url STRING, ts TIMESTAMP_LTZ(3), \
             WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'push'); \
             CREATE VIEW c2 AS SELECT user_id, ts FROM clicks WHERE url IS NOT NULL; SET 'parallelism' = '2';",
        )
        .await
        .unwrap();
    let out = engine
        .execute("SHOW TABLES; DESCRIBE CLICKS; DESCRIBE c2;")
        .await
        .unwrap();
    let text: Vec<String> = out
        .into_iter()
        .map(|o| match o {
            StatementOutput::Rows(b) => {
                datafusion::arrow::util::pretty::pretty_format_batches(&[b])
                    .unwrap()
                    .to_string()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(text[0].contains("clicks"));
    assert!(
        text[1].contains("TIMESTAMP_LTZ(3) *ROWTIME*") && text[1].contains("FALSE"),
        "{}",
        text[1]
    );
    assert!(
        text[2].contains("user_id") && !text[2].contains("url"),
        "{}",
        text[2]
    );
    assert!(
        engine
            .execute("CREATE TABLE clicks (a INT) WITH ('connector' = 'push');")
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_push_and_subscribe_emits_while_input_arrives() {
    let engine = weir::Engine::new();
    engine
        .execute(
            "CREATE TABLE clicks (user_id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
             WITH ('connector' = 'push');",
        )
        .await
        .unwrap();
    let mut sub = engine
        .subscribe(
            "SELECT window_start, user_id, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)) \
             GROUP BY window_start, window_end, user_id",
        )
        .await
        .unwrap();
    let push = engine.push_handle("clicks").unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let batch = |users: Vec<i64>, ts: Vec<i64>| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(users)),
                Arc::new(TimestampMillisecondArray::from(ts)),
            ],
        )
        .unwrap()
    };
    push.push(batch(vec![1, 1, 2], vec![1_000, 2_000, 9_000]))
        .await
        .unwrap();
    // The watermark passes 10 s + 1 s: the first window must come out while the stream is open.
    push.push(batch(vec![3], vec![11_500])).await.unwrap();
    // The window's rows may come from several instances (one batch each).
    let mut first = vec![];
    while first
        .iter()
        .map(|b: &RecordBatch| b.num_rows())
        .sum::<usize>()
        < 2
    {
        let b = tokio::time::timeout(std::time::Duration::from_secs(30), sub.next())
            .await
            .expect("window emitted before input ended");
        first.push(b.unwrap().unwrap());
    }
    assert_eq!(
        rows(&first),
        vec!["1970-01-01T00:00:00 | 1 | 2", "1970-01-01T00:00:00 | 2 | 1"]
    );
    push.close().unwrap();
    let rest: Vec<RecordBatch> = sub.map(|b| b.unwrap()).collect().await;
    assert_eq!(rows(&rest), vec!["1970-01-01T00:00:10 | 3 | 1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_nexmark_job_stops_on_cancel() {
    let engine = weir::Engine::new();
    let out = engine
        .execute_with(
            "CREATE TABLE bid (auction BIGINT, price BIGINT, date_time TIMESTAMP(3), \
             WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) WITH ('connector' = 'nexmark'); \
             SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY window_start, window_end;",
            SelectOutput::Discard,
        )
        .await
        .unwrap();
    let Some(StatementOutput::Job(job)) = out.into_iter().last() else {
        panic!("no job")
    };
    let metrics = job.metrics().clone();
    while weir::runtime::JobMetrics::get(&metrics.rows_out) < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    job.cancel();
    let summary = job.wait().await.unwrap();
    assert_eq!(summary.outcome, weir::runtime::Outcome::Stopped);
    assert!(summary.events_in > 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_roll_over_by_time_while_the_job_runs() {
    let dir = tempdir();
    let out = dir.path().join("events");
    let engine = weir::Engine::new();
    let outputs = engine
        .execute_with(
            &format!(
                "CREATE TABLE clicks (user_id BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'push'); \
                 CREATE TABLE sink (user_id BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'filesystem', 'path' = '{}', \
                   'format' = 'csv', 'sink.rolling-policy.rollover-interval' = '200 ms', 'sink.rolling-policy.check-interval' = '50 ms'); \
                 INSERT INTO sink SELECT user_id, ts FROM clicks;",
                out.display()
            ),
            SelectOutput::Discard,
        )
        .await
        .unwrap();
    let Some(StatementOutput::Job(job)) = outputs.into_iter().last() else {
        panic!("no job")
    };
    let push = engine.push_handle("clicks").unwrap();
    let schema = push.schema();
    let b = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(TimestampMillisecondArray::from(vec![1, 2])),
        ],
    )
    .unwrap();
    push.push(b).await.unwrap();
    // The input stays open; the file is published once it has been open for 200 ms.
    let mut published = vec![];
    for _ in 0..200 {
        published = weir::connectors::filesystem::list_files(&out).unwrap_or_default();
        if !published.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        published.len(),
        1,
        "a rolled file is visible while the job runs"
    );
    let text = std::fs::read_to_string(&published[0]).unwrap();
    assert!(
        text.starts_with("user_id,ts\n1,1970-01-01 00:00:00.001"),
        "{text}"
    );
    job.cancel();
    job.wait().await.unwrap();
}

/// A file source decodes only the columns a job reads. EXPLAIN names them; the answer over
/// JSON, CSV and Parquet equals the batch query's; a bad value in a column the job does not
/// read does not make its record malformed (it does once a query reads that column); and a
/// statement set whose other statement reads every column gets every column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_decode_only_the_columns_a_job_reads() {
    let dir = tempdir();
    let batches = bids(20_000);
    let json = dir.path().join("bids.json");
    let lines = json_lines(&batches);
    write_lines(&json, &lines);
    let ctx = batch_ctx(&[("bid", &json, bid_schema())]).await;
    let want = batch(&ctx, TUMBLE_B).await;

    let engine = weir::Engine::new();
    engine.execute(&bid_ddl("bid", &json, 4)).await.unwrap();
    let explain = |q: String| {
        let engine = &engine;
        async move {
            match &engine.execute(&q).await.unwrap()[0] {
                StatementOutput::Explain(text) => text.clone(),
                _ => panic!("not an explain"),
            }
        }
    };
    let text = explain(format!("EXPLAIN {TUMBLE_Q}")).await;
    assert!(
        text.contains("reads: auction, price, date_time (the other columns are not decoded)"),
        "{text}"
    );
    let text = explain("EXPLAIN SELECT * FROM bid".into()).await;
    assert!(!text.contains("reads:"), "{text}");

    // The same rows as JSON, CSV (with a header) and Parquet files.
    let csv = dir.path().join("bids.csv");
    {
        let mut w = datafusion::arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(std::fs::File::create(&csv).unwrap());
        batches.iter().for_each(|b| w.write(b).unwrap());
    }
    let parquet = dir.path().join("bids.parquet");
    {
        let file = std::fs::File::create(&parquet).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), None).unwrap();
        batches.iter().for_each(|b| w.write(b).unwrap());
        w.close().unwrap();
    }
    for (format, path) in [("json", &json), ("csv", &csv), ("parquet", &parquet)] {
        let ddl = bid_ddl("bid", path, 4).replace("'json'", &format!("'{format}'"));
        assert_same_rows(&stream(&ddl, TUMBLE_Q).await, &want, format);
    }

    // A wrong-typed bidder: not read by the TUMBLE query, read by a count per bidder.
    let mut dirty = lines.clone();
    let mut row: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&dirty[100]).unwrap();
    row.insert("bidder".into(), "not a number".into());
    dirty[100] = serde_json::to_string(&row).unwrap();
    let dirty_path = dir.path().join("dirty.json");
    write_lines(&dirty_path, &dirty);
    let ddl = bid_ddl("bid", &dirty_path, 4);
    assert_same_rows(&stream(&ddl, TUMBLE_Q).await, &want, "bad unread value");
    let summary = run_job(&format!("{ddl} {TUMBLE_Q};")).await;
    assert_eq!(summary.malformed, 0, "an unread value is not checked");
    let summary = run_job(&format!(
        "{ddl} SELECT window_start, bidder, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, \
         DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY window_start, window_end, bidder;"
    ))
    .await;
    assert_eq!(summary.malformed, 1, "a read value is");

    // A statement set: one statement copies whole rows, the other reads three columns.
    let whole = dir.path().join("whole");
    let counts = dir.path().join("counts");
    let summary = run_job(&format!(
        "{} CREATE TABLE whole ({BID_COLUMNS}) WITH ('connector' = 'filesystem', 'path' = '{}', \
         'format' = 'json'); \
         CREATE TABLE counts (auction BIGINT, n BIGINT) WITH ('connector' = 'filesystem', \
         'path' = '{}', 'format' = 'json'); \
         EXECUTE STATEMENT SET BEGIN \
           INSERT INTO whole SELECT * FROM bid; \
           INSERT INTO counts SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, \
             DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY window_start, window_end, auction; \
         END;",
        bid_ddl("bid", &json, 4),
        whole.display(),
        counts.display()
    ))
    .await;
    assert_eq!(summary.events_in, lines.len() as u64, "bid read once");
    let copied: Vec<String> = files_under(&whole)
        .iter()
        .filter(|p| !is_hidden(p))
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(copied.len(), lines.len());
    assert!(
        copied
            .iter()
            .all(|l| l.contains("\"url\":\"") && l.contains("\"extra\":\"")),
        "every column copied: {}",
        copied[0]
    );
}
