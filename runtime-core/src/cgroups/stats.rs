//! Resource usage statistics in the JSON shape of runc's `events --stats`
//! (runc `types/events.go`), read from v1 or v2 files.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::util::{keyed_value, read_keyed, read_opt, read_u64};

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// All statistics of a container's cgroup.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// CPU usage and throttling.
    pub cpu: Cpu,
    /// Memory usage.
    pub memory: Memory,
    /// Number of tasks.
    pub pids: Pids,
    /// Block I/O.
    pub blkio: Blkio,
    /// Hugetlb usage per page size (`2MB`, `1GB`).
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

/// `cpu` section.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// Usage counters.
    pub usage: CpuUsage,
    /// CFS throttling counters.
    pub throttling: Throttling,
}

/// CPU time, in nanoseconds.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// Total CPU time.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
    /// Per-CPU total (v1 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Per-CPU kernel time (v1 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    /// Per-CPU user time (v1 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    /// Kernel-mode time.
    pub kernel: u64,
    /// User-mode time.
    pub user: u64,
}

/// CFS bandwidth throttling.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throttling {
    /// Enforcement periods elapsed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub periods: u64,
    /// Periods in which the group was throttled.
    #[serde(default, rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Total throttled time, ns.
    #[serde(default, rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// `memory` section.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Page cache bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache: u64,
    /// Memory usage.
    pub usage: MemoryEntry,
    /// Memory+swap usage.
    pub swap: MemoryEntry,
    /// Kernel memory usage (v1).
    pub kernel: MemoryEntry,
    /// Kernel TCP buffer usage (v1).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// Raw `memory.stat`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// One memory counter set. Unlimited reads as `u64::MAX`.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryEntry {
    /// Limit in bytes.
    pub limit: u64,
    /// Current usage.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak usage.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    /// Times the limit was hit.
    pub failcnt: u64,
}

/// `pids` section.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pids {
    /// Tasks in the cgroup.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current: u64,
    /// Limit (0 when unlimited).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// One block I/O counter.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlkioEntry {
    /// Device major.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub major: u64,
    /// Device minor.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor: u64,
    /// `Read`, `Write`, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// Value.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value: u64,
}

/// `blkio` section.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blkio {
    /// Bytes transferred.
    #[serde(
        default,
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// I/O operations.
    #[serde(
        default,
        rename = "ioServicedRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

/// Hugetlb usage of one page size.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hugetlb {
    /// Current usage, bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak usage, bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    /// Allocation failures.
    pub failcnt: u64,
}

/// Hugepage sizes of the host in cgroup file notation (`2MB`, `1GB`).
pub fn hugepage_sizes() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(kb) = name
                .strip_prefix("hugepages-")
                .and_then(|s| s.strip_suffix("kB"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            out.push(page_size_name(kb * 1024));
        }
    }
    out.sort();
    out
}

/// Formats a page size in bytes the way cgroup files name it.
pub fn page_size_name(bytes: u64) -> String {
    const K: u64 = 1024;
    if bytes >= K * K * K && bytes.is_multiple_of(K * K * K) {
        format!("{}GB", bytes / (K * K * K))
    } else if bytes >= K * K && bytes.is_multiple_of(K * K) {
        format!("{}MB", bytes / (K * K))
    } else {
        format!("{}KB", bytes / K)
    }
}

fn list_u64(s: Option<String>) -> Vec<u64> {
    s.map(|s| {
        s.split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect()
    })
    .unwrap_or_default()
}

fn mem_entry_v1(dir: &Path, prefix: &str) -> MemoryEntry {
    MemoryEntry {
        limit: read_u64(dir, &format!("{prefix}.limit_in_bytes")),
        usage: read_u64(dir, &format!("{prefix}.usage_in_bytes")),
        max: read_u64(dir, &format!("{prefix}.max_usage_in_bytes")),
        failcnt: read_u64(dir, &format!("{prefix}.failcnt")),
    }
}

fn blkio_v1(dir: &Path, file: &str) -> Vec<BlkioEntry> {
    let mut out = Vec::new();
    for line in read_opt(dir, file).unwrap_or_default().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 {
            continue;
        }
        let Some((ma, mi)) = f[0].split_once(':') else {
            continue;
        };
        out.push(BlkioEntry {
            major: ma.parse().unwrap_or(0),
            minor: mi.parse().unwrap_or(0),
            op: f[1].to_string(),
            value: f[2].parse().unwrap_or(0),
        });
    }
    out
}

/// Directories of the v1 controllers that stats read (any may be absent).
pub struct V1Dirs<'a> {
    /// `cpu` hierarchy dir.
    pub cpu: Option<&'a Path>,
    /// `cpuacct` hierarchy dir.
    pub cpuacct: Option<&'a Path>,
    /// `memory` hierarchy dir.
    pub memory: Option<&'a Path>,
    /// `pids` hierarchy dir.
    pub pids: Option<&'a Path>,
    /// `blkio` hierarchy dir.
    pub blkio: Option<&'a Path>,
    /// Hugetlb dir and whether it is a cgroup2 dir (hybrid).
    pub hugetlb: Option<(&'a Path, bool)>,
}

