//! Windows authentication of one Monitor request to an on-premises Delivery Controller: the
//! NTLM or Negotiate (Kerberos, else NTLM) handshake over HTTP, driven by the pure-Rust `sspi`
//! crate. The controller's HTTP.sys listener re-authenticates every request and binds NTLM's
//! legs to one TCP connection, so each request is a whole handshake on a connection of its own
//! (conn.rs: plain or TLS, direct or through a proxy's CONNECT tunnel), its legs sent strictly
//! one after the other with every 401 body drained. It owns the handshake only: which
//! controller, retries, lockout backoff and logging are the site's (site.rs); it never logs or
//! returns the password.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use base64::Engine as _;
use sspi::{
    AuthIdentity, BufferType, ClientRequestFlags, Credentials, CredentialsBuffers,
    DataRepresentation, Negotiate, NegotiateConfig, Ntlm, SecurityBuffer, SecurityStatus, Sspi,
    SspiImpl, Username,
    generator::{GeneratorState, NetworkRequest},
    negotiate::NegotiatedProtocol,
    network_client::NetworkProtocol,
};

use crate::citrix::conn::{ConnError, Connector, Pinned};
use crate::config::{SiteConfig, WinAuthKind};

/// A KDC answer (a ticket) is a few KB; anything above this is not one.
const MAX_KDC_REPLY: usize = 1 << 20;
const KDC_TIMEOUT: Duration = Duration::from_secs(10);
/// Client-side legs of one handshake (NTLM: 2, Kerberos: 1, SPNEGO with NTLM: 2) plus margin.
const MAX_LEGS: usize = 4;
/// 401 bodies are drained (so the connection stays usable) up to this much.
const MAX_CHALLENGE_BODY: usize = 64 << 10;

/// Which package authenticated a request (`check` and the tests show it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authenticated {
    /// Raw NTLM (`Authorization: NTLM`).
    Ntlm,
    /// Kerberos inside Negotiate.
    Kerberos,
    /// NTLM inside Negotiate (no Kerberos ticket could be had).
    NegotiateNtlm,
    /// The server answered without asking for credentials.
    None,
}

