//! Validation of an OCI `linux.seccomp` profile into a [`Model`], and the reference
//! meaning of a model ([`Model::decide`]) that the compiled BPF must agree with.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompFilterFlag, LinuxSeccompOperator};

use crate::action::{Action, RET_ERRNO, RET_KILL_PROCESS};
use crate::arch::Abi;
use crate::SeccompError;

/// `SECCOMP_FILTER_FLAG_TSYNC`
pub const FLAG_TSYNC: u32 = 1;
/// `SECCOMP_FILTER_FLAG_LOG`
pub const FLAG_LOG: u32 = 1 << 1;
/// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`
pub const FLAG_SPEC_ALLOW: u32 = 1 << 2;
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`
pub const FLAG_NEW_LISTENER: u32 = 1 << 3;
/// `SECCOMP_FILTER_FLAG_TSYNC_ESRCH`
pub const FLAG_TSYNC_ESRCH: u32 = 1 << 4;
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`
pub const FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// What the filter returns for a syscall of an architecture the profile does not
/// list (libseccomp's "bad arch" action). KILL_PROCESS rather than libseccomp's
/// KILL_THREAD: a half-killed multi-threaded process is worse than a dead one.
pub const RET_BAD_ARCH: u32 = RET_KILL_PROCESS;
/// `SECCOMP_RET_ERRNO | ENOSYS`, for syscalls newer than the profile.
pub const RET_ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

/// A comparison operator (`SCMP_CMP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `arg != value`
    Ne,
    /// `arg < value`
    Lt,
    /// `arg <= value`
    Le,
    /// `arg == value`
    Eq,
    /// `arg >= value`
    Ge,
    /// `arg > value`
    Gt,
    /// `arg & value == valueTwo & value`
    MaskedEq,
}

/// One argument condition: `args[index] <op> value` (`value` is the mask and
/// `value_two` the expected value for `MaskedEq`). All comparisons are unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cond {
    /// Argument index, 0..=5.
    pub index: u8,
    /// Operator.
    pub op: Op,
    /// Operand (mask for `MaskedEq`).
    pub value: u64,
    /// Second operand (expected value for `MaskedEq`; otherwise unused).
    pub value_two: u64,
}

impl Cond {
    /// Whether `arg` satisfies the condition; 32-bit ABIs compare the low words only.
    pub fn matches(&self, arg: u64, args_32bit: bool) -> bool {
        let w = |v: u64| if args_32bit { v & 0xffff_ffff } else { v };
        let (a, v) = (w(arg), w(self.value));
        match self.op {
            Op::Ne => a != v,
            Op::Lt => a < v,
            Op::Le => a <= v,
            Op::Eq => a == v,
            Op::Ge => a >= v,
            Op::Gt => a > v,
            Op::MaskedEq => a & v == w(self.value_two),
        }
    }
}

/// One rule for one syscall: if every condition holds (AND), return `action`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Action taken when all conditions hold.
    pub action: Action,
    /// Conditions, all of which must hold; empty means unconditional.
    pub conds: Vec<Cond>,
}

/// A validated profile, resolved to syscall numbers per ABI.
#[derive(Debug, Clone)]
pub struct Model {
    /// Action for syscalls that no rule matches.
    pub default: Action,
    /// Listed ABIs (the native one when the profile lists none), deduplicated.
    pub abis: Vec<Abi>,
    /// `SECCOMP_FILTER_FLAG_*` bits for seccomp(2).
    pub flags: u32,
    /// Rules per (ABI, syscall number), in profile order; tried in that order.
    pub rules: BTreeMap<(Abi, u32), Vec<Rule>>,
    /// Highest syscall number the profile names, per ABI.
    pub max_nr: BTreeMap<Abi, u32>,
    /// Whether syscalls above `max_nr` get ENOSYS instead of the default action.
    pub enosys_above_max: bool,
    /// `listenerPath`, when given.
    pub listener_path: Option<PathBuf>,
    /// `listenerMetadata`, when given.
    pub listener_metadata: Option<String>,
    /// Whether any rule uses `SCMP_ACT_NOTIFY`.
    pub uses_notify: bool,
}

