//! Memory per task, measured with a counting allocator: bytes held by the
//! state machine per never-run partition and per leased (materialised)
//! task, snapshot bytes per leased task, and after a whole job is drained,
//! bytes per completed task held by the state machine alone and with the
//! sled store it persists to (sled's page cache is on the heap too).
//!
//! Run: `cargo bench -p drover-coordinator --bench state_memory`, with
//! `STATE_MEMORY_PARTITIONS=10000000` for a 10M-partition job (default 1M).

// A global allocator can only be written with `unsafe`; it only counts.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use drover_coordinator::state::{Command, Config, LogEntry, Outcome, StateMachine, SubmitJob};
use drover_coordinator::storage::StateStore;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn submit(sm: &mut StateMachine, now: i64, partitions: u64) {
    sm.apply(&LogEntry {
        now_ms: now,
        commands: vec![Command::SubmitJob(SubmitJob {
            file: "m.yaml".into(),
            spec_yaml: format!("apiVersion: drover/v1\nkind: Job\nmetadata: {{name: m}}\nspec:\n  maxParallel: 1000000\n  tasks:\n    - {{name: a, kind: noop, partitions: {{shards: {partitions}}}}}\n"),
            params: vec![],
            idempotency_key: None,
            trace_parent: None,
        })],
    });
    drop(sm.take_changes());
}

/// Drains `partitions` tasks in leases of 256, each lease and its
/// completions persisted to `store` when there is one, as the driver does.
/// Returns live bytes after the drain, less those before the submit.
fn drain(partitions: u64, store: Option<&StateStore>) -> isize {
    let now = 1_780_272_000_000i64;
    let mut sm = StateMachine::new(Config::default());
    common::register_worker(&mut sm, now);
    let before = live();
    submit(&mut sm, now, partitions);
    let mut done = 0u64;
    let mut index = 10u64;
    while done < partitions {
        done += common::lease_and_complete_with(&mut sm, now, 256, |sm, changes| {
            if let Some(store) = store {
                index += 1;
                store.persist(sm, &changes, index).expect("persist");
            }
        }) as u64;
    }
    let bytes = live() - before;
    if store.is_none() {
        let started = std::time::Instant::now();
        let snapshot = sm.snapshot();
        println!(
            "snapshot of the drained state: {:.1} B per task, encoded in {:.1} ms",
            snapshot.len() as f64 / partitions as f64,
            started.elapsed().as_secs_f64() * 1e3
        );
        let started = std::time::Instant::now();
        let copy = sm.core().clone();
        println!(
            "a copy of the drained state: {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        drop(copy);
    }
    drop(sm);
    bytes
}

fn main() {
    let partitions: u64 = std::env::var("STATE_MEMORY_PARTITIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    const LEASED: u32 = 100_000;
    let now = 1_780_272_000_000i64;
    let mut sm = StateMachine::new(Config::default());
    common::register_worker(&mut sm, now);
    let before_submit = live();
    submit(&mut sm, now, partitions);
    let after_submit = live();
    let mut grants = Vec::new();
    while grants.len() < LEASED as usize {
        let out = sm.apply(&LogEntry {
            now_ms: now,
            commands: vec![Command::Lease {
                worker: "w".into(),
                max_tasks: 1000,
            }],
        });
        if let Ok(Outcome::Leased(g)) = out.into_iter().next().unwrap() {
            grants.extend(g);
        }
    }
    drop(sm.take_changes());
    // Grants are the worker's copy, not the state's: measure without them.
    let grants_bytes: Vec<_> = grants.iter().map(|g| (g.task, g.token)).collect();
    drop(grants);
    let after_lease = live();
    let snapshot_len = sm.snapshot().len();
    let per = |bytes: isize, n: u64| bytes as f64 / n as f64;
    println!("partitions submitted: {partitions}");
    println!(
        "bytes per never-run partition: {:.3} (whole job record {} bytes)",
        per(after_submit - before_submit, partitions),
        after_submit - before_submit
    );
    println!(
        "bytes per leased (materialised) task: {:.1}",
        per(
            after_lease - after_submit - std::mem::size_of_val(grants_bytes.as_slice()) as isize,
            u64::from(LEASED)
        )
    );
    println!(
        "snapshot bytes per leased task: {:.1}",
        snapshot_len as f64 / f64::from(LEASED)
    );
    drop(sm);
    drop(grants_bytes);
    let drained = drain(partitions, None);
    println!(
        "bytes per completed task, state machine: {:.1}",
        per(drained, partitions)
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let store = StateStore::open(dir.path()).expect("open the state store");
    let stored = drain(partitions, Some(&store));
    println!(
        "bytes per completed task, state machine and its sled store: {:.1}",
        per(stored, partitions)
    );
}
