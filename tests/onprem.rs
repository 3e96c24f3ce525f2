//! On-premises sites end to end: the simulator's on-premises mode behind a real NTLM/Negotiate
//! acceptor (pyspnego) and a real MIT Kerberos KDC, harvested by the ordinary scheduler into a
//! file. Every test counts the handshakes at the acceptor; every log line of this binary, at
//! TRACE level and from every thread, is checked for the password.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use citrix_harvester::config::{Config, WinAuthKind};
use citrix_harvester::scheduler::{TenantSummary, minute_now, run};
use citrix_harvester::secret::Secret;
use citrix_harvester::sim::{SimHandle, SimOptions};
use common::connect_proxy::ConnectProxy;
use common::winauth::{Acceptor, Env, closed_port};

/// Every log line of this test binary, whatever thread wrote it.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        #[derive(Clone)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = Buf(buf.clone());
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        tracing::subscriber::set_global_default(sub).expect("one global subscriber");
        buf
    })
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

fn assert_password_never_logged(env: &Env) {
    let text = log_text();
    assert!(text.len() > 1000, "TRACE logs were captured");
    assert!(
        !text.contains(&env.password),
        "the password appears in a log line"
    );
}

async fn start_site_sim(seed: u64) -> SimHandle {
    common::sim::start(SimOptions {
        tenants: 1,
        seed,
        now: minute_now(),
        history: chrono::Duration::days(1),
        onprem_site: true,
        ..SimOptions::default()
    })
    .await
}

/// A site of seed `seed` behind its own acceptor (HTTPS when `tls`), and a directory for the
/// harvest's output and state.
async fn site(env: &Env, seed: u64, tls: bool) -> (SimHandle, Acceptor, tempfile::TempDir) {
    let sim = start_site_sim(seed).await;
    let acceptor = if tls {
        Acceptor::start_tls(env, &sim.regional_url())
    } else {
        Acceptor::start(env, &sim.regional_url())
    };
    (sim, acceptor, tempfile::tempdir().unwrap())
}

/// The simulator's site reached through `controllers` (acceptor URLs) as `user`/`password`.
fn site_config(
    sim: &SimHandle,
    dir: &Path,
    controllers: Vec<String>,
    env: &Env,
    password: &str,
) -> Config {
    let mut cfg = common::file_output_config(sim, dir, Duration::from_secs(2 * 86_400));
    cfg.citrix.max_retry_delay = Duration::from_secs(1);
    let t = &mut cfg.tenants[0];
    t.entities = vec!["connections".into(), "machines".into()];
    let site = t.site.as_mut().expect("the simulator's tenant is a site");
    let (domain, user) = env.user.split_once('\\').unwrap();
    site.domain = domain.into();
    site.user = user.into();
    site.password = Secret::new(password);
    site.controllers = controllers
        .iter()
        .map(|c| format!("{c}/Citrix/Monitor/OData/v4/Data"))
        .collect();
    site.key = "tenant[0].".into();
    site.user_key = "tenant[0].user".into();
    site.password_key = "tenant[0].password_env".into();
    t.monitor_url = site.controllers[0].clone();
    cfg
}

/// [`site_config`] with `auth = "negotiate"` against `kdc`, for the SPN the acceptor holds.
fn negotiate_config(
    sim: &SimHandle,
    dir: &Path,
    acceptor: &Acceptor,
    env: &Env,
    kdc: String,
) -> Config {
    let mut cfg = site_config(sim, dir, vec![acceptor.url()], env, &env.password);
    let site = cfg.tenants[0].site.as_mut().unwrap();
    site.auth = WinAuthKind::Negotiate;
    site.kdc = Some(kdc);
    site.spn = Some("HTTP/localhost".into());
    cfg
}

async fn once(cfg: &Config) -> Vec<TenantSummary> {
    run(cfg, true, CancellationToken::new())
        .await
        .expect("harvester runs")
}

/// [`once`], and how long it took.
async fn timed_once(cfg: &Config) -> (Vec<TenantSummary>, Duration) {
    let started = std::time::Instant::now();
    let s = once(cfg).await;
    (s, started.elapsed())
}

fn sim_ids(sim: &SimHandle, set: &str) -> HashSet<String> {
    common::sim_ids(sim, &sim.onprem_site().unwrap().customer_id, set)
}

