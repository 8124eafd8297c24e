//! Expansion into the template graph: examples, scale, and properties that
//! hold for every valid spec (determinism, topological order, formatting
//! independence of the spec hash, cycles always caught).

use chrono::{TimeZone, Utc};
use drover_jobspecs::{LoadOptions, PartitionSet, plan};
use proptest::prelude::*;
use serde_json::{Value, json};

fn opts() -> LoadOptions {
    LoadOptions {
        params: Vec::new(),
        logical_time: Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(),
    }
}

fn example(name: &str) -> String {
    let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_example_plans() {
    let dir = format!("{}/examples", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "annotation-export.yaml",
            "dag-sleep.yaml",
            "dedup.yaml",
            "sensor-backfill.yaml"
        ]
    );
    for name in names {
        let p = plan(&name, &example(&name), &opts()).unwrap_or_else(|d| panic!("{name}: {d:#?}"));
        assert!(p.warnings.is_empty(), "{name}: {:?}", p.warnings);
        assert!(p.graph.total_tasks > 0);
    }
}

#[test]
fn dag_sleep_expands_as_drawn() {
    let p = plan("dag-sleep.yaml", &example("dag-sleep.yaml"), &opts()).unwrap();
    let ids: Vec<&str> = p.graph.templates.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["extract", "transform", "flaky", "load"]);
    let counts: Vec<u64> = p
        .graph
        .templates
        .iter()
        .map(|t| t.partition_count)
        .collect();
    assert_eq!(counts, [4, 3, 1, 1]);
    assert_eq!(p.graph.total_tasks, 9);
    assert_eq!(p.graph.templates[3].depends_on, [1, 2]);
    // ${params.sleepMs} was substituted and typed as a number.
    assert_eq!(
        p.graph.templates[0].config,
        json!({"ms": 200, "failTimes": 0})
    );
    assert_eq!(p.graph.templates[2].retries.max, 2);
}

#[test]
fn dedup_expands_into_its_stages() {
    let p = plan("dedup.yaml", &example("dedup.yaml"), &opts()).unwrap();
    let ids: Vec<&str> = p.graph.templates.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "dedup/signatures",
            "dedup/candidates",
            "dedup/verify",
            "dedup/components",
            "dedup/filter",
            "dedup/publish",
            "report"
        ]
    );
    // Each stage waits for the one before; those that read the
    // signatures' documents or the duplicate map wait for them too.
    let deps: Vec<&[usize]> = p
        .graph
        .templates
        .iter()
        .map(|t| t.depends_on.as_slice())
        .collect();
    assert_eq!(
        deps,
        [&[][..], &[0], &[1, 0], &[2, 0], &[3, 0], &[4, 3], &[5]]
    );
    // Bands and rows were derived from the threshold.
    let config = &p.graph.templates[0].config;
    let (b, r) = (
        config["bands"].as_u64().unwrap(),
        config["rows"].as_u64().unwrap(),
    );
    assert!(b * r <= 128 && b > 1 && r > 1, "{b}x{r}");
}

#[test]
fn sensor_backfill_uses_run_dates_and_overrides() {
    let src = example("sensor-backfill.yaml");
    let p = plan("s.yaml", &src, &opts()).unwrap();
    // The logical time is 2026-06-01 12:00 UTC, 05:00 in Los Angeles.
    assert_eq!(
        p.graph.templates[0].partitions.key(0).unwrap(),
        "2026-05-31"
    );
    assert_eq!(p.next_fire_times.len(), 5);
    let mut o = opts();
    o.params = vec![
        ("start".into(), "2026-01-01".into()),
        ("end".into(), "2026-03-31".into()),
    ];
    let backfill = plan("s.yaml", &src, &o).unwrap();
    assert_eq!(backfill.graph.templates[0].partition_count, 90);
    assert_ne!(
        p.spec_hash, backfill.spec_hash,
        "overrides are part of the identity"
    );
}

