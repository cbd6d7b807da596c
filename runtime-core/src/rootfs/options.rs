//! Mount options (config.md "Mounts", mount(8)): the option strings of a mount entry
//! turned into mount(2) flags, propagation changes and filesystem data.

use nix::mount::MsFlags;

/// A mount entry's options, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for mount(2) (including MS_BIND and MS_REC for bind/rbind).
    pub flags: MsFlags,
    /// Propagation changes applied after the mount, in order.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options, comma-joined (`mode=755,size=65536k`).
    pub data: String,
    /// The `r*` options: attributes set and cleared with mount_setattr(AT_RECURSIVE) on
    /// the mount and every mount below it.
    pub recursive: RecursiveAttrs,
    /// `idmap` (`Some(false)`) or `ridmap` (`Some(true)`, the mapping applied to every
    /// mount of the tree).
    pub idmap: Option<bool>,
    /// `tmpcopyup`: the new tmpfs starts with a copy of what was under it.
    pub copyup: bool,
}

/// `MOUNT_ATTR_*` bits for mount_setattr(2) (an empty set means no call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecursiveAttrs {
    /// Attributes to set.
    pub set: u64,
    /// Attributes to clear.
    pub clr: u64,
}

impl RecursiveAttrs {
    /// True when no recursive option was given.
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clr == 0
    }
}

impl MountOptions {
    /// True for bind and rbind mounts.
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
}

/// `MS_NOSYMFOLLOW` (Linux 5.10), not among nix's flags.
const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);
/// `MS_I_VERSION`.
const MS_I_VERSION: MsFlags = MsFlags::from_bits_retain(libc::MS_I_VERSION);

/// A recursive option: a bit set or cleared, or a value of the access-time field.
enum Rec {
    Set(u64),
    Clear(u64),
    Atime(u64),
}

/// The recursive options of config.md's table (mount_setattr(2) attributes). For the
/// access time, as mount(8) describes the plain options: `ratime` and `rnostrictatime`
/// go back to the kernel's default (relatime), `rnorelatime` updates always.
fn recursive(opt: &str) -> Option<Rec> {
    use crate::sys::mount_api::attr as A;
    Some(match opt {
        "rro" => Rec::Set(A::RDONLY),
        "rrw" => Rec::Clear(A::RDONLY),
        "rnosuid" => Rec::Set(A::NOSUID),
        "rsuid" => Rec::Clear(A::NOSUID),
        "rnodev" => Rec::Set(A::NODEV),
        "rdev" => Rec::Clear(A::NODEV),
        "rnoexec" => Rec::Set(A::NOEXEC),
        "rexec" => Rec::Clear(A::NOEXEC),
        "rnodiratime" => Rec::Set(A::NODIRATIME),
        "rdiratime" => Rec::Clear(A::NODIRATIME),
        "rnosymfollow" => Rec::Set(A::NOSYMFOLLOW),
        "rsymfollow" => Rec::Clear(A::NOSYMFOLLOW),
        "rrelatime" | "ratime" | "rnostrictatime" => Rec::Atime(A::RELATIME),
        "rnoatime" => Rec::Atime(A::NOATIME),
        "rstrictatime" | "rnorelatime" => Rec::Atime(A::STRICTATIME),
        _ => return None,
    })
}

/// Maps one option to (set, clear) flags, or a propagation flag.
fn flag(opt: &str) -> Option<(bool, MsFlags)> {
    use MsFlags as F;
    Some(match opt {
        "defaults" => (true, F::empty()),
        "ro" => (true, F::MS_RDONLY),
        "rw" => (false, F::MS_RDONLY),
        "nosuid" => (true, F::MS_NOSUID),
        "suid" => (false, F::MS_NOSUID),
        "nodev" => (true, F::MS_NODEV),
        "dev" => (false, F::MS_NODEV),
        "noexec" => (true, F::MS_NOEXEC),
        "exec" => (false, F::MS_NOEXEC),
        "sync" => (true, F::MS_SYNCHRONOUS),
        "async" => (false, F::MS_SYNCHRONOUS),
        "dirsync" => (true, F::MS_DIRSYNC),
        "remount" => (true, F::MS_REMOUNT),
        "mand" => (true, F::MS_MANDLOCK),
        "nomand" => (false, F::MS_MANDLOCK),
        "atime" => (false, F::MS_NOATIME),
        "noatime" => (true, F::MS_NOATIME),
        "diratime" => (false, F::MS_NODIRATIME),
        "nodiratime" => (true, F::MS_NODIRATIME),
        "relatime" => (true, F::MS_RELATIME),
        "norelatime" => (false, F::MS_RELATIME),
        "strictatime" => (true, F::MS_STRICTATIME),
        "nostrictatime" => (false, F::MS_STRICTATIME),
        "lazytime" => (true, F::MS_LAZYTIME),
        "nolazytime" => (false, F::MS_LAZYTIME),
        "silent" => (true, F::MS_SILENT),
        "loud" => (false, F::MS_SILENT),
        "nosymfollow" => (true, MS_NOSYMFOLLOW),
        "symfollow" => (false, MS_NOSYMFOLLOW),
        "iversion" => (true, MS_I_VERSION),
        "noiversion" => (false, MS_I_VERSION),
        "bind" => (true, F::MS_BIND),
        "rbind" => (true, F::MS_BIND | F::MS_REC),
        _ => return None,
    })
}

