//! The process fields beyond user and capabilities: `ioPriority`, `scheduler`,
//! `execCPUAffinity` (config.md "Process"), `linux.personality`, `linux.intelRdt`
//! (config-linux.md) and the LSM labels `process.apparmorProfile`,
//! `process.selinuxLabel`, `linux.mountLabel`. Checked in the runtime before anything
//! is created; applied in the init.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{IOPriorityClass, LinuxSchedulerFlag, LinuxSchedulerPolicy, Process, Spec};

use super::{sys, ListError, SecurityError};
use crate::log::Logger;
use crate::sys::SchedAttr;

/// The prepared extra fields of the container process.
#[derive(Debug, Clone, Default)]
pub struct ProcessAttrs {
    ioprio: Option<i32>,
    sched: Option<SchedAttr>,
    personality: Option<u64>,
    apparmor: Option<String>,
    selinux: Option<String>,
}

fn invalid(field: &str, msg: impl Into<String>) -> SecurityError {
    SecurityError::Invalid {
        field: field.to_string(),
        reason: msg.into(),
    }
}

fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> SecurityError {
    SecurityError::Unsupported {
        field: field.into(),
        reason: reason.into(),
    }
}

/// True when AppArmor is enabled on this host.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.starts_with('Y'))
}

/// True when SELinux is enabled on this host (selinuxfs mounted).
pub fn selinux_enabled() -> bool {
    const SELINUX_MAGIC: libc::__fsword_t = 0xf97c_ff8c;
    nix::sys::statfs::statfs("/sys/fs/selinux")
        .is_ok_and(|s| s.filesystem_type().0 == SELINUX_MAGIC)
}

/// Refuses `linux.intelRdt`: resctrl is not implemented, and a host without a resctrl
/// filesystem could not honour it anyway.
pub fn check_intel_rdt(spec: &Spec) -> Result<(), SecurityError> {
    if spec
        .linux()
        .as_ref()
        .and_then(|l| l.intel_rdt().as_ref())
        .is_none()
    {
        return Ok(());
    }
    const RDTGROUP_SUPER_MAGIC: libc::__fsword_t = 0x0765_5821;
    let mounted = nix::sys::statfs::statfs("/sys/fs/resctrl")
        .is_ok_and(|s| s.filesystem_type().0 == RDTGROUP_SUPER_MAGIC);
    Err(if mounted {
        unsupported("linux.intelRdt", "Intel RDT is not supported yet")
    } else {
        unsupported(
            "linux.intelRdt",
            "this host has no resctrl filesystem at /sys/fs/resctrl (no Intel RDT support, or not mounted)",
        )
    })
}

/// Parses a CPU list (`0-3,7`) as `execCPUAffinity` gives it.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, ListError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let cpu = |t: &str| {
            t.trim().parse::<usize>().map_err(|source| ListError::Cpu {
                item: part.into(),
                source,
            })
        };
        let (a, b) = (cpu(a)?, cpu(b)?);
        if a > b || b >= libc::CPU_SETSIZE as usize {
            return Err(ListError::CpuRange { item: part.into() });
        }
        out.extend(a..=b);
    }
    Ok(out)
}

/// A CPU list of `field` that could not be read.
fn bad_list(field: &str, source: ListError) -> SecurityError {
    SecurityError::List {
        field: field.into(),
        source,
    }
}

/// Pins the calling process to the CPU list `cpus` (`execCPUAffinity.initial` before
/// joining the cgroup, `final` after, for processes exec'd into a container).
pub fn set_cpu_affinity(field: &str, cpus: &str) -> Result<(), SecurityError> {
    let list = parse_cpu_list(cpus).map_err(|e| bad_list(field, e))?;
    crate::sys::sched_setaffinity(&list).map_err(|e| SecurityError::Sys {
        what: "process.execCPUAffinity",
        source: crate::rootfs::ErrnoText(e),
    })
}

