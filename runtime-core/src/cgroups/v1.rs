//! cgroup v1 backend, also used for the hybrid layout (v1 controllers plus a
//! cgroup2 mount at `/sys/fs/cgroup/unified`, whose directory is created and
//! joined too and which takes hugetlb limits when v1 has no hugetlb).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use super::detect::{self, Layout, CGROUP_ROOT};
use super::util::{self, read, read_opt, write};
use super::{devices, stats, CgroupError, FreezerState, Result, Stats};

mod resources;

/// Manager for one cgroup path on a v1 or hybrid host.
pub struct V1 {
    path: String,
    layout: Layout,
    /// Controller (`cpu`, `memory`, ..., `name=systemd`) to its directory.
    dirs: BTreeMap<String, PathBuf>,
    /// Hybrid only: (unified mount point, this cgroup's dir in it).
    unified: Option<(PathBuf, PathBuf)>,
    /// Directories `create` made, outermost first.
    created: Mutex<Vec<PathBuf>>,
}

fn unsupported(field: &str, what: impl Into<String>) -> CgroupError {
    CgroupError::Unsupported {
        field: field.to_string(),
        what: what.into(),
    }
}

impl V1 {
    pub(crate) fn new(path: &str, layout: Layout) -> Result<Self> {
        let mut dirs = BTreeMap::new();
        for (ctl, m) in detect::v1_mounts()? {
            let rel = path
                .strip_prefix(m.root.trim_end_matches('/'))
                .filter(|r| r.is_empty() || r.starts_with('/'))
                .unwrap_or(path);
            dirs.insert(ctl, m.mountpoint.join(rel.trim_start_matches('/')));
        }
        let unified = (layout == Layout::Hybrid).then(|| {
            let root = Path::new(CGROUP_ROOT).join("unified");
            let dir = root.join(path.trim_start_matches('/'));
            (root, dir)
        });
        Ok(V1 {
            path: path.to_string(),
            layout,
            dirs,
            unified,
            created: Mutex::new(Vec::new()),
        })
    }

    /// The directory of controller `ctl`, or an error naming `field`.
    fn dir(&self, ctl: &str, field: &str) -> Result<&Path> {
        self.dirs.get(ctl).map(PathBuf::as_path).ok_or_else(|| {
            unsupported(
                field,
                format!("the cgroup v1 {ctl:?} controller is not mounted under {CGROUP_ROOT}"),
            )
        })
    }

