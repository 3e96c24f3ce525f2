//! The logs as journald or Loki receive them: `--log-format json` at `RUST_LOG=trace` during a
//! harvest with a failing tenant. Every line is one JSON object, every line of ours about a
//! tenant carries `tenant` (and `entity` when it is about one entity), and no secret appears in
//! any line of any crate — not raw, not form-encoded as in the token request, not base64 as in
//! HTTP basic auth, and no access token either.

mod common;

use std::process::Command;

use citrix_harvester::scheduler::minute_now;
use citrix_harvester::sim::SimOptions;
use serde_json::Value;

/// Standard base64 with padding (RFC 4648), as HTTP basic auth uses it.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The forms a secret takes on the wire.
fn disguises(secret: &str, user: Option<&str>) -> Vec<String> {
    let mut v = vec![
        secret.to_string(),
        url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
        base64(secret.as_bytes()),
    ];
    if let Some(u) = user {
        v.push(base64(format!("{u}:{secret}").as_bytes()));
    }
    v
}

#[test]
fn base64_known_values() {
    assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    assert_eq!(base64(b"a"), "YQ==");
    assert_eq!(base64(b"ab"), "YWI=");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_at_trace_carry_tenant_fields_and_never_a_secret() {
    let sim = common::sim::start(SimOptions {
        tenants: 2,
        seed: 31,
        now: minute_now(),
        history: chrono::Duration::hours(3),
        ..SimOptions::default()
    })
    .await;
    let tenants = sim.tenants();
    // The good tenant is throttled once and gets one truncated page, so that lines about one
    // entity (a retry, a failed entity) are logged too.
    sim.set_faults(
        &tenants[0].customer_id,
        citrix_harvester::sim::Faults {
            throttle_429: 1,
            retry_after_secs: Some(0),
            malformed_json: 1,
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let wrong = "wr0ng secret+/&=ü";
    let password = "influx pa+ss/word=";
    // Basic auth goes to the real InfluxDB 1.6 when it runs (auth is off there, so any
    // password is accepted); otherwise the file output.
    let output = match common::influx1_url() {
        Some(url) => {
            let db = common::unique_name("logs");
            common::influx1_create_db(&url, &db).await;
            format!(
                "kind = \"influxdb_v1\"\nurl = \"{url}\"\ndatabase = \"{db}\"\n\
                 username = \"harvester\"\npassword_env = \"INFLUX_PASSWORD\""
            )
        }
        None => format!(
            "kind = \"file\"\npath = \"{}\"",
            dir.path().join("out.lp").display()
        ),
    };
    let mut text = format!(
        "[harvester]\nstate_dir = \"{}\"\nlookback = \"1h\"\njitter = \"0s\"\n[output]\n{output}\n",
        dir.path().join("state").display()
    );
    for (i, (name, t)) in ["Good", "Failing"].iter().zip(&tenants).enumerate() {
        text.push_str(&format!(
            "[[tenant]]\nname = \"{name}\"\ncustomer_id = \"{}\"\nclient_id = \"{}\"\n\
             client_secret_env = \"SECRET_{i}\"\n\
             token_url = \"{r}/cctrustoauth2/{{customer_id}}/tokens/clients\"\n\
             fallback_token_url = \"{f}/cctrustoauth2/{{customer_id}}/tokens/clients\"\n\
             monitor_url = \"{r}/monitorodata\"\nentities = [\"machines\", \"connections\"]\n",
            t.customer_id,
            t.client_id,
            r = sim.regional_url(),
            f = sim.fallback_url(),
        ));
    }
    let cfg = dir.path().join("h.toml");
    std::fs::write(&cfg, text).unwrap();
    let good_secret = tenants[0].client_secret.clone();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_citrix-harvester"));
    cmd.arg("--config")
        .arg(&cfg)
        .args(["--once", "--log-format", "json"])
        .env("RUST_LOG", "trace")
        .env("SECRET_0", &good_secret)
        .env("SECRET_1", wrong)
        .env("INFLUX_PASSWORD", password);
    let res = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr).to_string();
    // The failing tenant makes the run fail, after logging why.
    assert_eq!(
        res.status.code(),
        Some(1),
        "{}",
        &stderr[stderr.len().saturating_sub(3000)..]
    );

    let mut forbidden: Vec<(String, String)> = Vec::new();
    for (what, s, user) in [
        ("the good tenant's secret", good_secret.as_str(), None),
        ("the wrong secret", wrong, None),
        ("the InfluxDB password", password, Some("harvester")),
    ] {
        forbidden.extend(
            disguises(s, user)
                .into_iter()
                .map(|d| (what.to_string(), d)),
        );
    }
    // Access tokens issued by the simulator start with this.
    forbidden.push(("an access token".into(), "sim1.".into()));

    let mut ours = 0;
    let mut about_tenant = 0;
    // The summary table follows the log lines on stderr; only log lines are JSON.
    let log_lines: Vec<&str> = stderr.lines().take_while(|l| l.starts_with('{')).collect();
    assert!(log_lines.len() > 50, "too few log lines: {stderr}");
    for line in stderr.lines() {
        for (what, d) in &forbidden {
            assert!(
                !line.contains(d.as_str()),
                "{what} appears in the log as `{d}`:\n{line}"
            );
        }
    }
    for line in &log_lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}):\n{line}"));
        assert!(
            v.is_object() && v.get("level").is_some() && v.get("target").is_some(),
            "{line}"
        );
        let target = v["target"].as_str().unwrap_or_default();
        if !target.starts_with("citrix_harvester") {
            continue;
        }
        ours += 1;
        // A line of ours about a tenant: some field names it or its customer id, or a
        // Monitor/token URL of it.
        let mentions = tenants.iter().zip(["Good", "Failing"]).any(|(t, name)| {
            v.as_object().unwrap().iter().any(|(k, val)| {
                k != "tenant"
                    && val
                        .as_str()
                        .is_some_and(|s| s == name || s.contains(&t.customer_id))
            })
        });
        if mentions || v.get("tenant").is_some() {
            about_tenant += 1;
            assert!(
                v.get("tenant").is_some(),
                "a line about a tenant without `tenant`:\n{line}"
            );
        }
        let url = v.get("url").and_then(Value::as_str).unwrap_or_default();
        if url.contains("/monitorodata/") {
            assert!(
                v.get("entity").is_some(),
                "a line about one entity without `entity`:\n{line}"
            );
        }
    }
    assert!(
        ours > 5 && about_tenant > 3,
        "{ours} of our lines, {about_tenant} about a tenant"
    );
    // Lines about one entity of the good tenant: the retry after 429 and the failed entity.
    let entity_lines = log_lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["tenant"] == "Good" && v.get("entity").is_some())
        .count();
    assert!(
        entity_lines >= 2,
        "{entity_lines} lines with tenant and entity"
    );
    // The failure was logged with its tenant.
    assert!(
        log_lines.iter().any(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["tenant"] == "Failing" && v["level"] == "ERROR"
        }),
        "no ERROR line for the failing tenant"
    );
}
