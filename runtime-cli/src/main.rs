//! `casulo`: the runc-compatible command line of the Casulo OCI runtime.

mod commands;
mod events;
mod exec;
mod log;
mod out;
mod ps;
mod rootless;
mod signals;
mod tty;
mod update;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Casulo, an OCI container runtime.
#[derive(Parser)]
#[command(name = "casulo", version, about, propagate_version = true)]
pub struct Cli {
    /// Root directory for container state [default: /run/casulo; $XDG_RUNTIME_DIR/casulo
    /// when euid != 0].
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Log file (errors also go to stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Debug logging.
    #[arg(long, global = true)]
    debug: bool,
    /// Use the systemd cgroup driver.
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Rootless mode: true, false or auto [default: auto]; `spec --rootless` writes the
    /// rootless default config.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format` values.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

/// Flags shared by `create` and `run`.
#[derive(Args)]
pub struct CreateArgs {
    /// Path to the bundle directory.
    #[arg(short = 'b', long, default_value = ".")]
    bundle: PathBuf,
    /// File to write the container init's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Number of extra fds (from 3) passed to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Use MS_MOVE + chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a session keyring.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Container id.
    id: String,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container (waits for `start`).
    Create(CreateArgs),
    /// Start the user process of a created container.
    Start {
        /// Container id.
        id: String,
    },
    /// Print a container's state as JSON.
    State {
        /// Container id.
        id: String,
    },
    /// Send a signal to a container (default SIGTERM).
    Kill {
        /// Signal every process in the container.
        #[arg(short, long)]
        all: bool,
        /// Container id.
        id: String,
        /// Signal: number, name or SIGNAME.
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a stopped container (with --force, any container).
    Delete {
        /// Kill the container first if it is running.
        #[arg(short, long)]
        force: bool,
        /// Container id.
        id: String,
    },
    /// Create and start a container, and wait for it.
    Run {
        /// Return once the container is started.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
        #[command(flatten)]
        create: CreateArgs,
    },
    /// List containers.
    #[command(alias = "ls")]
    List {
        /// Output format: table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Print only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a default config.json.
    Spec {
        /// Bundle directory to write config.json into.
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Suspend every process of a container.
    Pause {
        /// Container id.
        id: String,
    },
    /// Resume a paused container.
    Resume {
        /// Container id.
        id: String,
    },
    /// Change a container's cgroup resources.
    Update(Box<update::UpdateArgs>),
    /// Show a container's resource usage and OOM events.
    Events(events::EventsArgs),
    /// Run a new process in a running container.
    Exec(Box<exec::ExecArgs>),
    /// Print the features this runtime implements (runtime-spec features.md JSON).
    Features,
    /// List a container's processes (host pids).
    Ps {
        /// Output format: table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Container id.
        id: String,
        /// Options for the host's `ps` (default: the rows of `ps -ef`, read from /proc).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
}

fn main() {
    // `exec` re-executes from a protected copy of the binary (CVE-2019-5736): before
    // the command line is parsed, so that only the second process parses it. Any
    // argument spelled `exec` may be the subcommand (a false match only re-executes);
    // a failure here is reported by `commands::run`, which checks again.
    if std::env::args_os().skip(1).any(|a| a == "exec") {
        let _ = casulo_core::exe::ensure_protected();
    }
    // One command lives milliseconds: read the host's cgroup mounts once.
    casulo_core::cache_mounts_for_process();
    let cli = Cli::try_parse().unwrap_or_else(|e| out::clap_exit(e));
    let logger = log::Logger::new(
        cli.log.as_deref(),
        cli.log_format == LogFormat::Json,
        cli.debug,
    )
    .unwrap_or_else(|msg| log::fatal(&msg));
    let code = match commands::run(&cli, &logger) {
        Ok(code) => code,
        Err(msg) => {
            logger.error(&msg);
            1
        }
    };
    std::process::exit(code);
}
