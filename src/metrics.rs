//! Self-metrics: the harvester's own figures per tenant (last success, cycle duration, busy time,
//! cycles, skipped runs, records and points per entity, errors by kind, 429s, token fetches and
//! fallbacks), the sink's global ones (spool bytes, dropped points, dead letters, the output's
//! write concurrency and queue) and the process-wide limits (requests in flight, the body
//! budget's bytes in use, its waits and refetches). The scheduler records each cycle
//! here; this file renders the figures two ways: Prometheus text format for `/metrics` and the
//! `citrix_harvester` measurement written through the ordinary sink. It owns no I/O: serving
//! HTTP lives in `health.rs`, writing in the sink.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use crate::citrix::client::{Limits, MonitorClient};
use crate::collect::TenantSummary;
use crate::lineproto::Point;
use crate::sink::SinkStats;

/// Counters of one tenant since the process started.
#[derive(Debug, Clone, Default)]
struct TenantFigures {
    customer_id: String,
    last_success: Option<i64>,
    cycle_duration_s: f64,
    /// Sum of all cycle durations (the tenant's busy time) and the number of cycles.
    cycle_seconds_total: f64,
    cycles: u64,
    /// Runs skipped because a cycle overran the job's interval, by job.
    skipped_runs: Counts<u64>,
    records: Counts<u64>,
    points: Counts<u64>,
    errors: Counts<u64>,
    throttled: u64,
    token_fetches: u64,
    token_fallbacks: u64,
    /// Failed runs in a row, per job (`token` for the token every job needs).
    job_failures: Counts<u32>,
    /// The worst job's count: failed runs in a row (no token, or that job failed).
    consecutive_failures: u32,
    /// Why the last failed cycle failed.
    last_error: Option<String>,
    dropped: u64,
    /// Rows dated in the future, by entity kind.
    future_dated: Counts<u64>,
    /// Times the tenant's task panicked (and was restarted).
    panics: u64,
    /// The task panicked and no cycle has finished since: unhealthy until one does.
    restarting: bool,
}

impl TenantFigures {
    /// Shown in `/metrics`: the tenant has finished a cycle or panicked (figures registered
    /// at start and not used yet are not).
    fn reported(&self) -> bool {
        self.cycles > 0 || self.panics > 0 || self.restarting || !self.skipped_runs.0.is_empty()
    }

    fn sum(m: &Counts<u64>) -> i64 {
        m.values().sum::<u64>() as i64
    }
}

/// A tenant's client counters since start (429 responses, token fetches, fallback tokens).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiCounts {
    pub throttled: u64,
    pub token_fetches: u64,
    pub token_fallbacks: u64,
}

impl ApiCounts {
    pub fn of(client: &MonitorClient) -> ApiCounts {
        ApiCounts {
            throttled: client.stats.throttled.load(Ordering::Relaxed),
            token_fetches: client
                .auth
                .tokens()
                .map_or(0, |t| t.stats.fetches.load(Ordering::Relaxed)),
            token_fallbacks: client
                .auth
                .tokens()
                .map_or(0, |t| t.stats.fallback_uses.load(Ordering::Relaxed)),
        }
    }
}

/// The figures of `tenant`, made when it has none (the name is copied only then).
fn figures<'a>(
    tenants: &'a mut BTreeMap<String, TenantFigures>,
    tenant: &str,
) -> &'a mut TenantFigures {
    if !tenants.contains_key(tenant) {
        tenants.insert(tenant.to_string(), TenantFigures::default());
    }
    tenants.get_mut(tenant).expect("inserted above")
}

/// Counters by a short label (entity kind, job, error kind), sorted by label. A tenant has a
/// handful of labels: a sorted vector holds them in one small allocation, where a `BTreeMap`
/// allocates a node with room for eleven (about 400 bytes) per map, six maps per tenant,
/// for the whole run.
#[derive(Debug, Clone, Default)]
struct Counts<V>(Vec<(String, V)>);

