//! One function per command; each returns the process exit code or an error line.

use std::os::fd::AsFd;

use casulo_core::{CreateOptions, Runtime};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::log::Logger;
use crate::{Cli, Command, CreateArgs};

type Result<T> = std::result::Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Runs the parsed command line.
pub fn run(cli: &Cli, log: &Logger) -> Result<i32> {
    casulo_core::cgroups::check_systemd_cgroup(cli.systemd_cgroup, None).map_err(err)?;
    if cli.rootless.as_deref() == Some("true") {
        return Err("--rootless: rootless containers are not supported yet".into());
    }
    if matches!(cli.command, Command::Exec(_)) {
        // The exec child enters the container's pid namespace as a copy of this binary.
        casulo_core::exe::ensure_protected().map_err(err)?;
    }
    let sink = log.clone();
    let rt =
        Runtime::new(&cli.root).with_logger(casulo_core::log::Logger::new(move |level, msg| {
            match level {
                casulo_core::log::Level::Warn => sink.warn(msg),
                casulo_core::log::Level::Debug => sink.debug(msg),
            }
        }));
    match &cli.command {
        Command::Create(a) => {
            create(&rt, &a.id, &create_options(a, cli.systemd_cgroup))?;
            log.debug(&format!("created {}", a.id));
            Ok(0)
        }
        Command::Start { id } => rt.start(id).map(|_| 0).map_err(err),
        Command::State { id } => {
            let st = rt.state(id).map_err(err)?;
            crate::out::line(serde_json::to_string_pretty(&st).map_err(err)?)?;
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            let sig = parse_signal(signal)?;
            rt.kill(id, sig, *all).map(|_| 0).map_err(err)
        }
        Command::Delete { force, id } => rt.delete(id, *force).map(|_| 0).map_err(err),
        Command::Run {
            detach,
            keep,
            create,
        } => run_container(&rt, create, *detach, *keep, cli.systemd_cgroup),
        Command::List { format, quiet } => list(&rt, format, *quiet),
        Command::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(format!("{}: file exists; remove it first", path.display()));
            }
            std::fs::write(&path, include_str!("example-config.json"))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(0)
        }
        Command::Ps { format, id } => ps(&rt, id, format),
        Command::Pause { id } => rt.pause(id).map(|_| 0).map_err(err),
        Command::Resume { id } => rt.resume(id).map(|_| 0).map_err(err),
        Command::Update(a) => crate::update::run(&rt, a),
        Command::Events(a) => crate::events::run(&rt, a),
        Command::Exec(a) => crate::exec::exec(&rt, a),
        Command::Features => {
            crate::out::line(casulo_core::features::json())?;
            Ok(0)
        }
    }
}

fn create_options(a: &CreateArgs, systemd_cgroup: bool) -> CreateOptions {
    CreateOptions {
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        console: None,
        refuse_unprotected_exe: true,
        systemd_cgroup,
    }
}

/// `Runtime::create`; a config whose init container processes can see while it is a copy
/// of this binary (CVE-2019-5736) re-executes the command from a protected copy first.
fn create(rt: &Runtime, id: &str, opts: &CreateOptions) -> Result<casulo_core::Container> {
    match rt.create(id, opts) {
        Err(casulo_core::Error::UnprotectedExe) => {
            // Does not return unless the binary already is protected.
            casulo_core::exe::ensure_protected().map_err(err)?;
            rt.create(id, opts).map_err(err)
        }
        r => r.map_err(err),
    }
}

/// A signal given as a number, `KILL` or `SIGKILL` (any case).
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n)
            .map(|_| n)
            .map_err(|_| format!("invalid signal {s:?}"));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map(|s| s as i32)
        .map_err(|_| format!("invalid signal {s:?}"))
}

/// Signals `run` forwards to the container (all but those the kernel or the runtime
/// needs for itself).
pub(crate) fn forwarded() -> SigSet {
    let mut set = SigSet::empty();
    for sig in Signal::iterator() {
        if !matches!(
            sig,
            Signal::SIGKILL
                | Signal::SIGSTOP
                | Signal::SIGCHLD
                | Signal::SIGSEGV
                | Signal::SIGBUS
                | Signal::SIGILL
                | Signal::SIGFPE
                | Signal::SIGTRAP
        ) {
            set.add(sig);
        }
    }
    set
}

