//! HTTP surface of the simulator (axum): the Citrix Cloud token endpoint on both listeners, the
//! `/monitorodata` OData service on the regional listener, and the `/_sim/*` admin routes. It
//! owns the per-tenant runtime state (faults, statistics, the one-request-at-a-time rule) and
//! applies faults; it must not parse OData itself (odata.rs, query.rs) or generate data.
//!
//! Behaviour worth knowing (see citrix-monitor-api.md):
//! - Monitor requests need `Authorization: CWSAuth bearer=<token>` (auth.rs) and a
//!   `Citrix-CustomerId` header naming the token's tenant: otherwise 401 (missing/unknown/expired
//!   token or missing header) or 403 (another tenant's token), with the Citrix Cloud error shape.
//! - A Monitor request arriving while another of the same tenant is in flight gets 429
//!   `{"statusCode":429,"message":…}` without `Retry-After` (its presence on the real service is
//!   unverified); the `throttle_429` fault can add one.
//! - `GET /monitorodata/$metadata` returns a minimal CSDL document generated from the schema;
//!   `GET /monitorodata` the service document. The fallback listener serves tokens only.
//! - `slow_ms` delays Monitor responses only (not tokens), holding the in-flight slot.
//! - `touch_after_page` modifies a served row while the client pages (see `Faults`).
//! - On-premises mode (`SimOptions::onprem_site`): the last tenant's data also under
//!   `/Citrix/Monitor/OData/v4/Data` with no token and no customer header, 100 rows a page,
//!   absolute `$skip` nextLinks, 404 for `Entity(key)` and `/$count` (onprem-cvad.md §1).
//! - Query strings are form-decoded like ASP.NET does (`+` is a space), so a literal `+` in a
//!   `$filter` (a `+02:00` offset, a string) must be sent as `%2B`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::auth::{TokenCheck, Tokens, parse_authorization};
use super::data::TenantData;
use super::faults::{Faults, MonitorFault, TokenFault};
use super::schema::{ENTITY_SETS, EntityDef, NavKind, entity_set};
use super::stats::{SimStats, TenantStats};
use super::value::Val;
use super::{SimOptions, SimTenant, advance, generate, incident, odata};
use chrono::{DateTime, Utc};

/// How many requests `State::request_order` remembers (a few MB at most).
const REQUEST_LOG_CAP: usize = 100_000;

const ODATA_JSON: &str = "application/json; odata.metadata=minimal";

struct Tenant {
    info: SimTenant,
    /// Read by every request; replaced (write lock) by `advance`.
    data: RwLock<TenantData>,
    /// Generator state for `advance`; locked before `data` when both are needed.
    world: Mutex<generate::World>,
    faults: Mutex<Faults>,
    stats: Mutex<TenantStats>,
    in_flight: AtomicU64,
}