impl<V: Default> Counts<V> {
    /// The counter of `label`, created at zero when it is new.
    fn entry(&mut self, label: &str) -> &mut V {
        let i = match self.0.binary_search_by(|(k, _)| k.as_str().cmp(label)) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (label.to_string(), V::default()));
                i
            }
        };
        &mut self.0[i].1
    }

    fn remove(&mut self, label: &str) {
        if let Ok(i) = self.0.binary_search_by(|(k, _)| k.as_str().cmp(label)) {
            self.0.remove(i);
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
}

#[derive(Debug, Default)]
struct State {
    tenants: BTreeMap<String, TenantFigures>,
    dropped_points: u64,
    /// The last configuration (re)load: did it succeed, and when did one last succeed.
    reload_failed: bool,
    reload_success_at: Option<i64>,
}

/// A tenant crossing the `unhealthy_after` line, in either direction; the scheduler logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthChange {
    /// This cycle was the `failures`-th failed one in a row, reaching the threshold.
    BecameUnhealthy { failures: u32, error: String },
    /// A good cycle after the tenant had been reported unhealthy.
    Recovered { after_failures: u32 },
}

/// A tenant currently reported unhealthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    pub tenant: String,
    pub consecutive_failures: u32,
    pub last_error: String,
}

/// The self-metrics shared by the scheduler (writer) and the HTTP listener (reader).
#[derive(Debug)]
pub struct Metrics {
    state: Mutex<State>,
    unhealthy_after: u32,
    /// The limits shared by the tenants, read when rendering.
    limits: std::sync::OnceLock<Limits>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Figures that report a tenant unhealthy after 3 failed cycles in a row (the default of
    /// `harvester.unhealthy_after`).
    pub fn new() -> Metrics {
        Metrics::with_unhealthy_after(3)
    }

    pub fn with_unhealthy_after(unhealthy_after: u32) -> Metrics {
        Metrics {
            state: Mutex::default(),
            unhealthy_after: unhealthy_after.max(1),
            limits: std::sync::OnceLock::new(),
        }
    }

    /// Reports these limits in `/metrics` from now on (the first call wins).
    pub fn watch_limits(&self, limits: Limits) {
        let _ = self.limits.set(limits);
    }

    fn is_unhealthy(&self, f: &TenantFigures) -> bool {
        f.restarting || f.consecutive_failures >= self.unhealthy_after
    }

    /// A configuration load (the first one at start, then each reload) finished.
    pub fn reload_finished(&self, ok: bool, at: DateTime<Utc>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.reload_failed = !ok;
        if ok {
            st.reload_success_at = Some(at.timestamp());
        }
    }

    /// Drops a tenant that left the configuration, so that its series disappear.
    pub fn forget(&self, tenant: &str) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.tenants.remove(tenant);
    }

