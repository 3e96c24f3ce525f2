//! Request statistics of the simulator, per tenant, as served by `GET /_sim/stats` and
//! `SimHandle::stats`. Tests use them to prove client behaviour (one request at a time, retries,
//! token fallback). It only counts; it must not influence responses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Token requests by the listener that received them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequests {
    pub regional: u64,
    pub fallback: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantStats {
    /// Monitor requests naming this tenant (any outcome).
    pub requests: u64,
    /// Token requests attributed to this tenant (by path customer id, or client id on `root`).
    pub token_requests: TokenRequests,
    /// 429 answers, from the one-request-at-a-time rule and from the `throttle_429` fault.
    pub responses_429: u64,
    /// 401/403 answers to Monitor requests (bad, expired or foreign tokens).
    pub responses_401: u64,
    /// Injected 500 answers.
    pub responses_500: u64,
    /// The most Monitor requests of this tenant ever in flight at once (a request answered
    /// with 429 counts too): 1 for a well-behaved client.
    pub max_in_flight: u64,
    /// Top-level rows served in 200 answers, per entity set (expanded rows not counted).
    pub rows_served: BTreeMap<String, u64>,
}

/// All tenants, keyed by customer id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimStats {
    pub tenants: BTreeMap<String, TenantStats>,
    /// The most Monitor requests ever in flight at once over all tenants (API-wide).
    pub max_in_flight: u64,
}
