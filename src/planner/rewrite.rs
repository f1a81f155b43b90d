//! AST rewrites that turn Flink's streaming syntax into SQL DataFusion can plan:
//!
//! - views are expanded into derived tables;
//! - a window TVF `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL ...))` becomes a scan of a
//!   placeholder table `__weir_window_N` whose schema is t's columns plus window_start,
//!   window_end and window_time; the [`WindowTvf`] records what it stands for;
//! - the legacy group windows (`GROUP BY TUMBLE(ts, INTERVAL ...)` with `TUMBLE_START(...)`
//!   and friends) become the same placeholder, grouped by window_start and window_end.
//!
//! The planner later recognises the placeholder scans under aggregations.

use std::ops::ControlFlow;

use sqlparser::ast::Spanned;
use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, ObjectName,
    ObjectNamePart, Query, SetExpr, TableAlias, TableFactor, TableVersion, VisitMut, VisitorMut,
    visit_expressions_mut,
};
use sqlparser::tokenizer::Span;

use super::super::sql::Catalog;
use super::super::sql::dialect::TABLE_ARG_MARKER;
use super::super::sql::interval::interval_ms;
use super::super::sql::statement::normalize_ident;
use crate::operators::WindowKind;
use crate::{Error, Result, not_supported, plan_err};

/// What a window placeholder table stands for.
#[derive(Debug, Clone)]
pub struct WindowTvf {
    /// Placeholder table name.
    pub placeholder: String,
    /// Window geometry.
    pub kind: WindowKind,
    /// The DESCRIPTOR column.
    pub time_col: String,
    /// The rows being windowed.
    pub input: Box<Query>,
    /// SESSION's PARTITION BY columns (None when not given).
    pub partition_by: Option<Vec<String>>,
    /// Names of the window_start, window_end and window_time columns it adds: Flink's for a
    /// window TVF; weir's own for a legacy group window, whose columns are only reached
    /// through TUMBLE_START() and friends, so they never clash with the input's columns.
    pub columns: [String; 3],
}

/// The column names a window TVF adds.
fn tvf_columns() -> [String; 3] {
    ["window_start", "window_end", "window_time"].map(String::from)
}

/// The placeholders a rewrite introduced.
#[derive(Default)]
pub struct Placeholders {
    /// Window TVFs (and legacy group windows), in order.
    pub windows: Vec<WindowTvf>,
    /// MATCH_RECOGNIZE clauses, in order.
    pub matches: Vec<super::pattern::MatchAst>,
}

/// Rewrite `query` in place; returns the placeholders it introduced.
pub fn rewrite_query(
    catalog: &Catalog,
    query: &mut Query,
    next_id: &mut usize,
) -> Result<Placeholders> {
    let mut r = Rewriter {
        catalog,
        windows: vec![],
        matches: vec![],
        error: None,
        next_id,
        depth: 0,
    };
    r.rewrite(query);
    match r.error {
        Some(e) => Err(e),
        None => Ok(Placeholders {
            windows: r.windows,
            matches: r.matches,
        }),
    }
}

struct Rewriter<'a> {
    catalog: &'a Catalog,
    windows: Vec<WindowTvf>,
    matches: Vec<super::pattern::MatchAst>,
    error: Option<Error>,
    next_id: &'a mut usize,
    depth: usize,
}

fn at(span: Span) -> String {
    if span == Span::empty() {
        String::new()
    } else {
        format!(" at {}", span.start)
    }
}

fn table_factor(name: &str, alias: Option<TableAlias>) -> TableFactor {
    TableFactor::Table {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        alias,
        args: None,
        with_hints: vec![],
        version: None,
        with_ordinality: false,
        partitions: vec![],
        json_path: None,
        sample: None,
        index_hints: vec![],
    }
}

/// `SELECT * FROM name` as an AST.
pub fn select_all_from(name: &str) -> Result<Box<Query>> {
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    let stmts = crate::sql::parse_sql(&format!("SELECT * FROM {quoted}"))?;
    match stmts.into_iter().next().map(|s| s.statement) {
        Some(crate::sql::Statement::Query(q)) => Ok(q),
        _ => plan_err!("internal: could not build SELECT * FROM {name}"),
    }
}

/// The name a lookup of table `t` is planned under.
pub fn lookup_placeholder(table: &str) -> String {
    format!("{LOOKUP_PREFIX}{table}")
}

/// Prefix of [`lookup_placeholder`] names.
pub const LOOKUP_PREFIX: &str = "__weir_lookup__";

/// The name a versioned table joined `FOR SYSTEM_TIME AS OF` the left side's event-time
/// column is planned under: `__weir_versioned__<table>__as_of__<column>` (an event-time
/// temporal join).
pub fn versioned_placeholder(table: &str, column: &str) -> String {
    format!("{VERSIONED_PREFIX}{table}{AS_OF}{column}")
}

/// Prefix of [`versioned_placeholder`] names.
pub const VERSIONED_PREFIX: &str = "__weir_versioned__";
const AS_OF: &str = "__as_of__";

/// The table and `AS OF` column of a [`versioned_placeholder`] name.
pub fn versioned_parts(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix(VERSIONED_PREFIX)?.split_once(AS_OF)
}