#[test]
fn partition_refs_resolve_per_task() {
    let src = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: t}\nspec:\n  tasks:\n    - name: a\n      kind: command\n      partitions: {daily: {start: \"2026-01-30\", end: \"2026-02-02\"}}\n      config: {argv: [echo, \"${partition.key}\", \"${partition.index}/${partition.count}\"]}\n";
    let p = plan("s", src, &opts()).unwrap();
    let t = &p.graph.templates[0];
    assert_eq!(
        t.task_config(2).unwrap()["argv"],
        json!(["echo", "2026-02-01", "2/4"])
    );
    assert_eq!(t.task_config(4), None);
}

#[test]
fn a_million_partitions_stay_one_small_template() {
    let src = "apiVersion: drover/v1\nkind: Job\nmetadata: {name: big}\nspec:\n  tasks:\n    - name: backfill\n      kind: sleep\n      partitions: {hourly: {start: \"2000-01-01T00\", end: \"2114-01-29T15\"}}\n      config: {ms: 1}\n    - {name: done, kind: noop, dependsOn: [backfill]}\n";
    let p = plan("big.yaml", src, &opts()).unwrap();
    let t = &p.graph.templates[0];
    assert_eq!(t.partition_count, 1_000_000);
    assert_eq!(p.graph.total_tasks, 1_000_001);
    assert_eq!(t.partitions.key(999_999).unwrap(), "2114-01-29T15");
    // The whole plan serialises to a few KiB: nothing per partition exists.
    let bytes = serde_json::to_vec(&p.to_json()).unwrap().len();
    assert!(bytes < 4096, "plan is {bytes} bytes");
    assert!(matches!(t.partitions, PartitionSet::Hourly { .. }));
}

/// Renders a JSON value as block-style YAML with double-quoted strings, so
/// one spec can be fed in two very different formattings.
fn block_yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter().rev() {
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        block_yaml(v, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        block_yaml(v, indent + 2, out);
                    }
                    _ => out.push_str(&format!("{pad}{k}: {v}   # trailing comment\n")),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                let mut nested = String::new();
                block_yaml(item, indent + 2, &mut nested);
                let trimmed = nested.trim_start().to_owned();
                match item {
                    Value::Object(_) | Value::Array(_) => {
                        out.push_str(&format!("{pad}- {trimmed}"))
                    }
                    _ => out.push_str(&format!("{pad}- {item}\n")),
                }
            }
        }
        scalar => out.push_str(&format!("{pad}{scalar}\n")),
    }
}

