//! Recognising the statements the warehouse handles itself (BigQuery-style DDL, `SHOW TABLES`, `DESCRIBE`) and
//! splitting scripts into statements. Everything else (SELECT, WITH, INSERT, EXPLAIN, ...) is passed to DataFusion
//! as written.
//!
//! A small lexer keeps byte offsets, so the `AS SELECT ...` of a `CREATE TABLE` reaches DataFusion unchanged, and
//! every error names the clause that is wrong.

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser as SqlParser;

use crate::{Result, WarehouseError};

/// A `dataset.table` name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// The dataset (a folder `warehouse/<dataset>/` in the lake).
    pub dataset: String,
    /// The table inside the dataset.
    pub table: String,
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.dataset, self.table)
    }
}

/// How a table is partitioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionSpec {
    /// `PARTITION BY DATE(col)`: a `DATE` partition column `<col>_date` is added, holding `CAST(col AS DATE)`.
    Date {
        /// The timestamp (or date) column the date is taken from.
        column: String,
    },
    /// `PARTITION BY col`: the table is partitioned by an existing `DATE` column.
    Column {
        /// The `DATE` column.
        column: String,
    },
}

impl PartitionSpec {
    /// The name of the Delta partition column.
    pub fn partition_column(&self) -> String {
        match self {
            Self::Date { column } => format!("{column}_date"),
            Self::Column { column } => column.clone(),
        }
    }

    /// The column of the query the partition is derived from.
    pub fn source_column(&self) -> &str {
        match self {
            Self::Date { column } | Self::Column { column } => column,
        }
    }
}

impl std::fmt::Display for PartitionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Date { column } => write!(f, "DATE({column})"),
            Self::Column { column } => f.write_str(column),
        }
    }
}

/// The file format of an external table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ExternalFormat {
    /// Parquet files.
    Parquet,
    /// CSV files with a header row.
    Csv,
}

/// One statement of a script, as the warehouse will run it.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// Anything DataFusion runs as written: SELECT, WITH, VALUES, INSERT, EXPLAIN.
    Query(String),
    /// `CREATE [OR REPLACE] TABLE ds.t [PARTITION BY ...] [CLUSTER BY ...] [OPTIONS (...)] AS SELECT ...`.
    CreateTable(CreateTable),
    /// `CREATE [OR REPLACE] EXTERNAL TABLE ds.t OPTIONS (format = ..., uris = [...])`.
    CreateExternalTable(CreateExternalTable),
    /// `CREATE [OR REPLACE] VIEW ds.v AS SELECT ...`.
    CreateView(CreateView),
    /// `DROP VIEW [IF EXISTS] ds.v`.
    DropView {
        /// The view.
        name: TableName,
        /// No error when it does not exist.
        if_exists: bool,
    },
    /// `DROP TABLE [IF EXISTS] ds.t`.
    DropTable {
        /// The table.
        name: TableName,
        /// No error when it does not exist.
        if_exists: bool,
    },
    /// `SHOW TABLES [IN|FROM ds]`.
    ShowTables {
        /// Only this dataset.
        dataset: Option<String>,
    },
    /// `DESCRIBE ds.t`.
    Describe {
        /// The table.
        name: TableName,
    },
    /// `DESCRIBE HISTORY ds.t`: the table's Delta commits.
    DescribeHistory {
        /// The table.
        name: TableName,
    },
    /// `OPTIMIZE ds.t [ZORDER BY (c1, ...)]`: compact small files; z-order (cluster) them.
    Optimize {
        /// The table.
        name: TableName,
        /// Z-order columns (empty: the table's cluster columns, or plain compaction).
        zorder_by: Vec<String>,
    },
    /// `RESTORE TABLE ds.t TO VERSION AS OF n | TIMESTAMP AS OF '...'`: a new commit with an old version's data.
    Restore {
        /// The table.
        name: TableName,
        /// Which version.
        to: AsOf,
    },
    /// `INSERT INTO ds.t [(columns)] SELECT ... | VALUES ...`.
    Insert(Box<ast::Insert>),
    /// `DELETE FROM ds.t [WHERE ...]`.
    Delete(Box<ast::Delete>),
    /// `UPDATE ds.t SET ... [WHERE ...]`.
    Update(Box<ast::Update>),
    /// `MERGE INTO ds.t USING ... ON ... WHEN ...`.
    Merge(Box<ast::Merge>),
}

