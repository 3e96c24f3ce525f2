//! Line-protocol encoding for InfluxDB 1.x/2.x: the only place in the crate that escapes names
//! and values. It turns a [`Point`] into one line of bytes and owns the escaping rules and the
//! documented rewrites below; it must not batch, buffer across calls, do I/O or know about HTTP
//! (that is `sink`'s business), and nobody else may build line protocol by hand.
//!
//! Rules (InfluxDB 1.x/2.x parse with the same Go code, which only un-escapes `\,` `\ ` `\=`
//! in names and treats a byte as escaped when the byte before it is a backslash):
//! - measurement: `,` and space are escaped; tag keys, tag values and field keys: `,`, `=` and
//!   space are escaped. A backslash is never escaped there (the server would store it doubled).
//! - **Rewrite 1, trailing backslash:** trailing `\` characters of a measurement, tag key, tag
//!   value or field key are stripped (as Telegraf does), because a token ending in `\` would
//!   escape the delimiter after it and break the line. A tag value that becomes empty is omitted.
//! - **Rewrite 2, control characters:** newline, carriage return and tab never appear raw; they
//!   are written as the two characters `\n`, `\r`, `\t` everywhere (names and string values),
//!   so a reader sees a backslash followed by a letter.
//! - **Rewrite 3, backslash before a special character in measurements and field keys:** a run
//!   of backslashes directly before `,`, `=`, space or `"` is dropped there. InfluxDB 1.x reads
//!   those two kinds of name inconsistently (its field scanner pairs backslashes while the key
//!   reader looks at the previous byte, so `a\\,b` breaks the line; `\"` loses its backslash;
//!   a measurement is un-escaped twice). Tag keys and tag values keep such backslashes intact.
//! - string field values: `\` is escaped as `\\`, then `"` as `\"`.
//! - empty tag values are omitted; NaN and ±Inf float fields are omitted; a point left without
//!   fields is rejected.
//! - **Rejected, not rewritten:** an empty measurement or key, a measurement, tag key or field
//!   key starting with `_` (reserved by InfluxDB 2.x), a key named `time` (1.x refuses it), a
//!   measurement starting with `#` (a comment line), duplicate tag or field keys. Names come from
//!   our code, so these are bugs to surface, not data to mangle.
//! - tags are sorted by key (the encoder sorts indices, it never trusts the caller's order);
//!   integers end in `i`; the timestamp is always written, in nanoseconds.

use std::borrow::Cow;
use std::fmt;

/// A field value. Unsigned integers are deliberately absent: InfluxDB 1.x refuses the `u` suffix.
/// A string may borrow (`'a`) from the record it was read from; see [`PointOf`].
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValueOf<'a> {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(Cow<'a, str>),
}

/// A field value that owns its text.
pub type FieldValue = FieldValueOf<'static>;

impl From<i64> for FieldValueOf<'_> {
    fn from(v: i64) -> Self {
        FieldValueOf::Int(v)
    }
}
impl From<i32> for FieldValueOf<'_> {
    fn from(v: i32) -> Self {
        FieldValueOf::Int(v.into())
    }
}
impl From<u32> for FieldValueOf<'_> {
    fn from(v: u32) -> Self {
        FieldValueOf::Int(v.into())
    }
}
impl From<f64> for FieldValueOf<'_> {
    fn from(v: f64) -> Self {
        FieldValueOf::Float(v)
    }
}
impl From<bool> for FieldValueOf<'_> {
    fn from(v: bool) -> Self {
        FieldValueOf::Bool(v)
    }
}
impl From<String> for FieldValueOf<'_> {
    fn from(v: String) -> Self {
        FieldValueOf::Str(Cow::Owned(v))
    }
}
/// Copies the text (a point that borrows uses [`PointOf::field_str`]).
impl From<&str> for FieldValueOf<'_> {
    fn from(v: &str) -> Self {
        FieldValueOf::Str(Cow::Owned(v.to_owned()))
    }
}

