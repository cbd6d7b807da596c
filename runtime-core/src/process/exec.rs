//! The exec'd process's side of `exec` (the operation is `crate::exec`, the clone
//! `process::spawn`): the process enters the container's root (`/proc/<init>/root`, opened before the mount namespace was joined:
//! setns does not change the root), sets up its terminal, limits, seccomp, user and
//! capabilities, and execs.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};

use oci_spec::runtime::Process;

use super::channel::{Channel, Msg};
use crate::security::process::{final_affinity, set_cpu_affinity, ProcessAttrs};
use crate::security::Credentials;
use crate::{sys, ChildError};

/// What the exec'd process needs, prepared before the fork.
pub(crate) struct Plan<'a> {
    pub(crate) root: BorrowedFd<'a>,
    pub(crate) proc_fd: BorrowedFd<'a>,
    pub(crate) process: &'a Process,
    pub(crate) creds: &'a Credentials,
    pub(crate) attrs: &'a ProcessAttrs,
    pub(crate) mempolicy: Option<&'a crate::security::mempolicy::MemPolicy>,
    pub(crate) seccomp: Option<&'a casulo_seccomp::Filter>,
    pub(crate) console: Option<BorrowedFd<'a>>,
    pub(crate) preserve_fds: u32,
    pub(crate) argv: &'a [CString],
    pub(crate) envp: &'a [CString],
}

/// The exec'd process, from the clone: waits for `Go` (it is in the cgroup), takes
/// its steps and execs; an error goes to the runtime over the channel.
pub(crate) fn child(plan: &Plan<'_>, chan: Channel) -> ! {
    match chan.recv() {
        Ok(Some(Msg::Go)) => {}
        _ => sys::exit_now(1),
    }
    let e = match prepare(plan, &chan) {
        Ok((exe, envp)) => super::finish::exec(&exe, plan.argv, &envp),
        Err(e) => e,
    };
    // After the seccomp filter: a plain write(2), which any profile allows.
    let _ = chan.send_by_write(&Msg::Error(e));
    sys::exit_now(127)
}

/// Everything between the clone and execve; returns the resolved executable and envp.
fn prepare(
    plan: &Plan<'_>,
    chan: &Channel,
) -> std::result::Result<(super::finish::Executable, Vec<CString>), ChildError> {
    // execCPUAffinity.final: the parent sent Go once the process was in the cgroup.
    if let Some(cpus) = final_affinity(plan.process) {
        set_cpu_affinity("process.execCPUAffinity.final", cpus).map_err(|e| ChildError::of(&e))?;
    }
    nix::unistd::fchdir(plan.root.as_raw_fd())
        .map_err(|e| ChildError::sys("entering the container root", e))?;
    nix::unistd::chroot(".").map_err(|e| ChildError::sys("chroot", e))?;
    nix::unistd::setsid().map_err(|e| ChildError::sys("setsid", e))?;
    if let Some(socket) = plan.console {
        crate::tty::setup(&crate::tty::Console {
            socket,
            size: crate::tty::console_size(Some(plan.process)),
            dev_console: None,
        })
        .map_err(|e| ChildError::context("process.terminal", &e))?;
    }
    let creds = plan.creds;
    creds
        .apply_limits(plan.proc_fd)
        .map_err(|e| ChildError::of(&e))?;
    plan.attrs.apply().map_err(|e| ChildError::of(&e))?;
    if let Some(m) = plan.mempolicy {
        m.apply().map_err(|e| ChildError::of(&e))?;
    }
    plan.attrs
        .apply_lsm(plan.proc_fd)
        .map_err(|e| ChildError::of(&e))?;
    // CVE-2024-21626: no fd reaching the host (procfs handle, namespace and cgroup fds,
    // whatever the runtime held) stays open while container paths resolve.
    super::finish::close_fds(chan, plan.preserve_fds, &[plan.root.as_raw_fd()])?;
    crate::rootfs::enter_cwd(plan.root, plan.process.cwd(), false)
        .map_err(|e| ChildError::of(&e))?;
    let exe = super::finish::find_executable(plan.root, plan.argv, plan.envp)?;
    let envp = super::finish::with_home(plan.root, creds.uid(), plan.envp);
    super::finish::mark_cloexec(plan.preserve_fds)?;
    super::finish::become_process(creds, plan.seccomp, Some(chan))?;
    Ok((exe, envp))
}
