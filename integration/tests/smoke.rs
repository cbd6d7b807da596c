//! Smoke test: the default bundle passes the checker under the runtime given
//! by `CASULO_CONFORMANCE_RUNTIME` (default /usr/sbin/runc).

use std::path::PathBuf;

use casulo_integration::bundle::{host_ns_env, remove_cgroup_parent, state_root};
use casulo_integration::known::unexpected;
use casulo_integration::{parse_tap, Bundle};

fn runtime() -> PathBuf {
    std::env::var_os("CASULO_CONFORMANCE_RUNTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/runc"))
}

#[test]
fn default_bundle_passes_checker() {
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
    let out = b.run(&runtime());
    let stdout = String::from_utf8_lossy(&out.stdout);
    remove_cgroup_parent();
    let _ = std::fs::remove_dir_all(state_root());
    let s = parse_tap(&stdout);
    let bad = unexpected(&runtime(), "default", &s.failures);
    assert!(
        bad.is_empty() && s.plan.is_some(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
