//! Planning `MATCH_RECOGNIZE`: the rewriter replaces the clause by a placeholder table
//! ([`MatchAst`] records what it stands for); here its parts are checked against the input's
//! columns and compiled into the operator's [`MatchSpec`] (conditions and measures as
//! [`MExpr`]s, the output's columns and types). What Flink allows and weir does not yet (ALL
//! ROWS PER MATCH, pattern groups and alternatives, functions other than navigation and
//! aggregates) says `not supported yet`.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column as PhysColumn;
use sqlparser::ast::{
    AfterMatchSkip, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    MatchRecognizePattern, MatchRecognizeSymbol, Measure, OrderByExpr, Query, RepetitionQuantifier,
    RowsPerMatch, SymbolDefinition, UnaryOperator, Value,
};

use crate::operators::pattern::{Agg, Element, MExpr, MatchSpec, Nav, Op, Skip, V};
use crate::sql::statement::normalize_ident;
use crate::{Error, Result, not_supported, plan_err};

/// A `MATCH_RECOGNIZE` clause, as the rewriter found it.
#[derive(Debug, Clone)]
pub struct MatchAst {
    /// The placeholder table that stands for its output.
    pub placeholder: String,
    /// The rows it reads.
    pub input: Box<Query>,
    /// PARTITION BY.
    pub partition_by: Vec<Expr>,
    /// ORDER BY.
    pub order_by: Vec<OrderByExpr>,
    /// MEASURES.
    pub measures: Vec<Measure>,
    /// ONE ROW PER MATCH (the default) or ALL ROWS PER MATCH.
    pub rows_per_match: Option<RowsPerMatch>,
    /// AFTER MATCH SKIP.
    pub skip: Option<AfterMatchSkip>,
    /// PATTERN.
    pub pattern: MatchRecognizePattern,
    /// DEFINE.
    pub symbols: Vec<SymbolDefinition>,
}

fn column(schema: &Schema, e: &Expr, what: &str) -> Result<usize> {
    let name = match e {
        Expr::Identifier(id) => normalize_ident(id),
        Expr::CompoundIdentifier(ids) => ids.last().map(normalize_ident).unwrap_or_default(),
        other => return not_supported!("MATCH_RECOGNIZE {what} {other} (a column is)"),
    };
    schema.index_of(&name).map_err(|_| {
        Error::Plan(format!(
            "MATCH_RECOGNIZE {what}: no column {name} in its input"
        ))
    })
}

