//! Mount entries of config.json: option parsing (pure, unit-tested) and the
//! mount itself, always onto a descriptor resolved inside the rootfs.

use super::fs::{fd_path, mkdir_all_in_root, open_in_root, touch_in_root};
use crate::error::{Error, FieldError, Result};
use crate::explain::{self, catalog};
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxIdMapping, Mount};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Mount options split into flags, propagation, recursive attributes and data.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// Flags set by options (MS_RDONLY, MS_NOSUID, MS_BIND, ...).
    pub flags: MsFlags,
    /// Flags cleared by options (rw clears MS_RDONLY, and so on).
    pub cleared: MsFlags,
    /// Propagation changes applied after the mount, in order.
    pub propagation: Vec<MsFlags>,
    /// mount_setattr attributes set recursively (rro, rnosuid, ...).
    pub rec_set: u64,
    /// mount_setattr attributes cleared recursively (rrw, rsuid, ...).
    pub rec_clear: u64,
    /// `idmap` or `ridmap` was given.
    pub idmap: Option<bool>,
    /// tmpcopyup: copy the image's directory contents into a new tmpfs.
    pub tmpcopyup: bool,
    /// Everything else, joined with commas, passed as mount data.
    pub data: String,
}

impl Default for Parsed {
    fn default() -> Self {
        Parsed {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            rec_set: 0,
            rec_clear: 0,
            idmap: None,
            tmpcopyup: false,
            data: String::new(),
        }
    }
}

/// Propagation words of rootfsPropagation and mount options.
pub const PROPAGATION_OPTIONS: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

/// The propagation flag of a rootfsPropagation or mount option word.
pub fn propagation_flag(s: &str) -> Option<MsFlags> {
    PROPAGATION_OPTIONS
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, f)| *f)
}

/// Options that are mount(2) flags: (word, flags set, flags cleared).
pub const FLAG_OPTIONS: &[(&str, MsFlags, MsFlags)] = &[
    ("ro", MsFlags::MS_RDONLY, MsFlags::empty()),
    ("rw", MsFlags::empty(), MsFlags::MS_RDONLY),
    ("nosuid", MsFlags::MS_NOSUID, MsFlags::empty()),
    ("suid", MsFlags::empty(), MsFlags::MS_NOSUID),
    ("nodev", MsFlags::MS_NODEV, MsFlags::empty()),
    ("dev", MsFlags::empty(), MsFlags::MS_NODEV),
    ("noexec", MsFlags::MS_NOEXEC, MsFlags::empty()),
    ("exec", MsFlags::empty(), MsFlags::MS_NOEXEC),
    ("sync", MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
    ("async", MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
    ("dirsync", MsFlags::MS_DIRSYNC, MsFlags::empty()),
    ("remount", MsFlags::MS_REMOUNT, MsFlags::empty()),
    ("mand", MsFlags::MS_MANDLOCK, MsFlags::empty()),
    ("nomand", MsFlags::empty(), MsFlags::MS_MANDLOCK),
    ("atime", MsFlags::empty(), MsFlags::MS_NOATIME),
    ("noatime", MsFlags::MS_NOATIME, MsFlags::empty()),
    ("diratime", MsFlags::empty(), MsFlags::MS_NODIRATIME),
    ("nodiratime", MsFlags::MS_NODIRATIME, MsFlags::empty()),
    ("relatime", MsFlags::MS_RELATIME, MsFlags::empty()),
    ("norelatime", MsFlags::empty(), MsFlags::MS_RELATIME),
    ("strictatime", MsFlags::MS_STRICTATIME, MsFlags::empty()),
    ("nostrictatime", MsFlags::empty(), MsFlags::MS_STRICTATIME),
    ("lazytime", MsFlags::MS_LAZYTIME, MsFlags::empty()),
    ("silent", MsFlags::MS_SILENT, MsFlags::empty()),
    ("defaults", MsFlags::empty(), MsFlags::empty()),
    ("bind", MsFlags::MS_BIND, MsFlags::empty()),
    (
        "rbind",
        MsFlags::MS_BIND.union(MsFlags::MS_REC),
        MsFlags::empty(),
    ),
];

/// Recursive mount attributes (mount_setattr): (word, attribute, set or clear).
pub const RECURSIVE_OPTIONS: &[(&str, u64, bool)] = &[
    ("rro", ATTR_RDONLY, true),
    ("rrw", ATTR_RDONLY, false),
    ("rnosuid", ATTR_NOSUID, true),
    ("rsuid", ATTR_NOSUID, false),
    ("rnodev", ATTR_NODEV, true),
    ("rdev", ATTR_NODEV, false),
    ("rnoexec", ATTR_NOEXEC, true),
    ("rexec", ATTR_NOEXEC, false),
    ("rnodiratime", ATTR_NODIRATIME, true),
    ("rdiratime", ATTR_NODIRATIME, false),
    ("rnoatime", ATTR_NOATIME, true),
    ("rstrictatime", ATTR_STRICTATIME, true),
    ("rrelatime", ATTR_RELATIME, true),
    ("rnosymfollow", ATTR_NOSYMFOLLOW, true),
    ("rsymfollow", ATTR_NOSYMFOLLOW, false),
];

/// Options the runtime itself acts on (neither flags nor mount data).
/// `idmap` and `ridmap` are understood too, but the features document lists
/// them under mountExtensions, not mountOptions.
pub const RUNTIME_OPTIONS: &[&str] = &["tmpcopyup"];

/// The option words [`parse_options`] understands (never passed to mount(2)
/// as data), sorted: the `mountOptions` of the features document.
pub fn known_options() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = FLAG_OPTIONS
        .iter()
        .map(|(n, ..)| *n)
        .chain(PROPAGATION_OPTIONS.iter().map(|(n, _)| *n))
        .chain(RECURSIVE_OPTIONS.iter().map(|(n, ..)| *n))
        .chain(RUNTIME_OPTIONS.iter().copied())
        .collect();
    v.sort_unstable();
    v
}

const ATTR_RDONLY: u64 = 0x1;
const ATTR_NOSUID: u64 = 0x2;
const ATTR_NODEV: u64 = 0x4;
const ATTR_NOEXEC: u64 = 0x8;
const ATTR_RELATIME: u64 = 0x0;
const ATTR_NOATIME: u64 = 0x10;
const ATTR_STRICTATIME: u64 = 0x20;
/// The atime modes are one value, not bits: setting one also needs the whole
/// mask in attr_clr, or mount_setattr fails with EINVAL.
const ATTR__ATIME: u64 = 0x70;
const ATTR_NODIRATIME: u64 = 0x80;
const ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// A config option is acceptable (used by validation).
pub fn check_option(o: &str) -> std::result::Result<(), String> {
    if o.contains('\0') {
        return Err(format!("{o:?} contains a NUL byte"));
    }
    Ok(())
}

/// Split mount options as runc does.
pub fn parse_options(opts: &[String]) -> Parsed {
    let mut p = Parsed::default();
    let mut data = Vec::new();
    for o in opts {
        let o = o.as_str();
        let Some((_, set, clear)) = FLAG_OPTIONS.iter().find(|(n, ..)| *n == o).copied() else {
            if let Some(pf) = propagation_flag(o) {
                p.propagation.push(pf);
                continue;
            }
            if let Some((_, a, set)) = RECURSIVE_OPTIONS.iter().find(|(n, ..)| *n == o) {
                let (a, set) = (*a, *set);
                if set {
                    if a & ATTR__ATIME == a {
                        // One atime mode replaces another (the last wins).
                        p.rec_set = (p.rec_set & !ATTR__ATIME) | a;
                        p.rec_clear |= ATTR__ATIME;
                    } else {
                        p.rec_set |= a;
                    }
                } else {
                    p.rec_clear |= a;
                }
                continue;
            }
            match o {
                "idmap" => p.idmap = Some(false),
                "ridmap" => p.idmap = Some(true),
                "tmpcopyup" => p.tmpcopyup = true,
                "" => {}
                _ => data.push(o),
            }
            continue;
        };
        p.flags.insert(set);
        p.flags.remove(clear);
        p.cleared.insert(clear);
    }
    p.data = data.join(",");
    p
}

/// Host-side facts the cgroup mount needs: per hierarchy, where it is mounted
/// on the host and the container's directory in it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CgroupMountInfo {
    /// (controller name, host directory of the container's cgroup).
    pub v1: Vec<(String, PathBuf)>,
    /// The container's directory in the cgroup2 hierarchy (the whole view
    /// on a unified host, `unified/` beside the v1 ones on a hybrid host).
    pub v2: Option<PathBuf>,
    /// A new cgroup namespace is created.
    pub cgroupns: bool,
}

