//! Writes the hand-made seeds of each corpus: run once with
//! `cargo test -p drover-fuzzing --test seeds -- --ignored`, after a change
//! to the entry format, the examples or the protocol. The fuzzer starts
//! from them, and the replay keeps checking them.

use std::path::Path;

use drover_coordinator::state::policy::NamespacePolicy;
use drover_coordinator::state::{Command, LogEntry, Manifest, SubmitJob, TaskKey, TaskProgress};
use drover_fuzzing::{Call, Rpc};
use drover_proto::v1 as wire;

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
    for (name, calls) in grpc_runs() {
        write("grpc_requests", name, &drover_fuzzing::encode_calls(&calls));
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
        job: drover_coordinator::state::JobId(u128::from(job)),
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
        (
            // Leases in a session, timed by the leader: a heartbeat summary,
            // a stale heartbeat recorded, an expiry (and one for an old
            // token that changes nothing), a lost session, and a lease from
            // it refused.
            "leader-timers.bin",
            vec![
                at(0, vec![submit(dag), register("w1")]),
                at(
                    1000,
                    vec![Command::LeaseInSession {
                        worker: "w1".to_owned(),
                        epoch: 1,
                        max_tasks: 3,
                    }],
                ),
                at(
                    6000,
                    vec![Command::Heard {
                        workers: vec![("w1".to_owned(), 1)],
                        tasks: vec![TaskProgress {
                            task: task(1, 0, 0),
                            token: 1,
                            progress_permille: 400,
                        }],
                    }],
                ),
                at(
                    7000,
                    vec![Command::StaleHeartbeats {
                        worker: "w1".to_owned(),
                        tasks: vec![(task(1, 0, 1), 99)],
                    }],
                ),
                at(
                    40_000,
                    vec![Command::ExpireLeases {
                        tasks: vec![(task(1, 0, 0), 1), (task(1, 0, 1), 0)],
                    }],
                ),
                at(
                    70_000,
                    vec![
                        Command::WorkersLost {
                            workers: vec![("w1".to_owned(), 1)],
                        },
                        Command::LeaseInSession {
                            worker: "w1".to_owned(),
                            epoch: 1,
                            max_tasks: 1,
                        },
                    ],
                ),
                at(71_000, vec![Command::Tick]),
            ],
        ),
        (
            // A default policy that allows no dataset: the schedule's
            // noop runs still start, the dedup example is refused.
            "policy.bin",
            vec![
                at(
                    0,
                    vec![Command::SetNamespacePolicy {
                        namespace: "*".to_owned(),
                        policy: Some(NamespacePolicy {
                            allowed_urls: Vec::new(),
                            allow_command: false,
                            updated_by: "seed".to_owned(),
                            updated_ms: 0,
                        }),
                    }],
                ),
                at(1000, vec![submit(SPECS[5].1), submit(EXAMPLES[2].1)]),
                at(86_400_000, vec![Command::Tick]),
                at(
                    86_401_000,
                    vec![Command::SetNamespacePolicy {
                        namespace: "*".to_owned(),
                        policy: None,
                    }],
                ),
            ],
        ),
    ]
}

/// A small job for the gRPC seeds: three partitions, then one task after
/// them, one retry each. Submitted first, it is `j1`; its tasks are
/// `j1/0/0` to `j1/0/2` and `j1/1/0`.
const SMALL_JOB: &str = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: seed, namespace: team-a}\nspec:\n  tasks:\n    - {name: a, kind: noop, partitions: {shards: 3}, retries: {max: 1}}\n    - {name: b, kind: noop, dependsOn: [a]}\n";

/// A valid W3C traceparent.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn submit_call(yaml: &str, key: &str) -> Call {
    Call::new(
        Rpc::SubmitJob,
        &wire::SubmitJobRequest {
            spec_yaml: yaml.to_owned(),
            source_name: "seed.yaml".to_owned(),
            idempotency_key: key.to_owned(),
            ..Default::default()
        },
    )
}

