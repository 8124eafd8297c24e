//! Replays every kept fuzz input (`fuzz/corpus/TARGET/*`) through its
//! target's check, on the stable toolchain: what the fuzzer found once
//! stays fixed. Each corpus holds hand-written seeds too (valid specs,
//! realistic entry runs and request runs, written by `seeds.rs`), so the
//! replay also checks the paths real use takes.

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, check: fn(&[u8])) {
    let files = corpus(target);
    assert!(!files.is_empty(), "the {target} corpus is empty");
    for file in &files {
        let data = std::fs::read(file).unwrap();
        // Name the input in the failure, so it can be run under the fuzzer
        // (`cargo +nightly fuzz run TARGET FILE`).
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{} fails its check", file.display());
    }
}

#[test]
fn the_spec_corpus_replays_cleanly() {
    replay("spec", drover_fuzzing::spec);
}

#[test]
fn the_log_entries_corpus_replays_cleanly() {
    replay("log_entries", drover_fuzzing::log_entries);
}

#[test]
fn the_grpc_requests_corpus_replays_cleanly() {
    replay("grpc_requests", drover_fuzzing::grpc_requests);
}

#[test]
fn the_grpc_seeds_still_reach_the_end_of_a_workers_loop() {
    // A changed protocol or id scheme leaves the seeds as requests that are
    // refused early, which checks little: write them again (`seeds.rs`).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/grpc_requests");
    let data = std::fs::read(dir.join("worker-loop.bin")).unwrap();
    let answers = drover_fuzzing::run(&data);
    assert_eq!(answers.len(), 21, "worker-loop.bin: write the seeds again");
    for (rpc, code) in answers {
        assert_eq!(
            code,
            Some(tonic::Code::Ok),
            "worker-loop.bin: {rpc:?} was refused; write the seeds again"
        );
    }
}

#[test]
fn the_entry_seeds_still_decode() {
    // A changed entry format leaves the seeds as bytes that decode to
    // nothing, which checks nothing: write them again (`seeds.rs`).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/log_entries");
    let data = std::fs::read(dir.join("lease-complete.bin")).unwrap();
    let mut rest = data.as_slice();
    let mut decoded = 0;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_le_bytes(*len));
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        decoded += usize::from(drover_coordinator::raft::entry::decode(payload).is_some());
    }
    assert_eq!(decoded, 6, "lease-complete.bin: write the seeds again");
}
