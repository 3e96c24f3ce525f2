//! Hostile answers and bad luck (issue "nothing unbounded, no silent stop, no secret leaves"):
//! each test puts the harvester in front of a small local server that answers the way a broken
//! proxy or a hostile host would, and proves the guarantee of DESIGN.md rule 8 that applies —
//! bounded bodies, no redirects, no panic that silently stops a tenant, no watermark ahead of
//! the clock, no endless paging, no secret in a log line. Each of these failed before the fix.

mod common;

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use citrix_harvester::config::{Config, SecretSources};
use citrix_harvester::scheduler::{TenantSummary, run, run_report};
use common::hostile::{Hostile, Reply, token_json};

const SECRET: &str = "s3cr3t+/value=";

fn no_env() -> SecretSources {
    SecretSources {
        env: Box::new(|_| None),
        credentials_dir: None,
    }
}

/// A configuration with one tenant `name` whose token and Monitor hosts are `url`
/// (`/token`, `/m`), no fallback, the file output, and `extra` TOML appended to [citrix].
fn config(dir: &std::path::Path, name: &str, url: &str, citrix: &str, entities: &str) -> Config {
    let text = format!(
        "[harvester]\nstate_dir = \"{state}\"\nlookback = \"1h\"\njitter = \"0s\"\n\
         allow_inline_secrets = true\n\
         [citrix]\nmax_retries = 0\nmax_retry_delay = \"1s\"\n{citrix}\n\
         [output]\nkind = \"file\"\npath = \"{out}\"\n\
         [[tenant]]\nname = \"{name}\"\ncustomer_id = \"{name}cust\"\nclient_id = \"cid\"\n\
         client_secret = \"{SECRET}\"\ntoken_url = \"{url}/token\"\nfallback_token_url = \"\"\n\
         monitor_url = \"{url}/m\"\nentities = [{entities}]\n",
        state = dir.join("state").display(),
        out = dir.join("out.lp").display(),
    );
    Config::from_toml_str(&text, &no_env()).unwrap()
}

fn connection(id: i64, modified: &str) -> String {
    format!(
        r#"{{"Id":{id},"BrokeringDate":"2026-11-30T08:00:00Z","ModifiedDate":"{modified}","Protocol":"HDX"}}"#
    )
}

