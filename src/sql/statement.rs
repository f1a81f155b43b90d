//! weir's statements and their parser: sqlparser (with [`WeirDialect`]) for queries and
//! INSERT, plus weir's own parsing of `CREATE TABLE` (WATERMARK, PARTITIONED BY, WITH),
//! `CREATE VIEW`, `SET`, `SHOW TABLES`, `DESCRIBE`, `EXPLAIN` and `DROP`.
//!
//! Every statement remembers the line and column where it starts, so that planning errors can
//! point at it; parse errors carry sqlparser's "Line: N, Column: M".

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::DataType;
use sqlparser::ast::{Expr, Ident, Query, Statement as SqlStatement};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token};

use super::dialect::WeirDialect;
use super::interval::interval_ms;
use super::types::{sql_to_arrow, timestamp_type};
use crate::{Error, Result};

/// A column of a `CREATE TABLE`.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    /// Normalised name (unquoted identifiers are lower-cased).
    pub name: String,
    /// The name as written, used to find the field in data (JSON keys, file columns).
    pub declared: String,
    /// Arrow type.
    pub data_type: DataType,
    /// False for `NOT NULL` columns.
    pub nullable: bool,
    /// `METADATA [FROM 'key'] [VIRTUAL]`: filled from the record's metadata (a Kinesis
    /// record's shard id, a Kafka message's offset), not from its payload.
    pub metadata: Option<MetadataColumn>,
}

/// A metadata column's key and whether it is read-only (`VIRTUAL`, never written by a sink).
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataColumn {
    /// The connector's metadata key (the column name when `FROM` is omitted).
    pub key: String,
    /// `VIRTUAL`: read only.
    pub is_virtual: bool,
}

/// `WATERMARK FOR column AS column - INTERVAL ...`
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkDef {
    /// The event-time column.
    pub column: String,
    /// How far the watermark trails the largest event time seen, in milliseconds.
    pub delay_ms: i64,
}

/// A computed column: `name AS expr`, evaluated on each row after decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputedColumn {
    /// Normalised name.
    pub name: String,
    /// Position among all columns (physical and computed) as declared.
    pub position: usize,
    /// The expression over the physical columns.
    pub expr: Expr,
}

/// A parsed `CREATE TABLE`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    /// Normalised table name.
    pub name: String,
    /// Physical columns in declaration order.
    pub columns: Vec<ColumnDef>,
    /// Computed columns (`name AS expr`).
    pub computed: Vec<ComputedColumn>,
    /// Event-time attribute and its watermark strategy.
    pub watermark: Option<WatermarkDef>,
    /// `WITH (...)` options, keys lower-cased.
    pub options: BTreeMap<String, String>,
    /// `PARTITIONED BY (...)` columns.
    pub partitioned_by: Vec<String>,
    /// `PRIMARY KEY (...) NOT ENFORCED` columns.
    pub primary_key: Vec<String>,
    /// `IF NOT EXISTS` was given.
    pub if_not_exists: bool,
}

/// A parsed `CREATE VIEW`.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewDef {
    /// Normalised view name.
    pub name: String,
    /// The view's query.
    pub query: Box<Query>,
    /// `IF NOT EXISTS` was given.
    pub if_not_exists: bool,
}

/// One weir statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `CREATE TABLE`
    CreateTable(TableDef),
    /// `CREATE [TEMPORARY] VIEW`
    CreateView(ViewDef),
    /// `INSERT INTO sink SELECT ...` (the sqlparser statement, planned by DataFusion).
    Insert {
        /// Normalised sink table name.
        table: String,
        /// The whole INSERT statement.
        statement: Box<SqlStatement>,
    },
    /// A continuous `SELECT` whose rows go to the caller.
    Query(Box<Query>),
    /// `SET 'key' = 'value'`, or `SET` alone (key `None`) to list the settings.
    Set {
        /// Option key.
        key: Option<String>,
        /// Option value.
        value: String,
    },
    /// `RESET 'key'` or `RESET`.
    Reset(Option<String>),
    /// `SHOW TABLES`
    ShowTables,
    /// `SHOW VIEWS`
    ShowViews,
    /// `DESCRIBE t`
    Describe(String),
    /// `EXPLAIN <query or insert>`
    Explain(Box<Statement>),
    /// `DROP TABLE | VIEW [IF EXISTS] name`
    Drop {
        /// Normalised name.
        name: String,
        /// `IF EXISTS`
        if_exists: bool,
        /// A view rather than a table.
        view: bool,
    },
}

