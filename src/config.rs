//! Typed configuration: a TOML file plus `CITRIX_HARVESTER__SECTION__KEY` environment overrides,
//! read with the `config` crate, then validated into [`Config`]. Every error names the key that
//! is wrong (`tenant[2].customer_id`, `output.url`, ...). Secrets are resolved here (env var,
//! file, systemd credential) and kept in [`Secret`]; nothing in this file talks to the network.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;
use crate::shard::Shard;
use crate::sink::{Concurrency, SinkConfig, SinkKind};

/// Where the regional token host is, per Citrix Cloud region (citrix-monitor-api.md §1.3).
/// `region` picks the token URL and the Monitor base URL; each can be overridden.
pub const REGIONS: &[(&str, &str)] = &[
    ("global", "https://api.cloud.com"),
    ("us", "https://api-us.cloud.com"),
    ("eu", "https://api-eu.cloud.com"),
    ("ap-s", "https://api-ap-s.cloud.com"),
    ("jp", "https://api.citrixcloud.jp"),
];

/// The Azure westeurope host the seed blog post falls back to. Unverified in any Citrix
/// source (citrix-monitor-api.md has no such host), so it is only the default of a setting.
pub const DEFAULT_FALLBACK_TOKEN_URL: &str =
    "https://api.westeurope.cloud.com/cctrustoauth2/{customer_id}/tokens/clients";

/// The entity kinds a tenant can collect.
pub use crate::kinds::KINDS as KNOWN_ENTITIES;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {path}: {source}")]
    Load {
        path: String,
        #[source]
        source: config::ConfigError,
    },
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Raw, as written in the file. `deny_unknown_fields` so that a typo fails loudly.

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    harvester: RawHarvester,
    #[serde(default)]
    citrix: RawCitrix,
    #[serde(default)]
    output: RawOutput,
    #[serde(default, rename = "tenant")]
    tenants: Vec<RawTenant>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHarvester {
    interval: Option<String>,
    jitter: Option<String>,
    state_dir: Option<PathBuf>,
    lookback: Option<String>,
    overlap: Option<String>,
    /// Replaced by the three limits; only read to fail with a message naming them.
    max_concurrent_requests: Option<serde::de::IgnoredAny>,
    max_requests_in_flight: Option<usize>,
    body_budget: Option<ByteSize>,
    allow_inline_secrets: Option<bool>,
    schedule: Option<BTreeMap<String, String>>,
    shutdown_grace: Option<String>,
    listen: Option<String>,
    unhealthy_after: Option<u32>,
    shard: Option<String>,
    tenants_dir: Option<PathBuf>,
    watch_config: Option<bool>,
}

/// A byte size as written: a number of bytes, or text such as `64MiB`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl ByteSize {
    fn bytes(&self, key: &str) -> Result<u64, ConfigError> {
        match self {
            ByteSize::Bytes(n) => Ok(*n),
            ByteSize::Text(t) => parse_bytes(t).map_err(|m| invalid(key, m)),
        }
    }
}

/// Parses a byte size: bare bytes, or a number with `B`, `KiB`, `MiB`, `GiB` (powers of 1024)
/// or `KB`, `MB`, `GB` (powers of 1000); case-insensitive, spaces allowed before the unit.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a byte size such as 64MiB or 1048576"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "`{s}`: unknown unit `{other}` (use B, KiB, MiB, GiB, KB, MB or GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// A file of `tenants_dir`: tenants only.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTenantsFile {
    #[serde(default, rename = "tenant")]
    tenants: Vec<RawTenant>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCitrix {
    auth_scheme: Option<String>,
    request_timeout: Option<String>,
    token_timeout: Option<String>,
    max_retries: Option<usize>,
    max_retry_delay: Option<String>,
    max_pages: Option<usize>,
    max_page_bytes: Option<u64>,
    ca_file: Option<PathBuf>,
    proxy: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    kind: Option<String>,
    url: Option<String>,
    org: Option<String>,
    bucket: Option<String>,
    token: Option<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    database: Option<String>,
    retention_policy: Option<String>,
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    path: Option<PathBuf>,
    gzip: Option<bool>,
    batch_size: Option<usize>,
    batch_bytes: Option<usize>,
    timeout: Option<String>,
    retry_max_elapsed: Option<String>,
    ca_file: Option<PathBuf>,
    proxy: Option<String>,
    buffer_limit: Option<u64>,
    deadletter_limit: Option<u64>,
    concurrency: Option<RawConcurrency>,
    max_concurrency: Option<usize>,
    queue_bytes: Option<usize>,
}

/// `output.concurrency`: "adaptive" or a number (from the environment it arrives as either).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawConcurrency {
    Number(i64),
    Text(String),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: Option<String>,
    customer_id: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    client_secret_file: Option<PathBuf>,
    client_secret_credential: Option<String>,
    region: Option<String>,
    token_url: Option<String>,
    fallback_token_url: Option<String>,
    monitor_url: Option<String>,
    entities: Option<Vec<String>>,
    schedule: Option<BTreeMap<String, String>>,
    enabled: Option<bool>,
    // An on-premises site (Delivery Controllers behind Windows authentication).
    controllers: Option<Vec<String>>,
    auth: Option<String>,
    user: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    password_credential: Option<String>,
    ca_file: Option<PathBuf>,
    proxy: Option<String>,
    kdc: Option<String>,
    spn: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Validated.

/// How the bearer token is presented to the Monitor API (citrix-monitor-api.md §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: CWSAuth bearer=<token>`: what every Citrix document shows.
    CwsAuth,
    /// `Authorization: Bearer <token>`: the seed script's choice; unverified against monitorodata.
    Bearer,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub harvester: HarvesterConfig,
    pub citrix: CitrixConfig,
    pub output: SinkConfig,
    pub tenants: Vec<TenantConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HarvesterConfig {
    pub interval: Duration,
    pub jitter: Duration,
    pub state_dir: PathBuf,
    pub lookback: Duration,
    pub overlap: Duration,
    /// Monitor requests on the wire at once over all tenants (sockets, file descriptors).
    pub max_requests_in_flight: usize,
    /// Bytes of page bodies being read, decoded, mapped, encoded and waiting for the output,
    /// over all tenants: what bounds the memory.
    pub body_budget: usize,
    /// After SIGTERM/SIGINT, how long the current page may take to finish before exiting anyway.
    pub shutdown_grace: Duration,
    /// How often each job runs, by schedule key (an entity kind or `summaries_*`); a key not
    /// here runs every `interval`.
    pub schedule: BTreeMap<String, Duration>,
    /// Address of the `/healthz`, `/readyz` and `/metrics` listener; `None` = no listener.
    pub listen: Option<SocketAddr>,
    /// A tenant whose cycles failed this many times in a row is reported unhealthy.
    pub unhealthy_after: u32,
    /// This instance's share of the tenants (`K/N`); `None` = all. `--shard` overrides it.
    pub shard: Option<Shard>,
    /// A directory of `*.toml` files with more `[[tenant]]` tables (`tenants.d` beside the
    /// main file by default); `None` when the configuration did not come from a file.
    pub tenants_dir: Option<PathBuf>,
    /// Reload when a file of the configuration changes (besides SIGHUP).
    pub watch_config: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CitrixConfig {
    pub auth_scheme: AuthScheme,
    pub request_timeout: Duration,
    pub token_timeout: Duration,
    pub max_retries: usize,
    pub max_retry_delay: Duration,
    pub max_pages: usize,
    /// The largest Monitor page accepted, in decoded bytes (a hostile or broken proxy's
    /// answer must not take the memory of every tenant).
    pub max_page_bytes: usize,
    pub ca_file: Option<PathBuf>,
    pub proxy: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TenantConfig {
    pub name: String,
    pub customer_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub token_url: String,
    pub fallback_token_url: Option<String>,
    pub monitor_url: String,
    pub entities: Vec<String>,
    /// Per-tenant overrides of `harvester.schedule`.
    pub schedule: BTreeMap<String, Duration>,
    /// `Some` for an on-premises site: its Delivery Controllers and Windows credentials. The
    /// cloud fields above are then empty and unused (`monitor_url` is the first controller).
    /// Boxed: most tenants are cloud tenants, and every tenant's settings live for the whole
    /// run, so a cloud tenant should not carry a site's room.
    pub site: Option<Box<SiteConfig>>,
}

/// Which Windows authentication package a site's client speaks (onprem-cvad.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WinAuthKind {
    /// Raw NTLM (`WWW-Authenticate: NTLM`): what Citrix's own samples use.
    Ntlm,
    /// SPNEGO with Kerberos first (a KDC and the controller's SPN are needed), NTLM when no
    /// ticket can be had.
    Negotiate,
}

impl WinAuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WinAuthKind::Ntlm => "ntlm",
            WinAuthKind::Negotiate => "negotiate",
        }
    }
}

