//! OCI hooks (config.md "POSIX-platform Hooks", runtime.md "Lifecycle").
//!
//! | phase | run by | namespace | when |
//! | --- | --- | --- | --- |
//! | `prestart` (deprecated), `createRuntime` | the runtime (`create`) | runtime | the init exists, its mounts are made, before `pivot_root` |
//! | `createContainer` | the init | container (mount ns before `pivot_root`) | right after the two above |
//! | `startContainer` | the init | container | after `start` opened the exec fifo, before the user's `execve` |
//! | `poststart` | `start` | runtime | after the user's process was exec'd |
//! | `poststop` | `delete` | runtime | after the container is deleted |
//!
//! Every hook gets the state JSON on stdin (a sealed-in memfd, so a hook that does not
//! read cannot block the runtime) and is killed with its whole process group when its
//! `timeout` passes. A hook with `env` gets exactly that environment; one without gets
//! the environment of whoever runs it, as with runc: the runtime's own for the runtime
//! phases, the container process's for `createContainer` and `startContainer`. The
//! create-time hooks (`prestart`, `createRuntime`, `createContainer`) see the status
//! `created`, as crun reports and runtime-tools' `hooks_stdin` expects (runc says
//! `creating`); `startContainer` sees `created`, `poststart` `running`. A failing hook before the user's process
//! aborts the operation; `poststart` and `poststop` failures are only warnings.
//! A hook path such as docker's `/proc/<pid>/exe` is resolved in the namespace that
//! runs it: on the host for the runtime-namespace phases.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{dup2, execve, lseek, setpgid, Pid, Whence};
use oci_spec::runtime::{Hook, Spec};

use crate::sys::{self, Fork};

/// Errors of preparing or running hooks; each names the hook (`hooks.prestart[0]`).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A hook field the runtime cannot use.
    #[error("config.json: {field}: {msg}")]
    Invalid {
        /// JSON path of the field, e.g. `hooks.prestart[0].path`.
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// The hook ran and failed (exit status, signal, exec error), or could not be run.
    #[error("{hook} ({path}) failed: {detail}")]
    Failed {
        /// `hooks.<phase>[<i>]`.
        hook: String,
        /// The hook's path.
        path: String,
        /// Exit status or errno, then the tail of its output.
        detail: String,
    },
    /// A syscall running the hook failed before it could run (the errno kept as the
    /// source).
    #[error("{hook} ({path}) failed: {what}: {source}")]
    Sys {
        /// `hooks.<phase>[<i>]`.
        hook: String,
        /// The hook's path.
        path: String,
        /// The step: `memfd`, `state` or `fork`.
        what: &'static str,
        /// The errno, printed in lower case as engines match it.
        #[source]
        source: crate::rootfs::ErrnoText,
    },
    /// The hook did not finish within its timeout and was killed.
    #[error("{hook} ({path}) timed out after {secs}s and was killed")]
    Timeout {
        /// `hooks.<phase>[<i>]`.
        hook: String,
        /// The hook's path.
        path: String,
        /// The timeout.
        secs: i64,
    },
}

/// The phases in config.md's order, as named in config.json.
pub const PHASES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];
const HOOK_FIELDS: [&str; 4] = ["path", "args", "env", "timeout"];

/// One hook, ready to run (C strings made before any fork).
#[derive(Debug, Clone)]
pub struct Prepared {
    name: String,
    path: CString,
    argv: Vec<CString>,
    /// `None`: the hook has no `env` and inherits its runner's environment.
    envp: Option<Vec<CString>>,
    timeout: Option<i64>,
}

/// Who runs a hook: decides its working directory, the environment of a hook
/// without `env`, and (startContainer) the credentials its process takes.
#[derive(Clone, Copy)]
pub enum Runner<'a> {
    /// The runtime, in its own namespaces: the runtime's working directory and
    /// environment.
    Runtime,
    /// The container's init (createContainer, startContainer): working directory `/`
    /// (the init's own is a procfs handle) and the container process's environment.
    Init {
        /// `process.env` of the container, as prepared for its execve.
        envp: &'a [CString],
        /// Called in the hook's own process before its execve (false: fail it): the
        /// init's startContainer hooks take the container process's user and
        /// capabilities there, while the init keeps its own for the seccomp filter it
        /// installs after them.
        as_process: Option<&'a dyn Fn() -> bool>,
    },
}

