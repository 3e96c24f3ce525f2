//! The sets derived from the core rows (machine failures, applications and their instances,
//! hotfixes, resource samples, all summaries) and the passing of simulated time: `initial`
//! completes a freshly generated tenant, `advance` moves its clock forward and appends what
//! happened meanwhile. It owns retention and Id assignment of those sets; it must not know
//! about HTTP or queries, nor re-aggregate intervals already summarised.
//!
//! What `advance(by)` does, deterministically for a seed and a sequence of advances:
//! - new sessions: every tenant-local day has its own seeded list of session starts following
//!   the daily profile (weekday rush, weekends at a quarter); the starts falling in
//!   `[old now, new now)` become sessions (with connections, failure logs, application
//!   instances) exactly as the generator makes them;
//! - open sessions whose planned end has come end (`EndDate` at or after the old now, never
//!   before): their Session, current Connection and ApplicationInstances get fresh
//!   ModifiedDates; their machine's CurrentSessionCount and ModifiedDate follow;
//! - late rows (in an advance that crosses a whole UTC minute; any advance of a minute or more
//!   does): `LATE_ROWS` failed launches (Session + Connection + ConnectionFailureLog, all
//!   three with the same ModifiedDate) appear whose ModifiedDate lies 5–90 s *before* the old
//!   now (`LATE_MAX_SECS`), as Citrix's consolidation lags; a harvester's overlap must be
//!   at least 90 s to catch them. They are not re-aggregated into the minute summaries already
//!   written (Citrix does not either), but do count in intervals completed later;
//! - LoadIndexes every 30 min per powered-on machine, ResourceUtilization every 5 min,
//!   MachineMetric and SessionMetrics every 10 min, each up to the new now;
//! - summary rows for every interval that became complete in `(old now, new now]`.
//!
//! Nothing is groomed on advance unless asked (`groom`, `SimOptions::retain`): then raw
//! resource samples and summary rows older than the cutoff go (never the newest row of a set,
//! so Ids keep ascending). At start, raw resource rows cover the last
//! `RAW_WINDOW_HOURS`, minute summaries the last `MINUTE_WINDOW_HOURS` (summary.rs).

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use rand::Rng;

use super::data::Row;
use super::generate::{EQUAL_MODIFIED_OFFSETS, Prec, RowB, StartSampler, World, tenant_rng};
use super::schema::{self, EntityDef};
use super::summary::{
    self, MM_STEP_SECS, RAW_WINDOW_HOURS, RU_STEP_SECS, SM_STEP_SECS, Window, col, date, guid, int,
    mix,
};
use super::value::Val;

type Dt = DateTime<Utc>;
pub(super) type Rows = HashMap<&'static str, Vec<Row>>;

/// A generated session: its row, its connections (by brokering date), its failure log.
pub(super) type NewSession = (RowB, Vec<(Dt, RowB)>, Option<RowB>);

/// Late failed launches per advance (per tenant).
pub const LATE_ROWS: usize = 2;
/// Late rows have a ModifiedDate at most this many seconds before the previous now.
pub const LATE_MAX_SECS: i64 = 90;
const LATE_MIN_SECS: i64 = 5;

const APPS: &[(&str, &str)] = &[
    ("Microsoft Word", "Office"),
    ("Microsoft Excel", "Office"),
    ("SAP GUI", "Finance\\SAP"),
    ("Notepad++", ""),
    ("Calculator, Scientific", "Tools"),
];
const HOTFIXES: &[(&str, &str, &str)] = &[
    ("Citrix VDA 2402 LTSR CU1", "CTX583920", "VDA"),
    ("Citrix VDA 2402 hotfix HDX", "CTX584011", "HDX"),
    ("Profile Management fix", "CTX585112", "UPM"),
    ("Broker Agent fix", "CTX586230", "Broker Agent"),
    ("Graphics \"Thinwire\" fix", "CTX587001", "Graphics"),
];

fn set(def: &EntityDef, r: &mut Row, name: &str, v: Val) {
    r[col(def, name)] = v;
}

fn next_id(rows: &Rows, set: &str, def: &EntityDef, base: i64) -> i64 {
    let k = def.key_index();
    rows.get(set)
        .into_iter()
        .flatten()
        .filter_map(|r| int(&r[k]))
        .max()
        .map_or(base, |m| m + 1)
}

/// Appends rows built by `RowB`s (sorted by `order`), assigning ascending Ids.
pub(super) fn append(
    rows: &mut Rows,
    def: &'static EntityDef,
    base: i64,
    mut new: Vec<(Dt, RowB)>,
) {
    new.sort_by_key(|(t, _)| *t);
    let first = next_id(rows, def.set, def, base);
    let v = rows.entry(def.set).or_default();
    for (id, (_, mut r)) in (first..).zip(new) {
        r.set("Id", Val::Int(id));
        v.push(r.done());
    }
}

fn append_out(rows: &mut Rows, set: &'static str, base: i64, outs: Vec<summary::Out>) {
    let Some(def) = schema::entity_set(set) else {
        return;
    };
    let first = next_id(rows, set, def, base);
    let k = def.key_index();
    let v = rows.entry(set).or_default();
    for (id, o) in (first..).zip(outs) {
        let mut r = o.done();
        r[k] = Val::Int(id);
        v.push(r);
    }
}

pub(super) fn id_base(w: &World, set: u64) -> i64 {
    100_000 + (mix(&[w.seed, w.idx as u64, set]) % 900_000) as i64
}

