//! Cgroups: one manager trait, with a v1 manager (for legacy and hybrid
//! hosts: it drives the v1 hierarchies and uses the unified one for what v1
//! lacks) and a v2 manager. The lifecycle code only sees the trait, so adding
//! a controller or a layout never touches create, start or delete.
//!
//! Everything here takes paths (the cgroupfs mount points, the mountinfo text)
//! rather than assuming `/sys/fs/cgroup`, so the logic runs against a fake
//! tree in a temp directory in unit tests.

pub mod bpf;
pub mod devices;
pub mod layout;
pub mod oom;
pub mod stats;
pub mod v1;
pub mod v2;

use crate::error::{Error, FieldError, Result};
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};
use std::path::{Component, Path, PathBuf};

pub use layout::Layout;
pub use oom::{OomRead, OomWatcher};
pub use stats::Stats;

/// Where a container's cgroup goes when the config names none.
pub const DEFAULT_PARENT: &str = "/nano-sandbox";

/// The common interface of the v1 and v2 managers.
pub trait CgroupManager {
    /// Create the cgroup (and its parents). A cgroup that is already there
    /// is refused when any process is in it or below it; its existing
    /// sub-cgroups are recorded as not the container's (see `record`).
    fn create(&mut self) -> Result<()>;
    /// Write `res` into the cgroup. `update` is true for `nk-runtime update`
    /// (it enables checkBeforeUpdate and writes explicit "off" values).
    fn set(&self, res: &LinuxResources, update: bool) -> Result<()>;
    /// Move a process into the cgroup.
    fn add_process(&self, pid: i32) -> Result<()>;
    /// Every pid in the cgroup and in the sub-cgroups made after create
    /// (those that were there before are not the container's).
    fn pids(&self) -> Result<Vec<i32>>;
    /// Freeze or thaw every process.
    fn freeze(&self, frozen: bool) -> Result<()>;
    /// True when frozen.
    fn is_frozen(&self) -> bool;
    /// Current counters.
    fn stats(&self) -> Result<Stats>;
    /// Remove the cgroup and the sub-cgroups made after create, never those
    /// that were there before it. With `kill`, the container's processes
    /// still in them are killed first (no pid namespace of its own); without,
    /// removal only waits for them to go (the kernel kills a pid
    /// namespace's processes when its init dies).
    fn destroy(&self, kill: bool) -> Result<()>;
    /// The directories of this cgroup, per hierarchy ("" for the unified one).
    fn dirs(&self) -> Vec<(String, PathBuf)>;
    /// A record to keep in state.json, to rebuild the manager later.
    fn record(&self) -> CgroupRecord;

    /// A pollable source of OOM events, when the memory controller is there.
    fn oom_watcher(&self) -> Result<Option<OomWatcher>> {
        Ok(None)
    }

    /// Send `sig` to every process, as runc's `kill --all` does: freeze,
    /// signal, thaw, so no process forks past the signal. A cgroup that was
    /// paused stays paused, unless the signal is SIGKILL (a frozen v1 task
    /// cannot die). Returns how many processes were signalled.
    fn signal_all(&self, sig: i32) -> Result<usize> {
        let was_frozen = self.is_frozen();
        let froze = !was_frozen && self.freeze(true).is_ok();
        let pids = self.pids()?;
        for &p in &pids {
            // SAFETY: kill(2) to a pid listed in the container's cgroup.
            unsafe { libc::kill(p, sig) };
        }
        if froze || (was_frozen && sig == libc::SIGKILL) {
            self.freeze(false)?;
        }
        Ok(pids.len())
    }

    /// Files into which a process can write "0" to move itself into this
    /// cgroup (v1 `tasks` files). Moving oneself takes no global lock, while
    /// writing another pid into cgroup.procs waits for an RCU grace period
    /// (about 10 ms here): the child joins by itself when it can. Empty when
    /// the manager has a better way (v2: CLONE_INTO_CGROUP) or none.
    fn self_join_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// A cgroup2 directory to create the child in (clone3 with
    /// CLONE_INTO_CGROUP): no migration, so no global lock, afterwards.
    /// With [`CgroupManager::self_join_files`] for the v1 hierarchies, this
    /// is the whole join.
    fn clone_into_dir(&self) -> Option<PathBuf> {
        None
    }

    /// Whether the child is placed with CLONE_INTO_CGROUP, so that the
    /// cgroup must be made before the clone (known before it is made).
    fn joins_at_clone(&self) -> bool {
        self.clone_into_dir().is_some()
    }

