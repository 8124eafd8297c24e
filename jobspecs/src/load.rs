//! From YAML text to a validated [`JobSpec`].
//!
//! The order matters for the quality of errors: the tree is parsed first
//! (syntax errors stop here, as nothing after can be trusted), then params are
//! resolved and substituted, then every field is decoded and every problem is
//! recorded, and the task graph is checked last, once names are known.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use crate::decode::{self, Fields};
use crate::diagnostic::{Diagnostics, Pos, Span};
use crate::interpolate::{self, RunContext, Scope};
use crate::kinds::{self, KIND_NAMES};
use crate::limits;
use crate::model::{
    Backoff, DEFAULT_MAX_PARALLEL, DEFAULT_PRIORITY, DEFAULT_TIMEOUT_MS, JobSpec, Resources,
    RetryPolicy, TaskSpec,
};
use crate::partitions::{self, PartitionSet};
use crate::schedule;
use crate::secrets;
use crate::yaml::{self, Node, NodeKind};

/// The only `apiVersion` this build understands.
pub const API_VERSION: &str = "drover/v1";

/// Top-level keys.
pub const TOP_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
/// Keys of `metadata`.
pub const METADATA_FIELDS: &[&str] = &["name", "namespace", "labels", "description"];
/// Keys of `spec`.
pub const SPEC_FIELDS: &[&str] = &[
    "priority",
    "maxParallel",
    "recompute",
    "params",
    "schedule",
    "defaults",
    "tasks",
];
/// Keys of `spec.defaults`.
pub const DEFAULTS_FIELDS: &[&str] = &["retries", "timeout", "resources", "constraints"];
/// Keys of a `retries` mapping.
pub const RETRY_FIELDS: &[&str] = &["max", "backoff", "initialDelay", "maxDelay"];
/// Keys of a task.
pub const TASK_FIELDS: &[&str] = &[
    "name",
    "kind",
    "description",
    "dependsOn",
    "partitions",
    "config",
    "retries",
    "timeout",
    "maxParallel",
    "resources",
    "constraints",
];
/// Keys of `resources`.
pub const RESOURCES_FIELDS: &[&str] = &["cpu", "memoryMb"];
/// Keys of `constraints`.
pub const CONSTRAINTS_FIELDS: &[&str] = &["labels"];

/// Inputs to loading besides the text.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `--param k=v` overrides, in the order given.
    pub params: Vec<(String, String)>,
    /// Logical time of the run, for `${run.*}`: the fire time of a scheduled
    /// run or the submit time. Passed in, never read from a clock, so that
    /// loading is deterministic (the coordinator stamps it).
    pub logical_time: DateTime<Utc>,
}

/// A validated spec and what identifies it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The typed spec.
    pub spec: JobSpec,
    /// SHA-256 of the canonical spec tree plus overrides, before `${run.*}`
    /// substitution: equal for the same spec whatever its formatting,
    /// comments or submit time. Idempotent submits compare it.
    pub spec_hash: String,
}

/// Loads `source` (named `file` in diagnostics). Errors go to `d`; `None`
/// means the spec is invalid.
pub fn load(d: &mut Diagnostics, source: &str, opts: &LoadOptions) -> Option<Loaded> {
    if source.len() > limits::SPEC_BYTES_MAX {
        d.error_hint(
            Span::point(Pos { line: 1, column: 1 }),
            "",
            format!(
                "the spec is {} bytes; the limit is {} bytes",
                source.len(),
                limits::SPEC_BYTES_MAX
            ),
            "a spec describes partitions as ranges; move long lists into the dataset",
        );
        return None;
    }
    let mut tree = yaml::parse(source, d)?;
    if d.has_errors() {
        return None;
    }
    let spec_hash = hash(&tree, &opts.params);

    let top = decode::fields(d, &tree, "", TOP_FIELDS)?;
    check_header(d, &top);

    // Params first: everything else may refer to them.
    let tz = peek_timezone(&tree);
    let run = RunContext {
        logical_time: opts.logical_time,
        timezone: tz,
    };
    let params = resolve_params(d, &mut tree, &opts.params, &run);
    substitute_all(d, &mut tree, &params, &run);
    secrets::check_tree(d, &tree, "");
    secrets::check_params(d, &opts.params, &tree);

    // Keys were checked above; substitution only changed values.
    let top = Fields::checked_before(&tree, "")?;
    let metadata = top.required(
        d,
        "metadata",
        "e.g. `metadata: {name: my-job, namespace: default}`",
    );
    let spec = top.required(d, "spec", "e.g. `spec: {tasks: [{name: a, kind: noop}]}`");
    let meta = metadata.and_then(|m| decode_metadata(d, m));
    let spec = spec.and_then(|s| decode_spec(d, s, params));
    let (meta, spec) = (meta?, spec?);
    if d.has_errors() {
        return None;
    }
    Some(Loaded {
        spec: JobSpec {
            name: meta.name,
            namespace: meta.namespace,
            labels: meta.labels,
            description: meta.description,
            ..spec
        },
        spec_hash,
    })
}