/// A point in a table's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsOf {
    /// A Delta version number.
    Version(i64),
    /// A timestamp (`YYYY-MM-DD[ HH:MM:SS[.fff]]`, UTC, or RFC 3339 with an offset).
    Timestamp(String),
}

impl std::fmt::Display for AsOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Version(v) => write!(f, "version {v}"),
            Self::Timestamp(t) => write!(f, "{t}"),
        }
    }
}

/// A table read as of an earlier point: `ds.t FOR SYSTEM_TIME AS OF TIMESTAMP '...'` (BigQuery) or
/// `ds.t VERSION AS OF n` / `ds.t TIMESTAMP AS OF '...'` (Delta), with the byte range it spans in the SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeTravel {
    /// Byte offset where the table name starts.
    pub start: usize,
    /// Byte offset just after the AS OF value.
    pub end: usize,
    /// The table.
    pub name: TableName,
    /// Which version.
    pub at: AsOf,
}

/// Find the time-travel references in a query.
pub fn time_travel(sql: &str) -> Result<Vec<TimeTravel>> {
    let tokens = lex(sql)?;
    let word = |i: usize, kw: &str| matches!(tokens.get(i).map(|t| &t.tok), Some(Tok::Word { text, quoted: false }) if text.eq_ignore_ascii_case(kw));
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        // The clause after a name: FOR SYSTEM_TIME AS OF | VERSION AS OF | TIMESTAMP AS OF.
        let (clause_len, by_version) = if word(i, "FOR")
            && word(i + 1, "SYSTEM_TIME")
            && word(i + 2, "AS")
            && word(i + 3, "OF")
        {
            (4, false)
        } else if word(i, "VERSION") && word(i + 1, "AS") && word(i + 2, "OF") {
            (3, true)
        } else if word(i, "TIMESTAMP") && word(i + 1, "AS") && word(i + 2, "OF") {
            (3, false)
        } else {
            i += 1;
            continue;
        };
        // Walk back over `a.b[.c]` to the start of the name.
        let mut first = i;
        let mut parts = Vec::new();
        while first >= 1 {
            if let Tok::Word { text, .. } = &tokens[first - 1].tok {
                parts.insert(0, text.clone());
                first -= 1;
                if first >= 1 && tokens[first - 1].tok == Tok::Punct('.') {
                    first -= 1;
                    continue;
                }
            }
            break;
        }
        if parts.len() == 1 && parts[0].contains('.') {
            parts = parts[0].split('.').map(str::to_string).collect();
        }
        if parts.len() < 2 {
            return Err(syntax(format!(
                "AS OF after '{}': time travel reads a table, name it as dataset.table",
                parts.join(".")
            )));
        }
        let n = parts.len();
        let name = TableName {
            dataset: parts[n - 2].clone(),
            table: parts[n - 1].clone(),
        };
        let mut j = i + clause_len;
        let at = match (tokens.get(j).map(|t| &t.tok), by_version) {
            (Some(Tok::Num(v)), true) => AsOf::Version(
                v.parse()
                    .map_err(|_| syntax(format!("VERSION AS OF {v}: expected a version number")))?,
            ),
            (Some(Tok::Str(t)), false) => AsOf::Timestamp(t.clone()),
            (
                Some(Tok::Word {
                    text,
                    quoted: false,
                }),
                false,
            ) if text.eq_ignore_ascii_case("TIMESTAMP") => {
                j += 1;
                match tokens.get(j).map(|t| &t.tok) {
                    Some(Tok::Str(t)) => AsOf::Timestamp(t.clone()),
                    _ => {
                        return Err(WarehouseError::NotSupported(format!(
                            "time travel to an expression on {name}: write TIMESTAMP 'YYYY-MM-DD HH:MM:SS' or VERSION AS OF n"
                        )));
                    }
                }
            }
            _ => {
                return Err(WarehouseError::NotSupported(format!(
                    "time travel to an expression on {name}: write TIMESTAMP 'YYYY-MM-DD HH:MM:SS' or VERSION AS OF n"
                )));
            }
        };
        let end = tokens.get(j + 1).map_or(sql.len(), |t| t.start);
        // The value token ends before the next token starts; trim the whitespace between them.
        let end = first_end(sql, tokens[j].start, end);
        out.push(TimeTravel {
            start: tokens[first].start,
            end,
            name,
            at,
        });
        i = j + 1;
    }
    Ok(out)
}

fn first_end(sql: &str, start: usize, next: usize) -> usize {
    start + sql[start..next].trim_end().len()
}

