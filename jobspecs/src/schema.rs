//! The JSON Schema of the spec format, for editors (yaml-language-server)
//! and for other tools that want to check specs before submitting them.
//!
//! Object properties are generated from the same field lists the decoder
//! checks keys against, so the schema cannot list a field the decoder rejects
//! or miss one it accepts. Each field's description lives here; a test checks
//! that every field has one.

use serde_json::{Map, Value, json};

use crate::interpolate::RUN_VARS;
use crate::kinds::{annotation_export as ae, builtin, dedup, sensor};
use crate::limits;
use crate::load::{
    API_VERSION, CONSTRAINTS_FIELDS, DEFAULTS_FIELDS, METADATA_FIELDS, RESOURCES_FIELDS,
    RETRY_FIELDS, SPEC_FIELDS, TASK_FIELDS, TOP_FIELDS,
};
use crate::partitions::{PARTITION_FIELDS, RANGE_FIELDS};
use crate::schedule::SCHEDULE_FIELDS;

/// Marks a field the generator has no description for; tests reject it.
const UNDOCUMENTED: &str = "UNDOCUMENTED";

/// Builds an object schema over `fields`, asking `describe` for each field.
fn object(fields: &[&str], required: &[&str], describe: impl Fn(&str) -> Value) -> Value {
    let mut properties = Map::new();
    for field in fields {
        properties.insert((*field).to_owned(), describe(field));
    }
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": properties,
    })
}

fn with_description(mut schema: Value, description: &str) -> Value {
    if let Some(map) = schema.as_object_mut() {
        map.insert("description".to_owned(), json!(description));
    }
    schema
}

fn undocumented() -> Value {
    json!({"description": UNDOCUMENTED})
}

/// A string, or a `${...}` reference resolving to one.
fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

/// An integer in range, or a `${...}` reference (resolved before checking).
fn integer(min: u64, max: u64, description: &str) -> Value {
    json!({
        "description": description,
        "anyOf": [
            {"type": "integer", "minimum": min, "maximum": max},
            {"$ref": "#/$defs/reference"}
        ]
    })
}

fn number(min: f64, max: f64, description: &str) -> Value {
    json!({
        "description": description,
        "anyOf": [
            {"type": "number", "minimum": min, "maximum": max},
            {"$ref": "#/$defs/reference"}
        ]
    })
}

fn boolean(description: &str) -> Value {
    json!({
        "description": description,
        "anyOf": [{"type": "boolean"}, {"$ref": "#/$defs/reference"}]
    })
}

fn enumeration(options: &[&str], description: &str) -> Value {
    json!({"type": "string", "enum": options, "description": description})
}

fn duration(description: &str) -> Value {
    json!({
        "type": "string",
        "pattern": r"^(\$\{[^}]+\}|\s*[0-9]+\s*[a-zµ]+(\s*[0-9]+\s*[a-zµ]+)*\s*)$",
        "description": format!("{description} A number with a unit: 500ms, 30s, 5m, 1h30m, 2d."),
    })
}

fn string_list(description: &str) -> Value {
    json!({"type": "array", "items": {"type": "string"}, "description": description})
}

fn url(description: &str) -> Value {
    json!({
        "type": "string",
        "pattern": r"^(file|s3)://.+|\$\{",
        "description": format!("{description} A dataset URL: file://PATH or s3://BUCKET/PREFIX."),
    })
}

fn labels(description: &str) -> Value {
    json!({
        "type": "object",
        "maxProperties": limits::LABELS_MAX,
        "additionalProperties": {"type": "string", "maxLength": limits::LABEL_VALUE_LEN_MAX},
        "description": description,
    })
}

fn key_source() -> Value {
    with_description(
        object(crate::kinds::KEY_SOURCE_FIELDS, &[], |f| match f {
            "keyEnv" => string("Environment variable on the worker holding the HMAC key."),
            "keyFile" => string("File on the worker holding the HMAC key."),
            _ => undocumented(),
        }),
        "Where the worker reads the keyed-HMAC pseudonymisation key. Never the key itself: specs are stored and shown.",
    )
}

