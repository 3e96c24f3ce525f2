//! Collectors: one per entity kind (see the submodules), each saying what to query, which field
//! is its watermark and how a record becomes points. This file holds what they share: the
//! page loop that fetches, maps, hands points to the sink and — only after the sink has
//! acknowledged every page — moves the watermark (DESIGN.md rule 2). It never encodes line
//! protocol and never talks HTTP itself.

pub mod application_instances;
pub mod application_usage;
pub mod connection_failures;
pub mod connections;
pub mod failure_log_summaries;
pub mod hotfixes;
pub mod load_index_summaries;
pub mod load_indexes;
pub mod logon_summaries;
pub mod machine_failures;
pub mod machine_metric;
pub mod machine_summaries;
pub mod machines;
pub mod registry;
pub mod resource_utilization;
pub mod resource_utilization_summary;
pub mod session_activity_summaries;
pub mod session_metrics;
pub mod sessions;
pub mod summary;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Checkpoints;
use crate::citrix::client::{MonitorClient, MonitorError, MonitorErrorKind};
use crate::citrix::model::Page;
use crate::citrix::odata::{PageGuard, Query};
use crate::lineproto::PointOf;
use crate::sink::Sink;

/// What a collector knows about the tenant and the cycle it runs in.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub customer: String,
    pub customer_id: String,
    /// Start of this cycle: the timestamp of snapshot points.
    pub cycle_time: DateTime<Utc>,
}

/// Why a record produced no point. Counted as rejected and logged; the harvest goes on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MapError(pub String);

/// What a collector needs from the harvester: the tenant's client, the shared sink, the
/// checkpoint store, the loop settings and, for a backfill, the window to read.
pub struct Env<'a> {
    pub client: &'a MonitorClient,
    pub sink: &'a Sink,
    pub checkpoints: &'a Checkpoints,
    pub settings: &'a LoopSettings,
    /// `Some` for a backfill: read exactly `[from, until)` of the watermark field and leave the
    /// live watermark alone (the backfill keeps its own progress).
    pub window: Option<Window>,
}

/// A backfill window: rows whose watermark field is in `[from, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

pub trait Collector: Send + Sync {
    /// One row of the entity set. It may borrow text from the page body (`'de`): the walk keeps
    /// the body until the page is mapped, so text without escapes is never allocated at decode.
    /// Owned records implement `Deserialize<'de>` for every `'de`.
    type Record<'de>: Deserialize<'de> + Send;
    /// Lookups fetched once per run before the walk (e.g. failure code → category).
    type State: Default + Send + Sync;

    /// The job's name in checkpoints, stats and logs (`connections`, `logon_summaries_60`).
    fn name(&self) -> String;
    /// The OData entity set (`Connections`); case-sensitive.
    fn entity_set(&self) -> &'static str;
    /// Incremental collectors filter on this field (`ModifiedDate`, `CollectedDate`,
    /// `SummaryDate`); snapshots have none.
    fn watermark_field(&self) -> Option<&'static str>;
    /// How much before the saved watermark each walk re-reads.
    fn overlap(&self, default: std::time::Duration) -> std::time::Duration {
        default
    }
    /// The query; `since` is `Some` for incremental collectors.
    fn query(&self, since: Option<DateTime<Utc>>) -> Query;
    /// A stable key of the record, to notice a row seen twice in one walk.
    fn key(&self, r: &Self::Record<'_>) -> Option<String>;
    /// A hash of [`Collector::key`] for the seen-twice check of the walk. Collectors with a
    /// numeric key override it to hash the number, which spares a `String` per record; it only
    /// has to be the same for the same row within one walk.
    fn key_hash(&self, r: &Self::Record<'_>) -> Option<u64> {
        self.key(r).map(|k| key_hash(&k))
    }
    /// The record's watermark value.
    fn watermark(&self, r: &Self::Record<'_>) -> Option<DateTime<Utc>>;
    /// Fetches what `map` needs besides the record (default: nothing).
    fn prepare(
        &self,
        _client: &MonitorClient,
    ) -> impl std::future::Future<Output = Result<Self::State, MonitorError>> + Send {
        async { Ok(Self::State::default()) }
    }
    /// Record → points (appended to `out`). The points may borrow text from the record, its
    /// state and the context (`'r`); a collector that copies instead may declare
    /// `out: &mut Vec<PointOf<'_>>` and push owned points.
    fn map<'r>(
        &self,
        r: &'r Self::Record<'_>,
        state: &'r Self::State,
        ctx: &'r Ctx,
        out: &mut Vec<PointOf<'r>>,
    ) -> Result<(), MapError>;
    /// Points computed over the whole walk (aggregates), written after its last page.
    fn finish(&self, _state: &Self::State, _ctx: &Ctx, _out: &mut Vec<PointOf<'_>>) {}
}

/// A collector with its record type erased, so a tenant can hold a list of jobs.
pub trait Job: Send + Sync {
    fn name(&self) -> String;
    /// The field incremental jobs filter on; `None` for snapshots (which cannot be backfilled).
    fn watermark_field(&self) -> Option<&'static str>;
    fn run<'a>(
        &'a self,
        env: &'a Env<'a>,
        ctx: &'a Ctx,
        cancel: &'a CancellationToken,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = EntityStats> + Send + 'a>>;
}

impl<C: Collector> Job for C {
    fn name(&self) -> String {
        Collector::name(self)
    }

    fn watermark_field(&self) -> Option<&'static str> {
        Collector::watermark_field(self)
    }

    fn run<'a>(
        &'a self,
        env: &'a Env<'a>,
        ctx: &'a Ctx,
        cancel: &'a CancellationToken,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = EntityStats> + Send + 'a>> {
        Box::pin(harvest(self, env, ctx, cancel))
    }
}

/// What one entity kind did in one cycle.
#[derive(Debug, Clone, Default)]
pub struct EntityStats {
    pub kind: String,
    pub pages: u64,
    pub records: u64,
    pub points_written: u64,
    /// Records that could not be mapped plus lines the sink refused.
    pub rejected: u64,
    /// Points the sink gave up on.
    pub dropped: u64,
    /// Points kept in the on-disk spool because the server was away (durable, replayed later).
    pub spooled: u64,
    pub watermark: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub error_kind: Option<&'static str>,
    /// Stopped early by shutdown (the watermark did not move).
    pub interrupted: bool,
    /// Rows dated past the cycle's start plus [`MAX_CLOCK_SKEW`] (written, counted, logged;
    /// they do not move the watermark).
    pub future_dated: u64,
    /// Logon durations written (for the demo's p50/p95); empty for other kinds.
    pub logon_ms: Vec<u32>,
}

/// What one tenant's cycle did.
#[derive(Debug, Clone)]
pub struct TenantSummary {
    pub tenant: String,
    pub customer_id: String,
    /// A failure before any entity ran (no token).
    pub error: Option<String>,
    pub entities: Vec<EntityStats>,
    pub duration: std::time::Duration,
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

