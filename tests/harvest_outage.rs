//! The output server goes away in the middle of a harvest and comes back: the harvest goes on
//! into the on-disk spool, the spool replays when the server answers again, and afterwards the
//! real InfluxDB 1.6 holds exactly one point per simulator row — nothing lost, nothing doubled.
//! "Away" is a TCP proxy in front of the shared server, switched off and on by the test.

mod common;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use citrix_harvester::demo::config_for_simulator;
use citrix_harvester::scheduler::{TenantSummary, minute_now, run};
use citrix_harvester::sim::{Faults, SimOptions};
use citrix_harvester::sink::{SinkConfig, SinkKind};
use common::proxy::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_away_mid_harvest_then_back_loses_nothing() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("outage");
    common::influx1_create_db(&url, &db).await;
    let proxy = Proxy::start(&url, true).await;
    let sim = common::sim::start(SimOptions {
        tenants: 1,
        seed: 41,
        now: minute_now(),
        history: chrono::Duration::days(1),
        ..SimOptions::default()
    })
    .await;
    let cid = sim.tenants()[0].customer_id.clone();
    // Slow Citrix answers stretch the harvest over several seconds, so the outage lands inside it.
    sim.set_faults(
        &cid,
        Faults {
            slow_ms: 80,
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let mut output = SinkConfig::new(SinkKind::InfluxV1 {
        url: proxy.url.clone(),
        database: db.clone(),
        retention_policy: None,
        username: None,
        password: None,
    });
    output.retry_max_elapsed = Duration::from_secs(1);
    let cfg = config_for_simulator(
        &sim,
        output,
        dir.path().join("state"),
        Duration::from_secs(3 * 86_400),
    );
    let harvest =
        tokio::spawn(async move { run(&cfg, true, CancellationToken::new()).await.unwrap() });

    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.set_up(false);
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.set_up(true);
    let summaries = harvest.await.unwrap();
    assert!(summaries.iter().all(TenantSummary::ok), "{summaries:#?}");
    let spooled: u64 = summaries[0].entities.iter().map(|e| e.spooled).sum();
    assert!(
        spooled > 0,
        "the outage did not hit the harvest: {summaries:#?}"
    );
    assert!(
        !summaries[0]
            .entities
            .iter()
            .all(|e| e.spooled == 0 && e.points_written == 0)
    );

    for (m, field, set) in [
        ("citrix_logon", "connection_id", "Connections"),
        ("citrix_session", "connection_state_code", "Sessions"),
        ("citrix_load_index", "load_index", "LoadIndexes"),
        (
            "citrix_resource_utilization",
            "cpu_pct",
            "ResourceUtilization",
        ),
        (
            "citrix_application_instance",
            "launches",
            "ApplicationInstances",
        ),
    ] {
        let q = format!("SELECT count(\"{field}\") FROM \"{m}\" WHERE customer_id = '{cid}'");
        let rows = common::influx1_rows(&common::influx1_query(&url, &db, &q).await);
        let got = rows
            .first()
            .and_then(|r| r.get(1))
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        assert_eq!(
            got,
            sim.rows(&cid, set).len() as u64,
            "{m} after the outage (spooled {spooled})"
        );
    }
    let machines = sim
        .rows(&cid, "Machines")
        .iter()
        .filter(|m| m["LifecycleState"].as_i64() == Some(0))
        .count() as u64;
    let q = format!("SELECT count(session_count) FROM citrix_machine WHERE customer_id = '{cid}'");
    let rows = common::influx1_rows(&common::influx1_query(&url, &db, &q).await);
    assert_eq!(
        rows.first().and_then(|r| r.get(1)).and_then(|v| v.as_u64()),
        Some(machines)
    );
}
