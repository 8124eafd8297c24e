//! Consensus labels from several annotators' votes: majority vote, and
//! Dawid-Skene, which learns each annotator's confusion matrix by
//! expectation-maximisation and so discounts careless annotators and
//! spammers instead of letting them outvote careful ones.

use super::{Vote, Votes};

/// Most iterations Dawid-Skene runs before it stops.
pub const DAWID_SKENE_ITERATIONS_MAX: usize = 100;

/// It stops earlier once no item's posterior moves more than this.
const CONVERGED_DELTA: f64 = 1e-6;

/// Pseudo-count added to every confusion cell and class prior, so a class
/// an annotator never used does not become impossible (a zero would veto
/// it for every item they labelled).
const SMOOTHING: f64 = 0.01;

/// Per item, the class with most votes (ties go to the smaller class
/// index, so the result is deterministic), or `None` without votes.
pub fn majority(votes: &Votes) -> Vec<Option<u32>> {
    votes
        .class_counts()
        .into_iter()
        .map(|counts| {
            let (best, n) = counts
                .iter()
                .enumerate()
                .fold(
                    (0usize, 0u32),
                    |(bc, bn), (c, &n)| {
                        if n > bn { (c, n) } else { (bc, bn) }
                    },
                );
            (n > 0).then_some(best as u32)
        })
        .collect()
}

/// What Dawid-Skene learnt.
#[derive(Debug, Clone, PartialEq)]
pub struct DawidSkene {
    /// Per item, the probability of each class.
    pub posteriors: Vec<Vec<f64>>,
    /// Per item, the most probable class, or `None` without votes.
    pub labels: Vec<Option<u32>>,
    /// Estimated share of each class.
    pub priors: Vec<f64>,
    /// Per annotator, `confusion[true class][given class]`: the
    /// probability of answering `given` when the truth is `true`.
    pub confusion: Vec<Vec<Vec<f64>>>,
    /// Iterations run.
    pub iterations: usize,
}

/// Dawid and Skene (1979): starts from the vote shares, then alternates
/// estimating priors and confusion matrices from the posteriors (M) and
/// posteriors from them (E), in log space, until the posteriors settle.
pub fn dawid_skene(votes: &Votes) -> DawidSkene {
    let k = votes.classes;
    let mut by_item: Vec<Vec<Vote>> = vec![Vec::new(); votes.items];
    for v in &votes.votes {
        by_item[v.item as usize].push(*v);
    }
    // Start from each item's vote shares.
    let mut posteriors: Vec<Vec<f64>> = votes
        .class_counts()
        .into_iter()
        .map(|counts| {
            let n: u32 = counts.iter().sum();
            if n == 0 {
                vec![1.0 / k as f64; k]
            } else {
                counts
                    .iter()
                    .map(|&c| f64::from(c) / f64::from(n))
                    .collect()
            }
        })
        .collect();
    let mut priors = vec![1.0 / k as f64; k];
    let mut confusion = vec![vec![vec![1.0 / k as f64; k]; k]; votes.annotators];
    let mut iterations = 0;
    while iterations < DAWID_SKENE_ITERATIONS_MAX {
        iterations += 1;
        // M: priors and confusion matrices from the posteriors.
        let mut prior_mass = vec![SMOOTHING; k];
        let mut mass = vec![vec![vec![SMOOTHING; k]; k]; votes.annotators];
        for (item, votes_on) in by_item.iter().enumerate() {
            if votes_on.is_empty() {
                continue;
            }
            for (t, p) in posteriors[item].iter().enumerate() {
                prior_mass[t] += p;
                for v in votes_on {
                    mass[v.annotator as usize][t][v.class as usize] += p;
                }
            }
        }
        let prior_total: f64 = prior_mass.iter().sum();
        priors = prior_mass.iter().map(|m| m / prior_total).collect();
        for (annotator, rows) in mass.iter().enumerate() {
            for (t, row) in rows.iter().enumerate() {
                let total: f64 = row.iter().sum();
                for (g, m) in row.iter().enumerate() {
                    confusion[annotator][t][g] = m / total;
                }
            }
        }
        // E: posteriors from the priors and confusion matrices.
        let log_priors: Vec<f64> = priors.iter().map(|p| p.ln()).collect();
        let log_confusion: Vec<Vec<Vec<f64>>> = confusion.iter().map(|m| logs(m)).collect();
        let mut delta = 0f64;
        for (item, votes_on) in by_item.iter().enumerate() {
            if votes_on.is_empty() {
                continue;
            }
            let p = posterior(&log_priors, votes_on, |a| log_confusion.get(a as usize));
            for (t, p) in p.into_iter().enumerate() {
                delta = delta.max((p - posteriors[item][t]).abs());
                posteriors[item][t] = p;
            }
        }
        if delta < CONVERGED_DELTA {
            break;
        }
    }
    let labels = by_item
        .iter()
        .zip(&posteriors)
        .map(|(votes_on, p)| (!votes_on.is_empty()).then(|| most_probable(p)))
        .collect();
    DawidSkene {
        posteriors,
        labels,
        priors,
        confusion,
        iterations,
    }
}

