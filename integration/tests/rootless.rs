//! Rootless containers (issue 16): casulo run by the unprivileged user `casulo-rl`
//! (made by the test, see `casulo_integration::rootless`): `spec --rootless` against
//! runc's, `--rootless` and the `$XDG_RUNTIME_DIR/casulo` state root, the lifecycle
//! with a single mapping and with subuid ranges (newuidmap/newgidmap), the checker's
//! view from inside, mounts that need privilege refused, and cgroups (none without
//! resources, an error naming the field with them, used when delegated).

use std::path::Path;

use casulo_integration::bundle::{cgroup_parent, host_ns_env};
use casulo_integration::rootless::{sub_range, Sandbox};
use casulo_integration::{parse_tap, Bundle};
use serde_json::{json, Value};

fn dir(b: &Bundle) -> &str {
    b.dir.to_str().unwrap()
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref()).unwrap_or_default()
}

#[test]
fn spec_rootless_is_runcs() {
    let Some(sb) = Sandbox::new("spec") else {
        return;
    };
    let ours = sb.mkdir("ours");
    let theirs = sb.mkdir("theirs");
    sb.ok(&["spec", "--rootless", "--bundle", ours.to_str().unwrap()]);
    let r = sb.run_in(&theirs, &["runc", "spec", "--rootless"], &[]);
    assert_eq!(r.code, 0, "runc spec --rootless: {r:?}");
    let mut ours: Value = serde_json::from_str(&read(ours.join("config.json"))).unwrap();
    let mut theirs: Value = serde_json::from_str(&read(theirs.join("config.json"))).unwrap();
    let (uid, gid) = (sb.user.uid, sb.user.gid);
    assert_eq!(
        ours["linux"]["uidMappings"],
        json!([{"containerID": 0, "hostID": uid, "size": 1}])
    );
    assert_eq!(
        ours["linux"]["gidMappings"],
        json!([{"containerID": 0, "hostID": gid, "size": 1}])
    );
    let types: Vec<&str> = ours["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"user") && !types.contains(&"network"),
        "{types:?}"
    );
    assert!(ours["linux"].get("resources").is_none(), "{ours}");
    let mounts = ours["mounts"].as_array().unwrap();
    let sys = mounts.iter().find(|m| m["destination"] == "/sys").unwrap();
    assert_eq!(sys["source"], "/sys");
    assert!(sys["options"].as_array().unwrap().contains(&json!("rbind")));
    // Not delegated on this host's v1 (see docs): no cgroup mount.
    let delegated =
        casulo_core::cgroups::detect::layout().ok() == Some(casulo_core::cgroups::Layout::V2);
    if !delegated {
        assert!(!mounts.iter().any(|m| m["destination"] == "/sys/fs/cgroup"));
    }
    // The rest is runc's document (hostname and terminal are casulo's own defaults).
    for v in [&mut ours, &mut theirs] {
        v["hostname"] = json!(null);
        v["process"]["terminal"] = json!(null);
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["destination"] != "/sys/fs/cgroup");
    }
    assert_eq!(ours, theirs);
    // Without --rootless: the ordinary default, also for this user.
    let plain = sb.mkdir("plain");
    sb.ok(&["spec", "--bundle", plain.to_str().unwrap()]);
    let plain: Value = serde_json::from_str(&read(plain.join("config.json"))).unwrap();
    assert!(plain["linux"].get("uidMappings").is_none(), "{plain}");
}