/// An on-premises CVAD site: the Monitor OData v4 base of each Delivery Controller, tried in
/// order, and the Windows account the harvester signs in with.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteConfig {
    /// `http[s]://<controller>/Citrix/Monitor/OData/v4/Data`, one per controller, in order.
    pub controllers: Vec<String>,
    pub auth: WinAuthKind,
    /// The domain part of `DOMAIN\user` (NetBIOS name or Kerberos realm).
    pub domain: String,
    pub user: String,
    pub password: Secret,
    pub ca_file: Option<PathBuf>,
    pub proxy: Option<String>,
    /// The KDC for Kerberos (`tcp://dc.corp.example:88`); `None`: from `KRB5_CONFIG`/krb5.conf.
    pub kdc: Option<String>,
    /// The service principal of the controllers; `None`: `HTTP/<controller host>`.
    pub spn: Option<String>,
    /// The prefix of this site's keys in errors (`tenant[2].`; `ca_file` and `proxy` follow).
    pub key: String,
    /// Configuration keys shown in errors (`tenant[2].user`, `tenant[2].password_env`).
    pub user_key: String,
    pub password_key: String,
}

/// The path of the Monitor OData v4 service on a Delivery Controller.
pub const ONPREM_ODATA_PATH: &str = "/Citrix/Monitor/OData/v4/Data";

/// Default intervals by schedule key: machine state every minute (it cannot be re-read
/// later), minute summaries every 5 minutes, hourly ones every 15, daily ones every hour.
pub fn default_schedule() -> BTreeMap<String, Duration> {
    [
        ("machines", 60),
        ("summaries_minute", 300),
        ("summaries_hourly", 900),
        ("summaries_daily", 3600),
    ]
    .into_iter()
    .map(|(k, s)| (k.to_string(), Duration::from_secs(s)))
    .collect()
}

fn parse_schedule(
    key: &str,
    raw: Option<BTreeMap<String, String>>,
) -> Result<BTreeMap<String, Duration>, ConfigError> {
    let mut out = BTreeMap::new();
    for (k, v) in raw.unwrap_or_default() {
        let full = format!("{key}.{k}");
        if !KNOWN_ENTITIES.contains(&k.as_str())
            && !crate::kinds::SCHEDULE_KEYS.contains(&k.as_str())
        {
            let mut known: Vec<&str> = KNOWN_ENTITIES.to_vec();
            known.extend(crate::kinds::SCHEDULE_KEYS);
            return Err(invalid(
                full,
                format!("`{k}` is not one of: {}", known.join(", ")),
            ));
        }
        let d = parse_duration(&v).map_err(|m| invalid(&full, m))?;
        if d < Duration::from_secs(1) {
            return Err(invalid(full, "must be at least 1s"));
        }
        out.insert(k, d);
    }
    Ok(out)
}

/// `harvester.max_requests_in_flight` by default: a request waiting on Citrix costs a socket and
/// a few kilobytes, so thousands are cheap; the limit protects file descriptors (the systemd
/// units allow 65536). Ten thousand medium tenants (60 requests per 5 minutes with 100-row
/// pages, docs/scaling.md) at 1.5 s per request keep about 3,000 requests waiting: 4096 leaves
/// room for retries.
pub const DEFAULT_MAX_REQUESTS_IN_FLIGHT: usize = 4096;

/// `harvester.body_budget` by default (64 MiB): twice the largest page accepted
/// (`citrix.max_page_bytes`, 32 MiB), and dozens of Citrix's 1000-row pages at once.
pub const DEFAULT_BODY_BUDGET: usize = 64 << 20;

/// The largest `harvester.body_budget` (one reservation is one semaphore acquisition).
const MAX_BODY_BUDGET: u64 = u32::MAX as u64;

impl Default for HarvesterConfig {
    fn default() -> Self {
        HarvesterConfig {
            interval: Duration::from_secs(300),
            jitter: Duration::from_secs(30),
            state_dir: PathBuf::from("/var/lib/citrix-harvester"),
            lookback: Duration::from_secs(86_400),
            overlap: Duration::from_secs(120),
            max_requests_in_flight: DEFAULT_MAX_REQUESTS_IN_FLIGHT,
            body_budget: DEFAULT_BODY_BUDGET,
            schedule: default_schedule(),
            shutdown_grace: Duration::from_secs(30),
            listen: None,
            unhealthy_after: 3,
            shard: None,
            tenants_dir: None,
            watch_config: false,
        }
    }
}

impl Default for CitrixConfig {
    fn default() -> Self {
        CitrixConfig {
            auth_scheme: AuthScheme::CwsAuth,
            // Citrix Cloud cuts queries at 30 s (citrix-monitor-api.md §5.5); allow the transfer.
            request_timeout: Duration::from_secs(60),
            token_timeout: Duration::from_secs(12),
            max_retries: 6,
            max_retry_delay: Duration::from_secs(60),
            max_pages: 100_000,
            // A 1,000-row Connections page is about 1.1 MB: thirty times that is still a page.
            max_page_bytes: 32 << 20,
            ca_file: None,
            proxy: None,
        }
    }
}

/// A configuration as `check` sees it: secrets that cannot be read do not fail the load but are
/// reported per tenant (and for the output), so that one bad secret does not hide the rest.
#[derive(Debug)]
pub struct Checked {
    pub config: Config,
    /// Where each tenant of `config.tenants` (same order) came from.
    pub origins: Vec<TenantOrigin>,
    /// Why the output's token or password could not be read (the sink then has none).
    pub output_secret_error: Option<ConfigError>,
}

/// A tenant's place in the configuration, for hints that name the key
/// (`tenant[3].client_secret_env`, `/etc/citrix-harvester/tenants.d/contoso.toml: tenant[0].name`).
#[derive(Debug, Clone)]
pub struct TenantOrigin {
    /// The file of `tenants_dir` it came from; `None` for the main file.
    pub file: Option<String>,
    /// Index among the file's `[[tenant]]` tables, disabled ones included, as in error keys.
    pub index: usize,
    /// The key the client secret is read from, e.g. `tenant[3].client_secret_env`.
    pub secret_key: String,
    /// Why the secret could not be read; the tenant's secret is then empty.
    pub secret_error: Option<String>,
}

fn read_raw(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
    shown: &str,
) -> Result<RawConfig, ConfigError> {
    let load = |source| ConfigError::Load {
        path: shown.to_string(),
        source,
    };
    builder
        .build()
        .map_err(load)?
        .try_deserialize()
        .map_err(load)
}

fn text_and_env(text: &str) -> config::ConfigBuilder<config::builder::DefaultState> {
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("CITRIX_HARVESTER")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
}

fn inline_text(text: &str) -> config::ConfigBuilder<config::builder::DefaultState> {
    config::Config::builder().add_source(config::File::from_str(text, config::FileFormat::Toml))
}

/// The tenant files of `tenants_dir` as read, before validation.
#[derive(Default)]
struct TenantFiles {
    dir: Option<PathBuf>,
    /// (the file as shown in errors, its tenants), in file-name order.
    files: Vec<(String, Vec<RawTenant>)>,
}

impl TenantOrigin {
    /// The configuration key of setting `k` of this tenant.
    pub fn key(&self, k: &str) -> String {
        match &self.file {
            None => format!("tenant[{}].{k}", self.index),
            Some(f) => format!("{f}: tenant[{}].{k}", self.index),
        }
    }
}

/// Reads the `*.toml` files of `dir` in name order (hidden files are skipped). A missing
/// directory is empty unless it was configured explicitly.
fn read_tenants_dir(dir: &Path, explicit: bool) -> Result<TenantFiles, ConfigError> {
    let shown = dir.display().to_string();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(TenantFiles {
                dir: Some(dir.to_path_buf()),
                files: Vec::new(),
            });
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: shown,
                source,
            });
        }
    };
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "toml")
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    paths.sort();
    let mut files = Vec::new();
    for p in paths {
        let shown = p.display().to_string();
        let text = std::fs::read_to_string(&p).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let load = |source| ConfigError::Load {
            path: shown.clone(),
            source,
        };
        let raw: RawTenantsFile = inline_text(&text)
            .build()
            .map_err(load)?
            .try_deserialize()
            .map_err(load)?;
        files.push((shown, raw.tenants));
    }
    Ok(TenantFiles {
        dir: Some(dir.to_path_buf()),
        files,
    })
}

/// Reads the main file (itself, so a pipe such as `--config <(…)` or `/dev/stdin` works),
/// applies the environment overrides, then the files of `tenants_dir`.
fn load_with(path: &Path, lenient: bool) -> Result<Checked, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    let raw = read_raw(text_and_env(&text), &shown)?;
    let base = path.parent().unwrap_or(Path::new(""));
    let files = match &raw.harvester.tenants_dir {
        Some(d) => read_tenants_dir(&base.join(d), true)?,
        None => read_tenants_dir(&base.join("tenants.d"), false)?,
    };
    raw.validate_with(&SecretSources::from_process(), lenient, files)
}