    /// A tenant about to run: its figures are made now, with a counter for each job, so that
    /// its first cycle only updates them. A daemon's figures live for the whole run; made at
    /// start they sit together, not scattered among the pages of the first burst of cycles,
    /// where each would keep a whole page of the allocator from being returned to the OS. The
    /// tenant is shown in `/metrics` once it has finished a cycle (or panicked), as before.
    pub fn register<'a>(
        &self,
        tenant: &str,
        customer_id: &str,
        jobs: impl Iterator<Item = &'a str>,
    ) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let f = figures(&mut st.tenants, tenant);
        if f.customer_id != customer_id {
            f.customer_id = customer_id.to_string();
        }
        for job in jobs {
            f.records.entry(job);
            f.points.entry(job);
        }
    }

    /// A tenant's task panicked: counted, and the tenant is unhealthy until a cycle finishes.
    pub fn record_panic(&self, tenant: &str, customer_id: &str, message: &str) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let f = st.tenants.entry(tenant.to_string()).or_default();
        f.customer_id = customer_id.to_string();
        f.panics += 1;
        f.restarting = true;
        f.last_error = Some(format!("the tenant's task panicked: {message}"));
    }

    /// A cycle of `tenant` overran the interval of `job`: `runs` of its runs are skipped.
    pub fn record_skipped(&self, tenant: &str, job: &str, runs: u32) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let f = st.tenants.entry(tenant.to_string()).or_default();
        *f.skipped_runs.entry(job) += u64::from(runs);
    }

    /// The tenants reported unhealthy now, by name.
    pub fn unhealthy(&self) -> Vec<Unhealthy> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.tenants
            .iter()
            .filter(|(_, f)| self.is_unhealthy(f))
            .map(|(n, f)| Unhealthy {
                tenant: n.clone(),
                consecutive_failures: f.consecutive_failures,
                last_error: f.last_error.clone().unwrap_or_default(),
            })
            .collect()
    }

    /// Adds one finished cycle of a tenant; `api` holds the client's cumulative counts.
    /// Returns the tenant's health change, if this cycle made one.
    pub fn record(
        &self,
        s: &TenantSummary,
        api: ApiCounts,
        finished: DateTime<Utc>,
    ) -> Option<HealthChange> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut dropped = 0;
        let f = figures(&mut st.tenants, &s.tenant);
        let change = update_health(f, s, self.unhealthy_after);
        f.restarting = false;
        if f.customer_id != s.customer_id {
            f.customer_id = s.customer_id.clone();
        }
        f.cycle_duration_s = s.duration.as_secs_f64();
        f.cycle_seconds_total += f.cycle_duration_s;
        f.cycles += 1;
        if s.ok() {
            f.last_success = Some(finished.timestamp());
        }
        if s.error.is_some() {
            *f.errors.entry("token") += 1;
        }
        for e in &s.entities {
            *f.records.entry(&e.kind) += e.records;
            *f.points.entry(&e.kind) += e.points_written;
            if e.error.is_some() {
                let kind = e.error_kind.unwrap_or("other");
                *f.errors.entry(kind) += 1;
            }
            if e.rejected > 0 {
                *f.errors.entry("rejected") += e.rejected;
            }
            if e.future_dated > 0 {
                *f.future_dated.entry(&e.kind) += e.future_dated;
            }
            dropped += e.dropped;
        }
        f.dropped += dropped;
        f.throttled = api.throttled;
        f.token_fetches = api.token_fetches;
        f.token_fallbacks = api.token_fallbacks;
        st.dropped_points += dropped;
        change
    }

    /// The `citrix_harvester` point of one tenant at `at` (seconds precision), or `None` if the
    /// tenant never finished a cycle.
    pub fn point(&self, tenant: &str, sink: &SinkStats, at: DateTime<Utc>) -> Option<Point> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let f = st.tenants.get(tenant)?;
        Some(
            Point::new("citrix_harvester", at.timestamp() * 1_000_000_000)
                .tag("customer", tenant.to_string())
                .tag("customer_id", f.customer_id.clone())
                .field_opt("last_success", f.last_success)
                .field("cycle_duration_s", f.cycle_duration_s)
                .field("records", TenantFigures::sum(&f.records))
                .field("points_written", TenantFigures::sum(&f.points))
                .field("errors", TenantFigures::sum(&f.errors))
                .field("throttled", f.throttled as i64)
                .field("token_fetches", f.token_fetches as i64)
                .field("token_fallbacks", f.token_fallbacks as i64)
                .field("consecutive_failures", i64::from(f.consecutive_failures))
                .field("healthy", i64::from(!self.is_unhealthy(f)))
                .field("spool_bytes", sink.spool_bytes as i64)
                .field("dropped_points", f.dropped as i64)
                .field("dead_letters", sink.dead_letters as i64),
        )
    }

    /// Everything in Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, sink: &SinkStats) -> String {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let t: BTreeMap<&str, &TenantFigures> = st
            .tenants
            .iter()
            .filter(|(_, f)| f.reported())
            .map(|(n, f)| (n.as_str(), f))
            .collect();
        family(
            &mut out,
            "last_success_timestamp_seconds",
            "gauge",
            "Unix time of the tenant's last cycle that delivered everything it read.",
            t.iter().filter_map(|(n, f)| {
                let v = f.last_success?;
                Some((
                    labels(&[("tenant", n), ("customer_id", &f.customer_id)]),
                    v as f64,
                ))
            }),
        );
        family(
            &mut out,
            "cycle_duration_seconds",
            "gauge",
            "Duration of the tenant's last cycle.",
            t.iter()
                .map(|(n, f)| (labels(&[("tenant", n)]), f.cycle_duration_s)),
        );
        family(
            &mut out,
            "cycle_seconds_total",
            "counter",
            "Sum of the durations of the tenant's cycles: its busy time.",
            t.iter()
                .map(|(n, f)| (labels(&[("tenant", n)]), f.cycle_seconds_total)),
        );
        family(
            &mut out,
            "cycles_total",
            "counter",
            "Cycles the tenant finished.",
            t.iter()
                .map(|(n, f)| (labels(&[("tenant", n)]), f.cycles as f64)),
        );
        family(
            &mut out,
            "skipped_runs_total",
            "counter",
            "Runs of a job skipped because a cycle overran the job's interval.",
            t.iter().flat_map(|(n, f)| {
                f.skipped_runs
                    .iter()
                    .map(move |(j, v)| (labels(&[("tenant", n), ("job", j)]), *v as f64))
            }),
        );
        family(
            &mut out,
            "tenant_healthy",
            "gauge",
            "0 when a job of the tenant (or its token) failed harvester.unhealthy_after runs in a row.",
            t.iter().map(|(n, f)| {
                let up = if self.is_unhealthy(f) { 0.0 } else { 1.0 };
                (labels(&[("tenant", n)]), up)
            }),
        );
        family(
            &mut out,
            "consecutive_failed_cycles",
            "gauge",
            "Failed runs in a row of the tenant's worst job (the token counts as a job).",
            t.iter()
                .map(|(n, f)| (labels(&[("tenant", n)]), f64::from(f.consecutive_failures))),
        );
        family(
            &mut out,
            "records_total",
            "counter",
            "Monitor API records read, by tenant and entity kind.",
            t.iter().flat_map(|(n, f)| {
                f.records
                    .iter()
                    .map(move |(e, v)| (labels(&[("tenant", n), ("entity", e)]), *v as f64))
            }),
        );
        family(
            &mut out,
            "points_written_total",
            "counter",
            "Points acknowledged by the sink, by tenant and entity kind.",
            t.iter().flat_map(|(n, f)| {
                f.points
                    .iter()
                    .map(move |(e, v)| (labels(&[("tenant", n), ("entity", e)]), *v as f64))
            }),
        );
        family(
            &mut out,
            "errors_total",
            "counter",
            "Failed cycles steps and rejected records, by tenant and kind.",
            t.iter().flat_map(|(n, f)| {
                f.errors
                    .iter()
                    .map(move |(k, v)| (labels(&[("tenant", n), ("kind", k)]), *v as f64))
            }),
        );
        family(
            &mut out,
            "throttled_total",
            "counter",
            "Monitor API responses with status 429.",
            t.iter()
                .map(|(n, f)| (labels(&[("tenant", n)]), f.throttled as f64)),
        );
        family(
            &mut out,
            "token_fetches_total",
            "counter",
            "Token requests to Citrix Cloud.",
            t.iter()
                .map(|(n, f)| (labels(&[("tenant", n)]), f.token_fetches as f64)),
        );
        family(
            &mut out,
            "token_fallback_total",
            "counter",
            "Tokens obtained from the fallback endpoint.",
            t.iter()
                .map(|(n, f)| (labels(&[("tenant", n)]), f.token_fallbacks as f64)),
        );
        family(
            &mut out,
            "config_last_reload_successful",
            "gauge",
            "1 when the last configuration (re)load succeeded; 0 while the previous configuration stays in force after a failed reload.",
            [(String::new(), if st.reload_failed { 0.0 } else { 1.0 })].into_iter(),
        );
        family(
            &mut out,
            "config_last_reload_success_timestamp_seconds",
            "gauge",
            "Unix time of the last successful configuration load (the start counts).",
            st.reload_success_at
                .map(|t| (String::new(), t as f64))
                .into_iter(),
        );
        family(
            &mut out,
            "future_dated_rows_total",
            "counter",
            "Rows dated past the cycle's start plus 5 minutes (a wrong clock): written, but they do not move the watermark.",
            t.iter().flat_map(|(n, f)| {
                f.future_dated
                    .iter()
                    .map(move |(e, v)| (labels(&[("tenant", n), ("entity", e)]), *v as f64))
            }),
        );
        family(
            &mut out,
            "tenant_panics_total",
            "counter",
            "Times the tenant's task panicked; it is restarted with backoff.",
            t.iter()
                .map(|(n, f)| (labels(&[("tenant", n)]), f.panics as f64)),
        );
        family(
            &mut out,
            "spool_corrupt_bytes_total",
            "counter",
            "Bytes of acknowledged spool records found corrupt or missing on replay (points lost).",
            [(String::new(), sink.spool_corrupt_bytes as f64)].into_iter(),
        );
        family(
            &mut out,
            "spool_bytes",
            "gauge",
            "Bytes waiting in the on-disk spool.",
            [(String::new(), sink.spool_bytes as f64)].into_iter(),
        );
        family(
            &mut out,
            "dropped_points_total",
            "counter",
            "Points given up on (not written, not spooled).",
            [(String::new(), st.dropped_points as f64)].into_iter(),
        );
        family(
            &mut out,
            "dead_letters_total",
            "counter",
            "Lines refused for good by the encoder or the server.",
            [(String::new(), sink.dead_letters as f64)].into_iter(),
        );
        sink_write_metrics(&mut out, sink);
        if let Some(l) = self.limits.get() {
            render_limits(&mut out, l);
        }
        out
    }
}

