//! The pods' cgroup parents under containerd's `SystemdCgroup = true`, as kubelet's
//! systemd cgroup driver makes them: a slice per pod, `kubepods-besteffort-pod<uid>.slice`
//! (systemd nests it as `kubepods.slice/kubepods-besteffort.slice/…`), its pids limit as
//! the slice's TasksMax; containerd then asks for `slice:cri-containerd:<id>` and the
//! runtime makes the scope `cri-containerd-<id>.scope` in it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use casulo_core::cgroups::systemd::expand_slice;
use casulo_integration::engines;

/// The pod's slice, from its uid as kubelet names it (`-` is systemd's nesting: `_`).
pub fn pod_slice(uid: &str) -> String {
    format!("kubepods-besteffort-pod{}.slice", uid.replace('-', "_"))
}

/// The slice's cgroup directory.
pub fn cgroup_dir(slice: &str) -> PathBuf {
    let rel = expand_slice(slice).unwrap_or_else(|e| panic!("{slice}: {e}"));
    PathBuf::from(format!("/sys/fs/cgroup{rel}"))
}

fn systemctl(args: &[&str]) -> engines::Out {
    let mut c = Command::new("systemctl");
    c.arg("--no-pager").args(args);
    let r = engines::run(&mut c, Duration::from_secs(60));
    assert_eq!(r.code, 0, "systemctl {args:?}: {r:?}");
    r
}

/// Starts `slice` with TasksMax=`max` (kubelet's pod pids limit) and checks its
/// cgroup's pids.max.
pub fn limit_pids(slice: &str, max: u32) {
    systemctl(&["start", slice]);
    systemctl(&[
        "set-property",
        "--runtime",
        slice,
        &format!("TasksMax={max}"),
    ]);
    let f = cgroup_dir(slice).join("pids.max");
    let got = std::fs::read_to_string(&f).unwrap_or_default();
    assert_eq!(got.trim(), max.to_string(), "{}", f.display());
}

/// The `cri-containerd-*.scope` units systemd still has (any state).
pub fn scopes_left() -> Vec<String> {
    systemctl(&[
        "list-units",
        "--all",
        "--plain",
        "--no-legend",
        "cri-containerd-*.scope",
    ])
    .stdout
    .lines()
    .map(str::to_string)
    .collect()
}

/// Stops the pods' slices when dropped (also after a failed assertion); their parents
/// (`kubepods*.slice`) stay, as systemd keeps them.
pub struct Slices(pub Vec<String>);

impl Drop for Slices {
    fn drop(&mut self) {
        for s in &self.0 {
            let _ = Command::new("systemctl").args(["stop", s]).status();
        }
    }
}
