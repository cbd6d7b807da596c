//! `exec` (runc's exec; not part of the OCI runtime operations but what every engine
//! uses): a new process inside a running container, beside create/start/kill/delete in
//! `container`. The runtime opens the init's namespace files and root before anything
//! else; a forked, single-threaded helper joins them (user first, mount last), then
//! clones the process (`CLONE_PARENT`: it is the runtime's child, and after a detached
//! exec the caller's subreaper's) into the container's pid namespace and cgroup; what
//! the process does until its execve is `process::exec`. The exec closes the channel
//! (close-on-exec), which is how the runtime learns it succeeded; an error arrives as a
//! message.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use crate::cgroups;
use crate::process::channel::{Channel, Msg};
use crate::process::exec::{helper, Plan};
use crate::security::process::ProcessAttrs;
use crate::security::Credentials;
use crate::shared::{cstrings, seccomp_filter, verified_proc, write_pid_file};
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
        let argv = cstrings(p.args().iter().flatten(), "process.args")?;
        if argv.is_empty() {
            return Err(Error::Invalid("process.args: must not be empty".into()));
        }
        let envp = cstrings(p.env().iter().flatten(), "process.env")?;
        let creds = Credentials::from_spec(p)?;
        // ioPriority, scheduler, personality and LSM labels, checked as for create: the
        // container's config with this process.
        let mut spec = rec.config.clone();
        spec.set_process(Some(p.clone()));
        let attrs = ProcessAttrs::from_spec(&spec, self.logger())?;
        let mempolicy = crate::security::mempolicy::MemPolicy::from_spec(&rec.config)?;
        let seccomp = seccomp_filter(&rec.config)?;
        let console = crate::tty::process_console(
            p.terminal().unwrap_or(false),
            opts.console_socket.as_deref(),
            opts.console.as_deref(),
        )?;
        let proc_fd = verified_proc()?;
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
        let sub = crate::process::exec_cgroup::parse(
            rec.cgroup_path.as_deref(),
            &opts.sub_cgroups,
            layout,
        )?;
        let cg = crate::process::exec_cgroup::open_all(&sub)?;
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
        if let Err(e) = crate::process::exec_cgroup::join_per_controller(&sub, pid) {
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
            write_pid_file(f, pid)?;
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
