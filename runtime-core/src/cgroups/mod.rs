//! Control groups (config-linux.md "Control groups").
//!
//! One trait, [`Cgroup`], with a backend per layout the host can have: v1, hybrid
//! (v1 controllers plus a cgroup2 mount at `/sys/fs/cgroup/unified`) and pure v2.
//! The layout is detected at run time by [`open`] (see [`detect`]).
//!
//! INTERFACE CONTRACT (used by the create path and the CLI; keep it stable):
//! - [`resolve_path`] turns `linux.cgroupsPath` (absolute, relative, or absent) and the
//!   container id into the absolute cgroup path that is stored in the container's state.
//! - [`open`] builds the manager for an absolute cgroup path (create and later commands).
//! - [`validate`] checks `linux.resources` before anything is created.
//! - `create` makes the cgroup(s) and applies resources before the init runs user code;
//!   `add_process` moves a pid in; `destroy` removes everything `create` made.
//!
//! Per layout:
//! - v1: one directory per mounted hierarchy (including `name=systemd`); new
//!   cpuset dirs inherit the parent's cpus/mems; devices via
//!   `devices.deny`/`devices.allow`; freezer via `freezer.state`.
//! - hybrid: as v1, plus the same path in the cgroup2 mount at
//!   `/sys/fs/cgroup/unified` (joined too; takes hugetlb limits when v1 has no
//!   hugetlb hierarchy, the `unified` map, and `cgroup.kill` for SIGKILL).
//! - v2: one directory; controllers enabled down from the root; devices via an
//!   eBPF `BPF_CGROUP_DEVICE` program ([`devices::bpf_program`]); freezer via
//!   `cgroup.freeze`/`cgroup.events`.
//!
//! Device rules always get the default allow list appended (see
//! [`devices::effective_rules`]). A field asking for a controller or file the
//! host lacks fails with [`CgroupError::Unsupported`] naming the field; nothing
//! is written for fields that are absent.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

pub mod detect;
pub mod devices;
pub mod oom;
pub mod stats;
pub(crate) mod sys;
pub mod systemd;
mod util;
mod v1;
mod v2;
mod validate;

pub use detect::Layout;
pub use oom::OomNotifier;
pub use stats::Stats;
pub use validate::{parse_list, parse_page_size, validate, validate_unified_key, ParseError};

/// Errors of the cgroups module.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup file or directory could not be read, created or removed.
    #[error("cgroup {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing a value asked for by a configuration field failed.
    #[error("{field}: writing {value:?} to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The configuration field that asked for it.
        field: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The cgroup manager was asked to open a relative cgroup path.
    #[error("cgroup path {path:?} must be absolute (see resolve_path)")]
    RelativePath {
        /// The path given.
        path: String,
    },
    /// A signal number nix does not know.
    #[error("invalid signal {signal}")]
    BadSignal {
        /// The number.
        signal: i32,
        /// nix's refusal (EINVAL).
        #[source]
        source: nix::errno::Errno,
    },
    /// The memory cgroup went away while [`OomNotifier`] waited on it.
    #[error("{path}: cgroup removed while waiting for OOM events")]
    Removed {
        /// The memory cgroup directory.
        path: PathBuf,
    },
    /// The systemd driver was asked for on a host where systemd is not running.
    #[error(
        "systemd unit {unit}: systemd is not running on this host ({} is missing); \
         the systemd cgroup driver needs it",
        systemd::SYSTEMD_RUNNING
    )]
    NoSystemd {
        /// The unit the driver was to manage.
        unit: String,
    },
    /// A configuration field's value could not be read (the parser's error kept).
    #[error("{field}: {source}")]
    Parse {
        /// The field, e.g. `linux.resources.cpu.cpus`.
        field: String,
        /// Why it could not be read.
        #[source]
        source: ParseError,
    },
    /// Signalling a process of the cgroup failed (kill(2)'s errno kept as the source).
    #[error("kill({pid}, {signal}): {source}")]
    Signal {
        /// The process.
        pid: i32,
        /// The signal number.
        signal: i32,
        /// The errno.
        #[source]
        source: nix::errno::Errno,
    },
    /// A configuration field has a bad value (found before anything is created).
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field, e.g. `linux.resources.cpu.period`.
        field: String,
        /// Why it is refused.
        reason: String,
    },
    /// The host lacks the controller or file a configuration field needs.
    #[error("{field}: not supported on this host: {what}")]
    Unsupported {
        /// The field that asked for it.
        field: String,
        /// What is missing.
        what: String,
    },
    /// The host's cgroup layout could not be detected or used.
    #[error("cgroup layout: {0}")]
    Layout(String),
    /// Setting up the cgroup v2 eBPF device filter failed.
    #[error("cgroup v2 device filter for {path}: {source}")]
    Bpf {
        /// The cgroup directory.
        path: PathBuf,
        /// The underlying error (with the verifier log, if any).
        source: std::io::Error,
    },
    /// systemd (over D-Bus) refused or failed a request about a unit.
    #[error("systemd unit {unit}: {action}: {source}")]
    Systemd {
        /// The unit, e.g. `casulo-abc.scope`.
        unit: String,
        /// The request, e.g. `StartTransientUnit`.
        action: &'static str,
        /// What D-Bus or systemd answered.
        source: crate::dbus::DbusError,
    },
    /// A unit's job ended with another result than `done`.
    #[error("systemd unit {unit}: {action}: the job ended {result:?}")]
    SystemdJob {
        /// The unit.
        unit: String,
        /// The request that queued the job.
        action: &'static str,
        /// systemd's job result (`failed`, `timeout`, `canceled`, ...).
        result: String,
    },
    /// Freezing or thawing did not complete.
    #[error("freezer {path}: {reason}")]
    Freeze {
        /// The cgroup directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Result type of this module.
pub type Result<T> = std::result::Result<T, CgroupError>;

/// Freezer state of a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerState {
    /// Tasks run.
    Thawed,
    /// Tasks are being frozen (v1 transitional state).
    Freezing,
    /// All tasks are frozen.
    Frozen,
}

