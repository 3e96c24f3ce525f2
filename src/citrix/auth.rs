//! The token source of one tenant: OAuth2 client credentials against the regional Citrix Cloud
//! token URL first, then the fallback URL (the seed's Azure westeurope host by default) when
//! the regional one fails; the token is cached until shortly before it expires. It owns token
//! life-cycle only: it never calls the Monitor API and never logs a secret.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::secret::{Secret, redact_all};

/// A token answer is a few KB; anything above this is not one.
const MAX_TOKEN_BODY: usize = 1 << 20;
/// Lifetimes beyond this are taken as this (Citrix issues one-hour tokens; a server's
/// `expires_in` of 2^64-1 must not overflow the clock).
const MAX_LIFETIME: Duration = Duration::from_secs(86_400);

/// Which token URL answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Regional,
    Fallback,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Endpoint::Regional => "regional",
            Endpoint::Fallback => "fallback",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "tenant {tenant}: token request to {url} was rejected ({status}): {error} {description} \
         — check client_id and the client secret of this tenant"
    )]
    Rejected {
        tenant: String,
        url: String,
        status: u16,
        error: String,
        description: String,
    },
    #[error("tenant {tenant}: no token endpoint answered: {}", attempts.join("; "))]
    Unavailable {
        tenant: String,
        attempts: Vec<String>,
    },
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    /// A string ("3600") in Citrix's answer, a number in the OAuth2 RFC: accept both.
    expires_in: Option<serde_json::Value>,
    error: Option<String>,
    error_description: Option<String>,
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
    endpoint: Endpoint,
}

/// Counters the health endpoint and `check` report.
#[derive(Debug, Default)]
pub struct AuthStats {
    pub fetches: AtomicU64,
    pub fallback_uses: AtomicU64,
    pub failures: AtomicU64,
}

pub struct TokenSource {
    http: reqwest::Client,
    tenant: String,
    client_id: String,
    secret: Secret,
    regional: String,
    fallback: Option<String>,
    timeout: Duration,
    cache: Mutex<Option<Cached>>,
    pub stats: AuthStats,
}

/// A token fetch outcome of one endpoint, before fallback is considered.
enum Attempt {
    Ok(Secret, Duration),
    /// The server said the credentials are wrong: the fallback would say the same.
    Rejected(AuthError),
    Failed(String),
}

impl TokenSource {
    pub fn new(
        http: reqwest::Client,
        tenant: &str,
        client_id: &str,
        secret: Secret,
        regional: &str,
        fallback: Option<&str>,
        timeout: Duration,
    ) -> Self {
        TokenSource {
            http,
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
            secret,
            regional: regional.to_string(),
            fallback: fallback.map(str::to_string),
            timeout,
            cache: Mutex::new(None),
            stats: AuthStats::default(),
        }
    }

    /// A valid token: the cached one, or a fresh one when it is about to expire.
    pub async fn token(&self) -> Result<Secret, AuthError> {
        self.token_and_endpoint().await.map(|(t, _)| t)
    }

