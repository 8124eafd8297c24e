//! The built-in kinds: `noop`, `sleep` and `command`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decode;
use crate::diagnostic::Diagnostics;
use crate::limits;
use crate::yaml::{Node, NodeKind};

/// Keys of a `sleep` config.
pub const SLEEP_FIELDS: &[&str] = &["ms", "failTimes"];

/// Keys of a `command` config.
pub const COMMAND_FIELDS: &[&str] = &["argv", "env", "workingDir"];

/// Config of `sleep`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SleepConfig {
    /// How long each attempt sleeps.
    pub ms: u64,
    /// The first `fail_times` attempts fail (retryably) after sleeping, so
    /// retry policies can be exercised end to end.
    #[serde(default)]
    pub fail_times: u32,
}

/// Config of `command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandConfig {
    /// Program and arguments; run directly, never through a shell.
    pub argv: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory; the task's scratch directory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// `noop` takes no config; an empty mapping is tolerated.
pub fn decode_noop(d: &mut Diagnostics, config: Option<&Node>, path: &str) -> Option<()> {
    match config.map(|c| &c.kind) {
        None | Some(NodeKind::Null) => Some(()),
        Some(NodeKind::Map(entries)) if entries.is_empty() => Some(()),
        Some(_) => {
            let span = config.map(|c| c.span).unwrap_or_default();
            d.error_hint(span, path, "kind `noop` takes no config", "remove `config`");
            None
        }
    }
}

/// Decodes a `sleep` config.
pub fn decode_sleep(d: &mut Diagnostics, node: &Node, path: &str) -> Option<SleepConfig> {
    let f = decode::fields(d, node, path, SLEEP_FIELDS)?;
    let ms = f
        .required(d, "ms", "e.g. `config: {ms: 500}`")
        .and_then(|n| decode::u64_in(d, n, &f.path("ms"), 0, limits::SLEEP_MS_MAX));
    let fail_times = match f.get("failTimes") {
        None => Some(0),
        Some(n) => decode::u32_in(d, n, &f.path("failTimes"), 0, limits::RETRIES_MAX),
    };
    Some(SleepConfig {
        ms: ms?,
        fail_times: fail_times?,
    })
}

/// Decodes a `command` config.
pub fn decode_command(d: &mut Diagnostics, node: &Node, path: &str) -> Option<CommandConfig> {
    let f = decode::fields(d, node, path, COMMAND_FIELDS)?;
    let argv = f
        .required(d, "argv", "e.g. `argv: [python3, -c, \"print(1)\"]`")
        .and_then(|n| {
            let items = decode::string_list(d, n, &f.path("argv"), limits::COMMAND_ARGS_MAX)?;
            if items.is_empty() {
                d.error(
                    n.span,
                    &f.path("argv"),
                    "`argv` is empty: name a program to run",
                );
                return None;
            }
            if items.len() == 1 && items[0].0.contains(' ') {
                d.warning(
                    n.span,
                    &f.path("argv"),
                    "the program name contains spaces",
                    Some(
                        "argv is not run through a shell: split arguments into list items"
                            .to_owned(),
                    ),
                );
            }
            Some(items.into_iter().map(|(s, _)| s).collect::<Vec<_>>())
        });
    let env = match f.get("env") {
        None => Some(BTreeMap::new()),
        Some(n) => decode::string_map(d, n, &f.path("env"), 256, 256, 32 * 1024)
            .filter(|_| no_inline_secrets(d, n, &f.path("env"))),
    };
    let working_dir = match f.get("workingDir") {
        None => Some(None),
        Some(n) => decode::bounded_string(d, n, &f.path("workingDir"), 4096).map(Some),
    };
    Some(CommandConfig {
        argv: argv?,
        env: env?,
        working_dir: working_dir?,
    })
}

/// Refuses a literal value for a variable that holds a secret by name
/// (`AWS_SECRET_ACCESS_KEY: ...`): the program inherits the worker's
/// environment, which is where such a value belongs. True when there is
/// none.
fn no_inline_secrets(d: &mut Diagnostics, env: &Node, path: &str) -> bool {
    let mut clean = true;
    for entry in env.as_map().unwrap_or_default() {
        let has_value = matches!(&entry.value.kind, NodeKind::Scalar(s) if !s.text.is_empty());
        if has_value && crate::secrets::is_secret_env_name(&entry.key) {
            d.error_hint(
                entry.key_span,
                &decode::join(path, &entry.key),
                format!(
                    "`{}` holds a secret; secrets must not be written in a spec",
                    decode::truncate(&entry.key, 60)
                ),
                "the program inherits the worker's environment: set the variable there, and leave it out of `env`",
            );
            clean = false;
        }
    }
    clean
}
