//! `MATCH_RECOGNIZE`: row pattern recognition per partition, in event-time order (Flink's
//! "Detecting Patterns in Tables").
//!
//! Rows are buffered per partition until the watermark passes them, then taken in time order
//! (arrival order among equal times) and matched against the pattern: a sequence of pattern
//! variables, each with a quantifier (`A`, `A?`, `A*`, `A+`, `A{n}`, `A{n,}`, `A{n,m}`),
//! greedy, as Flink's are. A row maps to a variable when the variable's `DEFINE` condition
//! holds for it (a variable without one matches any row). A search starts at a row and takes
//! as many rows as it can for each variable, backing off one row at a time when the rest of
//! the pattern then fails. When the rows run out before the search is decided, it waits for
//! more (or, at the end of the input, the longest complete match wins). `ONE ROW PER MATCH`:
//! each match emits the partition columns and its `MEASURES`. `AFTER MATCH SKIP` decides where
//! the next search starts: `PAST LAST ROW` (the default), `TO NEXT ROW`, `TO FIRST v`,
//! `TO LAST v`. Late rows (behind the watermark) go to the late output.
//!
//! Conditions and measures are small expressions ([`MExpr`]) over the rows mapped so far:
//! `v.col` (the last row mapped to `v`; in a condition on `v`, the row being tested),
//! `col` (the row being tested; in a measure, the match's last row), `LAST(v.col, n)`,
//! `FIRST(v.col, n)`, `PREV(col, n)`, the aggregates `COUNT`, `SUM`, `AVG`, `MIN`, `MAX` over
//! a variable's rows, `MATCH_ROWTIME()`, arithmetic, comparisons, `AND` / `OR` / `NOT` and
//! `IS [NOT] NULL`, with SQL's NULL semantics.
//!
//! State: the rows of each partition not yet behind a decided search (and the few before them
//! that `PREV` can reach), snapshotted by key group.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Float64Builder, Int64Builder,
    RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Schema,
    SchemaRef, TimeUnit, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::row::RowConverter;
use datafusion::physical_expr::PhysicalExpr;

use super::{
    Emitter, Operator, PartitionKeys, StateSnapshot, drop_late, rows_table, table_rows,
    time_millis, whole_rows,
};
use crate::Result;
use crate::message::Timestamp;

/// A value while matching.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    /// SQL NULL.
    Null,
    /// BOOLEAN.
    Bool(bool),
    /// Any integer type.
    Int(i64),
    /// FLOAT, DOUBLE and DECIMAL.
    Float(f64),
    /// Text.
    Str(Arc<str>),
    /// A timestamp or date, in epoch milliseconds.
    Ts(i64),
}

/// Where a column reference reads its row from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Nav {
    /// The n-th last row (0: the last) of the variable's rows.
    Last(usize),
    /// The n-th row (0: the first) of the variable's rows.
    First(usize),
    /// n rows before the variable's last row, in the partition's order.
    Prev(usize),
}

/// An aggregate over a variable's rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Agg {
    /// COUNT(*) or COUNT(x) (non-NULL values).
    Count,
    /// SUM.
    Sum,
    /// AVG.
    Avg,
    /// MIN.
    Min,
    /// MAX.
    Max,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Mod,
    /// `=`.
    Eq,
    /// `<>`.
    NotEq,
    /// `<`.
    Lt,
    /// `<=`.
    LtEq,
    /// `>`.
    Gt,
    /// `>=`.
    GtEq,
    /// `AND`.
    And,
    /// `OR`.
    Or,
}

/// A condition or measure (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub enum MExpr {
    /// A constant.
    Lit(V),
    /// Column `col` of a row of variable `var` (None: any row of the match).
    Col {
        /// The pattern variable.
        var: Option<usize>,
        /// The input column.
        col: usize,
        /// Which of its rows.
        nav: Nav,
    },
    /// An aggregate of `col` (None: COUNT(*)) over the rows of `var` (None: the match's).
    Agg {
        /// Which aggregate.
        f: Agg,
        /// The pattern variable.
        var: Option<usize>,
        /// The input column.
        col: Option<usize>,
    },
    /// The event time of the match's last row.
    MatchRowtime,
    /// `l op r`.
    Bin(Op, Box<MExpr>, Box<MExpr>),
    /// `NOT e`.
    Not(Box<MExpr>),
    /// `-e`.
    Neg(Box<MExpr>),
    /// `e IS NULL` (or `IS NOT NULL` when the flag is set).
    IsNull(Box<MExpr>, bool),
}

