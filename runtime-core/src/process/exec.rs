//! `exec` (runc's exec; not part of the OCI runtime operations but what every engine
//! uses): a new process inside a running container. The runtime opens the init's
//! namespace files and root before anything else; a forked, single-threaded helper
//! joins them (user first, mount last), then clones the process (`CLONE_PARENT`: it is
//! the runtime's child, and after a detached exec the caller's subreaper's) into the
//! container's pid namespace and cgroup. The process enters the container's root
//! (`/proc/<init>/root`, opened before the mount namespace was joined: setns does not
//! change the root), sets up its terminal, limits, seccomp, user and capabilities, and
//! execs. The exec closes the channel (close-on-exec), which is how the runtime learns
//! it succeeded; an error arrives as a message.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use super::channel::{Channel, Msg};
use crate::cgroups;
use crate::security::process::{final_affinity, initial_affinity, set_cpu_affinity, ProcessAttrs};
use crate::security::Credentials;
use crate::state::{self, Status};
use crate::sys::{self, Fork};
use crate::{Error, Result, Runtime};

/// Options of `exec`.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The process to run (args, env, cwd, user, capabilities, rlimits, terminal…).
    pub process: Process,
    /// `--console-socket`: where the pty master goes when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// An already connected console socket (instead of `console_socket`).
    pub console: Option<Arc<OwnedFd>>,
    /// Where to write the process's host pid.
    pub pid_file: Option<PathBuf>,
    /// Number of extra fds (from 3) handed to the process.
    pub preserve_fds: u32,
    /// Exec into a paused container too.
    pub ignore_paused: bool,
    /// `--cgroup`: existing sub-cgroups of the container's to run the process in
    /// (`PATH`, or `CONTROLLER[,CONTROLLER…]:PATH` on cgroup v1).
    pub sub_cgroups: Vec<String>,
}

/// A process started by [`Runtime::exec`].
#[derive(Debug)]
pub struct ExecProcess {
    /// Host pid.
    pub pid: i32,
    pidfd: OwnedFd,
}

impl ExecProcess {
    /// The process's pidfd (readable once it exits).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Sends a signal to exactly this process.
    pub fn signal(&self, sig: i32) -> Result<()> {
        sys::pidfd_send_signal(self.pidfd.as_fd(), sig).map_err(|e| Error::sys("kill", e))
    }

    /// Waits for the process (the caller must be its parent: the process that called
    /// [`Runtime::exec`]); its exit code, 128+N when killed by signal N.
    pub fn wait(&self) -> Result<i32> {
        loop {
            match waitpid(Pid::from_raw(self.pid), None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("waiting for the exec'd process", e)),
            }
        }
    }
}

/// Namespace files in join order: user first (it grants the rights for the others),
/// mount last (after it, host paths mean the container's).
const NAMESPACES: [(&str, libc::c_int); 8] = [
    ("user", libc::CLONE_NEWUSER),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", libc::CLONE_NEWTIME),
    ("mnt", libc::CLONE_NEWNS),
];

fn ns_id(path: &str) -> Option<(u64, u64)> {
    nix::sys::stat::stat(path)
        .ok()
        .map(|s| (s.st_dev, s.st_ino))
}

/// Opens the init's namespaces that differ from ours.
fn open_namespaces(pid: i32) -> Result<Vec<(OwnedFd, CloneFlags)>> {
    let mut out = Vec::new();
    for (name, flag) in NAMESPACES {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let Some(id) = ns_id(&theirs) else {
            continue; // kernel without this namespace type
        };
        if ns_id(&format!("/proc/self/ns/{name}")) == Some(id) {
            continue;
        }
        let c = CString::new(theirs.clone()).expect("no NUL");
        let fd = sys::open(&c, libc::O_RDONLY | libc::O_CLOEXEC, 0)
            .map_err(|e| Error::sys(&theirs, e))?;
        out.push((fd, CloneFlags::from_bits_retain(flag)));
    }
    Ok(out)
}

/// What the exec'd process needs, prepared before the fork.
struct Plan<'a> {
    root: BorrowedFd<'a>,
    proc_fd: BorrowedFd<'a>,
    process: &'a Process,
    creds: &'a Credentials,
    attrs: &'a ProcessAttrs,
    mempolicy: Option<&'a crate::security::mempolicy::MemPolicy>,
    seccomp: Option<&'a casulo_seccomp::Filter>,
    console: Option<BorrowedFd<'a>>,
    preserve_fds: u32,
    argv: &'a [CString],
    envp: &'a [CString],
}

