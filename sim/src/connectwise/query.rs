//! The ConnectWise Manage query language: `conditions`, `orderBy` and `fields`.
//!
//! ConnectWise evaluates these on SQL Server with a case-insensitive
//! collation, so string comparisons here are case-insensitive too, and a
//! comparison against a missing/NULL field is false (SQL three-valued logic)
//! except for `= null`.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde_json::{Map, Value};

/// A literal on the right-hand side of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    /// `[2025-05-01T00:00:00Z]`: compared chronologically with date-time strings.
    Date(DateTime<Utc>),
}

/// A comparison operator: `=`, `!=` (or `<>`), `<`, `<=`, `>`, `>=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::Ne => ord != Ordering::Equal,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Le => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Ge => ord != Ordering::Less,
        }
    }
}

/// The parsed form of a `conditions` string.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// An empty `conditions` string: everything matches.
    All,
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare {
        path: String,
        op: CmpOp,
        value: Literal,
    },
    Like {
        path: String,
        pattern: String,
        negated: bool,
    },
    Contains {
        path: String,
        needle: String,
        negated: bool,
    },
    In {
        path: String,
        values: Vec<Literal>,
        negated: bool,
    },
}

/// A syntax error in `conditions` or `orderBy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub message: String,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for QueryError {}

fn err<T>(message: String) -> Result<T, QueryError> {
    Err(QueryError { message })
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    Date(DateTime<Utc>),
    Op(CmpOp),
    LParen,
    RParen,
    Comma,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// Byte offset in the input, for error messages.
    pos: usize,
    /// The source text, for error messages.
    text: String,
}

struct Lexer<'a> {
    input: &'a str,
    chars: Vec<(usize, char)>,
    i: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).map(|&(_, c)| c)
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).map(|&(_, c)| c)
    }

    /// Byte offset of the current char (or the end of input).
    fn offset(&self) -> usize {
        self.chars.get(self.i).map_or(self.input.len(), |&(p, _)| p)
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&keep) {
            self.i += 1;
        }
    }

    fn next_token(&mut self) -> Result<Option<Token>, QueryError> {
        self.take_while(char::is_whitespace);
        let Some(c) = self.peek() else {
            return Ok(None);
        };
        let pos = self.offset();
        let tok = match c {
            '(' | ')' | ',' => {
                self.i += 1;
                match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    _ => Tok::Comma,
                }
            }
            '"' | '\'' => Tok::Str(self.string(pos)?),
            '[' => Tok::Date(self.date(pos)?),
            '=' | '!' | '<' | '>' => Tok::Op(self.operator(pos)?),
            c if c.is_ascii_digit() || (c == '-' && self.starts_number()) => self.number(pos)?,
            c if is_word_start(c) => {
                self.take_while(is_word_char);
                Tok::Word(self.input[pos..self.offset()].to_string())
            }
            c => return err(format!("Unexpected character '{c}' at position {pos}")),
        };
        let text = self.input[pos..self.offset()].to_string();
        Ok(Some(Token { tok, pos, text }))
    }

    fn starts_number(&self) -> bool {
        self.peek_at(1)
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
    }

    /// A quoted string; backslash escapes the next character (`\"`).
    fn string(&mut self, pos: usize) -> Result<String, QueryError> {
        let quote = self.peek().unwrap_or('"');
        self.i += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return err(format!("Unterminated string starting at position {pos}")),
                Some('\\') if self.peek_at(1).is_some() => {
                    out.push(self.peek_at(1).unwrap_or_default());
                    self.i += 2;
                }
                Some(c) if c == quote => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn date(&mut self, pos: usize) -> Result<DateTime<Utc>, QueryError> {
        self.i += 1;
        let start = self.offset();
        self.take_while(|c| c != ']');
        let end = self.offset();
        if self.peek().is_none() {
            return err(format!("Unterminated date starting at position {pos}"));
        }
        self.i += 1;
        let raw = &self.input[start..end];
        parse_datetime(raw).map_or_else(
            || err(format!("Invalid date '{raw}' at position {pos}")),
            Ok,
        )
    }

    fn operator(&mut self, pos: usize) -> Result<CmpOp, QueryError> {
        let first = self.peek().unwrap_or_default();
        let second = self.peek_at(1);
        let (op, len) = match (first, second) {
            ('=', _) => (CmpOp::Eq, 1),
            ('!', Some('=')) => (CmpOp::Ne, 2),
            ('<', Some('>')) => (CmpOp::Ne, 2), // SQL spelling of "not equal"
            ('<', Some('=')) => (CmpOp::Le, 2),
            ('<', _) => (CmpOp::Lt, 1),
            ('>', Some('=')) => (CmpOp::Ge, 2),
            ('>', _) => (CmpOp::Gt, 1),
            _ => return err(format!("Unknown operator '{first}' at position {pos}")),
        };
        self.i += len;
        Ok(op)
    }

    fn number(&mut self, pos: usize) -> Result<Tok, QueryError> {
        if self.peek() == Some('-') {
            self.i += 1;
        }
        self.take_while(|c| c.is_ascii_digit() || c == '.');
        let raw = &self.input[pos..self.offset()];
        match raw.parse::<f64>() {
            Ok(n) => Ok(Tok::Num(n)),
            Err(_) => err(format!("Invalid number '{raw}' at position {pos}")),
        }
    }
}

