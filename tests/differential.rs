//! Differential tests: every window kind and the issue's query shapes, run streaming by weir
//! over a JSON-lines bid file (~184k rows, out of order within the watermark delay) and as a
//! batch query by DataFusion over the same file; the rows must be identical, at parallelism
//! 1, 2 and 4.

mod common;

use std::path::{Path, PathBuf};

use common::*;

struct Data {
    _dir: tempfile::TempDir,
    file: PathBuf,
}

/// 200k Nexmark events → ~184k bids, shuffled within blocks of 10k rows (~1.1 s of event time,
/// less than the 4 s watermark delay, so no row is late).
fn data() -> Data {
    data_of(200_000)
}

/// The same, over `events` events.
fn data_of(events: u64) -> Data {
    let dir = tempdir();
    let file = dir.path().join("bids.json");
    let mut lines = json_lines(&bids(events));
    shuffle_blocks(&mut lines, 10_000);
    write_lines(&file, &lines);
    Data { _dir: dir, file }
}

/// The streaming rows must equal the batch rows at parallelism 1, 2 and 4 (keyed operators
/// fed through the hash exchange).
async fn check(d: &Path, stream_sql: &str, batch_sql: &str, what: &str) {
    let ctx = batch_ctx(&[("bid", d, bid_schema())]).await;
    let b = batch(&ctx, batch_sql).await;
    for p in [1, 2, 4] {
        let ddl = format!("SET 'parallelism' = '{p}';\n{}", bid_ddl("bid", d, 4));
        let s = stream(&ddl, stream_sql).await;
        assert_same_rows(&s, &b, &format!("{what} (parallelism {p})"));
    }
}

/// The streaming query's final rows (its changelog applied) must equal `want` at parallelism
/// 1, 2 and 4.
async fn check_final_rows(d: &Path, sql: &str, want: &[String], what: &str) {
    for p in [1, 2, 4] {
        let ddl = format!("SET 'parallelism' = '{p}';\n{}", bid_ddl("bid", d, 4));
        let s = final_rows(&stream(&ddl, sql).await);
        assert!(
            s == want,
            "{what} (parallelism {p}): {} rows against {}",
            s.len(),
            want.len()
        );
    }
}

