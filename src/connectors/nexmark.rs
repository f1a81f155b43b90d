//! The built-in Nexmark generator (`'connector' = 'nexmark'`): person, auction and bid tables
//! built directly as Arrow columns from one deterministic event sequence.
//!
//! Event `n` is a person when `n % 50 == 0`, an auction when `n % 50` is 1–3, a bid otherwise.
//! Every random choice is seeded from the event number, so runs are reproducible and the three
//! tables agree with each other. Event time advances by `1 / rate` per event from a fixed base
//! (2026-01-01 00:00:00 UTC), or follows the wall clock with `'nexmark.real-time' = 'true'`.
//!
//! Options: `'nexmark.table'` (person | auction | bid; default: the table's name),
//! `'nexmark.events'` (events of the sequence; absent or 0: unbounded), `'nexmark.rate'`
//! (events per second of event time, default 10000), `'nexmark.shards'` (default 1: shard k
//! generates every k-th chunk of the sequence), `'nexmark.real-time'`, `'nexmark.max-rate'`
//! (events per second of wall clock over all shards: the generator waits until each chunk is
//! due, so a benchmark can run below full speed; event times are unchanged).
//! Declared columns are matched by name to the standard snake_case schema and cast if needed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, Int64Array, StringBuilder, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;

use super::SourceShard;
use crate::sql::catalog::Table;
use crate::{Error, Result, plan_err};

/// 2026-01-01 00:00:00 UTC.
pub const BASE_TIME_MS: i64 = 1_767_225_600_000;
const FIRST_ID: i64 = 1000;
const CHANNELS: usize = 10_000;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const HOT_URLS: [&str; 4] = [
    "https://www.nexmark.com/googl/item.htm?query=1",
    "https://www.nexmark.com/faceb/item.htm?query=1",
    "https://www.nexmark.com/baidu/item.htm?query=1",
    "https://www.nexmark.com/apple/item.htm?query=1",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];

/// Which Nexmark table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// People registering.
    Person,
    /// Auctions opening.
    Auction,
    /// Bids.
    Bid,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "person" | "people" => Some(Self::Person),
            "auction" | "auctions" => Some(Self::Auction),
            "bid" | "bids" => Some(Self::Bid),
            _ => None,
        }
    }

    fn is(&self, n: u64) -> bool {
        match n % 50 {
            0 => *self == Self::Person,
            1..=3 => *self == Self::Auction,
            _ => *self == Self::Bid,
        }
    }

    /// The table's name (`person`, `auction`, `bid`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Auction => "auction",
            Self::Bid => "bid",
        }
    }

    /// The standard schema of the table.
    pub fn schema(&self) -> SchemaRef {
        let ts = || DataType::Timestamp(TimeUnit::Millisecond, None);
        let f = |n: &str, t: DataType| Field::new(n, t, false);
        Arc::new(Schema::new(match self {
            Self::Person => vec![
                f("id", DataType::Int64),
                f("name", DataType::Utf8),
                f("email_address", DataType::Utf8),
                f("credit_card", DataType::Utf8),
                f("city", DataType::Utf8),
                f("state", DataType::Utf8),
                f("date_time", ts()),
                f("extra", DataType::Utf8),
            ],
            Self::Auction => vec![
                f("id", DataType::Int64),
                f("item_name", DataType::Utf8),
                f("description", DataType::Utf8),
                f("initial_bid", DataType::Int64),
                f("reserve", DataType::Int64),
                f("date_time", ts()),
                f("expires", ts()),
                f("seller", DataType::Int64),
                f("category", DataType::Int64),
                f("extra", DataType::Utf8),
            ],
            Self::Bid => vec![
                f("auction", DataType::Int64),
                f("bidder", DataType::Int64),
                f("price", DataType::Int64),
                f("channel", DataType::Utf8),
                f("url", DataType::Utf8),
                f("date_time", ts()),
                f("extra", DataType::Utf8),
            ],
        }))
    }
}

