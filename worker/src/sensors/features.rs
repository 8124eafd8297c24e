//! Features per (H3 cell, time window) from devices' clean readings.
//!
//! Devices are added one at a time, each with its readings cleaned and in
//! time order ([`super::clean`]). Every reading counts towards the group
//! of its cell and window:
//!
//! | feature | per (cell, window) |
//! |---|---|
//! | `observations` | readings |
//! | `distinct_devices` | devices with a reading |
//! | `speed_mean`, `speed_p50`, `speed_p90` | of the reported speeds; the percentiles interpolate linearly between the two nearest values (SQL's `quantile_cont`) |
//! | `dwell_seconds` | for each reading whose device's next reading is in the same cell at most [`DWELL_GAP_MAX_MS`] later, the time to it |
//! | `accuracy_mean` | of the reported accuracies |
//! | `rssi_mean_{gps,wifi,cell}` | of the signal strengths, per source |
//!
//! A group seen by fewer than k distinct devices is suppressed: its row is
//! not written at all.
//!
//! The percentiles need every speed of a group together. The aggregator
//! hands them out ([`Aggregator::take_speeds`]) so the caller can keep
//! them in memory or spill them to disk, cut by group, and give them back
//! one cut at a time ([`Aggregator::add_speeds`]). Nothing here does IO.

use h3o::{LatLng, Resolution};
use rustc_hash::FxHashMap;

use super::clean::Reading;

/// Longest time between a device's consecutive readings in one cell that
/// still counts as dwelling there: a longer gap is the device off or out
/// of range, not staying.
pub const DWELL_GAP_MAX_MS: i64 = 300_000;

/// A reading without a signal strength.
pub const RSSI_NONE: i32 = i32::MIN;

/// Sources whose signal strengths are averaged: GPS, Wi-Fi, cell.
pub const SOURCES: [&str; 3] = ["gps", "wifi", "cell"];

/// How readings map to groups: H3 cells at one resolution, and windows of
/// a fixed length aligned to the Unix epoch (so to UTC days).
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    resolution: Resolution,
    window_ms: i64,
}

impl Grid {
    /// Cells at `resolution` (0–15), windows of `window_ms` (positive).
    pub fn new(resolution: u8, window_ms: u64) -> Result<Self, String> {
        let resolution = Resolution::try_from(resolution)
            .map_err(|_| format!("H3 resolution {resolution} is not 0 to 15"))?;
        let window_ms = i64::try_from(window_ms)
            .ok()
            .filter(|w| *w > 0)
            .ok_or_else(|| format!("window of {window_ms} ms is not positive"))?;
        Ok(Self {
            resolution,
            window_ms,
        })
    }

    /// The cell of a position in degrees; `None` when it is not a finite
    /// coordinate.
    pub fn cell(&self, lat: f64, lon: f64) -> Option<u64> {
        LatLng::new(lat, lon)
            .ok()
            .map(|ll| u64::from(ll.to_cell(self.resolution)))
    }

    /// The start of the window holding UTC millisecond `ts`.
    pub fn window_start(&self, ts: i64) -> i64 {
        ts - ts.rem_euclid(self.window_ms)
    }
}

/// Units accuracies are summed in: 2^-40 m. Summed as integers, a
/// group's total does not depend on the order its readings came in, so
/// sums taken over disjoint sets of devices (shards of a day) add up to
/// exactly the sum over all of them. An accuracy (an `f32`, at most
/// 100 km after cleaning) loses nothing above 2^-40 m.
const ACCURACY_SCALE: f64 = (1u64 << 40) as f64;

fn accuracy_units(accuracy_m: f32) -> i128 {
    (f64::from(accuracy_m) * ACCURACY_SCALE).round() as i128
}

/// One group's running totals.
#[derive(Debug, Clone)]
struct Group {
    cell: u64,
    window_start: i64,
    observations: u64,
    devices: u64,
    /// The device added last; devices come one at a time, so a change
    /// means a new device.
    last_device: u32,
    /// In [`ACCURACY_SCALE`] units.
    accuracy_sum: i128,
    dwell_ms: i64,
    rssi_sum: [i64; 3],
    rssi_n: [u64; 3],
    /// Readings with a speed.
    speeds: u64,
    /// Mean, median and 90th percentile, once the speeds are back.
    speed: Option<[f64; 3]>,
}

