//! One date's readings: which files hold them, the fingerprint that says
//! whether they changed, and their rows decoded column by column.
//!
//! The files are found by listing `<input>/date=YYYY-MM-DD/`, not from a
//! manifest: readings land there from devices' uploads, late files
//! included, and whatever is there when the task runs is the day.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use drover_jobspecs::kinds::SensorFeatureConfig;
use sha2::{Digest, Sha256};

use crate::dataset::DatasetError;
use crate::dataset::listing::{self, Listed};
use crate::dataset::location::Location;
use crate::dataset::manifest::hex;
use crate::dataset::strings::{self, Text};
use crate::executors::TaskError;
use crate::executors::data_attempt::{CODE_VERSION, dataset_error};
use crate::sensors::features::RSSI_NONE;

/// The columns read, in this order.
pub const COLUMNS: [&str; 8] = [
    "device_id",
    "ts",
    "lat",
    "lon",
    "accuracy_m",
    "speed_mps",
    "source",
    "rssi_dbm",
];

/// Files read for one date at most.
const DAY_FILES_MAX: usize = 10_000;

/// The Parquet files of `dir` (`date=YYYY-MM-DD`) below `input`, sorted by
/// path (relative to `dir`). None is a retryable failure: the day's
/// readings may not have landed yet.
pub async fn day_files(input: &Location, dir: &str) -> Result<Vec<Listed>, TaskError> {
    let files = listing::list(
        input,
        dir,
        |p| listing::is_data(p) && p.ends_with(".parquet"),
        DAY_FILES_MAX,
    )
    .await
    .map_err(|e| match e {
        DatasetError::TooManyFiles { url, max } => TaskError::permanent(format!(
            "{url} holds more than {max} Parquet files; compact them"
        )),
        e => dataset_error(e),
    })?;
    if files.is_empty() {
        return Err(TaskError::retryable(format!(
            "no readings in {}/{dir}/ (no .parquet files there yet)",
            input.url.trim_end_matches('/')
        )));
    }
    Ok(files)
}

/// What decides a date's features: this code's version, the date, the
/// settings that change what is computed, and each input file's path,
/// size and version tag. `output`, `recompute` and `pseudonymize` are left
/// out: they change where features go, whether they are redone, and the
/// pseudonyms, which never reach the output.
pub fn fingerprint(cfg: &SensorFeatureConfig, date: &str, files: &[Listed]) -> String {
    let mut h = Sha256::new();
    let mut field = |v: &str| {
        h.update(v.as_bytes());
        h.update([0]);
    };
    field("sensor_feature_backfill/1");
    field(CODE_VERSION);
    field(date);
    field(&cfg.input);
    field(&cfg.h3_resolution.to_string());
    field(&cfg.window_ms.to_string());
    field(&cfg.k_anonymity.to_string());
    field(&cfg.max_accuracy_m.to_string());
    field(&cfg.max_speed_mps.to_string());
    field(&cfg.features.join(","));
    for f in files {
        field(&f.path);
        field(&f.bytes.to_string());
        field(f.e_tag.as_deref().unwrap_or(""));
        // Without a tag, the modification time stands for the version.
        if f.e_tag.is_none() {
            field(&f.modified_ms.to_string());
        }
    }
    hex(&h.finalize())
}

/// Device ids of a batch, as whichever string type the file used.
pub enum Ids<'a> {
    /// `Utf8`.
    Small(&'a arrow_array::StringArray),
    /// `LargeUtf8`.
    Large(&'a arrow_array::LargeStringArray),
    /// `Utf8View`.
    View(&'a arrow_array::StringViewArray),
}

impl Ids<'_> {
    /// The id of row `i`; `None` when null.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let valid = |a: &dyn Array| a.is_valid(i);
        match self {
            Ids::Small(a) => valid(*a).then(|| a.value(i).as_bytes()),
            Ids::Large(a) => valid(*a).then(|| a.value(i).as_bytes()),
            Ids::View(a) => valid(*a).then(|| a.value(i).as_bytes()),
        }
    }
}

/// A batch's columns as plain vectors, nulls made NaN (positions,
/// accuracies and speeds: cleaning drops the reading, or the speed is
/// left out) or [`RSSI_NONE`]; a null timestamp is `None`.
#[derive(Debug, Default)]
pub struct Columns {
    /// UTC milliseconds.
    pub ts: Vec<Option<i64>>,
    /// Degrees.
    pub lat: Vec<f64>,
    /// Degrees.
    pub lon: Vec<f64>,
    /// Metres.
    pub accuracy_m: Vec<f32>,
    /// Metres per second.
    pub speed_mps: Vec<f32>,
    /// 0 GPS, 1 Wi-Fi, 2 cell, 3 anything else.
    pub source: Vec<u8>,
    /// dBm.
    pub rssi_dbm: Vec<i32>,
}

/// `batch` with its device ids and sources in a plain string type:
/// dictionary-encoded (pandas categoricals) and integer ids read as
/// strings.
pub fn plain_strings(batch: &RecordBatch) -> Result<RecordBatch, TaskError> {
    strings::with_plain_columns(batch, &[(COLUMNS[0], Text::Id), (COLUMNS[6], Text::Plain)])
        .map_err(|e| TaskError::permanent(e.to_string()))
}