/// Completes a freshly generated tenant: the derived sets and the summaries of its history.
pub fn initial(w: &mut World, rows: &mut Rows) {
    let mut rng = tenant_rng(w.seed, w.idx, 3);
    let now = w.now;
    let span_ms = (now - w.history_start).num_milliseconds().max(1);
    let in_history = |rng: &mut rand::rngs::StdRng| {
        w.history_start + Duration::milliseconds(rng.random_range(0..span_ms))
    };

    // Machine failures: the open failure of every machine in a failure FaultState, and a past
    // FailedToStart episode on every seventh machine.
    let m = &schema::MACHINES;
    let mut mfl = Vec::new();
    for (i, r) in rows["Machines"].iter().enumerate() {
        let id = r[col(m, "Id")].clone();
        if let (Some(fs), Some(fd)) = (
            int(&r[col(m, "FaultState")]),
            date(&r[col(m, "FailureDate")]),
        ) && fs >= 2
        {
            let created = (fd + Duration::milliseconds(rng.random_range(500..5000))).min(now);
            let mut f = RowB::new(&schema::MACHINE_FAILURE_LOGS);
            f.set("MachineId", id.clone())
                .set("FailureStartDate", Val::Date(fd))
                .set("FaultState", Val::Int(fs))
                .set(
                    "LastDeregisteredCode",
                    r[col(m, "LastDeregisteredCode")].clone(),
                )
                .set("CreatedDate", Val::Date(created))
                .set("ModifiedDate", Val::Date(created));
            mfl.push((fd, f));
        }
        if i % 7 == 2 && r[col(m, "LifecycleState")] == Val::Int(0) {
            let start = Prec(1_000_000).q(in_history(&mut rng));
            let end = (start + Duration::minutes(rng.random_range(5..40))).min(now);
            let mut f = RowB::new(&schema::MACHINE_FAILURE_LOGS);
            f.set("MachineId", id)
                .set("FailureStartDate", Val::Date(start))
                .set("FailureEndDate", Val::Date(end))
                .set("FaultState", Val::Int(2))
                .set(
                    "CreatedDate",
                    Val::Date((start + Duration::seconds(2)).min(now)),
                )
                .set(
                    "ModifiedDate",
                    Val::Date((end + Duration::seconds(2)).min(now)),
                );
            mfl.push((start, f));
        }
    }
    append(rows, &schema::MACHINE_FAILURE_LOGS, id_base(w, 1), mfl);

    // Applications and hotfixes.
    let mut apps = Vec::new();
    for (name, folder) in APPS {
        let id = super::generate::guid(&mut rng);
        w.apps.push(id);
        let created = now - Duration::days(rng.random_range(30..400));
        let mut r = RowB::new(&schema::APPLICATIONS);
        let exe = name.split(' ').next_back().unwrap_or(name).to_lowercase();
        r.set("Id", Val::Guid(id))
            .set(
                "Name",
                Val::str(format!("{folder}\\{name}").trim_start_matches('\\')),
            )
            .set("PublishedName", Val::str(*name))
            .set("BrowserName", Val::str(name.replace([' ', ','], "")))
            .set("AdminFolder", Val::str(*folder))
            .set("ApplicationType", Val::Int(0))
            .set("Enabled", Val::Bool(true))
            .set("LifecycleState", Val::Int(0))
            .set(
                "Path",
                Val::str(format!("C:\\Program Files\\{name}\\{exe}.exe")),
            )
            .set("CreatedDate", Val::Date(created))
            .set("ModifiedDate", Val::Date(created));
        apps.push(r.done());
    }
    rows.insert("Applications", apps);
    let hotfixes = HOTFIXES
        .iter()
        .enumerate()
        .map(|(i, (name, article, comp))| {
            let mut r = RowB::new(&schema::HOTFIXES);
            r.set("Id", Val::Int(i as i64 + 1))
                .set("Name", Val::str(*name))
                .set("Article", Val::str(*article))
                .set("ArticleName", Val::str(format!("{article}: {name}")))
                .set(
                    "FileName",
                    Val::str(format!("{}.msp", article.to_lowercase())),
                )
                .set("FileFormat", Val::str("msp"))
                .set("Version", Val::str(format!("1.{i}.0")))
                .set("ComponentName", Val::str(*comp))
                .set("ComponentVersion", Val::str("2402.0.100.629"));
            r.done()
        })
        .collect();
    rows.insert("Hotfixes", hotfixes);
    let mut logs = Vec::new();
    for (i, r) in rows["Machines"].iter().enumerate() {
        if r[col(m, "LifecycleState")] != Val::Int(0) {
            continue;
        }
        let id = r[col(m, "Id")].clone();
        let mut add = |hotfix: usize, change: i64, state: bool, at: Dt| {
            let mut l = RowB::new(&schema::MACHINE_HOTFIX_LOGS);
            l.set("MachineId", id.clone())
                .set("HotfixId", Val::Int(hotfix as i64 + 1))
                .set("ChangeType", Val::Int(change))
                .set("CurrentState", Val::Bool(state))
                .set("CreatedDate", Val::Date(at))
                .set("ModifiedDate", Val::Date(at));
            logs.push((at, l));
        };
        let at = Prec(1_000_000).q(in_history(&mut rng));
        add(i % HOTFIXES.len(), 0, true, at);
        if i % 4 == 0 {
            let a = Prec(1_000_000).q(in_history(&mut rng));
            let b = (a + Duration::minutes(rng.random_range(10..600))).min(now);
            add(4, 0, false, a);
            add(4, 1, false, b);
        }
    }
    append(rows, &schema::MACHINE_HOTFIX_LOGS, id_base(w, 2), logs);

    // Application instances of the sessions so far.
    let keys: Vec<u128> = rows["Sessions"]
        .iter()
        .filter_map(|r| guid(&r[col(&schema::SESSIONS, "SessionKey")]))
        .collect();
    app_instances(w, rows, &keys);

    let raw_from = now - Duration::hours(RAW_WINDOW_HOURS);
    samples(w, rows, raw_from, now);
    let win = Window {
        history_start: w.history_start,
        from: w.history_start,
        to: now,
    };
    for (set, outs) in summary::summaries(rows, &w.machines, w.seed, w.idx, win) {
        append_out(rows, set, id_base(w, 10 + set.len() as u64), outs);
    }
}

/// ApplicationInstances of the given (new) application sessions.
fn app_instances(w: &World, rows: &mut Rows, keys: &[u128]) {
    let s = &schema::SESSIONS;
    let wanted: std::collections::HashSet<u128> = keys.iter().copied().collect();
    let mut new = Vec::new();
    for r in &rows["Sessions"] {
        let Some(key) = guid(&r[col(s, "SessionKey")]) else {
            continue;
        };
        if !wanted.contains(&key)
            || r[col(s, "SessionType")] != Val::Int(1)
            || r[col(s, "FailureId")] != Val::Null
        {
            continue;
        }
        let (Some(start), Some(logon)) = (
            date(&r[col(s, "StartDate")]),
            int(&r[col(s, "LogOnDuration")]),
        ) else {
            continue;
        };
        let end = date(&r[col(s, "EndDate")]);
        let h = mix(&[w.seed, key as u64, (key >> 64) as u64]);
        let n = 1 + (h % 2) as usize;
        for i in 0..n {
            let app = w.apps[(h as usize >> 8).wrapping_add(i) % w.apps.len().max(1)];
            let st = (start + Duration::milliseconds(logon + 500 + i as i64 * 45_000)).min(w.now);
            let st = end.map_or(st, |e| st.min(e));
            let created = (st + Duration::milliseconds(1500)).min(w.now);
            let modified = end.map_or(created, |e| (e + Duration::seconds(2)).min(w.now));
            let mut a = RowB::new(&schema::APPLICATION_INSTANCES);
            a.set("ApplicationId", Val::Guid(app))
                .set("SessionKey", Val::Guid(key))
                .set("StartDate", Val::Date(st))
                .set("EndDate", Val::opt_date(end))
                .set("CreatedDate", Val::Date(created))
                .set("ModifiedDate", Val::Date(modified.max(created)));
            new.push((st, a));
        }
    }
    append(rows, &schema::APPLICATION_INSTANCES, id_base(w, 3), new);
}

