//! The connections every cloud tenant's Monitor requests share. Citrix's rule is about
//! requests (one per tenant at a time), not connections, so a connection to a Monitor host
//! serves any tenant: a request takes an idle one of its host (the most recently used) or
//! opens a new one through [`Connector`] (proxy, TLS, a capped read buffer), and the
//! connection comes back when its answer's body has been read to the end; an answer abandoned
//! half-read closes its connection. At most [`IDLE_PER_HOST`] idle connections are kept per
//! host, each for [`IDLE_TIMEOUT`]: during a walk a connection is idle only between an answer
//! and a tenant's next request (milliseconds of decoding), so a few dozen serve thousands of
//! tenants; between cycles (minutes) none stay open. A kept connection the server closed
//! meanwhile is replaced once, at once (the request is a GET). Answers compressed with gzip
//! (asked for: Monitor pages shrink about tenfold) are inflated in slices of at most
//! [`INFLATE_SLICE`] bytes, so that the reader's bound on decoded bytes applies before a small
//! body can inflate into a large allocation. It owns sharing and inflating only: what is sent
//! and how the answer is judged are client.rs's.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use http_body::{Body, Frame};

use crate::citrix::conn::{ConnError, Connector, Pinned, host_port};

/// Idle connections kept per host between requests, over all tenants.
pub const IDLE_PER_HOST: usize = 32;
/// How long an idle connection is kept for the next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most decoded bytes one poll of a gzip answer produces.
pub const INFLATE_SLICE: usize = 64 << 10;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The shared connections to the Monitor hosts of every cloud tenant of a process.
pub struct Pool {
    connector: Connector,
    idle: Arc<Idle>,
}

/// Idle connections by `scheme://host:port`, each with the time it became idle.
struct Idle {
    hosts: Mutex<HashMap<String, Vec<(Pinned, Instant)>>>,
    /// [`IDLE_TIMEOUT`] (shorter in tests).
    timeout: Duration,
    /// Whether a task is closing connections idle for longer than [`IDLE_TIMEOUT`].
    reaping: std::sync::atomic::AtomicBool,
}

/// A request to send: the URL and the headers besides Host, User-Agent and Accept-Encoding.
pub struct Get<'a> {
    pub url: &'a url::Url,
    pub headers: &'a [(http::HeaderName, &'a str)],
}

impl Pool {
    pub fn new(connector: Connector) -> Pool {
        Pool::with_idle_timeout(connector, IDLE_TIMEOUT)
    }

    fn with_idle_timeout(connector: Connector, timeout: Duration) -> Pool {
        Pool {
            connector,
            idle: Arc::new(Idle {
                hosts: Mutex::default(),
                timeout,
                reaping: Default::default(),
            }),
        }
    }

    /// Sends `get` on a shared connection; the answer's body gives the connection back when
    /// it has been read to its end, and is inflated when it came compressed.
    pub async fn get(&self, get: &Get<'_>) -> Result<reqwest::Response, ConnError> {
        let key = host_key(get.url)?;
        let mut kept = self.idle.take(&key);
        loop {
            let reused = kept.is_some();
            let mut conn = match kept.take() {
                Some(c) => c,
                None => self.connector.connect(get.url).await?,
            };
            let req = request(get)
                .map_err(|e| ConnError::Setting(format!("a request to `{}`: {e}", get.url)))?;
            let sent = async {
                conn.ready().await?;
                conn.send_request(req).await
            };
            match sent.await {
                Ok(resp) => return Ok(answer(resp, conn, &self.idle, key)),
                // A kept connection the server closed while it was idle: once more, new.
                Err(_) if reused => continue,
                Err(e) => return Err(ConnError::Transport(crate::body::error_chain(&e))),
            }
        }
    }

    /// Idle connections now, over all hosts.
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().values().map(Vec::len).sum()
    }
}