    pub(crate) fn total(&self, f: impl Fn(&EntityStats) -> u64) -> u64 {
        self.entities.iter().map(f).sum()
    }
}

/// Settings of the page loop.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    pub lookback: std::time::Duration,
    pub overlap: std::time::Duration,
}

/// Fetches every page of a small query (lookup tables such as failure categories).
pub async fn fetch_all<T: DeserializeOwned>(
    client: &MonitorClient,
    label: &str,
    query: &Query,
) -> Result<Vec<T>, MonitorError> {
    let first = query.url(client.base_url());
    let mut guard = PageGuard::new(&first, client.max_pages);
    let mut next = Some(first);
    let mut out = Vec::new();
    while let Some(url) = next.take() {
        let body = client.get(label, &url).await?;
        let page: Page<T> = serde_json::from_slice(&body).map_err(|e| {
            client.error(
                label,
                &url,
                MonitorErrorKind::Decode(format!(
                    "{e}; body starts: {}",
                    crate::citrix::client::snippet(&body)
                )),
            )
        })?;
        out.extend(page.value);
        if let Some(link) = page.next_link {
            guard
                .next(&link)
                .map_err(|e| client.error(label, &url, e))?;
            next = Some(link);
        }
    }
    Ok(out)
}

/// Runs one collector for one tenant: query, page through, map, write, then checkpoint.
pub async fn harvest<C: Collector>(
    c: &C,
    env: &Env<'_>,
    ctx: &Ctx,
    cancel: &CancellationToken,
) -> EntityStats {
    let mut stats = EntityStats {
        kind: c.name(),
        ..Default::default()
    };
    if let Err((kind, e)) = walk(c, env, ctx, cancel, &mut stats).await {
        tracing::error!(tenant = %ctx.customer, entity = %stats.kind, error = %e,
            "Harvest of this entity failed; its watermark did not move and it is read again next cycle.");
        stats.error = Some(e);
        stats.error_kind = Some(kind);
    }
    stats
}