impl Config {
    /// Reads `path` (TOML) with environment overrides (`CITRIX_HARVESTER__OUTPUT__URL=...`).
    /// Keeps only the tenants of this instance's shard: `cli` (`--shard`) wins over
    /// `harvester.shard`; without either, every tenant. Logs what the shard takes.
    pub fn take_shard(&mut self, cli: Option<Shard>) -> Shard {
        let cfg = self;
        let shard = cli.or(cfg.harvester.shard).unwrap_or(Shard::ALL);
        cfg.harvester.shard = Some(shard);
        if shard == Shard::ALL {
            return shard;
        }
        let before = cfg.tenants.len();
        cfg.tenants.retain(|t| shard.owns(&t.customer_id));
        let names: Vec<&str> = cfg.tenants.iter().map(|t| t.name.as_str()).collect();
        if names.is_empty() {
            tracing::warn!(shard = %shard, configured = before,
            "This shard owns none of the configured tenants; it stays idle.");
        } else {
            tracing::info!(shard = %shard, tenants = names.len(), configured = before,
            "This shard takes its share of the tenants.");
        }
        tracing::debug!(shard = %shard, tenants = ?names, "Tenants of this shard.");
        shard
    }

    /// Tenants come from `[[tenant]]` tables here and in the files of `harvester.tenants_dir`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        load_with(path, false).map(|c| c.config)
    }

    /// Parses TOML text without environment overrides (tests).
    pub fn from_toml_str(text: &str, secrets: &SecretSources) -> Result<Config, ConfigError> {
        read_raw(inline_text(text), "<inline>")?.validate(secrets)
    }

    /// Like [`Config::load`], but secrets that cannot be read are reported, not fatal (`check`).
    pub fn load_for_check(path: &Path) -> Result<Checked, ConfigError> {
        load_with(path, true)
    }

    /// Like [`Config::from_toml_str`], but secrets that cannot be read are reported, not fatal.
    pub fn from_toml_str_for_check(
        text: &str,
        secrets: &SecretSources,
    ) -> Result<Checked, ConfigError> {
        read_raw(inline_text(text), "<inline>")?.validate_with(
            secrets,
            true,
            TenantFiles::default(),
        )
    }
}

/// Looks up an environment variable by name.
pub type EnvLookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where secrets are looked up: the process environment and `$CREDENTIALS_DIRECTORY`
/// (systemd `LoadCredential=`). Tests pass their own lookup so they never touch the real env.
pub struct SecretSources {
    pub env: EnvLookup,
    pub credentials_dir: Option<PathBuf>,
}

impl SecretSources {
    pub fn from_process() -> Self {
        SecretSources {
            env: Box::new(|k| std::env::var(k).ok()),
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        }
    }
}

fn read_secret_file(key: &str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
    let value = text.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(invalid(key, format!("{} is empty", path.display())));
    }
    Ok(Secret::new(value))
}

/// The largest `harvester.max_requests_in_flight`.
const MAX_REQUESTS_IN_FLIGHT: usize = 100_000;

/// What `harvester.max_concurrent_requests` (one knob for requests, memory and writes) became.
pub const RENAMED_MAX_CONCURRENT_REQUESTS: &str = "was replaced by three limits: \
    harvester.max_requests_in_flight (Monitor requests waiting on Citrix; default 4096), \
    harvester.body_budget (bytes of page bodies in processing, the memory; default \"64MiB\") \
    and output.max_concurrency (writes to the output); remove it and set those if the defaults \
    do not fit";

impl RawConfig {
    fn validate(self, secrets: &SecretSources) -> Result<Config, ConfigError> {
        self.validate_with(secrets, false, TenantFiles::default())
            .map(|c| c.config)
    }

    /// `lenient`: a secret that cannot be read is recorded instead of failing (for `check`).
    /// `files`: the tenants of `tenants_dir`, after those of the main file.
    fn validate_with(
        self,
        secrets: &SecretSources,
        lenient: bool,
        files: TenantFiles,
    ) -> Result<Checked, ConfigError> {
        let d = HarvesterConfig::default();
        let h = self.harvester;
        if h.max_concurrent_requests.is_some() {
            return Err(invalid(
                "harvester.max_concurrent_requests",
                RENAMED_MAX_CONCURRENT_REQUESTS,
            ));
        }
        let harvester = HarvesterConfig {
            interval: opt_duration("harvester.interval", h.interval)?.unwrap_or(d.interval),
            jitter: opt_duration("harvester.jitter", h.jitter)?.unwrap_or(d.jitter),
            state_dir: h.state_dir.unwrap_or(d.state_dir),
            lookback: opt_duration("harvester.lookback", h.lookback)?.unwrap_or(d.lookback),
            overlap: opt_duration("harvester.overlap", h.overlap)?.unwrap_or(d.overlap),
            max_requests_in_flight: h.max_requests_in_flight.unwrap_or(d.max_requests_in_flight),
            body_budget: match &h.body_budget {
                None => d.body_budget,
                Some(b) => {
                    let n = b.bytes("harvester.body_budget")?;
                    if n > MAX_BODY_BUDGET {
                        return Err(invalid(
                            "harvester.body_budget",
                            format!("{n} bytes is more than the largest budget, 4 GiB"),
                        ));
                    }
                    n as usize
                }
            },
            shutdown_grace: opt_duration("harvester.shutdown_grace", h.shutdown_grace)?
                .unwrap_or(d.shutdown_grace),
            schedule: {
                let mut s = d.schedule;
                s.extend(parse_schedule("harvester.schedule", h.schedule)?);
                s
            },
            listen: match h.listen.as_deref() {
                None => d.listen,
                Some(v) => Some(v.parse::<SocketAddr>().map_err(|e| {
                    invalid(
                        "harvester.listen",
                        format!("`{v}` is not an address such as 127.0.0.1:9464: {e}"),
                    )
                })?),
            },
            unhealthy_after: h.unhealthy_after.unwrap_or(d.unhealthy_after),
            shard: h
                .shard
                .as_deref()
                .map(|v| v.parse::<Shard>())
                .transpose()
                .map_err(|e| invalid("harvester.shard", e.to_string()))?,
            tenants_dir: files.dir,
            watch_config: h.watch_config.unwrap_or(d.watch_config),
        };
        if harvester.interval < Duration::from_secs(1) {
            return Err(invalid("harvester.interval", "must be at least 1s"));
        }
        if harvester.jitter >= harvester.interval {
            return Err(invalid(
                "harvester.jitter",
                "must be shorter than harvester.interval",
            ));
        }
        if !(1..=MAX_REQUESTS_IN_FLIGHT).contains(&harvester.max_requests_in_flight) {
            return Err(invalid(
                "harvester.max_requests_in_flight",
                format!("must be between 1 and {MAX_REQUESTS_IN_FLIGHT}"),
            ));
        }
        if harvester.unhealthy_after == 0 {
            return Err(invalid("harvester.unhealthy_after", "must be >= 1"));
        }
        let allow_inline = h.allow_inline_secrets.unwrap_or(false);

        let dc = CitrixConfig::default();
        let c = self.citrix;
        let auth_scheme = match c.auth_scheme.as_deref() {
            None | Some("cwsauth") => AuthScheme::CwsAuth,
            Some("bearer") => AuthScheme::Bearer,
            Some(other) => {
                return Err(invalid(
                    "citrix.auth_scheme",
                    format!("`{other}` is not one of: cwsauth, bearer"),
                ));
            }
        };
        let citrix = CitrixConfig {
            auth_scheme,
            request_timeout: opt_duration("citrix.request_timeout", c.request_timeout)?
                .unwrap_or(dc.request_timeout),
            token_timeout: opt_duration("citrix.token_timeout", c.token_timeout)?
                .unwrap_or(dc.token_timeout),
            max_retries: c.max_retries.unwrap_or(dc.max_retries),
            max_retry_delay: opt_duration("citrix.max_retry_delay", c.max_retry_delay)?
                .unwrap_or(dc.max_retry_delay),
            max_pages: c.max_pages.unwrap_or(dc.max_pages),
            max_page_bytes: match c.max_page_bytes {
                None => dc.max_page_bytes,
                Some(n) if (64 << 10..=1 << 30).contains(&n) => n as usize,
                Some(n) => {
                    return Err(invalid(
                        "citrix.max_page_bytes",
                        format!("{n} is outside 65536 (64 KiB) ..= 1073741824 (1 GiB)"),
                    ));
                }
            },
            ca_file: c.ca_file,
            proxy: c.proxy,
        };
        if harvester.body_budget < citrix.max_page_bytes {
            return Err(invalid(
                "harvester.body_budget",
                format!(
                    "{} bytes is less than citrix.max_page_bytes ({} bytes): the largest page \
                     accepted must fit the budget",
                    harvester.body_budget, citrix.max_page_bytes
                ),
            ));
        }
        if citrix.max_pages == 0 {
            return Err(invalid("citrix.max_pages", "must be >= 1"));
        }

        let (mut output, output_secret_error) =
            self.output.validate(secrets, allow_inline, lenient)?;
        output.state_dir = Some(harvester.state_dir.clone());

        let all = self
            .tenants
            .into_iter()
            .enumerate()
            .map(|(i, t)| (None, i, t))
            .chain(files.files.into_iter().flat_map(|(file, ts)| {
                ts.into_iter()
                    .enumerate()
                    .map(move |(i, t)| (Some(file.clone()), i, t))
            }));
        let mut tenants = Vec::new();
        let mut origins: Vec<TenantOrigin> = Vec::new();
        // Name / customer → where it was used first: both places are named in the error.
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut customers: BTreeMap<String, String> = BTreeMap::new();
        for (file, i, t) in all {
            if t.enabled == Some(false) {
                continue;
            }
            let (tenant, origin) = t.validate(file, i, secrets, allow_inline, lenient)?;
            let here = origin.key("");
            let here = here.trim_end_matches('.').to_string();
            if let Some(first) = names.insert(tenant.name.clone(), here.clone()) {
                return Err(invalid(
                    origin.key("name"),
                    format!("`{}` is also the name of {first}", tenant.name),
                ));
            }
            // Two tasks on one customer would break Citrix's one-request rule (429s), write
            // every point twice and share checkpoint files.
            if let Some(first) = customers.insert(tenant.customer_id.to_ascii_lowercase(), here) {
                return Err(invalid(
                    origin.key("customer_id"),
                    format!(
                        "`{}` is also the customer_id of {first}; one customer is one tenant",
                        tenant.customer_id
                    ),
                ));
            }
            origins.push(origin);
            tenants.push(tenant);
        }
        if tenants.is_empty() {
            return Err(invalid(
                "tenant",
                "at least one enabled tenant is required: a [[tenant]] table in the main file \
                 or in a file of harvester.tenants_dir",
            ));
        }
        Ok(Checked {
            config: Config {
                harvester,
                citrix,
                output,
                tenants,
            },
            origins,
            output_secret_error,
        })
    }
}

