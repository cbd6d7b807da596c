//! The lifecycle operations (runtime.md "Operations"): create, start, state, kill,
//! delete, and the listing of containers.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroups::{self, Cgroup};
use crate::namespaces::{self, Namespaces};
use crate::process::init::InitPlan;
use crate::process::{self, Spawned};
use crate::rootfs::CgroupHierarchy;
use crate::security::Credentials;
use crate::state::{self, State, Status};
use crate::store::{Record, Store, StoreError};
use crate::{config, sys, Error, Result};

/// Options of `create` (runc's flags).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Where to write the init's pid.
    pub pid_file: Option<PathBuf>,
    /// `--console-socket`: where the pty master goes when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// An already connected console socket (instead of `console_socket`), e.g. one end
    /// of [`crate::tty::console_pair`] for `casulo run` on the caller's terminal.
    pub console: Option<std::sync::Arc<OwnedFd>>,
    /// Number of extra fds (from 3) handed to the container.
    pub preserve_fds: u32,
    /// Use MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Do not create a new session keyring (accepted; Casulo never creates one).
    pub no_new_keyring: bool,
    /// Refuse with [`Error::UnprotectedExe`] (before anything is created) a config for
    /// which [`crate::exe::spec_needs_protection`] holds while this process runs from a
    /// writable binary; the caller then calls [`crate::exe::ensure_protected`] and
    /// retries. Without it such a create only warns.
    pub refuse_unprotected_exe: bool,
    /// `--systemd-cgroup`: the cgroup is a systemd unit (`cgroups::systemd`).
    pub systemd_cgroup: bool,
}

/// A container created by this process: holds a pidfd of its init.
#[derive(Debug)]
pub struct Container {
    /// The id.
    pub id: String,
    /// Host pid of the init.
    pub pid: i32,
    pidfd: OwnedFd,
}

impl Container {
    /// The init's pidfd (readable once it exits).
    pub fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Waits for the init to exit (the caller must be its parent, as after
    /// [`Runtime::create`] in the same process) and returns its exit code, 128+N when
    /// killed by signal N.
    pub fn wait(&self) -> Result<i32> {
        use nix::sys::wait::{waitpid, WaitStatus};
        loop {
            match waitpid(nix::unistd::Pid::from_raw(self.pid), None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("waiting for the container", e)),
            }
        }
    }
}

/// The runtime: a state directory (`--root`).
#[derive(Debug, Clone)]
pub struct Runtime {
    store: Store,
    log: crate::log::Logger,
}

/// Removes what a failed create made, in reverse order.
struct Undo<'a> {
    store: &'a Store,
    id: &'a str,
    cgroup: Option<Box<dyn Cgroup>>,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.destroy();
        }
        let _ = self.store.remove(self.id);
    }
}

pub(crate) fn verified_proc() -> Result<OwnedFd> {
    let fd = sys::open(c"/proc", libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| Error::sys("/proc", e))?;
    let st = nix::sys::statfs::fstatfs(&fd).map_err(|e| Error::sys("/proc", e))?;
    if st.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(Error::Unsafe("/proc on the host is not procfs".into()));
    }
    Ok(fd)
}

fn cstrings<'a>(items: impl Iterator<Item = &'a String>, field: &str) -> Result<Vec<CString>> {
    items
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| Error::Invalid(format!("config.json: {field}: contains a NUL byte")))
        })
        .collect()
}

pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("pid")
    ));
    std::fs::write(&tmp, pid.to_string()).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

