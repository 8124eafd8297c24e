//! Real `drover` processes on loopback for the end-to-end tests: a cluster
//! of coordinators, workers, the CLI, and bounded waits.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn drover() -> Command {
    Command::new(env!("CARGO_BIN_EXE_drover"))
}

/// A port free right now (the OS may hand it out again, so starts retry).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn loopback() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A child process killed when dropped, so a failing test leaves nothing
/// running.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`) with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{name} {} ({})", self.pid(), self.name);
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `limit` for the process to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a process's standard error goes: a file in the test's directory,
/// printed when an assertion fails is too noisy, so tests read it on demand.
fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .unwrap()
}

/// Debian's libfaketime (package `faketime`).
pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Coordinators of one cluster.
pub struct Cluster {
    pub dir: PathBuf,
    pub grpc: Vec<String>,
    pub http: Vec<String>,
    pub peers: String,
    pub procs: Vec<Option<Proc>>,
    /// The certificates of a mutual-TLS cluster (`drover certs init`).
    pub tls: Option<PathBuf>,
    /// Environment every CLI call and worker gets (TLS files, a token).
    pub env: Vec<(String, String)>,
    /// A member (0-based) whose wall clock libfaketime moves by an offset
    /// such as `+1h`, its monotonic clock untouched.
    pub fake_clock: Option<(usize, String)>,
}

/// The flags naming a certificate from `drover certs init` in `dir`.
pub fn tls_flags(dir: &Path, stem: &str) -> Vec<String> {
    vec![
        "--tls-ca".to_owned(),
        dir.join("ca.pem").display().to_string(),
        "--tls-cert".to_owned(),
        dir.join(format!("{stem}.pem")).display().to_string(),
        "--tls-key".to_owned(),
        dir.join(format!("{stem}.key")).display().to_string(),
    ]
}

/// The CLI's environment for certificate `stem` in `dir`.
pub fn tls_env(dir: &Path, stem: &str) -> Vec<(String, String)> {
    vec![
        (
            "DROVER_CA".to_owned(),
            dir.join("ca.pem").display().to_string(),
        ),
        (
            "DROVER_CERT".to_owned(),
            dir.join(format!("{stem}.pem")).display().to_string(),
        ),
        (
            "DROVER_KEY".to_owned(),
            dir.join(format!("{stem}.key")).display().to_string(),
        ),
    ]
}

