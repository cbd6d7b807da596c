//! The few raw syscalls the benchmark needs (the only `unsafe` of the bench).

use std::ffi::CString;
use std::io;

/// Makes this process a child subreaper, so the inits of containers created by
/// `create` (whose runtime exits) are reparented to the bench, which reaps them.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes plain integers.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    check(r)
}

/// Enters a new mount namespace whose mounts are all private (as `unshare -m` does),
/// so nothing done in it propagates to the host.
pub fn private_mount_namespace() -> io::Result<()> {
    // SAFETY: unshare takes a flag word; the bench is still single-threaded here.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
    let root = CString::new("/").expect("no NUL");
    // SAFETY: valid NUL-terminated path; null source/fstype/data are allowed for a
    // propagation change.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    })
}

/// Lazily unmounts `path` (call only inside the private mount namespace).
pub fn umount_detach(path: &str) -> io::Result<()> {
    let p = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid NUL-terminated path.
    check(unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) })
}

/// Mounts an empty tmpfs on `path` (call only inside the private mount namespace).
pub fn mount_tmpfs(path: &str) -> io::Result<()> {
    let p = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fs = CString::new("tmpfs").expect("no NUL");
    let data = CString::new("mode=755").expect("no NUL");
    // SAFETY: valid NUL-terminated strings for the duration of the call.
    check(unsafe {
        libc::mount(
            fs.as_ptr(),
            p.as_ptr(),
            fs.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            data.as_ptr().cast(),
        )
    })
}

/// Waits for child `pid`; returns its wait status and its peak RSS in KiB
/// (`ru_maxrss` of wait4, which covers the child and the descendants it reaped).
pub fn wait4(pid: i32) -> io::Result<(i32, i64)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and ru are valid for writes for the duration of the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            return Ok((status, ru.ru_maxrss));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reaps every exited child without blocking (reparented container inits).
pub fn reap_zombies() {
    loop {
        let mut status = 0;
        // SAFETY: status is valid for writes.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r <= 0 {
            return;
        }
    }
}

/// True while `pid` exists (possibly as a zombie that is not ours).
pub fn exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// True when this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn check(r: i32) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
