//! One function per command; each returns the process exit code or an error line.

use std::os::fd::AsFd;

use casulo_core::{CreateOptions, Runtime};
use nix::sys::signal::Signal;

use crate::log::Logger;
use crate::{Cli, Command, CreateArgs};

type Result<T> = std::result::Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Runs the parsed command line.
pub fn run(cli: &Cli, log: &Logger) -> Result<i32> {
    casulo_core::check_systemd_cgroup(cli.systemd_cgroup, None).map_err(err)?;
    let rootless = crate::rootless::mode(cli.rootless.as_deref()).map_err(err)?;
    if matches!(cli.command, Command::Exec(_)) {
        // The exec child enters the container's pid namespace as a copy of this binary.
        casulo_core::exe::ensure_protected().map_err(err)?;
    }
    let sink = log.clone();
    let rt = Runtime::new(crate::rootless::state_root(cli.root.as_ref()))
        .with_rootless(rootless)
        .with_logger(casulo_core::log::Logger::new(
            move |level, msg| match level {
                casulo_core::log::Level::Warn => sink.warn(msg),
                casulo_core::log::Level::Debug => sink.debug(msg),
            },
        ));
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
            let default = include_str!("example-config.json");
            let text = match cli.rootless.is_some() && rootless.is_rootless() {
                true => crate::rootless::spec(default)?,
                false => default.to_string(),
            };
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(0)
        }
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(&rt, id, format, ps_args),
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

fn run_container(
    rt: &Runtime,
    a: &CreateArgs,
    detach: bool,
    keep: bool,
    systemd_cgroup: bool,
) -> Result<i32> {
    let mut opts = create_options(a, systemd_cgroup);
    // A terminal without a console socket: the pty comes back to us on a socketpair.
    let own_tty = crate::tty::own_terminal(&a.bundle, a.console_socket.is_some(), detach)?;
    let own_tty = match own_tty {
        Some((ours, theirs)) => {
            opts.console = Some(std::sync::Arc::new(theirs));
            Some(ours)
        }
        None => None,
    };
    // Block forwarded signals before the clone so none is lost; the init unblocks
    // them before exec.
    let set = crate::signals::forwarded();
    if !detach {
        crate::signals::block(&set)?;
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
    let sfd = crate::signals::signalfd(&set)?;
    if let Some(m) = master {
        crate::tty::forward(m, container.pidfd(), &sfd, |sig| {
            let _ = rt.kill(&a.id, sig, false);
        });
    }
    crate::signals::wait_forwarding(container.pidfd(), &sfd, |sig| {
        let _ = rt.kill(&a.id, sig, false);
    })?;
    let code = container.wait().map_err(err)?;
    if !keep {
        rt.delete(&a.id, true).map_err(err)?;
    }
    Ok(code)
}

fn list(rt: &Runtime, format: &str, quiet: bool) -> Result<i32> {
    let states = rt.list().map_err(err)?;
    if quiet {
        let ids: Vec<&str> = states.iter().map(|s| s.id.as_str()).collect();
        if !ids.is_empty() {
            crate::out::line(ids.join("\n"))?;
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
            // One write for the whole table, not one per container.
            let mut table = String::new();
            for r in &rows {
                let start = table.len();
                for (c, w) in r.iter().zip(width) {
                    table.push_str(c);
                    table.extend(std::iter::repeat_n(' ', w.saturating_sub(c.len())));
                }
                table.truncate(start + table[start..].trim_end().len());
                table.push('\n');
            }
            table.pop();
            crate::out::line(table)?;
        }
        f => return Err(format!("invalid format {f:?}: table or json")),
    }
    Ok(0)
}

fn ps(rt: &Runtime, id: &str, format: &str, args: &[String]) -> Result<i32> {
    let pids = rt.pids(id).map_err(err)?;
    match format {
        "json" => crate::out::line(serde_json::to_string(&pids).map_err(err)?)?,
        "table" => crate::ps::table(&pids, args)?,
        f => return Err(format!("invalid format {f:?}: table or json")),
    }
    Ok(0)
}
