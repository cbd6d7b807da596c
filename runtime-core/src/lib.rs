//! Casulo: an OCI container runtime as a library.
//!
//! A [`Runtime`] keeps its containers' state under one root directory and performs the
//! operations of the OCI runtime spec (runtime.md) on them: [`Runtime::create`] (from a
//! bundle, with [`CreateOptions`]), [`Runtime::start`], [`Runtime::state`] (a [`State`]
//! with its [`Status`]), [`Runtime::kill`], [`Runtime::delete`], and runc's extras:
//! [`Runtime::exec`] ([`ExecOptions`]), [`Runtime::pause`], [`Runtime::resume`],
//! [`Runtime::update`], [`Runtime::stats`], [`Runtime::oom_notifier`], [`Runtime::pids`],
//! [`Runtime::list`]. Every operation returns [`Result`]: an [`Error`] that prints as one
//! line naming the config field or the step that failed, and wraps each module's error
//! type ([`ConfigError`], [`CgroupError`], …).
//!
//! Plug points: [`Runtime::with_logger`] takes a [`Logger`] for the library's warnings
//! and debug lines; the hooks a config lists (config.md "POSIX-platform Hooks") run as
//! the spec says, their failures reported as [`HookError`] (prestart to startContainer)
//! or as warnings through the logger (poststart, poststop). The modules [`config`]
//! (load and check a config.json without creating anything), [`features`] (the
//! runtime-spec features document), [`exe`] (CVE-2019-5736: protecting the runtime
//! binary before [`Runtime::create`] puts a copy of it where containers can see it),
//! [`tty`] (receiving the terminal sent to a `--console-socket`), [`stats`] and
//! [`spec_compat`] complete the API. `runtime-core/examples/run_bundle.rs` runs a
//! container from a bundle directory.
//!
//! Inside, modules follow the sections of the spec (config.md, config-linux.md,
//! runtime.md; see docs/architecture.md). `unsafe` code is only in the raw syscall
//! layers: `sys` and `cgroups::sys` (bpf, eventfd, inotify).
//!
//! ```no_run
//! use casulo_core::{CreateOptions, Runtime};
//!
//! # fn main() -> Result<(), casulo_core::Error> {
//! let rt = Runtime::new("/run/casulo");
//! let opts = CreateOptions { bundle: "/path/to/bundle".into(), ..Default::default() };
//! let container = rt.create("demo", &opts)?;   // set up, waiting for start
//! rt.start("demo")?;                            // the user's process is exec'd
//! let code = container.wait()?;                 // we are its parent: reap it
//! rt.delete("demo", false)?;                    // cgroup and state removed
//! println!("exit status {code}");
//! # Ok(())
//! # }
//! ```
//!
//! The library is safe to call from many threads at once: the create path forks
//! through libc (whose atfork handlers keep malloc usable in the child) and only the
//! single-threaded helper uses a raw `clone3`.

#![cfg_attr(not(feature = "internals"), deny(missing_docs))]

// The public API is what this file re-exports plus the modules declared `pub` below
// (`config`, `exe`, `features`, `log`, `tty`): everything an embedder needs to run
// containers. The rest is crate-private; the `internals` feature (for Casulo's own
// tests only, never for embedders) makes the modules the tests drive directly public.

/// Declares modules that are crate-private, or public (hidden from the docs) with the
/// `internals` feature, which only Casulo's own tests turn on.
macro_rules! internal_mods {
    ($($m:ident),* $(,)?) => {$(
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        #[allow(missing_docs)]
        pub mod $m;
        // Without the feature, what only the tests call is unused here.
        #[cfg(not(feature = "internals"))]
        #[allow(dead_code, unused_imports)]
        mod $m;
    )*};
}

internal_mods!(cgroups, dbus, state);

mod caller;
mod child_error;

pub mod config;
mod container;
mod create;
mod error;
pub mod exe;
mod exec;
mod exec_cgroup;
mod fault;
pub mod features;
mod hooks;
mod host_guard;
pub mod log;
mod mountinfo;
mod namespaces;
mod netdev;
mod pause;
mod process;
mod rootfs;
pub mod rootless;
mod security;
mod shared;
mod spec_util;
mod store;
mod sys;
pub mod tty;
mod update;

pub use cgroups::detect::cache_mounts_for_process;
pub use cgroups::detect::layout as cgroup_layout;
pub use cgroups::systemd::GVariantError;
pub use cgroups::Layout as CgroupLayout;
pub use cgroups::{check_systemd_cgroup, CgroupError, OomNotifier, ParseError as CgroupParseError};
pub use child_error::ChildError;
pub use config::ConfigError;
pub use container::{load_config, Container, CreateOptions, Runtime};
pub use dbus::DbusError;
pub use error::{Error, Operation, Result};
pub use exe::ExeError;
pub use exec::{ExecOptions, ExecProcess};
pub use hooks::HookError;
pub use log::{Level, Logger};
pub use namespaces::NamespaceError;
pub use netdev::NetDevError;
pub use process::spawn::ProcessHandle;
pub use process::ProcessError;
pub use security::{ListError, SecurityError};
pub use state::{now_rfc3339, utc_date, State, Status};
pub use store::{validate_id, Record, Store, StoreError};
pub use tty::TtyError;

/// Resource usage of a container's cgroup, as [`Runtime::stats`] returns it (runc's
/// `events --stats` document).
pub mod stats {
    pub use crate::cgroups::stats::*;
}

/// Pre-passes for JSON documents engines send (a `config.json`, an `exec --process`
/// file) before oci-spec parses them: capability names that cannot be mapped are left
/// out with one warning each (config.md: "MUST be logged as a warning"), and config.md's
/// scheduler flag names are accepted.
pub mod spec_compat {
    pub use crate::security::process::spec_sched_flag_names;
    pub use crate::security::unknown_caps::{known, strip, warn};
}
