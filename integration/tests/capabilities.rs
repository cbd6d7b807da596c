//! Issue 13 class 5, config.md "capabilities": a name that cannot be mapped or granted
//! "MUST be logged as a warning by the runtime. Runtimes SHOULD NOT fail". In any of the
//! five sets, in `exec --cap` and in `exec --process`: the container runs, the known
//! capabilities are granted, and the log holds one warning naming each value.

mod common;

use std::path::Path;

use casulo_integration::Bundle;
use common::{is_root, Env};
use serde_json::{json, Value};

const CAP_KILL: u64 = 1 << 5;
const CAP_SYS_TIME: u64 = 1 << 25;

/// The json log's warning lines.
fn warnings(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == "warning")
        .map(|v| v["msg"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn assert_one_warning_each(log: &Path, names: &[&str]) {
    let w = warnings(log);
    for n in names {
        let hits = w.iter().filter(|m| m.contains(&format!("\"{n}\""))).count();
        assert_eq!(hits, 1, "one warning naming {n}: {w:?}");
    }
}

/// A `CapXxx:` mask from /proc/self/status text.
fn mask(status: &str, key: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("{key} missing: {status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

fn logged(env: &Env, log: &Path, args: &[&str]) -> casulo_integration::Run {
    let mut all = vec!["--log", log.to_str().unwrap(), "--log-format", "json"];
    all.extend_from_slice(args);
    env.run(&all)
}

#[test]
fn unknown_capabilities_in_the_config_are_warnings() {
    if !is_root() {
        return;
    }
    let env = Env::new("caps-unknown-cfg");
    let b = Bundle::new(&["cat", "/proc/self/status"]);
    let mut raw = serde_json::to_value(&b.spec).unwrap();
    raw["process"]["capabilities"] = json!({
        "bounding": ["CAP_KILL", "CAP_BOGUS", "CAP_NOPE"],
        "effective": ["CAP_KILL", "CAP_BOGUS"],
        "permitted": ["CAP_BOGUS", "CAP_KILL"],
        "inheritable": ["CAP_INHERIT_NOPE"],
        "ambient": ["CAP_AMBIENT_NOPE"],
    });
    common::write_raw(&b, &raw);
    let log = env.root.with_extension("cfg.log");
    let id = b.id();
    let r = logged(
        &env,
        &log,
        &["run", "--bundle", b.dir.to_str().unwrap(), &id],
    );
    let _ = env.run(&["delete", "--force", &id]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(mask(&r.stdout, "CapEff:"), CAP_KILL, "{}", r.stdout);
    assert_eq!(mask(&r.stdout, "CapBnd:"), CAP_KILL, "{}", r.stdout);
    assert_eq!(mask(&r.stdout, "CapInh:"), 0, "{}", r.stdout);
    assert_one_warning_each(
        &log,
        &[
            "CAP_BOGUS",
            "CAP_NOPE",
            "CAP_INHERIT_NOPE",
            "CAP_AMBIENT_NOPE",
        ],
    );
    assert!(
        r.stderr.contains("warning") && r.stderr.contains("CAP_BOGUS"),
        "{r:?}"
    );
    let _ = std::fs::remove_file(&log);
}

#[test]
fn unknown_exec_caps_are_warnings() {
    if !is_root() {
        return;
    }
    let env = Env::new("caps-unknown-exec");
    let b = Bundle::new(&["sleep", "600"]);
    let id = b.id();
    assert_eq!(env.create(&b).code, 0);
    env.ok(&["start", &id]);
    let log = env.root.with_extension("exec.log");
    // --cap: the unknown one warned about, the known one granted.
    let r = logged(
        &env,
        &log,
        &[
            "exec",
            "--cap",
            "CAP_BOGUS",
            "--cap",
            "CAP_SYS_TIME",
            &id,
            "cat",
            "/proc/self/status",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let eff = mask(&r.stdout, "CapEff:");
    assert_eq!(eff & CAP_SYS_TIME, CAP_SYS_TIME, "{}", r.stdout);
    assert_one_warning_each(&log, &["CAP_BOGUS"]);
    let _ = std::fs::remove_file(&log);
    // --process with an unknown name in its sets.
    let process = json!({
        "args": ["cat", "/proc/self/status"],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/bin"],
        "capabilities": {
            "bounding": ["CAP_KILL", "CAP_PROC_NOPE"],
            "effective": ["CAP_KILL", "CAP_PROC_NOPE"],
            "permitted": ["CAP_KILL", "CAP_PROC_NOPE"],
        },
    });
    let pfile = b.dir.join("process.json");
    std::fs::write(&pfile, process.to_string()).unwrap();
    let r = logged(
        &env,
        &log,
        &["exec", "--process", pfile.to_str().unwrap(), &id],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(mask(&r.stdout, "CapEff:"), CAP_KILL, "{}", r.stdout);
    assert_one_warning_each(&log, &["CAP_PROC_NOPE"]);
    let _ = std::fs::remove_file(&log);
    env.ok(&["delete", "--force", &id]);
}
