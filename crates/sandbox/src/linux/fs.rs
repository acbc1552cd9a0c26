//! Path resolution that cannot escape a root. Every mount destination and
//! device path inside the rootfs is resolved with openat2(RESOLVE_IN_ROOT), so
//! a symlink planted in the image resolves inside the image, never on the host.
//! Mounts then target `/proc/self/fd/N` of the resolved descriptor. Files the
//! runtime reads from less trusted hands go through [`read_regular`].

use crate::error::{Error, Result};
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// Open `rel` below `root`, resolving every component as if `root` were `/`.
pub fn open_in_root(root: BorrowedFd<'_>, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let rel = clean_rel(rel);
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let target: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        &rel
    };
    loop {
        match nix::fcntl::openat2(root, target, how) {
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// Read all of `f`, a file someone less trusted controls (a file of the
/// container, an input named on the command line): it must be a regular
/// file of at most `max` bytes. A FIFO would block the runtime and a device
/// such as /dev/zero would grow it until killed: both are refused at once,
/// with the kind in the error. Open with O_NONBLOCK (as the two helpers
/// below do), so that opening a FIFO does not block either.
pub fn read_regular(f: OwnedFd, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error as IoError, ErrorKind, Read};
    let st = nix::sys::stat::fstat(f.as_fd()).map_err(IoError::from)?;
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => None,
        libc::S_IFIFO => Some("a FIFO"),
        libc::S_IFCHR => Some("a character device"),
        libc::S_IFBLK => Some("a block device"),
        libc::S_IFDIR => Some("a directory"),
        libc::S_IFSOCK => Some("a socket"),
        _ => Some("of an unknown type"),
    };
    if let Some(k) = kind {
        return Err(IoError::new(
            ErrorKind::InvalidData,
            format!("not a regular file (it is {k}): refused"),
        ));
    }
    let too_big = || {
        IoError::new(
            ErrorKind::InvalidData,
            format!("larger than the {max}-byte limit: refused"),
        )
    };
    if st.st_size as u64 > max {
        return Err(too_big());
    }
    let mut v = Vec::new();
    // take(): a file that grows while it is read is cut at the limit.
    std::fs::File::from(f).take(max + 1).read_to_end(&mut v)?;
    if v.len() as u64 > max {
        return Err(too_big());
    }
    Ok(v)
}

/// [`read_regular`] of `rel` resolved inside `root` (openat2 with
/// RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): a file of the container, such
/// as its /etc/passwd, whatever symlinks it is made of.
pub fn read_in_root(root: BorrowedFd<'_>, rel: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let f = open_in_root(
        root,
        rel,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
    )?;
    read_regular(f, max)
}

/// [`read_regular`] of a path as given (an input named on the command line).
pub fn read_path(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let f = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    read_regular(f, max)
}

/// Read a /proc or cgroupfs text file (mountinfo, cgroup, cpuset.cpus).
/// Such files report size 0, so a plain read_to_string starts with 32-byte
/// reads and doubles: eight reads for this host's mountinfo, each of which
/// makes the kernel walk the mount table again up to its offset. One
/// page-sized buffer first: open, read, read (0: end), close.
pub fn read_proc(path: impl AsRef<Path>) -> std::io::Result<String> {
    use std::io::Read;
    let mut s = String::with_capacity(8192);
    // take(): File's own read_to_string first asks statx and lseek for a
    // size hint, which a /proc file answers with 0.
    Read::take(std::fs::File::open(path)?, u64::MAX).read_to_string(&mut s)?;
    Ok(s)
}

/// Strip the leading `/` and `.` components; `..` is kept (RESOLVE_IN_ROOT
/// clamps it at the root).
pub fn clean_rel(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => out.push(".."),
            Component::Normal(n) => out.push(n),
        }
    }
    out
}

