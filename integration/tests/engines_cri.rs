//! Kubernetes' node path: containerd's CRI plugin driven over real gRPC (runtime.v1)
//! as kubelet drives it, with the pods' `runtime_handler` `casulo` (the runc v2 shim
//! with `BinaryName` = the runtime under test). Two pods on a CNI bridge inside
//! containerd's own network namespace; sandbox, containers, exec, logs, stop, removal,
//! the namespaces shared with the pause, and what the CRI plugin translates (resources,
//! securityContext, hostPath mounts), asserted from inside the containers; nothing
//! left afterwards. The same test runs with runc behind the handler (harness check),
//! and with `SystemdCgroup = true` and slices as the pods' cgroup parents, as kubelet's
//! systemd driver runs it (`cri_pods_casulo_systemd`: systemd as PID 1 only, the
//! systemd VM of scripts/test.d/v2vm-systemd.sh).

mod cri;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use casulo_integration::bundle::remove_cgroup_parent;
use casulo_integration::casulo_bin;
use casulo_integration::engines;
use cri::{Cri, Driver};
use k8s_cri::v1 as api;

/// The two tests share the cgroup parent and kill_leftovers: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const HANDLER: &str = "casulo";

#[test]
fn cri_pods_casulo() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if cri::missing() {
        return;
    }
    pods("cri-casulo", &casulo_bin(), Driver::Cgroupfs);
}

#[test]
fn cri_pods_casulo_systemd() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !casulo_integration::prereq::root() || !casulo_integration::prereq::systemd() {
        return;
    }
    if cri::missing() {
        return;
    }
    pods("cri-casulo-sd", &casulo_bin(), Driver::Systemd);
}

#[test]
fn cri_pods_runc() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if cri::missing() {
        return;
    }
    let Some(runc) = engines::which("runc") else {
        casulo_integration::prereq::skip("runc is not installed (harness check)");
        return;
    };
    pods("cri-runc", &runc, Driver::Cgroupfs);
}

fn meta(name: &str, tag: &str) -> api::PodSandboxMetadata {
    api::PodSandboxMetadata {
        name: name.into(),
        uid: format!("{tag}-{name}-{}", std::process::id()),
        namespace: "casulo-test".into(),
        attempt: 0,
    }
}

/// The pod's cgroup parent (kubelet's pod cgroup): under the test's own parent, or
/// with the systemd driver the pod's slice.
fn pod_cgroup(cri: &Cri, tag: &str, pod: &str) -> String {
    match cri.driver {
        Driver::Cgroupfs => format!("{}/{tag}-{pod}", engines::cgroup_parent()),
        Driver::Systemd => sd::pod_slice(&meta(pod, tag).uid),
    }
}

