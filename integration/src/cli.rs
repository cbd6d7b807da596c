//! Running the `casulo` binary from tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use serde_json::Value;

use crate::Bundle;

/// Path of the `casulo` binary, building it (debug) once per process.
/// `CASULO_BIN=<path>` uses a prebuilt binary instead.
pub fn casulo_bin() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("CASULO_BIN") {
            return PathBuf::from(p);
        }
        cargo_build(&["-p", "casulo"], "debug/casulo")
    })
    .clone()
}

/// Runs `cargo build --quiet <args>` on this workspace (debug, in `CARGO_TARGET_DIR` or
/// the workspace's `target/`) and returns the path of `artifact` in the target directory.
pub fn cargo_build(args: &[&str], artifact: &str) -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("../target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet"])
        .args(args)
        .arg("--manifest-path")
        .arg(manifest_dir.join("../Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .expect("spawn cargo build");
    assert!(status.success(), "cargo build {args:?} failed");
    target_dir.join(artifact)
}

/// One runtime invocation's result.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `<runtime> --root <root> <args…>` with stdin from /dev/null and stdout/stderr
/// in temporary files (not pipes: a container created by `create` keeps the runtime's
/// stdio open, so reading a pipe to its end would wait for the container).
pub fn runtime(bin: &Path, root: &Path, args: &[&str]) -> Run {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let base = std::env::temp_dir().join(format!("casulo-out-{}-{n}", std::process::id()));
    let (out_p, err_p) = (base.with_extension("out"), base.with_extension("err"));
    let out = std::fs::File::create(&out_p).expect("stdout file");
    let err = std::fs::File::create(&err_p).expect("stderr file");
    let status = Command::new(bin)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .expect("spawn the runtime");
    let read = |p: &Path| {
        let s = std::fs::read_to_string(p).unwrap_or_default();
        let _ = std::fs::remove_file(p);
        s
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: read(&out_p),
        stderr: read(&err_p),
    }
}

/// A state root and a cgroup parent of its own per test (tests run in parallel),
/// removed at the end with every container in them.
pub struct TestEnv {
    /// The `--root` of this test.
    pub root: PathBuf,
    /// The cgroup parent of this test's containers.
    pub cgroup: String,
}

impl TestEnv {
    /// A fresh state root and cgroup parent named for `name`.
    pub fn new(name: &str) -> TestEnv {
        let root = PathBuf::from(format!("/tmp/casulo-lc-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        TestEnv {
            root,
            cgroup: format!(
                "{}/casulo-lc-{}-{name}",
                crate::bundle::cgroup_base(),
                std::process::id()
            ),
        }
    }
    /// A bundle whose cgroup is under this test's parent.
    pub fn bundle(&self, args: &[&str]) -> Bundle {
        Bundle::with_cgroups_path(args, |id| format!("{}/{id}", self.cgroup))
    }
    /// Runs casulo with this root.
    pub fn run(&self, args: &[&str]) -> Run {
        runtime(&casulo_bin(), &self.root, args)
    }
    /// Runs casulo with this root and asserts success.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "casulo {args:?} failed: {r:?}");
        r
    }
    /// `casulo state` parsed.
    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id]).stdout).expect("state is JSON")
    }
    /// `casulo create --bundle <b> <id>`.
    pub fn create(&self, b: &Bundle) -> Run {
        self.run(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id()])
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        delete_all(&self.root);
        let _ = std::fs::remove_dir_all(&self.root);
        let rel = self.cgroup.trim_start_matches('/');
        for h in [
            "", "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
            "systemd", "unified",
        ] {
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(h).join(rel));
        }
    }
}

/// Deletes (`delete --force`) every container of the state root `root`: a test's
/// clean-up, whatever the test left.
pub fn delete_all(root: &Path) {
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            let id = e.file_name();
            let _ = runtime(
                &casulo_bin(),
                root,
                &["delete", "--force", &id.to_string_lossy()],
            );
        }
    }
}

/// Waits until `f` holds (polling), for at most 10 s.
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// The bundle's `linux.cgroupsPath`, relative to a hierarchy's root.
pub fn cgroup_rel(b: &Bundle) -> PathBuf {
    let p = b
        .spec
        .linux()
        .as_ref()
        .unwrap()
        .cgroups_path()
        .clone()
        .unwrap();
    p.strip_prefix("/").unwrap().to_path_buf()
}

/// True when the bundle's cgroup exists in any hierarchy.
pub fn cgroup_exists(b: &Bundle) -> bool {
    let rel = cgroup_rel(b);
    ["memory", "pids", "unified"]
        .iter()
        .any(|h| Path::new("/sys/fs/cgroup").join(h).join(&rel).exists())
        || Path::new("/sys/fs/cgroup").join(&rel).exists()
}