/// Why a batch's columns could not be read: a column of a type that does
/// not hold what the reading needs.
fn wrong_type(name: &str, t: &DataType, want: &str) -> TaskError {
    TaskError::permanent(format!(
        "column `{name}` is {t}; it should be {want} (see `drover datagen sensors` for the expected schema)"
    ))
}

impl Columns {
    /// Decodes `batch`, whose columns are [`COLUMNS`] in order; returns
    /// the ids beside.
    pub fn decode<'a>(&mut self, batch: &'a RecordBatch) -> Result<Ids<'a>, TaskError> {
        let col = |i: usize| batch.column(i);
        let ids = match col(0).data_type() {
            DataType::Utf8 => Ids::Small(col(0).as_string::<i32>()),
            DataType::LargeUtf8 => Ids::Large(col(0).as_string::<i64>()),
            DataType::Utf8View => Ids::View(col(0).as_string_view()),
            t => return Err(wrong_type(COLUMNS[0], t, "a string")),
        };
        timestamps(col(1), &mut self.ts)?;
        floats(col(2), COLUMNS[2], &mut self.lat, |v| v)?;
        floats(col(3), COLUMNS[3], &mut self.lon, |v| v)?;
        floats(col(4), COLUMNS[4], &mut self.accuracy_m, |v| v as f32)?;
        floats(col(5), COLUMNS[5], &mut self.speed_mps, |v| v as f32)?;
        sources(col(6), &mut self.source)?;
        rssi(col(7), &mut self.rssi_dbm)?;
        Ok(ids)
    }
}

fn timestamps(a: &ArrayRef, out: &mut Vec<Option<i64>>) -> Result<(), TaskError> {
    out.clear();
    let ms = |v: Option<i64>, to_ms: fn(i64) -> i64| v.map(to_ms);
    match a.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => out.extend(
            a.as_primitive::<TimestampSecondType>()
                .iter()
                .map(|v| ms(v, |v| v.saturating_mul(1000))),
        ),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            out.extend(a.as_primitive::<TimestampMillisecondType>().iter());
        }
        // Plain integers are taken as Unix milliseconds.
        DataType::Int64 => out.extend(a.as_primitive::<Int64Type>().iter()),
        DataType::Timestamp(TimeUnit::Microsecond, _) => out.extend(
            a.as_primitive::<TimestampMicrosecondType>()
                .iter()
                .map(|v| ms(v, |v| v.div_euclid(1000))),
        ),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => out.extend(
            a.as_primitive::<TimestampNanosecondType>()
                .iter()
                .map(|v| ms(v, |v| v.div_euclid(1_000_000))),
        ),
        t => {
            return Err(wrong_type(
                COLUMNS[1],
                t,
                "a timestamp (or Int64 Unix milliseconds)",
            ));
        }
    }
    Ok(())
}

fn floats<T>(
    a: &ArrayRef,
    name: &str,
    out: &mut Vec<T>,
    from: impl Fn(f64) -> T,
) -> Result<(), TaskError> {
    out.clear();
    let nan = || from(f64::NAN);
    match a.data_type() {
        DataType::Float64 => {
            let a = a.as_primitive::<Float64Type>();
            out.extend(a.iter().map(|v| v.map_or_else(nan, &from)));
        }
        DataType::Float32 => {
            let a = a.as_primitive::<Float32Type>();
            out.extend(a.iter().map(|v| v.map_or_else(nan, |v| from(f64::from(v)))));
        }
        t => return Err(wrong_type(name, t, "Float64 or Float32")),
    }
    Ok(())
}

fn sources(a: &ArrayRef, out: &mut Vec<u8>) -> Result<(), TaskError> {
    out.clear();
    let code = |s: Option<&str>| match s {
        Some("gps") => 0,
        Some("wifi") => 1,
        Some("cell") => 2,
        _ => 3,
    };
    match a.data_type() {
        DataType::Utf8 => out.extend(a.as_string::<i32>().iter().map(code)),
        DataType::LargeUtf8 => out.extend(a.as_string::<i64>().iter().map(code)),
        DataType::Utf8View => out.extend(a.as_string_view().iter().map(code)),
        t => return Err(wrong_type(COLUMNS[6], t, "a string (gps, wifi or cell)")),
    }
    Ok(())
}

fn rssi(a: &ArrayRef, out: &mut Vec<i32>) -> Result<(), TaskError> {
    out.clear();
    let none = |v: Option<i64>| {
        v.and_then(|v| i32::try_from(v).ok())
            .filter(|v| *v != RSSI_NONE)
            .unwrap_or(RSSI_NONE)
    };
    match a.data_type() {
        DataType::Int32 => out.extend(
            a.as_primitive::<Int32Type>()
                .iter()
                .map(|v| none(v.map(i64::from))),
        ),
        DataType::Int16 => out.extend(
            a.as_primitive::<Int16Type>()
                .iter()
                .map(|v| none(v.map(i64::from))),
        ),
        DataType::Int64 => out.extend(a.as_primitive::<Int64Type>().iter().map(none)),
        t => return Err(wrong_type(COLUMNS[7], t, "an integer")),
    }
    Ok(())
}
