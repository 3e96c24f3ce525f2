//! The OData v4 `$filter` language subset the simulator understands: a lexer, a parser that
//! resolves and type-checks property paths against the entity model, and an evaluator over
//! rows. Supported: `eq ne gt ge lt le`, `and or not`, parentheses, property paths through
//! single-valued navigations (`Session/ConnectionState`), and literals (integers, decimals,
//! `'strings'` with `''` escapes, unquoted date-times with 0–7 fractional digits, date-only,
//! unquoted Guids, `null`, `true`, `false`). Anything else (functions, lambdas, arithmetic) is
//! rejected with a message, never silently ignored. It must not know about the other query
//! options or HTTP.
//!
//! Semantics chosen to match what the real service (ASP.NET OData over SQL Server) does as far
//! as known: `not` binds tighter than comparisons (`not (A eq 1)` needs the parentheses);
//! comparing with `null` is only true for `eq null` / `ne null`; ordering comparisons with a
//! null operand are false; string comparisons ignore case (SQL Server's default collation,
//! an inference); a date-only literal is midnight UTC; Guids and booleans allow only `eq`/`ne`.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};

use super::data::{Row, TenantData};
use super::schema::{EntityDef, NavDef, NavKind, Ty};
use super::value::{Val, parse_date_literal, parse_guid};

/// A `$filter` (or `$orderby`) the simulator cannot accept; the message names the problem.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct QueryError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError(msg.into()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Dec(f64),
    Str(String),
    Date(DateTime<Utc>),
    Guid(u128),
}

/// A resolved property path: navigations to follow, then a property of the last entity.
#[derive(Debug, Clone)]
pub struct Path {
    pub navs: Vec<(&'static EntityDef, &'static NavDef)>,
    pub prop: usize,
    pub ty: Ty,
}

#[derive(Debug, Clone)]
pub enum Expr {
    Lit(Lit),
    Prop(Path),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
}

/// Static type of an expression, for the checks ASP.NET OData does before running a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum T {
    Null,
    Bool,
    Num,
    Str,
    Date,
    Guid,
}

fn ty_of_prop(t: Ty) -> T {
    match t {
        Ty::Int32 | Ty::Int64 | Ty::Double => T::Num,
        Ty::Str => T::Str,
        Ty::Bool => T::Bool,
        Ty::Date => T::Date,
        Ty::Guid => T::Guid,
    }
}

// ---------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    Slash,
    Ident(String),
    Lit(Lit),
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, QueryError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => {
                out.push((start, Tok::LParen));
                i += 1;
            }
            b')' => {
                out.push((start, Tok::RParen));
                i += 1;
            }
            b',' => {
                out.push((start, Tok::Comma));
                i += 1;
            }
            b'/' => {
                out.push((start, Tok::Slash));
                i += 1;
            }
            b'\'' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match s[i..].find('\'') {
                        None => {
                            return err(format!("unterminated string literal at position {start}"));
                        }
                        Some(j) => {
                            v.push_str(&s[i..i + j]);
                            i += j + 1;
                            if b.get(i) == Some(&b'\'') {
                                v.push('\'');
                                i += 1;
                            } else {
                                break;
                            }
                        }
                    }
                }
                out.push((start, Tok::Lit(Lit::Str(v))));
            }
            _ if s.len() >= i + 36
                && s.is_char_boundary(i + 36)
                && parse_guid(&s[i..i + 36]).is_some()
                && b.get(i + 36).is_none_or(|&n| !ident_char(n) && n != b'-') =>
            {
                let g = parse_guid(&s[i..i + 36]).unwrap_or_default();
                out.push((start, Tok::Lit(Lit::Guid(g))));
                i += 36;
            }
            b'0'..=b'9' | b'-' => {
                let mut j = i + 1;
                while j < b.len()
                    && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'-' | b':' | b'.' | b'+'))
                {
                    j += 1;
                }
                let word = &s[i..j];
                let lit =
                    if word.len() >= 10 && word.as_bytes()[4] == b'-' && word.as_bytes()[7] == b'-'
                    {
                        Lit::Date(parse_date_literal(word).map_err(QueryError)?)
                    } else if let Ok(n) = word.parse::<i64>() {
                        Lit::Int(n)
                    } else if word.contains('.')
                        && word
                            .trim_start_matches('-')
                            .bytes()
                            .all(|c| c.is_ascii_digit() || c == b'.')
                        && let Ok(f) = word.parse::<f64>()
                    {
                        Lit::Dec(f)
                    } else {
                        return err(format!(
                            "'{word}' at position {start} is not a valid literal"
                        ));
                    };
                out.push((start, Tok::Lit(lit)));
                i = j;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                let mut j = i + 1;
                while j < b.len() && ident_char(b[j]) {
                    j += 1;
                }
                out.push((start, Tok::Ident(s[i..j].to_string())));
                i = j;
            }
            b':' => return err("any()/all() lambdas are not supported by the simulator"),
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return err(format!(
                    "syntax error: unexpected '{ch}' at position {start}"
                ));
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Parser

