//! The Monitor API client of one tenant. It guarantees Citrix's rule that a tenant never has two
//! requests in flight (a per-tenant lock; parallel calls get 429), and the two process-wide
//! [`Limits`] shared by all tenants: requests waiting on Citrix (`max_requests_in_flight`, to
//! protect sockets and file descriptors) and the byte budget of page bodies
//! (`body_budget`, the memory). It retries 429/5xx/transport errors with jittered exponential
//! backoff that honours Retry-After, and refreshes the token once on 401. An on-premises site
//! has no token: each request is Windows-authenticated by its [`Site`] (controller fallback,
//! lockout guard) and goes through the same limits, retries, bounds and redaction. It returns
//! raw page bytes: decoding and mapping are the collectors' job.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::{Mutex, Semaphore};

use crate::budget::{Budget, Reservation};

use crate::citrix::auth::{AuthError, TokenSource, error_chain};
use crate::citrix::conn::ConnError;
use crate::citrix::pool::{Get, Pool};
use crate::citrix::site::{Site, SiteError};
use crate::config::{AuthScheme, CitrixConfig, TenantConfig};

/// The header naming the customer of a Monitor request.
static CUSTOMER_ID: http::HeaderName = http::HeaderName::from_static("citrix-customerid");

/// Retry-After is honoured up to this much; a larger value is treated as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// What a page of an entity is assumed to need of the byte budget before its first page was
/// read (afterwards: the size of its last page). Only a first guess: a larger body grows its
/// reservation while it streams in.
pub const FIRST_PAGE_ESTIMATE: usize = 256 << 10;

/// How long a first page of an entity whose size nobody knows yet waits for the one such page
/// in flight (the pilot, see [`Limits::pilot`]) before it goes out on [`FIRST_PAGE_ESTIMATE`]
/// anyway: a pilot stuck on a tenant whose Citrix hangs must not hold the others back.
const PILOT_WAIT: Duration = Duration::from_secs(10);

/// How often one request may be sent again because its body outgrew what could be reserved
/// (each time the reservation at least doubles, so a few suffice up to `max_page_bytes`).
const MAX_REFETCHES: u32 = 8;

/// The turn of an entity's pilot page (see [`Limits::pilot`]).
type Gate = Arc<tokio::sync::Mutex<()>>;

/// The limits every tenant of a process shares.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Monitor requests on the wire (sent, answer not read completely yet).
    pub requests: Arc<Semaphore>,
    pub max_requests: usize,
    /// The most requests ever on the wire at once.
    pub peak_requests: Arc<AtomicU64>,
    /// Bytes of page bodies read, decoded, mapped, encoded and waiting for the output.
    pub budget: Arc<Budget>,
    /// A recent large page size of each entity over all tenants (the largest, decaying by an
    /// eighth with each page): the first guess for a tenant that has not read that entity yet
    /// (tenants of one provider are alike), so that a start with a thousand tenants does not
    /// reserve a too-small share for each and read pages twice.
    pub typical_sizes: Arc<std::sync::Mutex<Vec<(u64, u32)>>>,
    /// One gate per entity whose page size nobody knows yet: its holder's page is the pilot.
    pilots: Arc<std::sync::Mutex<Vec<(u64, Gate)>>>,
}

impl Limits {
    pub fn new(max_requests: usize, body_budget: usize) -> Limits {
        let max_requests = max_requests.max(1);
        Limits {
            requests: Arc::new(Semaphore::new(max_requests)),
            max_requests,
            peak_requests: Arc::new(AtomicU64::new(0)),
            budget: Budget::new(body_budget),
            typical_sizes: Arc::default(),
            pilots: Arc::default(),
        }
    }