async fn walk<C: Collector>(
    c: &C,
    env: &Env<'_>,
    ctx: &Ctx,
    cancel: &CancellationToken,
    stats: &mut EntityStats,
) -> Result<(), (&'static str, String)> {
    let name = stats.kind.clone();
    let client = env.client;
    let since = match c.watermark_field() {
        None => None,
        Some(_) if env.window.is_some() => env.window.map(|w| w.from),
        Some(_) => {
            let saved = env
                .checkpoints
                .load(&ctx.customer_id, &name)
                .map_err(|e| ("checkpoint", e.to_string()))?;
            let overlap = c.overlap(env.settings.overlap);
            let horizon = ctx.cycle_time.checked_add_signed(MAX_CLOCK_SKEW);
            let (from, back) = match saved {
                Some(w) if horizon.is_some_and(|h| w.watermark > h) => {
                    // Saved by a version that let a future-dated row set it: it would hide
                    // every new row. Start over from the lookback (points are idempotent).
                    tracing::warn!(tenant = %ctx.customer, entity = %name, saved = %w.watermark,
                        "Saved watermark is in the future; reading from harvester.lookback again.");
                    (ctx.cycle_time, env.settings.lookback)
                }
                Some(w) => (w.watermark, overlap),
                None => (ctx.cycle_time, env.settings.lookback),
            };
            Some(minus(from, back).ok_or_else(|| {
                let e = format!("cannot go back {back:?} from {from}: out of the date range");
                ("config", e)
            })?)
        }
    };
    let state = c
        .prepare(client)
        .await
        .map_err(|e| (e.kind.label(), e.to_string()))?;
    let mut query = c.query(since);
    if let (Some(w), Some(field)) = (env.window, c.watermark_field()) {
        let upper = format!(
            "{field} lt {}",
            crate::citrix::odata::datetime_literal(w.until)
        );
        query.filter = Some(match query.filter.take() {
            Some(f) => format!("{f} and {upper}"),
            None => upper,
        });
    }
    let first = query.url(client.base_url());
    let mut guard = PageGuard::new(&first, client.max_pages);
    let mut next = Some(first);
    // Key → watermark value at first sight. A row seen twice in one walk was modified while we
    // paged; the `$skip` of later pages then shifted by one and a row may have been skipped, so
    // the watermark must not pass the first sighting (it is re-read next cycle; points are
    // idempotent, so the re-read costs nothing but time).
    let incremental = c.watermark_field().is_some();
    let mut marks = WalkMarks {
        horizon: incremental
            .then(|| ctx.cycle_time.checked_add_signed(MAX_CLOCK_SKEW))
            .flatten(),
        ..Default::default()
    };
    let is_logon = name == "connections";

    while let Some(url) = next.take() {
        if cancel.is_cancelled() {
            stats.interrupted = true;
            return Ok(());
        }
        // The page's share of the body budget stays ours until the sink has acknowledged its
        // points, so pages in memory are bounded by harvester.body_budget, not by tenants ×
        // page size when the sink is slower than Citrix. It is given back before the next
        // page is requested: nobody waits for budget while holding some.
        // Shutdown cuts a request or its backoff short: nothing of this page was acknowledged,
        // so the watermark stays and the page is read again next start.
        let fetched = tokio::select! {
            r = client.get_page(&name, &url) => r,
            _ = cancel.cancelled() => {
                stats.interrupted = true;
                return Ok(());
            }
        };
        let (body, reservation) = fetched.map_err(|e| (e.kind.label(), e.to_string()))?;
        // Records borrow from the body and points from the records, so body, records and
        // points live in this block (no await inside): the points are encoded here and only
        // the lines (about a third of their memory, no copy of any text) wait for the server.
        let (encoded, bad, map_errors, next_link) = {
            let page = decode_page::<C::Record<'_>>(&body).map_err(|e| {
                let err = client.error(&name, &url, MonitorErrorKind::Decode(e));
                ("decode", err.to_string())
            })?;
            let mut points = Vec::with_capacity(page.value.len());
            marks.page_begins(page.next_link.is_none());
            let errors = map_page(c, &page.value, &state, ctx, Some(&mut marks), &mut points);
            stats.records += page.value.len() as u64;
            if is_logon {
                collect_logon_ms(&points, &mut stats.logon_ms);
            }
            let encoded = env.sink.encode(&points);
            marks.page_mapped();
            (encoded, page.bad, errors, page.next_link)
        };
        drop(body);
        for (index, why) in &bad {
            stats.rejected += 1;
            tracing::warn!(tenant = %ctx.customer, entity = %name, url = %url, index, error = %why,
                "Record skipped: it does not have the expected shape.");
        }
        stats.pages += 1;
        stats.records += bad.len() as u64;
        note_future_rows(&marks.page, ctx, &name, &url, stats);
        for e in map_errors {
            stats.rejected += 1;
            tracing::warn!(tenant = %ctx.customer, entity = %name, url = %url, error = %e,
                "Record skipped: it cannot be mapped to a point.");
        }
        let origin = crate::sink::Origin {
            tenant: &ctx.customer,
            entity: &name,
        };
        let report = env
            .sink
            .write_encoded(encoded, Some(origin))
            .await
            .map_err(|e| {
                (
                    "sink",
                    format!("tenant {}, entity {name}: {e}", ctx.customer),
                )
            })?;
        drop(reservation);
        stats.points_written += report.written as u64;
        stats.rejected += report.rejected as u64;
        stats.dropped += report.dropped as u64;
        stats.spooled += report.spooled as u64;

        if let Some(link) = next_link {
            let p = &marks.page;
            // A next page after one that brought nothing new: the service is paging in a loop
            // (a nextLink back to the start with one parameter changed, say). A last page of
            // repeats is harmless: rows modified while paging, and the walk ends anyway.
            let looping = stats.pages > 1 && p.keyed > 0 && p.repeated == p.keyed;
            let checked = match looping {
                true => Err(crate::citrix::odata::PagingError::OnlyRepeats {
                    page: stats.pages as usize,
                    rows: p.repeated,
                }),
                false => guard.next(&link),
            };
            checked.map_err(|e| ("paging", client.error(&name, &url, e).to_string()))?;
            next = Some(link);
        }
    }

    let mut points = Vec::new();
    c.finish(&state, ctx, &mut points);
    if !points.is_empty() {
        let report = env.sink.write(&points).await.map_err(|e| {
            (
                "sink",
                format!("tenant {}, entity {name}: {e}", ctx.customer),
            )
        })?;
        stats.points_written += report.written as u64;
        stats.rejected += report.rejected as u64;
        stats.dropped += report.dropped as u64;
        stats.spooled += report.spooled as u64;
    }

    if incremental && env.window.is_some() {
        // A backfill window never moves the live watermark; its driver records the progress.
        stats.watermark = marks.max_seen;
    } else if incremental {
        let new = match (marks.max_seen, marks.cap) {
            (Some(m), Some(c)) => Some(m.min(c)),
            (m, None) => m,
            (None, Some(c)) => Some(c),
        };
        // Never ahead of the clock: a row dated in the future must not hide what comes later.
        let new = min_opt(new, marks.horizon);
        if let (Some(new), Some(since)) = (new, since) {
            // Never move backwards past where this walk started reading.
            let new = new.max(since);
            env.checkpoints
                .save(&ctx.customer_id, &name, new)
                .map_err(|e| ("checkpoint", e.to_string()))?;
            stats.watermark = Some(new);
        }
    }
    Ok(())
}