/// One point: measurement, tags, fields and a nanosecond timestamp. Tag values and string
/// field values may borrow (`'a`) from the page a collector maps: the harvest walk encodes a
/// page's points before the page is freed, so its text is never copied. [`Point`] owns all of
/// its text.
#[derive(Clone, PartialEq)]
pub struct PointOf<'a> {
    pub measurement: Cow<'static, str>,
    /// Tag values are `Cow` so constant values (`"true"`, a granularity name) and text of the
    /// record cost no allocation per point.
    pub tags: Vec<(Cow<'static, str>, Cow<'a, str>)>,
    pub fields: Vec<(Cow<'static, str>, FieldValueOf<'a>)>,
    pub timestamp_ns: i64,
}

/// A point that owns its text.
pub type Point = PointOf<'static>;

/// Named `Point` whether or not it borrows: dead-letter files show this to operators.
impl fmt::Debug for PointOf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Point")
            .field("measurement", &self.measurement)
            .field("tags", &self.tags)
            .field("fields", &self.fields)
            .field("timestamp_ns", &self.timestamp_ns)
            .finish()
    }
}

impl<'a> PointOf<'a> {
    pub fn new(measurement: impl Into<Cow<'static, str>>, timestamp_ns: i64) -> Self {
        PointOf {
            measurement: measurement.into(),
            tags: Vec::new(),
            fields: Vec::new(),
            timestamp_ns,
        }
    }

    /// Like [`Point::new`] with room for `tags` tags and `fields` fields, so a collector that
    /// knows its shape builds the point without growing it (the per-record hot path).
    pub fn with_capacity(
        measurement: impl Into<Cow<'static, str>>,
        timestamp_ns: i64,
        tags: usize,
        fields: usize,
    ) -> Self {
        PointOf {
            measurement: measurement.into(),
            tags: Vec::with_capacity(tags),
            fields: Vec::with_capacity(fields),
            timestamp_ns,
        }
    }

    /// Adds a tag. An empty value is allowed here and omitted at encode time, so callers can
    /// pass optional source values straight through.
    pub fn tag(
        mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'a, str>>,
    ) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    pub fn field(
        mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<FieldValueOf<'a>>,
    ) -> Self {
        self.fields.push((key.into(), value.into()));
        self
    }

    /// Adds a string field that borrows its text, when present (`field` with a `&str` copies).
    pub fn field_str(self, key: impl Into<Cow<'static, str>>, value: Option<&'a str>) -> Self {
        match value {
            Some(v) => self.field(key, FieldValueOf::Str(Cow::Borrowed(v))),
            None => self,
        }
    }

    /// Adds a field only when the value is present.
    pub fn field_opt<V: Into<FieldValueOf<'a>>>(
        self,
        key: impl Into<Cow<'static, str>>,
        value: Option<V>,
    ) -> Self {
        match value {
            Some(v) => self.field(key, v),
            None => self,
        }
    }
}

/// Why a point was not encoded. Carries the measurement so a log line can say which collector
/// produced it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("empty measurement name")]
    EmptyMeasurement,
    #[error("measurement {measurement:?}: empty {what} key")]
    EmptyKey {
        measurement: String,
        what: &'static str,
    },
    #[error("measurement {measurement:?}: name {name:?} is reserved (leading '_', '#' or 'time')")]
    ReservedName { measurement: String, name: String },
    #[error("measurement {measurement:?}: duplicate {what} key {key:?}")]
    DuplicateKey {
        measurement: String,
        what: &'static str,
        key: String,
    },
    #[error("measurement {measurement:?}: no fields left (NaN/Inf fields are omitted)")]
    NoFields { measurement: String },
}

/// Outcome of [`encode_all`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EncodeReport {
    /// Lines appended to the output.
    pub encoded: usize,
    /// Points refused, with their index in the input and the reason.
    pub rejected: Vec<(usize, EncodeError)>,
}

/// Byte classes for escaping. 0 = copy as is.
const PLAIN: u8 = 0;
const ESCAPE: u8 = 1; // write a backslash, then the byte
const CTRL: u8 = 2; // newline / CR / tab: write `\n`, `\r`, `\t`

const fn table(escaped: &[u8]) -> [u8; 256] {
    let mut t = [PLAIN; 256];
    let mut i = 0;
    while i < escaped.len() {
        t[escaped[i] as usize] = ESCAPE;
        i += 1;
    }
    t[b'\n' as usize] = CTRL;
    t[b'\r' as usize] = CTRL;
    t[b'\t' as usize] = CTRL;
    t
}

