//! The scheduler: one tokio task per tenant, each running a cycle (token, then every configured
//! entity kind) every `interval` on a grid offset by a random phase below `jitter` (drawn once
//! per tenant start, so tenants spread out and a run is never late by its own jitter), and `--once`: one cycle for every tenant,
//! then a summary. A cycle that overruns its interval skips the next tick with a warning.
//! Tenants share nothing but the sink, the HTTP client and the process-wide limits (requests in
//! flight, the body budget), so a failing tenant delays no other (DESIGN.md rule 4). Shutdown: every wait selects on the cancellation token, and a
//! collector stops after the page it is writing.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::checkpoint::{CheckpointError, Checkpoints};
use crate::citrix::client::{Limits, MonitorClient, http_client};
use crate::collect::{Ctx, Env, Job, LoopSettings, registry};
use crate::config::{Config, TenantConfig};
use crate::reload::Reload;
use crate::sink::{Sink, SinkError};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error("cannot set up the sink: {0}")]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    StateLock(#[from] crate::statelock::LockError),
    #[error("cannot listen on harvester.listen {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

pub use crate::collect::TenantSummary;

/// A job and how often it runs for this tenant.
pub(crate) struct Scheduled {
    pub(crate) job: Box<dyn Job>,
    interval: Duration,
}

pub(crate) struct Tenant {
    pub(crate) cfg: TenantConfig,
    pub(crate) client: MonitorClient,
    pub(crate) jobs: Vec<Scheduled>,
}

impl Tenant {
    /// The context of a cycle (or backfill) starting now, and its empty summary.
    pub(crate) fn begin(&self) -> (Ctx, TenantSummary) {
        let ctx = Ctx {
            customer: self.cfg.name.clone(),
            customer_id: self.cfg.customer_id.clone(),
            cycle_time: Utc::now().trunc_subsecs(0),
        };
        let summary = TenantSummary {
            tenant: self.cfg.name.clone(),
            customer_id: self.cfg.customer_id.clone(),
            error: None,
            entities: Vec::new(),
            duration: Duration::ZERO,
        };
        (ctx, summary)
    }
}

/// Builds a tenant's client and jobs; every tenant shares the token client, the Monitor
/// connections and the limits.
struct TenantFactory {
    http: reqwest::Client,
    pool: Arc<crate::citrix::pool::Pool>,
    limits: Limits,
    citrix: crate::config::CitrixConfig,
    schedule: std::collections::BTreeMap<String, Duration>,
    interval: Duration,
}

impl TenantFactory {
    /// Fails only for a site whose own HTTP client cannot be built (its `ca_file`, `proxy`).
    fn make(&self, t: &TenantConfig) -> Result<Tenant, String> {
        let client = MonitorClient::new(
            self.http.clone(),
            self.pool.clone(),
            t,
            &self.citrix,
            self.limits.clone(),
            self.interval,
        )?;
        Ok(Tenant {
            cfg: t.clone(),
            client,
            jobs: plan_jobs(t, &self.schedule, self.interval),
        })
    }
}

/// A tenant's task in the daemon, and how to stop it alone. It shares the tenant (and so its
/// configuration) with the task rather than keeping a copy: an idle tenant's settings exist once.
struct Running {
    tenant: Arc<Tenant>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

pub struct Harvester {
    pub(crate) tenants: Vec<Arc<Tenant>>,
    /// What a tenant added by a reload is built from (shared client, limits, schedules).
    factory: TenantFactory,
    sink: Sink,
    pub(crate) checkpoints: Checkpoints,
    pub(crate) settings: LoopSettings,
    jitter: Duration,
    metrics: Arc<crate::metrics::Metrics>,
    /// The configuration at start without its tenants: a reload compares against it with the
    /// running tenants' settings (kept once, in the tenants, not twice).
    started_with: Config,
    /// This process's claim on `state_dir` (spool, checkpoints), held while it runs.
    _lock: crate::statelock::StateLock,
}

impl Harvester {
    pub fn new(cfg: &Config) -> Result<Harvester, RunError> {
        // First: the spool and the checkpoints below must not be shared with another process.
        let lock = crate::statelock::StateLock::acquire(&cfg.harvester.state_dir)?;
        let http = http_client(
            cfg.citrix.request_timeout,
            cfg.citrix.ca_file.as_deref(),
            cfg.citrix.proxy.as_deref(),
        )
        .map_err(RunError::Http)?;
        let pool = crate::citrix::client::monitor_pool(
            cfg.citrix.ca_file.as_deref(),
            cfg.citrix.proxy.as_deref(),
        )
        .map_err(RunError::Http)?;
        let factory = TenantFactory {
            http,
            pool,
            limits: Limits::new(
                cfg.harvester.max_requests_in_flight,
                cfg.harvester.body_budget,
            ),
            citrix: cfg.citrix.clone(),
            schedule: cfg.harvester.schedule.clone(),
            interval: cfg.harvester.interval,
        };
        let tenants = cfg
            .tenants
            .iter()
            .map(|t| factory.make(t).map(Arc::new))
            .collect::<Result<Vec<_>, String>>()
            .map_err(RunError::Http)?;
        let metrics = Arc::new(crate::metrics::Metrics::with_unhealthy_after(
            cfg.harvester.unhealthy_after,
        ));
        metrics.reload_finished(true, Utc::now());
        metrics.watch_limits(factory.limits.clone());
        crate::memory::allow_descriptors(cfg.harvester.max_requests_in_flight);
        Ok(Harvester {
            tenants,
            factory,
            sink: Sink::new(cfg.output.clone())?,
            checkpoints: Checkpoints::open(&cfg.harvester.state_dir)?,
            settings: LoopSettings {
                lookback: cfg.harvester.lookback,
                overlap: cfg.harvester.overlap,
            },
            jitter: cfg.harvester.jitter,
            metrics,
            started_with: Config {
                harvester: cfg.harvester.clone(),
                citrix: cfg.citrix.clone(),
                output: cfg.output.clone(),
                tenants: Vec::new(),
            },
            _lock: lock,
        })
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Records a finished cycle in the self-metrics and writes its `citrix_harvester` point.
    async fn record_cycle(&self, t: &Tenant, summary: &TenantSummary) {
        let now = Utc::now();
        let change = self
            .metrics
            .record(summary, crate::metrics::ApiCounts::of(&t.client), now);
        match change {
            Some(crate::metrics::HealthChange::BecameUnhealthy { failures, error }) => {
                tracing::error!(tenant = %t.cfg.name, consecutive_failures = failures, last_error = %error,
                    "Tenant is unhealthy: it keeps failing and its data is not being harvested; \
                     Citrix grooms what is not read in time. Check its credentials and the Monitor API.");
            }
            Some(crate::metrics::HealthChange::Recovered { after_failures }) => {
                tracing::info!(tenant = %t.cfg.name, after_failures, "Tenant is healthy again.");
            }
            None => {}
        }
        let Some(p) = self.metrics.point(&t.cfg.name, &self.sink.stats(), now) else {
            return;
        };
        if let Err(e) = self.sink.write(&[p]).await {
            tracing::warn!(tenant = %t.cfg.name, error = %e, "The citrix_harvester point was not written.");
        }
    }

    /// One cycle of one tenant: a token, then the jobs selected by `due` (all for `--once`).
    async fn cycle(&self, t: &Tenant, due: &[bool], cancel: &CancellationToken) -> TenantSummary {
        let started = tokio::time::Instant::now();
        #[cfg(debug_assertions)]
        crate::failpoint::check(&t.cfg.name);
        let (ctx, mut summary) = t.begin();
        let ready = tokio::select! {
            r = t.client.ready() => Some(r),
            _ = cancel.cancelled() => None,
        };
        if ready.is_none() {
            // Shut down while waiting for the token: nothing was read, nothing to record.
            summary.duration = started.elapsed();
            return summary;
        }
        if let Some(Err(e)) = ready {
            if t.cfg.site.is_some() {
                // The rejection itself was the one ERROR; this is the silence it asked for.
                tracing::warn!(tenant = %t.cfg.name, error = %e, "Site not harvested this cycle.");
            } else {
                tracing::error!(tenant = %t.cfg.name, error = %e, "No token: this tenant is not harvested this cycle.");
            }
            summary.error = Some(e.to_string());
        } else {
            let env = Env {
                client: &t.client,
                sink: &self.sink,
                checkpoints: &self.checkpoints,
                settings: &self.settings,
                window: None,
            };
            for (s, _) in t.jobs.iter().zip(due).filter(|(_, d)| **d) {
                if cancel.is_cancelled() {
                    break;
                }
                summary.entities.push(s.job.run(&env, &ctx, cancel).await);
            }
        }
        summary.duration = started.elapsed();
        tracing::info!(tenant = %summary.tenant, records = summary.total(|e| e.records),
            points = summary.total(|e| e.points_written), rejected = summary.total(|e| e.rejected),
            dropped = summary.total(|e| e.dropped), ok = summary.ok(),
            duration_ms = summary.duration.as_millis() as u64, "Cycle finished.");
        self.record_cycle(t, &summary).await;
        summary
    }

    /// One cycle for every tenant, concurrently (bounded by the shared limits). A tenant
    /// whose task panicked gets a failed summary (so `--once` exits non-zero), never none.
    pub async fn run_once(self: &Arc<Self>, cancel: &CancellationToken) -> Vec<TenantSummary> {
        let mut set = tokio::task::JoinSet::new();
        let mut index = std::collections::HashMap::new();
        for i in 0..self.tenants.len() {
            let me = self.clone();
            let cancel = cancel.clone();
            let h = set.spawn(async move {
                let t = me.tenants[i].clone();
                let all = vec![true; t.jobs.len()];
                (i, me.cycle(&t, &all, &cancel).await)
            });
            index.insert(h.id(), i);
        }
        let mut out: Vec<(usize, TenantSummary)> = Vec::new();
        while let Some(r) = set.join_next_with_id().await {
            match r {
                Ok((_, x)) => out.push(x),
                Err(e) => {
                    let Some(&i) = index.get(&e.id()) else {
                        continue;
                    };
                    let t = &self.tenants[i];
                    let why = self.task_failed(t, e);
                    let (_, mut summary) = t.begin();
                    summary.error = Some(why);
                    out.push((i, summary));
                }
            }
        }
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, s)| s).collect()
    }

    /// A tenant's task ended in a panic (or was aborted): logged at ERROR and counted.
    fn task_failed(&self, t: &Tenant, e: tokio::task::JoinError) -> String {
        let message = if e.is_panic() {
            panic_message(e.into_panic())
        } else {
            e.to_string()
        };
        tracing::error!(tenant = %t.cfg.name, error = %message,
            "The tenant's task panicked: its harvest stopped (a bug; please report it). It is restarted.");
        self.metrics
            .record_panic(&t.cfg.name, &t.cfg.customer_id, &message);
        format!("the tenant's task panicked: {message}")
    }

    /// Runs one tenant's loop and restarts it after a panic, with backoff (1 s doubling to
    /// 5 min), until `cancel` fires: a bug hit by one tenant never silently stops it.
    async fn supervise(self: Arc<Self>, t: Arc<Tenant>, cancel: CancellationToken) {
        let mut restarts: u32 = 0;
        loop {
            let (me, tenant, c) = (self.clone(), t.clone(), cancel.clone());
            let task = tokio::spawn(async move { me.tenant_loop(&tenant, c).await });
            let e = match task.await {
                Ok(()) => return,
                Err(e) => e,
            };
            self.task_failed(&t, e);
            restarts = restarts.saturating_add(1);
            let wait =
                Duration::from_secs(1u64 << (restarts - 1).min(9)).min(Duration::from_secs(300));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Runs every tenant on its schedule until `cancel` fires; returns once all tasks stopped.
    /// With `reload`, the tenants follow the configuration as it is reloaded (reload.rs).
    pub async fn run_forever(self: Arc<Self>, cancel: CancellationToken, reload: Option<Reload>) {
        let tracker = TaskTracker::new();
        let mut running: BTreeMap<String, Running> = BTreeMap::new();
        for t in &self.tenants {
            self.start_tenant(&tracker, &mut running, t.clone(), &cancel);
        }
        tracker.close();
        // Not in the tracker: the watchdog below counts tenant tasks only.
        tokio::spawn(crate::memory::run_trimmer(cancel.clone()));
        crate::systemd::notify("READY=1");
        if let Some(every) = crate::systemd::watchdog_interval() {
            // Pings only while tenant tasks are alive: if they all died, systemd restarts us.
            // A shard that owns no tenant has none to begin with and idles on purpose.
            let (t, c) = (tracker.clone(), cancel.clone());
            let idle = self.tenants.is_empty();
            tokio::spawn(async move {
                while (idle || !t.is_empty()) && !c.is_cancelled() {
                    crate::systemd::notify("WATCHDOG=1");
                    tokio::select! {
                        _ = c.cancelled() => {}
                        _ = tokio::time::sleep(every) => {}
                    }
                }
            });
        }
        if let Some(mut r) = reload {
            loop {
                let cause = tokio::select! {
                    _ = cancel.cancelled() => break,
                    c = r.requests.recv() => c,
                };
                let Some(cause) = cause else {
                    cancel.cancelled().await;
                    break;
                };
                crate::systemd::notify("RELOADING=1");
                self.reload(cause, &r.load, &tracker, &mut running, &cancel)
                    .await;
                crate::systemd::notify("READY=1");
            }
        }
        cancel.cancelled().await;
        crate::systemd::notify("STOPPING=1");
        tracker.wait().await;
    }

    fn start_tenant(
        self: &Arc<Self>,
        tracker: &TaskTracker,
        running: &mut BTreeMap<String, Running>,
        t: Arc<Tenant>,
        cancel: &CancellationToken,
    ) {
        let names: Vec<String> = t.jobs.iter().map(|s| s.job.name()).collect();
        self.metrics.register(
            &t.cfg.name,
            &t.cfg.customer_id,
            names.iter().map(String::as_str),
        );
        let stop = cancel.child_token();
        let key = t.cfg.customer_id.to_ascii_lowercase();
        let task = tracker.spawn(self.clone().supervise(t.clone(), stop.clone()));
        running.insert(
            key,
            Running {
                tenant: t,
                stop,
                task,
            },
        );
    }

    /// Stops one tenant's task and waits for it: its current page finishes (or its request is
    /// abandoned), its watermarks stay on disk.
    async fn stop_tenant(&self, running: &mut BTreeMap<String, Running>, t: &TenantConfig) {
        if let Some(r) = running.remove(&t.customer_id.to_ascii_lowercase()) {
            r.stop.cancel();
            let _ = r.task.await;
            debug_assert_eq!(&r.tenant.cfg, t);
        }
    }

    /// Reads the configuration again and applies it to the running tenants (see reload.rs):
    /// nothing changes unless the whole new configuration is valid.
    async fn reload(
        self: &Arc<Self>,
        cause: crate::reload::Cause,
        load: &crate::reload::Loader,
        tracker: &TaskTracker,
        running: &mut BTreeMap<String, Running>,
        cancel: &CancellationToken,
    ) {
        let now = Utc::now();
        let current = self.current_config(running);
        let plan = load().and_then(|new| crate::reload::plan(&current, &new));
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(cause = %cause, error = %e,
                    "Configuration reload failed; the running configuration stays in force.");
                self.metrics.reload_finished(false, now);
                return;
            }
        };
        for t in &plan.removed {
            self.stop_tenant(running, t).await;
            self.metrics.forget(&t.name);
            tracing::info!(tenant = %t.name, "Tenant removed from the configuration: stopped.");
        }
        for (old, new) in &plan.changed {
            self.stop_tenant(running, old).await;
            if old.name != new.name {
                self.metrics.forget(&old.name);
            }
            let Some(t) = self.made(new) else { continue };
            self.start_tenant(tracker, running, t, cancel);
            tracing::info!(tenant = %new.name, "Tenant settings changed: restarted.");
        }
        for new in &plan.added {
            let Some(t) = self.made(new) else { continue };
            self.start_tenant(tracker, running, t, cancel);
            tracing::info!(tenant = %new.name, "Tenant added to the configuration: started.");
        }
        self.metrics.reload_finished(true, now);
        tracing::info!(cause = %cause, added = plan.added.len(), removed = plan.removed.len(),
            changed = plan.changed.len(), unchanged = plan.unchanged, "Configuration reloaded.");
    }

    /// A tenant of a reload, or `None` with an ERROR when its site client cannot be built.
    fn made(&self, t: &TenantConfig) -> Option<Arc<Tenant>> {
        match self.factory.make(t) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                tracing::error!(tenant = %t.name, error = %e, "Tenant not started: fix its settings and reload.");
                None
            }
        }
    }

    /// The configuration in force: the settings the harvester started with and the tenants
    /// running now.
    fn current_config(&self, running: &BTreeMap<String, Running>) -> Config {
        let mut c = self.started_with.clone();
        c.tenants = running.values().map(|r| r.tenant.cfg.clone()).collect();
        c
    }

    /// Runs each job of one tenant every its own interval. Jobs that fall due together run in
    /// one cycle (one token check, one request at a time). A job whose cycle overran its
    /// interval skips the missed runs with a warning instead of running back to back.
    /// `harvester.jitter` is the tenant's phase on its grid, drawn once: a delay drawn before
    /// every run would make a cycle shorter than its interval skip the next run (a 35 s
    /// cycle after 30 s of jitter overruns a 60 s grid).
    async fn tenant_loop(&self, t: &Tenant, cancel: CancellationToken) {
        let start = Instant::now() + random_below(self.jitter);
        let mut next_due: Vec<Instant> = vec![start; t.jobs.len()];
        let mut failures: Vec<u32> = vec![0; t.jobs.len()];
        while let Some(wake) = next_due.iter().min().copied() {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
            let now = Instant::now();
            let due: Vec<bool> = next_due.iter().map(|d| *d <= now).collect();
            // Boxed: the cycle's state (a few KB) exists only while it runs, not in every idle
            // tenant's task between runs.
            let s = Box::pin(self.cycle(t, &due, &cancel)).await;
            // The tenant now idles until its next run: what the cycle freed may go back to the OS.
            crate::memory::cycle_finished();
            let after = Instant::now();
            for (k, sj) in t.jobs.iter().enumerate() {
                if !due[k] {
                    continue;
                }
                let name = sj.job.name();
                let failed = s.error.is_some()
                    || s.entities
                        .iter()
                        .any(|e| e.kind == name && e.error.is_some());
                if failed {
                    // Retry soon, then less and less often, never less often than the interval:
                    // a failing tenant neither hammers Citrix nor waits longer than it must.
                    failures[k] += 1;
                    let wait = retry_delay(failures[k], sj.interval);
                    tracing::warn!(tenant = %t.cfg.name, job = %name, consecutive_failures = failures[k],
                        retry_in_s = wait.as_secs(), "Job failed; retrying with backoff.");
                    next_due[k] = after + wait;
                    continue;
                }
                failures[k] = 0;
                let (next, skipped) = next_run(next_due[k], sj.interval, after);
                if skipped > 0 {
                    self.metrics.record_skipped(&t.cfg.name, &name, skipped);
                    tracing::warn!(tenant = %t.cfg.name, job = %sj.job.name(), skipped,
                        cycle_ms = s.duration.as_millis() as u64, interval_ms = sj.interval.as_millis() as u64,
                        "Cycle took longer than the interval; missed runs are skipped.");
                }
                next_due[k] = next;
            }
        }
        tracing::info!(tenant = %t.cfg.name, "Tenant task stopped.");
    }
}

