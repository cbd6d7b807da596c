//! `linux.memoryPolicy` (config-linux.md "Memory policy", runtime-spec 1.3): the NUMA
//! policy set with set_mempolicy(2) in the init (and in `exec`'d processes) before
//! execve, so the container's process and its children inherit it. Checked before
//! anything is created ([`MemPolicy::from_spec`]); the kernel's own refusal (a node
//! outside the allowed set, a flag the mode does not take) names the field too.

use oci_spec::runtime::{MemoryPolicyFlagType as Flag, MemoryPolicyModeType as Mode, Spec};

use super::{ListError, SecurityError};

/// Highest node number accepted in `nodes` (the kernel's MAX_NUMNODES is at most 1024).
const MAX_NODE: usize = 1023;

/// Modes in the spec's order, with their MPOL_* values (linux/mempolicy.h).
pub const MODES: [(Mode, &str, i32); 7] = [
    (Mode::MpolDefault, "MPOL_DEFAULT", 0),
    (Mode::MpolBind, "MPOL_BIND", 2),
    (Mode::MpolInterleave, "MPOL_INTERLEAVE", 3),
    (Mode::MpolWeightedInterleave, "MPOL_WEIGHTED_INTERLEAVE", 6),
    (Mode::MpolPreferred, "MPOL_PREFERRED", 1),
    (Mode::MpolPreferredMany, "MPOL_PREFERRED_MANY", 5),
    (Mode::MpolLocal, "MPOL_LOCAL", 4),
];

/// Mode flags with their values.
pub const FLAGS: [(Flag, &str, i32); 3] = [
    (Flag::MpolFNumaBalancing, "MPOL_F_NUMA_BALANCING", 1 << 13),
    (Flag::MpolFRelativeNodes, "MPOL_F_RELATIVE_NODES", 1 << 14),
    (Flag::MpolFStaticNodes, "MPOL_F_STATIC_NODES", 1 << 15),
];

/// A checked memory policy, ready for set_mempolicy(2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemPolicy {
    mode: i32,
    mask: Vec<libc::c_ulong>,
}

fn invalid(field: &str, msg: impl Into<String>) -> SecurityError {
    SecurityError::Invalid {
        field: format!("linux.memoryPolicy.{field}"),
        reason: msg.into(),
    }
}

/// Parses `0-3,7` into node numbers.
fn parse_nodes(s: &str) -> Result<Vec<usize>, ListError> {
    let num = |t: &str| {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ListError::Nodes { list: s.into() });
        }
        match t.parse::<usize>() {
            Ok(n) if n <= MAX_NODE => Ok(n),
            _ => Err(ListError::NodeTooHigh {
                node: t.into(),
                max: MAX_NODE,
            }),
        }
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(ListError::NodeRange { item: part.into() });
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    Ok(out)
}

impl MemPolicy {
    /// The config's policy, checked; `None` when `linux.memoryPolicy` is absent.
    pub fn from_spec(spec: &Spec) -> Result<Option<MemPolicy>, SecurityError> {
        let Some(p) = spec
            .linux()
            .as_ref()
            .and_then(|l| l.memory_policy().as_ref())
        else {
            return Ok(None);
        };
        let (_, name, mode) = MODES
            .iter()
            .find(|(m, _, _)| *m == p.mode())
            .copied()
            .ok_or_else(|| invalid("mode", format!("{:?} is not supported", p.mode())))?;
        let nodes = match p.nodes().as_deref() {
            None | Some("") => Vec::new(),
            Some(s) => parse_nodes(s).map_err(|source| SecurityError::List {
                field: "linux.memoryPolicy.nodes".into(),
                source,
            })?,
        };
        let no_nodes = matches!(p.mode(), Mode::MpolDefault | Mode::MpolLocal);
        // MPOL_PREFERRED without nodes means local allocation (set_mempolicy(2)).
        let needs_nodes = !no_nodes && p.mode() != Mode::MpolPreferred;
        if no_nodes && !nodes.is_empty() {
            return Err(invalid("nodes", format!("{name} takes no nodes")));
        }
        if needs_nodes && nodes.is_empty() {
            return Err(invalid("nodes", format!("{name} needs at least one node")));
        }
        let flags = p.flags().clone().unwrap_or_default();
        let mut bits = 0;
        for (i, f) in flags.iter().enumerate() {
            let (_, fname, v) =
                FLAGS
                    .iter()
                    .find(|(x, _, _)| x == f)
                    .copied()
                    .ok_or_else(|| {
                        invalid(&format!("flags[{i}]"), format!("{f:?} is not supported"))
                    })?;
            if p.mode() == Mode::MpolDefault {
                return Err(invalid(
                    &format!("flags[{i}]"),
                    format!("{fname}: MPOL_DEFAULT takes no flags"),
                ));
            }
            bits |= v;
        }
        if bits & FLAGS[1].2 != 0 && bits & FLAGS[2].2 != 0 {
            return Err(invalid(
                "flags",
                "MPOL_F_RELATIVE_NODES and MPOL_F_STATIC_NODES exclude each other",
            ));
        }
        let word = libc::c_ulong::BITS as usize;
        let mut mask = Vec::new();
        if let Some(max) = nodes.iter().max() {
            mask = vec![0; max / word + 1];
            for n in &nodes {
                mask[n / word] |= 1 << (n % word);
            }
        }
        Ok(Some(MemPolicy {
            mode: mode | bits,
            mask,
        }))
    }

