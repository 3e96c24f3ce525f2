//! `citrix-harvester check`: proves in one command that a configuration will work, before the
//! daemon runs with it. It validates the file, reads every tenant's secret, gets a token for
//! every tenant (saying which token endpoint answered), makes one tiny Monitor request per
//! tenant through the same client as the harvest (so Citrix's one-request-per-tenant rule and
//! retries apply, with a short budget), and probes the sink without writing a point. The
//! result is a table, one row per check, with a hint naming the setting to fix for each
//! failure. It never prints a secret and never changes state (no watermark, spool or point).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::citrix::auth::{AuthError, Endpoint};
use crate::citrix::client::{Limits, MonitorClient, MonitorErrorKind, http_client, monitor_pool};
use crate::citrix::odata::Query;
use crate::citrix::pool::Pool;
use crate::citrix::site::SiteError;
use crate::config::{Checked, CitrixConfig, TenantConfig, TenantOrigin};
use crate::shard::Shard;
use crate::sink::{Probe, Sink};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Fail,
    /// Not tried because a check it depends on failed.
    Skip,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Ok => "OK",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        })
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// `config`, `secret`, `token`, `odata` or `sink`.
    pub check: &'static str,
    /// The tenant's name, the config file or the sink's target.
    pub subject: String,
    pub status: Status,
    pub detail: String,
    /// For a failure: what to change, naming the setting (`tenant[1].client_secret_env`).
    pub hint: Option<String>,
}

impl Row {
    fn ok(check: &'static str, subject: &str, detail: impl Into<String>) -> Row {
        Row {
            check,
            subject: subject.to_string(),
            status: Status::Ok,
            detail: detail.into(),
            hint: None,
        }
    }

