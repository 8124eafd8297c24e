//! Keeps the deploy files (`deploy/`) in step with the binary.
//!
//! Neither systemd nor Docker can run in a test, so this rebuilds every
//! command line those files would start and parses it with the real [`Cli`]:
//!
//! - each systemd unit's `ExecStart=`, with `${VAR}` and `$VAR` expanded
//!   from the env example its `EnvironmentFile=` names, as systemd would;
//! - each compose service's `command:`, after the Dockerfile's `ENTRYPOINT`.
//!
//! Then it checks what makes the parsed commands one working cluster:
//! coordinators listen beyond loopback, each one's `--node-id` is in its
//! `--peers` under its own reachable address, ids are distinct, every
//! worker names every coordinator, a worker's stop timeout outlasts its
//! drain, the coordinators name one task log directory that every worker
//! mounts at the same path, and the healthchecks probe the right port. A problem is reported
//! as `file:line: what is wrong`, all of them at once.
//!
//! The compose file is read with the jobspecs crate's YAML tree, which
//! keeps line numbers; it does not implement `<<` merge keys, so the
//! compose file spells every service out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use drover_jobspecs::diagnostic::Diagnostics;
use drover_jobspecs::yaml::{self, Node, NodeKind};

use drover_cli::Cli;

/// The repository's root, where `deploy/` and `Cargo.toml` are.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// The text of `rel` under the repository root.
fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Fails the test with every problem found, one per line.
fn assert_no_problems(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "the deploy files disagree with the binary:\n{}",
        problems.join("\n")
    );
}

/// What one command line starts, as the binary itself would read it.
#[derive(Debug)]
enum Run {
    /// `drover coordinator ...`.
    Coordinator(CoordinatorRun),
    /// `drover worker ...` (not `worker list` or `drain`).
    Worker(WorkerRun),
}

/// A `drover coordinator` command line.
#[derive(Debug)]
struct CoordinatorRun {
    /// `file:line` of the command, for messages.
    at: String,
    /// `--node-id`, which must be in `--peers` and unique.
    node_id: u64,
    /// `--listen`, which must not be loopback and must match the port
    /// `--peers` gives this node.
    listen: SocketAddr,
    /// `--http`, which the healthcheck must probe.
    http: SocketAddr,
    /// `--data-dir`, which must be given and (in compose) on a volume.
    data_dir: Option<PathBuf>,
    /// `--peers`, by node id.
    peers: BTreeMap<u64, String>,
    /// `--task-logs`, which every coordinator must give alike and, when it
    /// is a directory, every worker must reach at the same path.
    task_logs: Option<String>,
}

/// A `drover worker` command line.
#[derive(Debug)]
struct WorkerRun {
    /// `file:line` of the command, for messages.
    at: String,
    /// `--coordinators`; `None` when it was not on the command line (the
    /// default or the test's environment would then decide).
    coordinators: Option<Vec<String>>,
    /// `--drain-timeout`, which the stop timeout must outlast.
    drain_timeout: Duration,
    /// `--http`, which the healthcheck must probe and Prometheus scrapes.
    http: Option<SocketAddr>,
}

/// Parses `argv` (program name first) with the binary's parser and reads
/// what a deployment check needs. `Err` is one line: clap's error or what
/// is missing.
fn parse_run(argv: &[String], at: &str) -> Result<Run, String> {
    let matches = Cli::command()
        .try_get_matches_from(argv)
        .map_err(|e| first_line(&e.to_string()))?;
    // The same conversion `main` does, so a value clap accepts but the
    // typed `Cli` rejects is caught too.
    Cli::from_arg_matches(&matches).map_err(|e| first_line(&e.to_string()))?;
    match matches.subcommand() {
        Some(("coordinator", m)) => {
            let peers = m
                .get_many::<String>("peers")
                .map(|v| v.cloned().collect::<Vec<_>>())
                .unwrap_or_default();
            Ok(Run::Coordinator(CoordinatorRun {
                at: at.to_owned(),
                node_id: typed::<u64>(m, "node_id")?.ok_or("no --node-id")?,
                listen: typed::<SocketAddr>(m, "listen")?.ok_or("no --listen")?,
                http: typed::<SocketAddr>(m, "http")?.ok_or("no --http")?,
                data_dir: typed::<PathBuf>(m, "data_dir")?,
                peers: drover_client::parse_id_addresses(&peers, "--peers")
                    .map_err(|e| e.to_string())?,
                task_logs: typed::<String>(m, "task_logs")?,
            }))
        }
        Some(("worker", m)) if m.subcommand().is_none() => {
            let coordinators = (m.value_source("coordinators") == Some(ValueSource::CommandLine))
                .then(|| typed::<String>(m, "coordinators"))
                .transpose()?
                .flatten()
                .map(|list| list.split(',').map(|s| s.trim().to_owned()).collect());
            Ok(Run::Worker(WorkerRun {
                at: at.to_owned(),
                coordinators,
                drain_timeout: Duration::from_secs(
                    typed::<u64>(m, "drain_timeout")?.ok_or("no --drain-timeout")?,
                ),
                http: typed::<SocketAddr>(m, "http")?,
            }))
        }
        Some((other, _)) => Err(format!(
            "`drover {other}` is not a long-running role (coordinator or worker)"
        )),
        None => Err("no subcommand".to_owned()),
    }
}

