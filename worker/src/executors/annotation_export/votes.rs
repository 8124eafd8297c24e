//! Pass one of the export: the votes of the items a task reads, gathered
//! per project and item, annotators already pseudonymised; and a
//! classification project's votes as the consensus functions take them.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow_array::{Array, RecordBatch};
use drover_jobspecs::kinds::annotation_export::AnnotationExportConfig;
use futures::StreamExt;

use super::Export;
use super::input::{self, Filters};
use crate::annotation::pseudonym::Pseudonymiser;
use crate::annotation::stats::{BBOX, CLASSIFICATION};
use crate::annotation::{Vote, Votes};
use crate::dataset::input::InputFile;
use crate::executors::{AttemptContext, TaskError};

/// One annotator's answer on one item.
#[derive(Debug, Clone, Copy)]
pub struct VoteRow {
    pub annotator: u32,
    pub label: Option<u32>,
    pub bbox: Option<[f64; 4]>,
}

#[derive(Debug, Default)]
pub struct ItemVotes {
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub votes: Vec<VoteRow>,
}

#[derive(Debug, Default)]
pub struct ProjectVotes {
    pub task_type: String,
    pub items: HashMap<String, ItemVotes>,
}

/// Everything pass one gathers.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Pseudonyms, by annotator index.
    pub annotators: Vec<String>,
    annotator_index: HashMap<String, u32>,
    pub labels: Vec<String>,
    pub label_index: HashMap<String, u32>,
    pub projects: BTreeMap<String, ProjectVotes>,
}

impl Gathered {
    pub fn add(&mut self, batch: &RecordBatch, pseudo: &Pseudonymiser) -> Result<(), TaskError> {
        let bad = |e: arrow_schema::ArrowError| TaskError::permanent(format!("input: {e}"));
        let project = input::string_column(batch, "project").map_err(bad)?;
        let task_type = input::string_column(batch, "task_type").map_err(bad)?;
        let item = input::string_column(batch, "item_id").map_err(bad)?;
        let annotator = input::string_column(batch, "annotator_id").map_err(bad)?;
        let label = input::string_column(batch, "label").map_err(bad)?;
        let bbox: Vec<_> = ["bbox_x", "bbox_y", "bbox_w", "bbox_h"]
            .iter()
            .map(|n| input::float_column(batch, n))
            .collect();
        let width = batch.column_by_name("image_width");
        let height = batch.column_by_name("image_height");
        for i in 0..batch.num_rows() {
            if annotator.is_null(i) || task_type.is_null(i) {
                continue;
            }
            let p = project.value(i);
            let kind = task_type.value(i);
            if kind != CLASSIFICATION && kind != BBOX {
                return Err(TaskError::permanent(format!(
                    "project {p}: task_type `{kind}` is neither {CLASSIFICATION} nor {BBOX}"
                )));
            }
            let a = self.annotator(annotator.value(i), pseudo);
            let l = (!label.is_null(i)).then(|| self.label(label.value(i)));
            let b = match (&bbox[0], &bbox[1], &bbox[2], &bbox[3]) {
                (Some(x), Some(y), Some(w), Some(h)) if !x.is_null(i) && !w.is_null(i) => {
                    Some([x.value(i), y.value(i), w.value(i), h.value(i)])
                        .filter(|b| b.iter().all(|v| v.is_finite()) && b[2] >= 0.0 && b[3] >= 0.0)
                }
                _ => None,
            };
            let votes = self.projects.entry(p.to_owned()).or_default();
            if votes.task_type.is_empty() {
                votes.task_type = kind.to_owned();
            } else if votes.task_type != kind {
                return Err(TaskError::permanent(format!(
                    "project {p} mixes task types {} and {kind}",
                    votes.task_type
                )));
            }
            let it = votes.items.entry(item.value(i).to_owned()).or_default();
            let size = |c, i| input::int_value(c, i).and_then(|v| i32::try_from(v).ok());
            it.width = it.width.or(size(width, i));
            it.height = it.height.or(size(height, i));
            it.votes.push(VoteRow {
                annotator: a,
                label: l,
                bbox: b,
            });
        }
        Ok(())
    }

    fn annotator(&mut self, raw: &str, pseudo: &Pseudonymiser) -> u32 {
        if let Some(&a) = self.annotator_index.get(raw) {
            return a;
        }
        let a = self.annotators.len() as u32;
        self.annotators.push(pseudo.pseudonym(raw));
        self.annotator_index.insert(raw.to_owned(), a);
        a
    }

    fn label(&mut self, name: &str) -> u32 {
        if let Some(&l) = self.label_index.get(name) {
            return l;
        }
        let l = self.labels.len() as u32;
        self.labels.push(name.to_owned());
        self.label_index.insert(name.to_owned(), l);
        l
    }
}

