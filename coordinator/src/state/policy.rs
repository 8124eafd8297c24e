//! Namespace policies: where each namespace's specs may read and write.
//!
//! A policy is replicated with the tokens (in [`Security`](super::security::Security)), and every spec
//! is checked against its namespace's policy inside the state machine, at
//! submit and again at each scheduled run, so every replica admits exactly
//! the same specs and a policy tightened later also stops a schedule's
//! next runs. Jobs already admitted keep running.

use std::collections::BTreeMap;

use drover_jobspecs::kinds::urls;
use drover_jobspecs::{KindConfig, Plan};
use serde::{Deserialize, Serialize};

use super::outcome::{Outcome, Rejection};
use super::types::shown;
use super::{Applied, StateMachine};

/// The key of the policy for every namespace that has none of its own.
pub const DEFAULT_POLICY: &str = "*";

/// Most namespace policies a cluster holds.
pub const POLICIES_MAX: usize = 10_000;

/// Most URL prefixes one policy allows.
pub const POLICY_URLS_MAX: usize = 64;

/// Where one namespace's specs may read and write. A namespace without a
/// policy (and no [`DEFAULT_POLICY`]) is unrestricted, as before policies
/// existed; setting one is how an operator confines a team's jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespacePolicy {
    /// Dataset URL prefixes, normalised (`s3://bucket/team-a`,
    /// `file:///data/team-a`); every `input` and `output` of its specs must
    /// lie at or below one of them. Empty allows no dataset at all.
    pub allowed_urls: Vec<String>,
    /// Whether its specs may use the `command` kind. A program reaches
    /// whatever its worker can, so a URL list means nothing without this
    /// off.
    pub allow_command: bool,
    /// Who set it (a token id and name).
    pub updated_by: String,
    /// Replicated time it was set.
    pub updated_ms: i64,
}

/// The policies of the namespaces, by name ([`DEFAULT_POLICY`] for the
/// others); replicated with the tokens.
pub type Policies = BTreeMap<String, NamespacePolicy>;

/// The policy governing `namespace` and the name it is kept under: its own,
/// else the default, else none.
pub fn governing<'a>(
    policies: &'a Policies,
    namespace: &str,
) -> Option<(&'a str, &'a NamespacePolicy)> {
    policies
        .get_key_value(namespace)
        .or_else(|| policies.get_key_value(DEFAULT_POLICY))
        .map(|(name, policy)| (name.as_str(), policy))
}

/// Whether a plan's tasks stay inside its namespace's policy; the error
/// names the first task and URL outside it, and what is allowed.
pub fn admit(policies: &Policies, plan: &Plan) -> Result<(), String> {
    let namespace = &plan.spec.namespace;
    let Some((governing, policy)) = governing(policies, namespace) else {
        return Ok(());
    };
    let whose = if governing == DEFAULT_POLICY {
        format!("the default policy (for namespaces without their own, such as `{namespace}`)")
    } else {
        format!("namespace `{namespace}`'s policy")
    };
    for task in &plan.spec.tasks {
        if matches!(task.kind, KindConfig::Command(_)) && !policy.allow_command {
            return Err(format!(
                "task `{}` is a `command`, which {whose} does not allow; ask an operator (drover policy set {governing} --allow-command)",
                task.name
            ));
        }
        for (field, url) in task.kind.dataset_urls() {
            if !policy.allowed_urls.iter().any(|p| urls::is_under(url, p)) {
                let allowed = if policy.allowed_urls.is_empty() {
                    "no dataset locations".to_owned()
                } else {
                    policy.allowed_urls.join(", ")
                };
                return Err(format!(
                    "task `{}` {} `{}`, outside what {whose} allows: {allowed}",
                    task.name,
                    if field == "output" { "writes" } else { "reads" },
                    shown_url(url),
                ));
            }
        }
    }
    Ok(())
}

