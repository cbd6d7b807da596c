//! The engines with their systemd cgroup drivers, under systemd as PID 1 (the systemd VM:
//! `scripts/test.d/v2vm-systemd.sh`): containerd (`ctr run --runc-systemd-cgroup`), dockerd
//! (`native.cgroupdriver=systemd`) and podman (`cgroup_manager = "systemd"`) each run a
//! busybox container with a memory and a pids limit through the runtime binary named by
//! `CASULO_ENGINE_RUNTIME` (default: casulo; `/usr/sbin/runc` checks the harness itself).
//! Each test sees the limits from inside the container (through exec) and in
//! `systemctl show <unit>` and the unit's cgroup, pauses and unpauses (cgroup.freeze),
//! reads stats, stops and removes the container, and finds no unit or cgroup left.
//! Private engine instances only (own roots and sockets, private mount namespaces). On a
//! host whose PID 1 is not systemd the tests do not apply (counted, never a failure).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use casulo_integration::bundle::HOST_BUSYBOX;
use casulo_integration::engines::{self, Daemon, Out, TempDir, IMAGE};
use casulo_integration::{casulo_bin, prereq};

const MEM: u64 = 64 << 20;
const PIDS: u64 = 42;
/// Prints the container's own memory.max and pids.max (cgroup namespace or not).
const LIMITS: &str =
    "cg=$(cat /proc/self/cgroup); cg=${cg#0::}; cat /sys/fs/cgroup$cg/memory.max /sys/fs/cgroup$cg/pids.max";
const T: Duration = Duration::from_secs(120);

