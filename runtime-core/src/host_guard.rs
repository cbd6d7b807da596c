//! Checks that keep a config from changing the runtime's own (the host's) kernel state
//! through the container: `linux.sysctl` keys need the namespace that isolates them
//! (runc's rules), `hostname`/`domainname` need a uts namespace of the container's own,
//! and a container without a mount namespace of its own gets its mounts only when it
//! has no new user namespace either. All run
//! in [`crate::config::validate`], before anything is created.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::spec_util::{invalid, namespace, new_namespace, ConfigError};

/// The IPC sysctls outside `fs.mqueue` (ipc_namespaces(7)).
const IPC_KERNEL: &[&str] = &[
    "msgmax",
    "msgmnb",
    "msgmni",
    "sem",
    "shmall",
    "shmmax",
    "shmmni",
    "shm_rmid_forced",
];

/// True when the container has a namespace of `typ` that is not the runtime's: a new
/// one, or one joined by a path whose namespace differs (device and inode) from the
/// runtime's `/proc/self/ns/<typ>`. A namespace that is not listed is the runtime's.
pub fn own_namespace(spec: &Spec, typ: LinuxNamespaceType) -> Result<bool, ConfigError> {
    let Some(ns) = namespace(spec, typ) else {
        return Ok(false);
    };
    let Some(path) = ns.path() else {
        return Ok(true);
    };
    let field = format!(
        "linux.namespaces.{}.path",
        crate::namespaces::proc_name(typ)
    );
    let unusable = |path: &Path, source| ConfigError::Path {
        field: field.clone(),
        path: path.into(),
        source,
    };
    let joined = std::fs::metadata(path).map_err(|e| unusable(path, e))?;
    let mine = format!("/proc/self/ns/{}", crate::namespaces::proc_name(typ));
    let mine = std::fs::metadata(&mine).map_err(|e| unusable(Path::new(&mine), e))?;
    Ok((joined.dev(), joined.ino()) != (mine.dev(), mine.ino()))
}

/// The path of a sysctl under `/proc/sys`, as sysctl.d(5) reads keys: with `.` as the
/// separator (a `/` inside a component, as in `net.ipv4.conf.eth0/100.rp_filter`, stands
/// for a `.`), or with `/` when it is the first separator. None when a component is
/// empty, `.` or `..` (a key must not climb out of the tree it names).
pub fn sysctl_path(key: &str) -> Option<PathBuf> {
    let slash_form = key
        .find(['.', '/'])
        .is_some_and(|i| key.as_bytes()[i] == b'/');
    let path: String = if slash_form {
        key.to_string()
    } else {
        key.chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect()
    };
    let ok = path
        .split('/')
        .all(|c| !c.is_empty() && c != "." && c != "..");
    ok.then(|| PathBuf::from(path))
}

/// What isolates a sysctl from the host, by its `/proc/sys` path.
fn isolating_namespace(path: &[&str]) -> Option<LinuxNamespaceType> {
    match path {
        ["kernel", k] if IPC_KERNEL.contains(k) => Some(LinuxNamespaceType::Ipc),
        ["fs", "mqueue", ..] => Some(LinuxNamespaceType::Ipc),
        ["net", ..] => Some(LinuxNamespaceType::Network),
        ["kernel", "hostname" | "domainname"] => Some(LinuxNamespaceType::Uts),
        ["user", ..] => Some(LinuxNamespaceType::User),
        _ => None,
    }
}

/// `linux.sysctl`: every key names a sysctl that a namespace of the container's own
/// isolates; nothing else may be written (it would change the host).
fn check_sysctls(spec: &Spec) -> Result<(), ConfigError> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (key, value) in map {
        let field = format!("linux.sysctl.{key}");
        let path = sysctl_path(key).ok_or_else(|| invalid(&field, "not a sysctl name"))?;
        let parts: Vec<&str> = path.to_str().unwrap_or_default().split('/').collect();
        let Some(typ) = isolating_namespace(&parts) else {
            return Err(invalid(
                &field,
                "not namespaced; refusing to set it for the host",
            ));
        };
        if !own_namespace(spec, typ)? {
            return Err(invalid(
                &field,
                format!(
                    "not allowed in the runtime's {} namespace; refusing to set it for the host",
                    crate::namespaces::proc_name(typ)
                ),
            ));
        }
        let field_value = match parts[..] {
            ["kernel", "hostname"] => spec.hostname().as_ref().map(|v| ("hostname", v)),
            ["kernel", "domainname"] => spec.domainname().as_ref().map(|v| ("domainname", v)),
            _ => None,
        };
        if let Some((name, v)) = field_value.filter(|(_, v)| !v.is_empty()) {
            if v.as_str() != value.trim_end_matches('\n') {
                return Err(invalid(&field, format!("conflicts with {name} {v:?}")));
            }
        }
    }
    Ok(())
}

