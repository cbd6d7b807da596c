//! What must be gone once every pod of the CRI test is removed.

use std::fs;
use std::path::Path;

use super::cri::{Cri, Driver};
use super::{api, pod_cgroup, sd, Pod};

/// After every pod is removed: no sandbox or container listed, nothing in the handler's
/// runtime root, no shim or container process, no cgroup under the pods' parents, no
/// task state, no netns mount or file, no veth in containerd's netns; with the systemd
/// driver no `cri-containerd-*.scope` unit.
pub(super) fn nothing_left(cri: &Cri, tag: &str, pods: &[&Pod]) {
    let l = cri.ok(
        "ListPodSandbox",
        cri.rs()
            .list_pod_sandbox(api::ListPodSandboxRequest::default()),
    );
    assert!(l.items.is_empty(), "{:?}", l.items);
    let entries = |p: &Path| -> Vec<String> {
        fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let root = cri.runtime_root.join("k8s.io");
    assert!(
        entries(&root).is_empty(),
        "runtime state: {:?}\n{}",
        entries(&root),
        cri.diagnostics()
    );
    let tasks = cri.dir.join("state/io.containerd.runtime.v2.task/k8s.io");
    assert!(
        entries(&tasks).is_empty(),
        "task dirs: {:?}",
        entries(&tasks)
    );
    let netns = cri.dir.join("state/io.containerd.grpc.v1.cri/netns");
    assert!(
        entries(&netns).is_empty(),
        "netns files: {:?}",
        entries(&netns)
    );
    // Processes: only containerd itself names the temp dir (shims are gone).
    let tagstr = cri.dir.path.display().to_string();
    let mut procs = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
        if pid != cri.pid() && String::from_utf8_lossy(&cmd).contains(&tagstr) {
            procs.push(String::from_utf8_lossy(&cmd).replace('\0', " "));
        }
    }
    assert!(
        procs.is_empty(),
        "processes left: {procs:?}\n{}",
        cri.diagnostics()
    );
    for p in pods {
        assert!(
            fs::metadata(format!("/proc/{}", p.pause_pid)).is_err() || {
                let c = fs::read(format!("/proc/{}/cmdline", p.pause_pid)).unwrap_or_default();
                !String::from_utf8_lossy(&c).starts_with("/pause")
            }
        );
    }
    // Cgroups: the pods' parents (kubelet's, made by the runtime here) hold nothing.
    let dirs = |pod: &str| -> Vec<std::path::PathBuf> {
        let rel = pod_cgroup(cri, tag, pod);
        match cri.driver {
            Driver::Systemd => vec![sd::cgroup_dir(&rel)],
            Driver::Cgroupfs => fs::read_dir("/sys/fs/cgroup")
                .unwrap()
                .flatten()
                .map(|h| h.path().join(rel.trim_start_matches('/')))
                .collect(),
        }
    };
    if cri.driver == Driver::Systemd {
        let units = sd::scopes_left();
        assert!(
            units.is_empty(),
            "scopes left: {units:?}\n{}",
            cri.diagnostics()
        );
    }
    for pod in ["pod-a", "pod-b"] {
        for d in dirs(pod) {
            let subs: Vec<_> = entries(&d)
                .into_iter()
                .filter(|n| d.join(n).is_dir())
                .collect();
            assert!(
                subs.is_empty(),
                "cgroups left under {}: {subs:?}\n{}",
                d.display(),
                cri.diagnostics()
            );
        }
    }
    // Mounts in containerd's mount namespace: no rootfs, no netns, no shm.
    let mi = fs::read_to_string(format!("/proc/{}/mountinfo", cri.pid())).unwrap();
    let left: Vec<_> = mi
        .lines()
        .filter(|l| l.contains(&tagstr) && !l.contains(" /var/lib "))
        .collect();
    assert!(left.is_empty(), "mounts left: {left:#?}");
    let links = cri.in_netns(&["ip", "-o", "link"]);
    assert!(!links.stdout.contains("master "), "veths left: {links:?}");
}