/// One element of the pattern: a variable and how many rows it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// The variable.
    pub var: usize,
    /// At least this many rows.
    pub min: usize,
    /// At most this many rows.
    pub max: usize,
    /// Greedy (as many rows as it can), or reluctant (`A*?`: as few as the rest allows).
    pub greedy: bool,
}

/// Where the search after a match starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Skip {
    /// After the match's last row.
    PastLastRow,
    /// At the row after the match's first.
    ToNextRow,
    /// At the first row mapped to the variable.
    ToFirst(usize),
    /// At the last row mapped to the variable.
    ToLast(usize),
}

/// The static description of a `MATCH_RECOGNIZE`.
#[derive(Debug, Clone)]
pub struct MatchSpec {
    /// PARTITION BY columns of the input.
    pub partition: Vec<usize>,
    /// Their expressions (for the exchange and the state's key groups).
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The ORDER BY time attribute.
    pub time_col: usize,
    /// The input's columns.
    pub input_schema: SchemaRef,
    /// The partition columns, then the measures.
    pub output_schema: SchemaRef,
    /// The pattern variables' names.
    pub vars: Vec<String>,
    /// The pattern.
    pub pattern: Vec<Element>,
    /// Per variable: its DEFINE condition (None: any row).
    pub defines: Vec<Option<MExpr>>,
    /// MEASURES, in output order.
    pub measures: Vec<MExpr>,
    /// AFTER MATCH SKIP.
    pub skip: Skip,
    /// The largest PREV offset: rows kept before a search's start.
    pub max_prev: usize,
    /// `WITHIN`: a match spans less than this many milliseconds of event time.
    pub within: Option<i64>,
}

impl fmt::Display for MatchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pattern: Vec<String> = self
            .pattern
            .iter()
            .map(|e| {
                let q = match (e.min, e.max) {
                    (1, 1) => String::new(),
                    (0, 1) => "?".into(),
                    (0, usize::MAX) => "*".into(),
                    (1, usize::MAX) => "+".into(),
                    (n, usize::MAX) => format!("{{{n},}}"),
                    (n, m) if n == m => format!("{{{n}}}"),
                    (n, m) => format!("{{{n},{m}}}"),
                };
                let lazy = if e.greedy { "" } else { "?" };
                format!("{}{q}{lazy}", self.vars[e.var])
            })
            .collect();
        let out: Vec<&str> = self
            .output_schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        write!(
            f,
            "MatchRecognize: partition=[{}] order={} pattern=({}){} skip={:?} defines={:?} measures={:?} out=[{}]",
            super::exprs_text(&self.keys),
            self.input_schema.field(self.time_col).name(),
            pattern.join(" "),
            self.within
                .map(|w| format!(" within={w}ms"))
                .unwrap_or_default(),
            self.skip,
            self.defines,
            self.measures,
            out.join(", ")
        )
    }
}

/// One buffered row.
#[derive(Debug, Clone)]
struct Row {
    time: Timestamp,
    /// The whole row in Arrow's row format (for the output's partition columns and state).
    bytes: Vec<u8>,
    /// Its values while matching.
    vals: Vec<V>,
}

/// One partition's rows.
#[derive(Default)]
struct Part {
    /// Rows in order: those before `start` are kept only for PREV.
    rows: Vec<Row>,
    /// Where the next search starts.
    start: usize,
    /// Rows not yet behind the watermark, by (time, arrival).
    pending: BTreeMap<(Timestamp, u64), Row>,
}

/// The outcome of a search.
enum Found {
    /// A match: each row's (position, variable), in order.
    Match(Vec<(usize, usize)>),
    /// No match from this start.
    None,
    /// The rows ran out before it was decided.
    NeedMore,
}

/// The running operator.
pub(crate) struct MatchRecognize {
    spec: MatchSpec,
    keys: PartitionKeys,
    rows: RowConverter,
    parts: HashMap<Vec<u8>, Part>,
    /// Partitions with pending rows.
    waiting: HashSet<Vec<u8>>,
    watermark: Timestamp,
    seq: u64,
    bytes: usize,
}

impl MatchRecognize {
    pub(crate) fn new(spec: MatchSpec) -> Result<Self> {
        Ok(Self {
            keys: PartitionKeys::new(&spec.keys, &spec.input_schema)?,
            rows: whole_rows(&spec.input_schema)?,
            spec,
            parts: HashMap::new(),
            waiting: HashSet::new(),
            watermark: Timestamp::MIN,
            seq: 0,
            bytes: 0,
        })
    }

