//! The Grafana alert rules in deploy/grafana/provisioning/alerting, proven without Grafana.
//! The file is a well-formed provisioning file (unique, pinned uids; conditions and expressions
//! that refer to existing refIds; the provisioned datasource; summaries naming the customer and
//! the delivery group; links to existing dashboard panels), every query reads only measurements,
//! fields and tags the harvester wrote, and every rule is evaluated as Grafana would: its
//! queries, exactly as written in the file, run on the real InfluxDB 1.6 (with `$timeFilter`
//! made from the query's `relativeTimeRange`), then its reduce, math and threshold expressions
//! (read from the file, interpreted by common/grafana_expr.rs). Four harvests by the real
//! scheduler of the simulator: a quiet one (no rule may fire), an estate with incidents (a
//! logon storm and a failure spike at one customer, a delivery group deregistering at another,
//! a third whose harvest stops), an output refusing lines (dead letters) and an output away
//! (the spool). Each rule must fire on its incident for exactly the right customer, group or
//! category. Not tested: Grafana's evaluation loop (`for`, state, notifications) and its UI.
//!
//! Rules over events and summaries are evaluated at the simulated present (a past weekday
//! 12:07 UTC, so that the hour has logons); rules over the machine snapshot and the harvester's
//! own points at the real present, when those were written.

mod common;
#[path = "common/grafana_expr.rs"]
mod grafana_expr;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Utc, Weekday};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use citrix_harvester::demo::config_for_simulator;
use citrix_harvester::scheduler::Harvester;
use citrix_harvester::sim::{Faults, Incident, SimHandle, SimOptions};
use citrix_harvester::sink::{SinkConfig, SinkKind};

use grafana_expr::{Data, Labels};

/// The rule uids: alerts are routed and silenced by them, so they never change silently.
const UIDS: &[&str] = &[
    "ch-harvest-tenant-unhealthy",
    "ch-harvest-stale",
    "ch-harvest-spool-growing",
    "ch-harvest-data-lost",
    "ch-logon-p95-sla",
    "ch-logon-p50-baseline",
    "ch-machines-unregistered",
    "ch-machines-fault-state",
    "ch-machines-capacity-low",
    "ch-machines-load-high",
    "ch-failures-connection-spike",
];

