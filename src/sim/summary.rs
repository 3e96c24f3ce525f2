//! Summary rows computed from a tenant's raw rows with Citrix's consolidation rules
//! (citrix-monitor-api.md §6.1), plus the resource samples (ResourceUtilization, MachineMetric,
//! SessionMetrics) as pure functions of (seed, tenant, machine or session, time slot), so that
//! a summary over hours needs no stored raw rows. It computes rows for a window of interval
//! ends; it must not decide retention, assign Ids or mutate tables (advance.rs does).
//!
//! Rules, per set (an interval is `[SummaryDate, SummaryDate + Granularity)`, UTC-aligned):
//! - an interval is summarised only when complete (`end <= now`) and when it starts at or after
//!   the start of the simulated history (so the first partial interval is absent too);
//! - SessionActivitySummaries (per delivery group; 1/60/1440): a minute's Concurrent,
//!   Connected and Disconnected counts are the sessions (failed launches excluded) whose
//!   lifetime / connected spans / disconnected gaps overlap that minute at all; longer
//!   intervals take the maximum of their minutes. TotalLogOnDuration and TotalLogOnCount are the
//!   sum and count of `Session.LogOnDuration` of sessions whose StartDate is in the interval.
//!   A row is emitted when any value is non-zero.
//! - LogOnSummaries (per group): first logons (`IsReconnect` false) with a LogOnEndDate, by
//!   LogOnStartDate; per phase the sum of durations (ms) and the count of logons having that
//!   phase; VMPowerOnDuration = VMStartDuration, VMRegistrationDuration = 0.
//! - FailureLogSummaries: ConnectionFailureLogs by FailureDate (FailureCategory 1, FailureCode =
//!   ConnectionFailureEnumValue) and MachineFailureLogs by FailureStartDate (category 2, code =
//!   FaultState), FailureCount = number of logs per (group, category, code). Launches that found
//!   no machine count under a null DesktopGroupId.
//! - LoadIndexSummaries (per machine): Sum* and SumCount over the LoadIndexes rows whose
//!   CreatedDate is in the interval.
//! - MachineSummaries (per group, every interval): counts over the group's active machines.
//! - ResourceUtilizationSummary (per powered-on machine; 10/60/1440): average and peak of the
//!   5-minute samples collected in the interval; TotalSessionCount = sessions on the machine
//!   overlapping the interval.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};

use super::data::Row;
use super::generate::MachineInfo;
use super::schema::{self, EntityDef};
use super::value::Val;

type Dt = DateTime<Utc>;

/// Minute-granularity summary rows are produced for intervals starting in the last this long
/// only (Citrix grooms minute data after 3 days; a harvester reads minutes only for the last
/// hour or so, and a thousand simulated tenants must stay small).
pub const MINUTE_WINDOW_HOURS: i64 = 1;
/// Raw ResourceUtilization, MachineMetric and SessionMetrics rows are kept for this long
/// (Citrix keeps raw resource data 1 day; see the note above).
pub const RAW_WINDOW_HOURS: i64 = 1;
pub const RU_STEP_SECS: i64 = 300;
pub const MM_STEP_SECS: i64 = 600;
pub const SM_STEP_SECS: i64 = 600;

/// Which interval ends to produce: `(from, to]`, never before `history_start`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub history_start: Dt,
    pub from: Dt,
    pub to: Dt,
}

impl Window {
    /// Starts of the complete intervals of `gran` minutes whose end is in `(from, to]`.
    pub fn intervals(&self, gran: i64) -> Vec<Dt> {
        let g = gran * 60;
        let mut a = ceil_to(self.history_start, g);
        if gran == 1 {
            a = a.max(ceil_to(self.to - Duration::hours(MINUTE_WINDOW_HOURS), g));
        }
        let mut out = Vec::new();
        while a + Duration::seconds(g) <= self.to {
            if a + Duration::seconds(g) > self.from {
                out.push(a);
            }
            a += Duration::seconds(g);
        }
        out
    }
}

