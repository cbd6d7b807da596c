//! `delete --force` and `kill` of paused, frozen and racing containers (project issue 13,
//! class 9): a container paused by `casulo pause` or frozen from outside (v1
//! `freezer.state`, v2 `cgroup.freeze`) is thawed, killed and removed; `kill KILL` of a
//! frozen container really kills it; 20 concurrent `delete --force` of one id all
//! succeed; an `exec` racing a `delete --force` fails with one line saying the container
//! is gone. Every runtime call has a timeout, so a hang fails the test instead of CI.
//! Runs on the host's layout (v1/hybrid here) and in the pure cgroup v2 VM
//! (`scripts/test.d/v2vm.sh`).

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use casulo_integration::{casulo_bin, Bundle, Run};
use common::{eventually, Env};
use serde_json::Value;

fn root() -> bool {
    common::root_or_skip("force_delete")
}

/// Every hierarchy under /sys/fs/cgroup (the v2 root itself included).
fn cgroup_roots() -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(rd.flatten().map(|e| e.path()));
    }
    roots.retain(|r| r.join("cgroup.procs").exists());
    roots
}

fn cgroup_rel(b: &Bundle) -> String {
    let l = b.spec.linux().as_ref().unwrap();
    let p = l.cgroups_path().as_ref().unwrap().display().to_string();
    p.trim_start_matches('/').to_string()
}

/// The container's cgroup directories that exist, in every hierarchy.
fn cgroup_dirs(b: &Bundle) -> Vec<PathBuf> {
    let rel = cgroup_rel(b);
    cgroup_roots()
        .into_iter()
        .map(|r| r.join(&rel))
        .filter(|d| d.exists())
        .collect()
}

fn pure_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The ways to freeze a cgroup from outside this host has: (name, directory, file,
/// frozen value, thawed value).
fn freezers(
    b: &Bundle,
) -> Vec<(
    &'static str,
    PathBuf,
    &'static str,
    &'static str,
    &'static str,
)> {
    let rel = cgroup_rel(b);
    let mut out = Vec::new();
    if pure_v2() {
        out.push((
            "v2 cgroup.freeze",
            Path::new("/sys/fs/cgroup").join(&rel),
            "cgroup.freeze",
            "1",
            "0",
        ));
        return out;
    }
    if Path::new("/sys/fs/cgroup/freezer").exists() {
        out.push((
            "v1 freezer.state",
            Path::new("/sys/fs/cgroup/freezer").join(&rel),
            "freezer.state",
            "FROZEN",
            "THAWED",
        ));
    }
    let unified = Path::new("/sys/fs/cgroup/unified").join(&rel);
    if unified.join("cgroup.freeze").exists() {
        out.push((
            "hybrid unified cgroup.freeze",
            unified,
            "cgroup.freeze",
            "1",
            "0",
        ));
    }
    out
}

/// True once the freezer reports every task of the cgroup frozen.
fn is_frozen(dir: &Path, file: &str) -> bool {
    if file == "freezer.state" {
        return read(&dir.join(file)).trim() == "FROZEN";
    }
    read(&dir.join("cgroup.events"))
        .lines()
        .any(|l| l.trim() == "frozen 1")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// `casulo --root <root> <args>` with a timeout: a runtime that hangs is killed and the
/// run reported with code -2.
fn run_timeout(env: &Env, args: &[&str], timeout: Duration) -> Run {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let base = std::env::temp_dir().join(format!("casulo-fd-{}-{n}", std::process::id()));
    let (out_p, err_p) = (base.with_extension("out"), base.with_extension("err"));
    let mut child = Command::new(casulo_bin())
        .arg("--root")
        .arg(&env.root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_p).unwrap())
        .stderr(File::create(&err_p).unwrap())
        .spawn()
        .expect("spawn casulo");
    let end = Instant::now() + timeout;
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code().unwrap_or(-1);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break -2;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let take = |p: &Path| {
        let s = read(p);
        let _ = std::fs::remove_file(p);
        s
    };
    Run {
        code,
        stdout: take(&out_p),
        stderr: take(&err_p),
    }
}

const T: Duration = Duration::from_secs(20);

/// Thaws the container's cgroups on drop (before `Env` runs its `delete --force`), so a
/// failing test against a broken runtime leaves nothing frozen behind.
struct Thaw<'a>(&'a Bundle);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        for (_, dir, file, _, thawed) in freezers(self.0) {
            let _ = std::fs::write(dir.join(file), thawed);
        }
    }
}

