//! Tests against REAL cgroups (run as root: `cargo test -p casulo-core`).
//!
//! Every test works under its own parent `/casulo-test-<pid>-<n>` and removes
//! it; no other cgroup is touched. Processes started here are killed by pid.
//! Works on v1, hybrid and pure v2 hosts (files are chosen by layout).
//!
//! Pure v2 in a throwaway VM (needs `apt-get install --no-install-recommends
//! qemu-system-x86 busybox-static`):
//! ```text
//! export CARGO_TARGET_DIR=/work/target-cgroups
//! cargo test -p casulo-core --no-run   # prints the test binaries' paths
//! /work/shared/tools/run-in-v2vm.sh -s /work/wt-cgroups -s /work/target-cgroups -- \
//!     sh -c '/work/target-cgroups/debug/deps/cgroups_real-<hash> && \
//!            /work/target-cgroups/debug/deps/casulo_core-<hash>'
//! ```

mod support;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};
use support::fixture::{res, wait_timeout, Fixture};
use support::{skip, usable};

use casulo_core::cgroups::{self, Layout};

#[test]
fn limits_are_written_and_updated_live() {
    if !usable() {
        return;
    }
    let mut f = Fixture::new();
    f.cg.create(Some(&res(
        r#"{"memory":{"limit":67108864},"cpu":{"shares":512,"quota":50000,"period":100000},
                "pids":{"limit":50}}"#,
    )))
    .expect("create");
    let i = f.spawn_gated("sleep 30");
    let v2 = f.cg.layout() == Layout::V2;
    if v2 {
        assert_eq!(f.read("", "memory.max"), "67108864");
        assert_eq!(f.read("", "cpu.max"), "50000 100000");
        assert_eq!(
            f.read("", "cpu.weight"),
            cgroups::shares_to_weight(512).to_string()
        );
    } else {
        assert_eq!(f.read("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(f.read("cpu", "cpu.shares"), "512");
        assert_eq!(f.read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(f.read("cpu", "cpu.cfs_period_us"), "100000");
    }
    assert_eq!(f.read("pids", "pids.max"), "50");
    let pid = f.children[i].id() as i32;
    assert!(f.cg.pids().unwrap().contains(&pid));
    if f.cg.layout() == Layout::Hybrid {
        // Also joined in the unified hierarchy.
        let p = Path::new("/sys/fs/cgroup/unified").join(f.cg.path().trim_start_matches('/'));
        let procs = std::fs::read_to_string(p.join("cgroup.procs")).unwrap();
        assert!(procs.lines().any(|l| l == pid.to_string()));
    }

    // Update live, with checkBeforeUpdate on.
    f.cg
        .update(&res(
            r#"{"memory":{"limit":134217728,"checkBeforeUpdate":true},"cpu":{"quota":20000},"pids":{"limit":-1}}"#,
        ))
        .expect("update");
    if v2 {
        assert_eq!(f.read("", "memory.max"), "134217728");
        assert_eq!(f.read("", "cpu.max"), "20000 100000");
    } else {
        assert_eq!(f.read("memory", "memory.limit_in_bytes"), "134217728");
        assert_eq!(f.read("cpu", "cpu.cfs_quota_us"), "20000");
    }
    assert_eq!(f.read("pids", "pids.max"), "max");
    // A limit below current usage is refused with checkBeforeUpdate.
    let j = f.spawn_gated("x=$(head -c 3000000 /dev/zero | tr '\\0' a); echo ready; sleep 30");
    f.release(j);
    let mut line = [0u8; 6];
    f.children[j]
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut line)
        .unwrap();
    let e =
        f.cg.update(&res(
            r#"{"memory":{"limit":1048576,"checkBeforeUpdate":true}}"#,
        ))
        .unwrap_err();
    assert!(
        e.to_string().contains("linux.resources.memory.limit"),
        "{e}"
    );

    let s = f.cg.stats().expect("stats");
    assert!(s.pids.current >= 1);
    assert_eq!(s.memory.usage.limit, 134_217_728);
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["cpu"]["throttling"].is_object());
}

