//! The syscalls behind [`crate::exe`]: a detached read-only bind mount of a file
//! (`open_tree` + `mount_setattr`) and `execveat` of an fd.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::{check, SysResult};

/// open_tree(2): make a detached copy of the mount (a bind mount of what `path` names).
const OPEN_TREE_CLONE: u32 = 1;
/// mount_setattr(2): make the mount read-only.
const MOUNT_ATTR_RDONLY: u64 = 0x1;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached bind mount of the file `path` names (magic links followed, so
/// `/proc/self/exe` gives the running binary), made read-only, as a close-on-exec fd.
/// Needs CAP_SYS_ADMIN over the caller's mount namespace. The mount is attached
/// nowhere: nobody can remount it writable, and it goes away with its last user.
pub fn readonly_bind_of(path: &CStr) -> SysResult<OwnedFd> {
    // SAFETY: `path` is a valid C string for the duration of the call; the kernel
    // returns a new fd that we own.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as u32,
        )
    };
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(check(ret)? as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the empty path is a valid C string, `attr` is a properly sized
    // mount_attr (version 0) that outlives the call, `fd` is open.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret)?;
    Ok(fd)
}

/// memfd_create(2) with `MFD_CLOEXEC | MFD_ALLOW_SEALING`.
pub fn sealable_memfd(name: &CStr) -> SysResult<OwnedFd> {
    // SAFETY: `name` is a valid C string for the duration of the call.
    let ret =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if ret < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

extern "C" {
    /// The ELF header: start of the first (read-only, file-backed) load segment.
    static __ehdr_start: u8;
    /// The end of the code segment.
    static etext: u8;
}

/// `openat(dirfd, path, flags)` for an open that may block for long (the waiting init's
/// exec fifo), first dropping this process's page table entries for its binary's
/// read-only part (headers, read-only data, code: from the ELF header to the end of the
/// code), so that while it blocks it holds none of those pages; the code that runs
/// afterwards is faulted back in from the page cache. Those pages are never written
/// (the relocated data lies past `etext`), so nothing is lost. Between the two calls
/// only this function's tail and `syscall` run (few pages faulted back).
pub fn openat_released(dirfd: BorrowedFd<'_>, path: &CStr, flags: i32) -> SysResult<OwnedFd> {
    let start = std::ptr::addr_of!(__ehdr_start) as usize;
    let end = std::ptr::addr_of!(etext) as usize;
    let page = 4096;
    let (start, end) = (start & !(page - 1), end & !(page - 1));
    // SAFETY: plain call into the allocator, which returns freed heap pages to the
    // kernel; nothing of ours is touched.
    unsafe { libc::malloc_trim(0) };
    if end > start {
        // SAFETY: the range lies in this binary's read-only file mappings (page-aligned,
        // the last partial page left alone); MADV_DONTNEED on them only unmaps page
        // cache pages, which the next access maps again. Failure changes nothing.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
    // SAFETY: `path` is a valid C string for the call; a returned fd is ours.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_openat,
            dirfd.as_raw_fd(),
            path.as_ptr(),
            flags | libc::O_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: a fresh fd from the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
