//! Grafana's server-side expressions, the subset the provisioned alert rules use, so that a test
//! can evaluate a rule as Grafana would without Grafana: `reduce` (last, mean, min, max, sum,
//! count; mode dropNN), `threshold` (gt, lt, within_range, outside_range) and `math` (numbers,
//! `$REF`, + - * / > < >= <= == != && || and parentheses; two sets of numbers are joined where
//! one item's labels are a subset of the other's, as Grafana's union does; an item without a
//! partner is dropped). Anything else is a test failure, never a silent default.

use std::collections::BTreeMap;

use serde_json::Value;

pub type Labels = BTreeMap<String, String>;

/// What one query or expression produced: series (from a datasource) or numbers.
#[derive(Debug, Clone)]
pub enum Data {
    Series(Vec<(Labels, Vec<f64>)>),
    Numbers(Vec<(Labels, f64)>),
}

/// InfluxDB 1.x's JSON answer as Grafana's InfluxQL backend frames it: one series per result
/// series, labelled with its tags; only the single value column (NaN for null).
pub fn series_from_influx(answer: &Value, what: &str) -> Data {
    let mut out = Vec::new();
    for r in answer["results"].as_array().into_iter().flatten() {
        assert!(r.get("error").is_none(), "{what}: {}", r["error"]);
        for s in r["series"].as_array().into_iter().flatten() {
            let cols = s["columns"].as_array().expect("columns");
            assert_eq!(
                cols.len(),
                2,
                "{what}: one value column per query, got {cols:?}"
            );
            let labels: Labels = s["tags"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .filter(|(_, v)| !v.is_empty())
                .collect();
            let values = s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|row| row[1].as_f64().unwrap_or(f64::NAN))
                .collect();
            out.push((labels, values));
        }
    }
    Data::Series(out)
}

/// Evaluates one expression node (`model` of a `__expr__` data item) given the results so far.
pub fn eval(model: &Value, done: &BTreeMap<String, Data>) -> Data {
    let kind = model["type"].as_str().unwrap_or_default();
    let expr = model["expression"].as_str().unwrap_or_default();
    match kind {
        "reduce" => reduce(model, input(done, expr)),
        "threshold" => threshold(model, input(done, expr)),
        "math" => math(expr, done),
        other => panic!("expression type {other:?} is not interpreted by this test"),
    }
}

fn input<'a>(done: &'a BTreeMap<String, Data>, r: &str) -> &'a Data {
    done.get(r)
        .unwrap_or_else(|| panic!("expression refers to {r}, which is not computed before it"))
}

fn reduce(model: &Value, input: &Data) -> Data {
    let reducer = model["reducer"].as_str().expect("reducer");
    let mode = model["settings"]["mode"].as_str().unwrap_or("");
    assert_eq!(mode, "dropNN", "reduce mode {mode:?} not interpreted");
    let Data::Series(series) = input else {
        panic!("reduce of numbers");
    };
    let out = series
        .iter()
        .map(|(l, vs)| {
            let v: Vec<f64> = vs.iter().copied().filter(|x| x.is_finite()).collect();
            let r = if v.is_empty() && reducer != "count" {
                f64::NAN
            } else {
                match reducer {
                    "last" => v[v.len() - 1],
                    "mean" => v.iter().sum::<f64>() / v.len() as f64,
                    "min" => v.iter().copied().fold(f64::INFINITY, f64::min),
                    "max" => v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    "sum" => v.iter().sum(),
                    "count" => v.len() as f64,
                    other => panic!("reducer {other:?} not interpreted"),
                }
            };
            (l.clone(), r)
        })
        .collect();
    Data::Numbers(out)
}

