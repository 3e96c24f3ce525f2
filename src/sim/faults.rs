//! Switchable misbehaviour per simulated tenant (gateway errors on the token hosts, 429, 500,
//! truncated JSON, slowness, token expiry), so that tests can prove the client's retry and
//! fallback paths, and the incidents an operator should be alerted to (a logon storm, a
//! delivery group deregistering, a failure spike, a harvest that stops). It holds the switches
//! and their countdowns; it must not decide routing or write responses (server.rs applies
//! them) nor change data (incident.rs does).

use serde::{Deserialize, Serialize};

/// What a token host does instead of answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenFault {
    /// 502 Bad Gateway.
    #[serde(rename = "502")]
    BadGateway,
    /// 504 Gateway Timeout.
    #[serde(rename = "504")]
    GatewayTimeout,
    /// No answer for an hour (longer than any sane client timeout); aborted on shutdown.
    #[serde(rename = "timeout")]
    Timeout,
}

/// Faults of one tenant; all off by default. Build with `..Default::default()` so that new
/// switches do not break callers. Counters count down as requests consume them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Applies to token requests on the regional listener only (persistent until cleared).
    pub regional_token: Option<TokenFault>,
    /// Applies to token requests on the fallback listener only (persistent until cleared).
    pub fallback_token: Option<TokenFault>,
    /// The next N Monitor requests get 429.
    pub throttle_429: u32,
    /// `Retry-After` seconds sent with injected 429s; `None` sends no header.
    pub retry_after_secs: Option<u64>,
    /// The next N Monitor requests get 500.
    pub error_500: u32,
    /// The next N 200 Monitor responses have a truncated body.
    pub malformed_json: u32,
    /// Delay before every Monitor response (the request stays in flight meanwhile).
    pub slow_ms: u64,
    /// One-shot: every token issued so far for the tenant is rejected with 401 from now on;
    /// fresh tokens work. Reads back as `false` once applied.
    pub expire_tokens: bool,
    /// One-shot: right after the next 200 page that has a nextLink, of a set with a
    /// `ModifiedDate`, the first row of that page gets `ModifiedDate` = the simulator's now, as
    /// if it were modified while the client pages. With `$orderby=ModifiedDate` the row moves
    /// to the end, so every later `$skip` shifts by one: the row after the page boundary is
    /// never served in this walk, and the moved row is served twice. Reads back as `false`
    /// once applied.
    pub touch_after_page: bool,
    /// Incidents in the tenant's estate. Each one changes the data once, when it is first
    /// switched on (what happened stays in the history, as in Citrix); `harvest_stop` acts for
    /// as long as it is in the list.
    pub incidents: Vec<Incident>,
}

/// Something going wrong in a tenant's estate, as the Monitor API would show it
/// (citrix-monitor-api.md §3–4); incident.rs writes it into the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Incident {
    /// `logons` logons in the last `minutes` in one delivery group, each with a profile load
    /// of 2–5 minutes (a profile store that is slow under load): the logon duration climbs.
    LogonStorm {
        /// Delivery group name; the tenant's first group if absent.
        #[serde(default)]
        delivery_group: Option<String>,
        #[serde(default = "default_storm_logons")]
        logons: u32,
        #[serde(default = "default_minutes")]
        minutes: u32,
    },
    /// Every powered-on machine of one delivery group deregisters 20 minutes before now
    /// (ContactLost): half stay Unregistered, a quarter are StuckOnBoot, a quarter
    /// FailedToStart (powered off).
    Deregistration {
        #[serde(default)]
        delivery_group: Option<String>,
    },
    /// `failures` failed launches of one ConnectionFailureType `category` (e.g.
    /// `NoCapacityAvailable`) in the last `minutes`.
    FailureSpike {
        category: String,
        #[serde(default)]
        delivery_group: Option<String>,
        #[serde(default = "default_spike_failures")]
        failures: u32,
        #[serde(default = "default_minutes")]
        minutes: u32,
    },
    /// Both token hosts answer 502 Bad Gateway, so the tenant's harvest stops.
    HarvestStop {},
}

