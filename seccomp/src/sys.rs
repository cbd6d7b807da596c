//! The crate's only `unsafe` code: thin wrappers over seccomp(2), the notify
//! ioctls, SCM_RIGHTS messaging, and (for tests) fork/waitpid and raw syscalls.
//! None of the runtime-path functions allocate.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use libc::sock_filter;

/// `SECCOMP_SET_MODE_FILTER`
const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, prog). Returns the listener fd when
/// `new_listener` (the kernel returns it instead of 0).
pub(crate) fn seccomp_set_mode_filter(
    prog: &[sock_filter],
    flags: u32,
    new_listener: bool,
) -> io::Result<Option<OwnedFd>> {
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_ptr() as *mut sock_filter,
    };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel only
    // reads the program during the call and copies it.
    let r = cvt(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            &fprog as *const libc::sock_fprog,
        )
    })?;
    if new_listener {
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER the return value is a fresh
        // file descriptor that nothing else owns.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(r as RawFd) }))
    } else {
        Ok(None)
    }
}

/// Connects a `SOCK_STREAM` unix socket to `path` without allocating.
pub(crate) fn connect_unix(path: &Path) -> io::Result<OwnedFd> {
    let bytes = path.as_os_str().as_bytes();
    let mut addr = libc::sockaddr_un {
        sun_family: libc::AF_UNIX as libc::sa_family_t,
        sun_path: [0; 108],
    };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = cvt(
        unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) }
            as libc::c_long,
    )?;
    // SAFETY: `fd` is a new descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: `addr` is a valid sockaddr_un and `len` does not exceed its size.
    cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            len as libc::socklen_t,
        )
    } as libc::c_long)?;
    Ok(fd)
}

/// Room for one `SCM_RIGHTS` control message carrying one fd, 8-byte aligned.
#[repr(C, align(8))]
struct CmsgBuf([u8; 32]);

/// sendmsg(2) of `data` with `fd` attached as `SCM_RIGHTS`.
pub(crate) fn send_with_fd(sock: BorrowedFd, data: &[u8], fd: BorrowedFd) -> io::Result<()> {
    let mut sent = 0;
    while sent == 0 || sent < data.len() {
        let rest = &data[sent..];
        let mut cbuf = CmsgBuf([0; 32]);
        let mut iov = libc::iovec {
            iov_base: rest.as_ptr() as *mut libc::c_void,
            iov_len: rest.len(),
        };
        // SAFETY: an all-zero msghdr is valid; the pointers are set below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if sent == 0 {
            // The fd goes with the first chunk only.
            // SAFETY: CMSG_SPACE is a pure size computation.
            let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
            assert!(space <= cbuf.0.len());
            msg.msg_control = cbuf.0.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = space as _;
            // SAFETY: msg_control points at `space` zeroed, aligned bytes, so
            // CMSG_FIRSTHDR returns a header inside `cbuf` with room for one fd.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd.as_raw_fd());
            }
        }
        // SAFETY: `msg` references `iov` and `cbuf`, both alive for the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 && data.is_empty() {
            break;
        }
        sent += n as usize;
    }
    Ok(())
}

/// recvmsg(2) into `buf`, returning the byte count and an `SCM_RIGHTS` fd if one came.
pub fn recv_with_fd(sock: BorrowedFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut cbuf = CmsgBuf([0; 32]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the pointers are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = cbuf.0.len() as _;
    // SAFETY: `msg` references `iov` (over `buf`) and `cbuf`, alive for the call.
    let n = cvt(
        unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) }
            as libc::c_long,
    )?;
    let mut fd = None;
    // SAFETY: the kernel filled msg_control/msg_controllen; CMSG_FIRSTHDR/NXTHDR
    // walk only within them, and SCM_RIGHTS data holds fds we now own.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd);
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, fd))
}

/// `SECCOMP_IOCTL_NOTIF_RECV`: waits for the next notification on a listener.
pub fn notif_recv(listener: BorrowedFd) -> io::Result<libc::seccomp_notif> {
    let mut n = libc::seccomp_notif {
        id: 0,
        pid: 0,
        flags: 0,
        data: libc::seccomp_data {
            nr: 0,
            arch: 0,
            instruction_pointer: 0,
            args: [0; 6],
        },
    };
    // SAFETY: `n` is a zeroed seccomp_notif, as the ioctl requires, and lives
    // across the call.
    cvt(unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV as _,
            &mut n as *mut libc::seccomp_notif,
        )
    } as libc::c_long)?;
    Ok(n)
}

