//! Differential test: the same bundles under Debian's runc and under casulo give the
//! same state fields, exit codes and in-container observations.

use std::path::Path;

use casulo_integration::{casulo_bin, runtime, TestEnv};
use serde_json::{json, Value};

const RUNC: &str = "/usr/sbin/runc";

/// What a process sees, without numbers that differ between any two runs.
const PROBE: &str = "id; hostname; umask; grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; ulimit -n; \
     awk '{print $5, $9}' /proc/self/mountinfo | grep -v '^/sys/fs/cgroup' | sort; ls -ln /dev | awk '{print $1, $3, $4, $5, $6, $10}' | sort; \
     ls /proc/self/fd | wc -l; cat /proc/self/oom_score_adj; pwd";

fn variants() -> Vec<(&'static str, Value)> {
    vec![
        ("default", json!({})),
        (
            "user",
            json!({"process": {"user": {"uid": 1000, "gid": 1000, "additionalGids": [20]}}}),
        ),
        (
            "umask-rlimit",
            json!({"process": {"user": {"uid": 0, "gid": 0, "umask": 18}, "rlimits": [{"type":"RLIMIT_NOFILE","soft":100,"hard":200}]}}),
        ),
        (
            "rw-root",
            json!({"root": {"path": "rootfs", "readonly": false}}),
        ),
        (
            "exit-code",
            json!({"process": {"args": ["sh", "-c", "exit 42"]}}),
        ),
        ("cwd", json!({"process": {"cwd": "/tmp"}})),
        ("oom", json!({"process": {"oomScoreAdj": 300}})),
    ]
}

fn merge(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                merge(d.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (d, s) => *d = s.clone(),
    }
}

#[test]
fn runc_and_casulo_agree() {
    if !casulo_integration::prereq::root() {
        return;
    }
    if !Path::new(RUNC).exists() {
        casulo_integration::prereq::skip(&format!("{RUNC} is not installed"));
        return;
    }
    let env = TestEnv::new("diff");
    for (name, patch) in variants() {
        let mut seen = Vec::new();
        for rt in [Path::new(RUNC).to_path_buf(), casulo_bin()] {
            let mut b = env.bundle(&["sh", "-c", PROBE]);
            let mut v = serde_json::to_value(&b.spec).unwrap();
            merge(&mut v, &patch);
            b.spec = serde_json::from_value(v).unwrap();
            b.write_config();
            let root = env.root.join(rt.file_name().unwrap());
            let r = runtime(
                &rt,
                &root,
                &["run", "--bundle", b.dir.to_str().unwrap(), &b.id()],
            );
            let _ = runtime(&rt, &root, &["delete", "--force", &b.id()]);
            seen.push((r.code, r.stdout));
        }
        assert_eq!(seen[0].0, seen[1].0, "{name}: exit codes (runc, casulo)");
        if name != "exit-code" {
            assert!(
                seen[1].1.contains("uid=") && seen[1].1.lines().count() > 20,
                "{name}: probe ran: {}",
                seen[1].1
            );
        }
        assert_eq!(
            seen[0].1, seen[1].1,
            "{name}: in-container observations (runc vs casulo)"
        );
    }

    // State fields through the lifecycle.
    let mut states = Vec::new();
    for rt in [Path::new(RUNC).to_path_buf(), casulo_bin()] {
        let b = env.bundle(&["sleep", "100"]);
        let root = env.root.join(rt.file_name().unwrap());
        let id = b.id();
        let state = |root: &Path| -> Value {
            serde_json::from_str(&runtime(&rt, root, &["state", &id]).stdout).unwrap_or(Value::Null)
        };
        assert_eq!(
            runtime(
                &rt,
                &root,
                &["create", "--bundle", b.dir.to_str().unwrap(), &id]
            )
            .code,
            0
        );
        let created = state(&root);
        assert_eq!(runtime(&rt, &root, &["start", &id]).code, 0);
        let running = state(&root);
        assert_eq!(runtime(&rt, &root, &["kill", &id, "KILL"]).code, 0);
        assert!(casulo_integration::cli::eventually(|| state(&root)
            ["status"]
            == "stopped"));
        let stopped = state(&root);
        let missing = runtime(&rt, &root, &["delete", &id]).code;
        let gone = runtime(&rt, &root, &["state", &id]).code;
        let force_missing = runtime(&rt, &root, &["delete", "--force", &id]).code;
        let keys = |v: &Value| {
            let mut k: Vec<String> = v
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            k.sort();
            k
        };
        states.push((
            keys(&created),
            created["status"].clone(),
            running["status"].clone(),
            stopped["status"].clone(),
            stopped["pid"].clone(),
            created["bundle"] == json!(b.dir.to_str().unwrap()),
            missing,
            gone != 0,
            force_missing,
        ));
    }
    assert_eq!(
        states[0], states[1],
        "state fields and exit codes (runc, casulo)"
    );
}
