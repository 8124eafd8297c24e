//! The CPU side of one date, run on a blocking thread while the async side
//! decodes Parquet and hands batches over:
//!
//! 1. **ingest**: each row's device id becomes its HMAC pseudonym (only
//!    the previous row's raw id is held, and no raw id is written, scratch
//!    included) and a device number in first-seen order; the reading goes to its device's bucket,
//!    chosen by pseudonym.
//! 2. **per device**, bucket by bucket: the bucket's readings grouped by
//!    device (a counting sort), each device's cleaned
//!    ([`crate::sensors::clean`]) and added to the (cell, window) groups
//!    ([`crate::sensors::features`]).
//! 3. **speeds**: the percentiles, one cut of groups at a time.
//!
//! With the budget's worth of rows, there is one bucket and one cut, both
//! in memory; beyond it, buckets and cuts are spilled to scratch
//! ([`super::spill`]), so memory stays near the budget whatever the size
//! of the day.

use std::path::Path;

use arrow_array::RecordBatch;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::input::Columns;
use super::spill::Parts;
use crate::annotation::pseudonym::Pseudonymiser;
use crate::executors::{Cancel, Progress, TaskError};
use crate::fixed::{Fixed, u32_at, u64_at};
use crate::sensors::clean::{self, Dropped, Reading, Thresholds};
use crate::sensors::features::{Aggregator, Features, Grid, bytes_per_group};

/// Speeds handed out by the aggregator at a time when they are spilled.
const SPEEDS_BATCH: usize = 1 << 16;

/// Devices between two looks at the cancellation flag.
const DEVICES_PER_CHECK: usize = 256;

/// One reading and its device's number.
#[derive(Debug, Clone, Copy)]
pub struct DevRow {
    device: u32,
    reading: Reading,
}

impl Fixed for DevRow {
    const SIZE: usize = 41;
    fn put(&self, out: &mut Vec<u8>) {
        let r = &self.reading;
        out.extend_from_slice(&self.device.to_le_bytes());
        out.extend_from_slice(&r.ts.to_le_bytes());
        out.extend_from_slice(&r.lat.to_le_bytes());
        out.extend_from_slice(&r.lon.to_le_bytes());
        out.extend_from_slice(&r.accuracy_m.to_le_bytes());
        out.extend_from_slice(&r.speed_mps.to_le_bytes());
        out.push(r.source);
        out.extend_from_slice(&r.rssi_dbm.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        Self {
            device: u32_at(b, 0),
            reading: Reading {
                ts: u64_at(b, 4) as i64,
                lat: f64::from_bits(u64_at(b, 12)),
                lon: f64::from_bits(u64_at(b, 20)),
                accuracy_m: f32::from_bits(u32_at(b, 28)),
                speed_mps: f32::from_bits(u32_at(b, 32)),
                source: b[36],
                rssi_dbm: u32_at(b, 37) as i32,
            },
        }
    }
}

impl Fixed for (u32, f32) {
    const SIZE: usize = 8;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
        out.extend_from_slice(&self.1.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        (u32_at(b, 0), f32::from_bits(u32_at(b, 4)))
    }
}

/// How a date is cut to fit the memory budget. One bucket's readings (with
/// the index that groups them by device) and one cut of speeds are in
/// memory together, beside the groups: five eighths of the budget for the
/// readings, one eighth for the speeds, a quarter for the groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Device buckets.
    pub buckets: usize,
    /// Cuts of the speeds.
    pub speed_cuts: usize,
    /// Groups allowed.
    pub groups_max: usize,
}

impl Plan {
    /// The plan for `rows` readings in `budget` bytes.
    pub fn new(rows: u64, budget: u64) -> Self {
        let budget = budget.max(1 << 20);
        let per_row = (std::mem::size_of::<DevRow>() + std::mem::size_of::<u32>()) as u64;
        let per_speed = std::mem::size_of::<(u32, f32)>() as u64;
        let parts = |bytes: u64, room: u64| bytes.div_ceil(room).max(1) as usize;
        Self {
            buckets: parts(rows * per_row, budget / 8 * 5),
            speed_cuts: parts(rows * per_speed, budget / 8),
            groups_max: (budget / 4 / bytes_per_group() as u64) as usize,
        }
    }
}