/// Memory one group takes, its index entry included: what a budget for
/// groups is divided by.
pub fn bytes_per_group() -> usize {
    // A hash table entry is its key, value and control byte, at a load
    // factor of up to 7/8.
    std::mem::size_of::<Group>() + (std::mem::size_of::<((u64, i64), u32)>() + 1) * 8 / 7
}

/// One output row: a group seen by at least k devices.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRow {
    /// H3 cell index.
    pub cell: u64,
    /// Window start, UTC milliseconds.
    pub window_start: i64,
    /// Readings.
    pub observations: u64,
    /// Distinct devices.
    pub distinct_devices: u64,
    /// Mean reported speed, m/s; `None` when no reading had one.
    pub speed_mean: Option<f64>,
    /// Median speed.
    pub speed_p50: Option<f64>,
    /// 90th-percentile speed.
    pub speed_p90: Option<f64>,
    /// Seconds devices stayed in the cell (see [`DWELL_GAP_MAX_MS`]).
    pub dwell_seconds: f64,
    /// Mean reported accuracy, metres.
    pub accuracy_mean: f64,
    /// Mean signal strength per source ([`SOURCES`]), dBm.
    pub rssi_mean: [Option<f64>; 3],
}

/// One group's sums over some devices: what a shard of a day hands its
/// merge, which adds the shards' sums of each group ([`Aggregator::add_partial`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    /// H3 cell index.
    pub cell: u64,
    /// Window start, UTC milliseconds.
    pub window_start: i64,
    /// Readings.
    pub observations: u64,
    /// Distinct devices (the shards' devices are disjoint, so these add).
    pub devices: u64,
    /// Accuracy sum in 2^-40 m.
    pub accuracy_units: i128,
    /// Dwell, milliseconds.
    pub dwell_ms: i64,
    /// Signal strength sums per source.
    pub rssi_sum: [i64; 3],
    /// Signal strengths per source.
    pub rssi_n: [u64; 3],
    /// Readings with a speed.
    pub speeds: u64,
}

/// The features of one partition, and what k-anonymity removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    /// Rows, by window start and then cell.
    pub rows: Vec<FeatureRow>,
    /// Groups suppressed for having fewer than k devices.
    pub suppressed_groups: u64,
    /// Readings in those groups.
    pub suppressed_observations: u64,
}

/// Why a reading could not be aggregated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    /// More groups than the memory budget allows.
    #[error(
        "more than {0} (cell, window) groups in one partition; use a coarser h3Resolution or a longer window"
    )]
    TooManyGroups(usize),
    /// Speeds given back for a group that is not in this cut.
    #[error("speeds of group {0} are not in cut {1} of {2}")]
    WrongCut(u32, usize, usize),
}

/// Sums devices' readings into groups.
#[derive(Debug)]
pub struct Aggregator {
    grid: Grid,
    groups_max: usize,
    index: FxHashMap<(u64, i64), u32>,
    groups: Vec<Group>,
    /// (group, speed) not yet taken.
    speeds: Vec<(u32, f32)>,
    /// Scratch: the cells of the device being added.
    cells: Vec<u64>,
}

impl Aggregator {
    /// An aggregator over `grid` that refuses to hold more than
    /// `groups_max` groups.
    pub fn new(grid: Grid, groups_max: usize) -> Self {
        Self {
            grid,
            groups_max,
            index: FxHashMap::default(),
            groups: Vec::new(),
            speeds: Vec::new(),
            cells: Vec::new(),
        }
    }

    /// Groups so far.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// The (cell, window start) of group `g`.
    pub fn key_of(&self, g: u32) -> (u64, i64) {
        let group = &self.groups[g as usize];
        (group.cell, group.window_start)
    }

    /// The group of (cell, window start), if there is one.
    pub fn group_of(&self, key: (u64, i64)) -> Option<u32> {
        self.index.get(&key).copied()
    }

