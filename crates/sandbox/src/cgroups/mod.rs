//! Cgroups: one manager trait, with a v1 manager (also used on hybrid hosts)
//! and a v2 manager. The lifecycle code only sees the trait, so adding a
//! controller or a layout never touches create, start or delete.
//!
//! Everything here takes paths (the cgroupfs mount points, the mountinfo text)
//! rather than assuming `/sys/fs/cgroup`, so the logic runs against a fake
//! tree in a temp directory in unit tests.

pub mod layout;
pub mod v1;
pub mod v2;

use crate::error::{Error, Result};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use layout::Layout;

/// Where a container's cgroup goes when the config names none.
pub const DEFAULT_PARENT: &str = "/nano-sandbox";

/// Counters read back from the cgroup, in the shape `events --stats` prints.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    pub memory_usage: u64,
    pub memory_limit: u64,
    pub memory_max_usage: u64,
    pub memory_failcnt: u64,
    pub cpu_usage_total_ns: u64,
    pub cpu_usage_user_ns: u64,
    pub cpu_usage_kernel_ns: u64,
    pub pids_current: u64,
    pub pids_limit: u64,
}

/// The common interface of the v1 and v2 managers.
pub trait CgroupManager {
    /// Create the cgroup (and its parents).
    fn create(&self) -> Result<()>;
    /// Write `res` into the cgroup. `update` is true for `nk-runtime update`.
    fn set(&self, res: &LinuxResources, update: bool) -> Result<()>;
    /// Move a process into the cgroup.
    fn add_process(&self, pid: i32) -> Result<()>;
    /// Every pid in the cgroup (and its descendants).
    fn pids(&self) -> Result<Vec<i32>>;
    /// Freeze or thaw every process.
    fn freeze(&self, frozen: bool) -> Result<()>;
    /// True when frozen.
    fn is_frozen(&self) -> bool;
    /// Current counters.
    fn stats(&self) -> Result<Stats>;
    /// Kill what is left and remove the cgroup.
    fn destroy(&self) -> Result<()>;
    /// The directories of this cgroup, per hierarchy ("" for the unified one).
    fn dirs(&self) -> Vec<(String, PathBuf)>;
    /// A record to keep in state.json, to rebuild the manager later.
    fn record(&self) -> serde_json::Value;
    /// Files into which a process can write "0" to move itself into this
    /// cgroup (v1 `tasks` files). Moving oneself takes no global lock, while
    /// writing another pid into cgroup.procs waits for an RCU grace period
    /// (about 10 ms here): the child joins by itself when it can. Empty when
    /// the manager has a better way (v2: CLONE_INTO_CGROUP) or none.
    fn self_join_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// How the container's cgroup path was asked for.
#[derive(Debug, Clone, Default)]
pub struct PathSpec {
    /// `linux.cgroupsPath`, if any.
    pub cgroups_path: Option<PathBuf>,
    /// `--systemd-cgroup` was given.
    pub systemd: bool,
}

/// Turn `linux.cgroupsPath` into a path relative to a hierarchy root.
///
/// * absolute: used as is;
/// * `slice:prefix:name` with `--systemd-cgroup`: mapped to
///   `/<slice path>/<prefix>-<name>.scope` on cgroupfs (this host has no systemd);
/// * relative: under `own`, the runtime's own cgroup in that hierarchy;
/// * none: `/nano-sandbox/<id>`.
pub fn resolve_path(ps: &PathSpec, id: &str, own: &Path) -> Result<PathBuf> {
    let Some(p) = ps
        .cgroups_path
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty())
    else {
        return Ok(Path::new(DEFAULT_PARENT).join(id));
    };
    let s = p.to_string_lossy();
    if ps.systemd || (!s.starts_with('/') && s.matches(':').count() == 2) {
        if let Some(p) = systemd_to_fs(&s, id)? {
            return Ok(p);
        }
    }
    if p.is_absolute() {
        Ok(p.clone())
    } else {
        Ok(own.join(p))
    }
}

