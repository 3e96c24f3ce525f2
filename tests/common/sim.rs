//! Starting the in-process Monitor API simulator for an integration test: on loopback, with
//! the given options (the test picks tenants, seed, page size, simulated present and history).

use std::net::{IpAddr, Ipv4Addr};

use citrix_harvester::sim::{SimHandle, SimOptions, Simulator};

/// The simulator with `opts`, listening on 127.0.0.1 (its regional and fallback hosts).
pub async fn start(opts: SimOptions) -> SimHandle {
    Simulator::new(opts)
        .start(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .await
        .expect("simulator starts")
}

/// `tenants` tenants of seed `seed` at the real present, everything else default.
pub async fn start_now(tenants: usize, seed: u64) -> SimHandle {
    start(SimOptions {
        tenants,
        seed,
        now: citrix_harvester::scheduler::minute_now(),
        ..SimOptions::default()
    })
    .await
}