fn cstrings<'a>(items: impl Iterator<Item = &'a String>, field: &str) -> Result<Vec<CString>> {
    items
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| Error::Invalid(format!("process.{field}: contains a NUL byte")))
        })
        .collect()
}

impl Runtime {
    /// Runs a new process in container `id` (created, running, or with
    /// `ignore_paused` paused). Returns once the process has exec'd; an exec failure
    /// (missing executable…) is returned with docker's texts.
    pub fn exec(&self, id: &str, opts: &ExecOptions) -> Result<ExecProcess> {
        self.exec_in(id, opts).map_err(|e| self.gone_or(id, e))
    }

    /// An exec racing `delete --force` (or the init's exit) fails in whatever step the
    /// container vanished under: a namespace file, the root, the clone into a dying pid
    /// namespace (ENOMEM), the cgroup. Then the one error is that the container is gone.
    fn gone_or(&self, id: &str, e: Error) -> Error {
        match self.store().load(id) {
            Err(crate::store::StoreError::Missing(_)) => {
                crate::store::StoreError::Missing(id.into()).into()
            }
            Ok(rec) if rec.pid != 0 && state::going(rec.pid, rec.start_time) => Error::State(
                format!("cannot exec in a stopped container {id}: container not running"),
            ),
            _ => e,
        }
    }

