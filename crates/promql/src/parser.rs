//! Lexer and recursive-descent parser for the supported PromQL subset.

use regex::Regex;

use crate::storage::{valid_label_name, valid_metric_name};
use crate::{Limits, PromqlError};

/// Expression tree. Every node knows the byte position it starts at.
#[derive(Debug, Clone)]
pub enum Expr {
    Number(f64),
    /// Instant vector selector.
    Selector(Selector),
    /// Range vector selector: the selector and its range in milliseconds.
    Range(Selector, i64),
    Call {
        func: Func,
        args: Vec<Expr>,
        pos: usize,
    },
    Aggregate {
        op: AggOp,
        param: Option<Box<Expr>>,
        expr: Box<Expr>,
        grouping: Grouping,
        pos: usize,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        return_bool: bool,
        matching: Option<Matching>,
        pos: usize,
    },
    Neg(Box<Expr>),
}

/// The type of value an expression evaluates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Scalar,
    Vector,
    Matrix,
}

impl ValueType {
    fn name(self) -> &'static str {
        match self {
            ValueType::Scalar => "scalar",
            ValueType::Vector => "instant vector",
            ValueType::Matrix => "range vector",
        }
    }
}

impl Expr {
    pub fn value_type(&self) -> ValueType {
        match self {
            Expr::Number(_) => ValueType::Scalar,
            Expr::Call { func: Func::Time | Func::Scalar, .. } => ValueType::Scalar,
            Expr::Selector(_) | Expr::Call { .. } | Expr::Aggregate { .. } => ValueType::Vector,
            Expr::Range(..) => ValueType::Matrix,
            Expr::Binary { lhs, rhs, .. } => {
                if lhs.value_type() == ValueType::Scalar && rhs.value_type() == ValueType::Scalar {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
            Expr::Neg(e) => e.value_type(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Selector {
    pub matchers: Vec<Matcher>,
    pub offset_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    pub re: Option<Regex>,
}

impl Matcher {
    pub fn matches(&self, v: &str) -> bool {
        match (&self.op, &self.re) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::Ne, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::NotRe, Some(re)) => !re.is_match(v),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Rate,
    Increase,
    Delta,
    Deriv,
    Changes,
    Resets,
    Absent,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    SumOverTime,
    CountOverTime,
    LastOverTime,
    Irate,
    Idelta,
    StddevOverTime,
    StdvarOverTime,
    Abs,
    Time,
    Scalar,
    Vector,
    QuantileOverTime,
    Ceil,
    Floor,
    Sqrt,
    Exp,
    Ln,
    Log2,
    Log10,
}

impl Func {
    fn from_name(s: &str) -> Option<Func> {
        Some(match s {
            "rate" => Func::Rate,
            "increase" => Func::Increase,
            "delta" => Func::Delta,
            "deriv" => Func::Deriv,
            "changes" => Func::Changes,
            "resets" => Func::Resets,
            "absent" => Func::Absent,
            "avg_over_time" => Func::AvgOverTime,
            "min_over_time" => Func::MinOverTime,
            "max_over_time" => Func::MaxOverTime,
            "sum_over_time" => Func::SumOverTime,
            "count_over_time" => Func::CountOverTime,
            "last_over_time" => Func::LastOverTime,
            "irate" => Func::Irate,
            "idelta" => Func::Idelta,
            "stddev_over_time" => Func::StddevOverTime,
            "stdvar_over_time" => Func::StdvarOverTime,
            "abs" => Func::Abs,
            "time" => Func::Time,
            "scalar" => Func::Scalar,
            "vector" => Func::Vector,
            "quantile_over_time" => Func::QuantileOverTime,
            "ceil" => Func::Ceil,
            "floor" => Func::Floor,
            "sqrt" => Func::Sqrt,
            "exp" => Func::Exp,
            "ln" => Func::Ln,
            "log2" => Func::Log2,
            "log10" => Func::Log10,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Topk,
    Bottomk,
    Quantile,
    Stddev,
    Stdvar,
    Group,
}

impl AggOp {
    fn from_name(s: &str) -> Option<AggOp> {
        Some(match s {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "count" => AggOp::Count,
            "topk" => AggOp::Topk,
            "bottomk" => AggOp::Bottomk,
            "quantile" => AggOp::Quantile,
            "stddev" => AggOp::Stddev,
            "stdvar" => AggOp::Stdvar,
            "group" => AggOp::Group,
            _ => return None,
        })
    }
}

/// `by (...)` keeps the listed labels; `without (...)` drops them.
#[derive(Debug, Clone, Default)]
pub struct Grouping {
    pub without: bool,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Matching {
    /// `on` (true) or `ignoring` (false).
    pub on: bool,
    pub labels: Vec<String>,
    pub card: Card,
    /// Labels `group_left(...)`/`group_right(...)` copy from the "one" side.
    pub include: Vec<String>,
}

/// Cardinality of a vector match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Card {
    OneToOne,
    /// `group_left`: many series on the left to one on the right.
    ManyToOne,
    /// `group_right`: one series on the left to many on the right.
    OneToMany,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }
    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge)
    }
    fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And | BinOp::Unless => 2,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 5,
            BinOp::Pow => 6,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Number(f64),
    Duration(i64),
    Str(String),
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    /// `=`, `!=`, `=~`, `!~`, `==`, `<`, `<=`, `>`, `>=`, `+`, `-`, `*`, `/`, `%`, `^`
    Op(&'static str),
    Eof,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("identifier {s:?}"),
        Tok::Number(n) => format!("number {n}"),
        Tok::Duration(_) => "duration".into(),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::LBrace => "'{'".into(),
        Tok::RBrace => "'}'".into(),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::LBracket => "'['".into(),
        Tok::RBracket => "']'".into(),
        Tok::Comma => "','".into(),
        Tok::Op(o) => format!("'{o}'"),
        Tok::Eof => "end of query".into(),
    }
}

fn perr<T>(pos: usize, msg: impl Into<String>) -> Result<T, PromqlError> {
    Err(PromqlError::Parse { pos, msg: msg.into() })
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, PromqlError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let tok = match c {
            b'{' => Tok::LBrace,
            b'}' => Tok::RBrace,
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'[' => Tok::LBracket,
            b']' => Tok::RBracket,
            b',' => Tok::Comma,
            b'+' => Tok::Op("+"),
            b'-' => Tok::Op("-"),
            b'*' => Tok::Op("*"),
            b'/' => Tok::Op("/"),
            b'%' => Tok::Op("%"),
            b'^' => Tok::Op("^"),
            b'=' => match b.get(i + 1) {
                Some(b'=') => {
                    i += 1;
                    Tok::Op("==")
                }
                Some(b'~') => {
                    i += 1;
                    Tok::Op("=~")
                }
                _ => Tok::Op("="),
            },
            b'!' => match b.get(i + 1) {
                Some(b'=') => {
                    i += 1;
                    Tok::Op("!=")
                }
                Some(b'~') => {
                    i += 1;
                    Tok::Op("!~")
                }
                _ => return perr(i, "unexpected '!' (expected '!=' or '!~')"),
            },
            b'<' | b'>' => {
                let eq = b.get(i + 1) == Some(&b'=');
                if eq {
                    i += 1;
                }
                Tok::Op(match (c, eq) {
                    (b'<', false) => "<",
                    (b'<', true) => "<=",
                    (_, false) => ">",
                    _ => ">=",
                })
            }
            b'"' | b'\'' | b'`' => {
                let (s, end) = lex_string(src, i)?;
                out.push((start, Tok::Str(s)));
                i = end;
                continue;
            }
            b'0'..=b'9' | b'.' => {
                let (t, end) = lex_number(src, i)?;
                out.push((start, t));
                i = end;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                    i += 1;
                }
                out.push((start, Tok::Ident(src[start..i].to_string())));
                continue;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return perr(i, format!("unexpected character {ch:?}"));
            }
        };
        out.push((start, tok));
        i += 1;
    }
    out.push((src.len(), Tok::Eof));
    Ok(out)
}

fn lex_string(src: &str, start: usize) -> Result<(String, usize), PromqlError> {
    let quote = src.as_bytes()[start] as char;
    let mut out = String::new();
    let mut it = src[start + 1..].char_indices();
    while let Some((off, c)) = it.next() {
        if c == quote {
            return Ok((out, start + 1 + off + 1));
        }
        if c == '\\' && quote != '`' {
            match it.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, c @ ('\\' | '"' | '\''))) => out.push(c),
                Some((_, c)) => return perr(start + 1 + off, format!("unknown escape sequence '\\{c}'")),
                None => break,
            }
        } else {
            out.push(c);
        }
    }
    perr(start, "unterminated string")
}

fn lex_number(src: &str, start: usize) -> Result<(Tok, usize), PromqlError> {
    let b = src.as_bytes();
    let mut i = start;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    // A duration: digits followed by a unit, possibly several (1h30m).
    if i > start && i < b.len() && matches!(b[i], b's' | b'm' | b'h' | b'd' | b'w' | b'y') {
        let mut total: i64 = 0;
        let mut j = start;
        loop {
            let ds = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j == ds {
                break;
            }
            let n: i64 = match src[ds..j].parse() {
                Ok(n) if n <= 1_000_000_000 => n,
                _ => return perr(ds, "duration too large"),
            };
            let (unit, len) = match (b.get(j), b.get(j + 1)) {
                (Some(b'm'), Some(b's')) => (1, 2),
                (Some(b's'), _) => (1000, 1),
                (Some(b'm'), _) => (60_000, 1),
                (Some(b'h'), _) => (3_600_000, 1),
                (Some(b'd'), _) => (86_400_000, 1),
                (Some(b'w'), _) => (604_800_000, 1),
                (Some(b'y'), _) => (31_536_000_000, 1),
                _ => return perr(j, "duration number without a unit (ms, s, m, h, d, w, y)"),
            };
            total = match n.checked_mul(unit).and_then(|v| total.checked_add(v)) {
                Some(t) => t,
                None => return perr(ds, "duration too large"),
            };
            j += len;
        }
        if j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            return perr(j, "invalid duration");
        }
        return Ok((Tok::Duration(total), j));
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let ds = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > ds {
            i = j;
        }
    }
    if i < b.len() && (b[i].is_ascii_alphabetic() || b[i] == b'_') {
        return perr(i, "invalid number");
    }
    match src[start..i].parse::<f64>() {
        Ok(v) => Ok((Tok::Number(v), i)),
        Err(_) => perr(start, format!("invalid number {:?}", &src[start..i])),
    }
}

