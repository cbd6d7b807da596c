//! Pure cgroup v2 backend (`/sys/fs/cgroup` is a cgroup2 mount).

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use oci_spec::runtime::{LinuxRdma, LinuxResources};

use super::detect::{Layout, CGROUP_ROOT};
use super::util::{self, read, read_opt, write};
use super::{devices, stats, sys, CgroupError, FreezerState, Result, Stats};

/// Manager for one cgroup path on a pure v2 host.
pub struct V2 {
    path: String,
    root: PathBuf,
    dir: PathBuf,
    created: Mutex<Vec<PathBuf>>,
}

/// `rdma.max` line for one device.
pub(crate) fn rdma_line(dev: &str, l: &LinuxRdma) -> String {
    let n = |v: Option<u32>| v.map_or("max".to_string(), |v| v.to_string());
    format!(
        "{dev} hca_handle={} hca_object={}",
        n(l.hca_handles()),
        n(l.hca_objects())
    )
}

/// Sends `signal` to each pid; a pid that is already gone is not an error.
pub(crate) fn signal_all(pids: &[i32], signal: i32) -> Result<()> {
    for &pid in pids {
        let sig = nix::sys::signal::Signal::try_from(signal)
            .map_err(|source| CgroupError::BadSignal { signal, source })?;
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(source) => {
                return Err(CgroupError::Signal {
                    pid,
                    signal,
                    source,
                })
            }
        }
    }
    Ok(())
}

fn unsupported(field: &str, what: &str) -> CgroupError {
    CgroupError::Unsupported {
        field: field.to_string(),
        what: format!("{what} (cgroup v2)"),
    }
}

impl V2 {
    pub(crate) fn new(path: &str) -> Self {
        let root = PathBuf::from(CGROUP_ROOT);
        V2 {
            path: path.to_string(),
            dir: root.join(path.trim_start_matches('/')),
            root,
            created: Mutex::new(Vec::new()),
        }
    }

