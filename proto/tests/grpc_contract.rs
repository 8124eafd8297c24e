//! The error contract over real gRPC: tonic servers and a client on
//! 127.0.0.1 port 0. A follower answers UNAVAILABLE with the leader's address
//! in `drover-leader`, the client follows it, and the leader answers;
//! unknown jobs are NOT_FOUND and invalid specs carry their diagnostics in
//! `drover-diagnostics-bin`.

use std::net::SocketAddr;

use drover_proto::v1::job_service_client::JobServiceClient;
use drover_proto::v1::job_service_server::{JobService, JobServiceServer};
use drover_proto::v1::{
    CancelJobRequest, CancelJobResponse, Diagnostic, DiagnosticList, ExplainTaskRequest,
    ExplainTaskResponse, GetJobRequest, GetJobResponse, GetTaskLogRequest, GetTaskLogResponse,
    GetTaskOutputRequest, GetTaskOutputResponse, Job, JobEventsRequest, JobEventsResponse,
    JobState, ListJobsRequest, ListJobsResponse, ListTasksRequest, ListTasksResponse,
    PlanJobRequest, PlanJobResponse, RetryJobRequest, RetryJobResponse, Severity, SubmitJobRequest,
    SubmitJobResponse, WatchJobRequest, WatchJobResponse,
};
use drover_proto::{DIAGNOSTICS_METADATA_KEY, LEADER_METADATA_KEY};
use prost::Message;
use tonic::codegen::BoxStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

/// The one job the fake leader knows.
const KNOWN_JOB_ID: &str = "j-1";

/// A `JobService` that plays either a follower (redirects everything to the
/// leader) or the leader (knows one job, rejects every spec).
#[derive(Debug)]
struct FakeCoordinator {
    /// `Some(address)` makes this a follower pointing at that leader.
    leader_address: Option<String>,
}

impl FakeCoordinator {
    /// The redirect a follower answers with, per the error contract.
    fn check_leader(&self) -> Result<(), Status> {
        match &self.leader_address {
            None => Ok(()),
            Some(address) => {
                let mut status = Status::unavailable("not the leader");
                let value = address.parse().expect("address is valid ASCII metadata");
                status.metadata_mut().insert(LEADER_METADATA_KEY, value);
                Err(status)
            }
        }
    }
}

#[tonic::async_trait]
impl JobService for FakeCoordinator {
    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        self.check_leader()?;
        let list = DiagnosticList {
            diagnostics: vec![Diagnostic {
                file: request.into_inner().source_name,
                line: 3,
                column: 5,
                severity: Severity::Error as i32,
                message: "Unknown key `depends_on`.".to_owned(),
                hint: "did you mean `dependsOn`?".to_owned(),
                path: "tasks.export.depends_on".to_owned(),
            }],
            truncated: false,
        };
        let mut status = Status::invalid_argument("spec.yaml:3:5: unknown key `depends_on`");
        status.metadata_mut().insert_bin(
            DIAGNOSTICS_METADATA_KEY,
            MetadataValue::from_bytes(&list.encode_to_vec()),
        );
        Err(status)
    }

    async fn get_job(
        &self,
        request: Request<GetJobRequest>,
    ) -> Result<Response<GetJobResponse>, Status> {
        self.check_leader()?;
        let job_id = request.into_inner().job_id;
        if job_id != KNOWN_JOB_ID {
            return Err(Status::not_found(format!("job {job_id} not found")));
        }
        Ok(Response::new(GetJobResponse {
            job: Some(Job {
                job_id,
                state: JobState::Running as i32,
                ..Job::default()
            }),
        }))
    }

    type WatchJobStream = BoxStream<WatchJobResponse>;

    async fn plan_job(
        &self,
        _: Request<PlanJobRequest>,
    ) -> Result<Response<PlanJobResponse>, Status> {
        Err(Status::unimplemented("not needed by this test"))
    }

    async fn list_jobs(
        &self,
        _: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        Err(Status::unimplemented("not needed by this test"))
    }

    async fn watch_job(
        &self,
        _: Request<WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        Err(Status::unimplemented("not needed by this test"))
    }

    async fn cancel_job(
        &self,
        _: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobResponse>, Status> {
        Err(Status::unimplemented("not needed by this test"))
    }

    async fn retry_job(
        &self,
        _: Request<RetryJobRequest>,
    ) -> Result<Response<RetryJobResponse>, Status> {
        Err(Status::unimplemented("not needed by this test"))
    }

    async fn job_events(
        &self,
        _: Request<JobEventsRequest>,
    ) -> Result<Response<JobEventsResponse>, Status> {
        Err(Status::unimplemented("not needed by this test"))
    }

    async fn list_tasks(
        &self,
        _: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        Err(Status::unimplemented("not needed by this test"))
    }

    async fn explain_task(
        &self,
        _: Request<ExplainTaskRequest>,
    ) -> Result<Response<ExplainTaskResponse>, Status> {
        Err(Status::unimplemented("not needed by this test"))
    }

    async fn get_task_output(
        &self,
        _: Request<GetTaskOutputRequest>,
    ) -> Result<Response<GetTaskOutputResponse>, Status> {
        Err(Status::unimplemented("not needed by this test"))
    }

    async fn get_task_log(
        &self,
        _: Request<GetTaskLogRequest>,
    ) -> Result<Response<GetTaskLogResponse>, Status> {
        Err(Status::unimplemented("not needed by this test"))
    }
}