impl Tenant {
    fn stats(&self) -> std::sync::MutexGuard<'_, TenantStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn data(&self) -> std::sync::RwLockReadGuard<'_, TenantData> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Everything the handlers share.
pub struct State {
    opts: SimOptions,
    /// The simulated present (`opts.now` plus every advance).
    now: Mutex<DateTime<Utc>>,
    tenants: Vec<Tenant>,
    by_customer: HashMap<String, usize>,
    by_client: HashMap<String, usize>,
    tokens: Tokens,
    /// (tenant index, entity set) of every admitted Monitor request of an entity set, in the
    /// order they were admitted (the first REQUEST_LOG_CAP): shows how a client interleaves
    /// tenants. Only recorded; it never influences an answer.
    order: Mutex<Vec<(usize, &'static str)>>,
    /// Monitor requests in flight over all tenants, and the most ever (only counted).
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Cancelled when serving stops, so hanging fault responses end.
    stop: CancellationToken,
}

impl State {
    pub fn new(opts: SimOptions) -> State {
        let tenants: Vec<Tenant> = (0..opts.tenants)
            .map(|i| {
                let info = generate::tenant_identity(opts.seed, i);
                let (world, rows) = generate::generate_world(&opts, i, &info);
                Tenant {
                    info,
                    data: RwLock::new(TenantData::new(rows)),
                    world: Mutex::new(world),
                    faults: Mutex::new(Faults::default()),
                    stats: Mutex::new(TenantStats::default()),
                    in_flight: AtomicU64::new(0),
                }
            })
            .collect();
        let by_customer = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.info.customer_id.clone(), i))
            .collect();
        let by_client = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.info.client_id.clone(), i))
            .collect();
        State {
            tokens: Tokens::new(opts.seed),
            now: Mutex::new(opts.now),
            opts,
            tenants,
            by_customer,
            by_client,
            order: Mutex::new(Vec::new()),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            stop: CancellationToken::new(),
        }
    }

    pub fn tenant_list(&self) -> Vec<SimTenant> {
        self.tenants.iter().map(|t| t.info.clone()).collect()
    }

    pub fn rows_json(&self, customer_id: &str, set: &str) -> Vec<serde_json::Value> {
        let (Some(&t), Some(def)) = (self.by_customer.get(customer_id), entity_set(set)) else {
            return Vec::new();
        };
        let data = self.tenants[t].data();
        let table = data.table(set);
        let mut idx: Vec<usize> = (0..table.rows.len()).collect();
        let key = def.key_index();
        idx.sort_by(|&a, &b| {
            super::query::compare((&table.rows[a][key]).into(), (&table.rows[b][key]).into())
        });
        idx.into_iter()
            .map(|i| odata::row_json(def, &table.rows[i]))
            .collect()
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Advances every tenant's clock by `by` (see advance.rs); serialised by the `now` lock.
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if by <= chrono::Duration::zero() {
            return;
        }
        for t in &self.tenants {
            let mut world = t.world.lock().unwrap_or_else(|e| e.into_inner());
            let mut data = t.data.write().unwrap_or_else(|e| e.into_inner());
            let mut rows =
                std::mem::replace(&mut *data, TenantData::new(HashMap::new())).into_rows();
            advance::advance(&mut world, &mut rows, by);
            *data = TenantData::new(rows);
        }
        *now += by;
    }

    /// Customer id and entity set of each admitted entity-set request, in order.
    pub fn request_order(&self) -> Vec<(String, String)> {
        let order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        order
            .iter()
            .map(|&(t, set)| (self.tenants[t].info.customer_id.clone(), set.to_string()))
            .collect()
    }

    pub fn stats(&self) -> SimStats {
        SimStats {
            tenants: self
                .tenants
                .iter()
                .map(|t| (t.info.customer_id.clone(), t.stats().clone()))
                .collect(),
            max_in_flight: self.max_in_flight.load(Ordering::SeqCst),
        }
    }

    /// Replaces a tenant's faults; `Ok(false)` for an unknown tenant. Incidents not switched
    /// on before are written into the data now (incident.rs); one that does not fit the
    /// tenant (an unknown delivery group or category) is an error and changes nothing.
    pub fn set_faults(&self, customer_id: &str, mut faults: Faults) -> Result<bool, String> {
        let Some(&t) = self.by_customer.get(customer_id) else {
            return Ok(false);
        };
        let tenant = &self.tenants[t];
        let before = tenant.faults().incidents.clone();
        let new: Vec<_> = faults
            .incidents
            .iter()
            .filter(|i| !before.contains(i))
            .cloned()
            .collect();
        if !new.is_empty() {
            // Lock order as in `advance`: the `now` lock, the world, then the data.
            let now = self.now.lock().unwrap_or_else(|e| e.into_inner());
            let mut world = tenant.world.lock().unwrap_or_else(|e| e.into_inner());
            let mut data = tenant.data.write().unwrap_or_else(|e| e.into_inner());
            let mut rows =
                std::mem::replace(&mut *data, TenantData::new(HashMap::new())).into_rows();
            let applied = new
                .iter()
                .try_for_each(|i| incident::apply(&mut world, &mut rows, i, *now));
            *data = TenantData::new(rows);
            applied?;
        }
        if faults.expire_tokens {
            self.tokens.revoke_tenant(t);
            faults.expire_tokens = false;
        }
        *tenant.faults() = faults;
        Ok(true)
    }

    fn clear_faults(&self) {
        for t in &self.tenants {
            *t.faults() = Faults::default();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Listener {
    Regional,
    Fallback,
}

#[derive(Clone)]
struct Ctx {
    state: Arc<State>,
    listener: Listener,
    local: SocketAddr,
}

/// Serves both listeners until `shutdown` is cancelled.
pub async fn serve(
    state: Arc<State>,
    regional: TcpListener,
    fallback: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let stop = state.stop.clone();
    let regional_ctx = Ctx {
        state: state.clone(),
        listener: Listener::Regional,
        local: regional.local_addr()?,
    };
    let fallback_ctx = Ctx {
        state,
        listener: Listener::Fallback,
        local: fallback.local_addr()?,
    };
    let done = CancellationToken::new();
    // Either token ends serving; `stop` also aborts hanging fault responses.
    let watcher = {
        let (stop, done) = (stop.clone(), done.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = stop.cancelled() => {}
            }
            stop.cancel();
            done.cancel();
        })
    };
    let a = axum::serve(regional, router(regional_ctx))
        .with_graceful_shutdown(done.clone().cancelled_owned());
    let b = axum::serve(fallback, router(fallback_ctx))
        .with_graceful_shutdown(done.clone().cancelled_owned());
    let (ra, rb) = tokio::join!(async { a.await }, async { b.await });
    watcher.abort();
    ra.and(rb)
}