    /// Rows of `batch` (of the input schema) with their partitions' keys.
    fn rows_of(&self, batch: &RecordBatch) -> Result<Vec<(Vec<u8>, Row)>> {
        let keys = self.keys.of(batch)?;
        let times = time_millis(batch.column(self.spec.time_col))?;
        let converted = self.rows.convert_columns(batch.columns())?;
        let columns: Vec<Vec<V>> = batch
            .columns()
            .iter()
            .map(|c| values(c.as_ref()))
            .collect::<Result<_>>()?;
        Ok(keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let row = Row {
                    time: times.get(i).copied().unwrap_or(Timestamp::MIN),
                    bytes: converted.row(i).as_ref().to_vec(),
                    vals: columns.iter().map(|c| c[i].clone()).collect(),
                };
                (key, row)
            })
            .collect())
    }

    /// Hold `row` until the watermark passes it.
    fn wait(&mut self, key: Vec<u8>, row: Row) {
        self.bytes += row.bytes.len() + row.vals.len() * 16;
        self.seq += 1;
        self.parts
            .entry(key.clone())
            .or_default()
            .pending
            .insert((row.time, self.seq), row);
        self.waiting.insert(key);
    }

    /// Move the rows the watermark passed into their partitions' order and search them.
    fn advance(&mut self, out: &mut Emitter) -> Result<()> {
        let wm = self.watermark;
        let fin = wm == Timestamp::MAX;
        let mut matches: Vec<(Vec<u8>, Vec<V>)> = vec![];
        // At the end of the input every partition is searched once more (a search that was
        // waiting for rows is decided now), not only those that were given rows.
        let keys: Vec<Vec<u8>> = if fin {
            self.parts.keys().cloned().collect()
        } else {
            self.waiting.iter().cloned().collect()
        };
        for key in keys {
            let Some(part) = self.parts.get_mut(&key) else {
                continue;
            };
            let mut moved = false;
            while let Some(entry) = part.pending.first_entry() {
                if entry.key().0 > wm {
                    break;
                }
                part.rows.push(entry.remove());
                moved = true;
            }
            if part.pending.is_empty() {
                self.waiting.remove(&key);
            }
            if moved || fin {
                search(&self.spec, part, fin, &mut matches)?;
                // Keep only what PREV can reach before the next search's start.
                let drop = part.start.saturating_sub(self.spec.max_prev);
                if drop > 0 {
                    let freed: usize = part.rows[..drop]
                        .iter()
                        .map(|r| r.bytes.len() + r.vals.len() * 16)
                        .sum();
                    self.bytes = self.bytes.saturating_sub(freed);
                    part.rows.drain(..drop);
                    part.start -= drop;
                }
            }
            if part.rows.len() <= part.start && part.pending.is_empty() && part.start == 0 {
                self.parts.remove(&key);
            }
        }
        if !matches.is_empty() {
            out.emit(self.output(&matches)?);
        }
        Ok(())
    }

    /// Output rows: the partition columns of each match's first row, then its measures.
    fn output(&self, matches: &[(Vec<u8>, Vec<V>)]) -> Result<RecordBatch> {
        let parser = self.rows.parser();
        let firsts = self
            .rows
            .convert_rows(matches.iter().map(|(b, _)| parser.parse(b)))?;
        let mut columns: Vec<ArrayRef> = self
            .spec
            .partition
            .iter()
            .map(|c| firsts[*c].clone())
            .collect();
        let fields = self.spec.output_schema.fields();
        for (m, field) in fields.iter().skip(self.spec.partition.len()).enumerate() {
            let vals: Vec<&V> = matches.iter().map(|(_, v)| &v[m]).collect();
            columns.push(array_of(&vals, field.data_type())?);
        }
        Ok(RecordBatch::try_new(
            self.spec.output_schema.clone(),
            columns,
        )?)
    }
}

/// Search a partition from its start as far as its rows decide; matches go to `out` (the
/// first row's bytes and the measures).
fn search(
    spec: &MatchSpec,
    part: &mut Part,
    fin: bool,
    out: &mut Vec<(Vec<u8>, Vec<V>)>,
) -> Result<()> {
    while part.start < part.rows.len() {
        let mut assign = vec![];
        match element(spec, &part.rows, 0, part.start, fin, &mut assign) {
            Found::NeedMore => break,
            Found::None => part.start += 1,
            Found::Match(m) if m.is_empty() => part.start += 1,
            Found::Match(m) => {
                let ctx = Ctx {
                    rows: &part.rows,
                    assign: &m,
                    current: None,
                };
                let measures = spec
                    .measures
                    .iter()
                    .map(|e| eval(e, &ctx))
                    .collect::<Vec<_>>();
                out.push((part.rows[m[0].0].bytes.clone(), measures));
                let first_of = |v: usize| m.iter().find(|(_, x)| *x == v).map(|(p, _)| *p);
                let last_of = |v: usize| m.iter().rev().find(|(_, x)| *x == v).map(|(p, _)| *p);
                let last = m[m.len() - 1].0;
                let next = match spec.skip {
                    Skip::PastLastRow => last + 1,
                    Skip::ToNextRow => part.start + 1,
                    Skip::ToFirst(v) => first_of(v).unwrap_or(last + 1),
                    Skip::ToLast(v) => last_of(v).unwrap_or(last + 1),
                };
                // A search never starts at the same row twice.
                part.start = next.max(part.start + 1);
            }
        }
    }
    Ok(())
}

