//! The commands' standard output. A reader that went away (`casulo list | head -1`)
//! ends the command quietly with status 141, 128 + SIGPIPE: what a shell reports for
//! runc or coreutils, which SIGPIPE kills there. Any other write error is one line on
//! stderr and status 1.

use std::fmt::Display;
use std::io::{ErrorKind, Write};

/// The exit status after writing to a closed pipe.
pub const BROKEN_PIPE: i32 = 128 + libc::SIGPIPE;

/// Writes `text` and a newline to stdout, and flushes it.
pub fn line(text: impl Display) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(BROKEN_PIPE),
        Err(e) => Err(format!("writing to stdout: {}", crate::log::lower(&e))),
    }
}

/// Prints clap's outcome (help, version or a usage error) and exits with its status,
/// or with [`BROKEN_PIPE`] when stdout is closed.
pub fn clap_exit(e: clap::Error) -> ! {
    match e.print() {
        Err(err) if err.kind() == ErrorKind::BrokenPipe => std::process::exit(BROKEN_PIPE),
        _ => std::process::exit(e.exit_code()),
    }
}
