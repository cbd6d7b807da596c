//! The process's security context end to end: capability sets as configured (read in
//! /proc/self/status inside the container), I/O priority, scheduler, personality,
//! LSM fields skipped on a host without that LSM, refused fields, bad input.

mod common;

use casulo_integration::Bundle;
use common::{edit, is_root, Env};
use serde_json::{json, Value};

/// Capability numbers (linux/capability.h) of the names the tests use.
fn cap_bit(name: &str) -> u64 {
    let n = match name {
        "CAP_CHOWN" => 0,
        "CAP_KILL" => 5,
        "CAP_SETUID" => 7,
        "CAP_NET_BIND_SERVICE" => 10,
        "CAP_NET_RAW" => 13,
        "CAP_SYS_TIME" => 25,
        "CAP_AUDIT_WRITE" => 29,
        other => panic!("unknown cap {other}"),
    };
    1 << n
}

fn mask(names: &[&str]) -> u64 {
    names.iter().map(|n| cap_bit(n)).fold(0, |a, b| a | b)
}

/// The five sets of the container process as /proc/self/status shows them.
fn caps_inside(env: &Env, b: &Bundle) -> [u64; 5] {
    let r = env.run_bundle(b);
    assert_eq!(r.code, 0, "{r:?}");
    let get = |key: &str| {
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} missing: {}", r.stdout));
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"].map(get)
}

fn set_caps(b: &mut Bundle, uid: u32, caps: Value) {
    edit(b, |v| {
        v["process"]["capabilities"] = caps;
        v["process"]["user"] = json!({"uid": uid, "gid": uid});
    });
}

#[test]
fn root_gets_exactly_the_configured_sets_and_no_inheritable() {
    if !is_root() {
        return;
    }
    let env = Env::new("caps-root");
    let mut b = Bundle::new(&["cat", "/proc/self/status"]);
    let set = ["CAP_CHOWN", "CAP_KILL", "CAP_SYS_TIME"];
    set_caps(
        &mut b,
        0,
        json!({"bounding": set, "effective": set, "permitted": set}),
    );
    let [inh, prm, eff, bnd, amb] = caps_inside(&env, &b);
    assert_eq!(inh, 0, "inheritable is never granted unless listed");
    assert_eq!(prm, mask(&set));
    assert_eq!(eff, mask(&set));
    assert_eq!(bnd, mask(&set));
    assert_eq!(amb, 0);
}

#[test]
fn non_root_user_keeps_listed_capabilities_through_ambient() {
    if !is_root() {
        return;
    }
    let env = Env::new("caps-user");
    let kept = ["CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let bounding = [
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_CHOWN",
        "CAP_NET_RAW",
    ];
    let mut b = Bundle::new(&["cat", "/proc/self/status"]);
    set_caps(
        &mut b,
        1000,
        json!({"bounding": bounding, "effective": kept, "permitted": kept,
               "inheritable": kept, "ambient": kept}),
    );
    let [inh, prm, eff, bnd, amb] = caps_inside(&env, &b);
    assert_eq!(
        [inh, prm, eff, bnd, amb],
        [
            mask(&kept),
            mask(&kept),
            mask(&kept),
            mask(&bounding),
            mask(&kept)
        ],
        "uid 1000 keeps exactly the listed sets"
    );

    // Without ambient (and inheritable) the kernel drops them at execve for a non-root
    // user: nothing is added to make them survive.
    let mut b = Bundle::new(&["cat", "/proc/self/status"]);
    set_caps(
        &mut b,
        1000,
        json!({"bounding": bounding, "effective": kept, "permitted": kept,
               "ambient": kept}),
    );
    let [inh, prm, eff, _, amb] = caps_inside(&env, &b);
    assert_eq!([inh, prm, eff, amb], [0, 0, 0, 0]);
}

// Unknown capability names are a warning, not an error: tests/capabilities.rs.

