//! Checker failures that runc 1.1.5 (Debian) shows on this kind of host,
//! with the reason for each. A failure matches an entry when its description
//! (`<section>: <what>: expected …`) starts with the entry's prefix.

/// `(failure prefix, reason)` pairs of known runc differences.
pub const KNOWN_RUNC_DIFFERENCES: &[(&str, &str)] = &[(
    "Mounts: /sys/fs/cgroup ro:",
    "cgroup v1 host: runc mounts a rw tmpfs at /sys/fs/cgroup and makes only the \
     per-controller cgroup mounts below it read-only (checked separately)",
)];

/// The reason a failure is a known runc difference, if it is one.
pub fn known_runc_difference(failure: &str) -> Option<&'static str> {
    KNOWN_RUNC_DIFFERENCES
        .iter()
        .find(|(prefix, _)| failure.starts_with(prefix))
        .map(|(_, why)| *why)
}

/// True when `runtime` looks like runc (its file name starts with "runc").
pub fn is_runc(runtime: &std::path::Path) -> bool {
    runtime
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("runc"))
}

/// The failures of `failures` that are not excused: for runc, those not in
/// [`KNOWN_RUNC_DIFFERENCES`]; for any other runtime, all of them.
pub fn unexpected<'a>(runtime: &std::path::Path, failures: &'a [String]) -> Vec<&'a String> {
    failures
        .iter()
        .filter(|f| !(is_runc(runtime) && known_runc_difference(f).is_some()))
        .collect()
}
