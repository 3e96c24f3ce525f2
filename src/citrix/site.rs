//! An on-premises site's way to Citrix: its Delivery Controllers tried in order (the next one
//! when a controller is down; the healthy one is remembered, as the token fallback does for
//! the cloud) and the lockout guard. A 401 after a complete handshake means the credentials
//! are wrong: it is logged once at ERROR naming the site and the setting, and every request of
//! the site then fails at once, without touching a controller, until the site's interval has
//! passed, so that a polling daemon cannot lock the service account in Active Directory. It
//! owns controller choice and that guard; the handshake is winauth.rs's, retries client.rs's.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::citrix::conn::Connector;
use crate::citrix::winauth::{self, Answer, Authenticated, WinAuthError};
use crate::config::SiteConfig;

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(
        "site {tenant}: {controller} rejected the credentials of {user} (HTTP 401 after a \
         complete {scheme} handshake) — check `{user_key}` and `{password_key}` (and that the \
         account is a CVAD administrator, read-only is enough); not retried for {backoff_s} s so \
         the account is not locked"
    )]
    Rejected {
        tenant: String,
        controller: String,
        user: String,
        scheme: &'static str,
        user_key: String,
        password_key: String,
        backoff_s: u64,
    },
    #[error(
        "site {tenant}: credentials were rejected {ago_s} s ago; no request until {left_s} s \
         from now (fix `{password_key}` / `{user_key}` and reload)"
    )]
    LockedOut {
        tenant: String,
        ago_s: u64,
        left_s: u64,
        user_key: String,
        password_key: String,
    },
    #[error("site {tenant}: no controller answered: {}", attempts.join("; "))]
    Unavailable {
        tenant: String,
        attempts: Vec<String>,
    },
    #[error("site {tenant}: {controller}: {error}")]
    Handshake {
        tenant: String,
        controller: String,
        error: WinAuthError,
    },
}

impl SiteError {
    /// Only a site whose controllers are all away is worth another attempt soon.
    pub fn retryable(&self) -> bool {
        matches!(self, SiteError::Unavailable { .. })
    }
}

#[derive(Debug, Default)]
pub struct SiteStats {
    pub handshakes: AtomicU64,
    pub rejections: AtomicU64,
    pub controller_switches: AtomicU64,
    /// Nanoseconds spent in handshakes that succeeded (for the mean, with `handshakes`).
    pub handshake_nanos: AtomicU64,
}

pub struct Site {
    tenant: String,
    cfg: SiteConfig,
    /// Boxed: keeps a site near the size of a cloud tenant's token source.
    connector: Box<Connector>,
    /// Index of the controller that answered last.
    healthy: AtomicUsize,
    /// When the credentials were last rejected.
    rejected_at: Mutex<Option<Instant>>,
    /// How long a rejection silences the site: its interval.
    backoff: Duration,
    /// Which package authenticated last (for `check`).
    last_scheme: Mutex<Option<Authenticated>>,
    pub stats: SiteStats,
}

impl Site {
    pub fn new(tenant: &str, cfg: SiteConfig, connector: Connector, backoff: Duration) -> Self {
        for c in &cfg.controllers {
            if c.starts_with("http://") {
                tracing::warn!(tenant, controller = %c,
                    "Controller over plain HTTP: the Monitor data crosses the network unencrypted \
                     (NTLM protects the password, not the data); enable TLS on the Monitor \
                     service (netsh http add sslcert; Citrix.Monitor.Exe -RequireODataTls).");
            }
        }
        Site {
            tenant: tenant.to_string(),
            cfg,
            connector: Box::new(connector),
            healthy: AtomicUsize::new(0),
            rejected_at: Mutex::new(None),
            backoff,
            last_scheme: Mutex::new(None),
            stats: SiteStats::default(),
        }
    }

    /// The Monitor base URL of the controller to start a walk on: the last healthy one.
    pub fn base_url(&self) -> &str {
        let i = self.healthy.load(Ordering::Relaxed) % self.cfg.controllers.len();
        &self.cfg.controllers[i]
    }

    pub fn config(&self) -> &SiteConfig {
        &self.cfg
    }

    pub fn last_scheme(&self) -> Option<Authenticated> {
        *self.last_scheme.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fails while a credential rejection silences the site; the cycle's first step.
    // The error names everything an operator needs; it is built at most once an interval.
    #[allow(clippy::result_large_err)]
    pub fn ready(&self) -> Result<(), SiteError> {
        let at = *self.rejected_at.lock().unwrap_or_else(|e| e.into_inner());
        match at {
            Some(at) if at.elapsed() < self.backoff => Err(SiteError::LockedOut {
                tenant: self.tenant.clone(),
                ago_s: at.elapsed().as_secs(),
                left_s: (self.backoff - at.elapsed()).as_secs(),
                user_key: self.cfg.user_key.clone(),
                password_key: self.cfg.password_key.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// GETs `url` (a URL under any of the site's controllers) from the healthy controller,
    /// then the others in order while they are unreachable or answer 502/503/504.
    pub async fn get(&self, url: &str) -> Result<reqwest::Response, SiteError> {
        self.ready()?;
        let n = self.cfg.controllers.len();
        let start = self.healthy.load(Ordering::Relaxed) % n;
        let path = self.path_of(url);
        let mut attempts = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            let controller = &self.cfg.controllers[i];
            let target = match path {
                Some(p) => format!("{controller}{p}"),
                None => url.to_string(),
            };
            let began = Instant::now();
            self.stats.handshakes.fetch_add(1, Ordering::Relaxed);
            match winauth::get(&self.connector, &self.cfg, &target).await {
                Ok(Answer {
                    response,
                    authenticated,
                }) => {
                    let s = response.status().as_u16();
                    if matches!(s, 502..=504) && k + 1 < n {
                        attempts.push(format!("{controller}: HTTP {s}"));
                        continue;
                    }
                    self.stats
                        .handshake_nanos
                        .fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    *self.last_scheme.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(authenticated);
                    if i != start {
                        self.healthy.store(i, Ordering::Relaxed);
                        self.stats
                            .controller_switches
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(tenant = %self.tenant, controller = %controller,
                            failed = %attempts.join("; "),
                            "Controller unavailable; the next controller of the site answered and is used from now on.");
                    }
                    return Ok(response);
                }
                Err(WinAuthError::Transport(why)) => {
                    attempts.push(format!("{controller}: {why}"));
                }
                Err(WinAuthError::Rejected { scheme }) => {
                    self.stats.rejections.fetch_add(1, Ordering::Relaxed);
                    *self.rejected_at.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(Instant::now());
                    let e = SiteError::Rejected {
                        tenant: self.tenant.clone(),
                        controller: controller.clone(),
                        user: format!("{}\\{}", self.cfg.domain, self.cfg.user),
                        scheme,
                        user_key: self.cfg.user_key.clone(),
                        password_key: self.cfg.password_key.clone(),
                        backoff_s: self.backoff.as_secs(),
                    };
                    tracing::error!(tenant = %self.tenant, error = %e, "Windows authentication failed.");
                    return Err(e);
                }
                Err(error) => {
                    return Err(SiteError::Handshake {
                        tenant: self.tenant.clone(),
                        controller: controller.clone(),
                        error,
                    });
                }
            }
        }
        Err(SiteError::Unavailable {
            tenant: self.tenant.clone(),
            attempts,
        })
    }

    /// The part of `url` after the controller base it starts with.
    fn path_of<'u>(&self, url: &'u str) -> Option<&'u str> {
        self.cfg
            .controllers
            .iter()
            .find_map(|c| url.strip_prefix(c.as_str()))
            .filter(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
    }
}
