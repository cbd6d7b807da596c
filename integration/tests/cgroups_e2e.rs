//! Control groups end to end (config-linux.md "Control groups", runc's `update`,
//! `events`, `ps`, `pause`/`resume`, `kill --all`): real containers from a busybox
//! rootfs, asserted from inside (the container's own cgroup mount, or behaviour) and
//! from the host. Runs on the host's layout (v1/hybrid here) and, through
//! `scripts/test.d/v2vm.sh`, in a pure cgroup v2 VM.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use casulo_integration::bundle::remove_cgroup_parent;
use casulo_integration::{casulo_bin, runtime, Bundle, Run};
use serde_json::{json, Value};

/// A state root and a parent cgroup of its own per test (tests run in parallel, so
/// one test's cleanup must not remove another's fresh, still empty cgroups), removed
/// at the end with every container in them.
struct Env {
    root: PathBuf,
    cgroup_parent: String,
}

impl Env {
    fn new(name: &str) -> Env {
        let root = PathBuf::from(format!("/tmp/casulo-cg-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cgroup_parent = format!(
            "{}/casulo-cg-{}-{name}",
            casulo_integration::bundle::cgroup_base(),
            std::process::id()
        );
        Env {
            root,
            cgroup_parent,
        }
    }
    /// A bundle running `args`, in this test's parent cgroup.
    fn bundle(&self, args: &[&str]) -> Bundle {
        Bundle::with_cgroups_path(args, |id| format!("{}/{id}", self.cgroup_parent))
    }
    /// A bundle running `script` with `sh -c`, its config changed by `edit` (as
    /// JSON). The root is writable so the host can drop trigger files into `/tmp`.
    fn sh(&self, script: &str, edit: impl FnOnce(&mut Value)) -> Bundle {
        let mut b = self.bundle(&["sh", "-c", script]);
        let mut v = serde_json::to_value(&b.spec).unwrap();
        v["root"]["readonly"] = json!(false);
        edit(&mut v);
        b.spec = serde_json::from_value(v).expect("edited spec is valid");
        b.write_config();
        b
    }
    fn run(&self, args: &[&str]) -> Run {
        runtime(&casulo_bin(), &self.root, args)
    }
    fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "casulo {args:?} failed: {r:?}");
        r
    }
    fn status(&self, id: &str) -> String {
        let r = self.run(&["state", id]);
        serde_json::from_str::<Value>(&r.stdout)
            .map(|v| v["status"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }
    /// `casulo <args>` as a child with stdout/stderr in files (`<out>.out`, `<out>.err`).
    fn spawn(&self, args: &[&str], out: &Path) -> Child {
        Command::new(casulo_bin())
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(out.with_extension("out")).unwrap())
            .stderr(File::create(out.with_extension("err")).unwrap())
            .spawn()
            .expect("spawn casulo")
    }
    /// Creates and starts `b` with the container's stdout/stderr in
    /// `<bundle>/ctr.out` and `<bundle>/ctr.err`; returns the stdout path.
    fn start_bg(&self, b: &Bundle) -> PathBuf {
        let base = b.dir.join("ctr");
        let st = self
            .spawn(
                &["create", "--bundle", b.dir.to_str().unwrap(), &b.id()],
                &base,
            )
            .wait()
            .unwrap();
        let err = std::fs::read_to_string(base.with_extension("err")).unwrap_or_default();
        assert!(st.success(), "create failed: {err}");
        self.ok(&["start", &b.id()]);
        base.with_extension("out")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        casulo_integration::cli::delete_all(&self.root);
        let _ = std::fs::remove_dir_all(&self.root);
        for r in cgroup_roots() {
            rmdir_tree(&r.join(self.cgroup_parent.trim_start_matches('/')));
        }
        remove_cgroup_parent();
    }
}

/// `/sys/fs/cgroup` and every hierarchy mounted below it.
fn cgroup_roots() -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    roots
}

/// Removes the empty cgroup directories under and including `dir`, deepest first.
fn rmdir_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn root() -> bool {
    casulo_integration::prereq::root()
}

fn v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Waits until `f` holds (polling), for at most 15 s.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn cgroup_path(b: &Bundle) -> String {
    let l = b.spec.linux().as_ref().unwrap();
    l.cgroups_path().as_ref().unwrap().display().to_string()
}

