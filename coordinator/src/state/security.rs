//! API tokens: who may call the cluster, in which role, over which
//! namespaces.
//!
//! Tokens are replicated like jobs, so every coordinator checks the same
//! set and a revocation reaches all of them through the log. Only a
//! SHA-256 of each token's secret is kept: a stolen data directory, backup
//! or snapshot does not hold a usable credential. The secret is drawn and
//! hashed by the service before proposing; the state machine never sees it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::outcome::{Outcome, Rejection};
use super::policy::Policies;
use super::types::shown;
use super::{Applied, StateMachine};

/// Most tokens a cluster holds; creating more is refused until some are
/// revoked.
pub const TOKENS_MAX: usize = 10_000;

/// Most namespaces one submitter token names.
pub const TOKEN_NAMESPACES_MAX: usize = 64;

/// Length of a token id: 12 lowercase hex digits (48 random bits, so ids
/// drawn independently practically never collide, and one that does is
/// refused rather than overwriting).
pub const TOKEN_ID_LEN: usize = 12;

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Submit, read and control jobs in its namespaces, and nothing else.
    Submitter,
    /// Everything: jobs in every namespace, cluster membership, workers,
    /// settings, backups and tokens.
    Operator,
    /// Lease, heartbeat, complete, fail and release tasks: the worker
    /// service only.
    Worker,
}

impl Role {
    /// The lowercase name users type (`--role submitter`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Operator => "operator",
            Role::Worker => "worker",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "submitter" => Some(Role::Submitter),
            "operator" => Some(Role::Operator),
            "worker" => Some(Role::Worker),
            _ => None,
        }
    }
}

/// One API token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Public id, the first part of the token string; names the token in
    /// listings, revocations and the audit log.
    pub id: String,
    /// What it is for (`ci-team-a`), for people.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// For a submitter, the namespaces it may touch (sorted, distinct);
    /// empty for other roles.
    pub namespaces: Vec<String>,
    /// SHA-256 of the secret part.
    pub secret_sha256: [u8; 32],
    /// Who created it (a token id and name, or `bootstrap`).
    pub created_by: String,
    /// Replicated time of creation.
    pub created_ms: i64,
    /// When it stops working; `None` never.
    pub expires_ms: Option<i64>,
}

impl Token {
    /// Whether it may touch jobs in `namespace`.
    pub fn covers(&self, namespace: &str) -> bool {
        match self.role {
            Role::Operator => true,
            Role::Submitter => self.namespaces.iter().any(|n| n == namespace),
            Role::Worker => false,
        }
    }
}

/// The replicated security settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Security {
    /// Tokens by id.
    pub tokens: BTreeMap<String, Token>,
    /// What each namespace's specs may touch, by namespace;
    /// [`super::policy::DEFAULT_POLICY`] holds the one for namespaces without their own.
    pub policies: Policies,
    /// Roles of client certificates, by identity (`client/ci`), for
    /// callers that present a certificate and no token. (Last, with
    /// `policies`: both added in snapshot format 4.)
    pub certificates: BTreeMap<String, CertificateBinding>,
}

/// Most client certificates a cluster binds to roles.
pub const BINDINGS_MAX: usize = 10_000;

/// A client certificate's role: what its holder may do when it presents
/// the certificate and no token. Like a token without a secret, since the
/// TLS handshake already proved the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateBinding {
    /// What it may do.
    pub role: Role,
    /// For a submitter, its namespaces (sorted, distinct); empty otherwise.
    pub namespaces: Vec<String>,
    /// Who bound it (a token id and name).
    pub created_by: String,
    /// Replicated time it was bound.
    pub created_ms: i64,
}

impl StateMachine {
    /// Adds a token. With `bootstrap`, only while the cluster has none: the
    /// first operator token needs no credentials, so this is what keeps a
    /// second caller from minting another.
    pub(super) fn create_token(&mut self, token: &Token, bootstrap: bool) -> Applied {
        let tokens = &self.core.security.tokens;
        if bootstrap && !tokens.is_empty() {
            return Err(Rejection::AlreadyBootstrapped);
        }
        if tokens.len() >= TOKENS_MAX {
            return Err(Rejection::TooLarge(format!(
                "a cluster holds at most {TOKENS_MAX} tokens; revoke unused ones first"
            )));
        }
        check_token(token)?;
        check_grant(token.role, &token.namespaces).map_err(Rejection::InvalidToken)?;
        if tokens.contains_key(&token.id) {
            return Err(Rejection::InvalidToken(format!(
                "token id {} is taken; create it again",
                token.id
            )));
        }
        let mut token = token.clone();
        token.created_ms = self.core.now_ms;
        token.namespaces.sort();
        token.namespaces.dedup();
        self.core.security.tokens.insert(token.id.clone(), token);
        self.changes.security = true;
        Ok(Outcome::Done)
    }

