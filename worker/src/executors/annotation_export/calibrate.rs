//! The calibrate task: Dawid-Skene fitted once per classification project
//! on a sample of its items (chosen by the same stable hash as the shards,
//! at most about [`SAMPLE_VOTES_MAX`] votes), so that every shard judges an
//! annotator by one model learnt from the whole project rather than by its
//! own slice. Writes `model.json` (per project: classes, priors, and each
//! pseudonymised annotator's confusion matrix) and its manifest. With
//! `majority` consensus, or no classification project, the model is empty.

use std::collections::BTreeMap;

use drover_jobspecs::kinds::annotation_export::AnnotationExportConfig;
use drover_proto::v1::{LeasedTask, OutputManifest};
use serde::{Deserialize, Serialize};

use super::Export;
use super::input::Filters;
use super::votes::{class_votes, gather, wanted_files};
use crate::annotation::consensus::dawid_skene;
use crate::annotation::pseudonym::Pseudonymiser;
use crate::annotation::stats::CLASSIFICATION;
use crate::dataset::manifest::DatasetManifest;
use crate::executors::{AttemptContext, TaskError};

/// The model's object name.
pub const MODEL_NAME: &str = "model.json";

/// Votes the sample holds, about: enough to estimate each annotator's
/// confusion well, few enough to fit in seconds.
pub const SAMPLE_VOTES_MAX: u64 = 1_000_000;

/// Largest `model.json` read.
const MODEL_BYTES_MAX: usize = 64 * 1024 * 1024;

/// One project's Dawid-Skene model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectModel {
    /// Class names, in the order of `priors` and the matrices.
    pub classes: Vec<String>,
    /// Share of each class.
    pub priors: Vec<f64>,
    /// Per annotator pseudonym, `confusion[true][given]`.
    pub annotators: BTreeMap<String, Vec<Vec<f64>>>,
    /// Items the model was fitted on.
    pub sampled_items: u64,
    /// Votes it was fitted on.
    pub sampled_votes: u64,
}

/// Models by project.
pub type Models = BTreeMap<String, ProjectModel>;

/// Runs the calibration.
pub async fn run(
    task: &LeasedTask,
    cfg: &AnnotationExportConfig,
    ctx: &AttemptContext,
    export: &Export,
) -> Result<OutputManifest, TaskError> {
    let input = super::input_files(export).await?;
    let mut models = Models::new();
    if cfg.consensus.classes == "dawid_skene" {
        let pseudo = Pseudonymiser::from_source(&cfg.pseudonymize)
            .map_err(|e| TaskError::permanent(e.to_string()))?;
        let all = Filters::new(cfg, 0)?;
        let files = wanted_files(&input.files, &all);
        let mut rows = 0u64;
        for f in &files {
            rows += super::input::rows(&export.input, f).await?;
        }
        let per_million = (SAMPLE_VOTES_MAX.saturating_mul(1_000_000) / rows.max(1)).min(1_000_000);
        let n = files.len().max(1) as f64;
        let g = gather(
            export,
            ctx,
            &files,
            &all.sample(per_million),
            &pseudo,
            |i, path| {
                ctx.progress.set(i as f64 / n, format!("sampled {path}"));
            },
        )
        .await?;
        for (project, votes) in &g.projects {
            if votes.task_type != CLASSIFICATION {
                continue;
            }
            export.stopped(ctx)?;
            let cv = class_votes(&g, votes, cfg, None);
            if cv.votes.votes.is_empty() {
                continue;
            }
            let ds = dawid_skene(&cv.votes);
            let annotators = (0..cv.votes.annotators)
                .filter_map(|a| {
                    cv.pseudonym(&g, a)
                        .map(|name| (name.to_owned(), ds.confusion[a].clone()))
                })
                .collect();
            models.insert(
                project.clone(),
                ProjectModel {
                    classes: cv
                        .classes
                        .iter()
                        .map(|l| g.labels[*l as usize].clone())
                        .collect(),
                    priors: ds.priors,
                    annotators,
                    sampled_items: cv.votes.items as u64,
                    sampled_votes: cv.votes.votes.len() as u64,
                },
            );
        }
    }
    let file = export
        .write_json(MODEL_NAME, &models, models.len() as u64)
        .await?;
    let fingerprint = export.fingerprint(task, &[input.content_hash]);
    let m = DatasetManifest::new(vec![file], Vec::new(), &export.writer(task, fingerprint));
    export.commit(task, m).await
}

/// The models the calibrate task committed, found through the lease's
/// upstream outputs; empty when the job has no calibrate stage.
pub async fn read(task: &LeasedTask, export: &Export) -> Result<Models, TaskError> {
    let Some(up) = task
        .upstream_outputs
        .iter()
        .find(|u| u.template.rsplit('/').next() == Some("calibrate"))
    else {
        return Ok(Models::new());
    };
    let (location, m) = export
        .committed(&up.output_prefix, "the calibration output")
        .await?;
    if !m.files.iter().any(|f| f.path == MODEL_NAME) {
        return Err(TaskError::permanent(format!(
            "the calibration output {} has no {MODEL_NAME}",
            location.url
        )));
    }
    let bytes = export
        .read_small(&location, MODEL_NAME, MODEL_BYTES_MAX)
        .await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| TaskError::permanent(format!("{}/{MODEL_NAME}: {e}", location.url)))
}
