//! The simulated network between coordinators: seeded delay (hence
//! reordering), drops, duplicates, and partitions.
//!
//! A partition is a set of blocked directed links, so symmetric splits,
//! one-way cuts and bridges (two sides that each reach one middle node) are
//! all the same thing. A message is dropped if its link is blocked when it
//! is sent or when it would arrive.

use std::collections::BTreeSet;

use crate::rng::Rng;

/// How the network misbehaves when no partition is in force.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Shortest one-way delay.
    pub delay_min_ms: u64,
    /// Longest ordinary one-way delay (exclusive).
    pub delay_max_ms: u64,
    /// Messages out of 1000 that take a long detour (reordering past many
    /// later ones).
    pub slow_per_mille: u64,
    /// Longest detour.
    pub slow_max_ms: u64,
    /// Messages out of 1000 that are lost.
    pub drop_per_mille: u64,
    /// Messages out of 1000 that arrive twice.
    pub dup_per_mille: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            delay_min_ms: 1,
            delay_max_ms: 15,
            slow_per_mille: 20,
            slow_max_ms: 400,
            drop_per_mille: 20,
            dup_per_mille: 10,
        }
    }
}

/// A shape of partition, for the fault counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    /// Two sides that cannot reach each other.
    Split,
    /// One node cannot send to another (it still hears from it).
    OneWay,
    /// Two sides that each reach only a middle node.
    Bridge,
}

/// The network's state.
#[derive(Debug)]
pub struct Network {
    /// Its misbehaviour.
    pub config: NetConfig,
    /// Directed links (from, to) that drop everything.
    blocked: BTreeSet<(u64, u64)>,
    /// Messages dropped so far (by chance or by a partition).
    pub dropped: u64,
    /// Messages duplicated so far.
    pub duplicated: u64,
}

impl Network {
    /// A network with no partition.
    pub fn new(config: NetConfig) -> Self {
        Self {
            config,
            blocked: BTreeSet::new(),
            dropped: 0,
            duplicated: 0,
        }
    }

    /// Whether `from` can reach `to` now.
    pub fn link_up(&self, from: u64, to: u64) -> bool {
        !self.blocked.contains(&(from, to))
    }

    /// Whether any link is blocked.
    pub fn partitioned(&self) -> bool {
        !self.blocked.is_empty()
    }

    /// When the copies of one message arrive, as delays from now: none
    /// when it is lost, two when it is duplicated.
    pub fn route(&mut self, rng: &mut Rng, from: u64, to: u64) -> Vec<u64> {
        if !self.link_up(from, to) || rng.per_mille(self.config.drop_per_mille) {
            self.dropped += 1;
            return Vec::new();
        }
        let mut delays = vec![self.delay(rng)];
        if rng.per_mille(self.config.dup_per_mille) {
            self.duplicated += 1;
            delays.push(self.delay(rng));
        }
        delays
    }

    /// One delay draw.
    pub fn delay(&self, rng: &mut Rng) -> u64 {
        if rng.per_mille(self.config.slow_per_mille) {
            rng.range(self.config.delay_max_ms, self.config.slow_max_ms.max(2))
        } else {
            rng.range(self.config.delay_min_ms, self.config.delay_max_ms)
        }
    }

    /// Blocks a partition of `nodes` of the given kind; returns a
    /// description.
    pub fn partition(&mut self, rng: &mut Rng, nodes: &[u64], kind: PartitionKind) -> String {
        let mut shuffled = nodes.to_vec();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.index(i + 1));
        }
        match kind {
            PartitionKind::Split => {
                let cut = 1 + rng.index(shuffled.len().saturating_sub(1).max(1));
                let (a, b) = shuffled.split_at(cut);
                self.block_between(a, b);
                format!("split {a:?} | {b:?}")
            }
            PartitionKind::OneWay => {
                let (from, to) = (shuffled[0], shuffled[1 % shuffled.len()]);
                self.blocked.insert((from, to));
                format!("one-way {from} -/-> {to}")
            }
            PartitionKind::Bridge => {
                let middle = shuffled[0];
                let rest = &shuffled[1..];
                let (a, b) = rest.split_at(rest.len() / 2);
                self.block_between(a, b);
                format!("bridge {a:?} <-> {middle} <-> {b:?}")
            }
        }
    }

    /// Isolates one node from all others, both ways.
    pub fn isolate(&mut self, node: u64, nodes: &[u64]) {
        let others: Vec<u64> = nodes.iter().copied().filter(|n| *n != node).collect();
        self.block_between(&[node], &others);
    }

    fn block_between(&mut self, a: &[u64], b: &[u64]) {
        for x in a {
            for y in b {
                self.blocked.insert((*x, *y));
                self.blocked.insert((*y, *x));
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_blocks_both_ways_and_a_heal_restores() {
        let mut net = Network::new(NetConfig::default());
        let mut rng = Rng::new(3);
        net.partition(&mut rng, &[1, 2, 3], PartitionKind::Split);
        let blocked = [1, 2, 3]
            .iter()
            .flat_map(|a| [1, 2, 3].map(move |b| (*a, b)))
            .filter(|(a, b)| a != b && !net.link_up(*a, *b))
            .count();
        assert!(blocked == 4, "one node cut from two, both ways: {blocked}");
        net.heal();
        assert!(net.link_up(1, 2) && !net.partitioned());
    }

    #[test]
    fn a_bridge_keeps_the_middle_connected() {
        let mut net = Network::new(NetConfig::default());
        let mut rng = Rng::new(9);
        let what = net.partition(&mut rng, &[1, 2, 3, 4, 5], PartitionKind::Bridge);
        let middle: u64 = what
            .split("<-> ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .expect("middle node in the description");
        for n in [1, 2, 3, 4, 5] {
            assert!(net.link_up(middle, n) && net.link_up(n, middle));
        }
    }
}
