//! The process-wide limits that replaced `max_concurrent_requests`: requests waiting on Citrix
//! are limited only to protect the process (hundreds of slow tenants have far more than 32 in
//! flight, still never two of one tenant, and every row reaches a real VictoriaMetrics exactly
//! once), and the byte budget of page bodies holds when the output blocks (the bytes in use,
//! read from `/metrics` while it blocks, never exceed the budget; tenants wait instead of
//! reading more pages).

mod common;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use citrix_harvester::demo::config_for_simulator;
use citrix_harvester::scheduler::{TenantSummary, minute_now, run_report};
use citrix_harvester::sim::{Faults, SimHandle, SimOptions};

async fn slow_sim(tenants: usize, seed: u64, sessions_per_day: usize, slow_ms: u64) -> SimHandle {
    let sim = common::sim::start(SimOptions {
        tenants,
        seed,
        page_size: 100,
        now: minute_now(),
        history: chrono::Duration::days(1),
        sessions_per_day,
        ..SimOptions::default()
    })
    .await;
    for t in sim.tenants() {
        sim.set_faults(
            &t.customer_id,
            Faults {
                slow_ms,
                ..Default::default()
            },
        );
    }
    sim
}

fn assert_one_request_per_tenant(sim: &SimHandle) {
    let stats = sim.stats();
    for (cid, s) in &stats.tenants {
        assert!(
            s.max_in_flight <= 1,
            "tenant {cid}: {} in flight",
            s.max_in_flight
        );
        assert_eq!(
            s.responses_429, 0,
            "tenant {cid} was refused a parallel request"
        );
    }
}

/// The Connections rows the simulator holds, and how many it served (a page read twice counts
/// its rows twice).
fn connections_rows_and_served(sim: &SimHandle) -> (usize, usize) {
    let rows = sim
        .tenants()
        .iter()
        .map(|t| sim.rows(&t.customer_id, "Connections").len())
        .sum();
    let served: u64 = sim
        .stats()
        .tenants
        .values()
        .map(|s| s.rows_served.get("Connections").copied().unwrap_or(0))
        .sum();
    (rows, served as usize)
}

/// Samples of `citrix_logon_connection_id` stored for these customers (VictoriaMetrics keeps a
/// sample written twice as two, so this counts duplicates too).
async fn vm_samples(url: &str, customers: &[String]) -> usize {
    let mut n = 0;
    for chunk in customers.chunks(40) {
        let sel = format!(
            "citrix_logon_connection_id{{customer_id=~\"{}\"}}",
            chunk.join("|")
        );
        n += common::vm_export(url, &sel)
            .await
            .iter()
            .map(|s| s["values"].as_array().map_or(0, Vec::len))
            .sum::<usize>();
    }
    n
}

/// 300 tenants whose every Monitor request takes 300 ms: with the old single knob at most 32
/// requests were ever in flight; now requests wait on Citrix side by side (the simulator sees
/// far more than 32 at once), Citrix's one-request-per-tenant rule still holds, and every row
/// is stored once in VictoriaMetrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_slow_tenants_wait_on_citrix_side_by_side_and_each_row_is_written_once() {
    let Some(url) = common::vm_url() else { return };
    let sim = slow_sim(300, 7301, 40, 300).await;
    let state = tempfile::tempdir().unwrap();
    let output = common::influx_v2_output(&url);
    let mut cfg = config_for_simulator(
        &sim,
        output,
        state.path().join("state"),
        Duration::from_secs(3 * 86_400),
    );
    for t in &mut cfg.tenants {
        t.entities = vec!["connections".into()];
    }
    let report = run_report(&cfg, true, CancellationToken::new(), None)
        .await
        .expect("harvester runs");
    assert!(
        report.summaries.iter().all(TenantSummary::ok),
        "{:#?}",
        report
            .summaries
            .iter()
            .filter(|s| !s.ok())
            .collect::<Vec<_>>()
    );
    let stats = sim.stats();
    eprintln!(
        "in flight at most: {} (simulator), {} (harvester); body budget: {:?}",
        stats.api.max_in_flight, report.peak_requests_in_flight, report.budget
    );
    assert!(
        stats.api.max_in_flight > 100,
        "only {} requests were ever in flight API-wide",
        stats.api.max_in_flight
    );
    assert!(
        report.peak_requests_in_flight > 100,
        "{}",
        report.peak_requests_in_flight
    );
    assert_one_request_per_tenant(&sim);

    let customers: Vec<String> = sim.tenants().into_iter().map(|t| t.customer_id).collect();
    let (rows, served) = connections_rows_and_served(&sim);
    assert_eq!(served, rows, "each row served once");
    let written: u64 = report
        .summaries
        .iter()
        .map(|s| s.entity("connections").map_or(0, |e| e.points_written))
        .sum();
    assert_eq!(written as usize, rows);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let stored = loop {
        common::vm_force_flush(&url).await;
        let n = vm_samples(&url, &customers).await;
        if n >= rows || tokio::time::Instant::now() >= deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // A page written twice (say, a write retried after a timeout) would show as more samples.
    tokio::time::sleep(Duration::from_secs(1)).await;
    common::vm_force_flush(&url).await;
    let again = vm_samples(&url, &customers).await;
    assert_eq!((stored, again), (rows, rows), "samples stored vs rows");
}

