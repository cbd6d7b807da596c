//! `regex` replaced by `regex-lite` for the Casulo build.
//!
//! oci-spec compiles one regular expression (the syntax check of
//! `process.execCPUAffinity`) and for that links the full `regex` crate: about 460 KiB
//! of code plus Unicode tables, a sixth of the `casulo` binary. The workspace patches
//! `regex` with this crate, which re-exports `regex-lite` (same author, same API for
//! what oci-spec uses: `Regex::new`, `is_match`, `RegexBuilder`, `captures`), at a
//! fraction of the size. The answers for that pattern are the same but for one case:
//! `regex-lite`'s `\d` is ASCII-only, so a CPU list with non-ASCII digits is refused
//! while parsing `config.json` instead of later, by Casulo's CPU-list parser
//! (`casulo-core`'s `exec_cpu_affinity_syntax_is_checked` pins the answers). Programs
//! that embed `casulo-core` get the real `regex` unless they apply the same patch.

pub use regex_lite::*;
