//! `drover job plan`: validate a spec locally and print its task graph.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use drover_jobspecs::{Diagnostic, LoadOptions, Severity, plan};
use drover_worker::executors::input_check::InputCheck;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The spec file, or `-` for standard input.
    spec: String,
    /// Override a param declared under `spec.params` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Print the plan (or the diagnostics) as JSON on standard output.
    #[arg(long)]
    json: bool,
    /// Logical time of the run for `${run.*}` and the start of the listed
    /// fire times (RFC 3339); defaults to now.
    #[arg(long, value_name = "TIME")]
    at: Option<DateTime<Utc>>,
    /// Also read each data task's input as its tasks would (listing or
    /// manifest, each file's columns and types) and report what the job
    /// could not use; exits 1 if anything.
    #[arg(long)]
    check_input: bool,
}

pub(super) fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, found `{text}`")),
    }
}

/// Reads the spec, refusing files over the spec limit before loading them.
pub(super) fn read_spec(path: &str) -> Result<(String, String)> {
    let limit = drover_jobspecs::limits::SPEC_BYTES_MAX as u64;
    let mut bytes = Vec::new();
    let name = if path == "-" {
        std::io::stdin()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .context("reading the spec from standard input")?;
        "<stdin>".to_owned()
    } else {
        std::fs::File::open(path)
            .with_context(|| format!("opening {path}"))?
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {path}"))?;
        path.to_owned()
    };
    if bytes.len() as u64 > limit {
        bail!("{name} is larger than the {limit}-byte spec limit");
    }
    let text = String::from_utf8(bytes).with_context(|| format!("{name} is not UTF-8 text"))?;
    Ok((name, text))
}

pub(super) fn run(args: PlanArgs) -> Result<ExitCode> {
    let (name, source) = read_spec(&args.spec)?;
    let opts = LoadOptions {
        params: args.params,
        logical_time: args.at.unwrap_or_else(Utc::now),
    };
    match plan(&name, &source, &opts) {
        Ok(plan) => {
            let inputs = if args.check_input {
                Some(check_inputs(&plan)?)
            } else {
                None
            };
            let usable = inputs.as_ref().is_none_or(|i| i.iter().all(|c| c.ok()));
            if args.json {
                let mut out = plan.to_json();
                if let (Some(inputs), Some(o)) = (&inputs, out.as_object_mut()) {
                    o.insert("inputs".into(), serde_json::to_value(inputs)?);
                }
                outln!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for warning in &plan.warnings {
                    eprint!("{}", warning.render(&source));
                }
                out!("{}", plan.render());
                for c in inputs.iter().flatten() {
                    out!("{}", c.render());
                }
            }
            Ok(if usable {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(diagnostics) => {
            if args.json {
                let out = serde_json::json!({"valid": false, "diagnostics": diagnostics});
                outln!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                report(&name, &source, &diagnostics);
            }
            Ok(ExitCode::from(1))
        }
    }
}

pub(super) fn report(name: &str, source: &str, diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        eprintln!("{}", d.render(source));
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let plural = if errors == 1 { "" } else { "s" };
    eprintln!("error: {name} is not a valid job spec ({errors} error{plural})");
}

/// One task's input as `--check-input` found it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskInput {
    task: String,
    kind: &'static str,
    #[serde(flatten)]
    found: Option<InputCheck>,
    /// Why the input could not be read at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl TaskInput {
    fn ok(&self) -> bool {
        self.error.is_none() && self.found.as_ref().is_some_and(InputCheck::ok)
    }

    fn render(&self) -> String {
        use std::fmt::Write;

        let mut out = format!("\ninput of task `{}` ({}):", self.task, self.kind);
        if let Some(e) = &self.error {
            let _ = writeln!(out, "\n  error: {e}");
            return out;
        }
        let Some(c) = &self.found else {
            return out;
        };
        if c.files == 0 {
            let _ = writeln!(out, " {}\n  no files yet", c.input);
        }
        let by: Vec<String> = c.formats.iter().map(|(f, n)| format!("{f} {n}")).collect();
        let _ = (c.files > 0).then(|| {
            writeln!(
                out,
                " {}\n  {} file{}, {} ({}), {}; {} read",
                c.input,
                c.files,
                if c.files == 1 { "" } else { "s" },
                human_bytes(c.bytes),
                by.join(", "),
                if c.from_manifest {
                    "named by its _manifest.json"
                } else {
                    "found by listing"
                },
                c.checked,
            )
        });
        for p in &c.problems {
            let _ = writeln!(out, "  error: {p}");
        }
        for n in &c.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        if c.ok() && c.checked > 0 {
            let _ = writeln!(out, "  ok: the job can read every file checked");
        }
        out
    }
}

/// Reads every data task's input as its tasks would.
fn check_inputs(plan: &drover_jobspecs::Plan) -> Result<Vec<TaskInput>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut out = Vec::new();
    for t in &plan.spec.tasks {
        let Some(found) = rt.block_on(drover_worker::executors::check_input(
            &t.kind,
            &t.partitions,
        )) else {
            continue;
        };
        let (found, error) = match found {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e.message)),
        };
        out.push(TaskInput {
            task: t.name.clone(),
            kind: t.kind.name(),
            found,
            error,
        });
    }
    Ok(out)
}

/// `bytes` for people: 1.2 MiB.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
