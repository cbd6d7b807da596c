//! The systemd cgroup driver end to end (`--systemd-cgroup`, issue 15): containers in
//! transient scopes, asserted from inside (the checker, the cgroup files) and from the
//! host (`systemctl show`, the scope's cgroup), through update, pause/resume, ps,
//! events --stats, kill --all and delete, also after a SIGKILLed create.
//!
//! Every test is named `systemd_*`. They need systemd as PID 1 (`/run/systemd/system`):
//! without it they print why and pass, except under `CASULO_EXPECT_SYSTEMD=1` (set by
//! the systemd VM run, `scripts/v2vm/run-in-v2vm.sh -S`), where that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use casulo_integration::cli::eventually;
use casulo_integration::{casulo_bin, Bundle, Run, TestEnv};
use serde_json::{json, Value};

/// The slice the tests' scopes go into: a nested one, `/casulo.slice/casulo-it.slice`.
const SLICE: &str = "casulo-it.slice";

fn systemd() -> bool {
    if !casulo_integration::prereq::root() {
        return false;
    }
    casulo_integration::prereq::systemd()
}

struct Sd {
    env: TestEnv,
}

impl Sd {
    fn new(name: &str) -> Sd {
        Sd {
            env: TestEnv::new(&format!("sd-{name}")),
        }
    }

    /// A bundle whose cgroup is the scope `casulo-<id>.scope` in [`SLICE`].
    fn bundle(&self, args: &[&str]) -> Bundle {
        Bundle::with_cgroups_path(args, |id| format!("{SLICE}:casulo:{id}"))
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut a = vec!["--systemd-cgroup"];
        a.extend_from_slice(args);
        self.env.run(&a)
    }

    fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "casulo --systemd-cgroup {args:?}: {r:?}");
        r
    }

    fn create(&self, b: &Bundle) -> Run {
        self.run(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id()])
    }

    fn status(&self, id: &str) -> String {
        let st: Value = serde_json::from_str(&self.ok(&["state", id]).stdout).unwrap();
        st["status"].as_str().unwrap().to_string()
    }
}

/// Writes the bundle's config.json with `f` applied to its JSON.
fn write_edited(b: &Bundle, f: impl FnOnce(&mut Value)) {
    let mut v = serde_json::to_value(&b.spec).unwrap();
    f(&mut v);
    std::fs::write(b.dir.join("config.json"), v.to_string()).unwrap();
}

fn unit(b: &Bundle) -> String {
    format!("casulo-{}.scope", b.id())
}

fn scope_dir(b: &Bundle) -> PathBuf {
    Path::new("/sys/fs/cgroup/casulo.slice")
        .join(SLICE)
        .join(unit(b))
}

fn show(unit: &str, prop: &str) -> String {
    let o = Command::new("systemctl")
        .args(["show", "-p", prop, "--value", unit])
        .output()
        .expect("systemctl");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// True while systemd still knows the unit (any state).
fn unit_listed(unit: &str) -> bool {
    let o = Command::new("systemctl")
        .args(["list-units", "--all", "--plain", "--no-legend"])
        .output()
        .expect("systemctl");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(unit))
}

fn assert_gone(sd: &Sd, b: &Bundle) {
    let u = unit(b);
    assert!(eventually(|| !unit_listed(&u)), "unit {u} left behind");
    assert!(!scope_dir(b).exists(), "cgroup {:?} left", scope_dir(b));
    assert!(!sd.env.root.join(b.id()).exists(), "state dir left");
}

fn file(b: &Bundle, name: &str) -> String {
    std::fs::read_to_string(scope_dir(b).join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .trim()
        .to_string()
}

fn limits(b: &mut Bundle) {
    let mut v = serde_json::to_value(&b.spec).unwrap();
    v["linux"]["resources"] = json!({
        "memory": {"limit": 67108864},
        "pids": {"limit": 50},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000}
    });
    v["annotations"] = json!({
        "org.systemd.property.CollectMode": "'inactive-or-failed'",
        "org.systemd.property.TimeoutStopSec": "uint64 7"
    });
    b.spec = serde_json::from_value(v).unwrap();
    b.write_config();
}

