//! Live configuration changes against the simulator: while one tenant is in the middle of a
//! long walk, a reload removes a tenant, changes another and adds a third (from `tenants.d`).
//! Exactly those restart; the walking tenant completes untouched (the simulator serves each of
//! its rows once: no gap, no repeat). An invalid file keeps the running configuration and flips
//! `citrix_harvester_config_last_reload_successful` to 0; fixing it flips it back. Reloads come
//! from the request channel (what SIGHUP sends; tests/cli.rs sends the real signal) and from
//! the file watcher.

mod common;

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use citrix_harvester::config::Config;
use citrix_harvester::reload::{Cause, Reload};
use citrix_harvester::scheduler::{minute_now, run_report};
use citrix_harvester::sim::{Faults, SimHandle, SimOptions, SimTenant};

fn tenant_toml(
    t: &SimTenant,
    name: &str,
    entities: &str,
    secret: &Path,
    sim: &SimHandle,
) -> String {
    format!(
        "[[tenant]]\nname = \"{name}\"\ncustomer_id = \"{}\"\nclient_id = \"{}\"\n\
         client_secret_file = \"{}\"\ntoken_url = \"{}/cctrustoauth2/{{customer_id}}/tokens/clients\"\n\
         fallback_token_url = \"\"\nmonitor_url = \"{}/monitorodata\"\nentities = [{entities}]\n",
        t.customer_id,
        t.client_id,
        secret.display(),
        sim.regional_url(),
        sim.regional_url(),
    )
}

async fn metric(port: std::net::SocketAddr, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(&format!("citrix_harvester_{name} ")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reached within 60 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_restarts_exactly_the_changed_tenants_while_another_walks_on() {
    let sim = common::sim::start(SimOptions {
        tenants: 4,
        seed: 17,
        page_size: 10,
        now: minute_now(),
        history: chrono::Duration::hours(12),
        ..SimOptions::default()
    })
    .await;
    let ts = sim.tenants();
    let (a, b, c, d) = (&ts[0], &ts[1], &ts[2], &ts[3]);
    // B's walk: many pages of 10, each answered after 150 ms.
    sim.set_faults(
        &b.customer_id,
        Faults {
            slow_ms: 150,
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let secret = |t: &SimTenant| {
        let p = dir.path().join(format!("{}.secret", t.customer_id));
        std::fs::write(&p, &t.client_secret).unwrap();
        p
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let head = format!(
        "[harvester]\nstate_dir = \"{}\"\nlookback = \"1d\"\njitter = \"0s\"\ninterval = \"1h\"\n\
         listen = \"{port}\"\n[output]\nkind = \"file\"\npath = \"{}\"\n",
        dir.path().join("state").display(),
        dir.path().join("out.lp").display(),
    );
    let m = "\"machines\"";
    let main = dir.path().join("citrix-harvester.toml");
    let main_text = |with_a: bool| {
        let mut s = head.clone();
        if with_a {
            s += &tenant_toml(a, "A", m, &secret(a), &sim);
        }
        s + &tenant_toml(b, "B", "\"connections\"", &secret(b), &sim)
    };
    std::fs::write(&main, main_text(true)).unwrap();
    let tdir = dir.path().join("tenants.d");
    std::fs::create_dir(&tdir).unwrap();
    std::fs::write(
        tdir.join("c.toml"),
        tenant_toml(c, "C", m, &secret(c), &sim),
    )
    .unwrap();

    let cfg = Config::load(&main).unwrap();
    assert_eq!(cfg.tenants.len(), 3);
    let (tx, rx) = citrix_harvester::reload::channel();
    let path = main.clone();
    let load = Box::new(move || Config::load(&path).map_err(|e| e.to_string()));
    let stop = CancellationToken::new();
    let daemon = tokio::spawn({
        let (cfg, stop) = (cfg.clone(), stop.clone());
        let reload = Reload { requests: rx, load };
        async move { run_report(&cfg, false, stop, Some(reload)).await }
    });
    tokio::spawn(citrix_harvester::reload::watch(
        main.clone(),
        Some(tdir.clone()),
        Duration::from_millis(200),
        tx.clone(),
        stop.clone(),
    ));
    let served = |t: &SimTenant, set: &str| {
        sim.stats()
            .tenants
            .get(&t.customer_id)
            .and_then(|s| s.rows_served.get(set).copied())
            .unwrap_or(0)
    };
    let requests = |t: &SimTenant| {
        sim.stats()
            .tenants
            .get(&t.customer_id)
            .map_or(0, |s| s.requests)
    };
    let b_mark = dir
        .path()
        .join("state/checkpoints")
        .join(&b.customer_id)
        .join("connections.json");
    wait_for("A and C harvested, B walking", || {
        served(a, "Machines") > 0 && served(c, "Machines") > 0 && requests(b) >= 3
    })
    .await;
    assert!(
        !b_mark.exists(),
        "B's walk must still be running when the reload comes"
    );
    let b_total = sim.rows(&b.customer_id, "Connections").len() as u64;
    assert!(b_total > 100, "a long walk: {b_total} rows");
    let a_requests = requests(a);

    // Remove A, change C (it now reads connections too), add D; then ask for a reload.
    std::fs::write(&main, main_text(false)).unwrap();
    let both = "\"machines\", \"connections\"";
    std::fs::write(
        tdir.join("c.toml"),
        tenant_toml(c, "C", both, &secret(c), &sim),
    )
    .unwrap();
    std::fs::write(
        tdir.join("d.toml"),
        tenant_toml(d, "D", m, &secret(d), &sim),
    )
    .unwrap();
    tx.send(Cause::Signal).await.unwrap();

    wait_for(
        "C restarted with connections, D started, B finished",
        || served(c, "Connections") > 0 && served(d, "Machines") > 0 && b_mark.exists(),
    )
    .await;
    // B was never interrupted: each of its rows served exactly once.
    assert_eq!(
        served(b, "Connections"),
        b_total,
        "B's walk was cut or repeated"
    );
    assert_eq!(requests(a), a_requests, "A still runs after its removal");
    assert_eq!(
        metric(port, "config_last_reload_successful").await,
        Some(1.0)
    );
    let t0 = metric(port, "config_last_reload_success_timestamp_seconds")
        .await
        .unwrap();

    // An invalid edit (seen by the watcher) keeps everything as it is and flips the gauge.
    std::fs::write(
        tdir.join("d.toml"),
        "[[tenant]]\nname = \"D\"\nnmae = \"typo\"\n",
    )
    .unwrap();
    let mut gauge = None;
    for _ in 0..100 {
        gauge = metric(port, "config_last_reload_successful").await;
        if gauge == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gauge, Some(0.0), "the invalid file was not reported");
    let text = reqwest::get(format!("http://{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("tenant=\"D\""),
        "D keeps running under the old configuration"
    );
    assert!(!text.contains("tenant=\"A\""), "A's series are gone with A");
    // Fixed again: the gauge flips back, with a newer success time.
    std::fs::write(
        tdir.join("d.toml"),
        tenant_toml(d, "D", m, &secret(d), &sim),
    )
    .unwrap();
    for _ in 0..100 {
        gauge = metric(port, "config_last_reload_successful").await;
        if gauge == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gauge, Some(1.0));
    let t1 = metric(port, "config_last_reload_success_timestamp_seconds")
        .await
        .unwrap();
    assert!(t1 >= t0);
    stop.cancel();
    daemon.await.unwrap().unwrap();
}
