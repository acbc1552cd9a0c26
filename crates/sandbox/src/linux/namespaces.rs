//! Namespaces: the clone flag and /proc name of each type, and joining one by path.

use crate::error::{Error, Result};
use nix::sched::CloneFlags;
use oci_spec::runtime::LinuxNamespaceType;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The CLONE_NEW* flag of a namespace type.
pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The file name under /proc/<pid>/ns/.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Names of the flags set, for narration (`CLONE_NEWPID|CLONE_NEWNS`).
pub fn flag_names(f: CloneFlags) -> String {
    let all = [
        (CloneFlags::CLONE_NEWUSER, "CLONE_NEWUSER"),
        (CloneFlags::CLONE_NEWPID, "CLONE_NEWPID"),
        (CloneFlags::CLONE_NEWNS, "CLONE_NEWNS"),
        (CloneFlags::CLONE_NEWNET, "CLONE_NEWNET"),
        (CloneFlags::CLONE_NEWIPC, "CLONE_NEWIPC"),
        (CloneFlags::CLONE_NEWUTS, "CLONE_NEWUTS"),
        (CloneFlags::CLONE_NEWCGROUP, "CLONE_NEWCGROUP"),
        (
            CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
            "CLONE_NEWTIME",
        ),
    ];
    let v: Vec<&str> = all
        .iter()
        .filter(|(b, _)| f.contains(*b))
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join("|")
    }
}

/// Every namespace type, in the order they are joined: user first (it owns
/// the others), mount last (it changes what paths mean).
pub const JOIN_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Mount,
];

/// Open a namespace file (a /proc/*/ns/* file or a bind mount of one).
pub fn open(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open namespace {}", path.display()), e))
}

/// Join the namespace at `path` (a /proc/*/ns/* file or a bind mount of one).
pub fn join(t: LinuxNamespaceType, path: &Path) -> Result<()> {
    crate::explain::step(&crate::explain::catalog::NS_JOIN, || {
        format!("setns({}, {})", path.display(), flag_names(clone_flag(t)))
    });
    let fd = open(path)?;
    nix::sched::setns(fd.as_fd(), clone_flag(t)).map_err(|e| {
        Error::sys(
            format!("setns {} namespace {}", proc_name(t), path.display()),
            e,
        )
    })
}

/// The inode identity of a namespace file, to tell whether two are the same.
pub fn ns_id(path: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::stat::stat(path).ok()?;
    Some((st.st_dev, st.st_ino))
}

/// Is the namespace file at `path` this process's own namespace of type `t`?
/// A config that joins it gets nothing private: its sysctls and hostname
/// would change the runtime's (the host's) namespace.
pub fn is_own(t: LinuxNamespaceType, path: &Path) -> bool {
    let ours = PathBuf::from(format!("/proc/self/ns/{}", proc_name(t)));
    matches!((ns_id(path), ns_id(&ours)), (Some(a), Some(b)) if a == b)
}

/// The identity of the user namespace that owns the namespace `fd`
/// (ioctl NS_GET_USERNS).
pub fn owner_id(fd: std::os::fd::BorrowedFd<'_>) -> Option<(u64, u64)> {
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor.
    let r = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd), NS_GET_USERNS) };
    if r < 0 {
        return None;
    }
    // SAFETY: the ioctl returned a new descriptor, ours.
    let owner = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(r) };
    let st = nix::sys::stat::fstat(owner.as_fd()).ok()?;
    Some((st.st_dev, st.st_ino))
}

/// One namespace of a container as it was created: the identity (nsfs
/// device and inode) of its init's namespace file of that type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsIdentity {
    #[serde(rename = "type")]
    pub typ: LinuxNamespaceType,
    pub dev: u64,
    pub ino: u64,
}

/// The files of `pid` that may hold its namespace of type `t`: its own,
/// and for time also the one its next execve enters (an init parked at the
/// exec barrier has unshared the container's time namespace for its
/// children only).
fn files_of(pid: i32, t: LinuxNamespaceType) -> Vec<PathBuf> {
    let own = PathBuf::from(format!("/proc/{pid}/ns/{}", proc_name(t)));
    match t {
        LinuxNamespaceType::Time => vec![own, format!("/proc/{pid}/ns/time_for_children").into()],
        _ => vec![own],
    }
}

/// The identities of the namespaces of `types` (those linux.namespaces
/// creates or joins) that the init `pid` is in, recorded at create.
pub fn record(pid: i32, types: &[LinuxNamespaceType]) -> Result<Vec<NsIdentity>> {
    JOIN_ORDER
        .iter()
        .filter(|t| types.contains(t))
        .map(|t| {
            // The last file: for time, the one the container's program gets.
            let path = files_of(pid, *t).pop().expect("one file at least");
            let (dev, ino) = ns_id(&path).ok_or_else(|| {
                Error::msg(format!(
                    "cannot read {}: record the container's namespaces",
                    path.display()
                ))
            })?;
            Ok(NsIdentity { typ: *t, dev, ino })
        })
        .collect()
}

