//! What this compiler accepts, for the runtime's `features` output (runtime-spec
//! features-linux.md "seccomp"): every list is derived from the compiler's own mapping
//! functions, so it cannot claim more than `compile` takes.

use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator};

use crate::action::Action;
use crate::arch::Abi;

/// Every OCI action name.
const ALL_ACTIONS: [LinuxSeccompAction; 9] = [
    LinuxSeccompAction::ScmpActAllow,
    LinuxSeccompAction::ScmpActErrno,
    LinuxSeccompAction::ScmpActKill,
    LinuxSeccompAction::ScmpActKillProcess,
    LinuxSeccompAction::ScmpActKillThread,
    LinuxSeccompAction::ScmpActLog,
    LinuxSeccompAction::ScmpActNotify,
    LinuxSeccompAction::ScmpActTrace,
    LinuxSeccompAction::ScmpActTrap,
];

const ALL_OPERATORS: [LinuxSeccompOperator; 7] = [
    LinuxSeccompOperator::ScmpCmpEq,
    LinuxSeccompOperator::ScmpCmpGe,
    LinuxSeccompOperator::ScmpCmpGt,
    LinuxSeccompOperator::ScmpCmpLe,
    LinuxSeccompOperator::ScmpCmpLt,
    LinuxSeccompOperator::ScmpCmpMaskedEq,
    LinuxSeccompOperator::ScmpCmpNe,
];

const ALL_FLAGS: [LinuxSeccompFilterFlag; 4] = [
    LinuxSeccompFilterFlag::SeccompFilterFlagLog,
    LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
    LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
    LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
];

fn name(v: serde_json::Result<serde_json::Value>) -> String {
    v.ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// `SCMP_ACT_*` names the compiler accepts (as a rule's action).
pub fn actions() -> Vec<String> {
    ALL_ACTIONS
        .iter()
        .filter(|a| Action::from_oci(**a, None, "features").is_ok())
        .map(|a| name(serde_json::to_value(a)))
        .collect()
}

/// `SCMP_CMP_*` names (every operator maps to a comparison).
pub fn operators() -> Vec<String> {
    ALL_OPERATORS
        .iter()
        .map(|o| {
            let _ = crate::profile::op_from(*o);
            name(serde_json::to_value(o))
        })
        .collect()
}

/// `SCMP_ARCH_*` names with a syscall table here.
pub fn archs() -> Vec<String> {
    let mut v: Vec<String> = Abi::ALL.iter().map(|a| a.name().to_string()).collect();
    v.sort();
    v
}

/// `SECCOMP_FILTER_FLAG_*` names the profile may carry.
pub fn flags() -> Vec<String> {
    ALL_FLAGS
        .iter()
        .map(|f| name(serde_json::to_value(f)))
        .collect()
}
