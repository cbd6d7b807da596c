//! The spec's small shared pieces: the configuration error type, the lookups of
//! `linux.namespaces`, the one-line text helpers and the supported spec versions. A leaf:
//! it imports nothing of the crate, so `config` (which re-exports these), `host_guard`,
//! `rootfs`, `rootless`, `exe` and `security` use it without importing each other.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Lowest and highest runtime-spec versions accepted in config.json.
pub const OCI_VERSION_MIN: &str = "1.0.0";
/// See [`OCI_VERSION_MIN`].
pub const OCI_VERSION_MAX: &str = "1.3.0";

/// Errors of loading and validating a bundle's configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// config.json could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// config.json is not valid JSON or does not match the spec's schema.
    #[error("config.json: {field}: {}", one_line(&source.to_string()))]
    Parse {
        /// The JSON path of the offending field (`.` for the document).
        field: String,
        /// serde's error (its text may echo the input: shown on one line).
        #[source]
        source: serde_json::Error,
    },
    /// A path a field names could not be looked at (`root.path`, a namespace path).
    #[error("config.json: {field}: {}: {}", one_line(&path.display().to_string()), lower(source))]
    Path {
        /// The JSON path of the field.
        field: String,
        /// The path it names (or the runtime's own one it is compared with).
        path: PathBuf,
        /// Why it could not be looked at.
        #[source]
        source: std::io::Error,
    },
    /// A field has a value the runtime cannot honour.
    #[error("config.json: {field}: {msg}")]
    Invalid {
        /// The JSON path of the offending field.
        field: String,
        /// What is wrong.
        msg: String,
    },
}

/// A validation error; config values echoed in it are kept on one line (a path or key
/// with a newline must not split the error the engines read from the log).
pub(crate) fn invalid(field: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: one_line(&field.into()),
        msg: one_line(&msg.into()),
    }
}

/// The namespace types the config creates or joins, and whether it names `typ`.
pub(crate) fn namespace(
    spec: &Spec,
    typ: LinuxNamespaceType,
) -> Option<&oci_spec::runtime::LinuxNamespace> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == typ)
}

/// True when the config asks for a new (not joined) namespace of `typ`.
pub(crate) fn new_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    namespace(spec, typ).is_some_and(|n| n.path().is_none())
}

/// `s` with control characters escaped (`\n` → `\\n`), so an error stays one line.
pub(crate) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// An io::Error's text in lower case without the "(os error N)" suffix, as engines match it.
pub(crate) fn lower(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    s.to_lowercase()
}
