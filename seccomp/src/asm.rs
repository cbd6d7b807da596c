//! A classic-BPF assembler that builds programs back to front.
//!
//! BPF jumps only go forward, so emitting the tail first means every jump target
//! already exists when the jump is emitted. A [`Label`] is an instruction's distance
//! from the end of the program, which stays valid as more code is prepended.
//! Conditional jumps reach at most 255 instructions; farther targets get a `ja`
//! trampoline (32-bit offset) placed right after the jump.

use libc::sock_filter;

/// `BPF_LD | BPF_W | BPF_ABS`
pub const LD_W_ABS: u16 = 0x20;
/// `BPF_ALU | BPF_AND | BPF_K`
pub const ALU_AND_K: u16 = 0x54;
/// `BPF_JMP | BPF_JA`
pub const JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`
pub const JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JGT | BPF_K`
pub const JGT_K: u16 = 0x25;
/// `BPF_JMP | BPF_JGE | BPF_K`
pub const JGE_K: u16 = 0x35;
/// `BPF_RET | BPF_K`
pub const RET_K: u16 = 0x06;

/// Position of an instruction, counted from the end of the program (last = 1).
pub type Label = usize;

/// Program under construction, stored reversed.
#[derive(Default)]
pub struct Asm {
    rev: Vec<sock_filter>,
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

impl Asm {
    fn push(&mut self, f: sock_filter) -> Label {
        self.rev.push(f);
        self.rev.len()
    }

    /// Instructions between a new instruction and `target`.
    fn distance(&self, target: Label) -> usize {
        self.rev.len() - target
    }

    /// A non-jump instruction.
    pub fn stmt(&mut self, code: u16, k: u32) -> Label {
        self.push(insn(code, 0, 0, k))
    }

    /// `ret k`
    pub fn ret(&mut self, k: u32) -> Label {
        self.stmt(RET_K, k)
    }

    /// `ja target`
    pub fn ja(&mut self, target: Label) -> Label {
        let off = self.distance(target) as u32;
        self.push(insn(JA, 0, 0, off))
    }

    /// Conditional jump `code k` to `jt` if true, `jf` if false.
    pub fn jump(&mut self, code: u16, k: u32, mut jt: Label, mut jf: Label) -> Label {
        loop {
            if self.distance(jt) > 255 {
                jt = self.ja(jt);
            } else if self.distance(jf) > 255 {
                jf = self.ja(jf);
            } else {
                break;
            }
        }
        let (t, f) = (self.distance(jt) as u8, self.distance(jf) as u8);
        self.push(insn(code, t, f, k))
    }

    /// Number of instructions so far.
    pub fn len(&self) -> usize {
        self.rev.len()
    }

    /// The program in execution order.
    pub fn finish(mut self) -> Vec<sock_filter> {
        self.rev.reverse();
        self.rev
    }
}
