//! OCI hooks end to end (config.md "POSIX-platform Hooks", runtime.md "Lifecycle"):
//! order, namespaces, the state on stdin, failure and timeout cleanup, warnings.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use casulo_integration::Bundle;
use common::{edit, eventually, host_dir, is_root, Env};
use serde_json::{json, Value};

/// A hook appending "<name> <status> <pid> <mount ns>" to `log` (status and pid read
/// from the state on stdin).
fn logging_hook(name: &str, log: &str) -> Value {
    let script = format!(
        "s=$(cat); st=$(echo \"$s\" | sed 's/.*\"status\":\"\\([a-z]*\\)\".*/\\1/'); \
         p=$(echo \"$s\" | sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/'); \
         echo \"{name} $st $p $(readlink /proc/self/ns/mnt)\" >> {log}"
    );
    json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

/// Mounts host dir `dir` at /hooklog in the container (for startContainer hooks).
fn with_log_mount(b: &mut Bundle, dir: &Path, hooks: Value) {
    let dir = dir.to_str().unwrap().to_string();
    edit(b, |v| {
        v["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/hooklog", "type": "bind", "source": dir, "options": ["rbind", "rw"]
        }));
        v["hooks"] = hooks;
        v["annotations"] = json!({"org.casulo.test": "hooks"});
    });
}

fn host_mnt_ns() -> String {
    std::fs::read_link("/proc/self/ns/mnt")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn hooks_run_in_order_in_their_namespaces_with_the_state() {
    if !is_root() {
        return;
    }
    let env = Env::new("hooks-order");
    let mut b = Bundle::new(&["true"]);
    let dir = host_dir(&b, "hooklog");
    let log = dir.join("log");
    let hl = log.to_str().unwrap();
    let state_file = dir.join("state.json");
    let mut create_runtime = logging_hook("createRuntime", hl);
    let save = format!(
        "{}; echo \"$s\" > {}",
        create_runtime["args"][2].as_str().unwrap(),
        state_file.display()
    );
    create_runtime["args"][2] = json!(save);
    let hooks = json!({
        "prestart": [logging_hook("prestart", hl)],
        "createRuntime": [create_runtime],
        "createContainer": [logging_hook("createContainer", hl)],
        "startContainer": [logging_hook("startContainer", "/hooklog/log")],
        "poststart": [logging_hook("poststart", hl)],
        "poststop": [logging_hook("poststop", hl)]
    });
    with_log_mount(&mut b, &dir, hooks);
    let r = env.create(&b);
    assert_eq!(r.code, 0, "{r:?}");
    let pid = env.state(&b.id())["pid"].as_i64().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.lines().count(),
        3,
        "create ran prestart, createRuntime, createContainer only: {text}"
    );
    env.ok(&["start", &b.id()]);
    let id = b.id();
    assert!(eventually(|| env.state(&id)["status"] == "stopped"));
    env.ok(&["delete", &b.id()]);

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    let names: Vec<&str> = lines.iter().map(|l| l[0]).collect();
    assert_eq!(
        names,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ],
        "{text}"
    );
    let status: Vec<&str> = lines.iter().map(|l| l[1]).collect();
    assert_eq!(
        status,
        // The create-time hooks see `created`, as crun and runtime-tools' hooks_stdin.
        ["created", "created", "created", "created", "running", "stopped"],
        "{text}"
    );
    for l in &lines[..5] {
        assert_eq!(
            l[2],
            pid.to_string(),
            "state pid is the init's host pid: {text}"
        );
    }
    let host = host_mnt_ns();
    let ctr = lines[2][3].to_string(); // createContainer's mount namespace
    assert_ne!(
        ctr, host,
        "createContainer runs in the container's mount ns"
    );
    for (i, l) in lines.iter().enumerate() {
        let want_host = !matches!(i, 2 | 3);
        assert_eq!(l[3] == host, want_host, "namespace of {}: {text}", l[0]);
    }
    assert_eq!(lines[3][3], ctr, "startContainer in the same mount ns");

    let st: Value =
        serde_json::from_str(std::fs::read_to_string(&state_file).unwrap().trim()).unwrap();
    assert_eq!(st["id"], b.id().as_str());
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], pid);
    assert_eq!(st["bundle"], b.dir.to_str().unwrap());
    assert_eq!(st["ociVersion"], "1.0.2-dev");
    assert_eq!(st["annotations"]["org.casulo.test"], "hooks");
}

