//! A `part` task (`shards: N`): one shard of a date's devices, those whose
//! raw id hashes to it ([`super::compute::device_shard`]), cleaned and summed per
//! (cell, window) as the whole-date task does them, then handed to the
//! date's `merge` cut by group ([`cut_of`]), so that the merge takes one
//! cut of every part at a time in bounded memory:
//!
//! ```text
//! partials-CCCCC.bin   each group's sums over this shard's devices
//! speeds-CCCCC.bin     each of their speeds, with its group's (cell, window)
//! part.json            the date's fingerprint, the cut count, this shard's counts
//! ```
//!
//! Every part reads the whole date and keeps its devices' rows; a device's
//! readings are all in one part, so its cleaning (which needs them in time
//! order) and the distinct-device counts are the same as in one task.

use drover_jobspecs::kinds::sensor::parse_part_key;
use drover_proto::v1::{LeasedTask, OutputManifest};
use serde::{Deserialize, Serialize};

use super::compute::{Aggregated, Ingest, Stats};
use super::day::Day;
use crate::dataset::manifest::DatasetManifest;
use crate::executors::{AttemptContext, TaskError};
use crate::fixed::{Fixed, u32_at, u64_at};
use crate::sensors::features::Partial;

/// What a part tells its merge.
pub const PART_JSON: &str = "part.json";

/// The sums of cut `cut`.
pub fn partials_file(cut: u64) -> String {
    format!("partials-{cut:05}.bin")
}

/// The speeds of cut `cut`.
pub fn speeds_file(cut: u64) -> String {
    format!("speeds-{cut:05}.bin")
}

/// The cut of `cuts` a (cell, window) group falls in: XXH3 of the two,
/// the same in every part and the merge.
pub fn cut_of(key: (u64, i64), cuts: u64) -> u64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&key.0.to_le_bytes());
    bytes[8..].copy_from_slice(&key.1.to_le_bytes());
    twox_hash::XxHash3_64::oneshot(&bytes) % cuts.max(1)
}

/// A part's `part.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartInfo {
    /// The date's fingerprint when the part read it: every part and the
    /// merge must have seen the same files.
    pub day_fingerprint: String,
    /// This part's shard.
    pub shard: u32,
    /// Shards of the date.
    pub shards: u32,
    /// Cuts the groups are in.
    pub cuts: u64,
    /// This shard's counts.
    pub stats: Stats,
}

/// One speed and its group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeedAt {
    /// The group's cell.
    pub cell: u64,
    /// The group's window start.
    pub window_start: i64,
    /// Metres per second.
    pub speed: f32,
}

impl Fixed for SpeedAt {
    const SIZE: usize = 20;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.cell.to_le_bytes());
        out.extend_from_slice(&self.window_start.to_le_bytes());
        out.extend_from_slice(&self.speed.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        Self {
            cell: u64_at(b, 0),
            window_start: u64_at(b, 8) as i64,
            speed: f32::from_bits(u32_at(b, 16)),
        }
    }
}

impl Fixed for Partial {
    const SIZE: usize = 112;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.cell.to_le_bytes());
        out.extend_from_slice(&self.window_start.to_le_bytes());
        out.extend_from_slice(&self.observations.to_le_bytes());
        out.extend_from_slice(&self.devices.to_le_bytes());
        out.extend_from_slice(&self.accuracy_units.to_le_bytes());
        out.extend_from_slice(&self.dwell_ms.to_le_bytes());
        for v in self.rssi_sum {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in self.rssi_n {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.speeds.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        let mut units = [0u8; 16];
        units.copy_from_slice(&b[32..48]);
        Self {
            cell: u64_at(b, 0),
            window_start: u64_at(b, 8) as i64,
            observations: u64_at(b, 16),
            devices: u64_at(b, 24),
            accuracy_units: i128::from_le_bytes(units),
            dwell_ms: u64_at(b, 48) as i64,
            rssi_sum: std::array::from_fn(|s| u64_at(b, 56 + 8 * s) as i64),
            rssi_n: std::array::from_fn(|s| u64_at(b, 80 + 8 * s)),
            speeds: u64_at(b, 104),
        }
    }
}

/// Records of `bytes` (a whole number of them), or why not.
pub fn decode<T: Fixed>(bytes: &[u8], what: &str) -> Result<Vec<T>, TaskError> {
    if !bytes.len().is_multiple_of(T::SIZE) {
        return Err(TaskError::permanent(format!(
            "{what}: {} bytes is not a whole number of {}-byte records",
            bytes.len(),
            T::SIZE
        )));
    }
    Ok(bytes.chunks_exact(T::SIZE).map(T::get).collect())
}