    /// Distinct hierarchy directories (co-mounted controllers share one),
    /// plus the unified dir on hybrid.
    fn all_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.dirs.values().cloned().collect();
        v.sort();
        v.dedup();
        if let Some((_, d)) = &self.unified {
            v.push(d.clone());
        }
        v
    }

    /// Where hugetlb limits go: the v1 hierarchy, or the hybrid unified dir
    /// when its cgroup2 root offers the hugetlb controller.
    fn hugetlb_dir(&self) -> Option<(PathBuf, bool)> {
        if let Some(d) = self.dirs.get("hugetlb") {
            return Some((d.clone(), false));
        }
        let (root, dir) = self.unified.as_ref()?;
        let ctls = read_opt(root, "cgroup.controllers").unwrap_or_default();
        ctls.split_whitespace()
            .any(|c| c == "hugetlb")
            .then(|| (dir.clone(), true))
    }

    fn make_dirs(&self, r: Option<&LinuxResources>) -> Result<()> {
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        for d in self.all_dirs() {
            let new = util::mkdir_all(&d)?;
            created.extend(new.iter().cloned());
            if self.dirs.get("cpuset") == Some(&d) {
                // A new cpuset cgroup starts with empty cpus/mems, and tasks
                // cannot join it until both are set: inherit the parent's. Every
                // ancestor is checked top-down, not only the ones made here: a
                // concurrent create may have made a shared parent and not filled it yet.
                let mut chain: Vec<&Path> = d
                    .ancestors()
                    .take_while(|a| a.parent().is_some_and(|p| p.join("cpuset.cpus").exists()))
                    .collect();
                chain.reverse();
                for n in chain {
                    inherit_cpuset(n)?;
                }
            }
        }
        let wants_hugetlb =
            r.is_some_and(|r| r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()));
        if let (Some((root, dir)), true) = (&self.unified, wants_hugetlb) {
            if self.hugetlb_dir().is_some_and(|(_, v2)| v2) {
                enable_v2_controller(root, dir, "hugetlb", "linux.resources.hugepageLimits")?;
            }
        }
        Ok(())
    }

    fn apply(&self, r: Option<&LinuxResources>, creating: bool) -> Result<()> {
        let user_devices = r.and_then(|r| r.devices().as_ref());
        // Without privilege in the initial user namespace the device cgroup cannot be
        // set (crate::rootless::resources): only rules the config asks for are tried.
        let defaults = creating && crate::caller::privileged();
        if defaults || user_devices.is_some_and(|d| !d.is_empty()) {
            let rules = devices::effective_rules(user_devices.map_or(&[][..], Vec::as_slice));
            self.apply_devices(&rules, creating)?;
        }
        let Some(r) = r else { return Ok(()) };
        self.apply_memory(r, !creating)?;
        self.apply_cpu(r)?;
        if let Some(p) = r.pids() {
            // 0 is a limit (no new task); only a negative value means none.
            {
                let v = if p.limit() >= 0 {
                    p.limit().to_string()
                } else {
                    "max".into()
                };
                write(
                    self.dir("pids", "linux.resources.pids")?,
                    "pids.max",
                    &v,
                    "linux.resources.pids.limit",
                )?;
            }
        }
        self.apply_blkio(r)?;
        for h in r.hugepage_limits().iter().flatten() {
            let field = "linux.resources.hugepageLimits";
            let (dir, v2) = self.hugetlb_dir().ok_or_else(|| {
                unsupported(
                    field,
                    "no hugetlb controller (neither v1 nor in the unified hierarchy)",
                )
            })?;
            let file = if v2 {
                format!("hugetlb.{}.max", h.page_size())
            } else {
                format!("hugetlb.{}.limit_in_bytes", h.page_size())
            };
            write(&dir, &file, &h.limit().to_string(), field)?;
        }
        if let Some(n) = r.network() {
            if let Some(id) = n.class_id() {
                let f = "linux.resources.network.classID";
                write(
                    self.dir("net_cls", f)?,
                    "net_cls.classid",
                    &id.to_string(),
                    f,
                )?;
            }
            for p in n.priorities().iter().flatten() {
                let f = "linux.resources.network.priorities";
                let v = format!("{} {}", p.name(), p.priority());
                write(self.dir("net_prio", f)?, "net_prio.ifpriomap", &v, f)?;
            }
        }
        for (dev, l) in r.rdma().iter().flatten() {
            let f = "linux.resources.rdma";
            write(
                self.dir("rdma", f)?,
                "rdma.max",
                &super::v2::rdma_line(dev, l),
                f,
            )?;
        }
        if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
            let f = "linux.resources.unified";
            let Some((_, dir)) = &self.unified else {
                let mut keys: Vec<&String> = u.keys().collect();
                keys.sort();
                return Err(unsupported(
                    &format!("{f}{keys:?}"),
                    "cgroup v1 host has no unified (cgroup2) hierarchy",
                ));
            };
            for (k, v) in u {
                write(dir, k, v, &format!("{f}[{k:?}]"))?;
            }
        }
        Ok(())
    }

    fn apply_devices(&self, rules: &[devices::Rule], creating: bool) -> Result<()> {
        let f = "linux.resources.devices";
        let dir = self.dir("devices", f)?;
        // On update, change only what differs (no deny-everything window for
        // the running container) when the kernel state allows it.
        let incremental = if creating {
            None
        } else {
            read_opt(dir, "devices.list").and_then(|l| devices::v1_transition(&l, rules))
        };
        if let Some(writes) = incremental {
            for (allow, line) in writes {
                let file = if allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                write(dir, file, &line, f)?;
            }
            return Ok(());
        }
        write(dir, "devices.deny", "a", f)?;
        for r in rules {
            let file = if r.allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            for line in r.v1_lines() {
                write(dir, file, &line, f)?;
            }
        }
        Ok(())
    }

    fn freezer_dir(&self) -> Result<&Path> {
        self.dir("freezer", "freezer")
    }

    /// Directory whose `cgroup.procs` lists the container's tasks.
    fn procs_dir(&self) -> Option<&Path> {
        ["pids", "freezer", "memory", "cpu", "devices"]
            .iter()
            .find_map(|c| self.dirs.get(*c))
            .or_else(|| self.dirs.values().next())
            .map(PathBuf::as_path)
    }
}