/// A URL quoted in an error, cut like other caller strings but longer.
fn shown_url(url: &str) -> String {
    if url.len() <= 200 {
        return url.to_owned();
    }
    let mut end = 200;
    while !url.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &url[..end])
}

impl StateMachine {
    /// Sets (or with `None` removes) the policy of `namespace`, or of every
    /// namespace without one when it is [`DEFAULT_POLICY`].
    pub(super) fn set_namespace_policy(
        &mut self,
        namespace: &str,
        policy: Option<&NamespacePolicy>,
    ) -> Applied {
        if namespace != DEFAULT_POLICY && !drover_net::identity::valid_name(namespace) {
            return Err(Rejection::InvalidPolicy(format!(
                "namespace `{}` must be 1 to 63 lowercase letters, digits and '-', or `*` for the default",
                shown(namespace)
            )));
        }
        let Some(policy) = policy else {
            // Clearing is idempotent, so a retried clear is not an error.
            if self.core.security.policies.remove(namespace).is_some() {
                self.changes.security = true;
            }
            return Ok(Outcome::Done);
        };
        let policies = &self.core.security.policies;
        if !policies.contains_key(namespace) && policies.len() >= POLICIES_MAX {
            return Err(Rejection::TooLarge(format!(
                "a cluster holds at most {POLICIES_MAX} namespace policies"
            )));
        }
        let mut policy = policy.clone();
        policy.allowed_urls = check_allowed_urls(&policy.allowed_urls)?;
        if policy.updated_by.len() > 128 {
            return Err(Rejection::InvalidPolicy(
                "a policy's author is at most 128 bytes".to_owned(),
            ));
        }
        policy.updated_ms = self.core.now_ms;
        self.core
            .security
            .policies
            .insert(namespace.to_owned(), policy);
        self.changes.security = true;
        Ok(Outcome::Done)
    }
}