/// A `CREATE TABLE ... AS SELECT`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateTable {
    /// The new table.
    pub name: TableName,
    /// Replace an existing table in one Delta commit.
    pub or_replace: bool,
    /// Do nothing when the table exists.
    pub if_not_exists: bool,
    /// Partitioning, if any.
    pub partition: Option<PartitionSpec>,
    /// Up to four cluster columns: files are sorted by them.
    pub cluster_by: Vec<String>,
    /// Rows per Parquet row group (`OPTIONS (row_group_rows = N)`); smaller groups prune more finely.
    pub row_group_rows: Option<usize>,
    /// The query, as written.
    pub query: String,
}

/// A `CREATE VIEW`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateView {
    /// The view.
    pub name: TableName,
    /// Replace an existing view.
    pub or_replace: bool,
    /// Do nothing when the view exists.
    pub if_not_exists: bool,
    /// The query, as written.
    pub query: String,
}

/// A `CREATE EXTERNAL TABLE`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateExternalTable {
    /// The new table.
    pub name: TableName,
    /// Replace an existing definition.
    pub or_replace: bool,
    /// Do nothing when the table exists.
    pub if_not_exists: bool,
    /// The file format.
    pub format: ExternalFormat,
    /// Where the files are.
    pub uris: Vec<String>,
}

/// The most cluster columns a table may have (as in BigQuery).
pub const MAX_CLUSTER_COLUMNS: usize = 4;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A bare word or a quoted identifier (quotes removed).
    Word { text: String, quoted: bool },
    /// A string literal (quotes removed).
    Str(String),
    /// A number.
    Num(String),
    /// One punctuation character.
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
}

fn lex(sql: &str) -> Result<Vec<Token>> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c.is_whitespace() {
            i += 1;
        } else if sql[i..].starts_with("--") {
            i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
        } else if sql[i..].starts_with("/*") {
            i = sql[i + 2..]
                .find("*/")
                .map(|n| i + 2 + n + 2)
                .ok_or_else(|| syntax("unterminated /* comment"))?;
        } else if c == '\'' || c == '"' || c == '`' {
            let start = i;
            let mut text = String::new();
            i += 1;
            loop {
                let Some(ch) = sql[i..].chars().next() else {
                    return Err(syntax(format!(
                        "unterminated {c}...{c} starting at byte {start}"
                    )));
                };
                i += ch.len_utf8();
                if ch == c {
                    if sql[i..].starts_with(c) {
                        text.push(c);
                        i += 1;
                        continue;
                    }
                    break;
                }
                if ch == '\\'
                    && c == '\''
                    && let Some(next) = sql[i..].chars().next()
                {
                    text.push(next);
                    i += next.len_utf8();
                    continue;
                }
                text.push(ch);
            }
            let tok = if c == '\'' {
                Tok::Str(text)
            } else {
                Tok::Word { text, quoted: true }
            };
            out.push(Token { tok, start });
        } else if c.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Num(sql[start..i].to_string()),
                start,
            });
        } else if c.is_alphanumeric() || c == '_' || !c.is_ascii() {
            let start = i;
            while let Some(ch) = sql[i..].chars().next() {
                if ch.is_alphanumeric() || ch == '_' || ch == '$' {
                    i += ch.len_utf8();
                } else {
                    break;
                }
            }
            if i == start {
                i += sql[i..].chars().next().map_or(1, char::len_utf8);
                continue;
            }
            out.push(Token {
                tok: Tok::Word {
                    text: sql[start..i].to_string(),
                    quoted: false,
                },
                start,
            });
        } else {
            out.push(Token {
                tok: Tok::Punct(c),
                start: i,
            });
            i += 1;
        }
    }
    Ok(out)
}

fn syntax(message: impl Into<String>) -> WarehouseError {
    WarehouseError::Syntax(message.into())
}

fn ddl(message: impl Into<String>) -> WarehouseError {
    WarehouseError::Ddl(message.into())
}

/// Split a script into statements at top-level semicolons (not inside strings, identifiers or comments).
pub fn split_statements(script: &str) -> Result<Vec<String>> {
    let tokens = lex(script)?;
    let mut out = Vec::new();
    let mut start = 0;
    for t in &tokens {
        if t.tok == Tok::Punct(';') {
            push_statement(&mut out, &script[start..t.start]);
            start = t.start + 1;
        }
    }
    push_statement(&mut out, &script[start..]);
    Ok(out)
}