/// Open, for exec, the namespaces recorded at create that are not the
/// runtime's own, in join order, through the init `pid`'s files. Each
/// descriptor is checked to be the recorded namespace: a container that
/// made new namespaces for its init (`unshare -U -n`) neither steers exec
/// into them nor is joined anywhere else. Only the recorded types are
/// joined; the others stay the caller's, as runc does.
pub fn open_recorded(
    pid: i32,
    rec: &[NsIdentity],
) -> Result<Vec<(LinuxNamespaceType, PathBuf, OwnedFd)>> {
    let mut out = Vec::new();
    for t in JOIN_ORDER {
        let Some(r) = rec.iter().find(|r| r.typ == t) else {
            continue;
        };
        let ours = ns_id(Path::new(&format!("/proc/self/ns/{}", proc_name(t))));
        if ours == Some((r.dev, r.ino)) {
            continue;
        }
        let mut now = None;
        for path in files_of(pid, t) {
            let fd = open(&path)?;
            let st = nix::sys::stat::fstat(fd.as_fd())
                .map_err(|e| Error::sys(format!("fstat {}", path.display()), e))?;
            if (st.st_dev, st.st_ino) == (r.dev, r.ino) {
                out.push((t, path, fd));
                now = None;
                break;
            }
            now.get_or_insert(st.st_ino);
        }
        if let Some(now) = now {
            let proc = proc_name(t);
            return Err(Error::msg(format!(
                "the container's init (pid {pid}) is no longer in the {} namespace it was created with ({proc}:[{}], now {proc}:[{now}]): exec joins only the namespaces of linux.namespaces, never one the container made itself",
                name(t),
                r.ino
            )));
        }
    }
    Ok(out)
}

/// The namespace type's name as it appears in config.json.
pub fn name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

/// The types listed in linux.namespaces, in order: the namespaces the
/// init is in once created, and the ones exec joins.
pub fn types(linux: Option<&oci_spec::runtime::Linux>) -> Vec<LinuxNamespaceType> {
    linux
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .map(|n| n.typ())
        .collect()
}

/// What linux.namespaces asks for, as the other checks of a config need it.
#[derive(Debug, Clone, Default)]
pub struct Asked {
    /// Every type listed (as `LinuxNamespaceType as u64`).
    pub listed: std::collections::HashSet<u64>,
    /// Namespaces the container gets for itself: new ones, or joined ones
    /// that are not the runtime's own (joining that gives nothing private).
    pub private: std::collections::HashSet<u64>,
    /// A user namespace, new or joined.
    pub userns: bool,
    /// A new user namespace.
    pub new_userns: bool,
}

impl Asked {
    /// The namespaces of `linux` (None: no linux section).
    pub fn of(linux: Option<&oci_spec::runtime::Linux>) -> Asked {
        let mut a = Asked::default();
        for ns in linux
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
        {
            let t = ns.typ();
            a.listed.insert(t as u64);
            match ns.path() {
                Some(p) if is_own(t, p) => {}
                _ => {
                    a.private.insert(t as u64);
                }
            }
            if t == LinuxNamespaceType::User {
                a.userns = true;
                a.new_userns = ns.path().is_none();
            }
        }
        a
    }

    /// A namespace of this type is listed.
    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.listed.contains(&(t as u64))
    }
}

/// linux.namespaces: each type once, a joined one by an absolute path that
/// exists.
pub fn check(linux: &oci_spec::runtime::Linux) -> crate::error::Checked {
    use crate::error::FieldError;
    let mut seen = std::collections::HashSet::new();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        let t = ns.typ();
        if !seen.insert(t as u64) {
            return Err(FieldError::new(
                format!("linux.namespaces[{i}].type"),
                format!("{:?} appears twice", name(t)),
            ));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(FieldError::new(
                    format!("linux.namespaces[{i}].path"),
                    format!("{} is not absolute", p.display()),
                ));
            }
            if std::fs::symlink_metadata(p).is_err() {
                return Err(FieldError::new(
                    format!("linux.namespaces[{i}].path"),
                    format!("{}: no such namespace file", p.display()),
                ));
            }
        }
    }
    Ok(())
}

/// linux.timeOffsets: only with a time namespace, only for the monotonic
/// and boottime clocks.
pub fn check_time_offsets(
    linux: &oci_spec::runtime::Linux,
    asked: &Asked,
) -> crate::error::Checked {
    use crate::error::FieldError;
    let Some(tz) = linux.time_offsets() else {
        return Ok(());
    };
    if !tz.is_empty() && !asked.has(LinuxNamespaceType::Time) {
        return Err(FieldError::new(
            "linux.timeOffsets",
            "clock offsets need a time namespace in linux.namespaces",
        ));
    }
    for k in tz.keys() {
        if k != "monotonic" && k != "boottime" {
            return Err(FieldError::new(
                format!("linux.timeOffsets[{k:?}]"),
                "only monotonic and boottime clocks have offsets",
            ));
        }
    }
    Ok(())
}

/// hostname and domainname: what sethostname(2) takes, and only in a uts
/// namespace of the container's own.
pub fn check_uts_names(spec: &oci_spec::runtime::Spec, asked: &Asked) -> crate::error::Checked {
    use crate::error::FieldError;
    for (field, v) in [
        ("hostname", spec.hostname()),
        ("domainname", spec.domainname()),
    ] {
        if let Some(v) = v {
            // HOST_NAME_MAX: sethostname(2) refuses anything longer.
            if v.len() > 64 || v.contains('\0') {
                return Err(FieldError::new(
                    field,
                    format!("{} bytes: at most 64, without NUL bytes", v.len()),
                ));
            }
        }
    }
    let private_uts = asked.private.contains(&(LinuxNamespaceType::Uts as u64));
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !private_uts {
        return Err(FieldError::new(
            "hostname",
            "setting a hostname needs a uts namespace of the container's own in linux.namespaces (none, or one whose path is the runtime's own, would rename the host)",
        ));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !private_uts {
        return Err(FieldError::new(
            "domainname",
            "setting a domainname needs a uts namespace of the container's own in linux.namespaces (none, or one whose path is the runtime's own, would change the host's)",
        ));
    }
    Ok(())
}