/// What a new, single-threaded process needs to put itself into a cgroup (see
/// [`Cgroup::self_join`]): `clone3(CLONE_INTO_CGROUP)` into the cgroup2 part, then `0`
/// written by the process into the `tasks` file of each v1 hierarchy. Moving the only
/// thread of the caller skips the global lock; the files were opened by the runtime,
/// whose credentials the kernel checks.
#[derive(Debug, Default)]
pub struct SelfJoin {
    /// `O_PATH|O_DIRECTORY` fd of the cgroup2 directory (v2, or hybrid's unified one).
    pub into: Option<OwnedFd>,
    /// The v1 hierarchies' `tasks` files, opened for writing, with their paths.
    pub tasks: Vec<(PathBuf, OwnedFd)>,
}

impl SelfJoin {
    /// Run by the new process itself, first: writes `0` (itself) into every `tasks`
    /// file and closes them.
    pub(crate) fn join_tasks(self) -> std::result::Result<(), (PathBuf, nix::errno::Errno)> {
        use std::os::fd::AsFd;
        for (path, fd) in self.tasks {
            if let Err(e) = crate::sys::write_all(fd.as_fd(), b"0") {
                return Err((path, e));
            }
        }
        Ok(())
    }
}

/// A container's cgroup, on whatever layout the host has.
pub trait Cgroup: Send + Sync {
    /// The absolute cgroup path (as stored in the container state).
    fn path(&self) -> &str;
    /// The host layout this manager drives.
    fn layout(&self) -> Layout;
    /// Creates the cgroup in every hierarchy and applies `resources` (always
    /// including the device rules: the given ones plus the default allow list).
    /// Validates `resources` first; on failure removes what it created.
    fn create(&self, resources: Option<&LinuxResources>) -> Result<()>;
    /// Moves `pid` into the cgroup (in every hierarchy).
    fn add_process(&self, pid: i32) -> Result<()>;
    /// How a new process gets into the cgroup by itself, without the runtime writing
    /// its pid (which takes the kernel's global threadgroup lock: on v1 the first such
    /// write waits for an RCU grace period, several ms, docs/performance.md). `None`:
    /// the runtime moves it with [`Cgroup::add_process`].
    fn self_join(&self) -> Option<SelfJoin> {
        None
    }
    /// Applies `resources` to the existing cgroup. Device rules are replaced
    /// only when `resources.devices` is non-empty. With
    /// `memory.checkBeforeUpdate`, a limit below current usage is refused.
    fn update(&self, resources: &LinuxResources) -> Result<()>;
    /// Freezes (`true`) or thaws (`false`) all tasks, waiting until done.
    fn freeze(&self, freeze: bool) -> Result<()>;
    /// Current freezer state.
    fn freezer_state(&self) -> Result<FreezerState>;
    /// True when frozen.
    fn frozen(&self) -> Result<bool> {
        Ok(self.freezer_state()? == FreezerState::Frozen)
    }
    /// Sends `signal` to every process in the cgroup and its descendants
    /// (`cgroup.kill` for SIGKILL where present; otherwise freeze, signal each
    /// pid, thaw). A cgroup that was frozen stays frozen, except after SIGKILL: a
    /// killed task in a frozen cgroup dies only once thawed, so then every freezer
    /// is thawed ([`Cgroup::thaw_all`]).
    fn kill_all(&self, signal: i32) -> Result<()>;
    /// Thaws every freezer of the cgroup without waiting: v1 `freezer.state` and the
    /// cgroup2 `cgroup.freeze` (v2, and the unified directory of hybrid), whoever froze
    /// it. A missing cgroup is not an error.
    fn thaw_all(&self) -> Result<()>;
    /// Waits until no process is left in the cgroup or below: true when empty, false
    /// once `timeout` passes. Woken by the kernel's events (`cgroup.events`
    /// `populated 0` where a cgroup2 directory exists, else the processes' pidfds),
    /// never by polling the files.
    fn wait_empty(&self, timeout: Duration) -> Result<bool>;
    /// SIGKILLs every process of the cgroup, thaws it and waits until it is empty
    /// (true) or `timeout` passes (false), killing again meanwhile for processes that
    /// were still being forked.
    fn kill_and_wait(&self, timeout: Duration) -> Result<bool> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let killed = self.kill_all(libc::SIGKILL);
            let thawed = self.thaw_all();
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.wait_empty(left.min(Duration::from_secs(2)))? {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                killed?;
                thawed?;
                return Ok(false);
            }
        }
    }
    /// Resource usage statistics.
    fn stats(&self) -> Result<Stats>;
    /// Number of OOM kills in the cgroup so far (v1 `memory.oom_control`,
    /// v2 `memory.events` `oom_kill`); poll it to get OOM events.
    fn oom_kill_count(&self) -> Result<u64>;
    /// An OOM event source for this cgroup (must exist): a pollable fd with
    /// a blocking [`OomNotifier::wait`].
    fn oom_notifier(&self) -> Result<OomNotifier>;
    /// Removes the cgroup directory (with any child cgroups) in every
    /// hierarchy, and the parent directories this manager's `create` made,
    /// retrying while tasks are still exiting. The caller kills the processes
    /// first.
    fn destroy(&self) -> Result<()>;
    /// Host pids of all processes in the cgroup and its descendants.
    fn pids(&self) -> Result<Vec<i32>>;
}