fn retries() -> Value {
    json!({
        "description": "Retry policy, or just the retry count. Unset fields come from spec.defaults.",
        "anyOf": [
            {"type": "integer", "minimum": 0, "maximum": limits::RETRIES_MAX},
            object(RETRY_FIELDS, &[], |f| match f {
                "max" => integer(0, u64::from(limits::RETRIES_MAX), "Retries after the first attempt; 0 disables retries. Default 3."),
                "backoff" => enumeration(&["exponential", "constant"], "How the delay grows. Default exponential."),
                "initialDelay" => duration("Delay before the first retry. Default 5s."),
                "maxDelay" => duration("Cap on any retry delay. Default 5m."),
                _ => undocumented(),
            })
        ]
    })
}

fn resources() -> Value {
    with_description(
        object(RESOURCES_FIELDS, &[], |f| match f {
            "cpu" => number(0.01, 1024.0, "CPU cores one attempt needs. Default 1."),
            "memoryMb" => integer(
                1,
                16 * 1024 * 1024,
                "Memory in MiB one attempt needs. Default 512.",
            ),
            _ => undocumented(),
        }),
        "What one attempt needs from a worker slot.",
    )
}

fn constraints() -> Value {
    with_description(
        object(CONSTRAINTS_FIELDS, &[], |f| match f {
            "labels" => labels("Labels a worker must have, all of them, to lease the task."),
            _ => undocumented(),
        }),
        "Where the task may run.",
    )
}

fn range(example: &str, description: &str) -> Value {
    with_description(
        object(RANGE_FIELDS, &["start", "end"], |f| match f {
            "start" => string(&format!("First partition, inclusive, e.g. {example}.")),
            "end" => string(&format!("Last partition, inclusive, e.g. {example}.")),
            _ => undocumented(),
        }),
        description,
    )
}

fn partitions() -> Value {
    let mut schema = object(PARTITION_FIELDS, &[], |f| match f {
        "daily" => range("2026-01-01", "One partition per day, keyed YYYY-MM-DD."),
        "hourly" => range(
            "2026-01-01T00",
            "One partition per hour, keyed YYYY-MM-DDTHH (UTC).",
        ),
        "list" => json!({
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": limits::LIST_ITEM_BYTES_MAX},
            "maxItems": limits::LIST_PARTITIONS_MAX,
            "uniqueItems": true,
            "description": "One partition per listed key.",
        }),
        "shards" => integer(
            1,
            limits::PARTITIONS_PER_TEMPLATE_MAX,
            "N partitions keyed 0..N-1.",
        ),
        _ => undocumented(),
    });
    if let Some(map) = schema.as_object_mut() {
        map.insert("minProperties".to_owned(), json!(1));
        map.insert("maxProperties".to_owned(), json!(1));
    }
    with_description(
        schema,
        "How the task fans out: exactly one of daily, hourly, list or shards. A range is stored as a range, so a million partitions cost no more than ten.",
    )
}

fn schedule() -> Value {
    with_description(
        object(SCHEDULE_FIELDS, &["cron"], |f| match f {
            "cron" => string(
                "5-field crontab (minute hour day-of-month month day-of-week), 6 fields with seconds first, or @hourly/@daily/@weekly/@monthly/@yearly. Matched against the wall clock of `timezone`.",
            ),
            "timezone" => string(
                "IANA timezone, e.g. America/Los_Angeles. Default UTC. Across DST a fixed-time run in the skipped hour fires once just after it, and one in the repeated hour fires once.",
            ),
            "catchup" => enumeration(
                &["none", "latest", "all"],
                "Missed fire times (coordinator down): skip them, run the latest once, or run all of them up to maxCatchup. Default latest.",
            ),
            "maxCatchup" => integer(
                1,
                u64::from(limits::MAX_CATCHUP_MAX),
                "Most missed runs started under catchup: all. Default 24.",
            ),
            "overlap" => enumeration(
                &["forbid", "allow", "replace"],
                "When the previous run is still going: skip the new run, run both, or cancel the old one. Default forbid.",
            ),
            _ => undocumented(),
        }),
        "Makes the job recurring: each fire time starts a run, a child job with its own id.",
    )
}