/// A statement with the position where it starts in the submitted text.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    /// The statement.
    pub statement: Statement,
    /// 1-based line of its first token.
    pub line: u64,
    /// 1-based column of its first token.
    pub column: u64,
    /// The other INSERTs of the statement set this INSERT opens (empty otherwise): the set
    /// runs as one job, reading each of its sources once.
    pub set: Vec<Located>,
}

impl Located {
    /// " at Line: N, Column: M" for error messages.
    pub fn position(&self) -> String {
        format!(
            " (statement at Line: {}, Column: {})",
            self.line, self.column
        )
    }
}

/// Normalise an identifier the way Flink does: unquoted ones are case-insensitive.
pub fn normalize_ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn err_at(msg: impl std::fmt::Display, loc: Location) -> ParserError {
    ParserError::ParserError(format!("{msg}{loc}"))
}

/// Parse a script of `;`-separated statements.
pub fn parse_sql(sql: &str) -> Result<Vec<Located>> {
    let dialect = WeirDialect;
    let tokens = sqlparser::tokenizer::Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))?;
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(within_to_define(tokens));
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        let start = parser.peek_token();
        if start.token == Token::EOF {
            break;
        }
        match parse_statement_set(&mut parser)? {
            // A statement set: one job (see `parse_statement_set`).
            Some(mut inserts) => {
                let mut first = inserts.remove(0);
                first.set = inserts;
                out.push(first);
            }
            None => {
                let statement = parse_statement(&mut parser)?;
                out.push(Located {
                    statement,
                    line: start.span.start.line,
                    column: start.span.start.column,
                    set: vec![],
                });
            }
        }
        let next = parser.peek_token();
        if next.token != Token::EOF && !parser.consume_token(&Token::SemiColon) {
            return Err(Error::Sql(format!(
                "Expected: ';' or end of input, found: {}{}",
                next.token, next.span.start
            )));
        }
    }
    Ok(out)
}

/// The symbol under which a MATCH_RECOGNIZE's `WITHIN` interval reaches the planner.
pub const WITHIN_SYMBOL: &str = "__weir_within";

/// Flink's `PATTERN (…) WITHIN INTERVAL '…' unit` in MATCH_RECOGNIZE, which sqlparser does not
/// parse: the interval is moved to the front of the DEFINE list that follows, as the
/// definition of [`WITHIN_SYMBOL`] (the planner takes it from there).
fn within_to_define(
    mut tokens: Vec<sqlparser::tokenizer::TokenWithSpan>,
) -> Vec<sqlparser::tokenizer::TokenWithSpan> {
    use sqlparser::tokenizer::{TokenWithSpan, Whitespace};
    let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|i| !matches!(tokens[*i].token, Token::Whitespace(_)))
        .collect();
    let mut k = 0;
    while k + 3 < significant.len() {
        let at = |j: usize| &tokens[significant[k + j]].token;
        let is_within = word(at(0), "WITHIN")
            && word(at(1), "INTERVAL")
            && matches!(at(2), Token::SingleQuotedString(_))
            && matches!(at(3), Token::Word(_))
            && k > 0
            && matches!(tokens[significant[k - 1]].token, Token::RParen);
        let define =
            (k + 4..significant.len()).find(|j| word(&tokens[significant[*j]].token, "DEFINE"));
        let (true, Some(define)) = (is_within, define) else {
            k += 1;
            continue;
        };
        let span = tokens[significant[k]].span;
        let moved: Vec<Token> = (1..4).map(|j| at(j).clone()).collect();
        for j in 0..4 {
            tokens[significant[k + j]].token = Token::Whitespace(Whitespace::Space);
        }
        let mut inserted = vec![
            Token::make_word(WITHIN_SYMBOL, None),
            Token::Whitespace(Whitespace::Space),
            Token::make_keyword("AS"),
            Token::Whitespace(Whitespace::Space),
        ];
        for t in moved {
            inserted.push(t);
            inserted.push(Token::Whitespace(Whitespace::Space));
        }
        inserted.push(Token::Comma);
        let after = significant[define] + 1;
        tokens.splice(
            after..after,
            inserted
                .into_iter()
                .map(|token| TokenWithSpan { token, span }),
        );
        return within_to_define(tokens);
    }
    tokens
}