    fn fail(
        check: &'static str,
        subject: &str,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Row {
        Row {
            check,
            subject: subject.to_string(),
            status: Status::Fail,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }

    fn skip(check: &'static str, subject: &str, detail: impl Into<String>) -> Row {
        Row {
            check,
            subject: subject.to_string(),
            status: Status::Skip,
            detail: detail.into(),
            hint: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    /// No check failed.
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.status != Status::Fail)
    }

    /// The table: aligned columns, a `hint:` line under each failure.
    pub fn render(&self) -> String {
        let w_check = self
            .rows
            .iter()
            .map(|r| r.check.len())
            .max()
            .unwrap_or(0)
            .max(5);
        let w_subject = self
            .rows
            .iter()
            .map(|r| r.subject.chars().count())
            .max()
            .unwrap_or(0)
            .clamp(7, 48);
        let mut s = format!(
            "{:<w_check$}  {:<w_subject$}  {:<6}  DETAIL\n",
            "CHECK", "SUBJECT", "STATUS"
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{:<w_check$}  {:<w_subject$}  {:<6}  {}",
                r.check,
                r.subject,
                r.status.to_string(),
                one_line(&r.detail)
            );
            if let Some(h) = &r.hint {
                let _ = writeln!(s, "{:<w_check$}  hint: {}", "", one_line(h));
            }
        }
        let failed = self
            .rows
            .iter()
            .filter(|r| r.status == Status::Fail)
            .count();
        if failed == 0 {
            s.push_str("All checks passed.\n");
        } else {
            let _ = writeln!(s, "{failed} check(s) failed.");
        }
        s
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The row for a configuration that does not load (exit code 2).
pub fn config_failure(path: &str, error: &crate::config::ConfigError) -> Report {
    let hint = match error {
        crate::config::ConfigError::Invalid { key, .. } => format!("fix `{key}` in {path}"),
        crate::config::ConfigError::Load { path: file, .. } => {
            format!("{file} must be valid TOML with known keys only")
        }
        crate::config::ConfigError::Read { path: file, .. } => {
            format!("{file} must exist and be readable by this user")
        }
    };
    Report {
        rows: vec![Row::fail("config", path, error.to_string(), hint)],
    }
}

/// Retries that keep `check` short: a throttled or failing gateway is reported, not waited out.
fn short_budget(c: &CitrixConfig) -> CitrixConfig {
    CitrixConfig {
        max_retries: c.max_retries.min(2),
        max_retry_delay: c.max_retry_delay.min(Duration::from_secs(2)),
        request_timeout: c.request_timeout.min(Duration::from_secs(30)),
        ..c.clone()
    }
}

/// Runs every check of a loaded configuration; `cli_shard` (`--shard`) wins over
/// `harvester.shard`, and only this shard's tenants are checked.
pub async fn run(checked: Checked, config_path: &str, cli_shard: Option<Shard>) -> Report {
    let Checked {
        config: cfg,
        origins,
        output_secret_error,
    } = checked;
    let mut report = Report::default();
    let shard = cli_shard.or(cfg.harvester.shard).unwrap_or(Shard::ALL);
    let configured = cfg.tenants.len();
    let tenants: Vec<(TenantConfig, TenantOrigin)> = cfg
        .tenants
        .iter()
        .cloned()
        .zip(origins)
        .filter(|(t, _)| shard.owns(&t.customer_id))
        .collect();
    let mut detail = format!("{configured} enabled tenant(s)");
    if shard != Shard::ALL {
        let _ = write!(detail, "; shard {shard} takes {}", tenants.len());
    }
    let citrix = short_budget(&cfg.citrix);
    let http = http_client(
        citrix.request_timeout,
        citrix.ca_file.as_deref(),
        citrix.proxy.as_deref(),
    )
    .and_then(|h| {
        let pool = monitor_pool(citrix.ca_file.as_deref(), citrix.proxy.as_deref())?;
        Ok((h, pool))
    });
    match &http {
        Ok(_) => report.rows.push(Row::ok("config", config_path, detail)),
        Err(e) => report.rows.push(Row::fail(
            "config",
            config_path,
            format!("cannot build the Citrix HTTP client: {e}"),
            "fix `citrix.ca_file` or `citrix.proxy`",
        )),
    }

    let limits = Limits::new(
        cfg.harvester.max_requests_in_flight,
        cfg.harvester.body_budget,
    );
    // Token requests are bounded like Monitor requests: thousands of tenants, a few at a time.
    let turns = Arc::new(Semaphore::new(cfg.harvester.max_requests_in_flight));
    let mut set = tokio::task::JoinSet::new();
    for (i, (tenant, origin)) in tenants.into_iter().enumerate() {
        let http = http.clone().ok();
        let citrix = citrix.clone();
        let limits = limits.clone();
        let turns = turns.clone();
        set.spawn(async move {
            let _turn = turns.acquire_owned().await;
            (
                i,
                check_tenant(&tenant, &origin, http, &citrix, limits).await,
            )
        });
    }
    let mut per_tenant = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(x) => per_tenant.push(x),
            Err(e) => report.rows.push(Row::fail(
                "tenant",
                "?",
                format!("the check task failed: {e}"),
                "a bug: please report it",
            )),
        }
    }
    per_tenant.sort_by_key(|(i, _)| *i);
    report
        .rows
        .extend(per_tenant.into_iter().flat_map(|(_, rows)| rows));
    report
        .rows
        .push(check_sink(&cfg.output, output_secret_error).await);
    report
}

async fn check_tenant(
    t: &TenantConfig,
    origin: &TenantOrigin,
    http: Option<(reqwest::Client, Arc<Pool>)>,
    citrix: &CitrixConfig,
    limits: Limits,
) -> Vec<Row> {
    let name = t.name.as_str();
    let key = |k: &str| origin.key(k);
    let mut rows = Vec::new();
    if let Some(why) = &origin.secret_error {
        rows.push(Row::fail(
            "secret",
            name,
            why.clone(),
            format!("fix `{}`", origin.secret_key),
        ));
        rows.push(Row::skip("token", name, "no secret"));
        rows.push(Row::skip("odata", name, "no secret"));
        return rows;
    }
    rows.push(Row::ok(
        "secret",
        name,
        format!("read from {}", origin.secret_key),
    ));
    let Some((http, pool)) = http else {
        rows.push(Row::skip("token", name, "no HTTP client"));
        rows.push(Row::skip("odata", name, "no HTTP client"));
        return rows;
    };
    let client = match MonitorClient::new(http, pool, t, citrix, limits, Duration::from_secs(60)) {
        Ok(c) => c,
        Err(e) => {
            rows.push(Row::fail(
                "site",
                name,
                e,
                format!("fix `{}` or `{}`", key("ca_file"), key("proxy")),
            ));
            return rows;
        }
    };
    let Some(tokens) = client.auth.tokens() else {
        rows.extend(check_site(t, origin, &client).await);
        return rows;
    };
    let (regional, fallback) = tokens.urls();
    match tokens.token_and_endpoint().await {
        Ok((_, Endpoint::Regional)) => rows.push(Row::ok(
            "token",
            name,
            format!("regional endpoint answered: {regional}"),
        )),
        Ok((_, Endpoint::Fallback)) => rows.push(Row::ok(
            "token",
            name,
            format!(
                "fallback endpoint answered: {} (the regional {regional} did not)",
                fallback.unwrap_or("?")
            ),
        )),
        Err(e) => {
            let hint = match &e {
                AuthError::Rejected { .. } => format!(
                    "the token endpoint rejected the credentials: fix `{}` or `{}` (the API \
                     client's secret and id for customer {})",
                    origin.secret_key,
                    key("client_id"),
                    t.customer_id
                ),
                AuthError::Unavailable { .. } => format!(
                    "no token endpoint answered: check `{}` (or `{}`/`{}`), and `citrix.proxy` / \
                     `citrix.ca_file` if the network needs them",
                    key("region"),
                    key("token_url"),
                    key("fallback_token_url")
                ),
            };
            rows.push(Row::fail("token", name, e.to_string(), hint));
            rows.push(Row::skip("odata", name, "no token"));
            return rows;
        }
    }
    let mut q = Query::new("Machines");
    q.select = vec!["Id"];
    q.top = Some(1);
    let url = q.url(client.base_url());
    let started = tokio::time::Instant::now();
    let answer = client.get("check", &url).await;
    let ms = started.elapsed().as_millis();
    match answer {
        Ok(body) => match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) if v.get("value").is_some_and(|x| x.is_array()) => {
                let n = v["value"].as_array().map_or(0, Vec::len);
                rows.push(Row::ok(
                    "odata",
                    name,
                    format!("Machines?$top=1 answered in {ms} ms ({n} row)"),
                ));
            }
            _ => rows.push(Row::fail(
                "odata",
                name,
                format!(
                    "tenant {name}, entity Machines, URL {url}: the answer is not an OData \
                     collection: {}",
                    crate::citrix::client::snippet(&body)
                ),
                format!(
                    "`{}` must be the Monitor API base (…/monitorodata)",
                    key("monitor_url")
                ),
            )),
        },
        Err(e) => {
            let hint = match &e.kind {
                MonitorErrorKind::Auth(_) => format!(
                    "the token stopped working: fix `{}` or `{}`",
                    origin.secret_key,
                    key("client_id")
                ),
                MonitorErrorKind::Unauthorized | MonitorErrorKind::Http { status: 403, .. } => {
                    format!(
                        "the API client of `{}` lacks Monitor (Director) read access for customer \
                         {}, or `citrix.auth_scheme` is wrong",
                        key("client_id"),
                        t.customer_id
                    )
                }
                MonitorErrorKind::Http { status: 429, .. } => {
                    "Citrix throttled the request (429): another harvester may be polling this \
                     tenant right now; try again"
                        .to_string()
                }
                MonitorErrorKind::Http { status: 404, .. } | MonitorErrorKind::Decode(_) => {
                    format!(
                        "`{}` (or `{}`) must point at the Monitor API (…/monitorodata)",
                        key("monitor_url"),
                        key("region")
                    )
                }
                _ => format!(
                    "check `{}` (or `{}`), and `citrix.proxy` / `citrix.ca_file` if the network \
                     needs them",
                    key("monitor_url"),
                    key("region")
                ),
            };
            rows.push(Row::fail("odata", name, e.to_string(), hint));
        }
    }
    rows
}

