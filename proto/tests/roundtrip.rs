//! Encode/decode round trips of the hot-path worker messages: what a worker
//! decodes must be exactly what the coordinator encoded, including nested
//! manifests, repeated upstream outputs and the order of batched entries.

use drover_proto::v1::{
    HeartbeatRequest, LeasedTask, OutputFile, OutputManifest, PriorOutput, TaskHeartbeat, TaskKind,
    UpstreamOutput,
};
use prost::Message;

fn leased_task() -> LeasedTask {
    LeasedTask {
        task_id: "j-42/features/17".to_owned(),
        job_id: "j-42".to_owned(),
        namespace: "perception".to_owned(),
        template: "features".to_owned(),
        kind: TaskKind::SensorFeatureBackfill as i32,
        partition_index: 17,
        partition_key: "2024-03-31".to_owned(),
        config_json: r#"{"input":"file:///data/sensors","window_s":60}"#.to_owned(),
        attempt: 2,
        max_attempts: 5,
        fencing_token: u64::MAX - 1,
        lease_deadline_unix_ms: 1_711_843_200_000,
        timeout_ms: 900_000,
        output_prefix: "file:///out/j-42/features/17/18446744073709551614/".to_owned(),
        trace_parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        upstream_outputs: vec![UpstreamOutput {
            template: "readings".to_owned(),
            partition_index: 17,
            partition_key: "2024-03-31".to_owned(),
            output_prefix: "file:///out/j-42/readings/17/9/".to_owned(),
        }],
        upstream_outputs_truncated: false,
        prior_output: Some(PriorOutput {
            output_prefix: "file:///out/j-7/features/17/3/".to_owned(),
            code_version: "1.4.0".to_owned(),
            input_fingerprint: "sha256:ab12".to_owned(),
            manifest: Some(OutputManifest {
                output_prefix: "file:///out/j-7/features/17/3/".to_owned(),
                files: vec![OutputFile {
                    path: "part-0000.parquet".to_owned(),
                    rows: 86_400,
                    bytes: 1 << 20,
                    sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                        .to_owned(),
                }],
                schema_json: r#"{"fields":[]}"#.to_owned(),
                code_version: "1.4.0".to_owned(),
                input_fingerprint: "sha256:ab12".to_owned(),
                created_unix_ms: 1_711_756_800_000,
            }),
        }),
    }
}

#[test]
fn leased_task_round_trips() {
    let task = leased_task();
    let bytes = task.encode_to_vec();
    assert_eq!(bytes.len(), task.encoded_len());

    let decoded = LeasedTask::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(decoded, task);
    assert_eq!(decoded.kind(), TaskKind::SensorFeatureBackfill);
    assert_eq!(decoded.fencing_token, u64::MAX - 1);
}

#[test]
fn heartbeat_with_many_tasks_round_trips_in_order() {
    let request = HeartbeatRequest {
        worker_id: "ip-10-0-0-7-5f1c".to_owned(),
        session_epoch: 912,
        tasks: (0..5u32)
            .map(|i| TaskHeartbeat {
                task_id: format!("j-42/features/{i}"),
                fencing_token: 1_000 + u64::from(i),
                progress_fraction: f64::from(i) / 4.0,
                progress_message: format!("wrote {i} of 4 files"),
            })
            .collect(),
    };

    let decoded = HeartbeatRequest::decode(request.encode_to_vec().as_slice()).expect("decodes");

    assert_eq!(decoded, request);
    let tokens: Vec<u64> = decoded.tasks.iter().map(|t| t.fencing_token).collect();
    assert_eq!(tokens, [1_000, 1_001, 1_002, 1_003, 1_004]);
    assert_eq!(decoded.tasks[4].progress_fraction, 1.0);
}

#[test]
fn default_values_are_not_encoded_so_empty_heartbeats_stay_tiny() {
    // An idle worker heartbeats with no tasks; only its id and session go on
    // the wire.
    let idle = HeartbeatRequest {
        worker_id: "w".to_owned(),
        session_epoch: 1,
        tasks: Vec::new(),
    };
    assert_eq!(idle.encode_to_vec(), [0x0a, 0x01, b'w', 0x10, 0x01]);
    assert!(LeasedTask::default().encode_to_vec().is_empty());
}

#[test]
fn unknown_enum_values_survive_decoding() {
    // A worker older than the coordinator may see a kind it does not know;
    // it must be able to tell that apart from a missing kind.
    let task = LeasedTask {
        kind: 99,
        ..leased_task()
    };
    let decoded = LeasedTask::decode(task.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(decoded.kind, 99);
    assert!(TaskKind::try_from(decoded.kind).is_err());
}
