//! Simulated votes with a known truth, for the statistics' tests.

use super::{Vote, Votes};

/// A small deterministic generator for test data (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// Items with a true class each, labelled by `per_item` annotators
/// drawn at random; annotator `a` answers the truth with probability
/// `accuracy[a]` and else a uniformly random other class, or, if
/// `accuracy[a]` is `None`, a uniformly random class (a spammer).
pub(crate) fn simulate(
    seed: u64,
    items: usize,
    classes: usize,
    accuracy: &[Option<f64>],
    per_item: usize,
) -> (Votes, Vec<u32>) {
    let mut rng = Rng(seed);
    let mut votes = Vec::new();
    let mut truth = Vec::new();
    for item in 0..items {
        let t = rng.below(classes as u64) as u32;
        truth.push(t);
        let mut chosen: Vec<u32> = Vec::new();
        while chosen.len() < per_item {
            let a = rng.below(accuracy.len() as u64) as u32;
            if !chosen.contains(&a) {
                chosen.push(a);
            }
        }
        for a in chosen {
            let class = match accuracy[a as usize] {
                None => rng.below(classes as u64) as u32,
                Some(p) if rng.chance(p) => t,
                Some(_) => {
                    let other = rng.below(classes as u64 - 1) as u32;
                    if other >= t { other + 1 } else { other }
                }
            };
            votes.push(Vote {
                item: item as u32,
                annotator: a,
                class,
            });
        }
    }
    let votes = Votes {
        items,
        annotators: accuracy.len(),
        classes,
        votes,
    };
    (votes, truth)
}
