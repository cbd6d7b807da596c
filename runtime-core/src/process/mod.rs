//! The create path (runtime.md "Lifecycle" steps 1–2): one fork through libc (so a
//! multithreaded caller's malloc stays usable in the child), then from that
//! single-threaded helper one `clone3` that creates the container init with its new
//! namespaces, as a child of the runtime itself (`CLONE_PARENT`). The helper exits at
//! once, so after `create` returns the init's parent is the caller's subreaper.
//!
//! When the helper has nothing to do (no namespace to join, no time namespace) and the
//! runtime is single-threaded (the `casulo` binary), the runtime clones the init itself:
//! same parent, one process creation and one hand-off less (docs/performance.md).

pub mod channel;
pub(crate) mod exec;
pub(crate) mod exec_cgroup;
pub(crate) mod finish;
pub mod init;

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::cgroups::Cgroup;
use crate::namespaces::{self, Namespaces};
use crate::sys::{self, Fork};
use channel::{Channel, Msg};
use init::InitPlan;

/// Errors of the create path.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A syscall of the runtime side failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The errno.
        source: crate::rootfs::ErrnoText,
    },
    /// The init (or the helper) reported a setup error.
    #[error("{0}")]
    Init(String),
    /// The init exited without reporting.
    #[error("container init exited during setup")]
    InitDied,
    /// Writing id maps failed.
    #[error(transparent)]
    Namespace(#[from] namespaces::NamespaceError),
    /// Joining the cgroup failed.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    /// A runtime-namespace hook before `pivot_root` failed.
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    /// Moving `linux.netDevices` failed.
    #[error(transparent)]
    NetDev(#[from] crate::netdev::NetDevError),
}

/// Called with the init's host pid when the init stops before `pivot_root`: runs the
/// runtime-namespace hooks and returns the state JSON for the init's own hooks.
pub type PrePivot<'a> = &'a dyn Fn(i32) -> Result<Vec<u8>, crate::hooks::HookError>;

/// Receives the seccomp notify listener the init sent (with the init's host pid) and
/// hands it to the agent.
pub type OnListener<'a> = &'a dyn Fn(i32, OwnedFd) -> Result<(), ProcessError>;

fn sys_err(what: &'static str) -> impl FnOnce(Errno) -> ProcessError {
    move |e| ProcessError::Sys {
        what,
        source: crate::rootfs::ErrnoText(e),
    }
}

/// The container init, as the runtime holds it after a successful spawn.
#[derive(Debug)]
pub struct Spawned {
    /// Host pid.
    pub pid: i32,
    /// A pidfd for signalling and waiting without pid-reuse races.
    pub pidfd: OwnedFd,
}

/// Kills and reaps a half-made init.
fn abort(pid: i32, pidfd: Option<&OwnedFd>) {
    match pidfd {
        Some(fd) => {
            let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
        }
        None => {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let _ = waitpid(Pid::from_raw(pid), None);
}

/// Creates the container init and waits until it reports `Ready` (or an error).
/// `pre_pivot` answers the init's `Hooks` message (sent when `plan.hooks` needs it).
pub fn spawn(
    plan: &InitPlan<'_>,
    ns: &Namespaces,
    time_offsets: &str,
    cgroup: Option<&dyn Cgroup>,
    pre_pivot: Option<PrePivot<'_>>,
    on_listener: Option<OnListener<'_>>,
) -> Result<Spawned, ProcessError> {
    let (ours, theirs) = Channel::pair().map_err(sys_err("socketpair"))?;
    let into_cgroup = cgroup.and_then(|c| c.clone_into_fd());
    let pid = if ns.join.is_empty() && !ns.new_time && single_threaded() {
        // Nothing to do before the clone and no other thread that could hold a libc
        // lock: clone the init directly (one process creation instead of two).
        let mut flags = ns.clone_flags.bits() as u64;
        if into_cgroup.is_some() {
            flags |= sys::CLONE_INTO_CGROUP;
        }
        match sys::clone3(
            flags,
            Some(libc::SIGCHLD),
            into_cgroup.as_ref().map(|f| f.as_fd()),
        ) {
            Ok(Fork::Child) => {
                drop(ours);
                init::main(plan, theirs)
            }
            Ok(Fork::Parent(pid)) => pid,
            Err(e) => return Err(sys_err("clone3")(e)),
        }
    } else {
        let helper = match sys::fork().map_err(sys_err("fork"))? {
            Fork::Child => {
                drop(ours);
                helper(plan, ns, time_offsets, into_cgroup.as_ref(), theirs)
            }
            Fork::Parent(pid) => pid,
        };
        let first = ours.recv();
        let _ = waitpid(Pid::from_raw(helper), None);
        match first {
            Ok(Some(Msg::Pid(pid))) => pid,
            Ok(Some(Msg::Error(e))) => return Err(ProcessError::Init(e)),
            _ => return Err(ProcessError::InitDied),
        }
    };
    drop(theirs);
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            abort(pid, None);
            return Err(sys_err("pidfd_open")(e));
        }
    };
    crate::fault::fault_point("after-clone");
    let finish = || -> Result<(), ProcessError> {
        if ns.clone_flags.contains(CloneFlags::CLONE_NEWUSER) {
            namespaces::write_id_maps(pid, plan.spec)?;
        }
        send_mount_sources(plan, pid, &pidfd, &ours)?;
        // The init makes its mounts while the pid goes into the cgroups: on v1 the
        // first `cgroup.procs` write waits for an RCU grace period (docs/performance.md).
        // It waits for `InCgroup` before anything that needs the cgroup: the cgroup
        // namespace, `cgroup` mounts, device nodes, hooks.
        ours.send(&Msg::Go)
            .map_err(sys_err("signalling the container init"))?;
        crate::fault::fault_point("before-cgroup-join");
        // The init works concurrently from here on: if it failed (and exited) meanwhile,
        // the join or the send fails for that reason, and its own message says why.
        let init_error = |e: ProcessError| match ours.pending_error() {
            Some(text) => ProcessError::Init(text),
            None => e,
        };
        if let Some(cg) = cgroup {
            if into_cgroup.is_none() {
                cg.add_process(pid).map_err(|e| init_error(e.into()))?;
            }
        }
        ours.send(&Msg::InCgroup)
            .map_err(|e| init_error(sys_err("signalling the container init")(e)))?;
        // While the init makes its mounts; before its Ready, hooks and user code.
        crate::netdev::move_all(plan.spec, pid, pidfd.as_fd())?;
        let mut hooks_done = false;
        loop {
            match ours.recv_fd() {
                Ok((Some(Msg::Listener), Some(fd))) => match on_listener {
                    Some(f) => f(pid, fd)?,
                    None => {
                        return Err(ProcessError::Init(
                            "linux.seccomp: unexpected notify listener".into(),
                        ))
                    }
                },
                Ok((m, _)) => match m {
                    Some(Msg::Ready) => return Ok(()),
                    Some(Msg::Hooks) if !hooks_done => {
                        hooks_done = true;
                        let payload = match pre_pivot {
                            Some(f) => f(pid)?,
                            None => Vec::new(),
                        };
                        ours.send(&Msg::HooksDone(payload))
                            .map_err(sys_err("signalling the container init"))?;
                    }
                    Some(Msg::Error(e)) => return Err(ProcessError::Init(e)),
                    _ => return Err(ProcessError::InitDied),
                },
                Err(_) => return Err(ProcessError::InitDied),
            }
        }
    };
    if let Err(e) = finish() {
        abort(pid, Some(&pidfd));
        return Err(e);
    }
    Ok(Spawned { pid, pidfd })
}

/// Opens the bind sources the init cannot open itself (user namespace, idmaps) and
/// sends them before `Go` (rootfs::sources); nothing when the config has none.
fn send_mount_sources(
    plan: &InitPlan<'_>,
    pid: i32,
    pidfd: &OwnedFd,
    chan: &Channel,
) -> Result<(), ProcessError> {
    if !crate::rootfs::sources::needed(plan.spec, plan.userns) {
        return Ok(());
    }
    let list = crate::rootfs::sources::open(
        plan.spec,
        plan.bundle,
        plan.userns,
        pid,
        pidfd.as_fd(),
        plan.proc_fd,
    )
    .map_err(|e| ProcessError::Init(e.to_string()))?;
    for s in list {
        let msg = Msg::MountSource {
            index: s.index as u32,
            tree: s.tree,
        };
        chan.send_fd(&msg, s.fd.as_fd())
            .map_err(sys_err("sending a mount source to the container init"))?;
    }
    Ok(())
}

/// True when the calling process has a single thread (field 20 of /proc/self/stat), so
/// a raw clone cannot leave a libc lock held by another thread in the child.
fn single_threaded() -> bool {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return false;
    };
    stat.rfind(')')
        .and_then(|i| stat.get(i + 2..))
        .and_then(|rest| rest.split_whitespace().nth(17))
        == Some("1")
}