impl Rewriter<'_> {
    /// Check a `FOR SYSTEM_TIME AS OF` and name the lookup (a processing-time column) or the
    /// versioned table (an event-time column).
    fn lookup_table(&self, name: &ObjectName, at: &Expr) -> Result<String> {
        let table = name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(normalize_ident)
            .unwrap_or_default();
        let Some(t) = self.catalog.tables.get(&table) else {
            return plan_err!("FOR SYSTEM_TIME AS OF: table {table} does not exist");
        };
        // `AS OF PROCTIME()` written inline: a lookup join, as with a PROCTIME() column.
        let inline_proctime = matches!(at, Expr::Function(f)
            if f.name.to_string().eq_ignore_ascii_case("PROCTIME"));
        let column = match at {
            _ if inline_proctime => String::new(),
            Expr::Identifier(i) => normalize_ident(i),
            Expr::CompoundIdentifier(parts) => {
                parts.last().map(normalize_ident).unwrap_or_default()
            }
            other => {
                return not_supported!(
                    "FOR SYSTEM_TIME AS OF {other}: use a PROCTIME() column of the stream"
                );
            }
        };
        let is_proctime = inline_proctime
            || self.catalog.tables.values().any(|t| {
                t.def.computed.iter().any(|c| {
                    c.name == column && c.expr.to_string().eq_ignore_ascii_case("PROCTIME()")
                })
            });
        if !is_proctime {
            // An event-time temporal join: the table must be versioned (a primary key and an
            // event time), and the column the left side's event time.
            let is_rowtime = self
                .catalog
                .tables
                .values()
                .any(|t| t.def.watermark.as_ref().is_some_and(|w| w.column == column));
            if !is_rowtime {
                return plan_err!(
                    "FOR SYSTEM_TIME AS OF {column}: join AS OF the stream's event-time column (its WATERMARK FOR column), or a PROCTIME() column for a lookup join"
                );
            }
            if t.def.primary_key.is_empty() || t.def.watermark.is_none() {
                return plan_err!(
                    "FOR SYSTEM_TIME AS OF {column}: {table} is not a versioned table; give it a PRIMARY KEY (…) NOT ENFORCED and a WATERMARK, as Flink requires"
                );
            }
            return Ok(versioned_placeholder(&table, &column));
        }
        if t.connector() != "filesystem" {
            return not_supported!(
                "lookup joins against a '{}' table (a filesystem table: file or directory)",
                t.connector()
            );
        }
        Ok(lookup_placeholder(&table))
    }

    fn rewrite(&mut self, query: &mut Query) {
        self.depth += 1;
        if self.depth > 32 {
            self.error.get_or_insert(Error::Plan(
                "views nest more than 32 deep (a cycle?)".into(),
            ));
            return;
        }
        let mut names = ExprNames::default();
        let _ = query.visit(&mut names);
        if let Some(e) = names.error {
            self.error.get_or_insert(e);
            return;
        }
        if let Err(e) = flink_functions(query) {
            self.error.get_or_insert(e);
            return;
        }
        // Legacy group windows first: they rewrite a SELECT's FROM into a window TVF.
        let _ = query.visit(&mut LegacyWindows { r: self });
        let _ = query.visit(self);
        self.depth -= 1;
    }

    fn placeholder(&mut self) -> String {
        *self.next_id += 1;
        format!("__weir_window_{}", self.next_id)
    }

    fn window_tvf(&mut self, expr: &Expr) -> Result<WindowTvf> {
        let Expr::Function(f) = expr else {
            return not_supported!(
                "TABLE({expr}): only the window functions TUMBLE, HOP, CUMULATE and SESSION"
            );
        };
        let fname = f.name.to_string().to_ascii_uppercase();
        let FunctionArguments::List(list) = &f.args else {
            return plan_err!("{fname} needs arguments{}", at(f.name.span()));
        };
        // Positional or named (DATA =>, TIMECOL =>, SIZE =>, SLIDE =>, STEP =>, GAP =>) arguments.
        let names: &[&str] = match fname.as_str() {
            "TUMBLE" => &["DATA", "TIMECOL", "SIZE", "OFFSET"],
            "HOP" => &["DATA", "TIMECOL", "SLIDE", "SIZE", "OFFSET"],
            "CUMULATE" => &["DATA", "TIMECOL", "STEP", "SIZE", "OFFSET"],
            "SESSION" => &["DATA", "TIMECOL", "GAP"],
            _ => return not_supported!("table function {fname}{}", at(f.name.span())),
        };
        let mut args: Vec<Option<&Expr>> = vec![None; names.len()];
        for (i, a) in list.args.iter().enumerate() {
            let (slot, e) = match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => (i, e),
                FunctionArg::Named {
                    name,
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => {
                    let n = name.value.to_ascii_uppercase();
                    let Some(slot) = names.iter().position(|x| *x == n) else {
                        return plan_err!("{fname} has no argument named {n}");
                    };
                    (slot, e)
                }
                other => return plan_err!("unexpected argument {other} of {fname}"),
            };
            if slot >= names.len() {
                return plan_err!(
                    "{fname} takes at most {} arguments{}",
                    names.len(),
                    at(f.name.span())
                );
            }
            args[slot] = Some(e);
        }
        let arg = |i: usize| -> Result<&Expr> {
            args[i]
                .ok_or_else(|| Error::Plan(format!("{fname} is missing its {} argument", names[i])))
        };
        // DATA: TABLE t [PARTITION BY ...]
        let (table, partition_by) = match arg(0)? {
            Expr::CompoundIdentifier(parts)
                if parts.first().is_some_and(|p| p.value == TABLE_ARG_MARKER) =>
            {
                let table = normalize_ident(&parts[1]);
                let keys: Vec<String> = parts[2..].iter().map(normalize_ident).collect();
                (table, (!keys.is_empty()).then_some(keys))
            }
            other => {
                return plan_err!(
                    "the first argument of {fname} must be TABLE <name>, found {other}"
                );
            }
        };
        if partition_by.is_some() && fname != "SESSION" {
            return plan_err!("PARTITION BY is only allowed in SESSION windows");
        }
        // TIMECOL: DESCRIPTOR(col)
        let time_col = match arg(1)? {
            Expr::Function(d) if d.name.to_string().eq_ignore_ascii_case("DESCRIPTOR") => match &d
                .args
            {
                FunctionArguments::List(l) if l.args.len() == 1 => match &l.args[0] {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(id))) => {
                        normalize_ident(id)
                    }
                    other => return plan_err!("DESCRIPTOR takes one column name, found {other}"),
                },
                _ => return plan_err!("DESCRIPTOR takes one column name"),
            },
            other => {
                return plan_err!(
                    "the second argument of {fname} must be DESCRIPTOR(column), found {other}"
                );
            }
        };
        let positive = |i: usize| -> Result<i64> {
            let ms = interval_ms(arg(i)?)?;
            if ms <= 0 {
                return plan_err!("{} of {fname} must be positive", names[i]);
            }
            Ok(ms)
        };
        // OFFSET: an interval (negative allowed) shifting the windows' alignment.
        let offset = match names.iter().position(|n| *n == "OFFSET") {
            Some(i) if args[i].is_some() => interval_ms(arg(i)?)?,
            _ => 0,
        };
        let kind = match fname.as_str() {
            "TUMBLE" => WindowKind::Tumble {
                size: positive(2)?,
                offset,
            },
            "HOP" => WindowKind::Hop {
                slide: positive(2)?,
                size: positive(3)?,
                offset,
            },
            "CUMULATE" => {
                let (step, max_size) = (positive(2)?, positive(3)?);
                if max_size % step != 0 {
                    return plan_err!("CUMULATE: the max size must be a multiple of the step");
                }
                WindowKind::Cumulate {
                    step,
                    max_size,
                    offset,
                }
            }
            _ => WindowKind::Session { gap: positive(2)? },
        };
        Ok(WindowTvf {
            placeholder: self.placeholder(),
            kind,
            time_col,
            input: select_all_from(&table)?,
            partition_by,
            columns: tvf_columns(),
        })
    }
}

