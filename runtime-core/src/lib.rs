//! Casulo: an OCI container runtime as a library.
//!
//! Modules follow the sections of the OCI runtime spec.

pub mod cgroups;