/// What a date's run read, dropped and wrote; `stats.json` beside the
/// features.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Rows read.
    pub readings: u64,
    /// Rows without a device id or timestamp.
    pub invalid: u64,
    /// Distinct devices.
    pub devices: u64,
    /// Off the globe or less accurate than `maxAccuracyM`.
    pub inaccurate: u64,
    /// Repeats of a device's reading at one timestamp.
    pub duplicates: u64,
    /// Implausible jumps.
    pub outliers: u64,
    /// Readings aggregated.
    pub clean: u64,
    /// (cell, window) groups.
    pub groups: u64,
    /// Groups suppressed for fewer than `kAnonymity` devices.
    pub suppressed_groups: u64,
    /// Readings in them.
    pub suppressed_observations: u64,
    /// Feature rows written.
    pub rows: u64,
    /// How the date was cut.
    pub plan: Option<Plan>,
    /// Bytes spilled to scratch.
    pub spilled_bytes: u64,
}

/// Readings taken in, by device bucket.
pub struct Ingest {
    pseudonyms: Pseudonymiser,
    plan: Plan,
    devices: FxHashMap<u128, u32>,
    bucket_of: Vec<u32>,
    rows: Parts<DevRow>,
    columns: Columns,
    /// The previous row's raw id and device: rows mostly come a device at
    /// a time, and an HMAC per row would cost more than the rest of the
    /// reading.
    last: Option<(Vec<u8>, u32)>,
    expected_rows: u64,
    /// Only the devices of this shard, of so many: (shard, shards).
    shard: Option<(u64, u64)>,
    stats: Stats,
}

/// The shard of `shards` a device's raw id falls in: XXH3 of the id,
/// fixed forever, so every part task of a date agrees without a key.
pub fn device_shard(id: &[u8], shards: u64) -> u64 {
    twox_hash::XxHash3_64::oneshot(id) % shards.max(1)
}

/// What aggregating a day's devices leaves: the groups, the speeds not
/// yet given back (spilled by cut when there is more than one), and what
/// cleaning dropped.
pub struct Aggregated {
    /// The groups.
    pub agg: Aggregator,
    /// Speeds by cut, when spilled.
    pub speeds: Parts<(u32, f32)>,
    /// Cuts of the speeds.
    pub cuts: usize,
    /// The run's counts so far.
    pub stats: Stats,
}

impl Ingest {
    /// Ready for `expected_rows` readings cut by `plan`, spilling into
    /// `scratch`.
    pub fn new(
        pseudonyms: Pseudonymiser,
        plan: Plan,
        expected_rows: u64,
        scratch: &Path,
    ) -> Result<Self, TaskError> {
        let capacity = if plan.buckets == 1 {
            expected_rows as usize
        } else {
            0
        };
        let rows = Parts::new(plan.buckets, scratch, "readings", capacity)
            .map_err(|e| scratch_error(scratch, e))?;
        Ok(Self {
            pseudonyms,
            plan,
            devices: FxHashMap::default(),
            bucket_of: Vec::new(),
            rows,
            columns: Columns::default(),
            last: None,
            expected_rows,
            shard: None,
            stats: Stats {
                plan: Some(plan),
                ..Stats::default()
            },
        })
    }

    /// Takes in only the readings of devices in shard `shard` of
    /// `shards` ([`device_shard`]); rows without a device id count in
    /// shard 0's.
    pub fn only_shard(mut self, shard: u64, shards: u64) -> Self {
        self.shard = Some((shard, shards));
        self
    }

