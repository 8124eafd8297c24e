//! The Raft log's append path: [`LogStore::persist`] writing a `Ready`'s
//! entries and hard state into raft-engine, in a temporary directory.
//!
//! `log_append/<payload>_<fsync|nosync>/N`: one persist of N entries, each
//! carrying a payload of 200 bytes (a few lease and completion commands) or
//! 64 KiB (a large spec, or completions carrying manifests), with `sync` on
//! (what a leader does for every `Ready`) or off. Throughput is entries and payload bytes per
//! second.
//!
//! The payload is pseudo-random, so it does not compress: raft-engine LZ4-
//! compresses every batch above 8 KiB, and on random bytes that costs CPU
//! and saves nothing, the worst case. Real entries (postcard-encoded
//! commands) compress somewhat.
//!
//! Each criterion sample writes into a fresh log, because Drover never
//! purges raft-engine's files and a long run would otherwise fill the disk;
//! opening the log and removing it are not timed.
//!
//! Run: `cargo bench -p drover-coordinator --bench log_append`.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use drover_coordinator::raft::backend::LogBackend;
use drover_coordinator::raft::log_store::LogStore;
use raft::prelude::{ConfState, Entry, HardState};

const PAYLOADS: [(&str, usize); 2] = [("200B", 200), ("64KiB", 64 * 1024)];
const BATCHES: [usize; 3] = [1, 64, 1024];
const TERM: u64 = 2;
/// Writes above this size get [`FEW_SAMPLES`] samples instead of 100.
const LARGE_WRITE_BYTES: usize = 1 << 20;
const FEW_SAMPLES: usize = 10;

/// Deterministic incompressible bytes (xorshift64).
fn payload(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Opens a fresh log in `dir`, bootstrapped as a single voter the way a new
/// node starts, and returns it with the index its next entry takes.
fn fresh_log(dir: &std::path::Path) -> (LogStore, u64) {
    let mut log = LogStore::open(dir).unwrap();
    log.bootstrap(ConfState {
        voters: vec![1],
        ..ConfState::default()
    })
    .unwrap();
    let next_index = log.snapshot_meta().index + 1;
    (log, next_index)
}

/// Times `iters` persists of `entries` into a fresh log.
fn append(entries: &mut [Entry], sync: bool, iters: u64) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut next_index) = fresh_log(dir.path());
    let mut hard_state = HardState {
        term: TERM,
        vote: 1,
        commit: next_index - 1,
        ..HardState::default()
    };
    let started = Instant::now();
    for _ in 0..iters {
        for entry in entries.iter_mut() {
            entry.index = next_index;
            next_index += 1;
        }
        // A leader's Ready usually carries new entries together with a
        // commit index advanced by earlier ones, so the hard state is
        // written with every batch.
        log.persist(entries, Some(&hard_state), sync).unwrap();
        hard_state.commit = next_index - 1;
    }
    let elapsed = started.elapsed();
    drop(log);
    drop(dir);
    elapsed
}

fn log_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_append");
    for (label, payload_bytes) in PAYLOADS {
        let data = payload(payload_bytes);
        for sync in [true, false] {
            let mode = if sync { "fsync" } else { "nosync" };
            for batch in BATCHES {
                let mut entries: Vec<Entry> = (0..batch)
                    .map(|_| Entry {
                        term: TERM,
                        data: data.clone().into(),
                        ..Entry::default()
                    })
                    .collect();
                group.throughput(Throughput::ElementsAndBytes {
                    elements: batch as u64,
                    bytes: (batch * payload_bytes) as u64,
                });
                // A 64 MiB write takes long enough that the default 100
                // samples would make this one benchmark last minutes.
                let samples = if batch * payload_bytes > LARGE_WRITE_BYTES {
                    FEW_SAMPLES
                } else {
                    100
                };
                group.sample_size(samples);
                group.bench_function(BenchmarkId::new(format!("{label}_{mode}"), batch), |b| {
                    b.iter_custom(|iters| append(&mut entries, sync, iters));
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, log_append);
criterion_main!(benches);
