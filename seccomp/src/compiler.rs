//! Turns a [`Model`] into a BPF program: an architecture check, then per
//! architecture a balanced binary search over syscall-number intervals, whose
//! leaves are either a single `ret` or the ordered rule chain of one syscall.
//!
//! seccompiler (0.5) is not used: its `SeccompFilter` has one match action and one
//! architecture per filter, its `apply_filter` always sets no_new_privs and it
//! cannot ask for a notify listener, and its per-rule code is a linear chain. The
//! pieces that would fit (the `sock_filter` type and seccomp(2) call) are a
//! handful of lines, so this crate generates the whole program itself.

use libc::sock_filter;

use crate::action::Action;
use crate::arch::Abi;
use crate::asm::{Asm, Label, ALU_AND_K, JEQ_K, JGE_K, JGT_K, LD_W_ABS};
use crate::profile::{Cond, Model, Op, Rule, RET_BAD_ARCH, RET_ENOSYS};

/// The kernel's limit on a seccomp program (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

/// Offset of `seccomp_data.nr`.
const OFF_NR: u32 = 0;
/// Offset of `seccomp_data.arch`.
const OFF_ARCH: u32 = 4;

/// Offset of the low 32-bit word of `seccomp_data.args[index]` (little endian).
fn off_lo(index: u8) -> u32 {
    16 + 8 * u32::from(index)
}

/// What the program does for one interval of syscall numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Leaf {
    /// Always return this value.
    Ret(u32),
    /// Try these rules in order, else return `fallback`.
    Chain {
        rules: Vec<Rule>,
        narrow: bool,
        fallback: u32,
    },
}

/// An interval `[start, next interval's start)` of syscall numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interval {
    start: u32,
    leaf: Leaf,
}

fn leaf_for(rules: &[Rule], default: Action, narrow: bool) -> Leaf {
    // Rules after an unconditional one can never be reached.
    let end = rules
        .iter()
        .position(|r| r.conds.is_empty())
        .map_or(rules.len(), |i| i + 1);
    let rules = &rules[..end];
    if rules.iter().all(|r| r.action == default) {
        return Leaf::Ret(default.ret());
    }
    if rules[0].conds.is_empty() {
        return Leaf::Ret(rules[0].action.ret());
    }
    Leaf::Chain {
        rules: rules.to_vec(),
        narrow,
        fallback: default.ret(),
    }
}

/// Intervals covering `[lo, hi]` for one ABI, following [`Model::decide`].
fn abi_intervals(model: &Model, abi: Abi, out: &mut Vec<Interval>) {
    let (lo, hi) = abi.nr_range();
    let default = model.default.ret();
    let after_max = if model.enosys_above_max {
        RET_ENOSYS
    } else {
        default
    };
    // `cursor` is the first number not yet covered (None past u32::MAX).
    let mut cursor = Some(lo);
    for (&(_, nr), rules) in model.rules.range((abi, lo)..=(abi, hi)) {
        if let Some(c) = cursor.filter(|&c| c < nr) {
            // A gap below a named syscall, so below the maximum: the default.
            out.push(Interval {
                start: c,
                leaf: Leaf::Ret(default),
            });
        }
        out.push(Interval {
            start: nr,
            leaf: leaf_for(rules, model.default, abi.args_32bit()),
        });
        cursor = nr.checked_add(1);
    }
    if let Some(c) = cursor.filter(|&c| c <= hi) {
        let named_any = model.max_nr.contains_key(&abi);
        out.push(Interval {
            start: c,
            leaf: Leaf::Ret(if named_any { after_max } else { default }),
        });
    }
}

