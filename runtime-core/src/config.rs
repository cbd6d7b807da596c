//! The bundle's configuration (config.md): loading `config.json` with oci-spec and the
//! semantic checks oci-spec's types cannot express. Every error names the JSON field.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

pub use crate::spec_util::ConfigError;
pub(crate) use crate::spec_util::{invalid, lower, namespace, new_namespace, one_line};
use crate::spec_util::{OCI_VERSION_MAX, OCI_VERSION_MIN};

/// Reads and parses `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec, ConfigError> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    parse(&data)
}

/// Parses a config.json document, reporting the JSON path of any error.
pub fn parse(data: &[u8]) -> Result<Spec, ConfigError> {
    let de = &mut serde_json::Deserializer::from_slice(data);
    let mut spec: Spec = serde_path_to_error::deserialize(de).map_err(|e| {
        // Both may echo the input (keys, unknown variants): kept to one line.
        let field = match one_line(&e.path().to_string()) {
            f if f.is_empty() || f.contains(": ") => format!("{f:?}"),
            f => f,
        };
        ConfigError::Parse {
            field,
            source: e.into_inner(),
        }
    })?;
    // What oci-spec's types lose, read again: only these parts become JSON values, the
    // rest of the document is skipped (a whole-document `Value` cost as much as the
    // typed parse itself).
    if let Ok(raw) = serde_json::from_slice::<RawParts>(data) {
        let doc = serde_json::json!({ "hooks": raw.hooks });
        crate::hooks::check_fields(&doc).map_err(|e| match e {
            crate::hooks::HookError::Invalid { field, msg } => invalid(field, msg),
            other => invalid("hooks", other.to_string()),
        })?;
        let pids = raw.linux.and_then(|l| l.resources).and_then(|r| r.pids);
        drop_absent_pids_limit(&mut spec, pids.as_ref());
    }
    Ok(spec)
}

/// The parts of config.json that [`parse`] checks beyond oci-spec's types.
#[derive(serde::Deserialize)]
struct RawParts {
    #[serde(default)]
    hooks: Option<serde_json::Value>,
    #[serde(default)]
    linux: Option<RawLinux>,
}

#[derive(serde::Deserialize)]
struct RawLinux {
    #[serde(default)]
    resources: Option<RawResources>,
}

#[derive(serde::Deserialize)]
struct RawResources {
    #[serde(default)]
    pids: Option<serde_json::Value>,
}

/// `linux.resources.pids` without a `limit` sets no limit (config-linux.md 1.3: `0` is a
/// real limit). oci-spec reads a missing limit as 0, so the object is dropped here.
fn drop_absent_pids_limit(spec: &mut Spec, pids: Option<&serde_json::Value>) {
    let Some(pids) = pids else {
        return;
    };
    if !pids.is_object() || pids.get("limit").is_some() {
        return;
    }
    if let Some(r) = spec
        .linux_mut()
        .as_mut()
        .and_then(|l| l.resources_mut().as_mut())
    {
        r.set_pids(None);
    }
}

/// The absolute root filesystem path: `root.path`, relative to the bundle when relative.
pub(crate) fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf, ConfigError> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid("root", "missing"))?;
    let p = root.path();
    Ok(if p.is_absolute() {
        p.clone()
    } else {
        bundle.join(p)
    })
}

/// Semantic validation: everything that must be refused before anything is created.
pub fn validate(spec: &Spec, bundle: &Path) -> Result<(), ConfigError> {
    if spec.version().is_empty() {
        return Err(invalid("ociVersion", "missing"));
    }
    check_version(spec.version())?;
    let rootfs = rootfs_path(spec, bundle)?;
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(invalid(
                "root.path",
                format!("{}: not a directory", rootfs.display()),
            ))
        }
        Err(source) => {
            return Err(ConfigError::Path {
                field: "root.path".into(),
                path: rootfs,
                source,
            })
        }
    }
    if let Some(process) = spec.process() {
        match process.args() {
            Some(a) if !a.is_empty() && !a[0].is_empty() => {}
            _ => return Err(invalid("process.args", "must not be empty")),
        }
        if !process.cwd().is_absolute() {
            return Err(invalid(
                "process.cwd",
                format!("{:?} is not an absolute path", process.cwd()),
            ));
        }
        for (i, e) in process.env().iter().flatten().enumerate() {
            if !e.contains('=') {
                return Err(invalid(
                    format!("process.env[{i}]"),
                    format!("{e:?} is not KEY=VALUE"),
                ));
            }
        }
    }
    let userns = namespace(spec, LinuxNamespaceType::User).is_some();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(invalid(
                format!("mounts[{i}].destination"),
                format!("{:?} is not an absolute path", m.destination()),
            ));
        }
        if let Some((field, msg)) = crate::rootfs::options::check(i, m, userns) {
            return Err(invalid(field, msg));
        }
    }
    validate_linux(spec)?;
    // sysctls, hostname, and a container without a mount namespace of its own.
    crate::host_guard::validate(spec)
}