/// An item's class probabilities from the log class priors and the log
/// confusion matrices of its voters (logs taken once per matrix, not once
/// per vote); a voter `log_confusion` does not know is left out.
fn posterior<'a>(
    log_priors: &[f64],
    votes_on: &[Vote],
    log_confusion: impl Fn(u32) -> Option<&'a Vec<Vec<f64>>>,
) -> Vec<f64> {
    let mut log_p: Vec<f64> = log_priors.to_vec();
    for v in votes_on {
        let Some(matrix) = log_confusion(v.annotator) else {
            continue;
        };
        for (t, lp) in log_p.iter_mut().enumerate() {
            *lp += matrix[t][v.class as usize];
        }
    }
    let top = log_p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = log_p.iter().map(|lp| (lp - top).exp()).collect();
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| w / total).collect()
}

/// Element-wise natural logs of confusion matrices.
fn logs(matrix: &[Vec<f64>]) -> Vec<Vec<f64>> {
    matrix
        .iter()
        .map(|row| row.iter().map(|p| p.ln()).collect())
        .collect()
}

/// The most probable class (the first on a tie).
fn most_probable(p: &[f64]) -> u32 {
    p.iter()
        .enumerate()
        .fold((0usize, f64::NEG_INFINITY), |(bc, bp), (c, &q)| {
            if q > bp { (c, q) } else { (bc, bp) }
        })
        .0 as u32
}

/// Labels under a model Dawid-Skene learnt elsewhere (on a sample of the
/// project, so every shard judges annotators alike): one E step with the
/// given class `priors` and per-annotator `confusion` (`None` for an
/// annotator the model has not seen, whose votes are left out). Returns
/// each item's posteriors and label; an item none of whose voters the
/// model knows gets `None`.
pub fn classify_with(
    votes: &Votes,
    priors: &[f64],
    confusion: &[Option<Vec<Vec<f64>>>],
) -> (Vec<Vec<f64>>, Vec<Option<u32>>) {
    let mut by_item: Vec<Vec<Vote>> = vec![Vec::new(); votes.items];
    for v in &votes.votes {
        by_item[v.item as usize].push(*v);
    }
    let log_priors: Vec<f64> = priors.iter().map(|p| p.ln()).collect();
    let log_confusion: Vec<Option<Vec<Vec<f64>>>> = confusion
        .iter()
        .map(|m| m.as_ref().map(|m| logs(m)))
        .collect();
    let lookup = |a: u32| log_confusion.get(a as usize).and_then(Option::as_ref);
    by_item
        .iter()
        .map(|votes_on| {
            let p = posterior(&log_priors, votes_on, lookup);
            let known = votes_on.iter().any(|v| lookup(v.annotator).is_some());
            let label = known.then(|| most_probable(&p));
            (p, label)
        })
        .unzip()
}

/// How much an annotator's answers depend on the truth, from their
/// confusion matrix: 0 for a spammer, whose rows are all alike (the same
/// answer distribution whatever the truth), up to 1 for a perfect
/// annotator. This is Raykar and Yu's (2012) spammer score, half the mean
/// squared distance between rows: `1 / (K (K - 1)) * sum_{c < c'} sum_k
/// (a_ck - a_c'k)^2`. Rows are distributions, at most 2 apart, so a
/// perfect annotator (distinct unit rows) scores 1.
pub fn spammer_score(confusion: &[Vec<f64>]) -> f64 {
    let k = confusion.len();
    if k < 2 {
        return 0.0;
    }
    let mut sum = 0f64;
    for c in 0..k {
        for d in (c + 1)..k {
            sum += confusion[c]
                .iter()
                .zip(&confusion[d])
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>();
        }
    }
    // A perfect annotator's rows are distinct unit vectors: distance 2
    // for each of the K (K - 1) / 2 pairs.
    sum / (k * (k - 1)) as f64
}

