//! How the runtime writes its own files on the host (pid files, state.json,
//! the config copy, VM-mode records). Running as root, it often writes into a
//! directory that a less privileged user can also write (a bundle, a pid
//! file's directory), so no name it creates may be predictable or followed:
//!
//! * [`replace`]: a temporary file with a random name, created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW` (a planted symlink or file makes the create
//!   fail instead of redirecting the write), then renamed over the target
//!   relative to one directory descriptor. Readers see the old or the new
//!   file, never a half-written one; a symlink at the target is replaced,
//!   never followed.
//! * [`create_new`]: a file that must not exist yet, same flags.

use crate::error::{Error, Result};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// Attempts at finding an unused temporary name (each is 64 random bits).
const TMP_ATTEMPTS: u32 = 16;

/// 64 random bits from the kernel.
fn random_u64() -> Result<u64> {
    let mut b = [0u8; 8];
    let mut got = 0;
    while got < b.len() {
        // SAFETY: getrandom writes at most the given length into the buffer.
        let n = unsafe {
            libc::getrandom(b[got..].as_mut_ptr() as *mut libc::c_void, b.len() - got, 0)
        };
        if n < 0 {
            let e = nix::errno::Errno::last();
            if e == nix::errno::Errno::EINTR {
                continue;
            }
            return Err(Error::sys("getrandom", e));
        }
        got += n as usize;
    }
    Ok(u64::from_ne_bytes(b))
}

/// The directory of `path` (opened O_PATH) and its final name.
fn split(path: &Path) -> Result<(OwnedFd, &std::ffi::OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::msg(format!("{}: not a file name", path.display())))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let fd = nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open directory {}", dir.display()), e))?;
    Ok((fd, name))
}

/// Create `name` in `dir`: it must not exist, and a symlink there is never
/// followed.
fn open_excl(dir: &OwnedFd, name: &std::ffi::OsStr, mode: u32) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(
        dir.as_fd(),
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
}

fn write_all(fd: &OwnedFd, data: &[u8]) -> nix::Result<()> {
    let mut off = 0;
    while off < data.len() {
        match nix::unistd::write(fd, &data[off..]) {
            Ok(n) => off += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Write `data` to `path` atomically: a new file of `mode` (less the umask)
/// under a random name in the same directory, renamed over `path`.
pub fn replace(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let (dir, name) = split(path)?;
    let mut tmp = None;
    for _ in 0..TMP_ATTEMPTS {
        let cand = format!(".{}.{:016x}.tmp", name.to_string_lossy(), random_u64()?);
        match open_excl(&dir, cand.as_ref(), mode) {
            Ok(fd) => {
                tmp = Some((cand, fd));
                break;
            }
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(e) => {
                return Err(Error::sys(
                    format!(
                        "create a temporary file next to {} (O_EXCL|O_NOFOLLOW)",
                        path.display()
                    ),
                    e,
                ))
            }
        }
    }
    let Some((tmp, fd)) = tmp else {
        return Err(Error::msg(format!(
            "create a temporary file next to {}: {TMP_ATTEMPTS} random names were all taken",
            path.display()
        )));
    };
    let unlink = || {
        let _ = nix::unistd::unlinkat(
            dir.as_fd(),
            tmp.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    };
    if let Err(e) = write_all(&fd, data) {
        unlink();
        return Err(Error::sys(format!("write {}", path.display()), e));
    }
    drop(fd);
    if let Err(e) = nix::fcntl::renameat(dir.as_fd(), tmp.as_str(), dir.as_fd(), name) {
        unlink();
        return Err(Error::sys(format!("rename into {}", path.display()), e));
    }
    Ok(())
}

/// Create `path` with `data` and `mode` (less the umask); fail when anything
/// (a file, a symlink) is already there.
pub fn create_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let (dir, name) = split(path)?;
    let fd = open_excl(&dir, name, mode)
        .map_err(|e| Error::sys(format!("create {} (O_EXCL|O_NOFOLLOW)", path.display()), e))?;
    write_all(&fd, data).map_err(|e| Error::sys(format!("write {}", path.display()), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("nk-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replace_swaps_a_symlink_instead_of_following_it() {
        let d = tmpdir("replace");
        let victim = d.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, d.join("pid")).unwrap();
        replace(&d.join("pid"), b"42", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let m = std::fs::symlink_metadata(d.join("pid")).unwrap();
        assert!(m.is_file());
        assert_eq!(std::fs::read_to_string(d.join("pid")).unwrap(), "42");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 2);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn create_new_refuses_what_is_there_and_keeps_its_mode() {
        let d = tmpdir("new");
        let p = d.join("config.json");
        create_new(&p, b"{}", 0o600).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(create_new(&p, b"{}", 0o600).is_err());
        std::os::unix::fs::symlink(d.join("elsewhere"), d.join("link")).unwrap();
        assert!(create_new(&d.join("link"), b"x", 0o600).is_err());
        assert!(!d.join("elsewhere").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
