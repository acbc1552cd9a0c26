//! /dev: the default device nodes, linux.devices, and the standard symlinks.

use super::fs::{fd_path, mkdir_all_in_root, open_in_root, touch_in_root};
use crate::error::{Error, Result, SysContext};
use crate::explain::{self, catalog};
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// One device node to create.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The devices every container gets (runc's list).
pub fn defaults() -> Vec<Node> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(p, ma, mi)| Node {
        path: p.into(),
        kind: SFlag::S_IFCHR,
        major: ma,
        minor: mi,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// A linux.devices entry as a node.
pub fn from_spec(d: &LinuxDevice) -> Result<Node> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::msg(format!(
                "linux.devices {}: type \"a\" is for cgroup rules, not device nodes",
                d.path().display()
            )))
        }
    };
    Ok(Node {
        path: d.path().clone(),
        kind,
        major: d.major().max(0) as u64,
        minor: d.minor().max(0) as u64,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// Create nodes in the rootfs, then the standard symlinks in its /dev.
/// In a user namespace mknod is not allowed, so the host's device is
/// bind-mounted instead (runc does the same).
pub fn create(root: BorrowedFd<'_>, nodes: &[Node], userns: bool) -> Result<()> {
    explain::step(&catalog::DEVICES, || {
        nodes
            .iter()
            .map(|n| format!("{} ({}:{})", n.path.display(), n.major, n.minor))
            .collect::<Vec<_>>()
            .join(", ")
    });
    let old = nix::sys::stat::umask(Mode::empty());
    // The directory of the last node, kept open for the next one in the
    // same directory (the six defaults are all in /dev), with what a node
    // made there is born owned by.
    let mut dir = None;
    let r = nodes
        .iter()
        .try_for_each(|n| create_one(root, n, userns, &mut dir));
    nix::sys::stat::umask(old);
    r?;
    let dev = match dir {
        Some(d) if d.path == Path::new("dev") => d.fd,
        _ => mkdir_all_in_root(root, Path::new("dev"))?,
    };
    symlinks(dev.as_fd())
}

/// A directory nodes are made in: an O_PATH descriptor (enough for the
/// *at calls), and the owner a new node there gets unless it is chowned.
struct NodeDir {
    path: PathBuf,
    fd: OwnedFd,
    born: Option<(u32, u32)>,
}

fn create_one(
    root: BorrowedFd<'_>,
    n: &Node,
    userns: bool,
    last_dir: &mut Option<NodeDir>,
) -> Result<()> {
    let rel = super::fs::clean_rel(&n.path);
    if userns {
        let fd = touch_in_root(root, &rel)?;
        return nix::mount::mount::<Path, str, str, str>(
            Some(&n.path),
            fd_path(fd.as_fd()).as_str(),
            None,
            nix::mount::MsFlags::MS_BIND,
            None,
        )
        .sys(|| format!("bind host device {}", n.path.display()));
    }
    let parent = rel.parent().unwrap_or(Path::new(""));
    let name = rel
        .file_name()
        .ok_or_else(|| Error::msg(format!("device path {} has no name", n.path.display())))?;
    let dir = match last_dir {
        Some(d) if d.path == parent => d,
        _ => {
            let fd = mkdir_all_in_root(root, parent)?;
            let born = born_owner(fd.as_fd());
            last_dir.insert(NodeDir {
                path: parent.to_path_buf(),
                fd,
                born,
            })
        }
    };
    let dev = nix::sys::stat::makedev(n.major, n.minor);
    let mode = Mode::from_bits_truncate(n.mode);
    let mknod = || nix::sys::stat::mknodat(dir.fd.as_fd(), name, n.kind, mode, dev);
    match mknod() {
        Ok(()) => {}
        Err(nix::errno::Errno::EEXIST) => {
            // A file already there (from the image, or a bind mount) is replaced.
            let _ = nix::unistd::unlinkat(
                dir.fd.as_fd(),
                name,
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
            mknod().sys(|| format!("mknod {} {}:{}", n.path.display(), n.major, n.minor))?;
        }
        Err(e) => {
            return Err(Error::sys(
                format!("mknod {} {}:{}", n.path.display(), n.major, n.minor),
                e,
            ))
        }
    }
    // A new node is owned by this process's fsuid and fsgid already; the
    // chown is needed for another owner, and for a set-id mode (chown
    // drops set-id bits, and the node must end as chowned ones do).
    if dir.born != Some((n.uid, n.gid)) || n.mode & 0o6000 != 0 {
        nix::unistd::fchownat(
            dir.fd.as_fd(),
            name,
            Some(nix::unistd::Uid::from_raw(n.uid)),
            Some(nix::unistd::Gid::from_raw(n.gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .sys(|| format!("chown {}", n.path.display()))?;
    }
    Ok(())
}

/// The owner a node made in `dir` is born with, when `dir` is on a tmpfs
/// (a /dev the runtime mounts): this process's effective uid and gid (the
/// fs ids follow them; the runtime never sets them apart). None when
/// unsure: a set-group-id directory gives its own group, and another
/// filesystem may give another owner (a root-squashed NFS rootfs).
fn born_owner(dir: BorrowedFd<'_>) -> Option<(u32, u32)> {
    let fs = nix::sys::statfs::fstatfs(dir).ok()?;
    if fs.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC {
        return None;
    }
    let st = nix::sys::stat::fstat(dir).ok()?;
    if st.st_mode & libc::S_ISGID != 0 {
        return None;
    }
    Some((
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    ))
}

/// /dev/fd, /dev/stdin, /dev/stdout, /dev/stderr, /dev/ptmx (and /dev/core),
/// in `dev`, the rootfs's /dev.
fn symlinks(dev: BorrowedFd<'_>) -> Result<()> {
    explain::step(&catalog::DEV_SYMLINKS, || {
        "/dev/fd -> /proc/self/fd, /dev/stdin -> /proc/self/fd/0, /dev/stdout -> /proc/self/fd/1, /dev/stderr -> /proc/self/fd/2, /dev/ptmx -> pts/ptmx".into()
    });
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        let link = || nix::unistd::symlinkat(target, dev, name);
        let r = match link() {
            // An existing /dev/ptmx node (from a bind) is replaced by the link.
            Err(nix::errno::Errno::EEXIST) if name == "ptmx" => {
                let _ = nix::unistd::unlinkat(dev, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
                link()
            }
            r => r,
        };
        match r {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(Error::sys(format!("symlink /dev/{name} -> {target}"), e)),
        }
    }
    Ok(())
}

/// True when config mounts something on /dev as a bind (then /dev is not ours to fill).
pub fn dev_is_bind(mounts: &[oci_spec::runtime::Mount]) -> bool {
    mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind"))
    })
}

/// Check a path exists in the rootfs (used to skip /dev/console when absent).
pub fn exists_in_root(root: BorrowedFd<'_>, p: &Path) -> bool {
    open_in_root(root, p, OFlag::O_PATH | OFlag::O_NOFOLLOW).is_ok()
}

/// linux.devices: device numbers that fit a dev_t, absolute paths without `..`.
pub fn check(linux: &oci_spec::runtime::Linux) -> crate::error::Checked {
    use crate::error::FieldError;
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        for (f, v) in [("major", d.major()), ("minor", d.minor())] {
            // A dev_t holds a 32-bit major and a 32-bit minor (Linux uses 12 and 20 bits).
            if !(0..=u32::MAX as i64).contains(&v) {
                return Err(FieldError::new(
                    format!("linux.devices[{i}].{f}"),
                    format!("{v} is not a device number"),
                ));
            }
        }
        if !d.path().is_absolute() || super::fs::has_dotdot(d.path()) {
            return Err(FieldError::new(
                format!("linux.devices[{i}].path"),
                format!(
                    "{} must be an absolute path without '..'",
                    d.path().display()
                ),
            ));
        }
    }
    Ok(())
}