/// Raw resource rows whose CollectedDate is in `(from, to]`.
fn samples(w: &World, rows: &mut Rows, from: Dt, to: Dt) {
    let slots = |step: i64| {
        let mut t = summary::floor_to(from, step) - Duration::seconds(step);
        let mut v = Vec::new();
        while t <= to {
            v.push(t);
            t += Duration::seconds(step);
        }
        v
    };
    let within = |t: Dt| t > from && t <= to;
    let mut ru = Vec::new();
    let mut mm = Vec::new();
    for (m, info) in w.machines.iter().enumerate() {
        for slot in slots(RU_STEP_SECS) {
            if let Some((at, cpu, used, total)) = summary::ru_sample(w.seed, w.idx, m, info, slot)
                && within(at)
            {
                let written = at + Duration::milliseconds(1200);
                let mut r = RowB::new(&schema::RESOURCE_UTILIZATION);
                r.set("MachineId", Val::Guid(info.id))
                    .set("CollectedDate", Val::Date(at))
                    .set("PercentCpu", Val::Float(cpu))
                    .set("UsedMemory", Val::Int(used))
                    .set("TotalMemory", Val::Int(total))
                    .set("DesktopGroupId", Val::Guid(w.dgs[info.dg].0))
                    .set("CreatedDate", Val::Date(written.min(to)))
                    .set("ModifiedDate", Val::Date(written.min(to)));
                ru.push((at, r));
            }
        }
        if !info.powered_on {
            continue;
        }
        for slot in slots(MM_STEP_SECS) {
            let at = slot + Duration::milliseconds((mix(&[w.seed, m as u64, 2]) % 30_000) as i64);
            if !within(at) {
                continue;
            }
            let h = mix(&[w.seed, w.idx as u64, m as u64, at.timestamp() as u64]);
            let n = summary::sessions_at(info, at);
            let mut r = RowB::new(&schema::MACHINE_METRIC);
            r.set("MachineId", Val::Guid(info.id))
                .set("CollectedDate", Val::Date(at))
                .set(
                    "Iops",
                    Val::Float(20.0 + n as f64 * 15.0 + (h % 500) as f64 / 10.0),
                )
                .set("Latency", Val::Float(1.0 + (h >> 16) as f64 % 80.0 / 10.0));
            mm.push((at, r));
        }
    }
    append(rows, &schema::RESOURCE_UTILIZATION, id_base(w, 4), ru);
    append(rows, &schema::MACHINE_METRIC, id_base(w, 5), mm);
    let s = &schema::SESSIONS;
    let mut sm = Vec::new();
    for r in &rows["Sessions"] {
        if r[col(s, "FailureId")] != Val::Null {
            continue;
        }
        let (Some(key), Some(start)) = (
            guid(&r[col(s, "SessionKey")]),
            date(&r[col(s, "StartDate")]),
        ) else {
            continue;
        };
        let end = date(&r[col(s, "EndDate")]);
        let jitter = Duration::milliseconds((mix(&[key as u64, 3]) % 60_000) as i64);
        for slot in slots(SM_STEP_SECS) {
            let at = slot + jitter;
            if !within(at) || at < start || end.is_some_and(|e| at >= e) {
                continue;
            }
            let h = mix(&[key as u64, (key >> 64) as u64, at.timestamp() as u64]);
            let rtt = 20 + (h % 120) as i64;
            let written = (at + Duration::milliseconds(900)).min(to);
            let mut m = RowB::new(&schema::SESSION_METRICS);
            m.set("SessionId", Val::Guid(key))
                .set("CollectedDate", Val::Date(at))
                .set("IcaRttMS", Val::Int(rtt))
                .set("IcaLatency", Val::Int((rtt - 8).max(1)))
                .set(
                    "ClientL7Latency",
                    Val::Float(10.0 + (h >> 12) as f64 % 300.0 / 10.0),
                )
                .set(
                    "ServerL7Latency",
                    Val::Float(1.0 + (h >> 24) as f64 % 50.0 / 10.0),
                )
                .set("CreatedDate", Val::Date(written))
                .set("ModifiedDate", Val::Date(written));
            sm.push((at, m));
        }
    }
    append(rows, &schema::SESSION_METRICS, id_base(w, 6), sm);
}

