//! Dependencies are respected: no task of a template is granted, or starts
//! running, before every task of every template it depends on succeeded.
//! Checked twice: in the cluster's trail (grant after upstream completions)
//! and in the probes' side logs (a start after the accepted upstream
//! attempts really finished).

use std::collections::BTreeMap;

use crate::observation::{EventType, Observation};

use super::is_completion;

pub const NAME: &str = "no task ran before its dependencies succeeded";

pub fn check(o: &Observation) -> Vec<String> {
    let mut out = Vec::new();
    // End time of each (task, token) that finished ok, from the probes.
    let mut probe_ok: BTreeMap<(&str, u64), i64> = BTreeMap::new();
    for p in o.probes.iter().filter(|p| p.event == "ok") {
        probe_ok.insert((&p.task_id, p.token), p.unix_us);
    }
    for job in &o.jobs {
        let index_of: BTreeMap<&str, usize> = job
            .templates
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        // Accepted completion of each task: (event seq, token).
        let mut done: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for e in job.task_events().filter(|e| is_completion(e)) {
            done.entry(&e.task_id).or_insert((e.seq, e.token));
        }
        let upstream_tasks = |task_id: &str| -> Vec<String> {
            let Some(t) = template_index(task_id).filter(|t| *t < job.templates.len()) else {
                return Vec::new();
            };
            job.templates[t]
                .depends_on
                .iter()
                .filter_map(|d| index_of.get(d.as_str()).map(|i| (*i, &job.templates[*i])))
                .flat_map(|(i, up)| (0..up.partitions).map(move |p| format!("{}/{i}/{p}", job.id)))
                .collect()
        };
        for e in job.task_events().filter(|e| e.kind == EventType::Leased) {
            for up in upstream_tasks(&e.task_id) {
                match done.get(up.as_str()) {
                    Some((seq, _)) if *seq < e.seq => {}
                    _ => out.push(format!(
                        "{} was granted (token {}, event {}) before upstream {up} succeeded",
                        e.task_id, e.token, e.seq
                    )),
                }
            }
        }
        for start in o
            .probes
            .iter()
            .filter(|p| p.event == "start" && p.job_id == job.id)
        {
            for up in upstream_tasks(&start.task_id) {
                let finished = done
                    .get(up.as_str())
                    .and_then(|(_, token)| probe_ok.get(&(up.as_str(), *token)));
                match finished {
                    Some(end) if *end <= start.unix_us => {}
                    Some(end) => out.push(format!(
                        "{} (token {}) started at {} us, before upstream {up} finished at {end} us",
                        start.task_id, start.token, start.unix_us
                    )),
                    None => out.push(format!(
                        "{} (token {}) started, but upstream {up} has no accepted attempt that finished",
                        start.task_id, start.token
                    )),
                }
            }
        }
    }
    out
}

/// The template index of a task id `<job>/<template>/<partition>`.
fn template_index(task_id: &str) -> Option<usize> {
    let mut parts = task_id.rsplitn(3, '/');
    let _partition = parts.next()?;
    parts.next()?.parse().ok()
}
