//! The container init (runtime.md "Lifecycle" steps 3–5): runs in the cloned child,
//! builds the container from the plan prepared before the clone, reports `Ready`, waits
//! for `start` on the exec fifo, and execs the user's process. The runtime binary is
//! never re-executed.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::unistd::{sethostname, setsid};
use oci_spec::runtime::Spec;

use super::channel::{Channel, Msg};
use super::finish::{self, Executable};
use crate::hooks::HookSet;
use crate::rootfs::{self, CgroupHierarchy, RootfsPlan};
use crate::security::process::{LsmLabels, ProcessAttrs};
use crate::security::Credentials;
use crate::{sys, ChildError};

/// Everything the init needs, prepared by the runtime before the clone.
pub struct InitPlan<'a> {
    /// The container's configuration.
    pub spec: &'a Spec,
    /// Absolute host path of the rootfs.
    pub rootfs: &'a Path,
    /// The bundle directory.
    pub bundle: &'a Path,
    /// Verified host procfs root.
    pub proc_fd: BorrowedFd<'a>,
    /// `O_PATH` fd of the exec fifo in the state directory.
    pub fifo: BorrowedFd<'a>,
    /// Connected console socket when `process.terminal` is set.
    pub console: Option<BorrowedFd<'a>>,
    /// New user namespace.
    pub userns: bool,
    /// New cgroup namespace.
    pub cgroupns: bool,
    /// A uts namespace of the container's own (new, or joined by path).
    pub utsns: bool,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// Host cgroup hierarchies for `cgroup` mounts.
    pub cgroups: &'a [CgroupHierarchy],
    /// `--preserve-fds`: fds 3..3+N stay open in the container.
    pub preserve_fds: u32,
    /// User, capabilities and limits (None when the config has no process).
    pub creds: Option<&'a Credentials>,
    /// Compiled seccomp filter.
    pub seccomp: Option<&'a casulo_seccomp::Filter>,
    /// argv and envp, as C strings.
    pub argv: &'a [CString],
    /// envp.
    pub envp: &'a [CString],
    /// The config's hooks (the init runs createContainer and startContainer).
    pub hooks: &'a HookSet,
    /// I/O priority, scheduler, personality, LSM labels.
    pub attrs: &'a ProcessAttrs,
}

/// Entry point of the cloned child; never returns.
pub fn main(plan: &InitPlan<'_>, chan: Channel) -> ! {
    // CVE-2019-5736: until execve the init is a copy of the runtime binary. Non-dumpable,
    // its /proc/<pid>/exe (and fds, mem) cannot be opened by the container's processes
    // without CAP_SYS_PTRACE; execve resets it. (With a new user namespace the binary is
    // owned by an unmapped host root, and the init must stay dumpable to write its own
    // procfs files.)
    let any_userns =
        crate::config::namespace(plan.spec, oci_spec::runtime::LinuxNamespaceType::User).is_some();
    if !any_userns {
        let _ = nix::sys::prctl::set_dumpable(false);
    }
    let start_state = std::cell::RefCell::new(Vec::new());
    match setup(plan, &chan, &start_state) {
        Ok(fin) => {
            let _ = chan.send(&Msg::Ready);
            drop(chan);
            let err = wait_and_exec(plan, fin, &start_state.borrow());
            sys::exit_now(if err { 127 } else { 1 })
        }
        Err(e) => {
            let _ = chan.send(&Msg::Error(e));
            sys::exit_now(1)
        }
    }
}

/// What the init holds between `Ready` and the exec: no fd that reaches the host except
/// the exec fifo's `O_PATH` fd and the procfs handle parked in a socket (see [`Stash`]).
struct Final {
    exe: Executable,
    envp: Vec<CString>,
    stash: Stash,
    lsm: LsmLabels,
    root: OwnedFd,
}

