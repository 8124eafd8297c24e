//! Bugs planted on purpose, to prove that the chaos suite's checkers catch
//! them (`drover-chaos`'s planted-bug tests). Compiled only with the
//! `planted-bugs` feature; a normal build has none of this code.
//!
//! Each switch reproduces a failure that schedulers of this kind have
//! shipped: a completion accepted from a paused worker's stale lease, a task
//! leased twice at once, a write acknowledged before it was durable, one
//! node's wrong wall clock taken for the cluster's time.

use std::str::FromStr;

/// Environment variable a coordinator process reads its planted bugs from
/// (comma-separated names, see [`PlantedBugs::from_str`]).
pub const ENV: &str = "DROVER_PLANTED_BUGS";

/// Which bugs are active. All off by default, so a build with the feature
/// behaves like one without until something switches a bug on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlantedBugs {
    /// `complete` accepts any token, not only the live lease's, while the
    /// task is unfinished: leased to someone, or waiting to run again
    /// after its lease expired.
    pub skip_fencing: bool,
    /// A grant does not take the task out of the ready set, so the same
    /// partition is leased again while its lease is live.
    pub double_lease: bool,
    /// The Raft driver sends its votes and append acknowledgements before
    /// the log write is durable, and writes without fsync.
    pub ack_before_fsync: bool,
    /// The leader stamps entries with its own wall clock rather than the
    /// time a majority of the voters' clocks agree on, so one node's wrong
    /// clock becomes the cluster's.
    pub wall_clock_time: bool,
}

impl PlantedBugs {
    /// The bugs named in `DROVER_PLANTED_BUGS`, none when it is unset.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(ENV) {
            Ok(value) => value.parse(),
            Err(_) => Ok(Self::default()),
        }
    }

    /// Whether any bug is active.
    pub fn any(&self) -> bool {
        self.skip_fencing || self.double_lease || self.ack_before_fsync || self.wall_clock_time
    }
}

impl FromStr for PlantedBugs {
    type Err = String;

    /// Parses `skip-fencing,double-lease,ack-before-fsync,wall-clock-time`
    /// (any subset).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut bugs = Self::default();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "skip-fencing" => bugs.skip_fencing = true,
                "double-lease" => bugs.double_lease = true,
                "ack-before-fsync" => bugs.ack_before_fsync = true,
                "wall-clock-time" => bugs.wall_clock_time = true,
                other => {
                    return Err(format!(
                        "unknown planted bug `{other}`; known: skip-fencing, double-lease, ack-before-fsync, wall-clock-time"
                    ));
                }
            }
        }
        Ok(bugs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_refuses_unknown_ones() {
        let bugs: PlantedBugs = "skip-fencing, ack-before-fsync".parse().unwrap();
        assert!(bugs.skip_fencing && bugs.ack_before_fsync && !bugs.double_lease);
        assert_eq!("".parse::<PlantedBugs>().unwrap(), PlantedBugs::default());
        assert!(
            "fencing"
                .parse::<PlantedBugs>()
                .unwrap_err()
                .contains("known:")
        );
    }
}
