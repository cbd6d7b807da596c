//! Logging as runc does it: `--log FILE` with `--log-format text|json`; errors also go
//! to stderr as one line. Each error is logged once, at the command boundary.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;

/// The log sink chosen by the global flags.
#[derive(Clone)]
pub struct Logger {
    file: Option<Arc<File>>,
    json: bool,
    debug: bool,
}

impl Logger {
    /// Opens (appends to) the log file, if any.
    pub fn new(path: Option<&std::path::Path>, json: bool, debug: bool) -> Logger {
        let file = path.and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
                .map(Arc::new)
        });
        Logger { file, json, debug }
    }

    fn write(&self, level: &str, msg: &str) {
        let Some(mut f) = self.file.as_deref() else {
            return;
        };
        let time = casulo_core::state::now_rfc3339();
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
        eprintln!("casulo: {msg}");
    }

    /// Logs a warning to the log file and to stderr (a failed poststart/poststop hook).
    pub fn warn(&self, msg: &str) {
        self.write("warning", msg);
        eprintln!("casulo: warning: {msg}");
    }

    /// Logs a debug line (only with `--debug`).
    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
            if self.file.is_none() {
                eprintln!("casulo: debug: {msg}");
            }
        }
    }
}