struct Parser<'a> {
    toks: Vec<(usize, Tok)>,
    at: usize,
    depth: usize,
    limits: &'a Limits,
}

/// Parses a query with the default limits.
pub fn parse(query: &str) -> Result<Expr, PromqlError> {
    parse_with(query, &Limits::default())
}

pub(crate) fn parse_with(query: &str, limits: &Limits) -> Result<Expr, PromqlError> {
    if query.len() > limits.max_query_bytes {
        return Err(PromqlError::Limit(format!(
            "query is {} bytes, at most {} allowed",
            query.len(),
            limits.max_query_bytes
        )));
    }
    let toks = lex(query)?;
    let mut p = Parser { toks, at: 0, depth: 0, limits };
    let e = p.expr(0)?;
    let (pos, t) = p.peek_full();
    if *t != Tok::Eof {
        return perr(pos, format!("unexpected {} after the expression", describe(t)));
    }
    Ok(e)
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.at.min(self.toks.len() - 1)].1
    }
    fn peek_full(&self) -> (usize, &Tok) {
        let (p, t) = &self.toks[self.at.min(self.toks.len() - 1)];
        (*p, t)
    }
    fn pos(&self) -> usize {
        self.peek_full().0
    }
    fn next(&mut self) -> (usize, Tok) {
        let t = self.toks[self.at.min(self.toks.len() - 1)].clone();
        if self.at < self.toks.len() - 1 {
            self.at += 1;
        }
        t
    }
    fn expect(&mut self, want: Tok, what: &str) -> Result<usize, PromqlError> {
        let (pos, t) = self.next();
        if t == want {
            Ok(pos)
        } else {
            perr(pos, format!("expected {what}, found {}", describe(&t)))
        }
    }
    fn enter(&mut self) -> Result<(), PromqlError> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(PromqlError::Limit(format!(
                "query nests deeper than {} at position {}",
                self.limits.max_depth,
                self.pos()
            )));
        }
        Ok(())
    }

    fn binop(&self) -> Option<BinOp> {
        match self.peek() {
            Tok::Op(o) => Some(match *o {
                "+" => BinOp::Add,
                "-" => BinOp::Sub,
                "*" => BinOp::Mul,
                "/" => BinOp::Div,
                "%" => BinOp::Mod,
                "^" => BinOp::Pow,
                "==" => BinOp::Eq,
                "!=" => BinOp::Ne,
                "<" => BinOp::Lt,
                "<=" => BinOp::Le,
                ">" => BinOp::Gt,
                ">=" => BinOp::Ge,
                _ => return None,
            }),
            Tok::Ident(k) => match k.as_str() {
                "and" => Some(BinOp::And),
                "or" => Some(BinOp::Or),
                "unless" => Some(BinOp::Unless),
                _ => None,
            },
            _ => None,
        }
    }

    fn expr(&mut self, min_prec: u8) -> Result<Expr, PromqlError> {
        self.enter()?;
        let entered = self.depth;
        let mut lhs = self.unary()?;
        while let Some(op) = self.binop() {
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            // Each operator of a chain nests the tree one level deeper.
            self.enter()?;
            let pos = self.next().0;
            let mut return_bool = false;
            if matches!(self.peek(), Tok::Ident(k) if k == "bool") {
                if !op.is_comparison() {
                    return perr(self.pos(), "bool modifier can only be used on comparison operators");
                }
                self.next();
                return_bool = true;
            }
            let matching = self.matching(op)?;
            // `^` is right-associative; the others are left-associative.
            let next_min = if op == BinOp::Pow { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            lhs = self.check_binary(op, lhs, rhs, return_bool, matching, pos)?;
        }
        self.depth = entered - 1;
        Ok(lhs)
    }

    /// `on(...)`/`ignoring(...)`, then `group_left`/`group_right` with an
    /// optional label list.
    fn matching(&mut self, op: BinOp) -> Result<Option<Matching>, PromqlError> {
        let on = match self.peek() {
            Tok::Ident(k) if k == "on" => true,
            Tok::Ident(k) if k == "ignoring" => false,
            Tok::Ident(k) if k == "group_left" || k == "group_right" => {
                return perr(self.pos(), format!("'{k}' needs on(...) or ignoring(...) before it"));
            }
            _ => return Ok(None),
        };
        self.next();
        let labels = self.label_list()?;
        let (gpos, card) = match self.peek_full() {
            (p, Tok::Ident(k)) if k == "group_left" => (p, Card::ManyToOne),
            (p, Tok::Ident(k)) if k == "group_right" => (p, Card::OneToMany),
            _ => return Ok(Some(Matching { on, labels, card: Card::OneToOne, include: Vec::new() })),
        };
        if op.is_set() {
            return perr(gpos, "no grouping allowed for set operations (and, or, unless)");
        }
        self.next();
        let include = if *self.peek() == Tok::LParen { self.label_list()? } else { Vec::new() };
        if on {
            if let Some(l) = include.iter().find(|l| labels.contains(l)) {
                return perr(gpos, format!("label {l:?} must not occur in ON and GROUP clause at once"));
            }
        }
        Ok(Some(Matching { on, labels, card, include }))
    }

    fn check_binary(
        &self,
        op: BinOp,
        lhs: Expr,
        rhs: Expr,
        return_bool: bool,
        matching: Option<Matching>,
        pos: usize,
    ) -> Result<Expr, PromqlError> {
        let (lt, rt) = (lhs.value_type(), rhs.value_type());
        for t in [lt, rt] {
            if t == ValueType::Matrix {
                return perr(pos, "binary expression must contain only scalar and instant vector types");
            }
        }
        if op.is_set() && (lt != ValueType::Vector || rt != ValueType::Vector) {
            return perr(pos, "set operators (and, or, unless) are only allowed between instant vectors");
        }
        let both_scalar = lt == ValueType::Scalar && rt == ValueType::Scalar;
        if both_scalar && op.is_comparison() && !return_bool {
            return perr(pos, "comparisons between scalars must use the bool modifier");
        }
        if matching.is_some() && (lt != ValueType::Vector || rt != ValueType::Vector) {
            return perr(pos, "vector matching only allowed between instant vectors");
        }
        Ok(Expr::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs), return_bool, matching, pos })
    }

    fn unary(&mut self) -> Result<Expr, PromqlError> {
        match self.peek() {
            Tok::Op("-") | Tok::Op("+") => {
                let (pos, t) = self.next();
                self.enter()?;
                // Unary minus binds looser than `^`: -2^2 is -4.
                let e = self.unary()?;
                self.depth -= 1;
                if e.value_type() == ValueType::Matrix {
                    return perr(pos, "unary expression only allowed on expressions of type scalar or instant vector");
                }
                Ok(match (t, e) {
                    (Tok::Op("+"), e) => e,
                    (_, Expr::Number(n)) => Expr::Number(-n),
                    (_, e) => Expr::Neg(Box::new(e)),
                })
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<Expr, PromqlError> {
        let lhs = self.postfix()?;
        if self.binop() == Some(BinOp::Pow) {
            let pos = self.next().0;
            if matches!(self.peek(), Tok::Ident(k) if k == "bool") {
                return perr(self.pos(), "bool modifier can only be used on comparison operators");
            }
            let matching = self.matching(BinOp::Pow)?;
            self.enter()?;
            let rhs = self.unary()?;
            self.depth -= 1;
            return self.check_binary(BinOp::Pow, lhs, rhs, false, matching, pos);
        }
        Ok(lhs)
    }

    fn postfix(&mut self) -> Result<Expr, PromqlError> {
        let mut e = self.primary()?;
        if *self.peek() == Tok::LBracket {
            let pos = self.next().0;
            let Expr::Selector(sel) = e else {
                return perr(pos, "ranges only allowed for vector selectors (subqueries are not supported)");
            };
            let (dpos, t) = self.next();
            let Tok::Duration(d) = t else {
                return perr(dpos, format!("expected a duration in the range, found {}", describe(&t)));
            };
            if d <= 0 {
                return perr(dpos, "range must be positive");
            }
            if d > self.limits.max_range_ms {
                return Err(PromqlError::Limit(format!(
                    "range at position {dpos} is {} s, at most {} s allowed",
                    d / 1000,
                    self.limits.max_range_ms / 1000
                )));
            }
            if matches!(self.peek(), Tok::Ident(k) if k.starts_with(':')) {
                return perr(self.pos(), "subqueries are not supported");
            }
            self.expect(Tok::RBracket, "']'")?;
            e = Expr::Range(sel, d);
        }
        if matches!(self.peek(), Tok::Ident(k) if k == "offset") {
            let opos = self.next().0;
            let neg = if *self.peek() == Tok::Op("-") {
                self.next();
                true
            } else {
                false
            };
            let (dpos, t) = self.next();
            let Tok::Duration(d) = t else {
                return perr(dpos, format!("expected a duration after offset, found {}", describe(&t)));
            };
            if d > self.limits.max_range_ms {
                return Err(PromqlError::Limit(format!(
                    "offset at position {dpos} is {} s, at most {} s allowed",
                    d / 1000,
                    self.limits.max_range_ms / 1000
                )));
            }
            let d = if neg { -d } else { d };
            match &mut e {
                Expr::Selector(s) | Expr::Range(s, _) => s.offset_ms = d,
                _ => return perr(opos, "offset modifier must be preceded by a vector selector"),
            }
        }
        Ok(e)
    }

    fn label_list(&mut self) -> Result<Vec<String>, PromqlError> {
        self.expect(Tok::LParen, "'(' before the label list")?;
        let mut out = Vec::new();
        loop {
            let (pos, t) = self.next();
            match t {
                Tok::RParen => return Ok(out),
                Tok::Ident(s) if valid_label_name(&s) => out.push(s),
                t => return perr(pos, format!("expected a label name, found {}", describe(&t))),
            }
            let (pos, t) = self.next();
            match t {
                Tok::Comma => {}
                Tok::RParen => return Ok(out),
                t => return perr(pos, format!("expected ',' or ')' in the label list, found {}", describe(&t))),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, PromqlError> {
        let (pos, t) = self.next();
        match t {
            Tok::Number(n) => Ok(Expr::Number(n)),
            Tok::Duration(_) => perr(pos, "a duration is only allowed in a range or after offset"),
            Tok::Str(_) => perr(pos, "string literals are not supported as expressions"),
            Tok::LParen => {
                self.enter()?;
                let e = self.expr(0)?;
                self.depth -= 1;
                self.expect(Tok::RParen, "')'")?;
                Ok(e)
            }
            Tok::LBrace => {
                let matchers = self.matchers(pos, None)?;
                Ok(Expr::Selector(Selector { matchers, offset_ms: 0 }))
            }
            Tok::Ident(name) => {
                if *self.peek() != Tok::LBrace {
                    if let Some(v) = match name.to_ascii_lowercase().as_str() {
                        "inf" => Some(f64::INFINITY),
                        "nan" => Some(f64::NAN),
                        _ => None,
                    } {
                        return Ok(Expr::Number(v));
                    }
                }
                if let Some(op) = AggOp::from_name(&name) {
                    if matches!(self.peek(), Tok::LParen)
                        || matches!(self.peek(), Tok::Ident(k) if k == "by" || k == "without")
                    {
                        return self.aggregate(op, pos);
                    }
                }
                if *self.peek() == Tok::LParen {
                    let Some(func) = Func::from_name(&name) else {
                        return perr(pos, format!("unknown or unsupported function {name:?}"));
                    };
                    return self.call(func, pos);
                }
                if matches!(
                    name.as_str(),
                    "by" | "without" | "on" | "ignoring" | "bool" | "offset" | "group_left" | "group_right"
                ) {
                    return perr(pos, format!("unexpected keyword {name:?}"));
                }
                if !valid_metric_name(&name) {
                    return perr(pos, format!("invalid metric name {name:?}"));
                }
                let name_m = Matcher { name: "__name__".into(), op: MatchOp::Eq, value: name, re: None };
                let matchers = if *self.peek() == Tok::LBrace {
                    let p = self.next().0;
                    self.matchers(p, Some(name_m))?
                } else {
                    vec![name_m]
                };
                Ok(Expr::Selector(Selector { matchers, offset_ms: 0 }))
            }
            t => perr(pos, format!("unexpected {}", describe(&t))),
        }
    }

    fn matchers(&mut self, open: usize, name: Option<Matcher>) -> Result<Vec<Matcher>, PromqlError> {
        let mut out: Vec<Matcher> = name.into_iter().collect();
        loop {
            let (pos, t) = self.next();
            let label = match t {
                Tok::RBrace => break,
                Tok::Ident(s) if valid_label_name(&s) => s,
                t => return perr(pos, format!("expected a label name in the selector, found {}", describe(&t))),
            };
            let (opos, t) = self.next();
            let op = match t {
                Tok::Op("=") => MatchOp::Eq,
                Tok::Op("!=") => MatchOp::Ne,
                Tok::Op("=~") => MatchOp::Re,
                Tok::Op("!~") => MatchOp::NotRe,
                t => return perr(opos, format!("expected a label matcher (=, !=, =~, !~), found {}", describe(&t))),
            };
            let (vpos, t) = self.next();
            let Tok::Str(value) = t else {
                return perr(vpos, format!("expected a quoted label value, found {}", describe(&t)));
            };
            let re = match op {
                MatchOp::Re | MatchOp::NotRe => Some(self.regex(&value, vpos)?),
                _ => None,
            };
            out.push(Matcher { name: label, op, value, re });
            let (cpos, t) = self.next();
            match t {
                Tok::Comma => {}
                Tok::RBrace => break,
                t => return perr(cpos, format!("expected ',' or '}}' in the selector, found {}", describe(&t))),
            }
        }
        if out.is_empty() || out.iter().all(|m| m.matches("")) {
            return perr(
                open,
                "vector selector must contain at least one matcher that does not match the empty string",
            );
        }
        Ok(out)
    }

    fn regex(&self, pat: &str, pos: usize) -> Result<Regex, PromqlError> {
        if pat.len() > self.limits.max_regex_bytes {
            return Err(PromqlError::Limit(format!(
                "regular expression at position {pos} is {} bytes, at most {} allowed",
                pat.len(),
                self.limits.max_regex_bytes
            )));
        }
        regex::RegexBuilder::new(&format!("^(?s:{pat})$"))
            .size_limit(self.limits.max_regex_compiled_bytes)
            .dfa_size_limit(self.limits.max_regex_compiled_bytes)
            .nest_limit(64)
            .build()
            .map_err(|e| PromqlError::Parse { pos, msg: format!("invalid regular expression {pat:?}: {e}") })
    }

    fn call(&mut self, func: Func, pos: usize) -> Result<Expr, PromqlError> {
        self.expect(Tok::LParen, "'('")?;
        let apos = self.pos();
        let want = match func {
            Func::Time => {
                self.expect(Tok::RParen, "')': time() takes no argument")?;
                return Ok(Expr::Call { func, args: Vec::new(), pos });
            }
            Func::Absent
            | Func::Abs
            | Func::Scalar
            | Func::Ceil
            | Func::Floor
            | Func::Sqrt
            | Func::Exp
            | Func::Ln
            | Func::Log2
            | Func::Log10 => ValueType::Vector,
            Func::QuantileOverTime => {
                self.enter()?;
                let q = self.expr(0)?;
                self.depth -= 1;
                if q.value_type() != ValueType::Scalar {
                    return perr(
                        apos,
                        format!("expected type scalar in call to function, got {}", q.value_type().name()),
                    );
                }
                self.expect(Tok::Comma, "',' after the quantile")?;
                let mpos = self.pos();
                self.enter()?;
                let m = self.expr(0)?;
                self.depth -= 1;
                self.expect(Tok::RParen, "')' after the function arguments")?;
                if m.value_type() != ValueType::Matrix {
                    return perr(
                        mpos,
                        format!("expected type range vector in call to function, got {}", m.value_type().name()),
                    );
                }
                return Ok(Expr::Call { func, args: vec![m, q], pos });
            }
            Func::Vector => ValueType::Scalar,
            _ => ValueType::Matrix,
        };
        self.enter()?;
        if *self.peek() == Tok::RParen {
            return perr(apos, "expected 1 argument, found none");
        }
        let arg = self.expr(0)?;
        self.depth -= 1;
        if *self.peek() == Tok::Comma {
            return perr(self.pos(), "expected 1 argument, found more");
        }
        self.expect(Tok::RParen, "')' after the function argument")?;
        if arg.value_type() != want {
            return perr(
                apos,
                format!("expected type {} in call to function, got {}", want.name(), arg.value_type().name()),
            );
        }
        Ok(Expr::Call { func, args: vec![arg], pos })
    }

    fn aggregate(&mut self, op: AggOp, pos: usize) -> Result<Expr, PromqlError> {
        let mut grouping = None;
        if let Tok::Ident(k) = self.peek() {
            if k == "by" || k == "without" {
                let without = k == "without";
                self.next();
                grouping = Some(Grouping { without, labels: self.label_list()? });
            }
        }
        self.expect(Tok::LParen, "'(' after the aggregation")?;
        self.enter()?;
        let mut param = None;
        if matches!(op, AggOp::Topk | AggOp::Bottomk | AggOp::Quantile) {
            let ppos = self.pos();
            let p = self.expr(0)?;
            if p.value_type() != ValueType::Scalar {
                return perr(ppos, "expected type scalar in aggregation parameter");
            }
            param = Some(Box::new(p));
            self.expect(Tok::Comma, "',' after the aggregation parameter")?;
        }
        let epos = self.pos();
        let e = self.expr(0)?;
        self.depth -= 1;
        self.expect(Tok::RParen, "')' after the aggregation")?;
        if e.value_type() != ValueType::Vector {
            return perr(
                epos,
                format!("expected type instant vector in aggregation expression, got {}", e.value_type().name()),
            );
        }
        if let Tok::Ident(k) = self.peek() {
            if k == "by" || k == "without" {
                if grouping.is_some() {
                    return perr(self.pos(), "aggregation has two grouping clauses");
                }
                let without = k == "without";
                self.next();
                grouping = Some(Grouping { without, labels: self.label_list()? });
            }
        }
        Ok(Expr::Aggregate { op, param, expr: Box::new(e), grouping: grouping.unwrap_or_default(), pos })
    }
}