/// A cgroup interface file: (v1 controller, v1 file, v2 file).
type CgFile = (&'static str, &'static str, &'static str);
const MEM_MAX: CgFile = ("memory", "memory.limit_in_bytes", "memory.max");
const PIDS_MAX: CgFile = ("pids", "pids.max", "pids.max");
const CPU_QUOTA: CgFile = ("cpu", "cpu.cfs_quota_us", "cpu.max");
const CPU_SHARES: CgFile = ("cpu", "cpu.shares", "cpu.weight");

/// The file as the container sees it through its cgroup mount (cgroup namespace).
fn inside(f: CgFile) -> String {
    if v2() {
        format!("/sys/fs/cgroup/{}", f.2)
    } else {
        format!("/sys/fs/cgroup/{}/{}", f.0, f.1)
    }
}

/// The same file on the host.
fn host(b: &Bundle, f: CgFile) -> String {
    let p = if v2() {
        format!("/sys/fs/cgroup{}/{}", cgroup_path(b), f.2)
    } else {
        format!("/sys/fs/cgroup/{}{}/{}", f.0, cgroup_path(b), f.1)
    };
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .trim()
        .to_string()
}

/// Expected CPU quota file content for `quota`/`period`.
fn quota_text(quota: i64, period: u64) -> String {
    if v2() {
        format!("{quota} {period}")
    } else {
        quota.to_string()
    }
}

fn shares_text(shares: u64) -> String {
    if v2() {
        casulo_core::cgroups::shares_to_weight(shares).to_string()
    } else {
        shares.to_string()
    }
}

fn cgroup_exists(b: &Bundle) -> bool {
    let rel = cgroup_path(b);
    let rel = rel.trim_start_matches('/');
    cgroup_roots().iter().any(|r| r.join(rel).exists())
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn go(b: &Bundle) {
    std::fs::write(b.rootfs().join("tmp/go"), "").unwrap();
}

const WAIT_GO: &str = "while [ ! -e /tmp/go ]; do sleep 0.05; done";

#[test]
fn memory_limit_visible_and_oom_kill_reported() {
    if !root() {
        return;
    }
    let env = Env::new("oom");
    let limit: i64 = 64 << 20;
    let script = format!(
        "cat {}; {WAIT_GO}; dd if=/dev/zero of=/dev/null bs=256M count=1; echo dd=$?",
        inside(MEM_MAX)
    );
    let b = env.sh(&script, |v| {
        v["linux"]["resources"]["memory"] = json!({"limit": limit, "swap": limit});
    });
    let id = b.id();
    let out = env.start_bg(&b);
    assert_eq!(host(&b, MEM_MAX), limit.to_string(), "host sees the limit");
    let stats: Value = serde_json::from_str(&env.ok(&["events", "--stats", &id]).stdout).unwrap();
    assert_eq!(stats["type"], "stats");
    assert_eq!(stats["id"], id.as_str());
    assert_eq!(stats["data"]["memory"]["usage"]["limit"], limit);
    for k in ["cpu", "memory", "pids", "blkio", "hugetlb"] {
        assert!(stats["data"].get(k).is_some(), "stats has {k}: {stats}");
    }

    let ev_base = b.dir.join("events");
    let mut events = env.spawn(&["events", "--interval", "1s", &id], &ev_base);
    let ev_out = ev_base.with_extension("out");
    assert!(
        eventually(|| read(&ev_out).contains("\"stats\"")),
        "a first stats event"
    );
    go(&b);
    assert!(
        eventually(|| events.try_wait().unwrap().is_some()),
        "events stops when the container stops"
    );
    let _ = events.kill();
    let _ = events.wait();
    let text = read(&out);
    assert!(
        text.starts_with(&format!("{limit}\n")),
        "limit seen inside: {text:?}"
    );
    assert!(
        text.contains("dd=137"),
        "the allocator is SIGKILLed: {text:?}"
    );
    let evs = read(&ev_out);
    let ooms: Vec<Value> = evs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "oom")
        .collect();
    assert!(!ooms.is_empty(), "an oom event: {evs}");
    assert_eq!(ooms[0]["id"], id.as_str());
    env.ok(&["delete", &id]);
    assert!(!cgroup_exists(&b), "delete removes the cgroup");
}

#[test]
fn pids_limit_makes_fork_fail() {
    if !root() {
        return;
    }
    let env = Env::new("pids");
    let script = format!(
        "cat {}; for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 30 & done; echo all-forked",
        inside(PIDS_MAX)
    );
    let b = env.sh(&script, |v| {
        v["linux"]["resources"]["pids"] = json!({"limit": 6});
    });
    let r = env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    assert_eq!(r.stdout.lines().next(), Some("6"), "{r:?}");
    assert!(!r.stdout.contains("all-forked"), "{r:?}");
    assert!(r.stderr.contains("fork"), "fork fails inside: {r:?}");
    assert_ne!(r.code, 0);
    assert!(!cgroup_exists(&b), "run removes the cgroup");
}

#[test]
fn cpu_quota_and_shares_visible() {
    if !root() {
        return;
    }
    let env = Env::new("cpu");
    let script = format!("cat {} {}", inside(CPU_QUOTA), inside(CPU_SHARES));
    let b = env.sh(&script, |v| {
        v["linux"]["resources"]["cpu"] = json!({"quota": 50000, "period": 100000, "shares": 512});
    });
    let r = env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout,
        format!("{}\n{}\n", quota_text(50000, 100000), shares_text(512))
    );
    // From the host, on a container that keeps running.
    let b = env.sh("sleep 1000", |v| {
        v["linux"]["resources"]["cpu"] = json!({"quota": 30000, "period": 100000, "shares": 256});
    });
    env.start_bg(&b);
    assert_eq!(host(&b, CPU_QUOTA), quota_text(30000, 100000));
    assert_eq!(host(&b, CPU_SHARES), shares_text(256));
}

