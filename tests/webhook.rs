//! The webhook sink against a local HTTP endpoint (axum on loopback): signed JSON bodies,
//! retries of a failing endpoint, no retry of a refusal, and a dead endpoint that never blocks
//! the job (its rows go to the dead-letter file).

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use weir::{Engine, StatementOutput};

/// What the endpoint received: (signature header, body); and how it answers.
#[derive(Default)]
struct Endpoint {
    received: Mutex<Vec<(Option<String>, Vec<u8>)>>,
    /// Answer 503 to this many requests first.
    fail_first: Mutex<usize>,
    /// Answer this status to every request (a refusal).
    always: Option<StatusCode>,
    attempts: Mutex<usize>,
}

async fn receive(
    State(ep): State<Arc<Endpoint>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    *ep.attempts.lock().unwrap() += 1;
    if let Some(s) = ep.always {
        return s;
    }
    {
        let mut fail = ep.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    let sig = headers
        .get("x-weir-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    ep.received.lock().unwrap().push((sig, body.to_vec()));
    StatusCode::OK
}

/// An endpoint on a free loopback port; its URL.
async fn serve(ep: Arc<Endpoint>) -> String {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(ep);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

async fn run(sql: &str) {
    let engine = Engine::new();
    let mut jobs = vec![];
    for out in engine.execute(sql).await.unwrap() {
        if let StatementOutput::Job(j) = out {
            jobs.push(j);
        }
    }
    assert!(!jobs.is_empty());
    for j in jobs {
        j.wait().await.unwrap();
    }
}

fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// 2500 rows (three requests of at most 1000), the endpoint failing the first two attempts:
/// every row arrives once, signed, with timestamps as text; an updating query's rows carry
/// their op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_posts_signed_rows_and_retries_a_failing_endpoint() {
    let ep = Arc::new(Endpoint {
        fail_first: Mutex::new(2),
        ..Default::default()
    });
    let url = serve(ep.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("readings.json");
    let lines: String = (0..2500)
        .map(|i| {
            format!(
                "{{\"device\": \"d{}\", \"temp\": {}, \"ts\": \"2026-01-01 00:{:02}:{:02}.000\"}}\n",
                i % 7,
                i,
                (i / 60) % 60,
                i % 60
            )
        })
        .collect();
    std::fs::write(&data, lines).unwrap();
    run(&format!(
        "CREATE TABLE readings (device STRING, temp BIGINT, ts TIMESTAMP(3))
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE alerts (device STRING, temp BIGINT, ts TIMESTAMP(3))
           WITH ('connector' = 'webhook', 'url' = '{url}', 'webhook.secret' = 's3cret',
                 'sink.max-retries' = '3');
         INSERT INTO alerts SELECT device, temp, ts FROM readings;",
        data.display()
    ))
    .await;
    let received = ep.received.lock().unwrap().clone();
    assert!(received.len() >= 3, "{} requests", received.len());
    let mut temps = vec![];
    for (sig, raw) in &received {
        assert_eq!(sig.as_deref(), Some(hmac_hex(b"s3cret", raw).as_str()));
        let body: serde_json::Value = serde_json::from_slice(raw).unwrap();
        assert_eq!(body["table"], "alerts");
        let rows = body["rows"].as_array().unwrap();
        assert!(rows.len() <= 1000);
        for r in rows {
            temps.push(r["temp"].as_i64().unwrap());
            let ts = r["ts"].as_str().unwrap();
            assert!(
                ts.starts_with("2026-01-01 00:") && ts.ends_with(".000"),
                "{ts}"
            );
        }
    }
    temps.sort();
    assert_eq!(temps, (0..2500).collect::<Vec<i64>>());
    assert_eq!(*ep.attempts.lock().unwrap(), received.len() + 2);

    // An updating query: each row with its op.
    ep.received.lock().unwrap().clear();
    run(&format!(
        "CREATE TABLE readings (device STRING, temp BIGINT, ts TIMESTAMP(3))
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE hottest (device STRING, top BIGINT)
           WITH ('connector' = 'webhook', 'url' = '{url}');
         INSERT INTO hottest SELECT device, MAX(temp) FROM readings GROUP BY device;",
        data.display()
    ))
    .await;
    let mut table = std::collections::BTreeMap::new();
    for (sig, raw) in ep.received.lock().unwrap().iter() {
        assert!(sig.is_none(), "no secret, no signature");
        let body: serde_json::Value = serde_json::from_slice(raw).unwrap();
        for r in body["rows"].as_array().unwrap() {
            let key = r["device"].as_str().unwrap().to_string();
            match r["op"].as_str().unwrap() {
                "+I" | "+U" => {
                    table.insert(key, r["top"].as_i64().unwrap());
                }
                "-U" | "-D" => {
                    table.remove(&key);
                }
                op => panic!("op {op}"),
            }
        }
    }
    let want: std::collections::BTreeMap<String, i64> = (0..7)
        .map(|d| {
            (
                format!("d{d}"),
                (0..2500).filter(|i| i % 7 == d).max().unwrap(),
            )
        })
        .collect();
    assert_eq!(table, want);
}

/// A refusing endpoint (400) is not retried, and a dead one (nothing listening) is given up
/// after its retries: the job ends, and the rows are in the dead-letter file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_gives_up_to_the_dead_letter_file() {
    let refusing = Arc::new(Endpoint {
        always: Some(StatusCode::BAD_REQUEST),
        ..Default::default()
    });
    let refusing_url = serve(refusing.clone()).await;
    let dead_url = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    for (url, retries) in [(refusing_url, 4), (dead_url, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let dlq = dir.path().join("dead.jsonl");
        run(&format!(
            "CREATE TABLE alerts (id BIGINT) WITH ('connector' = 'webhook', 'url' = '{url}',
               'sink.max-retries' = '{retries}', 'webhook.timeout' = '2 s',
               'dead-letter.path' = '{}');
             INSERT INTO alerts SELECT * FROM (VALUES (1), (2), (3)) AS t(id);",
            dlq.display()
        ))
        .await;
        let text = std::fs::read_to_string(&dlq).unwrap();
        let mut ids: Vec<i64> = text
            .lines()
            .flat_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].as_i64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        ids.sort();
        assert_eq!(ids, [1, 2, 3], "{url}");
    }
    assert_eq!(
        *refusing.attempts.lock().unwrap(),
        1,
        "a 400 is not retried"
    );
}

/// A misspelt webhook option is refused at CREATE TABLE, and a webhook table cannot be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_options_are_checked() {
    let engine = Engine::new();
    let err = engine
        .execute(
            "CREATE TABLE a (id BIGINT) WITH ('connector' = 'webhook', 'url' = 'http://127.0.0.1:1/',
               'webhook.timout' = '1 s')",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("webhook.timeout"), "{err}");
    engine
        .execute("CREATE TABLE b (id BIGINT) WITH ('connector' = 'webhook', 'url' = 'http://127.0.0.1:1/')")
        .await
        .unwrap();
    let err = match engine.subscribe("SELECT * FROM b").await {
        Ok(_) => panic!("a webhook table was read"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("can only be written"), "{err}");
}