    /// The gate of an entity's first page while no tenant knows its size. At a start with a
    /// thousand tenants, a thousand first pages would otherwise come back at once, each
    /// reserving a guess; those that outgrow it while the budget is full are read twice.
    /// With the gate, one page goes first, and the others reserve what it measured.
    fn pilot(&self, key: u64) -> Gate {
        let mut pilots = self.pilots.lock().unwrap_or_else(|e| e.into_inner());
        match pilots.iter().find(|(k, _)| *k == key) {
            Some((_, gate)) => gate.clone(),
            None => {
                let gate = Arc::new(tokio::sync::Mutex::new(()));
                pilots.push((key, gate.clone()));
                gate
            }
        }
    }

    /// A request slot (a token or Monitor request on the wire), noting the peak.
    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, MonitorErrorKind> {
        let slot = self
            .requests
            .acquire()
            .await
            .map_err(|_| MonitorErrorKind::Transport("shutting down".into()))?;
        self.peak_requests
            .fetch_max(self.requests_in_flight() as u64, Ordering::Relaxed);
        Ok(slot)
    }

    /// Requests on the wire now.
    pub fn requests_in_flight(&self) -> usize {
        self.max_requests
            .saturating_sub(self.requests.available_permits())
    }
}

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
    /// A setting keeps every request from Citrix (its CA, its proxy): trying again cannot help.
    #[error("{0}")]
    Setting(String),
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
            MonitorErrorKind::Setting(_) => "setting",
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
    /// The connections every cloud tenant shares (an on-premises site has its own).
    pool: Arc<Pool>,
    tenant: String,
    customer_id: String,
    base: String,
    scheme: AuthScheme,
    pub auth: AuthSource,
    /// Citrix allows one request per tenant at a time.
    one_at_a_time: Mutex<()>,
    limits: Limits,
    /// The size of the last page of each entity (hash of its name → bytes): what its next page
    /// reserves of the body budget before its size is known.
    last_sizes: std::sync::Mutex<Vec<(u64, u32)>>,
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
// The token source stays inline: cloud tenants are the many, and boxing it would add an
// allocation to each of them to save a little room in the few sites.
#[allow(clippy::large_enum_variant)]
pub enum AuthSource {
    Cloud(TokenSource),
    /// Boxed: a site's state is several times a token source's, and cloud tenants are many.
    Site(Box<Site>),
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

/// Idle connections of the token client kept per host (token requests are one per tenant
/// and token lifetime; Monitor requests go through [`Pool`]).
const IDLE_TOKEN_CONNECTIONS: usize = 4;

/// How long an idle token connection is kept.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Error bodies are read up to this much (only a snippet of them is ever shown).
const MAX_ERROR_BODY: usize = 64 << 10;

/// Builds the HTTP client shared by token requests: TLS verification always on, an optional
/// private CA and proxy (HTTPS_PROXY/NO_PROXY are honoured by default), and no redirects: a
/// 3xx would carry the client secret to wherever `Location` points.
pub fn http_client(
    timeout: Duration,
    ca_file: Option<&Path>,
    proxy: Option<&str>,
) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("citrix-harvester/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        // Token connections are shared by every tenant; only a few stay open between cycles.
        .pool_max_idle_per_host(IDLE_TOKEN_CONNECTIONS)
        .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT);
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

/// The connections Monitor requests of every cloud tenant share, with the same CA and proxy
/// settings as [`http_client`].
pub fn monitor_pool(ca_file: Option<&Path>, proxy: Option<&str>) -> Result<Arc<Pool>, String> {
    let connector = crate::citrix::conn::Connector::cloud(ca_file, proxy)?;
    Ok(Arc::new(Pool::new(connector)))
}

impl MonitorClient {
    /// `interval`: how long a site whose credentials were rejected stays silent.
    pub fn new(
        http: reqwest::Client,
        pool: Arc<Pool>,
        tenant: &TenantConfig,
        citrix: &CitrixConfig,
        limits: Limits,
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
                AuthSource::Site(Box::new(Site::new(
                    &tenant.name,
                    (**site).clone(),
                    connector,
                    interval,
                )))
            }
        };
        Ok(MonitorClient {
            pool,
            tenant: tenant.name.clone(),
            customer_id: tenant.customer_id.clone(),
            base: tenant.monitor_url.clone(),
            scheme: citrix.auth_scheme,
            auth,
            one_at_a_time: Mutex::new(()),
            limits,
            // Sized now: grown during the first cycles, it would sit among their pages.
            last_sizes: std::sync::Mutex::new(Vec::with_capacity(tenant.entities.len())),
            max_retries: citrix.max_retries,
            max_retry_delay: citrix.max_retry_delay,
            max_pages: citrix.max_pages,
            max_page_bytes: citrix.max_page_bytes,
            request_timeout: citrix.request_timeout,
            stats: ClientStats::default(),
        })
    }

    /// The step before a cycle ([`AuthSource::ready`]) on a request slot: a token request
    /// waits on Citrix like a Monitor request, and ten thousand tenants starting at once must
    /// not open ten thousand sockets.
    pub async fn ready(&self) -> Result<(), MonitorErrorKind> {
        let _slot = self.limits.slot().await?;
        self.auth.ready().await
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
        self.get_page(entity, url).await.map(|(body, _bytes)| body)
    }

    /// Like [`MonitorClient::get`], and also hands over the body's reservation of the byte
    /// budget: the harvest walk keeps it until the page's points are acknowledged, so the
    /// pages in memory (fetched, decoded, mapped, being written) are bounded by
    /// `harvester.body_budget` however many tenants there are, however many requests wait on
    /// Citrix and however slow the output. Backoff between attempts holds neither a request
    /// slot nor budget (DESIGN.md rule 4); waiting for budget holds no request slot.
    pub async fn get_page(
        &self,
        entity: &str,
        url: &str,
    ) -> Result<(Vec<u8>, Reservation), MonitorError> {
        let _tenant_turn = self.one_at_a_time.lock().await;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(self.max_retry_delay)
            .with_max_times(self.max_retries)
            .with_jitter();
        let tenant = self.tenant.as_str();
        (|| self.get_refreshing_token(entity, url))
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
        entity: &str,
        url: &str,
    ) -> Result<(Vec<u8>, Reservation), MonitorErrorKind> {
        let tokens = match &self.auth {
            AuthSource::Cloud(t) => t,
            AuthSource::Site(_) => return self.send(entity, url, None).await,
        };
        let token = tokens.token().await?;
        match self.send(entity, url, Some(&token)).await {
            Err(MonitorErrorKind::Http { status: 401, .. }) => {
                self.stats
                    .token_refreshes_on_401
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(tenant = %self.tenant, "Monitor API answered 401; fetching a new token.");
                let token = tokens.refresh().await?;
                match self.send(entity, url, Some(&token)).await {
                    Err(MonitorErrorKind::Http { status: 401, .. }) => {
                        Err(MonitorErrorKind::Unauthorized)
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    /// One request (sent again when its body outgrew what the budget could give at the time),
    /// its body covered by a reservation of the byte budget.
    async fn send(
        &self,
        entity: &str,
        url: &str,
        token: Option<&crate::secret::Secret>,
    ) -> Result<(Vec<u8>, Reservation), MonitorErrorKind> {
        let budget = &self.limits.budget;
        // No tenant has read this entity yet: wait for the one page that measures it.
        let _pilot = match self.known_estimate(entity) {
            Some(_) => None,
            None => {
                let gate = self.limits.pilot(entity_key(entity));
                match tokio::time::timeout(PILOT_WAIT, gate.lock_owned()).await {
                    Ok(turn) if self.known_estimate(entity).is_none() => Some(turn),
                    _ => None,
                }
            }
        };
        let estimate = self.estimate(entity);
        // When the budget is short already, wait until this page's share is free before
        // sending, in line with the others; but give it back at once: held while Citrix takes
        // its second or five, it would be memory nobody uses, and a thousand tenants waiting
        // on Citrix would keep the budget full of nothing. The answer reserves what it needs.
        budget.wait_for_room(estimate).await;
        // And not while the pages already on order are at their bound: their answers would wait
        // for the budget holding connections and buffers it does not count.
        let mut order = Some(budget.order(estimate).await);
        let mut reserved: Option<Reservation> = None;
        let mut refetches = 0;
        loop {
            // A request slot only while the request is on the wire: never while waiting for
            // budget, never while backing off (a failed attempt returns without it).
            let slot = self.limits.slot().await?;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            // The whole request, decompression included, within request_timeout.
            let ordered_in = order.as_ref().map(crate::budget::Order::epoch);
            let attempt = self.exchange(url, token, &mut reserved, estimate, ordered_in);
            let outcome = match tokio::time::timeout(self.request_timeout, attempt).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(MonitorErrorKind::Transport(format!(
                        "no complete answer within citrix.request_timeout ({:?})",
                        self.request_timeout
                    )));
                }
            };
            drop(slot);
            // The answer holds its reservation now, or gave up: no longer on order.
            drop(order.take());
            match outcome {
                Fetched::Body(body) => {
                    let mut bytes = reserved
                        .take()
                        .expect("a body is only read into a reservation");
                    bytes.shrink_to(body.len());
                    self.remember(entity, body.len());
                    return Ok((body, bytes));
                }
                Fetched::NeedBudget(needed) => {
                    // Everything back before waiting for more: nobody waits holding budget.
                    drop(reserved.take());
                    refetches += 1;
                    if refetches > MAX_REFETCHES {
                        return Err(MonitorErrorKind::TooLarge(format!(
                            "the page kept outgrowing its share of harvester.body_budget \
                             ({refetches} reads); last needed {needed} bytes"
                        )));
                    }
                    budget.stats.refetches.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(tenant = %self.tenant, entity, url, needed,
                        "Page body did not fit the free body budget; waiting for it, then reading the page again.");
                    reserved = Some(budget.reserve(needed).await);
                }
            }
        }
    }

    /// What the next page of `entity` is expected to need of the budget: this tenant's last
    /// page of it, else any tenant's, else [`FIRST_PAGE_ESTIMATE`]; plus a quarter, since
    /// pages of one entity differ a little (the reservation shrinks to the body once read).
    fn estimate(&self, entity: &str) -> usize {
        let last = self.known_estimate(entity).unwrap_or(FIRST_PAGE_ESTIMATE);
        last.saturating_add(last / 4).clamp(1, self.max_page_bytes)
    }

    /// This tenant's last page of `entity`, else the typical one of all tenants.
    fn known_estimate(&self, entity: &str) -> Option<usize> {
        let key = entity_key(entity);
        size_of(&self.last_sizes, key).or_else(|| size_of(&self.limits.typical_sizes, key))
    }

    fn remember(&self, entity: &str, bytes: usize) {
        let key = entity_key(entity);
        let bytes = bytes.min(u32::MAX as usize) as u32;
        set_size(&self.last_sizes, key, bytes);
        // The typical size follows large pages at once and small ones slowly: a tenant's
        // short last page must not make the next tenant's full first page a refetch.
        update_size(&self.limits.typical_sizes, key, |old| {
            old.map_or(bytes, |old| bytes.max(old - old / 8))
        });
    }

    /// One request and its body, bounded in size; error texts redacted.
    async fn exchange(
        &self,
        url: &str,
        token: Option<&crate::secret::Secret>,
        reserved: &mut Option<Reservation>,
        estimate: usize,
        ordered_in: Option<u64>,
    ) -> Result<Fetched, MonitorErrorKind> {
        let resp = match (&self.auth, token) {
            (AuthSource::Cloud(_), Some(token)) => {
                let auth = match self.scheme {
                    AuthScheme::CwsAuth => format!("CWSAuth bearer={}", token.expose()),
                    AuthScheme::Bearer => format!("Bearer {}", token.expose()),
                };
                let u = url::Url::parse(url)
                    .map_err(|e| MonitorErrorKind::Setting(format!("`{url}`: {e}")))?;
                let headers = [
                    (http::header::AUTHORIZATION, auth.as_str()),
                    (CUSTOMER_ID.clone(), self.customer_id.as_str()),
                    (http::header::ACCEPT, "application/json"),
                ];
                let get = Get {
                    url: &u,
                    headers: &headers,
                };
                self.pool.get(&get).await.map_err(|e| match e {
                    ConnError::Transport(why) => MonitorErrorKind::Transport(why),
                    ConnError::Setting(why) => MonitorErrorKind::Setting(why),
                })?
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
            // Content-Length, when the body is not compressed, is the decoded size.
            let need = resp
                .content_length()
                .map_or(estimate, |n| n.min(usize::MAX as u64) as usize)
                .clamp(1, self.max_page_bytes);
            if reserved.as_mut().is_some_and(|r| !r.try_grow(need)) {
                // A share taken before sending is too small and cannot grow: give it back
                // first, so that the wait below holds nothing of the budget.
                *reserved = None;
            }
            let bytes = match reserved {
                Some(r) => r,
                None => match self.limits.budget.try_reserve(need) {
                    Some(r) => reserved.insert(r),
                    // The answer is here and this request holds nothing of the budget: it
                    // waits for its share with the body unread (TCP holds it back) rather
                    // than ask Citrix again; holding no budget, it cannot deadlock. Half of
                    // citrix.request_timeout at most, so that the other half reads the body;
                    // after that the page is abandoned and asked for again once its share is
                    // free. (When the output is the bottleneck, a thousand answers arriving
                    // at once wait here for tens of seconds.)
                    None => match self
                        .limits
                        .budget
                        .reserve_answer(need, self.request_timeout / 2, ordered_in)
                        .await
                    {
                        Some(r) => reserved.insert(r),
                        None => return Ok(Fetched::NeedBudget(need)),
                    },
                },
            };
            let read = crate::body::read_reserved(resp, self.max_page_bytes, bytes).await;
            let body = match read {
                Ok(body) => body,
                Err(crate::body::BodyError::OverBudget { needed }) => {
                    return Ok(Fetched::NeedBudget(needed));
                }
                Err(e @ crate::body::BodyError::TooLarge { .. }) => {
                    return Err(MonitorErrorKind::TooLarge(format!(
                        "{e} (citrix.max_page_bytes)"
                    )));
                }
                Err(crate::body::BodyError::Read(why)) => {
                    return Err(MonitorErrorKind::Transport(why));
                }
            };
            if !is_json {
                return Err(MonitorErrorKind::Decode(format!(
                    "status {status} but not JSON: {}",
                    self.redacted_snippet(&body, token)
                )));
            }
            return Ok(Fetched::Body(body));
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

/// A stable hash of an entity's name, the key of its last page size.
fn size_of(sizes: &std::sync::Mutex<Vec<(u64, u32)>>, key: u64) -> Option<usize> {
    let sizes = sizes.lock().unwrap_or_else(|e| e.into_inner());
    sizes
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, n)| *n as usize)
}

fn set_size(sizes: &std::sync::Mutex<Vec<(u64, u32)>>, key: u64, bytes: u32) {
    update_size(sizes, key, |_| bytes);
}

fn update_size(
    sizes: &std::sync::Mutex<Vec<(u64, u32)>>,
    key: u64,
    f: impl FnOnce(Option<u32>) -> u32,
) {
    let mut sizes = sizes.lock().unwrap_or_else(|e| e.into_inner());
    match sizes.iter_mut().find(|(k, _)| *k == key) {
        Some(e) => e.1 = f(Some(e.1)),
        None => sizes.push((key, f(None))),
    }
}

fn entity_key(entity: &str) -> u64 {
    use std::hash::BuildHasher;
    std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
        .hash_one(entity)
}

/// What one exchange brought: the body, or the news that it needs more of the byte budget
/// than was free (the request is abandoned and sent again once that much is reserved).
enum Fetched {
    Body(Vec<u8>),
    NeedBudget(usize),
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
