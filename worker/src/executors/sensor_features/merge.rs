//! A date's `merge` (`shards: N`): the sums and speeds of the date's N
//! parts ([`super::part`]) combined a cut of groups at a time, so memory
//! holds one cut of every part, not the day. The parts' devices are
//! disjoint, so counts, distinct devices and sums add; each group's speeds
//! come together whole, so its percentiles are exact; integer sums and
//! speeds sorted before they are summed make the features equal, bit for
//! bit, to one task's over the whole date. Written and published as that
//! task's are.

use drover_proto::v1::{LeasedTask, OutputManifest};

use super::compute::Stats;
use super::day::Day;
use super::part::{PART_JSON, PartInfo, SpeedAt, decode, partials_file, speeds_file};
use crate::executors::data_attempt::read_bytes;
use crate::executors::{AttemptContext, TaskError};
use crate::sensors::features::{Aggregator, Features, Partial};

/// Largest `part.json` read.
const PART_JSON_BYTES_MAX: usize = 1 << 20;

/// Runs the merge of one date.
pub async fn run(
    task: &LeasedTask,
    ctx: &AttemptContext,
    budget: u64,
) -> Result<OutputManifest, TaskError> {
    let day = Day::open(task, &task.partition_key, budget).await?;
    if let Some(reused) = day.reused(ctx).await? {
        return Ok(reused);
    }
    let shards = u64::from(day.cfg.shards.max(1));
    // The lease lists every part of every date; this date's are its
    // shards' consecutive partitions.
    let listed = task
        .upstream_outputs
        .iter()
        .filter(|u| u.template.rsplit('/').next() == Some("part"))
        .count() as u64;
    let d = task.partition_index;
    let parts = day
        .attempt
        .upstream_where(task, "part", listed, |i| i / shards == d)
        .await?;
    if parts.len() as u64 != shards {
        return Err(TaskError::permanent(format!(
            "expected {shards} parts of {}, the lease lists {}",
            day.date,
            parts.len()
        )));
    }
    let changed = || {
        TaskError::permanent(format!(
            "the readings of {} changed while its parts ran (a file landed late?); run the job again",
            day.date
        ))
    };
    let mut infos = Vec::with_capacity(parts.len());
    for p in &parts {
        if !p.has(PART_JSON) {
            // A part that reused the date's features found them current;
            // that they are not now means the readings changed since.
            return Err(changed());
        }
        let info: PartInfo = day
            .attempt
            .read_json(&p.location, PART_JSON, PART_JSON_BYTES_MAX)
            .await?;
        if info.day_fingerprint != day.fingerprint {
            return Err(changed());
        }
        infos.push(info);
    }
    let cuts = infos[0].cuts;
    if infos.iter().any(|i| i.cuts != cuts) {
        return Err(changed());
    }

    let mut stats = Stats::default();
    for i in &infos {
        let s = &i.stats;
        stats.readings += s.readings;
        stats.invalid += s.invalid;
        stats.devices += s.devices;
        stats.inaccurate += s.inaccurate;
        stats.duplicates += s.duplicates;
        stats.outliers += s.outliers;
        stats.clean += s.clean;
        stats.spilled_bytes += s.spilled_bytes;
    }
    let groups_max = day.plan(stats.readings).groups_max;
    let k = day.cfg.k_anonymity;
    let mut features = Features::default();
    for cut in 0..cuts {
        day.attempt.stopped(ctx)?;
        let mut agg = Aggregator::new(day.grid, groups_max);
        for p in &parts {
            let name = partials_file(cut);
            let what = format!("part {}'s {name}", p.index);
            let bytes = read_bytes(&p.location, &name).await?;
            for sums in decode::<Partial>(&bytes, &what)? {
                agg.add_partial(&sums)
                    .map_err(|e| TaskError::permanent(e.to_string()))?;
            }
        }
        let mut speeds = Vec::new();
        for p in &parts {
            let name = speeds_file(cut);
            let what = format!("part {}'s {name}", p.index);
            let bytes = read_bytes(&p.location, &name).await?;
            for s in decode::<SpeedAt>(&bytes, &what)? {
                let g = agg.group_of((s.cell, s.window_start)).ok_or_else(|| {
                    TaskError::permanent(format!("{what}: a speed of a group no part summed"))
                })?;
                speeds.push((g, s.speed));
            }
        }
        agg.add_speeds(0, 1, &speeds)
            .map_err(|e| TaskError::permanent(e.to_string()))?;
        stats.groups += agg.groups() as u64;
        let got = agg.finish(k);
        features.rows.extend(got.rows);
        features.suppressed_groups += got.suppressed_groups;
        features.suppressed_observations += got.suppressed_observations;
        ctx.progress.set(
            (cut + 1) as f64 / cuts as f64,
            format!("merged cut {} of {cuts} of {shards} parts", cut + 1),
        );
    }
    features
        .rows
        .sort_unstable_by_key(|r| (r.window_start, r.cell));
    stats.suppressed_groups = features.suppressed_groups;
    stats.suppressed_observations = features.suppressed_observations;
    stats.rows = features.rows.len() as u64;
    day.write(task, ctx, &features, &stats).await
}
