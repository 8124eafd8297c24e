//! Writes the hand-made seeds of each corpus: run once with
//! `cargo test -p drover-fuzzing --test seeds -- --ignored`, after a change
//! to the entry format or the examples. The fuzzer starts from them, and
//! the replay keeps checking them.

use std::path::Path;

use drover_coordinator::state::{Command, LogEntry, Manifest, SubmitJob, TaskKey, TaskProgress};

const T0_MS: i64 = 1_780_272_000_000;

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

const EXAMPLES: &[(&str, &str)] = &[
    (
        "example-dag-sleep.yaml",
        include_str!("../../jobspecs/examples/dag-sleep.yaml"),
    ),
    (
        "example-annotation-export.yaml",
        include_str!("../../jobspecs/examples/annotation-export.yaml"),
    ),
    (
        "example-dedup.yaml",
        include_str!("../../jobspecs/examples/dedup.yaml"),
    ),
    (
        "example-sensor-backfill.yaml",
        include_str!("../../jobspecs/examples/sensor-backfill.yaml"),
    ),
];

/// Specs that exercise the other paths: errors, every partition kind,
/// params, a large fan-out.
const SPECS: &[(&str, &str)] = &[
    (
        "bad-indent.yaml",
        "apiVersion: drover/v1\nkind: Job\nmetadata:\n  name: x\n spec: {}\n",
    ),
    (
        "unknown-dependency.yaml",
        "apiVersion: drover/v1\nkind: Job\nmetadata: {name: bad}\nspec:\n  tasks:\n    - name: a\n      kind: sleep\n      dependsOn: [missing]\n      config: {ms: 1}\n",
    ),
    (
        "cycle.yaml",
        "apiVersion: drover/v1\nkind: Job\nmetadata: {name: cyc}\nspec:\n  tasks:\n    - {name: a, kind: noop, dependsOn: [b]}\n    - {name: b, kind: noop, dependsOn: [a]}\n",
    ),
    (
        "partitions.yaml",
        "apiVersion: drover/v1\nkind: Job\nmetadata: {name: parts, namespace: team-a}\nspec:\n  params: {n: \"3\"}\n  tasks:\n    - {name: d, kind: noop, partitions: {daily: {start: 2026-01-01, end: 2026-01-05}}}\n    - {name: h, kind: noop, dependsOn: [d], partitions: {hourly: {start: \"2026-01-01T00:00:00Z\", end: \"2026-01-01T06:00:00Z\"}}}\n    - {name: l, kind: noop, dependsOn: [h], partitions: {list: [a, b, c]}}\n    - {name: s, kind: sleep, dependsOn: [l], partitions: {shards: 5}, config: {ms: \"${params.n}\"}, retries: {max: 2}}\n",
    ),
    (
        "fan-out.yaml",
        "apiVersion: drover/v1\nkind: Job\nmetadata: {name: wide}\nspec:\n  maxParallel: 10\n  tasks:\n    - {name: many, kind: noop, partitions: {shards: 1000000}}\n    - {name: after, kind: noop, dependsOn: [many]}\n",
    ),
    (
        "schedule.yaml",
        "apiVersion: drover/v1\nkind: Job\nmetadata: {name: nightly}\nspec:\n  schedule: {cron: \"0 2 * * *\", timezone: Europe/Berlin}\n  tasks:\n    - {name: a, kind: noop}\n",
    ),
    (
        "anchors.yaml",
        "apiVersion: drover/v1\nkind: Job\nmetadata: {name: &n anchors}\nspec:\n  tasks:\n    - &t {name: a, kind: noop}\n    - {<<: *t, name: b}\n",
    ),
];

#[test]
#[ignore = "writes the corpora's seeds; run by hand"]
fn write_seeds() {
    for (name, text) in EXAMPLES.iter().chain(SPECS) {
        write("spec", name, text.as_bytes());
    }
    for (name, entries) in entry_runs() {
        write(
            "log_entries",
            name,
            &drover_fuzzing::encode_entries(&entries),
        );
    }
}

