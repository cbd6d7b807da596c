//! What containerd's CRI plugin translates from the CRI request into the OCI config,
//! asserted from inside containers of pod A: resources (cpu shares and quota, memory
//! limit; pids through the pod's cgroup parent), the securityContext (user, groups,
//! read-only rootfs, no_new_privs, seccomp RuntimeDefault and Localhost, added and
//! dropped capabilities, masked and read-only paths) and a read-only hostPath mount.

use std::fs;

use super::{api, container, create_start, exec, security, sh, stop_remove, Cri, Pod};

/// The pids limit put on pod A's cgroup parent before its sandbox starts (cgroup v1's
/// pids hierarchy; kubelet does this for a pod's pids limit).
pub const POD_PIDS_MAX: u32 = 24;

/// Creates pod A's cgroup parent in the pids hierarchy with [`POD_PIDS_MAX`]; false when
/// the host has no v1 pids hierarchy.
pub fn limit_pod_pids(rel: &str) -> bool {
    let base = std::path::Path::new("/sys/fs/cgroup/pids");
    if !base.join("pids.max").exists() && !base.join("cgroup.procs").exists() {
        return false;
    }
    let d = base.join(rel.trim_start_matches('/'));
    fs::create_dir_all(&d).expect("mkdir the pod's pids cgroup");
    fs::write(d.join("pids.max"), POD_PIDS_MAX.to_string()).expect("pids.max");
    true
}

fn caps_bits(status: &str, field: &str) -> u64 {
    let l = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in {status}"));
    u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

/// The containers `sec` (non-root, read-only, RuntimeDefault seccomp, resources) and
/// `caps` (root, NET_ADMIN added, CHOWN dropped, a Localhost seccomp profile) in pod A.
pub fn translations(cri: &Cri, pids_limited: bool, a: &Pod) {
    let data = cri.dir.join("hostpath");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), "from-the-host\n").unwrap();
    let mut cfg = container("sec", &["sleep", "1000"]);
    cfg.mounts = vec![api::Mount {
        container_path: "/data".into(),
        host_path: data.display().to_string(),
        readonly: true,
        ..Default::default()
    }];
    cfg.linux = Some(api::LinuxContainerConfig {
        resources: Some(api::LinuxContainerResources {
            cpu_shares: 512,
            cpu_period: 100_000,
            cpu_quota: 50_000,
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        security_context: Some(security(api::LinuxContainerSecurityContext {
            run_as_user: Some(api::Int64Value { value: 1000 }),
            run_as_group: Some(api::Int64Value { value: 1000 }),
            supplemental_groups: vec![2000, 3000],
            readonly_rootfs: true,
            no_new_privs: true,
            seccomp: Some(api::SecurityProfile {
                profile_type: api::security_profile::ProfileType::RuntimeDefault as i32,
                ..Default::default()
            }),
            masked_paths: vec!["/proc/keys".into(), "/proc/timer_list".into()],
            readonly_paths: vec!["/proc/sys".into(), "/proc/bus".into()],
            ..Default::default()
        })),
    });
    let sec = create_start(cri, a, cfg);
    let id = sh(cri, &sec, "id -u; id -g; id -G");
    let l: Vec<&str> = id.lines().collect();
    assert_eq!(l[0], "1000", "runAsUser: {id}");
    assert_eq!(l[1], "1000", "runAsGroup: {id}");
    assert!(
        l[2].split(' ').any(|g| g == "2000"),
        "supplementalGroups: {id}"
    );
    assert!(
        l[2].split(' ').any(|g| g == "3000"),
        "supplementalGroups: {id}"
    );
    let st = sh(cri, &sec, "cat /proc/self/status");
    assert!(st.contains("NoNewPrivs:\t1"), "noNewPrivileges: {st}");
    assert!(st.contains("Seccomp:\t2"), "seccomp RuntimeDefault: {st}");
    assert_eq!(caps_bits(&st, "CapEff"), 0, "non-root: no effective caps");
    let (code, _, err) = exec(cri, &sec, &["touch", "/rootfs-write"]);
    assert_ne!(code, 0, "readOnlyRootfs: {err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert_eq!(sh(cri, &sec, "cat /data/f"), "from-the-host\n");
    let (code, _, err) = exec(cri, &sec, &["touch", "/data/g"]);
    assert_ne!(code, 0, "hostPath readonly");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!data.join("g").exists());
    // Masked: /proc/keys and /proc/timer_list read empty; /proc/sys and /proc/bus are
    // read-only mounts.
    let (_, kc, _) = exec(
        cri,
        &sec,
        &["sh", "-c", "cat /proc/timer_list /proc/keys | wc -c"],
    );
    assert_eq!(kc.trim(), "0", "masked /proc/timer_list and /proc/keys");
    let mounts = sh(cri, &sec, "cat /proc/self/mounts");
    for p in ["/proc/sys", "/proc/bus"] {
        let m = mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(p))
            .unwrap_or_else(|| panic!("{p} mounted: {mounts}"));
        let opts = m.split(' ').nth(3).unwrap();
        assert!(opts.split(',').any(|o| o == "ro"), "{p} read-only: {m}");
    }
    for p in ["/proc/keys", "/proc/timer_list"] {
        assert!(
            mounts.lines().any(|l| l.split(' ').nth(1) == Some(p)),
            "{p} masked: {mounts}"
        );
    }
    resources(cri, &sec, pids_limited);
    stop_remove(cri, &sec);
    caps_and_localhost_seccomp(cri, a);
}