/// `ociVersion` must be a 1.x version: the spec is compatible within a major version only
/// (config.md "Specification version").
fn check_version(v: &str) -> Result<(), ConfigError> {
    let major = v.split(['.', '-', '+']).next().unwrap_or("");
    if major == "1" && v.len() > 1 && v.as_bytes()[1] == b'.' {
        return Ok(());
    }
    Err(invalid(
        "ociVersion",
        format!(
            "{v:?}: major version {major:?} is not supported (this runtime implements {} to {})",
            OCI_VERSION_MIN, OCI_VERSION_MAX
        ),
    ))
}

fn validate_linux(spec: &Spec) -> Result<(), ConfigError> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    check_namespaces(spec, linux)?;
    check_paths(linux)
}

/// `linux.namespaces` (each type once, joined paths exist), the id mappings a new user
/// namespace needs, and the time offsets a new time namespace takes.
fn check_namespaces(spec: &Spec, linux: &oci_spec::runtime::Linux) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(invalid(
                format!("linux.namespaces[{i}].type"),
                format!("{} is listed twice", ns.typ()),
            ));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() || std::fs::symlink_metadata(p).is_err() {
                return Err(invalid(
                    format!("linux.namespaces[{i}].path"),
                    format!("{}: no such namespace file", p.display()),
                ));
            }
        }
    }
    let new_user = new_namespace(spec, LinuxNamespaceType::User);
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    let has_gmaps = linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if new_user && (!has_maps || !has_gmaps) {
        let field = if has_maps {
            "linux.gidMappings"
        } else {
            "linux.uidMappings"
        };
        return Err(invalid(
            field,
            "a new user namespace needs uid and gid mappings",
        ));
    }
    if !new_user && (has_maps || has_gmaps) {
        let field = if has_maps {
            "linux.uidMappings"
        } else {
            "linux.gidMappings"
        };
        return Err(invalid(
            field,
            "mappings need a new user namespace in linux.namespaces",
        ));
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty())
        && !new_namespace(spec, LinuxNamespaceType::Time)
    {
        return Err(invalid(
            "linux.timeOffsets",
            "offsets need a new time namespace",
        ));
    }
    for (key, clock) in [("linux.timeOffsets", linux.time_offsets())] {
        for name in clock.iter().flat_map(|m| m.keys()) {
            if name != "monotonic" && name != "boottime" {
                return Err(invalid(
                    format!("{key}.{name}"),
                    "only monotonic and boottime have offsets",
                ));
            }
        }
    }
    Ok(())
}

