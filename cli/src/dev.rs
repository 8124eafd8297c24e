//! `drover dev`: the embedded single-node default: a one-voter coordinator
//! (the same code path as a cluster), in-process workers and the HTTP
//! endpoint, in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use drover_coordinator::raft::node::NodeHandle;
use drover_coordinator::server::{self, ServerConfig};
use drover_net::{Bearer, Coordinators, Dialer, PeerIdentity, TlsFiles};
use drover_proto::names::job_state;
use drover_proto::v1::{Job, JobState, SubmitJobRequest, TaskKind};
use drover_web::Console;
use drover_worker::runner::{self, WorkerConfig};

use drover_client::job::fetch::get_job;

#[derive(Debug, Args)]
pub struct DevArgs {
    /// In-process workers.
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// Slots per worker.
    #[arg(long, default_value_t = 4)]
    slots: u32,
    /// Where state and task scratch space live.
    #[arg(long, default_value = "./drover-data")]
    data_dir: PathBuf,
    /// gRPC address (the CLI's default coordinator).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// HTTP address for the coordinator's /healthz, /readyz and /metrics.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Run the example jobs that exist, show their progress, and exit 0
    /// when all succeed.
    #[arg(long)]
    demo: bool,
    /// Where attempts' logs are stored [default: DATA_DIR/task-logs]; an
    /// s3:// URL works too.
    #[arg(long, value_name = "URL")]
    task_logs: Option<String>,
    /// Mutual TLS on every connection and tokens required, with a CA,
    /// certificates and an operator token written to DATA_DIR/tls on first
    /// use (kept for later runs); prints how the CLI uses them.
    #[arg(long)]
    secure: bool,
}

/// Where `drover dev` serves gRPC unless told otherwise: the address the
/// CLI dials by default.
const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

/// How a client on this machine reaches `listen`: a wildcard address
/// (`0.0.0.0:7070`) is dialled on loopback.
fn cli_address(listen: SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        let loopback: std::net::IpAddr = if listen.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        SocketAddr::new(loopback, listen.port()).to_string()
    } else {
        listen.to_string()
    }
}

/// The operator token `drover dev --secure` bootstraps, in DATA_DIR/tls.
const OPERATOR_TOKEN_FILE: &str = "operator.token";

/// Certificate names `drover dev --secure` writes.
const SECURE_WORKER: &str = "dev";
const SECURE_CLIENT: &str = "operator";

/// What `--secure` sets up: the node's files, and dialers for the
/// in-process workers and the console.
struct DevSecurity {
    node: Option<TlsFiles>,
    workers: Dialer,
    console: Dialer,
}

fn dev_security(args: &DevArgs) -> Result<DevSecurity> {
    if !args.secure {
        return Ok(DevSecurity {
            node: None,
            workers: Dialer::plaintext(),
            console: Dialer::plaintext(),
        });
    }
    let dir = args.data_dir.join("tls");
    let node = PeerIdentity::Node(1);
    let worker = PeerIdentity::Worker(SECURE_WORKER.to_owned());
    let client = PeerIdentity::Client(SECURE_CLIENT.to_owned());
    if !dir.join("ca.pem").exists() {
        let mut hosts = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        let ip = args.listen.ip().to_string();
        if !hosts.contains(&ip) && !args.listen.ip().is_unspecified() {
            hosts.push(ip);
        }
        crate::certs::init_dir(
            &dir,
            &[node.clone(), worker.clone(), client.clone()],
            &hosts,
            365,
            false,
        )?;
    }
    let files = |identity: &PeerIdentity| TlsFiles::in_dir(&dir, &crate::certs::stem(identity));
    let client_files = files(&client);
    eprintln!("drover dev --secure: mutual TLS and tokens on; for the CLI:");
    eprintln!(
        "  export DROVER_COORDINATORS={} DROVER_CA={} DROVER_CERT={} DROVER_KEY={} DROVER_TOKEN_FILE={}",
        cli_address(args.listen),
        client_files.ca.display(),
        client_files.cert.display(),
        client_files.key.display(),
        dir.join(OPERATOR_TOKEN_FILE).display()
    );
    let node_files = files(&node);
    Ok(DevSecurity {
        workers: Dialer::tls(files(&worker))?,
        console: Dialer::tls(node_files.clone())?,
        node: Some(node_files),
    })
}

