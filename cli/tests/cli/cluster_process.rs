//! A 3-coordinator cluster of real `drover coordinator` processes on
//! loopback, operated with the `drover cluster` commands: status, leader
//! loss (SIGKILL), restart, leader transfer, joining and removing a node,
//! readiness, and clean shutdown on SIGTERM.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{drover, free_port, http_get, wait_for};

struct Proc {
    child: Child,
    grpc: String,
    http: String,
}

fn start(id: u64, grpc: &str, http: &str, peers: &str, dir: &Path, join: bool) -> Proc {
    let mut cmd = drover();
    cmd.args([
        "coordinator",
        "--node-id",
        &id.to_string(),
        "--listen",
        grpc,
        "--http",
        http,
        "--peers",
        peers,
    ])
    .arg("--data-dir")
    .arg(dir)
    .env("DROVER_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if join {
        cmd.arg("--join");
    }
    Proc {
        child: cmd.spawn().unwrap(),
        grpc: grpc.to_owned(),
        http: http.to_owned(),
    }
}

fn cli(coordinators: &str, args: &[&str]) -> Output {
    drover()
        .arg("--coordinators")
        .arg(coordinators)
        .args(args)
        .output()
        .unwrap()
}

fn status(coordinators: &str) -> Option<serde_json::Value> {
    let out = cli(coordinators, &["cluster", "status", "--json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn a_cluster_of_processes_survives_leader_loss_and_changes_members() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(String, String)> = (0..4)
        .map(|_| {
            (
                format!("127.0.0.1:{}", free_port()),
                format!("127.0.0.1:{}", free_port()),
            )
        })
        .collect();
    let peers: String = (1..=3)
        .map(|i| format!("{i}={}", ports[i - 1].0))
        .collect::<Vec<_>>()
        .join(",");
    let all: String = ports[..3]
        .iter()
        .map(|p| p.0.clone())
        .collect::<Vec<_>>()
        .join(",");
    let mut procs: Vec<Option<Proc>> = (1..=3)
        .map(|i| {
            Some(start(
                i as u64,
                &ports[i - 1].0,
                &ports[i - 1].1,
                &peers,
                &dir.path().join(format!("n{i}")),
                false,
            ))
        })
        .collect();

    let first = wait_for(Duration::from_secs(20), || {
        status(&all).and_then(|s| s["leader"].as_u64().filter(|l| *l != 0))
    });
    let s = status(&all).unwrap();
    assert_eq!(s["members"].as_array().unwrap().len(), 3);
    let (code, body) = http_get(&procs[first as usize - 1].as_ref().unwrap().http, "/readyz");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        http_get(&procs[0].as_ref().unwrap().http, "/healthz").0,
        200
    );

    // kill -9 the leader: the others elect a new one.
    let killed_at = Instant::now();
    let mut leader_proc = procs[first as usize - 1].take().unwrap();
    leader_proc.child.kill().unwrap();
    leader_proc.child.wait().unwrap();
    let second = wait_for(Duration::from_secs(20), || {
        status(&all).and_then(|s| s["leader"].as_u64().filter(|l| *l != 0 && *l != first))
    });
    eprintln!("new leader {second} after {:?}", killed_at.elapsed());

    // `cluster status` marks the dead member, and says why.
    let out = cli(&all, &["cluster", "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let dead = &ports[first as usize - 1].0;
    let row = text
        .lines()
        .find(|l| l.contains(dead.as_str()) && !l.starts_with("  node"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("UNREACHABLE"), "{text}");
    assert!(
        text.contains(&format!(
            "  node {first} ({dead}): {dead}: tcp connect error"
        )),
        "{text}"
    );
    assert_eq!(text.matches("UNREACHABLE").count(), 1, "{text}");
    let s = status(&all).unwrap();
    for m in s["members"].as_array().unwrap() {
        let alive = m["id"].as_u64() != Some(first);
        assert_eq!(m["reachable"].as_bool(), Some(alive), "{m}");
    }

    // The killed node restarts from its data directory and takes leadership
    // back on request.
    procs[first as usize - 1] = Some(start(
        first,
        &ports[first as usize - 1].0,
        &ports[first as usize - 1].1,
        &peers,
        &dir.path().join(format!("n{first}")),
        false,
    ));
    wait_for(Duration::from_secs(20), || {
        let out = cli(&all, &["cluster", "transfer-leader", &first.to_string()]);
        out.status.success().then_some(())
    });
    // The node that answers the status may not have heard from the new
    // leader yet (between its vote and the first append it knows none).
    wait_for(Duration::from_secs(20), || {
        status(&all).and_then(|s| (s["leader"].as_u64() == Some(first)).then_some(()))
    });

    // A fourth coordinator joins, becomes a voter, then is removed.
    let mut joined_peers = peers.clone();
    joined_peers.push_str(&format!(",4={}", ports[3].0));
    let mut fourth = start(
        4,
        &ports[3].0,
        &ports[3].1,
        &joined_peers,
        &dir.path().join("n4"),
        true,
    );
    let out = cli(&all, &["cluster", "add-node", "4", &ports[3].0]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(Duration::from_secs(20), || {
        let s = status(&all)?;
        s["members"]
            .as_array()?
            .iter()
            .any(|m| m["id"] == 4 && m["role"] == "voter")
            .then_some(())
    });
    let out = cli(&all, &["cluster", "remove-node", "4"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let members = status(&all).unwrap()["members"].as_array().unwrap().len();
    assert_eq!(members, 3);
    let _ = fourth.child.kill();
    let _ = fourth.child.wait();

    // Removing an unknown node is a clear error.
    let out = cli(&all, &["cluster", "remove-node", "9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("node 9 is not a member"));

    // SIGTERM stops each coordinator cleanly.
    for p in procs.iter_mut().flatten() {
        let pid = p.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let code = wait_for(Duration::from_secs(15), || p.child.try_wait().unwrap());
        assert!(
            code.success(),
            "coordinator at {} exited with {code}",
            p.grpc
        );
    }
}