struct Parser<'a> {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    def: &'static EntityDef,
    src: &'a str,
}

/// Parses and type-checks a `$filter` against the entity `def`.
pub fn parse_filter(src: &str, def: &'static EntityDef) -> Result<Expr, QueryError> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
        def,
        src,
    };
    if p.toks.is_empty() {
        return err("$filter is empty");
    }
    let e = p.or()?;
    if let Some((at, _)) = p.toks.get(p.pos) {
        return err(format!("syntax error at position {at} in '{src}'"));
    }
    let (e, t) = e;
    if t != T::Bool {
        return err(format!("$filter '{src}' is not a boolean expression"));
    }
    Ok(e)
}

/// Resolves a property path like `Session/Machine/Name` from `def` (used by `$orderby` too).
pub fn resolve_path(segments: &[&str], def: &'static EntityDef) -> Result<Path, QueryError> {
    let mut cur = def;
    let mut navs = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if last && let Some(p) = cur.prop(seg) {
            return Ok(Path {
                navs,
                prop: p,
                ty: cur.props[p].ty,
            });
        }
        match cur.nav(seg) {
            Some(_) if last => {
                return err(format!(
                    "navigation property '{seg}' of '{}' cannot be used as a value",
                    cur.type_name
                ));
            }
            Some(nav) => match nav.kind {
                NavKind::One { .. } => {
                    navs.push((cur, nav));
                    cur = super::schema::entity_set(nav.target)
                        .ok_or_else(|| QueryError("schema".into()))?;
                }
                NavKind::Many { .. } => {
                    return err(format!(
                        "'{seg}' is a collection; any()/all() lambdas are not supported by the simulator"
                    ));
                }
            },
            None => {
                return err(format!(
                    "Could not find a property named '{seg}' on type '{}'.",
                    cur.type_name
                ));
            }
        }
    }
    err("empty property path")
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.src.len(), |t| t.0)
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w == kw)
    }

    fn bool_operand(&self, op: &str, t: T) -> Result<(), QueryError> {
        if t == T::Bool {
            Ok(())
        } else {
            err(format!(
                "the operands of '{op}' must be boolean expressions"
            ))
        }
    }

    fn or(&mut self) -> Result<(Expr, T), QueryError> {
        let (mut l, lt) = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let (r, rt) = self.and()?;
            self.bool_operand("or", lt)?;
            self.bool_operand("or", rt)?;
            l = Expr::Or(Box::new(l), Box::new(r));
        }
        Ok((l, lt))
    }

    fn and(&mut self) -> Result<(Expr, T), QueryError> {
        let (mut l, lt) = self.equality()?;
        while self.keyword("and") {
            self.pos += 1;
            let (r, rt) = self.equality()?;
            self.bool_operand("and", lt)?;
            self.bool_operand("and", rt)?;
            l = Expr::And(Box::new(l), Box::new(r));
        }
        Ok((l, lt))
    }

    fn equality(&mut self) -> Result<(Expr, T), QueryError> {
        let (mut l, mut lt) = self.relational()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Ident(w)) if w == "eq" => CmpOp::Eq,
                Some(Tok::Ident(w)) if w == "ne" => CmpOp::Ne,
                _ => return Ok((l, lt)),
            };
            self.pos += 1;
            let (r, rt) = self.relational()?;
            check_cmp(op, lt, rt)?;
            l = Expr::Cmp(op, Box::new(l), Box::new(r));
            lt = T::Bool;
        }
    }

    fn relational(&mut self) -> Result<(Expr, T), QueryError> {
        let (mut l, mut lt) = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Ident(w)) => match w.as_str() {
                    "gt" => CmpOp::Gt,
                    "ge" => CmpOp::Ge,
                    "lt" => CmpOp::Lt,
                    "le" => CmpOp::Le,
                    "add" | "sub" | "mul" | "div" | "mod" | "has" | "in" => {
                        return err(format!("operator '{w}' is not supported by the simulator"));
                    }
                    _ => return Ok((l, lt)),
                },
                _ => return Ok((l, lt)),
            };
            self.pos += 1;
            let (r, rt) = self.unary()?;
            check_cmp(op, lt, rt)?;
            l = Expr::Cmp(op, Box::new(l), Box::new(r));
            lt = T::Bool;
        }
    }

    fn unary(&mut self) -> Result<(Expr, T), QueryError> {
        if self.keyword("not") {
            self.pos += 1;
            let (e, t) = self.unary()?;
            if t != T::Bool {
                return err(
                    "the operand of 'not' must be a boolean expression (write 'not (A eq B)')",
                );
            }
            return Ok((Expr::Not(Box::new(e)), T::Bool));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<(Expr, T), QueryError> {
        let at = self.at();
        let Some((_, tok)) = self.toks.get(self.pos).cloned() else {
            return err(format!("unexpected end of $filter '{}'", self.src));
        };
        self.pos += 1;
        match tok {
            Tok::LParen => {
                let e = self.or()?;
                if self.peek() != Some(&Tok::RParen) {
                    return err(format!(
                        "')' expected at position {} in '{}'",
                        self.at(),
                        self.src
                    ));
                }
                self.pos += 1;
                Ok(e)
            }
            Tok::Lit(l) => {
                let t = match &l {
                    Lit::Null => T::Null,
                    Lit::Bool(_) => T::Bool,
                    Lit::Int(_) | Lit::Dec(_) => T::Num,
                    Lit::Str(_) => T::Str,
                    Lit::Date(_) => T::Date,
                    Lit::Guid(_) => T::Guid,
                };
                Ok((Expr::Lit(l), t))
            }
            Tok::Ident(w) => {
                match w.as_str() {
                    "null" => return Ok((Expr::Lit(Lit::Null), T::Null)),
                    "true" => return Ok((Expr::Lit(Lit::Bool(true)), T::Bool)),
                    "false" => return Ok((Expr::Lit(Lit::Bool(false)), T::Bool)),
                    "and" | "or" | "eq" | "ne" | "gt" | "ge" | "lt" | "le" | "not" => {
                        return err(format!("expression expected at position {at}, found '{w}'"));
                    }
                    _ => {}
                }
                if self.peek() == Some(&Tok::LParen) {
                    return err(format!("function '{w}' is not supported by the simulator"));
                }
                let mut segs = vec![w];
                while self.peek() == Some(&Tok::Slash) {
                    self.pos += 1;
                    match self.toks.get(self.pos) {
                        Some((_, Tok::Ident(w))) => {
                            if matches!(w.as_str(), "any" | "all") {
                                return err(
                                    "any()/all() lambdas are not supported by the simulator",
                                );
                            }
                            segs.push(w.clone());
                            self.pos += 1;
                        }
                        _ => {
                            return err(format!(
                                "property name expected after '/' at position {}",
                                self.at()
                            ));
                        }
                    }
                }
                let refs: Vec<&str> = segs.iter().map(String::as_str).collect();
                let path = resolve_path(&refs, self.def)?;
                let t = ty_of_prop(path.ty);
                Ok((Expr::Prop(path), t))
            }
            Tok::RParen | Tok::Comma | Tok::Slash => {
                err(format!("syntax error at position {at} in '{}'", self.src))
            }
        }
    }
}

fn check_cmp(op: CmpOp, l: T, r: T) -> Result<(), QueryError> {
    let name = |t: T| match t {
        T::Null => "null",
        T::Bool => "Edm.Boolean",
        T::Num => "a number",
        T::Str => "Edm.String",
        T::Date => "Edm.DateTimeOffset",
        T::Guid => "Edm.Guid",
    };
    if l != T::Null && r != T::Null && l != r {
        return err(format!(
            "A binary operator with incompatible types was detected. Found operand types '{}' and '{}' for operator kind '{op:?}'.",
            name(l),
            name(r)
        ));
    }
    let t = if l == T::Null { r } else { l };
    if matches!(t, T::Bool | T::Guid) && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
        return err(format!(
            "operator '{op:?}' is not supported for {}",
            name(t)
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Evaluation

/// A value during evaluation, borrowing strings from the row or the expression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Guid(u128),
    Date(DateTime<Utc>),
}

impl<'a> From<&'a Val> for V<'a> {
    fn from(v: &'a Val) -> V<'a> {
        match v {
            Val::Null => V::Null,
            Val::Bool(b) => V::Bool(*b),
            Val::Int(i) => V::Int(*i),
            Val::Float(f) => V::Float(*f),
            Val::Str(s) => V::Str(s),
            Val::Guid(g) => V::Guid(*g),
            Val::Date(d) => V::Date(*d),
        }
    }
}

/// The value of `path` for `row` of `def`; null when a navigation on the way is null.
pub fn eval_path<'a>(
    path: &Path,
    data: &'a TenantData,
    def: &'static EntityDef,
    row: &'a Row,
) -> V<'a> {
    let mut cur_def = def;
    let mut cur: &'a Row = row;
    for (from, nav) in &path.navs {
        debug_assert_eq!(from.set, cur_def.set);
        match data.follow_one(cur_def, cur, nav) {
            Some((table, i)) => {
                cur_def = table.def;
                cur = &table.rows[i as usize];
            }
            None => return V::Null,
        }
    }
    V::from(&cur[path.prop])
}

pub fn eval<'a>(e: &'a Expr, data: &'a TenantData, def: &'static EntityDef, row: &'a Row) -> V<'a> {
    match e {
        Expr::Lit(l) => match l {
            Lit::Null => V::Null,
            Lit::Bool(b) => V::Bool(*b),
            Lit::Int(i) => V::Int(*i),
            Lit::Dec(f) => V::Float(*f),
            Lit::Str(s) => V::Str(s),
            Lit::Date(d) => V::Date(*d),
            Lit::Guid(g) => V::Guid(*g),
        },
        Expr::Prop(p) => eval_path(p, data, def, row),
        Expr::Not(x) => V::Bool(!truthy(eval(x, data, def, row))),
        Expr::And(a, b) => {
            V::Bool(truthy(eval(a, data, def, row)) && truthy(eval(b, data, def, row)))
        }
        Expr::Or(a, b) => {
            V::Bool(truthy(eval(a, data, def, row)) || truthy(eval(b, data, def, row)))
        }
        Expr::Cmp(op, a, b) => {
            let (a, b) = (eval(a, data, def, row), eval(b, data, def, row));
            V::Bool(match op {
                CmpOp::Eq => equal(a, b),
                CmpOp::Ne => !equal(a, b),
                _ if a == V::Null || b == V::Null => false,
                CmpOp::Gt => compare(a, b) == Ordering::Greater,
                CmpOp::Ge => compare(a, b) != Ordering::Less,
                CmpOp::Lt => compare(a, b) == Ordering::Less,
                CmpOp::Le => compare(a, b) != Ordering::Greater,
            })
        }
    }
}

/// Whether a row passes a filter.
pub fn matches(e: &Expr, data: &TenantData, def: &'static EntityDef, row: &Row) -> bool {
    truthy(eval(e, data, def, row))
}

fn truthy(v: V<'_>) -> bool {
    matches!(v, V::Bool(true))
}

fn equal(a: V<'_>, b: V<'_>) -> bool {
    match (a, b) {
        (V::Null, V::Null) => true,
        (V::Null, _) | (_, V::Null) => false,
        _ => compare(a, b) == Ordering::Equal,
    }
}

/// Total order used by comparisons and `$orderby`: null first, numbers numerically, strings
/// case-insensitively, dates as instants.
pub fn compare(a: V<'_>, b: V<'_>) -> Ordering {
    match (a, b) {
        (V::Null, V::Null) => Ordering::Equal,
        (V::Null, _) => Ordering::Less,
        (_, V::Null) => Ordering::Greater,
        (V::Int(x), V::Int(y)) => x.cmp(&y),
        (V::Int(x), V::Float(y)) => (x as f64).total_cmp(&y),
        (V::Float(x), V::Int(y)) => x.total_cmp(&(y as f64)),
        (V::Float(x), V::Float(y)) => x.total_cmp(&y),
        (V::Str(x), V::Str(y)) => x
            .chars()
            .flat_map(char::to_lowercase)
            .cmp(y.chars().flat_map(char::to_lowercase)),
        (V::Date(x), V::Date(y)) => x.cmp(&y),
        (V::Guid(x), V::Guid(y)) => x.cmp(&y),
        (V::Bool(x), V::Bool(y)) => x.cmp(&y),
        // Mixed types cannot pass the type check; order them stably anyway.
        _ => rank(a).cmp(&rank(b)),
    }
}

fn rank(v: V<'_>) -> u8 {
    match v {
        V::Null => 0,
        V::Bool(_) => 1,
        V::Int(_) | V::Float(_) => 2,
        V::Str(_) => 3,
        V::Guid(_) => 4,
        V::Date(_) => 5,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::sim::schema::{self, DESKTOP_GROUPS, MACHINES};
    use crate::sim::value::format_guid;

    const DG: u128 = 0x6b07220e_1d2c_4e6f_8a9b_0c1d2e3f4a5b;

    fn date(s: &str) -> Val {
        Val::Date(parse_date_literal(s).unwrap())
    }

    /// Three machines (one with nulls and a dangling group) and one delivery group.
    fn data() -> TenantData {
        let mut rows = HashMap::new();
        let mut dg = vec![Val::Null; DESKTOP_GROUPS.props.len()];
        dg[DESKTOP_GROUPS.prop("Id").unwrap()] = Val::Guid(DG);
        dg[DESKTOP_GROUPS.prop("Name").unwrap()] = Val::str("Finance, Accounting");
        rows.insert("DesktopGroups", vec![dg.into_boxed_slice()]);
        let m = |id: u128,
                 name: &str,
                 state: i64,
                 dns: Option<&str>,
                 created: &str,
                 dg: u128,
                 maint: bool| {
            let mut r = vec![Val::Null; MACHINES.props.len()];
            let mut set = |k: &str, v: Val| r[MACHINES.prop(k).unwrap()] = v;
            set("Id", Val::Guid(id));
            set("Name", Val::str(name));
            set("LifecycleState", Val::Int(state));
            set("DnsName", Val::opt_str(dns));
            set("CreatedDate", date(created));
            set("DesktopGroupId", Val::Guid(dg));
            set("IsInMaintenanceMode", Val::Bool(maint));
            set("CurrentLoadIndexId", Val::Int(state * 5_000_000_000));
            r.into_boxed_slice()
        };
        rows.insert(
            "Machines",
            vec![
                m(
                    1,
                    "CORP\\VDI-001",
                    0,
                    Some("vdi-001.corp.local"),
                    "2024-07-30T01:02:49.37Z",
                    DG,
                    false,
                ),
                m(
                    2,
                    "CORP\\O'Neil",
                    1,
                    None,
                    "2024-07-30T01:02:49.3700001Z",
                    DG,
                    true,
                ),
                m(
                    3,
                    "CORP\\vdi-003",
                    2,
                    Some("x"),
                    "2024-07-31T00:00:00Z",
                    99,
                    false,
                ),
            ],
        );
        TenantData::new(rows)
    }

    fn ids(filter: &str) -> Vec<u128> {
        let d = data();
        let e = parse_filter(filter, &MACHINES).unwrap_or_else(|e| panic!("{filter}: {e}"));
        let t = d.table("Machines");
        let id = MACHINES.prop("Id").unwrap();
        t.rows
            .iter()
            .filter(|r| matches(&e, &d, &MACHINES, r))
            .map(|r| match r[id] {
                Val::Guid(g) => g,
                _ => 0,
            })
            .collect()
    }

    #[test]
    fn operators() {
        let table: &[(&str, &[u128])] = &[
            ("LifecycleState eq 0", &[1]),
            ("LifecycleState ne 0", &[2, 3]),
            ("LifecycleState gt 0", &[2, 3]),
            ("LifecycleState ge 1", &[2, 3]),
            ("LifecycleState lt 1", &[1]),
            ("LifecycleState le 1", &[1, 2]),
            ("LifecycleState le 1.5", &[1, 2]),
            ("LifecycleState gt -1", &[1, 2, 3]),
            ("CurrentLoadIndexId eq 10000000000", &[3]),
            ("LifecycleState eq 0 or LifecycleState eq 2", &[1, 3]),
            ("LifecycleState ge 1 and LifecycleState le 1", &[2]),
            // and binds tighter than or
            (
                "LifecycleState eq 0 or LifecycleState eq 1 and LifecycleState eq 2",
                &[1],
            ),
            (
                "(LifecycleState eq 0 or LifecycleState eq 1) and LifecycleState eq 2",
                &[],
            ),
            ("not (LifecycleState eq 0)", &[2, 3]),
            ("not IsInMaintenanceMode", &[1, 3]),
            ("IsInMaintenanceMode", &[2]),
            ("IsInMaintenanceMode eq true", &[2]),
            ("IsInMaintenanceMode ne true and LifecycleState eq 0", &[1]),
            ("not IsInMaintenanceMode and LifecycleState eq 2", &[3]),
        ];
        for (f, want) in table {
            assert_eq!(ids(f), *want, "{f}");
        }
    }

    #[test]
    fn strings_nulls_guids_dates() {
        let table: &[(&str, &[u128])] = &[
            ("Name eq 'CORP\\O''Neil'", &[2]),
            ("Name eq 'corp\\vdi-001'", &[1]),
            ("Name gt 'CORP\\V'", &[1, 3]),
            ("DnsName eq null", &[2]),
            ("DnsName ne null", &[1, 3]),
            ("null eq DnsName", &[2]),
            ("DnsName gt 'a'", &[1, 3]),
            ("DnsName lt 'zzz'", &[1, 3]),
            ("Id eq 00000000-0000-0000-0000-000000000002", &[2]),
            (
                "DesktopGroupId eq 6B07220E-1D2C-4E6F-8A9B-0C1D2E3F4A5B",
                &[1, 2],
            ),
            ("CreatedDate ge 2024-07-30T01:02:49.37Z", &[1, 2, 3]),
            ("CreatedDate gt 2024-07-30T01:02:49.37Z", &[2, 3]),
            ("CreatedDate gt 2024-07-30T01:02:49.3700000Z", &[2, 3]),
            ("CreatedDate eq 2024-07-30T01:02:49.3700001Z", &[2]),
            ("CreatedDate lt 2024-07-30T01:02:50Z", &[1, 2]),
            ("CreatedDate le 2024-07-30T01:02:49.370Z", &[1]),
            ("CreatedDate ge 2024-07-31", &[3]),
            ("CreatedDate lt 2024-07-31", &[1, 2]),
            ("CreatedDate ge 2024-07-31T02:00:00+02:00", &[3]),
            ("CreatedDate ge 2024-07-31T00:00:00.0000001Z", &[]),
            ("CreatedDate gt null", &[]),
        ];
        for (f, want) in table {
            assert_eq!(ids(f), *want, "{f}");
        }
        assert_eq!(format_guid(DG), "6b07220e-1d2c-4e6f-8a9b-0c1d2e3f4a5b");
    }

    #[test]
    fn navigation_paths() {
        let table: &[(&str, &[u128])] = &[
            ("DesktopGroup/Name eq 'Finance, Accounting'", &[1, 2]),
            ("DesktopGroup/Name ne 'Finance, Accounting'", &[3]),
            ("DesktopGroup/Name eq null", &[3]),
            (
                "DesktopGroup/Id eq 6b07220e-1d2c-4e6f-8a9b-0c1d2e3f4a5b and LifecycleState eq 1",
                &[2],
            ),
        ];
        for (f, want) in table {
            assert_eq!(ids(f), *want, "{f}");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let table: &[(&str, &str)] = &[
            ("Nme eq 'x'", "Could not find a property named 'Nme'"),
            (
                "DesktopGroup/Nme eq 'x'",
                "'Nme' on type 'Citrix.Monitor.Repository.V2.DesktopGroup'",
            ),
            ("LifecycleState eq '0'", "incompatible types"),
            (
                "Id eq '00000000-0000-0000-0000-000000000002'",
                "incompatible types",
            ),
            ("CreatedDate gt 5", "incompatible types"),
            (
                "Id gt 00000000-0000-0000-0000-000000000002",
                "not supported for Edm.Guid",
            ),
            ("LifecycleState eq", "unexpected end"),
            ("LifecycleState eq 0 and", "unexpected end"),
            ("(LifecycleState eq 0", "')' expected"),
            ("LifecycleState eq 0)", "syntax error"),
            ("Name eq 'abc", "unterminated string"),
            ("not LifecycleState eq 0", "operand of 'not'"),
            ("LifecycleState", "not a boolean"),
            ("LifecycleState eq 0 and 5", "must be boolean"),
            ("contains(Name,'x')", "function 'contains'"),
            ("Sessions/any(s: s/LogOnDuration gt 5)", "lambdas"),
            ("DesktopGroup eq null", "cannot be used as a value"),
            ("CreatedDate gt 2024-07-30T00:00:00", "no time zone"),
            (
                "CreatedDate gt 2024-07-30T00:00:00.12345678Z",
                "not a valid date-time",
            ),
            ("LifecycleState add 1 eq 2", "'add' is not supported"),
            ("LifecycleState eq 0 # x", "unexpected '#'"),
            ("LifecycleState eq 1x", "not a valid literal"),
            ("", "empty"),
            (
                "lifecyclestate eq 0",
                "Could not find a property named 'lifecyclestate'",
            ),
            ("LifecycleState EQ 0", "syntax error"),
        ];
        for (f, want) in table {
            match parse_filter(f, &MACHINES) {
                Ok(_) => panic!("{f:?} was accepted"),
                Err(e) => assert!(e.0.contains(want), "{f:?}: {e} does not contain {want:?}"),
            }
        }
    }

    #[test]
    fn session_state_through_a_connection() {
        // The real-world shape `Session/ConnectionState ne 3` resolves from Connections.
        let e = parse_filter("Session/ConnectionState ne 3", &schema::CONNECTIONS).unwrap();
        assert!(matches!(e, Expr::Cmp(CmpOp::Ne, _, _)));
    }
}
