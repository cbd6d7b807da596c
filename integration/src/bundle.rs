//! OCI bundles for end-to-end tests.
//!
//! A [`Bundle`] is a fresh directory under `/tmp` holding `config.json` and a
//! `rootfs/` with busybox-static, a minimal `/etc`, and the static checker at
//! `/checker`. [`Bundle::write_config`] writes the spec both to
//! `<dir>/config.json` (for the runtime) and to `<dir>/rootfs/config.json`, so
//! the process can run `/checker /config.json` without any extra mount.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use oci_spec::runtime::Spec;

/// Where busybox-static is taken from on the host.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Bundles alive in this process: [`remove_cgroup_parent`] leaves the cgroups alone
/// while another test (running concurrently) still has one, so it cannot remove a
/// container cgroup that is being created.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// A test bundle; its directory is removed when it is dropped.
#[derive(Debug)]
pub struct Bundle {
    /// The bundle directory (`/tmp/casulo-it-<pid>-<n>`).
    pub dir: PathBuf,
    /// The configuration; call [`Bundle::write_config`] after changing it.
    pub spec: Spec,
    id: String,
}

impl Bundle {
    /// A bundle whose rootfs holds busybox (with [`APPLETS`] symlinks in `/bin`),
    /// `/etc/passwd` and `/etc/group` (root, nobody, user 1000), empty
    /// `proc sys dev tmp …` dirs and the checker at `/checker`.
    ///
    /// `config.json` is [`default_spec`] with `process.args = args` and
    /// `linux.cgroupsPath = <cgroup_parent()>/<id>`; it is already written.
    ///
    /// Panics on any I/O error (it is test infrastructure).
    pub fn new(args: &[&str]) -> Bundle {
        Bundle::with_cgroups_path(args, |id| format!("{}/{id}", cgroup_parent()))
    }

    /// [`Bundle::new`] with `linux.cgroupsPath = path(<id>)` instead: another cgroup
    /// parent, or the systemd driver's `slice:prefix:name`.
    pub fn with_cgroups_path(args: &[&str], path: impl FnOnce(&str) -> String) -> Bundle {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        LIVE.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let dir = PathBuf::from(format!("/tmp/casulo-it-{pid}-{n}"));
        let id = format!("it-{pid}-{n}");
        if dir.exists() {
            fs::remove_dir_all(&dir).expect("remove stale bundle dir");
        }
        fs::create_dir_all(&dir).expect("create bundle dir");
        set_mode(&dir, 0o755);
        let mut spec = default_spec();
        if let Some(p) = spec.process_mut().as_mut() {
            p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        }
        if let Some(l) = spec.linux_mut().as_mut() {
            l.set_cgroups_path(Some(PathBuf::from(path(&id))));
        }
        let bundle = Bundle { dir, spec, id };
        populate_rootfs(&bundle.rootfs());
        bundle.write_config();
        bundle
    }

    /// Writes `self.spec` to `<dir>/config.json` and a copy to
    /// `<dir>/rootfs/config.json` (read by the checker as `/config.json`).
    pub fn write_config(&self) {
        let json = serde_json::to_string_pretty(&self.spec).expect("serialize spec");
        fs::write(self.dir.join("config.json"), &json).expect("write config.json");
        let copy = self.rootfs().join("config.json");
        fs::write(&copy, &json).expect("write rootfs/config.json");
        set_mode(&copy, 0o644);
    }

    /// `<dir>/rootfs`.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// A container id unique to this bundle: `it-<pid>-<n>`.
    pub fn id(&self) -> String {
        self.id.clone()
    }

    /// Runs `<runtime> --root <state_root()> run --bundle <dir> <id>` with
    /// stdin from /dev/null and stdout/stderr captured, then
    /// `<runtime> --root … delete --force <id>` (whatever the outcome).
    ///
    /// If the runtime has not exited after [`RUN_TIMEOUT`], it is killed (by
    /// its PID) and the returned status is that of the killed process.
    pub fn run(&self, runtime: &Path) -> Output {
        let root = state_root();
        let mut child = Command::new(runtime)
            .arg("--root")
            .arg(&root)
            .args(["run", "--bundle"])
            .arg(&self.dir)
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the runtime");
        let drain = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                buf
            })
        };
        let out_t = drain(child.stdout.take().map(|r| Box::new(r) as _));
        let err_t = drain(child.stderr.take().map(|r| Box::new(r) as _));
        let start = Instant::now();
        let status = loop {
            match child.try_wait().expect("wait for the runtime") {
                Some(st) => break st,
                None if start.elapsed() > RUN_TIMEOUT => {
                    let _ = child.kill();
                    break child.wait().expect("wait for the killed runtime");
                }
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        };
        // delete --force kills the container's processes, closing the pipes.
        let _ = Command::new(runtime)
            .arg("--root")
            .arg(&root)
            .args(["delete", "--force"])
            .arg(&self.id)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        Output {
            status,
            stdout: out_t.join().unwrap_or_default(),
            stderr: err_t.join().unwrap_or_default(),
        }
    }
}

