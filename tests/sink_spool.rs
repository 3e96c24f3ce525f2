//! The spool and the dead-letter file against the real servers: writes while the server is
//! away are acknowledged from the spool and replayed, exactly, once it answers again (InfluxDB
//! 1.6 and VictoriaMetrics); a new Sink replays what an old one left, torn tail included; a full
//! spool refuses with exact counts; a line InfluxDB 1.6 refuses lands in the dead-letter file
//! with its reason, and that file replays with curl-style POSTs. "The server is away" is a tiny
//! TCP proxy in front of the real server that the test switches off (it then accepts and
//! closes every connection) and on again.

mod common;

use common::proxy::Proxy;

use std::path::Path;
use std::time::Duration;

use citrix_harvester::lineproto::Point;
use citrix_harvester::sink::{Sink, SinkConfig, SinkError, SinkKind, SinkStats, WriteReport};
use tokio_util::sync::CancellationToken;

const T0: i64 = 1_700_000_000_123_456_789;

fn v1_cfg(url: &str, db: &str, state_dir: &Path) -> SinkConfig {
    let mut cfg = SinkConfig::new(SinkKind::InfluxV1 {
        url: url.to_owned(),
        database: db.to_owned(),
        retention_policy: None,
        username: None,
        password: None,
    });
    cfg.batch_size = 7;
    cfg.retry_max_elapsed = Duration::from_millis(300);
    cfg.state_dir = Some(state_dir.to_path_buf());
    cfg
}

fn points(measurement: &str, from: i64, n: i64) -> Vec<Point> {
    (from..from + n)
        .map(|i| {
            Point::new(measurement.to_owned(), T0 + i)
                .tag("machine", format!("vm{i}"))
                .field("v", i)
        })
        .collect()
}

async fn influx_count(url: &str, db: &str, measurement: &str) -> i64 {
    let ans =
        common::influx1_query(url, db, &format!("SELECT count(v) FROM \"{measurement}\"")).await;
    common::influx1_rows(&ans)
        .first()
        .and_then(|r| r[1].as_i64())
        .unwrap_or(0)
}

/// Polls until `done(stats)` holds; panics with the last stats after a generous wait.
async fn wait_stats(sink: &Sink, what: &str, done: impl Fn(&SinkStats) -> bool) -> SinkStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = sink.stats();
        if done(&s) {
            return s;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not reached within 30 s: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The segment files (`.seg`) in `dir`, sorted; their `.ack` companions are left out.
fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".seg"))
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Every file left in `dir`, segments and acknowledgement records alike.
fn anything_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Acknowledged data that a disk or an operator damaged afterwards is lost, and said so: one
/// bit flipped in the *last* record of a segment, a segment cut short, a segment deleted — each
/// below the acknowledged length, so none of them may pass for a torn (never acknowledged)
/// write. The replay delivers every intact record and counts the lost bytes.
#[tokio::test]
async fn acknowledged_spool_data_cut_or_flipped_later_is_counted_as_lost() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("spool_damage");
    common::influx1_create_db(&url, &db).await;
    let proxy = Proxy::start(&url, false).await;
    let state = tempfile::tempdir().unwrap();
    // Three "processes", one segment each.
    for k in 0..3 {
        let old = Sink::new(v1_cfg(&proxy.url, &db, state.path())).unwrap();
        for r in 0..2 {
            let from = k * 100 + r * 10;
            assert_eq!(
                old.write(&points("damage", from, 10))
                    .await
                    .unwrap()
                    .spooled,
                10
            );
        }
    }
    let spool_dir = state.path().join("spool");
    let segs = files_in(&spool_dir);
    assert_eq!(segs.len(), 3, "{segs:?}");
    let seg = |i: usize| spool_dir.join(&segs[i]);
    // A bit flipped near the end of the last record of the first segment.
    let mut b = std::fs::read(seg(0)).unwrap();
    let n = b.len();
    b[n - 5] ^= 0x01;
    std::fs::write(seg(0), &b).unwrap();
    // The second segment cut inside its last record.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(seg(1))
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - 10).unwrap();
    // The third segment gone altogether.
    let third = std::fs::metadata(seg(2)).unwrap().len();
    std::fs::remove_file(seg(2)).unwrap();

    proxy.set_up(true);
    let new = Sink::new(v1_cfg(&proxy.url, &db, state.path())).unwrap();
    assert_eq!(
        new.stats().spool_corrupt_bytes,
        third,
        "the missing segment"
    );
    let cancel = CancellationToken::new();
    let replay = new.start_replay(cancel.clone()).unwrap();
    let s = wait_stats(&new, "damaged spool drained", |s| s.spool_segments == 0).await;
    // batch_size 7: each write of 10 is two records (7 + 3), so a segment holds 7, 3, 7, 3 and
    // each damaged one loses exactly its last record of 3.
    assert_eq!(s.replayed_points, 34, "every intact record");
    assert_eq!(influx_count(&url, &db, "damage").await, 34);
    // Each damaged record counts whole: header (16 bytes) plus its lines.
    assert!(s.spool_corrupt_bytes > third + 2 * 16, "{s:?}");
    assert_eq!(anything_in(&spool_dir), Vec::<String>::new());
    cancel.cancel();
    replay.await.unwrap();
}

