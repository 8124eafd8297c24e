//! Crowdsourced device readings: phones moving through a city along a road
//! network, reporting where they are every few seconds while active.
//!
//! The city is a square grid of streets (`GRID` × `GRID` intersections
//! `BLOCK_M` apart, their corners jittered) around a fixed centre. Each
//! device has a home and a work intersection and is a driver or a walker.
//! Each day it wakes at home, travels to work along the streets, stays,
//! travels home and stays until it sleeps; some days it makes an evening
//! trip too. While it moves it reports every few seconds; while it stays,
//! every half minute or so. At night it is off.
//!
//! A reading: `device_id`, `ts` (UTC milliseconds), `lat`, `lon`,
//! `accuracy_m`, `speed_mps`, `heading` (degrees), `source` (`gps`, `wifi`
//! or `cell`, each with its own accuracy and signal range) and `rssi_dbm`.
//! The position is the true one plus noise of the stated accuracy. Faults,
//! as real feeds have them:
//!
//! - teleports: a reading tens of kilometres off (`TELEPORT_RATE`);
//! - bad accuracy: cell fixes of up to 1.5 km;
//! - duplicates: a reading sent twice (`DUPLICATE_RATE`);
//! - late files: one day in four, some devices' readings arrive in a
//!   separate `late-NNNNN.parquet` file of the day's partition.
//!
//! Layout below `--out`:
//!
//! ```text
//! _manifest.json                            every file
//! date=YYYY-MM-DD/part-NNNNN.parquet        a day's readings, device by device
//! date=YYYY-MM-DD/late-NNNNN.parquet        some devices' readings, late
//! ```

use std::sync::Arc;

use arrow_array::builder::{
    Float32Builder, Float64Builder, Int32Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::NaiveDate;
use serde::Serialize;

use super::rng::Rng;
use crate::dataset::DatasetError;
use crate::dataset::location::Location;
use crate::dataset::manifest::{self, DatasetManifest, ManifestFile};
use crate::dataset::parquet::{ParquetSink, ROW_GROUP_ROWS, manifest_schema};

/// The city's centre (latitude, longitude).
pub const CENTRE: (f64, f64) = (52.52, 13.405);
/// Intersections per side of the street grid.
pub const GRID: u32 = 41;
/// Metres between neighbouring intersections.
pub const BLOCK_M: f64 = 400.0;
/// Metres per degree of latitude.
pub const METRES_PER_DEGREE: f64 = 111_320.0;

/// Share of readings moved tens of kilometres off.
const TELEPORT_RATE: f64 = 0.0005;
/// Share of readings sent twice.
const DUPLICATE_RATE: f64 = 0.003;
/// One day in this many has a late file, and this share of devices has
/// its readings in it.
const LATE_DAY_EVERY: u32 = 4;
const LATE_DEVICE_RATE: f64 = 0.03;
/// Readings per batch, and per part file.
const BATCH_ROWS: usize = 64 * 1024;
const PART_ROWS: usize = 2_000_000;
const DAY_MS: i64 = 86_400_000;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SensorsSpec {
    /// Devices.
    pub devices: u64,
    /// The first day.
    pub start: NaiveDate,
    /// Days.
    pub days: u32,
    /// The seed.
    pub seed: u64,
}

/// What was generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedSensors {
    /// Readings written, duplicates included.
    pub readings: u64,
    /// Of which teleports.
    pub teleports: u64,
    /// Of which second copies.
    pub duplicates: u64,
    /// Parquet files, late ones included.
    pub files: u64,
    /// Late files.
    pub late_files: u64,
}

/// The readings' schema.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("lat", DataType::Float64, false),
        Field::new("lon", DataType::Float64, false),
        Field::new("accuracy_m", DataType::Float32, false),
        Field::new("speed_mps", DataType::Float32, false),
        Field::new("heading", DataType::Float32, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("rssi_dbm", DataType::Int32, false),
    ]))
}

/// A point in metres east and north of the centre.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Metres {
    x: f64,
    y: f64,
}

impl Metres {
    fn to_degrees(self) -> (f64, f64) {
        let lat = CENTRE.0 + self.y / METRES_PER_DEGREE;
        let lon = CENTRE.1 + self.x / (METRES_PER_DEGREE * CENTRE.0.to_radians().cos());
        (lat, lon)
    }

    fn distance(self, to: Metres) -> f64 {
        (to.x - self.x).hypot(to.y - self.y)
    }
}

/// The street grid: each intersection's position, corners jittered so
/// blocks are not all alike.
struct City {
    corners: Vec<Metres>,
}

