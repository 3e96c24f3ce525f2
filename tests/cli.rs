//! The command line as an operator uses it: README's demo command, `--once` exit codes and
//! summaries against the simulator, and configuration errors that name the key.

mod common;

use std::process::Command;

use common::sim::start_now as start_sim;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_citrix-harvester"));
    c.env_remove("RUST_LOG");
    c
}

/// `demo ARGS --out OUT`: its exit status, stdout and stderr.
fn demo(args: &[&str], out: impl AsRef<std::ffi::OsStr>) -> (std::process::Output, String, String) {
    let res = bin()
        .arg("demo")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&res.stderr).into_owned();
    (res, stdout, stderr)
}

#[test]
fn demo_writes_line_protocol_and_prints_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo.lp");
    let (res, stdout, stderr) = demo(&["--tenants", "2"], &out);
    assert!(res.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("logon p95"), "{stdout}");
    assert!(
        stdout.contains(&format!("Line protocol written to {}", out.display())),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let logons = text
        .lines()
        .filter(|l| l.starts_with("citrix_logon,"))
        .count();
    let machines = text
        .lines()
        .filter(|l| l.starts_with("citrix_machine,"))
        .count();
    assert!(logons > 100, "{logons} logon lines");
    assert!(machines > 10, "{machines} machine lines");
    // The table reports exactly what was written.
    let total_in_table: usize = stdout
        .lines()
        .skip(1)
        .take(2)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // tenant names contain spaces: connections is the 4th column from the end
            cols[cols.len() - 4].parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(total_in_table, logons, "{stdout}");
}

/// `demo --onprem-site`: one simulated on-premises site beside the cloud tenants, harvested
/// through its Delivery Controller path; its logons and machines carry its name as `customer`.
#[test]
fn demo_shows_an_onprem_site_beside_the_cloud_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo.lp");
    let (res, stdout, stderr) = demo(&["--tenants", "1", "--onprem-site"], &out);
    assert!(res.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("On-premises site "))
        .unwrap_or_else(|| panic!("the demo names its site:\n{stderr}"));
    let (site, rest) = line["On-premises site ".len()..]
        .split_once(": Delivery Controller ")
        .unwrap();
    assert!(
        rest.contains("/Citrix/Monitor/OData/v4/Data"),
        "the site is served on the controller path: {line}"
    );
    // Two tenants in the table: the cloud one and the site.
    let rows: Vec<&str> = stdout
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(rows.iter().any(|r| r.starts_with(site)), "{stdout}");
    let text = std::fs::read_to_string(&out).unwrap();
    let tag = format!(
        ",customer={},",
        site.replace(',', "\\,")
            .replace('=', "\\=")
            .replace(' ', "\\ ")
    );
    let count = |m: &str| {
        text.lines()
            .filter(|l| l.starts_with(m) && l.contains(&tag))
            .count()
    };
    assert!(
        count("citrix_logon,") > 100,
        "{} logons of {site}",
        count("citrix_logon,")
    );
    assert!(
        count("citrix_machine,") > 10,
        "{} machines of {site}",
        count("citrix_machine,")
    );
    // The cloud tenant wrote its own points under another customer.
    let others = text
        .lines()
        .filter(|l| l.starts_with("citrix_logon,") && !l.contains(&tag))
        .count();
    assert!(others > 100, "{others} logons of the cloud tenant");
}

#[test]
fn demo_refuses_an_unwritable_output_before_harvesting() {
    // A regular file where the output's directory should be: unwritable even for root.
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let (res, stdout, stderr) = demo(&["--tenants", "1"], blocker.join("demo.lp"));
    assert_eq!(res.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("not-a-dir/demo.lp"), "{stderr}");
    assert!(!stdout.contains("written"), "{stdout}");
    // Nothing was harvested: the simulator was never started.
    assert!(!stderr.contains("Simulator"), "{stderr}");
}

