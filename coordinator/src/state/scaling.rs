//! The scaling signal: how many workers each pool should have, and why.
//!
//! A pool is a label set: the `constraints.labels` of the work it runs, and
//! the labels its workers are started with (`drover worker --labels`). Work
//! without constraints belongs to the default pool (no labels). For each
//! pool the signal counts the ready tasks that could be leased right now,
//! the running ones, and the ready ones that `maxParallel` caps hold back.
//! Held-back work asks for no workers: a worker added for it would sit
//! idle, which is how AWS Batch users end up paying for jobs stuck in
//! RUNNABLE. Tasks waiting out a retry delay or for upstream templates ask
//! for none either.
//!
//! desired = ceil((ready that can run + running) / slots per worker)
//!
//! Slots per worker are the median of the pool's live workers (the default
//! when it has none). The oldest ready task's age is reported, and ready
//! work that has waited [`STUCK_AFTER_MS`] beside free slots is called out:
//! more workers of the same kind would not take it either. Like the rest of the state machine this reads no
//! clock and is the same on every replica, so any coordinator can answer.

use std::collections::BTreeMap;

use serde::Serialize;

use super::StateMachine;
use super::job::TemplateStatus;
use super::workers::WorkerState;

/// Pools reported at most; a spec's constraints make pools, so a cluster
/// with more distinct label sets than this reports the busiest.
pub const POOLS_MAX: usize = 256;

/// How long ready work waits, with free slots in its pool, before the
/// signal says the workers may not be able to run it.
pub const STUCK_AFTER_MS: i64 = 5 * 60_000;

/// Jobs named per pool as held back by their caps.
const CAPPED_JOBS_SHOWN: usize = 3;

/// What the signal needs besides the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingSettings {
    /// Slots per worker assumed for a pool with no live worker yet (the
    /// worker's own default is 4).
    pub default_slots: u32,
    /// Pools to report even without work, so their desired count reads 0
    /// rather than disappearing (the default pool is always reported).
    pub known_pools: Vec<BTreeMap<String, String>>,
}

impl Default for ScalingSettings {
    fn default() -> Self {
        Self {
            default_slots: 4,
            known_pools: Vec::new(),
        }
    }
}

/// One pool's signal.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolSignal {
    /// `default`, or the labels as `key=value,key=value`.
    pub pool: String,
    /// The labels its work is constrained to.
    pub labels: BTreeMap<String, String>,
    /// Workers it should have.
    pub desired_workers: u64,
    /// Ready tasks that a free slot would lease now.
    pub ready_tasks: u64,
    /// Ready tasks held back by a job's or template's `maxParallel`.
    pub held_back_tasks: u64,
    /// Tasks leased now.
    pub running_tasks: u64,
    /// Slots per worker the count assumes.
    pub slots_per_worker: u32,
    /// Live workers whose labels include the pool's.
    pub alive_workers: u64,
    /// Draining workers whose labels include the pool's.
    pub draining_workers: u64,
    /// (ready + running) / (slots × live workers, at least one): the
    /// metric for a target-tracking policy (target 1.0 keeps every slot
    /// busy with nothing waiting).
    pub load_per_worker: f64,
    /// How long its oldest leasable ready task has waited, in ms of the
    /// state's time; 0 with none.
    pub oldest_ready_age_ms: i64,
    /// Why, in words.
    pub reasons: Vec<String>,
}

/// What one pool's work adds up to while the signal is computed.
#[derive(Default)]
struct Demand {
    ready: u64,
    held_back: u64,
    running: u64,
    oldest_ready_ms: Option<i64>,
    /// Jobs whose caps held work back, with (leased, cap).
    capped: BTreeMap<super::JobId, (u64, u64)>,
}

