//! How far a worker leases ahead of its free slots.
//!
//! A slot that frees while the next lease call is on the wire sits idle for
//! that round trip, and for short tasks the round trip is most of a slot's
//! time. Leasing ahead covers it: by Little's law, the tasks that would be
//! started during one round trip are `slots × round trip / task time`. For
//! long tasks that is below one, so nothing is held that another worker
//! could run now; for short ones it is capped, so a worker never hoards
//! more than `max` tasks whose leases tick while they wait.

use std::time::Duration;

/// Weight of a new sample in the moving averages.
const SMOOTHING: f64 = 0.2;

/// The lease-ahead depth, from moving averages of how long attempts run
/// and how long a lease call that granted tasks took.
#[derive(Debug, Clone)]
pub struct Prefetch {
    /// Most tasks leased beyond the slots.
    max: usize,
    /// Average attempt run time, in milliseconds.
    run_ms: Option<f64>,
    /// Average round trip of a lease call that granted tasks.
    round_trip_ms: Option<f64>,
}

impl Prefetch {
    /// No lease-ahead until both averages have a sample; never more than
    /// `max`.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            run_ms: None,
            round_trip_ms: None,
        }
    }

    /// Records how long one attempt ran.
    pub fn attempt_ran(&mut self, elapsed: Duration) {
        average(&mut self.run_ms, elapsed);
    }

    /// Records the round trip of a lease call that granted tasks (one that
    /// came back empty mostly waited, and says nothing about the trip).
    pub fn lease_answered(&mut self, elapsed: Duration) {
        average(&mut self.round_trip_ms, elapsed);
    }

    /// Tasks to hold beyond `slots`.
    pub fn depth(&self, slots: usize) -> usize {
        let (Some(run_ms), Some(round_trip_ms)) = (self.run_ms, self.round_trip_ms) else {
            return 0;
        };
        // A floor on the run time keeps a zero-length attempt finite.
        let wanted = slots as f64 * round_trip_ms / run_ms.max(0.001);
        // Rounded, so a task that would start half a minute from now is not
        // held on this worker meanwhile.
        (wanted.round() as usize).min(self.max)
    }
}

fn average(slot: &mut Option<f64>, sample: Duration) {
    let ms = sample.as_secs_f64() * 1000.0;
    *slot = Some(match *slot {
        Some(old) => old + SMOOTHING * (ms - old),
        None => ms,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_is_leased_ahead_before_both_averages_are_known() {
        let mut p = Prefetch::new(64);
        assert_eq!(p.depth(64), 0);
        p.attempt_ran(ms(1));
        assert_eq!(p.depth(64), 0);
        p.lease_answered(ms(5));
        assert!(p.depth(64) > 0);
    }

    #[test]
    fn short_tasks_lease_ahead_up_to_the_cap_and_long_ones_hold_none() {
        let mut short = Prefetch::new(64);
        short.attempt_ran(Duration::from_micros(50));
        short.lease_answered(ms(4));
        assert_eq!(short.depth(64), 64, "capped");

        let mut long = Prefetch::new(64);
        long.attempt_ran(Duration::from_secs(60));
        long.lease_answered(ms(4));
        assert_eq!(long.depth(8), 0, "long tasks are not held in waiting");

        let mut medium = Prefetch::new(64);
        medium.attempt_ran(ms(40));
        medium.lease_answered(ms(4));
        assert_eq!(medium.depth(64), 6, "64 × 4 / 40 = 6.4");
    }
}
