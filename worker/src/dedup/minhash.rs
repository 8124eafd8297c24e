//! MinHash signatures: for each of `num_perm` random hash permutations
//! `h(x) = (a x + b) mod (2^61 - 1)`, truncated to 32 bits as datasketch
//! does, the minimum over a document's shingles. Two signatures agree in a
//! position with probability equal to the documents' Jaccard similarity, so
//! the share of equal positions estimates it. The permutations come from a
//! seed, so every task of a job computes the same ones.

use crate::datagen::rng::Rng;

/// The Mersenne prime 2^61 - 1.
const PRIME: u64 = (1 << 61) - 1;

/// A family of `num_perm` permutations.
#[derive(Debug, Clone)]
pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
}

impl MinHasher {
    /// `num_perm` permutations drawn from `seed`.
    pub fn new(num_perm: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed, 0x6d69_6e68);
        let a = (0..num_perm).map(|_| 1 + rng.below(PRIME - 1)).collect();
        let b = (0..num_perm).map(|_| rng.below(PRIME)).collect();
        Self { a, b }
    }

    /// Permutations.
    pub fn num_perm(&self) -> usize {
        self.a.len()
    }

    /// The signature of a shingle set; all `u32::MAX` for an empty one.
    pub fn signature(&self, shingles: &[u32]) -> Vec<u32> {
        let mut sig = vec![u32::MAX; self.a.len()];
        for &s in shingles {
            let x = u64::from(s);
            for ((m, &a), &b) in sig.iter_mut().zip(&self.a).zip(&self.b) {
                let v =
                    (mod_prime(u128::from(a) * u128::from(x) + u128::from(b)) & 0xffff_ffff) as u32;
                if v < *m {
                    *m = v;
                }
            }
        }
        sig
    }
}

/// `x mod (2^61 - 1)` without a division.
fn mod_prime(x: u128) -> u64 {
    let folded = (x & u128::from(PRIME)) + (x >> 61);
    let folded = (folded & u128::from(PRIME)) + (folded >> 61);
    let v = folded as u64;
    if v >= PRIME { v - PRIME } else { v }
}

/// The share of positions where two signatures agree: the Jaccard
/// estimate.
pub fn estimate(a: &[u32], b: &[u32]) -> f64 {
    if a.is_empty() || a.len() != b.len() {
        return 0.0;
    }
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::shingle::jaccard;

    #[test]
    fn modular_reduction_is_exact() {
        for x in [
            0u128,
            1,
            u128::from(PRIME),
            u128::from(PRIME) + 5,
            u128::MAX >> 3,
        ] {
            assert_eq!(u128::from(mod_prime(x)), x % u128::from(PRIME), "{x}");
        }
    }

    #[test]
    fn the_estimate_tracks_the_true_jaccard() {
        // Shingles are hashes, so the sets are of random values.
        let mut rng = Rng::new(3, 0);
        let pool: Vec<u32> = (0..400).map(|_| rng.next_u64() as u32).collect();
        let h = MinHasher::new(256, 7);
        for overlap in [0usize, 50, 100, 150, 200] {
            let mut a: Vec<u32> = pool[..200].to_vec();
            let mut b: Vec<u32> = pool[200 - overlap..400 - overlap].to_vec();
            a.sort_unstable();
            b.sort_unstable();
            let truth = jaccard(&a, &b);
            let est = estimate(&h.signature(&a), &h.signature(&b));
            assert!(
                (est - truth).abs() < 0.08,
                "overlap {overlap}: {est} vs {truth}"
            );
        }
        // One seed, one family.
        assert_eq!(
            MinHasher::new(16, 1).signature(&[3, 9]),
            MinHasher::new(16, 1).signature(&[3, 9])
        );
    }
}
