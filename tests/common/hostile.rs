//! A small HTTP/1.1 server whose every answer a test writes by hand: the hostile or broken
//! peer (a token host that redirects, a proxy that sends a gzip bomb, a Monitor API that pages
//! in a loop). Each connection serves one request and closes. It records every request it got.
#![allow(dead_code)] // each test binary uses a subset

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Path and query, percent-encoded as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What to send back: raw bytes, written in pieces with a pause between them.
pub struct Reply {
    pub pieces: Vec<Vec<u8>>,
    pub pause: Duration,
}

impl Reply {
    /// A complete answer with `Content-Length`.
    pub fn new(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        Reply {
            pieces: vec![bytes],
            pause: Duration::ZERO,
        }
    }

    pub fn json(status: u16, body: &str) -> Reply {
        Reply::new(
            status,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }
}

type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

pub struct Hostile {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Req>>>,
}

impl Hostile {
    pub async fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (handler, log) = (handler.clone(), log.clone());
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    let reply = handler(&req);
                    log.lock().unwrap().push(req);
                    for p in reply.pieces {
                        if sock.write_all(&p).await.is_err() {
                            return;
                        }
                        if !reply.pause.is_zero() {
                            tokio::time::sleep(reply.pause).await;
                        }
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        Hostile { url, requests }
    }

    /// A server that reads each request and never answers it (the connection stays open
    /// until the test ends): an output that blocks every write.
    pub async fn black_hole() -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    if let Some(req) = read_request(&mut sock).await {
                        log.lock().unwrap().push(req);
                    }
                    std::future::pending::<()>().await;
                    drop(sock);
                });
            }
        });
        Hostile { url, requests }
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Req {
        method,
        target,
        headers,
        body,
    })
}

/// A Citrix-like token answer.
pub fn token_json(token: &str, expires_in: &str) -> String {
    format!(r#"{{"token_type":"bearer","access_token":"{token}","expires_in":{expires_in}}}"#)
}
