//! seccomp in real containers: a profile equivalent to Docker's default
//! (seccomp/tests/docker_default.json) lets busybox work, returns EPERM for unshare,
//! mount and keyctl, and ENOSYS for clone3 (so glibc falls back to clone) — with
//! CAP_SYS_ADMIN granted, so the EPERMs come from the filter, not from capabilities.

use casulo_integration::TestEnv;
use serde_json::{json, Value};

fn probe(env: &TestEnv, args: &[&str], seccomp: Option<&Value>, nnp: bool) -> (i32, String) {
    let mut b = env.bundle(args);
    let mut v = serde_json::to_value(&b.spec).unwrap();
    let caps = json!([
        "CAP_SYS_ADMIN",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
        "CAP_NET_BIND_SERVICE"
    ]);
    for set in ["bounding", "effective", "permitted"] {
        v["process"]["capabilities"][set] = caps.clone();
    }
    v["process"]["noNewPrivileges"] = json!(nnp);
    v["root"]["readonly"] = json!(false);
    if let Some(s) = seccomp {
        v["linux"]["seccomp"] = s.clone();
    }
    b.spec = serde_json::from_value(v).unwrap();
    b.write_config();
    let r = env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    (r.code, r.stdout + &r.stderr)
}

fn errnos(out: &str) -> Vec<(String, i32)> {
    out.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn docker_default_profile_in_a_container() {
    if !casulo_integration::prereq::root() {
        return;
    }
    let env = TestEnv::new("seccomp");
    let profile: Value =
        serde_json::from_str(include_str!("../../seccomp/tests/docker_default.json")).unwrap();

    // Without a filter the same process may do all of it (so the test can fail).
    let (code, out) = probe(&env, &["/checker", "--syscalls"], None, true);
    assert_eq!(code, 0, "{out}");
    let free = errnos(&out);
    assert_eq!(
        free.iter().find(|(n, _)| n == "unshare").unwrap().1,
        0,
        "{out}"
    );
    assert_eq!(
        free.iter().find(|(n, _)| n == "mount").unwrap().1,
        0,
        "{out}"
    );
    assert_ne!(
        free.iter().find(|(n, _)| n == "clone3").unwrap().1,
        libc::ENOSYS,
        "{out}"
    );

    for nnp in [true, false] {
        let (code, out) = probe(&env, &["/checker", "--syscalls"], Some(&profile), nnp);
        assert_eq!(code, 0, "nnp={nnp}: {out}");
        let got = errnos(&out);
        let want = [
            ("unshare", libc::EPERM),
            ("mount", libc::EPERM),
            ("keyctl", libc::EPERM),
            ("clone3", libc::ENOSYS),
            ("getpid", 0),
        ];
        for (name, errno) in want {
            assert_eq!(
                got.iter().find(|(n, _)| n == name).map(|x| x.1),
                Some(errno),
                "nnp={nnp} {name}: {out}"
            );
        }
        let (code, out) = probe(
            &env,
            &[
                "sh",
                "-c",
                "echo hi; ls / >/dev/null; cat /proc/self/status | grep Seccomp:",
            ],
            Some(&profile),
            nnp,
        );
        assert_eq!(code, 0, "busybox works under the profile: {out}");
        assert!(out.contains("hi") && out.contains("Seccomp:\t2"), "{out}");
    }
}

#[test]
fn a_bad_profile_is_refused_naming_the_field() {
    if !casulo_integration::prereq::root() {
        return;
    }
    let env = TestEnv::new("seccomp-bad");
    let profile = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]});
    let (code, out) = probe(&env, &["true"], Some(&profile), true);
    assert_ne!(code, 0);
    assert!(
        out.contains("linux.seccomp.syscalls[0].args[0].index"),
        "{out}"
    );
}

#[test]
fn notify_listener_goes_to_the_agent_which_answers() {
    use std::os::fd::AsFd;
    if !casulo_integration::prereq::root() {
        return;
    }
    let env = TestEnv::new("seccomp-notify");
    let sock = std::env::temp_dir().join(format!("casulo-agent-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    // The agent: receives the listener fd with the state, then answers every mkdir
    // with EACCES (the container sees "Permission denied").
    let agent = std::thread::spawn(move || {
        let mut seen = Vec::new();
        // One container without no_new_privs, one with.
        for _ in 0..2 {
            let (conn, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 65536];
            let (n, fd) = casulo_seccomp::sys::recv_with_fd(conn.as_fd(), &mut buf).unwrap();
            let fd = fd.expect("listener fd attached");
            let state: Value = serde_json::from_slice(&buf[..n]).unwrap();
            let mut answered = 0;
            // Ends when the last process using the filter is gone.
            while let Ok(req) = casulo_seccomp::sys::notif_recv(fd.as_fd()) {
                if casulo_seccomp::sys::notif_send(fd.as_fd(), req.id, 0, -libc::EACCES).is_ok() {
                    answered += 1;
                }
            }
            seen.push((state, answered));
        }
        seen
    });
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "meta-1",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    for nnp in [false, true] {
        let (code, out) = probe(
            &env,
            &[
                "sh",
                "-c",
                "mkdir /tmp/x; echo rc=$?; test -d /tmp/x || echo absent",
            ],
            Some(&profile),
            nnp,
        );
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("Permission denied") && out.contains("rc=1") && out.contains("absent"),
            "nnp={nnp}: {out}"
        );
    }
    for (state, answered) in agent.join().unwrap() {
        assert!(answered >= 1, "the agent answered the container's mkdir");
        assert_eq!(state["fds"], json!(["seccompFd"]));
        assert_eq!(state["metadata"], "meta-1");
        assert_eq!(state["state"]["status"], "creating");
        assert!(state["pid"].as_i64().unwrap() > 0);
        assert!(state["state"]["id"].as_str().unwrap().starts_with("it-"));
    }
    let _ = std::fs::remove_file(&sock);
}
