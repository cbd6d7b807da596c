//! Control groups (config-linux.md "Control groups").
//!
//! One trait, [`Cgroup`], with a backend per layout the host can have: v1, hybrid
//! (v1 controllers plus a cgroup2 mount at `/sys/fs/cgroup/unified`) and pure v2.
//! The layout is detected at run time by [`open`].
//!
//! INTERFACE CONTRACT (used by the create path and the CLI; keep it stable):
//! - [`resolve_path`] turns `linux.cgroupsPath` (absolute, relative, or absent) and the
//!   container id into the absolute cgroup path that is stored in the container's state.
//! - [`open`] builds the manager for an absolute cgroup path (create and later commands).
//! - `create` makes the cgroup(s) and applies resources before the init runs user code;
//!   `add_process` moves a pid in; `destroy` removes everything `create` made.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;

/// Errors of the cgroups module.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup file or directory could not be read, written or removed.
    #[error("cgroup {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The configuration asks for something invalid or unsupported here.
    #[error("{0}")]
    Invalid(String),
}

/// Result type of this module.
pub type Result<T> = std::result::Result<T, CgroupError>;

/// A container's cgroup, on whatever layout the host has.
pub trait Cgroup: Send + Sync {
    /// The absolute cgroup path (as stored in the container state).
    fn path(&self) -> &str;
    /// Creates the cgroup in every hierarchy and applies `resources`.
    fn create(&self, resources: Option<&LinuxResources>) -> Result<()>;
    /// Moves `pid` into the cgroup.
    fn add_process(&self, pid: i32) -> Result<()>;
    /// On cgroup v2, a directory fd for `clone3(CLONE_INTO_CGROUP)`.
    fn clone_into_fd(&self) -> Option<OwnedFd> {
        None
    }
    /// Removes every cgroup directory `create` made (after killing nothing: the
    /// caller has already killed the processes).
    fn destroy(&self) -> Result<()>;
    /// Host pids of all processes in the cgroup.
    fn pids(&self) -> Result<Vec<i32>>;
}

/// Turns `linux.cgroupsPath` into an absolute cgroup path.
pub fn resolve_path(cgroups_path: Option<&str>, id: &str) -> Result<String> {
    Ok(match cgroups_path {
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
        None => format!("/{id}"),
    })
}

/// Opens the manager for the absolute cgroup path `path`.
pub fn open(path: &str) -> Result<Box<dyn Cgroup>> {
    Ok(Box::new(v1::Hierarchies::new(path)))
}

mod v1 {
    //! Minimal placeholder backend (to be replaced by the full v1/hybrid/v2 backends).
    use super::*;

    const ROOT: &str = "/sys/fs/cgroup";

    pub struct Hierarchies {
        path: String,
        dirs: Vec<PathBuf>,
    }

    impl Hierarchies {
        pub fn new(path: &str) -> Self {
            let rel = path.trim_start_matches('/');
            let mut dirs = Vec::new();
            for ctl in [
                "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
                "unified",
            ] {
                let base = PathBuf::from(ROOT).join(ctl);
                if base.join("cgroup.procs").exists() {
                    dirs.push(base.join(rel));
                }
            }
            Hierarchies {
                path: path.to_string(),
                dirs,
            }
        }
    }

    impl Cgroup for Hierarchies {
        fn path(&self) -> &str {
            &self.path
        }
        fn create(&self, _resources: Option<&LinuxResources>) -> Result<()> {
            for d in &self.dirs {
                std::fs::create_dir_all(d).map_err(|source| CgroupError::Io {
                    path: d.clone(),
                    source,
                })?;
                if d.starts_with("/sys/fs/cgroup/cpuset") {
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let v = std::fs::read_to_string(d.parent().unwrap().join(f))
                            .unwrap_or_default();
                        let _ = std::fs::write(d.join(f), v.trim());
                    }
                }
            }
            Ok(())
        }
        fn add_process(&self, pid: i32) -> Result<()> {
            for d in &self.dirs {
                let f = d.join("cgroup.procs");
                std::fs::write(&f, pid.to_string())
                    .map_err(|source| CgroupError::Io { path: f, source })?;
            }
            Ok(())
        }
        fn destroy(&self) -> Result<()> {
            for d in &self.dirs {
                match std::fs::remove_dir(d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(CgroupError::Io {
                            path: d.clone(),
                            source,
                        })
                    }
                }
            }
            Ok(())
        }
        fn pids(&self) -> Result<Vec<i32>> {
            let Some(d) = self.dirs.first() else {
                return Ok(Vec::new());
            };
            let f = d.join("cgroup.procs");
            let s = std::fs::read_to_string(&f)
                .map_err(|source| CgroupError::Io { path: f, source })?;
            Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        }
    }
}