/// The value of `id` as `T`, or a message if the binary no longer stores
/// it as `T` (then this check needs updating, not the deploy files).
fn typed<T: Clone + Send + Sync + 'static>(m: &ArgMatches, id: &str) -> Result<Option<T>, String> {
    m.try_get_one::<T>(id)
        .map(|v| v.cloned())
        .map_err(|e| format!("deploy_check reads `{id}` wrongly: {e}"))
}

/// The headline of a clap error (`error: unexpected argument ...`), without
/// the usage that follows it.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_owned()
}

/// Problems with one coordinator on its own. `reachable` is the address the
/// deployment means others to dial it at, when the file says (compose's
/// service name); otherwise only that it is not a wildcard or loopback.
fn check_coordinator(c: &CoordinatorRun, reachable: Option<&str>, problems: &mut Vec<String>) {
    let at = &c.at;
    if c.listen.ip().is_loopback() {
        problems.push(format!(
            "{at}: --listen {} is loopback; peers and workers on other hosts cannot reach it",
            c.listen
        ));
    }
    if c.http.ip().is_loopback() {
        problems.push(format!(
            "{at}: --http {} is loopback; Prometheus and healthchecks cannot reach it",
            c.http
        ));
    }
    match c.peers.get(&c.node_id) {
        None => problems.push(format!(
            "{at}: --node-id {} is not in --peers ({:?})",
            c.node_id, c.peers
        )),
        Some(own) => {
            let host = own.rsplit_once(':').map_or(own.as_str(), |(h, _)| h);
            if ["0.0.0.0", "[::]", "127.0.0.1", "localhost", "[::1]"].contains(&host) {
                problems.push(format!(
                    "{at}: --peers names this node as `{own}`, which other nodes cannot dial"
                ));
            }
            if let Some(expected) = reachable
                && own != expected
            {
                problems.push(format!(
                    "{at}: --peers names node {} as `{own}`, but it is reached at `{expected}`",
                    c.node_id
                ));
            }
            if !own.ends_with(&format!(":{}", c.listen.port())) {
                problems.push(format!(
                    "{at}: --peers names this node as `{own}`, but it listens on port {}",
                    c.listen.port()
                ));
            }
        }
    }
    if c.peers.len() < 3 {
        problems.push(format!(
            "{at}: --peers lists {} coordinators; the deployment is a 3-node cluster",
            c.peers.len()
        ));
    }
    if c.data_dir.is_none() {
        problems.push(format!(
            "{at}: no --data-dir; the default is relative to the working directory"
        ));
    }
}

/// Problems with one worker: it must name every coordinator, and whatever
/// stops it must wait longer than its drain.
fn check_worker(
    w: &WorkerRun,
    coordinators: &BTreeSet<String>,
    stop_timeout: Option<Duration>,
    problems: &mut Vec<String>,
) {
    let at = &w.at;
    match &w.coordinators {
        None => problems.push(format!("{at}: no --coordinators on the command line")),
        Some(listed) => {
            let listed: BTreeSet<String> = listed.iter().cloned().collect();
            if &listed != coordinators {
                problems.push(format!(
                    "{at}: --coordinators is {listed:?}, but the coordinators are {coordinators:?}"
                ));
            }
        }
    }
    match stop_timeout {
        None => problems.push(format!(
            "{at}: no stop timeout; the default may kill a draining worker"
        )),
        Some(stop) if stop <= w.drain_timeout => problems.push(format!(
            "{at}: stopping waits {stop:?}, not longer than --drain-timeout {:?}; \
             the worker is killed before it hands its tasks back",
            w.drain_timeout
        )),
        Some(_) => {}
    }
}

// ---- systemd units ----