/// Whether `text` holds at least one complete statement: used by the REPL to decide when a
/// multi-line entry is finished (a `;` outside quotes and comments, or a backslash command).
pub fn is_complete(text: &str) -> bool {
    let t = text.trim();
    if t.starts_with('\\') {
        return true;
    }
    let dialect = WeirDialect;
    match sqlparser::tokenizer::Tokenizer::new(&dialect, t).tokenize() {
        Ok(tokens) => {
            let mut significant = tokens
                .iter()
                .filter(|tok| !matches!(tok, Token::Whitespace(_)));
            let word = |tok: Option<&Token>, w: &str| matches!(tok, Some(Token::Word(x)) if x.value.eq_ignore_ascii_case(w));
            let first = [significant.next(), significant.next()];
            let mut last = tokens
                .iter()
                .rev()
                .filter(|tok| !matches!(tok, Token::Whitespace(_)));
            let (end, before) = (last.next(), last.next());
            // A statement set runs to its END.
            let set = (word(first[0], "EXECUTE") || word(first[0], "BEGIN"))
                && word(first[1], "STATEMENT");
            end == Some(&Token::SemiColon) && (!set || word(before, "END"))
        }
        Err(_) => t.ends_with(';'),
    }
}

/// Flink's statement sets, `EXECUTE STATEMENT SET BEGIN <insert>; … END` and
/// `BEGIN STATEMENT SET; <insert>; … END`: their INSERTs, in order. They run as one job, as in
/// Flink: each source table is read once for all of them. `None` when the next statement is
/// not a statement set.
fn parse_statement_set(p: &mut Parser) -> Result<Option<Vec<Located>>, ParserError> {
    let idx = p.index();
    let start = p.peek_token().span.start;
    let opened = if parse_word(p, "EXECUTE") {
        parse_word(p, "STATEMENT")
            && p.parse_keyword(Keyword::SET)
            && p.parse_keyword(Keyword::BEGIN)
    } else {
        p.parse_keyword(Keyword::BEGIN)
            && parse_word(p, "STATEMENT")
            && p.parse_keyword(Keyword::SET)
    };
    if !opened {
        while p.index() > idx {
            p.prev_token();
        }
        return Ok(None);
    }
    let mut inserts = vec![];
    loop {
        while p.consume_token(&Token::SemiColon) {}
        if p.parse_keyword(Keyword::END) {
            break;
        }
        let at = p.peek_token();
        if at.token == Token::EOF {
            return Err(err_at(
                "Expected: END closing the statement set, found: end of input",
                start,
            ));
        }
        let statement = parse_statement(p)?;
        if !matches!(statement, Statement::Insert { .. }) {
            return Err(err_at(
                "a statement set holds INSERT statements only",
                at.span.start,
            ));
        }
        inserts.push(Located {
            statement,
            line: at.span.start.line,
            column: at.span.start.column,
            set: vec![],
        });
    }
    if inserts.is_empty() {
        return Err(err_at("an empty statement set", start));
    }
    Ok(Some(inserts))
}

