//! The state directory: one subdirectory of `--root` per container, holding
//! `state.json` (this runtime's record), `config.json` (the bundle's config as
//! it was at create) and, between create and start, `exec.fifo`.
//!
//! Ids are validated so they never escape the root. A new container directory
//! is prepared under a private name and renamed into place with
//! RENAME_NOREPLACE while its lock is held: of two creates of one id exactly one
//! wins, and the loser never sees a half-written directory. Status is derived
//! from the init's pid and start time, not stored, so it is never stale.

use crate::error::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where state lives when `--root` is not given (root user).
pub const DEFAULT_ROOT: &str = "/run/nano-sandbox";

/// The runtime-spec version reported in state output.
pub use crate::OCI_VERSION;

/// File names inside a container's directory.
pub const STATE_FILE: &str = "state.json";
pub const CONFIG_FILE: &str = "config.json";
pub const FIFO_FILE: &str = "exec.fifo";

/// The default state root: `/run/nano-sandbox` for root, otherwise
/// `$XDG_RUNTIME_DIR/nano-sandbox` (as runc does for rootless), or, with no
/// XDG_RUNTIME_DIR (su, cron, CI), `/tmp/nano-sandbox-<uid>`. Another user
/// can create that name first: [`Store`] refuses a root it does not own.
pub fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from(DEFAULT_ROOT);
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(x) if !x.is_empty() => PathBuf::from(x).join("nano-sandbox"),
        _ => PathBuf::from(format!(
            "/tmp/nano-sandbox-{}",
            nix::unistd::geteuid().as_raw()
        )),
    }
}

/// Refuse ids that are empty, too long, or could name something outside the
/// state root. The accepted alphabet is runc's: letters, digits, `_ + - .`.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if id == "." || id == ".." {
        return bad("'.' and '..' are not ids");
    }
    if id.starts_with('.') {
        return bad("must not start with '.'");
    }
    if id.contains('/') {
        return bad("must not contain '/'");
    }
    if !id
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'+' | b'-' | b'.'))
    {
        return bad("only letters, digits and _ + - . are allowed");
    }
    Ok(())
}

/// How far create got; persisted so a killed create can be recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// create is running (or was killed while running).
    Creating,
    /// The init is parked at the exec barrier, or later.
    Created,
}

/// The status reported by `state` and `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    /// The lower-case word used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// This runtime's record of one container.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ContainerState {
    pub id: String,
    /// The init's pid (the VM monitor's in VM mode); 0 before clone.
    pub pid: i32,
    /// The init's start time (field 22 of /proc/pid/stat), against pid reuse.
    pub pid_start: u64,
    /// The create process and its start time, to recognise a killed create.
    pub creator_pid: i32,
    pub creator_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub phase: Option<Phase>,
    /// The cgroup manager's record (layout and paths), as it wrote it.
    #[serde(
        default,
        deserialize_with = "crate::cgroups::CgroupRecord::deserialize_lenient"
    )]
    pub cgroup: Option<crate::cgroups::CgroupRecord>,
    /// How the container is isolated (`mode` and, for a VM, `extra` in
    /// the JSON, as earlier versions wrote them).
    #[serde(flatten)]
    pub mode: Mode,
    /// Created by a rootless caller.
    #[serde(default)]
    pub rootless: bool,
    /// Created with --no-new-keyring (exec processes then skip it too).
    #[serde(default)]
    pub no_new_keyring: bool,
    /// The uid of the caller that created it.
    #[serde(default)]
    pub owner_uid: u32,
    /// The namespaces linux.namespaces creates or joins, as the init was in
    /// them at create: exec joins these and only these. None in a record
    /// written before they were recorded (exec then takes the types from
    /// config.json).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<crate::linux::namespaces::NsIdentity>>,
    /// The container has a pid namespace of its own (a new one, not joined
    /// by path): delete then kills its init and the kernel the rest. None
    /// in a record written before it was recorded (delete reads config.json).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_pidns: Option<bool>,
    /// Set when the container has no mount namespace: which mounts under
    /// the rootfs are its own, for delete to detach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_mounts: Option<crate::linux::hostmounts::HostMounts>,
}

/// How a container is isolated. The record keeps earlier versions' JSON
/// shape: `"mode": "container"` (or no `mode` at all), or `"mode": "vm"`
/// with the VM's data in `"extra"`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "ModeJson", into = "ModeJson")]
pub enum Mode {
    /// Namespaces and cgroups on this host's kernel.
    #[default]
    Container,
    /// A QEMU microVM: the recorded pid is the VM monitor's.
    Vm(VmRecord),
}

