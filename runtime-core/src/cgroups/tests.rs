//! Unit tests (no cgroup access).

use super::devices::{self, DevType, ACC_MKNOD, ACC_READ, ACC_WRITE};
use super::*;
use oci_spec::runtime::LinuxResources;

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("test resources parse")
}

fn err_of(json: &str) -> String {
    validate(&res(json)).expect_err(json).to_string()
}

#[test]
fn shares_to_weight_matches_runc() {
    assert_eq!(shares_to_weight(0), 0);
    assert_eq!(shares_to_weight(1), 1);
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 100);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(1_000_000), 10_000);
    // Monotonic over the range.
    let mut last = 0;
    for s in (2..262_144).step_by(997) {
        let w = shares_to_weight(s);
        assert!(w >= last && (1..=10_000).contains(&w), "shares {s} -> {w}");
        last = w;
    }
    // The table matches the formula (runc's and crun's) for every value.
    for s in 3..262_144u64 {
        let l = (s as f64).log2();
        let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
        let want = 10f64.powf(exponent).ceil() as u64;
        assert_eq!(shares_to_weight(s), want, "shares {s}");
    }
    assert_eq!(blkio_weight_to_io_weight(10), 1);
    assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    assert_eq!(blkio_weight_to_io_weight(0), 0);
}

#[test]
fn cpu_max_formatting() {
    assert_eq!(cpu_max(Some(50_000), 100_000), "50000 100000");
    assert_eq!(cpu_max(Some(-1), 100_000), "max 100000");
    assert_eq!(cpu_max(None, 250_000), "max 250000");
}