/// The output's write path: the adaptive concurrency and the coalescing queue.
fn sink_write_metrics(out: &mut String, sink: &SinkStats) {
    let one = |v: u64| [(String::new(), v as f64)].into_iter();
    family(
        out,
        "output_concurrency_limit",
        "gauge",
        "Write requests the output may have in flight now (adaptive: grows while the answer time stays flat, shrinks on timeouts, 429 and 5xx).",
        one(sink.concurrency_limit),
    );
    family(
        out,
        "output_writes_in_flight",
        "gauge",
        "Write requests in flight now.",
        one(sink.writes_in_flight),
    );
    family(
        out,
        "output_write_requests_total",
        "counter",
        "HTTP write attempts sent to the output (each retry counts).",
        one(sink.write_requests),
    );
    family(
        out,
        "output_write_timeouts_total",
        "counter",
        "Write attempts that got no answer within output.timeout (sent again; VictoriaMetrics may then store a sample twice).",
        one(sink.write_timeouts),
    );
    family(
        out,
        "output_queue_bytes",
        "gauge",
        "Bytes of lines waiting for or in a write request (bounded by output.queue_bytes).",
        one(sink.queue_bytes),
    );
}

/// The process-wide limits: requests on the wire and the body budget.
fn render_limits(out: &mut String, l: &Limits) {
    let b = l.budget.snapshot();
    let one = |v: f64| [(String::new(), v)].into_iter();
    let rows: [(&str, &str, &str, f64); 11] = [
        (
            "requests_in_flight",
            "gauge",
            "Monitor requests on the wire now, over all tenants.",
            l.requests_in_flight() as f64,
        ),
        (
            "requests_in_flight_peak",
            "gauge",
            "The most Monitor requests ever on the wire at once.",
            l.peak_requests.load(Ordering::Relaxed) as f64,
        ),
        (
            "requests_in_flight_limit",
            "gauge",
            "harvester.max_requests_in_flight.",
            l.max_requests as f64,
        ),
        (
            "body_budget_bytes",
            "gauge",
            "harvester.body_budget: bytes of page bodies that may be in processing at once.",
            b.total as f64,
        ),
        (
            "body_budget_in_use_bytes",
            "gauge",
            "Bytes of the body budget held now by pages being read, decoded, mapped, encoded or written.",
            b.in_use as f64,
        ),
        (
            "body_budget_peak_bytes",
            "gauge",
            "The most bytes of the body budget ever held at once (never above the budget).",
            b.peak as f64,
        ),
        (
            "body_budget_waits_total",
            "counter",
            "Pages that waited for bytes of the body budget held by other pages.",
            b.waits as f64,
        ),
        (
            "body_budget_refetches_total",
            "counter",
            "Pages read again because their body outgrew the budget free at the time.",
            b.refetches as f64,
        ),
        (
            "body_budget_on_order_bytes",
            "gauge",
            "Bytes that pages asked for and not yet holding their share of the body budget are expected to need.",
            b.on_order as f64,
        ),
        (
            "body_budget_on_order_limit_bytes",
            "gauge",
            "The bound of body_budget_on_order_bytes now: it follows the budget's turnover, between one and 16 times harvester.body_budget.",
            b.order_limit as f64,
        ),
        (
            "body_budget_order_waits_total",
            "counter",
            "Requests that waited before being sent because pages on order had reached their bound.",
            b.order_waits as f64,
        ),
    ];
    for (name, kind, help, v) in rows {
        family(out, name, kind, help, one(v));
    }
}

