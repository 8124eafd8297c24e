//! `drover completions SHELL` and `drover man --out DIR`: shell
//! completions and man pages generated from the same clap definitions that
//! parse the command line, so they never drift from it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell. For bash,
    /// `drover completions bash > ~/.local/share/bash-completion/completions/drover`.
    shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The directory to write `drover.1` and one page per subcommand
    /// (`drover-job-submit.1`) into; created if missing. For example
    /// `--out ~/.local/share/man/man1`, then `man drover-job-submit`.
    #[arg(long)]
    out: PathBuf,
}

/// Prints the completion script of `args.shell` for `command`.
pub fn completions(args: CompletionsArgs, mut command: clap::Command) -> Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "drover", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(ExitCode::SUCCESS)
}

/// Writes the man pages of `command` and its subcommands.
pub fn man(args: ManArgs, command: clap::Command) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    clap_mangen::generate_to(command, &args.out)
        .with_context(|| format!("writing man pages to {}", args.out.display()))?;
    let pages = std::fs::read_dir(&args.out)
        .with_context(|| format!("reading {}", args.out.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".1"))
        .count();
    eprintln!("wrote {pages} man pages to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
