//! Test infrastructure for Casulo's end-to-end tests.
//!
//! * [`bundle`]: build OCI bundles (busybox rootfs + the checker) and the
//!   default `config.json` (the one `runc spec` writes, hostname "casulo");
//!   run a bundle under a runtime given as a `&Path`.
//! * `casulo-checker` (`src/checker/`): the static in-container checker; run
//!   as `/checker /config.json`, it prints TAP per spec section.
//! * [`tap`]: parse that TAP.
//! * [`gen`]: ~190 generated configurations for conformance runs.
//! * [`conformance`]: run them all under a runtime, table results.
//! * [`known`]: failures runc shows on this host, with reasons.
//!
//! Conformance against a runtime (root needed):
//! `CASULO_CONFORMANCE_RUNTIME=/path/to/casulo cargo test -p casulo-integration --test conformance -- --nocapture`
//! (default runtime: `/usr/sbin/runc`).

pub mod bundle;
pub mod caps;
pub mod cli;
pub mod conformance;
pub mod engines;
pub mod gen;
pub mod known;
pub mod prereq;
pub mod rootless;
pub mod tap;

pub use bundle::{checker_path, default_spec, Bundle};
pub use cli::{casulo_bin, runtime, Run, TestEnv};
pub use known::KNOWN_RUNC_DIFFERENCES;
pub use tap::{parse_tap, SectionCount, TapSummary};