fn run_container(
    rt: &Runtime,
    a: &CreateArgs,
    detach: bool,
    keep: bool,
    systemd_cgroup: bool,
) -> Result<i32> {
    let mut opts = create_options(a, systemd_cgroup);
    // A terminal without a console socket: the pty comes back to us on a socketpair.
    let own_tty = crate::exec::own_terminal(&a.bundle, a.console_socket.is_some(), detach)?;
    let own_tty = match own_tty {
        Some((ours, theirs)) => {
            opts.console = Some(std::sync::Arc::new(theirs));
            Some(ours)
        }
        None => None,
    };
    // Block forwarded signals before the clone so none is lost; the init unblocks
    // them before exec.
    let set = forwarded();
    if !detach {
        set.thread_block().map_err(err)?;
    }
    let container = create(rt, &a.id, &opts)?;
    drop(opts);
    let master = match &own_tty {
        Some(sock) => match casulo_core::tty::recv_master(sock.as_fd()) {
            Ok((m, _)) => {
                // The caller's size before the process starts, not after.
                crate::tty::resize(m.as_fd());
                Some(m)
            }
            Err(e) => {
                let _ = rt.delete(&a.id, true);
                let _ = container.wait();
                return Err(e.to_string());
            }
        },
        None => None,
    };
    if let Err(e) = rt.start(&a.id) {
        let _ = rt.delete(&a.id, true);
        let _ = container.wait();
        return Err(e.to_string());
    }
    if detach {
        return Ok(0);
    }
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).map_err(err)?;
    if let Some(m) = master {
        crate::tty::forward(m, container.pidfd(), &sfd, |sig| {
            let _ = rt.kill(&a.id, sig, false);
        });
    }
    wait_forwarding(container.pidfd(), &sfd, |sig| {
        let _ = rt.kill(&a.id, sig, false);
    })?;
    let code = container.wait().map_err(err)?;
    if !keep {
        rt.delete(&a.id, true).map_err(err)?;
    }
    Ok(code)
}

/// Forwards signals from `sfd` until the process behind `pidfd` exits.
pub(crate) fn wait_forwarding(
    pidfd: std::os::fd::BorrowedFd<'_>,
    sfd: &SignalFd,
    mut forward: impl FnMut(i32),
) -> Result<()> {
    loop {
        let mut fds = [
            PollFd::new(pidfd, PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.to_string()),
            Ok(_) => {}
        }
        if fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            if let Ok(Some(info)) = sfd.read_signal() {
                forward(info.ssi_signo as i32);
            }
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            return Ok(());
        }
    }
}

fn list(rt: &Runtime, format: &str, quiet: bool) -> Result<i32> {
    let states = rt.list().map_err(err)?;
    if quiet {
        for s in &states {
            crate::out::line(&s.id)?;
        }
        return Ok(0);
    }
    match format {
        "json" => crate::out::line(serde_json::to_string(&states).map_err(err)?)?,
        "table" => {
            let rows: Vec<[String; 6]> = std::iter::once(
                ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from),
            )
            .chain(states.iter().map(|s| {
                [
                    s.id.clone(),
                    s.pid.to_string(),
                    s.status.to_string(),
                    s.bundle.display().to_string(),
                    s.created.clone(),
                    s.owner.clone(),
                ]
            }))
            .collect();
            let mut width = [0usize; 6];
            for r in &rows {
                for (w, c) in width.iter_mut().zip(r) {
                    *w = (*w).max(c.len().max(9) + 3);
                }
            }
            for r in &rows {
                let line: String = r
                    .iter()
                    .zip(width)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                crate::out::line(line.trim_end())?;
            }
        }
        f => return Err(format!("invalid format {f:?}: table or json")),
    }
    Ok(0)
}

fn ps(rt: &Runtime, id: &str, format: &str) -> Result<i32> {
    let pids = rt.pids(id).map_err(err)?;
    match format {
        "json" => crate::out::line(serde_json::to_string(&pids).map_err(err)?)?,
        "table" => {
            let out = std::process::Command::new("ps")
                .arg("-ef")
                .output()
                .map_err(|e| format!("ps: {e}"))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            if let Some(h) = lines.next() {
                crate::out::line(h)?;
            }
            for l in lines {
                if l.split_whitespace()
                    .nth(1)
                    .and_then(|p| p.parse::<i32>().ok())
                    .is_some_and(|p| pids.contains(&p))
                {
                    crate::out::line(l)?;
                }
            }
        }
        f => return Err(format!("invalid format {f:?}: table or json")),
    }
    Ok(0)
}
