//! Sinks: where encoded points go (InfluxDB v2 API, v1 API, a file, stdout). This module owns
//! the public `Sink` handle shared by all tenant tasks, its configuration, the choice between
//! the coalescing writer (HTTP) and direct local writes (file, stdout), and the counters;
//! `coalesce` owns the queue that packs lines of many writes into one request, `concurrency`
//! the adaptive limit on requests in flight, `influx` HTTP requests and retries, `classify` the
//! retry decision table, `file` local writes, `deadletter` refused lines, `spool` the on-disk
//! buffer and `replay` draining it. It must not escape anything itself (only `lineproto`
//! encodes) or print a secret (`describe` and every error show URLs without credentials).
//!
//! Acknowledgement (DESIGN.md rule 2): `write` returns Ok only when every point was delivered,
//! refused for good (counted, dead-lettered), or — with a `state_dir` and an HTTP target —
//! appended to the spool and fsynced. With coalescing this holds per write: a request carries
//! lines of many writes, and each write is answered with its own counts once all of its lines
//! are settled. Ordering: while anything is spooled, new requests append behind it without
//! trying the server (so they neither wait out `retry_max_elapsed` each nor overtake an older
//! version of the same point, which would be overwritten by the stale one when the spool
//! replays); once the replay task has drained the spool, requests go straight to the server
//! again. A request that timed out is sent again (at-least-once): the server may have stored
//! it, and VictoriaMetrics then keeps both samples (docs/reliability.md).

mod classify;
mod coalesce;
mod concurrency;
mod deadletter;
mod file;
mod influx;
mod replay;
mod spool;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use url::Url;

pub use concurrency::Concurrency;

pub use classify::{
    Disposition, MAX_RETRY_AFTER, Misconfig, TransportKind, classify, dropped_count,
    parse_retry_after,
};

use crate::lineproto::{Point, PointOf, encode};
use crate::secret::Secret;
use coalesce::Engine;
use concurrency::Limiter;
use deadletter::{DeadLetter, DeadLetters};
use file::{FileWriter, StdoutWriter};
use influx::{Api, Auth, HttpWriter};
use spool::Spool;

/// Where points go.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    /// `POST {url}/api/v2/write` (InfluxDB 2.x/3.x, VictoriaMetrics).
    InfluxV2 {
        url: String,
        org: String,
        bucket: String,
        token: Option<Secret>,
    },
    /// `POST {url}/write` (InfluxDB 1.x).
    InfluxV1 {
        url: String,
        database: String,
        retention_policy: Option<String>,
        username: Option<String>,
        password: Option<Secret>,
    },
    /// Append lines to a file (parent directories are created).
    File { path: PathBuf },
    /// Print lines.
    Stdout,
}

/// Sink settings; [`SinkConfig::new`] fills in the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    pub kind: SinkKind,
    /// Gzip request bodies (HTTP sinks). Default true.
    pub gzip: bool,
    /// Lines per request. Default 5000.
    pub batch_size: usize,
    /// Cap on the uncompressed bytes of one request. Default 4 MiB.
    pub batch_bytes: usize,
    /// Timeout of one HTTP request. Default 10 s.
    pub timeout: Duration,
    /// How long one batch is retried before the write gives up. Default 60 s.
    pub retry_max_elapsed: Duration,
    /// Extra PEM CA bundle trusted besides the system's roots (corporate CA).
    pub ca_file: Option<PathBuf>,
    /// Proxy URL for all requests; without it `HTTPS_PROXY`/`NO_PROXY` apply.
    pub proxy: Option<String>,
    /// Where the spool (`spool/`) and dead letters (`deadletter/`) live. `None`: no spool (a
    /// write to an unreachable server fails, as it always did) and refused lines are only
    /// logged. Default `None`.
    pub state_dir: Option<PathBuf>,
    /// Most bytes the spool may hold on disk; beyond it `write` fails with
    /// [`SinkError::SpoolFull`]. Default 1 GiB.
    pub buffer_limit: u64,
    /// Most bytes of the dead-letter directory; entries beyond it are counted and logged only.
    /// Default 100 MiB.
    pub deadletter_limit: u64,
    /// Size at which a spool segment is closed and a new one started (a segment is deleted once
    /// replayed, so this bounds the space held by already-delivered data). Default 16 MiB;
    /// rarely worth changing.
    pub spool_segment_bytes: u64,
    /// Write requests in flight at once (HTTP targets): adaptive between 1 and a ceiling
    /// (default 32), or fixed.
    pub concurrency: Concurrency,
    /// Most bytes of lines waiting for or in a write request (HTTP targets); a write beyond
    /// it waits. Default 32 MiB.
    pub queue_bytes: usize,
}