fn check_header(d: &mut Diagnostics, top: &Fields<'_>) {
    match top.get("apiVersion") {
        None => {
            d.error_hint(
                top.node.span,
                "",
                "missing `apiVersion`",
                format!("start the spec with `apiVersion: {API_VERSION}`"),
            );
        }
        Some(n) => {
            if let Some(v) = decode::string(d, n, "apiVersion")
                && v != API_VERSION
            {
                d.error_hint(
                    n.span,
                    "apiVersion",
                    format!("unsupported apiVersion `{}`", decode::truncate(&v, 40)),
                    format!("this drover understands `{API_VERSION}`"),
                );
            }
        }
    }
    match top.get("kind") {
        None => d.error_hint(top.node.span, "", "missing `kind`", "add `kind: Job`"),
        Some(n) => {
            if let Some(v) = decode::string(d, n, "kind")
                && v != "Job"
            {
                d.error_hint(
                    n.span,
                    "kind",
                    format!("unsupported kind `{}`", decode::truncate(&v, 40)),
                    "the top-level kind is `Job`; task kinds go in `spec.tasks[].kind`",
                );
            }
        }
    }
}

/// The schedule's timezone as written, for rendering `${run.*}` in params
/// before the schedule itself is decoded. A bad name is reported later, when
/// the schedule is decoded.
fn peek_timezone(tree: &Node) -> Tz {
    tree.get("spec")
        .and_then(|s| s.get("schedule"))
        .and_then(|s| s.get("timezone"))
        .and_then(|t| match &t.kind {
            NodeKind::Scalar(s) => s.text.parse::<Tz>().ok(),
            _ => None,
        })
        .unwrap_or(Tz::UTC)
}

/// Reads `spec.params`, substitutes `${run.*}` in them and applies the CLI
/// overrides. An override of an undeclared param is an error: a typo in
/// `--param` would otherwise silently do nothing.
fn resolve_params(
    d: &mut Diagnostics,
    tree: &mut Node,
    overrides: &[(String, String)],
    run: &RunContext,
) -> BTreeMap<String, String> {
    let empty = BTreeMap::new();
    let params_node = tree_get_mut(tree, &["spec", "params"]);
    let mut params = BTreeMap::new();
    if let Some(node) = params_node {
        if let NodeKind::Map(entries) = &mut node.kind {
            for entry in entries.iter_mut() {
                let path = format!("spec.params.{}", entry.key);
                interpolate::substitute_node(
                    d,
                    &mut entry.value,
                    &path,
                    Scope::Params,
                    &empty,
                    run,
                );
            }
        }
        if !matches!(node.kind, NodeKind::Null)
            && let Some(map) = decode::string_map(
                d,
                node,
                "spec.params",
                limits::PARAMS_MAX,
                limits::NAME_LEN_MAX,
                limits::PARAM_VALUE_BYTES_MAX,
            )
        {
            params = map;
        }
    }
    for (key, value) in overrides {
        if !params.contains_key(key) {
            let names: Vec<&str> = params.keys().map(String::as_str).collect();
            let hint = match decode::suggest(key, &names) {
                Some(s) => format!("did you mean `--param {s}=...`?"),
                None if names.is_empty() => {
                    "the spec declares no params under `spec.params`".to_owned()
                }
                None => format!("the spec declares: {}", names.join(", ")),
            };
            d.cli_error(
                format!("`--param {key}`: the spec has no param `{key}`"),
                hint,
            );
            continue;
        }
        if value.len() > limits::PARAM_VALUE_BYTES_MAX {
            d.cli_error(
                format!(
                    "`--param {key}`: the value is longer than {} bytes",
                    limits::PARAM_VALUE_BYTES_MAX
                ),
                "pass large inputs as dataset URLs",
            );
            continue;
        }
        params.insert(key.clone(), value.clone());
    }
    params
}