/// Context for mounting into one rootfs.
pub struct MountCtx<'a> {
    /// O_PATH descriptor of the rootfs (after it was bind-mounted onto itself).
    pub root: BorrowedFd<'a>,
    /// Path of the rootfs on the host, for messages.
    pub rootfs: &'a Path,
    /// Cgroup facts for `type: cgroup`.
    pub cgroup: &'a CgroupMountInfo,
    /// The container has its own user namespace (mknod and some flags are not allowed).
    pub userns: bool,
    /// mount label (SELinux context) appended to data where supported.
    pub label: Option<&'a str>,
    /// Detached, idmapped trees made by the parent, by mount index.
    pub idmapped: &'a [(usize, OwnedFd)],
    /// The pid namespace the config joins by path, which this process is
    /// not in yet: procfs is mounted for that namespace (`pidns=`), never
    /// for the runtime's, whose processes it would show.
    pub pidns: Option<BorrowedFd<'a>>,
    /// The tmpfs mounts made since the last mount whose destination was
    /// walked to from the rootfs's root (see [`FreshDir`]).
    pub fresh: std::cell::RefCell<Vec<FreshDir>>,
}

/// A tmpfs this runtime just mounted, with nothing of the image in it (no
/// tmpcopyup), and nothing mounted since on it or on a directory above it:
/// every mount after it went into a directory made new in such a tmpfs. A
/// destination that is a new name directly in it (/dev/pts after /dev) is
/// made there with mkdirat and mounted on by name below one descriptor of
/// it, found once with the same openat2 walk from the root, instead of
/// three walks (the destination, its parent, the destination again). Any
/// mount walked to from the root could cover it (an image symlink leads
/// anywhere), so it ends the list.
pub struct FreshDir {
    /// Its destination, as [`clean_rel`](super::fs::clean_rel) gives it.
    rel: PathBuf,
    /// Its root, opened when first needed.
    fd: Option<OwnedFd>,
}

/// The target for a mount at `rel` made as a new directory directly in a
/// [`FreshDir`], as a `/proc/self/fd/N/name` path; None when `rel` is not
/// such a name or the directory cannot be made there (the walk from the
/// root is then the way).
fn fresh_target(root: BorrowedFd<'_>, fresh: &mut [FreshDir], rel: &Path) -> Option<String> {
    let (parent, name) = (rel.parent()?, rel.file_name()?.to_str()?);
    let f = fresh.iter_mut().find(|f| f.rel == parent)?;
    if f.fd.is_none() {
        f.fd = Some(open_in_root(root, &f.rel, OFlag::O_PATH | OFlag::O_DIRECTORY).ok()?);
    }
    let fd = f.fd.as_ref()?;
    nix::sys::stat::mkdirat(
        fd.as_fd(),
        name,
        nix::sys::stat::Mode::from_bits_truncate(0o755),
    )
    .ok()?;
    Some(format!("{}/{name}", fd_path(fd.as_fd())))
}

/// What [`mount_entry`] did with a mount.
#[derive(Debug, PartialEq, Eq)]
pub enum Mounted {
    Done,
    /// A procfs for a joined pid namespace on a kernel without procfs's
    /// `pidns=` option (before Linux 6.15): its directory is made, and the
    /// caller mounts it again from inside that namespace, once its root is
    /// the container's.
    Deferred,
}

fn sys_mount(
    src: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    nix::mount::mount(src, target, fstype, flags, data)
}

/// Mount a procfs entry that [`Mounted::Deferred`] left, from inside the
/// joined pid namespace once the container's rootfs is `/`. By its path:
/// no procfs is mounted yet, so `/proc/self/fd` names nothing (its
/// directory was checked and made before).
pub fn mount_deferred_proc(m: &Mount, idx: usize) -> Result<()> {
    let dest = m.destination();
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    explain::step(&catalog::MOUNT, || {
        format!(
            "mount proc on {} (in the joined pid namespace)",
            dest.display()
        )
    });
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    sys_mount(
        Some("proc"),
        &dest.to_string_lossy(),
        Some("proc"),
        opts.flags & !MsFlags::MS_REMOUNT,
        data,
    )
    .map_err(|e| {
        Error::msg(format!(
            "mounts[{idx}] (proc on {}): mount -t proc: {e}",
            dest.display()
        ))
    })
}

