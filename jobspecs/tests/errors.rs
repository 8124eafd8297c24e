//! Every class of spec error is reported with its line, column and a hint,
//! and all errors of a spec are reported in one run.

use chrono::{TimeZone, Utc};
use drover_jobspecs::{Diagnostic, LoadOptions, Severity, plan};

fn opts() -> LoadOptions {
    LoadOptions {
        params: Vec::new(),
        logical_time: Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(),
    }
}

/// A valid spec around `tasks` (indented as list items under `tasks:`).
fn with_tasks(tasks: &str) -> String {
    format!("apiVersion: drover/v1\nkind: Job\nmetadata:\n  name: t\nspec:\n  tasks:\n{tasks}")
}

fn errors(source: &str) -> Vec<Diagnostic> {
    errors_with(source, opts())
}

fn errors_with(source: &str, opts: LoadOptions) -> Vec<Diagnostic> {
    match plan("spec.yaml", source, &opts) {
        Ok(_) => panic!("expected the spec to be rejected:\n{source}"),
        Err(diags) => diags
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect(),
    }
}

/// Asserts exactly one error, at `line:column`, whose message contains
/// `message`; returns it for further checks.
fn one_error(source: &str, line: u32, column: u32, message: &str) -> Diagnostic {
    let errs = errors(source);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    let e = errs.into_iter().next().unwrap();
    assert_eq!((e.line, e.column), (line, column), "{e:#?}");
    assert!(
        e.message.contains(message),
        "{:?} lacks {message:?}",
        e.message
    );
    assert_eq!(e.file, "spec.yaml");
    e
}

fn hint(e: &Diagnostic) -> &str {
    e.hint.as_deref().unwrap_or("")
}

#[test]
fn valid_minimal_spec_plans() {
    let p = plan(
        "spec.yaml",
        &with_tasks("    - {name: a, kind: noop}\n"),
        &opts(),
    )
    .unwrap();
    assert_eq!(p.graph.total_tasks, 1);
    assert_eq!(p.spec.namespace, "default");
}

#[test]
fn yaml_syntax_error() {
    let src = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: t\nspec: {}\n";
    let errs = errors(src);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.starts_with("invalid YAML"), "{:?}", errs[0]);
    assert!(errs[0].line >= 3);
}

#[test]
fn unknown_field_with_suggestion() {
    let src = with_tasks("    - name: a\n      kind: noop\n      dependOn: []\n");
    let e = one_error(&src, 9, 7, "unknown field `dependOn`");
    assert_eq!(hint(&e), "did you mean `dependsOn`?");
    assert_eq!(e.path, "spec.tasks[0].dependOn");
}

#[test]
fn unknown_top_level_field_lists_the_known_ones() {
    let src = format!(
        "{}status: {{}}\n",
        with_tasks("    - {name: a, kind: noop}\n")
    );
    let e = one_error(&src, 8, 1, "unknown field `status` at the top level");
    assert!(
        hint(&e).contains("apiVersion, kind, metadata, spec"),
        "{}",
        hint(&e)
    );
}

#[test]
fn snake_case_spelling_is_recognised() {
    let src = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: t}\nspec:\n  max_parallel: 4\n  tasks: [{name: a, kind: noop}]\n";
    let e = one_error(src, 5, 3, "unknown field `max_parallel`");
    assert_eq!(hint(&e), "did you mean `maxParallel`?");
}

#[test]
fn wrong_types() {
    let src = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: t}\nspec:\n  priority: high\n  recompute: yes\n  tasks: {name: a}\n";
    let errs = errors(src);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert_eq!((errs[0].line, errs[0].column), (5, 13));
    assert!(
        errs[0]
            .message
            .contains("expected an integer from 0 to 100, found string `high`")
    );
    assert_eq!((errs[1].line, errs[1].column), (6, 14));
    assert!(hint(&errs[1]).contains("true or false"));
    assert_eq!((errs[2].line, errs[2].column), (7, 10));
    assert!(errs[2].message.contains("expected a list, found mapping"));
}

#[test]
fn quoted_number_gets_a_hint() {
    let src = with_tasks("    - {name: a, kind: sleep, config: {ms: \"10\"}}\n");
    let e = one_error(&src, 7, 43, "expected an integer");
    assert!(hint(&e).contains("remove the quotes"));
}

