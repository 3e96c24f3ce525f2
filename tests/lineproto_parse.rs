//! Property test: every line the encoder writes parses, under a strict model of the InfluxDB
//! 1.x/2.x parser, back to the point it came from, apart from the rewrites documented in
//! `src/lineproto.rs`. The model is deliberately strict where the Go parser is fragile: it
//! rejects raw control characters, an unescaped `=` in a tag value, and field sections whose
//! backslash pairing and previous-byte reading disagree. The real-server proof is
//! `lineproto_roundtrip.rs`.

use citrix_harvester::lineproto::{FieldValue, Point, encode};
use proptest::prelude::*;

#[derive(Debug, PartialEq)]
struct Parsed {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, FieldValue)>,
    ts: i64,
}

/// Scans from `i` to the first byte in `stops` whose previous byte is not a backslash
/// (the Go parser's rule for measurements, tags and field keys).
fn scan_prev(b: &[u8], mut i: usize, stops: &[u8]) -> usize {
    while i < b.len() {
        if stops.contains(&b[i]) && (i == 0 || b[i - 1] != b'\\') {
            break;
        }
        i += 1;
    }
    i
}

/// Un-escapes a name: `\` followed by one of `set` becomes that byte, other backslashes stay.
fn unescape(b: &[u8], set: &[u8]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() && set.contains(&b[i + 1]) {
            out.push(b[i + 1]);
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn parse(line: &str) -> Result<Parsed, String> {
    let line = line.strip_suffix('\n').ok_or("no newline")?;
    let b = line.as_bytes();
    if b.iter().any(|&c| c == b'\n' || c == b'\r' || c == b'\t') {
        return Err("raw control character".into());
    }
    if b.first() == Some(&b'#') {
        return Err("comment".into());
    }
    let m_end = scan_prev(b, 0, b",  ");
    if m_end == 0 || m_end == b.len() {
        return Err("measurement".into());
    }
    let measurement = unescape(&b[..m_end], b", =\"");
    let mut i = m_end;
    let mut tags = Vec::new();
    while b[i] == b',' {
        let k_start = i + 1;
        let k_end = scan_prev(b, k_start, b"=, ");
        if k_end >= b.len() || b[k_end] != b'=' || k_end == k_start {
            return Err(format!("tag key at {k_start}"));
        }
        let v_start = k_end + 1;
        let v_end = scan_prev(b, v_start, b", ");
        if v_end == v_start || v_end >= b.len() {
            return Err(format!("tag value at {v_start}"));
        }
        if scan_prev(b, v_start, b"=") < v_end {
            return Err("unescaped = in tag value".into());
        }
        tags.push((
            unescape(&b[k_start..k_end], b", ="),
            unescape(&b[v_start..v_end], b", ="),
        ));
        i = v_end;
    }
    if b[i] != b' ' {
        return Err("space after tags".into());
    }
    i += 1;
    // Field section boundaries as Go's scanFields sees them: backslash pairs are skipped, quotes
    // toggle after an '=', commas and equals are counted outside quotes.
    let f_start = i;
    let (mut equals, mut commas, mut quoted) = (0usize, 0usize, false);
    while i < b.len() {
        match b[i] {
            b'\\' => {
                i += 2;
                continue;
            }
            b'"' if equals > commas => quoted = !quoted,
            b'=' if !quoted => equals += 1,
            b',' if !quoted => commas += 1,
            b' ' if !quoted => break,
            _ => {}
        }
        i += 1;
    }
    if quoted || equals == 0 || commas + 1 != equals || i >= b.len() {
        return Err("invalid field format".into());
    }
    let f_end = i;
    // Fields one by one: key up to an '=' (previous-byte rule), then the value.
    let mut fields = Vec::new();
    let mut j = f_start;
    while j < f_end {
        let k_end = scan_prev(b, j, b"=");
        if k_end >= f_end || k_end == j {
            return Err("field key".into());
        }
        let key = unescape(&b[j..k_end], b", =\"");
        let v = k_end + 1;
        let (value, next) = if b.get(v) == Some(&b'"') {
            let mut e = v + 1;
            while e < f_end && b[e] != b'"' {
                e += if b[e] == b'\\' { 2 } else { 1 };
            }
            if e >= f_end {
                return Err("unterminated string".into());
            }
            let s = unescape(&b[v + 1..e], b"\\\"");
            (FieldValue::Str(s.into()), e + 1)
        } else {
            let e = v + b[v..f_end]
                .iter()
                .position(|&c| c == b',')
                .unwrap_or(f_end - v);
            let t = std::str::from_utf8(&b[v..e]).unwrap();
            let val = if let Some(int) = t.strip_suffix('i') {
                FieldValue::Int(int.parse().map_err(|_| format!("int {t}"))?)
            } else if t == "true" {
                FieldValue::Bool(true)
            } else if t == "false" {
                FieldValue::Bool(false)
            } else {
                let f: f64 = t.parse().map_err(|_| format!("float {t}"))?;
                if !f.is_finite() {
                    return Err("non-finite".into());
                }
                FieldValue::Float(f)
            };
            (val, e)
        };
        fields.push((key, value));
        j = next;
        if j < f_end {
            if b[j] != b',' {
                return Err(format!("after field value at {j}"));
            }
            j += 1;
        }
    }
    let ts: i64 = line[f_end + 1..].parse().map_err(|_| "timestamp")?;
    Ok(Parsed {
        measurement,
        tags,
        fields,
        ts,
    })
}

/// The documented rewrites, applied to what the caller gave.
fn ctrl(s: &str) -> String {
    s.replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('\t', "\\t")
}
fn drop_backslash_before_special(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let run = i;
            while i < b.len() && b[i] == b'\\' {
                i += 1;
            }
            if !(i < b.len() && matches!(b[i], b',' | b'=' | b' ' | b'"')) {
                out.extend_from_slice(&b[run..i]);
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
fn name(s: &str) -> String {
    ctrl(&drop_backslash_before_special(s.trim_end_matches('\\')))
}
fn tag(s: &str) -> String {
    ctrl(s.trim_end_matches('\\'))
}

fn expected(p: &Point) -> Parsed {
    let mut tags: Vec<(String, String)> = p
        .tags
        .iter()
        .map(|(k, v)| (tag(k), tag(v)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    tags.sort();
    let fields = p
        .fields
        .iter()
        .filter(|(_, v)| !matches!(v, FieldValue::Float(f) if !f.is_finite()))
        .map(|(k, v)| {
            let v = match v {
                FieldValue::Str(s) => FieldValue::Str(ctrl(s).into()),
                v => v.clone(),
            };
            (name(k), v)
        })
        .collect();
    Parsed {
        measurement: name(&p.measurement),
        tags,
        fields,
        ts: p.timestamp_ns,
    }
}

/// Strings made of the characters that matter, plus ordinary and non-ASCII ones.
fn nasty() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            'a', 'Z', '0', ' ', ',', '=', '"', '\\', '\n', '\r', '\t', 'é', '😀', '_', '#', '\'',
        ]),
        0..10,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<i64>().prop_map(FieldValue::Int),
        any::<f64>().prop_map(FieldValue::Float),
        any::<bool>().prop_map(FieldValue::Bool),
        nasty().prop_map(|s| FieldValue::Str(s.into())),
    ]
}

fn point() -> impl Strategy<Value = Point> {
    (
        nasty(),
        prop::collection::vec((nasty(), nasty()), 0..5),
        prop::collection::vec((nasty(), value()), 1..5),
        any::<i64>(),
    )
        .prop_map(|(m, tags, fields, ts)| {
            // Prefixes keep names valid (non-empty, no leading '_' or '#') and distinct, so
            // every generated point must encode; rejections are tested in the unit tests.
            let mut p = Point::new(format!("m{m}"), ts);
            for (i, (k, v)) in tags.into_iter().enumerate() {
                p = p.tag(format!("k{i}{k}"), v);
            }
            for (i, (k, v)) in fields.into_iter().enumerate() {
                p = p.field(format!("f{i}{k}"), v);
            }
            p
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn encode_parse_round_trip(p in point()) {
        let mut out = Vec::new();
        match encode(&p, &mut out) {
            Ok(()) => {
                let line = String::from_utf8(out).unwrap();
                prop_assert_eq!(line.matches('\n').count(), 1);
                let parsed = parse(&line).map_err(|e| TestCaseError::fail(format!("{e}: {line:?}")))?;
                prop_assert_eq!(parsed, expected(&p), "line {:?}", line);
            }
            Err(e) => {
                // Only a point whose every field is NaN/Inf may be refused here.
                prop_assert!(p.fields.iter().all(|(_, v)| matches!(v, FieldValue::Float(f) if !f.is_finite())), "{e}");
                prop_assert!(out.is_empty());
            }
        }
    }
}

#[test]
fn the_model_is_strict() {
    // Lines the Go parser refuses or misreads must fail the model too.
    for bad in [
        "m,k=a\\ v=1i 1\n", // trailing backslash swallows the delimiter
        "m,k= v=1i 1\n",    // empty tag value
        "m,k=a=b v=1i 1\n", // unescaped '=' in a tag value
        "m a\\\\,b=1i 1\n", // field key: pairing and previous-byte reading disagree
        "m v=NaN 1\n",      // NaN
        "m v=\"a\nb\" 1\n", // raw newline
        "m v=\"a\\\" 1\n",  // string ends in an escaped quote
        "#m v=1i 1\n",      // comment
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
    assert!(parse("m,k=a\\\\,b v=\"x\\\\\" 1\n").is_ok());
}