/// Copies `cpuset.cpus`/`cpuset.mems` from the parent when empty.
fn inherit_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if read_opt(dir, f).is_some_and(|v| v.is_empty()) {
            let v = read(parent, f)?;
            write(dir, f, &v, "linux.resources.cpu")?;
        }
    }
    Ok(())
}

/// Enables controller `ctl` in `cgroup.subtree_control` of every ancestor of
/// `dir` from the cgroup2 `root` down (needed before `dir` can use it).
pub(crate) fn enable_v2_controller(root: &Path, dir: &Path, ctl: &str, field: &str) -> Result<()> {
    let Ok(rel) = dir.strip_prefix(root) else {
        return Ok(());
    };
    let mut cur = root.to_path_buf();
    for comp in rel.components() {
        let enabled = read_opt(&cur, "cgroup.subtree_control").unwrap_or_default();
        if !enabled.split_whitespace().any(|c| c == ctl) {
            write(&cur, "cgroup.subtree_control", &format!("+{ctl}"), field)?;
        }
        cur.push(comp);
    }
    Ok(())
}

impl super::Cgroup for V1 {
    fn path(&self) -> &str {
        &self.path
    }

    fn layout(&self) -> Layout {
        self.layout
    }

    fn create(&self, resources: Option<&LinuxResources>) -> Result<()> {
        if let Some(r) = resources {
            super::validate(r)?;
        }
        let res = self
            .make_dirs(resources)
            .and_then(|()| self.apply(resources, true));
        if let Err(e) = res {
            let _ = super::Cgroup::destroy(self);
            return Err(e);
        }
        Ok(())
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        for d in self.all_dirs() {
            util::add_pid(&d, pid)?;
        }
        Ok(())
    }

    fn self_join(&self) -> Option<super::SelfJoin> {
        let mut dirs: Vec<&PathBuf> = self.dirs.values().collect();
        dirs.sort();
        dirs.dedup();
        let tasks = dirs
            .into_iter()
            .map(|d| {
                let f = d.join("tasks");
                let fd = util::open_write(&f).ok()?;
                Some((f, fd))
            })
            .collect::<Option<Vec<_>>>()?;
        let into = match &self.unified {
            Some((_, d)) => Some(util::open_dir_path(d).ok()?),
            None => None,
        };
        Some(super::SelfJoin { into, tasks })
    }

    fn update(&self, resources: &LinuxResources) -> Result<()> {
        super::validate(resources)?;
        self.apply(Some(resources), false)
    }