impl StateMachine {
    /// The scaling signal of every pool with work, every known pool and
    /// the default pool, ordered by pool name (default first).
    pub fn scaling(&self, settings: &ScalingSettings) -> Vec<PoolSignal> {
        let mut pools: BTreeMap<BTreeMap<String, String>, Demand> = BTreeMap::new();
        pools.entry(BTreeMap::new()).or_default();
        for labels in &settings.known_pools {
            pools.entry(labels.clone()).or_default();
        }
        for job in self.core.jobs.values() {
            if job.state.is_terminal() {
                continue;
            }
            // The job's cap is shared by its templates; templates earlier
            // in the graph take it first, as leasing does.
            let mut job_room = u64::from(job.max_parallel).saturating_sub(job.counts.leased);
            for template in &job.templates {
                let leased = template.counts.leased;
                let ready = template.counts.ready;
                if leased == 0 && ready == 0 {
                    continue;
                }
                let demand = pools.entry(template.def.constraints.clone()).or_default();
                demand.running += leased;
                if template.status != TemplateStatus::Open || ready == 0 {
                    continue;
                }
                let template_room = template
                    .def
                    .max_parallel
                    .map_or(u64::MAX, |cap| u64::from(cap).saturating_sub(leased));
                let runnable = ready.min(template_room).min(job_room);
                job_room -= runnable;
                demand.ready += runnable;
                demand.held_back += ready - runnable;
                if runnable < ready {
                    let cap = if runnable < ready.min(template_room) {
                        (job.counts.leased, u64::from(job.max_parallel))
                    } else {
                        (leased, template.def.max_parallel.map_or(0, u64::from))
                    };
                    demand.capped.insert(job.id, cap);
                }
                if runnable > 0 {
                    let mut since =
                        (template.cursor < template.def.count).then_some(template.opened_ms);
                    for p in &template.requeued {
                        if let Some(record) = template.tasks.get(p) {
                            since = Some(
                                since.map_or(record.ready_at_ms, |s| s.min(record.ready_at_ms)),
                            );
                        }
                    }
                    if let Some(since) = since {
                        demand.oldest_ready_ms =
                            Some(demand.oldest_ready_ms.map_or(since, |o| o.min(since)));
                    }
                }
            }
        }
        let mut signals: Vec<PoolSignal> = pools
            .into_iter()
            .map(|(labels, demand)| self.pool_signal(labels, demand, settings))
            .collect();
        if signals.len() > POOLS_MAX {
            // Keep the default pool and the busiest others.
            let default = signals.remove(0);
            signals.sort_by(|a, b| {
                (b.ready_tasks + b.running_tasks)
                    .cmp(&(a.ready_tasks + a.running_tasks))
                    .then_with(|| a.pool.cmp(&b.pool))
            });
            signals.truncate(POOLS_MAX - 1);
            signals.push(default);
        }
        signals.sort_by(|a, b| pool_order(&a.pool).cmp(&pool_order(&b.pool)));
        signals
    }