#[test]
fn pids_limit_makes_fork_fail() {
    if !usable() {
        return;
    }
    let mut f = Fixture::new();
    f.cg.create(Some(&res(r#"{"pids":{"limit":2}}"#)))
        .expect("create");
    let i = f.spawn_gated("sleep 20 & sleep 20 & sleep 20 & echo spawned; wait");
    f.release(i);
    std::thread::sleep(Duration::from_millis(300));
    let n = f.cg.pids().unwrap().len();
    assert!(n <= 2, "{n} tasks with pids.max=2");
    f.cg.kill_all(libc::SIGKILL).unwrap();
    let (_, err) = f.output(i);
    assert!(
        err.to_lowercase().contains("fork") || err.contains("Resource temporarily unavailable"),
        "stderr: {err}"
    );
}

#[test]
fn device_rules_deny_and_allow() {
    if !usable() {
        return;
    }
    let mut f = Fixture::new();
    f.cg.create(Some(&res(r#"{"devices":[{"allow":false,"access":"rwm"},
                {"allow":false,"type":"c","major":1,"minor":5,"access":"rwm"}]}"#)))
        .expect("create");
    let i = f.spawn_gated("cat /dev/null && echo null-ok; head -c 1 /dev/zero | wc -c");
    f.release(i);
    let (out, err) = f.output(i);
    assert!(out.contains("null-ok"), "stdout: {out} stderr: {err}");
    assert!(err.contains("Operation not permitted"), "stderr: {err}");

    // Whitelist to whitelist (incremental on v1): allow /dev/zero again.
    f.cg.update(&res(
        r#"{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":5,"access":"rwm"}]}"#,
    ))
    .expect("update");
    if f.cg.layout() != Layout::V2 {
        let list = f.read("devices", "devices.list");
        assert!(
            list.lines().any(|l| l == "c 1:5 rwm"),
            "devices.list: {list}"
        );
        assert!(!list.contains("a *:*"), "devices.list: {list}");
    }
    let i = f.spawn_gated("head -c 1 /dev/zero | wc -c");
    f.release(i);
    let (out, err) = f.output(i);
    assert_eq!(out.trim(), "1", "stderr: {err}");

    // Allowing everything again through update.
    f.cg.update(&res(r#"{"devices":[{"allow":true,"access":"rwm"}]}"#))
        .expect("update");
    let i = f.spawn_gated("head -c 1 /dev/zero | wc -c");
    f.release(i);
    let (out, err) = f.output(i);
    assert_eq!(out.trim(), "1", "stderr: {err}");
}

fn counter(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn freeze_stops_progress_and_thaw_resumes() {
    if !usable() {
        return;
    }
    let mut f = Fixture::new();
    f.cg.create(None).expect("create");
    // The parent's last component: under a CASULO_TEST_CGROUP_BASE it has directories.
    let name = f.parent.rsplit('/').next().unwrap_or_default();
    let file = std::env::temp_dir().join(format!("{name}-counter"));
    let i = f.spawn_gated(&format!(
        "i=0; while :; do i=$((i+1)); echo $i > {}; sleep 0.02; done",
        file.display()
    ));
    f.release(i);
    let end = Instant::now() + Duration::from_secs(10);
    while counter(&file) < 2 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(counter(&file) >= 2, "counter never started");
    f.cg.freeze(true).expect("freeze");
    assert!(f.cg.frozen().unwrap());
    let a = counter(&file);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(counter(&file), a, "counter advanced while frozen");
    f.cg.freeze(false).expect("thaw");
    assert!(!f.cg.frozen().unwrap());
    let end = Instant::now() + Duration::from_secs(10);
    while counter(&file) <= a && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(counter(&file) > a, "counter did not resume after thaw");
    let _ = std::fs::remove_file(&file);
}

#[test]
fn kill_all_kills_every_process() {
    if !usable() {
        return;
    }
    let mut f = Fixture::new();
    f.cg.create(None).expect("create");
    let a = f.spawn_gated("sleep 30");
    let b = f.spawn_gated("sleep 30 & wait");
    f.release(b);
    // The background sleep takes a while to fork on a slow (emulated) machine.
    let end = Instant::now() + Duration::from_secs(10);
    while f.cg.pids().unwrap().len() < 3 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(f.cg.pids().unwrap().len() >= 3);
    f.cg.kill_all(libc::SIGTERM).expect("kill_all TERM");
    for i in [a, b] {
        let st = wait_timeout(&mut f.children[i], Duration::from_secs(5)).expect("child exited");
        assert!(!st.success());
    }
    let end = Instant::now() + Duration::from_secs(5);
    while !f.cg.pids().unwrap().is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(f.cg.pids().unwrap().is_empty());

    let c = f.spawn_gated("sleep 30");
    f.cg.kill_all(libc::SIGKILL).expect("kill_all KILL");
    let st = wait_timeout(&mut f.children[c], Duration::from_secs(5)).expect("child exited");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL));
}

#[test]
fn destroy_removes_every_dir() {
    if !usable() {
        return;
    }
    let mut f = Fixture::new();
    f.cg.create(Some(&res(r#"{"cpu":{"cpus":"0"}}"#)))
        .expect("create");
    let dirs = f.all_dirs();
    assert!(dirs.iter().all(|d| d.exists()), "{dirs:?}");
    if f.cg.layout() != Layout::V2 {
        assert_eq!(f.read("cpuset", "cpuset.cpus"), "0");
        assert!(
            !f.read("cpuset", "cpuset.mems").is_empty(),
            "mems copied from the parent"
        );
    }
    let i = f.spawn_gated("sleep 30");
    f.children[i].kill().unwrap();
    f.children[i].wait().unwrap();
    f.cg.destroy().expect("destroy");
    for d in &dirs {
        assert!(!d.exists(), "{} still exists", d.display());
    }
}

#[test]
fn bad_input_creates_nothing_and_missing_controllers_are_named() {
    if !usable() {
        return;
    }
    let f = Fixture::new();
    let e =
        f.cg.create(Some(&res(r#"{"cpu":{"period":0}}"#)))
            .unwrap_err();
    assert_eq!(e.to_string(), "linux.resources.cpu.period: must be > 0");
    assert!(f.all_dirs().iter().all(|d| !d.exists()));

    let net = Path::new("/sys/fs/cgroup/net_cls");
    if f.cg.layout() == Layout::V2 || !net.exists() {
        let e =
            f.cg.create(Some(&res(r#"{"network":{"classID":42}}"#)))
                .unwrap_err();
        assert!(e.to_string().contains("linux.resources.network"), "{e}");
        assert!(
            f.all_dirs().iter().all(|d| !d.exists()),
            "cleaned up after failure"
        );
    }
}

#[test]
fn relative_and_default_paths() {
    if !usable() {
        return;
    }
    let p = cgroups::resolve_path(Some("casulo-test-rel/x"), "id").unwrap();
    assert!(
        p.starts_with('/') && p.ends_with("/casulo-test-rel/x"),
        "{p}"
    );
    let d = cgroups::resolve_path(None, "casulo-id").unwrap();
    assert!(d.starts_with('/') && d.ends_with("/casulo-id"), "{d}");
    let e = cgroups::resolve_path(Some("system.slice:casulo:abc"), "abc").unwrap_err();
    assert!(e.to_string().contains("systemd"), "{e}");
    assert!(cgroups::open("relative").is_err());
}

#[test]
fn self_join_covers_every_hierarchy() {
    if !usable() {
        return;
    }
    let f = Fixture::new();
    f.cg.create(None).expect("create");
    let j = f.cg.self_join().expect("self_join on a fresh cgroup");
    // CLONE_INTO_CGROUP into the cgroup2 part (v2, hybrid's unified), `tasks` of
    // each v1 hierarchy: one file per distinct hierarchy, each in this cgroup.
    assert_eq!(j.into.is_some(), f.cg.layout() != Layout::V1);
    let mut roots: Vec<String> = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("0::"))
        .map(String::from)
        .collect();
    roots.dedup();
    assert_eq!(j.tasks.len(), roots.len(), "{:?}", j.tasks);
    for (path, _) in &j.tasks {
        assert!(path.ends_with("tasks"), "{}", path.display());
        assert!(path.parent().unwrap().is_dir(), "{}", path.display());
        assert!(
            path.to_string_lossy()
                .contains(f.cg.path().trim_start_matches('/')),
            "{} not under {}",
            path.display(),
            f.cg.path()
        );
    }
}

#[test]
fn missing_files_are_named_only_when_asked() {
    if !usable() {
        return;
    }
    let f = Fixture::new();
    if f.cg.layout() == Layout::V2 {
        // v2 has no leaf weight at all: asked for, it is refused by name.
        let e =
            f.cg.create(Some(&res(r#"{"blockIO":{"leafWeight":500}}"#)))
                .unwrap_err();
        assert!(
            e.to_string().contains("linux.resources.blockIO.leafWeight"),
            "{e}"
        );
        return;
    }
    // Nothing asked of leafWeight: fine even where the file is missing.
    f.cg.create(Some(&res(r#"{"blockIO":{"weight":500}}"#)))
        .expect("create");
    let leaf = f.dir("blkio");
    let w = ["blkio.weight", "blkio.bfq.weight"]
        .iter()
        .find_map(|n| std::fs::read_to_string(leaf.join(n)).ok())
        .unwrap_or_default();
    let has_leaf_weight = leaf.join("blkio.leaf_weight").exists();
    f.cg.destroy().unwrap();
    if !w.is_empty() {
        assert!(w.trim().ends_with("500"), "weight file reads {w:?}");
    }
    if !has_leaf_weight {
        let e =
            f.cg.create(Some(&res(r#"{"blockIO":{"leafWeight":500}}"#)))
                .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("linux.resources.blockIO.leafWeight") && s.contains("blkio.leaf_weight"),
            "{s}"
        );
        assert!(
            f.all_dirs().iter().all(|d| !d.exists()),
            "cleaned up after failure"
        );
    }
}

#[test]
fn hugetlb_limit_where_available() {
    if !usable() {
        return;
    }
    let sizes = cgroups::stats::hugepage_sizes();
    let Some(size) = sizes.first() else {
        skip("no hugepage sizes on this kernel", false);
        return;
    };
    let f = Fixture::new();
    let (file, ok) = match f.cg.layout() {
        Layout::V2 => (format!("hugetlb.{size}.max"), true),
        _ if Path::new("/sys/fs/cgroup/hugetlb").exists() => {
            (format!("hugetlb.{size}.limit_in_bytes"), true)
        }
        _ => {
            // Hybrid: only when the unified root already delegates hugetlb
            // (tests never change cgroups they did not create).
            let sc = std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.subtree_control")
                .unwrap_or_default();
            (
                format!("hugetlb.{size}.max"),
                sc.split_whitespace().any(|c| c == "hugetlb"),
            )
        }
    };
    if !ok {
        skip("hugetlb is not delegated on this host", false);
        return;
    }
    let json = format!(
        r#"{{"hugepageLimits":[{{"pageSize":"{size}","limit":{}}}]}}"#,
        4u64 << 30
    );
    f.cg.create(Some(&res(&json))).expect("create");
    let dir = match f.cg.layout() {
        Layout::V1 if Path::new("/sys/fs/cgroup/hugetlb").exists() => f.dir("hugetlb"),
        Layout::Hybrid if Path::new("/sys/fs/cgroup/hugetlb").exists() => f.dir("hugetlb"),
        Layout::Hybrid => f.dir("unified"),
        _ => f.dir(""),
    };
    let v = std::fs::read_to_string(dir.join(&file)).unwrap();
    assert_eq!(v.trim().parse::<u64>().unwrap(), 4u64 << 30);
    assert!(f.cg.stats().unwrap().hugetlb.contains_key(size));
}

#[test]
fn oom_kill_is_counted() {
    if !usable() {
        return;
    }
    let mut f = Fixture::new();
    let v2 = f.cg.layout() == Layout::V2;
    // memory+swap equal to memory: no swapping out of the OOM.
    let has_swap_limit =
        v2 || Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    let json = if has_swap_limit {
        r#"{"memory":{"limit":16777216,"swap":16777216}}"#
    } else {
        r#"{"memory":{"limit":16777216}}"#
    };
    f.cg.create(Some(&res(json))).expect("create");
    assert_eq!(f.cg.oom_kill_count().unwrap(), 0);
    let mut notifier = f.cg.oom_notifier().expect("oom notifier");
    assert!(!notifier.wait(Some(Duration::from_millis(50))).unwrap());
    let i = f.spawn_gated("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived");
    f.release(i);
    assert!(
        notifier.wait(Some(Duration::from_secs(10))).unwrap(),
        "no OOM event"
    );
    let (out, _) = f.output(i);
    assert!(!out.contains("survived"), "allocation was not limited");
    let end = Instant::now() + Duration::from_secs(5);
    while f.cg.oom_kill_count().unwrap() == 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(f.cg.oom_kill_count().unwrap() >= 1);
}

#[test]
fn unified_map_is_written_or_refused() {
    if !usable() {
        return;
    }
    let f = Fixture::new();
    let (json, file) = match f.cg.layout() {
        Layout::V2 => (r#"{"unified":{"memory.high":"50331648"}}"#, "memory.high"),
        _ => (
            r#"{"unified":{"cgroup.max.descendants":"5"}}"#,
            "cgroup.max.descendants",
        ),
    };
    let r = f.cg.create(Some(&res(json)));
    match f.cg.layout() {
        Layout::V1 => {
            let e = r.unwrap_err();
            assert!(e.to_string().contains("linux.resources.unified"), "{e}");
        }
        l => {
            r.expect("create");
            let dir = if l == Layout::V2 {
                f.dir("")
            } else {
                f.dir("unified")
            };
            let v = std::fs::read_to_string(dir.join(file)).unwrap();
            assert_eq!(v.trim(), if l == Layout::V2 { "50331648" } else { "5" });
        }
    }
    // A key whose file does not exist is named.
    let e =
        f.cg.update(&res(r#"{"unified":{"memory.nonexistent":"1"}}"#))
            .unwrap_err();
    assert!(e.to_string().contains("memory.nonexistent"), "{e}");
}

/// `major:minor` of a real block device, if the host has one.
fn block_dev() -> Option<String> {
    let mut names: Vec<_> = std::fs::read_dir("/sys/block").ok()?.flatten().collect();
    names.sort_by_key(|e| e.file_name());
    names.iter().find_map(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("loop") || n.starts_with("zram") || n.starts_with("ram") {
            return None;
        }
        std::fs::read_to_string(e.path().join("dev"))
            .ok()
            .map(|s| s.trim().to_string())
    })
}

#[test]
fn more_resources_reach_their_files() {
    if !usable() {
        return;
    }
    let f = Fixture::new();
    let dev = block_dev();
    let throttle = dev
        .as_deref()
        .and_then(|d| d.split_once(':'))
        .map(|(ma, mi)| format!(r#","blockIO":{{"throttleReadBpsDevice":[{{"major":{ma},"minor":{mi},"rate":1048576}}]}}"#))
        .unwrap_or_default();
    if f.cg.layout() == Layout::V2 {
        let json = format!(
            r#"{{"memory":{{"reservation":33554432}},"cpu":{{"burst":1000,"idle":0}}{throttle}}}"#
        );
        f.cg.create(Some(&res(&json))).expect("create");
        assert_eq!(f.read("", "memory.low"), "33554432");
        assert_eq!(f.read("", "cpu.max.burst"), "1000");
        if let Some(d) = &dev {
            let io = f.read("", "io.max");
            assert!(io.contains(&format!("{d} rbps=1048576")), "io.max: {io}");
        }
        let e =
            f.cg.update(&res(r#"{"memory":{"swappiness":10}}"#))
                .unwrap_err();
        assert!(
            e.to_string().contains("linux.resources.memory.swappiness"),
            "{e}"
        );
        let e =
            f.cg.update(&res(r#"{"cpu":{"realtimeRuntime":1000}}"#))
                .unwrap_err();
        assert!(
            e.to_string().contains("linux.resources.cpu.realtime"),
            "{e}"
        );
        return;
    }
    let json = format!(
        r#"{{"memory":{{"reservation":33554432,"swappiness":10,"disableOOMKiller":true,"useHierarchy":true}},
            "cpu":{{"burst":1000,"realtimePeriod":1000000,"realtimeRuntime":1000}}{throttle}}}"#
    );
    f.cg.create(Some(&res(&json))).expect("create");
    assert_eq!(f.read("memory", "memory.soft_limit_in_bytes"), "33554432");
    assert_eq!(f.read("memory", "memory.swappiness"), "10");
    assert!(f
        .read("memory", "memory.oom_control")
        .contains("oom_kill_disable 1"));
    assert_eq!(f.read("cpu", "cpu.cfs_burst_us"), "1000");
    assert_eq!(f.read("cpu", "cpu.rt_runtime_us"), "1000");
    if let Some(d) = &dev {
        let t = f.read("blkio", "blkio.throttle.read_bps_device");
        assert!(t.contains(&format!("{d} 1048576")), "throttle: {t}");
    }
    if !Path::new("/sys/fs/cgroup/rdma").exists() {
        let e =
            f.cg.update(&res(r#"{"rdma":{"mlx5_0":{"hcaHandles":3}}}"#))
                .unwrap_err();
        assert!(
            e.to_string().contains("linux.resources.rdma") && e.to_string().contains("rdma"),
            "{e}"
        );
    }
}
