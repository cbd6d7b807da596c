//! Logging as runc does it: `--log FILE` with `--log-format text|json`; errors also go
//! to stderr as one line. Each error is logged once, at the command boundary.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// The log sink chosen by the global flags.
#[derive(Clone)]
pub struct Logger {
    file: Option<Arc<File>>,
    json: bool,
    debug: bool,
}

impl Logger {
    /// Opens (appends to) the log file, if any. A file that cannot be opened is an
    /// error (engines read the error text from it), as with runc.
    pub fn new(path: Option<&Path>, json: bool, debug: bool) -> Result<Logger, String> {
        let file = match path {
            Some(p) => Some(Arc::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("--log {}: {}", p.display(), lower(&e)))?,
            )),
            None => None,
        };
        Ok(Logger { file, json, debug })
    }

    fn write(&self, level: &str, msg: &str) {
        let Some(mut f) = self.file.as_deref() else {
            return;
        };
        let time = casulo_core::now_rfc3339();
        let line = if self.json {
            serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string()
        } else {
            format!("time=\"{time}\" level={level} msg={msg:?}")
        };
        let _ = writeln!(f, "{line}");
    }

    /// Logs an error to the log file and to stderr.
    pub fn error(&self, msg: &str) {
        self.write("error", msg);
        stderr(format_args!("casulo: {msg}"));
    }

    /// Logs a warning to the log file and to stderr (a failed poststart/poststop hook).
    pub fn warn(&self, msg: &str) {
        self.write("warning", msg);
        stderr(format_args!("casulo: warning: {msg}"));
    }

    /// Logs a debug line (only with `--debug`).
    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
            if self.file.is_none() {
                stderr(format_args!("casulo: debug: {msg}"));
            }
        }
    }
}

/// One line on stderr; a closed stderr is ignored (where `eprintln` would panic).
fn stderr(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Prints `msg` as the command's one error line and exits with status 1 (for errors
/// before a logger exists).
pub fn fatal(msg: &str) -> ! {
    stderr(format_args!("casulo: {msg}"));
    std::process::exit(1)
}

/// An I/O error's text without Rust's " (os error N)" suffix, lower-case first letter.
pub fn lower(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}