/// SplitMix64 seeded from an event number: cheap, and deterministic per event.
struct Rng(u64);

impl Rng {
    fn for_event(n: u64, salt: u64) -> Self {
        Rng(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Shared, precomputed text: channel names and URLs, and random padding.
struct Text {
    channels: Strings,
    urls: Strings,
    pad: String,
}

/// Strings packed end to end, so that picking one of ten thousand at random touches one
/// buffer, not a heap allocation each (and its length touches only the ends).
struct Strings {
    text: String,
    ends: Vec<usize>,
}

impl Strings {
    fn new(strings: impl Iterator<Item = String>) -> Self {
        let (mut text, mut ends) = (String::new(), vec![0]);
        for s in strings {
            text.push_str(&s);
            ends.push(text.len());
        }
        Self { text, ends }
    }

    fn get(&self, i: usize) -> &str {
        &self.text[self.ends[i]..self.ends[i + 1]]
    }

    /// The length of string `i` (without touching its bytes).
    fn len_of(&self, i: usize) -> usize {
        self.ends[i + 1] - self.ends[i]
    }
}

impl Text {
    fn new() -> Self {
        let mut rng = Rng::for_event(0, 0xC4A2);
        let word = |len: usize, rng: &mut Rng| -> String {
            (0..len)
                .map(|_| (b'a' + rng.below(26) as u8) as char)
                .collect()
        };
        // The cold channels `0..CHANNELS`, then the four hot ones.
        let channels = Strings::new(
            (0..CHANNELS)
                .map(|i| format!("channel-{i}"))
                .chain(HOT_CHANNELS.map(String::from)),
        );
        let urls = Strings::new(
            (0..CHANNELS)
                .map(|i| {
                    let (a, b, c) = (word(5, &mut rng), word(5, &mut rng), word(5, &mut rng));
                    format!("https://www.nexmark.com/{a}/{b}/{c}/item.htm?query=1&channel_id={i}")
                })
                .chain(HOT_URLS.map(String::from)),
        );
        let pad = word(1 << 16, &mut rng);
        Self {
            channels,
            urls,
            pad,
        }
    }

    fn padding(&self, rng: &mut Rng, len: usize) -> &str {
        let start = rng.below((self.pad.len() - len) as u64) as usize;
        &self.pad[start..start + len]
    }
}

/// Generator settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Events of the sequence (None: unbounded).
    pub events: Option<u64>,
    /// Events per second of event time.
    pub rate: u64,
    /// Generator shards.
    pub shards: usize,
    /// Events per batch (chunk of the sequence).
    pub chunk: u64,
    /// Pace events to the wall clock.
    pub real_time: bool,
    /// Pace generation to at most this many events per second of wall clock (all shards
    /// together); event times are not changed.
    pub max_rate: Option<u64>,
}

impl Config {
    /// The first `events` events at 10,000 per second of event time, one shard, in chunks of
    /// 8192, generated as fast as they can be (what benchmarks and tests compare against).
    pub fn bounded(events: u64) -> Self {
        Self {
            events: Some(events),
            rate: 10_000,
            shards: 1,
            chunk: 8192,
            real_time: false,
            max_rate: None,
        }
    }
}

/// Every batch of `kind`'s rows among the first `events` events ([`Config::bounded`]).
pub fn bounded_rows(kind: Kind, events: u64) -> Result<Vec<RecordBatch>> {
    let mut g = Generator::new(kind, Config::bounded(events), 0);
    let mut out = vec![];
    while let Some(b) = g.next_batch()? {
        out.push(b);
    }
    Ok(out)
}

/// Generates one table's rows for a shard of the event sequence.
pub struct Generator {
    kind: Kind,
    config: Config,
    text: Arc<Text>,
    next_chunk: u64,
    shard: u64,
    base: i64,
    started: Instant,
    /// Generated columns (bit i: column i of [`Kind::schema`]) that no query reads: their
    /// strings are not built and the column is NULL. The random draws stay the same.
    unread: u32,
    /// The generated batches' schema: [`Kind::schema`], unread columns nullable.
    schema: SchemaRef,
}

fn last_person(n: u64) -> i64 {
    (n / 50) as i64
}

fn last_auction(n: u64) -> i64 {
    let epoch = (n / 50) as i64;
    let off = n % 50;
    if off == 0 {
        epoch * 3 - 1
    } else {
        epoch * 3 + off.min(3) as i64 - 1
    }
}

fn recent_person(rng: &mut Rng, n: u64) -> i64 {
    let num = last_person(n) + 1;
    let active = num.min(1000);
    let pick = rng.below((active + 10) as u64) as i64;
    (num - active + pick).max(0)
}

fn price(rng: &mut Rng) -> i64 {
    // 10^(6u) × 100, as exp(6u·ln 10): `exp` costs about half of `powf` (the generator's
    // hottest call in a profile of q5).
    ((rng.unit() * 6.0 * std::f64::consts::LN_10).exp() * 100.0).round() as i64
}

impl Generator {
    /// Generator for `kind`, shard `shard` of `config.shards`.
    pub fn new(kind: Kind, config: Config, shard: usize) -> Self {
        Self::with_text(kind, config, shard, Arc::new(Text::new()))
    }

    fn with_text(kind: Kind, config: Config, shard: usize, text: Arc<Text>) -> Self {
        let base = if config.real_time {
            chrono::Utc::now().timestamp_millis()
        } else {
            BASE_TIME_MS
        };
        Self {
            kind,
            text,
            next_chunk: shard as u64,
            shard: shard as u64,
            config,
            base,
            started: Instant::now(),
            unread: 0,
            schema: kind.schema(),
        }
    }

    /// Leave the string columns that `read` (one flag per generated column) marks as unread
    /// NULL instead of building them.
    pub(crate) fn with_read(mut self, read: &[bool]) -> Self {
        self.unread = (read.iter().enumerate())
            .filter(|(i, r)| !**r && *i < 32)
            .fold(0, |m, (i, _)| m | (1 << i));
        let fields: Vec<Field> = (self.kind.schema().fields().iter().enumerate())
            .map(|(i, f)| f.as_ref().clone().with_nullable(!self.builds(i)))
            .collect();
        self.schema = Arc::new(Schema::new(fields));
        self
    }

    /// Whether generated column `i` is built.
    fn builds(&self, i: usize) -> bool {
        self.unread & (1 << i) == 0
    }

    /// Generated string column `i`: its builder's strings, or NULLs when it is not built.
    fn strings(&self, i: usize, mut b: StringBuilder, rows: usize) -> ArrayRef {
        if self.builds(i) {
            Arc::new(b.finish())
        } else {
            datafusion::arrow::array::new_null_array(&DataType::Utf8, rows)
        }
    }

    fn time(&self, n: u64) -> i64 {
        self.base + (n as i128 * 1000 / self.config.rate as i128) as i64
    }

    /// The next batch of this shard, or None when the bounded sequence is done.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            let start = self.next_chunk * self.config.chunk;
            let mut end = start + self.config.chunk;
            if let Some(total) = self.config.events {
                if start >= total {
                    return Ok(None);
                }
                end = end.min(total);
            }
            self.next_chunk += self.config.shards as u64;
            let batch = match self.kind {
                Kind::Bid => self.bids(start, end)?,
                Kind::Auction => self.auctions(start, end)?,
                Kind::Person => self.people(start, end)?,
            };
            if batch.num_rows() > 0 {
                return Ok(Some(batch));
            }
        }
    }

