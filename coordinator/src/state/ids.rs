//! Job and schedule ids: UUIDv7, drawn in the state machine, and resolved
//! from the prefixes people type.
//!
//! A UUIDv7 is the time in milliseconds (48 bits) and 74 other bits. The
//! time is the log entry's (`now_ms`), the same on every replica. The next
//! 30 bits are a counter (so ids of one millisecond sort in creation
//! order, as RFC 9562's "fixed-length dedicated counter" method has it),
//! the last 44 are from the SHA-256 of the cluster's id seed and the
//! counter: all deterministic, while ids never repeat:
//!
//! - within a cluster, the counter never repeats;
//! - across clusters, the seed differs: it is drawn from the first
//!   submit's trace id, which the service draws at random
//!   (`crate::service::trace`), and the time of it;
//! - a cluster restored from a backup gets a new seed
//!   ([`super::restore`]), so the ids it hands out differ from those the
//!   backed-up cluster gave after the backup, at the same counter.
//!
//! Ids are time-ordered, so listing by id lists by creation. Jobs and
//! schedules created before ids were UUIDs keep their numbers (`j42`).
//!
//! Nothing else needs a global id: task ids are `JOB/TEMPLATE/PARTITION`
//! within their job's id, attempt prefixes add the fencing token (unique
//! across the cluster and gapped on restore), worker ids are chosen by the
//! workers, and API tokens carry random ids of their own.

use sha2::{Digest, Sha256};

use super::StateMachine;
use super::types::{JobId, LEGACY_ID_MAX, ScheduleId, TaskKey, shown};

/// Fewest hex digits of a prefix: shorter ones match too much to be worth
/// a lookup (and the first 8 are the time, which jobs submitted within a
/// minute share).
pub const PREFIX_DIGITS_MIN: usize = 4;

/// Fewest characters of an id tables show.
pub const SHORT_ID_MIN: usize = 8;

/// A job or a scheduled job, as one id names either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobRef {
    /// A one-off job or a run of a schedule.
    Job(JobId),
    /// A scheduled job.
    Schedule(ScheduleId),
}

impl std::fmt::Display for JobRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobRef::Job(id) => id.fmt(f),
            JobRef::Schedule(id) => id.fmt(f),
        }
    }
}

/// Why an id from a request names nothing, or more than one thing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdLookupError {
    /// Not an id or a prefix of one.
    #[error(
        "`{0}` is not a job id: give the id `job list` shows, or at least {PREFIX_DIGITS_MIN} of its first hex digits"
    )]
    Malformed(String),
    /// No job or schedule has it.
    #[error("unknown job {0}")]
    Unknown(String),
    /// A prefix of several ids.
    #[error("`{prefix}` is the start of several ids ({}); give more of the id", matches.join(", "))]
    Ambiguous {
        /// As given.
        prefix: String,
        /// A few of the ids it starts.
        matches: Vec<String>,
    },
}

/// Which counter an id draws from.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Job = 1,
    Schedule = 2,
}

impl StateMachine {
    /// A new job id; `entropy` is the submit's trace context, used once to
    /// seed a cluster's ids.
    pub(super) fn new_job_id(&mut self, entropy: Option<&str>) -> JobId {
        JobId(self.draw_unused(Kind::Job, self.core.next_job, entropy))
    }

    /// A new schedule id.
    pub(super) fn new_schedule_id(&mut self, entropy: Option<&str>) -> ScheduleId {
        ScheduleId(self.draw_unused(Kind::Schedule, self.core.next_schedule, entropy))
    }

    /// The first draw for `counter` that no job or schedule of `kind` has.
    fn draw_unused(&mut self, kind: Kind, counter: u64, entropy: Option<&str>) -> u128 {
        let mut attempt = 0;
        loop {
            let id = self.draw(kind, counter, attempt, entropy);
            let taken = match kind {
                Kind::Job => self.core.jobs.contains_key(&JobId(id)),
                Kind::Schedule => self.core.schedules.contains_key(&ScheduleId(id)),
            };
            if !taken {
                return id;
            }
            attempt += 1;
        }
    }

