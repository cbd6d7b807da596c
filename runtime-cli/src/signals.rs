//! Signal forwarding for `run` and `exec` in the foreground: the signals the runtime
//! receives go to the container's process until it exits.

use std::os::fd::{AsFd, BorrowedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Signals `run` forwards to the container (all but those the kernel or the runtime
/// needs for itself).
pub fn forwarded() -> SigSet {
    let mut set = SigSet::empty();
    for sig in Signal::iterator() {
        if !matches!(
            sig,
            Signal::SIGKILL
                | Signal::SIGSTOP
                | Signal::SIGCHLD
                | Signal::SIGSEGV
                | Signal::SIGBUS
                | Signal::SIGILL
                | Signal::SIGFPE
                | Signal::SIGTRAP
        ) {
            set.add(sig);
        }
    }
    set
}

/// Blocks `set` in this thread before the container's process exists, so that no signal
/// is lost (the process unblocks them before its exec).
pub fn block(set: &SigSet) -> Result<(), String> {
    set.thread_block()
        .map_err(|e| format!("blocking the forwarded signals: {}", e.desc()))
}

/// A signalfd receiving `set` (blocked by [`block`]).
pub fn signalfd(set: &SigSet) -> Result<SignalFd, String> {
    SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("signalfd for the forwarded signals: {}", e.desc()))
}

/// Forwards signals from `sfd` until the process behind `pidfd` exits.
pub fn wait_forwarding(
    pidfd: BorrowedFd<'_>,
    sfd: &SignalFd,
    mut forward: impl FnMut(i32),
) -> Result<(), String> {
    loop {
        let mut fds = [
            PollFd::new(pidfd, PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("waiting for the container's process: {}", e.desc())),
            Ok(_) => {}
        }
        if fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            if let Ok(Some(info)) = sfd.read_signal() {
                forward(info.ssi_signo as i32);
            }
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            return Ok(());
        }
    }
}
