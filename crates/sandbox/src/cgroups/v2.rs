//! The cgroup v2 (unified) manager: one directory in one hierarchy, with
//! controllers enabled from the root down through cgroup.subtree_control.
//!
//! The resource setters are free functions over a directory, so the v1
//! manager of a hybrid host reuses them for the controllers that exist only
//! in the unified hierarchy (hugetlb on this project's build host).
//! Values are mapped as runc 1.1 maps OCI fields onto v2 files.

use super::layout::{self, Layout};
use super::stats::{self, Stats};
use super::{
    devices, missing, own_procs, read_file, read_u64, remove_own, write_file, write_lines,
    CgroupManager, OomWatcher, PathSpec,
};
use crate::error::{Error, Result};
use crate::explain::{self, catalog};
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxMemory, LinuxResources,
    LinuxThrottleDevice,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
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
    /// Controllers to enable on the way down; None enables every one
    /// available (a unified host); a hybrid host lists the v2-only ones.
    #[serde(default)]
    pub controllers: Option<Vec<String>>,
    /// Sub-cgroups of `dir` that were there before create: not the
    /// container's, so never signalled or removed.
    #[serde(default)]
    pub foreign: Vec<PathBuf>,
}

/// runc 1.1's conversion of cgroup v1 cpu.shares (2..262144) to v2
/// cpu.weight (1..10000): linear, so the default 1024 maps to 39.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

/// runc's conversion of an OCI blkio weight (10..1000) to io.weight (1..10000).
pub fn blkio_weight_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (u64::from(w).saturating_sub(10)) * 9999 / 990
}

/// v2 memory.swap.max from OCI memory.swap (memory+swap) and memory.limit,
/// as runc computes it. Ok(None) leaves the file alone.
pub fn swap_max(limit: i64, swap: i64) -> Result<Option<String>> {
    // Unlimited memory with swap unset: unlimited swap too (v1 behaviour).
    if limit == -1 && swap == 0 {
        return Ok(Some("max".into()));
    }
    match swap {
        0 => Ok(None),
        -1 => Ok(Some("max".into())),
        s if limit <= 0 => Err(Error::msg(format!(
            "linux.resources.memory.swap={s}: a swap limit needs a memory limit (cgroup v2 limits swap separately, as swap minus memory)"
        ))),
        s if s < limit => Err(Error::msg(format!(
            "linux.resources.memory.swap={s} is below memory.limit={limit}: swap is memory plus swap"
        ))),
        s => Ok(Some((s - limit).to_string())),
    }
}

fn num_or_max(v: i64) -> String {
    if v == -1 {
        "max".into()
    } else {
        v.to_string()
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
        let dir = layout.v2_dir(&path).expect("unified mount is set");
        if dir == mount {
            return Err(Error::msg(format!(
                "cgroupsPath {}: the container cannot use the root cgroup",
                path.display()
            )));
        }
        Ok(Manager {
            path,
            dir,
            mount,
            controllers: None,
            foreign: Vec::new(),
        })
    }

    /// Enable controllers from the root down to our parent, one at a time so
    /// that one that cannot be enabled does not block the others; `set`
    /// reports a missing controller when a resource needs it.
    fn enable_controllers(&self) {
        let rel = self.dir.strip_prefix(&self.mount).unwrap_or(Path::new(""));
        let comps: Vec<_> = rel.components().collect();
        let mut chain = vec![self.mount.clone()];
        let mut acc = self.mount.clone();
        for c in comps.iter().take(comps.len().saturating_sub(1)) {
            acc.push(c);
            chain.push(acc.clone());
        }
        for d in chain {
            let avail = layout::v2_controllers(&d);
            let on = read_file(&d, "cgroup.subtree_control").unwrap_or_default();
            for c in &avail {
                let wanted = self
                    .controllers
                    .as_ref()
                    .is_none_or(|v| v.iter().any(|x| x == c));
                if wanted && !on.split_whitespace().any(|o| o == c) {
                    if let Err(e) =
                        std::fs::write(d.join("cgroup.subtree_control"), format!("+{c}"))
                    {
                        crate::logging::debug(|| {
                            format!("enable {c} in {}/cgroup.subtree_control: {e}", d.display())
                        });
                    }
                }
            }
        }
    }

    /// Controllers enabled for this cgroup.
    fn available(&self) -> Vec<String> {
        layout::v2_controllers(&self.dir)
    }
}

/// Fail unless `ctrl` is enabled for `dir`.
pub(super) fn need(dir: &Path, avail: &[String], ctrl: &str, field: &str) -> Result<()> {
    if avail.iter().any(|c| c == ctrl) {
        return Ok(());
    }
    Err(missing(
        field,
        ctrl,
        &format!(
            "{}/cgroup.controllers has {}; enable it in the parent's cgroup.subtree_control",
            dir.display(),
            if avail.is_empty() {
                "none".to_string()
            } else {
                avail.join(" ")
            }
        ),
    ))
}

