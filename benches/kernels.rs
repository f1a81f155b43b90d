//! Criterion benchmarks of weir's operator kernels and of whole pipelines on the Nexmark
//! generator. Figures are per single core (one thread drives each benchmark).
//!
//! `cargo bench` runs them all; `cargo bench -- generator` one group.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weir::connectors::nexmark::{Config, Generator, Kind};
use weir::engine::{SelectOutput, StatementOutput};

const EVENTS: u64 = 1_000_000;

fn generator(c: &mut Criterion) {
    let mut g = c.benchmark_group("generator");
    g.throughput(Throughput::Elements(EVENTS));
    g.sample_size(10);
    g.bench_function("bid", |b| {
        b.iter(|| {
            let cfg = Config {
                events: Some(EVENTS),
                rate: 10_000,
                shards: 1,
                chunk: 8192,
                real_time: false,
            };
            let mut generator = Generator::new(Kind::Bid, cfg, 0);
            let mut rows = 0;
            while let Some(batch) = generator.next_batch().expect("generates") {
                rows += batch.num_rows();
            }
            rows
        })
    });
    g.finish();
}

fn pipeline(c: &mut Criterion, name: &str, query: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("nexmark");
    g.throughput(Throughput::Elements(EVENTS));
    g.sample_size(10);
    let sql = format!(
        "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, \
         date_time TIMESTAMP(3), extra STRING, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) \
         WITH ('connector' = 'nexmark', 'nexmark.events' = '{EVENTS}'); {query}"
    );
    g.bench_function(name, |b| {
        b.iter(|| {
            rt.block_on(async {
                let engine = weir::Engine::new();
                for out in engine
                    .execute_with(&sql, SelectOutput::Discard)
                    .await
                    .expect("plans")
                {
                    if let StatementOutput::Job(job) = out {
                        job.wait().await.expect("runs");
                    }
                }
            })
        })
    });
    g.finish();
}

fn windows(c: &mut Criterion) {
    pipeline(
        c,
        "tumble_count_per_auction",
        "SELECT window_start, auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) \
         GROUP BY window_start, window_end, auction",
    );
    pipeline(
        c,
        "hop_count_per_auction",
        "SELECT window_start, auction, COUNT(*) FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) \
         GROUP BY window_start, window_end, auction",
    );
    pipeline(
        c,
        "session_count_per_bidder",
        "SELECT window_start, bidder, COUNT(*) FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) \
         GROUP BY window_start, window_end, bidder",
    );
    pipeline(
        c,
        "filter_project",
        "SELECT auction, price * 0.908 FROM bid WHERE MOD(auction, 123) = 0",
    );
}

criterion_group!(benches, generator, windows);
criterion_main!(benches);
