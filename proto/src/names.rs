//! The names people and scripts see for the wire enums: `succeeded`,
//! `annotation_export`, `upstream_failed`. Each is the proto value name
//! without its type prefix, in lower case, so the tables below cannot drift
//! from the `.proto` files; a value a newer peer sends shows as
//! `unknown(N)`.

use crate::v1::{JobEventKind, JobState, ReplicationState, TaskKind, TaskState, WorkerState};

/// The lower-case name of a wire enum value, without its type prefix:
/// `JOB_STATE_SUCCEEDED` becomes `succeeded`.
pub fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
}

macro_rules! namer {
    ($(#[$doc:meta])* $fn:ident, $ty:ty, $prefix:literal) => {
        $(#[$doc])*
        pub fn $fn(v: i32) -> String {
            <$ty>::try_from(v).map_or_else(
                |_| format!("unknown({v})"),
                |s| enum_name(s.as_str_name(), $prefix),
            )
        }
    };
}

namer!(
    /// `pending`, `running`, `succeeded`, `failed`, `cancelled`.
    job_state, JobState, "JOB_STATE_"
);
namer!(
    /// `waiting`, `ready`, `leased`, `succeeded`, `failed`,
    /// `upstream_failed`...
    task_state, TaskState, "TASK_STATE_"
);
namer!(
    /// `created`, `task_failed`, `schedule_fired`...
    event_kind, JobEventKind, "JOB_EVENT_KIND_"
);
namer!(
    /// `active`, `draining`, `lost`...
    worker_state, WorkerState, "WORKER_STATE_"
);
namer!(
    /// How the leader replicates to a member: `probe`, `replicate`,
    /// `snapshot`, or `unspecified` outside the leader's view.
    replication_state, ReplicationState, "REPLICATION_STATE_"
);

/// Every task kind with the name a spec's `kind:` and the workers use.
const TASK_KINDS: [(TaskKind, &str); 7] = [
    (TaskKind::Noop, "noop"),
    (TaskKind::Sleep, "sleep"),
    (TaskKind::Command, "command"),
    (TaskKind::Probe, "probe"),
    (TaskKind::AnnotationExport, "annotation_export"),
    (TaskKind::Dedup, "dedup"),
    (TaskKind::SensorFeatureBackfill, "sensor_feature_backfill"),
];

/// The name of a task kind; `None` for `Unspecified`.
pub fn task_kind_name(kind: TaskKind) -> Option<&'static str> {
    TASK_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, name)| *name)
}

/// The task kind a name stands for; `Unspecified` for a name no executor
/// has.
pub fn task_kind_named(name: &str) -> TaskKind {
    TASK_KINDS
        .iter()
        .find(|(_, n)| *n == name)
        .map_or(TaskKind::Unspecified, |(kind, _)| *kind)
}

/// The name of a wire task kind value.
pub fn task_kind(v: i32) -> String {
    match TaskKind::try_from(v) {
        Ok(TaskKind::Unspecified) => "unspecified".to_owned(),
        Ok(kind) => task_kind_name(kind).unwrap_or_default().to_owned(),
        Err(_) => format!("unknown({v})"),
    }
}

/// Parses a job state name as `job list --state` and the console's filter
/// take it.
pub fn parse_job_state(name: &str) -> Result<JobState, String> {
    let wanted = format!("JOB_STATE_{}", name.to_ascii_uppercase());
    match JobState::from_str_name(&wanted) {
        Some(s) if s != JobState::Unspecified => Ok(s),
        _ => Err(format!(
            "unknown job state `{name}` (expected pending, running, succeeded, failed or cancelled)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{JobEventKind, JobState, TaskKind, TaskState};

    #[test]
    fn every_task_kind_has_its_proto_name_and_parses_back() {
        let mut listed = 0;
        for v in 0..64 {
            let Ok(kind) = TaskKind::try_from(v) else {
                continue;
            };
            if kind == TaskKind::Unspecified {
                assert_eq!(task_kind_name(kind), None);
                continue;
            }
            listed += 1;
            let name = task_kind_name(kind).expect("every kind is in the table");
            assert_eq!(name, enum_name(kind.as_str_name(), "TASK_KIND_"));
            assert_eq!(task_kind_named(name), kind);
            assert_eq!(task_kind(v), name);
        }
        assert_eq!(listed, TASK_KINDS.len());
        assert_eq!(task_kind_named("no_such_kind"), TaskKind::Unspecified);
        assert_eq!(task_kind(999), "unknown(999)");
    }

    #[test]
    fn enum_names_are_lower_case_without_prefix() {
        assert_eq!(job_state(JobState::Succeeded as i32), "succeeded");
        assert_eq!(task_state(TaskState::Leased as i32), "leased");
        assert_eq!(
            event_kind(JobEventKind::TaskStaleTokenRejected as i32),
            "task_stale_token_rejected"
        );
        assert_eq!(
            task_kind(TaskKind::SensorFeatureBackfill as i32),
            "sensor_feature_backfill"
        );
        assert_eq!(job_state(99), "unknown(99)");
    }

    #[test]
    fn job_states_parse_from_their_names() {
        assert_eq!(parse_job_state("Running"), Ok(JobState::Running));
        assert!(parse_job_state("unspecified").is_err());
        assert!(
            parse_job_state("done")
                .unwrap_err()
                .contains("expected pending")
        );
    }
}
