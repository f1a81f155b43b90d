//! Bytes of operator state per stored row, against the Arrow size of the same rows' columns.
//!
//! Not a timing (criterion times kernels in `kernels.rs`): a counting allocator measures the
//! heap an operator holds after it has taken Nexmark bids, and the bench prints, per operator,
//! the rows it stores, its heap bytes per row, the Arrow bytes per row of those rows (values
//! plus offsets, as `get_array_memory_size` counts them for whole columns), and the ratio.
//!
//! `cargo bench --bench state` (add `-- --events N` for another count; default 2,000,000).
//! Operators: Top-N deduplication as Nexmark q18 (latest bid per bidder and auction), Top-10 as
//! q19 (highest bids per auction), and a regular join's stored side as q20's bids. Then whole
//! jobs (`sql/nexmark`, parallelism 1): the peak heap of q17, q18 and q19 over the same events,
//! per row their state ends with (q17: its groups), against those rows' Arrow bytes (q17: the
//! two key columns and the eight BIGINT results).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimestampMillisecondType};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use weir::connectors::nexmark::Kind;
use weir::operators::{Emitter, JoinKind, JoinMode, JoinSpec, OpSpec, TopNSpec};

/// Counts the bytes the process holds on the heap.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most `LIVE` has been since it was last reset.
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: as the caller's contract for `alloc`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as the caller's contract for `dealloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
        PEAK.fetch_max(live, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as the caller's contract for `realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn bids(events: u64) -> Vec<RecordBatch> {
    weir::connectors::nexmark::bounded_rows(Kind::Bid, events).expect("generates")
}

fn col(name: &str, schema: &Schema) -> Arc<dyn PhysicalExpr> {
    Arc::new(Column::new(name, schema.index_of(name).expect("column")))
}

/// The Arrow bytes of row `r` of a bid batch: 8 per fixed-width value, and per string its
/// bytes plus a 4-byte offset.
fn arrow_row_bytes(b: &RecordBatch, r: usize) -> usize {
    b.columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Utf8 => c.as_string::<i32>().value(r).len() + 4,
            t => t.primitive_width().unwrap_or(8),
        })
        .sum()
}

/// Feed the bids of `events` events, generated afresh (so an operator that keeps the
/// batches themselves is charged for them), to a fresh instance of `spec` on input `side`
/// (outputs dropped), and return the heap it then holds.
fn held_after(spec: OpSpec, events: u64, side: usize) -> usize {
    let mut op = spec.instantiate().expect("operator");
    let mut out = Emitter::default();
    let before = LIVE.load(Ordering::Relaxed);
    for b in bids(events) {
        op.process_batch(side, b, &mut out).expect("runs");
        out.messages.clear();
    }
    let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    drop(op);
    held
}

/// Run Nexmark query `q` (its file in `sql/nexmark`) over `events` events at parallelism 1
/// and return the most heap it held beyond what was held before.
fn job_peak(q: &str, events: u64) -> usize {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("sql/nexmark/{q}.sql"));
    let sql = weir::bench::with_events(&std::fs::read_to_string(path).expect("query file"), events);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    rt.block_on(async {
        let engine = weir::Engine::new();
        engine
            .execute("SET 'parallelism' = '1';")
            .await
            .expect("set");
        for out in engine
            .execute_with(&sql, weir::engine::SelectOutput::Discard)
            .await
            .expect("plans")
        {
            if let weir::engine::StatementOutput::Job(job) = out {
                job.wait().await.expect("runs");
            }
        }
    });
    PEAK.load(Ordering::Relaxed).saturating_sub(before)
}

fn report(name: &str, rows: usize, held: usize, arrow: usize) {
    let per = held as f64 / rows.max(1) as f64;
    let arrow_per = arrow as f64 / rows.max(1) as f64;
    println!(
        "{name:<36} {rows:>10} rows  {per:>7.1} B/row state  {arrow_per:>6.1} B/row Arrow  {:>5.2}x",
        per / arrow_per.max(1.0)
    );
}

fn topn_spec(schema: &Arc<Schema>, partition: &[&str], order: &str, n: usize) -> TopNSpec {
    let mut out: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    out.push(Field::new("rank_number", DataType::UInt64, false));
    out.push(weir::changelog::op_field());
    TopNSpec {
        partition: partition.iter().map(|p| col(p, schema)).collect(),
        partition_schema: Arc::new(Schema::new(
            partition
                .iter()
                .map(|p| schema.field_with_name(p).expect("field").clone())
                .collect::<Vec<_>>(),
        )),
        order: vec![PhysicalSortExpr {
            expr: col(order, schema),
            options: SortOptions {
                descending: true,
                nulls_first: false,
            },
        }],
        n,
        input_schema: schema.clone(),
        output_schema: Arc::new(Schema::new(out)),
        window_end: None,
        ttl: None,
    }
}

