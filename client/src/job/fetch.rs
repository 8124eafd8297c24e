//! Reading jobs from the cluster, for the views that show them.

use anyhow::Result;
use drover_net::Coordinators;
use drover_proto::v1::{GetJobRequest, Job, ListJobsRequest};

/// Jobs fetched per page; the server caps pages too.
const PAGE: u32 = 500;

/// One job or schedule, by any id form the cluster accepts.
pub async fn get_job(coordinators: &Coordinators, id: &str) -> Result<Job> {
    let request = GetJobRequest {
        job_id: id.to_owned(),
        include_spec: false,
    };
    let response = coordinators
        .jobs(|mut c| {
            let r = request.clone();
            async move { c.get_job(r).await.map(|r| r.into_inner()) }
        })
        .await?;
    response
        .job
        .ok_or_else(|| anyhow::anyhow!("the coordinator answered without the job"))
}

/// Up to `limit` jobs matching `request`, newest first, over as many pages
/// as that takes.
pub async fn list_jobs(
    coordinators: &Coordinators,
    mut request: ListJobsRequest,
    limit: usize,
) -> Result<Vec<Job>> {
    let mut jobs: Vec<Job> = Vec::new();
    loop {
        request.page_size = PAGE.min(limit.max(1) as u32);
        let page = coordinators
            .jobs(|mut c| {
                let r = request.clone();
                async move { c.list_jobs(r).await.map(|r| r.into_inner()) }
            })
            .await?;
        jobs.extend(page.jobs);
        request.page_token = page.next_page_token;
        if request.page_token.is_empty() || jobs.len() >= limit {
            break;
        }
    }
    jobs.truncate(limit);
    Ok(jobs)
}
