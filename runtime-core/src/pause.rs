//! Operations through the container's cgroup (runc's `ps`, `pause`, `resume`).

use crate::cgroups;
use crate::container::Runtime;
use crate::state::Status;
use crate::{Error, Result};

impl Runtime {
    /// Host pids of every process of a running container.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let rec = self.store().load(id)?;
        if self.status(&rec) == Status::Stopped {
            return Err(Error::State("container not running".into()));
        }
        match &rec.cgroup_path {
            Some(p) => Ok(cgroups::open(p)?.pids()?),
            None => Ok(vec![rec.pid]),
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
            let verb = if freeze { "pause" } else { "resume" };
            return Err(Error::State(format!(
                "cannot {verb} container {id}: it is {status}, not {want}"
            )));
        }
        let path = rec
            .cgroup_path
            .as_deref()
            .ok_or_else(|| Error::State(format!("container {id} has no cgroup")))?;
        Ok(cgroups::open(path)?.freeze(freeze)?)
    }
}
