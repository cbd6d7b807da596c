//! Static checks of `linux.resources`, run before any cgroup is created.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::{CgroupError, Result};

fn bad(field: impl Into<String>, reason: impl Into<String>) -> CgroupError {
    CgroupError::InvalidField {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A value of `field` that could not be read, with the parser's error.
fn unreadable(field: String, source: ParseError) -> CgroupError {
    CgroupError::Parse { field, source }
}

/// `-1` means unlimited; any other negative value is refused.
fn limit(field: &str, v: Option<i64>) -> Result<()> {
    match v {
        Some(v) if v < -1 => Err(bad(
            field,
            format!("must be >= 0 or -1 (unlimited), got {v}"),
        )),
        _ => Ok(()),
    }
}

/// Checks `resources` without touching the host. Every error names the
/// offending field, e.g. `linux.resources.cpu.period: must be > 0`.
pub fn validate(resources: &LinuxResources) -> Result<()> {
    const R: &str = "linux.resources";
    if let Some(m) = resources.memory() {
        validate_memory(m)?;
    }
    if let Some(c) = resources.cpu() {
        validate_cpu(c)?;
    }
    if let Some(p) = resources.pids() {
        limit(&format!("{R}.pids.limit"), Some(p.limit()))?;
    }
    if let Some(b) = resources.block_io() {
        validate_block_io(b)?;
    }
    for (i, h) in resources.hugepage_limits().iter().flatten().enumerate() {
        let f = format!("{R}.hugepageLimits[{i}]");
        parse_page_size(h.page_size()).map_err(|e| unreadable(format!("{f}.pageSize"), e))?;
        if h.limit() < 0 {
            return Err(bad(
                format!("{f}.limit"),
                format!("must be >= 0, got {}", h.limit()),
            ));
        }
    }
    if let Some(n) = resources.network() {
        for (i, p) in n.priorities().iter().flatten().enumerate() {
            if p.name().is_empty() || p.name().contains(['/', ' ']) {
                return Err(bad(
                    format!("{R}.network.priorities[{i}].name"),
                    format!("invalid interface name {:?}", p.name()),
                ));
            }
        }
    }
    for dev in resources.rdma().iter().flat_map(|m| m.keys()) {
        if dev.is_empty() || dev.contains([' ', '\n']) {
            return Err(bad(
                format!("{R}.rdma"),
                format!("invalid device name {dev:?}"),
            ));
        }
    }
    for key in resources.unified().iter().flat_map(|m| m.keys()) {
        validate_unified_key(key)?;
    }
    for (i, d) in resources.devices().iter().flatten().enumerate() {
        validate_device_rule(i, d)?;
    }
    Ok(())
}

/// `linux.resources.memory`.
fn validate_memory(m: &oci_spec::runtime::LinuxMemory) -> Result<()> {
    const R: &str = "linux.resources";
    limit(&format!("{R}.memory.limit"), m.limit())?;
    limit(&format!("{R}.memory.reservation"), m.reservation())?;
    limit(&format!("{R}.memory.swap"), m.swap())?;
    limit(&format!("{R}.memory.kernel"), m.kernel())?;
    limit(&format!("{R}.memory.kernelTCP"), m.kernel_tcp())?;
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(bad(
                format!("{R}.memory.swappiness"),
                format!("must be between 0 and 100, got {s}"),
            ));
        }
    }
    if let (Some(l), Some(s)) = (m.limit(), m.swap()) {
        if l > 0 && s > 0 && s < l {
            return Err(bad(
                format!("{R}.memory.swap"),
                format!("is memory+swap and must be >= memory.limit ({l}), got {s}"),
            ));
        }
    }
    Ok(())
}

