//! The Grafana dashboards in deploy/grafana/dashboards, proven without Grafana: their JSON is a
//! well-formed provisionable dashboard (unique uid, title, panels whose datasource is the
//! provisioned one, the `customer` and `delivery_group` variables), and every panel query runs
//! on the real InfluxDB 1.6 after a simulated harvest and returns data. Grafana's part of a
//! query (variables, `$timeFilter`, `$__interval`) is substituted here the way Grafana does it.
//! Measurements the harvester does not write yet may only come from an announced list; their
//! queries must still parse and run.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use citrix_harvester::demo::config_for_simulator;
use citrix_harvester::scheduler::{minute_now, run};
use citrix_harvester::sim::{SimOptions, Simulator};
use citrix_harvester::sink::{SinkConfig, SinkKind};

/// Measurements designed for but not yet written by the harvester. A panel on anything else
/// that returns nothing is a broken panel (a typo in a name), never "pending".
const ANNOUNCED: &[&str] = &[
    "citrix_machine_failure",
    "citrix_session_activity",
    "citrix_harvester",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dashboards() -> Vec<(PathBuf, Value)> {
    let dir = repo().join("deploy/grafana/dashboards");
    let mut out: Vec<(PathBuf, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()));
            (p, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no dashboards in {}", dir.display());
    out
}

/// The uid of the provisioned datasource (the only `uid:` in the provisioning file).
fn provisioned_datasource_uid() -> String {
    let p = repo().join("deploy/grafana/provisioning/datasources/influxdb.yml");
    let text = std::fs::read_to_string(&p).unwrap();
    let uids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("uid:"))
        .map(|u| u.trim().trim_matches(['"', '\'']))
        .collect();
    assert_eq!(
        uids.len(),
        1,
        "{}: expected one datasource uid",
        p.display()
    );
    uids[0].to_string()
}

/// Panels including those nested in collapsed rows.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push(inner);
        }
    }
    out
}

fn needs_query(panel: &Value) -> bool {
    !matches!(panel["type"].as_str(), Some("row" | "text"))
}

#[test]
fn dashboards_are_valid_provisionable_grafana_json() {
    let ds_uid = provisioned_datasource_uid();
    let mut uids = HashSet::new();
    for (path, d) in dashboards() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let uid = d["uid"].as_str().unwrap_or_default();
        assert!(
            !uid.is_empty() && uid.len() <= 40,
            "{name}: uid missing or over Grafana's 40 characters"
        );
        assert!(uids.insert(uid.to_string()), "{name}: uid {uid} used twice");
        assert!(
            d["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{name}: title"
        );
        assert!(
            d["schemaVersion"].as_u64().is_some(),
            "{name}: schemaVersion"
        );
        // The provisioning is read-only; an `id` would clash between Grafana instances.
        assert!(d.get("id").is_none_or(Value::is_null), "{name}: has an id");

        let vars = d["templating"]["list"].as_array().expect("templating.list");
        for want in ["customer", "delivery_group"] {
            let v = vars
                .iter()
                .find(|v| v["name"] == want)
                .unwrap_or_else(|| panic!("{name}: no template variable {want}"));
            assert_eq!(v["type"], "query", "{name}: {want} is a query variable");
            assert_eq!(v["datasource"]["uid"], ds_uid.as_str(), "{name}: {want}");
            assert!(
                v["query"]
                    .as_str()
                    .is_some_and(|q| q.starts_with("SHOW TAG VALUES")),
                "{name}: {want} comes from SHOW TAG VALUES"
            );
        }

        let ps = panels(&d);
        assert!(ps.len() >= 3, "{name}: too few panels");
        let mut ids = HashSet::new();
        for p in &ps {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{name}: a panel without title");
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "{name}: panel id repeated ({title})"
            );
            let g = &p["gridPos"];
            for k in ["x", "y", "w", "h"] {
                assert!(g[k].as_u64().is_some(), "{name}/{title}: gridPos.{k}");
            }
            assert!(g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24);
            if !needs_query(p) {
                continue;
            }
            assert_eq!(p["datasource"]["uid"], ds_uid.as_str(), "{name}/{title}");
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{name}/{title}: no targets");
            let mut refs = HashSet::new();
            for t in targets {
                assert_eq!(t["datasource"]["uid"], ds_uid.as_str(), "{name}/{title}");
                assert!(refs.insert(t["refId"].as_str().expect("refId")));
                assert_eq!(t["rawQuery"], true, "{name}/{title}: raw InfluxQL");
                let q = t["query"].as_str().unwrap_or_default();
                assert!(q.starts_with("SELECT "), "{name}/{title}: {q}");
                assert!(
                    q.contains("$timeFilter"),
                    "{name}/{title}: no $timeFilter: {q}"
                );
            }
        }
    }
}

/// Grafana's escaping of a multi-value variable's values inside a regex (`regexEscape`).
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\^$*+?.()|[]{}/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What Grafana sends for a multi-value variable with these values selected.
fn selection(values: &[String]) -> String {
    let escaped: Vec<String> = values.iter().map(|v| regex_escape(v)).collect();
    if escaped.len() == 1 {
        escaped[0].clone()
    } else {
        format!("({})", escaped.join("|"))
    }
}

fn expand(q: &str, customer: &str, delivery_group: &str) -> String {
    q.replace("$timeFilter", "time >= now() - 3d")
        .replace("$__interval_ms", "3600000")
        .replace("$__interval", "1h")
        .replace("$customer", customer)
        .replace("$delivery_group", delivery_group)
}

