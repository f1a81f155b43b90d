//! `weir serve` on loopback, driven with reqwest as clients would: ingest in every body type,
//! results over `GET` and server-sent events checked against DataFusion's batch answer,
//! rejections, body limits, token buckets per tenant, bad lines, `kill -9` while acknowledged
//! POSTs are in flight, the jobs API and its CLI, and `/metrics`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

struct Serve {
    child: Child,
    url: String,
    log: Arc<Mutex<String>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Start `weir serve` in `dir` with `config` (journal and jobs under `dir`) and job files.
fn start(dir: &Path, config: &str, jobs: &[&str]) -> Serve {
    let cfg = dir.join("serve.toml");
    let journal = dir.join("data/journal");
    std::fs::write(
        &cfg,
        format!(
            "{}\n",
            config.replace("JOURNAL", &journal.display().to_string())
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--config")
        .arg(&cfg)
        .arg("--parallelism")
        .arg("2");
    for (i, sql) in jobs.iter().enumerate() {
        let p = dir.join(format!("job{i}.sql"));
        std::fs::write(&p, sql).unwrap();
        cmd.arg(p);
    }
    let mut child = cmd
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let keep = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
            keep.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("weir serve printed nothing");
    let url = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first stderr line: {first}"))
        .to_string();
    let server = Serve { child, url, log };
    // Ready once the jobs are started.
    for _ in 0..600 {
        if let Ok(r) = reqwest::blocking_get(&format!("{}/readyz", server.url))
            && r == 200
        {
            return server;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("never ready: {}", server.log.lock().unwrap());
}

mod reqwest {
    pub use ::reqwest::*;
    /// A status code, from a blocking thread (the helpers above are sync).
    pub fn blocking_get(url: &str) -> Result<u16> {
        let url = url.to_string();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                // Readiness only: the TLS test checks the certificate itself.
                let c = ::reqwest::Client::builder()
                    .danger_accept_invalid_certs(true)
                    .build()?;
                Ok(c.get(&url).send().await?.status().as_u16())
            })
        })
        .join()
        .unwrap()
    }
}

const EVENTS: &str = "CREATE TABLE events (tenant STRING METADATA FROM 'tenant' VIRTUAL, device STRING, temp DOUBLE, \
     ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'http', 'format' = 'json');";

const NO_TENANTS: &str = "[server]\njournal_dir = \"JOURNAL\"";

fn ts(minute: i64, ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(1_767_225_600_000 + minute * 60_000 + ms)
        .unwrap()
        .naive_utc();
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// Record `i`: 600 ms after record `i - 1` (watermarks are tracked per row, so a producer's
/// records are roughly in time order), or at `minute` when given.
fn record(i: i64, minute: Option<i64>) -> Value {
    let at = match minute {
        Some(m) => ts(m, 0),
        None => ts(0, i * 600),
    };
    json!({ "device": format!("d{}", i % 5), "temp": (i * 37 % 100) as f64 / 4.0, "ts": at })
}

/// Server-sent events from a subscription, as (event, id, data), gathered in the background.
fn sse(url: String, last_id: Option<String>) -> Arc<Mutex<Vec<(String, String, Value)>>> {
    let out = Arc::new(Mutex::new(vec![]));
    let keep = out.clone();
    tokio::spawn(async move {
        let mut req = reqwest::Client::new().get(&url);
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let mut resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (mut ev, mut id, mut data) =
                    (String::from("message"), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        ev = v.into();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = v.into();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if data.is_empty() {
                    continue; // a heartbeat comment
                }
                keep.lock()
                    .unwrap()
                    .push((ev, id, serde_json::from_str(&data).unwrap()));
            }
        }
    });
    out
}

/// The offset after the last record of `table`'s journal, from `/metrics`.
async fn journal_offset(c: &reqwest::Client, base: &str, table: &str) -> u64 {
    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("weir_journal_offset{{table=\"{table}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("{prefix} in {metrics}"))
        .parse()
        .unwrap()
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("waited too long for {what}");
}

async fn post(
    c: &reqwest::Client,
    url: &str,
    ctype: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let r = c
        .post(url)
        .header("content-type", ctype)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// DataFusion's batch answer: per device and minute, count and average.
async fn batch_windows(records: &[Value]) -> BTreeSet<(String, String, i64, i64)> {
    let device: Vec<&str> = records
        .iter()
        .map(|r| r["device"].as_str().unwrap())
        .collect();
    let temp: Vec<f64> = records
        .iter()
        .map(|r| r["temp"].as_f64().unwrap())
        .collect();
    let ts: Vec<i64> = records
        .iter()
        .map(|r| {
            chrono::NaiveDateTime::parse_from_str(
                r["ts"].as_str().unwrap(),
                "%Y-%m-%d %H:%M:%S%.3f",
            )
            .unwrap()
            .and_utc()
            .timestamp_millis()
        })
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("device", DataType::Utf8, false),
        Field::new("temp", DataType::Float64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(device)),
            Arc::new(Float64Array::from(temp)),
            Arc::new(TimestampMillisecondArray::from(ts)),
        ],
    )
    .unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_batch("t", batch).unwrap();
    let out = ctx
        .sql(
            "SELECT device, CAST(date_bin(INTERVAL '1 minute', ts) AS VARCHAR) AS ws, count(*) AS n, \
             avg(temp) AS a FROM t GROUP BY device, date_bin(INTERVAL '1 minute', ts)",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut set = BTreeSet::new();
    for b in out {
        let fmt = |c: usize, r: usize| {
            datafusion::arrow::util::display::array_value_to_string(b.column(c), r).unwrap()
        };
        for r in 0..b.num_rows() {
            let ws = fmt(1, r).replace('T', " ");
            let ws = format!("{}.000", &ws[..19]);
            let a: f64 = fmt(3, r).parse().unwrap();
            set.insert((
                fmt(0, r),
                ws,
                fmt(2, r).parse().unwrap(),
                (a * 1e6).round() as i64,
            ));
        }
    }
    set
}

fn served_windows(rows: &[Value]) -> BTreeSet<(String, String, i64, i64)> {
    rows.iter()
        .map(|r| {
            (
                r["device"].as_str().unwrap().to_string(),
                r["window_start"].as_str().unwrap().to_string(),
                r["n"].as_i64().unwrap(),
                (r["avg_temp"].as_f64().unwrap() * 1e6).round() as i64,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_every_body_type_and_serve_the_batch_answer_live() {
    let dir = tempfile::tempdir().unwrap();
    let job = format!(
        "{EVENTS}
         CREATE TABLE per_minute (device STRING, window_start TIMESTAMP(3), n BIGINT, avg_temp DOUBLE)
           WITH ('connector' = 'http');
         CREATE TABLE latest (device STRING, n BIGINT, max_temp DOUBLE, PRIMARY KEY (device) NOT ENFORCED)
           WITH ('connector' = 'http');
         INSERT INTO per_minute SELECT device, window_start, COUNT(*), AVG(temp)
           FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
           GROUP BY device, window_start, window_end;
         INSERT INTO latest SELECT device, COUNT(*), MAX(temp) FROM events GROUP BY device;"
    );
    let s = start(dir.path(), NO_TENANTS, &[&job]);
    let c = reqwest::Client::new();
    let events = sse(format!("{}/v1/tables/per_minute/subscribe", s.url), None);
    // Subscribed (its first snapshot is in) before anything is posted.
    wait_until("the subscription", || !events.lock().unwrap().is_empty()).await;
    let ingest = format!("{}/v1/tables/events/records", s.url);
    // Minutes 0-2 as NDJSON: the first minutes fire as later rows arrive.
    let first: Vec<Value> = (0..300).map(|i| record(i, None)).collect();
    let body: String = first.iter().map(|r| r.to_string() + "\n").collect();
    assert_eq!(
        post(&c, &ingest, "application/x-ndjson", body).await,
        (200, json!({"accepted": 300, "rejected": 0}))
    );
    // Rows arrive while input is still to come.
    wait_until("the first windows over SSE", || {
        events
            .lock()
            .unwrap()
            .iter()
            .any(|(e, _, d)| e == "rows" && !d.as_array().unwrap().is_empty())
    })
    .await;
    // Minutes 3-6 as a JSON array and as CSV, then a record at minute 9.
    let second: Vec<Value> = (300..500).map(|i| record(i, None)).collect();
    assert_eq!(
        post(
            &c,
            &ingest,
            "application/json",
            Value::Array(second.clone()).to_string()
        )
        .await
        .1["accepted"],
        200
    );
    let third: Vec<Value> = (500..700).map(|i| record(i, None)).collect();
    let mut csv = String::from("device,temp,ts\n");
    for r in &third {
        csv.push_str(&format!(
            "{},{},{}\n",
            r["device"].as_str().unwrap(),
            r["temp"],
            r["ts"].as_str().unwrap()
        ));
    }
    assert_eq!(post(&c, &ingest, "text/csv", csv).await.1["accepted"], 200);
    let last = record(2000, Some(9));
    assert_eq!(
        post(&c, &ingest, "application/x-ndjson", last.to_string())
            .await
            .0,
        200
    );
    let mut all: Vec<Value> = first.iter().chain(&second).chain(&third).cloned().collect();
    let expected = batch_windows(&all).await;
    let streamed = || -> BTreeSet<(String, String, i64, i64)> {
        let got: Vec<Value> = events
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _, _)| e == "rows" || e == "snapshot")
            .flat_map(|(_, _, d)| d.as_array().unwrap().clone())
            .collect();
        served_windows(&got)
    };
    for _ in 0..600 {
        if streamed() == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = streamed();
    assert_eq!(
        got.symmetric_difference(&expected).collect::<Vec<_>>(),
        Vec::<&(String, String, i64, i64)>::new(),
        "streamed vs batch; log: {}",
        s.log.lock().unwrap()
    );
    // GET gives the same rows.
    let got: Vec<Value> = c
        .get(format!("{}/v1/tables/per_minute", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served_windows(&got), expected);
    // The keyed table: the latest row per device, and one row by key.
    all.push(last);
    let n_d3 = all.iter().filter(|r| r["device"] == "d3").count() as i64;
    let max_d3 = all
        .iter()
        .filter(|r| r["device"] == "d3")
        .map(|r| r["temp"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    let url = format!("{}/v1/tables/latest?key=d3", s.url);
    wait_until("the keyed row", || {
        let url = url.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async { reqwest::get(&url).await.ok()?.json::<Value>().await.ok() })
        })
        .join()
        .unwrap()
        .is_some_and(|v| v["n"] == n_d3)
    })
    .await;
    let row: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(row, json!({"device": "d3", "n": n_d3, "max_temp": max_d3}));
    let latest: Vec<Value> = c
        .get(format!("{}/v1/tables/latest", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(latest.len(), 5);
    assert_eq!(
        c.get(format!("{}/v1/tables/latest?key=nope", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // A reconnect from the first rows event's id: no gap, no duplicate.
    let (first_id, before): (String, Vec<Value>) = {
        let ev = events.lock().unwrap();
        let i = ev
            .iter()
            .position(|(e, _, d)| e == "rows" && !d.as_array().unwrap().is_empty())
            .unwrap();
        let before = ev[..=i]
            .iter()
            .filter(|(e, _, _)| e == "rows" || e == "snapshot")
            .flat_map(|(_, _, d)| d.as_array().unwrap().clone())
            .collect();
        (ev[i].1.clone(), before)
    };
    let resumed = sse(
        format!("{}/v1/tables/per_minute/subscribe", s.url),
        Some(first_id),
    );
    wait_until("the resumed tail", || {
        let after: Vec<Value> = resumed
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _, _)| e == "rows")
            .flat_map(|(_, _, d)| d.as_array().unwrap().clone())
            .collect();
        before.len() + after.len() == got.len()
    })
    .await;
    let after: Vec<Value> = resumed
        .lock()
        .unwrap()
        .iter()
        .filter(|(e, _, _)| e == "rows")
        .flat_map(|(_, _, d)| d.as_array().unwrap().clone())
        .collect();
    assert!(
        resumed
            .lock()
            .unwrap()
            .iter()
            .all(|(e, _, _)| e == "rows" || e == "watermark")
    );
    // The job's watermark went out too, as a timestamp.
    let wm = events
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(e, _, _)| e == "watermark")
        .map(|(_, _, d)| d["watermark"].as_str().unwrap().to_string())
        .expect("a watermark event");
    assert!(wm.starts_with("2026-01-01 00:0"), "{wm}");
    let mut joined = before.clone();
    joined.extend(after);
    assert_eq!(served_windows(&joined), expected);
    // An id of another server run: reset and a snapshot.
    let other = sse(
        format!("{}/v1/tables/per_minute/subscribe", s.url),
        Some("1:5".into()),
    );
    wait_until("reset", || other.lock().unwrap().len() >= 2).await;
    let kinds: Vec<String> = other
        .lock()
        .unwrap()
        .iter()
        .map(|(e, _, _)| e.clone())
        .collect();
    assert_eq!(kinds[..2], ["reset".to_string(), "snapshot".to_string()]);
}

fn tenants_config() -> String {
    format!(
        "[server]
journal_dir = \"JOURNAL\"
max_body = \"5MB\"
admin_keys_sha256 = [\"{}\"]

[[tenant]]
id = \"acme\"
keys_sha256 = [\"{}\"]
tables = [\"events\"]
read = [\"out\"]
rate = 1
burst = 5

[[tenant]]
id = \"globex\"
keys_sha256 = [\"{}\"]
tables = [\"events\"]
rate = 1000
burst = 1000

[[tenant]]
id = \"reader\"
keys_sha256 = [\"{}\"]
read = [\"out\"]
",
        sha("admin-key"),
        sha("acme-key"),
        sha("globex-key"),
        sha("reader-key")
    )
}

const PASSTHROUGH: &str =
    "CREATE TABLE out (tenant STRING, device STRING, temp DOUBLE) WITH ('connector' = 'http');
     INSERT INTO out SELECT tenant, device, temp FROM events;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_limits_and_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let job = format!("{EVENTS}\n{PASSTHROUGH}");
    let s = start(dir.path(), &tenants_config(), &[&job]);
    let c = reqwest::Client::new();
    let url = format!("{}/v1/tables/events/records", s.url);
    let one = record(1, None).to_string();
    // 401 without a key and with a wrong one; 403; 404; 415.
    let r = c.post(&url).body(one.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = c
        .post(&url)
        .bearer_auth("nope")
        .body(one.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(&url)
        .bearer_auth("reader-key")
        .body(one.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(format!("{}/v1/tables/nosuch/records", s.url))
        .bearer_auth("globex-key")
        .body(one.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .post(&url)
        .bearer_auth("globex-key")
        .header("content-type", "application/xml")
        .body(one.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // 413: declared, chunked, and a small gzip body that inflates past the limit.
    // Declared: the answer comes before the body is sent.
    let addr = s.url.strip_prefix("http://").unwrap().to_string();
    let raw = |head: String, chunked: bool| {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut t = std::net::TcpStream::connect(&addr).unwrap();
            t.write_all(head.as_bytes()).unwrap();
            if chunked {
                let chunk = vec![b'{'; 1 << 20];
                for _ in 0..6 {
                    if write!(t, "{:x}\r\n", chunk.len()).is_err()
                        || t.write_all(&chunk).is_err()
                        || t.write_all(b"\r\n").is_err()
                    {
                        break;
                    }
                }
                let _ = t.write_all(b"0\r\n\r\n");
            }
            let mut resp = vec![0u8; 4096];
            let n = t.read(&mut resp).unwrap_or(0);
            String::from_utf8_lossy(&resp[..n]).to_string()
        })
        .join()
        .unwrap()
    };
    let head = "POST /v1/tables/events/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer globex-key\r\n";
    let status = raw(format!("{head}Content-Length: {}\r\n\r\n", 6 << 20), false);
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    let status = raw(format!("{head}Transfer-Encoding: chunked\r\n\r\n"), true);
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::best());
    for _ in 0..(6 << 20) / one.len() + 1 {
        gz.write_all(one.as_bytes()).unwrap();
        gz.write_all(b"\n").unwrap();
    }
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 1 << 20);
    let r = c
        .post(&url)
        .bearer_auth("globex-key")
        .header("content-encoding", "gzip")
        .body(gz)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // A small gzip body is inflated and accepted.
    let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
    gz.write_all(format!("{one}\n{one}\n").as_bytes()).unwrap();
    let r = c
        .post(&url)
        .bearer_auth("globex-key")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 2);

    // 429: rate 1/s, burst 5, 15 at once, while another tenant at its rate gets everything in.
    let t0 = std::time::Instant::now();
    let flood = (0..15).map(|_| {
        let (c, url, one) = (c.clone(), url.clone(), one.clone());
        tokio::spawn(async move {
            c.post(&url)
                .bearer_auth("acme-key")
                .body(one)
                .send()
                .await
                .unwrap()
        })
    });
    let others = (0..20).map(|_| {
        let (c, url, one) = (c.clone(), url.clone(), one.clone());
        tokio::spawn(async move {
            c.post(&url)
                .bearer_auth("globex-key")
                .body(one)
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    let mut ok = 0;
    for f in flood {
        let r = f.await.unwrap();
        if r.status() == 200 {
            ok += 1;
            assert!(r.headers().contains_key("x-ratelimit-remaining"));
        } else {
            assert_eq!(r.status(), 429);
            assert!(
                r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u32>()
                    .unwrap()
                    >= 1
            );
            assert!(r.headers().contains_key("x-ratelimit-limit"));
            assert!(r.headers().contains_key("x-ratelimit-reset"));
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    assert!(
        ok >= 5 && ok as f64 <= 5.0 + elapsed.ceil(),
        "{ok} in {elapsed} s"
    );
    for o in others {
        assert_eq!(o.await.unwrap(), 200);
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = c
        .post(&url)
        .bearer_auth("acme-key")
        .body(one.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The tenant column comes from the key, never from the payload.
    let spoof =
        json!({"tenant": "globex", "device": "spoof", "temp": 1.0, "ts": ts(0, 0)}).to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        c.post(&url)
            .bearer_auth("acme-key")
            .body(spoof)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let out_url = format!("{}/v1/tables/out", s.url);
    assert_eq!(
        c.get(&out_url)
            .bearer_auth("globex-key")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let rows = loop {
        let rows: Vec<Value> = c
            .get(&out_url)
            .bearer_auth("reader-key")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if rows.iter().any(|r| r["device"] == "spoof") {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let spoofed = rows.iter().find(|r| r["device"] == "spoof").unwrap();
    assert_eq!(spoofed["tenant"], "acme");
    // ?access_token= for browsers' EventSource.
    let r = c
        .get(format!(
            "{}/v1/tables/out/subscribe?access_token=reader-key",
            s.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(r);

    // The jobs API needs the admin key.
    assert_eq!(
        c.get(format!("{}/v1/jobs", s.url))
            .bearer_auth("acme-key")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        c.get(format!("{}/v1/jobs", s.url))
            .bearer_auth("admin-key")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Metrics count per tenant.
    let m = c
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {m}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(value("weir_tenant_throttled_total{tenant=\"acme\"}") >= 9.0);
    assert!(value("weir_tenant_records_total{tenant=\"globex\"}") >= 22.0);
    assert!(value("weir_job_events_in_total{job=\"out\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_skipped_or_reject_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let job = format!("{EVENTS}\n{PASSTHROUGH}");
    let s = start(dir.path(), NO_TENANTS, &[&job]);
    let c = reqwest::Client::new();
    let url = format!("{}/v1/tables/events/records", s.url);
    let mut body = String::new();
    for i in 0..20_000i64 {
        if i % 2 == 1 {
            body.push_str(&format!(
                "{{\"device\": \"d\", \"temp\": \"hot{i}\", \"ts\": \"{}\"}}\n",
                ts(0, 0)
            ));
        } else {
            body.push_str(&(record(i, None).to_string() + "\n"));
        }
    }
    let (status, r) = post(&c, &url, "application/x-ndjson", body.clone()).await;
    assert_eq!(status, 400, "{r}");
    assert_eq!(r["rejected"], 10_000);
    let (status, r) = post(
        &c,
        &format!("{url}?on_error=skip"),
        "application/x-ndjson",
        body,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["accepted"].as_u64(), r["rejected"].as_u64()),
        (Some(10_000), Some(10_000))
    );
    let errors = r["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 20);
    assert_eq!(errors[0]["line"], 2);
    assert_eq!(errors[1]["line"], 4);
    assert_eq!(errors[0]["column"], "temp");
    // Only the good lines reached the job, and it is alive.
    wait_until("the good rows", || {
        let url = format!("{}/v1/tables/out?x=1", s.url);
        let rows = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                reqwest::get(&url)
                    .await
                    .unwrap()
                    .json::<Vec<Value>>()
                    .await
                    .unwrap()
            })
        })
        .join()
        .unwrap();
        rows.len() == 10_000
    })
    .await;
    let jobs: Value = c
        .get(format!("{}/v1/jobs", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs["jobs"][0]["status"], "running");
    assert_eq!(jobs["jobs"][0]["events_in"], 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_submitted_listed_and_stopped_over_http_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = format!(
        "[server]\njournal_dir = \"JOURNAL\"\ndata_dirs = [\"{}\"]",
        data.display()
    );
    let s = start(dir.path(), &cfg, &[]);
    let c = reqwest::Client::new();
    let jobs = format!("{}/v1/jobs", s.url);
    // A syntax error: 400 with its line and column; nothing started.
    let r = c
        .post(&jobs)
        .body(format!("{EVENTS}\nINSERT INTO nowhere SELEKT 1;"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["line"], 2, "{e}");
    assert!(e["column"].as_u64().is_some(), "{e}");
    // A planning error in the second INSERT starts nothing, and its DDL is not kept.
    let r = c
        .post(&jobs)
        .body(format!(
            "{EVENTS}\n{PASSTHROUGH}\nINSERT INTO out SELECT nosuch, device, temp FROM events;"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let listed: Value = c.get(&jobs).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 0);
    // Paths outside data_dirs are refused.
    let r = c
        .post(&jobs)
        .body("CREATE TABLE f (a INT) WITH ('connector' = 'filesystem', 'path' = '/etc/x', 'format' = 'json');")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Submitted with the CLI; the same DDL again is a no-op, another definition a 409.
    let file = dir.path().join("submit.sql");
    std::fs::write(&file, format!("{EVENTS}\n{PASSTHROUGH}")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["submit", file.to_str().unwrap(), "--server", &s.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "out");
    let r = c
        .post(&jobs)
        .body(EVENTS.replace("temp DOUBLE", "temp FLOAT"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = c
        .post(&jobs)
        .body(format!("{EVENTS}\nCREATE TABLE out2 (device STRING) WITH ('connector' = 'http');\nINSERT INTO out2 SELECT device FROM events;"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["jobs"], json!(["out2"]));
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["jobs", "--server", &s.url])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listing.contains("out ") && listing.contains("out2") && listing.contains("running"),
        "{listing}"
    );
    let one: Value = c
        .get(format!("{jobs}/out"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for k in [
        "events_in",
        "events_out",
        "events_per_s",
        "watermark_lag_ms",
        "late_rows",
        "malformed",
        "checkpoint",
        "state_bytes",
    ] {
        assert!(one.get(k).is_some(), "{k} in {one}");
    }
    // Stopped with the CLI and over HTTP (drain).
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["stop", "out", "--server", &s.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped"));
    let r: Value = c
        .delete(format!("{jobs}/out2?drain=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "finished", "{r}");
    // No kept files remain: a restart resumes nothing.
    let kept = std::fs::read_dir(dir.path().join("data/jobs"))
        .unwrap()
        .count();
    assert_eq!(kept, 0);
}

/// Parquet rows of a directory tree: the `device` column.
fn parquet_devices(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p: PathBuf = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                let f = std::fs::File::open(&p).unwrap();
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                        .unwrap()
                        .build()
                        .unwrap();
                for b in reader {
                    let b = b.unwrap();
                    let col = b.column_by_name("device").unwrap();
                    let col = col.as_any().downcast_ref::<StringArray>().unwrap();
                    out.extend(col.iter().map(|v| v.unwrap().to_string()));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let cps = dir.path().join("checkpoints");
    let job = format!(
        "SET 'execution.checkpointing.interval' = '300 ms';
         SET 'state.checkpoints.dir' = '{}';
         {EVENTS}
         CREATE TABLE lake (device STRING, temp DOUBLE) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');
         INSERT INTO lake SELECT device, temp FROM events;",
        cps.display(),
        lake.display()
    );
    let mut acked: Vec<String> = vec![];
    let mut next = 0usize;
    for round in 0..3 {
        let mut s = start(dir.path(), NO_TENANTS, &[&job]);
        let url = format!("{}/v1/tables/events/records", s.url);
        let c = reqwest::Client::new();
        // Four producers post durable bodies until the kill.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<String>>();
        let mut producers = vec![];
        for p in 0..4 {
            let (c, url, tx) = (c.clone(), url.clone(), tx.clone());
            let base = next + p * 1_000_000;
            producers.push(tokio::spawn(async move {
                for b in 0.. {
                    let ids: Vec<String> = (0..50)
                        .map(|i| format!("r{round}-{}", base + b * 50 + i))
                        .collect();
                    let body: String = ids
                        .iter()
                        .map(|id| {
                            json!({"device": id, "temp": 1.0, "ts": ts(0, 0)}).to_string() + "\n"
                        })
                        .collect();
                    match c.post(&url).body(body).send().await {
                        Ok(r) if r.status() == 200 => {
                            let _ = tx.send(ids);
                        }
                        _ => break,
                    }
                }
            }));
        }
        drop(tx);
        next += 4_000_000;
        tokio::time::sleep(Duration::from_millis(700 + round as u64 * 400)).await;
        if round < 2 {
            // kill -9 mid-flight.
            s.child.kill().unwrap();
            s.child.wait().unwrap();
        }
        for p in producers {
            if round == 2 {
                p.abort();
            }
            let _ = p.await;
        }
        while let Some(ids) = rx.recv().await {
            acked.extend(ids);
        }
        if round == 2 {
            // Once the job has read the whole journal, stop cleanly: a final checkpoint
            // publishes everything read.
            let end = journal_offset(&c, &s.url, "events").await;
            let mut read = 0;
            for _ in 0..1200 {
                let j: Value = c
                    .get(format!("{}/v1/jobs/lake", s.url))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                read = j["events_in"].as_u64().unwrap() + j["events_before"].as_u64().unwrap();
                if read >= end {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(read, end);
            unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
            s.child.wait().unwrap();
        }
        drop(s);
    }
    assert!(acked.len() > 200, "too few acknowledged: {}", acked.len());
    let out = parquet_devices(&lake);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &out {
        *counts.entry(d.as_str()).or_default() += 1;
    }
    let dup: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dup.is_empty(), "duplicated: {dup:?}");
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but missing ({} acked, {} out): {missing:?}",
        acked.len(),
        out.len()
    );
}

#[test]
fn http_tables_need_weir_serve_and_non_loopback_needs_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.sql");
    std::fs::write(&job, format!("{EVENTS}\nCREATE TABLE o (device STRING) WITH ('connector' = 'print');\nINSERT INTO o SELECT device FROM events;")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("run")
        .arg(&job)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("http tables need `weir serve`"));
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs [[tenant]] entries"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A misspelt limit in serve.toml is an error.
    let cfg = dir.path().join("serve.toml");
    std::fs::write(&cfg, "[defaults]\nrte = 5\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rte"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_the_first_answer_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let job = format!("{EVENTS}\n{PASSTHROUGH}");
    let c = reqwest::Client::new();
    let body: String = (0..10)
        .map(|i| record(i, None).to_string() + "\n")
        .collect();
    for round in 0..2 {
        let s = start(dir.path(), NO_TENANTS, &[&job]);
        let url = format!("{}/v1/tables/events/records", s.url);
        for attempt in 0..2 {
            let r = c
                .post(&url)
                .header("idempotency-key", "batch-1")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let replayed = r.headers().get("idempotent-replayed").is_some();
            assert_eq!(
                replayed,
                round > 0 || attempt > 0,
                "round {round} attempt {attempt}"
            );
            assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 10);
        }
        // Another key appends.
        let r = c
            .post(&url)
            .header("idempotency-key", format!("other-{round}"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("idempotent-replayed").is_none());
        let end = journal_offset(&c, &s.url, "events").await;
        assert_eq!(
            end,
            20 + round * 10,
            "batch-1 appended once, each other key once"
        );
        drop(s); // kill -9
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_lags_and_the_others_get_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let job = "CREATE TABLE events (device STRING, payload STRING) WITH ('connector' = 'http', 'format' = 'json');
         CREATE TABLE out (device STRING, payload STRING) WITH ('connector' = 'http', 'http.retain' = '10');
         INSERT INTO out SELECT device, payload FROM events;";
    let s = start(dir.path(), NO_TENANTS, &[job]);
    // The stalled subscriber: connects, then never reads.
    let addr = s.url.strip_prefix("http://").unwrap().to_string();
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stalled,
        "GET /v1/tables/out/subscribe HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let reader = sse(format!("{}/v1/tables/out/subscribe", s.url), None);
    wait_until("the subscription", || !reader.lock().unwrap().is_empty()).await;
    let c = reqwest::Client::new();
    let url = format!("{}/v1/tables/events/records", s.url);
    // Rows big enough to fill the stalled connection's socket buffers, one event per POST.
    let payload = "p".repeat(32 << 10);
    let posts = 2500;
    for i in 0..posts {
        let body = json!({"device": format!("d{i}"), "payload": payload}).to_string();
        assert_eq!(c.post(&url).body(body).send().await.unwrap().status(), 200);
    }
    wait_until("every row at the reading subscriber", || {
        reader
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _, _)| e == "rows")
            .map(|(_, _, d)| d.as_array().unwrap().len())
            .sum::<usize>()
            == posts
    })
    .await;
    // The reading subscriber got every row once, in order.
    let devices: Vec<String> = reader
        .lock()
        .unwrap()
        .iter()
        .filter(|(e, _, _)| e == "rows")
        .flat_map(|(_, _, d)| {
            d.as_array()
                .unwrap()
                .iter()
                .map(|r| r["device"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        devices,
        (0..posts).map(|i| format!("d{i}")).collect::<Vec<_>>()
    );
    // The stalled one, reading now, is told it lagged (after what its buffers held).
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    while !String::from_utf8_lossy(&seen).contains("event: lagged") {
        let n = stalled
            .read(&mut buf)
            .expect("the stalled subscriber's stream");
        assert!(n > 0, "the stream ended without lagged");
        seen.extend_from_slice(&buf[..n]);
        if seen.len() > 200 << 20 {
            panic!("no lagged event in 200 MB");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_advancing_table_fires_its_last_window_when_producers_stop() {
    let dir = tempfile::tempdir().unwrap();
    let job = "CREATE TABLE answers (quiz STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
           WITH ('connector' = 'http', 'format' = 'json', 'scan.watermark.idle-advance' = 'true',
                 'scan.watermark.idle-timeout' = '300 ms');
         CREATE TABLE results (quiz STRING, window_start TIMESTAMP(3), answers BIGINT) WITH ('connector' = 'http');
         INSERT INTO results SELECT quiz, window_start, COUNT(*)
           FROM TABLE(TUMBLE(TABLE answers, DESCRIPTOR(ts), INTERVAL '2' SECOND))
           GROUP BY quiz, window_start, window_end;";
    let s = start(dir.path(), NO_TENANTS, &[job]);
    let c = reqwest::Client::new();
    let now = chrono::Utc::now().naive_utc();
    let body: String = (0..3)
        .map(|i| json!({"quiz": "q1", "ts": (now - chrono::Duration::milliseconds(100 * i)).format("%Y-%m-%d %H:%M:%S%.3f").to_string()}).to_string() + "\n")
        .collect();
    let r = c
        .post(format!("{}/v1/tables/answers/records", s.url))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // No further record: the wall clock closes the window.
    let url = format!("{}/v1/tables/results", s.url);
    let mut rows = vec![];
    for _ in 0..300 {
        rows = c
            .get(&url)
            .send()
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap();
        // The three may fall into two windows: both close.
        if rows
            .iter()
            .map(|r| r["answers"].as_i64().unwrap())
            .sum::<i64>()
            == 3
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total: i64 = rows.iter().map(|r| r["answers"].as_i64().unwrap()).sum();
    assert_eq!(total, 3, "{rows:?}");
    // Without a declared idle timeout the option is refused.
    let r = c
        .post(format!("{}/v1/jobs", s.url))
        .body("CREATE TABLE a2 (ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH ('connector' = 'http', 'scan.watermark.idle-advance' = 'true');
               CREATE TABLE r2 (ts TIMESTAMP(3)) WITH ('connector' = 'http');
               INSERT INTO r2 SELECT ts FROM a2;")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("idle-timeout"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_serve_jobs_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let quiz = std::fs::read_to_string(root.join("sql/serve_quiz.sql")).unwrap();
    let devices = std::fs::read_to_string(root.join("sql/serve_devices.sql")).unwrap();
    let s = start(dir.path(), NO_TENANTS, &[&quiz, &devices]);
    let c = reqwest::Client::new();
    let mut body = String::new();
    for (i, (q, correct)) in [(3, true), (3, false), (4, true)].iter().enumerate() {
        body.push_str(&format!(
            "{{\"quiz_id\":\"q7\",\"question_id\":{q},\"student_id\":\"s{i}\",\"correct\":{correct},\"answered_at\":\"2026-01-01 10:00:0{i}.000\"}}\n"
        ));
    }
    body.push_str("{\"quiz_id\":\"q7\",\"question_id\":1,\"student_id\":\"s9\",\"correct\":true,\"answered_at\":\"2026-01-01 10:02:00.000\"}\n");
    let (status, _) = post(
        &c,
        &format!("{}/v1/tables/answers/records", s.url),
        "application/x-ndjson",
        body,
    )
    .await;
    assert_eq!(status, 200);
    let url = format!("{}/v1/tables/question_results?key=q7,3", s.url);
    let mut row = Value::Null;
    for _ in 0..300 {
        let r = c.get(&url).send().await.unwrap();
        if r.status() == 200 {
            row = r.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(row["answers"], 2, "{row}");
    assert_eq!(row["correct"], 1);
    assert_eq!(row["pct_correct"], 50.0);
    let csv = "device_id,temperature,vibration,reading_time\nd1,91.5,0.2,2026-01-01 10:00:00.000\n";
    let (status, r) = post(
        &c,
        &format!("{}/v1/tables/readings/records", s.url),
        "text/csv",
        csv,
    )
    .await;
    assert_eq!(status, 200, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_state_is_part_of_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let job = format!(
        "SET 'execution.checkpointing.interval' = '200 ms';
         SET 'state.checkpoints.dir' = '{}';
         {EVENTS}
         CREATE TABLE latest (device STRING, n BIGINT, PRIMARY KEY (device) NOT ENFORCED) WITH ('connector' = 'http');
         INSERT INTO latest SELECT device, COUNT(*) FROM events GROUP BY device;",
        dir.path().join("cp").display()
    );
    let c = reqwest::Client::new();
    let before = {
        let s = start(dir.path(), NO_TENANTS, &[&job]);
        let body: String = (0..50)
            .map(|i| record(i, None).to_string() + "\n")
            .collect();
        assert_eq!(
            post(
                &c,
                &format!("{}/v1/tables/events/records", s.url),
                "application/x-ndjson",
                body
            )
            .await
            .0,
            200
        );
        // Wait for a checkpoint taken after every row was counted.
        let url = format!("{}/v1/jobs/latest", s.url);
        let mut counted_at = None;
        for _ in 0..600 {
            let j: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
            let epoch = j["checkpoint"]["epoch"].as_u64().unwrap();
            match counted_at {
                None if j["events_out"].as_u64().unwrap() > 0 && j["events_in"] == 50 => {
                    counted_at = Some(epoch)
                }
                Some(e) if epoch > e + 1 => break,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let rows: Vec<Value> = c
            .get(format!("{}/v1/tables/latest", s.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(rows.len(), 5);
        rows
        // kill -9 here
    };
    let s = start(dir.path(), NO_TENANTS, &[&job]);
    let rows: Vec<Value> = c
        .get(format!("{}/v1/tables/latest", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rows, before);
    let one: Value = c
        .get(format!("{}/v1/tables/latest?key=d2", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one, json!({"device": "d2", "n": 10}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_keeps_records_for_a_later_job_and_answers_503_when_full() {
    let dir = tempfile::tempdir().unwrap();
    let ddl = "CREATE TABLE early (device STRING, temp DOUBLE) WITH ('connector' = 'http', 'format' = 'json', 'http.max-journal-size' = '4 KB');";
    let s = start(dir.path(), NO_TENANTS, &[ddl]);
    let c = reqwest::Client::new();
    let url = format!("{}/v1/tables/early/records", s.url);
    // No job reads it yet: accepted and kept, until the journal is over its size.
    let mut accepted = 0;
    let mut full = None;
    for i in 0..200 {
        let body: String = (0..10)
            .map(|j| json!({"device": format!("d{i}-{j}"), "temp": 1.5}).to_string() + "\n")
            .collect();
        let r = c.post(&url).body(body).send().await.unwrap();
        if r.status() == 503 {
            full = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
        accepted += 10;
    }
    let full = full.expect("503 once the journal is over 'http.max-journal-size'");
    assert!(full.headers().contains_key("retry-after"));
    // A job started later reads the retained journal from its start.
    let r = c
        .post(format!("{}/v1/jobs", s.url))
        .body("CREATE TABLE later (device STRING) WITH ('connector' = 'http'); INSERT INTO later SELECT device FROM early;")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut rows = vec![];
    for _ in 0..300 {
        rows = c
            .get(format!("{}/v1/tables/later", s.url))
            .send()
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap();
        if rows.len() >= accepted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows.len(), accepted);
    assert_eq!(rows[0]["device"], "d0-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_tenants_and_submitted_jobs_resume_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |keys: &[&str]| {
        format!(
            "[server]\njournal_dir = \"JOURNAL\"\ncheckpoint_dir = \"{}\"\nadmin_keys_sha256 = [\"{}\"]\n\n[[tenant]]\nid = \"a\"\nkeys_sha256 = [{}]\ntables = [\"events\"]\n",
            dir.path().join("cp").display(),
            sha("admin"),
            keys.iter()
                .map(|k| format!("\"{}\"", sha(k)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let mut s = start(dir.path(), &cfg(&["old"]), &[]);
    let c = reqwest::Client::new();
    let job =
        format!("SET 'execution.checkpointing.interval' = '200 ms';\n{EVENTS}\n{PASSTHROUGH}");
    let r = c
        .post(format!("{}/v1/jobs", s.url))
        .bearer_auth("admin")
        .body(job)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let url = format!("{}/v1/tables/events/records", s.url);
    let one = record(1, None).to_string();
    assert_eq!(
        c.post(&url)
            .bearer_auth("new")
            .body(one.clone())
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Reload with another key: it works at once, the old one no longer does.
    std::fs::write(
        dir.path().join("serve.toml"),
        cfg(&["new"]).replace(
            "JOURNAL",
            &dir.path().join("data/journal").display().to_string(),
        ),
    )
    .unwrap();
    unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) };
    let mut status = 0;
    for _ in 0..100 {
        status = c
            .post(&url)
            .bearer_auth("new")
            .body(one.clone())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200);
    assert_eq!(
        c.post(&url)
            .bearer_auth("old")
            .body(one.clone())
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Once the job has read the record, SIGTERM: a final checkpoint; the submitted job comes
    // back on the next start, from that checkpoint.
    for _ in 0..600 {
        let j: Value = c
            .get(format!("{}/v1/jobs/out", s.url))
            .bearer_auth("admin")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if j["events_in"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    s.child.wait().unwrap();
    let first_log = s.log.lock().unwrap().clone();
    drop(s);
    let s = start(dir.path(), &cfg(&["new"]), &[]);
    let jobs: Value = c
        .get(format!("{}/v1/jobs", s.url))
        .bearer_auth("admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs["jobs"][0]["id"], "out", "{jobs}");
    assert_eq!(jobs["jobs"][0]["status"], "running");
    assert_eq!(
        jobs["jobs"][0]["events_before"],
        1,
        "resumed from its final checkpoint: {jobs}\nfirst run: {first_log}\nthis run: {}",
        s.log.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_tls_cert_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ca = dir.path().join("ca.pem");
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    std::fs::write(
        dir.path().join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    // A test CA, and a server certificate it signs.
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=weir test CA",
            "-keyout",
            &d("ca.key"),
            "-out",
            &d("ca.pem"),
        ],
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &d("key.pem"),
            "-out",
            &d("leaf.csr"),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &d("leaf.csr"),
            "-CA",
            &d("ca.pem"),
            "-CAkey",
            &d("ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &d("ext.cnf"),
            "-out",
            &d("cert.pem"),
        ],
    ] {
        let out = Command::new("openssl").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let cfg = format!(
        "[server]\njournal_dir = \"JOURNAL\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
        cert.display(),
        key.display()
    );
    let job = format!("{EVENTS}\n{PASSTHROUGH}");
    let s = start(dir.path(), &cfg, &[&job]);
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);
    let root = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let c = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    let r = c
        .post(format!("{}/v1/tables/events/records", s.url))
        .body(record(1, None).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A client that does not trust the certificate is refused by TLS itself.
    assert!(
        reqwest::Client::new()
            .get(format!("{}/healthz", s.url))
            .send()
            .await
            .is_err()
    );
    // Plain HTTP on the TLS port gets nothing useful.
    let plain = s.url.replace("https://", "http://");
    assert!(
        reqwest::Client::new()
            .get(format!("{plain}/healthz"))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
    );
}

/// A receiver that answers 503 to its first `fail` requests, then keeps the bodies.
async fn flaky_receiver(fail: usize) -> (String, Arc<Mutex<Vec<Value>>>, Arc<Mutex<usize>>) {
    let got = Arc::new(Mutex::new(vec![]));
    let attempts = Arc::new(Mutex::new(0usize));
    let (g, a) = (got.clone(), attempts.clone());
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (g, a) = (g.clone(), a.clone());
            async move {
                let n = {
                    let mut a = a.lock().unwrap();
                    *a += 1;
                    *a
                };
                if n <= fail {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                g.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/alerts"), got, attempts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_alerts_metadata_latest_offset_and_cors() {
    let (hook, got, attempts) = flaky_receiver(2).await;
    let dir = tempfile::tempdir().unwrap();
    let job = format!(
        "CREATE TABLE readings (tenant STRING METADATA FROM 'tenant' VIRTUAL,
           received TIMESTAMP(3) METADATA FROM 'received-at' VIRTUAL,
           rid STRING METADATA FROM 'request-id' VIRTUAL,
           device STRING, temp DOUBLE) WITH ('connector' = 'http', 'format' = 'json');
         CREATE TABLE alerts (device STRING, temp DOUBLE, tenant STRING, rid STRING)
           WITH ('connector' = 'webhook', 'url' = '{hook}');
         INSERT INTO alerts SELECT device, temp, tenant, rid FROM readings WHERE temp > 80;
         CREATE TABLE seen (device STRING, received TIMESTAMP(3)) WITH ('connector' = 'http');
         INSERT INTO seen SELECT device, received FROM readings;"
    );
    let cfg = format!(
        "[server]\njournal_dir = \"JOURNAL\"\nadmin_keys_sha256 = [\"{}\"]\ncors_origins = [\"http://dash.test\"]\n\n[[tenant]]\nid = \"plant-7\"\nkeys_sha256 = [\"{}\"]\ntables = [\"readings\"]\nread = [\"seen\", \"late\"]\n",
        sha("admin"),
        sha("k7")
    );
    let s = start(dir.path(), &cfg, &[&job]);
    let c = reqwest::Client::new();
    let url = format!("{}/v1/tables/readings/records", s.url);
    let before = chrono::Utc::now().timestamp_millis();
    let body = "{\"device\": \"a\", \"temp\": 91.5}\n{\"device\": \"b\", \"temp\": 20}\n{\"device\": \"c\", \"temp\": 85}\n";
    let r = c
        .post(&url)
        .bearer_auth("k7")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The alerts arrive after the receiver's two failures, with the tenant from the key.
    let mut alerts = vec![];
    for _ in 0..300 {
        alerts = got
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b["rows"].as_array().unwrap().clone())
            .collect();
        if alerts.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert!(*attempts.lock().unwrap() >= 3);
    assert_eq!(alerts[0]["device"], "a");
    assert_eq!(alerts[0]["tenant"], "plant-7");
    assert_eq!(
        alerts[0]["rid"], alerts[1]["rid"],
        "one request, one request id"
    );
    // received-at is the server's clock.
    let seen: Vec<Value> = loop {
        let rows: Vec<Value> = c
            .get(format!("{}/v1/tables/seen", s.url))
            .bearer_auth("k7")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if rows.len() == 3 {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let received = chrono::NaiveDateTime::parse_from_str(
        seen[0]["received"].as_str().unwrap(),
        "%Y-%m-%d %H:%M:%S%.3f",
    )
    .unwrap()
    .and_utc()
    .timestamp_millis();
    assert!(received >= before - 1000 && received <= chrono::Utc::now().timestamp_millis() + 1000);
    // A job reading from the latest offset sees only what comes after it starts.
    let ddl = "CREATE TABLE readings_now (device STRING, temp DOUBLE) WITH ('connector' = 'http', 'format' = 'json', 'scan.startup.mode' = 'latest-offset');";
    let jobs_url = format!("{}/v1/jobs", s.url);
    assert_eq!(
        c.post(&jobs_url)
            .bearer_auth("admin")
            .body(ddl)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let now_url = format!("{}/v1/tables/readings_now/records", s.url);
    let r = c
        .post(&now_url)
        .bearer_auth("admin")
        .body("{\"device\": \"before\", \"temp\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let late = format!(
        "{ddl}
        CREATE TABLE late (device STRING) WITH ('connector' = 'http');
        INSERT INTO late SELECT device FROM readings_now;"
    );
    assert_eq!(
        c.post(&jobs_url)
            .bearer_auth("admin")
            .body(late)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let r = c
        .post(&now_url)
        .bearer_auth("admin")
        .body("{\"device\": \"after\", \"temp\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let late_rows: Vec<Value> = loop {
        let rows: Vec<Value> = c
            .get(format!("{}/v1/tables/late", s.url))
            .bearer_auth("k7")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !rows.is_empty() {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(late_rows, vec![json!({"device": "after"})]);
    // CORS: a preflight from the configured origin is allowed, another origin is not.
    let pre = c
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "http://dash.test")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(
        pre.headers().get("access-control-allow-origin").unwrap(),
        "http://dash.test"
    );
    let other = c
        .get(format!("{}/healthz", s.url))
        .header("origin", "http://evil.test")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}