fn propagation(opt: &str) -> Option<MsFlags> {
    use MsFlags as F;
    Some(match opt {
        "private" => F::MS_PRIVATE,
        "rprivate" => F::MS_PRIVATE | F::MS_REC,
        "shared" => F::MS_SHARED,
        "rshared" => F::MS_SHARED | F::MS_REC,
        "slave" => F::MS_SLAVE,
        "rslave" => F::MS_SLAVE | F::MS_REC,
        "unbindable" => F::MS_UNBINDABLE,
        "runbindable" => F::MS_UNBINDABLE | F::MS_REC,
        _ => return None,
    })
}

/// Parses a mount entry's options; `typ` "bind" counts as a bind mount. Later options
/// win over earlier ones.
pub fn parse(typ: Option<&str>, options: &[String]) -> MountOptions {
    let mut out = MountOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: String::new(),
        recursive: RecursiveAttrs::default(),
        idmap: None,
        copyup: false,
    };
    if typ == Some("bind") || typ == Some("rbind") {
        out.flags |= MsFlags::MS_BIND;
        if typ == Some("rbind") {
            out.flags |= MsFlags::MS_REC;
        }
    }
    let mut data = Vec::new();
    let mut atime = None;
    for opt in options {
        if let Some((set, f)) = flag(opt) {
            // insert/remove keep bits nix does not name (MS_NOSYMFOLLOW).
            if set {
                out.flags.insert(f);
            } else {
                out.flags.remove(f);
            }
        } else if let Some(p) = propagation(opt) {
            out.propagation.push(p);
        } else if let Some(r) = recursive(opt) {
            let a = &mut out.recursive;
            match r {
                Rec::Set(b) => {
                    a.set |= b;
                    a.clr &= !b;
                }
                Rec::Clear(b) => {
                    a.clr |= b;
                    a.set &= !b;
                }
                Rec::Atime(v) => atime = Some(v),
            }
        } else if opt == "idmap" || opt == "ridmap" {
            out.idmap = Some(opt == "ridmap");
        } else if opt == "tmpcopyup" {
            out.copyup = true;
        } else {
            data.push(opt.as_str());
        }
    }
    if let Some(v) = atime {
        // The access time is a field: clear it whole, then set the chosen value.
        out.recursive.clr |= crate::sys::mount_api::attr::ATIME_MASK;
        out.recursive.set |= v;
    }
    out.data = data.join(",");
    out
}

