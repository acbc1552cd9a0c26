//! The cgroup v2 (unified) manager: one directory in one hierarchy, with
//! controllers enabled from the root down through cgroup.subtree_control.

use super::layout::{self, Layout};
use super::{
    read_file, read_procs, read_u64, rmdir_retry, write_file, CgroupManager, PathSpec, Stats,
};
use crate::error::{Error, Result};
use crate::explain::{self, catalog};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A v2 cgroup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manager {
    /// The cgroup path relative to the hierarchy root.
    pub path: PathBuf,
    /// Full directory.
    pub dir: PathBuf,
    /// The cgroup2 mount point.
    pub mount: PathBuf,
}

/// runc's conversion of cgroup v1 cpu.shares (2..262144) to v2 cpu.weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

/// v2 memory.swap.max from OCI memory.swap (which is memory+swap) and memory.limit.
pub fn swap_max(limit: Option<i64>, swap: Option<i64>) -> Option<String> {
    match (swap, limit) {
        (Some(-1), _) => Some("max".into()),
        (Some(0), _) | (None, _) => None,
        (Some(s), Some(l)) if l > 0 => Some((s - l).max(0).to_string()),
        (Some(_), _) => None,
    }
}

impl Manager {
    /// Plan the cgroup for container `id`.
    pub fn new(layout: &Layout, ps: &PathSpec, id: &str, proc_cgroup: &str) -> Result<Manager> {
        let mount = layout
            .unified
            .clone()
            .ok_or_else(|| Error::Unsupported("no cgroup2 mount".into()))?;
        let own = layout::own_paths(proc_cgroup)
            .get("")
            .cloned()
            .unwrap_or_else(|| PathBuf::from("/"));
        let path = super::resolve_path(ps, id, &own)?;
        let dir = mount.join(path.strip_prefix("/").unwrap_or(&path));
        Ok(Manager { path, dir, mount })
    }

    /// Rebuild from the state record.
    pub fn from_record(v: &serde_json::Value) -> Option<Manager> {
        serde_json::from_value(v.get("v2")?.clone()).ok()
    }

    /// Enable every available controller from the root down to our parent.
    fn enable_controllers(&self) -> Result<()> {
        let mut chain = vec![self.mount.clone()];
        let rel = self.dir.strip_prefix(&self.mount).unwrap_or(Path::new(""));
        let mut acc = self.mount.clone();
        let comps: Vec<_> = rel.components().collect();
        for c in comps.iter().take(comps.len().saturating_sub(1)) {
            acc.push(c);
            chain.push(acc.clone());
        }
        for d in chain {
            let avail = layout::v2_controllers(&d);
            let on = read_file(&d, "cgroup.subtree_control").unwrap_or_default();
            let want: Vec<String> = avail
                .iter()
                .filter(|c| !on.split_whitespace().any(|o| o == c.as_str()))
                .map(|c| format!("+{c}"))
                .collect();
            if !want.is_empty() {
                // Enable one by one so a controller that cannot be enabled
                // (for example a busy threaded one) does not block the rest.
                for w in want {
                    let _ = std::fs::write(d.join("cgroup.subtree_control"), &w);
                }
            }
        }
        Ok(())
    }

    fn has(&self, file: &str) -> bool {
        self.dir.join(file).exists()
    }
}

