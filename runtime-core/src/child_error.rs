//! [`ChildError`]: what a process the runtime cloned (the helper, the init, an exec'd
//! process) reports to the runtime. A leaf module: the process side and `rootfs` use it
//! without depending on the library's `Error`.

use nix::errno::Errno;

fn errno_text(e: &Errno) -> String {
    e.desc().to_lowercase()
}

/// An error a process the runtime cloned reported over its channel (or, after `Ready`,
/// the exec fifo): the child's one-line message, built there by its error's `Display`,
/// and the errno behind it when a syscall failed, so an embedder can match the kind
/// (ENOENT for a missing executable path, EACCES…).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ChildError {
    /// The child's message (names the config field or step).
    pub message: String,
    /// The errno, when a syscall failed.
    #[source]
    pub errno: Option<Errno>,
}

impl ChildError {
    /// `what` failed with `errno`.
    pub fn sys(what: impl std::fmt::Display, errno: Errno) -> ChildError {
        ChildError {
            message: format!("{what}: {}", errno_text(&errno)),
            errno: Some(errno),
        }
    }

    /// A failure without an errno.
    pub fn msg(message: impl Into<String>) -> ChildError {
        ChildError {
            message: message.into(),
            errno: None,
        }
    }

    /// `what` failed with the typed error `e` (its errno kept).
    pub fn context(
        what: impl std::fmt::Display,
        e: &(dyn std::error::Error + 'static),
    ) -> ChildError {
        ChildError {
            message: format!("{what}: {e}"),
            errno: ChildError::of(e).errno,
        }
    }

    /// A typed error of the child's side: its message, and the first errno found along
    /// its chain of sources.
    pub fn of(e: &(dyn std::error::Error + 'static)) -> ChildError {
        let mut errno = None;
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cur {
            if let Some(n) = c.downcast_ref::<Errno>() {
                errno = Some(*n);
            } else if let Some(n) = c.downcast_ref::<ChildError>().and_then(|c| c.errno) {
                errno = Some(n);
            } else if let Some(n) = c
                .downcast_ref::<std::io::Error>()
                .and_then(|i| i.raw_os_error())
            {
                errno = Some(Errno::from_raw(n));
            }
            if errno.is_some() {
                break;
            }
            cur = c.source();
        }
        ChildError {
            message: e.to_string(),
            errno,
        }
    }
}