/// How far past the cycle's start a row may be dated before it counts as dated in the future
/// (a VDA or controller with a wrong clock); the watermark never passes this.
pub const MAX_CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// `t - d`, or `None` when that leaves chrono's date range.
fn minus(t: DateTime<Utc>, d: std::time::Duration) -> Option<DateTime<Utc>> {
    t.checked_sub_signed(chrono::TimeDelta::from_std(d).ok()?)
}

/// What the walk noticed on one page.
#[derive(Debug, Default)]
pub struct PageMarks {
    /// Rows that have a key, and of those, rows this walk had read before.
    pub keyed: usize,
    pub repeated: usize,
    /// Rows whose watermark field is past the horizon, and the latest such date.
    pub future: u64,
    pub latest_future: Option<DateTime<Utc>>,
}

/// Counts and logs a page's rows dated in the future: they are written (they are real rows),
/// but they do not move the watermark.
fn note_future_rows(p: &PageMarks, ctx: &Ctx, entity: &str, url: &str, stats: &mut EntityStats) {
    if p.future == 0 {
        return;
    }
    stats.future_dated += p.future;
    tracing::warn!(tenant = %ctx.customer, entity, url, rows = p.future,
        latest = ?p.latest_future, cycle_start = %ctx.cycle_time,
        "Rows dated in the future (a wrong clock on a VDA or controller?): written, but the \
         watermark does not follow them.");
}

/// What a walk remembers across its pages to place the new watermark and to notice a loop.
#[derive(Debug, Default)]
pub struct WalkMarks {
    /// The latest watermark a row may set (the cycle's start plus [`MAX_CLOCK_SKEW`]).
    pub horizon: Option<DateTime<Utc>>,
    /// The page being mapped.
    pub page: PageMarks,
    /// Hash of the key → watermark value at first sight (see `walk`). A hash keeps a long
    /// walk's memory small; a collision can only make a row look seen twice, which caps the
    /// watermark lower (a re-read), never higher.
    seen: HashMap<u64, Option<DateTime<Utc>>>,
    /// The watermark must not pass this: a row seen twice was first seen here.
    cap: Option<DateTime<Utc>>,
    /// Highest watermark value read.
    max_seen: Option<DateTime<Utc>>,
    /// The page being mapped is the walk's last: its keys are compared with the earlier
    /// pages' but not kept (no page follows to compare with them), so that a walk of one
    /// page, most of a steady state's, builds no key map at all.
    last: bool,
}

impl WalkMarks {
    /// A page is about to be mapped; `last`: no page follows it.
    pub fn page_begins(&mut self, last: bool) {
        self.page = PageMarks::default();
        self.last = last;
    }

    /// Notes a row's key (its hash) and watermark value; true if this walk read the key
    /// before (the watermark is then capped at its first sighting).
    fn note_key(&mut self, hash: u64, wm: Option<DateTime<Utc>>) -> bool {
        self.page.keyed += 1;
        if let Some(first_wm) = self.seen.get(&hash) {
            self.page.repeated += 1;
            self.cap = min_opt(self.cap, *first_wm);
            return true;
        }
        if !self.last {
            self.seen.insert(hash, wm);
        }
        false
    }