/// config.md names two scheduler flags differently from oci-spec's serde names
/// (`SCHED_FLAG_RESET_ON_FORK`, `SCHED_FLAG_DL_OVERRUN`): rewrites them in a `process`
/// document before it is parsed. True when something was rewritten.
pub fn spec_sched_flag_names(process: &mut serde_json::Value) -> bool {
    let Some(flags) = process
        .pointer_mut("/scheduler/flags")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return false;
    };
    let mut changed = false;
    for f in flags {
        let to = match f.as_str() {
            Some("SCHED_FLAG_RESET_ON_FORK") => "SCHED_RESET_ON_FORK",
            Some("SCHED_FLAG_DL_OVERRUN") => "SCHED_FLAG_D_L_OVERRUN",
            _ => continue,
        };
        *f = serde_json::Value::String(to.into());
        changed = true;
    }
    changed
}

fn sched_attr(s: &oci_spec::runtime::Scheduler) -> Result<SchedAttr, SecurityError> {
    use LinuxSchedulerPolicy as P;
    let policy = match s.policy() {
        P::SchedOther => libc::SCHED_OTHER,
        P::SchedFifo => libc::SCHED_FIFO,
        P::SchedRr => libc::SCHED_RR,
        P::SchedBatch => libc::SCHED_BATCH,
        P::SchedIso => 4,
        P::SchedIdle => libc::SCHED_IDLE,
        P::SchedDeadline => 6,
    } as u32;
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(invalid(
            "process.scheduler.nice",
            format!("{nice} is not in -20..19"),
        ));
    }
    let prio = s.priority().unwrap_or(0);
    let realtime = matches!(s.policy(), P::SchedFifo | P::SchedRr);
    if realtime && !(1..=99).contains(&prio) {
        return Err(invalid(
            "process.scheduler.priority",
            format!("{prio} is not in 1..99 for {}", s.policy()),
        ));
    }
    if !realtime && prio != 0 {
        return Err(invalid(
            "process.scheduler.priority",
            format!("must be 0 for {}", s.policy()),
        ));
    }
    let deadline = matches!(s.policy(), P::SchedDeadline);
    if deadline && (s.runtime().is_none() || s.deadline().is_none()) {
        return Err(invalid(
            "process.scheduler",
            "SCHED_DEADLINE needs runtime and deadline",
        ));
    }
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        use LinuxSchedulerFlag as F;
        flags |= match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        };
    }
    Ok(SchedAttr {
        policy,
        flags,
        nice,
        priority: prio as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        ..Default::default()
    })
}