fn router(ctx: Ctx) -> Router {
    let mut r = Router::new()
        .route("/cctrustoauth2/{customer}/tokens/clients", post(token))
        .route("/_sim/stats", get(admin_stats))
        .route("/_sim/advance", post(admin_advance))
        .route("/_sim/now", get(admin_now))
        .route(
            "/_sim/faults",
            get(admin_get_faults)
                .post(admin_set_faults)
                .delete(admin_clear_faults),
        );
    if ctx.listener == Listener::Regional {
        r = r
            .route("/monitorodata", get(service_document))
            .route("/monitorodata/", get(service_document))
            .route("/monitorodata/{set}", get(monitor));
        if ctx.state.opts.onprem_site {
            let root = crate::config::ONPREM_ODATA_PATH;
            r = r
                .route(root, get(onprem_service_document))
                .route(&format!("{root}/"), get(onprem_service_document))
                .route(&format!("{root}/{{*rest}}"), get(onprem_monitor));
        }
    }
    r.fallback(not_found).with_state(ctx)
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_response(status: StatusCode, v: serde_json::Value) -> Response {
    respond(status, "application/json; charset=utf-8", v.to_string())
}

fn odata_error(status: StatusCode, message: &str) -> Response {
    let mut r = json_response(status, json!({"error": {"code": "", "message": message}}));
    r.headers_mut()
        .insert("odata-version", HeaderValue::from_static("4.0"));
    r
}

/// Citrix Cloud gateway error shape (citrix-monitor-api.md §5.5).
fn cloud_error(status: StatusCode, kind: &str, detail: &str) -> Response {
    json_response(
        status,
        json!({"type": format!("https://errors-api.cloud.com/common/{kind}"), "detail": detail, "parameters": []}),
    )
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        json!({"error": error, "error_description": description}),
    )
}

async fn not_found(uri: Uri) -> Response {
    odata_error(
        StatusCode::NOT_FOUND,
        &format!(
            "No HTTP resource was found that matches the request URI '{}'.",
            uri.path()
        ),
    )
}

// ---------------------------------------------------------------------------------------
// Token endpoint