/// Map the systemd form `slice:prefix:name` to a cgroupfs path, as runc's
/// systemd driver names units: `a-b.slice` nests as `/a.slice/a-b.slice`.
pub fn systemd_to_fs(s: &str, id: &str) -> Result<Option<PathBuf>> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 3 {
        return Ok(None);
    }
    let (slice, prefix, name) = (parts[0], parts[1], parts[2]);
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    if !slice.ends_with(".slice") || slice.contains('/') {
        return Err(Error::msg(format!(
            "cgroupsPath {s:?}: the first part must be a systemd slice name such as system.slice"
        )));
    }
    let mut path = PathBuf::from("/");
    let base = slice.trim_end_matches(".slice");
    if base != "-" {
        let mut acc = String::new();
        for (i, comp) in base.split('-').enumerate() {
            if comp.is_empty() {
                return Err(Error::msg(format!("cgroupsPath {s:?}: invalid slice name")));
            }
            if i > 0 {
                acc.push('-');
            }
            acc.push_str(comp);
            path.push(format!("{acc}.slice"));
        }
    }
    let name = if name.is_empty() { id } else { name };
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    path.push(unit);
    Ok(Some(path))
}

/// Check resource values before anything is created. Errors are
/// (field below linux.resources, reason).
pub fn validate_resources(res: &LinuxResources) -> Result<(), (String, String)> {
    if let Some(m) = res.memory() {
        for (f, v) in [
            ("memory.limit", m.limit()),
            ("memory.reservation", m.reservation()),
            ("memory.swap", m.swap()),
        ] {
            if let Some(v) = v {
                if v < -1 {
                    return Err((f.into(), format!("{v} is negative (use -1 for unlimited)")));
                }
            }
        }
        if let (Some(l), Some(s)) = (m.limit(), m.swap()) {
            if l > 0 && s > 0 && s < l {
                return Err((
                    "memory.swap".into(),
                    format!("{s} is below memory.limit {l}: swap is the limit of memory plus swap"),
                ));
            }
        }
        if let Some(sw) = m.swappiness() {
            if sw > 100 {
                return Err(("memory.swappiness".into(), format!("{sw} is above 100")));
            }
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(q) = c.quota() {
            if q < -1 || (q > 0 && q < 1000) {
                return Err((
                    "cpu.quota".into(),
                    format!("{q}: must be -1 (unlimited) or at least 1000 microseconds"),
                ));
            }
        }
        if let Some(p) = c.period() {
            if !(1000..=1_000_000).contains(&p) {
                return Err((
                    "cpu.period".into(),
                    format!("{p}: must be between 1000 and 1000000 microseconds"),
                ));
            }
        }
        for (f, v) in [("cpu.cpus", c.cpus()), ("cpu.mems", c.mems())] {
            if let Some(v) = v {
                if !v.is_empty() && parse_cpu_list(v).is_none() {
                    return Err((f.into(), format!("{v:?} is not a list such as 0-2,4")));
                }
            }
        }
    }
    if let Some(p) = res.pids() {
        if p.limit() < -1 {
            return Err((
                "pids.limit".into(),
                format!("{} is negative (use -1 or 0 for unlimited)", p.limit()),
            ));
        }
    }
    for (i, d) in res.devices().iter().flatten().enumerate() {
        if let Some(a) = d.access() {
            if a.is_empty() || !a.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
                return Err((
                    format!("devices[{i}].access"),
                    format!("{a:?}: use r, w and m"),
                ));
            }
        }
    }
    Ok(())
}

/// Parse a cpuset list such as `0-2,4`; None when malformed.
pub fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.trim().split(',') {
        let part = part.trim();
        if part.is_empty() {
            return None;
        }
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
            if a > b || b - a > 65536 {
                return None;
            }
            out.extend(a..=b);
        } else {
            out.push(part.parse().ok()?);
        }
    }
    Some(out)
}

/// Options for building a manager.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where cgroup hierarchies are mounted (normally /sys/fs/cgroup).
    pub mount_root: PathBuf,
    /// /proc/self/mountinfo text; empty means read the live file.
    pub mountinfo: Option<String>,
    /// /proc/self/cgroup text; empty means read the live file.
    pub proc_cgroup: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mount_root: PathBuf::from("/sys/fs/cgroup"),
            mountinfo: None,
            proc_cgroup: None,
        }
    }
}