    /// Binds client certificate `identity` (`client/NAME`) to a role, or
    /// with `None` removes its binding (idempotently).
    pub(super) fn bind_certificate(
        &mut self,
        identity: &str,
        binding: Option<&CertificateBinding>,
    ) -> Applied {
        let invalid = |m: String| Err(Rejection::InvalidToken(m));
        let name = identity.strip_prefix("client/").unwrap_or_default();
        if !drover_net::identity::valid_name(name) {
            return invalid(format!(
                "`{}` is not a client certificate identity: write client/NAME, as `drover certs issue --client NAME` makes (worker certificates already have the worker role)",
                shown(identity)
            ));
        }
        let Some(binding) = binding else {
            if self.core.security.certificates.remove(identity).is_some() {
                self.changes.security = true;
            }
            return Ok(Outcome::Done);
        };
        let bound = &self.core.security.certificates;
        if !bound.contains_key(identity) && bound.len() >= BINDINGS_MAX {
            return Err(Rejection::TooLarge(format!(
                "a cluster binds at most {BINDINGS_MAX} client certificates"
            )));
        }
        check_grant(binding.role, &binding.namespaces).map_err(Rejection::InvalidToken)?;
        if binding.created_by.len() > 128 {
            return invalid("a binding's creator is at most 128 bytes".to_owned());
        }
        let mut binding = binding.clone();
        binding.created_ms = self.core.now_ms;
        binding.namespaces.sort();
        binding.namespaces.dedup();
        self.core
            .security
            .certificates
            .insert(identity.to_owned(), binding);
        self.changes.security = true;
        Ok(Outcome::Done)
    }

    /// Removes a token; requests carrying it are refused from then on.
    pub(super) fn revoke_token(&mut self, id: &str) -> Applied {
        if self.core.security.tokens.remove(id).is_none() {
            return Err(Rejection::UnknownToken(shown(id)));
        }
        self.changes.security = true;
        Ok(Outcome::Done)
    }
}

/// Checks a role and its namespaces, of a token or a certificate binding.
fn check_grant(role: Role, namespaces: &[String]) -> Result<(), String> {
    match role {
        Role::Submitter if namespaces.is_empty() => {
            return Err("a submitter needs at least one namespace (--namespace NAME)".to_owned());
        }
        Role::Operator | Role::Worker if !namespaces.is_empty() => {
            return Err(format!(
                "only submitters are scoped to namespaces; the {} role covers {}",
                role.as_str(),
                if role == Role::Operator {
                    "every namespace"
                } else {
                    "no jobs, only the worker service"
                }
            ));
        }
        _ => {}
    }
    if namespaces.len() > TOKEN_NAMESPACES_MAX {
        return Err(format!(
            "a token or certificate names at most {TOKEN_NAMESPACES_MAX} namespaces"
        ));
    }
    if let Some(bad) = namespaces
        .iter()
        .find(|n| !drover_net::identity::valid_name(n))
    {
        return Err(format!(
            "namespace `{}` must be 1 to 63 lowercase letters, digits and '-'",
            shown(bad)
        ));
    }
    Ok(())
}

