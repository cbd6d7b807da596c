//! The container lifecycle end to end (runtime.md): create/start/state/kill/delete/run
//! with real containers from a busybox rootfs, asserted from the host and from inside.

use std::time::Duration;

use casulo_integration::cli::{cgroup_exists, eventually};
use casulo_integration::{casulo_bin, runtime, TestEnv as Env};
use serde_json::Value;

fn root() -> bool {
    casulo_integration::prereq::root()
}

#[test]
fn run_passes_exit_codes_and_output() {
    if !root() {
        return;
    }
    let env = Env::new("exit");
    let b = env.bundle(&["sh", "-c", "echo out-$(hostname); echo err >&2; exit 7"]);
    let r = env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    assert_eq!(r.code, 7, "{r:?}");
    assert_eq!(r.stdout, "out-casulo\n");
    assert_eq!(r.stderr, "err\n");
    assert!(!env.root.join(b.id()).exists(), "run leaves no state");
    assert!(!cgroup_exists(&b), "run leaves no cgroup");

    // Killed by a signal: 128+N. (The container's pid 1 ignores signals it has no
    // handler for when they come from inside, so the kill comes from the host.)
    let b = env.bundle(&["sleep", "1000"]);
    let id = b.id();
    let r = std::thread::scope(|s| {
        let h = s.spawn(|| env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &id]));
        assert!(eventually(|| env
            .run(&["state", &id])
            .stdout
            .contains("running")));
        env.ok(&["kill", &id, "9"]);
        h.join().unwrap()
    });
    assert_eq!(r.code, 128 + 9, "killed by SIGKILL gives 137: {r:?}");
}

#[test]
fn full_lifecycle_states_and_errors() {
    if !root() {
        return;
    }
    let env = Env::new("states");
    let b = env.bundle(&["sleep", "1000"]);
    let id = b.id();
    let pid_file = b.dir.join("init.pid");
    let r = env.run(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let st = env.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["ociVersion"], "1.0.2-dev");
    assert_eq!(st["bundle"], b.dir.to_str().unwrap());
    assert!(st["created"].as_str().unwrap().ends_with('Z'));
    let pid = st["pid"].as_i64().unwrap();
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        pid.to_string(),
        "pid file written before create returns"
    );
    // The init waits for start blocked (state S), not spinning, and runs no user code yet.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    assert!(
        stat.contains(") S "),
        "init must sleep while created: {stat}"
    );
    let cpu_before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(cpu_ticks(pid), cpu_before, "created init burns no CPU");
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap()
            .is_empty()
            || !std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap()
                .starts_with("sleep")
    );

    // Wrong-state operations.
    let r = env.run(&["delete", &id]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not stopped"), "{r:?}");

    env.ok(&["start", &id]);
    assert_eq!(env.state(&id)["status"], "running");
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap()
            .starts_with("sleep"),
        "start returns after exec"
    );
    let r = env.run(&["start", &id]);
    assert_ne!(r.code, 0, "start of a running container must fail");
    assert!(r.stderr.contains("not created"), "{r:?}");

    env.ok(&["kill", &id, "KILL"]);
    assert!(
        eventually(|| env.state(&id)["status"] == "stopped"),
        "state is stopped after kill"
    );
    assert_eq!(env.state(&id)["pid"], 0);
    let r = env.run(&["kill", &id]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("container not running"), "{r:?}");
    env.ok(&["delete", &id]);
    assert!(!env.root.join(&id).exists());
    assert!(!cgroup_exists(&b), "delete removes the cgroup");
    let r = env.run(&["state", &id]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("does not exist"), "{r:?}");
    for cmd in ["start", "kill", "delete"] {
        let r = env.run(&[cmd, &id]);
        assert!(
            r.code != 0 && r.stderr.contains("does not exist"),
            "{cmd}: {r:?}"
        );
    }
    env.ok(&["delete", "--force", &id]);
}

