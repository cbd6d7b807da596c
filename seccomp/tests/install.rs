//! Real installs, each in a forked child (never in the test process itself): the
//! child installs a filter, calls syscalls, checks the results and `_exit`s with 0
//! or the number of the first failed check (99: seccomp(2) refused the filter;
//! without no_new_privs that needs CAP_SYS_ADMIN, so run these tests as root).
#![cfg(target_arch = "x86_64")]

use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use casulo_seccomp::sys::{fork_and_wait, notif_recv, notif_send, probe, recv_with_fd, ChildEnd};
use casulo_seccomp::{compile, Filter};
use oci_spec::runtime::LinuxSeccomp;

const TIMEOUT: Duration = Duration::from_secs(20);

fn filter(json: &str) -> Filter {
    let profile: LinuxSeccomp = serde_json::from_str(json).expect("profile parses");
    compile(&profile).expect("profile compiles").filter
}

/// Runs `checks` after installing `f` in a forked child.
fn in_child(f: &Filter, checks: impl FnOnce() -> i32) -> ChildEnd {
    fork_and_wait(
        || {
            probe::no_core_dumps();
            if f.install().is_err() {
                return 99;
            }
            checks()
        },
        TIMEOUT,
    )
    .expect("fork/wait")
}

fn expect_errno(step: i32, nr: libc::c_long, args: [u64; 6], errno: i32) -> Result<(), i32> {
    match probe::call(nr, args) {
        Err(e) if e == errno => Ok(()),
        _ => Err(step),
    }
}

#[test]
fn docker_default_profile_denies_and_allows() {
    let f = filter(include_str!("docker_default.json"));
    let end = in_child(&f, || {
        let run = || -> Result<(), i32> {
            let ns = libc::CLONE_NEWUTS as u64;
            expect_errno(1, libc::SYS_unshare, [ns, 0, 0, 0, 0, 0], libc::EPERM)?;
            expect_errno(2, libc::SYS_mount, [0; 6], libc::EPERM)?;
            expect_errno(3, libc::SYS_keyctl, [0; 6], libc::EPERM)?;
            expect_errno(4, libc::SYS_clone3, [0; 6], libc::ENOSYS)?;
            let pid = probe::call(libc::SYS_getpid, [0; 6]).map_err(|_| 5)?;
            if pid <= 0 {
                return Err(6);
            }
            let fd = probe::open_devnull().map_err(|_| 7)?;
            if probe::write(fd.as_fd(), b"hello") != Ok(5) {
                return Err(8);
            }
            // This crate must not have set no_new_privs.
            if probe::no_new_privs() {
                return Err(9);
            }
            Ok(())
        };
        run().err().unwrap_or(0)
    });
    assert_eq!(end, ChildEnd::Exited(0));
}

const ALLOW_EXIT: &str = r#"{"names": ["exit", "exit_group"], "action": "SCMP_ACT_ALLOW"}"#;

#[test]
fn per_rule_actions_and_errno_values() {
    let f = filter(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [
          {{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 123}},
          {{"names": ["getuid"], "action": "SCMP_ACT_TRACE"}},
          {{"names": ["getgid"], "action": "SCMP_ACT_LOG"}},
          {{"names": ["geteuid"], "action": "SCMP_ACT_ERRNO"}},
          {ALLOW_EXIT}
        ]}}"#
    ));
    let end = in_child(&f, || {
        let run = || -> Result<(), i32> {
            expect_errno(1, libc::SYS_getppid, [0; 6], 123)?;
            // TRACE without a tracer: the syscall fails with ENOSYS.
            expect_errno(2, libc::SYS_getuid, [0; 6], libc::ENOSYS)?;
            probe::call(libc::SYS_getgid, [0; 6]).map_err(|_| 3)?;
            expect_errno(4, libc::SYS_geteuid, [0; 6], libc::EPERM)?;
            Ok(())
        };
        run().err().unwrap_or(0)
    });
    assert_eq!(end, ChildEnd::Exited(0));
}

#[test]
fn kill_and_trap_actions_end_the_child_with_sigsys() {
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_TRAP",
    ] {
        let f = filter(&format!(
            r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{{"names": ["getppid"], "action": "{action}"}}]}}"#
        ));
        let end = in_child(&f, || {
            let _ = probe::call(libc::SYS_getppid, [0; 6]);
            1
        });
        assert_eq!(end, ChildEnd::Signaled(libc::SIGSYS), "{action}");
    }
}

#[test]
fn argument_conditions_on_full_64_bit_values() {
    let f = filter(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
          {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 11,
           "args": [{"index": 1, "value": 4294967295, "op": "SCMP_CMP_GT"},
                    {"index": 0, "value": 255, "valueTwo": 7, "op": "SCMP_CMP_MASKED_EQ"}]},
          {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 12,
           "args": [{"index": 1, "value": 5, "op": "SCMP_CMP_LE"}]},
          {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
           "args": [{"index": 2, "value": 1, "op": "SCMP_CMP_NE"}]}
        ]}"#,
    );
    let end = in_child(&f, || {
        let run = || -> Result<(), i32> {
            let big = 1u64 << 32;
            expect_errno(1, libc::SYS_getpriority, [7, big, 1, 0, 0, 0], 11)?;
            expect_errno(2, libc::SYS_getpriority, [0x107, big, 1, 0, 0, 0], 11)?;
            // arg0 & 0xff != 7: rule 1 fails; arg1 > 5: rule 2 fails; arg2 == 1: rule 3
            // fails; allowed, and the kernel rejects which=6 with EINVAL.
            expect_errno(3, libc::SYS_getpriority, [6, big, 1, 0, 0, 0], libc::EINVAL)?;
            expect_errno(4, libc::SYS_getpriority, [7, 3, 1, 0, 0, 0], 12)?;
            // Only the high word differs from 5: not <= 5.
            expect_errno(
                5,
                libc::SYS_getpriority,
                [9, big | 5, 1, 0, 0, 0],
                libc::EINVAL,
            )?;
            expect_errno(6, libc::SYS_getpriority, [9, 6, 0, 0, 0, 0], 13)?;
            Ok(())
        };
        run().err().unwrap_or(0)
    });
    assert_eq!(end, ChildEnd::Exited(0));
}

