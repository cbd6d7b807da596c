//! `casulo features` is true of the code (issue 14.7): containers are built from every
//! value the document claims (each namespace, capability, hook phase, mount option,
//! seccomp action, operator, arch and flag, memory policy mode) and run, with the
//! checker asserting from inside where it can; and fields the document leaves out are
//! refused by name. The lists are read from the binary's own output, so options other
//! helpers add are covered once they are listed.

mod common;

use std::os::fd::AsFd;

use casulo_integration::{casulo_bin, parse_tap, Bundle};
use common::{edit, host_dir, is_root, write_raw, Env};
use serde_json::{json, Value};

fn features() -> Value {
    let out = std::process::Command::new(casulo_bin())
        .arg("features")
        .output()
        .expect("casulo features");
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("features is JSON")
}

fn list(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{v} is not a list"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// Runs the checker in `b`, asserting the run and every TAP line passed.
fn run_checker(env: &Env, b: &Bundle, what: &str) -> String {
    let r = env.run_bundle(b);
    let tap = parse_tap(&r.stdout);
    assert!(
        r.code == 0 && tap.failed == 0 && tap.passed > 0,
        "{what}: {:?}\n{r:?}",
        tap.failures
    );
    r.stdout
}

/// The host's bounding set: capabilities this test process can grant at all.
fn host_bounding() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("CapBnd:")).unwrap();
    u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn namespaces_capabilities_and_hooks_it_claims_run() {
    if !is_root() {
        return;
    }
    let f = features();
    let env = Env::new("feat-ns");
    let mut b = Bundle::new(&["/checker", "/config.json"]);
    let dir = host_dir(&b, "hooklog");
    let log = dir.join("log");
    let bnd = host_bounding();
    let mut caps = Vec::new();
    for (i, c) in list(&f["linux"]["capabilities"]).into_iter().enumerate() {
        if bnd & (1 << i) != 0 {
            caps.push(c);
        } else {
            println!("{c}: not in this host's bounding set, not granted");
        }
    }
    let hooks: Value = list(&f["hooks"])
        .iter()
        .map(|h| {
            let line = format!("echo {h} >> {}", log.display());
            (
                h.clone(),
                json!([{"path": "/bin/sh", "args": ["sh", "-c", line]}]),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    let namespaces: Vec<Value> = list(&f["linux"]["namespaces"])
        .into_iter()
        .map(|n| json!({ "type": n }))
        .collect();
    edit(&mut b, |v| {
        v["linux"]["namespaces"] = json!(namespaces);
        v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        for set in ["bounding", "effective", "permitted"] {
            v["process"]["capabilities"][set] = json!(caps);
        }
        v["hooks"] = hooks;
    });
    // createContainer and startContainer run in the container's namespaces, where the
    // host's log directory is not writable by the mapped root: they just succeed.
    const IN_CONTAINER: [&str; 2] = ["createContainer", "startContainer"];
    edit(&mut b, |v| {
        for h in IN_CONTAINER {
            v["hooks"][h] = json!([{"path": "/bin/true"}]);
        }
        v["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!(casulo_integration::bundle::host_ns_env()));
    });
    for d in ["", "/proc", "/sys", "/dev", "/tmp"] {
        let _ = std::process::Command::new("chown")
            .args(["100000:100000", &format!("{}{d}", b.rootfs().display())])
            .status();
    }
    let out = run_checker(&env, &b, "every namespace, capability and hook");
    assert!(out.contains("Namespaces"), "{out}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for h in list(&f["hooks"])
        .iter()
        .filter(|h| !IN_CONTAINER.contains(&h.as_str()))
    {
        assert!(text.lines().any(|l| l == h), "hook {h} ran: {text}");
    }
}

#[test]
fn every_mount_option_it_claims_runs() {
    if !is_root() {
        return;
    }
    let f = features();
    let env = Env::new("feat-mnt");
    let mut b = Bundle::new(&["/checker", "/config.json"]);
    let mut mounts = Vec::new();
    for (i, o) in list(&f["mountOptions"]).into_iter().enumerate() {
        let src = host_dir(&b, &format!("m{i}"));
        let dst = format!("/mnt/o{i}");
        mounts.push(match o.as_str() {
            // Options that are not about a bind mount get the mount type they belong to.
            "tmpcopyup" => {
                json!({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": [o]})
            }
            "bind" | "rbind" => {
                json!({"destination": dst, "type": "bind", "source": src, "options": [o]})
            }
            "idmap" | "ridmap" => json!({"destination": dst, "type": "bind", "source": src,
                "options": ["rbind", o],
                "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}),
            _ => {
                json!({"destination": dst, "type": "bind", "source": src, "options": ["rbind", o]})
            }
        });
    }
    edit(&mut b, |v| {
        v["mounts"].as_array_mut().unwrap().extend(mounts);
    });
    run_checker(&env, &b, "one mount per claimed option");
}

#[test]
fn every_seccomp_value_it_claims_runs() {
    if !is_root() {
        return;
    }
    let f = features();
    let s = &f["linux"]["seccomp"];
    assert_eq!(s["enabled"], true);
    let env = Env::new("feat-seccomp");
    let sock = std::env::temp_dir().join(format!("casulo-fagent-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    // A NOTIFY rule needs an agent: this one takes the listener and holds it.
    let agent = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        let (_, fd) = casulo_seccomp::sys::recv_with_fd(conn.as_fd(), &mut buf).unwrap();
        fd.is_some()
    });
    // Syscalls busybox never makes, one per action.
    let unused = [
        "acct",
        "swapon",
        "swapoff",
        "kexec_load",
        "init_module",
        "delete_module",
        "quotactl",
        "uselib",
        "vhangup",
        "syslog",
        "lookup_dcookie",
        "iopl",
    ];
    let actions = list(&s["actions"]);
    assert!(actions.len() <= unused.len());
    let mut syscalls: Vec<Value> = actions
        .iter()
        .zip(unused)
        .filter(|(a, _)| *a != "SCMP_ACT_ALLOW")
        .map(|(a, n)| json!({"names": [n], "action": a}))
        .collect();
    for op in list(&s["operators"]) {
        syscalls.push(
            json!({"names": ["setdomainname"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 1, "value": 4097, "valueTwo": 4097, "op": op}]}),
        );
    }
    let mut b = Bundle::new(&["/checker", "/config.json"]);
    edit(&mut b, |v| {
        v["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": list(&s["archs"]),
            "flags": list(&s["supportedFlags"]),
            "listenerPath": sock,
            "syscalls": syscalls,
        });
    });
    run_checker(&env, &b, "every action, operator, arch and flag");
    assert!(agent.join().unwrap(), "the agent got the listener");
    let _ = std::fs::remove_file(&sock);
}

/// A change to a raw config.
type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn what_it_leaves_out_is_refused_by_name() {
    if !is_root() {
        return;
    }
    let f = features();
    let env = Env::new("feat-refused");
    let mut cases: Vec<(Edit, &str)> = Vec::new();
    if f["linux"]["intelRdt"]["enabled"] != true {
        cases.push((
            Box::new(|v| v["linux"]["intelRdt"] = json!({"closID": "c1"})),
            "linux.intelRdt",
        ));
    }
    if f["linux"].get("personality").is_none() {
        cases.push((
            Box::new(|v| {
                v["linux"]["personality"] =
                    json!({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]})
            }),
            "linux.personality.flags",
        ));
    }
    let modes = list(&f["linux"]["memoryPolicy"]["modes"]);
    if !modes.contains(&"MPOL_NOSUCH".to_string()) {
        cases.push((
            Box::new(|v| v["linux"]["memoryPolicy"] = json!({"mode": "MPOL_NOSUCH"})),
            "linux.memoryPolicy.mode",
        ));
    }
    let ns = list(&f["linux"]["namespaces"]);
    if !ns.contains(&"bogus".to_string()) {
        cases.push((
            Box::new(|v| {
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "bogus"}))
            }),
            "linux.namespaces",
        ));
    }
    let hooks = list(&f["hooks"]);
    if !hooks.contains(&"prestop".to_string()) {
        cases.push((
            Box::new(|v| v["hooks"] = json!({"prestop": [{"path": "/bin/true"}]})),
            "hooks.prestop",
        ));
    }
    let actions = list(&f["linux"]["seccomp"]["actions"]);
    if !actions.contains(&"SCMP_ACT_NOSUCH".to_string()) {
        cases.push((
            Box::new(|v| v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_NOSUCH"})),
            "linux.seccomp.defaultAction",
        ));
    }
    for (change, field) in cases {
        let b = Bundle::new(&["true"]);
        let mut raw = serde_json::to_value(&b.spec).unwrap();
        change(&mut raw);
        write_raw(&b, &raw);
        let r = env.create(&b);
        assert_ne!(r.code, 0, "{field}: {r:?}");
        assert!(r.stderr.contains(field), "{field}: {r:?}");
        assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
        env.assert_nothing_left(&b);
    }
    if f["linux"]["cgroup"]["systemd"] != true {
        let b = Bundle::new(&["true"]);
        let r = env.run(&[
            "--systemd-cgroup",
            "create",
            "--bundle",
            b.dir.to_str().unwrap(),
            &b.id(),
        ]);
        assert!(
            r.code != 0 && r.stderr.contains("--systemd-cgroup"),
            "{r:?}"
        );
        env.assert_nothing_left(&b);
    }
}
