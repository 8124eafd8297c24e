//! Key encodings. Big-endian integers so that byte order is numeric order.

use crate::state::{JobId, ScheduleId, TaskKey};

/// `jobs` key, and the prefix of every key of the job's records.
pub fn job(id: JobId) -> [u8; 16] {
    id.0.to_be_bytes()
}

/// `tasks`, `outputs` and `history` key.
pub fn task(key: TaskKey) -> [u8; 28] {
    let mut out = [0u8; 28];
    out[..16].copy_from_slice(&key.job.0.to_be_bytes());
    out[16..20].copy_from_slice(&key.template.to_be_bytes());
    out[20..].copy_from_slice(&key.partition.to_be_bytes());
    out
}

/// Decodes a `tasks`, `outputs` or `history` key.
pub fn parse_task(bytes: &[u8]) -> Option<TaskKey> {
    if bytes.len() != 28 {
        return None;
    }
    Some(TaskKey {
        job: JobId(u128::from_be_bytes(bytes[..16].try_into().ok()?)),
        template: u32::from_be_bytes(bytes[16..20].try_into().ok()?),
        partition: u64::from_be_bytes(bytes[20..].try_into().ok()?),
    })
}

/// `events` key.
pub fn event(job: JobId, seq: u64) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..16].copy_from_slice(&job.0.to_be_bytes());
    out[16..].copy_from_slice(&seq.to_be_bytes());
    out
}

/// Decodes an `events` key.
pub fn parse_event(bytes: &[u8]) -> Option<(JobId, u64)> {
    if bytes.len() != 24 {
        return None;
    }
    Some((
        JobId(u128::from_be_bytes(bytes[..16].try_into().ok()?)),
        u64::from_be_bytes(bytes[16..].try_into().ok()?),
    ))
}

/// `schedules` key.
pub fn schedule(id: ScheduleId) -> [u8; 16] {
    id.0.to_be_bytes()
}

/// `idempotency` key: namespace names cannot contain NUL.
pub fn idempotency(namespace: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(namespace.len() + key.len() + 1);
    out.extend_from_slice(namespace.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

/// Decodes an `idempotency` key.
pub fn parse_idempotency(bytes: &[u8]) -> Option<(String, String)> {
    let split = bytes.iter().position(|b| *b == 0)?;
    Some((
        String::from_utf8(bytes[..split].to_vec()).ok()?,
        String::from_utf8(bytes[split + 1..].to_vec()).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_numerically() {
        let a = TaskKey {
            job: JobId(2),
            template: 1,
            partition: 255,
        };
        let b = TaskKey {
            job: JobId(2),
            template: 1,
            partition: 256,
        };
        assert_eq!(parse_task(&task(a)), Some(a));
        assert!(task(a) < task(b));
        assert!(event(JobId(1), u64::MAX) < event(JobId(2), 0));
        assert_eq!(parse_event(&event(JobId(9), 4)), Some((JobId(9), 4)));
        assert_eq!(
            parse_idempotency(&idempotency("ns", "k:1")),
            Some(("ns".into(), "k:1".into()))
        );
    }
}
