//! Operations through the container's cgroup (runc's `ps`, `pause`, `resume`).

use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::cgroups;
use crate::container::Runtime;
use crate::state::Status;
use crate::store::Record;
use crate::{sys, Error, Operation, Result};

/// How long `delete` waits for a killed container's processes to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

impl Runtime {
    /// Host pids of every process of a running container.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let rec = self.store().load(id)?;
        if self.status(&rec) == Status::Stopped {
            return Err(Error::state(Operation::Pids, id, Status::Stopped));
        }
        match &rec.cgroup_path {
            Some(p) => Ok(cgroups::open(p)?.pids()?),
            None => Ok(crate::rootless::pids_without_cgroup(rec.pid)),
        }
    }
}

impl Runtime {
    /// Freezes every process of a running container (cgroup freezer).
    pub fn pause(&self, id: &str) -> Result<()> {
        self.freeze(id, true)
    }

    /// Thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        self.freeze(id, false)
    }

    fn freeze(&self, id: &str, freeze: bool) -> Result<()> {
        let _lock = self.store().lock(id)?;
        let rec = self.store().load(id)?;
        let status = self.status(&rec);
        let want = if freeze {
            Status::Running
        } else {
            Status::Paused
        };
        if status != want {
            let verb = if freeze {
                Operation::Pause
            } else {
                Operation::Resume
            };
            return Err(Error::state(verb, id, status));
        }
        let path = rec
            .cgroup_path
            .as_deref()
            .ok_or_else(|| Error::NoCgroup { id: id.into() })?;
        Ok(cgroups::open(path)?.freeze(freeze)?)
    }
}

impl Runtime {
    /// For `delete`: SIGKILLs the init (through its pidfd) and every process left in the
    /// container's cgroup, thaws the cgroup whoever froze it (a killed task in a frozen
    /// cgroup never dies), waits on the kernel's events until all have exited, and
    /// removes the cgroup. Nothing is written when the cgroup is already empty.
    pub(crate) fn kill_and_remove_cgroup(&self, rec: &Record) -> Result<()> {
        let init = self.init_pidfd(rec);
        if let Some(fd) = &init {
            let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
        }
        let Some(path) = &rec.cgroup_path else {
            if let Some(fd) = &init {
                let mut pfd = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                let _ = poll(
                    &mut pfd,
                    PollTimeout::try_from(EXIT_TIMEOUT).unwrap_or(PollTimeout::MAX),
                );
            }
            return Ok(());
        };
        let cg = cgroups::open_managed(path, rec.systemd_unit.as_deref(), rec.systemd_user)?;
        if !cg.pids()?.is_empty() && !cg.kill_and_wait(EXIT_TIMEOUT)? {
            return Err(Error::KillTimeout {
                id: rec.id.clone(),
                cgroup: path.clone(),
                secs: EXIT_TIMEOUT.as_secs(),
            });
        }
        Ok(cg.destroy()?)
    }
}
