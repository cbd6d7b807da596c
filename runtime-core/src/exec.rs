//! `exec` (runc's exec; not part of the OCI runtime operations but what every engine
//! uses): a new process inside a running container, beside create/start/kill/delete in
//! `container` and `create`. The runtime opens the init's namespace files and root
//! before anything else, then the spawn primitive (`process::spawn`) joins them in
//! `namespaces::JOIN_ORDER` and clones the process as the runtime's child (after a
//! detached exec, the caller's subreaper's) into the container's pid namespace and
//! cgroup; what the process does until its execve is `process::exec`. The exec closes
//! the channel (close-on-exec), which is how the runtime learns it succeeded; an error
//! arrives as a message.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use nix::sched::CloneFlags;
use oci_spec::runtime::Process;

use crate::cgroups::{self, Cgroup};
use crate::exec_cgroup::{self, SubCgroups};
use crate::process::channel::Msg;
use crate::process::exec::Plan;
use crate::process::spawn::{self, Spawn, Spawned};
use crate::process::ProcessHandle;
use crate::security::mempolicy::MemPolicy;
use crate::security::process::{initial_affinity, ProcessAttrs};
use crate::security::Credentials;
use crate::shared::{check_exe, cstrings, seccomp_filter, verified_proc, write_pid_file};
use crate::state::{self, Status};
use crate::store::Record;
use crate::{sys, Error, Operation, Result, Runtime};

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
pub type ExecProcess = ProcessHandle;

/// What the exec needs, checked and opened before the clone.
struct Prepared {
    process: Process,
    argv: Vec<CString>,
    envp: Vec<CString>,
    creds: Credentials,
    attrs: ProcessAttrs,
    mempolicy: Option<MemPolicy>,
    seccomp: Option<casulo_seccomp::Filter>,
    console: Option<OwnedFd>,
    proc_fd: OwnedFd,
    namespaces: Vec<(CloneFlags, OwnedFd)>,
    root: OwnedFd,
    sub: SubCgroups,
    cgroup: Option<Box<dyn Cgroup>>,
}

