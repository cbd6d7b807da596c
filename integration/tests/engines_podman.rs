//! podman + conmon driving Casulo (`--runtime`): `run --rm` with output and exit code,
//! detached + exec, a missing binary (127). podman gets private root/runroot/tmpdir and
//! containers.conf, and every podman command runs in one private mount namespace (held
//! by a sleeping process), so nothing it mounts reaches the host.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use casulo_integration::bundle::remove_cgroup_parent;
use casulo_integration::casulo_bin;
use casulo_integration::engines::{self, Daemon, Out, TempDir, IMAGE};

struct Podman {
    holder: Daemon,
    dir: TempDir,
    conf: PathBuf,
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

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
        engines::kill_leftovers(&self.dir.path);
        remove_cgroup_parent();
    }
}

fn start() -> Option<Podman> {
    if let Some(why) = engines::missing(&["podman", "conmon", "unshare", "nsenter"]) {
        println!("skipped: {why}");
        return None;
    }
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
    let p = Podman { dir, holder, conf };
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
    let r = p.podman(&["stop", "-t", "1", "pd"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = p.podman(&["rm", "-f", "pd"]);
    assert_eq!(r.code, 0, "{r:?}");

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