    /// Open [`CgroupManager::clone_into_dir`] for clone3.
    fn clone_into_fd(&self) -> Option<std::os::fd::OwnedFd> {
        let d = self.clone_into_dir()?;
        nix::fcntl::open(
            &d,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()
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

/// Is `s` in systemd's `slice:prefix:name` form?
fn systemd_form(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 3 && (parts[0].is_empty() || parts[0].ends_with(".slice"))
}

/// Turn `linux.cgroupsPath` into a cgroup path (as in /proc/self/cgroup).
///
/// * absolute: used as is;
/// * `slice:prefix:name` (with `--systemd-cgroup`, or without it when the
///   first part names a slice): mapped to `/<slice path>/<prefix>-<name>.scope`
///   on cgroupfs, the path systemd itself would give the scope;
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
    if ps.systemd {
        if !systemd_form(&s) {
            return Err(Error::msg(format!(
                "cgroupsPath {s:?}: with --systemd-cgroup it must have the form slice:prefix:name (for example system.slice:nk:{id})"
            )));
        }
        return systemd_to_fs(&s, id);
    }
    if !s.starts_with('/') && systemd_form(&s) {
        return systemd_to_fs(&s, id);
    }
    let path = if p.is_absolute() {
        p.clone()
    } else {
        own.join(p)
    };
    if path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::CurDir))
    {
        return Err(Error::msg(format!(
            "cgroupsPath {s:?} resolves to the root cgroup ({}): the container would share it with every process of the host, and delete would signal them all; name a cgroup of its own such as /nano-sandbox/{id}",
            path.display()
        )));
    }
    Ok(path)
}

/// Map the systemd form `slice:prefix:name` to a cgroupfs path, as systemd
/// names units: `a-b.slice` nests as `/a.slice/a-b.slice`, and the unit is
/// `<prefix>-<name>.scope` (or `<name>` itself when it is a slice).
pub fn systemd_to_fs(s: &str, id: &str) -> Result<PathBuf> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 3 {
        return Err(Error::msg(format!(
            "cgroupsPath {s:?}: expected slice:prefix:name"
        )));
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
                return Err(Error::msg(format!(
                    "cgroupsPath {s:?}: invalid slice name {slice:?}"
                )));
            }
            if i > 0 {
                acc.push('-');
            }
            acc.push_str(comp);
            path.push(format!("{acc}.slice"));
        }
    }
    let name = if name.is_empty() { id } else { name };
    if name.contains('/') || prefix.contains('/') {
        return Err(Error::msg(format!(
            "cgroupsPath {s:?}: prefix and name must not contain '/'"
        )));
    }
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    path.push(unit);
    Ok(path)
}

/// Does this memory section ask for anything?
pub fn memory_requested(m: &LinuxMemory) -> bool {
    let nz = |v: Option<i64>| v.is_some_and(|v| v != 0);
    nz(m.limit())
        || nz(m.reservation())
        || nz(m.swap())
        || nz(m.kernel_tcp())
        || m.swappiness().is_some()
        || m.disable_oom_killer() == Some(true)
}

/// kernel memory limits went away in Linux 5.16 (the v1 file stays but
/// refuses values; v2 never had one): say so instead of passing silently.
pub fn warn_kernel_memory(m: &LinuxMemory) {
    if let Some(k) = m.kernel().filter(|k| *k != 0) {
        crate::logging::warn(|| {
            format!("linux.resources.memory.kernel={k} ignored: kernel memory limits were removed from Linux (5.16+); kernel memory is counted in the memory limit")
        });
    }
}

/// Does this cpu section ask for the cpu controller?
pub fn cpu_requested(c: &LinuxCpu) -> bool {
    c.shares().is_some_and(|v| v != 0)
        || c.quota().is_some_and(|v| v != 0)
        || c.period().is_some_and(|v| v != 0)
        || c.burst().is_some()
        || c.idle().is_some()
        || c.realtime_period().is_some_and(|v| v != 0)
        || c.realtime_runtime().is_some_and(|v| v != 0)
}

/// Does this cpu section ask for the cpuset controller?
pub fn cpuset_requested(c: &LinuxCpu) -> bool {
    c.cpus().as_ref().is_some_and(|s| !s.is_empty())
        || c.mems().as_ref().is_some_and(|s| !s.is_empty())
}