/// `linux.resources.cpu`.
fn validate_cpu(c: &oci_spec::runtime::LinuxCpu) -> Result<()> {
    const R: &str = "linux.resources";
    if c.period() == Some(0) {
        return Err(bad(format!("{R}.cpu.period"), "must be > 0"));
    }
    if let Some(q) = c.quota() {
        if q < -1 {
            return Err(bad(
                format!("{R}.cpu.quota"),
                format!("must be > 0, or -1 (unlimited), got {q}"),
            ));
        }
    }
    limit(&format!("{R}.cpu.realtimeRuntime"), c.realtime_runtime())?;
    if c.realtime_period() == Some(0) {
        return Err(bad(format!("{R}.cpu.realtimePeriod"), "must be > 0"));
    }
    if let Some(s) = c.shares() {
        if s != 0 && !(2..=262_144).contains(&s) {
            return Err(bad(
                format!("{R}.cpu.shares"),
                format!("must be between 2 and 262144, got {s}"),
            ));
        }
    }
    if let Some(i) = c.idle() {
        if i != 0 && i != 1 {
            return Err(bad(
                format!("{R}.cpu.idle"),
                format!("must be 0 or 1, got {i}"),
            ));
        }
    }
    if let Some(s) = c.cpus() {
        parse_list(s).map_err(|e| unreadable(format!("{R}.cpu.cpus"), e))?;
    }
    if let Some(s) = c.mems() {
        parse_list(s).map_err(|e| unreadable(format!("{R}.cpu.mems"), e))?;
    }
    Ok(())
}

/// `linux.resources.blockIO`.
fn validate_block_io(b: &oci_spec::runtime::LinuxBlockIo) -> Result<()> {
    const R: &str = "linux.resources";
    for (name, w) in [("weight", b.weight()), ("leafWeight", b.leaf_weight())] {
        if let Some(w) = w {
            if w != 0 && !(10..=1000).contains(&w) {
                return Err(bad(
                    format!("{R}.blockIO.{name}"),
                    format!("must be between 10 and 1000, got {w}"),
                ));
            }
        }
    }
    for (i, d) in b.weight_device().iter().flatten().enumerate() {
        let f = format!("{R}.blockIO.weightDevice[{i}]");
        dev_numbers(&f, d.major(), d.minor())?;
        for w in [d.weight(), d.leaf_weight()].into_iter().flatten() {
            if w != 0 && !(10..=1000).contains(&w) {
                return Err(bad(
                    f,
                    format!("weight must be between 10 and 1000, got {w}"),
                ));
            }
        }
    }
    for (name, list) in [
        ("throttleReadBpsDevice", b.throttle_read_bps_device()),
        ("throttleWriteBpsDevice", b.throttle_write_bps_device()),
        ("throttleReadIOPSDevice", b.throttle_read_iops_device()),
        ("throttleWriteIOPSDevice", b.throttle_write_iops_device()),
    ] {
        for (i, d) in list.iter().flatten().enumerate() {
            dev_numbers(&format!("{R}.blockIO.{name}[{i}]"), d.major(), d.minor())?;
        }
    }
    Ok(())
}

fn dev_numbers(field: &str, major: i64, minor: i64) -> Result<()> {
    if major < 0 || minor < 0 || major > u32::MAX as i64 || minor > u32::MAX as i64 {
        return Err(bad(field, format!("invalid device number {major}:{minor}")));
    }
    Ok(())
}

/// Controllers whose interface files may appear in `linux.resources.unified`.
const UNIFIED_PREFIXES: &[&str] = &[
    "cgroup", "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc",
];

/// Checks one `unified` key: a plain `<controller>.<file>` name of a known
/// cgroup v2 controller, no path separators.
pub fn validate_unified_key(key: &str) -> Result<()> {
    let field = format!("linux.resources.unified[{key:?}]");
    if key.contains('/') || key.contains('\0') || key.starts_with('.') {
        return Err(bad(field, "must be a file name, not a path"));
    }
    let Some((ctl, rest)) = key.split_once('.') else {
        return Err(bad(field, "must be of the form <controller>.<file>"));
    };
    if rest.is_empty() || !UNIFIED_PREFIXES.contains(&ctl) {
        return Err(bad(
            field,
            format!("unknown cgroup v2 interface file (controller {ctl:?} is not one of {UNIFIED_PREFIXES:?})"),
        ));
    }
    if matches!(
        key,
        "cgroup.procs"
            | "cgroup.threads"
            | "cgroup.subtree_control"
            | "cgroup.kill"
            | "cgroup.freeze"
    ) {
        return Err(bad(field, "is managed by the runtime and cannot be set"));
    }
    Ok(())
}

