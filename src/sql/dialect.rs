//! [`WeirDialect`]: the sqlparser dialect for Flink-compatible SQL.
//!
//! Stock dialects reject `TABLE t` and `TABLE t PARTITION BY k` as arguments of a window
//! table-valued function. This dialect's `parse_prefix` turns them into a placeholder
//! expression ([`TABLE_ARG_MARKER`]) that the planner's rewriter recognises, so
//! `TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))` parses with no fork.
//!
//! Through the same hooks it reads two Flink forms stock dialects reject:
//! - `CASE x WHEN 1, 2 THEN …`: several values per WHEN, read as `x IN (1, 2)`;
//! - `x [NOT] BETWEEN SYMMETRIC a AND b`: the bounds in either order.

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