/// Every option name [`parse`] recognises (flags, propagation, recursive attributes,
/// idmap and tmpcopyup): the `features` output lists these; a test checks each is
/// recognised.
pub const NAMES: [&str; 62] = [
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "idmap",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "ridmap",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

/// True when `opt` is an option [`parse`] recognises (not filesystem data).
#[cfg(test)]
pub fn is_known(opt: &str) -> bool {
    flag(opt).is_some()
        || propagation(opt).is_some()
        || recursive(opt).is_some()
        || matches!(opt, "idmap" | "ridmap" | "tmpcopyup")
}

/// Filesystem data on a bind mount (`mode=755`, `size=…`): the kernel ignores it for a
/// bind, as runc lets it; the warning for entry `i` of `mounts`, if any.
pub fn ignored_bind_data(i: usize, m: &oci_spec::runtime::Mount) -> Option<String> {
    let typ = m.typ().as_deref();
    let opts = parse(typ, m.options().as_deref().unwrap_or(&[]));
    let bind = opts.is_bind() && !matches!(typ, Some("cgroup" | "cgroup2"));
    (bind && !opts.data.is_empty()).then(|| {
        format!(
            "mounts[{i}].options: {:?} has no effect on a bind mount; ignored",
            opts.data
        )
    })
}

/// Checks entry `i` of `mounts` before anything is created; returns the field and the
/// message of the first problem. `userns`: the container has a user namespace (new or
/// joined).
pub fn check(i: usize, m: &oci_spec::runtime::Mount, userns: bool) -> Option<(String, String)> {
    let typ = m.typ().as_deref();
    let opts = parse(typ, m.options().as_deref().unwrap_or(&[]));
    let field = |f: &str| format!("mounts[{i}].{f}");
    let bind = opts.is_bind() && !matches!(typ, Some("cgroup" | "cgroup2"));
    match (m.uid_mappings(), m.gid_mappings()) {
        (Some(_), None) => {
            return Some((
                field("gidMappings"),
                "must be given with uidMappings".into(),
            ))
        }
        (None, Some(_)) => {
            return Some((
                field("uidMappings"),
                "must be given with gidMappings".into(),
            ))
        }
        _ => {}
    }
    let mappings = m.uid_mappings().is_some();
    if opts.idmap.is_some() || mappings {
        if !bind {
            return Some((
                field("options"),
                format!(
                    "idmapped mounts are implemented for bind mounts only, not {}",
                    typ.unwrap_or("none")
                ),
            ));
        }
        if !mappings && !userns {
            return Some((
                field("options"),
                "idmap without uidMappings and gidMappings needs a user namespace".into(),
            ));
        }
    }
    if opts.copyup && typ != Some("tmpfs") {
        return Some((field("options"), "tmpcopyup needs a tmpfs mount".into()));
    }
    None
}

/// Parses a propagation mode name (`linux.rootfsPropagation`).
pub fn propagation_mode(name: &str) -> Option<MsFlags> {
    propagation(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn flags_data_and_propagation() {
        let o = parse(
            Some("tmpfs"),
            &s(&["nosuid", "strictatime", "mode=755", "size=65536k", "rslave"]),
        );
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert!(!o.is_bind());
    }

    #[test]
    fn later_options_win_and_bind_type() {
        let o = parse(Some("bind"), &s(&["ro", "rw", "noexec"]));
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_NOEXEC);
        let o = parse(Some("none"), &s(&["rbind", "ro"]));
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY
        );
    }

    #[test]
    fn recursive_attributes_idmap_and_copyup() {
        use crate::sys::mount_api::attr as A;
        let o = parse(
            Some("bind"),
            &s(&[
                "rbind",
                "rro",
                "rnosuid",
                "rnoexec",
                "rexec",
                "rnoatime",
                "nosymfollow",
            ]),
        );
        assert_eq!(o.recursive.set, A::RDONLY | A::NOSUID | A::NOATIME);
        assert_eq!(o.recursive.clr, A::NOEXEC | A::ATIME_MASK);
        assert!(o.flags.contains(MS_NOSYMFOLLOW) && o.data.is_empty());
        let o = parse(Some("bind"), &s(&["rrw", "rstrictatime", "ratime"]));
        assert_eq!(
            (o.recursive.set, o.recursive.clr),
            (A::RELATIME, A::RDONLY | A::ATIME_MASK)
        );
        let o = parse(None, &s(&["nosymfollow", "symfollow"]));
        assert!(!o.flags.contains(MS_NOSYMFOLLOW), "removed, not truncated");
        assert_eq!(parse(None, &s(&["ridmap"])).idmap, Some(true));
        assert_eq!(parse(None, &s(&["ridmap", "idmap"])).idmap, Some(false));
        assert!(parse(Some("tmpfs"), &s(&["tmpcopyup"])).copyup);
        assert!(parse(Some("bind"), &[]).recursive.is_empty());
    }

    #[test]
    fn bind_data_is_a_warning() {
        let m: oci_spec::runtime::Mount = serde_json::from_value(serde_json::json!({
            "destination": "/t", "type": "bind", "source": "/tmp", "options": ["rbind", "mode=755"]
        }))
        .unwrap();
        assert!(check(3, &m, false).is_none());
        let w = ignored_bind_data(3, &m).unwrap();
        assert!(w.starts_with("mounts[3].options: \"mode=755\""), "{w}");
    }
}
