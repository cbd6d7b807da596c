//! Syscall name → number tables, one per supported ABI.

mod aarch64;
mod arm;
mod x32;
mod x86;
mod x86_64;

pub(crate) use aarch64::AARCH64;
pub(crate) use arm::ARM;
pub(crate) use x32::X32;
pub(crate) use x86::X86;
pub(crate) use x86_64::X86_64;