/// Refuses a `cgroupsPath` in systemd's `slice:prefix:name` form without the systemd
/// cgroup driver (`systemd == false`); with it, `place` reads that form.
pub fn check_systemd_cgroup(systemd: bool, cgroups_path: Option<&str>) -> Result<()> {
    if let Some(p) = cgroups_path.filter(|_| !systemd) {
        if p.split(':').count() == 3 && !p.contains('/') {
            return Err(CgroupError::InvalidField {
                field: "linux.cgroupsPath".into(),
                reason: format!(
                    "{p:?} is in the systemd \"slice:prefix:name\" form, which needs the \
                     systemd cgroup driver (--systemd-cgroup)"
                ),
            });
        }
    }
    Ok(())
}

/// Where a new container's cgroup goes: its absolute path and, with the systemd
/// driver, the unit systemd makes for it.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The absolute cgroup path (stored in the container's state).
    pub path: String,
    /// The systemd unit, with the systemd cgroup driver.
    pub unit: Option<systemd::Unit>,
    /// Set once the unit is this create's (shared by the managers [`Placement::open`]
    /// makes, so the undo of a create refused with "unit exists" stops nothing).
    owned: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The connection `place` made to a rootless caller's own systemd instance, for the
    /// first manager [`Placement::open`] makes.
    conn: std::sync::Arc<std::sync::Mutex<Option<crate::dbus::Connection>>>,
}

impl Placement {
    /// The unit's name, if any (stored in the container's state).
    pub fn unit_name(&self) -> Option<String> {
        self.unit.as_ref().map(|u| u.name.clone())
    }

    /// Whether the unit is in the caller's own systemd instance (stored in the state).
    pub fn user_unit(&self) -> bool {
        self.unit.as_ref().is_some_and(|u| u.user)
    }

    /// The manager that creates the cgroup (or unit).
    pub fn open(&self) -> Result<Box<dyn Cgroup>> {
        match &self.unit {
            Some(u) => Ok(Box::new(systemd::Systemd::new(
                u.clone(),
                self.owned.clone(),
                self.conn.lock().unwrap_or_else(|e| e.into_inner()).take(),
            )?)),
            None => open(&self.path),
        }
    }
}

