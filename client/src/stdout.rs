//! Command output that ends quietly when its reader goes away.
//!
//! `outln!` panics when standard output is a pipe whose reader has
//! exited (`drover job list | head -1`), and the workspace allows no
//! `unsafe` to restore the default SIGPIPE action. Output goes through
//! [`outln!`] instead: a closed pipe ends the process with status 0 and no
//! message, as ripgrep does; `ls | head` ends as quietly, by the signal.

use std::io::Write;

/// Writes one line of command output to standard output; see the module
/// docs for a closed pipe.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::stdout::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::stdout::line(format_args!($($arg)*))
    };
}

/// [`outln!`] without the line end.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::text(format_args!($($arg)*))
    };
}

/// What [`outln!`] calls.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        closed_or_panic(&e);
    }
}

/// What [`out!`] calls.
pub fn text(args: std::fmt::Arguments<'_>) {
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        closed_or_panic(&e);
    }
}

/// Ends the process quietly when `e` says the reader of standard output
/// went away; any other write error is a bug worth a loud failure.
pub fn closed_or_panic(e: &std::io::Error) {
    if is_closed_pipe(e) {
        std::process::exit(0);
    }
    panic!("failed printing to stdout: {e}");
}

/// Whether `e` is a write to a pipe nobody reads any more.
pub fn is_closed_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// Whether an error a command returned came from standard output being
/// closed under it (a write through `?` rather than [`outln!`]).
pub fn ended_by_closed_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(is_closed_pipe)
}
