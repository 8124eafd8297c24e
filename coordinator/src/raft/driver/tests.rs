use super::*;
use crate::raft::entry::ENTRY_FORMAT;
use crate::raft::mem_log::MemLog;
use crate::raft::mem_state::MemState;
use raft::Storage;
use raft::prelude::Entry;

struct NoNetwork;

impl Transport for NoNetwork {
    fn send(&self, _messages: Vec<Message>) {}
    fn set_peer(&self, _id: u64, _address: Option<String>) {}
}

fn config() -> NodeConfig {
    let mut config = NodeConfig::new(2, "/nonexistent/drover-test");
    config.peers = (1..=3).map(|id| (id, format!("mem:{id}"))).collect();
    config
}

fn voters() -> ConfState {
    ConfState {
        voters: vec![1, 2, 3],
        ..ConfState::default()
    }
}

fn bootstrapped() -> MemLog {
    let mut log = MemLog::new();
    log.bootstrap(voters()).unwrap();
    log
}

fn entries(indexes: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    indexes
        .map(|index| Entry {
            index,
            term,
            ..Entry::default()
        })
        .collect()
}

/// A snapshot from a leader at `index`/`term`, as `install_snapshot`
/// writes it to the checkpoint before the log adopts it.
fn checkpoint_from_leader(state: &mut MemState, index: u64, term: u64) {
    let payload = SnapshotPayload {
        members: config().peers,
        state: StateMachine::new(config().state_config).snapshot(),
    };
    let mut snapshot = Snapshot::default();
    snapshot.set_data(postcard::to_stdvec(&payload).unwrap().into());
    snapshot.mut_metadata().index = index;
    snapshot.mut_metadata().term = term;
    snapshot.mut_metadata().set_conf_state(voters());
    state
        .write_checkpoint(&snapshot.write_to_bytes().unwrap())
        .unwrap();
}

/// Monotonic time `mono_ms`, on a wall clock that does not move.
fn at(mono_ms: u64) -> Now {
    Now {
        mono_ms,
        wall_ms: 1_780_272_000_000,
    }
}