fn sandbox_config(cri: &Cri, tag: &str, pod: &str, privileged: bool) -> api::PodSandboxConfig {
    let logs = cri.dir.join(&format!("logs/{pod}"));
    fs::create_dir_all(&logs).unwrap();
    api::PodSandboxConfig {
        metadata: Some(meta(pod, tag)),
        hostname: pod.into(),
        log_directory: logs.display().to_string(),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: pod_cgroup(cri, tag, pod),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(ns_options()),
                privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The namespaces kubelet asks for, in the sandbox's and in every container's security
/// context: the pod's network and ipc, a pid namespace per container.
fn ns_options() -> api::NamespaceOption {
    api::NamespaceOption {
        network: api::NamespaceMode::Pod as i32,
        pid: api::NamespaceMode::Container as i32,
        ipc: api::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// A container as kubelet sends it: its security context has [`ns_options`] (a
/// caller that replaces the context keeps them, through [`security`]).
fn container(name: &str, cmd: &[&str]) -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: cri::busybox(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(api::LinuxContainerConfig {
            security_context: Some(security(Default::default())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `ctx` with the pod's [`ns_options`].
fn security(ctx: api::LinuxContainerSecurityContext) -> api::LinuxContainerSecurityContext {
    api::LinuxContainerSecurityContext {
        namespace_options: Some(ns_options()),
        ..ctx
    }
}

/// A running pod: its id, config, pause pid and IP.
struct Pod {
    id: String,
    config: api::PodSandboxConfig,
    pause_pid: u32,
    ip: String,
}

fn run_pod(cri: &Cri, config: api::PodSandboxConfig) -> Pod {
    let req = api::RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: HANDLER.into(),
    };
    let id = cri
        .ok("RunPodSandbox", cri.rs().run_pod_sandbox(req))
        .pod_sandbox_id;
    let st = cri.ok(
        "PodSandboxStatus",
        cri.rs().pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: true,
        }),
    );
    let s = st.status.expect("sandbox status");
    assert_eq!(s.state, api::PodSandboxState::SandboxReady as i32, "{s:?}");
    assert_eq!(s.runtime_handler, HANDLER, "{s:?}");
    let info: serde_json::Value =
        serde_json::from_str(st.info.get("info").expect("verbose info")).expect("info json");
    let pause_pid = info["pid"].as_u64().expect("the pause's pid") as u32;
    let ip = s.network.map(|n| n.ip).unwrap_or_default();
    Pod {
        id,
        config,
        pause_pid,
        ip,
    }
}

fn create_start(cri: &Cri, pod: &Pod, config: api::ContainerConfig) -> String {
    let req = api::CreateContainerRequest {
        pod_sandbox_id: pod.id.clone(),
        config: Some(config),
        sandbox_config: Some(pod.config.clone()),
    };
    let id = cri
        .ok("CreateContainer", cri.rs().create_container(req))
        .container_id;
    cri.ok(
        "StartContainer",
        cri.rs().start_container(api::StartContainerRequest {
            container_id: id.clone(),
        }),
    );
    id
}

/// ExecSync: (exit code, stdout, stderr).
fn exec(cri: &Cri, id: &str, cmd: &[&str]) -> (i32, String, String) {
    let r = cri
        .call(cri.rs().exec_sync(api::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 30,
        }))
        .unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e}\n{}", cri.diagnostics()));
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

/// ExecSync that must exit 0; its stdout.
fn sh(cri: &Cri, id: &str, script: &str) -> String {
    let (code, out, err) = exec(cri, id, &["sh", "-c", script]);
    assert_eq!(code, 0, "{script}: stdout {out:?} stderr {err:?}");
    out
}

fn status(cri: &Cri, id: &str) -> api::ContainerStatus {
    cri.ok(
        "ContainerStatus",
        cri.rs().container_status(api::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        }),
    )
    .status
    .expect("container status")
}

/// Waits (up to 30 s) until `marker` is in the container's log.
fn wait_log(path: &Path, marker: &str) -> String {
    for _ in 0..300 {
        let s = fs::read_to_string(path).unwrap_or_default();
        if s.contains(marker) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{marker:?} never reached {}: {:?}",
        path.display(),
        fs::read_to_string(path)
    );
}

/// Every line is CRI's log format: `<RFC 3339 nano time> <stdout|stderr> <F|P> <text>`.
fn assert_cri_log(log: &str) {
    assert!(!log.is_empty());
    for line in log.lines() {
        let f: Vec<&str> = line.splitn(4, ' ').collect();
        assert_eq!(f.len(), 4, "CRI log line: {line:?}");
        let t = f[0];
        assert!(
            t.len() > 20 && t.as_bytes()[4] == b'-' && t.as_bytes()[10] == b'T',
            "timestamp {t:?} in {line:?}"
        );
        assert!(
            t.ends_with('Z') || t.contains('+'),
            "zone in {t:?}: {line:?}"
        );
        assert!(f[1] == "stdout" || f[1] == "stderr", "stream: {line:?}");
        assert!(f[2] == "F" || f[2] == "P", "tag: {line:?}");
    }
}

fn ns_of_pid(pid: u32) -> HashMap<&'static str, String> {
    ["net", "ipc", "uts", "pid", "mnt"]
        .into_iter()
        .map(|n| {
            let l = fs::read_link(format!("/proc/{pid}/ns/{n}")).expect("readlink ns");
            (n, l.display().to_string())
        })
        .collect()
}

fn pods(tag: &str, runtime: &Path, driver: Driver) {
    let t0 = std::time::Instant::now();
    let phase = |what: &str| eprintln!("{tag}: {what} done at {:.1} s", t0.elapsed().as_secs_f64());
    let host_before = host_net();
    let mut cri = Cri::start(tag, runtime, driver);
    phase("containerd started, images imported");
    let v = cri.ok("Version", cri.rs().version(api::VersionRequest::default()));
    assert_eq!(v.runtime_name, "containerd", "{v:?}");
    let imgs = cri.ok(
        "ListImages",
        cri.is().list_images(api::ListImagesRequest::default()),
    );
    let tags: Vec<_> = imgs
        .images
        .iter()
        .flat_map(|i| i.repo_tags.clone())
        .collect();
    assert!(tags.iter().any(|t| t == cri::PAUSE_IMAGE), "{tags:?}");
    assert!(tags.iter().any(|t| *t == cri::busybox()), "{tags:?}");

    let slices = sd::Slices(match driver {
        Driver::Systemd => ["pod-a", "pod-b"].map(|p| pod_cgroup(&cri, tag, p)).into(),
        Driver::Cgroupfs => Vec::new(),
    });
    let pids_limited = match driver {
        Driver::Cgroupfs => translate::limit_pod_pids(&pod_cgroup(&cri, tag, "pod-a")),
        Driver::Systemd => {
            sd::limit_pids(&slices.0[0], translate::POD_PIDS_MAX);
            true
        }
    };
    let a = run_pod(&cri, sandbox_config(&cri, tag, "pod-a", false));
    phase("pod A");
    lifecycle(&cri, &a);
    phase("lifecycle");
    translations(&cri, pids_limited, &a);
    phase("translations");
    let b = run_pod(&cri, sandbox_config(&cri, tag, "pod-b", true));
    network_and_privileged(&cri, &a, &b);
    assert_eq!(
        host_net(),
        host_before,
        "the host's links and netns with two pods up"
    );
    phase("network and privileged");
    for p in [&a, &b] {
        cri.ok(
            "StopPodSandbox",
            cri.rs().stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            }),
        );
        cri.ok(
            "RemovePodSandbox",
            cri.rs().remove_pod_sandbox(api::RemovePodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            }),
        );
    }
    phase("pods removed");
    nothing_left(&cri, tag, &[&a, &b]);
    cri.stop();
    drop(slices);
    assert_eq!(
        host_net(),
        host_before,
        "the host's links and netns after the test"
    );
    remove_cgroup_parent();
}

