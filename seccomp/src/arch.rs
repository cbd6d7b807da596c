//! Architectures (ABIs), their `AUDIT_ARCH_*` values and syscall tables.

use crate::tables;
use oci_spec::runtime::Arch;

/// `AUDIT_ARCH_X86_64` (EM_X86_64 | 64BIT | LE), shared by x86_64 and x32.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386` (EM_386 | LE).
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `AUDIT_ARCH_AARCH64` (EM_AARCH64 | 64BIT | LE).
pub const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
/// `AUDIT_ARCH_ARM` (EM_ARM | LE).
pub const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
/// `__X32_SYSCALL_BIT`: x32 syscalls are x86_64 syscalls with this bit set.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A syscall ABI this crate has a table for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Abi {
    /// `SCMP_ARCH_X86_64`
    X86_64,
    /// `SCMP_ARCH_X86` (i386)
    X86,
    /// `SCMP_ARCH_X32`
    X32,
    /// `SCMP_ARCH_AARCH64`
    Aarch64,
    /// `SCMP_ARCH_ARM` (EABI)
    Arm,
}

impl Abi {
    /// All supported ABIs.
    pub const ALL: [Abi; 5] = [Abi::X86_64, Abi::X86, Abi::X32, Abi::Aarch64, Abi::Arm];

    /// The ABI of the machine this crate was built for (`SCMP_ARCH_NATIVE`).
    pub fn native() -> Option<Abi> {
        if cfg!(all(target_arch = "x86_64", target_pointer_width = "32")) {
            Some(Abi::X32)
        } else if cfg!(target_arch = "x86_64") {
            Some(Abi::X86_64)
        } else if cfg!(target_arch = "x86") {
            Some(Abi::X86)
        } else if cfg!(target_arch = "aarch64") {
            Some(Abi::Aarch64)
        } else if cfg!(target_arch = "arm") {
            Some(Abi::Arm)
        } else {
            None
        }
    }

    /// Maps an OCI architecture; `None` for architectures without a table here.
    pub fn from_oci(arch: Arch) -> Option<Abi> {
        match arch {
            Arch::ScmpArchNative => Abi::native(),
            Arch::ScmpArchX86_64 => Some(Abi::X86_64),
            Arch::ScmpArchX86 => Some(Abi::X86),
            Arch::ScmpArchX32 => Some(Abi::X32),
            Arch::ScmpArchAarch64 => Some(Abi::Aarch64),
            Arch::ScmpArchArm => Some(Abi::Arm),
            _ => None,
        }
    }

    /// The value the kernel puts in `seccomp_data.arch` for this ABI.
    pub fn audit_arch(self) -> u32 {
        match self {
            Abi::X86_64 | Abi::X32 => AUDIT_ARCH_X86_64,
            Abi::X86 => AUDIT_ARCH_I386,
            Abi::Aarch64 => AUDIT_ARCH_AARCH64,
            Abi::Arm => AUDIT_ARCH_ARM,
        }
    }

    /// The syscall numbers this ABI owns under its audit arch, as `[lo, hi]` inclusive:
    /// x86_64 and x32 split the `AUDIT_ARCH_X86_64` number space on `X32_SYSCALL_BIT`.
    pub fn nr_range(self) -> (u32, u32) {
        match self {
            Abi::X86_64 => (0, X32_SYSCALL_BIT - 1),
            Abi::X32 => (X32_SYSCALL_BIT, u32::MAX),
            _ => (0, u32::MAX),
        }
    }

    /// Whether syscall arguments are 32 bits wide: argument comparisons then use only
    /// the low word (as libseccomp does for 32-bit ABIs).
    pub fn args_32bit(self) -> bool {
        matches!(self, Abi::X86 | Abi::X32 | Abi::Arm)
    }

    fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Abi::X86_64 => tables::X86_64,
            Abi::X86 => tables::X86,
            Abi::X32 => tables::X32,
            Abi::Aarch64 => tables::AARCH64,
            Abi::Arm => tables::ARM,
        }
    }

    /// Resolves a syscall name to its number on this ABI.
    pub fn resolve(self, name: &str) -> Option<u32> {
        let t = self.table();
        t.binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|i| t[i].1)
    }

    /// Every `(name, number)` pair of this ABI's table, sorted by name.
    pub fn syscalls(self) -> impl Iterator<Item = (&'static str, u32)> {
        self.table().iter().copied()
    }

    /// The `SCMP_ARCH_*` name.
    pub fn name(self) -> &'static str {
        match self {
            Abi::X86_64 => "SCMP_ARCH_X86_64",
            Abi::X86 => "SCMP_ARCH_X86",
            Abi::X32 => "SCMP_ARCH_X32",
            Abi::Aarch64 => "SCMP_ARCH_AARCH64",
            Abi::Arm => "SCMP_ARCH_ARM",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_sorted_and_known_numbers() {
        for abi in Abi::ALL {
            let t = abi.table();
            assert!(t.windows(2).all(|w| w[0].0 < w[1].0), "{abi:?} not sorted");
            let (lo, hi) = abi.nr_range();
            assert!(t.iter().all(|(_, n)| *n >= lo && *n <= hi), "{abi:?} range");
        }
        assert_eq!(Abi::X86_64.resolve("clone3"), Some(435));
        assert_eq!(Abi::X86_64.resolve("unshare"), Some(272));
        assert_eq!(Abi::X86.resolve("unshare"), Some(310));
        assert_eq!(Abi::X32.resolve("read"), Some(X32_SYSCALL_BIT));
        assert_eq!(Abi::Aarch64.resolve("openat"), Some(56));
        assert_eq!(Abi::Aarch64.resolve("open"), None);
        assert_eq!(Abi::Arm.resolve("keyctl"), Some(311));
        assert_eq!(Abi::Arm.resolve("set_tls"), Some(0x0f0005));
        assert_eq!(Abi::X86_64.resolve("no_such_syscall"), None);
    }
}