/// Writes that fail during the harvest (a full disk: /dev/full takes the open and refuses
/// every write) leave failed jobs: the demo says the file is incomplete and exits 1, never
/// "written".
#[cfg(target_os = "linux")]
#[test]
fn demo_does_not_claim_success_after_failed_writes() {
    let (res, stdout, stderr) = demo(&["--tenants", "1"], "/dev/full");
    assert_eq!(res.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.contains("No space left on device"), "{stdout}");
    assert!(!stdout.contains("written"), "{stdout}");
    assert!(stderr.contains("/dev/full is incomplete"), "{stderr}");
}

#[test]
fn config_error_names_the_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[output]\nkind = \"stdout\"\n[[tenant]]\nname = \"A\"\ncustomer_id = \"a1\"\nclient_id = \"x\"\nclient_secret_env = \"NOPE_NOT_SET\"\n",
    )
    .unwrap();
    let res = bin()
        .arg("--config")
        .arg(&path)
        .arg("--once")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tenant[0].client_secret_env"), "{stderr}");
    // The same file through a pipe (`--config /dev/stdin`, like `--config <(…)`): read, not
    // "not found".
    let mut child = bin()
        .args(["--config", "/dev/stdin", "--once"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let text = std::fs::read(&path).unwrap();
        child.stdin.take().unwrap().write_all(&text).unwrap();
    }
    let res = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tenant[0].client_secret_env"), "{stderr}");
}