/// memory: memory.max, memory.swap.max, memory.low; with `check` (the
/// container's checkBeforeUpdate during update), a limit below the current
/// usage is refused instead of letting the OOM killer act.
pub fn set_memory(d: &Path, m: &LinuxMemory, check: bool) -> Result<()> {
    let mut limit = m.limit().unwrap_or(0);
    let swap = m.swap().unwrap_or(0);
    if check {
        check_usage(d, "memory.current", "memory.limit", limit)?;
    }
    // Swap alone (an update): computed against the limit in force.
    if limit == 0 && swap > 0 {
        limit = match read_file(d, "memory.max").as_deref() {
            Some("max") | None => -1,
            Some(v) => v.parse().unwrap_or(-1),
        };
        if limit == -1 {
            return Err(Error::msg(format!(
                "linux.resources.memory.swap={swap}: a swap limit needs a memory limit, and {}/memory.max is max",
                d.display()
            )));
        }
    }
    if let Some(s) = swap_max(limit, swap)? {
        if d.join("memory.swap.max").exists() {
            write_file(d, "memory.swap.max", &s)?;
        } else if s == "0" {
            // No swap accounting: "no swap" cannot be enforced here.
            crate::logging::warn(|| {
                format!(
                    "linux.resources.memory.swap equal to the limit (no swap) not enforced: {} has no memory.swap.max (the kernel has no swap accounting)",
                    d.display()
                )
            });
        } else if s != "max" {
            return Err(Error::Unsupported(format!(
                "linux.resources.memory.swap: {} has no memory.swap.max (the kernel has no swap accounting)",
                d.display()
            )));
        }
    }
    if let Some(l) = m.limit().filter(|v| *v != 0) {
        write_file(d, "memory.max", &num_or_max(l))?;
    }
    if let Some(r) = m.reservation().filter(|v| *v != 0) {
        write_file(d, "memory.low", &num_or_max(r))?;
    }
    let warn = |what: &str| {
        crate::logging::warn(|| {
            format!(
                "linux.resources.memory.{what} ignored: {}",
                match what {
                    "swappiness" => "cgroup v2 has no per-cgroup swappiness",
                    "disableOOMKiller" => "cgroup v2 cannot disable the OOM killer for a cgroup",
                    "kernelTCP" =>
                        "cgroup v2 accounts TCP buffers in memory.max and has no separate limit",
                    _ => "no cgroup v2 equivalent",
                }
            )
        })
    };
    if m.swappiness().is_some() {
        warn("swappiness");
    }
    if m.disable_oom_killer() == Some(true) {
        warn("disableOOMKiller");
    }
    if m.kernel_tcp().is_some_and(|k| k != 0) {
        warn("kernelTCP");
    }
    Ok(())
}

/// Refuse a new limit below the current usage (checkBeforeUpdate).
pub(super) fn check_usage(d: &Path, usage_file: &str, field: &str, limit: i64) -> Result<()> {
    if limit <= 0 {
        return Ok(());
    }
    let usage = read_u64(d, usage_file).unwrap_or(0);
    if usage >= limit as u64 {
        return Err(Error::msg(format!(
            "rejecting {field}={limit}: it is below the current usage of {usage} bytes ({}/{usage_file}), and memory.checkBeforeUpdate is set",
            d.display()
        )));
    }
    Ok(())
}

/// cpu: cpu.weight (from shares), cpu.max, cpu.max.burst, cpu.idle.
pub fn set_cpu(d: &Path, c: &LinuxCpu) -> Result<()> {
    if c.realtime_runtime().is_some_and(|v| v != 0) || c.realtime_period().is_some_and(|v| v != 0) {
        return Err(Error::Unsupported(
            "linux.resources.cpu.realtimeRuntime/realtimePeriod: cgroup v2 has no realtime group scheduling".into(),
        ));
    }
    // An idle group takes no weight: leave idle first, enter it last.
    if c.idle() == Some(0) {
        write_file(d, "cpu.idle", "0")?;
    }
    if let Some(s) = c.shares().filter(|v| *v != 0) {
        write_file(d, "cpu.weight", &shares_to_weight(s).to_string())?;
    }
    if let Some(i) = c.idle().filter(|i| *i != 0) {
        write_file(d, "cpu.idle", &i.to_string())?;
    }
    // A burst larger than the current quota allows is refused until the
    // quota is written: retry it afterwards (as runc does).
    let quota = c.quota().filter(|v| *v != 0);
    let period = c.period().filter(|v| *v != 0);
    let mut burst_later = None;
    if let Some(b) = c.burst() {
        if let Err(e) = write_file(d, "cpu.max.burst", &b.to_string()) {
            if quota.is_none() {
                return Err(e);
            }
            burst_later = Some(b);
        }
    }
    if quota.is_some() || period.is_some() {
        let q = match quota {
            Some(q) if q > 0 => q.to_string(),
            Some(_) => "max".into(),
            // Period alone: keep the quota in force.
            None => read_file(d, "cpu.max")
                .and_then(|s| s.split_whitespace().next().map(String::from))
                .unwrap_or_else(|| "max".into()),
        };
        let v = match period {
            Some(p) => format!("{q} {p}"),
            None => q,
        };
        write_file(d, "cpu.max", &v)?;
        if let Some(b) = burst_later {
            write_file(d, "cpu.max.burst", &b.to_string())?;
        }
    }
    Ok(())
}