fn cpu_ticks(pid: i64) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn kill_signals_by_name_number_and_default() {
    if !root() {
        return;
    }
    let env = Env::new("kill");
    for sig in ["15", "TERM", "SIGTERM", ""] {
        // pid 1 of a pid namespace only gets signals it handles.
        let b = env.bundle(&[
            "sh",
            "-c",
            "trap 'exit 42' TERM; while :; do sleep 0.05; done",
        ]);
        let id = b.id();
        let r = env.create(&b);
        assert_eq!(r.code, 0, "{r:?}");
        env.ok(&["start", &id]);
        let mut args = vec!["kill", id.as_str()];
        if !sig.is_empty() {
            args.push(sig);
        }
        env.ok(&args);
        // `start` returns once sh is exec'd, maybe before it has installed its trap,
        // and pid 1 ignores TERM until then: send it again until the container stops.
        assert!(
            eventually(|| {
                let stopped = env.state(&id)["status"] == "stopped";
                if !stopped {
                    let _ = env.run(&args);
                }
                stopped
            }),
            "signal {sig:?} stops sleep"
        );
        env.ok(&["delete", &id]);
    }
    let r = env.run(&["kill", "nonexistent-id", "BOGUS"]);
    assert_ne!(r.code, 0);
}

#[test]
fn delete_force_kills_and_cleans() {
    if !root() {
        return;
    }
    let env = Env::new("force");
    let b = env.bundle(&["sleep", "1000"]);
    let id = b.id();
    let r = env.create(&b);
    assert_eq!(r.code, 0, "{r:?}");
    env.ok(&["start", &id]);
    let pid = env.state(&id)["pid"].as_i64().unwrap();
    env.ok(&["delete", "--force", &id]);
    assert!(!env.root.join(&id).exists());
    assert!(!cgroup_exists(&b));
    // Our test process is not the init's parent: wait until it is gone or a zombie.
    assert!(eventually(|| std::fs::read_to_string(format!(
        "/proc/{pid}/stat"
    ))
    .map_or(true, |s| s.contains(") Z "))));
}