fn parse_statement(p: &mut Parser) -> Result<Statement, ParserError> {
    if p.parse_keyword(Keyword::EXPLAIN) {
        // Flink's EXPLAIN PLAN FOR is accepted too.
        let _ = p.parse_keywords(&[Keyword::PLAN, Keyword::FOR]);
        return Ok(Statement::Explain(Box::new(parse_statement(p)?)));
    }
    if p.peek_keyword(Keyword::CREATE) {
        let idx = p.index();
        p.next_token();
        let _ = p.parse_keyword(Keyword::TEMPORARY);
        if p.parse_keyword(Keyword::TABLE) {
            return parse_create_table(p).map(Statement::CreateTable);
        }
        if p.parse_keyword(Keyword::VIEW) {
            return parse_create_view(p).map(Statement::CreateView);
        }
        while p.index() > idx {
            p.prev_token();
        }
    }
    if p.parse_keyword(Keyword::SET) {
        return parse_set(p);
    }
    if p.parse_keyword(Keyword::RESET) {
        if p.peek_token().token == Token::EOF || p.peek_token().token == Token::SemiColon {
            return Ok(Statement::Reset(None));
        }
        return Ok(Statement::Reset(Some(parse_option_key(p)?)));
    }
    if p.parse_keywords(&[Keyword::SHOW, Keyword::TABLES]) {
        return Ok(Statement::ShowTables);
    }
    if p.parse_keywords(&[Keyword::SHOW, Keyword::VIEWS]) {
        return Ok(Statement::ShowViews);
    }
    if p.parse_keyword(Keyword::DESCRIBE) || p.parse_keyword(Keyword::DESC) {
        let _ = p.parse_keyword(Keyword::TABLE);
        return Ok(Statement::Describe(object_name(p)?));
    }
    if p.parse_keyword(Keyword::DROP) {
        let view = if p.parse_keyword(Keyword::TABLE) {
            false
        } else if p.parse_keyword(Keyword::VIEW) {
            true
        } else {
            return p.expected("TABLE or VIEW after DROP", p.peek_token());
        };
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        return Ok(Statement::Drop {
            name: object_name(p)?,
            if_exists,
            view,
        });
    }
    let start = p.peek_token();
    match p.parse_statement()? {
        SqlStatement::Query(q) => Ok(Statement::Query(q)),
        SqlStatement::Insert(ins) => {
            let table = match &ins.table {
                sqlparser::ast::TableObject::TableName(n) => last_ident(n),
                other => {
                    return Err(err_at(
                        format!("INSERT into {other} is not supported yet"),
                        start.span.start,
                    ));
                }
            };
            Ok(Statement::Insert {
                table,
                statement: Box::new(SqlStatement::Insert(ins)),
            })
        }
        other => {
            let kind = other.to_string();
            let kind: String = kind
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            Err(err_at(
                format!("not supported yet: {kind} statements"),
                start.span.start,
            ))
        }
    }
}

fn last_ident(name: &sqlparser::ast::ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(normalize_ident)
        .unwrap_or_default()
}

fn object_name(p: &mut Parser) -> Result<String, ParserError> {
    Ok(last_ident(&p.parse_object_name(false)?))
}

fn parse_option_key(p: &mut Parser) -> Result<String, ParserError> {
    let tok = p.next_token();
    match tok.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s),
        Token::Word(w) => {
            let mut key = w.value;
            while p.consume_token(&Token::Period) {
                key.push('.');
                key.push_str(&p.parse_identifier()?.value);
            }
            Ok(key)
        }
        _ => p.expected("an option key such as 'parallelism'", tok),
    }
}

fn parse_option_value(p: &mut Parser) -> Result<String, ParserError> {
    let tok = p.next_token();
    match tok.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s),
        Token::Number(n, _) => Ok(n),
        Token::Word(w) => Ok(w.value),
        _ => p.expected("an option value such as '4'", tok),
    }
}

fn parse_set(p: &mut Parser) -> Result<Statement, ParserError> {
    if matches!(p.peek_token().token, Token::EOF | Token::SemiColon) {
        return Ok(Statement::Set {
            key: None,
            value: String::new(),
        });
    }
    let key = parse_option_key(p)?;
    if !p.consume_token(&Token::Eq) && !p.parse_keyword(Keyword::TO) {
        return p.expected("'=' after the option key", p.peek_token());
    }
    Ok(Statement::Set {
        key: Some(key),
        value: parse_option_value(p)?,
    })
}

fn parse_create_view(p: &mut Parser) -> Result<ViewDef, ParserError> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = object_name(p)?;
    let columns = if p.consume_token(&Token::LParen) {
        let cols = p.parse_comma_separated(|p| p.parse_identifier())?;
        p.expect_token(&Token::RParen)?;
        cols
    } else {
        vec![]
    };
    p.expect_keyword(Keyword::AS)?;
    let mut query = p.parse_query()?;
    if !columns.is_empty() {
        // `CREATE VIEW v (a, b) AS q` names q's columns by position: `SELECT * FROM (q) AS
        // v (a, b)`.
        let cols: Vec<String> = columns.iter().map(ToString::to_string).collect();
        let text = format!(
            "SELECT * FROM ({query}) AS __weir_view ({})",
            cols.join(", ")
        );
        query = Parser::new(&WeirDialect)
            .try_with_sql(&text)?
            .parse_query()?;
    }
    Ok(ViewDef {
        name,
        query,
        if_not_exists,
    })
}