/// Check resource values before anything is created. Errors are
/// (field below linux.resources, reason).
pub fn validate_resources(res: &LinuxResources) -> crate::error::Checked {
    if let Some(m) = res.memory() {
        for (f, v) in [
            ("memory.limit", m.limit()),
            ("memory.reservation", m.reservation()),
            ("memory.swap", m.swap()),
            ("memory.kernel", m.kernel()),
            ("memory.kernelTCP", m.kernel_tcp()),
        ] {
            if let Some(v) = v {
                if v < -1 {
                    return Err(FieldError::of(
                        f.into(),
                        format!("{v} is negative (use -1 for unlimited)"),
                    ));
                }
            }
        }
        if let (Some(l), Some(s)) = (m.limit(), m.swap()) {
            if l > 0 && s > 0 && s < l {
                return Err(FieldError::of(
                    "memory.swap".into(),
                    format!("{s} is below memory.limit {l}: swap is the limit of memory plus swap"),
                ));
            }
        }
        if let Some(sw) = m.swappiness() {
            if sw > 100 {
                return Err(FieldError::of(
                    "memory.swappiness".into(),
                    format!("{sw} is above 100 (the range is 0 to 100)"),
                ));
            }
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(q) = c.quota() {
            if q < -1 || (q > 0 && q < 1000) {
                return Err(FieldError::of(
                    "cpu.quota".into(),
                    format!("{q}: must be -1 (unlimited) or at least 1000 microseconds"),
                ));
            }
        }
        if let Some(p) = c.period() {
            if p != 0 && !(1000..=1_000_000).contains(&p) {
                return Err(FieldError::of(
                    "cpu.period".into(),
                    format!("{p}: must be between 1000 and 1000000 microseconds"),
                ));
            }
        }
        if let Some(i) = c.idle() {
            if i != 0 && i != 1 {
                return Err(FieldError::of(
                    "cpu.idle".into(),
                    format!("{i}: must be 0 or 1"),
                ));
            }
        }
        if let Some(r) = c.realtime_runtime() {
            if r < -1 {
                return Err(FieldError::of(
                    "cpu.realtimeRuntime".into(),
                    format!("{r} is negative (use -1 for unlimited)"),
                ));
            }
        }
        for (f, v) in [("cpu.cpus", c.cpus()), ("cpu.mems", c.mems())] {
            if let Some(v) = v {
                if !v.is_empty() && parse_cpu_list(v).is_none() {
                    return Err(FieldError::of(
                        f.into(),
                        format!("{v:?} is not a list such as 0-2,4"),
                    ));
                }
            }
        }
    }
    if let Some(p) = res.pids() {
        if p.limit() < -1 {
            return Err(FieldError::of(
                "pids.limit".into(),
                format!("{} is negative (use -1 for unlimited)", p.limit()),
            ));
        }
    }
    if let Some(b) = res.block_io() {
        let w = |f: String, v: Option<u16>| match v {
            Some(v) if v != 0 && !(10..=1000).contains(&v) => Err(FieldError::of(
                f,
                format!("{v}: a weight is between 10 and 1000"),
            )),
            _ => Ok(()),
        };
        w("blockIO.weight".into(), b.weight())?;
        w("blockIO.leafWeight".into(), b.leaf_weight())?;
        for (i, d) in b.weight_device().iter().flatten().enumerate() {
            w(format!("blockIO.weightDevice[{i}].weight"), d.weight())?;
            w(
                format!("blockIO.weightDevice[{i}].leafWeight"),
                d.leaf_weight(),
            )?;
            if d.major() < 0 || d.minor() < 0 {
                return Err(FieldError::of(
                    format!("blockIO.weightDevice[{i}]"),
                    "major and minor must not be negative".into(),
                ));
            }
        }
        for (name, list) in [
            ("throttleReadBpsDevice", b.throttle_read_bps_device()),
            ("throttleWriteBpsDevice", b.throttle_write_bps_device()),
            ("throttleReadIOPSDevice", b.throttle_read_iops_device()),
            ("throttleWriteIOPSDevice", b.throttle_write_iops_device()),
        ] {
            for (i, d) in list.iter().flatten().enumerate() {
                if d.major() < 0 || d.minor() < 0 {
                    return Err(FieldError::of(
                        format!("blockIO.{name}[{i}]"),
                        "major and minor must not be negative".into(),
                    ));
                }
            }
        }
    }
    for (i, h) in res.hugepage_limits().iter().flatten().enumerate() {
        if !valid_page_size(h.page_size()) {
            return Err(FieldError::of(
                format!("hugepageLimits[{i}].pageSize"),
                format!("{:?} is not a size such as 2MB or 1GB", h.page_size()),
            ));
        }
        if h.limit() < -1 {
            return Err(FieldError::of(
                format!("hugepageLimits[{i}].limit"),
                format!("{} is negative", h.limit()),
            ));
        }
    }
    if let Some(list) = res.devices() {
        let rules =
            devices::from_oci(list).map_err(|e| FieldError::new("devices", e.to_string()))?;
        devices::Emulator::from_rules(&rules)
            .map_err(|e| FieldError::new("devices", e.to_string()))?;
    }
    if let Some(n) = res.network() {
        for (i, p) in n.priorities().iter().flatten().enumerate() {
            if p.name().is_empty() || p.name().contains(char::is_whitespace) {
                return Err(FieldError::of(
                    format!("network.priorities[{i}].name"),
                    format!("{:?} is not an interface name", p.name()),
                ));
            }
        }
    }
    if let Some(r) = res.rdma() {
        for dev in r.keys() {
            if dev.is_empty() || dev.contains(char::is_whitespace) {
                return Err(FieldError::of(
                    format!("rdma[{dev:?}]"),
                    "not an RDMA device name".into(),
                ));
            }
        }
    }
    if let Some(u) = res.unified() {
        for k in u.keys() {
            if k.contains('/') || k.starts_with('.') || !k.contains('.') {
                return Err(FieldError::of(
                    format!("unified[{k:?}]"),
                    "a key is a cgroup file name such as memory.high".into(),
                ));
            }
        }
    }
    Ok(())
}

/// `2MB`, `64KB`, `1GB`: digits then K, M, G or T, then B.
fn valid_page_size(s: &str) -> bool {
    let Some(num) = s
        .strip_suffix("KB")
        .or_else(|| s.strip_suffix("MB"))
        .or_else(|| s.strip_suffix("GB"))
        .or_else(|| s.strip_suffix("TB"))
    else {
        return false;
    };
    !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit())
}

