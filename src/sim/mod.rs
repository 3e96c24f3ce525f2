//! The Citrix Monitor Service simulator: a local HTTP server that behaves like the Citrix Cloud
//! token endpoint and `/monitorodata` (OData v4) as described in citrix-monitor-api.md, serving
//! deterministic data for many tenants, with switchable faults, request statistics and a clock
//! that tests can move forward. This file owns the public API (`Simulator`, `SimHandle`,
//! options); the pieces live in:
//! - `schema`: entity sets, property types, navigations;  `value`: cell values and wire formats;
//! - `generate`: the deterministic core generator;  `advance`: derived sets and time passing;
//!   `summary`: summary rows from raw rows;  `data`: tables and indexes;
//! - `query`: the `$filter` parser and evaluator;  `odata`: the other query options, paging and
//!   response shaping;
//! - `auth`: issued tokens;  `faults`, `stats`: test controls;  `incident`: incidents written
//!   into the data (logon storm, deregistration, failure spike);  `server`: the axum routes;
//! - `latency`: simulated waits, slow tenants, stream rate and API budget;  `stream`: a body
//!   that trickles out at a rate;  `clock`: the real-time clock that advances on a timer.
//!
//! Entity sets served (names case-sensitive, three singular) and what they come from:
//! - generated: `DesktopGroups`, `Catalogs`, `Hypervisors`, `Machines`, `Users`, `Sessions`,
//!   `Connections` (one per logon/reconnect), `ConnectionFailureLogs` (one per failed launch,
//!   matching its Session), `ConnectionFailureCategories`, `LoadIndexes` (every 30 min per
//!   powered-on machine), `Applications`, `Hotfixes`;
//! - derived: `MachineFailureLogs` (the open failure of every machine in a failure FaultState,
//!   plus past FailedToStart episodes), `MachineHotfixLogs` (existing machines and hotfixes),
//!   `ApplicationInstances` (application sessions only, ending with their session),
//!   `ResourceUtilization` (5 min), `MachineMetric` (10 min, no Created/ModifiedDate),
//!   `SessionMetrics` (10 min per running session, `SessionId` = SessionKey) — raw resource
//!   rows for the last hour at start;
//! - summaries (summary.rs has the exact rules): `SessionActivitySummaries`, `LogOnSummaries`,
//!   `FailureLogSummaries`, `LoadIndexSummaries`, `MachineSummaries` at Granularity 1/60/1440,
//!   `ResourceUtilizationSummary` at 10/60/1440; complete UTC-aligned intervals only, minute
//!   rows for the last hour (Citrix keeps 3 days).
//!
//! Oddities a harvester must survive (all deterministic):
//! - a few rows of Sessions, Connections, Machines and ConnectionFailureLogs share their
//!   ModifiedDate to the tick; in every tenant with more than 101 Connections (always tenant
//!   0) the Connections at offsets 97..=101 of `ModifiedDate, Id` order share one ModifiedDate,
//!   so the batch straddles the boundary of the first page of 100;
//! - `advance` (`SimHandle::advance`, `POST /_sim/advance?minutes=N`) ends running sessions,
//!   bumping the ModifiedDate of rows already read, and adds 2 late failed launches per tenant
//!   whose ModifiedDate is 5–90 s *before* the previous now (advance.rs): overlap ≥ 90 s;
//! - late rows are not re-aggregated into minute summaries already written (as in Citrix);
//! - FailureLogSummaries of launches that found no machine have a null DesktopGroupId.
//!
//! It must not be used by the harvester's production paths; it exists for `simulate`, demos and
//! tests.

mod advance;
mod auth;
mod clock;
mod data;
mod faults;
mod generate;
mod incident;
mod latency;
mod odata;
mod query;
mod schema;
mod server;
mod stats;
mod stream;
mod summary;
mod value;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use chrono::{DateTime, DurationRound, Utc};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use faults::{Faults, Incident, TokenFault};
pub use latency::Latency;
pub use stats::{ApiStats, SimStats, TenantStats};

