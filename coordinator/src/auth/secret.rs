//! The token string users hold: `drv_<id>_<secret>`.
//!
//! The id (12 hex digits) is public: it names the token in listings, the
//! audit log and revocations, and lets a coordinator find the stored hash
//! without scanning. The secret (64 hex digits, 256 random bits) is shown
//! once, at creation, and only its SHA-256 is kept. The `drv_` prefix makes
//! a leaked token easy to spot in logs and for secret scanners.

use sha2::{Digest, Sha256};

use crate::state::security::TOKEN_ID_LEN;

/// Every token string starts with this.
pub const PREFIX: &str = "drv_";

/// Hex digits of the secret part.
const SECRET_HEX_LEN: usize = 64;

/// A freshly drawn token: what the user gets, and what the cluster keeps.
#[derive(Clone)]
pub struct NewToken {
    /// The public id.
    pub id: String,
    /// The whole token string, to hand to the user once.
    pub token: String,
    /// SHA-256 of the secret part, to store.
    pub secret_sha256: [u8; 32],
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token string is a credential: never in a log line.
        f.debug_struct("NewToken").field("id", &self.id).finish()
    }
}

/// Why a token could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct RandomUnavailable(String);

/// Draws a new token from the operating system's random source.
pub fn generate() -> Result<NewToken, RandomUnavailable> {
    let mut id = [0u8; TOKEN_ID_LEN / 2];
    let mut secret = [0u8; SECRET_HEX_LEN / 2];
    getrandom::fill(&mut id).map_err(|e| RandomUnavailable(e.to_string()))?;
    getrandom::fill(&mut secret).map_err(|e| RandomUnavailable(e.to_string()))?;
    let id = hex(&id);
    let secret = hex(&secret);
    Ok(NewToken {
        token: format!("{PREFIX}{id}_{secret}"),
        secret_sha256: hash(&secret),
        id,
    })
}

/// A token string taken apart; `None` when it is not one.
#[derive(Clone, PartialEq, Eq)]
pub struct Presented<'a> {
    /// The public id.
    pub id: &'a str,
    /// The secret part.
    secret: &'a str,
}

impl std::fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presented").field("id", &self.id).finish()
    }
}

impl<'a> Presented<'a> {
    /// Splits `drv_<id>_<secret>`, checking each part's length and digits.
    pub fn parse(token: &'a str) -> Option<Self> {
        let rest = token.strip_prefix(PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        (id.len() == TOKEN_ID_LEN
            && secret.len() == SECRET_HEX_LEN
            && lower_hex(id)
            && lower_hex(secret))
        .then_some(Self { id, secret })
    }

    /// Whether the secret hashes to `stored`, compared in constant time so
    /// the comparison's duration says nothing about how much matched.
    pub fn matches(&self, stored: &[u8; 32]) -> bool {
        let presented = hash(self.secret);
        presented
            .iter()
            .zip(stored)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_and_matches_only_its_own_hash() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(
            a.token.len(),
            PREFIX.len() + TOKEN_ID_LEN + 1 + SECRET_HEX_LEN
        );
        assert_ne!(a.id, b.id);
        let presented = Presented::parse(&a.token).expect("a generated token parses");
        assert_eq!(presented.id, a.id);
        assert!(presented.matches(&a.secret_sha256));
        assert!(!presented.matches(&b.secret_sha256));
        // The Debug forms never show the secret.
        assert!(!format!("{a:?}{presented:?}").contains(&a.token[PREFIX.len() + 13..]));
    }

    #[test]
    fn anything_else_is_not_a_token() {
        let good = generate().unwrap().token;
        for bad in [
            String::new(),
            "drv_".into(),
            good.replacen("drv_", "drx_", 1),
            good.to_uppercase(),
            format!("{good}0"),
            good[..good.len() - 1].to_owned(),
            good.replacen('_', "-", 2),
            "drv_0123456789ab_".to_owned() + &"g".repeat(64),
        ] {
            assert!(Presented::parse(&bad).is_none(), "{bad} parsed");
        }
    }
}