/// Compile `ast` over input rows of `input`.
pub fn compile(ast: &MatchAst, input: &Schema) -> Result<MatchSpec> {
    if matches!(ast.rows_per_match, Some(RowsPerMatch::AllRows(_))) {
        return not_supported!("MATCH_RECOGNIZE ALL ROWS PER MATCH (ONE ROW PER MATCH is)");
    }
    let partition = ast
        .partition_by
        .iter()
        .map(|e| column(input, e, "PARTITION BY"))
        .collect::<Result<Vec<_>>>()?;
    let time_col = match ast.order_by.as_slice() {
        [o] if o.options.asc != Some(false) => column(input, &o.expr, "ORDER BY")?,
        [] => return plan_err!("MATCH_RECOGNIZE needs ORDER BY its event-time attribute"),
        _ => {
            return not_supported!(
                "MATCH_RECOGNIZE ordered other than by one time attribute, ascending"
            );
        }
    };
    if !matches!(input.field(time_col).data_type(), DataType::Timestamp(..)) {
        return plan_err!(
            "MATCH_RECOGNIZE ORDER BY {}: expected a time attribute (TIMESTAMP(3) with a watermark)",
            input.field(time_col).name()
        );
    }
    // The pattern: a sequence of variables with quantifiers.
    let items: Vec<&MatchRecognizePattern> = match &ast.pattern {
        MatchRecognizePattern::Concat(items) => items.iter().collect(),
        single => vec![single],
    };
    let mut vars: Vec<String> = vec![];
    let mut pattern = vec![];
    for item in items {
        let (symbol, min, max, greedy) = match item {
            MatchRecognizePattern::Symbol(s) => (s, 1, 1, true),
            MatchRecognizePattern::Repetition(inner, q) => {
                // `A*?`: sqlparser reads a reluctant quantifier as `?` after a quantifier.
                let (inner, q, greedy) = match inner.as_ref() {
                    MatchRecognizePattern::Repetition(i, q0)
                        if *q == RepetitionQuantifier::AtMostOne =>
                    {
                        (i.as_ref(), q0, false)
                    }
                    _ => (inner.as_ref(), q, true),
                };
                let MatchRecognizePattern::Symbol(s) = inner else {
                    return not_supported!("MATCH_RECOGNIZE quantified groups ({item})");
                };
                let (min, max) = match q {
                    RepetitionQuantifier::ZeroOrMore => (0, usize::MAX),
                    RepetitionQuantifier::OneOrMore => (1, usize::MAX),
                    RepetitionQuantifier::AtMostOne => (0, 1),
                    RepetitionQuantifier::Exactly(n) => (*n as usize, *n as usize),
                    RepetitionQuantifier::AtLeast(n) => (*n as usize, usize::MAX),
                    RepetitionQuantifier::AtMost(n) => (0, *n as usize),
                    RepetitionQuantifier::Range(n, m) => (*n as usize, *m as usize),
                };
                (s, min, max, greedy)
            }
            other => {
                return not_supported!(
                    "MATCH_RECOGNIZE pattern {other} (a sequence of variables with quantifiers is)"
                );
            }
        };
        let MatchRecognizeSymbol::Named(id) = symbol else {
            return not_supported!("MATCH_RECOGNIZE anchors ^ and $");
        };
        let name = id.value.to_uppercase();
        if vars.contains(&name) {
            return not_supported!("MATCH_RECOGNIZE patterns naming a variable twice ({name})");
        }
        vars.push(name);
        pattern.push(Element {
            var: vars.len() - 1,
            min,
            max,
            greedy,
        });
    }
    let var_of = |id: &sqlparser::ast::Ident| -> Option<usize> {
        let n = id.value.to_uppercase();
        vars.iter().position(|v| *v == n)
    };
    let time_tz = match input.field(time_col).data_type() {
        DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    };
    let cx = Cx {
        input,
        vars: &vars,
        measure: false,
        time_tz,
    };
    let mut defines: Vec<Option<MExpr>> = vec![None; vars.len()];
    let mut within = None;
    for d in &ast.symbols {
        if d.symbol.value == crate::sql::statement::WITHIN_SYMBOL {
            let ms = crate::sql::interval::interval_ms(&d.definition)?;
            if ms <= 0 {
                return plan_err!("MATCH_RECOGNIZE WITHIN: the interval must be positive");
            }
            within = Some(ms);
            continue;
        }
        let Some(v) = var_of(&d.symbol) else {
            return plan_err!(
                "MATCH_RECOGNIZE DEFINE {}: not a variable of the PATTERN",
                d.symbol
            );
        };
        let (e, ty) = cx.expr(&d.definition)?;
        if ty != DataType::Boolean && ty != DataType::Null {
            return plan_err!(
                "MATCH_RECOGNIZE DEFINE {}: the condition must be a BOOLEAN, not {ty}",
                d.symbol
            );
        }
        defines[v] = Some(e);
    }
    let mcx = Cx {
        measure: true,
        ..cx.clone()
    };
    let mut fields: Vec<Field> = partition
        .iter()
        .map(|c| input.field(*c).clone().with_nullable(true))
        .collect();
    let mut measures = vec![];
    for m in &ast.measures {
        let (e, ty) = mcx.expr(&m.expr)?;
        let ty = if ty == DataType::Null {
            DataType::Utf8
        } else {
            ty
        };
        fields.push(Field::new(normalize_ident(&m.alias), ty, true));
        measures.push(e);
    }
    let names: std::collections::HashSet<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    if names.len() != fields.len() {
        return plan_err!("MATCH_RECOGNIZE: two output columns have the same name");
    }
    let skip = match &ast.skip {
        None | Some(AfterMatchSkip::PastLastRow) => Skip::PastLastRow,
        Some(AfterMatchSkip::ToNextRow) => Skip::ToNextRow,
        Some(AfterMatchSkip::ToFirst(v)) | Some(AfterMatchSkip::ToLast(v)) => {
            let Some(i) = var_of(v) else {
                return plan_err!("AFTER MATCH SKIP TO {v}: not a variable of the PATTERN");
            };
            if matches!(ast.skip, Some(AfterMatchSkip::ToFirst(_))) {
                Skip::ToFirst(i)
            } else {
                Skip::ToLast(i)
            }
        }
    };
    let keys: Vec<Arc<dyn PhysicalExpr>> = partition
        .iter()
        .map(|c| Arc::new(PhysColumn::new(input.field(*c).name(), *c)) as Arc<dyn PhysicalExpr>)
        .collect();
    let mut max_prev = 0;
    for e in defines.iter().flatten().chain(&measures) {
        max_prev = max_prev.max(prev_reach(e));
    }
    Ok(MatchSpec {
        partition,
        keys,
        time_col,
        input_schema: Arc::new(input.clone()),
        output_schema: Arc::new(Schema::new(fields)),
        vars,
        pattern,
        defines,
        measures,
        skip,
        max_prev,
        within,
    })
}

