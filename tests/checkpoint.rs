//! Fault tolerance, proven by killing the job: `weir run` killed with SIGKILL at random
//! moments (and, with the `failpoints` feature, aborted at each step of the checkpoint
//! protocol), restarted until it finishes, with the parallelism changing between restarts.
//! The published output must then be exactly the answer of an uninterrupted run: every id
//! once, and the windows equal to the reference computed here.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int64Type, TimestampMillisecondType};

const WINDOW_MS: i64 = 10_000;

/// The tests here time kills against running processes: one at a time, so they do not slow
/// each other down.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Input: `files` JSON-lines files of `rows` rows each; ids unique, times increasing with a
/// little disorder (less than the watermark delay, so nothing is late).
fn write_input(dir: &Path, files: usize, rows: usize) -> Vec<(i64, i64, i64)> {
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let base = 1_767_225_600_000i64; // 2026-01-01
    let mut all = vec![];
    for f in 0..files {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(dir.join("in").join(format!("part-{f}.json"))).unwrap(),
        );
        for i in 0..rows {
            let id = (f * rows + i) as i64;
            let jitter = (id * 7919) % 400;
            let ts = base + i as i64 * 5 + jitter;
            let k = id % 7;
            let t = chrono::DateTime::from_timestamp_millis(ts)
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S%.3f");
            writeln!(out, r#"{{"id": {id}, "k": {k}, "ts": "{t}"}}"#).unwrap();
            all.push((id, k, ts));
        }
    }
    all
}