/// Intervals covering the whole 32-bit number space of one audit arch.
fn arch_intervals(model: &Model, audit_arch: u32) -> Vec<Interval> {
    let mut out = Vec::new();
    // The ABIs sharing this audit arch, in number order: x86_64 and x32 split
    // AUDIT_ARCH_X86_64 on X32_SYSCALL_BIT; every other arch has one ABI.
    for abi in Abi::ALL
        .into_iter()
        .filter(|a| a.audit_arch() == audit_arch)
    {
        if model.abis.contains(&abi) {
            abi_intervals(model, abi, &mut out);
        } else {
            // An unlisted half of a listed audit arch (e.g. x32 when only x86_64
            // is listed) is a bad arch, as in libseccomp.
            out.push(Interval {
                start: abi.nr_range().0,
                leaf: Leaf::Ret(RET_BAD_ARCH),
            });
        }
    }
    // Merge neighbours that behave the same.
    out.dedup_by(|next, prev| next.leaf == prev.leaf);
    debug_assert_eq!(out.first().map(|i| i.start), Some(0));
    debug_assert!(out.windows(2).all(|w| w[0].start < w[1].start));
    out
}

/// Emits code for one condition; falls to `succ` when it holds, else `fail`.
fn emit_cond(asm: &mut Asm, c: &Cond, succ: Label, fail: Label, narrow: bool) -> Label {
    let lo_off = off_lo(c.index);
    let hi_off = lo_off + 4;
    let (vlo, vhi) = (c.value as u32, (c.value >> 32) as u32);
    let (dlo, dhi) = (c.value_two as u32, (c.value_two >> 32) as u32);
    // The low-word test, reached with A = low word.
    let low = |asm: &mut Asm| -> Label {
        match c.op {
            Op::Eq => asm.jump(JEQ_K, vlo, succ, fail),
            Op::Ne => asm.jump(JEQ_K, vlo, fail, succ),
            Op::Gt => asm.jump(JGT_K, vlo, succ, fail),
            Op::Ge => asm.jump(JGE_K, vlo, succ, fail),
            Op::Lt => asm.jump(JGE_K, vlo, fail, succ),
            Op::Le => asm.jump(JGT_K, vlo, fail, succ),
            Op::MaskedEq => {
                asm.jump(JEQ_K, dlo, succ, fail);
                asm.stmt(ALU_AND_K, vlo)
            }
        }
    };
    if narrow {
        low(asm);
        return asm.stmt(LD_W_ABS, lo_off);
    }
    low(asm);
    let load_lo = asm.stmt(LD_W_ABS, lo_off);
    // The high-word test, reached with A = high word. For ordered comparisons the
    // high word decides unless it is equal, in which case the low word decides.
    match c.op {
        Op::Eq => {
            asm.jump(JEQ_K, vhi, load_lo, fail);
        }
        Op::Ne => {
            asm.jump(JEQ_K, vhi, load_lo, succ);
        }
        Op::Gt | Op::Ge => {
            let eq = asm.jump(JEQ_K, vhi, load_lo, fail);
            asm.jump(JGT_K, vhi, succ, eq);
        }
        Op::Lt | Op::Le => {
            let eq = asm.jump(JEQ_K, vhi, load_lo, succ);
            asm.jump(JGT_K, vhi, fail, eq);
        }
        Op::MaskedEq => {
            asm.jump(JEQ_K, dhi, load_lo, fail);
            asm.stmt(ALU_AND_K, vhi);
        }
    }
    asm.stmt(LD_W_ABS, hi_off)
}

fn emit_leaf(asm: &mut Asm, leaf: &Leaf) -> Label {
    match leaf {
        Leaf::Ret(k) => asm.ret(*k),
        Leaf::Chain {
            rules,
            narrow,
            fallback,
        } => {
            let mut next_rule = asm.ret(*fallback);
            for rule in rules.iter().rev() {
                let mut succ = asm.ret(rule.action.ret());
                for c in rule.conds.iter().rev() {
                    succ = emit_cond(asm, c, succ, next_rule, *narrow);
                }
                next_rule = succ;
            }
            next_rule
        }
    }
}

/// Balanced binary search over `ivs` (A holds the syscall number on entry).
fn emit_tree(asm: &mut Asm, ivs: &[Interval]) -> Label {
    if ivs.len() == 1 {
        return emit_leaf(asm, &ivs[0].leaf);
    }
    let mid = ivs.len() / 2;
    let right = emit_tree(asm, &ivs[mid..]);
    let left = emit_tree(asm, &ivs[..mid]);
    asm.jump(JGE_K, ivs[mid].start, right, left)
}

