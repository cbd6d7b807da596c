//! `create` (runtime.md "Operations", "Lifecycle" steps 1–5), in the four steps the
//! [`Undo`] guard marks: [`Runtime::prepare`] checks the config and opens what the
//! create needs while nothing exists yet (bad input leaves nothing behind);
//! [`Runtime::claim`] takes the id, writes the record with pid 0, makes the cgroup and
//! the exec fifo; [`Runtime::spawn_init`] clones the init and waits for its `Ready`;
//! [`Runtime::record`] stores the init's pid and start time. A failure after the claim
//! drops the armed guard, which removes the cgroup and the state directory.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroups::{self, Cgroup};
use crate::container::{Container, CreateOptions};
use crate::hooks::HookSet;
use crate::namespaces::{self, Namespaces};
use crate::process::init::InitPlan;
use crate::process::{self, ProcessHandle};
use crate::rootfs::CgroupHierarchy;
use crate::security::process::ProcessAttrs;
use crate::security::Credentials;
use crate::shared::{check_exe, cstrings, seccomp_filter, verified_proc, write_pid_file};
use crate::state::{self, Status};
use crate::store::{Lock, Record, Store};
use crate::{config, sys, Error, Result, Runtime};

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
        let dir = self.store.dir(self.id);
        let proc = match crate::rootfs::host_mounts::recorded(&dir) {
            true => crate::shared::verified_proc().ok(),
            false => None,
        };
        if let Some(proc) = proc {
            let log = crate::log::Logger::default();
            let _ = crate::rootfs::host_mounts::release(&dir, proc.as_fd(), &log);
        }
        let _ = self.store.remove(self.id);
    }
}

/// What [`Runtime::prepare`] checked and opened before anything exists.
struct Prepared {
    bundle: PathBuf,
    spec: Spec,
    rootfs: PathBuf,
    console: Option<OwnedFd>,
    creds: Option<Credentials>,
    seccomp: Option<casulo_seccomp::Filter>,
    hooks: HookSet,
    attrs: ProcessAttrs,
    ns: Namespaces,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cg_path: String,
    /// Where the cgroup goes: a path, or a systemd unit (`--systemd-cgroup`).
    place: cgroups::Placement,
    /// False for a rootless container that gets no cgroup (crate::rootless).
    use_cgroup: bool,
    proc_fd: OwnedFd,
}

/// What [`Runtime::claim`] made; dropping it (with the guard armed) removes it again.
struct Claimed<'a> {
    lock: Lock,
    undo: Undo<'a>,
    record: Record,
    cgroup: Option<Box<dyn Cgroup>>,
    fifo: OwnedFd,
}

impl Runtime {
    /// Creates container `id` from a bundle: everything the config asks for is set up
    /// and the init waits for [`Runtime::start`]. On error nothing is left behind.
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<Container> {
        let prep = self.prepare(id, opts)?;
        let mut claimed = self.claim(id, &prep)?;
        let init = self.spawn_init(&prep, &claimed, opts)?;
        self.record(&mut claimed.record, &init, opts)?;
        claimed.undo.armed = false;
        drop(claimed.lock);
        Ok(Container {
            id: id.to_string(),
            process: init,
        })
    }

