//! Simulated latency of the Citrix Cloud services: how long a Monitor or token request waits
//! before its first byte (lognormal by p50 and p99), which tenants are slower than the rest,
//! how fast a body streams, and the API-wide budget of requests in flight. Every draw is a
//! pure function of the seed, the tenant and the tenant's request counter, so a run repeats.
//! It decides durations only; it must not sleep, count or answer (server.rs does).
//!
//! Units: every duration here is *simulated* time. The server sleeps `simulated / time_scale`
//! of wall time (`SimOptions::time_scale`), and the statistics report simulated time, so a
//! tenant's ideal cycle reads the same at any time scale.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// z of the 99th percentile of the standard normal distribution.
const Z99: f64 = 2.326_347_874;
/// Draws beyond this many standard deviations are clamped (about 1 request in 150,000 on
/// each side), so one unlucky request cannot wait for minutes.
const Z_MAX: f64 = 4.5;
/// Hash streams, so that the first-byte draw and the slow-tenant choice are independent.
const STREAM_WAIT: u64 = 0x5741_4954;
const STREAM_SLOW: u64 = 0x534c_4f57;

/// The latency settings. All off by default: no wait, no streaming limit, no budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Latency {
    /// Median wait before the first byte, in ms; 0 switches the wait off.
    pub p50_ms: f64,
    /// 99th percentile of that wait, in ms (at least `p50_ms`; equal means no spread).
    pub p99_ms: f64,
    /// Share of tenants (0..=1) that are slower, chosen from the seed per tenant.
    pub slow_share: f64,
    /// How much slower they are: their wait is multiplied and their stream rate divided by it.
    pub slow_factor: f64,
    /// Bytes per second of one response body (simulated time); 0 sends bodies at once.
    pub stream_rate: u64,
    /// Monitor requests in flight across all tenants beyond which the answer is 429 with
    /// `Retry-After`; 0 means no budget.
    pub api_budget: u64,
    /// The `Retry-After` seconds of a budget 429.
    pub retry_after_secs: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            p50_ms: 0.0,
            p99_ms: 0.0,
            slow_share: 0.0,
            slow_factor: 3.0,
            stream_rate: 0,
            api_budget: 0,
            retry_after_secs: 1,
        }
    }
}

impl Latency {
    /// Checks the ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let finite = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("{name} must be a finite number ≥ 0, not {v}"))
            }
        };
        finite("p50_ms", self.p50_ms)?;
        finite("p99_ms", self.p99_ms)?;
        finite("slow_factor", self.slow_factor)?;
        if self.p50_ms > 3_600_000.0 || self.p99_ms > 3_600_000.0 {
            return Err("p50_ms and p99_ms must be at most an hour".into());
        }
        if self.p50_ms > 0.0 && self.p99_ms < self.p50_ms {
            return Err(format!(
                "p99_ms ({}) must be at least p50_ms ({})",
                self.p99_ms, self.p50_ms
            ));
        }
        if !(0.0..=1.0).contains(&self.slow_share) {
            return Err(format!(
                "slow_share must be from 0 to 1, not {}",
                self.slow_share
            ));
        }
        if !(1.0..=1000.0).contains(&self.slow_factor) {
            return Err(format!(
                "slow_factor must be from 1 to 1000, not {}",
                self.slow_factor
            ));
        }
        if self.retry_after_secs > 3600 {
            return Err("retry_after_secs must be at most 3600".into());
        }
        Ok(())
    }

    /// σ of the lognormal: `ln(p99 / p50) / 2.326`.
    pub fn sigma(&self) -> f64 {
        if self.p50_ms > 0.0 && self.p99_ms > self.p50_ms {
            (self.p99_ms / self.p50_ms).ln() / Z99
        } else {
            0.0
        }
    }

    /// Whether tenant `tenant` is one of the slow ones (independent of the request).
    pub fn is_slow(&self, seed: u64, tenant: usize) -> bool {
        self.slow_share > 0.0 && unit(mix(&[seed, tenant as u64, STREAM_SLOW])) < self.slow_share
    }

    fn factor(&self, seed: u64, tenant: usize) -> f64 {
        if self.is_slow(seed, tenant) {
            self.slow_factor
        } else {
            1.0
        }
    }

    /// The wait before the first byte of the tenant's `n`-th request: `p50 · e^(σz)`, z standard
    /// normal from (seed, tenant, n) by Box–Muller, clamped to ±4.5; times the slow factor.
    pub fn first_byte(&self, seed: u64, tenant: usize, n: u64) -> Duration {
        if self.p50_ms <= 0.0 {
            return Duration::ZERO;
        }
        let u1 = unit(mix(&[seed, tenant as u64, n, STREAM_WAIT, 1]));
        let u2 = unit(mix(&[seed, tenant as u64, n, STREAM_WAIT, 2]));
        let z = ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()).clamp(-Z_MAX, Z_MAX);
        let ms = self.p50_ms * (self.sigma() * z).exp() * self.factor(seed, tenant);
        Duration::from_secs_f64(ms / 1000.0)
    }

    /// How long a body of `bytes` takes at the tenant's stream rate (zero when unlimited).
    pub fn stream_time(&self, seed: u64, tenant: usize, bytes: usize) -> Duration {
        if self.stream_rate == 0 {
            return Duration::ZERO;
        }
        let rate = self.stream_rate as f64 / self.factor(seed, tenant);
        Duration::from_secs_f64(bytes as f64 / rate)
    }
}