pub use crate::linux::procattr::parse_cpu_list;

/// Options for building a manager.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where cgroup hierarchies are mounted (normally /sys/fs/cgroup).
    pub mount_root: PathBuf,
    /// /proc/self/mountinfo text; None means read the live file.
    pub mountinfo: Option<String>,
    /// /proc/self/cgroup text; None means read the live file.
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
        None => crate::linux::fs::read_proc("/proc/self/mountinfo")
            .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?,
    };
    let pc = match &opts.proc_cgroup {
        Some(s) => s.clone(),
        None => crate::linux::fs::read_proc("/proc/self/cgroup").unwrap_or_default(),
    };
    let layout = layout::detect_host(&mi, &opts.mount_root);
    let m: Box<dyn CgroupManager> = match layout.kind {
        layout::Kind::Unified => Box::new(v2::Manager::new(&layout, ps, id, &pc)?),
        layout::Kind::Legacy | layout::Kind::Hybrid => {
            Box::new(v1::Manager::new(&layout, ps, id, &pc)?)
        }
        layout::Kind::None => {
            return Err(Error::Unsupported(
                "no cgroup filesystem is mounted; mount cgroup2 on /sys/fs/cgroup".into(),
            ))
        }
    };
    if let Some(p) = ps.cgroups_path.as_ref().map(|p| p.to_string_lossy()) {
        if ps.systemd || (!p.starts_with('/') && systemd_form(&p)) {
            crate::logging::info(|| {
                format!(
                    "cgroupsPath {p:?} is in systemd's slice:prefix:name form: nk-runtime drives cgroupfs itself (no systemd scope is created) and uses {}",
                    resolve_path(ps, id, Path::new("/")).map(|p| p.display().to_string()).unwrap_or_default()
                )
            });
        }
    }
    Ok(m)
}

/// The cgroup manager as state.json keeps it: which hierarchy and its
/// paths. On disk it is `{"kind":"v1","v1":{..}}` or `{"kind":"v2","v2":{..}}`,
/// the shape records had before they were typed, so a container created by
/// an older nk-runtime is still managed (paused, killed, deleted) by this one.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RecordWire", into = "RecordWire")]
pub enum CgroupRecord {
    V1(v1::Manager),
    V2(v2::Manager),
}

/// The on-disk shape of [`CgroupRecord`].
#[derive(serde::Serialize, serde::Deserialize)]
struct RecordWire {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v1: Option<v1::Manager>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v2: Option<v2::Manager>,
}

impl TryFrom<RecordWire> for CgroupRecord {
    type Error = String;
    fn try_from(w: RecordWire) -> std::result::Result<Self, String> {
        match (w.kind.as_str(), w.v1, w.v2) {
            ("v1", Some(m), _) => Ok(CgroupRecord::V1(m)),
            ("v2", _, Some(m)) => Ok(CgroupRecord::V2(m)),
            (k, ..) => Err(format!(
                "cgroup record of kind {k:?} without its \"{k}\" part"
            )),
        }
    }
}

impl From<CgroupRecord> for RecordWire {
    fn from(r: CgroupRecord) -> Self {
        match r {
            CgroupRecord::V1(m) => RecordWire {
                kind: "v1".into(),
                v1: Some(m),
                v2: None,
            },
            CgroupRecord::V2(m) => RecordWire {
                kind: "v2".into(),
                v1: None,
                v2: Some(m),
            },
        }
    }
}

impl CgroupRecord {
    /// The manager this record describes.
    pub fn manager(&self) -> Box<dyn CgroupManager> {
        match self {
            CgroupRecord::V1(m) => Box::new(m.clone()),
            CgroupRecord::V2(m) => Box::new(m.clone()),
        }
    }

    /// state.json's `cgroup` field: absent (null) in a record without one.
    /// A record this version cannot read counts as none, as before records
    /// were typed, so the rest of the state (and `delete`) still works.
    pub fn deserialize_lenient<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<CgroupRecord>, D::Error> {
        let v = <serde_json::Value as serde::Deserialize>::deserialize(d)?;
        Ok(serde_json::from_value(v).ok())
    }
}

/// Rebuild the manager from the record kept in state.json, if there is one.
pub fn from_record(r: &Option<CgroupRecord>) -> Option<Box<dyn CgroupManager>> {
    r.as_ref().map(CgroupRecord::manager)
}

