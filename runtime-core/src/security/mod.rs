//! The process's security context (config.md "Process": user, rlimits, capabilities,
//! noNewPrivileges, oomScoreAdj). Values are prepared in the runtime before the clone
//! ([`Credentials::from_spec`]); [`Credentials::apply`] runs in the init.

pub mod mempolicy;
pub mod process;
pub mod unknown_caps;

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use caps::{CapSet, CapsHashSet};
use nix::errno::Errno;
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::{Capabilities, PosixRlimitType, Process};

/// Errors of the security context, each naming the config field.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A capability name is unknown to this kernel/runtime.
    #[error("process.capabilities: unknown capability {0:?}")]
    UnknownCapability(String),
    /// A syscall applying a field failed.
    #[error("{what}: {source}")]
    Sys {
        /// The field being applied.
        what: &'static str,
        /// The errno (lower case, as engines match it).
        source: crate::rootfs::ErrnoText,
    },
    /// Capability manipulation failed (the caps crate's error kept as the source).
    #[error("process.capabilities: {0}")]
    Caps(#[source] caps::errors::CapsError),
    /// A field has a value the runtime refuses.
    #[error("config.json: {field}: {reason}")]
    Invalid {
        /// The JSON path of the field, e.g. `linux.memoryPolicy.nodes`.
        field: String,
        /// Why it is refused.
        reason: String,
    },
    /// A CPU or node list could not be read (the list's error kept as the source).
    #[error("config.json: {field}: {source}")]
    List {
        /// The JSON path of the field, e.g. `process.execCPUAffinity.initial`.
        field: String,
        /// Why the list is refused.
        #[source]
        source: ListError,
    },
    /// A field the runtime or this host cannot honour.
    #[error("{field}: {reason}")]
    Unsupported {
        /// The field (with its value when that is what is refused), e.g. `linux.intelRdt`.
        field: String,
        /// What is missing.
        reason: String,
    },
}

/// Why a CPU list (`process.execCPUAffinity`) or a NUMA node list
/// (`linux.memoryPolicy.nodes`) is refused; the field is named by the
/// [`SecurityError::List`] that carries it.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// An item of a CPU list is not a number.
    #[error("{item:?} is not a CPU")]
    Cpu {
        /// The item (`3` or `0-3`).
        item: String,
        /// The number's parse error.
        #[source]
        source: std::num::ParseIntError,
    },
    /// A CPU range that is reversed or beyond `CPU_SETSIZE`.
    #[error("{item:?} is not a CPU range")]
    CpuRange {
        /// The item.
        item: String,
    },
    /// A node list with something else than digits, `-` and `,`.
    #[error("{list:?} is not a list of node numbers like \"0-3,7\"")]
    Nodes {
        /// The whole list.
        list: String,
    },
    /// A node number above the highest one accepted.
    #[error("node {node} is above {max}")]
    NodeTooHigh {
        /// The number as written.
        node: String,
        /// The highest node accepted.
        max: usize,
    },
    /// A node range that ends before it starts.
    #[error("range {item:?} is reversed")]
    NodeRange {
        /// The range.
        item: String,
    },
}

fn sys(what: &'static str) -> impl FnOnce(Errno) -> SecurityError {
    move |e| SecurityError::Sys {
        what,
        source: crate::rootfs::ErrnoText(e),
    }
}

/// The five capability sets, resolved to the caps crate's type.
#[derive(Debug, Clone, Default)]
pub struct CapSets {
    bounding: Option<CapsHashSet>,
    effective: Option<CapsHashSet>,
    inheritable: Option<CapsHashSet>,
    permitted: Option<CapsHashSet>,
    ambient: Option<CapsHashSet>,
}

/// A capability set of the config; an absent set is empty (as runc treats it) once
/// `process.capabilities` is given at all.
fn resolve(set: &Option<Capabilities>) -> Result<Option<CapsHashSet>, SecurityError> {
    let Some(set) = set else {
        return Ok(Some(CapsHashSet::new()));
    };
    let mut out = CapsHashSet::new();
    for c in set {
        let name = serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let cap = name
            .parse()
            .map_err(|_| SecurityError::UnknownCapability(name.clone()))?;
        out.insert(cap);
    }
    Ok(Some(out))
}

/// User, groups, capabilities and limits of the container process.
#[derive(Debug, Clone)]
pub struct Credentials {
    uid: u32,
    gid: u32,
    groups: Vec<Gid>,
    umask: Option<u32>,
    caps: Option<CapSets>,
    rlimits: Vec<(i32, u64, u64)>,
    no_new_privs: bool,
    oom_score_adj: Option<i32>,
}

fn rlimit_resource(t: PosixRlimitType) -> i32 {
    use PosixRlimitType as R;
    (match t {
        R::RlimitCpu => libc::RLIMIT_CPU,
        R::RlimitFsize => libc::RLIMIT_FSIZE,
        R::RlimitData => libc::RLIMIT_DATA,
        R::RlimitStack => libc::RLIMIT_STACK,
        R::RlimitCore => libc::RLIMIT_CORE,
        R::RlimitRss => libc::RLIMIT_RSS,
        R::RlimitNproc => libc::RLIMIT_NPROC,
        R::RlimitNofile => libc::RLIMIT_NOFILE,
        R::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        R::RlimitAs => libc::RLIMIT_AS,
        R::RlimitLocks => libc::RLIMIT_LOCKS,
        R::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        R::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        R::RlimitNice => libc::RLIMIT_NICE,
        R::RlimitRtprio => libc::RLIMIT_RTPRIO,
        R::RlimitRttime => libc::RLIMIT_RTTIME,
    }) as i32
}