/// (a) with InfluxDB 1.6: away → Ok from the spool → back → replayed exactly → spool empty →
/// writes go straight to the server again.
#[tokio::test]
async fn v1_spools_while_away_and_replays_exactly() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("spool_v1");
    common::influx1_create_db(&url, &db).await;
    let proxy = Proxy::start(&url, false).await;
    let state = tempfile::tempdir().unwrap();
    let sink = Sink::new(v1_cfg(&proxy.url, &db, state.path())).unwrap();
    let cancel = CancellationToken::new();
    let replay = sink
        .start_replay(cancel.clone())
        .expect("a spool is configured");
    assert!(sink.start_replay(cancel.clone()).is_none(), "started once");

    let r = sink.write(&points("spooled", 0, 50)).await.unwrap();
    assert_eq!(
        r,
        WriteReport {
            written: 0,
            rejected: 0,
            dropped: 0,
            spooled: 50
        }
    );
    // Behind the spool: no server attempt, so no retry budget spent.
    let t = std::time::Instant::now();
    let r = sink.write(&points("spooled", 50, 30)).await.unwrap();
    assert_eq!((r.written, r.spooled), (0, 30));
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    let s = sink.stats();
    assert_eq!(s.spooled_points, 80);
    assert!(s.spool_bytes > 80 * 20 && s.spool_segments >= 1, "{s:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        influx_count(&url, &db, "spooled").await,
        0,
        "nothing got through"
    );

    proxy.set_up(true);
    let s = wait_stats(&sink, "spool drained", |s| {
        s.spool_segments == 0 && s.replayed_points == 80
    })
    .await;
    assert_eq!(s.spool_bytes, 0);
    assert_eq!(influx_count(&url, &db, "spooled").await, 80);
    assert_eq!(files_in(&state.path().join("spool")), Vec::<String>::new());

    // Straight to the server again.
    let r = sink.write(&points("spooled", 80, 5)).await.unwrap();
    assert_eq!((r.written, r.spooled), (5, 0));
    assert_eq!(influx_count(&url, &db, "spooled").await, 85);
    assert_eq!(sink.stats().spooled_points, 80);

    cancel.cancel();
    replay.await.unwrap();
}

