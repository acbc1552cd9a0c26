//! `/proc/self/mountinfo`, the one parser of it (proc(5)):
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! id parent dev root point options  optional - type source super-options
//! ```
//!
//! The kernel escapes space, tab, newline and backslash in paths as `\ooo`
//! (`\040` for a space): every path here is unescaped, so a rootfs whose path
//! holds a space compares equal to its mount point.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// The mountinfo file of the calling process.
pub const SELF: &str = "/proc/self/mountinfo";

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The mount id (unique in the namespace; statx STATX_MNT_ID gives it).
    pub id: u64,
    pub parent: u64,
    /// The directory of the filesystem mounted here (a bind mount's source).
    pub root: PathBuf,
    /// Where it is mounted, relative to the reader's root.
    pub point: PathBuf,
    /// Per-mount options (`rw,nosuid`).
    pub options: String,
    /// Optional fields: `shared:N`, `master:N`, `propagate_from:N`, `unbindable`.
    pub optional: Vec<String>,
    pub fs_type: String,
    pub source: String,
    /// Per-superblock options (for cgroup v1, the controllers).
    pub super_options: String,
}

impl MountInfo {
    /// Mount events propagate from this mount to its peers.
    pub fn is_shared(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("shared:"))
    }
}

/// Parse mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

/// Parse one line; None when it is not a mountinfo line.
pub fn parse_line(line: &str) -> Option<MountInfo> {
    let mut f = line.split(' ');
    let id = f.next()?.parse().ok()?;
    let parent = f.next()?.parse().ok()?;
    let _dev = f.next()?;
    let root = unescape(f.next()?);
    let point = unescape(f.next()?);
    let options = f.next()?.to_string();
    let mut optional = Vec::new();
    loop {
        match f.next()? {
            "-" => break,
            o => optional.push(o.to_string()),
        }
    }
    let fs_type = f.next()?.to_string();
    let source = unescape(f.next()?).to_string_lossy().into_owned();
    let super_options = f.next().unwrap_or("").to_string();
    Some(MountInfo {
        id,
        parent,
        root,
        point,
        options,
        optional,
        fs_type,
        source,
        super_options,
    })
}

/// The calling process's mounts; empty when /proc cannot be read.
pub fn read_self() -> Vec<MountInfo> {
    parse(&std::fs::read_to_string(SELF).unwrap_or_default())
}

/// Undo mountinfo's octal escapes (`\040` space, `\011` tab, `\012`
/// newline, `\134` backslash).
pub fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let digits = b.get(i + 1..i + 4).filter(|d| {
            (b'0'..=b'3').contains(&d[0]) && d[1..].iter().all(|c| (b'0'..=b'7').contains(c))
        });
        let octal = b[i] == b'\\' && digits.is_some();
        if octal {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// The mount that holds `path`: the last (topmost) of the longest mount
/// points that are `path` or a parent of it.
pub fn holding<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    let mut best: Option<&MountInfo> = None;
    for m in mounts {
        if path.starts_with(&m.point)
            && best.is_none_or(|b| m.point.as_os_str().len() >= b.point.as_os_str().len())
        {
            best = Some(m);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 8:1 /b/with\\040space/rootfs /b/with\\040space/rootfs rw shared:1 master:3 - ext4 /dev/sda1 rw
31 30 0:5 / /b/with\\040space/rootfs/proc rw - proc proc rw
40 22 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
41 22 0:34 /tab\\011and\\134back /x\\012y rw - tmpfs my\\040src rw
not a mountinfo line
";

    #[test]
    fn fields_are_split_and_paths_unescaped() {
        let m = parse(MI);
        assert_eq!(m.len(), 5, "the malformed line is skipped");
        assert_eq!(m[1].id, 30);
        assert_eq!(m[1].parent, 22);
        assert_eq!(m[1].point, Path::new("/b/with space/rootfs"));
        assert_eq!(m[1].root, Path::new("/b/with space/rootfs"));
        assert_eq!(m[1].optional, vec!["shared:1", "master:3"]);
        assert!(m[1].is_shared());
        assert!(!m[2].is_shared());
        assert_eq!(m[3].fs_type, "cgroup");
        assert_eq!(m[3].super_options, "rw,cpu,cpuacct");
        assert_eq!(m[3].options, "rw,nosuid");
        assert_eq!(m[4].root, Path::new("/tab\tand\\back"));
        assert_eq!(m[4].point, Path::new("/x\ny"));
        assert_eq!(m[4].source, "my src");
    }

    #[test]
    fn unescape_leaves_what_is_not_an_escape() {
        assert_eq!(unescape("a\\040b"), Path::new("a b"));
        assert_eq!(unescape("a\\04"), Path::new("a\\04"));
        assert_eq!(unescape("a\\09x"), Path::new("a\\09x"));
        assert_eq!(unescape("\\"), Path::new("\\"));
    }

    #[test]
    fn the_holding_mount_of_a_path_with_a_space() {
        let m = parse(MI);
        let h = holding(&m, Path::new("/b/with space/rootfs")).unwrap();
        assert_eq!(h.id, 30);
        let h = holding(&m, Path::new("/b/with space/rootfs/proc/1")).unwrap();
        assert_eq!(h.id, 31);
        // A path component is matched whole: /b/with is not under /b/with space.
        let h = holding(&m, Path::new("/b/with")).unwrap();
        assert_eq!(h.id, 22);
    }
}
