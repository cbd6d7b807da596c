//! The process-side steps shared by the container init and the exec child: the fds
//! closed before any container path resolves and marked close-on-exec after
//! (CVE-2024-21626 class); the executable resolved inside the container (never through a
//! magic link, with no fd reaching the host open any more) and exec'd through the fd it
//! resolved to; `HOME` filled in from the container's own /etc/passwd; the seccomp
//! filter, user and no_new_privs in their one order.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::stat::SFlag;

use super::channel::{Channel, Msg};
use crate::rootfs::paths;
use crate::security::Credentials;
use crate::sys;
use crate::ChildError;

/// `process.args[0]` resolved inside the container.
pub(crate) struct Executable {
    fd: OwnedFd,
    /// The path it was found at (a `#!` script is exec'd by it, see [`exec`]).
    path: CString,
}

fn errno_text(e: Errno) -> String {
    match e {
        Errno::ELOOP => {
            "operation not permitted: it crosses a /proc magic link or a symlink loop".into()
        }
        e => e.desc().to_lowercase(),
    }
}

/// An exec error with docker's texts (ELOOP explained), the errno kept.
fn exec_error(what: String, e: Errno) -> ChildError {
    ChildError {
        message: format!("{what}: {}", errno_text(e)),
        errno: Some(e),
    }
}

fn open_exe(root: BorrowedFd<'_>, p: &Path) -> Result<OwnedFd, Errno> {
    let fd = paths::open_container_path(root, p)?;
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    if SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) != SFlag::S_IFREG
        || st.st_mode & 0o111 == 0
    {
        return Err(Errno::EACCES);
    }
    Ok(fd)
}

/// Resolves `process.args[0]` as the container sees it: a path when it holds a `/`,
/// else a search of the process's PATH. Errors use the texts the docker CLI matches.
pub(crate) fn find_executable(
    root: BorrowedFd<'_>,
    argv: &[CString],
    envp: &[CString],
) -> Result<Executable, ChildError> {
    use std::os::unix::ffi::OsStrExt;
    let arg0 = argv[0].to_string_lossy().into_owned();
    if arg0.contains('/') {
        return match open_exe(root, Path::new(&arg0)) {
            Ok(fd) => Ok(Executable {
                fd,
                path: argv[0].clone(),
            }),
            Err(e) => Err(exec_error(format!("exec: {arg0:?}: stat {arg0}"), e)),
        };
    }
    let path = envp
        .iter()
        .find_map(|e| {
            e.to_bytes()
                .strip_prefix(b"PATH=")
                .map(|p| String::from_utf8_lossy(p).into_owned())
        })
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(&arg0);
        if let Ok(fd) = open_exe(root, &cand) {
            let path = CString::new(cand.as_os_str().as_bytes())
                .map_err(|_| ChildError::msg("exec: path has a NUL"))?;
            return Ok(Executable { fd, path });
        }
    }
    Err(ChildError {
        message: format!("exec: {arg0:?}: executable file not found in $PATH"),
        errno: Some(Errno::ENOENT),
    })
}

/// `envp` with `HOME` set when it is missing or empty (as runc does): the home of `uid`
/// in the container's /etc/passwd, else `/`.
pub(crate) fn with_home(root: BorrowedFd<'_>, uid: u32, envp: &[CString]) -> Vec<CString> {
    let mut out: Vec<CString> = envp
        .iter()
        .filter(|e| e.to_bytes() != b"HOME=")
        .cloned()
        .collect();
    if !out.iter().any(|e| e.to_bytes().starts_with(b"HOME=")) {
        let home = paths::home_of(root, uid);
        if let Ok(c) = CString::new(format!("HOME={home}")) {
            out.push(c);
        }
    }
    out
}

/// Execs the resolved file through its fd (execveat, `AT_EMPTY_PATH`). The fd is
/// close-on-exec, so nothing of it reaches the process; for a `#!` script the kernel
/// then refuses (ENOENT: the interpreter could not reopen `/dev/fd/N`), and the script
/// is exec'd by the path it was found at, which resolved inside the container a moment
/// ago with no fd reaching the host left open. Returns only on failure, with the text.
pub(crate) fn exec(exe: &Executable, argv: &[CString], envp: &[CString]) -> ChildError {
    let mut e = sys::execveat_fd(exe.fd.as_fd(), argv, envp);
    if e == Errno::ENOENT {
        e = nix::unistd::execve(&exe.path, argv, envp).unwrap_err();
    }
    let arg0 = argv[0].to_string_lossy();
    exec_error(format!("exec: {arg0:?}"), e)
}

/// CVE-2024-21626: closes every fd but stdio, the channel, `--preserve-fds` (3..3+N)
/// and `extra`, so no fd reaching the host is open while container paths resolve.
pub(crate) fn close_fds(
    chan: &Channel,
    preserve_fds: u32,
    extra: &[RawFd],
) -> Result<(), ChildError> {
    let mut keep: Vec<RawFd> = vec![0, 1, 2, chan.as_fd().as_raw_fd()];
    keep.extend((3..3 + preserve_fds).map(|f| f as RawFd));
    keep.extend_from_slice(extra);
    sys::close_fds_except(&keep).map_err(|e| ChildError::sys("close_range", e))
}

/// Marks every fd above stdio and the preserved ones close-on-exec; the preserved ones
/// are handed over open.
pub(crate) fn mark_cloexec(preserve: u32) -> Result<(), ChildError> {
    for fd in 3..3 + preserve {
        match sys::clear_cloexec(fd as i32) {
            Ok(()) | Err(Errno::EBADF) => {}
            Err(e) => return Err(ChildError::sys(format!("--preserve-fds: fd {fd}"), e)),
        }
    }
    sys::cloexec_from(3 + preserve).map_err(|e| ChildError::sys("close_range", e))
}

/// Installs the filter; a notify listener goes to the runtime over `chan` (it hands it
/// to the agent at `listenerPath`), and this process's copy is closed.
pub(crate) fn install_seccomp(
    f: &casulo_seccomp::Filter,
    chan: Option<&Channel>,
) -> Result<(), ChildError> {
    let listener = f
        .install()
        .map_err(|e| ChildError::context("linux.seccomp", &e))?;
    if let Some(fd) = listener {
        let chan = chan.ok_or(ChildError::msg("linux.seccomp: unexpected notify listener"))?;
        chan.send_fd(&Msg::Listener, fd.as_fd())
            .map_err(|e| ChildError::sys("linux.seccomp: sending the listener", e))?;
    }
    Ok(())
}

/// The steps right before execve, the same for the init and an exec'd process: signals
/// reset, then (issue 13 class 1: after the filter only the user switch, no_new_privs
/// and the exec) the seccomp filter, the user and capabilities, no_new_privs. Without
/// no_new_privs installing the filter needs CAP_SYS_ADMIN: before the user switch drops
/// it (as runc does); with it, right before the exec.
pub(crate) fn become_process(
    creds: &Credentials,
    filter: Option<&casulo_seccomp::Filter>,
    chan: Option<&Channel>,
) -> Result<(), ChildError> {
    sys::reset_signals();
    if let Some(f) = filter.filter(|_| !creds.no_new_privs()) {
        install_seccomp(f, chan)?;
    }
    creds.apply_user().map_err(|e| ChildError::of(&e))?;
    creds.apply_no_new_privs().map_err(|e| ChildError::of(&e))?;
    if let Some(f) = filter.filter(|_| creds.no_new_privs()) {
        install_seccomp(f, chan)?;
    }
    Ok(())
}
