//! Key encodings. Big-endian integers so that byte order is numeric order.

use crate::state::{JobId, ScheduleId, TaskKey};

/// `jobs` key.
pub fn job(id: JobId) -> [u8; 8] {
    id.0.to_be_bytes()
}

/// `tasks` and `outputs` key.
pub fn task(key: TaskKey) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[..8].copy_from_slice(&key.job.0.to_be_bytes());
    out[8..12].copy_from_slice(&key.template.to_be_bytes());
    out[12..].copy_from_slice(&key.partition.to_be_bytes());
    out
}

/// Decodes a `tasks` or `outputs` key.
pub fn parse_task(bytes: &[u8]) -> Option<TaskKey> {
    if bytes.len() != 20 {
        return None;
    }
    Some(TaskKey {
        job: JobId(u64::from_be_bytes(bytes[..8].try_into().ok()?)),
        template: u32::from_be_bytes(bytes[8..12].try_into().ok()?),
        partition: u64::from_be_bytes(bytes[12..].try_into().ok()?),
    })
}

/// `events` key.
pub fn event(job: JobId, seq: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&job.0.to_be_bytes());
    out[8..].copy_from_slice(&seq.to_be_bytes());
    out
}

/// Decodes an `events` key.
pub fn parse_event(bytes: &[u8]) -> Option<(JobId, u64)> {
    if bytes.len() != 16 {
        return None;
    }
    Some((
        JobId(u64::from_be_bytes(bytes[..8].try_into().ok()?)),
        u64::from_be_bytes(bytes[8..].try_into().ok()?),
    ))
}

/// `schedules` key.
pub fn schedule(id: ScheduleId) -> [u8; 8] {
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
