//! The bytes of a Raft entry's payload: a format byte, then the
//! [`LogEntry`] in postcard. Every node decodes what any node wrote, so the
//! format is versioned, and a node refuses an entry of a format it does not
//! know rather than misreading it.

use crate::state::LogEntry;

/// Encoding version of a log entry's payload. Version 2: `SubmitJob`
/// carries a `traceparent`.
pub const ENTRY_FORMAT: u8 = 2;

/// The payload of `entry`.
pub fn encode(entry: &LogEntry) -> Vec<u8> {
    let mut data = vec![ENTRY_FORMAT];
    data.extend(postcard::to_stdvec(entry).unwrap_or_default());
    data
}

/// The entry in `data`; `None` for another format or bytes that do not
/// decode.
pub fn decode(data: &[u8]) -> Option<LogEntry> {
    let (version, body) = data.split_first()?;
    if *version != ENTRY_FORMAT {
        return None;
    }
    postcard::from_bytes(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_another_format_is_refused() {
        let entry = LogEntry {
            now_ms: 42,
            commands: Vec::new(),
        };
        let data = encode(&entry);
        assert_eq!(data[0], ENTRY_FORMAT);
        assert_eq!(decode(&data), Some(entry));
        let mut other = data.clone();
        other[0] = ENTRY_FORMAT + 1;
        assert_eq!(decode(&other), None);
        assert_eq!(decode(&[]), None);
    }
}
