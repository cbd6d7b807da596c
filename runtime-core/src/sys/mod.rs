//! The raw syscall layer: with `cgroups::sys` (bpf, eventfd, inotify) the only place
//! in casulo-core with `unsafe`.
//!
//! Every function here is a thin, documented wrapper over one syscall that nix 0.29
//! does not offer in the form the runtime needs (fd-returning `openat2`, `clone3`
//! with `CLONE_PARENT`/`CLONE_INTO_CGROUP`, pidfds, `close_range`, `fork` through
//! libc so its atfork handlers run). No allocation happens in here, so the wrappers
//! are safe to call in a freshly forked child.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

mod exe;
pub mod mount_api;
mod security;
pub use exe::*;
pub use security::*;
pub mod numa;

/// Result of the syscall layer: the raw errno.
pub type SysResult<T> = Result<T, Errno>;

fn check(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// `RESOLVE_*` flags of openat2(2).
pub mod resolve {
    /// Block traversal of mount points.
    pub const NO_XDEV: u64 = 0x01;
    /// Block magic links (/proc/<pid>/fd/…).
    pub const NO_MAGICLINKS: u64 = 0x02;
    /// Block all symlinks.
    pub const NO_SYMLINKS: u64 = 0x04;
    /// Refuse to leave the dirfd's tree.
    pub const BENEATH: u64 = 0x08;
    /// Treat the dirfd as the root: `..` and absolute symlinks stay inside it.
    pub const IN_ROOT: u64 = 0x10;
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2): opens `path` relative to `dir` with the `resolve` restrictions.
pub fn openat2(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> SysResult<OwnedFd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve,
    };
    loop {
        // SAFETY: `path` is a valid C string and `how` a properly sized open_how that
        // outlives the call; the kernel returns a new fd that we own.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match check(ret) {
            // SAFETY: the kernel just returned this fd to us; nobody else owns it.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// open(2) of an absolute or cwd-relative path, always `O_CLOEXEC`.
pub fn open(path: &CStr, flags: i32, mode: u32) -> SysResult<OwnedFd> {
    // SAFETY: valid C string; the returned fd is new and owned by us.
    let fd =
        check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) as libc::c_long })?;
    // SAFETY: fresh fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// openat(2) relative to `dir`, always `O_CLOEXEC` (for trusted, runtime-owned paths).
pub fn openat(dir: BorrowedFd<'_>, path: &CStr, flags: i32, mode: u32) -> SysResult<OwnedFd> {
    // SAFETY: valid dirfd and C string; the returned fd is new and owned by us.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            path.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode,
        ) as libc::c_long
    })?;
    // SAFETY: fresh fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Outcome of [`fork`].
pub enum Fork {
    /// In the parent, with the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// fork(2) through glibc, so its atfork handlers leave malloc usable in the child even
/// when the caller has other threads.
pub fn fork() -> SysResult<Fork> {
    // SAFETY: glibc's fork runs its atfork handlers; the child only continues on the
    // calling thread, and the callers keep the child to code that takes no lock another
    // thread of the parent could hold (no stdio locks, no Mutex shared with other threads).
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(Errno::last()),
        0 => Ok(Fork::Child),
        p => Ok(Fork::Parent(p)),
    }
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (not yet in libc 0.2's constants on every version).
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3(2) without a new stack (fork-like). `flags` may hold namespace flags,
/// `CLONE_PARENT` and `CLONE_INTO_CGROUP` (then `cgroup` is the cgroup dir fd).
/// Returns `Fork::Child` in the new process.
///
/// Must only be called from a single-threaded process (the create path calls it from
/// the forked helper), because the child gets a copy of this one thread only.
pub fn clone3(
    flags: u64,
    exit_signal: Option<i32>,
    cgroup: Option<BorrowedFd<'_>>,
) -> SysResult<Fork> {
    let args = CloneArgs {
        flags,
        exit_signal: exit_signal.map_or(0, |s| s as u64),
        cgroup: cgroup.map_or(0, |fd| fd.as_raw_fd() as u64),
        ..Default::default()
    };
    // SAFETY: a fork-like clone3 (no stack, no CLONE_VM): the child continues on a copy
    // of this thread's stack, exactly as after fork(2). `args` is valid for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match check(ret)? {
        0 => Ok(Fork::Child),
        p => Ok(Fork::Parent(p as i32)),
    }
}

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> SysResult<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; returns a new fd we own.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: fresh fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_send_signal(2): signals exactly the process the pidfd refers to.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> SysResult<()> {
    // SAFETY: valid pidfd, null siginfo (kernel fills it in), no flags.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}

/// close_range(2) with `CLOSE_RANGE_CLOEXEC`: marks every fd from `first` up close-on-exec.
pub fn cloexec_from(first: u32) -> SysResult<()> {
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    // SAFETY: only sets FD_CLOEXEC on fds; no memory is passed.
    check(unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) })?;
    Ok(())
}

