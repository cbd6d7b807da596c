//! The systemd cgroup driver for a rootless caller (issue 16 point 4): as the
//! unprivileged user `casulo-rl`, `casulo --systemd-cgroup` talks to the user's own
//! systemd instance (`user@UID.service`, started here as root) over the user's session
//! bus, as runc does: the scope is the user manager's, in its `user.slice`, with the
//! limits as unit properties and in the delegated cgroup's files; delete leaves no unit
//! and no cgroup. Asserted from inside the container (the checker, /proc/self/cgroup)
//! and from the host (`systemctl --user show` as the user, the cgroup files).
//!
//! Every test is named `systemd_*`. They need systemd as PID 1 (the systemd VM,
//! `scripts/v2vm/run-in-v2vm.sh -S`, whose `user@.service` drop-in sets the user
//! manager's `XDG_RUNTIME_DIR`) and `dbus-user-session` (the user's bus): without
//! systemd they print why and pass, except under `CASULO_EXPECT_SYSTEMD=1`.

use std::path::PathBuf;
use std::process::Command;

use casulo_integration::cli::eventually;
use casulo_integration::rootless::Sandbox;
use casulo_integration::{Bundle, Run};
use serde_json::{json, Value};

/// The user's manager, started for the test and stopped when dropped.
struct UserManager {
    uid: u32,
}

impl UserManager {
    fn start(uid: u32) -> UserManager {
        let unit = format!("user@{uid}.service");
        let st = Command::new("systemctl")
            .args(["start", &unit])
            .status()
            .expect("systemctl");
        assert!(st.success(), "systemctl start {unit}");
        let m = UserManager { uid };
        assert!(
            eventually(|| m.bus().exists()),
            "{unit} is running but {} never appeared (dbus-user-session installed?)",
            m.bus().display()
        );
        m
    }

    fn bus(&self) -> PathBuf {
        PathBuf::from(format!("/run/user/{}/bus", self.uid))
    }

    /// The manager's cgroup directory.
    fn cgroup(&self) -> PathBuf {
        let u = self.uid;
        PathBuf::from(format!(
            "/sys/fs/cgroup/user.slice/user-{u}.slice/user@{u}.service"
        ))
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        let _ = Command::new("systemctl")
            .args(["stop", &format!("user@{}.service", self.uid)])
            .status();
    }
}

fn dir(b: &Bundle) -> &str {
    b.dir.to_str().unwrap()
}

fn unit(b: &Bundle) -> String {
    format!("casulo-{}.scope", b.id())
}

/// `systemctl --user show -p PROP --value UNIT` as the user, on its bus.
fn show(sb: &Sandbox, m: &UserManager, unit: &str, prop: &str) -> String {
    let bus = format!("unix:path={}", m.bus().display());
    let r = sb.run_in(
        &sb.dir,
        &["systemctl", "--user", "show", "-p", prop, "--value", unit],
        &[("DBUS_SESSION_BUS_ADDRESS", &bus)],
    );
    assert_eq!(r.code, 0, "systemctl --user show {unit}: {r:?}");
    r.stdout.trim().to_string()
}

/// True while the user's manager still knows the unit (any state).
fn unit_listed(sb: &Sandbox, m: &UserManager, unit: &str) -> bool {
    let bus = format!("unix:path={}", m.bus().display());
    let r = sb.run_in(
        &sb.dir,
        &[
            "systemctl",
            "--user",
            "list-units",
            "--all",
            "--plain",
            "--no-legend",
        ],
        &[("DBUS_SESSION_BUS_ADDRESS", &bus)],
    );
    assert_eq!(r.code, 0, "systemctl --user list-units: {r:?}");
    r.stdout
        .lines()
        .any(|l| l.split_whitespace().next() == Some(unit))
}

fn sd(sb: &Sandbox, args: &[&str]) -> Run {
    let mut a = vec!["--systemd-cgroup"];
    a.extend_from_slice(args);
    sb.casulo(&a)
}

fn sd_ok(sb: &Sandbox, args: &[&str]) -> Run {
    let r = sd(sb, args);
    assert_eq!(
        r.code, 0,
        "casulo --systemd-cgroup {args:?} as the user: {r:?}"
    );
    r
}

