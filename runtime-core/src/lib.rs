//! Casulo: an OCI container runtime as a library.
//!
//! Modules follow the sections of the OCI runtime spec: [`config`] (config.md),
//! [`namespaces`], [`rootfs`], [`security`] and [`cgroups`] (config-linux.md),
//! [`state`], [`store`] and [`container`] (runtime.md). `unsafe` code is only in the
//! raw syscall layers: `sys` and `cgroups::sys` (bpf, eventfd, inotify).
//!
//! ```no_run
//! use casulo_core::{CreateOptions, Runtime};
//!
//! # fn main() -> Result<(), casulo_core::Error> {
//! let rt = Runtime::new("/run/casulo");
//! let opts = CreateOptions { bundle: "/path/to/bundle".into(), ..Default::default() };
//! let container = rt.create("demo", &opts)?;   // set up, waiting for start
//! rt.start("demo")?;                            // the user's process is exec'd
//! let code = container.wait()?;                 // we are its parent: reap it
//! rt.delete("demo", false)?;                    // cgroup and state removed
//! println!("exit status {code}");
//! # Ok(())
//! # }
//! ```
//!
//! The library is safe to call from many threads at once: the create path forks
//! through libc (whose atfork handlers keep malloc usable in the child) and only the
//! single-threaded helper uses a raw `clone3`.

pub mod cgroups;
pub mod config;
pub mod container;
pub mod dbus;
pub mod exe;
pub mod fault;
pub mod features;
pub mod hooks;
pub mod host_guard;
pub mod log;
pub mod mountinfo;
pub mod namespaces;
pub mod netdev;
pub mod pause;
pub mod process;
pub mod rootfs;
pub mod security;
pub mod state;
pub mod store;
mod sys;
pub mod tty;
pub mod update;

pub use container::{Container, CreateOptions, Runtime};
pub use process::exec::{ExecOptions, ExecProcess};
pub use state::{State, Status};

use std::path::Path;

/// The library's error: module errors with their context, one line each.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// config.json could not be loaded or is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The state store (ids, state files, locks).
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Namespaces.
    #[error(transparent)]
    Namespace(#[from] namespaces::NamespaceError),
    /// cgroups.
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
    /// The security context (capabilities, user).
    #[error(transparent)]
    Security(#[from] security::SecurityError),
    /// `linux.netDevices`.
    #[error(transparent)]
    NetDev(#[from] netdev::NetDevError),
    /// The create path.
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    /// Hooks.
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    /// Terminal setup.
    #[error(transparent)]
    Tty(#[from] tty::TtyError),
    /// The container init reported an error.
    #[error("{0}")]
    Init(String),
    /// The operation is not allowed in the container's current state.
    #[error("{0}")]
    State(String),
    /// A config value the runtime refuses.
    #[error("{0}")]
    Invalid(String),
    /// A feature that is not implemented yet.
    #[error("{0}")]
    Unsupported(String),
    /// Something unsafe was refused.
    #[error("{0}")]
    Unsafe(String),
    /// The runtime binary is a writable host file while the operation would put a copy
    /// of it where container processes can see it (CVE-2019-5736).
    #[error("the runtime binary is not protected against overwrites from a container: call casulo_core::exe::ensure_protected() first (CVE-2019-5736)")]
    UnprotectedExe,
    /// Protecting the runtime binary failed.
    #[error(transparent)]
    Exe(#[from] exe::ExeError),
    /// A file operation failed.
    #[error("{path}: {msg}")]
    Io {
        /// The file.
        path: String,
        /// Lower-case error text.
        msg: String,
    },
    /// A syscall failed.
    #[error("{what}: {msg}")]
    Sys {
        /// What was being done.
        what: String,
        /// Lower-case error text.
        msg: String,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, e: std::io::Error) -> Error {
        Error::Io {
            path: path.display().to_string(),
            msg: config::lower(&e),
        }
    }

    pub(crate) fn sys(what: &str, e: nix::errno::Errno) -> Error {
        Error::Sys {
            what: what.to_string(),
            msg: e.desc().to_lowercase(),
        }
    }
}

/// Result of the library.
pub type Result<T> = std::result::Result<T, Error>;
