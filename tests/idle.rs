//! A silent shard stops holding the watermark back after `'scan.watermark.idle-timeout'`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::datatypes::SchemaRef;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use weir::connectors::SourceShard;
use weir::connectors::push::ChannelSink;
use weir::runtime::{JobMetrics, OpenSource, RunContext};

/// Yields its batches, then either waits forever (an open stream with no more data) or, with
/// `tick`, keeps producing one row every tick, 1 s of event time apart.
struct Shard {
    batches: Vec<RecordBatch>,
    tick: Option<(Duration, SchemaRef, i64)>,
}

impl SourceShard for Shard {
    fn name(&self) -> String {
        "test".into()
    }

    fn next_batch(&mut self) -> BoxFuture<'_, weir::Result<Option<RecordBatch>>> {
        Box::pin(async move {
            if !self.batches.is_empty() {
                return Ok(Some(self.batches.remove(0)));
            }
            match &mut self.tick {
                Some((every, schema, t)) => {
                    tokio::time::sleep(*every).await;
                    *t += 1000;
                    Ok(Some(batch(schema, &[9], &[*t])))
                }
                None => std::future::pending().await,
            }
        })
    }
}

fn batch(schema: &SchemaRef, k: &[i64], ts: &[i64]) -> RecordBatch {
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(k.to_vec())),
            Arc::new(TimestampMillisecondArray::from(ts.to_vec())),
        ],
    )
    .unwrap()
}

async fn first_window(idle: Option<Duration>) -> Option<RecordBatch> {
    let engine = weir::Engine::new();
    // One instance, so the first window arrives as one batch.
    engine.execute("SET 'parallelism' = '1';").await.unwrap();
    engine
        .execute("CREATE TABLE t (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH ('connector' = 'push');")
        .await
        .unwrap();
    let stmt = weir::sql::parse_sql(
        "SELECT window_start, k, COUNT(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end, k",
    )
    .unwrap()
    .remove(0);
    let pipeline = engine.plan(&stmt).await.unwrap();
    let schema = engine.catalog().unwrap().table("t").unwrap().schema.clone();
    // Shard 0 moves on past 25 s; shard 1 sent one row at 1 s and then went silent.
    // The busy shard keeps producing (every 20 ms, far below the idle timeout).
    let busy: Box<dyn SourceShard> = Box::new(Shard {
        batches: vec![batch(&schema, &[1, 1], &[2_000, 25_000])],
        tick: Some((Duration::from_millis(20), schema.clone(), 25_000)),
    });
    let silent: Box<dyn SourceShard> = Box::new(Shard {
        batches: vec![batch(&schema, &[2], &[1_000])],
        tick: None,
    });
    let (tx, mut rx) = mpsc::channel(16);
    let (cancel_tx, cancel) = watch::channel(false);
    let ctx = RunContext {
        metrics: Arc::new(JobMetrics::default()),
        cancel,
        late_sink: None,
        drain: None,
    };
    let source = OpenSource {
        name: "t".into(),
        shards: vec![busy, silent],
        idle_timeout: idle,
        idle_advance_ms: None,
        max_drift_ms: None,
    };
    let job = tokio::spawn(async move {
        weir::runtime::run(&pipeline, vec![source], Box::new(ChannelSink { tx }), ctx).await
    });
    let got = tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .ok()
        .flatten()
        .map(|r| r.unwrap());
    let _ = cancel_tx.send(true);
    job.await.unwrap().unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_shard_does_not_hold_back_the_watermark() {
    // Without an idle timeout, the silent shard (watermark 1 s) holds the window [0, 10 s).
    assert!(first_window(None).await.is_none());
    // With one, the window fires on the busy shard's watermark (the idle timeout is 500 ms,
    // the busy shard produces every 20 ms, so only the silent shard goes idle).
    let b = first_window(Some(Duration::from_millis(500)))
        .await
        .expect("window fired");
    assert_eq!(
        common::rows(&[b]),
        vec!["1970-01-01T00:00:00 | 1 | 1", "1970-01-01T00:00:00 | 2 | 1"]
    );
}