/// Clears FD_CLOEXEC on `fd` (for fds handed to the container on purpose).
pub fn clear_cloexec(fd: RawFd) -> SysResult<()> {
    // SAFETY: fcntl on an integer fd; an invalid fd gives EBADF.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) as libc::c_long })?;
    Ok(())
}

/// setdomainname(2).
pub fn setdomainname(name: &[u8]) -> SysResult<()> {
    // SAFETY: pointer and length describe `name`.
    check(unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) as libc::c_long })?;
    Ok(())
}

/// prlimit(2) on the calling process.
pub fn setrlimit(resource: i32, soft: u64, hard: u64) -> SysResult<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is valid for the call; old limit not requested.
    check(unsafe {
        libc::prlimit(
            0,
            resource as libc::__rlimit_resource_t,
            &lim,
            std::ptr::null_mut(),
        ) as libc::c_long
    })?;
    Ok(())
}

/// Resets every signal's disposition to default and unblocks all signals (before execve).
pub fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL is always valid; errors for invalid numbers are ignored.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: an empty, initialised sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// `_exit(2)`: leaves a forked child without running the parent's atexit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no user-space state.
    unsafe { libc::_exit(code) }
}

/// Writes the whole buffer to a raw fd (for the child, where std's locked stdio must not be used).
pub fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> SysResult<()> {
    while !buf.is_empty() {
        // SAFETY: pointer/length describe `buf`.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

pub mod tty;

/// Takes ownership of an fd the kernel just installed for us (SCM_RIGHTS).
pub fn own_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was installed in this process by recvmsg(2) and nothing else
    // refers to it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// close_range(2) without flags: closes every fd from `first` to `last`.
pub fn close_range(first: u32, last: u32) -> SysResult<()> {
    // SAFETY: only closes fds of this process; the callers own every fd in the range
    // (see [`close_fds_except`]) and never use those numbers again.
    check(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) })?;
    Ok(())
}

/// Closes every fd of this process except those in `keep` (CVE-2024-21626: before a
/// container path is resolved, nothing reaching the host may stay open). Only for the
/// container's init and exec child, which own every fd they hold and never drop an
/// `OwnedFd` of a closed number afterwards.
pub fn close_fds_except(keep: &[RawFd]) -> SysResult<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|f| **f >= 0)
        .map(|f| *f as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut next = 0u32;
    for k in keep {
        if k > next {
            close_range(next, k - 1)?;
        }
        next = k + 1;
    }
    close_range(next, u32::MAX)
}

/// execveat(2) of `fd` itself (`AT_EMPTY_PATH`): the file resolved and opened before,
/// not a path looked up again. Returns only on failure.
pub fn execveat_fd(
    fd: BorrowedFd<'_>,
    argv: &[std::ffi::CString],
    envp: &[std::ffi::CString],
) -> Errno {
    let args: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let env: Vec<*const libc::c_char> = envp
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    // SAFETY: `args` and `env` are NULL-terminated arrays of pointers to C strings that
    // outlive the call; the path is the empty C string, as AT_EMPTY_PATH requires.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            args.as_ptr(),
            env.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Errno::last()
}