impl VisitorMut for Rewriter<'_> {
    type Break = ();

    fn post_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<()> {
        // `UNNEST(o.items) AS t (item)`, parsed as a table function: DataFusion's UNNEST.
        if let TableFactor::Table {
            name,
            alias,
            args: Some(args),
            ..
        } = tf
            && name.to_string().eq_ignore_ascii_case("UNNEST")
        {
            let mut exprs = vec![];
            for a in &args.args {
                match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => exprs.push(e.clone()),
                    other => {
                        self.error.get_or_insert(Error::Plan(format!(
                            "UNNEST takes arrays, not {other}"
                        )));
                        return ControlFlow::Break(());
                    }
                }
            }
            *tf = TableFactor::UNNEST {
                alias: alias.clone(),
                array_exprs: exprs,
                with_offset: false,
                with_offset_alias: None,
                with_ordinality: false,
            };
            return ControlFlow::Continue(());
        }
        // `t FOR SYSTEM_TIME AS OF o.proc_time`: a lookup of reference table t.
        if let TableFactor::Table { name, version, .. } = tf
            && let Some(TableVersion::ForSystemTimeAsOf(at)) = version.as_ref()
        {
            match self.lookup_table(name, at) {
                Ok(placeholder) => {
                    *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(placeholder))]);
                    *version = None;
                    return ControlFlow::Continue(());
                }
                Err(e) => {
                    self.error.get_or_insert(e);
                    return ControlFlow::Break(());
                }
            }
        }
        let replacement = match tf {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let key = name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(normalize_ident)
                    .unwrap_or_default();
                let Some(view) = self.catalog.views.get(&key) else {
                    return ControlFlow::Continue(());
                };
                let mut subquery = view.query.clone();
                self.rewrite(&mut subquery);
                let alias = alias.clone().or_else(|| {
                    Some(TableAlias {
                        explicit: true,
                        name: Ident::new(key.clone()),
                        columns: vec![],
                        at: None,
                    })
                });
                TableFactor::Derived {
                    lateral: false,
                    subquery,
                    alias,
                    sample: None,
                }
            }
            TableFactor::MatchRecognize {
                table,
                partition_by,
                order_by,
                measures,
                rows_per_match,
                after_match_skip,
                pattern,
                symbols,
                alias,
            } => {
                let input = match table.as_ref() {
                    TableFactor::Table {
                        name, args: None, ..
                    } => {
                        let t = name
                            .0
                            .last()
                            .and_then(|p| p.as_ident())
                            .map(normalize_ident)
                            .unwrap_or_default();
                        select_all_from(&t)
                    }
                    TableFactor::Derived { subquery, .. } => Ok(subquery.clone()),
                    other => not_supported!("MATCH_RECOGNIZE over {other}"),
                };
                let input = match input {
                    Ok(i) => i,
                    Err(e) => {
                        self.error.get_or_insert(e);
                        return ControlFlow::Break(());
                    }
                };
                *self.next_id += 1;
                let placeholder = format!("__weir_match_{}", self.next_id);
                self.matches.push(super::pattern::MatchAst {
                    placeholder: placeholder.clone(),
                    input,
                    partition_by: partition_by.clone(),
                    order_by: order_by.clone(),
                    measures: measures.clone(),
                    rows_per_match: rows_per_match.clone(),
                    skip: after_match_skip.clone(),
                    pattern: pattern.clone(),
                    symbols: symbols.clone(),
                });
                table_factor(&placeholder, alias.clone())
            }
            TableFactor::TableFunction { expr, alias } => match self.window_tvf(expr) {
                Ok(w) => {
                    let tf = table_factor(&w.placeholder, alias.clone());
                    self.windows.push(w);
                    tf
                }
                Err(e) => {
                    self.error.get_or_insert(e);
                    return ControlFlow::Break(());
                }
            },
            _ => return ControlFlow::Continue(()),
        };
        *tf = replacement;
        ControlFlow::Continue(())
    }
}

