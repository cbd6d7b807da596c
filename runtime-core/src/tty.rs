//! Terminals (config.md "process.terminal", runtime.md "console socket"): the pty is
//! allocated inside the container, from the container's own devpts instance, after the
//! root filesystem is in place; its master goes to the console socket with SCM_RIGHTS
//! (one message whose bytes are the name "/dev/ptmx", as runc sends it, which
//! containerd's shim and conmon read), and its slave becomes the process's stdio and
//! controlling terminal, and for the container init also /dev/console.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::SFlag;

use crate::rootfs::paths;
use crate::sys;

/// Errors of terminal setup.
#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    /// A syscall failed.
    #[error("{what}: {}", .errno.desc().to_lowercase())]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The errno.
        errno: Errno,
    },
    /// A pty end is not a character device of a devpts filesystem.
    #[error("{what} is not a devpts character device")]
    NotDevpts {
        /// `/dev/ptmx` or `the pty slave`.
        what: &'static str,
    },
    /// The rootfs's `/dev/console` is neither a regular file nor a device.
    #[error("/dev/console in the rootfs is not a regular file or a device (a symlink?): refusing to mount the console on it")]
    ConsoleTarget,
    /// `--console-socket` cannot be connected to.
    #[error("--console-socket {}: {}", .path.display(), crate::config::lower(.source))]
    ConsoleSocket {
        /// The socket.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The connected console socket could not be duplicated.
    #[error("console socket: {}", crate::config::lower(.0))]
    ConsoleClone(#[source] std::io::Error),
    /// A console socket for a process without a terminal (runc's text).
    #[error("cannot use console socket if runc will not detach or allocate tty")]
    SocketWithoutTerminal,
    /// A terminal without a console socket while detaching (runc's text).
    #[error("cannot allocate tty if runc will detach without setting console socket")]
    TerminalWithoutSocket,
}

fn sys_err(what: &'static str) -> impl FnOnce(Errno) -> TtyError {
    move |errno| TtyError::Sys { what, errno }
}

/// The bytes sent with the master fd.
pub(crate) const MASTER_NAME: &str = "/dev/ptmx";

/// devpts' statfs magic.
const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

/// A new pty from the current root's `/dev/ptmx` (the container's devpts once the root
/// is the container's): (master, slave). The slave is opened through the master
/// (`TIOCGPTPEER`), and both are checked to be devpts files.
pub(crate) fn open_pty() -> Result<(OwnedFd, OwnedFd), TtyError> {
    let master = sys::open(
        c"/dev/ptmx",
        libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        0,
    )
    .map_err(sys_err("opening /dev/ptmx"))?;
    sys::tty::unlock_pt(master.as_fd()).map_err(sys_err("unlocking the pty"))?;
    let slave = sys::tty::pt_peer(
        master.as_fd(),
        libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
    )
    .map_err(sys_err("opening the pty slave"))?;
    for (fd, what) in [(&master, "/dev/ptmx"), (&slave, "the pty slave")] {
        let st = nix::sys::statfs::fstatfs(fd).map_err(sys_err("statfs on the pty"))?;
        let (kind, _) = paths::file_type(fd.as_fd()).map_err(sys_err("stat on the pty"))?;
        if st.filesystem_type().0 as i64 != DEVPTS_SUPER_MAGIC || kind != SFlag::S_IFCHR {
            return Err(TtyError::NotDevpts { what });
        }
    }
    Ok((master, slave))
}

/// Sends a pty master over a connected unix socket, as runc does.
pub(crate) fn send_master(sock: BorrowedFd<'_>, master: BorrowedFd<'_>) -> Result<(), TtyError> {
    let fds = [master.as_raw_fd()];
    let iov = [IoSlice::new(MASTER_NAME.as_bytes())];
    loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            r => {
                return r
                    .map(|_| ())
                    .map_err(sys_err("sending the pty to the console socket"))
            }
        }
    }
}

/// Receives a pty master (or any fd) sent with SCM_RIGHTS; returns it and the name that
/// came with it.
pub fn recv_master(sock: BorrowedFd<'_>) -> Result<(OwnedFd, String), TtyError> {
    let (fd, name) = sys::tty::recv_fd(sock).map_err(sys_err("receiving the pty master"))?;
    Ok((fd, String::from_utf8_lossy(&name).into_owned()))
}

/// Window size of a terminal as (rows, cols).
pub fn window_size(fd: BorrowedFd<'_>) -> Result<(u16, u16), TtyError> {
    sys::tty::get_winsize(fd).map_err(sys_err("TIOCGWINSZ"))
}

/// Sets a terminal's window size.
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), TtyError> {
    sys::tty::set_winsize(fd, rows, cols).map_err(sys_err("TIOCSWINSZ"))
}