impl City {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed, 0x6369_7479);
        let half = f64::from(GRID - 1) / 2.0;
        let corners = (0..GRID * GRID)
            .map(|k| Metres {
                x: (f64::from(k % GRID) - half) * BLOCK_M + rng.normal() * BLOCK_M * 0.08,
                y: (f64::from(k / GRID) - half) * BLOCK_M + rng.normal() * BLOCK_M * 0.08,
            })
            .collect();
        Self { corners }
    }

    fn at(&self, col: u32, row: u32) -> Metres {
        self.corners[(row * GRID + col) as usize]
    }

    /// The intersections of a route along the streets from `a` to `b`:
    /// along a row then a column, or the other way round.
    fn route(&self, a: u32, b: u32, columns_first: bool) -> Vec<Metres> {
        let (mut col, mut row) = (a % GRID, a / GRID);
        let (to_col, to_row) = (b % GRID, b / GRID);
        let mut path = vec![self.at(col, row)];
        for leg in [columns_first, !columns_first] {
            while (leg && col != to_col) || (!leg && row != to_row) {
                if leg {
                    col = if col < to_col { col + 1 } else { col - 1 };
                } else {
                    row = if row < to_row { row + 1 } else { row - 1 };
                }
                path.push(self.at(col, row));
            }
        }
        path
    }
}

/// One device, as it is every day.
struct Device {
    id: String,
    home: u32,
    work: u32,
    driver: bool,
}

impl Device {
    fn new(seed: u64, n: u64) -> Self {
        let mut rng = Rng::new(seed, 0x6465_7600 ^ n.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let cells = u64::from(GRID * GRID);
        Self {
            id: format!("{:016x}", rng.next_u64()),
            home: rng.below(cells) as u32,
            work: rng.below(cells) as u32,
            driver: rng.chance(0.6),
        }
    }
}

/// Where a reading comes from: each source has its own accuracy and
/// signal strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Gps,
    Wifi,
    Cell,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Gps => "gps",
            Source::Wifi => "wifi",
            Source::Cell => "cell",
        }
    }

    /// Outdoors and moving, mostly GPS; indoors, mostly Wi-Fi.
    fn pick(rng: &mut Rng, moving: bool) -> Self {
        let x = rng.unit();
        match (moving, x) {
            (true, x) if x < 0.8 => Source::Gps,
            (true, x) if x < 0.9 => Source::Wifi,
            (false, x) if x < 0.2 => Source::Gps,
            (false, x) if x < 0.8 => Source::Wifi,
            _ => Source::Cell,
        }
    }

    fn accuracy(self, rng: &mut Rng) -> f64 {
        match self {
            Source::Gps => rng.range(3.0, 12.0),
            Source::Wifi => rng.range(10.0, 40.0),
            // Some cell fixes are coarser than any cleaning threshold.
            Source::Cell => rng.range(80.0, 1500.0),
        }
    }

    fn rssi(self, rng: &mut Rng) -> i32 {
        let (lo, hi) = match self {
            Source::Gps => (-135.0, -120.0),
            Source::Wifi => (-90.0, -35.0),
            Source::Cell => (-115.0, -65.0),
        };
        rng.range(lo, hi).round() as i32
    }
}

/// Readings being gathered into batches.
struct Rows {
    device: StringBuilder,
    ts: TimestampMillisecondBuilder,
    lat: Float64Builder,
    lon: Float64Builder,
    accuracy: Float32Builder,
    speed: Float32Builder,
    heading: Float32Builder,
    source: StringBuilder,
    rssi: Int32Builder,
    len: usize,
}

impl Rows {
    fn new() -> Self {
        Self {
            device: StringBuilder::new(),
            ts: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            lat: Float64Builder::new(),
            lon: Float64Builder::new(),
            accuracy: Float32Builder::new(),
            speed: Float32Builder::new(),
            heading: Float32Builder::new(),
            source: StringBuilder::new(),
            rssi: Int32Builder::new(),
            len: 0,
        }
    }

    fn push(&mut self, device: &str, r: &Reading) {
        self.device.append_value(device);
        self.ts.append_value(r.ts);
        self.lat.append_value(r.lat);
        self.lon.append_value(r.lon);
        self.accuracy.append_value(r.accuracy as f32);
        self.speed.append_value(r.speed as f32);
        self.heading.append_value(r.heading as f32);
        self.source.append_value(r.source.name());
        self.rssi.append_value(r.rssi);
        self.len += 1;
    }