/// Rewrites `GROUP BY TUMBLE(ts, INTERVAL ...)` selects into window TVF placeholders.
struct LegacyWindows<'r, 'a> {
    r: &'r mut Rewriter<'a>,
}

fn legacy_kind(f: &sqlparser::ast::Function) -> Option<String> {
    let n = f.name.to_string().to_ascii_uppercase();
    matches!(n.as_str(), "TUMBLE" | "HOP" | "SESSION").then_some(n)
}

impl VisitorMut for LegacyWindows<'_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let GroupByExpr::Expressions(exprs, _) = &mut select.group_by else {
            return ControlFlow::Continue(());
        };
        let Some(pos) = exprs
            .iter()
            .position(|e| matches!(e, Expr::Function(f) if legacy_kind(f).is_some()))
        else {
            return ControlFlow::Continue(());
        };
        let result = (|| -> Result<[String; 3]> {
            let Expr::Function(f) = &exprs[pos] else {
                return plan_err!("internal: legacy window");
            };
            let kind_name = legacy_kind(f).unwrap_or_default();
            let FunctionArguments::List(list) = &f.args else {
                return plan_err!("{kind_name} needs arguments");
            };
            let args: Vec<&Expr> = list
                .args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                    _ => None,
                })
                .collect();
            let time_col = match args.first() {
                Some(Expr::Identifier(id)) => normalize_ident(id),
                Some(Expr::CompoundIdentifier(ids)) => {
                    ids.last().map(normalize_ident).unwrap_or_default()
                }
                _ => {
                    return plan_err!(
                        "{kind_name}(...) in GROUP BY needs the event-time column first{}",
                        at(f.name.span())
                    );
                }
            };
            let interval = |i: usize| -> Result<i64> {
                let ms =
                    interval_ms(args.get(i).ok_or_else(|| {
                        Error::Plan(format!("{kind_name} is missing an interval"))
                    })?)?;
                if ms <= 0 {
                    return plan_err!("{kind_name}: intervals must be positive");
                }
                Ok(ms)
            };
            let other_keys: Vec<String> = exprs
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != pos)
                .filter_map(|(_, e)| match e {
                    Expr::Identifier(id) => Some(normalize_ident(id)),
                    Expr::CompoundIdentifier(ids) => ids.last().map(normalize_ident),
                    _ => None,
                })
                .collect();
            let kind = match kind_name.as_str() {
                "TUMBLE" => WindowKind::Tumble {
                    size: interval(1)?,
                    offset: 0,
                },
                "HOP" => WindowKind::Hop {
                    slide: interval(1)?,
                    size: interval(2)?,
                    offset: 0,
                },
                _ => WindowKind::Session { gap: interval(1)? },
            };
            let partition_by = matches!(kind, WindowKind::Session { .. }).then_some(other_keys);
            if select.from.len() != 1 || !select.from[0].joins.is_empty() {
                return not_supported!("group windows over joins or several tables");
            }
            let relation = &mut select.from[0].relation;
            let (input, alias) = match relation {
                TableFactor::Table {
                    name,
                    alias,
                    args: None,
                    ..
                } => {
                    let table = name
                        .0
                        .last()
                        .and_then(|p| p.as_ident())
                        .map(normalize_ident)
                        .unwrap_or_default();
                    let alias = alias.clone().unwrap_or(TableAlias {
                        explicit: true,
                        name: Ident::new(table.clone()),
                        columns: vec![],
                        at: None,
                    });
                    (select_all_from(&table)?, alias)
                }
                TableFactor::Derived {
                    subquery,
                    alias: Some(alias),
                    ..
                } => (subquery.clone(), alias.clone()),
                other => return not_supported!("group window over {other}"),
            };
            let placeholder = self.r.placeholder();
            *relation = table_factor(&placeholder, Some(alias));
            let columns = ["start", "end", "time"].map(|c| format!("{placeholder}_{c}"));
            exprs.splice(
                pos..=pos,
                columns
                    .iter()
                    .map(|c| Expr::Identifier(Ident::with_quote('"', c.clone()))),
            );
            self.r.windows.push(WindowTvf {
                placeholder,
                kind,
                time_col,
                input,
                partition_by,
                columns: columns.clone(),
            });
            Ok(columns)
        })();
        let columns = match result {
            Ok(c) => c,
            Err(e) => {
                self.r.error.get_or_insert(e);
                return ControlFlow::Break(());
            }
        };
        // TUMBLE_START(...) and friends anywhere in this SELECT.
        let _ = visit_expressions_mut(select.as_mut(), |e| {
            if let Expr::Function(f) = e {
                let n = f.name.to_string().to_ascii_uppercase();
                let col = match n.rsplit_once('_') {
                    Some(("TUMBLE" | "HOP" | "SESSION", "START")) => &columns[0],
                    Some(("TUMBLE" | "HOP" | "SESSION", "END")) => &columns[1],
                    // Over a processing-time window, the window's time attribute on that
                    // clock (its end less 1 ms), for windows downstream. Flink materialises
                    // the wall clock when the row is read instead.
                    Some(("TUMBLE" | "HOP" | "SESSION", "ROWTIME" | "PROCTIME")) => &columns[2],
                    _ => return ControlFlow::<()>::Continue(()),
                };
                *e = Expr::Identifier(Ident::with_quote('"', col.clone()));
            }
            ControlFlow::Continue(())
        });
        ControlFlow::Continue(())
    }
}