fn is_word_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '/' | '.')
}

fn lex(input: &str) -> Result<Vec<Token>, QueryError> {
    let mut lexer = Lexer {
        input,
        chars: input.char_indices().collect(),
        i: 0,
    };
    let mut out = Vec::new();
    while let Some(token) = lexer.next_token()? {
        out.push(token);
    }
    Ok(out)
}

// ---------------------------------------------------------------- parser

const RESERVED: [&str; 6] = ["and", "or", "not", "like", "contains", "in"];

struct Parser {
    tokens: Vec<Token>,
    i: usize,
    /// Input length: the position reported for "unexpected end".
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.i)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.i).cloned();
        self.i += usize::from(token.is_some());
        token
    }

    /// Where the next token starts, for messages.
    fn pos(&self) -> usize {
        self.peek().map_or(self.end, |t| t.pos)
    }

    /// Text of the last consumed token, for "after 'x'" messages.
    fn prev(&self) -> String {
        self.i
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or_else(String::new, |t| t.text.clone())
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let hit = self.peek().is_some_and(|t| is_keyword(&t.tok, keyword));
        self.i += usize::from(hit);
        hit
    }

    fn parse_or(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.parse_and()?;
        while self.eat_keyword("or") {
            left = Expr::Or(Box::new(left), Box::new(self.parse_and()?));
        }
        Ok(left)
    }

    /// `and` binds tighter than `or`, as in SQL.
    fn parse_and(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.parse_primary()?;
        while self.eat_keyword("and") {
            left = Expr::And(Box::new(left), Box::new(self.parse_primary()?));
        }
        Ok(left)
    }

    fn parse_primary(&mut self) -> Result<Expr, QueryError> {
        let pos = self.pos();
        let Some(token) = self.next() else {
            return match self.prev() {
                p if p.is_empty() => err(format!("Expected a condition at position {pos}")),
                p => err(format!(
                    "Expected a condition after '{p}' at position {pos}"
                )),
            };
        };
        match token.tok {
            Tok::LParen => {
                let inner = self.parse_or()?;
                match self.next() {
                    Some(Token {
                        tok: Tok::RParen, ..
                    }) => Ok(inner),
                    _ => err(format!(
                        "Expected ')' to close '(' at position {} (found end or another token at position {})",
                        token.pos,
                        self.pos()
                    )),
                }
            }
            Tok::Word(w) if !RESERVED.contains(&w.to_ascii_lowercase().as_str()) => {
                self.parse_predicate(w)
            }
            _ => err(format!(
                "Expected a field name at position {pos}, found '{}'",
                token.text
            )),
        }
    }

    fn parse_predicate(&mut self, path: String) -> Result<Expr, QueryError> {
        let pos = self.pos();
        let token = self.next();
        let tok = token.as_ref().map(|t| &t.tok);
        if let Some(Tok::Op(op)) = tok {
            let value = self.parse_value()?;
            return Ok(Expr::Compare {
                path,
                op: *op,
                value,
            });
        }
        let negated = tok.is_some_and(|t| is_keyword(t, "not"));
        let keyword_tok = if negated { self.next() } else { token };
        let keyword = match keyword_tok.map(|t| t.tok) {
            Some(Tok::Word(w)) => w.to_ascii_lowercase(),
            _ => String::new(),
        };
        match keyword.as_str() {
            "like" => Ok(Expr::Like {
                pattern: self.parse_string()?,
                path,
                negated,
            }),
            "contains" => Ok(Expr::Contains {
                needle: self.parse_string()?,
                path,
                negated,
            }),
            "in" => Ok(Expr::In {
                values: self.parse_list()?,
                path,
                negated,
            }),
            _ => err(format!(
                "Expected an operator after '{path}' at position {pos}"
            )),
        }
    }

    fn parse_value(&mut self) -> Result<Literal, QueryError> {
        let (pos, prev) = (self.pos(), self.prev());
        let literal = match self.next().map(|t| t.tok) {
            Some(Tok::Str(s)) => Literal::Str(s),
            Some(Tok::Num(n)) => Literal::Num(n),
            Some(Tok::Date(d)) => Literal::Date(d),
            Some(Tok::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                "null" => Literal::Null,
                _ => {
                    return err(format!(
                        "Expected a value after '{prev}' at position {pos}; strings must be quoted"
                    ));
                }
            },
            _ => return err(format!("Expected a value after '{prev}' at position {pos}")),
        };
        Ok(literal)
    }

    fn parse_string(&mut self) -> Result<String, QueryError> {
        let (pos, prev) = (self.pos(), self.prev());
        match self.next().map(|t| t.tok) {
            Some(Tok::Str(s)) => Ok(s),
            _ => err(format!(
                "Expected a quoted string after '{prev}' at position {pos}"
            )),
        }
    }

    /// `( value [, value]* )`
    fn parse_list(&mut self) -> Result<Vec<Literal>, QueryError> {
        let (pos, prev) = (self.pos(), self.prev());
        if !matches!(self.next().map(|t| t.tok), Some(Tok::LParen)) {
            return err(format!("Expected '(' after '{prev}' at position {pos}"));
        }
        let mut values = vec![self.parse_value()?];
        loop {
            let pos = self.pos();
            match self.next().map(|t| t.tok) {
                Some(Tok::Comma) => values.push(self.parse_value()?),
                Some(Tok::RParen) => return Ok(values),
                _ => return err(format!("Expected ',' or ')' in list at position {pos}")),
            }
        }
    }
}