fn page(rows: &[String], next: Option<&str>) -> String {
    let next = next
        .map(|n| format!(r#","@odata.nextLink":"{n}""#))
        .unwrap_or_default();
    format!(r#"{{"value":[{}]{next}}}"#, rows.join(","))
}

/// Token host and Monitor API in one server; `monitor` answers every GET.
async fn server(
    monitor: impl Fn(&common::hostile::Req) -> Reply + Send + Sync + 'static,
) -> Hostile {
    Hostile::start(move |r| {
        if r.method == "POST" {
            Reply::json(200, &token_json("tok-live-123", "3600"))
        } else {
            monitor(r)
        }
    })
    .await
}

fn only(summaries: &[TenantSummary]) -> &TenantSummary {
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    &summaries[0]
}

fn entity_error(s: &TenantSummary) -> String {
    s.entities
        .iter()
        .find_map(|e| e.error.clone())
        .unwrap_or_else(|| panic!("no entity failed: {s:?}"))
}

#[tokio::test]
async fn a_gzip_bomb_page_fails_that_request_with_a_clear_error() {
    // 16 MiB of spaces inside a valid empty page, 16 KB on the wire.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"{\"value\":[").unwrap();
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..16 {
        gz.write_all(&spaces).unwrap();
    }
    gz.write_all(b"]}").unwrap();
    let bomb = Arc::new(gz.finish().unwrap());
    let b = bomb.clone();
    let srv = server(move |_| {
        Reply::new(
            200,
            &[
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip"),
            ],
            &b,
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "Bomb",
        &srv.url,
        "max_page_bytes = 1048576",
        "\"connections\"",
    );
    let out = run(&cfg, true, CancellationToken::new()).await.unwrap();
    let s = only(&out);
    assert!(!s.ok(), "the bomb was accepted: {s:?}");
    let e = entity_error(s);
    for want in [
        "tenant Bomb",
        "entity connections",
        "/m/Connections",
        "larger than 1048576",
        "max_page_bytes",
    ] {
        assert!(e.contains(want), "`{want}` missing in: {e}");
    }
    assert!(
        bomb.len() < 100_000,
        "the bomb is small on the wire: {}",
        bomb.len()
    );
}

#[tokio::test]
async fn a_token_lifetime_beyond_any_clock_is_capped_not_a_panic() {
    let srv = Hostile::start(|r| {
        if r.method == "POST" {
            Reply::json(200, &token_json("tok", "18446744073709551615"))
        } else {
            Reply::json(200, &page(&[], None))
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "Forever", &srv.url, "", "\"connections\"");
    let out = run(&cfg, true, CancellationToken::new()).await.unwrap();
    assert!(only(&out).ok(), "{out:?}");
}

#[tokio::test]
async fn a_lookback_that_would_overflow_the_calendar_is_refused_by_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[harvester]\nstate_dir = \"{}\"\nlookback = \"99999999d\"\nallow_inline_secrets = true\n\
         [output]\nkind = \"stdout\"\n[[tenant]]\nname = \"a\"\ncustomer_id = \"a\"\n\
         client_id = \"c\"\nclient_secret = \"s\"\n",
        dir.path().display()
    );
    let e = Config::from_toml_str(&text, &no_env())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("harvester.lookback") && e.contains("100 years"),
        "{e}"
    );
}

#[tokio::test]
async fn a_panicking_tenant_fails_once_and_is_reported_never_silently_missing() {
    let srv = server(|_| Reply::json(200, &page(&[], None))).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "PanicOnce", &srv.url, "", "\"connections\"");
    citrix_harvester::failpoint::set_panicking("PanicOnce", true);
    let out = run(&cfg, true, CancellationToken::new()).await;
    citrix_harvester::failpoint::set_panicking("PanicOnce", false);
    let out = out.unwrap();
    let s = only(&out);
    assert!(!s.ok());
    let e = s.error.clone().unwrap_or_default();
    assert!(e.contains("panicked") && e.contains("on purpose"), "{e}");
}

#[tokio::test]
async fn a_panicking_tenant_is_restarted_and_shown_in_metrics_and_readyz() {
    let srv = server(|_| Reply::json(200, &page(&[], None))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "PanicDaemon", &srv.url, "", "\"connections\"");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    cfg.harvester.listen = Some(port);
    cfg.harvester.interval = Duration::from_secs(1);
    citrix_harvester::failpoint::set_panicking("PanicDaemon", true);
    let stop = CancellationToken::new();
    let daemon = tokio::spawn({
        let (cfg, stop) = (cfg.clone(), stop.clone());
        async move { run(&cfg, false, stop).await }
    });
    let get = |path: &'static str| async move {
        let r = reqwest::get(format!("http://{port}{path}")).await.ok()?;
        r.text().await.ok()
    };
    let mut seen = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = get("/metrics").await.unwrap_or_default();
        if seen.contains("tenant_panics_total{tenant=\"PanicDaemon\"} 2") {
            break;
        }
    }
    assert!(
        seen.contains("tenant_panics_total{tenant=\"PanicDaemon\"} 2"),
        "restarted after the first panic and panicked again:\n{seen}"
    );
    assert!(
        seen.contains("tenant_healthy{tenant=\"PanicDaemon\"} 0"),
        "{seen}"
    );
    let ready = get("/readyz").await.unwrap_or_default();
    assert!(
        ready.contains("PanicDaemon") && ready.contains("panicked"),
        "{ready}"
    );
    // The bug goes away: the restarted task harvests and the tenant is healthy again.
    citrix_harvester::failpoint::set_panicking("PanicDaemon", false);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = get("/metrics").await.unwrap_or_default();
        if seen.contains("tenant_healthy{tenant=\"PanicDaemon\"} 1") {
            break;
        }
    }
    assert!(
        seen.contains("tenant_healthy{tenant=\"PanicDaemon\"} 1"),
        "{seen}"
    );
    stop.cancel();
    daemon.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_future_dated_row_is_written_but_never_becomes_the_watermark() {
    let now = chrono::Utc::now();
    let recent = (now - chrono::Duration::minutes(10))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let rows = [
        connection(1, &recent),
        connection(2, "2099-01-01T00:00:00Z"),
    ];
    let body = page(&rows, None);
    let srv = server(move |_| Reply::json(200, &body)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "Clock", &srv.url, "", "\"connections\"");
    let out = run(&cfg, true, CancellationToken::new()).await.unwrap();
    let e = &only(&out).entities[0];
    assert_eq!(
        (e.records, e.points_written, e.future_dated),
        (2, 2, 1),
        "{e:?}"
    );
    let wm = e.watermark.expect("a watermark");
    assert!(
        wm <= now + chrono::Duration::minutes(6),
        "watermark {wm} is ahead of the clock"
    );
    // The next cycle asks for what arrived since, not for 2099.
    run(&cfg, true, CancellationToken::new()).await.unwrap();
    let last = srv.all().pop().unwrap();
    assert!(!last.target.contains("2099"), "{}", last.target);
    assert!(
        last.target.contains(&now.format("%Y-%m-%d").to_string()),
        "{}",
        last.target
    );
}

#[tokio::test]
async fn redirects_are_refused_and_credentials_never_follow_them() {
    let elsewhere = Hostile::start(|_| Reply::json(200, &token_json("stolen", "3600"))).await;
    let target = format!("{}/steal", elsewhere.url);
    // The token host redirects.
    let t = target.clone();
    let tok = Hostile::start(move |_| Reply::new(307, &[("Location", &t)], b"")).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "RedirToken", &tok.url, "", "\"connections\"");
    let out = run(&cfg, true, CancellationToken::new()).await.unwrap();
    let e = only(&out).error.clone().unwrap_or_default();
    assert!(e.contains("redirect") && e.contains("/steal"), "{e}");
    // The Monitor API redirects.
    let t = target.clone();
    let mon = server(move |_| Reply::new(302, &[("Location", &t)], b"")).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "RedirMon", &mon.url, "", "\"connections\"");
    let out = run(&cfg, true, CancellationToken::new()).await.unwrap();
    let e = entity_error(only(&out));
    assert!(
        e.contains("redirect") && e.contains("/steal") && e.contains("tenant RedirMon"),
        "{e}"
    );
    assert_eq!(
        elsewhere.count(),
        0,
        "a request followed the redirect: {:?}",
        elsewhere.all()
    );
}

