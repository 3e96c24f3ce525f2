//! Serde models of the Monitor OData v4 JSON (citrix-monitor-api.md §3, §5.3). Only the
//! properties the collectors read are declared; unknown properties are ignored, every property
//! is optional (the service sends explicit nulls, and `$select` leaves others out). No mapping
//! or validation happens here: that is the collectors' job.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// One page of an OData v4 collection response.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
    #[serde(rename = "@odata.count", default)]
    pub count: Option<u64>,
}

pub type Date = Option<DateTime<Utc>>;

/// Deserializes a [`Date`] (every date field uses it): a JSON null is `None`, a string is an
/// ISO-8601 instant. Dates are most of a page's values, so the shape the service sends
/// (citrix-monitor-api.md §5.4: `YYYY-MM-DDTHH:MM:SS`, 0–7 fraction digits, `Z`) is parsed
/// here directly from the borrowed text; anything else (offsets, leap seconds, more than nine
/// digits) goes to chrono's general parser, which the fast path agrees with (a test compares
/// them).
fn date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Date;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an ISO-8601 date-time string or null")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Date, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Date, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Date, D2::Error> {
            d.deserialize_str(V)
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Date, E> {
            let t = parse_date(s).map_err(E::custom)?;
            // A VDA's clock can say year 9999; a point's nanosecond timestamp cannot (i64
            // ends in 2262): such a date costs its record, never a wrapped or panicking sum.
            if t.timestamp_nanos_opt().is_none() {
                return Err(E::custom(format!(
                    "date {s} is outside the range of line-protocol timestamps (1677-09-21 to 2262-04-11)"
                )));
            }
            Ok(Some(t))
        }
    }
    d.deserialize_option(V)
}

/// Optional text that borrows from the page body when it can: a JSON string without escapes
/// is a slice of the body (no allocation); one with escapes (`DOM\\user`) is unescaped into
/// an owned string. serde's own `Option<Cow<str>>` always allocates, hence [`text`].
pub type Text<'a> = Option<Cow<'a, str>>;

/// A duration in milliseconds: `null` or missing is `None`; a negative value is refused, which
/// costs that record (decoded on its own, counted as rejected, logged with its index), never
/// the page — a span cannot be negative, and `brokering_ms=-5000i` would skew every average.
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<i64>::deserialize(d)? {
        Some(ms) if ms < 0 => Err(serde::de::Error::custom(format!(
            "negative duration {ms} ms"
        ))),
        v => Ok(v),
    }
}

/// Deserializes a [`Text`]: null is `None`, a string borrows when the deserializer lends it.
fn text<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Text<'a>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Text<'de>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_str(V)
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(s)))
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(s.to_owned())))
        }
        fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(s)))
        }
    }
    d.deserialize_option(V)
}

/// Parses an instant as [`date`] does.
pub fn parse_date(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match parse_date_fast(s.as_bytes()) {
        Some(t) => Ok(t),
        None => s.parse::<DateTime<Utc>>(),
    }
}

