//! Incidents written into a simulated tenant's data, so that alert rules can be proven on data
//! that looks like the real thing (citrix-monitor-api.md §3–4): a logon storm with slow profile
//! loads that also saturates the group's machines, a delivery group whose machines deregister
//! (some stuck on boot, some failed to start), a spike of failed launches of one category. The
//! rows get ModifiedDates up to the simulated now, so an incremental harvest picks them up.
//! It changes rows once per incident; it must not hold switches (faults.rs) or serve anything.
//! (`harvest_stop` changes no data: the token hosts refuse, see `Faults::token_fault`.)

use chrono::{DateTime, Duration, Utc};
use rand::Rng;

use super::advance::{NewSession, Rows, add_sessions, append, id_base};
use super::faults::Incident;
use super::generate::{Prec, RowB, Shape, World, tenant_rng};
use super::schema;
use super::value::Val;

type Dt = DateTime<Utc>;

/// ConnectionFailureType names (citrix-monitor-api.md §4.1) with a SessionFailureCode of that
/// category (generate.rs's FAILURE_CATEGORIES pairs them).
const CATEGORY_CODES: &[(&str, i32)] = &[
    ("ClientConnectionFailure", 4), // ConnectionTimeout
    ("MachineFailure", 3),          // RegistrationTimeout
    ("NoCapacityAvailable", 13),    // SessionLimitReached
    ("NoLicensesAvailable", 5),     // Licensing
    ("Configuration", 9),           // MaintenanceMode
];

/// Profile load of a storm's logons: 2–5 minutes.
const STORM_PROFILE_MS: (i64, i64) = (120_000, 300_000);

/// Writes `incident` into the tenant's rows at the simulated `now`.
pub fn apply(w: &mut World, rows: &mut Rows, incident: &Incident, now: Dt) -> Result<(), String> {
    let salt = w.advances * 16 + rows.get("Sessions").map_or(0, Vec::len) as u64;
    match incident {
        Incident::LogonStorm {
            delivery_group,
            logons,
            minutes,
        } => {
            let dg = group(w, rows, delivery_group.as_deref())?;
            let shape = Shape {
                dg: Some(dg),
                succeed: true,
                profile_ms: Some(STORM_PROFILE_MS),
                ..Shape::default()
            };
            // Logons must be over by now: the slowest takes about 7.5 minutes.
            let window = (i64::from(*minutes).clamp(10, 24 * 60), 8);
            sessions(w, rows, &shape, *logons, window, now, 51 + salt)?;
            saturate(w, rows, dg, now, 52 + salt);
            Ok(())
        }
        Incident::Deregistration { delivery_group } => {
            let dg = group(w, rows, delivery_group.as_deref())?;
            deregister(w, rows, dg, now, 53 + salt);
            Ok(())
        }
        Incident::FailureSpike {
            category,
            delivery_group,
            failures,
            minutes,
        } => {
            let code = CATEGORY_CODES
                .iter()
                .find(|(name, _)| name == category)
                .map(|(_, c)| *c)
                .ok_or_else(|| {
                    let known: Vec<&str> = CATEGORY_CODES.iter().map(|(n, _)| *n).collect();
                    format!(
                        "failure_spike: category {category:?} is not one of {}",
                        known.join(", ")
                    )
                })?;
            let dg = match delivery_group {
                Some(name) => Some(group(w, rows, Some(name))?),
                None => None,
            };
            let shape = Shape {
                dg,
                failure_code: Some(code),
                ..Shape::default()
            };
            let window = (i64::from(*minutes).clamp(5, 24 * 60), 2);
            sessions(w, rows, &shape, *failures, window, now, 54 + salt)
        }
        Incident::HarvestStop {} => Ok(()),
    }
}

