//! End to end: the simulator in-process, the harvester's ordinary scheduler, and the real
//! time-series servers started by tests/run-with-servers.sh (InfluxDB 1.6 for the v1 API,
//! VictoriaMetrics for the v2 API). Every assertion compares what the server holds with the
//! simulator's own rows.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use citrix_harvester::config::Config;
use citrix_harvester::demo::config_for_simulator;
use citrix_harvester::scheduler::{TenantSummary, minute_now, run};
use citrix_harvester::sim::{SimHandle, SimOptions};
use citrix_harvester::sink::{SinkConfig, SinkKind};

const HISTORY_DAYS: i64 = 2;

async fn start_sim(tenants: usize, seed: u64, page_size: usize) -> SimHandle {
    common::sim::start(SimOptions {
        tenants,
        seed,
        page_size,
        now: minute_now(),
        history: chrono::Duration::days(HISTORY_DAYS),
        ..SimOptions::default()
    })
    .await
}

fn harvester_config(sim: &SimHandle, output: SinkConfig, state: PathBuf) -> Config {
    let lookback = Duration::from_secs(HISTORY_DAYS as u64 * 86_400 + 3600);
    let mut cfg = config_for_simulator(sim, output, state, lookback);
    // Keep retries short so fault tests finish quickly.
    cfg.citrix.max_retry_delay = Duration::from_secs(2);
    cfg
}

async fn once(cfg: &Config) -> Vec<TenantSummary> {
    run(cfg, true, CancellationToken::new())
        .await
        .expect("harvester runs")
}

fn date(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|s| s.parse().ok())
}

/// The simulator's active machines of a tenant.
fn active_machines(sim: &SimHandle, cid: &str) -> Vec<Value> {
    sim.rows(cid, "Machines")
        .into_iter()
        .filter(|m| m["LifecycleState"].as_i64() == Some(0))
        .collect()
}

fn assert_one_request_at_a_time(sim: &SimHandle) {
    let stats = sim.stats();
    for t in sim.tenants() {
        let max = stats
            .tenants
            .get(&t.customer_id)
            .map_or(0, |s| s.max_in_flight);
        assert!(
            max <= 1,
            "tenant {} had {max} requests in flight: {stats:?}",
            t.customer_id
        );
    }
}

