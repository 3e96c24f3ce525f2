//! Starting the in-process Monitor API simulator for an integration test: on loopback, with
//! the given options (the test picks tenants, seed, page size, simulated present and history),
//! and a tenant's bearer token from its token endpoint over HTTP.

use std::net::{IpAddr, Ipv4Addr};

use citrix_harvester::sim::{SimHandle, SimOptions, SimTenant, Simulator};
use reqwest::Client;
use serde_json::Value;

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

/// The form of a client-credentials token request as tenant `t`.
pub fn client_credentials(t: &SimTenant) -> [(&'static str, &str); 3] {
    [
        ("grant_type", "client_credentials"),
        ("client_id", &t.client_id),
        ("client_secret", &t.client_secret),
    ]
}

/// Tenant `t`'s access token from the simulator's regional host `h`.
pub async fn token(c: &Client, h: &SimHandle, t: &SimTenant) -> String {
    token_from(c, &h.regional_url(), t).await
}

/// Tenant `t`'s access token from the token endpoint of `base` (a regional URL): asserts
/// the answer is 200 with an `access_token`.
pub async fn token_from(c: &Client, base: &str, t: &SimTenant) -> String {
    let r = c
        .post(format!(
            "{base}/cctrustoauth2/{}/tokens/clients",
            t.customer_id
        ))
        .form(&client_credentials(t))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}
