//! What operators and autoscalers poll: readiness, the Prometheus scrape
//! and the scaling signal.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use drover_coordinator::metrics::{self, Metrics};
use drover_coordinator::raft::node::NodeHandle;
use drover_coordinator::state::scaling::parse_pool;

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct Node {
    /// For readiness and the state metrics.
    pub node: NodeHandle,
    /// The coordinator's registry.
    pub metrics: Metrics,
}

/// `GET /v1/scaling[?pool=NAME]`: desired workers per pool, with the
/// counts behind them and the reasons in words.
pub async fn scaling(
    State(http): State<Node>,
    Query(query): Query<ScalingQuery>,
) -> (StatusCode, Json<serde_json::Value>) {
    let wanted = match query.pool.as_deref().map(parse_pool) {
        None => None,
        Some(Some(labels)) => Some(labels),
        Some(None) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({
                    "error": "`pool` is `default` or labels as key=value,key=value"
                })),
            );
        }
    };
    match http
        .metrics
        .scaling()
        .read(&http.node, wanted.clone())
        .await
    {
        Ok(mut report) => {
            if let Some(labels) = &wanted {
                report.pools.retain(|p| &p.labels == labels);
            }
            (
                StatusCode::OK,
                Json(serde_json::to_value(&report).unwrap_or_default()),
            )
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": e.to_string() })),
        ),
    }
}

/// The query of `/v1/scaling`.
#[derive(Debug, serde::Deserialize)]
pub struct ScalingQuery {
    pool: Option<String>,
}

/// The Prometheus scrape: OpenMetrics text.
pub async fn metrics_text(State(http): State<Node>) -> impl IntoResponse {
    let body = http.metrics.render(&http.node).await;
    openmetrics(body)
}

/// A response carrying OpenMetrics text, for the coordinator's and the
/// worker's `/metrics`.
pub fn openmetrics(body: String) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body)
}

/// Ready when a leader is known and this node has applied what it knows to
/// be committed (within a small margin), so it serves current reads.
pub async fn readyz(
    State(Node { node, .. }): State<Node>,
) -> (StatusCode, Json<serde_json::Value>) {
    let s = node.status();
    let caught_up = s.commit_index.saturating_sub(s.applied_index) <= 100;
    let ready = s.leader_id != 0 && caught_up && s.failure.is_none();
    let body = serde_json::json!({
        "ready": ready,
        "node": s.id,
        "leader": s.leader_id,
        "term": s.term,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "reason": match &s.failure {
            Some(failure) => failure.as_str(),
            None if s.leader_id == 0 => "no leader known",
            None if !caught_up => "applying the log",
            None => "ok",
        },
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
