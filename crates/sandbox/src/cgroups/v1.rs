//! The cgroup v1 manager, used on legacy and hybrid hosts: one directory per
//! hierarchy (cpu, cpuacct, cpuset, memory, devices, freezer, blkio, pids, ...),
//! all with the same relative path.

use super::layout::{self, Layout};
use super::{
    read_file, read_procs, read_u64, rmdir_retry, write_file, CgroupManager, PathSpec, Stats,
};
use crate::error::{Error, Result};
use crate::explain::{self, catalog};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Controllers this manager drives, by v1 name.
pub const CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "name=systemd",
];

/// A v1 cgroup: the same relative path in every mounted hierarchy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manager {
    /// The cgroup path relative to each hierarchy root.
    pub path: PathBuf,
    /// controller → directory of this cgroup in that hierarchy.
    pub dirs: BTreeMap<String, PathBuf>,
    /// controller → hierarchy mount point.
    pub mounts: BTreeMap<String, PathBuf>,
}

impl Manager {
    /// Plan the cgroup for container `id` (nothing is created yet).
    pub fn new(layout: &Layout, ps: &PathSpec, id: &str, proc_cgroup: &str) -> Result<Manager> {
        let own = layout::own_paths(proc_cgroup);
        let mut dirs = BTreeMap::new();
        let mut mounts = BTreeMap::new();
        for (ctrl, mnt) in &layout.v1 {
            if !CONTROLLERS.contains(&ctrl.as_str()) {
                continue;
            }
            let own_path = own.get(ctrl).cloned().unwrap_or_else(|| PathBuf::from("/"));
            let rel = super::resolve_path(ps, id, &own_path)?;
            dirs.insert(ctrl.clone(), join_rel(mnt, &rel));
            mounts.insert(ctrl.clone(), mnt.clone());
        }
        let path = super::resolve_path(ps, id, Path::new("/"))?;
        Ok(Manager { path, dirs, mounts })
    }

    /// Rebuild from the state record.
    pub fn from_record(v: &serde_json::Value) -> Option<Manager> {
        serde_json::from_value(v.get("v1")?.clone()).ok()
    }

    /// Each distinct directory once (co-mounted controllers share one).
    fn unique_dirs(&self) -> Vec<&PathBuf> {
        let mut v: Vec<&PathBuf> = self.dirs.values().collect();
        v.sort();
        v.dedup();
        v
    }

    fn dir(&self, ctrl: &str) -> Option<&Path> {
        self.dirs.get(ctrl).map(|p| p.as_path())
    }