/// Compiles a validated model into a BPF program.
pub fn compile_model(model: &Model) -> Result<Vec<sock_filter>, crate::SeccompError> {
    let mut arches: Vec<u32> = Vec::new();
    for abi in &model.abis {
        if !arches.contains(&abi.audit_arch()) {
            arches.push(abi.audit_arch());
        }
    }
    let mut asm = Asm::default();
    let mut bodies = Vec::new();
    for &arch in arches.iter().rev() {
        let ivs = arch_intervals(model, arch);
        emit_tree(&mut asm, &ivs);
        bodies.push((arch, asm.stmt(LD_W_ABS, OFF_NR)));
    }
    let mut next = asm.ret(RET_BAD_ARCH);
    for (arch, body) in bodies {
        next = asm.jump(JEQ_K, arch, body, next);
    }
    asm.stmt(LD_W_ABS, OFF_ARCH);
    if asm.len() > MAX_INSNS {
        return Err(crate::SeccompError::TooLong(asm.len()));
    }
    Ok(asm.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;
    use crate::arch::{AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
    use std::collections::BTreeMap;

    fn model(rules: Vec<(u32, Rule)>, default: Action) -> Model {
        let mut m = Model {
            default,
            abis: vec![Abi::X86_64],
            flags: 0,
            rules: BTreeMap::new(),
            max_nr: BTreeMap::new(),
            enosys_above_max: !default.is_allow_like(),
            listener_path: None,
            listener_metadata: None,
            uses_notify: false,
        };
        for (nr, r) in rules {
            m.rules.entry((Abi::X86_64, nr)).or_default().push(r);
            let e = m.max_nr.entry(Abi::X86_64).or_insert(nr);
            *e = (*e).max(nr);
        }
        m
    }

    #[test]
    fn intervals_cover_and_merge() {
        let allow = |nr| {
            (
                nr,
                Rule {
                    action: Action::Allow,
                    conds: vec![],
                },
            )
        };
        let m = model(
            vec![allow(0), allow(1), allow(2), allow(5)],
            Action::Errno(1),
        );
        let ivs = arch_intervals(&m, AUDIT_ARCH_X86_64);
        let starts: Vec<u32> = ivs.iter().map(|i| i.start).collect();
        // [0,3) allow, [3,5) EPERM, [5] allow, (5, 2^30) ENOSYS, x32 half bad arch.
        assert_eq!(starts, vec![0, 3, 5, 6, X32_SYSCALL_BIT]);
        assert_eq!(ivs[3].leaf, Leaf::Ret(RET_ENOSYS));
        assert_eq!(ivs[4].leaf, Leaf::Ret(RET_BAD_ARCH));
    }

    #[test]
    fn far_jumps_get_trampolines() {
        // Long chains push the right subtrees more than 255 instructions away.
        let rules: Vec<(u32, Rule)> = (0..200)
            .map(|nr| {
                (
                    nr * 2,
                    Rule {
                        action: Action::Errno(nr as u16),
                        conds: vec![Cond {
                            index: 0,
                            op: Op::Gt,
                            value: u64::from(nr) << 33,
                            value_two: 0,
                        }],
                    },
                )
            })
            .collect();
        let m = model(rules, Action::Allow);
        let prog = compile_model(&m).unwrap();
        assert!(prog.len() > 256);
        assert!(prog.iter().any(|i| i.code == crate::asm::JA));
        for nr in 0..400u32 {
            let args = [(u64::from(nr / 2) << 33) + 1, 0, 0, 0, 0, 0];
            let got = crate::interp::run(&prog, AUDIT_ARCH_X86_64, nr, &args).unwrap();
            assert_eq!(got.ret, m.decide(AUDIT_ARCH_X86_64, nr, &args), "nr {nr}");
        }
    }
}
