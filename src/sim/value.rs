//! Typed cell values of simulated rows and their wire formats: the Monitor Service's JSON
//! rendering of dates (UTC `Z`, .NET ticks with trailing zeros trimmed) and Guids (lowercase),
//! and parsing of OData date-time / date / Guid literals. It must not know about entity sets,
//! queries or HTTP.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc};
use serde::ser::{Serialize, Serializer};

/// One property value. Dates keep .NET tick precision (100 ns), Guids are 128-bit numbers so
/// that they hash, sort and compare cheaply; both are rendered as strings on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<str>),
    Guid(u128),
    Date(DateTime<Utc>),
}

impl Val {
    pub fn str(s: impl Into<String>) -> Val {
        Val::Str(s.into().into_boxed_str())
    }

    #[cfg(test)]
    pub fn opt_str(s: Option<impl Into<String>>) -> Val {
        s.map_or(Val::Null, Val::str)
    }

    pub fn opt_date(d: Option<DateTime<Utc>>) -> Val {
        d.map_or(Val::Null, Val::Date)
    }

    /// The value as an index key (only Int and Guid properties are keys or foreign keys).
    pub fn key(&self) -> Option<Key> {
        match self {
            Val::Int(i) => Some(Key::Int(*i)),
            Val::Guid(g) => Some(Key::Guid(*g)),
            _ => None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Val::Null => serde_json::Value::Null,
            Val::Bool(b) => (*b).into(),
            Val::Int(i) => (*i).into(),
            Val::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Val::Str(s) => serde_json::Value::String(s.to_string()),
            Val::Guid(g) => serde_json::Value::String(format_guid(*g)),
            Val::Date(d) => serde_json::Value::String(format_date(*d)),
        }
    }
}

impl Serialize for Val {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Val::Null => s.serialize_none(),
            Val::Bool(b) => s.serialize_bool(*b),
            Val::Int(i) => s.serialize_i64(*i),
            // serde_json writes non-finite floats as null, which is what OData JSON does too.
            Val::Float(f) => s.serialize_f64(*f),
            Val::Str(v) => s.serialize_str(v),
            Val::Guid(g) => s.serialize_str(&format_guid(*g)),
            Val::Date(d) => s.serialize_str(&date_text(*d, &mut [0; DATE_BUF])),
        }
    }
}

/// Index key of a row: entity keys and foreign keys are Int32/Int64 or Guid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Int(i64),
    Guid(u128),
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase, as the Monitor Service writes Guids.
pub fn format_guid(g: u128) -> String {
    let h = format!("{g:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Parses an unquoted Guid literal (case-insensitive hex, hyphenated 8-4-4-4-12).
pub fn parse_guid(s: &str) -> Option<u128> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut hex = String::with_capacity(32);
    for (i, c) in s.chars().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != '-' {
                return None;
            }
        } else if c.is_ascii_hexdigit() {
            hex.push(c);
        } else {
            return None;
        }
    }
    u128::from_str_radix(&hex, 16).ok()
}

/// Renders a UTC instant like the Monitor Service: seconds, then the .NET tick fraction
/// (7 digits) with trailing zeros trimmed, so 0 to 7 fractional digits appear
/// (`…:50.4Z`, `…:49.37Z`, `…:37.473Z`, `…:12Z`). Sub-tick nanoseconds are dropped.
pub fn format_date(d: DateTime<Utc>) -> String {
    let mut buf = [0u8; DATE_BUF];
    date_text(d, &mut buf).into_owned()
}

/// Room for the longest rendering, `YYYY-MM-DDTHH:MM:SS.fffffffZ`.
const DATE_BUF: usize = 28;

