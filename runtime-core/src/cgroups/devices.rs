//! Device access rules: the effective rule list (user rules, then the default
//! allow list), its cgroup v1 `devices.allow`/`devices.deny` lines, and the
//! eBPF `BPF_PROG_TYPE_CGROUP_DEVICE` program that enforces it on cgroup v2.
//!
//! Semantics (as the v1 controller): everything is denied unless allowed; rules
//! apply in order, a later rule overriding an earlier one; a rule with type
//! `a`, no numbers and access `rwm` resets everything to allow or deny.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// Kind of device a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevType {
    /// Any device.
    All,
    /// Block devices.
    Block,
    /// Character devices.
    Char,
}

/// Access bits of a rule.
pub const ACC_MKNOD: u32 = 1;
/// Read access.
pub const ACC_READ: u32 = 2;
/// Write access.
pub const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One device rule with wildcards resolved (`None` = any number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Allow (true) or deny.
    pub allow: bool,
    /// Device kind.
    pub typ: DevType,
    /// Major number, `None` for `*`.
    pub major: Option<u32>,
    /// Minor number, `None` for `*`.
    pub minor: Option<u32>,
    /// `ACC_*` bits.
    pub access: u32,
}

impl Rule {
    const fn allow_c(major: Option<u32>, minor: Option<u32>, access: u32) -> Rule {
        Rule {
            allow: true,
            typ: DevType::Char,
            major,
            minor,
            access,
        }
    }

    /// True for the "everything" rule (`a *:* rwm`).
    pub fn is_wildcard_all(&self) -> bool {
        self.typ == DevType::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ACC_ALL
    }

    /// The v1 `devices.allow`/`devices.deny` lines: `c 1:3 rwm`. Only the
    /// everything rule is written as `a` (the kernel treats any `a` line as
    /// "all devices, all access"); a narrower type-`a` rule becomes a `c` and
    /// a `b` line.
    pub fn v1_lines(&self) -> Vec<String> {
        if self.is_wildcard_all() {
            return vec!["a".to_string()];
        }
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        let mut acc = String::new();
        for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                acc.push(c);
            }
        }
        let nums = format!("{}:{} {acc}", n(self.major), n(self.minor));
        match self.typ {
            DevType::All => vec![format!("c {nums}"), format!("b {nums}")],
            DevType::Block => vec![format!("b {nums}")],
            DevType::Char => vec![format!("c {nums}")],
        }
    }
}

/// The default allow list (as runc): mknod of any char/block device, and
/// /dev/null, zero, full, random, urandom, tty, ptmx and pts/*.
pub const DEFAULT_ALLOW: &[Rule] = &[
    Rule::allow_c(None, None, ACC_MKNOD),
    Rule {
        allow: true,
        typ: DevType::Block,
        major: None,
        minor: None,
        access: ACC_MKNOD,
    },
    Rule::allow_c(Some(1), Some(3), ACC_ALL), // /dev/null
    Rule::allow_c(Some(1), Some(5), ACC_ALL), // /dev/zero
    Rule::allow_c(Some(1), Some(7), ACC_ALL), // /dev/full
    Rule::allow_c(Some(1), Some(8), ACC_ALL), // /dev/random
    Rule::allow_c(Some(1), Some(9), ACC_ALL), // /dev/urandom
    Rule::allow_c(Some(5), Some(0), ACC_ALL), // /dev/tty
    Rule::allow_c(Some(5), Some(2), ACC_ALL), // /dev/ptmx
    Rule::allow_c(Some(136), None, ACC_ALL),  // /dev/pts/*
];

/// Converts one OCI rule (already validated).
pub fn from_oci(d: &LinuxDeviceCgroup) -> Rule {
    let typ = match d.typ() {
        Some(LinuxDeviceType::B) => DevType::Block,
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => DevType::Char,
        _ => DevType::All,
    };
    let num = |v: Option<i64>| v.filter(|v| *v >= 0).map(|v| v as u32);
    let mut access = 0;
    for c in d.access().as_deref().unwrap_or("rwm").chars() {
        access |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        };
    }
    Rule {
        allow: d.allow(),
        typ,
        major: num(d.major()),
        minor: num(d.minor()),
        access,
    }
}

/// The effective rules: the user's, then the default allow list. A default
/// entry is dropped when the user explicitly denies that same device (a
/// concrete deny rule matching its type and numbers), so such a deny wins.
pub fn effective_rules(user: &[LinuxDeviceCgroup]) -> Vec<Rule> {
    let mut rules: Vec<Rule> = user.iter().map(from_oci).collect();
    let denies: Vec<Rule> = rules
        .iter()
        .filter(|r| !r.allow && r.typ != DevType::All && r.major.is_some())
        .copied()
        .collect();
    for d in DEFAULT_ALLOW {
        let overridden = denies.iter().any(|n| {
            n.typ == d.typ
                && n.major == d.major
                && (n.minor.is_none() || n.minor == d.minor)
                && n.access & d.access != 0
        });
        if !overridden {
            rules.push(*d);
        }
    }
    rules
}

// --- eBPF program generation -------------------------------------------------

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// dst_reg (low nibble) and src_reg (high nibble).
    pub regs: u8,
    /// Offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const ALU64_MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; };
// access_type = (access << 16) | type.
const DEVCG_DEV_BLOCK: i32 = 1;
const DEVCG_DEV_CHAR: i32 = 2;