/// How much data to generate and how the server behaves.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub tenants: usize,
    pub seed: u64,
    /// Server-driven page size (real cloud may be 1000, on-prem 100).
    pub page_size: usize,
    /// Data covers `[now - history, now]`.
    pub now: DateTime<Utc>,
    pub history: chrono::Duration,
    /// Sessions per day of tenant 0 (other tenants are scaled by 0.35–1.2); the total over the
    /// history is `sessions_per_day × days`, spread with weekends at a quarter of a weekday.
    pub sessions_per_day: usize,
    /// Emitted as the JSON string `"expires_in"`.
    pub token_lifetime_secs: u64,
    /// The last tenant is also an on-premises site: its data under
    /// `/Citrix/Monitor/OData/v4/Data` on the regional listener, with no token and no
    /// `Citrix-CustomerId`, 100 rows a page, options from the query string only, 404 for
    /// `Entity(key)` and `/$count` segments (onprem-cvad.md §1). Windows authentication is not
    /// the simulator's: tests put a real NTLM/Kerberos acceptor in front of it.
    pub onprem_site: bool,
    /// Machines of every tenant (times its size factor unless `equal_tenants`); `None` keeps
    /// the generator's 20–60 (fewer when `sessions_per_day` is under 300). Users follow at
    /// five per machine.
    pub machines_per_tenant: Option<usize>,
    /// Every tenant the size of tenant 0 (the benchmark's "medium" tenants), instead of the
    /// 0.35–1.2 spread.
    pub equal_tenants: bool,
    /// `Some(k)`: only k data sets are generated and tenant i serves set `i mod k` (the data
    /// of tenant `i mod k`, under its own identity, faults, statistics and latency), so that
    /// ten thousand tenants fit in memory. Incidents and `touch_after_page` then change the
    /// set, i.e. every tenant sharing it. `None` (default): every tenant its own data.
    pub data_sets: Option<usize>,
    /// With `Some(r)` every advance drops raw resource samples and summary rows older than
    /// `now - r` (advance.rs, `groom`), so that a long run on the real clock stays the same
    /// size; at least an hour. `None` (default): nothing is groomed.
    pub retain: Option<chrono::Duration>,
    /// Simulated latency (off by default); switchable at run time.
    pub latency: Latency,
    /// Simulated seconds per wall-clock second (> 0): latency and streaming sleep
    /// `simulated / time_scale` of wall time, and the real clock advances `time_scale`
    /// simulated seconds per wall second.
    pub time_scale: f64,
    /// With `Some(tick)` the simulated clock follows wall time: every `tick` (wall time) it
    /// advances to `start + elapsed × time_scale`, so new rows appear as time passes. `None`
    /// (the default) moves it only on `advance`.
    pub real_clock: Option<std::time::Duration>,
}

/// Rows per page of an on-premises controller (Citrix's on-prem sample shows `$skip=100`).
pub const ONPREM_PAGE_SIZE: usize = 100;

impl Default for SimOptions {
    fn default() -> Self {
        let now = Utc::now();
        SimOptions {
            tenants: 3,
            seed: 42,
            page_size: 100,
            now: now
                .duration_trunc(chrono::Duration::minutes(1))
                .unwrap_or(now),
            history: chrono::Duration::days(2),
            sessions_per_day: 300,
            token_lifetime_secs: 3600,
            onprem_site: false,
            machines_per_tenant: None,
            equal_tenants: false,
            data_sets: None,
            retain: None,
            latency: Latency::default(),
            time_scale: 1.0,
            real_clock: None,
        }
    }
}

impl SimOptions {
    /// Checks the settings a command line can get wrong; the message names the option.
    pub fn validate(&self) -> Result<(), String> {
        self.latency.validate()?;
        if !(self.time_scale.is_finite() && self.time_scale > 0.0 && self.time_scale <= 1000.0) {
            return Err(format!(
                "time_scale must be above 0 and at most 1000, not {}",
                self.time_scale
            ));
        }
        if self.retain.is_some_and(|r| r < chrono::Duration::hours(1)) {
            return Err("retain must be at least an hour".into());
        }
        if self.real_clock.is_some_and(|t| t.is_zero()) {
            return Err("the real clock's tick must be positive".into());
        }
        Ok(())
    }
}

/// One simulated customer and its API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTenant {
    pub name: String,
    pub customer_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// Fixed offset of the tenant's local time (no daylight saving).
    pub utc_offset_minutes: i32,
}

/// A simulator with its data generated, not yet serving.
pub struct Simulator {
    state: Arc<server::State>,
}

impl Simulator {
    /// Generates all data deterministically from `opts.seed`. Options that fail
    /// `SimOptions::validate` are replaced by their defaults, with a warning.
    pub fn new(mut opts: SimOptions) -> Simulator {
        if let Err(e) = opts.validate() {
            tracing::warn!(error = %e, "simulator options invalid; latency and clock use defaults");
            let d = SimOptions::default();
            (opts.latency, opts.time_scale, opts.real_clock) = (d.latency, d.time_scale, None);
            opts.retain = None;
        }
        Simulator {
            state: Arc::new(server::State::new(opts)),
        }
    }

    pub fn tenants(&self) -> Vec<SimTenant> {
        self.state.tenant_list()
    }

    /// The body of one page exactly as the server answers `GET url` for this tenant (faults
    /// and statistics aside), without HTTP: for benchmarks of the decode path. `url` is an
    /// absolute Monitor URL such as a collector's query or a nextLink; its links keep its host.
    pub fn page_body(&self, customer_id: &str, url: &str) -> Result<Vec<u8>, String> {
        let t = self
            .state
            .tenant_index(customer_id)
            .ok_or_else(|| format!("no simulated tenant {customer_id}"))?;
        let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let path = parsed.path();
        let (root, set) = path
            .rsplit_once('/')
            .ok_or_else(|| format!("{url}: no entity set"))?;
        let def = schema::entity_set(set).ok_or_else(|| format!("no entity set {set}"))?;
        let base = format!("{}{root}", &parsed[..url::Position::BeforePath]);
        self.state
            .page_body(t, def, parsed.query().unwrap_or(""), &base)
            .map(|(body, _)| body)
            .map_err(|e| e.to_string())
    }

