//! Live resource changes and usage of a container (runc's `update`, `events`):
//! [`Runtime::update`], [`Runtime::stats`], [`Runtime::oom_notifier`].
//!
//! An update is given as `linux.resources`. Zero numbers and empty strings mean
//! "not set", as dockerd sends them (`update --resources -` with every field
//! present), so they are dropped before anything is checked or written. The
//! remaining fields are validated, written to the cgroup, and merged into the
//! configuration stored in the container's state, so later commands see them.

use oci_spec::runtime::LinuxResources;
use serde_json::{Map, Value};

use crate::cgroups::{self, Cgroup, OomNotifier, Stats};
use crate::state::Status;
use crate::store::Record;
use crate::{Error, Operation, Result, Runtime};

/// Fields whose zero is meaningful and is therefore kept.
const ZERO_MEANINGFUL: &[&str] = &["swappiness"];

/// Drops numeric zeros, empty strings, nulls and empty arrays/objects from a
/// resources object (recursively), as dockerd's zero values mean "unset".
fn drop_unset(v: &mut Value) {
    if let Value::Object(map) = v {
        let keys: Vec<String> = map.keys().cloned().collect();
        for k in keys {
            let Some(child) = map.get_mut(&k) else {
                continue;
            };
            drop_unset(child);
            let unset = match &*child {
                Value::Null => true,
                Value::Number(n) => {
                    !ZERO_MEANINGFUL.contains(&k.as_str())
                        && (n.as_i64() == Some(0) || n.as_u64() == Some(0))
                }
                Value::String(s) => s.is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                Value::Bool(_) => false,
            };
            if unset {
                map.remove(&k);
            }
        }
    }
}

/// `resources` without the fields that are "unset" by their zero value.
pub fn normalize(resources: &LinuxResources) -> Result<LinuxResources> {
    let mut v = serde_json::to_value(resources).map_err(Error::Resources)?;
    drop_unset(&mut v);
    serde_json::from_value(v).map_err(Error::Resources)
}

/// Overlays `upd` onto `base`: objects merge key by key, anything else replaces.
fn overlay(base: &mut Map<String, Value>, upd: &Map<String, Value>) {
    for (k, v) in upd {
        match (base.get_mut(k), v) {
            (Some(Value::Object(b)), Value::Object(u)) => overlay(b, u),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `base` with every field set in `upd` replaced (both already normalized).
pub fn merge(base: Option<&LinuxResources>, upd: &LinuxResources) -> Result<LinuxResources> {
    let to = |r: &LinuxResources| serde_json::to_value(r).map_err(Error::Resources);
    let mut b = match base {
        Some(r) => to(r)?,
        None => Value::Object(Map::new()),
    };
    if let (Value::Object(b), Value::Object(u)) = (&mut b, to(upd)?) {
        overlay(b, &u);
    }
    serde_json::from_value(b).map_err(Error::Resources)
}

impl Runtime {
    /// The record and cgroup of a container that is not stopped.
    fn live_cgroup(&self, id: &str, op: Operation) -> Result<(Record, Box<dyn Cgroup>)> {
        let rec = self.store().load(id)?;
        let status = self.status(&rec);
        if matches!(status, Status::Stopped | Status::Creating) {
            return Err(Error::state(op, id, status));
        }
        let path = rec
            .cgroup_path
            .clone()
            .ok_or_else(|| Error::NoCgroup { id: id.into() })?;
        let cg = cgroups::open_managed(&path, rec.systemd_unit.as_deref(), rec.systemd_user)?;
        Ok((rec, cg))
    }

    /// Changes the resources of a created, running or paused container and
    /// records them in its stored configuration. Zero values mean "unset".
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<()> {
        let _lock = self.store().lock(id)?;
        let (mut rec, cg) = self.live_cgroup(id, Operation::Update)?;
        let upd = normalize(resources)?;
        cgroups::validate(&upd)?;
        let current = rec
            .config
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone());
        let merged = merge(current.as_ref(), &upd)?;
        cgroups::validate(&merged)?;
        cg.update(&upd)?;
        if let Some(l) = rec.config.linux_mut() {
            l.set_resources(Some(merged));
        }
        self.store().save(&rec)?;
        Ok(())
    }

    /// Resource usage of a container that is not stopped (runc's `events --stats`).
    pub fn stats(&self, id: &str) -> Result<Stats> {
        let (_, cg) = self.live_cgroup(id, Operation::Stats)?;
        Ok(cg.stats()?)
    }

    /// An OOM event source for a container that is not stopped.
    pub fn oom_notifier(&self, id: &str) -> Result<OomNotifier> {
        let (_, cg) = self.live_cgroup(id, Operation::Events)?;
        Ok(cg.oom_notifier()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn dockerd_zeros_are_unset() {
        let r = res(serde_json::json!({
            "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0, "swappiness": 0},
            "cpu": {"shares": 512, "quota": 0, "period": 0, "realtimePeriod": 0,
                    "realtimeRuntime": 0, "cpus": "", "mems": ""},
            "pids": {"limit": 0},
            "blockIO": {"weight": 0}
        }));
        let n = serde_json::to_value(normalize(&r).unwrap()).unwrap();
        assert_eq!(
            n,
            serde_json::json!({"memory": {"swappiness": 0}, "cpu": {"shares": 512}})
        );
        cgroups::validate(&normalize(&r).unwrap()).unwrap();
    }

    #[test]
    fn merge_overlays_set_fields_only() {
        let base = res(serde_json::json!({
            "memory": {"limit": 100_000_000, "swap": 200_000_000},
            "pids": {"limit": 10},
            "devices": [{"allow": false, "access": "rwm"}]
        }));
        let upd =
            res(serde_json::json!({"memory": {"limit": 150_000_000}, "cpu": {"quota": 5000}}));
        let m = serde_json::to_value(merge(Some(&base), &upd).unwrap()).unwrap();
        assert_eq!(m["memory"]["limit"], 150_000_000);
        assert_eq!(m["memory"]["swap"], 200_000_000);
        assert_eq!(m["pids"]["limit"], 10);
        assert_eq!(m["cpu"]["quota"], 5000);
        assert_eq!(m["devices"][0]["access"], "rwm");
        let none = merge(None, &upd).unwrap();
        assert_eq!(none.cpu().as_ref().unwrap().quota(), Some(5000));
    }
}
