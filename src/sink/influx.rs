//! HTTP writer for the InfluxDB v2 write API (`/api/v2/write`, also VictoriaMetrics and
//! InfluxDB 2.x/3.x) and the v1 API (`/write`). It owns request building (URL, auth header,
//! gzip), retrying one batch with backoff, and splitting/bisecting a batch the server refuses.
//! It must not encode points (that is `lineproto`) or decide what a status means (that is
//! `classify`) or decide what happens to a batch it gave up on (the caller spools it or
//! returns the error); secrets go into headers only, never into a URL or a log line.

use std::io::Write as _;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use rand::{Rng, SeedableRng};
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Client, StatusCode};
use tokio::time::Instant;
use url::Url;

use super::Origin;
use super::concurrency::{Limiter, Outcome};

use super::classify::{Disposition, Misconfig, TransportKind, classify, parse_retry_after};
use super::deadletter::{DeadLetter, DeadLetters};
use super::{SinkError, WriteReport};
use crate::secret::Secret;

/// Longest part of an error body kept for logs and errors.
const MAX_REASON: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    V1,
    V2,
}

pub(crate) enum Auth {
    None,
    Token(Secret),
    Basic(String, Option<Secret>),
}

pub(crate) struct HttpWriter {
    pub(crate) client: Client,
    pub(crate) api: Api,
    /// Full write URL including the query (db/org/bucket/precision, never credentials).
    pub(crate) write_url: Url,
    /// `write_url` without any user info, for logs and errors.
    pub(crate) shown_url: String,
    pub(crate) auth: Auth,
    pub(crate) gzip: bool,
    pub(crate) retry_max_elapsed: Duration,
    /// Where lines refused for good go.
    pub(crate) dead_letters: Arc<DeadLetters>,
    /// Told the outcome and round-trip time of every write attempt.
    pub(crate) limiter: Arc<Limiter>,
}

/// A batch the writer gave up on: why, and the lines (index ranges into `ends`, ascending)
/// that were neither delivered nor refused for good. Lines outside them are counted in the
/// report already.
#[derive(Debug)]
pub(crate) struct Undelivered {
    pub(crate) error: SinkError,
    pub(crate) remaining: Vec<Range<usize>>,
}

/// The write that lines of a request belong to: the lines before `end` (and after the previous
/// owner's), and whose they are for the log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner<'a> {
    pub(crate) end: usize,
    pub(crate) origin: Option<Origin<'a>>,
}