/// Whether `text` ends with a complete statement: its last token outside strings and comments is `;`. Text inside
/// an unterminated string or comment is not complete (a shell keeps reading lines).
pub fn ends_statement(text: &str) -> bool {
    lex(text)
        .map(|tokens| tokens.last().is_some_and(|t| t.tok == Tok::Punct(';')))
        .unwrap_or(false)
}

fn push_statement(out: &mut Vec<String>, text: &str) {
    // A piece holding only comments and blanks is no statement.
    if lex(text).map(|t| !t.is_empty()).unwrap_or(true) {
        out.push(text.trim().to_string());
    }
}

struct Parser<'a> {
    sql: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word { text, quoted: false }) if text.eq_ignore_ascii_case(kw))
    }

    fn keyword(&mut self, kw: &str) -> bool {
        if self.peek_keyword(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, kw: &str, context: &str) -> Result<()> {
        if self.keyword(kw) {
            Ok(())
        } else {
            Err(syntax(format!(
                "{context}: expected {kw}, found {}",
                self.found()
            )))
        }
    }

    fn punct(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, c: char, context: &str) -> Result<()> {
        if self.punct(c) {
            Ok(())
        } else {
            Err(syntax(format!(
                "{context}: expected '{c}', found {}",
                self.found()
            )))
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "the end of the statement".into(),
            Some(Tok::Word { text, .. }) => format!("'{text}'"),
            Some(Tok::Str(s)) => format!("'{s}' (a string)"),
            Some(Tok::Num(n)) => n.clone(),
            Some(Tok::Punct(c)) => format!("'{c}'"),
        }
    }

    fn ident(&mut self, what: &str) -> Result<String> {
        match self.peek().cloned() {
            Some(Tok::Word { text, .. }) => {
                self.pos += 1;
                Ok(text)
            }
            _ => Err(syntax(format!("expected {what}, found {}", self.found()))),
        }
    }

    /// `dataset.table`, or `project.dataset.table` with the project ignored.
    fn table_name(&mut self) -> Result<TableName> {
        let mut parts = vec![self.ident("a table name (dataset.table)")?];
        while self.punct('.') {
            parts.push(self.ident("a name after '.'")?);
        }
        table_name_from_parts(parts)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.tokens.len()
    }

    fn expect_end(&self, context: &str) -> Result<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err(syntax(format!("{context}: unexpected {}", self.found())))
        }
    }
}

/// `dataset.table` from the parts of a name: `project.dataset.table` keeps the last two, and one backquoted
/// `project.dataset.table` identifier is split as BigQuery writes it. Each part must be a plain name.
pub(crate) fn table_name_from_parts(mut parts: Vec<String>) -> Result<TableName> {
    if parts.len() == 1 && parts[0].contains('.') {
        parts = parts[0].split('.').map(str::to_string).collect();
    }
    let n = parts.len();
    if !(2..=3).contains(&n) {
        return Err(ddl(format!(
            "table name '{}' must be dataset.table",
            parts.join(".")
        )));
    }
    let name = TableName {
        dataset: parts[n - 2].clone(),
        table: parts[n - 1].clone(),
    };
    for part in [&name.dataset, &name.table] {
        let valid = part
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !part.starts_with("_external");
        if !valid {
            return Err(ddl(format!(
                "invalid name '{part}' in {name}: use letters, digits and underscores, starting with a letter"
            )));
        }
    }
    Ok(name)
}