/// `/proc/self/fd/N` for a descriptor, the form mount(2) is given.
pub fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Create every directory of `rel` below `root` (mode 0755), resolving inside
/// the root; returns an O_PATH descriptor of the final directory. A dangling
/// symlink on the way is followed (inside the root) and its target created,
/// as runc's MkdirAllInRoot does, so `/var/run -> /run` in an image works
/// even when /run is missing.
pub fn mkdir_all_in_root(root: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd> {
    mkdir_all_depth(root, rel, 0).map(|(fd, _)| fd)
}

/// [`mkdir_all_in_root`], also saying whether the final directory was there
/// already (a mount over it may take its mode): one lookup instead of two.
pub fn mkdir_all_in_root_existed(root: BorrowedFd<'_>, rel: &Path) -> Result<(OwnedFd, bool)> {
    mkdir_all_depth(root, rel, 0)
}

/// Symlinks followed while creating one path, as the kernel's own limit.
const MAX_LINKS: u32 = 40;

fn mkdir_all_depth(root: BorrowedFd<'_>, rel: &Path, depth: u32) -> Result<(OwnedFd, bool)> {
    if depth > MAX_LINKS {
        return Err(Error::sys(
            format!("mkdir {} in rootfs", rel.display()),
            nix::errno::Errno::ELOOP,
        ));
    }
    let dir = OFlag::O_PATH | OFlag::O_DIRECTORY;
    let rel = clean_rel(rel);
    let comps: Vec<_> = rel.components().collect();
    // Most destinations exist, or miss only their last components (a
    // cgroup controller's directory in a new tmpfs): find the deepest
    // prefix that opens, from the full path back, instead of opening every
    // prefix from the root down. Each open still resolves from the root.
    let mut have = comps.len();
    let mut cur = loop {
        if have == 0 {
            // The root itself: `root` is the parent of the first component.
            break None;
        }
        let prefix: PathBuf = comps[..have].iter().collect();
        match open_in_root(root, &prefix, dir) {
            Ok(fd) => break Some(fd),
            Err(nix::errno::Errno::ENOENT) => have -= 1,
            Err(e) => {
                return Err(Error::sys(
                    format!(
                        "open {} in rootfs (not a directory, or a bad symlink)",
                        prefix.display()
                    ),
                    e,
                ))
            }
        }
    };
    let existed = have == comps.len();
    let mut prefix: PathBuf = comps[..have].iter().collect();
    for c in &comps[have..] {
        let parent = prefix.clone();
        prefix.push(c);
        let name = c.as_os_str();
        let at = cur.as_ref().map_or(root, |f| f.as_fd());
        match nix::sys::stat::mkdirat(at, name, Mode::from_bits_truncate(0o755)) {
            Ok(()) => {}
            Err(nix::errno::Errno::EEXIST) => {
                // Something is there but does not resolve: a dangling
                // symlink. Create its target, resolved inside the root.
                if let Ok(target) = nix::fcntl::readlinkat(at, name) {
                    let target = Path::new(&target);
                    let next = if target.is_absolute() {
                        target.to_path_buf()
                    } else {
                        parent.join(target)
                    };
                    mkdir_all_depth(root, &next, depth + 1)?;
                }
            }
            Err(e) => {
                return Err(Error::sys(
                    format!("mkdir {} in rootfs", prefix.display()),
                    e,
                ))
            }
        }
        cur = Some(
            open_in_root(root, &prefix, dir)
                .map_err(|e| Error::sys(format!("open {} in rootfs", prefix.display()), e))?,
        );
    }
    let fd = match cur {
        Some(fd) => fd,
        None => open_in_root(root, Path::new(""), dir).map_err(|e| Error::sys("open rootfs", e))?,
    };
    Ok((fd, existed))
}

/// Create an empty file at `rel` below `root` (parents too) unless something
/// exists there; returns an O_PATH descriptor of it.
pub fn touch_in_root(root: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd> {
    if let Ok(fd) = open_in_root(root, rel, OFlag::O_PATH) {
        return Ok(fd);
    }
    let rel = clean_rel(rel);
    let parent = rel.parent().unwrap_or(Path::new(""));
    let name = rel
        .file_name()
        .ok_or_else(|| Error::msg(format!("{}: no file name", rel.display())))?;
    let dir = mkdir_all_in_root(root, parent)?;
    // O_PATH descriptors cannot create files: reopen the directory for real.
    let dirfd = reopen(dir.as_fd(), OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    match nix::fcntl::openat(
        dirfd.as_fd(),
        name,
        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::from_bits_truncate(0o644),
    ) {
        Ok(_) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(Error::sys(format!("create {} in rootfs", rel.display()), e)),
    }
    open_in_root(root, &rel, OFlag::O_PATH)
        .map_err(|e| Error::sys(format!("open {} in rootfs", rel.display()), e))
}

/// Reopen an O_PATH descriptor with real access flags.
pub fn reopen(fd: BorrowedFd<'_>, flags: OFlag) -> Result<OwnedFd> {
    nix::fcntl::open(
        fd_path(fd).as_str(),
        flags | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("reopen fd {}", fd.as_raw_fd()), e))
}

/// Open a host path as an O_PATH directory descriptor.
pub fn open_dir_path(p: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        p,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {}", p.display()), e))
}

/// A C string from a path (paths never contain NUL; refuse those that do).
pub fn cstr(p: impl AsRef<std::ffi::OsStr>) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_ref().as_bytes())
        .map_err(|_| Error::msg(format!("{:?} contains a NUL byte", p.as_ref())))
}