    fn finish(&mut self) -> Result<RecordBatch, DatasetError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.device.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.lat.finish()),
            Arc::new(self.lon.finish()),
            Arc::new(self.accuracy.finish()),
            Arc::new(self.speed.finish()),
            Arc::new(self.heading.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.rssi.finish()),
        ];
        self.len = 0;
        RecordBatch::try_new(schema(), columns).map_err(|e| {
            DatasetError::Parquet(parquet::errors::ParquetError::ArrowError(e.to_string()))
        })
    }
}

/// One reading as generated.
#[derive(Debug, Clone, Copy)]
struct Reading {
    ts: i64,
    lat: f64,
    lon: f64,
    accuracy: f64,
    speed: f64,
    heading: f64,
    source: Source,
    rssi: i32,
}

/// A stream of part files under one prefix (`part` or `late`).
struct Parts {
    stem: &'static str,
    dir: String,
    rows: Rows,
    sink: Option<ParquetSink>,
    in_part: usize,
    parts: u32,
    files: Vec<ManifestFile>,
}

impl Parts {
    fn new(stem: &'static str, dir: String) -> Self {
        Self {
            stem,
            dir,
            rows: Rows::new(),
            sink: None,
            in_part: 0,
            parts: 0,
            files: Vec::new(),
        }
    }