    fn exec_in(&self, id: &str, opts: &ExecOptions) -> Result<ExecProcess> {
        let rec = self.store().load(id)?;
        crate::exe::check(self.logger(), false)?;
        match self.state(id)?.status {
            Status::Stopped | Status::Creating => {
                return Err(Error::State(format!(
                    "cannot exec in a stopped container {id}: container not running"
                )))
            }
            Status::Paused if !opts.ignore_paused => {
                return Err(Error::State(format!(
                    "cannot exec in a paused container {id} (use --ignore-paused to override)"
                )))
            }
            _ => {}
        }
        let merged = inherit_from_container(&opts.process, rec.config.process().as_ref());
        let p = &merged;
        let argv = cstrings(p.args().iter().flatten(), "args")?;
        if argv.is_empty() {
            return Err(Error::Invalid("process.args: must not be empty".into()));
        }
        let envp = cstrings(p.env().iter().flatten(), "env")?;
        let creds = Credentials::from_spec(p)?;
        // ioPriority, scheduler, personality and LSM labels, checked as for create: the
        // container's config with this process.
        let mut spec = rec.config.clone();
        spec.set_process(Some(p.clone()));
        let attrs = ProcessAttrs::from_spec(&spec, self.logger())?;
        let mempolicy = crate::security::mempolicy::MemPolicy::from_spec(&rec.config)?;
        let seccomp = match rec
            .config
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
        {
            Some(profile) => Some(
                casulo_seccomp::compile(profile)
                    .map_err(|e| Error::Invalid(format!("config.json: {e}")))?
                    .filter,
            ),
            None => None,
        };
        let console = crate::tty::process_console(
            p.terminal().unwrap_or(false),
            opts.console_socket.as_deref(),
            opts.console.as_deref(),
        )?;
        let proc_fd = crate::container::verified_proc()?;
        let namespaces = open_namespaces(rec.pid)?;
        let root_path = CString::new(format!("/proc/{}/root", rec.pid)).expect("no NUL");
        let root = sys::open(
            &root_path,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            0,
        )
        .map_err(|e| Error::sys("opening the container's root", e))?;
        // Everything above names the init by pid: make sure it is still the same process.
        if !state::alive(rec.pid, rec.start_time) {
            return Err(Error::State(format!(
                "cannot exec in a stopped container {id}: container not running"
            )));
        }
        let layout = match rec.cgroup_path {
            Some(_) => cgroups::detect::layout()?,
            None => cgroups::Layout::V2,
        };
        let sub = super::exec_cgroup::parse(rec.cgroup_path.as_deref(), &opts.sub_cgroups, layout)?;
        let cg = super::exec_cgroup::open_all(&sub)?;
        // CLONE_INTO_CGROUP checks that the caller's own cgroup is inside its cgroup
        // namespace (ENOENT otherwise): after joining the container's cgroup namespace
        // the helper's is not, so then the runtime moves the process instead.
        let joins_cgroupns = namespaces
            .iter()
            .any(|(_, f)| f.contains(CloneFlags::CLONE_NEWCGROUP));
        let into_cgroup = cg
            .as_ref()
            .filter(|_| !joins_cgroupns)
            .and_then(|c| c.clone_into_fd());
        let plan = Plan {
            root: root.as_fd(),
            proc_fd: proc_fd.as_fd(),
            process: p,
            creds: &creds,
            attrs: &attrs,
            mempolicy: mempolicy.as_ref(),
            seccomp: seccomp.as_ref(),
            console: console.as_ref().map(|c| c.as_fd()),
            preserve_fds: opts.preserve_fds,
            argv: &argv,
            envp: &envp,
        };
        let (ours, theirs) = Channel::pair().map_err(|e| Error::sys("socketpair", e))?;
        let helper_pid = match sys::fork().map_err(|e| Error::sys("fork", e))? {
            Fork::Child => {
                drop(ours);
                helper(&plan, &namespaces, into_cgroup.as_ref(), theirs)
            }
            Fork::Parent(pid) => pid,
        };
        drop(theirs);
        drop(console);
        let first = ours.recv();
        let _ = waitpid(Pid::from_raw(helper_pid), None);
        let pid = match first {
            Ok(Some(Msg::Pid(pid))) => pid,
            Ok(Some(Msg::Error(e))) => return Err(Error::Init(e)),
            _ => return Err(Error::Init("exec: the helper exited without a word".into())),
        };
        let pidfd = sys::pidfd_open(pid).map_err(|e| Error::sys("pidfd_open", e))?;
        let proc = ExecProcess { pid, pidfd };
        let abort = |e: Error| -> Error {
            let _ = proc.signal(libc::SIGKILL);
            let _ = proc.wait();
            e
        };
        if let Some(cg) = &cg {
            if into_cgroup.is_none() {
                if let Err(e) = cg.add_process(pid) {
                    return Err(abort(e.into()));
                }
            }
        }
        if let Err(e) = super::exec_cgroup::join_per_controller(&sub, pid) {
            return Err(abort(e));
        }
        if let Err(e) = ours.send(&Msg::Go) {
            return Err(abort(Error::sys("signalling the exec'd process", e)));
        }
        loop {
            match ours.recv_fd() {
                Ok((None, _)) => break,
                // SCMP_ACT_NOTIFY: the listener goes to the agent, as create's does.
                Ok((Some(Msg::Listener), Some(fd))) => {
                    let st = crate::state::Status::Running;
                    if let Err(e) = self.hand_listener(&rec, seccomp.as_ref(), st, pid, fd.as_fd())
                    {
                        return Err(abort(Error::Init(e)));
                    }
                }
                Ok((Some(Msg::Error(e)), _)) => {
                    let _ = proc.wait();
                    return Err(Error::Init(e));
                }
                _ => return Err(abort(Error::Init("exec: unexpected message".into()))),
            }
        }
        if let Some(f) = &opts.pid_file {
            crate::container::write_pid_file(f, pid)?;
        }
        Ok(proc)
    }
}

/// Fields a process.json may leave out are the container's (as runc does): without
/// this, an exec'd process with no `capabilities` would keep the runtime's full set.
fn inherit_from_container(p: &Process, container: Option<&Process>) -> Process {
    let mut out = p.clone();
    let Some(c) = container else {
        return out;
    };
    if out.capabilities().is_none() {
        out.set_capabilities(c.capabilities().clone());
    }
    if out.no_new_privileges().is_none() {
        out.set_no_new_privileges(c.no_new_privileges());
    }
    if out.rlimits().is_none() {
        out.set_rlimits(c.rlimits().clone());
    }
    if out.apparmor_profile().is_none() {
        out.set_apparmor_profile(c.apparmor_profile().clone());
    }
    if out.selinux_label().is_none() {
        out.set_selinux_label(c.selinux_label().clone());
    }
    out
}

/// The forked helper: joins the namespaces and clones the process into them.
fn helper(
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
