//! `drover datagen`: generated datasets with their truth written beside
//! them, for the demo, the tests and the benchmarks.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use drover_worker::datagen::annotations::{self, AnnotationsSpec};
use drover_worker::datagen::{sensors, texts};
use drover_worker::dataset::location::Location;

#[derive(Debug, Subcommand)]
pub enum DatagenCommand {
    /// Annotation projects (classification and bounding boxes) with noisy,
    /// biased and spamming annotators, as Parquet partitioned by project,
    /// and the truth under `_truth/`.
    Annotations(AnnotationsArgs),
    /// A text corpus (captions, transcriptions) with exact duplicates after
    /// normalisation and near duplicates at known edit rates, as JSONL, and
    /// the true clusters under `_truth/`.
    Texts(TextsArgs),
    /// Device readings from phones moving along a city's streets (walking,
    /// driving, staying), with noise, teleports, coarse fixes, duplicates
    /// and late files, as Parquet partitioned by `date=YYYY-MM-DD/`.
    Sensors(SensorsArgs),
}

#[derive(Debug, Args)]
pub struct SensorsArgs {
    /// Where to write: a directory, file:///dir or s3://bucket/prefix.
    #[arg(long)]
    out: String,
    /// Devices; each reports about a thousand readings a day.
    #[arg(long, default_value_t = 1_000)]
    devices: u64,
    /// The first day, YYYY-MM-DD.
    #[arg(long)]
    start: String,
    /// Days.
    #[arg(long, default_value_t = 1)]
    days: u32,
    /// Seed; one seed always gives the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Devices generated at most.
const DEVICES_MAX: u64 = 10_000_000;
/// Days generated at most (ten years).
const DAYS_MAX: u32 = 3_660;

#[derive(Debug, Args)]
pub struct TextsArgs {
    /// Where to write: a directory, file:///dir or s3://bucket/prefix.
    #[arg(long)]
    out: String,
    /// Documents.
    #[arg(long, default_value_t = 100_000)]
    docs: u64,
    /// Share of documents that are exact duplicates once normalised.
    #[arg(long, default_value_t = 0.1)]
    dup_rate: f64,
    /// Share of documents that are near duplicates.
    #[arg(long, default_value_t = 0.1)]
    near_dup_rate: f64,
    /// Seed; one seed always gives the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Documents generated at most.
const DOCS_MAX: u64 = 1_000_000_000;

#[derive(Debug, Args)]
pub struct AnnotationsArgs {
    /// Where to write: a directory, file:///dir or s3://bucket/prefix.
    #[arg(long)]
    out: String,
    /// Projects, alternating classification and bounding boxes.
    #[arg(long, default_value_t = 2)]
    projects: u32,
    /// Items (images) per project.
    #[arg(long, default_value_t = 10_000)]
    items: u64,
    /// Seed; one seed always gives the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Projects generated at most.
const PROJECTS_MAX: u32 = 1_000;
/// Items per project at most.
const ITEMS_MAX: u64 = 100_000_000;

pub async fn run(cmd: DatagenCommand) -> Result<ExitCode> {
    match cmd {
        DatagenCommand::Annotations(a) => annotations(a).await,
        DatagenCommand::Texts(t) => texts(t).await,
        DatagenCommand::Sensors(s) => sensors(s).await,
    }
}

async fn sensors(s: SensorsArgs) -> Result<ExitCode> {
    if s.devices == 0 || s.devices > DEVICES_MAX {
        bail!("--devices must be 1..={DEVICES_MAX}");
    }
    if s.days == 0 || s.days > DAYS_MAX {
        bail!("--days must be 1..={DAYS_MAX}");
    }
    let start = chrono::NaiveDate::parse_from_str(&s.start, "%Y-%m-%d")
        .with_context(|| format!("--start {}: expected a date, YYYY-MM-DD", s.start))?;
    let out = Location::parse(&s.out).with_context(|| format!("--out {}", s.out))?;
    let spec = sensors::SensorsSpec {
        devices: s.devices,
        start,
        days: s.days,
        seed: s.seed,
    };
    let started = Instant::now();
    let bar = indicatif::ProgressBar::new(u64::from(s.days));
    let counts = sensors::generate(&out, &spec, |done| bar.set_position(u64::from(done)))
        .await
        .context("generating sensor readings")?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} readings of {} devices over {} days ({} teleports, {} duplicates; {} files, {} of them late) to {} in {:.1} s",
        counts.readings,
        s.devices,
        s.days,
        counts.teleports,
        counts.duplicates,
        counts.files,
        counts.late_files,
        s.out,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

async fn texts(t: TextsArgs) -> Result<ExitCode> {
    if t.docs == 0 || t.docs > DOCS_MAX {
        bail!("--docs must be 1..={DOCS_MAX}");
    }
    let rates_ok = (0.0..=1.0).contains(&t.dup_rate)
        && (0.0..=1.0).contains(&t.near_dup_rate)
        && t.dup_rate + t.near_dup_rate <= 0.9;
    if !rates_ok {
        bail!("--dup-rate and --near-dup-rate must be in 0..=1 and add up to at most 0.9");
    }
    let out = Location::parse(&t.out).with_context(|| format!("--out {}", t.out))?;
    let spec = texts::TextsSpec {
        docs: t.docs,
        dup_rate: t.dup_rate,
        near_dup_rate: t.near_dup_rate,
        seed: t.seed,
    };
    let started = Instant::now();
    let bar = indicatif::ProgressBar::new(t.docs);
    let counts = texts::generate(&out, &spec, |done| bar.set_position(done))
        .await
        .context("generating texts")?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} documents ({} originals, {} exact and {} near duplicates) to {} in {:.1} s (truth under _truth/)",
        counts.docs,
        counts.originals,
        counts.exact,
        counts.near,
        t.out,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

async fn annotations(a: AnnotationsArgs) -> Result<ExitCode> {
    if a.projects == 0 || a.projects > PROJECTS_MAX {
        bail!("--projects must be 1..={PROJECTS_MAX}");
    }
    if a.items == 0 || a.items > ITEMS_MAX {
        bail!("--items must be 1..={ITEMS_MAX}");
    }
    let out = Location::parse(&a.out).with_context(|| format!("--out {}", a.out))?;
    let spec = AnnotationsSpec {
        projects: a.projects,
        items: a.items,
        seed: a.seed,
    };
    let total = u64::from(a.projects) * a.items;
    let started = Instant::now();
    let generated = generate(&out, &spec, total).await?;
    for p in &generated {
        eprintln!(
            "  {}: {} {} items, {} annotations, {} truth rows",
            p.name, p.task_type, p.items, p.annotations, p.truth
        );
    }
    eprintln!(
        "wrote {} projects to {} in {:.1} s (manifest {}/_manifest.json, truth under _truth/)",
        generated.len(),
        a.out,
        started.elapsed().as_secs_f64(),
        a.out.trim_end_matches('/')
    );
    Ok(ExitCode::SUCCESS)
}

async fn generate(
    out: &Location,
    spec: &AnnotationsSpec,
    total: u64,
) -> Result<Vec<annotations::GeneratedProject>> {
    let bar = indicatif::ProgressBar::new(total);
    let generated = annotations::generate(out, spec, |done| bar.set_position(done))
        .await
        .context("generating annotations")?;
    bar.finish_and_clear();
    Ok(generated)
}