/// Checks a token's fields; every replica refuses the same ones.
fn check_token(token: &Token) -> Result<(), Rejection> {
    let invalid = |m: String| Err(Rejection::InvalidToken(m));
    if token.id.len() != TOKEN_ID_LEN
        || !token
            .id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return invalid(format!("a token id is {TOKEN_ID_LEN} lowercase hex digits"));
    }
    if !drover_net::identity::valid_name(&token.name) {
        return invalid(format!(
            "token name `{}` must be 1 to 63 lowercase letters, digits and '-', not starting with '-'",
            shown(&token.name)
        ));
    }
    if token.created_by.len() > 128 {
        return invalid("a token's creator is at most 128 bytes".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, Config, LogEntry};

    fn token(id: &str, role: Role, namespaces: &[&str]) -> Token {
        Token {
            id: id.to_owned(),
            name: "ci".to_owned(),
            role,
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            secret_sha256: [7; 32],
            created_by: "test".to_owned(),
            created_ms: 0,
            expires_ms: None,
        }
    }

    fn apply(sm: &mut StateMachine, command: Command) -> Applied {
        sm.apply(&LogEntry {
            now_ms: 1_000,
            commands: vec![command],
        })
        .remove(0)
    }

    #[test]
    fn bootstrap_works_once_and_only_on_an_empty_cluster() {
        let mut sm = StateMachine::new(Config::default());
        let first = token("000000000001", Role::Operator, &[]);
        assert_eq!(
            apply(
                &mut sm,
                Command::CreateToken {
                    token: first,
                    bootstrap: true
                }
            ),
            Ok(Outcome::Done)
        );
        assert_eq!(sm.core().security.tokens["000000000001"].created_ms, 1_000);
        let second = token("000000000002", Role::Operator, &[]);
        assert_eq!(
            apply(
                &mut sm,
                Command::CreateToken {
                    token: second.clone(),
                    bootstrap: true
                }
            ),
            Err(Rejection::AlreadyBootstrapped)
        );
        // An operator creating one is not a bootstrap.
        assert_eq!(
            apply(
                &mut sm,
                Command::CreateToken {
                    token: second,
                    bootstrap: false
                }
            ),
            Ok(Outcome::Done)
        );
    }

    #[test]
    fn malformed_tokens_and_taken_ids_are_refused() {
        let mut sm = StateMachine::new(Config::default());
        let create = |t: Token| Command::CreateToken {
            token: t,
            bootstrap: false,
        };
        for bad in [
            token("xyz", Role::Operator, &[]),
            token("ABCDEF012345", Role::Operator, &[]),
            token("000000000001", Role::Submitter, &[]),
            token("000000000001", Role::Operator, &["team-a"]),
            token("000000000001", Role::Worker, &["team-a"]),
            token("000000000001", Role::Submitter, &["Team A"]),
            Token {
                name: "Bad Name".into(),
                ..token("000000000001", Role::Operator, &[])
            },
        ] {
            assert!(
                matches!(
                    apply(&mut sm, create(bad.clone())),
                    Err(Rejection::InvalidToken(_))
                ),
                "{bad:?} was accepted"
            );
        }
        assert!(sm.core().security.tokens.is_empty());
        let good = token("00000000000a", Role::Submitter, &["b", "a", "b"]);
        assert_eq!(apply(&mut sm, create(good.clone())), Ok(Outcome::Done));
        assert_eq!(
            sm.core().security.tokens["00000000000a"].namespaces,
            ["a", "b"]
        );
        assert!(matches!(
            apply(&mut sm, create(good)),
            Err(Rejection::InvalidToken(m)) if m.contains("taken")
        ));
    }

    #[test]
    fn revoking_removes_the_token_and_an_unknown_id_is_named() {
        let mut sm = StateMachine::new(Config::default());
        let t = token("00000000000b", Role::Worker, &[]);
        apply(
            &mut sm,
            Command::CreateToken {
                token: t,
                bootstrap: false,
            },
        )
        .unwrap();
        let _ = sm.take_changes();
        assert_eq!(
            apply(
                &mut sm,
                Command::RevokeToken {
                    id: "00000000000b".into()
                }
            ),
            Ok(Outcome::Done)
        );
        assert!(sm.take_changes().security);
        assert!(sm.core().security.tokens.is_empty());
        let long = "x".repeat(10_000);
        let err = apply(&mut sm, Command::RevokeToken { id: long }).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn a_submitter_covers_only_its_namespaces_and_an_operator_all() {
        let s = token("00000000000c", Role::Submitter, &["team-a"]);
        assert!(s.covers("team-a"));
        assert!(!s.covers("team-b"));
        assert!(token("00000000000d", Role::Operator, &[]).covers("team-b"));
        assert!(!token("00000000000e", Role::Worker, &[]).covers("team-a"));
    }

    #[test]
    fn client_certificates_are_bound_to_roles_checked_like_tokens() {
        let mut sm = StateMachine::new(Config::default());
        let binding = |role: Role, namespaces: &[&str]| CertificateBinding {
            role,
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            created_by: "test".to_owned(),
            created_ms: 0,
        };
        let bind = |sm: &mut StateMachine, identity: &str, b: Option<CertificateBinding>| {
            apply(
                sm,
                Command::BindCertificate {
                    identity: identity.to_owned(),
                    binding: b,
                },
            )
        };
        assert_eq!(
            bind(
                &mut sm,
                "client/ci",
                Some(binding(Role::Submitter, &["b", "a", "a"]))
            ),
            Ok(Outcome::Done)
        );
        let stored = &sm.core().security.certificates["client/ci"];
        assert_eq!(stored.namespaces, ["a", "b"]);
        assert_eq!(stored.created_ms, 1_000);
        for (identity, b, wanted) in [
            (
                "worker/pool",
                binding(Role::Operator, &[]),
                "not a client certificate identity",
            ),
            (
                "node/2",
                binding(Role::Operator, &[]),
                "not a client certificate identity",
            ),
            (
                "client/",
                binding(Role::Operator, &[]),
                "not a client certificate identity",
            ),
            (
                "client/ops",
                binding(Role::Submitter, &[]),
                "needs at least one namespace",
            ),
            (
                "client/ops",
                binding(Role::Operator, &["a"]),
                "only submitters are scoped",
            ),
            (
                "client/ops",
                binding(Role::Submitter, &["Bad_NS"]),
                "must be 1 to 63",
            ),
        ] {
            match bind(&mut sm, identity, Some(b)) {
                Err(Rejection::InvalidToken(m)) => assert!(m.contains(wanted), "{identity}: {m}"),
                other => panic!("{identity}: {other:?}"),
            }
        }
        assert_eq!(sm.core().security.certificates.len(), 1);
        // Unbinding is idempotent.
        assert_eq!(bind(&mut sm, "client/ci", None), Ok(Outcome::Done));
        assert_eq!(bind(&mut sm, "client/ci", None), Ok(Outcome::Done));
        assert!(sm.core().security.certificates.is_empty());
    }
}
