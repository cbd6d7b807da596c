//! Shared helpers of the security, hooks and CVE suites: a state root per test, cleaned
//! up (containers deleted with `--force`, the test cgroup parent removed) on drop.
#![allow(dead_code)]

use std::path::PathBuf;

use casulo_integration::bundle::remove_cgroup_parent;
use casulo_integration::{casulo_bin, runtime, Bundle, Run};
use serde_json::Value;

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
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                let _ = self.run(&["delete", "--force", &e.file_name().to_string_lossy()]);
            }
        }
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