/// Serves `service` on 127.0.0.1 port 0 until the test's runtime ends and
/// returns the bound address.
async fn serve(service: FakeCoordinator) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(JobServiceServer::new(service))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    addr
}

async fn client(addr: &str) -> JobServiceClient<Channel> {
    JobServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

fn leader_hint(metadata: &MetadataMap) -> Option<String> {
    let value = metadata.get(LEADER_METADATA_KEY)?;
    Some(value.to_str().expect("ASCII leader address").to_owned())
}

#[tokio::test]
async fn client_follows_the_leader_hint_and_sees_not_found_for_unknown_jobs() {
    let leader = serve(FakeCoordinator {
        leader_address: None,
    })
    .await;
    let follower = serve(FakeCoordinator {
        leader_address: Some(leader.to_string()),
    })
    .await;

    let get = |job_id: &str| {
        Request::new(GetJobRequest {
            job_id: job_id.to_owned(),
            include_spec: false,
        })
    };

    // The follower redirects with UNAVAILABLE and the leader's address.
    let status = client(&follower.to_string())
        .await
        .get_job(get(KNOWN_JOB_ID))
        .await
        .expect_err("a follower does not serve GetJob");
    assert_eq!(status.code(), Code::Unavailable);
    let hint = leader_hint(status.metadata()).expect("drover-leader is set");
    assert_eq!(hint, leader.to_string());

    // Following the hint reaches the leader, which answers.
    let mut leader_client = client(&hint).await;
    let job = leader_client
        .get_job(get(KNOWN_JOB_ID))
        .await
        .expect("the leader serves GetJob")
        .into_inner()
        .job
        .expect("job is set");
    assert_eq!(job.job_id, KNOWN_JOB_ID);
    assert_eq!(job.state(), JobState::Running);

    // An unknown job is NOT_FOUND, and carries no leader hint: it is not a
    // redirect.
    let status = leader_client
        .get_job(get("j-404"))
        .await
        .expect_err("unknown job");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(leader_hint(status.metadata()), None);
}

#[tokio::test]
async fn invalid_spec_carries_its_diagnostics_in_binary_metadata() {
    let leader = serve(FakeCoordinator {
        leader_address: None,
    })
    .await;

    let status = client(&leader.to_string())
        .await
        .submit_job(Request::new(SubmitJobRequest {
            spec_yaml: "tasks:\n  export:\n    depends_on: []\n".to_owned(),
            source_name: "spec.yaml".to_owned(),
            ..SubmitJobRequest::default()
        }))
        .await
        .expect_err("the spec is invalid");

    assert_eq!(status.code(), Code::InvalidArgument);
    let bytes = status
        .metadata()
        .get_bin(DIAGNOSTICS_METADATA_KEY)
        .expect("drover-diagnostics-bin is set")
        .to_bytes()
        .expect("valid base64");
    let list = DiagnosticList::decode(bytes).expect("a DiagnosticList");
    assert!(!list.truncated);
    let [diagnostic] = list.diagnostics.as_slice() else {
        panic!("expected one diagnostic, got {:?}", list.diagnostics);
    };
    assert_eq!(diagnostic.file, "spec.yaml");
    assert_eq!((diagnostic.line, diagnostic.column), (3, 5));
    assert_eq!(diagnostic.severity(), Severity::Error);
    assert_eq!(diagnostic.hint, "did you mean `dependsOn`?");
}