fn plain_args(f: &sqlparser::ast::Function) -> Option<Vec<Expr>> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Java date pattern (Flink's DATE_FORMAT) to a chrono pattern.
pub fn java_to_chrono(pattern: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        let piece = match (c, n) {
            ('y', 2) => "%y".to_string(),
            ('y', _) => "%Y".to_string(),
            ('M', 1 | 2) => "%m".to_string(),
            ('M', 3) => "%b".to_string(),
            ('M', _) => "%B".to_string(),
            ('d', _) => "%d".to_string(),
            ('H', _) => "%H".to_string(),
            ('h', _) => "%I".to_string(),
            ('m', _) => "%M".to_string(),
            ('s', _) => "%S".to_string(),
            ('S', _) => "%3f".to_string(),
            ('a', _) => "%p".to_string(),
            ('E', _) => "%a".to_string(),
            ('%', _) => "%%".repeat(n),
            ('\'', _) => String::new(),
            (other, n) => other.to_string().repeat(n),
        };
        out.push_str(&piece);
        i += n;
    }
    out
}

/// Flink scalar functions DataFusion spells differently: MOD(a, b) → a % b,
/// DATE_FORMAT(ts, 'yyyy-MM-dd') → weir_date_format(ts, '%Y-%m-%d') (DataFusion's to_char,
/// made cheap for a column of timestamps: `functions::time::DateFormat`).
fn flink_functions(query: &mut Query) -> Result<()> {
    let mut error = None;
    let _ = visit_expressions_mut(query, |e| {
        if let Expr::Cast {
            expr,
            data_type,
            format: None,
            ..
        } = e
            && is_string_type(data_type)
        {
            // Flink's text forms of TIMESTAMP and BOOLEAN.
            let call = format!("{}(x)", crate::functions::string::CAST_TO_STRING);
            if let Some(Expr::Function(mut call)) = expr_of(&call) {
                if let FunctionArguments::List(l) = &mut call.args {
                    l.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(*expr.clone()))];
                }
                *e = Expr::Function(call);
            }
            return ControlFlow::Continue(());
        }
        // INTERVAL 'd hh:mm:ss' DAY TO SECOND and the other ranges: a plain interval.
        if let Expr::Interval(iv) = e
            && let (Some(lead), Some(last)) = (&iv.leading_field, &iv.last_field)
        {
            let text = match iv.value.as_ref() {
                Expr::Value(v) => match &v.value {
                    sqlparser::ast::Value::SingleQuotedString(t) => t.clone(),
                    _ => String::new(),
                },
                _ => String::new(),
            };
            match range_interval(&text, lead, last) {
                Some(plain) => {
                    *iv.value = Expr::value(sqlparser::ast::Value::SingleQuotedString(plain));
                    iv.leading_field = None;
                    iv.last_field = None;
                    iv.leading_precision = None;
                    iv.fractional_seconds_precision = None;
                }
                None => {
                    error = Some(Error::Plan(format!(
                        "{e}: expected a value such as '1 02:03:04' for DAY TO SECOND or '1-6' for YEAR TO MONTH"
                    )));
                    return ControlFlow::Break(());
                }
            }
            return ControlFlow::Continue(());
        }
        // FLOOR / CEIL(ts TO unit): the start of the unit containing ts, or of the next one.
        let is_floor = matches!(e, Expr::Floor { .. });
        if let Expr::Floor { expr, field } | Expr::Ceil { expr, field } = e
            && let sqlparser::ast::CeilFloorKind::DateTimeField(unit) = field
            && *unit != sqlparser::ast::DateTimeField::NoDateTime
        {
            use sqlparser::ast::DateTimeField as U;
            let unit = match unit {
                U::Year | U::Years => "year",
                U::Quarter => "quarter",
                U::Month | U::Months => "month",
                U::Day | U::Days => "day",
                U::Hour | U::Hours => "hour",
                U::Minute | U::Minutes => "minute",
                U::Second | U::Seconds => "second",
                other => {
                    error = Some(Error::NotSupported(format!("FLOOR / CEIL to {other}")));
                    return ControlFlow::Break(());
                }
            };
            let floor = format!("date_trunc('{unit}', ({expr}))");
            let text = if is_floor {
                floor
            } else {
                format!(
                    "CASE WHEN {floor} = ({expr}) THEN {floor} ELSE {floor} + INTERVAL '1' {unit} END"
                )
            };
            match expr_of(&text) {
                Some(x) => *e = Expr::Nested(Box::new(x)),
                None => error = Some(Error::Plan(format!("cannot translate {e}"))),
            }
            return ControlFlow::Continue(());
        }
        let Expr::Function(f) = e else {
            return ControlFlow::Continue(());
        };
        let name = f.name.to_string().to_ascii_uppercase();
        match name.as_str() {
            // The clock, read per batch (Flink's streaming mode), not folded at planning.
            "CURRENT_TIMESTAMP" | "NOW" | "CURRENT_ROW_TIMESTAMP" | "LOCALTIMESTAMP" => {
                let func = if name == "LOCALTIMESTAMP" {
                    "proctime"
                } else {
                    crate::functions::CURRENT_TIMESTAMP
                };
                f.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(func))]);
                f.args = FunctionArguments::List(sqlparser::ast::FunctionArgumentList {
                    duplicate_treatment: None,
                    args: vec![],
                    clauses: vec![],
                });
            }
            // IF(c, a, b) is CASE WHEN c THEN a ELSE b END.
            "IF" => match plain_args(f).as_deref() {
                Some([c, a, b]) => {
                    *e = Expr::Case {
                        case_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
                        end_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
                        operand: None,
                        conditions: vec![sqlparser::ast::CaseWhen {
                            condition: c.clone(),
                            result: a.clone(),
                        }],
                        else_result: Some(Box::new(b.clone())),
                    };
                }
                _ => error = Some(Error::Plan(format!("IF takes three arguments: {e}"))),
            },
            // The unit of TIMESTAMPDIFF / TIMESTAMPADD becomes a string argument.
            "TIMESTAMPDIFF" | "TIMESTAMPADD" => match plain_args(f).as_deref() {
                Some([unit, x, y]) => {
                    let unit = match unit {
                        Expr::Identifier(id) => id.value.to_ascii_uppercase(),
                        other => other.to_string().to_ascii_uppercase(),
                    };
                    let func = if name == "TIMESTAMPDIFF" {
                        crate::functions::flink::TIMESTAMPDIFF
                    } else {
                        crate::functions::flink::TIMESTAMPADD
                    };
                    f.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(func))]);
                    if let FunctionArguments::List(l) = &mut f.args {
                        l.args = [
                            Expr::value(sqlparser::ast::Value::SingleQuotedString(unit)),
                            x.clone(),
                            y.clone(),
                        ]
                        .into_iter()
                        .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                        .collect();
                    }
                }
                _ => {
                    error = Some(Error::Plan(format!(
                        "{name} takes (unit, value, value): {e}"
                    )))
                }
            },
            "MOD" => match plain_args(f).as_deref() {
                Some([a, b]) => {
                    *e = Expr::Nested(Box::new(Expr::BinaryOp {
                        left: Box::new(Expr::Nested(Box::new(a.clone()))),
                        op: sqlparser::ast::BinaryOperator::Modulo,
                        right: Box::new(Expr::Nested(Box::new(b.clone()))),
                    }));
                }
                _ => error = Some(Error::Plan(format!("MOD takes two arguments: {e}"))),
            },
            "TO_TIMESTAMP_LTZ" => match plain_args(f).as_deref() {
                Some([x]) | Some([x, _]) => {
                    let precision = match plain_args(f).as_deref() {
                        Some([_, Expr::Value(v)]) => v.value.to_string(),
                        _ => "3".into(),
                    };
                    let func = match precision.as_str() {
                        "0" => "to_timestamp_seconds",
                        "3" => "to_timestamp_millis",
                        p => {
                            error = Some(Error::NotSupported(format!(
                                "TO_TIMESTAMP_LTZ with precision {p} (0 or 3 are)"
                            )));
                            return ControlFlow::Break(());
                        }
                    };
                    // A TIMESTAMP_LTZ(3): an instant (UTC milliseconds).
                    match expr_of(&format!(
                        "arrow_cast({func}({x}), 'Timestamp(Millisecond, Some(\"UTC\"))')"
                    )) {
                        Some(x) => *e = Expr::Nested(Box::new(x)),
                        None => error = Some(Error::Plan(format!("cannot translate {e}"))),
                    }
                }
                _ => {
                    error = Some(Error::Plan(format!(
                        "TO_TIMESTAMP_LTZ takes (epoch, precision): {e}"
                    )))
                }
            },
            "DATE_FORMAT" => match plain_args(f).as_deref() {
                Some([ts, Expr::Value(v)]) => {
                    let sqlparser::ast::Value::SingleQuotedString(p) = &v.value else {
                        error = Some(Error::Plan(format!(
                            "DATE_FORMAT needs a constant pattern: {e}"
                        )));
                        return ControlFlow::Break(());
                    };
                    let pattern = java_to_chrono(p);
                    let text = format!(
                        "{}(x, '{}')",
                        crate::functions::time::DATE_FORMAT,
                        pattern.replace('\'', "''")
                    );
                    match crate::sql::parse_sql(&format!("SELECT {text}"))
                        .ok()
                        .and_then(|mut s| s.pop())
                    {
                        Some(crate::sql::Located {
                            statement: crate::sql::Statement::Query(q),
                            ..
                        }) => {
                            if let SetExpr::Select(sel) = *q.body
                                && let Some(sqlparser::ast::SelectItem::UnnamedExpr(
                                    Expr::Function(mut call),
                                )) = sel.projection.into_iter().next()
                            {
                                if let FunctionArguments::List(l) = &mut call.args {
                                    // A TIMESTAMP_LTZ formats on the session zone's clock.
                                    let local = expr_of(&format!(
                                        "{}({ts})",
                                        crate::functions::zone::LOCAL
                                    ))
                                    .unwrap_or_else(|| ts.clone());
                                    l.args[0] = FunctionArg::Unnamed(FunctionArgExpr::Expr(local));
                                }
                                *e = Expr::Function(call);
                            }
                        }
                        _ => error = Some(Error::Plan(format!("cannot translate {e}"))),
                    }
                }
                _ => {
                    error = Some(Error::NotSupported(format!(
                        "{e} (DATE_FORMAT with a constant pattern is)"
                    )))
                }
            },
            // Flink functions DataFusion spells differently, as templates over the arguments.
            "SPLIT_INDEX" | "REGEXP_EXTRACT" | "HOUR" | "MINUTE" | "SECOND" | "YEAR"
            | "QUARTER" | "MONTH" | "WEEK" | "DAYOFYEAR" | "DAYOFMONTH" | "DAYOFWEEK"
            | "TRUNCATE" | "CEILING" | "REGEXP" | "LISTAGG" | "COLLECT" | "VARIANCE" => {
                let args: Vec<String> = plain_args(f)
                    .unwrap_or_default()
                    .iter()
                    .map(|a| format!("({a})"))
                    .collect();
                let text = match (name.as_str(), args.as_slice()) {
                    // Flink's index is 0-based and a missing part is NULL.
                    ("SPLIT_INDEX", [s, d, i]) => {
                        format!("NULLIF(split_part({s}, {d}, {i} + 1), '')")
                    }
                    // Without an index, group 0: the whole match (functions/string.rs).
                    ("REGEXP_EXTRACT", [s, p]) => format!("weir_regexp_extract({s}, {p}, 0)"),
                    ("REGEXP_EXTRACT", [s, p, g]) => {
                        format!("weir_regexp_extract({s}, {p}, {g})")
                    }
                    // A TIMESTAMP_LTZ is read on the session zone's wall clock (weir_local).
                    ("HOUR" | "MINUTE" | "SECOND" | "YEAR" | "QUARTER" | "MONTH" | "WEEK", [x]) => {
                        format!(
                            "CAST(date_part('{}', weir_local({x})) AS BIGINT)",
                            name.to_lowercase()
                        )
                    }
                    ("DAYOFYEAR", [x]) => {
                        format!("CAST(date_part('doy', weir_local({x})) AS BIGINT)")
                    }
                    ("DAYOFMONTH", [x]) => {
                        format!("CAST(date_part('day', weir_local({x})) AS BIGINT)")
                    }
                    // Flink: 1 = Sunday … 7 = Saturday.
                    ("DAYOFWEEK", [x]) => {
                        format!("CAST(date_part('dow', weir_local({x})) AS BIGINT) + 1")
                    }
                    ("TRUNCATE", [x]) => format!("trunc({x})"),
                    ("TRUNCATE", [x, n]) => format!("trunc({x}, {n})"),
                    ("CEILING", [x]) => format!("ceil({x})"),
                    ("REGEXP", [x, p]) => format!("regexp_like({x}, {p})"),
                    ("LISTAGG", [x]) => format!("string_agg({x}, ',')"),
                    ("LISTAGG", [x, sep]) => format!("string_agg({x}, {sep})"),
                    // Flink's is a MULTISET; weir answers an ARRAY (docs/flink.md).
                    ("COLLECT", [x]) => format!("array_agg({x})"),
                    ("VARIANCE", [x]) => format!("var_samp({x})"),
                    _ => {
                        error = Some(Error::Plan(format!("wrong arguments for {name}: {e}")));
                        return ControlFlow::Break(());
                    }
                };
                match expr_of(&text) {
                    Some(x) => *e = Expr::Nested(Box::new(x)),
                    None => error = Some(Error::Plan(format!("cannot translate {e}"))),
                }
            }
            _ => {}
        }
        if error.is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Flink's names for unaliased select items that are not plain columns: `EXPR$<position>`
