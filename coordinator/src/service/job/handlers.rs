//! The JobService rpcs: each checks its request, then reads or proposes
//! through the [`JobServer`](super::JobServer).

use std::collections::BTreeSet;

use drover_proto::trace::TraceParent;
use drover_proto::v1::job_service_server::JobService;
use drover_proto::v1::{
    CancelJobRequest, CancelJobResponse, ExplainTaskRequest, ExplainTaskResponse, GetJobRequest,
    GetJobResponse, GetTaskLogRequest, GetTaskLogResponse, GetTaskOutputRequest,
    GetTaskOutputResponse, Job as WireJob, JobEventsRequest, JobEventsResponse, JobListKind,
    JobState as WireJobState, ListJobsRequest, ListJobsResponse, ListTasksRequest,
    ListTasksResponse, PlanJobRequest, PlanJobResponse, RetryJobRequest, RetryJobResponse,
    SubmitJobRequest, SubmitJobResponse, WatchJobRequest, WatchJobResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::scan::*;
use super::watch::*;
use super::*;
use crate::auth::Caller;
use crate::service::rejection_status;
use crate::state::ids::JobRef;
use crate::state::{Command, Outcome, Rejection, TaskState};

#[tonic::async_trait]
impl JobService for JobServer {
    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        let trace = crate::service::trace::continue_or_start(request.metadata());
        let span = tracing::info_span!(
            "submit_job",
            trace_id = tracing::field::Empty,
            source = %request.get_ref().source_name,
            job_id = tracing::field::Empty,
        );
        // With spans exported, the job's trace continues from this span:
        // its leases, attempts and reports become its descendants.
        let trace = if drover_proto::spans::exporting() {
            if let Some(supplied) = request
                .metadata()
                .get(drover_proto::TRACEPARENT_METADATA_KEY)
                .and_then(|v| v.to_str().ok())
            {
                drover_proto::spans::set_parent(&span, supplied);
            }
            drover_proto::spans::traceparent_of(&span)
                .and_then(|own| TraceParent::parse(&own).ok())
                .unwrap_or(trace)
        } else {
            trace
        };
        span.record("trace_id", trace.trace_id());
        let caller = Caller::of(&request);
        self.submit(caller, request.into_inner(), trace)
            .instrument(span)
            .await
    }

    async fn plan_job(
        &self,
        request: Request<PlanJobRequest>,
    ) -> Result<Response<PlanJobResponse>, Status> {
        let request = request.into_inner();
        check_spec_size(&request.spec_yaml, &request.source_name)?;
        let as_of = match request.as_of_unix_ms {
            0 => crate::clock::wall_now_ms(),
            at => at,
        };
        let fire_times = page_size(request.fire_time_count, FIRE_TIMES_DEFAULT, FIRE_TIMES_MAX);
        let (_, plan) = plan_blocking(
            request.source_name,
            request.spec_yaml,
            request.params.into_iter().collect(),
            as_of,
        )
        .await?;
        Ok(Response::new(match plan {
            Ok(plan) => {
                let times = plan
                    .spec
                    .schedule
                    .as_ref()
                    .map(|s| {
                        s.next_fire_times(utc(as_of), fire_times)
                            .into_iter()
                            .map(|t| t.timestamp_millis())
                            .collect()
                    })
                    .unwrap_or_default();
                PlanJobResponse {
                    valid: true,
                    diagnostics: plan.warnings.iter().map(convert::diagnostic).collect(),
                    plan: Some(convert::plan(&plan, times)),
                }
            }
            Err(diagnostics) => PlanJobResponse {
                valid: false,
                diagnostics: diagnostics.iter().map(convert::diagnostic).collect(),
                plan: None,
            },
        }))
    }

    async fn get_job(
        &self,
        request: Request<GetJobRequest>,
    ) -> Result<Response<GetJobResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let job_ref = self.resolve(&request.job_id).await?;
        self.check_access(&caller, job_ref).await?;
        let include_spec = request.include_spec;
        let mut job = self
            .read(move |sm| match job_ref {
                JobRef::Job(id) => sm
                    .job(id)
                    .map(|job| convert::job(sm, job, true, include_spec))
                    .ok_or_else(|| not_found(job_ref)),
                JobRef::Schedule(id) => sm
                    .core()
                    .schedules
                    .get(&id)
                    .map(|s| convert::schedule_job(sm, s, true, include_spec))
                    .ok_or_else(|| not_found(job_ref)),
            })
            .await?;
        if let JobRef::Schedule(id) = job_ref {
            schedule_header(&self.node, id).await?.apply(&mut job);
        }
        Ok(Response::new(GetJobResponse { job: Some(job) }))
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        if !request.namespace.is_empty() {
            caller.check_namespace(&request.namespace)?;
        }
        let parent = match request.parent_job_id.as_str() {
            "" => None,
            id => Some(self.resolve(id).await?),
        };
        let mut filter = convert::job_filter(
            request.namespace,
            &request.states,
            request.name_prefix,
            parent,
        )?;
        filter.allowed = caller.namespaces().map(<[String]>::to_vec);
        filter.labels = request.labels.into_iter().collect();
        match JobListKind::try_from(request.kind) {
            Ok(JobListKind::Schedules) => filter.skip_jobs = true,
            Ok(JobListKind::Jobs) => filter.skip_schedules = true,
            Ok(JobListKind::Unspecified) | Err(_) => {}
        }
        let from = convert::parse_jobs_token(&request.page_token)?;
        let page = page_size(request.page_size, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX);
        let (jobs, next) = self
            .read(move |sm| {
                let (listed, next) = scan_jobs(sm, &filter, from, page);
                let jobs: Vec<WireJob> = listed
                    .into_iter()
                    .filter_map(|item| match item {
                        Listed::Job(id) => sm.job(id).map(|j| convert::job(sm, j, false, false)),
                        Listed::Schedule(id) => sm
                            .core()
                            .schedules
                            .get(&id)
                            .map(|s| convert::schedule_job(sm, s, false, false)),
                    })
                    .collect();
                Ok((jobs, next))
            })
            .await?;
        Ok(Response::new(ListJobsResponse {
            jobs,
            next_page_token: next.map(convert::jobs_token).unwrap_or_default(),
        }))
    }

    type WatchJobStream = ReceiverStream<Result<WatchJobResponse, Status>>;

    async fn watch_job(
        &self,
        request: Request<WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let job_ref = self.resolve(&request.job_id).await?;
        self.check_access(&caller, job_ref).await?;
        let kinds: BTreeSet<i32> = request.event_kinds.into_iter().collect();
        let after = request.after_seq;
        let first_kinds = kinds.clone();
        // The first look is linearizable, so the watcher sees at least
        // every change committed before it asked.
        let first = self
            .read(move |sm| watch_poll(sm, job_ref, after, &first_kinds))
            .await?;
        let header = match job_ref {
            JobRef::Schedule(id) => Some(schedule_header(&self.node, id).await?),
            JobRef::Job(_) => None,
        };
        let (tx, rx) = mpsc::channel(WATCH_CHANNEL);
        tokio::spawn(watch_loop(
            self.node.clone(),
            job_ref,
            kinds,
            header,
            first,
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let job_ref = self.resolve(&request.job_id).await?;
        self.check_access(&caller, job_ref).await?;
        let reason: String = request.reason.chars().take(REASON_CHARS_MAX).collect();
        crate::service::require_leader(&self.node)?;
        let command = match job_ref {
            JobRef::Job(job) => Command::CancelJob { job, reason },
            JobRef::Schedule(schedule) => {
                // Cancelling a schedule twice would succeed twice; answer
                // "unchanged" for one already stopped, as for jobs.
                let state = self
                    .read(move |sm| {
                        sm.core()
                            .schedules
                            .get(&schedule)
                            .map(schedule_state)
                            .ok_or_else(|| not_found(job_ref))
                    })
                    .await?;
                if state.is_terminal() {
                    return Ok(Response::new(CancelJobResponse {
                        state: convert::job_state(state) as i32,
                        changed: false,
                    }));
                }
                Command::CancelSchedule { schedule, reason }
            }
        };
        match self.propose(command).await? {
            Ok(_) => Ok(Response::new(CancelJobResponse {
                state: WireJobState::Cancelled as i32,
                changed: true,
            })),
            // Cancelling a finished job is a no-op that succeeds, so that
            // retries are safe (job.proto).
            Err(Rejection::JobFinished { job, .. }) => {
                let state = self
                    .read(move |sm| {
                        sm.job(job)
                            .map(|j| j.state)
                            .ok_or_else(|| not_found(JobRef::Job(job)))
                    })
                    .await?;
                Ok(Response::new(CancelJobResponse {
                    state: convert::job_state(state) as i32,
                    changed: false,
                }))
            }
            Err(rejection) => Err(rejection_status(rejection)),
        }
    }

    async fn retry_job(
        &self,
        request: Request<RetryJobRequest>,
    ) -> Result<Response<RetryJobResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let job_ref = self.resolve(&request.job_id).await?;
        self.check_access(&caller, job_ref).await?;
        let job = match job_ref {
            JobRef::Job(job) => job,
            JobRef::Schedule(s) => {
                return Err(Status::failed_precondition(format!(
                    "{s} is a scheduled job and runs no tasks itself; retry one of its runs"
                )));
            }
        };
        if !request.templates.is_empty() {
            let names = request.templates;
            self.read(move |sm| {
                let job = sm.job(job).ok_or_else(|| not_found(JobRef::Job(job)))?;
                if let Some(unknown) = names
                    .iter()
                    .find(|n| !job.templates.iter().any(|t| t.def.id == **n))
                {
                    return Err(Status::invalid_argument(format!(
                        "job {} has no template `{}`",
                        job.id,
                        crate::state::types::shown(unknown)
                    )));
                }
                let left_out: Vec<&str> = job
                    .templates
                    .iter()
                    .filter(|t| t.counts.failed > 0 && !names.contains(&t.def.id))
                    .map(|t| t.def.id.as_str())
                    .collect();
                if left_out.is_empty() {
                    Ok(())
                } else {
                    Err(Status::unimplemented(format!(
                        "retrying only some templates is not supported; templates {} also have failed tasks (retry all templates instead)",
                        left_out.join(", ")
                    )))
                }
            })
            .await?;
        }
        match self.propose(Command::RetryJob { job }).await? {
            Ok(Outcome::Retried { tasks }) => {
                let state = self
                    .read(move |sm| {
                        sm.job(job)
                            .map(|j| j.state)
                            .ok_or_else(|| not_found(JobRef::Job(job)))
                    })
                    .await?;
                Ok(Response::new(RetryJobResponse {
                    requeued_task_count: tasks,
                    state: convert::job_state(state) as i32,
                }))
            }
            Ok(other) => Err(Status::internal(format!(
                "unexpected outcome of a retry: {other:?}"
            ))),
            Err(rejection) => Err(rejection_status(rejection)),
        }
    }

    async fn job_events(
        &self,
        request: Request<JobEventsRequest>,
    ) -> Result<Response<JobEventsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let job_ref = self.resolve(&request.job_id).await?;
        self.check_access(&caller, job_ref).await?;
        let task = match request.task_id.as_str() {
            "" => None,
            id => Some(self.resolve_task(id).await?),
        };
        if let Some(key) = task
            && JobRef::Job(key.job) != job_ref
        {
            return Err(Status::invalid_argument(format!(
                "task {key} is not a task of job {job_ref}"
            )));
        }
        let limit = page_size(request.limit, EVENTS_LIMIT_DEFAULT, EVENTS_LIMIT_MAX);
        let kinds: BTreeSet<i32> = request.kinds.into_iter().collect();
        let after = request.after_seq;
        let page = self
            .read(move |sm| match job_ref {
                JobRef::Job(id) => sm
                    .job(id)
                    .map(|job| events_page(job, after, limit, task, &kinds))
                    .ok_or_else(|| not_found(job_ref)),
                // Schedules keep notes, not an event trail.
                JobRef::Schedule(id) => sm
                    .core()
                    .schedules
                    .get(&id)
                    .map(|_| EventsPage {
                        next_after_seq: after,
                        ..EventsPage::default()
                    })
                    .ok_or_else(|| not_found(job_ref)),
            })
            .await?;
        Ok(Response::new(JobEventsResponse {
            events: page.events,
            next_after_seq: page.next_after_seq,
            more: page.more,
            oldest_seq: page.oldest_seq,
        }))
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let job_ref = self.resolve(&request.job_id).await?;
        self.check_access(&caller, job_ref).await?;
        let states = convert::task_states(&request.states);
        let start = convert::parse_tasks_token(&request.page_token)?;
        let page = page_size(request.page_size, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX);
        let template_filter = request.template;
        let (tasks, next) = self
            .read(move |sm| {
                let id = match job_ref {
                    JobRef::Job(id) => id,
                    // A scheduled job runs no tasks itself.
                    JobRef::Schedule(id) => {
                        return sm
                            .core()
                            .schedules
                            .get(&id)
                            .map(|_| (Vec::new(), None))
                            .ok_or_else(|| not_found(job_ref));
                    }
                };
                let job = sm.job(id).ok_or_else(|| not_found(job_ref))?;
                let mut order = crate::state::job::stage_order(&job.stages());
                if !template_filter.is_empty() {
                    order.retain(|t| job.templates[*t as usize].def.id == template_filter);
                    if order.is_empty() {
                        return Err(Status::invalid_argument(format!(
                            "job {id} has no template `{}`",
                            crate::state::types::shown(&template_filter)
                        )));
                    }
                }
                let start = match start {
                    None => (0, 0),
                    Some((t, p)) => {
                        let position = order.iter().position(|o| *o == t).ok_or_else(|| {
                            Status::invalid_argument("the page token does not match the request")
                        })?;
                        (position, p)
                    }
                };
                let found = scan_tasks(job, &order, start, states.as_ref(), page);
                let tasks = found
                    .rows
                    .into_iter()
                    .map(|(t, p, state)| convert::task(sm, job, t, p, state))
                    .collect::<Vec<_>>();
                Ok((tasks, found.next))
            })
            .await?;
        Ok(Response::new(ListTasksResponse {
            tasks,
            next_page_token: next
                .map(|(t, p)| convert::tasks_token(t, p))
                .unwrap_or_default(),
        }))
    }

    async fn explain_task(
        &self,
        request: Request<ExplainTaskRequest>,
    ) -> Result<Response<ExplainTaskResponse>, Status> {
        let caller = Caller::of(&request);
        let key = self.resolve_task(&request.into_inner().task_id).await?;
        self.check_access(&caller, JobRef::Job(key.job)).await?;
        let answer = self
            .read(move |sm| {
                let why = sm.why_pending(key).map_err(rejection_status)?;
                let job = sm
                    .job(key.job)
                    .ok_or_else(|| not_found(JobRef::Job(key.job)))?;
                Ok(convert::explain(sm, job, key, why))
            })
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_task_output(
        &self,
        request: Request<GetTaskOutputRequest>,
    ) -> Result<Response<GetTaskOutputResponse>, Status> {
        let caller = Caller::of(&request);
        let key = self.resolve_task(&request.into_inner().task_id).await?;
        self.check_access(&caller, JobRef::Job(key.job)).await?;
        let answer = self
            .read(move |sm| {
                let job = sm
                    .job(key.job)
                    .ok_or_else(|| not_found(JobRef::Job(key.job)))?;
                let template = job
                    .templates
                    .get(key.template as usize)
                    .filter(|t| key.partition < t.def.count)
                    .ok_or_else(|| Status::not_found(format!("task {key} does not exist")))?;
                let state = template
                    .task_state(key.partition)
                    .unwrap_or(TaskState::Ready);
                let output = template.outputs.get(key.partition).ok_or_else(|| {
                    Status::failed_precondition(format!(
                        "task {key} has no output: it is {}",
                        state.as_str()
                    ))
                })?;
                Ok(GetTaskOutputResponse {
                    task: Some(convert::task(sm, job, key.template, key.partition, state)),
                    manifest: output.manifest.map(convert::output_manifest),
                    fencing_token: output.token,
                    reused: output.skipped,
                })
            })
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_task_log(
        &self,
        request: Request<GetTaskLogRequest>,
    ) -> Result<Response<GetTaskLogResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let key = self.resolve_task(&request.task_id).await?;
        self.check_access(&caller, JobRef::Job(key.job)).await?;
        let token = request.fencing_token;
        let found = self
            .read(move |sm| crate::service::task_log::find_attempt(sm, key, token))
            .await?;
        let answer =
            crate::service::task_log::answer(found, &request, self.task_logs.as_ref()).await;
        Ok(Response::new(answer))
    }
}