fn ceil_to(t: Dt, secs: i64) -> Dt {
    let ts = t.timestamp();
    let sub = t.timestamp_subsec_nanos() > 0;
    let mut s = ts.div_euclid(secs) * secs;
    if s < ts || (s == ts && sub) {
        s += secs;
    }
    DateTime::from_timestamp(s, 0).unwrap_or(t)
}

pub fn floor_to(t: Dt, secs: i64) -> Dt {
    DateTime::from_timestamp(t.timestamp().div_euclid(secs) * secs, 0).unwrap_or(t)
}

pub fn mix(parts: &[u64]) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15u64;
    for &p in parts {
        h ^= p;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 31;
        h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 29;
    }
    h
}

pub fn col(def: &EntityDef, name: &str) -> usize {
    def.prop(name)
        .unwrap_or_else(|| panic!("{} has no {name}", def.set))
}

pub fn date(v: &Val) -> Option<Dt> {
    match v {
        Val::Date(d) => Some(*d),
        _ => None,
    }
}

pub fn int(v: &Val) -> Option<i64> {
    match v {
        Val::Int(i) => Some(*i),
        _ => None,
    }
}

pub fn guid(v: &Val) -> Option<u128> {
    match v {
        Val::Guid(g) => Some(*g),
        _ => None,
    }
}

/// A summary row under construction: values by property name, Id left null.
pub struct Out {
    pub def: &'static EntityDef,
    pub vals: Vec<Val>,
}

impl Out {
    fn new(def: &'static EntityDef, at: Dt, gran: i64, to: Dt) -> Out {
        let mut o = Out {
            def,
            vals: vec![Val::Null; def.props.len()],
        };
        let end = at + Duration::minutes(gran);
        // Consolidation writes the row shortly after the interval ends.
        let lag = Duration::milliseconds((mix(&[at.timestamp() as u64, gran as u64]) % 900) as i64);
        let written = (end + lag).min(to);
        o.set("SummaryDate", Val::Date(at))
            .set("Granularity", Val::Int(gran))
            .set("CreatedDate", Val::Date(written))
            .set("ModifiedDate", Val::Date(written));
        o
    }

    fn set(&mut self, name: &str, v: Val) -> &mut Out {
        let i = col(self.def, name);
        self.vals[i] = v;
        self
    }

    pub fn done(self) -> Row {
        self.vals.into_boxed_slice()
    }
}

/// Machine id → delivery group id, from the Machines rows.
fn machine_groups(rows: &HashMap<&'static str, Vec<Row>>) -> HashMap<u128, u128> {
    let m = &schema::MACHINES;
    let (id, dg) = (col(m, "Id"), col(m, "DesktopGroupId"));
    rows.get("Machines")
        .map(|v| {
            v.iter()
                .filter_map(|r| Some((guid(&r[id])?, guid(&r[dg])?)))
                .collect()
        })
        .unwrap_or_default()
}

fn bucket(t: Dt, gran: i64) -> Dt {
    floor_to(t, gran * 60)
}

/// Every summary set for the interval ends in `w`, keyed by entity set name (Ids unset).
pub fn summaries(
    rows: &HashMap<&'static str, Vec<Row>>,
    machines: &[MachineInfo],
    seed: u64,
    idx: usize,
    w: Window,
) -> Vec<(&'static str, Vec<Out>)> {
    let groups = machine_groups(rows);
    vec![
        (
            "SessionActivitySummaries",
            session_activity(rows, &groups, w),
        ),
        ("LogOnSummaries", logons(rows, &groups, w)),
        ("FailureLogSummaries", failures(rows, &groups, w)),
        ("LoadIndexSummaries", load_indexes(rows, w)),
        ("MachineSummaries", machine_summaries(rows, w)),
        (
            "ResourceUtilizationSummary",
            resource_summaries(machines, &groups, seed, idx, w),
        ),
    ]
}

/// Per-session spans: (lifetime, connected spans, disconnected gaps), failed launches skipped.
type Spans = (u128, (Dt, Dt), Vec<(Dt, Dt)>, Vec<(Dt, Dt)>);