    /// Enables every controller the root offers in each ancestor's
    /// `cgroup.subtree_control` (one at a time, so one unavailable controller
    /// does not block the others; a missing one surfaces later as a missing
    /// file naming the field).
    fn enable_controllers(&self) -> Result<()> {
        let avail = read(&self.root, "cgroup.controllers")?;
        let Ok(rel) = self.dir.strip_prefix(&self.root) else {
            return Ok(());
        };
        let mut cur = self.root.clone();
        for comp in rel.components() {
            let enabled = read_opt(&cur, "cgroup.subtree_control").unwrap_or_default();
            let offered = read_opt(&cur, "cgroup.controllers").unwrap_or_else(|| avail.clone());
            for c in offered.split_whitespace() {
                if !enabled.split_whitespace().any(|e| e == c) {
                    let _ = std::fs::write(cur.join("cgroup.subtree_control"), format!("+{c}"));
                }
            }
            cur.push(comp);
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
            self.apply_devices(&rules)?;
        }
        let Some(r) = r else { return Ok(()) };
        let d = self.dir.as_path();
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
                write(d, "pids.max", &v, "linux.resources.pids.limit")?;
            }
        }
        self.apply_io(r)?;
        for h in r.hugepage_limits().iter().flatten() {
            let f = format!("hugetlb.{}.max", h.page_size());
            write(
                d,
                &f,
                &h.limit().to_string(),
                "linux.resources.hugepageLimits",
            )?;
        }
        if let Some(n) = r.network() {
            if n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                return Err(unsupported(
                    "linux.resources.network",
                    "net_cls/net_prio do not exist",
                ));
            }
        }
        for (dev, l) in r.rdma().iter().flatten() {
            write(d, "rdma.max", &rdma_line(dev, l), "linux.resources.rdma")?;
        }
        for (k, v) in r.unified().iter().flatten() {
            write(d, k, v, &format!("linux.resources.unified[{k:?}]"))?;
        }
        Ok(())
    }

    fn apply_devices(&self, rules: &[devices::Rule]) -> Result<()> {
        let bpf_err = |source| CgroupError::Bpf {
            path: self.dir.clone(),
            source,
        };
        let prog = sys::load_device_prog(&devices::bpf_program(rules)).map_err(bpf_err)?;
        let dirfd = self.dir_fd().map_err(|e| util::io_err(&self.dir, e))?;
        let old = sys::query_device_progs(dirfd.as_fd()).map_err(bpf_err)?;
        sys::attach_device_prog(dirfd.as_fd(), prog.as_fd()).map_err(bpf_err)?;
        for id in old {
            sys::detach_device_prog(dirfd.as_fd(), id).map_err(bpf_err)?;
        }
        Ok(())
    }

    fn dir_fd(&self) -> std::io::Result<OwnedFd> {
        util::open_dir_path(&self.dir)
    }

    fn apply_memory(&self, r: &LinuxResources, updating: bool) -> Result<()> {
        let Some(m) = r.memory() else { return Ok(()) };
        const F: &str = "linux.resources.memory";
        let d = self.dir.as_path();
        let val = |v: i64| {
            if v == -1 {
                "max".to_string()
            } else {
                v.to_string()
            }
        };
        if m.swappiness().is_some() {
            return Err(unsupported(
                &format!("{F}.swappiness"),
                "there is no per-cgroup swappiness",
            ));
        }
        if m.kernel().is_some() || m.kernel_tcp().is_some() {
            return Err(unsupported(
                &format!("{F}.kernel"),
                "kernel memory is not limited separately",
            ));
        }
        if m.use_hierarchy() == Some(false) {
            return Err(unsupported(
                &format!("{F}.useHierarchy"),
                "memory accounting is always hierarchical",
            ));
        }
        if m.disable_oom_killer() == Some(true) {
            return Err(unsupported(
                &format!("{F}.disableOOMKiller"),
                "the OOM killer cannot be disabled",
            ));
        }
        if updating && m.check_before_update() == Some(true) {
            if let Some(l) = m.limit().filter(|l| *l > 0) {
                let usage: u64 = read(d, "memory.current")?.parse().unwrap_or(0);
                if (l as u64) < usage {
                    return Err(CgroupError::InvalidField {
                        field: format!("{F}.limit"),
                        reason: format!(
                            "{l} is below the current usage {usage} (checkBeforeUpdate)"
                        ),
                    });
                }
            }
        }
        if let Some(s) = m.swap() {
            // OCI swap is memory+swap; v2 limits swap alone.
            let limit = m.limit().unwrap_or(0);
            let v = match (s, limit) {
                (-1, _) => "max".to_string(),
                (0, _) => "0".to_string(),
                (_, l) if l <= 0 => {
                    return Err(CgroupError::InvalidField {
                        field: format!("{F}.swap"),
                        reason: "a swap limit needs memory.limit on cgroup v2".into(),
                    })
                }
                (s, l) => (s - l).max(0).to_string(),
            };
            // Set memory.max first so the new pair is consistent.
            if let Some(l) = m.limit() {
                write(d, "memory.max", &val(l), &format!("{F}.limit"))?;
            }
            write(d, "memory.swap.max", &v, &format!("{F}.swap"))?;
        } else if let Some(l) = m.limit() {
            write(d, "memory.max", &val(l), &format!("{F}.limit"))?;
            if l == -1 && d.join("memory.swap.max").exists() {
                write(d, "memory.swap.max", "max", &format!("{F}.swap"))?;
            }
        }
        if let Some(v) = m.reservation() {
            write(d, "memory.low", &val(v), &format!("{F}.reservation"))?;
        }
        Ok(())
    }

    fn apply_cpu(&self, r: &LinuxResources) -> Result<()> {
        let Some(c) = r.cpu() else { return Ok(()) };
        const F: &str = "linux.resources.cpu";
        let d = self.dir.as_path();
        if c.realtime_runtime().is_some_and(|v| v != 0)
            || c.realtime_period().is_some_and(|v| v != 0)
        {
            return Err(unsupported(
                &format!("{F}.realtimeRuntime"),
                "realtime scheduling budgets do not exist",
            ));
        }
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            let w = super::shares_to_weight(s).to_string();
            write(d, "cpu.weight", &w, &format!("{F}.shares"))?;
        }
        let quota = c.quota().filter(|q| *q != 0);
        if quota.is_some() || c.period().is_some() {
            let cur = read_opt(d, "cpu.max").unwrap_or_default();
            let mut it = cur.split_whitespace();
            let cur_quota = it.next().and_then(|q| q.parse::<i64>().ok());
            let cur_period = it
                .next()
                .and_then(|p| p.parse::<u64>().ok())
                .unwrap_or(100_000);
            let v = super::cpu_max(quota.or(cur_quota), c.period().unwrap_or(cur_period));
            write(d, "cpu.max", &v, &format!("{F}.quota"))?;
        }
        if let Some(b) = c.burst() {
            write(d, "cpu.max.burst", &b.to_string(), &format!("{F}.burst"))?;
        }
        if let Some(i) = c.idle() {
            write(d, "cpu.idle", &i.to_string(), &format!("{F}.idle"))?;
        }
        if let Some(s) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            write(d, "cpuset.cpus", s, &format!("{F}.cpus"))?;
        }
        if let Some(s) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            write(d, "cpuset.mems", s, &format!("{F}.mems"))?;
        }
        Ok(())
    }

    fn apply_io(&self, r: &LinuxResources) -> Result<()> {
        let Some(b) = r.block_io() else { return Ok(()) };
        const F: &str = "linux.resources.blockIO";
        let d = self.dir.as_path();
        let bfq = d.join("io.bfq.weight").exists();
        if b.leaf_weight().is_some_and(|w| w != 0) {
            return Err(unsupported(
                &format!("{F}.leafWeight"),
                "there is no leaf weight",
            ));
        }
        if let Some(w) = b.weight().filter(|w| *w != 0) {
            if bfq {
                write(d, "io.bfq.weight", &w.to_string(), &format!("{F}.weight"))?;
            } else {
                let v = format!("default {}", super::blkio_weight_to_io_weight(w));
                write(d, "io.weight", &v, &format!("{F}.weight"))?;
            }
        }
        for wd in b.weight_device().iter().flatten() {
            if let Some(w) = wd.weight() {
                let (file, w) = if bfq {
                    ("io.bfq.weight", u64::from(w))
                } else {
                    ("io.weight", super::blkio_weight_to_io_weight(w))
                };
                let v = format!("{}:{} {w}", wd.major(), wd.minor());
                write(d, file, &v, &format!("{F}.weightDevice"))?;
            }
        }
        for (name, key, list) in [
            (
                "throttleReadBpsDevice",
                "rbps",
                b.throttle_read_bps_device(),
            ),
            (
                "throttleWriteBpsDevice",
                "wbps",
                b.throttle_write_bps_device(),
            ),
            (
                "throttleReadIOPSDevice",
                "riops",
                b.throttle_read_iops_device(),
            ),
            (
                "throttleWriteIOPSDevice",
                "wiops",
                b.throttle_write_iops_device(),
            ),
        ] {
            for t in list.iter().flatten() {
                let v = format!("{}:{} {key}={}", t.major(), t.minor(), t.rate());
                write(d, "io.max", &v, &format!("{F}.{name}"))?;
            }
        }
        Ok(())
    }

    fn wait_frozen(&self, want: bool) -> Result<bool> {
        util::wait_events(&self.dir, "frozen", u64::from(want), Duration::from_secs(5))
    }
}