/// Match pattern elements `e..` from row `pos` on, after the rows mapped in `assign`.
/// Greedy: each element takes as many rows as its condition and quantifier allow, then backs
/// off one at a time while the rest fails.
fn element(
    spec: &MatchSpec,
    rows: &[Row],
    e: usize,
    pos: usize,
    fin: bool,
    assign: &mut Vec<(usize, usize)>,
) -> Found {
    let Some(el) = spec.pattern.get(e) else {
        return Found::Match(assign.clone());
    };
    let base = assign.len();
    if !el.greedy {
        return reluctant(spec, rows, e, pos, fin, assign);
    }
    let mut taken = 0;
    let mut ran_out = false;
    while taken < el.max {
        let p = pos + taken;
        if p >= rows.len() {
            ran_out = true;
            break;
        }
        let holds = maps(spec, rows, p, el.var, assign);
        if !holds {
            break;
        }
        assign.push((p, el.var));
        taken += 1;
    }
    if ran_out && !fin {
        // More rows could extend this element (greedy): undecided.
        assign.truncate(base);
        return Found::NeedMore;
    }
    let mut count = taken;
    loop {
        if count < el.min {
            assign.truncate(base);
            return Found::None;
        }
        assign.truncate(base + count);
        match element(spec, rows, e + 1, pos + count, fin, assign) {
            Found::None => {}
            decided => return decided,
        }
        if count == 0 {
            assign.truncate(base);
            return Found::None;
        }
        count -= 1;
    }
}

/// Whether row `p` can map to `var` after the rows mapped in `assign` (its condition, and
/// WITHIN from the match's first row).
fn maps(spec: &MatchSpec, rows: &[Row], p: usize, var: usize, assign: &[(usize, usize)]) -> bool {
    let first = assign.first().map_or(p, |(q, _)| *q);
    if spec
        .within
        .is_some_and(|w| rows[p].time - rows[first].time >= w)
    {
        return false;
    }
    match &spec.defines[var] {
        None => true,
        Some(cond) => {
            let ctx = Ctx {
                rows,
                assign,
                current: Some((p, var)),
            };
            eval(cond, &ctx) == V::Bool(true)
        }
    }
}

/// A reluctant element (`A*?`, `A+?`, `A??`, `A{n,m}?`): as few rows as the rest of the
/// pattern allows, one more at a time.
fn reluctant(
    spec: &MatchSpec,
    rows: &[Row],
    e: usize,
    pos: usize,
    fin: bool,
    assign: &mut Vec<(usize, usize)>,
) -> Found {
    let el = &spec.pattern[e];
    let base = assign.len();
    let mut count = 0;
    loop {
        if count >= el.min {
            match element(spec, rows, e + 1, pos + count, fin, assign) {
                Found::None => {}
                decided => return decided,
            }
            assign.truncate(base + count);
        }
        if count >= el.max {
            break;
        }
        let p = pos + count;
        if p >= rows.len() {
            assign.truncate(base);
            return if fin { Found::None } else { Found::NeedMore };
        }
        if !maps(spec, rows, p, el.var, assign) {
            break;
        }
        assign.push((p, el.var));
        count += 1;
    }
    assign.truncate(base);
    Found::None
}

/// What expressions see: the partition's rows, the rows mapped so far, and the row being
/// tested (with the variable it is tested for).
struct Ctx<'a> {
    rows: &'a [Row],
    assign: &'a [(usize, usize)],
    current: Option<(usize, usize)>,
}

impl Ctx<'_> {
    /// Positions of the rows of `var` (None: every row of the match), the tested row last.
    fn positions(&self, var: Option<usize>) -> Vec<usize> {
        let mapped = self
            .assign
            .iter()
            .chain(self.current.as_ref())
            .filter(|(_, v)| var.is_none_or(|x| x == *v));
        mapped.map(|(p, _)| *p).collect()
    }

    fn value(&self, pos: usize, col: usize) -> V {
        self.rows
            .get(pos)
            .and_then(|r| r.vals.get(col))
            .cloned()
            .unwrap_or(V::Null)
    }
}