fn parse_create_table(p: &mut Parser) -> Result<TableDef, ParserError> {
    let start = p.peek_token().span.start;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = object_name(p)?;
    let mut def = TableDef {
        name,
        columns: vec![],
        computed: vec![],
        watermark: None,
        options: BTreeMap::new(),
        partitioned_by: vec![],
        primary_key: vec![],
        if_not_exists,
    };
    p.expect_token(&Token::LParen)?;
    loop {
        let tok = p.peek_token();
        if parse_word(p, "WATERMARK") {
            p.expect_keyword(Keyword::FOR)?;
            let column = normalize_ident(&p.parse_identifier()?);
            p.expect_keyword(Keyword::AS)?;
            let expr = p.parse_expr()?;
            let delay_ms =
                watermark_delay(&column, &expr).map_err(|e| err_at(e, tok.span.start))?;
            if def.watermark.is_some() {
                return Err(err_at(
                    "a table can declare only one WATERMARK",
                    tok.span.start,
                ));
            }
            def.watermark = Some(WatermarkDef { column, delay_ms });
        } else if p.parse_keyword(Keyword::CONSTRAINT) || p.peek_keyword(Keyword::PRIMARY) {
            if !p.peek_keyword(Keyword::PRIMARY) {
                p.parse_identifier()?; // constraint name
            }
            p.expect_keywords(&[Keyword::PRIMARY, Keyword::KEY])?;
            p.expect_token(&Token::LParen)?;
            def.primary_key = p
                .parse_comma_separated(|p| p.parse_identifier())?
                .iter()
                .map(normalize_ident)
                .collect();
            p.expect_token(&Token::RParen)?;
            let _ = p.parse_keywords(&[Keyword::NOT, Keyword::ENFORCED]);
        } else {
            parse_column(p, &mut def)?;
        }
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    p.expect_token(&Token::RParen)?;
    if p.parse_keyword(Keyword::COMMENT) {
        p.parse_literal_string()?;
    }
    if p.parse_keywords(&[Keyword::PARTITIONED, Keyword::BY]) {
        p.expect_token(&Token::LParen)?;
        def.partitioned_by = p
            .parse_comma_separated(|p| p.parse_identifier())?
            .iter()
            .map(normalize_ident)
            .collect();
        p.expect_token(&Token::RParen)?;
    }
    if p.parse_keyword(Keyword::WITH) {
        p.expect_token(&Token::LParen)?;
        let mut at = BTreeMap::new();
        if !p.consume_token(&Token::RParen) {
            loop {
                let loc = p.peek_token().span.start;
                let key = parse_option_key(p)?.to_ascii_lowercase();
                p.expect_token(&Token::Eq)?;
                let value = parse_option_value(p)?;
                at.insert(key.clone(), loc);
                def.options.insert(key, value);
                if !p.consume_token(&Token::Comma) {
                    break;
                }
            }
            p.expect_token(&Token::RParen)?;
        }
        // Each connector declares its options: a misspelt one is an error, not ignored.
        if let Err(e) = crate::connectors::options::check(&def.options) {
            let loc = at.get(&e.key).copied().unwrap_or(start);
            return Err(err_at(format!("table {}: {}", def.name, e.message), loc));
        }
    }
    if p.peek_keyword(Keyword::LIKE) {
        return Err(err_at(
            "not supported yet: CREATE TABLE ... LIKE",
            p.peek_token().span.start,
        ));
    }
    Ok(def)
}

/// Consume a non-reserved word such as WATERMARK.
fn parse_word(p: &mut Parser, word: &str) -> bool {
    if matches!(&p.peek_token().token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    {
        p.next_token();
        return true;
    }
    false
}

fn parse_column(p: &mut Parser, def: &mut TableDef) -> Result<(), ParserError> {
    let start = p.peek_token();
    let ident = p.parse_identifier()?;
    let name = normalize_ident(&ident);
    let declared = ident.value.clone();
    if p.parse_keyword(Keyword::AS) {
        let expr = p.parse_expr()?;
        if p.parse_keyword(Keyword::COMMENT) {
            p.parse_literal_string()?;
        }
        if def.columns.iter().any(|c| c.name == name) || def.computed.iter().any(|c| c.name == name)
        {
            return Err(err_at(
                format!("column `{name}` is declared twice"),
                start.span.start,
            ));
        }
        let position = def.columns.len() + def.computed.len();
        def.computed.push(ComputedColumn {
            name,
            position,
            expr,
        });
        return Ok(());
    }
    let data_type = parse_column_type(p)?;
    let mut nullable = true;
    let mut metadata = None;
    loop {
        let tok = p.peek_token();
        if p.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
            nullable = false;
        } else if p.parse_keyword(Keyword::NULL) {
            nullable = true;
        } else if p.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
            let _ = p.parse_keywords(&[Keyword::NOT, Keyword::ENFORCED]);
            def.primary_key = vec![name.clone()];
        } else if p.parse_keyword(Keyword::COMMENT) {
            p.parse_literal_string()?;
        } else if p.parse_keyword(Keyword::METADATA) {
            let _ = tok;
            let key = if p.parse_keyword(Keyword::FROM) {
                p.parse_literal_string()?
            } else {
                declared.clone()
            };
            let is_virtual = parse_word(p, "VIRTUAL");
            metadata = Some(MetadataColumn { key, is_virtual });
        } else {
            break;
        }
    }
    if def.columns.iter().any(|c| c.name == name) || def.computed.iter().any(|c| c.name == name) {
        return Err(err_at(
            format!("column `{name}` is declared twice"),
            start.span.start,
        ));
    }
    def.columns.push(ColumnDef {
        name,
        declared,
        data_type,
        nullable,
        metadata,
    });
    Ok(())
}