    fn set_memory(&self, res: &LinuxResources) -> Result<()> {
        let (Some(m), Some(dir)) = (res.memory(), self.dir("memory")) else {
            return Ok(());
        };
        let limit = m.limit().filter(|v| *v != 0);
        let swap = m.swap().filter(|v| *v != 0);
        let has_memsw = dir.join("memory.memsw.limit_in_bytes").exists();
        if swap.is_some() && !has_memsw {
            return Err(Error::Unsupported(format!(
                "linux.resources.memory.swap: {} has no memory.memsw.limit_in_bytes (swap accounting is off; boot with swapaccount=1)",
                dir.display()
            )));
        }
        match (limit, swap) {
            (Some(l), Some(s)) => {
                // memsw must stay >= limit at every moment: order the writes.
                let cur = read_u64(dir, "memory.limit_in_bytes").unwrap_or(u64::MAX);
                if s == -1 || (s as u64) > cur {
                    write_file(dir, "memory.memsw.limit_in_bytes", &s.to_string())?;
                    write_file(dir, "memory.limit_in_bytes", &l.to_string())?;
                } else {
                    write_file(dir, "memory.limit_in_bytes", &l.to_string())?;
                    write_file(dir, "memory.memsw.limit_in_bytes", &s.to_string())?;
                }
            }
            (Some(l), None) => {
                write_file(dir, "memory.limit_in_bytes", &l.to_string())?;
            }
            (None, Some(s)) => {
                write_file(dir, "memory.memsw.limit_in_bytes", &s.to_string())?;
            }
            (None, None) => {}
        }
        if let Some(r) = m.reservation().filter(|v| *v != 0) {
            write_file(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
        }
        if let Some(sw) = m.swappiness() {
            write_file(dir, "memory.swappiness", &sw.to_string())?;
        }
        if m.disable_oom_killer() == Some(true) {
            write_file(dir, "memory.oom_control", "1")?;
        }
        if let Some(k) = m.kernel().filter(|v| *v != 0) {
            crate::logging::warn(|| {
                format!("linux.resources.memory.kernel={k} ignored: kernel memory limits were removed from Linux (5.16+) and are accounted with memory")
            });
        }
        if let Some(k) = m.kernel_tcp().filter(|v| *v != 0) {
            write_file(dir, "memory.kmem.tcp.limit_in_bytes", &k.to_string())?;
        }
        Ok(())
    }

    fn set_cpu(&self, res: &LinuxResources) -> Result<()> {
        let Some(c) = res.cpu() else { return Ok(()) };
        if let Some(dir) = self.dir("cpu") {
            if let Some(s) = c.shares().filter(|v| *v != 0) {
                write_file(dir, "cpu.shares", &s.to_string())?;
            }
            if let Some(p) = c.period().filter(|v| *v != 0) {
                write_file(dir, "cpu.cfs_period_us", &p.to_string())?;
            }
            if let Some(q) = c.quota().filter(|v| *v != 0) {
                write_file(dir, "cpu.cfs_quota_us", &q.to_string())?;
            }
            if let Some(b) = c.burst() {
                write_file(dir, "cpu.cfs_burst_us", &b.to_string())?;
            }
            if let Some(p) = c.realtime_period().filter(|v| *v != 0) {
                write_file(dir, "cpu.rt_period_us", &p.to_string())?;
            }
            if let Some(r) = c.realtime_runtime().filter(|v| *v != 0) {
                write_file(dir, "cpu.rt_runtime_us", &r.to_string())?;
            }
            if let Some(i) = c.idle() {
                write_file(dir, "cpu.idle", &i.to_string())?;
            }
        }
        if let Some(dir) = self.dir("cpuset") {
            if let Some(cpus) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
                write_file(dir, "cpuset.cpus", cpus)?;
            }
            if let Some(mems) = c.mems().as_ref().filter(|s| !s.is_empty()) {
                write_file(dir, "cpuset.mems", mems)?;
            }
        }
        Ok(())
    }

    fn set_pids(&self, res: &LinuxResources) -> Result<()> {
        let (Some(p), Some(dir)) = (res.pids(), self.dir("pids")) else {
            return Ok(());
        };
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        write_file(dir, "pids.max", &v)
    }

    fn set_devices(&self, res: &LinuxResources) -> Result<()> {
        let Some(dir) = self.dir("devices") else {
            return Ok(());
        };
        let Some(rules) = res.devices() else {
            return Ok(());
        };
        for r in rules {
            let (file, line) = device_rule(r);
            write_file(dir, file, &line)?;
        }
        Ok(())
    }

    /// cpuset.cpus and cpuset.mems start empty in a new v1 cpuset cgroup, and
    /// a task cannot join until they are set: copy them down from the parent.
    fn init_cpuset(&self) -> Result<()> {
        let (Some(dir), Some(mnt)) = (self.dir("cpuset"), self.mounts.get("cpuset")) else {
            return Ok(());
        };
        let mut chain = Vec::new();
        let mut d = dir.to_path_buf();
        while d.starts_with(mnt) && d != *mnt {
            chain.push(d.clone());
            if !d.pop() {
                break;
            }
        }
        chain.reverse();
        for d in chain {
            let parent = d.parent().unwrap_or(mnt);
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if read_file(&d, f).is_some_and(|s| s.is_empty()) {
                    let v = read_file(parent, f).unwrap_or_default();
                    write_file(&d, f, &v)?;
                }
            }
        }
        Ok(())
    }

    fn signal_all(&self, sig: i32) {
        for pid in self.pids().unwrap_or_default() {
            // SAFETY: kill(2) with a pid from the container's cgroup.procs.
            unsafe { libc::kill(pid, sig) };
        }
    }
}

fn join_rel(mnt: &Path, rel: &Path) -> PathBuf {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    mnt.join(rel)
}

