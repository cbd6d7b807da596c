//! Faults end to end (project issue 7): the runtime SIGKILLed at each stage of create,
//! an init that dies during create, an unwritable `--root`, 100 concurrent creates.
//! After each, `delete --force` (or the failed create itself) must leave nothing: no
//! cgroup, no state directory, no mount, no process of the container.
//!
//! The runtime is stopped at a stage with the test-only `CASULO_FAULT_AT=<stage>`
//! (`casulo_core::fault`): it SIGSTOPs itself there, the test sees state `T` in
//! /proc/<pid>/stat and SIGKILLs it.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use casulo_integration::cli::{cgroup_exists, eventually};
use casulo_integration::{casulo_bin, Bundle, TestEnv as Env};
use serde_json::json;

fn root() -> bool {
    casulo_integration::prereq::root()
}

/// Pids of processes (not ours) with an argument that is the container's id, its
/// bundle directory or a path in it. The init is a clone of casulo until it execs, so
/// its cmdline is `casulo --root … create --bundle <dir> <id>`.
fn procs_of(b: &Bundle) -> Vec<i32> {
    let id = b.id();
    let dir = b.dir.to_string_lossy().into_owned();
    let inside = format!("{dir}/");
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let hit = cmd.split(|c| *c == 0).any(|a| {
            let a = String::from_utf8_lossy(a);
            a == id || a == dir || a.starts_with(&inside)
        });
        if hit {
            out.push(pid);
        }
    }
    out
}