fn parse_column_type(p: &mut Parser) -> Result<DataType, ParserError> {
    let mut pending = false;
    let t = parse_nested_type(p, &mut pending)?;
    if pending {
        return p.expected("a type", p.peek_token());
    }
    Ok(t)
}

/// `ARRAY<T>` and `MAP<K, V>` (Flink's spellings, nesting allowed), else a plain type.
/// `pending` is set when a `>>` token closed this type and one more level.
fn parse_nested_type(p: &mut Parser, pending: &mut bool) -> Result<DataType, ParserError> {
    let tok = p.peek_token();
    if let Token::Word(w) = &tok.token
        && p.peek_nth_token(1).token == Token::Lt
    {
        let kind = w.value.to_ascii_uppercase();
        if kind == "ARRAY" || kind == "MAP" {
            p.next_token();
            p.next_token();
            let mut inner = vec![parse_nested_type(p, pending)?];
            if kind == "MAP" && !*pending {
                p.expect_token(&Token::Comma)?;
                inner.push(parse_nested_type(p, pending)?);
            }
            // Close this level: a `>`, or the second half of a `>>` an inner type began.
            if *pending {
                *pending = false;
            } else {
                match p.next_token().token {
                    Token::Gt => {}
                    Token::ShiftRight => *pending = true,
                    _ => return p.expected("'>'", p.peek_token()),
                }
            }
            return Ok(match (kind.as_str(), inner.as_slice()) {
                ("ARRAY", [e]) => DataType::List(std::sync::Arc::new(
                    datafusion::arrow::datatypes::Field::new_list_field(e.clone(), true),
                )),
                (_, [k, v]) => crate::sql::types::map_type(k.clone(), v.clone()),
                _ => return p.expected("MAP<key type, value type>", tok),
            });
        }
    }
    parse_plain_type(p)
}

fn parse_plain_type(p: &mut Parser) -> Result<DataType, ParserError> {
    let tok = p.peek_token();
    // Flink-only spellings first.
    if let Token::Word(w) = &tok.token {
        if w.value.eq_ignore_ascii_case("TIMESTAMP_LTZ") {
            p.next_token();
            let precision = parse_precision(p)?;
            return timestamp_type(precision, true).map_err(|e| err_at(e, tok.span.start));
        }
        if w.value.eq_ignore_ascii_case("STRING") {
            p.next_token();
            return Ok(DataType::Utf8);
        }
    }
    let sql_type = p.parse_data_type()?;
    if let sqlparser::ast::DataType::Timestamp(precision, _) = &sql_type
        && p.parse_keywords(&[Keyword::WITH, Keyword::LOCAL, Keyword::TIME, Keyword::ZONE])
    {
        return timestamp_type(*precision, true).map_err(|e| err_at(e, tok.span.start));
    }
    sql_to_arrow(&sql_type).map_err(|e| err_at(e, tok.span.start))
}

fn parse_precision(p: &mut Parser) -> Result<Option<u64>, ParserError> {
    if !p.consume_token(&Token::LParen) {
        return Ok(None);
    }
    let n = p.parse_literal_uint()?;
    p.expect_token(&Token::RParen)?;
    Ok(Some(n))
}