const BIN10: &str = "date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01 00:00:00')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_queries_match_batch() {
    let d = data();
    check(
        &d.file,
        "SELECT * FROM bid",
        "SELECT * FROM bid",
        "passthrough",
    )
    .await;
    check(
        &d.file,
        "SELECT auction, bidder, CAST(0.908 * price AS DECIMAL(23, 3)) AS euro, date_time FROM bid",
        "SELECT auction, bidder, CAST(CAST(0.908 AS DECIMAL(3, 3)) * price AS DECIMAL(23, 3)) AS euro, date_time FROM bid",
        "currency conversion",
    )
    .await;
    check(
        &d.file,
        "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0",
        "SELECT auction, price FROM bid WHERE auction % 123 = 0",
        "MOD filter",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumble_tvf_with_aggregates_and_having() {
    let d = data();
    check(
        &d.file,
        "SELECT window_start, window_end, auction, COUNT(*) AS n, SUM(price) AS total, MIN(price) AS lo, \
                MAX(price) AS hi, AVG(price) AS mean \
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) \
         GROUP BY window_start, window_end, auction HAVING COUNT(*) > 3",
        &format!(
            "SELECT {BIN10} AS window_start, {BIN10} + INTERVAL '10 seconds' AS window_end, auction, COUNT(*) AS n, \
                    SUM(price) AS total, MIN(price) AS lo, MAX(price) AS hi, AVG(price) AS mean \
             FROM bid GROUP BY 1, 2, auction HAVING COUNT(*) > 3"
        ),
        "TUMBLE",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_distinct_per_window() {
    let d = data();
    check(
        &d.file,
        "SELECT window_start, channel, COUNT(DISTINCT bidder) AS bidders, COUNT(*) AS bids \
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) \
         GROUP BY window_start, window_end, channel",
        &format!("SELECT {BIN10} AS window_start, channel, COUNT(DISTINCT bidder) AS bidders, COUNT(*) AS bids FROM bid GROUP BY 1, channel"),
        "COUNT(DISTINCT)",
    )
    .await;
}

/// HOP as a batch: each row expanded into its size/slide windows.
fn hop_batch(slide_ms: i64, size_ms: i64, select: &str, group: &str) -> String {
    let k: Vec<String> = (0..size_ms / slide_ms).map(|k| format!("({k})")).collect();
    format!(
        "SELECT to_timestamp_millis(ws) AS window_start, to_timestamp_millis(ws + {size_ms}) AS window_end, {select} \
         FROM (SELECT *, (CAST(date_time AS BIGINT) / {slide_ms}) * {slide_ms} - k * {slide_ms} AS ws \
               FROM bid CROSS JOIN (VALUES {}) AS ks(k)) w \
         WHERE ws + {size_ms} > CAST(date_time AS BIGINT) \
         GROUP BY ws{group}",
        k.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_tvf_count_per_key() {
    let d = data();
    check(
        &d.file,
        "SELECT window_start, window_end, auction, COUNT(*) AS n, MAX(price) AS hi, COUNT(DISTINCT bidder) AS bidders \
         FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) \
         GROUP BY window_start, window_end, auction",
        &hop_batch(2000, 10_000, "auction, COUNT(*) AS n, MAX(price) AS hi, COUNT(DISTINCT bidder) AS bidders", ", auction"),
        "HOP TVF",
    )
    .await;
    // Size not a multiple of the slide: slices of gcd(4 s, 10 s) = 2 s.
    check(
        &d.file,
        "SELECT window_start, window_end, COUNT(*) AS n, AVG(price) AS mean \
         FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '4' SECOND, INTERVAL '10' SECOND)) \
         GROUP BY window_start, window_end",
        "SELECT to_timestamp_millis(ws) AS window_start, to_timestamp_millis(ws + 10000) AS window_end, COUNT(*) AS n, AVG(price) AS mean \
             FROM (SELECT *, (CAST(date_time AS BIGINT) / 4000) * 4000 - k * 4000 AS ws FROM bid CROSS JOIN (VALUES (0), (1), (2)) AS ks(k)) w \
             WHERE ws + 10000 > CAST(date_time AS BIGINT) GROUP BY ws",
        "HOP with size not a multiple of slide",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_hop_group_window() {
    let d = data();
    check(
        &d.file,
        "SELECT bidder, HOP_START(date_time, INTERVAL '5' SECOND, INTERVAL '15' SECOND) AS ws, \
                HOP_END(date_time, INTERVAL '5' SECOND, INTERVAL '15' SECOND) AS we, COUNT(*) AS n \
         FROM bid GROUP BY bidder, HOP(date_time, INTERVAL '5' SECOND, INTERVAL '15' SECOND)",
        &format!(
            "SELECT bidder, window_start AS ws, window_end AS we, n FROM ({})",
            hop_batch(5000, 15_000, "bidder, COUNT(*) AS n", ", bidder")
        ),
        "legacy HOP",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cumulate_tvf() {
    let d = data();
    // Windows [k*10s, k*10s + j*2s) for j = 1..5.
    check(
        &d.file,
        "SELECT window_start, window_end, channel, COUNT(*) AS n, SUM(price) AS total \
         FROM TABLE(CUMULATE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) \
         GROUP BY window_start, window_end, channel",
        "SELECT to_timestamp_millis(ws) AS window_start, to_timestamp_millis(we) AS window_end, channel, COUNT(*) AS n, SUM(price) AS total \
         FROM (SELECT *, (CAST(date_time AS BIGINT) / 10000) * 10000 AS ws, \
                     (CAST(date_time AS BIGINT) / 10000) * 10000 + j * 2000 AS we \
               FROM bid CROSS JOIN (VALUES (1), (2), (3), (4), (5)) AS js(j)) w \
         WHERE we > CAST(date_time AS BIGINT) GROUP BY ws, we, channel",
        "CUMULATE",
    )
    .await;
}

/// Sessions as a batch: a new session starts where the gap to the key's previous row > gap.
fn session_batch(gap_ms: i64, key: &str, aggs: &str) -> String {
    format!(
        "SELECT {key}, to_timestamp_millis(MIN(t)) AS window_start, to_timestamp_millis(MAX(t) + {gap_ms}) AS window_end, {aggs} \
         FROM (SELECT *, SUM(CASE WHEN prev IS NULL OR t - prev > {gap_ms} THEN 1 ELSE 0 END) \
                      OVER (PARTITION BY {key} ORDER BY t) AS sid \
               FROM (SELECT *, CAST(date_time AS BIGINT) AS t, \
                            LAG(CAST(date_time AS BIGINT)) OVER (PARTITION BY {key} ORDER BY CAST(date_time AS BIGINT)) AS prev \
                     FROM bid) a) s \
         GROUP BY {key}, sid"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_session_group_window() {
    let d = data();
    // A bidder's session closes after 100 ms without bids: many sessions, many keys.
    check(
        &d.file,
        "SELECT bidder, SESSION_START(date_time, INTERVAL '0.1' SECOND) AS window_start, \
                SESSION_END(date_time, INTERVAL '0.1' SECOND) AS window_end, COUNT(*) AS n, MAX(price) AS hi \
         FROM bid GROUP BY bidder, SESSION(date_time, INTERVAL '0.1' SECOND)",
        &session_batch(100, "bidder", "COUNT(*) AS n, MAX(price) AS hi"),
        "legacy SESSION",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_tvf() {
    let d = data();
    check(
        &d.file,
        "SELECT window_start, window_end, auction, COUNT(*) AS n, SUM(price) AS total \
         FROM TABLE(SESSION(TABLE bid PARTITION BY auction, DESCRIPTOR(date_time), INTERVAL '1' SECOND)) \
         GROUP BY window_start, window_end, auction",
        &format!("SELECT window_start, window_end, auction, n, total FROM ({})", session_batch(1000, "auction", "COUNT(*) AS n, SUM(price) AS total")),
        "SESSION TVF",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_tumble_group_window() {
    let d = data();
    check(
        &d.file,
        "SELECT channel, TUMBLE_START(date_time, INTERVAL '30' SECOND) AS ws, TUMBLE_END(date_time, INTERVAL '30' SECOND) AS we, \
                COUNT(*) AS n, SUM(price) AS total \
         FROM bid WHERE price > 1000 GROUP BY channel, TUMBLE(date_time, INTERVAL '30' SECOND)",
        "SELECT channel, date_bin(INTERVAL '30 seconds', date_time, TIMESTAMP '1970-01-01 00:00:00') AS ws, \
                date_bin(INTERVAL '30 seconds', date_time, TIMESTAMP '1970-01-01 00:00:00') + INTERVAL '30 seconds' AS we, \
                COUNT(*) AS n, SUM(price) AS total \
         FROM bid WHERE price > 1000 GROUP BY channel, 2, 3",
        "legacy TUMBLE",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_tvf_without_aggregation() {
    let d = data();
    check(
        &d.file,
        "SELECT auction, price, window_start, window_end FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '5' SECOND, INTERVAL '10' SECOND)) WHERE price > 500000",
        "SELECT auction, price, to_timestamp_millis(ws) AS window_start, to_timestamp_millis(ws + 10000) AS window_end \
         FROM (SELECT *, (CAST(date_time AS BIGINT) / 5000) * 5000 - k * 5000 AS ws FROM bid CROSS JOIN (VALUES (0), (1)) AS ks(k)) w \
         WHERE price > 500000",
        "HOP TVF without aggregation",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascaded_windows_over_a_view() {
    let d = data();
    let ddl = format!(
        "{} CREATE VIEW w5 AS SELECT window_start AS w5_start, window_time AS rowtime, auction, COUNT(*) AS cnt \
         FROM TABLE(TUMBLE(DATA => TABLE bid, TIMECOL => DESCRIPTOR(date_time), SIZE => INTERVAL '5' SECONDS)) \
         GROUP BY window_start, window_end, window_time, auction;",
        bid_ddl("bid", &d.file, 4)
    );
    let s = stream(
        &ddl,
        "SELECT window_start, SUM(cnt) AS total, MAX(cnt) AS hottest, COUNT(*) AS groups \
         FROM TABLE(TUMBLE(TABLE w5, DESCRIPTOR(rowtime), INTERVAL '10' SECOND)) GROUP BY window_start, window_end",
    )
    .await;
    let ctx = batch_ctx(&[("bid", &d.file, bid_schema())]).await;
    let b = batch(
        &ctx,
        &format!(
            "SELECT {BIN10} AS window_start, SUM(cnt) AS total, MAX(cnt) AS hottest, COUNT(*) AS groups \
             FROM (SELECT date_bin(INTERVAL '5 seconds', date_time, TIMESTAMP '1970-01-01 00:00:00') AS date_time, auction, COUNT(*) AS cnt \
                   FROM bid GROUP BY 1, auction) GROUP BY 1"
        ),
    )
    .await;
    assert_same_rows(&s, &b, "cascaded windows");
}

/// UNION ALL of two streams (the same table, filtered apart): rows as a batch UNION ALL, and a
/// window over the union, whose watermark is the minimum of its inputs'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn union_all_matches_batch() {
    let d = data();
    check(
        &d.file,
        "SELECT auction, price FROM bid WHERE auction % 2 = 0 \
         UNION ALL SELECT bidder, price * 2 FROM bid WHERE price > 1000",
        "SELECT auction, price FROM bid WHERE auction % 2 = 0 \
         UNION ALL SELECT bidder, price * 2 FROM bid WHERE price > 1000",
        "UNION ALL",
    )
    .await;
    let union = "SELECT auction, price, date_time FROM bid WHERE auction % 2 = 0 \
                 UNION ALL SELECT auction, price * 2, date_time FROM bid WHERE bidder % 3 = 0";
    let ctx = batch_ctx(&[("bid", &d.file, bid_schema())]).await;
    let b = batch(
        &ctx,
        &format!(
            "SELECT {BIN10} AS window_start, COUNT(*) AS n, SUM(price) AS total \
             FROM ({union}) GROUP BY 1"
        ),
    )
    .await;
    for p in [1, 2, 4] {
        let ddl = format!(
            "SET 'parallelism' = '{p}';\n{}\nCREATE VIEW u AS {union};",
            bid_ddl("bid", &d.file, 4)
        );
        let s = stream(
            &ddl,
            "SELECT window_start, COUNT(*) AS n, SUM(price) AS total \
             FROM TABLE(TUMBLE(TABLE u, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) \
             GROUP BY window_start, window_end",
        )
        .await;
        assert_same_rows(&s, &b, &format!("window over UNION ALL (parallelism {p})"));
    }
}

/// GROUPING SETS, ROLLUP and CUBE, unwindowed (an updating result, compared once applied)
/// and windowed (append-only), against DataFusion's batch grouping sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouping_sets_match_batch() {
    let d = data();
    let ctx = batch_ctx(&[("bid", &d.file, bid_schema())]).await;
    let cases = [
        (
            "SELECT auction % 10 AS a, bidder % 7 AS b, COUNT(*) AS n, SUM(price) AS total, \
             GROUPING(auction % 10) AS g FROM bid \
             GROUP BY GROUPING SETS ((auction % 10, bidder % 7), (auction % 10), ())"
                .to_string(),
            "SELECT auction % 10 AS a, bidder % 7 AS b, COUNT(*) AS n, SUM(price) AS total, \
             GROUPING(auction % 10) AS g FROM bid \
             GROUP BY GROUPING SETS ((auction % 10, bidder % 7), (auction % 10), ())"
                .to_string(),
        ),
        (
            "SELECT auction % 5 AS a, bidder % 3 AS b, MAX(price) AS hi FROM bid \
             GROUP BY CUBE (auction % 5, bidder % 3)"
                .to_string(),
            "SELECT auction % 5 AS a, bidder % 3 AS b, MAX(price) AS hi FROM bid \
             GROUP BY CUBE (auction % 5, bidder % 3)"
                .to_string(),
        ),
        (
            "SELECT window_start, auction % 4 AS a, COUNT(*) AS n FROM \
             TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) \
             GROUP BY window_start, window_end, ROLLUP (auction % 4)"
                .to_string(),
            format!(
                "SELECT {BIN10} AS window_start, auction % 4 AS a, COUNT(*) AS n FROM bid \
                 GROUP BY {BIN10}, ROLLUP (auction % 4)"
            ),
        ),
    ];
    for (stream_sql, batch_sql) in cases {
        let b = rows(&batch(&ctx, &batch_sql).await);
        assert!(b.len() > 3, "{batch_sql}: too few rows to compare");
        check_final_rows(&d.file, &stream_sql, &b, &stream_sql).await;
    }
}

/// OVER aggregations with RANGE frames (deterministic with ties: peers share a value) against
/// DataFusion's batch window functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_range_frames_match_batch() {
    let d = data();
    for frame in [
        "RANGE BETWEEN INTERVAL '2' SECOND PRECEDING AND CURRENT ROW",
        "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW",
    ] {
        let sql = format!(
            "SELECT auction, date_time, price, \
                    SUM(price) OVER w AS s, COUNT(*) OVER w AS n, MAX(price) OVER w AS hi, \
                    AVG(price) OVER w AS mean \
             FROM bid WINDOW w AS (PARTITION BY auction % 16 ORDER BY date_time {frame})"
        );
        check(&d.file, &sql, &sql, &format!("OVER {frame}")).await;
    }
}

/// LAG and LEAD (rows of one time are told apart by arrival, which differs between runs: the
/// compared columns are the same for such rows) against DataFusion's batch window functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_lag_lead_match_batch() {
    let d = data();
    let sql = "SELECT auction % 16 AS part, date_time, \
                      LAG(date_time) OVER w AS prev, LAG(date_time, 3) OVER w AS prev3, \
                      LEAD(date_time) OVER w AS next, LEAD(date_time, 2) OVER w AS next2 \
               FROM bid WINDOW w AS (PARTITION BY auction % 16 ORDER BY date_time)";
    check(&d.file, sql, sql, "LAG / LEAD").await;
}

/// Semi and anti joins (IN / EXISTS / NOT EXISTS subqueries, INTERSECT, EXCEPT), regular
/// (an anti join's result is updating: compared once applied) against DataFusion batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semi_and_anti_joins_match_batch() {
    // Fewer rows: the correlated NOT EXISTS compares every bid of an auction with every other.
    let d = data_of(50_000);
    let ctx = batch_ctx(&[("bid", &d.file, bid_schema())]).await;
    let cases = [
        "SELECT auction, bidder, price FROM bid \
         WHERE bidder IN (SELECT bidder FROM bid WHERE price > 50000000)",
        "SELECT auction, price FROM bid b1 WHERE EXISTS \
         (SELECT 1 FROM bid b2 WHERE b2.auction = b1.auction AND b2.price > b1.price * 100)",
        "SELECT auction, price FROM bid b1 WHERE NOT EXISTS \
         (SELECT 1 FROM bid b2 WHERE b2.auction = b1.auction AND b2.price > b1.price)",
        "SELECT auction % 1000 AS a FROM bid WHERE price > 1000 \
         INTERSECT SELECT auction % 1000 FROM bid WHERE bidder % 5 = 0",
        "SELECT bidder % 2000 AS b FROM bid \
         EXCEPT SELECT (bidder % 1000) * 2 FROM bid WHERE price > 1000",
        // NOT IN: null-aware, with NULLs on the left and none on the right...
        "SELECT auction, p FROM (SELECT auction, \
                CASE WHEN price % 7 = 0 THEN NULL ELSE price % 1500 END AS p FROM bid) \
         WHERE p NOT IN (SELECT bidder % 1000 FROM bid WHERE price > 1000)",
        // ... and with one NULL on the right (no row is in the result: compared below).
        "SELECT auction FROM bid WHERE price % 1000 NOT IN \
         (SELECT CASE WHEN auction = 1000 AND bidder % 2 = 0 THEN NULL ELSE bidder % 100 END \
          FROM bid)",
    ];
    for sql in cases {
        let b = rows(&batch(&ctx, sql).await);
        let empty = sql.contains("THEN NULL ELSE bidder % 100");
        assert!(
            b.len() > 3 || (empty && b.is_empty()),
            "{sql}: {} rows",
            b.len()
        );
        check_final_rows(&d.file, sql, &b, sql).await;
    }
}

/// Joins of which little is read above: the columns nothing names are nulled before the join
/// exchanges and stores its inputs. The rows must stay the batch answer through aggregates,
/// aliases, DISTINCT, a self-join whose sides share every column name, an interval join and
/// a column read only by a correlated subquery above the join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_that_read_few_columns_match_batch() {
    let d = data_of(50_000);
    let ctx = batch_ctx(&[("bid", &d.file, bid_schema())]).await;
    // Price as well: hot auctions and bidders would otherwise pair up thousands of bids.
    let same = "b1.auction = b2.auction AND b1.bidder = b2.bidder AND b1.price = b2.price";
    let cases = [
        format!(
            "SELECT b1.auction % 100 AS k, COUNT(*) AS n, MAX(b2.price) AS m \
             FROM bid b1 JOIN bid b2 ON {same} GROUP BY b1.auction % 100"
        ),
        format!(
            "SELECT DISTINCT q.channel, q.u FROM \
             (SELECT b1.channel, b2.url AS u FROM bid b1 JOIN bid b2 ON {same}) q"
        ),
        format!(
            "SELECT x.auction, x.extra FROM (SELECT b1.auction, b2.extra, b1.bidder \
             FROM bid b1 JOIN bid b2 ON {same}) x \
             WHERE x.bidder % 10 = 0"
        ),
        format!(
            "SELECT b1.auction, b2.price FROM bid b1 JOIN bid b2 ON {same} \
             WHERE b2.date_time BETWEEN b1.date_time AND b1.date_time + INTERVAL '2' SECOND"
        ),
        format!(
            "SELECT j.auction, j.price FROM (SELECT b1.auction, b2.price, b2.url \
             FROM bid b1 JOIN bid b2 ON {same}) j \
             WHERE EXISTS (SELECT 1 FROM bid b3 WHERE b3.auction = j.auction AND b3.url <> j.url)"
        ),
    ];
    for sql in &cases {
        let b = rows(&batch(&ctx, sql).await);
        assert!(b.len() > 3, "{sql}: {} rows", b.len());
        check_final_rows(&d.file, sql, &b, sql).await;
    }
}

/// INTERSECT ALL and EXCEPT ALL (rows with NULLs, duplicates counted) against the counts of
/// each branch's rows in DataFusion batch (whose own `INTERSECT ALL` is a semi join that does
/// not count duplicates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intersect_and_except_all_match_counts() {
    use std::collections::BTreeMap;
    let d = data_of(50_000);
    let ctx = batch_ctx(&[("bid", &d.file, bid_schema())]).await;
    let left = "SELECT auction % 40 AS a, \
                       CASE WHEN bidder % 11 = 0 THEN NULL ELSE bidder % 3 END AS b \
                FROM bid WHERE price > 1000";
    let right = "SELECT auction % 50, CASE WHEN price % 13 = 0 THEN NULL ELSE price % 3 END \
                 FROM bid WHERE bidder % 2 = 0";
    let count = |rows: Vec<String>| {
        let mut m: BTreeMap<String, i64> = BTreeMap::new();
        for r in rows {
            *m.entry(r).or_default() += 1;
        }
        m
    };
    let l = count(rows(&batch(&ctx, left).await));
    let r = count(rows(&batch(&ctx, right).await));
    for (op, copies) in [
        (
            "INTERSECT ALL",
            (|l: i64, r: i64| l.min(r)) as fn(i64, i64) -> i64,
        ),
        ("EXCEPT ALL", |l, r| (l - r).max(0)),
    ] {
        let mut want = vec![];
        for (row, n) in &l {
            let k = copies(*n, r.get(row).copied().unwrap_or(0));
            want.extend(std::iter::repeat_n(row.clone(), k as usize));
        }
        assert!(want.len() > 50, "{op}: too few rows to compare");
        assert!(want.iter().any(|w| w.contains("NULL")), "{op}: no NULLs");
        let sql = format!("{left} {op} {right}");
        check_final_rows(&d.file, &sql, &want, op).await;
    }
}

/// MIN, MAX and DISTINCT aggregates over an updating input (per-auction counts and maxima
/// that change as bids arrive), applied as a changelog, against DataFusion batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_max_distinct_over_updating_input_match_batch() {
    let d = data_of(100_000);
    let ctx = batch_ctx(&[("bid", &d.file, bid_schema())]).await;
    let sql = "SELECT k, MIN(n) AS lo, MAX(n) AS hi, MAX(top) AS best, MIN(top) AS worst, \
                      COUNT(DISTINCT n) AS dn, SUM(DISTINCT n) AS sn, COUNT(*) AS c \
               FROM (SELECT auction % 13 AS k, auction, COUNT(*) AS n, MAX(price) AS top \
                     FROM bid GROUP BY auction) \
               GROUP BY k";
    let b = rows(&batch(&ctx, sql).await);
    assert!(b.len() > 3, "too few rows to compare");
    check_final_rows(&d.file, sql, &b, "aggregates over an updating input").await;
}

/// Top-N over an updating input (the auctions with the most bids per group, counts changing
/// as bids arrive), with and without the row number, applied as a changelog, against
/// DataFusion batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_n_over_updating_input_matches_batch() {
    let d = data_of(100_000);
    let ctx = batch_ctx(&[("bid", &d.file, bid_schema())]).await;
    let counts = "SELECT auction % 7 AS k, auction, COUNT(*) AS n, MAX(price) AS best \
                  FROM bid GROUP BY auction";
    for sql in [
        format!(
            "SELECT k, auction, n, rn FROM (SELECT k, auction, n, ROW_NUMBER() OVER \
             (PARTITION BY k ORDER BY n DESC, auction) AS rn FROM ({counts})) WHERE rn <= 3"
        ),
        format!(
            "SELECT auction, best FROM (SELECT auction, best, ROW_NUMBER() OVER \
             (ORDER BY best DESC, auction) AS rn FROM ({counts})) WHERE rn <= 5"
        ),
    ] {
        let b = rows(&batch(&ctx, &sql).await);
        assert!(b.len() > 3, "{sql}: too few rows to compare");
        check_final_rows(&d.file, &sql, &b, &sql).await;
    }
}

/// Event-time temporal joins (INNER and LEFT) against a versioned table, compared with the
/// batch form: each order joined with the latest version of its key at or before its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_join_matches_batch() {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let dir = tempdir();
    let ts = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .naive_utc()
            .format("%Y-%m-%d %H:%M:%S%.3f")
            .to_string()
    };
    let base = 1_767_225_600_000i64; // 2026-01-01
    // Versions: key k changes every ~7 s (times unique per key), in time order.
    let mut rates = vec![];
    for i in 0..3_000i64 {
        let k = (i * 7919) % 23;
        let t = base + i * 300 + k;
        rates.push(format!(
            r#"{{"k": {k}, "rate": {}, "update_time": "{}"}}"#,
            (i * 31) % 997,
            ts(t)
        ));
    }
    // Orders over the same span, out of order within 2 s; some keys have no version (23..25).
    let mut orders = vec![];
    for i in 0..20_000i64 {
        let t = base + i * 45 - (i % 13) * 150;
        orders.push(format!(
            r#"{{"id": {i}, "k": {}, "amount": {}, "order_time": "{}"}}"#,
            (i * 104_729) % 25,
            i % 100,
            ts(t)
        ));
    }
    let (rp, op) = (
        dir.path().join("rates.json"),
        dir.path().join("orders.json"),
    );
    write_lines(&rp, &rates);
    write_lines(&op, &orders);
    let time = DataType::Timestamp(TimeUnit::Millisecond, None);
    let rate_schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("rate", DataType::Int64, true),
        Field::new("update_time", time.clone(), true),
    ]));
    let order_schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("k", DataType::Int64, true),
        Field::new("amount", DataType::Int64, true),
        Field::new("order_time", time, true),
    ]));
    let ctx = batch_ctx(&[("rates", &rp, rate_schema), ("orders", &op, order_schema)]).await;
    for (join, stream_sql) in [
        (
            "JOIN",
            "SELECT o.id, o.amount, r.rate FROM orders AS o \
             JOIN rates FOR SYSTEM_TIME AS OF o.order_time AS r ON o.k = r.k",
        ),
        (
            "LEFT JOIN",
            "SELECT o.id, o.amount, r.rate FROM orders AS o \
             LEFT JOIN rates FOR SYSTEM_TIME AS OF o.order_time AS r ON o.k = r.k",
        ),
    ] {
        // The version each order takes: the latest of its key at or before its time.
        let batch_sql = format!(
            "WITH pick AS (SELECT o.id, MAX(r.update_time) AS vt FROM orders AS o \
                           JOIN rates AS r ON o.k = r.k AND r.update_time <= o.order_time \
                           GROUP BY o.id) \
             SELECT o.id, o.amount, r.rate FROM orders AS o {join} pick AS p ON o.id = p.id \
             {join} rates AS r ON r.k = o.k AND r.update_time = p.vt"
        );
        let want = rows(&batch(&ctx, &batch_sql).await);
        assert!(want.len() > 1_000, "{join}: {} rows", want.len());
        for p in [1, 2, 4] {
            let ddl = format!(
                "SET 'parallelism' = '{p}';\n\
                 CREATE TABLE rates (k BIGINT, rate BIGINT, update_time TIMESTAMP(3), \
                   WATERMARK FOR update_time AS update_time, PRIMARY KEY (k) NOT ENFORCED) \
                 WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n\
                 CREATE TABLE orders (id BIGINT, k BIGINT, amount BIGINT, order_time TIMESTAMP(3), \
                   WATERMARK FOR order_time AS order_time - INTERVAL '3' SECOND) \
                 WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
                rp.display(),
                op.display()
            );
            let got = rows(&stream(&ddl, stream_sql).await);
            assert_eq!(got.len(), want.len(), "{join} (parallelism {p})");
            assert!(got == want, "{join} (parallelism {p}): rows differ");
        }
    }
}

/// CROSS JOIN UNNEST and LEFT JOIN UNNEST … ON TRUE of an ARRAY column, aggregated per
/// element, against DataFusion's batch UNNEST (plus, for the left join, a NULL element for each
/// row whose array is empty or NULL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_join_unnest_matches_batch() {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let dir = tempdir();
    let lines: Vec<String> = (0..20_000i64)
        .map(|i| {
            if i % 11 == 0 {
                return format!(r#"{{"id": {i}, "items": null}}"#);
            }
            let items: Vec<String> = (0..(i * 7) % 5)
                .map(|j| format!("\"p{}\"", (i * 31 + j * 17) % 97))
                .collect();
            format!(r#"{{"id": {i}, "items": [{}]}}"#, items.join(", "))
        })
        .collect();
    let path = dir.path().join("orders.json");
    write_lines(&path, &lines);
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new(
            "items",
            DataType::List(std::sync::Arc::new(Field::new_list_field(
                DataType::Utf8,
                true,
            ))),
            true,
        ),
    ]));
    let ctx = batch_ctx(&[("orders", &path, schema)]).await;
    let unnested = "SELECT id, unnest(items) AS item FROM orders";
    let empty = "SELECT id, CAST(NULL AS VARCHAR) AS item FROM orders \
                 WHERE items IS NULL OR cardinality(items) = 0";
    for (join, reference) in [
        (
            "CROSS JOIN UNNEST(o.items) AS t (item)",
            unnested.to_string(),
        ),
        (
            "LEFT JOIN UNNEST(o.items) AS t (item) ON TRUE",
            format!("{unnested} UNION ALL {empty}"),
        ),
    ] {
        let want = rows(
            &batch(
                &ctx,
                &format!(
                    "SELECT item, COUNT(*) AS n, SUM(id) AS s FROM ({reference}) GROUP BY item"
                ),
            )
            .await,
        );
        assert!(want.len() > 50);
        let sql = format!(
            "SELECT t.item, COUNT(*) AS n, SUM(o.id) AS s FROM orders AS o {join} GROUP BY t.item"
        );
        for p in [1, 2, 4] {
            let ddl = format!(
                "SET 'parallelism' = '{p}';\nCREATE TABLE orders (id BIGINT, items ARRAY<STRING>) \
                 WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
                path.display()
            );
            let got = final_rows(&stream(&ddl, &sql).await);
            assert_eq!(got, want, "{join}, parallelism {p}");
        }
    }
}

