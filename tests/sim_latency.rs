//! The simulator's latency over real HTTP: the lognormal wait before the first byte (its median
//! and 99th percentile as the statistics report them), slow tenants, the per-tenant sum of
//! imposed latency (a tenant's ideal cycle), the API-wide budget answering 429 with
//! Retry-After, the stream rate, shared data sets, the run-time switch `POST /_sim/latency`,
//! the real clock and grooming (`retain`). Distributions are checked on the imposed waits the simulator reports,
//! never on wall-clock timings (only generous lower bounds are).

mod common;

use std::time::{Duration, Instant};

use citrix_harvester::sim::{Latency, SimHandle, SimOptions, SimTenant};
use common::sim::{start, token};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

/// Many small tenants on a few shared data sets, so that hundreds start in well under a second.
fn many(tenants: usize) -> SimOptions {
    SimOptions {
        tenants,
        sessions_per_day: 40,
        history: chrono::Duration::hours(2),
        data_sets: Some(3),
        ..SimOptions::default()
    }
}

fn client() -> Client {
    Client::builder().pool_max_idle_per_host(0).build().unwrap()
}

/// One Monitor GET; status, Retry-After and body.
async fn get(
    c: &Client,
    url: &str,
    tok: &str,
    t: &SimTenant,
) -> (StatusCode, Option<String>, Vec<u8>) {
    let r = c
        .get(url)
        .header("Authorization", format!("CWSAuth bearer={tok}"))
        .header("Citrix-CustomerId", &t.customer_id)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, r.bytes().await.unwrap().to_vec())
}

async fn tokens(c: &Client, h: &SimHandle) -> Vec<(SimTenant, String)> {
    let mut out = Vec::new();
    for t in h.tenants() {
        let tok = token(c, h, &t).await;
        out.push((t, tok));
    }
    out
}