/// Mount one config entry inside the rootfs.
pub fn mount_entry(ctx: &MountCtx<'_>, m: &Mount, idx: usize) -> Result<Mounted> {
    let dest = m.destination();
    let typ = m.typ().as_deref().unwrap_or("");
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let is_bind = opts.flags.contains(MsFlags::MS_BIND) || typ == "bind";
    let src = m
        .source()
        .as_ref()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    explain::step(&catalog::MOUNT, || {
        let o = m
            .options()
            .as_ref()
            .map(|v| v.join(","))
            .unwrap_or_default();
        format!(
            "mount {} {src} on {} ({})",
            if is_bind { "bind" } else { typ },
            dest.display(),
            if o.is_empty() { "defaults".into() } else { o }
        )
    });
    let err = |what: String, e: nix::Error| {
        Error::msg(format!(
            "mounts[{idx}] ({} on {}): {what}: {e}",
            if is_bind { "bind" } else { typ },
            dest.display()
        ))
    };

    // Kept only by a mount made through it (below).
    let mut fresh = ctx.fresh.take();
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(ctx, m, &opts, idx).map(|()| Mounted::Done);
    }

    let data_with_label = |data: &str| -> String {
        match ctx.label {
            Some(l) if !l.is_empty() && typ != "proc" && typ != "sysfs" && !is_bind => {
                if data.is_empty() {
                    format!("context=\"{l}\"")
                } else {
                    format!("{data},context=\"{l}\"")
                }
            }
            _ => data.to_string(),
        }
    };

    if is_bind {
        let src_meta = std::fs::metadata(&src).map_err(|e| {
            Error::msg(format!(
                "mounts[{idx}] bind source {src}: {e} (the source must exist on the host)"
            ))
        })?;
        let target_fd = if src_meta.is_dir() {
            mkdir_all_in_root(ctx.root, dest)?
        } else {
            touch_in_root(ctx.root, dest)?
        };
        if let Some((_, tree)) = ctx.idmapped.iter().find(|(i, _)| *i == idx) {
            explain::step(&catalog::IDMAP_MOUNT, || {
                format!("move_mount(idmapped tree of {src}, {})", dest.display())
            });
            move_mount(tree.as_fd(), target_fd.as_fd())
                .map_err(|e| err(format!("move the idmapped tree of {src} into place"), e))?;
        } else if opts.idmap.is_some() {
            return Err(Error::msg(format!(
                "mounts[{idx}]: idmapped, but the runtime prepared no idmapped tree for it"
            )));
        } else {
            let bind_flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
            sys_mount(
                Some(&src),
                &fd_path(target_fd.as_fd()),
                None,
                bind_flags,
                None,
            )
            .map_err(|e| err(format!("bind {src}"), e))?;
        }
        // Reopen: the descriptor above names the directory under the new mount.
        let top = open_in_root(ctx.root, dest, OFlag::O_PATH)
            .map_err(|e| err("reopen after mount".into(), e))?;
        let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            remount_bind(&fd_path(top.as_fd()), extra, opts.cleared)
                .map_err(|e| err("remount with options".into(), e))?;
        }
        apply_propagation(&fd_path(top.as_fd()), &opts)
            .map_err(|e| err("set propagation".into(), e))?;
        apply_recursive(top.as_fd(), &opts).map_err(|e| err("mount_setattr".into(), e))?;
        return Ok(Mounted::Done);
    }

    // procfs and sysfs: an existing destination must be an ordinary
    // directory, and is then the target as opened.
    let checked = if typ == "proc" || typ == "sysfs" {
        check_ordinary_dir(ctx, typ, dest, idx)?
    } else {
        None
    };
    let rel = crate::linux::fs::clean_rel(dest);
    let in_fresh = match checked {
        None if !opts.tmpcopyup => fresh_target(ctx.root, &mut fresh, &rel),
        _ => None,
    };
    let (target_fd, target, existed) = match (checked, in_fresh) {
        (_, Some(t)) => (None, t, false),
        (Some(fd), None) => {
            fresh.clear();
            let t = fd_path(fd.as_fd());
            (Some(fd), t, true)
        }
        (None, None) => {
            fresh.clear();
            let (fd, existed) = crate::linux::fs::mkdir_all_in_root_existed(ctx.root, dest)?;
            let t = fd_path(fd.as_fd());
            (Some(fd), t, existed)
        }
    };
    // As runc: a tmpfs over an existing directory takes that directory's
    // mode (an image's 1777 /tmp stays 1777); a new one keeps its mode=.
    let mode_before = target_fd
        .as_ref()
        .filter(|_| typ == "tmpfs" && existed)
        .and_then(|fd| nix::sys::stat::fstat(fd.as_fd()).ok())
        .map(|st| st.st_mode & 0o7777);
    let mut flags = opts.flags & !MsFlags::MS_REMOUNT;
    // A read-only tmpfs is mounted writable, filled and chmod-ed, then made
    // read-only (as runc does).
    let late_ro = typ == "tmpfs" && flags.contains(MsFlags::MS_RDONLY);
    if late_ro {
        flags.remove(MsFlags::MS_RDONLY);
    }
    let mut data = data_with_label(&opts.data);
    let pidns = ctx.pidns.filter(|_| typ == "proc");
    if let Some(ns) = pidns {
        let opt = format!("pidns=/proc/self/fd/{}", ns.as_raw_fd());
        data = if data.is_empty() {
            opt
        } else {
            format!("{data},{opt}")
        };
    }
    let src_opt = if src.is_empty() {
        Some(typ)
    } else {
        Some(src.as_str())
    };
    let r = sys_mount(
        src_opt,
        &target,
        Some(typ),
        flags,
        if data.is_empty() { None } else { Some(&data) },
    );
    match r {
        Ok(()) => {}
        Err(nix::errno::Errno::EPERM) | Err(nix::errno::Errno::EACCES)
            if typ == "sysfs" && ctx.userns =>
        {
            // sysfs needs a network namespace owned by our user namespace;
            // like runc, fall back to a read-only recursive bind of the host's.
            sys_mount(
                Some("/sys"),
                &target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(|e| err("bind /sys (rootless fallback)".into(), e))?;
            let top =
                open_in_root(ctx.root, dest, OFlag::O_PATH).map_err(|e| err("reopen".into(), e))?;
            let _ = remount_bind(
                &fd_path(top.as_fd()),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                MsFlags::empty(),
            );
        }
        Err(nix::errno::Errno::EINVAL) if pidns.is_some() => {
            // A kernel before 6.15 does not know pidns=. Mounting procfs here
            // would show the runtime's pid namespace (the host's processes,
            // and /proc/1/root) to the container: leave it for the process
            // inside the joined namespace.
            return Ok(Mounted::Deferred);
        }
        Err(nix::errno::Errno::EINVAL) if typ == "mqueue" && ctx.userns => {
            sys_mount(
                Some("/dev/mqueue"),
                &target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(|e| err("bind /dev/mqueue (rootless fallback)".into(), e))?;
        }
        Err(e) => return Err(err(format!("mount -t {typ}"), e)),
    }
    let plain = opts.propagation.is_empty() && opts.rec_set == 0 && opts.rec_clear == 0;
    if typ == "tmpfs" && !opts.tmpcopyup && !late_ro && plain {
        fresh.push(FreshDir { rel, fd: None });
    }
    ctx.fresh.replace(fresh);
    // The mount's top, for what is done to the new mount itself: nothing,
    // for most (their flags went with the mount), nor for a tmpfs whose
    // root mode is already right (a new directory's, or the mode= the
    // covered directory has).
    let tmpfs_done = typ == "tmpfs"
        && !opts.tmpcopyup
        && !late_ro
        && (mode_before.is_none() || mode_before == tmpfs_mode(&data));
    if (typ != "tmpfs" || tmpfs_done)
        && opts.propagation.is_empty()
        && opts.rec_set == 0
        && opts.rec_clear == 0
    {
        return Ok(Mounted::Done);
    }
    let top = open_in_root(ctx.root, dest, OFlag::O_PATH)
        .map_err(|e| err("reopen after mount".into(), e))?;
    if typ == "tmpfs" {
        let mounted = nix::sys::stat::fstat(top.as_fd()).map_err(|e| err("stat".into(), e))?;
        if opts.tmpcopyup {
            // tmpcopyup never mounts through a FreshDir: the directory
            // under the tmpfs is at hand.
            let lower = target_fd.as_ref().ok_or_else(|| {
                Error::msg(format!(
                    "tmpcopyup of {}: no lower directory",
                    dest.display()
                ))
            })?;
            copy_up(lower.as_fd(), top.as_fd(), dest)?;
        }
        tmpfs_root_attrs(&fd_path(top.as_fd()), &mounted, mode_before, opts.tmpcopyup)
            .map_err(|e| err("set the tmpfs root's mode".into(), e))?;
        if late_ro {
            let per_mount = MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_NOATIME
                | MsFlags::MS_NODIRATIME
                | MsFlags::MS_RELATIME
                | MsFlags::MS_STRICTATIME;
            remount_bind(
                &fd_path(top.as_fd()),
                (flags & per_mount) | MsFlags::MS_RDONLY,
                opts.cleared,
            )
            .map_err(|e| err("remount read-only".into(), e))?;
        }
    }
    apply_propagation(&fd_path(top.as_fd()), &opts)
        .map_err(|e| err("set propagation".into(), e))?;
    apply_recursive(top.as_fd(), &opts).map_err(|e| err("mount_setattr".into(), e))?;
    Ok(Mounted::Done)
}

/// The mode a new tmpfs mounted with `data` gives its root, as tmpfs reads
/// it: the last `mode=` (octal, masked to 07777), else 01777. None when a
/// `mode=` does not parse here (the mount's own root is then looked at).
fn tmpfs_mode(data: &str) -> Option<u32> {
    match data.rsplit(',').find_map(|o| o.strip_prefix("mode=")) {
        None => Some(0o1777),
        Some(v) => u32::from_str_radix(v, 8).ok().map(|m| m & 0o7777),
    }
}

/// procfs and sysfs go where the config says, not where the image points:
/// an existing destination that is not a directory (a symlink in the image,
/// say /proc -> /tmp/x) is refused as runc refuses it, instead of being
/// followed inside the rootfs.
fn check_ordinary_dir(
    ctx: &MountCtx<'_>,
    typ: &str,
    dest: &Path,
    idx: usize,
) -> Result<Option<OwnedFd>> {
    // O_DIRECTORY: an ordinary directory opens, and needs no stat; what
    // else is there fails with ENOTDIR and is looked at below.
    let dir = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY;
    let fd = match open_in_root(ctx.root, dest, dir) {
        Ok(fd) => return Ok(Some(fd)),
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(nix::errno::Errno::ENOTDIR) => {
            open_in_root(ctx.root, dest, OFlag::O_PATH | OFlag::O_NOFOLLOW).map_err(|e| {
                Error::sys(
                    format!("mounts[{idx}] ({typ} on {}): open", dest.display()),
                    e,
                )
            })?
        }
        Err(e) => {
            return Err(Error::sys(
                format!("mounts[{idx}] ({typ} on {}): open", dest.display()),
                e,
            ))
        }
    };
    let st = nix::sys::stat::fstat(fd.as_fd())
        .map_err(|e| Error::sys(format!("mounts[{idx}]: stat {}", dest.display()), e))?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return Ok(Some(fd));
    }
    let what = if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        "a symlink"
    } else {
        "not a directory"
    };
    Err(Error::msg(format!(
        "mounts[{idx}] ({typ} on {}): filesystem {typ:?} must be mounted on ordinary directory: {} in the rootfs {} is {what}; make it a plain directory in the image",
        dest.display(),
        dest.display(),
        ctx.rootfs.display(),
    )))
}