/// Duplicate a descriptor to a number at or above `min`, without CLOEXEC, so it
/// survives an exec.
pub fn dup_inheritable(fd: BorrowedFd<'_>, min: i32) -> Result<i32> {
    // SAFETY: fcntl(F_DUPFD) on a valid descriptor; the new one is returned to the caller.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD, min) };
    if n < 0 {
        return Err(Error::sys("dup", nix::errno::Errno::last()));
    }
    Ok(n)
}

/// Take ownership of a raw descriptor number received from a parent.
///
/// # Safety
/// `fd` must be an open descriptor that nothing else owns.
pub unsafe fn own(fd: i32) -> OwnedFd {
    // SAFETY: upheld by the caller.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Mark every descriptor from `from` upwards close-on-exec, except `keep`.
pub fn cloexec_from(from: i32, keep: &[i32]) {
    let mut lo = from as u32;
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|k| **k >= from)
        .map(|k| *k as u32)
        .collect();
    keep.sort();
    keep.push(u32::MAX);
    for k in keep {
        if lo < k {
            let hi = if k == u32::MAX { u32::MAX } else { k - 1 };
            // CLOSE_RANGE_CLOEXEC keeps them open: only the flag changes.
            let r = super::syscall::close_range(lo, hi, libc::CLOSE_RANGE_CLOEXEC as libc::c_uint);
            if r.is_err() {
                fallback_cloexec(lo, hi);
            }
        }
        lo = k.saturating_add(1);
    }
}

