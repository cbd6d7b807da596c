//! podman + conmon driving Casulo (`--runtime`): `run --rm` with output and exit code,
//! detached + exec, pause/unpause, update --memory, kill + wait, create/init/start,
//! stop (clean, and SIGKILL after the timeout), podman info, a missing binary (127), tmpfs
//! mounts with podman's tmpcopyup (`--read-only`, `--tmpfs`, `--mount type=tmpfs`). podman gets private root/runroot/tmpdir and
//! containers.conf, and every podman command runs in one private mount namespace (held
//! by a sleeping process), so nothing it mounts reaches the host.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use casulo_integration::bundle::remove_cgroup_parent;
use casulo_integration::casulo_bin;
use casulo_integration::engines::{self, Daemon, Out, TempDir, IMAGE};

struct Podman {
    holder: Daemon,
    dir: TempDir,
    conf: PathBuf,
    /// The tests of this file share one temp dir and cgroup parent: one at a time
    /// (the last field, so it is released after the others are dropped).
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Podman {
    fn podman(&self, args: &[&str]) -> Out {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.holder.pid().to_string())
            .args(["-m", "--", "podman"])
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--storage-driver", "vfs", "--runtime"])
            .arg(casulo_bin())
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(args)
            .env("CONTAINERS_CONF", &self.conf);
        engines::run(&mut c, Duration::from_secs(90))
    }
}

impl Podman {
    /// `podman inspect`'s State.Status.
    fn status(&self, name: &str) -> String {
        let r = self.podman(&["inspect", "-f", "{{.State.Status}}", name]);
        assert_eq!(r.code, 0, "{r:?}");
        r.stdout.trim().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
        engines::kill_leftovers(&self.dir.path);
        remove_cgroup_parent();
    }
}

fn start() -> Option<Podman> {
    if engines::missing(&["podman", "conmon", "unshare", "nsenter"]).is_some() {
        return None;
    }
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("podman");
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    let conf = dir.join("containers.conf");
    std::fs::create_dir_all(dir.join("cni")).unwrap();
    std::fs::write(
        &conf,
        format!(
            r#"[containers]
default_ulimits = ["nofile={hard}:{hard}", "nproc=32768:32768"]
[network]
network_config_dir = "{cni}"
[engine]
runtime_supports_json = ["casulo"]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{events}"
"#,
            cni = dir.join("cni").display(),
            events = dir.join("events.log").display(),
        ),
    )
    .unwrap();
    let log = dir.join("holder.log");
    let holder = Daemon::start("mount-namespace holder", &["sleep", "100000"], &[], &log);
    holder.wait_private_mounts();
    let p = Podman {
        dir,
        holder,
        conf,
        _serial: serial,
    };
    let image = engines::busybox_image(&p.dir.path);
    let r = p.podman(&["load", "-i", image.to_str().unwrap()]);
    assert_eq!(r.code, 0, "podman load: {r:?}");
    let r = p.podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(r.stdout.contains(IMAGE), "{IMAGE} loaded: {r:?}");
    Some(p)
}

