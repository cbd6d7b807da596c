//! runtime-spec 1.3 semantics in real containers: `ociVersion` majors, `pids.limit`
//! absent/0/-1, `linux.memoryPolicy` (every mode and flag, asserted from inside with
//! get_mempolicy by the checker), and a seccomp notify listener of an `exec`'d process
//! reaching the agent.

mod common;

use std::os::fd::AsFd;

use casulo_integration::{parse_tap, Bundle};
use common::{edit, is_root, write_raw, Env};
use serde_json::{json, Value};

fn v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn checker(f: impl FnOnce(&mut Value)) -> Bundle {
    let mut b = Bundle::new(&["/checker", "/config.json"]);
    edit(&mut b, f);
    b
}

#[test]
fn oci_version_with_another_major_is_refused() {
    if !is_root() {
        return;
    }
    let env = Env::new("ociversion");
    for bad in ["2.0.0", "0.1.0"] {
        let mut b = Bundle::new(&["true"]);
        edit(&mut b, |v| v["ociVersion"] = json!(bad));
        let r = env.create(&b);
        assert_ne!(r.code, 0, "{bad}: {r:?}");
        assert!(
            r.stderr.contains("ociVersion") && r.stderr.contains(bad),
            "{r:?}"
        );
        assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
        env.assert_nothing_left(&b);
    }
    let mut b = Bundle::new(&["true"]);
    edit(&mut b, |v| v["ociVersion"] = json!("1.3.0"));
    let r = env.run_bundle(&b);
    assert_eq!(r.code, 0, "{r:?}");
    let f = casulo_core::features::features();
    assert_eq!(f["ociVersionMax"], "1.3.0");
}

#[test]
fn pids_limit_zero_is_a_limit_and_absent_is_none() {
    // config-linux.md 1.3: -1 is no limit, 0 is a real limit, absent sets nothing.
    if !is_root() {
        return;
    }
    let env = Env::new("pids13");
    for limit in [0, -1, 7] {
        let b = checker(|v| v["linux"]["resources"]["pids"] = json!({ "limit": limit }));
        let r = env.run_bundle(&b);
        let tap = parse_tap(&r.stdout);
        let cg = &tap.per_section["Control groups"];
        assert!(cg.passed >= 1 && cg.failed == 0, "limit {limit}: {r:?}");
        assert_eq!(r.code, 0, "limit {limit}: {r:?}");
    }
    // Absent: the object without `limit` leaves pids.max at "max".
    let file = if v2() {
        "/sys/fs/cgroup/pids.max"
    } else {
        "/sys/fs/cgroup/pids/pids.max"
    };
    let b = Bundle::new(&["cat", file]);
    let mut raw = serde_json::to_value(&b.spec).unwrap();
    raw["linux"]["resources"] = json!({"pids": {}});
    write_raw(&b, &raw);
    let r = env.run_bundle(&b);
    assert_eq!((r.code, r.stdout.trim()), (0, "max"), "{r:?}");
}

#[test]
fn memory_policy_every_mode_and_flag() {
    if !is_root() {
        return;
    }
    let env = Env::new("mempolicy");
    let weighted = std::path::Path::new("/sys/kernel/mm/mempolicy/weighted_interleave").exists();
    let cases = [
        json!({"mode": "MPOL_DEFAULT"}),
        json!({"mode": "MPOL_BIND", "nodes": "0"}),
        json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}),
        json!({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}),
        json!({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]}),
        json!({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "0"}),
        json!({"mode": "MPOL_PREFERRED", "nodes": "0"}),
        json!({"mode": "MPOL_PREFERRED"}),
        json!({"mode": "MPOL_PREFERRED_MANY", "nodes": "0"}),
        json!({"mode": "MPOL_LOCAL"}),
    ];
    let mut modes = std::collections::BTreeSet::new();
    let mut flags = std::collections::BTreeSet::new();
    for c in cases {
        if c["mode"] == "MPOL_WEIGHTED_INTERLEAVE" && !weighted {
            println!("skip {c}: this kernel has no weighted interleave");
            continue;
        }
        let b = checker(|v| v["linux"]["memoryPolicy"] = c.clone());
        let r = env.run_bundle(&b);
        let tap = parse_tap(&r.stdout);
        let s = tap.per_section.get("Memory policy");
        assert!(
            s.is_some_and(|s| s.passed >= 1 && s.failed == 0) && r.code == 0,
            "{c}: {r:?}"
        );
        modes.insert(c["mode"].as_str().unwrap().to_string());
        for f in c["flags"].as_array().into_iter().flatten() {
            flags.insert(f.as_str().unwrap().to_string());
        }
    }
    // Every mode and flag `features` lists was run.
    let f = &casulo_core::features::features()["linux"]["memoryPolicy"];
    for m in f["modes"].as_array().unwrap() {
        let m = m.as_str().unwrap();
        assert!(
            modes.contains(m) || (m == "MPOL_WEIGHTED_INTERLEAVE" && !weighted),
            "{m}"
        );
    }
    for fl in f["flags"].as_array().unwrap() {
        assert!(flags.contains(fl.as_str().unwrap()), "{fl}");
    }
}

