//! Rootless podman end to end (issue 16 point 5): the unprivileged user `casulo-rl`
//! runs `podman --runtime <casulo>` (vfs storage, `--network none`, cgroupfs manager
//! no cgroups on cgroup v1): `run --rm` with output and exit code,
//! `run -d`, `exec` with its exit code, `stop`, `rm`. The same scenario runs under runc
//! first, so a failure that is podman's or the host's shows there. Podman's storage,
//! run root and tmp dir are in the user's sandbox; its pause process and conmons are
//! killed by pid at the end.

use std::path::{Path, PathBuf};

use casulo_integration::engines::{self, IMAGE};
use casulo_integration::rootless::Sandbox;
use casulo_integration::Run;

struct Podman {
    sb: Sandbox,
    conf: PathBuf,
}

impl Podman {
    fn podman(&self, runtime: &Path, args: &[&str]) -> Run {
        let d = |p: &str| self.sb.dir.join(p).to_str().unwrap().to_string();
        let (root, runroot, tmp) = (d("storage"), d("runroot"), d("tmp"));
        let mut argv = vec![
            "podman",
            "--root",
            &root,
            "--runroot",
            &runroot,
            "--tmpdir",
            &tmp,
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--runtime",
            runtime.to_str().unwrap(),
        ];
        argv.extend_from_slice(args);
        let conf = self.conf.to_str().unwrap();
        self.sb
            .run_in(&self.sb.dir, &argv, &[("CONTAINERS_CONF", conf)])
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let runc = Path::new("/usr/sbin/runc");
        let _ = self.podman(runc, &["rm", "-a", "-f", "-t", "0"]);
        // The user namespace holder podman leaves running (its pid file), then conmons
        // and anything else of the user's in the sandbox.
        for f in ["xdg/libpod/tmp/pause.pid", "tmp/pause.pid"] {
            let pid = std::fs::read_to_string(self.sb.dir.join(f)).unwrap_or_default();
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        self.sb.kill_leftovers(&[]);
    }
}

fn start() -> Option<Podman> {
    let sb = Sandbox::new("podman")?;
    if engines::missing(&["podman", "conmon", "newuidmap", "newgidmap", "runc"]).is_some() {
        return None;
    }
    let conf = sb.dir.join("containers.conf");
    std::fs::write(
        &conf,
        format!(
            "[engine]\nruntime_supports_json = [\"casulo\"]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nevents_logfile_path = \"{}\"\n",
            sb.dir.join("events.log").display()
        ),
    )
    .unwrap();
    let image = engines::busybox_image(&sb.dir);
    sb.own(&sb.dir);
    let p = Podman { sb, conf };
    let r = p.podman(
        Path::new("/usr/sbin/runc"),
        &["load", "-i", image.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "podman load as the user: {r:?}");
    Some(p)
}

/// Flags for every container: no network. On cgroup v1 rootless podman asks for no
/// cgroup resources, so the runtime runs the container without cgroups
/// (`--cgroups=disabled` is not needed, and podman allows it only for crun).
fn flags() -> Vec<&'static str> {
    vec!["--pull=never", "--network", "none"]
}

fn scenario(p: &Podman, runtime: &Path, name: &str) {
    let who = runtime.display();
    let mut args = vec!["run", "--rm"];
    args.extend(flags());
    args.extend([IMAGE, "sh", "-c", "echo hi; exit 3"]);
    let r = p.podman(runtime, &args);
    assert_eq!(
        (r.code, r.stdout.trim()),
        (3, "hi"),
        "{who}: run --rm: {r:?}"
    );
    let mut args = vec!["run", "-d", "--name", name];
    args.extend(flags());
    args.extend([IMAGE, "sleep", "1000"]);
    let r = p.podman(runtime, &args);
    assert_eq!(r.code, 0, "{who}: run -d: {r:?}");
    let r = p.podman(
        runtime,
        &["exec", name, "sh", "-c", "echo in $(id -u); exit 4"],
    );
    assert_eq!((r.code, r.stdout.trim()), (4, "in 0"), "{who}: exec: {r:?}");
    let r = p.podman(runtime, &["stop", "-t", "2", name]);
    assert_eq!(r.code, 0, "{who}: stop: {r:?}");
    let r = p.podman(runtime, &["inspect", "-f", "{{.State.Status}}", name]);
    assert_eq!(r.stdout.trim(), "exited", "{who}: status after stop: {r:?}");
    let r = p.podman(runtime, &["rm", name]);
    assert_eq!(r.code, 0, "{who}: rm: {r:?}");
}

#[test]
fn rootless_podman_runs_casulo() {
    let Some(p) = start() else {
        return;
    };
    scenario(&p, Path::new("/usr/sbin/runc"), "rl-runc");
    let bin = p.sb.bin.clone();
    scenario(&p, &bin, "rl-casulo");
}