fn fallback_cloexec(lo: u32, hi: u32) {
    if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
        let fds: Vec<u32> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|n| *n >= lo && *n <= hi)
            .collect();
        for fd in fds {
            // SAFETY: setting FD_CLOEXEC on a descriptor number; harmless if it was closed.
            unsafe { libc::fcntl(fd as i32, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

/// True when the path has a `..` component.
pub fn has_dotdot(p: &Path) -> bool {
    p.components().any(|c| c == std::path::Component::ParentDir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_regular_takes_only_bounded_regular_files() {
        let d = std::env::temp_dir().join(format!("nk-fs-read-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("small"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(d.join("big"), vec![b'x'; 100]).unwrap();
        nix::unistd::mkfifo(&d.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("zero")).unwrap();
        let root = open_dir_path(&d).unwrap();
        let read = |n: &str, max| read_in_root(root.as_fd(), Path::new(n), max);
        assert_eq!(read("small", 64).unwrap(), b"root:x:0:0::/root:/bin/sh\n");
        let e = |r: std::io::Result<Vec<u8>>| r.unwrap_err().to_string();
        assert!(e(read("big", 99)).contains("99-byte limit"));
        // The FIFO has no writer: without O_NONBLOCK this would block.
        assert!(e(read("fifo", 64)).contains("FIFO"));
        // The symlink resolves inside the root, where there is no dev/zero.
        assert_eq!(
            read("zero", 64).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        assert!(e(read_path(&d.join("zero"), 64)).contains("character device"));
        assert!(e(read_path(&d, 64)).contains("directory"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn clean_rel_strips_root() {
        assert_eq!(clean_rel(Path::new("/a/./b")), PathBuf::from("a/b"));
        assert_eq!(clean_rel(Path::new("/")), PathBuf::from(""));
    }

    #[test]
    fn mkdir_all_makes_what_is_missing_at_any_depth() {
        let d = std::env::temp_dir().join(format!("nk-fs-mk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("root/sys/fs")).unwrap();
        std::fs::write(d.join("root/file"), "").unwrap();
        let root = open_dir_path(&d.join("root")).unwrap();
        let same = |fd: OwnedFd, rel: &str| {
            use std::os::unix::fs::MetadataExt;
            let a = nix::sys::stat::fstat(fd.as_fd()).unwrap();
            let b = std::fs::metadata(d.join("root").join(rel)).unwrap();
            assert_eq!((a.st_dev, a.st_ino), (b.dev(), b.ino()), "{rel}");
        };
        // Existing, a missing leaf, several missing levels, the root itself.
        same(
            mkdir_all_in_root(root.as_fd(), Path::new("/sys/fs")).unwrap(),
            "sys/fs",
        );
        same(
            mkdir_all_in_root(root.as_fd(), Path::new("/sys/fs/cgroup")).unwrap(),
            "sys/fs/cgroup",
        );
        same(
            mkdir_all_in_root(root.as_fd(), Path::new("a/b/c")).unwrap(),
            "a/b/c",
        );
        same(mkdir_all_in_root(root.as_fd(), Path::new("/")).unwrap(), "");
        // A file on the way is an error naming the path, not a directory made.
        let e = mkdir_all_in_root(root.as_fd(), Path::new("/file/x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("file/x"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn symlink_cannot_escape() {
        let d = std::env::temp_dir().join(format!("nk-fs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("root/etc")).unwrap();
        std::os::unix::fs::symlink("/", d.join("root/escape")).unwrap();
        std::os::unix::fs::symlink("../../../../", d.join("root/up")).unwrap();
        let root = open_dir_path(&d.join("root")).unwrap();
        // A directory created through a symlink to "/" lands inside the root.
        mkdir_all_in_root(root.as_fd(), Path::new("/escape/made-here")).unwrap();
        assert!(d.join("root/made-here").is_dir());
        mkdir_all_in_root(root.as_fd(), Path::new("up/x")).unwrap();
        assert!(d.join("root/x").is_dir());
        touch_in_root(root.as_fd(), Path::new("/escape/etc/file")).unwrap();
        assert!(d.join("root/etc/file").is_file());
        // Dangling symlinks (absolute, and climbing out) get their target
        // made inside the root.
        std::os::unix::fs::symlink("/no/such", d.join("root/dangling")).unwrap();
        std::os::unix::fs::symlink("../../../../made-too", d.join("root/climb")).unwrap();
        mkdir_all_in_root(root.as_fd(), Path::new("/dangling/x")).unwrap();
        assert!(d.join("root/no/such/x").is_dir());
        mkdir_all_in_root(root.as_fd(), Path::new("/climb/y")).unwrap();
        assert!(d.join("root/made-too/y").is_dir());
        // A loop ends with ELOOP, not a hang.
        std::os::unix::fs::symlink("loop-b", d.join("root/loop-a")).unwrap();
        std::os::unix::fs::symlink("loop-a", d.join("root/loop-b")).unwrap();
        assert!(mkdir_all_in_root(root.as_fd(), Path::new("/loop-a/z")).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