#[tokio::test]
async fn the_output_server_redirecting_is_an_error_not_followed() {
    let elsewhere = Hostile::start(|_| Reply::new(204, &[], b"")).await;
    let t = format!("{}/write", elsewhere.url);
    let out_srv = Hostile::start(move |_| Reply::new(307, &[("Location", &t)], b"")).await;
    let sink = citrix_harvester::sink::Sink::new(citrix_harvester::sink::SinkConfig::new(
        citrix_harvester::sink::SinkKind::InfluxV1 {
            url: out_srv.url.clone(),
            database: "d".into(),
            retention_policy: None,
            username: None,
            password: None,
        },
    ))
    .unwrap();
    let p = citrix_harvester::lineproto::Point::new("m", 1).field("v", 1i64);
    let e = sink.write(&[p]).await.unwrap_err().to_string();
    assert!(e.contains("redirect") && e.contains("/write"), "{e}");
    assert_eq!(elsewhere.count(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn server_text_that_echoes_the_secret_or_the_token_is_redacted() {
    let (logs, _guard) = common::capture_logs();
    // The token host quotes the form back in its error description.
    let tok = Hostile::start(|r| {
        let form = String::from_utf8_lossy(&r.body).to_string();
        Reply::json(
            400,
            &format!(r#"{{"error":"invalid_client","error_description":"bad request: {form}"}}"#),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "EchoToken", &tok.url, "", "\"connections\"");
    let out = run(&cfg, true, CancellationToken::new()).await.unwrap();
    let e = only(&out).error.clone().unwrap_or_default();
    assert!(
        e.contains("invalid_client") && e.contains("client_secret=***"),
        "{e}"
    );
    // A gateway's 502 page echoes the request headers, Authorization among them.
    let mon = server(|r| {
        let auth = r.header("Authorization").unwrap_or_default().to_string();
        Reply::new(
            502,
            &[("Content-Type", "text/html")],
            format!("<pre>Authorization: {auth}</pre>").as_bytes(),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "EchoAuth", &mon.url, "", "\"connections\"");
    let out = run(&cfg, true, CancellationToken::new()).await.unwrap();
    let e = entity_error(only(&out));
    assert!(e.contains("HTTP 502") && e.contains("bearer=***"), "{e}");
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    let form: String = url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
    for leaked in [SECRET, form.as_str(), "tok-live-123"] {
        assert!(!text.contains(leaked), "`{leaked}` in the log:\n{text}");
        assert!(!e.contains(leaked));
    }
}

#[tokio::test]
async fn a_next_link_back_to_the_start_with_one_parameter_changed_stops_the_walk() {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    let srv = server(move |r| {
        let k = c.fetch_add(1, Ordering::SeqCst);
        let host = r.header("Host").unwrap_or_default().to_string();
        let rows: Vec<String> = (1..=3)
            .map(|id| connection(id, "2026-11-30T08:00:00Z"))
            .collect();
        let next = format!("http://{host}/m/Connections?$skiptoken={k}");
        Reply::json(200, &page(&rows, Some(&next)))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "Loop", &srv.url, "", "\"connections\"");
    let out = run(&cfg, true, CancellationToken::new()).await.unwrap();
    let e = entity_error(only(&out));
    assert!(
        e.contains("only rows this walk had read already") && e.contains("tenant Loop"),
        "{e}"
    );
    let gets = srv.all().iter().filter(|r| r.method == "GET").count();
    assert_eq!(gets, 2, "stops at the first page of repeats");
}

#[tokio::test]
async fn shutdown_cuts_a_long_retry_after_short() {
    let srv = server(|_| Reply::new(429, &[("Retry-After", "120")], b"")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "Throttled", &srv.url, "", "\"connections\"");
    cfg.citrix.max_retries = 5;
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        s.cancel();
    });
    // Generous bound: the backoff alone is two minutes.
    let out = tokio::time::timeout(Duration::from_secs(30), run(&cfg, true, stop))
        .await
        .expect("the backoff ignored shutdown")
        .unwrap();
    let e = &only(&out).entities[0];
    assert!(e.interrupted && e.watermark.is_none(), "{e:?}");
}

#[tokio::test]
async fn a_second_process_on_one_state_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "Locked",
        "http://127.0.0.1:9",
        "",
        "\"connections\"",
    );
    let _held = citrix_harvester::statelock::StateLock::acquire(&cfg.harvester.state_dir).unwrap();
    let e = run_report(&cfg, true, CancellationToken::new(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("in use by another citrix-harvester process"),
        "{e}"
    );
}

/// The spool of a daemon whose output is away becomes unwritable (a full disk, here a file
/// where the spool directory was): `/readyz` says so, with 503.
#[tokio::test]
async fn readyz_is_503_while_the_spool_cannot_be_written() {
    let rows = [connection(1, "2026-11-30T08:00:00Z")];
    let body = page(&rows, None);
    // The first page arrives after a second, long enough to break the disk before it.
    let srv = server(move |_| {
        let mut r = Reply::json(200, &body);
        let all = r.pieces.remove(0);
        let split = all.len() - 2;
        r.pieces = vec![all[..split].to_vec(), all[split..].to_vec()];
        r.pause = Duration::from_millis(1500);
        r
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "FullDisk", &srv.url, "", "\"connections\"");
    cfg.output = citrix_harvester::sink::SinkConfig {
        kind: citrix_harvester::sink::SinkKind::InfluxV1 {
            url: "http://127.0.0.1:9".into(),
            database: "d".into(),
            retention_policy: None,
            username: None,
            password: None,
        },
        retry_max_elapsed: Duration::from_millis(200),
        ..cfg.output
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    cfg.harvester.listen = Some(port);
    let stop = CancellationToken::new();
    let daemon = tokio::spawn({
        let (cfg, stop) = (cfg.clone(), stop.clone());
        async move { run(&cfg, false, stop).await }
    });
    let spool = cfg.harvester.state_dir.join("spool");
    for _ in 0..50 {
        if spool.is_dir() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_dir_all(&spool).unwrap();
    std::fs::write(&spool, b"not a directory").unwrap();
    let mut last = (0, String::new());
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(r) = reqwest::get(format!("http://{port}/readyz")).await else {
            continue;
        };
        last = (r.status().as_u16(), r.text().await.unwrap_or_default());
        if last.0 == 503 {
            break;
        }
    }
    assert_eq!(last.0, 503, "{}", last.1);
    assert!(last.1.contains("spool cannot be written"), "{}", last.1);
    stop.cancel();
    daemon.await.unwrap().unwrap();
}

/// `--once` fails when acknowledged points were lost from the spool, even though every tenant's
/// own cycle went well.
#[tokio::test]
async fn a_run_that_lost_spooled_points_is_not_ok() {
    let Some(influx) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("lost_spool");
    common::influx1_create_db(&influx, &db).await;
    let srv = server(|_| Reply::json(200, &page(&[], None))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "LostSpool", &srv.url, "", "\"connections\"");
    cfg.output.kind = citrix_harvester::sink::SinkKind::InfluxV1 {
        url: influx.clone(),
        database: db,
        retention_policy: None,
        username: None,
        password: None,
    };
    // A segment of one valid record (the spool's format: magic, length, line count, CRC-32,
    // lines) whose acknowledged length says 100 bytes more than the file holds.
    let payload = b"lost_spool v=1i 1700000000000000000\n";
    let (len, lines) = (payload.len() as u32, 1u32);
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&lines.to_le_bytes());
    h.update(payload);
    let mut seg = b"CHS1".to_vec();
    for v in [len, lines, h.finalize()] {
        seg.extend_from_slice(&v.to_le_bytes());
    }
    seg.extend_from_slice(payload);
    let acked = seg.len() as u64 + 100;
    let spool = cfg.harvester.state_dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(spool.join("00000000000000000001.seg"), &seg).unwrap();
    let mut ack = acked.to_le_bytes().to_vec();
    ack.extend_from_slice(&crc32fast::hash(&acked.to_le_bytes()).to_le_bytes());
    std::fs::write(spool.join("00000000000000000001.ack"), ack).unwrap();
    let report = run_report(&cfg, true, CancellationToken::new(), None)
        .await
        .unwrap();
    assert!(
        report.summaries.iter().all(|s| s.ok()),
        "{:?}",
        report.summaries
    );
    assert_eq!(report.sink.spool_corrupt_bytes, 100);
    // The record, and the citrix_harvester point that queued behind it.
    assert!(report.sink.replayed_points >= 1, "{:?}", report.sink);
    assert!(!report.ok());
}
