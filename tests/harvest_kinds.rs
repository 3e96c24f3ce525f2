//! Every Monitor data kind, end to end into the real InfluxDB 1.6: each measurement holds
//! exactly one point per simulator row (values checked for a sample of rows, summaries with
//! Citrix's semantics), incremental runs across a simulated restart are gap-free and
//! duplicate-free, and rows sharing the watermark's timestamp are never skipped.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use citrix_harvester::checkpoint::Checkpoints;
use citrix_harvester::config::Config;
use citrix_harvester::demo::config_for_simulator;
use citrix_harvester::scheduler::{TenantSummary, minute_now, run};
use citrix_harvester::sim::{SimHandle, SimOptions};
use citrix_harvester::sink::{SinkConfig, SinkKind};

async fn start_sim(seed: u64) -> SimHandle {
    common::sim::start(SimOptions {
        tenants: 1,
        seed,
        page_size: 100,
        now: minute_now(),
        history: chrono::Duration::days(2),
        ..SimOptions::default()
    })
    .await
}

fn v1_config(sim: &SimHandle, url: &str, db: &str, state: &std::path::Path) -> Config {
    let output = SinkConfig::new(SinkKind::InfluxV1 {
        url: url.to_string(),
        database: db.to_string(),
        retention_policy: None,
        username: None,
        password: None,
    });
    let mut cfg = config_for_simulator(
        sim,
        output,
        state.to_path_buf(),
        Duration::from_secs(4 * 86_400),
    );
    cfg.citrix.max_retry_delay = Duration::from_secs(2);
    cfg
}

async fn once(cfg: &Config) -> Vec<TenantSummary> {
    let s = run(cfg, true, CancellationToken::new())
        .await
        .expect("harvester runs");
    assert!(s.iter().all(TenantSummary::ok), "{s:#?}");
    s
}

/// `SELECT count(field) ... GROUP BY <group>` as group value → count.
async fn counts(
    url: &str,
    db: &str,
    m: &str,
    field: &str,
    cid: &str,
    group: Option<&str>,
) -> HashMap<String, u64> {
    let g = group
        .map(|g| format!(" GROUP BY \"{g}\""))
        .unwrap_or_default();
    let q = format!("SELECT count(\"{field}\") FROM \"{m}\" WHERE customer_id = '{cid}'{g}");
    let resp = common::influx1_query(url, db, &q).await;
    let mut out = HashMap::new();
    for s in resp["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let key = group
            .and_then(|g| s["tags"][g].as_str().map(str::to_string))
            .unwrap_or_default();
        out.insert(key, s["values"][0][1].as_u64().unwrap_or(0));
    }
    out
}

async fn total(url: &str, db: &str, m: &str, field: &str, cid: &str) -> u64 {
    counts(url, db, m, field, cid, None).await.values().sum()
}