/// The restrictions a read-only remount keeps from the mount as it is.
const KEPT_ON_RO: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Remount a bind mount with flags. A remount replaces every per-mount
/// flag, so making a mount read-only would also drop its nosuid, nodev and
/// noexec (a /proc mounted nosuid,nodev,noexec, a rootfs on a nosuid host
/// filesystem): a read-only remount keeps those the mount has now, unless
/// the config clears them (`cleared`: suid, dev, exec), as runc's
/// readonlyPath does. When the kernel refuses to clear a flag locked by the
/// source mount (in a user namespace), the locked ones are kept and the
/// call retried, as runc does.
///
/// The same change is first asked of mount_setattr(2), which changes only
/// the flags it names, so the mount's current flags need not be read
/// first ([`remount_attr`]); mount(2) is the way when it fails (a kernel
/// before 5.12, a flag locked in a user namespace).
pub fn remount_bind(target: &str, flags: MsFlags, cleared: MsFlags) -> nix::Result<()> {
    if let Ok(path) = std::ffi::CString::new(target) {
        let attr = remount_attr(flags, cleared);
        if super::syscall::mount_setattr(None, &path, 0, &attr).is_ok() {
            return Ok(());
        }
    }
    remount_by_mount(target, flags, cleared)
}

/// [`remount_bind`] with mount(2) alone.
fn remount_by_mount(target: &str, flags: MsFlags, cleared: MsFlags) -> nix::Result<()> {
    let base = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    let mut flags = flags;
    if flags.contains(MsFlags::MS_RDONLY) {
        let now = statvfs_flags(target)?;
        flags |= now & KEPT_ON_RO & !cleared;
    }
    match sys_mount(None, target, None, base | flags, None) {
        Err(nix::errno::Errno::EPERM) => {
            let st = nix::sys::statvfs::statvfs(target)?;
            use nix::sys::statvfs::FsFlags;
            let mut f = flags;
            let locked = [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
                (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
            ];
            for (sf, mf) in locked {
                if st.flags().contains(sf) {
                    f |= mf;
                }
            }
            sys_mount(None, target, None, base | f, None)
        }
        r => r,
    }
}

/// The mount_setattr(2) change that leaves a mount with the per-mount flags
/// [`remount_bind`]'s mount(MS_REMOUNT|MS_BIND) gives it (when that needs no
/// retry): read-only as `flags` says; nosuid, nodev and noexec set when
/// `flags` has them, else kept on a read-only remount unless `cleared`, and
/// cleared on a writable one; the atime mode replaced when `flags` names
/// one (relatime unless noatime or strictatime), else kept; nosymfollow
/// cleared (a remount cannot keep it).
pub fn remount_attr(flags: MsFlags, cleared: MsFlags) -> MountAttr {
    let ro = flags.contains(MsFlags::MS_RDONLY);
    let mut a = MountAttr::default();
    if ro {
        a.attr_set |= ATTR_RDONLY;
    } else {
        a.attr_clr |= ATTR_RDONLY;
    }
    for (mf, at) in [
        (MsFlags::MS_NOSUID, ATTR_NOSUID),
        (MsFlags::MS_NODEV, ATTR_NODEV),
        (MsFlags::MS_NOEXEC, ATTR_NOEXEC),
    ] {
        if flags.contains(mf) {
            a.attr_set |= at;
        } else if !ro || cleared.contains(mf) {
            a.attr_clr |= at;
        }
    }
    let atime = MsFlags::MS_NOATIME
        | MsFlags::MS_NODIRATIME
        | MsFlags::MS_RELATIME
        | MsFlags::MS_STRICTATIME;
    if flags.intersects(atime) {
        // As mount(2) reads them: relatime unless noatime; strictatime
        // drops both; nodiratime beside any.
        a.attr_clr |= ATTR__ATIME | ATTR_NODIRATIME;
        a.attr_set |= if flags.contains(MsFlags::MS_STRICTATIME) {
            ATTR_STRICTATIME
        } else if flags.contains(MsFlags::MS_NOATIME) {
            ATTR_NOATIME
        } else {
            ATTR_RELATIME
        };
        if flags.contains(MsFlags::MS_NODIRATIME) {
            a.attr_set |= ATTR_NODIRATIME;
        }
    }
    a.attr_clr |= ATTR_NOSYMFOLLOW;
    a
}

/// The per-mount flags of the mount at `target`, as mount(2) flags.
fn statvfs_flags(target: &str) -> nix::Result<MsFlags> {
    use nix::sys::statvfs::FsFlags;
    let st = nix::sys::statvfs::statvfs(target)?;
    let mut f = MsFlags::empty();
    for (sf, mf) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if st.flags().contains(sf) {
            f |= mf;
        }
    }
    Ok(f)
}

