//! The web console every coordinator serves at `/ui` on its HTTP port:
//! jobs, a job's DAG, events, tasks and why they wait, each attempt's log,
//! schedules, workers and the cluster's health, updated live by polling.
//!
//! # Layout
//!
//! - `api`: the JSON API under `/api/v1/` the page reads and posts to.
//! - `json`: the wire types turned into the page's JSON.
//! - `graph`: the layered drawing of a job's DAG.
//! - `assets/`: the page itself (HTML, CSS and plain JavaScript, no build
//!   step), compiled into the binary so nothing is fetched at run time.

mod api;
mod graph;
mod json;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use drover_coordinator::raft::node::NodeHandle;

use drover_net::Coordinators;

/// What the console's handlers share.
#[derive(Debug, Clone)]
pub struct Console {
    /// The cluster as the CLI reaches it: this node first, then wherever
    /// its leader hint points.
    cluster: Coordinators,
    /// This node's own gRPC address, for the cluster page's local view.
    own_address: String,
    /// This node, for the banner (its own view, without a round trip).
    node: NodeHandle,
}

impl Console {
    /// A console for `node`, whose gRPC services listen on `grpc_address`
    /// and are dialled with `dialer` (the node's own TLS in a secure
    /// cluster).
    pub fn new(node: NodeHandle, grpc_address: String, dialer: drover_net::Dialer) -> Self {
        Self {
            cluster: Coordinators::parse(&grpc_address).with_dialer(dialer),
            own_address: grpc_address,
            node,
        }
    }
}

/// The console acting for the person at the browser: the gRPC calls it
/// makes carry the token the page sent (`authorization: Bearer ...`), so
/// the cluster checks that person's role and namespaces, never the serving
/// node's. Without one, a cluster that requires credentials answers 401
/// and the page asks for a token.
#[derive(Debug)]
pub struct AsCaller(pub Console);

impl axum::extract::FromRequestParts<Console> for AsCaller {
    type Rejection = api::ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        console: &Console,
    ) -> Result<Self, Self::Rejection> {
        let mut console = console.clone();
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .and_then(|t| drover_net::Bearer::token(t).ok())
                .ok_or_else(|| {
                    api::ApiError::unauthorized("the authorization header is not `Bearer TOKEN`")
                })?;
            console.cluster = console.cluster.with_bearer(token);
        }
        Ok(AsCaller(console))
    }
}

/// The page and its API, to merge into the HTTP server's routes.
pub fn routes(console: Console) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/{file}", get(asset))
        .route("/api/v1/node", get(api::node))
        .route("/api/v1/jobs", get(api::jobs))
        .route("/api/v1/jobs/{id}", get(api::job))
        .route("/api/v1/jobs/{id}/events", get(api::events))
        .route("/api/v1/jobs/{id}/tasks", get(api::tasks))
        .route("/api/v1/jobs/{id}/cancel", post(api::cancel))
        .route("/api/v1/jobs/{id}/retry", post(api::retry))
        .route("/api/v1/task", get(api::task))
        .route("/api/v1/task/output", get(api::task_output))
        .route("/api/v1/task/log", get(api::task_log))
        .route("/api/v1/workers", get(api::workers))
        .route("/api/v1/workers/{id}/drain", post(api::drain))
        .route("/api/v1/cluster", get(api::cluster))
        .with_state(console)
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const CONSOLE_JS: &str = include_str!("assets/console.js");
const CONSOLE_CSS: &str = include_str!("assets/console.css");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

async fn index() -> impl IntoResponse {
    asset_response("text/html; charset=utf-8", INDEX_HTML)
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> axum::response::Response {
    match file.as_str() {
        "console.js" => {
            asset_response("text/javascript; charset=utf-8", CONSOLE_JS).into_response()
        }
        "console.css" => asset_response("text/css; charset=utf-8", CONSOLE_CSS).into_response(),
        "favicon.svg" => asset_response("image/svg+xml", FAVICON_SVG).into_response(),
        _ => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}

/// An embedded file. `no-cache` makes the browser revalidate, so a rolling
/// upgrade never leaves an old script talking to a new API.
fn asset_response(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Only this server's own script and styles run: text from the
            // cluster can never become markup or code.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
            ),
        ],
        body,
    )
}