/// Moves the tenant's clock forward by `by` (ignored unless positive) and appends what happened.
pub fn advance(w: &mut World, rows: &mut Rows, by: Duration) {
    if by <= Duration::zero() {
        return;
    }
    let old = w.now;
    let new = old + by;
    w.now = new;
    w.advances += 1;
    let mut rng = tenant_rng(w.seed, w.idx, 1_000 + w.advances);
    let (s, c) = (&schema::SESSIONS, &schema::CONNECTIONS);
    let lag = |rng: &mut rand::rngs::StdRng, t: Dt, a: i64, b: i64| {
        (t + Duration::milliseconds(rng.random_range(a..b))).min(new)
    };

    // 1. Open sessions that end now.
    let (ending, still): (Vec<_>, Vec<_>) = w.open.iter().partition(|(_, e)| *e <= new);
    w.open = still;
    if !ending.is_empty() {
        let ends: HashMap<u128, Dt> = ending
            .iter()
            .map(|(k, e)| (*k, (*e).max(old + Duration::seconds(1)).min(new)))
            .collect();
        let mut current: HashMap<i64, Dt> = HashMap::new();
        let mut machine_of: Vec<(u128, Dt, Dt)> = Vec::new();
        if let Some(v) = rows.get_mut("Sessions") {
            for r in v.iter_mut() {
                let Some(end) = guid(&r[col(s, "SessionKey")]).and_then(|k| ends.get(&k)) else {
                    continue;
                };
                let end = *end;
                set(s, r, "EndDate", Val::Date(end));
                set(s, r, "ConnectionState", Val::Int(3));
                set(s, r, "ConnectionStateChangeDate", Val::Date(end));
                set(s, r, "ExitCode", Val::Int(0));
                set(s, r, "SessionIdleTime", Val::Null);
                set(
                    s,
                    r,
                    "ModifiedDate",
                    Val::Date(lag(&mut rng, end, 1000, 60_000)),
                );
                if let Some(ci) = int(&r[col(s, "CurrentConnectionId")]) {
                    current.insert(ci, end);
                }
                if let (Some(m), Some(st)) =
                    (guid(&r[col(s, "MachineId")]), date(&r[col(s, "StartDate")]))
                {
                    machine_of.push((m, st, end));
                }
            }
        }
        if let Some(v) = rows.get_mut("Connections") {
            for r in v.iter_mut() {
                let Some(end) = int(&r[col(c, "Id")]).and_then(|i| current.get(&i)) else {
                    continue;
                };
                if r[col(c, "DisconnectDate")] == Val::Null {
                    set(c, r, "DisconnectDate", Val::Date(*end));
                    set(c, r, "DisconnectCode", Val::Int(0));
                }
                set(
                    c,
                    r,
                    "ModifiedDate",
                    Val::Date(lag(&mut rng, *end, 500, 5000)),
                );
            }
        }
        let ai = &schema::APPLICATION_INSTANCES;
        if let Some(v) = rows.get_mut("ApplicationInstances") {
            for r in v.iter_mut() {
                let Some(end) = guid(&r[col(ai, "SessionKey")]).and_then(|k| ends.get(&k)) else {
                    continue;
                };
                set(ai, r, "EndDate", Val::Date(*end));
                set(
                    ai,
                    r,
                    "ModifiedDate",
                    Val::Date((*end + Duration::seconds(2)).min(new)),
                );
            }
        }
        for (mid, start, end) in &machine_of {
            if let Some(info) = w.machines.iter_mut().find(|i| i.id == *mid) {
                if let Some(e) = info
                    .sessions
                    .iter_mut()
                    .find(|(s, e)| e.is_none() && s == start)
                {
                    e.1 = Some(*end);
                }
                info.last_event = info.last_event.max(Some(*end));
            }
        }
    }

    // 2. New sessions starting in [old, new), and the late failed launches.
    let mut new_sessions: Vec<NewSession> = Vec::new();
    let starts = day_starts(w, old, new);
    for (day, i, start) in starts {
        let mut srng = tenant_rng(w.seed, w.idx, mix(&[day as u64, i as u64, 7]));
        let out = w.session(&mut srng, start, false);
        if let Some(e) = out.open_end
            && let Val::Guid(k) = out.session.get("SessionKey")
        {
            w.open.push((*k, e));
        }
        new_sessions.push((out.session, out.conns, out.failure));
    }
    // Once per advance that crosses a whole minute, so a real clock ticking every few seconds
    // adds them at the same pace as a test advancing by minutes.
    let late_rows = if old.timestamp().div_euclid(60) != new.timestamp().div_euclid(60) {
        LATE_ROWS
    } else {
        0
    };
    for _ in 0..late_rows {
        let late = Duration::seconds(rng.random_range(LATE_MIN_SECS..=LATE_MAX_SECS));
        let modified = old - late;
        let start = modified - Duration::seconds(rng.random_range(66..120));
        if start < w.history_start {
            continue;
        }
        let mut out = w.session(&mut rng, start, true);
        out.session.set("ModifiedDate", Val::Date(modified));
        for (_, conn) in out.conns.iter_mut() {
            conn.set("ModifiedDate", Val::Date(modified));
            if conn.date("CreatedDate").is_some_and(|d| d > modified) {
                conn.set("CreatedDate", Val::Date(modified));
            }
        }
        if let Some(f) = out.failure.as_mut() {
            f.set("ModifiedDate", Val::Date(modified));
            if f.date("CreatedDate").is_some_and(|d| d > modified) {
                f.set("CreatedDate", Val::Date(modified));
            }
        }
        if out
            .session
            .date("CreatedDate")
            .is_some_and(|d| d > modified)
        {
            out.session.set("CreatedDate", Val::Date(modified));
        }
        new_sessions.push((out.session, out.conns, out.failure));
    }
    add_sessions(w, rows, new_sessions, new);

    // 3. Machines: session counts follow.
    refresh_machines(w, rows, &mut rng);

    // 4. Load indexes, samples, summaries.
    load_indexes(w, rows, &mut rng, new);
    samples(w, rows, old, new);
    let win = Window {
        history_start: w.history_start,
        from: old,
        to: new,
    };
    for (set, outs) in summary::summaries(rows, &w.machines, w.seed, w.idx, win) {
        append_out(rows, set, id_base(w, 10 + set.len() as u64), outs);
    }
}

/// Sets groomed by `groom`, with their date column: samples by CollectedDate, summaries by
/// SummaryDate (kept until two of their intervals have passed the cutoff). LoadIndexes are
/// kept: a day's LoadIndexSummaries are computed from them at midnight.
const GROOMED: &[(&str, &str)] = &[
    ("ResourceUtilization", "CollectedDate"),
    ("MachineMetric", "CollectedDate"),
    ("SessionMetrics", "CollectedDate"),
    ("SessionActivitySummaries", "SummaryDate"),
    ("LogOnSummaries", "SummaryDate"),
    ("FailureLogSummaries", "SummaryDate"),
    ("LoadIndexSummaries", "SummaryDate"),
    ("MachineSummaries", "SummaryDate"),
    ("ResourceUtilizationSummary", "SummaryDate"),
];

/// Drops the rows of the `GROOMED` sets dated before `cutoff` (summaries: whose
/// `SummaryDate + 2 × Granularity` is before it), except the newest (highest Id) of each set,
/// from which the next Ids continue. Nothing else refers to these rows, and later summaries
/// are computed from what is kept (samples are pure functions of their slot).
pub fn groom(rows: &mut Rows, cutoff: Dt) {
    for &(set, date_col) in GROOMED {
        let (Some(def), Some(v)) = (schema::entity_set(set), rows.get_mut(set)) else {
            continue;
        };
        let (k, d) = (def.key_index(), col(def, date_col));
        let g = def.prop("Granularity");
        let newest = v.iter().filter_map(|r| int(&r[k])).max();
        v.retain(|r| {
            let at = date(&r[d]).unwrap_or(cutoff);
            let keep_for = g
                .and_then(|g| int(&r[g]))
                .map_or(Duration::zero(), |m| Duration::minutes(2 * m));
            at + keep_for >= cutoff || int(&r[k]) == newest
        });
    }
}