/// What the VM backend keeps about its VM. All zero while create runs
/// (the VM does not exist yet).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VmRecord {
    /// QEMU's pid and start time, to kill the right process at delete.
    pub qemu_pid: i32,
    pub qemu_start: u64,
    /// The pid of the container's init inside the guest.
    pub guest_pid: i32,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// "kvm" or "tcg".
    pub accel: String,
    /// QEMU start to the agent's ready message.
    pub boot_ms: u64,
    /// The guest kernel's release.
    pub kernel: String,
    /// Set when the container runs in another container's VM (a pod's):
    /// that container's id. Its QEMU is then not this record's (qemu_pid
    /// is 0), so deleting this container never stops the pod's VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// [`Mode`] as state.json spells it.
#[derive(Serialize, Deserialize)]
struct ModeJson {
    #[serde(default)]
    mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extra: Option<serde_json::Value>,
}

impl TryFrom<ModeJson> for Mode {
    type Error = String;
    fn try_from(j: ModeJson) -> std::result::Result<Mode, String> {
        match j.mode.as_str() {
            "" | "container" => Ok(Mode::Container),
            "vm" => match j.extra {
                None => Ok(Mode::Vm(VmRecord::default())),
                Some(v) => serde_json::from_value(v)
                    .map(Mode::Vm)
                    .map_err(|e| format!("extra: not a VM record: {e}")),
            },
            other => Err(format!("mode {other:?}: expected \"container\" or \"vm\"")),
        }
    }
}

impl From<Mode> for ModeJson {
    fn from(m: Mode) -> ModeJson {
        match m {
            Mode::Container => ModeJson {
                mode: "container".into(),
                extra: None,
            },
            Mode::Vm(r) => ModeJson {
                mode: "vm".into(),
                extra: serde_json::to_value(r).ok(),
            },
        }
    }
}

impl Mode {
    /// The VM record, in VM mode.
    pub fn vm(&self) -> Option<&VmRecord> {
        match self {
            Mode::Vm(r) => Some(r),
            Mode::Container => None,
        }
    }
}

/// Present in a container's directory while it is paused by a backend that
/// does not freeze the host cgroup (VM mode freezes the guest's).
pub const PAUSED_MARK: &str = "vm-paused";

/// The status words of the OCI state document hooks and the seccomp agent
/// read (the spec's four; `paused` is runc's, for `state` output only).
pub use oci_spec::runtime::ContainerState as OciStatus;

/// The OCI state document (runtime-spec `State`) hooks read on stdin and the
/// seccomp agent receives inside its `ContainerProcessState`. `pid` 0 (no
/// process, as for poststop) and empty annotations are left out, as the
/// spec makes both optional and runc omits them.
pub fn oci_state(
    id: &str,
    status: OciStatus,
    pid: i32,
    bundle: &Path,
    annotations: &BTreeMap<String, String>,
) -> oci_spec::runtime::State {
    let mut s = oci_spec::runtime::State::default();
    s.set_version(OCI_VERSION.to_string())
        .set_id(id.to_string())
        .set_status(status)
        .set_pid((pid > 0).then_some(pid))
        .set_bundle(bundle.to_path_buf())
        .set_annotations((!annotations.is_empty()).then(|| {
            annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }));
    s
}

/// [`oci_state`] as the JSON bytes a hook reads on stdin.
pub fn hook_state(
    id: &str,
    status: OciStatus,
    pid: i32,
    bundle: &Path,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    serde_json::to_vec(&oci_state(id, status, pid, bundle, annotations)).unwrap_or_default()
}

/// `state` output: runc's document, the OCI `State` plus `rootfs`, `created`
/// and `owner`, with `paused` among the statuses and `pid` 0 once stopped.
/// Engines read these fields (and tests/conformance.rs compares the document
/// key for key with runc's), so it cannot be `oci_spec::runtime::State`,
/// which has neither the fields nor the status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
    pub owner: String,
}

/// What /proc says about a pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Single-letter state (R, S, D, Z, T, ...).
    pub state: char,
    /// Start time in clock ticks since boot.
    pub start: u64,
    /// Parent pid.
    pub ppid: i32,
    /// The CPU it last ran on.
    pub cpu: Option<usize>,
}

