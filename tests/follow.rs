//! `'source.monitor-interval'`: results appear while input is still arriving — new files in a
//! directory, and lines appended to a file.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use futures::StreamExt;

fn line(user: i64, secs: i64) -> String {
    format!("{{\"user_id\": {user}, \"ts\": \"2026-01-01 00:00:{secs:02}.000\"}}\n")
}

const QUERY: &str = "SELECT window_start, user_id, COUNT(*) AS n \
    FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end, user_id";

fn ddl(path: &std::path::Path) -> String {
    format!(
        "CREATE TABLE clicks (user_id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json', 'source.monitor-interval' = '50 ms');",
        path.display()
    )
}

/// The next `n` rows (a window's rows may come in several batches, one per instance).
async fn next_rows(sub: &mut weir::Subscription, n: usize) -> Vec<String> {
    let mut batches = vec![];
    while batches
        .iter()
        .map(|b: &datafusion::arrow::record_batch::RecordBatch| b.num_rows())
        .sum::<usize>()
        < n
    {
        let b = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .expect("a window was emitted")
            .unwrap()
            .unwrap();
        batches.push(b);
    }
    rows(&batches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_files_in_a_monitored_directory_are_read() {
    let dir = tempdir();
    let engine = weir::Engine::new();
    engine.execute(&ddl(dir.path())).await.unwrap();
    let mut sub = engine.subscribe(QUERY).await.unwrap();
    // Written as a hidden file and renamed, as a producer publishing whole files would.
    let publish = |name: &str, text: String| {
        let tmp = dir.path().join(format!(".{name}"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.path().join(name)).unwrap();
    };
    publish("a.json", line(1, 1) + &line(1, 2) + &line(2, 5));
    publish("b.json", line(3, 12));
    assert_eq!(
        next_rows(&mut sub, 2).await,
        vec!["2026-01-01T00:00:00 | 1 | 2", "2026-01-01T00:00:00 | 2 | 1"]
    );
    publish("c.json", line(3, 15) + &line(4, 25));
    assert_eq!(
        next_rows(&mut sub, 1).await,
        vec!["2026-01-01T00:00:10 | 3 | 2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_appended_to_a_followed_file_are_read() {
    let dir = tempdir();
    let file = dir.path().join("clicks.json");
    let mut f = std::fs::File::create(&file).unwrap();
    f.write_all(line(1, 1).as_bytes()).unwrap();
    let engine = weir::Engine::new();
    engine.execute(&ddl(&file)).await.unwrap();
    let mut sub = engine.subscribe(QUERY).await.unwrap();
    // A half-written line is not read until it is complete.
    f.write_all(b"{\"user_id\": 1, \"ts\": \"2026-01-").unwrap();
    f.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    f.write_all(b"01 00:00:03.000\"}\n").unwrap();
    f.write_all(line(5, 14).as_bytes()).unwrap();
    f.flush().unwrap();
    assert_eq!(
        next_rows(&mut sub, 1).await,
        vec!["2026-01-01T00:00:00 | 1 | 2"]
    );
    let summary_events = sub
        .job()
        .map(|j| weir::runtime::JobMetrics::get(&j.metrics().malformed));
    assert_eq!(summary_events, Some(0));
}