/// (rule, node, value): in the quiet harvest some item of that node reaches the value, so the
/// rule was quiet on real data (enough logons, machines, a baseline), not for lack of it.
const QUIET_HAS_DATA: &[(&str, &str, f64)] = &[
    ("ch-harvest-tenant-unhealthy", "B", 1.0),
    ("ch-harvest-stale", "B", 0.0),
    ("ch-harvest-spool-growing", "RA", 0.0),
    ("ch-harvest-data-lost", "B", 0.0),
    ("ch-logon-p95-sla", "RN", 10.0),
    ("ch-logon-p50-baseline", "BASE", 1.0),
    ("ch-logon-p50-baseline", "RN", 10.0),
    ("ch-machines-unregistered", "RP", 1.0),
    ("ch-machines-capacity-low", "RA", 1.0),
    ("ch-machines-load-high", "B", 1.0),
    ("ch-failures-connection-spike", "RB", 0.01),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rules_file() -> Value {
    let p = repo().join("deploy/grafana/provisioning/alerting/citrix-rules.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()))
}

fn rules(file: &Value) -> Vec<&Value> {
    file["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .collect()
}

/// The uid of the provisioned datasource (the only `uid:` in its provisioning file).
fn datasource_uid() -> String {
    let p = repo().join("deploy/grafana/provisioning/datasources/influxdb.yml");
    let text = std::fs::read_to_string(&p).unwrap();
    let uids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("uid:"))
        .map(|u| u.trim().trim_matches(['"', '\'']))
        .collect();
    assert_eq!(uids.len(), 1, "{}", p.display());
    uids[0].to_string()
}

/// Dashboard uid → its panel ids.
fn dashboard_panels() -> BTreeMap<String, BTreeSet<u64>> {
    let dir = repo().join("deploy/grafana/dashboards");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let d: Value =
            serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap();
        let mut ids = BTreeSet::new();
        for p in d["panels"].as_array().into_iter().flatten() {
            ids.extend(p["id"].as_u64());
            for inner in p["panels"].as_array().into_iter().flatten() {
                ids.extend(inner["id"].as_u64());
            }
        }
        out.insert(d["uid"].as_str().unwrap().to_string(), ids);
    }
    out
}

fn query_items(rule: &Value) -> Vec<&Value> {
    rule["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["datasourceUid"] != "__expr__")
        .collect()
}

#[test]
fn the_rule_file_is_a_valid_grafana_provisioning_file_with_stable_uids() {
    let file = rules_file();
    assert_eq!(file["apiVersion"], 1);
    let ds = datasource_uid();
    let panels = dashboard_panels();
    let mut uids = Vec::new();
    for g in file["groups"].as_array().unwrap() {
        assert!(g["name"].as_str().is_some_and(|n| !n.is_empty()));
        assert_eq!(g["folder"], "Citrix", "the dashboards' folder");
        assert!(g["interval"].as_str().is_some_and(|i| i.ends_with('m')));
    }
    for r in rules(&file) {
        let uid = r["uid"].as_str().expect("uid");
        assert!(uid.len() <= 40 && uid.starts_with("ch-"), "{uid}");
        uids.push(uid.to_string());
        assert!(r["title"].as_str().is_some_and(|t| !t.is_empty()), "{uid}");
        assert!(
            matches!(
                r["noDataState"].as_str(),
                Some("OK" | "NoData" | "Alerting")
            ),
            "{uid}"
        );
        assert!(
            matches!(
                r["execErrState"].as_str(),
                Some("Error" | "Alerting" | "OK")
            ),
            "{uid}"
        );
        let f = r["for"].as_str().expect("for");
        assert!(f.ends_with('s') || f.ends_with('m'), "{uid}: for {f}");
        // refIds: unique, the condition exists, expressions only use earlier ones.
        let mut seen: Vec<String> = Vec::new();
        for d in r["data"].as_array().unwrap() {
            let id = d["refId"].as_str().expect("refId");
            assert_eq!(d["model"]["refId"], id, "{uid}: model.refId");
            assert!(!seen.iter().any(|s| s == id), "{uid}: refId {id} twice");
            if d["datasourceUid"] == "__expr__" {
                let e = d["model"]["expression"].as_str().unwrap_or_default();
                let used: Vec<&str> = if d["model"]["type"] == "math" {
                    e.split('$')
                        .skip(1)
                        .map(|x| {
                            x.split(|c: char| !c.is_ascii_alphanumeric())
                                .next()
                                .unwrap()
                        })
                        .collect()
                } else {
                    vec![e]
                };
                for u in used {
                    assert!(
                        seen.iter().any(|s| s == u),
                        "{uid}/{id}: uses {u} before it exists"
                    );
                }
            } else {
                assert_eq!(d["datasourceUid"], ds.as_str(), "{uid}/{id}");
                assert_eq!(d["model"]["datasource"]["uid"], ds.as_str(), "{uid}/{id}");
                assert_eq!(d["model"]["rawQuery"], true, "{uid}/{id}");
                let q = d["model"]["query"].as_str().unwrap();
                assert!(
                    q.starts_with("SELECT ") && q.contains("$timeFilter"),
                    "{uid}: {q}"
                );
                let rel = &d["relativeTimeRange"];
                assert!(
                    rel["from"].as_i64().unwrap() > rel["to"].as_i64().unwrap(),
                    "{uid}"
                );
            }
            seen.push(id.to_string());
        }
        let cond = r["condition"].as_str().unwrap();
        assert!(seen.iter().any(|s| s == cond), "{uid}: condition {cond}");
        // What an operator reads first: who and where, and a link to the right panel.
        let summary = r["annotations"]["summary"].as_str().unwrap();
        let grouped = |tag: &str| {
            query_items(r).iter().any(|d| {
                d["model"]["query"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("GROUP BY \"customer\", \"{tag}\""))
            })
        };
        if query_items(r).iter().any(|d| {
            d["model"]["query"]
                .as_str()
                .unwrap()
                .contains("GROUP BY \"customer\"")
        }) {
            assert!(
                summary.contains("{{ $labels.customer }}"),
                "{uid}: {summary}"
            );
        }
        for tag in ["delivery_group", "failure_category"] {
            if grouped(tag) {
                assert!(
                    summary.contains(&format!("{{{{ $labels.{tag} }}}}")),
                    "{uid}"
                );
            }
        }
        let dash = r["annotations"]["__dashboardUid__"].as_str().unwrap();
        let panel: u64 = r["annotations"]["__panelId__"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            panels.get(dash).is_some_and(|p| p.contains(&panel)),
            "{uid}: no panel {panel} in dashboard {dash}"
        );
        let link = r["annotations"]["runbook_url"].as_str().unwrap();
        assert!(
            link.starts_with(&format!("/d/{dash}?"))
                && link.contains(&format!("viewPanel={panel}")),
            "{uid}: {link}"
        );
        assert!(
            r["annotations"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("Threshold source:")),
            "{uid}: say where the number comes from"
        );
    }
    assert_eq!(
        uids, UIDS,
        "rule uids are stable: add new ones, never rename"
    );
    // The sample notification config is not provisioned (Grafana reads .yaml/.yml/.json only).
    let dir = repo().join("deploy/grafana/provisioning/alerting");
    let loaded: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".json") || n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    assert_eq!(loaded, ["citrix-rules.json"], "{loaded:?}");
}

#[test]
fn grafana_math_is_interpreted_like_grafana() {
    let mut done = BTreeMap::new();
    let n = |v: &[(&str, f64)]| {
        Data::Numbers(
            v.iter()
                .map(|(c, x)| (Labels::from([("customer".into(), c.to_string())]), *x))
                .collect(),
        )
    };
    done.insert("A".into(), n(&[("x", 200.0), ("y", 50.0), ("z", 300.0)]));
    done.insert("N".into(), n(&[("x", 12.0), ("y", 40.0)]));
    let m = |e: &str| serde_json::json!({"type": "math", "expression": e});
    let Data::Numbers(r) = grafana_expr::eval(&m("$A > 100 + 20 && $N >= 10"), &done) else {
        unreachable!()
    };
    // z has no partner in N: dropped, as Grafana's union does.
    let got: Vec<(&str, f64)> = r
        .iter()
        .map(|(l, v)| (l["customer"].as_str(), *v))
        .collect();
    assert_eq!(got, [("x", 1.0), ("y", 0.0)]);
    let Data::Numbers(r) = grafana_expr::eval(&m("(1 + 2) * 3 - 4 / 2"), &done) else {
        unreachable!()
    };
    assert_eq!(r[0].1, 7.0);
    let t = serde_json::json!({"type": "threshold", "expression": "A",
        "conditions": [{"evaluator": {"type": "lt", "params": [100]}}]});
    let Data::Numbers(r) = grafana_expr::eval(&t, &done) else {
        unreachable!()
    };
    assert_eq!(r.iter().map(|x| x.1).collect::<Vec<_>>(), [0.0, 1.0, 0.0]);
}

/// The latest weekday 12:07 UTC that has passed (see deploy_dashboards.rs).
fn simulated_now() -> DateTime<Utc> {
    let now = Utc::now();
    let mut day = now.date_naive();
    loop {
        let noon = day.and_hms_opt(12, 7, 0).unwrap().and_utc();
        if noon <= now && !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            return noon;
        }
        day = day.pred_opt().unwrap();
    }
}

