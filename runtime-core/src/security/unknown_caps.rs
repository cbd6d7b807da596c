//! config.md "capabilities": names that cannot be mapped (unknown to the runtime) or
//! granted (beyond this kernel's last capability) "MUST be logged as a warning by the
//! runtime. Runtimes SHOULD NOT fail". They are taken out of the document before it is
//! parsed (oci-spec's capability type has no room for them), each distinct name is
//! logged once, and the container runs with the rest.

use std::path::Path;

use oci_spec::runtime::Spec;
use serde_json::Value;

use crate::log::Logger;
use crate::spec_util::ConfigError;

const SETS: [&str; 5] = [
    "bounding",
    "effective",
    "inheritable",
    "permitted",
    "ambient",
];

/// True when `name` is a capability this runtime knows and this kernel has.
pub fn known(name: &str) -> bool {
    static SUPPORTED: std::sync::OnceLock<caps::CapsHashSet> = std::sync::OnceLock::new();
    let supported = SUPPORTED.get_or_init(|| {
        caps::runtime::procfs_all_supported(None)
            .unwrap_or_else(|_| caps::runtime::thread_all_supported())
    });
    // oci-spec's enum must know the name too, or the parse after this would fail.
    let in_spec =
        serde_json::from_value::<oci_spec::runtime::Capability>(Value::String(name.to_string()))
            .is_ok();
    in_spec
        && name
            .parse::<caps::Capability>()
            .is_ok_and(|c| supported.contains(&c))
}

/// Removes the names [`known`] refuses from a `capabilities` object (the five sets);
/// returns each removed name once, in order of appearance.
pub fn strip(capabilities: &mut Value) -> Vec<String> {
    let mut removed: Vec<String> = Vec::new();
    for set in SETS {
        let Some(list) = capabilities.get_mut(set).and_then(Value::as_array_mut) else {
            continue;
        };
        list.retain(|v| match v.as_str() {
            Some(name) if !known(name) => {
                if !removed.iter().any(|r| r == name) {
                    removed.push(name.to_string());
                }
                false
            }
            _ => true,
        });
    }
    removed
}

/// Logs one warning per removed name; `field` is the JSON path of the capabilities.
pub fn warn(log: &Logger, field: &str, removed: &[String]) {
    for name in removed {
        log.warn(&format!(
            "{field}: unknown capability {name:?} cannot be granted; ignoring it"
        ));
    }
}

/// [`crate::config::load`], with unknown capability names of `process.capabilities`
/// logged and left out, and the spec's scheduler flag names read. A config oci-spec
/// parses as it is costs nothing more; only one it refuses is rewritten and parsed again.
pub fn load_config(bundle: &Path, log: &Logger) -> Result<Spec, ConfigError> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let first = crate::config::parse(&data);
    if first.is_ok() {
        return first;
    }
    let Ok(mut doc) = serde_json::from_slice::<Value>(&data) else {
        return first;
    };
    let removed = match doc.pointer_mut("/process/capabilities") {
        Some(c) if c.is_object() => strip(c),
        _ => Vec::new(),
    };
    let renamed = doc
        .get_mut("process")
        .is_some_and(crate::security::process::spec_sched_flag_names);
    if removed.is_empty() && !renamed {
        return first;
    }
    let data = serde_json::to_vec(&doc).unwrap_or(data);
    let spec = crate::config::parse(&data)?;
    warn(log, "process.capabilities", &removed);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_removed_once_each() {
        let mut c = serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_NOPE", "CAP_KILL"],
            "effective": ["CAP_NOPE", "CAP_ALSO_NOPE"],
            "ambient": [],
        });
        assert_eq!(strip(&mut c), ["CAP_NOPE", "CAP_ALSO_NOPE"]);
        assert_eq!(c["bounding"], serde_json::json!(["CAP_CHOWN", "CAP_KILL"]));
        assert_eq!(c["effective"], serde_json::json!([]));
    }
}