    /// How long to wait before the chunk starting at the next event is due (real-time mode).
    pub fn delay(&self) -> Option<Duration> {
        let rate = match (self.config.real_time, self.config.max_rate) {
            (true, Some(max)) => max.min(self.config.rate),
            (true, None) => self.config.rate,
            (false, Some(max)) => max,
            (false, None) => return None,
        };
        // The chunk's first event is due when the sequence (every shard together) has been
        // generated up to it at `rate`.
        let due_us = (self.next_chunk * self.config.chunk) as u128 * 1_000_000 / rate as u128;
        let now = self.started.elapsed().as_micros();
        (due_us > now).then(|| Duration::from_micros((due_us - now) as u64))
    }

    /// Whether the generator waits for the wall clock.
    fn paced(&self) -> bool {
        self.config.real_time || self.config.max_rate.is_some()
    }

    fn bids(&self, start: u64, end: u64) -> Result<RecordBatch> {
        let cap = (end - start) as usize;
        let (mut auction, mut bidder, mut price_col, mut times) = (
            Vec::with_capacity(cap),
            Vec::with_capacity(cap),
            Vec::with_capacity(cap),
            Vec::with_capacity(cap),
        );
        let mut channel = StringBuilder::with_capacity(cap, cap * 10);
        let mut url = StringBuilder::with_capacity(cap, cap * 60);
        let mut extra = StringBuilder::with_capacity(cap, cap * 20);
        for n in start..end {
            if !self.kind.is(n) {
                continue;
            }
            let mut rng = Rng::for_event(n, 0xB1D);
            let last_a = last_auction(n);
            let a = if rng.below(2) == 0 {
                (last_a / 100) * 100
            } else {
                let min = (last_a - 100).max(0);
                min + rng.below((last_a - min + 1) as u64) as i64
            };
            let last_p = last_person(n);
            let b = if rng.below(4) < 3 {
                (last_p / 100) * 100 + 1
            } else {
                recent_person(&mut rng, n)
            };
            auction.push(FIRST_ID + a);
            bidder.push(FIRST_ID + b.min(last_p));
            price_col.push(price(&mut rng));
            times.push(self.time(n));
            // A hot channel (one of four), or a cold one (`channel-i`).
            let i = if rng.below(2) == 0 {
                CHANNELS + rng.below(4) as usize
            } else {
                rng.below(CHANNELS as u64) as usize
            };
            let text = &self.text;
            if self.builds(3) {
                channel.append_value(text.channels.get(i));
            }
            if self.builds(4) {
                url.append_value(text.urls.get(i));
            }
            let size = 32 + text.channels.len_of(i) + text.urls.len_of(i);
            let want = 100usize.saturating_sub(size) + rng.below(20) as usize;
            let pad = self.text.padding(&mut rng, want);
            if self.builds(6) {
                extra.append_value(pad);
            }
        }
        let rows = times.len();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(auction)),
            Arc::new(Int64Array::from(bidder)),
            Arc::new(Int64Array::from(price_col)),
            self.strings(3, channel, rows),
            self.strings(4, url, rows),
            Arc::new(TimestampMillisecondArray::from(times)),
            self.strings(6, extra, rows),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }

    fn auctions(&self, start: u64, end: u64) -> Result<RecordBatch> {
        let cap = ((end - start) / 16 + 4) as usize;
        let (mut id, mut initial, mut reserve, mut times, mut expires, mut seller, mut category) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut item = StringBuilder::with_capacity(cap, cap * 20);
        let mut desc = StringBuilder::with_capacity(cap, cap * 100);
        let mut extra = StringBuilder::with_capacity(cap, cap * 300);
        let lifetime_ms = (100 * 1000 * 50 / (3 * self.config.rate.max(1))).max(1) as i64;
        for n in start..end {
            if !self.kind.is(n) {
                continue;
            }
            let mut rng = Rng::for_event(n, 0xA0C);
            id.push(FIRST_ID + last_auction(n));
            let p = price(&mut rng);
            initial.push(p);
            reserve.push(p + price(&mut rng));
            let t = self.time(n);
            times.push(t);
            expires.push(t + lifetime_ms / 2 + rng.below(lifetime_ms as u64) as i64);
            let last_p = last_person(n);
            let s = if rng.below(4) < 3 {
                (last_p / 100) * 100
            } else {
                recent_person(&mut rng, n)
            };
            seller.push(FIRST_ID + s.min(last_p));
            category.push(10 + rng.below(5) as i64);
            let text = self.text.padding(&mut rng, 20);
            if self.builds(1) {
                item.append_value(text);
            }
            let text = self.text.padding(&mut rng, 100);
            if self.builds(2) {
                desc.append_value(text);
            }
            let want = 500 - 200 + rng.below(40) as usize;
            let text = self.text.padding(&mut rng, want);
            if self.builds(9) {
                extra.append_value(text);
            }
        }
        let rows = times.len();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(id)),
            self.strings(1, item, rows),
            self.strings(2, desc, rows),
            Arc::new(Int64Array::from(initial)),
            Arc::new(Int64Array::from(reserve)),
            Arc::new(TimestampMillisecondArray::from(times)),
            Arc::new(TimestampMillisecondArray::from(expires)),
            Arc::new(Int64Array::from(seller)),
            Arc::new(Int64Array::from(category)),
            self.strings(9, extra, rows),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }

    fn people(&self, start: u64, end: u64) -> Result<RecordBatch> {
        let cap = ((end - start) / 50 + 2) as usize;
        let (mut id, mut times) = (vec![], vec![]);
        let mut name = StringBuilder::with_capacity(cap, cap * 16);
        let mut email = StringBuilder::with_capacity(cap, cap * 20);
        let mut card = StringBuilder::with_capacity(cap, cap * 20);
        let mut city = StringBuilder::with_capacity(cap, cap * 12);
        let mut state = StringBuilder::with_capacity(cap, cap * 2);
        let mut extra = StringBuilder::with_capacity(cap, cap * 120);
        for n in start..end {
            if !self.kind.is(n) {
                continue;
            }
            let mut rng = Rng::for_event(n, 0x9E0);
            id.push(FIRST_ID + last_person(n));
            times.push(self.time(n));
            let first = FIRST_NAMES[rng.below(FIRST_NAMES.len() as u64) as usize];
            let last = LAST_NAMES[rng.below(LAST_NAMES.len() as u64) as usize];
            if self.builds(1) {
                name.append_value(format!("{first} {last}"));
            }
            let user = self.text.padding(&mut rng, 7);
            let host = self.text.padding(&mut rng, 5);
            if self.builds(2) {
                email.append_value(format!("{user}@{host}.com"));
            }
            let digits = rng.next();
            if self.builds(3) {
                card.append_value(format!(
                    "{:04} {:04} {:04} {:04}",
                    digits % 10_000,
                    (digits >> 16) % 10_000,
                    (digits >> 32) % 10_000,
                    (digits >> 48) % 10_000
                ));
            }
            let (c, st) = (
                CITIES[rng.below(CITIES.len() as u64) as usize],
                STATES[rng.below(STATES.len() as u64) as usize],
            );
            if self.builds(4) {
                city.append_value(c);
            }
            if self.builds(5) {
                state.append_value(st);
            }
            let want = 200 - 90 + rng.below(20) as usize;
            let text = self.text.padding(&mut rng, want);
            if self.builds(7) {
                extra.append_value(text);
            }
        }
        let rows = times.len();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(id)),
            self.strings(1, name, rows),
            self.strings(2, email, rows),
            self.strings(3, card, rows),
            self.strings(4, city, rows),
            self.strings(5, state, rows),
            Arc::new(TimestampMillisecondArray::from(times)),
            self.strings(7, extra, rows),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}

