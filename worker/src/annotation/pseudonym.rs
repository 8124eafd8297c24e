//! Annotator pseudonyms: a keyed HMAC-SHA256 of the annotator id. The same
//! key always gives the same pseudonym, so exports can be joined across
//! runs; without the key a pseudonym cannot be traced back to the id, nor
//! guessed from a list of candidate ids (a plain hash could be). The key
//! comes from a secret file or the environment, never from the job spec,
//! which is stored in the cluster's state and shown by `drover job status`.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Shortest key accepted: 128 bits.
pub const KEY_BYTES_MIN: usize = 16;

/// Longest key file read.
const KEY_FILE_BYTES_MAX: u64 = 4096;

/// Hex digits of the HMAC kept in a pseudonym: 128 bits, which makes a
/// collision among even a billion annotators vanishingly unlikely.
const PSEUDONYM_HEX_DIGITS: usize = 32;

/// Where the key comes from, as the job spec says: an environment
/// variable of the worker, or a file on it (a trailing newline is not part
/// of the key, so `echo secret > key` works).
pub use drover_jobspecs::kinds::KeySource;

/// Why no pseudonymiser could be made.
#[derive(Debug, thiserror::Error)]
pub enum PseudonymError {
    /// The environment variable is not set.
    #[error("the pseudonymisation key variable {0} is not set")]
    EnvMissing(String),
    /// The key file could not be read.
    #[error("reading the pseudonymisation key file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file is larger than a key could be.
    #[error("the pseudonymisation key file {0} is larger than {KEY_FILE_BYTES_MAX} bytes")]
    FileTooLarge(PathBuf),
    /// The key is too short to keep pseudonyms secret.
    #[error("the pseudonymisation key has {0} bytes; it needs at least {KEY_BYTES_MIN}")]
    KeyTooShort(usize),
}

/// Turns annotator ids into pseudonyms with one key.
#[derive(Clone)]
pub struct Pseudonymiser {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str("Pseudonymiser")
    }
}

impl Pseudonymiser {
    /// A pseudonymiser keyed with `key` (at least [`KEY_BYTES_MIN`] bytes).
    pub fn new(key: &[u8]) -> Result<Self, PseudonymError> {
        if key.len() < KEY_BYTES_MIN {
            return Err(PseudonymError::KeyTooShort(key.len()));
        }
        // HMAC takes a key of any length; this cannot fail.
        let mac = Hmac::<Sha256>::new_from_slice(key)
            .map_err(|_| PseudonymError::KeyTooShort(key.len()))?;
        Ok(Self { mac })
    }

    /// A pseudonymiser keyed from `source`.
    pub fn from_source(source: &KeySource) -> Result<Self, PseudonymError> {
        match source {
            KeySource::Env(name) => {
                let key =
                    std::env::var(name).map_err(|_| PseudonymError::EnvMissing(name.clone()))?;
                Self::new(key.as_bytes())
            }
            KeySource::File(path) => Self::new(&read_key_file(Path::new(path))?),
        }
    }

    /// The first 128 bits of `id`'s HMAC: the pseudonym as a number, for
    /// grouping by it without formatting it.
    pub fn digest128(&self, id: &[u8]) -> u128 {
        let mut mac = self.mac.clone();
        mac.update(id);
        let digest = mac.finalize().into_bytes();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        u128::from_be_bytes(first)
    }

    /// The pseudonym of `id`: `a_` and 32 hex digits.
    pub fn pseudonym(&self, id: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(2 + PSEUDONYM_HEX_DIGITS);
        out.push_str("a_");
        for byte in digest.iter().take(PSEUDONYM_HEX_DIGITS / 2) {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, PseudonymError> {
    let file_error = |source| PseudonymError::File {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(file_error)?.len();
    if size > KEY_FILE_BYTES_MAX {
        return Err(PseudonymError::FileTooLarge(path.to_owned()));
    }
    let mut key = std::fs::read(path).map_err(file_error)?;
    while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        key.pop();
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_per_key_and_differ_across_keys() {
        let one = Pseudonymiser::new(b"0123456789abcdef-one").unwrap();
        let again = Pseudonymiser::new(b"0123456789abcdef-one").unwrap();
        let two = Pseudonymiser::new(b"0123456789abcdef-two").unwrap();
        let p = one.pseudonym("annotator-17");
        assert_eq!(p, again.pseudonym("annotator-17"));
        assert_ne!(p, two.pseudonym("annotator-17"));
        assert_ne!(p, one.pseudonym("annotator-18"));
        assert!(p.starts_with("a_") && p.len() == 34, "{p}");
        assert!(!p.contains("17"), "{p} looks like the id");
        // And never the key in a debug print.
        assert!(!format!("{one:?}").contains("0123"));
    }

    #[test]
    fn a_known_hmac_value() {
        // HMAC-SHA256(key = "key-of-sixteen-b", "alice"), first 16 bytes,
        // as computed by Python's hmac module.
        let p = Pseudonymiser::new(b"key-of-sixteen-b").unwrap();
        assert_eq!(p.pseudonym("alice"), "a_ca80d744b481a91041c0944a27ef1dc0");
    }

    #[test]
    fn keys_come_from_a_file_or_the_environment_and_must_be_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "a-secret-of-enough-bytes\n").unwrap();
        let from_file =
            Pseudonymiser::from_source(&KeySource::File(file.display().to_string())).unwrap();
        let direct = Pseudonymiser::new(b"a-secret-of-enough-bytes").unwrap();
        assert_eq!(from_file.pseudonym("x"), direct.pseudonym("x"));
        std::fs::write(&file, "short").unwrap();
        assert!(matches!(
            Pseudonymiser::from_source(&KeySource::File(file.display().to_string())),
            Err(PseudonymError::KeyTooShort(5))
        ));
        assert!(matches!(
            Pseudonymiser::from_source(&KeySource::Env("DROVER_TEST_NO_SUCH_KEY".into())),
            Err(PseudonymError::EnvMissing(_))
        ));
        assert!(matches!(
            Pseudonymiser::from_source(&KeySource::File(
                dir.path().join("missing").display().to_string()
            )),
            Err(PseudonymError::File { .. })
        ));
    }
}