fn by_granularity(rows: &[Value]) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for r in rows {
        *out.entry(r["Granularity"].as_i64().unwrap().to_string())
            .or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_has_one_point_per_simulator_row() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("kinds");
    common::influx1_create_db(&url, &db).await;
    let sim = start_sim(31).await;
    let cid = sim.tenants()[0].customer_id.clone();
    let state = tempfile::tempdir().unwrap();
    once(&v1_config(&sim, &url, &db, state.path())).await;
    let rows = |set: &str| sim.rows(&cid, set);

    // Events and samples: one point per row.
    for (m, field, set) in [
        ("citrix_logon", "connection_id", "Connections"),
        ("citrix_session", "connection_state_code", "Sessions"),
        (
            "citrix_connection_failure",
            "count",
            "ConnectionFailureLogs",
        ),
        ("citrix_machine_failure", "count", "MachineFailureLogs"),
        ("citrix_load_index", "load_index", "LoadIndexes"),
        (
            "citrix_resource_utilization",
            "cpu_pct",
            "ResourceUtilization",
        ),
        ("citrix_machine_metric", "iops", "MachineMetric"),
        ("citrix_session_metrics", "ica_rtt_ms", "SessionMetrics"),
        ("citrix_hotfix", "count", "MachineHotfixLogs"),
        (
            "citrix_application_instance",
            "launches",
            "ApplicationInstances",
        ),
    ] {
        let expected = rows(set).len() as u64;
        assert!(expected > 0, "simulator has no {set}");
        assert_eq!(
            total(&url, &db, m, field, &cid).await,
            expected,
            "{m} vs {set}"
        );
    }

    // Summaries: one point per row and granularity.
    for (m, field, set) in [
        (
            "citrix_session_activity",
            "concurrent_sessions",
            "SessionActivitySummaries",
        ),
        ("citrix_logon_summary", "logon_count", "LogOnSummaries"),
        ("citrix_load_index_summary", "samples", "LoadIndexSummaries"),
        (
            "citrix_failure_summary",
            "failure_count",
            "FailureLogSummaries",
        ),
        ("citrix_machine_summary", "machines", "MachineSummaries"),
        (
            "citrix_resource_summary",
            "cpu_avg_pct",
            "ResourceUtilizationSummary",
        ),
    ] {
        let expected = by_granularity(&rows(set));
        let got = counts(&url, &db, m, field, &cid, Some("granularity")).await;
        assert_eq!(got, expected, "{m} vs {set} by granularity");
    }

    // Summary semantics: maxima stay maxima, the average is the row's total ÷ count.
    let busiest = rows("SessionActivitySummaries")
        .into_iter()
        .filter(|r| r["Granularity"] == 60)
        .max_by_key(|r| r["ConcurrentSessionCount"].as_i64())
        .unwrap();
    let at: DateTime<Utc> = busiest["SummaryDate"].as_str().unwrap().parse().unwrap();
    let q = format!(
        "SELECT concurrent_sessions, logon_count, logon_avg_ms FROM citrix_session_activity \
         WHERE customer_id = '{cid}' AND granularity = '60' AND time = {}",
        at.timestamp_nanos_opt().unwrap()
    );
    let resp = common::influx1_query(&url, &db, &q).await;
    let series = resp["results"][0]["series"]
        .as_array()
        .expect("the busiest hour is there");
    let values: Vec<&Value> = series
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap())
        .collect();
    let max_written = values.iter().map(|v| v[1].as_i64().unwrap()).max().unwrap();
    assert_eq!(
        max_written,
        busiest["ConcurrentSessionCount"].as_i64().unwrap()
    );
    for v in &values {
        if let (Some(count), Some(avg)) = (v[2].as_i64(), v[3].as_f64()) {
            assert!(count > 0 && avg > 0.0);
        }
    }
    let row = rows("SessionActivitySummaries")
        .into_iter()
        .find(|r| r["TotalLogOnCount"].as_i64().unwrap_or(0) > 0)
        .unwrap();
    let expect_avg =
        row["TotalLogOnDuration"].as_f64().unwrap() / row["TotalLogOnCount"].as_f64().unwrap();
    let at: DateTime<Utc> = row["SummaryDate"].as_str().unwrap().parse().unwrap();
    let q = format!(
        "SELECT logon_avg_ms FROM citrix_session_activity WHERE customer_id = '{cid}' \
         AND granularity = '{}' AND logon_count = {} AND time = {}",
        row["Granularity"],
        row["TotalLogOnCount"],
        at.timestamp_nanos_opt().unwrap()
    );
    let got = common::influx1_rows(&common::influx1_query(&url, &db, &q).await);
    assert!(
        got.iter()
            .any(|r| (r[1].as_f64().unwrap() - expect_avg).abs() < 1e-6),
        "logon_avg_ms {expect_avg} not found in {got:?}"
    );

    // Failure summaries are sums: their daily total equals the hourly rows of the same day
    // as the simulator wrote them (Citrix's rule, kept, not recomputed by the harvester).
    let sum_field = |g: &str| {
        let q = format!(
            "SELECT sum(failure_count) FROM citrix_failure_summary WHERE customer_id = '{cid}' AND granularity = '{g}'"
        );
        let (url, db) = (url.clone(), db.clone());
        async move { common::influx1_rows(&common::influx1_query(&url, &db, &q).await) }
    };
    let expected_60: i64 = rows("FailureLogSummaries")
        .iter()
        .filter(|r| r["Granularity"] == 60)
        .map(|r| r["FailureCount"].as_i64().unwrap())
        .sum();
    let got_60 = sum_field("60").await;
    assert_eq!(
        got_60.first().and_then(|r| r[1].as_i64()).unwrap_or(0),
        expected_60
    );

    // The running-applications snapshot counts every open instance once.
    let running = rows("ApplicationInstances")
        .iter()
        .filter(|r| r["EndDate"].is_null())
        .count() as i64;
    let q = format!(
        "SELECT sum(running_instances) FROM citrix_application_usage WHERE customer_id = '{cid}'"
    );
    let got = common::influx1_rows(&common::influx1_query(&url, &db, &q).await);
    assert_eq!(
        got.first().and_then(|r| r[1].as_i64()).unwrap_or(0),
        running
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_time_passes_leaves_no_gap_and_no_duplicate() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("restart");
    common::influx1_create_db(&url, &db).await;
    let sim = start_sim(32).await;
    let cid = sim.tenants()[0].customer_id.clone();
    let state = tempfile::tempdir().unwrap();
    let cfg = v1_config(&sim, &url, &db, state.path());
    once(&cfg).await;
    // "Stop", let simulated time pass (new sessions, ended sessions, late rows), start again.
    sim.advance(chrono::Duration::hours(3));
    let second = once(&cfg).await;
    let reread = second[0].entity("connections").unwrap().records;
    assert!(
        (reread as usize) < sim.rows(&cid, "Connections").len(),
        "the second run must be incremental"
    );
    for (m, field, set) in [
        ("citrix_logon", "connection_id", "Connections"),
        ("citrix_session", "connection_state_code", "Sessions"),
        (
            "citrix_connection_failure",
            "count",
            "ConnectionFailureLogs",
        ),
        (
            "citrix_application_instance",
            "launches",
            "ApplicationInstances",
        ),
        ("citrix_load_index", "load_index", "LoadIndexes"),
        ("citrix_session_metrics", "ica_rtt_ms", "SessionMetrics"),
    ] {
        assert_eq!(
            total(&url, &db, m, field, &cid).await,
            sim.rows(&cid, set).len() as u64,
            "{m}: every {set} row exactly once after a restart"
        );
    }
    for (m, field, set) in [
        (
            "citrix_session_activity",
            "concurrent_sessions",
            "SessionActivitySummaries",
        ),
        ("citrix_logon_summary", "logon_count", "LogOnSummaries"),
    ] {
        let got = counts(&url, &db, m, field, &cid, Some("granularity")).await;
        assert_eq!(
            got,
            by_granularity(&sim.rows(&cid, set)),
            "{m} after a restart"
        );
    }
    // Sessions that ended meanwhile were re-read: no point still says "running" for them.
    let ended: usize = sim
        .rows(&cid, "Sessions")
        .iter()
        .filter(|s| !s["EndDate"].is_null())
        .count();
    let q = format!(
        "SELECT count(ended) FROM citrix_session WHERE customer_id = '{cid}' AND ended = true"
    );
    let got = common::influx1_rows(&common::influx1_query(&url, &db, &q).await);
    assert_eq!(
        got.first().and_then(|r| r[1].as_u64()).unwrap_or(0) as usize,
        ended
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_sharing_the_watermark_timestamp_are_not_skipped() {
    let sim = start_sim(33).await;
    let cid = sim.tenants()[0].customer_id.clone();
    // The simulator puts several Connections with the same ModifiedDate around the first page
    // boundary; take the largest such group.
    let mut groups: HashMap<String, Vec<i64>> = HashMap::new();
    for c in sim.rows(&cid, "Connections") {
        groups
            .entry(c["ModifiedDate"].as_str().unwrap().to_string())
            .or_default()
            .push(c["Id"].as_i64().unwrap());
    }
    let (date, ids) = groups.into_iter().max_by_key(|(_, v)| v.len()).unwrap();
    assert!(ids.len() >= 3, "simulator has no shared ModifiedDate");
    let dir = tempfile::tempdir().unwrap();
    let output = SinkConfig::new(SinkKind::File {
        path: dir.path().join("points.lp"),
    });
    let mut cfg = config_for_simulator(
        &sim,
        output,
        dir.path().join("state"),
        Duration::from_secs(4 * 86_400),
    );
    cfg.harvester.overlap = Duration::ZERO;
    cfg.tenants[0].entities = vec!["connections".into()];
    // As if an earlier walk had ended exactly on that timestamp.
    let wm: DateTime<Utc> = date.parse().unwrap();
    Checkpoints::open(&dir.path().join("state"))
        .unwrap()
        .save(&cid, "connections", wm)
        .unwrap();
    let s = once(&cfg).await;
    let text = std::fs::read_to_string(dir.path().join("points.lp")).unwrap();
    for id in &ids {
        assert!(
            text.contains(&format!("connection_id={id}i")),
            "connection {id} with ModifiedDate {date} (= the watermark) was skipped"
        );
    }
    assert!(s[0].entity("connections").unwrap().records as usize >= ids.len());
}
