//! `casulo exec`: runc's flags, the process built as runc builds it (the container's
//! process with the flags applied, or `--process FILE` as is).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use casulo_core::{ExecOptions, Runtime};
use clap::Args;
use oci_spec::runtime::{Capability, Process, UserBuilder};

type Result<T> = std::result::Result<T, String>;

/// `exec`'s flags.
#[derive(Args)]
pub struct ExecArgs {
    /// Unix socket to send the pty master to.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Working directory in the container.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Extra environment variables (KEY=VALUE).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// uid[:gid] to run as.
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Additional gids.
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// A process.json to run instead of the flags and arguments.
    #[arg(short = 'p', long)]
    process: Option<PathBuf>,
    /// Return once the process has started.
    #[arg(short = 'd', long)]
    detach: bool,
    /// File to write the process's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// SELinux process label.
    #[arg(long = "process-label")]
    process_label: Option<String>,
    /// AppArmor profile.
    #[arg(long)]
    apparmor: Option<String>,
    /// Set no_new_privs.
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Extra capabilities.
    #[arg(short = 'c', long = "cap")]
    cap: Vec<String>,
    /// Number of extra fds (from 3) passed to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Exec into a paused container too.
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// Run in an existing sub-cgroup of the container's: PATH, or
    /// CONTROLLER[,CONTROLLER...]:PATH on cgroup v1 (repeatable).
    #[arg(long = "cgroup")]
    cgroup: Vec<String>,
    /// Container id.
    id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// A `--cap` value; None (after one warning) for a name that cannot be granted.
fn parse_cap(rt: &Runtime, c: &str) -> Option<Capability> {
    let up = c.to_ascii_uppercase();
    let name = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    let cap = casulo_core::spec_compat::known(&name)
        .then(|| serde_json::from_value::<Capability>(serde_json::Value::String(name)).ok())
        .flatten();
    if cap.is_none() {
        casulo_core::spec_compat::warn(rt.logger(), "--cap", &[c.to_string()]);
    }
    cap
}

/// `--process`: unknown capability names are logged and left out (config.md).
fn load_process(rt: &Runtime, path: &Path) -> Result<Process> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(c) = doc.get_mut("capabilities").filter(|c| c.is_object()) {
        let removed = casulo_core::spec_compat::strip(c);
        casulo_core::spec_compat::warn(rt.logger(), "capabilities", &removed);
    }
    casulo_core::spec_compat::spec_sched_flag_names(&mut doc);
    serde_json::from_value(doc).map_err(|e| format!("{}: {e}", path.display()))
}

/// The process runc would run for these flags.
fn build_process(rt: &Runtime, a: &ExecArgs) -> Result<Process> {
    if let Some(p) = &a.process {
        return load_process(rt, p);
    }
    if a.command.is_empty() {
        return Err("exec: no command given (arguments or --process)".into());
    }
    let rec = rt.store().load(&a.id).map_err(|e| e.to_string())?;
    let mut p = rec.config.process().clone().unwrap_or_default();
    // Only the config's capabilities, never oci-spec's defaults (they fill the
    // inheritable and ambient sets: CVE-2022-29162).
    p.set_capabilities(
        rec.config
            .process()
            .as_ref()
            .and_then(|c| c.capabilities().clone()),
    );
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if !a.env.is_empty() {
        // Appended; a later KEY= replaces an earlier one (as runc does).
        let mut env: Vec<String> = Vec::new();
        for e in p.env().iter().flatten().chain(a.env.iter()) {
            let key = e.split('=').next().unwrap_or_default();
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        p.set_env(Some(env));
    }
    if a.user.is_some() || !a.additional_gids.is_empty() {
        let mut uid = p.user().uid();
        let mut gid = p.user().gid();
        if let Some(u) = &a.user {
            let (us, gs) = match u.split_once(':') {
                Some((x, y)) => (x, Some(y)),
                None => (u.as_str(), None),
            };
            uid = us
                .parse()
                .map_err(|_| format!("--user {u:?}: expected uid[:gid] as numbers"))?;
            if let Some(g) = gs {
                gid = g
                    .parse()
                    .map_err(|_| format!("--user {u:?}: expected uid[:gid] as numbers"))?;
            }
        }
        let mut b = UserBuilder::default().uid(uid).gid(gid);
        if !a.additional_gids.is_empty() {
            b = b.additional_gids(a.additional_gids.clone());
        }
        if let Some(m) = p.user().umask() {
            b = b.umask(m);
        }
        p.set_user(b.build().map_err(|e| e.to_string())?);
    }
    // Added to the bounding, effective and permitted sets, never to the inheritable
    // one (CVE-2022-29162). Without capabilities in the config the process keeps all of
    // root's: nothing to add.
    if let (false, Some(mut caps)) = (a.cap.is_empty(), p.capabilities().clone()) {
        for c in &a.cap {
            let Some(cap) = parse_cap(rt, c) else {
                continue;
            };
            let add = |s: &Option<std::collections::HashSet<Capability>>| {
                let mut s = s.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
        }
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(l) = &a.apparmor {
        p.set_apparmor_profile(Some(l.clone()));
    }
    if let Some(l) = &a.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    Ok(p)
}

/// Runs `exec`; returns the exit code (the process's own without `--detach`).
pub fn exec(rt: &Runtime, a: &ExecArgs) -> Result<i32> {
    let mut process = build_process(rt, a)?;
    let terminal = process.terminal().unwrap_or(false);
    let own = if terminal && a.console_socket.is_none() && !a.detach {
        // The pty starts with the caller's size (the process runs before we forward).
        if let Ok((rows, cols)) = casulo_core::tty::window_size(std::io::stdin().as_fd()) {
            let size = oci_spec::runtime::BoxBuilder::default()
                .height(u64::from(rows))
                .width(u64::from(cols))
                .build()
                .map_err(|e| e.to_string())?;
            process.set_console_size(Some(size));
        }
        Some(crate::tty::pair()?)
    } else {
        None
    };
    let (ours, theirs) = match own {
        Some((o, t)) => (Some(o), Some(std::sync::Arc::new(t))),
        None => (None, None),
    };
    let opts = ExecOptions {
        process,
        console_socket: a.console_socket.clone(),
        console: theirs,
        pid_file: a.pid_file.clone(),
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
        sub_cgroups: a.cgroup.clone(),
    };
    let set = crate::signals::forwarded();
    if !a.detach {
        crate::signals::block(&set)?;
    }
    let proc = rt.exec(&a.id, &opts).map_err(|e| e.to_string())?;
    drop(opts);
    if a.detach {
        return Ok(0);
    }
    let sfd = crate::signals::signalfd(&set)?;
    if let Some(sock) = ours {
        let (master, _) = casulo_core::tty::recv_master(sock.as_fd()).map_err(|e| e.to_string())?;
        crate::tty::forward(master, proc.pidfd(), &sfd, |sig| {
            let _ = proc.signal(sig);
        });
    } else {
        crate::signals::wait_forwarding(proc.pidfd(), &sfd, |sig| {
            let _ = proc.signal(sig);
        })?;
    }
    proc.wait().map_err(|e| e.to_string())
}