/// `SECCOMP_IOCTL_NOTIF_SEND`: answers notification `id`; the syscall returns `val`
/// when `error` is 0, else fails with `-error` (a negative errno, e.g. `-EPERM`).
pub fn notif_send(listener: BorrowedFd, id: u64, val: i64, error: i32) -> io::Result<()> {
    let resp = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags: 0,
    };
    // SAFETY: `resp` is a valid seccomp_notif_resp living across the call.
    cvt(unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND as _,
            &resp as *const libc::seccomp_notif_resp,
        )
    } as libc::c_long)?;
    Ok(())
}

/// How a forked child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEnd {
    /// `_exit(code)`
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

/// Forks; the child runs `f` and `_exit`s with its result (101 on panic), and the
/// parent waits at most `timeout` (then kills the child). For tests and for trying
/// a filter out: `f` runs in a copy of a possibly multi-threaded process, so it
/// must not allocate or take locks.
pub fn fork_and_wait(f: impl FnOnce() -> i32, timeout: Duration) -> io::Result<ChildEnd> {
    // SAFETY: fork(2); the child only runs `f` then _exit, never returning into
    // the caller's stack frames.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: _exit(2) ends the child without running the parent's atexit hooks.
        unsafe { libc::_exit(code) };
    }
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if r == pid {
            return Ok(if libc::WIFSIGNALED(status) {
                ChildEnd::Signaled(libc::WTERMSIG(status))
            } else {
                ChildEnd::Exited(libc::WEXITSTATUS(status))
            });
        }
        if start.elapsed() > timeout {
            // SAFETY: kill(2)/waitpid(2) on our own, still unreaped child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Syscalls that tests may call with arbitrary arguments in a forked child.
#[doc(hidden)]
pub mod probe {
    use super::*;

    /// Syscalls whose effect is harmless whatever the arguments, or confined to the
    /// calling (throw-away) child: identity getters, sched_yield, unshare, keyctl
    /// (forced to KEYCTL_GET_KEYRING_ID), clone3 with a NULL argument, mount
    /// with NULL source/target/type, and numbers the kernel does not know.
    pub fn allowed(nr: libc::c_long) -> bool {
        [
            libc::SYS_getpid,
            libc::SYS_getppid,
            libc::SYS_getuid,
            libc::SYS_getgid,
            libc::SYS_geteuid,
            libc::SYS_getegid,
            libc::SYS_gettid,
            libc::SYS_getpriority,
            libc::SYS_sched_yield,
            libc::SYS_unshare,
            libc::SYS_keyctl,
            libc::SYS_clone3,
            libc::SYS_mount,
        ]
        .contains(&nr)
            || (1000..0x4000_0000).contains(&nr)
    }

    /// Calls syscall `nr` with `args`, returning the result or the errno. Refuses
    /// (EINVAL without calling) numbers outside [`allowed`]; `mount` and `clone3`
    /// get their pointer arguments forced to NULL.
    pub fn call(nr: libc::c_long, mut args: [u64; 6]) -> Result<i64, i32> {
        if !allowed(nr) {
            return Err(libc::EINVAL);
        }
        if nr == libc::SYS_mount {
            args[0] = 0;
            args[1] = 0;
            args[2] = 0;
            args[4] = 0;
        }
        if nr == libc::SYS_clone3 {
            args[0] = 0;
        }
        if nr == libc::SYS_keyctl {
            // KEYCTL_GET_KEYRING_ID without create: the keyrings are shared with
            // the parent, so nothing else.
            args[0] = 0;
            args[2] = 0;
        }
        // SAFETY: `nr` is one of the syscalls above, none of which dereferences
        // a user pointer with the arguments as adjusted.
        let r = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
        if r < 0 {
            Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(r)
        }
    }

    /// Opens `/dev/null` for writing with openat(2) (no allocation).
    pub fn open_devnull() -> Result<OwnedFd, i32> {
        // SAFETY: the path is a NUL-terminated static string.
        let fd = unsafe {
            libc::openat(
                libc::AT_FDCWD,
                c"/dev/null".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        // SAFETY: `fd` is a new descriptor owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// write(2) of `data` to `fd`.
    pub fn write(fd: BorrowedFd, data: &[u8]) -> Result<usize, i32> {
        // SAFETY: `data` is a valid buffer of `data.len()` bytes.
        let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if n < 0 {
            Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(n as usize)
        }
    }

    /// Whether no_new_privs is set on the calling thread (prctl PR_GET_NO_NEW_PRIVS).
    pub fn no_new_privs() -> bool {
        // SAFETY: PR_GET_NO_NEW_PRIVS only reads a flag.
        unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 }
    }

    /// Sets RLIMIT_CORE to 0 so that a child killed by SIGSYS dumps no core.
    pub fn no_core_dumps() {
        let lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit(2) with a valid rlimit.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &lim) };
    }
}
