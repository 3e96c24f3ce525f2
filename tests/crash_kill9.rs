//! kill -9 at random moments loses nothing: the harvester binary is started against the
//! simulator and the real InfluxDB 1.6 and sent SIGKILL 20 times at seeded-random moments within
//! the first half of a full run's length (at least 5 must land while it is running; the first
//! ones fall in the middle of the initial harvest), with simulated time passing between some of
//! them; then one run is let finish. `KILL9_SEED` replays a seed. Every
//! simulator row must then be in InfluxDB exactly once — points are idempotent, so "exactly
//! once" means one point per row, and watermarks that moved only after acknowledgement mean no
//! row was skipped.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use rand::{Rng, SeedableRng};

use citrix_harvester::scheduler::minute_now;
use citrix_harvester::sim::SimOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_twenty_random_moments_loses_nothing() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("kill9");
    common::influx1_create_db(&url, &db).await;
    let sim = common::sim::start(SimOptions {
        tenants: 2,
        seed: 77,
        now: minute_now(),
        history: chrono::Duration::days(1),
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[harvester]\nstate_dir = \"{}\"\nlookback = \"3d\"\njitter = \"0s\"\n\
         [citrix]\nmax_retry_delay = \"1s\"\n\
         [output]\nkind = \"influxdb_v1\"\nurl = \"{url}\"\ndatabase = \"{db}\"\nbatch_size = 500\n",
        dir.path().join("state").display()
    );
    for (i, t) in sim.tenants().iter().enumerate() {
        text.push_str(&format!(
            "[[tenant]]\nname = \"t{i}\"\ncustomer_id = \"{}\"\nclient_id = \"{}\"\nclient_secret_env = \"S{i}\"\n\
             token_url = \"{}/cctrustoauth2/{{customer_id}}/tokens/clients\"\nfallback_token_url = \"\"\n\
             monitor_url = \"{}\"\n",
            t.customer_id,
            t.client_id,
            sim.regional_url(),
            sim.monitor_base_url()
        ));
    }
    let cfg = dir.path().join("h.toml");
    std::fs::write(&cfg, &text).unwrap();
    // The same harvest into a file with its own state, only to learn how long a full run takes.
    let timing_cfg = dir.path().join("timing.toml");
    let state = dir.path().join("state").display().to_string();
    let timing_text = text.replace(&state, &format!("{state}-timing")).replace(
        &format!("kind = \"influxdb_v1\"\nurl = \"{url}\"\ndatabase = \"{db}\""),
        &format!(
            "kind = \"file\"\npath = \"{}\"",
            dir.path().join("timing.lp").display()
        ),
    );
    assert!(timing_text.contains("kind = \"file\""));
    std::fs::write(&timing_cfg, timing_text).unwrap();
    let spawn_with = |cfg: &std::path::Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_citrix-harvester"));
        c.arg("--config")
            .arg(cfg)
            .arg("--once")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (i, t) in sim.tenants().iter().enumerate() {
            c.env(format!("S{i}"), &t.client_secret);
        }
        c.spawn().unwrap()
    };
    let spawn = || spawn_with(&cfg);

    // Kills are spread over the length of a full run, so the first ones land in the middle of
    // the initial harvest (checkpoints partly saved, batches half written).
    let started = std::time::Instant::now();
    assert!(spawn_with(&timing_cfg).wait().unwrap().success());
    let run_ms = started.elapsed().as_millis().max(100) as u64;

    let seed: u64 = std::env::var("KILL9_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261123);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut killed_mid_run = 0;
    for round in 0..20 {
        if round % 5 == 4 {
            sim.advance(chrono::Duration::minutes(30));
        }
        let mut child = spawn();
        let at = rng.random_range(0..run_ms / 2);
        tokio::time::sleep(Duration::from_millis(at)).await;
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    eprintln!("{killed_mid_run} of 20 kills hit a running harvester (seed {seed})");
    assert!(
        killed_mid_run >= 5,
        "only {killed_mid_run} of 20 kills hit a running harvester (seed {seed})"
    );

    // One run to completion, then every row is there exactly once.
    let last = spawn().wait().unwrap();
    assert!(
        last.success(),
        "the run after the kills failed (seed {seed})"
    );
    for t in sim.tenants() {
        for (m, field, set) in [
            ("citrix_logon", "connection_id", "Connections"),
            ("citrix_session", "connection_state_code", "Sessions"),
            (
                "citrix_connection_failure",
                "count",
                "ConnectionFailureLogs",
            ),
            ("citrix_load_index", "load_index", "LoadIndexes"),
            (
                "citrix_application_instance",
                "launches",
                "ApplicationInstances",
            ),
        ] {
            let q = format!(
                "SELECT count(\"{field}\") FROM \"{m}\" WHERE customer_id = '{}'",
                t.customer_id
            );
            let rows = common::influx1_rows(&common::influx1_query(&url, &db, &q).await);
            let got = rows
                .first()
                .and_then(|r| r.get(1))
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            assert_eq!(
                got,
                sim.rows(&t.customer_id, set).len() as u64,
                "{m} of {} after 20 kills (seed {seed})",
                t.customer_id
            );
        }
    }
}
