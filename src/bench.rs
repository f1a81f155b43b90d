//! The Nexmark benchmark behind `weir bench nexmark`: runs the query files of `sql/nexmark/`
//! on the built-in generator (blackhole sinks) and measures events, wall and CPU time, peak
//! memory and window latency; optionally runs the same query as a DataFusion batch query over
//! the same generated data, as the reference for how close streaming gets to the batch limit.
//!
//! Each query runs in a process of its own (`weir bench nexmark` starts
//! `weir bench nexmark-one` per query), so that CPU time and peak memory are the query's.
//! Figures are per core as the issue defines them: events ÷ (wall × cores used), the
//! generator's work included; "per CPU-second" divides by the process's CPU time instead.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::connectors::nexmark::{Config, Generator, Kind};
use crate::engine::{SelectOutput, StatementOutput};
use crate::{Engine, Error, Result};

/// The queries `weir bench nexmark` runs when none are named: every `q<n>.sql` of `dir`, in
/// order of n (the whole suite, q0 to q22).
pub fn suite(dir: &std::path::Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        context: format!("listing the Nexmark queries in {}", dir.display()),
        source,
    })?;
    let mut queries: Vec<(u32, String)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let n = name
                .strip_prefix('q')?
                .strip_suffix(".sql")?
                .parse::<u32>()
                .ok()?;
            Some((n, format!("q{n}")))
        })
        .collect();
    queries.sort();
    Ok(queries.into_iter().map(|(_, q)| q).collect())
}

/// What one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// Query name (`q5`).
    pub query: String,
    /// `stream` (weir) or `batch` (DataFusion over the same data).
    pub mode: String,
    /// Events of the Nexmark sequence.
    pub events: u64,
    /// Rows the query produced.
    pub rows_out: u64,
    /// Wall seconds of the query (for batch: the query alone, not generating its input).
    pub wall_s: f64,
    /// CPU seconds (user + system) of the process over the same span.
    pub cpu_s: f64,
    /// Cores the run could use.
    pub cores: usize,
    /// Instances per keyed operator (stream).
    pub parallelism: usize,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: f64,
    /// Latency from an event's ingestion to the emit of its window (q5, q7, q8), or to the
    /// sink's watermark passing its source's watermark after it (other queries), ms.
    pub latency_p50_ms: Option<f64>,
    /// The 99th percentile of the same.
    pub latency_p99_ms: Option<f64>,
    /// Batch: seconds spent generating the input tables into memory (not in `wall_s`).
    #[serde(default)]
    pub input_s: Option<f64>,
    /// Why the query did not run (e.g. "not supported yet: ...").
    pub error: Option<String>,
}

impl Measurement {
    /// Events per second of wall time.
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.wall_s.max(1e-9)
    }

    /// Events ÷ (wall × cores used).
    pub fn events_per_s_per_core(&self) -> f64 {
        self.events_per_s() / self.cores.max(1) as f64
    }

    /// Events per CPU-second.
    pub fn events_per_cpu_s(&self) -> f64 {
        self.events as f64 / self.cpu_s.max(1e-9)
    }

    /// A row for a query that could not run.
    pub fn failed(query: &str, mode: &str, events: u64, error: String) -> Self {
        Self {
            query: query.into(),
            mode: mode.into(),
            events,
            rows_out: 0,
            wall_s: 0.0,
            cpu_s: 0.0,
            cores: 0,
            parallelism: 0,
            peak_rss_mib: 0.0,
            latency_p50_ms: None,
            latency_p99_ms: None,
            input_s: None,
            error: Some(error),
        }
    }
}

/// The window width (ms) whose closing defines a query's latency, if it is windowed.
pub fn window_ms(query: &str) -> Option<i64> {
    match query {
        "q5" => Some(2_000),
        "q7" | "q8" => Some(10_000),
        _ => None,
    }
}

/// CPU seconds (user + system) used by this process so far.
pub fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory of this process (VmHWM), MiB.
pub fn peak_rss_mib() -> f64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0.0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The query file's text with every `'nexmark.events'` set to `events`.
pub fn with_events(sql: &str, events: u64) -> String {
    let key = "'nexmark.events'";
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(i) = rest.find(key) {
        let (head, tail) = rest.split_at(i + key.len());
        out.push_str(head);
        // ` = '123'`
        let Some(open) = tail.find('\'') else {
            rest = tail;
            continue;
        };
        let Some(close) = tail[open + 1..].find('\'') else {
            rest = tail;
            continue;
        };
        out.push_str(&tail[..open]);
        out.push_str(&format!("'{events}'"));
        rest = &tail[open + 1 + close + 1..];
    }
    out.push_str(rest);
    out
}