/// A uniform number in (0, 1) from a hash (never 0, so `ln` is finite).
fn unit(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// splitmix64 over the parts.
fn mix(parts: &[u64]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64;
    for &p in parts {
        h ^= p;
        h = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn citrix() -> Latency {
        Latency {
            p50_ms: 1000.0,
            p99_ms: 5000.0,
            ..Latency::default()
        }
    }

    fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    }

    #[test]
    fn draws_follow_p50_and_p99_and_repeat() {
        let l = citrix();
        let draws: Vec<f64> = (0..20_000)
            .map(|n| l.first_byte(7, (n % 100) as usize, n / 100).as_secs_f64() * 1000.0)
            .collect();
        let (p50, p99) = (quantile(draws.clone(), 0.5), quantile(draws, 0.99));
        assert!((900.0..1100.0).contains(&p50), "p50 {p50}");
        assert!((4300.0..5800.0).contains(&p99), "p99 {p99}");
        assert_eq!(l.first_byte(7, 3, 9), l.first_byte(7, 3, 9));
        assert_ne!(l.first_byte(7, 3, 9), l.first_byte(8, 3, 9));
        assert_eq!(Latency::default().first_byte(7, 3, 9), Duration::ZERO);
    }

    #[test]
    fn slow_share_and_factor() {
        let l = Latency {
            slow_share: 0.2,
            slow_factor: 4.0,
            stream_rate: 1000,
            ..citrix()
        };
        let slow: Vec<usize> = (0..2000).filter(|&t| l.is_slow(1, t)).collect();
        assert!((300..500).contains(&slow.len()), "{}", slow.len());
        let (s, f) = (slow[0], (0..).find(|t| !l.is_slow(1, *t)).unwrap());
        let ratio = l.first_byte(1, s, 0).as_secs_f64()
            / Latency {
                slow_share: 0.0,
                ..l.clone()
            }
            .first_byte(1, s, 0)
            .as_secs_f64();
        assert!((ratio - 4.0).abs() < 1e-6, "{ratio}");
        assert_eq!(l.stream_time(1, f, 500), Duration::from_millis(500));
        assert_eq!(l.stream_time(1, s, 500), Duration::from_secs(2));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |l: Latency| l.validate().unwrap_err();
        assert!(
            bad(Latency {
                p99_ms: 500.0,
                ..citrix()
            })
            .contains("p99_ms")
        );
        assert!(
            bad(Latency {
                slow_share: 1.5,
                ..citrix()
            })
            .contains("slow_share")
        );
        assert!(
            bad(Latency {
                p50_ms: f64::NAN,
                ..citrix()
            })
            .contains("p50_ms")
        );
        assert!(citrix().validate().is_ok());
        assert!(serde_json::from_str::<Latency>(r#"{"p50":1}"#).is_err());
    }
}