/// cpuset: cpuset.cpus and cpuset.mems.
pub fn set_cpuset(d: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
        write_file(d, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = c.mems().as_ref().filter(|s| !s.is_empty()) {
        write_file(d, "cpuset.mems", mems)?;
    }
    Ok(())
}

/// pids.max: a positive limit, "max" for -1; 0 leaves it (runc's reading).
pub fn set_pids(d: &Path, limit: i64) -> Result<()> {
    match limit {
        0 => Ok(()),
        l if l > 0 => write_file(d, "pids.max", &l.to_string()),
        _ => write_file(d, "pids.max", "max"),
    }
}

fn throttle_line(t: &LinuxThrottleDevice, key: &str) -> String {
    let rate = if t.rate() == 0 {
        "max".to_string()
    } else {
        t.rate().to_string()
    };
    format!("{}:{} {key}={rate}", t.major(), t.minor())
}

/// io: io.bfq.weight when BFQ is there, else io.weight (converted);
/// per-device weights; io.max for the throttles.
pub fn set_io(d: &Path, b: &LinuxBlockIo) -> Result<()> {
    let bfq = d.join("io.bfq.weight").exists();
    if let Some(w) = b.weight().filter(|v| *v != 0) {
        if bfq {
            write_file(d, "io.bfq.weight", &w.to_string())?;
        } else if d.join("io.weight").exists() {
            write_file(d, "io.weight", &blkio_weight_to_io_weight(w).to_string())?;
        } else {
            return Err(Error::Unsupported(format!(
                "linux.resources.blockIO.weight: {} has neither io.bfq.weight (BFQ scheduler) nor io.weight (io cost model)",
                d.display()
            )));
        }
    }
    if b.leaf_weight().is_some_and(|v| v != 0) {
        crate::logging::warn(|| {
            "linux.resources.blockIO.leafWeight ignored: it belonged to the CFQ scheduler and has no cgroup v2 equivalent".into()
        });
    }
    for wd in b.weight_device().iter().flatten() {
        if wd.leaf_weight().is_some_and(|v| v != 0) {
            crate::logging::warn(|| {
                format!(
                    "linux.resources.blockIO.weightDevice {}:{} leafWeight ignored: no cgroup v2 equivalent",
                    wd.major(),
                    wd.minor()
                )
            });
        }
        let Some(w) = wd.weight().filter(|v| *v != 0) else {
            continue;
        };
        if bfq {
            write_file(
                d,
                "io.bfq.weight",
                &format!("{}:{} {w}", wd.major(), wd.minor()),
            )?;
        } else {
            write_file(
                d,
                "io.weight",
                &format!(
                    "{}:{} {}",
                    wd.major(),
                    wd.minor(),
                    blkio_weight_to_io_weight(w)
                ),
            )?;
        }
    }
    for (list, key) in [
        (b.throttle_read_bps_device(), "rbps"),
        (b.throttle_write_bps_device(), "wbps"),
        (b.throttle_read_iops_device(), "riops"),
        (b.throttle_write_iops_device(), "wiops"),
    ] {
        for t in list.iter().flatten() {
            write_file(d, "io.max", &throttle_line(t, key))?;
        }
    }
    Ok(())
}

/// The page sizes a directory has hugetlb files for, from files named
/// `hugetlb.<size>.<suffix>`.
pub(super) fn hugetlb_sizes(d: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let size = n.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
                    (!size.contains('.')).then(|| size.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Write hugetlb limits: `hugetlb.<size>.<limit_suffix>` and, where the
/// kernel has it, the reservation limit `hugetlb.<size>.rsvd.<limit_suffix>`
/// (OCI: reservations when supported). `minus_one` is how the file spells
/// "unlimited".
pub(super) fn write_hugetlb(
    d: &Path,
    list: &[LinuxHugepageLimit],
    limit_suffix: &str,
    minus_one: &str,
) -> Result<()> {
    for (i, h) in list.iter().enumerate() {
        let file = format!("hugetlb.{}.{limit_suffix}", h.page_size());
        if !d.join(&file).exists() {
            let sizes = hugetlb_sizes(d, &format!(".{limit_suffix}"));
            return Err(Error::Unsupported(format!(
                "linux.resources.hugepageLimits[{i}].pageSize {:?}: {} has no {file}; page sizes here: {}",
                h.page_size(),
                d.display(),
                if sizes.is_empty() { "none".to_string() } else { sizes.join(", ") }
            )));
        }
        let v = if h.limit() == -1 {
            minus_one.to_string()
        } else {
            h.limit().to_string()
        };
        write_file(d, &file, &v)?;
        let rsvd = format!("hugetlb.{}.rsvd.{limit_suffix}", h.page_size());
        if d.join(&rsvd).exists() {
            write_file(d, &rsvd, &v)?;
        }
    }
    Ok(())
}

/// hugetlb.<size>.max and hugetlb.<size>.rsvd.max.
pub fn set_hugetlb(d: &Path, list: &[LinuxHugepageLimit]) -> Result<()> {
    write_hugetlb(d, list, "max", "max")
}

/// rdma.max, one line per device ("mlx4_0 hca_handle=2 hca_object=2000").
pub fn set_rdma(d: &Path, r: &HashMap<String, oci_spec::runtime::LinuxRdma>) -> Result<()> {
    let sorted: BTreeMap<_, _> = r.iter().collect();
    for (dev, l) in sorted {
        let mut line = dev.clone();
        if let Some(h) = l.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = l.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        if line != *dev {
            write_file(d, "rdma.max", &line)?;
        }
    }
    Ok(())
}

/// The `unified` map: each key is a file of the cgroup, written last so it
/// overrides the mapped values. A key whose controller is not enabled gets
/// an error that says so.
pub fn set_unified(d: &Path, u: &HashMap<String, String>, avail: &[String]) -> Result<()> {
    let sorted: BTreeMap<_, _> = u.iter().collect();
    for (k, v) in sorted {
        if k.contains('/') || k.starts_with('.') {
            return Err(Error::msg(format!(
                "linux.resources.unified: {k:?} is not a cgroup file name"
            )));
        }
        if !d.join(k).exists() {
            let ctrl = k.split('.').next().unwrap_or("");
            if ctrl != "cgroup" && !avail.iter().any(|c| c == ctrl) {
                return Err(missing(
                    &format!("unified[{k:?}]"),
                    ctrl,
                    &format!(
                        "{}/cgroup.controllers has {}",
                        d.display(),
                        if avail.is_empty() {
                            "none".to_string()
                        } else {
                            avail.join(" ")
                        }
                    ),
                ));
            }
            return Err(Error::msg(format!(
                "linux.resources.unified[{k:?}]: {} has no such file",
                d.display()
            )));
        }
        write_lines(d, k, v)?;
    }
    Ok(())
}

/// Devices: the eBPF filter built from the rules.
pub fn set_devices(d: &Path, list: &[LinuxDeviceCgroup]) -> Result<()> {
    let rules = devices::from_oci(list)?;
    let e = devices::Emulator::from_rules(&rules)?;
    explain::step(&catalog::CGROUP_DEVICES, || {
        format!(
            "attach an eBPF device filter ({} rules, default {}) to {}",
            e.exceptions.len(),
            if e.default_allow { "allow" } else { "deny" },
            d.display()
        )
    });
    super::bpf::apply(d, &e)
}

/// Counters of a v2 cgroup directory, in runc's shape.
pub fn read_stats(d: &Path, s: &mut Stats) {
    // memory
    let raw = stats::parse_keyed(&read_file(d, "memory.stat").unwrap_or_default());
    s.memory.cache = raw.get("file").copied().unwrap_or(0);
    s.memory.raw = raw;
    s.memory.usage.usage = read_u64(d, "memory.current").unwrap_or(0);
    s.memory.usage.limit = read_u64(d, "memory.max").unwrap_or(0);
    s.memory.usage.max = read_u64(d, "memory.peak").unwrap_or(0);
    let ev = stats::parse_keyed(&read_file(d, "memory.events").unwrap_or_default());
    s.memory.usage.failcnt = ev.get("max").copied().unwrap_or(0);
    if let Some(sw) = read_u64(d, "memory.swap.current") {
        // v1 reports swap as memory+swap: add up for the same meaning.
        s.memory.swap.usage = sw.saturating_add(s.memory.usage.usage);
        let sl = read_u64(d, "memory.swap.max").unwrap_or(u64::MAX);
        s.memory.swap.limit = if sl == u64::MAX || s.memory.usage.limit == u64::MAX {
            u64::MAX
        } else {
            sl + s.memory.usage.limit
        };
    }
    // cpu
    let cs = stats::parse_keyed(&read_file(d, "cpu.stat").unwrap_or_default());
    let g = |k: &str| cs.get(k).copied().unwrap_or(0);
    s.cpu.usage.total = g("usage_usec") * 1000;
    s.cpu.usage.user = g("user_usec") * 1000;
    s.cpu.usage.kernel = g("system_usec") * 1000;
    s.cpu.throttling.periods = g("nr_periods");
    s.cpu.throttling.throttled_periods = g("nr_throttled");
    s.cpu.throttling.throttled_time = g("throttled_usec") * 1000;
    // pids
    s.pids.current = read_u64(d, "pids.current").unwrap_or(0);
    s.pids.limit = match read_u64(d, "pids.max") {
        Some(u64::MAX) | None => 0,
        Some(v) => v,
    };
    // io
    if let Some(t) = read_file(d, "io.stat") {
        s.blkio = stats::parse_io_stat(&t);
    }
    // cpuset
    if let Some(c) = read_file(d, "cpuset.cpus.effective") {
        s.cpuset.cpus = stats::parse_list_u16(&c);
    }
    if let Some(m) = read_file(d, "cpuset.mems.effective") {
        s.cpuset.mems = stats::parse_list_u16(&m);
    }
    read_hugetlb_stats(d, s);
}

/// hugetlb.<size>.current and the "max" count of hugetlb.<size>.events.
pub(super) fn read_hugetlb_stats(d: &Path, s: &mut Stats) {
    for size in hugetlb_sizes(d, ".current") {
        let ev = stats::parse_keyed(
            &read_file(d, &format!("hugetlb.{size}.events")).unwrap_or_default(),
        );
        s.hugetlb.insert(
            size.clone(),
            stats::Hugetlb {
                usage: read_u64(d, &format!("hugetlb.{size}.current")).unwrap_or(0),
                max: 0,
                failcnt: ev.get("max").copied().unwrap_or(0),
            },
        );
    }
}

/// Freeze or thaw a v2 cgroup and wait for cgroup.events to agree.
pub(super) fn freeze_dir(d: &Path, frozen: bool) -> Result<()> {
    write_file(d, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(5) {
        let ev = read_file(d, "cgroup.events").unwrap_or_default();
        if ev.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(Error::msg(format!(
        "cgroup {}: cgroup.events did not report {want:?} within 5 s",
        d.display()
    )))
}

/// Kill every process of a v2 cgroup and the sub-cgroups the container
/// owns: cgroup.kill when the kernel has it (5.14+) and no foreign
/// sub-cgroup is below (it kills the whole subtree), else SIGKILL to each
/// listed pid.
pub(super) fn kill_dir(d: &Path, foreign: &[PathBuf]) {
    if foreign.is_empty()
        && d.join("cgroup.kill").exists()
        && std::fs::write(d.join("cgroup.kill"), "1").is_ok()
    {
        return;
    }
    for pid in own_procs(d, foreign) {
        // SAFETY: kill(2) with a pid read from the container's cgroup.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Remove a v2 cgroup and the sub-cgroups the container owns; with `kill`,
/// killing what is left of the container's processes first.
pub(super) fn destroy_dir(
    d: &Path,
    foreign: &[PathBuf],
    kill: bool,
    deadline: std::time::Instant,
) -> Result<()> {
    if !d.exists() {
        return Ok(());
    }
    if kill && !own_procs(d, foreign).is_empty() {
        kill_dir(d, foreign);
    }
    let again = || {
        if kill {
            kill_dir(d, foreign)
        }
    };
    remove_own(d, foreign, &again, deadline)
}

impl CgroupManager for Manager {
    fn create(&mut self) -> Result<()> {
        explain::step(&catalog::CGROUP_CREATE, || {
            format!("mkdir {}", self.dir.display())
        });
        self.foreign = super::survey(&self.dir, &self.path)?;
        if let Some(parent) = self.dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::msg(format!("cgroup: create {}: {e}", parent.display())))?;
        }
        self.enable_controllers();
        match std::fs::create_dir(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::msg(format!(
                "cgroup: create {}: {e}",
                self.dir.display()
            ))),
        }
    }

    fn set(&self, res: &LinuxResources, update: bool) -> Result<()> {
        let d = &self.dir;
        let avail = self.available();
        if let Some(p) = res.pids().filter(|p| p.limit() != 0) {
            need(d, &avail, "pids", "pids")?;
            set_pids(d, p.limit())?;
        }
        if let Some(m) = res.memory() {
            super::warn_kernel_memory(m);
        }
        if let Some(m) = res.memory().as_ref().filter(|m| super::memory_requested(m)) {
            need(d, &avail, "memory", "memory")?;
            let check = update && m.check_before_update() == Some(true);
            set_memory(d, m, check)?;
        }
        if let Some(b) = res.block_io() {
            need(d, &avail, "io", "blockIO")?;
            set_io(d, b)?;
        }
        if let Some(c) = res.cpu() {
            if super::cpu_requested(c) {
                need(d, &avail, "cpu", "cpu")?;
                set_cpu(d, c)?;
            }
            if super::cpuset_requested(c) {
                need(d, &avail, "cpuset", "cpu.cpus/cpu.mems")?;
                set_cpuset(d, c)?;
            }
        }
        if let Some(list) = res.devices().as_ref().filter(|l| !l.is_empty()) {
            set_devices(d, list)?;
        }
        if let Some(list) = res.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
            need(d, &avail, "hugetlb", "hugepageLimits")?;
            set_hugetlb(d, list)?;
        }
        if let Some(r) = res.rdma().as_ref().filter(|r| !r.is_empty()) {
            if avail.iter().any(|c| c == "rdma") {
                set_rdma(d, r)?;
            } else {
                crate::logging::warn(|| {
                    format!(
                        "linux.resources.rdma ignored: the rdma controller is not enabled for {}",
                        d.display()
                    )
                });
            }
        }
        if let Some(n) = res.network() {
            if n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                crate::logging::warn(|| {
                    "linux.resources.network ignored: net_cls and net_prio are cgroup v1 controllers with no cgroup v2 equivalent".into()
                });
            }
        }
        if let Some(u) = res.unified().as_ref().filter(|u| !u.is_empty()) {
            set_unified(d, u, &avail)?;
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
        Ok(own_procs(&self.dir, &self.foreign))
    }

    fn freeze(&self, frozen: bool) -> Result<()> {
        freeze_dir(&self.dir, frozen)
    }

    fn is_frozen(&self) -> bool {
        read_file(&self.dir, "cgroup.freeze").is_some_and(|s| s == "1")
    }

    fn stats(&self) -> Result<Stats> {
        if !self.dir.exists() {
            return Err(Error::msg(format!(
                "cgroup {} does not exist",
                self.dir.display()
            )));
        }
        let mut s = Stats::default();
        read_stats(&self.dir, &mut s);
        Ok(s)
    }

    fn destroy(&self, kill: bool) -> Result<()> {
        explain::step(&catalog::DELETE_CGROUP, || {
            format!("rmdir {}", self.dir.display())
        });
        destroy_dir(
            &self.dir,
            &self.foreign,
            kill,
            std::time::Instant::now() + super::RMDIR_BUDGET,
        )
    }

    fn dirs(&self) -> Vec<(String, PathBuf)> {
        vec![(String::new(), self.dir.clone())]
    }

    fn record(&self) -> super::CgroupRecord {
        super::CgroupRecord::V2(self.clone())
    }

    fn clone_into_dir(&self) -> Option<PathBuf> {
        Some(self.dir.clone())
    }

    fn oom_watcher(&self) -> Result<Option<OomWatcher>> {
        if !self.dir.join("memory.events").exists() {
            return Ok(None);
        }
        OomWatcher::v2(&self.dir).map(Some)
    }

    fn signal_all(&self, sig: i32) -> Result<usize> {
        if sig == libc::SIGKILL && self.foreign.is_empty() && self.dir.join("cgroup.kill").exists()
        {
            let n = self.pids()?.len();
            write_file(&self.dir, "cgroup.kill", "1")?;
            return Ok(n);
        }
        let was_frozen = self.is_frozen();
        let froze = !was_frozen && self.freeze(true).is_ok();
        let pids = self.pids()?;
        for &p in &pids {
            // SAFETY: kill(2) to a pid listed in the container's cgroup.
            unsafe { libc::kill(p, sig) };
        }
        if froze {
            self.freeze(false)?;
        }
        Ok(pids.len())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{rd, Tree};
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(swap_max(100, 300).unwrap().as_deref(), Some("200"));
        assert_eq!(swap_max(100, 100).unwrap().as_deref(), Some("0"));
        assert_eq!(swap_max(100, -1).unwrap().as_deref(), Some("max"));
        assert_eq!(swap_max(-1, 0).unwrap().as_deref(), Some("max"));
        assert_eq!(swap_max(100, 0).unwrap(), None);
        assert!(swap_max(0, 300).is_err());
        assert!(swap_max(-1, 300).is_err());
        assert!(swap_max(300, 100).is_err());
    }

    const ALL: &str = "cpuset cpu io memory hugetlb pids rdma misc";

    /// A fake unified tree: root with every controller, the container's
    /// directory with the files the kernel would show.
    fn fake(t: &Tree) -> (Layout, PathBuf) {
        let root = t.0.join("cg");
        t.files(
            &root,
            &[("cgroup.controllers", ALL), ("cgroup.subtree_control", "")],
        );
        let mi = format!("30 23 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.display());
        let layout = layout::detect_host(&mi, &root);
        assert_eq!(layout.kind, layout::Kind::Unified);
        (layout, root)
    }

    fn container_files(t: &Tree, dir: &Path) {
        t.files(
            dir,
            &[
                ("cgroup.controllers", ALL),
                ("cgroup.procs", ""),
                ("cgroup.freeze", "0"),
                ("memory.max", "max"),
                ("memory.swap.max", "max"),
                ("memory.low", "0"),
                ("memory.current", "1000"),
                ("cpu.weight", "100"),
                ("cpu.max", "max 100000"),
                ("cpu.max.burst", "0"),
                ("cpu.idle", "0"),
                ("cpuset.cpus", ""),
                ("cpuset.mems", ""),
                ("pids.max", "max"),
                ("io.weight", "default 100"),
                ("io.max", ""),
                ("hugetlb.2MB.max", "max"),
                ("hugetlb.2MB.rsvd.max", "max"),
                ("hugetlb.1GB.max", "max"),
                ("rdma.max", ""),
                ("memory.high", "max"),
            ],
        );
    }

    fn res(j: &str) -> LinuxResources {
        serde_json::from_str(j).unwrap()
    }

    #[test]
    fn every_knob_lands_in_its_file() {
        let t = Tree::new("v2set");
        let (layout, root) = fake(&t);
        let mut m = Manager::new(&layout, &PathSpec::default(), "c1", "0::/\n").unwrap();
        assert_eq!(m.dir, root.join("nano-sandbox/c1"));
        m.create().unwrap();
        // Controllers were enabled at the root, one write each (last wins in
        // a plain file).
        assert!(rd(&root, "cgroup.subtree_control").starts_with('+'));
        container_files(&t, &m.dir);
        m.set(
            &res(r#"{
                "memory":{"limit":67108864,"swap":134217728,"reservation":1048576},
                "cpu":{"shares":1024,"quota":50000,"period":100000,"burst":1000,"idle":1,"cpus":"0-1","mems":"0"},
                "pids":{"limit":50},
                "blockIO":{"weight":500,"throttleWriteBpsDevice":[{"major":8,"minor":0,"rate":1048576}]},
                "hugepageLimits":[{"pageSize":"2MB","limit":4194304}],
                "rdma":{"mlx4_0":{"hcaHandles":2,"hcaObjects":2000}},
                "unified":{"memory.high":"50M"}
            }"#),
            false,
        )
        .unwrap();
        let d = &m.dir;
        assert_eq!(rd(d, "memory.max"), "67108864");
        assert_eq!(rd(d, "memory.swap.max"), "67108864");
        assert_eq!(rd(d, "memory.low"), "1048576");
        assert_eq!(rd(d, "cpu.weight"), "39");
        assert_eq!(rd(d, "cpu.max"), "50000 100000");
        assert_eq!(rd(d, "cpu.max.burst"), "1000");
        assert_eq!(rd(d, "cpu.idle"), "1");
        assert_eq!(rd(d, "cpuset.cpus"), "0-1");
        assert_eq!(rd(d, "cpuset.mems"), "0");
        assert_eq!(rd(d, "pids.max"), "50");
        assert_eq!(rd(d, "io.weight"), "4950");
        assert_eq!(rd(d, "io.max"), "8:0 wbps=1048576");
        assert_eq!(rd(d, "hugetlb.2MB.max"), "4194304");
        assert_eq!(rd(d, "hugetlb.2MB.rsvd.max"), "4194304");
        assert_eq!(rd(d, "rdma.max"), "mlx4_0 hca_handle=2 hca_object=2000");
        assert_eq!(rd(d, "memory.high"), "50M");

        // Update: period alone keeps the quota; -1 quota is max; swap alone
        // is computed against memory.max; pids -1 is max.
        m.set(&res(r#"{"cpu":{"period":200000}}"#), true).unwrap();
        assert_eq!(rd(d, "cpu.max"), "50000 200000");
        m.set(&res(r#"{"cpu":{"quota":-1}}"#), true).unwrap();
        assert_eq!(rd(d, "cpu.max"), "max");
        m.set(&res(r#"{"memory":{"swap":100663296}}"#), true)
            .unwrap();
        assert_eq!(rd(d, "memory.swap.max"), "33554432");
        m.set(&res(r#"{"pids":{"limit":-1}}"#), true).unwrap();
        assert_eq!(rd(d, "pids.max"), "max");
        m.set(&res(r#"{"memory":{"limit":-1}}"#), true).unwrap();
        assert_eq!(rd(d, "memory.max"), "max");
        assert_eq!(rd(d, "memory.swap.max"), "max");
        // BFQ present: the weight goes there unconverted, device weights too.
        std::fs::write(d.join("io.bfq.weight"), "default 100").unwrap();
        m.set(
            &res(r#"{"blockIO":{"weightDevice":[{"major":8,"minor":0,"weight":300}]}}"#),
            true,
        )
        .unwrap();
        assert_eq!(rd(d, "io.bfq.weight"), "8:0 300");
    }

    #[test]
    fn refusals_are_clear() {
        let t = Tree::new("v2err");
        let (layout, _root) = fake(&t);
        let mut m = Manager::new(&layout, &PathSpec::default(), "c2", "").unwrap();
        m.create().unwrap();
        container_files(&t, &m.dir);
        // checkBeforeUpdate: usage is 1000 bytes.
        let e = m
            .set(
                &res(r#"{"memory":{"limit":500,"checkBeforeUpdate":true}}"#),
                true,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("below the current usage of 1000"), "{e}");
        // Without the flag, or at create, it is written.
        m.set(
            &res(r#"{"memory":{"limit":500,"checkBeforeUpdate":true}}"#),
            false,
        )
        .unwrap();
        let e = m
            .set(
                &res(r#"{"hugepageLimits":[{"pageSize":"64KB","limit":1}]}"#),
                false,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("page sizes here: 1GB, 2MB"), "{e}");
        let e = m
            .set(&res(r#"{"cpu":{"realtimeRuntime":1000}}"#), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("realtime"), "{e}");
        let e = m
            .set(&res(r#"{"unified":{"foo.bar":"1"}}"#), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the foo cgroup controller is not available"),
            "{e}"
        );
        // A controller that is not enabled for the cgroup.
        std::fs::write(m.dir.join("cgroup.controllers"), "hugetlb").unwrap();
        let e = m
            .set(&res(r#"{"memory":{"limit":1000000}}"#), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("memory cgroup controller is not available"),
            "{e}"
        );
        assert!(e.contains("has hugetlb"), "{e}");
        // Without memory.swap.max, swap equal to the limit only warns.
        std::fs::write(m.dir.join("cgroup.controllers"), ALL).unwrap();
        std::fs::remove_file(m.dir.join("memory.swap.max")).unwrap();
        m.set(
            &res(r#"{"memory":{"limit":1000000,"swap":1000000}}"#),
            false,
        )
        .unwrap();
        assert!(m
            .set(
                &res(r#"{"memory":{"limit":1000000,"swap":2000000}}"#),
                false
            )
            .is_err());
    }

    #[test]
    fn stats_in_runc_shape() {
        let t = Tree::new("v2stats");
        let d = t.0.join("c");
        t.files(
            &d,
            &[
                ("memory.current", "4096"),
                ("memory.max", "max"),
                ("memory.peak", "8192"),
                ("memory.swap.current", "0"),
                ("memory.swap.max", "max"),
                ("memory.events", "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n"),
                ("memory.stat", "anon 100\nfile 200\n"),
                ("cpu.stat", "usage_usec 10\nuser_usec 4\nsystem_usec 6\nnr_periods 3\nnr_throttled 1\nthrottled_usec 5\n"),
                ("pids.current", "2"),
                ("pids.max", "max"),
                ("io.stat", "8:0 rbytes=1 wbytes=2 rios=3 wios=4\n"),
                ("hugetlb.2MB.current", "0"),
                ("hugetlb.2MB.events", "max 7\n"),
                ("cpuset.cpus.effective", "0-1"),
            ],
        );
        let mut s = Stats::default();
        read_stats(&d, &mut s);
        assert_eq!(s.memory.usage.usage, 4096);
        assert_eq!(s.memory.usage.limit, u64::MAX);
        assert_eq!(s.memory.usage.max, 8192);
        assert_eq!(s.memory.usage.failcnt, 2);
        assert_eq!(s.memory.cache, 200);
        assert_eq!(s.memory.swap.usage, 4096);
        assert_eq!(s.cpu.usage.total, 10_000);
        assert_eq!(s.cpu.usage.kernel, 6_000);
        assert_eq!(s.cpu.throttling.throttled_time, 5_000);
        assert_eq!(s.pids.current, 2);
        assert_eq!(s.pids.limit, 0);
        assert_eq!(s.blkio.io_serviced_recursive.len(), 2);
        assert_eq!(s.hugetlb["2MB"].failcnt, 7);
        assert_eq!(s.cpuset.cpus, vec![0, 1]);
    }

    #[test]
    fn record_round_trip_and_relative_paths() {
        let t = Tree::new("v2rec");
        let (layout, root) = fake(&t);
        let ps = PathSpec {
            cgroups_path: Some("sub/c3".into()),
            systemd: false,
        };
        let m = Manager::new(&layout, &ps, "c3", "0::/user.slice/me\n").unwrap();
        assert_eq!(m.dir, root.join("user.slice/me/sub/c3"));
        let json = serde_json::to_value(m.record()).unwrap();
        let Ok(crate::cgroups::CgroupRecord::V2(back)) = serde_json::from_value(json) else {
            panic!("not a v2 record")
        };
        assert_eq!(back.dir, m.dir);
        assert!(back.controllers.is_none());
        let root_ps = PathSpec {
            cgroups_path: Some("/".into()),
            systemd: false,
        };
        assert!(Manager::new(&layout, &root_ps, "c", "").is_err());
    }
}
