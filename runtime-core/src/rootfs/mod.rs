//! The container's root filesystem (config.md "Root", "Mounts"; config-linux.md
//! "Devices", "Default Devices", "Rootfs Mount Propagation", "Masked Paths",
//! "Readonly Paths"). Runs in the container init, in its new mount namespace.
//!
//! Every path inside the rootfs is resolved with `RESOLVE_IN_ROOT`; every mount is
//! made onto an fd (`self/fd/N`, relative to a verified procfs directory that is the
//! working directory while mounting), so a symlink swapped in by the image cannot
//! send a mount outside the rootfs.

mod copyup;
mod devices;
pub(crate) mod host_mounts;
mod mounts;
pub mod options;
pub(crate) mod paths;
pub mod sources;

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, chroot, fchdir, pivot_root};
use oci_spec::runtime::Spec;

pub use mounts::CgroupHierarchy;
pub use paths::open_proc;
pub use sources::{MountSources, Source};

/// Errors of root filesystem setup; each names the object it was working on.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A syscall failed on the named object.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done, e.g. `mounts[2] (proc on /proc)`.
        what: String,
        /// The errno, printed in lower case as engines match it.
        #[source]
        source: ErrnoText,
    },
    /// The rootfs or the config asks for something the runtime refuses.
    #[error("{what}: {reason}")]
    Unsafe {
        /// The field or object, e.g. `mounts[2] (bind on /data)`.
        what: String,
        /// Why it is refused.
        reason: String,
    },
    /// A path resolved outside the container (CVE-2024-21626's kind).
    #[error("{what} resolves outside the container")]
    Outside {
        /// The field and path, e.g. `process.cwd /work`.
        what: String,
    },
    /// Resolving a path in the rootfs met a `/proc` magic link or a symlink loop (the
    /// resolver's ELOOP, kept as the source).
    #[error("{what}: operation not permitted: it crosses a /proc magic link or a symlink loop")]
    Crossing {
        /// The field and path, e.g. `process.cwd /work`.
        what: String,
        /// The errno (ELOOP).
        #[source]
        source: Errno,
    },
    /// An idmapped mount could not be set up (mount_setattr's errno kept as the source).
    #[error("{what}: idmapping {}: {source}{}", .src.display(), idmap_hint(.source.0))]
    Idmap {
        /// The mount, e.g. `mounts[2] (bind on /data)`.
        what: String,
        /// The mount's source on the host.
        src: std::path::PathBuf,
        /// The errno, printed in lower case as engines match it.
        #[source]
        source: ErrnoText,
    },
    /// A step the init syncs with the runtime on (joining the cgroup, hooks) failed.
    #[error(transparent)]
    BeforePivot(crate::ChildError),
}

/// An errno displayed the way engines match it ("no such file or directory").
#[derive(Debug)]
pub struct ErrnoText(pub Errno);

impl std::fmt::Display for ErrnoText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.desc().to_lowercase())
    }
}

impl std::error::Error for ErrnoText {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// A refusal of `what` for `reason`.
pub(crate) fn refused(what: impl Into<String>, reason: impl Into<String>) -> RootfsError {
    RootfsError::Unsafe {
        what: what.into(),
        reason: reason.into(),
    }
}

/// The hint an idmapping failure adds: EINVAL usually means the filesystem lacks support.
fn idmap_hint(e: Errno) -> &'static str {
    if e == Errno::EINVAL {
        " (the filesystem may not support idmapped mounts)"
    } else {
        ""
    }
}

/// Wraps an errno with the name of the object.
pub(crate) fn sys_err(what: impl Into<String>) -> impl FnOnce(Errno) -> RootfsError {
    let what = what.into();
    move |e| RootfsError::Sys {
        what,
        source: ErrnoText(e),
    }
}

type Result<T> = std::result::Result<T, RootfsError>;

/// Everything root filesystem setup needs, prepared by the runtime before the clone.
pub struct RootfsPlan<'a> {
    /// The container's configuration.
    pub spec: &'a Spec,
    /// Absolute host path of the rootfs.
    pub rootfs: &'a Path,
    /// The bundle directory (relative bind sources are relative to it).
    pub bundle: &'a Path,
    /// Bind sources the runtime opened (taken by their entries, the rest closed after
    /// the mounts).
    pub sources: &'a MountSources,
    /// A verified procfs root of the runtime's pid namespace.
    pub proc_fd: BorrowedFd<'a>,
    /// The container has a new user namespace (devices are bind-mounted, not made).
    pub userns: bool,
    /// `--no-pivot`: MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// The host's cgroup hierarchies, for `cgroup` mounts.
    pub cgroups: &'a [CgroupHierarchy],
    /// The container has a new cgroup namespace.
    pub cgroupns: bool,
    /// Waits until the process is in the container's cgroups (and enters its cgroup
    /// namespace); always called, before the first `cgroup` mount and before the device
    /// nodes (so before `before_pivot`). Must be idempotent: it may be called twice.
    pub in_cgroup: &'a dyn Fn() -> std::result::Result<(), crate::ChildError>,
    /// Runs after the mounts and devices, right before `pivot_root` (the hooks of
    /// runtime.md "Lifecycle" that must see the container before it is pivoted).
    pub before_pivot: &'a dyn Fn() -> std::result::Result<(), crate::ChildError>,
}