/// The hooks of a config, by phase.
#[derive(Debug, Clone, Default)]
pub struct HookSet {
    /// `prestart` (deprecated, still run, before `createRuntime`).
    pub prestart: Vec<Prepared>,
    /// `createRuntime`.
    pub create_runtime: Vec<Prepared>,
    /// `createContainer`.
    pub create_container: Vec<Prepared>,
    /// `startContainer`.
    pub start_container: Vec<Prepared>,
    /// `poststart`.
    pub poststart: Vec<Prepared>,
    /// `poststop`.
    pub poststop: Vec<Prepared>,
}

fn cstring(s: &str, field: &str) -> Result<CString, HookError> {
    CString::new(s).map_err(|_| HookError::Invalid {
        field: field.to_string(),
        msg: "contains a NUL byte".into(),
    })
}

fn prepare(phase: &str, hooks: &Option<Vec<Hook>>) -> Result<Vec<Prepared>, HookError> {
    let mut out = Vec::new();
    for (i, h) in hooks.iter().flatten().enumerate() {
        let name = format!("hooks.{phase}[{i}]");
        let path = h.path().to_string_lossy().into_owned();
        if !h.path().is_absolute() {
            return Err(HookError::Invalid {
                field: format!("{name}.path"),
                msg: format!("{path:?} is not an absolute path"),
            });
        }
        if let Some(t) = h.timeout() {
            if t <= 0 {
                return Err(HookError::Invalid {
                    field: format!("{name}.timeout"),
                    msg: format!("{t} is not greater than zero"),
                });
            }
        }
        let argv = match h.args() {
            Some(a) if !a.is_empty() => a
                .iter()
                .enumerate()
                .map(|(j, s)| cstring(s, &format!("{name}.args[{j}]")))
                .collect::<Result<_, _>>()?,
            _ => vec![cstring(&path, &format!("{name}.path"))?],
        };
        let envp = match h.env() {
            None => None,
            Some(env) => Some(
                env.iter()
                    .enumerate()
                    .map(|(j, s)| cstring(s, &format!("{name}.env[{j}]")))
                    .collect::<Result<_, _>>()?,
            ),
        };
        out.push(Prepared {
            path: cstring(&path, &format!("{name}.path"))?,
            name,
            argv,
            envp,
            timeout: h.timeout(),
        });
    }
    Ok(out)
}

impl HookSet {
    /// Checks and prepares every hook of `spec`.
    #[allow(deprecated)]
    pub fn from_spec(spec: &Spec) -> Result<HookSet, HookError> {
        let Some(h) = spec.hooks() else {
            return Ok(HookSet::default());
        };
        Ok(HookSet {
            prestart: prepare("prestart", h.prestart())?,
            create_runtime: prepare("createRuntime", h.create_runtime())?,
            create_container: prepare("createContainer", h.create_container())?,
            start_container: prepare("startContainer", h.start_container())?,
            poststart: prepare("poststart", h.poststart())?,
            poststop: prepare("poststop", h.poststop())?,
        })
    }

    /// True when the init must stop before `pivot_root` for the runtime (and itself) to
    /// run hooks, or needs the state JSON for `startContainer`.
    pub fn needs_sync(&self) -> bool {
        !(self.prestart.is_empty()
            && self.create_runtime.is_empty()
            && self.create_container.is_empty()
            && self.start_container.is_empty())
    }
}

