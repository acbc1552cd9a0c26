//! Which cgroup layout the host has, read from /proc/self/mountinfo.
//!
//! * unified: cgroup2 on the cgroup mount root, every controller there;
//! * legacy: only v1 hierarchies;
//! * hybrid: v1 hierarchies plus cgroup2 (usually at `unified/`), which may
//!   hold controllers that no v1 hierarchy has (hugetlb on this host).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The layout kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unified,
    Legacy,
    Hybrid,
    None,
}

/// A detected layout.
#[derive(Debug, Clone)]
pub struct Layout {
    pub kind: Kind,
    /// v1 controller (or `name=systemd`) → mount point.
    pub v1: BTreeMap<String, PathBuf>,
    /// The cgroup2 mount point, if any.
    pub unified: Option<PathBuf>,
}

impl Layout {
    /// A short description for `check` and `--explain`.
    pub fn describe(&self) -> String {
        match self.kind {
            Kind::Unified => format!(
                "unified (cgroup v2 at {})",
                self.unified
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            Kind::Legacy => format!("legacy (cgroup v1: {})", self.v1_names()),
            Kind::Hybrid => format!(
                "hybrid (cgroup v1: {}; cgroup2 at {})",
                self.v1_names(),
                self.unified
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            Kind::None => "none".into(),
        }
    }

    fn v1_names(&self) -> String {
        self.v1.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn unescape(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
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

/// Detect the layout from mountinfo text.
pub fn detect(mountinfo: &str) -> Layout {
    let mut v1 = BTreeMap::new();
    let mut unified = None;
    let mut unified_is_root = false;
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let mnt = PathBuf::from(unescape(pre[4]));
        match post[0] {
            "cgroup2" if unified.is_none() || mnt == std::path::Path::new("/sys/fs/cgroup") => {
                unified_is_root = mnt == std::path::Path::new("/sys/fs/cgroup");
                unified = Some(mnt);
            }
            "cgroup" => {
                for opt in post[2].split(',') {
                    let known = matches!(
                        opt,
                        "cpu"
                            | "cpuacct"
                            | "cpuset"
                            | "memory"
                            | "devices"
                            | "freezer"
                            | "blkio"
                            | "pids"
                            | "hugetlb"
                            | "net_cls"
                            | "net_prio"
                            | "perf_event"
                            | "rdma"
                            | "misc"
                    ) || opt.starts_with("name=");
                    if known {
                        v1.entry(opt.to_string()).or_insert_with(|| mnt.clone());
                    }
                }
            }
            _ => {}
        }
    }
    let kind = match (v1.iter().any(|(k, _)| !k.starts_with("name=")), &unified) {
        (false, Some(_)) => Kind::Unified,
        (true, Some(_)) if !unified_is_root => Kind::Hybrid,
        (true, Some(_)) => Kind::Unified,
        (true, None) => Kind::Legacy,
        (false, None) => Kind::None,
    };
    Layout { kind, v1, unified }
}

/// Controllers enabled in a cgroup2 directory (its cgroup.controllers).
pub fn v2_controllers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// This process's cgroup per hierarchy, from /proc/self/cgroup text:
/// controller name (or "" for cgroup2) → path.
pub fn own_paths(proc_cgroup: &str) -> BTreeMap<String, PathBuf> {
    let mut m = BTreeMap::new();
    for line in proc_cgroup.lines() {
        let mut it = line.splitn(3, ':');
        let (_, ctrls, path) = match (it.next(), it.next(), it.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        if ctrls.is_empty() {
            m.insert(String::new(), PathBuf::from(path));
        } else {
            for c in ctrls.split(',') {
                m.insert(c.to_string(), PathBuf::from(path));
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

    #[test]
    fn hybrid_detected() {
        let l = detect(HYBRID);
        assert_eq!(l.kind, Kind::Hybrid);
        assert_eq!(l.v1["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(l.unified.unwrap(), PathBuf::from("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn unified_and_legacy_detected() {
        let u = detect("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate");
        assert_eq!(u.kind, Kind::Unified);
        let l = detect("32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct");
        assert_eq!(l.kind, Kind::Legacy);
        assert_eq!(l.v1["cpuacct"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(detect("").kind, Kind::None);
    }

    #[test]
    fn own_paths_parsed() {
        let m = own_paths("4:memory:/a/b\n1:cpu,cpuacct:/\n0::/x\n");
        assert_eq!(m["memory"], PathBuf::from("/a/b"));
        assert_eq!(m["cpuacct"], PathBuf::from("/"));
        assert_eq!(m[""], PathBuf::from("/x"));
    }
}