impl SinkConfig {
    pub fn new(kind: SinkKind) -> Self {
        SinkConfig {
            kind,
            gzip: true,
            batch_size: 5000,
            batch_bytes: 4 * 1024 * 1024,
            timeout: Duration::from_secs(10),
            retry_max_elapsed: Duration::from_secs(60),
            ca_file: None,
            proxy: None,
            state_dir: None,
            buffer_limit: 1 << 30,
            deadletter_limit: 100 << 20,
            spool_segment_bytes: 16 << 20,
            concurrency: Concurrency::Adaptive { max: 32 },
            queue_bytes: 32 << 20,
        }
    }
}

/// What the sink's target said to [`Sink::probe`] (`check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// It can take points; how we know.
    Ok(String),
    /// It cannot; `hint` names the configuration keys to look at.
    Fail { hint: String, reason: String },
}

/// Counts for one [`Sink::write`] call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteReport {
    /// Lines the server (or file) acknowledged.
    pub written: usize,
    /// Lines refused: by the encoder, or by the server for good (400 isolated by bisection).
    pub rejected: usize,
    /// Lines the server accepted in a batch but said it dropped (partial write).
    pub dropped: usize,
    /// Lines appended to the spool and fsynced (acknowledged: the replay task delivers them).
    pub spooled: usize,
}

impl WriteReport {
    /// Points the sink has taken responsibility for: delivered or durable in the spool.
    pub fn acknowledged(&self) -> usize {
        self.written + self.spooled
    }
}

/// A snapshot of the sink's counters since start (spool sizes are current values).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SinkStats {
    /// Bytes in spool segments on disk.
    pub spool_bytes: u64,
    /// Spool segment files on disk.
    pub spool_segments: u64,
    /// Points appended to the spool.
    pub spooled_points: u64,
    /// Points the replay task delivered from the spool.
    pub replayed_points: u64,
    /// Points not taken because the spool was full ([`SinkError::SpoolFull`]): replayable
    /// entities read them again, snapshot points among them are lost.
    pub spool_full_points: u64,
    /// Bytes of corrupt spool records skipped on replay (acknowledged data lost).
    pub spool_corrupt_bytes: u64,
    /// The last attempt to write the spool failed (a full disk, say): not ready.
    pub spool_unwritable: bool,
    /// Lines refused for good (server or encoder), each logged at ERROR.
    pub dead_letters: u64,
    /// Of those, entries not written to the dead-letter file (limit reached or I/O error).
    pub dead_letters_not_written: u64,
    /// Write requests allowed in flight now (adaptive or fixed; 0 for file and stdout).
    pub concurrency_limit: u64,
    /// Write requests in flight now.
    pub writes_in_flight: u64,
    /// HTTP write attempts sent (each retry counts).
    pub write_requests: u64,
    /// Of those, attempts that got no answer within `output.timeout` (sent again: the
    /// server may have stored them, see docs/reliability.md).
    pub write_timeouts: u64,
    /// Bytes of lines waiting for or in a write request.
    pub queue_bytes: u64,
}

/// The live counters behind [`SinkStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) spool_bytes: AtomicU64,
    pub(crate) spool_segments: AtomicU64,
    pub(crate) spooled_points: AtomicU64,
    pub(crate) replayed_points: AtomicU64,
    pub(crate) spool_full_points: AtomicU64,
    pub(crate) spool_corrupt_bytes: AtomicU64,
    pub(crate) spool_write_failing: std::sync::atomic::AtomicBool,
    pub(crate) dead_letters: AtomicU64,
    pub(crate) dead_letters_not_written: AtomicU64,
}