#[test]
fn start_refuses_config_without_process() {
    if !root() {
        return;
    }
    let env = Env::new("noproc");
    let mut b = env.bundle(&["true"]);
    b.spec.set_process(None);
    b.write_config();
    let id = b.id();
    let r = env.create(&b);
    assert_eq!(r.code, 0, "create accepts a config without process: {r:?}");
    assert_eq!(env.state(&id)["status"], "created");
    let r = env.run(&["start", &id]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no process"), "{r:?}");
    env.ok(&["delete", "--force", &id]);
    assert!(!cgroup_exists(&b));
}

#[test]
fn missing_executable_fails_create_with_docker_texts() {
    if !root() {
        return;
    }
    let env = Env::new("noexec");
    for (arg, text) in [
        ("/bin/nonexistent", "no such file or directory"),
        ("nonexistent", "executable file not found"),
    ] {
        let b = env.bundle(&[arg]);
        let log = b.dir.join("log.json");
        let r = env.run(&[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            b.dir.to_str().unwrap(),
            &b.id(),
        ]);
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains(text), "{arg}: {r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "one line: {r:?}");
        let last: Value = serde_json::from_str(
            std::fs::read_to_string(&log)
                .unwrap()
                .lines()
                .last()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(last["level"], "error");
        assert!(last["msg"].as_str().unwrap().contains(text));
        assert!(!env.root.join(b.id()).exists(), "no state dir left");
        assert!(!cgroup_exists(&b), "no cgroup left");
        // run reports the same text
        let r = env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
        assert!(r.code != 0 && r.stderr.contains(text), "{r:?}");
    }
}

#[test]
fn exec_failure_at_start_surfaces_to_start() {
    if !root() {
        return;
    }
    let env = Env::new("execfail");
    // Executable file with a bad format: found at create, execve fails at start.
    let b = env.bundle(&["/bad-binary"]);
    std::fs::write(b.rootfs().join("bad-binary"), b"\x7fELF garbage").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        b.rootfs().join("bad-binary"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let id = b.id();
    let r = env.create(&b);
    assert_eq!(r.code, 0, "{r:?}");
    let r = env.run(&["start", &id]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("exec format error"), "{r:?}");
    assert!(eventually(|| env.state(&id)["status"] == "stopped"));
    env.ok(&["delete", &id]);
}

#[test]
fn list_and_state_json() {
    if !root() {
        return;
    }
    let env = Env::new("list");
    let a = env.bundle(&["sleep", "1000"]);
    let b = env.bundle(&["sleep", "1000"]);
    assert_eq!(env.create(&a).code, 0);
    let r = env.create(&b);
    assert_eq!(r.code, 0, "{r:?}");
    env.ok(&["start", &b.id()]);
    let list: Value = serde_json::from_str(&env.ok(&["list", "--format", "json"]).stdout).unwrap();
    let arr = list.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    let by_id = |id: &str| arr.iter().find(|s| s["id"] == id).unwrap().clone();
    assert_eq!(by_id(&a.id())["status"], "created");
    assert_eq!(by_id(&b.id())["status"], "running");
    let table = env.ok(&["list"]).stdout;
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(&a.id()) && table.contains("created") && table.contains("running"));
    let quiet = env.ok(&["list", "-q"]).stdout;
    assert_eq!(quiet.lines().count(), 2);
}

#[test]
fn spec_writes_a_runnable_default_config() {
    if !root() {
        return;
    }
    let env = Env::new("spec");
    let b = env.bundle(&["true"]);
    std::fs::remove_file(b.dir.join("config.json")).unwrap();
    let r = runtime(
        &casulo_bin(),
        &env.root,
        &["spec", "--bundle", b.dir.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(b.dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["root"]["path"], "rootfs");
    assert_eq!(spec["process"]["args"][0], "sh");
    let r = runtime(
        &casulo_bin(),
        &env.root,
        &["spec", "--bundle", b.dir.to_str().unwrap()],
    );
    assert_ne!(r.code, 0, "spec refuses to overwrite");
    // Make it run `true` and run it.
    let mut v = spec;
    v["process"]["args"] = serde_json::json!(["true"]);
    std::fs::write(b.dir.join("config.json"), v.to_string()).unwrap();
    let r = env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn cli_help_and_version() {
    let v = std::process::Command::new(casulo_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("casulo "));
    for cmd in [
        "create", "start", "state", "kill", "delete", "run", "list", "spec", "ps",
    ] {
        let o = std::process::Command::new(casulo_bin())
            .args([cmd, "-h"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd} -h");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage"),
            "{cmd} -h"
        );
    }
    // The driver's flag is global, as runc's: commands that touch no cgroup take it.
    let o = std::process::Command::new(casulo_bin())
        .args(["--systemd-cgroup", "list"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn concurrent_creates_of_one_id_give_one_success() {
    if !root() {
        return;
    }
    let env = Env::new("race");
    let b = env.bundle(&["sleep", "1000"]);
    let id = b.id();
    let dir = b.dir.to_str().unwrap().to_string();
    let codes: Vec<i32> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..20)
            .map(|_| s.spawn(|| env.run(&["create", "--bundle", &dir, &id]).code))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{codes:?}");
    assert_eq!(env.state(&id)["status"], "created");
    env.ok(&["delete", "--force", &id]);
}

#[test]
fn a_reused_pid_is_never_taken_for_the_container() {
    if !root() {
        return;
    }
    let env = Env::new("pidreuse");
    let b = env.bundle(&["sleep", "1000"]);
    let id = b.id();
    assert_eq!(env.create(&b).code, 0);
    env.ok(&["start", &id]);
    let pid = env.state(&id)["pid"].as_i64().unwrap();
    // Pretend the init died and its pid was reused: same pid, another start time.
    let path = env.root.join(&id).join("state.json");
    let mut rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    rec["start_time"] = serde_json::json!(rec["start_time"].as_u64().unwrap() + 1);
    std::fs::write(&path, rec.to_string()).unwrap();
    assert_eq!(env.state(&id)["status"], "stopped");
    let r = env.run(&["kill", &id, "KILL"]);
    assert!(
        r.code != 0 && r.stderr.contains("container not running"),
        "{r:?}"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap()
            .contains(") S "),
        "the process with the reused pid was not signalled"
    );
    // Clean up the real process by its pid (we started it).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    env.ok(&["delete", "--force", &id]);
}