fn apply_propagation(target: &str, opts: &Parsed) -> nix::Result<()> {
    for p in &opts.propagation {
        sys_mount(None, target, None, *p, None)?;
    }
    Ok(())
}

/// How a mount is idmapped: asked for with the `idmap`/`ridmap` option or by
/// giving the mount its own uidMappings/gidMappings.
#[derive(Debug, Clone, PartialEq)]
pub struct IdmapPlan {
    /// `ridmap`: the mapping applies to every mount of the tree.
    pub recursive: bool,
    /// `rbind`: the source's submounts are part of the tree.
    pub rbind: bool,
    /// The mount's own mappings (uid, gid); None means the container's
    /// user namespace.
    pub maps: Option<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>)>,
}

/// Whether mount `m` is idmapped: an `idmap`/`ridmap` option or mappings of its own.
pub fn idmap_plan(m: &Mount) -> Option<IdmapPlan> {
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let u = m.uid_mappings().clone().unwrap_or_default();
    let g = m.gid_mappings().clone().unwrap_or_default();
    let maps = (!u.is_empty() || !g.is_empty()).then_some((u, g));
    if opts.idmap.is_none() && maps.is_none() {
        return None;
    }
    Some(IdmapPlan {
        recursive: opts.idmap == Some(true),
        rbind: opts.flags.contains(MsFlags::MS_REC),
        maps,
    })
}

/// Check an idmapped mount entry (validation): a bind mount, with both
/// mappings when it has any. Errors are (field below mounts[i], reason).
pub fn check_idmap(m: &Mount, plan: &IdmapPlan) -> crate::error::Checked {
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let is_bind = opts.flags.contains(MsFlags::MS_BIND) || m.typ().as_deref() == Some("bind");
    if !is_bind {
        return Err(FieldError::of(
            "options".into(),
            "idmapped mounts are bind mounts here: add \"bind\" or \"rbind\" (or type \"bind\")"
                .into(),
        ));
    }
    if let Some((u, g)) = &plan.maps {
        if u.is_empty() || g.is_empty() {
            return Err(FieldError::of(
                if u.is_empty() {
                    "uidMappings"
                } else {
                    "gidMappings"
                }
                .into(),
                "an idmapped mount needs both uidMappings and gidMappings".into(),
            ));
        }
        for (f, list) in [("uidMappings", u), ("gidMappings", g)] {
            for (i, x) in list.iter().enumerate() {
                if x.size() == 0
                    || x.container_id() as u64 + x.size() as u64 > u32::MAX as u64
                    || x.host_id() as u64 + x.size() as u64 > u32::MAX as u64
                {
                    return Err(FieldError::of(
                        format!("{f}[{i}]"),
                        "size must be at least 1 and the range must end below 4294967295".into(),
                    ));
                }
            }
        }
    }
    Ok(())
}

use super::syscall::{move_mount, MountAttr, OPEN_TREE_CLONE};
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// Parent side of an idmapped mount: clone `src` as a detached tree
/// (open_tree OPEN_TREE_CLONE) and give it the mapping of `userns` with
/// mount_setattr(MOUNT_ATTR_IDMAP). This needs CAP_SYS_ADMIN over the
/// source's filesystem, that is host root, so it is done before the tree is
/// handed to the container's init, which moves it into place.
pub fn idmapped_tree(
    idx: usize,
    src: &Path,
    plan: &IdmapPlan,
    userns: BorrowedFd<'_>,
) -> Result<OwnedFd> {
    explain::step(&catalog::IDMAP_MOUNT, || {
        format!(
            "open_tree({}, OPEN_TREE_CLONE{}); mount_setattr(MOUNT_ATTR_IDMAP{})",
            src.display(),
            if plan.rbind { "|AT_RECURSIVE" } else { "" },
            if plan.recursive { ", AT_RECURSIVE" } else { "" }
        )
    });
    let what = if plan.recursive { "ridmap" } else { "idmap" };
    let csrc = super::fs::cstr(src)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if plan.rbind {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    let tree = super::syscall::open_tree(None, &csrc, flags)
        .map_err(|e| idmap_error(idx, what, src, "open_tree", e))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        userns_fd: userns.as_raw_fd() as u64,
        ..Default::default()
    };
    let at = if plan.recursive {
        libc::AT_RECURSIVE as libc::c_uint
    } else {
        0
    };
    if let Err(e) = super::syscall::mount_setattr(Some(tree.as_fd()), c"", at, &attr) {
        return Err(idmap_error(
            idx,
            what,
            src,
            "mount_setattr(MOUNT_ATTR_IDMAP)",
            e,
        ));
    }
    Ok(tree)
}

fn idmap_error(idx: usize, what: &str, src: &Path, call: &str, e: nix::errno::Errno) -> Error {
    use nix::errno::Errno;
    let why = match e {
        Errno::ENOSYS => "this kernel has no idmapped mounts (Linux 5.12 or later is needed)".to_string(),
        Errno::EINVAL => format!(
            "the filesystem of {} does not support idmapped mounts on this kernel (or a submount of it does not, or it is idmapped already)",
            src.display()
        ),
        Errno::EPERM => "idmapping a mount needs CAP_SYS_ADMIN over its filesystem, which a rootless runtime does not have".to_string(),
        Errno::ENOENT => format!("{} does not exist", src.display()),
        _ => String::new(),
    };
    Error::Unsupported(format!(
        "mounts[{idx}]: {what} mount of {}: {call}: {e}{}{why}",
        src.display(),
        if why.is_empty() { "" } else { ": " }
    ))
}

fn apply_recursive(fd: BorrowedFd<'_>, opts: &Parsed) -> nix::Result<()> {
    if opts.rec_set == 0 && opts.rec_clear == 0 {
        return Ok(());
    }
    let attr = MountAttr {
        attr_set: opts.rec_set,
        attr_clr: opts.rec_clear,
        ..Default::default()
    };
    super::syscall::mount_setattr(Some(fd), c"", libc::AT_RECURSIVE as libc::c_uint, &attr)
}

/// The tmpfs root's mode and owner after the mount: the covered directory's
/// mode if there was one, else the mounted mode; the owner as mounted (cp -a
/// of the copy-up also copies the covered directory's mode and owner).
fn tmpfs_root_attrs(
    top: &str,
    mounted: &nix::sys::stat::FileStat,
    mode_before: Option<u32>,
    copied: bool,
) -> nix::Result<()> {
    use nix::sys::stat::{fchmodat, FchmodatFlags, Mode};
    // chown first: it may clear set-id bits that the chmod then restores.
    if copied {
        nix::unistd::chown(
            top,
            Some(nix::unistd::Uid::from_raw(mounted.st_uid)),
            Some(nix::unistd::Gid::from_raw(mounted.st_gid)),
        )?;
    }
    let want = mode_before.unwrap_or(mounted.st_mode & 0o7777);
    if want != mounted.st_mode & 0o7777 || copied {
        fchmodat(
            nix::fcntl::AT_FDCWD,
            top,
            Mode::from_bits_truncate(want),
            FchmodatFlags::FollowSymlink,
        )?;
    }
    Ok(())
}