/// The next run of a job that was due at `due` and finished at `finished`: one interval later,
/// or, when the run overran, the first slot of its grid after `finished` (the number of
/// skipped slots is returned), so jobs keep their rhythm and never run back to back.
fn next_run(due: Instant, interval: Duration, finished: Instant) -> (Instant, u32) {
    let mut next = due + interval;
    let mut skipped = 0;
    while next <= finished {
        next += interval;
        skipped += 1;
    }
    (next, skipped)
}

/// After `failures` consecutive failed runs: 30 s, 60 s, 120 s, ... capped at the interval.
fn retry_delay(failures: u32, interval: Duration) -> Duration {
    let base = Duration::from_secs(30).saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    base.min(interval)
}

/// The jobs of a tenant with their intervals: tenant schedule, then harvester schedule, then
/// the harvester's interval.
fn plan_jobs(
    t: &TenantConfig,
    schedule: &std::collections::BTreeMap<String, Duration>,
    default: Duration,
) -> Vec<Scheduled> {
    let mut out = Vec::new();
    for kind in registry::KINDS {
        if !t.entities.iter().any(|e| e == kind) {
            continue;
        }
        for (job, key) in registry::jobs(kind) {
            let interval = t
                .schedule
                .get(key)
                .or_else(|| schedule.get(key))
                .copied()
                .unwrap_or(default);
            out.push(Scheduled { job, interval });
        }
    }
    out
}