#[test]
fn cgroup_mount_without_cgroup_namespace_is_the_containers_own() {
    if !root() {
        return;
    }
    let env = Env::new("nocgns");
    let limit: i64 = 48 << 20;
    let b = env.sh(&format!("cat {}", inside(MEM_MAX)), |v| {
        v["linux"]["resources"]["memory"] = json!({"limit": limit});
        let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "cgroup");
    });
    let r = env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, format!("{limit}\n"));
}

/// The init makes its mounts while the runtime moves it into its cgroups, and waits for
/// that only at the first `cgroup` mount (or before the device nodes). Whatever the
/// mount order, and with or without a `cgroup` mount, the cgroup namespace must be
/// rooted at the container's cgroup and a `cgroup` mount must show its limits.
#[test]
fn cgroup_namespace_and_mount_see_the_container_cgroup_in_any_mount_order() {
    if !root() {
        return;
    }
    let env = Env::new("cgorder");
    let ns_root = "awk -F: '{print $3}' /proc/self/cgroup | sort -u";
    // sysfs and the cgroup mount first, before every other mount.
    let b = env.sh(&format!("cat {}; {ns_root}", inside(PIDS_MAX)), |v| {
        v["linux"]["resources"]["pids"] = json!({"limit": 77});
        let mounts = v["mounts"].as_array_mut().unwrap();
        let mut first: Vec<Value> = Vec::new();
        for typ in ["sysfs", "cgroup"] {
            let i = mounts.iter().position(|m| m["type"] == typ).unwrap();
            first.push(mounts.remove(i));
        }
        first.append(mounts);
        *mounts = first;
    });
    let r = env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "77\n/\n", "{r:?}");
    // No cgroup mount at all: the namespace still starts at the container's cgroup.
    let b = env.sh(ns_root, |v| {
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["type"] != "cgroup");
    });
    let r = env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "/\n", "{r:?}");
}

#[test]
fn device_rules_deny_and_allow() {
    if !root() {
        return;
    }
    let env = Env::new("dev");
    let script = "true > /dev/net/tun && echo tun-ok; true < /dev/fuse; echo fuse=$?";
    let b = env.sh(script, |v| {
        let dev = |path: &str, minor: i64| {
            json!({"path": path, "type": "c", "major": 10, "minor": minor,
                   "fileMode": 438, "uid": 0, "gid": 0})
        };
        v["linux"]["devices"] = json!([dev("/dev/net/tun", 200), dev("/dev/fuse", 229)]);
        v["linux"]["resources"]["devices"] = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rw"}
        ]);
    });
    let r = env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("tun-ok"), "allowed device opens: {r:?}");
    assert!(
        r.stdout.contains("fuse=1") || r.stdout.contains("fuse=2"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("Operation not permitted"),
        "denied device gives EPERM: {r:?}"
    );
}