/// The runtime the engines drive: `$CASULO_ENGINE_RUNTIME` if set and not empty, else
/// casulo (an empty path would make ctr fall back to `runc` from PATH).
fn runtime() -> PathBuf {
    std::env::var_os("CASULO_ENGINE_RUNTIME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(casulo_bin)
}

/// True under systemd as PID 1 with a system bus; else records "not applicable".
fn under_systemd(bins: &[&str]) -> bool {
    let pid1 = fs::read_to_string("/proc/1/comm").unwrap_or_default();
    if pid1.trim() != "systemd" || !Path::new("/run/dbus/system_bus_socket").exists() {
        prereq::not_applicable(
            "PID 1 is not systemd with a system bus (scripts/test.d/v2vm-systemd.sh runs this)",
        );
        return false;
    }
    engines::missing(bins).is_none()
}

/// `systemctl show -p …` of `unit` as a map.
fn show(unit: &str, props: &[&str]) -> HashMap<String, String> {
    let mut c = Command::new("systemctl");
    c.args(["show", "--no-pager", unit]);
    for p in props {
        c.args(["-p", p]);
    }
    let r = engines::run(&mut c, T);
    assert_eq!(r.code, 0, "systemctl show {unit}: {r:?}");
    r.stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The running container's unit: active, with the limits as systemd properties and in its
/// cgroup files; `inside` is [`LIMITS`]'s output from an exec in the container.
/// Returns the unit's cgroup directory.
fn check_unit(unit: &str, inside: &Out) -> PathBuf {
    let seen: Vec<&str> = inside.stdout.split_whitespace().collect();
    assert_eq!(
        seen,
        [MEM.to_string(), PIDS.to_string()],
        "limits inside the container: {inside:?}"
    );
    let p = show(
        unit,
        &["ActiveState", "MemoryMax", "TasksMax", "ControlGroup"],
    );
    assert_eq!(p["ActiveState"], "active", "{unit}: {p:?}");
    assert_eq!(p["MemoryMax"], MEM.to_string(), "{unit}: {p:?}");
    assert_eq!(p["TasksMax"], PIDS.to_string(), "{unit}: {p:?}");
    let cg = Path::new("/sys/fs/cgroup").join(p["ControlGroup"].trim_start_matches('/'));
    let read = |f: &str| fs::read_to_string(cg.join(f)).unwrap_or_default();
    assert_eq!(read("memory.max").trim(), MEM.to_string(), "{cg:?}");
    assert_eq!(read("pids.max").trim(), PIDS.to_string(), "{cg:?}");
    cg
}

/// Waits (10 s) until `cg`'s cgroup.freeze reads `want`.
fn freeze_is(cg: &Path, want: &str) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if fs::read_to_string(cg.join("cgroup.freeze")).is_ok_and(|s| s.trim() == want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// After removal: no such unit loaded and no cgroup directory (waits up to 10 s).
fn check_gone(unit: &str, cg: &Path) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let p = show(unit, &["LoadState", "ActiveState"]);
        let gone = p["LoadState"] == "not-found" && !cg.exists();
        if gone {
            return;
        }
        assert!(
            Instant::now() < end,
            "{unit} left behind: {p:?}, cgroup {cg:?} exists: {}",
            cg.exists()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The docker-CLI flow both docker and podman have: `run -d` busybox with the limits
/// (`flags` added), the limits through `exec` and in the unit `<unit_prefix>-<id>.scope`,
/// pause/unpause, `stats` showing `stats_limit`, stop, rm, nothing left. Returns the id.
fn docker_cli_lifecycle(
    cli: &dyn Fn(&[&str]) -> Out,
    flags: &[&str],
    unit_prefix: &str,
    stats_limit: &str,
) -> String {
    let (mem, pids) = (MEM.to_string(), PIDS.to_string());
    let mut args = vec!["run", "-d", "--network", "none"];
    args.extend(flags);
    args.extend([
        "--memory",
        &mem,
        "--memory-swap",
        &mem,
        "--pids-limit",
        &pids,
    ]);
    args.extend([IMAGE, "sleep", "1000"]);
    let r = cli(&args);
    assert_eq!(r.code, 0, "run: {r:?}");
    let cid = r.stdout.trim().to_string();
    let unit = format!("{unit_prefix}-{cid}.scope");
    let inside = cli(&["exec", &cid, "sh", "-c", LIMITS]);
    let cg = check_unit(&unit, &inside);
    assert_eq!(cli(&["pause", &cid]).code, 0);
    assert!(freeze_is(&cg, "1"), "paused: {cg:?}");
    assert_eq!(cli(&["unpause", &cid]).code, 0);
    assert!(freeze_is(&cg, "0"), "unpaused: {cg:?}");
    let format = "{{.MemUsage}} {{.PIDs}}";
    let r = cli(&["stats", "--no-stream", "--format", format, &cid]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(stats_limit),
        "memory limit in stats: {r:?}"
    );
    let r = cli(&["stop", "-t", "1", &cid]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = cli(&["rm", &cid]);
    assert_eq!(r.code, 0, "{r:?}");
    check_gone(&unit, &cg);
    cid
}

// ------------------------------------------------------------------------ containerd

/// A rootfs directory with busybox and the applets the test runs.
fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy(HOST_BUSYBOX, root.join("bin/busybox")).unwrap();
    for a in ["sh", "cat", "sleep", "echo"] {
        symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    root
}

#[test]
fn containerd_systemd_cgroup() {
    if !under_systemd(&["containerd", "ctr", "containerd-shim-runc-v2", "unshare"]) {
        return;
    }
    let dir = TempDir::new("sd-containerd");
    let (sock, d) = engines::start_containerd_without_cri(&dir.path);
    let ctr = |args: &[&str]| {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&sock)
            .args(["--namespace", "casulosd"])
            .args(args);
        engines::run(&mut c, T)
    };
    // ctr has no pids flag: the spec is ctr's default with the limits and cgroupsPath.
    let id = format!("sd-ctr-{}", std::process::id());
    let unit = format!("casulo-ctr-{id}.scope");
    let cgpath = format!("system.slice:casulo-ctr:{id}");
    let r = ctr(&["oci", "spec"]);
    assert_eq!(r.code, 0, "{r:?}");
    let mut spec: serde_json::Value = serde_json::from_str(&r.stdout).expect("ctr oci spec");
    spec["root"] = serde_json::json!({"path": busybox_rootfs(&dir.path), "readonly": false});
    spec["process"]["args"] = serde_json::json!(["sleep", "1000"]);
    spec["process"]["terminal"] = false.into();
    spec["process"]["env"] = serde_json::json!(["PATH=/bin"]);
    // ctr's default spec has no cgroup mount: the container's own cgroup at /sys/fs/cgroup
    spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(serde_json::json!({"type": "cgroup"}));
    spec["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(serde_json::json!({
        "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}));
    spec["linux"]["cgroupsPath"] = cgpath.clone().into();
    spec["linux"]["resources"]["memory"] = serde_json::json!({ "limit": MEM });
    spec["linux"]["resources"]["pids"] = serde_json::json!({ "limit": PIDS });
    let spec_path = dir.join("spec.json");
    fs::write(&spec_path, spec.to_string()).unwrap();
    let rt = runtime();
    let runc_root = dir.join("runc-root");
    let r = ctr(&[
        "run",
        "-d",
        "--config",
        spec_path.to_str().unwrap(),
        "--runc-binary",
        rt.to_str().unwrap(),
        "--runc-root",
        runc_root.to_str().unwrap(),
        "--runc-systemd-cgroup",
        "--cgroup",
        &cgpath,
        &id,
    ]);
    assert_eq!(r.code, 0, "ctr run: {r:?}");
    let inside = ctr(&["task", "exec", "--exec-id", "lim", &id, "sh", "-c", LIMITS]);
    let cg = check_unit(&unit, &inside);
    assert_eq!(ctr(&["task", "pause", &id]).code, 0);
    assert!(freeze_is(&cg, "1"), "paused: {cg:?}");
    assert_eq!(ctr(&["task", "resume", &id]).code, 0);
    assert!(freeze_is(&cg, "0"), "resumed: {cg:?}");
    let r = ctr(&["task", "metrics", &id]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(&MEM.to_string()),
        "memory limit in metrics: {r:?}"
    );
    assert!(r.stdout.contains("pids.current"), "pids in metrics: {r:?}");
    let r = ctr(&["task", "kill", "-s", "SIGKILL", &id]);
    assert_eq!(r.code, 0, "{r:?}");
    let end = Instant::now() + Duration::from_secs(20);
    while !ctr(&["task", "ls"])
        .stdout
        .lines()
        .any(|l| l.contains(&id) && l.contains("STOPPED"))
    {
        assert!(Instant::now() < end, "task never stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ctr(&["task", "delete", &id]).code, 0);
    assert_eq!(ctr(&["container", "delete", &id]).code, 0);
    check_gone(&unit, &cg);
    drop(d);
    engines::kill_leftovers(&dir.path);
}

// ---------------------------------------------------------------------------- docker

#[test]
fn dockerd_systemd_cgroupdriver() {
    if !under_systemd(&["dockerd", "containerd", "docker", "unshare"]) {
        return;
    }
    let dir = TempDir::new("sd-docker");
    let sock = dir.join("docker.sock");
    let cfg = dir.join("daemon.json");
    fs::write(&cfg, "{}").unwrap();
    let log = dir.join("dockerd.log");
    let p = |f: &str| dir.join(f).display().to_string();
    let host = format!("unix://{}", sock.display());
    let rt = format!("sdrt={}", runtime().display());
    let mut d = Daemon::start(
        "dockerd",
        &[
            "dockerd",
            "--config-file",
            &p("daemon.json"),
            "--data-root",
            &p("data"),
            "--exec-root",
            &p("exec"),
            "--pidfile",
            &p("dockerd.pid"),
            "-H",
            &host,
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            "--bridge=none",
            "--storage-driver",
            "vfs",
            "--exec-opt",
            "native.cgroupdriver=systemd",
            "--add-runtime",
            &rt,
        ],
        &[],
        &log,
    );
    d.wait_private_mounts();
    d.wait_for(&sock, &log, T);
    let docker = |args: &[&str]| {
        let mut c = Command::new("docker");
        c.args(["-H", &host])
            .args(args)
            .env("DOCKER_API_VERSION", "1.41")
            .env("DOCKER_CONFIG", dir.join("cli"));
        engines::run(&mut c, T)
    };
    let image = engines::busybox_image(&dir.path);
    let r = docker(&["load", "-i", image.to_str().unwrap()]);
    assert_eq!(r.code, 0, "docker load: {r:?}");
    // the VM's kernel has AppArmor; docker-default would need apparmor_parser
    let flags = ["--runtime", "sdrt", "--security-opt", "apparmor=unconfined"];
    docker_cli_lifecycle(&docker, &flags, "docker", "/ 64MiB");
    drop(d);
    engines::kill_leftovers(&dir.path);
}

// ---------------------------------------------------------------------------- podman

#[test]
fn podman_systemd_cgroup_manager() {
    if !under_systemd(&["podman", "conmon", "unshare", "nsenter"]) {
        return;
    }
    let dir = TempDir::new("sd-podman");
    let conf = dir.join("containers.conf");
    fs::create_dir_all(dir.join("cni")).unwrap();
    fs::write(
        &conf,
        format!(
            "[network]\nnetwork_config_dir = \"{}\"\n[engine]\ncgroup_manager = \"systemd\"\n\
             events_logger = \"file\"\nevents_logfile_path = \"{}\"\n",
            dir.join("cni").display(),
            dir.join("events.log").display()
        ),
    )
    .unwrap();
    let holder = Daemon::start("holder", &["sleep", "100000"], &[], &dir.join("holder.log"));
    holder.wait_private_mounts();
    let rt = runtime();
    let podman = |args: &[&str]| {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(holder.pid().to_string())
            .args(["-m", "--", "podman", "--root"])
            .arg(dir.join("root"))
            .arg("--runroot")
            .arg(dir.join("runroot"))
            .arg("--tmpdir")
            .arg(dir.join("tmp"))
            .args(["--storage-driver", "vfs", "--runtime"])
            .arg(&rt)
            .args(["--cgroup-manager", "systemd", "--events-backend", "file"])
            .args(args)
            .env("CONTAINERS_CONF", &conf);
        engines::run(&mut c, T)
    };
    let image = engines::busybox_image(&dir.path);
    let r = podman(&["load", "-i", image.to_str().unwrap()]);
    assert_eq!(r.code, 0, "podman load: {r:?}");
    let cid = docker_cli_lifecycle(&podman, &["--pull=never"], "libpod", "/ 67.11MB");
    let conmon = format!("libpod-conmon-{cid}.scope");
    let p = show(&conmon, &["LoadState"]);
    assert_eq!(p["LoadState"], "not-found", "{conmon} left: {p:?}");
    let _ = podman(&["rm", "-a", "-f", "-t", "0"]);
    drop(holder);
    engines::kill_leftovers(&dir.path);
}