impl Runtime {
    /// A runtime keeping its state under `root` (runc's `--root`).
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime {
            store: Store::new(root),
            log: crate::log::Logger::default(),
        }
    }

    /// Sends the runtime's warnings (failed poststart/poststop hooks) and debug lines
    /// (fields skipped on this host) to `log` instead of stderr.
    pub fn with_logger(mut self, log: crate::log::Logger) -> Runtime {
        self.log = log;
        self
    }

    /// The runtime's logger.
    pub fn logger(&self) -> &crate::log::Logger {
        &self.log
    }

    /// The state JSON handed to hooks.
    fn hook_state(&self, rec: &Record, status: Status, pid: i32) -> Vec<u8> {
        let mut st = self.state_of(rec);
        st.status = status;
        st.pid = pid;
        serde_json::to_vec(&st).unwrap_or_default()
    }

    /// Hands a seccomp notify listener of process `pid` to the agent at `listenerPath`
    /// with the container process state (config-linux.md "Seccomp").
    pub(crate) fn hand_listener(
        &self,
        rec: &Record,
        filter: Option<&casulo_seccomp::Filter>,
        status: Status,
        pid: i32,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> std::result::Result<(), String> {
        let Some(l) = filter.and_then(|f| f.listener()) else {
            return Err("linux.seccomp: unexpected notify listener".into());
        };
        // The container's state names its init (exec: the record's pid; create: `pid`).
        let init = if rec.pid > 0 { rec.pid } else { pid };
        let state: serde_json::Value =
            serde_json::from_slice(&self.hook_state(rec, status, init)).unwrap_or_default();
        let doc = serde_json::json!({
            "ociVersion": rec.config.version(),
            "fds": ["seccompFd"],
            "pid": pid,
            "metadata": l.metadata.clone().unwrap_or_default(),
            "state": state,
        });
        casulo_seccomp::send_listener(&l.path, doc.to_string().as_bytes(), fd)
            .map_err(|e| format!("linux.seccomp.listenerPath: {e}"))
    }

    /// The state store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates container `id` from a bundle: everything the config asks for is set up
    /// and the init waits for [`Runtime::start`]. On error nothing is left behind.
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<Container> {
        crate::store::validate_id(id)?;
        // Fds the caller hands over must be open: otherwise the runtime's own fds would
        // take their numbers and leak into the container.
        for fd in 3..3 + opts.preserve_fds as i32 {
            if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
                return Err(Error::Invalid(format!(
                    "--preserve-fds: fd {fd} is not open"
                )));
            }
        }
        let bundle = std::fs::canonicalize(&opts.bundle).map_err(|e| Error::io(&opts.bundle, e))?;
        // Unknown capability names are a warning, not an error (config.md).
        let spec = crate::security::unknown_caps::load_config(&bundle, &self.log)?;
        config::validate(&spec, &bundle)?;
        if crate::exe::spec_needs_protection(&spec) {
            crate::exe::check(&self.log, opts.refuse_unprotected_exe)?;
        }
        crate::security::mempolicy::MemPolicy::from_spec(&spec)?;
        crate::netdev::check(&spec)?;
        for (i, m) in spec.mounts().iter().flatten().enumerate() {
            if let Some(w) = crate::rootfs::options::ignored_bind_data(i, m) {
                self.log.warn(&w);
            }
        }
        let console = crate::tty::console_for(
            &spec,
            opts.console_socket.as_deref(),
            opts.console.as_deref(),
        )?;
        let rootfs = config::rootfs_path(&spec, &bundle)?;
        let creds = spec
            .process()
            .as_ref()
            .map(Credentials::from_spec)
            .transpose()?;
        if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
            cgroups::validate(res)?;
        }
        let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(profile) => {
                let c = casulo_seccomp::compile(profile)
                    .map_err(|e| Error::Invalid(format!("config.json: {e}")))?;
                Some(c.filter)
            }
            None => None,
        };
        let hooks = crate::hooks::HookSet::from_spec(&spec)?;
        let attrs = crate::security::process::ProcessAttrs::from_spec(&spec, &self.log)?;
        let ns = Namespaces::from_spec(&spec)?;
        let (argv, envp) = match spec.process() {
            Some(p) => (
                cstrings(p.args().iter().flatten(), "process.args")?,
                cstrings(p.env().iter().flatten(), "process.env")?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        let place = cgroups::place(
            opts.systemd_cgroup,
            spec.linux()
                .as_ref()
                .and_then(|l| l.cgroups_path().as_ref())
                .and_then(|p| p.to_str()),
            id,
            spec.annotations().as_ref(),
        )?;
        let cg_path = place.path.clone();
        let proc_fd = verified_proc()?;

        let lock = self.store.claim(id)?;
        let mut undo = Undo {
            store: &self.store,
            id,
            cgroup: None,
            armed: true,
        };
        let dir = self.store.dir(id);
        let mut record = Record {
            id: id.to_string(),
            pid: 0,
            start_time: 0,
            bundle: bundle.clone(),
            rootfs: rootfs.clone(),
            created: state::now_rfc3339(),
            owner: String::new(),
            cgroup_path: Some(cg_path.clone()),
            annotations: spec.annotations().clone().unwrap_or_default(),
            config: spec.clone(),
            started: false,
            systemd_unit: place.unit_name(),
        };
        self.store.save(&record)?;
        let cg = place.open()?;
        undo.cgroup = Some(place.open()?);
        cg.create(spec.linux().as_ref().and_then(|l| l.resources().as_ref()))?;

        let fifo = dir.join("exec.fifo");
        // Writable by the container's user (the init opens it after switching user);
        // the state directory is 0700, so nobody else reaches it. chmod: mkfifo's
        // mode is subject to the umask.
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o622))
            .map_err(|e| Error::sys("exec.fifo", e))?;
        std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
            .map_err(|e| Error::io(&fifo, e))?;
        let fifo_fd = sys::open(
            &CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap_or_default(),
            libc::O_PATH,
            0,
        )
        .map_err(|e| Error::sys("exec.fifo", e))?;
        let needs_cgroup_mounts = spec
            .mounts()
            .iter()
            .flatten()
            .any(|m| matches!(m.typ().as_deref(), Some("cgroup") | Some("cgroup2")));
        let hierarchies = if needs_cgroup_mounts {
            CgroupHierarchy::of_host()
        } else {
            Vec::new()
        };
        let plan = InitPlan {
            spec: &spec,
            rootfs: &rootfs,
            bundle: &bundle,
            proc_fd: proc_fd.as_fd(),
            fifo: fifo_fd.as_fd(),
            console: console.as_ref().map(|c| c.as_fd()),
            userns: config::new_namespace(&spec, LinuxNamespaceType::User),
            cgroupns: config::new_namespace(&spec, LinuxNamespaceType::Cgroup),
            // New, or joined by path (validated as not the runtime's own).
            utsns: crate::host_guard::own_namespace(&spec, LinuxNamespaceType::Uts)?,
            no_pivot: opts.no_pivot,
            cgroups: &hierarchies,
            preserve_fds: opts.preserve_fds,
            creds: creds.as_ref(),
            seccomp: seccomp.as_ref(),
            argv: &argv,
            envp: &envp,
            hooks: &hooks,
            attrs: &attrs,
        };
        let hooks_ran = std::cell::Cell::new(false);
        let pre_pivot = |pid: i32| -> std::result::Result<Vec<u8>, crate::hooks::HookError> {
            hooks_ran.set(true);
            // The create-time hooks see `created`, as crun reports and runtime-tools'
            // hooks_stdin expects of prestart (module doc of `hooks`).
            let created = self.hook_state(&record, Status::Created, pid);
            let runtime = crate::hooks::Runner::Runtime;
            crate::hooks::run_all(&hooks.prestart, &created, runtime)?;
            crate::hooks::run_all(&hooks.create_runtime, &created, runtime)?;
            let mut out = created.clone();
            out.push(b'\n');
            out.extend(created);
            Ok(out)
        };
        // config-linux.md "Seccomp": the listener goes to the agent at listenerPath with
        // the container process state.
        let on_listener =
            |pid: i32, fd: OwnedFd| -> std::result::Result<(), process::ProcessError> {
                self.hand_listener(&record, seccomp.as_ref(), Status::Creating, pid, fd.as_fd())
                    .map_err(process::ProcessError::Init)
            };
        crate::fault::fault_point("before-clone");
        let spawned = process::spawn(
            &plan,
            &ns,
            &namespaces::time_offsets(&spec),
            Some(cg.as_ref()),
            Some(&pre_pivot),
            Some(&on_listener),
        );
        let Spawned { pid, pidfd } = match spawned {
            Ok(s) => s,
            Err(e) => {
                // runtime.md "Lifecycle": a failed hook stops the container; it is
                // destroyed (by `undo`) and the poststop hooks run.
                if hooks_ran.get() {
                    let st = self.hook_state(&record, Status::Stopped, 0);
                    crate::hooks::run_all_warn(&hooks.poststop, &st, &|m| self.log.warn(m));
                }
                return Err(e.into());
            }
        };
        let abort = |e: Error| -> Error {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            e
        };
        crate::fault::fault_point("before-state");
        record.pid = pid;
        record.start_time = match state::proc_stat(pid) {
            Some((_, t)) => t,
            None => {
                return Err(abort(Error::Init(
                    "container init exited during setup".into(),
                )))
            }
        };
        if let Err(e) = self.store.save(&record) {
            return Err(abort(e.into()));
        }
        if let Some(p) = &opts.pid_file {
            if let Err(e) = write_pid_file(p, pid) {
                return Err(abort(e));
            }
        }
        undo.armed = false;
        drop(lock);
        Ok(Container {
            id: id.to_string(),
            pid,
            pidfd,
        })
    }

    /// The status of a container from its record.
    pub(crate) fn status(&self, rec: &Record) -> Status {
        if rec.pid == 0 {
            return Status::Creating;
        }
        if !state::alive(rec.pid, rec.start_time) {
            return Status::Stopped;
        }
        if self.store.dir(&rec.id).join("exec.fifo").exists() {
            return Status::Created;
        }
        let frozen = rec
            .cgroup_path
            .as_deref()
            .and_then(|p| cgroups::open(p).ok())
            .and_then(|cg| cg.frozen().ok());
        if frozen == Some(true) {
            return Status::Paused;
        }
        Status::Running
    }

    /// The state of container `id`.
    pub fn state(&self, id: &str) -> Result<State> {
        let rec = self.store.load(id)?;
        Ok(self.state_of(&rec))
    }

    fn state_of(&self, rec: &Record) -> State {
        let status = self.status(rec);
        State {
            oci_version: rec.config.version().clone(),
            id: rec.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                rec.pid
            },
            status,
            bundle: rec.bundle.clone(),
            rootfs: rec.rootfs.clone(),
            created: rec.created.clone(),
            owner: rec.owner.clone(),
            annotations: rec.annotations.clone(),
        }
    }

    /// States of all containers, sorted by id.
    pub fn list(&self) -> Result<Vec<State>> {
        let mut out = Vec::new();
        for id in self.store.list()? {
            if let Ok(rec) = self.store.load(&id) {
                out.push(self.state_of(&rec));
            }
        }
        Ok(out)
    }

    /// A pidfd of the container's init, checked against its start time so a reused pid
    /// is never signalled.
    pub(crate) fn init_pidfd(&self, rec: &Record) -> Option<OwnedFd> {
        let fd = sys::pidfd_open(rec.pid).ok()?;
        state::alive(rec.pid, rec.start_time).then_some(fd)
    }

    /// Starts the user's process of a created container. Returns once it has been
    /// exec'd; an exec failure is returned with its text.
    pub fn start(&self, id: &str) -> Result<()> {
        let _lock = self.store.lock(id)?;
        let rec = self.store.load(id)?;
        let status = self.status(&rec);
        if status != Status::Created {
            return Err(Error::State(format!(
                "cannot start container {id}: it is {status}, not created"
            )));
        }
        if rec.config.process().is_none() {
            return Err(Error::State(format!(
                "cannot start container {id}: config.json has no process"
            )));
        }
        let pidfd = self
            .init_pidfd(&rec)
            .ok_or_else(|| Error::State(format!("container {id} is not running")))?;
        let fifo = self.store.dir(id).join("exec.fifo");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo)
            .map_err(|e| Error::io(&fifo, e))?;
        let result = await_exec(&f, &pidfd);
        let _ = std::fs::remove_file(&fifo);
        result?;
        self.poststart(&rec, &pidfd)
    }

    /// Runs the poststart hooks. A failing one is an error that stops the container
    /// (runtime.md 1.3, lifecycle step 9): every process of it is killed and waited
    /// for, so `delete` (which runs poststop) finds it stopped.
    fn poststart(&self, rec: &Record, pidfd: &OwnedFd) -> Result<()> {
        let hooks = crate::hooks::HookSet::from_spec(&rec.config)?;
        if hooks.poststart.is_empty() {
            return Ok(());
        }
        let st = self.hook_state(rec, Status::Running, rec.pid);
        let Err(e) = crate::hooks::run_all(&hooks.poststart, &st, crate::hooks::Runner::Runtime)
        else {
            return Ok(());
        };
        let killed = match &rec.cgroup_path {
            Some(p) => cgroups::open(p)
                .and_then(|c| c.kill_all(libc::SIGKILL))
                .is_ok(),
            None => false,
        };
        if !killed {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
        }
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        while let Err(nix::errno::Errno::EINTR) = poll(&mut fds, PollTimeout::NONE) {}
        Err(e.into())
    }

    /// Sends `signal` to the init, or with `all` to every process of the container.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let rec = self.store.load(id)?;
        let status = self.status(&rec);
        if all {
            if let Some(p) = &rec.cgroup_path {
                return Ok(cgroups::open(p)?.kill_all(signal)?);
            }
        }
        if status == Status::Stopped || status == Status::Creating {
            return Err(Error::State("container not running".into()));
        }
        let fd = self
            .init_pidfd(&rec)
            .ok_or_else(|| Error::State("container not running".into()))?;
        sys::pidfd_send_signal(fd.as_fd(), signal).map_err(|e| match e {
            nix::errno::Errno::ESRCH => Error::State("no such process".into()),
            e => Error::sys("kill", e),
        })?;
        // A SIGKILLed task in a frozen cgroup dies only once thawed (as runc does).
        if signal == libc::SIGKILL {
            if let Some(p) = &rec.cgroup_path {
                cgroups::open(p)?.thaw_all()?;
            }
        }
        Ok(())
    }

    /// Deletes a stopped container; with `force`, kills it first (thawing it if paused
    /// or frozen from outside). Deleting a missing container with `force` succeeds
    /// (engines call it after cleanup), also when a concurrent delete removes it first.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        crate::store::validate_id(id)?;
        let gone = |e: &Error| force && matches!(e, Error::Store(StoreError::Missing(_)));
        let rec = match self.store.load(id) {
            Ok(r) => r,
            Err(StoreError::Missing(_)) if force => {
                // A create that died before writing its state leaves a bare directory.
                return Ok(self.store.remove(id)?);
            }
            Err(e) => return Err(e.into()),
        };
        let lock = if force {
            self.force_lock(&rec)
        } else {
            self.store.lock(id).map_err(Error::from)
        };
        let _lock = match lock {
            Ok(l) => l,
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        // Read again under the lock: a create may have finished meanwhile, or a racing
        // delete removed the container.
        let rec = match self.store.load(id).map_err(Error::from) {
            Ok(r) => r,
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        let status = self.status(&rec);
        if !force && !matches!(status, Status::Stopped | Status::Creating) {
            return Err(Error::State(format!(
                "cannot delete container {id} that is not stopped: {status}"
            )));
        }
        self.kill_and_remove_cgroup(&rec)?;
        let hooks = crate::hooks::HookSet::from_spec(&rec.config);
        let st = self.hook_state(&rec, Status::Stopped, 0);
        self.store.remove(id)?;
        match hooks {
            Ok(h) => crate::hooks::run_all_warn(&h.poststop, &st, &|m| self.log.warn(m)),
            Err(e) => self.log.warn(&e.to_string()),
        }
        Ok(())
    }

    /// The lock for `delete --force`. A create killed after the clone leaves its lock held
    /// by the init (a clone of the runtime) with pid 0 in the record: the cgroup is killed.
    fn force_lock(&self, rec: &Record) -> Result<crate::store::Lock> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self.store.try_lock(&rec.id)? {
                return Ok(l);
            }
            let cg = rec.cgroup_path.as_deref().map(cgroups::open);
            if let (0, Some(Ok(cg))) = (rec.pid, cg) {
                let _ = cg.kill_all(libc::SIGKILL);
            }
            if Instant::now() > deadline {
                return Err(Error::State(format!("container {} is locked", rec.id)));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

use std::os::unix::fs::OpenOptionsExt;

/// Waits on the exec fifo (and the init's pidfd) until the init has exec'd: the write
/// end is close-on-exec, so a hang-up without data means success; data is the error.
fn await_exec(f: &std::fs::File, pidfd: &OwnedFd) -> Result<()> {
    let mut msg = Vec::new();
    let mut file = f;
    loop {
        let mut fds = [
            PollFd::new(f.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("waiting for the container to start", e)),
            Ok(_) => {}
        }
        let fifo_ev = fds[0].revents().unwrap_or(PollFlags::empty());
        let init_exited = fds[1].revents().is_some_and(|r| !r.is_empty());
        if fifo_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) || init_exited {
            let mut buf = [0u8; 4096];
            loop {
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => msg.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            if fifo_ev.contains(PollFlags::POLLHUP) || init_exited {
                return if msg.is_empty() {
                    if fifo_ev.contains(PollFlags::POLLHUP) {
                        Ok(())
                    } else {
                        Err(Error::Init("container init exited before start".into()))
                    }
                } else {
                    Err(Error::Init(String::from_utf8_lossy(&msg).into_owned()))
                };
            }
        }
    }
}

/// Reads and validates a bundle's config without creating anything (unknown capability
/// names are left out silently: `create` warns about them).
pub fn load_config(bundle: &Path) -> Result<Spec> {
    let quiet = crate::log::Logger::new(|_, _| {});
    let spec = crate::security::unknown_caps::load_config(bundle, &quiet)?;
    config::validate(&spec, bundle)?;
    crate::security::mempolicy::MemPolicy::from_spec(&spec)?;
    crate::netdev::check(&spec)?;
    Ok(spec)
}
