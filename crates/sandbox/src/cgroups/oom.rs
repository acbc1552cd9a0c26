//! Out-of-memory notifications for `events`.
//!
//! * v1: an eventfd registered on `memory.oom_control` through
//!   `cgroup.event_control`; the kernel bumps it on every OOM of the cgroup,
//!   and once more when the cgroup is removed.
//! * v2: inotify on `memory.events`, whose `oom_kill` counter rises by one
//!   per process the OOM killer kills in the cgroup.

use crate::error::{Error, Result};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What a watcher saw after its descriptor became readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomRead {
    /// This many new OOM events.
    Oom(u64),
    /// Nothing new (a spurious wake-up or another counter changed).
    Nothing,
    /// The cgroup is gone.
    Gone,
}

enum How {
    V1 {
        _oom_control: std::fs::File,
        event_control: PathBuf,
    },
    V2 {
        events: PathBuf,
        count: u64,
    },
}

/// A pollable source of OOM events for one cgroup.
pub struct OomWatcher {
    fd: OwnedFd,
    how: How,
}

fn last_err(what: &str, path: &Path) -> Error {
    Error::msg(format!(
        "{what} {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    ))
}

impl OomWatcher {
    /// Watch a v1 memory cgroup directory.
    pub fn v1(memdir: &Path) -> Result<OomWatcher> {
        let ocp = memdir.join("memory.oom_control");
        let oc = std::fs::File::open(&ocp).map_err(|e| Error::io("open", &ocp, e))?;
        // SAFETY: eventfd(2) with no pointers; the result is checked.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(last_err("eventfd for", memdir));
        }
        // SAFETY: efd is a new descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(efd) };
        let ec = memdir.join("cgroup.event_control");
        std::fs::write(&ec, format!("{} {}", fd.as_raw_fd(), oc.as_raw_fd()))
            .map_err(|e| Error::io("register OOM eventfd in", &ec, e))?;
        Ok(OomWatcher {
            fd,
            how: How::V1 {
                _oom_control: oc,
                event_control: ec,
            },
        })
    }

    /// Watch a v2 cgroup directory.
    pub fn v2(dir: &Path) -> Result<OomWatcher> {
        let events = dir.join("memory.events");
        let count = oom_kills(&events)
            .ok_or_else(|| Error::msg(format!("read {}: no oom_kill counter", events.display())))?;
        // SAFETY: inotify_init1 with flags only; the result is checked.
        let ifd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if ifd < 0 {
            return Err(last_err("inotify for", dir));
        }
        // SAFETY: ifd is a new descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(ifd) };
        let c = std::ffi::CString::new(events.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::msg("cgroup path holds a NUL byte"))?;
        // SAFETY: a valid inotify descriptor and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) };
        if wd < 0 {
            return Err(last_err("inotify watch", &events));
        }
        Ok(OomWatcher {
            fd,
            how: How::V2 { events, count },
        })
    }

    /// The descriptor to poll for input.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Consume a readiness notification.
    pub fn read(&mut self) -> OomRead {
        match &mut self.how {
            How::V1 { event_control, .. } => {
                let mut b = [0u8; 8];
                // SAFETY: an eventfd read of exactly 8 bytes into our buffer.
                let n = unsafe { libc::read(self.fd.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
                if n != 8 {
                    return OomRead::Nothing;
                }
                if !event_control.exists() {
                    return OomRead::Gone;
                }
                OomRead::Oom(u64::from_ne_bytes(b))
            }
            How::V2 { events, count } => {
                let mut buf = [0u8; 4096];
                loop {
                    // SAFETY: reading into a buffer we own; non-blocking fd.
                    let n = unsafe {
                        libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                    };
                    if n <= 0 {
                        break;
                    }
                }
                match oom_kills(events) {
                    None => OomRead::Gone,
                    Some(c) if c > *count => {
                        let n = c - *count;
                        *count = c;
                        OomRead::Oom(n)
                    }
                    Some(_) => OomRead::Nothing,
                }
            }
        }
    }
}

/// The oom_kill counter of a v2 memory.events file.
pub fn oom_kills(events: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(events).ok()?;
    Some(
        super::stats::parse_keyed(&text)
            .get("oom_kill")
            .copied()
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_counter_through_inotify() {
        let d = std::env::temp_dir().join(format!("nk-oom-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let ev = d.join("memory.events");
        std::fs::write(&ev, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        let mut w = OomWatcher::v2(&d).unwrap();
        std::fs::write(&ev, "low 0\nhigh 0\nmax 5\noom 3\noom_kill 3\n").unwrap();
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let n = poll(
            &mut [PollFd::new(w.fd(), PollFlags::POLLIN)],
            PollTimeout::from(2000u16),
        );
        assert_eq!(n, Ok(1));
        assert_eq!(w.read(), OomRead::Oom(2));
        assert_eq!(w.read(), OomRead::Nothing);
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(w.read(), OomRead::Gone);
        assert!(OomWatcher::v1(&d).is_err());
    }
}