#[test]
fn systemd_scope_lifecycle_with_limits() {
    if !systemd() {
        return;
    }
    let sd = Sd::new("life");
    // Inside: the checker verifies the limits in the container's cgroup files.
    let mut b = sd.bundle(&["/checker", "/config.json"]);
    limits(&mut b);
    let r = sd.run(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    assert_eq!(r.code, 0, "checker in the scope: {r:?}");
    assert!(r.stdout.contains("Control groups"), "{}", r.stdout);
    sd.ok(&["delete", "--force", &b.id()]);
    assert_gone(&sd, &b);

    // From the host: systemd's view and the files, through every command.
    let mut b = sd.bundle(&["sleep", "1000"]);
    limits(&mut b);
    let id = b.id();
    let u = unit(&b);
    let r = sd.create(&b);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(show(&u, "ActiveState"), "active");
    assert_eq!(show(&u, "Slice"), SLICE);
    assert_eq!(show(&u, "Delegate"), "yes");
    assert_eq!(show(&u, "MemoryMax"), "67108864");
    assert_eq!(show(&u, "TasksMax"), "50");
    assert_eq!(show(&u, "CPUQuotaPerSecUSec"), "500ms");
    assert_eq!(show(&u, "CPUWeight"), "59");
    assert_eq!(show(&u, "CollectMode"), "inactive-or-failed");
    assert_eq!(show(&u, "TimeoutStopUSec"), "7s");
    assert_eq!(
        show(&u, "ControlGroup"),
        format!("/casulo.slice/{SLICE}/{u}")
    );
    assert_eq!(file(&b, "memory.max"), "67108864");
    assert_eq!(file(&b, "pids.max"), "50");
    assert_eq!(file(&b, "cpu.max"), "50000 100000");
    let pid: Value = serde_json::from_str(&sd.ok(&["state", &id]).stdout).unwrap();
    let pid = pid["pid"].as_i64().unwrap().to_string();
    assert!(
        file(&b, "cgroup.procs").lines().any(|l| l == pid),
        "init in the scope"
    );
    sd.ok(&["start", &id]);
    sd.ok(&["exec", &id, "true"]);

    // update: systemd's property and the file.
    sd.ok(&["update", "--memory", "134217728", "--pids-limit", "60", &id]);
    assert_eq!(show(&u, "MemoryMax"), "134217728");
    assert_eq!(show(&u, "TasksMax"), "60");
    assert_eq!(file(&b, "memory.max"), "134217728");
    assert_eq!(file(&b, "pids.max"), "60");

    // pause/resume, ps, events --stats through the scope's cgroup.
    sd.ok(&["pause", &id]);
    assert_eq!(sd.status(&id), "paused");
    assert_eq!(file(&b, "cgroup.freeze"), "1");
    sd.ok(&["resume", &id]);
    assert_eq!(sd.status(&id), "running");
    let ps = sd.ok(&["ps", "--format", "json", &id]).stdout;
    let pids: Vec<i64> = serde_json::from_str(&ps).unwrap();
    assert!(pids.iter().any(|p| p.to_string() == pid), "ps: {ps}");
    let ev = sd.ok(&["events", "--stats", &id]).stdout;
    let ev: Value = serde_json::from_str(&ev).unwrap();
    assert_eq!(ev["type"], "stats", "{ev}");
    assert_eq!(ev["data"]["memory"]["usage"]["limit"], 134217728, "{ev}");
    assert_eq!(ev["data"]["pids"]["limit"], 60, "{ev}");

    // kill --all, then delete: no unit, no cgroup.
    sd.ok(&["kill", "--all", &id, "KILL"]);
    assert!(eventually(|| sd.status(&id) == "stopped"));
    sd.ok(&["delete", &id]);
    assert_gone(&sd, &b);
}

/// Once the init exits systemd removes the emptied scope and its cgroup; containerd's
/// shim still runs `kill --all` then (the CRI's TaskExit): nothing is left to signal, so
/// it succeeds, and delete leaves nothing.
#[test]
fn systemd_kill_all_after_the_scope_is_gone() {
    if !systemd() {
        return;
    }
    let sd = Sd::new("killgone");
    let b = sd.bundle(&["true"]);
    let r = sd.create(&b);
    assert_eq!(r.code, 0, "{r:?}");
    let id = b.id();
    sd.ok(&["start", &id]);
    assert!(
        eventually(|| !scope_dir(&b).exists()),
        "systemd never removed {:?}",
        scope_dir(&b)
    );
    for sig in ["KILL", "TERM"] {
        sd.ok(&["kill", "--all", &id, sig]);
    }
    sd.ok(&["delete", &id]);
    assert_gone(&sd, &b);
}

#[test]
fn systemd_default_cgroups_path_is_a_casulo_scope_in_system_slice() {
    if !systemd() {
        return;
    }
    let sd = Sd::new("default");
    let b = sd.bundle(&["sleep", "1000"]);
    write_edited(&b, |v| v["linux"]["cgroupsPath"] = json!(""));
    let r = sd.create(&b);
    assert_eq!(r.code, 0, "{r:?}");
    let u = unit(&b);
    assert_eq!(show(&u, "Slice"), "system.slice");
    assert_eq!(show(&u, "ControlGroup"), format!("/system.slice/{u}"));
    sd.ok(&["delete", "--force", &b.id()]);
    assert!(eventually(|| !unit_listed(&u)), "unit {u} left behind");
    assert!(!Path::new("/sys/fs/cgroup/system.slice").join(&u).exists());
}

#[test]
fn systemd_delete_after_a_sigkilled_create_leaves_no_unit() {
    if !systemd() {
        return;
    }
    let sd = Sd::new("fault");
    for stage in ["before-cgroup-join", "before-state"] {
        let b = sd.bundle(&["sleep", "1000"]);
        let mut child = Command::new(casulo_bin())
            .arg("--root")
            .arg(&sd.env.root)
            .args(["--systemd-cgroup", "create", "--bundle"])
            .arg(&b.dir)
            .arg(b.id())
            .env("CASULO_FAULT_AT", stage)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stat = format!("/proc/{}/stat", child.id());
        let stopped = || {
            std::fs::read_to_string(&stat)
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('T')))
                .unwrap_or(false)
        };
        assert!(
            eventually(stopped),
            "{stage}: never reached the fault point"
        );
        if stage == "before-state" {
            assert!(unit_listed(&unit(&b)), "{stage}: the unit exists");
        }
        child.kill().unwrap();
        let _ = child.wait();
        sd.ok(&["delete", "--force", &b.id()]);
        assert_gone(&sd, &b);
        // The id (and unit name) can be used again.
        let r = sd.create(&b);
        assert_eq!(r.code, 0, "{stage}: create again: {r:?}");
        sd.ok(&["delete", "--force", &b.id()]);
        assert_gone(&sd, &b);
    }
}