const BASE: &str = "linux.seccomp";

pub(crate) fn op_from(op: LinuxSeccompOperator) -> Op {
    use LinuxSeccompOperator as O;
    match op {
        O::ScmpCmpNe => Op::Ne,
        O::ScmpCmpLt => Op::Lt,
        O::ScmpCmpLe => Op::Le,
        O::ScmpCmpEq => Op::Eq,
        O::ScmpCmpGe => Op::Ge,
        O::ScmpCmpGt => Op::Gt,
        O::ScmpCmpMaskedEq => Op::MaskedEq,
    }
}

/// `architectures`, deduplicated; the host's own when the list is empty.
fn abis_of(profile: &LinuxSeccomp) -> Result<Vec<Abi>, SeccompError> {
    let mut abis = Vec::new();
    for (i, arch) in profile.architectures().iter().flatten().enumerate() {
        let abi = Abi::from_oci(*arch).ok_or_else(|| {
            SeccompError::invalid(
                format!("{BASE}.architectures[{i}]"),
                format!("{arch} is not supported (supported: SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32, SCMP_ARCH_AARCH64, SCMP_ARCH_ARM)"),
            )
        })?;
        if !abis.contains(&abi) {
            abis.push(abi);
        }
    }
    if abis.is_empty() {
        abis.push(Abi::native().ok_or_else(|| {
            SeccompError::invalid(
                format!("{BASE}.architectures"),
                "empty, and this host's architecture has no syscall table",
            )
        })?);
    }
    Ok(abis)
}

/// A rule's `args` as conditions (a `valueTwo` only `SCMP_CMP_MASKED_EQ` uses is a
/// warning).
fn conds_of(
    sc: &oci_spec::runtime::LinuxSyscall,
    field: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Cond>, SeccompError> {
    let mut conds = Vec::new();
    for (ai, arg) in sc.args().iter().flatten().enumerate() {
        let afield = format!("{field}.args[{ai}]");
        if arg.index() > 5 {
            return Err(SeccompError::invalid(
                format!("{afield}.index"),
                format!("{} is above 5", arg.index()),
            ));
        }
        let op = op_from(arg.op());
        if op != Op::MaskedEq && arg.value_two().is_some_and(|v| v != 0) {
            warnings.push(format!(
                "{afield}.valueTwo: ignored, only SCMP_CMP_MASKED_EQ uses it"
            ));
        }
        let mut value_two = arg.value_two().unwrap_or(0);
        if op == Op::MaskedEq {
            // As libseccomp: bits of the expected value outside the mask
            // are ignored (the expected value is masked too).
            value_two &= arg.value();
        }
        conds.push(Cond {
            index: arg.index() as u8,
            op,
            value: arg.value(),
            value_two,
        });
    }
    Ok(conds)
}

/// The `flags` as `SECCOMP_FILTER_FLAG_*` bits.
fn flags_of(profile: &LinuxSeccomp) -> u32 {
    let mut flags = 0;
    for flag in profile.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
        };
    }
    flags
}