/// The text of a panic's payload (a `&str` or a `String`, as `panic!` makes them).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_string(), |s| s.to_string()),
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

/// What a run did: the tenants' summaries (`--once`) and the sink's counters at the end.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub summaries: Vec<TenantSummary>,
    pub sink: crate::sink::SinkStats,
    /// The shared limits at the end: the most requests ever on the wire, and the body budget.
    pub peak_requests_in_flight: u64,
    pub budget: crate::budget::BudgetSnapshot,
}

impl RunReport {
    /// Every tenant delivered everything it read and no spooled point was lost.
    pub fn ok(&self) -> bool {
        self.sink.spool_corrupt_bytes == 0 && self.summaries.iter().all(TenantSummary::ok)
    }
}

/// Runs the harvester: `once` → one cycle per tenant and the summaries; otherwise until
/// `shutdown` is cancelled (then an empty list).
pub async fn run(
    cfg: &Config,
    once: bool,
    shutdown: CancellationToken,
) -> Result<Vec<TenantSummary>, RunError> {
    run_report(cfg, once, shutdown, None)
        .await
        .map(|r| r.summaries)
}

/// Like [`run`], with the sink's counters (for `--once`'s exit code).
pub async fn run_report(
    cfg: &Config,
    once: bool,
    shutdown: CancellationToken,
    reload: Option<Reload>,
) -> Result<RunReport, RunError> {
    let h = Arc::new(Harvester::new(cfg)?);
    tracing::info!(tenants = cfg.tenants.len(), sink = %h.sink().describe(), once, "Harvester starting.");
    // Replays what an earlier run (or this one) spooled while the server was away.
    let replay_stop = shutdown.child_token();
    let listener = match cfg.harvester.listen {
        Some(addr) => Some(
            crate::health::start(
                addr,
                h.metrics().clone(),
                h.sink().clone(),
                cfg.output.buffer_limit,
                replay_stop.clone(),
            )
            .await
            .map_err(|source| RunError::Listen { addr, source })?,
        ),
        None => None,
    };
    let replay = h.sink().start_replay(replay_stop.clone());
    let out = if once {
        let summaries = h.run_once(&shutdown).await;
        if replay.is_some() {
            drain_spool(h.sink(), cfg.output.retry_max_elapsed, &shutdown).await;
        }
        summaries
    } else {
        h.clone().run_forever(shutdown, reload).await;
        Vec::new()
    };
    replay_stop.cancel();
    if let Some(r) = replay {
        let _ = r.await;
    }
    if let Some(l) = listener {
        let _ = l.await;
    }
    let limits = &h.factory.limits;
    Ok(RunReport {
        summaries: out,
        sink: h.sink().stats(),
        peak_requests_in_flight: limits
            .peak_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        budget: limits.budget.snapshot(),
    })
}

