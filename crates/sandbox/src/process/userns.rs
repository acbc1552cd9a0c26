//! A user namespace of given mappings, for an idmapped mount: a short-lived
//! child holds it while its maps are written and it is opened. A process of
//! its own, so it lives here and not in `linux::userns` (which only writes
//! the maps).

use crate::error::{Error, Result};
use crate::linux::userns;
use oci_spec::runtime::LinuxIdMapping;

/// A user namespace with the given mappings, for an idmapped mount: a
/// short-lived child is cloned into a new user namespace, its maps written,
/// the namespace kept open by descriptor, and the child let go.
pub fn with_maps(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<std::os::fd::OwnedFd> {
    use super::clone::{clone3, CloneArgs};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("pipe for an id-mapping namespace", e))?;
    let (rd_raw, wr_raw) = (rd.as_raw_fd(), wr.as_raw_fd());
    let mut pidfd: i32 = -1;
    let mut args = CloneArgs {
        flags: (libc::CLONE_NEWUSER | libc::CLONE_PIDFD) as u64,
        pidfd: &mut pidfd as *mut i32 as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: clone3 with a complete clone_args; the child only blocks on a
    // read (async-signal-safe) and exits.
    let r = unsafe { clone3(&mut args) };
    if r < 0 {
        return Err(Error::sys(
            "clone3(CLONE_NEWUSER) for an id-mapping namespace",
            nix::errno::Errno::last(),
        ));
    }
    if r == 0 {
        // SAFETY: a raw read until the parent closes the pipe (our copy of
        // the write end closed first), then _exit.
        unsafe {
            libc::close(wr_raw);
            let mut b = 0u8;
            libc::read(rd_raw, (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    let pid = r as i32;
    // SAFETY: the kernel gave us the child's pidfd.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let result = (|| {
        userns::write_one(pid, "uid_map", uid, "newuidmap")?;
        userns::write_one(pid, "gid_map", gid, "newgidmap")?;
        let p = format!("/proc/{pid}/ns/user");
        nix::fcntl::open(
            p.as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::sys(format!("open {p}"), e))
    })();
    drop(wr);
    let _ = super::clone::wait_pidfd(&pidfd);
    drop(rd);
    result
}
