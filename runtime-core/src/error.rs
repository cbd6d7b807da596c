//! The library's error types: [`Error`] wraps the module errors, keeps every cause as
//! its `source` (an errno stays an [`Errno`], an I/O error an [`std::io::Error`]) and
//! builds its one-line message only in `Display`. Only the operations (`container`,
//! `create`, `exec`, `pause`, `update`, `shared`) return it; the modules below them
//! have their own error types.

use std::path::PathBuf;

use nix::errno::Errno;

use crate::state::Status;
use crate::ChildError;
use crate::{
    cgroups, config, exe, hooks, namespaces, netdev, process, rootfs, security, store, tty,
};

fn errno_text(e: &Errno) -> String {
    e.desc().to_lowercase()
}

/// An operation of the runtime, as named by a wrong-state [`Error::State`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `start`.
    Start,
    /// `kill`.
    Kill,
    /// `delete`.
    Delete,
    /// `exec`.
    Exec,
    /// `pause`.
    Pause,
    /// `resume`.
    Resume,
    /// `ps` (the container's pids).
    Pids,
    /// `update`.
    Update,
    /// `events --stats`.
    Stats,
    /// `events`.
    Events,
}

/// The wrong-state texts runc's users (engines) match.
fn wrong_state(op: Operation, id: &str, status: Status) -> String {
    match op {
        Operation::Start => format!("cannot start container {id}: it is {status}, not created"),
        Operation::Kill | Operation::Pids => "container not running".into(),
        Operation::Delete => format!("cannot delete container {id} that is not stopped: {status}"),
        Operation::Exec if status == Status::Paused => {
            format!("cannot exec in a paused container {id} (use --ignore-paused to override)")
        }
        Operation::Exec => {
            format!("cannot exec in a stopped container {id}: container not running")
        }
        Operation::Pause => format!("cannot pause container {id}: it is {status}, not running"),
        Operation::Resume => format!("cannot resume container {id}: it is {status}, not paused"),
        Operation::Update => format!("cannot update container {id}: it is {status}"),
        Operation::Stats => format!("cannot get stats of container {id}: it is {status}"),
        Operation::Events => format!("cannot watch container {id}: it is {status}"),
    }
}

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
    /// The create and exec paths on the runtime's side.
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    /// The runtime's own mounts for a container without a mount namespace.
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    /// Hooks.
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    /// Terminal setup.
    #[error(transparent)]
    Tty(#[from] tty::TtyError),
    /// `linux.seccomp` cannot be compiled.
    #[error("config.json: {0}")]
    Seccomp(#[from] casulo_seccomp::SeccompError),
    /// The container init (or an exec'd process) reported an error.
    #[error(transparent)]
    Init(#[from] ChildError),
    /// The container init exited without reporting an error.
    #[error("container init exited {stage}")]
    InitExited {
        /// When: "during setup", "before start".
        stage: &'static str,
    },
    /// The operation is not allowed in the container's current status.
    #[error("{}", wrong_state(*.op, .id, *.status))]
    State {
        /// What was asked for.
        op: Operation,
        /// The container.
        id: String,
        /// Its status.
        status: Status,
    },
    /// `start` of a container whose config has no process.
    #[error("cannot start container {id}: config.json has no process")]
    NoProcess {
        /// The container.
        id: String,
    },
    /// The container has no cgroup (pause, resume, update, events).
    #[error("container {id} has no cgroup")]
    NoCgroup {
        /// The container.
        id: String,
    },
    /// `delete --force` could not take the container's lock.
    #[error("container {id} is locked")]
    Locked {
        /// The container.
        id: String,
    },
    /// `delete`: the container's processes outlived SIGKILL.
    #[error(
        "container {id}: processes of cgroup {cgroup} did not exit within {secs} s of SIGKILL"
    )]
    KillTimeout {
        /// The container.
        id: String,
        /// Its cgroup path.
        cgroup: String,
        /// How long `delete` waited.
        secs: u64,
    },
    /// A value the runtime refuses.
    #[error("{field}: {reason}")]
    Invalid {
        /// The config field or flag.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `exec --cgroup CTL:PATH`: the process could not be moved into that v1 sub-cgroup
    /// (the write's io::Error kept).
    #[error(
        "exec --cgroup {arg:?}: {}: {}",
        .procs.display(),
        .source.kind().to_string().to_lowercase()
    )]
    JoinSubCgroup {
        /// The `--cgroup` value, `CTL:PATH`.
        arg: String,
        /// The `cgroup.procs` file written.
        procs: PathBuf,
        /// Why the write failed.
        #[source]
        source: std::io::Error,
    },
    /// `update`: the resources document is not valid `linux.resources`.
    #[error("linux.resources: {0}")]
    Resources(#[source] serde_json::Error),
    /// The host's `/proc` is not procfs: nothing that needs it is done.
    #[error("/proc on the host is not procfs")]
    ProcNotProcfs,
    /// The runtime binary is a writable host file while the operation would put a copy
    /// of it where container processes can see it (CVE-2019-5736).
    #[error("the runtime binary is not protected against overwrites from a container: call casulo_core::exe::ensure_protected() first (CVE-2019-5736)")]
    UnprotectedExe,
    /// Protecting the runtime binary failed.
    #[error(transparent)]
    Exe(#[from] exe::ExeError),
    /// A file operation failed.
    #[error("{}: {}", .path.display(), config::lower(.source))]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A syscall failed.
    #[error("{what}: {}", errno_text(.source))]
    Sys {
        /// What was being done.
        what: String,
        /// The errno.
        #[source]
        source: Errno,
    },
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn sys(what: &str, source: Errno) -> Error {
        Error::Sys {
            what: what.to_string(),
            source,
        }
    }

    pub(crate) fn state(op: Operation, id: &str, status: Status) -> Error {
        Error::State {
            op,
            id: id.to_string(),
            status,
        }
    }

    /// The errno behind this error, if a syscall failed (also one reported by the init
    /// or an exec'd process).
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Sys { source, .. } => Some(*source),
            Error::Io { source, .. } | Error::JoinSubCgroup { source, .. } => {
                source.raw_os_error().map(Errno::from_raw)
            }
            Error::Init(c) => c.errno,
            Error::Rootfs(rootfs::RootfsError::Sys { source, .. }) => Some(source.0),
            _ => None,
        }
    }
}

/// Result of the library.
pub type Result<T> = std::result::Result<T, Error>;