/// How long [`Bundle::run`] waits for the runtime before killing it.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// The runtime state directory used by [`Bundle::run`]:
/// `/tmp/casulo-it-state-<pid>` (the runtime creates it).
pub fn state_root() -> PathBuf {
    PathBuf::from(format!("/tmp/casulo-it-state-{}", std::process::id()))
}

impl Drop for Bundle {
    fn drop(&mut self) {
        // Tests never mount into the bundle on the host, so a plain recursive
        // removal is enough.
        let _ = fs::remove_dir_all(&self.dir);
        // The last bundle of the process removes the shared cgroup parent (the runtime's
        // delete leaves it, as runc does); suites that never called
        // `remove_cgroup_parent` left one `/casulo-it-<pid>` per run on the host.
        if LIVE.fetch_sub(1, Ordering::SeqCst) == 1 {
            remove_cgroup_parent();
        }
    }
}

/// The parent cgroup path used by bundles of this process:
/// `<cgroup_base()>/casulo-it-<pid>`. Remove it with [`remove_cgroup_parent`] at the end.
pub fn cgroup_parent() -> String {
    format!("{}/casulo-it-{}", cgroup_base(), std::process::id())
}

/// Where the tests' cgroups go: `$CASULO_TEST_CGROUP_BASE` (a delegated subtree, e.g.
/// `/system.slice/casulo-cgfs.scope` under systemd; no trailing `/`), or the root (`""`).
pub fn cgroup_base() -> String {
    std::env::var("CASULO_TEST_CGROUP_BASE")
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string()
}

/// Removes (rmdir, deepest first) the directories named
/// [`cgroup_parent`] that this process's containers left in every cgroup
/// hierarchy under `/sys/fs/cgroup` (v1 controllers and the unified tree).
/// Only empty cgroups can be removed; errors are ignored. Does nothing while a
/// [`Bundle`] of this process is alive (another test may be creating a container).
pub fn remove_cgroup_parent() {
    if LIVE.load(Ordering::SeqCst) > 0 {
        return;
    }
    let name = cgroup_parent();
    let name = name.trim_start_matches('/');
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            roots.push(e.path());
        }
    }
    for root in roots {
        let parent = root.join(name);
        if parent.is_dir() {
            rmdir_tree(&parent);
        }
    }
}