/// A device rule as a (file, line) pair for devices.allow / devices.deny.
pub fn device_rule(r: &LinuxDeviceCgroup) -> (&'static str, String) {
    let t = match r.typ() {
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => "c",
        Some(LinuxDeviceType::B) => "b",
        Some(LinuxDeviceType::P) => "c",
        Some(LinuxDeviceType::A) | None => "a",
    };
    let num = |v: Option<i64>| match v {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".to_string(),
    };
    let access = r.access().clone().unwrap_or_else(|| "rwm".into());
    let line = if t == "a" && r.major().is_none() && r.minor().is_none() {
        "a".to_string()
    } else {
        format!("{t} {}:{} {access}", num(r.major()), num(r.minor()))
    };
    (
        if r.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        },
        line,
    )
}

impl CgroupManager for Manager {
    fn create(&self) -> Result<()> {
        explain::step(&catalog::CGROUP_CREATE, || {
            format!(
                "mkdir {} in {} v1 hierarchies",
                self.path.display(),
                self.unique_dirs().len()
            )
        });
        for d in self.unique_dirs() {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::msg(format!("cgroup: create {}: {e}", d.display())))?;
        }
        self.init_cpuset()
    }

    fn set(&self, res: &LinuxResources, _update: bool) -> Result<()> {
        self.set_memory(res)?;
        self.set_cpu(res)?;
        self.set_pids(res)?;
        self.set_devices(res)?;
        Ok(())
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        explain::step(&catalog::CGROUP_JOIN, || {
            format!(
                "echo {pid} > <hierarchy>{}/cgroup.procs",
                self.path.display()
            )
        });
        let s = pid.to_string();
        for d in self.unique_dirs() {
            std::fs::write(d.join("cgroup.procs"), &s).map_err(|e| {
                Error::msg(format!(
                    "cgroup: add pid {pid} to {}/cgroup.procs: {e}",
                    d.display()
                ))
            })?;
        }
        Ok(())
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let Some(d) = self
            .dir("pids")
            .or_else(|| self.dir("freezer"))
            .or_else(|| self.dir("memory"))
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        walk_procs(d, &mut out);
        Ok(out)
    }

    fn freeze(&self, frozen: bool) -> Result<()> {
        let Some(d) = self.dir("freezer") else {
            return Err(Error::Unsupported(
                "the freezer cgroup hierarchy is not mounted".into(),
            ));
        };
        let want = if frozen { "FROZEN" } else { "THAWED" };
        for _ in 0..1000 {
            write_file(d, "freezer.state", want)?;
            if read_file(d, "freezer.state").as_deref() == Some(want) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Err(Error::msg(format!(
            "cgroup {}: freezer.state did not reach {want}",
            d.display()
        )))
    }

    fn is_frozen(&self) -> bool {
        self.dir("freezer")
            .and_then(|d| read_file(d, "freezer.state"))
            .is_some_and(|s| s == "FROZEN" || s == "FREEZING")
    }

    fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        if let Some(d) = self.dir("memory") {
            s.memory_usage = read_u64(d, "memory.usage_in_bytes").unwrap_or(0);
            s.memory_limit = read_u64(d, "memory.limit_in_bytes").unwrap_or(0);
            s.memory_max_usage = read_u64(d, "memory.max_usage_in_bytes").unwrap_or(0);
            s.memory_failcnt = read_u64(d, "memory.failcnt").unwrap_or(0);
        }
        if let Some(d) = self.dir("cpuacct") {
            s.cpu_usage_total_ns = read_u64(d, "cpuacct.usage").unwrap_or(0);
            s.cpu_usage_user_ns = read_u64(d, "cpuacct.usage_user").unwrap_or(0);
            s.cpu_usage_kernel_ns = read_u64(d, "cpuacct.usage_sys").unwrap_or(0);
        }
        if let Some(d) = self.dir("pids") {
            s.pids_current = read_u64(d, "pids.current").unwrap_or(0);
            s.pids_limit = read_u64(d, "pids.max").unwrap_or(0);
        }
        Ok(s)
    }

    fn destroy(&self) -> Result<()> {
        explain::step(&catalog::DELETE_CGROUP, || {
            format!("rmdir {} in every hierarchy", self.path.display())
        });
        if !self.pids().unwrap_or_default().is_empty() {
            // A frozen task cannot die: thaw first, then kill.
            if self.is_frozen() {
                let _ = self.freeze(false);
            }
            self.signal_all(libc::SIGKILL);
        }
        let mut first_err = None;
        for d in self.unique_dirs() {
            // Remove child cgroups (made by the container itself) deepest first.
            let mut subs = Vec::new();
            collect_subdirs(d, &mut subs);
            subs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            for s in subs.iter().chain(std::iter::once(d)) {
                if let Err(e) = rmdir_retry(s, &|| self.signal_all(libc::SIGKILL)) {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn dirs(&self) -> Vec<(String, PathBuf)> {
        self.dirs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn record(&self) -> serde_json::Value {
        serde_json::json!({ "kind": "v1", "v1": self })
    }

    fn self_join_files(&self) -> Vec<PathBuf> {
        self.unique_dirs()
            .into_iter()
            .map(|d| d.join("tasks"))
            .collect()
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

fn walk_procs(d: &Path, out: &mut Vec<i32>) {
    out.extend(read_procs(&d.join("cgroup.procs")));
    let mut subs = Vec::new();
    collect_subdirs(d, &mut subs);
    for s in subs {
        out.extend(read_procs(&s.join("cgroup.procs")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::layout::detect;

    fn fake_tree() -> (PathBuf, Layout) {
        let root = std::env::temp_dir().join(format!(
            "nk-cg1-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        let mut mi = String::new();
        for (i, c) in ["cpu", "cpuset", "memory", "pids", "devices", "freezer"]
            .iter()
            .enumerate()
        {
            let m = root.join(c);
            std::fs::create_dir_all(&m).unwrap();
            mi.push_str(&format!(
                "{} 1 0:{} / {} rw - cgroup cgroup rw,{c}\n",
                30 + i,
                30 + i,
                m.display()
            ));
        }
        std::fs::write(root.join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
        std::fs::write(root.join("cpuset/cpuset.mems"), "0\n").unwrap();
        (root, detect(&mi))
    }

    #[test]
    fn writes_limits_in_the_right_files() {
        let (root, layout) = fake_tree();
        let m = Manager::new(&layout, &PathSpec::default(), "c1", "").unwrap();
        assert_eq!(m.dirs["memory"], root.join("memory/nano-sandbox/c1"));
        m.create().unwrap();
        // The fake kernel: cpuset files exist empty in new cgroups.
        for d in [
            root.join("cpuset/nano-sandbox"),
            root.join("cpuset/nano-sandbox/c1"),
        ] {
            std::fs::write(d.join("cpuset.cpus"), "").unwrap();
            std::fs::write(d.join("cpuset.mems"), "").unwrap();
        }
        m.init_cpuset().unwrap();
        assert_eq!(
            read_file(&root.join("cpuset/nano-sandbox/c1"), "cpuset.cpus").unwrap(),
            "0-1"
        );
        std::fs::write(
            root.join("memory/nano-sandbox/c1/memory.memsw.limit_in_bytes"),
            "",
        )
        .unwrap();
        let res: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":67108864,"swap":134217728,"reservation":1048576},
                "cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0"},
                "pids":{"limit":50},
                "devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}]}"#,
        )
        .unwrap();
        m.set(&res, false).unwrap();
        let rd = |c: &str, f: &str| read_file(&root.join(c).join("nano-sandbox/c1"), f).unwrap();
        assert_eq!(rd("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(rd("memory", "memory.memsw.limit_in_bytes"), "134217728");
        assert_eq!(rd("memory", "memory.soft_limit_in_bytes"), "1048576");
        assert_eq!(rd("cpu", "cpu.shares"), "512");
        assert_eq!(rd("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(rd("cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(rd("cpuset", "cpuset.cpus"), "0");
        assert_eq!(rd("pids", "pids.max"), "50");
        // The last write wins in a plain file; the kernel keeps a list.
        assert_eq!(rd("devices", "devices.allow"), "c 1:3 rwm");
        let rec = m.record();
        let back = Manager::from_record(&rec).unwrap();
        assert_eq!(back.dirs, m.dirs);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn device_rules_format() {
        let r: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":false,"access":"rwm"}"#).unwrap();
        assert_eq!(device_rule(&r), ("devices.deny", "a".to_string()));
        let r: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":true,"type":"c","major":136,"access":"rwm"}"#)
                .unwrap();
        assert_eq!(
            device_rule(&r),
            ("devices.allow", "c 136:* rwm".to_string())
        );
    }
}
