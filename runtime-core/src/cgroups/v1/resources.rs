//! v1 memory, cpu/cpuset and blkio resources.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::super::util::{read, write};
use super::super::{CgroupError, Result};
use super::V1;

impl V1 {
    pub(super) fn apply_memory(&self, r: &LinuxResources, updating: bool) -> Result<()> {
        let Some(m) = r.memory() else { return Ok(()) };
        const F: &str = "linux.resources.memory";
        let asked = m.limit().is_some()
            || m.swap().is_some()
            || m.reservation().is_some()
            || m.kernel().is_some()
            || m.kernel_tcp().is_some()
            || m.swappiness().is_some()
            || m.disable_oom_killer().is_some()
            || m.use_hierarchy().is_some();
        if !asked {
            return Ok(());
        }
        let dir = self.dir("memory", F)?;
        let val = |v: i64| v.to_string();
        if updating && m.check_before_update() == Some(true) {
            if let Some(l) = m.limit().filter(|l| *l > 0) {
                let usage: u64 = read(dir, "memory.usage_in_bytes")?.parse().unwrap_or(0);
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
        write_limit_and_swap(dir, m.limit(), m.swap())?;
        if let Some(v) = m.reservation() {
            write(
                dir,
                "memory.soft_limit_in_bytes",
                &val(v),
                &format!("{F}.reservation"),
            )?;
        }
        if let Some(v) = m.kernel() {
            write(
                dir,
                "memory.kmem.limit_in_bytes",
                &val(v),
                &format!("{F}.kernel"),
            )?;
        }
        if let Some(v) = m.kernel_tcp() {
            write(
                dir,
                "memory.kmem.tcp.limit_in_bytes",
                &val(v),
                &format!("{F}.kernelTCP"),
            )?;
        }
        if let Some(v) = m.swappiness() {
            write(
                dir,
                "memory.swappiness",
                &v.to_string(),
                &format!("{F}.swappiness"),
            )?;
        }
        if let Some(v) = m.disable_oom_killer() {
            let s = if v { "1" } else { "0" };
            write(
                dir,
                "memory.oom_control",
                s,
                &format!("{F}.disableOOMKiller"),
            )?;
        }
        if let Some(v) = m.use_hierarchy() {
            let s = if v { "1" } else { "0" };
            let f = format!("{F}.useHierarchy");
            write(dir, "memory.use_hierarchy", s, &f)?;
        }
        Ok(())
    }

    pub(super) fn apply_cpu(&self, r: &LinuxResources) -> Result<()> {
        let Some(c) = r.cpu() else { return Ok(()) };
        const F: &str = "linux.resources.cpu";
        let cpu = || self.dir("cpu", F);
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            write(cpu()?, "cpu.shares", &s.to_string(), &format!("{F}.shares"))?;
        }
        if let Some(p) = c.period() {
            write(
                cpu()?,
                "cpu.cfs_period_us",
                &p.to_string(),
                &format!("{F}.period"),
            )?;
        }
        if let Some(q) = c.quota().filter(|q| *q != 0) {
            write(
                cpu()?,
                "cpu.cfs_quota_us",
                &q.to_string(),
                &format!("{F}.quota"),
            )?;
        }
        if let Some(b) = c.burst() {
            write(
                cpu()?,
                "cpu.cfs_burst_us",
                &b.to_string(),
                &format!("{F}.burst"),
            )?;
        }
        if c.realtime_period().is_some() || c.realtime_runtime().is_some() {
            // A group can only get an RT budget its parent has: give the same
            // budget to the parents this manager created (outermost first).
            let leaf = cpu()?;
            let created = self
                .created
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let mut targets: Vec<&Path> = created
                .iter()
                .map(PathBuf::as_path)
                .filter(|d| leaf.starts_with(d) && *d != leaf)
                .collect();
            targets.push(leaf);
            for d in targets {
                if let Some(p) = c.realtime_period() {
                    let f = format!("{F}.realtimePeriod");
                    write(d, "cpu.rt_period_us", &p.to_string(), &f)?;
                }
                if let Some(rt) = c.realtime_runtime() {
                    let f = format!("{F}.realtimeRuntime");
                    write(d, "cpu.rt_runtime_us", &rt.to_string(), &f)?;
                }
            }
        }
        if let Some(i) = c.idle() {
            write(cpu()?, "cpu.idle", &i.to_string(), &format!("{F}.idle"))?;
        }
        if let Some(s) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            let f = format!("{F}.cpus");
            write(self.dir("cpuset", &f)?, "cpuset.cpus", s, &f)?;
        }
        if let Some(s) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            let f = format!("{F}.mems");
            write(self.dir("cpuset", &f)?, "cpuset.mems", s, &f)?;
        }
        Ok(())
    }

    pub(super) fn apply_blkio(&self, r: &LinuxResources) -> Result<()> {
        let Some(b) = r.block_io() else { return Ok(()) };
        const F: &str = "linux.resources.blockIO";
        let dir = || self.dir("blkio", F);
        // The CFQ files, or BFQ's where CFQ is gone.
        let weight_file = |d: &Path, cfq: &'static str, bfq: &'static str| {
            if d.join(cfq).exists() || !d.join(bfq).exists() {
                cfq
            } else {
                bfq
            }
        };
        if let Some(w) = b.weight().filter(|w| *w != 0) {
            let d = dir()?;
            let file = weight_file(d, "blkio.weight", "blkio.bfq.weight");
            write(d, file, &w.to_string(), &format!("{F}.weight"))?;
        }
        if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
            write(
                dir()?,
                "blkio.leaf_weight",
                &w.to_string(),
                &format!("{F}.leafWeight"),
            )?;
        }
        for wd in b.weight_device().iter().flatten() {
            let d = dir()?;
            if let Some(w) = wd.weight() {
                let file = weight_file(d, "blkio.weight_device", "blkio.bfq.weight_device");
                let v = format!("{}:{} {w}", wd.major(), wd.minor());
                write(d, file, &v, &format!("{F}.weightDevice"))?;
            }
            if let Some(w) = wd.leaf_weight() {
                let v = format!("{}:{} {w}", wd.major(), wd.minor());
                write(
                    d,
                    "blkio.leaf_weight_device",
                    &v,
                    &format!("{F}.weightDevice"),
                )?;
            }
        }
        for (name, file, list) in [
            (
                "throttleReadBpsDevice",
                "blkio.throttle.read_bps_device",
                b.throttle_read_bps_device(),
            ),
            (
                "throttleWriteBpsDevice",
                "blkio.throttle.write_bps_device",
                b.throttle_write_bps_device(),
            ),
            (
                "throttleReadIOPSDevice",
                "blkio.throttle.read_iops_device",
                b.throttle_read_iops_device(),
            ),
            (
                "throttleWriteIOPSDevice",
                "blkio.throttle.write_iops_device",
                b.throttle_write_iops_device(),
            ),
        ] {
            for t in list.iter().flatten() {
                let v = format!("{}:{} {}", t.major(), t.minor(), t.rate());
                write(dir()?, file, &v, &format!("{F}.{name}"))?;
            }
        }
        Ok(())
    }
}

