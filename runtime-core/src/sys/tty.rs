//! Terminal ioctls and fd passing (SCM_RIGHTS) that nix offers only as `unsafe` macros
//! or without an owned result.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::{check, SysResult};

/// `TIOCGPTPEER` (not in every libc version's constants).
const TIOCGPTPEER: libc::c_ulong = 0x5441;

/// Unlocks a pty master's slave (`TIOCSPTLCK` 0, what unlockpt(3) does).
pub fn unlock_pt(master: BorrowedFd<'_>) -> SysResult<()> {
    let zero: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the valid pointer.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &zero) } as libc::c_long)?;
    Ok(())
}

/// Opens the slave of a pty master through the master itself (`TIOCGPTPEER`), so no
/// path under /dev/pts is looked up.
pub fn pt_peer(master: BorrowedFd<'_>, flags: i32) -> SysResult<OwnedFd> {
    // SAFETY: TIOCGPTPEER takes the open flags as an integer and returns a new fd.
    let fd =
        check(unsafe { libc::ioctl(master.as_raw_fd(), TIOCGPTPEER as _, flags) } as libc::c_long)?;
    // SAFETY: fresh fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Makes the terminal `fd` the controlling terminal of the calling session leader.
pub fn set_ctty(fd: BorrowedFd<'_>) -> SysResult<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal).
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) } as libc::c_long)?;
    Ok(())
}

/// Sets a terminal's window size.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> SysResult<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the valid pointer.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } as libc::c_long)?;
    Ok(())
}

/// Reads a terminal's window size as (rows, cols).
pub fn get_winsize(fd: BorrowedFd<'_>) -> SysResult<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into the valid pointer.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } as libc::c_long)?;
    Ok((ws.ws_row, ws.ws_col))
}

/// dup2(2) for stdio redirection (`to` is replaced).
pub fn dup_onto(from: BorrowedFd<'_>, to: RawFd) -> SysResult<()> {
    // SAFETY: dup2 on integer fds; `to` is a stdio slot the caller owns.
    check(unsafe { libc::dup2(from.as_raw_fd(), to) } as libc::c_long)?;
    Ok(())
}

/// Receives one fd sent with SCM_RIGHTS and the bytes that came with it. The fd is made
/// close-on-exec.
pub fn recv_fd(sock: BorrowedFd<'_>) -> SysResult<(OwnedFd, Vec<u8>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 4096];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let (fds, n) = loop {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(v) = c {
                        fds.extend(v);
                    }
                }
                break (fds, msg.bytes);
            }
        }
    };
    // SAFETY: each fd came in this message's SCM_RIGHTS and is owned by nobody else.
    let mut owned: Vec<OwnedFd> = fds
        .into_iter()
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if owned.is_empty() {
        return Err(Errno::ENODATA);
    }
    let first = owned.remove(0);
    Ok((first, buf[..n].to_vec()))
}
