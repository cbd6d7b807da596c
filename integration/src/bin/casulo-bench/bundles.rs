//! The two bundles of the benchmark, sharing one busybox rootfs: the minimal one
//! (`default_spec`, as `runc spec` writes it, running /bin/true) and a Docker-like one
//! (Docker's default seccomp profile, capabilities, masked and read-only paths and
//! device rules, memory and pids limits, every namespace but user).

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use casulo_integration::bundle::HOST_BUSYBOX;
use casulo_integration::default_spec;
use oci_spec::runtime::{LinuxSeccomp, Spec};

/// Docker's default seccomp profile (the seccomp crate's test fixture).
pub const DOCKER_SECCOMP: &str = include_str!("../../../../seccomp/tests/docker_default.json");

/// Which configuration a bundle has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `default_spec()` with `/bin/true`.
    Minimal,
    /// Docker's defaults.
    Docker,
    /// The minimal bundle running `sleep 100000` (exec and scale phases).
    Sleep,
}

impl Kind {
    /// Short name used in ids and cgroup names.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Minimal => "min",
            Kind::Docker => "docker",
            Kind::Sleep => "sleep",
        }
    }
}

/// Builds the shared rootfs: busybox-static with `true` and `sh`, `/etc/passwd`
/// and the usual empty mount points.
pub fn make_rootfs(rootfs: &Path) -> std::io::Result<()> {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root", "run"] {
        fs::create_dir_all(rootfs.join(d))?;
        fs::set_permissions(rootfs.join(d), fs::Permissions::from_mode(0o755))?;
    }
    fs::set_permissions(rootfs, fs::Permissions::from_mode(0o755))?;
    fs::copy(HOST_BUSYBOX, rootfs.join("bin/busybox"))?;
    for applet in ["true", "sh", "sleep"] {
        symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\n")?;
    Ok(())
}

const DOCKER_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const DOCKER_MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const DOCKER_READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The configuration of a bundle of `kind` whose container goes into `cgroup`.
pub fn spec(kind: Kind, rootfs: &Path, cgroup: &str) -> Spec {
    let mut v = serde_json::to_value(default_spec()).expect("spec to json");
    v["process"]["args"] = serde_json::json!(["/bin/true"]);
    v["root"]["path"] = serde_json::json!(rootfs);
    v["linux"]["cgroupsPath"] = serde_json::json!(cgroup);
    if kind == Kind::Sleep {
        v["process"]["args"] = serde_json::json!(["/bin/sleep", "100000"]);
    }
    if kind == Kind::Docker {
        let caps = serde_json::json!(DOCKER_CAPS);
        v["process"]["capabilities"] =
            serde_json::json!({"bounding": caps, "effective": caps, "permitted": caps});
        v["process"]["noNewPrivileges"] = serde_json::json!(false);
        v["linux"]["maskedPaths"] = serde_json::json!(DOCKER_MASKED);
        v["linux"]["readonlyPaths"] = serde_json::json!(DOCKER_READONLY);
        let seccomp: LinuxSeccomp = serde_json::from_str(DOCKER_SECCOMP).expect("docker profile");
        v["linux"]["seccomp"] = serde_json::to_value(seccomp).expect("profile to json");
        v["linux"]["resources"] = serde_json::json!({
            "devices": [
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
                {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
                {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
                {"allow": true, "type": "c", "major": 136, "access": "rwm"},
                {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"}
            ],
            "memory": {"limit": 268_435_456_i64},
            "pids": {"limit": 1024}
        });
    }
    serde_json::from_value(v).expect("bench spec is valid")
}

/// Writes `<dir>/config.json` for a container of `kind` in `cgroup`; returns `dir`.
pub fn write_bundle(dir: &Path, kind: Kind, rootfs: &Path, cgroup: &str) -> PathBuf {
    fs::create_dir_all(dir).expect("bundle dir");
    let json = serde_json::to_string_pretty(&spec(kind, rootfs, cgroup)).expect("spec json");
    fs::write(dir.join("config.json"), json).expect("write config.json");
    dir.to_path_buf()
}
