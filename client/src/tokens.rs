//! `drover token ...`: API tokens, and roles for client certificates, for
//! a cluster that requires credentials (`drover coordinator --auth`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Subcommand, ValueEnum};
use drover_proto::v1::{
    BindCertificateRequest, CertificateBinding, ListCertificateBindingsRequest,
};
use drover_proto::v1::{
    BootstrapTokenRequest, CreateTokenRequest, CreateTokenResponse, ListTokensRequest,
    RevokeTokenRequest, TokenInfo, TokenRole, WhoAmIRequest,
};

use drover_net::Coordinators;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create the cluster's first operator token. Needs no credentials, and
    /// works only while the cluster has no token at all.
    Bootstrap {
        /// A name for it.
        #[arg(long, default_value = "bootstrap")]
        name: String,
        /// Write the token to FILE (readable by its owner only) instead of
        /// printing it; use it with --auth-token-file or DROVER_TOKEN_FILE.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Create a token. The token is printed once, on standard output (or
    /// written to --out); the cluster keeps only its hash.
    Create {
        /// What it is for: lowercase letters, digits and '-'.
        #[arg(long)]
        name: String,
        /// What it may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A namespace a submitter may use; repeat or separate with commas.
        #[arg(long = "namespace", value_delimiter = ',')]
        namespaces: Vec<String>,
        /// How long it works, like `90d` or `12h`; it never expires when
        /// omitted.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        /// Write the token to FILE (readable by its owner only) instead of
        /// printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Stable JSON on standard output, the token included.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (ids, names, roles, namespaces; never secrets).
    List {
        /// Stable JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id; requests carrying it are refused within a
    /// second.
    Revoke {
        /// The token's id (the 12 hex digits after `drv_`).
        id: String,
    },
    /// Give a client certificate a role: a caller presenting it (over
    /// mutual TLS) with no token gets that role, as with a token.
    Bind {
        /// The certificate's identity, `client/NAME` (from `drover certs
        /// issue --client NAME`).
        identity: String,
        /// What it may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A namespace a submitter may use; repeat or separate with commas.
        #[arg(long = "namespace", value_delimiter = ',')]
        namespaces: Vec<String>,
    },
    /// Remove a client certificate's role; its holder needs a token again
    /// within a second.
    Unbind {
        /// `client/NAME`.
        identity: String,
    },
    /// List client certificates bound to roles.
    Bindings {
        /// Stable JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Who the cluster takes you for, and what you may do.
    Whoami {
        /// Stable JSON on standard output.
        #[arg(long)]
        json: bool,
    },
}

/// Roles as typed on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Submits and controls jobs in its namespaces.
    Submitter,
    /// Everything, tokens included.
    Operator,
    /// The worker service only.
    Worker,
}

pub async fn run(cmd: TokenCommand, coordinators: &Coordinators) -> Result<ExitCode> {
    match cmd {
        TokenCommand::Bootstrap { name, out } => {
            let created = coordinators
                .admin(|mut c| {
                    let name = name.clone();
                    async move {
                        c.bootstrap_token(BootstrapTokenRequest { name })
                            .await
                            .map(|r| r.into_inner())
                    }
                })
                .await?;
            hand_out(&created, out.as_deref(), false)?;
        }
        TokenCommand::Create {
            name,
            role,
            namespaces,
            ttl,
            out,
            json,
        } => {
            let ttl_ms = match ttl {
                None => 0,
                Some(d) if d.is_zero() => bail!("--ttl must be longer than zero"),
                Some(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            };
            let request = CreateTokenRequest {
                name,
                role: wire_role(role),
                namespaces,
                ttl_ms,
            };
            let created = coordinators
                .admin(|mut c| {
                    let request = request.clone();
                    async move { c.create_token(request).await.map(|r| r.into_inner()) }
                })
                .await?;
            hand_out(&created, out.as_deref(), json)?;
        }
        TokenCommand::List { json } => list(coordinators, json).await?,
        TokenCommand::Revoke { id } => {
            coordinators
                .admin(|mut c| {
                    let id = id.clone();
                    async move {
                        c.revoke_token(RevokeTokenRequest { id })
                            .await
                            .map(|r| r.into_inner())
                    }
                })
                .await?;
            outln!("revoked token {id}");
        }
        TokenCommand::Bind {
            identity,
            role,
            namespaces,
        } => {
            let request = BindCertificateRequest {
                identity,
                role: wire_role(role),
                namespaces,
                unbind: false,
            };
            let bound = bind(coordinators, request).await?.unwrap_or_default();
            outln!(
                "bound certificate {} to the {} role{}",
                bound.identity,
                role_name(bound.role),
                match bound.namespaces.join(",").as_str() {
                    "" => String::new(),
                    ns => format!(" for namespaces {ns}"),
                }
            );
        }
        TokenCommand::Unbind { identity } => {
            let request = BindCertificateRequest {
                identity: identity.clone(),
                unbind: true,
                ..Default::default()
            };
            bind(coordinators, request).await?;
            outln!("certificate {identity} has no role now");
        }
        TokenCommand::Bindings { json } => bindings(coordinators, json).await?,
        TokenCommand::Whoami { json } => whoami(coordinators, json).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `drover token list`.
async fn list(coordinators: &Coordinators, json: bool) -> Result<()> {
    let tokens = coordinators
        .admin(|mut c| async move {
            c.list_tokens(ListTokensRequest {})
                .await
                .map(|r| r.into_inner().tokens)
        })
        .await?;
    if json {
        let list: Vec<_> = tokens.iter().map(token_json).collect();
        outln!("{}", serde_json::to_string_pretty(&list)?);
    } else if tokens.is_empty() {
        outln!("no tokens");
    } else {
        outln!(
            "{:<12}  {:<20}  {:<9}  {:<24}  {:<20}  CREATED BY",
            "ID",
            "NAME",
            "ROLE",
            "NAMESPACES",
            "EXPIRES"
        );
        for t in &tokens {
            outln!(
                "{:<12}  {:<20}  {:<9}  {:<24}  {:<20}  {}",
                t.id,
                t.name,
                role_name(t.role),
                namespaces_text(t),
                expiry_text(t.expires_unix_ms),
                t.created_by
            );
        }
    }
    Ok(())
}

/// `drover token bindings`.
async fn bindings(coordinators: &Coordinators, json: bool) -> Result<()> {
    let bindings = coordinators
        .admin(|mut c| async move {
            c.list_certificate_bindings(ListCertificateBindingsRequest {})
                .await
                .map(|r| r.into_inner().bindings)
        })
        .await?;
    if json {
        let list: Vec<_> = bindings
            .iter()
            .map(|b| {
                serde_json::json!({
                    "identity": b.identity,
                    "role": role_name(b.role),
                    "namespaces": b.namespaces,
                    "createdBy": b.created_by,
                    "createdAt": rfc3339(b.created_unix_ms),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&list)?);
    } else if bindings.is_empty() {
        outln!("no certificate bindings");
    } else {
        outln!(
            "{:<28}  {:<9}  {:<24}  CREATED BY",
            "CERTIFICATE",
            "ROLE",
            "NAMESPACES"
        );
        for b in &bindings {
            outln!(
                "{:<28}  {:<9}  {:<24}  {}",
                b.identity,
                role_name(b.role),
                if b.namespaces.is_empty() {
                    "-".to_owned()
                } else {
                    b.namespaces.join(",")
                },
                b.created_by
            );
        }
    }
    Ok(())
}

/// `drover token whoami`.
async fn whoami(coordinators: &Coordinators, json: bool) -> Result<()> {
    let me = coordinators
        .admin(|mut c| async move { c.who_am_i(WhoAmIRequest {}).await.map(|r| r.into_inner()) })
        .await?;
    let namespaces = if me.all_namespaces {
        "all".to_owned()
    } else if me.namespaces.is_empty() {
        "none".to_owned()
    } else {
        me.namespaces.join(",")
    };
    if json {
        let out = serde_json::json!({
            "identity": me.identity,
            "role": me.role,
            "namespaces": me.namespaces,
            "allNamespaces": me.all_namespaces,
            "authRequired": me.auth_required,
            "certificate": me.certificate,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!("identity     {}", me.identity);
        outln!("role         {}", me.role);
        outln!("namespaces   {namespaces}");
        if !me.certificate.is_empty() {
            outln!("certificate  {}", me.certificate);
        }
        if !me.auth_required {
            outln!("(this cluster does not require credentials)");
        }
    }
    Ok(())
}

async fn bind(
    coordinators: &Coordinators,
    request: BindCertificateRequest,
) -> Result<Option<CertificateBinding>> {
    coordinators
        .admin(|mut c| {
            let request = request.clone();
            async move {
                c.bind_certificate(request)
                    .await
                    .map(|r| r.into_inner().binding)
            }
        })
        .await
        .map_err(Into::into)
}

fn wire_role(role: RoleArg) -> i32 {
    let wire = match role {
        RoleArg::Submitter => TokenRole::Submitter,
        RoleArg::Operator => TokenRole::Operator,
        RoleArg::Worker => TokenRole::Worker,
    };
    wire as i32
}

/// Shows a new token once: to a file, as JSON, or alone on standard output
/// (so `$(drover token create ...)` captures just the token), with what it
/// is on standard error.
fn hand_out(created: &CreateTokenResponse, out: Option<&Path>, json: bool) -> Result<()> {
    let info = created.token.clone().unwrap_or_default();
    if let Some(path) = out {
        crate::files::write(path, &format!("{}\n", created.secret), true, false)?;
    }
    if json {
        let mut value = token_json(&info);
        if out.is_none() {
            value["token"] = serde_json::Value::String(created.secret.clone());
        }
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    eprintln!(
        "created {} token {} ({}){}; it is shown only once",
        role_name(info.role),
        info.id,
        info.name,
        match namespaces_text(&info).as_str() {
            "-" => String::new(),
            ns => format!(" for namespaces {ns}"),
        }
    );
    match out {
        Some(path) => eprintln!(
            "wrote it to {}; use it with: export DROVER_TOKEN_FILE={}",
            path.display(),
            path.display()
        ),
        None => outln!("{}", created.secret),
    }
    Ok(())
}

fn token_json(t: &TokenInfo) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "name": t.name,
        "role": role_name(t.role),
        "namespaces": t.namespaces,
        "createdBy": t.created_by,
        "createdAt": rfc3339(t.created_unix_ms),
        "expiresAt": (t.expires_unix_ms != 0).then(|| rfc3339(t.expires_unix_ms)),
    })
}

fn role_name(role: i32) -> &'static str {
    match TokenRole::try_from(role) {
        Ok(TokenRole::Submitter) => "submitter",
        Ok(TokenRole::Operator) => "operator",
        Ok(TokenRole::Worker) => "worker",
        _ => "unknown",
    }
}

fn namespaces_text(t: &TokenInfo) -> String {
    if t.namespaces.is_empty() {
        "-".to_owned()
    } else {
        t.namespaces.join(",")
    }
}

fn expiry_text(unix_ms: i64) -> String {
    if unix_ms == 0 {
        "never".to_owned()
    } else {
        rfc3339(unix_ms)
    }
}

/// Unix milliseconds as an RFC 3339 UTC time to the second.
pub(crate) fn rfc3339(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}
