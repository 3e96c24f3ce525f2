//! The Monitor API client of one tenant. It guarantees Citrix's rule that a tenant never has two
//! requests in flight (a per-tenant lock; parallel calls get 429), bounds total concurrency with
//! a semaphore shared by all tenants, retries 429/5xx/transport errors with jittered exponential
//! backoff that honours Retry-After, and refreshes the token once on 401. An on-premises site
//! has no token: each request is Windows-authenticated by its [`Site`] (controller fallback,
//! lockout guard) and goes through the same limits, retries, bounds and redaction. It returns
//! raw page bytes: decoding and mapping are the collectors' job.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use crate::citrix::auth::{AuthError, TokenSource, error_chain};
use crate::citrix::site::{Site, SiteError};
use crate::config::{AuthScheme, CitrixConfig, TenantConfig};

/// Retry-After is honoured up to this much; a larger value is treated as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Which kind of failure, for counters and for deciding whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum MonitorErrorKind {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Site(#[from] SiteError),
    #[error("HTTP {status}: {body}")]
    Http {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("request failed: {0}")]
    Transport(String),
    #[error(
        "HTTP {status} redirect to `{location}` refused: Monitor requests carry credentials and are never redirected (check monitor_url and any proxy in between)"
    )]
    Redirect { status: u16, location: String },
    #[error("{0}")]
    TooLarge(String),
    #[error("the Monitor API rejected the token twice (401) — check the API client's permissions")]
    Unauthorized,
    #[error("cannot decode the page: {0}")]
    Decode(String),
    #[error(transparent)]
    Paging(#[from] crate::citrix::odata::PagingError),
}

impl MonitorErrorKind {
    fn retryable(&self) -> bool {
        match self {
            MonitorErrorKind::Http { status, .. } => *status == 429 || *status >= 500,
            MonitorErrorKind::Transport(_) => true,
            MonitorErrorKind::Site(e) => e.retryable(),
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            MonitorErrorKind::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short label for counters and summaries.
    pub fn label(&self) -> &'static str {
        match self {
            MonitorErrorKind::Auth(_) => "auth",
            MonitorErrorKind::Site(SiteError::Rejected { .. } | SiteError::LockedOut { .. }) => {
                "credentials"
            }
            MonitorErrorKind::Site(_) => "site",
            MonitorErrorKind::Http { status: 429, .. } => "throttled",
            MonitorErrorKind::Http { .. } => "http",
            MonitorErrorKind::Transport(_) => "transport",
            MonitorErrorKind::Redirect { .. } => "redirect",
            MonitorErrorKind::TooLarge(_) => "too_large",
            MonitorErrorKind::Unauthorized => "unauthorized",
            MonitorErrorKind::Decode(_) => "decode",
            MonitorErrorKind::Paging(_) => "paging",
        }
    }
}

/// An error with the context an operator needs: tenant, entity and URL.
#[derive(Debug, thiserror::Error)]
#[error("tenant {tenant}, entity {entity}, URL {url}: {kind}")]
pub struct MonitorError {
    pub tenant: String,
    pub entity: String,
    pub url: String,
    #[source]
    pub kind: MonitorErrorKind,
}

#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub throttled: AtomicU64,
    pub retries: AtomicU64,
    pub token_refreshes_on_401: AtomicU64,
}

pub struct MonitorClient {
    http: reqwest::Client,
    tenant: String,
    customer_id: String,
    base: String,
    scheme: AuthScheme,
    pub auth: AuthSource,
    /// Citrix allows one request per tenant at a time.
    one_at_a_time: Mutex<()>,
    global: Arc<Semaphore>,
    max_retries: usize,
    max_retry_delay: Duration,
    pub max_pages: usize,
    /// The largest page accepted (decoded bytes) and the bound of one whole request.
    max_page_bytes: usize,
    request_timeout: Duration,
    pub stats: ClientStats,
}

/// How a tenant's requests are authorised: a Citrix Cloud bearer token, or Windows
/// authentication per request to an on-premises site's controllers.
pub enum AuthSource {
    Cloud(TokenSource),
    Site(Site),
}