/// A detached running container of `sh -c script`, and the host pids of its processes
/// once there are `n` of them.
fn running(env: &Env, script: &str, n: usize) -> (Bundle, Vec<i32>) {
    let b = Bundle::new(&["sh", "-c", script]);
    let r = run_timeout(
        env,
        &["run", "-d", "--bundle", b.dir.to_str().unwrap(), &b.id()],
        T,
    );
    assert_eq!(r.code, 0, "run -d: {r:?}");
    let mut pids = Vec::new();
    assert!(
        eventually(|| {
            let r = run_timeout(env, &["ps", "--format", "json", &b.id()], T);
            pids = serde_json::from_str(&r.stdout).unwrap_or_default();
            pids.len() == n
        }),
        "{n} processes in the container: {pids:?}"
    );
    (b, pids)
}

/// True once `pid` is gone or a zombie (its start time is kept to see a reused pid).
fn dead(pid: i32, start: Option<u64>) -> bool {
    match casulo_core::state::proc_stat(pid) {
        None => true,
        Some((st, t)) => st == 'Z' || st == 'X' || Some(t) != start,
    }
}

fn start_times(pids: &[i32]) -> Vec<(i32, Option<u64>)> {
    pids.iter()
        .map(|&p| (p, casulo_core::state::proc_stat(p).map(|(_, t)| t)))
        .collect()
}

