//! The cgroup v1 manager, used on legacy and hybrid hosts: one directory per
//! hierarchy (cpu, cpuacct, cpuset, memory, devices, freezer, blkio, pids,
//! ..., and the named `systemd` one), all with the same cgroup path.
//!
//! On a hybrid host the container also gets a directory in the unified
//! hierarchy. Controllers that no v1 hierarchy provides but cgroup2 does
//! (hugetlb on this project's build host) are driven there with the v2
//! setters, so a hybrid host is never refused and nothing is left unapplied.

use super::devices::{self, Emulator};
use super::layout::{self, Layout};
use super::stats::{self, Stats};
use super::{
    missing, own_procs, own_subdirs, read_file, read_procs, read_u64, remove_own, v2, write_file,
    CgroupManager, OomWatcher, PathSpec,
};
use crate::error::{Error, Result};
use crate::explain::{self, catalog};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxResources};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Controllers this manager drives, by v1 name, plus the named systemd
/// hierarchy (joined, as runc does, so the container's /proc/self/cgroup
/// and its cgroup mount are consistent).
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
    "misc",
    "name=systemd",
];

/// A v1 cgroup: the same path in every mounted hierarchy, and on a hybrid
/// host a directory in the unified one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manager {
    /// The cgroup path (as the default hierarchy root sees it).
    pub path: PathBuf,
    /// controller → directory of this cgroup in that hierarchy.
    pub dirs: BTreeMap<String, PathBuf>,
    /// controller → hierarchy mount point.
    pub mounts: BTreeMap<String, PathBuf>,
    /// The unified-hierarchy part on a hybrid host.
    #[serde(default)]
    pub unified: Option<v2::Manager>,
    /// Sub-cgroups (in any hierarchy) that were there before create: not
    /// the container's, so never signalled or removed.
    #[serde(default)]
    pub foreign: Vec<PathBuf>,
    /// The directories this manager's create made (not there before), so
    /// new, empty and without children: their cpuset and devices files
    /// hold what the kernel gives a new cgroup. Not recorded: an update or
    /// a delete works on what is there, whoever made it.
    #[serde(skip)]
    made: Vec<PathBuf>,
}

const CGROUP_SUPER_MAGIC: i64 = 0x27e0eb;