fn sleep_config() -> Value {
    object(builtin::SLEEP_FIELDS, &["ms"], |f| match f {
        "ms" => integer(0, limits::SLEEP_MS_MAX, "Milliseconds each attempt sleeps."),
        "failTimes" => integer(
            0,
            u64::from(limits::RETRIES_MAX),
            "The first N attempts fail (retryably), to exercise retries.",
        ),
        _ => undocumented(),
    })
}

fn command_config() -> Value {
    object(builtin::COMMAND_FIELDS, &["argv"], |f| match f {
        "argv" => {
            json!({"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": limits::COMMAND_ARGS_MAX, "description": "Program and arguments, run directly (no shell)."})
        }
        "env" => labels("Extra environment variables."),
        "workingDir" => string("Working directory; the task's scratch directory by default."),
        _ => undocumented(),
    })
}

fn annotation_export_config() -> Value {
    object(ae::FIELDS, &["input", "output"], |f| match f {
        "input" => url("Annotation project data."),
        "output" => url("Where the export is written."),
        "projects" => string_list("Only these projects; all when absent."),
        "timeWindow" => with_description(
            object(ae::TIME_WINDOW_FIELDS, &["start", "end"], |g| match g {
                "start" => string("Inclusive start: RFC 3339 or YYYY-MM-DD."),
                "end" => string("Exclusive end: RFC 3339 or YYYY-MM-DD."),
                _ => undocumented(),
            }),
            "Only annotations made in [start, end).",
        ),
        "labels" => string_list("Only these labels; all when absent."),
        "formats" => {
            json!({"type": "array", "items": {"enum": ae::FORMATS}, "minItems": 1, "uniqueItems": true, "description": "Output formats. Default [jsonl]."})
        }
        "consensus" => with_description(
            object(ae::CONSENSUS_FIELDS, &[], |g| match g {
                "classes" => {
                    enumeration(ae::CLASS_METHODS, "Class consensus. Default dawid_skene.")
                }
                "boxes" => enumeration(ae::BOX_METHODS, "Box consensus. Default iou_fusion."),
                "iouThreshold" => number(
                    0.05,
                    0.95,
                    "IoU above which two boxes are one object. Default 0.5.",
                ),
                _ => undocumented(),
            }),
            "How annotators' answers are combined.",
        ),
        "minAnnotators" => integer(
            1,
            1000,
            "Items with fewer annotators are left out. Default 1.",
        ),
        "dropFields" => string_list("Fields removed from the export (PII)."),
        "pseudonymize" => key_source(),
        "shards" => integer(
            1,
            u64::from(limits::EXPORT_SHARDS_MAX),
            "Shard tasks the items are split across. Default 8.",
        ),
        _ => undocumented(),
    })
}

fn dedup_config() -> Value {
    object(dedup::FIELDS, &["input", "output"], |f| match f {
        "input" => url("Documents to deduplicate."),
        "output" => url("Where kept records, the duplicate map and the report go."),
        "format" => enumeration(dedup::FORMATS, "Input format. Default jsonl."),
        "idField" => string("Field holding each document's unique id. Default id."),
        "textField" => string("Field holding the compared text. Default text."),
        "method" => enumeration(
            dedup::METHODS,
            "exact (normalised text hash) or minhash (near duplicates). Default minhash.",
        ),
        "threshold" => number(
            0.01,
            1.0,
            "Jaccard similarity at or above which documents are duplicates. Default 0.8.",
        ),
        "numPerm" => integer(16, 1024, "MinHash permutations. Default 128."),
        "bands" => integer(
            1,
            1024,
            "LSH bands; set with rows, or leave both out to derive them from threshold.",
        ),
        "rows" => integer(1, 1024, "Rows per LSH band; bands × rows ≤ numPerm."),
        "shingle" => with_description(
            object(dedup::SHINGLE_FIELDS, &[], |g| match g {
                "unit" => enumeration(dedup::SHINGLE_UNITS, "word or char n-grams. Default word."),
                "size" => integer(1, 32, "n. Default 3 for words, 5 for characters."),
                _ => undocumented(),
            }),
            "How text is cut into shingles.",
        ),
        "shards" => integer(
            1,
            u64::from(limits::DEDUP_SHARDS_MAX),
            "Input shards for the signatures and filter stages. Default 8.",
        ),
        "bucketPartitions" => integer(
            1,
            u64::from(limits::DEDUP_SHARDS_MAX),
            "Partitions of the candidates and verify stages. Default: shards.",
        ),
        "maxBucketSize" => integer(
            2,
            1_000_000,
            "Documents compared per LSH bucket; bigger buckets are sampled. Default 1000.",
        ),
        "keep" => enumeration(
            dedup::KEEP,
            "Which document of a cluster is kept: first (lowest id), longest, or field (highest keepField). Default first.",
        ),
        "keepField" => string("Field compared with keep: field."),
        _ => undocumented(),
    })
}

