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
use citrix_harvester::scheduler::{RunError, RunReport, TenantSummary, minute_now, run_report};
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

/// A harvester of `tenants` (Connections only, the simulator waiting `slow_ms` per request)
/// writing into an output that takes every write and never answers, with a `budget`-byte body
/// budget and `/metrics` on a free port.
struct Blocked {
    sim: SimHandle,
    hole: common::hostile::Hostile,
    port: u16,
    stop: CancellationToken,
    run: tokio::task::JoinHandle<Result<RunReport, RunError>>,
    http: reqwest::Client,
    _state: tempfile::TempDir,
}

impl Blocked {
    async fn start(tenants: usize, seed: u64, slow_ms: u64, budget: usize) -> Blocked {
        let hole = common::hostile::Hostile::black_hole().await;
        let sim = slow_sim(tenants, seed, 400, slow_ms).await;
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
        Blocked {
            sim,
            hole,
            port,
            stop,
            run,
            http,
            _state: state,
        }
    }

    async fn scrape(&self) -> Option<String> {
        self.http
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// Scrapes until the budget has been full (no free page's worth left, pages are tens of
    /// KiB, and tenants queue for it) for two seconds, checking every scrape with `each`.
    /// Returns the last scrape and the simulator's request count then.
    async fn until_full_for_2s(&self, mut each: impl FnMut(&str)) -> (String, u64) {
        let mut full_since: Option<tokio::time::Instant> = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the budget never filled up and stayed full"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Some(text) = self.scrape().await else {
                continue;
            };
            each(&text);
            let total = metric(&text, "body_budget_bytes");
            let in_use = metric(&text, "body_budget_in_use_bytes");
            let waits = metric(&text, "body_budget_waits_total");
            let requests: u64 = self.sim.stats().tenants.values().map(|s| s.requests).sum();
            let full = in_use > total - (64 << 10) as f64 && waits > 0.0;
            match full_since {
                Some(t) if full && t.elapsed() >= Duration::from_secs(2) => {
                    return (text, requests);
                }
                Some(_) if full => {}
                _ => full_since = full.then(tokio::time::Instant::now),
            }
        }
    }

    fn finish(self) {
        self.stop.cancel();
        self.run.abort();
        assert_one_request_per_tenant(&self.sim);
    }
}

/// An output that takes every write and never answers: each tenant's page stays in memory until
/// its write returns, so the pages held are exactly what the body budget allows. Read from
/// `/metrics` while the output blocks: the bytes in use never exceed the budget, the budget is
/// actually full, tenants wait for it, and they stop reading pages from Citrix instead of
/// piling them up in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_output_keeps_the_pages_held_within_the_body_budget() {
    let budget: usize = 512 << 10;
    let b = Blocked::start(40, 7302, 0, budget).await;
    let mut samples = 0;
    let (text, requests_then) = b
        .until_full_for_2s(|text| {
            samples += 1;
            let total = metric(text, "body_budget_bytes");
            let in_use = metric(text, "body_budget_in_use_bytes");
            let peak = metric(text, "body_budget_peak_bytes");
            assert_eq!(total as usize, budget);
            assert!(
                in_use <= total && peak <= total,
                "{in_use} / {peak} of {total}"
            );
        })
        .await;
    let (in_use, waits) = (
        metric(&text, "body_budget_in_use_bytes"),
        metric(&text, "body_budget_waits_total"),
    );
    // The budget has been full for two seconds: requests sent before it filled have been
    // answered. From now on no tenant reads another page (each waits for budget before its
    // next request once the budget is short, and a page that does not fit gives its share
    // back and waits holding nothing).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: u64 = b.sim.stats().tenants.values().map(|s| s.requests).sum();
    assert_eq!(
        requests_then, after,
        "pages were read while the budget stayed full"
    );
    assert!(
        b.hole.count() > 0,
        "writes reached the output and hang there"
    );
    assert!(waits >= 1.0, "{waits} waits");
    assert!(in_use as usize <= budget);
    assert!(samples > 5);
    b.finish();
}

/// Many tenants whose requests went out while the budget had room come back to a full budget
/// (the output blocks). Each answer waiting for its share holds a connection and what the HTTP
/// client read of it, memory the budget does not count: the bytes of pages on order are bounded
/// (from two budgets, adapting to the budget's turnover, each order at least 16 KiB), so the
/// requests on the wire while the budget is full stay a handful (before: every tenant's answer
/// waited, 146 of 150).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_waiting_for_a_full_budget_are_bounded_by_the_pages_on_order() {
    let budget: usize = 512 << 10;
    let b = Blocked::start(150, 7304, 300, budget).await;
    let (mut on_order_max, mut limit_max) = (0.0_f64, 0.0_f64);
    let mut observe = |text: &str| {
        let limit = metric(text, "body_budget_on_order_limit_bytes");
        assert!(
            limit >= budget as f64 && limit <= 16.0 * budget as f64,
            "bound {limit}"
        );
        limit_max = limit_max.max(limit);
        let on_order = metric(text, "body_budget_on_order_bytes");
        assert!(
            on_order <= limit_max,
            "{on_order} on order, bound {limit_max}"
        );
        on_order_max = on_order_max.max(on_order);
    };
    b.until_full_for_2s(&mut observe).await;
    // Every tenant has asked for its first page by now; sample the requests on the wire (token
    // requests are long done) while the budget stays full.
    let mut wire_max = 0.0_f64;
    let mut order_waits = 0.0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(text) = b.scrape().await else {
            continue;
        };
        observe(&text);
        wire_max = wire_max.max(metric(&text, "requests_in_flight"));
        order_waits = metric(&text, "body_budget_order_waits_total");
    }
    eprintln!(
        "on order at most {on_order_max} (bound at most {limit_max}), on the wire at most \
         {wire_max}, {order_waits} order waits"
    );
    assert!(
        wire_max <= limit_max / (16 << 10) as f64 && wire_max < 100.0,
        "{wire_max} requests on the wire while the budget is full (bound {limit_max})"
    );
    assert!(order_waits >= 1.0, "the bound was never reached");
    assert!(on_order_max > 0.0);
    b.finish();
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
