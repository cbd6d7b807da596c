//! Who the calling process is: root in the initial user namespace or not. A leaf: it
//! imports nothing of the crate, so the cgroup, rootfs and rootless modules can all ask.

use std::sync::OnceLock;

/// Whether the caller is root in the initial user namespace (euid 0 and
/// `/proc/self/uid_map` the identity map), computed once per process.
pub fn privileged() -> bool {
    static PRIV: OnceLock<bool> = OnceLock::new();
    *PRIV.get_or_init(|| nix::unistd::geteuid().is_root() && in_initial_userns())
}

/// Whether this process is in the initial user namespace (its uid map is the identity
/// over the whole id range).
pub fn in_initial_userns() -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/uid_map") else {
        return true;
    };
    let fields: Vec<&str> = text.split_whitespace().collect();
    fields == ["0", "0", "4294967295"]
}
