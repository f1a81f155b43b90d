//! [`WeirDialect`]: the sqlparser dialect for Flink-compatible SQL.
//!
//! Stock dialects reject `TABLE t` and `TABLE t PARTITION BY k` as arguments of a window
//! table-valued function. This dialect's `parse_prefix` turns them into a placeholder
//! expression ([`TABLE_ARG_MARKER`]) that the planner's rewriter recognises, so
//! `TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))` parses with no fork.
//!
//! Through the same hooks it reads two Flink forms stock dialects reject:
//! - `CASE x WHEN 1, 2 THEN …`: several values per WHEN, read as `x IN (1, 2)`;
//! - `x [NOT] BETWEEN SYMMETRIC a AND b`: the bounds in either order;
//! - `JSON_OBJECT([KEY] k VALUE v, … [NULL | ABSENT ON NULL])` and
//!   `JSON_ARRAY(v, … [NULL | ABSENT ON NULL])`: calls of weir's JSON functions
//!   ([`crate::functions::rowwise`]), the ON NULL behaviour chosen by name;
//! - `JSON_OBJECTAGG([KEY] k VALUE v [… ON NULL])` and `JSON_ARRAYAGG(v [… ON NULL])`: calls of
//!   weir's JSON aggregates ([`crate::functions::json_agg`]);
//! - `x IS [NOT] JSON [VALUE | SCALAR | ARRAY | OBJECT]`: a call of `weir_is_json(x, kind)`.

use sqlparser::ast::{Expr, Ident};
use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// First part of the compound identifier that stands for a `TABLE name [PARTITION BY ...]`
/// function argument: `__weir_table.<name>.<partition key>...`.
pub const TABLE_ARG_MARKER: &str = "__weir_table";

/// Flink-compatible SQL dialect: backquoted or double-quoted identifiers, `FILTER (WHERE ...)`
/// on aggregates, `FOR SYSTEM_TIME AS OF`, and `TABLE t` arguments of window functions.
#[derive(Debug, Default)]
pub struct WeirDialect;