#[test]
fn podman_runs_casulo() {
    let Some(p) = start() else {
        return;
    };
    let cg = engines::cgroup_parent();
    let r = p.podman(&[
        "run",
        "--pull=never",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &cg,
        IMAGE,
        "sh",
        "-c",
        "echo hello from casulo; exit 3",
    ]);
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.stdout.trim(), "hello from casulo", "{r:?}");

    let r = p.podman(&[
        "run",
        "--pull=never",
        "-d",
        "--name",
        "pd",
        "--network",
        "none",
        "--cgroup-parent",
        &cg,
        IMAGE,
        "sleep",
        "1000",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = p.podman(&["exec", "pd", "sh", "-c", "echo in-exec; exit 4"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert_eq!(r.stdout.trim(), "in-exec", "{r:?}");
    let r = p.podman(&["exec", "pd", "no-such-binary"]);
    assert_eq!(r.code, 127, "missing binary in exec is 127: {r:?}");
    let r = p.podman(&[
        "exec",
        "-t",
        "pd",
        "sh",
        "-c",
        "readlink /proc/self/fd/0; exit 6",
    ]);
    assert_eq!(r.code, 6, "{r:?}");
    assert!(r.stdout.contains("/dev/pts/"), "{r:?}");
    // Pause and unpause (the runtime's `pause`/`resume`).
    let r = p.podman(&["pause", "pd"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(p.status("pd"), "paused");
    let r = p.podman(&["unpause", "pd"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(p.status("pd"), "running");
    // `update --memory` (the runtime's `update --resources=<file>`), seen inside.
    let r = p.podman(&["update", "--memory", "64m", "pd"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = p.podman(&[
        "exec",
        "pd",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim(), "67108864", "new limit inside: {r:?}");
    // kill + wait: the exit code of a SIGKILLed init.
    let r = p.podman(&["kill", "pd"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = p.podman(&["wait", "pd"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim(), "137", "{r:?}");
    let r = p.podman(&["rm", "-f", "pd"]);
    assert_eq!(r.code, 0, "{r:?}");

    // create, init, start; then a clean stop: the init traps TERM and exits 7.
    let r = p.podman(&[
        "create",
        "--pull=never",
        "--name",
        "pt",
        "--network",
        "none",
        "--cgroup-parent",
        &cg,
        IMAGE,
        "sh",
        "-c",
        "trap 'echo got-term; exit 7' TERM; while :; do sleep 1; done",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(p.status("pt"), "created");
    let r = p.podman(&["init", "pt"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(p.status("pt"), "initialized");
    let r = p.podman(&["start", "pt"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(p.status("pt"), "running");
    let t = Instant::now();
    let r = p.podman(&["stop", "-t", "10", "pt"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(8), "TERM was enough");
    let r = p.podman(&["inspect", "-f", "{{.State.ExitCode}}", "pt"]);
    assert_eq!(r.stdout.trim(), "7", "the trap's exit code: {r:?}");
    let r = p.podman(&["logs", "pt"]);
    assert!(r.stdout.contains("got-term"), "{r:?}");
    let r = p.podman(&["rm", "pt"]);
    assert_eq!(r.code, 0, "{r:?}");

    // stop -t 1 of an init ignoring TERM: SIGKILL after the timeout.
    let r = p.podman(&[
        "run",
        "--pull=never",
        "-d",
        "--name",
        "pi",
        "--network",
        "none",
        "--cgroup-parent",
        &cg,
        IMAGE,
        "sh",
        "-c",
        "trap '' TERM; while :; do sleep 1; done",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let t = Instant::now();
    let r = p.podman(&["stop", "-t", "1", "pi"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "waited for the timeout"
    );
    let r = p.podman(&["inspect", "-f", "{{.State.ExitCode}}", "pi"]);
    assert_eq!(r.stdout.trim(), "137", "killed by SIGKILL: {r:?}");
    let r = p.podman(&["rm", "pi"]);
    assert_eq!(r.code, 0, "{r:?}");

    // podman info names the runtime (its path) and its version (`casulo --version`).
    let r = p.podman(&[
        "info",
        "--format",
        "{{.Host.OCIRuntime.Name}}|{{.Host.OCIRuntime.Version}}",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let (name, version) = r.stdout.trim().split_once('|').expect("name|version");
    assert_eq!(name, casulo_bin().to_str().unwrap(), "{r:?}");
    assert!(
        version.starts_with(&format!("casulo {}", env!("CARGO_PKG_VERSION"))),
        "{r:?}"
    );

    let r = p.podman(&[
        "run",
        "--pull=never",
        "--rm",
        "-t",
        "--network",
        "none",
        "--cgroup-parent",
        &cg,
        IMAGE,
        "sh",
        "-c",
        "readlink /proc/self/fd/0; exit 5",
    ]);
    assert_eq!(r.code, 5, "{r:?}");
    assert!(r.stdout.contains("/dev/pts/0"), "{r:?}");
    let r = p.podman(&[
        "run",
        "--pull=never",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &cg,
        IMAGE,
        "no-such-binary",
    ]);
    assert_eq!(r.code, 127, "missing binary in run is 127: {r:?}");
    assert!(
        r.stderr.contains("executable file not found"),
        "error text: {r:?}"
    );
}

/// podman puts `tmpcopyup` on every tmpfs (`--read-only`'s /run, /tmp, /var/tmp,
/// `--tmpfs`, `--mount type=tmpfs`): the tmpfs starts with what the image had there.
#[test]
fn podman_tmpfs_mounts_copy_up() {
    let Some(p) = start() else {
        return;
    };
    let cg = engines::cgroup_parent();
    let run = |extra: &[&str], script: &str| {
        let mut args = vec![
            "run",
            "--pull=never",
            "--rm",
            "--network",
            "none",
            "--cgroup-parent",
            &cg,
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        p.podman(&args)
    };
    let r = run(
        &["--read-only"],
        "touch /tmp/x && echo tmp-writable; touch /bin/x 2>&1; grep -c ' /run .* - tmpfs ' /proc/self/mountinfo",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("tmp-writable"), "{r:?}");
    assert!(r.stdout.contains("Read-only file system"), "{r:?}");
    let r = run(
        &["--tmpfs", "/etc"],
        "grep -c root /etc/passwd; grep ' /etc ' /proc/self/mountinfo; touch /etc/new && echo etc-writable",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with("1\n") && r.stdout.contains(" - tmpfs "),
        "/etc is a tmpfs with the image's passwd copied in: {r:?}"
    );
    assert!(r.stdout.contains("etc-writable"), "{r:?}");
    let r = run(
        &["--mount", "type=tmpfs,dst=/etc"],
        "grep -c root /etc/passwd; grep ' /etc ' /proc/self/mountinfo",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with("1\n") && r.stdout.contains(" - tmpfs "),
        "{r:?}"
    );
    let r = run(&["--tmpfs", "/t"], "test -d /t && echo t-made");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("t-made"), "{r:?}");
}
