//! The console's JSON API under `/api/v1/`: each handler makes one or a few
//! gRPC calls through the same client as the CLI, starting at this node and
//! following the leader hint, so a page served by a follower shows the
//! leader's current state. Changes (cancel, retry, drain) are POSTs with a
//! JSON body: a browser sends JSON across origins only after a CORS
//! preflight this server never grants, so another site cannot forge them.

use drover_net::AuthChannel;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use drover_proto::v1::admin_service_client::AdminServiceClient;
use drover_proto::v1::job_service_client::JobServiceClient;
use drover_proto::v1::{
    CancelJobRequest, ClusterStatusRequest, DrainWorkerRequest, ExplainTaskRequest, GetJobRequest,
    GetTaskLogRequest, GetTaskOutputRequest, JobEventsRequest, JobListKind, ListJobsRequest,
    ListTasksRequest, ListWorkersRequest, RetryJobRequest, TaskState,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tonic::Code;

use super::json;
use super::{AsCaller, Console};
use drover_net::{CallError, Coordinators};

/// How long a page request waits for a cluster that cannot answer (an
/// election) before the page shows the error and polls again.
const PATIENCE: Duration = Duration::from_secs(4);
/// How long the cluster page waits for one member's own status.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest reason accepted with a cancel, retry or drain.
const REASON_BYTES_MAX: usize = 1024;

/// An error as the page shows it: an HTTP status and one sentence.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        let status = match e.answer_code() {
            Some(Code::NotFound) => StatusCode::NOT_FOUND,
            Some(Code::InvalidArgument | Code::OutOfRange) => StatusCode::BAD_REQUEST,
            Some(Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted) => {
                StatusCode::CONFLICT
            }
            Some(Code::PermissionDenied) => StatusCode::FORBIDDEN,
            Some(Code::Unauthenticated) => StatusCode::UNAUTHORIZED,
            Some(Code::ResourceExhausted) => StatusCode::TOO_MANY_REQUESTS,
            // No answer at all: no leader, or this node cannot reach one.
            None | Some(Code::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
            Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl ApiError {
    /// A 401: the page then asks for a token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError(StatusCode::UNAUTHORIZED, message.into())
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// `running` → the wire enum value, for filters.
fn job_state_named(name: &str) -> Result<i32, ApiError> {
    drover_proto::names::parse_job_state(name)
        .map(|s| s as i32)
        .map_err(bad_request)
}

fn task_state_named(name: &str) -> Result<i32, ApiError> {
    TaskState::from_str_name(&format!("TASK_STATE_{}", name.to_ascii_uppercase()))
        .map(|s| s as i32)
        .ok_or_else(|| bad_request(format!("`{name}` is not a task state")))
}

/// Comma-separated names → wire enum values.
fn states(
    list: Option<&str>,
    named: fn(&str) -> Result<i32, ApiError>,
) -> Result<Vec<i32>, ApiError> {
    list.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(named)
        .collect()
}

fn jobs_client(ch: AuthChannel) -> JobServiceClient<AuthChannel> {
    JobServiceClient::new(ch)
}

fn admin_client(ch: AuthChannel) -> AdminServiceClient<AuthChannel> {
    AdminServiceClient::new(ch)
}

/// This node as it sees itself, without a round trip: the page's banner
/// says which node served it and whether it leads.
pub async fn node(State(c): State<Console>) -> Json<Value> {
    let s = c.node.status();
    Json(json!({
        "id": s.id,
        "leader_id": s.leader_id,
        "is_leader": s.is_leader,
        "term": s.term,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

#[derive(Debug, Deserialize)]
pub struct JobsQuery {
    namespace: Option<String>,
    /// Comma-separated job states.
    state: Option<String>,
    /// Name prefix.
    name: Option<String>,
    /// `schedules`, `jobs`, or empty for both.
    kind: Option<String>,
    /// Runs of this scheduled job.
    parent: Option<String>,
    /// Comma-separated `key=value` labels, all of which must match.
    label: Option<String>,
    page_token: Option<String>,
    page_size: Option<u32>,
}

/// `key=value,key=value`.
fn labels(text: Option<&str>) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    let mut out = std::collections::BTreeMap::new();
    for pair in text
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
    {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(bad_request(format!(
                "`{pair}` is not a label; write key=value"
            )));
        };
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

pub async fn jobs(AsCaller(c): AsCaller, Query(q): Query<JobsQuery>) -> ApiResult {
    let kind = match q.kind.as_deref().unwrap_or_default() {
        "" => JobListKind::Unspecified,
        "schedules" => JobListKind::Schedules,
        "jobs" => JobListKind::Jobs,
        other => {
            return Err(bad_request(format!(
                "`{other}` is not `schedules` or `jobs`"
            )));
        }
    };
    let request = ListJobsRequest {
        namespace: q.namespace.unwrap_or_default(),
        states: states(q.state.as_deref(), job_state_named)?,
        name_prefix: q.name.unwrap_or_default(),
        parent_job_id: q.parent.unwrap_or_default(),
        page_size: q.page_size.unwrap_or(0),
        page_token: q.page_token.unwrap_or_default(),
        kind: kind as i32,
        labels: labels(q.label.as_deref())?,
    };
    let page = c
        .cluster
        .call_within(PATIENCE, |ch| {
            let request = request.clone();
            async move { Ok(jobs_client(ch).list_jobs(request).await?.into_inner()) }
        })
        .await?;
    Ok(Json(json!({
        "jobs": page.jobs.iter().map(json::job).collect::<Vec<_>>(),
        "next_page_token": page.next_page_token,
    })))
}

pub async fn job(AsCaller(c): AsCaller, Path(id): Path<String>) -> ApiResult {
    let response = c
        .cluster
        .call_within(PATIENCE, |ch| {
            let request = GetJobRequest {
                job_id: id.clone(),
                include_spec: false,
            };
            async move { Ok(jobs_client(ch).get_job(request).await?.into_inner()) }
        })
        .await?;
    let job = response.job.unwrap_or_default();
    Ok(Json(json::job(&job)))
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    after_seq: Option<u64>,
    task_id: Option<String>,
    limit: Option<u32>,
}

pub async fn events(
    AsCaller(c): AsCaller,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> ApiResult {
    let request = JobEventsRequest {
        job_id: id,
        after_seq: q.after_seq.unwrap_or(0),
        limit: q.limit.unwrap_or(0),
        task_id: q.task_id.unwrap_or_default(),
        kinds: Vec::new(),
    };
    let page = c
        .cluster
        .call_within(PATIENCE, |ch| {
            let request = request.clone();
            async move { Ok(jobs_client(ch).job_events(request).await?.into_inner()) }
        })
        .await?;
    Ok(Json(json!({
        "events": page.events.iter().map(json::event).collect::<Vec<_>>(),
        "next_after_seq": page.next_after_seq,
        "more": page.more,
        "oldest_seq": page.oldest_seq,
    })))
}

#[derive(Debug, Deserialize)]
pub struct TasksQuery {
    template: Option<String>,
    /// Comma-separated task states.
    state: Option<String>,
    page_token: Option<String>,
    page_size: Option<u32>,
}

pub async fn tasks(
    AsCaller(c): AsCaller,
    Path(id): Path<String>,
    Query(q): Query<TasksQuery>,
) -> ApiResult {
    let request = ListTasksRequest {
        job_id: id,
        template: q.template.unwrap_or_default(),
        states: states(q.state.as_deref(), task_state_named)?,
        page_size: q.page_size.unwrap_or(0),
        page_token: q.page_token.unwrap_or_default(),
    };
    let page = c
        .cluster
        .call_within(PATIENCE, |ch| {
            let request = request.clone();
            async move { Ok(jobs_client(ch).list_tasks(request).await?.into_inner()) }
        })
        .await?;
    Ok(Json(json!({
        "tasks": page.tasks.iter().map(json::task).collect::<Vec<_>>(),
        "next_page_token": page.next_page_token,
    })))
}

#[derive(Debug, Deserialize)]
pub struct TaskQuery {
    /// The task id (`<job>/<template>/<partition>`), which has slashes and
    /// so is a query parameter rather than a path segment.
    id: String,
}

/// The task with the answer to "why is it not running".
pub async fn task(AsCaller(c): AsCaller, Query(q): Query<TaskQuery>) -> ApiResult {
    let answer = c
        .cluster
        .call_within(PATIENCE, |ch| {
            let request = ExplainTaskRequest {
                task_id: q.id.clone(),
            };
            async move { Ok(jobs_client(ch).explain_task(request).await?.into_inner()) }
        })
        .await?;
    Ok(Json(json::explain(&answer)))
}

/// The accepted output's manifest.
pub async fn task_output(AsCaller(c): AsCaller, Query(q): Query<TaskQuery>) -> ApiResult {
    let output = c
        .cluster
        .call_within(PATIENCE, |ch| {
            let request = GetTaskOutputRequest {
                task_id: q.id.clone(),
            };
            async move { Ok(jobs_client(ch).get_task_output(request).await?.into_inner()) }
        })
        .await?;
    Ok(Json(json::output(&output)))
}

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    /// The task id.
    id: String,
    /// The attempt's fencing token; the latest attempt when absent.
    token: Option<u64>,
}

/// The log of one attempt, as its worker stored it.
pub async fn task_log(AsCaller(c): AsCaller, Query(q): Query<LogQuery>) -> ApiResult {
    let answer = c
        .cluster
        .call_within(PATIENCE, |ch| {
            let request = GetTaskLogRequest {
                task_id: q.id.clone(),
                fencing_token: q.token.unwrap_or(0),
                max_bytes: 0,
            };
            async move { Ok(jobs_client(ch).get_task_log(request).await?.into_inner()) }
        })
        .await?;
    Ok(Json(json::task_log(&answer)))
}

/// The body of a change: why it was asked for.
#[derive(Debug, Default, Deserialize)]
pub struct Change {
    reason: Option<String>,
}

fn reason(change: Change, default: &str) -> Result<String, ApiError> {
    let reason = change
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| default.to_owned());
    if reason.len() > REASON_BYTES_MAX {
        return Err(bad_request(format!(
            "the reason is longer than {REASON_BYTES_MAX} bytes"
        )));
    }
    Ok(reason)
}

pub async fn cancel(
    AsCaller(c): AsCaller,
    Path(id): Path<String>,
    Json(change): Json<Change>,
) -> ApiResult {
    let request = CancelJobRequest {
        job_id: id,
        reason: reason(change, "cancelled from the web console")?,
    };
    let answer = c
        .cluster
        .call_within(PATIENCE, |ch| {
            let request = request.clone();
            async move { Ok(jobs_client(ch).cancel_job(request).await?.into_inner()) }
        })
        .await?;
    Ok(Json(json!({
        "state": drover_proto::names::job_state(answer.state),
        "changed": answer.changed,
    })))
}

pub async fn retry(
    AsCaller(c): AsCaller,
    Path(id): Path<String>,
    Json(change): Json<Change>,
) -> ApiResult {
    let request = RetryJobRequest {
        job_id: id,
        templates: Vec::new(),
        reason: reason(change, "retried from the web console")?,
    };
    let answer = c
        .cluster
        .call_within(PATIENCE, |ch| {
            let request = request.clone();
            async move { Ok(jobs_client(ch).retry_job(request).await?.into_inner()) }
        })
        .await?;
    Ok(Json(json!({
        "state": drover_proto::names::job_state(answer.state),
        "requeued": answer.requeued_task_count,
    })))
}

pub async fn workers(AsCaller(c): AsCaller) -> ApiResult {
    let page = c
        .cluster
        .call_within(PATIENCE, |ch| async move {
            Ok(admin_client(ch)
                .list_workers(ListWorkersRequest::default())
                .await?
                .into_inner())
        })
        .await?;
    Ok(Json(json!({
        "workers": page.workers.iter().map(json::worker).collect::<Vec<_>>(),
    })))
}

pub async fn drain(
    AsCaller(c): AsCaller,
    Path(id): Path<String>,
    Json(change): Json<Change>,
) -> ApiResult {
    let request = DrainWorkerRequest {
        worker_id: id,
        reason: reason(change, "drained from the web console")?,
    };
    let answer = c
        .cluster
        .call_within(PATIENCE, |ch| {
            let request = request.clone();
            async move { Ok(admin_client(ch).drain_worker(request).await?.into_inner()) }
        })
        .await?;
    Ok(Json(
        json!({ "worker": answer.worker.as_ref().map(json::worker) }),
    ))
}

/// Every member's own status, asked of each member directly (a member that
/// does not answer is listed with the error), plus the leader's view of
/// replication.
pub async fn cluster(AsCaller(c): AsCaller) -> ApiResult {
    let here = ask_status(&c.cluster, &c.own_address).await?;
    let mut asks = tokio::task::JoinSet::new();
    for m in &here.members {
        let (id, address) = (m.node_id, m.address.clone());
        let cluster = c.cluster.clone();
        asks.spawn(async move { (id, address.clone(), ask_status(&cluster, &address).await) });
    }
    let mut nodes = Vec::new();
    let mut leader_view = None;
    while let Some(done) = asks.join_next().await {
        let Ok((id, address, answer)) = done else {
            continue;
        };
        nodes.push(match answer {
            Ok(status) => {
                if status.leader_id == status.node_id {
                    leader_view = Some(json::node_status(&status));
                }
                json!({ "id": id, "address": address, "status": json::node_status(&status) })
            }
            Err(ApiError(_, e)) => json!({ "id": id, "address": address, "error": e }),
        });
    }
    nodes.sort_by_key(|n| n["id"].as_u64());
    Ok(Json(json!({
        "answered_by": json::node_status(&here),
        "leader": leader_view,
        "nodes": nodes,
    })))
}

/// One coordinator's own ClusterStatus, not forwarded.
async fn ask_status(
    cluster: &Coordinators,
    address: &str,
) -> Result<drover_proto::v1::ClusterStatusResponse, ApiError> {
    let one = cluster.at(address);
    tokio::time::timeout(
        MEMBER_TIMEOUT * 2,
        one.call_within(MEMBER_TIMEOUT, |ch| async move {
            Ok(admin_client(ch)
                .cluster_status(ClusterStatusRequest::default())
                .await?
                .into_inner())
        }),
    )
    .await
    .map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{address} did not answer within {MEMBER_TIMEOUT:?}"),
        )
    })?
    .map_err(ApiError::from)
}