/// The delay of `ts - INTERVAL '4' SECOND` (or `ts` alone: no delay).
fn watermark_delay(column: &str, expr: &Expr) -> Result<i64> {
    use sqlparser::ast::BinaryOperator;
    let is_col = |e: &Expr| matches!(e, Expr::Identifier(i) if normalize_ident(i) == column);
    match expr {
        e if is_col(e) => Ok(0),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Minus,
            right,
        } if is_col(left) => {
            let ms = interval_ms(right)?;
            if ms < 0 {
                return crate::plan_err!("watermark delay must not be negative: {expr}");
            }
            Ok(ms)
        }
        Expr::Nested(inner) => watermark_delay(column, inner),
        _ => crate::not_supported!(
            "watermark expression {expr} (write WATERMARK FOR {column} AS {column} - INTERVAL '5' SECOND)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_create_table_with_watermark_and_options() {
        let sql = "CREATE TABLE Bid (auction BIGINT, price DECIMAL(10, 2) NOT NULL, `Channel` STRING,\n\
                   date_time TIMESTAMP(3), WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)\n\
                   PARTITIONED BY (auction) WITH ('connector' = 'filesystem', 'path' = '/tmp/x');";
        let stmts = parse_sql(sql).unwrap();
        let Statement::CreateTable(t) = &stmts[0].statement else {
            panic!("not a table")
        };
        assert_eq!(t.name, "bid");
        assert_eq!(t.columns[1].data_type, DataType::Decimal128(10, 2));
        assert!(!t.columns[1].nullable);
        assert_eq!(t.columns[2].name, "Channel");
        assert_eq!(
            t.watermark,
            Some(WatermarkDef {
                column: "date_time".into(),
                delay_ms: 4000
            })
        );
        assert_eq!(t.options["connector"], "filesystem");
        assert_eq!(t.partitioned_by, vec!["auction".to_string()]);
    }

    #[test]
    fn parses_window_tvf_with_table_argument() {
        let sql = "SELECT window_start, COUNT(*) FROM TABLE(\n  SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '10' SECOND))\nGROUP BY window_start";
        let stmts = parse_sql(sql).unwrap();
        assert!(matches!(stmts[0].statement, Statement::Query(_)));
        assert_eq!(stmts[0].line, 1);
    }

    #[test]
    fn errors_name_line_and_column() {
        let err = parse_sql("SET 'a' = '1';\nSELECT FROM WHERE;")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Line: 2"), "{err}");
        let err = parse_sql("CREATE TABLE t (a INT, WATERMARK FOR a AS a * 2)")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not supported yet") && err.contains("Line: 1"),
            "{err}"
        );
    }

    #[test]
    fn statement_completion() {
        assert!(is_complete("SELECT 1;"));
        assert!(!is_complete("SELECT ';'"));
        assert!(!is_complete("SELECT 1 -- ;"));
        assert!(is_complete("\\q"));
        // A statement set is complete at its END.
        assert!(!is_complete(
            "EXECUTE STATEMENT SET BEGIN INSERT INTO a SELECT 1;"
        ));
        assert!(is_complete(
            "EXECUTE STATEMENT SET BEGIN INSERT INTO a SELECT 1; INSERT INTO b SELECT 2; END;"
        ));
        assert!(!is_complete("BEGIN STATEMENT SET;"));
    }

    #[test]
    fn statement_sets_are_one_statement_of_inserts() {
        for sql in [
            "EXECUTE STATEMENT SET BEGIN INSERT INTO a SELECT * FROM t; INSERT INTO b SELECT * FROM t; END;",
            "BEGIN STATEMENT SET; INSERT INTO a SELECT * FROM t; INSERT INTO b SELECT * FROM t; END;",
        ] {
            // One statement (one job), the set's further INSERTs inside it.
            let stmts = parse_sql(sql).unwrap();
            assert_eq!(stmts.len(), 1);
            let tables: Vec<_> = std::iter::once(&stmts[0])
                .chain(&stmts[0].set)
                .map(|s| match &s.statement {
                    Statement::Insert { table, .. } => table.clone(),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(tables, ["a", "b"]);
        }
        let e = parse_sql("BEGIN STATEMENT SET; SELECT 1; END;").unwrap_err();
        assert!(e.to_string().contains("INSERT statements only"), "{e}");
        let e = parse_sql("EXECUTE STATEMENT SET BEGIN INSERT INTO a SELECT 1;").unwrap_err();
        assert!(e.to_string().contains("END"), "{e}");
    }
}