/// Creates the cluster's first operator token and writes it to
/// DIR/operator.token, unless that file is already there (a later run).
async fn bootstrap_operator_token(node: &NodeHandle, dir: &std::path::Path) -> Result<()> {
    let path = dir.join(OPERATOR_TOKEN_FILE);
    if path.exists() {
        return Ok(());
    }
    let created = drover_coordinator::service::tokens::Tokens::new(node.clone(), true)
        .bootstrap(drover_proto::v1::BootstrapTokenRequest {
            name: "dev-operator".to_owned(),
        })
        .await
        .map_err(|e| {
            anyhow!(
                "creating the operator token: {}; if {} was deleted, start over with a new --data-dir",
                e.message(),
                path.display()
            )
        })?;
    drover_client::files::write(&path, &format!("{}\n", created.secret), true, false)
}

/// The demo's client of its own node: it submits and follows jobs
/// through the job service as any remote client does, so the service's
/// size, namespace and policy checks apply (as the operator when
/// `--secure`).
fn demo_client(args: &DevArgs) -> Result<Coordinators> {
    let mut dialer = Dialer::plaintext();
    if args.secure {
        let dir = args.data_dir.join("tls");
        let client = PeerIdentity::Client(SECURE_CLIENT.to_owned());
        let path = dir.join(OPERATOR_TOKEN_FILE);
        let token = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        dialer = Dialer::tls(TlsFiles::in_dir(&dir, &crate::certs::stem(&client)))?
            .with_bearer(Bearer::token(&token)?);
    }
    Ok(Coordinators::parse(&cli_address(args.listen)).with_dialer(dialer))
}

/// The examples the demo runs: those whose kinds have executors today.
const DEMO_SPECS: &[(&str, &str)] = &[
    (
        "dag-sleep.yaml",
        include_str!("../../jobspecs/examples/dag-sleep.yaml"),
    ),
    (
        "annotation-export.yaml",
        include_str!("../../jobspecs/examples/annotation-export.yaml"),
    ),
    (
        "dedup.yaml",
        include_str!("../../jobspecs/examples/dedup.yaml"),
    ),
    (SENSOR_SPEC.0, SENSOR_SPEC.1),
];

/// The sensor example: submitted as a backfill of the last
/// [`DEMO_SENSOR_DAYS`] days, as the nightly schedule, and as the
/// nightly's run for yesterday once the backfill is done (which finds
/// yesterday unchanged and skips it).
const SENSOR_SPEC: (&str, &str) = (
    "sensor-backfill.yaml",
    include_str!("../../jobspecs/examples/sensor-backfill.yaml"),
);

/// Devices of the demo's sensor readings.
const DEMO_DEVICES: u64 = 200;

/// Days the demo's sensor backfill covers, ending yesterday.
const DEMO_SENSOR_DAYS: u32 = 3;

/// Items per generated annotation project in the demo: enough for every
/// shard to have work, small enough to finish in seconds.
const DEMO_ITEMS: u64 = 2_000;

/// Documents of the demo's text corpus, for the dedup example.
const DEMO_DOCS: u64 = 20_000;