/// `KEY=VALUE` lines of an environment file (comments and blanks skipped,
/// one level of quotes removed), as systemd's `EnvironmentFile=` reads them.
fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            vars.insert(key.trim().to_owned(), value.to_owned());
        }
    }
    vars
}

/// One `[Service]` setting with the line it starts on; backslash-continued
/// lines are joined, as systemd does.
fn unit_settings(text: &str) -> Vec<(u32, String, String)> {
    let mut settings = Vec::new();
    let mut pending: Option<(u32, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index as u32 + 1;
        let (start, mut joined) = match pending.take() {
            Some((start, so_far)) => (start, so_far),
            None => {
                let trimmed = raw.trim_start();
                if trimmed.is_empty()
                    || trimmed.starts_with('#')
                    || trimmed.starts_with(';')
                    || trimmed.starts_with('[')
                {
                    continue;
                }
                (line_no, String::new())
            }
        };
        let part = raw.trim();
        if let Some(head) = part.strip_suffix('\\') {
            joined.push_str(head);
            joined.push(' ');
            pending = Some((start, joined));
            continue;
        }
        joined.push_str(part);
        if let Some((key, value)) = joined.split_once('=') {
            settings.push((start, key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    settings
}

/// `ExecStart=` split into words and expanded as systemd does: `${VAR}` is
/// replaced in place (one word whatever it holds), a word that is exactly
/// `$VAR` becomes the value split at whitespace (zero or more words). A
/// variable the env file lacks is an error, since systemd would quietly
/// make it empty.
fn expand_exec(line: &str, env: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    let line = line.trim_start_matches(['-', '@', ':', '+', '!']);
    let mut argv = Vec::new();
    for word in split_words(line)? {
        if let Some(name) = word.strip_prefix('$')
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            let value = env
                .get(name)
                .ok_or_else(|| format!("${name} is not set in the env file"))?;
            argv.extend(value.split_whitespace().map(str::to_owned));
            continue;
        }
        let mut out = String::new();
        let mut rest = word.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in `{word}`"))?;
            let name = &after[..end];
            let value = env
                .get(name)
                .ok_or_else(|| format!("${{{name}}} is not set in the env file"))?;
            out.push_str(value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        argv.push(out);
    }
    Ok(argv)
}

/// Whitespace-separated words, with double or single quotes grouping.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(ch);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unclosed quote".to_owned());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// A systemd time span: bare seconds or humantime units (`90`, `60s`,
/// `2min`).
fn parse_timespan(text: &str) -> Option<Duration> {
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).ok()
}

/// A unit, read: what its `ExecStart=` runs and how long stopping waits.
#[derive(Debug)]
struct Unit {
    /// What `ExecStart=` starts.
    run: Run,
    /// `TimeoutStopSec=`, which a worker's drain must fit in.
    stop_timeout: Option<Duration>,
    /// The env file's variables, for cross-checks.
    env: BTreeMap<String, String>,
}

/// Reads unit `file` (its text `unit`), expanding `ExecStart=` with `envs`:
/// by the `EnvironmentFile=` path each stands for, an env example's file
/// name and text.
fn read_unit(
    file: &str,
    unit: &str,
    envs: &BTreeMap<String, (String, String)>,
    problems: &mut Vec<String>,
) -> Option<Unit> {
    let settings = unit_settings(unit);
    let get = |key: &str| settings.iter().find(|(_, k, _)| k == key);
    let Some((_, _, env_path)) = get("EnvironmentFile") else {
        problems.push(format!("{file}: no EnvironmentFile="));
        return None;
    };
    let Some((env_file, env_text)) = envs.get(env_path.trim_start_matches('-')) else {
        problems.push(format!("{file}: no example for EnvironmentFile={env_path}"));
        return None;
    };
    let env = parse_env_file(env_text);
    let Some((line, _, exec)) = get("ExecStart") else {
        problems.push(format!("{file}: no ExecStart="));
        return None;
    };
    // The values come from the env example, so a message names both.
    let at = format!("{file}:{line} (with {env_file})");
    let argv = match expand_exec(exec, &env) {
        Ok(argv) => argv,
        Err(e) => {
            problems.push(format!("{at}: {e}"));
            return None;
        }
    };
    if argv.first().is_none_or(|p| !p.starts_with('/')) {
        problems.push(format!(
            "{at}: ExecStart= must start with an absolute path to drover"
        ));
    }
    let stop_timeout = get("TimeoutStopSec").and_then(|(_, _, v)| parse_timespan(v));
    match parse_run(&argv, &at) {
        Ok(run) => Some(Unit {
            run,
            stop_timeout,
            env,
        }),
        Err(e) => {
            problems.push(format!("{at}: {e}   (argv: {argv:?})"));
            None
        }
    }
}

/// Every problem with the systemd units. `files` maps a file name under
/// `deploy/systemd/` to its text.
fn check_systemd(files: &BTreeMap<&str, String>) -> Vec<String> {
    let mut problems = Vec::new();
    // Installed as /etc/drover/NAME.env from deploy/systemd/NAME.env.example.
    let envs: BTreeMap<String, (String, String)> = files
        .iter()
        .filter_map(|(name, text)| {
            let stem = name.strip_suffix(".env.example")?;
            Some((
                format!("/etc/drover/{stem}.env"),
                (format!("deploy/systemd/{name}"), text.clone()),
            ))
        })
        .collect();
    let path = |name: &str| format!("deploy/systemd/{name}");
    let coordinator = read_unit(
        &path("drover-coordinator.service"),
        &files["drover-coordinator.service"],
        &envs,
        &mut problems,
    );
    let worker = read_unit(
        &path("drover-worker.service"),
        &files["drover-worker.service"],
        &envs,
        &mut problems,
    );
    let mut peer_addresses = BTreeSet::new();
    if let Some(unit) = &coordinator {
        match &unit.run {
            Run::Coordinator(c) => {
                check_coordinator(c, None, &mut problems);
                peer_addresses = c.peers.values().cloned().collect();
                if unit
                    .env
                    .get("DROVER_DATA_DIR")
                    .is_some_and(|d| !Path::new(d).starts_with("/var/lib/drover"))
                {
                    problems.push(format!(
                        "{}: DROVER_DATA_DIR is outside /var/lib/drover, the unit's only writable path",
                        c.at
                    ));
                }
            }
            Run::Worker(w) => problems.push(format!("{}: starts a worker", w.at)),
        }
    }
    if let Some(unit) = &worker {
        match &unit.run {
            Run::Worker(w) => {
                check_worker(w, &peer_addresses, unit.stop_timeout, &mut problems);
                if w.http.is_none() {
                    problems.push(format!("{}: no --http, so nothing to scrape", w.at));
                }
            }
            Run::Coordinator(c) => problems.push(format!("{}: starts a coordinator", c.at)),
        }
    }
    problems
}

fn systemd_files() -> BTreeMap<&'static str, String> {
    [
        "drover-coordinator.service",
        "drover-worker.service",
        "coordinator.env.example",
        "worker.env.example",
    ]
    .into_iter()
    .map(|name| (name, read(&format!("deploy/systemd/{name}"))))
    .collect()
}

#[test]
fn systemd_units_start_valid_commands() {
    assert_no_problems(&check_systemd(&systemd_files()));
}

#[test]
fn systemd_check_reports_a_wrong_flag_and_a_short_stop_timeout() {
    let mut files = systemd_files();
    let unit = files.get_mut("drover-coordinator.service").unwrap();
    *unit = unit.replace("--node-id ", "--node ");
    let unit = files.get_mut("drover-worker.service").unwrap();
    *unit = unit.replace("TimeoutStopSec=60", "TimeoutStopSec=30");
    let problems = check_systemd(&files);
    let text = problems.join("\n");
    assert!(
        text.contains("deploy/systemd/drover-coordinator.service:")
            && text.contains("unexpected argument '--node'"),
        "{text}"
    );
    assert!(text.contains("not longer than --drain-timeout"), "{text}");
}

#[test]
fn systemd_exec_lines_expand_like_systemd() {
    let env = parse_env_file("A=one two\nB=\"quoted\"\n# C=no\nEMPTY=\n");
    assert_eq!(
        expand_exec("/bin/x --a ${A} --b=${B} $EMPTY $A", &env).unwrap(),
        ["/bin/x", "--a", "one two", "--b=quoted", "one", "two"]
    );
    assert!(expand_exec("/bin/x ${C}", &env).is_err());
    let settings = unit_settings("[Service]\nExecStart=/bin/x \\\n    --y 1\nUser=u\n");
    assert_eq!(settings[0], (2, "ExecStart".into(), "/bin/x  --y 1".into()));
    assert_eq!(settings[1], (4, "User".into(), "u".into()));
}

// ---- the Dockerfile ----

/// The Dockerfile's `ENTRYPOINT`, which must be the exec (JSON) form: the
/// shell form would run drover under `sh -c`, which does not pass SIGTERM
/// on, so a worker would never drain.
fn dockerfile_entrypoint(dockerfile: &str) -> Result<Vec<String>, String> {
    let (line_no, line) = dockerfile
        .lines()
        .enumerate()
        .find(|(_, l)| l.trim_start().starts_with("ENTRYPOINT"))
        .ok_or("deploy/docker/Dockerfile: no ENTRYPOINT")?;
    let json = line.trim_start().trim_start_matches("ENTRYPOINT").trim();
    serde_json::from_str::<Vec<String>>(json).map_err(|_| {
        format!(
            "deploy/docker/Dockerfile:{}: ENTRYPOINT must be a JSON list, like [\"drover\"]",
            line_no + 1
        )
    })
}

#[test]
fn dockerfile_matches_the_workspace() {
    let dockerfile = read("deploy/docker/Dockerfile");
    let mut problems = Vec::new();
    match dockerfile_entrypoint(&dockerfile) {
        Ok(entrypoint) if entrypoint == ["drover"] => {}
        Ok(other) => problems.push(format!(
            "deploy/docker/Dockerfile: ENTRYPOINT is {other:?}; compose commands start after [\"drover\"]"
        )),
        Err(e) => problems.push(e),
    }
    // The build image is the toolchain the workspace promises to build with.
    let manifest = read("Cargo.toml");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("Cargo.toml has a rust-version");
    if !dockerfile.contains(&format!("ARG RUST_VERSION={rust_version}\n")) {
        problems.push(format!(
            "deploy/docker/Dockerfile: ARG RUST_VERSION is not the workspace's rust-version {rust_version}"
        ));
    }
    if !dockerfile.contains("cargo build --release --locked -p drover") {
        problems.push("deploy/docker/Dockerfile: does not build the `drover` package".to_owned());
    }
    // Excluded from the build context: the build output alone can be GBs.
    let dockerignore = read(".dockerignore");
    for entry in ["target/", "drover-data/"] {
        if !dockerignore.lines().any(|l| l.trim() == entry) {
            problems.push(format!(".dockerignore: does not exclude {entry}"));
        }
    }
    assert_no_problems(&problems);
}

// ---- the compose file ----

/// The scalar text of `node`, if it is a scalar.
fn scalar(node: &Node) -> Option<&str> {
    match &node.kind {
        NodeKind::Scalar(s) => Some(&s.text),
        _ => None,
    }
}

/// A compose duration (`1m30s`, `60s`).
fn compose_duration(node: Option<&Node>) -> Option<Duration> {
    humantime::parse_duration(scalar(node?)?).ok()
}

/// The port and path of the `http://` URL in a healthcheck's `test:` list.
fn healthcheck_url(service: &Node) -> Option<(u16, String)> {
    let NodeKind::Seq(items) = &service.get("healthcheck")?.get("test")?.kind else {
        return None;
    };
    let url = items
        .iter()
        .filter_map(scalar)
        .find_map(|s| s.strip_prefix("http://"))?;
    let (authority, path) = url.split_once('/')?;
    let port = authority.rsplit_once(':')?.1.parse().ok()?;
    Some((port, format!("/{path}")))
}

/// Named volumes mounted by `service`, as (source, target).
fn volume_mounts(service: &Node) -> Vec<(String, String)> {
    let Some(NodeKind::Seq(items)) = service.get("volumes").map(|v| &v.kind) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(scalar)
        .filter_map(|v| {
            let mut parts = v.split(':');
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

/// Every problem with the compose file `text` (named `file`), its
/// commands prefixed by `entrypoint`.
fn check_compose(file: &str, text: &str, entrypoint: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut diags = Diagnostics::new(file);
    let Some(root) = yaml::parse(text, &mut diags) else {
        return diags
            .into_sorted()
            .iter()
            .map(|d| format!("{file}:{}: {}", d.line, d.message))
            .collect();
    };
    let Some(services) = root.get("services").and_then(Node::as_map) else {
        return vec![format!("{file}: no `services:` mapping")];
    };
    let mut coordinators: Vec<(String, CoordinatorRun)> = Vec::new();
    let mut workers: Vec<(WorkerRun, Option<Duration>)> = Vec::new();
    // Where each coordinator's task log directory is mounted from, and
    // what each worker mounts.
    let mut log_mounts: Vec<(String, Option<(String, String)>)> = Vec::new();
    let mut worker_mounts: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut volumes_used: BTreeMap<String, String> = BTreeMap::new();
    let mut roles: Vec<(String, Option<String>)> = Vec::new();
    for entry in services {
        let name = &entry.key;
        let service = &entry.value;
        let at = format!("{file}:{}", entry.key_span.start.line);
        // Only services of the drover image run the binary.
        if service.get("image").and_then(scalar) != Some("drover") {
            continue;
        }
        if service.get("entrypoint").is_some() {
            problems.push(format!(
                "{at}: {name}: overrides `entrypoint:`, which this check does not model"
            ));
            continue;
        }
        let Some(command) = service.get("command") else {
            problems.push(format!("{at}: {name}: no `command:`"));
            continue;
        };
        let at = format!("{file}:{}", command.span.start.line);
        let NodeKind::Seq(items) = &command.kind else {
            problems.push(format!(
                "{at}: {name}: `command:` must be a YAML list (a string is split by Compose's own rules)"
            ));
            continue;
        };
        let mut argv = entrypoint.to_vec();
        argv.extend(items.iter().map(|i| scalar(i).unwrap_or("").to_owned()));
        // Counted before parsing, so a service whose command is wrong is
        // reported once, not also as missing.
        roles.push((name.clone(), argv.get(entrypoint.len()).cloned()));
        let run = match parse_run(&argv, &format!("{at}: {name}")) {
            Ok(run) => run,
            Err(e) => {
                problems.push(format!("{at}: {name}: {e}"));
                continue;
            }
        };
        let health = healthcheck_url(service);
        let mounts = volume_mounts(service);
        match run {
            Run::Coordinator(c) => {
                check_coordinator(
                    &c,
                    Some(&format!("{name}:{}", c.listen.port())),
                    &mut problems,
                );
                match health {
                    Some((port, path))
                        if port == c.http.port() && (path == "/readyz" || path == "/healthz") => {}
                    other => problems.push(format!(
                        "{}: healthcheck {other:?} does not probe /readyz on --http port {}",
                        c.at,
                        c.http.port()
                    )),
                }
                // The state must outlive the container: on a volume of its
                // own.
                let on_volume = mounts.iter().find(|(_, target)| {
                    c.data_dir.as_deref().is_some_and(|d| d.starts_with(target))
                });
                match on_volume {
                    None => problems.push(format!(
                        "{}: --data-dir {:?} is not on a mounted volume",
                        c.at, c.data_dir
                    )),
                    Some((source, _)) => {
                        if let Some(other) = volumes_used.insert(source.clone(), name.clone()) {
                            problems.push(format!(
                                "{}: volume `{source}` is also {other}'s state",
                                c.at
                            ));
                        }
                    }
                }
                let logs_on = c.task_logs.as_deref().and_then(|dir| {
                    // The innermost mount holding it, by whole path parts.
                    mounts
                        .iter()
                        .filter(|(_, target)| std::path::Path::new(dir).starts_with(target))
                        .max_by_key(|(_, target)| target.len())
                        .cloned()
                });
                log_mounts.push((c.at.clone(), logs_on));
                coordinators.push((name.clone(), c));
            }
            Run::Worker(w) => {
                match (health, w.http) {
                    (Some((port, path)), Some(http))
                        if port == http.port() && path == "/healthz" => {}
                    (health, http) => problems.push(format!(
                        "{}: healthcheck {health:?} does not probe /healthz on --http {http:?}",
                        w.at
                    )),
                }
                worker_mounts.push((w.at.clone(), mounts));
                workers.push((w, compose_duration(service.get("stop_grace_period"))));
            }
        }
    }
    let with_role = |role: &str| -> Vec<&str> {
        roles
            .iter()
            .filter(|(_, r)| r.as_deref() == Some(role))
            .map(|(name, _)| name.as_str())
            .collect()
    };
    let names = with_role("coordinator");
    if names != ["coordinator-1", "coordinator-2", "coordinator-3"] {
        problems.push(format!(
            "{file}: expected coordinator-1, coordinator-2 and coordinator-3, found {names:?}"
        ));
    }
    if with_role("worker").is_empty() {
        problems.push(format!("{file}: no worker service"));
    }
    let mut ids = BTreeSet::new();
    for (_, c) in &coordinators {
        if !ids.insert(c.node_id) {
            problems.push(format!("{}: --node-id {} is used twice", c.at, c.node_id));
        }
    }
    if let Some((_, first)) = coordinators.first() {
        for (_, c) in &coordinators[1..] {
            if c.peers != first.peers {
                problems.push(format!(
                    "{}: --peers differs from {}'s; every coordinator must list the same",
                    c.at, first.at
                ));
            }
        }
        let known: BTreeSet<u64> = first.peers.keys().copied().collect();
        if known != ids {
            problems.push(format!(
                "{file}: --peers lists nodes {known:?}, but the services are nodes {ids:?}"
            ));
        }
    }
    check_task_logs(&coordinators, &log_mounts, &worker_mounts, &mut problems);
    let addresses: BTreeSet<String> = coordinators
        .first()
        .map(|(_, c)| c.peers.values().cloned().collect())
        .unwrap_or_default();
    for (w, grace) in &workers {
        check_worker(w, &addresses, *grace, &mut problems);
    }
    problems
}

/// Every coordinator names one task log store; a directory must be on a
/// volume that every worker mounts at the same path, since workers write
/// where the coordinators tell them and the coordinators read it back.
fn check_task_logs(
    coordinators: &[(String, CoordinatorRun)],
    log_mounts: &[(String, Option<(String, String)>)],
    worker_mounts: &[(String, Vec<(String, String)>)],
    problems: &mut Vec<String>,
) {
    let Some((_, first)) = coordinators.first() else {
        return;
    };
    for (_, c) in &coordinators[1..] {
        if c.task_logs != first.task_logs {
            problems.push(format!(
                "{}: --task-logs {:?} differs from {}'s {:?}",
                c.at, c.task_logs, first.at, first.task_logs
            ));
        }
    }
    let Some(dir) = first
        .task_logs
        .as_deref()
        .filter(|u| !u.starts_with("s3://"))
    else {
        return;
    };
    for (at, mount) in log_mounts {
        let Some(mount) = mount else {
            problems.push(format!(
                "{at}: --task-logs {dir} is not on a mounted volume"
            ));
            continue;
        };
        for (worker, mounts) in worker_mounts {
            if !mounts.contains(mount) {
                problems.push(format!(
                    "{worker}: does not mount volume `{}` at {}, where the coordinators \
                     tell workers to store task logs ({dir})",
                    mount.0, mount.1
                ));
            }
        }
    }
}

fn compose_entrypoint() -> Vec<String> {
    dockerfile_entrypoint(&read("deploy/docker/Dockerfile")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn compose_commands_parse_and_form_one_cluster() {
    let problems = check_compose(
        "deploy/compose.yaml",
        &read("deploy/compose.yaml"),
        &compose_entrypoint(),
    );
    assert_no_problems(&problems);
}

#[test]
fn compose_check_reports_each_kind_of_mistake() {
    let text = read("deploy/compose.yaml");
    let check = |broken: String| check_compose("compose.yaml", &broken, &compose_entrypoint());

    // A misspelt flag, with the line of its command.
    let problems = check(text.replacen("- --slots=4", "- --slot=4", 1));
    let text_of = |p: &[String]| p.join("\n");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("compose.yaml:") && p.contains("unexpected argument '--slot'")),
        "{}",
        text_of(&problems)
    );

    // Two coordinators with one id: the id is not where --peers puts it.
    let problems = check(text.replacen("--node-id=2", "--node-id=1", 1));
    assert!(
        text_of(&problems).contains("--node-id 1 is used twice"),
        "{}",
        text_of(&problems)
    );

    // A worker that does not know one coordinator.
    let problems = check(text.replacen(
        "--coordinators=coordinator-1:7070,coordinator-2:7070,coordinator-3:7070",
        "--coordinators=coordinator-1:7070,coordinator-2:7070",
        1,
    ));
    assert!(
        text_of(&problems).contains("--coordinators is"),
        "{}",
        text_of(&problems)
    );

    // Coordinators on loopback only.
    let problems = check(text.replacen("--listen=0.0.0.0:7070", "--listen=127.0.0.1:7070", 1));
    assert!(
        text_of(&problems).contains("is loopback"),
        "{}",
        text_of(&problems)
    );

    // Docker's SIGKILL before the drain ends.
    let problems = check(text.replacen("stop_grace_period: 60s", "stop_grace_period: 10s", 1));
    assert!(
        text_of(&problems).contains("not longer than --drain-timeout"),
        "{}",
        text_of(&problems)
    );

    // Task logs on a volume the workers do not mount: stored where no
    // coordinator looks; and on no volume at all.
    let mount = "      - task-logs:/var/lib/drover-task-logs\n";
    let last = text.rfind(mount).unwrap();
    let problems = check(format!("{}{}", &text[..last], &text[last + mount.len()..]));
    assert!(
        text_of(&problems).contains("worker: does not mount volume `task-logs`"),
        "{}",
        text_of(&problems)
    );
    let problems = check(text.replace(mount, ""));
    assert!(
        text_of(&problems)
            .contains("--task-logs /var/lib/drover-task-logs is not on a mounted volume"),
        "{}",
        text_of(&problems)
    );
    let problems = check(text.replacen(
        "--task-logs=/var/lib/drover-task-logs",
        "--task-logs=/elsewhere",
        1,
    ));
    assert!(
        text_of(&problems)
            .contains("coordinator-2: --task-logs Some(\"/var/lib/drover-task-logs\") differs"),
        "{}",
        text_of(&problems)
    );

    // A renamed or missing service fails loudly rather than checking nothing.
    let problems = check(text.replace("coordinator-3:\n", "coordinator-x:\n"));
    assert!(
        text_of(&problems).contains("expected coordinator-1, coordinator-2 and coordinator-3"),
        "{}",
        text_of(&problems)
    );
}

// ---- the AWS template ----

/// The files `deploy/aws/drover.yaml`'s boot scripts write with
/// `cat > PATH <<EOF`, by path, as an instance would see them: the
/// template's parameters at their defaults, the shell's `$NODE` and
/// `$REGION` at sample values, and `${!VAR}` (CloudFormation's escape) as
/// the `${VAR}` systemd expands.
fn aws_boot_files(template: &str) -> BTreeMap<String, (u32, String)> {
    let mut defaults: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in template.lines() {
        if let Some(name) = line
            .strip_prefix("  ")
            .filter(|l| !l.starts_with(' '))
            .and_then(|l| l.strip_suffix(':'))
        {
            current = Some(name.to_owned());
        } else if let (Some(name), Some(value)) =
            (&current, line.trim_start().strip_prefix("Default: "))
        {
            defaults.insert(name.clone(), value.trim().to_owned());
        }
    }
    defaults.insert("AWS::StackName".to_owned(), "drover".to_owned());
    let render = |line: &str| -> String {
        let mut out = line.replace("${!", "\u{0}");
        for (name, value) in &defaults {
            out = out.replace(&format!("${{{name}}}"), value);
        }
        out.replace('\u{0}', "${")
            .replace("$NODE", "1")
            .replace("$REGION", "eu-west-1")
    };
    let mut files = BTreeMap::new();
    let mut lines = template.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("cat > ") else {
            continue;
        };
        let Some((path, _)) = rest.split_once(" <<") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let mut body = String::new();
        for (_, line) in lines.by_ref() {
            if line.trim() == "EOF" {
                break;
            }
            body.push_str(&render(line.get(indent..).unwrap_or("")));
            body.push('\n');
        }
        files.insert(path.to_owned(), (i as u32 + 1, body));
    }
    files
}

/// Every problem with the commands the AWS template's instances start.
fn check_aws(template: &str) -> Vec<String> {
    let file = "deploy/aws/drover.yaml";
    let files = aws_boot_files(template);
    let mut problems = Vec::new();
    let envs: BTreeMap<String, (String, String)> = files
        .iter()
        .filter(|(path, _)| path.ends_with(".env"))
        .map(|(path, (line, text))| (path.clone(), (format!("{file}:{line}"), text.clone())))
        .collect();
    let unit = |path: &str, problems: &mut Vec<String>| match files.get(path) {
        None => {
            problems.push(format!("{file}: no boot script writes {path}"));
            None
        }
        Some((line, text)) => read_unit(&format!("{file}:{line} ({path})"), text, &envs, problems),
    };
    let coordinator = unit(
        "/etc/systemd/system/drover-coordinator.service",
        &mut problems,
    );
    let worker = unit("/etc/systemd/system/drover-worker.service", &mut problems);
    let mut peers = BTreeSet::new();
    if let Some(Unit {
        run: Run::Coordinator(c),
        ..
    }) = &coordinator
    {
        check_coordinator(c, None, &mut problems);
        peers = c.peers.values().cloned().collect();
    }
    if let Some(Unit {
        run: Run::Worker(w),
        stop_timeout,
        ..
    }) = &worker
    {
        check_worker(w, &peers, *stop_timeout, &mut problems);
    }
    problems
}

#[test]
fn the_aws_template_starts_valid_commands() {
    assert_no_problems(&check_aws(&read("deploy/aws/drover.yaml")));
}

#[test]
fn the_aws_check_reports_a_wrong_flag_and_a_drain_longer_than_the_stop() {
    let text = read("deploy/aws/drover.yaml");
    let problems =
        check_aws(&text.replace("--scaling-default-slots", "--default-slots")).join("\n");
    assert!(
        problems.contains("unexpected argument '--default-slots'"),
        "{problems}"
    );
    let problems = check_aws(&text.replace("TimeoutStopSec=115", "TimeoutStopSec=60")).join("\n");
    assert!(
        problems.contains("not longer than --drain-timeout"),
        "{problems}"
    );
}