/// The paths of `linux` (devices, masked and read-only paths) and the rootfs propagation.
fn check_paths(linux: &oci_spec::runtime::Linux) -> Result<(), ConfigError> {
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        // Any absolute path in the container (config-linux.md "Devices"), not only /dev.
        if !d.path().is_absolute() || d.path().file_name().is_none() {
            return Err(invalid(
                format!("linux.devices[{i}].path"),
                format!("{:?} is not an absolute file path", d.path()),
            ));
        }
    }
    for (field, paths) in [
        ("linux.maskedPaths", linux.masked_paths()),
        ("linux.readonlyPaths", linux.readonly_paths()),
    ] {
        for (i, p) in paths.iter().flatten().enumerate() {
            if !p.starts_with('/') {
                return Err(invalid(
                    format!("{field}[{i}]"),
                    format!("{p:?} is not an absolute path"),
                ));
            }
        }
    }
    if let Some(prop) = linux.rootfs_propagation() {
        if ![
            "",
            "shared",
            "slave",
            "private",
            "unbindable",
            "rshared",
            "rslave",
            "rprivate",
            "runbindable",
        ]
        .contains(&prop.as_str())
        {
            return Err(invalid(
                "linux.rootfsPropagation",
                format!("{prop:?} is not a propagation mode"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document serde refuses, and a `root.path` or namespace path that cannot be
    /// looked at, keep their cause (serde's error, the io::Error) as the source; the texts
    /// are the ones before (one line, the io text in lower case without "(os error N)").
    #[test]
    fn refusals_keep_serde_and_io_errors() {
        let e = parse(br#"{"ociVersion": "1.0.2", "process": {"cwd": 5}}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config.json: process.cwd: invalid type: integer `5`"),
            "{e}"
        );
        let ConfigError::Parse { source, .. } = &e else {
            panic!("{e:?}");
        };
        assert!(source.is_data(), "{source:?}");
        let bundle = std::env::temp_dir().join(format!("casulo-cfg-{}", std::process::id()));
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "no\nrootfs"},
            "process": {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "uts", "path": "/nonexistent-ns"}]}
        }))
        .unwrap();
        let e = validate(&spec, &bundle).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "config.json: root.path: {}/no\\nrootfs: no such file or directory",
                bundle.display()
            )
        );
        let ConfigError::Path { field, source, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(
            (field.as_str(), source.kind()),
            ("root.path", std::io::ErrorKind::NotFound)
        );
        let e = crate::host_guard::own_namespace(&spec, LinuxNamespaceType::Uts).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.json: linux.namespaces.uts.path: /nonexistent-ns: no such file or directory"
        );
        assert_eq!(
            std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .and_then(std::io::Error::raw_os_error),
            Some(libc::ENOENT)
        );
    }

    /// What `parse` reads beyond oci-spec's types (hooks' field names, a pids object
    /// without a limit) is still read from the partial parse of the document.
    #[test]
    fn hooks_fields_and_absent_pids_limit_are_read() {
        let doc = |extra: &str| format!(r#"{{"ociVersion": "1.0.2", {extra}}}"#);
        let e = parse(doc(r#""hooks": {"prestart": [{"path": "/x", "bogus": 1}]}"#).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("hooks.prestart[0].bogus"), "{e}");
        let e = parse(doc(r#""hooks": {"nope": []}"#).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("hooks.nope"), "{e}");
        let pids = |extra: &str| {
            let spec = parse(doc(extra).as_bytes()).unwrap();
            let r = spec.linux().clone().and_then(|l| l.resources().clone());
            r.and_then(|r| *r.pids()).map(|p| p.limit())
        };
        assert_eq!(pids(r#""linux": {"resources": {"pids": {}}}"#), None);
        assert_eq!(
            pids(r#""linux": {"resources": {"pids": {"limit": 0}}}"#),
            Some(0)
        );
        assert_eq!(
            pids(r#""linux": {"resources": {"pids": {"limit": 7}}}"#),
            Some(7)
        );
        assert!(parse(doc(r#""hooks": null, "linux": null"#).as_bytes()).is_ok());
    }

    #[test]
    fn parse_errors_echoing_the_input_stay_one_line() {
        // Found by casulo-fuzz: a newline in a key or an unknown variant.
        for doc in [
            &br#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"net\nwork"}]}}"#[..],
            br#"{"li\nux":{"#,
            br#"{"":{"x"#,
            br#"{": ociVersion":"x"#,
        ] {
            let e = parse(doc).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e:?}");
            assert!(!e.starts_with("config.json: : "), "{e:?}");
        }
    }

    #[test]
    fn parse_error_names_the_field() {
        let err = parse(
            br#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"},{"type":"bogus"}]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("linux.namespaces[1].type"), "{err}");
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn exec_cpu_affinity_syntax_is_checked() {
        // oci-spec checks this field with a regular expression; the workspace builds it
        // with regex-lite in place of regex (runtime-cli/regex-shim), so pin the answers.
        let doc = |v: &str| {
            format!(
                r#"{{"ociVersion":"1.0.2","process":{{"cwd":"/","user":{{"uid":0,"gid":0}},"execCPUAffinity":{{"initial":"{v}"}}}}}}"#
            )
        };
        for ok in ["0", "0-3", "0-3,7", "1,2,3", "10-11,4"] {
            parse(doc(ok).as_bytes()).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "a", "0-", "-1", "0,", "0 - 3", "٣", "0-3,,4", "0\n"] {
            let err = parse(doc(bad).as_bytes()).unwrap_err().to_string();
            assert!(
                err.contains("process.execCPUAffinity.initial"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn only_major_version_1_is_accepted() {
        for ok in ["1.0.0", "1.3.0", "1.0.2-dev", "1.9.99"] {
            check_version(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["2.0.0", "0.1.0", "10.0.0", "1", "x", "11.0"] {
            let e = check_version(bad).unwrap_err().to_string();
            assert!(e.starts_with("config.json: ociVersion: "), "{bad}: {e}");
        }
    }

    #[test]
    fn malformed_json_is_refused() {
        let err = parse(b"{\"ociVersion\": ").unwrap_err().to_string();
        assert!(err.starts_with("config.json:"), "{err}");
    }

    #[test]
    fn relative_mount_destination_is_refused() {
        let dir = std::env::temp_dir().join(format!("casulo-cfg-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        let spec = parse(
            br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"mounts":[{"destination":"proc","type":"proc"}]}"#,
        )
        .unwrap();
        let err = validate(&spec, &dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("mounts[0].destination"), "{err}");
    }

    #[test]
    fn validation_errors_echoing_the_input_stay_one_line() {
        let spec = parse(br#"{"ociVersion":"1.0.2","root":{"path":"/no\nsuch"}}"#).unwrap();
        let err = validate(&spec, Path::new("/")).unwrap_err().to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("root.path"), "{err}");
    }

    #[test]
    fn missing_rootfs_is_refused() {
        let spec =
            parse(br#"{"ociVersion":"1.0.2","root":{"path":"/nonexistent-casulo-root"}}"#).unwrap();
        let err = validate(&spec, Path::new("/")).unwrap_err().to_string();
        assert!(
            err.contains("root.path") && err.contains("no such file or directory"),
            "{err}"
        );
    }
}
