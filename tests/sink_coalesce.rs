//! Writes of many tenants coalesced into shared requests behind the adaptive concurrency
//! limit: hundreds of concurrent writers into the real VictoriaMetrics (far fewer requests than
//! writers, every point stored once, each writer's report exact); a server that stalls beyond
//! `output.timeout` when it has too many requests at once (the limit goes down, nothing is
//! lost, no line it answered is sent again); and a server that refuses some lines of a
//! coalesced request (each refusal counted in the write it belongs to). The slow and refusing
//! servers are small local axum servers whose answers the tests script.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use citrix_harvester::lineproto::Point;
use citrix_harvester::sink::{Concurrency, Origin, Sink, SinkConfig, SinkKind, WriteReport};

type Script = Arc<dyn Fn(&[String], usize) -> Answer + Send + Sync>;

/// What the scripted server does with one request.
struct Answer {
    wait: Duration,
    status: StatusCode,
    body: String,
}

#[derive(Clone)]
struct Ctx {
    /// Every request's lines, in arrival order.
    seen: Arc<Mutex<Vec<Vec<String>>>>,
    /// Requests being answered now.
    load: Arc<AtomicUsize>,
    script: Script,
}

struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(State(ctx): State<Ctx>, body: Bytes) -> Response {
    let now = ctx.load.fetch_add(1, Ordering::SeqCst) + 1;
    let _busy = Busy(ctx.load.clone());
    let lines: Vec<String> = String::from_utf8(body.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    ctx.seen.lock().unwrap().push(lines.clone());
    let a = (ctx.script)(&lines, now);
    tokio::time::sleep(a.wait).await;
    (a.status, a.body).into_response()
}

async fn server(
    script: impl Fn(&[String], usize) -> Answer + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Vec<String>>>>) {
    let ctx = Ctx {
        seen: Arc::default(),
        load: Arc::default(),
        script: Arc::new(script),
    };
    let seen = ctx.seen.clone();
    let app = Router::new()
        .route("/api/v2/write", post(handle))
        .with_state(ctx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn v2(url: &str) -> SinkConfig {
    let mut c = SinkConfig::new(SinkKind::InfluxV2 {
        url: url.to_owned(),
        org: String::new(),
        bucket: "b".into(),
        token: None,
    });
    c.gzip = false;
    c
}

fn written(n: usize) -> WriteReport {
    WriteReport {
        written: n,
        ..WriteReport::default()
    }
}

/// The value of tag `key` in a line (tags here never hold escaped characters).
fn tag<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let head = line.split(' ').next()?;
    head.split(',')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_writers_share_few_requests_and_every_point_is_stored_once() {
    let Some(url) = common::vm_url() else {
        return;
    };
    const WRITERS: usize = 300;
    const POINTS: usize = 20;
    let measurement = common::unique_name("coalesce");
    let sink = Sink::new(SinkConfig::new(SinkKind::InfluxV2 {
        url: url.clone(),
        org: String::new(),
        bucket: "b".into(),
        token: None,
    }))
    .unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let base_ms: i64 = 1_700_000_000_000;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (sink, start, m) = (sink.clone(), start.clone(), measurement.clone());
        tasks.push(tokio::spawn(async move {
            // Distinct milliseconds: VictoriaMetrics keeps milliseconds.
            let points: Vec<Point> = (0..POINTS)
                .map(|j| {
                    Point::new(m.clone(), (base_ms + (w * POINTS + j) as i64) * 1_000_000)
                        .tag("writer", format!("w{w}"))
                        .field("v", j as i64)
                })
                .collect();
            let encoded = sink.encode(&points);
            start.wait().await;
            let tenant = format!("tenant{w}");
            let origin = Origin {
                tenant: &tenant,
                entity: "machines",
            };
            sink.write_encoded(encoded, Some(origin)).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), written(POINTS));
    }
    let stats = sink.stats();
    eprintln!("{WRITERS} writers, {} write requests", stats.write_requests);
    assert!(
        stats.write_requests > 0 && stats.write_requests as usize <= WRITERS / 10,
        "{WRITERS} writers made {} write requests",
        stats.write_requests
    );
    assert_eq!(stats.write_timeouts, 0);
    assert_eq!(
        stats.queue_bytes, 0,
        "every write answered gives its bytes back"
    );
    let selector = format!("{{__name__=\"{measurement}_v\"}}");
    let series =
        common::vm_wait_for_series(&url, &selector, WRITERS, Duration::from_secs(15)).await;
    let mut samples = 0;
    for s in &series {
        let ts = s["timestamps"].as_array().unwrap();
        let mut distinct: Vec<i64> = ts.iter().map(|t| t.as_i64().unwrap()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(ts.len(), POINTS, "each sample exactly once: {s}");
        assert_eq!(distinct.len(), POINTS, "{s}");
        samples += ts.len();
    }
    assert_eq!(samples, WRITERS * POINTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stalls_under_load_lowers_the_limit_and_no_answered_line_is_resent() {
    const CAPACITY: usize = 3;
    const WRITERS: usize = 300;
    const LINES: usize = 25;
    let timeout = Duration::from_millis(400);
    // Line id -> times it was in a request answered 2xx.
    let answered: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let stalls = Arc::new(AtomicUsize::new(0));
    let (a, st) = (answered.clone(), stalls.clone());
    let (url, _seen) = server(move |lines, load| {
        if load > CAPACITY {
            // Overloaded: no answer within the client's timeout (and never a 2xx).
            st.fetch_add(1, Ordering::SeqCst);
            return Answer {
                wait: timeout * 2,
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: String::new(),
            };
        }
        let mut a = a.lock().unwrap();
        for l in lines {
            *a.entry(tag(l, "id").unwrap().to_owned()).or_default() += 1;
        }
        Answer {
            wait: Duration::from_millis(30),
            status: StatusCode::NO_CONTENT,
            body: String::new(),
        }
    })
    .await;
    let mut cfg = v2(&url);
    cfg.batch_size = LINES;
    cfg.timeout = timeout;
    cfg.retry_max_elapsed = Duration::from_secs(60);
    cfg.concurrency = Concurrency::Adaptive { max: 16 };
    let sink = Sink::new(cfg).unwrap();

    // Samples the limit while the writers run.
    let limits: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sampler = {
        let (sink, limits) = (sink.clone(), limits.clone());
        tokio::spawn(async move {
            loop {
                limits.lock().unwrap().push(sink.stats().concurrency_limit);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move {
            let points: Vec<Point> = (0..LINES)
                .map(|j| {
                    Point::new("m", (w * LINES + j) as i64)
                        .tag("id", format!("{w}_{j}"))
                        .field("v", 1i64)
                })
                .collect();
            sink.write(&points).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), written(LINES));
    }
    sampler.abort();
    let stats = sink.stats();
    let limits = limits.lock().unwrap().clone();
    let peak = *limits.iter().max().unwrap();
    let peak_at = limits.iter().position(|&l| l == peak).unwrap();
    let low_after = *limits[peak_at..].iter().min().unwrap();
    eprintln!(
        "limit peak {peak}, then down to {low_after}; {} requests, {} timeouts, {} stalls",
        stats.write_requests,
        stats.write_timeouts,
        stalls.load(Ordering::SeqCst)
    );
    assert!(
        peak as usize > CAPACITY,
        "the limit grew past what the server takes: {limits:?}"
    );
    assert!(
        stats.write_timeouts > 0 && stalls.load(Ordering::SeqCst) > 0,
        "{stats:?}"
    );
    assert!(
        low_after < peak,
        "the limit went down after timeouts: peak {peak}, then {low_after}"
    );
    // Nothing lost, nothing that was answered sent again.
    let answered = answered.lock().unwrap();
    assert_eq!(answered.len(), WRITERS * LINES);
    let twice: Vec<_> = answered.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "answered more than once: {twice:?}");
    assert!(stats.write_requests > (WRITERS * LINES / 25) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_in_a_coalesced_request_are_counted_in_their_own_write() {
    // InfluxDB's answers: a malformed line fails the request (bisected down to that line); a
    // field type conflict stores the rest and says how many it dropped, not which.
    let (url, seen) = server(|lines, _| {
        let ok = || Answer {
            wait: Duration::ZERO,
            status: StatusCode::NO_CONTENT,
            body: String::new(),
        };
        if lines.iter().any(|l| tag(l, "w") == Some("plug")) {
            // Holds the only place while the others queue up behind it.
            return Answer {
                wait: Duration::from_millis(500),
                ..ok()
            };
        }
        if let Some(bad) = lines.iter().find(|l| tag(l, "kind") == Some("unparsable")) {
            return Answer {
                wait: Duration::ZERO,
                status: StatusCode::BAD_REQUEST,
                body: format!(
                    "{{\"error\":\"partial write: unable to parse '{bad}': invalid field format dropped=0\"}}"
                ),
            };
        }
        let conflicts = lines
            .iter()
            .filter(|l| tag(l, "kind") == Some("conflict"))
            .count();
        if conflicts > 0 {
            return Answer {
                wait: Duration::ZERO,
                status: StatusCode::BAD_REQUEST,
                body: format!(
                    "{{\"error\":\"partial write: field type conflict: input field \\\"v\\\" on measurement \\\"m\\\" is type string, already exists as type integer dropped={conflicts}\"}}"
                ),
            };
        }
        ok()
    })
    .await;
    let mut cfg = v2(&url);
    cfg.concurrency = Concurrency::Fixed(1);
    let sink = Sink::new(cfg).unwrap();
    let points = |w: &str, bad: &[(usize, &str)]| -> Vec<Point> {
        (0..10)
            .map(|i| {
                let mut p = Point::new("m", i as i64).tag("w", w.to_owned());
                if let Some((_, kind)) = bad.iter().find(|(at, _)| *at == i) {
                    p = p.tag("kind", (*kind).to_owned());
                }
                p.field("v", i as i64)
            })
            .collect()
    };
    let plug = {
        let sink = sink.clone();
        tokio::spawn(async move {
            sink.write(&[Point::new("m", 0).tag("w", "plug").field("v", 0i64)])
                .await
        })
    };
    while seen.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let write = |pts: Vec<Point>| {
        let sink = sink.clone();
        tokio::spawn(async move { sink.write(&pts).await })
    };
    let a = write(points("a", &[]));
    let b = write(points("b", &[(4, "unparsable")]));
    let c = write(points("c", &[(1, "conflict"), (7, "conflict")]));
    let d = write(points("d", &[]));
    assert_eq!(plug.await.unwrap().unwrap(), written(1));
    assert_eq!(a.await.unwrap().unwrap(), written(10));
    assert_eq!(
        b.await.unwrap().unwrap(),
        WriteReport {
            written: 9,
            rejected: 1,
            ..WriteReport::default()
        }
    );
    assert_eq!(
        c.await.unwrap().unwrap(),
        WriteReport {
            written: 8,
            dropped: 2,
            ..WriteReport::default()
        }
    );
    assert_eq!(d.await.unwrap().unwrap(), written(10));
    assert_eq!(sink.stats().dead_letters, 1);
    // The four writes did share a request.
    let seen = seen.lock().unwrap();
    let shared = seen.iter().any(|req| {
        ["a", "b", "c", "d"]
            .iter()
            .all(|w| req.iter().any(|l| tag(l, "w") == Some(w)))
    });
    assert!(shared, "no request carried all four writes: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_an_outage_are_spooled_each_with_its_own_count_then_replayed_once() {
    const WRITERS: usize = 100;
    const LINES: usize = 10;
    let away = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let answered: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let (aw, an) = (away.clone(), answered.clone());
    let (url, _seen) = server(move |lines, _| {
        if aw.load(Ordering::SeqCst) {
            return Answer {
                wait: Duration::ZERO,
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: "down for maintenance".into(),
            };
        }
        let mut a = an.lock().unwrap();
        for l in lines {
            *a.entry(tag(l, "id").unwrap().to_owned()).or_default() += 1;
        }
        Answer {
            wait: Duration::ZERO,
            status: StatusCode::NO_CONTENT,
            body: String::new(),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = v2(&url);
    cfg.batch_size = 40;
    cfg.retry_max_elapsed = Duration::from_millis(300);
    cfg.state_dir = Some(dir.path().to_path_buf());
    let sink = Sink::new(cfg).unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let replay = sink.start_replay(cancel.clone()).unwrap();
    let points = |w: usize| -> Vec<Point> {
        (0..LINES)
            .map(|j| {
                Point::new("m", (w * LINES + j) as i64)
                    .tag("id", format!("{w}_{j}"))
                    .field("v", 1i64)
            })
            .collect()
    };
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (sink, pts) = (sink.clone(), points(w));
        tasks.push(tokio::spawn(async move { sink.write(&pts).await }));
    }
    for t in tasks {
        assert_eq!(
            t.await.unwrap().unwrap(),
            WriteReport {
                spooled: LINES,
                ..WriteReport::default()
            }
        );
    }
    assert_eq!(sink.stats().spooled_points, (WRITERS * LINES) as u64);
    assert!(answered.lock().unwrap().is_empty());
    away.store(false, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sink.stats().replayed_points < (WRITERS * LINES) as u64 || sink.stats().spool_bytes > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not replayed: {:?}",
            sink.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once drained, writes go straight to the server again.
    let mut after = Vec::new();
    for _ in 0..100 {
        after = points(WRITERS);
        let r = sink.write(&after).await.unwrap();
        if r.written == LINES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    replay.await.unwrap();
    let answered = answered.lock().unwrap();
    assert_eq!(answered.len(), (WRITERS + 1) * LINES, "{after:?}");
    let twice: Vec<_> = answered
        .iter()
        .filter(|(id, n)| **n != 1 && !id.starts_with(&format!("{WRITERS}_")))
        .collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
}