#[test]
fn validation_errors_name_the_field() {
    assert_eq!(
        err_of(r#"{"cpu":{"period":0}}"#),
        "linux.resources.cpu.period: must be > 0"
    );
    assert!(err_of(r#"{"memory":{"limit":-2}}"#).starts_with("linux.resources.memory.limit:"));
    assert!(err_of(r#"{"memory":{"swap":-5}}"#).starts_with("linux.resources.memory.swap:"));
    assert!(err_of(r#"{"memory":{"limit":100,"swap":50}}"#).contains("memory.swap"));
    assert!(err_of(r#"{"memory":{"swappiness":101}}"#).contains("swappiness"));
    assert!(err_of(r#"{"cpu":{"quota":-7}}"#).starts_with("linux.resources.cpu.quota:"));
    assert!(err_of(r#"{"cpu":{"cpus":"0-x"}}"#).starts_with("linux.resources.cpu.cpus:"));
    assert!(err_of(r#"{"cpu":{"mems":"3-1"}}"#).starts_with("linux.resources.cpu.mems:"));
    assert!(err_of(r#"{"cpu":{"idle":2}}"#).contains("cpu.idle"));
    assert!(err_of(r#"{"pids":{"limit":-3}}"#).starts_with("linux.resources.pids.limit:"));
    assert!(err_of(r#"{"unified":{"foo.bar":"1"}}"#).contains("unified[\"foo.bar\"]"));
    assert!(err_of(r#"{"unified":{"memory":"1"}}"#).contains("unified"));
    assert!(err_of(r#"{"unified":{"../memory.max":"1"}}"#).contains("unified"));
    assert!(
        err_of(r#"{"devices":[{"allow":true,"type":"p","access":"rwm"}]}"#)
            .starts_with("linux.resources.devices[0].type:")
    );
    assert!(
        err_of(r#"{"devices":[{"allow":true,"type":"c","access":"rwx"}]}"#)
            .starts_with("linux.resources.devices[0].access:")
    );
    assert!(err_of(r#"{"devices":[{"allow":true,"access":"rrw"}]}"#).contains("access"));
    assert!(err_of(r#"{"blockIO":{"weight":5}}"#).contains("blockIO.weight"));
    assert!(err_of(r#"{"hugepageLimits":[{"pageSize":"2XB","limit":1}]}"#).contains("pageSize"));
    // Valid values pass, including -1 = unlimited.
    validate(&res(
        r#"{"memory":{"limit":-1,"swap":-1},"cpu":{"quota":-1,"period":100000,"cpus":"0-1,3","mems":"0"},
            "pids":{"limit":-1},"unified":{"memory.high":"max"},
            "devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}],
            "hugepageLimits":[{"pageSize":"2MB","limit":0}]}"#,
    ))
    .expect("valid resources");
}

#[test]
fn cpu_lists_and_page_sizes() {
    assert_eq!(parse_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
    assert_eq!(parse_list("").unwrap(), Vec::<u32>::new());
    assert!(parse_list("1,,2").is_err());
    assert!(parse_list("a").is_err());
    assert_eq!(parse_page_size("2MB").unwrap(), 2 << 20);
    assert_eq!(parse_page_size("1GB").unwrap(), 1 << 30);
    assert!(parse_page_size("2M").is_err());
    assert_eq!(stats::page_size_name(2 << 20), "2MB");
    assert_eq!(stats::page_size_name(1 << 30), "1GB");
    assert_eq!(stats::page_size_name(64 << 10), "64KB");
}

#[test]
fn systemd_form_is_refused() {
    let e = check_systemd_cgroup(false, Some("system.slice:docker:abc")).unwrap_err();
    assert!(e.to_string().contains("slice:prefix:name"), "{e}");
    assert!(check_systemd_cgroup(true, None).is_ok());
    assert!(check_systemd_cgroup(true, Some("system.slice:docker:abc")).is_ok());
    assert!(check_systemd_cgroup(false, Some("/a/b")).is_ok());
    assert!(resolve_path(Some("user.slice:casulo:x"), "x").is_err());
    assert_eq!(resolve_path(Some("/a/../b/./c"), "x").unwrap(), "/b/c");
    assert_eq!(resolve_path(Some("/../../x"), "x").unwrap(), "/x");
}

#[test]
fn device_rules_and_v1_lines() {
    let user = res(r#"{"devices":[{"allow":false,"access":"rwm"},
        {"allow":false,"type":"c","major":1,"minor":5,"access":"rwm"},
        {"allow":true,"type":"b","major":8,"access":"r"}]}"#);
    let rules = devices::effective_rules(user.devices().as_ref().unwrap());
    let lines: Vec<String> = rules.iter().flat_map(|r| r.v1_lines()).collect();
    assert_eq!(lines[0], "a");
    assert_eq!(lines[1], "c 1:5 rwm");
    assert_eq!(lines[2], "b 8:* r");
    assert!(lines.contains(&"c 1:3 rwm".to_string()));
    assert!(lines.contains(&"c 136:* rwm".to_string()));
    // The explicit deny of /dev/zero drops its default allow entry.
    assert!(!rules
        .iter()
        .any(|r| r.allow && r.major == Some(1) && r.minor == Some(5)));
    use devices::allowed;
    assert!(allowed(&rules, DevType::Char, 1, 3, ACC_READ | ACC_WRITE));
    assert!(!allowed(&rules, DevType::Char, 1, 5, ACC_READ));
    assert!(allowed(&rules, DevType::Block, 8, 1, ACC_READ));
    assert!(!allowed(&rules, DevType::Block, 8, 1, ACC_WRITE));
    assert!(allowed(&rules, DevType::Char, 42, 1, ACC_MKNOD));
    assert!(!allowed(&rules, DevType::Char, 42, 1, ACC_READ));
    assert!(allowed(&rules, DevType::Char, 136, 7, ACC_READ));
    // A narrower type-"a" rule never becomes the kernel's "a" (= everything).
    let narrow = res(r#"{"devices":[{"allow":true,"major":10,"access":"r"}]}"#);
    let r = devices::from_oci(&narrow.devices().as_ref().unwrap()[0]);
    assert_eq!(
        r.v1_lines(),
        vec!["c 10:* r".to_string(), "b 10:* r".to_string()]
    );
}

#[test]
fn bpf_program_shape() {
    let all = res(r#"{"devices":[{"allow":true,"access":"rwm"}]}"#);
    let rules: Vec<_> = all
        .devices()
        .as_ref()
        .unwrap()
        .iter()
        .map(devices::from_oci)
        .collect();
    let p = devices::bpf_program(&rules);
    // Prologue (6), then the unconditional allow: mov r0,1; exit; nothing after.
    assert_eq!(p.len(), 8);
    assert_eq!((p[6].code, p[6].imm), (0xb7, 1));
    assert_eq!(p[7].code, 0x95);

    let rules = devices::effective_rules(&[]);
    let p = devices::bpf_program(&rules);
    assert_eq!(p.last().unwrap().code, 0x95);
    assert_eq!((p[p.len() - 2].code, p[p.len() - 2].imm), (0xb7, 0));
    // Every jump lands inside the program, on or before the final exit.
    for (i, ins) in p.iter().enumerate() {
        if ins.code == 0x55 || ins.code == 0x5d {
            let target = i as i64 + 1 + i64::from(ins.off);
            assert!(target > i as i64 && target < p.len() as i64, "insn {i}");
        }
    }
}

#[test]
fn proc_cgroup_and_mountinfo_parsing() {
    let own =
        detect::parse_proc_cgroup("4:memory:/a/b\n2:cpu,cpuacct:/\n1:name=systemd:/s\n0::/u\n");
    assert_eq!(own["memory"], "/a/b");
    assert_eq!(own["cpuacct"], "/");
    assert_eq!(own["name=systemd"], "/s");
    assert_eq!(own[""], "/u");
    let mi = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
              41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
              40 31 0:37 /x /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n";
    let m = detect::parse_v1_mounts(mi);
    assert_eq!(
        m["cpu"].mountpoint,
        std::path::Path::new("/sys/fs/cgroup/cpu,cpuacct")
    );
    assert_eq!(m["cpuacct"], m["cpu"]);
    assert_eq!(m["name=systemd"].root, "/x");
    assert_eq!(m.len(), 3);
}

#[test]
fn stats_json_shape() {
    let mut s = Stats::default();
    s.pids.current = 3;
    s.memory.raw.insert("cache".into(), 1);
    let v = serde_json::to_value(&s).unwrap();
    for k in ["cpu", "memory", "pids", "blkio", "hugetlb"] {
        assert!(v.get(k).is_some(), "{k}");
    }
    assert!(v["cpu"]["usage"].is_object() && v["cpu"]["throttling"].is_object());
    assert!(v["memory"]["usage"].is_object() && v["memory"]["swap"].is_object());
    assert!(v["memory"]["kernel"].is_object() && v["memory"]["raw"].is_object());
    assert_eq!(v["pids"]["current"], 3);
}

#[test]
fn v1_device_transition_is_incremental() {
    let target = res(r#"{"devices":[{"allow":false,"access":"rwm"},
        {"allow":true,"type":"c","major":10,"minor":200,"access":"rw"}]}"#);
    let rules = devices::effective_rules(target.devices().as_ref().unwrap());
    // Current: default list minus /dev/zero, plus an extra 4:1 entry and
    // /dev/null with read only.
    let current = "c *:* m\nb *:* m\nc 1:3 r\nc 1:7 rwm\nc 1:8 rwm\nc 1:9 rwm\n\
                   c 5:0 rwm\nc 5:2 rwm\nc 136:* rwm\nc 4:1 rwm\n";
    let w = devices::v1_transition(current, &rules).expect("whitelist to whitelist");
    assert_eq!(
        w,
        vec![
            (true, "c 1:3 wm".to_string()),
            (true, "c 1:5 rwm".to_string()),
            (true, "c 10:200 rw".to_string()),
            (false, "c 4:1 rwm".to_string()),
        ]
    );
    // From allow-all, or to allow-all, a full reset is needed.
    assert!(devices::v1_transition("a *:* rwm\n", &rules).is_none());
    let all = res(r#"{"devices":[{"allow":true,"access":"rwm"}]}"#);
    let all = devices::effective_rules(all.devices().as_ref().unwrap());
    assert!(devices::v1_transition(current, &all).is_none());
}

/// Unreadable lists and sizes: the texts are the ones before the parsers were typed.
#[test]
fn unreadable_values_keep_their_texts() {
    for (json, text) in [
        (
            r#"{"cpu":{"cpus":"0-x"}}"#,
            r#"linux.resources.cpu.cpus: "0-x" is not a list like "0-3,5" ("x" is not a number)"#,
        ),
        (
            r#"{"cpu":{"mems":"3-1"}}"#,
            r#"linux.resources.cpu.mems: "3-1": range 3-1 is reversed"#,
        ),
        (
            r#"{"cpu":{"cpus":"0-70000"}}"#,
            r#"linux.resources.cpu.cpus: "0-70000": range 0-70000 is too large"#,
        ),
        (
            r#"{"hugepageLimits":[{"pageSize":"2XB","limit":1}]}"#,
            r#"linux.resources.hugepageLimits[0].pageSize: "2XB" is not a size like "2MB" or "1GB""#,
        ),
    ] {
        assert_eq!(err_of(json), text);
    }
}

/// An unreadable list keeps the number's parse error as its source.
#[test]
fn unreadable_values_keep_their_source() {
    let e = validate(&res(r#"{"cpu":{"cpus":"1,x"}}"#)).unwrap_err();
    let CgroupError::Parse { field, source } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(field, "linux.resources.cpu.cpus");
    assert!(matches!(source, ParseError::ListItem { item, .. } if item == "x"));
    let int = std::error::Error::source(source).expect("the ParseIntError");
    assert!(int.downcast_ref::<std::num::ParseIntError>().is_some());
    assert!(matches!(parse_page_size("2M"), Err(ParseError::PageSize(s)) if s == "2M"));
}

/// The refusals that were `Invalid(String)`: their texts, and the errno where one exists.
#[test]
fn plain_refusals_are_typed() {
    let e = open("rel/path").err().expect("a relative path is refused");
    assert_eq!(
        e.to_string(),
        "cgroup path \"rel/path\" must be absolute (see resolve_path)"
    );
    assert!(matches!(e, CgroupError::RelativePath { .. }));
    let e = v2::signal_all(&[i32::MAX], 9999).unwrap_err();
    assert_eq!(e.to_string(), "invalid signal 9999");
    assert!(matches!(
        e,
        CgroupError::BadSignal {
            signal: 9999,
            source: nix::errno::Errno::EINVAL
        }
    ));
    let e = CgroupError::Removed {
        path: "/sys/fs/cgroup/x".into(),
    };
    assert_eq!(
        e.to_string(),
        "/sys/fs/cgroup/x: cgroup removed while waiting for OOM events"
    );
    let e = CgroupError::NoSystemd {
        unit: "casulo-a.scope".into(),
    };
    assert_eq!(
        e.to_string(),
        "systemd unit casulo-a.scope: systemd is not running on this host \
         (/run/systemd/system is missing); the systemd cgroup driver needs it"
    );
}

/// A program the verifier refuses: the error says the verifier's log and keeps bpf(2)'s
/// errno along its sources (it was text only). Needs root (CAP_BPF); skipped, saying so,
/// without it.
#[test]
fn verifier_refusal_keeps_the_errno() {
    if !nix::unistd::geteuid().is_root() {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI runs as root");
        eprintln!("skipped: loading a bpf program needs root");
        return;
    }
    // `exit` without setting r0: "R0 !read_ok".
    let exit = devices::Insn {
        code: 0x95,
        regs: 0,
        off: 0,
        imm: 0,
    };
    let e = sys::load_device_prog(&[exit]).unwrap_err();
    assert!(e.to_string().contains("; verifier: "), "{e}");
    let inner = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<sys::VerifierRefusal>())
        .expect("the refusal with the log");
    assert_eq!(inner.source.raw_os_error(), Some(libc::EACCES), "{e}");
    assert_eq!(crate::ChildError::of(&e).errno, Some(nix::errno::Errno::EACCES));
}