/// 8 days of history for the estate (the logon baseline compares with the same hour on each
/// of 7 days); the output's incidents need less.
async fn simulator(days: i64) -> SimHandle {
    common::sim::start(SimOptions {
        tenants: 3,
        seed: 42,
        now: simulated_now(),
        history: chrono::Duration::days(days),
        ..SimOptions::default()
    })
    .await
}

/// `cycles` cycles of the real scheduler into `url`/`db`, each in a later second than the
/// last ended (the `citrix_harvester` points are stamped in whole seconds).
async fn harvest(
    sim: &SimHandle,
    url: &str,
    db: &str,
    cycles: usize,
    state: &std::path::Path,
) -> (Arc<Harvester>, BTreeSet<String>) {
    let state = state.to_path_buf();
    let mut output = SinkConfig::new(SinkKind::InfluxV1 {
        url: url.to_string(),
        database: db.to_string(),
        retention_policy: None,
        username: None,
        password: None,
    });
    // An output that is away is given up on (and spooled) after 2 s, not the default minute.
    output.retry_max_elapsed = Duration::from_secs(2);
    let behind = (Utc::now() - sim.now()).to_std().unwrap();
    let lookback = behind + Duration::from_secs(9 * 86_400);
    let cfg = config_for_simulator(sim, output, state, lookback);
    let h = Arc::new(Harvester::new(&cfg).expect("harvester starts"));
    let cancel = CancellationToken::new();
    let mut dropped = BTreeSet::new();
    for _ in 0..cycles {
        for s in h.run_once(&cancel).await {
            if s.entities.iter().any(|e| e.dropped > 0) {
                dropped.insert(s.tenant.clone());
            }
        }
        let second = Utc::now().timestamp();
        while Utc::now().timestamp() == second {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    (h, dropped)
}

/// Grafana's `$timeFilter` for a query's relative range, evaluated at `at`.
fn time_filter(item: &Value, at: DateTime<Utc>) -> String {
    let rel = &item["relativeTimeRange"];
    let ms = |s: i64| (at - chrono::Duration::seconds(s)).timestamp_millis();
    format!(
        "time >= {}ms and time <= {}ms",
        ms(rel["from"].as_i64().unwrap()),
        ms(rel["to"].as_i64().unwrap())
    )
}

/// Measurement names after FROM (subqueries included).
fn measurements(q: &str) -> BTreeSet<String> {
    q.split("FROM \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

/// Where a rule reads from decides when it is evaluated (module docs).
fn anchor(rule: &Value, sim_now: DateTime<Utc>) -> DateTime<Utc> {
    let live = query_items(rule).iter().any(|d| {
        let m = measurements(d["model"]["query"].as_str().unwrap());
        m.contains("citrix_machine") || m.contains("citrix_harvester")
    });
    if live { Utc::now() } else { sim_now }
}

/// One evaluation: the items of the condition that fire, and whether it had no data.
struct Outcome {
    firing: Vec<Labels>,
    no_data: bool,
    /// Every node's numbers (reduce, math, threshold), by refId.
    numbers: BTreeMap<String, Vec<(Labels, f64)>>,
}

async fn evaluate(
    rule: &Value,
    url: &str,
    db: &str,
    at: DateTime<Utc>,
    runs: &mut usize,
) -> Outcome {
    let uid = rule["uid"].as_str().unwrap();
    let mut done: BTreeMap<String, Data> = BTreeMap::new();
    for d in rule["data"].as_array().unwrap() {
        let id = d["refId"].as_str().unwrap().to_string();
        let out = if d["datasourceUid"] == "__expr__" {
            grafana_expr::eval(&d["model"], &done)
        } else {
            let q = d["model"]["query"]
                .as_str()
                .unwrap()
                .replace("$timeFilter", &time_filter(d, at));
            *runs += 1;
            let answer = common::influx1_query(url, db, &q).await;
            grafana_expr::series_from_influx(&answer, &format!("{uid}/{id}: {q}"))
        };
        done.insert(id, out);
    }
    let numbers: BTreeMap<String, Vec<(Labels, f64)>> = done
        .into_iter()
        .filter_map(|(k, v)| match v {
            Data::Numbers(n) => Some((k, n)),
            Data::Series(_) => None,
        })
        .collect();
    let Some(cond) = numbers.get(rule["condition"].as_str().unwrap()).cloned() else {
        panic!("{uid}: the condition must be a number expression");
    };
    Outcome {
        numbers,
        firing: cond
            .iter()
            .filter(|(_, v)| *v != 0.0 && !v.is_nan())
            .map(|(l, _)| l.clone())
            .collect(),
        no_data: cond.is_empty(),
    }
}

/// Labels an expectation compares: customer and, if present, delivery group or category.
fn key(l: &Labels) -> (String, String) {
    let c = l.get("customer").cloned().unwrap_or_default();
    let g = l
        .get("delivery_group")
        .or_else(|| l.get("failure_category"))
        .cloned()
        .unwrap_or_default();
    (c, g)
}

/// The name of the delivery group of `customer_id` with the most powered-on active machines
/// (multi-session ones only if `multi`).
fn busiest_group(sim: &SimHandle, customer_id: &str, multi: bool) -> String {
    let mut n: BTreeMap<String, usize> = BTreeMap::new();
    for m in sim.rows(customer_id, "Machines") {
        let server = m["OSType"]
            .as_str()
            .is_some_and(|o| o.starts_with("Windows 20"));
        if m["LifecycleState"] == 0 && m["CurrentPowerState"] == 3 && (server || !multi) {
            *n.entry(m["DesktopGroupId"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    let id = n.iter().max_by_key(|(_, c)| **c).unwrap().0.clone();
    sim.rows(customer_id, "DesktopGroups")
        .into_iter()
        .find(|g| g["Id"] == id.as_str())
        .and_then(|g| g["Name"].as_str().map(str::to_string))
        .unwrap()
}

fn incidents(list: Vec<Incident>) -> Faults {
    Faults {
        incidents: list,
        ..Faults::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_fires_on_its_incident_and_stays_quiet_without_it() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    // Each harvest's state (watermarks, spool); removed when the test ends.
    let state = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let file = rules_file();
    let all = rules(&file);
    let uid = |r: &Value| r["uid"].as_str().unwrap().to_string();

    // 1. Quiet: nothing may fire.
    let quiet = common::unique_name("alerts_quiet");
    common::influx1_create_db(&url, &quiet).await;
    let sim = simulator(8).await;
    let sim_now = sim.now();
    harvest(&sim, &url, &quiet, 3, &state.path().join("quiet")).await;
    let names: Vec<String> = sim.tenants().iter().map(|t| t.name.clone()).collect();
    drop(sim);
    check_reads_what_was_written(&all, &url, &quiet).await;
    let mut runs = 0;
    let mut problems = Vec::new();
    for r in &all {
        let o = evaluate(r, &url, &quiet, anchor(r, sim_now), &mut runs).await;
        if !o.firing.is_empty() {
            problems.push(format!(
                "{} fires without an incident: {:?}",
                uid(r),
                o.firing
            ));
        }
        // Quiet because the data is normal, not because there was none: these numbers exist.
        for (rule_uid, node, at_least) in QUIET_HAS_DATA {
            if uid(r) == *rule_uid && !o.numbers[*node].iter().any(|(_, v)| *v >= *at_least) {
                problems.push(format!(
                    "{rule_uid}: no {node} >= {at_least} in the quiet harvest"
                ));
            }
        }
        if o.no_data && r["noDataState"] == "Alerting" {
            problems.push(format!(
                "{} has no data (and alerts on that) after a clean harvest",
                uid(r)
            ));
        }
    }

    // 2. The estate's incidents.
    let quiet_took = started.elapsed();
    let estate = common::unique_name("alerts_estate");
    common::influx1_create_db(&url, &estate).await;
    let sim = simulator(8).await;
    let t = sim.tenants();
    // The storm saturates a multi-session group (load management applies to those only).
    let storm_dg = busiest_group(&sim, &t[0].customer_id, true);
    let dereg_dg = busiest_group(&sim, &t[1].customer_id, false);
    sim.try_set_faults(
        &t[0].customer_id,
        incidents(vec![
            Incident::LogonStorm {
                delivery_group: Some(storm_dg.clone()),
                logons: 60,
                minutes: 45,
            },
            Incident::FailureSpike {
                category: "NoLicensesAvailable".into(),
                delivery_group: None,
                failures: 40,
                minutes: 45,
            },
        ]),
    )
    .unwrap();
    sim.try_set_faults(
        &t[1].customer_id,
        incidents(vec![Incident::Deregistration {
            delivery_group: Some(dereg_dg.clone()),
        }]),
    )
    .unwrap();
    sim.try_set_faults(&t[2].customer_id, incidents(vec![Incident::HarvestStop {}]))
        .unwrap();
    harvest(&sim, &url, &estate, 3, &state.path().join("estate")).await;
    drop(sim);
    let (c0, c1, c2) = (names[0].clone(), names[1].clone(), names[2].clone());
    let expected: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::from([
        (
            "ch-harvest-tenant-unhealthy",
            vec![(c2.clone(), String::new())],
        ),
        ("ch-harvest-stale", vec![(c2.clone(), String::new())]),
        ("ch-logon-p95-sla", vec![(c0.clone(), storm_dg.clone())]),
        (
            "ch-logon-p50-baseline",
            vec![(c0.clone(), storm_dg.clone())],
        ),
        (
            "ch-machines-load-high",
            vec![(c0.clone(), storm_dg.clone())],
        ),
        (
            "ch-machines-unregistered",
            vec![(c1.clone(), dereg_dg.clone())],
        ),
        (
            "ch-machines-fault-state",
            vec![(c1.clone(), dereg_dg.clone())],
        ),
        (
            "ch-machines-capacity-low",
            vec![(c1.clone(), dereg_dg.clone())],
        ),
        (
            "ch-failures-connection-spike",
            vec![(c0.clone(), "NoLicensesAvailable".to_string())],
        ),
    ]);
    for r in &all {
        let Some(want) = expected.get(uid(r).as_str()) else {
            continue;
        };
        let o = evaluate(r, &url, &estate, anchor(r, sim_now), &mut runs).await;
        let got: BTreeSet<(String, String)> = o.firing.iter().map(key).collect();
        let want: BTreeSet<(String, String)> = want.iter().cloned().collect();
        if got != want {
            problems.push(format!("{}: fired for {got:?}, expected {want:?}", uid(r)));
        }
    }

    let estate_took = started.elapsed() - quiet_took;
    // 3. The output refuses lines for good: a field stored as a string where the harvester
    // writes an integer (a type conflict, as after a schema change) makes dead letters.
    let refused = common::unique_name("alerts_deadletters");
    common::influx1_create_db(&url, &refused).await;
    let conflict = format!(
        "citrix_application_usage,customer=conflict running_instances=\"x\" {}",
        Utc::now().timestamp_nanos_opt().unwrap()
    );
    let resp = reqwest::Client::new()
        .post(format!("{url}/write?db={refused}"))
        .body(conflict)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let sim = simulator(1).await;
    let (h, dropped) = harvest(&sim, &url, &refused, 2, &state.path().join("refused")).await;
    drop(sim);
    let stats = h.sink().stats();
    let lost = all
        .iter()
        .find(|r| uid(r) == "ch-harvest-data-lost")
        .unwrap();
    let o = evaluate(lost, &url, &refused, Utc::now(), &mut runs).await;
    let got: BTreeSet<String> = o.firing.iter().map(|l| key(l).0).collect();
    // Dead letters are the output's and show on every tenant; points the server dropped (a
    // partial write) are the tenant's whose points they were.
    let want: BTreeSet<String> = if stats.dead_letters > 0 {
        names.iter().cloned().collect()
    } else {
        dropped
    };
    if got != want || got.is_empty() {
        problems.push(format!(
            "ch-harvest-data-lost: fired for {got:?}, expected {want:?} (sink: {stats:?})"
        ));
    }

    // 4. The output is away for three cycles, then back: the spool grew, then is replayed.
    let away = common::unique_name("alerts_spool");
    common::influx1_create_db(&url, &away).await;
    let proxy = common::proxy::Proxy::start(&url, false).await;
    let sim = simulator(1).await;
    let (h, _) = harvest(&sim, &proxy.url, &away, 3, &state.path().join("away")).await;
    drop(sim);
    assert!(h.sink().stats().spool_bytes > 0, "nothing was spooled");
    proxy.set_up(true);
    let stop = CancellationToken::new();
    let replay = h.sink().start_replay(stop.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.sink().stats().spool_bytes > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    if let Some(r) = replay {
        r.await.unwrap();
    }
    assert_eq!(
        h.sink().stats().spool_bytes,
        0,
        "the spool was not replayed"
    );
    let spool = all
        .iter()
        .find(|r| uid(r) == "ch-harvest-spool-growing")
        .unwrap();
    let o = evaluate(spool, &url, &away, Utc::now(), &mut runs).await;
    if o.firing.len() != 1 {
        problems.push(format!("ch-harvest-spool-growing: fired {:?}", o.firing));
    }

    // Every rule has an incident above.
    let covered: HashSet<&str> = expected
        .keys()
        .copied()
        .chain(["ch-harvest-data-lost", "ch-harvest-spool-growing"])
        .collect();
    for r in &all {
        assert!(
            covered.contains(uid(r).as_str()),
            "{} has no incident",
            uid(r)
        );
    }
    eprintln!(
        "alert rules: {}; queries run: {runs}; harvests: 4; took {:.0?} (quiet {:.0?}, estate \
         {:.0?}, outputs {:.0?})",
        all.len(),
        started.elapsed(),
        quiet_took,
        estate_took,
        started.elapsed() - quiet_took - estate_took
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every measurement a rule reads was written, and every other quoted name in its queries is a
/// field or tag of those measurements (or an alias the query defines).
async fn check_reads_what_was_written(all: &[&Value], url: &str, db: &str) {
    let keys = |answer: Value| -> BTreeSet<String> {
        common::influx1_rows(&answer)
            .into_iter()
            .filter_map(|r| r.first().and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    for r in all {
        for d in query_items(r) {
            let q = d["model"]["query"].as_str().unwrap();
            let ms = measurements(q);
            assert!(!ms.is_empty(), "{q}");
            let mut known = BTreeSet::new();
            for m in &ms {
                let fields = keys(
                    common::influx1_query(url, db, &format!("SHOW FIELD KEYS FROM \"{m}\"")).await,
                );
                assert!(!fields.is_empty(), "{}: {m} was not written", r["uid"]);
                known.extend(fields);
                known.extend(keys(
                    common::influx1_query(url, db, &format!("SHOW TAG KEYS FROM \"{m}\"")).await,
                ));
                known.insert(m.clone());
            }
            let aliases: BTreeSet<String> = q
                .split("AS \"")
                .skip(1)
                .filter_map(|x| x.split('"').next())
                .map(str::to_string)
                .collect();
            for name in q.split('"').skip(1).step_by(2) {
                assert!(
                    known.contains(name) || aliases.contains(name),
                    "{}: \"{name}\" is not a measurement, field or tag the harvester wrote: {q}",
                    r["uid"]
                );
            }
        }
    }
}
