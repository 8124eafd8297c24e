//! Counts the pair stages keep, which add up across tasks into the
//! report.

use serde::{Deserialize, Serialize};

/// Each task's counts.
pub const STATS_JSON: &str = "stats.json";

/// Buckets of the similarity histogram, each 0.05 wide.
pub const SIMILARITY_BUCKETS: usize = 20;

/// What the candidates and verify stages counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairStats {
    /// Groups of two or more documents with one exact key.
    pub exact_groups: u64,
    /// Pairs those groups gave (each document joined to the group's first).
    pub exact_pairs: u64,
    /// LSH buckets holding two or more documents.
    pub shared_buckets: u64,
    /// Buckets larger than `maxBucketSize`, which were sampled.
    pub hot_buckets: u64,
    /// Documents of hot buckets compared only with the bucket's first
    /// sampled document.
    pub hot_bucket_docs: u64,
    /// Distinct candidate pairs, exact ones left out.
    pub candidate_pairs: u64,
    /// Candidate pairs whose similarity was computed.
    pub verified_pairs: u64,
    /// Of those, the pairs at or above the threshold.
    pub similar_pairs: u64,
    /// Verified pairs by similarity, `[0, 0.05)` to `[0.95, 1]`.
    pub similarity: Vec<u64>,
}

impl PairStats {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &PairStats) {
        self.exact_groups += other.exact_groups;
        self.exact_pairs += other.exact_pairs;
        self.shared_buckets += other.shared_buckets;
        self.hot_buckets += other.hot_buckets;
        self.hot_bucket_docs += other.hot_bucket_docs;
        self.candidate_pairs += other.candidate_pairs;
        self.verified_pairs += other.verified_pairs;
        self.similar_pairs += other.similar_pairs;
        if self.similarity.len() < other.similarity.len() {
            self.similarity.resize(other.similarity.len(), 0);
        }
        for (a, b) in self.similarity.iter_mut().zip(&other.similarity) {
            *a += b;
        }
    }

    /// Counts a verified similarity.
    pub fn count_similarity(&mut self, s: f64) {
        if self.similarity.len() < SIMILARITY_BUCKETS {
            self.similarity.resize(SIMILARITY_BUCKETS, 0);
        }
        let b = ((s * SIMILARITY_BUCKETS as f64) as usize).min(SIMILARITY_BUCKETS - 1);
        self.similarity[b] += 1;
    }
}
