//! The systemd cgroup driver (`--systemd-cgroup`): the container's cgroup is a transient
//! unit that systemd makes over D-Bus ([`crate::dbus`]), as runc does.
//!
//! - `linux.cgroupsPath` `slice:prefix:name` is the scope `prefix-name.scope` in `slice`
//!   (empty: `system.slice`; `-.slice`: the root); a `name` ending in `.slice` is a slice
//!   unit of that name instead, wanted by `slice`. Empty or absent: `:casulo:<id>`
//!   (runc's `:runc:<id>`). A slice `a-b.slice` is the cgroup `/a.slice/a-b.slice`.
//! - `add_process` (after the clone, before the init runs anything of the user's)
//!   starts the unit with `StartTransientUnit(name, "replace", properties, [])`: the init's
//!   pid, `Slice=`, `Delegate=yes`, accounting, `DefaultDependencies=no`, the resource
//!   properties systemd owns on cgroup v2 ([`props::resources_v2`]) and the
//!   `org.systemd.property.*` annotations; it waits for the job's `JobRemoved` signal
//!   (subscribed first), then the cgroupfs backend of the host's layout writes every
//!   resource to the unit's cgroup files, as it does for its own cgroups.
//! - `update` sets the properties (`SetUnitProperties`, runtime) and then the files;
//!   `destroy` stops the unit (`StopUnit`, waiting for the job) and resets it if failed
//!   (`ResetFailedUnit`), then removes what is left of the cgroup. Everything else
//!   (freezer, pids, kill, stats, OOM events) is the cgroupfs backend on the unit's cgroup.
//!
//! Device rules are enforced by the backend's own filter (the eBPF program on v2), not by
//! systemd's `DevicePolicy=`/`DeviceAllow=`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use super::{Cgroup, CgroupError, FreezerState, Layout, OomNotifier, Result, Stats};
use crate::dbus::{Connection, DbusError, Message, Value};

pub mod props;

pub use props::GVariantError;
use props::Prop;

/// The unit name prefix when `linux.cgroupsPath` is empty (runc's is `runc`).
pub const DEFAULT_PREFIX: &str = "casulo";
/// The slice when `linux.cgroupsPath` names none.
pub const DEFAULT_SLICE: &str = "system.slice";
/// The slice in a rootless caller's own systemd instance when the path names none
/// (runc's).
pub const DEFAULT_USER_SLICE: &str = "user.slice";
/// How long a unit's job may take (runc's 30 s).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one method call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where systemd says it runs (sd_booted(3)).
pub(crate) const SYSTEMD_RUNNING: &str = "/run/systemd/system";

/// A systemd unit for a container.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// The unit name, e.g. `casulo-abc.scope`.
    pub name: String,
    /// The slice it goes into (a scope) or that it wants (a slice).
    pub slice: String,
    /// Its absolute cgroup path, e.g. `/system.slice/casulo-abc.scope`.
    pub path: String,
    /// In the caller's own systemd instance (a rootless caller) instead of the system's:
    /// `path` is then under that manager's cgroup ([`Unit::in_user_manager`]).
    pub user: bool,
    /// The `name` part of `slice:prefix:name`, for the unit's description.
    container: String,
    /// Properties from `org.systemd.property.*` annotations.
    extra: Vec<Prop>,
}

fn path_err(reason: impl Into<String>) -> CgroupError {
    CgroupError::InvalidField {
        field: "linux.cgroupsPath".into(),
        reason: reason.into(),
    }
}