impl AuthSource {
    pub fn tokens(&self) -> Option<&TokenSource> {
        match self {
            AuthSource::Cloud(t) => Some(t),
            AuthSource::Site(_) => None,
        }
    }

    pub fn site(&self) -> Option<&Site> {
        match self {
            AuthSource::Cloud(_) => None,
            AuthSource::Site(s) => Some(s),
        }
    }

    /// The step before a cycle: a valid token for the cloud; for a site, that no credential
    /// rejection silences it (sites authenticate per request).
    pub async fn ready(&self) -> Result<(), MonitorErrorKind> {
        match self {
            AuthSource::Cloud(t) => t.token().await.map(|_| ()).map_err(Into::into),
            AuthSource::Site(s) => s.ready().map_err(Into::into),
        }
    }
}

/// Error bodies are read up to this much (only a snippet of them is ever shown).
const MAX_ERROR_BODY: usize = 64 << 10;

/// Builds the HTTP client shared by token and Monitor requests: TLS verification always on,
/// an optional private CA and proxy (HTTPS_PROXY/NO_PROXY are honoured by default), and no
/// redirects: a 3xx would carry the client secret or the token to wherever `Location` points.
pub fn http_client(
    timeout: Duration,
    ca_file: Option<&Path>,
    proxy: Option<&str>,
) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("citrix-harvester/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        b = b.tls_certs_merge(certs);
    }
    if let Some(p) = proxy {
        b = b.proxy(reqwest::Proxy::all(p).map_err(|e| format!("proxy `{p}`: {e}"))?);
    }
    b.build().map_err(|e| error_chain(&e))
}

impl MonitorClient {
    /// `interval`: how long a site whose credentials were rejected stays silent.
    pub fn new(
        http: reqwest::Client,
        tenant: &TenantConfig,
        citrix: &CitrixConfig,
        global: Arc<Semaphore>,
        interval: Duration,
    ) -> Result<Self, String> {
        let auth = match &tenant.site {
            None => AuthSource::Cloud(TokenSource::new(
                http.clone(),
                &tenant.name,
                &tenant.client_id,
                tenant.client_secret.clone(),
                &tenant.token_url,
                tenant.fallback_token_url.as_deref(),
                citrix.token_timeout,
            )),
            Some(site) => {
                let connector = crate::citrix::conn::Connector::new(site)
                    .map_err(|e| format!("site {}: {e}", tenant.name))?;
                AuthSource::Site(Site::new(&tenant.name, site.clone(), connector, interval))
            }
        };
        Ok(MonitorClient {
            http,
            tenant: tenant.name.clone(),
            customer_id: tenant.customer_id.clone(),
            base: tenant.monitor_url.clone(),
            scheme: citrix.auth_scheme,
            auth,
            one_at_a_time: Mutex::new(()),
            global,
            max_retries: citrix.max_retries,
            max_retry_delay: citrix.max_retry_delay,
            max_pages: citrix.max_pages,
            max_page_bytes: citrix.max_page_bytes,
            request_timeout: citrix.request_timeout,
            stats: ClientStats::default(),
        })
    }