/// The SESSION TVF without aggregation: each bid with its session's bounds, against the batch
/// sessions (a new session where the gap to the key's previous bid exceeds the gap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_tvf_rows_match_batch() {
    let d = data();
    let gap = 500;
    let batch_sql = format!(
        "SELECT b.auction, b.bidder, b.price, s.window_start, s.window_end \
         FROM ({}) s JOIN (SELECT *, SUM(CASE WHEN prev IS NULL OR t - prev > {gap} THEN 1 ELSE 0 END) \
                      OVER (PARTITION BY auction ORDER BY t) AS sid \
               FROM (SELECT *, CAST(date_time AS BIGINT) AS t, \
                            LAG(CAST(date_time AS BIGINT)) OVER (PARTITION BY auction ORDER BY CAST(date_time AS BIGINT)) AS prev \
                     FROM bid) a) b ON s.auction = b.auction AND s.sid = b.sid",
        session_batch(gap, "auction", "sid")
    );
    check(
        &d.file,
        "SELECT auction, bidder, price, window_start, window_end \
         FROM TABLE(SESSION(TABLE bid PARTITION BY auction, DESCRIPTOR(date_time), INTERVAL '0.5' SECOND))",
        &batch_sql,
        "SESSION TVF rows",
    )
    .await;
}

