//! `exec --cgroup` (runc 1.2's flag): the exec'd process joins an existing sub-cgroup of
//! the container's cgroup instead of the container's cgroup itself. Each value is
//! `PATH` (every controller) or `CONTROLLER[,CONTROLLER…]:PATH` (cgroup v1 only); `PATH`
//! is relative to the container's cgroup and may not climb out of it.

use std::path::Path;

use crate::cgroups::{self, detect, Layout};
use crate::{Error, Result};

/// The sub-cgroups an exec joins.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SubCgroups {
    /// The cgroup path for every controller (the container's own when no bare `PATH`).
    pub all: Option<String>,
    /// v1: `(controller, cgroup path)` joined after `all`.
    pub per_controller: Vec<(String, String)>,
}

fn invalid(arg: &str, why: &str) -> Error {
    Error::Invalid {
        field: format!("exec --cgroup {arg:?}"),
        reason: why.to_string(),
    }
}

/// Parses the `--cgroup` values against the container's cgroup path `container`.
pub(crate) fn parse(
    container: Option<&str>,
    args: &[String],
    layout: Layout,
) -> Result<SubCgroups> {
    let mut out = SubCgroups {
        all: container.map(str::to_string),
        ..Default::default()
    };
    if args.is_empty() {
        return Ok(out);
    }
    let Some(base) = container else {
        return Err(invalid(&args[0], "the container has no cgroup"));
    };
    if layout == Layout::V2 && args.len() > 1 {
        return Err(invalid(&args[1], "cgroup v2 takes a single path"));
    }
    let mut bare = false;
    for arg in args {
        let (ctls, rel) = match arg.split_once(':') {
            Some((c, p)) => (Some(c), p),
            None => (None, arg.as_str()),
        };
        let rel = rel.trim_start_matches('/');
        let normal = Path::new(rel)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if rel.is_empty() || !normal {
            return Err(invalid(
                arg,
                "the path must name a sub-cgroup below the container's",
            ));
        }
        let path = format!("{}/{rel}", base.trim_end_matches('/'));
        match ctls {
            None if bare => return Err(invalid(arg, "only one path without controllers")),
            None => {
                bare = true;
                out.all = Some(path);
            }
            Some(_) if layout == Layout::V2 => {
                return Err(invalid(arg, "controllers cannot be named on cgroup v2"))
            }
            Some(c) => {
                for ctl in c.split(',') {
                    if ctl.is_empty() {
                        return Err(invalid(arg, "empty controller name"));
                    }
                    out.per_controller.push((ctl.to_string(), path.clone()));
                }
            }
        }
    }
    Ok(out)
}

/// Moves `pid` into the v1 per-controller sub-cgroups (after it joined `all`).
pub(crate) fn join_per_controller(sub: &SubCgroups, pid: i32) -> Result<()> {
    if sub.per_controller.is_empty() {
        return Ok(());
    }
    let mounts = detect::v1_mounts().map_err(Error::from)?;
    for (ctl, path) in &sub.per_controller {
        let Some(m) = mounts.get(ctl.as_str()) else {
            return Err(invalid(ctl, "no such cgroup v1 controller on this host"));
        };
        let rel = path
            .strip_prefix(m.root.trim_end_matches('/'))
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .unwrap_or(path);
        let procs = m
            .mountpoint
            .join(rel.trim_start_matches('/'))
            .join("cgroup.procs");
        if let Err(source) = std::fs::write(&procs, pid.to_string()) {
            return Err(Error::JoinSubCgroup {
                arg: format!("{ctl}:{path}"),
                procs,
                source,
            });
        }
    }
    Ok(())
}

/// Opens the cgroup every controller of the exec'd process joins. With the container's
/// unit in a rootless caller's systemd instance (`user_unit`; `container`, its cgroup),
/// through that manager, which moves the process when the caller may not: into the
/// unit's own cgroup or into the sub-cgroup of it that `--cgroup` names.
pub(crate) fn open_all(
    sub: &SubCgroups,
    container: Option<&str>,
    user_unit: Option<&str>,
) -> Result<Option<Box<dyn cgroups::Cgroup>>> {
    let Some(path) = sub.all.as_deref() else {
        return Ok(None);
    };
    let rel = container.and_then(|c| path.strip_prefix(c.trim_end_matches('/')));
    match (user_unit, container, rel) {
        (Some(unit), Some(c), Some(r)) if r.is_empty() || r.starts_with('/') => Ok(Some(Box::new(
            cgroups::systemd::Systemd::existing(unit, c, r, true)?,
        ))),
        _ => Ok(Some(cgroups::open(path)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str], layout: Layout) -> Result<SubCgroups> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(Some("/c/id"), &args, layout)
    }

    #[test]
    fn paths_controllers_and_refusals() {
        assert_eq!(p(&[], Layout::V1).unwrap().all.as_deref(), Some("/c/id"));
        assert_eq!(
            p(&["sub"], Layout::V2).unwrap().all.as_deref(),
            Some("/c/id/sub")
        );
        let s = p(&["memory,pids:a/b", "x"], Layout::V1).unwrap();
        assert_eq!(s.all.as_deref(), Some("/c/id/x"));
        assert_eq!(
            s.per_controller,
            vec![
                ("memory".to_string(), "/c/id/a/b".to_string()),
                ("pids".to_string(), "/c/id/a/b".to_string())
            ]
        );
        for (bad, layout) in [
            (&["../x"][..], Layout::V1),
            (&["a/../../x"][..], Layout::V1),
            (&[""][..], Layout::V1),
            (&["memory:x"][..], Layout::V2),
            (&["a", "b"][..], Layout::V2),
            (&["a", "b"][..], Layout::V1),
        ] {
            let e = p(bad, layout).unwrap_err().to_string();
            assert!(e.starts_with("exec --cgroup"), "{bad:?}: {e}");
        }
    }

    /// A v1 sub-cgroup that cannot be joined keeps the write's io::Error (and so its
    /// errno); the text is the one before.
    #[test]
    fn a_failed_join_keeps_the_io_error() {
        let Some(m) = detect::v1_mounts()
            .ok()
            .and_then(|m| m.get("pids").cloned())
        else {
            eprintln!("skipped: no cgroup v1 pids hierarchy on this host");
            return;
        };
        let path = format!("/casulo-nonexistent-{}/x", std::process::id());
        let sub = SubCgroups {
            all: None,
            per_controller: vec![("pids".into(), path.clone())],
        };
        let e = join_per_controller(&sub, 1).unwrap_err();
        let procs = m
            .mountpoint
            .join(path.trim_start_matches('/'))
            .join("cgroup.procs");
        assert_eq!(
            e.to_string(),
            format!(
                "exec --cgroup \"pids:{path}\": {}: entity not found",
                procs.display()
            )
        );
        assert_eq!(e.errno(), Some(nix::errno::Errno::ENOENT), "{e:?}");
    }
}