    /// Adds device `device`'s readings, clean and in time order. Every
    /// device is added once, with all its readings.
    pub fn add_device(&mut self, device: u32, readings: &[Reading]) -> Result<(), AggregateError> {
        self.cells.clear();
        // Cleaning dropped positions off the globe, so every one has a
        // cell; a non-finite one left in would get none and be skipped.
        self.cells.extend(
            readings
                .iter()
                .map(|r| self.grid.cell(r.lat, r.lon).unwrap_or(u64::MAX)),
        );
        let mut last: Option<((u64, i64), u32)> = None;
        for (i, r) in readings.iter().enumerate() {
            let cell = self.cells[i];
            if cell == u64::MAX {
                continue;
            }
            let key = (cell, self.grid.window_start(r.ts));
            // Consecutive readings mostly share a group.
            let g = match last {
                Some((k, g)) if k == key => g,
                _ => self.group(key)?,
            };
            last = Some((key, g));
            let dwell = match (readings.get(i + 1), self.cells.get(i + 1)) {
                (Some(next), Some(&next_cell))
                    if next_cell == cell && next.ts - r.ts <= DWELL_GAP_MAX_MS =>
                {
                    next.ts - r.ts
                }
                _ => 0,
            };
            let group = &mut self.groups[g as usize];
            group.observations += 1;
            if group.last_device != device || group.devices == 0 {
                group.devices += 1;
                group.last_device = device;
            }
            group.accuracy_sum += accuracy_units(r.accuracy_m);
            group.dwell_ms += dwell;
            let s = usize::from(r.source);
            if s < SOURCES.len() && r.rssi_dbm != RSSI_NONE {
                group.rssi_sum[s] += i64::from(r.rssi_dbm);
                group.rssi_n[s] += 1;
            }
            // A missing speed is NaN.
            if r.speed_mps.is_finite() {
                group.speeds += 1;
                self.speeds.push((g, r.speed_mps));
            }
        }
        Ok(())
    }

    fn group(&mut self, key: (u64, i64)) -> Result<u32, AggregateError> {
        if let Some(g) = self.index.get(&key) {
            return Ok(*g);
        }
        if self.groups.len() >= self.groups_max {
            return Err(AggregateError::TooManyGroups(self.groups_max));
        }
        let g = self.groups.len() as u32;
        self.index.insert(key, g);
        self.groups.push(Group {
            cell: key.0,
            window_start: key.1,
            observations: 0,
            devices: 0,
            last_device: 0,
            accuracy_sum: 0,
            dwell_ms: 0,
            rssi_sum: [0; 3],
            rssi_n: [0; 3],
            speeds: 0,
            speed: None,
        });
        Ok(g)
    }

    /// Each group's sums, in group order (the order the group indices of
    /// [`Aggregator::take_speeds`] refer to).
    pub fn partials(&self) -> Vec<Partial> {
        self.groups
            .iter()
            .map(|g| Partial {
                cell: g.cell,
                window_start: g.window_start,
                observations: g.observations,
                devices: g.devices,
                accuracy_units: g.accuracy_sum,
                dwell_ms: g.dwell_ms,
                rssi_sum: g.rssi_sum,
                rssi_n: g.rssi_n,
                speeds: g.speeds,
            })
            .collect()
    }

    /// Adds another aggregator's sums of one group, over devices none of
    /// which this one has seen (a shard of the day's devices); returns the
    /// group's index here, which that group's speeds are given back under.
    pub fn add_partial(&mut self, p: &Partial) -> Result<u32, AggregateError> {
        let g = self.group((p.cell, p.window_start))?;
        let group = &mut self.groups[g as usize];
        group.observations += p.observations;
        group.devices += p.devices;
        group.accuracy_sum += p.accuracy_units;
        group.dwell_ms += p.dwell_ms;
        for s in 0..SOURCES.len() {
            group.rssi_sum[s] += p.rssi_sum[s];
            group.rssi_n[s] += p.rssi_n[s];
        }
        group.speeds += p.speeds;
        Ok(g)
    }