    /// Loads and checks the bundle's config (runtime.md: bad input creates nothing).
    fn load_checked(&self, id: &str, opts: &CreateOptions) -> Result<(PathBuf, Spec)> {
        crate::store::validate_id(id)?;
        // Fds the caller hands over must be open: otherwise the runtime's own fds would
        // take their numbers and leak into the container.
        for fd in 3..3 + opts.preserve_fds as i32 {
            if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
                return Err(Error::Invalid {
                    field: "--preserve-fds".into(),
                    reason: format!("fd {fd} is not open"),
                });
            }
        }
        let bundle = std::fs::canonicalize(&opts.bundle).map_err(|e| Error::io(&opts.bundle, e))?;
        // Unknown capability names are a warning, not an error (config.md).
        let spec = crate::security::unknown_caps::load_config(&bundle, &self.log)?;
        config::validate(&spec, &bundle)?;
        crate::rootless::check_mounts(&spec)?;
        if crate::exe::spec_needs_protection(&spec) {
            check_exe(&self.log, opts.refuse_unprotected_exe)?;
        }
        crate::security::mempolicy::MemPolicy::from_spec(&spec)?;
        crate::netdev::check(&spec)?;
        for (i, m) in spec.mounts().iter().flatten().enumerate() {
            if let Some(w) = crate::rootfs::options::ignored_bind_data(i, m) {
                self.log.warn(&w);
            }
        }
        if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
            cgroups::validate(res)?;
        }
        Ok((bundle, spec))
    }

    /// Step 1: everything that can fail on bad input, and every fd the create opens
    /// from outside (console socket, namespaces to join, procfs), before anything exists.
    fn prepare(&self, id: &str, opts: &CreateOptions) -> Result<Prepared> {
        let (bundle, spec) = self.load_checked(id, opts)?;
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
        let seccomp = seccomp_filter(&spec)?;
        let hooks = HookSet::from_spec(&spec)?;
        let attrs = ProcessAttrs::from_spec(&spec, &self.log)?;
        let ns = Namespaces::from_spec(&spec)?;
        let (argv, envp) = match spec.process() {
            Some(p) => (
                cstrings(p.args().iter().flatten(), "config.json: process.args")?,
                cstrings(p.env().iter().flatten(), "config.json: process.env")?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        let place = cgroups::place(
            opts.systemd_cgroup,
            self.rootless.is_rootless(),
            spec.linux()
                .as_ref()
                .and_then(|l| l.cgroups_path().as_ref())
                .and_then(|p| p.to_str()),
            id,
            spec.annotations().as_ref(),
        )?;
        let cg_path = place.path.clone();
        let use_cgroup = crate::rootless::use_cgroup(self.rootless, &spec, &cg_path)?;
        let proc_fd = verified_proc()?;
        Ok(Prepared {
            bundle,
            spec,
            rootfs,
            console,
            creds,
            seccomp,
            hooks,
            attrs,
            ns,
            argv,
            envp,
            cg_path,
            place,
            use_cgroup,
            proc_fd,
        })
    }

    /// Step 2: the id (exclusive mkdir and its lock), the record with pid 0, the
    /// cgroup and the exec fifo; the returned guard removes them unless disarmed.
    fn claim<'a>(&'a self, id: &'a str, prep: &Prepared) -> Result<Claimed<'a>> {
        let lock = self.store.claim(id)?;
        let mut undo = Undo {
            store: &self.store,
            id,
            cgroup: None,
            armed: true,
        };
        let spec = &prep.spec;
        let record = Record {
            id: id.to_string(),
            pid: 0,
            start_time: 0,
            bundle: prep.bundle.clone(),
            rootfs: prep.rootfs.clone(),
            created: state::now_rfc3339(),
            owner: String::new(),
            cgroup_path: prep.use_cgroup.then(|| prep.cg_path.clone()),
            systemd_unit: prep.place.unit_name(),
            systemd_user: prep.place.user_unit(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            config: spec.clone(),
            started: false,
        };
        self.store.save(&record)?;
        crate::rootfs::host_mounts::prepare(
            &self.store.dir(id),
            spec,
            &prep.rootfs,
            prep.proc_fd.as_fd(),
        )?;
        let cgroup = match prep.use_cgroup {
            true => Some(prep.place.open()?),
            false => None,
        };
        if let Some(cg) = &cgroup {
            undo.cgroup = Some(prep.place.open()?);
            cg.create(crate::rootless::resources(spec).as_deref())?;
        }
        let fifo = make_fifo(&self.store.dir(id).join("exec.fifo"))?;
        Ok(Claimed {
            lock,
            undo,
            record,
            cgroup,
            fifo,
        })
    }

    /// Step 3: the init, cloned into its namespaces and cgroup, set up up to `Ready`;
    /// the create-time hooks run on its `Hooks` message (poststop when that failed).
    fn spawn_init(
        &self,
        prep: &Prepared,
        claimed: &Claimed<'_>,
        opts: &CreateOptions,
    ) -> Result<ProcessHandle> {
        let spec = &prep.spec;
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
            spec,
            rootfs: &prep.rootfs,
            bundle: &prep.bundle,
            proc_fd: prep.proc_fd.as_fd(),
            fifo: claimed.fifo.as_fd(),
            console: prep.console.as_ref().map(|c| c.as_fd()),
            userns: config::new_namespace(spec, LinuxNamespaceType::User),
            cgroupns: config::new_namespace(spec, LinuxNamespaceType::Cgroup),
            // New, or joined by path (validated as not the runtime's own).
            utsns: crate::host_guard::own_namespace(spec, LinuxNamespaceType::Uts)?,
            no_pivot: opts.no_pivot,
            cgroups: &hierarchies,
            preserve_fds: opts.preserve_fds,
            creds: prep.creds.as_ref(),
            seccomp: prep.seccomp.as_ref(),
            argv: &prep.argv,
            envp: &prep.envp,
            hooks: &prep.hooks,
            attrs: &prep.attrs,
        };
        let record = &claimed.record;
        let hooks_ran = std::cell::Cell::new(false);
        let pre_pivot = |pid: i32| -> std::result::Result<Vec<u8>, crate::hooks::HookError> {
            hooks_ran.set(true);
            self.create_hooks(record, &prep.hooks, pid)
        };
        // config-linux.md "Seccomp": the listener goes to the agent at listenerPath with
        // the container process state.
        let on_listener =
            |pid: i32, fd: OwnedFd| -> std::result::Result<(), process::ProcessError> {
                self.hand_listener(
                    record,
                    prep.seccomp.as_ref(),
                    Status::Creating,
                    pid,
                    fd.as_fd(),
                )
            };
        crate::fault::fault_point("before-clone");
        let spawned = process::spawn(
            &plan,
            &prep.ns,
            &namespaces::time_offsets(spec),
            claimed.cgroup.as_deref(),
            Some(&pre_pivot),
            Some(&on_listener),
        );
        spawned.map_err(|e| {
            // runtime.md "Lifecycle": a failed hook stops the container; it is
            // destroyed (by the guard) and the poststop hooks run.
            if hooks_ran.get() {
                let st = self.hook_state(record, Status::Stopped, 0);
                crate::hooks::run_all_warn(&prep.hooks.poststop, &st, &|m| self.log.warn(m));
            }
            e.into()
        })
    }

    /// The prestart and createRuntime hooks, run by the runtime when the init reports
    /// its mounts are made; returns the state documents for the init's own hooks.
    fn create_hooks(
        &self,
        record: &Record,
        hooks: &HookSet,
        pid: i32,
    ) -> std::result::Result<Vec<u8>, crate::hooks::HookError> {
        // The create-time hooks see `created`, as crun reports and runtime-tools'
        // hooks_stdin expects of prestart (module doc of `hooks`).
        let created = self.hook_state(record, Status::Created, pid);
        let runtime = crate::hooks::Runner::Runtime;
        crate::hooks::run_all(&hooks.prestart, &created, runtime)?;
        crate::hooks::run_all(&hooks.create_runtime, &created, runtime)?;
        let mut out = created.clone();
        out.push(b'\n');
        out.extend(created);
        Ok(out)
    }

    /// Step 4: the init's pid and start time in the record, and the pid file; on
    /// failure the init is killed and reaped (the guard removes the rest).
    fn record(
        &self,
        record: &mut Record,
        init: &ProcessHandle,
        opts: &CreateOptions,
    ) -> Result<()> {
        let abort = |e: Error| -> Error {
            init.kill_and_reap();
            e
        };
        crate::fault::fault_point("before-state");
        record.pid = init.pid;
        record.start_time = match state::proc_stat(init.pid) {
            Some((_, t)) => t,
            None => {
                return Err(abort(Error::InitExited {
                    stage: "during setup",
                }))
            }
        };
        self.store.save(record).map_err(|e| abort(e.into()))?;
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, init.pid).map_err(abort)?;
        }
        Ok(())
    }
}

/// The exec fifo: writable by the container's user (the init opens it after switching
/// user); the state directory is 0700, so nobody else reaches it. Returns an `O_PATH` fd.
fn make_fifo(fifo: &std::path::Path) -> Result<OwnedFd> {
    // chmod: mkfifo's mode is subject to the umask.
    nix::unistd::mkfifo(fifo, Mode::from_bits_truncate(0o622))
        .map_err(|e| Error::sys("exec.fifo", e))?;
    std::fs::set_permissions(fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(|e| Error::io(fifo, e))?;
    sys::open(
        &CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap_or_default(),
        libc::O_PATH,
        0,
    )
    .map_err(|e| Error::sys("exec.fifo", e))
}