    fn pool_signal(
        &self,
        labels: BTreeMap<String, String>,
        demand: Demand,
        settings: &ScalingSettings,
    ) -> PoolSignal {
        let mut slots: Vec<u32> = Vec::new();
        let (mut alive, mut draining, mut free_slots) = (0, 0, 0u64);
        for (id, worker) in &self.core.workers {
            if !labels.iter().all(|(k, v)| worker.labels.get(k) == Some(v)) {
                continue;
            }
            match worker.state {
                WorkerState::Alive => {
                    alive += 1;
                    slots.push(worker.slots);
                    let busy = self.idx.worker_tasks.get(id).map_or(0, |t| t.len() as u64);
                    free_slots += u64::from(worker.slots).saturating_sub(busy);
                }
                WorkerState::Draining => draining += 1,
                WorkerState::Lost => {}
            }
        }
        slots.sort_unstable();
        let observed = slots.get(slots.len() / 2).copied();
        let per_worker = observed.unwrap_or(settings.default_slots).max(1);
        let wanted = demand.ready + demand.running;
        let desired = wanted.div_ceil(u64::from(per_worker));
        let oldest_ready_age_ms = demand
            .oldest_ready_ms
            .map_or(0, |since| self.core.now_ms.saturating_sub(since).max(0));
        let mut reasons = Vec::new();
        let slots_from = match observed {
            Some(_) => format!(
                "{per_worker} slots per worker (the median of {alive} live worker{})",
                if alive == 1 { "" } else { "s" }
            ),
            None => format!("{per_worker} slots per worker (the default: no live worker yet)"),
        };
        if wanted == 0 {
            reasons.push("no ready or running work: no workers needed".to_owned());
        } else {
            reasons.push(format!(
                "{} ready task{} can run now and {} {} running; at {slots_from} that is {desired} worker{}",
                demand.ready,
                if demand.ready == 1 { "" } else { "s" },
                demand.running,
                if demand.running == 1 { "is" } else { "are" },
                if desired == 1 { "" } else { "s" },
            ));
        }
        if demand.held_back > 0 {
            let jobs: Vec<String> = demand
                .capped
                .iter()
                .take(CAPPED_JOBS_SHOWN)
                .map(|(job, (leased, cap))| format!("{job}: cap {cap}, {leased} running"))
                .collect();
            reasons.push(format!(
                "{} ready task{} held back by maxParallel ({}{}) ask for no workers",
                demand.held_back,
                if demand.held_back == 1 {
                    " is"
                } else {
                    "s are"
                },
                jobs.join("; "),
                if demand.capped.len() > CAPPED_JOBS_SHOWN {
                    format!(
                        "; and {} more jobs",
                        demand.capped.len() - CAPPED_JOBS_SHOWN
                    )
                } else {
                    String::new()
                },
            ));
        }
        if oldest_ready_age_ms > 0 {
            reasons.push(format!(
                "the oldest ready task has waited {}",
                humanize_ms(oldest_ready_age_ms)
            ));
        }
        // Work that waits while the pool's workers have room is not short of
        // workers: more of the same would not take it either. Say so, the
        // way AWS Batch does not for jobs stuck in RUNNABLE.
        if demand.ready > 0 && oldest_ready_age_ms >= STUCK_AFTER_MS && free_slots > 0 {
            reasons.push(format!(
                "ready work has waited over {} while the pool's live workers have {free_slots} free slot{}: they may not run it (a `command` task needs workers with --allow-command; see `drover job why TASK`), and more of the same workers would not either",
                humanize_ms(STUCK_AFTER_MS),
                if free_slots == 1 { "" } else { "s" },
            ));
        }
        if alive > desired {
            reasons.push(format!(
                "{alive} live workers are more than needed: scale in to {desired}"
            ));
        } else if alive < desired {
            reasons.push(format!(
                "{alive} live worker{} {} fewer than needed: scale out to {desired}",
                if alive == 1 { "" } else { "s" },
                if alive == 1 { "is" } else { "are" },
            ));
        }
        PoolSignal {
            pool: pool_name(&labels),
            labels,
            desired_workers: desired,
            ready_tasks: demand.ready,
            held_back_tasks: demand.held_back,
            running_tasks: demand.running,
            slots_per_worker: per_worker,
            alive_workers: alive,
            draining_workers: draining,
            load_per_worker: wanted as f64 / (f64::from(per_worker) * alive.max(1) as f64),
            oldest_ready_age_ms,
            reasons,
        }
    }
}

