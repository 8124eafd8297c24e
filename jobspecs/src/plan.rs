//! Expansion: a validated spec becomes a compact task graph.
//!
//! Each task becomes one template per stage of its kind; a template holds a
//! partition *set*, never per-partition records, so the graph's size depends
//! on the number of templates, not on the number of tasks (DESIGN invariant 6).
//! Templates come out in a deterministic topological order: dependencies
//! first, ties broken by declaration order.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::diagnostic::{Diagnostic, Diagnostics, Pos, Span};
use crate::interpolate::resolve_partition_refs;
use crate::limits;
use crate::load::{self, LoadOptions};
use crate::model::{JobSpec, Resources, RetryPolicy};
use crate::partitions::PartitionSet;

/// One template of the expanded graph: a task's stage with its fan-out.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    /// `task` or `task/stage`; unique in the job.
    pub id: String,
    /// The spec task this template came from.
    pub task: String,
    /// The kind's stage, for multi-stage kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<&'static str>,
    /// Kind name.
    pub kind: &'static str,
    /// The fan-out.
    pub partitions: PartitionSet,
    /// Number of tasks this template makes.
    pub partition_count: u64,
    /// Indexes (into `TaskGraph::templates`) of templates whose every
    /// partition must succeed first.
    pub depends_on: Vec<usize>,
    /// The kind's config; may hold `${partition.*}` until a task is made.
    pub config: serde_json::Value,
    /// Retry policy.
    pub retries: RetryPolicy,
    /// Per-attempt timeout.
    pub timeout_ms: u64,
    /// Per-template cap on leased tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    /// Placement needs.
    pub resources: Resources,
    /// Worker labels required.
    pub constraints: BTreeMap<String, String>,
}

impl Template {
    /// The config for partition `index`, with `${partition.*}` resolved.
    pub fn task_config(&self, index: u64) -> Option<serde_json::Value> {
        let key = self.partitions.key(index)?;
        let mut config = self.config.clone();
        resolve_partition_refs(&mut config, &key, index, self.partition_count);
        Some(config)
    }
}

/// The expanded graph of one job.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskGraph {
    /// Templates in topological order.
    pub templates: Vec<Template>,
    /// Sum of partition counts.
    pub total_tasks: u64,
}

/// Why expansion failed: a limit on the expanded size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// More templates than [`limits::TEMPLATES_PER_JOB_MAX`].
    #[error("the job expands into {0} templates; the limit is {max}", max = limits::TEMPLATES_PER_JOB_MAX)]
    TooManyTemplates(usize),
    /// More tasks than [`limits::TASKS_TOTAL_MAX`].
    #[error("the job expands into {0} tasks; the limit is {max}", max = limits::TASKS_TOTAL_MAX)]
    TooManyTasks(u64),
}

/// Expands `spec` into its template graph.
pub fn expand(spec: &JobSpec) -> Result<TaskGraph, ExpandError> {
    let order = topological_order(spec);
    // Index of each task's last stage, which is what downstream tasks wait on.
    let mut last_stage: BTreeMap<&str, usize> = BTreeMap::new();
    let mut templates: Vec<Template> = Vec::new();
    let mut total: u64 = 0;
    for &t in &order {
        let task = &spec.tasks[t];
        let config = task.kind.config_json();
        let mut previous: Option<usize> = None;
        // This task's stages so far, by name, for `also_reads`.
        let mut stages: BTreeMap<&str, usize> = BTreeMap::new();
        for stage in task.kind.stages(&task.partitions) {
            let depends_on = match previous {
                Some(p) => std::iter::once(p)
                    .chain(
                        stage
                            .also_reads
                            .iter()
                            .filter_map(|s| stages.get(s).copied()),
                    )
                    .collect(),
                None => task
                    .depends_on
                    .iter()
                    .filter_map(|d| last_stage.get(d.as_str()).copied())
                    .collect(),
            };
            let count = stage.partitions.count();
            total = total.saturating_add(count);
            let id = match stage.name {
                Some(s) => format!("{}/{s}", task.name),
                None => task.name.clone(),
            };
            templates.push(Template {
                id,
                task: task.name.clone(),
                stage: stage.name,
                kind: task.kind.name(),
                partitions: stage.partitions,
                partition_count: count,
                depends_on,
                config: config.clone(),
                retries: task.retries,
                timeout_ms: task.timeout_ms,
                max_parallel: task.max_parallel,
                resources: task.resources,
                constraints: task.constraints.clone(),
            });
            previous = Some(templates.len() - 1);
            if let Some(name) = stage.name {
                stages.insert(name, templates.len() - 1);
            }
            if templates.len() > limits::TEMPLATES_PER_JOB_MAX {
                return Err(ExpandError::TooManyTemplates(templates.len()));
            }
        }
        if let Some(p) = previous {
            last_stage.insert(task.name.as_str(), p);
        }
    }
    if total > limits::TASKS_TOTAL_MAX {
        return Err(ExpandError::TooManyTasks(total));
    }
    Ok(TaskGraph {
        templates,
        total_tasks: total,
    })
}