/// A `debezium-json` source: a change log of inserts, updates and deletes, aggregated per
/// category, against the batch aggregate over the table the log leaves behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_changelog_source_matches_batch_over_final_table() {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let dir = tempdir();
    let mut table: std::collections::BTreeMap<i64, (i64, i64)> = Default::default();
    let row = |id: i64, (cat, price): (i64, i64)| {
        format!(r#"{{"id": {id}, "category": "c{cat}", "price": {price}}}"#)
    };
    let mut events = vec![];
    let mut seed = 7u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as i64
    };
    for _ in 0..30_000 {
        let id = next() % 2_000;
        let new = (next() % 13, next() % 1_000);
        let event = match table.get(&id).copied() {
            None => {
                table.insert(id, new);
                format!(
                    r#"{{"before": null, "after": {}, "op": "c"}}"#,
                    row(id, new)
                )
            }
            Some(old) if next() % 4 == 0 => {
                table.remove(&id);
                format!(
                    r#"{{"before": {}, "after": null, "op": "d"}}"#,
                    row(id, old)
                )
            }
            Some(old) => {
                table.insert(id, new);
                format!(
                    r#"{{"before": {}, "after": {}, "op": "u"}}"#,
                    row(id, old),
                    row(id, new)
                )
            }
        };
        events.push(event);
    }
    let log = dir.path().join("log.json");
    write_lines(&log, &events);
    let final_path = dir.path().join("final.json");
    let finals: Vec<String> = table.iter().map(|(id, v)| row(*id, *v)).collect();
    write_lines(&final_path, &finals);
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("category", DataType::Utf8, true),
        Field::new("price", DataType::Int64, true),
    ]));
    let ctx = batch_ctx(&[("products", &final_path, schema)]).await;
    let sql = "SELECT category, COUNT(*) AS n, SUM(price) AS total, MAX(price) AS top \
               FROM products GROUP BY category";
    let want = rows(&batch(&ctx, sql).await);
    assert!(want.len() > 10);
    for p in [1, 2, 4] {
        let ddl = format!(
            "SET 'parallelism' = '{p}';\nCREATE TABLE products (id BIGINT, category STRING, price BIGINT) \
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'debezium-json');",
            log.display()
        );
        let got = final_rows(&stream(&ddl, sql).await);
        assert_eq!(got, want, "parallelism {p}");
        // The change log applied is the final table.
        let all = final_rows(&stream(&ddl, "SELECT * FROM products").await);
        assert_eq!(all.len(), table.len(), "parallelism {p}");
    }
}