async fn token(
    AxState(ctx): AxState<Ctx>,
    Path(customer): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let state = &ctx.state;
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let by_client = field("client_id").and_then(|c| state.by_client.get(c).copied());
    let tenant = if customer == "root" {
        by_client
    } else {
        state.by_customer.get(&customer).copied()
    };

    if let Some(t) = tenant {
        let tenant = &state.tenants[t];
        let fault = {
            let mut s = tenant.stats();
            let f = tenant.faults();
            match ctx.listener {
                Listener::Regional => {
                    s.token_requests.regional += 1;
                    f.token_fault(true)
                }
                Listener::Fallback => {
                    s.token_requests.fallback += 1;
                    f.token_fault(false)
                }
            }
        };
        match fault {
            Some(TokenFault::BadGateway) => {
                return respond(
                    StatusCode::BAD_GATEWAY,
                    "text/html",
                    "<html><body><h1>502 Bad Gateway</h1></body></html>",
                );
            }
            Some(TokenFault::GatewayTimeout) => {
                return respond(
                    StatusCode::GATEWAY_TIMEOUT,
                    "text/html",
                    "<html><body><h1>504 Gateway Time-out</h1></body></html>",
                );
            }
            Some(TokenFault::Timeout) => {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
                    _ = state.stop.cancelled() => {}
                }
                return respond(
                    StatusCode::GATEWAY_TIMEOUT,
                    "text/html",
                    "simulator stopped while hanging",
                );
            }
            None => {}
        }
    }

    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form_type {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request body must be application/x-www-form-urlencoded.",
        );
    }
    match field("grant_type") {
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The grant_type parameter is missing.",
            );
        }
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Only client_credentials is supported.",
            );
        }
    }
    let (Some(_), Some(secret)) = (field("client_id"), field("client_secret")) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id and client_secret are required.",
        );
    };
    let Some(t) = by_client else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed.",
        );
    };
    let info = &state.tenants[t].info;
    let path_ok = customer == "root" || customer == info.customer_id;
    if secret != info.client_secret || !path_ok {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed.",
        );
    }
    let lifetime = state.opts.token_lifetime_secs;
    let token = state
        .tokens
        .issue(t, std::time::Duration::from_secs(lifetime));
    json_response(
        StatusCode::OK,
        json!({"token_type": "bearer", "access_token": token, "expires_in": lifetime.to_string()}),
    )
}

// ---------------------------------------------------------------------------------------
// Monitor service

/// Releases a tenant's in-flight slot however the handler ends (also when the client hangs up).
/// A request's mark in its tenant's and the API-wide in-flight counts.
struct InFlight<'a>(&'a AtomicU64, &'a AtomicU64);

impl<'a> InFlight<'a> {
    /// Counts a request in; returns its mark and the tenant's count with it.
    fn enter(tenant: &'a AtomicU64, state: &'a State) -> (InFlight<'a>, u64) {
        let n = tenant.fetch_add(1, Ordering::SeqCst) + 1;
        let all = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(all, Ordering::SeqCst);
        (InFlight(tenant, &state.in_flight), n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        self.1.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Checks auth and the per-tenant concurrency rule; on success returns the tenant index and
/// the in-flight guard.
fn admit<'a>(
    state: &'a State,
    headers: &HeaderMap,
) -> Result<(usize, InFlight<'a>), Box<Response>> {
    let named = headers
        .get("citrix-customerid")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .and_then(|c| state.by_customer.get(c).copied());
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_authorization);
    let check = token.map_or(TokenCheck::Unknown, |t| state.tokens.check(t));
    let counted = named.or(match check {
        TokenCheck::Valid { tenant } | TokenCheck::Expired { tenant } => Some(tenant),
        TokenCheck::Unknown => None,
    });
    if let Some(t) = counted {
        state.tenants[t].stats().requests += 1;
    }
    let deny = |status: StatusCode, kind: &str, detail: &str| {
        if let Some(t) = counted {
            state.tenants[t].stats().responses_401 += 1;
        }
        Box::new(cloud_error(status, kind, detail))
    };
    let tenant = match check {
        TokenCheck::Valid { tenant } => tenant,
        TokenCheck::Expired { .. } => {
            return Err(deny(
                StatusCode::UNAUTHORIZED,
                "authentication",
                "The access token has expired.",
            ));
        }
        TokenCheck::Unknown => {
            return Err(deny(
                StatusCode::UNAUTHORIZED,
                "authentication",
                "Missing or invalid authentication details",
            ));
        }
    };
    if headers.get("citrix-customerid").is_none() {
        return Err(deny(
            StatusCode::UNAUTHORIZED,
            "authentication",
            "Missing or invalid authentication details",
        ));
    }
    if named != Some(tenant) {
        return Err(deny(
            StatusCode::FORBIDDEN,
            "authorization",
            "The caller is not authorized for this customer.",
        ));
    }
    let t = &state.tenants[tenant];
    let (guard, n) = InFlight::enter(&t.in_flight, state);
    let mut s = t.stats();
    s.max_in_flight = s.max_in_flight.max(n);
    if n > 1 {
        s.responses_429 += 1;
        return Err(Box::new(json_response(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"statusCode": 429, "message": "Rate limit is exceeded. Only one request per customer at a time."}),
        )));
    }
    drop(s);
    Ok((tenant, guard))
}

