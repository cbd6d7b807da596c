//! A classic-BPF interpreter for seccomp programs, used by the tests, the
//! differential test against libseccomp and the bench (it counts instructions).

use libc::sock_filter;

/// Result of running a program on one syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The `SECCOMP_RET_*` value returned.
    pub ret: u32,
    /// Instructions executed, the `ret` included.
    pub steps: usize,
}

/// Why a program could not be run to a `ret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpError {
    /// An instruction this interpreter (or seccomp) does not accept.
    BadInstruction {
        /// Program counter.
        pc: usize,
        /// Opcode.
        code: u16,
    },
    /// A jump or fall-through past the end of the program.
    OutOfBounds(usize),
    /// A load outside `seccomp_data` or not 4-byte aligned.
    BadLoad(u32),
    /// Division by zero.
    DivByZero(usize),
}

/// Builds the 64-byte `seccomp_data` (native endian) for `(arch, nr, args)`.
pub fn seccomp_data(audit_arch: u32, nr: u32, args: &[u64; 6]) -> [u32; 16] {
    let mut w = [0u32; 16];
    w[0] = nr;
    w[1] = audit_arch;
    // w[2..4] is the instruction pointer: zero.
    for (i, a) in args.iter().enumerate() {
        w[4 + 2 * i] = *a as u32;
        w[5 + 2 * i] = (*a >> 32) as u32;
    }
    w
}

/// Runs `prog` on a syscall the way the kernel's seccomp does.
pub fn run(
    prog: &[sock_filter],
    audit_arch: u32,
    nr: u32,
    args: &[u64; 6],
) -> Result<Outcome, InterpError> {
    let data = seccomp_data(audit_arch, nr, args);
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    let mut steps = 0usize;
    loop {
        let ins = prog.get(pc).ok_or(InterpError::OutOfBounds(pc))?;
        steps += 1;
        let k = ins.k;
        let here = pc;
        let bad = move || InterpError::BadInstruction {
            pc: here,
            code: ins.code,
        };
        let class = ins.code & 0x07;
        let src_x = ins.code & 0x08 != 0;
        let operand = if src_x { x } else { k };
        pc += 1;
        match class {
            // BPF_LD
            0x00 => match ins.code & 0xe0 {
                0x20 if ins.code & 0x18 == 0 => {
                    if k % 4 != 0 || k >= 64 {
                        return Err(InterpError::BadLoad(k));
                    }
                    a = data[(k / 4) as usize];
                }
                0x00 => a = k,                                     // BPF_IMM
                0x60 => a = *mem.get(k as usize).ok_or_else(bad)?, // BPF_MEM
                0x80 if ins.code & 0x18 == 0 => a = std::mem::size_of_val(&data) as u32, // BPF_LEN
                _ => return Err(bad()),
            },
            // BPF_LDX
            0x01 => match ins.code & 0xe0 {
                0x00 => x = k,
                0x60 => x = *mem.get(k as usize).ok_or_else(bad)?,
                0x80 => x = std::mem::size_of_val(&data) as u32,
                _ => return Err(bad()),
            },
            0x02 => *mem.get_mut(k as usize).ok_or_else(bad)? = a, // BPF_ST
            0x03 => *mem.get_mut(k as usize).ok_or_else(bad)? = x, // BPF_STX
            // BPF_ALU
            0x04 => {
                a = match ins.code & 0xf0 {
                    0x00 => a.wrapping_add(operand),
                    0x10 => a.wrapping_sub(operand),
                    0x20 => a.wrapping_mul(operand),
                    0x30 => a
                        .checked_div(operand)
                        .ok_or(InterpError::DivByZero(pc - 1))?,
                    0x40 => a | operand,
                    0x50 => a & operand,
                    0x60 => a.checked_shl(operand).unwrap_or(0),
                    0x70 => a.checked_shr(operand).unwrap_or(0),
                    0x80 => a.wrapping_neg(),
                    0x90 => a
                        .checked_rem(operand)
                        .ok_or(InterpError::DivByZero(pc - 1))?,
                    0xa0 => a ^ operand,
                    _ => return Err(bad()),
                }
            }
            // BPF_JMP
            0x05 => {
                let op = ins.code & 0xf0;
                if op == 0x00 {
                    pc = pc.checked_add(k as usize).ok_or_else(bad)?;
                } else {
                    let taken = match op {
                        0x10 => a == operand,
                        0x20 => a > operand,
                        0x30 => a >= operand,
                        0x40 => a & operand != 0,
                        _ => return Err(bad()),
                    };
                    pc += usize::from(if taken { ins.jt } else { ins.jf });
                }
            }
            // BPF_RET
            0x06 => {
                let ret = match ins.code & 0x18 {
                    0x00 => k,
                    0x10 => a,
                    _ => return Err(bad()),
                };
                return Ok(Outcome { ret, steps });
            }
            // BPF_MISC: TAX / TXA
            _ => match ins.code & 0xf8 {
                0x00 => x = a,
                0x80 => a = x,
                _ => return Err(bad()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ins(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
        sock_filter { code, jt, jf, k }
    }

    #[test]
    fn runs_loads_alu_jumps_and_scratch_memory() {
        let prog = [
            ins(0x20, 0, 0, 16),          // ld args[0].lo
            ins(0x02, 0, 0, 3),           // st M[3]
            ins(0x54, 0, 0, 0xff),        // and #0xff
            ins(0x15, 0, 3, 7),           // jeq #7, +0, +3
            ins(0x60, 0, 0, 3),           // ld M[3]
            ins(0x07, 0, 0, 0),           // tax
            ins(0x16, 0, 0, 0),           // ret a
            ins(0x20, 0, 0, 20),          // ld args[0].hi
            ins(0x45, 1, 0, 1),           // jset #1, +1, +0
            ins(0x06, 0, 0, 0x7fff_0000), // ret ALLOW
            ins(0x05, 0, 0, 0),           // ja +0
            ins(0x06, 0, 0, 0x0005_0001), // ret ERRNO(1)
        ];
        let r = |a0: u64| run(&prog, 0, 0, &[a0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(
            r(0x107),
            Outcome {
                ret: 0x107,
                steps: 7
            }
        );
        assert_eq!(r(0x1_0000_0000).ret, 0x0005_0001);
        assert_eq!(r(0x2_0000_0000).ret, 0x7fff_0000);
    }

    #[test]
    fn rejects_bad_programs() {
        assert_eq!(
            run(&[ins(0x20, 0, 0, 2)], 0, 0, &[0; 6]),
            Err(InterpError::BadLoad(2))
        );
        assert_eq!(
            run(&[ins(0x20, 0, 0, 64)], 0, 0, &[0; 6]),
            Err(InterpError::BadLoad(64))
        );
        assert_eq!(
            run(&[ins(0x15, 5, 5, 0)], 0, 0, &[0; 6]),
            Err(InterpError::OutOfBounds(6))
        );
        assert_eq!(
            run(&[ins(0x34, 0, 0, 0)], 0, 0, &[0; 6]),
            Err(InterpError::DivByZero(0))
        );
        assert!(matches!(
            run(&[ins(0xff, 0, 0, 0)], 0, 0, &[0; 6]),
            Err(InterpError::BadInstruction { pc: 0, .. })
        ));
    }
}