/// Errors at the sink boundary. URLs are shown without credentials.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink setting `{setting}`: {message}")]
    Config {
        setting: &'static str,
        message: String,
    },
    #[error("sink url {url:?} is not a valid URL: {source}")]
    BadUrl {
        url: String,
        source: url::ParseError,
    },
    #[error("sink `ca_file` {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    #[error("building the HTTP client for the sink: {0}")]
    Client(#[source] reqwest::Error),
    #[error("write to {url} gave up after retrying for {elapsed:?}: {reason} (so far: {report:?})")]
    GaveUp {
        url: String,
        reason: String,
        elapsed: Duration,
        report: WriteReport,
    },
    #[error("write to {url} refused with HTTP {status}: {reason} (so far: {report:?})")]
    Refused {
        url: String,
        status: u16,
        reason: String,
        report: WriteReport,
    },
    #[error("writing {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    /// The writer task went away before answering (its runtime shut down).
    #[error("{0}")]
    Stopped(String),
    #[error("spool {path}: {source}")]
    Spool {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The server is away and the spool reached `buffer_limit`: `not_stored` points of this
    /// write were neither delivered nor spooled (the report counts the rest). Replayable
    /// entities must not move their watermark; snapshot points are lost (already logged at
    /// ERROR and counted in [`SinkStats::spool_full_points`]).
    #[error(
        "spool is full (buffer_limit {limit} bytes) while {target} is away: {not_stored} points not stored (so far: {report:?})"
    )]
    SpoolFull {
        /// The sink's description (no secrets).
        target: String,
        limit: u64,
        not_stored: usize,
        report: WriteReport,
    },
}

impl SinkError {
    /// The counts of the write that failed, when it got that far.
    pub fn report(&self) -> Option<WriteReport> {
        match self {
            SinkError::GaveUp { report, .. }
            | SinkError::Refused { report, .. }
            | SinkError::SpoolFull { report, .. } => Some(*report),
            _ => None,
        }
    }

    /// The same error for another write of a coalesced request (the source of an I/O error
    /// is kept as its kind and message).
    pub(crate) fn duplicate(&self) -> SinkError {
        let io = |e: &std::io::Error| std::io::Error::new(e.kind(), e.to_string());
        match self {
            SinkError::GaveUp {
                url,
                reason,
                elapsed,
                report,
            } => SinkError::GaveUp {
                url: url.clone(),
                reason: reason.clone(),
                elapsed: *elapsed,
                report: *report,
            },
            SinkError::Refused {
                url,
                status,
                reason,
                report,
            } => SinkError::Refused {
                url: url.clone(),
                status: *status,
                reason: reason.clone(),
                report: *report,
            },
            SinkError::Spool { path, source } => SinkError::Spool {
                path: path.clone(),
                source: io(source),
            },
            SinkError::File { path, source } => SinkError::File {
                path: path.clone(),
                source: io(source),
            },
            SinkError::SpoolFull {
                target,
                limit,
                not_stored,
                report,
            } => SinkError::SpoolFull {
                target: target.clone(),
                limit: *limit,
                not_stored: *not_stored,
                report: *report,
            },
            other => SinkError::Stopped(other.to_string()),
        }
    }

    /// This error with `report` as its "so far" (one write's own counts).
    pub(crate) fn with_report(&self, report: WriteReport) -> SinkError {
        let mut e = self.duplicate();
        if let SinkError::GaveUp { report: r, .. }
        | SinkError::Refused { report: r, .. }
        | SinkError::SpoolFull { report: r, .. } = &mut e
        {
            *r = report;
        }
        e
    }
}

enum Writer {
    Http(Arc<HttpWriter>),
    File(FileWriter),
    Stdout(StdoutWriter),
}