/// `harvester.max_concurrent_requests` meant three things; set in a file or in the environment
/// it now stops the start with a message naming the three settings that replaced it.
#[test]
fn the_old_max_concurrent_requests_fails_naming_its_replacements() {
    let dir = tempfile::tempdir().unwrap();
    let ok = "[output]\nkind = \"stdout\"\n[[tenant]]\nname = \"A\"\ncustomer_id = \"a1\"\nclient_id = \"x\"\nclient_secret_env = \"SECRET_A\"\n";
    let plain = dir.path().join("ok.toml");
    std::fs::write(&plain, ok).unwrap();
    let old = dir.path().join("old.toml");
    std::fs::write(
        &old,
        format!("[harvester]\nmax_concurrent_requests = 32\n{ok}"),
    )
    .unwrap();
    let from_file = bin()
        .arg("--config")
        .arg(&old)
        .args(["--once", "--dry-run"])
        .env("SECRET_A", "s")
        .output()
        .unwrap();
    let from_env = bin()
        .arg("--config")
        .arg(&plain)
        .args(["--once", "--dry-run"])
        .env("SECRET_A", "s")
        .env("CITRIX_HARVESTER__HARVESTER__MAX_CONCURRENT_REQUESTS", "64")
        .output()
        .unwrap();
    for res in [from_file, from_env] {
        let stderr = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(2), "{stderr}");
        for named in [
            "harvester.max_concurrent_requests",
            "harvester.max_requests_in_flight",
            "harvester.body_budget",
            "output.max_concurrency",
        ] {
            assert!(stderr.contains(named), "{named} missing: {stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_exit_code_and_summary_per_tenant() {
    let sim = start_sim(2, 5).await;
    let tenants = sim.tenants();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("points.lp");
    let tenant_block = |name: &str, cid: &str, client: &str, secret_var: &str| {
        format!(
            "[[tenant]]\nname = \"{name}\"\ncustomer_id = \"{cid}\"\nclient_id = \"{client}\"\n\
             client_secret_env = \"{secret_var}\"\n\
             token_url = \"{r}/cctrustoauth2/{{customer_id}}/tokens/clients\"\n\
             fallback_token_url = \"\"\nmonitor_url = \"{m}\"\n",
            r = sim.regional_url(),
            m = sim.monitor_base_url()
        )
    };
    let cfg = format!(
        "[harvester]\nstate_dir = \"{}\"\nlookback = \"3d\"\njitter = \"0s\"\n\
         [output]\nkind = \"file\"\npath = \"{}\"\n{}{}",
        dir.path().join("state").display(),
        out.display(),
        tenant_block(
            &tenants[0].name.replace('"', "\\\""),
            &tenants[0].customer_id,
            &tenants[0].client_id,
            "GOOD_SECRET"
        ),
        tenant_block(
            "Wrong secret",
            &tenants[1].customer_id,
            &tenants[1].client_id,
            "BAD_SECRET"
        ),
    );
    let path = dir.path().join("h.toml");
    std::fs::write(&path, cfg).unwrap();
    let good = tenants[0].client_secret.clone();
    // One tenant with a wrong secret: exit 1, the good tenant is still harvested.
    let res = tokio::task::spawn_blocking(move || {
        bin()
            .arg("--config")
            .arg(&path)
            .arg("--once")
            .env("GOOD_SECRET", good)
            .env("BAD_SECRET", "not-the-secret")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr).to_string();
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Wrong secret") && stderr.contains("FAILED"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not-the-secret"),
        "a secret reached the log:\n{stderr}"
    );
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(written.lines().any(|l| l.starts_with("citrix_logon,")));
    let bad = format!("customer_id={}", tenants[1].customer_id);
    // The failing tenant's only line is its own health point, which counts the failure.
    let bad_lines: Vec<&str> = written.lines().filter(|l| l.contains(&bad)).collect();
    assert_eq!(bad_lines.len(), 1, "{bad_lines:?}");
    assert!(
        bad_lines[0].starts_with("citrix_harvester,"),
        "{bad_lines:?}"
    );
    assert!(bad_lines[0].contains(",errors=1i,"), "{bad_lines:?}");
}

/// A config file pointing at a running simulator (all tenants), with the given output block.
fn sim_config(
    sim: &citrix_harvester::sim::SimHandle,
    dir: &std::path::Path,
    output: &str,
    extra_harvester: &str,
) -> std::path::PathBuf {
    let mut text = format!(
        "[harvester]\nstate_dir = \"{}\"\nlookback = \"3d\"\njitter = \"0s\"\n{extra_harvester}\n[output]\n{output}\n",
        dir.join("state").display()
    );
    for (i, t) in sim.tenants().iter().enumerate() {
        text.push_str(&format!(
            "[[tenant]]\nname = \"tenant {i}\"\ncustomer_id = \"{}\"\nclient_id = \"{}\"\n\
             client_secret_env = \"SECRET_{i}\"\n\
             token_url = \"{}/cctrustoauth2/{{customer_id}}/tokens/clients\"\n\
             fallback_token_url = \"\"\nmonitor_url = \"{}\"\n",
            t.customer_id,
            t.client_id,
            sim.regional_url(),
            sim.monitor_base_url()
        ));
    }
    let path = dir.join("h.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn with_secrets(mut c: Command, sim: &citrix_harvester::sim::SimHandle) -> Command {
    for (i, t) in sim.tenants().iter().enumerate() {
        c.env(format!("SECRET_{i}"), &t.client_secret);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_line_protocol_on_stdout() {
    let sim = start_sim(1, 8).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = sim_config(
        &sim,
        dir.path(),
        "kind = \"file\"\npath = \"/nonexistent/never-written.lp\"",
        "",
    );
    let mut cmd = with_secrets(bin(), &sim);
    cmd.arg("--config").arg(&cfg).args(["--once", "--dry-run"]);
    let res = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let stdout = String::from_utf8(res.stdout).unwrap();
    let conns = sim.rows(&sim.tenants()[0].customer_id, "Connections").len();
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("citrix_logon,"))
            .count(),
        conns
    );
    assert!(
        stdout.lines().all(|l| l.starts_with("citrix_")),
        "only line protocol on stdout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_stops_cleanly_on_sigterm_after_saving_its_watermark() {
    let sim = start_sim(2, 9).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("points.lp");
    let cfg = sim_config(
        &sim,
        dir.path(),
        &format!("kind = \"file\"\npath = \"{}\"", out.display()),
        "interval = \"1h\"",
    );
    let mut cmd = with_secrets(bin(), &sim);
    cmd.arg("--config")
        .arg(&cfg)
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Wait until both tenants saved a connections watermark (their first cycle is complete).
    let marks: Vec<_> = sim
        .tenants()
        .iter()
        .map(|t| {
            dir.path()
                .join("state/checkpoints")
                .join(&t.customer_id)
                .join("connections.json")
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !marks.iter().all(|m| m.exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "first cycle did not finish"
        );
        assert!(child.try_wait().unwrap().is_none(), "daemon exited early");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let pid = child.id().to_string();
    // SIGHUP (a reflex `systemctl reload`, a closed terminal) must not kill the daemon.
    let kill = |sig: &str| {
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        )
    };
    kill("-HUP");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP killed the daemon"
    );
    kill("-TERM");
    let res = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "exit {:?}: {stderr}", res.status);
    assert!(stderr.contains("SIGHUP received"), "{stderr}");
    assert!(stderr.contains("Configuration reloaded."), "{stderr}");
    assert!(stderr.contains("Shutdown requested"), "{stderr}");
    assert!(std::fs::read_to_string(&out).unwrap().lines().count() > 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_abandons_a_hanging_request_at_once_and_moves_no_watermark() {
    let sim = start_sim(1, 10).await;
    sim.set_faults(
        &sim.tenants()[0].customer_id,
        citrix_harvester::sim::Faults {
            slow_ms: 60_000,
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("points.lp");
    let cfg = sim_config(
        &sim,
        dir.path(),
        &format!("kind = \"file\"\npath = \"{}\"", out.display()),
        "shutdown_grace = \"20s\"",
    );
    let mut cmd = with_secrets(bin(), &sim);
    cmd.arg("--config")
        .arg(&cfg)
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    // Wait until the first Monitor request is hanging in the simulator.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sim
        .stats()
        .tenants
        .values()
        .map(|t| t.requests)
        .sum::<u64>()
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no request reached the simulator"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let res = terminate(child).await;
    let stderr = String::from_utf8_lossy(&res.stderr);
    // Nothing of that page was acknowledged, so abandoning it loses nothing: a clean stop.
    assert_eq!(res.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("grace period"), "{stderr}");
    // No watermark moved for the entity whose page never arrived.
    let cid = &sim.tenants()[0].customer_id;
    assert!(
        !dir.path()
            .join("state/checkpoints")
            .join(cid)
            .join("connections.json")
            .exists()
    );
}

/// SIGTERM, then the child's output; panics if it takes longer than 15 s.
async fn terminate(child: std::process::Child) -> std::process::Output {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = std::time::Instant::now();
    let res = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    // Far less than the 60 s the request or the write would have hung.
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    res
}

/// A write the output server never answers is not abandoned (its points may be in the
/// server already, and the watermark waits for its answer) — until the grace period is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_after_the_grace_period_when_a_write_hangs() {
    let sim = start_sim(1, 10).await;
    let silent = common::hostile::Hostile::start(|_| common::hostile::Reply {
        pieces: vec![Vec::new(), b"HTTP/1.1 204 X\r\n\r\n".to_vec()],
        pause: std::time::Duration::from_secs(60),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = sim_config(
        &sim,
        dir.path(),
        &format!(
            "kind = \"influxdb_v1\"\nurl = \"{}\"\ndatabase = \"d\"\ntimeout = \"60s\"",
            silent.url
        ),
        "shutdown_grace = \"1s\"",
    );
    let mut cmd = with_secrets(bin(), &sim);
    cmd.arg("--config")
        .arg(&cfg)
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while silent.count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no write reached the server"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let res = terminate(child).await;
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("grace period"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_1_of_2_harvests_only_its_tenants() {
    use citrix_harvester::shard::Shard;
    let sim = start_sim(4, 14).await;
    let owned: std::collections::BTreeSet<String> = sim
        .tenants()
        .iter()
        .map(|t| t.customer_id.clone())
        .filter(|c| Shard::new(1, 2).unwrap().owns(c))
        .collect();
    // The simulator's ids are fixed by the seed; both shards must have tenants for this test.
    assert!(
        !owned.is_empty() && owned.len() < 4,
        "seed gives shard 1/2 {owned:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("points.lp");
    let cfg = sim_config(
        &sim,
        dir.path(),
        &format!("kind = \"file\"\npath = \"{}\"", out.display()),
        "shard = \"0/2\"",
    );
    let mut cmd = with_secrets(bin(), &sim);
    // --shard on the command line wins over harvester.shard in the file.
    cmd.arg("--config")
        .arg(&cfg)
        .args(["run", "--once", "--shard", "1/2"]);
    let res = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stderr}");
    let written = std::fs::read_to_string(&out).unwrap();
    let seen: std::collections::BTreeSet<String> = written
        .lines()
        .filter_map(|l| {
            // Tag values here are ids (no escapes), so the value ends at `,` or ` `.
            let v = &l[l.find(",customer_id=")? + ",customer_id=".len()..];
            Some(v[..v.find([',', ' ']).unwrap_or(v.len())].to_string())
        })
        .collect();
    assert_eq!(seen, owned, "{stderr}");
    assert!(
        stderr.contains(&format!("tenants={}", owned.len())) && stderr.contains("shard=1/2"),
        "the start log says what the shard takes: {stderr}"
    );
    let bad = bin()
        .args(["run", "--once", "--shard", "2/2"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("K must be smaller than N"));
}

/// Subcommands and their long flags, read from `--help` (so a new flag is covered too).
fn commands_and_flags() -> Vec<(String, Vec<String>)> {
    let help = |args: &[&str]| {
        let o = bin().args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    let flags = |text: &str| -> Vec<String> {
        text.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']' || c == '=')
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| {
                w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                    .to_string()
            })
            .filter(|w| w != "--help" && w != "--version")
            .collect()
    };
    let top = help(&["--help"]);
    let mut out = vec![(String::new(), flags(&top))];
    let commands = top
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap();
    for line in commands.lines() {
        // A command's line starts at column 2; a wrapped description is indented further.
        if !line.starts_with("  ") || line.starts_with("   ") {
            continue;
        }
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if name == "help" {
            continue;
        }
        out.push((name.to_string(), flags(&help(&[name, "--help"]))));
    }
    out
}

#[test]
fn completions_mention_every_subcommand_and_flag() {
    let all = commands_and_flags();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for expected in ["run", "check", "simulate", "demo", "completions", "man"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let o = bin().args(["completions", shell]).output().unwrap();
        assert!(o.status.success(), "{shell}");
        let script = String::from_utf8(o.stdout).unwrap();
        for (cmd, flags) in &all {
            assert!(script.contains(cmd.as_str()), "{shell}: no {cmd}");
            for f in flags {
                // fish writes `-l shard` for --shard; the others write the flag itself.
                let long = f.trim_start_matches("--");
                assert!(
                    script.contains(f.as_str()) || script.contains(&format!("-l {long}")),
                    "{shell}: no {f} of {cmd:?}"
                );
            }
        }
    }
    let bad = bin().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn man_pages_mention_every_subcommand_and_flag() {
    let unroff = |s: &str| s.replace("\\-", "-");
    let o = bin().arg("man").output().unwrap();
    assert!(o.status.success());
    let page = unroff(&String::from_utf8(o.stdout).unwrap());
    assert!(page.starts_with(".ie") || page.contains(".TH"), "not roff");
    let all = commands_and_flags();
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["man", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success());
    for (cmd, flags) in &all {
        assert!(page.contains(cmd.as_str()), "main page lacks {cmd}");
        let file = if cmd.is_empty() {
            "citrix-harvester.1".to_string()
        } else {
            format!("citrix-harvester-{cmd}.1")
        };
        let text = unroff(&std::fs::read_to_string(dir.path().join(&file)).unwrap());
        for f in flags {
            assert!(text.contains(f.as_str()), "{file} lacks {f}");
        }
    }
}