impl RawOutput {
    fn validate(
        self,
        secrets: &SecretSources,
        allow_inline: bool,
        lenient: bool,
    ) -> Result<(SinkConfig, Option<ConfigError>), ConfigError> {
        let deferred = std::cell::RefCell::new(None);
        let secret = |key: &str,
                      inline: Option<String>,
                      env: Option<String>,
                      file: Option<PathBuf>|
         -> Result<Option<Secret>, ConfigError> {
            if let Some(v) = inline {
                if !allow_inline {
                    return Err(invalid(
                        format!("output.{key}"),
                        format!(
                            "inline secrets are refused; use output.{key}_env or output.{key}_file \
                             (or set harvester.allow_inline_secrets = true)"
                        ),
                    ));
                }
                return Ok(Some(Secret::new(v)));
            }
            if let Some(var) = env {
                return match (secrets.env)(&var) {
                    Some(v) if !v.is_empty() => Ok(Some(Secret::new(v))),
                    _ => Err(invalid(
                        format!("output.{key}_env"),
                        format!("environment variable {var} is not set"),
                    )),
                };
            }
            if let Some(path) = file {
                return read_secret_file(&format!("output.{key}_file"), &path).map(Some);
            }
            Ok(None)
        };
        // For `check`: a secret that cannot be read leaves the sink without it, and says why.
        let secret = |key: &str,
                      inline: Option<String>,
                      env: Option<String>,
                      file: Option<PathBuf>|
         -> Result<Option<Secret>, ConfigError> {
            match secret(key, inline, env, file) {
                Err(e) if lenient => {
                    *deferred.borrow_mut() = Some(e);
                    Ok(None)
                }
                other => other,
            }
        };

        let url = |u: Option<String>| -> Result<String, ConfigError> {
            let u = u.ok_or_else(|| invalid("output.url", "is required for this kind"))?;
            check_url("output.url", &u)?;
            Ok(u.trim_end_matches('/').to_string())
        };
        let kind = match self.kind.as_deref().unwrap_or("influxdb_v2") {
            "influxdb_v2" => SinkKind::InfluxV2 {
                url: url(self.url)?,
                org: self.org.unwrap_or_default(),
                bucket: self
                    .bucket
                    .ok_or_else(|| invalid("output.bucket", "is required for influxdb_v2"))?,
                token: secret("token", self.token, self.token_env, self.token_file)?,
            },
            "influxdb_v1" => SinkKind::InfluxV1 {
                url: url(self.url)?,
                database: self
                    .database
                    .ok_or_else(|| invalid("output.database", "is required for influxdb_v1"))?,
                retention_policy: self.retention_policy,
                username: self.username,
                password: secret("password", None, self.password_env, self.password_file)?,
            },
            "file" => SinkKind::File {
                path: self
                    .path
                    .ok_or_else(|| invalid("output.path", "is required for kind = \"file\""))?,
            },
            "stdout" => SinkKind::Stdout,
            other => {
                return Err(invalid(
                    "output.kind",
                    format!("`{other}` is not one of: influxdb_v2, influxdb_v1, file, stdout"),
                ));
            }
        };
        let d = SinkConfig::new(SinkKind::Stdout);
        let batch_size = self.batch_size.unwrap_or(d.batch_size);
        if batch_size == 0 {
            return Err(invalid("output.batch_size", "must be >= 1"));
        }
        let max = self.max_concurrency.unwrap_or(match d.concurrency {
            Concurrency::Adaptive { max } => max,
            Concurrency::Fixed(n) => n,
        });
        if max == 0 {
            return Err(invalid("output.max_concurrency", "must be >= 1"));
        }
        let fixed = |n: i64| match usize::try_from(n) {
            Ok(n) if n >= 1 => Ok(Concurrency::Fixed(n)),
            _ => Err(invalid(
                "output.concurrency",
                format!("{n} is not \"adaptive\" or a number >= 1"),
            )),
        };
        let concurrency = match self.concurrency {
            None => Concurrency::Adaptive { max },
            Some(RawConcurrency::Number(n)) => fixed(n)?,
            Some(RawConcurrency::Text(t)) if t.trim().eq_ignore_ascii_case("adaptive") => {
                Concurrency::Adaptive { max }
            }
            Some(RawConcurrency::Text(t)) => match t.trim().parse::<i64>() {
                Ok(n) => fixed(n)?,
                Err(_) => {
                    return Err(invalid(
                        "output.concurrency",
                        format!("{t:?} is not \"adaptive\" or a number >= 1"),
                    ));
                }
            },
        };
        let queue_bytes = self.queue_bytes.unwrap_or(d.queue_bytes);
        if queue_bytes == 0 || queue_bytes > u32::MAX as usize {
            return Err(invalid(
                "output.queue_bytes",
                format!("must be between 1 and {} bytes", u32::MAX),
            ));
        }
        let sink = SinkConfig {
            kind,
            concurrency,
            queue_bytes,
            gzip: self.gzip.unwrap_or(d.gzip),
            batch_size,
            batch_bytes: self.batch_bytes.unwrap_or(d.batch_bytes),
            timeout: opt_duration("output.timeout", self.timeout)?.unwrap_or(d.timeout),
            retry_max_elapsed: opt_duration("output.retry_max_elapsed", self.retry_max_elapsed)?
                .unwrap_or(d.retry_max_elapsed),
            ca_file: self.ca_file,
            proxy: self.proxy,
            // The spool and dead letters live in harvester.state_dir (set by the caller).
            state_dir: None,
            buffer_limit: self.buffer_limit.unwrap_or(d.buffer_limit),
            deadletter_limit: self.deadletter_limit.unwrap_or(d.deadletter_limit),
            ..d
        };
        Ok((sink, deferred.into_inner()))
    }
}

