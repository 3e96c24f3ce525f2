//! The Grafana dashboards in deploy/grafana/dashboards, proven without Grafana: their JSON is a
//! well-formed provisionable dashboard (unique uid, title, panels whose datasource is the
//! provisioned one, a `customer` variable, a `delivery_group` variable wherever a query uses
//! it), and every panel query runs on the real InfluxDB 1.6 after a simulated harvest and
//! returns data. The harvest is the real scheduler, in-process, over every entity kind, two
//! cycles, so the harvester's own `citrix_harvester` points exist too (two per tenant: its
//! counters are cumulative, and a panel of their increase needs two). The measurements the
//! panels read are taken from the dashboards themselves; each must have been written, and
//! each measurement written must have a panel. Grafana's part of a query (variables,
//! `$timeFilter`, `$__interval`) is substituted here the way Grafana does it.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc, Weekday};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use citrix_harvester::demo::config_for_simulator;
use citrix_harvester::scheduler::{Harvester, TenantSummary};
use citrix_harvester::sim::SimOptions;
use citrix_harvester::sink::{SinkConfig, SinkKind};

/// Grafana's own variables the dashboards may use besides their template variables.
const BUILTINS: &[&str] = &["timeFilter", "__interval", "__interval_ms"];

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

/// Every panel query of a dashboard with its panel's title.
fn queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(d).into_iter().filter(|p| needs_query(p)) {
        let title = p["title"].as_str().unwrap_or_default();
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(q) = t["query"].as_str() {
                out.push((title.to_string(), q.to_string()));
            }
        }
    }
    out
}

/// The `$name`s a query uses (not the `$` that ends a regex).
fn variables_used(q: &str) -> BTreeSet<String> {
    q.split('$')
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .collect()
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
        let names: HashSet<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
        let queries = queries(&d);
        let mut wanted = vec!["customer"];
        if queries.iter().any(|(_, q)| q.contains("$delivery_group")) {
            wanted.push("delivery_group");
        }
        for (title, q) in &queries {
            for used in variables_used(q) {
                assert!(
                    names.contains(used.as_str()) || BUILTINS.contains(&used.as_str()),
                    "{name}/{title}: ${used} is not a variable of the dashboard: {q}"
                );
            }
        }
        for want in wanted {
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
        let mut placed: Vec<(String, [u64; 4])> = Vec::new();
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
            let rect = |g: &Value| ["x", "y", "w", "h"].map(|k| g[k].as_u64().unwrap());
            let [x, y, w, h] = rect(g);
            // Grafana would push an overlapping panel down, away from where it was placed.
            for (other, [ox, oy, ow, oh]) in &placed {
                assert!(
                    x + w <= *ox || ox + ow <= x || y + h <= *oy || oy + oh <= y,
                    "{name}: panels {title:?} and {other:?} overlap"
                );
            }
            placed.push((title.to_string(), [x, y, w, h]));
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
    // The simulated present is up to four days back (see `simulated_now`), its history two more.
    q.replace("$timeFilter", "time >= now() - 7d")
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

fn variable_query<'a>(d: &'a Value, name: &str) -> Option<&'a str> {
    d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .and_then(|v| v["query"].as_str())
}

/// The variables' own queries, as Grafana runs them: the customers, then (if the dashboard has
/// the variable) the delivery groups of each customer and of all of them. Returns the "All"
/// selection and every single (customer, delivery group) selection that exists.
async fn selections(
    url: &str,
    db: &str,
    name: &str,
    d: &Value,
) -> ((String, String), Vec<(String, String)>) {
    let customers =
        tag_values(&common::influx1_query(url, db, variable_query(d, "customer").unwrap()).await);
    assert_eq!(customers.len(), 3, "{name}: customers {customers:?}");
    let Some(dg_query) = variable_query(d, "delivery_group") else {
        let singles = customers
            .iter()
            .map(|c| (selection(std::slice::from_ref(c)), String::new()))
            .collect();
        return ((selection(&customers), String::new()), singles);
    };
    let mut singles = Vec::new();
    for c in &customers {
        let q = dg_query.replace("$customer", &selection(std::slice::from_ref(c)));
        let dgs = tag_values(&common::influx1_query(url, db, &q).await);
        assert!(!dgs.is_empty(), "{name}: no delivery groups for {c}");
        singles.extend(dgs.into_iter().map(|g| {
            (
                selection(std::slice::from_ref(c)),
                selection(std::slice::from_ref(&g)),
            )
        }));
    }
    let q = dg_query.replace("$customer", &selection(&customers));
    let all_dgs = tag_values(&common::influx1_query(url, db, &q).await);
    ((selection(&customers), selection(&all_dgs)), singles)
}

/// Runs one expanded query: an InfluxQL error fails the test at once (it is a broken panel
/// whatever the data); otherwise the number of series that hold at least one value.
async fn series_with_values(url: &str, db: &str, what: &str, q: &str) -> usize {
    assert!(
        !q.contains("$timeFilter") && variables_used(q).is_empty(),
        "{what}: not fully expanded: {q}"
    );
    let answer = common::influx1_query(url, db, q).await;
    for r in answer["results"].as_array().into_iter().flatten() {
        assert!(r.get("error").is_none(), "{what}: {}: {q}", r["error"]);
    }
    let n = series_count(&answer);
    let valued = answer["results"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["series"].as_array().into_iter().flatten())
        .filter(|s| {
            s["values"].as_array().into_iter().flatten().any(|row| {
                row.as_array()
                    .is_some_and(|r| r[1..].iter().any(|v| !v.is_null()))
            })
        })
        .count();
    assert!(valued <= n);
    valued
}

