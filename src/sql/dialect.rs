//! [`WeirDialect`]: the sqlparser dialect for Flink-compatible SQL.
//!
//! Stock dialects reject `TABLE t` and `TABLE t PARTITION BY k` as arguments of a window
//! table-valued function. This dialect's `parse_prefix` turns them into a placeholder
//! expression ([`TABLE_ARG_MARKER`]) that the planner's rewriter recognises, so
//! `TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))` parses with no fork.

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

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
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