fn eval(e: &MExpr, ctx: &Ctx<'_>) -> V {
    match e {
        MExpr::Lit(v) => v.clone(),
        MExpr::Col { var, col, nav } => {
            let ps = ctx.positions(*var);
            let pos = match nav {
                Nav::Last(n) => ps.len().checked_sub(n + 1).map(|i| ps[i]),
                Nav::First(n) => ps.get(*n).copied(),
                Nav::Prev(n) => ps.last().and_then(|p| p.checked_sub(*n)),
            };
            pos.map_or(V::Null, |p| ctx.value(p, *col))
        }
        MExpr::Agg { f, var, col } => {
            let ps = ctx.positions(*var);
            let vals: Vec<V> = match col {
                None => ps.iter().map(|_| V::Int(1)).collect(),
                Some(c) => ps
                    .iter()
                    .map(|p| ctx.value(*p, *c))
                    .filter(|v| *v != V::Null)
                    .collect(),
            };
            aggregate(*f, &vals)
        }
        MExpr::MatchRowtime => ctx
            .positions(None)
            .last()
            .map_or(V::Null, |p| V::Ts(ctx.rows[*p].time)),
        MExpr::Bin(op, l, r) => binary(*op, eval(l, ctx), eval(r, ctx)),
        MExpr::Not(x) => match eval(x, ctx) {
            V::Bool(b) => V::Bool(!b),
            _ => V::Null,
        },
        MExpr::Neg(x) => match eval(x, ctx) {
            V::Int(i) => V::Int(i.wrapping_neg()),
            V::Float(f) => V::Float(-f),
            _ => V::Null,
        },
        MExpr::IsNull(x, negated) => V::Bool((eval(x, ctx) == V::Null) != *negated),
    }
}

fn as_f64(v: &V) -> Option<f64> {
    match v {
        V::Int(i) => Some(*i as f64),
        V::Float(f) => Some(*f),
        _ => None,
    }
}

fn aggregate(f: Agg, vals: &[V]) -> V {
    match f {
        Agg::Count => V::Int(vals.len() as i64),
        _ if vals.is_empty() => V::Null,
        Agg::Sum => vals
            .iter()
            .cloned()
            .reduce(|a, b| binary(Op::Add, a, b))
            .unwrap_or(V::Null),
        Agg::Avg => {
            let sum: f64 = vals.iter().filter_map(as_f64).sum();
            V::Float(sum / vals.len() as f64)
        }
        Agg::Min | Agg::Max => vals
            .iter()
            .cloned()
            .reduce(|a, b| {
                let keep_b = match compare(&a, &b) {
                    Some(o) => (f == Agg::Min) == o.is_gt(),
                    None => false,
                };
                if keep_b { b } else { a }
            })
            .unwrap_or(V::Null),
    }
}

fn compare(a: &V, b: &V) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (V::Int(x), V::Int(y)) => Some(x.cmp(y)),
        (V::Str(x), V::Str(y)) => Some(x.cmp(y)),
        (V::Ts(x), V::Ts(y)) => Some(x.cmp(y)),
        (V::Bool(x), V::Bool(y)) => Some(x.cmp(y)),
        _ => as_f64(a)?.partial_cmp(&as_f64(b)?),
    }
}

fn binary(op: Op, a: V, b: V) -> V {
    use std::cmp::Ordering::*;
    match op {
        Op::And => match (&a, &b) {
            (V::Bool(false), _) | (_, V::Bool(false)) => V::Bool(false),
            (V::Bool(true), V::Bool(true)) => V::Bool(true),
            _ => V::Null,
        },
        Op::Or => match (&a, &b) {
            (V::Bool(true), _) | (_, V::Bool(true)) => V::Bool(true),
            (V::Bool(false), V::Bool(false)) => V::Bool(false),
            _ => V::Null,
        },
        _ if a == V::Null || b == V::Null => V::Null,
        Op::Eq | Op::NotEq | Op::Lt | Op::LtEq | Op::Gt | Op::GtEq => {
            let Some(o) = compare(&a, &b) else {
                return V::Null;
            };
            V::Bool(match op {
                Op::Eq => o == Equal,
                Op::NotEq => o != Equal,
                Op::Lt => o == Less,
                Op::LtEq => o != Greater,
                Op::Gt => o == Greater,
                _ => o != Less,
            })
        }
        _ => match (a, b) {
            (V::Int(x), V::Int(y)) => match op {
                Op::Add => V::Int(x.wrapping_add(y)),
                Op::Sub => V::Int(x.wrapping_sub(y)),
                Op::Mul => V::Int(x.wrapping_mul(y)),
                Op::Div => x.checked_div(y).map_or(V::Null, V::Int),
                _ => x.checked_rem(y).map_or(V::Null, V::Int),
            },
            (V::Ts(x), V::Ts(y)) if op == Op::Sub => V::Int(x - y),
            (a, b) => match (as_f64(&a), as_f64(&b)) {
                (Some(x), Some(y)) => V::Float(match op {
                    Op::Add => x + y,
                    Op::Sub => x - y,
                    Op::Mul => x * y,
                    Op::Div => x / y,
                    _ => x % y,
                }),
                _ => V::Null,
            },
        },
    }
}

