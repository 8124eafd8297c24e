//! Apply throughput of the state machine's hot path.
//!
//! `lease_complete/N`: one log entry leases N tasks for a worker, the next
//! completes them; throughput is tasks per second, i.e. (1 + N) commands per
//! N tasks. `submit_backfill`: applying the submit of a 1,000,000-partition
//! backfill (parse, plan, one record).

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use drover_coordinator::state::{Command, Config, LogEntry, StateMachine, SubmitJob};

const BACKFILL: &str = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: backfill, namespace: bench}\nspec:\n  maxParallel: 1000000\n  tasks:\n    - {name: a, kind: noop, partitions: {shards: 10000000}}\n";

fn submit(sm: &mut StateMachine, now: i64, yaml: &str) {
    sm.apply(&LogEntry {
        now_ms: now,
        commands: vec![Command::SubmitJob(SubmitJob {
            file: "bench.yaml".into(),
            spec_yaml: yaml.into(),
            params: vec![],
            idempotency_key: None,
            trace_parent: None,
        })],
    });
}

fn lease_complete(c: &mut Criterion) {
    let mut group = c.benchmark_group("lease_complete");
    for batch in [1u32, 100, 1000] {
        let mut sm = StateMachine::new(Config::default());
        let mut now = 1_780_272_000_000i64;
        submit(&mut sm, now, BACKFILL);
        common::register_worker(&mut sm, now);
        group.throughput(Throughput::Elements(u64::from(batch)));
        group.bench_function(BenchmarkId::from_parameter(batch), |b| {
            b.iter(|| {
                now += 1;
                common::lease_and_complete(&mut sm, now, batch)
            });
        });
    }
    group.finish();
}

fn submit_backfill(c: &mut Criterion) {
    let yaml = BACKFILL.replace("10000000", "1000000");
    c.bench_function("submit_backfill_1m_partitions", |b| {
        b.iter_batched(
            || StateMachine::new(Config::default()),
            |mut sm| submit(&mut sm, 1_780_272_000_000, &yaml),
            criterion::BatchSize::SmallInput,
        );
    });
}

criterion_group!(benches, lease_complete, submit_backfill);
criterion_main!(benches);
