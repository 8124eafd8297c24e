//! `drover job plan`: validate a spec locally and print its task graph.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use drover_jobspecs::{Diagnostic, LoadOptions, Severity, plan};

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
            if args.json {
                println!("{}", serde_json::to_string_pretty(&plan.to_json())?);
            } else {
                for warning in &plan.warnings {
                    eprint!("{}", warning.render(&source));
                }
                print!("{}", plan.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(diagnostics) => {
            if args.json {
                let out = serde_json::json!({"valid": false, "diagnostics": diagnostics});
                println!("{}", serde_json::to_string_pretty(&out)?);
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