impl Credentials {
    /// Reads and checks the process's security fields.
    pub fn from_spec(p: &Process) -> Result<Credentials, SecurityError> {
        let user = p.user();
        let caps = match p.capabilities() {
            None => None,
            Some(c) => Some(CapSets {
                bounding: resolve(c.bounding())?,
                effective: resolve(c.effective())?,
                inheritable: resolve(c.inheritable())?,
                permitted: resolve(c.permitted())?,
                ambient: resolve(c.ambient())?,
            }),
        };
        Ok(Credentials {
            uid: user.uid(),
            gid: user.gid(),
            groups: user
                .additional_gids()
                .iter()
                .flatten()
                .map(|g| Gid::from_raw(*g))
                .collect(),
            umask: user.umask(),
            caps,
            rlimits: p
                .rlimits()
                .iter()
                .flatten()
                .map(|r| (rlimit_resource(r.typ()), r.soft(), r.hard()))
                .collect(),
            no_new_privs: p.no_new_privileges().unwrap_or(false),
            oom_score_adj: p.oom_score_adj(),
        })
    }

    /// Applies rlimits and oom_score_adj (through the verified procfs `proc`), while the
    /// process still has its privileges.
    pub fn apply_limits(&self, proc: BorrowedFd<'_>) -> Result<(), SecurityError> {
        for &(res, soft, hard) in &self.rlimits {
            crate::sys::setrlimit(res, soft, hard).map_err(sys("process.rlimits"))?;
        }
        if let Some(adj) = self.oom_score_adj {
            let fd =
                crate::rootfs::open_proc(proc, Path::new("self/oom_score_adj"), libc::O_WRONLY)
                    .map_err(sys("process.oomScoreAdj"))?;
            crate::sys::write_all(fd.as_fd(), adj.to_string().as_bytes())
                .map_err(sys("process.oomScoreAdj"))?;
        }
        Ok(())
    }

    /// Switches to the configured user and capability sets. Runs in the init after the
    /// root filesystem is ready; the order (bounding, keep-caps, setuid, sets, ambient)
    /// keeps exactly the listed capabilities for a non-root user, and never grants an
    /// inheritable capability that is not listed.
    pub fn apply_user(&self) -> Result<(), SecurityError> {
        let caps_err = SecurityError::Caps;
        if let Some(c) = &self.caps {
            if let Some(b) = &c.bounding {
                for cap in caps::all() {
                    if !b.contains(&cap)
                        && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false)
                    {
                        caps::drop(None, CapSet::Bounding, cap).map_err(caps_err)?;
                    }
                }
            }
            nix::sys::prctl::set_keepcaps(true).map_err(sys("process.user"))?;
        }
        if !self.groups.is_empty()
            || nix::unistd::getgroups()
                .map(|g| !g.is_empty())
                .unwrap_or(false)
        {
            match setgroups(&self.groups) {
                // setgroups "deny" (a rootless user namespace): the caller's groups
                // cannot be dropped, and none were asked for (as runc).
                Err(nix::errno::Errno::EPERM) if self.groups.is_empty() => {}
                r => r.map_err(sys("process.user.additionalGids"))?,
            }
        }
        setresgid(
            Gid::from_raw(self.gid),
            Gid::from_raw(self.gid),
            Gid::from_raw(self.gid),
        )
        .map_err(sys("process.user.gid"))?;
        setresuid(
            Uid::from_raw(self.uid),
            Uid::from_raw(self.uid),
            Uid::from_raw(self.uid),
        )
        .map_err(sys("process.user.uid"))?;
        if let Some(c) = &self.caps {
            nix::sys::prctl::set_keepcaps(false).map_err(sys("process.user"))?;
            let empty = CapsHashSet::new();
            caps::set(None, CapSet::Effective, &empty).map_err(caps_err)?;
            caps::set(
                None,
                CapSet::Inheritable,
                c.inheritable.as_ref().unwrap_or(&empty),
            )
            .map_err(caps_err)?;
            caps::set(
                None,
                CapSet::Permitted,
                c.permitted.as_ref().unwrap_or(&empty),
            )
            .map_err(caps_err)?;
            caps::set(
                None,
                CapSet::Effective,
                c.effective.as_ref().unwrap_or(&empty),
            )
            .map_err(caps_err)?;
            caps::clear(None, CapSet::Ambient).map_err(caps_err)?;
            // The kernel only lets a capability be ambient when it is also permitted and
            // inheritable; others listed as ambient are skipped (runc's default config
            // lists ambient capabilities without inheritable ones). Inheritable
            // capabilities are never added to make an ambient one possible.
            for cap in c.ambient.iter().flatten() {
                let allowed =
                    |set: &Option<CapsHashSet>| set.as_ref().is_some_and(|s| s.contains(cap));
                if allowed(&c.inheritable) && allowed(&c.permitted) {
                    caps::raise(None, CapSet::Ambient, *cap).map_err(caps_err)?;
                }
            }
        }
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            self.umask.unwrap_or(0o022),
        ));
        Ok(())
    }

    /// Sets no_new_privs when the config asks for it.
    pub fn apply_no_new_privs(&self) -> Result<(), SecurityError> {
        if self.no_new_privs {
            nix::sys::prctl::set_no_new_privs().map_err(sys("process.noNewPrivileges"))?;
        }
        Ok(())
    }

    /// The process's uid (for `HOME`).
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// True when the process runs with no_new_privs.
    pub fn no_new_privs(&self) -> bool {
        self.no_new_privs
    }
}
