//! The global flags that say how this process proves who it is: TLS files
//! (`--tls-ca/--tls-cert/--tls-key`, or `DROVER_CA/DROVER_CERT/DROVER_KEY`)
//! and a bearer token (`--auth-token`, `DROVER_TOKEN`, or a file). A coordinator serves
//! with the same TLS files it dials its peers with.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use drover_net::{Bearer, Dialer, TlsFiles};

/// TLS files and a token.
#[derive(Debug, Clone, Default, Args)]
pub struct SecurityArgs {
    /// The cluster's CA certificate (PEM): peers must be signed by it.
    /// With --tls-cert and --tls-key, turns on mutual TLS; see `drover
    /// certs init`.
    #[arg(long = "tls-ca", global = true, env = "DROVER_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// This process's certificate (PEM), signed by the CA: a node's for a
    /// coordinator, a worker's for a worker, a client's for the CLI.
    #[arg(
        long = "tls-cert",
        global = true,
        env = "DROVER_CERT",
        value_name = "FILE"
    )]
    pub cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM). Reloaded, with the certificate and CA,
    /// when the files change.
    #[arg(
        long = "tls-key",
        global = true,
        env = "DROVER_KEY",
        value_name = "FILE"
    )]
    pub key: Option<PathBuf>,
    /// A bearer token sent with every request. (Not `--token`: that is a
    /// fencing token in `job logs`.)
    #[arg(
        long,
        global = true,
        env = "DROVER_TOKEN",
        hide_env_values = true,
        conflicts_with = "auth_token_file"
    )]
    pub auth_token: Option<String>,
    /// A file holding the bearer token; keeps it out of the process list.
    #[arg(long, global = true, env = "DROVER_TOKEN_FILE", value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
}

impl SecurityArgs {
    /// The TLS files: all three or none.
    pub fn tls_files(&self) -> Result<Option<TlsFiles>> {
        match (&self.ca, &self.cert, &self.key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            })),
            _ => {
                let missing: Vec<&str> = [
                    (self.ca.is_none(), "--tls-ca (DROVER_CA)"),
                    (self.cert.is_none(), "--tls-cert (DROVER_CERT)"),
                    (self.key.is_none(), "--tls-key (DROVER_KEY)"),
                ]
                .into_iter()
                .filter_map(|(missing, flag)| missing.then_some(flag))
                .collect();
                bail!(
                    "mutual TLS needs a CA, a certificate and a key; missing {}",
                    missing.join(" and ")
                )
            }
        }
    }

    /// The token to send, if any.
    pub fn bearer(&self) -> Result<Bearer> {
        let token = match (&self.auth_token, &self.auth_token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?,
            (None, None) => return Ok(Bearer::none()),
        };
        Ok(Bearer::token(&token)?)
    }

    /// How to dial coordinators.
    pub fn dialer(&self) -> Result<Dialer> {
        let dialer = match self.tls_files()? {
            Some(files) => Dialer::tls(files)?,
            None => Dialer::plaintext(),
        };
        Ok(dialer.with_bearer(self.bearer()?))
    }
}
