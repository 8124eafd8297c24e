//! Runs every stage of one multi-stage task in this process the way the
//! coordinator leases them: stage after stage, each partition handed the
//! accepted outputs of the stage before and of the earlier stages it also
//! reads, each attempt under its own prefix.

use std::collections::BTreeMap;
use std::path::Path;

use drover_jobspecs::kinds::Stage;
use drover_proto::v1::{LeasedTask, OutputManifest, TaskKind, UpstreamOutput};
use drover_worker::executors::{Executor, TaskError};

use super::export::context;

/// The accepted outputs so far, by stage name, in partition order.
pub type Outputs = BTreeMap<&'static str, Vec<OutputManifest>>;

/// One task's stages and how to run them.
pub struct Staged<'a> {
    /// Runs the attempts.
    pub executor: &'a dyn Executor,
    /// The kind, as leased.
    pub kind: TaskKind,
    /// The task's name in the spec.
    pub name: &'a str,
    /// Its config as JSON.
    pub config_json: String,
    /// Its stages.
    pub stages: Vec<Stage>,
    /// Scratch space for attempts.
    pub scratch: &'a Path,
}

impl Staged<'_> {
    /// One attempt of partition `partition` of stage `index`, leased with
    /// the upstream outputs in `done`.
    pub fn lease(
        &self,
        index: usize,
        partition: u64,
        attempt: u32,
        token: u64,
        done: &Outputs,
    ) -> LeasedTask {
        let stage = &self.stages[index];
        let stage_name = stage.name.unwrap_or("main");
        let mut reads: Vec<&str> = stage.also_reads.to_vec();
        if index > 0 {
            reads.insert(0, self.stages[index - 1].name.unwrap_or("main"));
        }
        let name = self.name;
        let upstream_outputs = reads
            .iter()
            .flat_map(|r| {
                done.get(r)
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .map(move |(i, m)| UpstreamOutput {
                        template: format!("{name}/{r}"),
                        partition_index: i as u64,
                        partition_key: i.to_string(),
                        output_prefix: m.output_prefix.clone(),
                    })
            })
            .collect();
        LeasedTask {
            task_id: format!("j1/{index}/{partition}"),
            job_id: "j1".into(),
            template: format!("{name}/{stage_name}"),
            kind: self.kind as i32,
            partition_index: partition,
            partition_key: partition.to_string(),
            config_json: self.config_json.clone(),
            attempt,
            fencing_token: token,
            output_prefix: format!("jobs/j1/{index}/{partition}/attempt-{attempt}-{token}"),
            upstream_outputs,
            ..LeasedTask::default()
        }
    }

    /// A fencing token unique to the stage, partition and attempt.
    pub fn token(index: usize, partition: u64, attempt: u32) -> u64 {
        1000 * (index as u64 + 1) + partition + 100_000 * u64::from(attempt)
    }

    /// Runs stage `index`, every partition, as attempt `attempt`.
    pub async fn run_stage(
        &self,
        index: usize,
        attempt: u32,
        done: &mut Outputs,
    ) -> Result<(), TaskError> {
        let mut outputs = Vec::new();
        for p in 0..self.stages[index].partitions.count() {
            let t = self.lease(index, p, attempt, Self::token(index, p, attempt), done);
            outputs.push(self.executor.run(t, context(self.scratch)).await?);
        }
        done.insert(self.stages[index].name.unwrap_or("main"), outputs);
        Ok(())
    }

    /// Runs every stage, attempt `attempt` of each task.
    pub async fn run_all(&self, attempt: u32) -> Result<Outputs, TaskError> {
        let mut done = Outputs::new();
        for index in 0..self.stages.len() {
            self.run_stage(index, attempt, &mut done).await?;
        }
        Ok(done)
    }
}
