//! Where the library's non-fatal messages go: warnings (a failed poststart or poststop
//! hook, as the spec asks) and debug lines (a field skipped because the host lacks the
//! feature). Embedders plug their logger in with [`crate::Runtime::with_logger`].

use std::sync::Arc;

/// Severity of a library message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something the operator may want to know when debugging.
    Debug,
    /// Something failed but the operation went on.
    Warn,
}

/// A message sink shared by a runtime's operations. Without one, warnings go to stderr
/// and debug lines are dropped.
#[derive(Clone, Default)]
pub struct Logger(Option<Arc<Sink>>);

type Sink = dyn Fn(Level, &str) + Send + Sync;

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Logger(custom)"
        } else {
            "Logger(stderr)"
        })
    }
}

impl Logger {
    /// A logger calling `f` for every message.
    pub fn new(f: impl Fn(Level, &str) + Send + Sync + 'static) -> Logger {
        Logger(Some(Arc::new(f)))
    }

    /// Logs a warning.
    pub fn warn(&self, msg: &str) {
        match &self.0 {
            Some(f) => f(Level::Warn, msg),
            None => eprintln!("casulo: warning: {msg}"),
        }
    }

    /// Logs a debug line.
    pub fn debug(&self, msg: &str) {
        if let Some(f) = &self.0 {
            f(Level::Debug, msg)
        }
    }
}