/// The values of an input column, as the matcher sees them.
fn values(col: &dyn Array) -> Result<Vec<V>> {
    let n = col.len();
    let get = |i: usize, f: &dyn Fn(usize) -> V| if col.is_null(i) { V::Null } else { f(i) };
    macro_rules! ints {
        ($t:ty) => {{
            let a = col.as_primitive::<$t>();
            (0..n)
                .map(|i| get(i, &|i| V::Int(a.value(i) as i64)))
                .collect()
        }};
    }
    Ok(match col.data_type() {
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => ints!(UInt64Type),
        DataType::Float32 => {
            let a = col.as_primitive::<Float32Type>();
            (0..n)
                .map(|i| get(i, &|i| V::Float(a.value(i) as f64)))
                .collect()
        }
        DataType::Float64 => {
            let a = col.as_primitive::<Float64Type>();
            (0..n).map(|i| get(i, &|i| V::Float(a.value(i)))).collect()
        }
        DataType::Decimal128(..) | DataType::Decimal256(..) => {
            let f = cast(col, &DataType::Float64)?;
            let a = f.as_primitive::<Float64Type>();
            (0..n).map(|i| get(i, &|i| V::Float(a.value(i)))).collect()
        }
        DataType::Boolean => {
            let a = col.as_boolean();
            (0..n).map(|i| get(i, &|i| V::Bool(a.value(i)))).collect()
        }
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
            let ts = cast(
                &arrow_ref(col),
                &DataType::Timestamp(TimeUnit::Millisecond, None),
            )?;
            let ms = time_millis(&ts)?;
            (0..n).map(|i| get(i, &|i| V::Ts(ms[i]))).collect()
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let s = cast(col, &DataType::Utf8)?;
            let a = s.as_string::<i32>();
            (0..n)
                .map(|i| get(i, &|i| V::Str(a.value(i).into())))
                .collect()
        }
        // Columns the matcher cannot read compare as NULL (the planner refuses references).
        _ => vec![V::Null; n],
    })
}

fn arrow_ref(col: &dyn Array) -> ArrayRef {
    datafusion::arrow::array::make_array(col.to_data())
}

/// An output column of type `ty` from measure values.
fn array_of(vals: &[&V], ty: &DataType) -> Result<ArrayRef> {
    let normal: ArrayRef = match ty {
        DataType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(vals.len());
            vals.iter().for_each(|v| match v {
                V::Bool(x) => b.append_value(*x),
                _ => b.append_null(),
            });
            Arc::new(b.finish())
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let mut b = StringBuilder::with_capacity(vals.len(), vals.len() * 8);
            vals.iter().for_each(|v| match v {
                V::Str(x) => b.append_value(x.as_ref()),
                _ => b.append_null(),
            });
            Arc::new(b.finish())
        }
        DataType::Timestamp(_, tz) => {
            let mut b = TimestampMillisecondBuilder::with_capacity(vals.len());
            vals.iter().for_each(|v| match v {
                V::Ts(x) => b.append_value(*x),
                _ => b.append_null(),
            });
            let a: ArrayRef = Arc::new(b.finish().with_timezone_opt(tz.clone()));
            return Ok(
                if matches!(ty, DataType::Timestamp(TimeUnit::Millisecond, _)) {
                    a
                } else {
                    cast(&a, ty)?
                },
            );
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
            let mut b = Float64Builder::with_capacity(vals.len());
            vals.iter().for_each(|v| match as_f64(v) {
                Some(x) => b.append_value(x),
                None => b.append_null(),
            });
            Arc::new(b.finish())
        }
        _ => {
            let mut b = Int64Builder::with_capacity(vals.len());
            vals.iter().for_each(|v| match v {
                V::Int(x) => b.append_value(*x),
                V::Float(x) => b.append_value(*x as i64),
                _ => b.append_null(),
            });
            Arc::new(b.finish())
        }
    };
    Ok(if normal.data_type() == ty {
        normal
    } else {
        cast(&normal, ty)?
    })
}

