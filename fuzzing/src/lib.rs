//! What each fuzz target checks. The cargo-fuzz crate in `fuzz/` calls
//! these on generated inputs (`cargo +nightly fuzz run TARGET`, see
//! `fuzz/README.md`), and `tests/replay.rs` runs them on every file of the
//! kept corpora (`fuzz/corpus/TARGET/`) under `cargo test`, so what the
//! fuzzer found stays fixed on the stable toolchain.
//!
//! A check panics when the code under test does something it must never
//! do: panic itself, break a state machine invariant, answer differently on
//! a second replica, or fail to restore its own snapshot.
//!
//! # Layout
//!
//! - [`spec`]: any bytes as a job spec, planned and then run on two
//!   state machine replicas.
//! - [`log_entries`]: any bytes as Raft entry payloads, applied to two
//!   replicas.
//! - [`grpc_requests`] (in `grpc.rs`): any bytes as a run of gRPC requests
//!   to the services of a real single-node coordinator.

use chrono::{DateTime, Utc};
use drover_coordinator::raft::entry;
use drover_coordinator::state::{
    Command, Config, LogEntry, Manifest, Outcome, StateMachine, SubmitJob,
};
use drover_jobspecs::LoadOptions;

mod grpc;

pub use grpc::{Answer, Call, REQUESTS_MAX, Rpc, decode_calls, encode_calls, grpc_requests, run};

/// 2026-06-01T00:00:00Z: the logical time specs are planned at.
const T0_MS: i64 = 1_780_272_000_000;

/// Tasks the spec target leases and completes at most, so a spec with a
/// million partitions still checks quickly.
const LEASES_MAX: u32 = 64;

/// The spec target: any bytes as a job spec. Planning must not panic, every
/// diagnostic must point into the text, and a spec the planner accepts must
/// be accepted by the state machine and survive a worker leasing and
/// completing its tasks with every invariant intact.
pub fn spec(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let opts = LoadOptions {
        params: Vec::new(),
        logical_time: DateTime::<Utc>::from_timestamp_millis(T0_MS).unwrap_or_default(),
    };
    let plan = drover_jobspecs::plan("fuzz.yaml", &text, &opts);
    let plan = match plan {
        Ok(plan) => plan,
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty(), "a refused spec says why");
            // Line breaks as YAML counts them: LF, CRLF and a lone CR;
            // one more line for a position just past the end.
            let breaks = text.matches('\n').count() + text.matches('\r').count()
                - text.matches("\r\n").count();
            let lines = breaks + 2;
            for d in &diagnostics {
                assert!(
                    d.line >= 1 && d.line as usize <= lines,
                    "diagnostic at line {} of a {lines}-line text: {}",
                    d.line,
                    d.message
                );
            }
            return;
        }
    };
    let mut replicas = Replicas::new();
    let submitted = replicas.apply(Command::SubmitJob(SubmitJob {
        file: "fuzz.yaml".to_owned(),
        spec_yaml: text.into_owned(),
        params: Vec::new(),
        idempotency_key: None,
        trace_parent: None,
    }));
    let Ok(Outcome::Submitted { .. }) = submitted else {
        panic!("the planner accepted a spec the state machine refused: {submitted:?} ({plan:?})");
    };
    let registered = replicas.apply(Command::RegisterWorker {
        worker: "w".to_owned(),
        slots: LEASES_MAX,
        labels: Default::default(),
        kinds: Vec::new(),
    });
    assert!(registered.is_ok(), "{registered:?}");
    // Lease and complete a few rounds of whatever is ready.
    for _ in 0..4 {
        let leased = replicas.apply(Command::Lease {
            worker: "w".to_owned(),
            max_tasks: LEASES_MAX,
        });
        let Ok(Outcome::Leased(grants)) = leased else {
            break;
        };
        if grants.is_empty() {
            break;
        }
        for g in grants {
            let completed = replicas.apply(Command::Complete {
                worker: "w".to_owned(),
                task: g.task,
                token: g.token,
                manifest: Manifest {
                    prefix: format!(
                        "jobs/{}/{}/{}/attempt-{}-{}",
                        g.task.job, g.task.template, g.task.partition, g.attempt, g.token
                    ),
                    ..Manifest::default()
                },
                skipped: false,
            });
            assert!(
                matches!(completed, Ok(Outcome::Completed { .. })),
                "the holder's completion of {} was refused: {completed:?}",
                g.task
            );
        }
    }
    replicas.finish();
}

/// The log entry target: the bytes as a run of Raft entry payloads, each a
/// little-endian `u16` length and then that many bytes. Every payload that
/// decodes is applied to two replicas, which must agree on every answer and
/// keep every invariant; at the end both must snapshot to the same bytes,
/// and the snapshot must restore to itself.
pub fn log_entries(data: &[u8]) {
    let mut replicas = Replicas::new();
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        if let Some(entry) = entry::decode(payload) {
            replicas.apply_entry(&entry);
        }
    }
    replicas.finish();
}

/// Encodes `entries` the way [`log_entries`] reads them, for seeds.
pub fn encode_entries(entries: &[LogEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let payload = entry::encode(e);
        let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&payload[..usize::from(len)]);
    }
    out
}

/// Two state machines fed the same entries, checked after each.
struct Replicas {
    a: StateMachine,
    b: StateMachine,
    now_ms: i64,
}

impl Replicas {
    fn new() -> Self {
        Self {
            a: StateMachine::new(Config::default()),
            b: StateMachine::new(Config::default()),
            now_ms: T0_MS,
        }
    }

    /// Applies one command in an entry of its own, a second later than the
    /// last.
    fn apply(&mut self, command: Command) -> drover_coordinator::state::Applied {
        self.now_ms += 1000;
        let entry = LogEntry {
            now_ms: self.now_ms,
            commands: vec![command],
        };
        self.apply_entry(&entry)
            .pop()
            .expect("one answer per command")
    }

    fn apply_entry(&mut self, entry: &LogEntry) -> Vec<drover_coordinator::state::Applied> {
        let a = self.a.apply(entry);
        let b = self.b.apply(entry);
        assert_eq!(a, b, "two replicas answered {entry:?} differently");
        assert_eq!(a.len(), entry.commands.len(), "one answer per command");
        if let Err(violation) = self.a.check_invariants() {
            panic!("invariant broken by {entry:?}: {violation}");
        }
        a
    }

    fn finish(self) {
        let snapshot = self.a.snapshot();
        assert_eq!(snapshot, self.b.snapshot(), "replicas diverged");
        let restored = StateMachine::restore(&snapshot).expect("a snapshot restores");
        assert_eq!(restored.snapshot(), snapshot, "a restored snapshot differs");
        if let Err(violation) = restored.check_invariants() {
            panic!("invariant broken after restore: {violation}");
        }
    }
}
