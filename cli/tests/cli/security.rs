//! A mutual-TLS cluster of real processes that requires tokens: jobs run
//! end to end over TLS (workers with their certificate alone), plaintext
//! clients, certificates from another CA and non-node certificates are
//! kept out of the Raft group, and a certificate without a token, or with
//! a submitter's token outside its namespaces, gets nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{Cluster, certs_init, spec_file, tls_env};
use drover_net::{ClientTls, Dialer, TlsFiles};
use drover_proto::v1::RaftMessageBatch;
use drover_proto::v1::raft_service_client::RaftServiceClient;
use protobuf::Message as _;
use tonic::Code;

const SPEC: &str = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: tls-naps}\nspec:\n  tasks:\n    - name: nap\n      kind: sleep\n      partitions: {shards: 4}\n      config: {ms: 50}\n";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Sends one Raft message from node `from` to node 1 at `address`,
/// dialling with `files`; the call's error code, or `Ok`.
fn send_raft(files: TlsFiles, address: &str, from: u64) -> Result<(), (Code, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tls = ClientTls::load(files).map_err(|e| (Code::Unknown, e.to_string()))?;
        let dialer = Dialer::plaintext().with_tls(Arc::new(tls));
        let endpoint = dialer
            .endpoint(address)
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10));
        let channel = dialer
            .connect(&endpoint)
            .await
            .map_err(|e| (Code::Unavailable, format!("{e:?}")))?;
        let mut message = raft::prelude::Message::default();
        message.set_msg_type(raft::prelude::MessageType::MsgHeartbeat);
        message.from = from;
        message.to = 1;
        let batch = RaftMessageBatch {
            from_id: from,
            to_id: 1,
            messages: vec![message.write_to_bytes().unwrap().into()],
            sent_unix_ms: 0,
        };
        RaftServiceClient::new(channel)
            .send(batch)
            .await
            .map(|_| ())
            .map_err(|s| (s.code(), s.message().to_owned()))
    })
}

fn files(dir: &Path, stem: &str) -> TlsFiles {
    TlsFiles::in_dir(dir, stem)
}

