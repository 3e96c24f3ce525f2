//! The scheduler: one tokio task per tenant, each running a cycle (token, then every configured
//! entity kind) every `interval` with random `jitter`, and `--once`: one cycle for every tenant,
//! then a summary. A cycle that overruns its interval skips the next tick with a warning.
//! Tenants share nothing but the sink and a global request limit, so a failing tenant delays no
//! other (DESIGN.md rule 4). Shutdown: every wait selects on the cancellation token, and a
//! collector stops after the page it is writing.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use rand::Rng;
use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::checkpoint::{CheckpointError, Checkpoints};
use crate::citrix::client::{MonitorClient, http_client};
use crate::collect::connections::Connections;
use crate::collect::machines::Machines;
use crate::collect::{Ctx, EntityStats, LoopSettings, harvest};
use crate::config::{Config, TenantConfig};
use crate::sink::{Sink, SinkError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error("cannot set up the sink: {0}")]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// What one tenant's cycle did.
#[derive(Debug, Clone)]
pub struct TenantSummary {
    pub tenant: String,
    pub customer_id: String,
    /// A failure before any entity ran (no token).
    pub error: Option<String>,
    pub entities: Vec<EntityStats>,
    pub duration: Duration,
}

impl TenantSummary {
    /// Everything read was delivered: no error, nothing rejected or dropped, not interrupted.
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && self
                .entities
                .iter()
                .all(|e| e.error.is_none() && !e.interrupted && e.rejected == 0 && e.dropped == 0)
    }

    pub fn entity(&self, kind: &str) -> Option<&EntityStats> {
        self.entities.iter().find(|e| e.kind == kind)
    }

    fn total(&self, f: impl Fn(&EntityStats) -> u64) -> u64 {
        self.entities.iter().map(f).sum()
    }
}

struct Tenant {
    cfg: TenantConfig,
    client: MonitorClient,
}

pub struct Harvester {
    tenants: Vec<Tenant>,
    sink: Sink,
    checkpoints: Checkpoints,
    settings: LoopSettings,
    interval: Duration,
    jitter: Duration,
}

impl Harvester {
    pub fn new(cfg: &Config) -> Result<Harvester, RunError> {
        let http = http_client(
            cfg.citrix.request_timeout,
            cfg.citrix.ca_file.as_deref(),
            cfg.citrix.proxy.as_deref(),
        )
        .map_err(RunError::Http)?;
        let global = Arc::new(Semaphore::new(cfg.harvester.max_concurrent_requests));
        let tenants = cfg
            .tenants
            .iter()
            .map(|t| Tenant {
                cfg: t.clone(),
                client: MonitorClient::new(http.clone(), t, &cfg.citrix, global.clone()),
            })
            .collect();
        Ok(Harvester {
            tenants,
            sink: Sink::new(cfg.output.clone())?,
            checkpoints: Checkpoints::open(&cfg.harvester.state_dir)?,
            settings: LoopSettings {
                lookback: cfg.harvester.lookback,
                overlap: cfg.harvester.overlap,
            },
            interval: cfg.harvester.interval,
            jitter: cfg.harvester.jitter,
        })
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    /// One cycle of one tenant: a token, then every configured entity kind.
    async fn cycle(&self, t: &Tenant, cancel: &CancellationToken) -> TenantSummary {
        let started = tokio::time::Instant::now();
        let ctx = Ctx {
            customer: t.cfg.name.clone(),
            customer_id: t.cfg.customer_id.clone(),
            cycle_time: Utc::now().trunc_subsecs(0),
        };
        let mut summary = TenantSummary {
            tenant: t.cfg.name.clone(),
            customer_id: t.cfg.customer_id.clone(),
            error: None,
            entities: Vec::new(),
            duration: Duration::ZERO,
        };
        if let Err(e) = t.client.tokens.token().await {
            tracing::error!(tenant = %t.cfg.name, error = %e, "No token: this tenant is not harvested this cycle.");
            summary.error = Some(e.to_string());
        } else {
            // Snapshots first: they are the data that cannot be re-read later.
            for kind in ["machines", "connections"] {
                if !t.cfg.entities.iter().any(|e| e == kind) {
                    continue;
                }
                if cancel.is_cancelled() {
                    break;
                }
                let (c, s, k, st) = (&t.client, &self.sink, &self.checkpoints, &self.settings);
                let stats = match kind {
                    "machines" => harvest::<Machines>(c, s, k, &ctx, st, cancel).await,
                    _ => harvest::<Connections>(c, s, k, &ctx, st, cancel).await,
                };
                summary.entities.push(stats);
            }
        }
        summary.duration = started.elapsed();
        tracing::info!(tenant = %summary.tenant, records = summary.total(|e| e.records),
            points = summary.total(|e| e.points_written), rejected = summary.total(|e| e.rejected),
            dropped = summary.total(|e| e.dropped), ok = summary.ok(),
            duration_ms = summary.duration.as_millis() as u64, "Cycle finished.");
        summary
    }

    /// One cycle for every tenant, concurrently (bounded by the global request limit).
    pub async fn run_once(self: &Arc<Self>, cancel: &CancellationToken) -> Vec<TenantSummary> {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..self.tenants.len() {
            let me = self.clone();
            let cancel = cancel.clone();
            set.spawn(async move { (i, me.cycle(&me.tenants[i], &cancel).await) });
        }
        let mut out: Vec<(usize, TenantSummary)> = Vec::new();
        while let Some(r) = set.join_next().await {
            match r {
                Ok(x) => out.push(x),
                Err(e) => tracing::error!(error = %e, "A tenant task panicked."),
            }
        }
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, s)| s).collect()
    }

    /// Runs every tenant on its schedule until `cancel` fires; returns once all tasks stopped.
    pub async fn run_forever(self: Arc<Self>, cancel: CancellationToken) {
        let tracker = TaskTracker::new();
        for i in 0..self.tenants.len() {
            let me = self.clone();
            let cancel = cancel.clone();
            tracker.spawn(async move { me.tenant_loop(i, cancel).await });
        }
        tracker.close();
        tracker.wait().await;
    }

    async fn tenant_loop(&self, i: usize, cancel: CancellationToken) {
        let t = &self.tenants[i];
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let jitter = random_below(self.jitter);
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(jitter) => {}
            }
            let s = self.cycle(t, &cancel).await;
            if s.duration > self.interval {
                tracing::warn!(tenant = %t.cfg.name, duration_ms = s.duration.as_millis() as u64,
                    interval_ms = self.interval.as_millis() as u64,
                    "Cycle took longer than the interval; the next tick is skipped.");
            }
        }
        tracing::info!(tenant = %t.cfg.name, "Tenant task stopped.");
    }
}