/// Validates and normalises a policy's URL prefixes (sorted, distinct);
/// every replica refuses the same ones.
fn check_allowed_urls(urls_in: &[String]) -> Result<Vec<String>, Rejection> {
    if urls_in.len() > POLICY_URLS_MAX {
        return Err(Rejection::InvalidPolicy(format!(
            "a policy allows at most {POLICY_URLS_MAX} URL prefixes"
        )));
    }
    let mut out = Vec::with_capacity(urls_in.len());
    for url in urls_in {
        if url.len() > urls::URL_BYTES_MAX {
            return Err(Rejection::InvalidPolicy(format!(
                "an allowed URL is at most {} bytes",
                urls::URL_BYTES_MAX
            )));
        }
        if url.contains("${") {
            return Err(Rejection::InvalidPolicy(format!(
                "allowed URL `{}` holds a `${{...}}` reference; name a fixed location",
                shown_url(url)
            )));
        }
        if let Some((message, hint)) = urls::problem(url) {
            return Err(Rejection::InvalidPolicy(format!("{message} ({hint})")));
        }
        out.push(urls::normalize(url));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, Config, LogEntry, SubmitJob, Submitted};

    const EXPORT: &str = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: e, namespace: team-a}\nspec:\n  tasks:\n    - {name: d, kind: dedup, config: {input: \"s3://lake/team-a/in\", output: \"s3://lake/team-a/out/${run.date}\", shards: 2}}\n";

    fn policy(urls: &[&str], allow_command: bool) -> NamespacePolicy {
        NamespacePolicy {
            allowed_urls: urls.iter().map(|u| u.to_string()).collect(),
            allow_command,
            updated_by: "test".into(),
            updated_ms: 0,
        }
    }

    fn at(sm: &mut StateMachine, now_ms: i64, command: Command) -> Applied {
        sm.apply(&LogEntry {
            now_ms,
            commands: vec![command],
        })
        .remove(0)
    }

    fn set(sm: &mut StateMachine, namespace: &str, p: Option<NamespacePolicy>) -> Applied {
        at(
            sm,
            1_000,
            Command::SetNamespacePolicy {
                namespace: namespace.into(),
                policy: p,
            },
        )
    }

    fn submit(sm: &mut StateMachine, yaml: &str) -> Applied {
        at(
            sm,
            2_000,
            Command::SubmitJob(SubmitJob {
                file: "e.yaml".into(),
                spec_yaml: yaml.into(),
                params: Vec::new(),
                idempotency_key: None,
                trace_parent: None,
            }),
        )
    }

    fn denied(applied: Applied) -> String {
        match applied {
            Err(Rejection::PolicyDenied(message)) => message,
            other => panic!("expected a policy denial, got {other:?}"),
        }
    }

    #[test]
    fn a_spec_is_admitted_only_inside_its_namespaces_urls() {
        let mut sm = StateMachine::new(Config::default());
        // No policy: unrestricted, as before policies existed.
        assert!(submit(&mut sm, EXPORT).is_ok());

        set(
            &mut sm,
            "team-a",
            Some(policy(&["s3://lake/team-a/in"], false)),
        )
        .unwrap();
        let message = denied(submit(&mut sm, EXPORT));
        assert!(
            message.starts_with("task `d` writes `s3://lake/team-a/out/"),
            "{message}"
        );
        assert!(message.contains("namespace `team-a`'s policy allows: s3://lake/team-a/in"));
        let jobs_before = sm.core().jobs.len();

        set(
            &mut sm,
            "team-a",
            Some(policy(&["s3://lake/team-a/"], false)),
        )
        .unwrap();
        assert!(submit(&mut sm, EXPORT).is_ok());
        assert_eq!(sm.core().jobs.len(), jobs_before + 1);

        // A retried submit of an admitted job still gets that job after the
        // policy tightens; a new key does not.
        let keyed = |key: &str| {
            Command::SubmitJob(SubmitJob {
                file: "e.yaml".into(),
                spec_yaml: EXPORT.into(),
                params: Vec::new(),
                idempotency_key: Some(key.into()),
                trace_parent: None,
            })
        };
        let first = at(&mut sm, 2_000, keyed("k1")).unwrap();
        set(
            &mut sm,
            "team-a",
            Some(policy(&["s3://lake/team-b"], false)),
        )
        .unwrap();
        match at(&mut sm, 3_000, keyed("k1")) {
            Ok(Outcome::Submitted { id, created: false }) => {
                assert_eq!(
                    Ok(Outcome::Submitted { id, created: true }),
                    Ok::<_, Rejection>(first)
                );
            }
            other => panic!("{other:?}"),
        }
        denied(at(&mut sm, 3_000, keyed("k2")));

        // A sibling whose name starts the same is not inside.
        set(&mut sm, "team-a", Some(policy(&["s3://lake/team"], false))).unwrap();
        assert!(denied(submit(&mut sm, EXPORT)).contains("reads `s3://lake/team-a/in`"));
    }

    #[test]
    fn the_default_policy_governs_namespaces_without_their_own() {
        let mut sm = StateMachine::new(Config::default());
        set(&mut sm, "*", Some(policy(&[], false))).unwrap();
        let message = denied(submit(&mut sm, EXPORT));
        assert!(message.contains("the default policy"), "{message}");
        assert!(
            message.contains("allows: no dataset locations"),
            "{message}"
        );
        // A namespace's own policy replaces the default.
        set(&mut sm, "team-a", Some(policy(&["s3://lake"], false))).unwrap();
        assert!(submit(&mut sm, EXPORT).is_ok());
        // Clearing it brings the default back; clearing twice is fine.
        set(&mut sm, "team-a", None).unwrap();
        set(&mut sm, "team-a", None).unwrap();
        assert!(denied(submit(&mut sm, EXPORT)).contains("the default policy"));
    }

    #[test]
    fn command_tasks_need_the_policy_to_allow_them() {
        let spec = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: c, namespace: team-a}\nspec:\n  tasks:\n    - {name: sh, kind: command, config: {argv: [\"true\"]}}\n";
        let mut sm = StateMachine::new(Config::default());
        set(
            &mut sm,
            "team-a",
            Some(policy(&["s3://lake/team-a"], false)),
        )
        .unwrap();
        let message = denied(submit(&mut sm, spec));
        assert!(message.contains("task `sh` is a `command`"), "{message}");
        assert!(message.contains("drover policy set team-a --allow-command"));
        set(&mut sm, "team-a", Some(policy(&["s3://lake/team-a"], true))).unwrap();
        assert!(submit(&mut sm, spec).is_ok());
    }

    #[test]
    fn policies_are_validated_and_normalised_alike_on_every_replica() {
        let mut sm = StateMachine::new(Config::default());
        set(
            &mut sm,
            "team-a",
            Some(policy(
                &["s3://lake/b/", "file:///data//a/.", "s3://lake/b"],
                false,
            )),
        )
        .unwrap();
        let stored = &sm.core().security.policies["team-a"];
        assert_eq!(stored.allowed_urls, ["file:///data/a", "s3://lake/b"]);
        assert_eq!(stored.updated_ms, 1_000);
        for (namespace, urls, wanted) in [
            ("Team_A", vec!["s3://x"], "must be 1 to 63 lowercase"),
            ("team-a", vec!["/data"], "is not a dataset URL"),
            ("team-a", vec!["s3://x/../y"], "climbs out"),
            ("team-a", vec!["s3://k:s@x/y"], "must not carry credentials"),
            ("team-a", vec!["s3://x/${partition.key}"], "fixed location"),
            ("team-a", vec!["s3://"], "names no location"),
        ] {
            let p = policy(&urls, false);
            match set(&mut sm, namespace, Some(p)) {
                Err(Rejection::InvalidPolicy(m)) => assert!(m.contains(wanted), "{m}"),
                other => panic!("{namespace} {urls:?}: {other:?}"),
            }
        }
        let many: Vec<String> = (0..=POLICY_URLS_MAX)
            .map(|i| format!("s3://b/{i}"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(
            set(&mut sm, "team-a", Some(policy(&many, false))),
            Err(Rejection::InvalidPolicy(_))
        ));
        // The refused ones changed nothing.
        assert_eq!(
            sm.core().security.policies["team-a"].allowed_urls,
            ["file:///data/a", "s3://lake/b"]
        );
    }

    #[test]
    fn a_schedules_runs_are_admitted_against_the_policy_of_their_time() {
        let spec = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: nightly, namespace: team-a}\nspec:\n  schedule: {cron: \"0 3 * * *\", timezone: UTC}\n  tasks:\n    - {name: d, kind: dedup, config: {input: \"s3://lake/team-a/in\", output: \"s3://lake/team-a/out\", shards: 2}}\n";
        let mut sm = StateMachine::new(Config::default());
        let Ok(Outcome::Submitted {
            id: Submitted::Schedule(id),
            ..
        }) = submit(&mut sm, spec)
        else {
            panic!("expected a schedule");
        };
        set(
            &mut sm,
            "team-a",
            Some(policy(&["s3://lake/team-b"], false)),
        )
        .unwrap();
        let day = 24 * 3_600_000;
        at(&mut sm, 4 * 3_600_000, Command::Tick).unwrap();
        let schedule = &sm.core().schedules[&id];
        assert_eq!(schedule.runs_started, 0);
        assert_eq!(schedule.runs_skipped, 1);
        let (_, note) = schedule.notes.back().unwrap();
        assert!(
            note.contains("skipped: task `d` reads `s3://lake/team-a/in`"),
            "{note}"
        );
        assert!(sm.core().jobs.is_empty());
        // Allowed again, the next night runs.
        set(
            &mut sm,
            "team-a",
            Some(policy(&["s3://lake/team-a"], false)),
        )
        .unwrap();
        at(&mut sm, day + 4 * 3_600_000, Command::Tick).unwrap();
        assert_eq!(sm.core().schedules[&id].runs_started, 1);
        assert_eq!(sm.core().jobs.len(), 1);
    }
}
