//! Retry, backoff, Retry-After, split, bisection, partial writes and auth headers, against a
//! tiny local axum server whose answers each test scripts. Needs no external server.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use citrix_harvester::lineproto::Point;
use citrix_harvester::secret::Secret;
use citrix_harvester::sink::{Origin, Sink, SinkConfig, SinkError, SinkKind, WriteReport};

/// One request as the server saw it: headers and the (gunzipped) lines.
#[derive(Clone, Debug)]
struct Seen {
    headers: HeaderMap,
    lines: Vec<String>,
}

type Script = Arc<dyn Fn(usize, &Seen) -> Response + Send + Sync>;

#[derive(Clone)]
struct Ctx {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Script,
}

async fn handle(State(ctx): State<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    let raw = if headers.get("content-encoding").map(|v| v.as_bytes()) == Some(b"gzip") {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out).unwrap();
        out
    } else {
        body.to_vec()
    };
    let lines = String::from_utf8(raw)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let seen = Seen { headers, lines };
    let n = {
        let mut v = ctx.seen.lock().unwrap();
        v.push(seen.clone());
        v.len() - 1
    };
    (ctx.script)(n, &seen)
}

/// Starts the scripted server on 127.0.0.1:0; returns its base URL and the request log.
async fn server(
    script: impl Fn(usize, &Seen) -> Response + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let ctx = Ctx {
        seen: Arc::default(),
        script: Arc::new(script),
    };
    let seen = ctx.seen.clone();
    let app = Router::new()
        .route("/api/v2/write", post(handle))
        .route("/write", post(handle))
        .with_state(ctx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn v2(url: &str, token: Option<&str>) -> SinkConfig {
    let mut c = SinkConfig::new(SinkKind::InfluxV2 {
        url: url.to_owned(),
        org: "o".into(),
        bucket: "b".into(),
        token: token.map(Secret::new),
    });
    c.retry_max_elapsed = Duration::from_secs(5);
    c
}

fn points(n: i64) -> Vec<Point> {
    (0..n).map(|i| Point::new("m", i).field("v", i)).collect()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

#[tokio::test]
async fn v2_sends_token_gzip_and_query() {
    let (url, seen) = server(|_, _| no_content()).await;
    let sink = Sink::new(v2(&url, Some("s3cret"))).unwrap();
    let r = sink.write(&points(3)).await.unwrap();
    assert_eq!(r.written, 3);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert_eq!(h["authorization"], "Token s3cret");
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    assert_eq!(seen[0].lines, vec!["m v=0i 0", "m v=1i 1", "m v=2i 2"]);
    assert!(!sink.describe().contains("s3cret"));
}

#[tokio::test]
async fn v1_sends_basic_auth_without_gzip() {
    let (url, seen) = server(|_, _| no_content()).await;
    let mut cfg = SinkConfig::new(SinkKind::InfluxV1 {
        url,
        database: "db".into(),
        retention_policy: Some("rp".into()),
        username: Some("u".into()),
        password: Some(Secret::new("p")),
    });
    cfg.gzip = false;
    let sink = Sink::new(cfg).unwrap();
    sink.write(&points(1)).await.unwrap();
    let seen = seen.lock().unwrap();
    // base64("u:p")
    assert_eq!(seen[0].headers["authorization"], "Basic dTpw");
    assert!(seen[0].headers.get("content-encoding").is_none());
}

#[tokio::test]
async fn unauthorized_is_retried_then_names_the_token_setting() {
    let (url, seen) = server(|_, seen| {
        if seen.headers.get("authorization").map(|v| v.as_bytes()) == Some(b"Token right") {
            no_content()
        } else {
            (StatusCode::UNAUTHORIZED, "{\"code\":\"unauthorized\"}").into_response()
        }
    })
    .await;
    let mut cfg = v2(&url, Some("wrong"));
    cfg.retry_max_elapsed = Duration::from_millis(800);
    let sink = Sink::new(cfg).unwrap();
    let (logs, _guard) = common::capture_logs();
    let e = sink.write(&points(2)).await.unwrap_err();
    assert!(matches!(e, SinkError::GaveUp { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("`token`"), "{msg}");
    assert!(msg.contains(&url), "error names the URL: {msg}");
    assert!(!msg.contains("wrong"), "no secret in errors: {msg}");
    assert!(seen.lock().unwrap().len() >= 2, "401 was retried");
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("`token`"), "log names the setting: {logs}");
    assert!(!logs.contains("wrong"), "no secret in logs: {logs}");

    let sink = Sink::new(v2(&url, Some("right"))).unwrap();
    assert_eq!(sink.write(&points(2)).await.unwrap().written, 2);
}

#[tokio::test]
async fn retry_after_seconds_is_honoured() {
    let (url, seen) = server(|n, _| {
        if n == 0 {
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "slow down",
            )
                .into_response()
        } else {
            no_content()
        }
    })
    .await;
    let sink = Sink::new(v2(&url, None)).unwrap();
    let t = Instant::now();
    assert_eq!(sink.write(&points(5)).await.unwrap().written, 5);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn server_errors_retry_until_the_budget_then_fail_naming_the_url() {
    let (url, seen) =
        server(|_, _| (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response()).await;
    let mut cfg = v2(&url, None);
    cfg.retry_max_elapsed = Duration::from_millis(1500);
    let sink = Sink::new(cfg).unwrap();
    let t = Instant::now();
    let e = sink.write(&points(1)).await.unwrap_err();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(seen.lock().unwrap().len() >= 2);
    let msg = e.to_string();
    assert!(msg.contains(&url) && msg.contains("503"), "{msg}");
}

#[tokio::test]
async fn connection_refused_is_retried_then_gives_up() {
    // Bind and drop to get a port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = v2(&format!("http://127.0.0.1:{port}"), None);
    cfg.retry_max_elapsed = Duration::from_millis(700);
    let sink = Sink::new(cfg).unwrap();
    let e = sink.write(&points(1)).await.unwrap_err();
    assert!(matches!(e, SinkError::GaveUp { .. }), "{e}");
    assert!(e.to_string().contains("Connect"), "{e}");
}

#[tokio::test]
async fn too_large_splits_until_accepted() {
    let (url, seen) = server(|_, seen| {
        if seen.lines.len() > 10 {
            StatusCode::PAYLOAD_TOO_LARGE.into_response()
        } else {
            no_content()
        }
    })
    .await;
    let sink = Sink::new(v2(&url, None)).unwrap();
    let r = sink.write(&points(50)).await.unwrap();
    assert_eq!(r.written, 50);
    // every line delivered exactly once by the accepted requests, in order
    let delivered: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.lines.len() <= 10)
        .flat_map(|s| s.lines.clone())
        .collect();
    let want: Vec<String> = (0..50).map(|i| format!("m v={i}i {i}")).collect();
    assert_eq!(delivered, want);
}

#[tokio::test]
async fn bad_request_bisects_to_the_bad_lines() {
    // Lines with v = 13, 50 or 51 are "bad": the whole request is refused while one is in it.
    let bad = |l: &String| ["m v=13i 13", "m v=50i 50", "m v=51i 51"].contains(&l.as_str());
    let (url, seen) = server(move |_, seen| {
        if seen.lines.iter().any(bad) {
            (
                StatusCode::BAD_REQUEST,
                "{\"error\":\"unable to parse: bad line\"}",
            )
                .into_response()
        } else {
            no_content()
        }
    })
    .await;
    let mut cfg = v2(&url, None);
    cfg.batch_size = 64;
    let sink = Sink::new(cfg).unwrap();
    let (logs, _guard) = common::capture_logs();
    let r = sink.write(&points(100)).await.unwrap();
    assert_eq!(
        r,
        WriteReport {
            written: 97,
            rejected: 3,
            dropped: 0,
            spooled: 0
        }
    );
    let requests = seen.lock().unwrap().len();
    // two batches; bisection costs about 2·log2(batch) requests per bad line
    assert!(requests <= 2 + 3 * 2 * 7, "{requests} requests");
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("m v=13i 13") && logs.contains("bad line"),
        "{logs}"
    );
}

#[tokio::test]
async fn partial_write_counts_dropped_without_retrying() {
    let (url, seen) = server(|_, _| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "{\"error\":\"partial write: points beyond retention policy dropped=2\"}",
        )
            .into_response()
    })
    .await;
    let sink = Sink::new(v2(&url, None)).unwrap();
    let r = sink.write(&points(10)).await.unwrap();
    assert_eq!(
        r,
        WriteReport {
            written: 8,
            rejected: 0,
            dropped: 2,
            spooled: 0
        }
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn byte_cap_splits_batches() {
    let (url, seen) = server(|_, _| no_content()).await;
    let mut cfg = v2(&url, None);
    cfg.batch_bytes = 40; // "m v=NNi NN\n" is ~11-13 bytes: three lines per request
    let sink = Sink::new(cfg).unwrap();
    assert_eq!(sink.write(&points(30)).await.unwrap().written, 30);
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 8, "{} requests", seen.len());
    let total: usize = seen.iter().map(|s| s.lines.len()).sum();
    assert_eq!(total, 30);
    for s in seen.iter() {
        let bytes: usize = s.lines.iter().map(|l| l.len() + 1).sum();
        assert!(bytes <= 40 || s.lines.len() == 1, "{s:?}");
    }
}

/// The sink's own lines about a page's write (here: retries, then spooling) name the tenant
/// and entity the walk passed as its origin.
#[tokio::test(flavor = "current_thread")]
async fn sink_log_lines_name_the_origin_of_the_write() {
    // A closed port: every attempt fails, then the points go to the spool.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let state = tempfile::tempdir().unwrap();
    let mut cfg = v2(&format!("http://127.0.0.1:{port}"), None);
    cfg.retry_max_elapsed = Duration::from_millis(300);
    cfg.state_dir = Some(state.path().to_path_buf());
    let sink = Sink::new(cfg).unwrap();
    let (logs, _guard) = common::capture_logs();
    let origin = Origin {
        tenant: "Contoso",
        entity: "connections",
    };
    let r = sink
        .write_encoded(sink.encode(&points(2)), Some(origin))
        .await
        .unwrap();
    assert_eq!(r.spooled, 2);
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let ours: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("citrix_harvester::sink"))
        .collect();
    assert!(ours.iter().any(|l| l.contains("retrying")), "{logs}");
    assert!(ours.iter().any(|l| l.contains("spooling")), "{logs}");
    for l in &ours {
        assert!(
            l.contains("tenant=\"Contoso\"") && l.contains("entity=\"connections\""),
            "a sink line without its origin: {l}"
        );
    }
}
