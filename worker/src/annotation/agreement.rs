//! Inter-annotator agreement: Krippendorff's alpha for nominal data and
//! Fleiss' kappa. Both are computed from per-item class counts, so an item
//! may have any number of votes; items with fewer than two votes carry no
//! information about agreement and are left out, as both definitions do.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The sums both coefficients are computed from. They add up over items,
/// so shards of a project each keep their own and the merge adds them.
/// Items with fewer than two votes are left out: they carry no information
/// about agreement, and both definitions skip them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgreementSums {
    /// Votes per class over items with two votes or more (the
    /// coincidence matrix's marginals `n_c`).
    pub class_votes: BTreeMap<String, f64>,
    /// Sum over items of the pairs of votes in different classes, each
    /// item's pairs weighted `1 / (m - 1)`.
    pub observed_disagreement: f64,
    /// Sum over items of Fleiss' `P_i`.
    pub item_agreement: f64,
    /// Items with two votes or more.
    pub rated_items: u64,
}

impl AgreementSums {
    /// Adds one item's votes per class.
    pub fn add_item<'a>(&mut self, counts: impl IntoIterator<Item = (&'a str, u32)> + Clone) {
        let m: u32 = counts.clone().into_iter().map(|(_, n)| n).sum();
        if m < 2 {
            return;
        }
        let m = f64::from(m);
        let mut squares = 0f64;
        for (class, n) in counts {
            let n = f64::from(n);
            if n == 0.0 {
                continue;
            }
            *self.class_votes.entry(class.to_owned()).or_default() += n;
            self.observed_disagreement += n * (m - n) / (m - 1.0);
            squares += n * n;
        }
        self.item_agreement += (squares - m) / (m * (m - 1.0));
        self.rated_items += 1;
    }

    /// Adds another set of sums (another shard's).
    pub fn merge(&mut self, other: &AgreementSums) {
        for (class, n) in &other.class_votes {
            *self.class_votes.entry(class.clone()).or_default() += n;
        }
        self.observed_disagreement += other.observed_disagreement;
        self.item_agreement += other.item_agreement;
        self.rated_items += other.rated_items;
    }

    /// Krippendorff's alpha (nominal): 1 is perfect agreement, 0 agreement
    /// at chance, below 0 systematic disagreement. `None` when no item has
    /// two votes or every vote is one class (no expected disagreement).
    ///
    /// With `o` the coincidence matrix (each ordered pair of votes on an
    /// item with `m` votes adds `1 / (m - 1)`), `n_c` its marginals and `n`
    /// their sum: `alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k`.
    pub fn alpha(&self) -> Option<f64> {
        let total: f64 = self.class_votes.values().sum();
        let squares: f64 = self.class_votes.values().map(|n| n * n).sum();
        let expected_pairs = total * total - squares;
        if total < 2.0 || expected_pairs <= 0.0 {
            return None;
        }
        Some(1.0 - (total - 1.0) * self.observed_disagreement / expected_pairs)
    }

    /// Fleiss' kappa. Fleiss defined it for a fixed number of raters per
    /// item; this is the usual generalisation that weighs each item's
    /// agreement `P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1))` equally and
    /// pools the class proportions over all votes. `None` when no item has
    /// two votes or chance agreement is 1 (one class only).
    pub fn kappa(&self) -> Option<f64> {
        let total: f64 = self.class_votes.values().sum();
        if self.rated_items == 0 || total == 0.0 {
            return None;
        }
        let observed = self.item_agreement / self.rated_items as f64;
        let chance: f64 = self.class_votes.values().map(|p| (p / total).powi(2)).sum();
        if chance >= 1.0 {
            return None;
        }
        Some((observed - chance) / (1.0 - chance))
    }
}

/// The sums of per-item class counts (classes named by their index).
pub fn sums_of(counts: &[Vec<u32>]) -> AgreementSums {
    let names: Vec<String> = (0..counts.iter().map(Vec::len).max().unwrap_or(0))
        .map(|c| c.to_string())
        .collect();
    let mut sums = AgreementSums::default();
    for item in counts {
        sums.add_item(names.iter().map(String::as_str).zip(item.iter().copied()));
    }
    sums
}