    /// A page was mapped. After the last one the keys are never looked at again: they go at
    /// once rather than while the page's points wait for the output (a few hundred tenants in
    /// a cycle each held tens of KB of them, measured by a heap profile).
    fn page_mapped(&mut self) {
        if self.last {
            self.seen = HashMap::new();
        }
    }
}

/// The CPU work of one decoded page: maps every record into `points` (appended) and, for an
/// incremental walk (`marks`), notes keys and watermark values. Returns the errors of the
/// records that produced no point (their partial points are removed). The harvest walk calls
/// it for every page; the benchmarks call it to measure the same path.
pub fn map_page<'r, C: Collector>(
    c: &C,
    records: &'r [C::Record<'_>],
    state: &'r C::State,
    ctx: &'r Ctx,
    mut marks: Option<&mut WalkMarks>,
    points: &mut Vec<PointOf<'r>>,
) -> Vec<MapError> {
    let mut errors = Vec::new();
    for r in records {
        if let Some(m) = marks.as_deref_mut() {
            let mut wm = c.watermark(r);
            if let (Some(w), Some(h)) = (wm, m.horizon)
                && w > h
            {
                m.page.future += 1;
                m.page.latest_future = max_opt(m.page.latest_future, wm);
                wm = None;
            }
            if let Some(hash) = c.key_hash(r)
                && m.note_key(hash, wm)
            {
                tracing::debug!(tenant = %ctx.customer, entity = %c.name(), key = c.key(r),
                    "Row seen twice in one walk (modified while paging).");
            }
            m.max_seen = max_opt(m.max_seen, wm);
        }
        let before = points.len();
        if let Err(e) = c.map(r, state, ctx, points) {
            points.truncate(before);
            errors.push(e);
        }
    }
    errors
}

/// A 64-bit hash of a record key, the same within a process (SipHash with fixed keys).
pub fn key_hash<K: std::hash::Hash + ?Sized>(key: &K) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(key)
}

/// A decoded page: the records that have the expected shape, and (index, reason) of those
/// that do not.
pub struct DecodedPage<T> {
    pub value: Vec<T>,
    pub bad: Vec<(usize, String)>,
    pub next_link: Option<String>,
}

/// Decodes a page. The fast path decodes it typed in one go; only when that fails is it
/// decoded as JSON values and each record on its own, so one record of an unexpected shape
/// (a string where a number was documented, say) costs that record, not the page. A body that
/// is not an OData page at all (malformed JSON, an HTML error page) is an error.
pub fn decode_page<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<DecodedPage<T>, String> {
    match serde_json::from_slice::<Page<T>>(body) {
        Ok(p) => Ok(DecodedPage {
            value: p.value,
            bad: Vec::new(),
            next_link: p.next_link,
        }),
        Err(typed) => {
            // Each record as its raw JSON text (a slice of the body), so a record decoded on
            // its own still borrows from the body like on the fast path.
            let loose: Page<&'de serde_json::value::RawValue> = serde_json::from_slice(body)
                .map_err(|e| {
                    format!(
                        "not an OData page ({e}); body starts: {}",
                        crate::citrix::client::snippet(body)
                    )
                })?;
            let mut value = Vec::with_capacity(loose.value.len());
            let mut bad = Vec::new();
            for (i, v) in loose.value.into_iter().enumerate() {
                match serde_json::from_str::<T>(v.get()) {
                    Ok(r) => value.push(r),
                    Err(e) => bad.push((i, e.to_string())),
                }
            }
            if bad.is_empty() {
                // The typed decoder failed on something outside the records.
                return Err(format!(
                    "{typed}; body starts: {}",
                    crate::citrix::client::snippet(body)
                ));
            }
            Ok(DecodedPage {
                value,
                bad,
                next_link: loose.next_link,
            })
        }
    }
}