/// Write one cgroup file, naming the file and value on failure.
pub fn write_file(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    crate::explain::step(&crate::explain::catalog::CGROUP_WRITE, || {
        format!("{} = {value}", p.display())
    });
    write_quiet(&p, value)
}

/// Write one cgroup file whose step the caller narrates.
pub fn write_unnarrated(dir: &Path, file: &str, value: &str) -> Result<()> {
    write_quiet(&dir.join(file), value)
}

fn write_quiet(p: &Path, value: &str) -> Result<()> {
    std::fs::write(p, value).map_err(|e| write_error(p, value, e))
}

/// A cgroup file open for writing, for several values in a row (the kernel
/// parses each write(2) as one entry, as devices.allow's rules): one open
/// for all of them instead of one per value.
pub struct Writer {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
}

impl Writer {
    /// Nothing is opened before the first write (whose error names it).
    pub fn new(dir: &Path, file: &str) -> Writer {
        Writer {
            path: dir.join(file),
            file: None,
        }
    }

    /// Is this the writer of `dir/file`?
    pub fn is(&self, dir: &Path, file: &str) -> bool {
        self.path.parent() == Some(dir) && self.path.file_name() == Some(file.as_ref())
    }

    /// One write(2) of `value`, with [`write_file`]'s error.
    pub fn write(&mut self, value: &str) -> Result<()> {
        use std::io::Write;
        let r = match &mut self.file {
            Some(f) => f.write_all(value.as_bytes()),
            None => std::fs::File::create(&self.path).and_then(|mut f| {
                f.write_all(value.as_bytes())?;
                self.file = Some(f);
                Ok(())
            }),
        };
        r.map_err(|e| write_error(&self.path, value, e))
    }
}

fn write_error(p: &Path, value: &str, e: std::io::Error) -> Error {
    {
        let hint = match e.raw_os_error() {
            Some(libc::ENOENT) if p.parent().is_some_and(|d| !d.exists()) => {
                " (the cgroup directory itself is gone: it was removed while the container ran; `delete --force` still cleans up)"
            }
            Some(libc::ENOENT) => " (this kernel or cgroup has no such file)",
            Some(libc::EINVAL) => " (the kernel refused the value)",
            Some(libc::EBUSY) => " (busy: the cgroup has processes or children)",
            _ => "",
        };
        Error::msg(format!(
            "cgroup: write {value:?} to {}: {e}{hint}",
            p.display()
        ))
    }
}

/// Write a multi-line value one line per write(2), as the kernel parses
/// one entry per write for files such as io.max.
pub fn write_lines(dir: &Path, file: &str, value: &str) -> Result<()> {
    for line in value.lines().filter(|l| !l.trim().is_empty()) {
        write_file(dir, file, line)?;
    }
    Ok(())
}

/// Read a cgroup file as trimmed text.
pub fn read_file(dir: &Path, file: &str) -> Option<String> {
    // Without a statx first: a cgroup file's size reads as 0 (or a page).
    crate::linux::fs::read_proc(dir.join(file))
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

/// Every directory below `d`, deepest first (child cgroups the container made).
pub fn subdirs_deepest_first(d: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let p = e.path();
                    walk(&p, out);
                    out.push(p);
                }
            }
        }
    }
    let mut v = Vec::new();
    walk(d, &mut v);
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

/// The sub-cgroups of `d` the container owns, deepest first: all of them but
/// the `foreign` ones (there before create) and what is below those.
pub fn own_subdirs(d: &Path, foreign: &[PathBuf]) -> Vec<PathBuf> {
    subdirs_deepest_first(d)
        .into_iter()
        .filter(|p| !foreign.iter().any(|f| p.starts_with(f)))
        .collect()
}

