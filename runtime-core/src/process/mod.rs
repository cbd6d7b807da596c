//! The processes the runtime puts into a container: the one spawn primitive
//! (`spawn.rs`) and its process handle, the typed channel (`channel.rs`), the container
//! init (`init.rs`; its runtime side is [`spawn`] here), the exec'd process (`exec.rs`),
//! and the last steps both take before execve (`finish.rs`).

pub mod channel;
pub(crate) mod exec;
pub(crate) mod finish;
pub mod init;
pub(crate) mod spawn;

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;

use crate::cgroups::Cgroup;
use crate::namespaces::{self, Namespaces};
use channel::{Channel, Msg};
use init::InitPlan;
pub use spawn::ProcessHandle;
use spawn::{Spawn, Spawned};

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
    /// The init, the exec'd process or the helper reported a setup error.
    #[error(transparent)]
    Init(#[from] crate::ChildError),
    /// A message the runtime did not expect at that point.
    #[error("unexpected message from the container process")]
    Unexpected,
    /// A seccomp notify listener from a process whose filter has none.
    #[error("linux.seccomp: unexpected notify listener")]
    UnexpectedListener,
    /// Handing the notify listener to the agent at `listenerPath` failed.
    #[error("linux.seccomp.listenerPath: {0}")]
    Listener(#[source] casulo_seccomp::SeccompError),
    /// Opening the bind sources for the init failed.
    #[error(transparent)]
    Sources(#[from] crate::rootfs::RootfsError),
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

pub(crate) fn sys_err(what: &'static str) -> impl FnOnce(Errno) -> ProcessError {
    move |e| ProcessError::Sys {
        what,
        source: crate::rootfs::ErrnoText(e),
    }
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
) -> Result<ProcessHandle, ProcessError> {
    let s = Spawn {
        join: &ns.join,
        new: ns.clone_flags,
        new_time: ns.new_time.then_some(time_offsets),
        cgroup,
        // The init makes itself non-dumpable (init::main).
        non_dumpable: false,
        cpus: None,
        proc_fd: plan.proc_fd,
    };
    let spawned = spawn::clone_process(&s, |chan| init::main(plan, chan))?;
    crate::fault::fault_point("after-clone");
    if let Err(e) = to_ready(plan, ns, cgroup, &spawned, pre_pivot, on_listener) {
        spawned.process.kill_and_reap();
        return Err(e);
    }
    Ok(spawned.process)
}

/// The runtime's side of the init's setup, from the clone to its `Ready`.
fn to_ready(
    plan: &InitPlan<'_>,
    ns: &Namespaces,
    cgroup: Option<&dyn Cgroup>,
    spawned: &Spawned,
    pre_pivot: Option<PrePivot<'_>>,
    on_listener: Option<OnListener<'_>>,
) -> Result<(), ProcessError> {
    let (pid, pidfd, ours) = (spawned.process.pid, spawned.process.pidfd(), &spawned.chan);
    if ns.clone_flags.contains(CloneFlags::CLONE_NEWUSER) {
        namespaces::write_id_maps(pid, plan.spec)?;
    }
    send_mount_sources(plan, pid, pidfd, ours)?;
    // The init makes its mounts while the runtime moves it into the cgroups, when it
    // did not join them itself (the systemd driver's unit start, a joined cgroup
    // namespace). It waits for `InCgroup` before anything that needs the cgroup: the
    // cgroup namespace, `cgroup` mounts, device nodes, hooks.
    ours.send(&Msg::Go)
        .map_err(sys_err("signalling the container init"))?;
    crate::fault::fault_point("before-cgroup-join");
    // The init works concurrently from here on: if it failed (and exited) meanwhile, the
    // join or the send fails for that reason, and its own message says why.
    let init_error = |e: ProcessError| match ours.pending_error() {
        Some(text) => ProcessError::Init(text),
        None => e,
    };
    if let Some(cg) = cgroup {
        spawned.enter_cgroup(cg).map_err(init_error)?;
    }
    ours.send(&Msg::InCgroup)
        .map_err(|e| init_error(sys_err("signalling the container init")(e)))?;
    // While the init makes its mounts; before its Ready, hooks and user code.
    crate::netdev::move_all(plan.spec, pid, pidfd)?;
    until_ready(ours, pid, pre_pivot, on_listener)
}

/// Answers the init's messages (its notify listener, `Hooks`) until it is `Ready`.
fn until_ready(
    ours: &Channel,
    pid: i32,
    pre_pivot: Option<PrePivot<'_>>,
    on_listener: Option<OnListener<'_>>,
) -> Result<(), ProcessError> {
    let mut hooks_done = false;
    loop {
        match ours.recv_fd() {
            Ok((Some(Msg::Listener), Some(fd))) => match on_listener {
                Some(f) => f(pid, fd)?,
                None => return Err(ProcessError::UnexpectedListener),
            },
            Ok((Some(Msg::Ready), _)) => return Ok(()),
            Ok((Some(Msg::Hooks), _)) if !hooks_done => {
                hooks_done = true;
                let payload = match pre_pivot {
                    Some(f) => f(pid)?,
                    None => Vec::new(),
                };
                ours.send(&Msg::HooksDone(payload))
                    .map_err(sys_err("signalling the container init"))?;
            }
            Ok((Some(Msg::Error(e)), _)) => return Err(ProcessError::Init(e)),
            Ok(_) | Err(_) => return Err(ProcessError::InitDied),
        }
    }
}

/// Opens the bind sources the init cannot open itself (user namespace, idmaps) and
/// sends them before `Go` (rootfs::sources); nothing when the config has none.
fn send_mount_sources(
    plan: &InitPlan<'_>,
    pid: i32,
    pidfd: std::os::fd::BorrowedFd<'_>,
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
        pidfd,
        plan.proc_fd,
    )?;
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