/// One request per tenant, all at once; their statuses.
async fn one_each(c: &Client, h: &SimHandle, ts: &[(SimTenant, String)], set: &str) -> Vec<u16> {
    let url = format!("{}/{set}?$top=5", h.monitor_base_url());
    let tasks: Vec<_> = ts
        .iter()
        .map(|(t, tok)| {
            let (c, url, t, tok) = (c.clone(), url.clone(), t.clone(), tok.clone());
            tokio::spawn(async move { get(&c, &url, &tok, &t).await.0.as_u16() })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn admin_latency(c: &Client, h: &SimHandle, patch: Value) -> (StatusCode, Value) {
    let r = c
        .post(format!("{}/_sim/latency", h.regional_url()))
        .json(&patch)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_follow_p50_and_p99_and_do_not_serialise_tenants() {
    // 1 s / 5 s as Citrix, ten times faster than real time.
    let h = start(SimOptions {
        time_scale: 10.0,
        ..many(400)
    })
    .await;
    let c = client();
    let ts = tokens(&c, &h).await;
    assert!(
        h.stats().tenants.values().all(|s| s.wait_us == 0),
        "no latency by default"
    );
    // Switched on at run time; a bad patch is refused and changes nothing.
    let (status, body) = admin_latency(&c, &h, json!({"p50_ms": 1000, "p99_ms": 5000})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["p99_ms"], 5000.0);
    assert_eq!(
        body["slow_factor"], 3.0,
        "fields not in the patch keep their value"
    );
    for bad in [
        json!({"p99_ms": 10}),
        json!({"p50": 1}),
        json!({"slow_share": 2}),
    ] {
        let (status, body) = admin_latency(&c, &h, bad.clone()).await;
        assert_eq!(status, 400, "{bad} → {body}");
    }
    assert_eq!(h.latency().p99_ms, 5000.0);

    let t0 = Instant::now();
    let statuses = one_each(&c, &h, &ts, "Machines").await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let stats = h.stats();
    let waits: Vec<f64> = stats
        .tenants
        .values()
        .map(|s| s.wait_us as f64 / 1000.0)
        .collect();
    assert_eq!(waits.len(), 400);
    let (p50, p99) = (quantile(waits.clone(), 0.5), quantile(waits.clone(), 0.99));
    assert!((800.0..1250.0).contains(&p50), "median wait {p50} ms");
    assert!((2500.0..10000.0).contains(&p99), "p99 wait {p99} ms");
    // Every tenant's ideal cycle: its one wait (bodies stream at once).
    for s in stats.tenants.values() {
        assert_eq!(s.latency_ms, s.wait_us / 1000);
        assert_eq!(s.stream_us, 0);
        assert_eq!(s.max_in_flight, 1);
    }
    // Waiting requests overlap: far more than one in flight across the API (and more than
    // the harvester's old 32).
    assert!(
        stats.api.max_in_flight >= 50,
        "max in flight across the API: {}",
        stats.api.max_in_flight
    );
    assert_eq!(stats.api.in_flight, 0);
    // Lower bound only: the longest of 400 waits is above 2 s simulated, 200 ms of wall time.
    assert!(t0.elapsed() >= Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_of_tenants_is_slower_by_the_factor() {
    let h = start(SimOptions {
        latency: Latency {
            p50_ms: 200.0,
            p99_ms: 200.0,
            slow_share: 0.25,
            slow_factor: 4.0,
            ..Latency::default()
        },
        time_scale: 20.0,
        ..many(300)
    })
    .await;
    let c = client();
    let ts = tokens(&c, &h).await;
    let stats = h.stats();
    let slow = stats.tenants.values().filter(|s| s.slow).count();
    assert!((45..=105).contains(&slow), "{slow} slow tenants of 300");
    // The token request waited too: 200 ms, or 800 ms for a slow tenant.
    for s in stats.tenants.values() {
        let want = if s.slow { 800_000 } else { 200_000 };
        assert_eq!(s.wait_us, want);
    }
    let statuses = one_each(&c, &h, &ts, "DesktopGroups").await;
    assert!(statuses.iter().all(|&s| s == 200));
    for s in h.stats().tenants.values() {
        let want = if s.slow { 1600 } else { 400 };
        assert_eq!(s.latency_ms, want, "token + one request");
        assert_eq!(s.requests, 1);
    }
    // Chosen from the seed: another simulator of the same seed picks the same tenants.
    let again = start(SimOptions {
        latency: h.latency(),
        ..many(300)
    })
    .await;
    let pick = |s: &citrix_harvester::sim::SimStats| {
        s.tenants
            .iter()
            .filter(|(_, t)| t.slow)
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(pick(&again.stats()), pick(&h.stats()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_sum_is_per_tenant_and_streaming_counts() {
    let h = start(SimOptions {
        tenants: 2,
        sessions_per_day: 300,
        ..SimOptions::default()
    })
    .await;
    let c = client();
    let ts = tokens(&c, &h).await;
    let (t, tok) = &ts[0];
    h.set_latency(Latency {
        p50_ms: 30.0,
        p99_ms: 30.0,
        stream_rate: 100_000,
        ..Latency::default()
    })
    .unwrap();
    let url = format!("{}/Sessions?$top=200", h.monitor_base_url());
    let mut bytes = 0usize;
    let t0 = Instant::now();
    for _ in 0..3 {
        let (status, _, body) = get(&c, &url, tok, t).await;
        assert_eq!(status, 200);
        serde_json::from_slice::<Value>(&body).expect("a whole JSON body");
        bytes += body.len();
    }
    let took = t0.elapsed();
    let stats = h.stats();
    let s = &stats.tenants[&t.customer_id];
    assert_eq!(s.wait_us, 90_000, "three waits of 30 ms");
    let want_stream = bytes as f64 / 100_000.0 * 1e6;
    assert!(
        (s.stream_us as f64 - want_stream).abs() <= 3.0,
        "stream {} µs for {bytes} bytes at 100 kB/s",
        s.stream_us
    );
    assert!(
        bytes > 50_000,
        "{bytes} bytes: enough to stream for a while"
    );
    assert_eq!(s.latency_ms, (s.wait_us + s.stream_us) / 1000);
    assert_eq!(s.max_in_flight, 1);
    // The body really was slow on the wire (lower bound only).
    let ideal = Duration::from_micros(s.wait_us + s.stream_us);
    assert!(
        took >= ideal.mul_f64(0.9),
        "{took:?} for an ideal {ideal:?}"
    );
    // The other tenant made no request: nothing imposed.
    assert_eq!(stats.tenants[&ts[1].0.customer_id].latency_ms, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_budget_answers_429_with_retry_after() {
    let h = start(SimOptions {
        latency: Latency {
            p50_ms: 2000.0,
            p99_ms: 2000.0,
            api_budget: 5,
            retry_after_secs: 7,
            ..Latency::default()
        },
        ..many(20)
    })
    .await;
    let c = client();
    // Tokens have no budget (but the 2 s wait): fetch them all at once.
    let tasks: Vec<_> = h
        .tenants()
        .into_iter()
        .map(|t| {
            let (c, base) = (c.clone(), h.regional_url());
            tokio::spawn(async move {
                let tok = common::sim::token_from(&c, &base, &t).await;
                (t, tok)
            })
        })
        .collect();
    let mut ts = Vec::new();
    for t in tasks {
        ts.push(t.await.unwrap());
    }
    let url = format!("{}/Machines?$top=1", h.monitor_base_url());
    let tasks: Vec<_> = ts
        .iter()
        .map(|(t, tok)| {
            let (c, url, t, tok) = (c.clone(), url.clone(), t.clone(), tok.clone());
            tokio::spawn(async move {
                let (s, retry, _) = get(&c, &url, &tok, &t).await;
                (s.as_u16(), retry)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let limited: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(ok, 5, "{answers:?}");
    assert_eq!(limited.len(), 15, "{answers:?}");
    assert!(limited.iter().all(|(_, r)| r.as_deref() == Some("7")));
    let stats = h.stats();
    assert_eq!(stats.api.budget_429, 15);
    assert!(stats.api.max_in_flight >= 6, "{}", stats.api.max_in_flight);
    assert_eq!(
        stats.tenants.values().map(|s| s.responses_429).sum::<u64>(),
        15
    );
    // A rejected request imposes no wait: only the token's and the admitted request's.
    for s in stats.tenants.values() {
        let want = if s.responses_429 == 1 { 2000 } else { 4000 };
        assert_eq!(s.latency_ms, want);
    }
    // With the budget free again, a retry is served.
    let (t, tok) = ts
        .iter()
        .find(|(t, _)| stats.tenants[&t.customer_id].responses_429 == 1)
        .unwrap();
    h.set_latency(Latency {
        api_budget: 5,
        ..Latency::default()
    })
    .unwrap();
    assert_eq!(get(&c, &url, tok, t).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_clock_brings_new_rows() {
    // Ten simulated minutes per wall second, a tick every 100 ms.
    let h = start(SimOptions {
        tenants: 2,
        sessions_per_day: 2000,
        now: citrix_harvester::scheduler::minute_now(),
        history: chrono::Duration::hours(1),
        time_scale: 600.0,
        real_clock: Some(Duration::from_millis(100)),
        ..SimOptions::default()
    })
    .await;
    let t = &h.tenants()[0];
    let start_now = h.now();
    let before_ru = h.rows(&t.customer_id, "ResourceUtilization").len();
    let before_sessions = h.rows(&t.customer_id, "Sessions").len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.now() < start_now + chrono::Duration::minutes(20) {
        assert!(Instant::now() < deadline, "the clock stands at {}", h.now());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ru = h.rows(&t.customer_id, "ResourceUtilization").len();
    let sessions = h.rows(&t.customer_id, "Sessions").len();
    assert!(ru > before_ru, "ResourceUtilization {before_ru} → {ru}");
    assert!(
        sessions > before_sessions,
        "Sessions {before_sessions} → {sessions}"
    );
    // The newest rows are of the new present.
    let newest = h
        .rows(&t.customer_id, "ResourceUtilization")
        .iter()
        .filter_map(|r| r["CollectedDate"].as_str().map(str::to_string))
        .max()
        .unwrap();
    let newest = chrono::DateTime::parse_from_rfc3339(&newest).unwrap();
    assert!(
        newest > start_now + chrono::Duration::minutes(10),
        "{newest}"
    );
}

#[tokio::test]
async fn shared_data_sets_serve_the_same_rows_under_each_identity() {
    let h = start(many(7)).await;
    let ts = h.tenants();
    let rows = |i: usize| h.rows(&ts[i].customer_id, "Machines");
    assert_eq!(rows(0), rows(3));
    assert_eq!(rows(1), rows(4));
    assert_ne!(rows(0), rows(1));
    assert_ne!(ts[0].customer_id, ts[3].customer_id);
}

#[tokio::test]
async fn retain_keeps_a_long_run_the_same_size() {
    let opts = |retain| SimOptions {
        tenants: 1,
        history: chrono::Duration::hours(2),
        retain,
        ..SimOptions::default()
    };
    let kept = start(opts(Some(chrono::Duration::hours(1)))).await;
    let all = start(opts(None)).await;
    for h in [&kept, &all] {
        h.advance(chrono::Duration::hours(3));
    }
    let t = &kept.tenants()[0];
    let ru = |h: &SimHandle| h.rows(&t.customer_id, "ResourceUtilization");
    let cutoff = kept.now() - chrono::Duration::hours(1);
    let old = ru(&kept)
        .iter()
        .filter(|r| {
            let at =
                chrono::DateTime::parse_from_rfc3339(r["CollectedDate"].as_str().unwrap()).unwrap();
            at < cutoff
        })
        .count();
    assert_eq!(old, 0, "no sample older than the hour kept");
    assert!(ru(&kept).len() * 2 < ru(&all).len());
    let sessions = |h: &SimHandle| h.rows(&t.customer_id, "Sessions");
    assert_eq!(
        sessions(&kept),
        sessions(&all),
        "sessions are never groomed"
    );
}
