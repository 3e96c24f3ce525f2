//! The health and metrics listener as an operator scrapes it: the simulator and the ordinary
//! scheduler in-process with `harvester.listen` on a free loopback port; `/healthz` and
//! `/readyz` answer 200, `/metrics` holds the simulator's own figures, and the same figures
//! reach the output as `citrix_harvester` points.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use citrix_harvester::demo::config_for_simulator;
use citrix_harvester::metrics::escape_label;
use citrix_harvester::scheduler::{minute_now, run};
use citrix_harvester::sim::SimOptions;
use citrix_harvester::sink::{SinkConfig, SinkKind};

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn health_cmd(url: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_citrix-harvester"))
        .args(["health", "--url", url])
        .output()
        .unwrap()
}

fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name_and_labels} ")))
        .map(|v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn healthz_readyz_metrics_and_points() {
    let sim = common::sim::start(SimOptions {
        tenants: 2,
        seed: 11,
        now: minute_now(),
        history: chrono::Duration::days(1),
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("points.lp");
    let output = SinkConfig::new(SinkKind::File { path: out.clone() });
    let mut cfg = config_for_simulator(
        &sim,
        output,
        dir.path().join("state"),
        Duration::from_secs(86_400 + 3600),
    );
    let addr = free_port();
    cfg.harvester.listen = Some(addr);
    cfg.harvester.interval = Duration::from_secs(3600);
    let stop = CancellationToken::new();
    let task = {
        let (cfg, stop) = (cfg.clone(), stop.clone());
        tokio::spawn(async move { run(&cfg, false, stop).await })
    };

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{addr}");
    let tenants = sim.tenants();
    // Wait until every tenant finished its first cycle.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let text = loop {
        if let Ok(r) = http.get(format!("{base}/metrics")).send().await {
            let text = r.text().await.unwrap();
            let done = tenants
                .iter()
                .all(|t| text.contains(&format!("tenant=\"{}\"", escape_label(&t.name))))
                && text
                    .matches("citrix_harvester_last_success_timestamp_seconds{")
                    .count()
                    == tenants.len();
            if done {
                break text;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no complete cycle in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap().trim(), "ok");
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // `citrix-harvester health` (the container's HEALTHCHECK) says the same with its exit code.
    let ready = health_cmd(&format!("{base}/readyz"));
    assert_eq!(ready.status.code(), Some(0), "{ready:?}");
    assert_eq!(String::from_utf8_lossy(&ready.stdout), "ready\n");

    for name in [
        "last_success_timestamp_seconds",
        "cycle_duration_seconds",
        "records_total",
        "points_written_total",
        "errors_total",
        "throttled_total",
        "token_fetches_total",
        "token_fallback_total",
        "spool_bytes",
        "dropped_points_total",
        "dead_letters_total",
        "config_last_reload_successful",
        "config_last_reload_success_timestamp_seconds",
        "future_dated_rows_total",
        "tenant_panics_total",
        "spool_corrupt_bytes_total",
    ] {
        assert!(
            text.contains(&format!("# HELP citrix_harvester_{name} ")),
            "{name}"
        );
        assert!(
            text.contains(&format!("# TYPE citrix_harvester_{name} ")),
            "{name}"
        );
    }
    let now = chrono::Utc::now().timestamp() as f64;
    for t in &tenants {
        let n = escape_label(&t.name);
        let conns = sim.rows(&t.customer_id, "Connections").len() as f64;
        assert!(conns > 0.0);
        assert_eq!(
            sample(
                &text,
                &format!("citrix_harvester_records_total{{tenant=\"{n}\",entity=\"connections\"}}")
            ),
            Some(conns),
            "{text}"
        );
        let last = sample(
            &text,
            &format!(
                "citrix_harvester_last_success_timestamp_seconds{{tenant=\"{n}\",customer_id=\"{}\"}}",
                escape_label(&t.customer_id)
            ),
        )
        .unwrap();
        assert!((now - last).abs() < 300.0, "{last} vs {now}");
        assert_eq!(
            sample(
                &text,
                &format!("citrix_harvester_token_fetches_total{{tenant=\"{n}\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("citrix_harvester_throttled_total{{tenant=\"{n}\"}}")
            ),
            Some(0.0)
        );
        assert!(
            sample(
                &text,
                &format!("citrix_harvester_cycle_duration_seconds{{tenant=\"{n}\"}}")
            )
            .unwrap()
                > 0.0
        );
    }
    assert_eq!(sample(&text, "citrix_harvester_spool_bytes"), Some(0.0));
    assert_eq!(
        sample(&text, "citrix_harvester_dropped_points_total"),
        Some(0.0)
    );

    stop.cancel();
    task.await.unwrap().unwrap();
    // The listener stopped with the harvester.
    assert!(http.get(format!("{base}/healthz")).send().await.is_err());
    let gone = health_cmd(&format!("{base}/readyz"));
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("is harvester.listen set"),
        "{gone:?}"
    );

    let lp = std::fs::read_to_string(&out).unwrap();
    let own: Vec<&str> = lp
        .lines()
        .filter(|l| l.starts_with("citrix_harvester,"))
        .collect();
    assert_eq!(own.len(), tenants.len(), "{own:?}");
    for t in &tenants {
        let conns = sim.rows(&t.customer_id, "Connections").len();
        let line = own
            .iter()
            .find(|l| l.contains(&format!("customer_id={}", t.customer_id)))
            .unwrap_or_else(|| panic!("no citrix_harvester point for {}", t.customer_id));
        assert!(line.contains(",errors=0i,"), "{line}");
        assert!(line.contains("last_success="), "{line}");
        assert!(line.contains("spool_bytes=0i"), "{line}");
        // records counts every kind, so at least the connections.
        let records: usize = line
            .split([' ', ','])
            .find_map(|kv| kv.strip_prefix("records="))
            .unwrap()
            .trim_end_matches('i')
            .parse()
            .unwrap();
        assert!(records >= conns, "{line}");
    }
}

/// A tenant whose token hosts keep failing is reported unhealthy after
/// `harvester.unhealthy_after` failed runs (in `/readyz`'s answer, `/metrics` and the
/// `citrix_harvester` points) while the other tenant goes on being harvested, and is reported
/// healthy again after its first good run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_that_keeps_failing_is_reported_unhealthy_and_recovers() {
    use citrix_harvester::sim::{Faults, TokenFault};
    let sim = common::sim::start(SimOptions {
        tenants: 2,
        seed: 12,
        now: minute_now(),
        history: chrono::Duration::hours(2),
        ..SimOptions::default()
    })
    .await;
    let tenants = sim.tenants();
    let (good, bad) = (&tenants[0], &tenants[1]);
    let down = Faults {
        regional_token: Some(TokenFault::BadGateway),
        fallback_token: Some(TokenFault::BadGateway),
        ..Faults::default()
    };
    sim.set_faults(&bad.customer_id, down);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("points.lp");
    let output = SinkConfig::new(SinkKind::File { path: out.clone() });
    let mut cfg = config_for_simulator(
        &sim,
        output,
        dir.path().join("state"),
        Duration::from_secs(3 * 3600),
    );
    let addr = free_port();
    cfg.harvester.listen = Some(addr);
    // Every run of the one job is a cycle; failures retry after min(30 s, interval) = 1 s.
    cfg.harvester.interval = Duration::from_secs(1);
    cfg.harvester.schedule.clear();
    cfg.harvester.unhealthy_after = 3;
    cfg.citrix.token_timeout = Duration::from_secs(2);
    for t in &mut cfg.tenants {
        t.entities = vec!["machines".to_string()];
    }
    let stop = CancellationToken::new();
    let task = {
        let (cfg, stop) = (cfg.clone(), stop.clone());
        tokio::spawn(async move { run(&cfg, false, stop).await })
    };
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{addr}");
    let get = |path: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http.get(format!("{base}{path}")).send().await.ok()?;
            let status = r.status().as_u16();
            Some((status, r.text().await.ok()?))
        }
    };
    let wait_for = |what: &'static str, path: &'static str, want: Box<dyn Fn(&str) -> bool>| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Some((status, text)) = get(path).await
                && want(&text)
            {
                return (status, text);
            }
            assert!(tokio::time::Instant::now() < deadline, "never saw {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let healthy = |name: &str, v: u8| {
        format!(
            "citrix_harvester_tenant_healthy{{tenant=\"{}\"}} {v}\n",
            escape_label(name)
        )
    };

    let bad_line = format!("unhealthy tenant {}: ", bad.name);
    let (status, ready) = wait_for(
        "the bad tenant in /readyz",
        "/readyz",
        Box::new({
            let l = bad_line.clone();
            move |t| t.contains(&l)
        }),
    )
    .await;
    // One tenant failing does not make the process unready.
    assert_eq!(status, 200, "{ready}");
    assert!(ready.starts_with("ready\n"), "{ready}");
    let line = ready.lines().find(|l| l.starts_with(&bad_line)).unwrap();
    let runs: u32 = line[bad_line.len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(runs >= 3, "{line}");
    assert!(
        line.contains(" failed runs in a row; last error: token: "),
        "{line}"
    );
    assert!(
        !ready.contains(&format!("tenant {}:", good.name)),
        "{ready}"
    );
    let (_, metrics) = get("/metrics").await.unwrap();
    assert!(metrics.contains(&healthy(&bad.name, 0)), "{metrics}");
    assert!(metrics.contains(&healthy(&good.name, 1)), "{metrics}");

    // The good tenant kept its rhythm meanwhile: a cycle every second, not held up.
    let own = |cid: &str| -> Vec<String> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.starts_with("citrix_harvester,") && l.contains(&format!("customer_id={cid} "))
            })
            .map(str::to_string)
            .collect()
    };
    let good_points = own(&good.customer_id);
    assert!(good_points.len() >= 2, "{good_points:?}");
    assert!(good_points.iter().all(|l| l.contains("healthy=1i")));
    assert!(
        own(&bad.customer_id)
            .iter()
            .any(|l| l.contains("healthy=0i") && l.contains("consecutive_failures=3i")),
        "{:?}",
        own(&bad.customer_id)
    );

    // Its token hosts come back: the next good run reports it healthy again.
    sim.set_faults(&bad.customer_id, Faults::default());
    let (_, metrics) = wait_for(
        "the bad tenant healthy again",
        "/metrics",
        Box::new({
            let l = healthy(&bad.name, 1);
            move |t| t.contains(&l)
        }),
    )
    .await;
    assert!(metrics.contains(&format!(
        "citrix_harvester_consecutive_failed_cycles{{tenant=\"{}\"}} 0\n",
        escape_label(&bad.name)
    )));
    let (status, ready) = get("/readyz").await.unwrap();
    assert_eq!((status, ready.as_str()), (200, "ready\n"));
    stop.cancel();
    task.await.unwrap().unwrap();
    // Machines of both tenants are there: the bad one caught up after its recovery.
    let lp = std::fs::read_to_string(&out).unwrap();
    for t in [good, bad] {
        assert!(
            lp.lines().any(|l| l.starts_with("citrix_machine,")
                && l.contains(&format!("customer_id={}", t.customer_id))),
            "no machines of {}",
            t.name
        );
    }
}
