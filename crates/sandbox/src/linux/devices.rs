//! /dev: the default device nodes, linux.devices, and the standard symlinks.

use super::fs::{fd_path, mkdir_all_in_root, open_in_root, reopen, touch_in_root};
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

/// Create nodes in the rootfs. In a user namespace mknod is not allowed, so
/// the host's device is bind-mounted instead (runc does the same).
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
    // same directory (the six defaults are all in /dev).
    let mut dir = None;
    let r = nodes
        .iter()
        .try_for_each(|n| create_one(root, n, userns, &mut dir));
    nix::sys::stat::umask(old);
    r
}

fn create_one(
    root: BorrowedFd<'_>,
    n: &Node,
    userns: bool,
    last_dir: &mut Option<(PathBuf, OwnedFd)>,
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
        Some((p, fd)) if p == parent => fd,
        _ => {
            let d = mkdir_all_in_root(root, parent)?;
            let d = reopen(d.as_fd(), OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
            &last_dir.insert((parent.to_path_buf(), d)).1
        }
    };
    // A file already there (from the image, or a bind mount) is replaced.
    let _ = nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    let dev = nix::sys::stat::makedev(n.major, n.minor);
    nix::sys::stat::mknodat(
        dir.as_fd(),
        name,
        n.kind,
        Mode::from_bits_truncate(n.mode),
        dev,
    )
    .sys(|| format!("mknod {} {}:{}", n.path.display(), n.major, n.minor))?;
    nix::unistd::fchownat(
        dir.as_fd(),
        name,
        Some(nix::unistd::Uid::from_raw(n.uid)),
        Some(nix::unistd::Gid::from_raw(n.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .sys(|| format!("chown {}", n.path.display()))?;
    Ok(())
}

/// /dev/fd, /dev/stdin, /dev/stdout, /dev/stderr, /dev/ptmx (and /dev/core).
pub fn symlinks(root: BorrowedFd<'_>) -> Result<()> {
    explain::step(&catalog::DEV_SYMLINKS, || {
        "/dev/fd -> /proc/self/fd, /dev/stdin -> /proc/self/fd/0, /dev/stdout -> /proc/self/fd/1, /dev/stderr -> /proc/self/fd/2, /dev/ptmx -> pts/ptmx".into()
    });
    let dev = mkdir_all_in_root(root, Path::new("dev"))?;
    let dev = reopen(dev.as_fd(), OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
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
        if name == "ptmx" {
            // An existing /dev/ptmx node (from a bind) is replaced by the link.
            let _ =
                nix::unistd::unlinkat(dev.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
        match nix::unistd::symlinkat(target, dev.as_fd(), name) {
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