/// The cgroup path of a slice as systemd lays it out: `a-b.slice` is
/// `/a.slice/a-b.slice`, `-.slice` is the root (`""`).
pub fn expand_slice(slice: &str) -> Result<String> {
    let bad = || path_err(format!("{slice:?} is not a systemd slice name"));
    let base = slice.strip_suffix(".slice").ok_or_else(bad)?;
    if base.is_empty() || slice.contains('/') {
        return Err(bad());
    }
    if base == "-" {
        return Ok(String::new());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in base.split('-') {
        if part.is_empty() {
            return Err(bad());
        }
        path.push_str(&format!("/{prefix}{part}.slice"));
        prefix.push_str(part);
        prefix.push('-');
    }
    Ok(path)
}

/// The unit of a container from `linux.cgroupsPath` (see the module doc) and its
/// `org.systemd.property.*` annotations, checked before anything is created. A `user`
/// unit (a rootless caller's, in its own systemd instance) goes to `user.slice` by
/// default, and its `path` is relative to that manager's cgroup until
/// [`Unit::in_user_manager`].
pub fn unit_for(
    cgroups_path: Option<&str>,
    id: &str,
    annotations: Option<&HashMap<String, String>>,
    user: bool,
) -> Result<Unit> {
    let (slice, prefix, name) = match cgroups_path.filter(|p| !p.is_empty()) {
        None => ("", DEFAULT_PREFIX, id),
        Some(p) => {
            let parts: Vec<&str> = p.split(':').collect();
            let [slice, prefix, name] = parts[..] else {
                return Err(path_err(format!(
                    "{p:?} is not \"slice:prefix:name\", which the systemd cgroup driver needs"
                )));
            };
            (slice, prefix, name)
        }
    };
    let slice = match slice {
        "" if user => DEFAULT_USER_SLICE,
        "" => DEFAULT_SLICE,
        s => s,
    };
    let parent = expand_slice(slice)?;
    if name.is_empty() || [prefix, name].iter().any(|s| s.contains(['/', '\0'])) {
        return Err(path_err(format!(
            "prefix {prefix:?} and name {name:?} must be non-empty unit name parts without '/'"
        )));
    }
    let (unit, path) = if name.ends_with(".slice") {
        (name.to_string(), expand_slice(name)?)
    } else {
        let unit = format!("{prefix}-{name}.scope");
        let path = format!("{parent}/{unit}");
        (unit, path)
    };
    let extra = match annotations {
        Some(a) => props::annotations(a)?,
        None => Vec::new(),
    };
    Ok(Unit {
        name: unit,
        slice: slice.to_string(),
        path,
        user,
        container: name.to_string(),
        extra,
    })
}

impl Unit {
    /// Connects to the caller's own systemd instance for a `user` unit and puts the
    /// unit's path under that manager's cgroup (its `ControlGroup`, e.g.
    /// `/user.slice/user-1000.slice/user@1000.service`, as runc); the connection is
    /// returned for the unit's manager to reuse.
    pub fn in_user_manager(&mut self) -> Result<Connection> {
        let mut c = connect(self)?;
        let get = Message::call(
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.DBus.Properties",
            "Get",
            vec![
                Value::str("org.freedesktop.systemd1.Manager"),
                Value::str("ControlGroup"),
            ],
        );
        let reply = c
            .call(get, CALL_TIMEOUT)
            .map_err(|e| sd_err(&self.name, "the user manager's ControlGroup", e))?;
        let cg = match reply.body.first() {
            Some(Value::Variant(v)) => v.as_str().unwrap_or_default(),
            _ => "",
        };
        if !cg.starts_with('/') {
            return Err(sd_err(
                &self.name,
                "the user manager's ControlGroup",
                DbusError::Reply(format!("Get ControlGroup: {cg:?}")),
            ));
        }
        self.path = format!("{}{}", cg.trim_end_matches('/'), self.path);
        Ok(c)
    }
}

/// A connection to the manager of `unit` (the system's, or the caller's own for a
/// `user` unit), routed `JobRemoved` signals and subscribed.
fn connect(unit: &Unit) -> Result<Connection> {
    if !std::path::Path::new(SYSTEMD_RUNNING).is_dir() {
        return Err(CgroupError::NoSystemd {
            unit: unit.name.clone(),
        });
    }
    let c = match unit.user {
        true => Connection::user_session(),
        false => Connection::systemd(),
    };
    let mut c = c.map_err(|e| sd_err(&unit.name, "connecting", e))?;
    c.add_match(
        "type='signal',sender='org.freedesktop.systemd1',\
         interface='org.freedesktop.systemd1.Manager',member='JobRemoved'",
    )
    .map_err(|e| sd_err(&unit.name, "AddMatch", e))?;
    // The bus gets signals only while subscribed; the private socket always.
    if c.is_bus() {
        let _ = c.call(manager("Subscribe", vec![]), CALL_TIMEOUT);
    }
    Ok(c)
}

/// An error of systemd about `unit`, one line.
fn sd_err(unit: &str, action: &'static str, source: DbusError) -> CgroupError {
    CgroupError::Systemd {
        unit: unit.to_string(),
        action,
        source,
    }
}

/// The systemd manager of one unit, backed by the cgroupfs backend on its cgroup.
pub(crate) struct Systemd {
    unit: Unit,
    inner: Box<dyn Cgroup>,
    conn: Mutex<Option<Connection>>,
    /// Whether the unit is this container's to stop: set once this create's
    /// `StartTransientUnit` was accepted (shared with the create's undo manager), always
    /// for an existing container. A create refused with `UnitExists` stops nothing.
    owned: Arc<AtomicBool>,
    /// What `create` computed for `add_process`: the properties and the resources as
    /// they are written to the files.
    pending: Mutex<Option<(Vec<Prop>, Option<LinuxResources>)>>,
    /// The sub-cgroup of the unit's cgroup that `add_process` moves a process into
    /// (`exec --cgroup`), as AttachProcessesToUnit takes it: `/a/b` below the unit's
    /// cgroup, `""` for the unit's own.
    sub: String,
}

fn struct_props(props: Vec<Prop>) -> Value {
    Value::Array(
        "(sv)".into(),
        props
            .into_iter()
            .map(|(k, v)| Value::Struct(vec![Value::Str(k), Value::Variant(Box::new(v))]))
            .collect(),
    )
}

impl Systemd {
    /// The manager of `unit`; `owned` says whether it is this container's (see the
    /// field); `conn`, a connection to its systemd already made.
    pub(crate) fn new(
        unit: Unit,
        owned: Arc<AtomicBool>,
        conn: Option<Connection>,
    ) -> Result<Systemd> {
        let inner = super::open(&unit.path)?;
        Ok(Systemd {
            unit,
            inner,
            conn: Mutex::new(conn),
            owned,
            pending: Mutex::new(None),
            sub: String::new(),
        })
    }

    /// The manager of an existing container's unit `name` whose cgroup is `path`
    /// (`user`: in the caller's own systemd instance); `sub`, a sub-cgroup of it
    /// (`a/b` or `/a/b`, below `path`) that processes join instead (`""`: none).
    pub(crate) fn existing(name: &str, path: &str, sub: &str, user: bool) -> Result<Systemd> {
        let unit = Unit {
            name: name.to_string(),
            slice: String::new(),
            path: path.to_string(),
            user,
            container: String::new(),
            extra: Vec::new(),
        };
        let sub = match sub.trim_matches('/') {
            "" => String::new(),
            s => format!("/{s}"),
        };
        let inner = super::open(&format!("{}{sub}", path.trim_end_matches('/')))?;
        Ok(Systemd {
            unit,
            inner,
            conn: Mutex::new(None),
            owned: Arc::new(AtomicBool::new(true)),
            pending: Mutex::new(None),
            sub,
        })
    }

    fn v2(&self) -> bool {
        self.inner.layout() == Layout::V2
    }

    /// Runs `f` on the connection to systemd, connecting (and subscribing to job
    /// signals) first if needed.
    fn with_bus<T>(
        &self,
        action: &'static str,
        f: impl FnOnce(&mut Connection) -> std::result::Result<T, DbusError>,
    ) -> Result<T> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(connect(&self.unit)?);
        }
        let Some(c) = guard.as_mut() else {
            unreachable!("connected above")
        };
        f(c).map_err(|e| sd_err(&self.unit.name, action, e))
    }

    /// Calls a manager method that queues a job and waits for the job to finish;
    /// returns its result (`done`, `failed`, `canceled`, …).
    fn run_job(&self, action: &'static str, body: Vec<Value>) -> Result<String> {
        self.with_bus(action, |c| {
            // A StopUnit racing systemd's own stop of the emptied scope may get no answer
            // (systemd 252): the unit's cgroup gone is its end too.
            let dir = std::path::Path::new(super::detect::CGROUP_ROOT)
                .join(self.unit.path.trim_start_matches('/'));
            let stopping = action == "StopUnit";
            let reply = c.call_unless(manager(action, body), CALL_TIMEOUT, &mut || {
                stopping && !dir.exists()
            })?;
            let Some(reply) = reply else {
                return Ok("done".into());
            };
            let job = match reply.body.first() {
                Some(Value::Path(p)) => p.clone(),
                _ => return Err(DbusError::Reply(action.into())),
            };
            // The job's JobRemoved signal, or (seen under load: a stop racing systemd's
            // own collection of the emptied scope sends none) the job object gone.
            let deadline = std::time::Instant::now() + JOB_TIMEOUT;
            let path = Value::Path(job.clone());
            let mut is_ours = |m: &Message| {
                m.member.as_deref() == Some("JobRemoved") && m.body.get(1) == Some(&path)
            };
            loop {
                let removed = c.wait_signal(Duration::from_millis(250), "JobRemoved", &mut is_ours);
                match removed {
                    Ok(m) => {
                        let result = m.body.get(3).and_then(Value::as_str);
                        return Ok(result.unwrap_or_default().to_string());
                    }
                    Err(DbusError::Timeout(..)) if std::time::Instant::now() < deadline => {}
                    Err(e) => return Err(e),
                }
                let state = Message::call(
                    "org.freedesktop.systemd1",
                    &job,
                    "org.freedesktop.DBus.Properties",
                    "Get",
                    vec![
                        Value::str("org.freedesktop.systemd1.Job"),
                        Value::str("State"),
                    ],
                );
                if let Err(DbusError::Method { .. }) = c.call(state, CALL_TIMEOUT) {
                    // Gone: its signal may have come with the answer.
                    let result = c
                        .wait_signal(Duration::from_millis(1), "JobRemoved", &mut is_ours)
                        .ok()
                        .and_then(|m| m.body.get(3).and_then(Value::as_str).map(String::from));
                    return Ok(result.unwrap_or_else(|| "done".into()));
                }
            }
        })
    }

    fn reset_failed(&self) {
        let _ = self.with_bus("ResetFailedUnit", |c| {
            c.call(
                manager("ResetFailedUnit", vec![Value::str(&self.unit.name)]),
                CALL_TIMEOUT,
            )
        });
    }

    /// The properties of a new unit holding `pid`.
    fn unit_props(&self, pid: i32, resources: Vec<Prop>) -> Vec<Prop> {
        let u = &self.unit;
        let mut p: Vec<Prop> = vec![(
            "Description".into(),
            Value::str(format!("casulo container {}", u.container)),
        )];
        if u.name.ends_with(".slice") {
            p.push(("Wants".into(), Value::strings([u.slice.as_str()])));
        } else {
            p.push(("Slice".into(), Value::str(&u.slice)));
            p.push(("Delegate".into(), Value::Bool(true)));
            p.push((
                "PIDs".into(),
                Value::Array("u".into(), vec![Value::U32(pid as u32)]),
            ));
        }
        let mut accounting = vec!["MemoryAccounting", "CPUAccounting", "TasksAccounting"];
        if self.v2() {
            accounting.push("IOAccounting");
        }
        for a in accounting {
            p.push((a.into(), Value::Bool(true)));
        }
        p.push(("DefaultDependencies".into(), Value::Bool(false)));
        p.extend(resources);
        p.extend(u.extra.iter().cloned());
        p
    }

    fn start(&self, pid: i32, resources: Vec<Prop>) -> Result<()> {
        let body = || {
            vec![
                Value::str(&self.unit.name),
                Value::str("replace"),
                struct_props(self.unit_props(pid, resources.clone())),
                Value::Array("(sa(sv))".into(), vec![]),
            ]
        };
        let exists = |e: &CgroupError| {
            matches!(e, CgroupError::Systemd { source, .. }
                if source.name() == Some("org.freedesktop.systemd1.UnitExists"))
        };
        let result = match self.run_job("StartTransientUnit", body()) {
            // A failed unit of the same name left behind: reset it and try once more
            // (as runc).
            Err(e) if exists(&e) => {
                self.reset_failed();
                self.run_job("StartTransientUnit", body())
            }
            r => r,
        };
        // Only a refusal leaves the unit not ours: a job that failed or timed out
        // may have made it.
        if matches!(
            &result,
            Err(CgroupError::Systemd {
                source: DbusError::Method { .. },
                ..
            })
        ) {
            return result.map(|_| ());
        }
        self.owned.store(true, Ordering::SeqCst);
        let result = result?;
        if result != "done" {
            self.reset_failed();
            return Err(CgroupError::SystemdJob {
                unit: self.unit.name.clone(),
                action: "StartTransientUnit",
                result,
            });
        }
        Ok(())
    }
}

