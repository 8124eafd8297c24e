//! Where an attempt writes: the attempt-scoped output prefix a grant hands
//! out, and the rule that a completion's manifest lies there.
//!
//! **Architecture invariant:** an output is canonical only where no other
//! attempt can write. The prefix names the job, template, partition,
//! attempt and the grant's token, and tokens are unique per grant, so two
//! attempts never share one. The rule lives in the state machine, so the
//! simulation checks it with every other lease rule.

use super::types::TaskKey;

/// The prefix of the attempt of `task` numbered `attempt` and granted
/// `token`, relative to the worker's data root.
pub fn attempt_prefix(task: TaskKey, attempt: u32, token: u64) -> String {
    format!(
        "jobs/{}/{}/{}/attempt-{attempt}-{token}",
        task.job, task.template, task.partition
    )
}

/// Whether a completion's manifest prefix is the attempt's own. An empty
/// prefix (an attempt that wrote nothing) is allowed.
pub fn is_own_prefix(task: TaskKey, attempt: u32, token: u64, prefix: &str) -> bool {
    prefix.is_empty() || prefix == attempt_prefix(task, attempt, token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::JobId;

    #[test]
    fn only_the_attempts_own_prefix_is_its_own() {
        let key = TaskKey {
            job: JobId(7),
            template: 1,
            partition: 12,
        };
        assert_eq!(attempt_prefix(key, 2, 40), "jobs/j7/1/12/attempt-2-40");
        assert!(is_own_prefix(key, 2, 40, "jobs/j7/1/12/attempt-2-40"));
        assert!(is_own_prefix(key, 2, 40, ""), "an empty manifest");
        for other in [
            "jobs/j7/1/12/attempt-2-41",
            "jobs/j7/1/12/attempt-1-40",
            "jobs/j7/1/13/attempt-2-40",
            "jobs/j7/1/12/attempt-x-40",
            "jobs/j7/1/12/attempt-2-40/../../x",
            "elsewhere/attempt-2-40",
        ] {
            assert!(!is_own_prefix(key, 2, 40, other), "{other}");
        }
    }
}
