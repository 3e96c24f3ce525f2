//! Simulator data as a client sees it through `SimHandle::rows`: volumes for the default
//! options, determinism, and generation time (printed, with a generous bound only).

use std::time::Instant;

use citrix_harvester::sim::{SimOptions, Simulator};

#[tokio::test]
async fn default_volumes_and_generation_time() {
    let t0 = Instant::now();
    let sim = Simulator::new(SimOptions::default());
    let generated = t0.elapsed();
    let h = sim.start("127.0.0.1".parse().unwrap()).await.unwrap();
    let sets = [
        "DesktopGroups",
        "Catalogs",
        "Hypervisors",
        "Machines",
        "Users",
        "Sessions",
        "Connections",
        "ConnectionFailureLogs",
        "ConnectionFailureCategories",
        "LoadIndexes",
        "MachineFailureLogs",
        "SessionActivitySummaries",
        "LogOnSummaries",
        "LoadIndexSummaries",
        "FailureLogSummaries",
        "MachineSummaries",
        "ResourceUtilization",
        "ResourceUtilizationSummary",
        "MachineMetric",
        "SessionMetrics",
        "MachineHotfixLogs",
        "Hotfixes",
        "ApplicationInstances",
        "Applications",
    ];
    for t in h.tenants() {
        let counts: Vec<String> = sets
            .iter()
            .map(|s| format!("{s}={}", h.rows(&t.customer_id, s).len()))
            .collect();
        println!("{} ({}): {}", t.name, t.customer_id, counts.join(" "));
    }
    println!("generated 3 default tenants in {generated:?}");
    let t0 = &h.tenants()[0];
    assert!(h.rows(&t0.customer_id, "Connections").len() >= 1050);
    for s in sets {
        assert!(!h.rows(&t0.customer_id, s).is_empty(), "{s} is empty");
    }
    let t1 = Instant::now();
    h.advance(chrono::Duration::minutes(60));
    println!("advanced 3 default tenants by 60 min in {:?}", t1.elapsed());
    assert!(h.rows(&t0.customer_id, "Nope").is_empty());
    assert!(h.rows("nobody", "Connections").is_empty());
    // Generous: debug builds are much slower than release.
    assert!(generated.as_secs() < 20, "{generated:?}");
}

#[test]
fn same_seed_same_tenants_and_rows() {
    let opts = SimOptions {
        tenants: 2,
        sessions_per_day: 20,
        ..SimOptions::default()
    };
    let a = Simulator::new(opts.clone());
    let b = Simulator::new(opts.clone());
    assert_eq!(a.tenants(), b.tenants());
    let c = Simulator::new(SimOptions { seed: 43, ..opts });
    assert_ne!(a.tenants()[0].customer_id, c.tenants()[0].customer_id);
}

#[test]
fn a_thousand_small_tenants_are_cheap() {
    let t0 = Instant::now();
    let sim = Simulator::new(SimOptions {
        tenants: 1000,
        sessions_per_day: 10,
        ..SimOptions::default()
    });
    let took = t0.elapsed();
    let tenants = sim.tenants();
    assert_eq!(tenants.len(), 1000);
    let mut ids: Vec<&str> = tenants.iter().map(|t| t.customer_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "customer ids are unique");
    println!("generated 1000 small tenants in {took:?}");
}