impl ProcessAttrs {
    /// Checks the fields; LSM labels are kept only when that LSM is enabled, otherwise
    /// skipped with a debug line on `log`.
    pub fn from_spec(spec: &Spec, log: &Logger) -> Result<ProcessAttrs, SecurityError> {
        check_intel_rdt(spec)?;
        let mut out = ProcessAttrs::default();
        if let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
            if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
                return Err(unsupported(
                    "linux.personality.flags",
                    "personality flags are not supported",
                ));
            }
            out.personality = Some(match p.domain() {
                oci_spec::runtime::LinuxPersonalityDomain::PerLinux => 0x0000,
                oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
            });
        }
        let mount_label = spec
            .linux()
            .as_ref()
            .and_then(|l| l.mount_label().as_ref())
            .filter(|l| !l.is_empty());
        if let Some(label) = mount_label {
            if selinux_enabled() {
                return Err(unsupported(
                    format!("linux.mountLabel {label:?}"),
                    "SELinux mount labels are not supported yet",
                ));
            }
            log.debug(&format!(
                "linux.mountLabel {label:?} ignored: SELinux is not enabled on this host"
            ));
        }
        if let Some(p) = spec.process() {
            out.fill_process(p, log)?;
        }
        Ok(out)
    }

    /// The fields of a process exec'd into a container created from `spec`: the
    /// container-wide personality, the rest from `p`.
    #[allow(dead_code)] // never called (exec builds its attributes itself): issue 18 point 6
    pub fn for_exec(spec: &Spec, p: &Process, log: &Logger) -> Result<ProcessAttrs, SecurityError> {
        let mut out = ProcessAttrs::from_spec_linux_only(spec, log)?;
        out.fill_process(p, log)?;
        Ok(out)
    }

    fn from_spec_linux_only(spec: &Spec, log: &Logger) -> Result<ProcessAttrs, SecurityError> {
        let mut s = spec.clone();
        s.set_process(None);
        ProcessAttrs::from_spec(&s, log)
    }

    fn fill_process(&mut self, p: &Process, log: &Logger) -> Result<(), SecurityError> {
        let out = self;
        if let Some(io) = p.io_priority() {
            let prio = io.priority();
            if !(0..=7).contains(&prio) {
                return Err(invalid(
                    "process.ioPriority.priority",
                    format!("{prio} is not in 0..7"),
                ));
            }
            let class = match io.class() {
                IOPriorityClass::IoprioClassRt => 1,
                IOPriorityClass::IoprioClassBe => 2,
                IOPriorityClass::IoprioClassIdle => 3,
            };
            out.ioprio = Some((class << 13) | prio as i32);
        }
        if let Some(s) = p.scheduler() {
            out.sched = Some(sched_attr(s)?);
        }
        if let Some(a) = p.exec_cpu_affinity() {
            for (field, v) in [
                ("process.execCPUAffinity.initial", a.initial()),
                ("process.execCPUAffinity.final", a.cpu_affinity_final()),
            ] {
                if let Some(v) = v {
                    parse_cpu_list(v).map_err(|e| bad_list(field, e))?;
                }
            }
        }
        if let Some(profile) = p.apparmor_profile().as_ref().filter(|s| !s.is_empty()) {
            if apparmor_enabled() {
                out.apparmor = Some(profile.clone());
            } else {
                log.debug(&format!(
                    "process.apparmorProfile {profile:?} ignored: AppArmor is not enabled on this host"
                ));
            }
        }
        if let Some(label) = p.selinux_label().as_ref().filter(|s| !s.is_empty()) {
            if selinux_enabled() {
                out.selinux = Some(label.clone());
            } else {
                log.debug(&format!(
                    "process.selinuxLabel {label:?} ignored: SELinux is not enabled on this host"
                ));
            }
        }
        Ok(())
    }

    /// Applies I/O priority, scheduler and personality to the calling process (the init,
    /// while it still holds its privileges).
    pub fn apply(&self) -> Result<(), SecurityError> {
        if let Some(v) = self.ioprio {
            crate::sys::ioprio_set(v).map_err(sys("process.ioPriority"))?;
        }
        if let Some(a) = &self.sched {
            crate::sys::sched_setattr(a).map_err(sys("process.scheduler"))?;
        }
        if let Some(p) = self.personality {
            crate::sys::personality(p).map_err(sys("linux.personality"))?;
        }
        Ok(())
    }

    /// Writes the LSM exec labels (AppArmor profile, SELinux label) for the next
    /// execve, through the verified procfs `proc`.
    pub fn apply_lsm(&self, proc: BorrowedFd<'_>) -> Result<(), SecurityError> {
        self.open_lsm(proc)?.write()
    }

    /// Opens the procfs files the LSM exec labels are written to, so they can be
    /// written once `proc` is closed (see [`LsmLabels::write`]).
    pub fn open_lsm(&self, proc: BorrowedFd<'_>) -> Result<LsmLabels, SecurityError> {
        let mut out = LsmLabels(Vec::new());
        if let Some(profile) = &self.apparmor {
            let fd = crate::rootfs::open_proc(
                proc,
                Path::new("thread-self/attr/apparmor/exec"),
                libc::O_WRONLY,
            )
            .or_else(|_| {
                crate::rootfs::open_proc(proc, Path::new("thread-self/attr/exec"), libc::O_WRONLY)
            })
            .map_err(sys("process.apparmorProfile"))?;
            let text = format!("exec {profile}").into_bytes();
            out.0.push((fd, text, "process.apparmorProfile"));
        }
        if let Some(label) = &self.selinux {
            let fd =
                crate::rootfs::open_proc(proc, Path::new("thread-self/attr/exec"), libc::O_WRONLY)
                    .map_err(sys("process.selinuxLabel"))?;
            out.0
                .push((fd, label.clone().into_bytes(), "process.selinuxLabel"));
        }
        Ok(out)
    }
}

