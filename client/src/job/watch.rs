//! `drover job watch` (and `submit --wait`): follow a job to its end over the
//! WatchJob stream, showing one progress bar per template on a terminal and
//! plain lines otherwise. A broken stream (leader change, coordinator
//! restart) is resumed from the last event seen.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use drover_net::{CallError, Coordinators};
use drover_proto::v1::{Job, JobEvent, JobEventKind, JobState, WatchJobRequest};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tonic::Code;

use super::render;

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The job id (any unique start of it, 4+ hex digits).
    id: String,
}

pub async fn run(args: WatchArgs, coordinators: &Coordinators) -> Result<ExitCode> {
    let job = follow(coordinators, &args.id, Style::for_terminal()).await?;
    Ok(super::outcome_code(job.state))
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Live bars on standard error.
    Bars,
    /// A line on standard error whenever the counts change.
    Lines,
    /// Nothing (the caller prints JSON at the end).
    Quiet,
}

impl Style {
    /// Bars on a terminal, lines when standard error is a file or pipe.
    pub fn for_terminal() -> Self {
        if std::io::stderr().is_terminal() {
            Style::Bars
        } else {
            Style::Lines
        }
    }
}

/// Consecutive failed attempts to (re)open the stream before giving up:
/// long enough to ride out a leader election or a coordinator restart.
const RECONNECTS_MAX: u32 = 120;
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// The events shown while following: failures and the job's own changes.
const EVENT_KINDS: &[JobEventKind] = &[
    JobEventKind::TaskFailed,
    JobEventKind::TaskLeaseExpired,
    JobEventKind::TaskTimedOut,
    JobEventKind::JobSucceeded,
    JobEventKind::JobFailed,
    JobEventKind::JobCancelled,
    JobEventKind::JobRetried,
];