fn manager(member: &str, body: Vec<Value>) -> Message {
    Message::call(
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        member,
        body,
    )
}

impl Cgroup for Systemd {
    fn path(&self) -> &str {
        self.inner.path()
    }

    fn layout(&self) -> Layout {
        self.inner.layout()
    }

    /// Checks the resources and connects to systemd; the unit itself is started by
    /// `add_process`, since a scope needs a process.
    fn create(&self, resources: Option<&LinuxResources>) -> Result<()> {
        if let Some(r) = resources {
            super::validate(r)?;
        }
        let (props, fs) = match resources {
            Some(r) if self.v2() => {
                let (p, fs) = props::resources_v2(r)?;
                (p, Some(fs))
            }
            r => (Vec::new(), r.cloned()),
        };
        self.with_bus("connecting", |_| Ok(()))?;
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some((props, fs));
        Ok(())
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some((props, fs)) = pending else {
            // An existing unit: a process joins its cgroup (or the sub-cgroup of it). A
            // rootless caller outside its manager's subtree may not move it (EACCES): its
            // manager does, asking the system's in turn (systemd's
            // AttachProcessesToUnit(unit, the sub-cgroup below the unit's or "", pids)).
            return match self.inner.add_process(pid) {
                Err(_) if self.unit.user => self.with_bus("AttachProcessesToUnit", |c| {
                    let pids = Value::Array("u".into(), vec![Value::U32(pid as u32)]);
                    let body = vec![Value::str(&self.unit.name), Value::str(&self.sub), pids];
                    c.call(manager("AttachProcessesToUnit", body), CALL_TIMEOUT)
                        .map(drop)
                }),
                r => r,
            };
        };
        self.start(pid, props)?;
        let res = self
            .inner
            .create(fs.as_ref())
            .and_then(|()| self.inner.add_process(pid));
        if res.is_err() {
            let _ = self.destroy();
        }
        res
    }

