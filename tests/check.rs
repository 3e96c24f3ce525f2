//! `citrix-harvester check` as an operator runs it: against the simulator (good and bad
//! tenants, a regional token host that is down) and against the real sinks (VictoriaMetrics
//! and InfluxDB 1.6 from tests/run-with-servers.sh), reading the printed table and exit code.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use citrix_harvester::sim::{Faults, SimHandle, TokenFault};

use common::sim::start_now as start_sim;

/// One `[[tenant]]` of the simulator; names have no spaces so table columns split cleanly.
fn tenant_block(sim: &SimHandle, i: usize, name: &str, fallback: bool) -> String {
    let t = &sim.tenants()[i];
    let fallback_url = if fallback {
        format!(
            "{}/cctrustoauth2/{{customer_id}}/tokens/clients",
            sim.fallback_url()
        )
    } else {
        String::new()
    };
    format!(
        "[[tenant]]\nname = \"{name}\"\ncustomer_id = \"{}\"\nclient_id = \"{}\"\n\
         client_secret_env = \"SECRET_{i}\"\n\
         token_url = \"{}/cctrustoauth2/{{customer_id}}/tokens/clients\"\n\
         fallback_token_url = \"{fallback_url}\"\nmonitor_url = \"{}\"\n",
        t.customer_id,
        t.client_id,
        sim.regional_url(),
        sim.monitor_base_url()
    )
}