/// LSM exec-label files opened by [`ProcessAttrs::open_lsm`], with what to write.
#[derive(Debug)]
pub struct LsmLabels(Vec<(OwnedFd, Vec<u8>, &'static str)>);

impl LsmLabels {
    /// The open fds (kept open while the others are closed).
    pub fn fds(&self) -> impl Iterator<Item = std::os::fd::RawFd> + '_ {
        self.0.iter().map(|(fd, _, _)| fd.as_raw_fd())
    }

    /// Writes the labels (and closes the files).
    pub fn write(self) -> Result<(), SecurityError> {
        for (fd, text, what) in self.0 {
            crate::sys::write_all(fd.as_fd(), &text).map_err(sys(what))?;
        }
        Ok(())
    }
}

/// `execCPUAffinity.initial` of `p` (for the runtime side of an exec, before the
/// process joins the container's cgroup).
pub fn initial_affinity(p: &Process) -> Option<&String> {
    p.exec_cpu_affinity().as_ref()?.initial().as_ref()
}

/// `execCPUAffinity.final` of `p` (for the exec'd process once in the cgroup).
pub fn final_affinity(p: &Process) -> Option<&String> {
    p.exec_cpu_affinity()
        .as_ref()?
        .cpu_affinity_final()
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,7").unwrap(), vec![0, 1, 2, 3, 7]);
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
    }

    /// A bad list names its field, keeps the parse error as its source, and says what it
    /// said before it was typed.
    #[test]
    fn bad_cpu_lists_are_typed() {
        let e = parse_cpu_list("0,x-2")
            .map_err(|e| bad_list("process.execCPUAffinity.initial", e))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.json: process.execCPUAffinity.initial: \"x-2\" is not a CPU"
        );
        let source = std::error::Error::source(&e).expect("the ListError");
        let int = std::error::Error::source(source).expect("the ParseIntError");
        assert!(int.downcast_ref::<std::num::ParseIntError>().is_some());
        let e = parse_cpu_list("3-1").unwrap_err();
        assert_eq!(e.to_string(), "\"3-1\" is not a CPU range");
    }
}

#[cfg(test)]
mod sched_flag_tests {
    #[test]
    fn the_specs_scheduler_flag_names_parse() {
        let names = [
            "SCHED_FLAG_RESET_ON_FORK",
            "SCHED_FLAG_RECLAIM",
            "SCHED_FLAG_DL_OVERRUN",
            "SCHED_FLAG_KEEP_POLICY",
            "SCHED_FLAG_KEEP_PARAMS",
            "SCHED_FLAG_UTIL_CLAMP_MIN",
            "SCHED_FLAG_UTIL_CLAMP_MAX",
        ];
        let mut p = serde_json::json!({
            "cwd": "/", "user": {"uid": 0, "gid": 0},
            "scheduler": {"policy": "SCHED_OTHER", "flags": names},
        });
        assert!(super::spec_sched_flag_names(&mut p));
        let p: oci_spec::runtime::Process = serde_json::from_value(p).expect("parses");
        let s = p.scheduler().as_ref().unwrap();
        let attr = super::sched_attr(s).unwrap();
        assert_eq!(attr.flags, 0x7f);
    }
}