/// (0-based, counting every item of the select list). Runs before any other rewrite, so the
/// names are those of the expressions the user wrote.
#[derive(Default)]
struct ExprNames {
    error: Option<Error>,
}

/// The column that tags each row of an `INTERSECT ALL` / `EXCEPT ALL`'s union with its side.
pub(crate) const SET_SIDE_COLUMN: &str = "__weir_side";
/// The alias under which the planner finds the union of an `INTERSECT ALL` (`…_except_all`:
/// an `EXCEPT ALL`).
pub(crate) const SET_ALL_PREFIX: &str = "__weir_set_";

/// `INTERSECT ALL` / `EXCEPT ALL` keep duplicates by count, which DataFusion's plan (a semi or
/// anti join) does not. Each becomes a `UNION ALL` of its branches, tagged with their side
/// and aliased so that the planner puts a [`crate::operators::SetAllSpec`] over it:
/// `SELECT * EXCLUDE (__weir_side) FROM (SELECT *, 0 AS __weir_side FROM (a) UNION ALL
/// SELECT *, 1 FROM (b)) AS __weir_set_intersect_all`. Nested ones are rewritten when the
/// visitor reaches their (now derived-table) queries.
fn rewrite_set_all(body: &mut SetExpr) -> Result<()> {
    use sqlparser::ast::{SetOperator, SetQuantifier};
    let SetExpr::SetOperation {
        op,
        set_quantifier,
        left,
        right,
    } = body
    else {
        return Ok(());
    };
    if !(matches!(op, SetOperator::Intersect | SetOperator::Except)
        && matches!(set_quantifier, SetQuantifier::All))
    {
        rewrite_set_all(left)?;
        return rewrite_set_all(right);
    }
    let name = if matches!(op, SetOperator::Intersect) {
        "intersect_all"
    } else {
        "except_all"
    };
    let text = format!(
        "SELECT * FROM (SELECT *, 0 AS {SET_SIDE_COLUMN} FROM ({left}) AS __weir_l \
         UNION ALL SELECT *, 1 AS {SET_SIDE_COLUMN} FROM ({right}) AS __weir_r) \
         AS {SET_ALL_PREFIX}{name}"
    );
    let dialect = crate::sql::dialect::WeirDialect;
    let mut query = sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_query())
        .map_err(|e| Error::Plan(format!("{op} ALL: {e}")))?;
    if let SetExpr::Select(select) = query.body.as_mut()
        && let Some(sqlparser::ast::SelectItem::Wildcard(opts)) = select.projection.first_mut()
    {
        opts.opt_exclude = Some(sqlparser::ast::ExcludeSelectItem::Single(
            sqlparser::ast::ObjectName::from(vec![Ident::new(SET_SIDE_COLUMN)]),
        ));
    }
    *body = SetExpr::Query(query);
    Ok(())
}