impl Dialect for WeirDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_' || ch == '$'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_' || ch == '$'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '"' || ch == '`'
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }

    fn supports_table_versioning(&self) -> bool {
        true
    }

    fn supports_match_recognize(&self) -> bool {
        true
    }

    fn supports_group_by_expr(&self) -> bool {
        true
    }

    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &Expr,
        _precedence: u8,
    ) -> Option<Result<Expr, ParserError>> {
        let word = |n: usize, kw: Keyword| matches!(&parser.peek_nth_token(n).token, Token::Word(w) if w.keyword == kw);
        if word(0, Keyword::IS) {
            let not = word(1, Keyword::NOT);
            if word(1 + usize::from(not), Keyword::JSON) {
                for _ in 0..2 + usize::from(not) {
                    parser.next_token();
                }
                return Some(parse_is_json(parser, expr, not));
            }
            return None;
        }
        let negated = word(0, Keyword::NOT);
        let at = usize::from(negated);
        if !(word(at, Keyword::BETWEEN) && word(at + 1, Keyword::SYMMETRIC)) {
            return None;
        }
        for _ in 0..at + 2 {
            parser.next_token();
        }
        Some(parse_between_symmetric(parser, expr, negated))
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        if matches!(&parser.peek_token().token, Token::Word(w) if w.keyword == Keyword::CASE) {
            parser.next_token();
            return Some(parse_case(parser));
        }
        let json = match &parser.peek_token().token {
            Token::Word(w) if w.quote_style.is_none() => {
                match w.value.to_ascii_uppercase().as_str() {
                    "JSON_OBJECT" => Some(true),
                    "JSON_ARRAY" => Some(false),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(object) = json
            && parser.peek_nth_token(1).token == Token::LParen
        {
            parser.next_token();
            parser.next_token();
            return Some(parse_json_constructor(parser, object));
        }
        let json_value = matches!(&parser.peek_token().token,
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("JSON_VALUE"));
        if json_value && parser.peek_nth_token(1).token == Token::LParen {
            parser.next_token();
            parser.next_token();
            return Some(parse_json_value(parser));
        }
        let agg = match &parser.peek_token().token {
            Token::Word(w) if w.quote_style.is_none() => {
                match w.value.to_ascii_uppercase().as_str() {
                    "JSON_OBJECTAGG" => Some(true),
                    "JSON_ARRAYAGG" => Some(false),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(object) = agg
            && parser.peek_nth_token(1).token == Token::LParen
        {
            parser.next_token();
            parser.next_token();
            return Some(parse_json_aggregate(parser, object));
        }
        // `TABLE name` where an expression is expected: only valid as a window TVF argument.
        let is_table_arg = matches!(&parser.peek_token().token, Token::Word(w) if w.keyword == Keyword::TABLE)
            && matches!(&parser.peek_nth_token(1).token, Token::Word(_));
        if !is_table_arg {
            return None;
        }
        parser.next_token();
        Some(parse_table_arg(parser))
    }
}

/// `x BETWEEN SYMMETRIC a AND b`: `x BETWEEN a AND b OR x BETWEEN b AND a` (negated: neither).
fn parse_between_symmetric(
    parser: &mut Parser,
    expr: &Expr,
    negated: bool,
) -> Result<Expr, ParserError> {
    let prec = WeirDialect.prec_value(sqlparser::dialect::Precedence::Between);
    let low = parser.parse_subexpr(prec)?;
    parser.expect_keyword_is(Keyword::AND)?;
    let high = parser.parse_subexpr(prec)?;
    let between = |low: &Expr, high: &Expr| Expr::Between {
        expr: Box::new(expr.clone()),
        negated,
        low: Box::new(low.clone()),
        high: Box::new(high.clone()),
    };
    let op = if negated {
        sqlparser::ast::BinaryOperator::And
    } else {
        sqlparser::ast::BinaryOperator::Or
    };
    Ok(Expr::Nested(Box::new(Expr::BinaryOp {
        left: Box::new(between(&low, &high)),
        op,
        right: Box::new(between(&high, &low)),
    })))
}

/// `CASE [operand] WHEN v1 [, v2 …] THEN r … [ELSE e] END`: with an operand, a WHEN with several
/// values matches any of them (Flink's form).
fn parse_case(parser: &mut Parser) -> Result<Expr, ParserError> {
    use sqlparser::ast::helpers::attached_token::AttachedToken;
    let operand = if parser.peek_keyword(Keyword::WHEN) {
        None
    } else {
        Some(parser.parse_expr()?)
    };
    let mut conditions = vec![];
    parser.expect_keyword_is(Keyword::WHEN)?;
    loop {
        let values = parser.parse_comma_separated(Parser::parse_expr)?;
        parser.expect_keyword_is(Keyword::THEN)?;
        let result = parser.parse_expr()?;
        let condition = match (&operand, values.as_slice()) {
            (None, [c]) => c.clone(),
            (None, _) => {
                return parser.expected(
                    "THEN (several values need CASE x WHEN …)",
                    parser.peek_token(),
                );
            }
            (Some(x), [v]) => Expr::BinaryOp {
                left: Box::new(x.clone()),
                op: sqlparser::ast::BinaryOperator::Eq,
                right: Box::new(v.clone()),
            },
            (Some(x), _) => Expr::InList {
                expr: Box::new(x.clone()),
                list: values.clone(),
                negated: false,
            },
        };
        conditions.push(sqlparser::ast::CaseWhen { condition, result });
        if !parser.parse_keyword(Keyword::WHEN) {
            break;
        }
    }
    let else_result = if parser.parse_keyword(Keyword::ELSE) {
        Some(Box::new(parser.parse_expr()?))
    } else {
        None
    };
    parser.expect_keyword_is(Keyword::END)?;
    Ok(Expr::Case {
        case_token: AttachedToken::empty(),
        end_token: AttachedToken::empty(),
        operand: None,
        conditions,
        else_result,
    })
}

fn parse_table_arg(parser: &mut Parser) -> Result<Expr, ParserError> {
    let name = parser.parse_object_name(false)?;
    let table = name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .cloned()
        .ok_or_else(|| {
            ParserError::ParserError(format!("Expected: a table name after TABLE, found: {name}"))
        })?;
    let mut parts = vec![Ident::new(TABLE_ARG_MARKER), table];
    if parser.parse_keywords(&[Keyword::PARTITION, Keyword::BY]) {
        if parser.consume_token(&Token::LParen) {
            parts.extend(parser.parse_comma_separated(|p| p.parse_identifier())?);
            parser.expect_token(&Token::RParen)?;
        } else {
            parts.push(parser.parse_identifier()?);
        }
    }
    Ok(Expr::CompoundIdentifier(parts))
}

/// The rest of `JSON_OBJECT(` / `JSON_ARRAY(`: the entries, an optional ON NULL clause and
/// `)`, as a call of the weir function for that ON NULL behaviour (JSON_OBJECT keeps NULLs by
/// default, JSON_ARRAY drops them, as in Flink).
fn parse_json_constructor(parser: &mut Parser, object: bool) -> Result<Expr, ParserError> {
    let mut args: Vec<Expr> = vec![];
    let mut keep_nulls = object;
    if !parser.consume_token(&Token::RParen) {
        loop {
            if let Some(keep) = parse_on_null(parser) {
                keep_nulls = keep;
                break;
            }
            if object {
                let _ = parser.parse_keyword(Keyword::KEY);
                args.push(parser.parse_expr()?);
                if !parser.parse_keyword(Keyword::VALUE) {
                    parser.expect_token(&Token::Colon)?;
                }
            }
            args.push(parser.parse_expr()?);
            if !parser.consume_token(&Token::Comma) {
                if let Some(keep) = parse_on_null(parser) {
                    keep_nulls = keep;
                }
                break;
            }
        }
        parser.expect_token(&Token::RParen)?;
    }
    use crate::functions::rowwise as json;
    let name = match (object, keep_nulls) {
        (true, true) => json::JSON_OBJECT,
        (true, false) => json::JSON_OBJECT_ABSENT,
        (false, true) => json::JSON_ARRAY_NULL,
        (false, false) => json::JSON_ARRAY,
    };
    // The first argument marks the values that are JSON already (a nested JSON_OBJECT or
    // JSON_ARRAY): '1' per such value, '0' per other.
    let values = args
        .iter()
        .skip(usize::from(object))
        .step_by(1 + usize::from(object));
    let mask: String = values
        .map(|v| if is_json_constructor(v) { '1' } else { '0' })
        .collect();
    let mut all = vec![Expr::Value(
        sqlparser::ast::Value::SingleQuotedString(mask).into(),
    )];
    all.extend(args);
    Ok(call(name, all))
}

/// The rest of `JSON_OBJECTAGG(` (`[KEY] k VALUE v`) or `JSON_ARRAYAGG(` (`v`), with an
/// optional ON NULL clause: a call of weir's aggregate for that ON NULL behaviour, whose first
/// argument says whether the value is JSON text from a nested constructor.
fn parse_json_aggregate(parser: &mut Parser, object: bool) -> Result<Expr, ParserError> {
    use crate::functions::json_agg as agg;
    let mut args = vec![];
    if object {
        let _ = parser.parse_keyword(Keyword::KEY);
        args.push(parser.parse_expr()?);
        if !parser.parse_keyword(Keyword::VALUE) {
            parser.expect_token(&Token::Colon)?;
        }
    }
    let value = parser.parse_expr()?;
    let raw = is_json_constructor(&value);
    args.push(value);
    let keep_nulls = parse_on_null(parser).unwrap_or(object);
    parser.expect_token(&Token::RParen)?;
    let name = match (object, keep_nulls) {
        (true, true) => agg::JSON_OBJECTAGG,
        (true, false) => agg::JSON_OBJECTAGG_ABSENT,
        (false, true) => agg::JSON_ARRAYAGG_NULL,
        (false, false) => agg::JSON_ARRAYAGG,
    };
    let mut all = vec![Expr::Value(sqlparser::ast::Value::Boolean(raw).into())];
    all.extend(args);
    Ok(call(name, all))
}

/// What `JSON_VALUE` gives when nothing is found (ON EMPTY) or on an error (ON ERROR).
enum OnJson {
    Null,
    Error,
    Default(Box<Expr>),
}

/// The rest of `JSON_VALUE(`: `doc, path [RETURNING type] [{NULL | ERROR | DEFAULT e} ON
/// EMPTY] [{NULL | ERROR | DEFAULT e} ON ERROR)`. Without clauses, a call of `json_value`;
/// with them, `CASE weir_json_value_status(…) WHEN 0 THEN TRY_CAST(json_value(doc, path) AS
/// type) WHEN 1 THEN <on empty> WHEN 2 THEN <on error> END` (see
/// [`crate::functions::rowwise::JSON_VALUE_STATUS`]).
fn parse_json_value(parser: &mut Parser) -> Result<Expr, ParserError> {
    use sqlparser::ast::{CaseWhen, CastKind, DataType, helpers::attached_token::AttachedToken};
    let doc = parser.parse_expr()?;
    parser.expect_token(&Token::Comma)?;
    let path = parser.parse_expr()?;
    let returning = if parser.parse_keyword(Keyword::RETURNING) {
        Some(parser.parse_data_type()?)
    } else {
        None
    };
    let (mut on_empty, mut on_error) = (OnJson::Null, OnJson::Null);
    loop {
        let behaviour = if parser.parse_keyword(Keyword::NULL) {
            OnJson::Null
        } else if parser.parse_keyword(Keyword::ERROR) {
            OnJson::Error
        } else if parser.parse_keyword(Keyword::DEFAULT) {
            OnJson::Default(Box::new(parser.parse_expr()?))
        } else {
            break;
        };
        parser.expect_keyword_is(Keyword::ON)?;
        if parser.parse_keyword(Keyword::EMPTY) {
            on_empty = behaviour;
        } else if parser.parse_keyword(Keyword::ERROR) {
            on_error = behaviour;
        } else {
            return parser.expected("EMPTY or ERROR", parser.peek_token());
        }
    }
    parser.expect_token(&Token::RParen)?;
    let value = call("json_value", vec![doc.clone(), path.clone()]);
    let plain = |b: &OnJson| matches!(b, OnJson::Null);
    if returning.is_none() && plain(&on_empty) && plain(&on_error) {
        return Ok(value);
    }
    let ty = returning.unwrap_or(DataType::String(None));
    let cast = |e: Expr, kind: CastKind| Expr::Cast {
        kind,
        expr: Box::new(e),
        data_type: ty.clone(),
        array: false,
        format: None,
    };
    let null = || Expr::Value(sqlparser::ast::Value::Null.into());
    let flag =
        |b: &OnJson| Expr::Value(sqlparser::ast::Value::Boolean(matches!(b, OnJson::Error)).into());
    let status = call(
        crate::functions::rowwise::JSON_VALUE_STATUS,
        vec![
            doc,
            path,
            cast(null(), CastKind::Cast),
            flag(&on_empty),
            flag(&on_error),
        ],
    );
    let when = |code: u8, result: Expr| CaseWhen {
        condition: Expr::Value(sqlparser::ast::Value::Number(code.to_string(), false).into()),
        result,
    };
    let mut conditions = vec![when(0, cast(value, CastKind::TryCast))];
    for (code, b) in [(1, on_empty), (2, on_error)] {
        if let OnJson::Default(e) = b {
            conditions.push(when(code, cast(*e, CastKind::Cast)));
        }
    }
    Ok(Expr::Case {
        case_token: AttachedToken::empty(),
        end_token: AttachedToken::empty(),
        operand: Some(Box::new(status)),
        conditions,
        else_result: None,
    })
}

/// `NULL ON NULL` (Some(true): keep NULLs) or `ABSENT ON NULL` (Some(false)), if next.
fn parse_on_null(parser: &mut Parser) -> Option<bool> {
    for (kw, keep) in [(Keyword::NULL, true), (Keyword::ABSENT, false)] {
        if parser.parse_keywords(&[kw, Keyword::ON, Keyword::NULL]) {
            return Some(keep);
        }
    }
    None
}

/// Whether `e` is a call of one of weir's JSON constructors (its value is JSON text).
fn is_json_constructor(e: &Expr) -> bool {
    matches!(e, Expr::Function(f)
        if crate::functions::rowwise::JSON_CONSTRUCTORS.contains(&f.name.to_string().as_str()))
}

/// `x IS [NOT] JSON [VALUE | SCALAR | ARRAY | OBJECT]` after `IS [NOT] JSON`.
fn parse_is_json(parser: &mut Parser, expr: &Expr, negated: bool) -> Result<Expr, ParserError> {
    let kind = match &parser.peek_token().token {
        Token::Word(w)
            if w.quote_style.is_none()
                && matches!(
                    w.value.to_ascii_uppercase().as_str(),
                    "VALUE" | "SCALAR" | "ARRAY" | "OBJECT"
                ) =>
        {
            let k = w.value.to_ascii_uppercase();
            parser.next_token();
            k
        }
        _ => "VALUE".to_string(),
    };
    let test = call(
        crate::functions::rowwise::IS_JSON,
        vec![
            expr.clone(),
            Expr::Value(sqlparser::ast::Value::SingleQuotedString(kind).into()),
        ],
    );
    Ok(if negated {
        Expr::UnaryOp {
            op: sqlparser::ast::UnaryOperator::Not,
            expr: Box::new(Expr::Nested(Box::new(test))),
        }
    } else {
        test
    })
}

/// A plain call `name(args…)`.
fn call(name: &str, args: Vec<Expr>) -> Expr {
    use sqlparser::ast::{
        Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments,
        ObjectName, ObjectNamePart,
    };
    Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}