#[test]
fn pause_stops_progress_and_resume_restarts_it() {
    if !root() {
        return;
    }
    let env = Env::new("pause");
    let b = env.sh(
        "i=0; while true; do i=$((i+1)); echo $i; sleep 0.02; done",
        |_| {},
    );
    let id = b.id();
    let out = env.start_bg(&b);
    let count = || read(&out).lines().count();
    assert!(eventually(|| count() > 3), "the counter runs");
    env.ok(&["pause", &id]);
    assert_eq!(env.status(&id), "paused");
    std::thread::sleep(Duration::from_millis(100));
    let n = count();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(count(), n, "no progress while paused");
    env.ok(&["resume", &id]);
    assert_eq!(env.status(&id), "running");
    assert!(eventually(|| count() > n + 3), "progress after resume");
}

#[test]
fn update_changes_limits_live() {
    if !root() {
        return;
    }
    let env = Env::new("update");
    let files = [inside(MEM_MAX), inside(PIDS_MAX), inside(CPU_QUOTA)].join(" ");
    let script = format!("cat {files}; {WAIT_GO}; cat {files}; sleep 1000");
    let b = env.sh(&script, |v| {
        v["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
        v["linux"]["resources"]["pids"] = json!({"limit": 20});
        v["linux"]["resources"]["cpu"] = json!({"quota": 10000, "period": 100000});
    });
    let id = b.id();
    let out = env.start_bg(&b);
    assert!(
        eventually(|| read(&out).lines().count() == 3),
        "the first values are read before the update"
    );
    env.ok(&[
        "update",
        "--memory",
        "128M",
        "--pids-limit",
        "30",
        "--cpu-quota",
        "20000",
        &id,
    ]);
    // dockerd's form: every field present, zeros meaning "unset".
    let res = b.dir.join("res.json");
    let docker = json!({
        "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0},
        "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0,
                "realtimePeriod": 0, "cpus": "", "mems": ""},
        "pids": {"limit": 40},
        "blockIO": {"weight": 0}
    });
    std::fs::write(&res, docker.to_string()).unwrap();
    env.ok(&["update", "--resources", res.to_str().unwrap(), &id]);
    // Bad values are refused and change nothing.
    let r = env.run(&["update", "--pids-limit", "-3", &id]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("linux.resources.pids.limit"), "{r:?}");
    let r = env.run(&["update", "--l3-cache-schema", "L3:0=f", &id]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--l3-cache-schema"), "{r:?}");

    let mem = (128i64 << 20).to_string();
    assert_eq!(host(&b, MEM_MAX), mem);
    assert_eq!(host(&b, PIDS_MAX), "40");
    assert_eq!(host(&b, CPU_QUOTA), quota_text(20000, 100000));
    go(&b);
    let want = format!(
        "{}\n20\n{}\n{mem}\n40\n{}\n",
        64 << 20,
        quota_text(10000, 100000),
        quota_text(20000, 100000)
    );
    assert!(
        eventually(|| read(&out) == want),
        "{:?} != {want:?}",
        read(&out)
    );
    // Saved into the stored config.
    let st: Value = serde_json::from_str(&read(&env.root.join(&id).join("state.json"))).unwrap();
    let r = &st["config"]["linux"]["resources"];
    assert_eq!(r["memory"]["limit"], 128i64 << 20, "{r}");
    assert_eq!(r["pids"]["limit"], 40);
    assert_eq!(r["cpu"]["quota"], 20000);
    assert_eq!(r["cpu"]["period"], 100000);
    let stats: Value = serde_json::from_str(&env.ok(&["events", "--stats", &id]).stdout).unwrap();
    assert_eq!(stats["data"]["pids"]["limit"], 40);
    assert_eq!(stats["data"]["memory"]["usage"]["limit"], 128i64 << 20);
}

#[test]
fn ps_kill_all_and_delete_remove_everything() {
    if !root() {
        return;
    }
    let env = Env::new("killall");
    let b = env.sh("sleep 1000 & sleep 1000 & sleep 1000 & wait", |_| {});
    let id = b.id();
    env.start_bg(&b);
    let pids = || -> Vec<i64> {
        serde_json::from_str(&env.ok(&["ps", "--format", "json", &id]).stdout).unwrap()
    };
    assert!(
        eventually(|| pids().len() == 4),
        "sh and 3 sleeps: {:?}",
        pids()
    );
    let cg = cgroup_path(&b);
    for p in pids() {
        let own = read(Path::new(&format!("/proc/{p}/cgroup")));
        assert!(own.contains(&cg), "pid {p} is in {cg}: {own}");
    }
    let table = env.ok(&["ps", &id]).stdout;
    assert!(table.starts_with("UID"), "{table}");
    assert_eq!(table.lines().count(), 5, "{table}");
    let r = env.run(&["ps", "--format", "yaml", &id]);
    assert_ne!(r.code, 0);

    let before = pids();
    env.ok(&["kill", "--all", &id, "9"]);
    assert!(
        eventually(|| before
            .iter()
            .all(|p| !Path::new(&format!("/proc/{p}")).exists()
                || read(Path::new(&format!("/proc/{p}/stat"))).contains(") Z"))),
        "every process is killed"
    );
    assert!(eventually(|| env.status(&id) == "stopped"));
    assert!(cgroup_exists(&b));
    for args in [
        &["update", "--pids-limit", "9"][..],
        &["events", "--stats"][..],
    ] {
        let mut a = args.to_vec();
        a.push(&id);
        let r = env.run(&a);
        assert_ne!(r.code, 0, "{a:?} on a stopped container: {r:?}");
        assert!(r.stderr.contains("stopped"), "{r:?}");
    }
    env.ok(&["delete", &id]);
    assert!(
        !cgroup_exists(&b),
        "delete removes the cgroup in every hierarchy"
    );
    assert!(!env.root.join(&id).exists());
}

/// Writes `config.json` edited as JSON (it may be invalid for oci-spec).
fn raw_config(b: &Bundle, edit: impl FnOnce(&mut Value)) {
    let mut v = serde_json::to_value(&b.spec).unwrap();
    edit(&mut v);
    std::fs::write(b.dir.join("config.json"), v.to_string()).unwrap();
}

fn refused(env: &Env, b: &Bundle, extra: &[&str], field: &str) {
    let mut args: Vec<&str> = extra.to_vec();
    let dir = b.dir.to_str().unwrap().to_string();
    let id = b.id();
    args.extend(["create", "--bundle", &dir, &id]);
    let r = env.run(&args);
    assert_ne!(r.code, 0, "{field}: {r:?}");
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "one line: {r:?}");
    assert!(r.stderr.contains(field), "names {field}: {r:?}");
    assert!(!env.root.join(&id).exists(), "no state dir: {r:?}");
    assert!(!cgroup_exists(b), "no cgroup: {r:?}");
}