/// Polls VictoriaMetrics until the series matching `selector` hold at least `samples` samples
/// (new series take a moment to become searchable), then returns the series.
async fn vm_wait_for_samples(
    url: &str,
    selector: &str,
    samples: usize,
    timeout: Duration,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        common::vm_force_flush(url).await;
        let got = common::vm_export(url, selector).await;
        let n: usize = got
            .iter()
            .map(|s| s["values"].as_array().map_or(0, Vec::len))
            .sum();
        if n >= samples || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn influx_rows(resp: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(series) = resp["results"][0]["series"].as_array() {
        for s in series {
            let cols: Vec<String> = s["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            for v in s["values"].as_array().unwrap() {
                let mut row = serde_json::Map::new();
                for (c, x) in cols.iter().zip(v.as_array().unwrap()) {
                    row.insert(c.clone(), x.clone());
                }
                if let Some(tags) = s["tags"].as_object() {
                    for (k, x) in tags {
                        row.insert(k.clone(), x.clone());
                    }
                }
                out.push(Value::Object(row));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harvest_into_influxdb_v1_matches_the_simulator_exactly() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("e2e_v1");
    common::influx1_create_db(&url, &db).await;
    let sim = start_sim(2, 7, 100).await;
    let state = tempfile::tempdir().unwrap();
    let output = SinkConfig::new(SinkKind::InfluxV1 {
        url: url.clone(),
        database: db.clone(),
        retention_policy: None,
        username: None,
        password: None,
    });
    let cfg = harvester_config(&sim, output, state.path().to_path_buf());
    let summaries = once(&cfg).await;
    for s in &summaries {
        assert!(s.ok(), "tenant not ok: {s:?}");
    }
    assert_one_request_at_a_time(&sim);

    for t in sim.tenants() {
        let conns = sim.rows(&t.customer_id, "Connections");
        let machines = active_machines(&sim, &t.customer_id);
        assert!(!conns.is_empty() && !machines.is_empty());

        // Every connection is one point, with its id.
        let q = format!(
            "SELECT connection_id, logon_duration_ms, brokering_ms, user_name, delivery_group, protocol, is_reconnect \
             FROM citrix_logon WHERE customer_id = '{}'",
            t.customer_id
        );
        let rows = influx_rows(&common::influx1_query(&url, &db, &q).await);
        assert_eq!(rows.len(), conns.len(), "tenant {}", t.name);
        let by_id: BTreeMap<i64, &Value> = rows
            .iter()
            .map(|r| (r["connection_id"].as_i64().unwrap(), r))
            .collect();
        assert_eq!(by_id.len(), conns.len(), "connection ids unique");
        for c in &conns {
            let id = c["Id"].as_i64().unwrap();
            let r = by_id
                .get(&id)
                .unwrap_or_else(|| panic!("connection {id} missing"));
            let expect_total = match (date(&c["LogOnStartDate"]), date(&c["LogOnEndDate"])) {
                (Some(a), Some(b)) if b >= a => Some((b - a).num_milliseconds()),
                _ => None,
            };
            if let Some(total) = expect_total {
                assert_eq!(
                    r["logon_duration_ms"].as_i64(),
                    Some(total),
                    "connection {id}"
                );
            }
            assert_eq!(
                r["brokering_ms"].as_i64(),
                c["BrokeringDuration"].as_i64(),
                "connection {id}"
            );
            assert_eq!(
                r["protocol"].as_str(),
                c["Protocol"].as_str(),
                "connection {id}"
            );
            let reconnect = c["IsReconnect"].as_bool().unwrap_or(false);
            assert_eq!(
                r["is_reconnect"].as_str(),
                Some(if reconnect { "true" } else { "false" })
            );
        }
        // Users (with apostrophes, backslashes, non-ASCII) come back unchanged.
        let users: HashSet<String> = sim
            .rows(&t.customer_id, "Users")
            .iter()
            .filter_map(|u| u["UserName"].as_str().map(str::to_string))
            .collect();
        for r in &rows {
            if let Some(u) = r["user_name"].as_str() {
                assert!(users.contains(u), "user {u:?} not a simulator user");
            }
        }

        // One machine point per active machine; names with spaces, commas, quotes survive as tags.
        let q = format!(
            "SELECT session_count, registration_state_code, machine, registration_state \
             FROM citrix_machine WHERE customer_id = '{}'",
            t.customer_id
        );
        let mrows = influx_rows(&common::influx1_query(&url, &db, &q).await);
        assert_eq!(mrows.len(), machines.len(), "tenant {}", t.name);
        let names: HashSet<&str> = mrows.iter().filter_map(|r| r["machine"].as_str()).collect();
        for m in &machines {
            let name = m["Name"].as_str().unwrap();
            assert!(
                names.contains(name.trim_end_matches('\\')),
                "machine {name:?} missing; have {names:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harvest_into_victoriametrics_v2_counts_match() {
    let Some(url) = common::vm_url() else { return };
    let sim = start_sim(1, 11, 100).await;
    let state = tempfile::tempdir().unwrap();
    let output = common::influx_v2_output(&url);
    let cfg = harvester_config(&sim, output, state.path().to_path_buf());
    let summaries = once(&cfg).await;
    assert!(summaries.iter().all(TenantSummary::ok), "{summaries:?}");
    let t = &sim.tenants()[0];
    // Make the customer unique on the shared server: the simulator's ids are seeded.
    let conns = sim.rows(&t.customer_id, "Connections");
    let machines = active_machines(&sim, &t.customer_id);
    let sel = format!(
        "citrix_logon_connection_id{{customer_id=\"{}\"}}",
        t.customer_id
    );
    let series = vm_wait_for_samples(&url, &sel, conns.len(), Duration::from_secs(20)).await;
    let ids: HashSet<i64> = series
        .iter()
        .flat_map(|s| {
            s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as i64)
        })
        .collect();
    // VictoriaMetrics keeps milliseconds: connections of one series in the same millisecond
    // merge. The simulator's dates are spread enough that this does not happen; if it ever
    // does, this assertion names the cause.
    assert_eq!(
        ids.len(),
        conns.len(),
        "connection ids in VictoriaMetrics (ms precision)"
    );
    let sel = format!(
        "citrix_machine_session_count{{customer_id=\"{}\"}}",
        t.customer_id
    );
    let series = vm_wait_for_samples(&url, &sel, machines.len(), Duration::from_secs(20)).await;
    assert_eq!(series.len(), machines.len());
    assert_one_request_at_a_time(&sim);
}