fn session_spans(
    rows: &HashMap<&'static str, Vec<Row>>,
    groups: &HashMap<u128, u128>,
    to: Dt,
) -> Vec<Spans> {
    let (s, c) = (&schema::SESSIONS, &schema::CONNECTIONS);
    let mut conns: HashMap<u128, Vec<(Dt, Option<Dt>)>> = HashMap::new();
    for r in rows.get("Connections").into_iter().flatten() {
        if let (Some(k), Some(b)) = (
            guid(&r[col(c, "SessionKey")]),
            date(&r[col(c, "BrokeringDate")]),
        ) {
            conns
                .entry(k)
                .or_default()
                .push((b, date(&r[col(c, "DisconnectDate")])));
        }
    }
    let mut out = Vec::new();
    for r in rows.get("Sessions").into_iter().flatten() {
        if r[col(s, "FailureId")] != Val::Null {
            continue;
        }
        let (Some(key), Some(start)) = (
            guid(&r[col(s, "SessionKey")]),
            date(&r[col(s, "StartDate")]),
        ) else {
            continue;
        };
        let Some(dg) = guid(&r[col(s, "MachineId")]).and_then(|m| groups.get(&m).copied()) else {
            continue;
        };
        let end = date(&r[col(s, "EndDate")]).unwrap_or(to).min(to);
        let mut cs = conns.remove(&key).unwrap_or_default();
        cs.sort();
        let (mut connected, mut gaps) = (Vec::new(), Vec::new());
        for (i, (b, d)) in cs.iter().enumerate() {
            let next = cs.get(i + 1).map_or(end, |n| n.0.min(end));
            let d_end = d.unwrap_or(end).min(next);
            connected.push((*b, d_end));
            if d_end < next {
                gaps.push((d_end, next));
            }
        }
        out.push((dg, (start, end), connected, gaps));
    }
    out
}

/// Minute counts per group over `[base, base + n minutes)`: each session counts once per
/// minute its spans overlap.
fn minute_counts(spans: &[(u128, Vec<(Dt, Dt)>)], base: Dt, n: usize) -> HashMap<u128, Vec<i64>> {
    let mut diff: HashMap<u128, Vec<i64>> = HashMap::new();
    for (dg, list) in spans {
        let d = diff.entry(*dg).or_insert_with(|| vec![0; n + 1]);
        let mut ranges: Vec<(usize, usize)> = list
            .iter()
            .filter(|(s, e)| e > s)
            .filter_map(|(s, e)| {
                let first = (*s - base).num_seconds().div_euclid(60).max(0);
                // Last minute overlapped: the one containing e - 1 tick.
                let last = ((*e - base).num_nanoseconds()?.saturating_sub(1))
                    .div_euclid(60_000_000_000)
                    .min(n as i64 - 1);
                (last >= first).then_some((first as usize, last as usize))
            })
            .collect();
        ranges.sort();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for r in ranges {
            match merged.last_mut() {
                Some(m) if r.0 <= m.1 + 1 => m.1 = m.1.max(r.1),
                _ => merged.push(r),
            }
        }
        for (a, b) in merged {
            d[a] += 1;
            d[b + 1] -= 1;
        }
    }
    diff.into_iter()
        .map(|(k, d)| {
            let mut acc = 0;
            let v = d[..n]
                .iter()
                .map(|x| {
                    acc += x;
                    acc
                })
                .collect();
            (k, v)
        })
        .collect()
}