fn at(ms: i64, commands: Vec<Command>) -> LogEntry {
    LogEntry {
        now_ms: T0_MS + ms,
        commands,
    }
}

fn submit(yaml: &str) -> Command {
    Command::SubmitJob(SubmitJob {
        file: "seed.yaml".to_owned(),
        spec_yaml: yaml.to_owned(),
        params: Vec::new(),
        idempotency_key: Some("seed".to_owned()),
        trace_parent: None,
    })
}

fn register(worker: &str) -> Command {
    Command::RegisterWorker {
        worker: worker.to_owned(),
        slots: 4,
        labels: Default::default(),
        kinds: Vec::new(),
    }
}

fn task(job: u64, template: u32, partition: u64) -> TaskKey {
    TaskKey {
        job: drover_coordinator::state::JobId(job),
        template,
        partition,
    }
}

/// Realistic runs of entries: the first job is j1, its first grant token 1.
fn entry_runs() -> Vec<(&'static str, Vec<LogEntry>)> {
    let dag = SPECS[3].1;
    let complete = |t: TaskKey, token: u64| Command::Complete {
        worker: "w1".to_owned(),
        task: t,
        token,
        manifest: Manifest {
            prefix: format!(
                "jobs/{}/{}/{}/attempt-1-{token}",
                t.job, t.template, t.partition
            ),
            ..Manifest::default()
        },
        skipped: false,
    };
    vec![
        (
            "lease-complete.bin",
            vec![
                at(0, vec![submit(dag), register("w1")]),
                at(
                    1000,
                    vec![Command::Lease {
                        worker: "w1".to_owned(),
                        max_tasks: 4,
                    }],
                ),
                at(
                    2000,
                    vec![complete(task(1, 0, 0), 1), complete(task(1, 0, 1), 2)],
                ),
                at(
                    3000,
                    vec![Command::Heartbeat {
                        worker: "w1".to_owned(),
                        tasks: vec![TaskProgress {
                            task: task(1, 0, 2),
                            token: 3,
                            progress_permille: 500,
                        }],
                    }],
                ),
                at(
                    4000,
                    vec![Command::Fail {
                        worker: "w1".to_owned(),
                        task: task(1, 0, 2),
                        token: 3,
                        retryable: true,
                        message: "disk full".to_owned(),
                    }],
                ),
                at(40_000, vec![Command::Tick]),
            ],
        ),
        (
            "cancel-retry-release.bin",
            vec![
                at(0, vec![submit(dag), register("w1"), register("w2")]),
                at(
                    1000,
                    vec![Command::Lease {
                        worker: "w2".to_owned(),
                        max_tasks: 2,
                    }],
                ),
                at(
                    2000,
                    vec![Command::Release {
                        worker: "w2".to_owned(),
                        tasks: vec![(task(1, 0, 0), 1)],
                    }],
                ),
                at(
                    3000,
                    vec![Command::CancelJob {
                        job: drover_coordinator::state::JobId(1),
                        reason: "seed".to_owned(),
                    }],
                ),
                at(
                    4000,
                    vec![Command::SetLeaseSettings {
                        lease_ttl_ms: Some(3000),
                        heartbeat_interval_ms: Some(500),
                        worker_timeout_ms: Some(6000),
                    }],
                ),
                at(
                    5000,
                    vec![Command::SetNamespaceWeight {
                        namespace: "team-a".to_owned(),
                        weight: 3,
                    }],
                ),
                at(20_000, vec![Command::Tick]),
            ],
        ),
        (
            "schedule.bin",
            vec![
                at(0, vec![submit(SPECS[5].1)]),
                at(86_400_000, vec![Command::Tick]),
                at(2 * 86_400_000, vec![Command::Tick]),
            ],
        ),
    ]
}