/// An on-premises site: one `Machines?$top=1` through the controllers in order, with which
/// controller answered and which Windows authentication package signed the request.
async fn check_site(t: &TenantConfig, origin: &TenantOrigin, client: &MonitorClient) -> Vec<Row> {
    let name = t.name.as_str();
    let key = |k: &str| origin.key(k);
    let Some(site) = client.auth.site() else {
        return Vec::new();
    };
    let mut q = Query::new("Machines");
    q.select = vec!["Id"];
    q.top = Some(1);
    let url = q.url(client.base_url());
    let started = tokio::time::Instant::now();
    let answer = client.get("check", &url).await;
    let ms = started.elapsed().as_millis();
    let scheme = site.last_scheme().map_or("?", |s| s.label());
    match answer {
        Ok(body) => {
            let n = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("value").and_then(|x| x.as_array()).map(Vec::len));
            let mut rows = vec![Row::ok(
                "winauth",
                name,
                format!(
                    "controller {} answered; {scheme} authenticated {}",
                    site.base_url(),
                    site.config().user_key
                ),
            )];
            rows.push(match n {
                Some(n) => Row::ok(
                    "odata",
                    name,
                    format!("Machines?$top=1 answered in {ms} ms ({n} row)"),
                ),
                None => Row::fail(
                    "odata",
                    name,
                    format!(
                        "site {name}, entity Machines, URL {url}: the answer is not an OData \
                         collection: {}",
                        crate::citrix::client::snippet(&body)
                    ),
                    format!(
                        "`{}` must be Delivery Controllers (…/Citrix/Monitor/OData/v4/Data)",
                        key("controllers")
                    ),
                ),
            });
            rows
        }
        Err(e) => {
            let hint = match &e.kind {
                MonitorErrorKind::Site(SiteError::Rejected { .. }) => format!(
                    "fix `{}` (DOMAIN\\user of a CVAD administrator; read-only is enough) or `{}`",
                    key("user"),
                    origin.secret_key
                ),
                MonitorErrorKind::Site(SiteError::Unavailable { .. })
                | MonitorErrorKind::Transport(_) => format!(
                    "check `{}`, and `{}` / `{}` if the network needs them",
                    key("controllers"),
                    key("proxy"),
                    key("ca_file")
                ),
                MonitorErrorKind::Site(SiteError::Handshake {
                    error: crate::citrix::winauth::WinAuthError::Setting(_),
                    ..
                }) => format!(
                    "fix `{}` (the CA that issued the controllers' certificates) or `{}` / the \
                     proxy environment, as the error says",
                    key("ca_file"),
                    key("proxy")
                ),
                MonitorErrorKind::Site(SiteError::Handshake { .. }) => format!(
                    "check `{}` and `{}` (auth = \"ntlm\" works with every controller; Kerberos \
                     needs the controller's SPN, `{}` for a load-balancer alias)",
                    key("auth"),
                    key("kdc"),
                    key("spn")
                ),
                _ => format!(
                    "`{}` must be Delivery Controllers serving the Monitor service \
                     (…/Citrix/Monitor/OData/v4/Data)",
                    key("controllers")
                ),
            };
            vec![
                Row::fail("winauth", name, e.to_string(), hint),
                Row::skip("odata", name, "not authenticated"),
            ]
        }
    }
}