fn session_activity(
    rows: &HashMap<&'static str, Vec<Row>>,
    groups: &HashMap<u128, u128>,
    w: Window,
) -> Vec<Out> {
    let base = floor_to(w.history_start, 60);
    let n = ((w.to - base).num_seconds() / 60).max(0) as usize;
    let spans = session_spans(rows, groups, w.to);
    let conc: Vec<_> = spans.iter().map(|s| (s.0, vec![s.1])).collect();
    let conn: Vec<_> = spans.iter().map(|s| (s.0, s.2.clone())).collect();
    let disc: Vec<_> = spans.iter().map(|s| (s.0, s.3.clone())).collect();
    let (conc, conn, disc) = (
        minute_counts(&conc, base, n),
        minute_counts(&conn, base, n),
        minute_counts(&disc, base, n),
    );
    // Logons by group and start.
    let s = &schema::SESSIONS;
    let mut logons: HashMap<u128, Vec<(Dt, i64)>> = HashMap::new();
    for r in rows.get("Sessions").into_iter().flatten() {
        if let (Some(d), Some(start), Some(dg)) = (
            int(&r[col(s, "LogOnDuration")]),
            date(&r[col(s, "StartDate")]),
            guid(&r[col(s, "MachineId")]).and_then(|m| groups.get(&m)),
        ) {
            logons.entry(*dg).or_default().push((start, d));
        }
    }
    let mut dgs: Vec<u128> = conc.keys().chain(logons.keys()).copied().collect();
    dgs.sort();
    dgs.dedup();
    let mut out = Vec::new();
    for gran in [1, 60, 1440] {
        for a in w.intervals(gran) {
            let m0 = ((a - base).num_seconds() / 60) as usize;
            let m1 = (m0 + gran as usize).min(n);
            for dg in &dgs {
                let max = |m: &HashMap<u128, Vec<i64>>| {
                    m.get(dg)
                        .and_then(|v| v.get(m0..m1))
                        .and_then(|v| v.iter().max().copied())
                        .unwrap_or(0)
                };
                let (c, cn, dc) = (max(&conc), max(&conn), max(&disc));
                let b = a + Duration::minutes(gran);
                let (mut total, mut count) = (0i64, 0i64);
                for (t, d) in logons.get(dg).into_iter().flatten() {
                    if *t >= a && *t < b {
                        total += d;
                        count += 1;
                    }
                }
                if c == 0 && cn == 0 && dc == 0 && count == 0 {
                    continue;
                }
                let mut o = Out::new(&schema::SESSION_ACTIVITY_SUMMARIES, a, gran, w.to);
                o.set("DesktopGroupId", Val::Guid(*dg))
                    .set("ConcurrentSessionCount", Val::Int(c))
                    .set("ConnectedSessionCount", Val::Int(cn))
                    .set("DisconnectedSessionCount", Val::Int(dc))
                    .set("TotalLogOnDuration", Val::Int(total))
                    .set("TotalLogOnCount", Val::Int(count));
                out.push(o);
            }
        }
    }
    out
}

/// (name in LogOnSummaries, start column, end column or duration column).
const PHASES: &[(&str, &str, &str)] = &[
    ("Brokering", "", "BrokeringDuration"),
    ("VMStart", "VMStartStartDate", "VMStartEndDate"),
    ("Hdx", "HdxStartDate", "HdxEndDate"),
    ("Authentication", "", "AuthenticationDuration"),
    ("Gpo", "GpoStartDate", "GpoEndDate"),
    (
        "LogOnScripts",
        "LogOnScriptsStartDate",
        "LogOnScriptsEndDate",
    ),
    ("Interactive", "InteractiveStartDate", "InteractiveEndDate"),
    ("ProfileLoad", "ProfileLoadStartDate", "ProfileLoadEndDate"),
];

/// (total ms, count, per phase (sum ms, count)).
type LogOnSums = (i64, i64, [(i64, i64); 8]);

/// Duration in ms of a phase of a connection row, if present.
pub fn phase_ms(r: &Row, start: &str, end: &str) -> Option<i64> {
    let c = &schema::CONNECTIONS;
    if start.is_empty() {
        return int(&r[col(c, end)]);
    }
    Some((date(&r[col(c, end)])? - date(&r[col(c, start)])?).num_milliseconds())
}

