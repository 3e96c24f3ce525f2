//! `citrix-harvester demo`: the built-in default that needs no Citrix tenant. It starts the
//! simulator in-process on free loopback ports, harvests every simulated tenant once into a
//! line-protocol file and prints a per-tenant table (connections, machines, logon p50/p95).
//! It builds an ordinary [`Config`] and calls the ordinary scheduler: nothing demo-specific
//! happens inside the harvester. `--incident` switches simulated incidents on for the first
//! tenant before the harvest (docs/alerts.md).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::{CitrixConfig, Config, HarvesterConfig, TenantConfig};
use crate::scheduler::{TenantSummary, format_summary, minute_now, run};
use crate::secret::Secret;
use crate::sim::{Faults, Incident, SimHandle, SimOptions, Simulator};
use crate::sink::{SinkConfig, SinkKind};

pub struct DemoOptions {
    pub tenants: usize,
    pub seed: u64,
    pub out: PathBuf,
    pub state_dir: Option<PathBuf>,
    /// Incidents of the first tenant.
    pub incidents: Vec<Incident>,
    /// One more tenant, served as an on-premises site.
    pub onprem_site: bool,
}

/// `logon_storm`, `deregistration`, `failure_spike[:<ConnectionFailureType>]` (default
/// NoCapacityAvailable) or `harvest_stop`, with the simulator's defaults otherwise.
pub fn parse_incident(s: &str) -> Result<Incident, String> {
    let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
    let json = match (kind.replace('-', "_").as_str(), arg) {
        ("failure_spike", c) => serde_json::json!({
            "kind": "failure_spike",
            "category": if c.is_empty() { "NoCapacityAvailable" } else { c },
        }),
        (k @ ("logon_storm" | "deregistration" | "harvest_stop"), "") => {
            serde_json::json!({ "kind": k })
        }
        _ => {
            return Err(format!(
                "{s:?}: expected logon_storm, deregistration, failure_spike[:<category>] or harvest_stop"
            ));
        }
    };
    serde_json::from_value(json).map_err(|e| format!("{s:?}: {e}"))
}

/// A harvester config pointing every tenant of a running simulator, for the demo and the tests.
/// The simulator's on-premises site as a tenant's site settings. The simulator does not check
/// Windows credentials (the tests put a real NTLM/Kerberos acceptor in front of it).
pub fn simulated_site(sim: &SimHandle) -> crate::config::SiteConfig {
    crate::config::SiteConfig {
        controllers: vec![sim.onprem_base_url()],
        auth: crate::config::WinAuthKind::Ntlm,
        domain: "SIM".into(),
        user: "svc-harvester".into(),
        password: Secret::new("simulated-site-password"),
        ca_file: None,
        proxy: None,
        kdc: None,
        spn: None,
        key: "demo site ".into(),
        user_key: "demo site user".into(),
        password_key: "demo site password".into(),
    }
}

pub fn config_for_simulator(
    sim: &SimHandle,
    mut output: SinkConfig,
    state_dir: PathBuf,
    lookback: Duration,
) -> Config {
    output.state_dir = Some(state_dir.clone());
    let tenants = sim
        .tenants()
        .into_iter()
        .map(|t| TenantConfig {
            name: t.name.clone(),
            token_url: format!(
                "{}/cctrustoauth2/{}/tokens/clients",
                sim.regional_url(),
                t.customer_id
            ),
            fallback_token_url: Some(format!(
                "{}/cctrustoauth2/{}/tokens/clients",
                sim.fallback_url(),
                t.customer_id
            )),
            monitor_url: sim.monitor_base_url(),
            customer_id: t.customer_id,
            client_id: t.client_id,
            client_secret: Secret::new(t.client_secret),
            entities: crate::config::KNOWN_ENTITIES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            schedule: Default::default(),
            site: None,
        })
        .map(|mut t| {
            if sim
                .onprem_site()
                .is_some_and(|s| s.customer_id == t.customer_id)
            {
                t.site = Some(Box::new(simulated_site(sim)));
                t.monitor_url = sim.onprem_base_url();
            }
            t
        })
        .collect();
    Config {
        harvester: HarvesterConfig {
            state_dir,
            lookback,
            jitter: Duration::ZERO,
            ..HarvesterConfig::default()
        },
        citrix: CitrixConfig {
            max_retry_delay: Duration::from_secs(5),
            ..CitrixConfig::default()
        },
        output,
        tenants,
    }
}