fn copy_up(lower: BorrowedFd<'_>, upper: BorrowedFd<'_>, dest: &Path) -> Result<()> {
    // `lower` was opened before the tmpfs was mounted, so it still names the
    // image's directory underneath. cp runs as a child, so hand it both
    // descriptors without close-on-exec and let it reach them by number.
    let fail = |why: String| {
        Error::msg(format!(
            "tmpcopyup of {}: copying the image's contents into the tmpfs failed: {why}",
            dest.display()
        ))
    };
    let inherit = |fd: BorrowedFd<'_>| {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD(10))
            // SAFETY: F_DUPFD returned a new descriptor that nothing else owns.
            .map(|n| unsafe { OwnedFd::from_raw_fd(n) })
            .map_err(|e| fail(format!("dup: {e}")))
    };
    let (lo, up) = (inherit(lower)?, inherit(upper)?);
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("/proc/self/fd/{}/.", lo.as_raw_fd()))
        .arg(format!("/proc/self/fd/{}/", up.as_raw_fd()))
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(fail(format!("cp -a exited with {s}"))),
        Err(e) => Err(fail(format!("cannot run cp: {e}"))),
    }
}

/// The container's view of /sys/fs/cgroup (`type: cgroup` or `cgroup2`),
/// read-only unless the mount's options say `rw`, as runc gives it.
///
/// * pure v2: the container's own cgroup2 directory (a fresh cgroup2 mount
///   when the container has a cgroup namespace, which shows the same);
/// * v1 or hybrid: a tmpfs holding one directory per v1 hierarchy, named as
///   on the host (`cpu,cpuacct` with `cpu` and `cpuacct` symlinks for
///   co-mounted controllers, `systemd` for the named one), each showing the
///   container's own cgroup, so `memory/memory.limit_in_bytes` inside reads
///   the container's limit. As with runc, the tmpfs root ends up mode 0555
///   (whatever the mount's ro/rw): the container's root cannot add entries
///   or replace the per-controller symlinks to spoof its cgroup view; a
///   hybrid host's cgroup2 part is not shown.
fn mount_cgroup(ctx: &MountCtx<'_>, m: &Mount, opts: &Parsed, idx: usize) -> Result<()> {
    let dest = m.destination();
    let err = |what: String, e: nix::Error| {
        Error::msg(format!(
            "mounts[{idx}] (cgroup on {}): {what}: {e}",
            dest.display()
        ))
    };
    let ro = opts.flags.contains(MsFlags::MS_RDONLY) || !opts.cleared.contains(MsFlags::MS_RDONLY);
    let base = opts.flags
        & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME);
    let leaf = base
        | if ro {
            MsFlags::MS_RDONLY
        } else {
            MsFlags::empty()
        };
    let target_fd = mkdir_all_in_root(ctx.root, dest)?;
    // One hierarchy mounted on `target`: a fresh mount in a cgroup
    // namespace (whose root is the container's cgroup), else a bind of the
    // container's host directory, then made read-only (and so on) as `leaf`
    // says. `reopen`: `target` is a descriptor of the directory under the
    // mount, so the mount is found again by walking `sub` from the rootfs;
    // else `target` is walked by name and reaches the mount itself.
    let attach = |target: &str,
                  reopen: bool,
                  sub: &Path,
                  hostdir: &Path,
                  fstype: &str,
                  data: Option<&str>|
     -> Result<()> {
        if ctx.cgroup.cgroupns {
            let src = if fstype == "cgroup2" {
                "cgroup2"
            } else {
                "cgroup"
            };
            return sys_mount(Some(src), target, Some(fstype), leaf, data)
                .map_err(|e| err(format!("mount -t {fstype} {}", data.unwrap_or("")), e));
        }
        sys_mount(
            Some(hostdir.to_str().unwrap_or("")),
            target,
            None,
            MsFlags::MS_BIND,
            None,
        )
        .map_err(|e| err(format!("bind {}", hostdir.display()), e))?;
        let top = if reopen {
            let fd =
                open_in_root(ctx.root, sub, OFlag::O_PATH).map_err(|e| err("reopen".into(), e))?;
            Some(fd)
        } else {
            None
        };
        let top_path = top
            .as_ref()
            .map_or(target.to_string(), |fd| fd_path(fd.as_fd()));
        remount_bind(&top_path, leaf, opts.cleared)
            .map_err(|e| err(format!("remount {}", sub.display()), e))
    };
    // One hierarchy at `sub` below the destination, its directory made and
    // found from the rootfs's root.
    let one = |sub: &Path, hostdir: &Path, fstype: &str, data: Option<&str>| -> Result<()> {
        let fd = mkdir_all_in_root(ctx.root, sub)?;
        attach(&fd_path(fd.as_fd()), true, sub, hostdir, fstype, data)
    };
    let hierarchies = cgroup_hierarchies(dest, ctx.cgroup);
    if let [h] = hierarchies.as_slice() {
        if h.data.is_none() {
            drop(target_fd);
            return one(&h.path, &h.host_dir, "cgroup2", None);
        }
    }
    sys_mount(
        Some("tmpfs"),
        &fd_path(target_fd.as_fd()),
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )
    .map_err(|e| err("mount tmpfs".into(), e))?;
    drop(target_fd);
    // The tmpfs root, found again by its path (the descriptor above names
    // the directory under it). The tmpfs is the runtime's own, just made,
    // 0755: only root writes in it (this process; the container's do not
    // exist yet), not the image, so the hierarchies' directories are made
    // and mounted on by name below this one descriptor, with no walk from
    // the rootfs's root for each.
    let tmp = open_in_root(ctx.root, dest, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .map_err(|e| err("reopen".into(), e))?;
    let tmp_path = fd_path(tmp.as_fd());
    for h in &hierarchies {
        let data = h.data.as_deref().unwrap_or("");
        // The hierarchy's name: one component below the destination.
        let name = h.path.strip_prefix(dest).ok().and_then(|r| {
            let mut c = r.components();
            match (c.next(), c.next()) {
                (Some(std::path::Component::Normal(n)), None) => n.to_str(),
                _ => None,
            }
        });
        let made = name.filter(|n| {
            nix::sys::stat::mkdirat(
                tmp.as_fd(),
                *n,
                nix::sys::stat::Mode::from_bits_truncate(0o755),
            )
            .is_ok()
        });
        match made {
            Some(n) => attach(
                &format!("{tmp_path}/{n}"),
                false,
                &h.path,
                &h.host_dir,
                "cgroup",
                Some(data),
            )?,
            // Not made here (there already, say): the walk from the root.
            None => one(&h.path, &h.host_dir, "cgroup", Some(data))?,
        }
        let ctrls: Vec<&str> = data.split(',').collect();
        if ctrls.len() > 1 {
            let name = h.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            for c in ctrls {
                match nix::unistd::symlinkat(name, tmp.as_fd(), c) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(err(format!("symlink {c} -> {name}"), e)),
                }
            }
        }
    }
    // The tmpfs mount itself is not read-only (as runc's), so its root
    // directory is made 0555, as runc leaves it: without CAP_DAC_OVERRIDE
    // the container's root can neither add entries nor swap the symlinks.
    // Each hierarchy below is a read-only mount when the mount asks for ro.
    nix::sys::stat::fchmod(tmp.as_fd(), nix::sys::stat::Mode::from_bits_truncate(0o555))
        .map_err(|e| err("chmod 0555 the cgroup tmpfs".into(), e))?;
    Ok(())
}

