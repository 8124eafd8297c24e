//! The feature rows as Arrow: `h3_cell` (UInt64, the H3 index as a
//! number), `window_start` (UTC timestamp, milliseconds), then the
//! features the spec selected, in its order. `rssi_mean_by_source` is
//! three columns, `rssi_mean_gps`, `rssi_mean_wifi` and `rssi_mean_cell`.
//! The date is not a column: it is the partition's directory name, which
//! Hive-partitioned readers turn into one.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMillisecondArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::executors::TaskError;
use crate::sensors::features::{FeatureRow, SOURCES};

/// Rows per batch handed to the writer.
const BATCH_ROWS: usize = 64 * 1024;

/// The output columns for `features`.
pub fn schema(features: &[String]) -> SchemaRef {
    let mut fields = vec![
        Field::new("h3_cell", DataType::UInt64, false),
        Field::new(
            "window_start",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ];
    for f in features {
        match f.as_str() {
            "observations" | "distinct_devices" => {
                fields.push(Field::new(f.as_str(), DataType::Int64, false));
            }
            "speed_mean" | "speed_p50" | "speed_p90" => {
                fields.push(Field::new(f.as_str(), DataType::Float64, true));
            }
            "dwell_seconds" | "accuracy_mean" => {
                fields.push(Field::new(f.as_str(), DataType::Float64, false));
            }
            "rssi_mean_by_source" => {
                for s in SOURCES {
                    fields.push(Field::new(
                        format!("rssi_mean_{s}"),
                        DataType::Float64,
                        true,
                    ));
                }
            }
            // The spec only admits the features above.
            _ => {}
        }
    }
    Arc::new(Schema::new(fields))
}

/// `rows` as batches of `schema` (made by [`schema`] from `features`).
pub fn batches(
    rows: &[FeatureRow],
    features: &[String],
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, TaskError> {
    rows.chunks(BATCH_ROWS)
        .map(|chunk| batch(chunk, features, schema))
        .collect()
}

fn batch(
    rows: &[FeatureRow],
    features: &[String],
    schema: &SchemaRef,
) -> Result<RecordBatch, TaskError> {
    let count = |f: fn(&FeatureRow) -> u64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| i64::try_from(f(r)).unwrap_or(i64::MAX)),
        ))
    };
    let float = |f: &dyn Fn(&FeatureRow) -> Option<f64>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Float64Array>())
    };
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.cell))),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.window_start))
                .with_timezone("UTC"),
        ),
    ];
    for f in features {
        match f.as_str() {
            "observations" => columns.push(count(|r| r.observations)),
            "distinct_devices" => columns.push(count(|r| r.distinct_devices)),
            "speed_mean" => columns.push(float(&|r| r.speed_mean)),
            "speed_p50" => columns.push(float(&|r| r.speed_p50)),
            "speed_p90" => columns.push(float(&|r| r.speed_p90)),
            "dwell_seconds" => columns.push(float(&|r| Some(r.dwell_seconds))),
            "accuracy_mean" => columns.push(float(&|r| Some(r.accuracy_mean))),
            "rssi_mean_by_source" => {
                for s in 0..SOURCES.len() {
                    columns.push(float(&|r| r.rssi_mean[s]));
                }
            }
            _ => {}
        }
    }
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| TaskError::permanent(format!("building the feature rows: {e}")))
}