/// Parse /proc/<pid>/stat text. The command name may contain spaces and
/// parentheses, so fields are counted from the last ')'.
pub fn parse_stat(s: &str) -> Option<ProcStat> {
    // get(): a line may end at the ')' or continue with any character.
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split(' ').collect();
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
        cpu: f.get(36).and_then(|c| c.parse().ok()),
    })
}

/// Read /proc/<pid>/stat. Every command asks it of each record it loads,
/// so it is one open and one read into a stack buffer: the kernel makes the
/// whole line in a single read (it is a few hundred bytes; a comm of 16 at
/// most), where `read_to_string` also paid a statx and a read at EOF.
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    use std::io::Read;
    if pid <= 0 {
        return None;
    }
    let mut f = File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut buf = [0u8; 1024];
    let n = loop {
        match f.read(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    };
    if n == buf.len() {
        // Longer than any stat line seen: read it whole, the slow way.
        let b = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
        return parse_stat(&String::from_utf8_lossy(&b));
    }
    // Lossy: a comm may hold any bytes (prctl PR_SET_NAME), and the fields
    // are counted from the last ')', which no replacement character adds.
    parse_stat(&String::from_utf8_lossy(&buf[..n]))
}

/// True when `pid` is the same live (non-zombie) process that started at `start`.
pub fn same_process_alive(pid: i32, start: u64) -> bool {
    match proc_stat(pid) {
        Some(st) => st.start == start && st.state != 'Z' && st.state != 'X',
        None => false,
    }
}

impl ContainerState {
    /// Write state.json atomically (mode 0600, fsync-free exchange with
    /// the old record: see [`crate::files::swap`]).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let data =
            serde_json::to_vec(self).map_err(|e| Error::msg(format!("encode state: {e}")))?;
        crate::files::swap(&dir.join(STATE_FILE), &data, 0o600)
    }

    /// A temporary file for the next [`ContainerState::save_into`] of the
    /// record in `dir`, made ahead (create makes it while its child sets up).
    pub fn reserve(dir: &Path) -> Result<crate::files::Pending> {
        crate::files::Pending::new(&dir.join(STATE_FILE), 0o600)
    }

    /// [`ContainerState::save`] through a file made by
    /// [`ContainerState::reserve`].
    pub fn save_into(&self, p: crate::files::Pending) -> Result<()> {
        let data =
            serde_json::to_vec(self).map_err(|e| Error::msg(format!("encode state: {e}")))?;
        p.swap_in(&data)
    }

    /// Read state.json from a container directory.
    pub fn read(dir: &Path) -> Result<ContainerState> {
        let p = dir.join(STATE_FILE);
        let data = std::fs::read(&p).io("read", &p)?;
        serde_json::from_slice(&data).map_err(|e| Error::CorruptState {
            path: p.clone(),
            reason: e.to_string(),
        })
    }

    /// Is the create that made this record still running?
    pub fn creator_alive(&self) -> bool {
        same_process_alive(self.creator_pid, self.creator_start)
    }

    /// Is the init (or VM monitor) still the process we started?
    pub fn init_alive(&self) -> bool {
        same_process_alive(self.pid, self.pid_start)
    }

    /// Derive the status. `paused` is asked of the cgroup only for a live init.
    pub fn status(&self, dir: &Path, paused: impl FnOnce(&ContainerState) -> bool) -> Status {
        derive_status(
            self.phase,
            (self.creator_pid, self.creator_start),
            (self.pid, self.pid_start),
            dir,
            || paused(self),
        )
    }

    /// The OCI state document for this record and status.
    pub fn oci(&self, status: Status) -> OciState {
        OciState {
            oci_version: OCI_VERSION.to_string(),
            id: self.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            annotations: self.annotations.clone(),
            owner: String::new(),
        }
    }
}

/// The status of a record from its phase, its creator and its init (pid and
/// start time each) and its directory; `paused` is asked only of a live,
/// started init.
fn derive_status(
    phase: Option<Phase>,
    creator: (i32, u64),
    init: (i32, u64),
    dir: &Path,
    paused: impl FnOnce() -> bool,
) -> Status {
    if phase == Some(Phase::Creating) {
        return if same_process_alive(creator.0, creator.1) {
            Status::Creating
        } else {
            Status::Stopped
        };
    }
    if !same_process_alive(init.0, init.1) {
        return Status::Stopped;
    }
    if dir.join(FIFO_FILE).exists() {
        return Status::Created;
    }
    if paused() {
        return Status::Paused;
    }
    Status::Running
}