/// Pids in `d` and in the sub-cgroups the container owns.
pub fn own_procs(d: &Path, foreign: &[PathBuf]) -> Vec<i32> {
    let mut out = read_procs(&d.join("cgroup.procs"));
    for s in own_subdirs(d, foreign) {
        out.extend(read_procs(&s.join("cgroup.procs")));
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// What is at a container's cgroup directory before create: the
/// sub-cgroups already there (never the container's: delete leaves them),
/// and a refusal when any process is in it or below, as runc 1.2 refuses
/// ("container's cgroup is not empty"), since delete would kill them.
pub fn survey(dir: &Path, cg: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let pids = procs_recursive(dir);
    if !pids.is_empty() {
        let shown: Vec<String> = pids.iter().take(8).map(|p| p.to_string()).collect();
        return Err(Error::msg(format!(
            "cgroupsPath {}: the cgroup {} already has {} process(es) in it or below it (pids {}{}): a container needs a cgroup of its own, since delete kills what is in it; choose another cgroupsPath, or move those processes out",
            cg.display(),
            dir.display(),
            pids.len(),
            shown.join(" "),
            if pids.len() > shown.len() { " ..." } else { "" }
        )));
    }
    Ok(subdirs_deepest_first(dir))
}

/// Make a container's cgroup directory `dir` (and its missing parents)
/// the cheap way round: mkdir first, and only what was there already
/// (EEXIST) is surveyed. `Ok(None)`: made now, so empty and with no
/// sub-cgroup; `Ok(Some(foreign))`: it was there, with [`survey`]'s answer.
pub fn make_or_survey(dir: &Path, cg: &Path) -> Result<Option<Vec<PathBuf>>> {
    let err =
        |d: &Path, e: std::io::Error| Error::msg(format!("cgroup: create {}: {e}", d.display()));
    match std::fs::create_dir(dir) {
        Ok(()) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A parent is missing (the first container under it).
            if let Some(p) = dir.parent() {
                std::fs::create_dir_all(p).map_err(|e| err(p, e))?;
            }
            match std::fs::create_dir(dir) {
                Ok(()) => return Ok(None),
                // Made meanwhile by someone else: surveyed as theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(err(dir, e)),
            }
        }
        Err(e) => return Err(err(dir, e)),
    }
    if !dir.is_dir() {
        return Err(err(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "it exists and is not a directory",
            ),
        ));
    }
    survey(dir, cg).map(Some)
}

/// Remove `d` and the sub-cgroups the container owns, deepest first.
/// Directories holding a foreign sub-cgroup stay (rmdir would fail, and
/// the foreign one is not ours to remove): logged, not an error.
pub fn remove_own(
    d: &Path,
    foreign: &[PathBuf],
    kill: &dyn Fn(),
    deadline: std::time::Instant,
) -> Result<()> {
    // The usual case first: no sub-cgroup was there before create, and none
    // was made since, so one rmdir does it, without listing the directory
    // (the kernel refuses, EBUSY, a cgroup that has children or tasks,
    // which then go the long way below).
    if foreign.is_empty() {
        match std::fs::remove_dir(d) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) => {}
        }
    }
    let mut results = Vec::new();
    for s in own_subdirs(d, foreign)
        .iter()
        .chain(std::iter::once(&d.to_path_buf()))
    {
        if let Some(f) = foreign.iter().find(|f| f.starts_with(s)) {
            crate::logging::warn(|| {
                format!(
                    "cgroup {} left in place: it holds {}, a cgroup that was there before the container was created",
                    s.display(),
                    f.display()
                )
            });
            continue;
        }
        results.push(rmdir_retry(s, kill, deadline));
    }
    first_err(results)
}

/// Pids in `d`'s cgroup.procs and in every cgroup below it.
pub fn procs_recursive(d: &Path) -> Vec<i32> {
    let mut out = read_procs(&d.join("cgroup.procs"));
    for s in subdirs_deepest_first(d) {
        out.extend(read_procs(&s.join("cgroup.procs")));
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// How long delete waits for a cgroup to empty before it gives up.
pub const RMDIR_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// Remove a cgroup directory, retrying until `deadline` while the kernel
/// still counts dying tasks (rmdir returns EBUSY for a moment after the
/// last process exits); `kill` runs between attempts to deal with
/// processes that are left.
pub fn rmdir_retry(dir: &Path, kill: &dyn Fn(), deadline: std::time::Instant) -> Result<()> {
    rmdir_retry_with(dir, kill, &|p| std::fs::remove_dir(p), deadline)
}

/// [`rmdir_retry`] with the removal given (for tests).
pub fn rmdir_retry_with(
    dir: &Path,
    kill: &dyn Fn(),
    remove: &dyn Fn(&Path) -> std::io::Result<()>,
    deadline: std::time::Instant,
) -> Result<()> {
    let start = std::time::Instant::now();
    let mut delay = std::time::Duration::from_millis(1);
    loop {
        match remove(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if std::time::Instant::now() >= deadline {
                    let left = read_procs(&dir.join("cgroup.procs"));
                    return Err(Error::msg(format!(
                        "remove cgroup {}: still busy after {:.1} s of killing and retrying; {} (see {}/cgroup.procs)",
                        dir.display(),
                        start.elapsed().as_secs_f64(),
                        if left.is_empty() {
                            "no process is listed, so the kernel is still tearing down exited tasks".to_string()
                        } else {
                            format!("processes {left:?} are left in it (in uninterruptible sleep, or frozen)")
                        },
                        dir.display()
                    )));
                }
                kill();
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_millis(200));
            }
            Err(e) => return Err(Error::io("remove cgroup", dir, e)),
        }
    }
}

