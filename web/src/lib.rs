//! A coordinator's HTTP face, served beside its gRPC port (`--http`).
//!
//! - [`serve`]: the routes: `/healthz`, `/readyz`, `/metrics`
//!   (OpenMetrics), `/v1/scaling` and the console.
//! - [`probes`]: the probes, the scrape and the scaling signal.
//! - [`emf`]: the scaling signal as CloudWatch EMF lines on stdout.
//! - [`console`]: the web console at `/ui`, a gRPC client of its own node.
//! - [`task_logs`]: the store workers write each attempt's log to, as the
//!   coordinator reads it for the console and `drover job logs`.

pub mod console;
pub mod emf;
pub mod probes;
pub mod task_logs;

use axum::routing::get;
use drover_coordinator::metrics::Metrics;
use drover_coordinator::raft::node::NodeHandle;

pub use console::Console;
pub use probes::openmetrics;

/// Serves the probes, the scrape, the scaling signal and the web console
/// (`/ui`, with its API under `/api/v1/`) for `node` on `listener`, until
/// the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: NodeHandle,
    metrics: Metrics,
    console: Console,
) -> std::io::Result<()> {
    let routes = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(probes::metrics_text))
        .route("/v1/scaling", get(probes::scaling))
        .with_state(probes::Node { node, metrics })
        .merge(console::routes(console));
    axum::serve(listener, routes).await
}