fn main() {
    let mut events: u64 = 2_000_000;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--events") {
        events = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .expect("--events takes a number");
    }
    let input = bids(events);
    let schema = Kind::Bid.schema();
    let (auction, bidder, price, time) = (
        schema.index_of("auction").expect("auction"),
        schema.index_of("bidder").expect("bidder"),
        schema.index_of("price").expect("price"),
        schema.index_of("date_time").expect("date_time"),
    );
    println!("state per stored row after {events} events (bids only)");

    // q18: the latest bid per (bidder, auction); a tie keeps the first to arrive.
    let mut latest: HashMap<(i64, i64), (i64, usize)> = HashMap::new();
    // q19: the 10 highest bids per auction; a tie keeps the first to arrive.
    let mut top: HashMap<i64, Vec<(i64, usize)>> = HashMap::new();
    for b in &input {
        let a = b.column(auction).as_primitive::<Int64Type>();
        let w = b.column(bidder).as_primitive::<Int64Type>();
        let p = b.column(price).as_primitive::<Int64Type>();
        let t = b.column(time).as_primitive::<TimestampMillisecondType>();
        for r in 0..b.num_rows() {
            let size = arrow_row_bytes(b, r);
            let e = latest
                .entry((w.value(r), a.value(r)))
                .or_insert((i64::MIN, 0));
            if t.value(r) > e.0 {
                *e = (t.value(r), size);
            }
            let list = top.entry(a.value(r)).or_default();
            let pos = list.partition_point(|x| x.0 >= p.value(r));
            if pos < 10 {
                list.insert(pos, (p.value(r), size));
                list.truncate(10);
            }
        }
    }
    let held = held_after(
        OpSpec::new(topn_spec(&schema, &["bidder", "auction"], "date_time", 1)),
        events,
        0,
    );
    report(
        "top-n, first 1 per (bidder, auction)",
        latest.len(),
        held,
        latest.values().map(|x| x.1).sum(),
    );
    let held = held_after(
        OpSpec::new(topn_spec(&schema, &["auction"], "price", 10)),
        events,
        0,
    );
    report(
        "top-n, first 10 per auction",
        top.values().map(Vec::len).sum(),
        held,
        top.values().flatten().map(|x| x.1).sum(),
    );

    // A regular join's stored side (q20's bids, before any auction arrives).
    let auction_schema = Kind::Auction.schema();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .chain(auction_schema.fields().iter())
        .enumerate()
        .map(|(i, f)| {
            f.as_ref()
                .clone()
                .with_name(format!("{}_{i}", f.name()))
                .with_nullable(true)
        })
        .collect();
    let joined = Arc::new(Schema::new(fields));
    let spec = JoinSpec {
        mode: JoinMode::Regular,
        kind: JoinKind::Inner,
        keys: [
            vec![col("auction", &schema)],
            vec![col("id", &auction_schema)],
        ],
        filter: None,
        inputs: [schema.clone(), auction_schema.clone()],
        output_schema: joined.clone(),
        joined_schema: joined,
        null_equal: false,
        expire: [None, None],
        ttl: None,
        updating: false,
        broadcast: None,
        null_aware: false,
    };
    let rows: usize = input.iter().map(RecordBatch::num_rows).sum();
    let arrow: usize = input
        .iter()
        .map(|b| {
            (0..b.num_rows())
                .map(|r| arrow_row_bytes(b, r))
                .sum::<usize>()
        })
        .sum();
    let held = held_after(OpSpec::new(spec), events, 0);
    report("regular join, stored bids", rows, held, arrow);

    // Whole jobs: peak heap per row of final state.
    println!("whole jobs at parallelism 1, peak heap per row of final state");
    let mut groups: HashMap<(i64, i64), usize> = HashMap::new();
    for b in &input {
        let a = b.column(auction).as_primitive::<Int64Type>();
        let t = b.column(time).as_primitive::<TimestampMillisecondType>();
        for r in 0..b.num_rows() {
            // auction, day ('yyyy-MM-dd': 10 bytes and an offset), eight BIGINTs.
            groups.insert(
                (a.value(r), t.value(r).div_euclid(86_400_000)),
                8 + 14 + 8 * 8,
            );
        }
    }
    report(
        "q17 (GROUP BY auction, day)",
        groups.len(),
        job_peak("q17", events),
        groups.values().sum(),
    );
    report(
        "q18 (first 1 per bidder, auction)",
        latest.len(),
        job_peak("q18", events),
        latest.values().map(|x| x.1).sum(),
    );
    report(
        "q19 (first 10 per auction)",
        top.values().map(Vec::len).sum(),
        job_peak("q19", events),
        top.values().flatten().map(|x| x.1).sum(),
    );
}