fn is_keyword(tok: &Tok, keyword: &str) -> bool {
    matches!(tok, Tok::Word(w) if w.eq_ignore_ascii_case(keyword))
}

/// Parses a `conditions` string; `""` gives [`Expr::All`].
pub fn parse_conditions(input: &str) -> Result<Expr, QueryError> {
    if input.trim().is_empty() {
        return Ok(Expr::All);
    }
    let mut parser = Parser {
        tokens: lex(input)?,
        i: 0,
        end: input.len(),
    };
    let expr = parser.parse_or()?;
    match parser.peek() {
        None => Ok(expr),
        Some(t) if t.tok == Tok::RParen => err(format!("Unbalanced ')' at position {}", t.pos)),
        Some(t) => err(format!("Unexpected '{}' at position {}", t.text, t.pos)),
    }
}

// ---------------------------------------------------------------- evaluation

/// Whether `item` satisfies `expr`.
pub fn matches(expr: &Expr, item: &Value) -> bool {
    match expr {
        Expr::All => true,
        Expr::And(a, b) => matches(a, item) && matches(b, item),
        Expr::Or(a, b) => matches(a, item) || matches(b, item),
        Expr::Compare { path, op, value } => compare(get_path(item, path), *op, value),
        Expr::Like {
            path,
            pattern,
            negated,
        } => text_test(item, path, *negated, |text| {
            glob_match(&pattern.to_lowercase(), text)
        }),
        Expr::Contains {
            path,
            needle,
            negated,
        } => text_test(item, path, *negated, |text| {
            text.contains(&needle.to_lowercase())
        }),
        Expr::In {
            path,
            values,
            negated,
        } => {
            let field = get_path(item, path);
            let any = values.iter().any(|v| compare(field, CmpOp::Eq, v));
            // SQL: NULL NOT IN (...) is unknown, hence false.
            if *negated {
                present(field).is_some() && !any
            } else {
                any
            }
        }
    }
}