    /// Binds the regional and the fallback token listener on `ip` with ephemeral ports and
    /// serves in a background task until the handle is shut down or dropped.
    pub async fn start(self, ip: IpAddr) -> std::io::Result<SimHandle> {
        let regional = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let fallback = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let regional_addr = regional.local_addr()?;
        let fallback_addr = fallback.local_addr()?;
        let shutdown = CancellationToken::new();
        let state = self.state.clone();
        let token = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = self.serve(regional, fallback, token).await {
                tracing::warn!(error = %e, "simulator stopped with an error");
            }
        });
        Ok(SimHandle {
            state,
            regional_addr,
            fallback_addr,
            shutdown,
        })
    }

    /// Serves on the given listeners until `shutdown` is cancelled. Hanging fault responses are
    /// aborted then, so this returns promptly.
    pub async fn serve(
        self,
        regional: TcpListener,
        fallback: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        if let Some(tick) = self.state.real_clock() {
            tokio::spawn(clock::run(self.state.clone(), tick, shutdown.clone()));
        }
        server::serve(self.state, regional, fallback, shutdown).await
    }
}

/// A running simulator. Dropping it stops the server.
pub struct SimHandle {
    state: Arc<server::State>,
    regional_addr: SocketAddr,
    fallback_addr: SocketAddr,
    shutdown: CancellationToken,
}

impl SimHandle {
    /// `http://IP:PORT` of the regional host (token endpoint and `/monitorodata`).
    pub fn regional_url(&self) -> String {
        format!("http://{}", self.regional_addr)
    }

    /// `http://IP:PORT` of the fallback token host (token endpoint only).
    pub fn fallback_url(&self) -> String {
        format!("http://{}", self.fallback_addr)
    }

    pub fn monitor_base_url(&self) -> String {
        format!("{}/monitorodata", self.regional_url())
    }

    /// `http://IP:PORT/Citrix/Monitor/OData/v4/Data` of the on-premises site
    /// (`SimOptions::onprem_site`).
    pub fn onprem_base_url(&self) -> String {
        format!(
            "{}{}",
            self.regional_url(),
            crate::config::ONPREM_ODATA_PATH
        )
    }

    /// The tenant served as the on-premises site, if `SimOptions::onprem_site` is on.
    pub fn onprem_site(&self) -> Option<SimTenant> {
        self.state
            .onprem_site()
            .map(|t| self.state.tenant_list()[t].clone())
    }

    pub fn tenants(&self) -> Vec<SimTenant> {
        self.state.tenant_list()
    }

    /// Raw rows of an entity set exactly as served (no expansion), in key order; empty for an
    /// unknown tenant or set.
    pub fn rows(&self, customer_id: &str, entity_set: &str) -> Vec<serde_json::Value> {
        self.state.rows_json(customer_id, entity_set)
    }

    pub fn stats(&self) -> SimStats {
        self.state.stats()
    }

    /// (customer id, entity set) of every admitted entity-set request, in the order the
    /// simulator admitted them (the first 100,000): how the client interleaved its tenants.
    pub fn request_order(&self) -> Vec<(String, String)> {
        self.state.request_order()
    }

    /// The simulated present: `SimOptions::now` plus every advance so far.
    pub fn now(&self) -> DateTime<Utc> {
        self.state.now()
    }

    /// Moves simulated time forward by `by` for every tenant and appends what happened
    /// meanwhile (new sessions, ended sessions, late rows, samples, completed summaries; see
    /// the module docs). Non-positive durations do nothing. Blocks while generating (a few ms
    /// per default tenant and hour); requests wait for it.
    pub fn advance(&self, by: chrono::Duration) {
        self.state.advance(by);
    }

    /// Replaces the faults of a tenant (unknown tenants are ignored, with a warning). New
    /// incidents are written into the data now; see `try_set_faults` for their errors.
    pub fn set_faults(&self, customer_id: &str, faults: Faults) {
        if let Err(e) = self.try_set_faults(customer_id, faults) {
            tracing::warn!(customer_id, error = %e, "set_faults failed");
        }
    }

    /// As `set_faults`, but an unknown tenant, delivery group or failure category is an error.
    pub fn try_set_faults(&self, customer_id: &str, faults: Faults) -> Result<(), String> {
        match self.state.set_faults(customer_id, faults)? {
            true => Ok(()),
            false => Err(format!("no simulated tenant {customer_id}")),
        }
    }

    /// The latency settings in force.
    pub fn latency(&self) -> Latency {
        self.state.latency()
    }

    /// Replaces the latency settings for the requests that arrive from now on; an invalid
    /// setting is an error naming the field and changes nothing.
    pub fn set_latency(&self, latency: Latency) -> Result<(), String> {
        self.state.set_latency(latency)
    }

    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