fn logons(
    rows: &HashMap<&'static str, Vec<Row>>,
    groups: &HashMap<u128, u128>,
    w: Window,
) -> Vec<Out> {
    let (s, c) = (&schema::SESSIONS, &schema::CONNECTIONS);
    let session_dg: HashMap<u128, u128> = rows
        .get("Sessions")
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let m = guid(&r[col(s, "MachineId")])?;
            Some((guid(&r[col(s, "SessionKey")])?, *groups.get(&m)?))
        })
        .collect();
    // (group, start, total, phases)
    let mut items: Vec<(u128, Dt, i64, [Option<i64>; 8])> = Vec::new();
    for r in rows.get("Connections").into_iter().flatten() {
        if r[col(c, "IsReconnect")] != Val::Bool(false) {
            continue;
        }
        let (Some(st), Some(en), Some(dg)) = (
            date(&r[col(c, "LogOnStartDate")]),
            date(&r[col(c, "LogOnEndDate")]),
            guid(&r[col(c, "SessionKey")]).and_then(|k| session_dg.get(&k)),
        ) else {
            continue;
        };
        let mut ph = [None; 8];
        for (i, (_, a, b)) in PHASES.iter().enumerate() {
            ph[i] = phase_ms(r, a, b);
        }
        items.push((*dg, st, (en - st).num_milliseconds(), ph));
    }
    let mut out = Vec::new();
    for gran in [1, 60, 1440] {
        for a in w.intervals(gran) {
            let b = a + Duration::minutes(gran);
            let mut per: BTreeMap<u128, LogOnSums> = BTreeMap::new();
            for (dg, st, total, ph) in &items {
                if *st < a || *st >= b {
                    continue;
                }
                let e = per.entry(*dg).or_default();
                e.0 += total;
                e.1 += 1;
                for (i, p) in ph.iter().enumerate() {
                    if let Some(p) = p {
                        e.2[i].0 += p;
                        e.2[i].1 += 1;
                    }
                }
            }
            for (dg, (total, count, ph)) in per {
                let mut o = Out::new(&schema::LOG_ON_SUMMARIES, a, gran, w.to);
                o.set("DesktopGroupId", Val::Guid(dg))
                    .set("TotalDuration", Val::Int(total))
                    .set("TotalCount", Val::Int(count))
                    .set("VMPowerOnDuration", Val::Int(ph[1].0))
                    .set("VMRegistrationDuration", Val::Int(0));
                for (i, (name, _, _)) in PHASES.iter().enumerate() {
                    o.set(&format!("{name}Duration"), Val::Int(ph[i].0))
                        .set(&format!("{name}Count"), Val::Int(ph[i].1));
                }
                out.push(o);
            }
        }
    }
    out
}

fn failures(
    rows: &HashMap<&'static str, Vec<Row>>,
    groups: &HashMap<u128, u128>,
    w: Window,
) -> Vec<Out> {
    let (cfl, mfl) = (
        &schema::CONNECTION_FAILURE_LOGS,
        &schema::MACHINE_FAILURE_LOGS,
    );
    // (group, category, code, date)
    let mut items: Vec<(Option<u128>, i64, i64, Dt)> = Vec::new();
    for r in rows.get("ConnectionFailureLogs").into_iter().flatten() {
        if let (Some(d), Some(code)) = (
            date(&r[col(cfl, "FailureDate")]),
            int(&r[col(cfl, "ConnectionFailureEnumValue")]),
        ) {
            let dg = guid(&r[col(cfl, "MachineId")]).and_then(|m| groups.get(&m).copied());
            items.push((dg, 1, code, d));
        }
    }
    for r in rows.get("MachineFailureLogs").into_iter().flatten() {
        if let (Some(d), Some(code)) = (
            date(&r[col(mfl, "FailureStartDate")]),
            int(&r[col(mfl, "FaultState")]),
        ) {
            let dg = guid(&r[col(mfl, "MachineId")]).and_then(|m| groups.get(&m).copied());
            items.push((dg, 2, code, d));
        }
    }
    let mut out = Vec::new();
    for gran in [1, 60, 1440] {
        let wanted: std::collections::HashSet<Dt> = w.intervals(gran).into_iter().collect();
        let mut per: BTreeMap<(Dt, Option<u128>, i64, i64), i64> = BTreeMap::new();
        for (dg, cat, code, d) in &items {
            let a = bucket(*d, gran);
            if wanted.contains(&a) {
                *per.entry((a, *dg, *cat, *code)).or_default() += 1;
            }
        }
        for ((a, dg, cat, code), n) in per {
            let mut o = Out::new(&schema::FAILURE_LOG_SUMMARIES, a, gran, w.to);
            o.set("DesktopGroupId", dg.map_or(Val::Null, Val::Guid))
                .set("FailureCategory", Val::Int(cat))
                .set("FailureCode", Val::Int(code))
                .set("FailureCount", Val::Int(n));
            out.push(o);
        }
    }
    out
}