fn threshold(model: &Value, input: &Data) -> Data {
    let conds = model["conditions"].as_array().expect("conditions");
    assert_eq!(conds.len(), 1, "one threshold condition");
    let ev = &conds[0]["evaluator"];
    let p: Vec<f64> = ev["params"]
        .as_array()
        .expect("params")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect();
    let test = |x: f64| -> bool {
        match ev["type"].as_str().unwrap_or_default() {
            "gt" => x > p[0],
            "lt" => x < p[0],
            "within_range" => x > p[0] && x < p[1],
            "outside_range" => x < p[0] || x > p[1],
            other => panic!("evaluator {other:?} not interpreted"),
        }
    };
    let Data::Numbers(n) = input else {
        panic!("threshold of series: reduce first");
    };
    Data::Numbers(
        n.iter()
            .map(|(l, x)| (l.clone(), f64::from(u8::from(test(*x)))))
            .collect(),
    )
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Ref(String),
    Op(&'static str),
    Open,
    Close,
}

fn lex(s: &str) -> Vec<Tok> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i] as char;
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' {
            out.push(if c == '(' { Tok::Open } else { Tok::Close });
            i += 1;
        } else if c == '$' {
            let j = (i + 1..b.len())
                .find(|&j| !(b[j] as char).is_ascii_alphanumeric() && b[j] != b'_')
                .unwrap_or(b.len());
            out.push(Tok::Ref(s[i + 1..j].to_string()));
            i = j;
        } else if c.is_ascii_digit() || c == '.' {
            let j = (i..b.len())
                .find(|&j| !((b[j] as char).is_ascii_digit() || b[j] == b'.'))
                .unwrap_or(b.len());
            out.push(Tok::Num(s[i..j].parse().expect("number")));
            i = j;
        } else {
            let op = [
                "&&", "||", ">=", "<=", "==", "!=", ">", "<", "+", "-", "*", "/",
            ]
            .into_iter()
            .find(|op| s[i..].starts_with(op))
            .unwrap_or_else(|| panic!("math: cannot read {:?}", &s[i..]));
            out.push(Tok::Op(op));
            i += op.len();
        }
    }
    out
}

fn prec(op: &str) -> u8 {
    match op {
        "||" => 1,
        "&&" => 2,
        "==" | "!=" | ">" | "<" | ">=" | "<=" => 3,
        "+" | "-" => 4,
        _ => 5,
    }
}

fn math(expr: &str, done: &BTreeMap<String, Data>) -> Data {
    let toks = lex(expr);
    let mut pos = 0;
    let v = parse(&toks, &mut pos, 0, done);
    assert_eq!(pos, toks.len(), "math: trailing input in {expr:?}");
    Data::Numbers(v)
}

fn parse(t: &[Tok], pos: &mut usize, min: u8, done: &BTreeMap<String, Data>) -> Vec<(Labels, f64)> {
    let mut lhs = match t.get(*pos).cloned() {
        Some(Tok::Num(x)) => {
            *pos += 1;
            vec![(Labels::new(), x)]
        }
        Some(Tok::Ref(r)) => {
            *pos += 1;
            match input(done, &r) {
                Data::Numbers(n) => n.clone(),
                Data::Series(_) => panic!("math on series ${r}: reduce first"),
            }
        }
        Some(Tok::Open) => {
            *pos += 1;
            let v = parse(t, pos, 0, done);
            assert_eq!(t.get(*pos), Some(&Tok::Close), "math: missing )");
            *pos += 1;
            v
        }
        other => panic!("math: unexpected {other:?}"),
    };
    while let Some(Tok::Op(op)) = t.get(*pos).cloned() {
        let p = prec(op);
        if p <= min {
            break;
        }
        *pos += 1;
        let rhs = parse(t, pos, p, done);
        lhs = join(&lhs, &rhs, op);
    }
    lhs
}

fn subset(a: &Labels, b: &Labels) -> bool {
    a.iter().all(|(k, v)| b.get(k) == Some(v))
}

/// A binary operation over two sets: every pair whose labels nest, with the larger label set.
fn join(a: &[(Labels, f64)], b: &[(Labels, f64)], op: &str) -> Vec<(Labels, f64)> {
    let mut out = Vec::new();
    for (la, x) in a {
        for (lb, y) in b {
            if !(subset(la, lb) || subset(lb, la)) {
                continue;
            }
            let labels = if la.len() >= lb.len() { la } else { lb };
            out.push((labels.clone(), apply(op, *x, *y)));
        }
    }
    out
}

fn apply(op: &str, x: f64, y: f64) -> f64 {
    let b = |c: bool| f64::from(u8::from(c));
    match op {
        "+" => x + y,
        "-" => x - y,
        "*" => x * y,
        "/" => x / y,
        ">" => b(x > y),
        "<" => b(x < y),
        ">=" => b(x >= y),
        "<=" => b(x <= y),
        "==" => b(x == y),
        "!=" => b(x != y),
        "&&" => b(x != 0.0 && y != 0.0 && !x.is_nan() && !y.is_nan()),
        "||" => b((x != 0.0 && !x.is_nan()) || (y != 0.0 && !y.is_nan())),
        _ => unreachable!("lexed operators only"),
    }
}