/// Runs a test on the lower-cased text of a field; a missing field is false
/// either way (SQL: NULL LIKE / NOT LIKE are both unknown).
fn text_test(item: &Value, path: &str, negated: bool, test: impl Fn(&str) -> bool) -> bool {
    let text = match present(get_path(item, path)) {
        Some(Value::String(s)) => s.to_lowercase(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return false,
    };
    test(&text) != negated
}

fn present(field: Option<&Value>) -> Option<&Value> {
    field.filter(|v| !v.is_null())
}

fn compare(field: Option<&Value>, op: CmpOp, literal: &Literal) -> bool {
    match (present(field), literal) {
        (None, Literal::Null) => op == CmpOp::Eq,
        (None, _) => false,
        (Some(_), Literal::Null) => op == CmpOp::Ne,
        (Some(v), lit) => order_against(v, lit).is_some_and(|ord| op.holds(ord)),
    }
}

/// Orders a field value against a literal; `None` when the types don't
/// compare (which makes every operator false, like a failed SQL conversion).
fn order_against(v: &Value, lit: &Literal) -> Option<Ordering> {
    match (v, lit) {
        (Value::Number(n), Literal::Num(x)) => n.as_f64()?.partial_cmp(x),
        // SQL Server converts a numeric string for comparison with a number.
        (Value::Number(n), Literal::Str(s)) => n.as_f64()?.partial_cmp(&s.trim().parse().ok()?),
        (Value::String(s), Literal::Num(x)) => s.trim().parse::<f64>().ok()?.partial_cmp(x),
        (Value::String(s), Literal::Str(t)) => Some(cmp_ci(s, t)),
        (Value::String(s), Literal::Date(d)) => Some(parse_datetime(s)?.cmp(d)),
        (Value::Bool(b), Literal::Bool(x)) => Some(b.cmp(x)),
        _ => None,
    }
}

fn cmp_ci(a: &str, b: &str) -> Ordering {
    a.to_lowercase().cmp(&b.to_lowercase())
}

/// `*` (ConnectWise) and `%` (SQL) are both "any run of characters".
fn glob_match(pattern: &str, text: &str) -> bool {
    let is_wild = |c: char| c == '*' || c == '%';
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Last wildcard seen and the text position it currently absorbs up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && is_wild(p[pi]) {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            star = Some((sp, st + 1));
            pi = sp + 1;
            ti = st + 1;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| is_wild(c))
}

/// Looks up a slash-separated path (`company/id`). Keys match exactly, or
/// else case-insensitively, since ConnectWise field names are case-insensitive.
pub fn get_path<'a>(item: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .try_fold(item, |cur, seg| {
            get_key(cur.as_object()?, seg).map(|(_, v)| v)
        })
}

fn get_key<'a>(map: &'a Map<String, Value>, key: &str) -> Option<(&'a String, &'a Value)> {
    map.get_key_value(key)
        .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
}

/// Parses the date-time forms ConnectWise uses: RFC 3339 (`...Z`), a naive
/// `YYYY-MM-DDTHH:MM:SS` (taken as UTC) or a bare date (midnight UTC).
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(s, format) {
            return Some(d.and_utc());
        }
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(date.and_time(NaiveTime::MIN).and_utc())
}

// ---------------------------------------------------------------- orderBy

/// Parses `name asc, id desc` into `(path, descending)` keys.
pub fn parse_order_by(input: &str) -> Result<Vec<(String, bool)>, QueryError> {
    if input.trim().is_empty() {
        return Ok(Vec::new());
    }
    input.split(',').map(parse_order_key).collect()
}

fn parse_order_key(part: &str) -> Result<(String, bool), QueryError> {
    let mut words = part.split_whitespace();
    let Some(path) = words.next() else {
        return err("Empty key in orderBy".to_string());
    };
    if !path.starts_with(is_word_start) || !path.chars().all(is_word_char) {
        return err(format!("Invalid field '{path}' in orderBy"));
    }
    let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return err(format!(
                "Expected 'asc' or 'desc' after '{path}' in orderBy, found '{other}'"
            ));
        }
    };
    if let Some(extra) = words.next() {
        return err(format!(
            "Unexpected '{extra}' in orderBy key '{}'",
            part.trim()
        ));
    }
    Ok((path.to_string(), descending))
}

/// Stable sort by the keys; null/missing sort first ascending (SQL Server).
pub fn sort_items(items: &mut [Value], order: &[(String, bool)]) {
    if order.is_empty() {
        return;
    }
    items.sort_by(|a, b| {
        order
            .iter()
            .map(|(path, descending)| {
                let ord = sort_cmp(get_path(a, path), get_path(b, path));
                if *descending { ord.reverse() } else { ord }
            })
            .find(|ord| ord.is_ne())
            .unwrap_or(Ordering::Equal)
    });
}