/// Reads statistics from v1 hierarchies.
pub fn read_v1(d: &V1Dirs<'_>) -> Stats {
    let mut s = Stats::default();
    if let Some(dir) = d.cpuacct {
        s.cpu.usage.total = read_u64(dir, "cpuacct.usage");
        s.cpu.usage.percpu = list_u64(read_opt(dir, "cpuacct.usage_percpu"));
        s.cpu.usage.percpu_kernel = list_u64(read_opt(dir, "cpuacct.usage_percpu_sys"));
        s.cpu.usage.percpu_user = list_u64(read_opt(dir, "cpuacct.usage_percpu_user"));
        let ns_per_tick = 1_000_000_000 / clock_ticks();
        s.cpu.usage.user = keyed_value(dir, "cpuacct.stat", "user").unwrap_or(0) * ns_per_tick;
        s.cpu.usage.kernel = keyed_value(dir, "cpuacct.stat", "system").unwrap_or(0) * ns_per_tick;
    }
    if let Some(dir) = d.cpu {
        s.cpu.throttling.periods = keyed_value(dir, "cpu.stat", "nr_periods").unwrap_or(0);
        s.cpu.throttling.throttled_periods =
            keyed_value(dir, "cpu.stat", "nr_throttled").unwrap_or(0);
        s.cpu.throttling.throttled_time =
            keyed_value(dir, "cpu.stat", "throttled_time").unwrap_or(0);
    }
    if let Some(dir) = d.memory {
        s.memory.raw = read_keyed(dir, "memory.stat").into_iter().collect();
        s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
        s.memory.usage = mem_entry_v1(dir, "memory");
        s.memory.swap = mem_entry_v1(dir, "memory.memsw");
        s.memory.kernel = mem_entry_v1(dir, "memory.kmem");
        s.memory.kernel_tcp = mem_entry_v1(dir, "memory.kmem.tcp");
    }
    if let Some(dir) = d.pids {
        s.pids = pids(dir);
    }
    if let Some(dir) = d.blkio {
        s.blkio.io_service_bytes_recursive =
            blkio_v1(dir, "blkio.throttle.io_service_bytes_recursive");
        s.blkio.io_serviced_recursive = blkio_v1(dir, "blkio.throttle.io_serviced_recursive");
    }
    if let Some((dir, v2)) = d.hugetlb {
        s.hugetlb = if v2 { hugetlb_v2(dir) } else { hugetlb_v1(dir) };
    }
    s
}

fn pids(dir: &Path) -> Pids {
    let limit = read_u64(dir, "pids.max");
    Pids {
        current: read_u64(dir, "pids.current"),
        limit: if limit == u64::MAX { 0 } else { limit },
    }
}

fn hugetlb_v1(dir: &Path) -> BTreeMap<String, Hugetlb> {
    hugepage_sizes()
        .into_iter()
        .map(|sz| {
            let h = Hugetlb {
                usage: read_u64(dir, &format!("hugetlb.{sz}.usage_in_bytes")),
                max: read_u64(dir, &format!("hugetlb.{sz}.max_usage_in_bytes")),
                failcnt: read_u64(dir, &format!("hugetlb.{sz}.failcnt")),
            };
            (sz, h)
        })
        .collect()
}

fn hugetlb_v2(dir: &Path) -> BTreeMap<String, Hugetlb> {
    hugepage_sizes()
        .into_iter()
        .map(|sz| {
            let h = Hugetlb {
                usage: read_u64(dir, &format!("hugetlb.{sz}.current")),
                max: 0,
                failcnt: keyed_value(dir, &format!("hugetlb.{sz}.events"), "max").unwrap_or(0),
            };
            (sz, h)
        })
        .collect()
}

/// Reads statistics from a cgroup v2 directory.
pub fn read_v2(dir: &Path) -> Stats {
    let mut s = Stats::default();
    let cpu = |k: &str| keyed_value(dir, "cpu.stat", k).unwrap_or(0);
    s.cpu.usage.total = cpu("usage_usec") * 1000;
    s.cpu.usage.user = cpu("user_usec") * 1000;
    s.cpu.usage.kernel = cpu("system_usec") * 1000;
    s.cpu.throttling.periods = cpu("nr_periods");
    s.cpu.throttling.throttled_periods = cpu("nr_throttled");
    s.cpu.throttling.throttled_time = cpu("throttled_usec") * 1000;

    s.memory.raw = read_keyed(dir, "memory.stat").into_iter().collect();
    s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
    s.memory.usage = MemoryEntry {
        limit: read_u64(dir, "memory.max"),
        usage: read_u64(dir, "memory.current"),
        max: read_u64(dir, "memory.peak"),
        failcnt: keyed_value(dir, "memory.events", "max").unwrap_or(0),
    };
    // As runc: swap is reported as memory+swap, like v1's memsw.
    let swap_cur = read_u64(dir, "memory.swap.current");
    let swap_max = read_u64(dir, "memory.swap.max");
    s.memory.swap = MemoryEntry {
        limit: swap_max.saturating_add(s.memory.usage.limit),
        usage: swap_cur + s.memory.usage.usage,
        max: 0,
        failcnt: keyed_value(dir, "memory.swap.events", "fail").unwrap_or(0),
    };
    s.pids = pids(dir);
    for line in read_opt(dir, "io.stat").unwrap_or_default().lines() {
        let mut it = line.split_whitespace();
        let Some((ma, mi)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (major, minor) = (ma.parse().unwrap_or(0), mi.parse().unwrap_or(0));
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let value = v.parse().unwrap_or(0);
            let (list, op) = match k {
                "rbytes" => (&mut s.blkio.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut s.blkio.io_service_bytes_recursive, "Write"),
                "rios" => (&mut s.blkio.io_serviced_recursive, "Read"),
                "wios" => (&mut s.blkio.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    s.hugetlb = hugetlb_v2(dir);
    s
}

fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|v| *v > 0)
        .map(|v| v as u64)
        .unwrap_or(100)
}
