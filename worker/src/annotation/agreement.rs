//! Inter-annotator agreement: Krippendorff's alpha for nominal data and
//! Fleiss' kappa. Both are computed from per-item class counts, so an item
//! may have any number of votes; items with fewer than two votes carry no
//! information about agreement and are left out, as both definitions do.

/// Krippendorff's alpha (nominal), from per-item class counts: 1 is
/// perfect agreement, 0 agreement at chance, below 0 systematic
/// disagreement. `None` when no item has two votes or every vote is one
/// class (expected disagreement 0: alpha is undefined).
///
/// With `o` the coincidence matrix (each ordered pair of votes on an item
/// with `m` votes adds `1 / (m - 1)`), `n_c` its marginals and `n` their
/// sum: `alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k`.
pub fn krippendorff_alpha_nominal(counts: &[Vec<u32>]) -> Option<f64> {
    let classes = counts.iter().map(Vec::len).max().unwrap_or(0);
    let mut marginals = vec![0f64; classes];
    let mut observed_disagreement = 0f64;
    for item in counts {
        let m: u32 = item.iter().sum();
        if m < 2 {
            continue;
        }
        let m = f64::from(m);
        for (c, &n) in item.iter().enumerate() {
            let n = f64::from(n);
            marginals[c] += n;
            // Pairs of votes on this item in different classes.
            observed_disagreement += n * (m - n) / (m - 1.0);
        }
    }
    let total: f64 = marginals.iter().sum();
    let squares: f64 = marginals.iter().map(|n| n * n).sum();
    let expected_pairs = total * total - squares;
    if total < 2.0 || expected_pairs <= 0.0 {
        return None;
    }
    Some(1.0 - (total - 1.0) * observed_disagreement / expected_pairs)
}

/// Fleiss' kappa, from per-item class counts. Fleiss defined it for a
/// fixed number of raters per item; this is the usual generalisation that
/// weighs each item's agreement `P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1))`
/// equally and pools the class proportions over all votes. `None` when no
/// item has two votes or chance agreement is 1 (one class only).
pub fn fleiss_kappa(counts: &[Vec<u32>]) -> Option<f64> {
    let classes = counts.iter().map(Vec::len).max().unwrap_or(0);
    let mut proportions = vec![0f64; classes];
    let mut agreement_sum = 0f64;
    let mut rated = 0usize;
    for item in counts {
        let n: u32 = item.iter().sum();
        if n < 2 {
            continue;
        }
        let n = f64::from(n);
        let squares: f64 = item.iter().map(|&c| f64::from(c) * f64::from(c)).sum();
        agreement_sum += (squares - n) / (n * (n - 1.0));
        rated += 1;
        for (c, &k) in item.iter().enumerate() {
            proportions[c] += f64::from(k);
        }
    }
    let total: f64 = proportions.iter().sum();
    if rated == 0 || total == 0.0 {
        return None;
    }
    let observed = agreement_sum / rated as f64;
    let chance: f64 = proportions.iter().map(|p| (p / total).powi(2)).sum();
    if chance >= 1.0 {
        return None;
    }
    Some((observed - chance) / (1.0 - chance))
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
    fn systematic_disagreement_is_negative() {
        // Two coders who always disagree.
        let counts = vec![vec![1, 1]; 6];
        assert!(krippendorff_alpha_nominal(&counts).unwrap() < 0.0);
        assert!(fleiss_kappa(&counts).unwrap() < 0.0);
    }
}