fn not_running(id: &str) -> Error {
    Error::state(Operation::Exec, id, Status::Stopped)
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
            Ok(rec) if rec.pid != 0 && state::going(rec.pid, rec.start_time) => not_running(id),
            _ => e,
        }
    }

    fn exec_in(&self, id: &str, opts: &ExecOptions) -> Result<ExecProcess> {
        let rec = self.store().load(id)?;
        check_exe(self.logger(), false)?;
        match self.state(id)?.status {
            Status::Stopped | Status::Creating => return Err(not_running(id)),
            Status::Paused if !opts.ignore_paused => {
                return Err(Error::state(Operation::Exec, id, Status::Paused))
            }
            _ => {}
        }
        let prep = self.prepare_exec(&rec, opts)?;
        let plan = Plan {
            root: prep.root.as_fd(),
            proc_fd: prep.proc_fd.as_fd(),
            process: &prep.process,
            creds: &prep.creds,
            attrs: &prep.attrs,
            mempolicy: prep.mempolicy.as_ref(),
            seccomp: prep.seccomp.as_ref(),
            console: prep.console.as_ref().map(|c| c.as_fd()),
            preserve_fds: opts.preserve_fds,
            argv: &prep.argv,
            envp: &prep.envp,
        };
        let s = Spawn {
            join: &prep.namespaces,
            new: CloneFlags::empty(),
            new_time: None,
            cgroup: prep.cgroup.as_deref(),
            // CVE-2019-5736: the process is a copy of the runtime binary until its
            // execve, inside the container's pid namespace: non-dumpable (inherited by
            // the clone, reset by execve), no container process can open its
            // /proc/<pid>/exe. Kept dumpable in a user namespace, as the init.
            non_dumpable: !prep
                .namespaces
                .iter()
                .any(|(f, _)| f.contains(CloneFlags::CLONE_NEWUSER)),
            cpus: initial_affinity(&prep.process).map(String::as_str),
            proc_fd: prep.proc_fd.as_fd(),
        };
        let spawned = spawn::clone_process(&s, |chan| crate::process::exec::child(&plan, chan))?;
        drop(prep.console);
        let cgroup = prep.cgroup.as_deref();
        self.until_exec(&rec, &spawned, cgroup, &prep.sub, prep.seccomp.as_ref())?;
        if let Some(f) = &opts.pid_file {
            write_pid_file(f, spawned.process.pid)?;
        }
        Ok(spawned.process)
    }

    /// Checks the process and opens the init's namespaces, root and cgroup.
    fn prepare_exec(&self, rec: &Record, opts: &ExecOptions) -> Result<Prepared> {
        let process = inherit_from_container(&opts.process, rec.config.process().as_ref());
        let argv = cstrings(process.args().iter().flatten(), "process.args")?;
        if argv.is_empty() {
            return Err(Error::Invalid {
                field: "process.args".into(),
                reason: "must not be empty".into(),
            });
        }
        let envp = cstrings(process.env().iter().flatten(), "process.env")?;
        let creds = Credentials::from_spec(&process)?;
        // ioPriority, scheduler, personality and LSM labels, checked as for create: the
        // container's config with this process.
        let mut spec = rec.config.clone();
        spec.set_process(Some(process.clone()));
        let attrs = ProcessAttrs::from_spec(&spec, self.logger())?;
        let mempolicy = MemPolicy::from_spec(&rec.config)?;
        let seccomp = seccomp_filter(&rec.config)?;
        let console = crate::tty::process_console(
            process.terminal().unwrap_or(false),
            opts.console_socket.as_deref(),
            opts.console.as_deref(),
        )?;
        let proc_fd = verified_proc()?;
        let namespaces = crate::namespaces::open_of(proc_fd.as_fd(), rec.pid)?;
        let root_path = CString::new(format!("/proc/{}/root", rec.pid)).expect("no NUL");
        let root = sys::open(
            &root_path,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            0,
        )
        .map_err(|e| Error::sys("opening the container's root", e))?;
        // Everything above names the init by pid: make sure it is still the same process.
        if !state::alive(rec.pid, rec.start_time) {
            return Err(not_running(&rec.id));
        }
        let layout = match rec.cgroup_path {
            Some(_) => cgroups::detect::layout()?,
            None => cgroups::Layout::V2,
        };
        let sub = exec_cgroup::parse(rec.cgroup_path.as_deref(), &opts.sub_cgroups, layout)?;
        let user_unit = rec.systemd_unit.as_deref().filter(|_| rec.systemd_user);
        let cgroup = exec_cgroup::open_all(&sub, rec.cgroup_path.as_deref(), user_unit)?;
        Ok(Prepared {
            process,
            argv,
            envp,
            creds,
            attrs,
            mempolicy,
            seccomp,
            console,
            proc_fd,
            namespaces,
            root,
            sub,
            cgroup,
        })
    }

    /// The runtime's side after the clone: the cgroup, `Go`, the notify listener, until
    /// the exec closes the channel; on failure the process is killed and reaped.
    fn until_exec(
        &self,
        rec: &Record,
        spawned: &Spawned,
        cgroup: Option<&dyn Cgroup>,
        sub: &SubCgroups,
        seccomp: Option<&casulo_seccomp::Filter>,
    ) -> Result<()> {
        let (proc, ours) = (&spawned.process, &spawned.chan);
        let abort = |e: Error| -> Error {
            proc.kill_and_reap();
            e
        };
        if let Some(cg) = cgroup {
            spawned.enter_cgroup(cg).map_err(|e| abort(e.into()))?;
        }
        exec_cgroup::join_per_controller(sub, proc.pid).map_err(abort)?;
        ours.send(&Msg::Go)
            .map_err(|e| abort(Error::sys("signalling the exec'd process", e)))?;
        loop {
            match ours.recv_fd() {
                Ok((None, _)) => return Ok(()),
                // SCMP_ACT_NOTIFY: the listener goes to the agent, as create's does.
                Ok((Some(Msg::Listener), Some(fd))) => {
                    self.hand_listener(rec, seccomp, Status::Running, proc.pid, fd.as_fd())
                        .map_err(|e| abort(e.into()))?;
                }
                Ok((Some(Msg::Error(e)), _)) => {
                    let _ = proc.wait();
                    return Err(Error::Init(e));
                }
                _ => return Err(abort(crate::process::ProcessError::Unexpected.into())),
            }
        }
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