    /// Speeds waiting to be taken.
    pub fn pending_speeds(&self) -> usize {
        self.speeds.len()
    }

    /// The (group, speed) pairs added since the last call.
    pub fn take_speeds(&mut self) -> Vec<(u32, f32)> {
        std::mem::take(&mut self.speeds)
    }

    /// Gives back every speed of the groups in cut `cut` of `cuts` (those
    /// whose index is `cut` modulo `cuts`), in any order, and computes
    /// their speed features. The mean is summed in sorted order, so it
    /// does not depend on the order readings came in.
    pub fn add_speeds(
        &mut self,
        cut: usize,
        cuts: usize,
        speeds: &[(u32, f32)],
    ) -> Result<(), AggregateError> {
        let cuts = cuts.max(1);
        let local = |g: u32| g as usize / cuts;
        let in_cut: Vec<usize> = (cut..self.groups.len()).step_by(cuts).collect();
        // Counting sort by group: offsets from each group's speed count.
        let mut start = Vec::with_capacity(in_cut.len() + 1);
        start.push(0usize);
        for g in &in_cut {
            start.push(start[start.len() - 1] + self.groups[*g].speeds as usize);
        }
        let mut next = start.clone();
        let mut values = vec![0f64; start[start.len() - 1]];
        for &(g, s) in speeds {
            let l = local(g);
            if g as usize % cuts != cut || l >= in_cut.len() || next[l] >= start[l + 1] {
                return Err(AggregateError::WrongCut(g, cut, cuts));
            }
            values[next[l]] = f64::from(s);
            next[l] += 1;
        }
        for (l, g) in in_cut.iter().enumerate() {
            let v = &mut values[start[l]..next[l]];
            if v.is_empty() {
                continue;
            }
            v.sort_unstable_by(f64::total_cmp);
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            self.groups[*g].speed = Some([mean, quantile_cont(v, 0.5), quantile_cont(v, 0.9)]);
        }
        Ok(())
    }

    /// The rows of groups seen by at least `k` devices, by window start
    /// and then cell, and what was suppressed. Call after every cut's
    /// speeds are back.
    pub fn finish(self, k: u32) -> Features {
        let mut out = Features::default();
        for g in self.groups {
            if g.devices < u64::from(k) {
                out.suppressed_groups += 1;
                out.suppressed_observations += g.observations;
                continue;
            }
            let n = g.observations as f64;
            let rssi_mean = std::array::from_fn(|s| {
                (g.rssi_n[s] > 0).then(|| g.rssi_sum[s] as f64 / g.rssi_n[s] as f64)
            });
            out.rows.push(FeatureRow {
                cell: g.cell,
                window_start: g.window_start,
                observations: g.observations,
                distinct_devices: g.devices,
                speed_mean: g.speed.map(|s| s[0]),
                speed_p50: g.speed.map(|s| s[1]),
                speed_p90: g.speed.map(|s| s[2]),
                dwell_seconds: g.dwell_ms as f64 / 1000.0,
                accuracy_mean: g.accuracy_sum as f64 / ACCURACY_SCALE / n,
                rssi_mean,
            });
        }
        out.rows.sort_unstable_by_key(|r| (r.window_start, r.cell));
        out
    }
}