impl super::Cgroup for V2 {
    fn path(&self) -> &str {
        &self.path
    }

    fn layout(&self) -> Layout {
        Layout::V2
    }

    fn create(&self, resources: Option<&LinuxResources>) -> Result<()> {
        if let Some(r) = resources {
            super::validate(r)?;
        }
        let res = (|| {
            let new = util::mkdir_all(&self.dir)?;
            self.created
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(new);
            self.enable_controllers()?;
            self.apply(resources, true)
        })();
        if let Err(e) = res {
            let _ = super::Cgroup::destroy(self);
            return Err(e);
        }
        Ok(())
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        util::add_pid(&self.dir, pid)
    }

    fn self_join(&self) -> Option<super::SelfJoin> {
        Some(super::SelfJoin {
            into: Some(self.dir_fd().ok()?),
            tasks: Vec::new(),
        })
    }

    fn update(&self, resources: &LinuxResources) -> Result<()> {
        super::validate(resources)?;
        self.apply(Some(resources), false)
    }

    fn freeze(&self, freeze: bool) -> Result<()> {
        write(
            &self.dir,
            "cgroup.freeze",
            if freeze { "1" } else { "0" },
            "freezer",
        )?;
        if self.wait_frozen(freeze)? {
            Ok(())
        } else {
            Err(CgroupError::Freeze {
                path: self.dir.clone(),
                reason: format!("cgroup.events did not report frozen {}", u8::from(freeze)),
            })
        }
    }

    fn freezer_state(&self) -> Result<FreezerState> {
        let want = read(&self.dir, "cgroup.freeze")? == "1";
        let is = util::keyed_value(&self.dir, "cgroup.events", "frozen").unwrap_or(0) == 1;
        Ok(match (want, is) {
            (_, true) => FreezerState::Frozen,
            (true, false) => FreezerState::Freezing,
            (false, false) => FreezerState::Thawed,
        })
    }

    fn kill_all(&self, signal: i32) -> Result<()> {
        let res = (|| {
            if signal == libc::SIGKILL && self.dir.join("cgroup.kill").exists() {
                write(&self.dir, "cgroup.kill", "1", "kill")?;
                return self.thaw_all();
            }
            // Frozen while signalled, so no process forks past the list; a cgroup frozen
            // before (pause) stays so unless the signal is SIGKILL.
            let was_frozen = self.freezer_state()? == FreezerState::Frozen;
            if !was_frozen {
                let _ = self.freeze(true);
            }
            let res = signal_all(&self.pids()?, signal);
            if signal == libc::SIGKILL {
                self.thaw_all()?;
            } else if !was_frozen {
                self.freeze(false)?;
            }
            res
        })();
        // A cgroup that is gone holds nothing to signal: systemd removes an emptied
        // scope's (containerd's CRI then still sends `kill --all`).
        if res.is_err() && !self.dir.exists() {
            return Ok(());
        }
        res
    }

    fn thaw_all(&self) -> Result<()> {
        util::thaw(&self.dir, "cgroup.freeze", "0")
    }

    fn wait_empty(&self, timeout: Duration) -> Result<bool> {
        util::wait_unpopulated(&self.dir, timeout)
    }

    fn stats(&self) -> Result<Stats> {
        Ok(stats::read_v2(&self.dir))
    }

    fn oom_kill_count(&self) -> Result<u64> {
        Ok(util::keyed_value(&self.dir, "memory.events", "oom_kill").unwrap_or(0))
    }

    fn oom_notifier(&self) -> Result<super::OomNotifier> {
        super::OomNotifier::v2(&self.dir)
    }

    fn destroy(&self) -> Result<()> {
        let res = util::rmdir_tree(&self.dir);
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        let parents = util::remove_created(&mut created);
        res.and(parents)
    }

    fn pids(&self) -> Result<Vec<i32>> {
        util::pids_recursive(&self.dir)
    }
}