/// The first error of several clean-up steps.
fn first_err(results: impl IntoIterator<Item = Result<()>>) -> Result<()> {
    let mut first = None;
    for r in results {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// An error for a resource whose controller is missing.
fn missing(field: &str, ctrl: &str, where_: &str) -> Error {
    Error::Unsupported(format!(
        "linux.resources.{field}: the {ctrl} cgroup controller is not available ({where_})"
    ))
}

/// linux.cgroupsPath (no `..`) and linux.resources (values each
/// controller takes).
pub fn check(linux: &oci_spec::runtime::Linux) -> crate::error::Checked {
    if let Some(cg) = linux.cgroups_path() {
        if crate::linux::fs::has_dotdot(cg) {
            return Err(FieldError::new(
                "linux.cgroupsPath",
                format!("{} must not contain '..'", cg.display()),
            ));
        }
    }
    match linux.resources() {
        Some(res) => validate_resources(res).map_err(|e| e.under("linux.resources")),
        None => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! A fake cgroupfs in a temp directory: directories and plain files.
    use std::path::{Path, PathBuf};

    /// A temp tree removed on drop.
    pub struct Tree(pub PathBuf);

    impl Tree {
        pub fn new(tag: &str) -> Tree {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "nk-cgt-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Tree(p)
        }

        /// Create files (with contents) under `dir`.
        pub fn files(&self, dir: &Path, files: &[(&str, &str)]) {
            std::fs::create_dir_all(dir).unwrap();
            for (f, v) in files {
                std::fs::write(dir.join(f), v).unwrap();
            }
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Read a file as trimmed text ("" when missing).
    pub fn rd(dir: &Path, f: &str) -> String {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_that_resolves_to_the_root_cgroup_is_refused() {
        let ps = |p: &str| PathSpec {
            cgroups_path: Some(PathBuf::from(p)),
            systemd: false,
        };
        for p in ["/", "//", "/.", "/./."] {
            let e = resolve_path(&ps(p), "c1", Path::new("/me"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("root cgroup"), "{p}: {e}");
        }
        // Relative to a runtime that sits in the root cgroup.
        assert!(resolve_path(&ps("."), "c1", Path::new("/")).is_err());
        assert!(resolve_path(&ps("./"), "c1", Path::new("/")).is_err());
    }

    #[test]
    fn make_or_survey_makes_first_and_surveys_only_what_was_there() {
        let t = testutil::Tree::new("mkfirst");
        let cg = Path::new("/nano-sandbox/c1");
        // New, with its missing parent: the container's, nothing surveyed.
        let d = t.0.join("nano-sandbox/c1");
        assert_eq!(make_or_survey(&d, cg).unwrap(), None);
        assert!(d.is_dir());
        // There already, with a sub-cgroup: that one is foreign.
        t.files(&d.join("theirs"), &[("cgroup.procs", "")]);
        t.files(&d, &[("cgroup.procs", "")]);
        assert_eq!(
            make_or_survey(&d, cg).unwrap(),
            Some(vec![d.join("theirs")])
        );
        // With a process in it: refused, as survey refuses.
        std::fs::write(d.join("theirs/cgroup.procs"), "9\n").unwrap();
        let e = make_or_survey(&d, cg).unwrap_err().to_string();
        assert!(e.contains("already has 1 process(es)"), "{e}");
        // A file in the way: named.
        let f = t.0.join("nano-sandbox/file");
        std::fs::write(&f, "").unwrap();
        let e = make_or_survey(&f, cg).unwrap_err().to_string();
        assert!(e.contains("not a directory") && e.contains("file"), "{e}");
    }

    #[test]
    fn sub_cgroups_there_before_create_are_not_the_containers() {
        let t = testutil::Tree::new("foreign");
        let d = t.0.join("ctr");
        t.files(&d.join("theirs/deeper"), &[("cgroup.procs", "")]);
        t.files(&d, &[("cgroup.procs", "")]);
        let foreign = survey(&d, Path::new("/ctr")).unwrap();
        assert_eq!(foreign.len(), 2);
        // Made after create (by the container): its own.
        t.files(&d.join("mine"), &[("cgroup.procs", "7\n")]);
        std::fs::write(d.join("theirs/cgroup.procs"), "9\n").unwrap();
        assert_eq!(own_procs(&d, &foreign), vec![7]);
        assert_eq!(own_subdirs(&d, &foreign), vec![d.join("mine")]);
        // A process already in the cgroup (or below) refuses it.
        let e = survey(&d, Path::new("/ctr")).unwrap_err().to_string();
        assert!(
            e.contains("already has 2 process(es)") && e.contains("7 9"),
            "{e}"
        );
        // Removal takes what the container made and leaves the rest (a
        // plain directory stands in for a cgroup: remove_dir fails on the
        // files in it, so only the empty ones are gone).
        for f in [d.join("mine/cgroup.procs"), d.join("cgroup.procs")] {
            std::fs::remove_file(f).unwrap();
        }
        let dl = std::time::Instant::now() + std::time::Duration::from_secs(1);
        remove_own(&d, &foreign, &|| {}, dl).unwrap();
        assert!(!d.join("mine").exists());
        assert!(d.join("theirs/deeper").is_dir());
        assert!(
            d.is_dir(),
            "the container's directory holds a foreign cgroup"
        );
    }

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
        assert_eq!(
            resolve_path(&ps(Some("-.slice::x"), true), "c9", own).unwrap(),
            Path::new("/x.scope")
        );
        assert_eq!(
            resolve_path(&ps(Some("system.slice:nk:"), true), "c9", own).unwrap(),
            Path::new("/system.slice/nk-c9.scope")
        );
        // Without the flag, the form is recognised only with a slice name.
        assert_eq!(
            resolve_path(&ps(Some("user.slice:p:n"), false), "c1", own).unwrap(),
            Path::new("/user.slice/p-n.scope")
        );
        assert_eq!(
            resolve_path(&ps(Some("a:b:c"), false), "c1", own).unwrap(),
            Path::new("/user.slice/me/a:b:c")
        );
        // With the flag, anything else is an error that shows the form.
        let e = resolve_path(&ps(Some("/abs/path"), true), "c1", own)
            .unwrap_err()
            .to_string();
        assert!(e.contains("slice:prefix:name"), "{e}");
        assert!(resolve_path(&ps(Some("bad:p:n"), true), "c1", own).is_err());
        assert!(resolve_path(&ps(Some("a--b.slice:p:n"), true), "c1", own).is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-2,4").unwrap(), vec![0, 1, 2, 4]);
        assert!(parse_cpu_list("2-1").is_none());
        assert!(parse_cpu_list("a").is_none());
        assert!(parse_cpu_list("").is_none());
    }

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn validation_names_the_field() {
        let bad = [
            (r#"{"memory":{"limit":-5}}"#, "memory.limit"),
            (r#"{"memory":{"limit":200,"swap":100}}"#, "memory.swap"),
            (r#"{"memory":{"swappiness":101}}"#, "memory.swappiness"),
            (r#"{"cpu":{"quota":10}}"#, "cpu.quota"),
            (r#"{"cpu":{"period":10}}"#, "cpu.period"),
            (r#"{"cpu":{"idle":3}}"#, "cpu.idle"),
            (r#"{"cpu":{"cpus":"1-0"}}"#, "cpu.cpus"),
            (r#"{"pids":{"limit":-2}}"#, "pids.limit"),
            (r#"{"blockIO":{"weight":5}}"#, "blockIO.weight"),
            (
                r#"{"blockIO":{"weightDevice":[{"major":8,"minor":0,"weight":2000}]}}"#,
                "blockIO.weightDevice[0].weight",
            ),
            (
                r#"{"blockIO":{"throttleReadBpsDevice":[{"major":-1,"minor":0,"rate":1}]}}"#,
                "blockIO.throttleReadBpsDevice[0]",
            ),
            (
                r#"{"hugepageLimits":[{"pageSize":"2M","limit":1}]}"#,
                "hugepageLimits[0].pageSize",
            ),
            (
                r#"{"devices":[{"allow":true,"type":"c","access":"x"}]}"#,
                "devices",
            ),
            (
                r#"{"network":{"priorities":[{"name":"","priority":1}]}}"#,
                "network.priorities[0].name",
            ),
            (r#"{"unified":{"../x":"1"}}"#, "unified"),
        ];
        for (j, field) in bad {
            let FieldError {
                field: f,
                reason: why,
            } = validate_resources(&res(j)).unwrap_err();
            assert!(f.starts_with(field), "{j}: got field {f} ({why})");
        }
        validate_resources(&res(
            r#"{"memory":{"limit":-1,"swap":-1,"swappiness":0},"cpu":{"period":0,"quota":-1,"idle":1},
                "pids":{"limit":-1},"blockIO":{"weight":500},"hugepageLimits":[{"pageSize":"1GB","limit":-1}],
                "unified":{"memory.high":"1G"}}"#,
        ))
        .unwrap();
    }

    #[test]
    fn rmdir_retry_gives_up_with_a_clear_error() {
        let calls = std::cell::Cell::new(0);
        let busy = |_: &Path| -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(libc::EBUSY))
        };
        let e = rmdir_retry_with(
            Path::new("/nonexistent/cg"),
            &|| calls.set(calls.get() + 1),
            &busy,
            std::time::Instant::now() + std::time::Duration::from_millis(50),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("still busy after"), "{e}");
        assert!(e.contains("/nonexistent/cg/cgroup.procs"), "{e}");
        assert!(calls.get() > 1, "the kill callback runs between attempts");
        // Succeeds once the cgroup empties.
        let n = std::cell::Cell::new(0);
        let later = |_: &Path| -> std::io::Result<()> {
            n.set(n.get() + 1);
            if n.get() < 3 {
                Err(std::io::Error::from_raw_os_error(libc::EBUSY))
            } else {
                Ok(())
            }
        };
        rmdir_retry_with(
            Path::new("/x"),
            &|| {},
            &later,
            std::time::Instant::now() + std::time::Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(n.get(), 3);
    }
}