impl Idle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<(Pinned, Instant)>>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection to `key` that is still open, if any.
    fn take(&self, key: &str) -> Option<Pinned> {
        let mut hosts = self.lock();
        let list = hosts.get_mut(key)?;
        while let Some((conn, since)) = list.pop() {
            if !conn.is_closed() && since.elapsed() < self.timeout {
                return Some(conn);
            }
        }
        None
    }

    /// `conn` is idle again; kept if its host has room, else closed.
    fn put(self: &Arc<Self>, key: String, conn: Pinned) {
        if conn.is_closed() {
            return;
        }
        {
            let mut hosts = self.lock();
            let list = hosts.entry(key).or_default();
            list.retain(|(c, since)| !c.is_closed() && since.elapsed() < self.timeout);
            if list.len() >= IDLE_PER_HOST {
                return;
            }
            list.push((conn, Instant::now()));
        }
        self.reap_later();
    }

    /// Starts the task that closes expired idle connections, unless it runs. It ends when
    /// no connection is idle, or with the pool.
    fn reap_later(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.reaping.swap(true, Ordering::AcqRel) {
            return;
        }
        let idle: Weak<Idle> = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                let Some(timeout) = idle.upgrade().map(|i| i.timeout) else {
                    return;
                };
                tokio::time::sleep(timeout / 4).await;
                let Some(idle) = idle.upgrade() else { return };
                let mut hosts = idle.lock();
                for list in hosts.values_mut() {
                    list.retain(|(c, since)| !c.is_closed() && since.elapsed() < timeout);
                }
                hosts.retain(|_, list| !list.is_empty());
                if hosts.is_empty() {
                    idle.reaping.store(false, Ordering::Release);
                    return;
                }
            }
        });
    }
}

/// `scheme://host:port` of `url`: which connections can carry its request.
fn host_key(url: &url::Url) -> Result<String, ConnError> {
    let (host, port) = host_port(url)?;
    Ok(format!("{}://{host}:{port}", url.scheme()))
}

