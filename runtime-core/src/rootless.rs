//! Rootless containers: a caller without privilege in the initial user namespace (an
//! ordinary user, or root inside a user namespace such as rootless podman's).
//!
//! - [`Mode`]: runc's `--rootless true|false|auto`; it decides whether the cgroup may be
//!   skipped ([`use_cgroup`]): a rootless container that asks for no resources runs
//!   without cgroups when the caller cannot write its cgroup path, one that asks for
//!   resources gets an error naming the first field.
//! - [`check_mounts`]: mounts the kernel allows only with privilege in the initial user
//!   namespace are refused by index and destination before anything is created.
//! - [`pids_without_cgroup`]: `ps` of a container without a cgroup.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Spec};

pub use crate::caller::{in_initial_userns, privileged};
use crate::spec_util::{self as config, ConfigError};

/// `--rootless`: whether the cgroup manager may run without cgroups (runc's flag).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Rootless when the caller is not root in the initial user namespace (runc: when
    /// euid != 0, or when running inside a user namespace).
    #[default]
    Auto,
    /// Always rootless.
    On,
    /// Never rootless: cgroups are required.
    Off,
}

/// A `--rootless` value other than `true`, `false` or `auto`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("--rootless: invalid value {0:?}: true, false or auto")]
pub struct ModeError(pub String);

impl std::str::FromStr for Mode {
    type Err = ModeError;
    fn from_str(s: &str) -> Result<Mode, ModeError> {
        match s {
            "auto" => Ok(Mode::Auto),
            "true" => Ok(Mode::On),
            "false" => Ok(Mode::Off),
            other => Err(ModeError(other.into())),
        }
    }
}

impl Mode {
    /// Whether this mode is rootless for the calling process.
    pub fn is_rootless(self) -> bool {
        match self {
            Mode::On => true,
            Mode::Off => false,
            Mode::Auto => !privileged(),
        }
    }
}

/// The default state root of a rootless caller: `$XDG_RUNTIME_DIR/casulo` (runc:
/// `$XDG_RUNTIME_DIR/runc`), when the variable is set and the caller's euid is not 0,
/// or it is 0 in a user namespace other than the initial one and `USER` is not `root`
/// (rootless podman runs the runtime so), as runc decides.
pub fn default_root() -> Option<PathBuf> {
    let dir = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty())?;
    let root_user = std::env::var("USER").is_ok_and(|u| u == "root");
    if nix::unistd::geteuid().is_root() && (in_initial_userns() || root_user) {
        return None;
    }
    Some(Path::new(&dir).join("casulo"))
}

/// The first set field of `linux.resources` a container without a cgroup cannot honour
/// (`devices` rules that only deny are kept by having no cgroup: the container has
/// only the device nodes it is given).
fn first_resource(spec: &Spec) -> Option<String> {
    let res = spec.linux().as_ref()?.resources().as_ref()?;
    let v = serde_json::to_value(res).ok()?;
    let obj = v.as_object()?;
    for (k, val) in obj {
        if val.is_null() {
            continue;
        }
        if k == "devices" {
            let allows = val
                .as_array()
                .is_some_and(|a| a.iter().any(|d| d["allow"].as_bool() == Some(true)));
            if !allows {
                continue;
            }
        }
        return Some(format!("linux.resources.{k}"));
    }
    None
}

/// The directories of `path` in every mounted hierarchy (v1 controllers, the unified
/// tree), or `/sys/fs/cgroup/<path>` on v2.
fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    use crate::cgroups::detect::{self, Layout, CGROUP_ROOT};
    let rel = path.trim_start_matches('/');
    let layout = detect::layout();
    let mut out = Vec::new();
    if matches!(layout, Ok(Layout::V1) | Ok(Layout::Hybrid)) {
        for m in detect::v1_mounts().unwrap_or_default().values() {
            let root = m.root.trim_start_matches('/');
            let sub = Path::new(rel).strip_prefix(root).unwrap_or(Path::new(rel));
            out.push(m.mountpoint.join(sub));
        }
    }
    match layout {
        Ok(Layout::V2) => out.push(Path::new(CGROUP_ROOT).join(rel)),
        Ok(Layout::Hybrid) => out.push(Path::new(CGROUP_ROOT).join("unified").join(rel)),
        _ => {}
    }
    out.sort();
    out.dedup();
    out
}

/// Whether the caller can create (or use) the cgroup `path` everywhere: the nearest
/// existing directory of each is writable by it.
fn cgroup_writable(path: &str) -> Result<(), PathBuf> {
    use nix::unistd::{access, AccessFlags};
    for dir in cgroup_dirs(path) {
        let mut d = dir.as_path();
        while !d.exists() {
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
        if access(d, AccessFlags::W_OK).is_err() {
            return Err(dir);
        }
    }
    Ok(())
}

/// Whether the container gets its cgroup `path`. Always, unless the caller is
/// rootless (`mode`) and cannot write the path: then a config without resources runs
/// without cgroups, and one with resources is refused naming the first field.
pub fn use_cgroup(mode: Mode, spec: &Spec, path: &str) -> Result<bool, ConfigError> {
    if !mode.is_rootless() {
        return Ok(true);
    }
    let Err(dir) = cgroup_writable(path) else {
        return Ok(true);
    };
    match first_resource(spec) {
        None => Ok(false),
        Some(field) => Err(config::invalid(
            field,
            format!(
                "a rootless container cannot set cgroup resources here: {} is not writable by uid {} (delegate the cgroup to the user, or remove the field)",
                dir.display(),
                nix::unistd::geteuid()
            ),
        )),
    }
}

/// The resources to apply to a container's cgroup: for a caller without privilege in
/// the initial user namespace, `devices` rules that only deny are left out (cgroup v1's
/// `devices.deny` needs CAP_SYS_ADMIN there; the container cannot mknod anyway, and
/// sees only the nodes bound from the host, as with runc).
pub fn resources(spec: &Spec) -> Option<std::borrow::Cow<'_, LinuxResources>> {
    let res = spec.linux().as_ref()?.resources().as_ref()?;
    let deny_only = res
        .devices()
        .as_ref()
        .is_some_and(|d| !d.is_empty() && d.iter().all(|r| !r.allow()));
    if privileged() || !deny_only {
        return Some(std::borrow::Cow::Borrowed(res));
    }
    let mut res = res.clone();
    res.set_devices(None);
    Some(std::borrow::Cow::Owned(res))
}