impl RawTenant {
    fn validate(
        self,
        file: Option<String>,
        i: usize,
        secrets: &SecretSources,
        allow_inline: bool,
        lenient: bool,
    ) -> Result<(TenantConfig, TenantOrigin), ConfigError> {
        let mut origin = TenantOrigin {
            file,
            index: i,
            secret_key: String::new(),
            secret_error: None,
        };
        let prefix = origin.key("");
        let key = |k: &str| format!("{prefix}{k}");
        let name = self
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| invalid(key("name"), "is required"))?;
        let customer_id = match self.customer_id.clone().filter(|c| !c.trim().is_empty()) {
            Some(c) => c,
            // A site has no Citrix customer id: its name, as a checkpoint-safe id.
            None if self.controllers.is_some() => site_id(&name),
            None => return Err(invalid(key("customer_id"), "is required")),
        };
        if !customer_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                key("customer_id"),
                "may contain only letters, digits, '-' and '_'",
            ));
        }
        if self.controllers.is_some() {
            return self.validate_site(origin, name, customer_id, secrets, allow_inline, lenient);
        }
        for (k, set) in [
            ("auth", self.auth.is_some()),
            ("user", self.user.is_some()),
            ("password", self.password.is_some()),
            ("password_env", self.password_env.is_some()),
            ("password_file", self.password_file.is_some()),
            ("password_credential", self.password_credential.is_some()),
            ("ca_file", self.ca_file.is_some()),
            ("proxy", self.proxy.is_some()),
            ("kdc", self.kdc.is_some()),
            ("spn", self.spn.is_some()),
        ] {
            if set {
                return Err(invalid(
                    key(k),
                    "is a setting of an on-premises site, which needs `controllers`; a Citrix \
                     Cloud tenant uses client_id and client_secret_* (and citrix.ca_file / \
                     citrix.proxy)",
                ));
            }
        }
        let client_id = self
            .client_id
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| invalid(key("client_id"), "is required"))?;
        let (secret_key, resolved) = resolve_secret(
            &key,
            "client_secret",
            SecretSetting {
                inline: self.client_secret.clone(),
                env: self.client_secret_env.clone(),
                file: self.client_secret_file.clone(),
                credential: self.client_secret_credential.clone(),
            },
            secrets,
            allow_inline,
        );
        origin.secret_key = secret_key;
        let client_secret = match resolved {
            Ok(s) => s,
            Err(e) if lenient => {
                origin.secret_error = Some(e.to_string());
                Secret::new("")
            }
            Err(e) => return Err(e),
        };

        let region = self.region.unwrap_or_else(|| "global".into());
        let host = REGIONS
            .iter()
            .find(|(r, _)| *r == region)
            .map(|(_, h)| *h)
            .ok_or_else(|| {
                let known: Vec<_> = REGIONS.iter().map(|(r, _)| *r).collect();
                invalid(
                    key("region"),
                    format!("`{region}` is not one of: {}", known.join(", ")),
                )
            })?;
        let expand = |u: String| u.replace("{customer_id}", &customer_id);
        let token_url = expand(
            self.token_url
                .unwrap_or_else(|| format!("{host}/cctrustoauth2/{{customer_id}}/tokens/clients")),
        );
        check_url(&key("token_url"), &token_url)?;
        let fallback_token_url = match self.fallback_token_url.as_deref() {
            Some("") => None,
            Some(u) => Some(expand(u.to_string())),
            None => Some(expand(DEFAULT_FALLBACK_TOKEN_URL.to_string())),
        };
        if let Some(u) = &fallback_token_url {
            check_url(&key("fallback_token_url"), u)?;
        }
        let monitor_url = expand(
            self.monitor_url
                .unwrap_or_else(|| format!("{host}/monitorodata")),
        );
        check_url(&key("monitor_url"), &monitor_url)?;
        let monitor_url = monitor_url.trim_end_matches('/').to_string();

        let entities = self
            .entities
            .unwrap_or_else(|| KNOWN_ENTITIES.iter().map(|s| s.to_string()).collect());
        for e in &entities {
            if !KNOWN_ENTITIES.contains(&e.as_str()) {
                return Err(invalid(
                    key("entities"),
                    format!("`{e}` is not one of: {}", KNOWN_ENTITIES.join(", ")),
                ));
            }
        }
        let schedule = parse_schedule(&key("schedule"), self.schedule)?;
        let tenant = TenantConfig {
            schedule,
            name,
            customer_id,
            client_id,
            client_secret,
            token_url,
            fallback_token_url,
            monitor_url,
            entities,
            site: None,
        };
        Ok((tenant, origin))
    }
}

impl RawTenant {
    /// An on-premises site: `controllers`, `auth`, `user` and `password_*` instead of the
    /// Citrix Cloud keys (which are refused here, so a half-converted tenant fails loudly).
    fn validate_site(
        self,
        mut origin: TenantOrigin,
        name: String,
        customer_id: String,
        secrets: &SecretSources,
        allow_inline: bool,
        lenient: bool,
    ) -> Result<(TenantConfig, TenantOrigin), ConfigError> {
        let prefix = origin.key("");
        let key = |k: &str| format!("{prefix}{k}");
        for (k, set) in [
            ("client_id", self.client_id.is_some()),
            ("client_secret", self.client_secret.is_some()),
            ("client_secret_env", self.client_secret_env.is_some()),
            ("client_secret_file", self.client_secret_file.is_some()),
            (
                "client_secret_credential",
                self.client_secret_credential.is_some(),
            ),
            ("region", self.region.is_some()),
            ("token_url", self.token_url.is_some()),
            ("fallback_token_url", self.fallback_token_url.is_some()),
            ("monitor_url", self.monitor_url.is_some()),
        ] {
            if set {
                return Err(invalid(
                    key(k),
                    "is a Citrix Cloud setting; this tenant is an on-premises site (it has \
                     `controllers`), which signs in with `user` and `password_*`",
                ));
            }
        }
        let mut controllers = Vec::new();
        for (i, c) in self.controllers.unwrap_or_default().into_iter().enumerate() {
            let k = format!("{}[{i}]", key("controllers"));
            controllers.push(controller_base(&k, &c)?);
        }
        if controllers.is_empty() {
            return Err(invalid(
                key("controllers"),
                "needs at least one Delivery Controller URL, e.g. \
                 \"https://ddc1.corp.example\" (the Monitor path is added)",
            ));
        }
        let auth = match self.auth.as_deref().unwrap_or("ntlm") {
            "ntlm" => WinAuthKind::Ntlm,
            "negotiate" => WinAuthKind::Negotiate,
            other => {
                return Err(invalid(
                    key("auth"),
                    format!("`{other}` is not one of: ntlm, negotiate"),
                ));
            }
        };
        let (domain, user) = parse_user(&key("user"), self.user.as_deref())?;
        if self.kdc.is_some() && auth != WinAuthKind::Negotiate {
            return Err(invalid(
                key("kdc"),
                "is used only with auth = \"negotiate\"",
            ));
        }
        if let Some(kdc) = &self.kdc {
            let u = url::Url::parse(kdc).map_err(|e| {
                invalid(
                    key("kdc"),
                    format!("`{kdc}` is not a URL like tcp://dc1.corp.example:88: {e}"),
                )
            })?;
            if u.scheme() != "tcp" || u.host_str().is_none() {
                return Err(invalid(
                    key("kdc"),
                    format!("`{kdc}` must be tcp://<host>[:port] (Kerberos over TCP)"),
                ));
            }
        }
        if let Some(p) = &self.proxy {
            check_proxy_url(p).map_err(|why| invalid(key("proxy"), why))?;
        }
        let (password_key, resolved) = resolve_secret(
            &key,
            "password",
            SecretSetting {
                inline: self.password,
                env: self.password_env,
                file: self.password_file,
                credential: self.password_credential,
            },
            secrets,
            allow_inline,
        );
        origin.secret_key = password_key.clone();
        let password = match resolved {
            Ok(s) => s,
            Err(e) if lenient => {
                origin.secret_error = Some(e.to_string());
                Secret::new("")
            }
            Err(e) => return Err(e),
        };
        let entities = self
            .entities
            .unwrap_or_else(|| KNOWN_ENTITIES.iter().map(|s| s.to_string()).collect());
        for e in &entities {
            if !KNOWN_ENTITIES.contains(&e.as_str()) {
                return Err(invalid(
                    key("entities"),
                    format!("`{e}` is not one of: {}", KNOWN_ENTITIES.join(", ")),
                ));
            }
        }
        let schedule = parse_schedule(&key("schedule"), self.schedule)?;
        let site = SiteConfig {
            controllers: controllers.clone(),
            auth,
            domain,
            user,
            password: password.clone(),
            ca_file: self.ca_file,
            proxy: self.proxy,
            kdc: self.kdc,
            spn: self.spn.filter(|s| !s.trim().is_empty()),
            key: prefix.clone(),
            user_key: key("user"),
            password_key,
        };
        let tenant = TenantConfig {
            name,
            customer_id,
            client_id: String::new(),
            client_secret: Secret::new(""),
            token_url: String::new(),
            fallback_token_url: None,
            monitor_url: controllers[0].clone(),
            entities,
            schedule,
            site: Some(Box::new(site)),
        };
        Ok((tenant, origin))
    }
}