    /// Takes in one batch of [`super::input::COLUMNS`].
    pub fn add(&mut self, batch: &RecordBatch, scratch: &Path) -> Result<(), TaskError> {
        let batch = &super::input::plain_strings(batch)?;
        let ids = self.columns.decode(batch)?;
        let c = &self.columns;
        for i in 0..batch.num_rows() {
            let id = ids.get(i);
            if let Some((shard, shards)) = self.shard {
                let mine = match id {
                    Some(id) => device_shard(id, shards) == shard,
                    None => shard == 0,
                };
                if !mine {
                    continue;
                }
            }
            self.stats.readings += 1;
            let (Some(id), Some(ts)) = (id, c.ts[i]) else {
                self.stats.invalid += 1;
                continue;
            };
            let device = match &self.last {
                Some((last, d)) if last.as_slice() == id => *d,
                _ => {
                    let pseudonym = self.pseudonyms.digest128(id);
                    let next = self.devices.len();
                    let d = *self.devices.entry(pseudonym).or_insert_with(|| {
                        self.bucket_of
                            .push((pseudonym % self.plan.buckets as u128) as u32);
                        next as u32
                    });
                    if self.devices.len() > u32::MAX as usize - 1 {
                        return Err(TaskError::permanent("more than 2^32 devices in one date"));
                    }
                    let last = self.last.get_or_insert_with(|| (Vec::new(), 0));
                    last.0.clear();
                    last.0.extend_from_slice(id);
                    last.1 = d;
                    d
                }
            };
            let row = DevRow {
                device,
                reading: Reading {
                    ts,
                    lat: c.lat[i],
                    lon: c.lon[i],
                    accuracy_m: c.accuracy_m[i],
                    speed_mps: c.speed_mps[i],
                    source: c.source[i],
                    rssi_dbm: c.rssi_dbm[i],
                },
            };
            self.rows
                .push(self.bucket_of[device as usize] as usize, row)
                .map_err(|e| scratch_error(scratch, e))?;
        }
        Ok(())
    }

    /// Fraction of the expected rows taken in.
    pub fn fraction(&self) -> f64 {
        self.stats.readings as f64 / self.expected_rows.max(1) as f64
    }

    /// Cleans every device and aggregates, suppressing groups of fewer
    /// than `k` devices.
    pub fn finish(
        self,
        grid: Grid,
        thresholds: &Thresholds,
        k: u32,
        scratch: &Path,
        cancel: &Cancel,
        progress: &Progress,
    ) -> Result<(Features, Stats), TaskError> {
        let io = |e| scratch_error(scratch, e);
        let cuts = self.plan.speed_cuts;
        let Aggregated {
            mut agg,
            mut speeds,
            cuts,
            mut stats,
        } = self.aggregate(
            grid,
            thresholds,
            cuts,
            |_, g| g as usize % cuts,
            scratch,
            cancel,
            progress,
        )?;
        for cut in 0..cuts {
            stopped(cancel)?;
            let cut_speeds = if cuts == 1 {
                agg.take_speeds()
            } else {
                speeds.take(cut).map_err(io)?
            };
            agg.add_speeds(cut, cuts, &cut_speeds)
                .map_err(|e| TaskError::permanent(e.to_string()))?;
        }
        stats.groups = agg.groups() as u64;
        let features = agg.finish(k);
        stats.suppressed_groups = features.suppressed_groups;
        stats.suppressed_observations = features.suppressed_observations;
        stats.rows = features.rows.len() as u64;
        stats.spilled_bytes += speeds.spilled_bytes();
        Ok((features, stats))
    }