/// Parse one statement.
pub fn parse_statement(sql: &str) -> Result<Statement> {
    let mut p = Parser {
        sql,
        tokens: lex(sql)?,
        pos: 0,
    };
    if p.keyword("CREATE") {
        let or_replace = if p.keyword("OR") {
            p.expect_keyword("REPLACE", "CREATE OR")?;
            true
        } else {
            false
        };
        if p.keyword("EXTERNAL") {
            p.expect_keyword("TABLE", "CREATE EXTERNAL")?;
            return parse_external(&mut p, or_replace).map(Statement::CreateExternalTable);
        }
        if p.keyword("TEMP") || p.keyword("TEMPORARY") {
            return Err(WarehouseError::NotSupported(
                "temporary tables (use a WITH clause)".into(),
            ));
        }
        if p.keyword("TABLE") {
            return parse_create_table(&mut p, or_replace).map(Statement::CreateTable);
        }
        if p.keyword("VIEW") {
            let if_not_exists = if_not_exists(&mut p)?;
            let name = p.table_name()?;
            p.expect_keyword("AS", &format!("CREATE VIEW {name}"))?;
            let Some(start) = p.tokens.get(p.pos).map(|t| t.start) else {
                return Err(syntax(format!(
                    "CREATE VIEW {name} AS: the query is missing"
                )));
            };
            return Ok(Statement::CreateView(CreateView {
                name,
                or_replace,
                if_not_exists,
                query: sql[start..].trim().to_string(),
            }));
        }
        return Err(WarehouseError::NotSupported(format!(
            "CREATE {}: the warehouse supports CREATE [OR REPLACE] TABLE ... AS SELECT, CREATE VIEW and CREATE EXTERNAL TABLE",
            p.found().trim_matches('\'')
        )));
    }
    if p.keyword("DROP") {
        if p.keyword("VIEW") {
            let if_exists = if p.keyword("IF") {
                p.expect_keyword("EXISTS", "DROP VIEW IF")?;
                true
            } else {
                false
            };
            let name = p.table_name()?;
            p.expect_end("DROP VIEW")?;
            return Ok(Statement::DropView { name, if_exists });
        }
        if !p.keyword("TABLE") {
            return Err(WarehouseError::NotSupported(format!(
                "DROP {}: only DROP TABLE",
                p.found().trim_matches('\'')
            )));
        }
        let if_exists = if p.keyword("IF") {
            p.expect_keyword("EXISTS", "DROP TABLE IF")?;
            true
        } else {
            false
        };
        let name = p.table_name()?;
        p.expect_end("DROP TABLE")?;
        return Ok(Statement::DropTable { name, if_exists });
    }
    if p.keyword("SHOW") {
        p.expect_keyword("TABLES", "SHOW")?;
        let dataset = if p.keyword("IN") || p.keyword("FROM") {
            Some(p.ident("a dataset")?)
        } else {
            None
        };
        p.expect_end("SHOW TABLES")?;
        return Ok(Statement::ShowTables { dataset });
    }
    if p.keyword("OPTIMIZE") {
        p.keyword("TABLE");
        let name = p.table_name()?;
        let mut zorder_by = Vec::new();
        if p.keyword("ZORDER") {
            p.expect_keyword("BY", "ZORDER")?;
            let parens = p.punct('(');
            loop {
                zorder_by.push(p.ident("a z-order column")?);
                if !p.punct(',') {
                    break;
                }
            }
            if parens {
                p.expect_punct(')', "ZORDER BY (...)")?;
            }
        }
        p.expect_end("OPTIMIZE")?;
        return Ok(Statement::Optimize { name, zorder_by });
    }
    if p.keyword("RESTORE") {
        p.keyword("TABLE");
        let name = p.table_name()?;
        p.expect_keyword("TO", "RESTORE TABLE")?;
        let to = if p.keyword("VERSION") {
            p.expect_keyword("AS", "RESTORE ... TO VERSION")?;
            p.expect_keyword("OF", "RESTORE ... TO VERSION AS")?;
            match p.peek().cloned() {
                Some(Tok::Num(n)) => {
                    p.pos += 1;
                    AsOf::Version(n.parse().map_err(|_| syntax(format!("bad version {n}")))?)
                }
                _ => {
                    return Err(syntax(format!(
                        "RESTORE: expected a version number, found {}",
                        p.found()
                    )));
                }
            }
        } else if p.keyword("TIMESTAMP") {
            p.expect_keyword("AS", "RESTORE ... TO TIMESTAMP")?;
            p.expect_keyword("OF", "RESTORE ... TO TIMESTAMP AS")?;
            p.keyword("TIMESTAMP");
            match p.peek().cloned() {
                Some(Tok::Str(t)) => {
                    p.pos += 1;
                    AsOf::Timestamp(t)
                }
                _ => {
                    return Err(syntax(format!(
                        "RESTORE: expected a timestamp string, found {}",
                        p.found()
                    )));
                }
            }
        } else {
            return Err(syntax(format!(
                "RESTORE TABLE {name} TO: expected VERSION AS OF n or TIMESTAMP AS OF '...', found {}",
                p.found()
            )));
        };
        p.expect_end("RESTORE")?;
        return Ok(Statement::Restore { name, to });
    }
    if ["INSERT", "DELETE", "UPDATE", "MERGE"]
        .iter()
        .any(|k| p.peek_keyword(k))
    {
        return parse_dml(sql);
    }
    if p.keyword("DESCRIBE") || p.keyword("DESC") {
        if p.keyword("HISTORY") {
            let name = p.table_name()?;
            p.expect_end("DESCRIBE HISTORY")?;
            return Ok(Statement::DescribeHistory { name });
        }
        p.keyword("TABLE");
        let name = p.table_name()?;
        p.expect_end("DESCRIBE")?;
        return Ok(Statement::Describe { name });
    }
    Ok(Statement::Query(sql.to_string()))
}