/// [`format_date`] into a stack buffer: the simulator renders millions of dates per benchmark
/// run, and chrono's `format` (a strftime parser per call) was a quarter of its CPU. Years
/// outside 0–9999 (never served) take chrono's general path.
fn date_text(d: DateTime<Utc>, buf: &mut [u8; DATE_BUF]) -> std::borrow::Cow<'_, str> {
    let (year, month, day) = (d.year(), d.month(), d.day());
    if !(0..=9999).contains(&year) {
        let base = d.format("%Y-%m-%dT%H:%M:%S").to_string();
        let ticks = d.nanosecond() % 1_000_000_000 / 100;
        if ticks == 0 {
            return format!("{base}Z").into();
        }
        let frac = format!("{ticks:07}");
        return format!("{base}.{}Z", frac.trim_end_matches('0')).into();
    }
    fn put(buf: &mut [u8], at: usize, v: u32, digits: usize) {
        let mut v = v;
        for i in (0..digits).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    put(buf, 0, year as u32, 4);
    buf[4] = b'-';
    put(buf, 5, month, 2);
    buf[7] = b'-';
    put(buf, 8, day, 2);
    buf[10] = b'T';
    put(buf, 11, d.hour(), 2);
    buf[13] = b':';
    put(buf, 14, d.minute(), 2);
    buf[16] = b':';
    put(buf, 17, d.second(), 2);
    let mut len = 19;
    // Leap seconds are carried in the nanoseconds (≥ 10⁹): only the fraction is rendered.
    let mut ticks = d.nanosecond() % 1_000_000_000 / 100;
    if ticks != 0 {
        let mut digits = 7;
        while ticks.is_multiple_of(10) {
            ticks /= 10;
            digits -= 1;
        }
        buf[19] = b'.';
        put(buf, 20, ticks, digits);
        len = 20 + digits;
    }
    buf[len] = b'Z';
    // Only ASCII digits and separators were written.
    std::borrow::Cow::Borrowed(std::str::from_utf8(&buf[..len + 1]).expect("ASCII"))
}