/// Share of items whose label equals the truth, over items with a label.
pub fn accuracy(labels: &[Option<u32>], truth: &[u32]) -> f64 {
    let (right, labelled) = labels
        .iter()
        .zip(truth)
        .filter_map(|(l, t)| l.map(|l| l == *t))
        .fold((0usize, 0usize), |(r, n), ok| (r + usize::from(ok), n + 1));
    if labelled == 0 {
        0.0
    } else {
        right as f64 / labelled as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotation::testdata::simulate;

    #[test]
    fn majority_takes_the_most_votes_and_breaks_ties_low() {
        let votes = Votes {
            items: 3,
            annotators: 3,
            classes: 3,
            votes: vec![
                Vote {
                    item: 0,
                    annotator: 0,
                    class: 2,
                },
                Vote {
                    item: 0,
                    annotator: 1,
                    class: 2,
                },
                Vote {
                    item: 0,
                    annotator: 2,
                    class: 0,
                },
                Vote {
                    item: 1,
                    annotator: 0,
                    class: 1,
                },
                Vote {
                    item: 1,
                    annotator: 1,
                    class: 0,
                },
            ],
        };
        assert_eq!(votes.validate(), Ok(()));
        assert_eq!(majority(&votes), vec![Some(2), Some(0), None]);
    }

    #[test]
    fn a_model_learnt_on_a_sample_labels_the_rest_as_well_as_fitting_all() {
        let skill = [
            Some(0.85),
            Some(0.8),
            Some(0.7),
            Some(0.65),
            None,
            None,
            None,
        ];
        let (votes, truth) = simulate(5, 4000, 4, &skill, 4);
        let full = dawid_skene(&votes);
        // Fit on the first quarter of the items only.
        let sample = Votes {
            items: 1000,
            votes: votes
                .votes
                .iter()
                .filter(|v| v.item < 1000)
                .copied()
                .collect(),
            ..votes.clone()
        };
        let model = dawid_skene(&sample);
        let confusion: Vec<Option<Vec<Vec<f64>>>> =
            model.confusion.iter().cloned().map(Some).collect();
        let (_, labels) = classify_with(&votes, &model.priors, &confusion);
        let (full_acc, sampled_acc) = (accuracy(&full.labels, &truth), accuracy(&labels, &truth));
        assert!(
            (full_acc - sampled_acc).abs() < 0.02,
            "all {full_acc} vs sample {sampled_acc}"
        );
        // An annotator the model does not know is left out, not guessed.
        let mut unknown = confusion.clone();
        unknown[0] = None;
        let one = Votes {
            items: 1,
            annotators: 7,
            classes: 4,
            votes: vec![Vote {
                item: 0,
                annotator: 0,
                class: 2,
            }],
        };
        assert_eq!(classify_with(&one, &model.priors, &unknown).1, vec![None]);
    }

    #[test]
    fn dawid_skene_beats_majority_vote_when_spammers_label() {
        // 3 careful annotators (90%), 3 middling (65%), 4 spammers; each
        // item labelled by 5 of the 10.
        let skill = [
            Some(0.9),
            Some(0.9),
            Some(0.9),
            Some(0.65),
            Some(0.65),
            Some(0.65),
            None,
            None,
            None,
            None,
        ];
        let (votes, truth) = simulate(7, 3000, 4, &skill, 5);
        votes.validate().unwrap();
        let mv = accuracy(&majority(&votes), &truth);
        let ds = dawid_skene(&votes);
        let ds_accuracy = accuracy(&ds.labels, &truth);
        println!(
            "majority vote accuracy {mv:.4}, Dawid-Skene {ds_accuracy:.4} after {} iterations",
            ds.iterations
        );
        assert!(
            ds_accuracy > mv + 0.03,
            "majority {mv}, Dawid-Skene {ds_accuracy}"
        );
        // The spammers are found: their scores are far below the others'.
        let scores: Vec<f64> = ds.confusion.iter().map(|c| spammer_score(c)).collect();
        println!("spammer scores {scores:.3?}");
        let worst_honest = scores[..6].iter().copied().fold(f64::INFINITY, f64::min);
        let best_spammer = scores[6..].iter().copied().fold(0.0, f64::max);
        assert!(best_spammer < 0.05 && worst_honest > 0.2, "{scores:?}");
    }

    #[test]
    fn dawid_skene_agrees_with_unanimous_votes_and_leaves_unlabelled_items() {
        let votes = Votes {
            items: 2,
            annotators: 2,
            classes: 2,
            votes: vec![
                Vote {
                    item: 0,
                    annotator: 0,
                    class: 1,
                },
                Vote {
                    item: 0,
                    annotator: 1,
                    class: 1,
                },
            ],
        };
        let ds = dawid_skene(&votes);
        assert_eq!(ds.labels, vec![Some(1), None]);
        assert!(ds.posteriors[0][1] > 0.9);
    }

    #[test]
    fn spammer_scores_span_zero_to_one() {
        let perfect = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let spammer = vec![vec![0.5, 0.5], vec![0.5, 0.5]];
        assert!((spammer_score(&perfect) - 1.0).abs() < 1e-12);
        assert!(spammer_score(&spammer).abs() < 1e-12);
        // Always answering class 0 is spam too, however it looks.
        let constant = vec![vec![1.0, 0.0], vec![1.0, 0.0]];
        assert!(spammer_score(&constant).abs() < 1e-12);
    }
}