/// Applies `slow_ms` and the injected 429/500 faults.
async fn injected(state: &State, t: usize) -> Option<Response> {
    let tenant = &state.tenants[t];
    let slow = tenant.faults().slow_ms;
    if slow > 0 {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(slow)) => {}
            _ = state.stop.cancelled() => {}
        }
    }
    let fault = tenant.faults().take_monitor_fault();
    match fault {
        Some(MonitorFault::Throttle { retry_after_secs }) => {
            tenant.stats().responses_429 += 1;
            let mut r = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"statusCode": 429, "message": "Rate limit is exceeded. Try again later."}),
            );
            if let Some(secs) = retry_after_secs {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            Some(r)
        }
        Some(MonitorFault::Error500) => {
            tenant.stats().responses_500 += 1;
            Some(odata_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "An error has occurred.",
            ))
        }
        None => None,
    }
}

// ---------------------------------------------------------------------------------------
// On-premises mode

/// `http://<Host header>/Citrix/Monitor/OData/v4/Data`: an authenticating proxy in front keeps
/// the Host header, so links lead back through it.
fn onprem_base(headers: &HeaderMap, local: SocketAddr) -> String {
    let cloud = service_base(headers, local);
    let host = cloud.trim_end_matches("/monitorodata");
    format!("{host}{}", crate::config::ONPREM_ODATA_PATH)
}

/// Counts the request of the site and holds its in-flight mark (no 429: the on-prem service
/// documents no one-request rule).
fn admit_site(state: &State) -> Option<(usize, InFlight<'_>)> {
    let t = state.onprem_site()?;
    let tenant = &state.tenants[t];
    let (guard, n) = InFlight::enter(&tenant.in_flight, state);
    let mut s = tenant.stats();
    s.requests += 1;
    s.max_in_flight = s.max_in_flight.max(n);
    Some((t, guard))
}

async fn onprem_service_document(AxState(ctx): AxState<Ctx>, headers: HeaderMap) -> Response {
    let state = &ctx.state;
    let Some((t, _guard)) = admit_site(state) else {
        return not_found(Uri::from_static("/")).await;
    };
    if let Some(r) = injected(state, t).await {
        return r;
    }
    let base = onprem_base(&headers, ctx.local);
    service_document_body(state, t, &base)
}

