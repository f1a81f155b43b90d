//! The job files shipped in sql/ run, and give the batch answer over their data files.

mod common;

use std::path::Path;

use common::*;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use std::sync::Arc;
use weir::engine::{SelectOutput, StatementOutput};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

async fn run_file(path: &str) -> Vec<weir::JobSummary> {
    let sql = std::fs::read_to_string(root().join(path)).unwrap();
    let sql = sql.replace("'sql/data/", &format!("'{}/sql/data/", root().display()));
    let dir = tempdir();
    let sql = sql.replace("'target/lake/", &format!("'{}/", dir.path().display()));
    let engine = weir::Engine::new();
    let mut jobs = vec![];
    for out in engine
        .execute_with(&sql, SelectOutput::Discard)
        .await
        .unwrap()
    {
        if let StatementOutput::Job(j) = out {
            jobs.push(j);
        }
    }
    let mut out = vec![];
    for j in jobs {
        out.push(j.wait().await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_jobs_run() {
    let quiz = run_file("sql/quiz_results.sql").await;
    assert_eq!(quiz.len(), 2);
    assert!(
        quiz.iter()
            .all(|s| s.events_in == 600 && s.late_rows == 0 && s.rows_out > 0)
    );
    let devices = run_file("sql/device_thresholds.sql").await;
    assert_eq!(devices[0].malformed, 1);
    assert_eq!(devices[0].rows_out, 2);
    let lake = run_file("sql/tenant_lake.sql").await;
    assert_eq!(lake[0].rows_out, 3000);
    assert_eq!(lake[1].events_in, 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiz_results_match_batch() {
    let data = root().join("sql/data/quiz_answers.json");
    let ddl = format!(
        "CREATE TABLE answers (quiz_id STRING, question_id INT, student_id STRING, correct BOOLEAN, answered_at TIMESTAMP(3), \
         WATERMARK FOR answered_at AS answered_at - INTERVAL '2' SECOND) \
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
        data.display()
    );
    let s = stream(
        &ddl,
        "SELECT quiz_id, question_id, TUMBLE_START(answered_at, INTERVAL '1' MINUTE) AS m, COUNT(*) AS n, \
                COUNT(*) FILTER (WHERE correct) AS ok, COUNT(DISTINCT student_id) AS students \
         FROM answers GROUP BY quiz_id, question_id, TUMBLE(answered_at, INTERVAL '1' MINUTE)",
    )
    .await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("quiz_id", DataType::Utf8, true),
        Field::new("question_id", DataType::Int32, true),
        Field::new("student_id", DataType::Utf8, true),
        Field::new("correct", DataType::Boolean, true),
        Field::new(
            "answered_at",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
    ]));
    let ctx = batch_ctx(&[("answers", &data, schema)]).await;
    let b = batch(
        &ctx,
        "SELECT quiz_id, question_id, date_bin(INTERVAL '1 minute', answered_at, TIMESTAMP '1970-01-01 00:00:00') AS m, \
                COUNT(*) AS n, COUNT(*) FILTER (WHERE correct) AS ok, COUNT(DISTINCT student_id) AS students \
         FROM answers GROUP BY 1, 2, 3",
    )
    .await;
    assert_same_rows(&s, &b, "quiz per question");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_ltz_and_flink_functions() {
    let dir = tempdir();
    let csv = dir.path().join("readings.csv");
    std::fs::write(
        &csv,
        "device,reading,at\nd1,1.5,2026-01-01T00:00:01Z\nd2,2.5,2026-01-01T00:00:30Z\nd1,oops,2026-01-01T00:00:40Z\n\
         d1,4.0,2026-01-01T00:01:05Z\nd2,8.0,2026-01-01T00:02:00Z\n",
    )
    .unwrap();
    let ddl = format!(
        "CREATE TABLE r (device STRING, reading DOUBLE, `at` TIMESTAMP_LTZ(3), WATERMARK FOR `at` AS `at` - INTERVAL '1' SECOND) \
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');",
        csv.display()
    );
    let out = stream(
        &ddl,
        "SELECT DATE_FORMAT(window_start, 'yyyy-MM-dd HH:mm') AS minute, device, SUM(reading) AS total, MOD(COUNT(*), 2) AS odd \
         FROM TABLE(TUMBLE(TABLE r, DESCRIPTOR(`at`), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end, device",
    )
    .await;
    assert_eq!(
        rows(&out),
        vec![
            "2026-01-01 00:00 | d1 | 1.5 | 1",
            "2026-01-01 00:00 | d2 | 2.5 | 1",
            "2026-01-01 00:01 | d1 | 4.0 | 1",
            "2026-01-01 00:02 | d2 | 8.0 | 1",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camel_case_fields_keep_their_spelling_in_data() {
    let dir = tempdir();
    let input = dir.path().join("clicks.json");
    std::fs::write(
        &input,
        "{\"userId\": 7, \"pageUrl\": \"/a\", \"eventTime\": 1767225600000}\n\
         {\"userId\": 7, \"pageUrl\": \"/b\", \"eventTime\": 1767225601000}\n\
         {\"userId\": 8, \"pageUrl\": \"/a\", \"eventTime\": 1767225605000}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let sql = format!(
        "CREATE TABLE Clicks (userId BIGINT, pageUrl STRING, eventTime TIMESTAMP_LTZ(3), \
           WATERMARK FOR eventTime AS eventTime - INTERVAL '1' SECOND) \
         WITH ('connector' = 'filesystem', 'path' = 'file://{}', 'format' = 'json'); \
         CREATE TABLE PerUser (userId BIGINT, windowStart TIMESTAMP(3), clickCount BIGINT) \
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json'); \
         INSERT INTO PerUser SELECT userId, window_start, COUNT(*) \
         FROM TABLE(TUMBLE(TABLE Clicks, DESCRIPTOR(eventTime), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end, userId;",
        input.display(),
        out.display()
    );
    let engine = weir::Engine::new();
    for o in engine
        .execute_with(&sql, SelectOutput::Discard)
        .await
        .unwrap()
    {
        if let StatementOutput::Job(j) = o {
            let s = j.wait().await.unwrap();
            assert_eq!((s.events_in, s.malformed, s.rows_out), (3, 0, 2));
        }
    }
    let files = weir::connectors::filesystem::list_files(&out).unwrap();
    let text: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(
        text.contains("\"userId\":7") && text.contains("\"clickCount\":2"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn computed_event_time_column() {
    let dir = tempdir();
    let input = dir.path().join("orders.json");
    std::fs::write(
        &input,
        "{\"id\": 1, \"amount\": 10, \"epoch_ms\": 1767225601000}\n\
         {\"id\": 2, \"amount\": 20, \"epoch_ms\": 1767225659000}\n\
         {\"id\": 3, \"amount\": 30, \"epoch_ms\": 1767225661000}\n",
    )
    .unwrap();
    let ddl = format!(
        "CREATE TABLE orders (id BIGINT, amount BIGINT, epoch_ms BIGINT, \
           ts AS TO_TIMESTAMP_LTZ(epoch_ms, 3), euro AS amount * 0.908, \
           WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) \
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
        input.display()
    );
    let engine = weir::Engine::new();
    engine.execute(&ddl).await.unwrap();
    let out = engine.execute("DESCRIBE orders;").await.unwrap();
    let StatementOutput::Rows(b) = &out[0] else {
        panic!("no rows")
    };
    let text = datafusion::arrow::util::pretty::pretty_format_batches(std::slice::from_ref(b))
        .unwrap()
        .to_string();
    assert!(
        text.contains("ts ") && text.contains("*ROWTIME*") && text.contains("euro"),
        "{text}"
    );
    let rows_out = stream(
        &ddl,
        "SELECT window_start, COUNT(*) AS n, SUM(euro) AS total FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) \
         GROUP BY window_start, window_end",
    )
    .await;
    assert_eq!(
        rows(&rows_out),
        vec![
            "2026-01-01T00:00:00 | 2 | 27.240",
            "2026-01-01T00:01:00 | 1 | 27.240"
        ]
    );
    // A processing-time window: every row lands in some wall-clock minute, all fire at the end.
    let proc_ddl = format!(
        "CREATE TABLE p (id BIGINT, amount BIGINT, epoch_ms BIGINT, proc AS PROCTIME()) \
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
        input.display()
    );
    let counts = stream(
        &proc_ddl,
        "SELECT window_start, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE p, DESCRIPTOR(proc), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end",
    )
    .await;
    let total: i64 = counts
        .iter()
        .map(|b| {
            b.column(1)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .unwrap()
                .iter()
                .flatten()
                .sum::<i64>()
        })
        .sum();
    assert_eq!(total, 3);
}

/// A job that fails part-way publishes no half-written file: what the sink had open is
/// removed, and nothing in progress is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_leaves_no_partial_files() {
    let dir = tempdir();
    let input = dir.path().join("in.json");
    // More than one 4 MiB read block of good records, then one that fails the job.
    let mut lines: Vec<String> = (0..60_000)
        .map(|i| format!(r#"{{"id": {i}, "name": "user-{i:0>60}"}}"#))
        .collect();
    lines.push("this is not JSON".to_string());
    write_lines(&input, &lines);
    let out = dir.path().join("out");
    let engine = weir::Engine::new();
    engine
        .execute(&format!(
            "CREATE TABLE src (id BIGINT, name STRING) WITH ('connector' = 'filesystem', 'path' = '{}', \
               'format' = 'json', 'json.ignore-parse-errors' = 'false');
             CREATE TABLE dst (id BIGINT, name STRING) WITH ('connector' = 'filesystem', 'path' = '{}', \
               'format' = 'json');",
            input.display(),
            out.display()
        ))
        .await
        .unwrap();
    let mut job = None;
    for o in engine
        .execute("INSERT INTO dst SELECT * FROM src")
        .await
        .unwrap()
    {
        if let StatementOutput::Job(j) = o {
            job = Some(j);
        }
    }
    let job = job.unwrap();
    let err = job.wait().await.unwrap_err().to_string();
    assert!(err.contains("malformed"), "{err}");
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

/// The REPL, fed on stdin as a terminal user would type: an INSERT runs in the background,
/// `SHOW JOBS` lists it, `STOP JOB` stops it with a final checkpoint, and the job, run again
/// in a new session, resumes from that checkpoint.
#[test]
fn repl_runs_insert_jobs_in_the_background() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let chk = dir.path().join("chk");
    let script = format!(
        "SET 'state.checkpoints.dir' = '{}';
CREATE TABLE bid (auction BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH ('connector' = 'nexmark', 'nexmark.events' = '1000000000', 'nexmark.table' = 'bid');
CREATE TABLE out (auction BIGINT, price BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO out SELECT auction, price FROM bid;
SHOW JOBS;
STOP JOB 'nosuch';
STOP JOB 'out';
SHOW JOBS;
",
        chk.display()
    );
    let session = |input: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let out = session(&script);
    assert!(out.contains("Job 'out' submitted"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("out ") && l.contains("RUNNING")),
        "{out}"
    );
    assert!(out.contains("no job 'nosuch' in this session"), "{out}");
    assert!(out.contains("Job 'out' stopped"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("out ") && l.contains("STOPPED")),
        "{out}"
    );
    // A new session resumes the job from the final checkpoint; quitting stops it again.
    let again = script.replace(
        "SHOW JOBS;\nSTOP JOB 'nosuch';\nSTOP JOB 'out';\nSHOW JOBS;\n",
        "",
    );
    let out = session(&again);
    assert!(out.contains("restored out from checkpoint"), "{out}");
    assert!(out.contains("Job 'out' stopped"), "{out}");
}

/// A statement set is one job: its source is read once for all its INSERTs, and each table
/// gets exactly its INSERT's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_set_reads_its_source_once() {
    let dir = tempdir();
    let input = dir.path().join("bids.json");
    let lines: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                r#"{{"auction": {}, "price": {}, "date_time": "2026-01-01 00:00:{:02}.{:03}"}}"#,
                i % 10,
                i,
                i / 100,
                i % 100
            )
        })
        .collect();
    write_lines(&input, &lines);
    let out = |name: &str| dir.path().join(name);
    let sql = format!(
        "CREATE TABLE bid (auction BIGINT, price BIGINT, date_time TIMESTAMP(3)) \
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE cheap (auction BIGINT, price BIGINT) \
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE dear (auction BIGINT, price BIGINT) \
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         EXECUTE STATEMENT SET BEGIN
           INSERT INTO cheap SELECT auction, price FROM bid WHERE price < 300;
           INSERT INTO dear SELECT auction, price FROM bid WHERE price >= 300;
         END;",
        input.display(),
        out("cheap").display(),
        out("dear").display()
    );
    let engine = weir::Engine::new();
    let mut jobs = vec![];
    for o in engine
        .execute_with(&sql, SelectOutput::Discard)
        .await
        .unwrap()
    {
        if let StatementOutput::Job(j) = o {
            jobs.push(j);
        }
    }
    assert_eq!(jobs.len(), 1, "one job for the statement set");
    assert_eq!(jobs[0].identity, "cheap,dear");
    let summary = jobs.remove(0).wait().await.unwrap();
    assert_eq!(summary.events_in, 1000, "bid read once");
    assert_eq!(summary.rows_out, 1000);
    let count = |name: &str| -> usize {
        files_under(&out(name))
            .iter()
            .filter(|p| !is_hidden(p))
            .map(|p| std::fs::read_to_string(p).unwrap().lines().count())
            .sum()
    };
    assert_eq!((count("cheap"), count("dear")), (300, 700));
}

/// `producer | weir run job.sql`: a JSON source on `/dev/stdin` (a pipe) hands rows on while
/// the producer still writes. Each record is written only after the row before it came out of
/// the job's print sink, so a source that read to EOF first would never print it (the test
/// gives up after two minutes rather than hang).
#[test]
fn a_pipe_on_stdin_is_read_as_it_arrives() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("pipe.sql");
    std::fs::write(
        &job,
        "CREATE TABLE ev (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
           WITH ('connector' = 'filesystem', 'path' = '/dev/stdin', 'format' = 'json');
         CREATE TABLE out (k BIGINT) WITH ('connector' = 'print');
         INSERT INTO out SELECT k * 10 FROM ev;",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("run")
        .arg(&job)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    for k in 1..=5 {
        writeln!(stdin, r#"{{"k": {k}, "ts": "2026-01-01 00:00:0{k}.000"}}"#).unwrap();
        stdin.flush().unwrap();
        // The row must come out while stdin is still open.
        let want = format!("+I[{}]", k * 10);
        loop {
            let line = rx
                .recv_timeout(std::time::Duration::from_secs(120))
                .expect("no row while stdin stays open: the pipe is not read as it arrives");
            if line.contains(&want) {
                break;
            }
        }
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}