fn register_call(worker: &str) -> Call {
    Call::new(
        Rpc::Register,
        &wire::RegisterRequest {
            worker_id: worker.to_owned(),
            slots: 4,
            labels: [("zone".to_owned(), "a".to_owned())].into_iter().collect(),
            version: "seed".to_owned(),
            ..Default::default()
        },
    )
}

fn lease_call(worker: &str, epoch: u64, max_tasks: u32) -> Call {
    Call::new(
        Rpc::Lease,
        &wire::LeaseRequest {
            worker_id: worker.to_owned(),
            session_epoch: epoch,
            max_tasks,
            wait_ms: 0,
        },
    )
}

/// The completion of `task` by w1 under `token`, with its own prefix.
fn completion(task: &str, attempt: u32, token: u64) -> wire::CompleteRequest {
    let mut parts = task.split('/');
    let (job, template, partition) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    wire::CompleteRequest {
        worker_id: "w1".to_owned(),
        task_id: task.to_owned(),
        fencing_token: token,
        manifest: Some(wire::OutputManifest {
            output_prefix: format!("jobs/{job}/{template}/{partition}/attempt-{attempt}-{token}"),
            files: vec![wire::OutputFile {
                path: "part-0.jsonl".to_owned(),
                rows: 3,
                bytes: 120,
                sha256: "00".repeat(32),
            }],
            schema_json: "{}".to_owned(),
            code_version: "seed".to_owned(),
            input_fingerprint: "f".to_owned(),
            created_unix_ms: 0,
        }),
        reused_prior_output: false,
        trace_parent: String::new(),
    }
}

fn job_call(rpc: Rpc, job: &str) -> Call {
    match rpc {
        Rpc::GetJob => Call::new(
            rpc,
            &wire::GetJobRequest {
                job_id: job.to_owned(),
                include_spec: true,
            },
        ),
        Rpc::WatchJob => Call::new(
            rpc,
            &wire::WatchJobRequest {
                job_id: job.to_owned(),
                ..Default::default()
            },
        ),
        Rpc::CancelJob => Call::new(
            rpc,
            &wire::CancelJobRequest {
                job_id: job.to_owned(),
                reason: "seed".to_owned(),
            },
        ),
        Rpc::RetryJob => Call::new(
            rpc,
            &wire::RetryJobRequest {
                job_id: job.to_owned(),
                ..Default::default()
            },
        ),
        Rpc::JobEvents => Call::new(
            rpc,
            &wire::JobEventsRequest {
                job_id: job.to_owned(),
                ..Default::default()
            },
        ),
        Rpc::ListTasks => Call::new(
            rpc,
            &wire::ListTasksRequest {
                job_id: job.to_owned(),
                page_size: 2,
                ..Default::default()
            },
        ),
        other => panic!("{other:?} takes no job id"),
    }
}

fn task_call(rpc: Rpc, task: &str) -> Call {
    match rpc {
        Rpc::ExplainTask => Call::new(
            rpc,
            &wire::ExplainTaskRequest {
                task_id: task.to_owned(),
            },
        ),
        Rpc::GetTaskOutput => Call::new(
            rpc,
            &wire::GetTaskOutputRequest {
                task_id: task.to_owned(),
            },
        ),
        Rpc::GetTaskLog => Call::new(
            rpc,
            &wire::GetTaskLogRequest {
                task_id: task.to_owned(),
                ..Default::default()
            },
        ),
        other => panic!("{other:?} takes no task id"),
    }
}