/// (a) with VictoriaMetrics (the v2 API), the server going away mid-run.
#[tokio::test]
async fn v2_spools_while_away_and_replays_to_victoriametrics() {
    let Some(url) = common::vm_url() else {
        return;
    };
    let m = common::unique_name("spoolv2");
    let proxy = Proxy::start(&url, true).await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = SinkConfig::new(SinkKind::InfluxV2 {
        url: proxy.url.clone(),
        org: "o".into(),
        bucket: "b".into(),
        token: None,
    });
    cfg.batch_size = 9;
    cfg.retry_max_elapsed = Duration::from_millis(300);
    cfg.state_dir = Some(state.path().to_path_buf());
    let sink = Sink::new(cfg).unwrap();
    let cancel = CancellationToken::new();
    let replay = sink.start_replay(cancel.clone()).unwrap();
    let pts: Vec<Point> = (0..60)
        .map(|i| {
            Point::new(m.clone(), T0 + i * 1_000_000)
                .tag("machine", format!("vm{i}"))
                .field("load", i)
        })
        .collect();
    let r = sink.write(&pts[..20]).await.unwrap();
    assert_eq!((r.written, r.spooled), (20, 0));
    proxy.set_up(false);
    let r = sink.write(&pts[20..]).await.unwrap();
    assert_eq!((r.written, r.spooled), (0, 40));
    proxy.set_up(true);
    wait_stats(&sink, "spool drained", |s| {
        s.spool_segments == 0 && s.replayed_points == 40
    })
    .await;
    let series = common::vm_wait_for_series(
        &url,
        &format!("{{__name__=\"{m}_load\"}}"),
        60,
        Duration::from_secs(20),
    )
    .await;
    let mut values: Vec<i64> = series
        .iter()
        .map(|s| s["values"][0].as_f64().unwrap() as i64)
        .collect();
    values.sort();
    assert_eq!(values, (0..60).collect::<Vec<_>>());
    assert_eq!(files_in(&state.path().join("spool")), Vec::<String>::new());
    cancel.cancel();
    replay.await.unwrap();
}

/// (b) a spool written by one Sink (whose last append was torn by a "crash") is replayed by a
/// new Sink on the same state directory.
#[tokio::test]
async fn a_new_sink_replays_what_an_old_one_spooled() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("spool_restart");
    common::influx1_create_db(&url, &db).await;
    let proxy = Proxy::start(&url, false).await;
    let state = tempfile::tempdir().unwrap();
    {
        let old = Sink::new(v1_cfg(&proxy.url, &db, state.path())).unwrap();
        let r = old.write(&points("restart", 0, 40)).await.unwrap();
        assert_eq!(r.spooled, 40);
    }
    let spool_dir = state.path().join("spool");
    let segs = files_in(&spool_dir);
    assert_eq!(segs.len(), 1, "{segs:?}");
    // kill -9 in the middle of an append: half a record at the end
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(spool_dir.join(&segs[0]))
            .unwrap();
        f.write_all(b"CHS1\x40\x00\x00\x00\x02\x00\x00\x00garbage")
            .unwrap();
    }
    proxy.set_up(true);
    let new = Sink::new(v1_cfg(&proxy.url, &db, state.path())).unwrap();
    let s = new.stats();
    assert_eq!(s.spool_segments, 1);
    assert!(s.spool_bytes > 0);
    // New data queues behind the old spool until the replay task has drained it.
    let r = new.write(&points("restart", 40, 3)).await.unwrap();
    assert_eq!(r.spooled, 3);
    let cancel = CancellationToken::new();
    let replay = new.start_replay(cancel.clone()).unwrap();
    let s = wait_stats(&new, "old spool drained", |s| {
        s.spool_segments == 0 && s.replayed_points == 43
    })
    .await;
    assert_eq!(s.spool_corrupt_bytes, 0, "a torn tail is not corruption");
    assert_eq!(influx_count(&url, &db, "restart").await, 43);
    assert_eq!(anything_in(&spool_dir), Vec::<String>::new());
    cancel.cancel();
    replay.await.unwrap();
}

