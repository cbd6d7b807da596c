//! A container without a mount namespace of its own (none listed in `linux.namespaces`)
//! shares the runtime's mount table. As runc does then, its root filesystem is still set
//! up (mounts, devices, masked and readonly paths, a read-only root) and entered with
//! `chroot` instead of `pivot_root`, but only under the rootfs:
//!
//! - before the clone, the runtime binds the rootfs onto itself (`open_tree` +
//!   `move_mount`, fd to fd), makes that mount and everything below it `MS_SLAVE`, and
//!   records its mount id in the state directory (`rootfs.mounts`);
//! - the init never changes the propagation of `/` or of any other host mount; it
//!   resolves every target in-root as with a namespace of its own, and makes each bind
//!   a slave right after it is made, so nothing it mounts propagates to the host's peers;
//! - `delete` (and a failed create) detaches that one mount with everything below it
//!   (`MNT_DETACH`), after checking the mount at the rootfs is still the recorded one.
//!
//! A config that asks for nothing mounted costs nothing here: no bind, no record.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::unistd::{chdir, chroot, fchdir};
use oci_spec::runtime::Spec;

use super::{options, paths, sys_err, RootfsError, RootfsPlan};
use crate::sys::mount_api::{self, MountAttr};

/// The record of the rootfs bind in the state directory: `<mount id> <rootfs>`.
const RECORD: &str = "rootfs.mounts";

type Result<T> = std::result::Result<T, RootfsError>;

/// True when the container is in the runtime's mount namespace and its config asks for
/// anything that mounts: then the rootfs is bound onto itself first.
pub(crate) fn needed(spec: &Spec) -> bool {
    if crate::spec_util::namespace(spec, oci_spec::runtime::LinuxNamespaceType::Mount).is_some() {
        return false;
    }
    let nonempty = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    let linux = spec.linux().as_ref();
    spec.mounts().as_ref().is_some_and(|m| !m.is_empty())
        || spec.root().as_ref().and_then(|r| r.readonly()) == Some(true)
        || linux.is_some_and(|l| {
            nonempty(l.masked_paths())
                || nonempty(l.readonly_paths())
                || l.devices().as_ref().is_some_and(|d| !d.is_empty())
                || l.rootfs_propagation()
                    .as_ref()
                    .is_some_and(|p| !p.is_empty())
        })
}

fn open_dir(path: &Path) -> std::result::Result<OwnedFd, Errno> {
    crate::sys::open(&super::cpath(path), libc::O_PATH | libc::O_DIRECTORY, 0)
}

/// The id of the mount `fd` is on (`mnt_id` of its fdinfo, read through `proc`).
fn mount_id(proc: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> std::result::Result<u64, Errno> {
    let path = format!("self/fdinfo/{}", fd.as_raw_fd());
    let info = paths::open_proc(proc, Path::new(&path), libc::O_RDONLY)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(info), &mut text)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    text.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(Errno::EINVAL)
}

/// Whether `dir` records rootfs mounts for [`release`] to detach.
pub(crate) fn recorded(dir: &Path) -> bool {
    dir.join(RECORD).exists()
}

/// A file of the state directory could not be read or written (its errno kept).
fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError + '_ {
    move |e| {
        sys_err(path.display().to_string())(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    }
}