/// A bundle of the user's with the default cgroupsPath (`:casulo:<id>`, in the user
/// manager's `user.slice`) and memory and pids limits.
fn limited(sb: &Sandbox, args: &[&str]) -> Bundle {
    let mut b = sb.bundle(args, None);
    sb.edit(&mut b, |v| {
        v["linux"]["cgroupsPath"] = json!("");
        v["linux"]["resources"] = json!({
            "memory": {"limit": 67108864},
            "pids": {"limit": 50}
        });
    });
    b
}

/// One manager for the whole test (its `Drop` stops it): the parts run in order.
#[test]
fn systemd_rootless_scope_in_the_users_manager() {
    if !casulo_integration::prereq::root() || !casulo_integration::prereq::systemd() {
        return;
    }
    let Some(user) = casulo_integration::rootless::user() else {
        return;
    };
    // Before the sandbox, so that it is dropped after it (the sandbox's containers are
    // deleted while their manager runs).
    let m = UserManager::start(user.uid);
    let Some(sb) = Sandbox::new("sduser") else {
        return;
    };
    // The sandbox's XDG_RUNTIME_DIR is its own (the state root): the user's bus is
    // reached through `$XDG_RUNTIME_DIR/bus`, as runc finds it.
    let link = sb.xdg.join("bus");
    std::os::unix::fs::symlink(m.bus(), &link).unwrap();
    sb.own(&link);
    checker_inside(&sb, &m);
    lifecycle_from_the_host(&sb, &m);
    from_a_user_namespace(&sb, &m);

    // Without the user's bus: one line naming it, nothing left.
    std::fs::remove_file(&link).unwrap();
    let b = limited(&sb, &["true"]);
    let r = sd(&sb, &["run", "--bundle", dir(&b), &b.id()]);
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
    assert!(
        r.stderr.contains(&unit(&b)) && r.stderr.contains("the user's session bus"),
        "{r:?}"
    );
    assert!(
        !sb.xdg.join("casulo").join(b.id()).exists(),
        "state dir left"
    );
    assert!(!m.cgroup().join("user.slice").join(unit(&b)).exists());
}

/// Asserts that the checker's output has passed the named checks.
fn assert_checks(out: &str, checks: &[&str]) {
    for want in checks {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok ") && l.contains(want)),
            "{want}: {out}"
        );
    }
}

const CGROUP_CHECKS: &[&str] = &[
    "- Namespaces: cgroup: /proc/self/cgroup paths are /",
    "- Control groups: memory.limit (/sys/fs/cgroup/memory.max)",
    "- Control groups: pids.limit (/sys/fs/cgroup/pids.max)",
];

/// Inside: its own cgroup namespace rooted at the scope, and the checker sees the
/// limits in the container's cgroup files; `run` leaves no unit.
fn checker_inside(sb: &Sandbox, m: &UserManager) {
    let b = limited(sb, &["/checker", "/config.json"]);
    let r = sd(sb, &["run", "--bundle", dir(&b), &b.id()]);
    assert_eq!(r.code, 0, "checker in the user's scope: {r:?}");
    assert_checks(&r.stdout, CGROUP_CHECKS);
    assert!(eventually(|| !unit_listed(sb, m, &unit(&b))), "unit left");
}

