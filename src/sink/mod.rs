//! TEMPORARY interface stub; replaced by the real sinks from the `sink` branch.
use crate::lineproto::Point;
use crate::secret::Secret;
use std::path::PathBuf;
use std::time::Duration;
#[derive(Debug, Clone)]
pub enum SinkKind {
    InfluxV2 {
        url: String,
        org: String,
        bucket: String,
        token: Option<Secret>,
    },
    InfluxV1 {
        url: String,
        database: String,
        retention_policy: Option<String>,
        username: Option<String>,
        password: Option<Secret>,
    },
    File {
        path: PathBuf,
    },
    Stdout,
}
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub kind: SinkKind,
    pub gzip: bool,
    pub batch_size: usize,
    pub batch_bytes: usize,
    pub timeout: Duration,
    pub retry_max_elapsed: Duration,
    pub ca_file: Option<PathBuf>,
    pub proxy: Option<String>,
}
impl SinkConfig {
    pub fn new(kind: SinkKind) -> Self {
        SinkConfig {
            kind,
            gzip: true,
            batch_size: 5000,
            batch_bytes: 4 << 20,
            timeout: Duration::from_secs(10),
            retry_max_elapsed: Duration::from_secs(60),
            ca_file: None,
            proxy: None,
        }
    }
}
#[derive(Debug, thiserror::Error)]
#[error("sink: {0}")]
pub struct SinkError(pub String);
#[derive(Debug, Default, Clone, Copy)]
pub struct WriteReport {
    pub written: usize,
    pub rejected: usize,
    pub dropped: usize,
}
#[derive(Clone)]
pub struct Sink;
impl Sink {
    pub fn new(_c: SinkConfig) -> Result<Sink, SinkError> {
        Ok(Sink)
    }
    pub async fn write(&self, p: &[Point]) -> Result<WriteReport, SinkError> {
        Ok(WriteReport {
            written: p.len(),
            ..Default::default()
        })
    }
    pub fn describe(&self) -> String {
        "stub".into()
    }
}
