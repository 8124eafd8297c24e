//! Trace context of requests: the W3C `traceparent` a request carries,
//! checked, or a new trace started with random ids.
//!
//! Random ids are drawn here, in the service, and travel in the command:
//! the state machine only stores what the service chose, so replicas stay
//! identical.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use drover_proto::TRACEPARENT_METADATA_KEY;
use drover_proto::trace::TraceParent;
use tonic::metadata::MetadataMap;

/// The trace a request continues: the caller's `traceparent` when it is
/// valid, else a new trace. A malformed value is dropped rather than
/// refused, since tracing must never fail a request.
pub fn continue_or_start(metadata: &MetadataMap) -> TraceParent {
    let Some(value) = metadata.get(TRACEPARENT_METADATA_KEY) else {
        return new_root();
    };
    match value.to_str().ok().map(TraceParent::parse) {
        Some(Ok(parent)) => parent,
        _ => {
            tracing::debug!("malformed traceparent dropped; starting a new trace");
            new_root()
        }
    }
}

/// A new sampled trace with random trace and span ids.
pub fn new_root() -> TraceParent {
    let mut random = [0u8; 24];
    if getrandom::fill(&mut random).is_err() {
        random = fallback_random();
    }
    TraceParent::root(random)
}

/// Unpredictable enough bytes for trace ids should the OS source fail:
/// std's randomly keyed hasher over a counter and the time. Trace ids need
/// to be unique, not secret.
fn fallback_random() -> [u8; 24] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut out = [0u8; 24];
    for chunk in out.chunks_exact_mut(8) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(nanos);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert(TRACEPARENT_METADATA_KEY, value.parse().unwrap());
        m
    }

    #[test]
    fn a_valid_traceparent_is_continued() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(continue_or_start(&metadata(text)).to_string(), text);
    }

    #[test]
    fn a_missing_or_malformed_traceparent_starts_a_new_trace() {
        let malformed = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
        let a = continue_or_start(&MetadataMap::new());
        let b = continue_or_start(&metadata(malformed));
        assert_ne!(a.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(b.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(a, b, "each new trace has its own ids");
        for t in [a, b] {
            assert!(t.sampled());
            assert_eq!(TraceParent::parse(&t.to_string()), Ok(t));
        }
    }

    #[test]
    fn fallback_bytes_differ_between_calls() {
        assert_ne!(fallback_random(), fallback_random());
    }
}
