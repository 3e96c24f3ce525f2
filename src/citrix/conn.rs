//! One HTTP/1.1 connection to a Monitor API: to an on-premises controller, where a
//! Windows-authenticated request owns it from start to end (NTLM binds its legs to a TCP
//! connection, and no pooled client can promise that two requests share one), or to Citrix
//! Cloud, where pool.rs shares it between tenants. TCP to the peer or, through a proxy (the
//! `proxy` setting, else `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` unless `NO_PROXY` names the
//! peer), an HTTP CONNECT tunnel to it; then TLS with SNI and host name verification for
//! `https://` (the system's roots plus the `ca_file` setting, through rustls, the aws-lc
//! provider and the platform verifier); then HTTP/1.1 with the connection's read buffer capped
//! (hyper's default lets it grow to about 400 KB and keeps it: 235–258 KB per connection were
//! measured with hundreds open). Setting up a connection is bounded in time, the proxy's answer
//! and every response head in size; errors name the setting to fix. Proxy credentials are sent,
//! never shown. It owns the connection only: the handshake is winauth.rs's, controller choice
//! site.rs's, sharing pool.rs's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::SiteConfig;

/// TCP connect, proxy tunnel and TLS handshake together.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// A proxy's answer to CONNECT (status line and headers).
const MAX_PROXY_ANSWER: usize = 8 << 10;
/// A response head, and a connection's read buffer (hyper's `max_buf_size`): bodies stream
/// through it in reads of at most this much, and are bounded by their readers.
pub const MAX_READ_BUFFER: usize = 64 << 10;
const MAX_HEADERS: usize = 100;
const USER_AGENT: &str = concat!("citrix-harvester/", env!("CARGO_PKG_VERSION"));

/// Why a connection could not be had or used.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The peer (or the proxy) is unreachable or broke the connection: another controller may
    /// do better, and so may a later attempt.
    #[error("{0}")]
    Transport(String),
    /// A setting is wrong (the CA, the proxy, its credentials): trying again cannot help.
    #[error("{0}")]
    Setting(String),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The request side of one owned HTTP/1.1 connection.
pub type Pinned = hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// Whom a connector connects to, for its error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// An on-premises Delivery Controller.
    Controller,
    /// Citrix Cloud's Monitor API.
    Cloud,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Controller => "the controller",
            Peer::Cloud => "Citrix Cloud",
        }
    }
}

/// How a site's or Citrix Cloud's connections are made; built once per site and once for the
/// cloud (the CA file is read here).
pub struct Connector {
    peer: Peer,
    tls: Arc<rustls::ClientConfig>,
    proxy: Matcher,
    /// Whether `proxy` is the site's setting (else the environment's).
    site_proxy: bool,
    proxy_key: String,
    ca_key: String,
    ca_file: Option<PathBuf>,
}

impl Connector {
    /// Reads the site's `ca_file` and proxy (or the environment's proxy variables).
    pub fn new(site: &SiteConfig) -> Result<Connector, String> {
        Connector::with_env_proxy(site, Matcher::from_env())
    }

    /// For Citrix Cloud: `citrix.ca_file` and `citrix.proxy` (or the environment's proxy).
    pub fn cloud(ca_file: Option<&Path>, proxy: Option<&str>) -> Result<Connector, String> {
        Connector::build(Peer::Cloud, "citrix.", ca_file, proxy, Matcher::from_env())
    }

    /// [`Connector::new`] with `env` standing for the environment's proxy variables.
    fn with_env_proxy(site: &SiteConfig, env: Matcher) -> Result<Connector, String> {
        Connector::build(
            Peer::Controller,
            &site.key,
            site.ca_file.as_deref(),
            site.proxy.as_deref(),
            env,
        )
    }