/// Reads the rows `filters` keeps from `files` and gathers their votes;
/// `progress` hears of each file done.
pub async fn gather(
    export: &Export,
    ctx: &AttemptContext,
    files: &[&InputFile],
    filters: &Filters,
    pseudo: &Pseudonymiser,
    mut progress: impl FnMut(usize, &str),
) -> Result<Gathered, TaskError> {
    let mut g = Gathered::default();
    for (n, f) in files.iter().enumerate() {
        let (_, mut stream) = super::read_input(export, f, filters).await?;
        while let Some(batch) = stream.next().await {
            export.stopped(ctx)?;
            g.add(&batch?, pseudo)?;
        }
        progress(n, &f.path);
    }
    Ok(g)
}

/// The input files of the projects `filters` wants: a file under
/// `project=<p>/` is skipped unless `p` is wanted.
pub fn wanted_files<'a>(files: &'a [InputFile], filters: &Filters) -> Vec<&'a InputFile> {
    files
        .iter()
        .filter(|f| project_of_path(&f.path).is_none_or(|p| filters.wants_project(p)))
        .collect()
}

/// `p` of a `project=p/...` path, if it is one.
fn project_of_path(path: &str) -> Option<&str> {
    path.split('/')
        .find_map(|part| part.strip_prefix("project="))
}

/// An item kept for the consensus: its id, its votes, and each annotator's
/// (annotator index, label index).
pub type KeptItem<'a> = (&'a String, &'a ItemVotes, Vec<(u32, u32)>);

/// A classification project's votes, ready for the consensus.
#[derive(Debug)]
pub struct ClassVotes<'a> {
    /// Items kept, sorted by id.
    pub kept: Vec<KeptItem<'a>>,
    /// Items with too few annotators.
    pub excluded: u64,
    /// Items seen.
    pub items: u64,
    /// The classes, as label indices of [`Gathered::labels`].
    pub classes: Vec<u32>,
    /// Index in [`Gathered::annotators`] of each dense annotator index.
    pub annotators: Vec<u32>,
    /// The votes over dense indices.
    pub votes: Votes,
}

impl ClassVotes<'_> {
    /// Pseudonym of dense annotator `a`.
    pub fn pseudonym<'g>(&self, g: &'g Gathered, a: usize) -> Option<&'g str> {
        self.annotators
            .get(a)
            .map(|global| g.annotators[*global as usize].as_str())
    }
}

/// Each annotator's first answer per item, items with fewer than
/// `minAnnotators` left out, over `classes` (label names) if given, else
/// the configured label set, else the labels used (sorted by name).
pub fn class_votes<'a>(
    g: &Gathered,
    votes: &'a ProjectVotes,
    cfg: &AnnotationExportConfig,
    classes: Option<&[String]>,
) -> ClassVotes<'a> {
    let mut ids: Vec<&String> = votes.items.keys().collect();
    ids.sort_unstable();
    let items = ids.len() as u64;
    let mut excluded = 0;
    let mut kept: Vec<KeptItem<'a>> = Vec::new();
    for id in ids {
        let item = &votes.items[id];
        let mut answers: Vec<(u32, u32)> = Vec::new();
        for v in &item.votes {
            if let Some(l) = v.label
                && !answers.iter().any(|(a, _)| *a == v.annotator)
            {
                answers.push((v.annotator, l));
            }
        }
        if answers.len() < cfg.min_annotators as usize {
            excluded += 1;
            continue;
        }
        kept.push((id, item, answers));
    }
    let named = classes.or((!cfg.labels.is_empty()).then_some(cfg.labels.as_slice()));
    let mut classes: Vec<u32> = match named {
        Some(names) => names
            .iter()
            .filter_map(|l| g.label_index.get(l).copied())
            .collect(),
        None => {
            let mut used: Vec<u32> = kept
                .iter()
                .flat_map(|(_, _, a)| a.iter().map(|(_, l)| *l))
                .collect::<HashSet<u32>>()
                .into_iter()
                .collect();
            used.sort_by(|a, b| g.labels[*a as usize].cmp(&g.labels[*b as usize]));
            used
        }
    };
    classes.dedup();
    let class_of: HashMap<u32, u32> = classes
        .iter()
        .enumerate()
        .map(|(c, l)| (*l, c as u32))
        .collect();
    let mut annotator_of: HashMap<u32, u32> = HashMap::new();
    let mut annotators: Vec<u32> = Vec::new();
    let mut all = Vec::new();
    for (i, (_, _, answers)) in kept.iter().enumerate() {
        for (a, l) in answers {
            let annotator = *annotator_of.entry(*a).or_insert_with(|| {
                annotators.push(*a);
                annotators.len() as u32 - 1
            });
            if let Some(&class) = class_of.get(l) {
                all.push(Vote {
                    item: i as u32,
                    annotator,
                    class,
                });
            }
        }
    }
    let votes = Votes {
        items: kept.len(),
        annotators: annotators.len(),
        classes: classes.len(),
        votes: all,
    };
    ClassVotes {
        kept,
        excluded,
        items,
        classes,
        annotators,
        votes,
    }
}