/// A hook copying its own environment (`/proc/self/environ`, no shell in between) to
/// `out`; `busybox` is the host's for the runtime phases and createContainer (before
/// pivot_root), the container's for startContainer.
fn environ_hook(out: &str, env: Option<&[&str]>) -> Value {
    let mut h =
        json!({"path": "/bin/busybox", "args": ["busybox", "cp", "/proc/self/environ", out]});
    if let Some(e) = env {
        h["env"] = json!(e);
    }
    h
}

fn environ_of(path: &Path) -> Vec<String> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[test]
fn hooks_without_env_get_their_runners_environment() {
    if !is_root() {
        return;
    }
    let env = Env::new("hooks-env");
    let mut b = Bundle::new(&["true"]);
    let dir = host_dir(&b, "hooklog");
    let host = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let mark = "CASULO_PROCESS_MARK=container-env";
    let mut hooks = json!({});
    for phase in [
        "prestart",
        "createRuntime",
        "createContainer",
        "poststart",
        "poststop",
    ] {
        hooks[phase] = json!([
            environ_hook(&host(phase), None),
            environ_hook(&host(&format!("{phase}-own")), Some(&["ONLY=1"])),
        ]);
    }
    hooks["startContainer"] = json!([
        environ_hook("/hooklog/startContainer", None),
        environ_hook("/hooklog/startContainer-own", Some(&["ONLY=1"])),
    ]);
    with_log_mount(&mut b, &dir, hooks);
    edit(&mut b, |v| {
        v["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!(mark));
    });
    env.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    env.ok(&["start", &b.id()]);
    let id = b.id();
    assert!(eventually(|| env.state(&id)["status"] == "stopped"));
    env.ok(&["delete", &b.id()]);

    // The runtime's environment is this test's (inherited by the casulo command).
    let path = format!("PATH={}", std::env::var("PATH").unwrap());
    for phase in ["prestart", "createRuntime", "poststart", "poststop"] {
        let e = environ_of(&dir.join(phase));
        assert!(
            e.contains(&path),
            "{phase} without env gets the runtime's: {e:?}"
        );
        assert!(!e.iter().any(|v| v == mark), "{phase}: {e:?}");
    }
    for phase in ["createContainer", "startContainer"] {
        let e = environ_of(&dir.join(phase));
        let want: Vec<String> = b.spec.process().as_ref().unwrap().env().clone().unwrap();
        assert_eq!(e, want, "{phase} without env gets the container process's");
    }
    for phase in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        let e = environ_of(&dir.join(format!("{phase}-own")));
        assert_eq!(e, ["ONLY=1"], "{phase} with env gets exactly it");
    }
}

fn assert_init_gone(pid_marker: &str) {
    // No process of the failed container survives (its hooks included).
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        assert!(!cmd.contains(pid_marker), "left running: {cmd}");
    }
}

#[test]
fn failing_or_hanging_hooks_abort_create_and_leave_nothing() {
    if !is_root() {
        return;
    }
    let env = Env::new("hooks-fail");
    for (phase, script, timeout, want) in [
        (
            "createRuntime",
            "echo nope >&2; exit 3",
            None,
            "exit status 3",
        ),
        ("prestart", "exit 1", None, "exit status 1"),
        ("createContainer", "exit 4", None, "exit status 4"),
        ("createRuntime", "sleep 6123", Some(1), "timed out"),
        ("createContainer", "sleep 6124", Some(1), "timed out"),
    ] {
        let mut b = Bundle::new(&["true"]);
        let dir = host_dir(&b, "hooklog");
        let log = dir.join("log");
        let mut hook = json!({"path": "/bin/sh", "args": ["sh", "-c", script]});
        if let Some(t) = timeout {
            hook["timeout"] = json!(t);
        }
        let hooks =
            json!({phase: [hook], "poststop": [logging_hook("poststop", log.to_str().unwrap())]});
        with_log_mount(&mut b, &dir, hooks);
        let t = Instant::now();
        let r = env.create(&b);
        assert_ne!(r.code, 0, "{phase} {script}: {r:?}");
        assert!(
            r.stderr.contains(&format!("hooks.{phase}[0]")) && r.stderr.contains(want),
            "{phase}: {}",
            r.stderr
        );
        assert!(t.elapsed() < Duration::from_secs(15), "timeout honoured");
        env.assert_nothing_left(&b);
        assert_init_gone("sleep 612");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.starts_with("poststop stopped"),
            "poststop runs after a failed hook: {text:?}"
        );
    }
}

