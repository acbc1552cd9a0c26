//! User namespaces: writing a child's uid_map and gid_map from the parent,
//! and making a namespace of given mappings for idmapped mounts.

use crate::error::{Error, Result};
use crate::explain::{self, catalog};
use oci_spec::runtime::LinuxIdMapping;

/// The text of a uid_map/gid_map file.
pub fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Write both maps for `pid`. An unprivileged caller may only map itself, and
/// must deny setgroups first; anything more needs newuidmap/newgidmap.
pub fn write_maps(pid: i32, uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<()> {
    explain::step(&catalog::USERNS_MAP, || {
        format!(
            "/proc/{pid}/uid_map: {}; gid_map: {}",
            map_text(uid).trim().replace('\n', ", "),
            map_text(gid).trim().replace('\n', ", ")
        )
    });
    let root = nix::unistd::geteuid().is_root();
    if !root {
        // Mapping only our own ids: the kernel allows it after setgroups=deny.
        let _ = std::fs::write(format!("/proc/{pid}/setgroups"), "deny");
    }
    write_one(pid, "uid_map", uid, "newuidmap")?;
    write_one(pid, "gid_map", gid, "newgidmap")?;
    Ok(())
}

fn write_one(pid: i32, file: &str, maps: &[LinuxIdMapping], helper: &str) -> Result<()> {
    if maps.is_empty() {
        return Ok(());
    }
    let p = format!("/proc/{pid}/{file}");
    match std::fs::write(&p, map_text(maps)) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && !nix::unistd::geteuid().is_root() => {
            // Try the setuid helper from uidmap, as runc does for rootless.
            let mut args = vec![pid.to_string()];
            for m in maps {
                args.extend([
                    m.container_id().to_string(),
                    m.host_id().to_string(),
                    m.size().to_string(),
                ]);
            }
            let st = std::process::Command::new(helper).args(&args).status();
            match st {
                Ok(s) if s.success() => Ok(()),
                _ => Err(Error::msg(format!(
                    "write {p}: {e}; an unprivileged user can map only its own id unless {helper} (package uidmap) and /etc/sub{}id allow more",
                    if file == "uid_map" { "u" } else { "g" }
                ))),
            }
        }
        Err(e) => Err(Error::msg(format!(
            "write {p} ({}): {e}",
            map_text(maps).trim()
        ))),
    }
}

/// A user namespace with the given mappings, for an idmapped mount: a
/// short-lived child is cloned into a new user namespace, its maps written,
/// the namespace kept open by descriptor, and the child let go.
pub fn with_maps(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<std::os::fd::OwnedFd> {
    use crate::process::clone::{clone3, CloneArgs};
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
        write_one(pid, "uid_map", uid, "newuidmap")?;
        write_one(pid, "gid_map", gid, "newgidmap")?;
        let p = format!("/proc/{pid}/ns/user");
        nix::fcntl::open(
            p.as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::sys(format!("open {p}"), e))
    })();
    drop(wr);
    let _ = crate::process::clone::wait_pidfd(&pidfd);
    drop(rd);
    result
}
