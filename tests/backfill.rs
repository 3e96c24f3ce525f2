//! Backfill (`--once --since`) into the real InfluxDB 1.6: a range read in windows, interrupted
//! part-way, then resumed, ends with exactly one point per simulator row of the range for every
//! chosen kind; the resumed run reads only the windows not yet delivered; the live watermarks
//! stay untouched. Plus the CLI's refusals (snapshot kinds, unknown tenants, --since without
//! --once).

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use citrix_harvester::backfill::{self, BackfillOptions, ProgressStyle, progress_key};
use citrix_harvester::checkpoint::Checkpoints;
use citrix_harvester::demo::config_for_simulator;
use citrix_harvester::scheduler::{TenantSummary, minute_now};
use citrix_harvester::sim::{Faults, SimOptions};
use citrix_harvester::sink::{SinkConfig, SinkKind};

fn date(v: &Value, field: &str) -> DateTime<Utc> {
    v[field].as_str().unwrap().parse().unwrap()
}

async fn count(url: &str, db: &str, m: &str, field: &str, group: &str) -> HashMap<String, u64> {
    let q = format!("SELECT count(\"{field}\") FROM \"{m}\" GROUP BY \"{group}\"");
    let resp = common::influx1_query(url, db, &q).await;
    let mut out = HashMap::new();
    for s in resp["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let key = s["tags"][group].as_str().unwrap_or_default().to_string();
        out.insert(key, s["values"][0][1].as_u64().unwrap_or(0));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_backfill_resumes_and_writes_every_point_once() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("backfill");
    common::influx1_create_db(&url, &db).await;
    let sim = common::sim::start(SimOptions {
        tenants: 1,
        seed: 51,
        page_size: 100,
        now: minute_now(),
        history: chrono::Duration::days(5),
        ..SimOptions::default()
    })
    .await;
    let t = sim.tenants()[0].clone();
    let state = tempfile::tempdir().unwrap();
    let output = SinkConfig::new(SinkKind::InfluxV1 {
        url: url.clone(),
        database: db.clone(),
        retention_policy: None,
        username: None,
        password: None,
    });
    let cfg = config_for_simulator(
        &sim,
        output,
        state.path().to_path_buf(),
        Duration::from_secs(86_400),
    );
    let until = sim.now();
    let since = until - chrono::Duration::days(4);
    let opts = BackfillOptions {
        since,
        until,
        window: Duration::from_secs(6 * 3600),
        tenants: vec![t.name.clone()],
        entities: vec![
            "connections".into(),
            "connection_failures".into(),
            "logon_summaries".into(),
        ],
        progress: ProgressStyle::Log,
    };

    // Slow responses so that the first run is still going when it is interrupted.
    sim.set_faults(
        &t.customer_id,
        Faults {
            slow_ms: 40,
            ..Faults::default()
        },
    );
    let stop = CancellationToken::new();
    let first = {
        let (cfg, opts, stop) = (cfg.clone(), opts.clone(), stop.clone());
        tokio::spawn(async move { backfill::run(&cfg, &opts, stop).await })
    };
    let checkpoints = Checkpoints::open(state.path()).unwrap();
    let key = progress_key("connections", since);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let done = checkpoints.load(&t.customer_id, &key).unwrap();
        if done.is_some_and(|w| w.watermark >= since + chrono::Duration::hours(18)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no progress saved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let first = first.await.unwrap().unwrap();
    let interrupted_at = checkpoints.load(&t.customer_id, &key).unwrap().unwrap();
    assert!(
        first[0].entities.iter().any(|e| e.interrupted),
        "the first run was not interrupted: {first:#?}"
    );
    assert!(interrupted_at.watermark < until);

    sim.set_faults(&t.customer_id, Faults::default());
    let second = backfill::run(&cfg, &opts, CancellationToken::new())
        .await
        .unwrap();
    assert!(second.iter().all(TenantSummary::ok), "{second:#?}");

    let in_range = |set: &str, field: &str, extra: &dyn Fn(&Value) -> bool| -> Vec<Value> {
        sim.rows(&t.customer_id, set)
            .into_iter()
            .filter(|r| {
                let d = date(r, field);
                d >= since && d < until && extra(r)
            })
            .collect()
    };
    let conns = in_range("Connections", "ModifiedDate", &|_| true);
    assert!(conns.len() > 200, "{}", conns.len());
    // The resumed run read only what was left: not the windows delivered before.
    let resumed = second[0].entity("connections").unwrap().records as usize;
    let before = conns
        .iter()
        .filter(|c| date(c, "ModifiedDate") < interrupted_at.watermark)
        .count();
    assert!(before > 0);
    assert_eq!(resumed, conns.len() - before);

    // Exactly one point per row of the range, for each kind.
    let logons = count(&url, &db, "citrix_logon", "connection_id", "customer_id").await;
    assert_eq!(
        logons.get(&t.customer_id).copied(),
        Some(conns.len() as u64)
    );
    let failures = in_range("ConnectionFailureLogs", "ModifiedDate", &|_| true);
    assert!(!failures.is_empty());
    let written = count(
        &url,
        &db,
        "citrix_connection_failure",
        "failure_code",
        "customer_id",
    )
    .await;
    assert_eq!(
        written.get(&t.customer_id).copied(),
        Some(failures.len() as u64)
    );
    let mut want: HashMap<String, u64> = HashMap::new();
    for r in in_range("LogOnSummaries", "SummaryDate", &|_| true) {
        *want
            .entry(r["Granularity"].as_i64().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(want.len() >= 2, "{want:?}");
    let got = count(
        &url,
        &db,
        "citrix_logon_summary",
        "logon_count",
        "granularity",
    )
    .await;
    assert_eq!(got, want);

    // The live watermarks were left alone; the progress reached the end of the range.
    for job in ["connections", "connection_failures", "logon_summaries_60"] {
        assert_eq!(
            checkpoints.load(&t.customer_id, job).unwrap(),
            None,
            "{job}"
        );
        assert_eq!(
            checkpoints
                .load(&t.customer_id, &progress_key(job, since))
                .unwrap()
                .unwrap()
                .watermark,
            until,
            "{job}"
        );
    }
    // Running it again finds nothing left to read.
    let third = backfill::run(&cfg, &opts, CancellationToken::new())
        .await
        .unwrap();
    assert!(
        third[0]
            .entities
            .iter()
            .all(|e| e.records == 0 && e.pages == 0)
    );
}

fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_citrix-harvester"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_refuses_what_cannot_be_backfilled() {
    let (code, err) = cli(&["--since", "7d"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--once"), "{err}");
    let (code, err) = cli(&[
        "--once",
        "--since",
        "last week",
        "--config",
        "/nonexistent.toml",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--since `last week` is neither a date"),
        "{err}"
    );
}

#[tokio::test]
async fn snapshots_and_unknown_names_are_refused_before_anything_runs() {
    let sim = common::sim::start(SimOptions {
        tenants: 1,
        history: chrono::Duration::hours(1),
        ..SimOptions::default()
    })
    .await;
    let state = tempfile::tempdir().unwrap();
    let cfg = config_for_simulator(
        &sim,
        SinkConfig::new(SinkKind::Stdout),
        state.path().to_path_buf(),
        Duration::from_secs(3600),
    );
    let now = Utc::now();
    let opts = |tenants: Vec<String>, entities: Vec<String>| BackfillOptions {
        since: now - chrono::Duration::days(1),
        until: now,
        window: Duration::from_secs(3600),
        tenants,
        entities,
        progress: ProgressStyle::Log,
    };
    let err = |o: BackfillOptions| {
        let cfg = cfg.clone();
        async move {
            backfill::run(&cfg, &o, CancellationToken::new())
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let e = err(opts(vec![], vec!["machines".into()])).await;
    assert!(e.contains("--entity machines: a snapshot"), "{e}");
    let e = err(opts(vec![], vec!["connection".into()])).await;
    assert!(e.contains("--entity connection: not an entity kind"), "{e}");
    let e = err(opts(vec!["Nobody".into()], vec![])).await;
    assert!(e.contains("--tenant Nobody: no tenant of that name"), "{e}");
    assert_eq!(
        sim.stats()
            .tenants
            .values()
            .map(|s| s.requests)
            .sum::<u64>(),
        0
    );
}
