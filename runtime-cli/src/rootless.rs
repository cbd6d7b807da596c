//! The command line's rootless parts: `--rootless` and the state root it implies, and
//! `spec --rootless` (runc's rootless default config).

use std::path::PathBuf;

use serde_json::{json, Value};

/// The state root: `--root`, else `$XDG_RUNTIME_DIR/casulo` for a caller whose euid is
/// not 0 (runc: `$XDG_RUNTIME_DIR/runc`), else `/run/casulo`.
pub fn state_root(given: Option<&PathBuf>) -> PathBuf {
    given
        .cloned()
        .or_else(casulo_core::rootless::default_root)
        .unwrap_or_else(|| PathBuf::from("/run/casulo"))
}

/// `--rootless` (absent: auto).
pub fn mode(
    flag: Option<&str>,
) -> Result<casulo_core::rootless::Mode, casulo_core::rootless::ModeError> {
    flag.map_or(Ok(casulo_core::rootless::Mode::Auto), str::parse)
}

/// Whether the caller's own cgroup is delegated to it (cgroup v2: its cgroup directory
/// is writable by it); on v1 it never is.
fn cgroup_delegated() -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") else {
        return false;
    };
    let Some(own) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
        return false;
    };
    let unified = match casulo_core::cgroup_layout() {
        Ok(casulo_core::CgroupLayout::V2) => PathBuf::from("/sys/fs/cgroup"),
        _ => return false,
    };
    let dir = unified.join(own.trim_start_matches('/'));
    nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// The rootless form of the default config, as `runc spec --rootless` writes it: a user
/// namespace mapping the caller's euid/egid to 0 (and a cgroup namespace on cgroup v2),
/// no network namespace, `/sys` as a
/// read-only rbind of the host's, no `uid=`/`gid=` mount options, no resources; the
/// `/sys/fs/cgroup` cgroup mount only when the caller's cgroup is delegated to it.
pub fn spec(default: &str) -> Result<String, String> {
    let mut v: Value = serde_json::from_str(default).map_err(|e| e.to_string())?;
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let delegated = cgroup_delegated();
    let v2 = casulo_core::cgroup_layout().ok() == Some(casulo_core::CgroupLayout::V2);
    let linux = &mut v["linux"];
    if let Some(ns) = linux["namespaces"].as_array_mut() {
        ns.retain(|n| !matches!(n["type"].as_str(), Some("network") | Some("user")));
        // runc lists a cgroup namespace on cgroup v2 hosts.
        if v2 && !ns.iter().any(|n| n["type"] == "cgroup") {
            ns.push(json!({"type": "cgroup"}));
        }
        ns.push(json!({"type": "user"}));
    }
    linux["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
    linux["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    if let Some(l) = linux.as_object_mut() {
        l.remove("resources");
    }
    if let Some(mounts) = v["mounts"].as_array_mut() {
        mounts.retain(|m| delegated || m["destination"] != "/sys/fs/cgroup");
        for m in mounts.iter_mut() {
            if m["destination"] == "/sys" {
                *m = json!({
                    "destination": "/sys", "type": "none", "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]
                });
                continue;
            }
            if let Some(opts) = m.get_mut("options").and_then(Value::as_array_mut) {
                opts.retain(|o| {
                    !o.as_str()
                        .is_some_and(|o| o.starts_with("uid=") || o.starts_with("gid="))
                });
            }
        }
    }
    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())
}