impl VisitorMut for ExprNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Err(e) = rewrite_set_all(query.body.as_mut()) {
            self.error = Some(e);
            return ControlFlow::Break(());
        }
        let mut body = query.body.as_mut();
        // A set operation's columns are named by its first branch.
        while let SetExpr::SetOperation { left, .. } = body {
            body = left.as_mut();
        }
        let SetExpr::Select(select) = body else {
            return ControlFlow::Continue(());
        };
        for (i, item) in select.projection.iter_mut().enumerate() {
            let sqlparser::ast::SelectItem::UnnamedExpr(e) = item else {
                continue;
            };
            let mut inner = &*e;
            while let Expr::Nested(x) = inner {
                inner = x;
            }
            if matches!(inner, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
                continue;
            }
            *item = sqlparser::ast::SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias: Ident::with_quote('"', format!("EXPR${i}")),
            };
        }
        ControlFlow::Continue(())
    }
}

/// The value of `INTERVAL '<text>' <lead> TO <last>` as a plain interval text DataFusion
/// reads (`'1 days 2 hours 3 minutes 4.5 seconds'`, `'1 years 6 months'`), the sign applying
/// to the whole value as in Flink.
fn range_interval(
    text: &str,
    lead: &sqlparser::ast::DateTimeField,
    last: &sqlparser::ast::DateTimeField,
) -> Option<String> {
    use sqlparser::ast::DateTimeField as U;
    let t = text.trim();
    let (sign, t) = match t.strip_prefix('-') {
        Some(rest) => ("-", rest.trim()),
        None => ("", t.strip_prefix('+').unwrap_or(t).trim()),
    };
    let units: &[&str] = match (lead, last) {
        (U::Year, U::Month) => &["years", "months"],
        (U::Day, U::Hour) => &["days", "hours"],
        (U::Day, U::Minute) => &["days", "hours", "minutes"],
        (U::Day, U::Second) => &["days", "hours", "minutes", "seconds"],
        (U::Hour, U::Minute) => &["hours", "minutes"],
        (U::Hour, U::Second) => &["hours", "minutes", "seconds"],
        (U::Minute, U::Second) => &["minutes", "seconds"],
        _ => return None,
    };
    let parts: Vec<&str> = t.split([' ', ':', '-']).filter(|p| !p.is_empty()).collect();
    if parts.len() != units.len() {
        return None;
    }
    let mut out = vec![];
    for (p, unit) in parts.iter().zip(units) {
        let ok = if *unit == "seconds" {
            p.parse::<f64>().is_ok()
        } else {
            p.parse::<u64>().is_ok()
        };
        if !ok {
            return None;
        }
        out.push(format!("{sign}{p} {unit}"));
    }
    Some(out.join(" "))
}