/// Places a new container: with `systemd` (the `--systemd-cgroup` driver) the unit of
/// `cgroups_path` ([`systemd::unit_for`], the annotations' properties checked), else
/// [`resolve_path`]. Nothing is created; only a `rootless` caller's unit connects to the
/// caller's own systemd instance, whose cgroup its path is under.
pub fn place(
    systemd: bool,
    rootless: bool,
    cgroups_path: Option<&str>,
    id: &str,
    annotations: Option<&std::collections::HashMap<String, String>>,
) -> Result<Placement> {
    if !systemd {
        return Ok(Placement {
            path: resolve_path(cgroups_path, id)?,
            unit: None,
            owned: Default::default(),
            conn: Default::default(),
        });
    }
    let mut unit = systemd::unit_for(cgroups_path, id, annotations, rootless)?;
    let conn = match rootless {
        true => Some(unit.in_user_manager()?),
        false => None,
    };
    Ok(Placement {
        path: unit.path.clone(),
        unit: Some(unit),
        owned: Default::default(),
        conn: std::sync::Arc::new(std::sync::Mutex::new(conn)),
    })
}

/// The manager of an existing container's cgroup at `path`: the systemd driver's when
/// the container has a systemd `unit` (update and delete talk to systemd; `user`: the
/// caller's own systemd instance), else [`open`]'s.
pub fn open_managed(path: &str, unit: Option<&str>, user: bool) -> Result<Box<dyn Cgroup>> {
    match unit {
        Some(u) => Ok(Box::new(systemd::Systemd::existing(u, path, "", user)?)),
        None => open(path),
    }
}

/// Lexically cleans a cgroup path: drops `.`, empty parts and `..` (which can
/// never climb above the root). Keeps relative paths relative.
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    if p.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

/// Turns `linux.cgroupsPath` into an absolute cgroup path.
///
/// - absolute: used as is (cleaned);
/// - relative: joined to the runtime's own cgroup from `/proc/self/cgroup`
///   (v2: the parent of its `0::` cgroup, as runc does, since that one has
///   tasks; v1/hybrid: its `devices` cgroup, falling back to `memory`/`pids`);
/// - absent or empty: the container id, relative as above (runc's cgroupfs
///   default).
///
/// The `slice:prefix:name` form is refused (see [`check_systemd_cgroup`]).
pub fn resolve_path(cgroups_path: Option<&str>, id: &str) -> Result<String> {
    check_systemd_cgroup(false, cgroups_path)?;
    let raw = match cgroups_path {
        Some(p) if !p.is_empty() => p,
        _ => id,
    };
    if raw.starts_with('/') {
        return Ok(clean(raw));
    }
    let rel = clean(raw);
    if rel.is_empty() {
        return Err(CgroupError::InvalidField {
            field: "linux.cgroupsPath".into(),
            reason: format!("{raw:?} resolves to no cgroup"),
        });
    }
    let own = detect::own_cgroups()?;
    let base = match detect::layout()? {
        Layout::V2 => {
            let p = own.get("").cloned().unwrap_or_else(|| "/".into());
            std::path::Path::new(&p)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|| "/".into())
        }
        Layout::V1 | Layout::Hybrid => ["devices", "memory", "pids", "cpu"]
            .iter()
            .find_map(|c| own.get(*c).cloned())
            .unwrap_or_else(|| "/".into()),
    };
    Ok(clean(&format!("{base}/{rel}")))
}

/// Opens the manager for the absolute cgroup path `path`, after detecting the
/// host layout. Errors when the layout cannot be detected or `path` is not
/// absolute.
pub fn open(path: &str) -> Result<Box<dyn Cgroup>> {
    if !path.starts_with('/') {
        return Err(CgroupError::RelativePath { path: path.into() });
    }
    let path = clean(path);
    Ok(match detect::layout()? {
        Layout::V2 => Box::new(v2::V2::new(&path)),
        l @ (Layout::V1 | Layout::Hybrid) => Box::new(v1::V1::new(&path, l)?),
    })
}

/// Converts cgroup v1 `cpu.shares` to cgroup v2 `cpu.weight` the way current
/// runc/crun do: a quadratic in log2(shares) mapping 2→1, 1024→100 and
/// 262144→10000; 0 means unset.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    // ceil(10^((l² + 125·l)/612 − 7/34)) with l = log2(shares), precomputed by
    // build.rs as the first shares value of each weight 2..=10000 (no libm at run time).
    const FIRST: &[u32] = &include!(concat!(env!("OUT_DIR"), "/shares_weight.rs"));
    1 + FIRST.partition_point(|&first| u64::from(first) <= shares) as u64
}

/// Converts a v1 blkio weight (10..1000) to a v2 `io.weight` (1..10000), as runc.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (u64::from(weight).saturating_sub(10)) * 9999 / 990
}

/// Formats cgroup v2 `cpu.max` from a quota (`None` or `-1` = unlimited) and a
/// period (µs).
pub fn cpu_max(quota: Option<i64>, period: u64) -> String {
    match quota {
        Some(q) if q > 0 => format!("{q} {period}"),
        _ => format!("max {period}"),
    }
}

#[cfg(test)]
mod tests;
