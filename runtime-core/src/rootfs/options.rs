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
}

impl MountOptions {
    /// True for bind and rbind mounts.
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
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

/// Parses a mount entry's options; `typ` "bind" counts as a bind mount.
pub fn parse(typ: Option<&str>, options: &[String]) -> MountOptions {
    let mut out = MountOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: String::new(),
    };
    if typ == Some("bind") || typ == Some("rbind") {
        out.flags |= MsFlags::MS_BIND;
        if typ == Some("rbind") {
            out.flags |= MsFlags::MS_REC;
        }
    }
    let mut data = Vec::new();
    for opt in options {
        if let Some((set, f)) = flag(opt) {
            if set {
                out.flags |= f;
            } else {
                out.flags &= !f;
            }
        } else if let Some(p) = propagation(opt) {
            out.propagation.push(p);
        } else {
            data.push(opt.as_str());
        }
    }
    out.data = data.join(",");
    out
}

/// Every option name [`parse`] turns into a flag or a propagation change (the
/// `features` output lists these; a test checks each is recognised).
pub const NAMES: [&str; 37] = [
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "relatime",
    "remount",
    "ro",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "unbindable",
];

/// True when `opt` is a known flag or propagation option (not filesystem data).
pub fn is_known(opt: &str) -> bool {
    flag(opt).is_some() || propagation(opt).is_some()
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
}