impl Operator for MatchRecognize {
    fn name(&self) -> &str {
        "match_recognize"
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<()> {
        let wm = self.watermark;
        let batch = drop_late(batch, self.spec.time_col, |t| t <= wm, out)?;
        for (key, row) in self.rows_of(&batch)? {
            self.wait(key, row);
        }
        Ok(())
    }

    fn on_watermark(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        if wm <= self.watermark {
            return Ok(());
        }
        self.watermark = wm;
        self.advance(out)
    }

    fn snapshot(&mut self, key_groups: usize) -> Result<Option<StateSnapshot>> {
        let mut rows: Vec<&[u8]> = vec![];
        let mut history = vec![];
        for part in self.parts.values() {
            for (i, r) in part.rows.iter().enumerate() {
                rows.push(&r.bytes);
                history.push(i < part.start);
            }
            for r in part.pending.values() {
                rows.push(&r.bytes);
                history.push(false);
            }
        }
        let mut tables = vec![];
        if !rows.is_empty() {
            let parser = self.rows.parser();
            let mut columns = self
                .rows
                .convert_rows(rows.into_iter().map(|r| parser.parse(r)))?;
            columns.push(Arc::new(BooleanArray::from(history)));
            let schema = state_schema(&self.spec.input_schema);
            let batch = RecordBatch::try_new(schema.clone(), columns)?;
            tables.extend(rows_table(
                "rows",
                &[batch],
                &schema,
                &self.spec.keys,
                key_groups,
            )?);
        }
        Ok(Some(StateSnapshot {
            tables,
            meta: serde_json::json!({ "wm": self.watermark }),
        }))
    }

    fn restore(&mut self, snapshot: StateSnapshot) -> Result<()> {
        self.watermark = snapshot.meta_i64("wm").unwrap_or(Timestamp::MIN);
        let Some(t) = snapshot.table("rows") else {
            return Ok(());
        };
        let schema = state_schema(&self.spec.input_schema);
        let all = table_rows(t, &schema)?;
        let width = self.spec.input_schema.fields().len();
        let data = RecordBatch::try_new(
            self.spec.input_schema.clone(),
            all.columns()[..width].to_vec(),
        )?;
        let history = all.column(width).as_boolean().clone();
        // Rows already searched past come back as history; the rest wait for the watermark
        // again, and the search resumes where it stood.
        for (i, (key, row)) in self.rows_of(&data)?.into_iter().enumerate() {
            if history.value(i) {
                self.bytes += row.bytes.len() + row.vals.len() * 16;
                let part = self.parts.entry(key).or_default();
                part.rows.push(row);
                part.start = part.rows.len();
            } else {
                self.wait(key, row);
            }
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.bytes
    }
}

/// The state table's columns: the input's, and whether the row is history (before a search's
/// start, kept for PREV).
fn state_schema(input: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("__history", DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

super::operator_spec!(MatchSpec, stateful = true, MatchRecognize::new);

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: i64, price: i64) -> Row {
        Row {
            time: t,
            bytes: vec![],
            vals: vec![V::Int(price)],
        }
    }

    fn col(var: usize, nav: Nav) -> Box<MExpr> {
        Box::new(MExpr::Col {
            var: Some(var),
            col: 0,
            nav,
        })
    }

    /// Flink's V-shape example: START_ROW PRICE_DOWN+ PRICE_UP.
    fn v_shape() -> MatchSpec {
        let down = MExpr::Bin(
            Op::Or,
            Box::new(MExpr::Bin(
                Op::And,
                Box::new(MExpr::IsNull(col(1, Nav::Last(1)), false)),
                Box::new(MExpr::Bin(
                    Op::Lt,
                    col(1, Nav::Last(0)),
                    col(0, Nav::Last(0)),
                )),
            )),
            Box::new(MExpr::Bin(
                Op::Lt,
                col(1, Nav::Last(0)),
                col(1, Nav::Last(1)),
            )),
        );
        let up = MExpr::Bin(Op::Gt, col(2, Nav::Last(0)), col(1, Nav::Last(1)));
        let schema = Arc::new(Schema::new(vec![Field::new(
            "price",
            DataType::Int64,
            true,
        )]));
        MatchSpec {
            partition: vec![],
            keys: vec![],
            time_col: 0,
            input_schema: schema.clone(),
            output_schema: schema,
            vars: ["START_ROW", "PRICE_DOWN", "PRICE_UP"]
                .map(String::from)
                .to_vec(),
            pattern: vec![
                Element {
                    var: 0,
                    min: 1,
                    max: 1,
                    greedy: true,
                },
                Element {
                    var: 1,
                    min: 1,
                    max: usize::MAX,
                    greedy: true,
                },
                Element {
                    var: 2,
                    min: 1,
                    max: 1,
                    greedy: true,
                },
            ],
            defines: vec![None, Some(down), Some(up)],
            measures: vec![
                MExpr::Col {
                    var: Some(0),
                    col: 0,
                    nav: Nav::Last(0),
                },
                MExpr::Col {
                    var: Some(1),
                    col: 0,
                    nav: Nav::Last(0),
                },
                MExpr::Agg {
                    f: Agg::Count,
                    var: Some(1),
                    col: None,
                },
            ],
            skip: Skip::ToLast(2),
            max_prev: 0,
            within: None,
        }
    }

    #[test]
    fn flink_v_shape_example() {
        let prices = [12, 17, 19, 21, 25, 18, 15, 14, 24, 25, 19];
        let mut part = Part {
            rows: prices
                .iter()
                .enumerate()
                .map(|(t, p)| row(t as i64, *p))
                .collect(),
            ..Default::default()
        };
        let mut out = vec![];
        search(&v_shape(), &mut part, false, &mut out).unwrap();
        // 25 (start), 18 15 14 (down), 24 (up); the search from 25 (10:00:09) waits for more.
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, vec![V::Int(25), V::Int(14), V::Int(3)]);
        assert_eq!(part.start, 9);
        // At the end of the input the waiting search fails: no more matches.
        search(&v_shape(), &mut part, true, &mut out).unwrap();
        assert_eq!(out.len(), 1);
    }

    /// Matches found before a checkpoint and after a restore at another parallelism are those
    /// of an uninterrupted run, including searches that were waiting for rows.
    #[tokio::test]
    async fn snapshot_restore_at_other_parallelism_gives_the_same_matches() {
        use crate::operators::test_util::{assert_rescales_alike, stage_spec, varied_tkv as input};
        let query = "SELECT * FROM t MATCH_RECOGNIZE (PARTITION BY k ORDER BY ts \
                     MEASURES FIRST(A.v) AS a, LAST(B.v) AS b, COUNT(B.v) AS n, \
                     SUM(B.v) AS s, MATCH_ROWTIME() AS at \
                     PATTERN (A B+ C) DEFINE B AS B.v > PREV(B.v), C AS C.v < PREV(C.v))";
        let (spec, keys, source) = stage_spec(query).await;
        let before: Vec<_> = (0..3).map(|b| input(&source, b * 2_000)).collect();
        let after: Vec<_> = (3..6).map(|b| input(&source, b * 2_000)).collect();
        let straight = assert_rescales_alike(&spec, &keys, &before, &after);
        assert!(straight.len() > 50, "{}", straight.len());
    }

    /// A search still waiting for rows when the input ends is decided then, also for a
    /// partition that got no rows since (the bug: only partitions with new rows were).
    #[tokio::test]
    async fn the_end_of_input_decides_waiting_searches() {
        use crate::operators::test_util::{emitted, rows, stage_spec, through};
        let query = "SELECT * FROM t MATCH_RECOGNIZE (PARTITION BY k ORDER BY ts \
                     MEASURES COUNT(*) AS n PATTERN (A B+) DEFINE B AS B.v > PREV(B.v))";
        let (spec, _, source) = stage_spec(query).await;
        let mut op = spec.instantiate().unwrap();
        let mut out = Emitter::default();
        let batch = through(&source, &[(0, 1, 1), (1, 1, 2), (2, 1, 3), (3, 1, 4)]);
        op.process_batch(0, batch, &mut out).unwrap();
        // Every row is behind the watermark; the greedy B+ waits for a row that ends it.
        op.on_watermark(10_000, &mut out).unwrap();
        op.on_watermark(20_000, &mut out).unwrap();
        assert!(rows(&emitted(std::mem::take(&mut out))).is_empty());
        op.on_watermark(i64::MAX, &mut out).unwrap();
        op.on_end(&mut out).unwrap();
        assert_eq!(rows(&emitted(out)), vec!["1 | 4".to_string()]);
    }

    #[test]
    fn nulls_and_three_valued_logic() {
        assert_eq!(binary(Op::And, V::Null, V::Bool(false)), V::Bool(false));
        assert_eq!(binary(Op::Or, V::Null, V::Bool(true)), V::Bool(true));
        assert_eq!(binary(Op::Lt, V::Null, V::Int(1)), V::Null);
        assert_eq!(binary(Op::Lt, V::Int(1), V::Float(1.5)), V::Bool(true));
        assert_eq!(binary(Op::Div, V::Int(7), V::Int(0)), V::Null);
        assert_eq!(
            aggregate(Agg::Avg, &[V::Int(12), V::Int(17)]),
            V::Float(14.5)
        );
    }
}