static MEASUREMENT: [u8; 256] = table(b", ");
static KEY_OR_TAG_VALUE: [u8; 256] = table(b",= ");
static STRING_VALUE: [u8; 256] = table(b"\\\"");

/// Writes `s` escaped per `class`. Copies runs of plain bytes with one `extend_from_slice`, so
/// the common no-escape case is a scan plus one copy.
#[inline]
fn write_escaped(out: &mut Vec<u8>, s: &[u8], class: &[u8; 256]) {
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let c = class[b as usize];
        if c == PLAIN {
            continue;
        }
        out.extend_from_slice(&s[start..i]);
        if c == ESCAPE {
            out.push(b'\\');
            out.push(b);
        } else {
            out.push(b'\\');
            out.push(match b {
                b'\n' => b'n',
                b'\r' => b'r',
                _ => b't',
            });
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

/// Bytes before which a backslash run is dropped in measurements and field keys (rewrite 3).
#[inline]
fn drops_backslash(b: u8) -> bool {
    matches!(b, b',' | b'=' | b' ' | b'"')
}

/// Writes a measurement or field key: rewrite 3, then escaping. The fast path (no backslash)
/// is the plain escaper.
#[inline]
fn write_name(out: &mut Vec<u8>, s: &[u8], class: &[u8; 256]) {
    if !s.contains(&b'\\') {
        return write_escaped(out, s, class);
    }
    let mut i = 0;
    let mut start = 0;
    while i < s.len() {
        if s[i] == b'\\' {
            let run = i;
            while i < s.len() && s[i] == b'\\' {
                i += 1;
            }
            if i < s.len() && drops_backslash(s[i]) {
                write_escaped(out, &s[start..run], class);
                start = i;
            }
        } else {
            i += 1;
        }
    }
    write_escaped(out, &s[start..], class);
}

/// Rewrite 1: strip trailing backslashes of a name or tag value.
#[inline]
fn trim_backslashes(s: &str) -> &str {
    s.trim_end_matches('\\')
}

fn reserved(name: &str) -> bool {
    name.starts_with('_') || name == "time"
}

fn write_i64(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

fn write_f64(out: &mut Vec<u8>, v: f64) {
    use std::io::Write;
    // Display gives the shortest representation that round-trips and never an exponent, which
    // the Go parser accepts. Writing into a Vec cannot fail.
    let _ = write!(out, "{v}");
}

/// Length and first 7 bytes of a key: equal keys have equal fingerprints.
#[inline]
fn fingerprint(key: &str) -> u64 {
    let k = key.as_bytes();
    let mut b = [0u8; 8];
    let m = k.len().min(7);
    b[..m].copy_from_slice(&k[..m]);
    b[7] = k.len() as u8;
    u64::from_le_bytes(b)
}

/// Small fixed-capacity index list, so sorting tags needs no allocation for typical points.
const INLINE: usize = 32;

/// Appends one line plus `'\n'` to `out`. On error `out` is left unchanged.
pub fn encode(p: &PointOf<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let r = encode_inner(p, out);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn encode_inner(p: &PointOf<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let measurement = trim_backslashes(&p.measurement);
    if measurement.is_empty() {
        return Err(EncodeError::EmptyMeasurement);
    }
    if reserved(measurement) || measurement.starts_with('#') {
        return Err(EncodeError::ReservedName {
            measurement: p.measurement.to_string(),
            name: p.measurement.to_string(),
        });
    }
    write_name(out, measurement.as_bytes(), &MEASUREMENT);

    // Tags: sort indices by trimmed key; keep the caller's Vec untouched.
    let mut inline = [0usize; INLINE];
    let mut heap: Vec<usize> = Vec::new();
    let tag_key = |i: usize| trim_backslashes(&p.tags[i].0);
    let order: &mut [usize] = if p.tags.len() <= INLINE {
        for (i, slot) in inline.iter_mut().enumerate().take(p.tags.len()) {
            *slot = i;
        }
        &mut inline[..p.tags.len()]
    } else {
        heap.extend(0..p.tags.len());
        &mut heap
    };
    // Callers usually add tags in order already; then the check is all the work.
    if !order.is_sorted_by(|&a, &b| tag_key(a) <= tag_key(b)) {
        order.sort_unstable_by(|&a, &b| tag_key(a).cmp(tag_key(b)));
    }
    let mut prev: Option<&str> = None;
    for &i in order.iter() {
        let key = tag_key(i);
        if key.is_empty() {
            return Err(EncodeError::EmptyKey {
                measurement: p.measurement.to_string(),
                what: "tag",
            });
        }
        if reserved(key) {
            return Err(EncodeError::ReservedName {
                measurement: p.measurement.to_string(),
                name: key.to_owned(),
            });
        }
        if prev == Some(key) {
            return Err(EncodeError::DuplicateKey {
                measurement: p.measurement.to_string(),
                what: "tag",
                key: key.to_owned(),
            });
        }
        prev = Some(key);
        let value = trim_backslashes(&p.tags[i].1);
        if value.is_empty() {
            continue;
        }
        out.push(b',');
        write_escaped(out, key.as_bytes(), &KEY_OR_TAG_VALUE);
        out.push(b'=');
        write_escaped(out, value.as_bytes(), &KEY_OR_TAG_VALUE);
    }

    let mut sep = b' ';
    let mut seen: [&str; INLINE] = [""; INLINE];
    let mut seen_fp = [0u64; INLINE];
    for (n, (k, v)) in p.fields.iter().enumerate() {
        let key = trim_backslashes(k);
        if key.is_empty() {
            return Err(EncodeError::EmptyKey {
                measurement: p.measurement.to_string(),
                what: "field",
            });
        }
        if reserved(key) {
            return Err(EncodeError::ReservedName {
                measurement: p.measurement.to_string(),
                name: key.to_owned(),
            });
        }
        // Field lists are short: a quadratic check without allocation, over the keys seen so
        // far (trimmed once) and a fingerprint that settles nearly every pair in one compare.
        let fp = fingerprint(key);
        let duplicate = if n < INLINE {
            let dup = (0..n).any(|j| seen_fp[j] == fp && seen[j] == key);
            seen_fp[n] = fp;
            seen[n] = key;
            dup
        } else {
            p.fields[..n]
                .iter()
                .any(|(k2, _)| trim_backslashes(k2) == key)
        };
        if duplicate {
            return Err(EncodeError::DuplicateKey {
                measurement: p.measurement.to_string(),
                what: "field",
                key: key.to_owned(),
            });
        }
        if let FieldValueOf::Float(f) = v
            && !f.is_finite()
        {
            continue;
        }
        out.push(sep);
        sep = b',';
        write_name(out, key.as_bytes(), &KEY_OR_TAG_VALUE);
        out.push(b'=');
        match v {
            FieldValueOf::Int(i) => {
                write_i64(out, *i);
                out.push(b'i');
            }
            FieldValueOf::Float(f) => write_f64(out, *f),
            FieldValueOf::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            FieldValueOf::Str(s) => {
                out.push(b'"');
                write_escaped(out, s.as_bytes(), &STRING_VALUE);
                out.push(b'"');
            }
        }
    }
    if sep == b' ' {
        return Err(EncodeError::NoFields {
            measurement: p.measurement.to_string(),
        });
    }
    out.push(b' ');
    write_i64(out, p.timestamp_ns);
    out.push(b'\n');
    Ok(())
}

/// Encodes every point it can; refused points are listed in the report and leave no bytes.
pub fn encode_all(points: &[PointOf<'_>], out: &mut Vec<u8>) -> EncodeReport {
    let mut report = EncodeReport::default();
    for (i, p) in points.iter().enumerate() {
        match encode(p, out) {
            Ok(()) => report.encoded += 1,
            Err(e) => report.rejected.push((i, e)),
        }
    }
    report
}

impl fmt::Display for FieldValueOf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValueOf::Int(v) => write!(f, "{v}i"),
            FieldValueOf::Float(v) => write!(f, "{v}"),
            FieldValueOf::Bool(v) => write!(f, "{v}"),
            FieldValueOf::Str(v) => write!(f, "{v:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_field_keys_are_found_in_long_lists_and_after_trimming() {
        let keys: Vec<String> = (0..40).map(|i| format!("field_number_{i:02}")).collect();
        let mut p = Point::new("m", 1);
        for k in &keys {
            p = p.field(k.clone(), 1i64);
        }
        let mut out = Vec::new();
        assert!(
            encode(&p, &mut out).is_ok(),
            "40 distinct keys sharing 13 bytes"
        );
        for at in [1, 20, 31, 32, 39] {
            let mut q = p.clone();
            q.fields[at].0 = keys[at - 1].clone().into();
            assert!(
                matches!(encode(&q, &mut out), Err(EncodeError::DuplicateKey { .. })),
                "duplicate at {at}"
            );
        }
        // Keys equal once their trailing backslashes are stripped (rewrite 1).
        let q = Point::new("m", 1).field("ab", 1i64).field("ab\\\\", 2i64);
        assert!(matches!(
            encode(&q, &mut out),
            Err(EncodeError::DuplicateKey { .. })
        ));
    }

    fn line(p: &Point) -> String {
        let mut out = Vec::new();
        encode(p, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn err(p: &Point) -> EncodeError {
        let mut out = b"keep".to_vec();
        let e = encode(p, &mut out).unwrap_err();
        assert_eq!(out, b"keep", "out must be unchanged on error");
        e
    }

    #[test]
    fn escaping_table() {
        // (measurement, tag key, tag value, field key, string value, expected line)
        let cases: &[(&str, &str, &str, &str, &str, &str)] = &[
            ("m", "k", "v", "f", "s", "m,k=v f=\"s\" 1\n"),
            // measurement: comma and space escaped, '=' and '"' left alone
            (
                "a,b c=d\"",
                "k",
                "v",
                "f",
                "s",
                "a\\,b\\ c=d\",k=v f=\"s\" 1\n",
            ),
            // tag key/value, field key: comma, '=', space escaped
            (
                "m",
                "a,b=c d",
                "e,f=g h",
                "i,j=k l",
                "s",
                "m,a\\,b\\=c\\ d=e\\,f\\=g\\ h i\\,j\\=k\\ l=\"s\" 1\n",
            ),
            // backslash inside names is never escaped
            (
                "m\\x",
                "k\\y",
                "v\\z",
                "f\\w",
                "s",
                "m\\x,k\\y=v\\z f\\w=\"s\" 1\n",
            ),
            // backslash before an escaped char stays single: the server un-escapes only `\,`
            ("m", "k", "a\\,b", "f", "s", "m,k=a\\\\,b f=\"s\" 1\n"),
            // trailing backslashes stripped (rewrite 1)
            ("m\\", "k\\\\", "v\\", "f\\", "s", "m,k=v f=\"s\" 1\n"),
            // string value: backslash then quote escaped; commas, '=', spaces raw
            (
                "m",
                "k",
                "v",
                "f",
                "a\\b\"c, =d\\",
                "m,k=v f=\"a\\\\b\\\"c, =d\\\\\" 1\n",
            ),
            // control characters (rewrite 2) everywhere
            (
                "m\nx",
                "k\ty",
                "v\rz",
                "f\n",
                "a\nb\tc\rd",
                "m\\nx,k\\ty=v\\rz f\\n=\"a\\nb\\tc\\rd\" 1\n",
            ),
            // rewrite 3: backslash runs before `,` `=` space `"` dropped in measurement and
            // field keys, kept in tag keys and values
            (
                "a\\,b\\\"c",
                "k\\,",
                "v\\\"",
                "f\\\\ g\\\"",
                "s",
                "a\\,b\"c,k\\\\,=v\\\" f\\ g\"=\"s\" 1\n",
            ),
            // non-ASCII passes through
            ("mé", "ключ", "値", "f😀", "ü", "mé,ключ=値 f😀=\"ü\" 1\n"),
        ];
        for (i, (m, tk, tv, fk, sv, want)) in cases.iter().enumerate() {
            let p = Point::new(m.to_string(), 1)
                .tag(tk.to_string(), *tv)
                .field(fk.to_string(), *sv);
            assert_eq!(line(&p), *want, "case {i}");
        }
    }

    #[test]
    fn value_types() {
        let p = Point::new("m", -5)
            .field("i", 42i64)
            .field("n", -9_223_372_036_854_775_808i64)
            .field("f", 1.5)
            .field("g", 3.0)
            .field("t", true)
            .field("u", false)
            .field("s", "");
        assert_eq!(
            line(&p),
            "m i=42i,n=-9223372036854775808i,f=1.5,g=3,t=true,u=false,s=\"\" -5\n"
        );
    }

    #[test]
    fn tags_sorted_and_empty_omitted() {
        let p = Point::new("m", 7)
            .tag("zone", "z")
            .tag("b", "")
            .tag("a", "x")
            .tag("c", "\\")
            .field("v", 1i64);
        assert_eq!(line(&p), "m,a=x,zone=z v=1i 7\n");
        // the caller's order is untouched
        assert_eq!(p.tags[0].0, "zone");
    }

    #[test]
    fn many_tags_sorted() {
        let mut p = Point::new("m", 1).field("v", 1i64);
        for i in (0..40).rev() {
            p = p.tag(format!("k{i:02}"), "v");
        }
        let l = line(&p);
        let keys: Vec<&str> = l
            .split(' ')
            .next()
            .unwrap()
            .split(',')
            .skip(1)
            .map(|kv| kv.split('=').next().unwrap())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys.len(), 40);
    }

    #[test]
    fn non_finite_floats_omitted() {
        let p = Point::new("m", 1)
            .field("a", f64::NAN)
            .field("b", 2.0)
            .field("c", f64::INFINITY)
            .field("d", f64::NEG_INFINITY);
        assert_eq!(line(&p), "m b=2 1\n");
        let p = Point::new("m", 1).field("a", f64::NAN);
        assert!(matches!(err(&p), EncodeError::NoFields { .. }));
    }

    #[test]
    fn field_opt_skips_none() {
        let p = Point::new("m", 1)
            .field_opt("a", None::<i64>)
            .field_opt("b", Some(2i64));
        assert_eq!(line(&p), "m b=2i 1\n");
    }

    #[test]
    fn rejections() {
        let ok = || Point::new("m", 1).field("v", 1i64);
        assert_eq!(
            err(&Point::new("", 1).field("v", 1i64)),
            EncodeError::EmptyMeasurement
        );
        assert_eq!(
            err(&Point::new("\\\\", 1).field("v", 1i64)),
            EncodeError::EmptyMeasurement
        );
        assert!(matches!(
            err(&Point::new("m", 1)),
            EncodeError::NoFields { .. }
        ));
        assert!(matches!(
            err(&Point::new("_m", 1).field("v", 1i64)),
            EncodeError::ReservedName { .. }
        ));
        assert!(matches!(
            err(&Point::new("#m", 1).field("v", 1i64)),
            EncodeError::ReservedName { .. }
        ));
        assert!(matches!(
            err(&ok().tag("_k", "v")),
            EncodeError::ReservedName { .. }
        ));
        assert!(matches!(
            err(&ok().tag("time", "v")),
            EncodeError::ReservedName { .. }
        ));
        assert!(matches!(
            err(&ok().field("_f", 1i64)),
            EncodeError::ReservedName { .. }
        ));
        assert!(matches!(
            err(&ok().tag("", "v")),
            EncodeError::EmptyKey { what: "tag", .. }
        ));
        assert!(matches!(
            err(&ok().field("\\", 1i64)),
            EncodeError::EmptyKey { what: "field", .. }
        ));
        assert!(matches!(
            err(&ok().tag("k", "a").tag("k", "b")),
            EncodeError::DuplicateKey { what: "tag", .. }
        ));
        assert!(matches!(
            err(&ok().field("v", 2i64)),
            EncodeError::DuplicateKey { what: "field", .. }
        ));
        // a tag *value* may start with '_' or be "time"
        assert_eq!(line(&ok().tag("k", "_time")), "m,k=_time v=1i 1\n");
    }

    #[test]
    fn encode_all_counts() {
        let pts = vec![
            Point::new("m", 1).field("v", 1i64),
            Point::new("m", 2),
            Point::new("m", 3).field("v", 3i64),
        ];
        let mut out = Vec::new();
        let r = encode_all(&pts, &mut out);
        assert_eq!(r.encoded, 2);
        assert_eq!(r.rejected.len(), 1);
        assert_eq!(r.rejected[0].0, 1);
        assert_eq!(out, b"m v=1i 1\nm v=3i 3\n");
    }
}
