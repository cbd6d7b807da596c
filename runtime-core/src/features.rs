//! `casulo features` (runtime-spec features.md / features-linux.md): what this runtime
//! implements, derived from the code's own tables (mount options from
//! `rootfs::options`, namespaces from `namespaces`, capabilities from the caps crate
//! the security module uses, seccomp from the compiler's mappings). Claims nothing the
//! create path refuses.

use serde_json::{json, Value};

use crate::rootfs::options;

pub use crate::spec_util::{OCI_VERSION_MAX, OCI_VERSION_MIN};

/// Hooks the create/start/delete path runs.
pub const HOOKS: [&str; 6] = crate::hooks::PHASES;

/// Namespace names (`linux.namespaces[].type`) the runtime creates and joins.
pub fn namespaces() -> Vec<String> {
    crate::namespaces::JOIN_ORDER
        .iter()
        .filter_map(|t| serde_json::to_value(t).ok())
        .filter_map(|v| v.as_str().map(String::from))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Capability names known to the capability code.
pub fn capabilities() -> Vec<String> {
    let mut all: Vec<caps::Capability> = caps::all().into_iter().collect();
    all.sort_by_key(|c| c.index());
    all.iter().map(|c| c.to_string()).collect()
}

/// Mount options the mount code understands (flags, propagation, the recursive
/// mount_setattr attributes, idmap/ridmap, tmpcopyup).
pub fn mount_options() -> Vec<String> {
    let mut v: Vec<String> = options::NAMES.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Seccomp actions the create and exec paths accept (the compiler's; `SCMP_ACT_NOTIFY`
/// listeners go to the agent at `listenerPath` from both).
pub fn seccomp_actions() -> Vec<String> {
    casulo_seccomp::features::actions()
}

/// `linux.memoryPolicy` modes and flags (security::mempolicy).
pub fn memory_policy() -> Value {
    use crate::security::mempolicy::{FLAGS, MODES};
    json!({
        "modes": MODES.iter().map(|m| m.1).collect::<Vec<_>>(),
        "flags": FLAGS.iter().map(|f| f.1).collect::<Vec<_>>(),
    })
}

/// The features document.
pub fn features() -> Value {
    let flags = casulo_seccomp::features::flags();
    json!({
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": HOOKS,
        "mountOptions": mount_options(),
        "linux": {
            "namespaces": namespaces(),
            "capabilities": capabilities(),
            "cgroup": {
                "v1": true,
                "v2": true,
                "systemd": true,
                "systemdUser": true,
                "rdma": true,
            },
            "seccomp": {
                "enabled": true,
                "actions": seccomp_actions(),
                "operators": casulo_seccomp::features::operators(),
                "archs": casulo_seccomp::features::archs(),
                "knownFlags": flags,
                "supportedFlags": flags,
            },
            // Profiles are applied when the host has AppArmor (skipped otherwise);
            // SELinux mount labels are not implemented, so SELinux is not claimed.
            "apparmor": { "enabled": true },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            // Idmapped bind mounts (uidMappings/gidMappings, idmap, ridmap); other
            // mount types with an idmap are refused by name.
            "mountExtensions": { "idmap": { "enabled": true } },
            "memoryPolicy": memory_policy(),
            "netDevices": { "enabled": true },
        },
        "annotations": {
            "dev.casulo.version": env!("CARGO_PKG_VERSION"),
        },
        // With --systemd-cgroup these become properties of the container's unit.
        "potentiallyUnsafeConfigAnnotations": [crate::cgroups::systemd::props::ANNOTATION_PREFIX],
    })
}

/// The features document as pretty JSON.
pub fn json() -> String {
    serde_json::to_string_pretty(&features()).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_are_the_parsers() {
        for o in mount_options() {
            assert!(options::is_known(&o), "{o} is listed but not parsed");
            assert!(
                options::parse(None, std::slice::from_ref(&o))
                    .data
                    .is_empty(),
                "{o}"
            );
        }
        for o in ["mode=755", "size=1k", "Z"] {
            assert!(!mount_options().contains(&o.to_string()), "{o}");
        }
        // config.md's whole table of options.
        for o in [
            "rro",
            "rrw",
            "rnosuid",
            "rsuid",
            "rnodev",
            "rdev",
            "rnoexec",
            "rexec",
            "rnodiratime",
            "rdiratime",
            "rrelatime",
            "rnorelatime",
            "rnoatime",
            "ratime",
            "rstrictatime",
            "rnostrictatime",
            "rnosymfollow",
            "rsymfollow",
            "nosymfollow",
            "symfollow",
            "iversion",
            "noiversion",
            "tmpcopyup",
            "idmap",
            "ridmap",
        ] {
            assert!(mount_options().contains(&o.to_string()), "{o}");
        }
        assert_eq!(
            features()["linux"]["mountExtensions"]["idmap"]["enabled"],
            json!(true)
        );
    }

    #[test]
    fn seccomp_lists_match_the_compiler() {
        use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompBuilder};
        let v = features();
        let s = &v["linux"]["seccomp"];
        for a in s["actions"].as_array().unwrap() {
            let p = if a == "SCMP_ACT_NOTIFY" {
                // Not a default action (the kernel's rule): used on a syscall.
                serde_json::from_value(json!({"defaultAction": "SCMP_ACT_ALLOW",
                    "listenerPath": "/run/agent.sock",
                    "syscalls": [{"names": ["mkdir"], "action": a}]}))
                .unwrap()
            } else {
                let a: LinuxSeccompAction = serde_json::from_value(a.clone()).unwrap();
                LinuxSeccompBuilder::default()
                    .default_action(a)
                    .build()
                    .unwrap()
            };
            let a = &p.default_action();
            assert!(casulo_seccomp::compile(&p).is_ok(), "{a:?} listed, refused");
        }
        assert!(s["actions"]
            .as_array()
            .unwrap()
            .contains(&json!("SCMP_ACT_NOTIFY")));
        assert_eq!(s["operators"].as_array().unwrap().len(), 7);
        assert!(s["archs"]
            .as_array()
            .unwrap()
            .contains(&json!("SCMP_ARCH_X86_64")));
        assert!(!s["archs"]
            .as_array()
            .unwrap()
            .contains(&json!("SCMP_ARCH_MIPS")));
    }

    #[test]
    fn namespaces_and_capabilities() {
        let v = features();
        let ns: Vec<String> = serde_json::from_value(v["linux"]["namespaces"].clone()).unwrap();
        for n in [
            "cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time",
        ] {
            assert!(ns.contains(&n.to_string()), "{n} in {ns:?}");
        }
        let caps: Vec<String> = serde_json::from_value(v["linux"]["capabilities"].clone()).unwrap();
        assert_eq!(caps[0], "CAP_CHOWN");
        for c in &caps {
            assert!(
                serde_json::from_value::<oci_spec::runtime::Capability>(json!(c)).is_ok(),
                "{c} not an OCI capability"
            );
        }
        assert_eq!(v["hooks"].as_array().unwrap().len(), HOOKS.len());
    }
}
