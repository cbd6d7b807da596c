//! The one spawn primitive of create and exec: a process of the container, cloned into
//! the namespaces it joins or creates and into its cgroup, as a child of the runtime.
//!
//! The runtime forks a helper through libc (so a multithreaded caller's malloc stays
//! usable in the child). The single-threaded helper takes the helper-side steps
//! ([`Spawn`]: non-dumpable, CPU affinity, `setns` in [`crate::namespaces::JOIN_ORDER`],
//! a new time namespace and its offsets), then one `clone3(CLONE_PARENT | new
//! namespaces [| CLONE_INTO_CGROUP])` makes the process, which runs the caller's
//! process-side steps (the init, or the exec'd process). `CLONE_PARENT` makes it a child
//! of the runtime, not of the helper, which sends its pid and exits at once: after the
//! runtime returns, the caller's subreaper (containerd-shim, conmon) is its parent.
//!
//! With no helper-side step and a single-threaded runtime (the `casulo` binary creating
//! a container that joins nothing), the runtime clones the process itself: same parent,
//! one process creation and one hand-off less (docs/performance.md).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::channel::{Channel, Msg};
use super::{sys_err, ProcessError};
use crate::cgroups::{Cgroup, SelfJoin};
use crate::sys::{self, Fork};
use crate::ChildError;

/// A process the runtime cloned (a container init or an exec'd process): its host pid
/// and a pidfd, so it is signalled and waited for without pid-reuse races.
#[derive(Debug)]
pub struct ProcessHandle {
    /// Host pid.
    pub pid: i32,
    pidfd: OwnedFd,
}

impl ProcessHandle {
    /// The process's pidfd (readable once it exits).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Sends a signal to exactly this process.
    pub fn signal(&self, sig: i32) -> Result<(), ProcessError> {
        sys::pidfd_send_signal(self.pidfd.as_fd(), sig).map_err(sys_err("kill"))
    }

    /// Waits for the process (the caller must be its parent: the process that created
    /// it through [`crate::Runtime::create`] or [`crate::Runtime::exec`]) and returns its
    /// exit code, 128+N when killed by signal N.
    pub fn wait(&self) -> Result<i32, ProcessError> {
        loop {
            match waitpid(Pid::from_raw(self.pid), None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(sys_err("waiting for the process")(e)),
            }
        }
    }

    /// SIGKILL and reap (a half-made process, after a failure).
    pub(crate) fn kill_and_reap(&self) {
        let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
        let _ = waitpid(Pid::from_raw(self.pid), None);
    }
}

/// What the spawn primitive does before the process exists.
pub(crate) struct Spawn<'a> {
    /// Namespaces to join, in [`crate::namespaces::JOIN_ORDER`], opened beforehand.
    pub join: &'a [(CloneFlags, OwnedFd)],
    /// New namespaces made by the clone (not time: see `new_time`; not cgroup: the init
    /// unshares it once it is in its cgroup).
    pub new: CloneFlags,
    /// A new time namespace, unshared by the helper after the joins, with these offsets
    /// written to `timens_offsets` (through `proc_fd`) before the clone enters it.
    pub new_time: Option<&'a str>,
    /// The cgroup the process starts in: `CLONE_INTO_CGROUP` where the kernel allows it,
    /// else [`Spawned::enter_cgroup`] moves it after the clone.
    pub cgroup: Option<&'a dyn Cgroup>,
    /// The helper (and so the process) is non-dumpable: CVE-2019-5736, a copy of the
    /// runtime binary that container processes could see (exec).
    pub non_dumpable: bool,
    /// `execCPUAffinity.initial`: the helper's CPUs, inherited by the process.
    pub cpus: Option<&'a str>,
    /// The verified host procfs handle.
    pub proc_fd: BorrowedFd<'a>,
}

/// The process right after the clone, with the runtime's end of its channel.
pub(crate) struct Spawned {
    /// The process.
    pub process: ProcessHandle,
    /// The runtime's end of the channel.
    pub chan: Channel,
    in_cgroup: bool,
}

impl Spawned {
    /// Moves the process into `cgroup` unless the clone already put it there.
    pub(crate) fn enter_cgroup(&self, cgroup: &dyn Cgroup) -> Result<(), ProcessError> {
        if self.in_cgroup {
            return Ok(());
        }
        Ok(cgroup.add_process(self.process.pid)?)
    }
}

