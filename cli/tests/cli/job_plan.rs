//! `drover job plan` and `drover job schema` as a user runs them: the real
//! binary, real files, exit codes and output streams.

use std::path::PathBuf;
use std::process::{Command, Output};

fn drover(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .output()
        .expect("the drover binary runs")
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../jobspecs/examples")
}

fn write_spec(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drover-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn plan_prints_the_graph_for_every_example() {
    for name in [
        "annotation-export.yaml",
        "dag-sleep.yaml",
        "dedup.yaml",
        "sensor-backfill.yaml",
    ] {
        let path = examples().join(name);
        let out = drover(&[
            "job",
            "plan",
            path.to_str().unwrap(),
            "--at",
            "2026-06-01T12:00:00Z",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("templates,"), "{name}: {stdout}");
        assert!(stdout.contains("spec hash"), "{name}: {stdout}");
    }
    let path = examples().join("sensor-backfill.yaml");
    let out = drover(&[
        "job",
        "plan",
        path.to_str().unwrap(),
        "--at",
        "2026-06-01T12:00:00Z",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2026-06-02 03:00:00 PDT"), "{stdout}");
    assert_eq!(
        stdout.matches(" PDT ").count(),
        5,
        "five next fire times: {stdout}"
    );
}

/// The check the DST issue was found with: `job plan --at T --json` for a
/// list of hours around both 2026 transitions of New York and Berlin.
#[test]
fn plan_lists_fire_times_across_dst_transitions_by_the_fixed_time_rule() {
    let cases = [
        (
            "America/New_York",
            "2026-03-07T12:00:00Z",
            [
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T03:15:00-04:00",
                "2026-03-09T02:15:00-04:00",
            ],
        ),
        (
            "America/New_York",
            "2026-10-31T12:00:00Z",
            [
                "2026-11-01T02:15:00-05:00",
                "2026-11-01T03:15:00-05:00",
                "2026-11-02T02:15:00-05:00",
            ],
        ),
        (
            "Europe/Berlin",
            "2026-03-28T12:00:00Z",
            [
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:15:00+02:00",
                "2026-03-30T02:15:00+02:00",
            ],
        ),
        (
            "Europe/Berlin",
            "2026-10-24T12:00:00Z",
            [
                "2026-10-25T02:15:00+02:00",
                "2026-10-25T03:15:00+01:00",
                "2026-10-26T02:15:00+01:00",
            ],
        ),
    ];
    for (zone, at, expected) in cases {
        let spec = write_spec(
            "dst.yaml",
            &format!(
                "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: nightly}}\nspec:\n  \
                 schedule: {{cron: \"15 2,3 * * *\", timezone: {zone}}}\n  \
                 tasks: [{{name: a, kind: noop}}]\n"
            ),
        );
        let out = drover(&["job", "plan", spec.to_str().unwrap(), "--at", at, "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let times: Vec<&str> = v["schedule"]["nextFireTimes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(times[..3], expected, "{zone} from {at}");
    }
}

#[test]
fn invalid_spec_exits_1_with_positioned_errors_on_stderr() {
    let path = write_spec(
        "broken.yaml",
        "apiVersion: drover/v1\nkind: Job\nmetadata: {name: t}\nspec:\n  tasks:\n    - name: a\n      kind: noop\n      dependOn: [b]\n",
    );
    let p = path.to_str().unwrap();
    let out = drover(&["job", "plan", p]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("--> {p}:8:7")), "{stderr}");
    assert!(
        stderr.contains("hint: did you mean `dependsOn`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("is not a valid job spec (1 error)"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn json_output_for_valid_and_invalid_specs() {
    let good = examples().join("dag-sleep.yaml");
    let out = drover(&[
        "job",
        "plan",
        good.to_str().unwrap(),
        "--json",
        "--param",
        "sleepMs=5",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["totalTasks"], 9);
    assert_eq!(
        v["templates"][3]["dependsOn"],
        serde_json::json!(["transform", "flaky"])
    );
    assert_eq!(v["templates"][0]["config"]["ms"], 5);

    let bad = write_spec(
        "bad.yaml",
        "apiVersion: drover/v1\nkind: Job\nmetadata: {name: t}\nspec: {priority: 900, tasks: [{name: a, kind: noop}]}\n",
    );
    let out = drover(&["job", "plan", bad.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let d = &v["diagnostics"][0];
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(4), Some(18))
    );
    assert_eq!(d["path"], "spec.priority");
}

#[test]
fn bad_param_flag_and_missing_file_are_one_line_errors() {
    let good = examples().join("dag-sleep.yaml");
    let out = drover(&["job", "plan", good.to_str().unwrap(), "--param", "nope=1"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the spec has no param `nope`"), "{stderr}");

    let out = drover(&["job", "plan", "/nonexistent/spec.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: opening /nonexistent/spec.yaml"),
        "{stderr}"
    );
}

#[test]
fn oversized_spec_is_refused_before_loading() {
    let big = write_spec("big.yaml", &"#".repeat(2 * 1024 * 1024));
    let out = drover(&["job", "plan", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("spec limit"));
}

#[test]
fn spec_from_standard_input() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["job", "plan", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"apiVersion: drover/v1\nkind: Job\nmetadata: {name: t}\nspec: {tasks: [{name: a, kind: nop}]}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--> <stdin>:4:"), "{stderr}");
    assert!(stderr.contains("did you mean `noop`?"), "{stderr}");
}

#[test]
fn schema_is_json_schema_with_every_top_level_field() {
    let out = drover(&["job", "schema"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    for field in ["apiVersion", "kind", "metadata", "spec"] {
        assert!(v["properties"][field].is_object(), "{field}");
    }
    assert!(v["$defs"]["task"]["properties"]["dependsOn"].is_object());
}

#[test]
fn check_input_reads_a_directory_without_a_manifest_and_names_what_the_job_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("annotations");
    let out = drover(&["datagen", "annotations", "--out", data.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // As another tool would leave it: no manifest.
    std::fs::remove_file(data.join("_manifest.json")).unwrap();
    let spec = std::fs::read_to_string(examples().join("annotation-export.yaml"))
        .unwrap()
        .replace(
            "${params.data}/annotations",
            &format!("file://{}", data.display()),
        );
    let spec_path = dir.path().join("export.yaml");
    std::fs::write(&spec_path, spec).unwrap();
    let plan = |extra: &[&str]| {
        let mut args = vec!["job", "plan", spec_path.to_str().unwrap(), "--check-input"];
        args.extend_from_slice(extra);
        drover(&args)
    };
    let out = plan(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("input of task `export` (annotation_export)"),
        "{stdout}"
    );
    assert!(stdout.contains("found by listing; 2 read"), "{stdout}");
    assert!(
        stdout.contains("ok: the job can read every file checked"),
        "{stdout}"
    );

    // A CSV dropped beside the Parquet files, without the time column.
    std::fs::write(
        data.join("late.csv"),
        "project,task_type,item_id,annotator_id,label\np,classification,i,a,cat\n",
    )
    .unwrap();
    let out = plan(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("error: input late.csv has no `created_at` column (timestamp)"),
        "{stdout}"
    );
    let out = plan(&["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let input = &json["inputs"][0];
    assert_eq!(input["task"], "export");
    assert_eq!(input["files"], 3);
    assert_eq!(input["fromManifest"], false);
    assert!(
        input["problems"][0].as_str().unwrap().contains("late.csv"),
        "{input}"
    );
}