/// Kahn's algorithm, always taking the earliest-declared ready task, so the
/// order is a pure function of the spec. The spec is acyclic (checked on load).
fn topological_order(spec: &JobSpec) -> Vec<usize> {
    let index: BTreeMap<&str, usize> = spec
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let mut indegree: Vec<usize> = spec.tasks.iter().map(|t| t.depends_on.len()).collect();
    let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); spec.tasks.len()];
    for (i, task) in spec.tasks.iter().enumerate() {
        for dep in &task.depends_on {
            if let Some(&u) = index.get(dep.as_str()) {
                downstream[u].push(i);
            }
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..spec.tasks.len())
        .filter(|i| indegree[*i] == 0)
        .collect();
    let mut order = Vec::with_capacity(spec.tasks.len());
    while let Some(next) = ready.pop_first() {
        order.push(next);
        for &d in &downstream[next] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.insert(d);
            }
        }
    }
    order
}

/// Everything `drover job plan` shows about a valid spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The validated spec.
    pub spec: JobSpec,
    /// Identity of the spec for idempotent submits.
    pub spec_hash: String,
    /// The expanded graph.
    pub graph: TaskGraph,
    /// Upcoming fire times when the job has a schedule.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub next_fire_times: Vec<DateTime<Tz>>,
    /// Non-fatal findings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Diagnostic>,
}

/// How many fire times a plan lists.
pub const PLAN_FIRE_TIMES: usize = 5;

/// Loads, validates and expands a spec: the whole of `drover job plan`.
/// On failure, returns every diagnostic found, sorted by position.
pub fn plan(file: &str, source: &str, opts: &LoadOptions) -> Result<Plan, Vec<Diagnostic>> {
    let mut d = Diagnostics::new(file);
    let loaded = load::load(&mut d, source, opts);
    let Some(loaded) = loaded.filter(|_| !d.has_errors()) else {
        return Err(d.into_sorted());
    };
    let graph = match expand(&loaded.spec) {
        Ok(graph) => graph,
        Err(err) => {
            d.error_hint(
                Span::point(Pos { line: 1, column: 1 }),
                "spec.tasks",
                err.to_string(),
                "lower partition or shard counts, or split the work across jobs",
            );
            return Err(d.into_sorted());
        }
    };
    let next_fire_times = loaded
        .spec
        .schedule
        .as_ref()
        .map(|s| s.next_fire_times(opts.logical_time, PLAN_FIRE_TIMES))
        .unwrap_or_default();
    Ok(Plan {
        spec: loaded.spec,
        spec_hash: loaded.spec_hash,
        graph,
        next_fire_times,
        warnings: d.into_sorted(),
    })
}

