//! Namespaces (config-linux.md "Namespaces", "User namespace mappings", "Offset for
//! Time Namespace"): which are new and which are joined, in what order, and the user
//! namespace id maps the runtime writes for the init.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

/// Errors of namespace handling; each names the namespace or file.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// A namespace path could not be opened.
    #[error("linux.namespaces: {typ} namespace {path}: {source}")]
    Open {
        /// The namespace type.
        typ: String,
        /// The path from the config.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Writing an id map or an offset failed.
    #[error("{what}: {source}")]
    Write {
        /// The file written.
        what: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The clone flag of a namespace type.
pub fn flag(typ: LinuxNamespaceType) -> CloneFlags {
    match typ {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The namespaces of a container: new ones as clone flags, joined ones as open fds in
/// the order they must be entered ([`JOIN_ORDER`]).
pub struct Namespaces {
    /// Flags for the new namespaces created by the init's clone (time excluded: it is
    /// unshared by the helper so its offsets can be written first).
    pub clone_flags: CloneFlags,
    /// A new time namespace is wanted.
    pub new_time: bool,
    /// Namespaces to join, with their fds, in order.
    pub join: Vec<(CloneFlags, OwnedFd)>,
}

/// The one order in which create's helper and exec's helper join namespaces (and
/// create opens the config's paths), and why:
///
/// - **user first**: joining a user namespace grants the capabilities in it that
///   joining the namespaces it owns needs (and drops those over the others, which a
///   container's namespaces never are). When creating, a *new* user namespace comes
///   with the clone, after every join: the joined namespaces stay the caller's.
/// - **pid and time next**: they apply only to children (`pid_for_children`,
///   `time_for_children`), so they must be joined before the clone that makes the
///   process, and joining them changes nothing for the helper's later steps.
/// - ipc, uts, network, cgroup: no order among them matters (a joined cgroup namespace
///   rules out `CLONE_INTO_CGROUP`: see `process::spawn`).
/// - **mount last**: after it, path lookups (`/proc/<pid>/ns/*`, `/proc/self/…`) would
///   mean the container's files, so every namespace fd is opened before the first
///   join, and nothing after the joins resolves a path except through the verified
///   host procfs handle.
pub const JOIN_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Mount,
];

/// The name of a namespace in `/proc/<pid>/ns/`.
pub fn proc_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The `/proc/<pid>/ns/` name of a single namespace clone flag ("?" for anything else).
pub fn name(flag: CloneFlags) -> &'static str {
    JOIN_ORDER
        .into_iter()
        .find(|t| self::flag(*t) == flag)
        .map_or("?", proc_name)
}

/// Opens a namespace file (a magic link) relative to the host procfs handle.
fn open_ns(proc_fd: BorrowedFd<'_>, path: &str) -> Result<OwnedFd, Errno> {
    let c = CString::new(path).map_err(|_| Errno::EINVAL)?;
    crate::sys::openat(proc_fd, &c, libc::O_RDONLY, 0)
}

fn ns_id(proc_fd: BorrowedFd<'_>, path: &str) -> Option<(u64, u64)> {
    let fd = open_ns(proc_fd, path).ok()?;
    nix::sys::stat::fstat(fd.as_raw_fd())
        .ok()
        .map(|s| (s.st_dev, s.st_ino))
}

/// The namespaces of process `pid` that differ from the runtime's own, opened in
/// [`JOIN_ORDER`] through the host procfs handle (exec joins the init's).
pub fn open_of(
    proc_fd: BorrowedFd<'_>,
    pid: i32,
) -> Result<Vec<(CloneFlags, OwnedFd)>, NamespaceError> {
    let mut out = Vec::new();
    for typ in JOIN_ORDER {
        let theirs = format!("{pid}/ns/{}", proc_name(typ));
        let Some(id) = ns_id(proc_fd, &theirs) else {
            continue; // kernel without this namespace type
        };
        if ns_id(proc_fd, &format!("self/ns/{}", proc_name(typ))) == Some(id) {
            continue;
        }
        let fd = open_ns(proc_fd, &theirs).map_err(|e| NamespaceError::Open {
            typ: typ.to_string(),
            path: format!("/proc/{theirs}"),
            source: e.into(),
        })?;
        out.push((flag(typ), fd));
    }
    Ok(out)
}

impl Namespaces {
    /// Reads the config's namespaces and opens those to join.
    pub fn from_spec(spec: &Spec) -> Result<Namespaces, NamespaceError> {
        let list = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
        let mut out = Namespaces {
            clone_flags: CloneFlags::empty(),
            new_time: false,
            join: Vec::new(),
        };
        for typ in JOIN_ORDER {
            let Some(ns) = list.and_then(|l| l.iter().find(|n| n.typ() == typ)) else {
                continue;
            };
            match ns.path() {
                None if typ == LinuxNamespaceType::Time => out.new_time = true,
                // Unshared by the init once it is in its cgroup (InitPlan::cgroupns), so
                // the namespace's root is the container's cgroup: no clone flag.
                None if typ == LinuxNamespaceType::Cgroup => {}
                None => out.clone_flags |= flag(typ),
                Some(path) => {
                    let f = std::fs::File::open(path).map_err(|source| NamespaceError::Open {
                        typ: typ.to_string(),
                        path: path.display().to_string(),
                        source,
                    })?;
                    out.join.push((flag(typ), f.into()));
                }
            }
        }
        Ok(out)
    }
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

fn write(path: &Path, what: &str, data: &str) -> Result<(), NamespaceError> {
    std::fs::write(path, data).map_err(|source| NamespaceError::Write {
        what: what.to_string(),
        source,
    })
}

/// Writes `uid_map` and `gid_map` of process `pid` (the init, waiting in its new user
/// namespace). A runtime that is not root writes them as [`unprivileged_id_maps`]
/// does; a root runtime leaves setgroups(2) usable in the container.
pub fn write_id_maps(pid: i32, spec: &Spec) -> Result<(), NamespaceError> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    if !nix::unistd::geteuid().is_root() {
        return unprivileged_id_maps(
            pid,
            linux.uid_mappings().as_deref().unwrap_or(&[]),
            linux.gid_mappings().as_deref().unwrap_or(&[]),
        );
    }
    let base = Path::new("/proc").join(pid.to_string());
    write(
        &base.join("uid_map"),
        "linux.uidMappings",
        &map_text(linux.uid_mappings().as_deref().unwrap_or(&[])),
    )?;
    write(
        &base.join("gid_map"),
        "linux.gidMappings",
        &map_text(linux.gid_mappings().as_deref().unwrap_or(&[])),
    )
}

/// Whether `maps` is exactly the caller's own id mapped once (what an unprivileged
/// process may write itself).
fn own_only(maps: &[LinuxIdMapping], own: u32) -> bool {
    matches!(maps, [m] if m.host_id() == own && m.size() == 1)
}

fn write_err(what: &str, source: std::io::Error) -> NamespaceError {
    NamespaceError::Write {
        what: what.to_string(),
        source,
    }
}

/// Runs `helper <pid> <containerID> <hostID> <size>…`.
fn run_helper(
    helper: &str,
    field: &str,
    pid: i32,
    maps: &[LinuxIdMapping],
) -> Result<(), NamespaceError> {
    let mut cmd = std::process::Command::new(helper);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.args([
            m.container_id().to_string(),
            m.host_id().to_string(),
            m.size().to_string(),
        ]);
    }
    let what = format!("{field}: {helper}");
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => write_err(
                &what,
                std::io::Error::new(
                    e.kind(),
                    "not found: mapping more than the caller's own id needs the setuid helpers of the uidmap package and /etc/subuid, /etc/subgid entries",
                ),
            ),
            _ => write_err(&what, e),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    Err(write_err(
        &what,
        std::io::Error::other(format!("{}: {text}", out.status)),
    ))
}

/// Writes the id maps of `pid` for an unprivileged caller (rootless): its own id mapped
/// once is written directly (`setgroups` "deny" first, as the kernel requires for
/// gid_map); anything else through the setuid helpers `newuidmap`/`newgidmap` (package
/// `uidmap`, ranges from /etc/subuid and /etc/subgid), as runc does.
fn unprivileged_id_maps(
    pid: i32,
    uids: &[LinuxIdMapping],
    gids: &[LinuxIdMapping],
) -> Result<(), NamespaceError> {
    let base = Path::new("/proc").join(pid.to_string());
    let write = |file: &str, what: &str, data: String| {
        std::fs::write(base.join(file), data).map_err(|e| write_err(what, e))
    };
    let text = |maps: &[LinuxIdMapping]| -> String {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect()
    };
    if own_only(uids, nix::unistd::geteuid().as_raw()) {
        write("uid_map", "linux.uidMappings", text(uids))?;
    } else {
        run_helper("newuidmap", "linux.uidMappings", pid, uids)?;
    }
    if own_only(gids, nix::unistd::getegid().as_raw()) {
        write("setgroups", "setgroups", "deny".into())?;
        write("gid_map", "linux.gidMappings", text(gids))
    } else {
        run_helper("newgidmap", "linux.gidMappings", pid, gids)
    }
}

/// The text for /proc/self/timens_offsets from `linux.timeOffsets`.
pub fn time_offsets(spec: &Spec) -> String {
    let mut out = String::new();
    if let Some(offsets) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
    {
        for (clock, off) in offsets {
            out.push_str(&format!(
                "{clock} {} {}\n",
                off.secs().unwrap_or(0),
                off.nanosecs().unwrap_or(0)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_and_joined() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/proc/self/ns/net"},{"type":"time"},{"type":"mount"}]}}"#,
        )
        .unwrap();
        let ns = Namespaces::from_spec(&spec).unwrap();
        assert_eq!(
            ns.clone_flags,
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS
        );
        assert!(ns.new_time);
        assert_eq!(ns.join.len(), 1);
        assert_eq!(ns.join[0].0, CloneFlags::CLONE_NEWNET);
    }
}