/// `NaiveDate::from_ymd_opt` with a one-entry memo per thread: a connection has up to 17
/// dates and nearly all of them fall on the same day, so the calendar check runs about once per
/// record instead of once per date.
fn ymd(year: u32, month: u32, day: u32) -> Option<chrono::NaiveDate> {
    use std::cell::Cell;
    thread_local! {
        static LAST: Cell<Option<(u32, chrono::NaiveDate)>> = const { Cell::new(None) };
    }
    // Unambiguous: month and day are two digits each (< 100), year four (< 10000).
    let key = (year * 100 + month) * 100 + day;
    LAST.with(|last| {
        if let Some((k, d)) = last.get()
            && k == key
        {
            return Some(d);
        }
        let d = chrono::NaiveDate::from_ymd_opt(year as i32, month, day)?;
        last.set(Some((key, d)));
        Some(d)
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` (also `t`/` ` and `z`, as chrono accepts), else `None`.
fn parse_date_fast(b: &[u8]) -> Option<DateTime<Utc>> {
    fn digits(b: &[u8]) -> Option<u32> {
        let mut v = 0u32;
        for &c in b {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + (c - b'0') as u32;
        }
        Some(v)
    }
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
        || !matches!(b[b.len() - 1], b'Z' | b'z')
    {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let min = digits(&b[14..16])?;
    let sec = digits(&b[17..19])?;
    let frac = &b[19..b.len() - 1];
    let nanos = match frac {
        [] => 0,
        [b'.', f @ ..] if !f.is_empty() && f.len() <= 9 => {
            digits(f)? * 10u32.pow(9 - f.len() as u32)
        }
        _ => return None,
    };
    if sec > 59 {
        return None; // a leap second: chrono's parser knows how to represent it
    }
    let date = ymd(year, month, day)?;
    let time = chrono::NaiveTime::from_hms_nano_opt(hour, min, sec, nanos)?;
    Some(date.and_time(time).and_utc())
}

/// An id whose Edm type is not documented (a number on one service, a Guid string on another):
/// kept as text either way.
fn flexible_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected an id (string or number), got {other}"
            )));
        }
    })
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DesktopGroup {
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Catalog {
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct LoadIndex {
    pub id: Option<i64>,
    pub effective_load_index: Option<f64>,
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub disk: Option<f64>,
    pub network: Option<f64>,
    pub session_count: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct User {
    pub id: Option<i64>,
    pub user_name: Option<String>,
    pub upn: Option<String>,
    pub full_name: Option<String>,
    pub domain: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Machine {
    pub id: Option<String>,
    pub name: Option<String>,
    pub dns_name: Option<String>,
    pub lifecycle_state: Option<i64>,
    pub current_registration_state: Option<i64>,
    pub current_power_state: Option<i64>,
    pub fault_state: Option<i64>,
    pub is_in_maintenance_mode: Option<bool>,
    pub is_assigned: Option<bool>,
    pub current_session_count: Option<i64>,
    pub current_load_index_id: Option<i64>,
    pub desktop_group_id: Option<String>,
    pub catalog_id: Option<String>,
    pub agent_version: Option<String>,
    #[serde(rename = "OSType")]
    pub os_type: Option<String>,
    #[serde(rename = "IPAddress")]
    pub ip_address: Option<String>,
    #[serde(deserialize_with = "date")]
    pub modified_date: Date,
    pub desktop_group: Option<DesktopGroup>,
    pub catalog: Option<Catalog>,
    pub current_load_index: Option<LoadIndex>,
}

/// A machine as the Machines snapshot reads it (its `$select` and `$expand`), borrowing its
/// text from the page body like [`Connection`]: the snapshot is the most frequent record of a
/// steady harvest (every machine of every tenant each minute by default).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct MachineRow<'a> {
    #[serde(borrow, deserialize_with = "text")]
    pub id: Text<'a>,
    #[serde(borrow, deserialize_with = "text")]
    pub name: Text<'a>,
    #[serde(borrow, deserialize_with = "text")]
    pub dns_name: Text<'a>,
    pub lifecycle_state: Option<i64>,
    pub current_registration_state: Option<i64>,
    pub current_power_state: Option<i64>,
    pub fault_state: Option<i64>,
    pub is_in_maintenance_mode: Option<bool>,
    pub current_session_count: Option<i64>,
    #[serde(borrow, deserialize_with = "text")]
    pub agent_version: Text<'a>,
    #[serde(rename = "OSType", borrow, deserialize_with = "text")]
    pub os_type: Text<'a>,
    #[serde(borrow)]
    pub desktop_group: Option<Named<'a>>,
    #[serde(borrow)]
    pub catalog: Option<Named<'a>>,
    pub current_load_index: Option<LoadIndex>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Session {
    pub session_key: Option<String>,
    #[serde(deserialize_with = "date")]
    pub failure_date: Date,
    pub exit_code: Option<i64>,
    pub lifecycle_state: Option<i64>,
    #[serde(deserialize_with = "date")]
    pub modified_date: Date,
    #[serde(deserialize_with = "date")]
    pub start_date: Date,
    #[serde(deserialize_with = "date")]
    pub end_date: Date,
    #[serde(default, deserialize_with = "duration")]
    pub log_on_duration: Option<i64>,
    pub connection_state: Option<i64>,
    pub session_type: Option<i64>,
    pub failure_id: Option<i64>,
    pub user_id: Option<i64>,
    pub machine_id: Option<String>,
    pub user: Option<User>,
    pub machine: Option<Machine>,
}

/// A connection as the Connections collector reads it. Its text borrows from the page body
/// (see [`Text`]); this is the hottest record of a harvest (1000 per page, ~1 KB each).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Connection<'a> {
    pub id: Option<i64>,
    #[serde(borrow, deserialize_with = "text")]
    pub client_name: Text<'a>,
    #[serde(borrow, deserialize_with = "text")]
    pub client_address: Text<'a>,
    #[serde(borrow, deserialize_with = "text")]
    pub client_version: Text<'a>,
    #[serde(borrow, deserialize_with = "text")]
    pub client_platform: Text<'a>,
    pub is_reconnect: Option<bool>,
    pub is_secure_ica: Option<bool>,
    #[serde(borrow, deserialize_with = "text")]
    pub protocol: Text<'a>,
    #[serde(deserialize_with = "date")]
    pub log_on_start_date: Date,
    #[serde(deserialize_with = "date")]
    pub log_on_end_date: Date,
    #[serde(default, deserialize_with = "duration")]
    pub brokering_duration: Option<i64>,
    #[serde(deserialize_with = "date")]
    pub brokering_date: Date,
    #[serde(rename = "VMStartStartDate")]
    #[serde(deserialize_with = "date")]
    pub vm_start_start_date: Date,
    #[serde(rename = "VMStartEndDate")]
    #[serde(deserialize_with = "date")]
    pub vm_start_end_date: Date,
    #[serde(deserialize_with = "date")]
    pub hdx_start_date: Date,
    #[serde(deserialize_with = "date")]
    pub hdx_end_date: Date,
    #[serde(default, deserialize_with = "duration")]
    pub authentication_duration: Option<i64>,
    #[serde(deserialize_with = "date")]
    pub gpo_start_date: Date,
    #[serde(deserialize_with = "date")]
    pub gpo_end_date: Date,
    #[serde(deserialize_with = "date")]
    pub log_on_scripts_start_date: Date,
    #[serde(deserialize_with = "date")]
    pub log_on_scripts_end_date: Date,
    #[serde(deserialize_with = "date")]
    pub profile_load_start_date: Date,
    #[serde(deserialize_with = "date")]
    pub profile_load_end_date: Date,
    #[serde(deserialize_with = "date")]
    pub interactive_start_date: Date,
    #[serde(deserialize_with = "date")]
    pub interactive_end_date: Date,
    #[serde(borrow, deserialize_with = "text")]
    pub session_key: Text<'a>,
    #[serde(deserialize_with = "date")]
    pub created_date: Date,
    #[serde(deserialize_with = "date")]
    pub modified_date: Date,
    #[serde(borrow)]
    pub session: Option<LogonSession<'a>>,
}

/// The `Session` expanded into a [`Connection`] (only what `$select` asks for), borrowing.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogonSession<'a> {
    #[serde(borrow, deserialize_with = "text")]
    pub session_key: Text<'a>,
    #[serde(default, deserialize_with = "duration")]
    pub log_on_duration: Option<i64>,
    pub session_type: Option<i64>,
    #[serde(borrow)]
    pub user: Option<NamedUser<'a>>,
    #[serde(borrow)]
    pub machine: Option<NamedMachine<'a>>,
}

/// An expanded `User` of which only the name is selected, borrowing.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NamedUser<'a> {
    #[serde(borrow, deserialize_with = "text")]
    pub user_name: Text<'a>,
}

/// An expanded `Machine` of which only the name and delivery group are selected, borrowing.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NamedMachine<'a> {
    #[serde(borrow, deserialize_with = "text")]
    pub name: Text<'a>,
    #[serde(borrow)]
    pub desktop_group: Option<Named<'a>>,
}

/// An expanded entity of which only `Name` is selected (a delivery group), borrowing.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Named<'a> {
    #[serde(borrow, deserialize_with = "text")]
    pub name: Text<'a>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConnectionFailureLog {
    pub id: Option<i64>,
    pub session_key: Option<String>,
    #[serde(deserialize_with = "date")]
    pub failure_date: Date,
    pub user_id: Option<i64>,
    pub machine_id: Option<String>,
    pub connection_failure_enum_value: Option<i64>,
    #[serde(deserialize_with = "date")]
    pub created_date: Date,
    #[serde(deserialize_with = "date")]
    pub modified_date: Date,
    pub machine: Option<Machine>,
    pub user: Option<User>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConnectionFailureCategory {
    pub id: Option<i64>,
    pub connection_failure_enum_value: Option<i64>,
    pub category: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct MachineFailureLog {
    pub id: Option<i64>,
    pub machine_id: Option<String>,
    #[serde(deserialize_with = "date")]
    pub failure_start_date: Date,
    #[serde(deserialize_with = "date")]
    pub failure_end_date: Date,
    pub fault_state: Option<i64>,
    pub last_deregistered_code: Option<i64>,
    #[serde(deserialize_with = "date")]
    pub created_date: Date,
    #[serde(deserialize_with = "date")]
    pub modified_date: Date,
    pub machine: Option<Machine>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct SessionActivitySummary {
    pub id: Option<i64>,
    #[serde(deserialize_with = "date")]
    pub summary_date: Date,
    pub desktop_group_id: Option<String>,
    pub connected_session_count: Option<i64>,
    pub disconnected_session_count: Option<i64>,
    pub concurrent_session_count: Option<i64>,
    #[serde(default, deserialize_with = "duration")]
    pub total_log_on_duration: Option<i64>,
    pub total_log_on_count: Option<i64>,
    pub granularity: Option<i64>,
    pub desktop_group: Option<DesktopGroup>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogOnSummary {
    pub id: Option<i64>,
    #[serde(deserialize_with = "date")]
    pub summary_date: Date,
    pub desktop_group_id: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub total_duration: Option<i64>,
    pub total_count: Option<i64>,
    #[serde(default, deserialize_with = "duration")]
    pub brokering_duration: Option<i64>,
    pub brokering_count: Option<i64>,
    #[serde(rename = "VMStartDuration")]
    #[serde(default, deserialize_with = "duration")]
    pub vm_start_duration: Option<i64>,
    #[serde(rename = "VMStartCount")]
    pub vm_start_count: Option<i64>,
    #[serde(default, deserialize_with = "duration")]
    pub hdx_duration: Option<i64>,
    pub hdx_count: Option<i64>,
    #[serde(default, deserialize_with = "duration")]
    pub authentication_duration: Option<i64>,
    pub authentication_count: Option<i64>,
    #[serde(default, deserialize_with = "duration")]
    pub gpo_duration: Option<i64>,
    pub gpo_count: Option<i64>,
    #[serde(default, deserialize_with = "duration")]
    pub log_on_scripts_duration: Option<i64>,
    pub log_on_scripts_count: Option<i64>,
    #[serde(default, deserialize_with = "duration")]
    pub profile_load_duration: Option<i64>,
    pub profile_load_count: Option<i64>,
    #[serde(default, deserialize_with = "duration")]
    pub interactive_duration: Option<i64>,
    pub interactive_count: Option<i64>,
    pub granularity: Option<i64>,
    pub desktop_group: Option<DesktopGroup>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct LoadIndexSummary {
    pub id: Option<i64>,
    #[serde(deserialize_with = "date")]
    pub summary_date: Date,
    pub machine_id: Option<String>,
    pub sum_count: Option<f64>,
    pub sum_load_index: Option<f64>,
    pub sum_cpu: Option<f64>,
    pub sum_memory: Option<f64>,
    pub sum_disk: Option<f64>,
    pub sum_network: Option<f64>,
    pub sum_session_count: Option<f64>,
    pub granularity: Option<i64>,
    pub machine: Option<Machine>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct FailureLogSummary {
    pub id: Option<i64>,
    #[serde(deserialize_with = "date")]
    pub summary_date: Date,
    pub desktop_group_id: Option<String>,
    pub failure_category: Option<i64>,
    pub failure_code: Option<i64>,
    pub failure_count: Option<i64>,
    pub granularity: Option<i64>,
    pub desktop_group: Option<DesktopGroup>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct MachineSummary {
    pub id: Option<i64>,
    #[serde(deserialize_with = "date")]
    pub summary_date: Date,
    pub desktop_group_id: Option<String>,
    pub powered_on_machines_count: Option<i64>,
    pub registered_machines_count: Option<i64>,
    pub machines_in_maintenance_mode_count: Option<i64>,
    pub machines_count: Option<i64>,
    pub granularity: Option<i64>,
    pub desktop_group: Option<DesktopGroup>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct LoadIndexRow {
    pub id: Option<i64>,
    pub effective_load_index: Option<f64>,
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub disk: Option<f64>,
    pub network: Option<f64>,
    pub session_count: Option<f64>,
    pub machine_id: Option<String>,
    #[serde(deserialize_with = "date")]
    pub created_date: Date,
    #[serde(deserialize_with = "date")]
    pub modified_date: Date,
    pub machine: Option<Machine>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ResourceUtilization {
    pub id: Option<i64>,
    pub machine_id: Option<String>,
    #[serde(deserialize_with = "date")]
    pub collected_date: Date,
    pub percent_cpu: Option<f64>,
    pub used_memory: Option<f64>,
    pub total_memory: Option<f64>,
    pub desktop_group_id: Option<String>,
    pub machine: Option<Machine>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ResourceUtilizationSummary {
    pub id: Option<i64>,
    #[serde(deserialize_with = "date")]
    pub summary_date: Date,
    pub machine_id: Option<String>,
    pub desktop_group_id: Option<String>,
    pub avg_percent_cpu: Option<f64>,
    pub peak_percent_cpu: Option<f64>,
    pub avg_used_memory: Option<f64>,
    pub peak_used_memory: Option<f64>,
    pub avg_total_memory: Option<f64>,
    pub total_session_count: Option<f64>,
    pub granularity: Option<i64>,
    pub machine: Option<Machine>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct MachineMetric {
    pub id: Option<i64>,
    pub machine_id: Option<String>,
    #[serde(deserialize_with = "date")]
    pub collected_date: Date,
    pub iops: Option<f64>,
    pub latency: Option<f64>,
    pub machine: Option<Machine>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct SessionMetrics {
    pub id: Option<i64>,
    #[serde(deserialize_with = "date")]
    pub collected_date: Date,
    #[serde(rename = "IcaRttMS")]
    pub ica_rtt_ms: Option<f64>,
    pub ica_latency: Option<f64>,
    #[serde(rename = "ClientL7Latency")]
    pub client_l7_latency: Option<f64>,
    #[serde(rename = "ServerL7Latency")]
    pub server_l7_latency: Option<f64>,
    pub session_id: Option<String>,
    #[serde(deserialize_with = "date")]
    pub modified_date: Date,
    pub session: Option<Session>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Hotfix {
    #[serde(deserialize_with = "flexible_id")]
    pub id: Option<String>,
    pub name: Option<String>,
    pub article: Option<String>,
    pub article_name: Option<String>,
    pub file_name: Option<String>,
    pub version: Option<String>,
    pub component_name: Option<String>,
    pub component_version: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct MachineHotfixLog {
    pub id: Option<i64>,
    pub machine_id: Option<String>,
    #[serde(deserialize_with = "flexible_id")]
    pub hotfix_id: Option<String>,
    pub change_type: Option<i64>,
    pub current_state: Option<bool>,
    #[serde(deserialize_with = "date")]
    pub created_date: Date,
    #[serde(deserialize_with = "date")]
    pub modified_date: Date,
    pub machine: Option<Machine>,
    pub hotfix: Option<Hotfix>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Application {
    pub id: Option<String>,
    pub name: Option<String>,
    pub published_name: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ApplicationInstance {
    pub id: Option<i64>,
    pub application_id: Option<String>,
    pub session_key: Option<String>,
    #[serde(deserialize_with = "date")]
    pub start_date: Date,
    #[serde(deserialize_with = "date")]
    pub end_date: Date,
    #[serde(deserialize_with = "date")]
    pub created_date: Date,
    #[serde(deserialize_with = "date")]
    pub modified_date: Date,
    pub application: Option<Application>,
    pub session: Option<Session>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The fast date path agrees with chrono on every shape near the service's.
        #[test]
        fn fast_dates_agree_with_chrono(
            y in 0u32..10000, mo in 0u32..14, d in 0u32..33, h in 0u32..25, mi in 0u32..61,
            s in 0u32..62, frac in proptest::option::of("[0-9]{0,11}"),
            sep in prop::sample::select(vec!["T", "t", " ", "X"]),
            z in prop::sample::select(vec!["Z", "z", "+00:00", "+02:00", ""]),
        ) {
            let text = format!(
                "{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{}{z}",
                frac.map(|f| format!(".{f}")).unwrap_or_default()
            );
            let want = text.parse::<DateTime<Utc>>().ok();
            prop_assert_eq!(parse_date(&text).ok(), want, "{}", text);
        }
    }

    #[test]
    fn date_memo_never_returns_another_day() {
        let d = |s: &str| parse_date(s).map(|t| t.date_naive().to_string());
        assert_eq!(d("2026-02-28T01:00:00Z").unwrap(), "2026-02-28");
        assert_eq!(d("2026-02-28T02:00:00.5Z").unwrap(), "2026-02-28");
        assert!(d("2026-02-30T02:00:00Z").is_err());
        assert_eq!(d("2026-03-01T00:00:00Z").unwrap(), "2026-03-01");
        assert_eq!(d("2024-02-29T00:00:00Z").unwrap(), "2024-02-29");
        assert!(d("2026-02-29T00:00:00Z").is_err());
    }

    #[test]
    fn dates_null_missing_and_malformed() {
        let c: Connection = serde_json::from_str(
            r#"{"LogOnStartDate":null,"BrokeringDate":"2024-07-31T11:22:37.4730000Z",
                "CreatedDate":"2024-07-31T13:22:37.473+02:00"}"#,
        )
        .unwrap();
        assert!(c.log_on_start_date.is_none() && c.modified_date.is_none());
        assert_eq!(c.brokering_date, c.created_date);
        assert_eq!(
            c.brokering_date.unwrap().timestamp_subsec_nanos(),
            473_000_000
        );
        assert!(serde_json::from_str::<Connection>(r#"{"CreatedDate":"yesterday"}"#).is_err());
        assert!(serde_json::from_str::<Connection>(r#"{"CreatedDate":5}"#).is_err());
        // Owned input (a `Value`) decodes too: text is then owned.
        let v = serde_json::json!({"BrokeringDate": "2024-07-31T11:22:37Z", "LogOnEndDate": null,
            "ClientName": "PC 1"});
        let c = Connection::deserialize(&v).unwrap();
        assert!(c.brokering_date.is_some() && c.log_on_end_date.is_none());
        assert_eq!(c.client_name.as_deref(), Some("PC 1"));
    }

    #[test]
    fn text_borrows_unless_escaped() {
        let body = r#"{"ClientName":"PC 1","Protocol":null,
            "Session":{"User":{"UserName":"DOM\\o'brien"},"Machine":{"Name":"vda\u00e9"}}}"#;
        let c: Connection = serde_json::from_str(body).unwrap();
        assert!(matches!(c.client_name, Some(Cow::Borrowed("PC 1"))));
        assert!(c.protocol.is_none() && c.client_address.is_none());
        let s = c.session.unwrap();
        let user = s.user.unwrap().user_name.unwrap();
        assert!(matches!(user, Cow::Owned(_)) && user == "DOM\\o'brien");
        assert_eq!(s.machine.unwrap().name.as_deref(), Some("vda\u{e9}"));
        assert!(serde_json::from_str::<Connection>(r#"{"ClientName":5}"#).is_err());
    }

    #[test]
    fn decodes_real_shapes_with_nulls_and_variable_fractions() {
        let body = r#"{"@odata.context":"https://api.cloud.com/monitorodata/$metadata#Connections",
          "@odata.count": 2,
          "value":[{"Id":128230,"ClientName":"PC 1","Protocol":"HDX","IsReconnect":false,
             "LogOnStartDate":"2024-08-05T10:01:50.4Z","LogOnEndDate":"2024-07-31T11:22:37.4730000Z",
             "VMStartStartDate":null,"BrokeringDuration":250,"ModifiedDate":"2024-07-30T01:02:49Z",
             "Unknown":"ignored",
             "Session":{"SessionKey":"6b07220e-0000-4000-8000-000000000001","LogOnDuration":null,
               "User":{"UserName":"o'brien"},"Machine":{"Name":"DOM\\vda 1","DesktopGroup":{"Name":"Sales, EU"}}}}],
          "@odata.nextLink":"https://api.cloud.com/monitorodata/Connections?$skip=100"}"#;
        let page: Page<Connection> = serde_json::from_str(body).unwrap();
        assert_eq!(page.count, Some(2));
        assert!(page.next_link.unwrap().ends_with("$skip=100"));
        let c = &page.value[0];
        assert_eq!(c.id, Some(128230));
        assert_eq!(c.log_on_start_date.unwrap().timestamp_subsec_millis(), 400);
        assert_eq!(c.log_on_end_date.unwrap().timestamp_subsec_millis(), 473);
        assert!(c.vm_start_start_date.is_none());
        let s = c.session.as_ref().unwrap();
        assert_eq!(
            s.machine
                .as_ref()
                .unwrap()
                .desktop_group
                .as_ref()
                .unwrap()
                .name
                .as_deref(),
            Some("Sales, EU")
        );
    }
}