    fn freeze(&self, freeze: bool) -> Result<()> {
        let dir = self.freezer_dir()?;
        let fail = |reason: String| CgroupError::Freeze {
            path: dir.to_path_buf(),
            reason,
        };
        if !freeze {
            write(dir, "freezer.state", "THAWED", "freezer")?;
            let ok = util::wait_until(Duration::from_secs(5), || {
                Ok(read(dir, "freezer.state")? == "THAWED")
            })?;
            return if ok {
                Ok(())
            } else {
                Err(fail("did not reach THAWED".into()))
            };
        }
        // A freeze can stay in FREEZING while a task is in an uninterruptible
        // state; thaw and retry a few times, as runc does.
        for _ in 0..20 {
            write(dir, "freezer.state", "FROZEN", "freezer")?;
            let ok = util::wait_until(Duration::from_millis(250), || {
                Ok(read(dir, "freezer.state")? == "FROZEN")
            })?;
            if ok {
                return Ok(());
            }
            write(dir, "freezer.state", "THAWED", "freezer")?;
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(fail("stuck in FREEZING".into()))
    }

    fn freezer_state(&self) -> Result<FreezerState> {
        let dir = self.freezer_dir()?;
        Ok(match read(dir, "freezer.state")?.as_str() {
            "FROZEN" => FreezerState::Frozen,
            "FREEZING" => FreezerState::Freezing,
            _ => FreezerState::Thawed,
        })
    }

    fn kill_all(&self, signal: i32) -> Result<()> {
        if signal == libc::SIGKILL {
            if let Some((_, dir)) = &self.unified {
                if dir.join("cgroup.kill").exists() {
                    write(dir, "cgroup.kill", "1", "kill")?;
                    return self.thaw_all();
                }
            }
        }
        // Frozen while signalled, so no process forks past the list; a cgroup frozen
        // before (pause) stays so unless the signal is SIGKILL.
        let can_freeze = self.dirs.get("freezer").is_some_and(|d| d.exists());
        let was_frozen = can_freeze && self.freezer_state()? == FreezerState::Frozen;
        if can_freeze && !was_frozen {
            // Best effort: a task stuck in D state can keep it FREEZING; signal anyway.
            let _ = self.freeze(true);
        }
        let res = super::v2::signal_all(&self.pids()?, signal);
        if signal == libc::SIGKILL {
            self.thaw_all()?;
        } else if can_freeze && !was_frozen {
            self.freeze(false)?;
        }
        res
    }

    fn thaw_all(&self) -> Result<()> {
        if let Some(d) = self.dirs.get("freezer") {
            util::thaw(d, "freezer.state", "THAWED")?;
        }
        match &self.unified {
            Some((_, d)) => util::thaw(d, "cgroup.freeze", "0"),
            None => Ok(()),
        }
    }

    fn wait_empty(&self, timeout: Duration) -> Result<bool> {
        let deadline = std::time::Instant::now() + timeout;
        // Hybrid: the unified directory holds the same processes and has cgroup.events.
        if let Some((_, d)) = &self.unified {
            if !util::wait_unpopulated(d, timeout)? {
                return Ok(false);
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        util::wait_pids_exit(left, || super::Cgroup::pids(self))
    }

    fn stats(&self) -> Result<Stats> {
        let get = |c: &str| self.dirs.get(c).map(PathBuf::as_path);
        let hugetlb = self.hugetlb_dir();
        Ok(stats::read_v1(&stats::V1Dirs {
            cpu: get("cpu"),
            cpuacct: get("cpuacct"),
            memory: get("memory"),
            pids: get("pids"),
            blkio: get("blkio"),
            hugetlb: hugetlb.as_ref().map(|(d, v2)| (d.as_path(), *v2)),
        }))
    }

    fn oom_kill_count(&self) -> Result<u64> {
        let dir = self.dir("memory", "oom events")?;
        Ok(util::keyed_value(dir, "memory.oom_control", "oom_kill").unwrap_or(0))
    }

    fn oom_notifier(&self) -> Result<super::OomNotifier> {
        super::OomNotifier::v1(self.dir("memory", "oom events")?)
    }

    fn destroy(&self) -> Result<()> {
        let mut first_err = None;
        for d in self.all_dirs() {
            if let Err(e) = util::rmdir_tree(&d) {
                first_err.get_or_insert(e);
            }
        }
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = util::remove_created(&mut created) {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }

    fn pids(&self) -> Result<Vec<i32>> {
        match self.procs_dir() {
            Some(d) => util::pids_recursive(d),
            None => Ok(Vec::new()),
        }
    }
}