impl CgroupManager for Manager {
    fn create(&self) -> Result<()> {
        explain::step(&catalog::CGROUP_CREATE, || {
            format!("mkdir {}", self.dir.display())
        });
        if let Some(parent) = self.dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::msg(format!("cgroup: create {}: {e}", parent.display())))?;
        }
        self.enable_controllers()?;
        match std::fs::create_dir(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::msg(format!(
                "cgroup: create {}: {e}",
                self.dir.display()
            ))),
        }
    }

    fn set(&self, res: &LinuxResources, _update: bool) -> Result<()> {
        let d = &self.dir;
        if let Some(m) = res.memory() {
            if let Some(l) = m.limit().filter(|v| *v != 0) {
                let v = if l == -1 { "max".into() } else { l.to_string() };
                write_file(d, "memory.max", &v)?;
            }
            if let Some(s) = swap_max(m.limit(), m.swap()) {
                if self.has("memory.swap.max") {
                    write_file(d, "memory.swap.max", &s)?;
                } else {
                    return Err(Error::Unsupported(format!(
                        "linux.resources.memory.swap: {} has no memory.swap.max",
                        d.display()
                    )));
                }
            }
            if let Some(r) = m.reservation().filter(|v| *v != 0) {
                let v = if r == -1 { "max".into() } else { r.to_string() };
                write_file(d, "memory.low", &v)?;
            }
            if m.disable_oom_killer() == Some(true) {
                crate::logging::warn(|| {
                    "linux.resources.memory.disableOOMKiller has no cgroup v2 equivalent; ignored"
                        .into()
                });
            }
        }
        if let Some(c) = res.cpu() {
            if let Some(s) = c.shares().filter(|v| *v != 0) {
                write_file(d, "cpu.weight", &shares_to_weight(s).to_string())?;
            }
            let quota = c.quota().filter(|v| *v != 0);
            let period = c.period().filter(|v| *v != 0);
            if quota.is_some() || period.is_some() {
                let q = match quota {
                    Some(q) if q > 0 => q.to_string(),
                    Some(_) => "max".into(),
                    None => read_file(d, "cpu.max")
                        .and_then(|s| s.split_whitespace().next().map(String::from))
                        .unwrap_or_else(|| "max".into()),
                };
                let p = period.unwrap_or(100_000);
                write_file(d, "cpu.max", &format!("{q} {p}"))?;
            }
            if let Some(b) = c.burst() {
                write_file(d, "cpu.max.burst", &b.to_string())?;
            }
            if let Some(i) = c.idle() {
                write_file(d, "cpu.idle", &i.to_string())?;
            }
            if let Some(cpus) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
                write_file(d, "cpuset.cpus", cpus)?;
            }
            if let Some(mems) = c.mems().as_ref().filter(|s| !s.is_empty()) {
                write_file(d, "cpuset.mems", mems)?;
            }
        }
        if let Some(p) = res.pids() {
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            };
            write_file(d, "pids.max", &v)?;
        }
        if let Some(u) = res.unified() {
            for (k, v) in u {
                if k.contains('/') || k.starts_with('.') {
                    return Err(Error::msg(format!(
                        "linux.resources.unified: {k:?} is not a cgroup file name"
                    )));
                }
                write_file(d, k, v)?;
            }
        }
        Ok(())
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        explain::step(&catalog::CGROUP_JOIN, || {
            format!("echo {pid} > {}/cgroup.procs", self.dir.display())
        });
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).map_err(|e| {
            Error::msg(format!(
                "cgroup: add pid {pid} to {}/cgroup.procs: {e}",
                self.dir.display()
            ))
        })
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let mut out = read_procs(&self.dir.join("cgroup.procs"));
        let mut subs = Vec::new();
        collect_subdirs(&self.dir, &mut subs);
        for s in subs {
            out.extend(read_procs(&s.join("cgroup.procs")));
        }
        Ok(out)
    }

    fn freeze(&self, frozen: bool) -> Result<()> {
        write_file(&self.dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        for _ in 0..2000 {
            let ev = read_file(&self.dir, "cgroup.events").unwrap_or_default();
            if ev.lines().any(|l| l == want) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Err(Error::msg(format!(
            "cgroup {}: cgroup.events did not report {want}",
            self.dir.display()
        )))
    }

    fn is_frozen(&self) -> bool {
        read_file(&self.dir, "cgroup.freeze").is_some_and(|s| s == "1")
    }

    fn stats(&self) -> Result<Stats> {
        let d = &self.dir;
        let mut s = Stats {
            memory_usage: read_u64(d, "memory.current").unwrap_or(0),
            memory_limit: read_u64(d, "memory.max").unwrap_or(0),
            memory_max_usage: read_u64(d, "memory.peak").unwrap_or(0),
            pids_current: read_u64(d, "pids.current").unwrap_or(0),
            pids_limit: read_u64(d, "pids.max").unwrap_or(0),
            ..Default::default()
        };
        for line in read_file(d, "cpu.stat").unwrap_or_default().lines() {
            let mut it = line.split_whitespace();
            let (Some(k), Some(v)) = (it.next(), it.next().and_then(|v| v.parse::<u64>().ok()))
            else {
                continue;
            };
            match k {
                "usage_usec" => s.cpu_usage_total_ns = v * 1000,
                "user_usec" => s.cpu_usage_user_ns = v * 1000,
                "system_usec" => s.cpu_usage_kernel_ns = v * 1000,
                _ => {}
            }
        }
        if let Some(ev) = read_file(d, "memory.events") {
            for line in ev.lines() {
                if let Some(v) = line.strip_prefix("max ") {
                    s.memory_failcnt = v.parse().unwrap_or(0);
                }
            }
        }
        Ok(s)
    }

    fn destroy(&self) -> Result<()> {
        explain::step(&catalog::DELETE_CGROUP, || {
            format!("rmdir {}", self.dir.display())
        });
        let kill = || {
            if self.has("cgroup.kill") {
                let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
            } else {
                for pid in self.pids().unwrap_or_default() {
                    // SAFETY: kill(2) with a pid read from the container's cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        };
        if !self.pids().unwrap_or_default().is_empty() {
            kill();
        }
        let mut subs = Vec::new();
        collect_subdirs(&self.dir, &mut subs);
        subs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for s in subs.iter().chain(std::iter::once(&self.dir)) {
            rmdir_retry(s, &kill)?;
        }
        Ok(())
    }

    fn dirs(&self) -> Vec<(String, PathBuf)> {
        vec![(String::new(), self.dir.clone())]
    }

    fn record(&self) -> serde_json::Value {
        serde_json::json!({ "kind": "v2", "v2": self })
    }
}

fn collect_subdirs(d: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let p = e.path();
                collect_subdirs(&p, out);
                out.push(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(swap_max(Some(100), Some(300)).as_deref(), Some("200"));
        assert_eq!(swap_max(Some(100), Some(-1)).as_deref(), Some("max"));
        assert_eq!(swap_max(None, None), None);
    }
}