/// Is `p` on a real cgroup v1 filesystem (not a test's fake tree)?
fn on_cgroupfs(p: &Path) -> bool {
    nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type().0 == CGROUP_SUPER_MAGIC)
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
            let cg = super::resolve_path(ps, id, &own_path)?;
            let dir = layout.v1_dir(ctrl, &cg).expect("controller is mounted");
            if dir == *mnt {
                return Err(Error::msg(format!(
                    "cgroupsPath {}: the container cannot use the root cgroup of {}",
                    cg.display(),
                    mnt.display()
                )));
            }
            dirs.insert(ctrl.clone(), dir);
            mounts.insert(ctrl.clone(), mnt.clone());
        }
        let path = super::resolve_path(ps, id, Path::new("/"))?;
        let unified = match (&layout.kind, &layout.unified) {
            (layout::Kind::Hybrid, Some(mount)) => {
                let own2 = own.get("").cloned().unwrap_or_else(|| PathBuf::from("/"));
                let cg = super::resolve_path(ps, id, &own2)?;
                let dir = layout.v2_dir(&cg).expect("unified mount is set");
                if dir == *mount {
                    return Err(Error::msg(format!(
                        "cgroupsPath {}: the container cannot use the root cgroup of {}",
                        cg.display(),
                        mount.display()
                    )));
                }
                Some(v2::Manager {
                    path: cg,
                    dir,
                    mount: mount.clone(),
                    controllers: Some(layout.v2_only_controllers()),
                    foreign: Vec::new(),
                })
            }
            _ => None,
        };
        Ok(Manager {
            path,
            dirs,
            mounts,
            unified,
            foreign: Vec::new(),
            made: Vec::new(),
        })
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

    /// The unified directory, when it exists and has `ctrl` enabled.
    fn v2_for(&self, ctrl: &str) -> Option<&Path> {
        let u = self.unified.as_ref()?;
        layout::v2_controllers(&u.dir)
            .iter()
            .any(|c| c == ctrl)
            .then_some(u.dir.as_path())
    }

    /// The unified directory, when it was created.
    fn unified_dir(&self) -> Option<&Path> {
        self.unified
            .as_ref()
            .map(|u| u.dir.as_path())
            .filter(|d| d.exists())
    }

    fn not_here(&self, field: &str, ctrl: &str) -> Error {
        missing(
            field,
            ctrl,
            &format!(
                "no v1 hierarchy mounts it{}",
                if self.unified.is_some() {
                    " and the unified hierarchy does not provide it"
                } else {
                    ""
                }
            ),
        )
    }

    fn set_memory(&self, m: &LinuxMemory, update: bool) -> Result<()> {
        let check = update && m.check_before_update() == Some(true);
        if let Some(d) = self.dir("memory") {
            set_memory(d, m, update, check)
        } else if let Some(d) = self.v2_for("memory") {
            v2::set_memory(d, m, check)
        } else {
            Err(self.not_here("memory", "memory"))
        }
    }

    fn set_cpu(&self, c: &LinuxCpu) -> Result<()> {
        if super::cpu_requested(c) {
            if let Some(d) = self.dir("cpu") {
                set_cpu(d, c)?;
            } else if let Some(d) = self.v2_for("cpu") {
                v2::set_cpu(d, c)?;
            } else {
                return Err(self.not_here("cpu", "cpu"));
            }
        }
        if super::cpuset_requested(c) {
            if let Some(d) = self.dir("cpuset") {
                v2::set_cpuset(d, c)?;
            } else if let Some(d) = self.v2_for("cpuset") {
                v2::set_cpuset(d, c)?;
            } else {
                return Err(self.not_here("cpu.cpus/cpu.mems", "cpuset"));
            }
        }
        Ok(())
    }

    fn set_pids(&self, limit: i64) -> Result<()> {
        if let Some(d) = self.dir("pids").or_else(|| self.v2_for("pids")) {
            v2::set_pids(d, limit)
        } else {
            Err(self.not_here("pids", "pids"))
        }
    }

    fn set_blkio(&self, b: &LinuxBlockIo) -> Result<()> {
        if let Some(d) = self.dir("blkio") {
            set_blkio(d, b)
        } else if let Some(d) = self.v2_for("io") {
            v2::set_io(d, b)
        } else {
            Err(self.not_here("blockIO", "blkio"))
        }
    }

    fn set_devices(&self, list: &[LinuxDeviceCgroup]) -> Result<()> {
        if let Some(d) = self.dir("devices") {
            set_devices(d, list, self.made.iter().any(|m| m == d))
        } else if let Some(d) = self.unified_dir() {
            // No v1 devices hierarchy: the eBPF filter on the unified cgroup
            // is enforced as well (the kernel checks both).
            v2::set_devices(d, list)
        } else {
            Err(self.not_here("devices", "devices"))
        }
    }

    fn set_network(&self, res: &LinuxResources) -> Result<()> {
        let Some(n) = res.network() else {
            return Ok(());
        };
        if let Some(id) = n.class_id() {
            match self.dir("net_cls") {
                Some(d) => write_file(d, "net_cls.classid", &id.to_string())?,
                None => crate::logging::warn(|| {
                    "linux.resources.network.classID ignored: the net_cls cgroup controller is not mounted on this host".into()
                }),
            }
        }
        if let Some(p) = n.priorities().as_ref().filter(|p| !p.is_empty()) {
            match self.dir("net_prio") {
                Some(d) => {
                    for e in p {
                        write_file(
                            d,
                            "net_prio.ifpriomap",
                            &format!("{} {}", e.name(), e.priority()),
                        )?;
                    }
                }
                None => crate::logging::warn(|| {
                    "linux.resources.network.priorities ignored: the net_prio cgroup controller is not mounted on this host".into()
                }),
            }
        }
        Ok(())
    }

    /// cpuset.cpus and cpuset.mems start empty in a new v1 cpuset cgroup, and
    /// a task cannot join until they are set: copy them down from the
    /// nearest cgroup above that has them. A parent with
    /// cgroup.clone_children set has the kernel copy both at mkdir.
    fn init_cpuset(&self) -> Result<()> {
        let (Some(dir), Some(mnt)) = (self.dir("cpuset"), self.mounts.get("cpuset")) else {
            return Ok(());
        };
        let mut known = None;
        if self.made.iter().any(|m| m == dir) {
            // Made by this create: the kernel filled cpus and mems together
            // (under one lock, from its parent, when clone_children is set
            // there) or neither, so cpus answers for both.
            match read_file(dir, "cpuset.cpus") {
                Some(v) if !v.is_empty() => return Ok(()),
                v => known = v,
            }
        }
        fill_cpuset(dir, "cpuset.cpus", mnt, known)?;
        fill_cpuset(dir, "cpuset.mems", mnt, None)?;
        // The runtime's own parent (/nano-sandbox, made by the first
        // container without a cgroupsPath, holding only containers): have
        // the kernel copy both into each new container at mkdir, which is
        // what the writes above do by hand, so the next create reads
        // cpuset.cpus once and writes nothing. A parent someone else made
        // keeps its setting: it decides for cgroups that are not ours.
        let ours = mnt.join(super::DEFAULT_PARENT.trim_start_matches('/'));
        if dir.parent() == Some(ours.as_path()) {
            if let Err(e) = write_file(&ours, "cgroup.clone_children", "1") {
                crate::logging::debug(|| format!("{e}"));
            }
        }
        Ok(())
    }

    fn kill_all(&self) {
        for pid in self.pids().unwrap_or_default() {
            // SAFETY: kill(2) with a pid from the container's cgroup.procs.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    /// Thaw the freezer cgroup and every frozen cgroup below it: a frozen v1
    /// task does not act on SIGKILL.
    fn thaw_all(&self) {
        let Some(d) = self.dir("freezer") else {
            return;
        };
        for s in own_subdirs(d, &self.foreign)
            .iter()
            .rev()
            .chain(std::iter::once(&d.to_path_buf()))
        {
            if read_file(s, "freezer.state").is_some_and(|v| v != "THAWED") {
                let _ = std::fs::write(s.join("freezer.state"), "THAWED");
            }
        }
    }
}

/// Give the cpuset file `f` of `d` (under the hierarchy mounted at `mnt`)
/// its parent's value when it is empty, filling the levels above first the
/// same way; `known`: the value of `d`'s file, already read. Answers `d`'s
/// value (None: the file cannot be read).
fn fill_cpuset(d: &Path, f: &str, mnt: &Path, known: Option<String>) -> Result<Option<String>> {
    let v = match known {
        Some(v) => Some(v),
        None => read_file(d, f),
    };
    match v {
        Some(v) if v.is_empty() && d != mnt => {
            let from = match d.parent() {
                Some(p) if p.starts_with(mnt) => fill_cpuset(p, f, mnt, None)?.unwrap_or_default(),
                _ => String::new(),
            };
            write_file(d, f, &from)?;
            Ok(Some(from))
        }
        v => Ok(v),
    }
}

/// Write a memory limit, explaining the kernel's refusals: EBUSY (usage
/// above it) and EINVAL (memory above memory+swap).
fn write_limit(d: &Path, file: &str, v: i64) -> Result<()> {
    let p = d.join(file);
    explain::step(&catalog::CGROUP_WRITE, || format!("{} = {v}", p.display()));
    std::fs::write(&p, v.to_string()).map_err(|e| match e.raw_os_error() {
        Some(libc::EBUSY) => Error::msg(format!(
            "cgroup: unable to set {file} to {v} in {}: the kernel could not reclaim below it (current usage: {}, peak usage: {})",
            d.display(),
            read_u64(d, "memory.usage_in_bytes").unwrap_or(0),
            read_u64(d, "memory.max_usage_in_bytes").unwrap_or(0)
        )),
        Some(libc::EINVAL) => Error::msg(format!(
            "cgroup: write {v} to {}: {e}: the memory limit ({}) must stay at or below the memory+swap limit ({}); set both",
            p.display(),
            read_file(d, "memory.limit_in_bytes").unwrap_or_default(),
            read_file(d, "memory.memsw.limit_in_bytes").unwrap_or_default()
        )),
        _ => Error::msg(format!("cgroup: write {v} to {}: {e}", p.display())),
    })
}

/// memory: limit and memory+swap in an order the kernel accepts, soft limit,
/// swappiness, OOM killer, kernel TCP.
pub fn set_memory(d: &Path, m: &LinuxMemory, update: bool, check: bool) -> Result<()> {
    let limit = m.limit().unwrap_or(0);
    let mut swap = m.swap().unwrap_or(0);
    // Unlimited memory with swap unset: unlimited memory+swap (as runc).
    if limit == -1 && swap == 0 {
        swap = -1;
    }
    if check {
        v2::check_usage(d, "memory.usage_in_bytes", "memory.limit", limit)?;
    }
    if swap != 0 && !d.join("memory.memsw.limit_in_bytes").exists() {
        if swap == -1 {
            swap = 0;
        } else {
            return Err(Error::Unsupported(format!(
                "linux.resources.memory.swap: {} has no memory.memsw.limit_in_bytes (swap accounting is off; boot with swapaccount=1)",
                d.display()
            )));
        }
    }
    // memory+swap must stay >= memory at every moment.
    if limit != 0 && swap != 0 {
        let cur = read_u64(d, "memory.limit_in_bytes").unwrap_or(u64::MAX);
        if swap == -1 || cur < swap as u64 {
            write_limit(d, "memory.memsw.limit_in_bytes", swap)?;
            write_limit(d, "memory.limit_in_bytes", limit)?;
        } else {
            write_limit(d, "memory.limit_in_bytes", limit)?;
            write_limit(d, "memory.memsw.limit_in_bytes", swap)?;
        }
    } else if limit != 0 {
        write_limit(d, "memory.limit_in_bytes", limit)?;
    } else if swap != 0 {
        write_limit(d, "memory.memsw.limit_in_bytes", swap)?;
    }
    if let Some(r) = m.reservation().filter(|v| *v != 0) {
        write_file(d, "memory.soft_limit_in_bytes", &r.to_string())?;
    }
    if let Some(sw) = m.swappiness() {
        write_file(d, "memory.swappiness", &sw.to_string())?;
    }
    match m.disable_oom_killer() {
        Some(true) => write_file(d, "memory.oom_control", "1")?,
        Some(false) if update => write_file(d, "memory.oom_control", "0")?,
        _ => {}
    }
    if let Some(k) = m.kernel_tcp().filter(|v| *v != 0) {
        if !d.join("memory.kmem.tcp.limit_in_bytes").exists() {
            return Err(Error::Unsupported(format!(
                "linux.resources.memory.kernelTCP: {} has no memory.kmem.tcp.limit_in_bytes",
                d.display()
            )));
        }
        write_file(d, "memory.kmem.tcp.limit_in_bytes", &k.to_string())?;
    }
    if m.use_hierarchy() == Some(false) {
        crate::logging::warn(|| {
            "linux.resources.memory.useHierarchy=false ignored: hierarchical accounting is always on in current kernels".into()
        });
    }
    Ok(())
}

/// cpu: shares (checked against what the kernel kept), CFS period and
/// quota, burst, idle, realtime period and runtime.
pub fn set_cpu(d: &Path, c: &LinuxCpu) -> Result<()> {
    // The kernel refuses shares for an idle group: leave idle first, and
    // enter it last.
    let idle_file = || {
        if !d.join("cpu.idle").exists() {
            return Err(Error::Unsupported(format!(
                "linux.resources.cpu.idle: {} has no cpu.idle (Linux 5.15+)",
                d.display()
            )));
        }
        Ok(())
    };
    if c.idle() == Some(0) {
        idle_file()?;
        write_file(d, "cpu.idle", "0")?;
    }
    if let Some(s) = c.shares().filter(|v| *v != 0) {
        write_file(d, "cpu.shares", &s.to_string())?;
        if let Some(got) = read_u64(d, "cpu.shares") {
            if got < s {
                return Err(Error::msg(format!(
                    "linux.resources.cpu.shares={s}: the maximum allowed cpu-shares is {got}"
                )));
            }
            if got > s {
                return Err(Error::msg(format!(
                    "linux.resources.cpu.shares={s}: the minimum allowed cpu-shares is {got}"
                )));
            }
        }
    }
    // A smaller period can be refused until the quota is written (the old
    // quota over the new period may exceed the parent's): retry after it.
    let quota = c.quota().filter(|v| *v != 0);
    let mut period_later = None;
    if let Some(p) = c.period().filter(|v| *v != 0) {
        if let Err(e) = write_file(d, "cpu.cfs_period_us", &p.to_string()) {
            if quota.is_none() {
                return Err(e);
            }
            period_later = Some(p);
        }
    }
    if let Some(q) = quota {
        write_file(d, "cpu.cfs_quota_us", &q.to_string())?;
        if let Some(p) = period_later {
            write_file(d, "cpu.cfs_period_us", &p.to_string())?;
        }
    }
    if let Some(b) = c.burst() {
        if !d.join("cpu.cfs_burst_us").exists() {
            return Err(Error::Unsupported(format!(
                "linux.resources.cpu.burst: {} has no cpu.cfs_burst_us (Linux 5.14+ with CFS bandwidth)",
                d.display()
            )));
        }
        write_file(d, "cpu.cfs_burst_us", &b.to_string())?;
    }
    if let Some(i) = c.idle().filter(|i| *i != 0) {
        idle_file()?;
        write_file(d, "cpu.idle", &i.to_string())?;
    }
    let rt_period = c.realtime_period().filter(|v| *v != 0);
    let rt_runtime = c.realtime_runtime().filter(|v| *v != 0);
    if (rt_period.is_some() || rt_runtime.is_some()) && !d.join("cpu.rt_runtime_us").exists() {
        return Err(Error::Unsupported(format!(
            "linux.resources.cpu.realtimeRuntime/realtimePeriod: {} has no cpu.rt_runtime_us (the kernel lacks CONFIG_RT_GROUP_SCHED)",
            d.display()
        )));
    }
    if let Some(p) = rt_period {
        write_file(d, "cpu.rt_period_us", &p.to_string())?;
    }
    if let Some(r) = rt_runtime {
        if let Err(e) = write_file(d, "cpu.rt_runtime_us", &r.to_string()) {
            let parent = d.parent().unwrap_or(d);
            return Err(Error::msg(format!(
                "{e}: a realtime runtime must fit in the parent's budget ({}/cpu.rt_runtime_us = {}) minus what its other children hold",
                parent.display(),
                read_file(parent, "cpu.rt_runtime_us").unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// blkio: weights (CFQ's blkio.weight, else BFQ's blkio.bfq.weight),
/// per-device weights, leaf weights (CFQ only) and the four throttles.
pub fn set_blkio(d: &Path, b: &LinuxBlockIo) -> Result<()> {
    let (wf, wdf) = if d.join("blkio.weight").exists() {
        (Some("blkio.weight"), Some("blkio.weight_device"))
    } else if d.join("blkio.bfq.weight").exists() {
        (Some("blkio.bfq.weight"), Some("blkio.bfq.weight_device"))
    } else {
        (None, None)
    };
    let no_weight = |field: &str| {
        Error::Unsupported(format!(
            "linux.resources.blockIO.{field}: {} has neither blkio.weight (the CFQ scheduler, removed in Linux 5.0) nor blkio.bfq.weight (the BFQ scheduler is not loaded)",
            d.display()
        ))
    };
    let no_leaf = |field: &str| {
        Error::Unsupported(format!(
            "linux.resources.blockIO.{field}: leaf weights belonged to the CFQ scheduler, removed in Linux 5.0; {} has no blkio.leaf_weight",
            d.display()
        ))
    };
    if let Some(w) = b.weight().filter(|v| *v != 0) {
        write_file(d, wf.ok_or_else(|| no_weight("weight"))?, &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight().filter(|v| *v != 0) {
        if !d.join("blkio.leaf_weight").exists() {
            return Err(no_leaf("leafWeight"));
        }
        write_file(d, "blkio.leaf_weight", &w.to_string())?;
    }
    for (i, wd) in b.weight_device().iter().flatten().enumerate() {
        if let Some(w) = wd.weight().filter(|v| *v != 0) {
            let f = wdf.ok_or_else(|| no_weight(&format!("weightDevice[{i}].weight")))?;
            write_file(d, f, &format!("{}:{} {w}", wd.major(), wd.minor()))?;
        }
        if let Some(w) = wd.leaf_weight().filter(|v| *v != 0) {
            if !d.join("blkio.leaf_weight_device").exists() {
                return Err(no_leaf(&format!("weightDevice[{i}].leafWeight")));
            }
            write_file(
                d,
                "blkio.leaf_weight_device",
                &format!("{}:{} {w}", wd.major(), wd.minor()),
            )?;
        }
    }
    for (list, file) in [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
        ),
    ] {
        for t in list.iter().flatten() {
            write_file(
                d,
                file,
                &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

/// devices: move the cgroup from its current list to the rules' list with
/// the fewest writes, then check the kernel agrees. `new`: `d` was just
/// made by this create (so it has no children and no tasks yet).
pub fn set_devices(d: &Path, list: &[LinuxDeviceCgroup], new: bool) -> Result<()> {
    let target = Emulator::from_rules(&devices::from_oci(list)?)?;
    // A new cgroup holds a copy of its parent's list, whatever that is; the
    // rules are replayed from the `a` rule, which resets any list (the
    // kernel refuses it only to a cgroup with children, and no task is in
    // it yet to be cut off), so that copy need not be read. From an
    // allow-all state, transition() is that replay.
    let listed = if new {
        None
    } else {
        read_file(d, "devices.list")
    };
    let current = match listed {
        Some(t) => Emulator::from_list(&t)?,
        None => Emulator::default(),
    };
    let writes = current.transition(&target);
    if !writes.is_empty() {
        // One step for the whole list, each rule a detail line under it.
        explain::step(&catalog::CGROUP_DEVICE_RULES, || d.display().to_string());
    }
    // Rules in a row to the same file share one open descriptor (runc's
    // default list is 12 writes to devices.allow).
    let mut w: Option<super::Writer> = None;
    for r in writes {
        explain::step(&catalog::CGROUP_DEVICE_RULES, || {
            catalog::device_rule_detail(r.cgroup_file(), &r.cgroup_line())
        });
        let w = match &mut w {
            Some(w) if w.is(d, r.cgroup_file()) => w,
            _ => w.insert(super::Writer::new(d, r.cgroup_file())),
        };
        w.write(&r.cgroup_line())?;
    }
    // In deny-by-default mode devices.list shows every exception: it must
    // be exactly the target. What it guards is the difference written to
    // a list read back: the kernel removes only exact matches, silently,
    // so a model of that list that is off leaves access behind. A replay
    // from `a` on a new cgroup has no such gap: the kernel adds each allow
    // as given (merging access per device as Emulator does) or refuses the
    // write, EPERM when a restricted parent lacks it, and that write fails
    // here; the read back would only find what the writes already said.
    if !new && !target.default_allow && on_cgroupfs(d) {
        let after = Emulator::from_list(&read_file(d, "devices.list").unwrap_or_default())?;
        if after != target {
            return Err(Error::msg(format!(
                "devices cgroup {}: the kernel's devices.list does not match the rules (a parent cgroup may forbid some of them): wanted {:?}, got {:?}",
                d.display(),
                target.rules().iter().map(|r| r.cgroup_line()).collect::<Vec<_>>(),
                after.rules().iter().map(|r| r.cgroup_line()).collect::<Vec<_>>()
            )));
        }
    }
    Ok(())
}

/// hugetlb.<size>.limit_in_bytes and the .rsvd variant.
pub fn set_hugetlb(d: &Path, list: &[oci_spec::runtime::LinuxHugepageLimit]) -> Result<()> {
    v2::write_hugetlb(d, list, "limit_in_bytes", "-1")
}

fn memory_entry(d: &Path, prefix: &str) -> stats::MemoryEntry {
    let f = |s: &str| read_u64(d, &format!("{prefix}{s}")).unwrap_or(0);
    stats::MemoryEntry {
        limit: f("limit_in_bytes"),
        usage: f("usage_in_bytes"),
        max: f("max_usage_in_bytes"),
        failcnt: f("failcnt"),
    }
}

/// The clock tick of cpuacct.stat (USER_HZ).
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn read_u64_list(d: &Path, f: &str) -> Vec<u64> {
    read_file(d, f)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// Block I/O statistics in runc's order of preference: BFQ, CFQ, then the
/// throttle counters (recursive, then not).
fn blkio_stats(d: &Path) -> stats::Blkio {
    let mut b = stats::Blkio::default();
    let rd = |f: &str| stats::parse_blkio_v1(&read_file(d, f).unwrap_or_default());
    type Slot = fn(&mut stats::Blkio) -> &mut Vec<stats::BlkioEntry>;
    let groups: [&[(&str, Slot)]; 4] = [
        &[
            ("blkio.bfq.io_serviced_recursive", |b| {
                &mut b.io_serviced_recursive
            }),
            ("blkio.bfq.io_service_bytes_recursive", |b| {
                &mut b.io_service_bytes_recursive
            }),
        ],
        &[
            ("blkio.sectors_recursive", |b| &mut b.sectors_recursive),
            ("blkio.io_service_bytes_recursive", |b| {
                &mut b.io_service_bytes_recursive
            }),
            ("blkio.io_serviced_recursive", |b| {
                &mut b.io_serviced_recursive
            }),
            ("blkio.io_queued_recursive", |b| &mut b.io_queued_recursive),
            ("blkio.io_service_time_recursive", |b| {
                &mut b.io_service_time_recursive
            }),
            ("blkio.io_wait_time_recursive", |b| {
                &mut b.io_wait_time_recursive
            }),
            ("blkio.io_merged_recursive", |b| &mut b.io_merged_recursive),
            ("blkio.time_recursive", |b| &mut b.io_time_recursive),
        ],
        &[
            ("blkio.throttle.io_serviced_recursive", |b| {
                &mut b.io_serviced_recursive
            }),
            ("blkio.throttle.io_service_bytes_recursive", |b| {
                &mut b.io_service_bytes_recursive
            }),
        ],
        &[
            ("blkio.throttle.io_serviced", |b| {
                &mut b.io_serviced_recursive
            }),
            ("blkio.throttle.io_service_bytes", |b| {
                &mut b.io_service_bytes_recursive
            }),
        ],
    ];
    for g in groups {
        // A group counts when its first file has entries.
        let Some(first) = rd(g[0].0) else { continue };
        *(g[0].1)(&mut b) = first;
        for (f, slot) in &g[1..] {
            if let Some(v) = rd(f) {
                *slot(&mut b) = v;
            }
        }
        break;
    }
    b
}

impl CgroupManager for Manager {
    fn create(&mut self) -> Result<()> {
        if let Some(u) = &self.unified {
            // Surveyed here, before anything is made anywhere: the unified
            // part's own create is best effort, and would only warn.
            super::survey(&u.dir, &u.path)?;
        }
        explain::step(&catalog::CGROUP_CREATE, || {
            format!(
                "mkdir {} in {} v1 hierarchies{}",
                self.path.display(),
                self.unique_dirs().len(),
                if self.unified.is_some() {
                    " and in the unified hierarchy"
                } else {
                    ""
                }
            )
        });
        // mkdir first: the directory is new in the usual case, and only one
        // that was there already (EEXIST) is surveyed for sub-cgroups and
        // processes, instead of a lookup of each before its mkdir.
        let mut foreign = Vec::new();
        let mut made = Vec::new();
        let dirs: Vec<PathBuf> = self.unique_dirs().into_iter().cloned().collect();
        for d in dirs {
            match super::make_or_survey(&d, &self.path) {
                Ok(None) => made.push(d),
                Ok(Some(f)) => foreign.extend(f),
                Err(e) => {
                    // Refused (or failed) part way: what this create made
                    // goes (new and empty, so one rmdir each), what was
                    // there stays.
                    for m in made.iter().rev() {
                        let _ = std::fs::remove_dir(m);
                    }
                    return Err(e);
                }
            }
        }
        self.foreign = foreign;
        self.made = made;
        self.init_cpuset()?;
        if let Some(u) = &mut self.unified {
            // Best effort: only resources that need it fail without it.
            if let Err(e) = u.create() {
                crate::logging::warn(|| format!("hybrid cgroup2 part: {e}"));
            }
        }
        Ok(())
    }

    fn set(&self, res: &LinuxResources, update: bool) -> Result<()> {
        if let Some(m) = res.memory() {
            super::warn_kernel_memory(m);
            if super::memory_requested(m) || (update && m.disable_oom_killer().is_some()) {
                self.set_memory(m, update)?;
            }
        }
        if let Some(c) = res.cpu() {
            self.set_cpu(c)?;
        }
        if let Some(p) = res.pids().filter(|p| p.limit() != 0) {
            self.set_pids(p.limit())?;
        }
        if let Some(b) = res.block_io() {
            self.set_blkio(b)?;
        }
        if let Some(list) = res.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
            if let Some(d) = self.dir("hugetlb") {
                set_hugetlb(d, list)?;
            } else if let Some(d) = self.v2_for("hugetlb") {
                v2::set_hugetlb(d, list)?;
            } else {
                return Err(self.not_here("hugepageLimits", "hugetlb"));
            }
        }
        if let Some(list) = res.devices().as_ref().filter(|l| !l.is_empty()) {
            self.set_devices(list)?;
        }
        self.set_network(res)?;
        if let Some(r) = res.rdma().as_ref().filter(|r| !r.is_empty()) {
            match self.dir("rdma").or_else(|| self.v2_for("rdma")) {
                Some(d) => v2::set_rdma(d, r)?,
                None => crate::logging::warn(|| {
                    "linux.resources.rdma ignored: the rdma cgroup controller is not available on this host".into()
                }),
            }
        }
        if let Some(u) = res.unified().as_ref().filter(|u| !u.is_empty()) {
            match self.unified_dir() {
                Some(d) => v2::set_unified(d, u, &layout::v2_controllers(d))?,
                None => {
                    return Err(Error::Unsupported(
                        "linux.resources.unified needs cgroup v2, and this host has only cgroup v1 hierarchies".into(),
                    ))
                }
            }
        }
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
        let unified = self.unified_dir().map(|d| d.to_path_buf());
        for d in self.unique_dirs().into_iter().chain(unified.as_ref()) {
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
        let d = ["pids", "freezer", "memory", "cpu", "devices"]
            .iter()
            .find_map(|c| self.dir(c))
            .or_else(|| self.unified_dir())
            .or_else(|| self.unique_dirs().first().map(|p| p.as_path()));
        Ok(d.map(|d| own_procs(d, &self.foreign)).unwrap_or_default())
    }

    fn freeze(&self, frozen: bool) -> Result<()> {
        let Some(d) = self.dir("freezer") else {
            return match self.unified_dir() {
                Some(u) => v2::freeze_dir(u, frozen),
                None => Err(Error::Unsupported(
                    "the freezer cgroup hierarchy is not mounted".into(),
                )),
            };
        };
        let want = if frozen { "FROZEN" } else { "THAWED" };
        let start = std::time::Instant::now();
        let mut n = 0u32;
        while start.elapsed() < std::time::Duration::from_secs(5) {
            // Rewrite now and then: a task that was busy in the kernel when
            // the freeze began may need another nudge.
            if n.is_multiple_of(100) {
                write_file(d, "freezer.state", want)?;
            }
            n += 1;
            if read_file(d, "freezer.state").as_deref() == Some(want) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if frozen {
            let _ = std::fs::write(d.join("freezer.state"), "THAWED");
        }
        Err(Error::msg(format!(
            "cgroup {}: freezer.state did not reach {want} within 5 s (a task may be in uninterruptible sleep)",
            d.display()
        )))
    }

    fn is_frozen(&self) -> bool {
        match self.dir("freezer") {
            Some(d) => {
                read_file(d, "freezer.state").is_some_and(|s| s == "FROZEN" || s == "FREEZING")
            }
            None => self
                .unified_dir()
                .and_then(|d| read_file(d, "cgroup.freeze"))
                .is_some_and(|s| s == "1"),
        }
    }

    fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        if let Some(d) = self.dir("memory") {
            if !d.exists() {
                return Err(Error::msg(format!("cgroup {} does not exist", d.display())));
            }
            let raw = stats::parse_keyed(&read_file(d, "memory.stat").unwrap_or_default());
            s.memory.cache = raw.get("cache").copied().unwrap_or(0);
            s.memory.raw = raw;
            s.memory.usage = memory_entry(d, "memory.");
            if d.join("memory.memsw.usage_in_bytes").exists() {
                s.memory.swap = memory_entry(d, "memory.memsw.");
            }
            s.memory.kernel = memory_entry(d, "memory.kmem.");
            s.memory.kernel_tcp = memory_entry(d, "memory.kmem.tcp.");
        } else if let Some(d) = self.v2_for("memory") {
            v2::read_stats(d, &mut s);
        }
        if let Some(d) = self.dir("cpuacct") {
            s.cpu.usage.total = read_u64(d, "cpuacct.usage").unwrap_or(0);
            s.cpu.usage.percpu = read_u64_list(d, "cpuacct.usage_percpu");
            s.cpu.usage.percpu_kernel = read_u64_list(d, "cpuacct.usage_percpu_sys");
            s.cpu.usage.percpu_user = read_u64_list(d, "cpuacct.usage_percpu_user");
            let st = stats::parse_keyed(&read_file(d, "cpuacct.stat").unwrap_or_default());
            let ns = |k: &str| st.get(k).copied().unwrap_or(0) * 1_000_000_000 / clock_ticks();
            s.cpu.usage.user = ns("user");
            s.cpu.usage.kernel = ns("system");
        }
        if let Some(d) = self.dir("cpu") {
            let st = stats::parse_keyed(&read_file(d, "cpu.stat").unwrap_or_default());
            let g = |k: &str| st.get(k).copied().unwrap_or(0);
            s.cpu.throttling.periods = g("nr_periods");
            s.cpu.throttling.throttled_periods = g("nr_throttled");
            s.cpu.throttling.throttled_time = g("throttled_time");
        }
        if let Some(d) = self.dir("cpuset") {
            let c = &mut s.cpuset;
            c.cpus = stats::parse_list_u16(&read_file(d, "cpuset.cpus").unwrap_or_default());
            c.mems = stats::parse_list_u16(&read_file(d, "cpuset.mems").unwrap_or_default());
            let g = |f: &str| read_u64(d, f).unwrap_or(0);
            c.cpu_exclusive = g("cpuset.cpu_exclusive");
            c.mem_hardwall = g("cpuset.mem_hardwall");
            c.mem_exclusive = g("cpuset.mem_exclusive");
            c.memory_migrate = g("cpuset.memory_migrate");
            c.memory_spread_page = g("cpuset.memory_spread_page");
            c.memory_spread_slab = g("cpuset.memory_spread_slab");
            c.memory_pressure = g("cpuset.memory_pressure");
            c.sched_load_balance = g("cpuset.sched_load_balance");
            c.sched_relax_domain_level = read_file(d, "cpuset.sched_relax_domain_level")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
        if let Some(d) = self.dir("pids") {
            s.pids.current = read_u64(d, "pids.current").unwrap_or(0);
            s.pids.limit = match read_u64(d, "pids.max") {
                Some(u64::MAX) | None => 0,
                Some(v) => v,
            };
        }
        if let Some(d) = self.dir("blkio") {
            s.blkio = blkio_stats(d);
        }
        if let Some(d) = self.dir("hugetlb") {
            for size in v2::hugetlb_sizes(d, ".limit_in_bytes") {
                let f = |x: &str| read_u64(d, &format!("hugetlb.{size}.{x}")).unwrap_or(0);
                s.hugetlb.insert(
                    size.clone(),
                    stats::Hugetlb {
                        usage: f("usage_in_bytes"),
                        max: f("max_usage_in_bytes"),
                        failcnt: f("failcnt"),
                    },
                );
            }
        } else if let Some(d) = self.v2_for("hugetlb") {
            v2::read_hugetlb_stats(d, &mut s);
        }
        Ok(s)
    }

    fn destroy(&self, kill: bool) -> Result<()> {
        explain::step(&catalog::DELETE_CGROUP, || {
            format!("rmdir {} in every hierarchy", self.path.display())
        });
        if kill && !self.pids().unwrap_or_default().is_empty() {
            // Freeze, kill, thaw: a process that forks cannot outrun it.
            self.thaw_all();
            if self.signal_all(libc::SIGKILL).is_err() {
                self.kill_all();
            }
        }
        // A frozen task cannot exit: the dying ones are let go (thawed)
        // when an rmdir finds the cgroup busy, not before every delete.
        // Most often nothing is frozen (a paused container's delete thaws
        // it when it kills the init), and listing the freezer cgroup and
        // reading its state cost ten system calls.
        let again = || {
            self.thaw_all();
            if kill {
                self.kill_all();
            }
        };
        let deadline = std::time::Instant::now() + super::RMDIR_BUDGET;
        let mut results = Vec::new();
        for d in self.unique_dirs() {
            results.push(remove_own(d, &self.foreign, &again, deadline));
        }
        if let Some(u) = &self.unified {
            results.push(v2::destroy_dir(&u.dir, &u.foreign, kill, deadline));
        }
        super::first_err(results)
    }

    fn dirs(&self) -> Vec<(String, PathBuf)> {
        let mut v: Vec<(String, PathBuf)> = self
            .dirs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(d) = self.unified_dir() {
            v.push((String::new(), d.to_path_buf()));
        }
        v
    }

    fn record(&self) -> super::CgroupRecord {
        super::CgroupRecord::V1(self.clone())
    }

    fn self_join_files(&self) -> Vec<PathBuf> {
        self.unique_dirs()
            .into_iter()
            .map(|d| d.join("tasks"))
            .collect()
    }

    fn clone_into_dir(&self) -> Option<PathBuf> {
        self.unified_dir().map(Path::to_path_buf)
    }

    fn joins_at_clone(&self) -> bool {
        self.unified.is_some()
    }

    fn oom_watcher(&self) -> Result<Option<OomWatcher>> {
        if let Some(d) = self.dir("memory") {
            return OomWatcher::v1(d).map(Some);
        }
        match self.v2_for("memory") {
            Some(d) => OomWatcher::v2(d).map(Some),
            None => Ok(None),
        }
    }
}

/// Pids listed directly in one directory (used by tests and `ps`).
pub fn procs_of(d: &Path) -> Vec<i32> {
    read_procs(&d.join("cgroup.procs"))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{rd, Tree};
    use super::*;

    /// A fake hybrid host: v1 hierarchies (cpu and cpuacct co-mounted) plus
    /// cgroup2 with only hugetlb, like this project's build host.
    fn fake(t: &Tree) -> (PathBuf, Layout) {
        let root = t.0.clone();
        let mut mi = String::new();
        let hier = [
            ("cpu,cpuacct", "cpu,cpuacct"),
            ("cpuset", "cpuset"),
            ("memory", "memory"),
            ("pids", "pids"),
            ("devices", "devices"),
            ("freezer", "freezer"),
            ("blkio", "blkio"),
            ("net_cls", "net_cls"),
            ("systemd", "name=systemd"),
        ];
        for (i, (dir, opts)) in hier.iter().enumerate() {
            let m = root.join(dir);
            std::fs::create_dir_all(&m).unwrap();
            mi.push_str(&format!(
                "{} 1 0:{} / {} rw - cgroup cgroup rw,{opts}\n",
                30 + i,
                30 + i,
                m.display()
            ));
        }
        let u = root.join("unified");
        t.files(
            &u,
            &[
                ("cgroup.controllers", "hugetlb"),
                ("cgroup.subtree_control", ""),
            ],
        );
        mi.push_str(&format!(
            "50 1 0:50 / {} rw - cgroup2 cgroup2 rw\n",
            u.display()
        ));
        t.files(
            &root.join("cpuset"),
            &[("cpuset.cpus", "0-1"), ("cpuset.mems", "0")],
        );
        (root.clone(), layout::detect_host(&mi, &root))
    }

    /// The files a new v1 cgroup has, as the kernel would show them.
    fn kernel_files(t: &Tree, m: &Manager) {
        let d = |c: &str| m.dirs[c].clone();
        t.files(
            &d("memory"),
            &[
                ("memory.limit_in_bytes", "9223372036854771712"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712"),
                ("memory.soft_limit_in_bytes", ""),
                ("memory.swappiness", "60"),
                ("memory.oom_control", "oom_kill_disable 0"),
                ("memory.kmem.tcp.limit_in_bytes", ""),
                ("memory.usage_in_bytes", "4096"),
                ("memory.max_usage_in_bytes", "8192"),
                ("memory.failcnt", "0"),
                ("memory.stat", "cache 12\nrss 34\n"),
                ("cgroup.procs", ""),
            ],
        );
        t.files(
            &d("cpu"),
            &[
                ("cpu.shares", "1024"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "-1"),
                ("cpu.cfs_burst_us", "0"),
                ("cpu.idle", "0"),
                ("cpu.rt_period_us", "1000000"),
                ("cpu.rt_runtime_us", "0"),
                (
                    "cpu.stat",
                    "nr_periods 4\nnr_throttled 1\nthrottled_time 99\n",
                ),
                ("cpuacct.usage", "1000"),
                ("cpuacct.usage_percpu", "600 400 \n"),
                ("cpuacct.stat", "user 1\nsystem 2\n"),
            ],
        );
        t.files(&d("cpuset"), &[("cpuset.cpus", ""), ("cpuset.mems", "")]);
        t.files(&d("pids"), &[("pids.max", "max"), ("pids.current", "3")]);
        t.files(&d("devices"), &[("devices.list", "a *:* rwm\n")]);
        t.files(&d("freezer"), &[("freezer.state", "THAWED")]);
        t.files(
            &d("blkio"),
            &[
                ("blkio.bfq.weight", "100"),
                ("blkio.bfq.weight_device", ""),
                ("blkio.throttle.read_bps_device", ""),
                ("blkio.throttle.write_bps_device", ""),
                ("blkio.throttle.read_iops_device", ""),
                ("blkio.throttle.write_iops_device", ""),
                (
                    "blkio.throttle.io_serviced_recursive",
                    "254:0 Read 5\n254:0 Write 6\nTotal 11\n",
                ),
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    "254:0 Read 4096\nTotal 4096\n",
                ),
            ],
        );
        t.files(&d("net_cls"), &[("net_cls.classid", "0")]);
        let u = m.unified.as_ref().unwrap().dir.clone();
        t.files(
            &u,
            &[
                ("cgroup.controllers", "hugetlb"),
                ("hugetlb.2MB.max", "max"),
                ("hugetlb.2MB.rsvd.max", "max"),
                ("hugetlb.2MB.current", "0"),
                ("hugetlb.2MB.events", "max 0\n"),
                ("cgroup.max.descendants", "max"),
            ],
        );
    }

    fn res(j: &str) -> LinuxResources {
        serde_json::from_str(j).unwrap()
    }

    #[test]
    fn plan_and_record() {
        let t = Tree::new("v1plan");
        let (root, layout) = fake(&t);
        assert_eq!(layout.kind, layout::Kind::Hybrid);
        let m = Manager::new(&layout, &PathSpec::default(), "c1", "").unwrap();
        assert_eq!(m.dirs["memory"], root.join("memory/nano-sandbox/c1"));
        assert_eq!(m.dirs["cpu"], m.dirs["cpuacct"]);
        assert_eq!(m.dirs["name=systemd"], root.join("systemd/nano-sandbox/c1"));
        let u = m.unified.as_ref().unwrap();
        assert_eq!(u.dir, root.join("unified/nano-sandbox/c1"));
        assert_eq!(u.controllers.as_deref(), Some(&["hugetlb".to_string()][..]));
        let json = serde_json::to_value(m.record()).unwrap();
        let Ok(crate::cgroups::CgroupRecord::V1(back)) = serde_json::from_value(json) else {
            panic!("not a v1 record")
        };
        assert_eq!(back.dirs, m.dirs);
        assert_eq!(back.unified.unwrap().dir, u.dir);
        // Records written before the unified part existed still load.
        let old = serde_json::json!({"kind":"v1","v1":{"path":"/x","dirs":{},"mounts":{}}});
        let Ok(crate::cgroups::CgroupRecord::V1(back)) = serde_json::from_value(old) else {
            panic!("not a v1 record")
        };
        assert!(back.unified.is_none());
        // Relative paths go under the runtime's own cgroup, per hierarchy.
        let ps = PathSpec {
            cgroups_path: Some("rel/c2".into()),
            systemd: false,
        };
        let m = Manager::new(&layout, &ps, "c2", "4:memory:/mine\n0::/u\n").unwrap();
        assert_eq!(m.dirs["memory"], root.join("memory/mine/rel/c2"));
        assert_eq!(m.dirs["pids"], root.join("pids/rel/c2"));
        assert_eq!(m.unified.unwrap().dir, root.join("unified/u/rel/c2"));
    }

    #[test]
    fn every_knob_lands_in_its_file() {
        let t = Tree::new("v1set");
        let (root, layout) = fake(&t);
        let mut m = Manager::new(&layout, &PathSpec::default(), "c1", "").unwrap();
        m.create().unwrap();
        // hugetlb was enabled for the subtree in the unified root.
        assert_eq!(
            rd(&root.join("unified"), "cgroup.subtree_control"),
            "+hugetlb"
        );
        kernel_files(&t, &m);
        // The fake kernel: cpuset files exist empty in new cgroups.
        t.files(
            &root.join("cpuset/nano-sandbox"),
            &[("cpuset.cpus", ""), ("cpuset.mems", "")],
        );
        m.init_cpuset().unwrap();
        assert_eq!(rd(&m.dirs["cpuset"], "cpuset.cpus"), "0-1");
        m.set(
            &res(r#"{
                "memory":{"limit":67108864,"swap":134217728,"reservation":1048576,"swappiness":10,
                          "disableOOMKiller":true,"kernelTCP":2097152,"kernel":1},
                "cpu":{"shares":512,"quota":50000,"period":100000,"burst":2000,"idle":0,
                       "realtimePeriod":1000000,"realtimeRuntime":5000,"cpus":"0","mems":"0"},
                "pids":{"limit":50},
                "blockIO":{"weight":300,"weightDevice":[{"major":7,"minor":1,"weight":200}],
                           "throttleReadBpsDevice":[{"major":7,"minor":1,"rate":1048576}],
                           "throttleWriteIOPSDevice":[{"major":7,"minor":1,"rate":100}]},
                "hugepageLimits":[{"pageSize":"2MB","limit":4194304}],
                "devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}],
                "network":{"classID":1048577},
                "unified":{"cgroup.max.descendants":"5"}
            }"#),
            false,
        )
        .unwrap();
        let rdc = |c: &str, f: &str| rd(&m.dirs[c], f);
        assert_eq!(rdc("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(rdc("memory", "memory.memsw.limit_in_bytes"), "134217728");
        assert_eq!(rdc("memory", "memory.soft_limit_in_bytes"), "1048576");
        assert_eq!(rdc("memory", "memory.swappiness"), "10");
        assert_eq!(rdc("memory", "memory.oom_control"), "1");
        assert_eq!(rdc("memory", "memory.kmem.tcp.limit_in_bytes"), "2097152");
        assert_eq!(rdc("cpu", "cpu.shares"), "512");
        assert_eq!(rdc("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(rdc("cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(rdc("cpu", "cpu.cfs_burst_us"), "2000");
        assert_eq!(rdc("cpu", "cpu.idle"), "0");
        assert_eq!(rdc("cpu", "cpu.rt_period_us"), "1000000");
        assert_eq!(rdc("cpu", "cpu.rt_runtime_us"), "5000");
        assert_eq!(rdc("cpuset", "cpuset.cpus"), "0");
        assert_eq!(rdc("pids", "pids.max"), "50");
        assert_eq!(rdc("blkio", "blkio.bfq.weight"), "300");
        assert_eq!(rdc("blkio", "blkio.bfq.weight_device"), "7:1 200");
        assert_eq!(
            rdc("blkio", "blkio.throttle.read_bps_device"),
            "7:1 1048576"
        );
        assert_eq!(rdc("blkio", "blkio.throttle.write_iops_device"), "7:1 100");
        assert_eq!(rdc("net_cls", "net_cls.classid"), "1048577");
        // The devices writes: from allow-all, "a" to deny, then the allow.
        assert_eq!(rdc("devices", "devices.deny"), "a");
        assert_eq!(rdc("devices", "devices.allow"), "c 1:3 rwm");
        // hugetlb and unified keys went to the unified hierarchy.
        let u = &m.unified.as_ref().unwrap().dir;
        assert_eq!(rd(u, "hugetlb.2MB.max"), "4194304");
        assert_eq!(rd(u, "hugetlb.2MB.rsvd.max"), "4194304");
        assert_eq!(rd(u, "cgroup.max.descendants"), "5");

        // Update ordering: a limit above the current memsw goes memsw first;
        // -1 memory with swap unset sets both to -1.
        std::fs::write(
            m.dirs["memory"].join("memory.memsw.limit_in_bytes"),
            "134217728",
        )
        .unwrap();
        m.set(&res(r#"{"memory":{"limit":-1}}"#), true).unwrap();
        assert_eq!(rdc("memory", "memory.limit_in_bytes"), "-1");
        assert_eq!(rdc("memory", "memory.memsw.limit_in_bytes"), "-1");
        m.set(&res(r#"{"memory":{"disableOOMKiller":false}}"#), true)
            .unwrap();
        assert_eq!(rdc("memory", "memory.oom_control"), "0");
        // checkBeforeUpdate refuses a limit below usage (4096 bytes).
        let e = m
            .set(
                &res(r#"{"memory":{"limit":1000,"checkBeforeUpdate":true}}"#),
                true,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("below the current usage of 4096"), "{e}");
        // pids 0 leaves the limit alone; -1 writes max.
        m.set(&res(r#"{"pids":{"limit":0}}"#), true).unwrap();
        assert_eq!(rdc("pids", "pids.max"), "50");
        m.set(&res(r#"{"pids":{"limit":-1}}"#), true).unwrap();
        assert_eq!(rdc("pids", "pids.max"), "max");
    }

    #[test]
    fn what_the_host_lacks_is_reported() {
        let t = Tree::new("v1lack");
        let (_root, layout) = fake(&t);
        let mut m = Manager::new(&layout, &PathSpec::default(), "c1", "").unwrap();
        m.create().unwrap();
        kernel_files(&t, &m);
        let err = |j: &str| m.set(&res(j), false).unwrap_err().to_string();
        // No CFQ: leaf weights are refused with the reason.
        let e = err(r#"{"blockIO":{"leafWeight":100}}"#);
        assert!(e.contains("CFQ"), "{e}");
        std::fs::remove_file(m.dirs["blkio"].join("blkio.bfq.weight")).unwrap();
        let e = err(r#"{"blockIO":{"weight":100}}"#);
        assert!(e.contains("neither blkio.weight"), "{e}");
        // No swap accounting.
        std::fs::remove_file(m.dirs["memory"].join("memory.memsw.limit_in_bytes")).unwrap();
        let e = err(r#"{"memory":{"limit":1000000,"swap":2000000}}"#);
        assert!(e.contains("swapaccount=1"), "{e}");
        m.set(&res(r#"{"memory":{"limit":1000000,"swap":-1}}"#), false)
            .unwrap();
        // A page size the kernel does not have.
        let e = err(r#"{"hugepageLimits":[{"pageSize":"1GB","limit":1}]}"#);
        assert!(e.contains("page sizes here: 2MB"), "{e}");
        // A unified key the hybrid cgroup2 does not have.
        let e = err(r#"{"unified":{"memory.high":"1"}}"#);
        assert!(
            e.contains("memory cgroup controller is not available"),
            "{e}"
        );
        // Without the unified part: hugetlb has nowhere to go.
        let mut m2 = m.clone();
        m2.unified = None;
        let e = m2
            .set(
                &res(r#"{"hugepageLimits":[{"pageSize":"2MB","limit":1}]}"#),
                false,
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hugetlb cgroup controller is not available"),
            "{e}"
        );
        let e = m2
            .set(&res(r#"{"unified":{"memory.high":"1"}}"#), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("only cgroup v1"), "{e}");
        // net_prio is not mounted: a warning, not an error.
        m.set(
            &res(r#"{"network":{"priorities":[{"name":"eth0","priority":5}]}}"#),
            false,
        )
        .unwrap();
    }

    #[test]
    fn stats_in_runc_shape() {
        let t = Tree::new("v1stats");
        let (_root, layout) = fake(&t);
        let mut m = Manager::new(&layout, &PathSpec::default(), "c1", "").unwrap();
        m.create().unwrap();
        kernel_files(&t, &m);
        t.files(
            &m.dirs["memory"],
            &[
                ("memory.memsw.usage_in_bytes", "5000"),
                ("memory.kmem.usage_in_bytes", "100"),
            ],
        );
        let s = m.stats().unwrap();
        assert_eq!(s.memory.usage.usage, 4096);
        assert_eq!(s.memory.usage.max, 8192);
        assert_eq!(s.memory.usage.limit, 9223372036854771712);
        assert_eq!(s.memory.swap.usage, 5000);
        assert_eq!(s.memory.kernel.usage, 100);
        assert_eq!(s.memory.cache, 12);
        assert_eq!(s.memory.raw["rss"], 34);
        assert_eq!(s.cpu.usage.total, 1000);
        assert_eq!(s.cpu.usage.percpu, vec![600, 400]);
        assert_eq!(s.cpu.usage.kernel, 2 * 1_000_000_000 / clock_ticks());
        assert_eq!(s.cpu.throttling.throttled_periods, 1);
        assert_eq!(s.cpu.throttling.throttled_time, 99);
        assert_eq!(s.pids.current, 3);
        assert_eq!(s.pids.limit, 0);
        assert_eq!(s.blkio.io_serviced_recursive.len(), 2);
        assert_eq!(s.blkio.io_service_bytes_recursive[0].value, 4096);
        assert_eq!(s.hugetlb["2MB"].usage, 0);
    }

    #[test]
    fn device_updates_write_only_the_difference() {
        let t = Tree::new("v1dev");
        let d = t.0.join("devices");
        t.files(&d, &[("devices.list", "c 1:3 rwm\nc 1:5 rwm\n")]);
        let list: Vec<LinuxDeviceCgroup> = serde_json::from_str(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":9,"access":"r"}]"#,
        )
        .unwrap();
        set_devices(&d, &list, false).unwrap();
        // No disruptive "a": 1:5 is denied, 1:9 allowed.
        assert_eq!(rd(&d, "devices.deny"), "c 1:5 rwm");
        assert_eq!(rd(&d, "devices.allow"), "c 1:9 r");
    }

    #[test]
    fn a_new_cgroup_gets_the_rules_replayed_from_a() {
        let t = Tree::new("v1devnew");
        let d = t.0.join("devices");
        // The copy of a restricted parent's list a new cgroup starts with:
        // not read, the `a` rule resets it.
        t.files(&d, &[("devices.list", "c 1:3 rwm\nc 1:5 rwm\n")]);
        let list: Vec<LinuxDeviceCgroup> = serde_json::from_str(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":9,"access":"r"}]"#,
        )
        .unwrap();
        set_devices(&d, &list, true).unwrap();
        assert_eq!(rd(&d, "devices.deny"), "a");
        // One descriptor, one write(2) per rule (a plain file appends them).
        assert_eq!(rd(&d, "devices.allow"), "c 1:3 rwmc 1:9 r");
    }
}