/// Krippendorff's alpha (nominal) from per-item class counts; see
/// [`AgreementSums::alpha`].
pub fn krippendorff_alpha_nominal(counts: &[Vec<u32>]) -> Option<f64> {
    sums_of(counts).alpha()
}

/// Fleiss' kappa from per-item class counts; see [`AgreementSums::kappa`].
pub fn fleiss_kappa(counts: &[Vec<u32>]) -> Option<f64> {
    sums_of(counts).kappa()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    /// Per-unit counts of values 1..=5 from rows of coders' values, 0 for
    /// a missing value.
    fn counts_of(coders: &[[u32; 12]]) -> Vec<Vec<u32>> {
        (0..12)
            .map(|unit| {
                let mut c = vec![0u32; 5];
                for coder in coders {
                    if coder[unit] > 0 {
                        c[coder[unit] as usize - 1] += 1;
                    }
                }
                c
            })
            .collect()
    }

    #[test]
    fn krippendorff_alpha_matches_krippendorffs_worked_example() {
        // Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability",
        // example C: four observers, twelve units, missing values; the
        // nominal alpha given there is 0.743.
        let counts = counts_of(&[
            [1, 2, 3, 3, 2, 1, 4, 1, 2, 0, 0, 0],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, 0, 3],
            [0, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, 0],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, 0],
        ]);
        let alpha = krippendorff_alpha_nominal(&counts).unwrap();
        assert!(close(alpha, 0.743, 0.0005), "alpha {alpha}");
    }

    #[test]
    fn fleiss_kappa_matches_the_textbook_table() {
        // Fleiss (1971) style example as tabulated on the "Fleiss' kappa"
        // reference page: 10 subjects, 14 raters each, 5 categories;
        // P-bar 0.378, P-bar-e 0.213, kappa 0.210.
        let table: [[u32; 5]; 10] = [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ];
        let counts: Vec<Vec<u32>> = table.iter().map(|r| r.to_vec()).collect();
        let kappa = fleiss_kappa(&counts).unwrap();
        assert!(close(kappa, 0.210, 0.0005), "kappa {kappa}");
    }

    #[test]
    fn perfect_and_undefined_agreement() {
        let perfect = vec![vec![3, 0], vec![0, 3], vec![2, 0]];
        assert!(close(
            krippendorff_alpha_nominal(&perfect).unwrap(),
            1.0,
            1e-12
        ));
        assert!(close(fleiss_kappa(&perfect).unwrap(), 1.0, 1e-12));
        // One class only: chance agreement is perfect, so both are undefined.
        let one_class = vec![vec![3, 0], vec![2, 0]];
        assert_eq!(krippendorff_alpha_nominal(&one_class), None);
        assert_eq!(fleiss_kappa(&one_class), None);
        // Single votes say nothing about agreement.
        assert_eq!(krippendorff_alpha_nominal(&[vec![1, 0], vec![0, 1]]), None);
        assert_eq!(fleiss_kappa(&[]), None);
    }

    #[test]
    fn sums_of_shards_add_up_to_the_sums_of_the_whole() {
        let items: Vec<Vec<u32>> = (0..40u32)
            .map(|i| vec![i % 3, (i * 7) % 4, (i * 5) % 2 + 1])
            .collect();
        let whole = sums_of(&items);
        let mut parts = sums_of(&items[..13]);
        parts.merge(&sums_of(&items[13..]));
        assert!(close(parts.alpha().unwrap(), whole.alpha().unwrap(), 1e-12));
        assert!(close(parts.kappa().unwrap(), whole.kappa().unwrap(), 1e-12));
    }

    #[test]
    fn systematic_disagreement_is_negative() {
        // Two coders who always disagree.
        let counts = vec![vec![1, 1]; 6];
        assert!(krippendorff_alpha_nominal(&counts).unwrap() < 0.0);
        assert!(fleiss_kappa(&counts).unwrap() < 0.0);
    }
}