    /// Like [`TokenSource::token`], plus which endpoint issued it (`check` shows it).
    pub async fn token_and_endpoint(&self) -> Result<(Secret, Endpoint), AuthError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok((c.token.clone(), c.endpoint));
        }
        let (token, lifetime, endpoint) = self.fetch().await?;
        *cache = Some(Cached {
            token: token.clone(),
            // Checked: a lifetime from the network must never overflow the clock.
            refresh_at: Instant::now()
                .checked_add(refresh_after(lifetime))
                .unwrap_or_else(|| Instant::now() + MAX_LIFETIME),
            endpoint,
        });
        Ok((token, endpoint))
    }

    /// The token URLs: regional, then the fallback if any.
    pub fn urls(&self) -> (&str, Option<&str>) {
        (&self.regional, self.fallback.as_deref())
    }

    /// `text` from a server with this tenant's client secret and `token` removed.
    pub fn redact(&self, text: &str, token: &Secret) -> String {
        redact_all(text, &[&self.secret, token])
    }

    /// Forgets the cached token (after a 401 from the Monitor API) and fetches a new one.
    pub async fn refresh(&self) -> Result<Secret, AuthError> {
        *self.cache.lock().await = None;
        self.token().await
    }

    /// Fetches a token, regional first; returns which endpoint answered.
    pub async fn fetch(&self) -> Result<(Secret, Duration, Endpoint), AuthError> {
        self.stats.fetches.fetch_add(1, Ordering::Relaxed);
        let mut attempts = Vec::new();
        match self.attempt(&self.regional).await {
            Attempt::Ok(t, life) => return Ok((t, life, Endpoint::Regional)),
            Attempt::Rejected(e) if self.fallback.is_none() => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
            Attempt::Rejected(e) => attempts.push(e.to_string()),
            Attempt::Failed(why) => attempts.push(format!("{}: {why}", self.regional)),
        }
        if let Some(fallback) = &self.fallback {
            tracing::warn!(tenant = %self.tenant, regional = %self.regional, fallback = %fallback,
                reason = %attempts.last().map(String::as_str).unwrap_or(""),
                "Regional token endpoint failed; trying the fallback.");
            match self.attempt(fallback).await {
                Attempt::Ok(t, life) => {
                    self.stats.fallback_uses.fetch_add(1, Ordering::Relaxed);
                    return Ok((t, life, Endpoint::Fallback));
                }
                Attempt::Rejected(e) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
                Attempt::Failed(why) => attempts.push(format!("{fallback}: {why}")),
            }
        }
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        Err(AuthError::Unavailable {
            tenant: self.tenant.clone(),
            attempts,
        })
    }

    async fn attempt(&self, url: &str) -> Attempt {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.expose()),
        ];
        let resp = match self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .timeout(self.timeout)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Attempt::Failed(format!("timed out after {:?}", self.timeout));
            }
            Err(e) => return Attempt::Failed(format!("request failed: {}", error_chain(&e))),
        };
        let status = resp.status();
        if status.is_redirection() {
            // Never followed: the form carries the client secret.
            let location = crate::body::location(&resp);
            return Attempt::Failed(format!(
                "HTTP {status} redirect to `{}` refused: the token request carries the client \
                 secret and is never redirected (check token_url)",
                self.secret.redact(&location)
            ));
        }
        let read = crate::body::read_limited(resp, MAX_TOKEN_BODY);
        let body = match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(Err(e)) => return Attempt::Failed(format!("{status}: {e}")),
            Err(_) => {
                return Attempt::Failed(format!(
                    "{status}: body not read within {:?}",
                    self.timeout
                ));
            }
        };
        let parsed: Option<TokenResponse> = serde_json::from_str(&body).ok();
        if matches!(status.as_u16(), 400 | 401 | 403) {
            // The server's own words, without our secret if it quotes the request back.
            let clean = |t: Option<String>| {
                let t = self.secret.redact(&t.unwrap_or_default());
                crate::body::snippet(t.as_bytes())
            };
            let (error, description) = parsed
                .map(|p| (clean(p.error), clean(p.error_description)))
                .unwrap_or_default();
            return Attempt::Rejected(AuthError::Rejected {
                tenant: self.tenant.clone(),
                url: url.to_string(),
                status: status.as_u16(),
                error,
                description,
            });
        }
        if !status.is_success() {
            return Attempt::Failed(format!("HTTP {status}"));
        }
        let Some(parsed) = parsed else {
            return Attempt::Failed(format!("HTTP {status} but the body is not token JSON"));
        };
        let Some(token) = parsed.access_token.filter(|t| !t.is_empty()) else {
            return Attempt::Failed("answer has no access_token".into());
        };
        let lifetime = parsed
            .expires_in
            .as_ref()
            .and_then(|v| match v {
                serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
                serde_json::Value::Number(n) => n.as_u64(),
                _ => None,
            })
            .unwrap_or(3600);
        let lifetime = Duration::from_secs(lifetime);
        if lifetime > MAX_LIFETIME {
            tracing::warn!(tenant = %self.tenant, url, expires_in_s = lifetime.as_secs(),
                max_s = MAX_LIFETIME.as_secs(), "Token lifetime beyond a day; it is refreshed after a day.");
        }
        Attempt::Ok(Secret::new(token), lifetime.min(MAX_LIFETIME))
    }
}

/// When to fetch again: 5 minutes before expiry, or at half-life for short-lived tokens.
fn refresh_after(lifetime: Duration) -> Duration {
    let margin = Duration::from_secs(300).min(lifetime / 2);
    lifetime - margin
}

pub use crate::body::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_margin() {
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(3300)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }
}
