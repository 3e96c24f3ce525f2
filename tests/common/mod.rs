//! Shared helpers for integration tests that talk to the real time-series servers started by
//! `tests/run-with-servers.sh` (VictoriaMetrics and InfluxDB 1.6 on 127.0.0.1). It owns finding
//! the servers (env vars), creating databases, querying and waiting for data; it must not start
//! servers itself (the script does, once for all test binaries) or hide a missing server in CI:
//! with `CI=true` a missing server is a failure, never a skip.
#![allow(dead_code)] // each test binary uses a subset

pub mod connect_proxy;
pub mod hostile;
pub mod proxy;
pub mod sim;
pub mod tls_front;
pub mod winauth;

use std::time::Duration;

use serde_json::Value;

fn server_url(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v.trim_end_matches('/').to_owned()),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{var} is not set: {what} is required in CI; run tests/run-with-servers.sh");
            }
            eprintln!(
                "\n*** SKIPPED: {var} is not set, so this test did not talk to {what}. \
                 Run tests/run-with-servers.sh to start the servers and run all tests. ***\n"
            );
            None
        }
    }
}

/// Base URL of VictoriaMetrics, or `None` (skip) outside CI.
pub fn vm_url() -> Option<String> {
    server_url("CH_TEST_VM_URL", "VictoriaMetrics")
}

/// The harvester's output to the InfluxDB v2 write API at `url` (org and bucket `citrix`, no
/// token), every other setting at its default.
pub fn influx_v2_output(url: &str) -> citrix_harvester::sink::SinkConfig {
    citrix_harvester::sink::SinkConfig::new(citrix_harvester::sink::SinkKind::InfluxV2 {
        url: url.to_owned(),
        org: "citrix".into(),
        bucket: "citrix".into(),
        token: None,
    })
}

/// Base URL of InfluxDB 1.6, or `None` (skip) outside CI.
pub fn influx1_url() -> Option<String> {
    server_url("CH_TEST_INFLUXDB1_URL", "InfluxDB 1.6")
}

/// A name no other test (or earlier run against the same servers) uses.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .unwrap()
}

/// `CREATE DATABASE` (idempotent in InfluxDB 1.x).
pub async fn influx1_create_db(url: &str, db: &str) {
    let q = format!("CREATE DATABASE \"{}\"", db.replace('"', "\\\""));
    let resp = client()
        .post(format!("{url}/query"))
        .form(&[("q", q.as_str())])
        .send()
        .await
        .expect("InfluxDB /query reachable");
    assert!(
        resp.status().is_success(),
        "CREATE DATABASE {db}: {}",
        resp.status()
    );
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["results"][0].get("error").is_none(),
        "CREATE DATABASE {db}: {body}"
    );
}

/// Runs InfluxQL (POST, so statements that write work too) with nanosecond epochs and returns
/// the JSON answer. Panics on an HTTP error or an error in the answer.
pub async fn influx1_query(url: &str, db: &str, influxql: &str) -> Value {
    let resp = client()
        .post(format!("{url}/query"))
        .form(&[("db", db), ("q", influxql), ("epoch", "ns")])
        .send()
        .await
        .expect("InfluxDB /query reachable");
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "query {influxql:?}: {status} {body}");
    if let Some(e) = body["results"][0].get("error") {
        panic!("query {influxql:?}: {e}");
    }
    body
}

/// The rows of the first series of the first result (empty when there is none).
pub fn influx1_rows(answer: &Value) -> Vec<Vec<Value>> {
    answer["results"][0]["series"][0]["values"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| r.as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

/// Asks VictoriaMetrics to make buffered data searchable.
pub async fn vm_force_flush(url: &str) {
    let resp = client()
        .get(format!("{url}/internal/force_flush"))
        .send()
        .await
        .expect("VictoriaMetrics reachable");
    assert!(resp.status().is_success(), "force_flush: {}", resp.status());
}

/// The JSON lines of `/api/v1/export` for a series selector (one object per series, with
/// `metric`, `values`, `timestamps`).
pub async fn vm_export(url: &str, match_selector: &str) -> Vec<Value> {
    let resp = client()
        .get(format!("{url}/api/v1/export"))
        .query(&[("match[]", match_selector), ("start", "0")])
        .send()
        .await
        .expect("VictoriaMetrics reachable");
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(
        status.is_success(),
        "export {match_selector}: {status} {text}"
    );
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("export line is JSON"))
        .collect()
}

/// Polls the export until `selector` matches `expected_count` series (new series can take
/// seconds to become searchable), then returns them. Panics after `timeout`.
pub async fn vm_wait_for_series(
    url: &str,
    selector: &str,
    expected_count: usize,
    timeout: Duration,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        vm_force_flush(url).await;
        let got = vm_export(url, selector).await;
        if got.len() == expected_count {
            return got;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "VictoriaMetrics: {selector} matched {} series, expected {expected_count}, within {timeout:?}: {got:?}",
                got.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Installs a test log subscriber that writes into a buffer, for asserting on log lines.
/// Returns the buffer and a guard that must live as long as logs should be captured (the
/// guard is per thread, so use it with a current-thread runtime).
pub fn capture_logs() -> (
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    tracing::subscriber::DefaultGuard,
) {
    #[derive(Clone)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let w = Buf(buf.clone());
    let sub = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    (buf, tracing::subscriber::set_default(sub))
}

/// A harvest of every tenant of `sim` into the file `dir/points.lp`, its state in `dir/state`,
/// reading `lookback` of history.
pub fn file_output_config(
    sim: &citrix_harvester::sim::SimHandle,
    dir: &std::path::Path,
    lookback: Duration,
) -> citrix_harvester::config::Config {
    use citrix_harvester::sink::{SinkConfig, SinkKind};
    let output = SinkConfig::new(SinkKind::File {
        path: dir.join("points.lp"),
    });
    citrix_harvester::demo::config_for_simulator(sim, output, dir.join("state"), lookback)
}

/// The distinct values of `field` in the lines of `measurement` in `dir/points.lp`.
pub fn ids_written(
    dir: &std::path::Path,
    measurement: &str,
    field: &str,
) -> std::collections::HashSet<String> {
    let text = std::fs::read_to_string(dir.join("points.lp")).unwrap_or_default();
    let needle = format!("{field}=");
    text.lines()
        .filter(|l| l.starts_with(&format!("{measurement},")))
        .filter_map(|l| {
            let rest = &l[l.find(&needle)? + needle.len()..];
            let end = rest.find([',', ' ']).unwrap_or(rest.len());
            Some(
                rest[..end]
                    .trim_matches('"')
                    .trim_end_matches('i')
                    .to_string(),
            )
        })
        .collect()
}

/// The `Id`s of a customer's rows of `set` in the simulator; for Machines the active ones
/// (what the Machines collector asks for).
pub fn sim_ids(
    sim: &citrix_harvester::sim::SimHandle,
    customer_id: &str,
    set: &str,
) -> std::collections::HashSet<String> {
    sim.rows(customer_id, set)
        .iter()
        .filter(|r| set != "Machines" || r["LifecycleState"].as_i64() == Some(0))
        .map(|r| match &r["Id"] {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        })
        .collect()
}