fn default_storm_logons() -> u32 {
    60
}

fn default_spike_failures() -> u32 {
    40
}

fn default_minutes() -> u32 {
    45
}

/// What an injected fault does to one Monitor request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorFault {
    Throttle { retry_after_secs: Option<u64> },
    Error500,
}

impl Faults {
    /// What a token host does: its own switch, else a 502 during a `harvest_stop` incident.
    pub fn token_fault(&self, regional: bool) -> Option<TokenFault> {
        let own = if regional {
            self.regional_token
        } else {
            self.fallback_token
        };
        own.or(self
            .incidents
            .contains(&Incident::HarvestStop {})
            .then_some(TokenFault::BadGateway))
    }

    /// Consumes the fault (if any) that replaces the next Monitor response; 429 comes first.
    pub fn take_monitor_fault(&mut self) -> Option<MonitorFault> {
        if self.throttle_429 > 0 {
            self.throttle_429 -= 1;
            return Some(MonitorFault::Throttle {
                retry_after_secs: self.retry_after_secs,
            });
        }
        if self.error_500 > 0 {
            self.error_500 -= 1;
            return Some(MonitorFault::Error500);
        }
        None
    }

    /// Consumes one truncated-body switch; call only for a response that would be a 200.
    pub fn take_malformed(&mut self) -> bool {
        if self.malformed_json > 0 {
            self.malformed_json -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_count_down_in_order() {
        let mut f = Faults {
            throttle_429: 1,
            error_500: 1,
            retry_after_secs: Some(2),
            ..Default::default()
        };
        assert_eq!(
            f.take_monitor_fault(),
            Some(MonitorFault::Throttle {
                retry_after_secs: Some(2)
            })
        );
        assert_eq!(f.take_monitor_fault(), Some(MonitorFault::Error500));
        assert_eq!(f.take_monitor_fault(), None);
        assert!(!f.take_malformed());
    }

    #[test]
    fn json_shape_is_partial_and_strict() {
        let f: Faults = serde_json::from_str(
            r#"{"regional_token":"504","fallback_token":"timeout","slow_ms":5}"#,
        )
        .unwrap();
        assert_eq!(f.regional_token, Some(TokenFault::GatewayTimeout));
        assert_eq!(f.fallback_token, Some(TokenFault::Timeout));
        assert_eq!(f.slow_ms, 5);
        assert!(
            serde_json::from_str::<Faults>(r#"{"throtle_429":1}"#).is_err(),
            "typos must fail loudly"
        );
        assert_eq!(serde_json::to_value(TokenFault::BadGateway).unwrap(), "502");
    }

    #[test]
    fn incidents_parse_with_defaults_and_harvest_stop_fails_both_token_hosts() {
        let f: Faults = serde_json::from_str(
            r#"{"incidents":[{"kind":"logon_storm","delivery_group":"Sales"},
                {"kind":"failure_spike","category":"NoCapacityAvailable"},
                {"kind":"harvest_stop"}]}"#,
        )
        .unwrap();
        assert_eq!(
            f.incidents[0],
            Incident::LogonStorm {
                delivery_group: Some("Sales".into()),
                logons: 60,
                minutes: 45
            }
        );
        assert!(matches!(
            &f.incidents[1],
            Incident::FailureSpike { failures: 40, .. }
        ));
        assert_eq!(f.token_fault(true), Some(TokenFault::BadGateway));
        assert_eq!(f.token_fault(false), Some(TokenFault::BadGateway));
        assert_eq!(Faults::default().token_fault(true), None);
        assert!(
            serde_json::from_str::<Faults>(r#"{"incidents":[{"kind":"logon_strom"}]}"#).is_err()
        );
        assert!(
            serde_json::from_str::<Faults>(r#"{"incidents":[{"kind":"harvest_stop","x":1}]}"#)
                .is_err()
        );
    }
}