fn validate_device_rule(i: usize, d: &LinuxDeviceCgroup) -> Result<()> {
    let f = format!("linux.resources.devices[{i}]");
    match d.typ() {
        None | Some(LinuxDeviceType::A) | Some(LinuxDeviceType::B) | Some(LinuxDeviceType::C) => {}
        Some(t) => {
            return Err(bad(
                format!("{f}.type"),
                format!("must be \"a\", \"b\" or \"c\", got {:?}", t.as_str()),
            ))
        }
    }
    let access = d.access().as_deref().unwrap_or("rwm");
    let ok = !access.is_empty()
        && access.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
        && access.len() <= 3
        && !(access.matches('r').count() > 1
            || access.matches('w').count() > 1
            || access.matches('m').count() > 1);
    if !ok {
        return Err(bad(
            format!("{f}.access"),
            format!("must be a combination of \"r\", \"w\", \"m\", got {access:?}"),
        ));
    }
    for (name, v) in [("major", d.major()), ("minor", d.minor())] {
        if let Some(v) = v {
            if v < -1 || v > u32::MAX as i64 {
                return Err(bad(
                    format!("{f}.{name}"),
                    format!("invalid device number {v}"),
                ));
            }
        }
    }
    Ok(())
}

/// Why a value of a `linux.resources` field (a cpu list, a hugepage size) or an
/// `org.systemd.property.*` annotation could not be read. The field is named by the
/// [`CgroupError::Parse`] that carries it.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// An item of a cpu or node list is not a number.
    #[error("{list:?} is not a list like \"0-3,5\" ({item:?} is not a number)")]
    ListItem {
        /// The whole list.
        list: String,
        /// The item.
        item: String,
        /// The number's parse error.
        #[source]
        source: std::num::ParseIntError,
    },
    /// A range of a list ends before it starts.
    #[error("{list:?}: range {start}-{end} is reversed")]
    ReversedRange {
        /// The whole list.
        list: String,
        /// The range's first number.
        start: u32,
        /// The range's last number.
        end: u32,
    },
    /// A range of a list has more than 65,537 numbers.
    #[error("{list:?}: range {start}-{end} is too large")]
    LargeRange {
        /// The whole list.
        list: String,
        /// The range's first number.
        start: u32,
        /// The range's last number.
        end: u32,
    },
    /// Not a hugepage size.
    #[error("{0:?} is not a size like \"2MB\" or \"1GB\"")]
    PageSize(String),
    /// An annotation's GVariant text.
    #[error(transparent)]
    GVariant(#[from] super::systemd::GVariantError),
}

/// Parses a cpu or memory-node list such as `0-3,5,7-8`.
pub fn parse_list(s: &str) -> std::result::Result<Vec<u32>, ParseError> {
    let s = s.trim();
    let mut out = Vec::new();
    if s.is_empty() {
        return Ok(out);
    }
    for part in s.split(',') {
        let num = |t: &str| {
            t.trim()
                .parse::<u32>()
                .map_err(|source| ParseError::ListItem {
                    list: s.into(),
                    item: t.into(),
                    source,
                })
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (start, end) = (num(a)?, num(b)?);
                let list = s.into();
                if start > end {
                    return Err(ParseError::ReversedRange { list, start, end });
                }
                if end - start > 65_536 {
                    return Err(ParseError::LargeRange { list, start, end });
                }
                out.extend(start..=end);
            }
            None => out.push(num(part)?),
        }
    }
    Ok(out)
}

/// Parses a hugepage size like `2MB`, `1GB` or `64KB` into bytes.
pub fn parse_page_size(s: &str) -> std::result::Result<u64, ParseError> {
    let err = || ParseError::PageSize(s.into());
    let num = s.strip_suffix('B').ok_or_else(err)?;
    let (digits, mult) = match num.chars().last() {
        Some('K') => (&num[..num.len() - 1], 1u64 << 10),
        Some('M') => (&num[..num.len() - 1], 1 << 20),
        Some('G') => (&num[..num.len() - 1], 1 << 30),
        Some('T') => (&num[..num.len() - 1], 1 << 40),
        _ => return Err(err()),
    };
    let n: u64 = digits.parse().map_err(|_| err())?;
    if n == 0 {
        return Err(err());
    }
    n.checked_mul(mult).ok_or_else(err)
}
