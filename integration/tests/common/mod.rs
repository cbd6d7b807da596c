//! Shared helpers of the security, hooks and CVE suites: a state root per test, cleaned
//! up (containers deleted with `--force`, the test cgroup parent removed) on drop.
#![allow(dead_code)]

use std::path::PathBuf;

use casulo_integration::bundle::remove_cgroup_parent;
use casulo_integration::{casulo_bin, runtime, Bundle, Run};
use serde_json::Value;
use std::os::unix::fs::symlink;

/// A state root of its own per test. Tests of one binary run one at a time: they share
/// the cgroup parent `/casulo-it-<pid>`, and one test's cleanup (rmdir of the empty
/// cgroups under it) would remove the cgroup another test's create just made.
pub struct Env {
    pub root: PathBuf,
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Env {
    pub fn new(name: &str) -> Env {
        let root = PathBuf::from(format!("/tmp/casulo-sec-{}-{name}", std::process::id()));
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let _ = std::fs::remove_dir_all(&root);
        Env {
            root,
            _serial: serial,
        }
    }
    pub fn run(&self, args: &[&str]) -> Run {
        runtime(&casulo_bin(), &self.root, args)
    }
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "casulo {args:?} failed: {r:?}");
        r
    }
    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id]).stdout).expect("state is JSON")
    }
    pub fn create(&self, b: &Bundle) -> Run {
        self.run(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id()])
    }
    /// `casulo run` of the bundle (foreground), then `delete --force`.
    pub fn run_bundle(&self, b: &Bundle) -> Run {
        let r = self.run(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
        let _ = self.run(&["delete", "--force", &b.id()]);
        r
    }
    /// Asserts that a failed create left nothing: no state directory, no cgroup.
    pub fn assert_nothing_left(&self, b: &Bundle) {
        assert!(
            !self.root.join(b.id()).exists(),
            "state dir left behind for {}",
            b.id()
        );
        assert!(!cgroup_exists(b), "cgroup left behind for {}", b.id());
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        casulo_integration::cli::delete_all(&self.root);
        let _ = std::fs::remove_dir_all(&self.root);
        remove_cgroup_parent();
    }
}

pub fn is_root() -> bool {
    casulo_integration::prereq::root()
}

/// True as root; otherwise the skip is recorded through `prereq` (a failure under
/// `CI=true`, where root is a given).
pub fn root_or_skip(_suite: &str) -> bool {
    is_root()
}

#[allow(unused_imports)]
pub use casulo_integration::cli::{cgroup_exists, eventually};

/// A fresh host directory for a test (removed by the caller's bundle drop when inside it).
pub fn host_dir(b: &Bundle, name: &str) -> PathBuf {
    let d = b.dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Edits the bundle's config as JSON and writes it.
pub fn edit(b: &mut Bundle, f: impl FnOnce(&mut Value)) {
    let mut v = serde_json::to_value(&b.spec).unwrap();
    f(&mut v);
    b.spec = serde_json::from_value(v).expect("edited spec is valid");
    b.write_config();
}

/// Writes `raw` as config.json verbatim (for configs oci-spec would refuse or drop).
pub fn write_raw(b: &Bundle, raw: &Value) {
    std::fs::write(b.dir.join("config.json"), raw.to_string()).unwrap();
}

/// CVE-2024-21626 through `process.cwd`, for any runner: a cwd of `/proc/self/fd/N`
/// (N = 3..8) is refused by field and leaves nothing (`left` asserts it); a cwd symlink
/// climbing out of the rootfs stays inside it. `bundle(args, cwd)` makes a bundle,
/// `run` runs it to the end and deletes it.
pub fn cwd_cannot_escape(
    bundle: &dyn Fn(&[&str], &str) -> Bundle,
    run: &dyn Fn(&Bundle) -> Run,
    left: &dyn Fn(&Bundle),
) {
    for n in 3..=8 {
        let cwd = format!("/proc/self/fd/{n}");
        let b = bundle(&["sh", "-c", "ls .. ; pwd"], &cwd);
        let r = run(&b);
        assert_ne!(r.code, 0, "cwd {cwd} accepted: {r:?}");
        assert!(r.stderr.contains("process.cwd"), "{}", r.stderr);
        left(&b);
    }
    let b = bundle(&["ls"], "/escape");
    symlink("../../../../../../../../..", b.rootfs().join("escape")).unwrap();
    let r = run(&b);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.split_whitespace().any(|f| f == "checker"),
        "cwd is the container's root, not the host's: {r:?}"
    );
}

/// CVE-2025-31133 setup: `<bundle>/fakedev` whose `null` is a symlink to a procfs file
/// (`kind` "symlink") or a plain file, and the config edit that makes it the container's
/// `/dev` (an rbind replacing every `/dev…` mount).
pub fn fake_dev(b: &Bundle, kind: &str) -> impl FnOnce(&mut Value) {
    let dev = host_dir(b, "fakedev");
    let null = dev.join("null");
    if kind == "symlink" {
        symlink("/proc/sys/kernel/core_pattern", &null).unwrap();
    } else {
        std::fs::write(&null, "not the null device").unwrap();
    }
    let d = dev.to_str().unwrap().to_string();
    move |v: &mut Value| {
        let mounts = v["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"));
        mounts.push(
            serde_json::json!({"destination": "/dev", "type": "bind", "source": d, "options": ["rbind"]}),
        );
    }
}