/// What CNI could leave on the host if it ran there: links named like the bridge or
/// a veth, and `ip netns` entries named like containerd's (`cni-…`).
fn host_net() -> (Vec<String>, Vec<String>) {
    let ip = |args: &[&str]| {
        let r = engines::run(
            std::process::Command::new("ip").args(args),
            Duration::from_secs(10),
        );
        assert_eq!(r.code, 0, "ip {args:?}: {r:?}");
        r.stdout
    };
    let links = ip(&["-o", "link"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with("veth") || n == cri::BRIDGE)
        .collect();
    let netns = ip(&["netns", "list"])
        .lines()
        .filter(|l| l.starts_with("cni-"))
        .map(str::to_string)
        .collect();
    (links, netns)
}

/// Two containers in pod A: status, exec, logs, shared namespaces, stop with SIGTERM
/// (handled) and SIGKILL after the timeout (ignored), removal.
fn lifecycle(cri: &Cri, a: &Pod) {
    let c1 = create_start(
        cri,
        a,
        container(
            "c1",
            &[
                "sh",
                "-c",
                "trap 'echo got-term; exit 0' TERM; echo hello-out; echo hello-err >&2; while true; do sleep 0.2; done",
            ],
        ),
    );
    let c2 = create_start(cri, a, container("c2", &["sleep", "1000"]));
    let s1 = status(cri, &c1);
    assert_eq!(
        s1.state,
        api::ContainerState::ContainerRunning as i32,
        "{s1:?}"
    );
    assert!(s1.started_at > 0, "{s1:?}");
    // Logs, in CRI's format, at the path kubelet asked for.
    let log_path = Path::new(&a.config.log_directory).join("c1.log");
    assert_eq!(s1.log_path, log_path.display().to_string());
    let log = wait_log(&log_path, "hello-err");
    assert_cri_log(&log);
    assert!(
        log.lines().any(|l| l.ends_with(" stdout F hello-out")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.ends_with(" stderr F hello-err")),
        "{log}"
    );
    // ExecSync: exit code and both streams.
    let (code, out, err) = exec(cri, &c1, &["sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!((code, out.as_str(), err.as_str()), (7, "out\n", "err\n"));
    // A missing executable: the exec fails with docker's text, as an RPC error.
    let e = cri
        .call(cri.rs().exec_sync(api::ExecSyncRequest {
            container_id: c1.clone(),
            cmd: vec!["no-such-binary".into()],
            timeout: 30,
        }))
        .expect_err("exec of a missing binary");
    assert!(e.message().contains("executable file not found"), "{e}");
    // A streaming Exec through containerd's streaming server (websocket, channel v4).
    let url = cri
        .ok(
            "Exec",
            cri.rs().exec(api::ExecRequest {
                container_id: c1.clone(),
                cmd: ["sh", "-c", "echo s-out; echo s-err >&2; exit 3"]
                    .map(String::from)
                    .to_vec(),
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        )
        .url;
    let got = stream::exec_stream(cri.pid(), &url);
    assert_eq!(got.stdout, "s-out\n", "{got:?}");
    assert_eq!(got.stderr, "s-err\n", "{got:?}");
    assert!(
        got.status.contains("NonZeroExitCode") && got.status.contains("\"3\""),
        "exit code 3 in the status: {got:?}"
    );
    // The sandbox's network, ipc and uts namespaces, from inside both containers; a
    // pid namespace of their own (NamespaceMode CONTAINER); the pod's hostname.
    let pause = ns_of_pid(a.pause_pid);
    for c in [&c1, &c2] {
        let got = sh(
            cri,
            c,
            "for n in net ipc uts pid; do readlink /proc/self/ns/$n; done; hostname",
        );
        let l: Vec<&str> = got.lines().collect();
        assert_eq!(l[0], pause["net"], "net shared with the pause");
        assert_eq!(l[1], pause["ipc"], "ipc shared with the pause");
        assert_eq!(l[2], pause["uts"], "uts shared with the pause");
        assert_ne!(l[3], pause["pid"], "a pid namespace of its own");
        assert_eq!(l[4], "pod-a", "the pod's hostname");
    }
    let ps = sh(cri, &c2, "cat /proc/1/cmdline");
    assert!(
        ps.starts_with("sleep"),
        "c2 is pid 1 of its namespace: {ps:?}"
    );
    // Stop: c1 handles SIGTERM and exits 0; c2 (sleep as pid 1 ignores it) is killed
    // with SIGKILL after the 2 s timeout.
    for (c, code) in [(&c1, 0), (&c2, 137)] {
        cri.ok(
            "StopContainer",
            cri.rs().stop_container(api::StopContainerRequest {
                container_id: c.clone(),
                timeout: 2,
            }),
        );
        let s = status(cri, c);
        assert_eq!(
            s.state,
            api::ContainerState::ContainerExited as i32,
            "{s:?}"
        );
        assert_eq!(s.exit_code, code, "{s:?}");
        assert!(s.finished_at >= s.started_at, "{s:?}");
    }
    wait_log(&log_path, "got-term");
    for c in [&c1, &c2] {
        cri.ok(
            "RemoveContainer",
            cri.rs().remove_container(api::RemoveContainerRequest {
                container_id: c.clone(),
            }),
        );
    }
    let left = cri.ok(
        "ListContainers",
        cri.rs()
            .list_containers(api::ListContainersRequest::default()),
    );
    assert!(left.containers.is_empty(), "{:?}", left.containers);
}

/// Pod B (privileged) reaches pod A over the bridge; a privileged container has every
/// capability, no seccomp and no masked paths.
fn network_and_privileged(cri: &Cri, a: &Pod, b: &Pod) {
    assert!(a.ip.starts_with("10.231.0."), "pod A's IP {:?}", a.ip);
    assert!(b.ip.starts_with("10.231.0."), "pod B's IP {:?}", b.ip);
    assert_ne!(a.ip, b.ip);
    let srv = create_start(cri, a, container("srv", &["sleep", "1000"]));
    let mut cfg = container("cli", &["sleep", "1000"]);
    cfg.linux = Some(api::LinuxContainerConfig {
        security_context: Some(security(api::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        })),
        ..Default::default()
    });
    let cli = create_start(cri, b, cfg);
    let out = sh(cri, &cli, &format!("busybox ping -c 1 -W 5 {}", a.ip));
    assert!(out.contains("1 packets received"), "{out}");
    let addrs = sh(cri, &srv, "busybox ip -o -4 addr show eth0");
    assert!(addrs.contains(&format!("{}/24", a.ip)), "{addrs}");
    // containerd's mount namespace holds each pod's netns bind mount (under its state
    // dir) while the pods run: what nothing_left then finds gone.
    let mi = fs::read_to_string(format!("/proc/{}/mountinfo", cri.pid())).unwrap();
    let netns_dir = cri.dir.join("state/io.containerd.grpc.v1.cri/netns");
    let n = mi
        .lines()
        .filter(|l| l.contains(&*netns_dir.to_string_lossy()))
        .count();
    assert_eq!(n, 2, "two pod netns mounts: {mi}");
    // Inside containerd's netns: the bridge and two veths.
    let links = cri.in_netns(&["ip", "-o", "link"]);
    assert!(links.stdout.contains(cri::BRIDGE), "{links:?}");
    assert_eq!(
        links.stdout.matches("master ").count(),
        2,
        "one veth per pod on the bridge: {links:?}"
    );
    // Privileged: all capabilities, no seccomp, nothing masked, host devices.
    let st = sh(
        cri,
        &cli,
        "grep -E '^(CapEff|Seccomp):' /proc/self/status; ls /dev",
    );
    assert!(st.contains("Seccomp:\t0"), "{st}");
    let eff = st.lines().find(|l| l.starts_with("CapEff")).unwrap();
    let eff = u64::from_str_radix(eff.split_whitespace().nth(1).unwrap(), 16).unwrap();
    // Every capability there is, less those this host's own root lacks (its bounding
    // set is all a runtime can give).
    let ours = fs::read_to_string("/proc/self/status").unwrap();
    let bnd = ours.lines().find(|l| l.starts_with("CapBnd")).unwrap();
    let bnd = u64::from_str_radix(bnd.split_whitespace().nth(1).unwrap(), 16).unwrap();
    let last = fs::read_to_string("/proc/sys/kernel/cap_last_cap").unwrap();
    let last: u32 = last.trim().parse().unwrap();
    assert_eq!(
        eff,
        ((1u64 << (last + 1)) - 1) & bnd,
        "every capability: {st}"
    );
    assert!(
        st.contains("loop-control") || st.contains("kmsg"),
        "host devices: {st}"
    );
    let (_, masked, _) = exec(
        cri,
        &cli,
        &["sh", "-c", "grep -c ' /proc/timer_list ' /proc/self/mounts"],
    );
    assert_eq!(masked.trim(), "0", "nothing masked when privileged");
    for c in [&srv, &cli] {
        stop_remove(cri, c);
    }
}

/// StopContainer (SIGKILL at once, timeout 0) and RemoveContainer.
fn stop_remove(cri: &Cri, id: &str) {
    cri.ok(
        "StopContainer",
        cri.rs().stop_container(api::StopContainerRequest {
            container_id: id.into(),
            timeout: 0,
        }),
    );
    cri.ok(
        "RemoveContainer",
        cri.rs().remove_container(api::RemoveContainerRequest {
            container_id: id.into(),
        }),
    );
}

#[path = "cri/systemd.rs"]
mod sd;
#[path = "cri/stream.rs"]
mod stream;
#[path = "cri/translate.rs"]
mod translate;
use translate::translations;
#[path = "cri/left.rs"]
mod left;
use left::nothing_left;
