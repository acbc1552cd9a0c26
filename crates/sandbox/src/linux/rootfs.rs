//! The root filesystem: propagation, the rootfs bind mount, pivot_root (or
//! MS_MOVE + chroot with --no-pivot, or a plain chroot without a mount
//! namespace), masked and read-only paths.

use super::fs::{fd_path, open_dir_path, open_in_root};
use super::mounts::propagation_flag;
use crate::error::{Error, Result, SysContext};
use crate::explain::{self, catalog};
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// Cut propagation of the whole tree, then bind the rootfs onto itself.
/// Returns an O_PATH descriptor of the rootfs bind mount.
///
/// An unbindable rootfsPropagation waits for [`set_root_propagation`]: the
/// rootfs could not be bound out of an unbindable tree (EINVAL, where runc
/// 1.1 stops), so the tree is made rslave here as by default.
pub fn prepare(rootfs: &Path, propagation: Option<&str>) -> Result<OwnedFd> {
    let flag = propagation
        .filter(|s| !s.is_empty())
        .and_then(propagation_flag)
        .filter(|f| !f.contains(MsFlags::MS_UNBINDABLE))
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    explain::step(&catalog::MOUNT_PROPAGATION, || {
        format!("mount(NULL, \"/\", NULL, {}, NULL)", prop_name(flag))
    });
    nix::mount::mount::<str, str, str, str>(None, "/", None, flag, None)
        .sys(|| "make / ".to_string() + &prop_name(flag))?;
    // After a recursive MS_SLAVE or MS_PRIVATE of / no mount is shared (a
    // shared mount becomes a slave, or private with no peers, mount(2)), so
    // only another propagation needs mountinfo read for the rootfs's mount.
    let none_shared =
        flag.contains(MsFlags::MS_REC) && flag.intersects(MsFlags::MS_SLAVE | MsFlags::MS_PRIVATE);
    if !none_shared {
        make_parent_private(rootfs)?;
    }
    explain::step(&catalog::ROOTFS_BIND, || {
        format!("mount --rbind {} {}", rootfs.display(), rootfs.display())
    });
    nix::mount::mount::<Path, Path, str, str>(
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .sys(|| format!("bind-mount rootfs {} onto itself", rootfs.display()))?;
    open_dir_path(rootfs)
}

/// Without a mount namespace: bind the rootfs onto itself and make that new
/// mount (and its copies of what was below) private, so the container's
/// mounts neither propagate to the host's peers nor receive theirs. The
/// host's `/` keeps its propagation; runc would make it rslave.
pub fn prepare_host(rootfs: &Path) -> Result<OwnedFd> {
    explain::step(&catalog::ROOTFS_BIND, || {
        format!(
            "mount --rbind {0} {0}; mount --make-rprivate {0} (the host's / is left as it is)",
            rootfs.display()
        )
    });
    nix::mount::mount::<Path, Path, str, str>(
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .sys(|| format!("bind-mount rootfs {} onto itself", rootfs.display()))?;
    nix::mount::mount::<str, Path, str, str>(
        None,
        rootfs,
        None,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None,
    )
    .sys(|| format!("make the rootfs bind mount {} private", rootfs.display()))?;
    open_dir_path(rootfs)
}

/// Without a mount namespace: chroot into the rootfs. pivot_root would
/// change the root of the host's mount namespace.
pub fn chroot(rootfs: &Path) -> Result<()> {
    explain::step(&catalog::HOST_CHROOT, || {
        format!("chroot({}); chdir(\"/\")", rootfs.display())
    });
    nix::unistd::chroot(rootfs).sys(|| format!("chroot {}", rootfs.display()))?;
    nix::unistd::chdir("/").sys(|| "chdir / after chroot".into())?;
    Ok(())
}

fn prop_name(f: MsFlags) -> String {
    let base = if f.contains(MsFlags::MS_SHARED) {
        "MS_SHARED"
    } else if f.contains(MsFlags::MS_PRIVATE) {
        "MS_PRIVATE"
    } else if f.contains(MsFlags::MS_UNBINDABLE) {
        "MS_UNBINDABLE"
    } else {
        "MS_SLAVE"
    };
    if f.contains(MsFlags::MS_REC) {
        format!("MS_REC|{base}")
    } else {
        base.to_string()
    }
}

/// pivot_root refuses a new root whose parent mount is shared: make the mount
/// that holds the rootfs private (only that one mount).
fn make_parent_private(rootfs: &Path) -> Result<()> {
    let mounts = super::mountinfo::read_self();
    if let Some(m) = super::mountinfo::holding(&mounts, rootfs).filter(|m| m.is_shared()) {
        nix::mount::mount::<Path, Path, str, str>(None, &m.point, None, MsFlags::MS_PRIVATE, None)
            .sys(|| format!("make {} private", m.point.display()))?;
    }
    Ok(())
}

/// pivot_root into the rootfs and detach the old root.
pub fn pivot(rootfs: &Path) -> Result<()> {
    explain::step(&catalog::PIVOT_ROOT, || {
        format!(
            "chdir({}); pivot_root(\".\", \".\"); umount2(\".\", MNT_DETACH)",
            rootfs.display()
        )
    });
    let old = nix::fcntl::open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .sys(|| "open /".into())?;
    let new = nix::fcntl::open(
        rootfs,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .sys(|| format!("open {}", rootfs.display()))?;
    nix::unistd::fchdir(new.as_fd()).sys(|| format!("chdir {}", rootfs.display()))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; it is
    // then unmounted from "." (the old root) without a directory for it.
    nix::unistd::pivot_root(".", ".").sys(|| format!("pivot_root {}", rootfs.display()))?;
    nix::unistd::fchdir(old.as_fd()).sys(|| "chdir old root".into())?;
    // Make sure nothing of the old root propagates back when it is detached.
    nix::mount::mount::<str, str, str, str>(
        None,
        ".",
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )
    .sys(|| "make old root rslave".into())?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH).sys(|| "detach old root".into())?;
    nix::unistd::chdir("/").sys(|| "chdir /".into())?;
    Ok(())
}

/// --no-pivot: move the rootfs onto / and chroot (for ramfs roots).
pub fn move_root(rootfs: &Path) -> Result<()> {
    explain::step(&catalog::NO_PIVOT, || {
        format!("mount --move {} /; chroot .", rootfs.display())
    });
    nix::unistd::chdir(rootfs).sys(|| format!("chdir {}", rootfs.display()))?;
    nix::mount::mount::<str, str, str, str>(Some("."), "/", None, MsFlags::MS_MOVE, None)
        .sys(|| format!("move {} to /", rootfs.display()))?;
    nix::unistd::chroot(".").sys(|| "chroot .".into())?;
    nix::unistd::chdir("/").sys(|| "chdir /".into())?;
    Ok(())
}

/// A path listed in maskedPaths or readonlyPaths, opened without following a
/// last symlink and without leaving the root; `None` when it does not exist
/// (both lists name paths that only some kernels have).
fn open_listed_path(root: BorrowedFd, field: &str, p: &str) -> Result<Option<OwnedFd>> {
    match open_in_root(root, Path::new(p), OFlag::O_PATH | OFlag::O_NOFOLLOW) {
        Ok(fd) => Ok(Some(fd)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(Error::sys(format!("{field}: open {p}"), e)),
    }
}

/// Mask paths inside the (already pivoted) root.
pub fn mask_paths(paths: &[String]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    explain::step(&catalog::MASKED_PATHS, || paths.join(" "));
    let root = open_dir_path(Path::new("/"))?;
    for p in paths {
        let Some(fd) = open_listed_path(root.as_fd(), "maskedPaths", p)? else {
            continue;
        };
        let st = nix::sys::stat::fstat(fd.as_fd()).sys(|| format!("maskedPaths: stat {p}"))?;
        let target = fd_path(fd.as_fd());
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            nix::mount::mount::<str, str, str, str>(
                Some("tmpfs"),
                target.as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            )
            .sys(|| format!("maskedPaths: mount empty tmpfs on {p}"))?;
        } else {
            nix::mount::mount::<str, str, str, str>(
                Some("/dev/null"),
                target.as_str(),
                None,
                MsFlags::MS_BIND,
                None,
            )
            .sys(|| format!("maskedPaths: bind /dev/null on {p}"))?;
        }
    }
    Ok(())
}

/// Make paths read-only inside the (already pivoted) root.
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    explain::step(&catalog::READONLY_PATHS, || paths.join(" "));
    let root = open_dir_path(Path::new("/"))?;
    for p in paths {
        let Some(fd) = open_listed_path(root.as_fd(), "readonlyPaths", p)? else {
            continue;
        };
        let target = fd_path(fd.as_fd());
        nix::mount::mount::<str, str, str, str>(
            Some(target.as_str()),
            target.as_str(),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .sys(|| format!("readonlyPaths: bind {p}"))?;
        let top = open_in_root(
            root.as_fd(),
            Path::new(p),
            OFlag::O_PATH | OFlag::O_NOFOLLOW,
        )
        .map_err(|e| Error::sys(format!("readonlyPaths: reopen {p}"), e))?;
        super::mounts::remount_bind(&fd_path(top.as_fd()), MsFlags::MS_RDONLY, MsFlags::empty())
            .sys(|| format!("readonlyPaths: remount {p} read-only"))?;
    }
    Ok(())
}

/// Remount / read-only (root.readonly).
pub fn readonly_root() -> Result<()> {
    explain::step(&catalog::ROOT_READONLY, || {
        "mount -o remount,bind,ro /".into()
    });
    super::mounts::remount_bind("/", MsFlags::MS_RDONLY, MsFlags::empty())
        .sys(|| "remount / read-only".into())
}

/// Apply rootfsPropagation to the new / after pivot_root (or the move):
/// the rootfs was bound from a parent made private, so it starts private,
/// and a shared or slave rootfs needs the flag again on the mount that is
/// now /. As runc 1.2 does; private is already the case and skipped.
pub fn set_root_propagation(propagation: Option<&str>) -> Result<()> {
    let Some(flag) = propagation
        .filter(|s| !s.is_empty())
        .and_then(propagation_flag)
        .filter(|f| !f.contains(MsFlags::MS_PRIVATE))
    else {
        return Ok(());
    };
    explain::step(&catalog::MOUNT_PROPAGATION, || {
        format!("mount(NULL, \"/\", NULL, {}, NULL)", prop_name(flag))
    });
    nix::mount::mount::<str, str, str, str>(None, "/", None, flag, None)
        .sys(|| format!("set rootfsPropagation {} on /", prop_name(flag)))
}

/// Without a mount namespace the container's mounts land in the runtime's
/// (the host's) and its root is entered with chroot. What cannot be done
/// there is refused: masking and read-only paths (runc refuses them too: the
/// host's /proc/sys would be what is made read-only), and a user namespace
/// (it may not mount in the host's mount namespace). rootfsPropagation and
/// root.readonly apply to the container's own bind mount of the rootfs.
pub fn check_without_mountns(
    linux: &oci_spec::runtime::Linux,
    asked: &super::namespaces::Asked,
) -> crate::error::Checked {
    use crate::error::FieldError;
    if asked.has(oci_spec::runtime::LinuxNamespaceType::Mount) {
        return Ok(());
    }
    for (field, list) in [
        ("linux.maskedPaths", linux.masked_paths()),
        ("linux.readonlyPaths", linux.readonly_paths()),
    ] {
        if list.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(FieldError::new(
                field,
                "unable to restrict sys entries without a private mount namespace: remove this field or add {\"type\": \"mount\"} to linux.namespaces",
            ));
        }
    }
    if asked.userns {
        return Err(FieldError::new(
            "linux.namespaces",
            "a user namespace without a mount namespace cannot mount the rootfs in the runtime's mount namespace: add {\"type\": \"mount\"} or remove the user namespace",
        ));
    }
    Ok(())
}

/// linux.rootfsPropagation: one of the mount propagation words.
pub fn check_propagation(linux: &oci_spec::runtime::Linux) -> crate::error::Checked {
    match linux.rootfs_propagation() {
        Some(prop) if !prop.is_empty() && propagation_flag(prop).is_none() => {
            Err(crate::error::FieldError::new(
                "linux.rootfsPropagation",
                format!("{prop:?} is not one of shared, slave, private, unbindable, rshared, rslave, rprivate, runbindable"),
            ))
        }
        _ => Ok(()),
    }
}

/// linux.maskedPaths and readonlyPaths: absolute, without `..`.
pub fn check_paths(linux: &oci_spec::runtime::Linux) -> crate::error::Checked {
    for (field, list) in [
        ("linux.maskedPaths", linux.masked_paths()),
        ("linux.readonlyPaths", linux.readonly_paths()),
    ] {
        for (i, p) in list.iter().flatten().enumerate() {
            let pp = Path::new(p);
            if !pp.is_absolute() || super::fs::has_dotdot(pp) {
                return Err(crate::error::FieldError::new(
                    format!("{field}[{i}]"),
                    format!("{p:?} must be an absolute path without '..'"),
                ));
            }
        }
    }
    Ok(())
}