/// Appends generated sessions with their connections (Ids in brokering order, each session's
/// last connection as its current one), failure logs and application instances.
pub(super) fn add_sessions(w: &World, rows: &mut Rows, new_sessions: Vec<NewSession>, new: Dt) {
    let c = &schema::CONNECTIONS;
    let mut conns = Vec::new();
    let mut fails = Vec::new();
    let mut keys = Vec::new();
    let conn_base = next_id(rows, "Connections", c, 1);
    let mut conn_rows: Vec<(Dt, usize, RowB)> = Vec::new();
    let mut sess_rows: Vec<RowB> = Vec::new();
    for (i, (srow, cs, f)) in new_sessions.into_iter().enumerate() {
        if let Val::Guid(k) = srow.get("SessionKey") {
            keys.push(*k);
        }
        sess_rows.push(srow);
        for (t, cr) in cs {
            conn_rows.push((t, i, cr));
        }
        if let Some(f) = f {
            fails.push((f.date("FailureDate").unwrap_or(new), f));
        }
    }
    conn_rows.sort_by_key(|(t, i, _)| (*t, *i));
    for (n, (_, i, mut cr)) in conn_rows.into_iter().enumerate() {
        let id = conn_base + n as i64;
        cr.set("Id", Val::Int(id));
        sess_rows[i].set("CurrentConnectionId", Val::Int(id));
        conns.push(cr.done());
    }
    rows.entry("Connections").or_default().extend(conns);
    rows.entry("Sessions")
        .or_default()
        .extend(sess_rows.into_iter().map(RowB::done));
    append(rows, &schema::CONNECTION_FAILURE_LOGS, id_base(w, 7), fails);
    app_instances(w, rows, &keys);
}

/// Session starts in `[from, to)` from each tenant-local day's own seeded list:
/// (day number, index in the day, start).
fn day_starts(w: &World, from: Dt, to: Dt) -> Vec<(i64, usize, Dt)> {
    let off = Duration::minutes(w.offset_min as i64);
    let mut out = Vec::new();
    let mut day = (from + off).date_naive();
    let last = (to + off).date_naive();
    while day <= last {
        let day_start = day.and_time(NaiveTime::MIN).and_utc() - off;
        let day_end = day_start + Duration::days(1);
        let weekend = matches!(
            chrono::Datelike::weekday(&day),
            chrono::Weekday::Sat | chrono::Weekday::Sun
        );
        // A week has 5 + 2 × 0.25 weighted days; this keeps the weekly total of the generator.
        let per_day = w.sessions_per_day * 7.0 / 5.5 * if weekend { 0.25 } else { 1.0 };
        let n = per_day.round() as usize;
        let dn = day.and_time(NaiveTime::MIN).and_utc().timestamp() / 86_400;
        let mut rng = tenant_rng(w.seed, w.idx, mix(&[dn as u64, 11]));
        let sampler = StartSampler::new(day_start, day_end, w.offset_min);
        for i in 0..n {
            let t = Prec(1_000_000).q(sampler.sample(&mut rng));
            if t >= from && t < to {
                out.push((dn, i, t));
            }
        }
        match day.succ_opt() {
            Some(d) => day = d,
            None => break,
        }
    }
    out.sort_by_key(|x| x.2);
    out
}

fn refresh_machines(w: &World, rows: &mut Rows, rng: &mut rand::rngs::StdRng) {
    let m = &schema::MACHINES;
    let Some(v) = rows.get_mut("Machines") else {
        return;
    };
    for r in v.iter_mut() {
        let Some(info) =
            guid(&r[col(m, "Id")]).and_then(|id| w.machines.iter().find(|i| i.id == id))
        else {
            continue;
        };
        let running = info.sessions.iter().filter(|(_, e)| e.is_none()).count() as i64;
        if r[col(m, "CurrentSessionCount")] != Val::Int(running) {
            set(m, r, "CurrentSessionCount", Val::Int(running));
            let at = info.last_event.unwrap_or(w.now);
            let t = (at + Duration::milliseconds(rng.random_range(500..30_000))).min(w.now);
            let prev = date(&r[col(m, "ModifiedDate")]).unwrap_or(t);
            set(m, r, "ModifiedDate", Val::Date(t.max(prev)));
        }
    }
}

fn load_indexes(w: &World, rows: &mut Rows, rng: &mut rand::rngs::StdRng, to: Dt) {
    let li = &schema::LOAD_INDEXES;
    let mut last: HashMap<u128, Dt> = HashMap::new();
    for r in rows.get("LoadIndexes").into_iter().flatten() {
        if let (Some(mid), Some(d)) = (
            guid(&r[col(li, "MachineId")]),
            date(&r[col(li, "CreatedDate")]),
        ) {
            let e = last.entry(mid).or_insert(d);
            *e = (*e).max(d);
        }
    }
    let mut new = Vec::new();
    for info in &w.machines {
        if !info.powered_on {
            continue;
        }
        let Some(mut at) = last.get(&info.id).map(|d| *d + Duration::minutes(30)) else {
            continue;
        };
        while at + Duration::seconds(2) <= to {
            let n = summary::sessions_at(info, at);
            let cpu = (n * if info.multi { 7 } else { 35 } + rng.random_range(2..15)).min(100);
            let mem = (20 + n * if info.multi { 5 } else { 30 } + rng.random_range(0..10)).min(100);
            let created =
                Prec(1_000_000).q(at + Duration::milliseconds(rng.random_range(100..2000)));
            let mut r = RowB::new(&schema::LOAD_INDEXES);
            // Citrix's scale: 10000 is a fully loaded machine.
            r.set("EffectiveLoadIndex", Val::Int(cpu.max(mem) * 100))
                .set("Cpu", Val::Int(cpu))
                .set("Memory", Val::Int(mem))
                .set("Disk", Val::Int(rng.random_range(0..20)))
                .set("Network", Val::Int(rng.random_range(0..10)))
                .set("SessionCount", Val::Int(n))
                .set("MachineId", Val::Guid(info.id))
                .set("CreatedDate", Val::Date(created))
                .set("ModifiedDate", Val::Date(created));
            new.push((created, r));
            at = created + Duration::minutes(30);
        }
    }
    append(rows, li, 1, new);
}