/// (c) buffer_limit reached: SpoolFull with exact counts, and exactly what was stored arrives.
#[tokio::test]
async fn a_full_spool_refuses_with_exact_counts() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("spool_full");
    common::influx1_create_db(&url, &db).await;
    let proxy = Proxy::start(&url, false).await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = v1_cfg(&proxy.url, &db, state.path());
    cfg.batch_size = 10;
    // "full v=1i <19 digits>\n" is 30 bytes; a record of 10 lines is 16 + 300 bytes.
    cfg.buffer_limit = 3 * 316 + 100;
    let sink = Sink::new(cfg).unwrap();
    let pts: Vec<Point> = (0..50)
        .map(|i| Point::new("full", T0 + i).field("v", 1i64))
        .collect();
    let e = sink.write(&pts).await.unwrap_err();
    let SinkError::SpoolFull {
        not_stored, report, ..
    } = &e
    else {
        panic!("expected SpoolFull, got {e}");
    };
    assert_eq!(*not_stored, 20, "{e}");
    assert_eq!(
        *report,
        WriteReport {
            written: 0,
            rejected: 0,
            dropped: 0,
            spooled: 30
        }
    );
    assert_eq!(e.report(), Some(*report));
    assert!(e.to_string().contains("buffer_limit"), "{e}");
    // 100 bytes left: a batch of 5 (166 bytes) does not fit
    let e = sink.write(&pts[..5]).await.unwrap_err();
    assert!(
        matches!(
            e,
            SinkError::SpoolFull {
                not_stored: 5,
                report: WriteReport { spooled: 0, .. },
                ..
            }
        ),
        "{e}"
    );
    let s = sink.stats();
    assert_eq!((s.spooled_points, s.spool_full_points), (30, 25));
    assert_eq!(s.spool_bytes, 3 * 316);

    proxy.set_up(true);
    let cancel = CancellationToken::new();
    let replay = sink.start_replay(cancel.clone()).unwrap();
    wait_stats(&sink, "spool drained", |s| s.spool_segments == 0).await;
    assert_eq!(sink.stats().replayed_points, 30);
    assert_eq!(influx_count(&url, &db, "full").await, 30);
    // room again
    assert_eq!(sink.write(&pts).await.unwrap().written, 50);
    cancel.cancel();
    replay.await.unwrap();
}

/// (d) a line InfluxDB 1.6 refuses is isolated by bisection and written to the dead-letter file
/// with the server's reason; the file (after fixing the line) replays as it is.
#[tokio::test]
async fn a_refused_line_lands_in_the_dead_letter_file() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("deadletter");
    common::influx1_create_db(&url, &db).await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = v1_cfg(&url, &db, state.path());
    cfg.batch_size = 50;
    let sink = Sink::new(cfg).unwrap();
    let mut pts: Vec<Point> = (0..100)
        .map(|i| Point::new("dl", T0 + i).field("v", i))
        .collect();
    pts[37].timestamp_ns = i64::MIN;
    let r = sink.write(&pts).await.unwrap();
    assert_eq!((r.written, r.rejected, r.spooled), (99, 1, 0));
    assert_eq!(sink.stats().dead_letters, 1);
    let dir = state.path().join("deadletter");
    let files = anything_in(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".lp"), "{files:?}");
    let text = std::fs::read_to_string(dir.join(&files[0])).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("# "), "{text}");
    assert!(
        lines[0].contains("time outside range"),
        "server's reason: {text}"
    );
    assert_eq!(lines[1], format!("dl v=37i {}", i64::MIN));
    assert!(files_in(&state.path().join("spool")).is_empty());

    // An operator fixes the line and posts the file as it is: the comment is skipped.
    let fixed = text.replace(&i64::MIN.to_string(), &(T0 + 37).to_string());
    let resp = reqwest::Client::new()
        .post(format!("{url}/write?db={db}"))
        .body(fixed.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        204,
        "{}",
        resp.text().await.unwrap()
    );
    assert_eq!(influx_count(&url, &db, "dl").await, 100, "{fixed}");

    // VictoriaMetrics skips the comment too.
    if let Some(vm) = common::vm_url() {
        let m = common::unique_name("deadletter");
        let resp = reqwest::Client::new()
            .post(format!("{vm}/write"))
            .body(fixed.replace("dl v=", &format!("{m} v=")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 204);
        let got = common::vm_wait_for_series(
            &vm,
            &format!("{{__name__=\"{m}_v\"}}"),
            1,
            Duration::from_secs(15),
        )
        .await;
        assert_eq!(got[0]["values"][0].as_f64(), Some(37.0), "{got:?}");
    }
}

