//! A project's quality figures as sums that add up over items: each shard
//! of an export keeps a [`ProjectStats`] for the items it owns, the merge
//! adds the shards' together, and [`ProjectStats::quality`] turns the total
//! into the report's figures. Nothing here depends on the order items or
//! shards arrive in: every map is a `BTreeMap`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Votes;
use super::agreement::AgreementSums;
use super::consensus::spammer_score;
use super::report::{
    AnnotatorQuality, BOX_SPAMMER_F1_MAX, LabelCount, ProjectQuality, SPAMMER_SCORE_MAX,
};

/// A classification project.
pub const CLASSIFICATION: &str = "classification";
/// A bounding-box project.
pub const BBOX: &str = "bbox";

/// One annotator's sums.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnotatorSums {
    /// Labels (classification) or boxes they gave.
    pub votes: u64,
    /// Of those, on items (or in clusters) with a consensus to compare to.
    pub compared: u64,
    /// Of those, equal to the consensus (classification) or inside an
    /// accepted box cluster (boxes).
    pub agreed: u64,
    /// Boxes: accepted objects on the images they annotated.
    pub consensus_seen: u64,
    /// Boxes: of those, the ones they drew.
    pub consensus_found: u64,
    /// Classification: `confusion[consensus][given]` counts.
    pub confusion: BTreeMap<String, BTreeMap<String, u64>>,
}

/// One project's sums.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectStats {
    /// `classification` or `bbox`.
    pub task_type: String,
    /// Items that passed the project, time and label filters.
    pub items: u64,
    /// Of those, left out for having fewer annotators than `minAnnotators`.
    pub excluded_items: u64,
    /// Items exported with at least one consensus label (box projects:
    /// with at least one accepted object).
    pub labelled_items: u64,
    /// Labels or boxes given on exported items.
    pub votes: u64,
    /// Consensus labels (classification: items; boxes: objects) per label.
    pub labels: BTreeMap<String, u64>,
    /// Every label seen in a vote, consensus or not.
    pub seen_labels: BTreeSet<String>,
    /// Agreement: on the class (classification), or on how many boxes of
    /// each category each annotator drew on an image (boxes).
    pub agreement: AgreementSums,
    /// Per annotator pseudonym.
    pub annotators: BTreeMap<String, AnnotatorSums>,
}

impl ProjectStats {
    /// Empty sums for a project of `task_type`.
    pub fn new(task_type: &str) -> Self {
        Self {
            task_type: task_type.to_owned(),
            ..Self::default()
        }
    }

    /// Adds one exported classification item: each annotator's vote and
    /// the consensus, if any.
    pub fn add_classification(&mut self, votes: &[(&str, &str)], consensus: Option<&str>) {
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for (_, label) in votes {
            *counts.entry(label).or_default() += 1;
            self.seen_labels.insert((*label).to_owned());
        }
        self.agreement
            .add_item(counts.iter().map(|(l, n)| (*l, *n)));
        self.votes += votes.len() as u64;
        if let Some(c) = consensus {
            *self.labels.entry(c.to_owned()).or_default() += 1;
            self.labelled_items += 1;
        }
        for (annotator, label) in votes {
            let a = self.annotators.entry((*annotator).to_owned()).or_default();
            a.votes += 1;
            if let Some(c) = consensus {
                a.compared += 1;
                a.agreed += u64::from(c == *label);
                *a.confusion
                    .entry(c.to_owned())
                    .or_default()
                    .entry((*label).to_owned())
                    .or_default() += 1;
            }
        }
    }

    /// Adds one unit of box agreement: how many boxes of one category each
    /// annotator of an image drew (0 included). Agreement on boxes is
    /// agreement on these counts, as nominal values.
    pub fn add_box_counts(&mut self, per_annotator: &[u32]) {
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for n in per_annotator {
            *counts.entry(n.to_string()).or_default() += 1;
        }
        self.agreement
            .add_item(counts.iter().map(|(v, n)| (v.as_str(), *n)));
    }