/// From the host: the user manager's unit, its cgroup under user@UID.service, through
/// update, pause/resume, ps, exec and delete.
fn lifecycle_from_the_host(sb: &Sandbox, m: &UserManager) {
    let b = limited(sb, &["sleep", "1000"]);
    let (id, u) = (b.id(), unit(&b));
    sd_ok(sb, &["create", "--bundle", dir(&b), &id]);
    let scope = m.cgroup().join("user.slice").join(&u);
    assert_eq!(show(sb, m, &u, "ActiveState"), "active");
    assert_eq!(show(sb, m, &u, "Slice"), "user.slice");
    assert_eq!(show(sb, m, &u, "MemoryMax"), "67108864");
    assert_eq!(show(sb, m, &u, "TasksMax"), "50");
    let uid = sb.user.uid;
    assert_eq!(
        show(sb, m, &u, "ControlGroup"),
        format!("/user.slice/user-{uid}.slice/user@{uid}.service/user.slice/{u}")
    );
    let file = |name: &str| {
        std::fs::read_to_string(scope.join(name))
            .unwrap_or_else(|e| panic!("{}: {e}", scope.join(name).display()))
            .trim()
            .to_string()
    };
    assert_eq!(file("memory.max"), "67108864");
    assert_eq!(file("pids.max"), "50");
    let st: Value = serde_json::from_str(&sd_ok(sb, &["state", &id]).stdout).unwrap();
    let pid = st["pid"].as_i64().unwrap().to_string();
    assert!(
        file("cgroup.procs").lines().any(|l| l == pid),
        "init in the scope"
    );
    sd_ok(sb, &["start", &id]);
    // update: the unit's property and the file.
    sd_ok(sb, &["update", "--pids-limit", "60", &id]);
    assert_eq!(show(sb, m, &u, "TasksMax"), "60");
    assert_eq!(file("pids.max"), "60");
    // pause/resume, ps, exec through the scope's cgroup.
    sd_ok(sb, &["pause", &id]);
    assert_eq!(file("cgroup.freeze"), "1");
    sd_ok(sb, &["resume", &id]);
    assert_eq!(file("cgroup.freeze"), "0");
    let ps = sd_ok(sb, &["ps", "--format", "json", &id]).stdout;
    assert!(ps.contains(&pid), "ps: {ps}");
    let r = sd_ok(sb, &["exec", &id, "cat", "/proc/self/cgroup"]);
    assert_eq!(r.stdout.trim(), "0::/", "{r:?}");
    exec_into_a_sub_cgroup(sb, &scope, &id, &pid);
    // delete: no unit, no cgroup, no state.
    sd_ok(sb, &["delete", "--force", &id]);
    assert!(eventually(|| !unit_listed(sb, m, &u)), "unit {u} left");
    assert!(!scope.exists(), "cgroup {} left", scope.display());
    assert!(!sb.xdg.join("casulo").join(&id).exists(), "state dir left");
}

/// `exec --cgroup sub` into a sub-cgroup of the scope the user made from the host: the
/// caller is outside the user manager's subtree and may not move the process into it,
/// so the user manager does (AttachProcessesToUnit with the sub-cgroup).
fn exec_into_a_sub_cgroup(sb: &Sandbox, scope: &std::path::Path, id: &str, init: &str) {
    let sub = scope.join("sub");
    let r = sb.run_in(&sb.dir, &["mkdir", sub.to_str().unwrap()], &[]);
    assert_eq!(r.code, 0, "mkdir {} as the user: {r:?}", sub.display());
    let r = sd_ok(
        sb,
        &["exec", "--cgroup", "sub", id, "cat", "/proc/self/cgroup"],
    );
    assert_eq!(r.stdout.trim(), "0::/sub", "{r:?}");
    // From the host: a detached one is in the sub-cgroup's procs, the init is not.
    let sleep = "exec sleep 1000 </dev/null >/dev/null 2>&1";
    sd_ok(
        sb,
        &["exec", "-d", "--cgroup", "/sub", id, "sh", "-c", sleep],
    );
    let procs = std::fs::read_to_string(sub.join("cgroup.procs")).unwrap();
    let procs: Vec<&str> = procs.lines().collect();
    assert!(
        procs.len() == 1 && procs[0] != init,
        "the exec'd process alone in {}: {procs:?}",
        sub.display()
    );
}

/// Root in a user namespace of the user's (as rootless podman runs the runtime): the
/// bus knows it as the user (its uid from the socket), the same scope, nothing left.
fn from_a_user_namespace(sb: &Sandbox, m: &UserManager) {
    let mut b = limited(sb, &["/checker", "/config.json"]);
    sb.edit(&mut b, |v| {
        let one = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
        v["linux"]["uidMappings"] = one.clone();
        v["linux"]["gidMappings"] = one;
    });
    let argv = [
        "unshare",
        "--user",
        "--map-root-user",
        "--",
        sb.bin.to_str().unwrap(),
        "--systemd-cgroup",
        "run",
        "--bundle",
        dir(&b),
        &b.id(),
    ];
    let r = sb.run_in(&sb.dir, &argv, &[]);
    assert_eq!(r.code, 0, "run as root in the user's namespace: {r:?}");
    assert_checks(&r.stdout, CGROUP_CHECKS);
    assert!(eventually(|| !unit_listed(sb, m, &unit(&b))), "unit left");
    assert!(!m.cgroup().join("user.slice").join(unit(&b)).exists());
    assert!(
        !sb.xdg.join("casulo").join(b.id()).exists(),
        "state dir left"
    );
}