fn min_opt(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn collect_logon_ms(points: &[PointOf<'_>], out: &mut Vec<u32>) {
    use crate::lineproto::FieldValueOf;
    for p in points {
        for (k, v) in &p.fields {
            if k == "logon_duration_ms"
                && let FieldValueOf::Int(ms) = v
            {
                out.push((*ms).clamp(0, u32::MAX as i64) as u32);
            }
        }
    }
}

/// Nanoseconds since the epoch of `t` truncated to the millisecond, plus a sub-millisecond
/// offset derived from the record's numeric key: distinct records of one series in the same
/// millisecond get distinct timestamps, and a re-read record gets exactly the same one
/// (DESIGN.md rule 1). Sub-millisecond precision of the source is given up for that; targets
/// with millisecond precision (VictoriaMetrics) may still merge such records.
pub fn record_timestamp_ns(t: DateTime<Utc>, key: i64) -> i64 {
    let ms = t.timestamp_millis();
    ms * 1_000_000 + key.rem_euclid(1_000_000)
}

/// Milliseconds from `a` to `b` when both are known and in order.
pub fn span_ms(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<i64> {
    let d = (b? - a?).num_milliseconds();
    (d >= 0).then_some(d)
}

/// A point of `measurement` at `ts` with the tenant's tags (`customer`, `customer_id`), which
/// borrow from the context (no copy per point).
pub fn tenant_point<'r>(measurement: &'static str, ts: i64, ctx: &'r Ctx) -> PointOf<'r> {
    PointOf::new(measurement, ts)
        .tag("customer", ctx.customer.as_str())
        .tag("customer_id", ctx.customer_id.as_str())
}

/// Like [`record_timestamp_ns`] for records keyed by a string (a Guid): the sub-millisecond
/// offset is a stable hash of the key (FNV-1a), so it is the same on every read.
pub fn record_timestamp_ns_str(t: DateTime<Utc>, key: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.to_ascii_lowercase().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    t.timestamp_millis() * 1_000_000 + (h % 1_000_000) as i64
}

/// Nanoseconds of an exact source date (summaries, collected samples: already unique per series).
pub fn exact_ns(t: DateTime<Utc>) -> Result<i64, MapError> {
    t.timestamp_nanos_opt()
        .ok_or_else(|| MapError(format!("date {t} out of range")))
}

/// `$expand` of a machine's name and its delivery group's name.
pub const MACHINE_EXPAND: &str = "Machine($select=Name;$expand=DesktopGroup($select=Name))";

/// Delivery group and machine name of an expanded machine ("" when unknown: the tag is omitted),
/// borrowed from the record.
pub fn machine_names(m: Option<&crate::citrix::model::Machine>) -> (&str, &str) {
    let dg = m
        .and_then(|m| m.desktop_group.as_ref())
        .and_then(|g| g.name.as_deref())
        .unwrap_or_default();
    let name = m.and_then(|m| m.name.as_deref()).unwrap_or_default();
    (dg, name)
}

/// Delivery group and machine tag of a row that has a `MachineId` and may have an expanded
/// machine: the machine's name, else its Id (a machine deleted and groomed has no name left).
pub fn machine_or_id<'r>(
    m: Option<&'r crate::citrix::model::Machine>,
    machine_id: Option<&'r str>,
) -> (&'r str, &'r str) {
    let (dg, name) = machine_names(m);
    let name = if name.is_empty() {
        machine_id.unwrap_or_default()
    } else {
        name
    };
    (dg, name)
}

/// Key of a per-machine sample (ResourceUtilization, MachineMetric): those rows are unique per
/// machine and `CollectedDate`.
pub fn machine_sample_key(
    machine_id: Option<&str>,
    collected: Option<DateTime<Utc>>,
) -> Option<String> {
    Some(format!("{}@{}", machine_id?, collected?))
}

/// [`Collector::key_hash`] of a per-machine sample: the same pair as [`machine_sample_key`],
/// hashed without formatting it (a date's text costs more than the rest of the row's key).
pub fn machine_sample_key_hash(
    machine_id: Option<&str>,
    collected: Option<DateTime<Utc>>,
) -> Option<u64> {
    let t = collected?;
    Some(key_hash(&(
        machine_id?,
        t.timestamp(),
        t.timestamp_subsec_nanos(),
    )))
}

/// The point of a per-machine sample: at its `CollectedDate` exactly, tagged with the tenant,
/// delivery group and machine (name, else Id); an error when either is missing.
pub fn machine_sample_point<'r>(
    measurement: &'static str,
    collected: Option<DateTime<Utc>>,
    m: Option<&'r crate::citrix::model::Machine>,
    machine_id: Option<&'r str>,
    ctx: &'r Ctx,
) -> Result<PointOf<'r>, MapError> {
    let at = collected.ok_or_else(|| MapError("sample without CollectedDate".into()))?;
    let (dg, machine) = machine_or_id(m, machine_id);
    if machine.is_empty() {
        return Err(MapError("sample without MachineId".into()));
    }
    Ok(tenant_point(measurement, exact_ns(at)?, ctx)
        .tag("delivery_group", dg)
        .tag("machine", machine))
}

