//! The foreground: wait for the container's process with its pidfd, forward
//! the signals we receive to it, bridge a pty to our own terminal, and reap
//! orphans when we are a subreaper. Signals are blocked before the child is
//! created and read from a signalfd, so nothing is missed or raced.

use crate::error::{Error, Result};
use crate::explain::{self, catalog};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Signals that are blocked and forwarded (all but the synchronous faults).
pub fn forwarded_set() -> SigSet {
    let mut s = SigSet::all();
    for sig in [
        Signal::SIGKILL,
        Signal::SIGSTOP,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGFPE,
        Signal::SIGILL,
        Signal::SIGTRAP,
    ] {
        s.remove(sig);
    }
    s
}

/// Signals read from the signalfd per round of the wait loop.
const SIGNAL_BATCH: usize = 64;

/// Did this process cause the signal itself? The kernel sends SIGPIPE (and
/// SIGXFSZ) for a failed write as if the writer had sent it to itself
/// (SI_USER from our own pid); SIGTTIN and SIGTTOU come from the kernel for
/// our own terminal I/O (the container leads a session of its own, so it
/// cannot have caused them in our process group). None of these is meant
/// for the container.
pub fn caused_by_us(si: &libc::signalfd_siginfo) -> bool {
    let sig = si.ssi_signo as i32;
    let from_self = si.ssi_code <= 0 && si.ssi_pid == std::process::id();
    let tty_io = si.ssi_code == libc::SI_KERNEL && matches!(sig, libc::SIGTTIN | libc::SIGTTOU);
    from_self || tty_io
}

/// Blocked signals, restored when dropped.
pub struct Blocked {
    old: SigSet,
}

impl Blocked {
    /// Block the forwarded set now (before the child exists).
    pub fn new() -> Result<Blocked> {
        let mut old = SigSet::empty();
        nix::sys::signal::sigprocmask(
            SigmaskHow::SIG_BLOCK,
            Some(&forwarded_set()),
            Some(&mut old),
        )
        .map_err(|e| Error::sys("sigprocmask", e))?;
        Ok(Blocked { old })
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
    }
}

/// What to wait for.
pub struct Foreground<'a> {
    /// The process whose exit ends the wait, and that forwarded signals
    /// reach (through `pidfd`: once it is reaped its pid may be another
    /// process's).
    pub pid: i32,
    pub pidfd: &'a OwnedFd,
    /// A pty master to bridge to our stdin/stdout.
    pub pty: Option<OwnedFd>,
    /// Pass SIGWINCH on to the process instead of resizing `pty`: a VM-mode
    /// monitor shares our terminal and resizes the guest's pty itself.
    pub winch_to_process: bool,
    /// Reap other children as they exit (we are a subreaper).
    pub reap_orphans: bool,
}

fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: write from a live buffer to a descriptor we hold.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// Wait until the process exits; return its status (128+N if killed by N).
pub fn wait(fg: Foreground<'_>) -> Result<i32> {
    let _g = explain::phase(explain::Phase::Signals);
    explain::step(&catalog::WAIT, || {
        format!("poll(pidfd of {}, signalfd)", fg.pid)
    });
    let sfd = SignalFd::with_flags(
        &forwarded_set(),
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )
    .map_err(|e| Error::sys("signalfd", e))?;
    let stdin_tty = crate::linux::console::is_tty(crate::linux::console::stdio(0));
    let raw = match (&fg.pty, stdin_tty) {
        (Some(_), true) => crate::linux::console::make_raw(crate::linux::console::stdio(0)),
        _ => None,
    };
    // The window size comes from whichever of our stdio is a terminal
    // (stdin may be redirected while output still goes to one).
    let size_from = (0..3)
        .map(crate::linux::console::stdio)
        .find(|fd| crate::linux::console::is_tty(*fd));
    let pass_size = || {
        if let (Some(m), Some(t)) = (&fg.pty, size_from) {
            if let Some((r, c)) = crate::linux::console::get_winsize(t) {
                crate::linux::console::set_winsize(m.as_fd(), r, c);
            }
        }
    };
    pass_size();
    // The pty is read until every slave end is closed (EOF or EIO); after
    // that it is no longer polled (a hung-up master polls ready forever).
    let mut pty_open = fg.pty.is_some();
    let mut stdin_open = fg.pty.is_some();
    let mut exited: Option<i32> = None;
    let mut buf = vec![0u8; 16384];
    loop {
        if exited.is_some() && !pty_open {
            break;
        }
        let mut fds = vec![
            libc::pollfd {
                fd: if exited.is_some() {
                    -1
                } else {
                    fg.pidfd.as_raw_fd()
                },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if let Some(m) = &fg.pty {
            fds.push(libc::pollfd {
                fd: if pty_open { m.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            });
            fds.push(libc::pollfd {
                fd: if stdin_open && pty_open { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // After exit, drain the pty without blocking forever.
        let timeout = if exited.is_some() { 100 } else { -1 };
        // SAFETY: poll over a vector that lives for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            if nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                continue;
            }
            break;
        }
        if n == 0 && exited.is_some() {
            break;
        }
        if fds[1].revents & libc::POLLIN != 0 {
            // A bounded batch: the pidfd and the pty are looked at between
            // batches whatever keeps arriving.
            for _ in 0..SIGNAL_BATCH {
                let Ok(Some(si)) = sfd.read_signal() else {
                    break;
                };
                let sig = si.ssi_signo as i32;
                if caused_by_us(&si) {
                    // Our own write to a closed pipe (SIGPIPE), or our own
                    // terminal I/O from the background: nothing the container
                    // did or should hear about. Forwarding and narrating it
                    // would cause the next one (a spin).
                    continue;
                }
                if sig == libc::SIGCHLD {
                    if fg.reap_orphans {
                        reap_others(fg.pid);
                    }
                    continue;
                }
                if sig == libc::SIGURG {
                    continue;
                }
                if sig == libc::SIGWINCH && !fg.winch_to_process {
                    pass_size();
                    continue;
                }
                // Reaped (only the pty is still drained): there is no one to
                // forward to, and the pid may be another process's by now.
                if exited.is_some() {
                    continue;
                }
                if sig != libc::SIGWINCH {
                    explain::step(&catalog::SIGNAL_FORWARD, || {
                        format!("forward {} to {}", crate::linux::signals::name(sig), fg.pid)
                    });
                }
                // Through the pidfd: the signal reaches that process or none.
                let _ = crate::linux::syscall::pidfd_send_signal(fg.pidfd.as_fd(), sig);
            }
        }
        if fds[0].fd >= 0 && fds[0].revents != 0 {
            exited = Some(super::clone::wait_pidfd(fg.pidfd)?);
        }
        if let Some(m) = &fg.pty {
            if pty_open && fds[2].revents != 0 {
                // SAFETY: read into our buffer from the pty master.
                let n = unsafe { libc::read(m.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    write_all(1, &buf[..n as usize]);
                } else if n == 0
                    || !matches!(
                        nix::errno::Errno::last(),
                        nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN
                    )
                {
                    // EIO: no process holds the slave any more.
                    pty_open = false;
                }
            }
            if stdin_open && fds.get(3).is_some_and(|f| f.revents != 0) {
                // SAFETY: read from stdin into our buffer.
                let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    write_all(m.as_raw_fd(), &buf[..n as usize]);
                } else {
                    stdin_open = false;
                }
            }
        }
    }
    if let Some(t) = raw {
        crate::linux::console::restore(crate::linux::console::stdio(0), &t);
    }
    let status = match exited {
        Some(s) => Ok(s),
        None => super::clone::wait_pidfd(fg.pidfd),
    };
    if let Ok(s) = &status {
        explain::step(&catalog::EXIT, || format!("pid {} exit status {s}", fg.pid));
    }
    status
}

/// Reap exited children other than `keep` (orphans adopted as subreaper).
pub fn reap_others(keep: i32) {
    loop {
        // SAFETY: a zeroed siginfo is valid; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid(P_ALL, WNOWAIT) only peeks.
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is valid after a successful waitid.
        let pid = unsafe { info.si_pid() };
        if r < 0 || pid == 0 || pid == keep {
            return;
        }
        let mut st = 0;
        // SAFETY: reap that one pid.
        unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    }
}

const PIDFD_INFO_EXIT: u64 = 1 << 3;

#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
    coredump_mask: u32,
    spare: u32,
}

/// Wait for a process that is not our child (`start --attach`): poll its
/// pidfd, then read the exit status with PIDFD_GET_INFO (Linux 6.15+), or
/// from /proc while it is still a zombie on older kernels.
pub fn wait_exit_of(pid: i32, pidfd: &OwnedFd) -> Result<i32> {
    let mut zombie_status = None;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    while let Err(nix::errno::Errno::EINTR) = poll(
        &mut [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)],
        PollTimeout::NONE,
    ) {}
    // A zombie still shows its exit code in /proc/<pid>/stat (field 52).
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        if let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.first() == Some(&"Z") {
                zombie_status = f.get(49).and_then(|v| v.parse::<i32>().ok());
            }
        }
    }
    let ioc: libc::c_ulong = 0xC040_FF0B; // PIDFD_GET_INFO, _IOWR(0xFF, 11, 64 bytes)
    for _ in 0..200 {
        let mut info = PidfdInfo {
            mask: PIDFD_INFO_EXIT,
            ..Default::default()
        };
        // SAFETY: the ioctl writes at most size_of::<PidfdInfo>() bytes into `info`.
        let r = unsafe { libc::ioctl(pidfd.as_raw_fd(), ioc, &mut info as *mut PidfdInfo) };
        if r == 0 && info.mask & PIDFD_INFO_EXIT != 0 {
            return Ok(decode_wait_status(info.exit_code));
        }
        if let Some(ws) = zombie_status {
            return Ok(decode_wait_status(ws));
        }
        if r < 0 && nix::errno::Errno::last() == nix::errno::Errno::ENOTTY {
            break;
        }
        // The exit information appears once the parent has reaped it.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Err(Error::msg(format!(
        "process {pid} exited, but its exit status could not be read (it is not our child, and this kernel lacks PIDFD_INFO_EXIT)"
    )))
}

/// Shell-style status from a wait(2) status word.
pub fn decode_wait_status(ws: i32) -> i32 {
    if ws & 0x7f == 0 {
        (ws >> 8) & 0xff
    } else {
        128 + (ws & 0x7f)
    }
}