/// What [`setup`] needs.
pub(crate) struct Console<'a> {
    /// The connected console socket.
    pub socket: BorrowedFd<'a>,
    /// `process.consoleSize` as (height, width).
    pub size: Option<(u16, u16)>,
    /// For the init: the container's root and a procfs handle to bind the slave onto
    /// /dev/console.
    pub dev_console: Option<(BorrowedFd<'a>, BorrowedFd<'a>)>,
}

/// In the container process (after its root is the container's, after `setsid`):
/// allocates the pty, sends the master, binds the slave on /dev/console (init only),
/// makes it stdin/stdout/stderr and the controlling terminal.
pub(crate) fn setup(c: &Console<'_>) -> Result<(), TtyError> {
    let (master, slave) = open_pty()?;
    if let Some((h, w)) = c.size {
        if h > 0 || w > 0 {
            set_window_size(slave.as_fd(), h, w)?;
        }
    }
    send_master(c.socket, master.as_fd())?;
    drop(master);
    if let Some((root, proc_fd)) = c.dev_console {
        bind_console(root, proc_fd, slave.as_fd())?;
    }
    for n in 0..3 {
        sys::tty::dup_onto(slave.as_fd(), n).map_err(sys_err("dup2 of the pty slave"))?;
    }
    sys::tty::set_ctty(std::io::stdin().as_fd()).map_err(sys_err("TIOCSCTTY"))
}

/// `process.consoleSize` as (height, width).
pub(crate) fn console_size(p: Option<&oci_spec::runtime::Process>) -> Option<(u16, u16)> {
    let b = p?.console_size()?;
    Some((b.height() as u16, b.width() as u16))
}

/// Bind-mounts the pty slave on /dev/console. The target is resolved in-root and must
/// be a regular file or character device, never a symlink (CVE-2025-52565); a missing
/// one is created as an empty file by name under an in-root-resolved /dev.
fn bind_console(
    root: BorrowedFd<'_>,
    proc_fd: BorrowedFd<'_>,
    slave: BorrowedFd<'_>,
) -> Result<(), TtyError> {
    let target_path = Path::new("/dev/console");
    let target = match paths::open_in_root(root, target_path, libc::O_NOFOLLOW) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => {
            paths::ensure(root, target_path, false).map_err(sys_err("creating /dev/console"))?
        }
        Err(e) => return Err(sys_err("opening /dev/console")(e)),
    };
    let (kind, _) = paths::file_type(target.as_fd()).map_err(sys_err("stat /dev/console"))?;
    if kind != SFlag::S_IFREG && kind != SFlag::S_IFCHR {
        return Err(TtyError::ConsoleTarget);
    }
    // Mount source and target by their fds, through the verified procfs.
    nix::unistd::fchdir(proc_fd.as_raw_fd()).map_err(sys_err("entering procfs"))?;
    let src = paths::proc_fd_path(slave);
    let dst = paths::proc_fd_path(target.as_fd());
    let r = mount(
        Some(src.as_c_str()),
        dst.as_c_str(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    );
    nix::unistd::chdir("/").map_err(sys_err("chdir /"))?;
    r.map_err(sys_err("bind-mounting the pty on /dev/console"))
}

/// A unix stream socket pair for an internal console socket (`casulo run` with a
/// terminal and no `--console-socket`): (runtime end, container end).
pub fn console_pair() -> Result<(OwnedFd, OwnedFd), TtyError> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(sys_err("socketpair"))
}

/// Connects to a console socket given by path (done by the runtime before the clone;
/// the container process inherits the connected fd).
pub(crate) fn connect(path: &Path) -> Result<OwnedFd, TtyError> {
    std::os::unix::net::UnixStream::connect(path)
        .map(OwnedFd::from)
        .map_err(|source| TtyError::ConsoleSocket {
            path: path.to_path_buf(),
            source,
        })
}

/// The console socket a process gets, checked as runc checks it: a terminal needs a
/// socket (or a connected fd), and a socket without a terminal is refused.
pub(crate) fn console_for(
    spec: &oci_spec::runtime::Spec,
    socket: Option<&Path>,
    connected: Option<&OwnedFd>,
) -> Result<Option<OwnedFd>, TtyError> {
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    process_console(terminal, socket, connected)
}

/// [`console_for`] from the terminal flag itself (exec's process).
pub(crate) fn process_console(
    terminal: bool,
    socket: Option<&Path>,
    connected: Option<&OwnedFd>,
) -> Result<Option<OwnedFd>, TtyError> {
    if !terminal {
        if socket.is_some() || connected.is_some() {
            return Err(TtyError::SocketWithoutTerminal);
        }
        return Ok(None);
    }
    if let Some(fd) = connected {
        return fd.try_clone().map(Some).map_err(TtyError::ConsoleClone);
    }
    match socket {
        Some(p) => Ok(Some(connect(p)?)),
        None => Err(TtyError::TerminalWithoutSocket),
    }
}