fn load_indexes(rows: &HashMap<&'static str, Vec<Row>>, w: Window) -> Vec<Out> {
    let li = &schema::LOAD_INDEXES;
    let names = [
        ("SumLoadIndex", "EffectiveLoadIndex"),
        ("SumCpu", "Cpu"),
        ("SumNetwork", "Network"),
        ("SumDisk", "Disk"),
        ("SumMemory", "Memory"),
        ("SumSessionCount", "SessionCount"),
    ];
    let mut out = Vec::new();
    for gran in [1, 60, 1440] {
        let wanted: std::collections::HashSet<Dt> = w.intervals(gran).into_iter().collect();
        let mut per: BTreeMap<(Dt, u128), (i64, [i64; 6])> = BTreeMap::new();
        for r in rows.get("LoadIndexes").into_iter().flatten() {
            let (Some(d), Some(m)) = (
                date(&r[col(li, "CreatedDate")]),
                guid(&r[col(li, "MachineId")]),
            ) else {
                continue;
            };
            let a = bucket(d, gran);
            if !wanted.contains(&a) {
                continue;
            }
            let e = per.entry((a, m)).or_default();
            e.0 += 1;
            for (i, (_, src)) in names.iter().enumerate() {
                e.1[i] += int(&r[col(li, src)]).unwrap_or(0);
            }
        }
        for ((a, m), (n, sums)) in per {
            let mut o = Out::new(&schema::LOAD_INDEX_SUMMARIES, a, gran, w.to);
            o.set("MachineId", Val::Guid(m))
                .set("SumCount", Val::Int(n));
            for (i, (name, _)) in names.iter().enumerate() {
                o.set(name, Val::Int(sums[i]));
            }
            out.push(o);
        }
    }
    out
}

fn machine_summaries(rows: &HashMap<&'static str, Vec<Row>>, w: Window) -> Vec<Out> {
    let m = &schema::MACHINES;
    let mut per: BTreeMap<u128, [i64; 4]> = BTreeMap::new();
    for r in rows.get("Machines").into_iter().flatten() {
        if r[col(m, "LifecycleState")] != Val::Int(0) {
            continue;
        }
        let Some(dg) = guid(&r[col(m, "DesktopGroupId")]) else {
            continue;
        };
        let e = per.entry(dg).or_default();
        e[0] += i64::from(r[col(m, "CurrentPowerState")] == Val::Int(3));
        e[1] += i64::from(r[col(m, "CurrentRegistrationState")] == Val::Int(1));
        e[2] += i64::from(r[col(m, "IsInMaintenanceMode")] == Val::Bool(true));
        e[3] += 1;
    }
    let mut out = Vec::new();
    for gran in [1, 60, 1440] {
        for a in w.intervals(gran) {
            for (dg, c) in &per {
                let mut o = Out::new(&schema::MACHINE_SUMMARIES, a, gran, w.to);
                o.set("DesktopGroupId", Val::Guid(*dg))
                    .set("PoweredOnMachinesCount", Val::Int(c[0]))
                    .set("RegisteredMachinesCount", Val::Int(c[1]))
                    .set("MachinesInMaintenanceModeCount", Val::Int(c[2]))
                    .set("MachinesCount", Val::Int(c[3]));
                out.push(o);
            }
        }
    }
    out
}