/// A query filtering `field ge since` (when given) plus an optional extra condition, ordered by
/// the watermark field then `order_key` so paging is stable.
pub fn incremental_query(
    set: &'static str,
    select: &[&'static str],
    expand: Option<&str>,
    field: &str,
    since: Option<DateTime<Utc>>,
    extra: Option<String>,
    order_key: &str,
) -> Query {
    let mut q = Query::new(set);
    q.select = select.to_vec();
    q.expand = expand.map(str::to_string);
    let mut conds = Vec::new();
    if let Some(e) = extra {
        conds.push(e);
    }
    if let Some(since) = since {
        conds.push(format!(
            "{field} ge {}",
            crate::citrix::odata::datetime_literal(since)
        ));
    }
    if !conds.is_empty() {
        q.filter = Some(conds.join(" and "));
    }
    q.orderby = Some(if order_key.is_empty() {
        field.to_string()
    } else {
        format!("{field},{order_key}")
    });
    q
}

/// How many intervals of a summary each walk re-reads: Citrix writes a summary row only once
/// its interval is complete, and late consolidation can still revise the latest ones.
pub const SUMMARY_REREAD_INTERVALS: u32 = 3;

/// The standard granularities (minutes) of session/logon/failure/load-index/machine summaries.
pub const SUMMARY_GRANULARITIES: &[i64] = &[1, 60, 1440];

/// The granularities of resource-utilization summaries (10 minutes, hour, day).
pub const RESOURCE_GRANULARITIES: &[i64] = &[10, 60, 1440];

/// A summary query: one granularity, `SummaryDate ge since`, ordered by date then `Id`.
pub fn summary_query(
    set: &'static str,
    select: &[&'static str],
    expand: Option<&str>,
    granularity: i64,
    since: Option<DateTime<Utc>>,
) -> Query {
    incremental_query(
        set,
        select,
        expand,
        "SummaryDate",
        since,
        Some(format!("Granularity eq {granularity}")),
        "Id",
    )
}

/// Re-read window of a summary of `granularity` minutes.
pub fn summary_overlap(granularity: i64) -> std::time::Duration {
    std::time::Duration::from_secs(granularity.max(1) as u64 * 60 * SUMMARY_REREAD_INTERVALS as u64)
}

/// Sum / count as a float, when there is something to divide.
pub fn avg(sum: Option<f64>, count: Option<f64>) -> Option<f64> {
    match (sum, count) {
        (Some(s), Some(c)) if c > 0.0 => Some(s / c),
        _ => None,
    }
}

/// The schedule key of a summary granularity (minutes).
pub fn summary_schedule_key(granularity: i64) -> &'static str {
    match granularity {
        g if g < 60 => "summaries_minute",
        g if g < 1440 => "summaries_hourly",
        _ => "summaries_daily",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn record_timestamps_are_stable_and_distinct() {
        let t = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()
            + chrono::Duration::microseconds(123_456);
        let a = record_timestamp_ns(t, 128_230);
        assert_eq!(a, record_timestamp_ns(t, 128_230));
        assert_ne!(a, record_timestamp_ns(t, 128_231));
        assert_eq!(a / 1_000_000, t.timestamp_millis());
        assert_eq!(a % 1_000_000, 128_230);
        assert_eq!(record_timestamp_ns(t, -1) % 1_000_000, 999_999);
    }

    #[test]
    fn one_bad_record_costs_that_record_only() {
        use crate::citrix::model::Connection;
        let body = br#"{"value":[{"Id":1},{"Id":"two"},{"Id":3,"IsReconnect":"yes"},{"Id":4}],
            "@odata.nextLink":"http://h/m/Connections?$skip=4"}"#;
        let p = decode_page::<Connection>(body).unwrap();
        let ids: Vec<i64> = p.value.iter().filter_map(|c| c.id).collect();
        assert_eq!(ids, [1, 4]);
        assert_eq!(p.bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 2]);
        assert!(p.next_link.is_some());
        let html = b"<html><body>502 Bad Gateway</body></html>";
        let e = decode_page::<Connection>(html).err().unwrap();
        assert!(
            e.contains("not an OData page") && e.contains("502 Bad Gateway"),
            "{e}"
        );
        let truncated = br#"{"value":[{"Id":1},{"Id":2"#;
        assert!(decode_page::<Connection>(truncated).is_err());
        let empty = br#"{"value":[]}"#;
        assert!(decode_page::<Connection>(empty).unwrap().value.is_empty());
    }

    #[test]
    fn a_ten_megabyte_page_with_hostile_strings_decodes_and_encodes() {
        use crate::citrix::model::Connection;
        use crate::collect::connections::Connections;
        let nasty = "a\\\"b,c=d e\\n\\t\u{e9}\u{1F600}".repeat(20);
        let long = "x".repeat(1 << 20);
        let mut body = String::from(r#"{"@odata.context":"x","value":["#);
        let mut n = 0;
        while body.len() < 10 << 20 {
            if n > 0 {
                body.push(',');
            }
            let client = if n == 7 {
                long.as_str()
            } else {
                nasty.as_str()
            };
            body.push_str(&format!(
                r#"{{"Id":{n},"ClientName":"{client}","Protocol":"HDX","BrokeringDate":"2026-03-02T08:00:00.1234567Z","Session":{{"User":{{"UserName":"{nasty}"}},"Machine":{{"Name":"D\\m\\","DesktopGroup":{{"Name":"{nasty}"}}}}}}}}"#
            ));
            n += 1;
        }
        body.push_str("]}");
        let page = decode_page::<Connection>(body.as_bytes()).unwrap();
        assert_eq!(page.value.len(), n);
        assert!(page.bad.is_empty());
        let ctx = Ctx {
            customer: "C".into(),
            customer_id: "c".into(),
            cycle_time: Utc::now(),
        };
        let mut points = Vec::new();
        for r in &page.value {
            Connections.map(r, &(), &ctx, &mut points).unwrap();
        }
        let mut out = Vec::new();
        let report = crate::lineproto::encode_all(&points, &mut out);
        assert_eq!(report.encoded, n);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), n, "no raw newline broke a line");
        assert!(text.len() > 10 << 20);
    }

    #[test]
    fn sample_keys_hash_like_their_text() {
        // The hash stands for the key's text: equal for equal (machine, date) pairs, different
        // when either differs (down to the nanosecond), none without both.
        let t = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap();
        let later = t + chrono::Duration::nanoseconds(1);
        let h = |m: Option<&str>, t| machine_sample_key_hash(m, t);
        assert_eq!(h(Some("m1"), Some(t)), h(Some("m1"), Some(t)));
        assert_ne!(h(Some("m1"), Some(t)), h(Some("m1"), Some(later)));
        assert_ne!(h(Some("m1"), Some(t)), h(Some("m2"), Some(t)));
        assert_eq!(h(None, Some(t)), None);
        assert_eq!(h(Some("m1"), None), None);
        assert_eq!(
            machine_sample_key(Some("m1"), Some(t)).is_some(),
            h(Some("m1"), Some(t)).is_some()
        );
    }

    #[test]
    fn tenant_and_machine_tags_borrow() {
        use crate::citrix::model::{DesktopGroup, Machine};
        use std::borrow::Cow;
        let ctx = Ctx {
            customer: "C".into(),
            customer_id: "c".into(),
            cycle_time: Utc::now(),
        };
        let m = Machine {
            name: Some("vda".into()),
            desktop_group: Some(DesktopGroup {
                id: None,
                name: Some("DG".into()),
            }),
            ..Default::default()
        };
        let t = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap();
        let p = machine_sample_point("m", Some(t), Some(&m), Some("id"), &ctx).unwrap();
        let tags: Vec<(&str, &str)> = p
            .tags
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        assert_eq!(
            tags,
            [
                ("customer", "C"),
                ("customer_id", "c"),
                ("delivery_group", "DG"),
                ("machine", "vda")
            ]
        );
        assert!(p.tags.iter().all(|(_, v)| matches!(v, Cow::Borrowed(_))));
        // Without a name the machine is tagged by its Id; without either the sample is refused.
        let p = machine_sample_point("m", Some(t), None, Some("id"), &ctx).unwrap();
        assert_eq!(p.tags.last().unwrap().1, "id");
        assert!(machine_sample_point("m", Some(t), None, None, &ctx).is_err());
    }

    #[test]
    fn spans() {
        let t = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap();
        let later = t + chrono::Duration::milliseconds(1500);
        assert_eq!(span_ms(Some(t), Some(later)), Some(1500));
        assert_eq!(span_ms(Some(later), Some(t)), None);
        assert_eq!(span_ms(None, Some(t)), None);
    }
}