/// A controller's Monitor OData v4 base: `https://ddc1.corp.example` gets the standard path;
/// a URL with a path is taken as it is (a reverse proxy may publish the service elsewhere).
fn controller_base(key: &str, u: &str) -> Result<String, ConfigError> {
    check_url(key, u)?;
    let parsed = url::Url::parse(u).map_err(|e| invalid(key, e.to_string()))?;
    if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() {
        return Err(invalid(
            key,
            format!(
                "`{u}` must have no query, fragment or user name (the password is `password_*`)"
            ),
        ));
    }
    let trimmed = u.trim_end_matches('/');
    Ok(if parsed.path().trim_matches('/').is_empty() {
        format!("{trimmed}{ONPREM_ODATA_PATH}")
    } else {
        trimmed.to_string()
    })
}

/// `DOMAIN\user` (what Citrix's samples and Windows show) into domain and user.
fn parse_user(key: &str, v: Option<&str>) -> Result<(String, String), ConfigError> {
    let v = v.ok_or_else(|| invalid(key, "is required, as DOMAIN\\user"))?;
    match v.split_once('\\') {
        Some((d, u)) if !d.trim().is_empty() && !u.trim().is_empty() && !u.contains('\\') => {
            Ok((d.trim().to_string(), u.trim().to_string()))
        }
        _ => Err(invalid(
            key,
            format!(
                "`{v}` must be DOMAIN\\user (in TOML: \"CORP\\\\svc-harvester\" or \
                 'CORP\\svc-harvester'); for Kerberos the domain is the realm"
            ),
        )),
    }
}

/// Where one secret comes from, as written: `<name>`, `<name>_env`, `<name>_file`,
/// `<name>_credential`.
struct SecretSetting {
    inline: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
    credential: Option<String>,
}

/// Reads the secret `name` (`client_secret`, `password`) from env, a file or a systemd
/// credential; returns the key whose value is used, for hints, and the secret or the error.
fn resolve_secret(
    key: &dyn Fn(&str) -> String,
    name: &str,
    s: SecretSetting,
    secrets: &SecretSources,
    allow_inline: bool,
) -> (String, Result<Secret, ConfigError>) {
    let k = |suffix: &str| key(&format!("{name}{suffix}"));
    // The key whose value is used: the same order as below.
    let used = if s.inline.is_some() {
        k("")
    } else if s.file.is_some() && s.env.is_none() {
        k("_file")
    } else if s.credential.is_some() && s.env.is_none() {
        k("_credential")
    } else {
        k("_env")
    };
    let resolved = (|| {
        Ok(if let Some(v) = s.inline {
            if !allow_inline {
                return Err(invalid(
                    k(""),
                    format!(
                        "inline secrets are refused; use {name}_env, {name}_file or \
                         {name}_credential (or set harvester.allow_inline_secrets = true)"
                    ),
                ));
            }
            Secret::new(v)
        } else if let Some(var) = &s.env {
            match (secrets.env)(var) {
                Some(v) if !v.is_empty() => Secret::new(v),
                _ => {
                    return Err(invalid(
                        k("_env"),
                        format!("environment variable {var} is not set"),
                    ));
                }
            }
        } else if let Some(path) = &s.file {
            read_secret_file(&k("_file"), path)?
        } else if let Some(cred) = &s.credential {
            let dir = secrets.credentials_dir.as_ref().ok_or_else(|| {
                invalid(
                    k("_credential"),
                    "CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the systemd unit)",
                )
            })?;
            read_secret_file(&k("_credential"), &dir.join(cred))?
        } else {
            return Err(invalid(
                k("_env"),
                format!("one of {name}_env, {name}_file, {name}_credential is required"),
            ));
        })
    })();
    (used, resolved)
}

/// A site's checkpoint id from its name: letters and digits kept, anything else `-`.
fn site_id(name: &str) -> String {
    let id: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("site-{id}")
}

/// A `site.proxy` the harvester can tunnel through: `http://[user:password@]host[:port]`.
pub fn check_proxy_url(p: &str) -> Result<(), String> {
    let u = url::Url::parse(p).map_err(|e| format!("`{}` is not a URL: {e}", redact_proxy(p)))?;
    if u.scheme() != "http" || u.host_str().is_none() {
        return Err(format!(
            "`{}` must be http://host:port (an on-premises site tunnels to its controllers \
             through the proxy with CONNECT)",
            redact_proxy(p)
        ));
    }
    Ok(())
}

/// A proxy URL fit for a message: any password in it replaced by `***`.
pub fn redact_proxy(p: &str) -> String {
    match url::Url::parse(p) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => p.to_string(),
        Err(_) => match p.rfind('@') {
            Some(at) => format!("***{}", &p[at..]),
            None => p.to_string(),
        },
    }
}

fn check_url(key: &str, u: &str) -> Result<(), ConfigError> {
    let parsed =
        url::Url::parse(u).map_err(|e| invalid(key, format!("`{u}` is not a URL: {e}")))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(invalid(key, format!("`{u}` must be http or https")));
    }
    Ok(())
}

fn opt_duration(key: &str, v: Option<String>) -> Result<Option<Duration>, ConfigError> {
    v.map(|s| parse_duration(&s).map_err(|m| invalid(key, m)))
        .transpose()
}

/// Parses operator-style durations: `500ms`, `30s`, `5m`, `1h30m`, `7d`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return check_max(s, Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{s}` is not a duration like 30s, 5m, 1h30m, 7d"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{s}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let millis_per = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m, h, d)"));
            }
        };
        let d = n
            .checked_mul(millis_per)
            .map(Duration::from_millis)
            .ok_or_else(|| format!("`{s}`: number too large"))?;
        total = total
            .checked_add(d)
            .ok_or_else(|| format!("`{s}`: number too large"))?;
    }
    check_max(s, total)
}

/// The longest duration any setting takes: a century. Date arithmetic with it can never
/// overflow (DESIGN.md rule 8: `lookback = "99999999d"` must be an error, not a panic).
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 366 * 86_400);