fn request(get: &Get<'_>) -> Result<http::Request<http_body_util::Empty<Bytes>>, BoxError> {
    let u = get.url;
    let host = match u.port() {
        Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
        None => u.host_str().unwrap_or_default().to_string(),
    };
    let mut req = http::Request::get(&u[url::Position::BeforePath..url::Position::AfterQuery])
        .header(http::header::HOST, host)
        .header(http::header::ACCEPT_ENCODING, "gzip")
        .header(
            http::header::USER_AGENT,
            concat!("citrix-harvester/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in get.headers {
        let mut v = HeaderValue::from_str(value)?;
        v.set_sensitive(*name == http::header::AUTHORIZATION);
        req = req.header(name, v);
    }
    Ok(req.body(http_body_util::Empty::new())?)
}

/// The answer as the client reads every answer, its body giving `conn` back at its end.
fn answer(
    resp: http::Response<hyper::body::Incoming>,
    conn: Pinned,
    idle: &Arc<Idle>,
    key: String,
) -> reqwest::Response {
    let (mut head, body) = resp.into_parts();
    let body = Returning {
        body,
        back: Some(Back {
            idle: idle.clone(),
            key,
            conn: Mutex::new(conn),
        }),
    };
    let gzip = head
        .headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = if gzip {
        // The length is of the compressed body: no promise about what the reader gets.
        head.headers.remove(http::header::CONTENT_ENCODING);
        head.headers.remove(http::header::CONTENT_LENGTH);
        reqwest::Body::wrap(Gunzip::new(body))
    } else {
        reqwest::Body::wrap(body)
    };
    reqwest::Response::from(http::Response::from_parts(head, body))
}

/// Where a connection goes back to once its answer was read to the end.
struct Back {
    idle: Arc<Idle>,
    key: String,
    /// In a mutex only to make the body `Sync`, as the reader asks; never contended.
    conn: Mutex<Pinned>,
}

/// An answer's body; at its end (and only there) the connection is idle again.
struct Returning {
    body: hyper::body::Incoming,
    back: Option<Back>,
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(back) = self.back.take() {
                    let conn = back.conn.into_inner().unwrap_or_else(|e| e.into_inner());
                    back.idle.put(back.key, conn);
                }
            }
            // A broken answer: its connection is dropped with it.
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A gzip body inflated in slices of at most [`INFLATE_SLICE`] bytes per poll.
struct Gunzip<B> {
    body: B,
    /// `Decompress` is not `Sync`; the mutex is never contended.
    inflate: Mutex<flate2::Decompress>,
    /// Compressed bytes received and not inflated yet.
    pending: Bytes,
    /// The gzip stream ended (its trailer checked).
    done: bool,
}

impl<B> Gunzip<B> {
    fn new(body: B) -> Gunzip<B> {
        Gunzip {
            body,
            inflate: Mutex::new(flate2::Decompress::new_gzip(15)),
            pending: Bytes::new(),
            done: false,
        }
    }

    /// Inflates from `pending` up to one slice; an empty result means more input is needed.
    fn inflate(&mut self) -> Result<Bytes, BoxError> {
        let inflate = self.inflate.get_mut().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(INFLATE_SLICE);
        while !self.pending.is_empty() && out.len() < out.capacity() {
            let (read, wrote) = (inflate.total_in(), out.len());
            let status = inflate
                .decompress_vec(&self.pending, &mut out, flate2::FlushDecompress::None)
                .map_err(|e| format!("gzip answer: {e}"))?;
            let used = (inflate.total_in() - read) as usize;
            let _ = self.pending.split_to(used);
            if status == flate2::Status::StreamEnd {
                self.done = true;
                break;
            }
            if used == 0 && out.len() == wrote {
                break;
            }
        }
        Ok(out.into())
    }
}

impl<B> Body for Gunzip<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() && !this.done {
                let out = this.inflate()?;
                if !out.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
            }
            match std::task::ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if this.done {
                            continue; // after the trailer: nothing of the page
                        }
                        this.pending = if this.pending.is_empty() {
                            data
                        } else {
                            [&this.pending[..], &data[..]].concat().into()
                        };
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None if this.done => return Poll::Ready(None),
                None => {
                    return Poll::Ready(Some(Err(
                        "the gzip answer ended before its end (truncated)".into(),
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A body of the given chunks.
    struct Chunks(std::collections::VecDeque<Vec<u8>>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c.into()))))
        }
    }

    fn chunks(parts: Vec<Vec<u8>>) -> Chunks {
        Chunks(parts.into())
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    async fn frames<B: Body<Data = Bytes, Error = BoxError> + Unpin>(
        mut b: B,
    ) -> Result<Vec<Bytes>, BoxError> {
        use http_body_util::BodyExt;
        let mut out = Vec::new();
        while let Some(f) = b.frame().await {
            out.push(f?.into_data().unwrap());
        }
        Ok(out)
    }

    /// What the test server saw: connections accepted and open now.
    #[derive(Default)]
    struct Seen {
        accepted: std::sync::atomic::AtomicUsize,
        open: std::sync::atomic::AtomicUsize,
    }

    /// An HTTP/1.1 server on loopback answering `ok` to every GET; it closes a connection
    /// without warning after `per_connection` answers, pads each answer's head with `pad`
    /// bytes of a header, and holds each connection's first answer until `burst` requests
    /// arrived (so that each of them had to open its own connection).
    async fn server(per_connection: usize, pad: usize, burst: usize) -> (url::Url, Arc<Seen>) {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!(
            "http://{}/m/x?a=1",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let seen = Arc::new(Seen::default());
        let arrived = Arc::new(tokio::sync::Barrier::new(burst.max(1)));
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                s.accepted.fetch_add(1, SeqCst);
                s.open.fetch_add(1, SeqCst);
                let (s, arrived) = (s.clone(), arrived.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    for answered in 0..per_connection {
                        // A small GET arrives in one read.
                        let Ok(1..) = sock.read(&mut buf).await else {
                            break;
                        };
                        if answered == 0 && burst > 1 {
                            arrived.wait().await;
                        }
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nx-pad: {}\r\ncontent-length: 2\r\n\r\nok",
                            "p".repeat(pad)
                        );
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                    drop(sock);
                    s.open.fetch_sub(1, SeqCst);
                });
            }
        });
        (url, seen)
    }

    fn pool(timeout: Duration) -> Arc<Pool> {
        let connector = Connector::cloud(None, None).unwrap();
        Arc::new(Pool::with_idle_timeout(connector, timeout))
    }

    async fn ok(pool: &Pool, url: &url::Url) -> Result<String, String> {
        let get = Get { url, headers: &[] };
        let resp = pool.get(&get).await.map_err(|e| e.to_string())?;
        resp.text().await.map_err(|e| e.to_string())
    }

    async fn eventually(what: &str, f: impl Fn() -> bool) {
        for _ in 0..400 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("never: {what}");
    }

    #[tokio::test]
    async fn requests_in_turn_share_one_connection_and_one_closed_meanwhile_is_replaced() {
        use std::sync::atomic::Ordering::SeqCst;
        let (url, seen) = server(3, 0, 1).await;
        let pool = pool(IDLE_TIMEOUT);
        for i in 0..9 {
            assert_eq!(ok(&pool, &url).await.as_deref(), Ok("ok"), "request {i}");
        }
        assert_eq!(
            seen.accepted.load(SeqCst),
            3,
            "one connection for every three answers the server gives on one"
        );
    }

    /// After a burst of concurrent requests (one connection each), at most
    /// [`IDLE_PER_HOST`] stay open, and those close once idle for the timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_leaves_at_most_the_idle_bound_open_and_those_close_when_idle() {
        use std::sync::atomic::Ordering::SeqCst;
        const BURST: usize = IDLE_PER_HOST * 3;
        let (url, seen) = server(usize::MAX, 0, BURST).await;
        let pool = pool(Duration::from_millis(600));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..BURST {
            let (pool, url) = (pool.clone(), url.clone());
            set.spawn(async move { ok(&pool, &url).await });
        }
        while let Some(r) = set.join_next().await {
            assert_eq!(r.unwrap().as_deref(), Ok("ok"));
        }
        assert_eq!(seen.accepted.load(SeqCst), BURST);
        eventually("the burst's surplus closed", || {
            seen.open.load(SeqCst) <= IDLE_PER_HOST
        })
        .await;
        assert_eq!(
            pool.idle_connections(),
            IDLE_PER_HOST,
            "kept for the next requests"
        );
        eventually("idle connections closed after the timeout", || {
            seen.open.load(SeqCst) == 0
        })
        .await;
        assert_eq!(pool.idle_connections(), 0);
    }

    /// The read buffer is capped (hyper's default grows it to about 400 KB per connection and
    /// keeps it): a large answer sent at once arrives in reads of a bounded size.
    #[tokio::test]
    async fn a_large_answer_streams_through_a_capped_read_buffer() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        const BODY: usize = 8 << 20;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}/x", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let _ = sock.read(&mut buf).await;
            let mut answer =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {BODY}\r\n\r\n").into_bytes();
            answer.resize(answer.len() + BODY, b'x');
            let _ = sock.write_all(&answer).await;
        });
        let pool = pool(IDLE_TIMEOUT);
        let mut resp = pool
            .get(&Get {
                url: &url,
                headers: &[],
            })
            .await
            .unwrap();
        // Let the answer fill the socket's buffers before reading, as a busy process would.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (mut total, mut largest) = (0, 0);
        while let Some(chunk) = resp.chunk().await.unwrap() {
            total += chunk.len();
            largest = largest.max(chunk.len());
        }
        assert_eq!(total, BODY);
        assert!(
            largest <= 2 * crate::citrix::conn::MAX_READ_BUFFER,
            "a read of {largest} bytes"
        );
    }

    #[tokio::test]
    async fn a_gzip_body_is_inflated_in_bounded_slices_whatever_its_chunks() {
        let page: Vec<u8> = (0..600_000u32)
            .flat_map(|i| format!("{{\"Id\":{i}}},").into_bytes())
            .take(3 << 20)
            .collect();
        let z = gzip(&page);
        for split in [1, 7, 4096, z.len()] {
            let parts: Vec<Vec<u8>> = z
                .chunks(split.max(z.len() / 500))
                .map(<[u8]>::to_vec)
                .collect();
            let out = frames(Gunzip::new(chunks(parts))).await.unwrap();
            assert!(
                out.iter().all(|f| f.len() <= INFLATE_SLICE),
                "a slice of {} bytes",
                out.iter().map(Bytes::len).max().unwrap()
            );
            assert_eq!(out.concat(), page, "split {split}");
        }
    }

    #[tokio::test]
    async fn a_truncated_or_corrupt_gzip_body_is_an_error() {
        let z = gzip(&vec![b'x'; 100_000]);
        let cut = frames(Gunzip::new(chunks(vec![z[..z.len() - 10].to_vec()]))).await;
        assert!(cut.unwrap_err().to_string().contains("truncated"));
        let mut bad = z.clone();
        bad[20] ^= 0xff;
        bad[21] ^= 0xff;
        let corrupt = frames(Gunzip::new(chunks(vec![bad]))).await;
        assert!(corrupt.unwrap_err().to_string().contains("gzip answer"));
        let ok = frames(Gunzip::new(chunks(vec![z]))).await.unwrap();
        assert_eq!(ok.concat().len(), 100_000);
    }
}