#[test]
fn a_mutual_tls_cluster_runs_jobs_and_keeps_strangers_out() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start_secure(dir.path(), 3);
    let tls = cluster.tls.clone().unwrap();
    let _worker = cluster.worker("w1", 2, &[]);

    // A job end to end: CLI, coordinators and worker all over TLS.
    let spec = spec_file(dir.path(), "naps.yaml", SPEC);
    let job = cluster.json(&["job", "submit", &spec, "--json"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = cluster.wait_job(&job, "succeeded", Duration::from_secs(60));
    assert_eq!(done["counts"]["succeeded"], 4, "{done:#}");

    // A client certificate alone is not enough: the cluster wants a token.
    let no_token: Vec<(&str, &str)> = cluster
        .env
        .iter()
        .filter(|(k, _)| k != "DROVER_TOKEN_FILE")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let out = crate::support::drover()
        .args(["--coordinators", &cluster.addresses(), "job", "list"])
        .envs(no_token.iter().copied())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("requires a token"),
        "{}",
        stderr(&out)
    );
    // Bound to a role by an operator, the certificate alone is enough; the
    // binding reaches the guard within its one-second cache.
    let as_certificate = |args: &[&str]| {
        crate::support::drover()
            .args(["--coordinators", &cluster.addresses()])
            .args(args)
            .envs(no_token.iter().copied())
            .output()
            .unwrap()
    };
    let until = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let out = cluster.cli(&[
        "token",
        "bind",
        "client/operator",
        "--role",
        "submitter",
        "--namespace",
        "team-a",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    until("the bound certificate is let in", &|| {
        as_certificate(&["job", "list"]).status.success()
    });
    let out = as_certificate(&["token", "whoami", "--json"]);
    let me: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["role"], "submitter", "{me}");
    assert_eq!(me["identity"], "certificate client/operator", "{me}");
    assert_eq!(me["namespaces"], serde_json::json!(["team-a"]), "{me}");
    let bindings = cluster.json(&["token", "bindings", "--json"]);
    assert_eq!(bindings[0]["identity"], "client/operator", "{bindings}");
    let out = as_certificate(&["job", "status", &job]);
    assert_eq!(out.status.code(), Some(2), "the job is in `default`");
    let out = cluster.cli(&["token", "unbind", "client/operator"]);
    assert!(out.status.success(), "{}", stderr(&out));
    until("the unbound certificate is refused again", &|| {
        let out = as_certificate(&["job", "list"]);
        out.status.code() == Some(2) && stderr(&out).contains("has no role")
    });
    // A worker's certificate opens the worker service only.
    let worker_env: Vec<(String, String)> = tls_env(&tls, "worker-worker");
    let out = crate::support::drover()
        .args(["--coordinators", &cluster.addresses(), "job", "list"])
        .envs(worker_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out)
            .contains("certificate worker/worker is a worker and may not call JobService/ListJobs"),
        "{}",
        stderr(&out)
    );
    // A submitter's token works in its namespace only, and `token whoami`
    // says so.
    let out = cluster.cli(&[
        "token",
        "create",
        "--name",
        "ci",
        "--role",
        "submitter",
        "--namespace",
        "team-a",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let submitter = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let as_submitter = |args: &[&str]| {
        crate::support::drover()
            .args(["--coordinators", &cluster.addresses()])
            .args(args)
            .envs(no_token.iter().copied())
            .env("DROVER_TOKEN", &submitter)
            .output()
            .unwrap()
    };
    let out = as_submitter(&["token", "whoami", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let me: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["role"], "submitter");
    assert_eq!(me["certificate"], "client/operator");
    let out = as_submitter(&["job", "submit", &spec]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("namespace `default` is not one of yours (team-a)"),
        "{}",
        stderr(&out)
    );
    let out = as_submitter(&["job", "status", &job]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // An operator confines team-a to its own directory; a team-a spec
    // writing elsewhere is refused with the task, the URL and what is
    // allowed. (Admission inside a policy: coordinator/tests/coordinator/auth.rs.)
    let out = cluster.cli(&[
        "policy",
        "set",
        "team-a",
        "--allow-url",
        "file:///srv/team-a/",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let policies = cluster.json(&["policy", "list", "--json"]);
    assert_eq!(
        policies[0]["allowedUrls"],
        serde_json::json!(["file:///srv/team-a"])
    );
    let dedup = |output: &str| {
        spec_file(
            dir.path(),
            "outside.yaml",
            &format!(
                "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: d, namespace: team-a}}\nspec:\n  tasks:\n    - {{name: d, kind: dedup, config: {{input: \"file:///srv/team-a/in\", output: \"{output}\", shards: 2}}}}\n"
            ),
        )
    };
    let out = as_submitter(&["job", "submit", &dedup("file:///srv/team-b/out")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("task `d` writes `file:///srv/team-b/out`, outside what namespace `team-a`'s policy allows: file:///srv/team-a"),
        "{}",
        stderr(&out)
    );

    // The console acts for the person at the browser: without a token it
    // answers 401 (the page then asks for one), and with the submitter's
    // it shows that submitter's namespaces only.
    let (code, body) = crate::support::http_get(&cluster.http[0], "/api/v1/jobs");
    assert_eq!(code, 401, "{body}");
    let (code, body) = crate::support::http_get_as(&cluster.http[0], "/api/v1/jobs", &submitter);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        crate::support::json_body(&body)["jobs"],
        serde_json::json!([])
    );
    let operator = std::fs::read_to_string(
        &cluster
            .env
            .iter()
            .find(|(k, _)| k == "DROVER_TOKEN_FILE")
            .unwrap()
            .1,
    )
    .unwrap();
    let (code, body) =
        crate::support::http_get_as(&cluster.http[0], "/api/v1/jobs", operator.trim());
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        crate::support::json_body(&body)["jobs"][0]["id"],
        job.as_str(),
        "{body}"
    );

    // Plaintext is refused, and the CLI says what is missing.
    let out = crate::support::drover()
        .args(["--coordinators", &cluster.addresses(), "job", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("does the cluster use TLS?"),
        "{}",
        stderr(&out)
    );
    // So is a plaintext address given while TLS is configured.
    let plain_address = format!("http://{}", cluster.grpc[0]);
    let env: Vec<(&str, &str)> = cluster
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([("DROVER_COORDINATORS", plain_address.as_str())])
        .collect();
    let out = crate::support::drover()
        .args(["job", "list"])
        .envs(env)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("plaintext address but TLS is configured"),
        "{}",
        stderr(&out)
    );

    // A client certificate from another CA gets nowhere.
    let rogue = dir.path().join("rogue");
    certs_init(&rogue, 4);
    let mut env = tls_env(&rogue, "client-operator");
    env[0].1 = tls.join("ca.pem").display().to_string(); // trusts our CA
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = cluster.cli_env(&["job", "list"], &env);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Raft: only nodes of this CA, each only in its own name.
    let leader_address = &cluster.grpc[0];
    assert_eq!(send_raft(files(&tls, "node-2"), leader_address, 2), Ok(()));
    let (code, message) = send_raft(files(&tls, "node-2"), leader_address, 3).unwrap_err();
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert!(
        message.contains("cannot send messages from node 3"),
        "{message}"
    );
    let (code, message) = send_raft(files(&tls, "worker-worker"), leader_address, 2).unwrap_err();
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert!(
        message.contains("only coordinators speak Raft"),
        "{message}"
    );
    let mut stranger = files(&rogue, "node-2");
    stranger.ca = tls.join("ca.pem");
    let (code, _) = send_raft(stranger, leader_address, 2).unwrap_err();
    assert_ne!(code, Code::Ok);

    // A coordinator with a certificate from another CA cannot join: the
    // members never hear from it nor reach it, so it learns nothing.
    let rogue_grpc = crate::support::loopback();
    let rogue_http = crate::support::loopback();
    let mut rogue_node = crate::support::Proc {
        child: crate::support::drover()
            .args(["coordinator", "--node-id", "4", "--join"])
            .args(["--listen", &rogue_grpc, "--http", &rogue_http])
            .args(["--peers", &format!("{},4={rogue_grpc}", cluster.peers)])
            .arg("--data-dir")
            .arg(dir.path().join("rogue-data"))
            .args(crate::support::tls_flags(&rogue, "node-4"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("rogue.log")).unwrap())
            .spawn()
            .unwrap(),
        name: "rogue".to_owned(),
    };
    // The operator adds it (the change commits: it is the operator's
    // call), yet the rogue never gets the log.
    let out = cluster.cli(&["cluster", "add-node", "4", &rogue_grpc]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        rogue_node.child.try_wait().unwrap().is_none(),
        "the rogue is still running: {}",
        std::fs::read_to_string(dir.path().join("rogue.log")).unwrap_or_default()
    );
    let (code, body) = crate::support::http_get(&rogue_http, "/readyz");
    assert_ne!(code, 200, "a node outside the CA became ready: {body}");
    let status = cluster.json(&["cluster", "status", "--json"]);
    let rogue_member = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == 4)
        .cloned();
    let m = rogue_member.expect("node 4 is a member");
    assert_eq!(m["matchIndex"].as_u64(), Some(0), "{m:#}");
    // The cluster keeps serving.
    let out = cluster.cli(&["job", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let node_log = cluster.log("coordinator-1");
    assert!(
        node_log.contains("TLS handshake failed"),
        "no refusal logged"
    );
}
