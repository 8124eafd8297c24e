//! The cluster's time: what the leader stamps into the entries it proposes,
//! and so the only clock the state machine knows (backoff, task timeouts,
//! schedules, retention).
//!
//! A node's wall clock may be wrong by an hour. Stamping the leader's own
//! clock would let one such node drag the replicated time an hour ahead,
//! where `max()` then freezes it (timeouts fire at once, then backoff and
//! schedules stall). So the leader stamps what a majority of the voters'
//! clocks agree on: every batch of Raft messages carries its sender's wall
//! clock, each reading is projected forward on the leader's monotonic
//! clock, and the median of the largest group of readings within
//! [`AGREEMENT_MS`] of each other is used when that group is a majority.
//! Without such a majority the time runs on from the last stamp (or the
//! last applied entry) by the monotonic clock, which a wrong wall clock
//! cannot move. The stamp never goes back.
//!
//! **Documented bound:** while a majority of the voters' wall clocks are
//! within `E` of true time, the stamped time is within `E` plus one message
//! delay of it, whatever the other clocks say; durations measured in it
//! (backoff, timeouts) are off by no more than that. Lease expiry does not
//! use it at all (see `lease_timers`).

use std::collections::BTreeMap;

use crate::clock::Now;

/// Readings within this much of each other agree.
pub const AGREEMENT_MS: i64 = 2_000;

/// A peer's reading older than this no longer counts.
pub const READING_FRESH_MS: u64 = 10_000;

/// One peer's wall clock, as its last batch of messages carried it.
#[derive(Debug, Clone, Copy)]
struct Reading {
    /// Its wall clock minus our monotonic clock when the reading arrived.
    offset_ms: i64,
    /// When it arrived, on our monotonic clock.
    at_mono_ms: u64,
}

/// The cluster's time as this node would stamp it.
#[derive(Debug, Clone, Default)]
pub struct ClusterClock {
    /// The latest reading of each peer.
    readings: BTreeMap<u64, Reading>,
    /// The latest cluster time known here (stamped or applied) and the
    /// monotonic time it was known at: what the time runs on from.
    last: Option<(i64, u64)>,
}

impl ClusterClock {
    /// Records that `peer`'s wall clock read `wall_ms` when it sent what
    /// arrived now.
    pub fn observe(&mut self, peer: u64, wall_ms: i64, now: Now) {
        self.readings.insert(
            peer,
            Reading {
                offset_ms: wall_ms.saturating_sub(now.mono_ms as i64),
                at_mono_ms: now.mono_ms,
            },
        );
    }

    /// Records the time of an applied entry, so a node that becomes leader
    /// runs on from the replicated time rather than from its own clock.
    pub fn applied(&mut self, entry_ms: i64, mono_ms: u64) {
        let newer = self
            .last
            .is_none_or(|(ms, at)| entry_ms > ms + mono_ms.saturating_sub(at) as i64);
        if newer {
            self.last = Some((entry_ms, mono_ms));
        }
    }

    /// The time to stamp into an entry proposed now by node `me` with these
    /// `voters`, never before `floor_ms` (the replicated time).
    pub fn stamp(&mut self, me: u64, voters: &[u64], floor_ms: i64, now: Now) -> i64 {
        let mut walls: Vec<i64> = voters
            .iter()
            .filter_map(|&v| {
                if v == me {
                    return Some(now.wall_ms);
                }
                let r = self.readings.get(&v)?;
                (now.mono_ms.saturating_sub(r.at_mono_ms) <= READING_FRESH_MS)
                    .then(|| r.offset_ms.saturating_add(now.mono_ms as i64))
            })
            .collect();
        let quorum = voters.len() / 2 + 1;
        let agreed = agreed_time(&mut walls, quorum);
        let run_on = self
            .last
            .map(|(ms, at)| ms.saturating_add(now.mono_ms.saturating_sub(at) as i64));
        // A node that has neither (the first entry of a new cluster) has
        // only its own clock.
        let t = agreed.or(run_on).unwrap_or(now.wall_ms).max(floor_ms);
        self.last = Some((t, now.mono_ms));
        t
    }
}

/// The median of the largest group of `walls` within [`AGREEMENT_MS`] of
/// each other, if that group has at least `quorum` members.
fn agreed_time(walls: &mut [i64], quorum: usize) -> Option<i64> {
    walls.sort_unstable();
    let mut best: Option<(usize, usize)> = None;
    for start in 0..walls.len() {
        let end = walls[start..]
            .iter()
            .take_while(|&&w| w - walls[start] <= AGREEMENT_MS)
            .count()
            + start;
        if best.is_none_or(|(s, e)| end - start > e - s) {
            best = Some((start, end));
        }
    }
    let (start, end) = best?;
    (end - start >= quorum).then(|| walls[start + (end - start - 1) / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const T: i64 = 1_800_000_000_000;

    fn at(mono_ms: u64, wall_ms: i64) -> Now {
        Now { mono_ms, wall_ms }
    }

    #[test]
    fn one_fast_leader_stamps_the_time_the_others_agree_on() {
        let mut clock = ClusterClock::default();
        // Peers 2 and 3 are right; this node (1) is an hour fast.
        clock.observe(2, T, at(1_000, T + HOUR));
        clock.observe(3, T + 5, at(1_000, T + HOUR));
        let stamped = clock.stamp(1, &[1, 2, 3], 0, at(1_500, T + HOUR + 500));
        assert!((stamped - (T + 500)).abs() <= 10, "{}", stamped - T);
    }

    #[test]
    fn one_slow_follower_does_not_hold_time_back() {
        let mut clock = ClusterClock::default();
        clock.observe(2, T - HOUR, at(0, T));
        clock.observe(3, T, at(0, T));
        assert_eq!(clock.stamp(1, &[1, 2, 3], 0, at(100, T + 100)), T + 100);
    }

    #[test]
    fn without_an_agreeing_majority_time_runs_on_by_the_monotonic_clock() {
        let mut clock = ClusterClock::default();
        clock.applied(T, 0);
        // Only one peer has been heard, and it disagrees with this node by
        // an hour: nothing is a majority, so the applied time runs on.
        clock.observe(2, T - HOUR, at(0, T + HOUR));
        assert_eq!(
            clock.stamp(1, &[1, 2, 3], 0, at(2_000, T + HOUR)),
            T + 2_000
        );
        // Readings go stale: the same holds with none at all.
        assert_eq!(
            clock.stamp(1, &[1, 2, 3], 0, at(60_000, T + HOUR + 58_000)),
            T + 60_000
        );
    }

    #[test]
    fn the_stamp_never_goes_back_nor_below_the_replicated_time() {
        let mut clock = ClusterClock::default();
        assert_eq!(clock.stamp(1, &[1], T + 10, at(0, T)), T + 10);
        // A single voter's own clock is the majority.
        assert_eq!(clock.stamp(1, &[1], 0, at(50, T + 50)), T + 50);
        clock.observe(2, T, at(100, T));
        clock.observe(3, T, at(100, T));
        // Everyone now reads earlier than already stamped: hold, not back.
        assert!(clock.stamp(1, &[1, 2, 3], T + 50, at(100, T)) >= T + 50);
    }

    #[test]
    fn the_largest_agreeing_group_wins_and_must_be_a_majority() {
        assert_eq!(agreed_time(&mut [5, HOUR, 7, 6, -HOUR], 3), Some(6));
        assert_eq!(agreed_time(&mut [0, HOUR], 2), None);
        assert_eq!(agreed_time(&mut [], 1), None);
        assert_eq!(agreed_time(&mut [42], 1), Some(42));
    }
}