/// The host procfs handle, in flight in a socketpair of the init's own while container
/// paths are resolved: an fd in a socket buffer is open in no process, so no
/// `/proc/self/fd/N` reaches it. It comes back once, for the exec fifo.
struct Stash(Channel, Channel);

impl Stash {
    fn park(fd: BorrowedFd<'_>) -> Result<Stash, ChildError> {
        let (a, b) = Channel::pair().map_err(|e| ChildError::sys("socketpair", e))?;
        a.send_fd(&Msg::Go, fd)
            .map_err(|e| ChildError::sys("parking the procfs handle", e))?;
        Ok(Stash(a, b))
    }

    fn fds(&self) -> [i32; 2] {
        [self.0.as_fd().as_raw_fd(), self.1.as_fd().as_raw_fd()]
    }

    fn take(self) -> Option<OwnedFd> {
        self.1.recv_fd().ok().and_then(|(_, fd)| fd)
    }
}

/// Steps up to `Ready`; returns the resolved executable and what the exec needs.
fn setup(
    plan: &InitPlan<'_>,
    chan: &Channel,
    start_state: &std::cell::RefCell<Vec<u8>>,
) -> Result<Option<Final>, ChildError> {
    let sources = receive_sources(chan)?;
    if plan.userns {
        become_userns_root()?;
    }
    setsid().map_err(|e| ChildError::sys("setsid", e))?;
    let root = build_rootfs(plan, chan, &sources, start_state)?;
    if let Some(socket) = plan.console {
        crate::tty::setup(&crate::tty::Console {
            socket,
            size: crate::tty::console_size(plan.spec.process().as_ref()),
            dev_console: Some((root.as_fd(), plan.proc_fd)),
        })
        .map_err(|e| ChildError::context("process.terminal", &e))?;
    }
    if plan.utsns {
        if let Some(h) = plan.spec.hostname() {
            sethostname(h).map_err(|e| ChildError::sys("hostname", e))?;
        }
        if let Some(d) = plan.spec.domainname() {
            sys::setdomainname(d.as_bytes()).map_err(|e| ChildError::sys("domainname", e))?;
        }
    }
    write_sysctls(plan)?;
    crate::security::mempolicy::apply(plan.spec).map_err(|e| ChildError::of(&e))?;
    let Some(creds) = plan.creds else {
        return Ok(None);
    };
    process_steps(plan, chan, creds, root).map(Some)
}

/// The process's own steps after the rootfs: limits and attributes, then (with no fd
/// reaching the host open) the container paths it needs, until `Ready`.
fn process_steps(
    plan: &InitPlan<'_>,
    chan: &Channel,
    creds: &Credentials,
    root: OwnedFd,
) -> Result<Final, ChildError> {
    creds
        .apply_limits(plan.proc_fd)
        .map_err(|e| ChildError::of(&e))?;
    plan.attrs.apply().map_err(|e| ChildError::of(&e))?;
    let lsm = plan
        .attrs
        .open_lsm(plan.proc_fd)
        .map_err(|e| ChildError::of(&e))?;
    // CVE-2024-21626: from here on no fd reaching the host is open (the procfs handle
    // is parked, the state directory's lock, cgroup and console fds are closed) while
    // container paths (cwd, args[0], PATH, /etc/passwd, startContainer hooks) resolve.
    let stash = Stash::park(plan.proc_fd)?;
    let mut keep = vec![plan.fifo.as_raw_fd(), root.as_raw_fd()];
    keep.extend(stash.fds());
    keep.extend(lsm.fds());
    finish::close_fds(chan, plan.preserve_fds, &keep)?;
    let process = plan.spec.process().as_ref().expect("creds imply a process");
    rootfs::enter_cwd(root.as_fd(), process.cwd(), true).map_err(|e| ChildError::of(&e))?;
    let exe = finish::find_executable(root.as_fd(), plan.argv, plan.envp)?;
    let envp = finish::with_home(root.as_fd(), creds.uid(), plan.envp);
    finish::mark_cloexec(plan.preserve_fds)?;
    // A notify listener must reach the runtime before it exits: such a filter is
    // installed now, while the init still has every capability.
    if let Some(f) = plan.seccomp.filter(|f| f.needs_listener()) {
        finish::install_seccomp(f, Some(chan))?;
    }
    Ok(Final {
        exe,
        envp,
        stash,
        lsm,
        root,
    })
}

