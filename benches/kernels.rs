//! Criterion benchmarks of weir's operator kernels and of whole pipelines on the Nexmark
//! generator. Kernels run on one thread; pipelines on a current-thread runtime, so every
//! figure is per single core.
//!
//! `cargo bench` runs them all; `cargo bench -- kernels/` or `cargo bench -- nexmark/q7` a part.
//! Groups: `generator`, `kernels` (exchange, interval join, JSON decode, message decode in
//! JSON and Avro, Parquet encode and decode on one thread and on every core),
//! `nexmark` (window aggregates, q3 and q4 regular joins, q5 window aggregate join, q7 interval
//! join, q8 window join, q15–q17 updating aggregates (COUNT DISTINCT and FILTER, per day, per
//! channel and day, per auction and day), q18 and q19 unwindowed Top-N).

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
            let mut generator = Generator::new(Kind::Bid, Config::bounded(EVENTS), 0);
            let mut rows = 0;
            while let Some(batch) = generator.next_batch().expect("generates") {
                rows += batch.num_rows();
            }
            rows
        })
    });
    g.finish();
}

/// Run every job of `sql` to the end, one instance per operator (figures per single core).
async fn run_jobs(sql: &str) {
    let engine = weir::Engine::new();
    engine
        .execute("SET 'parallelism' = '1';")
        .await
        .expect("set");
    for out in engine
        .execute_with(sql, SelectOutput::Discard)
        .await
        .expect("plans")
    {
        if let StatementOutput::Job(job) = out {
            job.wait().await.expect("runs");
        }
    }
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
    g.bench_function(name, |b| b.iter(|| rt.block_on(run_jobs(&sql))));
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

fn bids(events: u64) -> Vec<datafusion::arrow::record_batch::RecordBatch> {
    weir::connectors::nexmark::bounded_rows(Kind::Bid, events).expect("generates")
}

fn col(
    name: &str,
    schema: &datafusion::arrow::datatypes::Schema,
) -> std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr> {
    let i = schema.index_of(name).expect("column");
    std::sync::Arc::new(datafusion::physical_expr::expressions::Column::new(name, i))
}

fn kernels(c: &mut Criterion) {
    use std::sync::Arc;
    use weir::operators::{Emitter, Expire, JoinKind, JoinSpec, OpSpec};
    let input = bids(EVENTS);
    let rows: usize = input.iter().map(|b| b.num_rows()).sum();
    let schema = Kind::Bid.schema();
    let mut g = c.benchmark_group("kernels");
    g.throughput(Throughput::Elements(rows as u64));
    g.sample_size(10);

    // Hash the key of whole batches and split them over 4 partitions with `take`.
    let keys = vec![col("auction", &schema)];
    g.bench_function("exchange_4_partitions", |b| {
        b.iter(|| {
            let mut hashes = vec![];
            let mut n = 0;
            for batch in &input {
                let parts =
                    weir::runtime::exchange::partition_batch(batch, &keys, 4, 128, &mut hashes)
                        .expect("splits");
                n += parts.iter().flatten().count();
            }
            n
        })
    });

    // Interval join of bids with bids on price, |t1 - t2| <= 1 s: every batch is inserted on
    // one side, probes the other, and the watermark evicts both.
    let mut fields: Vec<_> = schema
        .fields()
        .iter()
        .chain(schema.fields().iter())
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    for (i, f) in fields.iter_mut().enumerate() {
        *f = f.clone().with_name(format!(
            "{}{}",
            f.name(),
            if i < schema.fields().len() {
                "_l"
            } else {
                "_r"
            }
        ));
    }
    let time = schema.index_of("date_time").expect("date_time");
    let spec = JoinSpec {
        mode: weir::operators::JoinMode::Interval,
        kind: JoinKind::Inner,
        keys: [vec![col("price", &schema)], vec![col("price", &schema)]],
        filter: None,
        inputs: [schema.clone(), schema.clone()],
        output_schema: Arc::new(datafusion::arrow::datatypes::Schema::new(fields.clone())),
        joined_schema: Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
        null_equal: false,
        expire: [
            Some(Expire {
                time_col: time,
                after_ms: 1000,
            }),
            Some(Expire {
                time_col: time,
                after_ms: 1000,
            }),
        ],
        ttl: None,
        updating: false,
        broadcast: None,
        null_aware: false,
    };
    g.bench_function("interval_join", |b| {
        b.iter(|| {
            let mut op = OpSpec::new(spec.clone()).instantiate().expect("join");
            let mut out = Emitter::default();
            for (i, batch) in input.iter().enumerate() {
                op.process_batch(i % 2, batch.clone(), &mut out)
                    .expect("joins");
                let col = batch
                    .column(time)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::TimestampMillisecondArray>()
                    .expect("ts");
                op.on_watermark(col.value(0) - 4000, &mut out)
                    .expect("evicts");
                out.messages.clear();
            }
        })
    });

    // JSON lines → Arrow, and Arrow → Parquet (Snappy).
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("bids.json");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&json).expect("create"));
        let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut f);
        for b in &input {
            w.write(b).expect("write");
        }
        w.finish().expect("finish");
    }
    let metrics = Arc::new(weir::runtime::JobMetrics::default());
    let decode_all = |path: &std::path::Path| {
        let policy = weir::format::ErrorPolicy::lenient(metrics.clone());
        let mut r = weir::format::json::JsonLinesReader::new(
            path.to_path_buf(),
            schema.clone(),
            schema.clone(),
            policy,
        )
        .expect("reader");
        let mut n = 0;
        while let Some(batch) = r.next_batch().expect("decodes") {
            n += batch.num_rows();
        }
        n
    };
    g.bench_function("json_decode", |b| {
        b.iter(|| assert_eq!(decode_all(&json), rows))
    });
    // The same file with every tenth record cut short (malformed): the bad records are
    // isolated without decoding each line on its own (issue: no cliff for bad records).
    let broken = dir.path().join("bids_10pct_malformed.json");
    {
        let text = std::fs::read_to_string(&json).expect("read");
        let mut out = String::with_capacity(text.len());
        for (i, line) in text.lines().enumerate() {
            out.push_str(if i % 10 == 3 {
                &line[..line.len() / 2]
            } else {
                line
            });
            out.push('\n');
        }
        std::fs::write(&broken, out).expect("write");
    }
    let good = rows - (rows / 10 + usize::from(rows % 10 > 3));
    g.bench_function("json_decode_10pct_malformed", |b| {
        b.iter(|| assert_eq!(decode_all(&broken), good))
    });
    // Messages (Kafka values, Kinesis records): one record each, decoded a poll at a time.
    for format in ["json", "avro"] {
        let ddl = format!(
            "CREATE TABLE m (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, \
               date_time TIMESTAMP(3), extra STRING) WITH ('connector' = 'kafka', 'format' = '{format}')"
        );
        let located = weir::sql::statement::parse_sql(&ddl).expect("parses");
        let weir::sql::statement::Statement::CreateTable(def) = located[0].statement.clone() else {
            panic!("not a CREATE TABLE")
        };
        let table = weir::sql::catalog::Table::new(def).expect("table");
        let messages: Vec<Vec<u8>> = if format == "json" {
            let mut buf = Vec::new();
            {
                let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut buf);
                for b in &input {
                    w.write(b).expect("write");
                }
                w.finish().expect("finish");
            }
            buf.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        } else {
            let mut e = weir::format::avro::AvroEncoder::new(&table, table.physical.clone())
                .expect("encoder");
            input
                .iter()
                .flat_map(|b| e.encode(b).expect("encodes"))
                .collect()
        };
        struct NoMeta;
        impl weir::format::messages::MessageMeta for NoMeta {
            fn column(&self, key: &str) -> weir::Result<datafusion::arrow::array::ArrayRef> {
                Err(weir::Error::Plan(format!("no metadata {key}")))
            }
            fn location(&self, i: usize) -> String {
                format!("message {i}")
            }
        }
        let policy = weir::format::ErrorPolicy::lenient(metrics.clone());
        let mut d =
            weir::format::messages::MessageDecoder::new(&table, policy, &[]).expect("decoder");
        g.bench_function(format!("message_decode_{format}"), |b| {
            b.iter(|| {
                let mut n = 0;
                for poll in messages.chunks(8192) {
                    let payloads: Vec<&[u8]> = poll.iter().map(Vec::as_slice).collect();
                    n += d
                        .decode(&payloads, &NoMeta)
                        .expect("decodes")
                        .map_or(0, |b| b.num_rows());
                }
                assert_eq!(n, rows);
            })
        });
    }
    let parquet = dir.path().join("bids.parquet");
    g.bench_function("parquet_encode", |b| {
        b.iter(|| {
            let mut w = weir::format::writer::FormatWriter::create(
                &parquet,
                weir::format::writer::FileFormat::Parquet,
                schema.clone(),
            )
            .expect("create");
            for batch in &input {
                w.write(batch).expect("write");
            }
            w.close().expect("close");
        })
    });
    // Parquet → Arrow: the same rows in row groups of 122,880 rows (DuckDB's size; weir's
    // writer makes groups of a million), decoded by one thread, then by one per core (handed on
    // in file order either way).
    let grouped = dir.path().join("bids_grouped.parquet");
    {
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(122_880))
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let file = std::fs::File::create(&grouped).expect("create");
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))
            .expect("writer");
        for batch in &input {
            w.write(batch).expect("write");
        }
        w.close().expect("close");
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for workers in [1, cores] {
        g.bench_function(format!("parquet_decode_{workers}_threads"), |b| {
            b.iter(|| {
                let mut r =
                    weir::format::parquet::ParquetReader::new(grouped.clone(), schema.clone())
                        .with_workers(workers);
                let mut n = 0;
                while let Some(batch) = r.next_batch().expect("decodes") {
                    n += batch.num_rows();
                }
                assert_eq!(n, rows);
            })
        });
    }
    g.finish();
}

fn joins(c: &mut Criterion) {
    // q3 and q4 are regular joins whose unread input columns are nulled before they are
    // stored (planner::JoinUse); q15–q17 are updating group aggregates (operators/group_agg.rs
    // and agg_columns.rs; q15 and q16 share COUNT(DISTINCT) tables, distinct_table.rs); q9,
    // q18 and q19 are unwindowed Top-N (operators/topn.rs); q21 is REGEXP_EXTRACT
    // (functions/string.rs); q6 is an OVER aggregate over a changelog (over_updating.rs).
    for q in [
        "q3", "q4", "q5", "q6", "q7", "q8", "q9", "q15", "q16", "q17", "q18", "q19", "q21",
    ] {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("sql/nexmark/{q}.sql"));
        let sql =
            weir::bench::with_events(&std::fs::read_to_string(path).expect("query file"), EVENTS);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut g = c.benchmark_group("nexmark");
        g.throughput(Throughput::Elements(EVENTS));
        g.sample_size(10);
        g.bench_function(q, |b| b.iter(|| rt.block_on(run_jobs(&sql))));
        g.finish();
    }
}

criterion_group!(benches, generator, kernels, windows, joins);
criterion_main!(benches);
