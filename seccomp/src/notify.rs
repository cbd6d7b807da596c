//! Handing a `SCMP_ACT_NOTIFY` listener to the seccomp agent at `listenerPath`.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use oci_spec::runtime::State;

use crate::{sys, SeccompError};

/// Name of the listener fd in the state's `fds` array.
pub const SECCOMP_FD_NAME: &str = "seccompFd";

/// The runtime-spec "Container Process State" sent with the listener fd:
/// `{ociVersion, fds: ["seccompFd"], pid, metadata, state}`.
pub fn process_state_json(pid: i32, metadata: Option<&str>, state: &State) -> Vec<u8> {
    let mut v = serde_json::json!({
        "ociVersion": state.version(),
        "fds": [SECCOMP_FD_NAME],
        "pid": pid,
        "state": state,
    });
    if let Some(m) = metadata {
        v["metadata"] = serde_json::Value::from(m);
    }
    serde_json::to_vec(&v).expect("a JSON value always serializes")
}

/// Connects to the agent's unix socket at `listener_path` and sends `state_json`
/// with `fd` attached as `SCM_RIGHTS`. Does not allocate, so it may run in a
/// freshly cloned child.
pub fn send_listener(
    listener_path: &Path,
    state_json: &[u8],
    fd: BorrowedFd,
) -> Result<(), SeccompError> {
    let sock = sys::connect_unix(listener_path)
        .map_err(|e| SeccompError::io("connecting to the seccomp agent (listenerPath)", e))?;
    sys::send_with_fd(sock.as_fd(), state_json, fd)
        .map_err(|e| SeccompError::io("sending the seccomp listener fd", e))
}