struct NexmarkShard {
    generator: Generator,
    /// For each declared column: index in the generated batch.
    projection: Vec<usize>,
    schema: SchemaRef,
}

impl SourceShard for NexmarkShard {
    fn name(&self) -> String {
        format!("nexmark:{:?}#{}", self.generator.kind, self.generator.shard)
    }

    fn reads_without_waiting(&self) -> bool {
        !self.generator.paced()
    }

    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<RecordBatch>>> {
        Box::pin(async move {
            if let Some(d) = self.generator.delay() {
                tokio::time::sleep(d).await;
            }
            let Some(batch) = self.generator.next_batch()? else {
                return Ok(None);
            };
            let cols = self
                .projection
                .iter()
                .zip(self.schema.fields())
                .map(|(i, f)| {
                    let c = batch.column(*i);
                    crate::format::cast_to(c, f.data_type())
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Some(RecordBatch::try_new(self.schema.clone(), cols)?))
        })
    }

    fn check_replayable(&self) -> Result<()> {
        if self.generator.config.real_time {
            return crate::not_supported!(
                "checkpointing a 'nexmark.real-time' source (its event times follow the wall clock)"
            );
        }
        Ok(())
    }

    /// The next chunk of the sequence this shard generates (and the shard count, which
    /// decides which chunks are this shard's).
    fn position(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "next_chunk": self.generator.next_chunk,
            "shards": self.generator.config.shards,
        }))
    }

    fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        let shards = position.get("shards").and_then(|v| v.as_u64());
        if shards != Some(self.generator.config.shards as u64) {
            return plan_err!(
                "the checkpoint's nexmark source had {} shards, this run has {}: keep \
                 'nexmark.shards' as it was",
                shards.unwrap_or(0),
                self.generator.config.shards
            );
        }
        match position.get("next_chunk").and_then(|v| v.as_u64()) {
            Some(c) if c % self.generator.config.shards as u64 == self.generator.shard => {
                self.generator.next_chunk = c;
                Ok(())
            }
            _ => plan_err!(
                "checkpointed nexmark position {position} does not fit {}",
                self.name()
            ),
        }
    }
}