async fn onprem_monitor(
    AxState(ctx): AxState<Ctx>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let state = &ctx.state;
    let Some((t, _guard)) = admit_site(state) else {
        return not_found(uri).await;
    };
    if let Some(r) = injected(state, t).await {
        return r;
    }
    if rest == "$metadata" {
        return odata_ok("application/xml", metadata_document().into_bytes());
    }
    // `Machines(5)`, `Machines/$count`, anything with a further segment: the real controller
    // answers 404 (onprem-cvad.md §1), so the harvester must never rely on them.
    let Some(def) = entity_set(&rest).filter(|_| !rest.contains(['(', '/'])) else {
        return not_found(uri).await;
    };
    let base = onprem_base(&headers, ctx.local);
    let query = uri.query().unwrap_or("");
    let (body, rows) = match state.page_body_sized(t, def, query, &base, super::ONPREM_PAGE_SIZE) {
        Ok(x) => x,
        Err(PageError::Query(e)) => {
            return odata_error(
                StatusCode::BAD_REQUEST,
                &format!("The query specified in the URI is not valid. {e}"),
            );
        }
        Err(PageError::Serialize(e)) => {
            return odata_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("serialization failed: {e}"),
            );
        }
    };
    {
        let mut order = state.order.lock().unwrap_or_else(|e| e.into_inner());
        if order.len() < REQUEST_LOG_CAP {
            order.push((t, def.set));
        }
    }
    finish_ok(state, t, def.set, rows, body)
}

/// The OData service document (every entity set) under `base`, cloud or on-premises alike.
fn service_document_body(state: &State, t: usize, base: &str) -> Response {
    let value: Vec<_> = ENTITY_SETS
        .iter()
        .map(|d| json!({"name": d.set, "kind": "EntitySet", "url": d.set}))
        .collect();
    let body = json!({"@odata.context": format!("{base}/$metadata"), "value": value});
    finish_ok(state, t, "", 0, body.to_string().into_bytes())
}

/// `http://<Host header>/monitorodata`: links point wherever the client reached us.
fn service_base(headers: &HeaderMap, local: SocketAddr) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty());
    match host {
        Some(h) => format!("http://{h}/monitorodata"),
        None => format!("http://{local}/monitorodata"),
    }
}

fn odata_ok(content_type: &'static str, body: Vec<u8>) -> Response {
    let mut r = respond(StatusCode::OK, content_type, body);
    r.headers_mut()
        .insert("odata-version", HeaderValue::from_static("4.0"));
    r
}

/// Finishes a 200: counts rows and applies `malformed_json`.
fn finish_ok(state: &State, t: usize, set: &str, rows: usize, mut body: Vec<u8>) -> Response {
    let tenant = &state.tenants[t];
    if tenant.faults().take_malformed() {
        body.truncate(body.len() / 2);
    } else if rows > 0 {
        *tenant
            .stats()
            .rows_served
            .entry(set.to_string())
            .or_default() += rows as u64;
    }
    odata_ok(ODATA_JSON, body)
}

async fn service_document(AxState(ctx): AxState<Ctx>, headers: HeaderMap) -> Response {
    let state = &ctx.state;
    let (t, _guard) = match admit(state, &headers) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if let Some(r) = injected(state, t).await {
        return r;
    }
    let base = service_base(&headers, ctx.local);
    service_document_body(state, t, &base)
}

async fn monitor(
    AxState(ctx): AxState<Ctx>,
    Path(set): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let state = &ctx.state;
    let (t, _guard) = match admit(state, &headers) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if let Some(r) = injected(state, t).await {
        return r;
    }
    if set == "$metadata" {
        return odata_ok("application/xml", metadata_document().into_bytes());
    }
    let Some(def) = entity_set(&set) else {
        return odata_error(
            StatusCode::NOT_FOUND,
            &format!(
                "No HTTP resource was found that matches the request URI '{}'.",
                uri.path()
            ),
        );
    };
    {
        let mut order = state.order.lock().unwrap_or_else(|e| e.into_inner());
        if order.len() < REQUEST_LOG_CAP {
            order.push((t, def.set));
        }
    }
    let base = service_base(&headers, ctx.local);
    let (body, rows) = match state.page_body(t, def, uri.query().unwrap_or(""), &base) {
        Ok(x) => x,
        Err(PageError::Query(e)) => {
            return odata_error(
                StatusCode::BAD_REQUEST,
                &format!("The query specified in the URI is not valid. {e}"),
            );
        }
        Err(PageError::Serialize(e)) => {
            return odata_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("serialization failed: {e}"),
            );
        }
    };
    if def.prop("ModifiedDate").is_some() && state.tenants[t].faults().touch_after_page {
        touch_first_row(state, &state.tenants[t], def, &body);
    }
    finish_ok(state, t, def.set, rows, body)
}

