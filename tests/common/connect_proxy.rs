//! A small HTTP CONNECT proxy on loopback that counts what it is asked, for the on-premises
//! tests: every `CONNECT host:port` is recorded with its `Proxy-Authorization`; with an account
//! set, a missing or wrong `Basic` answer gets a 407; only loopback targets are tunnelled; any
//! other method gets a 405 (so a client that forwards instead of tunnelling fails). It plays a
//! corporate proxy such as squid, not a controller: the tunnel carries the bytes untouched.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the proxy received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `CONNECT host:port` → `host:port`; another method → `METHOD target`.
    pub target: String,
    pub connect: bool,
    /// The decoded `user:password` of a Basic `Proxy-Authorization`, if any.
    pub credentials: Option<String>,
    /// The status the proxy answered.
    pub status: u16,
}

pub struct ConnectProxy {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl ConnectProxy {
    /// A proxy that demands `account` (`user:password`) when given.
    pub async fn start(account: Option<&str>) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, account) = (seen.clone(), account.map(str::to_string));
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(serve(inbound, log.clone(), account.clone()));
            }
        });
        ConnectProxy { port, seen }
    }

    /// `http://[user:password@]127.0.0.1:PORT`.
    pub fn url(&self, account: Option<&str>) -> String {
        match account {
            Some(a) => format!("http://{a}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(mut inbound: TcpStream, log: Arc<Mutex<Vec<Seen>>>, account: Option<String>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match inbound.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 8192 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let credentials = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("proxy-authorization"))
        .and_then(|(_, v)| v.trim().strip_prefix("Basic ").map(str::to_string))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let loopback = target.starts_with("127.0.0.1:") || target.starts_with("localhost:");
    let status = if method != "CONNECT" {
        405
    } else if account.is_some() && credentials != account {
        407
    } else if !loopback {
        403
    } else {
        200
    };
    log.lock().unwrap().push(Seen {
        target: if method == "CONNECT" {
            target.to_string()
        } else {
            format!("{method} {target}")
        },
        connect: method == "CONNECT",
        credentials,
        status,
    });
    let answer = match status {
        200 => "HTTP/1.1 200 Connection established\r\n\r\n",
        407 => {
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic \
             realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        }
        403 => "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        _ => "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    };
    if status != 200 {
        let _ = inbound.write_all(answer.as_bytes()).await;
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        let _ = inbound
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    if inbound.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
}