#[test]
fn out_of_range_values() {
    let src = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: t}\nspec:\n  priority: 101\n  tasks: [{name: a, kind: noop}]\n";
    one_error(src, 5, 13, "101 is out of range");
}

#[test]
fn unknown_kind() {
    let src = with_tasks("    - {name: a, kind: sensor_backfill}\n");
    let e = one_error(&src, 7, 23, "unknown task kind `sensor_backfill`");
    assert!(hint(&e).contains("sensor_feature_backfill"), "{}", hint(&e));
}

#[test]
fn duplicate_task_names() {
    let src = with_tasks("    - {name: a, kind: noop}\n    - {name: a, kind: noop}\n");
    let e = one_error(&src, 8, 14, "duplicate task name `a`");
    assert!(hint(&e).contains("spec.tasks[0]"));
}

#[test]
fn duplicate_yaml_keys() {
    let src = with_tasks("    - name: a\n      kind: noop\n      name: b\n");
    let e = one_error(&src, 9, 7, "duplicate key `name`");
    assert!(hint(&e).contains("line 7"));
}

#[test]
fn missing_dependency() {
    let src = with_tasks(
        "    - {name: features, kind: noop}\n    - {name: b, kind: noop, dependsOn: [featurs]}\n",
    );
    let e = one_error(&src, 8, 41, "dependsOn names `featurs`");
    assert_eq!(hint(&e), "did you mean `features`?");
}

#[test]
fn dependency_cycle_is_named() {
    let src = with_tasks(
        "    - {name: a, kind: noop, dependsOn: [c]}\n    - {name: b, kind: noop, dependsOn: [a]}\n    - {name: c, kind: noop, dependsOn: [b]}\n    - {name: d, kind: noop, dependsOn: [d]}\n",
    );
    let errs = errors(&src);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(errs[0].message, "dependency cycle: a -> c -> b -> a");
    // Reported at the edge that closes the cycle: b -> a.
    assert_eq!((errs[0].line, errs[0].column), (8, 41));
    assert_eq!(errs[1].message, "task `d` depends on itself");
}

#[test]
fn cycle_is_found_even_when_a_task_has_other_errors() {
    let src = with_tasks(
        "    - {name: a, kind: noop, dependsOn: [b]}\n    - {name: b, kind: noop, dependsOn: [a, zzz]}\n",
    );
    let errs = errors(&src);
    assert!(
        errs.iter()
            .any(|e| e.message == "dependency cycle: a -> b -> a"),
        "{errs:#?}"
    );
    assert!(errs.iter().any(|e| e.message.contains("`zzz`")));
}

#[test]
fn invalid_cron() {
    let src = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: t}\nspec:\n  schedule: {cron: \"61 * * * *\"}\n  tasks: [{name: a, kind: noop}]\n";
    let e = one_error(src, 5, 20, "invalid cron pattern `61 * * * *`");
    assert!(hint(&e).contains("minute hour day-of-month"));
    let src = src.replace("61 * * * *", "0 3 * *");
    one_error(&src, 5, 20, "expected 5 fields");
    let src = src.replace("0 3 * *", "0 0 30 2 *");
    one_error(&src, 5, 20, "never fires");
}

#[test]
fn invalid_timezone() {
    let src = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: t}\nspec:\n  schedule: {cron: \"@daily\", timezone: Europe/Berln}\n  tasks: [{name: a, kind: noop}]\n";
    let e = one_error(src, 5, 40, "unknown timezone `Europe/Berln`");
    assert_eq!(hint(&e), "did you mean `Europe/Berlin`?");
}

#[test]
fn bad_durations() {
    let src = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: t}\nspec:\n  defaults:\n    timeout: 30\n    retries: {initialDelay: 10 fortnights}\n  tasks: [{name: a, kind: noop, timeout: 9999d}]\n";
    let errs = errors(src);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert_eq!((errs[0].line, errs[0].column), (6, 14));
    assert!(errs[0].message.contains("`30` has no unit"));
    assert!(errs[1].message.contains("is not a duration"));
    assert!(errs[2].message.contains("out of range"));
}

#[test]
fn initial_delay_longer_than_max_delay() {
    let src = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: t}\nspec:\n  tasks:\n    - {name: a, kind: noop, retries: {initialDelay: 10m, maxDelay: 1m}}\n";
    one_error(src, 6, 38, "initialDelay 10m is longer than maxDelay 1m");
}