struct Inner {
    writer: Writer,
    /// The coalescing writer (HTTP targets).
    engine: Option<Arc<Engine>>,
    limiter: Arc<Limiter>,
    batch_size: usize,
    batch_bytes: usize,
    description: String,
    counters: Arc<Counters>,
    dead_letters: Arc<DeadLetters>,
    /// Only for HTTP targets with a `state_dir`.
    spool: Option<Arc<Spool>>,
    replay_started: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(e) = &self.engine {
            e.close();
        }
    }
}

/// Splits lines (given by their end offsets) into batches, as ranges of line indexes: at most
/// `size` lines and at most `bytes` bytes each, except that a line longer than `bytes` goes
/// alone. Consecutive, in order, covering every line.
fn batches(ends: &[usize], size: usize, bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut first, mut start) = (0, 0);
    for (i, &end) in ends.iter().enumerate() {
        if end - start > bytes && i > first {
            // Line i would push the batch over the byte cap: the batch ends before it.
            out.push(first..i);
            first = i;
            start = ends[i - 1];
        }
        if i + 1 - first >= size || end - start >= bytes {
            out.push(first..i + 1);
            first = i + 1;
            start = end;
        }
    }
    if first < ends.len() {
        out.push(first..ends.len());
    }
    out
}

/// Whose points a write carries, for the sink's own log lines (retries, refusals, spooling).
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub tenant: &'a str,
    pub entity: &'a str,
}

/// Points encoded by [`Sink::encode`], waiting for [`Sink::write_encoded`].
pub struct Encoded {
    buf: Vec<u8>,
    /// End offset of each line in `buf`.
    ends: Vec<usize>,
    /// Points the encoder refused, as dead letters.
    refused: Vec<DeadLetter>,
}

/// The shared writer handle; cloning is cheap.
#[derive(Clone)]
pub struct Sink {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("target", &self.inner.description)
            .finish()
    }
}

/// Parses a base URL and appends `path` to whatever path it already has (InfluxDB behind a
/// reverse proxy often lives under a prefix).
fn endpoint(base: &str, path: &str, query: &[(&str, &str)]) -> Result<Url, SinkError> {
    let mut url = Url::parse(base).map_err(|source| SinkError::BadUrl {
        url: base.to_owned(),
        source,
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SinkError::Config {
            setting: "url",
            message: format!(
                "{:?} must start with http:// or https://",
                influx::shown(&url)
            ),
        });
    }
    let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url.set_query(None);
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in query {
            q.append_pair(k, v);
        }
    }
    Ok(url)
}

fn http_client(cfg: &SinkConfig) -> Result<reqwest::Client, SinkError> {
    let mut b = reqwest::Client::builder()
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout)
        // A redirect would carry the write credentials elsewhere: a 3xx is an error instead.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("citrix-harvester/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path).map_err(|e| SinkError::CaFile {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| SinkError::CaFile {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if certs.is_empty() {
            return Err(SinkError::CaFile {
                path: path.clone(),
                message: "no PEM certificate found".into(),
            });
        }
        b = b.tls_certs_merge(certs);
    }
    if let Some(p) = &cfg.proxy {
        let proxy = reqwest::Proxy::all(p).map_err(|e| SinkError::Config {
            setting: "proxy",
            message: e.without_url().to_string(),
        })?;
        b = b.proxy(proxy);
    }
    b.build().map_err(SinkError::Client)
}

