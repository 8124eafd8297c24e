//! Task kinds: each validates its own `config` and says which stages it
//! expands into.
//!
//! A kind's typed config is what a worker receives (as JSON) for each task, so
//! the structs here derive both `Serialize` and `Deserialize`.

pub mod annotation_export;
pub mod builtin;
pub mod dedup;
pub mod sensor;
pub mod urls;

use serde::{Deserialize, Serialize};

use crate::decode;
use crate::diagnostic::Diagnostics;
use crate::partitions::PartitionSet;
use crate::yaml::Node;

pub use annotation_export::AnnotationExportConfig;
pub use builtin::{CommandConfig, SleepConfig};
pub use dedup::DedupConfig;
pub use sensor::SensorFeatureConfig;

/// Every kind name a spec may use.
pub const KIND_NAMES: &[&str] = &[
    "noop",
    "sleep",
    "command",
    "probe",
    "annotation_export",
    "dedup",
    "sensor_feature_backfill",
];

/// A task's kind together with its validated configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "config", rename_all = "snake_case")]
pub enum KindConfig {
    /// Does nothing and succeeds; for DAG joins and tests.
    Noop,
    /// Sleeps, optionally failing its first attempts; for demos and tests.
    Sleep(SleepConfig),
    /// Runs a program; only on workers started with `--allow-command`.
    Command(CommandConfig),
    /// Sleeps like `sleep` and records each attempt to a side log outside
    /// the cluster; only on workers started with `--probe-log`. The chaos
    /// suite's witness of what really ran.
    Probe(SleepConfig),
    /// Exports annotations with consensus labels and quality metrics.
    AnnotationExport(AnnotationExportConfig),
    /// Finds exact and near-duplicate documents.
    Dedup(DedupConfig),
    /// Computes H3-cell hourly features from device readings.
    SensorFeatureBackfill(SensorFeatureConfig),
}

impl KindConfig {
    /// The kind's name as written in specs.
    pub fn name(&self) -> &'static str {
        match self {
            KindConfig::Noop => "noop",
            KindConfig::Sleep(_) => "sleep",
            KindConfig::Command(_) => "command",
            KindConfig::Probe(_) => "probe",
            KindConfig::AnnotationExport(_) => "annotation_export",
            KindConfig::Dedup(_) => "dedup",
            KindConfig::SensorFeatureBackfill(_) => "sensor_feature_backfill",
        }
    }

    /// The config alone as JSON, as handed to a worker.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("config").cloned())
            .unwrap_or(serde_json::Value::Null)
    }

    /// The stages one task of this kind expands into, in order; each stage
    /// depends on all partitions of the one before, and of the earlier
    /// stages it names in `also_reads`. `partitions` is the task's own
    /// `partitions` (single when absent).
    pub fn stages(&self, partitions: &PartitionSet) -> Vec<Stage> {
        match self {
            KindConfig::AnnotationExport(c) => c.stages(),
            KindConfig::Dedup(c) => c.stages(),
            KindConfig::SensorFeatureBackfill(c) => c.stages(partitions),
            _ => vec![Stage {
                name: None,
                partitions: partitions.clone(),
                also_reads: &[],
            }],
        }
    }

    /// The dataset URLs the task reads and writes, with the config field
    /// each is in (`input`, `output`). They may hold `${partition.*}`
    /// references, resolved only when a task is leased.
    pub fn dataset_urls(&self) -> Vec<(&'static str, &str)> {
        match self {
            KindConfig::AnnotationExport(c) => vec![("input", &c.input), ("output", &c.output)],
            KindConfig::Dedup(c) => vec![("input", &c.input), ("output", &c.output)],
            KindConfig::SensorFeatureBackfill(c) => {
                vec![("input", &c.input), ("output", &c.output)]
            }
            KindConfig::Noop
            | KindConfig::Sleep(_)
            | KindConfig::Command(_)
            | KindConfig::Probe(_) => Vec::new(),
        }
    }

    /// Whether this kind computes its own fan-out from its config, which
    /// makes a task-level `partitions` a mistake.
    pub fn sets_own_partitions(&self) -> bool {
        matches!(self, KindConfig::AnnotationExport(_) | KindConfig::Dedup(_))
    }
}