    async fn push(
        &mut self,
        out: &Location,
        device: &str,
        reading: &Reading,
    ) -> Result<(), DatasetError> {
        self.rows.push(device, reading);
        if self.rows.len >= BATCH_ROWS {
            self.flush(out).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, out: &Location) -> Result<(), DatasetError> {
        if self.rows.len == 0 {
            return Ok(());
        }
        let n = self.rows.len;
        let batch = self.rows.finish()?;
        if self.sink.is_none() {
            let rel = format!("{}/{}-{:05}.parquet", self.dir, self.stem, self.parts);
            self.sink = Some(ParquetSink::create(out, &rel, schema(), ROW_GROUP_ROWS)?);
            self.parts += 1;
        }
        if let Some(sink) = self.sink.as_mut() {
            sink.write(&batch).await?;
        }
        self.in_part += n;
        if self.in_part >= PART_ROWS {
            self.end_part().await?;
        }
        Ok(())
    }

    async fn end_part(&mut self) -> Result<(), DatasetError> {
        if let Some(sink) = self.sink.take() {
            self.files.push(sink.finish().await?);
        }
        self.in_part = 0;
        Ok(())
    }

    async fn finish(mut self, out: &Location) -> Result<Vec<ManifestFile>, DatasetError> {
        self.flush(out).await?;
        self.end_part().await?;
        Ok(self.files)
    }
}

/// Generates `spec` under `out`; `progress` hears of every day done.
pub async fn generate(
    out: &Location,
    spec: &SensorsSpec,
    progress: impl Fn(u32),
) -> Result<GeneratedSensors, DatasetError> {
    let city = City::new(spec.seed);
    let devices: Vec<Device> = (0..spec.devices)
        .map(|n| Device::new(spec.seed, n))
        .collect();
    let mut counts = GeneratedSensors::default();
    let mut files = Vec::new();
    let late_phase = Rng::new(spec.seed, 0x6c61_7465).below(u64::from(LATE_DAY_EVERY)) as u32;
    let mut day_readings = Vec::new();
    for d in 0..spec.days {
        let date = spec.start + chrono::Days::new(u64::from(d));
        let midnight = date
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .unwrap_or(0);
        let dir = format!("date={}", date.format("%Y-%m-%d"));
        let mut on_time = Parts::new("part", dir.clone());
        let mut late = Parts::new("late", dir);
        let mut day_rng = Rng::new(spec.seed, 0x6461_7900 ^ u64::from(d));
        // On a late day, at least one device's readings come late.
        let late_devices: std::collections::BTreeSet<u64> = if d % LATE_DAY_EVERY == late_phase {
            let k = ((spec.devices as f64 * LATE_DEVICE_RATE).round() as u64).max(1);
            (0..k).map(|_| day_rng.below(spec.devices)).collect()
        } else {
            Default::default()
        };
        for (n, device) in devices.iter().enumerate() {
            let mut rng = Rng::new(
                spec.seed,
                (n as u64).wrapping_mul(0x9e37_79b9) ^ (u64::from(d) << 40) ^ 0x7265_6164,
            );
            day_readings.clear();
            device_day(&city, device, &mut rng, midnight, &mut day_readings);
            let sink = if late_devices.contains(&(n as u64)) {
                &mut late
            } else {
                &mut on_time
            };
            for r in &day_readings {
                let mut r = *r;
                if rng.chance(TELEPORT_RATE) {
                    teleport(&mut rng, &mut r);
                    counts.teleports += 1;
                }
                sink.push(out, &device.id, &r).await?;
                counts.readings += 1;
                if rng.chance(DUPLICATE_RATE) {
                    sink.push(out, &device.id, &r).await?;
                    counts.readings += 1;
                    counts.duplicates += 1;
                }
            }
        }
        let late_files = late.finish(out).await?;
        counts.late_files += late_files.len() as u64;
        files.extend(on_time.finish(out).await?);
        files.extend(late_files);
        progress(d + 1);
    }
    counts.files = files.len() as u64;
    let writer = super::writer(
        "sensors",
        format!(
            "devices={} start={} days={} seed={}",
            spec.devices, spec.start, spec.days, spec.seed
        ),
    );
    manifest::write(
        out,
        &DatasetManifest::new(files, manifest_schema(&schema()), &writer),
    )
    .await?;
    Ok(counts)
}

/// Moves a reading tens of kilometres off, as a bad fix does.
fn teleport(rng: &mut Rng, r: &mut Reading) {
    let angle = rng.range(0.0, std::f64::consts::TAU);
    let off = Metres {
        x: rng.range(5_000.0, 80_000.0) * angle.cos(),
        y: rng.range(5_000.0, 80_000.0) * angle.sin(),
    };
    let (dlat, dlon) = off.to_degrees();
    r.lat += dlat - CENTRE.0;
    r.lon += dlon - CENTRE.1;
}

/// One device's readings on the day starting at `midnight` (UTC ms), in
/// time order.
fn device_day(city: &City, device: &Device, rng: &mut Rng, midnight: i64, out: &mut Vec<Reading>) {
    let hour = 3_600_000.0;
    let mut t = midnight + (rng.range(6.0, 8.5) * hour) as i64;
    let home = city.at(device.home % GRID, device.home / GRID);
    let work = city.at(device.work % GRID, device.work / GRID);
    let leave_work = midnight + (rng.range(15.5, 18.5) * hour) as i64;
    let sleep = midnight + (rng.range(21.0, 23.5) * hour) as i64;
    let until = t + (rng.range(0.3, 1.5) * hour) as i64;
    t = stay(rng, home, t, until, out);
    t = travel(city, device, rng, device.home, device.work, t, out);
    t = stay(rng, work, t, leave_work.max(t), out);
    t = travel(city, device, rng, device.work, device.home, t, out);
    if rng.chance(0.3) {
        // An evening out and back.
        let cells = u64::from(GRID * GRID);
        let place = rng.below(cells) as u32;
        let at = city.at(place % GRID, place / GRID);
        let until = t + (rng.range(0.2, 1.0) * hour) as i64;
        t = stay(rng, home, t, until, out);
        t = travel(city, device, rng, device.home, place, t, out);
        let until = t + (rng.range(0.5, 2.0) * hour) as i64;
        t = stay(rng, at, t, until, out);
        t = travel(city, device, rng, place, device.home, t, out);
    }
    stay(rng, home, t, sleep.max(t), out);
    // Nothing crosses midnight: a reading belongs to the day it was taken.
    out.retain(|r| r.ts < midnight + DAY_MS);
}

/// Readings every half minute or so at `at` from `from` to `until`;
/// returns when it stopped.
fn stay(rng: &mut Rng, at: Metres, from: i64, until: i64, out: &mut Vec<Reading>) -> i64 {
    let mut t = from;
    while t < until {
        let source = Source::pick(rng, false);
        let (speed, heading) = (rng.normal().abs() * 0.2, rng.range(0.0, 360.0));
        out.push(observe(rng, at, t, speed, heading, source));
        t += (rng.range(20.0, 40.0) * 1000.0) as i64;
    }
    t.max(until)
}

/// Readings every few seconds along the streets from intersection `a` to
/// `b`, leaving at `from`; returns the arrival time.
fn travel(
    city: &City,
    device: &Device,
    rng: &mut Rng,
    a: u32,
    b: u32,
    from: i64,
    out: &mut Vec<Reading>,
) -> i64 {
    let route = city.route(a, b, rng.chance(0.5));
    let (speed, every_ms) = if device.driver {
        (rng.range(7.0, 15.0), rng.range(2.0, 5.0) * 1000.0)
    } else {
        (rng.range(1.1, 1.7), rng.range(5.0, 10.0) * 1000.0)
    };
    let mut t = from as f64;
    let mut next = t;
    for leg in route.windows(2) {
        let (p, q) = (leg[0], leg[1]);
        let length = p.distance(q);
        if length <= 0.0 {
            continue;
        }
        let seconds = length / speed;
        let heading = (q.x - p.x).atan2(q.y - p.y).to_degrees().rem_euclid(360.0);
        while next < t + seconds * 1000.0 {
            let f = (next - t) / (seconds * 1000.0);
            let here = Metres {
                x: p.x + (q.x - p.x) * f,
                y: p.y + (q.y - p.y) * f,
            };
            let reported = (speed * (1.0 + 0.05 * rng.normal())).max(0.0);
            let source = Source::pick(rng, true);
            let h = (heading + 5.0 * rng.normal()).rem_euclid(360.0);
            out.push(observe(rng, here, next as i64, reported, h, source));
            next += every_ms;
        }
        t += seconds * 1000.0;
    }
    t as i64
}

/// A reading of a device truly at `at`: the position off by noise of the
/// source's accuracy.
fn observe(
    rng: &mut Rng,
    at: Metres,
    ts: i64,
    speed: f64,
    heading: f64,
    source: Source,
) -> Reading {
    let accuracy = source.accuracy(rng);
    let seen = Metres {
        x: at.x + rng.normal() * accuracy / 2.0,
        y: at.y + rng.normal() * accuracy / 2.0,
    };
    let (lat, lon) = seen.to_degrees();
    Reading {
        ts,
        lat,
        lon,
        accuracy,
        speed,
        heading,
        source,
        rssi: source.rssi(rng),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_seed_one_dataset_with_its_faults() {
        let spec = SensorsSpec {
            devices: 12,
            start: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            days: 8,
            seed: 5,
        };
        let mut manifests = Vec::new();
        let mut counts = Vec::new();
        for seed in [5, 5, 6] {
            let dir = tempfile::tempdir().unwrap();
            let out = Location::parse(dir.path().to_str().unwrap()).unwrap();
            counts.push(
                generate(&out, &SensorsSpec { seed, ..spec }, |_| {})
                    .await
                    .unwrap(),
            );
            let m = manifest::read(&out).await.unwrap().unwrap();
            manifests.push(
                m.files
                    .iter()
                    .map(|f| (f.path.clone(), f.sha256.clone()))
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(manifests[0], manifests[1], "one seed, the same bytes");
        assert_ne!(manifests[0], manifests[2]);
        let c = counts[0];
        assert!(c.readings > 12 * 8 * 500, "{c:?}");
        assert!(
            c.teleports > 0 && c.duplicates > 0 && c.late_files > 0,
            "{c:?}"
        );
        // A partition per day, each file in its day's.
        let days: std::collections::BTreeSet<&str> = manifests[0]
            .iter()
            .map(|(p, _)| p.split('/').next().unwrap())
            .collect();
        assert_eq!(days.len(), 8);
        assert!(days.contains("date=2026-03-08"));
    }

    #[test]
    fn a_route_follows_the_streets_one_block_at_a_time() {
        let city = City::new(1);
        let route = city.route(0, GRID * 3 + 2, true);
        // Two blocks along a row, three along a column, and the start.
        assert_eq!(route.len(), 6);
        for leg in route.windows(2) {
            let d = leg[0].distance(leg[1]);
            assert!(d > BLOCK_M * 0.5 && d < BLOCK_M * 1.5, "{d}");
        }
        assert_eq!(city.route(7, 7, false).len(), 1);
    }

    #[test]
    fn a_device_day_is_ordered_within_the_day_and_moves_plausibly() {
        let city = City::new(3);
        let midnight = 1_767_225_600_000; // 2026-01-01
        for n in 0..50 {
            let device = Device::new(3, n);
            let mut rng = Rng::new(3, n);
            let mut day = Vec::new();
            device_day(&city, &device, &mut rng, midnight, &mut day);
            assert!(day.len() > 500, "device {n}: {} readings", day.len());
            assert!(day.windows(2).all(|w| w[0].ts < w[1].ts));
            assert!(
                day.iter()
                    .all(|r| r.ts >= midnight && r.ts < midnight + DAY_MS)
            );
            // Everything within the city, give or take a cell fix.
            let (lat_span, lon_span) = (0.12, 0.2);
            assert!(day.iter().all(
                |r| (r.lat - CENTRE.0).abs() < lat_span && (r.lon - CENTRE.1).abs() < lon_span
            ));
            // Reported speeds are those of a walker or a driver.
            assert!(day.iter().all(|r| r.speed >= 0.0 && r.speed < 25.0));
        }
    }
}