#[test]
fn start_after_end() {
    let src = with_tasks(
        "    - name: a\n      kind: noop\n      partitions: {daily: {start: \"2026-02-01\", end: \"2026-01-31\"}}\n",
    );
    let e = one_error(&src, 9, 35, "start 2026-02-01 is after end 2026-01-31");
    assert!(hint(&e).contains("inclusive"));
}

#[test]
fn unresolved_param_points_at_the_reference() {
    let src = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: t}\nspec:\n  params: {start: \"2026-01-01\"}\n  tasks:\n    - name: a\n      kind: noop\n      partitions:\n        daily:\n          start: ${params.start}\n          end: ${params.ned}\n";
    let e = one_error(src, 12, 16, "unresolved reference `${params.ned}`");
    assert_eq!(hint(&e), "declared params: start");
    // Inside a longer plain scalar the column is that of the reference.
    let src = src
        .replace("end: ${params.ned}", "end: ${params.start}")
        .replace(
            "      kind: noop\n",
            "      kind: sleep\n      config:\n        ms: 1${params.sart}\n",
        );
    let e = one_error(&src, 10, 14, "unresolved reference `${params.sart}`");
    assert_eq!(hint(&e), "did you mean `${params.start}`?");
}

#[test]
fn partition_refs_only_in_config() {
    let src = with_tasks("    - {name: \"${partition.key}\", kind: noop}\n");
    let errs = errors(&src);
    assert!(
        errs[0]
            .message
            .contains("only available inside a task's `config`"),
        "{errs:#?}"
    );
}

#[test]
fn unknown_param_override_is_an_error() {
    let src = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: t}\nspec:\n  params: {start: x}\n  tasks: [{name: a, kind: noop}]\n";
    let mut o = opts();
    o.params = vec![("strat".into(), "y".into())];
    let errs = errors_with(src, o);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 0, "command-line errors have no position");
    assert!(hint(&errs[0]).contains("--param start="));
}

#[test]
fn param_override_changes_the_plan() {
    let src = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: t}\nspec:\n  params: {n: \"2\"}\n  tasks: [{name: a, kind: noop, partitions: {shards: \"${params.n}\"}}]\n";
    let mut o = opts();
    assert_eq!(plan("s", src, &o).unwrap().graph.total_tasks, 2);
    o.params = vec![("n".into(), "40".into())];
    assert_eq!(plan("s", src, &o).unwrap().graph.total_tasks, 40);
}

#[test]
fn per_kind_config_errors() {
    let src = with_tasks(concat!(
        "    - {name: s, kind: sleep}\n",
        "    - {name: c, kind: command, config: {argv: []}}\n",
        "    - {name: e, kind: annotation_export, config: {input: data/x, output: \"file://o\", formats: [coco, xml]}}\n",
        "    - {name: d, kind: dedup, config: {input: \"s3://b/t\", output: \"s3://b/o\", bands: 64, rows: 4, keep: field}}\n",
        "    - {name: f, kind: sensor_feature_backfill, partitions: {shards: 3}, config: {input: \"file://i\", output: \"file://o\", window: 7m}}\n",
        "    - {name: n, kind: noop, config: {x: 1}}\n",
    ));
    let errs = errors(&src);
    let messages: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
    let expect = [
        "kind `sleep` needs a `config`",
        "`argv` is empty",
        "is not a dataset URL",
        "`xml` is not a valid `formats`",
        "bands × rows = 256 exceeds numPerm = 128",
        "`keep: field` needs `keepField`",
        "partitions must be dates",
        "a 7m window does not divide a day",
        "kind `noop` takes no config",
    ];
    for want in expect {
        assert!(
            messages.iter().any(|m| m.contains(want)),
            "missing {want:?} in {messages:#?}"
        );
    }
    assert_eq!(errs.len(), expect.len(), "{messages:#?}");
}

#[test]
fn secrets_in_specs_are_refused() {
    let src = with_tasks(
        "    - {name: e, kind: annotation_export, config: {input: \"file://i\", output: \"file://o\", pseudonymize: {key: hunter2}}}\n",
    );
    let e = one_error(&src, 7, 105, "secret keys must not be written in a spec");
    assert!(hint(&e).contains("keyEnv"));
}

