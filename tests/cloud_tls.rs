//! Citrix Cloud is HTTPS: the cloud tenants' Monitor requests go over TLS through the shared
//! connections of src/citrix/pool.rs, trusting `citrix.ca_file` (a TLS-inspecting proxy's CA,
//! or here the tests' CA), and a certificate that cannot be trusted is one clear error per
//! entity, not retried. The front is a real TLS server (rustls) with the certificate that
//! tests/winauth/setup.sh issues for `localhost`; the simulator answers behind it.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use citrix_harvester::config::Config;
use citrix_harvester::scheduler::{TenantSummary, minute_now, run};
use citrix_harvester::sim::{SimHandle, SimOptions};
use common::tls_front::TlsFront;

async fn start_sim(seed: u64) -> SimHandle {
    common::sim::start(SimOptions {
        tenants: 1,
        seed,
        now: minute_now(),
        history: chrono::Duration::days(1),
        page_size: 100,
        ..SimOptions::default()
    })
    .await
}

/// The simulator's tenant, its Monitor API (and its token host when `token_too`) reached
/// through `front`, trusting `ca` of the tests' TLS directory.
fn config(sim: &SimHandle, front: &TlsFront, dir: &Path, ca: &Path, token_too: bool) -> Config {
    let mut cfg = common::file_output_config(sim, dir, Duration::from_secs(2 * 86_400));
    cfg.citrix.ca_file = Some(ca.to_path_buf());
    cfg.citrix.max_retry_delay = Duration::from_secs(1);
    let t = &mut cfg.tenants[0];
    t.entities = vec!["connections".into(), "machines".into()];
    t.monitor_url = t.monitor_url.replace(&sim.regional_url(), &front.url);
    if token_too {
        t.token_url = t.token_url.replace(&sim.regional_url(), &front.url);
        t.fallback_token_url = None;
    }
    cfg
}

async fn once(cfg: &Config) -> Vec<TenantSummary> {
    run(cfg, true, CancellationToken::new()).await.unwrap()
}

/// Every page over TLS with the CA of `citrix.ca_file`, every row written, and the pages
/// carried by one kept-alive connection (the tenant asks one page at a time), not one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_pages_come_over_tls_with_the_ca_file_on_shared_connections() {
    let Some(env) = common::winauth::env() else {
        return;
    };
    let sim = start_sim(91).await;
    let front = TlsFront::start(&sim.regional_url(), &env.tls_dir).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&sim, &front, dir.path(), &env.tls_dir.join("ca.pem"), true);
    let s = once(&cfg).await;
    assert!(s.iter().all(TenantSummary::ok), "{s:#?}");
    let conns = common::sim_ids(&sim, &sim.tenants()[0].customer_id, "Connections");
    assert!(
        conns.len() > 200,
        "{} connections: several pages",
        conns.len()
    );
    assert_eq!(
        common::ids_written(dir.path(), "citrix_logon", "connection_id"),
        conns
    );
    let machines = common::sim_ids(&sim, &sim.tenants()[0].customer_id, "Machines");
    assert!(!machines.is_empty());
    assert_eq!(
        common::ids_written(dir.path(), "citrix_machine", "machine_id"),
        machines
    );
    let c = &front.counts;
    let (requests, connections) = (
        c.requests.load(Ordering::SeqCst),
        c.connections.load(Ordering::SeqCst),
    );
    assert_eq!(c.tls_failures.load(Ordering::SeqCst), 0);
    assert!(requests > 5, "{requests} requests through the front");
    // The token client's connection and the Monitor pool's: not one per page.
    assert!(
        connections <= 3,
        "{connections} TLS connections for {requests} requests"
    );
}

/// A certificate from a CA that `citrix.ca_file` does not hold: each entity fails at once
/// with an error naming tenant, entity, URL and the setting to fix; no attempt is repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_one_clear_error_per_entity_without_retries() {
    let Some(env) = common::winauth::env() else {
        return;
    };
    let sim = start_sim(92).await;
    let front = TlsFront::start(&sim.regional_url(), &env.tls_dir).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = env.tls_dir.join("other-ca.pem");
    let cfg = config(&sim, &front, dir.path(), &ca, false);
    let started = std::time::Instant::now();
    let s = once(&cfg).await;
    assert!(started.elapsed() < Duration::from_secs(10), "fails fast");
    assert!(!s[0].ok(), "{s:#?}");
    let errors: Vec<String> = s[0]
        .entities
        .iter()
        .filter_map(|e| e.error.clone())
        .collect();
    assert_eq!(errors.len(), 2, "one per entity: {errors:?}");
    for e in &errors {
        for want in [
            format!("tenant {}", s[0].tenant),
            front.url.clone(),
            "is not signed by a CA in `citrix.ca_file`".to_string(),
        ] {
            assert!(e.contains(&want), "`{want}` missing in: {e}");
        }
    }
    assert_eq!(
        front.counts.tls_failures.load(Ordering::SeqCst),
        2,
        "one handshake per entity, none repeated"
    );
    assert_eq!(front.counts.requests.load(Ordering::SeqCst), 0);
}