/// Refuses what oci-spec's parser silently ignores in `hooks`: an unknown phase or an
/// unknown field of a hook (a misspelt `timeout` would otherwise run without one).
/// `doc` is the whole config.json.
pub fn check_fields(doc: &serde_json::Value) -> Result<(), HookError> {
    let Some(hooks) = doc.get("hooks").and_then(|h| h.as_object()) else {
        return Ok(());
    };
    for (phase, list) in hooks {
        if !PHASES.contains(&phase.as_str()) {
            return Err(HookError::Invalid {
                field: format!("hooks.{phase}"),
                msg: format!("unknown hook phase (known: {})", PHASES.join(", ")),
            });
        }
        for (i, hook) in list.as_array().into_iter().flatten().enumerate() {
            for key in hook.as_object().into_iter().flat_map(|o| o.keys()) {
                if !HOOK_FIELDS.contains(&key.as_str()) {
                    return Err(HookError::Invalid {
                        field: format!("hooks.{phase}[{i}].{key}"),
                        msg: format!("unknown hook field (known: {})", HOOK_FIELDS.join(", ")),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Runs `hooks` in order, stopping at the first failure.
pub fn run_all(hooks: &[Prepared], state: &[u8], runner: Runner<'_>) -> Result<(), HookError> {
    for h in hooks {
        run(h, state, runner)?;
    }
    Ok(())
}

/// Runs every hook of `hooks`, reporting each failure to `warn` and going on.
pub fn run_all_warn(hooks: &[Prepared], state: &[u8], warn: &dyn Fn(&str)) {
    for h in hooks {
        if let Err(e) = run(h, state, Runner::Runtime) {
            warn(&e.to_string());
        }
    }
}

/// The runtime's own environment as `KEY=value` strings (for a hook without `env`).
fn runtime_env() -> Vec<CString> {
    use std::os::unix::ffi::OsStrExt;
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect()
}

/// Runs one hook the way `runner` runs it.
pub fn run(h: &Prepared, state: &[u8], runner: Runner<'_>) -> Result<(), HookError> {
    let failed = |detail: String| HookError::Failed {
        hook: h.name.clone(),
        path: h.path.to_string_lossy().into_owned(),
        detail,
    };
    let errno = |what: &'static str, e: Errno| HookError::Sys {
        hook: h.name.clone(),
        path: h.path.to_string_lossy().into_owned(),
        what,
        source: crate::rootfs::ErrnoText(e),
    };
    let input = sys::memfd(c"casulo-hook-state").map_err(|e| errno("memfd", e))?;
    sys::write_all(input.as_fd(), state).map_err(|e| errno("state", e))?;
    lseek(input.as_raw_fd(), 0, Whence::SeekSet).map_err(|e| errno("state", e))?;
    let output = sys::memfd(c"casulo-hook-output").map_err(|e| errno("memfd", e))?;
    // Made before the fork: the child only dups, resets and execs.
    let inherited;
    let as_process = match runner {
        Runner::Init { as_process, .. } => as_process,
        Runner::Runtime => None,
    };
    let (envp, cwd_root) = match (&h.envp, runner) {
        (Some(own), Runner::Runtime) => (own.as_slice(), false),
        (Some(own), Runner::Init { .. }) => (own.as_slice(), true),
        (None, Runner::Runtime) => {
            inherited = runtime_env();
            (inherited.as_slice(), false)
        }
        (None, Runner::Init { envp, .. }) => (envp, true),
    };
    let child = match sys::fork().map_err(|e| errno("fork", e))? {
        Fork::Child => exec_child(h, envp, &input, &output, cwd_root, as_process),
        Fork::Parent(pid) => Pid::from_raw(pid),
    };
    // The child makes itself a group leader; doing it here too closes the race with
    // a timeout that fires before the child ran.
    let _ = setpgid(child, child);
    let status = wait_with_timeout(child, h.timeout);
    let tail = output_tail(&output);
    match status {
        None => Err(HookError::Timeout {
            hook: h.name.clone(),
            path: h.path.to_string_lossy().into_owned(),
            secs: h.timeout.unwrap_or(0),
        }),
        Some(WaitStatus::Exited(_, 0)) => Ok(()),
        Some(WaitStatus::Exited(_, c)) => Err(failed(format!("exit status {c}{tail}"))),
        Some(WaitStatus::Signaled(_, s, _)) => Err(failed(format!("killed by {s}{tail}"))),
        Some(other) => Err(failed(format!("{other:?}{tail}"))),
    }
}

/// Waits for `child`; on timeout kills its process group and returns None.
fn wait_with_timeout(child: Pid, timeout: Option<i64>) -> Option<WaitStatus> {
    if let Some(secs) = timeout {
        let deadline = Instant::now() + Duration::from_secs(secs as u64);
        let pidfd: Option<OwnedFd> = sys::pidfd_open(child.as_raw()).ok();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Kill the group while the leader is unreaped, so its id is not reused.
                let _ = killpg(child, Signal::SIGKILL);
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                let _ = reap(child);
                return None;
            }
            let ms = left.as_millis().min(60_000) as i32;
            match &pidfd {
                Some(fd) => {
                    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                    match poll(
                        &mut fds,
                        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
                    ) {
                        Ok(n) if n > 0 => return reap(child),
                        _ => continue,
                    }
                }
                None => {
                    match nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
                    {
                        Ok(WaitStatus::StillAlive) => {
                            std::thread::sleep(Duration::from_millis(ms.min(10) as u64))
                        }
                        Ok(st) => return Some(st),
                        Err(_) => return None,
                    }
                }
            }
        }
    }
    reap(child)
}

fn reap(child: Pid) -> Option<WaitStatus> {
    loop {
        match waitpid(child, None) {
            Err(Errno::EINTR) => continue,
            Ok(WaitStatus::StillAlive) => continue,
            Ok(st) => return Some(st),
            Err(_) => return None,
        }
    }
}

/// The last bytes the hook printed, for the error message.
fn output_tail(out: &OwnedFd) -> String {
    let len = lseek(out.as_raw_fd(), 0, Whence::SeekEnd).unwrap_or(0);
    let start = (len - 512).max(0);
    let mut buf = vec![0u8; (len - start) as usize];
    let n = nix::sys::uio::pread(out.as_fd(), &mut buf, start).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {}", text.replace('\n', " | "))
    }
}

/// In the forked child: stdin is the state, stdout and stderr the output memfd, its own
/// process group, default signals, no other fd; then exec.
fn exec_child(
    h: &Prepared,
    envp: &[CString],
    input: &OwnedFd,
    output: &OwnedFd,
    cwd_root: bool,
    as_process: Option<&dyn Fn() -> bool>,
) -> ! {
    let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
    // A hook does not outlive a runtime killed while waiting for it (faults.rs).
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let ok = dup2(input.as_raw_fd(), 0).is_ok()
        && dup2(output.as_raw_fd(), 1).is_ok()
        && dup2(output.as_raw_fd(), 2).is_ok();
    if !ok {
        sys::exit_now(126);
    }
    sys::reset_signals();
    let _ = sys::cloexec_from(3);
    if cwd_root {
        let _ = nix::unistd::chdir("/");
    }
    if as_process.is_some_and(|f| !f()) {
        let _ = sys::write_all(
            std::io::stderr().as_fd(),
            b"taking the process's credentials",
        );
        sys::exit_now(126);
    }
    let e = execve(&h.path, &h.argv, envp).unwrap_err();
    // fd 2 is the output memfd: the error text ends up in the runtime's message.
    let msg = format!("exec: {}", e.desc().to_lowercase());
    let _ = sys::write_all(std::io::stderr().as_fd(), msg.as_bytes());
    sys::exit_now(127)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_phases_are_named() {
        let doc = serde_json::json!({"hooks": {"prestart": [{"path": "/bin/true", "timout": 3}]}});
        let e = check_fields(&doc).unwrap_err().to_string();
        assert!(e.contains("hooks.prestart[0].timout"), "{e}");
        let doc = serde_json::json!({"hooks": {"prestrat": []}});
        let e = check_fields(&doc).unwrap_err().to_string();
        assert!(e.contains("hooks.prestrat"), "{e}");
    }

    #[test]
    fn relative_path_and_bad_timeout_are_refused() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "hooks": {"poststop": [{"path": "/bin/true"}, {"path": "bin/true"}]}
        }))
        .unwrap();
        let e = HookSet::from_spec(&spec).unwrap_err().to_string();
        assert!(e.contains("hooks.poststop[1].path"), "{e}");
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "hooks": {"poststart": [{"path": "/bin/true", "timeout": 0}]}
        }))
        .unwrap();
        let e = HookSet::from_spec(&spec).unwrap_err().to_string();
        assert!(e.contains("hooks.poststart[0].timeout"), "{e}");
    }

    #[test]
    fn runs_with_state_on_stdin_and_times_out() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "hooks": {
                "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", "read x; [ \"$x\" = '{\"a\":1}' ] && [ \"$K\" = v ]"], "env": ["K=v"]}],
                "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", "sleep 30"], "timeout": 1}],
                "prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo boom >&2; exit 3"]}]
            }
        }))
        .unwrap();
        let set = HookSet::from_spec(&spec).unwrap();
        run_all(&set.poststart, b"{\"a\":1}\n", Runner::Runtime).unwrap();
        let t = Instant::now();
        let e = run_all(&set.poststop, b"{}", Runner::Runtime)
            .unwrap_err()
            .to_string();
        assert!(e.contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10));
        let e = run_all(&set.prestart, b"{}", Runner::Runtime)
            .unwrap_err()
            .to_string();
        assert!(e.contains("exit status 3") && e.contains("boom"), "{e}");
    }

    /// A syscall failure running a hook keeps its errno (the text is the one before).
    #[test]
    fn syscall_failure_keeps_the_errno() {
        let e = HookError::Sys {
            hook: "hooks.prestart[0]".into(),
            path: "/bin/h".into(),
            what: "fork",
            source: crate::rootfs::ErrnoText(Errno::EAGAIN),
        };
        // The text the Failed variant built before: `{what}: {desc in lower case}`.
        let old = format!("fork: {}", Errno::EAGAIN.desc().to_lowercase());
        assert_eq!(
            e.to_string(),
            format!("hooks.prestart[0] (/bin/h) failed: {old}")
        );
        assert_eq!(crate::ChildError::of(&e).errno, Some(Errno::EAGAIN));
    }
}
