//! CVE-2019-5736 with CAP_SYS_PTRACE (issue 12.2): a container process that may ptrace
//! (so non-dumpable does not stop it) holds `/proc/<pid>/exe` of every runtime process
//! it can see, waits for it to go away and writes through `/proc/self/fd/N`. The runtime
//! used is a private copy of the casulo binary, never the installed or target one; it
//! must come out unchanged, and the attacker must have held at least one runtime process
//! (else the test proves nothing).

mod common;

use std::path::{Path, PathBuf};

use casulo_integration::{casulo_bin, runtime, Bundle, Run};
use common::{edit, host_dir, is_root, Env};
use serde_json::json;

const CAPS: [&str; 5] = [
    "bounding",
    "effective",
    "permitted",
    "inheritable",
    "ambient",
];

/// A copy of the casulo binary in a directory of its own, removed on drop.
struct Copy {
    dir: PathBuf,
    bin: PathBuf,
    original: Vec<u8>,
}

impl Copy {
    fn new(name: &str) -> Copy {
        let dir =
            std::env::temp_dir().join(format!("casulo-cve-exe-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("casulo");
        std::fs::copy(casulo_bin(), &bin).unwrap();
        let original = std::fs::read(&bin).unwrap();
        Copy { dir, bin, original }
    }
    /// Runs the copy; a copy that cannot be executed any more (overwritten, or open for
    /// writing by the attacker: ETXTBSY) is a failed run, not a panic.
    fn run(&self, env: &Env, args: &[&str]) -> Run {
        let out = self.dir.join("out");
        let err = self.dir.join("err");
        let status = std::process::Command::new(&self.bin)
            .arg("--root")
            .arg(&env.root)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        match status {
            Ok(s) => Run {
                code: s.code().unwrap_or(-1),
                stdout: read(&out),
                stderr: read(&err),
            },
            Err(e) => Run {
                code: -1,
                stdout: String::new(),
                stderr: format!("spawn {}: {e}", self.bin.display()),
            },
        }
    }
    fn unchanged(&self) -> bool {
        std::fs::read(&self.bin).ok().as_deref() == Some(&self.original[..])
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The attacker's container: `/checker --grab-exe /out` with CAP_SYS_PTRACE in all five
/// sets; returns it and the host side of `/out`.
fn attacker() -> (Bundle, PathBuf) {
    let mut b = Bundle::new(&["/checker", "--grab-exe", "/out"]);
    let out = host_dir(&b, "out");
    let d = out.to_str().unwrap().to_string();
    edit(&mut b, |v| {
        v["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/out", "type": "bind", "source": d, "options": ["rbind"]}),
        );
        for set in CAPS {
            let caps = &mut v["process"]["capabilities"][set];
            if !caps.is_array() {
                *caps = json!([]);
            }
            caps.as_array_mut().unwrap().push(json!("CAP_SYS_PTRACE"));
        }
    });
    (b, out)
}

fn start(copy: &Copy, env: &Env, b: &Bundle) -> i64 {
    let r = copy.run(
        env,
        &["create", "--bundle", b.dir.to_str().unwrap(), &b.id()],
    );
    assert_eq!(r.code, 0, "create of the attacker: {r:?}");
    let r = copy.run(env, &["start", &b.id()]);
    assert_eq!(r.code, 0, "start of the attacker: {r:?}");
    let st: serde_json::Value =
        serde_json::from_str(&copy.run(env, &["state", &b.id()]).stdout).unwrap();
    st["pid"].as_i64().unwrap()
}

/// Lets the attacker finish its pending writes, stops it and checks the outcome.
fn verdict(copy: &Copy, env: &Env, b: &Bundle, out: &Path, failures: Vec<String>) {
    // A write waits for the file to stop being busy (retried for up to 5 s).
    std::thread::sleep(std::time::Duration::from_secs(6));
    let _ = runtime(&casulo_bin(), &env.root, &["delete", "--force", &b.id()]);
    let report = std::fs::read_to_string(out.join("report")).unwrap_or_default();
    let held = report.lines().filter(|l| l.starts_with("held ")).count();
    eprintln!("attacker report:\n{report}");
    assert!(
        copy.unchanged(),
        "the runtime binary was overwritten:\n{report}"
    );
    assert!(
        !report.lines().any(|l| l.starts_with("wrote ")),
        "the attacker wrote to a runtime binary:\n{report}"
    );
    assert!(
        held > 0,
        "the attacker never held a runtime process: the test proved nothing"
    );
    assert!(
        failures.is_empty(),
        "runtime commands failed: {failures:#?}"
    );
}

#[test]
fn cve_2019_5736_ptrace_capable_container_cannot_overwrite_runtime_through_exec() {
    if !is_root() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "needs root");
        return;
    }
    let env = Env::new("cve-exe-exec");
    let copy = Copy::new("exec");
    let (b, out) = attacker();
    start(&copy, &env, &b);
    let mut failures = Vec::new();
    for i in 0..30 {
        if !copy.unchanged() {
            break;
        }
        let r = copy.run(&env, &["exec", &b.id(), "true"]);
        if r.code != 0 {
            failures.push(format!("exec {i}: {r:?}"));
        }
    }
    verdict(&copy, &env, &b, &out, failures);
}

#[test]
fn cve_2019_5736_ptrace_capable_container_cannot_overwrite_runtime_through_joined_pidns() {
    if !is_root() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "needs root");
        return;
    }
    let env = Env::new("cve-exe-pidns");
    let copy = Copy::new("pidns");
    let (b, out) = attacker();
    let pid = start(&copy, &env, &b);
    let pidns = format!("/proc/{pid}/ns/pid");
    let mut failures = Vec::new();
    for i in 0..30 {
        if !copy.unchanged() {
            break;
        }
        let mut j = Bundle::new(&["true"]);
        edit(&mut j, |v| {
            for ns in v["linux"]["namespaces"].as_array_mut().unwrap() {
                if ns["type"] == "pid" {
                    ns["path"] = json!(pidns);
                }
            }
        });
        let dir = j.dir.to_str().unwrap().to_string();
        for args in [
            vec!["create", "--bundle", &dir, &j.id()],
            vec!["start", &j.id()],
        ] {
            let r = copy.run(&env, &args);
            if r.code != 0 {
                failures.push(format!("container {i}: {args:?}: {r:?}"));
            }
        }
        // The joined container's init ran `true`; wait for it before deleting.
        let _ = common::eventually(|| {
            let st = copy.run(&env, &["state", &j.id()]);
            st.stdout.contains("stopped") || st.code != 0
        });
        let _ = copy.run(&env, &["delete", "--force", &j.id()]);
    }
    verdict(&copy, &env, &b, &out, failures);
}
