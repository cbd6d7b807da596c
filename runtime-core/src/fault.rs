//! Test-only fault points: with `CASULO_FAULT_AT=<stage>` in its environment, the
//! runtime stops itself (SIGSTOP) when it reaches `<stage>`, so a fault test can
//! SIGKILL it there deterministically (`integration/tests/faults.rs`). Not for
//! production use; without the variable a fault point is one cached load and compare.
//!
//! Stages: `before-clone` (state written with pid 0, cgroup made, no init yet),
//! `after-clone` (the init exists, id maps and cgroup join not done),
//! `before-cgroup-join` (`Go` sent: the init is making its mounts, not yet in its cgroup),
//! `before-state` (the init is ready, its pid not yet in `state.json`).

use std::ffi::OsString;
use std::sync::OnceLock;

/// Stops the calling process with SIGSTOP when `CASULO_FAULT_AT` equals `stage`.
pub fn fault_point(stage: &str) {
    static AT: OnceLock<Option<OsString>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var_os("CASULO_FAULT_AT"));
    if at.as_deref().is_some_and(|a| a == stage) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
}
