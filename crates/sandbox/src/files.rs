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
//! * [`swap`]: as `replace`, but the new file is exchanged with the old
//!   one, which is then unlinked: for state.json (see there why).
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
    write_then(path, data, mode, Install::Rename)
}

/// [`replace`] for a record the runtime rewrites and soon deletes (the
/// container's state.json): the new file is exchanged with the old one
/// (`renameat2(RENAME_EXCHANGE)`), and the old one unlinked. Readers still
/// see the old or the new record, never a half-written one. The difference
/// is on ext4: a rename over an existing file starts writeback of the new
/// file (auto_da_alloc), and unlinking a file under writeback waits for the
/// disk. A create, its start and delete would wait for it twice, up to
/// milliseconds each (as neither runc nor crun, nothing is fsync'd: the
/// record describes processes that a reboot ends).
pub fn swap(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    write_then(path, data, mode, Install::Exchange)
}

/// How [`write_then`] puts the written temporary file in place.
#[derive(Clone, Copy, PartialEq)]
enum Install {
    Rename,
    Exchange,
}

fn write_then(path: &Path, data: &[u8], mode: u32, how: Install) -> Result<()> {
    Pending::new(path, mode)?.install(data, how)
}

/// A temporary file made next to `path`, to be written and put in place
/// later: its inode is allocated ahead (on ext4, the dearest part of a
/// small write), while there is nothing else to do. Dropped without being
/// installed, it is unlinked.
#[derive(Debug)]
pub struct Pending {
    dir: OwnedFd,
    name: std::ffi::OsString,
    tmp: String,
    fd: Option<OwnedFd>,
    target: std::path::PathBuf,
}

impl Pending {
    /// Create the temporary file (`mode` less the umask) next to `path`.
    pub fn new(path: &Path, mode: u32) -> Result<Pending> {
        let (dir, name) = split(path)?;
        let name = name.to_os_string();
        for _ in 0..TMP_ATTEMPTS {
            let cand = format!(".{}.{:016x}.tmp", name.to_string_lossy(), random_u64()?);
            match open_excl(&dir, cand.as_ref(), mode) {
                Ok(fd) => {
                    return Ok(Pending {
                        dir,
                        name,
                        tmp: cand,
                        fd: Some(fd),
                        target: path.to_path_buf(),
                    })
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
        Err(Error::msg(format!(
            "create a temporary file next to {}: {TMP_ATTEMPTS} random names were all taken",
            path.display()
        )))
    }

    /// Write `data` and exchange the file with the old one, as [`swap`].
    pub fn swap_in(self, data: &[u8]) -> Result<()> {
        self.install(data, Install::Exchange)
    }

    fn unlink(&self) {
        let _ = nix::unistd::unlinkat(
            self.dir.as_fd(),
            self.tmp.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }

    fn install(mut self, data: &[u8], how: Install) -> Result<()> {
        let path = self.target.clone();
        let Some(fd) = self.fd.take() else {
            return Err(Error::msg(format!("{}: already installed", path.display())));
        };
        if let Err(e) = write_all(&fd, data) {
            return Err(Error::sys(format!("write {}", path.display()), e));
        }
        drop(fd);
        let (dir, tmp, name) = (self.dir.as_fd(), self.tmp.as_str(), self.name.as_os_str());
        if how == Install::Exchange {
            match nix::fcntl::renameat2(
                dir,
                tmp,
                dir,
                name,
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            ) {
                // The old record now has the temporary name: the drop
                // unlinks it.
                Ok(()) => return Ok(()),
                // Nothing to exchange with (the first save), or a filesystem
                // without exchange: a plain rename.
                Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EINVAL) => {}
                Err(e) => {
                    return Err(Error::sys(
                        format!("renameat2(RENAME_EXCHANGE) into {}", path.display()),
                        e,
                    ));
                }
            }
        }
        match nix::fcntl::renameat(dir, tmp, dir, name) {
            Ok(()) => {
                // Nothing is left under the temporary name.
                self.tmp.clear();
                Ok(())
            }
            Err(e) => Err(Error::sys(format!("rename into {}", path.display()), e)),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.tmp.is_empty() {
            self.unlink();
        }
    }
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
    fn swap_installs_the_new_record_and_leaves_no_old_one() {
        let d = tmpdir("swap");
        let p = d.join("state.json");
        swap(&p, b"one", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "one");
        swap(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A symlink planted at the target is swapped out, never followed.
        let victim = d.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        swap(&p, b"three", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(std::fs::symlink_metadata(&p).unwrap().is_file());
        // Only the record and the victim: no temporary or old file is left.
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
