//! The terminal relay: `casulo run` / `casulo exec` with `process.terminal` and no
//! `--console-socket`: the runtime keeps the pty master itself and forwards between the
//! caller's terminal and the container's (raw mode on the caller's side, SIGWINCH
//! resizes), like runc.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

/// Restores the caller's terminal mode when dropped.
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    /// Puts stdin in raw mode when it is a terminal.
    pub fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

/// Copies the caller's window size to the pty.
pub fn resize(master: BorrowedFd<'_>) {
    if let Ok((rows, cols)) = casulo_core::tty::window_size(std::io::stdin().as_fd()) {
        let _ = casulo_core::tty::set_window_size(master, rows, cols);
    }
}

fn drain(master: &OwnedFd, out: &mut impl Write) {
    let _ = fcntl(
        std::os::fd::AsRawFd::as_raw_fd(master),
        FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
    );
    let mut buf = [0u8; 8192];
    let mut f = std::fs::File::from(master.try_clone().expect("dup of the pty master"));
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 || out.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = out.flush();
}

/// Forwards until the process behind `pidfd` exits. Signals from `sfd` other than
/// SIGWINCH go to `forward_signal`.
pub fn forward(
    master: OwnedFd,
    pidfd: BorrowedFd<'_>,
    sfd: &SignalFd,
    mut forward_signal: impl FnMut(i32),
) {
    let _raw = RawMode::enter();
    resize(master.as_fd());
    let mut stdin_open = true;
    let mut master_open = true;
    let mut stdout = std::io::stdout().lock();
    let mut m = std::fs::File::from(master.try_clone().expect("dup of the pty master"));
    let mut buf = [0u8; 8192];
    loop {
        let stdin = std::io::stdin();
        let mut fds = vec![
            PollFd::new(pidfd, PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        if master_open {
            fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(_) => break,
            Ok(_) => {}
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .unwrap_or(PollFlags::empty())
        };
        let (exited, sig, mev) = (
            ready(0),
            ready(1),
            if master_open {
                ready(2)
            } else {
                PollFlags::empty()
            },
        );
        let iev = if stdin_open {
            ready(if master_open { 3 } else { 2 })
        } else {
            PollFlags::empty()
        };
        drop(fds);
        if sig.contains(PollFlags::POLLIN) {
            if let Ok(Some(info)) = sfd.read_signal() {
                if info.ssi_signo as i32 == Signal::SIGWINCH as i32 {
                    resize(master.as_fd());
                } else {
                    forward_signal(info.ssi_signo as i32);
                }
            }
        }
        if !mev.is_empty() {
            match m.read(&mut buf) {
                Ok(n) if n > 0 => {
                    let _ = stdout.write_all(&buf[..n]);
                    let _ = stdout.flush();
                }
                _ => master_open = false,
            }
        }
        if !iev.is_empty() {
            match stdin.lock().read(&mut buf) {
                Ok(n) if n > 0 => {
                    if m.write_all(&buf[..n]).is_err() {
                        stdin_open = false;
                    }
                }
                _ => stdin_open = false,
            }
        }
        if !exited.is_empty() {
            if master_open {
                drain(&master, &mut stdout);
            }
            break;
        }
    }
}

/// A socketpair for a terminal the runtime forwards itself (no console socket, not
/// detached): (runtime end, container end).
pub fn pair() -> Result<(OwnedFd, OwnedFd), String> {
    casulo_core::tty::console_pair().map_err(|e| e.to_string())
}

/// For `run`: an internal console when the bundle asks for a terminal, no socket is
/// given and the runtime stays in the foreground.
pub fn own_terminal(
    bundle: &Path,
    has_socket: bool,
    detach: bool,
) -> Result<Option<(OwnedFd, OwnedFd)>, String> {
    if has_socket || detach {
        return Ok(None);
    }
    if wants_terminal(bundle) {
        pair().map(Some)
    } else {
        Ok(None)
    }
}

/// `process.terminal` of the bundle's config, read without parsing the rest (create
/// loads and checks the whole config next; an unreadable one fails there).
fn wants_terminal(bundle: &Path) -> bool {
    #[derive(serde::Deserialize)]
    struct Doc {
        process: Option<Process>,
    }
    #[derive(serde::Deserialize)]
    struct Process {
        terminal: Option<bool>,
    }
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice::<Doc>(&d).ok())
        .and_then(|d| d.process?.terminal)
        .unwrap_or(false)
}
