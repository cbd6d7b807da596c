//! `casulo features` (runtime-spec features.md): valid JSON with runc's shape, and the
//! same document as the library's.

use casulo_integration::casulo_bin;
use serde_json::Value;

#[test]
fn features_has_the_spec_shape() {
    let out = std::process::Command::new(casulo_bin())
        .arg("features")
        .output()
        .expect("run casulo features");
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("features is JSON");
    assert_eq!(v, casulo_core::features::features());
    for k in [
        "ociVersionMin",
        "ociVersionMax",
        "hooks",
        "mountOptions",
        "linux",
    ] {
        assert!(v.get(k).is_some(), "{k} missing");
    }
    for k in [
        "namespaces",
        "capabilities",
        "cgroup",
        "seccomp",
        "apparmor",
        "selinux",
        "intelRdt",
        "mountExtensions",
    ] {
        assert!(v["linux"].get(k).is_some(), "linux.{k} missing");
    }
    assert_eq!(v["linux"]["seccomp"]["enabled"], true);
    assert_eq!(v["linux"]["cgroup"]["systemd"], true);
    assert_eq!(v["linux"]["cgroup"]["systemdUser"], true);
    // Every key runc prints (the reference recorded on this kind of machine) is here
    // too, with the same JSON type.
    let reference = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/runc-features.json");
    let Ok(text) = std::fs::read_to_string(&reference) else {
        println!(
            "runc reference not found at {}; shape checked above",
            reference.display()
        );
        return;
    };
    let runc: Value = serde_json::from_str(&text).unwrap();
    fn same_shape(path: &str, ours: &Value, theirs: &Value) {
        if let (Value::Object(o), Value::Object(t)) = (ours, theirs) {
            for (k, tv) in t {
                if path.is_empty() && k == "annotations" {
                    continue;
                }
                let p = format!("{path}.{k}");
                let ov = o.get(k).unwrap_or_else(|| panic!("{p} missing"));
                same_shape(&p, ov, tv);
            }
        } else {
            assert_eq!(
                std::mem::discriminant(ours),
                std::mem::discriminant(theirs),
                "{path} has another JSON type"
            );
        }
    }
    same_shape("", &v, &runc);
}