    /// Adds one exported image: `annotators` looked at it; each cluster is
    /// (category, members, accepted).
    pub fn add_boxes(&mut self, annotators: &[&str], clusters: &[(&str, Vec<&str>, bool)]) {
        let mut accepted_any = false;
        for (category, members, accepted) in clusters {
            self.seen_labels.insert((*category).to_owned());
            self.votes += members.len() as u64;
            if *accepted {
                accepted_any = true;
                *self.labels.entry((*category).to_owned()).or_default() += 1;
            }
            for m in members {
                let a = self.annotators.entry((*m).to_owned()).or_default();
                a.votes += 1;
                a.compared += 1;
                a.agreed += u64::from(*accepted);
            }
            if *accepted {
                for who in annotators {
                    let a = self.annotators.entry((*who).to_owned()).or_default();
                    a.consensus_seen += 1;
                    a.consensus_found += u64::from(members.contains(who));
                }
            }
        }
        // Annotators who looked and drew nothing still appear.
        for who in annotators {
            self.annotators.entry((*who).to_owned()).or_default();
        }
        self.labelled_items += u64::from(accepted_any);
    }

    /// Adds another shard's sums of the same project.
    pub fn merge(&mut self, other: &ProjectStats) {
        if self.task_type.is_empty() {
            self.task_type.clone_from(&other.task_type);
        }
        self.items += other.items;
        self.excluded_items += other.excluded_items;
        self.labelled_items += other.labelled_items;
        self.votes += other.votes;
        for (l, n) in &other.labels {
            *self.labels.entry(l.clone()).or_default() += n;
        }
        self.seen_labels.extend(other.seen_labels.iter().cloned());
        self.agreement.merge(&other.agreement);
        for (name, theirs) in &other.annotators {
            let a = self.annotators.entry(name.clone()).or_default();
            a.votes += theirs.votes;
            a.compared += theirs.compared;
            a.agreed += theirs.agreed;
            a.consensus_seen += theirs.consensus_seen;
            a.consensus_found += theirs.consensus_found;
            for (truth, row) in &theirs.confusion {
                let mine = a.confusion.entry(truth.clone()).or_default();
                for (given, n) in row {
                    *mine.entry(given.clone()).or_default() += n;
                }
            }
        }
    }

    /// The report's figures for this project.
    pub fn quality(&self, project: &str, consensus: &str) -> ProjectQuality {
        let mut labels: Vec<LabelCount> = self
            .labels
            .iter()
            .map(|(label, items)| LabelCount {
                label: label.clone(),
                items: *items,
            })
            .collect();
        labels.sort_by(|a, b| b.items.cmp(&a.items).then(a.label.cmp(&b.label)));
        let classes: Vec<&String> = self.seen_labels.iter().collect();
        let annotators = self
            .annotators
            .iter()
            .map(|(name, a)| {
                let agreement = (a.compared > 0).then(|| a.agreed as f64 / a.compared as f64);
                let (score, spammer, recall) = if self.task_type == BBOX {
                    let recall = (a.consensus_seen > 0)
                        .then(|| a.consensus_found as f64 / a.consensus_seen as f64);
                    let precision = agreement.unwrap_or(0.0);
                    let r = recall.unwrap_or(0.0);
                    let f1 = if precision + r > 0.0 {
                        2.0 * precision * r / (precision + r)
                    } else {
                        0.0
                    };
                    let judged = a.votes + a.consensus_seen > 0;
                    (f1, judged && f1 < BOX_SPAMMER_F1_MAX, recall)
                } else {
                    let score = spammer_score(&confusion_rows(&a.confusion, &classes));
                    (score, a.votes > 0 && score < SPAMMER_SCORE_MAX, None)
                };
                AnnotatorQuality {
                    annotator: name.clone(),
                    votes: a.votes,
                    agreement_with_consensus: agreement,
                    recall,
                    spammer_score: score,
                    spammer,
                }
            })
            .collect();
        ProjectQuality {
            project: project.to_owned(),
            task_type: self.task_type.clone(),
            consensus: consensus.to_owned(),
            items: self.items,
            excluded_items: self.excluded_items,
            labelled_items: self.labelled_items,
            votes: self.votes,
            krippendorff_alpha: self.agreement.alpha(),
            fleiss_kappa: self.agreement.kappa(),
            labels,
            annotators,
        }
    }
}

