//! Test infrastructure for Casulo's end-to-end tests.
//!
//! * [`bundle`]: build OCI bundles (busybox rootfs + the checker) and the
//!   default `config.json` (the one `runc spec` writes, hostname "casulo").
//! * [`gen`]: ~130 generated configurations for conformance runs.
//! * [`known`]: failures runc shows here, with reasons.
//! * [`tap`]: parse the TAP output of the in-container checker
//!   (`casulo-checker`, see `src/checker/`).
//!
//! Every end-to-end test takes the runtime binary as a `&Path`, so the same
//! test runs against runc and casulo.

pub mod bundle;
pub mod gen;
pub mod known;
pub mod tap;

pub use bundle::{checker_path, default_spec, Bundle};
pub use known::KNOWN_RUNC_DIFFERENCES;
pub use tap::{parse_tap, SectionCount, TapSummary};
