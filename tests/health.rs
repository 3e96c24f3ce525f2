//! The health and metrics listener as an operator scrapes it: the simulator and the ordinary
//! scheduler in-process with `harvester.listen` on a free loopback port; `/healthz` and
//! `/readyz` answer 200, `/metrics` holds the simulator's own figures, and the same figures
//! reach the output as `citrix_harvester` points.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use citrix_harvester::demo::config_for_simulator;
use citrix_harvester::metrics::escape_label;
use citrix_harvester::scheduler::{minute_now, run};
use citrix_harvester::sim::{SimOptions, Simulator};
use citrix_harvester::sink::{SinkConfig, SinkKind};

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name_and_labels} ")))
        .map(|v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn healthz_readyz_metrics_and_points() {
    let sim = Simulator::new(SimOptions {
        tenants: 2,
        seed: 11,
        now: minute_now(),
        history: chrono::Duration::days(1),
        ..SimOptions::default()
    })
    .start(IpAddr::V4(Ipv4Addr::LOCALHOST))
    .await
    .unwrap();
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
