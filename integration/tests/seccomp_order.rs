//! Issue 13 class 1: after the seccomp filter is installed, the init and the exec child
//! make only the syscalls any profile that lets the container's process run must allow
//! (the user switch, capset, prctl, execve/execveat, write and exit on failure). Every
//! check, lookup and fd closing, the exec fifo wait and the startContainer hooks happen
//! before it. Profiles: a default-errno allow-list of the pre-2020 era (Docker's default
//! profile from seccomp/tests without the syscalls Linux gained since 5.1: no openat2,
//! close_range, faccessat2, clone3, statx…), a default-allow profile denying getcwd, one
//! denying openat2 and close_range; each with noNewPrivileges true and false, for `run`,
//! `create` + `start` and `exec`.

mod common;

use casulo_integration::{Bundle, Run};
use common::{is_root, Env};
use serde_json::{json, Value};

/// Syscalls newer than the profiles engines and recorders generated before 2020.
const NEWER: &[&str] = &[
    "openat2",
    "close_range",
    "faccessat2",
    "clone3",
    "statx",
    "pidfd_open",
    "pidfd_send_signal",
    "pidfd_getfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "epoll_pwait2",
    "process_madvise",
    "process_mrelease",
    "mount_setattr",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    "memfd_secret",
    "futex_waitv",
    "cachestat",
    "fchmodat2",
    "map_shadow_stack",
    "futex_wake",
    "futex_wait",
    "futex_requeue",
    "set_mempolicy_home_node",
    "quotactl_fd",
    "mseal",
    "listmount",
    "statmount",
    "lsm_get_self_attr",
    "lsm_set_self_attr",
    "lsm_list_modules",
];

fn old_era_allow_list() -> Value {
    let mut p: Value =
        serde_json::from_str(include_str!("../../seccomp/tests/docker_default.json")).unwrap();
    for rule in p["syscalls"].as_array_mut().unwrap() {
        let names = rule["names"].as_array_mut().unwrap();
        names.retain(|n| !NEWER.contains(&n.as_str().unwrap()));
    }
    p["syscalls"]
        .as_array_mut()
        .unwrap()
        .retain(|r| !r["names"].as_array().unwrap().is_empty());
    p
}

fn denying(names: &[&str]) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ERRNO"}]
    })
}

fn profiles() -> Vec<(&'static str, Value)> {
    vec![
        ("old-era allow-list", old_era_allow_list()),
        ("getcwd denied", denying(&["getcwd"])),
        (
            "openat2 and close_range denied",
            denying(&["openat2", "close_range"]),
        ),
    ]
}

fn configure(b: &mut Bundle, args: &[&str], profile: &Value, nnp: bool) {
    let mut v = serde_json::to_value(&b.spec).unwrap();
    v["process"]["args"] = json!(args);
    v["process"]["noNewPrivileges"] = json!(nnp);
    v["linux"]["seccomp"] = profile.clone();
    b.spec = serde_json::from_value(v).unwrap();
    b.write_config();
}

/// `create` with its stdout (the container's) in a file, `start`, wait until stopped.
fn create_start(env: &Env, b: &Bundle, id: &str) -> Run {
    let out = b.dir.join(format!("{id}.out"));
    let o = std::process::Command::new(casulo_integration::casulo_bin())
        .arg("--root")
        .arg(&env.root)
        .args(["create", "--bundle", b.dir.to_str().unwrap(), id])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(format!("{}.err", out.display())).unwrap())
        .status()
        .unwrap();
    let mut r = Run {
        code: o.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: std::fs::read_to_string(format!("{}.err", out.display())).unwrap_or_default(),
    };
    if r.code == 0 {
        r = env.run(&["start", id]);
        let stopped = || {
            let s = env.run(&["state", id]);
            s.code != 0 || s.stdout.contains("\"stopped\"")
        };
        assert!(common::eventually(stopped), "{id} never stopped");
    }
    r.stdout += &std::fs::read_to_string(&out).unwrap_or_default();
    let _ = env.run(&["delete", "--force", id]);
    r
}

fn assert_ran(what: &str, r: &Run) {
    assert_eq!(r.code, 0, "{what}: {r:?}");
    assert!(r.stdout.contains("seccomp-ok"), "{what}: {r:?}");
}

#[test]
fn filter_comes_after_every_runtime_syscall() {
    if !is_root() {
        return;
    }
    let env = Env::new("seccomp-order");
    let mut b = Bundle::new(&["true"]);
    // A startContainer hook too: it runs after the fifo wait, still before the filter.
    let mut v = serde_json::to_value(&b.spec).unwrap();
    v["hooks"] = json!({"startContainer": [{"path": "/bin/true"}]});
    b.spec = serde_json::from_value(v).unwrap();
    for (name, profile) in profiles() {
        for nnp in [true, false] {
            let what = |how: &str| format!("{how} with {name}, noNewPrivileges {nnp}");
            configure(&mut b, &["echo", "seccomp-ok"], &profile, nnp);
            let id = format!("{}-r", b.id());
            let r = env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
            let _ = env.run(&["delete", "--force", &id]);
            assert_ran(&what("run"), &r);
            assert_ran(
                &what("create+start"),
                &create_start(&env, &b, &format!("{}-c", b.id())),
            );
            configure(&mut b, &["sleep", "1000"], &profile, nnp);
            let id = format!("{}-e", b.id());
            env.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
            env.ok(&["start", &id]);
            let r = env.run(&["exec", &id, "echo", "seccomp-ok"]);
            assert_ran(&what("exec"), &r);
            let r = env.run(&[
                "exec",
                "--cwd",
                "/tmp",
                "-u",
                "1000",
                &id,
                "echo",
                "seccomp-ok",
            ]);
            assert_ran(&what("exec as user 1000 in /tmp"), &r);
            let _ = env.run(&["delete", "--force", &id]);
        }
    }
}

/// Syscalls newer than the profile are still answered ENOSYS (so glibc falls back),
/// not the profile's errno.
#[test]
fn newer_syscalls_still_get_enosys() {
    if !is_root() {
        return;
    }
    let env = Env::new("seccomp-order-enosys");
    let mut b = Bundle::new(&["true"]);
    configure(
        &mut b,
        &["/checker", "--syscalls"],
        &old_era_allow_list(),
        true,
    );
    let id = format!("{}-n", b.id());
    let r = env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    let _ = env.run(&["delete", "--force", &id]);
    assert_eq!(r.code, 0, "{r:?}");
    let clone3 = r
        .stdout
        .lines()
        .find(|l| l.starts_with("clone3 "))
        .unwrap_or_default();
    assert_eq!(clone3.split_whitespace().nth(1), Some("38"), "{r:?}");
}
