//! Checker failures that Debian's runc 1.1.5 shows on this kind of host
//! (cgroup v1, no CAP_SYS_RESOURCE, no AppArmor), each with its reason.

use std::path::Path;

/// One known runc difference.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    /// Generated case name prefix it applies to ("" = every case).
    pub case: &'static str,
    /// Failure prefix (`<section>: <what>`) it excuses.
    pub failure: &'static str,
    /// Why runc (or this host) behaves so.
    pub reason: &'static str,
    /// A limit of this host (not of runc): excused for every runtime.
    pub host_limit: bool,
}

/// Known runc differences. A failure of case `c` with description `f` is
/// excused when `c` starts with `case` and `f` starts with `failure`.
pub const KNOWN_RUNC_DIFFERENCES: &[Known] = &[
    Known {
        case: "",
        failure: "Mounts: /sys/fs/cgroup ro:",
        reason: "cgroup v1 host: runc mounts a rw tmpfs at /sys/fs/cgroup and makes only \
                 the per-controller cgroup mounts below it read-only (checked separately)",
        host_limit: false,
    },
    Known {
        case: "rlimits/nofile-above-host-hard",
        failure: "Runtime: run:",
        reason: "host limit: no CAP_SYS_RESOURCE, so raising a hard rlimit above the \
                 host's (NOFILE 20000) fails with EPERM and runc aborts",
        host_limit: true,
    },
    Known {
        case: "oomScoreAdj/-",
        failure: "Runtime: run:",
        reason: "host limit: lowering oom_score_adj below the inherited value needs \
                 CAP_SYS_RESOURCE; runc's init fails to write it and aborts",
        host_limit: true,
    },
    Known {
        case: "caps/all",
        failure: "Runtime: run:",
        reason: "host limit: CAP_SYS_RESOURCE is not in runc's own permitted set, so \
                 capset() of every capability fails with EPERM",
        host_limit: true,
    },
    Known {
        case: "caps/all-bounding-only",
        failure: "Process: capabilities CapBnd:",
        reason: "host limit: the bounding set can only shrink and the host's lacks \
                 CAP_SYS_RESOURCE",
        host_limit: true,
    },
    Known {
        case: "hostname/\"\"",
        failure: "Hostname: hostname:",
        reason: "runc treats an empty hostname as unset: the new UTS namespace keeps \
                 the host's name",
        host_limit: false,
    },
    Known {
        case: "domainname/",
        failure: "Domainname: domainname:",
        reason: "runc 1.1.5 does not set `domainname`: the new UTS namespace keeps \
                 \"(none)\"",
        host_limit: false,
    },
    Known {
        case: "devices/setgid-mode",
        failure: "Devices: /dev/modedev fileMode:",
        reason: "runc keeps only the permission bits (0777) of a device's fileMode",
        host_limit: false,
    },
    Known {
        case: "rootfsPropagation/",
        failure: "Mount Propagation: rootfsPropagation / shared:",
        reason: "runc 1.1.5 applies rootfsPropagation before pivot_root; the container's \
                 / ends up in no peer group (no shared:N tag)",
        host_limit: false,
    },
    Known {
        case: "rootfsPropagation/unbindable",
        failure: "Runtime: run:",
        reason: "runc makes / unbindable, then bind-mounts the rootfs onto itself, \
                 which the kernel refuses (EINVAL)",
        host_limit: false,
    },
    Known {
        case: "apparmor/profile",
        failure: "Runtime: run:",
        reason: "host limit: no AppArmor; runc 1.1.5 still writes the profile to \
                 /proc/self/attr/exec, gets EINVAL and aborts",
        host_limit: false,
    },
    Known {
        case: "cgroups/net-cls-classid",
        failure: "Runtime: run:",
        reason: "host limit: no net_cls cgroup hierarchy is mounted, so runc cannot \
                 apply network.classID and aborts",
        host_limit: true,
    },
];

/// The known difference excusing failure `failure` of case `case`, if any.
pub fn known_runc_difference(case: &str, failure: &str) -> Option<&'static Known> {
    KNOWN_RUNC_DIFFERENCES
        .iter()
        .find(|k| case.starts_with(k.case) && failure.starts_with(k.failure))
}

/// True when `runtime` looks like runc (its file name starts with "runc").
pub fn is_runc(runtime: &Path) -> bool {
    runtime
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("runc"))
}

/// The failures of case `case` that are not excused: for runc, those not in
/// [`KNOWN_RUNC_DIFFERENCES`]; for any other runtime, all but the host limits.
pub fn unexpected<'a>(runtime: &Path, case: &str, failures: &'a [String]) -> Vec<&'a String> {
    failures
        .iter()
        .filter(|f| match known_runc_difference(case, f) {
            Some(k) => !(is_runc(runtime) || k.host_limit),
            None => true,
        })
        .collect()
}