fn u64_option(table: &Table, keys: &[&str], default: u64) -> Result<u64> {
    for k in keys {
        if let Some(v) = table.option(k) {
            return v.trim().replace('_', "").parse().map_err(|_| {
                Error::Plan(format!(
                    "option '{k}' of table {} must be a whole number, not '{v}'",
                    table.def.name
                ))
            });
        }
    }
    Ok(default)
}

/// Generator settings from a table's options; `default_shards` when `'nexmark.shards'` is
/// not given (the job's parallelism: the generator splits its sequence over that many tasks).
pub fn config(table: &Table, default_shards: usize) -> Result<(Kind, Config)> {
    let kind_name = table.option("nexmark.table").unwrap_or(&table.def.name);
    let Some(kind) = Kind::parse(kind_name) else {
        return plan_err!(
            "table {}: set 'nexmark.table' to person, auction or bid",
            table.def.name
        );
    };
    let events = u64_option(table, &["nexmark.events", "nexmark.event.num"], 0)?;
    let rate = u64_option(table, &["nexmark.rate", "nexmark.event.rate"], 10_000)?;
    let shards = u64_option(
        table,
        &["nexmark.shards", "nexmark.split.num"],
        default_shards.max(1) as u64,
    )?;
    let chunk = u64_option(table, &["nexmark.chunk"], 8192)?;
    if rate == 0 || shards == 0 || chunk == 0 {
        return plan_err!(
            "table {}: nexmark rate, shards and chunk must be positive",
            table.def.name
        );
    }
    let real_time = super::bool_option(table, "nexmark.real-time", false)?;
    let max_rate = u64_option(table, &["nexmark.max-rate"], 0)?;
    Ok((
        kind,
        Config {
            events: (events > 0).then_some(events),
            rate,
            shards: shards as usize,
            chunk,
            real_time,
            max_rate: (max_rate > 0).then_some(max_rate),
        },
    ))
}