/// Build the manager for a new container on this host.
pub fn new_manager(ps: &PathSpec, id: &str, opts: &Options) -> Result<Box<dyn CgroupManager>> {
    let mi = match &opts.mountinfo {
        Some(s) => s.clone(),
        None => std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?,
    };
    let pc = match &opts.proc_cgroup {
        Some(s) => s.clone(),
        None => std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
    };
    let layout = layout::detect(&mi);
    match layout.kind {
        layout::Kind::Unified => Ok(Box::new(v2::Manager::new(&layout, ps, id, &pc)?)),
        layout::Kind::Legacy | layout::Kind::Hybrid => {
            Ok(Box::new(v1::Manager::new(&layout, ps, id, &pc)?))
        }
        layout::Kind::None => Err(Error::Unsupported(
            "no cgroup filesystem is mounted; mount cgroup2 on /sys/fs/cgroup".into(),
        )),
    }
}

/// Rebuild the manager from the record kept in state.json.
pub fn from_record(v: &serde_json::Value) -> Option<Box<dyn CgroupManager>> {
    match v.get("kind").and_then(|k| k.as_str()) {
        Some("v1") => v1::Manager::from_record(v).map(|m| Box::new(m) as Box<dyn CgroupManager>),
        Some("v2") => v2::Manager::from_record(v).map(|m| Box::new(m) as Box<dyn CgroupManager>),
        _ => None,
    }
}

/// Write one cgroup file, naming the file and value on failure.
pub fn write_file(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    crate::explain::step(&crate::explain::catalog::CGROUP_WRITE, || {
        format!("{} = {value}", p.display())
    });
    std::fs::write(&p, value)
        .map_err(|e| Error::msg(format!("cgroup: write {value:?} to {}: {e}", p.display())))
}

/// Read a cgroup file as trimmed text.
pub fn read_file(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Read a cgroup file as a number ("max" reads as u64::MAX).
pub fn read_u64(dir: &Path, file: &str) -> Option<u64> {
    let s = read_file(dir, file)?;
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

/// Read the pids listed in a cgroup.procs file.
pub fn read_procs(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Remove a cgroup directory, retrying while the kernel still counts dying
/// tasks (rmdir returns EBUSY for a moment after the last process exits).
pub fn rmdir_retry(dir: &Path, kill: &dyn Fn()) -> Result<()> {
    let mut delay = std::time::Duration::from_millis(1);
    for _ in 0..14 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                kill();
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_millis(500));
            }
            Err(e) => return Err(Error::io("remove cgroup", dir, e)),
        }
    }
    Err(Error::msg(format!(
        "remove cgroup {}: still busy after about 4 s; processes remain in it (see {}/cgroup.procs)",
        dir.display(),
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_forms() {
        let own = Path::new("/user.slice/me");
        let ps = |p: Option<&str>, systemd| PathSpec {
            cgroups_path: p.map(PathBuf::from),
            systemd,
        };
        assert_eq!(
            resolve_path(&ps(None, false), "c1", own).unwrap(),
            Path::new("/nano-sandbox/c1")
        );
        assert_eq!(
            resolve_path(&ps(Some("/a/b"), false), "c1", own).unwrap(),
            Path::new("/a/b")
        );
        assert_eq!(
            resolve_path(&ps(Some("x/y"), false), "c1", own).unwrap(),
            Path::new("/user.slice/me/x/y")
        );
        assert_eq!(
            resolve_path(&ps(Some("machine-test.slice:libpod:abc"), true), "c1", own).unwrap(),
            Path::new("/machine.slice/machine-test.slice/libpod-abc.scope")
        );
        assert_eq!(
            resolve_path(&ps(Some(":nk:c9"), true), "c9", own).unwrap(),
            Path::new("/system.slice/nk-c9.scope")
        );
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-2,4").unwrap(), vec![0, 1, 2, 4]);
        assert!(parse_cpu_list("2-1").is_none());
        assert!(parse_cpu_list("a").is_none());
        assert!(parse_cpu_list("").is_none());
    }
}