fn sensor_config() -> Value {
    object(sensor::FIELDS, &["input", "output"], |f| match f {
        "input" => url("Readings, partitioned by date=YYYY-MM-DD/."),
        "output" => url("Where features are written, by date=YYYY-MM-DD/."),
        "h3Resolution" => integer(0, 15, "H3 resolution of feature cells. Default 9."),
        "window" => duration("Aggregation window; must divide a day. Default 1h."),
        "kAnonymity" => integer(
            1,
            100_000,
            "Cells seen by fewer distinct devices are suppressed. Default 5.",
        ),
        "maxAccuracyM" => number(
            0.1,
            100_000.0,
            "Readings less accurate than this (metres) are dropped. Default 100.",
        ),
        "maxSpeedMps" => number(
            0.1,
            1000.0,
            "Jumps implying more than this speed are outliers. Default 70.",
        ),
        "features" => {
            json!({"type": "array", "items": {"enum": sensor::FEATURES}, "minItems": 1, "uniqueItems": true, "description": "Features computed. Default all."})
        }
        "pseudonymize" => key_source(),
        "recompute" => {
            json!({"type": "boolean", "description": "Compute every partition again, even those whose committed features match their input, config and code. Default false."})
        }
        "shards" => integer(
            1,
            u64::from(limits::SENSOR_SHARDS_MAX),
            "Tasks each date's devices are split over: a part task per shard, then a merge per date. Default 1 (one task per date).",
        ),
        "memoryMb" => integer(
            16,
            u64::from(limits::SENSOR_MEMORY_MB_MAX),
            "Memory a task aims to stay within, MiB; beyond it, it spills to scratch. Default the worker's (1024).",
        ),
        _ => undocumented(),
    })
}

fn task() -> Value {
    let mut schema = object(TASK_FIELDS, &["name", "kind"], |f| match f {
        "name" => {
            json!({"type": "string", "pattern": "^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$", "maxLength": limits::NAME_LEN_MAX, "description": "Unique task name: lowercase letters, digits, - and _."})
        }
        "kind" => enumeration(crate::kinds::KIND_NAMES, "What the worker runs."),
        "description" => string("Shown by job status and the console."),
        "dependsOn" => {
            json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true, "maxItems": limits::DEPENDS_ON_MAX, "description": "Tasks whose every partition must succeed before this one starts."})
        }
        "partitions" => partitions(),
        "config" => {
            json!({"type": "object", "description": "The kind's settings. String values may use ${partition.key}, ${partition.index} and ${partition.count}."})
        }
        "retries" => retries(),
        "timeout" => duration("Per-attempt timeout; overrides spec.defaults.timeout."),
        "maxParallel" => integer(
            1,
            u64::from(limits::MAX_PARALLEL_MAX),
            "Cap on this task's partitions leased at once.",
        ),
        "resources" => resources(),
        "constraints" => constraints(),
        _ => undocumented(),
    });
    let by_kind: Vec<Value> = [
        ("sleep", sleep_config()),
        ("command", command_config()),
        ("probe", sleep_config()),
        ("annotation_export", annotation_export_config()),
        ("dedup", dedup_config()),
        ("sensor_feature_backfill", sensor_config()),
    ]
    .into_iter()
    .map(|(kind, config)| {
        json!({
            "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
            "then": {
                "properties": {"config": with_description(config, &format!("Settings of kind {kind}."))},
                "required": ["config"]
            },
        })
    })
    .collect();
    if let Some(map) = schema.as_object_mut() {
        map.insert("allOf".to_owned(), Value::Array(by_kind));
    }
    schema
}

