//! Namespaces: the clone flag and /proc name of each type, and joining one by path.

use crate::error::{Error, Result};
use nix::sched::CloneFlags;
use oci_spec::runtime::LinuxNamespaceType;
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

/// Namespaces of `pid` that differ from this process's own, in join order.
pub fn differing(pid: i32) -> Vec<(LinuxNamespaceType, PathBuf)> {
    JOIN_ORDER
        .iter()
        .filter_map(|t| {
            let theirs = PathBuf::from(format!("/proc/{pid}/ns/{}", proc_name(*t)));
            let ours = PathBuf::from(format!("/proc/self/ns/{}", proc_name(*t)));
            let a = ns_id(&theirs)?;
            if Some(a) == ns_id(&ours) {
                None
            } else {
                Some((*t, theirs))
            }
        })
        .collect()
}