/// For tests: the offsets of the equal-ModifiedDate batch of Connections.
#[allow(dead_code)]
pub fn equal_modified_offsets() -> std::ops::RangeInclusive<usize> {
    EQUAL_MODIFIED_OFFSETS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimOptions;
    use crate::sim::generate::{generate_world, tenant_identity};

    fn world(now: &str, idx: usize) -> (World, Rows) {
        let o = SimOptions {
            now: DateTime::parse_from_rfc3339(now)
                .unwrap()
                .with_timezone(&Utc),
            ..SimOptions::default()
        };
        generate_world(&o, idx, &tenant_identity(o.seed, idx))
    }

    fn v<'a>(def: &EntityDef, r: &'a Row, name: &str) -> &'a Val {
        &r[col(def, name)]
    }

    fn summary_rows<'a>(rows: &'a Rows, set: &str, gran: i64) -> Vec<&'a Row> {
        let def = schema::entity_set(set).unwrap();
        rows[set]
            .iter()
            .filter(|r| v(def, r, "Granularity") == &Val::Int(gran))
            .collect()
    }

    #[test]
    fn grooming_drops_old_samples_and_summaries_and_ids_keep_ascending() {
        let (mut w, mut rows) = world("2024-08-07T09:13:30Z", 1);
        let ru = &schema::RESOURCE_UTILIZATION;
        let max_id = |rows: &Rows, set: &str| {
            let def = schema::entity_set(set).unwrap();
            rows[set]
                .iter()
                .filter_map(|r| int(&r[def.key_index()]))
                .max()
        };
        advance(&mut w, &mut rows, Duration::hours(3));
        let before_ru = rows["ResourceUtilization"].len();
        let before_days = summary_rows(&rows, "MachineSummaries", 1440).len();
        let (ru_max, li) = (
            max_id(&rows, "ResourceUtilization"),
            rows["LoadIndexes"].len(),
        );
        let cutoff = w.now - Duration::hours(1);
        groom(&mut rows, cutoff);
        assert!(rows["ResourceUtilization"].len() < before_ru / 2);
        assert!(
            rows["ResourceUtilization"]
                .iter()
                .all(|r| date(v(ru, r, "CollectedDate")).unwrap() >= cutoff)
        );
        assert_eq!(max_id(&rows, "ResourceUtilization"), ru_max);
        assert_eq!(rows["LoadIndexes"].len(), li, "LoadIndexes are kept");
        let ms = &schema::MACHINE_SUMMARIES;
        for r in &rows["MachineSummaries"] {
            let (at, g) = (
                date(v(ms, r, "SummaryDate")).unwrap(),
                int(v(ms, r, "Granularity")).unwrap(),
            );
            assert!(at + Duration::minutes(2 * g) >= cutoff, "{at} {g}");
        }
        assert_eq!(
            summary_rows(&rows, "MachineSummaries", 1440).len(),
            before_days,
            "yesterday's daily rows stay"
        );
        advance(&mut w, &mut rows, Duration::minutes(30));
        let ids: Vec<i64> = rows["ResourceUtilization"]
            .iter()
            .filter_map(|r| int(&r[ru.key_index()]))
            .collect();
        assert!(
            ids.windows(2).all(|p| p[0] < p[1]),
            "Ids ascend after grooming"
        );
    }

    #[test]
    fn only_complete_intervals_and_the_documented_granularities() {
        let (w, rows) = world("2024-08-07T09:13:30Z", 0);
        for set in [
            "SessionActivitySummaries",
            "LogOnSummaries",
            "FailureLogSummaries",
            "LoadIndexSummaries",
            "MachineSummaries",
            "ResourceUtilizationSummary",
        ] {
            let def = schema::entity_set(set).unwrap();
            let grans: &[i64] = if set == "ResourceUtilizationSummary" {
                &[10, 60, 1440]
            } else {
                &[1, 60, 1440]
            };
            assert!(!rows[set].is_empty(), "{set}");
            for r in &rows[set] {
                let g = int(v(def, r, "Granularity")).unwrap();
                let a = date(v(def, r, "SummaryDate")).unwrap();
                assert!(grans.contains(&g), "{set} granularity {g}");
                assert_eq!(a.timestamp() % (g * 60), 0, "{set} UTC-aligned");
                assert!(
                    a + Duration::minutes(g) <= w.now,
                    "{set}: incomplete {a} {g}"
                );
                assert!(a >= w.history_start, "{set}: partial first interval");
                if g == 1 {
                    assert!(a >= w.now - Duration::hours(summary::MINUTE_WINDOW_HOURS));
                }
            }
            // The last complete hour is there (for the sets with a row per hour).
            if set == "MachineSummaries" {
                let last = summary::floor_to(w.now, 3600) - Duration::hours(1);
                assert!(
                    rows[set]
                        .iter()
                        .any(|r| date(v(def, r, "SummaryDate")) == Some(last))
                );
            }
        }
    }

    /// Recomputes SessionActivitySummaries from Sessions/Connections/Machines for every
    /// interval, with the rules written out plainly (max over minutes of sessions overlapping).
    #[test]
    fn session_activity_matches_raw_rows() {
        let (w, rows) = world("2024-08-07T09:13:30Z", 0);
        let (s, c, m, sas) = (
            &schema::SESSIONS,
            &schema::CONNECTIONS,
            &schema::MACHINES,
            &schema::SESSION_ACTIVITY_SUMMARIES,
        );
        let dg_of: HashMap<u128, u128> = rows["Machines"]
            .iter()
            .map(|r| {
                (
                    guid(v(m, r, "Id")).unwrap(),
                    guid(v(m, r, "DesktopGroupId")).unwrap(),
                )
            })
            .collect();
        let overlaps = |a: Dt, e: Dt, m0: Dt| a < m0 + Duration::minutes(1) && e > m0;
        let mut checked = 0;
        for r in summary_rows(&rows, "SessionActivitySummaries", 60)
            .into_iter()
            .chain(
                summary_rows(&rows, "SessionActivitySummaries", 1)
                    .into_iter()
                    .step_by(17),
            )
        {
            let a = date(v(sas, r, "SummaryDate")).unwrap();
            let g = int(v(sas, r, "Granularity")).unwrap();
            let dg = guid(v(sas, r, "DesktopGroupId")).unwrap();
            let mut max_conc = 0;
            let mut max_conn = 0;
            for k in 0..g {
                let m0 = a + Duration::minutes(k);
                let mut conc = 0;
                let mut conn = 0;
                for sr in &rows["Sessions"] {
                    if v(s, sr, "FailureId") != &Val::Null
                        || guid(v(s, sr, "MachineId")).and_then(|x| dg_of.get(&x)) != Some(&dg)
                    {
                        continue;
                    }
                    let st = date(v(s, sr, "StartDate")).unwrap();
                    let end = date(v(s, sr, "EndDate")).unwrap_or(w.now);
                    if overlaps(st, end, m0) {
                        conc += 1;
                        let key = v(s, sr, "SessionKey");
                        let connected = rows["Connections"].iter().any(|cr| {
                            v(c, cr, "SessionKey") == key && {
                                let b = date(v(c, cr, "BrokeringDate")).unwrap();
                                let d = date(v(c, cr, "DisconnectDate")).unwrap_or(end).min(end);
                                overlaps(b, d, m0)
                            }
                        });
                        conn += i64::from(connected);
                    }
                }
                max_conc = max_conc.max(conc);
                max_conn = max_conn.max(conn);
            }
            let b = a + Duration::minutes(g);
            let (mut total, mut count) = (0, 0);
            for sr in &rows["Sessions"] {
                let st = date(v(s, sr, "StartDate")).unwrap();
                if let Some(d) = int(v(s, sr, "LogOnDuration"))
                    && st >= a
                    && st < b
                    && guid(v(s, sr, "MachineId")).and_then(|x| dg_of.get(&x)) == Some(&dg)
                {
                    total += d;
                    count += 1;
                }
            }
            assert_eq!(
                v(sas, r, "ConcurrentSessionCount"),
                &Val::Int(max_conc),
                "{a} {g}"
            );
            assert_eq!(
                v(sas, r, "ConnectedSessionCount"),
                &Val::Int(max_conn),
                "{a} {g}"
            );
            assert_eq!(v(sas, r, "TotalLogOnDuration"), &Val::Int(total), "{a} {g}");
            assert_eq!(v(sas, r, "TotalLogOnCount"), &Val::Int(count), "{a} {g}");
            checked += 1;
            if checked > 40 {
                break;
            }
        }
        assert!(checked > 10);
    }

    #[test]
    fn logon_failure_and_load_summaries_add_up() {
        let (w, rows) = world("2024-08-07T09:13:30Z", 0);
        let start = summary::floor_to(w.history_start, 3600) + Duration::hours(1);
        let end = summary::floor_to(w.now, 3600);
        let in_hours = |d: Dt| d >= start && d < end;
        // Logons: hourly TotalCount sums to the completed first logons in those hours.
        let (c, lo) = (&schema::CONNECTIONS, &schema::LOG_ON_SUMMARIES);
        let logons: Vec<&Row> = rows["Connections"]
            .iter()
            .filter(|r| {
                v(c, r, "IsReconnect") == &Val::Bool(false)
                    && v(c, r, "LogOnEndDate") != &Val::Null
                    && in_hours(date(v(c, r, "LogOnStartDate")).unwrap())
            })
            .collect();
        let hourly = summary_rows(&rows, "LogOnSummaries", 60);
        let sum = |name: &str| -> i64 { hourly.iter().map(|r| int(v(lo, r, name)).unwrap()).sum() };
        assert_eq!(sum("TotalCount"), logons.len() as i64);
        let gpo: i64 = logons
            .iter()
            .filter_map(|r| summary::phase_ms(r, "GpoStartDate", "GpoEndDate"))
            .sum();
        assert_eq!(sum("GpoDuration"), gpo);
        // Failures: hourly FailureCount sums to the connection failures in those hours.
        let (cfl, fls) = (
            &schema::CONNECTION_FAILURE_LOGS,
            &schema::FAILURE_LOG_SUMMARIES,
        );
        let n = rows["ConnectionFailureLogs"]
            .iter()
            .filter(|r| in_hours(date(v(cfl, r, "FailureDate")).unwrap()))
            .count() as i64;
        let got: i64 = summary_rows(&rows, "FailureLogSummaries", 60)
            .iter()
            .filter(|r| v(fls, r, "FailureCategory") == &Val::Int(1))
            .map(|r| int(v(fls, r, "FailureCount")).unwrap())
            .sum();
        assert_eq!(got, n);
        assert!(
            rows["FailureLogSummaries"]
                .iter()
                .any(|r| v(fls, r, "FailureCategory") == &Val::Int(2)),
            "machine failures summarised too"
        );
        // Load indexes: SumCount and SumCpu per hour.
        let (li, lis) = (&schema::LOAD_INDEXES, &schema::LOAD_INDEX_SUMMARIES);
        for r in summary_rows(&rows, "LoadIndexSummaries", 60)
            .into_iter()
            .take(30)
        {
            let a = date(v(lis, r, "SummaryDate")).unwrap();
            let mid = v(lis, r, "MachineId");
            let raw: Vec<&Row> = rows["LoadIndexes"]
                .iter()
                .filter(|x| {
                    let d = date(v(li, x, "CreatedDate")).unwrap();
                    v(li, x, "MachineId") == mid && d >= a && d < a + Duration::hours(1)
                })
                .collect();
            assert_eq!(v(lis, r, "SumCount"), &Val::Int(raw.len() as i64));
            let cpu: i64 = raw.iter().map(|x| int(v(li, x, "Cpu")).unwrap()).sum();
            assert_eq!(v(lis, r, "SumCpu"), &Val::Int(cpu));
        }
    }

    #[test]
    fn derived_rows_reference_existing_rows() {
        let (_, rows) = world("2024-08-07T09:13:30Z", 0);
        let keys = |set: &str| -> std::collections::HashSet<crate::sim::value::Key> {
            let def = schema::entity_set(set).unwrap();
            rows[set]
                .iter()
                .filter_map(|r| r[def.key_index()].key())
                .collect()
        };
        let check = |set: &str, fk: &str, target: &str| {
            let def = schema::entity_set(set).unwrap();
            let ks = keys(target);
            assert!(!rows[set].is_empty(), "{set}");
            for r in &rows[set] {
                let val = v(def, r, fk);
                assert!(
                    val == &Val::Null || val.key().is_some_and(|k| ks.contains(&k)),
                    "{set}.{fk} dangling"
                );
            }
        };
        check("MachineFailureLogs", "MachineId", "Machines");
        check("MachineHotfixLogs", "MachineId", "Machines");
        check("MachineHotfixLogs", "HotfixId", "Hotfixes");
        check("ApplicationInstances", "ApplicationId", "Applications");
        check("ApplicationInstances", "SessionKey", "Sessions");
        check("SessionMetrics", "SessionId", "Sessions");
        check("ResourceUtilization", "MachineId", "Machines");
        check("MachineMetric", "MachineId", "Machines");
        // Application instances belong to application sessions only.
        let s = &schema::SESSIONS;
        let app_sessions: std::collections::HashSet<u128> = rows["Sessions"]
            .iter()
            .filter(|r| v(s, r, "SessionType") == &Val::Int(1))
            .filter_map(|r| guid(v(s, r, "SessionKey")))
            .collect();
        let ai = &schema::APPLICATION_INSTANCES;
        assert!(
            rows["ApplicationInstances"]
                .iter()
                .all(|r| guid(v(ai, r, "SessionKey")).is_some_and(|k| app_sessions.contains(&k)))
        );
        // Every machine in a failure FaultState has an open failure log.
        let m = &schema::MACHINES;
        let mfl = &schema::MACHINE_FAILURE_LOGS;
        for r in rows["Machines"]
            .iter()
            .filter(|r| int(v(m, r, "FaultState")).is_some_and(|f| f >= 2))
        {
            assert!(rows["MachineFailureLogs"].iter().any(|f| {
                v(mfl, f, "MachineId") == v(m, r, "Id") && v(mfl, f, "FailureEndDate") == &Val::Null
            }));
        }
        assert!(schema::MACHINE_METRIC.prop("ModifiedDate").is_none());
    }

    #[test]
    fn equal_modified_dates_straddle_the_first_page_boundary() {
        for now in ["2024-08-07T09:13:30Z", "2024-08-11T23:00:00Z"] {
            let (_, rows) = world(now, 0);
            let c = &schema::CONNECTIONS;
            let mut order: Vec<(Dt, i64)> = rows["Connections"]
                .iter()
                .map(|r| {
                    (
                        date(v(c, r, "ModifiedDate")).unwrap(),
                        int(v(c, r, "Id")).unwrap(),
                    )
                })
                .collect();
            order.sort();
            let t = order[98].0;
            assert!(
                (97..=101).all(|i| order[i].0 == t),
                "{now}: offsets 97..=101 share one ModifiedDate"
            );
        }
    }

    #[test]
    fn advance_appends_ends_sessions_and_adds_late_rows() {
        let (mut w, mut rows) = world("2024-08-07T09:13:30Z", 0);
        let (s, cfl) = (&schema::SESSIONS, &schema::CONNECTION_FAILURE_LOGS);
        let old = w.now;
        let before: HashMap<&str, usize> = rows.iter().map(|(k, v)| (*k, v.len())).collect();
        let open_before = w.open.len();
        advance(&mut w, &mut rows, Duration::minutes(30));
        assert_eq!(w.now, old + Duration::minutes(30));
        for set in [
            "Sessions",
            "Connections",
            "LoadIndexes",
            "ResourceUtilization",
            "MachineMetric",
            "SessionMetrics",
            "SessionActivitySummaries",
            "MachineSummaries",
            "ResourceUtilizationSummary",
            "ConnectionFailureLogs",
        ] {
            assert!(rows[set].len() > before[set], "{set} grew");
        }
        // Sessions that ended: EndDate and ModifiedDate after the old now.
        let ended: Vec<&Row> = rows["Sessions"][..before["Sessions"]]
            .iter()
            .filter(|r| date(v(s, r, "EndDate")).is_some_and(|e| e > old))
            .collect();
        assert!(!ended.is_empty() && w.open.len() < open_before + 30);
        for r in &ended {
            assert!(date(v(s, r, "ModifiedDate")).unwrap() > old);
            assert_eq!(v(s, r, "ConnectionState"), &Val::Int(3));
        }
        // Late rows: ModifiedDate in [old - 90 s, old), never earlier.
        let late: Vec<Dt> = rows["ConnectionFailureLogs"][before["ConnectionFailureLogs"]..]
            .iter()
            .map(|r| date(v(cfl, r, "ModifiedDate")).unwrap())
            .filter(|d| *d < old)
            .collect();
        assert_eq!(late.len(), LATE_ROWS);
        for d in late {
            assert!(d >= old - Duration::seconds(LATE_MAX_SECS), "{d}");
        }
        for r in &rows["Sessions"][before["Sessions"]..] {
            let m = date(v(s, r, "ModifiedDate")).unwrap();
            assert!(m >= old - Duration::seconds(LATE_MAX_SECS) && m <= w.now);
        }
        // Summary rows stay complete-only; the new minutes are there.
        let sas = &schema::MACHINE_SUMMARIES;
        for r in &rows["MachineSummaries"] {
            let a = date(v(sas, r, "SummaryDate")).unwrap();
            let g = int(v(sas, r, "Granularity")).unwrap();
            assert!(a + Duration::minutes(g) <= w.now);
        }
        let last_minute = summary::floor_to(w.now, 60) - Duration::minutes(1);
        assert!(
            rows["MachineSummaries"]
                .iter()
                .any(|r| date(v(sas, r, "SummaryDate")) == Some(last_minute))
        );
        // Keys stay unique.
        for (set, v) in &rows {
            let def = schema::entity_set(set).unwrap();
            let mut ks: Vec<_> = v.iter().filter_map(|r| r[def.key_index()].key()).collect();
            let n = ks.len();
            ks.sort();
            ks.dedup();
            assert_eq!(ks.len(), n, "{set} keys unique");
        }
    }

    #[test]
    fn advances_are_deterministic() {
        let run = || {
            let (mut w, mut rows) = world("2024-08-07T07:40:00Z", 1);
            advance(&mut w, &mut rows, Duration::minutes(20));
            advance(&mut w, &mut rows, Duration::minutes(45));
            rows
        };
        let (a, b) = (run(), run());
        for set in [
            "Sessions",
            "Connections",
            "SessionActivitySummaries",
            "LoadIndexes",
        ] {
            assert_eq!(a[set], b[set], "{set}");
        }
    }
}