/// Sessions on a machine at an instant.
pub fn sessions_at(info: &MachineInfo, t: Dt) -> i64 {
    info.sessions
        .iter()
        .filter(|(s, e)| *s <= t && e.is_none_or(|e| e > t))
        .count() as i64
}

/// (CollectedDate, PercentCpu, UsedMemory MB, TotalMemory MB).
pub type RuSample = (Dt, f64, i64, i64);

/// One ResourceUtilization sample of machine `m` for the slot starting at `slot`:
/// (CollectedDate, PercentCpu, UsedMemory MB, TotalMemory MB); `None` when powered off.
pub fn ru_sample(
    seed: u64,
    idx: usize,
    m: usize,
    info: &MachineInfo,
    slot: Dt,
) -> Option<RuSample> {
    if !info.powered_on {
        return None;
    }
    let jitter = (mix(&[seed, idx as u64, m as u64, 1]) % 20_000) as i64;
    let at = slot + Duration::milliseconds(jitter);
    let h = mix(&[seed, idx as u64, m as u64, slot.timestamp() as u64]);
    let n = sessions_at(info, at);
    let cpu =
        ((n * if info.multi { 7 } else { 35 }) as f64 + 2.0 + (h % 1300) as f64 / 100.0).min(100.0);
    let cpu = (cpu * 10.0).round() / 10.0;
    let total: i64 = if info.multi { 32_768 } else { 16_384 };
    let pct = (20 + n * if info.multi { 5 } else { 30 } + (h >> 20) as i64 % 10).min(100);
    Some((at, cpu, total * pct / 100, total))
}

fn resource_summaries(
    machines: &[MachineInfo],
    groups: &HashMap<u128, u128>,
    seed: u64,
    idx: usize,
    w: Window,
) -> Vec<Out> {
    let mut out = Vec::new();
    for gran in [10, 60, 1440] {
        let mut starts = w.intervals(gran);
        if gran == 10 {
            let keep = w.to - Duration::hours(RAW_WINDOW_HOURS);
            starts.retain(|a| *a >= keep);
        }
        for a in starts {
            let b = a + Duration::minutes(gran);
            for (m, info) in machines.iter().enumerate() {
                let mut samples = Vec::new();
                let mut slot = a;
                while slot < b {
                    if let Some(s) = ru_sample(seed, idx, m, info, slot) {
                        samples.push(s);
                    }
                    slot += Duration::seconds(RU_STEP_SECS);
                }
                if samples.is_empty() {
                    continue;
                }
                let n = samples.len() as f64;
                let avg = |f: fn(&RuSample) -> f64| samples.iter().map(f).sum::<f64>() / n;
                let sessions = info
                    .sessions
                    .iter()
                    .filter(|(s, e)| *s < b && e.is_none_or(|e| e > a))
                    .count() as i64;
                let mut o = Out::new(&schema::RESOURCE_UTILIZATION_SUMMARY, a, gran, w.to);
                o.set("MachineId", Val::Guid(info.id))
                    .set(
                        "DesktopGroupId",
                        groups.get(&info.id).map_or(Val::Null, |g| Val::Guid(*g)),
                    )
                    .set("AvgPercentCpu", Val::Float(avg(|s| s.1)))
                    .set(
                        "PeakPercentCpu",
                        Val::Float(samples.iter().map(|s| s.1).fold(0.0, f64::max)),
                    )
                    .set("AvgUsedMemory", Val::Float(avg(|s| s.2 as f64)))
                    .set(
                        "PeakUsedMemory",
                        Val::Int(samples.iter().map(|s| s.2).max().unwrap_or(0)),
                    )
                    .set("AvgTotalMemory", Val::Float(avg(|s| s.3 as f64)))
                    .set("TotalSessionCount", Val::Int(sessions));
                out.push(o);
            }
        }
    }
    out
}