/// The forked helper: joins namespaces given by path, unshares the time namespace (so
/// its offsets can be set before the init exists), clones the init and exits.
fn helper(
    plan: &InitPlan<'_>,
    ns: &Namespaces,
    time_offsets: &str,
    cgroup_fd: Option<&OwnedFd>,
    chan: Channel,
) -> ! {
    let fail = |chan: &Channel, msg: String| -> ! {
        let _ = chan.send(&Msg::Error(msg));
        sys::exit_now(1)
    };
    for (flag, fd) in &ns.join {
        if let Err(e) = setns(fd, *flag) {
            fail(
                &chan,
                format!(
                    "linux.namespaces: joining {flag:?}: {}",
                    e.desc().to_lowercase()
                ),
            );
        }
    }
    if ns.new_time {
        if let Err(e) = unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)) {
            fail(
                &chan,
                format!("linux.namespaces: time: {}", e.desc().to_lowercase()),
            );
        }
        if !time_offsets.is_empty() {
            if let Err(e) = std::fs::write("/proc/self/timens_offsets", time_offsets) {
                fail(&chan, format!("linux.timeOffsets: {e}"));
            }
        }
    }
    // A new cgroup namespace is not among the flags: the init unshares it once it is in
    // its cgroup (after `InCgroup`), so the namespace's root is the container's cgroup.
    let mut flags = ns.clone_flags.bits() as u64 | libc::CLONE_PARENT as u64;
    if cgroup_fd.is_some() {
        flags |= sys::CLONE_INTO_CGROUP;
    }
    match sys::clone3(flags, None, cgroup_fd.map(|f| f.as_fd())) {
        Ok(Fork::Child) => init::main(plan, chan),
        Ok(Fork::Parent(pid)) => {
            let _ = chan.send(&Msg::Pid(pid));
            sys::exit_now(0)
        }
        Err(e) => fail(&chan, format!("clone3: {}", e.desc().to_lowercase())),
    }
}
