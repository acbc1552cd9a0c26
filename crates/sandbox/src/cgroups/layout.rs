//! Which cgroup layout the host has, read from /proc/self/mountinfo and the
//! cgroup2 root's `cgroup.controllers`.
//!
//! * unified: cgroup2 on the cgroup mount root, every controller there;
//! * legacy: only v1 hierarchies;
//! * hybrid: v1 hierarchies plus cgroup2 (usually at `unified/`), which may
//!   hold controllers that no v1 hierarchy has (hugetlb on this host). Those
//!   are the ones the v1 manager drives through the unified hierarchy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// v1 controller → the cgroup shown at its mount point (mountinfo's root
    /// field: "/" on a host, a sub-path inside some containers).
    pub v1_roots: BTreeMap<String, PathBuf>,
    /// The cgroup2 mount point, if any.
    pub unified: Option<PathBuf>,
    /// The cgroup shown at the cgroup2 mount point.
    pub unified_root: PathBuf,
    /// Controllers available at the cgroup2 mount point (its cgroup.controllers);
    /// filled by [`detect_host`], empty from [`detect`].
    pub unified_controllers: Vec<String>,
}

impl Layout {
    /// A short description for `check` and `--explain`.
    pub fn describe(&self) -> String {
        let u = || {
            self.unified
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        // The controllers are known only from detect_host.
        let ctrls = if self.unified_controllers.is_empty() {
            String::new()
        } else {
            format!(" with {}", self.unified_controllers.join(", "))
        };
        match self.kind {
            Kind::Unified => format!("unified (cgroup v2 at {}{ctrls})", u()),
            Kind::Legacy => format!("legacy (cgroup v1: {})", self.v1_names()),
            Kind::Hybrid => format!(
                "hybrid (cgroup v1: {}; cgroup2 at {}{ctrls})",
                self.v1_names(),
                u()
            ),
            Kind::None => "none".into(),
        }
    }

    fn v1_names(&self) -> String {
        self.v1.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// Controllers of the unified hierarchy that no v1 hierarchy provides:
    /// on a hybrid host, the ones to drive through cgroup2.
    pub fn v2_only_controllers(&self) -> Vec<String> {
        self.unified_controllers
            .iter()
            .filter(|c| !self.v1.contains_key(c.as_str()))
            .cloned()
            .collect()
    }

    /// Where cgroup `cg` (a path in this process's cgroup namespace) is in
    /// the v1 hierarchy of `ctrl`.
    pub fn v1_dir(&self, ctrl: &str, cg: &Path) -> Option<PathBuf> {
        let mnt = self.v1.get(ctrl)?;
        let root = self
            .v1_roots
            .get(ctrl)
            .map(|p| p.as_path())
            .unwrap_or(Path::new("/"));
        Some(map_dir(mnt, root, cg))
    }

    /// Where cgroup `cg` is in the unified hierarchy.
    pub fn v2_dir(&self, cg: &Path) -> Option<PathBuf> {
        let mnt = self.unified.as_ref()?;
        Some(map_dir(mnt, &self.unified_root, cg))
    }
}

/// A cgroup path to a directory, given the mount point and the cgroup that
/// is mounted there.
fn map_dir(mnt: &Path, root: &Path, cg: &Path) -> PathBuf {
    let rel = cg.strip_prefix(root).unwrap_or(cg);
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    if rel.as_os_str().is_empty() {
        mnt.to_path_buf()
    } else {
        mnt.join(rel)
    }
}

/// The v1 controllers (and named hierarchies) a mount option list names.
fn v1_controllers(opts: &str) -> Vec<String> {
    opts.split(',')
        .filter(|opt| {
            matches!(
                *opt,
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
            ) || opt.starts_with("name=")
        })
        .map(String::from)
        .collect()
}

/// Detect the layout from mountinfo text, with `/sys/fs/cgroup` as the
/// place where a unified host mounts cgroup2.
pub fn detect(mountinfo: &str) -> Layout {
    detect_at(mountinfo, Path::new("/sys/fs/cgroup"))
}

/// Detect the layout from mountinfo text; `mount_root` is where cgroups are
/// mounted (cgroup2 there means a unified host).
pub fn detect_at(mountinfo: &str, mount_root: &Path) -> Layout {
    let mut v1 = BTreeMap::new();
    let mut v1_roots = BTreeMap::new();
    let mut unified: Option<(PathBuf, PathBuf)> = None;
    for mi in crate::linux::mountinfo::parse(mountinfo) {
        let (root, mnt) = (mi.root, mi.point);
        match mi.fs_type.as_str() {
            // Prefer the cgroup2 mount at the mount root; otherwise the first.
            "cgroup2" => {
                let better = match &unified {
                    None => true,
                    Some((m, _)) => m != mount_root && mnt == mount_root,
                };
                if better {
                    unified = Some((mnt, root));
                }
            }
            "cgroup" => {
                for c in v1_controllers(&mi.super_options) {
                    if !v1.contains_key(&c) {
                        v1.insert(c.clone(), mnt.clone());
                        v1_roots.insert(c, root.clone());
                    }
                }
            }
            _ => {}
        }
    }
    let real_v1 = v1.keys().any(|k| !k.starts_with("name="));
    let unified_is_root = unified.as_ref().is_some_and(|(m, _)| m == mount_root);
    let kind = match (real_v1, &unified) {
        (false, Some(_)) => Kind::Unified,
        (true, Some(_)) if unified_is_root => Kind::Unified,
        (true, Some(_)) => Kind::Hybrid,
        (true, None) => Kind::Legacy,
        (false, None) => Kind::None,
    };
    let (unified, unified_root) = match unified {
        Some((m, r)) => (Some(m), r),
        None => (None, PathBuf::from("/")),
    };
    Layout {
        kind,
        v1,
        v1_roots,
        unified,
        unified_root,
        unified_controllers: Vec::new(),
    }
}

/// Detect the layout and read the controllers of the cgroup2 root.
pub fn detect_host(mountinfo: &str, mount_root: &Path) -> Layout {
    let mut l = detect_at(mountinfo, mount_root);
    if let Some(u) = &l.unified {
        l.unified_controllers = v2_controllers(u);
    }
    l
}

/// Controllers enabled in a cgroup2 directory (its cgroup.controllers).
pub fn v2_controllers(dir: &Path) -> Vec<String> {
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

    pub const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
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
        assert_eq!(
            l.v1["name=systemd"],
            PathBuf::from("/sys/fs/cgroup/systemd")
        );
        assert_eq!(l.unified.unwrap(), PathBuf::from("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn unified_and_legacy_detected() {
        let u = detect("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate");
        assert_eq!(u.kind, Kind::Unified);
        let l = detect("32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct");
        assert_eq!(l.kind, Kind::Legacy);
        assert_eq!(l.v1["cpuacct"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(l.v1["cpu"], l.v1["cpuacct"]);
        assert_eq!(detect("").kind, Kind::None);
        // A v1 hierarchy next to cgroup2 on the mount root: still unified.
        let mixed = detect(
            "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n\
             31 23 0:27 / /run/net_cls rw - cgroup cgroup rw,net_cls",
        );
        assert_eq!(mixed.kind, Kind::Unified);
    }

    #[test]
    fn roots_and_escapes_map_to_directories() {
        // Inside a container: hierarchies show a sub-cgroup at their mount point.
        let l = detect(
            "32 31 0:29 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n\
             41 31 0:38 /docker/abc /sys/fs/cgroup/uni\\040fied rw - cgroup2 cgroup2 rw",
        );
        assert_eq!(l.kind, Kind::Hybrid);
        assert_eq!(
            l.unified.clone().unwrap(),
            PathBuf::from("/sys/fs/cgroup/uni fied")
        );
        assert_eq!(
            l.v1_dir("memory", Path::new("/docker/abc/x")).unwrap(),
            PathBuf::from("/sys/fs/cgroup/memory/x")
        );
        assert_eq!(
            l.v2_dir(Path::new("/docker/abc")).unwrap(),
            PathBuf::from("/sys/fs/cgroup/uni fied")
        );
        // A path outside the mounted sub-tree is taken from the mount point.
        assert_eq!(
            l.v1_dir("memory", Path::new("/nano-sandbox/c1")).unwrap(),
            PathBuf::from("/sys/fs/cgroup/memory/nano-sandbox/c1")
        );
        assert!(l.v1_dir("pids", Path::new("/x")).is_none());
    }

    #[test]
    fn v2_only_controllers_of_hybrid() {
        let mut l = detect(HYBRID);
        l.unified_controllers = vec!["hugetlb".into(), "memory".into()];
        assert_eq!(l.v2_only_controllers(), vec!["hugetlb".to_string()]);
        assert!(l
            .describe()
            .contains("cgroup2 at /sys/fs/cgroup/unified with hugetlb, memory"));
    }

    #[test]
    fn own_paths_parsed() {
        let m = own_paths("4:memory:/a/b\n1:cpu,cpuacct:/\n0::/x\n");
        assert_eq!(m["memory"], PathBuf::from("/a/b"));
        assert_eq!(m["cpuacct"], PathBuf::from("/"));
        assert_eq!(m[""], PathBuf::from("/x"));
    }
}