/// Runs the demo; returns the summaries (and whether all succeeded) after printing the table.
pub async fn run_demo(opts: DemoOptions) -> anyhow::Result<bool> {
    start_output(&opts.out)?;
    let history = chrono::Duration::days(2);
    let sim = Simulator::new(SimOptions {
        tenants: opts.tenants + usize::from(opts.onprem_site),
        seed: opts.seed,
        now: minute_now(),
        history,
        onprem_site: opts.onprem_site,
        ..SimOptions::default()
    })
    .start(IpAddr::V4(Ipv4Addr::LOCALHOST))
    .await?;
    eprintln!(
        "Simulator of the Citrix Monitor API listening on {} (fallback token host {}).",
        sim.regional_url(),
        sim.fallback_url()
    );
    if let Some(site) = sim.onprem_site() {
        eprintln!(
            "On-premises site {}: Delivery Controller {} (NTLM; the simulator does not check \
             Windows credentials).",
            site.name,
            sim.onprem_base_url()
        );
    }
    if !opts.incidents.is_empty()
        && let Some(first) = sim.tenants().first()
    {
        let faults = Faults {
            incidents: opts.incidents.clone(),
            ..Faults::default()
        };
        sim.try_set_faults(&first.customer_id, faults)
            .map_err(|e| anyhow::anyhow!("incident: {e}"))?;
        eprintln!("Incidents at {}: {:?}", first.name, opts.incidents);
    }
    let state = match &opts.state_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("citrix-harvester-demo-{}", std::process::id())),
    };
    // A fresh state dir each time, so the demo always reads the whole simulated history.
    let _ = std::fs::remove_dir_all(&state);
    let output = SinkConfig::new(SinkKind::File {
        path: opts.out.clone(),
    });
    let lookback = history.to_std().unwrap_or_default() + Duration::from_secs(3600);
    let cfg = config_for_simulator(&sim, output, state.clone(), lookback);
    let summaries = run(&cfg, true, CancellationToken::new()).await?;
    sim.shutdown();
    if opts.state_dir.is_none() {
        let _ = std::fs::remove_dir_all(&state);
    }
    println!("{}", demo_table(&summaries));
    println!("{}", format_summary(&summaries));
    let failed = summaries.iter().filter(|s| !s.ok()).count();
    if failed == 0 {
        println!("Line protocol written to {}", opts.out.display());
    } else {
        // The table says which jobs failed; the file holds only what was delivered.
        eprintln!(
            "error: {failed} of {} tenants did not deliver everything: {} is incomplete (see FAILED above)",
            summaries.len(),
            opts.out.display()
        );
    }
    Ok(failed == 0)
}

/// Starts the output file empty (the file writer appends), or fails before any harvest with
/// the reason, so that an unwritable path is one clear error instead of every job failing.
fn start_output(out: &Path) -> anyhow::Result<()> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the directory of {}", out.display()))?;
    }
    std::fs::File::create(out).with_context(|| {
        format!(
            "cannot write {} (pass --out with a writable path)",
            out.display()
        )
    })?;
    Ok(())
}

/// Connections, machines and logon p50/p95 per tenant.
pub fn demo_table(summaries: &[TenantSummary]) -> String {
    let mut s = format!(
        "{:<28} {:>12} {:>9} {:>14} {:>14}\n",
        "tenant", "connections", "machines", "logon p50 (s)", "logon p95 (s)"
    );
    for t in summaries {
        let conns = t.entity("connections");
        let machines = t.entity("machines").map(|e| e.points_written).unwrap_or(0);
        let mut ms: Vec<u32> = conns.map(|e| e.logon_ms.clone()).unwrap_or_default();
        ms.sort_unstable();
        let pct = |p: f64| -> String {
            if ms.is_empty() {
                return "-".into();
            }
            let idx = ((ms.len() as f64 - 1.0) * p).round() as usize;
            format!("{:.1}", ms[idx] as f64 / 1000.0)
        };
        s.push_str(&format!(
            "{:<28} {:>12} {:>9} {:>14} {:>14}\n",
            t.tenant,
            conns.map(|e| e.points_written).unwrap_or(0),
            machines,
            pct(0.5),
            pct(0.95)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_names_parse() {
        assert!(matches!(
            parse_incident("failure-spike:NoLicensesAvailable"),
            Ok(Incident::FailureSpike { category, .. }) if category == "NoLicensesAvailable"
        ));
        assert!(matches!(
            parse_incident("logon_storm"),
            Ok(Incident::LogonStorm { logons: 60, .. })
        ));
        assert_eq!(parse_incident("harvest_stop"), Ok(Incident::HarvestStop {}));
        assert!(parse_incident("storm").is_err());
        assert!(parse_incident("harvest_stop:x").is_err());
    }
}