/// A random valid DAG spec: each task may depend on tasks declared before it
/// in a hidden order, then the list is shuffled so declaration order and
/// dependency order differ.
fn arb_spec() -> impl Strategy<Value = Value> {
    (1usize..10)
        .prop_flat_map(|n| {
            let deps = proptest::collection::vec(proptest::collection::vec(any::<bool>(), n), n);
            let kinds = proptest::collection::vec(0u8..5, n);
            let shards = proptest::collection::vec(1u64..50, n);
            let perm = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
            (deps, kinds, shards, perm)
        })
        .prop_map(|(deps, kinds, shards, perm)| {
            let n = kinds.len();
            let tasks: Vec<Value> = perm
                .iter()
                .map(|&i| {
                    let depends: Vec<String> =
                        (0..i).filter(|&j| deps[i][j]).map(|j| format!("t{j}")).collect();
                    let mut task = match kinds[i] {
                        0 => json!({"kind": "noop"}),
                        1 => json!({"kind": "sleep", "config": {"ms": shards[i]}, "partitions": {"shards": shards[i]}}),
                        2 => json!({"kind": "sleep", "config": {"ms": 1}, "partitions": {"daily": {"start": "2026-01-01", "end": format!("2026-02-{:02}", 1 + shards[i] % 28)}}}),
                        3 => json!({"kind": "dedup", "config": {"input": "file://i", "output": "file://o", "shards": shards[i], "method": if shards[i] % 2 == 0 { "exact" } else { "minhash" }}}),
                        _ => json!({"kind": "annotation_export", "config": {"input": "file://i", "output": "file://o", "shards": shards[i]}}),
                    };
                    task["name"] = json!(format!("t{i}"));
                    task["dependsOn"] = json!(depends);
                    task
                })
                .collect();
            let _ = n;
            json!({
                "apiVersion": "drover/v1",
                "kind": "Job",
                "metadata": {"name": "prop", "namespace": "team-a"},
                "spec": {"priority": 10, "tasks": tasks},
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn expansion_is_deterministic_topological_and_format_independent(spec in arb_spec()) {
        let flow = serde_json::to_string(&spec).unwrap();
        let mut block = String::from("# generated\n");
        block_yaml(&spec, 0, &mut block);

        let a = plan("a.yaml", &flow, &opts()).map_err(|d| TestCaseError::fail(format!("{d:#?}\n{flow}")))?;
        let b = plan("b.yaml", &block, &opts()).map_err(|d| TestCaseError::fail(format!("{d:#?}\n{block}")))?;
        let again = plan("a.yaml", &flow, &opts()).unwrap();

        // Same spec, whatever its formatting: same identity and same graph.
        prop_assert_eq!(&a.spec_hash, &b.spec_hash);
        prop_assert_eq!(a.to_json(), b.to_json());
        prop_assert_eq!(a.to_json(), again.to_json());

        let templates = &a.graph.templates;
        let total: u64 = templates.iter().map(|t| t.partition_count).sum();
        prop_assert_eq!(total, a.graph.total_tasks);
        for (i, t) in templates.iter().enumerate() {
            // Dependencies come first.
            prop_assert!(t.depends_on.iter().all(|d| *d < i), "{} depends on a later template", t.id);
            // A task's first stage waits for the last stage of each upstream task.
            let task = a.spec.tasks.iter().find(|s| s.name == t.task).unwrap();
            let first_stage = templates.iter().position(|x| x.task == t.task).unwrap() == i;
            if first_stage {
                let upstream: Vec<&str> = t.depends_on.iter().map(|d| templates[*d].task.as_str()).collect();
                let mut want: Vec<&str> = task.depends_on.iter().map(String::as_str).collect();
                let mut got = upstream.clone();
                want.sort();
                got.sort();
                prop_assert_eq!(got, want);
                for d in &t.depends_on {
                    let up = &templates[*d];
                    let last = templates.iter().rposition(|x| x.task == up.task).unwrap();
                    prop_assert_eq!(*d, last, "waits on the last stage of {}", up.task);
                }
            } else {
                // A later stage waits on the stage just before it first,
                // then on any earlier stage of its task it also reads.
                prop_assert!(!t.depends_on.is_empty());
                prop_assert_eq!(t.depends_on[0], i - 1);
                for d in &t.depends_on {
                    prop_assert_eq!(&templates[*d].task, &t.task);
                }
            }
        }
    }

    #[test]
    fn any_back_edge_is_reported_as_a_cycle(spec in arb_spec(), pick in any::<prop::sample::Index>()) {
        let mut spec = spec;
        let tasks = spec["spec"]["tasks"].as_array_mut().unwrap();
        // Find an edge a -> b and add b -> a; with none, make a self-loop.
        let edges: Vec<(usize, String)> = tasks.iter().enumerate().flat_map(|(i, t)| {
            t["dependsOn"].as_array().unwrap().iter().map(move |d| (i, d.as_str().unwrap().to_owned())).collect::<Vec<_>>()
        }).collect();
        if edges.is_empty() {
            let name = tasks[0]["name"].clone();
            tasks[0]["dependsOn"] = json!([name]);
        } else {
            let (from, to) = &edges[pick.index(edges.len())];
            let from_name = tasks[*from]["name"].clone();
            let target = tasks.iter_mut().find(|t| t["name"] == json!(to)).unwrap();
            target["dependsOn"].as_array_mut().unwrap().push(from_name);
        }
        let text = serde_json::to_string(&spec).unwrap();
        let diags = plan("c.yaml", &text, &opts()).err().unwrap_or_default();
        prop_assert!(
            diags.iter().any(|d| d.message.contains("cycle") || d.message.contains("depends on itself")),
            "{diags:#?}"
        );
    }
}
