//! The `drover` binary: [`drover_cli::run`], on mimalloc.

use std::process::ExitCode;

/// The coordinator's Raft thread and the workers allocate and free many
/// small records per task; glibc's allocator spent a large share of the
/// leader's Raft thread consolidating them under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    drover_cli::run()
}
