//! The optional HTTP listener (`harvester.listen`): `/healthz` (the process runs), `/readyz`
//! (config loaded and the sink can take points: reachable, or spooling with room left; tenants
//! reported unhealthy are listed in the answer without failing it) and
//! `/metrics` (Prometheus text from [`Metrics`]). It only serves what others record; it never
//! changes the harvester's state. Off unless configured; it has no authentication, so keep it
//! on loopback or a firewalled interface.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::sink::Sink;

#[derive(Clone)]
struct Ctx {
    metrics: Arc<Metrics>,
    sink: Sink,
    /// The spool's size bound (`output.buffer_limit`); at or above it the sink is not ready.
    buffer_limit: u64,
}

/// Binds `addr` (so a bad address fails at start) and serves until `stop` fires.
pub async fn start(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    sink: Sink,
    buffer_limit: u64,
    stop: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(listen = %listener.local_addr()?, "Health and metrics listener started.");
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Ctx {
            metrics,
            sink,
            buffer_limit,
        });
    Ok(tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "The health and metrics listener failed.");
        }
    }))
}

async fn readyz(State(c): State<Ctx>) -> impl IntoResponse {
    let s = c.sink.stats();
    if s.spool_unwritable {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the spool cannot be written (is the disk of state_dir full?) and the sink is away\n"
                .to_string(),
        )
    } else if s.spool_bytes >= c.buffer_limit {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the spool is full ({} of {} bytes) and the sink is away\n",
                s.spool_bytes, c.buffer_limit
            ),
        )
    } else {
        // One tenant failing is not the process failing: a restart would not help it and would
        // stop the others, so readiness stays 200 and only names the unhealthy tenants.
        let mut body = "ready\n".to_string();
        for u in c.metrics.unhealthy() {
            body.push_str(&format!(
                "unhealthy tenant {}: {} failed runs in a row; last error: {}\n",
                u.tenant, u.consecutive_failures, u.last_error
            ));
        }
        (StatusCode::OK, body)
    }
}

async fn metrics_text(State(c): State<Ctx>) -> impl IntoResponse {
    let text = c.metrics.render(&c.sink.stats());
    // Dropped once sent, seconds before the trimmer looks: its pages may go back to the OS.
    crate::memory::buffer_freed();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