/// Counts failures per job (and for the token, which every job needs): a job that failed again
/// adds one, a job that ran cleanly clears its count, a job that did not run this cycle (not
/// due, or cut short by shutdown) keeps it. The tenant's figure is its worst job's count, so a
/// job failing every run makes the tenant unhealthy even while its other jobs succeed.
fn update_health(f: &mut TenantFigures, s: &TenantSummary, threshold: u32) -> Option<HealthChange> {
    let before = f.consecutive_failures;
    let mut bump = |job: &str, error: Option<String>| match error {
        Some(e) => {
            let n = f.job_failures.entry(job);
            *n = n.saturating_add(1);
            f.last_error = Some(e);
        }
        None => {
            f.job_failures.remove(job);
        }
    };
    match &s.error {
        Some(e) => bump("token", Some(format!("token: {e}"))),
        None => bump("token", None),
    }
    for e in &s.entities {
        match &e.error {
            Some(m) => bump(&e.kind, Some(format!("{}: {m}", e.kind))),
            None if e.interrupted => {}
            None => bump(&e.kind, None),
        }
    }
    f.consecutive_failures = f.job_failures.values().copied().max().unwrap_or(0);
    if f.consecutive_failures == 0 {
        f.last_error = None;
    }
    let (was, is) = (before >= threshold, f.consecutive_failures >= threshold);
    match (was, is) {
        (false, true) => Some(HealthChange::BecameUnhealthy {
            failures: f.consecutive_failures,
            error: f.last_error.clone().unwrap_or_default(),
        }),
        (true, false) => Some(HealthChange::Recovered {
            after_failures: before,
        }),
        _ => None,
    }
}