/// One stage of an expanded task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Stage name (`signatures`, `merge`...); `None` for single-stage kinds.
    pub name: Option<&'static str>,
    /// The stage's fan-out.
    pub partitions: PartitionSet,
    /// Earlier stages of the same task, besides the one just before, whose
    /// outputs this stage reads: it depends on them too, so its lease
    /// lists their outputs.
    pub also_reads: &'static [&'static str],
}

/// Decodes `config` for `kind`. `config` is `None` when the task has none;
/// `partitions` is `None` when the task's partitions were invalid (already
/// reported), so checks that depend on them are skipped.
pub fn decode(
    d: &mut Diagnostics,
    kind: &str,
    config: Option<&Node>,
    parent: &Node,
    path: &str,
    partitions: Option<&PartitionSet>,
) -> Option<KindConfig> {
    let config_path = decode::join(path, "config");
    if kind == "noop" {
        return builtin::decode_noop(d, config, &config_path).map(|()| KindConfig::Noop);
    }
    if !KIND_NAMES.contains(&kind) {
        return None;
    }
    let Some(config) = config else {
        d.error_hint(
            parent.span,
            path,
            format!("kind `{kind}` needs a `config`"),
            "see jobspecs/README.md for its fields, or run `drover job schema`",
        );
        return None;
    };
    match kind {
        "sleep" => builtin::decode_sleep(d, config, &config_path).map(KindConfig::Sleep),
        "command" => builtin::decode_command(d, config, &config_path).map(KindConfig::Command),
        "probe" => builtin::decode_sleep(d, config, &config_path).map(KindConfig::Probe),
        "annotation_export" => {
            annotation_export::decode(d, config, &config_path).map(KindConfig::AnnotationExport)
        }
        "dedup" => dedup::decode(d, config, &config_path).map(KindConfig::Dedup),
        "sensor_feature_backfill" => {
            sensor::decode(d, config, &config_path, partitions, parent, path)
                .map(KindConfig::SensorFeatureBackfill)
        }
        _ => None,
    }
}

/// Decodes the optional `pseudonymize` block shared by the data kinds: the
/// HMAC key comes from an environment variable or a file on the worker, never
/// from the spec, because specs are replicated, logged and shown.
pub fn decode_key_source(d: &mut Diagnostics, node: &Node, path: &str) -> Option<KeySource> {
    if let Some(entries) = node.as_map()
        && let Some(entry) = entries.iter().find(|e| e.key == "key" || e.key == "secret")
    {
        d.error_hint(
            entry.key_span,
            &decode::join(path, &entry.key),
            "secret keys must not be written in a spec",
            "specs are stored and shown to anyone who can read the job; use `keyEnv: NAME` or `keyFile: PATH`, read on the worker",
        );
        return None;
    }
    let f = decode::fields(d, node, path, KEY_SOURCE_FIELDS)?;
    match (f.get("keyEnv"), f.get("keyFile")) {
        (Some(_), Some(_)) => {
            d.error_hint(
                node.span,
                path,
                "both `keyEnv` and `keyFile` are set",
                "keep one",
            );
            None
        }
        (Some(n), None) => decode::bounded_string(d, n, &f.path("keyEnv"), 128).map(KeySource::Env),
        (None, Some(n)) => {
            decode::bounded_string(d, n, &f.path("keyFile"), 4096).map(KeySource::File)
        }
        (None, None) => {
            d.error_hint(
                node.span,
                path,
                "`pseudonymize` names no key",
                "set `keyEnv: DROVER_HMAC_KEY` or `keyFile: /etc/drover/hmac.key`",
            );
            None
        }
    }
}

/// Keys of a `pseudonymize` block.
pub const KEY_SOURCE_FIELDS: &[&str] = &["keyEnv", "keyFile"];

/// Environment variable holding the pseudonymisation key by default.
pub const DEFAULT_KEY_ENV: &str = "DROVER_HMAC_KEY";

/// Where a worker reads the pseudonymisation HMAC key from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeySource {
    /// An environment variable of the worker process.
    #[serde(rename = "keyEnv")]
    Env(String),
    /// A file on the worker's filesystem.
    #[serde(rename = "keyFile")]
    File(String),
}

impl Default for KeySource {
    fn default() -> Self {
        KeySource::Env(DEFAULT_KEY_ENV.to_owned())
    }
}