/// `drover certs init` into `dir` for nodes 1..=n, worker `worker` and
/// client `operator`.
pub fn certs_init(dir: &Path, n: usize) {
    let nodes: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let out = drover()
        .args(["certs", "init", "--out"])
        .arg(dir)
        .args(["--nodes", &nodes.join(",")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "certs init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    /// Starts `n` coordinators and waits for a leader and for every node
    /// to answer. A port picked free can be taken by another test before
    /// the coordinator binds it; then the whole cluster starts again on new
    /// ports rather than running a member short.
    pub fn start(dir: &Path, n: usize) -> Cluster {
        Cluster::start_from(dir, n, None)
    }

    /// Like [`Cluster::start`], each member's data directory first seeded
    /// from `backup` with `drover cluster restore` when one is given.
    pub fn start_from(dir: &Path, n: usize, backup: Option<&Path>) -> Cluster {
        Cluster::start_with(dir, n, backup, None)
    }

    /// Like [`Cluster::start`] with mutual TLS and tokens required:
    /// certificates from `drover certs init` in `DIR/tls`, each
    /// coordinator with its node's, the CLI with the `operator` client's and
    /// a bootstrapped operator token, workers with the `worker`
    /// certificate alone.
    pub fn start_secure(dir: &Path, n: usize) -> Cluster {
        let tls = dir.join("tls");
        certs_init(&tls, n);
        Cluster::start_with(dir, n, None, Some(&tls))
    }

    /// Like [`Cluster::start`], member `node` (0-based) with its wall
    /// clock moved by `offset` (`+1h`, `-1h`) through libfaketime, as an
    /// operator's wrong clock would be; its monotonic clock is untouched.
    pub fn start_with_clock(dir: &Path, n: usize, node: usize, offset: &str) -> Cluster {
        assert!(
            Path::new(FAKETIME_LIB).exists(),
            "{FAKETIME_LIB} is missing: install Debian's `faketime` package (.ci/run does)"
        );
        Cluster::start_inner(dir, n, None, None, Some((node, offset.to_owned())))
    }

    fn start_with(dir: &Path, n: usize, backup: Option<&Path>, tls: Option<&Path>) -> Cluster {
        Cluster::start_inner(dir, n, backup, tls, None)
    }

    fn start_inner(
        dir: &Path,
        n: usize,
        backup: Option<&Path>,
        tls: Option<&Path>,
        fake_clock: Option<(usize, String)>,
    ) -> Cluster {
        for round in 0..5 {
            let cluster = Cluster::try_start(
                &dir.join(format!("try-{round}")),
                n,
                backup,
                tls,
                fake_clock.clone(),
            );
            if let Some(cluster) = cluster {
                return cluster;
            }
        }
        panic!("could not start a {n}-coordinator cluster in 5 tries");
    }

    fn try_start(
        dir: &Path,
        n: usize,
        backup: Option<&Path>,
        tls: Option<&Path>,
        fake_clock: Option<(usize, String)>,
    ) -> Option<Cluster> {
        std::fs::create_dir_all(dir).unwrap();
        let grpc: Vec<String> = (0..n).map(|_| loopback()).collect();
        let http: Vec<String> = (0..n).map(|_| loopback()).collect();
        let peers = grpc
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            dir: dir.to_owned(),
            grpc,
            http,
            peers,
            procs: Vec::new(),
            tls: tls.map(Path::to_owned),
            env: tls
                .map(|t| tls_env(t, "client-operator"))
                .unwrap_or_default(),
            fake_clock,
        };
        for i in 0..n {
            if let Some(backup) = backup {
                let out = drover()
                    .args(["cluster", "restore"])
                    .arg(backup)
                    .arg("--data-dir")
                    .arg(cluster.data_dir(i))
                    .args(["--peers", &cluster.peers])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "restore for node {}: {}",
                    i + 1,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let p = cluster.spawn(i);
            cluster.procs.push(Some(p));
        }
        let start = Instant::now();
        loop {
            let exited = cluster
                .procs
                .iter_mut()
                .flatten()
                .any(|p| matches!(p.child.try_wait(), Ok(Some(_))));
            if exited || start.elapsed() > Duration::from_secs(30) {
                return None;
            }
            // A secure cluster requires tokens: the first is bootstrapped
            // as soon as there is a leader to take it.
            let token_file = dir.join("operator.token");
            if cluster.tls.is_some() && !token_file.exists() {
                let path = token_file.display().to_string();
                if cluster
                    .cli(&["token", "bootstrap", "--out", &path])
                    .status
                    .success()
                {
                    cluster.env.push(("DROVER_TOKEN_FILE".to_owned(), path));
                }
                continue;
            }
            let leader = cluster
                .status()
                .and_then(|s| s["leader"].as_u64())
                .unwrap_or(0);
            let all_up = cluster
                .http
                .iter()
                .all(|h| http_get(h, "/healthz").0 == 200);
            if leader > 0 && all_up {
                return Some(cluster);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Member `i`'s data directory (0-based).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{}", i + 1))
    }

    /// The task log store every member names: one directory, as a
    /// cluster on one machine would share it.
    pub fn task_logs(&self) -> PathBuf {
        self.dir.join("task-logs")
    }

    /// Starts member `i` (0-based) again on its directory and ports, after
    /// it exited; its log continues in the same file.
    pub fn restart(&mut self, i: usize) {
        let p = self.spawn(i);
        self.procs[i] = Some(p);
    }

    fn spawn(&self, i: usize) -> Proc {
        let name = format!("coordinator-{}", i + 1);
        let mut command = drover();
        if let Some((node, offset)) = &self.fake_clock
            && *node == i
        {
            command
                .env("LD_PRELOAD", FAKETIME_LIB)
                .env("FAKETIME", offset)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let child = command
            .args(["coordinator", "--node-id", &(i + 1).to_string()])
            .args(["--listen", &self.grpc[i], "--http", &self.http[i]])
            .args(["--peers", &self.peers])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .arg("--task-logs")
            .arg(self.task_logs())
            .args(
                self.tls
                    .as_deref()
                    .map(|t| tls_flags(t, &format!("node-{}", i + 1)))
                    .unwrap_or_default(),
            )
            // A secure cluster is a mutual-TLS one that requires tokens,
            // as `drover dev --secure` runs.
            .args(self.tls.as_ref().map(|_| "--auth"))
            .env("DROVER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file(&self.dir, &name))
            .spawn()
            .unwrap();
        Proc { child, name }
    }

    /// Every coordinator address, for `--coordinators`.
    pub fn addresses(&self) -> String {
        self.grpc.join(",")
    }

    pub fn status(&self) -> Option<serde_json::Value> {
        let out = self.cli(&["cluster", "status", "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// Runs the CLI against this cluster.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(args, &[])
    }

    /// Runs the CLI with extra environment variables.
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        drover()
            .arg("--coordinators")
            .arg(self.addresses())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// Runs the CLI and parses its JSON output, failing the test with its
    /// standard error when it exits non-zero.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "drover {args:?} exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "drover {args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Short leases so the tests see expiry within seconds; every
    /// coordinator applies the same values through the log. The worker
    /// timeout is long enough that a paused worker is still known when it
    /// wakes, so its late reports meet the fencing check.
    pub fn short_leases(&self) {
        self.lease_settings("30s");
    }

    /// 3 s leases, 500 ms heartbeats, and a silent worker declared lost
    /// after `worker_timeout`.
    pub fn lease_settings(&self, worker_timeout: &str) {
        let s = self.json(&[
            "cluster",
            "settings",
            "--lease-ttl",
            "3s",
            "--heartbeat-interval",
            "500ms",
            "--worker-timeout",
            worker_timeout,
            "--json",
        ]);
        assert_eq!(s["leaseTtlMs"], 3000);
    }

    /// Starts a worker with a fixed id.
    pub fn worker(&self, id: &str, slots: u32, extra: &[&str]) -> Proc {
        self.worker_with(id, slots, |command| {
            command.args(["--id", id]).args(extra);
        })
    }

    /// Starts a worker logging to `NAME.log`, after `finish` has added its
    /// own flags or environment (the id too, or the worker picks one).
    pub fn worker_with(&self, name: &str, slots: u32, finish: impl FnOnce(&mut Command)) -> Proc {
        let mut command = drover();
        command
            .arg("--coordinators")
            .arg(self.addresses())
            .args(["worker", "--slots", &slots.to_string()])
            .arg("--data-root")
            .arg(self.dir.join("outputs"))
            .arg("--work-dir")
            .arg(self.dir.join(format!("scratch-{name}")))
            .args(
                self.tls
                    .as_deref()
                    .map(|t| tls_flags(t, "worker-worker"))
                    .unwrap_or_default(),
            )
            .env("DROVER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file(&self.dir, name));
        finish(&mut command);
        Proc {
            child: command.spawn().unwrap(),
            name: name.to_owned(),
        }
    }

    /// A process's log so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// A job's status as `job status --json` prints it.
    pub fn job(&self, id: &str) -> serde_json::Value {
        self.json(&["job", "status", id, "--json"])
    }

    /// Waits for the job to reach `state`.
    pub fn wait_job(&self, id: &str, state: &str, limit: Duration) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        let start = Instant::now();
        loop {
            let out = self.cli(&["job", "status", id, "--json"]);
            if out.status.success() {
                last = serde_json::from_slice(&out.stdout).unwrap();
                if last["state"] == state {
                    return last;
                }
            }
            assert!(
                start.elapsed() < limit,
                "job {id} did not reach {state} within {limit:?}; last status: {last:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A job's events.
    pub fn events(&self, id: &str) -> Vec<serde_json::Value> {
        self.json(&["job", "events", id, "--json"])["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// How many of a job's tasks (its `job status --json`) `worker` holds.
pub fn leased_by(status: &serde_json::Value, worker: &str) -> usize {
    status["tasks"].as_array().map_or(0, |tasks| {
        tasks
            .iter()
            .filter(|t| t["state"] == "leased" && t["worker"] == worker)
            .count()
    })
}

/// Writes a spec file into `dir`.
pub fn spec_file(dir: &Path, name: &str, yaml: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    path.to_string_lossy().into_owned()
}

/// Polls `f` until it returns Some, up to `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Events of `kind`.
pub fn of_kind<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// A plain HTTP/1.1 GET: the status code and the whole response.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, None)
}

/// A plain HTTP/1.1 request with an optional `(content type, body)`: the
/// status code and the whole response, headers included.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
) -> (u16, String) {
    http_request_with(addr, method, path, body, "")
}

/// A GET sending `authorization: Bearer TOKEN`, as the console page does
/// once signed in.
pub fn http_get_as(addr: &str, path: &str, token: &str) -> (u16, String) {
    http_request_with(
        addr,
        "GET",
        path,
        None,
        &format!("Authorization: Bearer {token}\r\n"),
    )
}

/// [`http_request`] with extra header lines (each ending in CRLF).
fn http_request_with(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
    headers: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = match body {
        Some((content_type, body)) => write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        None => write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n"
        ),
    };
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, response)
}

/// The JSON body of an HTTP response from [`http_request`].
pub fn json_body(response: &str) -> serde_json::Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response}"))
}