/// The index in `World::dgs` of the delivery group named `name` (the first group if `None`).
fn group(w: &World, rows: &Rows, name: Option<&str>) -> Result<usize, String> {
    let Some(name) = name else {
        return Ok(0);
    };
    let def = &schema::DESKTOP_GROUPS;
    let (id, nm) = (col(def, "Id"), col(def, "Name"));
    let found = rows
        .get("DesktopGroups")
        .into_iter()
        .flatten()
        .find_map(|r| match (&r[id], &r[nm]) {
            (Val::Guid(g), Val::Str(n)) if n.as_ref() == name => Some(*g),
            _ => None,
        });
    found
        .and_then(|g| w.dgs.iter().position(|d| d.0 == g))
        .ok_or_else(|| format!("no delivery group named {name:?}"))
}

fn col(def: &schema::EntityDef, name: &str) -> usize {
    def.prop(name).expect("schema has the property")
}

/// `n` shaped sessions starting in `[now - window.0 min, now - window.1 min]`.
fn sessions(
    w: &mut World,
    rows: &mut Rows,
    shape: &Shape,
    n: u32,
    window: (i64, i64),
    now: Dt,
    stream: u64,
) -> Result<(), String> {
    if n == 0 || n > 100_000 {
        return Err(format!("{n} sessions: expected 1 to 100000"));
    }
    let mut rng = tenant_rng(w.seed, w.idx, 70_000 + stream);
    let (from, to) = (
        now - Duration::minutes(window.0),
        now - Duration::minutes(window.1),
    );
    let span = (to - from).num_milliseconds().max(1);
    let mut new: Vec<NewSession> = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let start = from + Duration::milliseconds(rng.random_range(0..span));
        let out = w.session_shaped(&mut rng, start, false, Some(shape));
        if let Some(e) = out.open_end
            && let Val::Guid(k) = out.session.get("SessionKey")
        {
            w.open.push((*k, e));
        }
        new.push((out.session, out.conns, out.failure));
    }
    add_sessions(w, rows, new, now);
    Ok(())
}

/// A load-index sample a minute ago of 92–99 % (Citrix scale 0–10000) on every powered-on
/// machine of group `dg`, now each machine's current one.
fn saturate(w: &World, rows: &mut Rows, dg: usize, now: Dt, stream: u64) {
    let mut rng = tenant_rng(w.seed, w.idx, 70_000 + stream);
    let at = Prec(1_000_000).q(now - Duration::minutes(1));
    let mut new = Vec::new();
    for info in w.machines.iter().filter(|m| m.dg == dg && m.powered_on) {
        let n = info.sessions.iter().filter(|(_, e)| e.is_none()).count() as i64;
        let (cpu, mem) = (rng.random_range(92..=99), rng.random_range(60..95));
        let mut r = RowB::new(&schema::LOAD_INDEXES);
        r.set("EffectiveLoadIndex", Val::Int(cpu * 100))
            .set("Cpu", Val::Int(cpu))
            .set("Memory", Val::Int(mem))
            .set("Disk", Val::Int(rng.random_range(20..60)))
            .set("Network", Val::Int(rng.random_range(10..40)))
            .set("SessionCount", Val::Int(n))
            .set("MachineId", Val::Guid(info.id))
            .set("CreatedDate", Val::Date(at))
            .set("ModifiedDate", Val::Date(at));
        new.push((at, r));
    }
    let li = &schema::LOAD_INDEXES;
    append(rows, li, 1, new);
    // Each machine's newest sample is its current load index.
    let (li_id, li_machine) = (li.key_index(), col(li, "MachineId"));
    let mut current = std::collections::HashMap::new();
    for r in rows.get("LoadIndexes").into_iter().flatten() {
        if let (Val::Guid(m), Val::Int(id)) = (&r[li_machine], &r[li_id]) {
            let e = current.entry(*m).or_insert(*id);
            *e = (*e).max(*id);
        }
    }
    let m = &schema::MACHINES;
    let (mid, cur, modified) = (
        m.key_index(),
        col(m, "CurrentLoadIndexId"),
        col(m, "ModifiedDate"),
    );
    for r in rows.get_mut("Machines").into_iter().flatten() {
        let Val::Guid(id) = r[mid] else { continue };
        if !w
            .machines
            .iter()
            .any(|i| i.id == id && i.dg == dg && i.powered_on)
        {
            continue;
        }
        if let Some(li) = current.get(&id) {
            r[cur] = Val::Int(*li);
            r[modified] = Val::Date(at);
        }
    }
}