    /// `key`: the settings' prefix, for errors (`tenant[3].`, `citrix.`).
    fn build(
        peer: Peer,
        key: &str,
        ca_file: Option<&Path>,
        proxy: Option<&str>,
        env: Matcher,
    ) -> Result<Connector, String> {
        let ca_key = format!("{key}ca_file");
        let proxy_key = format!("{key}proxy");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut extra: Vec<CertificateDer<'static>> = Vec::new();
        if let Some(path) = ca_file {
            let pem =
                std::fs::read(path).map_err(|e| format!("`{ca_key}` {}: {e}", path.display()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                extra.push(cert.map_err(|e| format!("`{ca_key}` {}: {e}", path.display()))?);
            }
            if extra.is_empty() {
                return Err(format!(
                    "`{ca_key}` {}: no PEM certificate in it",
                    path.display()
                ));
            }
        }
        let verifier = if extra.is_empty() {
            rustls_platform_verifier::Verifier::new(provider.clone())
        } else {
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
        }
        .map_err(|e| format!("`{ca_key}`: {e}"))?;
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous() // the platform verifier: full chain and host name verification
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let (proxy, site_proxy) = match proxy {
            Some(p) => {
                crate::config::check_proxy_url(p).map_err(|why| format!("`{proxy_key}`: {why}"))?;
                (Matcher::builder().all(p.to_string()).build(), true)
            }
            None => (env, false),
        };
        Ok(Connector {
            peer,
            tls: Arc::new(tls),
            proxy,
            site_proxy,
            proxy_key,
            ca_key,
            ca_file: ca_file.map(Path::to_path_buf),
        })
    }

    /// Which setting named the proxy, for errors.
    fn proxy_setting(&self) -> String {
        if self.site_proxy {
            format!("`{}`", self.proxy_key)
        } else {
            "HTTPS_PROXY/HTTP_PROXY/ALL_PROXY in the environment (NO_PROXY bypasses it; the \
             site's `proxy` overrides it)"
                .to_string()
        }
    }

    /// A new connection to the peer of `url`, ready for HTTP/1.1 requests.
    pub async fn connect(&self, url: &url::Url) -> Result<Pinned, ConnError> {
        let (host, port) = host_port(url)?;
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            s => {
                return Err(ConnError::Setting(format!(
                    "`{url}`: scheme {s} is not http(s)"
                )));
            }
        };
        let dst: http::Uri = format!("{}://{host}:{port}/", url.scheme())
            .parse()
            .map_err(|e| ConnError::Setting(format!("`{url}`: {e}")))?;
        let proxy = self.proxy.intercept(&dst);
        let setup = async {
            let io: Box<dyn Io> = match &proxy {
                Some(p) => Box::new(self.tunnel(p, host, port).await?),
                None => Box::new(tcp(host, port, self.peer.name()).await?),
            };
            if https {
                Ok(Box::new(self.tls(io, host).await?) as Box<dyn Io>)
            } else {
                Ok(io)
            }
        };
        let io = tokio::time::timeout(SETUP_TIMEOUT, setup)
            .await
            .map_err(|_| {
                ConnError::Transport(format!(
                    "no connection to {host}:{port}{} within {} s",
                    proxy
                        .as_ref()
                        .map(|p| format!(" through the proxy {}", p.uri()))
                        .unwrap_or_default(),
                    SETUP_TIMEOUT.as_secs()
                ))
            })??;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_READ_BUFFER)
            .max_headers(MAX_HEADERS)
            .handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| ConnError::Transport(crate::body::error_chain(&e)))?;
        // Ends when the connection closes (the sender and the last response are dropped).
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// TCP to the proxy, then `CONNECT host:port`; the proxy's credentials (from its URL)
    /// go in `Proxy-Authorization: Basic`, the only scheme a CONNECT client can answer without
    /// a handshake of its own.
    async fn tunnel(&self, p: &Intercept, host: &str, port: u16) -> Result<TcpStream, ConnError> {
        let setting = || self.proxy_setting();
        let puri = p.uri();
        if puri.scheme_str() != Some("http") {
            return Err(ConnError::Setting(format!(
                "the proxy {puri} from {} is not http:// (the harvester reaches {} through \
                 an http:// proxy with CONNECT)",
                setting(),
                self.peer.name()
            )));
        }
        let phost = puri.host().unwrap_or_default();
        let pport = puri.port_u16().unwrap_or(80);
        let mut s = tcp(phost, pport, "proxy").await.map_err(|e| match e {
            ConnError::Transport(why) => {
                ConnError::Transport(format!("{why} (from {})", setting()))
            }
            other => other,
        })?;
        let mut req = format!(
            "CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {USER_AGENT}\r\n"
        )
        .into_bytes();
        if let Some(auth) = p.basic_auth() {
            req.extend_from_slice(b"Proxy-Authorization: ");
            req.extend_from_slice(auth.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"\r\n");
        let io = |e: std::io::Error| {
            ConnError::Transport(format!("proxy {phost}:{pport}: CONNECT {host}:{port}: {e}"))
        };
        s.write_all(&req).await.map_err(io)?;
        let answer = read_head(&mut s).await.map_err(|why| {
            ConnError::Transport(format!(
                "proxy {phost}:{pport}: CONNECT {host}:{port}: {why}"
            ))
        })?;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let parsed = resp.parse(&answer);
        let head_len = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            _ => {
                return Err(ConnError::Transport(format!(
                    "proxy {phost}:{pport}: CONNECT {host}:{port}: the answer is not HTTP: {}",
                    crate::body::snippet(&answer)
                )));
            }
        };
        let code = resp.code.unwrap_or(0);
        let reason = resp.reason.unwrap_or("").to_string();
        let offered: Vec<String> = resp
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("proxy-authenticate"))
            .map(|h| {
                String::from_utf8_lossy(h.value)
                    .split(' ')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        let what = format!(
            "the proxy {phost}:{pport} answered CONNECT {host}:{port} with HTTP {code} {reason}"
        );
        match code {
            200..=299 if head_len == answer.len() => Ok(s),
            200..=299 => Err(ConnError::Transport(format!(
                "{what} but sent data before the tunnel was used"
            ))),
            407 => Err(ConnError::Setting(format!(
                "{what}: {} — put the proxy account in the proxy URL of {} \
                 (http://user:password@host:port; percent-encode special characters); the \
                 proxy offers {}, the harvester sends Basic",
                if p.basic_auth().is_some() {
                    "the proxy rejected the credentials"
                } else {
                    "the proxy needs credentials"
                },
                setting(),
                if offered.is_empty() {
                    "no scheme".to_string()
                } else {
                    offered.join(", ")
                },
            ))),
            502..=504 => Err(ConnError::Transport(format!(
                "{what} (the proxy could not reach {})",
                self.peer.name()
            ))),
            400..=499 => Err(ConnError::Setting(format!(
                "{what}: the proxy of {} must allow CONNECT to the port {port} of {} \
                 (squid, for one, allows only 443 by default)",
                setting(),
                self.peer.name()
            ))),
            _ => Err(ConnError::Transport(what)),
        }
    }

    /// TLS with SNI and verification of the chain and the host name.
    async fn tls(
        &self,
        io: Box<dyn Io>,
        host: &str,
    ) -> Result<tokio_rustls::client::TlsStream<Box<dyn Io>>, ConnError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string())
            .map_err(|e| ConnError::Setting(format!("`{host}` is no TLS server name: {e}")))?;
        tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, io)
            .await
            .map_err(|e| self.tls_error(host, e))
    }

    fn tls_error(&self, host: &str, e: std::io::Error) -> ConnError {
        let ca = match &self.ca_file {
            Some(p) => format!(
                "`{}` ({}) and the system's trust store",
                self.ca_key,
                p.display()
            ),
            None => format!("the system's trust store (`{}` is not set)", self.ca_key),
        };
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(rustls::Error::InvalidCertificate(c)) => {
                use rustls::CertificateError as C;
                let why = match c {
                    C::UnknownIssuer | C::BadSignature => format!(
                        "is not signed by a CA in {ca}: point `{}` at the PEM of the CA that \
                         issued it{}",
                        self.ca_key,
                        match self.peer {
                            Peer::Controller => "",
                            Peer::Cloud => " (a TLS-inspecting proxy's CA, if one is between)",
                        }
                    ),
                    C::NotValidForName | C::NotValidForNameContext { .. } => match self.peer {
                        Peer::Controller => format!(
                            "is not issued to {host}: use the name in the certificate in the \
                             controller URL (Kerberos wants the FQDN too)"
                        ),
                        Peer::Cloud => format!(
                            "is not issued to {host}: check the tenant's `region` and `monitor_url` \
                             (a TLS-inspecting proxy presents its own name)"
                        ),
                    },
                    C::Expired | C::ExpiredContext { .. } => match self.peer {
                        Peer::Controller => {
                            "has expired: renew it on the controller (netsh http ... sslcert)"
                                .into()
                        }
                        Peer::Cloud => "has expired (check this machine's clock)".into(),
                    },
                    other => format!("was refused ({other:?}); trusted roots: {ca}"),
                };
                ConnError::Setting(format!(
                    "TLS with {host}: the certificate of {} {why}",
                    self.peer.name()
                ))
            }
            Some(other) => ConnError::Transport(format!("TLS with {host}: {other}")),
            None => ConnError::Transport(format!("TLS with {host}: {e}")),
        }
    }
}