    fn update(&self, resources: &LinuxResources) -> Result<()> {
        super::validate(resources)?;
        if !self.v2() {
            return self.inner.update(resources);
        }
        let (props, fs) = props::resources_v2(resources)?;
        if !props.is_empty() {
            self.with_bus("SetUnitProperties", |c| {
                c.call(
                    manager(
                        "SetUnitProperties",
                        vec![
                            Value::str(&self.unit.name),
                            Value::Bool(true),
                            struct_props(props),
                        ],
                    ),
                    CALL_TIMEOUT,
                )
            })?;
        }
        self.inner.update(&fs)
    }

    fn freeze(&self, freeze: bool) -> Result<()> {
        self.inner.freeze(freeze)
    }

    fn freezer_state(&self) -> Result<FreezerState> {
        self.inner.freezer_state()
    }

    fn kill_all(&self, signal: i32) -> Result<()> {
        self.inner.kill_all(signal)
    }

    fn thaw_all(&self) -> Result<()> {
        self.inner.thaw_all()
    }

    fn wait_empty(&self, timeout: Duration) -> Result<bool> {
        self.inner.wait_empty(timeout)
    }

    fn stats(&self) -> Result<Stats> {
        self.inner.stats()
    }

    fn oom_kill_count(&self) -> Result<u64> {
        self.inner.oom_kill_count()
    }

    fn oom_notifier(&self) -> Result<OomNotifier> {
        self.inner.oom_notifier()
    }

    /// Stops the unit (a unit systemd already collected is fine), resets it if it
    /// failed, and removes what is left of its cgroup.
    fn destroy(&self) -> Result<()> {
        if !self.owned.load(Ordering::SeqCst) {
            return Ok(());
        }
        let dir = std::path::Path::new(super::detect::CGROUP_ROOT)
            .join(self.unit.path.trim_start_matches('/'));
        let stopped = self.run_job(
            "StopUnit",
            vec![Value::str(&self.unit.name), Value::str("replace")],
        );
        match stopped {
            Ok(_) => {}
            Err(CgroupError::Systemd { source, .. })
                if source.name() == Some("org.freedesktop.systemd1.NoSuchUnit") => {}
            // Without systemd there is no unit to stop; a cgroup left is an error.
            Err(e) if dir.exists() => return Err(e),
            Err(_) => return Ok(()),
        }
        self.reset_failed();
        self.inner.destroy()
    }

    fn pids(&self) -> Result<Vec<i32>> {
        self.inner.pids()
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