/// Every powered-on, active machine of group `dg` deregisters 20 minutes before `now`
/// (ContactLost), after a restart that went wrong: in turn two Unregistered, one StuckOnBoot
/// (DesktopRestart), one FailedToStart (powered off). Each gets an open MachineFailureLog.
fn deregister(w: &mut World, rows: &mut Rows, dg: usize, now: Dt, stream: u64) {
    let mut rng = tenant_rng(w.seed, w.idx, 70_000 + stream);
    let m = &schema::MACHINES;
    let c = |n: &str| col(m, n);
    let when = Prec(1_000_000).q(now - Duration::minutes(20));
    let mut failures = Vec::new();
    let mut hit = Vec::new();
    let mut turn = 0usize;
    for r in rows.get_mut("Machines").into_iter().flatten() {
        let Val::Guid(id) = r[m.key_index()] else {
            continue;
        };
        let Some(info) = w.machines.iter().find(|i| i.id == id) else {
            continue;
        };
        if info.dg != dg || r[c("LifecycleState")] != Val::Int(0) || !info.powered_on {
            continue;
        }
        let (fault, code, off) = match turn % 4 {
            2 => (3, 201, false), // StuckOnBoot after DesktopRestart
            3 => (2, 201, true),  // FailedToStart
            _ => (4, 207, false), // Unregistered, ContactLost
        };
        turn += 1;
        let at = when + Duration::milliseconds(rng.random_range(0..120_000));
        r[c("CurrentRegistrationState")] = Val::Int(2);
        r[c("RegistrationStateChangeDate")] = Val::Date(at);
        r[c("LastDeregisteredCode")] = Val::Int(code);
        r[c("LastDeregisteredDate")] = Val::Date(at);
        r[c("ControllerDnsName")] = Val::Null;
        r[c("FaultState")] = Val::Int(fault);
        r[c("FailureDate")] = Val::Date(at);
        if off {
            r[c("CurrentPowerState")] = Val::Int(2);
            r[c("PowerStateChangeDate")] = Val::Date(at);
            r[c("PoweredOnDate")] = Val::Null;
            r[c("IPAddress")] = Val::Null;
        }
        r[c("ModifiedDate")] = Val::Date((at + Duration::seconds(5)).min(now));
        let mut f = RowB::new(&schema::MACHINE_FAILURE_LOGS);
        f.set("MachineId", Val::Guid(id))
            .set("FailureStartDate", Val::Date(at))
            .set("FaultState", Val::Int(fault))
            .set("LastDeregisteredCode", Val::Int(code))
            .set(
                "CreatedDate",
                Val::Date((at + Duration::seconds(2)).min(now)),
            )
            .set(
                "ModifiedDate",
                Val::Date((at + Duration::seconds(2)).min(now)),
            );
        failures.push((at, f));
        hit.push((id, off));
    }
    append(rows, &schema::MACHINE_FAILURE_LOGS, id_base(w, 1), failures);
    // New sessions no longer land on these machines.
    for info in w.machines.iter_mut() {
        if let Some((_, off)) = hit.iter().find(|(id, _)| *id == info.id) {
            info.eligible = false;
            info.powered_on = !off;
            info.last_event = info.last_event.max(Some(when));
        }
    }
    let eligible = |d: Option<usize>| -> Vec<usize> {
        (0..w.machines.len())
            .filter(|&i| w.machines[i].eligible && d.is_none_or(|d| w.machines[i].dg == d))
            .collect()
    };
    w.by_dg = (0..w.dgs.len()).map(|d| eligible(Some(d))).collect();
    w.any_eligible = eligible(None);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimOptions;
    use crate::sim::generate::{generate_world, tenant_identity};

    fn world() -> (World, Rows, Dt) {
        let opts = SimOptions {
            tenants: 1,
            now: "2026-03-04T12:07:00Z".parse().unwrap(),
            ..SimOptions::default()
        };
        let (w, rows) = generate_world(&opts, 0, &tenant_identity(opts.seed, 0));
        (w, rows, opts.now)
    }

    fn int_of(def: &schema::EntityDef, r: &[Val], name: &str) -> Option<i64> {
        match r[col(def, name)] {
            Val::Int(i) => Some(i),
            _ => None,
        }
    }

    #[test]
    fn a_logon_storm_adds_slow_logons_in_one_group_and_saturates_it() {
        let (mut w, mut rows, now) = world();
        let before = rows["Sessions"].len();
        let loads_before = rows["LoadIndexes"].len();
        let storm = Incident::LogonStorm {
            delivery_group: None,
            logons: 30,
            minutes: 45,
        };
        apply(&mut w, &mut rows, &storm, now).unwrap();
        let s = &schema::SESSIONS;
        let new = &rows["Sessions"][before..];
        assert_eq!(new.len(), 30);
        for r in new {
            let d = int_of(s, r, "LogOnDuration").expect("a completed logon");
            assert!(d >= STORM_PROFILE_MS.0, "{d}");
            assert!(matches!(r[col(s, "ModifiedDate")], Val::Date(m) if m <= now));
        }
        let li = &schema::LOAD_INDEXES;
        let hot = rows["LoadIndexes"][loads_before..]
            .iter()
            .filter(|r| int_of(li, r, "EffectiveLoadIndex").is_some_and(|v| v >= 9200))
            .count();
        let powered = w
            .machines
            .iter()
            .filter(|m| m.dg == 0 && m.powered_on)
            .count();
        assert_eq!(hot, powered);
    }

    #[test]
    fn deregistration_leaves_no_registered_machine_in_the_group() {
        let (mut w, mut rows, now) = world();
        let inc = Incident::Deregistration {
            delivery_group: None,
        };
        apply(&mut w, &mut rows, &inc, now).unwrap();
        let m = &schema::MACHINES;
        let faults: Vec<i64> = rows["Machines"]
            .iter()
            .filter(|r| {
                matches!(r[m.key_index()], Val::Guid(id) if w.machines.iter().any(|i| i.id == id && i.dg == 0))
                    && int_of(m, r, "LifecycleState") == Some(0)
            })
            .filter_map(|r| {
                assert_ne!(int_of(m, r, "CurrentRegistrationState"), Some(1));
                int_of(m, r, "FaultState")
            })
            .collect();
        assert!(faults.contains(&3) && faults.contains(&2) && faults.contains(&4));
        assert!(w.by_dg[0].is_empty());
    }

    #[test]
    fn a_failure_spike_is_of_its_category_and_bad_names_are_errors() {
        let (mut w, mut rows, now) = world();
        let before = rows["ConnectionFailureLogs"].len();
        let spike = Incident::FailureSpike {
            category: "NoLicensesAvailable".into(),
            delivery_group: None,
            failures: 25,
            minutes: 30,
        };
        apply(&mut w, &mut rows, &spike, now).unwrap();
        let f = &schema::CONNECTION_FAILURE_LOGS;
        let new = &rows["ConnectionFailureLogs"][before..];
        assert_eq!(new.len(), 25);
        assert!(
            new.iter()
                .all(|r| int_of(f, r, "ConnectionFailureEnumValue") == Some(5))
        );
        let bad = Incident::FailureSpike {
            category: "Nope".into(),
            delivery_group: None,
            failures: 1,
            minutes: 30,
        };
        assert!(
            apply(&mut w, &mut rows, &bad, now)
                .unwrap_err()
                .contains("NoCapacityAvailable")
        );
        let bad_dg = Incident::Deregistration {
            delivery_group: Some("No such group".into()),
        };
        assert!(apply(&mut w, &mut rows, &bad_dg, now).is_err());
    }
}
