//! The sled store holds exactly the state machine's state: after random
//! histories, with the changed records persisted after every entry, loading
//! (also after reopening the files) gives a byte-identical snapshot and the
//! applied index of the last persisted entry.

use crate::support::random::{Op, Run, op};
use drover_coordinator::state::{Config, StateMachine};
use drover_coordinator::storage::{StateStore, StorageError};
use proptest::prelude::*;

/// Short retention and a small event cap so that collection and event
/// trimming happen within a test's history.
fn config() -> Config {
    Config {
        retention_ms: 90_000,
        events_per_job_max: 6,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::support::cases(48)))]

    #[test]
    fn stored_state_is_the_applied_state(
        ops in proptest::collection::vec(op(), 1..120),
        split in 0usize..200,
    ) {
        let mut run = Run::with_config(config());
        for w in 0..3 {
            run.step(&Op::Register(w)).map_err(TestCaseError::fail)?;
        }
        for op in &ops {
            run.step(op).map_err(TestCaseError::fail)?;
        }
        run.step(&Op::Advance(100_000)).map_err(TestCaseError::fail)?;

        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        prop_assert!(store.load().unwrap().is_none());
        let mut sm = StateMachine::new(config());
        let split = split.min(run.log.len());
        for (i, entry) in run.log.iter().enumerate() {
            sm.apply(entry);
            let changes = sm.take_changes();
            store.persist(&sm, &changes, i as u64 + 1).unwrap();
            if i + 1 == split {
                let (loaded, index) = store.load().unwrap().unwrap();
                prop_assert_eq!(index, split as u64);
                prop_assert_eq!(loaded.snapshot(), sm.snapshot(), "after entry {}", i + 1);
            }
        }
        let (loaded, index) = store.load().unwrap().unwrap();
        prop_assert_eq!(index, run.log.len() as u64);
        prop_assert_eq!(loaded.snapshot(), sm.snapshot());
        prop_assert_eq!(sm.snapshot(), run.sm.snapshot());

        // Reopen from the files.
        store.flush().unwrap();
        drop(store);
        let reopened = when_unlocked(|| StateStore::open(dir.path()));
        let (loaded, index) = reopened.load().unwrap().unwrap();
        prop_assert_eq!(index, run.log.len() as u64);
        prop_assert_eq!(loaded.snapshot(), sm.snapshot());
        loaded.check_invariants().map_err(TestCaseError::fail)?;
    }
}

/// Runs `open` until sled's file lock is free: a dropped database releases
/// it from a background thread, a moment after the drop.
fn when_unlocked<T, E: std::fmt::Debug>(mut open: impl FnMut() -> Result<T, E>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match open() {
            Ok(v) => return v,
            Err(e) if format!("{e:?}").contains("could not acquire lock") => {
                assert!(std::time::Instant::now() < deadline, "still locked: {e:?}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn a_store_from_another_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut sm = StateMachine::new(Config::default());
    let changes = sm.take_changes();
    store.persist(&sm, &changes, 1).unwrap();
    drop(store);
    let db = when_unlocked(|| sled::open(dir.path()));
    db.open_tree("meta")
        .unwrap()
        .insert("format", &99u32.to_be_bytes())
        .unwrap();
    db.flush().unwrap();
    drop(db);
    let store = when_unlocked(|| StateStore::open(dir.path()));
    let err = store.load().err().unwrap();
    assert!(
        matches!(err, StorageError::UnsupportedFormat { found: 99 }),
        "{err}"
    );
    assert!(err.to_string().contains("version 99"));
}

/// Records are stored 256 to a value: a template of 1,000 partitions spans
/// four task chunks, a trail of 900 events with 300 retained drops whole
/// event chunks and the head of another, and the driver writes the changes
/// of many entries at once. The store must still load exactly the state.
#[test]
fn chunks_and_coalesced_writes_load_exactly_the_applied_state() {
    let config = Config {
        events_per_job_max: 300,
        ..Config::default()
    };
    let mut h = crate::support::H::with(config);
    let job = h.submit(&crate::support::spec(
        "wide",
        "  maxParallel: 1000\n",
        "    - {name: a, kind: noop, partitions: {shards: 1000}}\n",
    ));
    h.worker("w", 1000, &[]);
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut pending = h.sm.take_changes();
    let mut index = 1;
    for round in 0..9 {
        let grants = h.lease("w", 100);
        pending.absorb(h.sm.take_changes());
        for g in &grants {
            h.complete("w", g).unwrap();
        }
        pending.absorb(h.sm.take_changes());
        index += 1;
        // Written every other round, as the driver writes every 100 ms.
        if round % 2 == 1 {
            store
                .persist(&h.sm, &std::mem::take(&mut pending), index)
                .unwrap();
            let (loaded, at) = store.load().unwrap().unwrap();
            assert_eq!(at, index);
            assert_eq!(loaded.snapshot(), h.sm.snapshot(), "after round {round}");
        }
    }
    store.persist(&h.sm, &pending, index + 1).unwrap();
    assert!(
        h.sm.core().jobs[&job].events.len() == 300,
        "retention applied"
    );
    store.flush().unwrap();
    drop(store);
    let (loaded, _) = when_unlocked(|| StateStore::open(dir.path()))
        .load()
        .unwrap()
        .unwrap();
    assert_eq!(loaded.snapshot(), h.sm.snapshot());
    loaded.check_invariants().unwrap();
}

/// The store is a cache of the checkpoint and the log, so a node opening
/// a store an older release wrote empties it and rebuilds from those
/// rather than refusing to start; a newer format is still refused.
#[test]
fn an_older_store_format_is_emptied_for_a_rebuild_and_a_newer_one_refused() {
    use drover_coordinator::raft::backend::{DiskState, StateBackend};
    use drover_coordinator::storage::STORAGE_FORMAT_VERSION;

    let set_format = |dir: &std::path::Path, format: u32| {
        let store = when_unlocked(|| StateStore::open(&dir.join("state")));
        let mut sm = StateMachine::new(Config::default());
        let changes = sm.take_changes();
        store.persist(&sm, &changes, 7).unwrap();
        drop(store);
        let db = when_unlocked(|| sled::open(dir.join("state")));
        db.open_tree("meta")
            .unwrap()
            .insert("format", &format.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    };

    let older = tempfile::tempdir().unwrap();
    set_format(older.path(), STORAGE_FORMAT_VERSION - 1);
    let state = when_unlocked(|| DiskState::open(older.path()));
    assert!(state.load().unwrap().is_none(), "the old store was kept");

    let newer = tempfile::tempdir().unwrap();
    set_format(newer.path(), STORAGE_FORMAT_VERSION + 1);
    let state = when_unlocked(|| DiskState::open(newer.path()));
    let err = state.load().err().unwrap().to_string();
    assert!(
        err.contains(&format!("format version {}", STORAGE_FORMAT_VERSION + 1)),
        "{err}"
    );
}