#[test]
fn syscalls_newer_than_the_profile_get_enosys() {
    let f = filter(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{{"names": ["getpid", "no_such_syscall"], "action": "SCMP_ACT_ALLOW"}}, {ALLOW_EXIT}]}}"#
    ));
    let end = in_child(&f, || {
        let run = || -> Result<(), i32> {
            probe::call(libc::SYS_getpid, [0; 6]).map_err(|_| 1)?;
            // getppid (110) is below exit_group (231), the highest named: EPERM.
            expect_errno(2, libc::SYS_getppid, [0; 6], libc::EPERM)?;
            // clone3 (435) is above it: ENOSYS, so libc falls back to clone.
            expect_errno(3, libc::SYS_clone3, [0; 6], libc::ENOSYS)?;
            Ok(())
        };
        run().err().unwrap_or(0)
    });
    assert_eq!(end, ChildEnd::Exited(0));
}

#[test]
fn notify_listener_is_sent_to_the_agent_which_answers() {
    let dir = std::env::temp_dir().join(format!("casulo-seccomp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock_path = dir.join("agent.sock");
    let _ = std::fs::remove_file(&sock_path);
    let listener = UnixListener::bind(&sock_path).unwrap();

    let json = format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "{}", "listenerMetadata": "hello-agent",
        "syscalls": [{{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}}]}}"#,
        sock_path.display()
    );
    let f = filter(&json);
    assert!(f.needs_listener());
    let state: oci_spec::runtime::State = serde_json::from_value(serde_json::json!({
        "ociVersion": "1.2.0", "id": "c1", "status": "creating", "pid": 1234, "bundle": "/b"
    }))
    .unwrap();
    let state_json = casulo_seccomp::process_state_json(
        1234,
        f.listener().and_then(|l| l.metadata.as_deref()),
        &state,
    );

    let agent = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, fd) = recv_with_fd(conn.as_fd(), &mut buf).unwrap();
        let fd = fd.expect("listener fd attached");
        let v: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
        let notif = notif_recv(fd.as_fd()).unwrap();
        notif_send(fd.as_fd(), notif.id, 4242, 0).unwrap();
        (v, notif.data.nr)
    });

    let path = sock_path.clone();
    let end = in_child_with_listener(&f, &path, &state_json);
    let (state_v, nr) = agent.join().unwrap();
    assert_eq!(end, ChildEnd::Exited(0));
    assert_eq!(nr as libc::c_long, libc::SYS_getppid);
    assert_eq!(state_v["fds"], serde_json::json!(["seccompFd"]));
    assert_eq!(state_v["metadata"], "hello-agent");
    assert_eq!(state_v["pid"], 1234);
    assert_eq!(state_v["ociVersion"], "1.2.0");
    assert_eq!(state_v["state"]["id"], "c1");
    assert_eq!(state_v["state"]["status"], "creating");
    let _ = std::fs::remove_dir_all(&dir);
}

fn in_child_with_listener(f: &Filter, path: &std::path::Path, state_json: &[u8]) -> ChildEnd {
    fork_and_wait(
        || {
            probe::no_core_dumps();
            let fd = match f.install() {
                Ok(Some(fd)) => fd,
                _ => return 1,
            };
            if casulo_seccomp::send_listener(path, state_json, fd.as_fd()).is_err() {
                return 2;
            }
            drop(fd);
            match probe::call(libc::SYS_getppid, [0; 6]) {
                Ok(4242) => 0,
                _ => 3,
            }
        },
        TIMEOUT,
    )
    .expect("fork/wait")
}

#[test]
fn large_program_with_long_jumps_installs_and_decides() {
    // Conditional rules on many syscalls make the tree's right branches farther
    // than a conditional jump reaches (255), so trampolines (`ja`) are needed.
    let names: Vec<&str> = casulo_seccomp::arch::Abi::X86_64
        .syscalls()
        .map(|(n, _)| n)
        .filter(|n| !n.starts_with("exit") && *n != "getpriority")
        .take(150)
        .collect();
    let mut syscalls: Vec<serde_json::Value> = names
        .iter()
        .map(|n| {
            serde_json::json!({"names": [n], "action": "SCMP_ACT_ERRNO", "errnoRet": 99,
                "args": [{"index": 0, "value": 1u64 << 40, "op": "SCMP_CMP_GT"}]})
        })
        .collect();
    syscalls.push(
        serde_json::json!({"names": ["getpriority"], "action": "SCMP_ACT_ERRNO",
        "errnoRet": 77, "args": [{"index": 0, "value": 1u64 << 40, "op": "SCMP_CMP_GT"}]}),
    );
    let json = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls});
    let f = filter(&json.to_string());
    assert!(f.program().len() > 600, "{}", f.program().len());
    assert!(f.program().iter().any(|i| i.code == 0x05), "no ja");
    let end = in_child(&f, || {
        let run = || -> Result<(), i32> {
            expect_errno(1, libc::SYS_getpriority, [(1 << 40) + 1, 0, 0, 0, 0, 0], 77)?;
            expect_errno(2, libc::SYS_getpriority, [6, 0, 0, 0, 0, 0], libc::EINVAL)?;
            Ok(())
        };
        run().err().unwrap_or(0)
    });
    assert_eq!(end, ChildEnd::Exited(0));
}
