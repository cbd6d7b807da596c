//! Placeholder until the seccomp compiler lands: profiles are refused.
use std::os::fd::OwnedFd;

/// Errors of the seccomp crate.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// Not supported yet.
    #[error("seccomp profiles are not supported yet")]
    Unsupported,
}

/// A compiled filter.
pub struct Filter;

/// A compiled profile plus warnings.
pub struct Compiled {
    /// The filter.
    pub filter: Filter,
    /// Warnings.
    pub warnings: Vec<String>,
}

/// Compiles a profile.
pub fn compile(_profile: &oci_spec::runtime::LinuxSeccomp) -> Result<Compiled, SeccompError> {
    Err(SeccompError::Unsupported)
}

impl Filter {
    /// Installs the filter.
    pub fn install(&self) -> Result<Option<OwnedFd>, SeccompError> {
        Err(SeccompError::Unsupported)
    }
}
