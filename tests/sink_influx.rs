//! The sink against real servers: the v1 API on InfluxDB 1.6 (strict parser, read back with
//! InfluxQL) and the v2 API on VictoriaMetrics, with and without gzip; bisection of a 400 by
//! the real InfluxDB. Servers come from tests/run-with-servers.sh (skipped outside CI without).

mod common;

use std::time::Duration;

use citrix_harvester::lineproto::Point;
use citrix_harvester::sink::{Sink, SinkConfig, SinkKind, WriteReport};
use serde_json::{Value, json};

fn v1_sink(url: &str, db: &str, gzip: bool) -> Sink {
    let mut cfg = SinkConfig::new(SinkKind::InfluxV1 {
        url: url.to_owned(),
        database: db.to_owned(),
        retention_policy: None,
        username: None,
        password: None,
    });
    cfg.gzip = gzip;
    cfg.batch_size = 7; // several batches per write
    cfg.retry_max_elapsed = Duration::from_secs(5);
    Sink::new(cfg).unwrap()
}

const T0: i64 = 1_700_000_000_123_456_789;

fn sample(n: i64) -> Vec<Point> {
    (0..n)
        .map(|i| {
            Point::new("sink_test", T0 + i)
                .tag("customer", "Acme, Inc. = \"big\"")
                .tag("machine", format!("vm {i}"))
                .tag("empty", "")
                .field("count", i)
                .field("ratio", i as f64 / 4.0)
                .field("up", i % 2 == 0)
                .field("user", format!("dom\\user \"{i}\"\nnext"))
        })
        .collect()
}

async fn v1_roundtrip(gzip: bool) {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("sink_v1");
    common::influx1_create_db(&url, &db).await;
    let sink = v1_sink(&url, &db, gzip);
    let r = sink.write(&sample(20)).await.unwrap();
    assert_eq!(
        r,
        WriteReport {
            written: 20,
            rejected: 0,
            dropped: 0,
            spooled: 0
        }
    );
    let ans = common::influx1_query(
        &url,
        &db,
        "SELECT count(\"count\") FROM sink_test WHERE customer = 'Acme, Inc. = \"big\"'",
    )
    .await;
    assert_eq!(common::influx1_rows(&ans)[0][1], json!(20), "{ans}");
    let ans = common::influx1_query(
        &url,
        &db,
        "SELECT \"count\", ratio, up, \"user\", machine, customer FROM sink_test WHERE machine = 'vm 3'",
    )
    .await;
    let rows = common::influx1_rows(&ans);
    assert_eq!(rows.len(), 1, "{ans}");
    assert_eq!(
        rows[0],
        vec![
            json!(T0 + 3),
            json!(3),
            json!(0.75),
            json!(false),
            // the newline is written as the two characters `\n` (documented rewrite)
            json!("dom\\user \"3\"\\nnext"),
            json!("vm 3"),
            json!("Acme, Inc. = \"big\""),
        ]
    );
    // the empty tag was omitted, not stored
    let ans = common::influx1_query(&url, &db, "SHOW TAG KEYS FROM sink_test").await;
    let keys: Vec<Value> = common::influx1_rows(&ans)
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(keys, vec![json!("customer"), json!("machine")]);
}

#[tokio::test]
async fn v1_roundtrip_gzip() {
    v1_roundtrip(true).await;
}

#[tokio::test]
async fn v1_roundtrip_plain() {
    v1_roundtrip(false).await;
}

async fn v2_vm(gzip: bool) {
    let Some(url) = common::vm_url() else {
        return;
    };
    let measurement = common::unique_name("sinkv2");
    let mut cfg = SinkConfig::new(SinkKind::InfluxV2 {
        url: url.clone(),
        org: "org1".into(),
        bucket: "bucket1".into(),
        token: Some(citrix_harvester::secret::Secret::new("not-checked-by-vm")),
    });
    cfg.gzip = gzip;
    cfg.batch_size = 4;
    let sink = Sink::new(cfg).unwrap();
    let pts: Vec<Point> = (0..10)
        .map(|i| {
            Point::new(measurement.clone(), T0 + i * 1_000_000)
                .tag("dg", "Sales, EU")
                .tag("machine", format!("m={i}"))
                .field("load", i * 10)
        })
        .collect();
    let r = sink.write(&pts).await.unwrap();
    assert_eq!(r.written, 10);
    let selector = format!("{{__name__=\"{measurement}_load\"}}");
    let series = common::vm_wait_for_series(&url, &selector, 10, Duration::from_secs(15)).await;
    let mut got: Vec<(String, f64, i64)> = series
        .iter()
        .map(|s| {
            assert_eq!(s["metric"]["dg"], json!("Sales, EU"));
            (
                s["metric"]["machine"].as_str().unwrap().to_owned(),
                s["values"][0].as_f64().unwrap(),
                s["timestamps"][0].as_i64().unwrap(),
            )
        })
        .collect();
    got.sort_by_key(|g| g.2);
    for (i, (machine, value, ts)) in got.into_iter().enumerate() {
        let i = i as i64;
        assert_eq!(machine, format!("m={i}"));
        assert_eq!(value, (i * 10) as f64);
        // VictoriaMetrics keeps milliseconds
        assert_eq!(ts, (T0 + i * 1_000_000) / 1_000_000);
    }
}