fn sort_cmp(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (present(a), present(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.total_cmp(&y)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => cmp_ci(x, y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(x), Some(y)) => type_rank(x).cmp(&type_rank(y)),
    }
}

/// Fallback order between mismatched types, so sorting stays total.
fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

// ---------------------------------------------------------------- fields

/// Keeps only the listed paths (`id,name,company/id`). A path naming an
/// object keeps it whole; unknown paths are absent; `""` keeps everything.
pub fn project_fields(item: &Value, fields: &str) -> Value {
    let paths: Vec<&str> = fields
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if paths.is_empty() || !item.is_object() {
        return item.clone();
    }
    let mut out = Value::Object(Map::new());
    for path in paths {
        copy_path(item, &mut out, path);
    }
    out
}

/// Copies `path` from `src` into `dst`, creating parent objects and keeping
/// the source's spelling of each key.
fn copy_path(src: &Value, dst: &mut Value, path: &str) {
    // Resolve first so an unknown leaf doesn't leave an empty parent behind.
    if get_path(src, path).is_none() {
        return;
    }
    let mut segments = path.split('/').filter(|s| !s.is_empty()).peekable();
    let (mut src, mut dst) = (src, dst);
    while let Some(seg) = segments.next() {
        let (Some(src_map), Some(dst_map)) = (src.as_object(), dst.as_object_mut()) else {
            return;
        };
        let Some((key, value)) = get_key(src_map, seg) else {
            return;
        };
        if segments.peek().is_none() {
            dst_map.insert(key.clone(), value.clone());
            return;
        }
        src = value;
        dst = dst_map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agreement() -> Value {
        json!({
            "id": 5,
            "name": "Acme Sophos",
            "company": {"id": 3, "identifier": "Acme", "name": "Acme Ltd"},
            "type": {"id": 2, "name": "Sophos MSP"},
            "cancelledFlag": false,
            "agreementStatus": "Active",
            "startDate": "2025-01-01T00:00:00Z",
            "billAmount": 12.5,
            "parentAgreement": null
        })
    }

    fn check(conditions: &str) -> bool {
        let expr = parse_conditions(conditions)
            .unwrap_or_else(|e| panic!("{conditions:?} should parse: {e}"));
        matches(&expr, &agreement())
    }

    fn parse_error(conditions: &str) -> String {
        match parse_conditions(conditions) {
            Ok(expr) => panic!("{conditions:?} should not parse, got {expr:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_conditions_match_everything() {
        assert_eq!(parse_conditions("").unwrap(), Expr::All);
        assert_eq!(parse_conditions("   ").unwrap(), Expr::All);
        assert!(check(""));
    }

    #[test]
    fn numeric_comparison_operators() {
        assert!(check("id = 5"));
        assert!(!check("id = 6"));
        assert!(check("id != 6"));
        assert!(!check("id != 5"));
        assert!(check("id <> 6"));
        assert!(check("id < 6") && !check("id < 5"));
        assert!(check("id <= 5") && !check("id <= 4"));
        assert!(check("id > 4") && !check("id > 5"));
        assert!(check("id >= 5") && !check("id >= 6"));
        assert!(check("billAmount = 12.5"));
        assert!(check("billAmount > -1"));
        assert!(check("billAmount < 12.75"));
        assert!(check("id = 5.0"));
    }

    #[test]
    fn whitespace_is_flexible() {
        assert!(check("company/id=3"));
        assert!(check("  company/id   =   3  "));
        assert!(check("(id=5)and(name=\"acme sophos\")"));
    }

    #[test]
    fn string_comparisons_are_case_insensitive() {
        assert!(check("name = \"Acme Sophos\""));
        assert!(check("name = \"ACME SOPHOS\""));
        assert!(check("name != \"Other\""));
        assert!(!check("name != \"acme sophos\""));
        assert!(check("name > \"aaa\""));
        assert!(check("name < \"ACME T\""));
        assert!(check("agreementStatus = 'active'"));
    }

    #[test]
    fn string_escapes() {
        let item = json!({"name": "Say \"hi\" it's"});
        let expr = parse_conditions(r#"name = "say \"HI\" it's""#).unwrap();
        assert!(matches(&expr, &item));
        let expr = parse_conditions(r#"name = 'say \"hi\" it\'s'"#).unwrap();
        assert!(matches(&expr, &item));
    }

    #[test]
    fn like_wildcards() {
        assert!(check("name like \"Acme*\""));
        assert!(check("name like \"*sophos\""));
        assert!(check("name like \"a*s\""));
        assert!(check("name like \"*me So*\""));
        assert!(check("name like \"acme sophos\""));
        assert!(check("name like \"*\""));
        assert!(check("name like \"Acme%\""));
        assert!(!check("name like \"Acme\""));
        assert!(!check("name like \"*xyz*\""));
        assert!(!check("name like \"Sophos*\""));
        assert!(check("name not like \"Sophos*\""));
        assert!(!check("name not like \"ACME*\""));
        assert!(check("company/identifier LIKE \"ac*\""));
    }

    #[test]
    fn like_backtracks_over_repeated_text() {
        let item = json!({"name": "aXbXbXc"});
        let expr = parse_conditions("name like \"a*bXc\"").unwrap();
        assert!(matches(&expr, &item));
        let expr = parse_conditions("name like \"a*b*b*b*c\"").unwrap();
        assert!(!matches(&expr, &item));
    }

    #[test]
    fn contains_is_case_insensitive_substring() {
        assert!(check("name contains \"SOPH\""));
        assert!(check("type/name contains \"msp\""));
        assert!(!check("name contains \"xyz\""));
        assert!(check("name not contains \"xyz\""));
    }

    #[test]
    fn in_and_not_in() {
        assert!(check("id in (1, 5, 9)"));
        assert!(!check("id in (1,2,3)"));
        assert!(check("id not in (1,2,3)"));
        assert!(!check("id not in (5)"));
        assert!(check("agreementStatus in (\"active\", \"Cancelled\")"));
        assert!(!check("agreementStatus in (\"Expired\",\"Cancelled\")"));
        assert!(check("agreementStatus NOT IN ('Expired')"));
        assert!(check("parentAgreement in (null, 1)"));
        assert!(!check("missingField not in (1)"));
    }

    #[test]
    fn and_binds_tighter_than_or() {
        // false and false or true => true
        assert!(check("id = 1 and id = 2 or id = 5"));
        // true or (false and false) => true; a left-to-right reading would give false.
        assert!(check("id = 5 or id = 1 and id = 2"));
        // parentheses override precedence: (true or false) and false => false
        assert!(!check("(id = 5 or id = 1) and id = 2"));
        assert!(check("(id = 5 OR id = 1) AND (name like \"acme*\")"));
        assert!(check("((id = 5))"));
    }

    #[test]
    fn nested_paths_and_case_insensitive_keys() {
        assert!(check("company/id = 3"));
        assert!(check("company/identifier = \"ACME\""));
        assert!(check("type/name = \"Sophos MSP\""));
        assert!(check("Company/Id = 3"));
        assert!(!check("company/missing = 3"));
        assert!(!check("name/id = 3"));
    }

    #[test]
    fn booleans() {
        assert!(check("cancelledFlag = false"));
        assert!(!check("cancelledFlag = true"));
        assert!(check("cancelledFlag != TRUE"));
    }

    #[test]
    fn null_and_missing_fields() {
        assert!(check("parentAgreement = null"));
        assert!(check("noSuchField = null"));
        assert!(!check("parentAgreement != null"));
        assert!(check("company != null"));
        assert!(!check("company = null"));
        assert!(!check("noSuchField = 3"));
        assert!(!check("noSuchField != 3"));
        assert!(!check("noSuchField like \"*\""));
        assert!(!check("noSuchField not like \"x\""));
    }

    #[test]
    fn bracketed_dates() {
        assert!(check("startDate = [2025-01-01T00:00:00Z]"));
        assert!(check("startDate = [2025-01-01]"));
        assert!(check("startDate < [2025-05-01T00:00:00Z]"));
        assert!(check("startDate >= [2024-12-31T23:59:59Z]"));
        assert!(!check("startDate > [2025-01-01]"));
        assert!(check("startDate < [2025-01-01T01:00:00+00:30]"));
        assert!(!check("name > [2025-01-01]"));
    }

    #[test]
    fn type_mismatches_are_false() {
        assert!(!check("company = 3"));
        assert!(!check("cancelledFlag = 0"));
        assert!(check("id = \"5\""));
    }

    #[test]
    fn syntax_errors_name_the_position() {
        assert_eq!(
            parse_error("name "),
            "Expected an operator after 'name' at position 5"
        );
        assert_eq!(
            parse_error("name foo \"x\""),
            "Expected an operator after 'name' at position 5"
        );
        assert_eq!(
            parse_error("name = \"abc"),
            "Unterminated string starting at position 7"
        );
        assert_eq!(
            parse_error("id = 5 and"),
            "Expected a condition after 'and' at position 10"
        );
        assert!(parse_error("(id = 5").starts_with("Expected ')' to close '(' at position 0"));
        assert_eq!(parse_error("id = 5)"), "Unbalanced ')' at position 6");
        assert_eq!(parse_error("id ! 5"), "Unknown operator '!' at position 3");
        assert_eq!(
            parse_error("id = 5 id = 6"),
            "Unexpected 'id' at position 7"
        );
        assert!(parse_error("name = abc").contains("strings must be quoted"));
        assert!(parse_error("id in 1,2").starts_with("Expected '(' after 'in'"));
        assert!(parse_error("id in (1,2").starts_with("Expected ',' or ')'"));
        assert!(parse_error("name like 5").starts_with("Expected a quoted string after 'like'"));
        assert!(parse_error("startDate > [2025-13-01]").starts_with("Invalid date"));
        assert!(parse_error("and id = 5").starts_with("Expected a field name at position 0"));
        assert!(parse_error("id = 5 # 3").starts_with("Unexpected character '#'"));
    }

    #[test]
    fn order_by_parsing() {
        assert_eq!(
            parse_order_by("name asc, id DESC,company/id").unwrap(),
            vec![
                ("name".to_string(), false),
                ("id".to_string(), true),
                ("company/id".to_string(), false)
            ]
        );
        assert!(parse_order_by("").unwrap().is_empty());
        assert!(parse_order_by("name sideways").is_err());
        assert!(parse_order_by("name,,id").is_err());
        assert!(parse_order_by("name asc extra").is_err());
    }

    fn ids(items: &[Value]) -> Vec<i64> {
        items.iter().map(|i| i["id"].as_i64().unwrap()).collect()
    }

    #[test]
    fn sort_multi_key_asc_desc() {
        let mut items = vec![
            json!({"id": 1, "name": "beta", "qty": 10}),
            json!({"id": 2, "name": "Alpha", "qty": 2}),
            json!({"id": 3, "name": "alpha", "qty": 9}),
            json!({"id": 4, "qty": 100}),
            json!({"id": 5, "name": "BETA", "qty": 1}),
        ];
        sort_items(&mut items, &parse_order_by("name asc, qty desc").unwrap());
        assert_eq!(ids(&items), vec![4, 3, 2, 1, 5]);
        sort_items(&mut items, &parse_order_by("qty").unwrap());
        assert_eq!(ids(&items), vec![5, 2, 3, 1, 4]);
        sort_items(&mut items, &parse_order_by("name desc").unwrap());
        // Case-insensitive ties keep their previous (qty-sorted) order: stable.
        assert_eq!(ids(&items), vec![5, 1, 2, 3, 4]);
    }

    #[test]
    fn sort_nested_numbers_numerically() {
        let mut items = vec![
            json!({"id": 1, "company": {"id": 10}}),
            json!({"id": 2, "company": {"id": 9}}),
            json!({"id": 3, "company": {"id": 100}}),
        ];
        sort_items(&mut items, &[("company/id".to_string(), false)]);
        assert_eq!(ids(&items), vec![2, 1, 3]);
    }

    #[test]
    fn fields_projection() {
        let item = agreement();
        assert_eq!(
            project_fields(&item, "id, name,company/id,company/name,nope,type/nope"),
            json!({"id": 5, "name": "Acme Sophos", "company": {"id": 3, "name": "Acme Ltd"}})
        );
        assert_eq!(
            project_fields(&item, "company,company/id"),
            json!({"company": {"id": 3, "identifier": "Acme", "name": "Acme Ltd"}})
        );
        assert_eq!(project_fields(&item, ""), item);
        assert_eq!(
            project_fields(&item, "Name"),
            json!({"name": "Acme Sophos"})
        );
        assert_eq!(
            project_fields(&item, "parentAgreement"),
            json!({"parentAgreement": null})
        );
    }
}
