//! The new mount API (Linux 5.2+, mount_setattr 5.12+): open_tree(2), move_mount(2),
//! mount_setattr(2). Constants are spelled here because libc 0.2 does not carry all of
//! them; values from include/uapi/linux/mount.h and fcntl.h.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{check, SysResult};

/// open_tree(2): clone the mount (tree) instead of opening it in place.
pub const OPEN_TREE_CLONE: u32 = 1;
/// `AT_RECURSIVE`: the whole subtree (open_tree, mount_setattr).
pub const AT_RECURSIVE: u32 = 0x8000;
/// `AT_EMPTY_PATH`: operate on the fd itself.
pub const AT_EMPTY_PATH: u32 = 0x1000;
/// move_mount(2): the source is the fd itself.
pub const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x04;
/// move_mount(2): the target is the fd itself.
pub const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;

/// `MOUNT_ATTR_*` bits of mount_setattr(2).
pub mod attr {
    /// Read-only.
    pub const RDONLY: u64 = 0x1;
    /// Ignore set-user/group-id bits.
    pub const NOSUID: u64 = 0x2;
    /// No device access.
    pub const NODEV: u64 = 0x4;
    /// No program execution.
    pub const NOEXEC: u64 = 0x8;
    /// The access-time field (a value, not a bit set: clear it to set one of the three).
    pub const ATIME_MASK: u64 = 0x70;
    /// Relative atime updates (the value 0 of the atime field).
    pub const RELATIME: u64 = 0x00;
    /// No atime updates.
    pub const NOATIME: u64 = 0x10;
    /// Always update atime.
    pub const STRICTATIME: u64 = 0x20;
    /// No directory atime updates.
    pub const NODIRATIME: u64 = 0x80;
    /// Idmapped mount (with `userns_fd`).
    pub const IDMAP: u64 = 0x10_0000;
    /// Do not follow symlinks.
    pub const NOSYMFOLLOW: u64 = 0x20_0000;
}

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MountAttr {
    /// Attributes to set.
    pub attr_set: u64,
    /// Attributes to clear.
    pub attr_clr: u64,
    /// Propagation type (`MS_SHARED`, …), 0 for unchanged.
    pub propagation: u64,
    /// A user namespace fd for `MOUNT_ATTR_IDMAP`.
    pub userns_fd: u64,
}

/// open_tree(2) of `path` relative to `dir` (or of `dir` itself with an empty path and
/// `AT_EMPTY_PATH`); always close-on-exec. With `OPEN_TREE_CLONE` the result is a
/// detached copy of the mount (tree) that [`move_mount`] can attach.
pub fn open_tree(dir: Option<BorrowedFd<'_>>, path: &CStr, flags: u32) -> SysResult<OwnedFd> {
    let dfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let flags = flags | libc::O_CLOEXEC as u32;
    // SAFETY: `path` is a valid C string for the call; the kernel returns a new fd
    // that we own.
    let fd = check(unsafe { libc::syscall(libc::SYS_open_tree, dfd, path.as_ptr(), flags) })?;
    // SAFETY: fresh fd from the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// move_mount(2) of the detached or attached mount `from` onto the file `to` (both fds,
/// `MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH`): no path is resolved.
pub fn move_mount(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> SysResult<()> {
    let flags = MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH;
    // SAFETY: two valid fds and two empty C strings; no memory is written.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            flags,
        )
    })?;
    Ok(())
}

/// mount_setattr(2) on the mount `fd` is on (`AT_EMPTY_PATH`), and every mount below
/// it with `recursive`.
pub fn mount_setattr(fd: BorrowedFd<'_>, recursive: bool, attr: &MountAttr) -> SysResult<()> {
    let mut flags = AT_EMPTY_PATH;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: valid fd, empty C string, and `attr` a properly sized mount_attr that
    // outlives the call (the kernel only reads it).
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(())
}
