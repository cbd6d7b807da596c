use std::collections::HashMap;

use super::*;

#[test]
fn slices_expand_as_systemd_lays_them_out() {
    assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
    assert_eq!(
        expand_slice("a-b-c.slice").unwrap(),
        "/a.slice/a-b.slice/a-b-c.slice"
    );
    assert_eq!(expand_slice("-.slice").unwrap(), "");
    for bad in [
        ".slice",
        "a",
        "a/b.slice",
        "a--b.slice",
        "-a.slice",
        "a-.slice",
    ] {
        assert!(expand_slice(bad).is_err(), "{bad}");
    }
}

#[test]
fn units_follow_runc_naming() {
    let u = unit_for(Some("system.slice:docker:abc"), "id", None, false).unwrap();
    assert_eq!(
        (u.name.as_str(), u.slice.as_str(), u.path.as_str()),
        (
            "docker-abc.scope",
            "system.slice",
            "/system.slice/docker-abc.scope"
        )
    );
    // The default: `:casulo:<id>`, in system.slice.
    for p in [None, Some("")] {
        let u = unit_for(p, "c1", None, false).unwrap();
        assert_eq!(u.name, "casulo-c1.scope");
        assert_eq!(u.path, "/system.slice/casulo-c1.scope");
    }
    // A rootless caller's unit: user.slice of its own manager (the manager's cgroup is
    // put in front once connected).
    let u = unit_for(Some(""), "c1", None, true).unwrap();
    assert_eq!((u.slice.as_str(), u.user), ("user.slice", true));
    assert_eq!(u.path, "/user.slice/casulo-c1.scope");
    let u = unit_for(Some(":pfx:n"), "id", None, false).unwrap();
    assert_eq!(u.path, "/system.slice/pfx-n.scope");
    // Nested slices, the root slice, and a slice as the unit itself.
    let u = unit_for(Some("kubepods-besteffort.slice:cri:x"), "id", None, false).unwrap();
    assert_eq!(
        u.path,
        "/kubepods.slice/kubepods-besteffort.slice/cri-x.scope"
    );
    assert_eq!(
        unit_for(Some("-.slice:p:x"), "id", None, false).unwrap().path,
        "/p-x.scope"
    );
    let u = unit_for(Some("a.slice:p:a-b.slice"), "id", None, false).unwrap();
    assert_eq!(
        (u.name.as_str(), u.path.as_str()),
        ("a-b.slice", "/a.slice/a-b.slice")
    );
}

#[test]
fn bad_cgroups_paths_name_the_field() {
    for bad in [
        "/a/b",
        "a:b",
        "a:b:c:d",
        "x:p:n",
        "system.slice:p:../../etc",
        "system.slice:a/b:n",
        "system.slice:p:",
    ] {
        let e = unit_for(Some(bad), "id", None, false).unwrap_err();
        assert!(
            e.to_string().starts_with("linux.cgroupsPath: "),
            "{bad}: {e}"
        );
    }
}

#[test]
fn annotations_become_typed_properties() {
    let ann: HashMap<String, String> = [
        ("org.systemd.property.TimeoutStopUSec", "uint64 123456789"),
        ("org.systemd.property.CollectMode", "'inactive-or-failed'"),
        ("org.systemd.property.TimeoutStopSec", "2"),
        ("other", "x"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let u = unit_for(None, "id", Some(&ann), false).unwrap();
    assert_eq!(u.extra.len(), 3, "{:?}", u.extra);
    for want in [
        ("CollectMode".to_string(), Value::str("inactive-or-failed")),
        ("TimeoutStopUSec".to_string(), Value::U64(2_000_000)),
        ("TimeoutStopUSec".to_string(), Value::U64(123_456_789)),
    ] {
        assert!(u.extra.contains(&want), "{want:?} in {:?}", u.extra);
    }
    for (k, v) in [
        ("org.systemd.property.X1", "true"),
        ("org.systemd.property.Ab", "true"),
        ("org.systemd.property.CollectMode", "inactive"),
        ("org.systemd.property.TimeoutStopSec", "'x'"),
    ] {
        let ann = HashMap::from([(k.to_string(), v.to_string())]);
        let e = unit_for(None, "id", Some(&ann), false).unwrap_err();
        assert!(e.to_string().contains(k), "{k}: {e}");
    }
}

#[test]
fn unit_properties_hold_the_pid_slice_and_delegation() {
    let ann = HashMap::from([(
        "org.systemd.property.CollectMode".to_string(),
        "'inactive-or-failed'".to_string(),
    )]);
    let u = unit_for(Some("machine.slice:p:n"), "id", Some(&ann), false).unwrap();
    let m = Systemd {
        unit: u,
        inner: Box::new(crate::cgroups::v2::V2::new("/machine.slice/p-n.scope")),
        conn: Mutex::new(None),
        owned: Arc::new(AtomicBool::new(false)),
        pending: Mutex::new(None),
        sub: String::new(),
    };
    let p = m.unit_props(42, vec![("MemoryMax".into(), Value::U64(1 << 20))]);
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("Slice"), Some(Value::str("machine.slice")));
    assert_eq!(get("Delegate"), Some(Value::Bool(true)));
    assert_eq!(
        get("PIDs"),
        Some(Value::Array("u".into(), vec![Value::U32(42)]))
    );
    assert_eq!(get("DefaultDependencies"), Some(Value::Bool(false)));
    assert_eq!(get("MemoryMax"), Some(Value::U64(1 << 20)));
    // Annotations come last, so they override.
    assert_eq!(p.last().unwrap().0, "CollectMode");
    // The whole a(sv) marshals.
    let mut w = crate::dbus::wire::Writer::default();
    w.put(&struct_props(p)).unwrap();
}