fn job_sql(dir: &Path, interval: &str) -> String {
    let d = dir.display();
    format!(
        "SET 'state.checkpoints.dir' = '{d}/chk';
SET 'execution.checkpointing.interval' = '{interval}';
CREATE TABLE events (id BIGINT, k BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH ('connector' = 'filesystem', 'path' = '{d}/in', 'format' = 'json');
CREATE TABLE raw_out (id BIGINT, k BIGINT, ts TIMESTAMP(3)) PARTITIONED BY (k) WITH ('connector' = 'filesystem',
  'path' = '{d}/out/raw', 'format' = 'parquet', 'sink.rolling-policy.file-size' = '64KB');
CREATE TABLE win_out (window_start TIMESTAMP(3), k BIGINT, n BIGINT, s BIGINT)
  WITH ('connector' = 'filesystem', 'path' = '{d}/out/win', 'format' = 'parquet');
INSERT INTO raw_out SELECT id, k, ts FROM events WHERE id >= 0;
INSERT INTO win_out SELECT window_start, k, COUNT(*) AS n, SUM(id) AS s
  FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
  GROUP BY window_start, window_end, k;
"
    )
}

/// `weir run JOB` in the background, its stderr kept.
fn spawn_run(job: &Path) -> std::process::Child {
    weir()
        .arg("run")
        .arg(job)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// SIGINT (stop with a final checkpoint) and wait: whether it exited 0, and its stderr.
fn interrupt(child: std::process::Child) -> (bool, String) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

/// Every published (not hidden) Parquet file under `dir`, read.
fn read_parquet(dir: &Path) -> Vec<RecordBatch> {
    let mut out = vec![];
    for p in common::files_under(dir) {
        if common::is_hidden(&p) {
            continue;
        }
        let f = std::fs::File::open(&p).unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap();
        out.extend(r.map(|b| b.unwrap()));
    }
    out
}

/// Hidden (in-progress or not yet published) files left under `dir`.
fn hidden_files(dir: &Path) -> Vec<PathBuf> {
    common::files_under(dir)
        .into_iter()
        .filter(|p| common::is_hidden(p))
        .collect()
}

/// Check the published output against the input: every id exactly once, windows exact.
fn check_output(dir: &Path, input: &[(i64, i64, i64)]) {
    let leftovers = hidden_files(&dir.join("out"));
    assert!(leftovers.is_empty(), "hidden files left: {leftovers:?}");
    let mut ids: Vec<i64> = read_parquet(&dir.join("out/raw"))
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(n, ids.len(), "{} ids written twice", n - ids.len());
    assert_eq!(ids.len(), input.len(), "ids lost");
    let mut want: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for (id, k, ts) in input {
        let e = want
            .entry((ts.div_euclid(WINDOW_MS) * WINDOW_MS, *k))
            .or_default();
        e.0 += 1;
        e.1 += id;
    }
    let mut got: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for b in read_parquet(&dir.join("out/win")) {
        let ws = b.column(0).as_primitive::<TimestampMillisecondType>();
        let k = b.column(1).as_primitive::<Int64Type>();
        let cnt = b.column(2).as_primitive::<Int64Type>();
        let sum = b.column(3).as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            let prev = got.insert((ws.value(r), k.value(r)), (cnt.value(r), sum.value(r)));
            assert!(
                prev.is_none(),
                "window {} key {} written twice",
                ws.value(r),
                k.value(r)
            );
        }
    }
    assert_eq!(got.len(), want.len(), "number of window rows");
    assert_eq!(got, want, "window results");
}

/// A small random source without a dependency.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// Run the job until it finishes, killing it `kills` times at random moments (SIGKILL), with
/// parallelism 1, 2 or 3 on each start. Returns the stderr of every run.
fn run_with_kills(dir: &Path, kills: usize, seed: u64) -> Vec<String> {
    let job = dir.join("job.sql");
    let mut rng = Lcg(seed);
    let mut logs = vec![];
    let mut killed = 0;
    for attempt in 0..kills + 20 {
        let p = 1 + (attempt % 3);
        let mut child = weir()
            .args(["run", "--quiet", "--parallelism", &p.to_string()])
            .arg(&job)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut finished = None;
        if killed < kills {
            // Kill at a random moment, 0.3 to 2 s in: poll the child in small steps.
            let steps = 12 + rng.below(68);
            for _ in 0..steps {
                std::thread::sleep(Duration::from_millis(25));
                if let Some(status) = child.try_wait().unwrap() {
                    finished = Some(status);
                    break;
                }
            }
            if finished.is_none() {
                child.kill().unwrap();
                killed += 1;
            }
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        logs.push(err.clone());
        if finished.is_some() || (killed >= kills && out.status.success()) {
            assert!(out.status.success(), "run {attempt} failed: {err}");
            return logs;
        }
        if out.status.success() {
            return logs;
        }
    }
    panic!("the job did not finish: {logs:?}");
}

#[test]
fn killed_file_job_resumes_exactly_once() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Enough rows that a run outlasts the kill window (0.3 to 2 s): a run that finishes
    // before its kill restores nothing.
    let input = write_input(dir, 4, 500_000);
    std::fs::write(dir.join("job.sql"), job_sql(dir, "100 ms")).unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let logs = run_with_kills(dir, 5, seed);
    check_output(dir, &input);
    // A restarted run resumed from a checkpoint instead of reading everything again.
    assert!(
        logs.iter()
            .any(|l| l.contains("restored raw_out from checkpoint")),
        "no run restored (seed {seed}): {logs:?}"
    );
    // Retention: the newest 3 checkpoints are kept, older ones deleted with their records.
    for job in ["raw_out", "win_out"] {
        let records = std::fs::read_dir(dir.join("chk").join(job).join("epochs"))
            .unwrap()
            .count();
        let folders = std::fs::read_dir(dir.join("chk").join(job))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("chk-"))
            .count();
        assert!(
            records <= 3 && folders <= 3,
            "{job}: {records} records, {folders} folders kept"
        );
    }
    // Running the finished job again publishes nothing twice.
    let out = weir()
        .args(["run"])
        .arg(dir.join("job.sql"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("raw_out already finished (checkpoint"),
        "{err}"
    );
    check_output(dir, &input);
}

#[test]
fn stop_takes_a_final_checkpoint_and_a_restart_continues() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let input = write_input(dir, 2, 40_000);
    std::fs::write(dir.join("job.sql"), job_sql(dir, "1 h")).unwrap();
    let child = weir()
        .args(["run", "--parallelism", "2"])
        .arg(dir.join("job.sql"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SIGINT: stop with a final checkpoint.
    let (ok, err) = interrupt(child);
    assert!(ok, "{err}");
    let out = weir()
        .args(["run", "--parallelism", "1"])
        .arg(dir.join("job.sql"))
        .output()
        .unwrap();
    let err2 = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err2}");
    check_output(dir, &input);
    if err.contains("stopped") {
        assert!(err2.contains("restored raw_out"), "{err}\n{err2}");
    }
}

#[test]
fn unknown_settings_and_pipes_are_refused() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("a.sql"), "SET 'state.checkpoint.dir' = '/tmp/x';").unwrap();
    let out = weir().arg("run").arg(dir.join("a.sql")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("did you mean 'state.checkpoints.dir'"),
        "{err}"
    );
    std::fs::write(
        dir.join("b.sql"),
        "SET 'execution.checkpointing.interval' = '1 s';
         CREATE TABLE t (auction BIGINT) WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'nexmark.events' = '10');
         CREATE TABLE o (a BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO o SELECT auction FROM t;",
    )
    .unwrap();
    let out = weir().arg("run").arg(dir.join("b.sql")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no checkpoint directory"), "{err}");
    std::fs::write(
        dir.join("c.sql"),
        format!(
            "SET 'state.checkpoints.dir' = '{}/chk';
             CREATE TABLE t (a BIGINT) WITH ('connector' = 'filesystem', 'path' = '/dev/stdin', 'format' = 'json');
             CREATE TABLE o (a BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO o SELECT a FROM t;",
            dir.display()
        ),
    )
    .unwrap();
    let out = weir()
        .arg("run")
        .arg(dir.join("c.sql"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is a pipe"), "{err}");
}

/// Each step of the protocol crashed once (abort, as `kill -9`): a restart finishes with
/// exactly the right output and no hidden files left.
#[cfg(feature = "failpoints")]
#[test]
fn failpoints_at_every_step_of_a_checkpoint() {
    let _serial = serial();
    for point in [
        "after-snapshot",
        "checkpoint-after-manifest",
        "checkpoint-after-epoch-record",
        "sink-mid-commit",
        "before-committed-marker",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let input = write_input(dir, 3, 150_000);
        std::fs::write(dir.join("job.sql"), job_sql(dir, "50 ms")).unwrap();
        let out = weir()
            .args(["run", "--quiet", "--parallelism", "2"])
            .arg(dir.join("job.sql"))
            .env("WEIR_FAILPOINT", format!("{point}:2"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(&format!("failpoint {point} hit")),
            "{point} was not hit: {err}"
        );
        let out = weir()
            .args(["run", "--quiet", "--parallelism", "3"])
            .arg(dir.join("job.sql"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{point}: restart failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        check_output(dir, &input);
    }
}

/// Published JSON rows' `id`s under `dir` (hidden, unpublished files skipped).
fn published_ids(dir: &Path) -> Vec<i64> {
    let mut out = vec![];
    for p in common::files_under(dir) {
        if common::is_hidden(&p) {
            continue;
        }
        for line in std::fs::read_to_string(&p).unwrap_or_default().lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                && let Some(id) = v["id"].as_i64()
            {
                out.push(id);
            }
        }
    }
    out
}

fn append_ids(path: &Path, ids: std::ops::Range<i64>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for id in ids {
        writeln!(f, r#"{{"id": {id}}}"#).unwrap();
    }
}

/// A followed directory (`'source.monitor-interval'`) with checkpoints: stopped with a final
/// checkpoint, a file grows and a new one appears while the job is down; the restarted job
/// reads the grown file from where it stopped and the new one whole: every id once.
#[test]
fn followed_files_resume_where_they_stopped() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    append_ids(&input.join("a.json"), 0..3000);
    std::fs::write(
        dir.join("job.sql"),
        format!(
            "SET 'state.checkpoints.dir' = '{d}/chk';
             SET 'execution.checkpointing.interval' = '200 ms';
             CREATE TABLE t (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{d}/in',
               'format' = 'json', 'source.monitor-interval' = '100 ms');
             CREATE TABLE o (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{d}/out',
               'format' = 'json');
             INSERT INTO o SELECT id FROM t;",
            d = dir.display()
        ),
    )
    .unwrap();
    let run_until = |n: usize| {
        let child = spawn_run(&dir.join("job.sql"));
        // (A bound so that a broken restore fails rather than hangs; not a speed limit.)
        for _ in 0..2400 {
            if published_ids(&dir.join("out")).len() >= n {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (ok, err) = interrupt(child);
        assert!(ok, "{err}");
        err
    };
    run_until(3000);
    append_ids(&input.join("a.json"), 3000..4000);
    append_ids(&input.join("b.json"), 4000..4500);
    let err = run_until(4500);
    assert!(err.contains("restored o from checkpoint"), "{err}");
    let mut ids = published_ids(&dir.join("out"));
    ids.sort();
    assert_eq!(ids, (0..4500).collect::<Vec<i64>>());
}

/// Barriers never wait behind watermark alignment: a file whose event time is an hour ahead
/// of a followed directory's is held back by `'scan.watermark.alignment.max-drift'` (it waits
/// for the slow source, which has nothing new), yet checkpoints go on completing, because a
/// source paused by alignment still injects barriers.
#[test]
fn a_source_paused_by_watermark_alignment_still_takes_barriers() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("slow")).unwrap();
    let line = |id: i64, ts: &str| format!(r#"{{"id": {id}, "k": {}, "ts": "{ts}"}}"#, id % 3);
    let slow: Vec<String> = (0..10).map(|i| line(i, "2026-01-01 00:00:00")).collect();
    std::fs::write(dir.join("slow/a.json"), slow.join("\n") + "\n").unwrap();
    let fast: Vec<String> = (0..50_000)
        .map(|i| line(i, "2026-01-01 01:00:00"))
        .collect();
    std::fs::write(dir.join("fast.json"), fast.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.join("job.sql"),
        format!(
            "SET 'state.checkpoints.dir' = '{d}/chk';
             SET 'execution.checkpointing.interval' = '100 ms';
             CREATE TABLE slow (id BIGINT, k BIGINT, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH ('connector' = 'filesystem', 'path' = '{d}/slow', 'format' = 'json',
                     'source.monitor-interval' = '100 ms',
                     'scan.watermark.alignment.max-drift' = '1 s');
             CREATE TABLE fast (id BIGINT, k BIGINT, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH ('connector' = 'filesystem', 'path' = '{d}/fast.json', 'format' = 'json',
                     'scan.watermark.alignment.max-drift' = '1 s');
             CREATE TABLE o (id BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO o SELECT f.id FROM fast f JOIN slow s ON f.k = s.k;",
            d = dir.display()
        ),
    )
    .unwrap();
    let child = spawn_run(&dir.join("job.sql"));
    // The newest epoch record (older ones go with retention).
    let epochs = || {
        common::files_under(&dir.join("chk"))
            .iter()
            .filter(|p| p.to_string_lossy().contains("/epochs/"))
            .filter_map(|p| {
                p.file_stem()?
                    .to_str()?
                    .strip_prefix("epoch-")?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0)
    };
    // (A bound so that a stall fails rather than hangs; not a speed limit.)
    for _ in 0..1200 {
        if epochs() >= 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, err) = interrupt(child);
    assert!(epochs() >= 5, "checkpoints stalled behind alignment: {err}");
    // The fast file was held back: far from all of it was read.
    let read: u64 = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("stopped: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        read < 50_000,
        "alignment did not hold the fast source back: {err}"
    );
}

/// A push table with checkpoints: the application pushes, a checkpoint completes, it pushes
/// more, and the job is cancelled (what no checkpoint covers is discarded). A new engine
/// restores the job; `Job::resume_position` says how many rows the checkpoint covers, and the
/// application pushes again from there: every id is published exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_tables_resume_from_the_rows_the_checkpoint_covers() {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let script = format!(
        "SET 'state.checkpoints.dir' = '{d}/chk';
         SET 'execution.checkpointing.interval' = '1 h';
         CREATE TABLE feed (id BIGINT) WITH ('connector' = 'push');
         CREATE TABLE o (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{d}/out',
           'format' = 'json');
         INSERT INTO o SELECT id FROM feed;",
        d = dir.display()
    );
    let schema = std::sync::Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let ids = |r: std::ops::Range<i64>| {
        RecordBatch::try_new(
            schema.clone(),
            vec![std::sync::Arc::new(Int64Array::from_iter_values(r))],
        )
        .unwrap()
    };
    let start = |engine: weir::Engine| {
        let script = script.clone();
        async move {
            let mut job = None;
            for out in engine.execute(&script).await.unwrap() {
                if let weir::StatementOutput::Job(j) = out {
                    job = Some(j);
                }
            }
            (job.expect("a job"), engine.push_handle("feed").unwrap())
        }
    };
    let (job, feed) = start(weir::Engine::new()).await;
    assert_eq!(job.resume_position("feed"), 0);
    for k in 0..3 {
        feed.push(ids(k * 100..(k + 1) * 100)).await.unwrap();
    }
    while weir::runtime::JobMetrics::get(&job.metrics().events_in) < 300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    job.checkpoint().await.unwrap();
    feed.push(ids(300..400)).await.unwrap();
    job.cancel();
    let _ = job.wait().await;
    let (job, feed) = start(weir::Engine::new()).await;
    let from = job.resume_position("feed") as i64;
    assert_eq!(from, 300, "the checkpoint covers the rows read before it");
    feed.push(ids(from..600)).await.unwrap();
    feed.close().unwrap();
    let s = job.wait().await.unwrap();
    assert_eq!(s.events_in, (600 - from) as u64);
    let mut got = published_ids(&dir.join("out"));
    got.sort();
    assert_eq!(got, (0..600).collect::<Vec<i64>>());
}

/// A late-data table in a checkpointed job, aborted right after an epoch record and run again:
/// the windows are exact, and every late row reaches the late table at least once (it is
/// flushed at each barrier, not part of the checkpoint's commit), and nothing else does.
#[cfg(feature = "failpoints")]
#[test]
fn late_rows_reach_the_late_table_at_least_once() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let n = 200_000i64;
    let is_late = |i: i64| i % 1000 == 999;
    let mut lines = String::new();
    for i in 0..n {
        // 1 ms apart; every thousandth row an hour back: late.
        let ms = 1_767_225_600_000 + i - if is_late(i) { 3_600_000 } else { 0 };
        let ts = chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S%.3f");
        lines.push_str(&format!("{{\"id\": {i}, \"ts\": \"{ts}\"}}\n"));
    }
    std::fs::write(dir.join("in/a.json"), lines).unwrap();
    std::fs::write(
        dir.join("job.sql"),
        format!(
            "SET 'state.checkpoints.dir' = '{d}/chk';
             SET 'execution.checkpointing.interval' = '50 ms';
             CREATE TABLE late_rows (id BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'filesystem',
               'path' = '{d}/late', 'format' = 'json');
             CREATE TABLE t (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH ('connector' = 'filesystem', 'path' = '{d}/in', 'format' = 'json',
                     'late-data.table' = 'late_rows');
             CREATE TABLE o (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{d}/out',
               'format' = 'json');
             INSERT INTO o SELECT COUNT(*) AS id
               FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND))
               GROUP BY window_start, window_end;",
            d = dir.display()
        ),
    )
    .unwrap();
    let out = weir()
        .arg("run")
        .arg(dir.join("job.sql"))
        .env("WEIR_FAILPOINT", "checkpoint-after-epoch-record:2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && err.contains("failpoint"), "{err}");
    let out = weir().arg("run").arg(dir.join("job.sql")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    // Windows: the on-time rows, counted once each (a window's count is in `id`).
    let counted: i64 = published_ids(&dir.join("out")).iter().sum();
    let late: Vec<i64> = (0..n).filter(|i| is_late(*i)).collect();
    assert_eq!(counted, n - late.len() as i64, "{err}");
    let mut got = published_ids(&dir.join("late"));
    got.sort();
    got.dedup();
    assert_eq!(got, late, "late rows, at least once");
}