/// `INSERT`, `DELETE`, `UPDATE` and `MERGE`, read by DataFusion's SQL parser.
fn parse_dml(sql: &str) -> Result<Statement> {
    let mut parsed = SqlParser::parse_sql(&GenericDialect {}, sql).map_err(|e| {
        syntax(
            e.to_string()
                .trim_start_matches("sql parser error: ")
                .to_string(),
        )
    })?;
    if parsed.len() != 1 {
        return Err(syntax("expected one statement"));
    }
    Ok(match parsed.remove(0) {
        ast::Statement::Insert(i) => Statement::Insert(Box::new(i)),
        ast::Statement::Delete(d) => Statement::Delete(Box::new(d)),
        ast::Statement::Update(u) => Statement::Update(Box::new(u)),
        ast::Statement::Merge(m) => Statement::Merge(Box::new(m)),
        other => Statement::Query(other.to_string()),
    })
}

fn if_not_exists(p: &mut Parser<'_>) -> Result<bool> {
    if p.keyword("IF") {
        p.expect_keyword("NOT", "IF")?;
        p.expect_keyword("EXISTS", "IF NOT")?;
        Ok(true)
    } else {
        Ok(false)
    }
}

fn parse_create_table(p: &mut Parser<'_>, or_replace: bool) -> Result<CreateTable> {
    let if_not_exists = if_not_exists(p)?;
    if or_replace && if_not_exists {
        return Err(syntax("CREATE OR REPLACE TABLE cannot have IF NOT EXISTS"));
    }
    let name = p.table_name()?;
    if p.peek() == Some(&Tok::Punct('(')) {
        return Err(WarehouseError::NotSupported(format!(
            "CREATE TABLE {name} (column list): create tables with AS SELECT"
        )));
    }
    let mut partition = None;
    let mut cluster_by = Vec::new();
    let mut row_group_rows = None;
    loop {
        if p.keyword("PARTITION") {
            p.expect_keyword("BY", "PARTITION")?;
            partition = Some(parse_partition(p, &name)?);
        } else if p.keyword("CLUSTER") {
            p.expect_keyword("BY", "CLUSTER")?;
            loop {
                cluster_by.push(p.ident("a cluster column")?);
                if !p.punct(',') {
                    break;
                }
            }
            if cluster_by.len() > MAX_CLUSTER_COLUMNS {
                return Err(ddl(format!(
                    "CLUSTER BY in {name} has {} columns ({}); at most {MAX_CLUSTER_COLUMNS} are allowed",
                    cluster_by.len(),
                    cluster_by.join(", ")
                )));
            }
        } else if p.keyword("OPTIONS") {
            for (key, value) in parse_options(p)? {
                match (key.to_ascii_lowercase().as_str(), value) {
                    ("row_group_rows", OptionValue::Num(n)) => {
                        let n: usize = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                            ddl(format!(
                                "OPTIONS row_group_rows = {n}: expected a positive integer"
                            ))
                        })?;
                        row_group_rows = Some(n);
                    }
                    ("description", _) => {}
                    (other, _) => {
                        return Err(ddl(format!(
                            "unknown table option '{other}' (known: row_group_rows, description)"
                        )));
                    }
                }
            }
        } else {
            break;
        }
    }
    if !p.keyword("AS") {
        return Err(syntax(format!(
            "CREATE TABLE {name}: expected PARTITION BY, CLUSTER BY, OPTIONS or AS SELECT, found {}",
            p.found()
        )));
    }
    let Some(start) = p.tokens.get(p.pos).map(|t| t.start) else {
        return Err(syntax(format!(
            "CREATE TABLE {name} AS: the query is missing"
        )));
    };
    let query = p.sql[start..].trim().to_string();
    Ok(CreateTable {
        name,
        or_replace,
        if_not_exists,
        partition,
        cluster_by,
        row_group_rows,
        query,
    })
}