#[test]
fn systemd_errors_are_one_line_naming_the_unit() {
    if !systemd() {
        return;
    }
    let sd = Sd::new("errors");
    // The unit exists: a second container with the same cgroupsPath is refused, and
    // the first one keeps running.
    let a = sd.bundle(&["sleep", "1000"]);
    assert_eq!(sd.create(&a).code, 0);
    let b = Bundle::with_cgroups_path(&["sleep", "1000"], |_| format!("{SLICE}:casulo:{}", a.id()));
    let r = sd.create(&b);
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains(&unit(&a)), "{r:?}");
    assert!(r.stderr.contains("UnitExists"), "{r:?}");
    assert!(
        !sd.env.root.join(b.id()).exists(),
        "state dir of the refused one"
    );
    assert_eq!(show(&unit(&a), "ActiveState"), "active");
    assert_eq!(sd.status(&a.id()), "created");
    sd.ok(&["delete", "--force", &a.id()]);
    assert_gone(&sd, &a);

    // A property systemd does not know.
    let c = sd.bundle(&["true"]);
    write_edited(&c, |v| {
        v["annotations"] = json!({"org.systemd.property.NoSuchProperty": "true"})
    });
    let r = sd.create(&c);
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains(&unit(&c)), "{r:?}");
    assert_gone(&sd, &c);
}

/// Where systemd is not running, the driver says so in one line naming the unit, and
/// a bad annotation or cgroupsPath is refused by name before anything is created.
#[test]
fn systemd_driver_refusals_without_systemd() {
    if !casulo_integration::prereq::root() {
        return;
    }
    let sd = Sd::new("nosd");
    let b = sd.bundle(&["true"]);
    for (field, value, names) in [
        (
            "annotations",
            json!({"org.systemd.property.CollectMode": "bare"}),
            "org.systemd.property.CollectMode",
        ),
        (
            "linux.cgroupsPath",
            json!("/not/a/slice"),
            "linux.cgroupsPath",
        ),
    ] {
        write_edited(&b, |v| {
            if field == "annotations" {
                v["annotations"] = value;
            } else {
                v["linux"]["cgroupsPath"] = value;
            }
        });
        let r = sd.create(&b);
        assert_ne!(r.code, 0, "{r:?}");
        assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
        assert!(r.stderr.contains(names), "{r:?}");
        assert!(!sd.env.root.join(b.id()).exists());
    }
    if Path::new("/run/systemd/system").is_dir() {
        return;
    }
    b.write_config();
    let r = sd.create(&b);
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains(&unit(&b)), "{r:?}");
    assert!(r.stderr.contains("systemd is not running"), "{r:?}");
    assert!(!sd.env.root.join(b.id()).exists(), "state dir left");
    assert!(!scope_dir(&b).exists());
}