/// `default` for no labels, else `key=value,key=value` (sorted).
pub fn pool_name(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "default".to_owned();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The labels of a pool named as [`pool_name`] writes it.
pub fn parse_pool(name: &str) -> Option<BTreeMap<String, String>> {
    if name == "default" || name.is_empty() {
        return Some(BTreeMap::new());
    }
    name.split(',')
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (!k.is_empty()).then(|| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Default first, then by name.
fn pool_order(name: &str) -> (bool, &str) {
    (name != "default", name)
}

fn humanize_ms(ms: i64) -> String {
    match ms {
        ms if ms < 1_000 => format!("{ms} ms"),
        ms if ms < 120_000 => format!("{} s", ms / 1_000),
        ms if ms < 7_200_000 => format!("{} min", ms / 60_000),
        ms => format!("{} h", ms / 3_600_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, Config, LogEntry, SubmitJob};

    fn apply(sm: &mut StateMachine, now_ms: i64, command: Command) {
        let applied = sm
            .apply(&LogEntry {
                now_ms,
                commands: vec![command],
            })
            .remove(0);
        assert!(applied.is_ok(), "{applied:?}");
    }

    fn submit(sm: &mut StateMachine, now_ms: i64, tasks: &str, max_parallel: u32) {
        let yaml = format!(
            "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: j}}\nspec:\n  maxParallel: {max_parallel}\n  tasks:\n{tasks}"
        );
        apply(
            sm,
            now_ms,
            Command::SubmitJob(SubmitJob {
                file: "j.yaml".into(),
                spec_yaml: yaml,
                params: Vec::new(),
                idempotency_key: None,
                trace_parent: None,
            }),
        );
    }

    fn register(sm: &mut StateMachine, id: &str, slots: u32, labels: &[(&str, &str)]) {
        apply(
            sm,
            1_000,
            Command::RegisterWorker {
                worker: id.into(),
                slots,
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                kinds: Vec::new(),
            },
        );
    }

    fn pool<'a>(signals: &'a [PoolSignal], name: &str) -> &'a PoolSignal {
        signals
            .iter()
            .find(|s| s.pool == name)
            .unwrap_or_else(|| panic!("no pool {name} in {signals:#?}"))
    }

    #[test]
    fn an_idle_cluster_wants_no_workers_in_the_default_pool() {
        let sm = StateMachine::new(Config::default());
        let signals = sm.scaling(&ScalingSettings::default());
        assert_eq!(signals.len(), 1);
        assert_eq!(signals[0].pool, "default");
        assert_eq!(signals[0].desired_workers, 0);
        assert_eq!(
            signals[0].reasons,
            ["no ready or running work: no workers needed"]
        );
    }

    #[test]
    fn ready_and_running_work_ask_for_workers_by_slots() {
        let mut sm = StateMachine::new(Config::default());
        submit(
            &mut sm,
            1_000,
            "    - {name: a, kind: noop, partitions: {shards: 10}}\n",
            100,
        );
        // No worker yet: the default slots.
        let s = sm.scaling(&ScalingSettings::default());
        assert_eq!(s[0].ready_tasks, 10);
        assert_eq!(s[0].desired_workers, 3, "{:#?}", s[0]);
        assert!(s[0].reasons[0].contains("the default: no live worker yet"));
        register(&mut sm, "w1", 2, &[]);
        apply(
            &mut sm,
            2_000,
            Command::Lease {
                worker: "w1".into(),
                max_tasks: 2,
            },
        );
        let s = sm.scaling(&ScalingSettings::default());
        let p = pool(&s, "default");
        assert_eq!((p.ready_tasks, p.running_tasks), (8, 2));
        assert_eq!(p.slots_per_worker, 2);
        assert_eq!(p.desired_workers, 5);
        assert_eq!(p.alive_workers, 1);
        assert_eq!(p.load_per_worker, 5.0);
        assert_eq!(p.oldest_ready_age_ms, 1_000);
        assert!(
            p.reasons[0].starts_with("8 ready tasks can run now and 2 are running; at 2 slots per worker (the median of 1 live worker) that is 5 workers"),
            "{:?}",
            p.reasons
        );
        assert!(p.reasons.iter().any(|r| r.contains("scale out to 5")));
    }

    #[test]
    fn work_held_back_by_max_parallel_asks_for_no_workers() {
        let mut sm = StateMachine::new(Config::default());
        // A job capped at 3, and a template capped at 2 in another job.
        submit(
            &mut sm,
            1_000,
            "    - {name: a, kind: noop, partitions: {shards: 50}}\n",
            3,
        );
        submit(
            &mut sm,
            1_000,
            "    - {name: b, kind: noop, partitions: {shards: 20}, maxParallel: 2}\n",
            100,
        );
        let s = sm.scaling(&ScalingSettings::default());
        let p = pool(&s, "default");
        assert_eq!(p.ready_tasks, 5);
        assert_eq!(p.held_back_tasks, 65);
        assert_eq!(p.desired_workers, 2);
        let held = p.reasons.iter().find(|r| r.contains("held back")).unwrap();
        let ids: Vec<_> = sm.core().jobs.keys().collect();
        assert_eq!(
            *held,
            format!(
                "65 ready tasks are held back by maxParallel ({}: cap 3, 0 running; {}: cap 2, 0 running) ask for no workers",
                ids[0], ids[1]
            )
        );
    }

    #[test]
    fn constrained_work_makes_its_own_pool_and_counts_matching_workers() {
        let mut sm = StateMachine::new(Config::default());
        submit(
            &mut sm,
            1_000,
            "    - {name: g, kind: noop, partitions: {shards: 6}, constraints: {labels: {pool: gpu}}}\n    - {name: c, kind: noop}\n",
            100,
        );
        register(&mut sm, "cpu", 8, &[]);
        register(&mut sm, "gpu-1", 1, &[("pool", "gpu"), ("zone", "a")]);
        let s = sm.scaling(&ScalingSettings {
            default_slots: 4,
            known_pools: vec![BTreeMap::from([("pool".to_owned(), "spot".to_owned())])],
        });
        assert_eq!(
            s.iter().map(|p| p.pool.as_str()).collect::<Vec<_>>(),
            ["default", "pool=gpu", "pool=spot"]
        );
        let gpu = pool(&s, "pool=gpu");
        assert_eq!(
            (gpu.ready_tasks, gpu.desired_workers, gpu.alive_workers),
            (6, 6, 1)
        );
        assert_eq!(gpu.labels["pool"], "gpu");
        // Both workers can run unconstrained work: the default pool counts both.
        let default = pool(&s, "default");
        assert_eq!((default.ready_tasks, default.alive_workers), (1, 2));
        // A known pool without work reads 0.
        let spot = pool(&s, "pool=spot");
        assert_eq!((spot.desired_workers, spot.alive_workers), (0, 0));
        assert_eq!(parse_pool("pool=gpu,zone=a").unwrap().len(), 2);
        assert_eq!(parse_pool("default"), Some(BTreeMap::new()));
        assert_eq!(parse_pool("nonsense"), None);
    }

    #[test]
    fn work_that_waits_beside_free_slots_is_called_out() {
        let mut sm = StateMachine::new(Config::default());
        submit(
            &mut sm,
            1_000,
            "    - {name: c, kind: command, config: {argv: [\"true\"]}}\n",
            100,
        );
        // A worker that does not run `command` leases nothing.
        register(&mut sm, "w1", 4, &[]);
        apply(
            &mut sm,
            2_000,
            Command::Lease {
                worker: "w1".into(),
                max_tasks: 4,
            },
        );
        let early = sm.scaling(&ScalingSettings::default());
        assert!(
            !early[0]
                .reasons
                .iter()
                .any(|r| r.contains("may not run it"))
        );
        // Five minutes on, the worker still alive (it registers again).
        apply(
            &mut sm,
            1_000 + STUCK_AFTER_MS,
            Command::RegisterWorker {
                worker: "w1".into(),
                slots: 4,
                labels: BTreeMap::new(),
                kinds: Vec::new(),
            },
        );
        let late = sm.scaling(&ScalingSettings::default());
        let stuck = late[0]
            .reasons
            .iter()
            .find(|r| r.contains("may not run it"))
            .unwrap_or_else(|| panic!("{:#?}", late[0]));
        assert!(stuck.contains("4 free slots"), "{stuck}");
        assert_eq!(late[0].desired_workers, 1);
    }

    #[test]
    fn blocked_backoff_and_finished_work_ask_for_nothing() {
        let mut sm = StateMachine::new(Config::default());
        submit(
            &mut sm,
            1_000,
            "    - {name: a, kind: noop}\n    - {name: b, kind: noop, dependsOn: [a], partitions: {shards: 40}}\n",
            100,
        );
        let s = sm.scaling(&ScalingSettings::default());
        // Only `a` is ready; `b`'s 40 are blocked.
        assert_eq!((s[0].ready_tasks, s[0].desired_workers), (1, 1));
        let job = *sm.core().jobs.keys().next().unwrap();
        apply(
            &mut sm,
            2_000,
            Command::CancelJob {
                job,
                reason: "test".into(),
            },
        );
        let s = sm.scaling(&ScalingSettings::default());
        assert_eq!((s[0].ready_tasks, s[0].desired_workers), (0, 0));
    }
}
