//! An HTTPS front for the simulator, as Citrix Cloud is reached: TLS on loopback with the
//! `localhost` certificate that tests/winauth/setup.sh issues from its test CA, HTTP/1.1 to the
//! simulator behind it, every request marked `X-Forwarded-Proto: https` so that the
//! simulator's nextLinks lead back through the front. It counts TCP connections and TLS
//! handshakes that failed, so that tests can see connection reuse and refused certificates.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
pub struct Counts {
    pub connections: AtomicUsize,
    pub tls_failures: AtomicUsize,
    pub requests: AtomicUsize,
}

pub struct TlsFront {
    /// `https://localhost:PORT`
    pub url: String,
    pub counts: Arc<Counts>,
}

impl TlsFront {
    /// In front of `upstream` (`http://IP:PORT`), serving `tls_dir`'s server.pem and server.key.
    pub async fn start(upstream: &str, tls_dir: &Path) -> TlsFront {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(tls_dir.join("server.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_file(tls_dir.join("server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let upstream = upstream.trim_start_matches("http://").to_string();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                c.connections.fetch_add(1, Ordering::SeqCst);
                let (acceptor, upstream, c) = (acceptor.clone(), upstream.clone(), c.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        c.tls_failures.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    let Ok(up) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    forward(tls, up, &c).await;
                });
            }
        });
        TlsFront { url, counts }
    }
}

/// Requests (GETs, and POSTs with a Content-Length) go up with the header added;
/// answers come back as they are.
async fn forward(tls: tokio_rustls::server::TlsStream<TcpStream>, up: TcpStream, c: &Counts) {
    let (mut down_r, mut down_w) = tokio::io::split(tls);
    let (mut up_r, mut up_w) = up.into_split();
    let answers = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut up_r, &mut down_w).await;
        let _ = down_w.shutdown().await;
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 << 10];
    while let Ok(n @ 1..) = down_r.read(&mut chunk).await {
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let whole = end + 4 + content_length(&buf[..end]);
            if buf.len() < whole {
                break; // the body is still on its way
            }
            let rest = buf.split_off(whole);
            let mut out = buf[..end + 2].to_vec();
            out.extend_from_slice(b"X-Forwarded-Proto: https\r\n\r\n");
            out.extend_from_slice(&buf[end + 4..]);
            buf = rest;
            c.requests.fetch_add(1, Ordering::SeqCst);
            if up_w.write_all(&out).await.is_err() {
                answers.abort();
                return;
            }
        }
    }
    let _ = up_w.shutdown().await;
    let _ = answers.await;
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}