fn parse_partition(p: &mut Parser<'_>, name: &TableName) -> Result<PartitionSpec> {
    let start = p.pos;
    let first = p.ident("a partition column or DATE(column)")?;
    if p.punct('(') {
        if !first.eq_ignore_ascii_case("DATE") {
            return Err(partition_error(p, start, name));
        }
        let column = p.ident("a column inside DATE()")?;
        if !p.punct(')') {
            return Err(partition_error(p, start, name));
        }
        return Ok(PartitionSpec::Date { column });
    }
    if !(p.peek_keyword("CLUSTER") || p.peek_keyword("OPTIONS") || p.peek_keyword("AS")) {
        return Err(partition_error(p, start, name));
    }
    Ok(PartitionSpec::Column { column: first })
}

fn partition_error(p: &Parser<'_>, start: usize, name: &TableName) -> WarehouseError {
    let from = p.tokens[start].start;
    let to = p.tokens[start..]
        .iter()
        .find(|t| {
            matches!(&t.tok, Tok::Word { text, quoted: false }
                if ["CLUSTER", "OPTIONS", "AS"].iter().any(|k| text.eq_ignore_ascii_case(k)))
        })
        .map_or(p.sql.len(), |t| t.start);
    ddl(format!(
        "PARTITION BY {} in {name}: partitioning needs a date: DATE(<timestamp column>) or a DATE column",
        p.sql[from..to].trim()
    ))
}

enum OptionValue {
    Str(String),
    Num(String),
    List(Vec<String>),
}

fn parse_options(p: &mut Parser<'_>) -> Result<Vec<(String, OptionValue)>> {
    p.expect_punct('(', "OPTIONS")?;
    let mut out = Vec::new();
    if p.punct(')') {
        return Ok(out);
    }
    loop {
        let key = p.ident("an option name")?;
        p.expect_punct('=', &format!("OPTIONS {key}"))?;
        let value = match p.peek().cloned() {
            Some(Tok::Str(s)) => {
                p.pos += 1;
                OptionValue::Str(s)
            }
            Some(Tok::Num(n)) => {
                p.pos += 1;
                OptionValue::Num(n)
            }
            Some(Tok::Punct('[')) => {
                p.pos += 1;
                let mut items = Vec::new();
                if !p.punct(']') {
                    loop {
                        match p.peek().cloned() {
                            Some(Tok::Str(s)) => {
                                p.pos += 1;
                                items.push(s);
                            }
                            _ => {
                                return Err(syntax(format!(
                                    "OPTIONS {key}: expected a string in the list, found {}",
                                    p.found()
                                )));
                            }
                        }
                        if p.punct(']') {
                            break;
                        }
                        p.expect_punct(',', &format!("OPTIONS {key} list"))?;
                    }
                }
                OptionValue::List(items)
            }
            Some(Tok::Word {
                text,
                quoted: false,
            }) if text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("false") => {
                p.pos += 1;
                OptionValue::Str(text.to_ascii_lowercase())
            }
            _ => {
                return Err(syntax(format!(
                    "OPTIONS {key}: expected a string, number or ['list'], found {}",
                    p.found()
                )));
            }
        };
        out.push((key, value));
        if p.punct(')') {
            return Ok(out);
        }
        p.expect_punct(',', "OPTIONS")?;
    }
}