fn tree_get_mut<'n>(node: &'n mut Node, path: &[&str]) -> Option<&'n mut Node> {
    let Some((first, rest)) = path.split_first() else {
        return Some(node);
    };
    match &mut node.kind {
        NodeKind::Map(entries) => {
            let entry = entries.iter_mut().find(|e| e.key == *first)?;
            tree_get_mut(&mut entry.value, rest)
        }
        _ => None,
    }
}

/// Substitutes references everywhere except `spec.params`; task configs get
/// the `Config` scope so they may keep `${partition.*}`.
fn substitute_all(
    d: &mut Diagnostics,
    tree: &mut Node,
    params: &BTreeMap<String, String>,
    run: &RunContext,
) {
    let NodeKind::Map(top) = &mut tree.kind else {
        return;
    };
    for entry in top.iter_mut() {
        if entry.key != "spec" {
            interpolate::substitute_tree(d, &mut entry.value, &entry.key, Scope::Spec, params, run);
            continue;
        }
        let NodeKind::Map(spec) = &mut entry.value.kind else {
            continue;
        };
        for field in spec.iter_mut() {
            let path = format!("spec.{}", field.key);
            match field.key.as_str() {
                "params" => {}
                "tasks" => {
                    let NodeKind::Seq(tasks) = &mut field.value.kind else {
                        interpolate::substitute_tree(
                            d,
                            &mut field.value,
                            &path,
                            Scope::Spec,
                            params,
                            run,
                        );
                        continue;
                    };
                    for (i, task) in tasks.iter_mut().enumerate() {
                        let task_path = format!("spec.tasks[{i}]");
                        let NodeKind::Map(task_fields) = &mut task.kind else {
                            continue;
                        };
                        for tf in task_fields.iter_mut() {
                            let scope = if tf.key == "config" {
                                Scope::Config
                            } else {
                                Scope::Spec
                            };
                            let p = format!("{task_path}.{}", tf.key);
                            interpolate::substitute_tree(d, &mut tf.value, &p, scope, params, run);
                        }
                    }
                }
                _ => interpolate::substitute_tree(
                    d,
                    &mut field.value,
                    &path,
                    Scope::Spec,
                    params,
                    run,
                ),
            }
        }
    }
}

struct Metadata {
    name: String,
    namespace: String,
    labels: BTreeMap<String, String>,
    description: Option<String>,
}

fn decode_metadata(d: &mut Diagnostics, node: &Node) -> Option<Metadata> {
    let f = decode::fields(d, node, "metadata", METADATA_FIELDS)?;
    let name = f
        .required(d, "name", "e.g. `name: nightly-export`")
        .and_then(|n| decode::name(d, n, &f.path("name"), "job", false));
    let namespace = match f.get("namespace") {
        None => Some("default".to_owned()),
        Some(n) => decode::name(d, n, &f.path("namespace"), "namespace", false),
    };
    let labels = labels(d, f.get("labels"), &f.path("labels"));
    let description = f
        .get("description")
        .map(|n| decode::bounded_string(d, n, &f.path("description"), 4096));
    Some(Metadata {
        name: name?,
        namespace: namespace?,
        labels: labels?,
        description: match description {
            None => None,
            Some(v) => Some(v?),
        },
    })
}

fn labels(
    d: &mut Diagnostics,
    node: Option<&Node>,
    path: &str,
) -> Option<BTreeMap<String, String>> {
    match node {
        None => Some(BTreeMap::new()),
        Some(n) => decode::string_map(
            d,
            n,
            path,
            limits::LABELS_MAX,
            limits::LABEL_KEY_LEN_MAX,
            limits::LABEL_VALUE_LEN_MAX,
        ),
    }
}