const PREFIX: &str = "citrix_harvester_";

/// Writes one metric family: `# HELP`, `# TYPE`, then one sample per label set.
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl Iterator<Item = (String, f64)>,
) {
    let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
    let _ = writeln!(out, "# TYPE {PREFIX}{name} {kind}");
    for (l, v) in samples {
        let _ = writeln!(out, "{PREFIX}{name}{l} {v}");
    }
}

/// `{a="x",b="y"}`, or nothing for no labels.
fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A label value per the text exposition format: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_keep_labels_sorted_and_unique() {
        let mut c: Counts<u64> = Counts::default();
        *c.entry("sessions") += 2;
        *c.entry("connections") += 1;
        *c.entry("sessions") += 3;
        *c.entry("machines") += 7;
        let got: Vec<(String, u64)> = c.iter().map(|(k, v)| (k.clone(), *v)).collect();
        assert_eq!(
            got,
            [
                ("connections".into(), 1),
                ("machines".into(), 7),
                ("sessions".into(), 5)
            ]
        );
        c.remove("machines");
        c.remove("absent");
        assert_eq!(c.values().sum::<u64>(), 6);
        assert_eq!(
            c.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["connections", "sessions"]
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("line\nbreak"), "line\\nbreak");
        assert_eq!(escape_label("Contoso, Ltd. = ok"), "Contoso, Ltd. = ok");
        assert_eq!(
            labels(&[("tenant", "A \"B\""), ("entity", "x")]),
            r#"{tenant="A \"B\"",entity="x"}"#
        );
        assert_eq!(labels(&[]), "");
    }

    #[test]
    fn families_have_help_and_type_before_samples() {
        let m = Metrics::new();
        let text = m.render(&SinkStats {
            spool_bytes: 7,
            ..SinkStats::default()
        });
        assert!(text.contains(
            "# HELP citrix_harvester_spool_bytes Bytes waiting in the on-disk spool.\n\
             # TYPE citrix_harvester_spool_bytes gauge\ncitrix_harvester_spool_bytes 7\n"
        ));
        assert!(text.contains("# TYPE citrix_harvester_dropped_points_total counter\n"));
    }

    #[test]
    fn output_write_figures_are_rendered() {
        let text = Metrics::new().render(&SinkStats {
            concurrency_limit: 5,
            writes_in_flight: 3,
            write_requests: 40,
            write_timeouts: 2,
            queue_bytes: 1234,
            ..SinkStats::default()
        });
        for line in [
            "citrix_harvester_output_concurrency_limit 5\n",
            "citrix_harvester_output_writes_in_flight 3\n",
            "citrix_harvester_output_write_requests_total 40\n",
            "citrix_harvester_output_write_timeouts_total 2\n",
            "citrix_harvester_output_queue_bytes 1234\n",
            "# TYPE citrix_harvester_output_write_timeouts_total counter\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
    }

    /// A tenant registered at start is not shown until its first cycle; then its jobs'
    /// counters (made at registration) carry that cycle's figures.
    #[test]
    fn registered_tenants_show_after_their_first_cycle() {
        let m = Metrics::new();
        m.register("Contoso", "c1", ["machines", "sessions"].into_iter());
        let text = m.render(&SinkStats::default());
        assert!(!text.contains("Contoso"), "shown before a cycle:\n{text}");
        let mut s = summary(false, &[("machines", None), ("sessions", None)]);
        s.entities[0].records = 5;
        m.record(&s, ApiCounts::default(), Utc::now());
        let text = m.render(&SinkStats::default());
        for want in [
            "citrix_harvester_records_total{tenant=\"Contoso\",entity=\"machines\"} 5\n",
            "citrix_harvester_records_total{tenant=\"Contoso\",entity=\"sessions\"} 0\n",
            "citrix_harvester_cycles_total{tenant=\"Contoso\"} 1\n",
        ] {
            assert!(text.contains(want), "{want} not in:\n{text}");
        }
        assert_eq!(
            text.matches("entity=\"machines\"} 5").count(),
            1,
            "one counter per job"
        );
    }

    fn summary(token_error: bool, jobs: &[(&str, Option<&str>)]) -> TenantSummary {
        TenantSummary {
            tenant: "Contoso".into(),
            customer_id: "c1".into(),
            error: token_error.then(|| "regional and fallback token hosts failed".to_string()),
            entities: jobs
                .iter()
                .map(|(k, e)| crate::collect::EntityStats {
                    kind: k.to_string(),
                    error: e.map(str::to_string),
                    ..Default::default()
                })
                .collect(),
            duration: std::time::Duration::from_secs(1),
        }
    }

    fn healthy_field(m: &Metrics) -> String {
        let p = m
            .point("Contoso", &SinkStats::default(), Utc::now())
            .unwrap();
        let mut out = Vec::new();
        crate::lineproto::encode(&p, &mut out).unwrap();
        let line = String::from_utf8(out).unwrap();
        let at = line.find("healthy=").unwrap();
        line[at..].split([',', ' ']).next().unwrap().to_string()
    }

    #[test]
    fn a_tenant_failing_n_times_in_a_row_is_unhealthy_until_a_good_run() {
        let m = Metrics::with_unhealthy_after(3);
        let now = Utc::now();
        let api = ApiCounts::default();
        assert_eq!(m.record(&summary(true, &[]), api, now), None);
        assert_eq!(m.record(&summary(true, &[]), api, now), None);
        assert!(m.unhealthy().is_empty());
        assert_eq!(healthy_field(&m), "healthy=1i");
        let third = m.record(&summary(true, &[]), api, now);
        assert!(
            matches!(&third, Some(HealthChange::BecameUnhealthy { failures: 3, error }) if error.starts_with("token: ")),
            "{third:?}"
        );
        let u = m.unhealthy();
        assert_eq!(u.len(), 1);
        assert_eq!(
            (u[0].tenant.as_str(), u[0].consecutive_failures),
            ("Contoso", 3)
        );
        assert_eq!(healthy_field(&m), "healthy=0i");
        let text = m.render(&SinkStats::default());
        assert!(text.contains("citrix_harvester_tenant_healthy{tenant=\"Contoso\"} 0\n"));
        assert!(
            text.contains("citrix_harvester_consecutive_failed_cycles{tenant=\"Contoso\"} 3\n")
        );
        // Still failing: no second report.
        assert_eq!(m.record(&summary(true, &[]), api, now), None);
        let back = m.record(&summary(false, &[("connections", None)]), api, now);
        assert_eq!(back, Some(HealthChange::Recovered { after_failures: 4 }));
        assert!(m.unhealthy().is_empty());
        assert_eq!(healthy_field(&m), "healthy=1i");
    }

    #[test]
    fn one_job_failing_every_run_makes_the_tenant_unhealthy_while_others_succeed() {
        let m = Metrics::with_unhealthy_after(2);
        let (now, api) = (Utc::now(), ApiCounts::default());
        let bad = summary(
            false,
            &[("machines", None), ("connections", Some("HTTP 500"))],
        );
        let machines_only = summary(false, &[("machines", None)]);
        assert_eq!(m.record(&bad, api, now), None);
        // A cycle where only the other job was due neither counts nor clears the failing job.
        assert_eq!(m.record(&machines_only, api, now), None);
        assert!(matches!(
            m.record(&bad, api, now),
            Some(HealthChange::BecameUnhealthy { failures: 2, .. })
        ));
        assert_eq!(m.unhealthy()[0].last_error, "connections: HTTP 500");
        // Shutdown cutting the failing job short says nothing about it.
        let mut cut = summary(false, &[("connections", None)]);
        cut.entities[0].interrupted = true;
        assert_eq!(m.record(&cut, api, now), None);
        assert_eq!(m.unhealthy().len(), 1);
        let good = summary(false, &[("connections", None)]);
        assert!(matches!(
            m.record(&good, api, now),
            Some(HealthChange::Recovered { after_failures: 2 })
        ));
    }

    #[test]
    fn busy_time_cycles_and_skipped_runs_add_up() {
        let m = Metrics::new();
        let (now, api) = (Utc::now(), ApiCounts::default());
        let mut s = summary(false, &[("machines", None)]);
        s.duration = std::time::Duration::from_millis(1500);
        m.record(&s, api, now);
        s.duration = std::time::Duration::from_millis(2250);
        m.record(&s, api, now);
        m.record_skipped("Contoso", "machines", 2);
        m.record_skipped("Contoso", "machines", 1);
        m.record_skipped("Contoso", "sessions", 4);
        let text = m.render(&SinkStats::default());
        for want in [
            "citrix_harvester_cycle_seconds_total{tenant=\"Contoso\"} 3.75\n",
            "citrix_harvester_cycles_total{tenant=\"Contoso\"} 2\n",
            "citrix_harvester_cycle_duration_seconds{tenant=\"Contoso\"} 2.25\n",
            "citrix_harvester_skipped_runs_total{tenant=\"Contoso\",job=\"machines\"} 3\n",
            "citrix_harvester_skipped_runs_total{tenant=\"Contoso\",job=\"sessions\"} 4\n",
            "# TYPE citrix_harvester_skipped_runs_total counter\n",
        ] {
            assert!(text.contains(want), "{want} not in:\n{text}");
        }
    }

    /// The health dashboard reads losses from the point: a tenant's dropped points add up over
    /// cycles, dead letters are the sink's.
    #[test]
    fn the_point_carries_dropped_points_and_dead_letters() {
        let m = Metrics::new();
        let summary = |dropped| TenantSummary {
            tenant: "Contoso".into(),
            customer_id: "c1".into(),
            error: None,
            entities: vec![crate::collect::EntityStats {
                kind: "machines".into(),
                records: 10,
                points_written: 10 - dropped,
                dropped,
                ..Default::default()
            }],
            duration: std::time::Duration::from_millis(1500),
        };
        let at = DateTime::from_timestamp(1_772_442_000, 0).unwrap();
        m.record(&summary(3), ApiCounts::default(), at);
        m.record(&summary(2), ApiCounts::default(), at);
        let sink = SinkStats {
            dead_letters: 4,
            ..SinkStats::default()
        };
        let p = m.point("Contoso", &sink, at).unwrap();
        let mut line = Vec::new();
        crate::lineproto::encode(&p, &mut line).unwrap();
        let line = String::from_utf8(line).unwrap();
        assert!(line.contains(",dropped_points=5i,"), "{line}");
        assert!(line.contains(",dead_letters=4i "), "{line}");
        assert!(!line.contains("last_success"), "{line}");
        assert!(m.point("Fabrikam", &sink, at).is_none());
    }
}