    /// A UUIDv7 at the entry's time from the seed, `kind`, `counter` and
    /// `attempt` (non-zero only should two draws ever collide).
    fn draw(&mut self, kind: Kind, counter: u64, attempt: u32, entropy: Option<&str>) -> u128 {
        if self.core.id_seed == 0 {
            self.core.id_seed = seed(&[
                b"drover id seed".as_slice(),
                &self.core.now_ms.to_le_bytes(),
                entropy.unwrap_or_default().as_bytes(),
                &counter.to_le_bytes(),
            ]);
        }
        let digest = Sha256::new()
            .chain_update(self.core.id_seed.to_le_bytes())
            .chain_update([kind as u8])
            .chain_update(counter.to_le_bytes())
            .chain_update(attempt.to_le_bytes())
            .finalize();
        // After the version and variant bits, the counter's low 30 bits
        // come first, so ids drawn in the same millisecond still sort in
        // creation order; 44 bits of the digest follow.
        let c = counter;
        let random = [
            ((c >> 26) & 0x0f) as u8,
            (c >> 18) as u8,
            ((c >> 12) & 0x3f) as u8,
            (c >> 4) as u8,
            (((c & 0x0f) as u8) << 4) | (digest[0] & 0x0f),
            digest[1],
            digest[2],
            digest[3],
            digest[4],
            digest[5],
        ];
        let millis = u64::try_from(self.core.now_ms).unwrap_or(0);
        let id = uuid::Builder::from_unix_timestamp_millis(millis, &random)
            .into_uuid()
            .as_u128();
        debug_assert!(id > LEGACY_ID_MAX || millis == 0);
        id
    }

    /// A new seed for ids after a restore: a function of the old one and
    /// where the restored state stands, so every member computes the same.
    pub(super) fn reseed_ids(&mut self) {
        self.core.id_seed = seed(&[
            b"drover id seed after restore".as_slice(),
            &self.core.id_seed.to_le_bytes(),
            &self.core.next_token.to_le_bytes(),
            &self.core.now_ms.to_le_bytes(),
        ]);
    }

    /// The job or schedule `text` names: a whole id, or a prefix of at
    /// least [`PREFIX_DIGITS_MIN`] hex digits (dashes optional) that starts
    /// exactly one id.
    pub fn resolve_id(&self, text: &str) -> Result<JobRef, IdLookupError> {
        let text = text.trim();
        if let Some(n) = text.strip_prefix('j').and_then(|n| n.parse::<u64>().ok()) {
            return Ok(JobRef::Job(JobId(u128::from(n))));
        }
        if let Some(n) = text.strip_prefix('s').and_then(|n| n.parse::<u64>().ok()) {
            return Ok(JobRef::Schedule(ScheduleId(u128::from(n))));
        }
        let digits: String = text
            .chars()
            .filter(|c| *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if digits.len() < PREFIX_DIGITS_MIN
            || digits.len() > 32
            || !digits.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(IdLookupError::Malformed(shown(text)));
        }
        // A prefix of n digits is the range of ids from it padded with 0s
        // to it padded with fs.
        let low = u128::from_str_radix(&format!("{digits:0<32}"), 16)
            .map_err(|_| IdLookupError::Malformed(shown(text)))?;
        let high = u128::from_str_radix(&format!("{digits:f<32}"), 16)
            .map_err(|_| IdLookupError::Malformed(shown(text)))?;
        let mut found: Vec<JobRef> = self
            .core
            .jobs
            .range(JobId(low)..=JobId(high))
            .take(3)
            .map(|(id, _)| JobRef::Job(*id))
            .collect();
        found.extend(
            self.core
                .schedules
                .range(ScheduleId(low)..=ScheduleId(high))
                .take(3)
                .map(|(id, _)| JobRef::Schedule(*id)),
        );
        match found.as_slice() {
            [] => Err(IdLookupError::Unknown(shown(text))),
            [one] => Ok(*one),
            many => Err(IdLookupError::Ambiguous {
                prefix: shown(text),
                matches: many.iter().map(ToString::to_string).collect(),
            }),
        }
    }