/// The `q` quantile of sorted, non-empty `v`, interpolating linearly
/// between the two nearest ranks, as SQL's `quantile_cont`.
pub fn quantile_cont(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor();
    let (a, b) = (v[lo as usize], v[pos.ceil() as usize]);
    a + (b - a) * (pos - lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn reading(ts: i64, lat: f64, lon: f64, speed: f32, accuracy: f32) -> Reading {
        Reading {
            ts,
            lat,
            lon,
            accuracy_m: accuracy,
            speed_mps: speed,
            source: 0,
            rssi_dbm: RSSI_NONE,
        }
    }

    /// The Brandenburg Gate's cell at resolution 8 (as the reference H3
    /// library gives it), and a point 2 km east, in another cell.
    const GATE: (f64, f64) = (52.516262, 13.377704);
    const EAST: (f64, f64) = (52.516262, 13.407);

    fn aggregate(devices: &[Vec<Reading>], k: u32, cuts: usize) -> Features {
        let mut a = Aggregator::new(Grid::new(8, HOUR as u64).unwrap(), 1000);
        for (d, rs) in devices.iter().enumerate() {
            a.add_device(d as u32, rs).unwrap();
        }
        let speeds = a.take_speeds();
        for cut in 0..cuts {
            let mine: Vec<(u32, f32)> = speeds
                .iter()
                .copied()
                .filter(|(g, _)| *g as usize % cuts == cut)
                .collect();
            a.add_speeds(cut, cuts, &mine).unwrap();
        }
        a.finish(k)
    }

    #[test]
    fn cells_match_the_reference_library() {
        let grid = Grid::new(8, HOUR as u64).unwrap();
        assert_eq!(grid.cell(GATE.0, GATE.1), Some(0x881f1d4887fffff));
        assert_eq!(grid.cell(f64::NAN, 0.0), None);
        assert_eq!(grid.window_start(HOUR + 5), HOUR);
        assert_eq!(grid.window_start(-1), -HOUR);
    }

    #[test]
    fn hand_made_readings_give_known_features() {
        let s = 1000;
        let mut a0 = reading(0, GATE.0, GATE.1, 1.0, 10.0);
        a0.rssi_dbm = -60;
        let mut a1 = reading(60 * s, GATE.0, GATE.1, 2.0, 20.0);
        a1.rssi_dbm = -70;
        let mut a2 = reading(120 * s, GATE.0, GATE.1, 3.0, 30.0);
        a2.source = 1;
        a2.rssi_dbm = -50;
        // Then away: its last reading in the cell has no next there.
        let a3 = reading(180 * s, EAST.0, EAST.1, f32::NAN, 5.0);
        // Two readings 370 s apart: too long a gap to count as dwelling.
        let b0 = reading(30 * s, GATE.0, GATE.1, 4.0, 40.0);
        let b1 = reading(400 * s, GATE.0, GATE.1, 5.0, 50.0);
        let f = aggregate(&[vec![a0, a1, a2, a3], vec![b0, b1]], 1, 1);
        assert_eq!(f.rows.len(), 2);
        let gate = &f.rows[0];
        assert_eq!(gate.cell, 0x881f1d4887fffff);
        assert_eq!(gate.window_start, 0);
        assert_eq!(gate.observations, 5);
        assert_eq!(gate.distinct_devices, 2);
        assert_eq!(gate.speed_mean, Some(3.0));
        assert_eq!(gate.speed_p50, Some(3.0));
        assert!((gate.speed_p90.unwrap() - 4.6).abs() < 1e-12);
        assert_eq!(gate.dwell_seconds, 120.0);
        assert_eq!(gate.accuracy_mean, 30.0);
        assert_eq!(gate.rssi_mean, [Some(-65.0), Some(-50.0), None]);
        let east = &f.rows[1];
        assert_eq!((east.observations, east.distinct_devices), (1, 1));
        // No reading there reported a speed.
        assert_eq!((east.speed_mean, east.speed_p50), (None, None));
        assert_eq!(east.rssi_mean, [None, None, None]);
    }

    #[test]
    fn dwell_is_credited_to_the_window_it_starts_in() {
        let first = reading(HOUR - 500, GATE.0, GATE.1, 1.0, 1.0);
        let second = reading(HOUR + 1500, GATE.0, GATE.1, 1.0, 1.0);
        let f = aggregate(&[vec![first, second]], 1, 1);
        let by_window: Vec<(i64, f64)> = f
            .rows
            .iter()
            .map(|r| (r.window_start, r.dwell_seconds))
            .collect();
        assert_eq!(by_window, [(0, 2.0), (HOUR, 0.0)]);
    }

    #[test]
    fn groups_with_fewer_than_k_devices_are_suppressed() {
        let one = |t: i64, at: (f64, f64)| vec![reading(t, at.0, at.1, 1.0, 1.0)];
        // Three devices at the gate, one of them twice; one device east.
        let mut twice = one(0, GATE);
        twice.push(reading(10, GATE.0, GATE.1, 1.0, 1.0));
        let devices = [twice, one(5, GATE), one(7, GATE), one(9, EAST)];
        let f = aggregate(&devices, 3, 1);
        assert_eq!(f.rows.len(), 1);
        assert_eq!(f.rows[0].distinct_devices, 3);
        assert_eq!(f.rows[0].observations, 4);
        assert_eq!((f.suppressed_groups, f.suppressed_observations), (1, 1));
        assert!(aggregate(&devices, 4, 1).rows.is_empty());
    }

    #[test]
    fn speeds_given_back_in_cuts_give_the_same_features() {
        let devices: Vec<Vec<Reading>> = (0..6)
            .map(|d| {
                (0..50)
                    .map(|i| {
                        let at = if (i + d) % 3 == 0 { EAST } else { GATE };
                        reading(i * 700_000 + d, at.0, at.1, (i * 7 % 11) as f32 * 0.7, 3.0)
                    })
                    .collect()
            })
            .collect();
        let whole = aggregate(&devices, 2, 1);
        assert!(whole.rows.len() > 10);
        assert_eq!(aggregate(&devices, 2, 3), whole);
        assert_eq!(aggregate(&devices, 2, 7), whole);
    }

    #[test]
    fn a_speed_in_the_wrong_cut_is_refused_and_groups_are_bounded() {
        let mut a = Aggregator::new(Grid::new(8, HOUR as u64).unwrap(), 1);
        a.add_device(0, &[reading(0, GATE.0, GATE.1, 1.0, 1.0)])
            .unwrap();
        assert_eq!(
            a.add_speeds(1, 2, &[(0, 1.0)]),
            Err(AggregateError::WrongCut(0, 1, 2))
        );
        assert_eq!(
            a.add_device(1, &[reading(0, EAST.0, EAST.1, 1.0, 1.0)]),
            Err(AggregateError::TooManyGroups(1))
        );
    }

    #[test]
    fn shards_of_the_devices_merge_to_the_whole() {
        let devices: Vec<Vec<Reading>> = (0..9)
            .map(|d| {
                (0..40)
                    .map(|i| {
                        let at = if (i * 3 + d) % 4 == 0 { EAST } else { GATE };
                        let mut r = reading(
                            i * 400_000 + d,
                            at.0,
                            at.1,
                            (i * 5 % 13) as f32 * 0.3,
                            0.1 + (i % 7) as f32 * 1.7,
                        );
                        r.rssi_dbm = -40 - (i % 30) as i32;
                        r.source = (i % 3) as u8;
                        r
                    })
                    .collect()
            })
            .collect();
        let whole = aggregate(&devices, 3, 1);
        assert!(whole.rows.len() > 5);
        for shards in [2usize, 3, 9] {
            let mut merged = Aggregator::new(Grid::new(8, HOUR as u64).unwrap(), 1000);
            let mut speeds = Vec::new();
            for s in 0..shards {
                let mut part = Aggregator::new(Grid::new(8, HOUR as u64).unwrap(), 1000);
                for (d, rs) in devices.iter().enumerate().filter(|(d, _)| d % shards == s) {
                    part.add_device(d as u32, rs).unwrap();
                }
                let at: Vec<u32> = part
                    .partials()
                    .iter()
                    .map(|p| merged.add_partial(p).unwrap())
                    .collect();
                speeds.extend(
                    part.take_speeds()
                        .into_iter()
                        .map(|(g, v)| (at[g as usize], v)),
                );
            }
            merged.add_speeds(0, 1, &speeds).unwrap();
            // Exactly: integer sums, and speeds sorted before they are summed.
            assert_eq!(merged.finish(3), whole, "{shards} shards");
        }
    }

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_cont(&v, 0.5), 2.5);
        assert!((quantile_cont(&v, 0.9) - 3.7).abs() < 1e-12);
        assert_eq!(quantile_cont(&[7.0], 0.9), 7.0);
    }
}