#[tokio::test]
async fn v2_victoriametrics_gzip() {
    v2_vm(true).await;
}

#[tokio::test]
async fn v2_victoriametrics_plain() {
    v2_vm(false).await;
}

/// InfluxDB 1.6 refuses a whole request for one line it cannot parse (here a timestamp outside
/// its range, which our encoder lets through); bisection must deliver every other line and
/// count exactly that one as rejected.
#[tokio::test]
async fn v1_bad_line_is_isolated_by_bisection() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("sink_bisect");
    common::influx1_create_db(&url, &db).await;
    let mut cfg = SinkConfig::new(SinkKind::InfluxV1 {
        url: url.clone(),
        database: db.clone(),
        retention_policy: None,
        username: None,
        password: None,
    });
    cfg.batch_size = 50;
    let sink = Sink::new(cfg).unwrap();
    let mut pts: Vec<Point> = (0..100)
        .map(|i| Point::new("bisect", T0 + i).field("v", i))
        .collect();
    pts[37].timestamp_ns = i64::MIN;
    let (logs, _guard) = common::capture_logs();
    let r = sink.write(&pts).await.unwrap();
    assert_eq!(
        r,
        WriteReport {
            written: 99,
            rejected: 1,
            dropped: 0,
            spooled: 0
        }
    );
    let ans = common::influx1_query(&url, &db, "SELECT count(v) FROM bisect").await;
    assert_eq!(common::influx1_rows(&ans)[0][1], json!(99), "{ans}");
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("time outside range"),
        "server reason logged: {logs}"
    );
}

/// The case: one bad line in a default-sized batch of 5,000 — bisection finds it and
/// delivers the 4,999 others (each a distinct point), through the real InfluxDB 1.6.
#[tokio::test]
async fn v1_one_bad_line_in_a_batch_of_5000() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("sink_bisect5k");
    common::influx1_create_db(&url, &db).await;
    let cfg = SinkConfig::new(SinkKind::InfluxV1 {
        url: url.clone(),
        database: db.clone(),
        retention_policy: None,
        username: None,
        password: None,
    });
    assert_eq!(cfg.batch_size, 5000, "the default batch");
    let sink = Sink::new(cfg).unwrap();
    let mut pts: Vec<Point> = (0..5000)
        .map(|i| {
            Point::new("bisect5k", T0 + i)
                .tag("host", format!("h{}", i % 7))
                .field("v", i)
        })
        .collect();
    pts[3137].timestamp_ns = i64::MIN;
    let r = sink.write(&pts).await.unwrap();
    assert_eq!(
        (r.written, r.rejected, r.dropped, r.spooled),
        (4999, 1, 0, 0)
    );
    let ans = common::influx1_query(&url, &db, "SELECT count(v) FROM bisect5k").await;
    let total: i64 = ans["results"][0]["series"][0]["values"][0][1]
        .as_i64()
        .unwrap_or(0);
    assert_eq!(total, 4999, "{ans}");
    let ans = common::influx1_query(&url, &db, "SELECT v FROM bisect5k WHERE v = 3137").await;
    assert!(
        common::influx1_rows(&ans).is_empty(),
        "the bad line must not be stored: {ans}"
    );
}

/// A field type conflict: InfluxDB 1.6 stores the rest and says how many it dropped.
#[tokio::test]
async fn v1_field_type_conflict_counts_dropped() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("sink_conflict");
    common::influx1_create_db(&url, &db).await;
    let sink = v1_sink(&url, &db, true);
    let first = [Point::new("conflict", T0).field("v", 1i64)];
    assert_eq!(sink.write(&first).await.unwrap().written, 1);
    let mixed = [
        Point::new("conflict", T0 + 1).field("v", 2i64),
        Point::new("conflict", T0 + 2).field("v", 2.5),
        Point::new("conflict", T0 + 3).field("v", 3i64),
    ];
    let r = sink.write(&mixed).await.unwrap();
    assert_eq!(
        r,
        WriteReport {
            written: 2,
            rejected: 0,
            dropped: 1,
            spooled: 0
        }
    );
    let ans = common::influx1_query(&url, &db, "SELECT count(v) FROM conflict").await;
    assert_eq!(common::influx1_rows(&ans)[0][1], json!(3), "{ans}");
}

/// A missing database is a setting the operator must fix; the error says which.
#[tokio::test]
async fn v1_missing_database_names_the_setting() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let mut cfg = SinkConfig::new(SinkKind::InfluxV1 {
        url: url.clone(),
        database: common::unique_name("nope"),
        retention_policy: None,
        username: None,
        password: None,
    });
    cfg.retry_max_elapsed = Duration::from_millis(500);
    let sink = Sink::new(cfg).unwrap();
    let e = sink
        .write(&[Point::new("m", T0).field("v", 1i64)])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("`database`"), "{e}");
    assert!(e.contains(&url), "error names the URL: {e}");
}