pub async fn run(args: DevArgs) -> Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {} (is another drover running? use --listen)",
                args.listen
            )
        })?;
    let http = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("listening on {} for HTTP (use --http)", args.http))?;
    let security = dev_security(&args)?;
    let mut config = ServerConfig::new(1, args.data_dir.join("dev-coordinator"));
    config.peers.insert(1, args.listen.to_string());
    config.tls = security.node.clone();
    config.auth_required = args.secure;
    let task_logs = args
        .task_logs
        .clone()
        .unwrap_or_else(|| args.data_dir.join("task-logs").display().to_string());
    config.task_logs = Some(drover_web::task_logs::open(&task_logs)?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let (started, serve) = server::start(config, listener, async move {
        let _ = server_stop.wait_for(|s| *s).await;
    })
    .map_err(|e| anyhow!("starting the coordinator: {e}"))?;
    let node = started.node.clone();
    let server_task = tokio::spawn(serve);
    let console = Console::new(
        node.clone(),
        crate::coordinator::dial_address(args.listen),
        security.console.clone(),
    );
    let http_task = tokio::spawn(drover_web::serve(
        http,
        node.clone(),
        started.metrics.clone(),
        console,
    ));
    wait_for_leader(&node).await?;
    if args.secure {
        bootstrap_operator_token(&node, &args.data_dir.join("tls")).await?;
    }

    let mut worker_tasks = Vec::new();
    for i in 0..args.workers {
        let mut w = WorkerConfig::new(
            crate::worker::new_worker_id(&format!("dev{i}-")),
            vec![args.listen.to_string()],
        );
        w.slots = args.slots;
        w.data_root = args.data_dir.join("outputs");
        w.work_dir = args.data_dir.join("dev-worker");
        w.lease_wait = Duration::from_secs(2);
        w.dialer = security.workers.clone();
        let mut stop = stop_rx.clone();
        worker_tasks.push(tokio::spawn(runner::run(w, async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }
    eprintln!(
        "drover dev: coordinator on {}, console and metrics on http://{}/, {} workers x {} slots, data in {}",
        args.listen,
        cli_address(args.http),
        args.workers,
        args.slots,
        args.data_dir.display()
    );
    // The CLI's default is this command's default; any other address has
    // to be given to it (the secure line above already names it).
    if !args.secure && args.listen.to_string() != DEFAULT_LISTEN {
        eprintln!(
            "  for the CLI: export DROVER_COORDINATORS={}",
            cli_address(args.listen)
        );
    }

    let code = if args.demo {
        demo(&demo_client(&args)?, &args.data_dir).await?
    } else {
        eprintln!("serving; submit specs with `drover job submit SPEC.yaml`, Ctrl-C to stop");
        crate::coordinator::shutdown_signal().await;
        ExitCode::SUCCESS
    };
    let _ = stop_tx.send(true);
    for t in worker_tasks {
        let _ = t.await;
    }
    http_task.abort();
    let _ = server_task.await;
    started.stop().await;
    Ok(code)
}

/// Where a finished job's last template put its output: the `output` of
/// the last template that writes a dataset (a `noop` after it writes
/// none); sensor features are published by date under it.
fn final_output(job: &Job) -> Option<String> {
    job.templates.iter().rev().find_map(|t| {
        if t.output.is_empty() {
            return None;
        }
        let root = t.output.trim_start_matches("file://").trim_end_matches('/');
        Some(if t.kind == TaskKind::SensorFeatureBackfill as i32 {
            format!("{root}/date=*/")
        } else {
            format!("{root}/")
        })
    })
}

async fn wait_for_leader(node: &NodeHandle) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.status().is_leader {
        if Instant::now() > deadline {
            bail!("the embedded coordinator did not become leader within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// What the demo's data examples read.
struct DemoData {
    /// Params that point the examples at the data (each example takes
    /// those it declares).
    params: Vec<(String, String)>,
    /// The device-pseudonymisation key file, the sensor example's
    /// `keyFile`.
    device_key: String,
    /// The first and last date of the sensor readings; the last is the
    /// nightly run's "yesterday".
    sensor_dates: (String, String),
}

/// Generates what the data examples read, unless it is there already:
/// annotation projects under `data/annotations`, pseudonymisation keys
/// under `data/secrets`, a text corpus under `data/texts` and sensor
/// readings for the last days under `data/sensors`.
async fn demo_data(data_dir: &std::path::Path) -> Result<DemoData> {
    use drover_worker::datagen::annotations::{self, AnnotationsSpec};
    use drover_worker::datagen::sensors::{self, SensorsSpec};
    use drover_worker::datagen::texts::{self, TextsSpec};
    use drover_worker::dataset::{location::Location, manifest};

    let data_dir = std::path::absolute(data_dir).context("resolving --data-dir")?;
    let annotations_dir = data_dir.join("annotations");
    let location = Location::parse(&annotations_dir.display().to_string())?;
    if manifest::read(&location).await?.is_none() {
        eprintln!(
            "generating 2 annotation projects of {DEMO_ITEMS} items in {}",
            annotations_dir.display()
        );
        let spec = AnnotationsSpec {
            projects: 2,
            items: DEMO_ITEMS,
            seed: 1,
        };
        annotations::generate(&location, &spec, |_| {}).await?;
    }
    let key = data_dir.join("secrets/annotator-key");
    if !key.exists() {
        write_key(&key)?;
    }
    let device_key = data_dir.join("secrets/device-key");
    if !device_key.exists() {
        write_key(&device_key)?;
    }
    let texts_dir = data_dir.join("texts");
    let location = Location::parse(&texts_dir.display().to_string())?;
    if manifest::read(&location).await?.is_none() {
        eprintln!(
            "generating {DEMO_DOCS} documents with duplicates in {}",
            texts_dir.display()
        );
        let spec = TextsSpec {
            docs: DEMO_DOCS,
            dup_rate: 0.1,
            near_dup_rate: 0.1,
            seed: 1,
        };
        texts::generate(&location, &spec, |_| {}).await?;
    }
    // The days the nightly run would take as "yesterday", in the spec's
    // own timezone, and the two before.
    let yesterday = nightly_yesterday()?;
    let first = yesterday - chrono::Duration::days(i64::from(DEMO_SENSOR_DAYS) - 1);
    let sensors_dir = data_dir.join("sensors");
    let location = Location::parse(&sensors_dir.display().to_string())?;
    let dates = (first.to_string(), yesterday.to_string());
    let generated = manifest::read(&location).await?.is_some_and(|m| {
        m.files
            .iter()
            .any(|f| f.path.starts_with(&format!("date={}/", dates.1)))
    });
    if !generated {
        eprintln!(
            "generating {DEMO_SENSOR_DAYS} days ({} to {}) of readings from {DEMO_DEVICES} devices in {}",
            dates.0,
            dates.1,
            sensors_dir.display()
        );
        let spec = SensorsSpec {
            devices: DEMO_DEVICES,
            start: first,
            days: DEMO_SENSOR_DAYS,
            seed: 1,
        };
        sensors::generate(&location, &spec, |_| {}).await?;
    }
    Ok(DemoData {
        params: vec![
            ("data".to_owned(), format!("file://{}", data_dir.display())),
            ("keyFile".to_owned(), key.display().to_string()),
        ],
        device_key: device_key.display().to_string(),
        sensor_dates: dates,
    })
}

/// The date the sensor example's nightly run takes as yesterday, were it
/// to run now.
fn nightly_yesterday() -> Result<chrono::NaiveDate> {
    let plan = drover_jobspecs::plan(
        SENSOR_SPEC.0,
        SENSOR_SPEC.1,
        &drover_jobspecs::LoadOptions {
            params: Vec::new(),
            logical_time: chrono::Utc::now(),
        },
    )
    .map_err(|d| anyhow!("the sensor example does not plan: {d:?}"))?;
    let key = plan
        .graph
        .templates
        .first()
        .and_then(|t| t.partitions.key(0))
        .ok_or_else(|| anyhow!("the sensor example has no date partition"))?;
    chrono::NaiveDate::parse_from_str(&key, "%Y-%m-%d")
        .with_context(|| format!("the sensor example's partition `{key}` is not a date"))
}

/// A random 32-byte key, hex-encoded, readable by its owner only.
fn write_key(path: &std::path::Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness for the key: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{hex}").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// What a submit created (or found).
struct Submission {
    /// The job's or schedule's id.
    id: String,
    /// False when an earlier submit with the same key made it.
    created: bool,
    /// Whether it is a schedule.
    schedule: bool,
}

/// Submits `yaml` as `file` with `params` through the job service, as any
/// client does: as one job when `once`, else as the spec says (a job, or a
/// schedule when it has one). The idempotency key names `label` and the
/// spec's fingerprint, so a second `drover dev --demo` on the same data
/// directory finds what the first submitted instead of registering the
/// nightly schedule again.
async fn submit(
    cluster: &Coordinators,
    label: &str,
    file: &str,
    yaml: &str,
    params: Vec<(String, String)>,
    once: bool,
) -> Result<Submission> {
    let opts = drover_jobspecs::LoadOptions {
        params: params.clone(),
        logical_time: chrono::Utc::now(),
    };
    let fingerprint = drover_jobspecs::plan(file, yaml, &opts)
        .map_err(|d| anyhow!("the demo's {file} does not plan: {d:?}"))?
        .spec_hash;
    let request = SubmitJobRequest {
        spec_yaml: yaml.to_owned(),
        source_name: file.to_owned(),
        params: params.into_iter().collect(),
        idempotency_key: format!(
            "drover-dev-demo:{label}:{}",
            &fingerprint[..fingerprint.len().min(16)]
        ),
        once,
    };
    let response = cluster
        .jobs(|mut c| {
            let r = request.clone();
            async move { c.submit_job(r).await.map(|r| r.into_inner()) }
        })
        .await
        .with_context(|| format!("submitting {file}"))?;
    let schedule = !once && response.plan.as_ref().is_some_and(|p| p.schedule.is_some());
    Ok(Submission {
        id: response.job_id,
        created: response.created,
        schedule,
    })
}

/// A job the demo follows, and what to call it.
struct Followed {
    label: String,
    id: String,
}

async fn submit_job(
    cluster: &Coordinators,
    label: String,
    file: &str,
    yaml: &str,
    params: Vec<(String, String)>,
    once: bool,
) -> Result<Followed> {
    let submitted = submit(cluster, &label, file, yaml, params, once).await?;
    if submitted.schedule {
        bail!(
            "submitting {file}: expected a job, got schedule {}",
            submitted.id
        );
    }
    if submitted.created {
        eprintln!("submitted {label} as {}", submitted.id);
    } else {
        eprintln!(
            "{label} was submitted by an earlier demo as {}",
            submitted.id
        );
    }
    Ok(Followed {
        label,
        id: submitted.id,
    })
}

/// Runs the examples through the job service of the node at `cluster`
/// and follows them to the end.
async fn demo(cluster: &Coordinators, data_dir: &std::path::Path) -> Result<ExitCode> {
    let data = demo_data(data_dir).await?;
    let mut jobs: Vec<Followed> = Vec::new();
    // The nightly's run for yesterday, started once the backfill is done.
    let mut nightly: Option<(Vec<(String, String)>, String)> = None;
    for (file, yaml) in DEMO_SPECS {
        // Only the examples that declare a param take it.
        let mut params: Vec<(String, String)> = data
            .params
            .iter()
            .filter(|(k, _)| yaml.contains(&format!("${{params.{k}}}")))
            .cloned()
            .collect();
        if *file != SENSOR_SPEC.0 {
            jobs.push(submit_job(cluster, (*file).to_owned(), file, yaml, params, false).await?);
            continue;
        }
        params.retain(|(k, _)| k != "keyFile");
        params.push(("keyFile".to_owned(), data.device_key.clone()));
        let nightly_schedule = submit(cluster, file, file, yaml, params.clone(), false).await?;
        let s = &nightly_schedule.id;
        match (nightly_schedule.schedule, nightly_schedule.created) {
            (true, true) => eprintln!(
                "registered {file} as schedule {s}: nightly at 03:00 America/Los_Angeles for yesterday"
            ),
            (true, false) => eprintln!("{file} was registered by an earlier demo as schedule {s}"),
            (false, _) => bail!("submitting {file}: expected a schedule, got job {s}"),
        }
        let (first, last) = &data.sensor_dates;
        let mut range = params.clone();
        range.push(("start".to_owned(), first.clone()));
        range.push(("end".to_owned(), last.clone()));
        let backfill = submit_job(
            cluster,
            format!("{file} backfill {first}..{last}"),
            file,
            yaml,
            range,
            true,
        )
        .await?;
        nightly = Some((params, backfill.id.clone()));
        jobs.push(backfill);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last_line = String::new();
    loop {
        let mut states: Vec<Job> = Vec::with_capacity(jobs.len());
        for job in &jobs {
            states.push(get_job(cluster, &job.id).await?);
        }
        let mut line = String::new();
        let mut all_done = true;
        let mut all_ok = true;
        let mut start_nightly = false;
        for (job, state) in jobs.iter().zip(&states) {
            let c = state.task_counts.unwrap_or_default();
            let succeeded = state.state == JobState::Succeeded as i32;
            all_done &= [JobState::Succeeded, JobState::Failed, JobState::Cancelled]
                .iter()
                .any(|s| *s as i32 == state.state);
            all_ok &= succeeded;
            start_nightly |= nightly
                .as_ref()
                .is_some_and(|(_, after)| *after == job.id && succeeded);
            let skipped = if c.skipped > 0 {
                format!(" ({} skipped)", c.skipped)
            } else {
                String::new()
            };
            line.push_str(&format!(
                "{} {}: {} {}/{} done{skipped}, {} running, {} failed  ",
                job.label,
                job.id,
                job_state(state.state),
                c.succeeded + c.skipped,
                c.total,
                c.leased,
                c.failed
            ));
        }
        if line != last_line {
            eprintln!("{}", line.trim_end());
            last_line = line;
        }
        if start_nightly && let Some((params, _)) = nightly.take() {
            jobs.push(
                submit_job(
                    cluster,
                    format!("{} nightly run for {}", SENSOR_SPEC.0, data.sensor_dates.1),
                    SENSOR_SPEC.0,
                    SENSOR_SPEC.1,
                    params,
                    true,
                )
                .await?,
            );
            continue;
        }
        if all_done && (nightly.is_none() || !all_ok) {
            if all_ok {
                eprintln!("demo finished: every job succeeded");
                for (job, state) in jobs.iter().zip(&states) {
                    match final_output(state) {
                        Some(place) => eprintln!("  {}: output in {place}", job.label),
                        None => eprintln!("  {}: its tasks write no files", job.label),
                    }
                }
                let first = jobs.first().map(|j| j.id.clone()).unwrap_or_default();
                eprintln!(
                    "state is kept in {}; run `drover dev` to serve it again, then `drover job status {first}`, \
                     or `drover job logs {first}/0/0` for a task's log",
                    data_dir.display(),
                );
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!(
                "demo finished: a job did not succeed; see `drover job events` and `drover job logs TASK`"
            );
            return Ok(ExitCode::from(1));
        }
        if Instant::now() > deadline {
            eprintln!("demo timed out after 300 s");
            return Ok(ExitCode::from(1));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
