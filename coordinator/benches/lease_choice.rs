//! The cost of choosing which tasks to lease when many jobs are ready.
//!
//! `lease_choice/N`: N ready jobs spread over 8 namespaces and 3 priorities,
//! each job a 10,000,000-partition template capped at `maxParallel: 10`. One
//! log entry leases up to 100 tasks for a worker and the next completes
//! what was granted, so every job is back in the ready index before the
//! next iteration. The cap makes a lease walk the index: after 10 grants a
//! job is at its `maxParallel` and leaves, so 100 grants touch 10 jobs and
//! fair share moves between namespaces after each. Throughput is tasks
//! granted per second.
//!
//! The state is steady in what the lease walks (ready jobs, running counts)
//! but not in size: every completed task keeps its output record, as in
//! `state_apply`. Changed records are taken after each entry, as the driver
//! does for storage, so the change sets stay small.
//!
//! Run: `cargo bench -p drover-coordinator --bench lease_choice`.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use drover_coordinator::state::{Command, Config, LogEntry, StateMachine, SubmitJob};

const NAMESPACES: usize = 8;
const PRIORITIES: [u8; 3] = [20, 50, 80];
const LEASE_TASKS: u32 = 100;
/// Submits per log entry during setup, so 10,000 jobs take 10 entries.
const SUBMITS_PER_ENTRY: usize = 1000;

fn job_yaml(i: usize) -> String {
    let namespace = i % NAMESPACES;
    let priority = PRIORITIES[i % PRIORITIES.len()];
    format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: job-{i}, namespace: team-{namespace}}}\nspec:\n  priority: {priority}\n  maxParallel: 10\n  tasks:\n    - {{name: a, kind: noop, partitions: {{shards: 10000000}}}}\n"
    )
}

/// A state with `jobs` ready jobs and one registered worker `w`.
fn ready_state(jobs: usize, now: i64) -> StateMachine {
    let mut sm = StateMachine::new(Config::default());
    let submits: Vec<Command> = (0..jobs)
        .map(|i| {
            Command::SubmitJob(SubmitJob {
                file: "bench.yaml".into(),
                spec_yaml: job_yaml(i),
                params: vec![],
                idempotency_key: None,
                trace_parent: None,
            })
        })
        .collect();
    for chunk in submits.chunks(SUBMITS_PER_ENTRY) {
        let applied = sm.apply(&LogEntry {
            now_ms: now,
            commands: chunk.to_vec(),
        });
        assert!(applied.iter().all(Result::is_ok), "{:?}", applied.first());
    }
    common::register_worker(&mut sm, now);
    drop(sm.take_changes());
    sm
}

fn lease_choice(c: &mut Criterion) {
    let mut group = c.benchmark_group("lease_choice");
    for jobs in [10usize, 1_000, 10_000] {
        let mut now = 1_780_272_000_000i64;
        let mut sm = ready_state(jobs, now);
        // One probe round tells how many tasks a lease grants here, so the
        // throughput counts tasks really granted and not the request size.
        let granted = common::lease_and_complete(&mut sm, now, LEASE_TASKS);
        assert!(granted > 0, "no task granted with {jobs} ready jobs");
        group.throughput(Throughput::Elements(granted as u64));
        group.bench_function(BenchmarkId::from_parameter(jobs), |b| {
            b.iter(|| {
                now += 1;
                let got = common::lease_and_complete(&mut sm, now, LEASE_TASKS);
                assert_eq!(got, granted, "the state is no longer steady");
            });
        });
    }
    group.finish();
}

criterion_group!(benches, lease_choice);
criterion_main!(benches);
