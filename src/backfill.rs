//! Backfill: `--once --since <date|duration> [--until <date>]` reads a past range of every
//! incremental job (chosen tenants and entity kinds), oldest first, in windows of
//! `--window`, writing through the ordinary sink. Each window's end is saved per tenant, job
//! and start date after the sink acknowledged it, so an interrupted backfill resumes with the
//! next window when run again with the same `--since`. It never touches the live watermarks
//! (the daemon's own reading goes on as before; points are idempotent, so overlap with it is
//! harmless). Snapshots (machine state, running applications) cannot be read for the past and
//! are skipped. Progress: one bar per tenant on a terminal, a log line every 10 s otherwise.
//! Citrix grooms old rows, so a range older than a job's retention warns before it starts.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use tokio_util::sync::CancellationToken;

use crate::collect::{EntityStats, Env, Window, registry};
use crate::config::Config;
use crate::scheduler::{Harvester, RunError, TenantSummary, drain_spool};

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("--tenant {0}: no tenant of that name in the configuration (names: {1})")]
    UnknownTenant(String, String),
    #[error("--entity {0}: not an entity kind (kinds: {1})")]
    UnknownEntity(String, String),
    #[error("--entity {0}: a snapshot of the present; Citrix keeps no history of it to backfill")]
    Snapshot(String),
    #[error("the range is empty: --since {since} is not before --until {until}")]
    EmptyRange {
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    #[error("--window must be at least one minute")]
    Window,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStyle {
    /// One progress bar per tenant (a terminal).
    Bars,
    /// A log line per tenant every 10 s and at the end (journald, files, CI).
    Log,
}

impl ProgressStyle {
    /// Bars when stderr is a terminal.
    pub fn detect() -> ProgressStyle {
        if std::io::stderr().is_terminal() {
            ProgressStyle::Bars
        } else {
            ProgressStyle::Log
        }
    }
}

#[derive(Debug, Clone)]
pub struct BackfillOptions {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub window: Duration,
    /// Tenant names; empty = every enabled tenant.
    pub tenants: Vec<String>,
    /// Entity kinds (`connections`, `logon_summaries`, ...); empty = every incremental kind
    /// configured for the tenant.
    pub entities: Vec<String>,
    pub progress: ProgressStyle,
}

/// `2026-10-01` (midnight UTC), `2026-10-01T08:00:00Z` (RFC 3339) or a duration before `now`
/// (`14d`, `36h`).
pub fn parse_instant(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    match crate::config::parse_duration(s) {
        Ok(d) => chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .ok_or_else(|| format!("`{s}` reaches before the start of time")),
        Err(_) => Err(format!(
            "`{s}` is neither a date (2026-10-01), a time (2026-10-01T08:00:00Z) \
             nor a duration before now (14d, 36h)"
        )),
    }
}

/// `--since`: like [`parse_instant`], but a duration ago is rounded down to a whole number of
/// `window`s since the Unix epoch (midnight UTC for `1d`), so that the same command run again
/// later the same window resumes the same backfill instead of starting a new one.
pub fn parse_since(s: &str, now: DateTime<Utc>, window: Duration) -> Result<DateTime<Utc>, String> {
    let at = parse_instant(s, now)?;
    let absolute = DateTime::parse_from_rfc3339(s.trim()).is_ok()
        || NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").is_ok();
    let step = window.as_secs() as i64;
    if absolute || step == 0 {
        return Ok(at);
    }
    let secs = at.timestamp().div_euclid(step) * step;
    Ok(DateTime::from_timestamp(secs, 0).unwrap_or(at))
}

/// The windows covering `[from, until)`, each at most `size` long, oldest first.
pub fn windows(from: DateTime<Utc>, until: DateTime<Utc>, size: Duration) -> Vec<Window> {
    let step = chrono::Duration::from_std(size).unwrap_or(chrono::Duration::days(1));
    let mut out = Vec::new();
    let mut t = from;
    while t < until {
        let end = (t + step).min(until);
        out.push(Window {
            from: t,
            until: end,
        });
        t = end;
    }
    out
}

/// The name under which a job's backfill progress from `since` is saved (next to the live
/// watermarks, written the same atomic way). Keyed by `since` only: the saved value is the end
/// of the last delivered window, so `[since, saved)` is done whatever `--until` was.
pub fn progress_key(job: &str, since: DateTime<Utc>) -> String {
    format!("backfill_{job}_{}", since.format("%Y%m%dT%H%M%SZ"))
}

/// How many days Citrix keeps a job's rows at most, and the grooming setting that says so
/// (citrix-monitor-api.md §6.2: on-premises defaults with Premium/Platinum licensing, the
/// longest there is; Citrix DaaS's own values are not verified, so this only warns).
pub fn retention_days(job: &str) -> Option<(u32, &'static str)> {
    let granularity = job
        .rsplit_once('_')
        .and_then(|(_, g)| g.parse::<u32>().ok());
    let kind = registry::KINDS
        .iter()
        .filter(|k| job == **k || job.starts_with(&format!("{k}_")))
        .max_by_key(|k| k.len())?;
    Some(match (*kind, granularity) {
        ("resource_utilization_summary", Some(10)) => {
            (7, "GroomResourceUsageMinuteDataRetentionDays")
        }
        ("resource_utilization_summary", Some(60)) => {
            (30, "GroomResourceUsageHourDataRetentionDays")
        }
        ("resource_utilization_summary", _) => (90, "GroomResourceUsageDayDataRetentionDays"),
        (k, Some(1)) if k.ends_with("_summaries") => (3, "GroomMinuteRetentionDays"),
        (k, Some(60)) if k.ends_with("_summaries") => (32, "GroomHourlyRetentionDays"),
        (k, Some(_)) if k.ends_with("_summaries") => (90, "GroomSummariesRetentionDays"),
        ("connections" | "sessions", _) => (90, "GroomSessionsRetentionDays"),
        ("connection_failures" | "machine_failures", _) => (90, "GroomFailuresRetentionDays"),
        ("load_indexes", _) => (90, "GroomLoadIndexesRetentionDays"),
        ("resource_utilization" | "machine_metric", _) => {
            (1, "GroomResourceUsageRawDataRetentionDays")
        }
        ("session_metrics", _) => (7, "GroomSessionMetricsDataRetentionDays"),
        ("hotfixes", _) => (90, "GroomMachineHotfixLogRetentionDays"),
        ("application_instances", _) => (90, "GroomApplicationInstanceRetentionDays"),
        _ => return None,
    })
}

/// Runs the backfill; returns one summary per selected tenant (entities = jobs, their figures
/// summed over the windows). Stops a job at its first failed window: the next run resumes there.
pub async fn run(
    cfg: &Config,
    opts: &BackfillOptions,
    shutdown: CancellationToken,
) -> Result<Vec<TenantSummary>, BackfillError> {
    if opts.since >= opts.until {
        return Err(BackfillError::EmptyRange {
            since: opts.since,
            until: opts.until,
        });
    }
    if opts.window < Duration::from_secs(60) {
        return Err(BackfillError::Window);
    }
    let names: Vec<&str> = cfg.tenants.iter().map(|t| t.name.as_str()).collect();
    for t in &opts.tenants {
        if !names.contains(&t.as_str()) {
            return Err(BackfillError::UnknownTenant(t.clone(), names.join(", ")));
        }
    }
    for e in &opts.entities {
        if !registry::KINDS.contains(&e.as_str()) {
            return Err(BackfillError::UnknownEntity(
                e.clone(),
                registry::KINDS.join(", "),
            ));
        }
        if registry::jobs(e)
            .iter()
            .all(|(j, _)| j.watermark_field().is_none())
        {
            return Err(BackfillError::Snapshot(e.clone()));
        }
    }

    let h = Arc::new(Harvester::new(cfg)?);
    let selected: Vec<usize> = (0..h.tenants.len())
        .filter(|i| opts.tenants.is_empty() || opts.tenants.contains(&h.tenants[*i].cfg.name))
        .collect();
    warn_about_retention(&h, &selected, opts);
    tracing::info!(tenants = selected.len(), since = %opts.since, until = %opts.until,
        window_s = opts.window.as_secs(), sink = %h.sink().describe(), "Backfill starting.");

    let replay_stop = shutdown.child_token();
    let replay = h.sink().start_replay(replay_stop.clone());
    let bars = (opts.progress == ProgressStyle::Bars).then(indicatif::MultiProgress::new);
    let mut set = tokio::task::JoinSet::new();
    for &i in &selected {
        let (h, opts, cancel) = (h.clone(), opts.clone(), shutdown.clone());
        let bar = bars.as_ref().map(|m| {
            let b = m.add(indicatif::ProgressBar::new(0));
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:<24!} [{bar:30}] {pos:>5}/{len:5} windows {elapsed_precise} {wide_msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_prefix(h.tenants[i].cfg.name.clone());
            b
        });
        let entities = opts.entities.clone();
        set.spawn(async move {
            let s = backfill_tenant(&h, i, &opts, &entities, bar, &cancel).await;
            (i, s)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(x) => out.push(x),
            Err(e) => tracing::error!(error = %e, "A backfill task panicked."),
        }
    }
    out.sort_by_key(|(i, _)| *i);
    if replay.is_some() {
        drain_spool(h.sink(), cfg.output.retry_max_elapsed, &shutdown).await;
    }
    replay_stop.cancel();
    if let Some(r) = replay {
        let _ = r.await;
    }
    Ok(out.into_iter().map(|(_, s)| s).collect())
}

/// Whether a job takes part: incremental, and of a chosen kind (a summary kind selects all its
/// granularities).
fn chosen(job: &dyn crate::collect::Job, entities: &[String]) -> bool {
    let name = job.name();
    job.watermark_field().is_some()
        && (entities.is_empty()
            || entities.iter().any(|k| {
                name == *k
                    || name
                        .strip_prefix(k.as_str())
                        .and_then(|r| r.strip_prefix('_'))
                        .is_some_and(|g| g.parse::<u32>().is_ok())
            }))
}

fn warn_about_retention(h: &Harvester, selected: &[usize], opts: &BackfillOptions) {
    let now = Utc::now();
    let mut warned = BTreeSet::new();
    for &i in selected {
        for s in &h.tenants[i].jobs {
            let name = s.job.name();
            if !chosen(s.job.as_ref(), &opts.entities) || warned.contains(&name) {
                continue;
            }
            if let Some((days, setting)) = retention_days(&name) {
                let kept_from = now - chrono::Duration::days(i64::from(days));
                if opts.since < kept_from {
                    tracing::warn!(entity = %name, since = %opts.since, kept_from = %kept_from.trunc_subsecs(0),
                        retention_days = days, setting,
                        "The range starts before the oldest data Citrix keeps for this entity \
                         (at most {days} days, {setting}); the older part will come back empty.");
                    warned.insert(name);
                }
            }
        }
    }
}

struct Progress {
    bar: Option<indicatif::ProgressBar>,
    done: u64,
    total: u64,
    last_log: tokio::time::Instant,
}

impl Progress {
    fn step(&mut self, tenant: &str, job: &str, w: &Window, records: u64) {
        self.done += 1;
        match &self.bar {
            Some(b) => {
                b.inc(1);
                b.set_message(format!("{job} {}", w.until.format("%Y-%m-%d %H:%M")));
            }
            None => {
                if self.last_log.elapsed() >= Duration::from_secs(10) || self.done == self.total {
                    self.last_log = tokio::time::Instant::now();
                    tracing::info!(tenant, entity = job, windows_done = self.done, windows = self.total,
                        percent = (self.done * 100).checked_div(self.total).unwrap_or(100),
                        up_to = %w.until, records, "Backfill progress.");
                }
            }
        }
    }
}

async fn backfill_tenant(
    h: &Harvester,
    i: usize,
    opts: &BackfillOptions,
    entities: &[String],
    bar: Option<indicatif::ProgressBar>,
    cancel: &CancellationToken,
) -> TenantSummary {
    let started = tokio::time::Instant::now();
    let t = &h.tenants[i];
    let (ctx, mut summary) = t.begin();
    if let Err(e) = t.client.ready().await {
        tracing::error!(tenant = %t.cfg.name, error = %e, "No token: this tenant is not backfilled.");
        summary.error = Some(e.to_string());
        if let Some(b) = bar {
            b.abandon_with_message("FAILED: no token");
        }
        return summary;
    }
    let jobs: Vec<_> = t
        .jobs
        .iter()
        .map(|s| s.job.as_ref())
        .filter(|j| chosen(*j, entities))
        .collect();
    let total = jobs.len() as u64 * windows(opts.since, opts.until, opts.window).len() as u64;
    if let Some(b) = &bar {
        b.set_length(total);
    }
    let mut progress = Progress {
        bar,
        done: 0,
        total,
        last_log: tokio::time::Instant::now(),
    };
    'jobs: for job in jobs {
        let name = job.name();
        let key = progress_key(&name, opts.since);
        let mut stats = EntityStats {
            kind: name.clone(),
            ..Default::default()
        };
        let done = match h.checkpoints.load(&t.cfg.customer_id, &key) {
            Ok(d) => d.map(|w| w.watermark),
            Err(e) => {
                stats.error = Some(e.to_string());
                stats.error_kind = Some("checkpoint");
                summary.entities.push(stats);
                continue;
            }
        };
        let all = windows(opts.since, opts.until, opts.window);
        let resume_at = done.unwrap_or(opts.since);
        if done.is_some() {
            tracing::info!(tenant = %t.cfg.name, entity = %name, done_until = %resume_at,
                "Resuming the backfill after the last delivered window.");
        }
        for w in all {
            if w.until <= resume_at {
                progress.step(&t.cfg.name, &name, &w, stats.records);
                continue;
            }
            // A window cut by an earlier run's different --window starts where that run stopped.
            let w = Window {
                from: w.from.max(resume_at),
                until: w.until,
            };
            if cancel.is_cancelled() {
                stats.interrupted = true;
                summary.entities.push(stats);
                break 'jobs;
            }
            let env = Env {
                client: &t.client,
                sink: h.sink(),
                checkpoints: &h.checkpoints,
                settings: &h.settings,
                window: Some(w),
            };
            let s = job.run(&env, &ctx, cancel).await;
            stats.pages += s.pages;
            stats.records += s.records;
            stats.points_written += s.points_written;
            stats.rejected += s.rejected;
            stats.dropped += s.dropped;
            stats.spooled += s.spooled;
            stats.watermark = s.watermark.or(stats.watermark);
            if let Some(e) = s.error {
                stats.error = Some(format!("window {} .. {}: {e}", w.from, w.until));
                stats.error_kind = s.error_kind;
                break;
            }
            if s.interrupted {
                stats.interrupted = true;
                summary.entities.push(stats);
                break 'jobs;
            }
            // Delivered (or spooled, or refused for good and dead-lettered): never read again.
            if let Err(e) = h.checkpoints.save(&t.cfg.customer_id, &key, w.until) {
                stats.error = Some(e.to_string());
                stats.error_kind = Some("checkpoint");
                break;
            }
            progress.step(&t.cfg.name, &name, &w, stats.records);
        }
        summary.entities.push(stats);
    }
    summary.duration = started.elapsed();
    if let Some(b) = &progress.bar {
        if summary.ok() {
            b.finish_with_message("done");
        } else {
            b.abandon_with_message("incomplete: see the summary");
        }
    }
    tracing::info!(tenant = %summary.tenant, ok = summary.ok(),
        records = summary.entities.iter().map(|e| e.records).sum::<u64>(),
        duration_ms = summary.duration.as_millis() as u64, "Backfill of tenant finished.");
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap()
    }

    #[test]
    fn instants_are_dates_times_or_durations_before_now() {
        let now = at(23, 12);
        assert_eq!(parse_instant("2026-11-01", now).unwrap(), at(1, 0));
        assert_eq!(
            parse_instant("2026-11-01T08:00:00+02:00", now).unwrap(),
            at(1, 6)
        );
        assert_eq!(parse_instant("14d", now).unwrap(), at(9, 12));
        assert_eq!(parse_instant("36h", now).unwrap(), at(22, 0));
        let e = parse_instant("last tuesday", now).unwrap_err();
        assert!(e.contains("neither a date"), "{e}");
    }

    #[test]
    fn a_relative_since_is_aligned_to_the_window_so_a_rerun_resumes() {
        let day = Duration::from_secs(86_400);
        let a = parse_since("14d", at(23, 12), day).unwrap();
        let b = parse_since("14d", at(23, 18), day).unwrap();
        assert_eq!((a, b), (at(9, 0), at(9, 0)));
        assert_eq!(
            parse_since("36h", at(23, 12), Duration::from_secs(6 * 3600)).unwrap(),
            at(22, 0)
        );
        // Absolute dates are taken as given.
        let exact = Utc.with_ymd_and_hms(2026, 11, 1, 7, 30, 0).unwrap();
        assert_eq!(
            parse_since("2026-11-01T07:30:00Z", at(23, 12), day).unwrap(),
            exact
        );
    }

    #[test]
    fn windows_cover_the_range_oldest_first_without_gaps() {
        let w = windows(at(1, 0), at(3, 12), Duration::from_secs(86_400));
        assert_eq!(w.len(), 3);
        assert_eq!((w[0].from, w[0].until), (at(1, 0), at(2, 0)));
        assert_eq!((w[2].from, w[2].until), (at(3, 0), at(3, 12)));
        for p in w.windows(2) {
            assert_eq!(p[0].until, p[1].from);
        }
        assert!(windows(at(2, 0), at(1, 0), Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn retention_follows_the_grooming_defaults() {
        assert_eq!(retention_days("connections").unwrap().0, 90);
        assert_eq!(retention_days("logon_summaries_1").unwrap().0, 3);
        assert_eq!(retention_days("logon_summaries_60").unwrap().0, 32);
        assert_eq!(retention_days("logon_summaries_1440").unwrap().0, 90);
        assert_eq!(
            retention_days("resource_utilization_summary_10").unwrap().0,
            7
        );
        assert_eq!(retention_days("resource_utilization").unwrap().0, 1);
        assert_eq!(retention_days("session_metrics").unwrap().0, 7);
        // Every incremental job has a figure.
        for kind in registry::KINDS {
            for (job, _) in registry::jobs(kind) {
                if job.watermark_field().is_some() {
                    assert!(retention_days(&job.name()).is_some(), "{}", job.name());
                }
            }
        }
    }

    #[test]
    fn progress_is_keyed_by_job_and_start() {
        assert_eq!(
            progress_key("connections", at(1, 0)),
            "backfill_connections_20261101T000000Z"
        );
    }
}