/// File system types the kernel lets a user namespace mount (FS_USERNS_MOUNT).
const USERNS_TYPES: &[&str] = &[
    "proc",
    "sysfs",
    "tmpfs",
    "devpts",
    "mqueue",
    "cgroup",
    "cgroup2",
    "ramfs",
    "overlay",
    "fuse",
    "fuse3",
    "binfmt_misc",
];

/// The namespace a user-namespace mount of `typ` must own (the kernel checks the
/// privilege over that namespace's owner).
fn needed_namespace(typ: &str) -> Option<(LinuxNamespaceType, &'static str)> {
    match typ {
        "proc" => Some((LinuxNamespaceType::Pid, "pid")),
        "sysfs" => Some((LinuxNamespaceType::Network, "network")),
        "mqueue" => Some((LinuxNamespaceType::Ipc, "ipc")),
        _ => None,
    }
}

/// Refuses, for a caller without privilege in the initial user namespace, the mounts
/// the kernel would refuse with EPERM: a file system type not mountable in a user
/// namespace (bind mounts are fine), and proc, sysfs or mqueue without a new pid,
/// network or ipc namespace of the container's own.
pub fn check_mounts(spec: &Spec) -> Result<(), ConfigError> {
    if privileged() {
        return Ok(());
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let opts = m.options().as_deref().unwrap_or(&[]);
        if opts.iter().any(|o| o == "bind" || o == "rbind") {
            continue;
        }
        let typ = m.typ().as_deref().unwrap_or("");
        if typ.is_empty() || typ == "none" || typ == "bind" {
            continue;
        }
        let field = format!("mounts[{i}] ({})", m.destination().display());
        if !USERNS_TYPES.contains(&typ) {
            return Err(config::invalid(
                field,
                format!("type {typ:?} needs privilege in the initial user namespace; a rootless container can only bind-mount it"),
            ));
        }
        if let Some((ns, name)) = needed_namespace(typ) {
            if !config::new_namespace(spec, ns) {
                return Err(config::invalid(
                    field,
                    format!("a rootless container mounts {typ} only with a new {name} namespace of its own (bind-mount the host's instead)"),
                ));
            }
        }
    }
    Ok(())
}

/// The pids of a container that has no cgroup: every process in the init's pid
/// namespace when it has one of its own, else the init and its descendants.
pub fn pids_without_cgroup(init: i32) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let ns_of = |pid: &str| std::fs::metadata(format!("/proc/{pid}/ns/pid")).map(|m| m.ino());
    let own = ns_of("self").ok();
    let init_ns = ns_of(&init.to_string()).ok();
    let all: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after = stat.rsplit_once(')')?.1;
            let ppid: i32 = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut out = vec![init];
    if init_ns.is_some() && init_ns != own {
        for (pid, _) in &all {
            if *pid != init && ns_of(&pid.to_string()).ok() == init_ns {
                out.push(*pid);
            }
        }
    } else {
        let mut i = 0;
        while i < out.len() {
            let parent = out[i];
            out.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
            i += 1;
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `kill --all` of a container without a cgroup: signals every process of
/// [`pids_without_cgroup`] but the init (signalled by the caller) through a pidfd,
/// opened first and then checked to still be in the init's pid namespace, so a pid
/// reused meanwhile is never signalled.
pub fn signal_others(init: i32, signal: i32) {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let ns = |pid: i32| {
        std::fs::metadata(format!("/proc/{pid}/ns/pid"))
            .map(|m| m.ino())
            .ok()
    };
    let init_ns = ns(init);
    for pid in pids_without_cgroup(init) {
        if pid == init {
            continue;
        }
        let Ok(fd) = crate::sys::pidfd_open(pid) else {
            continue;
        };
        if ns(pid) == init_ns {
            let _ = crate::sys::pidfd_send_signal(fd.as_fd(), signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!("auto".parse::<Mode>(), Ok(Mode::Auto));
        assert_eq!("true".parse::<Mode>(), Ok(Mode::On));
        assert_eq!("false".parse::<Mode>(), Ok(Mode::Off));
        let e = "yes".parse::<Mode>().unwrap_err();
        assert_eq!(e, ModeError("yes".into()));
        assert_eq!(
            e.to_string(),
            "--rootless: invalid value \"yes\": true, false or auto"
        );
        assert!(Mode::On.is_rootless());
        assert!(!Mode::Off.is_rootless());
    }

    #[test]
    fn resources_named() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"resources":{"devices":[{"allow":false,"access":"rwm"}]}}}"#,
        )
        .unwrap();
        assert_eq!(first_resource(&spec), None);
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"resources":{"pids":{"limit":10}}}}"#,
        )
        .unwrap();
        assert_eq!(
            first_resource(&spec).as_deref(),
            Some("linux.resources.pids")
        );
    }
}