fn check_max(s: &str, d: Duration) -> Result<Duration, String> {
    if d > MAX_DURATION {
        return Err(format!("`{s}` is longer than 100 years"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_proxy_urls_are_checked_and_redacted() {
        assert!(check_proxy_url("http://proxy.corp.example:3128").is_ok());
        assert!(check_proxy_url("http://u:p@proxy:3128").is_ok());
        let e = check_proxy_url("https://u:secret@proxy:3128").unwrap_err();
        assert!(
            e.contains("http://host:port") && !e.contains("secret"),
            "{e}"
        );
        assert!(check_proxy_url("socks5://proxy:1080").is_err());
        assert_eq!(
            redact_proxy("http://u:secret@proxy:3128"),
            "http://u:***@proxy:3128/"
        );
        assert_eq!(redact_proxy("not a url u:secret@proxy"), "***@proxy");
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> SecretSources {
        SecretSources {
            env: Box::new(move |k| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }),
            credentials_dir: None,
        }
    }

    const MINIMAL: &str = r#"
[output]
kind = "influxdb_v1"
url = "http://127.0.0.1:8086"
database = "citrix"

[[tenant]]
name = "Contoso"
customer_id = "contoso1"
client_id = "abc"
client_secret_env = "CONTOSO_SECRET"
region = "eu"
"#;

    fn err_key(r: Result<Config, ConfigError>) -> String {
        match r {
            Err(ConfigError::Invalid { key, .. }) => key,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn the_old_max_concurrent_requests_names_its_replacements() {
        let text = format!("[harvester]\nmax_concurrent_requests = 32\n{MINIMAL}");
        let e = Config::from_toml_str(&text, &env(&[("CONTOSO_SECRET", "s")]))
            .expect_err("the old key is refused")
            .to_string();
        for named in [
            "harvester.max_concurrent_requests",
            "harvester.max_requests_in_flight",
            "harvester.body_budget",
            "output.max_concurrency",
        ] {
            assert!(e.contains(named), "{named} missing from: {e}");
        }
    }

    #[test]
    fn limits_have_defaults_and_checked_values() {
        let s = env(&[("CONTOSO_SECRET", "s")]);
        let c = Config::from_toml_str(MINIMAL, &s).unwrap();
        assert_eq!(c.harvester.max_requests_in_flight, 4096);
        assert_eq!(c.harvester.body_budget, 64 << 20);
        let with = |h: &str| Config::from_toml_str(&format!("[harvester]\n{h}\n{MINIMAL}"), &s);
        let c = with("max_requests_in_flight = 5000\nbody_budget = \"256MiB\"").unwrap();
        assert_eq!(c.harvester.max_requests_in_flight, 5000);
        assert_eq!(c.harvester.body_budget, 256 << 20);
        let c = with("body_budget = 40000000").unwrap();
        assert_eq!(c.harvester.body_budget, 40_000_000);
        assert_eq!(
            err_key(with("max_requests_in_flight = 0")),
            "harvester.max_requests_in_flight"
        );
        assert_eq!(
            err_key(with("body_budget = \"64 furlongs\"")),
            "harvester.body_budget"
        );
        assert_eq!(
            err_key(with("body_budget = \"8GiB\"")),
            "harvester.body_budget"
        );
        // Smaller than the largest page accepted (32 MiB by default): that page could never fit.
        let small = with("body_budget = \"16MiB\"").err().unwrap().to_string();
        assert!(small.contains("citrix.max_page_bytes"), "{small}");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("64 mib").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("3MB").unwrap(), 3_000_000);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert_eq!(parse_bytes("10B").unwrap(), 10);
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("-1MiB").is_err());
        assert!(parse_bytes("1.5MiB").is_err());
        assert!(parse_bytes("99999999999999GiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m5").is_err());
        assert!(parse_duration("").is_err());
        // Beyond a century, or beyond u64: an error, never an overflow.
        assert_eq!(
            parse_duration("36500d").unwrap(),
            Duration::from_secs(36500 * 86_400)
        );
        for huge in [
            "99999999d",
            "18446744073709551615d",
            "9223372036854775807",
            "1d99999999999h",
        ] {
            let e = parse_duration(huge).unwrap_err();
            assert!(
                e.contains("100 years") || e.contains("too large"),
                "{huge}: {e}"
            );
        }
    }

    fn tenant_toml(name: &str, customer: &str) -> String {
        format!(
            "[[tenant]]\nname = \"{name}\"\ncustomer_id = \"{customer}\"\nclient_id = \"c\"\n\
             client_secret_env = \"CONTOSO_SECRET\"\n"
        )
    }

    #[test]
    fn tenants_come_from_the_main_file_then_tenants_d_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("citrix-harvester.toml");
        std::fs::write(&main, MINIMAL).unwrap();
        let d = dir.path().join("tenants.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("b.toml"), tenant_toml("Beta", "beta1")).unwrap();
        let two = tenant_toml("Alpha", "alpha1") + &tenant_toml("Alpha2", "alpha2");
        std::fs::write(d.join("a.toml"), two).unwrap();
        std::fs::write(d.join(".hidden.toml"), "garbage").unwrap();
        std::fs::write(d.join("notes.txt"), "garbage").unwrap();
        let s = env(&[("CONTOSO_SECRET", "x")]);
        let raw = read_raw(text_and_env(MINIMAL), "main").unwrap();
        let files = read_tenants_dir(&d, false).unwrap();
        let c = raw.validate_with(&s, false, files).unwrap().config;
        let names: Vec<&str> = c.tenants.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["Contoso", "Alpha", "Alpha2", "Beta"]);
        assert_eq!(c.harvester.tenants_dir.as_deref(), Some(d.as_path()));
        // A duplicate across two files names both; an unknown key names its file.
        std::fs::write(d.join("c.toml"), tenant_toml("Gamma", "BETA1")).unwrap();
        let raw = read_raw(text_and_env(MINIMAL), "main").unwrap();
        let e = raw
            .validate_with(&s, false, read_tenants_dir(&d, false).unwrap())
            .unwrap_err()
            .to_string();
        let (b, c_file) = (d.join("b.toml"), d.join("c.toml"));
        assert!(
            e.contains(&format!("{}: tenant[0].customer_id", c_file.display())),
            "{e}"
        );
        assert!(e.contains(&format!("{}: tenant[0]", b.display())), "{e}");
        std::fs::write(d.join("c.toml"), "[[tenant]]\nnmae = \"typo\"\n").unwrap();
        let e = read_tenants_dir(&d, false).err().unwrap().to_string();
        assert!(e.contains("c.toml") && e.contains("nmae"), "{e}");
        // A configured directory must exist; the default one may be absent.
        assert!(read_tenants_dir(&dir.path().join("none"), true).is_err());
        assert!(
            read_tenants_dir(&dir.path().join("none"), false)
                .unwrap()
                .files
                .is_empty()
        );
    }

    #[test]
    fn one_customer_is_one_tenant_and_both_duplicates_are_named() {
        let s = env(&[("CONTOSO_SECRET", "x")]);
        let second = MINIMAL
            .split("[[tenant]]")
            .nth(1)
            .unwrap()
            .replace("Contoso", "Contoso EU")
            .replace("contoso1", "CONTOSO1");
        let text = format!("{MINIMAL}\n[[tenant]]{second}");
        let e = Config::from_toml_str(&text, &s).unwrap_err().to_string();
        assert!(
            e.contains("tenant[1].customer_id") && e.contains("tenant[0]"),
            "{e}"
        );
        let same_name = format!(
            "{MINIMAL}\n[[tenant]]{}",
            MINIMAL
                .split("[[tenant]]")
                .nth(1)
                .unwrap()
                .replace("contoso1", "other2")
        );
        let e = Config::from_toml_str(&same_name, &s)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tenant[1].name") && e.contains("tenant[0]"),
            "{e}"
        );
    }

    #[test]
    fn minimal_config_gets_regional_urls_and_defaults() {
        let c = Config::from_toml_str(MINIMAL, &env(&[("CONTOSO_SECRET", "s3cret")])).unwrap();
        let t = &c.tenants[0];
        assert_eq!(
            t.token_url,
            "https://api-eu.cloud.com/cctrustoauth2/contoso1/tokens/clients"
        );
        assert_eq!(
            t.fallback_token_url.as_deref(),
            Some("https://api.westeurope.cloud.com/cctrustoauth2/contoso1/tokens/clients")
        );
        assert_eq!(t.monitor_url, "https://api-eu.cloud.com/monitorodata");
        assert_eq!(t.client_secret.expose(), "s3cret");
        assert_eq!(t.entities, KNOWN_ENTITIES);
        assert_eq!(c.harvester.interval, Duration::from_secs(300));
        assert_eq!(c.citrix.auth_scheme, AuthScheme::CwsAuth);
        assert!(format!("{c:?}").contains("***"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn output_concurrency_is_adaptive_by_default_or_fixed() {
        let s = env(&[("CONTOSO_SECRET", "x")]);
        let with = |extra: &str| MINIMAL.replace("[output]\n", &format!("[output]\n{extra}\n"));
        let c = Config::from_toml_str(MINIMAL, &s).unwrap();
        assert_eq!(c.output.concurrency, Concurrency::Adaptive { max: 32 });
        assert_eq!(c.output.queue_bytes, 32 << 20);
        let c = Config::from_toml_str(&with("concurrency = \"adaptive\"\nmax_concurrency = 8"), &s)
            .unwrap();
        assert_eq!(c.output.concurrency, Concurrency::Adaptive { max: 8 });
        let c = Config::from_toml_str(&with("concurrency = 4"), &s).unwrap();
        assert_eq!(c.output.concurrency, Concurrency::Fixed(4));
        // From the environment a number may arrive as text.
        let c =
            Config::from_toml_str(&with("concurrency = \"6\"\nqueue_bytes = 1000"), &s).unwrap();
        assert_eq!(c.output.concurrency, Concurrency::Fixed(6));
        assert_eq!(c.output.queue_bytes, 1000);
        for bad in [
            "concurrency = 0",
            "concurrency = -3",
            "concurrency = \"fast\"",
        ] {
            assert_eq!(
                err_key(Config::from_toml_str(&with(bad), &s)),
                "output.concurrency",
                "{bad}"
            );
        }
        assert_eq!(
            err_key(Config::from_toml_str(&with("max_concurrency = 0"), &s)),
            "output.max_concurrency"
        );
        assert_eq!(
            err_key(Config::from_toml_str(&with("queue_bytes = 0"), &s)),
            "output.queue_bytes"
        );
    }

    #[test]
    fn listen_is_off_by_default_and_validated() {
        let s = env(&[("CONTOSO_SECRET", "x")]);
        let c = Config::from_toml_str(MINIMAL, &s).unwrap();
        assert_eq!(c.harvester.listen, None);
        let on = format!("[harvester]\nlisten = \"127.0.0.1:9464\"\n{MINIMAL}");
        let c = Config::from_toml_str(&on, &s).unwrap();
        assert_eq!(c.harvester.listen, Some("127.0.0.1:9464".parse().unwrap()));
        let bad = format!("[harvester]\nlisten = \"localhost\"\n{MINIMAL}");
        assert_eq!(err_key(Config::from_toml_str(&bad, &s)), "harvester.listen");
    }

    #[test]
    fn errors_name_the_key() {
        let no_secret = env(&[]);
        assert_eq!(
            err_key(Config::from_toml_str(MINIMAL, &no_secret)),
            "tenant[0].client_secret_env"
        );
        let s = env(&[("CONTOSO_SECRET", "x")]);
        let bad_region = MINIMAL.replace("\"eu\"", "\"mars\"");
        assert_eq!(
            err_key(Config::from_toml_str(&bad_region, &s)),
            "tenant[0].region"
        );
        let inline = MINIMAL.replace(
            "client_secret_env = \"CONTOSO_SECRET\"",
            "client_secret = \"x\"",
        );
        assert_eq!(
            err_key(Config::from_toml_str(&inline, &s)),
            "tenant[0].client_secret"
        );
        let bad_interval = format!("[harvester]\ninterval = \"5 minutes\"\n{MINIMAL}");
        assert_eq!(
            err_key(Config::from_toml_str(&bad_interval, &s)),
            "harvester.interval"
        );
        let bad_entity = MINIMAL.replace(
            "region = \"eu\"",
            "region = \"eu\"\nentities = [\"conections\"]",
        );
        assert_eq!(
            err_key(Config::from_toml_str(&bad_entity, &s)),
            "tenant[0].entities"
        );
        let no_db = MINIMAL.replace("database = \"citrix\"", "");
        assert_eq!(
            err_key(Config::from_toml_str(&no_db, &s)),
            "output.database"
        );
        let dup = format!(
            "{MINIMAL}{}",
            &MINIMAL[MINIMAL.find("[[tenant]]").unwrap()..]
        );
        assert_eq!(err_key(Config::from_toml_str(&dup, &s)), "tenant[1].name");
    }

    #[test]
    fn schedule_keys_are_checked_and_tenant_overrides_parse() {
        let s = env(&[("CONTOSO_SECRET", "x")]);
        let text = format!("[harvester.schedule]\nmachiens = \"1m\"\n{MINIMAL}");
        assert_eq!(
            err_key(Config::from_toml_str(&text, &s)),
            "harvester.schedule.machiens"
        );
        let text = MINIMAL.replace(
            "region = \"eu\"",
            "region = \"eu\"\nschedule = { machines = \"2m\" }",
        );
        let c = Config::from_toml_str(&text, &s).unwrap();
        assert_eq!(c.tenants[0].schedule["machines"], Duration::from_secs(120));
        assert_eq!(c.harvester.schedule["machines"], Duration::from_secs(60));
    }

    #[test]
    fn shard_is_optional_and_validated() {
        let s = env(&[("CONTOSO_SECRET", "x")]);
        assert_eq!(
            Config::from_toml_str(MINIMAL, &s).unwrap().harvester.shard,
            None
        );
        let on = format!("[harvester]\nshard = \"1/3\"\n{MINIMAL}");
        let c = Config::from_toml_str(&on, &s).unwrap();
        assert_eq!(c.harvester.shard, Some(Shard::new(1, 3).unwrap()));
        let bad = format!("[harvester]\nshard = \"3/3\"\n{MINIMAL}");
        assert_eq!(err_key(Config::from_toml_str(&bad, &s)), "harvester.shard");
    }

    #[test]
    fn check_mode_reports_unreadable_secrets_per_tenant() {
        let second = MINIMAL[MINIMAL.find("[[tenant]]").unwrap()..]
            .replace("Contoso", "Fabrikam")
            .replace("contoso1", "fabrikam1")
            .replace(
                "client_secret_env = \"CONTOSO_SECRET\"",
                "client_secret_file = \"/nonexistent/x\"",
            );
        let text = format!("{MINIMAL}\n[[tenant]]\nname = \"Off\"\nenabled = false\n{second}");
        let s = env(&[("CONTOSO_SECRET", "x")]);
        assert_eq!(
            err_key(Config::from_toml_str(&text, &s)),
            "tenant[2].client_secret_file"
        );
        let c = Config::from_toml_str_for_check(&text, &s).unwrap();
        assert_eq!(c.config.tenants.len(), 2);
        assert_eq!(c.origins[0].index, 0);
        assert_eq!(c.origins[0].secret_key, "tenant[0].client_secret_env");
        assert!(c.origins[0].secret_error.is_none());
        assert_eq!(c.origins[1].index, 2);
        assert_eq!(c.origins[1].secret_key, "tenant[2].client_secret_file");
        let why = c.origins[1].secret_error.as_deref().unwrap();
        assert!(why.contains("tenant[2].client_secret_file"), "{why}");
        assert!(c.output_secret_error.is_none());
        let no_pw = text.replace(
            "database = \"citrix\"",
            "database = \"citrix\"\nusername = \"u\"\npassword_env = \"NOPE\"",
        );
        let c = Config::from_toml_str_for_check(&no_pw, &s).unwrap();
        let e = c.output_secret_error.unwrap().to_string();
        assert!(e.contains("output.password_env"), "{e}");
    }

    #[test]
    fn unknown_keys_fail_loudly() {
        let typo = MINIMAL.replace("region = \"eu\"", "regoin = \"eu\"");
        let err = Config::from_toml_str(&typo, &env(&[("CONTOSO_SECRET", "x")])).unwrap_err();
        assert!(err.to_string().contains("regoin"), "{err}");
    }

    #[test]
    fn url_overrides_expand_customer_id() {
        let text = MINIMAL.replace(
            "region = \"eu\"",
            "token_url = \"http://127.0.0.1:9/cctrustoauth2/{customer_id}/tokens/clients\"\n\
             fallback_token_url = \"\"\nmonitor_url = \"http://127.0.0.1:9/monitorodata/\"",
        );
        let c = Config::from_toml_str(&text, &env(&[("CONTOSO_SECRET", "x")])).unwrap();
        let t = &c.tenants[0];
        assert_eq!(
            t.token_url,
            "http://127.0.0.1:9/cctrustoauth2/contoso1/tokens/clients"
        );
        assert_eq!(t.fallback_token_url, None);
        assert_eq!(t.monitor_url, "http://127.0.0.1:9/monitorodata");
    }

    #[test]
    fn secret_from_file_and_credentials_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("contoso"), "from-file\n").unwrap();
        let text = MINIMAL.replace(
            "client_secret_env = \"CONTOSO_SECRET\"",
            "client_secret_credential = \"contoso\"",
        );
        let s = SecretSources {
            env: Box::new(|_| None),
            credentials_dir: Some(dir.path().to_path_buf()),
        };
        let c = Config::from_toml_str(&text, &s).unwrap();
        assert_eq!(c.tenants[0].client_secret.expose(), "from-file");
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The shipped example must stay valid and show the documented defaults.
    #[test]
    fn example_config_parses_with_its_defaults() {
        let text = include_str!("../config/citrix-harvester.toml");
        let s = SecretSources {
            env: Box::new(|k| match k {
                "INFLUX_TOKEN" | "CONTOSO_CLIENT_SECRET" => Some("x".into()),
                _ => None,
            }),
            credentials_dir: None,
        };
        let c = Config::from_toml_str(text, &s).unwrap();
        let d = HarvesterConfig::default();
        assert_eq!(c.harvester.interval, d.interval);
        assert_eq!(c.harvester.jitter, d.jitter);
        assert_eq!(c.harvester.lookback, d.lookback);
        assert_eq!(c.harvester.overlap, d.overlap);
        assert_eq!(c.harvester.max_requests_in_flight, d.max_requests_in_flight);
        assert_eq!(c.harvester.body_budget, d.body_budget);
        let dc = CitrixConfig::default();
        assert_eq!(c.citrix.request_timeout, dc.request_timeout);
        assert_eq!(c.citrix.max_retries, dc.max_retries);
        assert_eq!(c.citrix.max_pages, dc.max_pages);
        let ds = SinkConfig::new(SinkKind::Stdout);
        assert_eq!(c.output.batch_size, ds.batch_size);
        assert_eq!(c.output.batch_bytes, ds.batch_bytes);
        assert_eq!(c.output.timeout, ds.timeout);
        assert_eq!(c.output.retry_max_elapsed, ds.retry_max_elapsed);
        assert_eq!(c.output.gzip, ds.gzip);
        assert_eq!(c.output.buffer_limit, ds.buffer_limit);
        assert_eq!(c.output.deadletter_limit, ds.deadletter_limit);
        assert_eq!(c.output.concurrency, ds.concurrency);
        assert_eq!(c.output.queue_bytes, ds.queue_bytes);
        assert_eq!(
            c.output.state_dir.as_deref(),
            Some(c.harvester.state_dir.as_path())
        );
        assert_eq!(c.tenants[0].entities, KNOWN_ENTITIES);
        assert_eq!(c.harvester.schedule, default_schedule());
        assert_eq!(c.harvester.shutdown_grace, d.shutdown_grace);
        assert_eq!(c.harvester.listen, d.listen);
        assert_eq!(c.harvester.unhealthy_after, d.unhealthy_after);
        assert_eq!(c.harvester.shard, d.shard);
    }
}
