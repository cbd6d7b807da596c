//! Issue 12.4: every cgroup mount inside the container (the v1 controller mounts, the
//! tmpfs holding them, the v2 mount) is nosuid, nodev and noexec, as runc's are, with
//! and without a cgroup namespace, read-only or not; read from the container's own
//! /proc/self/mountinfo.

mod common;

use casulo_integration::Bundle;
use common::{edit, is_root, Env};
use serde_json::json;

/// The mounts at or under /sys/fs/cgroup in a mountinfo text: (mount point, per-mount
/// options, fs type).
fn cgroup_mounts(mountinfo: &str) -> Vec<(String, String, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let fstype = right.split(' ').next()?;
            let (point, opts) = (*f.get(4)?, *f.get(5)?);
            (point == "/sys/fs/cgroup" || point.starts_with("/sys/fs/cgroup/"))
                .then(|| (point.to_string(), opts.to_string(), fstype.to_string()))
        })
        .collect()
}

fn check(env: &Env, cgroupns: bool, ro: bool) {
    let mut b = Bundle::new(&["cat", "/proc/self/mountinfo"]);
    edit(&mut b, |v| {
        if !cgroupns {
            let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "cgroup");
        }
        let opts = if ro {
            json!(["nosuid", "noexec", "nodev", "relatime", "ro"])
        } else {
            // No flags asked for: the runtime adds them anyway (runc does).
            json!([])
        };
        for m in v["mounts"].as_array_mut().unwrap() {
            if m["type"] == "cgroup" {
                m["options"] = opts.clone();
            }
        }
    });
    let r = env.run_bundle(&b);
    assert_eq!(r.code, 0, "{r:?}");
    let mounts = cgroup_mounts(&r.stdout);
    assert!(!mounts.is_empty(), "no cgroup mounts: {}", r.stdout);
    for (point, opts, fstype) in &mounts {
        let o: Vec<&str> = opts.split(',').collect();
        for flag in ["nosuid", "nodev", "noexec"] {
            assert!(
                o.contains(&flag),
                "cgroupns={cgroupns} ro={ro}: {point} ({fstype}) lacks {flag}: {opts}"
            );
        }
        assert_eq!(
            o.contains(&"ro"),
            ro,
            "cgroupns={cgroupns}: {point} ({fstype}): {opts}"
        );
    }
    assert!(
        mounts
            .iter()
            .any(|(_, _, t)| t == "cgroup" || t == "cgroup2"),
        "a cgroup filesystem is mounted: {mounts:?}"
    );
}

#[test]
fn cgroup_mounts_are_nosuid_nodev_noexec() {
    if !is_root() {
        return;
    }
    let env = Env::new("cgroup-mount-flags");
    for cgroupns in [true, false] {
        for ro in [true, false] {
            check(&env, cgroupns, ro);
        }
    }
}