fn status(env: &Env, id: &str) -> String {
    let r = run_timeout(env, &["state", id], T);
    serde_json::from_str::<Value>(&r.stdout)
        .map(|v| v["status"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// `delete --force` succeeded and left nothing: no state, no cgroup, no process.
fn assert_deleted(env: &Env, b: &Bundle, r: &Run, procs: &[(i32, Option<u64>)], what: &str) {
    assert_eq!(
        r.code, 0,
        "{what}: delete --force must succeed in time: {r:?}"
    );
    assert_eq!(r.stderr, "", "{what}: delete --force says nothing: {r:?}");
    assert!(
        !env.root.join(b.id()).exists(),
        "{what}: the state dir is removed"
    );
    assert_eq!(
        cgroup_dirs(b),
        Vec::<PathBuf>::new(),
        "{what}: every cgroup dir is removed"
    );
    for &(p, t) in procs {
        assert!(
            eventually(|| dead(p, t)),
            "{what}: process {p} of the container is dead"
        );
    }
}

#[test]
fn delete_force_of_a_paused_container_thaws_kills_and_removes_it() {
    if !root() {
        return;
    }
    let env = Env::new("fd-paused");
    let (b, pids) = running(&env, "sleep 1000 & sleep 1000 & wait", 3);
    let _thaw = Thaw(&b);
    let procs = start_times(&pids);
    let r = run_timeout(&env, &["pause", &b.id()], T);
    assert_eq!(r.code, 0, "pause: {r:?}");
    assert_eq!(status(&env, &b.id()), "paused");
    let r = run_timeout(&env, &["delete", "--force", &b.id()], T);
    assert_deleted(&env, &b, &r, &procs, "paused");
}

#[test]
fn delete_force_of_a_container_frozen_from_outside_thaws_kills_and_removes_it() {
    if !root() {
        return;
    }
    let env = Env::new("fd-frozen");
    let probe = Bundle::new(&["true"]);
    let ways = freezers(&probe).len();
    assert!(ways > 0, "no cgroup freezer on this host");
    for i in 0..ways {
        let (b, pids) = running(&env, "sleep 1000 & wait", 2);
        let _thaw = Thaw(&b);
        let procs = start_times(&pids);
        let (name, dir, file, frozen, _) = freezers(&b).swap_remove(i);
        std::fs::write(dir.join(file), frozen).unwrap();
        assert!(
            eventually(|| is_frozen(&dir, file)),
            "{name}: the cgroup freezes"
        );
        let r = run_timeout(&env, &["delete", "--force", &b.id()], T);
        assert_deleted(&env, &b, &r, &procs, name);
    }
}

#[test]
fn kill_9_of_a_frozen_container_kills_it() {
    if !root() {
        return;
    }
    let env = Env::new("fd-kill");
    // Paused by casulo: SIGKILL to the init.
    let (b, pids) = running(&env, "sleep 1000 & wait", 2);
    let _thaw = Thaw(&b);
    let procs = start_times(&pids);
    let st: Value =
        serde_json::from_str(&run_timeout(&env, &["state", &b.id()], T).stdout).unwrap();
    let init = st["pid"].as_i64().unwrap() as i32;
    let init_start = casulo_core::state::proc_stat(init).map(|(_, t)| t);
    assert_eq!(run_timeout(&env, &["pause", &b.id()], T).code, 0);
    let r = run_timeout(&env, &["kill", &b.id(), "KILL"], T);
    assert_eq!(r.code, 0, "kill KILL of a paused container: {r:?}");
    assert!(
        eventually(|| dead(init, init_start)),
        "the paused container's init really dies"
    );
    assert!(eventually(|| status(&env, &b.id()) == "stopped"));
    let r = run_timeout(&env, &["delete", &b.id()], T);
    assert_deleted(&env, &b, &r, &procs, "after kill KILL");

    // Frozen from outside: a signal other than KILL keeps it frozen, `kill --all KILL`
    // kills every process.
    let (b, pids) = running(&env, "sleep 1000 & wait", 2);
    let _thaw2 = Thaw(&b);
    let procs = start_times(&pids);
    let (name, dir, file, frozen, _) = freezers(&b).swap_remove(0);
    std::fs::write(dir.join(file), frozen).unwrap();
    assert!(eventually(|| is_frozen(&dir, file)), "{name}: frozen");
    let r = run_timeout(&env, &["kill", "--all", &b.id(), "WINCH"], T);
    assert_eq!(
        r.code, 0,
        "{name}: kill --all WINCH of a frozen container: {r:?}"
    );
    assert!(
        is_frozen(&dir, file),
        "{name}: a signal other than KILL leaves a frozen container frozen"
    );
    let r = run_timeout(&env, &["kill", "--all", &b.id(), "9"], T);
    assert_eq!(
        r.code, 0,
        "{name}: kill --all 9 of a frozen container: {r:?}"
    );
    for &(p, t) in &procs {
        assert!(
            eventually(|| dead(p, t)),
            "{name}: process {p} of the frozen container really dies"
        );
    }
    assert!(eventually(|| status(&env, &b.id()) == "stopped"));
    let r = run_timeout(&env, &["delete", &b.id()], T);
    assert_deleted(&env, &b, &r, &procs, "after kill --all 9");
}

#[test]
fn concurrent_force_deletes_of_one_id_all_succeed() {
    if !root() {
        return;
    }
    let env = Env::new("fd-many");
    for paused in [false, true] {
        let (b, pids) = running(&env, "sleep 1000 & wait", 2);
        let _thaw = Thaw(&b);
        let procs = start_times(&pids);
        if paused {
            assert_eq!(run_timeout(&env, &["pause", &b.id()], T).code, 0);
        }
        let id = b.id();
        let runs: Vec<Run> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..20)
                .map(|_| s.spawn(|| run_timeout(&env, &["delete", "--force", &id], T)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in &runs {
            assert_deleted(&env, &b, r, &procs, &format!("20 at once, paused {paused}"));
        }
    }
}

/// True for the one-line texts that say the container is gone.
fn says_gone(stderr: &str, id: &str) -> bool {
    let line = stderr.trim_end();
    !line.contains('\n')
        && line.contains(id)
        && (line.contains("does not exist") || line.contains("container not running"))
}

#[test]
fn exec_racing_delete_force_fails_saying_the_container_is_gone() {
    if !root() {
        return;
    }
    let env = Env::new("fd-exec");
    let mut bad = Vec::new();
    let mut failed = 0;
    for round in 0..6 {
        let (b, _) = running(&env, "sleep 1000 & wait", 2);
        let id = b.id();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let runs: Vec<Run> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        // Execs until one fails after the delete began (at most 40).
                        for _ in 0..40 {
                            let r = run_timeout(&env, &["exec", &id, "true"], T);
                            let done =
                                r.code != 0 && stop.load(std::sync::atomic::Ordering::SeqCst);
                            out.push(r);
                            if done {
                                break;
                            }
                        }
                        out
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(100 + 70 * round));
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            let d = run_timeout(&env, &["delete", "--force", &id], T);
            assert_eq!(d.code, 0, "delete --force during execs: {d:?}");
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        for r in runs {
            // Ran to the end, or was killed by the delete (SIGKILL: 137).
            if r.code == 0 || (r.code == 137 && r.stderr.is_empty()) {
                continue;
            }
            failed += 1;
            if !says_gone(&r.stderr, &id) {
                bad.push(r);
            }
        }
    }
    assert!(failed > 0, "some exec raced the delete");
    assert!(
        bad.is_empty(),
        "an exec racing delete --force fails with one line saying the container is gone: \
         {bad:#?}"
    );
}