/// Before `Go`, the runtime may send bind sources it opened (rootfs::sources).
fn receive_sources(chan: &Channel) -> Result<rootfs::MountSources, ChildError> {
    let sources = rootfs::MountSources::default();
    loop {
        match chan.recv_fd() {
            Ok((Some(Msg::Go), _)) => return Ok(sources),
            Ok((Some(Msg::MountSource { index, tree }), Some(fd))) => {
                sources.insert(rootfs::Source {
                    index: index as usize,
                    fd,
                    tree,
                })
            }
            Ok(_) | Err(_) => {
                return Err(ChildError::msg(
                    "runtime went away before the container was set up",
                ))
            }
        }
    }
}

/// Becomes root of the new user namespace (its maps are written now), so mounts and
/// files are made by a mapped user.
fn become_userns_root() -> Result<(), ChildError> {
    let root = (nix::unistd::Gid::from_raw(0), nix::unistd::Uid::from_raw(0));
    nix::unistd::setresgid(root.0, root.0, root.0)
        .map_err(|e| ChildError::sys("linux.gidMappings: container gid 0", e))?;
    nix::unistd::setresuid(root.1, root.1, root.1)
        .map_err(|e| ChildError::sys("linux.uidMappings: container uid 0", e))?;
    Ok(())
}

/// The rootfs (rootfs::setup), answering the runtime's `InCgroup` and running the
/// createContainer hooks on the way; returns the container root.
fn build_rootfs(
    plan: &InitPlan<'_>,
    chan: &Channel,
    sources: &rootfs::MountSources,
    start_state: &std::cell::RefCell<Vec<u8>>,
) -> Result<OwnedFd, ChildError> {
    let joined = std::cell::Cell::new(false);
    let in_cgroup = || -> Result<(), ChildError> {
        if joined.get() {
            return Ok(());
        }
        match chan.recv() {
            Ok(Some(Msg::InCgroup)) => {}
            _ => {
                return Err(ChildError::msg(
                    "runtime went away before the cgroup was joined",
                ))
            }
        }
        joined.set(true);
        // A cgroup namespace's root is the cgroup of its creator: unshare only now.
        if plan.cgroupns {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| ChildError::sys("linux.namespaces: cgroup", e))?;
        }
        Ok(())
    };
    let before_pivot = || -> Result<(), ChildError> {
        if !plan.hooks.needs_sync() {
            return Ok(());
        }
        chan.send(&Msg::Hooks)
            .map_err(|e| ChildError::sys("hooks", e))?;
        let payload = match chan.recv() {
            Ok(Some(Msg::HooksDone(p))) => p,
            _ => return Err(ChildError::msg("runtime went away while running hooks")),
        };
        let mut docs = payload.splitn(2, |b| *b == b'\n');
        let creating = docs.next().unwrap_or_default();
        *start_state.borrow_mut() = docs.next().unwrap_or_default().to_vec();
        let runner = crate::hooks::Runner::Init {
            envp: plan.envp,
            as_process: None,
        };
        crate::hooks::run_all(&plan.hooks.create_container, creating, runner)
            .map_err(|e| ChildError::of(&e))
    };
    let plan_fs = RootfsPlan {
        spec: plan.spec,
        rootfs: plan.rootfs,
        bundle: plan.bundle,
        sources,
        proc_fd: plan.proc_fd,
        userns: plan.userns,
        no_pivot: plan.no_pivot,
        cgroups: plan.cgroups,
        cgroupns: plan.cgroupns,
        in_cgroup: &in_cgroup,
        before_pivot: &before_pivot,
    };
    // rootfs::setup calls `in_cgroup` before the first `cgroup` mount and, in any case,
    // before the device nodes: the init is in its cgroup before the hooks and user code.
    rootfs::setup(&plan_fs).map_err(|e| ChildError::of(&e))
}