/// The simulated present: the latest weekday 12:07 UTC that has passed. Running applications
/// are a snapshot of that moment, and at noon on a weekday the simulated tenants (UTC+1, −5,
/// +10) have some running (at least 3 on each of 86 weekdays checked with seed 42), whereas on
/// a weekend evening there may be none, which would make the test depend on when it runs.
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

/// Two cycles of the real scheduler over every entity kind of every simulated tenant, into the
/// database; both must succeed. The second starts in a later second than the first ended, so
/// each tenant has two `citrix_harvester` points (they are stamped in whole seconds).
async fn harvest(url: &str, db: &str) -> Vec<TenantSummary> {
    let history = chrono::Duration::days(2);
    let sim = common::sim::start(SimOptions {
        tenants: 3,
        seed: 42,
        now: simulated_now(),
        history,
        ..SimOptions::default()
    })
    .await;
    let state = tempfile::tempdir().unwrap();
    let output = SinkConfig::new(SinkKind::InfluxV1 {
        url: url.to_string(),
        database: db.to_string(),
        retention_policy: None,
        username: None,
        password: None,
    });
    let behind = (Utc::now() - sim.now()).to_std().unwrap();
    let lookback = behind + history.to_std().unwrap() + Duration::from_secs(3600);
    let cfg = config_for_simulator(&sim, output, state.path().to_path_buf(), lookback);
    assert!(cfg.tenants.iter().all(|t| {
        citrix_harvester::config::KNOWN_ENTITIES
            .iter()
            .all(|k| t.entities.iter().any(|e| e == k))
    }));
    let h = Arc::new(Harvester::new(&cfg).expect("harvester starts"));
    let cancel = CancellationToken::new();
    let mut all = Vec::new();
    for cycle in 1..=2 {
        let summaries = h.run_once(&cancel).await;
        assert_eq!(summaries.len(), 3);
        for s in &summaries {
            assert!(s.ok(), "cycle {cycle} of {} failed: {s:?}", s.tenant);
        }
        all.extend(summaries);
        let second = Utc::now().timestamp();
        while Utc::now().timestamp() == second {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(
        h.sink().stats().spool_bytes,
        0,
        "nothing may wait in the spool"
    );
    sim.shutdown();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_returns_data_from_a_real_influxdb_after_a_harvest() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("dashboards");
    common::influx1_create_db(&url, &db).await;
    harvest(&url, &db).await;

    let written = measurement_names(&common::influx1_query(&url, &db, "SHOW MEASUREMENTS").await);
    let ds = dashboards();
    // What the dashboards read, from their own queries (variables included).
    let mut read: BTreeSet<String> = BTreeSet::new();
    for (_, d) in &ds {
        for (_, q) in queries(d) {
            read.extend(measurements(&q));
        }
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            read.extend(measurements(v["query"].as_str().unwrap_or_default()));
        }
    }
    let unwritten: Vec<&String> = read.difference(&written).collect();
    assert!(
        unwritten.is_empty(),
        "panels read measurements the harvest did not write: {unwritten:?}"
    );
    let unread: Vec<&String> = written.difference(&read).collect();
    assert!(
        unread.is_empty(),
        "measurements written that no panel shows: {unread:?}"
    );
    assert!(
        read.contains("citrix_harvester") && read.len() >= 19,
        "{read:?}"
    );

    let (mut panel_count, mut query_count, mut runs) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for (path, d) in &ds {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let (all, singles) = selections(&url, &db, &name, d).await;
        for p in panels(d) {
            if !needs_query(p) {
                continue;
            }
            panel_count += 1;
            let title = p["title"].as_str().unwrap_or_default();
            for t in p["targets"].as_array().unwrap() {
                query_count += 1;
                let raw = t["query"].as_str().unwrap();
                let what = format!("{name}/{title}/{}", t["refId"]);
                // "All" selected: data.
                let q = expand(raw, &all.0, &all.1);
                runs += 1;
                if series_with_values(&url, &db, &what, &q).await == 0 {
                    failures.push(format!("{what} (All): no series with a value: {q}"));
                    continue;
                }
                // One customer (and one delivery group) selected: some existing one has data.
                let mut hit = false;
                for (c, g) in &singles {
                    let q = expand(raw, c, g);
                    runs += 1;
                    if series_with_values(&url, &db, &what, &q).await > 0 {
                        hit = true;
                        break;
                    }
                }
                if !hit {
                    failures.push(format!(
                        "{what}: no series for any single customer (and delivery group): {raw}"
                    ));
                }
            }
        }
    }
    eprintln!(
        "dashboards: {}; panels with queries: {panel_count}; panel queries: {query_count}, \
         all returning data; queries run (with the selections): {runs}; measurements read \
         and written: {}",
        ds.len(),
        read.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `SHOW MEASUREMENTS` answers one column of names.
fn measurement_names(answer: &Value) -> BTreeSet<String> {
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