#[test]
fn bad_resources_refused_before_anything_is_created() {
    if !root() {
        return;
    }
    let env = Env::new("bad");
    let cases: Vec<(&str, Value)> = vec![
        (
            "linux.resources.memory.limit",
            json!({"memory": {"limit": -2}}),
        ),
        ("linux.resources.pids.limit", json!({"pids": {"limit": -5}})),
        ("linux.resources.cpu.period", json!({"cpu": {"period": 0}})),
        ("linux.resources.cpu.cpus", json!({"cpu": {"cpus": "0-x"}})),
        (
            "linux.resources.unified",
            json!({"unified": {"foo.bar": "1"}}),
        ),
        (
            "linux.resources.devices",
            json!({"devices": [{"allow": true, "type": "x", "access": "rwm"}]}),
        ),
    ];
    for (field, res) in cases {
        let b = env.bundle(&["true"]);
        raw_config(&b, |v| v["linux"]["resources"] = res);
        refused(&env, &b, &[], field);
    }
}

/// Without `--systemd-cgroup`, a systemd form of `cgroupsPath` is refused by name (the
/// driver itself: integration/tests/systemd_driver.rs).
#[test]
fn slice_form_needs_the_systemd_driver() {
    if !root() {
        return;
    }
    let env = Env::new("sdform");
    let b = env.bundle(&["true"]);
    raw_config(&b, |v| {
        v["linux"]["cgroupsPath"] = json!("system.slice:casulo:abc");
    });
    refused(&env, &b, &[], "linux.cgroupsPath");
    let r = env.run(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    assert!(r.stderr.contains("slice:prefix:name"), "{r:?}");
    assert!(r.stderr.contains("--systemd-cgroup"), "{r:?}");
}
