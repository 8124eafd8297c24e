//! What the state machine benches share: a worker, and one lease of up to
//! N tasks followed by their completions, as the driver applies them.

// Each bench is its own crate and uses only part of this module.
#![allow(dead_code)]

use drover_coordinator::state::changes::Changes;
use drover_coordinator::state::{Command, LogEntry, Manifest, Outcome, StateMachine};

/// Registers worker `w` with room for any lease the benches ask for.
pub fn register_worker(sm: &mut StateMachine, now: i64) {
    sm.apply(&LogEntry {
        now_ms: now,
        commands: vec![Command::RegisterWorker {
            worker: "w".into(),
            slots: 4096,
            labels: Default::default(),
            kinds: vec![],
        }],
    });
}

/// One entry leasing up to `max_tasks` tasks to `w`, the next completing
/// them all; returns how many were granted. The change set is taken after
/// each, as the driver hands it to storage: left to grow over a run, it
/// would skew the figure.
pub fn lease_and_complete(sm: &mut StateMachine, now: i64, max_tasks: u32) -> usize {
    lease_and_complete_with(sm, now, max_tasks, |_, changes| drop(changes))
}

/// [`lease_and_complete`], handing each entry's change set to `persist`.
pub fn lease_and_complete_with(
    sm: &mut StateMachine,
    now: i64,
    max_tasks: u32,
    mut persist: impl FnMut(&StateMachine, Changes),
) -> usize {
    let leased = sm.apply(&LogEntry {
        now_ms: now,
        commands: vec![Command::Lease {
            worker: "w".into(),
            max_tasks,
        }],
    });
    let Ok(Outcome::Leased(grants)) = &leased[0] else {
        panic!("{leased:?}")
    };
    let changes = sm.take_changes();
    persist(sm, changes);
    let completes: Vec<Command> = grants
        .iter()
        .map(|g| Command::Complete {
            worker: "w".into(),
            task: g.task,
            token: g.token,
            manifest: Manifest::default(),
            skipped: false,
        })
        .collect();
    let granted = completes.len();
    sm.apply(&LogEntry {
        now_ms: now,
        commands: completes,
    });
    let changes = sm.take_changes();
    persist(sm, changes);
    granted
}