#[test]
fn failing_start_container_hook_fails_start() {
    if !is_root() {
        return;
    }
    let env = Env::new("hooks-startc");
    let mut b = Bundle::new(&["sh", "-c", "echo ran > /hooklog/process"]);
    let dir = host_dir(&b, "hooklog");
    let hooks = json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 9"]}]});
    with_log_mount(&mut b, &dir, hooks);
    env.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    let r = env.run(&["start", &b.id()]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("hooks.startContainer[0]") && r.stderr.contains("exit status 9"),
        "{}",
        r.stderr
    );
    assert!(!dir.join("process").exists(), "the process never ran");
    let id = b.id();
    assert!(eventually(|| env.state(&id)["status"] == "stopped"));
    env.ok(&["delete", &b.id()]);
    env.assert_nothing_left(&b);
}

#[test]
fn failing_poststart_stops_the_container_and_poststop_only_warns() {
    // runtime.md 1.3, lifecycle step 9: a failing poststart hook is an error, the
    // container is stopped, the lifecycle goes on with delete (poststop runs there).
    if !is_root() {
        return;
    }
    let env = Env::new("hooks-poststart");
    let mut b = Bundle::new(&["sleep", "1000"]);
    let dir = host_dir(&b, "hooklog");
    let log = dir.join("log");
    let hooks = json!({
        "poststart": [{"path": "/bin/false"}, logging_hook("poststart2", log.to_str().unwrap())],
        "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 5"]},
                     logging_hook("poststop2", log.to_str().unwrap())]
    });
    with_log_mount(&mut b, &dir, hooks);
    env.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    let r = env.run(&["start", &b.id()]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("hooks.poststart[0]"), "{r:?}");
    assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
    assert!(
        !log.exists(),
        "no poststart hook runs after the failing one"
    );
    assert_eq!(env.state(&b.id())["status"], "stopped", "start stopped it");
    let r = env.ok(&["delete", &b.id()]);
    assert!(
        r.stderr.contains("warning") && r.stderr.contains("hooks.poststop[0]"),
        "{r:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("poststop2 stopped"), "{text}");
    env.assert_nothing_left(&b);

    // `run`: the same error, the container is stopped and deleted, poststop ran.
    let mut b = Bundle::new(&["sleep", "1000"]);
    let dir = host_dir(&b, "hooklog");
    let log = dir.join("log");
    let hooks = json!({
        "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}],
        "poststop": [logging_hook("poststop", log.to_str().unwrap())]
    });
    with_log_mount(&mut b, &dir, hooks);
    // (`run` returns only because the stopped container's sleep was killed.)
    let r = env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("hooks.poststart[0]") && r.stderr.contains("exit status 3"),
        "{r:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("poststop "), "{text}");
    env.assert_nothing_left(&b);
}

#[test]
fn docker_style_prestart_hook_through_proc_pid_exe() {
    if !is_root() {
        return;
    }
    let env = Env::new("hooks-docker");
    let mut helper = std::process::Command::new("/bin/busybox")
        .args(["sleep", "100"])
        .spawn()
        .unwrap();
    let mut b = Bundle::new(&["true"]);
    let dir = host_dir(&b, "hooklog");
    let out = dir.join("setkey");
    // As dockerd's libnetwork-setkey: the path is the daemon's own /proc/<pid>/exe.
    let hooks = json!({"prestart": [{
        "path": format!("/proc/{}/exe", helper.id()),
        "args": ["busybox", "sh", "-c", format!("cat > {}", out.display())]
    }]});
    with_log_mount(&mut b, &dir, hooks);
    let r = env.create(&b);
    let _ = helper.kill();
    let _ = helper.wait();
    assert_eq!(r.code, 0, "{r:?}");
    let st: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(st["id"], b.id().as_str());
    env.ok(&["delete", "--force", &b.id()]);
}

#[test]
fn bad_hooks_are_refused_by_name_before_anything_exists() {
    if !is_root() {
        return;
    }
    let env = Env::new("hooks-bad");
    for (hooks, want) in [
        (
            json!({"prestart": [{"path": "bin/true"}]}),
            "hooks.prestart[0].path",
        ),
        (
            json!({"createRuntime": [{"path": "/bin/true"}, {"path": "/bin/true", "timout": 5}]}),
            "hooks.createRuntime[1].timout",
        ),
        (
            json!({"poststart": [{"path": "/bin/true", "timeout": 0}]}),
            "hooks.poststart[0].timeout",
        ),
        (json!({"prestrat": []}), "hooks.prestrat"),
        (json!({"poststop": [{"args": ["x"]}]}), "hooks.poststop[0]"),
    ] {
        let b = Bundle::new(&["true"]);
        let mut raw = serde_json::to_value(&b.spec).unwrap();
        raw["hooks"] = hooks;
        common::write_raw(&b, &raw);
        let r = env.create(&b);
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains(want), "want {want}: {}", r.stderr);
        env.assert_nothing_left(&b);
    }
}