    /// The shortest start of `id`'s text, at least [`SHORT_ID_MIN`]
    /// characters and never ending on a dash, that no other job's or
    /// schedule's id shares now; an id from before UUIDs (`j42`) whole.
    pub fn short_id(&self, id: JobRef) -> String {
        let text = id.to_string();
        let raw = match id {
            JobRef::Job(j) => j.0,
            JobRef::Schedule(s) => s.0,
        };
        if raw <= LEGACY_ID_MAX {
            return text;
        }
        use std::ops::Bound::{Excluded, Unbounded};
        let jobs = &self.core.jobs;
        let schedules = &self.core.schedules;
        let neighbours = [
            jobs.range(..JobId(raw)).next_back().map(|(k, _)| k.0),
            jobs.range((Excluded(JobId(raw)), Unbounded))
                .next()
                .map(|(k, _)| k.0),
            schedules
                .range(..ScheduleId(raw))
                .next_back()
                .map(|(k, _)| k.0),
            schedules
                .range((Excluded(ScheduleId(raw)), Unbounded))
                .next()
                .map(|(k, _)| k.0),
        ];
        let shared = neighbours
            .into_iter()
            .flatten()
            .map(|other| {
                let other = JobId(other).to_string();
                other
                    .bytes()
                    .zip(text.bytes())
                    .take_while(|(a, b)| a == b)
                    .count()
            })
            .max()
            .unwrap_or(0);
        let mut n = (shared + 1).max(SHORT_ID_MIN).min(text.len());
        while n < text.len() && text.as_bytes()[n - 1] == b'-' {
            n += 1;
        }
        text[..n].to_owned()
    }

    /// The task `text` names: `JOB/TEMPLATE/PARTITION`, the job part
    /// resolved as [`Self::resolve_id`] does.
    pub fn resolve_task(&self, text: &str) -> Result<TaskKey, IdLookupError> {
        let malformed = || IdLookupError::Malformed(shown(text));
        let (job, rest) = text.trim().split_once('/').ok_or_else(malformed)?;
        let JobRef::Job(job) = self.resolve_id(job)? else {
            return Err(malformed());
        };
        format!("{job}/{rest}").parse().map_err(|_| malformed())
    }
}

/// Eight bytes of SHA-256 over `parts`, never zero (zero means "not yet
/// seeded").
fn seed(parts: &[&[u8]]) -> u64 {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Config;

    #[test]
    fn ids_are_version_7_time_ordered_and_never_repeat() {
        let mut sm = StateMachine::new(Config::default());
        sm.core.now_ms = 1_780_272_000_000;
        let mut ids = Vec::new();
        for _ in 0..100 {
            let id = sm.new_job_id(Some(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ));
            sm.core.next_job += 1;
            ids.push(id);
        }
        let uuid = uuid::Uuid::from_u128(ids[0].0);
        assert_eq!(uuid.get_version_num(), 7);
        // Drawn in one millisecond, they sort in creation order.
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids);
        // A later millisecond sorts after.
        sm.core.now_ms += 1;
        let later = sm.new_job_id(None);
        assert!(ids.iter().all(|id| *id < later));
        // The same state draws the same id (replicas agree).
        let mut other = StateMachine::new(Config::default());
        other.core = sm.core.clone();
        assert_eq!(other.new_job_id(None), sm.new_job_id(None));
        // An id from before UUIDs is shown whole.
        assert_eq!(sm.short_id(JobRef::Job(JobId(42))), "j42");
        // A restore draws others.
        let before = sm.new_job_id(None);
        sm.reseed_ids();
        assert_ne!(sm.new_job_id(None), before);
    }
}