/// One `/metrics` figure without labels.
fn metric(text: &str, name: &str) -> f64 {
    let prefix = format!("citrix_harvester_{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// An output that takes every write and never answers: each tenant's page stays in memory until
/// its write returns, so the pages held are exactly what the body budget allows. Read from
/// `/metrics` while the output blocks: the bytes in use never exceed the budget, the budget is
/// actually full, tenants wait for it, and they stop reading pages from Citrix instead of
/// piling them up in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_output_keeps_the_pages_held_within_the_body_budget() {
    let hole = common::hostile::Hostile::black_hole().await;
    let sim = slow_sim(40, 7302, 400, 0).await;
    let state = tempfile::tempdir().unwrap();
    let mut output = common::influx_v2_output(&hole.url);
    output.timeout = Duration::from_secs(600);
    output.retry_max_elapsed = Duration::from_secs(600);
    let mut cfg = config_for_simulator(
        &sim,
        output,
        state.path().join("state"),
        Duration::from_secs(3 * 86_400),
    );
    let budget: usize = 512 << 10;
    cfg.citrix.max_page_bytes = budget;
    cfg.harvester.body_budget = budget;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    cfg.harvester.listen = Some(format!("127.0.0.1:{port}").parse().unwrap());
    for t in &mut cfg.tenants {
        t.entities = vec!["connections".into()];
    }
    let stop = CancellationToken::new();
    let run = {
        let (cfg, stop) = (cfg.clone(), stop.clone());
        tokio::spawn(async move { run_report(&cfg, false, stop, None).await })
    };
    let http = reqwest::Client::new();
    let scrape = || async {
        http.get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    let mut full_since: Option<(tokio::time::Instant, u64)> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut samples = 0;
    let (in_use, waits, requests_then) = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the budget never filled up and stayed full"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(text) = scrape().await else { continue };
        samples += 1;
        let total = metric(&text, "body_budget_bytes");
        let in_use = metric(&text, "body_budget_in_use_bytes");
        let peak = metric(&text, "body_budget_peak_bytes");
        let waits = metric(&text, "body_budget_waits_total");
        assert_eq!(total as usize, budget);
        assert!(
            in_use <= total && peak <= total,
            "{in_use} / {peak} of {total}"
        );
        let requests: u64 = sim.stats().tenants.values().map(|s| s.requests).sum();
        // Full: no free page's worth left (pages are tens of KiB) and tenants queue for it.
        let full = in_use > total - (64 << 10) as f64 && waits > 0.0;
        match full_since {
            Some((t, _)) if full && t.elapsed() >= Duration::from_secs(2) => {
                break (in_use, waits, requests);
            }
            Some(_) if full => {}
            _ => full_since = full.then(|| (tokio::time::Instant::now(), requests)),
        }
    };
    // The budget has been full for two seconds: requests sent before it filled have been
    // answered (the simulator waits 400 ms). From now on no tenant reads another page (each
    // waits for budget before its next request once the budget is short, and a page that
    // does not fit gives its share back and waits holding nothing).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: u64 = sim.stats().tenants.values().map(|s| s.requests).sum();
    assert_eq!(
        requests_then, after,
        "pages were read while the budget stayed full"
    );
    assert!(hole.count() > 0, "writes reached the output and hang there");
    assert!(waits >= 1.0, "{waits} waits");
    assert!(in_use as usize <= budget);
    assert!(samples > 5);
    stop.cancel();
    run.abort();
    assert_one_request_per_tenant(&sim);
}

/// A start with many tenants and no Citrix latency: every first page comes back at once, before
/// any page size is known. One page of the entity goes first and measures it (the pilot); the
/// others reserve what it measured, wait for their share with the body unread when the budget
/// is full, and no page is read twice (before: each reserved a 256 KiB guess, pages of about
/// a megabyte outgrew it in a full budget and were asked for again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_first_pages_of_unknown_size_reads_each_page_once() {
    let Some(url) = common::vm_url() else { return };
    let sim = common::sim::start(SimOptions {
        tenants: 40,
        seed: 7303,
        page_size: 1000,
        now: minute_now(),
        history: chrono::Duration::days(1),
        sessions_per_day: 1200,
        ..SimOptions::default()
    })
    .await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = config_for_simulator(
        &sim,
        common::influx_v2_output(&url),
        state.path().join("state"),
        Duration::from_secs(3 * 86_400),
    );
    cfg.harvester.body_budget = 4 << 20;
    for t in &mut cfg.tenants {
        t.entities = vec!["connections".into()];
    }
    let report = run_report(&cfg, true, CancellationToken::new(), None)
        .await
        .expect("harvester runs");
    assert!(report.summaries.iter().all(TenantSummary::ok));
    let stats = sim.stats();
    let (rows, served) = connections_rows_and_served(&sim);
    let pages: u64 = stats.tenants.values().map(|s| s.requests).sum();
    eprintln!(
        "{rows} rows in {pages} requests, budget {:?}",
        report.budget
    );
    assert!(
        report.budget.peak > (3 << 20),
        "the budget was never the limit: {:?}",
        report.budget
    );
    assert_eq!(report.budget.refetches, 0, "{:?}", report.budget);
    assert_eq!(served, rows, "rows served vs rows: a page was read twice");
    assert_one_request_per_tenant(&sim);
}
