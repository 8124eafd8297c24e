//! Authentication and roles over real gRPC on loopback: a single-node
//! coordinator started with credentials required, called through every rpc
//! of the job, worker and admin services (read from the protocol's own
//! descriptors, so a new rpc is covered without touching this file) with no
//! token, bad tokens, and each role's token.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use drover_coordinator::server::{self, ServerConfig, Started};
use drover_proto::FILE_DESCRIPTOR_SET;
use drover_proto::v1::admin_service_client::AdminServiceClient;
use drover_proto::v1::job_service_client::JobServiceClient;
use drover_proto::v1::{
    BootstrapTokenRequest, CancelJobRequest, CreateTokenRequest, ExplainTaskRequest, GetJobRequest,
    GetTaskLogRequest, GetTaskOutputRequest, JobEventsRequest, ListJobsRequest,
    ListNamespacePoliciesRequest, ListTasksRequest, ListTokensRequest, RetryJobRequest,
    RevokeTokenRequest, SetNamespacePolicyRequest, SubmitJobRequest, TokenRole, WatchJobRequest,
    WhoAmIRequest,
};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const WAIT: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {WAIT:?}"))
}

/// A coordinator that requires credentials, with an operator token made
/// by bootstrap, a submitter token for `team-a` and a worker token.
struct Cluster {
    channel: Channel,
    started: Option<Started>,
    stop: Option<oneshot::Sender<()>>,
    serving: tokio::task::JoinHandle<()>,
    operator: String,
    submitter: String,
    worker: String,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (started, stop, serving, address) = serve(dir.path()).await;
        let channel = connect(address).await;
        let operator = AdminServiceClient::new(channel.clone())
            .bootstrap_token(BootstrapTokenRequest {
                name: "first".into(),
            })
            .await
            .expect("bootstrap on a cluster without tokens")
            .into_inner()
            .secret;
        let mut cluster = Self {
            channel,
            started: Some(started),
            stop: Some(stop),
            serving,
            submitter: String::new(),
            worker: String::new(),
            operator,
            dir,
        };
        cluster.submitter = cluster
            .create(TokenRole::Submitter, &["team-a"], 0)
            .await
            .unwrap();
        cluster.worker = cluster.create(TokenRole::Worker, &[], 0).await.unwrap();
        cluster
    }

    async fn create(
        &self,
        role: TokenRole,
        namespaces: &[&str],
        ttl_ms: i64,
    ) -> Result<String, Status> {
        let created = AdminServiceClient::new(self.channel.clone())
            .create_token(with_token(
                CreateTokenRequest {
                    name: format!(
                        "{}-test",
                        role.as_str_name().to_lowercase().replace('_', "-")
                    ),
                    role: role as i32,
                    namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
                    ttl_ms,
                },
                Some(&self.operator),
            ))
            .await?;
        Ok(created.into_inner().secret)
    }

    fn jobs(&self) -> JobServiceClient<Channel> {
        JobServiceClient::new(self.channel.clone())
    }

    async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.serving.await;
        if let Some(started) = self.started.take() {
            started.stop().await;
        }
        self.dir
    }
}

async fn serve(
    dir: &std::path::Path,
) -> (
    Started,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
    std::net::SocketAddr,
) {
    serve_with(dir, |_| {}).await
}