/// A retry policy with only the fields a block set, so task settings can be
/// layered over `spec.defaults` field by field.
#[derive(Debug, Clone, Copy, Default)]
struct PartialRetry {
    max: Option<u32>,
    backoff: Option<Backoff>,
    initial_delay_ms: Option<u64>,
    max_delay_ms: Option<u64>,
}

impl PartialRetry {
    fn over(self, base: RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            max: self.max.unwrap_or(base.max),
            backoff: self.backoff.unwrap_or(base.backoff),
            initial_delay_ms: self.initial_delay_ms.unwrap_or(base.initial_delay_ms),
            max_delay_ms: self.max_delay_ms.unwrap_or(base.max_delay_ms),
        }
    }
}

/// `retries: 3` is shorthand for `retries: {max: 3}`.
fn decode_retries(d: &mut Diagnostics, node: &Node, path: &str) -> Option<PartialRetry> {
    if matches!(node.kind, NodeKind::Scalar(_)) {
        return decode::u32_in(d, node, path, 0, limits::RETRIES_MAX).map(|max| PartialRetry {
            max: Some(max),
            ..PartialRetry::default()
        });
    }
    let f = decode::fields(d, node, path, RETRY_FIELDS)?;
    let mut out = PartialRetry::default();
    let mut ok = true;
    if let Some(n) = f.get("max") {
        out.max = decode::u32_in(d, n, &f.path("max"), 0, limits::RETRIES_MAX);
        ok &= out.max.is_some();
    }
    if let Some(n) = f.get("backoff") {
        out.backoff =
            decode::one_of(d, n, &f.path("backoff"), &["exponential", "constant"]).map(|v| {
                if v == "constant" {
                    Backoff::Constant
                } else {
                    Backoff::Exponential
                }
            });
        ok &= out.backoff.is_some();
    }
    if let Some(n) = f.get("initialDelay") {
        out.initial_delay_ms =
            decode::duration_ms(d, n, &f.path("initialDelay"), 0, limits::BACKOFF_MAX_MS);
        ok &= out.initial_delay_ms.is_some();
    }
    if let Some(n) = f.get("maxDelay") {
        out.max_delay_ms =
            decode::duration_ms(d, n, &f.path("maxDelay"), 0, limits::BACKOFF_MAX_MS);
        ok &= out.max_delay_ms.is_some();
    }
    ok.then_some(out)
}

fn check_retry(d: &mut Diagnostics, policy: &RetryPolicy, node: &Node, path: &str) -> bool {
    if policy.initial_delay_ms > policy.max_delay_ms {
        d.error_hint(
            node.span,
            path,
            format!(
                "initialDelay {} is longer than maxDelay {}",
                decode::format_ms(policy.initial_delay_ms),
                decode::format_ms(policy.max_delay_ms)
            ),
            "maxDelay caps every delay, so it must be at least initialDelay",
        );
        return false;
    }
    true
}

fn timeout(d: &mut Diagnostics, node: &Node, path: &str) -> Option<u64> {
    decode::duration_ms(d, node, path, 1_000, limits::TIMEOUT_MAX_MS)
}

fn decode_resources(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
    base: Resources,
) -> Option<Resources> {
    let f = decode::fields(d, node, path, RESOURCES_FIELDS)?;
    let cpu = match f.get("cpu") {
        None => Some(base.cpu),
        Some(n) => decode::float(d, n, &f.path("cpu"), 0.01, 1024.0),
    };
    let memory_mb = match f.get("memoryMb") {
        None => Some(base.memory_mb),
        Some(n) => decode::u64_in(d, n, &f.path("memoryMb"), 1, 16 * 1024 * 1024),
    };
    Some(Resources {
        cpu: cpu?,
        memory_mb: memory_mb?,
    })
}

fn decode_constraints(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
) -> Option<BTreeMap<String, String>> {
    let f = decode::fields(d, node, path, CONSTRAINTS_FIELDS)?;
    labels(d, f.get("labels"), &f.path("labels"))
}

/// Defaults applied to every task.
struct Defaults {
    retries: RetryPolicy,
    timeout_ms: u64,
    resources: Resources,
    constraints: BTreeMap<String, String>,
}