/// Realistic request runs: a worker's whole loop over a small job, specs
/// submitted and planned, a schedule, and the operator's rpcs.
fn grpc_runs() -> Vec<(&'static str, Vec<Call>)> {
    let heartbeat = |tasks: &[(&str, u64)]| {
        Call::new(
            Rpc::Heartbeat,
            &wire::HeartbeatRequest {
                worker_id: "w1".to_owned(),
                session_epoch: 1,
                tasks: tasks
                    .iter()
                    .map(|(task, token)| wire::TaskHeartbeat {
                        task_id: (*task).to_owned(),
                        fencing_token: *token,
                        progress_fraction: 0.5,
                        progress_message: "half way".to_owned(),
                    })
                    .collect(),
            },
        )
    };
    vec![
        (
            "worker-loop.bin",
            vec![
                submit_call(SMALL_JOB, "seed").traced(TRACEPARENT),
                register_call("w1"),
                lease_call("w1", 1, 4),
                heartbeat(&[("j1/0/0", 1), ("j1/0/1", 2), ("j1/0/2", 3)]),
                Call::new(Rpc::Complete, &completion("j1/0/0", 1, 1)).traced(TRACEPARENT),
                Call::new(
                    Rpc::CompleteBatch,
                    &wire::CompleteBatchRequest {
                        completions: vec![completion("j1/0/1", 1, 2)],
                        ..Default::default()
                    },
                ),
                Call::new(
                    Rpc::Fail,
                    &wire::FailRequest {
                        worker_id: "w1".to_owned(),
                        task_id: "j1/0/2".to_owned(),
                        fencing_token: 3,
                        retryable: false,
                        message: "bad input".to_owned(),
                        trace_parent: String::new(),
                    },
                ),
                task_call(Rpc::ExplainTask, "j1/1/0"),
                task_call(Rpc::GetTaskOutput, "j1/0/0"),
                task_call(Rpc::GetTaskLog, "j1/0/2"),
                job_call(Rpc::ListTasks, "j1"),
                job_call(Rpc::JobEvents, "j1"),
                job_call(Rpc::RetryJob, "j1"),
                lease_call("w1", 1, 4),
                Call::new(
                    Rpc::Release,
                    &wire::ReleaseRequest {
                        worker_id: "w1".to_owned(),
                        tasks: vec![wire::ReleasedTask {
                            task_id: "j1/0/2".to_owned(),
                            fencing_token: 4,
                        }],
                        reason: "spot interruption".to_owned(),
                        worker_exiting: false,
                    },
                ),
                job_call(Rpc::GetJob, "j1"),
                job_call(Rpc::WatchJob, "j1"),
                Call::new(
                    Rpc::DrainWorker,
                    &wire::DrainWorkerRequest {
                        worker_id: "w1".to_owned(),
                        reason: "scale-in".to_owned(),
                    },
                ),
                Call::new(Rpc::ListWorkers, &wire::ListWorkersRequest::default()),
                job_call(Rpc::CancelJob, "j1"),
                Call::new(Rpc::StateDigest, &wire::StateDigestRequest::default()),
            ],
        ),
        (
            "submit-plan.bin",
            EXAMPLES
                .iter()
                .flat_map(|(name, yaml)| {
                    [
                        Call::new(
                            Rpc::PlanJob,
                            &wire::PlanJobRequest {
                                spec_yaml: (*yaml).to_owned(),
                                source_name: (*name).to_owned(),
                                fire_time_count: 3,
                                ..Default::default()
                            },
                        ),
                        submit_call(yaml, "example"),
                    ]
                })
                .chain([
                    // The same key again, then with another spec.
                    submit_call(SMALL_JOB, "example"),
                    submit_call(SPECS[0].1, ""),
                    Call::new(
                        Rpc::ListJobs,
                        &wire::ListJobsRequest {
                            namespace: "demo".to_owned(),
                            states: vec![wire::JobState::Pending as i32],
                            page_size: 1,
                            ..Default::default()
                        },
                    ),
                    Call::new(
                        Rpc::ListJobs,
                        &wire::ListJobsRequest {
                            page_token: "3.18446744073709551615".to_owned(),
                            ..Default::default()
                        },
                    ),
                ])
                .collect(),
        ),
        (
            "schedule.bin",
            vec![
                submit_call(SPECS[5].1, "nightly"),
                Call::new(
                    Rpc::SubmitJob,
                    &wire::SubmitJobRequest {
                        spec_yaml: SPECS[5].1.to_owned(),
                        source_name: "seed.yaml".to_owned(),
                        once: true,
                        ..Default::default()
                    },
                ),
                job_call(Rpc::GetJob, "s1"),
                job_call(Rpc::WatchJob, "s1"),
                Call::new(
                    Rpc::ListJobs,
                    &wire::ListJobsRequest {
                        kind: wire::JobListKind::Schedules as i32,
                        ..Default::default()
                    },
                ),
                Call::new(
                    Rpc::ListJobs,
                    &wire::ListJobsRequest {
                        parent_job_id: "s1".to_owned(),
                        ..Default::default()
                    },
                ),
                job_call(Rpc::CancelJob, "s1"),
                job_call(Rpc::CancelJob, "s1"),
            ],
        ),
        (
            // A member that is never heard from, then writes: the lone
            // voter must not promote it (and lose its quorum) meanwhile.
            "add-node-then-write.bin",
            vec![
                Call::new(
                    Rpc::AddNode,
                    &wire::AddNodeRequest {
                        node_id: 7,
                        address: "10.0.0.7:7070".to_owned(),
                    },
                ),
                Call::new(
                    Rpc::PlanJob,
                    &wire::PlanJobRequest {
                        spec_yaml: EXAMPLES[3].1.to_owned(),
                        source_name: EXAMPLES[3].0.to_owned(),
                        fire_time_count: 100,
                        ..Default::default()
                    },
                ),
                register_call("w1"),
                submit_call(SMALL_JOB, "seed"),
                lease_call("w1", 1, 4),
                Call::new(Rpc::ClusterStatus, &wire::ClusterStatusRequest::default()),
            ],
        ),
        (
            "admin.bin",
            vec![
                Call::new(Rpc::ClusterStatus, &wire::ClusterStatusRequest::default()),
                Call::new(
                    Rpc::UpdateSettings,
                    &wire::UpdateSettingsRequest {
                        settings: Some(wire::Settings {
                            lease_ttl_ms: 20_000,
                            heartbeat_interval_ms: 5_000,
                            worker_timeout_ms: 60_000,
                            ..Default::default()
                        }),
                    },
                ),
                Call::new(
                    Rpc::UpdateSettings,
                    &wire::UpdateSettingsRequest {
                        settings: Some(wire::Settings {
                            heartbeat_interval_ms: 50_000,
                            ..Default::default()
                        }),
                    },
                ),
                Call::new(
                    Rpc::AddNode,
                    &wire::AddNodeRequest {
                        node_id: 2,
                        address: "127.0.0.1:7071".to_owned(),
                    },
                ),
                Call::new(Rpc::TransferLeader, &wire::TransferLeaderRequest::default()),
                Call::new(
                    Rpc::TransferLeader,
                    &wire::TransferLeaderRequest { target_node_id: 1 },
                ),
                Call::new(Rpc::RemoveNode, &wire::RemoveNodeRequest { node_id: 2 }),
                Call::new(Rpc::RemoveNode, &wire::RemoveNodeRequest { node_id: 1 }),
                register_call("w2"),
                Call::new(
                    Rpc::Release,
                    &wire::ReleaseRequest {
                        worker_id: "w2".to_owned(),
                        reason: "exiting".to_owned(),
                        worker_exiting: true,
                        ..Default::default()
                    },
                ),
                Call::new(
                    Rpc::ListWorkers,
                    &wire::ListWorkersRequest {
                        states: vec![wire::WorkerState::Alive as i32],
                        page_size: 10,
                        ..Default::default()
                    },
                ),
                Call::new(Rpc::Backup, &wire::BackupRequest::default()),
            ],
        ),
        (
            "tokens-and-policies.bin",
            vec![
                Call::new(
                    Rpc::BootstrapToken,
                    &wire::BootstrapTokenRequest {
                        name: "first".to_owned(),
                    },
                ),
                Call::new(Rpc::BootstrapToken, &wire::BootstrapTokenRequest::default()),
                Call::new(
                    Rpc::CreateToken,
                    &wire::CreateTokenRequest {
                        name: "ci".to_owned(),
                        role: wire::TokenRole::Submitter as i32,
                        namespaces: vec!["team-a".to_owned()],
                        ttl_ms: 3_600_000,
                    },
                ),
                Call::new(
                    Rpc::CreateToken,
                    &wire::CreateTokenRequest {
                        name: "pool".to_owned(),
                        role: wire::TokenRole::Worker as i32,
                        namespaces: vec!["team-a".to_owned()],
                        ttl_ms: -1,
                    },
                ),
                Call::new(Rpc::ListTokens, &wire::ListTokensRequest::default()),
                Call::new(Rpc::WhoAmI, &wire::WhoAmIRequest::default()),
                Call::new(
                    Rpc::RevokeToken,
                    &wire::RevokeTokenRequest {
                        id: "000000000000".to_owned(),
                    },
                ),
                Call::new(
                    Rpc::SetNamespacePolicy,
                    &wire::SetNamespacePolicyRequest {
                        namespace: "team-a".to_owned(),
                        allowed_urls: vec![
                            "s3://lake/team-a/".to_owned(),
                            "file:///data".to_owned(),
                        ],
                        allow_command: false,
                        clear: false,
                    },
                ),
                Call::new(
                    Rpc::SetNamespacePolicy,
                    &wire::SetNamespacePolicyRequest {
                        namespace: "*".to_owned(),
                        allowed_urls: vec!["s3://lake/../x".to_owned()],
                        ..Default::default()
                    },
                ),
                submit_call(
                    "apiVersion: drover/v1\nkind: Job\nmetadata: {name: d, namespace: team-a}\nspec:\n  tasks:\n    - {name: d, kind: dedup, config: {input: \"s3://lake/team-a/in\", output: \"s3://lake/team-b/out\", shards: 2}}\n",
                    "outside",
                ),
                submit_call(
                    "apiVersion: drover/v1\nkind: Job\nmetadata: {name: d, namespace: team-a}\nspec:\n  tasks:\n    - {name: d, kind: dedup, config: {input: \"s3://lake/team-a/in\", output: \"s3://lake/team-a/out/${run.date}\", shards: 2}}\n",
                    "inside",
                ),
                Call::new(
                    Rpc::ListNamespacePolicies,
                    &wire::ListNamespacePoliciesRequest::default(),
                ),
                Call::new(
                    Rpc::BindCertificate,
                    &wire::BindCertificateRequest {
                        identity: "client/ci".to_owned(),
                        role: wire::TokenRole::Submitter as i32,
                        namespaces: vec!["team-a".to_owned()],
                        unbind: false,
                    },
                ),
                Call::new(
                    Rpc::BindCertificate,
                    &wire::BindCertificateRequest {
                        identity: "worker/pool".to_owned(),
                        role: wire::TokenRole::Operator as i32,
                        ..Default::default()
                    },
                ),
                Call::new(
                    Rpc::ListCertificateBindings,
                    &wire::ListCertificateBindingsRequest::default(),
                ),
                Call::new(
                    Rpc::BindCertificate,
                    &wire::BindCertificateRequest {
                        identity: "client/ci".to_owned(),
                        unbind: true,
                        ..Default::default()
                    },
                ),
                Call::new(
                    Rpc::SetNamespacePolicy,
                    &wire::SetNamespacePolicyRequest {
                        namespace: "team-a".to_owned(),
                        clear: true,
                        ..Default::default()
                    },
                ),
            ],
        ),
    ]
}