#[test]
fn dataset_urls_cannot_climb_out_with_dot_dot() {
    for url in [
        "file://./data/../../etc",
        "s3://bucket/team-a/../team-b",
        "file://..",
        "file://a\\..\\b",
    ] {
        let src = with_tasks(&format!(
            "    - {{name: d, kind: dedup, config: {{input: '{url}', output: \"file://o\"}}}}\n"
        ));
        let errs = errors(&src);
        assert_eq!(errs.len(), 1, "{url}: {errs:#?}");
        assert!(
            errs[0]
                .message
                .contains("climbs out of its location with `..`"),
            "{url}: {}",
            errs[0].message
        );
    }
    // A name that merely contains dots is fine.
    let src = with_tasks(
        "    - {name: d, kind: dedup, config: {input: \"file://./data/v1..v2\", output: \"file://o\"}}\n",
    );
    if let Err(diags) = plan("spec.yaml", &src, &opts()) {
        assert!(
            diags.iter().all(|d| d.severity != Severity::Error),
            "{diags:#?}"
        );
    }
}

#[test]
fn partitioned_kinds_refuse_task_partitions() {
    let src = with_tasks(
        "    - {name: e, kind: dedup, partitions: {shards: 2}, config: {input: \"file://i\", output: \"file://o\"}}\n",
    );
    let e = one_error(&src, 7, 30, "kind `dedup` splits its work itself");
    assert!(hint(&e).contains("config.shards"));
}

#[test]
fn header_errors() {
    let src = "apiVersion: drover/v2\nkind: Jobs\nmetadata: {name: t}\nspec: {tasks: [{name: a, kind: noop}]}\n";
    let errs = errors(src);
    assert_eq!(errs.len(), 2);
    assert!(
        errs[0]
            .message
            .contains("unsupported apiVersion `drover/v2`")
    );
    assert!(errs[1].message.contains("unsupported kind `Jobs`"));
}

#[test]
fn names_are_checked_with_a_fix() {
    let src = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: My Job!}\nspec: {tasks: [{name: a, kind: noop}]}\n";
    let e = one_error(src, 3, 18, "`My Job!` is not a valid job name");
    assert!(hint(&e).contains("`my-job`"), "{}", hint(&e));
}

#[test]
fn limits_spec_size() {
    let big = format!(
        "{}# {}\n",
        with_tasks("    - {name: a, kind: noop}\n"),
        "x".repeat(1024 * 1024)
    );
    let e = one_error(&big, 1, 1, "the limit is 1048576 bytes");
    assert!(!hint(&e).is_empty());
}

#[test]
fn limits_task_count() {
    let tasks: String = (0..257)
        .map(|i| format!("    - {{name: t{i}, kind: noop}}\n"))
        .collect();
    one_error(
        &with_tasks(&tasks),
        7,
        5,
        "the job has 257 tasks; the limit is 256",
    );
}

#[test]
fn limits_partitions_per_template() {
    let ok = with_tasks("    - {name: a, kind: noop, partitions: {shards: 10000000}}\n");
    assert_eq!(
        plan("s", &ok, &opts()).unwrap().graph.total_tasks,
        10_000_000
    );
    let over = with_tasks("    - {name: a, kind: noop, partitions: {shards: 10000001}}\n");
    one_error(&over, 7, 50, "out of range");
    // Ranges are checked on their count: 1,200 years of hours.
    let hours = with_tasks(
        "    - {name: a, kind: noop, partitions: {hourly: {start: \"2000-01-01T00\", end: \"3200-01-01T00\"}}}\n",
    );
    one_error(
        &hours,
        7,
        50,
        "partitions is more than the limit of 10000000",
    );
}

#[test]
fn limits_total_tasks() {
    let tasks: String = (0..3)
        .map(|i| format!("    - {{name: t{i}, kind: noop, partitions: {{shards: 9000000}}}}\n"))
        .collect();
    let errs = errors(&with_tasks(&tasks));
    assert!(
        errs[0].message.contains("expands into 27000000 tasks"),
        "{errs:#?}"
    );
}

#[test]
fn limits_name_length() {
    let long = "a".repeat(64);
    let src = format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: {long}}}\nspec: {{tasks: [{{name: a, kind: noop}}]}}\n"
    );
    one_error(&src, 3, 18, "is 64 characters long; the limit is 63");
}

#[test]
fn billion_laughs_is_refused() {
    let mut src = String::from(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {name: t}\nx0: &x0 [a, a, a, a, a, a, a, a, a, a]\n",
    );
    for i in 1..9 {
        let p = i - 1;
        let refs = vec![format!("*x{p}"); 10].join(", ");
        src.push_str(&format!("x{i}: &x{i} [{refs}]\n"));
    }
    let errs = errors(&src);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("YAML nodes"));
}