fn decode_defaults(d: &mut Diagnostics, node: Option<&Node>) -> Option<Defaults> {
    let mut out = Defaults {
        retries: RetryPolicy::default(),
        timeout_ms: DEFAULT_TIMEOUT_MS,
        resources: Resources::default(),
        constraints: BTreeMap::new(),
    };
    let Some(node) = node else {
        return Some(out);
    };
    let f = decode::fields(d, node, "spec.defaults", DEFAULTS_FIELDS)?;
    let mut ok = true;
    if let Some(n) = f.get("retries") {
        match decode_retries(d, n, &f.path("retries")) {
            Some(p) => {
                out.retries = p.over(out.retries);
                ok &= check_retry(d, &out.retries, n, &f.path("retries"));
            }
            None => ok = false,
        }
    }
    if let Some(n) = f.get("timeout") {
        match timeout(d, n, &f.path("timeout")) {
            Some(ms) => out.timeout_ms = ms,
            None => ok = false,
        }
    }
    if let Some(n) = f.get("resources") {
        match decode_resources(d, n, &f.path("resources"), out.resources) {
            Some(r) => out.resources = r,
            None => ok = false,
        }
    }
    if let Some(n) = f.get("constraints") {
        match decode_constraints(d, n, &f.path("constraints")) {
            Some(c) => out.constraints = c,
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn decode_spec(
    d: &mut Diagnostics,
    node: &Node,
    params: BTreeMap<String, String>,
) -> Option<JobSpec> {
    let f = decode::fields(d, node, "spec", SPEC_FIELDS)?;
    let priority = match f.get("priority") {
        None => Some(DEFAULT_PRIORITY),
        Some(n) => decode::int(d, n, &f.path("priority"), 0, 100).map(|v| v as u8),
    };
    let max_parallel = match f.get("maxParallel") {
        None => Some(DEFAULT_MAX_PARALLEL),
        Some(n) => decode::u32_in(d, n, &f.path("maxParallel"), 1, limits::MAX_PARALLEL_MAX),
    };
    let recompute = match f.get("recompute") {
        None => Some(false),
        Some(n) => decode::boolean(d, n, &f.path("recompute")),
    };
    let schedule = match f.get("schedule") {
        None => Some(None),
        Some(n) => schedule::decode(d, n, &f.path("schedule")).map(Some),
    };
    let defaults = decode_defaults(d, f.get("defaults"));
    let tasks = f
        .required(d, "tasks", "e.g. `tasks: [{name: hello, kind: noop}]`")
        .and_then(|n| decode_tasks(d, n, defaults.as_ref()));
    Some(JobSpec {
        name: String::new(),
        namespace: String::new(),
        labels: BTreeMap::new(),
        description: None,
        priority: priority?,
        max_parallel: max_parallel?,
        recompute: recompute?,
        params,
        schedule: schedule?,
        tasks: tasks?,
    })
}

fn decode_tasks(
    d: &mut Diagnostics,
    node: &Node,
    defaults: Option<&Defaults>,
) -> Option<Vec<TaskSpec>> {
    let items = decode::list(d, node, "spec.tasks")?;
    if items.is_empty() {
        d.error_hint(
            node.span,
            "spec.tasks",
            "the job has no tasks",
            "add at least one task",
        );
        return None;
    }
    if items.len() > limits::TASKS_PER_JOB_MAX {
        d.error(
            node.span,
            "spec.tasks",
            format!(
                "the job has {} tasks; the limit is {}",
                items.len(),
                limits::TASKS_PER_JOB_MAX
            ),
        );
        return None;
    }
    // Names first, so dependsOn can be checked whatever the order.
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("spec.tasks[{i}]");
        let Some(name_node) = item.get("name") else {
            continue;
        };
        let Some(name) = decode::name(d, name_node, &format!("{path}.name"), "task", true) else {
            continue;
        };
        if let Some(first) = names.get(&name) {
            d.error_hint(
                name_node.span,
                &format!("{path}.name"),
                format!("duplicate task name `{name}`"),
                format!("spec.tasks[{first}] is already named `{name}`; task names must be unique"),
            );
        } else {
            names.insert(name, i);
        }
    }
    let mut tasks = Vec::with_capacity(items.len());
    let mut dep_spans: Vec<Vec<(usize, Span)>> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let (task, deps) = decode_task(d, item, i, &names, defaults);
        tasks.push(task);
        dep_spans.push(deps);
    }
    let acyclic = check_cycles(d, &dep_spans, &names);
    if !acyclic || defaults.is_none() {
        return None;
    }
    tasks.into_iter().collect()
}

/// A decoded task (if valid) and its resolved dependencies (always, so the
/// cycle check sees every edge even when a task has other errors).
type TaskAndDeps = (Option<TaskSpec>, Vec<(usize, Span)>);

fn decode_task(
    d: &mut Diagnostics,
    node: &Node,
    i: usize,
    names: &BTreeMap<String, usize>,
    defaults: Option<&Defaults>,
) -> TaskAndDeps {
    let path = format!("spec.tasks[{i}]");
    let Some(f) = decode::fields(d, node, &path, TASK_FIELDS) else {
        return (None, Vec::new());
    };
    let name = f
        .required(d, "name", "every task needs a `name`, unique in the job")
        .and_then(|n| match &n.kind {
            NodeKind::Scalar(s) => names.contains_key(&s.text).then(|| s.text.clone()),
            _ => None,
        });
    let kind = f
        .required(d, "kind", &format!("one of: {}", KIND_NAMES.join(", ")))
        .and_then(|n| decode::one_of(d, n, &f.path("kind"), KIND_NAMES));
    let description = match f.get("description") {
        None => Some(None),
        Some(n) => decode::bounded_string(d, n, &f.path("description"), 4096).map(Some),
    };

    let mut deps = Vec::new();
    let mut deps_ok = true;
    if let Some(n) = f.get("dependsOn") {
        let dep_path = f.path("dependsOn");
        match decode::string_list(d, n, &dep_path, limits::DEPENDS_ON_MAX) {
            Some(list) => {
                let mut seen = BTreeSet::new();
                for (j, (dep, span)) in list.into_iter().enumerate() {
                    let item_path = decode::index(&dep_path, j);
                    match names.get(&dep) {
                        Some(&target) if !seen.insert(target) => {
                            d.error(
                                span,
                                &item_path,
                                format!("`{dep}` is listed twice in dependsOn"),
                            );
                            deps_ok = false;
                        }
                        Some(&target) => deps.push((target, span)),
                        None => {
                            let known: Vec<&str> = names.keys().map(String::as_str).collect();
                            let hint = match decode::suggest(&dep, &known) {
                                Some(s) => format!("did you mean `{s}`?"),
                                None => format!("tasks in this job: {}", known.join(", ")),
                            };
                            d.error_hint(
                                span,
                                &item_path,
                                format!("dependsOn names `{dep}`, which is not a task in this job"),
                                hint,
                            );
                            deps_ok = false;
                        }
                    }
                }
            }
            None => deps_ok = false,
        }
    }

    let partitions = match f.get("partitions") {
        None => Some(PartitionSet::Single),
        Some(n) => partitions::decode(d, n, &f.path("partitions")),
    };
    // The config is checked even when partitions are invalid, so its errors
    // show in the same run.
    let config = kind
        .and_then(|kind| kinds::decode(d, kind, f.get("config"), node, &path, partitions.as_ref()));
    let own_partitions_clash = match &config {
        Some(c) if c.sets_own_partitions() && f.get("partitions").is_some() => {
            d.error_hint(
                f.key_span("partitions"),
                &f.path("partitions"),
                format!("kind `{}` splits its work itself", c.name()),
                "remove `partitions` and set `config.shards` instead",
            );
            true
        }
        _ => false,
    };

    let defaults_retries = defaults.map(|x| x.retries).unwrap_or_default();
    let retries = match f.get("retries") {
        None => Some(defaults_retries),
        Some(n) => decode_retries(d, n, &f.path("retries")).and_then(|p| {
            let policy = p.over(defaults_retries);
            check_retry(d, &policy, n, &f.path("retries")).then_some(policy)
        }),
    };
    let timeout_ms = match f.get("timeout") {
        None => Some(defaults.map(|x| x.timeout_ms).unwrap_or(DEFAULT_TIMEOUT_MS)),
        Some(n) => timeout(d, n, &f.path("timeout")),
    };
    let max_parallel = match f.get("maxParallel") {
        None => Some(None),
        Some(n) => {
            decode::u32_in(d, n, &f.path("maxParallel"), 1, limits::MAX_PARALLEL_MAX).map(Some)
        }
    };
    let base_resources = defaults.map(|x| x.resources).unwrap_or_default();
    let resources = match f.get("resources") {
        None => Some(base_resources),
        Some(n) => decode_resources(d, n, &f.path("resources"), base_resources),
    };
    let mut constraints = defaults.map(|x| x.constraints.clone()).unwrap_or_default();
    let constraints_ok = match f.get("constraints") {
        None => true,
        Some(n) => match decode_constraints(d, n, &f.path("constraints")) {
            Some(c) => {
                constraints.extend(c);
                true
            }
            None => false,
        },
    };
    if !deps_ok || !constraints_ok || own_partitions_clash {
        return (None, deps);
    }
    let task = (|| {
        Some(TaskSpec {
            name: name?,
            description: description?,
            kind: config?,
            depends_on: deps.iter().map(|(t, _)| name_of(names, *t)).collect(),
            partitions: partitions?,
            retries: retries?,
            timeout_ms: timeout_ms?,
            max_parallel: max_parallel?,
            resources: resources?,
            constraints,
        })
    })();
    (task, deps)
}

fn name_of(names: &BTreeMap<String, usize>, index: usize) -> String {
    names
        .iter()
        .find(|(_, i)| **i == index)
        .map(|(n, _)| n.clone())
        .unwrap_or_default()
}

/// Reports every dependency cycle once, naming its tasks in order, at the
/// `dependsOn` entry that closes it. Returns false if any exists.
fn check_cycles(
    d: &mut Diagnostics,
    deps: &[Vec<(usize, Span)>],
    names: &BTreeMap<String, usize>,
) -> bool {
    // `deps` is indexed by declaration index, as are the values of `names`.
    let n = deps.len();
    let name_at = |t: usize| name_of(names, t);
    let mut state = vec![0u8; n]; // 0 new, 1 on stack, 2 done
    let mut reported: BTreeSet<Vec<usize>> = BTreeSet::new();
    let mut ok = true;
    for start in 0..n {
        if state[start] != 0 {
            continue;
        }
        // Iterative DFS: (node, next edge index).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(&mut (node, ref mut edge)) = stack.last_mut() {
            if let Some(&(next, span)) = deps[node].get(*edge) {
                *edge += 1;
                match state[next] {
                    0 => {
                        state[next] = 1;
                        stack.push((next, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|(t, _)| *t == next).unwrap_or(0);
                        let cycle: Vec<usize> = stack[from..].iter().map(|(t, _)| *t).collect();
                        let mut key = cycle.clone();
                        key.sort_unstable();
                        if reported.insert(key) {
                            let mut path: Vec<String> = cycle.iter().map(|t| name_at(*t)).collect();
                            path.push(name_at(next));
                            let message = if cycle.len() == 1 {
                                format!("task `{}` depends on itself", name_at(next))
                            } else {
                                format!("dependency cycle: {}", path.join(" -> "))
                            };
                            d.error_hint(
                                span,
                                &format!("spec.tasks[{node}].dependsOn"),
                                message,
                                "a job is a DAG: remove one of these dependsOn entries",
                            );
                        }
                        ok = false;
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }
    ok
}

/// Hex SHA-256 of the tree (keys sorted, so formatting and key order do not
/// matter) and the overrides in key order.
fn hash(tree: &Node, overrides: &[(String, String)]) -> String {
    let mut canonical = String::new();
    canonical_json(&tree.to_json(), &mut canonical);
    let mut sorted: Vec<&(String, String)> = overrides.iter().collect();
    sorted.sort();
    let mut hasher = Sha256::new();
    hasher.update(canonical.as_bytes());
    for (k, v) in sorted {
        hasher.update([0]);
        hasher.update(k.as_bytes());
        hasher.update([0]);
        hasher.update(v.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// JSON with object keys sorted, independent of serde_json's map order.
fn canonical_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}