/// Runs one part.
pub async fn run(
    task: &LeasedTask,
    ctx: &AttemptContext,
    budget: u64,
) -> Result<OutputManifest, TaskError> {
    let (date, shard) = parse_part_key(&task.partition_key).ok_or_else(|| {
        TaskError::permanent(format!(
            "partition `{}` is not a part's DATE/SHARD",
            task.partition_key
        ))
    })?;
    let day = Day::open(task, date, budget).await?;
    let shards = day.cfg.shards.max(1);
    if shard >= shards {
        return Err(TaskError::permanent(format!(
            "partition `{}` names shard {shard} of {shards}",
            task.partition_key
        )));
    }
    if let Some(reused) = day.reused(ctx).await? {
        return Ok(reused);
    }
    let rows = day.rows().await?;
    // The merge takes the groups a cut at a time: as many cuts as the
    // whole date's speeds need to fit the budget.
    let cuts = day.plan(rows).speed_cuts as u64;
    // This shard's share of the readings, with room for devices that
    // report more than most.
    let mine = rows.div_ceil(u64::from(shards)) / 4 * 5 + 1024;
    let plan = day.plan(mine);
    tracing::info!(date = %day.date, shard, shards, rows, ?plan, cuts, "computing a part");
    let ingest = Ingest::new(day.pseudonyms()?, plan, mine, &ctx.scratch_dir)?
        .only_shard(u64::from(shard), u64::from(shards));
    let (grid, thresholds) = (day.grid, day.thresholds());
    let scratch = ctx.scratch_dir.clone();
    let (cancel, progress) = (ctx.cancel.clone(), ctx.progress.clone());
    let aggregated = day
        .read(ctx, ingest, move |ingest| {
            ingest.aggregate(
                grid,
                &thresholds,
                cuts as usize,
                move |agg, g| cut_of(agg.key_of(g), cuts) as usize,
                &scratch,
                &cancel,
                &progress,
            )
        })
        .await?;
    let Aggregated {
        mut agg,
        mut speeds,
        stats: mut counts,
        ..
    } = aggregated;
    counts.groups = agg.groups() as u64;

    let partials = agg.partials();
    let cut_of_group: Vec<u64> = partials
        .iter()
        .map(|p| cut_of((p.cell, p.window_start), cuts))
        .collect();
    let io = |e: std::io::Error| {
        TaskError::retryable(format!("scratch space {}: {e}", ctx.scratch_dir.display()))
    };
    let mut files = Vec::new();
    for cut in 0..cuts {
        day.attempt.stopped(ctx)?;
        let mut sums = Vec::new();
        for (p, c) in partials.iter().zip(&cut_of_group) {
            if *c == cut {
                p.put(&mut sums);
            }
        }
        let taken = if cuts == 1 {
            agg.take_speeds()
        } else {
            speeds.take(cut as usize).map_err(io)?
        };
        let mut out = Vec::with_capacity(taken.len() * SpeedAt::SIZE);
        for (g, speed) in &taken {
            let (cell, window_start) = agg.key_of(*g);
            SpeedAt {
                cell,
                window_start,
                speed: *speed,
            }
            .put(&mut out);
        }
        let groups = (sums.len() / Partial::SIZE) as u64;
        files.push(
            day.attempt
                .write_bytes(&partials_file(cut), sums, groups)
                .await?,
        );
        files.push(
            day.attempt
                .write_bytes(&speeds_file(cut), out, taken.len() as u64)
                .await?,
        );
    }
    counts.spilled_bytes += speeds.spilled_bytes();
    let info = PartInfo {
        day_fingerprint: day.fingerprint.clone(),
        shard,
        shards,
        cuts,
        stats: counts,
    };
    files.push(day.attempt.write_json(PART_JSON, &info, 0).await?);
    ctx.progress.set(
        1.0,
        format!(
            "shard {shard} of {shards}: {} readings, {} devices, {} groups",
            info.stats.readings, info.stats.devices, info.stats.groups
        ),
    );
    let fingerprint = day
        .attempt
        .fingerprint(task, std::slice::from_ref(&day.fingerprint));
    let m = DatasetManifest::new(files, Vec::new(), &day.attempt.writer(task, fingerprint));
    day.attempt.commit(task, m).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_the_disk_bit_for_bit() {
        let p = Partial {
            cell: 0x881f1d4887fffff,
            window_start: -3_600_000,
            observations: 7,
            devices: 3,
            accuracy_units: (1i128 << 90) + 5,
            dwell_ms: -1,
            rssi_sum: [-60, i64::MIN, 0],
            rssi_n: [1, 2, u64::MAX],
            speeds: 4,
        };
        let mut b = Vec::new();
        p.put(&mut b);
        assert_eq!(b.len(), Partial::SIZE);
        assert_eq!(Partial::get(&b), p);
        let s = SpeedAt {
            cell: 1,
            window_start: -2,
            speed: 3.5,
        };
        let mut b = Vec::new();
        s.put(&mut b);
        assert_eq!(decode::<SpeedAt>(&b, "x").unwrap(), [s]);
        assert!(decode::<SpeedAt>(&b[1..], "x").is_err());
        // Every part and the merge cut alike, and every cut gets some.
        let mut seen = [0u32; 4];
        for cell in 0..400u64 {
            seen[cut_of((cell, 0), 4) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 60), "{seen:?}");
    }
}
