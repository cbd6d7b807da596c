//! Casulo: an OCI container runtime as a library.
//!
//! Modules follow the sections of the OCI runtime spec: [`config`] (config.md),
//! [`namespaces`], [`rootfs`], [`security`] and [`cgroups`] (config-linux.md),
//! [`state`], [`store`] and [`container`] (runtime.md). `unsafe` code is only in the
//! raw syscall layers: `sys` and `cgroups::sys` (bpf, eventfd, inotify).
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

pub mod cgroups;
mod child_error;
pub mod config;
pub mod container;
mod create;
mod error;
pub mod exe;
pub mod exec;
mod exec_cgroup;
pub mod fault;
pub mod features;
pub mod hooks;
pub mod host_guard;
pub mod log;
pub mod mountinfo;
pub mod namespaces;
pub mod netdev;
pub mod pause;
pub mod process;
pub mod rootfs;
pub mod security;
mod shared;
pub mod state;
pub mod store;
mod sys;
pub mod tty;
pub mod update;

pub use child_error::ChildError;
pub use container::{Container, CreateOptions, Runtime};
pub use error::{Error, Operation, Result};
pub use exec::{ExecOptions, ExecProcess};
pub use state::{State, Status};
