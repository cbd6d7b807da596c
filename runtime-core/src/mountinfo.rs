//! `/proc/<pid>/mountinfo` (proc(5)): the one parser of the crate, used for the host's
//! cgroup hierarchies (cgroup detection and `cgroup` mounts in the container).

/// One line of mountinfo, with the escaped fields (`\ooo`) decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Field 4: the root of the mount within its filesystem.
    pub root: String,
    /// Field 5: the mount point, relative to the reader's root.
    pub mountpoint: String,
    /// Field 6: the per-mount options (`rw,nosuid,…`).
    pub mount_options: String,
    /// The filesystem type after the ` - ` separator.
    pub fstype: String,
    /// The mount source.
    pub source: String,
    /// The per-superblock options.
    pub super_options: String,
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (pre, post) = line.split_once(" - ")?;
    let pre: Vec<&str> = pre.split(' ').collect();
    let mut post = post.split(' ');
    if pre.len() < 6 {
        return None;
    }
    Some(MountEntry {
        root: unescape(pre[3]),
        mountpoint: unescape(pre[4]),
        mount_options: pre[5].to_string(),
        fstype: post.next()?.to_string(),
        source: unescape(post.next()?),
        super_options: post.next()?.to_string(),
    })
}

/// Reads and parses `/proc/self/mountinfo`.
pub fn read_self() -> std::io::Result<Vec<MountEntry>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

fn unescape(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_escapes() {
        let text =
            "30 25 0:26 / /sys/fs/cgroup/cpu\\040x rw,nosuid shared:9 - cgroup cgroup rw,cpu\n\
                    bad line\n";
        let m = parse(text);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].mountpoint, "/sys/fs/cgroup/cpu x");
        assert_eq!(m[0].root, "/");
        assert_eq!(m[0].mount_options, "rw,nosuid");
        assert_eq!(m[0].fstype, "cgroup");
        assert_eq!(m[0].super_options, "rw,cpu");
    }
}