/// STRING, VARCHAR(n), CHAR(n) and their spellings.
fn is_string_type(t: &sqlparser::ast::DataType) -> bool {
    use sqlparser::ast::DataType as T;
    matches!(
        t,
        T::String(_)
            | T::Varchar(_)
            | T::Char(_)
            | T::Text
            | T::CharacterVarying(_)
            | T::Character(_)
            | T::Nvarchar(_)
    )
}

/// An expression from SQL text.
fn expr_of(text: &str) -> Option<Expr> {
    let dialect = crate::sql::dialect::WeirDialect;
    sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(text)
        .ok()?
        .parse_expr()
        .ok()
}

/// Flink maps INSERT columns by position: alias the outer SELECT's unnamed items with the
/// target columns' names, so that two items that DataFusion would name alike
/// (`CAST(ts AS DATE)` and `ts`) do not collide.
pub fn alias_insert_columns(query: &mut Query, targets: &[String]) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    if select.projection.len() != targets.len() {
        return;
    }
    for (item, target) in select.projection.iter_mut().zip(targets) {
        if let sqlparser::ast::SelectItem::UnnamedExpr(e) = item {
            let mut alias = Ident::new(target.clone());
            alias.quote_style = Some('"');
            *item = sqlparser::ast::SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias,
            };
        }
    }
}