/// Generates the device program for `rules`. Registers: r2 = device type,
/// r3 = requested access, r4 = major, r5 = minor. Rules are tested from the
/// last to the first; the first that matches decides (a later rule overrides
/// an earlier one); nothing matching means deny. Unreachable code after an
/// unconditional rule is not emitted (the verifier refuses it).
pub fn bpf_program(rules: &[Rule]) -> Vec<Insn> {
    let mut prog = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        // Checks jump to the end of this block on mismatch; `u16::MAX` marks
        // an offset to patch once the block length is known.
        let mut block: Vec<Insn> = Vec::new();
        match r.typ {
            DevType::All => {}
            DevType::Block => block.push(insn(JNE_K, 2, 0, -1, DEVCG_DEV_BLOCK)),
            DevType::Char => block.push(insn(JNE_K, 2, 0, -1, DEVCG_DEV_CHAR)),
        }
        if r.access != ACC_ALL {
            // Every requested bit must be granted by the rule: (r3 & acc) == r3.
            block.push(insn(ALU64_MOV_X, 1, 3, 0, 0));
            block.push(insn(ALU32_AND_K, 1, 0, 0, r.access as i32));
            block.push(insn(JNE_X, 1, 3, -1, 0));
        }
        if let Some(m) = r.major {
            block.push(insn(JNE_K, 4, 0, -1, m as i32));
        }
        if let Some(m) = r.minor {
            block.push(insn(JNE_K, 5, 0, -1, m as i32));
        }
        let unconditional = block.is_empty();
        block.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(r.allow)));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.off == -1 {
                ins.off = (len - i - 1) as i16;
            }
        }
        prog.extend(block);
        if unconditional {
            return prog;
        }
    }
    prog.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    prog.push(insn(EXIT, 0, 0, 0, 0));
    prog
}

/// Evaluates `rules` for one access the way the generated program does
/// (used by tests and by callers that want to explain a decision).
pub fn allowed(rules: &[Rule], typ: DevType, major: u32, minor: u32, access: u32) -> bool {
    for r in rules.iter().rev() {
        let t = r.typ == DevType::All || r.typ == typ;
        let a = access & r.access == access;
        let ma = r.major.is_none_or(|m| m == major);
        let mi = r.minor.is_none_or(|m| m == minor);
        if t && a && ma && mi {
            return r.allow;
        }
    }
    false
}

/// Key of a v1 whitelist entry: type char (`b`/`c`), major, minor.
type Key = (char, Option<u32>, Option<u32>);

fn bits_to_acc(bits: u32) -> String {
    [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')]
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, c)| *c)
        .collect()
}

fn parse_list_line(line: &str) -> Option<(Key, u32)> {
    let mut it = line.split_whitespace();
    let t = it.next()?.chars().next()?;
    let (ma, mi) = it.next()?.split_once(':')?;
    let num = |s: &str| {
        if s == "*" {
            Ok(None)
        } else {
            s.parse().map(Some)
        }
    };
    let (ma, mi) = (num(ma).ok()?, num(mi).ok()?);
    let mut bits = 0;
    for c in it.next()?.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return None,
        };
    }
    Some(((t, ma, mi), bits))
}

/// Computes v1 writes that turn the current `devices.list` into the state of
/// `rules` without the window where everything is denied that a full reset
/// (`a` to `devices.deny`, then the allow lines) has. Only possible when both
/// the current and the target state are whitelists (default deny); returns
/// `None` otherwise, and the caller does the full reset. Each write is
/// `(allow, line)`; additions come before removals.
pub fn v1_transition(current_list: &str, rules: &[Rule]) -> Option<Vec<(bool, String)>> {
    use std::collections::BTreeMap;
    let mut cur: BTreeMap<Key, u32> = BTreeMap::new();
    for line in current_list.lines().filter(|l| !l.trim().is_empty()) {
        let (k, bits) = parse_list_line(line)?;
        if k.0 == 'a' {
            return None; // default allow: exceptions are not listed
        }
        *cur.entry(k).or_default() |= bits;
    }
    // Simulate the kernel on the target rules, starting from a reset to deny.
    let mut target: BTreeMap<Key, u32> = BTreeMap::new();
    for r in rules {
        if r.is_wildcard_all() {
            if r.allow {
                return None;
            }
            target.clear();
            continue;
        }
        let types: &[char] = match r.typ {
            DevType::All => &['c', 'b'],
            DevType::Block => &['b'],
            DevType::Char => &['c'],
        };
        for t in types {
            let k = (*t, r.major, r.minor);
            if r.allow {
                *target.entry(k).or_default() |= r.access;
            } else if let Some(b) = target.get_mut(&k) {
                *b &= !r.access;
                if *b == 0 {
                    target.remove(&k);
                }
            }
        }
    }
    let line = |k: &Key, bits: u32| {
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        format!("{} {}:{} {}", k.0, n(k.1), n(k.2), bits_to_acc(bits))
    };
    let mut adds = Vec::new();
    let mut removes = Vec::new();
    for (k, t) in &target {
        let c = cur.get(k).copied().unwrap_or(0);
        if t & !c != 0 {
            adds.push((true, line(k, t & !c)));
        }
    }
    for (k, c) in &cur {
        let t = target.get(k).copied().unwrap_or(0);
        if c & !t != 0 {
            removes.push((false, line(k, c & !t)));
        }
    }
    adds.extend(removes);
    Some(adds)
}