/// What the container left behind, named.
fn leftovers(env: &Env, b: &Bundle) -> Vec<String> {
    let mut out = Vec::new();
    if cgroup_exists(b) {
        out.push("cgroup".to_string());
    }
    if env.root.join(b.id()).exists() {
        out.push("state dir".to_string());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    if mounts.contains(b.dir.to_str().unwrap()) {
        out.push("mount".to_string());
    }
    let procs = procs_of(b);
    if !procs.is_empty() {
        out.push(format!("processes {procs:?}"));
    }
    out
}

fn assert_clean(env: &Env, b: &Bundle, what: &str) {
    let mut left = Vec::new();
    let ok = eventually(|| {
        left = leftovers(env, b);
        left.is_empty()
    });
    assert!(ok, "{what}: left behind: {left:?}");
}

/// `casulo create` with `CASULO_FAULT_AT=<stage>`, not waited for.
fn create_with_fault(env: &Env, b: &Bundle, stage: &str) -> Child {
    Command::new(casulo_bin())
        .arg("--root")
        .arg(&env.root)
        .args(["create", "--bundle", b.dir.to_str().unwrap(), &b.id()])
        .env("CASULO_FAULT_AT", stage)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn casulo")
}

fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

fn sigkill(child: &mut Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the runtime");
    let st = child.wait().expect("reap the runtime");
    assert!(!st.success(), "the runtime was killed: {st:?}");
}

/// Kills the runtime stopped at `stage`, checks the init did not outlive it, then
/// `delete --force` cleans everything.
fn kill_at_stage(env: &Env, b: &Bundle, stage: &str) {
    let mut child = create_with_fault(env, b, stage);
    let pid = child.id();
    assert!(
        eventually(|| proc_state(pid) == Some('T')),
        "{stage}: the runtime never reached its fault point: {:?}",
        proc_state(pid)
    );
    assert!(env.root.join(b.id()).exists(), "{stage}: id claimed");
    sigkill(&mut child);
    if stage != "before-state" {
        // The init (when there is one) reads EOF on its channel and exits.
        assert!(
            eventually(|| procs_of(b).is_empty()),
            "{stage}: the init outlived the killed runtime: {:?}",
            procs_of(b)
        );
    }
    env.ok(&["delete", "--force", &b.id()]);
    assert_clean(env, b, stage);
    // The id can be used again.
    let r = env.create(b);
    assert_eq!(r.code, 0, "{stage}: create after cleanup: {r:?}");
    assert_eq!(env.state(&b.id())["status"], "created");
    env.ok(&["delete", "--force", &b.id()]);
    assert_clean(env, b, stage);
}

#[test]
fn runtime_killed_before_the_clone() {
    if !root() {
        return;
    }
    let env = Env::new("fault-preclone");
    let b = env.bundle(&["sleep", "1000"]);
    kill_at_stage(&env, &b, "before-clone");
}

#[test]
fn runtime_killed_after_the_clone() {
    if !root() {
        return;
    }
    let env = Env::new("fault-postclone");
    let b = env.bundle(&["sleep", "1000"]);
    kill_at_stage(&env, &b, "after-clone");
}

#[test]
fn runtime_killed_after_the_clone_with_a_user_namespace() {
    if !root() {
        return;
    }
    let env = Env::new("fault-postclone-userns");
    let mut b = env.bundle(&["sleep", "1000"]);
    let mut v = serde_json::to_value(&b.spec).unwrap();
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    b.spec = serde_json::from_value(v).unwrap();
    b.write_config();
    kill_at_stage(&env, &b, "after-clone");
}

#[test]
fn runtime_killed_before_the_state_is_written() {
    if !root() {
        return;
    }
    let env = Env::new("fault-prestate");
    let b = env.bundle(&["sleep", "1000"]);
    // The record still has pid 0 while the init waits in its cgroup for start.
    kill_at_stage(&env, &b, "before-state");
}

#[test]
fn runtime_killed_during_a_create_runtime_hook() {
    if !root() {
        return;
    }
    let env = Env::new("fault-hook");
    let mut b = env.bundle(&["sleep", "1000"]);
    let started = b.dir.join("hook.pid");
    let script = format!("echo $$ > {}; exec sleep 1000", started.display());
    let mut v = serde_json::to_value(&b.spec).unwrap();
    v["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]});
    b.spec = serde_json::from_value(v).unwrap();
    b.write_config();
    let mut child = create_with_fault(&env, &b, "none");
    assert!(
        eventually(|| std::fs::read_to_string(&started).is_ok_and(|s| s.ends_with('\n'))),
        "the hook never ran"
    );
    let hook: i32 = std::fs::read_to_string(&started)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    sigkill(&mut child);
    assert!(
        eventually(|| procs_of(&b).is_empty()),
        "the init outlived the killed runtime: {:?}",
        procs_of(&b)
    );
    let hook_alive =
        || std::fs::read(format!("/proc/{hook}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"));
    assert!(
        eventually(|| !hook_alive()),
        "the hook outlived the runtime"
    );
    env.ok(&["delete", "--force", &b.id()]);
    assert_clean(&env, &b, "hook");
}

#[test]
fn init_dying_during_create_leaves_nothing() {
    if !root() {
        return;
    }
    let env = Env::new("fault-initdies");
    // The init fails late (after its mounts): cwd is a regular file.
    let mut b = env.bundle(&["sleep", "1000"]);
    std::fs::write(b.rootfs().join("afile"), "x").unwrap();
    b.spec
        .process_mut()
        .as_mut()
        .unwrap()
        .set_cwd("/afile".into());
    b.write_config();
    let r = env.create(&b);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("cwd"), "the error names the field: {r:?}");
    assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {r:?}");
    assert_clean(&env, &b, "cwd is a file");

    // The init is killed from outside while the runtime waits for it (a createRuntime
    // hook SIGKILLs it, by the pid in the state on its stdin).
    let mut b = env.bundle(&["sleep", "1000"]);
    let script = r#"kill -9 $(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')"#;
    let mut v = serde_json::to_value(&b.spec).unwrap();
    v["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]});
    b.spec = serde_json::from_value(v).unwrap();
    b.write_config();
    let r = env.create(&b);
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {r:?}");
    assert_clean(&env, &b, "init killed by a hook");
}

/// The init makes its mounts while the runtime joins it to its cgroups. If it fails
/// there and exits first, the runtime's join or its `InCgroup` send fails (ESRCH,
/// EPIPE): the error must still be the init's own, and nothing may be left.
#[test]
fn init_failing_before_the_cgroup_join_reports_its_own_error() {
    if !root() {
        return;
    }
    let env = Env::new("fault-prejoin");
    let b = env.bundle(&["true"]);
    std::fs::remove_dir(b.rootfs().join("proc")).unwrap();
    std::os::unix::fs::symlink("/tmp", b.rootfs().join("proc")).unwrap();
    let child = Command::new(casulo_bin())
        .arg("--root")
        .arg(&env.root)
        .args(["create", "--bundle", b.dir.to_str().unwrap(), &b.id()])
        .env("CASULO_FAULT_AT", "before-cgroup-join")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn casulo");
    let pid = child.id();
    assert!(
        eventually(|| proc_state(pid) == Some('T')),
        "the runtime never reached its fault point"
    );
    // The init is the runtime's child; let it fail and exit while the runtime is stopped.
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let init: u32 = children.trim().parse().expect("one child, the init");
    assert!(
        eventually(|| proc_state(init) == Some('Z')),
        "the init did not fail on the /proc symlink: {:?}",
        proc_state(init)
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("/proc in the rootfs is a symlink"),
        "the init's error, not the runtime's: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert_clean(&env, &b, "init failed before the cgroup join");
}

#[test]
fn unwritable_root_gives_one_line_naming_it() {
    if !root() {
        return;
    }
    let env = Env::new("fault-root");
    let b = env.bundle(&["sleep", "1000"]);
    let file = b.dir.join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    for bad in [
        file.clone(),
        file.join("sub"),
        "/proc/casulo-no-root".into(),
    ] {
        let bad: &Path = &bad;
        let r = casulo_integration::runtime(
            &casulo_bin(),
            bad,
            &["create", "--bundle", b.dir.to_str().unwrap(), &b.id()],
        );
        assert_ne!(r.code, 0, "{bad:?}: {r:?}");
        let lines: Vec<&str> = r.stderr.trim().lines().collect();
        assert_eq!(lines.len(), 1, "{bad:?}: one line: {r:?}");
        let first = lines[0];
        assert!(
            first.contains(bad.to_str().unwrap()) || first.contains(file.to_str().unwrap()),
            "{bad:?}: the error names the path: {r:?}"
        );
        assert!(!cgroup_exists(&b), "{bad:?}: no cgroup");
        assert!(procs_of(&b).is_empty(), "{bad:?}: no process");
    }
}

#[test]
fn hundred_concurrent_creates_of_distinct_ids() {
    if !root() {
        return;
    }
    let env = Env::new("fault-hundred");
    let b = env.bundle(&["sleep", "1000"]);
    // 100 bundles sharing one rootfs, each with its own id and cgroup.
    let dirs: Vec<(String, std::path::PathBuf)> = (0..100)
        .map(|i| {
            let id = format!("{}-c{i}", b.id());
            let dir = b.dir.join(format!("b{i}"));
            std::fs::create_dir(&dir).unwrap();
            let mut v = serde_json::to_value(&b.spec).unwrap();
            v["root"]["path"] = json!(b.rootfs());
            v["linux"]["cgroupsPath"] = json!(format!("{}/{id}", env.cgroup));
            std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
            (id, dir)
        })
        .collect();
    let each = |f: &(dyn Fn(&str, &Path) -> casulo_integration::cli::Run + Sync)| {
        std::thread::scope(|s| {
            let hs: Vec<_> = dirs
                .iter()
                .map(|(id, dir)| s.spawn(move || (id.clone(), f(id, dir))))
                .collect();
            for h in hs {
                let (id, r) = h.join().unwrap();
                assert_eq!(r.code, 0, "{id}: {r:?}");
            }
        })
    };
    each(&|id, dir| env.run(&["create", "--bundle", dir.to_str().unwrap(), id]));
    for (id, _) in &dirs {
        assert_eq!(env.state(id)["status"], "created", "{id}");
    }
    each(&|id, _| env.run(&["start", id]));
    for (id, _) in &dirs {
        assert_eq!(env.state(id)["status"], "running", "{id}");
    }
    each(&|id, _| env.run(&["kill", id, "KILL"]));
    for (id, _) in &dirs {
        assert!(
            eventually(|| env.state(id)["status"] == "stopped"),
            "{id} stops"
        );
    }
    each(&|id, _| env.run(&["delete", id]));
    let left: Vec<_> = std::fs::read_dir(&env.root).unwrap().flatten().collect();
    assert!(left.is_empty(), "state left: {left:?}");
    for (id, _) in &dirs {
        for h in ["memory", "pids", "cpu", "freezer", "unified", ""] {
            let p = Path::new("/sys/fs/cgroup")
                .join(h)
                .join(env.cgroup.trim_start_matches('/'))
                .join(id);
            assert!(!p.exists(), "cgroup left: {p:?}");
        }
    }
    assert!(
        procs_of(&b).is_empty(),
        "processes left: {:?}",
        procs_of(&b)
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(b.dir.to_str().unwrap()), "mount left");
}
