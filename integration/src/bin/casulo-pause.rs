//! The pod sandbox's init for `tests/engines_cri.rs` (what Kubernetes' pause image
//! does): holds the pod's namespaces, reaps every child re-parented to it, exits 0 on
//! SIGTERM or SIGINT. Built statically (`cargo static-release --bin casulo-pause`).
//!
//! The signals are blocked and taken with sigwait: a blocked signal is queued even for
//! a pid namespace's init without a handler, so no handler (and no `unsafe`) is needed.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

fn main() {
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        set.add(s);
    }
    if let Err(e) = set.thread_block() {
        eprintln!("casulo-pause: blocking signals: {e}");
        std::process::exit(1);
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => reap(),
            Ok(_) => std::process::exit(0),
            Err(e) => {
                eprintln!("casulo-pause: sigwait: {e}");
                std::process::exit(1);
            }
        }
    }
}

/// Waits for every child that has exited, without blocking.
fn reap() {
    while let Ok(st) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if st == WaitStatus::StillAlive {
            break;
        }
    }
}
