//! Retry classification for HTTP writes: one pure function from (status, body, Retry-After,
//! transport error) to what the writer does next. It owns the decision table only; it must not
//! send requests, sleep, log or know about batches, so that a table test can pin it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;

/// Longest wait a server may ask for with Retry-After; the retry budget caps it further.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// What went wrong below HTTP, reduced to what matters for the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Connect,
    Timeout,
    /// Reading or sending the body, or anything else on the wire.
    Other,
}

/// A setting the operator must fix; the writer names it for the API in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misconfig {
    /// 401/403: token (v2) or username/password (v1).
    Auth,
    /// 404: org/bucket (v2) or database (v1), or a wrong URL path.
    NotFound,
}

/// What to do with a batch after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// 2xx: delivered.
    Delivered,
    /// Transient: try the same batch again, after `after` when the server said so.
    Retry { after: Option<Duration> },
    /// The server refuses us as configured: retried within the budget (someone may fix the
    /// token or create the bucket meanwhile), logged naming the setting.
    Misconfigured(Misconfig),
    /// 413: halve the batch and send the halves.
    Split,
    /// 400: some line is bad and the server refused the whole batch: bisect to isolate it.
    Reject,
    /// The server stored the batch but dropped some lines (dropped count when it said how many).
    AcceptPartial { dropped: Option<usize> },
    /// Any other status: not retried, the write fails.
    Fail,
}

impl Disposition {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Disposition::Retry { .. } | Disposition::Misconfigured(_)
        )
    }
}

/// The decision table. `status` is `None` when no response arrived (then `transport` says why).
pub fn classify(
    status: Option<StatusCode>,
    body: &str,
    retry_after: Option<Duration>,
    transport: Option<TransportKind>,
) -> Disposition {
    let Some(status) = status else {
        // Connection refused, reset, timed out: the server is away or overloaded.
        let _ = transport;
        return Disposition::Retry { after: None };
    };
    if status.is_success() {
        return Disposition::Delivered;
    }
    let partial = body.contains("partial write");
    // InfluxDB 1.x answers a malformed line with 400 "partial write: unable to parse ...
    // dropped=0": the other lines were stored, but the count is wrong, so bisect (re-sending
    // stored lines is harmless: a point overwrites itself).
    let parse_error = body.contains("unable to parse");
    match status.as_u16() {
        400 if partial && !parse_error => Disposition::AcceptPartial {
            dropped: dropped_count(body).filter(|&n| n > 0),
        },
        400 => Disposition::Reject,
        401 | 403 => Disposition::Misconfigured(Misconfig::Auth),
        404 => Disposition::Misconfigured(Misconfig::NotFound),
        413 => Disposition::Split,
        422 => Disposition::AcceptPartial {
            dropped: dropped_count(body).filter(|&n| n > 0),
        },
        429 | 408 => Disposition::Retry {
            after: retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
        },
        500 if partial => Disposition::AcceptPartial {
            dropped: dropped_count(body).filter(|&n| n > 0),
        },
        500..=599 => Disposition::Retry {
            after: retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
        },
        _ => Disposition::Fail,
    }
}

/// Parses `dropped=N` from an InfluxDB partial-write message.
pub fn dropped_count(body: &str) -> Option<usize> {
    let at = body.find("dropped=")? + "dropped=".len();
    let digits: String = body[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Parses a Retry-After header: delay-seconds or an HTTP-date (relative to `now`). A date in
/// the past means "now"; anything unparsable is ignored (the backoff applies).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    let d = (at - now).to_std().unwrap_or(Duration::ZERO);
    Some(d.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    type Case = (
        Option<StatusCode>,
        &'static str,
        Option<Duration>,
        Option<TransportKind>,
        Disposition,
    );

    #[test]
    fn decision_table() {
        let s = |c: u16| Some(StatusCode::from_u16(c).unwrap());
        let ra = Some(Duration::from_secs(7));
        let long = Some(Duration::from_secs(100_000));
        use Disposition::*;
        let cases: Vec<Case> = vec![
            (s(200), "", None, None, Delivered),
            (s(204), "", None, None, Delivered),
            (
                None,
                "",
                None,
                Some(TransportKind::Connect),
                Retry { after: None },
            ),
            (
                None,
                "",
                None,
                Some(TransportKind::Timeout),
                Retry { after: None },
            ),
            (
                None,
                "",
                None,
                Some(TransportKind::Other),
                Retry { after: None },
            ),
            (s(429), "", ra, None, Retry { after: ra }),
            (
                s(429),
                "",
                long,
                None,
                Retry {
                    after: Some(MAX_RETRY_AFTER),
                },
            ),
            (s(503), "", ra, None, Retry { after: ra }),
            (s(502), "", None, None, Retry { after: None }),
            (s(500), "internal error", None, None, Retry { after: None }),
            (
                s(500),
                "partial write: points beyond retention policy dropped=3",
                None,
                None,
                AcceptPartial { dropped: Some(3) },
            ),
            (
                s(422),
                "partial write: dropped=2",
                None,
                None,
                AcceptPartial { dropped: Some(2) },
            ),
            (
                s(422),
                "points beyond retention",
                None,
                None,
                AcceptPartial { dropped: None },
            ),
            (
                s(400),
                "partial write: field type conflict: input field \"x\" ... dropped=1",
                None,
                None,
                AcceptPartial { dropped: Some(1) },
            ),
            (
                s(400),
                "partial write: unable to parse 'm bad 2': invalid field format dropped=0",
                None,
                None,
                Reject,
            ),
            (
                s(400),
                "unable to parse 'm,k= x=1i 7': missing tag value",
                None,
                None,
                Reject,
            ),
            (s(400), "", None, None, Reject),
            (s(413), "", None, None, Split),
            (s(401), "", None, None, Misconfigured(Misconfig::Auth)),
            (s(403), "", None, None, Misconfigured(Misconfig::Auth)),
            (
                s(404),
                "database not found: \"x\"",
                None,
                None,
                Misconfigured(Misconfig::NotFound),
            ),
            (s(405), "", None, None, Fail),
            (s(301), "", None, None, Fail),
        ];
        for (i, (status, body, after, transport, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                classify(status, body, after, transport),
                want,
                "case {i}: {status:?} {body:?}"
            );
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 28, 0).unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn dropped_counts() {
        assert_eq!(dropped_count("partial write: x dropped=12"), Some(12));
        assert_eq!(dropped_count("partial write: x"), None);
    }
}
