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
    if !nix::unistd::geteuid().is_root() {
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
    if !nix::unistd::geteuid().is_root() {
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