/// Parses an OData v4 date-time literal (`2024-07-30T00:00:00Z`, `…T00:00Z`, up to 7
/// fractional digits, `Z` or `±hh:mm`) or a date-only literal (`2020-03-01`, midnight UTC).
/// A date-time without an offset is rejected: OData v4 DateTimeOffset literals carry one.
pub fn parse_date_literal(s: &str) -> Result<DateTime<Utc>, String> {
    let bad = || format!("'{s}' is not a valid date-time literal");
    let (date_part, rest) = match s.find('T') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let date = NaiveDate::parse_from_str(date_part, "%Y-%m-%d").map_err(|_| bad())?;
    if date_part.len() != 10 {
        return Err(bad());
    }
    let Some(rest) = rest else {
        return Ok(Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN)));
    };
    let (time_part, offset_secs) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0i64)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let off = &rest[i + 1..];
        let sign = if rest.as_bytes()[i] == b'-' { -1 } else { 1 };
        let (h, m) = off.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: i64 = h.parse().map_err(|_| bad())?;
        let m: i64 = m.parse().map_err(|_| bad())?;
        if h > 14 || m > 59 {
            return Err(bad());
        }
        (&rest[..i], sign * (h * 3600 + m * 60))
    } else {
        return Err(format!(
            "date-time literal '{s}' has no time zone offset (use Z)"
        ));
    };
    let (hms, frac) = match time_part.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (time_part, None),
    };
    let mut parts = hms.split(':');
    let mut next2 = |max: u32| -> Result<Option<u32>, String> {
        match parts.next() {
            None => Ok(None),
            Some(p) if p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()) => {
                let v: u32 = p.parse().map_err(|_| bad())?;
                if v > max { Err(bad()) } else { Ok(Some(v)) }
            }
            Some(_) => Err(bad()),
        }
    };
    let h = next2(23)?.ok_or_else(bad)?;
    let m = next2(59)?.ok_or_else(bad)?;
    let sec = next2(59)?;
    if parts.next().is_some() {
        return Err(bad());
    }
    let nanos = match frac {
        None => 0,
        Some(f) => {
            if sec.is_none()
                || f.is_empty()
                || f.len() > 7
                || !f.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(bad());
            }
            let ticks: u32 = format!("{f:0<7}").parse().map_err(|_| bad())?;
            ticks * 100
        }
    };
    let time = NaiveTime::from_hms_nano_opt(h, m, sec.unwrap_or(0), nanos).ok_or_else(bad)?;
    let local = NaiveDateTime::new(date, time);
    Ok(Utc.from_utc_datetime(&local) - chrono::Duration::seconds(offset_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> DateTime<Utc> {
        parse_date_literal(s).unwrap()
    }

    #[test]
    fn dates_trim_trailing_zeros_of_ticks() {
        assert_eq!(
            format_date(d("2024-08-05T10:01:50.4Z")),
            "2024-08-05T10:01:50.4Z"
        );
        assert_eq!(
            format_date(d("2024-07-30T01:02:49.370Z")),
            "2024-07-30T01:02:49.37Z"
        );
        assert_eq!(
            format_date(d("2024-07-31T11:22:37.473Z")),
            "2024-07-31T11:22:37.473Z"
        );
        assert_eq!(
            format_date(d("2024-07-31T11:22:37Z")),
            "2024-07-31T11:22:37Z"
        );
        assert_eq!(
            format_date(d("2024-07-31T11:22:37.0000000Z")),
            "2024-07-31T11:22:37Z"
        );
        assert_eq!(
            format_date(d("2024-07-31T11:22:37.1234567Z")),
            "2024-07-31T11:22:37.1234567Z"
        );
        // Sub-tick nanoseconds never show up (the service has 100 ns resolution).
        let odd = d("2024-07-31T11:22:37Z") + chrono::Duration::nanoseconds(1_234_567_891);
        assert_eq!(format_date(odd), "2024-07-31T11:22:38.2345678Z");
    }

    #[test]
    fn the_fast_date_path_agrees_with_chrono() {
        use rand::{Rng, SeedableRng};
        let slow = |d: DateTime<Utc>| {
            let base = d.format("%Y-%m-%dT%H:%M:%S").to_string();
            let ticks = d.nanosecond() % 1_000_000_000 / 100;
            if ticks == 0 {
                return format!("{base}Z");
            }
            format!("{base}.{}Z", format!("{ticks:07}").trim_end_matches('0'))
        };
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for i in 0..20_000 {
            let secs = rng.random_range(-62_000_000_000i64..253_402_300_799);
            // Whole seconds, whole ticks, and arbitrary nanoseconds.
            let nanos = match i % 3 {
                0 => 0,
                1 => rng.random_range(0..10_000_000u32) * 100,
                _ => rng.random_range(0..1_000_000_000u32),
            };
            let d = DateTime::from_timestamp(secs, nanos).unwrap();
            assert_eq!(format_date(d), slow(d), "{secs} {nanos}");
        }
        // Beyond four-digit years the general path is used, and still agrees.
        let far = DateTime::from_timestamp(300_000_000_000, 5_000).unwrap();
        assert_eq!(format_date(far), slow(far));
    }

    #[test]
    fn date_literals() {
        assert_eq!(d("2020-03-01"), d("2020-03-01T00:00:00Z"));
        assert_eq!(d("2024-07-30T02:00:00+02:00"), d("2024-07-30T00:00:00Z"));
        assert_eq!(d("2024-07-30T00:00:00-05:30"), d("2024-07-30T05:30:00Z"));
        assert_eq!(d("2024-07-30T00:00Z"), d("2024-07-30T00:00:00Z"));
        assert_eq!(d("2024-07-30T00:00:00.5Z").timestamp_subsec_millis(), 500);
        for bad in [
            "2024-07-30T00:00:00",
            "2024-7-30",
            "2024-07-30T00:00:00.12345678Z",
            "2024-07-30T24:00:00Z",
            "2024-02-30",
            "2024-07-30T00:00:00.Z",
            "2024-07-30T00Z",
        ] {
            assert!(parse_date_literal(bad).is_err(), "{bad} accepted");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_tick_instant_round_trips(ticks in 0i64..(4_102_444_800i64 * 10_000_000)) {
            let d = DateTime::from_timestamp_nanos(ticks * 100);
            let s = format_date(d);
            proptest::prop_assert_eq!(parse_date_literal(&s), Ok(d));
            let frac = s[19..s.len() - 1].trim_start_matches('.');
            proptest::prop_assert!(!frac.ends_with('0') && frac.len() <= 7, "{}", s);
        }
    }

    #[test]
    fn guids_round_trip_lowercase() {
        let g = parse_guid("6B07220E-1D2C-4E6F-8A9B-0C1D2E3F4A5B").unwrap();
        assert_eq!(format_guid(g), "6b07220e-1d2c-4e6f-8a9b-0c1d2e3f4a5b");
        assert!(parse_guid("6b07220e1d2c-4e6f-8a9b-0c1d2e3f4a5b-").is_none());
        assert!(parse_guid("6b07220e-1d2c-4e6f-8a9b-0c1d2e3f4a5").is_none());
        assert!(parse_guid("6b07220e-1d2c-4e6f-8a9b-0c1d2e3f4a5g").is_none());
    }
}