fn write_sysctls(plan: &InitPlan<'_>) -> Result<(), ChildError> {
    let Some(map) = plan.spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (k, v) in map {
        // Validated by host_guard: a path without `..`, isolated by the container's own
        // namespace.
        let rel = crate::host_guard::sysctl_path(k)
            .ok_or_else(|| ChildError::msg(format!("linux.sysctl.{k}: not a sysctl name")))?;
        let path = PathBuf::from("sys").join(rel);
        let fd = rootfs::open_proc(plan.proc_fd, &path, libc::O_WRONLY | libc::O_TRUNC)
            .map_err(|e| ChildError::sys(format!("linux.sysctl.{k}"), e))?;
        sys::write_all(fd.as_fd(), v.as_bytes())
            .map_err(|e| ChildError::sys(format!("linux.sysctl.{k}"), e))?;
    }
    Ok(())
}

/// Blocks until `start` opens the exec fifo, then execs. On failure the error text goes
/// to `start` through the fifo. Returns only on failure (true when exec itself failed).
///
/// Issue 13 class 1: every lookup, fd closing and the startContainer hooks happen before
/// the seccomp filter; after it only the user switch (setgroups, setresgid, setresuid,
/// capset, prctl), no_new_privs, execveat/execve and, on failure, write and exit.
fn wait_and_exec(plan: &InitPlan<'_>, fin: Option<Final>, start_state: &[u8]) -> bool {
    let fifo_path = PathBuf::from(format!("self/fd/{}", plan.fifo.as_raw_fd()));
    let Some(fin) = fin else {
        // No process (no container path is ever resolved): wait on the fifo all the
        // same, `start` refuses before opening it.
        let _ = sys::openat(plan.proc_fd, &path_c(&fifo_path), libc::O_WRONLY, 0);
        return false;
    };
    // The fifo is reopened through the host procfs handle (the container's /proc may
    // not exist), which is closed right after. The open blocks (no spinning) until
    // `start` opens the read side.
    let Some(proc_fd) = fin.stash.take() else {
        return false;
    };
    // While it waits, the init holds none of the runtime binary's pages (its PSS).
    let opened = sys::openat_released(proc_fd.as_fd(), &path_c(&fifo_path), libc::O_WRONLY);
    drop(proc_fd);
    let Ok(w) = opened else {
        return false;
    };
    let fail = |e: ChildError| -> bool {
        let _ = sys::write_all(w.as_fd(), &super::channel::encode_error(&e));
        false
    };
    let Some(creds) = plan.creds else {
        return false;
    };
    // The hooks run with the container process's user and capabilities (their own
    // processes switch); the init keeps its privileges for the filter.
    let as_process = || creds.apply_user().is_ok() && creds.apply_no_new_privs().is_ok();
    let runner = crate::hooks::Runner::Init {
        envp: plan.envp,
        as_process: Some(&as_process),
    };
    if let Err(e) = crate::hooks::run_all(&plan.hooks.start_container, start_state, runner) {
        return fail(ChildError::of(&e));
    }
    if let Err(e) = fin.lsm.write() {
        return fail(ChildError::of(&e));
    }
    drop(fin.root);
    // The notify filter (if any) is installed already.
    let filter = plan.seccomp.filter(|f| !f.needs_listener());
    if let Err(e) = finish::become_process(creds, filter, None) {
        return fail(e);
    }
    let e = finish::exec(&fin.exe, plan.argv, &fin.envp);
    let _ = sys::write_all(w.as_fd(), &super::channel::encode_error(&e));
    true
}

fn path_c(p: &Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}
