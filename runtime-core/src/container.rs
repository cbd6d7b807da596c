//! The lifecycle operations (runtime.md "Operations"): create, start, state, kill,
//! delete, and the listing of containers.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::Spec;

use crate::cgroups;
use crate::process::ProcessHandle;
use crate::state::{self, State, Status};
use crate::store::{Record, Store, StoreError, Summary};
use crate::{config, sys, Error, Operation, Result};

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

/// A container created by this process: its init, as a [`ProcessHandle`] (`pid`,
/// `pidfd()`, `wait()`, `signal()` through `Deref`).
#[derive(Debug)]
pub struct Container {
    /// The id.
    pub id: String,
    pub(crate) process: ProcessHandle,
}

impl std::ops::Deref for Container {
    type Target = ProcessHandle;

    fn deref(&self) -> &ProcessHandle {
        &self.process
    }
}

/// The runtime: a state directory (`--root`).
#[derive(Debug, Clone)]
pub struct Runtime {
    pub(crate) store: Store,
    pub(crate) log: crate::log::Logger,
    pub(crate) rootless: crate::rootless::Mode,
}

impl Runtime {
    /// A runtime keeping its state under `root` (runc's `--root`).
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime {
            store: Store::new(root),
            log: crate::log::Logger::default(),
            rootless: crate::rootless::Mode::Auto,
        }
    }

    /// `--rootless`: whether a container may run without the cgroups its caller cannot
    /// write (default: auto, see [`crate::rootless::Mode`]).
    pub fn with_rootless(mut self, mode: crate::rootless::Mode) -> Runtime {
        self.rootless = mode;
        self
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
    pub(crate) fn hook_state(&self, rec: &Record, status: Status, pid: i32) -> Vec<u8> {
        let mut st = self.state_of(&Summary::of(rec));
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
    ) -> std::result::Result<(), crate::process::ProcessError> {
        use crate::process::ProcessError;
        let Some(l) = filter.and_then(|f| f.listener()) else {
            return Err(ProcessError::UnexpectedListener);
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
            .map_err(ProcessError::Listener)
    }

    /// The state store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The status of a container from its record.
    pub(crate) fn status(&self, rec: &Record) -> Status {
        self.status_of(&rec.id, rec.pid, rec.start_time, rec.cgroup_path.as_deref())
    }

    /// [`Runtime::status`] from the parts of a record it reads.
    fn status_of(&self, id: &str, pid: i32, start_time: u64, cgroup: Option<&str>) -> Status {
        if pid == 0 {
            return Status::Creating;
        }
        if !state::alive(pid, start_time) {
            return Status::Stopped;
        }
        if self.store.dir(id).join("exec.fifo").exists() {
            return Status::Created;
        }
        let frozen = cgroup
            .and_then(|p| cgroups::open(p).ok())
            .and_then(|cg| cg.frozen().ok());
        if frozen == Some(true) {
            return Status::Paused;
        }
        Status::Running
    }

    /// The state of container `id`.
    pub fn state(&self, id: &str) -> Result<State> {
        let rec = self.store.load_summary(id)?;
        Ok(self.state_of(&rec))
    }

    fn state_of(&self, rec: &Summary) -> State {
        let status = self.status_of(&rec.id, rec.pid, rec.start_time, rec.cgroup_path.as_deref());
        State {
            oci_version: rec.config.version.clone(),
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
            if let Ok(rec) = self.store.load_summary(&id) {
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
            return Err(Error::state(Operation::Start, id, status));
        }
        if rec.config.process().is_none() {
            return Err(Error::NoProcess { id: id.into() });
        }
        let pidfd = self
            .init_pidfd(&rec)
            .ok_or_else(|| Error::state(Operation::Start, id, Status::Stopped))?;
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
            return Err(Error::state(Operation::Kill, id, status));
        }
        let fd = self
            .init_pidfd(&rec)
            .ok_or_else(|| Error::state(Operation::Kill, id, Status::Stopped))?;
        sys::pidfd_send_signal(fd.as_fd(), signal).map_err(|e| match e {
            nix::errno::Errno::ESRCH => Error::state(Operation::Kill, id, Status::Stopped),
            e => Error::sys("kill", e),
        })?;
        if all {
            crate::rootless::signal_others(rec.pid, signal);
        }
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
            return Err(Error::state(Operation::Delete, id, status));
        }
        self.kill_and_remove_cgroup(&rec)?;
        let hooks = crate::hooks::HookSet::from_spec(&rec.config);
        let st = self.hook_state(&rec, Status::Stopped, 0);
        let dir = self.store.dir(id);
        if crate::rootfs::host_mounts::recorded(&dir) {
            let proc = crate::shared::verified_proc()?;
            crate::rootfs::host_mounts::release(&dir, proc.as_fd(), &self.log)?;
        }
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
        let lock = self
            .store
            .lock_waiting(&rec.id, Duration::from_secs(10), || {
                let cg = rec.cgroup_path.as_deref().map(cgroups::open);
                if let (0, Some(Ok(cg))) = (rec.pid, cg) {
                    let _ = cg.kill_all(libc::SIGKILL);
                }
            })?;
        lock.ok_or_else(|| Error::Locked { id: rec.id.clone() })
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
                        Err(Error::InitExited {
                            stage: "before start",
                        })
                    }
                } else {
                    Err(Error::Init(crate::process::channel::decode_error(&msg)))
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
