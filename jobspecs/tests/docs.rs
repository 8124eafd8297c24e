//! The format reference in jobspecs/README.md names every field the decoder
//! accepts, so the documentation cannot fall behind the code.

use drover_jobspecs::kinds::{self, annotation_export, builtin, dedup, sensor};
use drover_jobspecs::{interpolate, load, partitions, schedule};

#[test]
fn readme_documents_every_field_kind_and_variable() {
    let path = format!("{}/README.md", env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(&path).expect("jobspecs/README.md exists");
    let lists: &[(&str, &[&str])] = &[
        ("top level", load::TOP_FIELDS),
        ("metadata", load::METADATA_FIELDS),
        ("spec", load::SPEC_FIELDS),
        ("defaults", load::DEFAULTS_FIELDS),
        ("retries", load::RETRY_FIELDS),
        ("task", load::TASK_FIELDS),
        ("resources", load::RESOURCES_FIELDS),
        ("constraints", load::CONSTRAINTS_FIELDS),
        ("schedule", schedule::SCHEDULE_FIELDS),
        ("partitions", partitions::PARTITION_FIELDS),
        ("ranges", partitions::RANGE_FIELDS),
        ("pseudonymize", kinds::KEY_SOURCE_FIELDS),
        ("sleep", builtin::SLEEP_FIELDS),
        ("command", builtin::COMMAND_FIELDS),
        ("annotation_export", annotation_export::FIELDS),
        ("consensus", annotation_export::CONSENSUS_FIELDS),
        ("timeWindow", annotation_export::TIME_WINDOW_FIELDS),
        ("dedup", dedup::FIELDS),
        ("shingle", dedup::SHINGLE_FIELDS),
        ("sensor_feature_backfill", sensor::FIELDS),
        ("kinds", kinds::KIND_NAMES),
        ("sensor features", sensor::FEATURES),
        ("${run.*}", interpolate::RUN_VARS),
        ("${partition.*}", interpolate::PARTITION_VARS),
    ];
    let mut missing = Vec::new();
    for (what, fields) in lists {
        for field in *fields {
            if !readme.contains(&format!("`{field}`")) && !readme.contains(&format!(".{field}}}`"))
            {
                missing.push(format!("{what}: `{field}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "jobspecs/README.md does not document:\n{}",
        missing.join("\n")
    );
}