/// Every connection and machine of the site is in the output.
fn assert_complete(dir: &Path, sim: &SimHandle) {
    let conns = sim_ids(sim, "Connections");
    assert!(
        conns.len() > 200,
        "{} connections: several pages of 100",
        conns.len()
    );
    assert_eq!(
        common::ids_written(dir, "citrix_logon", "connection_id"),
        conns
    );
    let machines = sim_ids(sim, "Machines");
    assert!(!machines.is_empty());
    assert_eq!(
        common::ids_written(dir, "citrix_machine", "machine_id"),
        machines
    );
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The acceptor's environment, with this binary's log capture installed first (so that every
/// test's lines are checked for the password); `None` skips the test outside CI.
fn winauth_env() -> Option<Env> {
    let _ = logs();
    common::winauth::env()
}

/// The requests the simulator served its one tenant (the pages of the harvest).
fn pages(sim: &SimHandle) -> u64 {
    sim.stats().tenants.values().next().unwrap().requests
}

/// NTLM's contract at the acceptor: one complete handshake per page, none rejected.
fn assert_ntlm_handshake_per_page(stats: &Value, pages: u64) {
    assert_eq!(n(&stats["completed"]), pages, "{stats}");
    assert_eq!(n(&stats["handshakes"]), pages, "{stats}");
    assert_eq!(n(&stats["rejected"]), 0, "{stats}");
    assert_eq!(n(&stats["by_protocol"]["ntlm"]), pages, "{stats}");
}

/// Runs `check` on a site configured by `toml` whose `password_env` is `SITE_PASSWORD`,
/// which holds `password`: whether it passed, and its table.
async fn check_site(toml: &str, password: String) -> (bool, String) {
    let secrets = citrix_harvester::config::SecretSources {
        env: Box::new(move |k| (k == "SITE_PASSWORD").then(|| password.clone())),
        credentials_dir: None,
    };
    let checked = Config::from_toml_str_for_check(toml, &secrets).unwrap();
    let report = citrix_harvester::check::run(checked, "site.toml", None).await;
    (report.passed(), report.render())
}

/// A `check` configuration of one site `name` at `controller` (its output in `dir`), with
/// `extra` TOML lines for the tenant.
fn check_toml(dir: &Path, name: &str, controller: &str, env: &Env, extra: &str) -> String {
    format!(
        "[harvester]\nstate_dir = \"{}\"\n[output]\nkind = \"file\"\npath = \"{}\"\n\
         [[tenant]]\nname = \"{name}\"\ncontrollers = [\"{controller}\"]\nuser = '{}'\n\
         password_env = \"SITE_PASSWORD\"\n{extra}",
        dir.join("state").display(),
        dir.join("points.lp").display(),
        env.user,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_site_is_harvested_completely_with_a_handshake_per_page() {
    let Some(env) = winauth_env() else {
        return;
    };
    let (sim, acceptor, dir) = site(&env, 71, false).await;
    let cfg = site_config(&sim, dir.path(), vec![acceptor.url()], &env, &env.password);
    let (s, took) = timed_once(&cfg).await;
    assert!(s.iter().all(|s| s.ok()), "{s:?} {}", acceptor.stats().await);
    assert_complete(dir.path(), &sim);
    let stats = acceptor.stats().await;
    let pages = pages(&sim);
    // Every page authenticated on its own: one complete NTLM handshake per request served.
    assert_ntlm_handshake_per_page(&stats, pages);
    eprintln!(
        "NTLM: {pages} pages, each with its own handshake, in {:?} ({:?} a page)",
        took,
        took / pages.max(1) as u32
    );
    assert_password_never_logged(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_or_domain_fails_once_without_retrying() {
    let Some(env) = winauth_env() else {
        return;
    };
    let sim = start_site_sim(72).await;
    for (case, wrong_domain) in [("password", false), ("domain", true)] {
        let acceptor = Acceptor::start(&env, &sim.regional_url());
        let dir = tempfile::tempdir().unwrap();
        let password = if wrong_domain {
            env.password.as_str()
        } else {
            "not-the-password"
        };
        let mut cfg = site_config(&sim, dir.path(), vec![acceptor.url()], &env, password);
        if wrong_domain {
            cfg.tenants[0].site.as_mut().unwrap().domain = "OTHER".into();
        }
        let (s, took) = timed_once(&cfg).await;
        assert!(took < Duration::from_secs(10), "{case}: fails fast");
        assert!(!s[0].ok(), "{case}: {s:?}");
        let stats = acceptor.stats().await;
        // Two entities, retries configured: still exactly one attempt at the controller.
        assert_eq!(n(&stats["handshakes"]), 1, "{case}: {stats}");
        assert_eq!(n(&stats["rejected"]), 1, "{case}: {stats}");
        assert_eq!(n(&stats["completed"]), 0, "{case}: {stats}");
        let errors: Vec<String> = s[0]
            .entities
            .iter()
            .filter_map(|e| e.error.clone())
            .collect();
        assert!(
            errors
                .iter()
                .any(|e| e.contains("rejected the credentials")
                    && e.contains("tenant[0].password_env")),
            "{case}: {errors:?}"
        );
    }
    let text = log_text();
    let errors = text
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("Windows authentication failed"))
        // The log is the whole binary's: the check test's site logs its own ERROR.
        .filter(|l| !l.contains("Munich site"))
        .count();
    assert_eq!(errors, 2, "one ERROR per bad site");
    assert_password_never_logged(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiate_with_a_kerberos_ticket_uses_kerberos() {
    let Some(env) = winauth_env() else {
        return;
    };
    let (sim, acceptor, dir) = site(&env, 73, false).await;
    let cfg = negotiate_config(&sim, dir.path(), &acceptor, &env, env.kdc.clone());
    let s = once(&cfg).await;
    assert!(s.iter().all(|s| s.ok()), "{s:?}");
    assert_complete(dir.path(), &sim);
    let stats = acceptor.stats().await;
    assert_eq!(n(&stats["rejected"]), 0, "{stats}");
    assert_eq!(n(&stats["by_protocol"]["ntlm"]), 0, "{stats}");
    assert!(n(&stats["by_protocol"]["kerberos"]) > 2, "{stats}");
    let principals = stats["principals"].to_string();
    assert!(
        principals.contains("svc-harvester@HARVEST.TEST"),
        "{principals}"
    );
    assert_password_never_logged(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiate_without_a_ticket_falls_back_to_ntlm() {
    let Some(env) = winauth_env() else {
        return;
    };
    let (sim, acceptor, dir) = site(&env, 74, false).await;
    // No KDC answers: no ticket can be had.
    let kdc = format!("tcp://127.0.0.1:{}", closed_port());
    let cfg = negotiate_config(&sim, dir.path(), &acceptor, &env, kdc);
    let s = once(&cfg).await;
    assert!(s.iter().all(|s| s.ok()), "{s:?}");
    assert_complete(dir.path(), &sim);
    let stats = acceptor.stats().await;
    assert_eq!(n(&stats["rejected"]), 0, "{stats}");
    assert_eq!(n(&stats["by_protocol"]["kerberos"]), 0, "{stats}");
    assert!(n(&stats["by_protocol"]["ntlm"]) > 2, "{stats}");
    assert_password_never_logged(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_controller_down_the_second_serves_and_is_remembered() {
    let Some(env) = winauth_env() else {
        return;
    };
    let (sim, acceptor, dir) = site(&env, 75, false).await;
    let down = format!("http://127.0.0.1:{}", closed_port());
    let cfg = site_config(
        &sim,
        dir.path(),
        vec![down.clone(), acceptor.url()],
        &env,
        &env.password,
    );
    let s = once(&cfg).await;
    assert!(s.iter().all(|s| s.ok()), "{s:?}");
    assert_complete(dir.path(), &sim);
    // The switch happened once; every later request went to the healthy controller directly.
    let text = log_text();
    let switches = text
        .lines()
        .filter(|l| l.contains("next controller of the site answered") && l.contains(&down))
        .count();
    assert_eq!(switches, 1, "one switch to the second controller");
    assert_password_never_logged(&env);
}

/// `check` on a site, as an operator runs it before starting the daemon: the controller that
/// answered and the scheme that authenticated on success; with a wrong password one failed
/// row whose hint names the settings, after exactly one handshake at the acceptor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_the_controller_and_the_scheme_of_a_site() {
    let Some(env) = winauth_env() else {
        return;
    };
    let (_sim, acceptor, dir) = site(&env, 77, false).await;
    let text = check_toml(
        dir.path(),
        "Munich site",
        &acceptor.url(),
        &env,
        "auth = \"ntlm\"\n",
    );
    let (passed, table) = check_site(&text, env.password.clone()).await;
    assert!(passed, "{table}");
    assert!(
        table.contains(&acceptor.url()) && table.contains("ntlm"),
        "{table}"
    );
    let before = n(&acceptor.stats().await["rejected"]);
    let (passed, table) = check_site(&text, "not-the-password".into()).await;
    assert!(!passed, "{table}");
    assert!(table.contains("tenant[0].password_env"), "{table}");
    let stats = acceptor.stats().await;
    assert_eq!(
        n(&stats["rejected"]) - before,
        1,
        "one attempt, no retry storm: {stats}"
    );
    assert!(!table.contains("not-the-password"), "{table}");
    assert_password_never_logged(&env);
}

/// The TCP connections the acceptor accepted for the harvest: its count, less the one its
/// stats call itself opened (each stats call is a new client).
fn harvest_connections(stats: &Value) -> u64 {
    n(&stats["connections"]) - 1
}

/// `site_config` with the TLS acceptor as the one controller and `ca` (a file of
/// `env.tls_dir`) as the site's `ca_file`.
fn tls_config(sim: &SimHandle, dir: &Path, controller: String, env: &Env, ca: &str) -> Config {
    let mut cfg = site_config(sim, dir, vec![controller], env, &env.password);
    cfg.tenants[0].site.as_mut().unwrap().ca_file = Some(env.tls_dir.join(ca));
    cfg
}

fn entity_errors(s: &[TenantSummary]) -> Vec<String> {
    s.iter()
        .flat_map(|t| t.entities.iter().filter_map(|e| e.error.clone()))
        .collect()
}

/// NTLM over TLS with the site's private CA: every row, every page its own handshake, and
/// every handshake its own TCP connection with all of its legs on it (a pooled client would
/// carry several pages over one kept-alive connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_over_tls_with_the_sites_ca_file_owns_a_connection_per_handshake() {
    let Some(env) = winauth_env() else {
        return;
    };
    let (sim, acceptor, dir) = site(&env, 81, true).await;
    let cfg = tls_config(&sim, dir.path(), acceptor.url(), &env, "ca.pem");
    let (s, took) = timed_once(&cfg).await;
    assert!(s.iter().all(|s| s.ok()), "{s:?} {}", acceptor.stats().await);
    assert_complete(dir.path(), &sim);
    let stats = acceptor.stats().await;
    let pages = pages(&sim);
    assert_ntlm_handshake_per_page(&stats, pages);
    assert_eq!(n(&stats["tls_failures"]), 0, "{stats}");
    assert_eq!(harvest_connections(&stats), pages, "{stats}");
    eprintln!(
        "NTLM over TLS: {pages} pages, each on its own connection, in {took:?} ({:?} a page)",
        took / pages.max(1) as u32
    );
    assert_password_never_logged(&env);
}

/// A controller certificate the site cannot trust (an unrelated CA in `ca_file`, or a URL by
/// IP address where the certificate names `localhost`): one error per entity that names the
/// site, the controller and what to fix, no retry, and no credentials ever sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_controller_certificate_is_one_clear_error() {
    let Some(env) = winauth_env() else {
        return;
    };
    let sim = start_site_sim(82).await;
    let site = sim.onprem_site().unwrap().name;
    let acceptor = Acceptor::start_tls(&env, &sim.regional_url());
    let by_ip = format!("https://127.0.0.1:{}", acceptor.port);
    for (case, controller, ca, expect) in [
        (
            "unrelated CA",
            acceptor.url(),
            "other-ca.pem",
            "is not signed by a CA in `tenant[0].ca_file`",
        ),
        (
            "wrong name",
            by_ip.clone(),
            "ca.pem",
            "is not issued to 127.0.0.1",
        ),
    ] {
        let before = acceptor.stats().await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = tls_config(&sim, dir.path(), controller.clone(), &env, ca);
        let (s, took) = timed_once(&cfg).await;
        assert!(took < Duration::from_secs(10), "{case}: fails fast");
        assert!(!s[0].ok(), "{case}: {s:?}");
        let errors = entity_errors(&s);
        assert_eq!(errors.len(), 2, "{case}: one per entity: {errors:?}");
        eprintln!("{case}: {}", errors[0]);
        for e in &errors {
            assert!(
                e.contains(&format!("site {site}"))
                    && e.contains(&controller)
                    && e.contains(expect),
                "{case}: {e}"
            );
        }
        let stats = acceptor.stats().await;
        let d = |k: &str| n(&stats[k]) - n(&before[k]);
        // One TLS attempt per entity (no retries), and no credentials offered to it.
        assert_eq!(d("tls_failures"), 2, "{case}: {stats}");
        assert_eq!(d("requests"), 0, "{case}: {stats}");
    }
    // `check` says the same, with the setting to fix as its hint.
    let dir = tempfile::tempdir().unwrap();
    let ca_file = format!(
        "ca_file = \"{}\"\n",
        env.tls_dir.join("other-ca.pem").display()
    );
    let text = check_toml(dir.path(), "TLS site", &acceptor.url(), &env, &ca_file);
    let (passed, table) = check_site(&text, env.password.clone()).await;
    assert!(!passed, "{table}");
    assert!(
        table.contains("is not signed by a CA in `tenant[0].ca_file`")
            && table.contains("fix `tenant[0].ca_file`"),
        "{table}"
    );
    assert_password_never_logged(&env);
}

/// Through an HTTP CONNECT proxy that demands an account (from the proxy URL), to a plain-HTTP
/// and to a TLS controller: every row, one CONNECT to the controller per handshake, the
/// proxy's password never logged; a wrong proxy password is one error naming `proxy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_through_a_connect_proxy_tunnels_every_handshake() {
    let Some(env) = winauth_env() else {
        return;
    };
    let account = "proxy-user:Proxy-Secret-7q2";
    for (case, tls) in [("http controller", false), ("https controller", true)] {
        let proxy = ConnectProxy::start(Some(account)).await;
        let (sim, acceptor, dir) = site(&env, if tls { 84 } else { 83 }, tls).await;
        let mut cfg = tls_config(&sim, dir.path(), acceptor.url(), &env, "ca.pem");
        cfg.tenants[0].site.as_mut().unwrap().proxy = Some(proxy.url(Some(account)));
        let s = once(&cfg).await;
        assert!(s.iter().all(|s| s.ok()), "{case}: {s:?}");
        assert_complete(dir.path(), &sim);
        let stats = acceptor.stats().await;
        let pages = pages(&sim);
        assert_eq!(n(&stats["completed"]), pages, "{case}: {stats}");
        let seen = proxy.seen();
        let target = acceptor
            .url()
            .split_once("://")
            .map(|(_, hp)| hp.to_string())
            .unwrap();
        assert_eq!(seen.len() as u64, pages, "{case}: one CONNECT a handshake");
        for x in &seen {
            assert!(x.connect && x.target == target, "{case}: {x:?}");
            assert_eq!(x.credentials.as_deref(), Some(account), "{case}");
            assert_eq!(x.status, 200, "{case}");
        }
        assert_eq!(harvest_connections(&stats), pages, "{case}: {stats}");
    }
    // The wrong proxy password: 407, one attempt per entity, nothing reaches the controller.
    let proxy = ConnectProxy::start(Some(account)).await;
    let (sim, acceptor, dir) = site(&env, 85, true).await;
    let mut cfg = tls_config(&sim, dir.path(), acceptor.url(), &env, "ca.pem");
    let wrong = "proxy-user:Not-The-Proxy-Secret";
    cfg.tenants[0].site.as_mut().unwrap().proxy = Some(proxy.url(Some(wrong)));
    let s = once(&cfg).await;
    assert!(!s[0].ok(), "{s:?}");
    let errors = entity_errors(&s);
    assert_eq!(errors.len(), 2, "{errors:?}");
    eprintln!("wrong proxy password: {}", errors[0]);
    for e in &errors {
        assert!(
            e.contains("HTTP 407")
                && e.contains("rejected the credentials")
                && e.contains("`tenant[0].proxy`")
                && !e.contains("Not-The-Proxy-Secret"),
            "{e}"
        );
    }
    assert_eq!(proxy.seen().len(), 2, "{:?}", proxy.seen());
    assert_eq!(n(&acceptor.stats().await["requests"]), 0);
    let text = log_text();
    assert!(
        !text.contains("Proxy-Secret") && !text.contains("Not-The-Proxy-Secret"),
        "a proxy password appears in a log line"
    );
    assert_password_never_logged(&env);
}