    /// Cleans every device and adds it to the groups; the speeds are
    /// spilled into `cuts` parts by `cut_of(aggregator, group)` when there
    /// is more than one, else left in the aggregator.
    #[allow(clippy::too_many_arguments)] // each is one thing the step needs
    pub fn aggregate(
        mut self,
        grid: Grid,
        thresholds: &Thresholds,
        cuts: usize,
        cut_of: impl Fn(&Aggregator, u32) -> usize,
        scratch: &Path,
        cancel: &Cancel,
        progress: &Progress,
    ) -> Result<Aggregated, TaskError> {
        let io = |e| scratch_error(scratch, e);
        let devices = self.devices.len();
        self.stats.devices = devices as u64;
        // The pseudonyms are done with.
        drop(std::mem::take(&mut self.devices));
        let mut agg = Aggregator::new(grid, self.plan.groups_max);
        let mut speeds: Parts<(u32, f32)> = Parts::new(cuts, scratch, "speeds", 0).map_err(io)?;
        let mut dropped = Dropped::default();
        let mut start = vec![0usize; devices + 1];
        let mut readings: Vec<Reading> = Vec::new();
        let mut done = 0usize;
        for bucket in 0..self.rows.count() {
            stopped(cancel)?;
            let rows = self.rows.take(bucket).map_err(io)?;
            // Counting sort by device: `order` lists each device's rows
            // in the order they came.
            start.fill(0);
            for r in &rows {
                start[r.device as usize + 1] += 1;
            }
            for d in 0..devices {
                start[d + 1] += start[d];
            }
            let mut next = start.clone();
            let mut order = vec![0u32; rows.len()];
            for (i, r) in rows.iter().enumerate() {
                let d = r.device as usize;
                order[next[d]] = i as u32;
                next[d] += 1;
            }
            for d in 0..devices {
                let span = start[d]..start[d + 1];
                if span.is_empty() {
                    continue;
                }
                readings.clear();
                readings.extend(order[span].iter().map(|&i| rows[i as usize].reading));
                clean::clean(&mut readings, thresholds, &mut dropped);
                self.stats.clean += readings.len() as u64;
                agg.add_device(d as u32, &readings)
                    .map_err(|e| TaskError::permanent(e.to_string()))?;
                done += 1;
                if done.is_multiple_of(DEVICES_PER_CHECK) {
                    stopped(cancel)?;
                    progress.set(
                        0.5 + 0.4 * done as f64 / devices.max(1) as f64,
                        format!("{done} of {devices} devices cleaned and aggregated"),
                    );
                }
                if cuts > 1 && agg.pending_speeds() >= SPEEDS_BATCH {
                    for s in agg.take_speeds() {
                        speeds.push(cut_of(&agg, s.0), s).map_err(io)?;
                    }
                }
            }
        }
        if cuts > 1 {
            for s in agg.take_speeds() {
                speeds.push(cut_of(&agg, s.0), s).map_err(io)?;
            }
        }
        self.stats.inaccurate = dropped.inaccurate;
        self.stats.duplicates = dropped.duplicates;
        self.stats.outliers = dropped.outliers;
        self.stats.spilled_bytes = self.rows.spilled_bytes();
        Ok(Aggregated {
            agg,
            speeds,
            cuts,
            stats: self.stats,
        })
    }
}

fn stopped(cancel: &Cancel) -> Result<(), TaskError> {
    if *cancel.borrow() {
        Err(TaskError::retryable("stopped"))
    } else {
        Ok(())
    }
}

/// A failure of the scratch disk; a retry elsewhere may have room.
fn scratch_error(scratch: &Path, e: std::io::Error) -> TaskError {
    TaskError::retryable(format!("scratch space {}: {e}", scratch.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_survives_the_disk_bit_for_bit() {
        let row = DevRow {
            device: 7,
            reading: Reading {
                ts: -12_345,
                lat: 52.516262,
                lon: -13.377704,
                accuracy_m: f32::NAN,
                speed_mps: 3.25,
                source: 2,
                rssi_dbm: i32::MIN,
            },
        };
        let mut b = Vec::new();
        row.put(&mut b);
        assert_eq!(b.len(), DevRow::SIZE);
        let back = DevRow::get(&b);
        assert_eq!(back.device, 7);
        assert_eq!(back.reading.ts, row.reading.ts);
        assert_eq!(back.reading.lat.to_bits(), row.reading.lat.to_bits());
        assert_eq!(back.reading.lon.to_bits(), row.reading.lon.to_bits());
        assert!(back.reading.accuracy_m.is_nan());
        assert_eq!(
            (
                back.reading.speed_mps,
                back.reading.source,
                back.reading.rssi_dbm
            ),
            (3.25, 2, i32::MIN)
        );
    }

    #[test]
    fn the_plan_fits_the_budget() {
        // A day of 10 million readings fits a gigabyte whole.
        let day = Plan::new(10_500_000, 1 << 30);
        assert_eq!((day.buckets, day.speed_cuts), (1, 1));
        let big = Plan::new(100_000_000, 1 << 30);
        assert_eq!((big.buckets, big.speed_cuts), (8, 6), "{big:?}");
        assert!(big.groups_max > 1_000_000);
        // At a bucket of each per part, the parts fit the budget.
        let per_row = (std::mem::size_of::<DevRow>() + 4) as u64;
        let bucket = 100_000_000 / big.buckets as u64 * per_row;
        let cut = 100_000_000 / big.speed_cuts as u64 * 8;
        let groups = big.groups_max as u64 * bytes_per_group() as u64;
        assert!(bucket + cut + groups <= 1 << 30);
    }
}