/// Open the generator shards of a nexmark table.
pub fn open(table: &Table, default_shards: usize) -> Result<Vec<Box<dyn SourceShard>>> {
    let (kind, config) = config(table, default_shards)?;
    let full = kind.schema();
    let mut projection = vec![];
    // snake_case (date_time) or Flink's camelCase (dateTime) both match.
    let squash = |s: &str| s.replace('_', "").to_ascii_lowercase();
    for f in table.physical.fields() {
        let found = full
            .fields()
            .iter()
            .position(|g| squash(g.name()) == squash(f.name()));
        let Some(i) = found else {
            let names: Vec<&str> = full.fields().iter().map(|f| f.name().as_str()).collect();
            return plan_err!(
                "nexmark {kind:?} has no column {} (columns: {})",
                f.name(),
                names.join(", ")
            );
        };
        projection.push(i);
    }
    // A generated column is built when a declared column that reads it is read.
    let mut read = vec![false; full.fields().len()];
    for (declared, generated) in projection.iter().enumerate() {
        read[*generated] |= table.reads_column(declared);
    }
    let text = Arc::new(Text::new());
    Ok((0..config.shards)
        .map(|s| {
            Box::new(NexmarkShard {
                generator: Generator::with_text(kind, config.clone(), s, text.clone())
                    .with_read(&read),
                projection: projection.clone(),
                schema: table.physical.clone(),
            }) as Box<dyn SourceShard>
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(events: u64) -> Config {
        Config {
            chunk: 1000,
            ..Config::bounded(events)
        }
    }

    #[test]
    fn event_mix_and_determinism() {
        let count = |k| {
            let mut g = Generator::new(k, cfg(10_000), 0);
            let mut n = 0;
            while let Some(b) = g.next_batch().unwrap() {
                n += b.num_rows();
            }
            n
        };
        assert_eq!(count(Kind::Person), 200);
        assert_eq!(count(Kind::Auction), 600);
        assert_eq!(count(Kind::Bid), 9200);
        let a = Generator::new(Kind::Bid, cfg(2000), 0)
            .next_batch()
            .unwrap();
        let b = Generator::new(Kind::Bid, cfg(2000), 0)
            .next_batch()
            .unwrap();
        assert_eq!(a, b);
    }

    /// Columns left unread are NULL; every other column is what a full generation gives (the
    /// random draws do not depend on what is built).
    #[test]
    fn unread_columns_are_null_and_the_rest_unchanged() {
        for kind in [Kind::Bid, Kind::Auction, Kind::Person] {
            let width = kind.schema().fields().len();
            for skip in 0..width {
                let read: Vec<bool> = (0..width).map(|i| i % 2 == skip % 2 || i == 0).collect();
                let mut full = Generator::new(kind, cfg(5000), 0);
                let mut part = Generator::new(kind, cfg(5000), 0).with_read(&read);
                while let Some(f) = full.next_batch().unwrap() {
                    let p = part.next_batch().unwrap().expect("as many batches");
                    assert_eq!(f.num_rows(), p.num_rows());
                    for (i, r) in read.iter().enumerate() {
                        let (fc, pc) = (f.column(i), p.column(i));
                        let string = fc.data_type() == &DataType::Utf8;
                        if *r || !string {
                            assert_eq!(fc, pc, "{kind:?} column {i}");
                        } else {
                            assert_eq!(pc.null_count(), p.num_rows(), "{kind:?} column {i}");
                        }
                    }
                }
                assert!(part.next_batch().unwrap().is_none());
            }
        }
    }

    #[test]
    fn ids_are_sequential_and_bids_reference_existing_people() {
        let mut g = Generator::new(Kind::Auction, cfg(200), 0);
        let b = g.next_batch().unwrap().unwrap();
        let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.values().to_vec(), (1000..1012).collect::<Vec<i64>>());
    }
}