impl Sink {
    pub fn new(cfg: SinkConfig) -> Result<Sink, SinkError> {
        if cfg.batch_size == 0 {
            return Err(SinkError::Config {
                setting: "batch_size",
                message: "must be at least 1".into(),
            });
        }
        if cfg.batch_bytes == 0 {
            return Err(SinkError::Config {
                setting: "batch_bytes",
                message: "must be at least 1".into(),
            });
        }
        match cfg.concurrency {
            Concurrency::Fixed(0) => {
                return Err(SinkError::Config {
                    setting: "concurrency",
                    message: "must be \"adaptive\" or at least 1".into(),
                });
            }
            Concurrency::Adaptive { max: 0 } => {
                return Err(SinkError::Config {
                    setting: "max_concurrency",
                    message: "must be at least 1".into(),
                });
            }
            _ => {}
        }
        if cfg.queue_bytes == 0 || cfg.queue_bytes > u32::MAX as usize {
            return Err(SinkError::Config {
                setting: "queue_bytes",
                message: format!("must be between 1 and {} bytes", u32::MAX),
            });
        }
        let limiter = Arc::new(Limiter::new(cfg.concurrency, cfg.timeout));
        if cfg.state_dir.is_some() && cfg.buffer_limit == 0 {
            return Err(SinkError::Config {
                setting: "buffer_limit",
                message: "must be at least 1 byte".into(),
            });
        }
        let counters = Arc::new(Counters::default());
        let dead_letters_for = |description: &str| {
            Arc::new(DeadLetters::new(
                description.to_owned(),
                cfg.state_dir.as_ref().map(|d| d.join("deadletter")),
                cfg.deadletter_limit,
                counters.clone(),
            ))
        };
        let (writer, description) = match &cfg.kind {
            SinkKind::InfluxV2 {
                url,
                org,
                bucket,
                token,
            } => {
                if bucket.is_empty() {
                    return Err(SinkError::Config {
                        setting: "bucket",
                        message: "must not be empty".into(),
                    });
                }
                let mut q = vec![("bucket", bucket.as_str()), ("precision", "ns")];
                if !org.is_empty() {
                    q.insert(0, ("org", org.as_str()));
                }
                let write_url = endpoint(url, "/api/v2/write", &q)?;
                let base = influx::shown(&Url::parse(url).expect("parsed above"));
                let description = format!(
                    "influxdb v2 {} org={org} bucket={bucket}",
                    base.trim_end_matches('/')
                );
                let w = HttpWriter {
                    client: http_client(&cfg)?,
                    api: Api::V2,
                    shown_url: influx::shown(&write_url),
                    write_url,
                    auth: token.clone().map_or(Auth::None, Auth::Token),
                    gzip: cfg.gzip,
                    retry_max_elapsed: cfg.retry_max_elapsed,
                    dead_letters: dead_letters_for(&description),
                    limiter: limiter.clone(),
                };
                (Writer::Http(Arc::new(w)), description)
            }
            SinkKind::InfluxV1 {
                url,
                database,
                retention_policy,
                username,
                password,
            } => {
                if database.is_empty() {
                    return Err(SinkError::Config {
                        setting: "database",
                        message: "must not be empty".into(),
                    });
                }
                let mut q = vec![("db", database.as_str())];
                if let Some(rp) = retention_policy.as_deref().filter(|r| !r.is_empty()) {
                    q.push(("rp", rp));
                }
                q.push(("precision", "ns"));
                let write_url = endpoint(url, "/write", &q)?;
                let base = influx::shown(&Url::parse(url).expect("parsed above"));
                let mut description =
                    format!("influxdb v1 {} db={database}", base.trim_end_matches('/'));
                if let Some(rp) = retention_policy {
                    description.push_str(&format!(" rp={rp}"));
                }
                let auth = match (username, password) {
                    (Some(u), p) => Auth::Basic(u.clone(), p.clone()),
                    (None, Some(_)) => {
                        return Err(SinkError::Config {
                            setting: "username",
                            message: "a password is set but no username".into(),
                        });
                    }
                    (None, None) => Auth::None,
                };
                let w = HttpWriter {
                    client: http_client(&cfg)?,
                    api: Api::V1,
                    shown_url: influx::shown(&write_url),
                    write_url,
                    auth,
                    gzip: cfg.gzip,
                    retry_max_elapsed: cfg.retry_max_elapsed,
                    dead_letters: dead_letters_for(&description),
                    limiter: limiter.clone(),
                };
                (Writer::Http(Arc::new(w)), description)
            }
            SinkKind::File { path } => (
                Writer::File(FileWriter::new(path.clone())),
                format!("file {}", path.display()),
            ),
            SinkKind::Stdout => (
                Writer::Stdout(StdoutWriter {
                    lock: tokio::sync::Mutex::new(()),
                }),
                "stdout".to_owned(),
            ),
        };
        let dead_letters = match &writer {
            Writer::Http(w) => w.dead_letters.clone(),
            _ => dead_letters_for(&description),
        };
        let spool = match (&writer, &cfg.state_dir) {
            (Writer::Http(_), Some(dir)) => Some(Arc::new(Spool::open(
                dir.join("spool"),
                cfg.buffer_limit,
                cfg.spool_segment_bytes,
                counters.clone(),
            )?)),
            _ => None,
        };
        let engine = match &writer {
            Writer::Http(w) => Some(Arc::new(Engine::new(
                w.clone(),
                spool.clone(),
                limiter.clone(),
                counters.clone(),
                description.clone(),
                (cfg.batch_size, cfg.batch_bytes, cfg.queue_bytes),
            ))),
            _ => None,
        };
        Ok(Sink {
            inner: Arc::new(Inner {
                writer,
                engine,
                limiter,
                batch_size: cfg.batch_size,
                batch_bytes: cfg.batch_bytes,
                description,
                counters,
                dead_letters,
                spool,
                replay_started: AtomicBool::new(false),
            }),
        })
    }

