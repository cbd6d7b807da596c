//! Helpers for the engine tests (`tests/engines_*.rs`): a one-layer busybox image as a
//! docker-archive (loads in `ctr`, `podman` and `docker`), a private temp directory per
//! engine, daemons started in a private mount namespace (`unshare -m`, so nothing they
//! mount reaches the host's mount table) and stopped by pid, and command runners with
//! a timeout.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bundle::HOST_BUSYBOX;

/// The image's name as every engine sees it after loading the archive.
pub const IMAGE: &str = "docker.io/casulo-test/busybox:latest";

/// Looks a program up in PATH.
pub fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    path.split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

/// The first missing prerequisite of an engine test (root, then each of `bins`),
/// recorded as a skip through [`crate::prereq::skip`] (a failure under `CI=true`).
pub fn missing(bins: &[&str]) -> Option<String> {
    if !crate::prereq::root() {
        return Some("needs root".into());
    }
    let why = bins
        .iter()
        .find(|b| which(b).is_none())
        .map(|b| format!("{b} is not installed (see .ci/packages.d/engines)"))?;
    crate::prereq::skip(&why);
    Some(why)
}

/// A directory of its own under /tmp, removed when dropped.
pub struct TempDir {
    /// The path.
    pub path: PathBuf,
}

impl TempDir {
    /// `/tmp/casulo-eng-<name>-<pid>`, fresh.
    pub fn new(name: &str) -> TempDir {
        let path = PathBuf::from(format!("/tmp/casulo-eng-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create the engine temp dir");
        TempDir { path }
    }

    /// A path inside.
    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Result of one command.
#[derive(Debug)]
pub struct Out {
    /// Exit code (-1 when killed by a signal or timed out).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs a command with stdin from /dev/null, output in files (a container started by
/// the command may keep pipes open), killing it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Out {
    run_with(cmd.stdin(Stdio::null()), timeout)
}

/// `cmd` under script(1), so it has a terminal (for `-t` flags that need the caller's
/// own tty); its stdin is a fifo held open read-write, so it never sees EOF.
pub fn run_in_terminal(cmd: &str, dir: &Path, timeout: Duration) -> Out {
    let fifo = dir.join("script-stdin");
    let _ = fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let stdin = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .expect("open the fifo read-write");
    let mut c = Command::new("script");
    c.args(["-q", "-e", "-c", cmd, "/dev/null"]).stdin(stdin);
    run_with(&mut c, timeout)
}

fn run_with(cmd: &mut Command, timeout: Duration) -> Out {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let base = std::env::temp_dir().join(format!("casulo-eng-out-{}-{n}", std::process::id()));
    let (op, ep) = (base.with_extension("out"), base.with_extension("err"));
    let child = cmd
        .stdout(fs::File::create(&op).expect("stdout file"))
        .stderr(fs::File::create(&ep).expect("stderr file"))
        .spawn();
    let code = match child {
        Ok(c) => wait_timeout(c, timeout),
        Err(e) => {
            let _ = fs::write(&ep, e.to_string());
            -1
        }
    };
    let read = |p: &Path| {
        let s = fs::read_to_string(p).unwrap_or_default();
        let _ = fs::remove_file(p);
        s
    };
    Out {
        code,
        stdout: read(&op),
        stderr: read(&ep),
    }
}

fn wait_timeout(mut c: Child, timeout: Duration) -> i32 {
    let end = Instant::now() + timeout;
    loop {
        match c.try_wait() {
            Ok(Some(st)) => return st.code().unwrap_or(-1),
            Ok(None) if Instant::now() > end => {
                let _ = c.kill();
                let _ = c.wait();
                return -1;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => return -1,
        }
    }
}

/// A long-running daemon started in a private mount namespace; stopped (SIGTERM, then
/// SIGKILL) by its pid when dropped.
pub struct Daemon {
    child: Child,
    name: String,
}

impl Daemon {
    /// Starts `argv` under `unshare -m --propagation private`, output to `log`.
    pub fn start(name: &str, argv: &[&str], env: &[(&str, &str)], log: &Path) -> Daemon {
        let f = fs::File::create(log).expect("daemon log");
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "--"])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup log"))
            .stderr(f);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the daemon");
        Daemon {
            child,
            name: name.into(),
        }
    }

    /// The daemon's pid (unshare execs it, so it is the daemon itself).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the daemon runs in a mount namespace other than ours (unshare has
    /// done its work), so nothing entering it can mount on the host.
    pub fn wait_private_mounts(&self) {
        let ours = fs::read_link("/proc/self/ns/mnt").expect("our mount namespace");
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let theirs = fs::read_link(format!("/proc/{}/ns/mnt", self.pid()));
            if theirs.as_ref().is_ok_and(|t| *t != ours) {
                return;
            }
            assert!(
                Instant::now() < end,
                "{} never left the host mount namespace",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `path` exists (a socket), or panics with the daemon's log.
    pub fn wait_for(&mut self, path: &Path, log: &Path, timeout: Duration) {
        let end = Instant::now() + timeout;
        while !path.exists() {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "{} exited ({st}) before {} appeared: {}",
                    self.name,
                    path.display(),
                    fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < end,
                "{} did not create {} in time: {}",
                self.name,
                path.display(),
                fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > end => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// The head of a private containerd's config.toml: its own root, state, sockets (gRPC
/// at `sock`, ttrpc and debug beside it) and managed-opt dir, all under `dir`;
/// `top_level` (e.g. `disabled_plugins = [...]`) goes before the first table. Callers
/// append their plugin tables.
pub fn containerd_config(dir: &Path, sock: &Path, top_level: &str) -> String {
    format!(
        r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
{top_level}
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = "{dir}/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"
"#,
        dir = dir.display(),
        sock = sock.display(),
    )
}

/// The gRPC socket of a containerd started by [`start_containerd`]: `<dir>/containerd.sock`
/// (the `sock` to give [`containerd_config`]).
pub fn containerd_sock(dir: &Path) -> PathBuf {
    dir.join("containerd.sock")
}

/// Starts a private containerd on `config` (written to `<dir>/config.toml`; its log is
/// `<dir>/containerd.log`) as a [`Daemon`] in its own mount namespace, and returns once
/// it runs there and its socket ([`containerd_sock`]) exists; panics with the log if it
/// exits or takes over 60 s.
pub fn start_containerd(dir: &Path, config: &str) -> Daemon {
    containerd_daemon(dir, config, None)
}

/// A private containerd under `dir` without its CRI plugin (the `ctr` tests), with the
/// path of its socket.
pub fn start_containerd_without_cri(dir: &Path) -> (PathBuf, Daemon) {
    let sock = containerd_sock(dir);
    let config = containerd_config(
        dir,
        &sock,
        r#"disabled_plugins = ["io.containerd.grpc.v1.cri"]"#,
    );
    let d = start_containerd(dir, &config);
    (sock, d)
}

/// [`start_containerd`] in a network namespace of its own too (`unshare -n`), where the
/// shell commands `prelude` run first (e.g. a mount in its mount namespace, `ip link set
/// lo up`; `set -e`: one failing makes the start fail). The daemon's pid is containerd's.
pub fn start_containerd_netns(dir: &Path, config: &str, prelude: &str) -> Daemon {
    containerd_daemon(dir, config, Some(prelude))
}

fn containerd_daemon(dir: &Path, config: &str, netns_prelude: Option<&str>) -> Daemon {
    let cfg = dir.join("config.toml");
    fs::write(&cfg, config).expect("write containerd's config.toml");
    let cfg = cfg.to_str().expect("a UTF-8 temp dir");
    let script;
    let argv: Vec<&str> = match netns_prelude {
        None => vec!["containerd", "--config", cfg],
        Some(prelude) => {
            script = format!("set -e; {prelude}; exec containerd --config {cfg}");
            vec!["unshare", "-n", "--", "sh", "-c", &script]
        }
    };
    let log = dir.join("containerd.log");
    let mut d = Daemon::start("containerd", &argv, &[], &log);
    d.wait_private_mounts();
    d.wait_for(&containerd_sock(dir), &log, Duration::from_secs(60));
    d
}

/// Applets linked in the image's /bin.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "sleep", "true", "false", "id", "hostname", "ps", "kill", "env",
    "grep", "pwd", "readlink", "stat", "test", "tr", "head", "wc", "mkdir", "touch", "uname",
];

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

fn tar(dir: &Path, out: &Path, items: &[&str]) {
    let st = Command::new("tar")
        .arg("--numeric-owner")
        .arg("--owner=0")
        .arg("--group=0")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .args(items)
        .status()
        .expect("run tar");
    assert!(st.success(), "tar failed");
}

/// Builds `<dir>/image.tar`: a docker-archive (manifest.json, config, one layer) of a
/// busybox-static rootfs, tagged [`IMAGE`], with `Cmd ["sh"]`.
pub fn busybox_image(dir: &Path) -> PathBuf {
    let work = dir.join("image-build");
    let rootfs = work.join("rootfs");
    for d in [
        "bin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "var",
    ] {
        fs::create_dir_all(rootfs.join(d)).expect("mkdir rootfs");
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod");
    fs::copy(HOST_BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
    for a in APPLETS {
        symlink("busybox", rootfs.join("bin").join(a)).expect("applet link");
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .expect("passwd");
    fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
    let image = dir.join("image.tar");
    let config = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
        "WorkingDir": "/"
    });
    docker_archive(&rootfs, &work.join("out"), &image, IMAGE, config);
    let _ = fs::remove_dir_all(&work);
    image
}

/// Writes `image`: a docker-archive (manifest.json, repositories, the image config with
/// `config` as its `config` section, one layer of `rootfs`) tagged `tag`
/// (`docker.io/<repo>:<tag>`), built in the empty scratch directory `out`.
pub fn docker_archive(
    rootfs: &Path,
    out: &Path,
    image: &Path,
    tag: &str,
    config: serde_json::Value,
) {
    fs::create_dir_all(out).expect("mkdir out");
    let layer = out.join("layer.tar");
    tar(rootfs, &layer, &["."]);
    let diff_id = sha256(&layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "casulo tests"}]
    })
    .to_string();
    let cfg_path = out.join("config.json");
    fs::write(&cfg_path, &config).expect("image config");
    let cfg_id = sha256(&cfg_path);
    fs::rename(&cfg_path, out.join(format!("{cfg_id}.json"))).expect("rename config");
    let layer_dir = out.join(&diff_id);
    fs::create_dir_all(&layer_dir).expect("layer dir");
    fs::rename(&layer, layer_dir.join("layer.tar")).expect("move layer");
    let manifest = serde_json::json!([{
        "Config": format!("{cfg_id}.json"),
        "RepoTags": [tag],
        "Layers": [format!("{diff_id}/layer.tar")]
    }]);
    fs::write(out.join("manifest.json"), manifest.to_string()).expect("manifest");
    let short = tag.trim_start_matches("docker.io/");
    let (repo, version) = short.rsplit_once(':').unwrap_or((short, "latest"));
    let repos = serde_json::json!({ repo: { version: diff_id } });
    fs::write(out.join("repositories"), repos.to_string()).expect("repositories");
    let cfg_name = format!("{cfg_id}.json");
    tar(
        out,
        image,
        &["manifest.json", "repositories", &cfg_name, &diff_id],
    );
}

/// The cgroup parent the engine tests put their containers under: `/casulo-it-<pid>`.
pub fn cgroup_parent() -> String {
    crate::bundle::cgroup_parent()
}

/// After a daemon is stopped: kills (SIGKILL, by pid) what the test started and left
/// behind: processes whose command line names `dir` (shims, conmon, the holder) and
/// processes in the test's cgroups (`/casulo-it-<pid>`). Nothing else is touched.
pub fn kill_leftovers(dir: &Path) {
    let tag = dir.display().to_string();
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
            if pid != me && String::from_utf8_lossy(&cmd).contains(&tag) {
                pids.push(pid);
            }
        }
    }
    let parent = cgroup_parent();
    let parent = parent.trim_start_matches('/');
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for h in rd.flatten() {
            collect_procs(&h.path().join(parent), &mut pids);
        }
    }
    collect_procs(&Path::new("/sys/fs/cgroup").join(parent), &mut pids);
    pids.sort_unstable();
    pids.dedup();
    for pid in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    std::thread::sleep(Duration::from_millis(200));
}

fn collect_procs(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(s) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_procs(&e.path(), out);
            }
        }
    }
}