impl Authenticated {
    pub fn label(self) -> &'static str {
        match self {
            Authenticated::Ntlm => "ntlm",
            Authenticated::Kerberos => "kerberos",
            Authenticated::NegotiateNtlm => "negotiate-ntlm",
            Authenticated::None => "none",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WinAuthError {
    /// 401 after the last leg of a complete handshake: the account, password or domain is wrong
    /// (or the account is locked or not allowed). Never retried.
    #[error(
        "the controller rejected the credentials (HTTP 401 after a complete {scheme} handshake)"
    )]
    Rejected { scheme: &'static str },
    /// The client could not build a token (a bad user name, no KDC for Kerberos, ...).
    #[error("{scheme} handshake failed on this side: {why}")]
    Client { scheme: &'static str, why: String },
    /// The server broke the protocol (no challenge, a challenge that is not base64, too many legs).
    #[error("{0}")]
    Protocol(String),
    /// The controller could not be reached or broke the connection (another one may answer).
    #[error("request failed: {0}")]
    Transport(String),
    /// A setting keeps every request from reaching the controller (its CA, the proxy or the
    /// proxy's credentials); the message names it. Not retried.
    #[error("{0}")]
    Setting(String),
}

impl From<ConnError> for WinAuthError {
    fn from(e: ConnError) -> Self {
        match e {
            ConnError::Transport(why) => WinAuthError::Transport(why),
            ConnError::Setting(why) => WinAuthError::Setting(why),
        }
    }
}

/// The final answer of an authenticated request (not a 401) and which package signed it.
pub struct Answer {
    pub response: reqwest::Response,
    pub authenticated: Authenticated,
}

/// GETs `url` with a full handshake of the site's scheme. For `negotiate`, a failure to get a
/// Kerberos ticket falls back to NTLM inside SPNEGO (sspi) and, when even that cannot start, to
/// raw NTLM: a client that only offers Negotiate fails where NTLM would work.
pub async fn get(
    connector: &Connector,
    site: &SiteConfig,
    url: &str,
) -> Result<Answer, WinAuthError> {
    match site.auth {
        WinAuthKind::Ntlm => handshake(connector, site, url, Package::Ntlm).await,
        WinAuthKind::Negotiate => match handshake(connector, site, url, Package::Negotiate).await {
            Err(WinAuthError::Client { why, .. }) => {
                tracing::debug!(url, why = %why, "Negotiate could not start; using NTLM.");
                handshake(connector, site, url, Package::Ntlm).await
            }
            other => other,
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Package {
    Ntlm,
    Negotiate,
}

impl Package {
    fn scheme(self) -> &'static str {
        match self {
            Package::Ntlm => "NTLM",
            Package::Negotiate => "Negotiate",
        }
    }
}

async fn handshake(
    connector: &Connector,
    site: &SiteConfig,
    url: &str,
    package: Package,
) -> Result<Answer, WinAuthError> {
    let scheme = package.scheme();
    let client_err = |why: String| WinAuthError::Client { scheme, why };
    let target = target_name(site, url)?;
    let mut ctx = SecurityContext::new(site, package).map_err(client_err)?;
    let mut input: Option<Vec<u8>> = None;
    let parsed = url::Url::parse(url)
        .map_err(|e| WinAuthError::Protocol(format!("`{url}` is not a URL: {e}")))?;
    // One connection for the whole handshake, so NTLM's legs cannot land on different ones.
    let mut conn = connector.connect(&parsed).await?;
    for _ in 0..MAX_LEGS {
        let (leg, back) = step_blocking(ctx, target.clone(), input.take()).await;
        ctx = back;
        let (token, status) = leg.map_err(client_err)?;
        let last_leg = status == SecurityStatus::Ok || status == SecurityStatus::CompleteNeeded;
        let header = format!(
            "{scheme} {}",
            base64::engine::general_purpose::STANDARD.encode(&token)
        );
        let resp = send_pinned(&mut conn, &parsed, &header).await?;
        let server_token = challenge_token(resp.headers(), scheme)?;
        if resp.status() != reqwest::StatusCode::UNAUTHORIZED {
            // Mutual authentication: Kerberos' answer proves the controller knows its key.
            if let Some(t) = server_token
                && !ctx.complete()
            {
                let (r, back) = step_blocking(ctx, target.clone(), Some(t)).await;
                ctx = back;
                r.map_err(|why| {
                    WinAuthError::Protocol(format!(
                        "the controller's {scheme} answer failed mutual authentication: {why}"
                    ))
                })?;
            }
            let authenticated = if ctx.complete() {
                ctx.authenticated()
            } else {
                Authenticated::None
            };
            return Ok(Answer {
                response: resp,
                authenticated,
            });
        }
        // Read the 401 to its end: a body left unread would close the connection the next leg
        // must use.
        let _ = crate::body::read_prefix(resp, MAX_CHALLENGE_BODY).await;
        match server_token {
            Some(t) if !last_leg => input = Some(t),
            _ => return Err(WinAuthError::Rejected { scheme }),
        }
    }
    Err(WinAuthError::Protocol(format!(
        "the controller asked for more than {MAX_LEGS} {scheme} legs"
    )))
}

/// One leg on the handshake's connection; the response is handed out as reqwest's type so
/// that the Monitor client reads every answer the same way.
async fn send_pinned(
    conn: &mut Pinned,
    u: &url::Url,
    authorization: &str,
) -> Result<reqwest::Response, WinAuthError> {
    let host = match u.port() {
        Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
        None => u.host_str().unwrap_or_default().to_string(),
    };
    let path = &u[url::Position::BeforePath..url::Position::AfterQuery];
    let req = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::AUTHORIZATION, authorization)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::ACCEPT_ENCODING, "identity")
        .header(
            http::header::USER_AGENT,
            concat!("citrix-harvester/", env!("CARGO_PKG_VERSION")),
        )
        .body(http_body_util::Empty::new())
        .map_err(|e| WinAuthError::Protocol(e.to_string()))?;
    conn.ready()
        .await
        .map_err(|e| WinAuthError::Transport(crate::citrix::auth::error_chain(&e)))?;
    let resp = conn
        .send_request(req)
        .await
        .map_err(|e| WinAuthError::Transport(crate::citrix::auth::error_chain(&e)))?;
    Ok(reqwest::Response::from(resp.map(reqwest::Body::wrap)))
}

/// `HTTP/<host>` of the controller unless the site names its SPN (a load-balancer alias has
/// none of its own).
fn target_name(site: &SiteConfig, url: &str) -> Result<String, WinAuthError> {
    if let Some(spn) = &site.spn {
        return Ok(spn.clone());
    }
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .ok_or_else(|| WinAuthError::Protocol(format!("`{url}` has no host")))?;
    Ok(format!(
        "HTTP/{}",
        host.trim_start_matches('[').trim_end_matches(']')
    ))
}

/// The token of `scheme` in a `WWW-Authenticate` header, if any.
fn challenge_token(
    headers: &reqwest::header::HeaderMap,
    scheme: &str,
) -> Result<Option<Vec<u8>>, WinAuthError> {
    for v in headers.get_all(reqwest::header::WWW_AUTHENTICATE) {
        let Ok(v) = v.to_str() else { continue };
        let mut parts = v.trim().splitn(2, ' ');
        let name = parts.next().unwrap_or("");
        if !name.eq_ignore_ascii_case(scheme) {
            continue;
        }
        let b64 = parts.next().unwrap_or("").trim();
        if b64.is_empty() {
            continue;
        }
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Some)
            .map_err(|e| {
                WinAuthError::Protocol(format!("the {scheme} challenge is not base64: {e}"))
            });
    }
    Ok(None)
}

/// One client security context, with its credentials handle.
enum SecurityContext {
    Ntlm(Box<Ntlm>, Option<sspi::AuthIdentityBuffers>, bool),
    Negotiate(Box<Negotiate>, Option<CredentialsBuffers>, bool),
}

impl SecurityContext {
    fn new(site: &SiteConfig, package: Package) -> Result<SecurityContext, String> {
        let username = Username::new_down_level_logon_name(&site.user, &site.domain)
            .map_err(|e| format!("user name: {e}"))?;
        let identity = AuthIdentity {
            username,
            password: site.password.expose().to_string().into(),
        };
        let computer = computer_name();
        match package {
            Package::Ntlm => {
                let mut ntlm = Ntlm::with_config(sspi::ntlm::NtlmConfig::new(computer));
                let creds = ntlm
                    .acquire_credentials_handle()
                    .with_credential_use(sspi::CredentialUse::Outbound)
                    .with_auth_data(&identity)
                    .execute(&mut ntlm)
                    .map_err(|e| e.to_string())?
                    .credentials_handle;
                Ok(SecurityContext::Ntlm(Box::new(ntlm), creds, false))
            }
            Package::Negotiate => {
                let kerberos = match &site.kdc {
                    Some(kdc) => sspi::KerberosConfig::new_with_kdc_url(kdc, computer.clone()),
                    None => sspi::KerberosConfig {
                        kdc_resolution: sspi::kerberos::config::KdcResolution::KdcUrl(None),
                        client_computer_name: computer.clone(),
                    },
                };
                let config = NegotiateConfig::new(
                    Box::new(kerberos),
                    Some("kerberos,ntlm".to_string()),
                    computer,
                );
                let mut nego = Negotiate::new_client(config).map_err(|e| e.to_string())?;
                let creds = nego
                    .acquire_credentials_handle()
                    .with_credential_use(sspi::CredentialUse::Outbound)
                    .with_auth_data(&Credentials::AuthIdentity(identity))
                    .execute(&mut nego)
                    .map_err(|e| e.to_string())?
                    .credentials_handle;
                Ok(SecurityContext::Negotiate(Box::new(nego), creds, false))
            }
        }
    }