/// The query file's text with every nexmark table paced to `rate` events per second of wall
/// clock (`'nexmark.max-rate'`, set next to each `'nexmark.events'`).
pub fn with_max_rate(sql: &str, rate: u64) -> String {
    sql.replace(
        "'nexmark.events'",
        &format!("'nexmark.max-rate' = '{rate}', 'nexmark.events'"),
    )
}

/// Run one query file as a streaming job and measure it; with `rate`, its generators are paced
/// to that many events per second.
pub async fn run_stream(
    query: &str,
    file: &Path,
    events: u64,
    parallelism: Option<usize>,
    rate: Option<u64>,
) -> Result<Measurement> {
    let sql = std::fs::read_to_string(file).map_err(|source| Error::Io {
        context: format!("reading {}", file.display()),
        source,
    })?;
    let mut sql = with_events(&sql, events);
    if let Some(rate) = rate {
        sql = with_max_rate(&sql, rate);
    }
    let engine = Engine::new();
    engine.execute("SET 'weir.trace-latency' = 'true';").await?;
    if let Some(p) = parallelism {
        engine
            .execute(&format!("SET 'parallelism' = '{p}';"))
            .await?;
    }
    let cpu0 = process_cpu_seconds();
    let start = Instant::now();
    let mut jobs = vec![];
    for out in engine.execute_with(&sql, SelectOutput::Discard).await? {
        if let StatementOutput::Job(j) = out {
            jobs.push(j);
        }
    }
    let metrics: Vec<_> = jobs.iter().map(|j| j.metrics().clone()).collect();
    let mut rows_out = 0;
    for j in jobs {
        rows_out += j.wait().await?.rows_out;
    }
    let wall_s = start.elapsed().as_secs_f64();
    let cpu_s = process_cpu_seconds() - cpu0;
    let catalog = engine.catalog()?;
    let delay = catalog
        .tables
        .values()
        .filter_map(|t| t.def.watermark.as_ref().map(|w| w.delay_ms))
        .max()
        .unwrap_or(0);
    let latency = metrics
        .first()
        .and_then(|m| m.trace.as_ref())
        .and_then(|t| t.percentiles(window_ms(query), delay));
    let parallelism = parallelism.unwrap_or_else(crate::planner::default_parallelism);
    Ok(Measurement {
        query: query.into(),
        mode: "stream".into(),
        events,
        rows_out,
        wall_s,
        cpu_s,
        cores: crate::planner::default_parallelism(),
        parallelism,
        peak_rss_mib: peak_rss_mib(),
        latency_p50_ms: latency.map(|l| l.0),
        latency_p99_ms: latency.map(|l| l.1),
        input_s: None,
        error: None,
    })
}

const BIN10: &str = "date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01 00:00:00')";

/// The batch (DataFusion) form of a query, where one is written: window TVFs become
/// `date_bin` groupings, sessions a gap-and-island query.
pub fn batch_sql(query: &str) -> Option<String> {
    Some(match query {
        "q0" => "SELECT auction, bidder, price, date_time, extra FROM bid".into(),
        "q1" => "SELECT auction, bidder, CAST(0.908 AS DECIMAL(3, 3)) * price AS price, date_time, extra FROM bid".into(),
        "q2" => "SELECT auction, price FROM bid WHERE auction % 123 = 0".into(),
        "q3" => "SELECT P.name, P.city, P.state, A.id FROM auction AS A INNER JOIN person AS P ON A.seller = P.id \
                 WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')"
            .into(),
        "q5" => "WITH hop AS (
                    SELECT auction, date_bin(INTERVAL '2 seconds', date_time, TIMESTAMP '1970-01-01 00:00:00') - k AS ws
                    FROM bid CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '2 seconds'), (INTERVAL '4 seconds'),
                                                (INTERVAL '6 seconds'), (INTERVAL '8 seconds')) AS t(k)),
                 counts AS (SELECT auction, ws, count(*) AS num FROM hop GROUP BY auction, ws),
                 maxes AS (SELECT ws, max(num) AS maxn FROM counts GROUP BY ws)
                 SELECT c.auction, c.num FROM counts c JOIN maxes m ON c.ws = m.ws AND c.num >= m.maxn"
            .into(),
        "q7" => format!(
            "SELECT B.auction, B.price, B.bidder, B.date_time, B.extra FROM bid B
             JOIN (SELECT MAX(price) AS maxprice, {BIN10} + INTERVAL '10 seconds' AS date_time FROM bid GROUP BY {BIN10}) B1
             ON B.price = B1.maxprice
             WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time"
        ),
        "q8" => format!(
            "SELECT P.id, P.name, P.starttime FROM
             (SELECT id, name, {BIN10} AS starttime FROM person GROUP BY id, name, {BIN10}) P
             JOIN (SELECT seller, {BIN10} AS starttime FROM auction GROUP BY seller, {BIN10}) A
             ON P.id = A.seller AND P.starttime = A.starttime"
        ),
        "q11" => "SELECT bidder, count(*) AS bid_count, to_timestamp_millis(MIN(t)) AS starttime, to_timestamp_millis(MAX(t) + 10000) AS endtime
                  FROM (SELECT bidder, t, SUM(CASE WHEN prev IS NULL OR t - prev > 10000 THEN 1 ELSE 0 END)
                               OVER (PARTITION BY bidder ORDER BY t) AS sid
                        FROM (SELECT bidder, CAST(date_time AS BIGINT) AS t,
                                     LAG(CAST(date_time AS BIGINT)) OVER (PARTITION BY bidder ORDER BY CAST(date_time AS BIGINT)) AS prev
                              FROM bid) x) y
                  GROUP BY bidder, sid"
            .into(),
        _ => return None,
    })
}