/// The host and port a URL's connection goes to.
pub fn host_port(url: &url::Url) -> Result<(&str, u16), ConnError> {
    let host = url
        .host_str()
        .ok_or_else(|| ConnError::Setting(format!("`{url}` has no host")))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| ConnError::Setting(format!("`{url}` has no port")))?;
    Ok((host, port))
}

async fn tcp(host: &str, port: u16, what: &str) -> Result<TcpStream, ConnError> {
    let s = TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .map_err(|e| ConnError::Transport(format!("{what} {host}:{port}: {e}")))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// A response head, up to its blank line and at most [`MAX_PROXY_ANSWER`] bytes. Reads what
/// arrives; a proxy that sends more than its head before the tunnel is used is refused later.
async fn read_head(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the proxy closed the connection without an answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(buf);
        }
        if buf.len() > MAX_PROXY_ANSWER {
            return Err(format!(
                "the answer's head is larger than {MAX_PROXY_ANSWER} bytes"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn site(proxy: Option<String>) -> SiteConfig {
        SiteConfig {
            controllers: vec![],
            auth: crate::config::WinAuthKind::Ntlm,
            domain: "CORP".into(),
            user: "svc".into(),
            password: crate::secret::Secret::new("pw"),
            ca_file: None,
            proxy,
            kdc: None,
            spn: None,
            key: "tenant[0].".into(),
            user_key: "tenant[0].user".into(),
            password_key: "tenant[0].password_env".into(),
        }
    }

    /// A proxy that answers every CONNECT with 403 and counts the connections it got.
    async fn refusing_proxy() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = read_head(&mut s).await;
                let _ = s
                    .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        });
        (port, hits)
    }

    /// Without `proxy`, the environment's proxy is used unless NO_PROXY names the controller;
    /// a refusal names where the proxy came from. With `proxy`, NO_PROXY does not apply.
    #[tokio::test]
    async fn the_environments_proxy_applies_unless_no_proxy_or_the_sites_own() {
        let (pport, hits) = refusing_proxy().await;
        let controller = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cport = controller.local_addr().unwrap().port();
        let url = url::Url::parse(&format!("http://127.0.0.1:{cport}/x")).unwrap();
        let env = |no: &str| {
            Matcher::builder()
                .http(format!("http://127.0.0.1:{pport}"))
                .no(no.to_string())
                .build()
        };
        let c = Connector::with_env_proxy(&site(None), env("")).unwrap();
        let Err(e) = c.connect(&url).await else {
            panic!("the proxy refuses")
        };
        let text = e.to_string();
        assert!(matches!(e, ConnError::Setting(_)), "{text}");
        assert!(
            text.contains("HTTP 403") && text.contains("HTTP_PROXY"),
            "{text}"
        );
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        // NO_PROXY: straight to the controller.
        let c = Connector::with_env_proxy(&site(None), env("127.0.0.1")).unwrap();
        assert!(c.connect(&url).await.is_ok());
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The site's proxy: every controller, and the error names the key.
        let own = site(Some(format!("http://u:secret@127.0.0.1:{pport}")));
        let c = Connector::with_env_proxy(&own, env("127.0.0.1")).unwrap();
        let Err(e) = c.connect(&url).await else {
            panic!("the proxy refuses")
        };
        let text = e.to_string();
        assert!(
            text.contains("`tenant[0].proxy`") && !text.contains("secret"),
            "{text}"
        );
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