    fn complete(&self) -> bool {
        match self {
            SecurityContext::Ntlm(_, _, done) | SecurityContext::Negotiate(_, _, done) => *done,
        }
    }

    fn authenticated(&self) -> Authenticated {
        match self {
            SecurityContext::Ntlm(..) => Authenticated::Ntlm,
            SecurityContext::Negotiate(n, _, _) => match n.negotiated_protocol() {
                NegotiatedProtocol::Kerberos(_) => Authenticated::Kerberos,
                _ => Authenticated::NegotiateNtlm,
            },
        }
    }

    /// One client leg: the token to send and the status (`ContinueNeeded` while more legs follow).
    fn step(
        &mut self,
        target: &str,
        input: Option<Vec<u8>>,
    ) -> Result<(Vec<u8>, SecurityStatus), String> {
        let (out, status) = match self {
            SecurityContext::Ntlm(c, h, _) => init(c.as_mut(), h, target, input),
            SecurityContext::Negotiate(c, h, _) => init(c.as_mut(), h, target, input),
        }
        .map_err(|e| e.to_string())?;
        if status == SecurityStatus::Ok || status == SecurityStatus::CompleteNeeded {
            match self {
                SecurityContext::Ntlm(_, _, done) | SecurityContext::Negotiate(_, _, done) => {
                    *done = true
                }
            }
        }
        Ok((out, status))
    }
}

/// Runs a leg on the blocking pool (Kerberos may talk to the KDC) and hands the context back.
async fn step_blocking(
    mut ctx: SecurityContext,
    target: String,
    input: Option<Vec<u8>>,
) -> (Result<(Vec<u8>, SecurityStatus), String>, SecurityContext) {
    let joined = tokio::task::spawn_blocking(move || {
        let r = ctx.step(&target, input);
        (r, ctx)
    })
    .await;
    match joined {
        Ok(x) => x,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// `InitializeSecurityContext` with INTEGRITY and CONFIDENTIALITY requested (without them,
/// SPNEGO's mechListMIC check fails against a real acceptor) and the KDC served by [`kdc`].
fn init<T>(
    ctx: &mut T,
    creds: &mut T::CredentialsHandle,
    target: &str,
    input: Option<Vec<u8>>,
) -> sspi::Result<(Vec<u8>, SecurityStatus)>
where
    T: Sspi + SspiImpl,
{
    let mut inputs = vec![SecurityBuffer::new(
        input.unwrap_or_default(),
        BufferType::Token,
    )];
    let mut outputs = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
    let flags = ClientRequestFlags::MUTUAL_AUTH
        | ClientRequestFlags::INTEGRITY
        | ClientRequestFlags::CONFIDENTIALITY
        | ClientRequestFlags::ALLOCATE_MEMORY;
    let mut builder = ctx
        .initialize_security_context()
        .with_credentials_handle(creds)
        .with_context_requirements(flags)
        .with_target_data_representation(DataRepresentation::Native)
        .with_target_name(target)
        .with_input(&mut inputs)
        .with_output(&mut outputs);
    let result = {
        let mut generator = ctx.initialize_security_context_impl(&mut builder)?;
        let mut state = generator.start();
        loop {
            match state {
                GeneratorState::Suspended(request) => state = generator.resume(kdc(&request)),
                GeneratorState::Completed(r) => break r?,
            }
        }
    };
    let token = std::mem::take(&mut outputs[0].buffer);
    Ok((token, result.status))
}

/// The KDC transport sspi asks for (Kerberos over TCP: a 4-byte big-endian length, then the
/// message; the request arrives framed, the reply is returned framed). Bounded in time and size.
fn kdc(request: &NetworkRequest) -> sspi::Result<Vec<u8>> {
    let fail = |why: String| sspi::Error::new(sspi::ErrorKind::NoAuthenticatingAuthority, why);
    if request.protocol != NetworkProtocol::Tcp {
        return Err(fail(format!(
            "KDC {}: only tcp:// is supported (set the site's kdc = \"tcp://host:88\")",
            request.url
        )));
    }
    let host = request.url.host_str().unwrap_or_default();
    let port = request.url.port().unwrap_or(88);
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| fail(format!("KDC {host}:{port}: {e}")))?;
    let mut last = fail(format!("KDC {host}:{port}: no address"));
    for addr in addrs {
        let mut s = match TcpStream::connect_timeout(&addr, KDC_TIMEOUT) {
            Ok(s) => s,
            Err(e) => {
                last = fail(format!("KDC {addr}: {e}"));
                continue;
            }
        };
        let io = |e: std::io::Error| fail(format!("KDC {addr}: {e}"));
        s.set_read_timeout(Some(KDC_TIMEOUT)).map_err(io)?;
        s.set_write_timeout(Some(KDC_TIMEOUT)).map_err(io)?;
        s.write_all(&request.data).map_err(io)?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len).map_err(io)?;
        let n = u32::from_be_bytes(len) as usize;
        if n > MAX_KDC_REPLY {
            return Err(fail(format!(
                "KDC {addr}: a reply of {n} bytes is not a ticket"
            )));
        }
        let mut reply = vec![0u8; 4 + n];
        reply[..4].copy_from_slice(&len);
        s.read_exact(&mut reply[4..]).map_err(io)?;
        return Ok(reply);
    }
    Err(last)
}

/// The workstation name NTLM sends: this host's name, or a fixed one.
fn computer_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "citrix-harvester".to_string())
}