/// The `touch_after_page` fault: once a page with a nextLink was served, sets `ModifiedDate` of
/// its first row (found by its key in `body`) to the simulator's now and clears the switch.
fn touch_first_row(state: &State, tenant: &Tenant, def: &EntityDef, body: &[u8]) {
    let Ok(page) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let Some(key) = page["value"][0][def.key].as_i64() else {
        return;
    };
    if page.get("@odata.nextLink").is_none() {
        return;
    }
    tenant.faults().touch_after_page = false;
    let now = state.now();
    let (k, m) = (def.key_index(), def.prop("ModifiedDate").expect("checked"));
    let _world = tenant.world.lock().unwrap_or_else(|e| e.into_inner());
    let mut data = tenant.data.write().unwrap_or_else(|e| e.into_inner());
    let mut all = std::mem::replace(&mut *data, TenantData::new(HashMap::new())).into_rows();
    if let Some(row) = all
        .get_mut(def.set)
        .and_then(|rows| rows.iter_mut().find(|r| r[k] == Val::Int(key)))
    {
        row[m] = Val::Date(now);
    }
    *data = TenantData::new(all);
}

/// Why a collection query produced no page body.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{0}")]
    Query(String),
    #[error("{0}")]
    Serialize(String),
}

impl State {
    /// The body of one page of a collection query (the raw query string, `base` the service
    /// root the links point to) and its row count: what the handler serves on a 200, faults
    /// aside. Also used by `Simulator::page_body` for benchmarks.
    pub fn page_body(
        &self,
        t: usize,
        def: &'static super::schema::EntityDef,
        query: &str,
        base: &str,
    ) -> Result<(Vec<u8>, usize), PageError> {
        self.page_body_sized(t, def, query, base, self.opts.page_size)
    }

    /// [`State::page_body`] with a page size of its own (the on-premises site's 100).
    pub fn page_body_sized(
        &self,
        t: usize,
        def: &'static super::schema::EntityDef,
        query: &str,
        base: &str,
        page_size: usize,
    ) -> Result<(Vec<u8>, usize), PageError> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let opts =
            odata::parse_options(&pairs, def).map_err(|e| PageError::Query(e.to_string()))?;
        let data = self.tenants[t].data();
        let page = odata::run(&data, def, &opts, &pairs, base, page_size);
        let rows = page.value.len();
        let body = serde_json::to_vec(&page).map_err(|e| PageError::Serialize(e.to_string()))?;
        Ok((body, rows))
    }

    /// Index of the tenant served as the on-premises site (the last one), if that mode is on.
    pub fn onprem_site(&self) -> Option<usize> {
        self.opts
            .onprem_site
            .then(|| self.tenants.len().checked_sub(1))
            .flatten()
    }

    /// Tenant index of a customer id.
    pub fn tenant_index(&self, customer_id: &str) -> Option<usize> {
        self.by_customer.get(customer_id).copied()
    }
}