fn rmdir_tree(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The busybox applets linked into `/bin` (creating all ~270 of them costs
/// ~80 ms per bundle here); those the host busybox lacks are left out.
pub const APPLETS: &[&str] = &[
    "awk", "basename", "cat", "chmod", "chown", "cp", "cut", "date", "dd", "df", "dirname", "du",
    "echo", "env", "false", "find", "grep", "head", "hostname", "id", "kill", "ln", "ls", "mkdir",
    "mknod", "mount", "mv", "nproc", "ps", "pwd", "readlink", "rm", "rmdir", "sed", "sh", "sleep",
    "sort", "stat", "tail", "tee", "test", "touch", "tr", "true", "umount", "uname", "wc",
    "whoami", "xargs", "yes",
];

/// [`APPLETS`] that the host busybox provides (`busybox --list`), computed once.
fn busybox_applets() -> &'static [String] {
    static LINKED: OnceLock<Vec<String>> = OnceLock::new();
    LINKED.get_or_init(|| {
        let out = Command::new(HOST_BUSYBOX)
            .arg("--list")
            .output()
            .expect("run busybox --list");
        let list = String::from_utf8_lossy(&out.stdout).into_owned();
        let have: Vec<&str> = list.lines().map(str::trim).collect();
        APPLETS
            .iter()
            .filter(|a| have.contains(a))
            .map(|a| a.to_string())
            .collect()
    })
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
user:x:1000:1000:user:/home/user:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n";

fn populate_rootfs(rootfs: &Path) {
    for d in [
        "",
        "bin",
        "sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "home/user",
        "run",
        "var",
        "mnt",
        "usr/bin",
    ] {
        let p = rootfs.join(d);
        fs::create_dir_all(&p).expect("mkdir in rootfs");
        set_mode(&p, 0o755);
    }
    set_mode(&rootfs.join("tmp"), 0o1777);
    let bb = rootfs.join("bin/busybox");
    fs::copy(HOST_BUSYBOX, &bb).expect("copy busybox");
    set_mode(&bb, 0o755);
    for applet in busybox_applets() {
        let link = rootfs.join("bin").join(applet);
        if !link.exists() {
            symlink("busybox", &link).expect("busybox applet symlink");
        }
    }
    fs::write(rootfs.join("etc/passwd"), PASSWD).expect("write passwd");
    fs::write(rootfs.join("etc/group"), GROUP).expect("write group");
    fs::write(rootfs.join("etc/hostname"), "casulo\n").expect("write hostname");
    let checker = rootfs.join("checker");
    fs::copy(checker_path(), &checker).expect("copy checker");
    set_mode(&checker, 0o755);
}

/// Path of the static `casulo-checker` binary, building it once per process.
///
/// `CASULO_CHECKER=<path>` uses a prebuilt binary instead. Otherwise this runs
/// `cargo static-release --bin casulo-checker` (the alias in `.cargo/config.toml`:
/// a static release build for x86_64-unknown-linux-gnu) in the target dir given by
/// `CARGO_TARGET_DIR` (at run time, else at compile time) or the workspace's
/// `target/`. Panics if the build fails.
pub fn checker_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(build_checker).clone()
}

fn build_checker() -> PathBuf {
    if let Some(p) = std::env::var_os("CASULO_CHECKER") {
        return PathBuf::from(p);
    }
    static_bin("casulo-checker")
}

/// Builds one of this crate's binaries statically (`cargo static-release --bin NAME`,
/// the workspace alias in .cargo/config.toml, built like `cargo dist` so they share
/// their dependencies' artifacts) in `CARGO_TARGET_DIR` (run time, else compile time,
/// else the workspace `target/`) and returns its path.
pub fn static_bin(name: &str) -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| manifest_dir.join("../target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(manifest_dir)
        .args([
            "static-release",
            "--quiet",
            "--bin",
            name,
            "--manifest-path",
        ])
        .arg(manifest_dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .status()
        .unwrap_or_else(|e| panic!("spawn cargo to build {name}: {e}"));
    assert!(status.success(), "building {name} failed");
    let path = target_dir
        .join("x86_64-unknown-linux-gnu/release")
        .join(name);
    assert!(path.is_file(), "{} missing after build", path.display());
    path
}

/// The default configuration, as `runc spec` writes it, except: terminal is
/// false, hostname is "casulo", the process has no inheritable or ambient
/// capabilities, and a cgroup namespace is created.
///
/// Process: args `["sh"]`, env PATH + TERM, cwd `/`, uid/gid 0, capabilities
/// CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE in bounding, effective and
/// permitted, RLIMIT_NOFILE 1024/1024, noNewPrivileges. Root `rootfs`
/// read-only. Mounts proc, /dev tmpfs, devpts, /dev/shm, mqueue, sysfs, cgroup.
/// Linux: deny-all device cgroup rule, namespaces pid, network, ipc, uts,
/// mount, cgroup, runc's masked and read-only paths.
pub fn default_spec() -> Spec {
    let caps = serde_json::json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let v = serde_json::json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "casulo",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    });
    serde_json::from_value(v).expect("default spec is valid")
}

/// The inodes of this process's namespaces, as the checker expects them in
/// the env var `CASULO_HOST_NS` (`pid=4026531836,net=…`). With it, the checker
/// verifies that namespaces in the config are new (inode differs) and that
/// the others are shared with the host (inode equal).
pub fn host_ns_env() -> String {
    use std::os::unix::fs::MetadataExt;
    let mut parts = Vec::new();
    for ns in ["pid", "net", "ipc", "uts", "mnt", "user", "cgroup", "time"] {
        if let Ok(m) = fs::metadata(format!("/proc/self/ns/{ns}")) {
            parts.push(format!("{ns}={}", m.ino()));
        }
    }
    format!("CASULO_HOST_NS={}", parts.join(","))
}