/// An encoder rejection is dead-lettered as a comment (there is no line to replay).
#[tokio::test]
async fn an_encoder_rejection_is_dead_lettered_as_a_comment() {
    let state = tempfile::tempdir().unwrap();
    let mut cfg = SinkConfig::new(SinkKind::File {
        path: state.path().join("out.lp"),
    });
    cfg.state_dir = Some(state.path().to_path_buf());
    let sink = Sink::new(cfg).unwrap();
    let r = sink
        .write(&[
            Point::new("ok", 1).field("v", 1i64),
            Point::new("_bad", 2).field("v", 2i64),
        ])
        .await
        .unwrap();
    assert_eq!((r.written, r.rejected), (1, 1));
    let dir = state.path().join("deadletter");
    let text = std::fs::read_to_string(dir.join(&anything_in(&dir)[0])).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("refused by the encoder"), "{text}");
    assert!(
        lines[1].starts_with("# point: Point {") && lines[1].contains("_bad"),
        "{text}"
    );
}

/// Not a check, a measurement (run with `--ignored --nocapture`, preferably `--release`):
/// spool append throughput while the server is away, then replay rate into InfluxDB 1.6.
#[tokio::test]
#[ignore]
async fn measure_spool_and_replay_rates() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("spool_rate");
    common::influx1_create_db(&url, &db).await;
    let proxy = Proxy::start(&url, false).await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = v1_cfg(&proxy.url, &db, state.path());
    cfg.batch_size = 5000;
    let sink = Sink::new(cfg).unwrap();
    sink.write(&points("rate", 0, 1)).await.unwrap(); // turns spooling on
    let pages: Vec<Vec<Point>> = (0..40)
        .map(|p| {
            (0..5000)
                .map(|i| {
                    let n = 1 + p * 5000 + i;
                    Point::new("rate", T0 + n)
                        .tag("customer", "Acme")
                        .tag("machine", format!("vm{}", n % 500))
                        .field("v", n)
                        .field("state", "Registered")
                })
                .collect()
        })
        .collect();
    let before = sink.stats().spool_bytes;
    let t = std::time::Instant::now();
    for p in &pages {
        assert_eq!(sink.write(p).await.unwrap().spooled, 5000);
    }
    let took = t.elapsed();
    let bytes = sink.stats().spool_bytes - before;
    eprintln!(
        "spool: 200000 points, {bytes} bytes in {took:?} = {:.1} MB/s, {:.0} points/s (one fsync per 5000-point write)",
        bytes as f64 / 1e6 / took.as_secs_f64(),
        200_000.0 / took.as_secs_f64()
    );
    proxy.set_up(true);
    let cancel = CancellationToken::new();
    let t = std::time::Instant::now();
    let replay = sink.start_replay(cancel.clone()).unwrap();
    wait_stats(&sink, "drained", |s| s.spool_segments == 0).await;
    let took = t.elapsed();
    eprintln!(
        "replay: 200001 points into InfluxDB 1.6 in {took:?} = {:.0} points/s",
        200_001.0 / took.as_secs_f64()
    );
    assert_eq!(influx_count(&url, &db, "rate").await, 200_001);
    cancel.cancel();
    replay.await.unwrap();
}