/// What `list` prints of a record and what its status is derived from,
/// read without the rest (the cgroup record, namespaces, the VM's data):
/// those fields are skipped unparsed, which is most of a record's bytes.
/// With a thousand containers in the root, parsing every record whole
/// (buffered twice: the flattened mode and the lenient cgroup record) was
/// most of `list`'s time.
#[derive(Debug, Clone, Deserialize)]
pub struct Summary {
    pub id: String,
    pub pid: i32,
    pub pid_start: u64,
    pub creator_pid: i32,
    pub creator_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub phase: Option<Phase>,
    /// `container` (or absent, in early records) or `vm`, as in [`Mode`].
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub owner_uid: u32,
}

impl Summary {
    /// A VM-mode container (paused inside its guest, so marked in its
    /// directory rather than by a frozen host cgroup).
    pub fn is_vm(&self) -> bool {
        self.mode == "vm"
    }

    /// Derive the status as [`ContainerState::status`] does; `paused` is
    /// asked only of a live, started init.
    pub fn status(&self, dir: &Path, paused: impl FnOnce(&Summary) -> bool) -> Status {
        derive_status(
            self.phase,
            (self.creator_pid, self.creator_start),
            (self.pid, self.pid_start),
            dir,
            || paused(self),
        )
    }

    /// The OCI state document for this record, status and owner's name.
    pub fn into_oci(self, status: Status, owner: String) -> OciState {
        OciState {
            oci_version: OCI_VERSION.to_string(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            id: self.id,
            status,
            bundle: self.bundle,
            rootfs: self.rootfs,
            created: self.created,
            annotations: self.annotations,
            owner,
        }
    }
}

/// Reads the records under one root through a descriptor of it (each open
/// walks only `<id>/state.json`) into one reused buffer, with no statx for a
/// size hint: open, read, read (EOF), close.
struct RecordReader {
    root: File,
    buf: Vec<u8>,
}

impl RecordReader {
    fn open(root: &Path) -> std::io::Result<RecordReader> {
        Ok(RecordReader {
            root: open_dir(root)?,
            buf: Vec::with_capacity(8192),
        })
    }