async fn serve_with(
    dir: &std::path::Path,
    adjust: impl FnOnce(&mut ServerConfig),
) -> (
    Started,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
    std::net::SocketAddr,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut config = ServerConfig::new(1, dir);
    config.tick_ms = 20;
    config.peers.insert(1, address.to_string());
    config.auth_required = true;
    adjust(&mut config);
    let (stop, stopped) = oneshot::channel::<()>();
    let (started, serve) = server::start(config, listener, async {
        let _ = stopped.await;
    })
    .unwrap();
    let serving = tokio::spawn(async move {
        let _ = serve.await;
    });
    bounded("the election", async {
        while !started.node.status().is_leader {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    (started, stop, serving, address)
}

/// A plaintext channel to a coordinator started here.
async fn connect(address: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// `message` carrying `Bearer token`, when there is one.
pub(crate) fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
        );
    }
    request
}

/// Every rpc of the job, worker and admin services: (path, server
/// streaming).
fn every_rpc() -> Vec<(String, bool)> {
    let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
    let mut rpcs = Vec::new();
    for file in &set.file {
        for service in &file.service {
            let name = service.name();
            if !matches!(name, "JobService" | "WorkerService" | "AdminService") {
                continue;
            }
            for method in &service.method {
                rpcs.push((
                    format!("/{}.{name}/{}", file.package(), method.name()),
                    method.server_streaming(),
                ));
            }
        }
    }
    assert!(rpcs.len() > 25, "only {} rpcs found", rpcs.len());
    rpcs
}

/// Calls `path` with an empty request (every request message's default),
/// returning the status it answered with, `Ok` meaning it started.
async fn call(channel: &Channel, path: &str, streaming: bool, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    // A message without fields: any request encodes as it (the default of
    // every request type), and any response decodes into it.
    type Empty = WhoAmIRequest;
    let codec = tonic_prost::ProstCodec::<Empty, Empty>::default();
    let path = PathAndQuery::try_from(path).unwrap();
    let request = with_token(Empty {}, token);
    let result = if streaming {
        grpc.server_streaming(request, path, codec)
            .await
            .map(|_| ())
    } else {
        grpc.unary(request, path, codec).await.map(|_| ())
    };
    match result {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    }
}

fn refused(code: Code) -> bool {
    matches!(code, Code::Unauthenticated | Code::PermissionDenied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_but_bootstrap_refuses_missing_malformed_and_unknown_tokens() {
    let cluster = Cluster::start().await;
    // Well formed, but never created.
    let unknown = format!("drv_{}_{}", "0".repeat(12), "0".repeat(64));
    for (path, streaming) in every_rpc() {
        if path.ends_with("/BootstrapToken") {
            continue;
        }
        for token in [None, Some("nonsense"), Some(unknown.as_str())] {
            let code = call(&cluster.channel, &path, streaming, token).await;
            assert_eq!(code, Code::Unauthenticated, "{path} with {token:?}");
        }
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_reaches_exactly_its_services() {
    let cluster = Cluster::start().await;
    for (path, streaming) in every_rpc() {
        let service = path.split('/').nth(1).unwrap().to_owned();
        let open_to_all = path.ends_with("/WhoAmI") || path.ends_with("/BootstrapToken");
        let expected = [
            ("operator", cluster.operator.as_str(), true),
            (
                "submitter",
                cluster.submitter.as_str(),
                open_to_all || service == "drover.v1.JobService",
            ),
            (
                "worker",
                cluster.worker.as_str(),
                open_to_all || service == "drover.v1.WorkerService",
            ),
        ];
        for (role, token, allowed) in expected {
            let code = call(&cluster.channel, &path, streaming, Some(token)).await;
            if allowed {
                assert!(!refused(code), "{role} refused {path}: {code:?}");
            } else {
                assert_eq!(code, Code::PermissionDenied, "{role} calling {path}");
            }
        }
    }
    cluster.stop().await;
}

fn spec(namespace: &str) -> String {
    format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: n, namespace: {namespace}}}\nspec:\n  tasks:\n    - {{name: t, kind: noop, partitions: {{shards: 2}}}}\n"
    )
}

async fn submit(cluster: &Cluster, namespace: &str, token: &str) -> Result<String, Status> {
    let name = format!("{namespace}.yaml");
    submit_yaml(&cluster.channel, token, &name, spec(namespace)).await
}

/// Submits `yaml` as `token`; the job's id.
async fn submit_yaml(
    channel: &Channel,
    token: &str,
    name: &str,
    yaml: String,
) -> Result<String, Status> {
    let submitted = JobServiceClient::new(channel.clone())
        .submit_job(with_token(
            SubmitJobRequest {
                source_name: name.to_owned(),
                spec_yaml: yaml,
                ..SubmitJobRequest::default()
            },
            Some(token),
        ))
        .await?;
    Ok(submitted.into_inner().job_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitter_sees_and_touches_only_its_namespaces() {
    let cluster = Cluster::start().await;
    let ours = submit(&cluster, "team-a", &cluster.submitter)
        .await
        .unwrap();
    let denied = submit(&cluster, "team-b", &cluster.submitter)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("team-b") && denied.message().contains("team-a"),
        "{}",
        denied.message()
    );
    let theirs = submit(&cluster, "team-b", &cluster.operator).await.unwrap();

    // Listing shows only its namespaces; asking for another is refused.
    let list = |token: String, namespace: &str| {
        let mut jobs = cluster.jobs();
        let namespace = namespace.to_owned();
        async move {
            jobs.list_jobs(with_token(
                ListJobsRequest {
                    namespace,
                    ..ListJobsRequest::default()
                },
                Some(&token),
            ))
            .await
            .map(|r| {
                r.into_inner()
                    .jobs
                    .into_iter()
                    .map(|j| j.job_id)
                    .collect::<BTreeSet<_>>()
            })
        }
    };
    assert_eq!(
        list(cluster.submitter.clone(), "").await.unwrap(),
        [ours.clone()].into()
    );
    assert_eq!(
        list(cluster.operator.clone(), "").await.unwrap(),
        [ours.clone(), theirs.clone()].into()
    );
    assert_eq!(
        list(cluster.submitter.clone(), "team-b")
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    // Every rpc naming a job or task of another namespace is refused; the
    // same rpc on its own job is not.
    for (job, own) in [(&theirs, false), (&ours, true)] {
        let task = format!("{job}/0/0");
        let token = Some(cluster.submitter.as_str());
        let mut jobs = cluster.jobs();
        let codes = [
            (
                "GetJob",
                jobs.get_job(with_token(
                    GetJobRequest {
                        job_id: job.clone(),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .err(),
            ),
            (
                "JobEvents",
                jobs.job_events(with_token(
                    JobEventsRequest {
                        job_id: job.clone(),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .err(),
            ),
            (
                "ListTasks",
                jobs.list_tasks(with_token(
                    ListTasksRequest {
                        job_id: job.clone(),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .err(),
            ),
            (
                "WatchJob",
                jobs.watch_job(with_token(
                    WatchJobRequest {
                        job_id: job.clone(),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .err(),
            ),
            (
                "ExplainTask",
                jobs.explain_task(with_token(
                    ExplainTaskRequest {
                        task_id: task.clone(),
                    },
                    token,
                ))
                .await
                .err(),
            ),
            (
                "GetTaskOutput",
                jobs.get_task_output(with_token(
                    GetTaskOutputRequest {
                        task_id: task.clone(),
                    },
                    token,
                ))
                .await
                .err(),
            ),
            (
                "GetTaskLog",
                jobs.get_task_log(with_token(
                    GetTaskLogRequest {
                        task_id: task.clone(),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .err(),
            ),
            (
                "RetryJob",
                jobs.retry_job(with_token(
                    RetryJobRequest {
                        job_id: job.clone(),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .err(),
            ),
            (
                "CancelJob",
                jobs.cancel_job(with_token(
                    CancelJobRequest {
                        job_id: job.clone(),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .err(),
            ),
        ];
        for (rpc, error) in codes {
            let code = error.map_or(Code::Ok, |s| s.code());
            if own {
                assert_ne!(code, Code::PermissionDenied, "{rpc} on its own job");
            } else {
                assert_eq!(code, Code::PermissionDenied, "{rpc} on {job}");
            }
        }
    }
    // The refused cancel changed nothing.
    let state = cluster
        .jobs()
        .get_job(with_token(
            GetJobRequest {
                job_id: theirs.clone(),
                ..Default::default()
            },
            Some(&cluster.operator),
        ))
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap()
        .state;
    assert_eq!(state, drover_proto::v1::JobState::Pending as i32);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_tokens_stop_working_and_bootstrap_works_once() {
    let cluster = Cluster::start().await;
    let mut admin = AdminServiceClient::new(cluster.channel.clone());
    let again = admin
        .bootstrap_token(BootstrapTokenRequest::default())
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    let reader = admin.clone();
    let whoami = |token: String| {
        let mut admin = reader.clone();
        async move {
            admin
                .who_am_i(with_token(WhoAmIRequest {}, Some(&token)))
                .await
        }
    };
    let me = whoami(cluster.submitter.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.role, "submitter");
    assert_eq!(me.namespaces, ["team-a"]);
    assert!(me.auth_required && !me.all_namespaces);

    // Revoked: refused once the revocation applies (the guard caches a
    // token for a second).
    let id = &cluster.submitter[4..16];
    admin
        .revoke_token(with_token(
            RevokeTokenRequest { id: id.to_owned() },
            Some(&cluster.operator),
        ))
        .await
        .unwrap();
    let refused = bounded("the revocation taking effect", async {
        loop {
            match whoami(cluster.submitter.clone()).await {
                Err(status) => return status,
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().contains("revoked"),
        "{}",
        refused.message()
    );
    let listed = admin
        .list_tokens(with_token(ListTokensRequest {}, Some(&cluster.operator)))
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert!(listed.iter().all(|t| t.id != id));
    assert_eq!(listed.len(), 2);

    // Expired: a token with a 1 ms lifetime.
    let short = cluster.create(TokenRole::Operator, &[], 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let expired = whoami(short).await.unwrap_err();
    assert_eq!(expired.code(), Code::Unauthenticated);
    assert!(
        expired.message().contains("expired"),
        "{}",
        expired.message()
    );

    // A right id with a wrong secret is refused.
    let forged = format!("{}{}", &cluster.operator[..17], "f".repeat(64));
    assert_eq!(
        whoami(forged).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_survive_a_restart_and_the_audit_log_records_who_did_what() {
    let cluster = Cluster::start().await;
    let operator = cluster.operator.clone();
    let denied = submit(&cluster, "team-b", &cluster.submitter)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let dir = cluster.stop().await;

    let (started, stop, serving, address) = serve(dir.path()).await;
    let channel = connect(address).await;
    let me = AdminServiceClient::new(channel)
        .who_am_i(with_token(WhoAmIRequest {}, Some(&operator)))
        .await
        .expect("the operator token works after a restart")
        .into_inner();
    assert_eq!(me.role, "operator");
    let _ = stop.send(());
    let _ = serving.await;
    started.stop().await;

    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let has = |method: &str, outcome: &str, role: &str| {
        records
            .iter()
            .any(|r| r["method"] == method && r["outcome"] == outcome && r["role"] == role)
    };
    assert!(has("AdminService/BootstrapToken", "OK", "none"), "{audit}");
    assert!(has("AdminService/CreateToken", "OK", "operator"), "{audit}");
    assert!(
        has("JobService/SubmitJob", "PermissionDenied", "submitter"),
        "{audit}"
    );
    // No secret ever reaches the audit log.
    assert!(!audit.contains(&operator[17..]), "a secret in {audit}");
}

/// Submits a dedup spec in `team-a` reading `input` and writing `output`.
async fn submit_dedup(
    channel: &Channel,
    token: &str,
    input: &str,
    output: &str,
) -> Result<String, Status> {
    let spec = format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: d, namespace: team-a}}\nspec:\n  tasks:\n    - {{name: d, kind: dedup, config: {{input: \"{input}\", output: \"{output}\", shards: 2}}}}\n"
    );
    submit_yaml(channel, token, "d.yaml", spec).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_policy_confines_its_specs_across_a_restart() {
    let cluster = Cluster::start().await;
    let (operator, submitter) = (cluster.operator.clone(), cluster.submitter.clone());
    let set = |token: &str, urls: &[&str]| {
        let request = with_token(
            SetNamespacePolicyRequest {
                namespace: "team-a".into(),
                allowed_urls: urls.iter().map(|u| u.to_string()).collect(),
                ..Default::default()
            },
            Some(token),
        );
        let mut admin = AdminServiceClient::new(cluster.channel.clone());
        async move { admin.set_namespace_policy(request).await }
    };
    // A submitter may not widen its own namespace.
    let refused = set(&submitter, &["s3://"]).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let stored = set(&operator, &["s3://lake/team-a/"])
        .await
        .expect("an operator sets a policy")
        .into_inner()
        .policy
        .unwrap();
    assert_eq!(stored.allowed_urls, ["s3://lake/team-a"]);
    assert!(stored.updated_by.contains("first"), "{stored:?}");

    submit_dedup(
        &cluster.channel,
        &submitter,
        "s3://lake/team-a/in",
        "s3://lake/team-a/out",
    )
    .await
    .expect("a spec inside the policy is admitted");
    let denied = submit_dedup(
        &cluster.channel,
        &submitter,
        "s3://lake/team-a/in",
        "s3://lake/team-ab/out",
    )
    .await
    .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        denied.message(),
        "task `d` writes `s3://lake/team-ab/out`, outside what namespace `team-a`'s policy allows: s3://lake/team-a"
    );
    // A bad prefix is refused by name and changes nothing.
    let bad = set(&operator, &["s3://lake/../x"]).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("climbs out"), "{}", bad.message());
    let dir = cluster.stop().await;

    let (started, stop, serving, address) = serve(dir.path()).await;
    let channel = connect(address).await;
    let policies = AdminServiceClient::new(channel.clone())
        .list_namespace_policies(with_token(ListNamespacePoliciesRequest {}, Some(&operator)))
        .await
        .unwrap()
        .into_inner()
        .policies;
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].namespace, "team-a");
    assert_eq!(policies[0].allowed_urls, ["s3://lake/team-a"]);
    let denied = submit_dedup(
        &channel,
        &submitter,
        "s3://lake/team-b/in",
        "s3://lake/team-a/out",
    )
    .await
    .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        started.metrics.encode().contains(
            "drover_requests_refused_total{service=\"job\",reason=\"permission_denied\"} 1"
        ),
        "{}",
        started.metrics.encode()
    );
    let _ = stop.send(());
    let _ = serving.await;
    started.stop().await;

    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("AdminService/SetNamespacePolicy")
                && l.contains("\"outcome\":\"OK\"")
                && l.contains("operator")),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_is_slowed_down_without_slowing_others() {
    let dir = tempfile::tempdir().unwrap();
    // One request a second with bursts of two: twenty calls in a row
    // would need twenty seconds to all pass.
    let (started, stop, serving, address) = serve_with(dir.path(), |config| {
        config.client_rate_limit = 1;
    })
    .await;
    let channel = connect(address).await;
    let mut admin = AdminServiceClient::new(channel);
    let operator = admin
        .bootstrap_token(BootstrapTokenRequest::default())
        .await
        .unwrap()
        .into_inner()
        .secret;
    let other = admin
        .create_token(with_token(
            CreateTokenRequest {
                name: "other".into(),
                role: TokenRole::Operator as i32,
                ..Default::default()
            },
            Some(&operator),
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let mut codes = Vec::new();
    for _ in 0..20 {
        let answer = admin
            .who_am_i(with_token(WhoAmIRequest {}, Some(&operator)))
            .await;
        codes.push(answer.map_or_else(
            |s| (s.code(), s.message().to_owned()),
            |_| (Code::Ok, String::new()),
        ));
    }
    let limited: Vec<_> = codes
        .iter()
        .filter(|(c, _)| *c == Code::ResourceExhausted)
        .collect();
    assert!(!limited.is_empty(), "{codes:?}");
    assert!(limited[0].1.contains("retry in"), "{}", limited[0].1);
    assert!(
        codes
            .iter()
            .all(|(c, _)| matches!(c, Code::Ok | Code::ResourceExhausted))
    );
    // Another token has its own bucket, even on the same connection.
    let me = admin
        .who_am_i(with_token(WhoAmIRequest {}, Some(&other)))
        .await
        .expect("another client is not held up")
        .into_inner();
    assert!(me.identity.contains("(other)"), "{}", me.identity);
    // SREs see the refusals.
    let metrics = started.metrics.encode();
    let line = format!(
        "drover_requests_refused_total{{service=\"whoami\",reason=\"rate_limited\"}} {}",
        limited.len()
    );
    assert!(metrics.contains(&line), "no `{line}` in\n{metrics}");
    let _ = stop.send(());
    let _ = serving.await;
    started.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_get_short_errors_and_the_cluster_keeps_serving() {
    let cluster = Cluster::start().await;
    let op = Some(cluster.operator.as_str());
    // A huge id is quoted cut short.
    let huge = "x".repeat(100_000);
    for result in [
        cluster
            .jobs()
            .get_job(with_token(
                GetJobRequest {
                    job_id: huge.clone(),
                    ..Default::default()
                },
                op,
            ))
            .await
            .map(|_| ()),
        cluster
            .jobs()
            .explain_task(with_token(
                ExplainTaskRequest {
                    task_id: huge.clone(),
                },
                op,
            ))
            .await
            .map(|_| ()),
        AdminServiceClient::new(cluster.channel.clone())
            .revoke_token(with_token(RevokeTokenRequest { id: huge.clone() }, op))
            .await
            .map(|_| ()),
    ] {
        let status = result.unwrap_err();
        assert!(
            matches!(status.code(), Code::InvalidArgument | Code::NotFound),
            "{status:?}"
        );
        assert!(status.message().len() < 200, "{}", status.message().len());
    }
    // Removing the last voter is a precondition failure, as admin.proto
    // says, and changes nothing.
    let last = AdminServiceClient::new(cluster.channel.clone())
        .remove_node(with_token(
            drover_proto::v1::RemoveNodeRequest { node_id: 1 },
            op,
        ))
        .await
        .unwrap_err();
    assert_eq!(last.code(), Code::FailedPrecondition, "{last:?}");
    // A request over the 8 MiB limit is refused whole.
    let oversized = cluster
        .jobs()
        .submit_job(with_token(
            SubmitJobRequest {
                source_name: "big.yaml".into(),
                spec_yaml: "#".repeat(9 * 1024 * 1024),
                ..Default::default()
            },
            op,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(oversized.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{oversized:?}"
    );
    // The cluster still serves, and still has one voter.
    let jobs = submit(&cluster, "team-a", &cluster.submitter).await;
    assert!(jobs.is_ok(), "{jobs:?}");
    cluster.stop().await;
}