#[test]
fn io_priority_scheduler_and_personality_are_applied() {
    if !is_root() {
        return;
    }
    let env = Env::new("proc-fields");
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "/bin/busybox ionice -p $$; uname -m; cat /proc/self/stat",
    ]);
    edit(&mut b, |v| {
        v["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
        v["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
        v["linux"]["personality"] = json!({"domain": "LINUX32"});
    });
    let r = env.run_bundle(&b);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "best-effort: prio 6", "{r:?}");
    assert!(
        matches!(lines[1], "i686" | "i386"),
        "LINUX32 personality: {r:?}"
    );
    let stat: Vec<&str> = lines[2]
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // After the comm: field 3 is stat[0]; nice is field 19, policy field 41.
    assert_eq!(stat[19 - 3], "7", "nice: {}", lines[2]);
    assert_eq!(stat[41 - 3], "3", "SCHED_BATCH: {}", lines[2]);
}

#[test]
fn bad_process_fields_are_refused_by_name() {
    if !is_root() {
        return;
    }
    let env = Env::new("proc-bad");
    for (field, value, want) in [
        (
            "ioPriority",
            json!({"class": "IOPRIO_CLASS_BE", "priority": 9}),
            "process.ioPriority.priority",
        ),
        (
            "scheduler",
            json!({"policy": "SCHED_FIFO", "priority": 0}),
            "process.scheduler.priority",
        ),
        (
            "scheduler",
            json!({"policy": "SCHED_OTHER", "nice": 40}),
            "process.scheduler.nice",
        ),
    ] {
        let mut b = Bundle::new(&["true"]);
        edit(&mut b, |v| v["process"][field] = value);
        let r = env.create(&b);
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains(want), "want {want}: {}", r.stderr);
        env.assert_nothing_left(&b);
    }
}

#[test]
fn intel_rdt_without_resctrl_is_refused_clearly() {
    if !is_root() || std::path::Path::new("/sys/fs/resctrl/schemata").exists() {
        return;
    }
    let env = Env::new("rdt");
    let mut b = Bundle::new(&["true"]);
    edit(&mut b, |v| {
        v["linux"]["intelRdt"] = json!({"closID": "casulo"})
    });
    let r = env.create(&b);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("linux.intelRdt") && r.stderr.contains("resctrl"),
        "{}",
        r.stderr
    );
    env.assert_nothing_left(&b);
}

#[test]
fn lsm_fields_are_skipped_with_a_debug_line_when_the_lsm_is_off() {
    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.starts_with('Y'));
    let selinux = std::path::Path::new("/sys/fs/selinux/enforce").exists();
    if !is_root() || apparmor || selinux {
        return;
    }
    let env = Env::new("lsm");
    let mut b = Bundle::new(&["true"]);
    edit(&mut b, |v| {
        v["process"]["apparmorProfile"] = json!("casulo-test-profile");
        v["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c1,c2");
        v["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0:c1,c2");
    });
    let r = env.run(&[
        "--debug",
        "run",
        "--bundle",
        b.dir.to_str().unwrap(),
        &b.id(),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    for field in [
        "process.apparmorProfile",
        "process.selinuxLabel",
        "linux.mountLabel",
    ] {
        assert!(
            r.stderr
                .lines()
                .any(|l| l.contains("debug") && l.contains(field) && l.contains("not enabled")),
            "{field}: {}",
            r.stderr
        );
    }
}

#[test]
fn exec_applies_cpu_affinity_and_io_priority() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !is_root() || cpus < 2 {
        return;
    }
    let env = Env::new("exec-fields");
    let b = Bundle::new(&["sleep", "1000"]);
    env.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    env.ok(&["start", &b.id()]);
    let process = json!({
        "args": ["sh", "-c", "grep Cpus_allowed_list /proc/self/status; /bin/busybox ionice -p $$"],
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
        "execCPUAffinity": {"initial": "0", "final": "1"},
        "ioPriority": {"class": "IOPRIO_CLASS_IDLE"}
    });
    let path = b.dir.join("process.json");
    std::fs::write(&path, process.to_string()).unwrap();
    let r = env.ok(&["exec", "--process", path.to_str().unwrap(), &b.id()]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0].split_whitespace().nth(1), Some("1"), "{r:?}");
    assert_eq!(lines[1], "idle", "{r:?}");
    env.ok(&["delete", "--force", &b.id()]);
}