/// A minimal CSDL document: entity types, keys, properties and navigations of the simulated
/// sets (namespace as in the Monitor model docs). Enough for tools that browse `$metadata`; it
/// is not the real service's full EDMX.
fn metadata_document() -> String {
    let ns = "Citrix.Monitor.Repository.V2";
    let mut s = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>"#,
    );
    let _ = write!(
        s,
        r#"<Schema Namespace="{ns}" xmlns="http://docs.oasis-open.org/odata/ns/edm">"#
    );
    for d in ENTITY_SETS {
        let name = d.type_name.rsplit('.').next().unwrap_or(d.type_name);
        let _ = write!(
            s,
            r#"<EntityType Name="{name}"><Key><PropertyRef Name="{}"/></Key>"#,
            d.key
        );
        for p in d.props {
            let nullable = if p.name == d.key {
                r#" Nullable="false""#
            } else {
                ""
            };
            let _ = write!(
                s,
                r#"<Property Name="{}" Type="{}"{nullable}/>"#,
                p.name,
                p.ty.edm()
            );
        }
        for n in d.navs {
            let target = entity_set(n.target).map_or("", |t| t.type_name);
            let ty = match n.kind {
                NavKind::One { .. } => target.to_string(),
                NavKind::Many { .. } => format!("Collection({target})"),
            };
            let _ = write!(s, r#"<NavigationProperty Name="{}" Type="{ty}"/>"#, n.name);
        }
        s.push_str("</EntityType>");
    }
    s.push_str(r#"<EntityContainer Name="Container">"#);
    for d in ENTITY_SETS {
        let _ = write!(
            s,
            r#"<EntitySet Name="{}" EntityType="{}"/>"#,
            d.set, d.type_name
        );
    }
    s.push_str("</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>");
    s
}

// ---------------------------------------------------------------------------------------
// Admin

async fn admin_stats(AxState(ctx): AxState<Ctx>) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::to_value(ctx.state.stats()).unwrap_or_default(),
    )
}

async fn admin_get_faults(AxState(ctx): AxState<Ctx>) -> Response {
    let all: serde_json::Map<String, serde_json::Value> = ctx
        .state
        .tenants
        .iter()
        .map(|t| {
            (
                t.info.customer_id.clone(),
                serde_json::to_value(&*t.faults()).unwrap_or_default(),
            )
        })
        .collect();
    json_response(StatusCode::OK, serde_json::Value::Object(all))
}

/// Body: `{"customer_id": "...", <Faults fields>}`; unknown fields are rejected.
async fn admin_set_faults(AxState(ctx): AxState<Ctx>, body: Bytes) -> Response {
    let bad = |m: String| json_response(StatusCode::BAD_REQUEST, json!({"error": m}));
    let mut map: serde_json::Map<String, serde_json::Value> = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => return bad(format!("body is not a JSON object: {e}")),
    };
    let Some(serde_json::Value::String(customer)) = map.remove("customer_id") else {
        return bad("customer_id (string) is required".into());
    };
    let faults: Faults = match serde_json::from_value(serde_json::Value::Object(map)) {
        Ok(f) => f,
        Err(e) => return bad(format!("invalid faults: {e}")),
    };
    match ctx.state.set_faults(&customer, faults) {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no simulated tenant '{customer}'")}),
        ),
        Err(e) => bad(format!("tenant '{customer}': {e}")),
    }
}

/// `POST /_sim/advance?minutes=N` (1 ≤ N ≤ 10080): moves simulated time forward; answers the
/// new now as `{"now": "..."}`.
async fn admin_advance(AxState(ctx): AxState<Ctx>, uri: Uri) -> Response {
    let minutes = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "minutes")
        .and_then(|(_, v)| v.trim().parse::<i64>().ok())
        .filter(|m| (1..=10_080).contains(m));
    let Some(minutes) = minutes else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "minutes must be an integer from 1 to 10080"}),
        );
    };
    let state = ctx.state.clone();
    let by = chrono::Duration::minutes(minutes);
    // Generation is CPU work; keep it off the async workers.
    if let Err(e) = tokio::task::spawn_blocking(move || state.advance(by)).await {
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": format!("advance failed: {e}")}),
        );
    }
    admin_now(AxState(ctx)).await
}

async fn admin_now(AxState(ctx): AxState<Ctx>) -> Response {
    json_response(
        StatusCode::OK,
        json!({"now": super::value::format_date(ctx.state.now())}),
    )
}

async fn admin_clear_faults(AxState(ctx): AxState<Ctx>) -> Response {
    ctx.state.clear_faults();
    StatusCode::NO_CONTENT.into_response()
}
