//! The crate's single error type.

use std::io;

/// Everything that can go wrong while validating, compiling, installing a filter or
/// handing its notify listener to an agent.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile is invalid; `field` is the JSON path of the offending value,
    /// e.g. `linux.seccomp.syscalls[3].args[0].index`.
    #[error("{field}: {reason}")]
    Invalid {
        /// JSON path of the offending field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The compiled program exceeds the kernel's limit of 4096 instructions.
    #[error("compiled seccomp program has {0} instructions, the kernel accepts at most 4096")]
    TooLong(usize),
    /// seccomp(2) refused the filter.
    #[error("seccomp(SECCOMP_SET_MODE_FILTER) failed: {0}")]
    Install(#[source] io::Error),
    /// Connecting or sending to the seccomp agent, or another I/O step, failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl SeccompError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SeccompError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(context: &'static str, source: io::Error) -> Self {
        SeccompError::Io { context, source }
    }
}