/// Measurement names after FROM (subqueries included).
fn measurements(q: &str) -> BTreeSet<String> {
    q.split("FROM \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

fn series_count(answer: &Value) -> usize {
    answer["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["series"].as_array().map_or(0, Vec::len))
        .sum()
}

/// The values of a `SHOW TAG VALUES` answer.
fn tag_values(answer: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for s in answer["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for row in s["values"].as_array().into_iter().flatten() {
            if let Some(v) = row[1].as_str() {
                out.push(v.to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn variable_query<'a>(d: &'a Value, name: &str) -> &'a str {
    d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .and_then(|v| v["query"].as_str())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_returns_data_from_a_real_influxdb_after_a_harvest() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("dashboards");
    common::influx1_create_db(&url, &db).await;

    let history = chrono::Duration::days(2);
    let sim = Simulator::new(SimOptions {
        tenants: 3,
        seed: 42,
        now: minute_now(),
        history,
        ..SimOptions::default()
    })
    .start(IpAddr::V4(Ipv4Addr::LOCALHOST))
    .await
    .expect("simulator starts");
    let state = tempfile::tempdir().unwrap();
    let output = SinkConfig::new(SinkKind::InfluxV1 {
        url: url.clone(),
        database: db.clone(),
        retention_policy: None,
        username: None,
        password: None,
    });
    let lookback = history.to_std().unwrap() + Duration::from_secs(3600);
    let cfg = config_for_simulator(&sim, output, state.path().to_path_buf(), lookback);
    let summaries = run(&cfg, true, CancellationToken::new())
        .await
        .expect("harvest runs");
    for s in &summaries {
        assert!(s.ok(), "harvest of {} failed: {s:?}", s.tenant);
    }
    sim.shutdown();

    let written: BTreeSet<String> =
        tag_values_or_names(&common::influx1_query(&url, &db, "SHOW MEASUREMENTS").await);
    assert!(written.contains("citrix_logon") && written.contains("citrix_machine"));

    let mut verified = 0usize;
    let mut pending: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (path, d) in dashboards() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();

        // The variables' own queries, as Grafana runs them: customers, then the delivery groups
        // of all of them (the "All" selection) and of each one.
        let customers =
            tag_values(&common::influx1_query(&url, &db, variable_query(&d, "customer")).await);
        assert_eq!(customers.len(), 3, "{name}: customers {customers:?}");
        let dg_query = variable_query(&d, "delivery_group");
        let mut pairs: Vec<(String, String)> = Vec::new();
        for c in &customers {
            let q = dg_query.replace("$customer", &selection(std::slice::from_ref(c)));
            let dgs = tag_values(&common::influx1_query(&url, &db, &q).await);
            assert!(!dgs.is_empty(), "{name}: no delivery groups for {c}");
            pairs.extend(dgs.into_iter().map(|g| (c.clone(), g)));
        }
        let all_dgs: Vec<String> = {
            let q = dg_query.replace("$customer", &selection(&customers));
            tag_values(&common::influx1_query(&url, &db, &q).await)
        };
        let all = (selection(&customers), selection(&all_dgs));

        for p in panels(&d) {
            if !needs_query(p) {
                continue;
            }
            let title = p["title"].as_str().unwrap_or_default();
            for t in p["targets"].as_array().unwrap() {
                let raw = t["query"].as_str().unwrap();
                let ms = measurements(raw);
                assert!(!ms.is_empty(), "{name}/{title}: no FROM \"...\": {raw}");
                let missing: Vec<&String> = ms.iter().filter(|m| !written.contains(*m)).collect();
                for m in &missing {
                    assert!(
                        ANNOUNCED.contains(&m.as_str()),
                        "{name}/{title}: measurement {m} is neither written nor announced"
                    );
                }
                // "All" selected: runs without error, and has data unless it is pending.
                let q = expand(raw, &all.0, &all.1);
                let n = series_count(&common::influx1_query(&url, &db, &q).await);
                verified += 1;
                if !missing.is_empty() {
                    for m in missing {
                        *pending.entry(m.clone()).or_default() += 1;
                    }
                    continue;
                }
                if n == 0 {
                    failures.push(format!("{name}/{title} (All): no series: {q}"));
                    continue;
                }
                // One customer and one delivery group selected: some existing pair has data.
                let mut hit = false;
                for (c, g) in &pairs {
                    let q = expand(
                        raw,
                        &selection(std::slice::from_ref(c)),
                        &selection(std::slice::from_ref(g)),
                    );
                    let n = series_count(&common::influx1_query(&url, &db, &q).await);
                    verified += 1;
                    if n > 0 {
                        hit = true;
                        break;
                    }
                }
                if !hit {
                    failures.push(format!(
                        "{name}/{title}: no series for any single customer and delivery group: {raw}"
                    ));
                }
            }
        }
    }
    eprintln!(
        "dashboard queries run: {verified}; measurements written: {written:?}; \
         queries on measurements not written yet (ran without error): {pending:?}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `SHOW MEASUREMENTS` answers one column of names.
fn tag_values_or_names(answer: &Value) -> BTreeSet<String> {
    answer["results"][0]["series"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r[0].as_str().map(str::to_string))
        .collect()
}

#[test]
fn grafana_regex_escaping_matches_what_grafana_sends() {
    assert_eq!(regex_escape("Contoso, Ltd."), "Contoso, Ltd\\.");
    assert_eq!(regex_escape("a/b (c)"), "a\\/b \\(c\\)");
    assert_eq!(
        selection(&["x.y".to_string(), "z".to_string()]),
        "(x\\.y|z)"
    );
}
