//! The exec'd process's side of `exec` (the operation is `crate::exec`): the helper
//! joins the container's namespaces and clones the process, which enters the
//! container's root (`/proc/<init>/root`, opened before the mount namespace was joined:
//! setns does not change the root), sets up its terminal, limits, seccomp, user and
//! capabilities, and execs.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sched::{setns, CloneFlags};
use oci_spec::runtime::Process;

use super::channel::{Channel, Msg};
use crate::security::process::{final_affinity, initial_affinity, set_cpu_affinity, ProcessAttrs};
use crate::security::Credentials;
use crate::sys::{self, Fork};

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

/// The forked helper: joins the namespaces and clones the process into them.
pub(crate) fn helper(
    plan: &Plan<'_>,
    namespaces: &[(OwnedFd, CloneFlags)],
    cgroup_fd: Option<&OwnedFd>,
    chan: Channel,
) -> ! {
    let fail = |chan: &Channel, msg: String| -> ! {
        let _ = chan.send(&Msg::Error(msg));
        sys::exit_now(1)
    };
    // CVE-2019-5736: the process is a copy of the runtime binary until its execve, inside
    // the container's pid namespace: non-dumpable (inherited by the clone, reset by
    // execve), no container process can open its /proc/<pid>/exe. Kept dumpable in a
    // user namespace, as the init (see process::init::main).
    if !namespaces
        .iter()
        .any(|(_, f)| f.contains(CloneFlags::CLONE_NEWUSER))
    {
        let _ = nix::sys::prctl::set_dumpable(false);
    }
    // execCPUAffinity.initial: before the process joins the container's cgroup.
    if let Some(cpus) = initial_affinity(plan.process) {
        if let Err(e) = set_cpu_affinity("process.execCPUAffinity.initial", cpus) {
            fail(&chan, e.to_string());
        }
    }
    for (fd, flag) in namespaces {
        if let Err(e) = setns(fd, *flag) {
            fail(
                &chan,
                format!("exec: joining {flag:?}: {}", e.desc().to_lowercase()),
            );
        }
    }
    let mut flags = libc::CLONE_PARENT as u64;
    if cgroup_fd.is_some() {
        flags |= sys::CLONE_INTO_CGROUP;
    }
    match sys::clone3(flags, None, cgroup_fd.map(|f| f.as_fd())) {
        Ok(Fork::Child) => child(plan, chan),
        Ok(Fork::Parent(pid)) => {
            let _ = chan.send(&Msg::Pid(pid));
            sys::exit_now(0)
        }
        Err(e) => fail(&chan, format!("clone3: {}", e.desc().to_lowercase())),
    }
}

fn child(plan: &Plan<'_>, chan: Channel) -> ! {
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
) -> std::result::Result<(super::finish::Executable, Vec<CString>), String> {
    let text = |what: &str, e: nix::errno::Errno| format!("{what}: {}", e.desc().to_lowercase());
    // execCPUAffinity.final: the parent sent Go once the process was in the cgroup.
    if let Some(cpus) = final_affinity(plan.process) {
        set_cpu_affinity("process.execCPUAffinity.final", cpus).map_err(|e| e.to_string())?;
    }
    nix::unistd::fchdir(plan.root.as_raw_fd())
        .map_err(|e| text("entering the container root", e))?;
    nix::unistd::chroot(".").map_err(|e| text("chroot", e))?;
    nix::unistd::setsid().map_err(|e| text("setsid", e))?;
    if let Some(socket) = plan.console {
        crate::tty::setup(&crate::tty::Console {
            socket,
            size: crate::tty::console_size(Some(plan.process)),
            dev_console: None,
        })
        .map_err(|e| format!("process.terminal: {e}"))?;
    }
    let creds = plan.creds;
    creds
        .apply_limits(plan.proc_fd)
        .map_err(|e| e.to_string())?;
    plan.attrs.apply().map_err(|e| e.to_string())?;
    if let Some(m) = plan.mempolicy {
        m.apply().map_err(|e| e.to_string())?;
    }
    plan.attrs
        .apply_lsm(plan.proc_fd)
        .map_err(|e| e.to_string())?;
    // CVE-2024-21626: no fd reaching the host (procfs handle, namespace and cgroup fds,
    // whatever the runtime held) stays open while container paths resolve.
    let mut keep: Vec<i32> = vec![0, 1, 2, chan.as_fd().as_raw_fd(), plan.root.as_raw_fd()];
    keep.extend((3..3 + plan.preserve_fds).map(|f| f as i32));
    sys::close_fds_except(&keep).map_err(|e| text("close_range", e))?;
    crate::rootfs::enter_cwd(plan.root, plan.process.cwd(), false).map_err(|e| e.to_string())?;
    let exe = super::finish::find_executable(plan.root, plan.argv, plan.envp)?;
    let envp = super::finish::with_home(plan.root, creds.uid(), plan.envp);
    for fd in 3..3 + plan.preserve_fds {
        match sys::clear_cloexec(fd as i32) {
            Ok(()) | Err(nix::errno::Errno::EBADF) => {}
            Err(e) => return Err(text("--preserve-fds", e)),
        }
    }
    sys::cloexec_from(3 + plan.preserve_fds).map_err(|e| text("close_range", e))?;
    sys::reset_signals();
    // Issue 13 class 1: after the filter only the user switch, no_new_privs and the
    // exec. Without no_new_privs it needs CAP_SYS_ADMIN: before the user switch.
    if let Some(f) = plan.seccomp {
        if !creds.no_new_privs() {
            install_seccomp(f, chan)?;
        }
    }
    creds.apply_user().map_err(|e| e.to_string())?;
    creds.apply_no_new_privs().map_err(|e| e.to_string())?;
    if let Some(f) = plan.seccomp {
        if creds.no_new_privs() {
            install_seccomp(f, chan)?;
        }
    }
    Ok((exe, envp))
}

/// Installs the filter; a notify listener goes to the runtime (which hands it to the
/// agent at `listenerPath`) and this process's copy is closed before execve.
fn install_seccomp(f: &casulo_seccomp::Filter, chan: &Channel) -> std::result::Result<(), String> {
    if let Some(fd) = f.install().map_err(|e| format!("linux.seccomp: {e}"))? {
        chan.send_fd(&Msg::Listener, fd.as_fd()).map_err(|e| {
            format!(
                "linux.seccomp: sending the listener: {}",
                e.desc().to_lowercase()
            )
        })?;
    }
    Ok(())
}
