//! Switchable misbehaviour per simulated tenant (gateway errors on the token hosts, 429, 500,
//! truncated JSON, slowness, token expiry), so that tests can prove the client's retry and
//! fallback paths. It holds the switches and their countdowns; it must not decide routing or
//! write responses (server.rs applies them).

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
}

/// What an injected fault does to one Monitor request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorFault {
    Throttle { retry_after_secs: Option<u64> },
    Error500,
}

impl Faults {
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
}