/// Run the batch form of `query` over `events` generated events, in memory, on all cores.
pub async fn run_batch(query: &str, events: u64) -> Result<Measurement> {
    let Some(sql) = batch_sql(query) else {
        return Ok(Measurement::failed(
            query,
            "batch",
            events,
            "no batch form written for this query".into(),
        ));
    };
    let cores = crate::planner::default_parallelism();
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(cores));
    let generating = Instant::now();
    for kind in [Kind::Person, Kind::Auction, Kind::Bid] {
        if !sql.contains(kind.name()) {
            continue;
        }
        let config = Config::bounded(events);
        let mut g = Generator::new(kind, config, 0);
        let mut parts: Vec<Vec<RecordBatch>> = vec![vec![]; cores];
        let mut i = 0;
        while let Some(b) = g.next_batch()? {
            parts[i % cores].push(b);
            i += 1;
        }
        let table = MemTable::try_new(kind.schema(), parts)?;
        ctx.register_table(kind.name(), Arc::new(table))?;
    }
    let input_s = generating.elapsed().as_secs_f64();
    let cpu0 = process_cpu_seconds();
    let start = Instant::now();
    let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
    let mut rows_out = 0u64;
    while let Some(b) = stream.next().await {
        rows_out += b?.num_rows() as u64;
    }
    Ok(Measurement {
        query: query.into(),
        mode: "batch".into(),
        events,
        rows_out,
        wall_s: start.elapsed().as_secs_f64(),
        cpu_s: process_cpu_seconds() - cpu0,
        cores,
        parallelism: cores,
        peak_rss_mib: peak_rss_mib(),
        latency_p50_ms: None,
        latency_p99_ms: None,
        input_s: Some(input_s),
        error: None,
    })
}

/// The measurements as an aligned text table.
pub fn render(rows: &[Measurement]) -> String {
    let mut out = format!(
        "{:<5} {:<6} {:>11} {:>9} {:>8} {:>8} {:>12} {:>14} {:>13} {:>9} {:>9} {:>9} {:>8}\n",
        "query",
        "mode",
        "events",
        "rows out",
        "wall s",
        "cpu s",
        "events/s",
        "events/s/core",
        "events/cpu-s",
        "peak MiB",
        "p50 ms",
        "p99 ms",
        "input s"
    );
    let m = |v: f64| format!("{:.2}M", v / 1e6);
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for r in rows {
        if let Some(e) = &r.error {
            out.push_str(&format!("{:<5} {:<6} {}\n", r.query, r.mode, e));
            continue;
        }
        out.push_str(&format!(
            "{:<5} {:<6} {:>11} {:>9} {:>8.3} {:>8.3} {:>12} {:>14} {:>13} {:>9.1} {:>9} {:>9} {:>8}\n",
            r.query,
            r.mode,
            r.events,
            r.rows_out,
            r.wall_s,
            r.cpu_s,
            m(r.events_per_s()),
            m(r.events_per_s_per_core()),
            if r.cpu_s >= 0.05 { m(r.events_per_cpu_s()) } else { "-".into() },
            r.peak_rss_mib,
            ms(r.latency_p50_ms),
            ms(r.latency_p99_ms),
            r.input_s.map_or("-".to_string(), |s| format!("{s:.3}"))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_rate_is_set_beside_every_events_option() {
        let sql = "WITH ('nexmark.events' = '1');\nWITH ('nexmark.events'='5')";
        assert_eq!(
            with_max_rate(sql, 7),
            "WITH ('nexmark.max-rate' = '7', 'nexmark.events' = '1');\nWITH ('nexmark.max-rate' = '7', 'nexmark.events'='5')"
        );
    }

    #[test]
    fn events_are_substituted_everywhere() {
        let sql = "WITH ('connector' = 'nexmark', 'nexmark.events' = '10000000');\nWITH ('nexmark.events'='5')";
        assert_eq!(
            with_events(sql, 42),
            "WITH ('connector' = 'nexmark', 'nexmark.events' = '42');\nWITH ('nexmark.events'='42')"
        );
    }
}