/// `hostname` and `domainname` are set in a uts namespace of the container's own.
fn check_uts(spec: &Spec) -> Result<(), ConfigError> {
    for (field, value) in [
        ("hostname", spec.hostname()),
        ("domainname", spec.domainname()),
    ] {
        if value.as_ref().is_some_and(|v| !v.is_empty())
            && !own_namespace(spec, LinuxNamespaceType::Uts)?
        {
            return Err(invalid(
                field,
                "setting it needs a uts namespace of the container's own (new, or joined by path)",
            ));
        }
    }
    Ok(())
}

/// Without a mount namespace of its own the container shares the runtime's mount table:
/// its mounts are made under the rootfs only (`rootfs::host_mounts`), which a new user
/// namespace cannot do (it owns no mount namespace), so with one every field that needs
/// a mount is refused by name. `process.terminal` is refused without a mount namespace.
fn check_no_mount_ns(spec: &Spec) -> Result<(), ConfigError> {
    if namespace(spec, LinuxNamespaceType::Mount).is_some() {
        return Ok(());
    }
    if spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
    {
        return Err(invalid(
            "process.terminal",
            "needs a mount namespace in linux.namespaces",
        ));
    }
    if !new_namespace(spec, LinuxNamespaceType::User) {
        return Ok(());
    }
    let why = "needs a mount namespace in linux.namespaces with a new user namespace (it cannot mount in the runtime's)";
    if spec.mounts().as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(invalid("mounts", why));
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        return Err(invalid("root.readonly", why));
    }
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let nonempty = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    if nonempty(linux.masked_paths()) {
        return Err(invalid("linux.maskedPaths", why));
    }
    if nonempty(linux.readonly_paths()) {
        return Err(invalid("linux.readonlyPaths", why));
    }
    if linux.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(invalid("linux.devices", why));
    }
    if linux
        .rootfs_propagation()
        .as_ref()
        .is_some_and(|p| !p.is_empty())
    {
        return Err(invalid("linux.rootfsPropagation", why));
    }
    Ok(())
}

/// All the checks of this module.
pub fn validate(spec: &Spec) -> Result<(), ConfigError> {
    check_uts(spec)?;
    check_sysctls(spec)?;
    check_no_mount_ns(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_paths_follow_sysctl_d() {
        let p = |k| sysctl_path(k).map(|p| p.to_string_lossy().into_owned());
        assert_eq!(
            p("net.ipv4.ip_forward").as_deref(),
            Some("net/ipv4/ip_forward")
        );
        assert_eq!(
            p("net/ipv4/ip_forward").as_deref(),
            Some("net/ipv4/ip_forward")
        );
        assert_eq!(
            p("net.ipv4.conf.eno2/100.rp_filter").as_deref(),
            Some("net/ipv4/conf/eno2.100/rp_filter")
        );
        for bad in [
            "net/../kernel/core_pattern",
            "net..x",
            "",
            "net.",
            "/net",
            "net/./x",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn sysctls_are_classified_by_namespace() {
        let c = |k: &str| {
            let p = sysctl_path(k).unwrap();
            let parts: Vec<&str> = p.to_str().unwrap().split('/').collect();
            isolating_namespace(&parts)
        };
        assert_eq!(c("kernel.shm_rmid_forced"), Some(LinuxNamespaceType::Ipc));
        assert_eq!(c("kernel.sem"), Some(LinuxNamespaceType::Ipc));
        assert_eq!(c("fs.mqueue.queues_max"), Some(LinuxNamespaceType::Ipc));
        assert_eq!(c("net.core.somaxconn"), Some(LinuxNamespaceType::Network));
        assert_eq!(c("kernel.domainname"), Some(LinuxNamespaceType::Uts));
        assert_eq!(c("kernel.core_pattern"), None);
        assert_eq!(c("kernel.shm_next_id.x"), None);
        assert_eq!(c("vm.overcommit_memory"), None);
        assert_eq!(c("fs.file-max"), None);
    }
}