impl Model {
    /// Validates `profile`. Syscall names unknown to an ABI's table are skipped and
    /// reported in the returned warnings (runc logs those at debug level).
    pub fn from_oci(profile: &LinuxSeccomp) -> Result<(Model, Vec<String>), SeccompError> {
        let mut warnings = Vec::new();
        let default = Action::from_oci(
            profile.default_action(),
            profile.default_errno_ret(),
            &format!("{BASE}.defaultErrnoRet"),
        )?;
        if default == Action::Notify {
            return Err(SeccompError::invalid(
                format!("{BASE}.defaultAction"),
                "SCMP_ACT_NOTIFY cannot be the default action (the runtime's own syscalls would block)",
            ));
        }

        let abis = abis_of(profile)?;

        let mut flags = flags_of(profile);

        let mut rules: BTreeMap<(Abi, u32), Vec<Rule>> = BTreeMap::new();
        let mut max_nr: BTreeMap<Abi, u32> = BTreeMap::new();
        let mut uses_notify = false;
        for (si, sc) in profile.syscalls().iter().flatten().enumerate() {
            let field = format!("{BASE}.syscalls[{si}]");
            let action =
                Action::from_oci(sc.action(), sc.errno_ret(), &format!("{field}.errnoRet"))?;
            uses_notify |= action == Action::Notify;
            let conds = conds_of(sc, &field, &mut warnings)?;
            if sc.names().is_empty() {
                return Err(SeccompError::invalid(
                    format!("{field}.names"),
                    "empty: at least one syscall name is required",
                ));
            }
            for (ni, name) in sc.names().iter().enumerate() {
                if name.is_empty() {
                    return Err(SeccompError::invalid(
                        format!("{field}.names[{ni}]"),
                        "empty syscall name",
                    ));
                }
                for &abi in &abis {
                    match abi.resolve(name) {
                        Some(nr) => {
                            let m = max_nr.entry(abi).or_insert(nr);
                            *m = (*m).max(nr);
                            rules.entry((abi, nr)).or_default().push(Rule {
                                action,
                                conds: conds.clone(),
                            });
                        }
                        None => warnings.push(format!(
                            "{field}.names[{ni}]: unknown syscall {name:?} on {}, skipped",
                            abi.name()
                        )),
                    }
                }
            }
        }

        if uses_notify && profile.listener_path().is_none() {
            return Err(SeccompError::invalid(
                format!("{BASE}.listenerPath"),
                "required when a rule uses SCMP_ACT_NOTIFY",
            ));
        }
        if uses_notify {
            flags |= FLAG_NEW_LISTENER;
            if flags & FLAG_TSYNC != 0 {
                // The kernel refuses TSYNC with NEW_LISTENER unless TSYNC_ESRCH is set.
                flags |= FLAG_TSYNC_ESRCH;
            }
        } else if flags & FLAG_WAIT_KILLABLE_RECV != 0 {
            return Err(SeccompError::invalid(
                format!("{BASE}.flags"),
                "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs a SCMP_ACT_NOTIFY rule",
            ));
        }

        Ok((
            Model {
                default,
                abis,
                flags,
                rules,
                max_nr,
                enosys_above_max: !default.is_allow_like(),
                listener_path: profile.listener_path().clone(),
                listener_metadata: profile.listener_metadata().clone(),
                uses_notify,
            },
            warnings,
        ))
    }

    /// The ABI a `(seccomp_data.arch, nr)` pair belongs to, if the profile lists it.
    pub fn abi_of(&self, audit_arch: u32, nr: u32) -> Option<Abi> {
        self.abis.iter().copied().find(|a| {
            let (lo, hi) = a.nr_range();
            a.audit_arch() == audit_arch && nr >= lo && nr <= hi
        })
    }

    /// The reference meaning of the profile: the `SECCOMP_RET_*` value for a syscall.
    ///
    /// 1. An architecture (or, for x86_64/x32, a half of the number space) the
    ///    profile does not list gets [`RET_BAD_ARCH`].
    /// 2. A named syscall's rules are tried in profile order; the first whose
    ///    conditions all hold decides; if none holds, the default action.
    /// 3. A syscall the profile does not name gets the default action, except that
    ///    when the default is not allow-like (not ALLOW/LOG/TRACE) a number above the
    ///    highest one the profile names for that ABI gets ENOSYS: it is newer than
    ///    the profile, and ENOSYS makes libc fall back (e.g. clone3 → clone). This
    ///    is runc's rule.
    pub fn decide(&self, audit_arch: u32, nr: u32, args: &[u64; 6]) -> u32 {
        let Some(abi) = self.abi_of(audit_arch, nr) else {
            return RET_BAD_ARCH;
        };
        if let Some(rules) = self.rules.get(&(abi, nr)) {
            for r in rules {
                if r.conds
                    .iter()
                    .all(|c| c.matches(args[usize::from(c.index)], abi.args_32bit()))
                {
                    return r.action.ret();
                }
            }
            return self.default.ret();
        }
        match self.max_nr.get(&abi) {
            Some(&max) if self.enosys_above_max && nr > max => RET_ENOSYS,
            _ => self.default.ret(),
        }
    }
}