#[test]
fn rootless_flag_and_state_root() {
    let Some(sb) = Sandbox::new("flag") else {
        return;
    };
    let r = sb.casulo(&["--rootless", "sometimes", "list"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--rootless"), "{r:?}");
    let b = sb.bundle(&["true"], None);
    // Cgroups required: the user cannot create them.
    let r = sb.casulo(&["--rootless=false", "run", "--bundle", dir(&b), &b.id()]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("cgroup"), "{r:?}");
    assert!(!sb.xdg.join("casulo").join(b.id()).exists());
    for mode in ["--rootless=true", "--rootless=auto"] {
        let r = sb.casulo(&[mode, "run", "--bundle", dir(&b), &b.id()]);
        assert_eq!(r.code, 0, "{mode}: {r:?}");
    }
    // The default state root is $XDG_RUNTIME_DIR/casulo.
    sb.ok(&["create", "--bundle", dir(&b), &b.id()]);
    assert!(sb
        .xdg
        .join("casulo")
        .join(b.id())
        .join("state.json")
        .exists());
    sb.ok(&["delete", "--force", &b.id()]);
}

#[test]
fn lifecycle_single_mapping() {
    let Some(sb) = Sandbox::new("life") else {
        return;
    };
    let b = sb.bundle(&["sleep", "1000"], None);
    let id = b.id();
    sb.ok(&["create", "--bundle", dir(&b), &id]);
    let st: Value = serde_json::from_str(&sb.ok(&["state", &id]).stdout).unwrap();
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().unwrap();
    // Written by the runtime: the user's own ids only, setgroups denied.
    let uid_map = read(format!("/proc/{pid}/uid_map"));
    let fields: Vec<&str> = uid_map.split_whitespace().collect();
    assert_eq!(fields, ["0", &sb.user.uid.to_string(), "1"]);
    assert_eq!(read(format!("/proc/{pid}/setgroups")).trim(), "deny");
    sb.ok(&["start", &id]);
    let st: Value = serde_json::from_str(&sb.ok(&["state", &id]).stdout).unwrap();
    assert_eq!(st["status"], "running");
    let list = sb.ok(&["list", "-q"]);
    assert_eq!(list.stdout.trim(), id);
    let ex = sb.ok(&["exec", &id, "sh", "-c", "id -u; cat /proc/self/uid_map"]);
    assert!(ex.stdout.starts_with("0\n"), "{ex:?}");
    sb.ok(&["exec", "--detach", &id, "sleep", "999"]);
    let ps: Vec<i64> = serde_json::from_str(&sb.ok(&["ps", "-f", "json", &id]).stdout).unwrap();
    assert!(
        ps.contains(&pid) && ps.len() == 2,
        "init and the exec'd sleep: {ps:?}"
    );
    let host_uid = std::fs::metadata(format!("/proc/{pid}"))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    assert_eq!(host_uid, sb.user.uid, "the init is the user's on the host");
    // kill --all without a cgroup: every process of the pid namespace (pid 1 ignores
    // SIGTERM without a handler; the exec'd sleep dies).
    sb.ok(&["kill", "--all", &id, "TERM"]);
    assert!(casulo_integration::cli::eventually(|| {
        let ps = sb.ok(&["ps", "-f", "json", &id]).stdout;
        serde_json::from_str::<Vec<i64>>(&ps).unwrap() == [pid]
    }));
    sb.ok(&["kill", &id, "KILL"]);
    assert!(casulo_integration::cli::eventually(|| {
        serde_json::from_str::<Value>(&sb.ok(&["state", &id]).stdout).unwrap()["status"]
            == "stopped"
    }));
    sb.ok(&["delete", &id]);
    assert!(sb.casulo(&["state", &id]).code != 0);
    // run: the exit code comes back.
    let b = sb.bundle(&["sh", "-c", "echo out; exit 7"], None);
    let r = sb.casulo(&["run", "--bundle", dir(&b), &b.id()]);
    assert_eq!((r.code, r.stdout.as_str()), (7, "out\n"), "{r:?}");
    assert!(
        sb.processes_in(&[&b.dir]).is_empty(),
        "nothing left running"
    );
}

#[test]
fn checker_passes_as_the_user() {
    let Some(sb) = Sandbox::new("checker") else {
        return;
    };
    let mut b = sb.bundle(&["/checker", "/config.json"], None);
    sb.edit(&mut b, |v| {
        v["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!(host_ns_env()));
    });
    let r = sb.casulo(&["run", "--bundle", dir(&b), &b.id()]);
    let tap = parse_tap(&r.stdout);
    assert!(
        r.code == 0 && tap.failed == 0 && tap.passed > 20,
        "checker as {}: {r:?}",
        casulo_integration::rootless::USER
    );
}

#[test]
fn subuid_ranges_through_newuidmap() {
    let Some(sb) = Sandbox::new("ranges") else {
        return;
    };
    if casulo_integration::engines::which("newuidmap").is_none() {
        casulo_integration::prereq::skip(
            "newuidmap is not installed (.ci/packages.d/base: uidmap)",
        );
        return;
    }
    let (su, _) = sub_range("/etc/subuid").expect("subuid range");
    let (sg, _) = sub_range("/etc/subgid").expect("subgid range");
    let maps = (
        json!([{"containerID": 0, "hostID": sb.user.uid, "size": 1},
               {"containerID": 1, "hostID": su, "size": 65536}]),
        json!([{"containerID": 0, "hostID": sb.user.gid, "size": 1},
               {"containerID": 1, "hostID": sg, "size": 65536}]),
    );
    let mut b = sb.bundle(&["sleep", "1000"], Some(maps));
    sb.edit(&mut b, |v| {
        v["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [5]});
    });
    let id = b.id();
    sb.ok(&["run", "--detach", "--bundle", dir(&b), &id]);
    let pid = serde_json::from_str::<Value>(&sb.ok(&["state", &id]).stdout).unwrap()["pid"]
        .as_i64()
        .unwrap();
    let status = read(format!("/proc/{pid}/status"));
    let line = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_default()
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(line("Uid:"), (su + 999).to_string(), "{status}");
    assert_eq!(line("Gid:"), (sg + 999).to_string(), "{status}");
    assert_eq!(read(format!("/proc/{pid}/uid_map")).lines().count(), 2);
    // newgidmap leaves setgroups allowed: additionalGids are set.
    let ex = sb.ok(&["exec", &id, "id"]);
    assert!(
        ex.stdout.contains("uid=1000") && ex.stdout.contains("groups=5"),
        "{ex:?}"
    );
    sb.ok(&["delete", "--force", &id]);
}

#[test]
fn privileged_mounts_are_refused() {
    let Some(sb) = Sandbox::new("mounts") else {
        return;
    };
    let cases = [
        (
            json!({"destination": "/mnt", "type": "ext4", "source": "/dev/sda1"}),
            "needs privilege in the initial user namespace",
        ),
        (
            json!({"destination": "/mnt", "type": "sysfs", "source": "sysfs"}),
            "new network namespace",
        ),
    ];
    for (m, want) in cases {
        let mut b = sb.bundle(&["true"], None);
        sb.edit(&mut b, |v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "network");
            v["mounts"]
                .as_array_mut()
                .unwrap()
                .retain(|m| m["destination"] != "/sys");
            v["mounts"].as_array_mut().unwrap().push(m.clone());
        });
        let r = sb.casulo(&["create", "--bundle", dir(&b), &b.id()]);
        assert_ne!(r.code, 0, "{m}: {r:?}");
        assert!(
            r.stderr.contains("(/mnt)") && r.stderr.contains(want),
            "{m}: {r:?}"
        );
        assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {r:?}");
        assert!(!sb.xdg.join("casulo").join(b.id()).exists());
    }
}

/// The cgroup directories of `rel` (relative to each hierarchy's root).
fn cgroup_dirs(rel: &str) -> Vec<std::path::PathBuf> {
    if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
        return vec![Path::new("/sys/fs/cgroup").join(rel)];
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path();
        if p.join("cgroup.procs").exists() && !e.file_type().unwrap().is_symlink() {
            out.push(p.join(rel));
        }
    }
    out
}

#[test]
fn cgroups_only_when_writable() {
    let Some(sb) = Sandbox::new("cgroups") else {
        return;
    };
    // Resources without a writable cgroup: refused by field, nothing left.
    let mut b = sb.bundle(&["true"], None);
    sb.edit(&mut b, |v| {
        v["linux"]["resources"]["pids"] = json!({"limit": 20})
    });
    let r = sb.casulo(&["run", "--bundle", dir(&b), &b.id()]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("linux.resources.pids") && r.stderr.contains("not writable"),
        "{r:?}"
    );
    assert!(!sb.xdg.join("casulo").join(b.id()).exists());
    // Delegated (a parent the user owns in every hierarchy; on v2 with pids enabled):
    // used, limits applied.
    let parent = format!("{}/rl-deleg", cgroup_parent().trim_start_matches('/'));
    for d in cgroup_dirs(&parent) {
        std::fs::create_dir_all(d.join("rt")).unwrap();
        // v1 cpuset: a delegated subtree has cpus and mems (the admin's part).
        for level in [d.parent().unwrap(), d.as_path(), &d.join("rt")] {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if level.join(f).exists() && read(level.join(f)).trim().is_empty() {
                    let up = read(level.parent().unwrap().join(f));
                    std::fs::write(level.join(f), up.trim()).unwrap();
                }
            }
        }
        // v2: the admin enables pids for the subtree; the runtime sits in a leaf `rt`.
        let up = d.parent().unwrap();
        if read(up.join("cgroup.controllers"))
            .split_whitespace()
            .any(|c| c == "pids")
        {
            let _ = std::fs::write(up.join("cgroup.subtree_control"), "+pids");
        }
        sb.own(&d);
    }
    sb.edit(&mut b, |v| {
        v["linux"]["cgroupsPath"] = json!(format!("/{parent}/{}", "c1"));
        v["process"]["args"] = json!(["sleep", "1000"]);
    });
    // The user's runtime runs inside its delegated subtree (cgroup v2 moves a process
    // only within a subtree whose cgroup.procs the mover can write), in a leaf.
    let procs: Vec<_> = cgroup_dirs(&parent)
        .iter()
        .map(|d| d.join("rt/cgroup.procs"))
        .collect();
    let argv = [
        sb.bin.to_str().unwrap(),
        "run",
        "--detach",
        "--bundle",
        dir(&b),
        &b.id(),
    ];
    let r = sb.run_in_cgroups(&sb.dir, &argv, &[], &procs);
    assert_eq!(r.code, 0, "{r:?}");
    let pid = serde_json::from_str::<Value>(&sb.ok(&["state", &b.id()]).stdout).unwrap()["pid"]
        .as_i64()
        .unwrap();
    let pids_dir = cgroup_dirs(&format!("{parent}/c1"))
        .into_iter()
        .find(|d| d.join("pids.max").exists())
        .expect("a pids cgroup");
    assert_eq!(read(pids_dir.join("pids.max")).trim(), "20");
    assert!(read(pids_dir.join("cgroup.procs"))
        .lines()
        .any(|l| l.trim() == pid.to_string()));
    sb.ok(&["delete", "--force", &b.id()]);
    assert!(!pids_dir.exists(), "delete removed the cgroup");
    for d in cgroup_dirs(&parent) {
        let _ = std::fs::remove_dir(d.join("rt"));
        let _ = std::fs::remove_dir(d);
    }
}
