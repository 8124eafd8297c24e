//! `drover job submit`: send a spec to the cluster; with `--wait`, follow the
//! job to its end and exit with its outcome.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use drover_jobspecs::{Diagnostic, Severity};
use drover_net::{CallError, Coordinators};
use drover_proto::v1::{DiagnosticList, SubmitJobRequest};
use drover_proto::{DIAGNOSTICS_METADATA_KEY, TRACEPARENT_METADATA_KEY};
use prost::Message;
use tonic::Code;

use super::{plan, render, watch};

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The spec file, or `-` for standard input.
    spec: String,
    /// Override a param declared under `spec.params` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = plan::parse_param)]
    params: Vec<(String, String)>,
    /// Submitting again with the same key returns the first job instead of
    /// starting another (safe retries from scripts and CI).
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Run the spec once now as a job even if it has a `schedule`, which
    /// is ignored: a backfill (`--once --param start=... --param
    /// end=...`) or a manual run of a scheduled spec.
    #[arg(long)]
    once: bool,
    /// Follow the job until it ends; exit 0 if it succeeded, 1 if it
    /// failed, 3 if it was cancelled.
    #[arg(long)]
    wait: bool,
    /// Stable JSON on standard output.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: SubmitArgs, coordinators: &Coordinators) -> Result<ExitCode> {
    let (name, source) = plan::read_spec(&args.spec)?;
    // Without a key of the user's, one per invocation: the client retries
    // through elections, and a retried submit must not start a second job.
    let generated = args.idempotency_key.is_none();
    let key = match &args.idempotency_key {
        Some(k) => k.clone(),
        None => invocation_key()?,
    };
    let request = SubmitJobRequest {
        spec_yaml: source.clone(),
        source_name: name.clone(),
        params: args.params.iter().cloned().collect(),
        idempotency_key: key,
        once: args.once,
    };
    // A caller already inside a trace (a CI pipeline, an orchestrator)
    // passes it in TRACEPARENT; the job's spans then join that trace.
    let trace_parent = std::env::var("TRACEPARENT")
        .ok()
        .filter(|t| drover_proto::trace::TraceParent::parse(t).is_ok());
    let submitted = coordinators
        .jobs(|mut c| {
            let mut r = tonic::Request::new(request.clone());
            if let Some(tp) = trace_parent.as_deref().and_then(|t| t.parse().ok()) {
                r.metadata_mut().insert(TRACEPARENT_METADATA_KEY, tp);
            }
            async move { c.submit_job(r).await.map(|r| r.into_inner()) }
        })
        .await
        .map_err(anyhow::Error::from);
    let response = match submitted {
        Ok(r) => r,
        Err(err) => {
            if let Some(diagnostics) = rejected_spec(&err, &name) {
                if args.json {
                    let out = serde_json::json!({"valid": false, "diagnostics": diagnostics});
                    super::print_json(&out)?;
                } else {
                    plan::report(&name, &source, &diagnostics);
                }
                return Ok(ExitCode::from(1));
            }
            return Err(err.context(format!("submitting {name}")));
        }
    };
    let tasks = response.plan.as_ref().map_or(0, |p| p.total_task_count);
    // A spec with a schedule registers one, unless `--once` runs it as a
    // job now.
    let schedule = response
        .plan
        .as_ref()
        .and_then(|p| p.schedule.as_ref())
        .filter(|_| !args.once);
    if args.json && (!args.wait || schedule.is_some()) {
        let mut out = serde_json::json!({
            "id": response.job_id,
            "created": response.created || generated,
            "tasks": tasks,
            "traceId": response.trace_id,
        });
        if let Some(s) = schedule {
            out["schedule"] = serde_json::json!({
                "cron": s.cron,
                "timezone": s.timezone,
                "nextFireAt": s.next_fire_unix_ms.first().and_then(|t| render::time(*t)).map(|t| t.to_rfc3339()),
            });
        }
        super::print_json(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.json {
        for w in &response.warnings {
            eprintln!("warning: {}:{}:{}: {}", w.file, w.line, w.column, w.message);
        }
        if let Some(s) = schedule.filter(|_| response.created || generated) {
            let next = s.next_fire_unix_ms.first().copied().unwrap_or(0);
            eprintln!(
                "submitted {name} as schedule {}: `{}` in {}, next run {}; see `drover schedule status {}`",
                response.job_id,
                s.cron,
                s.timezone,
                crate::schedule::zoned(next, s.timezone.parse().ok()),
                response.job_id
            );
        } else if response.created || generated {
            eprintln!(
                "submitted {name} as {} ({tasks} tasks, trace {})",
                response.job_id, response.trace_id
            );
        } else {
            eprintln!(
                "{name} was already submitted with this idempotency key as {}",
                response.job_id
            );
        }
        outln!("{}", response.job_id);
    }
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    if schedule.is_some() {
        // A schedule has no end to wait for; its runs do.
        eprintln!(
            "{} is a schedule and does not end; follow a run with `drover job watch RUN`",
            response.job_id
        );
        return Ok(ExitCode::SUCCESS);
    }
    let style = if args.json {
        watch::Style::Quiet
    } else {
        watch::Style::for_terminal()
    };
    let job = watch::follow(coordinators, &response.job_id, style).await?;
    if args.json {
        let mut out = render::job_json(&job);
        out["created"] = serde_json::Value::Bool(response.created || generated);
        out["traceId"] = serde_json::Value::String(response.trace_id.clone());
        super::print_json(&out)?;
    }
    Ok(super::outcome_code(job.state))
}

/// A random idempotency key for one `drover job submit`.
fn invocation_key() -> Result<String> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for an idempotency key: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("cli-{hex}"))
}

/// The diagnostics of a spec the cluster rejected, from the error's
/// metadata; `None` for any other error.
fn rejected_spec(err: &anyhow::Error, name: &str) -> Option<Vec<Diagnostic>> {
    let status = err.downcast_ref::<CallError>()?.answer()?;
    if status.code() != Code::InvalidArgument {
        return None;
    }
    let bytes = status.metadata().get_bin(DIAGNOSTICS_METADATA_KEY)?;
    let list = DiagnosticList::decode(bytes.to_bytes().ok()?).ok()?;
    let mut out: Vec<Diagnostic> = list
        .diagnostics
        .into_iter()
        .map(|d| Diagnostic {
            severity: if d.severity == drover_proto::v1::Severity::Warning as i32 {
                Severity::Warning
            } else {
                Severity::Error
            },
            file: if d.file.is_empty() {
                name.to_owned()
            } else {
                d.file
            },
            line: d.line,
            column: d.column,
            width: 1,
            path: d.path,
            message: d.message,
            hint: (!d.hint.is_empty()).then_some(d.hint),
        })
        .collect();
    if list.truncated {
        out.push(Diagnostic {
            severity: Severity::Error,
            file: name.to_owned(),
            line: 1,
            column: 1,
            width: 1,
            path: String::new(),
            message: "more diagnostics were left out; run `drover job plan` for all".to_owned(),
            hint: None,
        });
    }
    (!out.is_empty()).then_some(out)
}