    /// set_mempolicy(2) on the calling process.
    pub fn apply(&self) -> Result<(), SecurityError> {
        // maxnode counts bits; the kernel ignores bit `maxnode - 1` on older kernels,
        // so one more than the mask holds is passed.
        let maxnode = (self.mask.len() * libc::c_ulong::BITS as usize) as u64 + 1;
        let maxnode = if self.mask.is_empty() { 0 } else { maxnode };
        crate::sys::numa::set_mempolicy(self.mode, &self.mask, maxnode).map_err(|e| {
            SecurityError::Sys {
                what: "linux.memoryPolicy: set_mempolicy",
                source: crate::rootfs::ErrnoText(e),
            }
        })
    }
}

/// Applies the config's policy, if any (the init and exec'd processes call this; the
/// config was checked by [`MemPolicy::from_spec`] before anything was created).
pub fn apply(spec: &Spec) -> Result<(), SecurityError> {
    match MemPolicy::from_spec(spec)? {
        Some(p) => p.apply(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(v: serde_json::Value) -> Result<Option<MemPolicy>, String> {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.3.0", "linux": {"memoryPolicy": v}
        }))
        .map_err(|e| e.to_string())?;
        MemPolicy::from_spec(&spec).map_err(|e| e.to_string())
    }

    #[test]
    fn modes_nodes_and_flags() {
        let p = policy(serde_json::json!({"mode": "MPOL_INTERLEAVE", "nodes": "0-2,65", "flags": ["MPOL_F_STATIC_NODES"]}))
            .unwrap()
            .unwrap();
        assert_eq!(p.mode, 3 | 1 << 15);
        assert_eq!(p.mask, vec![0b111, 0b10]);
        let p = policy(serde_json::json!({"mode": "MPOL_LOCAL"}))
            .unwrap()
            .unwrap();
        assert_eq!((p.mode, p.mask.is_empty()), (4, true));
        assert!(policy(serde_json::json!({"mode": "MPOL_PREFERRED"})).is_ok());
    }

    #[test]
    fn bad_policies_name_the_field() {
        for (v, field) in [
            (
                serde_json::json!({"mode": "MPOL_BIND"}),
                "linux.memoryPolicy.nodes",
            ),
            (
                serde_json::json!({"mode": "MPOL_DEFAULT", "nodes": "0"}),
                "linux.memoryPolicy.nodes",
            ),
            (
                serde_json::json!({"mode": "MPOL_BIND", "nodes": "1-0"}),
                "linux.memoryPolicy.nodes",
            ),
            (
                serde_json::json!({"mode": "MPOL_BIND", "nodes": "0,,1"}),
                "linux.memoryPolicy.nodes",
            ),
            (
                serde_json::json!({"mode": "MPOL_BIND", "nodes": "4096"}),
                "linux.memoryPolicy.nodes",
            ),
            (
                serde_json::json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}),
                "linux.memoryPolicy.flags",
            ),
            (
                serde_json::json!({"mode": "MPOL_DEFAULT", "flags": ["MPOL_F_STATIC_NODES"]}),
                "linux.memoryPolicy.flags[0]",
            ),
        ] {
            let e = policy(v.clone()).unwrap_err();
            assert!(e.contains(field), "{v}: {e}");
            assert_eq!(e.lines().count(), 1);
        }
        let e = policy(serde_json::json!({"mode": "MPOL_BOGUS"})).unwrap_err();
        assert!(e.contains("MPOL_BOGUS"), "{e}");
    }

    /// A node list that cannot be read keeps its typed reason as the source; the texts
    /// are the ones before it was typed.
    #[test]
    fn bad_node_lists_are_typed() {
        for (nodes, text) in [
            ("1-0", "range \"1-0\" is reversed"),
            (
                "0,,1",
                "\"0,,1\" is not a list of node numbers like \"0-3,7\"",
            ),
            ("4096", "node 4096 is above 1023"),
        ] {
            let spec: Spec = serde_json::from_value(serde_json::json!({
                "ociVersion": "1.3.0",
                "linux": {"memoryPolicy": {"mode": "MPOL_BIND", "nodes": nodes}}
            }))
            .unwrap();
            let e = MemPolicy::from_spec(&spec).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("config.json: linux.memoryPolicy.nodes: {text}")
            );
            let SecurityError::List { source, .. } = &e else {
                panic!("{e:?}");
            };
            assert_eq!(source.to_string(), text);
        }
    }
}
