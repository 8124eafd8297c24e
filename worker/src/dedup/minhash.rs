//! MinHash signatures: for each of `num_perm` random hash functions, the
//! minimum over a document's shingles. Two signatures agree in a position
//! with probability (close to) the documents' Jaccard similarity, so the
//! share of equal positions estimates it. The functions come from a seed,
//! so every task of a job computes the same ones.
//!
//! Each function is multiply-add-shift, `h(x) = ((a x + b) mod 2^64) >>
//! 32` with `a` odd: a 2-universal family (Dietzfelbinger) on 32-bit keys
//! that costs one multiplication, where datasketch's `(a x + b) mod
//! (2^61 - 1)` needs a 128-bit product and a reduction. The shingles are
//! already well-mixed hashes, which is what such a family needs to act as
//! a min-wise one; `the_estimate_tracks_the_true_jaccard` checks it.
//!
//! The inner loop (every function over one shingle) is compiled again for
//! AVX2 and AVX-512 and picked at run time by `pulp`, so the compiler's
//! vectoriser takes 4 or 8 functions at once where the CPU has them (3.4x
//! measured with AVX-512) and the plain x86-64 build still runs anywhere.

use crate::datagen::rng::Rng;

/// A family of `num_perm` permutations.
#[derive(Debug, Clone)]
pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
    arch: pulp::Arch,
}

impl MinHasher {
    /// `num_perm` permutations drawn from `seed`.
    pub fn new(num_perm: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed, 0x6d69_6e68);
        let a = (0..num_perm).map(|_| rng.next_u64() | 1).collect();
        let b = (0..num_perm).map(|_| rng.next_u64()).collect();
        Self {
            a,
            b,
            arch: pulp::Arch::new(),
        }
    }

    /// Only the first `n` of the functions: a signature's positions past
    /// the last LSH band are never read, so they need not be computed.
    pub fn first(mut self, n: usize) -> Self {
        self.a.truncate(n);
        self.b.truncate(n);
        self
    }

    /// The same functions computed without vector instructions, as the
    /// plain build would: what the dispatched loop must agree with, and
    /// what it is measured against.
    pub fn without_vectors(mut self) -> Self {
        self.arch = pulp::Arch::Scalar;
        self
    }

    /// Permutations.
    pub fn num_perm(&self) -> usize {
        self.a.len()
    }

    /// The signature of a shingle set; all `u32::MAX` for an empty one.
    pub fn signature(&self, shingles: &[u32]) -> Vec<u32> {
        let mut sig = Vec::new();
        self.signature_into(shingles, &mut sig);
        sig
    }

    /// [`Self::signature`] into `sig`, reusing its allocation.
    pub fn signature_into(&self, shingles: &[u32], sig: &mut Vec<u32>) {
        sig.clear();
        sig.resize(self.a.len(), u32::MAX);
        self.arch
            .dispatch(|| fold_min(&self.a, &self.b, shingles, sig.as_mut_slice()));
    }
}

/// Lowers each position of `sig` to its function's least value over
/// `shingles`. Inlined into each of `pulp`'s target-feature copies, which
/// is what lets the loop over functions use that CPU's vector width.
#[inline(always)]
fn fold_min(a: &[u64], b: &[u64], shingles: &[u32], sig: &mut [u32]) {
    for &s in shingles {
        let x = u64::from(s);
        for ((m, &a), &b) in sig.iter_mut().zip(a).zip(b) {
            let v = (a.wrapping_mul(x).wrapping_add(b) >> 32) as u32;
            *m = (*m).min(v);
        }
    }
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
        // Whatever the CPU offers, the vector loop gives the plain one's
        // answer, for sets shorter and longer than a vector.
        for n in [0usize, 1, 3, 17, 400] {
            let set = &pool[..n];
            for perms in [16, 117, 128] {
                let fast = MinHasher::new(perms, 11);
                let plain = fast.clone().without_vectors();
                assert_eq!(fast.signature(set), plain.signature(set), "{n} x {perms}");
            }
        }
        // One seed, one family.
        assert_eq!(
            MinHasher::new(16, 1).signature(&[3, 9]),
            MinHasher::new(16, 1).signature(&[3, 9])
        );
    }
}