/// `--once`: gives the replay a chance to deliver the spool before exiting.
pub(crate) async fn drain_spool(sink: &Sink, wait: Duration, cancel: &CancellationToken) {
    let deadline = Instant::now() + wait;
    while sink.stats().spool_bytes > 0 && Instant::now() < deadline && !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = sink.stats().spool_bytes;
    if left > 0 {
        tracing::warn!(
            spool_bytes = left,
            "The spool is not empty; it is replayed at the next start."
        );
    }
}

/// Bytes still waiting in the spool (for `--once`'s exit code).
pub fn spooled_bytes(cfg: &Config) -> u64 {
    let dir = cfg.harvester.state_dir.join("spool");
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The per-tenant summary table printed by `--once` and `demo`.
pub fn format_summary(summaries: &[TenantSummary]) -> String {
    let mut s = format!(
        "{:<28} {:<30} {:>8} {:>8} {:>8} {:>9} {:>8}  {}\n",
        "tenant", "entity", "records", "points", "spooled", "rejected", "dropped", "status"
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
                "{:<28} {:<30} {:>8} {:>8} {:>8} {:>9} {:>8}  {status}\n",
                t.tenant, e.kind, e.records, e.points_written, e.spooled, e.rejected, e.dropped
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_run_keeps_the_grid_and_skips_overruns() {
        let t0 = Instant::now();
        let i = Duration::from_secs(60);
        assert_eq!(next_run(t0, i, t0 + Duration::from_secs(5)), (t0 + i, 0));
        assert_eq!(
            next_run(t0, i, t0 + Duration::from_secs(60)),
            (t0 + 2 * i, 1)
        );
        assert_eq!(
            next_run(t0, i, t0 + Duration::from_secs(150)),
            (t0 + 3 * i, 2)
        );
    }

    #[test]
    fn failing_jobs_back_off_up_to_their_interval() {
        let i = Duration::from_secs(300);
        let got: Vec<u64> = (1..=6).map(|n| retry_delay(n, i).as_secs()).collect();
        assert_eq!(got, [30, 60, 120, 240, 300, 300]);
        assert_eq!(
            retry_delay(1, Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        assert_eq!(retry_delay(40, i), i);
    }

    #[test]
    fn jobs_take_tenant_then_harvester_schedule_then_interval() {
        let mut tenant = TenantConfig {
            name: "t".into(),
            customer_id: "c".into(),
            client_id: "x".into(),
            client_secret: crate::secret::Secret::new("s"),
            token_url: "http://h/t".into(),
            fallback_token_url: None,
            monitor_url: "http://h/m".into(),
            entities: vec!["connections".into(), "machines".into()],
            schedule: Default::default(),
            site: None,
        };
        let global = crate::config::default_schedule();
        let plan = plan_jobs(&tenant, &global, Duration::from_secs(300));
        let got: Vec<(String, u64)> = plan
            .iter()
            .map(|s| (s.job.name(), s.interval.as_secs()))
            .collect();
        assert_eq!(
            got,
            vec![("machines".into(), 60), ("connections".into(), 300)]
        );
        tenant
            .schedule
            .insert("machines".into(), Duration::from_secs(120));
        tenant.entities = vec!["machines".into()];
        let plan = plan_jobs(&tenant, &global, Duration::from_secs(300));
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].interval, Duration::from_secs(120));
    }
}

#[cfg(test)]
mod idle_cost {
    use super::*;

    /// An idle tenant's task holds its loop's state between runs; the cycle's own state (the
    /// token step, the jobs, the sink's write of the health point: a few KB) is boxed and
    /// exists only while a cycle runs. Ten thousand idle tenants must not each carry it.
    #[test]
    fn an_idle_tenant_task_does_not_carry_a_cycle() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[harvester]\nstate_dir = {:?}\n[output]\nkind = \"stdout\"\n[[tenant]]\nname = \"A\"\n\
             customer_id = \"a1\"\nclient_id = \"x\"\nclient_secret_env = \"S\"\n",
            dir.path()
        );
        let s = crate::config::SecretSources {
            env: Box::new(|_| Some("s".into())),
            credentials_dir: None,
        };
        let cfg = Config::from_toml_str(&text, &s).unwrap();
        let h = Arc::new(Harvester::new(&cfg).unwrap());
        let t = h.tenants[0].clone();
        let c = CancellationToken::new();
        let due = vec![true; t.jobs.len()];
        let cycle = std::mem::size_of_val(&h.cycle(&t, &due, &c));
        let idle = std::mem::size_of_val(&h.tenant_loop(&t, c.clone()));
        assert!(idle < cycle, "loop {idle} bytes, cycle {cycle} bytes");
        assert!(idle <= 1024, "an idle tenant's loop is {idle} bytes");
    }

    /// Each tenant's settings are kept once, in the tenant (its task and the reload's list of
    /// running tenants share it), and the configuration a reload compares against is still
    /// whole: the settings at start plus the running tenants.
    #[tokio::test]
    async fn running_tenants_share_their_settings_and_a_reload_sees_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = format!(
            "[harvester]\nstate_dir = {:?}\ninterval = \"1h\"\n[output]\nkind = \"stdout\"\n",
            dir.path()
        );
        for i in 0..3 {
            text.push_str(&format!(
                "[[tenant]]\nname = \"T{i}\"\ncustomer_id = \"c{i}\"\nclient_id = \"x\"\n\
                 client_secret_env = \"S\"\n"
            ));
        }
        let s = crate::config::SecretSources {
            env: Box::new(|_| Some("s".into())),
            credentials_dir: None,
        };
        let cfg = Config::from_toml_str(&text, &s).unwrap();
        let h = Arc::new(Harvester::new(&cfg).unwrap());
        assert!(
            h.started_with.tenants.is_empty(),
            "tenants are kept in the tenants"
        );
        let (tracker, cancel) = (TaskTracker::new(), CancellationToken::new());
        let mut running = BTreeMap::new();
        for t in &h.tenants {
            h.start_tenant(&tracker, &mut running, t.clone(), &cancel);
        }
        for (r, t) in running.values().zip(&h.tenants) {
            assert!(
                Arc::ptr_eq(&r.tenant, t),
                "the running entry shares the tenant"
            );
        }
        let current = h.current_config(&running);
        assert_eq!(current.tenants, cfg.tenants);
        assert_eq!(current.harvester, cfg.harvester);
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }

    /// A cloud tenant's settings and client do not carry an on-premises site's room (boxed):
    /// most tenants are cloud tenants and all of them live for the whole run.
    #[test]
    fn a_cloud_tenant_carries_no_site_room() {
        use crate::citrix::auth::TokenSource;
        use crate::citrix::client::AuthSource;
        use crate::config::SiteConfig;
        let auth = std::mem::size_of::<AuthSource>();
        let token = std::mem::size_of::<TokenSource>();
        assert!(
            auth <= token + 8,
            "AuthSource {auth} bytes, TokenSource {token}"
        );
        let site = std::mem::size_of::<SiteConfig>();
        let tenant = std::mem::size_of::<TenantConfig>();
        assert!(
            tenant < site,
            "TenantConfig {tenant} bytes embeds SiteConfig {site}?"
        );
        assert_eq!(std::mem::size_of::<Option<Box<SiteConfig>>>(), 8);
    }
}