#[test]
fn memory_policy_bad_values_are_refused_by_name() {
    if !is_root() {
        return;
    }
    let env = Env::new("mempolicy-bad");
    for (c, field) in [
        (json!({"mode": "MPOL_BIND"}), "linux.memoryPolicy.nodes"),
        (
            json!({"mode": "MPOL_LOCAL", "nodes": "0"}),
            "linux.memoryPolicy.nodes",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0-x"}),
            "linux.memoryPolicy.nodes",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}),
            "linux.memoryPolicy.flags",
        ),
        (json!({"mode": "MPOL_NOPE"}), "linux.memoryPolicy.mode"),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NOPE"]}),
            "linux.memoryPolicy.flags[0]",
        ),
        // A node this host does not have: the kernel's EINVAL, named.
        (
            json!({"mode": "MPOL_BIND", "nodes": "1000"}),
            "linux.memoryPolicy",
        ),
    ] {
        let b = Bundle::new(&["true"]);
        let mut raw = serde_json::to_value(&b.spec).unwrap();
        raw["linux"]["memoryPolicy"] = c.clone();
        write_raw(&b, &raw);
        let r = env.create(&b);
        assert_ne!(r.code, 0, "{c}: {r:?}");
        assert!(r.stderr.contains(field), "{c}: {r:?}");
        assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
        env.assert_nothing_left(&b);
    }
}

#[test]
fn exec_hands_its_notify_listener_to_the_agent() {
    if !is_root() {
        return;
    }
    let env = Env::new("exec-notify");
    let sock = std::env::temp_dir().join(format!("casulo-xagent-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<(Value, usize)>();
    // The agent: every connection gets its own thread, answering every notified
    // syscall with EACCES until the filter's last process is gone.
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                let (n, fd) = casulo_seccomp::sys::recv_with_fd(conn.as_fd(), &mut buf).unwrap();
                let state: Value = serde_json::from_slice(&buf[..n]).unwrap();
                let Some(fd) = fd else {
                    let _ = tx.send((state, usize::MAX));
                    return;
                };
                let mut answered = 0;
                while let Ok(req) = casulo_seccomp::sys::notif_recv(fd.as_fd()) {
                    if casulo_seccomp::sys::notif_send(fd.as_fd(), req.id, 0, -libc::EACCES).is_ok()
                    {
                        answered += 1;
                    }
                }
                let _ = tx.send((state, answered));
            });
        }
    });
    for nnp in [false, true] {
        let mut b = Bundle::new(&["sleep", "1000"]);
        edit(&mut b, |v| {
            v["process"]["noNewPrivileges"] = json!(nnp);
            v["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": sock,
                "listenerMetadata": "meta-x",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
            });
        });
        env.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
        env.ok(&["start", &b.id()]);
        let r = env.run(&["exec", &b.id(), "sh", "-c", "mkdir /tmp/x; echo rc=$?"]);
        assert!(
            r.stderr.contains("Permission denied") && r.stdout.contains("rc=1"),
            "nnp={nnp}: the agent answered the exec'd mkdir: {r:?}"
        );
        // The exec'd process is gone: its listener's handler has finished.
        let (state, answered) = rx.recv().unwrap();
        assert!(answered >= 1 && answered != usize::MAX, "{state}");
        assert_eq!(state["fds"], json!(["seccompFd"]));
        assert_eq!(state["metadata"], "meta-x");
        assert_eq!(state["state"]["status"], "running");
        assert_eq!(state["state"]["id"], b.id());
        assert_ne!(
            state["pid"], state["state"]["pid"],
            "the exec'd process's pid"
        );
        env.ok(&["delete", "--force", &b.id()]);
        // The init's own listener (from create) ends with the container.
        let (state, _) = rx.recv().unwrap();
        assert_eq!(state["state"]["status"], "creating");
    }
    let _ = std::fs::remove_file(&sock);
}