/// A random delay in `[0, max)`, seeded from the clock so that tenants spread out.
fn random_below(max: Duration) -> Duration {
    use rand::SeedableRng;
    if max.is_zero() {
        return Duration::ZERO;
    }
    let seed = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ std::process::id() as u64);
    Duration::from_millis(rng.random_range(0..max.as_millis().max(1) as u64))
}

/// Runs the harvester: `once` → one cycle per tenant and the summaries; otherwise until
/// `shutdown` is cancelled (then an empty list).
pub async fn run(
    cfg: &Config,
    once: bool,
    shutdown: CancellationToken,
) -> Result<Vec<TenantSummary>, RunError> {
    let h = Arc::new(Harvester::new(cfg)?);
    tracing::info!(tenants = cfg.tenants.len(), sink = %h.sink().describe(), once, "Harvester starting.");
    if once {
        Ok(h.run_once(&shutdown).await)
    } else {
        h.run_forever(shutdown).await;
        Ok(Vec::new())
    }
}

/// The per-tenant summary table printed by `--once` and `demo`.
pub fn format_summary(summaries: &[TenantSummary]) -> String {
    let mut s = format!(
        "{:<28} {:<12} {:>8} {:>8} {:>9} {:>8}  {}\n",
        "tenant", "entity", "records", "points", "rejected", "dropped", "status"
    );
    for t in summaries {
        if let Some(e) = &t.error {
            s.push_str(&format!(
                "{:<28} {:<12} {:>8} {:>8} {:>9} {:>8}  FAILED: {e}\n",
                t.tenant, "-", 0, 0, 0, 0
            ));
            continue;
        }
        for e in &t.entities {
            let status = match (&e.error, e.interrupted) {
                (Some(err), _) => format!("FAILED: {err}"),
                (None, true) => "interrupted".to_string(),
                (None, false) if e.rejected > 0 || e.dropped > 0 => "incomplete".to_string(),
                _ => "ok".to_string(),
            };
            s.push_str(&format!(
                "{:<28} {:<12} {:>8} {:>8} {:>9} {:>8}  {status}\n",
                t.tenant, e.kind, e.records, e.points_written, e.rejected, e.dropped
            ));
        }
    }
    s
}

/// Start of the current minute: what `demo` and tests use as "now".
pub fn minute_now() -> DateTime<Utc> {
    let now = Utc::now();
    now - chrono::Duration::seconds(now.timestamp() % 60)
        - chrono::Duration::nanoseconds(now.timestamp_subsec_nanos() as i64)
}
