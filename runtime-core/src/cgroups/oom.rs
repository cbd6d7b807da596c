//! OOM event source: an fd that becomes readable when the cgroup may have hit
//! an OOM (v1: eventfd registered on `memory.oom_control` through
//! `cgroup.event_control`; v2: inotify on `memory.events`), plus the
//! `oom_kill` counter to confirm it.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::util::{io_err, keyed_value};
use super::{sys, CgroupError, Result};

/// Waits for OOM events of one cgroup.
pub struct OomNotifier {
    fd: OwnedFd,
    /// Kept open: the v1 registration lives as long as this fd.
    _control: Option<std::fs::File>,
    memory_dir: PathBuf,
    v2: bool,
    seen: u64,
}

fn count(dir: &Path, v2: bool) -> u64 {
    let (file, key) = if v2 {
        ("memory.events", "oom_kill")
    } else {
        ("memory.oom_control", "oom_kill")
    };
    keyed_value(dir, file, key).unwrap_or(0)
}

impl OomNotifier {
    /// Registers on the v1 memory cgroup directory `dir`.
    pub(crate) fn v1(dir: &Path) -> Result<Self> {
        let fd = sys::eventfd().map_err(|e| io_err(dir, e))?;
        let ctl_path = dir.join("memory.oom_control");
        let control = std::fs::File::open(&ctl_path).map_err(|e| io_err(&ctl_path, e))?;
        let line = format!("{} {}", fd.as_raw_fd(), control.as_raw_fd());
        let ev = dir.join("cgroup.event_control");
        std::fs::write(&ev, line).map_err(|e| io_err(&ev, e))?;
        Ok(OomNotifier {
            seen: count(dir, false),
            fd,
            _control: Some(control),
            memory_dir: dir.to_path_buf(),
            v2: false,
        })
    }

    /// Watches the v2 cgroup directory `dir`.
    pub(crate) fn v2(dir: &Path) -> Result<Self> {
        let events = dir.join("memory.events");
        let fd = sys::inotify_modify(&events).map_err(|e| io_err(&events, e))?;
        Ok(OomNotifier {
            seen: count(dir, true),
            fd,
            _control: None,
            memory_dir: dir.to_path_buf(),
            v2: true,
        })
    }

    /// Number of OOM kills since the notifier was created (or last `wait`
    /// that returned true).
    fn new_kills(&mut self) -> u64 {
        let now = count(&self.memory_dir, self.v2);
        let n = now.saturating_sub(self.seen);
        self.seen = now;
        n
    }

    /// Blocks until an OOM kill happens (returns true) or `timeout` passes
    /// (false). `None` waits forever. On v1, an OOM with the OOM killer
    /// disabled also returns true. A removed cgroup returns an error.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            if self.new_kills() > 0 {
                return Ok(true);
            }
            let left = match deadline {
                Some(d) => {
                    let now = std::time::Instant::now();
                    if now >= d {
                        return Ok(false);
                    }
                    PollTimeout::try_from(d - now).unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, left) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io_err(&self.memory_dir, e.into())),
            }
            let mut buf = [0u8; 4096];
            let mut f = std::fs::File::from(
                self.fd
                    .try_clone()
                    .map_err(|e| io_err(&self.memory_dir, e))?,
            );
            let _ = f.read(&mut buf);
            if !self.memory_dir.exists() {
                return Err(CgroupError::Removed {
                    path: self.memory_dir.clone(),
                });
            }
            if !self.v2 {
                // v1 signals an OOM condition itself.
                self.new_kills();
                return Ok(true);
            }
        }
    }
}

impl AsFd for OomNotifier {
    /// The pollable fd (readable when an OOM may have happened).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