    /// Where a walk starts: the Monitor base, or a site's healthy controller.
    pub fn base_url(&self) -> &str {
        match &self.auth {
            AuthSource::Cloud(_) => &self.base,
            AuthSource::Site(s) => s.base_url(),
        }
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn error(
        &self,
        entity: &str,
        url: &str,
        kind: impl Into<MonitorErrorKind>,
    ) -> MonitorError {
        MonitorError {
            tenant: self.tenant.clone(),
            entity: entity.to_string(),
            url: url.to_string(),
            kind: kind.into(),
        }
    }

    /// GETs one page, with retries; the body bytes of a 2xx answer.
    pub async fn get(&self, entity: &str, url: &str) -> Result<Vec<u8>, MonitorError> {
        self.get_page(entity, url).await.map(|(body, _slot)| body)
    }

    /// Like [`MonitorClient::get`], and also hands over the global request slot the answer
    /// came in on: the harvest walk keeps it until the page's points are acknowledged, so the
    /// pages held in memory (fetched, decoded, mapped, being written) are bounded by
    /// `max_concurrent_requests` however many tenants there are and however slow the sink.
    /// Backoff between attempts still holds no slot (DESIGN.md rule 4).
    pub async fn get_page(
        &self,
        entity: &str,
        url: &str,
    ) -> Result<(Vec<u8>, OwnedSemaphorePermit), MonitorError> {
        self.get_page_holding(entity, url, None).await
    }

    /// Like [`MonitorClient::get_page`], on a request slot the caller already holds (the slot
    /// of the walk's previous page), so a walk in progress goes on without queueing behind
    /// tenants that have not started: the number of walks open at once (each remembers the
    /// keys it has read) stays at about `max_concurrent_requests` instead of every tenant.
    /// The held slot is released as soon as an attempt fails, before any backoff (rule 4).
    pub async fn get_page_holding(
        &self,
        entity: &str,
        url: &str,
        held: Option<OwnedSemaphorePermit>,
    ) -> Result<(Vec<u8>, OwnedSemaphorePermit), MonitorError> {
        let held = std::sync::Mutex::new(held);
        let _tenant_turn = self.one_at_a_time.lock().await;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(self.max_retry_delay)
            .with_max_times(self.max_retries)
            .with_jitter();
        let tenant = self.tenant.as_str();
        (|| {
            // Taken out at each attempt, so a failed attempt drops it before backing off.
            let slot = held.lock().unwrap_or_else(|e| e.into_inner()).take();
            self.get_refreshing_token(url, slot)
        })
        .retry(backoff)
        .when(MonitorErrorKind::retryable)
        .adjust(|e, planned| {
            planned.map(|d| match e.retry_after() {
                Some(ra) => ra.min(MAX_RETRY_AFTER),
                None => d,
            })
        })
        .notify(|e, wait| {
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(tenant, entity, url, error = %e, wait_ms = wait.as_millis() as u64,
                    "Monitor request failed; retrying.");
        })
        .await
        .map_err(|kind| self.error(entity, url, kind))
    }

    /// One attempt, plus one immediate retry with a fresh token when the first answer is 401.
    async fn get_refreshing_token(
        &self,
        url: &str,
        held: Option<OwnedSemaphorePermit>,
    ) -> Result<(Vec<u8>, OwnedSemaphorePermit), MonitorErrorKind> {
        let tokens = match &self.auth {
            AuthSource::Cloud(t) => t,
            AuthSource::Site(_) => return self.send(url, None, held).await,
        };
        let token = tokens.token().await?;
        match self.send(url, Some(&token), held).await {
            Err(MonitorErrorKind::Http { status: 401, .. }) => {
                self.stats
                    .token_refreshes_on_401
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(tenant = %self.tenant, "Monitor API answered 401; fetching a new token.");
                let token = tokens.refresh().await?;
                match self.send(url, Some(&token), None).await {
                    Err(MonitorErrorKind::Http { status: 401, .. }) => {
                        Err(MonitorErrorKind::Unauthorized)
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    async fn send(
        &self,
        url: &str,
        token: Option<&crate::secret::Secret>,
        held: Option<OwnedSemaphorePermit>,
    ) -> Result<(Vec<u8>, OwnedSemaphorePermit), MonitorErrorKind> {
        // Hold a global slot only while the request is on the wire (and its page is being
        // processed), not while backing off: a failed attempt returns without it.
        let slot = match held {
            Some(slot) => slot,
            None => self
                .global
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| MonitorErrorKind::Transport("shutting down".into()))?,
        };
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        // The whole request, decompression included, within request_timeout.
        let attempt = self.exchange(url, token);
        match tokio::time::timeout(self.request_timeout, attempt).await {
            Ok(Ok(body)) => Ok((body, slot)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(MonitorErrorKind::Transport(format!(
                "no complete answer within citrix.request_timeout ({:?})",
                self.request_timeout
            ))),
        }
    }

    /// One request and its body, bounded in size; error texts redacted.
    async fn exchange(
        &self,
        url: &str,
        token: Option<&crate::secret::Secret>,
    ) -> Result<Vec<u8>, MonitorErrorKind> {
        let resp = match (&self.auth, token) {
            (AuthSource::Cloud(_), Some(token)) => {
                let auth = match self.scheme {
                    AuthScheme::CwsAuth => format!("CWSAuth bearer={}", token.expose()),
                    AuthScheme::Bearer => format!("Bearer {}", token.expose()),
                };
                self.http
                    .get(url)
                    .header(reqwest::header::AUTHORIZATION, auth)
                    .header("Citrix-CustomerId", &self.customer_id)
                    .header(reqwest::header::ACCEPT, "application/json")
                    .send()
                    .await
                    .map_err(|e| MonitorErrorKind::Transport(error_chain(&e)))?
            }
            (AuthSource::Site(site), _) => site.get(url).await?,
            (AuthSource::Cloud(_), None) => {
                return Err(MonitorErrorKind::Transport("no token".into()));
            }
        };
        let token = token
            .cloned()
            .unwrap_or_else(|| crate::secret::Secret::new(""));
        let token = &token;
        let status = resp.status();
        if status.is_success() {
            let is_json = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|ct| ct.contains("json"));
            let body = crate::body::read_limited(resp, self.max_page_bytes)
                .await
                .map_err(|e| match e {
                    crate::body::BodyError::TooLarge { .. } => {
                        MonitorErrorKind::TooLarge(format!("{e} (citrix.max_page_bytes)"))
                    }
                    crate::body::BodyError::Read(why) => MonitorErrorKind::Transport(why),
                })?;
            if !is_json {
                return Err(MonitorErrorKind::Decode(format!(
                    "status {status} but not JSON: {}",
                    self.redacted_snippet(&body, token)
                )));
            }
            return Ok(body);
        }
        if status.is_redirection() {
            let location = crate::body::location(&resp);
            return Err(MonitorErrorKind::Redirect {
                status: status.as_u16(),
                location: self.redact(&location, token),
            });
        }
        if status.as_u16() == 429 {
            self.stats.throttled.fetch_add(1, Ordering::Relaxed);
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = crate::body::read_prefix(resp, MAX_ERROR_BODY).await;
        Err(MonitorErrorKind::Http {
            status: status.as_u16(),
            body: self.redacted_snippet(&body, token),
            retry_after,
        })
    }

    /// A snippet of a server's text with this tenant's secret and `token` removed (an error
    /// page that echoes the request must not put them into a log line).
    fn redacted_snippet(&self, body: &[u8], token: &crate::secret::Secret) -> String {
        let text = String::from_utf8_lossy(body);
        snippet(self.redact(&text, token).as_bytes())
    }

    /// `text` without this tenant's client secret or password, nor `token`.
    fn redact(&self, text: &str, token: &crate::secret::Secret) -> String {
        match &self.auth {
            AuthSource::Cloud(t) => t.redact(text, token),
            AuthSource::Site(s) => crate::secret::redact_all(text, &[&s.config().password, token]),
        }
    }
}

/// Retry-After as delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

pub use crate::body::snippet;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let future = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let d = parse_retry_after(&future).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn classification() {
        let http = |status| MonitorErrorKind::Http {
            status,
            body: String::new(),
            retry_after: None,
        };
        assert!(http(429).retryable());
        assert!(http(500).retryable());
        assert!(http(504).retryable());
        assert!(!http(400).retryable());
        assert!(!http(404).retryable());
        assert!(MonitorErrorKind::Transport("reset".into()).retryable());
        assert!(!MonitorErrorKind::Unauthorized.retryable());
        assert!(!MonitorErrorKind::Decode("x".into()).retryable());
    }

    #[test]
    fn snippet_is_short_and_single_line() {
        let html = format!("<html>\n<body>{}</body></html>", "x".repeat(1000));
        let s = snippet(html.as_bytes());
        assert!(s.chars().count() <= 301);
        assert!(!s.contains('\n'));
    }
}