/// MATCH_RECOGNIZE: three rising prices in a row per symbol (`UP{3}`, `UP.price >
/// PREV(UP.price)`, overlapping matches with AFTER MATCH SKIP TO NEXT ROW), over rows out of
/// order within the watermark delay, against the batch form with LAG / LEAD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_recognize_rising_prices_match_batch() {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let dir = tempdir();
    let mut seed = 3u64;
    let mut lines: Vec<String> = (0..40_000i64)
        .map(|i| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let ts = chrono::DateTime::from_timestamp_millis(1_767_225_600_000 + i * 7)
                .unwrap()
                .naive_utc()
                .format("%Y-%m-%dT%H:%M:%S%.3f");
            format!(
                r#"{{"sym": "s{}", "ts": "{ts}", "price": {}}}"#,
                (seed >> 40) % 37,
                (seed >> 20) % 100
            )
        })
        .collect();
    shuffle_blocks(&mut lines, 100);
    let path = dir.path().join("ticks.json");
    write_lines(&path, &lines);
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("sym", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("price", DataType::Int64, true),
    ]));
    let ctx = batch_ctx(&[("ticks", &path, schema)]).await;
    let want = rows(
        &batch(
            &ctx,
            "SELECT sym, price AS first_price, n2 AS last_price, price + n1 + n2 AS total, t2 AS at \
             FROM (SELECT sym, price, LAG(price) OVER w AS p0, LEAD(price, 1) OVER w AS n1, \
                          LEAD(price, 2) OVER w AS n2, LEAD(ts, 2) OVER w AS t2 \
                   FROM ticks WINDOW w AS (PARTITION BY sym ORDER BY ts)) \
             WHERE price > p0 AND n1 > price AND n2 > n1",
        )
        .await,
    );
    assert!(want.len() > 500, "{}", want.len());
    let sql = "SELECT * FROM ticks MATCH_RECOGNIZE (PARTITION BY sym ORDER BY ts \
               MEASURES FIRST(UP.price) AS first_price, LAST(UP.price) AS last_price, \
                        SUM(UP.price) AS total, MATCH_ROWTIME() AS at \
               AFTER MATCH SKIP TO NEXT ROW PATTERN (UP{3}) \
               DEFINE UP AS UP.price > PREV(UP.price))";
    for p in [1, 2, 4] {
        let ddl = format!(
            "SET 'parallelism' = '{p}';\nCREATE TABLE ticks (sym STRING, ts TIMESTAMP(3), price BIGINT, \
             WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
            path.display()
        );
        let got = rows(&stream(&ddl, sql).await);
        assert_eq!(got.len(), want.len(), "parallelism {p}");
        assert!(got == want, "parallelism {p}: rows differ");
    }
}
