//! `drover certs`: a CA and the certificates a mutual-TLS cluster needs,
//! written as PEM files (keys readable by their owner only).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use drover_client::files::write;
use drover_net::PeerIdentity;
use drover_net::certs::CertificateAuthority;
use drover_net::identity::valid_name;

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a CA and certificates for nodes, workers and clients in DIR.
    Init(InitArgs),
    /// Issue one more certificate from the CA in DIR (a new node, a
    /// rotation).
    Issue(IssueArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to write into; created if missing.
    #[arg(long)]
    out: PathBuf,
    /// Node ids to issue certificates for.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    nodes: Vec<u64>,
    /// Names and addresses clients dial coordinators by (every node
    /// certificate carries all of them).
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
    hosts: Vec<String>,
    /// Worker certificate names.
    #[arg(long, value_delimiter = ',', default_value = "worker")]
    workers: Vec<String>,
    /// Client certificate names (people and tools using the CLI).
    #[arg(long, value_delimiter = ',', default_value = "operator")]
    clients: Vec<String>,
    /// Validity of the leaf certificates, in days (the CA gets ten times
    /// as long).
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Overwrite files that exist.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Directory with `ca.pem` and `ca.key`; the new files go there too.
    #[arg(long)]
    dir: PathBuf,
    /// A node certificate for this id.
    #[arg(long, group = "identity")]
    node: Option<u64>,
    /// A worker certificate with this name.
    #[arg(long, group = "identity")]
    worker: Option<String>,
    /// A client certificate with this name.
    #[arg(long, group = "identity")]
    client: Option<String>,
    /// For a node: the names and addresses it is dialled by.
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
    hosts: Vec<String>,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Overwrite files that exist (a rotation: running processes pick the
    /// new files up within seconds).
    #[arg(long)]
    force: bool,
}

pub fn run(cmd: CertsCommand) -> Result<ExitCode> {
    match cmd {
        CertsCommand::Init(args) => init(&args),
        CertsCommand::Issue(args) => issue(&args),
    }
    .map(|()| ExitCode::SUCCESS)
}

/// The file stem of an identity's certificate: `node-1`, `worker-NAME`,
/// `client-NAME`.
pub fn stem(identity: &PeerIdentity) -> String {
    identity.to_string().replace('/', "-")
}

/// Writes the CA and the certificates for `identities` into `dir`.
pub fn init_dir(
    dir: &Path,
    identities: &[PeerIdentity],
    hosts: &[String],
    days: u32,
    force: bool,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = CertificateAuthority::generate(days.saturating_mul(10))?;
    write(&dir.join("ca.pem"), ca.cert_pem(), false, force)?;
    write(&dir.join("ca.key"), &ca.key_pem(), true, force)?;
    for identity in identities {
        write_leaf(dir, &ca, identity, hosts, days, force)?;
    }
    Ok(())
}

fn init(args: &InitArgs) -> Result<()> {
    let mut identities: Vec<PeerIdentity> = Vec::new();
    for id in &args.nodes {
        if *id == 0 {
            bail!("node ids start at 1");
        }
        identities.push(PeerIdentity::Node(*id));
    }
    for name in &args.workers {
        identities.push(PeerIdentity::Worker(checked(name)?));
    }
    for name in &args.clients {
        identities.push(PeerIdentity::Client(checked(name)?));
    }
    init_dir(&args.out, &identities, &args.hosts, args.days, args.force)?;
    let dir = args.out.display();
    outln!("wrote a CA and {} certificates to {dir}", identities.len());
    outln!(
        "  ca.key signs new certificates (`drover certs issue`): keep it off the cluster's machines"
    );
    if let Some(id) = args.nodes.first() {
        outln!("coordinator {id}:");
        outln!(
            "  drover coordinator --node-id {id} --tls-ca {dir}/ca.pem --tls-cert {dir}/node-{id}.pem --tls-key {dir}/node-{id}.key ..."
        );
    }
    if let Some(name) = args.workers.first() {
        outln!("worker:");
        outln!(
            "  drover worker --tls-ca {dir}/ca.pem --tls-cert {dir}/worker-{name}.pem --tls-key {dir}/worker-{name}.key ..."
        );
    }
    if let Some(name) = args.clients.first() {
        outln!("CLI:");
        outln!(
            "  export DROVER_CA={dir}/ca.pem DROVER_CERT={dir}/client-{name}.pem DROVER_KEY={dir}/client-{name}.key"
        );
    }
    Ok(())
}

fn issue(args: &IssueArgs) -> Result<()> {
    let identity = match (args.node, &args.worker, &args.client) {
        (Some(0), _, _) => bail!("node ids start at 1"),
        (Some(id), None, None) => PeerIdentity::Node(id),
        (None, Some(name), None) => PeerIdentity::Worker(checked(name)?),
        (None, None, Some(name)) => PeerIdentity::Client(checked(name)?),
        _ => bail!("name what to issue: --node ID, --worker NAME or --client NAME"),
    };
    let read = |name: &str| {
        let path = args.dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let ca = CertificateAuthority::load(&read("ca.pem")?, &read("ca.key")?)?;
    let paths = write_leaf(
        &args.dir,
        &ca,
        &identity,
        &args.hosts,
        args.days,
        args.force,
    )?;
    outln!("wrote {} and {}", paths.0.display(), paths.1.display());
    Ok(())
}

fn checked(name: &str) -> Result<String> {
    if !valid_name(name) {
        bail!(
            "`{name}` is not a certificate name: use lowercase letters, digits and `-` (at most 63)"
        );
    }
    Ok(name.to_owned())
}

fn write_leaf(
    dir: &Path,
    ca: &CertificateAuthority,
    identity: &PeerIdentity,
    hosts: &[String],
    days: u32,
    force: bool,
) -> Result<(PathBuf, PathBuf)> {
    let hosts: &[String] = match identity {
        PeerIdentity::Node(_) => hosts,
        _ => &[],
    };
    let issued = ca
        .issue(identity, hosts, days)
        .with_context(|| format!("issuing a certificate for {identity}"))?;
    let stem = stem(identity);
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    // The key first: a process reloading in between sees a new key with
    // the old certificate, refuses the pair and keeps its old one.
    write(&key, &issued.key_pem, true, force)?;
    write(&cert, &issued.cert_pem, false, force)?;
    Ok((cert, key))
}