/// Adds `f(report, lines)` to every owner of lines in `r`, with its share of them.
fn credit(
    owners: &[Owner<'_>],
    reports: &mut [WriteReport],
    r: Range<usize>,
    f: impl Fn(&mut WriteReport, usize),
) {
    let mut i = owners.partition_point(|o| o.end <= r.start);
    let mut at = r.start;
    while at < r.end {
        let end = owners[i].end.min(r.end);
        f(&mut reports[i], end - at);
        at = end;
        i += 1;
    }
}

/// The owners' reports together (for an error's "so far").
fn total(reports: &[WriteReport]) -> WriteReport {
    reports.iter().fold(WriteReport::default(), |mut t, r| {
        t.written += r.written;
        t.rejected += r.rejected;
        t.dropped += r.dropped;
        t.spooled += r.spooled;
        t
    })
}

/// Result of one failed attempt: what to do next plus what to tell the operator.
#[derive(Debug)]
struct Failure {
    disposition: Disposition,
    status: Option<StatusCode>,
    reason: String,
    /// No answer within `output.timeout`.
    timed_out: bool,
}

/// Removes user info from a URL so it can be shown.
pub(crate) fn shown(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

impl HttpWriter {
    fn setting_hint(&self, m: Misconfig) -> &'static str {
        match (self.api, m) {
            (Api::V2, Misconfig::Auth) => "check the sink's `token` setting",
            (Api::V1, Misconfig::Auth) => "check the sink's `username` and `password` settings",
            (Api::V2, Misconfig::NotFound) => "check the sink's `org`, `bucket` and `url` settings",
            (Api::V1, Misconfig::NotFound) => "check the sink's `database` and `url` settings",
        }
    }

    /// Delivers the lines of `buf` (line i ends at `ends[i]`), splitting and bisecting as the
    /// server demands. The lines belong to `owners` in order (owner k holds the lines before
    /// `owners[k].end` not held by an earlier one); each line's fate is counted in its owner's
    /// report, so coalesced writes are answered exactly. When the server is away or refuses
    /// us, says which lines are left.
    pub(crate) async fn deliver(
        &self,
        buf: &[u8],
        ends: &[usize],
        owners: &[Owner<'_>],
        reports: &mut [WriteReport],
    ) -> Result<(), Undelivered> {
        debug_assert_eq!(owners.len(), reports.len());
        debug_assert_eq!(
            owners.last().map(|o| o.end),
            Some(ends.len()).filter(|&n| n > 0)
        );
        // Line i spans start(i)..ends[i]. A work stack of line-index ranges replaces recursion;
        // the first half is pushed last so lines go out in order.
        let start = |i: usize| if i == 0 { 0 } else { ends[i - 1] };
        let owner = |line: usize| owners.partition_point(|o| o.end <= line);
        let mut stack: Vec<Range<usize>> = Vec::with_capacity(16);
        stack.push(0..ends.len());
        while let Some(r) = stack.pop() {
            let n = r.len();
            if n == 0 {
                continue;
            }
            let (first, last) = (owner(r.start), owner(r.end - 1));
            let origin = owners[first].origin;
            let bytes = &buf[start(r.start)..ends[r.end - 1]];
            let halves = |stack: &mut Vec<Range<usize>>| {
                let mid = r.start + n / 2;
                stack.push(mid..r.end);
                stack.push(r.start..mid);
            };
            match self.send_with_retry(bytes, origin).await {
                Ok(()) => credit(owners, reports, r.clone(), |rep, k| rep.written += k),
                Err(f) => match f.disposition {
                    Disposition::Split | Disposition::Reject if n > 1 => {
                        tracing::debug!(tenant = origin.map(|o| o.tenant), entity = origin.map(|o| o.entity),
                            url = %self.shown_url, lines = n, status = ?f.status, "bisecting batch");
                        halves(&mut stack);
                    }
                    Disposition::Split | Disposition::Reject => {
                        reports[first].rejected += 1;
                        self.dead_letters
                            .record(vec![DeadLetter {
                                line: bytes.to_vec(),
                                reason: f.reason,
                            }])
                            .await;
                    }
                    // The server said how many lines it dropped, not which: when the lines
                    // belong to several writes, split at a write's boundary and send the parts
                    // again (the server overwrites the points it stored), until each part
                    // belongs to one write and the count is that write's.
                    Disposition::AcceptPartial { dropped: Some(_) } if first != last => {
                        let mid = r.start + n / 2;
                        let at = owners[first..last]
                            .iter()
                            .map(|o| o.end)
                            .min_by_key(|&e| e.abs_diff(mid))
                            .expect("two owners have a boundary between them");
                        stack.push(at..r.end);
                        stack.push(r.start..at);
                    }
                    Disposition::AcceptPartial { dropped: Some(d) } => {
                        let d = d.min(n);
                        reports[first].written += n - d;
                        reports[first].dropped += d;
                        tracing::error!(tenant = origin.map(|o| o.tenant), entity = origin.map(|o| o.entity),
                            url = %self.shown_url, lines = n, dropped = d, reason = %f.reason, "server dropped lines of a batch");
                    }
                    Disposition::AcceptPartial { dropped: None } if n > 1 => halves(&mut stack),
                    Disposition::AcceptPartial { dropped: None } => {
                        reports[first].dropped += 1;
                        self.dead_letters
                            .record(vec![DeadLetter {
                                line: bytes.to_vec(),
                                reason: format!("server dropped the line: {}", f.reason),
                            }])
                            .await;
                    }
                    Disposition::Misconfigured(m) => {
                        let hint = self.setting_hint(m);
                        tracing::error!(tenant = origin.map(|o| o.tenant), entity = origin.map(|o| o.entity),
                            url = %self.shown_url, status = ?f.status, hint, "giving up on a batch: the server refuses us");
                        let error = SinkError::GaveUp {
                            url: self.shown_url.clone(),
                            reason: format!("{}; {hint}", f.reason),
                            elapsed: self.retry_max_elapsed,
                            report: total(reports),
                        };
                        return Err(undelivered(error, r, stack));
                    }
                    Disposition::Retry { .. } => {
                        let error = SinkError::GaveUp {
                            url: self.shown_url.clone(),
                            reason: f.reason,
                            elapsed: self.retry_max_elapsed,
                            report: total(reports),
                        };
                        return Err(undelivered(error, r, stack));
                    }
                    Disposition::Fail | Disposition::Delivered => {
                        let error = SinkError::Refused {
                            url: self.shown_url.clone(),
                            status: f.status.map(|s| s.as_u16()).unwrap_or(0),
                            reason: f.reason,
                            report: total(reports),
                        };
                        return Err(undelivered(error, r, stack));
                    }
                },
            }
        }
        Ok(())
    }

    /// Sends one body, retrying transient failures with exponential backoff and full jitter
    /// (or the server's Retry-After) until `retry_max_elapsed` is used up.
    async fn send_with_retry(
        &self,
        lines: &[u8],
        origin: Option<Origin<'_>>,
    ) -> Result<(), Failure> {
        let body = if self.gzip {
            // Level 1: line protocol still shrinks ~10x and the CPU stays free for encoding.
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(lines.len() / 8),
                flate2::Compression::fast(),
            );
            enc.write_all(lines).expect("writing to a Vec cannot fail");
            enc.finish().expect("writing to a Vec cannot fail")
        } else {
            lines.to_vec()
        };
        let started = Instant::now();
        let budget = self.retry_max_elapsed;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(30))
            .with_factor(2.0)
            .without_max_times();
        (|| self.send_once(&body))
            .retry(backoff)
            .when(|f: &Failure| f.disposition.is_retryable() && started.elapsed() < budget)
            .adjust(|f: &Failure, d: Option<Duration>| {
                let remaining = budget.saturating_sub(started.elapsed());
                if remaining.is_zero() {
                    return None;
                }
                let wait = match f.disposition {
                    Disposition::Retry { after: Some(after) } => after,
                    // Full jitter: anywhere between zero and the exponential delay.
                    _ => {
                        let d = d?;
                        d.mul_f64(jitter_fraction())
                    }
                };
                Some(wait.min(remaining))
            })
            .notify(|f: &Failure, wait: Duration| match f.disposition {
                Disposition::Misconfigured(m) => tracing::warn!(
                    tenant = origin.map(|o| o.tenant), entity = origin.map(|o| o.entity),
                    url = %self.shown_url, status = ?f.status, hint = self.setting_hint(m),
                    retry_in = ?wait, "server refuses the write"
                ),
                _ => tracing::warn!(
                    tenant = origin.map(|o| o.tenant), entity = origin.map(|o| o.entity),
                    url = %self.shown_url, status = ?f.status, reason = %f.reason,
                    retry_in = ?wait, "write failed; retrying"
                ),
            })
            .await
    }

    /// Adds the credentials (headers only, marked sensitive).
    fn authorize(&self, req: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, Failure> {
        Ok(match &self.auth {
            Auth::None => req,
            Auth::Token(t) => {
                let mut v =
                    HeaderValue::from_str(&format!("Token {}", t.expose())).map_err(|_| {
                        Failure {
                            disposition: Disposition::Misconfigured(Misconfig::Auth),
                            status: None,
                            reason: "token contains characters not allowed in a header".into(),
                            timed_out: false,
                        }
                    })?;
                v.set_sensitive(true);
                req.header(AUTHORIZATION, v)
            }
            Auth::Basic(u, p) => req.basic_auth(u, p.as_ref().map(|p| p.expose())),
        })
    }

    /// Posts an empty body to the write URL, once, without retries: InfluxDB 1.x checks the
    /// credentials, the database and the write permission before it looks at the body (then
    /// answers 204), InfluxDB 2.x the token, org, bucket and permission (then 400 "writing
    /// requires points"), VictoriaMetrics answers 204. Nothing is written either way.
    pub(crate) async fn probe(&self) -> super::Probe {
        use super::Probe;
        let (auth_setting, missing_setting) = match self.api {
            Api::V2 => (
                "check the token: `output.token_env` (or `output.token_file`)",
                "check `output.org` and `output.bucket` (they must exist)",
            ),
            Api::V1 => (
                "check `output.username` and `output.password_env` (or `output.password_file`)",
                "check `output.database` (it must exist: CREATE DATABASE)",
            ),
        };
        let req = self
            .client
            .post(self.write_url.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )
            .body(Vec::new());
        let req = match self.authorize(req) {
            Ok(r) => r,
            Err(f) => {
                return Probe::Fail {
                    hint: auth_setting.into(),
                    reason: f.reason,
                };
            }
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Probe::Fail {
                    hint: "check `output.url`".into(),
                    reason: format!(
                        "{} unreachable: {}",
                        self.shown_url,
                        crate::body::error_chain(&e.without_url())
                    ),
                };
            }
        };
        let status = resp.status();
        let location = redirect_target(&resp);
        let b = crate::body::read_prefix(resp, 300).await;
        let text = String::from_utf8_lossy(&b).trim().to_string() + &location;
        let said = if text.is_empty() {
            format!("HTTP {}", status.as_u16())
        } else {
            format!("HTTP {}: {text}", status.as_u16())
        };
        match status.as_u16() {
            200..=299 => Probe::Ok(format!("an empty write was accepted ({said})")),
            // Authentication and authorisation come before the body in InfluxDB and
            // VictoriaMetrics, so a complaint about the empty body means we got past them.
            400 if text.contains("writing requires points") || text.contains("no data") => {
                Probe::Ok(format!(
                    "authorised; the empty write was refused as empty ({said})"
                ))
            }
            401 => Probe::Fail {
                hint: auth_setting.into(),
                reason: format!("{} refused the credentials: {said}", self.shown_url),
            },
            // Authenticated, but not allowed to write there (InfluxDB 1.x: a user without
            // WRITE on the database; 2.x: a token without write permission on the bucket).
            403 => Probe::Fail {
                hint: match self.api {
                    Api::V2 => {
                        "give the token write permission on `output.bucket`, or use \
                                another in `output.token_env` (or `output.token_file`)"
                    }
                    Api::V1 => {
                        "GRANT WRITE ON the `output.database` TO `output.username`, or \
                                use another user"
                    }
                }
                .into(),
                reason: format!("{} does not let us write: {said}", self.shown_url),
            },
            404 => Probe::Fail {
                hint: if text.contains("page not found") || text.is_empty() {
                    match self.api {
                        Api::V2 => {
                            "check `output.url`, and `output.kind`: InfluxDB 1.x has no \
                             /api/v2/write (use influxdb_v1)"
                        }
                        Api::V1 => "check `output.url`",
                    }
                } else {
                    missing_setting
                }
                .into(),
                reason: format!("{}: {said}", self.shown_url),
            },
            _ => Probe::Fail {
                hint: "check `output.url`".into(),
                reason: format!("{}: {said}", self.shown_url),
            },
        }
    }

    /// One attempt, its outcome told to the concurrency limiter.
    async fn send_once(&self, body: &[u8]) -> Result<(), Failure> {
        let sent = Instant::now();
        let r = self.attempt(body).await;
        self.limiter.record(match &r {
            Ok(()) => Outcome::Success(sent.elapsed()),
            Err(f) if f.timed_out => Outcome::Timeout,
            Err(f) if matches!(f.disposition, Disposition::Retry { .. }) => Outcome::BackPressure,
            Err(_) => Outcome::Neutral,
        });
        r
    }

    async fn attempt(&self, body: &[u8]) -> Result<(), Failure> {
        let mut req = self
            .client
            .post(self.write_url.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )
            .body(body.to_vec());
        if self.gzip {
            req = req.header(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let resp = match self.authorize(req)?.send().await {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_connect() {
                    TransportKind::Connect
                } else if e.is_timeout() {
                    TransportKind::Timeout
                } else {
                    TransportKind::Other
                };
                return Err(Failure {
                    disposition: classify(None, "", None, Some(kind)),
                    status: None,
                    reason: format!("{kind:?}: {}", crate::body::error_chain(&e.without_url())),
                    timed_out: kind == TransportKind::Timeout,
                });
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let location = redirect_target(&resp);
        let b = crate::body::read_prefix(resp, MAX_REASON).await;
        let text = String::from_utf8_lossy(&b).into_owned() + &location;
        let disposition = classify(Some(status), &text, retry_after, None);
        Err(Failure {
            disposition,
            status: Some(status),
            reason: format!("HTTP {status}: {}", text.trim()),
            timed_out: false,
        })
    }
}

/// For a 3xx: what it pointed at, to append to the reason (redirects are never followed).
fn redirect_target(resp: &reqwest::Response) -> String {
    if !resp.status().is_redirection() {
        return String::new();
    }
    let to = crate::body::location(resp);
    format!(" (redirect to `{to}` refused: check output.url)")
}

/// The range being sent plus everything still on the work stack, in line order (the stack's
/// top is the next range in order).
fn undelivered(error: SinkError, current: Range<usize>, stack: Vec<Range<usize>>) -> Undelivered {
    let mut remaining = Vec::with_capacity(stack.len() + 1);
    remaining.push(current);
    remaining.extend(stack.into_iter().rev().filter(|r| !r.is_empty()));
    Undelivered { error, remaining }
}

/// A uniform number in [0, 1] for full jitter. The crate builds rand without OS entropy, so
/// seed from std's per-process random hash keys: plenty for spreading retries apart.
fn jitter_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    rand::rngs::SmallRng::seed_from_u64(seed).random_range(0.0..=1.0)
}