#[test]
fn empty_and_multi_document_files() {
    assert!(errors("")[0].message.contains("empty"));
    assert!(errors("# just a comment\n")[0].message.contains("empty"));
    let two = format!(
        "{}---\n{}",
        with_tasks("    - {name: a, kind: noop}\n"),
        with_tasks("    - {name: b, kind: noop}\n")
    );
    assert!(
        errors(&two)[0]
            .message
            .contains("more than one YAML document")
    );
}

#[test]
fn every_error_is_reported_in_one_run_in_source_order() {
    let src = "\
apiVersion: drover/v1
kind: Job
metadata: {name: Bad_Name}
spec:
  priority: 500
  maxParalel: 3
  schedule: {cron: \"* * *\", timezone: Mars/Olympus, catchup: sometimes}
  defaults: {timeout: 5}
  tasks:
    - {name: a, kind: noop, dependsOn: [b]}
    - {name: b, kind: noop, dependsOn: [a]}
    - {name: c, kind: slep}
";
    let errs = errors(src);
    let lines: Vec<u32> = errs.iter().map(|e| e.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "diagnostics are sorted by position");
    let messages: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
    for want in [
        "not a valid job name",
        "500 is out of range",
        "unknown field `maxParalel`",
        "invalid cron pattern",
        "unknown timezone",
        "not a valid `catchup`",
        "has no unit",
        "dependency cycle: a -> b -> a",
        "unknown task kind `slep`",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(want)),
            "missing {want:?}: {messages:#?}"
        );
    }
    assert_eq!(errs.len(), 9, "{messages:#?}");
}

#[test]
fn rendered_diagnostics_show_the_line_and_a_caret() {
    let src = with_tasks("    - name: a\n      kind: noop\n      dependOn: []\n");
    let e = errors(&src).remove(0);
    let text = e.render(&src);
    assert!(text.contains("--> spec.yaml:9:7"), "{text}");
    assert!(text.contains("9 |       dependOn: []"), "{text}");
    assert!(text.contains("  |       ^^^^^^^^\n"), "{text}");
    assert!(text.contains("hint: did you mean `dependsOn`?"), "{text}");
}

#[test]
fn secrets_written_into_a_spec_are_refused_where_they_are() {
    let token = format!("drv_0123456789ab_{}", "0".repeat(64));
    // In a label, at the value.
    let src = format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata:\n  name: t\n  labels: {{auth: \"{token}\"}}\nspec:\n  tasks:\n    - {{name: a, kind: noop}}\n"
    );
    let e = one_error(&src, 5, 18, "looks like a Drover API token");
    assert!(hint(&e).contains("keyEnv"), "{e:#?}");
    assert!(
        !e.message.contains(&token),
        "the error must not echo the secret"
    );
    // In a command's environment, by the variable's name.
    let src = with_tasks(
        "    - {name: c, kind: command, config: {argv: [\"true\"], env: {AWS_SECRET_ACCESS_KEY: abc, MAX_TOKENS: \"5\"}}}\n",
    );
    let e = one_error(&src, 7, 63, "`AWS_SECRET_ACCESS_KEY` holds a secret");
    assert!(hint(&e).contains("inherits the worker's environment"));
    // In an s3 URL's authority, or as a presigned query.
    let src = with_tasks(
        "    - {name: d, kind: dedup, config: {input: \"s3://AKID:SECRET@bucket/in\", output: \"s3://bucket/out?X-Amz-Signature=ab\"}}\n",
    );
    let errs = errors(&src);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].message.contains("must not carry credentials"));
    assert!(errs[1].message.contains("has a query or fragment"));
    // Through a param, where it is used and where it is passed.
    let src = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: t}\nspec:\n  params: {key: none}\n  tasks:\n    - {name: c, kind: command, config: {argv: [echo, \"${params.key}\"]}}\n";
    let errs = errors_with(
        src,
        LoadOptions {
            params: vec![("key".into(), "AKIAIOSFODNN7EXAMPLE".into())],
            ..opts()
        },
    );
    assert!(
        errs.iter().any(|e| e
            .message
            .contains("param `key` looks like an AWS access key id")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.path == "spec.tasks[0].config.argv[1]"),
        "{errs:#?}"
    );
}
