//! Credentials a spec must never carry.
//!
//! A spec is replicated, kept in every snapshot and backup, and shown to
//! anyone who may read its job (`drover job status`, the console), so a
//! secret written into one is a secret published. Kinds take keys by
//! reference (`keyEnv`, `keyFile`) and object stores take credentials from
//! the worker's environment; this pass catches the secrets that are pasted
//! in anyway, by their well-known shapes, before the spec is stored.

use crate::decode;
use crate::diagnostic::Diagnostics;
use crate::yaml::{Node, NodeKind};

/// What a spec should do instead of carrying a secret.
const HINT: &str = "specs are stored and shown to anyone who can read the job; \
    give the worker the secret in its environment or a file, and name it with `keyEnv`/`keyFile`";

/// The kind of credential `text` holds, if it has the shape of one:
/// a Drover API token, an AWS access key id, or a PEM private key.
pub fn credential_in(text: &str) -> Option<&'static str> {
    if has_drover_token(text) {
        return Some("a Drover API token");
    }
    if has_aws_access_key_id(text) {
        return Some("an AWS access key id");
    }
    if text.contains("-----BEGIN ") && text.contains("PRIVATE KEY-----") {
        return Some("a private key");
    }
    None
}

/// Whether an environment variable called `name` holds a secret by
/// convention (`AWS_SECRET_ACCESS_KEY`, `DB_PASSWORD`, `GITHUB_TOKEN`...).
/// Words are matched whole, so `MAX_TOKENS` is not one.
pub fn is_secret_env_name(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "TOKEN",
        "CREDENTIAL",
        "CREDENTIALS",
    ];
    const PHRASES: &[&str] = &["PRIVATE_KEY", "API_KEY", "ACCESS_KEY", "HMAC_KEY"];
    let upper = name.to_ascii_uppercase();
    upper.split(['_', '-']).any(|word| WORDS.contains(&word))
        || PHRASES.iter().any(|phrase| upper.contains(phrase))
}

/// Reports every scalar of `node` (a whole spec after substitution, so
/// values that came from params are caught where they are used) that holds
/// a credential.
pub fn check_tree(d: &mut Diagnostics, node: &Node, path: &str) {
    match &node.kind {
        NodeKind::Null => {}
        NodeKind::Scalar(scalar) => {
            if let Some(what) = credential_in(&scalar.text) {
                d.error_hint(
                    node.span,
                    path,
                    format!("this value looks like {what}; secrets must not be written in a spec"),
                    HINT,
                );
            }
        }
        NodeKind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                check_tree(d, item, &decode::index(path, i));
            }
        }
        NodeKind::Map(entries) => {
            for entry in entries {
                check_tree(d, &entry.value, &decode::join(path, &entry.key));
            }
        }
    }
}

/// Reports `--param` values that hold a credential: they are stored with
/// the submission even when the spec does not use them.
pub fn check_params(d: &mut Diagnostics, params: &[(String, String)], at: &Node) {
    for (name, value) in params {
        if let Some(what) = credential_in(value) {
            d.error_hint(
                at.span,
                &format!("--param {}", decode::truncate(name, 60)),
                format!("the value of param `{}` looks like {what}; secrets must not be passed as params", decode::truncate(name, 60)),
                HINT,
            );
        }
    }
}

/// `drv_` + 12 hex + `_` + 64 hex, the format `drover token create` prints.
fn has_drover_token(text: &str) -> bool {
    text.match_indices("drv_").any(|(at, _)| {
        let rest = &text.as_bytes()[at + 4..];
        rest.len() >= 77
            && rest[..12].iter().all(u8::is_ascii_hexdigit)
            && rest[12] == b'_'
            && rest[13..77].iter().all(u8::is_ascii_hexdigit)
    })
}

/// `AKIA`/`ASIA` + 16 uppercase letters or digits, as a whole word.
fn has_aws_access_key_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric();
    ["AKIA", "ASIA"].iter().any(|prefix| {
        text.match_indices(prefix).any(|(at, _)| {
            let body = &bytes[at + 4..];
            let before_ok = at == 0 || !word(bytes[at - 1]);
            before_ok
                && body.len() >= 16
                && body[..16]
                    .iter()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                && body.get(16).is_none_or(|b| !word(*b))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_recognised_by_shape() {
        let token = format!("drv_{}_{}", "0123456789ab", "f".repeat(64));
        assert_eq!(credential_in(&token), Some("a Drover API token"));
        assert_eq!(
            credential_in(&format!("Bearer {token}")),
            Some("a Drover API token")
        );
        assert_eq!(credential_in("drv_0123456789ab_short"), None);
        assert_eq!(
            credential_in("AKIAIOSFODNN7EXAMPLE"),
            Some("an AWS access key id")
        );
        assert_eq!(
            credential_in("id=ASIAIOSFODNN7EXAMPLE;"),
            Some("an AWS access key id")
        );
        // Part of a longer word, or lowercase: not a key id.
        assert_eq!(credential_in("XAKIAIOSFODNN7EXAMPLE"), None);
        assert_eq!(credential_in("AKIAIOSFODNN7EXAMPLEX"), None);
        assert_eq!(credential_in("akiaiosfodnn7example"), None);
        assert_eq!(
            credential_in("-----BEGIN RSA PRIVATE KEY-----\nMIIE"),
            Some("a private key")
        );
        assert_eq!(credential_in("-----BEGIN CERTIFICATE-----"), None);
        assert_eq!(credential_in("s3://bucket/exports/2026-01-01"), None);
    }

    #[test]
    fn secret_env_names_match_whole_words() {
        for name in [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "AWS_SESSION_TOKEN",
            "DB_PASSWORD",
            "GITHUB_TOKEN",
            "DROVER_HMAC_KEY",
            "openai_api_key",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "TLS_PRIVATE_KEY",
        ] {
            assert!(is_secret_env_name(name), "{name}");
        }
        for name in [
            "MAX_TOKENS",
            "SORT_KEY",
            "PATH",
            "RUST_LOG",
            "TOKENIZER",
            "SECRETARY",
        ] {
            assert!(!is_secret_env_name(name), "{name}");
        }
    }
}