/// The cgroup limits as the container sees them (v1: the container's own cgroup at
/// /sys/fs/cgroup/<controller>; v2: its /proc/self/cgroup path under /sys/fs/cgroup).
fn resources(cri: &Cri, sec: &str, pids_limited: bool) {
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory").is_dir();
    let script = if v1 {
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us"
    } else {
        // the container's own cgroup, with a cgroup namespace or without one
        "cg=$(cat /proc/self/cgroup); cd /sys/fs/cgroup${cg#0::} && cat memory.max cpu.weight cpu.max"
    };
    let got = sh(cri, sec, script);
    let l: Vec<&str> = got.lines().collect();
    assert_eq!(l[0], (64u64 << 20).to_string(), "memory limit: {got}");
    if v1 {
        assert_eq!(l[1..], ["512", "50000", "100000"], "cpu: {got}");
    } else {
        // cpu.weight from shares 512: Casulo's conversion (current runc's and crun's,
        // the quadratic in log2(shares): 59); another runtime may have the older linear
        // one, 1 + ((512 - 2) * 9999) / 262142 = 20.
        let ours = casulo_core::cgroups::shares_to_weight(512).to_string();
        let weights = if cri.runtime == casulo_integration::casulo_bin() {
            vec![ours]
        } else {
            vec![ours, "20".to_string()]
        };
        assert!(
            weights.iter().any(|w| w == l[1]) && l[2] == "50000 100000",
            "cpu.weight (one of {weights:?}) and cpu.max (50000 100000): {got}"
        );
    }
    // Pids: the pod's parent allows POD_PIDS_MAX tasks in all of the pod (the sleeps
    // that did start die with the container, stopped right after).
    if pids_limited {
        let (_, out, err) = exec(
            cri,
            sec,
            &[
                "sh",
                "-c",
                "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30; do sleep 30 </dev/null >/dev/null 2>&1 & done; echo all-forked",
            ],
        );
        assert!(
            err.contains("can't fork") || err.contains("Resource temporarily unavailable"),
            "the pod's pids.max reached: {out} {err}"
        );
        assert!(!out.contains("all-forked"), "{out} {err}");
    }
}

/// Root with NET_ADMIN added and CHOWN dropped; a Localhost seccomp profile that makes
/// mkdir fail with EPERM.
fn caps_and_localhost_seccomp(cri: &Cri, a: &Pod) {
    let profile = cri.dir.join("seccomp-no-mkdir.json");
    let p = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    fs::write(&profile, p.to_string()).unwrap();
    let mut cfg = container("caps", &["sleep", "1000"]);
    cfg.linux = Some(api::LinuxContainerConfig {
        security_context: Some(security(api::LinuxContainerSecurityContext {
            capabilities: Some(api::Capability {
                add_capabilities: vec!["NET_ADMIN".into()],
                drop_capabilities: vec!["CHOWN".into()],
                ..Default::default()
            }),
            seccomp: Some(api::SecurityProfile {
                profile_type: api::security_profile::ProfileType::Localhost as i32,
                localhost_ref: profile.display().to_string(),
            }),
            ..Default::default()
        })),
        ..Default::default()
    });
    let caps = create_start(cri, a, cfg);
    let st = sh(cri, &caps, "cat /proc/self/status");
    let eff = caps_bits(&st, "CapEff");
    let bnd = caps_bits(&st, "CapBnd");
    assert!(eff & (1 << 12) != 0, "NET_ADMIN added: {eff:x}");
    assert!(
        bnd & 1 == 0 && eff & 1 == 0,
        "CHOWN dropped: {eff:x} {bnd:x}"
    );
    assert!(
        eff & (1 << 5) != 0,
        "KILL kept from the default set: {eff:x}"
    );
    assert!(
        eff & (1 << 21) == 0,
        "SYS_ADMIN not in the default set: {eff:x}"
    );
    assert!(st.contains("Seccomp:\t2"), "{st}");
    let (code, _, err) = exec(cri, &caps, &["mkdir", "/tmp/d"]);
    assert_ne!(code, 0, "Localhost profile denies mkdir");
    assert!(err.contains("Operation not permitted"), "{err}");
    sh(cri, &caps, "touch /tmp/f && rm /tmp/f");
    stop_remove(cri, &caps);
}
