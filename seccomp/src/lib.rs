//! OCI `linux.seccomp` profiles compiled to seccomp BPF, and installed.
//!
//! [`compile`] validates a profile and builds a [`Filter`] in the runtime's parent
//! process; [`Filter::install`] loads it in the container process right before
//! `execve` (no allocation). This crate never sets no_new_privs: that is
//! `process.noNewPrivileges`' decision, taken by the runtime.
//!
//! Where the runtime installs it (runc's points): with `noNewPrivileges` the
//! container init sets no_new_privs and installs the filter as late as possible,
//! right before `execve`, so the fewest runtime syscalls need allowing; without it,
//! loading a filter needs CAP_SYS_ADMIN, so it is installed before capabilities are
//! dropped. With `SCMP_ACT_NOTIFY` [`Filter::install`] returns the listener fd,
//! which goes (through the runtime) to the agent with [`send_listener`] and
//! [`process_state_json`].
//!
//! The program checks `seccomp_data.arch` first (unlisted architectures are
//! killed, see [`profile::RET_BAD_ARCH`]), then runs a balanced binary search on
//! the syscall number (O(log n) instructions per syscall), whose leaves return an
//! action or try a syscall's rules in profile order. Argument comparisons are
//! unsigned and 64-bit (high word, then low word); 32-bit ABIs compare the low
//! word only. Syscalls above the highest number a profile names for an ABI get
//! ENOSYS when the default action is not ALLOW/LOG/TRACE (runc's rule; see
//! [`Model::decide`]).

#![warn(missing_docs)]

pub mod action;
pub mod arch;
mod asm;
pub mod compiler;
mod error;
pub mod features;
pub mod interp;
pub mod notify;
pub mod profile;
pub mod sys;
mod tables;

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use oci_spec::runtime::LinuxSeccomp;

pub use error::SeccompError;
pub use notify::{process_state_json, send_listener};
pub use profile::Model;

/// Where the notify listener fd goes, when the profile uses `SCMP_ACT_NOTIFY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `linux.seccomp.listenerPath`
    pub path: PathBuf,
    /// `linux.seccomp.listenerMetadata`
    pub metadata: Option<String>,
}

/// A validated, compiled filter, ready to install.
#[derive(Clone)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    flags: u32,
    listener: Option<Listener>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
            .field("listener", &self.listener)
            .finish()
    }
}

/// The result of [`compile`].
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The filter.
    pub filter: Filter,
    /// Syscall names that an architecture's table does not know (skipped), and
    /// other ignorable oddities; runc logs these at debug level.
    pub warnings: Vec<String>,
}

/// Validates `profile` and compiles it to BPF.
///
/// Errors name the offending field, e.g.
/// `linux.seccomp.syscalls[3].args[0].index: 7 is above 5`.
pub fn compile(profile: &LinuxSeccomp) -> Result<Compiled, SeccompError> {
    let (model, warnings) = Model::from_oci(profile)?;
    Ok(Compiled {
        filter: Filter::from_model(&model)?,
        warnings,
    })
}

impl Filter {
    /// Compiles an already validated [`Model`].
    pub fn from_model(model: &Model) -> Result<Filter, SeccompError> {
        Ok(Filter {
            program: compiler::compile_model(model)?,
            flags: model.flags,
            listener: match (&model.listener_path, model.uses_notify) {
                (Some(path), true) => Some(Listener {
                    path: path.clone(),
                    metadata: model.listener_metadata.clone(),
                }),
                _ => None,
            },
        })
    }

    /// Installs the filter in the calling thread (all threads with
    /// `SECCOMP_FILTER_FLAG_TSYNC`) via seccomp(2) `SECCOMP_SET_MODE_FILTER` and the
    /// profile's flags. Does not allocate, so it is safe right before `execve` in a
    /// freshly cloned child. Without no_new_privs the caller needs CAP_SYS_ADMIN.
    /// Returns the listener fd when the profile uses `SCMP_ACT_NOTIFY`.
    pub fn install(&self) -> Result<Option<OwnedFd>, SeccompError> {
        sys::seccomp_set_mode_filter(&self.program, self.flags, self.needs_listener())
            .map_err(SeccompError::Install)
    }

    /// Whether the profile uses `SCMP_ACT_NOTIFY` (so [`Filter::install`] returns a
    /// listener fd to pass to [`send_listener`]).
    pub fn needs_listener(&self) -> bool {
        self.listener.is_some()
    }

    /// The notify listener's destination, when [`Filter::needs_listener`].
    pub fn listener(&self) -> Option<&Listener> {
        self.listener.as_ref()
    }

    /// The BPF program.
    pub fn program(&self) -> &[libc::sock_filter] {
        &self.program
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits passed to seccomp(2).
    pub fn flags(&self) -> u32 {
        self.flags
    }
}