fn parse_external(p: &mut Parser<'_>, or_replace: bool) -> Result<CreateExternalTable> {
    let if_not_exists = if_not_exists(p)?;
    let name = p.table_name()?;
    if !p.keyword("OPTIONS") {
        return Err(syntax(format!(
            "CREATE EXTERNAL TABLE {name}: expected OPTIONS (format = 'PARQUET', uris = ['...']), found {}",
            p.found()
        )));
    }
    let mut format = None;
    let mut uris = None;
    for (key, value) in parse_options(p)? {
        match (key.to_ascii_lowercase().as_str(), value) {
            ("format", OptionValue::Str(f)) => {
                format = Some(match f.to_ascii_uppercase().as_str() {
                    "PARQUET" => ExternalFormat::Parquet,
                    "CSV" => ExternalFormat::Csv,
                    other => {
                        return Err(ddl(format!(
                            "external table {name}: format '{other}' is not supported (PARQUET or CSV)"
                        )));
                    }
                })
            }
            ("uris", OptionValue::List(list)) => uris = Some(list),
            ("uris", OptionValue::Str(one)) => uris = Some(vec![one]),
            ("format" | "uris", _) => {
                return Err(ddl(format!(
                    "external table {name}: OPTIONS {key} has the wrong kind of value (format = 'PARQUET', uris = ['path/*'])"
                )));
            }
            ("description" | "skip_leading_rows", _) => {}
            (other, _) => {
                return Err(ddl(format!(
                    "external table {name}: unknown option '{other}' (known: format, uris)"
                )));
            }
        }
    }
    p.expect_end("CREATE EXTERNAL TABLE")?;
    let format = format.ok_or_else(|| {
        ddl(format!(
            "external table {name}: OPTIONS needs format = 'PARQUET' or 'CSV'"
        ))
    })?;
    let uris = uris.filter(|u| !u.is_empty()).ok_or_else(|| {
        ddl(format!(
            "external table {name}: OPTIONS needs uris = ['...']"
        ))
    })?;
    Ok(CreateExternalTable {
        name,
        or_replace,
        if_not_exists,
        format,
        uris,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(sql: &str) -> CreateTable {
        match parse_statement(sql).unwrap() {
            Statement::CreateTable(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ctas_keeps_the_query_as_written() {
        let c = create(
            "CREATE OR REPLACE TABLE trips.yellow_part PARTITION BY DATE(tpep_pickup_datetime) \
             CLUSTER BY VendorID AS SELECT * FROM trips.ext WHERE x = 'a;b'",
        );
        assert!(c.or_replace);
        assert_eq!(
            c.partition,
            Some(PartitionSpec::Date {
                column: "tpep_pickup_datetime".into()
            })
        );
        assert_eq!(c.cluster_by, vec!["VendorID"]);
        assert_eq!(c.query, "SELECT * FROM trips.ext WHERE x = 'a;b'");
    }

    #[test]
    fn five_cluster_columns_are_refused_by_name() {
        let e = parse_statement("CREATE TABLE d.t CLUSTER BY a, b, c, d, e AS SELECT 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("5 columns") && e.contains("at most 4"), "{e}");
    }

    #[test]
    fn partitioning_by_a_non_date_expression_is_refused() {
        for bad in [
            "UPPER(x)",
            "x + 1",
            "RANGE_BUCKET(x, GENERATE_ARRAY(0, 10, 1))",
        ] {
            let e = parse_statement(&format!("CREATE TABLE d.t PARTITION BY {bad} AS SELECT 1"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(bad) && e.contains("needs a date"), "{e}");
        }
    }

    #[test]
    fn external_table_options() {
        let Statement::CreateExternalTable(e) = parse_statement(
            "CREATE EXTERNAL TABLE `proj.trips.ext` OPTIONS (format = 'PARQUET', uris = ['lake/raw/yellow/*'])",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(e.name.to_string(), "trips.ext");
        assert_eq!(e.format, ExternalFormat::Parquet);
        assert_eq!(e.uris, vec!["lake/raw/yellow/*"]);
    }

    #[test]
    fn scripts_split_at_top_level_semicolons_only() {
        let s =
            split_statements("select ';' ; -- a comment; still\nselect 2;\n-- only a comment\n")
                .unwrap();
        assert_eq!(s, vec!["select ';'", "-- a comment; still\nselect 2"]);
    }

    #[test]
    fn time_travel_references_are_found_with_their_spans() {
        let sql = "SELECT * FROM trips.y FOR SYSTEM_TIME AS OF TIMESTAMP '2024-01-01 10:00:00' AS a \
                   JOIN `p.trips.z` VERSION AS OF 3 b ON a.id = b.id";
        let found = time_travel(sql).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(
            &sql[found[0].start..found[0].end],
            "trips.y FOR SYSTEM_TIME AS OF TIMESTAMP '2024-01-01 10:00:00'"
        );
        assert_eq!(found[0].at, AsOf::Timestamp("2024-01-01 10:00:00".into()));
        assert_eq!(
            &sql[found[1].start..found[1].end],
            "`p.trips.z` VERSION AS OF 3"
        );
        assert_eq!(found[1].name.to_string(), "trips.z");
        assert_eq!(found[1].at, AsOf::Version(3));
        assert!(
            time_travel("SELECT TIMESTAMP '2024-01-01' AS t")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn other_statements_go_to_datafusion() {
        assert_eq!(
            parse_statement("WITH a AS (SELECT 1) SELECT * FROM a").unwrap(),
            Statement::Query("WITH a AS (SELECT 1) SELECT * FROM a".into())
        );
    }
}