    /// Starts the background task that replays the spool (segments left by an earlier run
    /// first) whenever it holds data, until `cancel` fires. Call it once, inside the tokio
    /// runtime, right after `new`; without it spooled points wait on disk. Returns `None` when
    /// there is no spool (no `state_dir`, or not an HTTP target) or it was already started.
    pub fn start_replay(&self, cancel: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
        let spool = self.inner.spool.clone()?;
        let Writer::Http(w) = &self.inner.writer else {
            return None;
        };
        if self.inner.replay_started.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(tokio::spawn(replay::run(
            self.inner.clone(),
            w.clone(),
            spool,
            cancel,
        )))
    }

    /// The counters, for health and metrics.
    pub fn stats(&self) -> SinkStats {
        let c = &*self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SinkStats {
            spool_bytes: l(&c.spool_bytes),
            spool_segments: l(&c.spool_segments),
            spooled_points: l(&c.spooled_points),
            replayed_points: l(&c.replayed_points),
            spool_full_points: l(&c.spool_full_points),
            spool_corrupt_bytes: l(&c.spool_corrupt_bytes),
            spool_unwritable: c.spool_write_failing.load(Ordering::Relaxed),
            dead_letters: l(&c.dead_letters),
            dead_letters_not_written: l(&c.dead_letters_not_written),
            concurrency_limit: if self.inner.engine.is_some() {
                self.inner.limiter.limit() as u64
            } else {
                0
            },
            writes_in_flight: self.inner.limiter.in_flight() as u64,
            write_requests: l(&self.inner.limiter.requests),
            write_timeouts: l(&self.inner.limiter.timeouts),
            queue_bytes: self
                .inner
                .engine
                .as_ref()
                .map_or(0, |e| e.queue_bytes() as u64),
        }
    }

    /// Proves the target is reachable and takes our credentials, without writing a point (an
    /// empty write for HTTP targets, no retries; a writability test for a file).
    pub async fn probe(&self) -> Probe {
        match &self.inner.writer {
            Writer::Http(w) => w.probe().await,
            Writer::File(f) => f.probe(),
            Writer::Stdout(_) => Probe::Ok("stdout".into()),
        }
    }

    /// Where this sink writes, for logs. Never contains a secret.
    pub fn describe(&self) -> String {
        self.inner.description.clone()
    }

    /// Encodes and writes the points in batches; returns only when every batch is acknowledged
    /// (2xx, or appended and fsynced to the file or the spool), or failed for good. Points the
    /// encoder refuses and lines the server refuses are counted in the report and
    /// dead-lettered, not errors. With a spool, an unreachable or refusing server is not an
    /// error either (`report.spooled`), unless the spool is full ([`SinkError::SpoolFull`]).
    pub async fn write(&self, points: &[Point]) -> Result<WriteReport, SinkError> {
        let encoded = self.encode(points);
        self.write_encoded(encoded, None).await
    }