/// One hierarchy a `cgroup` mount shows inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupHierarchy {
    /// Where it appears in the container (the destination itself on a
    /// unified host, `<destination>/<name>` for each v1 hierarchy).
    pub path: PathBuf,
    /// The container's cgroup directory on the host: the bind's source
    /// when there is no new cgroup namespace.
    pub host_dir: PathBuf,
    /// The v1 mount data (its controllers, `cpu,cpuacct`), None for cgroup2.
    pub data: Option<String>,
}

/// The hierarchies a `cgroup` mount at `dest` shows, in mount order: the
/// one home of that layout, for mounting it and for naming its binds to
/// CRIU (checkpoint and restore). Co-mounted v1 controllers share one.
pub fn cgroup_hierarchies(dest: &Path, info: &CgroupMountInfo) -> Vec<CgroupHierarchy> {
    if info.v1.is_empty() {
        return info
            .v2
            .iter()
            .map(|d| CgroupHierarchy {
                path: dest.to_path_buf(),
                host_dir: d.clone(),
                data: None,
            })
            .collect();
    }
    let mut groups: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for (ctrl, hostdir) in &info.v1 {
        match groups.iter_mut().find(|(d, _)| d == hostdir) {
            Some((_, v)) => v.push(ctrl.clone()),
            None => groups.push((hostdir.clone(), vec![ctrl.clone()])),
        }
    }
    groups
        .into_iter()
        .map(|(host_dir, ctrls)| {
            let data = ctrls.join(",");
            let name = data.strip_prefix("name=").unwrap_or(&data).to_string();
            CgroupHierarchy {
                path: dest.join(name),
                host_dir,
                data: Some(data),
            }
        })
        .collect()
}

