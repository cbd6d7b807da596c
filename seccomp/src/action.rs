//! Seccomp actions and their `SECCOMP_RET_*` encodings.

use oci_spec::runtime::LinuxSeccompAction;

/// `SECCOMP_RET_KILL_PROCESS`
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `SECCOMP_RET_KILL_THREAD` (also `SECCOMP_RET_KILL`)
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
/// `SECCOMP_RET_TRAP`
pub const RET_TRAP: u32 = 0x0003_0000;
/// `SECCOMP_RET_ERRNO`
pub const RET_ERRNO: u32 = 0x0005_0000;
/// `SECCOMP_RET_USER_NOTIF`
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// `SECCOMP_RET_TRACE`
pub const RET_TRACE: u32 = 0x7ff0_0000;
/// `SECCOMP_RET_LOG`
pub const RET_LOG: u32 = 0x7ffc_0000;
/// `SECCOMP_RET_ALLOW`
pub const RET_ALLOW: u32 = 0x7fff_0000;
/// `SECCOMP_RET_DATA`: the low 16 bits carry the errno or trace message.
pub const RET_DATA: u32 = 0x0000_ffff;

/// Largest errno the kernel passes through (`MAX_ERRNO`); larger values are clamped.
pub const MAX_ERRNO: u32 = 4095;

/// A validated action, with its data (errno or trace message) resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `SCMP_ACT_KILL` / `SCMP_ACT_KILL_THREAD`
    KillThread,
    /// `SCMP_ACT_KILL_PROCESS`
    KillProcess,
    /// `SCMP_ACT_TRAP`
    Trap,
    /// `SCMP_ACT_ERRNO` with its errno (EPERM when `errnoRet` is absent).
    Errno(u16),
    /// `SCMP_ACT_TRACE` with its message for the tracer (EPERM when absent, as runc).
    Trace(u16),
    /// `SCMP_ACT_ALLOW`
    Allow,
    /// `SCMP_ACT_LOG`
    Log,
    /// `SCMP_ACT_NOTIFY`
    Notify,
}

impl Action {
    /// The 32-bit value a BPF `ret` returns for this action.
    pub fn ret(self) -> u32 {
        match self {
            Action::KillThread => RET_KILL_THREAD,
            Action::KillProcess => RET_KILL_PROCESS,
            Action::Trap => RET_TRAP,
            Action::Errno(e) => RET_ERRNO | u32::from(e),
            Action::Trace(m) => RET_TRACE | u32::from(m),
            Action::Allow => RET_ALLOW,
            Action::Log => RET_LOG,
            Action::Notify => RET_USER_NOTIF,
        }
    }

    /// Actions that let the syscall run (or leave it to a tracer): runc does not
    /// turn unknown syscalls into ENOSYS when the default action is one of these.
    pub fn is_allow_like(self) -> bool {
        matches!(self, Action::Allow | Action::Log | Action::Trace(_))
    }

    /// Validates `errnoRet` against the action; `field` names the action's JSON path
    /// (its sibling `errnoRet`/`defaultErrnoRet` is named in errors).
    pub(crate) fn from_oci(
        action: LinuxSeccompAction,
        errno_ret: Option<u32>,
        errno_field: &str,
    ) -> Result<Action, crate::SeccompError> {
        use LinuxSeccompAction as A;
        let data = |limit: u32| -> Result<u16, crate::SeccompError> {
            match errno_ret {
                None => Ok(libc::EPERM as u16),
                Some(v) if v <= limit => Ok(v as u16),
                Some(v) => Err(crate::SeccompError::invalid(
                    errno_field,
                    format!("{v} is above {limit}"),
                )),
            }
        };
        let act = match action {
            A::ScmpActErrno => return Ok(Action::Errno(data(MAX_ERRNO)?)),
            A::ScmpActTrace => return Ok(Action::Trace(data(RET_DATA)?)),
            A::ScmpActKill | A::ScmpActKillThread => Action::KillThread,
            A::ScmpActKillProcess => Action::KillProcess,
            A::ScmpActTrap => Action::Trap,
            A::ScmpActAllow => Action::Allow,
            A::ScmpActLog => Action::Log,
            A::ScmpActNotify => Action::Notify,
        };
        if let Some(v) = errno_ret {
            return Err(crate::SeccompError::invalid(
                errno_field,
                format!("{v} given but action {action} takes no errno (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)"),
            ));
        }
        Ok(act)
    }
}