/// Builds the root filesystem and makes it the process's root. Returns an fd of the
/// new root (for later in-root lookups such as the cwd check).
pub fn setup(plan: &RootfsPlan<'_>) -> Result<OwnedFd> {
    if crate::spec_util::namespace(plan.spec, oci_spec::runtime::LinuxNamespaceType::Mount)
        .is_none()
    {
        return match host_mounts::needed(plan.spec) {
            true => host_mounts::setup(plan),
            false => chroot_only(plan),
        };
    }
    let linux = plan.spec.linux().as_ref();
    let prop = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(options::propagation_mode);
    // Keep the host's mounts from receiving ours: slave (or private) everything first.
    let pre = if prop.is_some_and(|p| p.contains(MsFlags::MS_PRIVATE)) {
        MsFlags::MS_PRIVATE | MsFlags::MS_REC
    } else {
        MsFlags::MS_SLAVE | MsFlags::MS_REC
    };
    mount(None::<&str>, "/", None::<&str>, pre, None::<&str>)
        .map_err(sys_err("making / a slave mount"))?;
    // pivot_root needs the new root to be a mount point.
    mount(
        Some(plan.rootfs),
        plan.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys_err(format!(
        "bind-mounting the rootfs {}",
        plan.rootfs.display()
    )))?;
    let root = crate::sys::open(&cpath(plan.rootfs), libc::O_PATH | libc::O_DIRECTORY, 0).map_err(
        sys_err(format!("opening the rootfs {}", plan.rootfs.display())),
    )?;
    fchdir(plan.proc_fd.as_raw_fd()).map_err(sys_err("entering procfs"))?;

    let m = mounter(plan, root.as_fd(), pre, false);
    mount_all(plan, &m)?;
    (plan.before_pivot)().map_err(RootfsError::BeforePivot)?;
    fchdir(plan.proc_fd.as_raw_fd()).map_err(sys_err("entering procfs"))?;
    if plan.no_pivot {
        move_root(plan.rootfs)?;
    } else {
        pivot(root.as_fd())?;
    }
    fchdir(plan.proc_fd.as_raw_fd()).map_err(sys_err("entering procfs"))?;
    finish(plan, &m, root.as_fd(), prop)?;
    chdir("/").map_err(sys_err("chdir /"))?;
    Ok(root)
}

/// The mounter of `plan` onto `root` (see [`mounts::Mounter`] for the two flags).
fn mounter<'a>(
    plan: &RootfsPlan<'a>,
    root: BorrowedFd<'a>,
    base_propagation: MsFlags,
    slave_binds: bool,
) -> mounts::Mounter<'a> {
    mounts::Mounter {
        root,
        userns: plan.userns,
        bundle: plan.bundle,
        sources: plan.sources,
        base_propagation,
        slave_binds,
    }
}

/// The config's mounts in order, then (in the container's cgroup by then) the devices.
fn mount_all(plan: &RootfsPlan<'_>, m: &mounts::Mounter<'_>) -> Result<()> {
    let mut dev_is_bind = false;
    for (i, entry) in plan.spec.mounts().iter().flatten().enumerate() {
        if matches!(entry.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            (plan.in_cgroup)().map_err(RootfsError::BeforePivot)?;
        }
        let is_dev_bind = m.mount_entry(i, entry, plan.cgroups, plan.cgroupns)?;
        dev_is_bind |= is_dev_bind;
    }
    plan.sources.clear();
    (plan.in_cgroup)().map_err(RootfsError::BeforePivot)?;
    if !dev_is_bind {
        let linux = plan.spec.linux().as_ref();
        devices::create(m, linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]))?;
    }
    Ok(())
}

/// After the root change (the working directory is procfs again): the root's
/// propagation, masked and readonly paths, a read-only root.
fn finish(
    plan: &RootfsPlan<'_>,
    m: &mounts::Mounter<'_>,
    root: BorrowedFd<'_>,
    prop: Option<MsFlags>,
) -> Result<()> {
    let linux = plan.spec.linux().as_ref();
    if let Some(p) = prop {
        mount(
            None::<&str>,
            &paths::proc_fd_path(root)[..],
            None::<&str>,
            p,
            None::<&str>,
        )
        .map_err(sys_err("linux.rootfsPropagation"))?;
    }
    if let Some(linux) = linux {
        m.mask_paths(linux.masked_paths().as_deref().unwrap_or(&[]))?;
        for p in linux.readonly_paths().iter().flatten() {
            m.readonly_path(Path::new(p))?;
        }
    }
    if plan
        .spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        m.remount_readonly(root, "root.readonly")?;
    }
    Ok(())
}

