//! The checker is not vacuous: when `/config.json` inside the container
//! differs from the config the runtime applied, each changed section fails.

use std::path::PathBuf;

use casulo_integration::bundle::{host_ns_env, remove_cgroup_parent, state_root};
use casulo_integration::{parse_tap, Bundle};
use serde_json::json;

fn runtime() -> PathBuf {
    std::env::var_os("CASULO_CONFORMANCE_RUNTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/runc"))
}

#[test]
fn every_changed_section_fails() {
    if !casulo_integration::prereq::root() {
        return;
    }
    if !runtime().exists() {
        casulo_integration::prereq::skip(&format!("{} is not installed", runtime().display()));
        return;
    }
    let mut b = Bundle::new(&["/checker", "/config.json"]);
    if let Some(p) = b.spec.process_mut().as_mut() {
        let mut env = p.env().clone().unwrap_or_default();
        env.push(host_ns_env());
        p.set_env(Some(env));
    }
    b.write_config();
    // What the checker is told, not what the runtime did.
    let mut lie = serde_json::to_value(&b.spec).unwrap();
    lie["hostname"] = json!("not-casulo");
    lie["process"]["user"]["uid"] = json!(1000);
    lie["process"]["rlimits"][0]["soft"] = json!(77);
    lie["process"]["capabilities"]["bounding"] = json!(["CAP_CHOWN"]);
    lie["root"]["readonly"] = json!(false);
    lie["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs"}));
    lie["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts"}]);
    lie["linux"]["maskedPaths"] = json!(["/etc/passwd", "/bin"]);
    lie["linux"]["readonlyPaths"] = json!(["/etc/group"]);
    lie["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "7"});
    lie["linux"]["devices"] = json!([{"path": "/dev/null", "type": "c", "major": 1, "minor": 5}]);
    lie["linux"]["resources"]["pids"] = json!({"limit": 3});
    std::fs::write(b.rootfs().join("config.json"), lie.to_string()).unwrap();

    let out = b.run(&runtime());
    remove_cgroup_parent();
    let _ = std::fs::remove_dir_all(state_root());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let s = parse_tap(&stdout);
    assert!(
        !out.status.success(),
        "checker must exit non-zero:\n{stdout}"
    );
    for section in [
        "Hostname",
        "Process",
        "Root",
        "Mounts",
        "Namespaces",
        "Masked Paths",
        "Readonly Paths",
        "Sysctl",
        "Devices",
    ] {
        let failed = s.per_section.get(section).map(|c| c.failed).unwrap_or(0);
        assert!(failed > 0, "no failure in {section}:\n{stdout}");
    }
}