/// A confusion matrix over `classes` as rows of shares; a class the
/// annotator never met as the consensus tells nothing, so its row is
/// uniform.
fn confusion_rows(
    confusion: &BTreeMap<String, BTreeMap<String, u64>>,
    classes: &[&String],
) -> Vec<Vec<f64>> {
    let k = classes.len();
    classes
        .iter()
        .map(|truth| {
            let row = confusion.get(*truth);
            let total: u64 = row.map_or(0, |r| r.values().sum());
            if total == 0 {
                return vec![1.0 / k as f64; k];
            }
            classes
                .iter()
                .map(|given| {
                    row.and_then(|r| r.get(*given)).copied().unwrap_or(0) as f64 / total as f64
                })
                .collect()
        })
        .collect()
}

/// The figures of a classification project. `labels` are the consensus
/// per item; `class_names` and `annotator_names` (pseudonyms) name the
/// indices of `votes`.
pub fn classification_quality(
    project: &str,
    consensus: &str,
    votes: &Votes,
    labels: &[Option<u32>],
    class_names: &[String],
    annotator_names: &[String],
) -> ProjectQuality {
    let mut by_item: Vec<Vec<(&str, &str)>> = vec![Vec::new(); votes.items];
    for v in &votes.votes {
        by_item[v.item as usize].push((
            &annotator_names[v.annotator as usize],
            &class_names[v.class as usize],
        ));
    }
    let mut stats = ProjectStats::new(CLASSIFICATION);
    stats.items = votes.items as u64;
    for (item, item_votes) in by_item.iter().enumerate() {
        let label = labels
            .get(item)
            .copied()
            .flatten()
            .map(|c| class_names[c as usize].as_str());
        stats.add_classification(item_votes, label);
    }
    stats.quality(project, consensus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_sums_merge_to_the_whole() {
        type Item<'a> = (Vec<(&'a str, &'a str)>, Option<&'a str>);
        let items: Vec<Item<'_>> = (0..30)
            .map(|i| {
                let votes = vec![
                    ("a", if i % 3 == 0 { "x" } else { "y" }),
                    ("b", "y"),
                    ("c", if i % 5 == 0 { "z" } else { "y" }),
                ];
                (votes, Some("y"))
            })
            .collect();
        let mut whole = ProjectStats::new(CLASSIFICATION);
        let mut left = ProjectStats::new(CLASSIFICATION);
        let mut right = ProjectStats::new(CLASSIFICATION);
        for (i, (votes, c)) in items.iter().enumerate() {
            whole.add_classification(votes, *c);
            if i < 11 {
                left.add_classification(votes, *c);
            } else {
                right.add_classification(votes, *c);
            }
        }
        left.merge(&right);
        assert_eq!(left.annotators, whole.annotators);
        let (l, w) = (
            left.quality("p", "majority"),
            whole.quality("p", "majority"),
        );
        assert_eq!(l.labels, w.labels);
        assert!((l.krippendorff_alpha.unwrap() - w.krippendorff_alpha.unwrap()).abs() < 1e-12);
        assert_eq!(w.annotators[1].agreement_with_consensus, Some(1.0));
    }

    #[test]
    fn box_annotators_are_scored_on_precision_and_recall() {
        let mut s = ProjectStats::new(BBOX);
        // Three annotators; "good" finds both objects, "spam" only draws a
        // box no one else saw.
        for _ in 0..10 {
            s.add_boxes(
                &["good", "ok", "spam"],
                &[
                    ("car", vec!["good", "ok"], true),
                    ("car", vec!["good"], false),
                    ("pedestrian", vec!["good", "ok"], true),
                    ("car", vec!["spam"], false),
                ],
            );
        }
        let q = s.quality("p", "iou_fusion");
        let by: BTreeMap<&str, &AnnotatorQuality> = q
            .annotators
            .iter()
            .map(|a| (a.annotator.as_str(), a))
            .collect();
        assert_eq!(by["good"].recall, Some(1.0));
        assert!(!by["good"].spammer && !by["ok"].spammer);
        assert!(by["spam"].spammer, "{:?}", by["spam"]);
        assert_eq!(q.labelled_items, 10);
        assert_eq!(q.labels[0].items, 10);
    }
}