/// The largest PREV offset in `e`.
fn prev_reach(e: &MExpr) -> usize {
    match e {
        MExpr::Col {
            nav: Nav::Prev(n), ..
        } => *n,
        MExpr::Bin(_, l, r) => prev_reach(l).max(prev_reach(r)),
        MExpr::Not(x) | MExpr::Neg(x) | MExpr::IsNull(x, _) => prev_reach(x),
        _ => 0,
    }
}

/// What an expression may refer to.
#[derive(Clone)]
struct Cx<'a> {
    input: &'a Schema,
    vars: &'a [String],
    /// A measure (MATCH_ROWTIME allowed) rather than a condition.
    measure: bool,
    time_tz: Option<Arc<str>>,
}

impl Cx<'_> {
    fn var(&self, id: &sqlparser::ast::Ident) -> Option<usize> {
        let n = id.value.to_uppercase();
        self.vars.iter().position(|v| *v == n)
    }

    fn col(&self, id: &sqlparser::ast::Ident) -> Result<(usize, DataType)> {
        let name = normalize_ident(id);
        match self.input.index_of(&name) {
            Ok(i) => Ok((i, self.input.field(i).data_type().clone())),
            Err(_) => plan_err!("MATCH_RECOGNIZE: no column {name} in its input"),
        }
    }

    fn expr(&self, e: &Expr) -> Result<(MExpr, DataType)> {
        Ok(match e {
            Expr::Nested(x) => self.expr(x)?,
            Expr::Identifier(id) => {
                let (col, ty) = self.col(id)?;
                (
                    MExpr::Col {
                        var: None,
                        col,
                        nav: Nav::Last(0),
                    },
                    ty,
                )
            }
            Expr::CompoundIdentifier(ids) if ids.len() == 2 => {
                let Some(var) = self.var(&ids[0]) else {
                    return plan_err!(
                        "MATCH_RECOGNIZE: {} is not a variable of the PATTERN (in {e})",
                        ids[0]
                    );
                };
                let (col, ty) = self.col(&ids[1])?;
                (
                    MExpr::Col {
                        var: Some(var),
                        col,
                        nav: Nav::Last(0),
                    },
                    ty,
                )
            }
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => match n.parse::<i64>() {
                    Ok(i) => (MExpr::Lit(V::Int(i)), DataType::Int64),
                    Err(_) => match n.parse::<f64>() {
                        Ok(f) => (MExpr::Lit(V::Float(f)), DataType::Float64),
                        Err(_) => return plan_err!("MATCH_RECOGNIZE: bad number {n}"),
                    },
                },
                Value::SingleQuotedString(s) => {
                    (MExpr::Lit(V::Str(s.as_str().into())), DataType::Utf8)
                }
                Value::Boolean(b) => (MExpr::Lit(V::Bool(*b)), DataType::Boolean),
                Value::Null => (MExpr::Lit(V::Null), DataType::Null),
                other => return not_supported!("MATCH_RECOGNIZE literal {other}"),
            },
            Expr::BinaryOp { left, op, right } => {
                let (l, lt) = self.expr(left)?;
                let (r, rt) = self.expr(right)?;
                let (op, ty) = match op {
                    BinaryOperator::Plus => (Op::Add, arith(&lt, &rt)),
                    BinaryOperator::Minus => (Op::Sub, arith(&lt, &rt)),
                    BinaryOperator::Multiply => (Op::Mul, arith(&lt, &rt)),
                    BinaryOperator::Divide => (Op::Div, arith(&lt, &rt)),
                    BinaryOperator::Modulo => (Op::Mod, arith(&lt, &rt)),
                    BinaryOperator::Eq => (Op::Eq, DataType::Boolean),
                    BinaryOperator::NotEq => (Op::NotEq, DataType::Boolean),
                    BinaryOperator::Lt => (Op::Lt, DataType::Boolean),
                    BinaryOperator::LtEq => (Op::LtEq, DataType::Boolean),
                    BinaryOperator::Gt => (Op::Gt, DataType::Boolean),
                    BinaryOperator::GtEq => (Op::GtEq, DataType::Boolean),
                    BinaryOperator::And => (Op::And, DataType::Boolean),
                    BinaryOperator::Or => (Op::Or, DataType::Boolean),
                    other => return not_supported!("MATCH_RECOGNIZE operator {other}"),
                };
                (MExpr::Bin(op, Box::new(l), Box::new(r)), ty)
            }
            Expr::UnaryOp { op, expr } => {
                let (x, ty) = self.expr(expr)?;
                match op {
                    UnaryOperator::Not => (MExpr::Not(Box::new(x)), DataType::Boolean),
                    UnaryOperator::Minus => (MExpr::Neg(Box::new(x)), ty),
                    UnaryOperator::Plus => (x, ty),
                    other => return not_supported!("MATCH_RECOGNIZE operator {other}"),
                }
            }
            Expr::IsNull(x) => (
                MExpr::IsNull(Box::new(self.expr(x)?.0), false),
                DataType::Boolean,
            ),
            Expr::IsNotNull(x) => (
                MExpr::IsNull(Box::new(self.expr(x)?.0), true),
                DataType::Boolean,
            ),
            Expr::Function(f) => self.function(f, e)?,
            other => return not_supported!("MATCH_RECOGNIZE expression {other}"),
        })
    }

    fn function(&self, f: &sqlparser::ast::Function, e: &Expr) -> Result<(MExpr, DataType)> {
        let name = f.name.to_string().to_uppercase();
        let args: Vec<&FunctionArg> = match &f.args {
            FunctionArguments::List(l) => l.args.iter().collect(),
            FunctionArguments::None => vec![],
            FunctionArguments::Subquery(_) => {
                return not_supported!("MATCH_RECOGNIZE subqueries ({e})");
            }
        };
        let arg = |i: usize| -> Result<&Expr> {
            match args.get(i) {
                Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(x))) => Ok(x),
                _ => plan_err!("MATCH_RECOGNIZE {name}: expected an argument ({e})"),
            }
        };
        let offset = || -> Result<usize> {
            match args.get(1) {
                None => Ok(0),
                Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) => match &v.value
                {
                    Value::Number(n, _) => n.parse::<usize>().map_err(|_| {
                        Error::Plan(format!("{name}: the offset must be a whole number"))
                    }),
                    _ => plan_err!("{name}: the offset must be a whole number"),
                },
                _ => plan_err!("{name}: the offset must be a whole number"),
            }
        };
        Ok(match name.as_str() {
            "LAST" | "FIRST" | "PREV" => {
                let (x, ty) = self.expr(arg(0)?)?;
                let MExpr::Col { var, col, .. } = x else {
                    return not_supported!("{name} of an expression ({e}): of a column is");
                };
                let n = offset()?;
                let nav = match name.as_str() {
                    "LAST" => Nav::Last(n),
                    "FIRST" => Nav::First(n),
                    _ => Nav::Prev(if args.len() > 1 { n } else { 1 }),
                };
                (MExpr::Col { var, col, nav }, ty)
            }
            "COUNT" | "SUM" | "AVG" | "MIN" | "MAX" => {
                let f_ = match name.as_str() {
                    "COUNT" => Agg::Count,
                    "SUM" => Agg::Sum,
                    "AVG" => Agg::Avg,
                    "MIN" => Agg::Min,
                    _ => Agg::Max,
                };
                let (var, col, ty) = match args.first() {
                    Some(FunctionArg::Unnamed(FunctionArgExpr::Wildcard)) if f_ == Agg::Count => {
                        (None, None, DataType::Int64)
                    }
                    Some(FunctionArg::Unnamed(FunctionArgExpr::QualifiedWildcard(v)))
                        if f_ == Agg::Count =>
                    {
                        let id = v.0.last().and_then(|p| p.as_ident()).cloned();
                        let var = id.as_ref().and_then(|i| self.var(i));
                        if var.is_none() {
                            return plan_err!("COUNT({v}.*): {v} is not a variable of the PATTERN");
                        }
                        (var, None, DataType::Int64)
                    }
                    _ => {
                        let (x, ty) = self.expr(arg(0)?)?;
                        let MExpr::Col {
                            var,
                            col,
                            nav: Nav::Last(0),
                        } = x
                        else {
                            return not_supported!("{name} of an expression ({e}): of a column is");
                        };
                        (var, Some(col), ty)
                    }
                };
                let ty = match f_ {
                    Agg::Count => DataType::Int64,
                    Agg::Avg => DataType::Float64,
                    Agg::Sum if ty.is_integer() => DataType::Int64,
                    Agg::Sum => DataType::Float64,
                    _ => ty,
                };
                (MExpr::Agg { f: f_, var, col }, ty)
            }
            "MATCH_ROWTIME" if self.measure && args.is_empty() => (
                MExpr::MatchRowtime,
                DataType::Timestamp(TimeUnit::Millisecond, self.time_tz.clone()),
            ),
            _ => return not_supported!("function {name} in MATCH_RECOGNIZE ({e})"),
        })
    }
}

/// The type of arithmetic on `l` and `r`: BIGINT on integers (and timestamp differences in
/// milliseconds), else DOUBLE.
fn arith(l: &DataType, r: &DataType) -> DataType {
    let int =
        |t: &DataType| t.is_integer() || matches!(t, DataType::Timestamp(..) | DataType::Null);
    if int(l) && int(r) {
        DataType::Int64
    } else {
        DataType::Float64
    }
}
