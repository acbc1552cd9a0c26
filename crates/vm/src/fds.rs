//! `--preserve-fds` in VM mode. A descriptor cannot cross into a guest
//! kernel, but the bytes of a file or a pipe can: the container gets a pipe
//! at the same number, and the monitor streams the host descriptor's
//! contents into it (opened for reading) or out of it (opened for writing).
//! Everything else (sockets, terminals, devices, directories, kernel objects
//! such as eventfds) is refused by name before anything is made.

use crate::error::{Error, Result};
use std::os::fd::RawFd;
use vm_protocol::Carry;

/// The most descriptors VM mode passes (one control message carries them
/// to the monitor).
pub const MAX: i32 = sandbox::process::sync::MAX_FDS as i32;

/// What a descriptor is, for the error message.
fn kind(mode: libc::mode_t, target: &str) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFIFO => "a pipe",
        libc::S_IFREG if target.starts_with('/') => "a regular file",
        _ => "a kernel object",
    }
}

/// Check descriptors 3 .. 3 + `n` of this process and say which way each
/// carries data; a descriptor VM mode cannot pass is an error naming it,
/// its type and what it is.
pub fn classify(n: i32) -> Result<Vec<Carry>> {
    if n > MAX {
        return Err(Error::Msg(format!(
            "--preserve-fds {n}: VM mode passes at most {MAX} descriptors"
        )));
    }
    (3..3 + n).map(classify_one).collect()
}

fn classify_one(fd: RawFd) -> Result<Carry> {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    // SAFETY: a zeroed stat is valid; fstat fills it for a descriptor number we only inspect.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into our local.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(Error::Msg(format!(
            "--preserve-fds: fd {fd} is not open ({})",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: F_GETFL on a descriptor that fstat just found open.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    let what = kind(st.st_mode, &target);
    // SAFETY: isatty only queries the descriptor.
    let tty = unsafe { libc::isatty(fd) } == 1;
    let refuse = |why: &str| {
        Err(Error::Msg(format!(
            "--preserve-fds: fd {fd} is {} ({target}): {why}; VM mode passes only regular files and pipes, opened for reading or for writing (or run the container with --mode=container)",
            if tty { "a terminal" } else { what }
        )))
    };
    if tty {
        return refuse(
            "a terminal cannot reach into the VM (use process.terminal or --console-socket)",
        );
    }
    match what {
        "a regular file" | "a pipe" => {}
        "a socket" => {
            return refuse(
                "a socket cannot cross into the VM, which has its own kernel and network stack",
            )
        }
        _ => return refuse("its kind cannot cross into the VM"),
    }
    match fl & libc::O_ACCMODE {
        libc::O_RDONLY => Ok(Carry::ToContainer),
        libc::O_WRONLY => Ok(Carry::FromContainer),
        _ => refuse(
            "it is open for reading and writing, and its contents can cross one way only: open it read-only or write-only",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn files_pipes_and_refusals() {
        let (r, w) = nix::unistd::pipe().unwrap();
        assert_eq!(classify_one(r.as_raw_fd()).unwrap(), Carry::ToContainer);
        assert_eq!(classify_one(w.as_raw_fd()).unwrap(), Carry::FromContainer);
        let f = std::fs::File::open("/proc/self/status").unwrap();
        assert_eq!(classify_one(f.as_raw_fd()).unwrap(), Carry::ToContainer);
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let e = classify_one(a.as_raw_fd()).unwrap_err().to_string();
        assert!(
            e.contains(&format!("fd {} is a socket", a.as_raw_fd())),
            "{e}"
        );
        let rw = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .unwrap();
        let e = classify_one(rw.as_raw_fd()).unwrap_err().to_string();
        assert!(e.contains("a character device (/dev/null)"), "{e}");
        let e = classify(MAX + 1).unwrap_err().to_string();
        assert!(e.contains("at most"), "{e}");
    }
}