async fn check_sink(
    output: &crate::sink::SinkConfig,
    secret_error: Option<crate::config::ConfigError>,
) -> Row {
    // No state dir: `check` must not create or replay a spool or write dead letters.
    let cfg = crate::sink::SinkConfig {
        state_dir: None,
        ..output.clone()
    };
    let sink = match Sink::new(cfg) {
        Ok(s) => s,
        Err(e) => {
            return Row::fail(
                "sink",
                "output",
                e.to_string(),
                "fix the `output.*` setting named above",
            );
        }
    };
    let subject = sink.describe();
    if let Some(e) = secret_error {
        let hint = match &e {
            crate::config::ConfigError::Invalid { key, .. } => format!("fix `{key}`"),
            _ => "fix the output's token or password setting".into(),
        };
        return Row::fail("sink", &subject, e.to_string(), hint);
    }
    match sink.probe().await {
        Probe::Ok(detail) => Row::ok("sink", &subject, detail),
        Probe::Fail { hint, reason } => Row::fail("sink", &subject, reason, hint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_hint_under_each_failure_and_says_whether_all_passed() {
        let mut r = Report {
            rows: vec![
                Row::ok("config", "h.toml", "2 enabled tenant(s)"),
                Row::fail(
                    "token",
                    "Bad",
                    "rejected\n(401)",
                    "fix `tenant[1].client_id`",
                ),
                Row::skip("odata", "Bad", "no token"),
            ],
        };
        assert!(!r.passed());
        let text = r.render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("CHECK"), "{text}");
        assert!(
            lines[2].contains("FAIL") && lines[2].contains("rejected (401)"),
            "{text}"
        );
        assert!(
            lines[3]
                .trim_start()
                .starts_with("hint: fix `tenant[1].client_id`"),
            "{text}"
        );
        assert!(lines[4].contains("SKIP"), "{text}");
        assert_eq!(lines.last(), Some(&"1 check(s) failed."));
        r.rows.remove(1);
        assert!(r.passed());
        assert!(r.render().ends_with("All checks passed.\n"));
    }
}