/// Runtime side, before the clone (state directory `dir` made): binds the rootfs onto
/// itself as a slave tree and records the mount. Nothing when [`needed`] is false.
pub(crate) fn prepare(dir: &Path, spec: &Spec, rootfs: &Path, proc: BorrowedFd<'_>) -> Result<()> {
    if !needed(spec) {
        return Ok(());
    }
    let what = format!("bind-mounting the rootfs {}", rootfs.display());
    let err = |e| sys_err(&what)(e);
    let below = open_dir(rootfs).map_err(err)?;
    let flags = mount_api::OPEN_TREE_CLONE | mount_api::AT_RECURSIVE | mount_api::AT_EMPTY_PATH;
    let tree = mount_api::open_tree(Some(below.as_fd()), c"", flags).map_err(err)?;
    mount_api::move_mount(tree.as_fd(), below.as_fd()).map_err(err)?;
    let mine = open_dir(rootfs).map_err(err)?;
    let id = mount_id(proc, mine.as_fd()).map_err(err)?;
    // Recorded right away: whatever fails next, delete (or the create's undo) detaches it.
    let record = dir.join(RECORD);
    std::fs::write(&record, format!("{id} {}\n", rootfs.display())).map_err(io_err(&record))?;
    let slave = MountAttr {
        propagation: MsFlags::MS_SLAVE.bits(),
        ..Default::default()
    };
    mount_api::mount_setattr(mine.as_fd(), true, &slave).map_err(err)
}

/// Runtime side, in `delete` and a failed create: detaches the rootfs mount recorded in
/// `dir` with everything below it. A mount at the rootfs that is not the recorded one
/// (unmounted already, or this runtime runs in another mount namespace) is left alone
/// with a warning.
/// `proc` is the runtime's verified procfs handle.
pub(crate) fn release(dir: &Path, proc: BorrowedFd<'_>, log: &crate::log::Logger) -> Result<()> {
    let record = dir.join(RECORD);
    let text = match std::fs::read_to_string(&record) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(&record)(e)),
    };
    let Some((id, rootfs)) = text.trim_end_matches('\n').split_once(' ') else {
        log.warn(&format!("{}: not a mount record", record.display()));
        return Ok(());
    };
    let id: u64 = id.parse().unwrap_or(0);
    let what = format!("unmounting the rootfs mounts of {rootfs}");
    let current = open_dir(Path::new(rootfs)).and_then(|fd| Ok((mount_id(proc, fd.as_fd())?, fd)));
    let fd = match current {
        Ok((now, fd)) if now == id => fd,
        Ok(_) => {
            log.warn(&format!(
                "{what}: the mount at {rootfs} is not the one this container made (mount {id}); left alone"
            ));
            return Ok(());
        }
        Err(e) => {
            log.warn(&format!("{what}: {}; left alone", e.desc().to_lowercase()));
            return Ok(());
        }
    };
    // Through the verified procfs handle: the magic link names exactly this mount.
    let path = format!(
        "/proc/self/fd/{}/self/fd/{}",
        proc.as_raw_fd(),
        fd.as_raw_fd()
    );
    nix::mount::umount2(path.as_str(), nix::mount::MntFlags::MNT_DETACH).map_err(sys_err(&what))?;
    let _ = std::fs::remove_file(&record);
    Ok(())
}

/// The init's side: the rootfs (the runtime's bind) set up as with a mount namespace of
/// its own, entered with `chroot`. The working directory is procfs while mounting.
pub(super) fn setup(plan: &RootfsPlan<'_>) -> Result<OwnedFd> {
    let root = open_dir(plan.rootfs).map_err(sys_err(format!(
        "opening the rootfs {}",
        plan.rootfs.display()
    )))?;
    fchdir(plan.proc_fd.as_raw_fd()).map_err(sys_err("entering procfs"))?;
    let m = super::mounter(
        plan,
        root.as_fd(),
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        true,
    );
    super::mount_all(plan, &m)?;
    (plan.before_pivot)().map_err(RootfsError::BeforePivot)?;
    fchdir(root.as_raw_fd()).map_err(sys_err("entering the rootfs"))?;
    chroot(".").map_err(sys_err("chroot"))?;
    fchdir(plan.proc_fd.as_raw_fd()).map_err(sys_err("entering procfs"))?;
    let prop = plan
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(options::propagation_mode);
    super::finish(plan, &m, root.as_fd(), prop)?;
    chdir("/").map_err(sys_err("chdir /"))?;
    Ok(root)
}