    /// Read and parse `<name>/state.json`; `root` names it in errors.
    fn read<T: serde::de::DeserializeOwned>(&mut self, root: &Path, name: &str) -> Result<T> {
        use std::io::Read;
        let rel = format!("{name}/{STATE_FILE}");
        let p = || root.join(&rel);
        let fd = nix::fcntl::openat(
            &self.root,
            rel.as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::io("read", p(), std::io::Error::from(e)))?;
        self.buf.clear();
        // take(): File's own read_to_end first asks statx and lseek for a
        // size hint; the reused buffer makes that hint useless here.
        Read::take(File::from(fd), u64::MAX)
            .read_to_end(&mut self.buf)
            .io("read", &p())?;
        serde_json::from_slice(&self.buf).map_err(|e| Error::CorruptState {
            path: p(),
            reason: e.to_string(),
        })
    }
}

/// An exclusive lock on a container directory (flock on the directory).
#[derive(Debug)]
pub struct DirLock {
    _f: File,
}

fn open_dir(p: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(p)
}

fn flock(f: &File, op: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let r = unsafe { libc::flock(f.as_raw_fd(), op) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// The state root.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

/// What to do with a stale directory left by a killed create (kill its init,
/// remove its cgroup); supplied by the caller, which knows about cgroups.
pub type StaleCleanup<'a> = &'a dyn Fn(&ContainerState);

impl Store {
    /// Open (and create, mode 0700) the state root.
    pub fn open(root: &Path) -> Result<Store> {
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
        {
            return Err(Error::io("create state root", root, e));
        }
        let s = Store {
            root: root.to_path_buf(),
        };
        s.check_owner()?;
        Ok(s)
    }

    /// Refuse a state root that someone else could have prepared: records
    /// in it name pids to signal and cgroups to remove, so a root planted
    /// by another user (an existing `/tmp/nano-sandbox-<uid>`, a shared
    /// directory given as --root) would make this caller act on that
    /// user's behalf. The root must be a real directory (not a symlink),
    /// owned by the caller or by root, with no group or other write bit.
    /// A root that does not exist yet is fine (nothing is in it).
    pub fn check_owner(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let m = match std::fs::symlink_metadata(&self.root) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("stat state root", &self.root, e)),
        };
        let me = nix::unistd::geteuid().as_raw();
        let why = if m.file_type().is_symlink() {
            "is a symlink".to_string()
        } else if !m.is_dir() {
            "is not a directory".to_string()
        } else if m.uid() != me && m.uid() != 0 {
            format!("is owned by uid {}, not by you (uid {me}) or root", m.uid())
        } else if m.mode() & 0o022 != 0 {
            format!(
                "is writable by its group or by others (mode {:o})",
                m.mode() & 0o7777
            )
        } else {
            return Ok(());
        };
        Err(Error::msg(format!(
            "state root {} {why}: another user could have put container records in it; use a directory only you can write (--root DIR, or set XDG_RUNTIME_DIR to such a directory)",
            self.root.display()
        )))
    }

    /// A view of the root without creating it (for read-only commands).
    pub fn at(root: &Path) -> Store {
        Store {
            root: root.to_path_buf(),
        }
    }

    /// The directory of a container (no existence check).
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Claim `id`: prepare a private directory with `initial` written and its
    /// lock held, and rename it into place without replacing anything. A
    /// directory left by a killed create is cleaned with `stale` and reused.
    pub fn claim(
        &self,
        id: &str,
        initial: &ContainerState,
        stale: StaleCleanup<'_>,
    ) -> Result<(PathBuf, DirLock)> {
        validate_id(id)?;
        let tmp = self.root.join(format!(".new-{id}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::DirBuilder::new()
            .mode(0o711)
            .create(&tmp)
            .io("create state directory", &tmp)?;
        let f = open_dir(&tmp).io("open", &tmp)?;
        flock(&f, libc::LOCK_EX).io("lock", &tmp)?;
        if let Err(e) = initial.save(&tmp) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let dst = self.dir(id);
        for attempt in 0..2 {
            match nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &tmp,
                nix::fcntl::AT_FDCWD,
                &dst,
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => return Ok((dst, DirLock { _f: f })),
                Err(nix::errno::Errno::EEXIST) if attempt == 0 => {
                    if !self.reap_stale(id, stale) {
                        break;
                    }
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    return Err(Error::sys(format!("rename into {}", dst.display()), e));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&tmp);
        Err(Error::Exists(id.to_string()))
    }

    /// If `id`'s directory was left by a create that was killed, clean it and
    /// return true. A directory whose lock is held belongs to a live command.
    fn reap_stale(&self, id: &str, stale: StaleCleanup<'_>) -> bool {
        let dir = self.dir(id);
        let Ok(f) = open_dir(&dir) else {
            return false;
        };
        if flock(&f, libc::LOCK_EX | libc::LOCK_NB).is_err() {
            return false;
        }
        match ContainerState::read(&dir) {
            Ok(st) if st.phase == Some(Phase::Creating) && !st.creator_alive() => {
                stale(&st);
            }
            Ok(_) => return false,
            Err(_) => {}
        }
        std::fs::remove_dir_all(&dir).is_ok()
    }

    /// Take the exclusive lock of an existing container, waiting for others.
    pub fn lock(&self, id: &str) -> Result<DirLock> {
        validate_id(id)?;
        self.check_owner()?;
        let dir = self.dir(id);
        let f = open_dir(&dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotExist(id.to_string())
            } else {
                Error::io("open", &dir, e)
            }
        })?;
        flock(&f, libc::LOCK_EX).io("lock", &dir)?;
        Ok(DirLock { _f: f })
    }

    /// Load a container's record; `does not exist` when there is none.
    pub fn load(&self, id: &str) -> Result<ContainerState> {
        validate_id(id)?;
        self.check_owner()?;
        let dir = self.dir(id);
        match ContainerState::read(&dir) {
            Ok(s) => Ok(s),
            Err(Error::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::NotExist(id.to_string()))
            }
            Err(e) => Err(e),
        }
    }

    /// Every container record under the root, sorted by id. A record that
    /// cannot be read is left out.
    pub fn list(&self) -> Result<Vec<ContainerState>> {
        Ok(self
            .records::<ContainerState>()?
            .into_iter()
            .filter_map(|(_, r)| r.ok())
            .collect())
    }

    /// What `list` shows of every record, sorted by directory name, with
    /// the error of each record that cannot be read (as runc reports, and
    /// then skips, a record it cannot load). A directory that has no record
    /// (removed by a delete while listing) is left out.
    pub fn summaries(&self) -> Result<Vec<(String, Result<Summary>)>> {
        self.records::<Summary>()
    }

    fn records<T: serde::de::DeserializeOwned>(&self) -> Result<Vec<(String, Result<T>)>> {
        self.check_owner()?;
        let mut reader = match RecordReader::open(&self.root) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("open", &self.root, e)),
        };
        let rd = std::fs::read_dir(&self.root).io("read", &self.root)?;
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort_unstable();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            match reader.read::<T>(&self.root, &name) {
                // Gone (a delete ran meanwhile), or a file, not a container.
                Err(Error::Io { cause, .. })
                    if matches!(
                        cause.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) => {}
                r => out.push((name, r)),
            }
        }
        Ok(out)
    }

    /// Remove a container's directory and everything in it.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        // A stopped container's directory holds its record and its config
        // copy: two unlinks and an rmdir, where remove_dir_all stats, opens
        // and lists it (twice) first. The record goes first, as a reader
        // then finds no container rather than one without its config.
        // Anything else in it (exec.fifo, a VM's files) makes the rmdir
        // fail, and the rest goes the long way.
        for f in [STATE_FILE, CONFIG_FILE] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        match std::fs::remove_dir(&dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) => {}
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state.json written by nk-runtime before the cgroup record was typed
    /// (taken from a real create on a hybrid host): a container created by
    /// the previous version must stay manageable after an upgrade.
    #[test]
    fn state_with_an_untyped_cgroup_record_still_loads() {
        const OLD: &str = r#"{"id":"arsys1","pid":28987,"pid_start":1492963,"creator_pid":28986,"creator_start":1492962,"bundle":"/tmp/arch-sys-b","rootfs":"/tmp/arch-sys-b/rootfs","created":"2026-12-06T06:53:29.636102119Z","annotations":{},"phase":"created","cgroup":{"kind":"v1","v1":{"dirs":{"blkio":"/sys/fs/cgroup/blkio/nano-sandbox/arsys1","cpu":"/sys/fs/cgroup/cpu/nano-sandbox/arsys1","cpuacct":"/sys/fs/cgroup/cpuacct/nano-sandbox/arsys1","cpuset":"/sys/fs/cgroup/cpuset/nano-sandbox/arsys1","devices":"/sys/fs/cgroup/devices/nano-sandbox/arsys1","freezer":"/sys/fs/cgroup/freezer/nano-sandbox/arsys1","memory":"/sys/fs/cgroup/memory/nano-sandbox/arsys1","name=systemd":"/sys/fs/cgroup/systemd/nano-sandbox/arsys1","pids":"/sys/fs/cgroup/pids/nano-sandbox/arsys1"},"foreign":[],"mounts":{"blkio":"/sys/fs/cgroup/blkio","cpu":"/sys/fs/cgroup/cpu","cpuacct":"/sys/fs/cgroup/cpuacct","cpuset":"/sys/fs/cgroup/cpuset","devices":"/sys/fs/cgroup/devices","freezer":"/sys/fs/cgroup/freezer","memory":"/sys/fs/cgroup/memory","name=systemd":"/sys/fs/cgroup/systemd","pids":"/sys/fs/cgroup/pids"},"path":"/nano-sandbox/arsys1","unified":{"controllers":["hugetlb"],"dir":"/sys/fs/cgroup/unified/nano-sandbox/arsys1","foreign":[],"mount":"/sys/fs/cgroup/unified","path":"/nano-sandbox/arsys1"}}},"mode":"container","rootless":false,"no_new_keyring":false,"owner_uid":0,"extra":null,"namespaces":[{"type":"ipc","dev":4,"ino":4026532176},{"type":"uts","dev":4,"ino":4026532175},{"type":"network","dev":4,"ino":4026532178},{"type":"pid","dev":4,"ino":4026532177},{"type":"mount","dev":4,"ino":4026532174}]}"#;
        let st: ContainerState = serde_json::from_str(OLD).unwrap();
        let Some(crate::cgroups::CgroupRecord::V1(m)) = &st.cgroup else {
            panic!("cgroup record lost: {:?}", st.cgroup)
        };
        assert_eq!(
            m.dirs["memory"],
            Path::new("/sys/fs/cgroup/memory/nano-sandbox/arsys1")
        );
        assert_eq!(
            m.unified.as_ref().unwrap().dir,
            Path::new("/sys/fs/cgroup/unified/nano-sandbox/arsys1")
        );
        // Written back in the same shape the old version reads.
        let again: serde_json::Value = serde_json::to_value(&st).unwrap();
        let old: serde_json::Value = serde_json::from_str(OLD).unwrap();
        assert_eq!(again["cgroup"], old["cgroup"]);
        // A v2 record, and a record without a cgroup or one unreadable.
        let v2 =
            r#"{"kind":"v2","v2":{"path":"/c","dir":"/sys/fs/cgroup/c","mount":"/sys/fs/cgroup"}}"#;
        let r: crate::cgroups::CgroupRecord = serde_json::from_str(v2).unwrap();
        assert!(
            matches!(r, crate::cgroups::CgroupRecord::V2(ref m) if m.dir == Path::new("/sys/fs/cgroup/c"))
        );
        for cg in ["null", r#"{"kind":"v3"}"#, r#"{"kind":"v1"}"#] {
            let doc = OLD.replacen(&serde_json::to_string(&old["cgroup"]).unwrap(), cg, 1);
            assert_ne!(doc, OLD);
            let st: ContainerState = serde_json::from_str(&doc).unwrap();
            assert!(st.cgroup.is_none(), "{cg}");
        }
    }

    #[test]
    fn hook_state_is_the_spec_document() {
        let ann = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let s = hook_state("c1", OciStatus::Created, 42, Path::new("/b"), &ann);
        assert_eq!(
            String::from_utf8(s).unwrap(),
            r#"{"ociVersion":"1.2.0","id":"c1","status":"created","pid":42,"bundle":"/b","annotations":{"k":"v"}}"#
        );
        // No process (poststop) and no annotations: both left out, as runc does.
        let s = hook_state(
            "c1",
            OciStatus::Stopped,
            0,
            Path::new("/b"),
            &BTreeMap::new(),
        );
        assert_eq!(
            String::from_utf8(s).unwrap(),
            r#"{"ociVersion":"1.2.0","id":"c1","status":"stopped","bundle":"/b"}"#
        );
    }

    #[test]
    fn ids() {
        for ok in ["a", "abc-1", "X_y.z+1", &"f".repeat(64)] {
            validate_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "../x", ".hidden", "a b", "a\0b", "ü"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn records_of_the_previous_version_are_read() {
        // Written by the version that kept the mode as a string and the
        // VM's data as untyped JSON.
        let vm = r#"{"id":"v1","pid":4242,"pid_start":99,"creator_pid":4200,"creator_start":98,
            "bundle":"/b","rootfs":"/b/rootfs","created":"2026-12-01T10:00:00.000000000Z",
            "annotations":{},"phase":"created","cgroup":null,"mode":"vm","rootless":false,
            "no_new_keyring":false,"owner_uid":0,"extra":{"qemu_pid":4300,"qemu_start":120,
            "guest_pid":7,"vcpus":2,"memory_mib":416,"accel":"tcg","boot_ms":2100,
            "kernel":"6.1.0-56-amd64"}}"#;
        let st: ContainerState = serde_json::from_str(vm).unwrap();
        let r = st.mode.vm().expect("a VM record");
        assert_eq!((r.qemu_pid, r.qemu_start, r.guest_pid), (4300, 120, 7));
        assert_eq!((r.vcpus, r.memory_mib, r.boot_ms), (2, 416, 2100));
        assert_eq!(
            (r.accel.as_str(), r.kernel.as_str()),
            ("tcg", "6.1.0-56-amd64")
        );
        // A VM record saved while create ran (no VM yet).
        let creating = vm.replace(r#""phase":"created""#, r#""phase":"creating""#);
        let i = creating.find(r#","extra""#).unwrap();
        let creating = format!("{}, \"extra\": null}}", &creating[..i]);
        let st: ContainerState = serde_json::from_str(&creating).unwrap();
        assert_eq!(st.mode, Mode::Vm(VmRecord::default()));
        // Container mode, with and without the fields.
        let c = vm
            .replace(r#""mode":"vm""#, r#""mode":"container""#)
            .replace(&vm[vm.find(r#","extra""#).unwrap()..], r#","extra":null}"#);
        assert_eq!(
            serde_json::from_str::<ContainerState>(&c).unwrap().mode,
            Mode::Container
        );
        let bare = r#"{"id":"c","pid":1,"pid_start":1,"creator_pid":1,"creator_start":1,
            "bundle":"/b","rootfs":"/r","created":"x","phase":null}"#;
        assert_eq!(
            serde_json::from_str::<ContainerState>(bare).unwrap().mode,
            Mode::Container
        );
        // An unknown mode is an error that names it.
        let bad = vm.replace(r#""mode":"vm""#, r#""mode":"wasm""#);
        let e = serde_json::from_str::<ContainerState>(&bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("wasm"), "{e}");
    }

    #[test]
    fn the_record_keeps_its_json_shape() {
        let mut st = ContainerState {
            id: "v".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["mode"], "container");
        assert!(v.get("extra").is_none());
        st.mode = Mode::Vm(VmRecord {
            qemu_pid: 5,
            accel: "tcg".into(),
            ..Default::default()
        });
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["mode"], "vm");
        assert_eq!(v["extra"]["qemu_pid"], 5);
        assert_eq!(v["extra"]["accel"], "tcg");
        let back: ContainerState = serde_json::from_value(v).unwrap();
        assert_eq!(back.mode, st.mode);
    }

    #[test]
    fn stat_parsing_handles_odd_names() {
        let s = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100 18446744073709551615";
        let st = parse_stat(s).unwrap();
        assert_eq!(st.state, 'S');
        assert_eq!(st.ppid, 1);
        assert_eq!(st.start, 98765);
    }

    /// A process may name itself with any bytes (prctl PR_SET_NAME); its
    /// record must still read as alive, not as stopped.
    #[test]
    fn a_process_with_a_non_utf8_name_is_alive() {
        let (tid, start) = std::thread::spawn(|| {
            // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most
            // 16 bytes from a buffer that outlives the call.
            let r = unsafe { libc::prctl(libc::PR_SET_NAME, c"n\xff\xfe)x".as_ptr()) };
            assert_eq!(r, 0);
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let raw = std::fs::read(format!("/proc/{tid}/stat")).unwrap();
            assert!(std::str::from_utf8(&raw).is_err(), "the name is not UTF-8");
            let st = proc_stat(tid).expect("the stat of a live thread");
            assert!(same_process_alive(tid, st.start));
            (tid, st.start)
        })
        .join()
        .unwrap();
        assert!(tid > 0 && start > 0);
    }

    #[test]
    fn a_root_others_can_write_or_a_symlink_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("nk-state-owner-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("shared")).unwrap();
        std::fs::set_permissions(d.join("shared"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = Store::open(&d.join("shared")).unwrap_err().to_string();
        assert!(e.contains("writable by its group or by others"), "{e}");
        assert!(Store::at(&d.join("shared")).load("x").is_err());
        std::os::unix::fs::symlink(d.join("mine"), d.join("link")).unwrap();
        std::fs::create_dir(d.join("mine")).unwrap();
        let e = Store::at(&d.join("link")).list().unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
        Store::open(&d.join("mine")).unwrap();
        Store::open(&d.join("new")).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn claim_is_exclusive_and_stale_is_reaped() {
        let d = std::env::temp_dir().join(format!("nk-state-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let store = Store::open(&d).unwrap();
        let mut st = ContainerState {
            id: "c1".into(),
            phase: Some(Phase::Creating),
            creator_pid: std::process::id() as i32,
            creator_start: proc_stat(std::process::id() as i32).unwrap().start,
            ..Default::default()
        };
        let (_dir, lock) = store.claim("c1", &st, &|_| {}).unwrap();
        // Held lock and live creator: the second claim loses.
        assert!(matches!(
            store.claim("c1", &st, &|_| {}),
            Err(Error::Exists(_))
        ));
        drop(lock);
        // Creator alive: still not stale.
        assert!(matches!(
            store.claim("c1", &st, &|_| {}),
            Err(Error::Exists(_))
        ));
        // Pretend the creator died: the directory is reaped and reused.
        let mut dead = st.clone();
        dead.creator_start += 1;
        dead.save(&store.dir("c1")).unwrap();
        let reaped = std::cell::Cell::new(false);
        st.id = "c1".into();
        let (_dir, _lock) = store.claim("c1", &st, &|_| reaped.set(true)).unwrap();
        assert!(reaped.get());
        assert_eq!(store.list().unwrap().len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