fn write_config(dir: &Path, output: &str, tenants: &str) -> PathBuf {
    let text = format!(
        "[harvester]\nstate_dir = \"{}\"\n[output]\n{output}\n{tenants}",
        dir.join("state").display()
    );
    let path = dir.join("h.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn file_output(dir: &Path) -> String {
    format!(
        "kind = \"file\"\npath = \"{}\"",
        dir.join("out.lp").display()
    )
}

/// Runs `check` with the simulator's secrets in the environment (overrides after them).
async fn run_check(
    sim: &SimHandle,
    config: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Output, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_citrix-harvester"));
    c.env_remove("RUST_LOG")
        .arg("check")
        .arg("--config")
        .arg(config);
    c.args(args);
    for (i, t) in sim.tenants().iter().enumerate() {
        c.env(format!("SECRET_{i}"), &t.client_secret);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (out, stdout)
}

/// A row of the table: check, subject, status, detail; the hint line under it if any.
#[derive(Debug)]
struct Row {
    check: String,
    subject: String,
    status: String,
    detail: String,
    hint: Option<String>,
}

fn parse_table(table: &str) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    for line in table.lines().skip(1) {
        if let Some(h) = line.trim_start().strip_prefix("hint: ") {
            out.last_mut().expect("a hint follows a row").hint = Some(h.to_string());
            continue;
        }
        let cols: Vec<&str> = line
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        if cols.len() < 3 {
            continue; // the closing sentence
        }
        out.push(Row {
            check: cols[0].to_string(),
            subject: cols[1].to_string(),
            status: cols[2].to_string(),
            detail: cols.get(3).unwrap_or(&"").to_string(),
            hint: None,
        });
    }
    out
}

fn find<'a>(rows: &'a [Row], check: &str, subject: &str) -> &'a Row {
    rows.iter()
        .find(|r| r.check == check && r.subject == subject)
        .unwrap_or_else(|| panic!("no {check} row for {subject}: {rows:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_fails_exactly_that_tenants_token_row_with_a_hint() {
    let sim = start_sim(2, 21).await;
    let dir = tempfile::tempdir().unwrap();
    let tenants = format!(
        "{}{}",
        tenant_block(&sim, 0, "Good", true),
        tenant_block(&sim, 1, "Bad", true)
    );
    let cfg = write_config(dir.path(), &file_output(dir.path()), &tenants);
    let wrong = "wr0ng+secret/&=";
    let (out, table) = run_check(&sim, &cfg, &[], &[("SECRET_1", wrong)]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{table}\n{stderr}");
    let rows = parse_table(&table);
    let failed: Vec<&Row> = rows.iter().filter(|r| r.status == "FAIL").collect();
    assert_eq!(failed.len(), 1, "{table}");
    let bad = find(&rows, "token", "Bad");
    assert_eq!(bad.status, "FAIL", "{table}");
    assert!(bad.detail.contains("rejected (401)"), "{table}");
    let hint = bad.hint.as_deref().unwrap_or_default();
    assert!(
        hint.contains("`tenant[1].client_secret_env`") && hint.contains("`tenant[1].client_id`"),
        "{table}"
    );
    assert_eq!(find(&rows, "odata", "Bad").status, "SKIP", "{table}");
    assert_eq!(find(&rows, "secret", "Bad").status, "OK", "{table}");
    for check in ["secret", "token", "odata"] {
        assert_eq!(find(&rows, check, "Good").status, "OK", "{table}");
    }
    assert!(
        find(&rows, "token", "Good")
            .detail
            .starts_with("regional endpoint answered"),
        "{table}"
    );
    assert_eq!(
        rows.iter().find(|r| r.check == "sink").unwrap().status,
        "OK"
    );
    let everything = format!("{table}{stderr}");
    assert!(
        !everything.contains(wrong),
        "a secret was printed:\n{everything}"
    );
    assert!(
        !everything.contains(&sim.tenants()[0].client_secret),
        "a secret was printed:\n{everything}"
    );
    // One token request per tenant and endpoint, one Monitor request for the good tenant only.
    let stats = sim.stats();
    let good = &stats.tenants[&sim.tenants()[0].customer_id];
    let bad = &stats.tenants[&sim.tenants()[1].customer_id];
    assert_eq!(good.requests, 1, "{stats:?}");
    assert_eq!(
        good.token_requests.regional, 1,
        "the token is reused: {stats:?}"
    );
    assert_eq!(good.token_requests.fallback, 0, "{stats:?}");
    assert_eq!(good.rows_served.get("Machines"), Some(&1), "{stats:?}");
    assert_eq!(bad.requests, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regional_token_host_that_is_down_shows_the_fallback_answered() {
    let sim = start_sim(1, 22).await;
    sim.set_faults(
        &sim.tenants()[0].customer_id,
        Faults {
            regional_token: Some(TokenFault::BadGateway),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &file_output(dir.path()),
        &tenant_block(&sim, 0, "Contoso", true),
    );
    let (out, table) = run_check(&sim, &cfg, &[], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{table}");
    let rows = parse_table(&table);
    let token = find(&rows, "token", "Contoso");
    assert_eq!(token.status, "OK");
    assert!(
        token.detail.starts_with("fallback endpoint answered")
            && token.detail.contains(&sim.fallback_url()),
        "{table}"
    );
    assert_eq!(find(&rows, "odata", "Contoso").status, "OK", "{table}");

    // Without a fallback the same fault fails the row, naming the settings to look at.
    let cfg = write_config(
        dir.path(),
        &file_output(dir.path()),
        &tenant_block(&sim, 0, "Contoso", false),
    );
    let (out, table) = run_check(&sim, &cfg, &[], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{table}");
    let rows = parse_table(&table);
    let token = find(&rows, "token", "Contoso");
    assert_eq!(token.status, "FAIL", "{table}");
    assert!(token.detail.contains("502"), "{table}");
    assert!(
        token
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("`tenant[0].token_url`")),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_and_a_wrong_output_port_are_named() {
    let sim = start_sim(2, 23).await;
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output =
        format!("kind = \"influxdb_v1\"\nurl = \"http://127.0.0.1:{port}\"\ndatabase = \"x\"");
    let tenants = format!(
        "{}{}",
        tenant_block(&sim, 0, "Good", false),
        tenant_block(&sim, 1, "Unset", false).replace("SECRET_1", "CH_TEST_NEVER_SET")
    );
    let cfg = write_config(dir.path(), &output, &tenants);
    let (out, table) = run_check(&sim, &cfg, &[], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{table}");
    let rows = parse_table(&table);
    let secret = find(&rows, "secret", "Unset");
    assert_eq!(secret.status, "FAIL", "{table}");
    assert!(secret.detail.contains("CH_TEST_NEVER_SET"), "{table}");
    assert_eq!(
        secret.hint.as_deref(),
        Some("fix `tenant[1].client_secret_env`"),
        "{table}"
    );
    assert_eq!(find(&rows, "token", "Unset").status, "SKIP", "{table}");
    assert_eq!(find(&rows, "odata", "Unset").status, "SKIP", "{table}");
    assert_eq!(find(&rows, "odata", "Good").status, "OK", "{table}");
    let sink = rows.iter().find(|r| r.check == "sink").unwrap();
    assert_eq!(sink.status, "FAIL", "{table}");
    assert!(sink.detail.contains(&port.to_string()), "{table}");
    assert_eq!(sink.hint.as_deref(), Some("check `output.url`"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_does_not_load_exits_2_naming_the_key() {
    let sim = start_sim(1, 24).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &file_output(dir.path()),
        &tenant_block(&sim, 0, "A", false).replace("customer_id", "customerid"),
    );
    let (out, table) = run_check(&sim, &cfg, &[], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{table}");
    let rows = parse_table(&table);
    assert_eq!(rows.len(), 1, "{table}");
    assert_eq!(rows[0].check, "config");
    assert_eq!(rows[0].status, "FAIL");
    assert!(rows[0].detail.contains("customerid"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_limits_the_tenants_checked() {
    let sim = start_sim(4, 25).await;
    let dir = tempfile::tempdir().unwrap();
    let tenants: String = (0..4)
        .map(|i| tenant_block(&sim, i, &format!("T{i}"), false))
        .collect();
    let cfg = write_config(dir.path(), &file_output(dir.path()), &tenants);
    let mut seen = Vec::new();
    for k in 0..2 {
        let shard = format!("{k}/2");
        let (out, table) = run_check(&sim, &cfg, &["--shard", &shard], &[]).await;
        assert_eq!(out.status.code(), Some(0), "{table}");
        let rows = parse_table(&table);
        let mine: Vec<String> = rows
            .iter()
            .filter(|r| r.check == "odata")
            .map(|r| r.subject.clone())
            .collect();
        for (i, t) in sim.tenants().iter().enumerate() {
            let owned = citrix_harvester::shard::Shard::new(k, 2)
                .unwrap()
                .owns(&t.customer_id);
            assert_eq!(mine.contains(&format!("T{i}")), owned, "{shard}: {table}");
        }
        assert!(
            rows.iter()
                .any(|r| r.check == "config" && r.detail.contains(&format!("shard {shard} takes"))),
            "{table}"
        );
        seen.extend(mine);
    }
    seen.sort();
    assert_eq!(seen, ["T0", "T1", "T2", "T3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_good_with_victoriametrics_passes() {
    let Some(vm) = common::vm_url() else { return };
    let sim = start_sim(2, 26).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = common::unique_name("check");
    let output = format!("kind = \"influxdb_v2\"\nurl = \"{vm}\"\nbucket = \"{bucket}\"");
    let tenants = format!(
        "{}{}",
        tenant_block(&sim, 0, "A", true),
        tenant_block(&sim, 1, "B", true)
    );
    let cfg = write_config(dir.path(), &output, &tenants);
    let (out, table) = run_check(&sim, &cfg, &[], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{table}");
    let rows = parse_table(&table);
    assert_eq!(
        rows.iter().filter(|r| r.status == "OK").count(),
        8,
        "{table}"
    );
    let sink = rows.iter().find(|r| r.check == "sink").unwrap();
    assert!(sink.subject.starts_with("influxdb v2"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_good_with_influxdb1_passes_and_writes_nothing() {
    let Some(influx) = common::influx1_url() else {
        return;
    };
    let sim = start_sim(1, 27).await;
    let dir = tempfile::tempdir().unwrap();
    let db = common::unique_name("check");
    common::influx1_create_db(&influx, &db).await;
    let output = format!("kind = \"influxdb_v1\"\nurl = \"{influx}\"\ndatabase = \"{db}\"");
    let tenants = tenant_block(&sim, 0, "A", true);
    let cfg = write_config(dir.path(), &output, &tenants);
    let (out, table) = run_check(&sim, &cfg, &[], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{table}");
    let rows = parse_table(&table);
    assert!(rows.iter().all(|r| r.status == "OK"), "{table}");
    let answer = common::influx1_query(&influx, &db, "SHOW MEASUREMENTS").await;
    assert!(
        common::influx1_rows(&answer).is_empty(),
        "check wrote something: {answer}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "check created the state directory"
    );

    // A database that does not exist: the sink row names `output.database`.
    let cfg = write_config(
        dir.path(),
        &output.replace(&db, &format!("{db}_missing")),
        &tenants,
    );
    let (out, table) = run_check(&sim, &cfg, &[], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{table}");
    let rows = parse_table(&table);
    let sink = rows.iter().find(|r| r.check == "sink").unwrap();
    assert_eq!(sink.status, "FAIL", "{table}");
    assert!(
        sink.hint
            .as_deref()
            .is_some_and(|h| h.contains("`output.database`")),
        "{table}"
    );
}

/// What a stub InfluxDB answers to every request, and what it received.
#[derive(Default)]
struct Stub {
    answer: std::sync::Mutex<(u16, String)>,
    seen: std::sync::Mutex<Vec<(String, Option<String>, usize)>>,
}

async fn start_stub() -> (std::sync::Arc<Stub>, String) {
    use axum::extract::State;
    let stub = std::sync::Arc::new(Stub::default());
    let app = axum::Router::new()
        .fallback(
            |State(s): State<std::sync::Arc<Stub>>,
             uri: axum::http::Uri,
             headers: axum::http::HeaderMap,
             body: axum::body::Bytes| async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.split(' ').next().unwrap_or_default().to_string());
                s.seen
                    .lock()
                    .unwrap()
                    .push((uri.path().to_string(), auth, body.len()));
                let (status, text) = s.answer.lock().unwrap().clone();
                (axum::http::StatusCode::from_u16(status).unwrap(), text)
            },
        )
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (stub, url)
}

/// The sink row for the answers InfluxDB gives to an empty write: 2.x as its write handler
/// does (auth, org, bucket and permission are checked before the body), 1.x as measured on
/// InfluxDB 1.6 with `auth-enabled = true` (wrong password 401, a user without WRITE 403).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_answers_map_to_statuses_and_hints() {
    use citrix_harvester::config::{Config, SecretSources};
    let (stub, url) = start_stub().await;
    let cases: &[(&str, u16, &str, &str, &str)] = &[
        (
            "v2",
            400,
            r#"{"code":"invalid","message":"writing requires points"}"#,
            "OK",
            "",
        ),
        ("v2", 204, "", "OK", ""),
        (
            "v2",
            401,
            r#"{"code":"unauthorized","message":"unauthorized access"}"#,
            "FAIL",
            "`output.token_env`",
        ),
        (
            "v2",
            403,
            r#"{"code":"forbidden","message":"insufficient permissions for write"}"#,
            "FAIL",
            "write permission on `output.bucket`",
        ),
        (
            "v2",
            404,
            r#"{"code":"not found","message":"bucket \"b\" not found"}"#,
            "FAIL",
            "`output.bucket`",
        ),
        ("v2", 404, "404 page not found", "FAIL", "`output.kind`"),
        (
            "v1",
            401,
            r#"{"error":"authorization failed"}"#,
            "FAIL",
            "`output.password_env`",
        ),
        (
            "v1",
            403,
            r#"{"error":"\"ro\" user is not authorized to write to database \"d\""}"#,
            "FAIL",
            "GRANT WRITE",
        ),
        (
            "v1",
            404,
            r#"{"error":"database not found: \"d\""}"#,
            "FAIL",
            "`output.database`",
        ),
        ("v1", 503, "", "FAIL", "`output.url`"),
    ];
    for (api, status, body, want, hint) in cases {
        *stub.answer.lock().unwrap() = (*status, body.to_string());
        let output = match *api {
            "v2" => format!(
                "kind = \"influxdb_v2\"\nurl = \"{url}\"\norg = \"o\"\nbucket = \"b\"\ntoken_env = \"T\""
            ),
            _ => format!(
                "kind = \"influxdb_v1\"\nurl = \"{url}\"\ndatabase = \"d\"\nusername = \"u\"\npassword_env = \"T\""
            ),
        };
        // The tenant's token host is the stub too, so its rows fail fast; only the sink matters.
        let text = format!(
            "[output]\n{output}\n[[tenant]]\nname = \"A\"\ncustomer_id = \"a\"\nclient_id = \"c\"\n\
             client_secret_env = \"T\"\ntoken_url = \"{url}/token\"\nfallback_token_url = \"\"\n"
        );
        let secrets = SecretSources {
            env: Box::new(|_| Some("x".into())),
            credentials_dir: None,
        };
        let checked = Config::from_toml_str_for_check(&text, &secrets).unwrap();
        let report = citrix_harvester::check::run(checked, "h.toml", None).await;
        let sink = report.rows.iter().find(|r| r.check == "sink").unwrap();
        let case = format!("{api} {status} {body}: {sink:?}");
        assert_eq!(sink.status.to_string(), *want, "{case}");
        assert!(
            sink.hint.as_deref().unwrap_or_default().contains(hint),
            "{case}"
        );
        let seen = stub.seen.lock().unwrap().clone();
        let write = seen
            .iter()
            .rev()
            .find(|(p, _, _)| p.ends_with("/write"))
            .unwrap_or_else(|| panic!("no write request: {seen:?}"));
        assert_eq!(write.2, 0, "the probe must not write anything: {case}");
        let scheme = if *api == "v2" { "Token" } else { "Basic" };
        assert_eq!(write.1.as_deref(), Some(scheme), "{case}");
    }
}