/// The whole schema (draft 2020-12).
pub fn job_schema() -> Value {
    let name = |what: &str| {
        json!({
            "type": "string",
            "pattern": "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
            "maxLength": limits::NAME_LEN_MAX,
            "description": format!("{what}: lowercase letters, digits and -, at most {} characters.", limits::NAME_LEN_MAX),
        })
    };
    let mut root = object(
        TOP_FIELDS,
        &["apiVersion", "kind", "metadata", "spec"],
        |f| match f {
            "apiVersion" => json!({"const": API_VERSION, "description": "Version of this format."}),
            "kind" => json!({"const": "Job", "description": "Always Job."}),
            "metadata" => with_description(
                object(METADATA_FIELDS, &["name"], |g| match g {
                    "name" => name("Job name"),
                    "namespace" => {
                        name("Namespace for fair share and access control (default: default)")
                    }
                    "labels" => labels("Free-form labels for filtering."),
                    "description" => string("What the job is for."),
                    _ => undocumented(),
                }),
                "Who the job is.",
            ),
            "spec" => with_description(
                object(SPEC_FIELDS, &["tasks"], |g| match g {
                    "priority" => integer(0, 100, "0..100; higher leases first. Default 50."),
                    "maxParallel" => integer(
                        1,
                        u64::from(limits::MAX_PARALLEL_MAX),
                        "Tasks of this job leased at once. Default 64.",
                    ),
                    "recompute" => boolean(
                        "Re-run partitions whose inputs, config and code are unchanged. Default false.",
                    ),
                    "params" => json!({
                        "type": "object",
                        "maxProperties": limits::PARAMS_MAX,
                        "additionalProperties": {"type": ["string", "number", "boolean"]},
                        "description": format!("Values used as ${{params.NAME}} anywhere in the spec; override with --param NAME=VALUE. May use ${{run.X}} for X in: {}.", RUN_VARS.join(", ")),
                    }),
                    "schedule" => schedule(),
                    "defaults" => with_description(
                        object(DEFAULTS_FIELDS, &[], |h| match h {
                            "retries" => retries(),
                            "timeout" => duration("Per-attempt timeout. Default 1h."),
                            "resources" => resources(),
                            "constraints" => constraints(),
                            _ => undocumented(),
                        }),
                        "Settings every task starts from.",
                    ),
                    "tasks" => json!({
                        "type": "array",
                        "minItems": 1,
                        "maxItems": limits::TASKS_PER_JOB_MAX,
                        "items": {"$ref": "#/$defs/task"},
                        "description": "The task templates; dependsOn makes them a DAG.",
                    }),
                    _ => undocumented(),
                }),
                "What the job does.",
            ),
            _ => undocumented(),
        },
    );
    if let Some(map) = root.as_object_mut() {
        map.insert(
            "$schema".to_owned(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        map.insert(
            "$id".to_owned(),
            json!("https://drover.dev/schemas/job-v1.json"),
        );
        map.insert("title".to_owned(), json!("Drover job spec (drover/v1)"));
        map.insert(
            "$defs".to_owned(),
            json!({
                "task": task(),
                "reference": {"type": "string", "pattern": r"\$\{[^}]+\}", "description": "A ${params.X} or ${run.X} reference, resolved before validation."},
            }),
        );
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk<'v>(value: &'v Value, path: String, out: &mut Vec<(String, &'v Value)>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Object(props)) = map.get("properties") {
                    for (name, prop) in props {
                        out.push((format!("{path}.{name}"), prop));
                    }
                }
                // `if` clauses match on values; they define no fields.
                for (k, v) in map.iter().filter(|(k, _)| *k != "if") {
                    walk(v, format!("{path}/{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_property_has_a_description() {
        let schema = job_schema();
        let mut props = Vec::new();
        walk(&schema, String::new(), &mut props);
        assert!(props.len() > 60, "only {} properties found", props.len());
        for (path, prop) in props {
            let description = prop
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            assert!(
                !description.is_empty() && description != UNDOCUMENTED,
                "{path} has no description"
            );
        }
    }
}
