//! `drover job logs TASK`: the log of a task's attempt (its latest, or the
//! one granted `--token`) as its worker stored it, and with `--follow` the
//! rest of it as it grows, until the attempt ends.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use drover_proto::v1::{GetTaskLogRequest, GetTaskLogResponse};

use drover_net::Coordinators;

/// How often `--follow` asks again; workers store a running attempt's log
/// every 5 s.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The task id, as `job status` lists it.
    task_id: String,
    /// The attempt, by its fencing token (`job events` shows them);
    /// the latest attempt without it.
    #[arg(long)]
    token: Option<u64>,
    /// Keep printing the log as it grows until the attempt ends.
    #[arg(long, short = 'f', conflicts_with = "json")]
    follow: bool,
    /// Stable JSON on standard output.
    #[arg(long)]
    json: bool,
}

pub async fn logs(args: LogsArgs, coordinators: &Coordinators) -> Result<ExitCode> {
    let request = GetTaskLogRequest {
        task_id: args.task_id.clone(),
        fencing_token: args.token.unwrap_or(0),
        max_bytes: 0,
    };
    let first = fetch(coordinators, &request).await?;
    if args.json {
        super::print_json(&serde_json::json!({
            "taskId": first.task_id,
            "attempt": first.attempt,
            "fencingToken": first.fencing_token,
            "workerId": first.worker_id,
            "workerState": first.worker_state,
            "running": first.running,
            "found": first.found,
            "location": first.location,
            "truncated": first.truncated,
            "note": first.note,
            "text": first.text,
        }))?;
        return Ok(code(&first));
    }
    eprintln!("{}", heading(&first));
    let mut shown = String::new();
    print_new(&mut shown, &first.text)?;
    let mut last = first;
    // Follow one attempt: the token the first answer named, so a retry that
    // starts meanwhile does not switch logs under the reader.
    let request = GetTaskLogRequest {
        fencing_token: last.fencing_token,
        ..request
    };
    while args.follow && last.running {
        tokio::time::sleep(FOLLOW_EVERY).await;
        last = fetch(coordinators, &request).await?;
        print_new(&mut shown, &last.text)?;
    }
    if args.follow && !last.note.is_empty() {
        eprintln!("{}", last.note);
    }
    Ok(code(&last))
}

async fn fetch(
    coordinators: &Coordinators,
    request: &GetTaskLogRequest,
) -> Result<GetTaskLogResponse> {
    coordinators
        .jobs(|mut c| {
            let r = request.clone();
            async move { c.get_task_log(r).await.map(|r| r.into_inner()) }
        })
        .await
        .map_err(Into::into)
}

/// 0 when a log was shown, 1 when there is none.
fn code(r: &GetTaskLogResponse) -> ExitCode {
    if r.found {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The line on stderr before the log: which attempt, where it ran, and
/// what to know about its log.
fn heading(r: &GetTaskLogResponse) -> String {
    let worker = if r.worker_id.is_empty() {
        String::new()
    } else {
        format!(" on {} ({})", r.worker_id, r.worker_state)
    };
    let state = if r.running { "running" } else { "ended" };
    let mut line = format!(
        "{} attempt {} (token {}){worker}, {state}",
        r.task_id, r.attempt, r.fencing_token
    );
    if r.truncated {
        line.push_str("; only the end of its log is shown");
    }
    if !r.note.is_empty() {
        line.push_str(": ");
        line.push_str(&r.note);
    }
    line
}

/// Prints what `text` adds to what was shown. Workers replace the stored
/// log whole, and a long one loses its middle, so when `text` no longer
/// starts with what was shown it is printed again after a marker.
fn print_new(shown: &mut String, text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match text.strip_prefix(shown.as_str()) {
        Some(rest) => out.write_all(rest.as_bytes())?,
        None => {
            writeln!(
                out,
                "--- the stored log was cut in the middle; here it is again ---"
            )?;
            out.write_all(text.as_bytes())?;
        }
    }
    out.flush()?;
    shown.clear();
    shown.push_str(text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heading_names_the_attempt_its_worker_and_the_note() {
        let r = GetTaskLogResponse {
            task_id: "j1/0/3".into(),
            attempt: 2,
            fencing_token: 17,
            worker_id: "w-1".into(),
            worker_state: "lost".into(),
            running: true,
            note: "worker w-1 is lost (no heartbeat): ...".into(),
            ..GetTaskLogResponse::default()
        };
        assert_eq!(
            heading(&r),
            "j1/0/3 attempt 2 (token 17) on w-1 (lost), running: worker w-1 is lost (no heartbeat): ..."
        );
    }
}
