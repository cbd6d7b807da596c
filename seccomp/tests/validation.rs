//! Bad profiles get clear errors naming the field; what oci-spec's serde already
//! refuses is refused at parse time.

use casulo_seccomp::{compile, SeccompError};
use oci_spec::runtime::LinuxSeccomp;

fn compile_err(json: &str) -> String {
    let profile: LinuxSeccomp = serde_json::from_str(json).expect("oci-spec parses it");
    match compile(&profile) {
        Err(e @ SeccompError::Invalid { .. }) => e.to_string(),
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(_) => panic!("compiled a bad profile: {json}"),
    }
}

fn parse_err(json: &str) -> String {
    serde_json::from_str::<LinuxSeccomp>(json)
        .expect_err("oci-spec refuses it")
        .to_string()
}

#[test]
fn arg_index_above_5() {
    let e = compile_err(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
          {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
          {"names": ["write"], "action": "SCMP_ACT_ALLOW"},
          {"names": ["close"], "action": "SCMP_ACT_ALLOW"},
          {"names": ["dup"], "action": "SCMP_ACT_ERRNO",
           "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
    );
    assert_eq!(e, "linux.seccomp.syscalls[3].args[0].index: 7 is above 5");
}

#[test]
fn errno_ret_with_a_non_errno_action() {
    let e = compile_err(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
          {"names": ["read"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]}"#,
    );
    assert!(
        e.starts_with("linux.seccomp.syscalls[0].errnoRet: 1 given but action SCMP_ACT_KILL"),
        "{e}"
    );
    let e = compile_err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 5}"#);
    assert!(
        e.starts_with("linux.seccomp.defaultErrnoRet: 5 given but action SCMP_ACT_ALLOW"),
        "{e}"
    );
}

#[test]
fn errno_out_of_range() {
    let e = compile_err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000}"#);
    assert_eq!(e, "linux.seccomp.defaultErrnoRet: 5000 is above 4095");
    let e = compile_err(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
          {"names": ["read"], "action": "SCMP_ACT_TRACE", "errnoRet": 70000}]}"#,
    );
    assert_eq!(
        e,
        "linux.seccomp.syscalls[0].errnoRet: 70000 is above 65535"
    );
}

#[test]
fn architecture_without_a_table() {
    let e = compile_err(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_MIPS"]}"#,
    );
    assert!(
        e.starts_with("linux.seccomp.architectures[1]: SCMP_ARCH_MIPS is not supported"),
        "{e}"
    );
}

#[test]
fn notify_needs_a_listener_path_and_cannot_be_the_default() {
    let e = compile_err(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
          {"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}"#,
    );
    assert_eq!(
        e,
        "linux.seccomp.listenerPath: required when a rule uses SCMP_ACT_NOTIFY"
    );
    let e = compile_err(r#"{"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/a"}"#);
    assert!(
        e.starts_with("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot"),
        "{e}"
    );
}

#[test]
fn wait_killable_recv_needs_notify() {
    let e = compile_err(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#,
    );
    assert!(e.starts_with("linux.seccomp.flags: "), "{e}");
}

#[test]
fn empty_names() {
    let e = compile_err(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_KILL"}]}"#,
    );
    assert!(
        e.starts_with("linux.seccomp.syscalls[0].names: empty"),
        "{e}"
    );
}

#[test]
fn unknown_strings_are_refused_by_oci_spec_at_parse_time() {
    let e = parse_err(r#"{"defaultAction": "SCMP_ACT_EXPLODE"}"#);
    assert!(e.contains("SCMP_ACT_EXPLODE"), "{e}");
    let e = parse_err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}"#);
    assert!(e.contains("SCMP_ARCH_Z80"), "{e}");
    let e =
        parse_err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_MAGIC"]}"#);
    assert!(e.contains("SECCOMP_FILTER_FLAG_MAGIC"), "{e}");
    let e = parse_err(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
          {"names": ["read"], "action": "SCMP_ACT_ALLOW",
           "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]}"#,
    );
    assert!(e.contains("SCMP_CMP_ALMOST"), "{e}");
}

#[test]
fn unknown_syscall_names_are_warnings() {
    let profile: LinuxSeccomp = serde_json::from_str(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
          "syscalls": [{"names": ["open", "read", "frobnicate"], "action": "SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    let c = compile(&profile).unwrap();
    assert_eq!(
        c.warnings,
        vec![
            "linux.seccomp.syscalls[0].names[0]: unknown syscall \"open\" on SCMP_ARCH_AARCH64, skipped",
            "linux.seccomp.syscalls[0].names[2]: unknown syscall \"frobnicate\" on SCMP_ARCH_X86_64, skipped",
            "linux.seccomp.syscalls[0].names[2]: unknown syscall \"frobnicate\" on SCMP_ARCH_AARCH64, skipped",
        ]
    );
}

#[test]
fn flags_and_listener_in_the_filter() {
    let profile: LinuxSeccomp = serde_json::from_str(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock", "listenerMetadata": "m",
          "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
          "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}"#,
    )
    .unwrap();
    let f = compile(&profile).unwrap().filter;
    // TSYNC | LOG | SPEC_ALLOW | NEW_LISTENER | TSYNC_ESRCH
    assert_eq!(f.flags(), 1 | 2 | 4 | 8 | 16);
    assert!(f.needs_listener());
    assert_eq!(
        f.listener().unwrap().path,
        std::path::Path::new("/run/agent.sock")
    );
    assert_eq!(f.listener().unwrap().metadata.as_deref(), Some("m"));
    let plain: LinuxSeccomp =
        serde_json::from_str(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
    let f = compile(&plain).unwrap().filter;
    assert_eq!(f.flags(), 0);
    assert!(!f.needs_listener());
}
