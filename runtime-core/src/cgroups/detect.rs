//! Run-time detection of the host's cgroup layout (statfs magic of
//! `/sys/fs/cgroup`, then `/proc/self/mountinfo` for the v1 hierarchies).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC, TMPFS_MAGIC};

use super::{CgroupError, Result};

/// The cgroup mount point every layout is found under.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup layout the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Only cgroup v1 hierarchies.
    V1,
    /// cgroup v1 controllers plus a cgroup2 mount at `/sys/fs/cgroup/unified`.
    Hybrid,
    /// Pure cgroup v2 at `/sys/fs/cgroup`.
    V2,
}

/// Detects the layout from the filesystem type of `/sys/fs/cgroup` (and of
/// `/sys/fs/cgroup/unified` when the former is a tmpfs).
pub fn layout() -> Result<Layout> {
    if !CACHE_ENABLED.load(Ordering::Relaxed) {
        return detect_layout();
    }
    if let Some(l) = CACHED_LAYOUT.get() {
        return Ok(*l);
    }
    let l = detect_layout()?;
    Ok(*CACHED_LAYOUT.get_or_init(|| l))
}

fn detect_layout() -> Result<Layout> {
    let root = Path::new(CGROUP_ROOT);
    let st = statfs(root).map_err(|e| super::util::io_err(root, e.into()))?;
    let ty = st.filesystem_type();
    if ty == CGROUP2_SUPER_MAGIC {
        return Ok(Layout::V2);
    }
    if ty != TMPFS_MAGIC && ty != CGROUP_SUPER_MAGIC {
        return Err(CgroupError::Layout(format!(
            "{CGROUP_ROOT} is neither cgroup2 nor a tmpfs of v1 hierarchies (fs magic {:#x})",
            ty.0
        )));
    }
    let unified = root.join("unified");
    let hybrid = statfs(&unified)
        .map(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
        .unwrap_or(false);
    if v1_mounts()?.is_empty() {
        return Err(CgroupError::Layout(format!(
            "no cgroup v1 hierarchy is mounted under {CGROUP_ROOT}"
        )));
    }
    Ok(if hybrid { Layout::Hybrid } else { Layout::V1 })
}

/// A mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mount {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The cgroup path of the mount's root (`/` unless a subtree is bind-mounted).
    pub root: String,
}

static CACHE_ENABLED: AtomicBool = AtomicBool::new(false);
static CACHED_V1_MOUNTS: OnceLock<BTreeMap<String, V1Mount>> = OnceLock::new();
static CACHED_LAYOUT: OnceLock<Layout> = OnceLock::new();

/// Makes the cgroup v1 mount lookup read `/proc/self/mountinfo` once for the rest of the
/// process, and the layout detection (two `statfs`) happen once. For short-lived
/// processes (the `casulo` CLI), where one command would otherwise parse it up to six
/// times (detection and every cgroup opened; ~0.3 ms each on a loaded host), and `list`
/// would detect the layout for every container. A long-lived embedder that may outlive a change of the host's cgroup
/// mounts should not call it.
pub fn cache_mounts_for_process() {
    CACHE_ENABLED.store(true, Ordering::Relaxed);
}

/// v1 hierarchies under `/sys/fs/cgroup`, keyed by controller name (`cpu`,
/// `memory`, ..., `name=systemd`); co-mounted controllers share a mount.
pub fn v1_mounts() -> Result<BTreeMap<String, V1Mount>> {
    if !CACHE_ENABLED.load(Ordering::Relaxed) {
        return read_v1_mounts();
    }
    if let Some(m) = CACHED_V1_MOUNTS.get() {
        return Ok(m.clone());
    }
    let m = read_v1_mounts()?;
    Ok(CACHED_V1_MOUNTS.get_or_init(|| m).clone())
}

fn read_v1_mounts() -> Result<BTreeMap<String, V1Mount>> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(path).map_err(|e| super::util::io_err(path, e))?;
    Ok(parse_v1_mounts(&text))
}

/// Parses mountinfo text (see proc(5)) for `cgroup` (v1) mounts.
pub fn parse_v1_mounts(text: &str) -> BTreeMap<String, V1Mount> {
    let mut out = BTreeMap::new();
    for m in crate::mountinfo::parse(text) {
        let mountpoint = PathBuf::from(&m.mountpoint);
        if m.fstype != "cgroup" || !mountpoint.starts_with(CGROUP_ROOT) {
            continue;
        }
        for opt in m.super_options.split(',') {
            let known = matches!(
                opt,
                "cpu"
                    | "cpuacct"
                    | "cpuset"
                    | "memory"
                    | "devices"
                    | "freezer"
                    | "blkio"
                    | "pids"
                    | "hugetlb"
                    | "net_cls"
                    | "net_prio"
                    | "perf_event"
                    | "rdma"
                    | "misc"
            ) || opt.starts_with("name=");
            if known {
                out.entry(opt.to_string()).or_insert_with(|| V1Mount {
                    mountpoint: mountpoint.clone(),
                    root: m.root.clone(),
                });
            }
        }
    }
    out
}

/// The calling process's cgroups from `/proc/self/cgroup`: controller name
/// (`""` for the unified hierarchy) to path.
pub fn own_cgroups() -> Result<BTreeMap<String, String>> {
    let path = Path::new("/proc/self/cgroup");
    let text = std::fs::read_to_string(path).map_err(|e| super::util::io_err(path, e))?;
    Ok(parse_proc_cgroup(&text))
}

/// Parses `/proc/<pid>/cgroup` text (`id:controllers:path` lines).
pub fn parse_proc_cgroup(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ctls.is_empty() {
            out.insert(String::new(), path.to_string());
        } else {
            for c in ctls.split(',') {
                out.insert(c.to_string(), path.to_string());
            }
        }
    }
    out
}