impl Plan {
    /// The plan as stable JSON (`drover job plan --json`): dependencies are
    /// template ids, times are RFC 3339 with their offset.
    pub fn to_json(&self) -> serde_json::Value {
        let spec = &self.spec;
        let templates: Vec<serde_json::Value> = self
            .graph
            .templates
            .iter()
            .map(|t| {
                let depends_on: Vec<&str> = t
                    .depends_on
                    .iter()
                    .map(|d| self.graph.templates[*d].id.as_str())
                    .collect();
                serde_json::json!({
                    "id": t.id,
                    "task": t.task,
                    "stage": t.stage,
                    "kind": t.kind,
                    "partitions": t.partitions,
                    "partitionCount": t.partition_count,
                    "dependsOn": depends_on,
                    "config": t.config,
                    "retries": t.retries,
                    "timeoutMs": t.timeout_ms,
                    "maxParallel": t.max_parallel,
                    "resources": t.resources,
                    "constraints": t.constraints,
                })
            })
            .collect();
        let schedule = spec.schedule.as_ref().map(|s| {
            serde_json::json!({
                "cron": s.cron,
                "timezone": s.timezone.name(),
                "catchup": s.catchup,
                "maxCatchup": s.max_catchup,
                "overlap": s.overlap,
                "nextFireTimes": self
                    .next_fire_times
                    .iter()
                    .map(|t| t.to_rfc3339())
                    .collect::<Vec<_>>(),
            })
        });
        serde_json::json!({
            "valid": true,
            "job": {
                "name": spec.name,
                "namespace": spec.namespace,
                "labels": spec.labels,
                "description": spec.description,
                "priority": spec.priority,
                "maxParallel": spec.max_parallel,
                "recompute": spec.recompute,
                "params": spec.params,
            },
            "specHash": self.spec_hash,
            "templates": templates,
            "totalTasks": self.graph.total_tasks,
            "schedule": schedule,
            "warnings": self.warnings,
        })
    }

    /// The plan as people read it.
    pub fn render(&self) -> String {
        let spec = &self.spec;
        let mut out = String::new();
        out.push_str(&format!(
            "job {}/{}  priority {}  maxParallel {}\n",
            spec.namespace, spec.name, spec.priority, spec.max_parallel
        ));
        if let Some(description) = &spec.description {
            out.push_str(&format!("  {description}\n"));
        }
        if !spec.params.is_empty() {
            let params: Vec<String> = spec
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push_str(&format!("params: {}\n", params.join(" ")));
        }
        out.push_str(&format!(
            "\n{} templates, {} tasks\n",
            self.graph.templates.len(),
            group_thousands(self.graph.total_tasks)
        ));
        let width = self
            .graph
            .templates
            .iter()
            .map(|t| t.id.len())
            .max()
            .unwrap_or(0);
        for template in &self.graph.templates {
            let deps: Vec<&str> = template
                .depends_on
                .iter()
                .map(|d| self.graph.templates[*d].id.as_str())
                .collect();
            let after = if deps.is_empty() {
                String::new()
            } else {
                format!("  after {}", deps.join(", "))
            };
            out.push_str(&format!(
                "  {:<width$}  {:<24} {:>10} × {}{}\n",
                template.id,
                template.kind,
                group_thousands(template.partition_count),
                template.partitions.describe(),
                after,
            ));
        }
        if let Some(schedule) = &spec.schedule {
            out.push_str(&format!(
                "\nschedule: {} ({})  catchup {} (max {})  overlap {}\n  next:\n",
                schedule.cron,
                schedule.timezone.name(),
                schedule.catchup.as_str(),
                schedule.max_catchup,
                schedule.overlap.as_str()
            ));
            for t in &self.next_fire_times {
                out.push_str(&format!(
                    "    {}  ({} UTC)\n",
                    t.format("%Y-%m-%d %H:%M:%S %Z"),
                    t.with_timezone(&Utc).format("%Y-%m-%d %H:%M")
                ));
            }
        }
        out.push_str(&format!("\nspec hash {}\n", &self.spec_hash[..16]));
        out
    }
}

/// `1234567` as `1,234,567`.
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
