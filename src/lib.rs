//! citrix-harvester: polls the Citrix Monitor Service OData v4 API for many tenants and writes
//! tagged InfluxDB line protocol, so that Citrix telemetry outlives Citrix's own grooming.
//!
//! Map of the modules (data moves one way, top to bottom):
//! - [`kinds`]: the names of the entity kinds and schedule keys (plain data).
//! - [`config`]: typed configuration (TOML + environment), validated with errors naming the key.
//! - [`secret`]: the `Secret` type that never prints its value, and redaction of server text.
//! - [`body`]: bounded reading of HTTP bodies (decoded size, yields so timeouts fire).
//! - [`budget`]: the byte budget of page bodies in processing (`harvester.body_budget`).
//! - [`citrix`]: token source (regional → fallback, cached), OData query builder and pager,
//!   the per-tenant Monitor client with retry, serde models and enum names.
//! - [`collect`]: one collector per entity kind: its query, its watermark, record → points.
//! - [`lineproto`]: the only place that encodes points as line protocol (escaping rules).
//! - [`sink`]: writers for InfluxDB v2 API, v1 API, a file and stdout; batching across tenants,
//!   adaptive write concurrency, retry, spool.
//! - [`checkpoint`]: per tenant and entity watermarks, written atomically.
//! - [`reload`]: SIGHUP and file changes → the new configuration, validated, as a plan.
//! - [`scheduler`]: one task per tenant, interval + jitter, shutdown, `--once` summary.
//! - [`backfill`]: `--once --since`: a past range in windows, resumable, with progress.
//! - [`sim`]: the Monitor API simulator used by `simulate`, `demo` and the tests.
//! - [`telemetry`]: logging set-up.
//! - [`metrics`]: self-metrics per tenant, as Prometheus text and `citrix_harvester` points.
//! - [`health`]: the optional `/healthz`, `/readyz`, `/metrics` listener (`harvester.listen`).
//! - [`systemd`]: the notify protocol (READY, WATCHDOG, STOPPING) for `Type=notify`.
//! - [`demo`]: `citrix-harvester demo`, the simulator harvested once into a file.
//! - [`check`]: `citrix-harvester check`, every secret, token, tenant and the sink tried once.
//! - [`statelock`]: one process per `state_dir` (an exclusive lock).
//! - [`shard`]: `--shard K/N`, this instance's share of the tenants by a stable hash.

pub mod backfill;
pub mod body;
pub mod budget;
pub mod check;
pub mod checkpoint;
pub mod citrix;
pub mod collect;
pub mod config;
pub mod demo;
#[cfg(debug_assertions)]
#[doc(hidden)]
pub mod failpoint;
pub mod health;
pub mod kinds;
pub mod lineproto;
pub mod memory;
pub mod metrics;
pub mod reload;
pub mod scheduler;
pub mod secret;
pub mod shard;
pub mod sim;
pub mod sink;
pub mod statelock;
pub mod systemd;
pub mod telemetry;