#[cfg(test)]
mod walk_marks_tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_walks_keys_go_after_its_last_page_and_its_marks_stay() {
        let t = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap();
        let mut m = WalkMarks::default();
        for k in 0..1000u64 {
            m.seen.insert(k, Some(t));
        }
        m.cap = Some(t);
        m.max_seen = Some(t);
        m.page_begins(false);
        m.page_mapped();
        assert_eq!(
            m.seen.len(),
            1000,
            "a next page is compared with these keys"
        );
        m.page_begins(true);
        m.page_mapped();
        assert_eq!(
            m.seen.capacity(),
            0,
            "nothing reads them after the last page"
        );
        assert_eq!(
            (m.cap, m.max_seen),
            (Some(t), Some(t)),
            "the watermark's marks stay"
        );
    }

    #[test]
    fn a_walks_last_page_is_compared_with_the_keys_but_not_kept() {
        let t = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap();
        let early = t - chrono::Duration::minutes(5);
        let mut one = WalkMarks::default();
        one.page_begins(true);
        for k in 0..1000u64 {
            assert!(!one.note_key(k, Some(t)));
        }
        assert_eq!(one.page.keyed, 1000);
        assert_eq!(
            one.seen.capacity(),
            0,
            "a walk of one page builds no key map"
        );

        let mut two = WalkMarks::default();
        two.page_begins(false);
        for k in 0..1000u64 {
            two.note_key(k, Some(early));
        }
        two.page_mapped();
        two.page_begins(true);
        let repeated = (500..1500u64).filter(|&k| two.note_key(k, Some(t))).count();
        assert_eq!((repeated, two.page.repeated), (500, 500));
        assert_eq!(two.cap, Some(early), "capped at the first sighting");
        assert_eq!(two.seen.len(), 1000, "the last page's keys are not kept");
    }
}
