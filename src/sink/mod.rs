//! Sinks: where encoded points go (InfluxDB v2 API, v1 API, a file, stdout). This module owns
//! the public `Sink` handle shared by all tenant tasks, its configuration, and batching (by
//! line count and byte cap); `influx` owns HTTP requests and retries, `classify` the retry
//! decision table, `file` local writes, `deadletter` the hook for refused lines. It must not
//! escape anything itself (only `lineproto` encodes), spool to disk (the spool sits in front of
//! it) or print a secret (`describe` and every error show URLs without credentials).

mod classify;
mod deadletter;
mod file;
mod influx;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

pub use classify::{
    Disposition, MAX_RETRY_AFTER, Misconfig, TransportKind, classify, dropped_count,
    parse_retry_after,
};

use crate::lineproto::{Point, encode};
use crate::secret::Secret;
use file::{FileWriter, StdoutWriter};
use influx::{Api, Auth, HttpWriter};

/// Where points go.
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone)]
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
        }
    }
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
}

enum Writer {
    Http(HttpWriter),
    File(FileWriter),
    Stdout(StdoutWriter),
}

struct Inner {
    writer: Writer,
    batch_size: usize,
    batch_bytes: usize,
    description: String,
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
                    target: description.clone(),
                };
                (Writer::Http(w), description)
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
                    target: description.clone(),
                };
                (Writer::Http(w), description)
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
        Ok(Sink {
            inner: Arc::new(Inner {
                writer,
                batch_size: cfg.batch_size,
                batch_bytes: cfg.batch_bytes,
                description,
            }),
        })
    }

    /// Where this sink writes, for logs. Never contains a secret.
    pub fn describe(&self) -> String {
        self.inner.description.clone()
    }

    /// Encodes and writes the points in batches; returns only when every batch is acknowledged
    /// (2xx, or appended and fsynced), or failed for good. Points the encoder refuses and lines
    /// the server refuses are counted in the report, not errors.
    pub async fn write(&self, points: &[Point]) -> Result<WriteReport, SinkError> {
        let inner = &*self.inner;
        let mut report = WriteReport::default();
        let mut buf: Vec<u8> = Vec::with_capacity(inner.batch_bytes.min(1 << 20));
        let mut ends: Vec<usize> = Vec::with_capacity(inner.batch_size.min(points.len()));
        let mut first_error = None;
        let mut encode_rejected = 0usize;
        for p in points {
            let before = buf.len();
            if let Err(e) = encode(p, &mut buf) {
                encode_rejected += 1;
                first_error.get_or_insert(e);
                continue;
            }
            ends.push(buf.len());
            if buf.len() > inner.batch_bytes && ends.len() > 1 {
                // The last line would push the batch over the byte cap: send the others and
                // start the next batch with it.
                ends.pop();
                self.flush(&buf[..before], &ends, &mut report).await?;
                buf.drain(..before);
                ends.clear();
                ends.push(buf.len());
            }
            if ends.len() >= inner.batch_size || buf.len() >= inner.batch_bytes {
                self.flush(&buf, &ends, &mut report).await?;
                buf.clear();
                ends.clear();
            }
        }
        if !ends.is_empty() {
            self.flush(&buf, &ends, &mut report).await?;
        }
        if let Writer::File(f) = &inner.writer {
            f.sync().await?;
        }
        if let Some(e) = first_error {
            // Data is lost: our own code built a point the rules refuse.
            tracing::error!(sink = %inner.description, rejected = encode_rejected, first = %e, "points refused by the encoder");
        }
        report.rejected += encode_rejected;
        Ok(report)
    }

    async fn flush(
        &self,
        buf: &[u8],
        ends: &[usize],
        report: &mut WriteReport,
    ) -> Result<(), SinkError> {
        match &self.inner.writer {
            Writer::Http(w) => w.deliver(buf, ends, report).await,
            Writer::File(f) => {
                f.append(buf).await?;
                report.written += ends.len();
                Ok(())
            }
            Writer::Stdout(s) => {
                s.append(buf).await?;
                report.written += ends.len();
                Ok(())
            }
        }
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
                dropped: 0
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