    /// The first half of [`Sink::write`]: the points as line protocol. A caller that drops its
    /// points before awaiting [`Sink::write_encoded`] holds only the lines (about a third of
    /// the points' memory) while the server answers.
    pub fn encode(&self, points: &[PointOf<'_>]) -> Encoded {
        // Sized for these points (lines are a few hundred bytes), not for the largest batch:
        // many writes run at once, and each reserved megabyte would count in memory.
        let mut buf: Vec<u8> =
            Vec::with_capacity(self.inner.batch_bytes.min(points.len().saturating_mul(512)));
        let mut ends: Vec<usize> = Vec::with_capacity(points.len());
        let mut refused: Vec<DeadLetter> = Vec::new();
        for p in points {
            let before = buf.len();
            if let Err(e) = encode(p, &mut buf) {
                buf.truncate(before);
                refused.push(DeadLetter {
                    // Not a line: a comment, so the dead-letter file stays replayable.
                    line: deadletter::comment_line(&format!("point: {p:?}")),
                    reason: format!("refused by the encoder: {e}"),
                });
                continue;
            }
            ends.push(buf.len());
        }
        Encoded { buf, ends, refused }
    }

    /// The second half of [`Sink::write`]. HTTP targets: queues the lines for the coalescing
    /// writer, which packs lines of many writes into requests of at most `batch_size` lines
    /// and `batch_bytes` bytes (a single longer line goes alone), and waits for this write's
    /// own answer. File and stdout: writes the lines directly, in batches. `origin` names the
    /// tenant and entity in the sink's log lines.
    pub async fn write_encoded(
        &self,
        encoded: Encoded,
        origin: Option<Origin<'_>>,
    ) -> Result<WriteReport, SinkError> {
        let inner = &*self.inner;
        let Encoded { buf, ends, refused } = encoded;
        let refused_n = refused.len();
        if !refused.is_empty() {
            // Data is lost: our own code built a point the rules refuse.
            inner.dead_letters.record(refused).await;
        }
        let mut report = match &inner.engine {
            Some(engine) => engine.submit(buf, ends, origin).await?,
            None => self.write_local(&buf, &ends).await?,
        };
        report.rejected += refused_n;
        Ok(report)
    }

    /// File and stdout: appends the lines in batches (no coalescing: a local write is cheap and
    /// already serialised by the writer's lock), then syncs a file.
    async fn write_local(&self, buf: &[u8], ends: &[usize]) -> Result<WriteReport, SinkError> {
        let inner = &*self.inner;
        let mut report = WriteReport::default();
        for lines in batches(ends, inner.batch_size, inner.batch_bytes) {
            let start = if lines.start == 0 {
                0
            } else {
                ends[lines.start - 1]
            };
            let bytes = &buf[start..ends[lines.end - 1]];
            match &inner.writer {
                Writer::File(f) => f.append(bytes).await?,
                Writer::Stdout(s) => s.append(bytes).await?,
                Writer::Http(_) => unreachable!("HTTP targets go through the coalescing writer"),
            }
            report.written += lines.len();
        }
        if let Writer::File(f) = &inner.writer {
            f.sync().await?;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_never_shows_secrets() {
        let s = Sink::new(SinkConfig::new(SinkKind::InfluxV2 {
            url: "http://user:pw@127.0.0.1:8428/".into(),
            org: "o".into(),
            bucket: "b".into(),
            token: Some(Secret::new("tok-123")),
        }))
        .unwrap();
        let d = s.describe();
        assert_eq!(d, "influxdb v2 http://127.0.0.1:8428 org=o bucket=b");
        assert!(!format!("{s:?}").contains("tok-123"));
        let s = Sink::new(SinkConfig::new(SinkKind::InfluxV1 {
            url: "https://db.example.invalid:8086/prefix".into(),
            database: "d".into(),
            retention_policy: Some("rp1".into()),
            username: Some("u".into()),
            password: Some(Secret::new("pw")),
        }))
        .unwrap();
        assert_eq!(
            s.describe(),
            "influxdb v1 https://db.example.invalid:8086/prefix db=d rp=rp1"
        );
    }

    #[test]
    fn endpoints() {
        let u = endpoint(
            "http://h:1/pre/",
            "/write",
            &[("db", "a b&c"), ("precision", "ns")],
        )
        .unwrap();
        assert_eq!(u.as_str(), "http://h:1/pre/write?db=a+b%26c&precision=ns");
        let u = endpoint("http://h:1", "/api/v2/write", &[("bucket", "x")]).unwrap();
        assert_eq!(u.as_str(), "http://h:1/api/v2/write?bucket=x");
        assert!(matches!(
            endpoint("h:1", "/write", &[]),
            Err(SinkError::Config { .. }) | Err(SinkError::BadUrl { .. })
        ));
        assert!(matches!(
            endpoint("not a url", "/write", &[]),
            Err(SinkError::BadUrl { .. })
        ));
    }

    #[test]
    fn config_errors_name_the_setting() {
        let mut c = SinkConfig::new(SinkKind::Stdout);
        c.batch_size = 0;
        let e = Sink::new(c).unwrap_err().to_string();
        assert!(e.contains("batch_size"), "{e}");
        let e = Sink::new(SinkConfig::new(SinkKind::InfluxV1 {
            url: "http://h".into(),
            database: String::new(),
            retention_policy: None,
            username: None,
            password: None,
        }))
        .unwrap_err()
        .to_string();
        assert!(e.contains("database"), "{e}");
    }

    #[test]
    fn batches_respect_both_caps_and_cover_every_line_once() {
        // Lines of 10 bytes: ends 10, 20, ...
        let ends: Vec<usize> = (1..=7).map(|i| i * 10).collect();
        assert_eq!(batches(&ends, 3, 1000), vec![0..3, 3..6, 6..7]);
        assert_eq!(batches(&ends, 100, 25), vec![0..2, 2..4, 4..6, 6..7]);
        assert_eq!(batches(&ends, 100, 30), vec![0..3, 3..6, 6..7]);
        assert_eq!(batches(&[], 3, 30), Vec::<std::ops::Range<usize>>::new());
        // A line longer than the byte cap goes alone; the lines around it are not merged in.
        let ends = [5, 10, 60, 65];
        assert_eq!(batches(&ends, 100, 20), vec![0..2, 2..3, 3..4]);
        // Any sizes: consecutive, complete, within the caps unless a single line is larger.
        for size in 1..6 {
            for bytes in [1, 7, 15, 40, 1000] {
                let lens = [3usize, 12, 1, 40, 7, 7, 2, 9, 15, 1];
                let ends: Vec<usize> = lens
                    .iter()
                    .scan(0, |acc, l| {
                        *acc += l;
                        Some(*acc)
                    })
                    .collect();
                let b = batches(&ends, size, bytes);
                let mut next = 0;
                for r in &b {
                    assert_eq!(r.start, next);
                    assert!(
                        r.end > r.start && r.end - r.start <= size,
                        "{size} {bytes} {b:?}"
                    );
                    let from = if r.start == 0 { 0 } else { ends[r.start - 1] };
                    let len = ends[r.end - 1] - from;
                    assert!(len <= bytes || r.len() == 1, "{size} {bytes} {b:?}");
                    next = r.end;
                }
                assert_eq!(next, ends.len());
            }
        }
    }

    #[tokio::test]
    async fn file_sink_appends_and_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/out.lp");
        let mut cfg = SinkConfig::new(SinkKind::File { path: path.clone() });
        cfg.batch_size = 2;
        cfg.batch_bytes = 20;
        let sink = Sink::new(cfg).unwrap();
        let pts: Vec<Point> = (0..5)
            .map(|i| Point::new("m", i).field("v", i))
            .chain([Point::new("m", 9)])
            .collect();
        let r = sink.write(&pts).await.unwrap();
        assert_eq!(
            r,
            WriteReport {
                written: 5,
                rejected: 1,
                dropped: 0,
                spooled: 0
            }
        );
        sink.write(&pts[..1]).await.unwrap();
        let got = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            got,
            "m v=0i 0\nm v=1i 1\nm v=2i 2\nm v=3i 3\nm v=4i 4\nm v=0i 0\n"
        );
    }
}