/// Clones the process described by `s`; it runs `child` with its end of the channel
/// (`child` does not return: it execs or exits).
pub(crate) fn clone_process(
    s: &Spawn<'_>,
    child: impl FnOnce(Channel),
) -> Result<Spawned, ProcessError> {
    let (ours, theirs) = Channel::pair().map_err(sys_err("socketpair"))?;
    // CLONE_INTO_CGROUP checks that the caller's own cgroup is inside its cgroup
    // namespace (ENOENT otherwise): after joining a container's cgroup namespace the
    // helper's is not, so then the runtime moves the process instead.
    let joins_cgroupns = s
        .join
        .iter()
        .any(|(f, _)| f.contains(CloneFlags::CLONE_NEWCGROUP));
    let mut join = s
        .cgroup
        .and_then(|c| c.self_join())
        .filter(|j| !(joins_cgroupns && j.into.is_some()));
    let in_cgroup = join.is_some();
    let into_cgroup = join.as_mut().and_then(|j| j.into.take());
    let helper_steps =
        !s.join.is_empty() || s.new_time.is_some() || s.non_dumpable || s.cpus.is_some();
    let pid = if !helper_steps && single_threaded() {
        // No other thread that could hold a libc lock: clone directly.
        let mut flags = s.new.bits() as u64;
        if into_cgroup.is_some() {
            flags |= sys::CLONE_INTO_CGROUP;
        }
        let cgroup_fd = into_cgroup.as_ref().map(|f| f.as_fd());
        match sys::clone3(flags, Some(libc::SIGCHLD), cgroup_fd) {
            Ok(Fork::Child) => {
                drop(ours);
                drop(into_cgroup);
                join_tasks(join, &theirs);
                child(theirs);
                sys::exit_now(1)
            }
            Ok(Fork::Parent(pid)) => pid,
            Err(e) => return Err(sys_err("clone3")(e)),
        }
    } else {
        let helper_pid = match sys::fork().map_err(sys_err("fork"))? {
            Fork::Child => {
                drop(ours);
                helper(s, into_cgroup, join, theirs, child)
            }
            Fork::Parent(pid) => pid,
        };
        let first = ours.recv();
        let _ = waitpid(Pid::from_raw(helper_pid), None);
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
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
            return Err(sys_err("pidfd_open")(e));
        }
    };
    Ok(Spawned {
        process: ProcessHandle { pid, pidfd },
        chan: ours,
        in_cgroup,
    })
}

/// The new process's first step: it writes itself into its v1 cgroups (see
/// [`SelfJoin`]) and closes those host files; on failure it reports and exits.
fn join_tasks(join: Option<SelfJoin>, chan: &Channel) {
    let Some(join) = join else { return };
    if let Err((path, e)) = join.join_tasks() {
        let what = format!("cgroup: joining {}", path.display());
        let _ = chan.send(&Msg::Error(ChildError::sys(what, e)));
        sys::exit_now(1)
    }
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

/// The forked helper: the helper-side steps, the clone, the pid to the runtime, exit.
fn helper(
    s: &Spawn<'_>,
    cgroup_fd: Option<OwnedFd>,
    join: Option<SelfJoin>,
    chan: Channel,
    child: impl FnOnce(Channel),
) -> ! {
    if let Err(e) = helper_steps(s) {
        let _ = chan.send(&Msg::Error(e));
        sys::exit_now(1)
    }
    let mut flags = s.new.bits() as u64 | libc::CLONE_PARENT as u64;
    if cgroup_fd.is_some() {
        flags |= sys::CLONE_INTO_CGROUP;
    }
    match sys::clone3(flags, None, cgroup_fd.as_ref().map(|f| f.as_fd())) {
        Ok(Fork::Child) => {
            drop(cgroup_fd);
            join_tasks(join, &chan);
            child(chan);
            sys::exit_now(1)
        }
        Ok(Fork::Parent(pid)) => {
            let _ = chan.send(&Msg::Pid(pid));
            sys::exit_now(0)
        }
        Err(e) => {
            let _ = chan.send(&Msg::Error(ChildError::sys("clone3", e)));
            sys::exit_now(1)
        }
    }
}

fn helper_steps(s: &Spawn<'_>) -> Result<(), ChildError> {
    if s.non_dumpable {
        let _ = nix::sys::prctl::set_dumpable(false);
    }
    // execCPUAffinity.initial: before the process joins the container's cgroup.
    if let Some(cpus) = s.cpus {
        crate::security::process::set_cpu_affinity("process.execCPUAffinity.initial", cpus)
            .map_err(|e| ChildError::of(&e))?;
    }
    for (flag, fd) in s.join {
        setns(fd, *flag).map_err(|e| {
            let what = format!(
                "linux.namespaces: joining {}",
                crate::namespaces::name(*flag)
            );
            ChildError::sys(what, e)
        })?;
    }
    if let Some(offsets) = s.new_time {
        unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
            .map_err(|e| ChildError::sys("linux.namespaces: time", e))?;
        if !offsets.is_empty() {
            // Through the host's procfs handle: a mount namespace joined above may have
            // anything at /proc.
            let fd = crate::rootfs::open_proc(
                s.proc_fd,
                std::path::Path::new("self/timens_offsets"),
                libc::O_WRONLY,
            )
            .map_err(|e| ChildError::sys("linux.timeOffsets", e))?;
            sys::write_all(fd.as_fd(), offsets.as_bytes())
                .map_err(|e| ChildError::sys("linux.timeOffsets", e))?;
        }
    }
    Ok(())
}