fn is_terminal(state: i32) -> bool {
    matches!(
        JobState::try_from(state),
        Ok(JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    )
}

/// Follows job `id` until it ends and returns its final record.
pub async fn follow(coordinators: &Coordinators, id: &str, style: Style) -> Result<Job> {
    let mut view = View::new(style);
    // Events from before the watch started are history, not news.
    let after = super::fetch::get_job(coordinators, id)
        .await?
        .last_event_seq;
    stream(coordinators, id, after, EVENT_KINDS, &mut view).await
}

/// What a caller of [`stream`] does with what arrives.
pub trait Watcher {
    /// An event, in sequence order.
    fn event(&mut self, event: &JobEvent);
    /// The job's record, whenever it changed.
    fn update(&mut self, job: &Job);
    /// The job ended with this record.
    fn finish(&mut self, job: &Job);
    /// The stream broke and is being opened again.
    fn note(&mut self, text: &str);
}

/// Streams job `id`'s events after `after` (only `kinds`, or all when
/// empty) and its record to `watcher` until the job ends, and returns the
/// final record. A broken stream is opened again after the last event
/// seen, so nothing is shown twice or skipped.
pub async fn stream(
    coordinators: &Coordinators,
    id: &str,
    mut after: u64,
    kinds: &[JobEventKind],
    watcher: &mut dyn Watcher,
) -> Result<Job> {
    let mut failures = 0u32;
    loop {
        let request = WatchJobRequest {
            job_id: id.to_owned(),
            after_seq: after,
            event_kinds: kinds.iter().map(|k| *k as i32).collect(),
        };
        let opened = coordinators
            .jobs(|mut c| {
                let r = request.clone();
                async move { c.watch_job(r).await.map(|r| r.into_inner()) }
            })
            .await
            .map_err(anyhow::Error::from);
        let mut stream = match opened {
            Ok(s) => s,
            Err(err) => {
                // A definite answer (unknown job) ends the watch; being
                // unable to reach a leader is waited out.
                let code = err
                    .downcast_ref::<CallError>()
                    .and_then(CallError::answer_code);
                if code.is_some_and(|c| c != Code::Unavailable) {
                    return Err(err);
                }
                failures += 1;
                if failures > RECONNECTS_MAX {
                    return Err(err.context(format!("watching {id}")));
                }
                watcher.note(&format!("reconnecting: {err:#}"));
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        failures = 0;
        while let Ok(Some(message)) = stream.message().await {
            for event in &message.events {
                after = after.max(event.seq);
                watcher.event(event);
            }
            if let Some(job) = message.job {
                watcher.update(&job);
                if is_terminal(job.state) {
                    watcher.finish(&job);
                    return Ok(job);
                }
            }
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

/// What the user sees while following.
struct View {
    style: Style,
    bars: Option<Bars>,
    last_line: String,
}

struct Bars {
    multi: MultiProgress,
    header: ProgressBar,
    templates: Vec<ProgressBar>,
}

impl View {
    fn new(style: Style) -> Self {
        Self {
            style,
            bars: None,
            last_line: String::new(),
        }
    }

    fn say(&self, text: &str) {
        match (&self.style, &self.bars) {
            (Style::Quiet, _) => {}
            (_, Some(bars)) => bars.multi.suspend(|| eprintln!("{text}")),
            _ => eprintln!("{text}"),
        }
    }
}

impl Watcher for View {
    fn note(&mut self, text: &str) {
        self.say(text);
    }

    fn event(&mut self, e: &JobEvent) {
        let kind = JobEventKind::try_from(e.kind).ok();
        // The job's own end is shown by `finish`.
        if matches!(
            kind,
            Some(JobEventKind::JobSucceeded | JobEventKind::JobFailed | JobEventKind::JobCancelled)
        ) {
            return;
        }
        self.say(&render::event_line(e));
    }

    fn update(&mut self, job: &Job) {
        match self.style {
            Style::Quiet => {}
            Style::Lines => {
                let counts = job.task_counts.unwrap_or_default();
                let line = format!(
                    "{} {}: {}/{} done ({})",
                    job.job_id,
                    render::job_state(job.state),
                    render::finished(&counts),
                    counts.total,
                    render::counts_line(&counts)
                );
                if line != self.last_line {
                    eprintln!("{line}");
                    self.last_line = line;
                }
            }
            Style::Bars => {
                let bars = self.bars.get_or_insert_with(|| Bars::new(job));
                bars.update(job);
            }
        }
    }

    fn finish(&mut self, job: &Job) {
        if let Some(bars) = self.bars.take() {
            bars.header.finish();
            for b in &bars.templates {
                b.finish();
            }
        }
        if self.style == Style::Quiet {
            return;
        }
        let counts = job.task_counts.unwrap_or_default();
        let mut line = format!(
            "{} {} after {}: {}",
            job.job_id,
            render::job_state(job.state),
            render::elapsed(job.started_unix_ms, job.finished_unix_ms),
            render::counts_line(&counts)
        );
        if !job.state_reason.is_empty() {
            line.push_str(&format!(" ({})", job.state_reason));
        }
        eprintln!("{line}");
    }
}

impl Bars {
    fn new(job: &Job) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        header.set_prefix(format!("{} {}/{}", job.job_id, job.namespace, job.name));
        header.enable_steady_tick(Duration::from_millis(120));
        let width = job
            .templates
            .iter()
            .map(|t| t.name.len())
            .max()
            .unwrap_or(8)
            .min(30);
        let style = ProgressStyle::with_template(&format!(
            "  {{prefix:<{width}}} [{{bar:30}}] {{pos:>5}}/{{len:<5}} {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let templates = job
            .templates
            .iter()
            .map(|t| {
                let bar = multi.add(ProgressBar::new(t.partition_count));
                bar.set_style(style.clone());
                bar.set_prefix(t.name.clone());
                bar
            })
            .collect();
        Self {
            multi,
            header,
            templates,
        }
    }

    fn update(&self, job: &Job) {
        let counts = job.task_counts.unwrap_or_default();
        self.header.set_message(format!(
            "{}  {}",
            render::job_state(job.state),
            render::counts_line(&counts)
        ));
        for (bar, t) in self.templates.iter().zip(&job.templates) {
            let c = t.counts.unwrap_or_default();
            bar.set_length(c.total.max(t.partition_count));
            bar.set_position(render::finished(&c));
            bar.set_message(render::counts_line(&c));
        }
    }
}