/// Opens the disk state in `dir`, waiting while a just-dropped sled
/// database still holds its lock (released from a background thread).
fn disk_state_when_unlocked(dir: &std::path::Path) -> crate::raft::backend::DiskState {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match crate::raft::backend::DiskState::open(dir) {
            Ok(state) => return state,
            Err(e) if e.to_string().contains("could not acquire lock") => {
                assert!(std::time::Instant::now() < deadline, "still locked: {e}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// A single-voter cluster in memory that has elected itself (at 1 ms).
fn lone_voter() -> DriverCore<MemLog, MemState> {
    let mut config = NodeConfig::new(1, "/nonexistent/drover-test");
    config.peers = [(1, "mem:1".to_owned())].into();
    let mut core = DriverCore::open(
        config,
        MemLog::new(),
        MemState::new(),
        Box::new(NoNetwork),
        at(0),
    )
    .expect("the node opens");
    core.campaign_if_alone();
    core.turn(at(1)).unwrap();
    core
}

fn open(log: MemLog, state: MemState) -> Result<DriverCore<MemLog, MemState>, NodeError> {
    let now = Now {
        mono_ms: 0,
        wall_ms: 0,
    };
    DriverCore::open(config(), log, state, Box::new(NoNetwork), now)
}

#[test]
fn a_committed_entry_in_an_unknown_format_stops_the_node_with_a_clear_error() {
    // Written by a newer release (a mixed-version cluster mid-upgrade):
    // applying anything else would make this replica diverge.
    let mut log = bootstrapped();
    let mut newer = entries(2..=2, 2);
    newer[0].data = vec![ENTRY_FORMAT + 1, 0, 0].into();
    let committed = raft::prelude::HardState {
        term: 2,
        commit: 2,
        ..raft::prelude::HardState::default()
    };
    log.persist(&newer, Some(&committed), true).unwrap();
    let mut core = open(log, MemState::new()).expect("the node opens");
    let now = Now {
        mono_ms: 1,
        wall_ms: 0,
    };
    let err = core.turn(now).unwrap_err().to_string();
    assert!(
        err.contains("committed log entry 2 is not in entry format 2 (its first byte is 3)")
            && err.contains("upgrade it"),
        "{err}"
    );
    assert_eq!(core.status().applied_index, 1);
}

#[test]
fn a_crash_after_a_received_snapshot_was_saved_finishes_its_install_on_restart() {
    // The log ends at 6; the leader's snapshot at 8 was saved, then the
    // node crashed before the log adopted it.
    let mut log = bootstrapped();
    log.persist(&entries(2..=6, 2), None, true).unwrap();
    let mut state = MemState::new();
    checkpoint_from_leader(&mut state, 8, 3);
    let core = open(log, state).expect("the node starts");
    let status = core.status();
    assert_eq!(status.applied_index, 8);
    assert_eq!(status.snapshot_index, 8);
    assert_eq!(core.raw.store().first_index().unwrap(), 9);
}

#[test]
fn a_received_snapshot_replaces_a_log_tail_from_another_term_on_restart() {
    // The log holds term-2 entries past 6 that the leader's term-3
    // snapshot at 6 overrides.
    let mut log = bootstrapped();
    log.persist(&entries(2..=9, 2), None, true).unwrap();
    let mut state = MemState::new();
    checkpoint_from_leader(&mut state, 6, 3);
    let core = open(log, state).expect("the node starts");
    assert_eq!(core.status().snapshot_index, 6);
    assert_eq!(core.raw.store().last_index().unwrap(), 6);
    assert_eq!(core.raw.store().term(6).unwrap(), 3);
}

#[test]
fn a_learner_that_never_answered_is_not_promoted_while_the_log_is_short() {
    // A lone voter that has written only a few entries: every learner
    // is within a few entries of its log, so only an acknowledged entry
    // may count as catching up. Promoting a learner that is not there
    // (a wrong address in AddNode) would cost the cluster its quorum,
    // and with it the means to remove the learner again.
    let mut core = lone_voter();
    let (added, mut adding) = reply::channel();
    core.change_members(
        conf_change(ConfChangeType::AddLearnerNode, 2),
        Some((2, "mem:2".to_owned())),
        added,
    );
    // Well past any election timeout, a tick per turn.
    let mut ms = 1;
    for _ in 0..100 {
        ms += 100;
        core.turn(at(ms)).unwrap();
    }
    assert_eq!(adding.try_recv(), Ok(Ok(())), "the learner was added");
    let status = core.status();
    let learner = status.members.iter().find(|m| m.id == 2);
    assert!(
        learner.is_some_and(|m| !m.voter),
        "a learner that never answered stays a learner: {status:?}"
    );
    assert!(status.is_leader, "the lone voter still leads: {status:?}");
    let (tx, mut rx) = reply::channel();
    core.propose(vec![Command::Tick], tx);
    core.turn(at(ms + 1)).unwrap();
    assert!(
        matches!(rx.try_recv(), Ok(Ok(_))),
        "the lone voter still commits"
    );
}

#[test]
fn a_local_checkpoint_the_log_agrees_with_is_only_cached() {
    let mut log = bootstrapped();
    log.persist(&entries(2..=9, 3), None, true).unwrap();
    let mut state = MemState::new();
    checkpoint_from_leader(&mut state, 6, 3);
    let core = open(log, state).expect("the node starts");
    assert_eq!(core.status().applied_index, 6);
    assert_eq!(core.raw.store().last_index().unwrap(), 9);
    assert_eq!(
        core.raw
            .store()
            .snapshot(0, 1)
            .unwrap()
            .get_metadata()
            .index,
        6
    );
}

#[test]
fn on_disk_a_checkpoint_is_copied_on_the_raft_thread_and_written_and_adopted_off_it() {
    use crate::raft::log_store::LogStore;
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::new(1, dir.path());
    config.peers = [(1, "mem:1".to_owned())].into();
    config.checkpoint_entries = 5;
    let at = |mono_ms| Now {
        mono_ms,
        wall_ms: 1_780_272_000_000,
    };
    let open = |config: NodeConfig| {
        DriverCore::open(
            config,
            LogStore::open(&dir.path().join("raft")).unwrap(),
            disk_state_when_unlocked(dir.path()),
            Box::new(NoNetwork),
            at(0),
        )
        .expect("the node opens")
    };
    let mut core = open(config.clone());
    core.campaign_if_alone();
    let mut ms = 1;
    let mut job = None;
    while job.is_none() {
        let (tx, _rx) = reply::channel();
        core.propose(vec![Command::Tick], tx);
        ms += 1;
        core.turn(at(ms)).unwrap();
        job = core.take_checkpoint_job();
        assert!(ms < 100, "no checkpoint was staged");
    }
    let job = job.unwrap();
    let index = job.index;
    assert_eq!(
        core.status().snapshot_index,
        BOOTSTRAP_INDEX,
        "staging neither writes nor compacts on the Raft thread"
    );
    // While it is written, entries keep applying and no second copy is
    // taken.
    for _ in 0..10 {
        let (tx, _rx) = reply::channel();
        core.propose(vec![Command::Tick], tx);
        ms += 1;
        core.turn(at(ms)).unwrap();
        assert!(core.take_checkpoint_job().is_none());
    }
    core.checkpoint_staged(job.run());
    assert_eq!(core.status().snapshot_index, index);
    assert_eq!(core.raw.store().first_index().unwrap(), index + 1);
    let applied = core.status().applied_index;
    core.close();
    drop(core);
    // A restart starts from the adopted checkpoint and replays the rest.
    let core = open(config);
    assert_eq!(core.status().snapshot_index, index);
    assert_eq!(core.status().applied_index, applied);
}

#[test]
fn a_busy_leader_holds_proposals_into_larger_entries_and_an_idle_one_does_not() {
    let mut core = lone_voter();
    // Idle: a proposal goes out on the turn it arrives.
    let (tx, mut rx) = reply::channel();
    core.propose(vec![Command::Tick; BUSY_ENTRY_COMMANDS], tx);
    core.turn(at(2)).unwrap();
    assert!(matches!(rx.try_recv(), Ok(Ok(_))), "proposed at once");
    // That entry was a busy one's: the next proposal (queued as of the
    // last turn, at 2) waits to be packed with more, and the driver
    // asks to be woken when the hold ends.
    let (tx, mut rx) = reply::channel();
    core.propose(vec![Command::Tick], tx);
    core.turn(at(3)).unwrap();
    assert!(rx.try_recv().is_err(), "held while busy");
    assert_eq!(core.next_tick_ms(), 2 + BUSY_HOLD_MS);
    core.turn(at(1 + BUSY_HOLD_MS)).unwrap();
    assert!(rx.try_recv().is_err(), "still held");
    core.turn(at(2 + BUSY_HOLD_MS)).unwrap();
    assert!(
        matches!(rx.try_recv(), Ok(Ok(_))),
        "proposed when the hold ends"
    );
    // A small entry ends the busy spell.
    let (tx, mut rx) = reply::channel();
    core.propose(vec![Command::Tick], tx);
    core.turn(at(3 + BUSY_HOLD_MS)).unwrap();
    assert!(matches!(rx.try_recv(), Ok(Ok(_))), "idle again");
}