/// A container in the runtime's mount namespace (none listed): nothing is mounted and no
/// propagation is changed (the mount table is the host's); the init only chroots into the
/// rootfs, as runc does then. The config's mounts, devices, masked and readonly paths
/// were refused by `host_guard`.
fn chroot_only(plan: &RootfsPlan<'_>) -> Result<OwnedFd> {
    let root = crate::sys::open(&cpath(plan.rootfs), libc::O_PATH | libc::O_DIRECTORY, 0).map_err(
        sys_err(format!("opening the rootfs {}", plan.rootfs.display())),
    )?;
    (plan.in_cgroup)().map_err(RootfsError::BeforePivot)?;
    (plan.before_pivot)().map_err(RootfsError::BeforePivot)?;
    fchdir(root.as_raw_fd()).map_err(sys_err("entering the rootfs"))?;
    chroot(".").map_err(sys_err("chroot"))?;
    chdir("/").map_err(sys_err("chdir /"))?;
    Ok(root)
}

fn cpath(p: &Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// pivot_root(".", ".") into the new root, then detach the old root stacked on it.
fn pivot(root: BorrowedFd<'_>) -> Result<()> {
    let old = crate::sys::open(c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(sys_err("opening the old root"))?;
    fchdir(root.as_raw_fd()).map_err(sys_err("entering the rootfs"))?;
    pivot_root(".", ".").map_err(sys_err("pivot_root"))?;
    fchdir(old.as_raw_fd()).map_err(sys_err("entering the old root"))?;
    // The old root must not propagate the unmount back to the host.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys_err("making the old root a slave"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys_err("detaching the old root"))?;
    chdir("/").map_err(sys_err("chdir /"))
}

/// `--no-pivot`: move the rootfs mount onto / and chroot into it.
fn move_root(rootfs: &Path) -> Result<()> {
    chdir(rootfs).map_err(sys_err("entering the rootfs"))?;
    mount(
        Some(rootfs),
        "/",
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .map_err(sys_err("moving the rootfs to /"))?;
    chroot(".").map_err(sys_err("chroot"))?;
    chdir("/").map_err(sys_err("chdir /"))
}

/// Resolves `cwd` inside `root` and makes it the working directory; a cwd that is not a
/// directory inside the rootfs is refused (CVE-2024-21626), one that does not exist is
/// created in-root when `create` is set (as runc does for `process.cwd`).
pub fn enter_cwd(root: BorrowedFd<'_>, cwd: &Path, create: bool) -> Result<()> {
    let what = || format!("process.cwd {}", cwd.display());
    let fd = match paths::open_in_root(root, cwd, libc::O_DIRECTORY) {
        Err(Errno::ENOENT) if create => paths::mkdir_all(root, cwd, 0o755),
        r => r,
    };
    let fd = fd.map_err(|e| match e {
        Errno::ELOOP => RootfsError::Crossing {
            what: what(),
            source: e,
        },
        e => sys_err(what())(e),
    })?;
    fchdir(fd.as_raw_fd()).map_err(sys_err(what()))?;
    let here = nix::unistd::getcwd().map_err(sys_err(what()))?;
    if !here.starts_with("/") || here.to_string_lossy().starts_with("(unreachable)") {
        return Err(RootfsError::Outside { what: what() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusals that come from a syscall keep its errno as the source (an embedder
    /// and the init's channel see ELOOP / EINVAL), with the one-line texts unchanged.
    #[test]
    fn refusals_with_a_cause_keep_the_errno() {
        let e = RootfsError::Crossing {
            what: "process.cwd /x".into(),
            source: Errno::ELOOP,
        };
        assert_eq!(
            e.to_string(),
            "process.cwd /x: operation not permitted: it crosses a /proc magic link or a symlink loop"
        );
        assert_eq!(crate::ChildError::of(&e).errno, Some(Errno::ELOOP));
        let e = RootfsError::Idmap {
            what: "mounts[0] (bind on /data)".into(),
            src: "/srv".into(),
            source: ErrnoText(Errno::EINVAL),
        };
        assert_eq!(
            e.to_string(),
            "mounts[0] (bind on /data): idmapping /srv: invalid argument (the filesystem may not support idmapped mounts)"
        );
        assert_eq!(crate::ChildError::of(&e).errno, Some(Errno::EINVAL));
    }

    /// Validation refusals are field + reason; their texts are the ones before the split.
    #[test]
    fn refusals_keep_their_texts() {
        let e = refused("linux.devices[1].type", "\"a\" is not a device type");
        assert_eq!(
            e.to_string(),
            "linux.devices[1].type: \"a\" is not a device type"
        );
        let e = RootfsError::Outside {
            what: "process.cwd /x".into(),
        };
        assert_eq!(
            e.to_string(),
            "process.cwd /x resolves outside the container"
        );
    }
}
