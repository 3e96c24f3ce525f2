//! Access tokens issued by the simulated Citrix Cloud token endpoint, and parsing of the
//! `Authorization: CWSAuth bearer=<token>` header the Monitor Service expects. It decides
//! whether a token is valid for a tenant; it must not write HTTP responses.
//!
//! The scheme (`CWSAuth`) and the parameter name (`bearer`) are matched case-insensitively
//! because official material spells them both ways (citrix-monitor-api.md §1.4). A plain
//! `Bearer <token>` header is rejected: no Citrix source shows it working on monitorodata,
//! and whether the real service accepts it is unverified, so clients must not rely on it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Duration, Instant};

struct Issued {
    tenant: usize,
    expires: Instant,
    revoked: bool,
}

/// Outcome of checking a presented token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    Valid {
        tenant: usize,
    },
    /// Past its lifetime or revoked by the `expire_tokens` fault.
    Expired {
        tenant: usize,
    },
    Unknown,
}

pub struct Tokens {
    issued: Mutex<HashMap<String, Issued>>,
    counter: AtomicU64,
    seed: u64,
}

impl Tokens {
    pub fn new(seed: u64) -> Tokens {
        Tokens {
            issued: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
            seed,
        }
    }

    /// A fresh opaque token for `tenant`, valid for `lifetime`.
    pub fn issue(&self, tenant: usize, lifetime: Duration) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut rng = StdRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let token = format!(
            "sim1.{n:x}.{:032x}{:016x}",
            rng.random::<u128>(),
            rng.random::<u64>()
        );
        let now = Instant::now();
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        // Forget long-dead tokens now and then so a long benchmark does not grow without bound.
        if issued.len() > 10_000 {
            issued.retain(|_, t| t.expires + Duration::from_secs(3600) > now);
        }
        issued.insert(
            token.clone(),
            Issued {
                tenant,
                expires: now + lifetime,
                revoked: false,
            },
        );
        token
    }

    pub fn check(&self, token: &str) -> TokenCheck {
        let issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        match issued.get(token) {
            None => TokenCheck::Unknown,
            Some(t) if t.revoked || Instant::now() >= t.expires => {
                TokenCheck::Expired { tenant: t.tenant }
            }
            Some(t) => TokenCheck::Valid { tenant: t.tenant },
        }
    }

    /// Makes every token issued so far for `tenant` invalid.
    pub fn revoke_tenant(&self, tenant: usize) {
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        for t in issued.values_mut().filter(|t| t.tenant == tenant) {
            t.revoked = true;
        }
    }
}

/// Extracts the token from `CWSAuth bearer=<token>` (case-insensitive scheme and parameter,
/// optional quotes around the token). `None` for any other form, including plain `Bearer`.
pub fn parse_authorization(header: &str) -> Option<&str> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("CWSAuth") {
        return None;
    }
    let (name, value) = rest.trim().split_once('=')?;
    if !name.trim().eq_ignore_ascii_case("bearer") {
        return None;
    }
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    if value.is_empty() { None } else { Some(value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_forms() {
        assert_eq!(parse_authorization("CWSAuth bearer=abc"), Some("abc"));
        assert_eq!(parse_authorization("CwsAuth Bearer=abc"), Some("abc"));
        assert_eq!(parse_authorization("cwsauth BEARER=\"abc\""), Some("abc"));
        assert_eq!(
            parse_authorization("  CWSAuth   bearer = abc "),
            Some("abc")
        );
        assert_eq!(parse_authorization("Bearer abc"), None);
        assert_eq!(parse_authorization("CWSAuth abc"), None);
        assert_eq!(parse_authorization("CWSAuth token=abc"), None);
        assert_eq!(parse_authorization("CWSAuth bearer="), None);
        assert_eq!(parse_authorization("CWSAuthbearer=abc"), None);
    }

    #[test]
    fn tokens_expire_and_revoke_per_tenant() {
        let t = Tokens::new(1);
        let a = t.issue(0, Duration::from_secs(60));
        let b = t.issue(1, Duration::from_secs(60));
        let dead = t.issue(0, Duration::ZERO);
        assert_ne!(a, b);
        assert_eq!(t.check(&a), TokenCheck::Valid { tenant: 0 });
        assert_eq!(t.check(&dead), TokenCheck::Expired { tenant: 0 });
        assert_eq!(t.check("nope"), TokenCheck::Unknown);
        t.revoke_tenant(0);
        assert_eq!(t.check(&a), TokenCheck::Expired { tenant: 0 });
        assert_eq!(t.check(&b), TokenCheck::Valid { tenant: 1 });
        let fresh = t.issue(0, Duration::from_secs(60));
        assert_eq!(t.check(&fresh), TokenCheck::Valid { tenant: 0 });
    }
}