/// `memory.limit_in_bytes` and `memory.memsw.limit_in_bytes` (`swap`, memory+swap on v1),
/// in the order that keeps memsw >= limit at every step.
fn write_limit_and_swap(dir: &Path, limit: Option<i64>, swap: Option<i64>) -> Result<()> {
    const F: &str = "linux.resources.memory";
    let write_limit = |l: i64| {
        write(
            dir,
            "memory.limit_in_bytes",
            &l.to_string(),
            &format!("{F}.limit"),
        )
    };
    let write_swap = |s: i64| {
        let f = format!("{F}.swap");
        write(dir, "memory.memsw.limit_in_bytes", &s.to_string(), &f)
    };
    let has_memsw = dir.join("memory.memsw.limit_in_bytes").exists();
    let swap = swap.filter(|s| *s != -1 || has_memsw);
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // memsw must stay >= limit at every step: raise memsw first
            // when the new limit exceeds the current memsw.
            let cur: i64 = read(dir, "memory.memsw.limit_in_bytes")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(i64::MAX, |v| v.min(i64::MAX as u64) as i64);
            if s == -1 || l == -1 || l > cur {
                write_swap(s)?;
                write_limit(l)
            } else {
                write_limit(l)?;
                write_swap(s)
            }
        }
        (Some(l), None) => write_limit(l),
        (None, Some(s)) => write_swap(s),
        (None, None) => Ok(()),
    }
}