/// mounts[i]: a destination inside the rootfs, no NUL bytes, known options,
/// and an idmapped mount this runtime can make.
pub fn check(i: usize, m: &Mount, userns: bool) -> crate::error::Checked {
    let d = m.destination();
    if d.as_os_str().is_empty() {
        return Err(FieldError::new(format!("mounts[{i}].destination"), "empty"));
    }
    for (f, v) in [
        ("destination", Some(d.as_os_str())),
        ("source", m.source().as_ref().map(|p| p.as_os_str())),
        ("type", m.typ().as_ref().map(std::ffi::OsStr::new)),
    ] {
        if v.is_some_and(|v| v.as_encoded_bytes().contains(&0)) {
            return Err(FieldError::new(
                format!("mounts[{i}].{f}"),
                "contains a NUL byte",
            ));
        }
    }
    if super::fs::has_dotdot(d) {
        return Err(FieldError::new(
            format!("mounts[{i}].destination"),
            format!(
                "{} contains '..': a destination must stay inside the rootfs",
                d.display()
            ),
        ));
    }
    for o in m.options().iter().flatten() {
        check_option(o)
            .map_err(|reason| FieldError::new(format!("mounts[{i}].options"), reason))?;
    }
    if let Some(plan) = idmap_plan(m) {
        check_idmap(m, &plan).map_err(|e| e.under(&format!("mounts[{i}]")))?;
        if plan.maps.is_none() && !userns {
            return Err(FieldError::new(
                format!("mounts[{i}].options"),
                "idmap without uidMappings/gidMappings on the mount uses the container's user namespace, and there is none: add {\"type\": \"user\"} to linux.namespaces or give the mount its own mappings",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_hierarchies_follow_the_host_layout() {
        let dest = Path::new("/sys/fs/cgroup");
        let unified = CgroupMountInfo {
            v2: Some("/sys/fs/cgroup/nano-sandbox/c1".into()),
            ..Default::default()
        };
        assert_eq!(
            cgroup_hierarchies(dest, &unified),
            vec![CgroupHierarchy {
                path: dest.into(),
                host_dir: "/sys/fs/cgroup/nano-sandbox/c1".into(),
                data: None,
            }]
        );
        // v1 (the hybrid host's cgroup2 part is not shown): co-mounted
        // controllers share one bind, a named hierarchy goes by its name.
        let v1 = CgroupMountInfo {
            v1: vec![
                ("cpu".into(), "/sys/fs/cgroup/cpu,cpuacct/c1".into()),
                ("cpuacct".into(), "/sys/fs/cgroup/cpu,cpuacct/c1".into()),
                ("memory".into(), "/sys/fs/cgroup/memory/c1".into()),
                ("name=systemd".into(), "/sys/fs/cgroup/systemd/c1".into()),
            ],
            v2: Some("/sys/fs/cgroup/unified/c1".into()),
            cgroupns: false,
        };
        let got: Vec<(String, String, Option<String>)> = cgroup_hierarchies(dest, &v1)
            .into_iter()
            .map(|h| {
                (
                    h.path.display().to_string(),
                    h.host_dir.display().to_string(),
                    h.data,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "/sys/fs/cgroup/cpu,cpuacct".into(),
                    "/sys/fs/cgroup/cpu,cpuacct/c1".into(),
                    Some("cpu,cpuacct".into())
                ),
                (
                    "/sys/fs/cgroup/memory".into(),
                    "/sys/fs/cgroup/memory/c1".into(),
                    Some("memory".into())
                ),
                (
                    "/sys/fs/cgroup/systemd".into(),
                    "/sys/fs/cgroup/systemd/c1".into(),
                    Some("name=systemd".into())
                ),
            ]
        );
        assert!(cgroup_hierarchies(dest, &CgroupMountInfo::default()).is_empty());
    }

    #[test]
    fn remount_attr_of_common_remounts() {
        use MsFlags as M;
        let ro = remount_attr(M::MS_RDONLY, M::empty());
        assert_eq!((ro.attr_set, ro.attr_clr), (ATTR_RDONLY, ATTR_NOSYMFOLLOW));
        // The cgroup binds: ro,nosuid,nodev,noexec,relatime.
        let cg = remount_attr(
            M::MS_RDONLY | M::MS_NOSUID | M::MS_NODEV | M::MS_NOEXEC | M::MS_RELATIME,
            M::empty(),
        );
        assert_eq!(
            cg.attr_set,
            ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC | ATTR_RELATIME
        );
        assert_eq!(
            cg.attr_clr,
            ATTR__ATIME | ATTR_NODIRATIME | ATTR_NOSYMFOLLOW
        );
        // A writable remount clears what it does not name.
        let rw = remount_attr(M::MS_NOSUID, M::empty());
        assert_eq!(rw.attr_set, ATTR_NOSUID);
        assert_eq!(
            rw.attr_clr,
            ATTR_RDONLY | ATTR_NODEV | ATTR_NOEXEC | ATTR_NOSYMFOLLOW
        );
        // A read-only one clears only what the config clears.
        let c = remount_attr(M::MS_RDONLY, M::MS_NOSUID | M::MS_RDONLY);
        assert_eq!(c.attr_clr, ATTR_NOSUID | ATTR_NOSYMFOLLOW);
        let s = remount_attr(M::MS_NOATIME | M::MS_STRICTATIME, M::empty());
        assert_eq!(s.attr_set & ATTR__ATIME, ATTR_STRICTATIME);
    }

    #[test]
    fn tmpfs_mode_as_tmpfs_reads_it() {
        assert_eq!(tmpfs_mode("size=65536k"), Some(0o1777));
        assert_eq!(tmpfs_mode(""), Some(0o1777));
        assert_eq!(tmpfs_mode("mode=755,size=65536k"), Some(0o755));
        assert_eq!(tmpfs_mode("mode=0700,mode=1777"), Some(0o1777));
        assert_eq!(tmpfs_mode("mode=17777"), Some(0o7777));
        assert_eq!(tmpfs_mode("mode=9"), None);
        assert_eq!(tmpfs_mode("mode="), None);
    }

    /// mount_setattr with [`remount_attr`] leaves a bind mount as the
    /// mount(2) remount does, for each of a table of flags, on mounts that
    /// start with various flags. Runs itself again in a private mount
    /// namespace (unshare -m), as root.
    #[test]
    fn remount_attr_does_what_a_remount_does() {
        const CHILD: &str = "NK_TEST_REMOUNT_CHILD";
        let Some(dir) = std::env::var_os(CHILD) else {
            if !nix::unistd::geteuid().is_root() {
                eprintln!("skipped: needs root to mount");
                return;
            }
            let dir = std::env::temp_dir().join(format!("nk-remount-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let st = std::process::Command::new("unshare")
                .args(["-m", "--propagation", "private"])
                .arg(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "linux::mounts::tests::remount_attr_does_what_a_remount_does",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(CHILD, &dir)
                .status();
            std::fs::remove_dir_all(&dir).unwrap();
            match st {
                Ok(s) => assert!(s.success(), "the child in a mount namespace failed: {s}"),
                Err(e) => eprintln!("skipped: cannot run unshare: {e}"),
            }
            return;
        };
        let dir = PathBuf::from(dir);
        let (src, a, b) = (dir.join("src"), dir.join("a"), dir.join("b"));
        for d in [&src, &a, &b] {
            std::fs::create_dir_all(d).unwrap();
        }
        // Per-mount options of the mount at `p`, from mountinfo.
        let opts = |p: &Path| -> String {
            let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            mi.lines()
                .rfind(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
                .map(|l| l.split(' ').nth(5).unwrap().to_string())
                .unwrap()
        };
        use MsFlags as M;
        let starts = [
            M::empty(),
            M::MS_NOSUID | M::MS_NODEV | M::MS_NOEXEC,
            M::MS_NOATIME | M::MS_NODIRATIME,
            M::MS_STRICTATIME | M::MS_RDONLY,
        ];
        let asks = [
            (M::MS_RDONLY, M::empty()),
            (
                M::MS_RDONLY | M::MS_NOSUID | M::MS_NODEV | M::MS_NOEXEC | M::MS_RELATIME,
                M::empty(),
            ),
            (M::empty(), M::empty()),
            (M::MS_NOSUID, M::MS_RDONLY),
            (M::MS_RDONLY, M::MS_NOSUID | M::MS_NODEV),
            (M::MS_NOATIME | M::MS_NODIRATIME, M::empty()),
            (M::MS_RDONLY | M::MS_NOATIME | M::MS_STRICTATIME, M::empty()),
        ];
        for start in starts {
            for (flags, cleared) in asks {
                for t in [&a, &b] {
                    nix::mount::mount(Some(&src), t, None::<&str>, M::MS_BIND, None::<&str>)
                        .unwrap();
                    nix::mount::mount(
                        None::<&str>,
                        t,
                        None::<&str>,
                        M::MS_REMOUNT | M::MS_BIND | start,
                        None::<&str>,
                    )
                    .unwrap();
                }
                remount_by_mount(a.to_str().unwrap(), flags, cleared).unwrap();
                let path = std::ffi::CString::new(b.to_str().unwrap()).unwrap();
                super::super::syscall::mount_setattr(None, &path, 0, &remount_attr(flags, cleared))
                    .unwrap();
                assert_eq!(
                    opts(&a),
                    opts(&b),
                    "start {start:?}, remount {flags:?} clearing {cleared:?}"
                );
                for t in [&a, &b] {
                    nix::mount::umount(t).unwrap();
                }
            }
        }
    }

    fn p(v: &[&str]) -> Parsed {
        parse_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_is_a_flag_not_data() {
        let x = p(&["defaults", "mode=755"]);
        assert!(x.flags.is_empty());
        assert_eq!(x.data, "mode=755");
    }

    #[test]
    fn flags_and_data() {
        let x = p(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert!(x
            .flags
            .contains(MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME));
        assert_eq!(x.data, "mode=755,size=65536k");
        let y = p(&["rbind", "ro", "rprivate"]);
        assert!(y
            .flags
            .contains(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY));
        assert_eq!(y.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        let z = p(&["ro", "rw"]);
        assert!(!z.flags.contains(MsFlags::MS_RDONLY));
        let r = p(&["rro", "rnosuid", "idmap"]);
        assert_eq!(r.rec_set, ATTR_RDONLY | ATTR_NOSUID);
        assert_eq!(r.idmap, Some(false));
        // An atime mode clears the whole atime mask (mount_setattr's rule).
        let a = p(&["rnoatime", "rnodev"]);
        assert_eq!(a.rec_set, ATTR_NOATIME | ATTR_NODEV);
        assert_eq!(a.rec_clear, ATTR__ATIME);
        let a = p(&["rnoatime", "rstrictatime"]);
        assert_eq!(a.rec_set, ATTR_STRICTATIME);
        let a = p(&["rrelatime"]);
        assert_eq!((a.rec_set, a.rec_clear), (ATTR_RELATIME, ATTR__ATIME));
    }

    #[test]
    fn idmap_plans() {
        let m = |j: &str| -> Mount { serde_json::from_str(j).unwrap() };
        let plain = m(r#"{"destination":"/m","type":"bind","source":"/s","options":["rbind"]}"#);
        assert_eq!(idmap_plan(&plain), None);
        let r =
            m(r#"{"destination":"/m","type":"bind","source":"/s","options":["rbind","ridmap"]}"#);
        let p = idmap_plan(&r).unwrap();
        assert!(p.recursive && p.rbind && p.maps.is_none());
        check_idmap(&r, &p).unwrap();
        // Mappings alone make it idmapped (not recursive).
        let mapped = m(
            r#"{"destination":"/m","type":"bind","source":"/s","options":["rbind"],"uidMappings":[{"containerID":0,"hostID":1,"size":1}],"gidMappings":[{"containerID":0,"hostID":1,"size":1}]}"#,
        );
        let p = idmap_plan(&mapped).unwrap();
        assert!(!p.recursive && p.maps.is_some());
        let t = m(r#"{"destination":"/m","type":"tmpfs","source":"tmpfs","options":["idmap"]}"#);
        assert_eq!(
            check_idmap(&t, &idmap_plan(&t).unwrap()).unwrap_err().field,
            "options"
        );
    }

    #[test]
    fn propagation_words() {
        assert_eq!(
            propagation_flag("rslave"),
            Some(MsFlags::MS_SLAVE | MsFlags::MS_REC)
        );
        assert_eq!(propagation_flag("bogus"), None);
    }
}
