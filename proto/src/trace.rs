//! W3C trace context: the `traceparent` value that travels in the
//! [`TRACEPARENT_METADATA_KEY`](crate::TRACEPARENT_METADATA_KEY) request
//! metadata and in `LeasedTask.trace_parent`.
//!
//! The format is `00-<trace id>-<parent id>-<flags>`: version `00`, 32 and
//! 16 lowercase hex digits for the ids (neither all zeros) and 2 for the
//! flags, 55 characters in all. This module parses and prints it; it draws
//! no random numbers, so callers that start a new trace pass their own
//! random bytes to [`TraceParent::root`].

use std::fmt;
use std::str::FromStr;

/// Length of a version-00 `traceparent`.
pub const TRACE_PARENT_LEN: usize = 55;

/// The `sampled` bit of the trace flags.
const FLAG_SAMPLED: u8 = 0x01;

/// A parsed W3C `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// Identifies the whole trace; every span of it shares this id.
    trace_id: [u8; 16],
    /// The span of the caller, which our spans are children of.
    parent_id: [u8; 8],
    /// Trace flags (bit 0: the caller sampled this trace).
    flags: u8,
}

/// Why a `traceparent` value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    /// Not 55 characters long.
    #[error("a traceparent is {TRACE_PARENT_LEN} characters")]
    Length,
    /// A version other than `00`.
    #[error("only traceparent version 00 is understood")]
    Version,
    /// Dashes misplaced, or a digit that is not lowercase hex.
    #[error("a traceparent is 00-<32 hex>-<16 hex>-<2 hex> in lowercase hex")]
    Syntax,
    /// A trace or parent id of all zeros, which the standard forbids.
    #[error("a traceparent id is all zeros")]
    ZeroId,
}

impl TraceParent {
    /// A trace parent from its parts; `None` when an id is all zeros.
    pub fn new(trace_id: [u8; 16], parent_id: [u8; 8], flags: u8) -> Option<Self> {
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The start of a new, sampled trace from 24 random bytes (16 for the
    /// trace id, 8 for the root span id). A zero id, which has odds of
    /// 2^-64 or less, gets its last bit set so the result is always valid.
    pub fn root(random: [u8; 24]) -> Self {
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        trace_id.copy_from_slice(&random[..16]);
        parent_id.copy_from_slice(&random[16..]);
        if trace_id == [0; 16] {
            trace_id[15] = 1;
        }
        if parent_id == [0; 8] {
            parent_id[7] = 1;
        }
        Self {
            trace_id,
            parent_id,
            flags: FLAG_SAMPLED,
        }
    }

    /// Parses a `traceparent` value; see the module doc for the format.
    pub fn parse(text: &str) -> Result<Self, TraceParentError> {
        let bytes = text.as_bytes();
        if bytes.len() != TRACE_PARENT_LEN {
            return Err(TraceParentError::Length);
        }
        if [2, 35, 52].iter().any(|i| bytes[*i] != b'-') {
            return Err(TraceParentError::Syntax);
        }
        let version: [u8; 1] = hex(&bytes[0..2])?;
        if version != [0] {
            return Err(TraceParentError::Version);
        }
        let trace_id = hex(&bytes[3..35])?;
        let parent_id = hex(&bytes[36..52])?;
        let [flags] = hex(&bytes[53..55])?;
        Self::new(trace_id, parent_id, flags).ok_or(TraceParentError::ZeroId)
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        to_hex(&self.trace_id)
    }

    /// The parent (span) id as 16 lowercase hex digits.
    pub fn parent_id(&self) -> String {
        to_hex(&self.parent_id)
    }

    /// Whether the caller sampled this trace.
    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            to_hex(&self.trace_id),
            to_hex(&self.parent_id),
            self.flags
        )
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The trace id of a `traceparent` value, or `None` when it does not parse
/// (an empty value included).
pub fn trace_id_of(trace_parent: &str) -> Option<String> {
    TraceParent::parse(trace_parent).ok().map(|t| t.trace_id())
}

/// Decodes lowercase hex into exactly `N` bytes (`digits` is `2 * N` long).
fn hex<const N: usize>(digits: &[u8]) -> Result<[u8; N], TraceParentError> {
    let nibble = |d: u8| match d {
        b'0'..=b'9' => Ok(d - b'0'),
        b'a'..=b'f' => Ok(d - b'a' + 10),
        _ => Err(TraceParentError::Syntax),
    };
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Ok(out)
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the W3C recommendation.
    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_standard_example() {
        let t = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id(), "00f067aa0ba902b7");
        assert!(t.sampled());
        assert_eq!(t.to_string(), EXAMPLE);
        assert_eq!(EXAMPLE.parse::<TraceParent>(), Ok(t));
        assert_eq!(
            trace_id_of(EXAMPLE).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }

    #[test]
    fn unsampled_flags_round_trip() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let t = TraceParent::parse(text).unwrap();
        assert!(!t.sampled());
        assert_eq!(t.to_string(), text);
    }

    #[test]
    fn refuses_malformed_values() {
        let cases = [
            ("", TraceParentError::Length),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                TraceParentError::Length,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                TraceParentError::Length,
            ),
            // Uppercase hex is invalid: the standard asks for lowercase.
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                TraceParentError::Syntax,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::Syntax,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
                TraceParentError::Syntax,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::Version,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::Version,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                TraceParentError::ZeroId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                TraceParentError::ZeroId,
            ),
            // Multi-byte characters of the right byte length are refused,
            // not sliced through.
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
                TraceParentError::Syntax,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(TraceParent::parse(text), Err(want), "{text:?}");
            assert_eq!(trace_id_of(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_root_is_valid_sampled_and_uses_the_bytes_given() {
        let mut random = [0u8; 24];
        for (i, b) in random.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        let root = TraceParent::root(random);
        assert_eq!(root.trace_id(), "0102030405060708090a0b0c0d0e0f10");
        assert_eq!(root.parent_id(), "1112131415161718");
        assert!(root.sampled());
        assert_eq!(TraceParent::parse(&root.to_string()), Ok(root));
    }

    #[test]
    fn a_root_from_zero_bytes_is_still_valid() {
        let root = TraceParent::root([0; 24]);
        assert_eq!(TraceParent::parse(&root.to_string()), Ok(root));
        assert_eq!(TraceParent::new([0; 16], [1; 8], 1), None);
    }
}
