//! A command under a real pseudo-terminal (`nk_tests::term`): the pty is
//! its controlling terminal and stdio, so window-size changes reach it as
//! SIGWINCH; output is read with a deadline, never for a while.

use crate::DEADLINE;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

/// A command running with a new pty as its controlling terminal and stdio.
pub struct Term {
    pub master: OwnedFd,
    /// The command on the terminal (None: a pty from `--console-socket`).
    pub child: Option<std::process::Child>,
    pub seen: Vec<u8>,
}

/// Set a terminal's window size (TIOCSWINSZ on either end).
pub fn set_winsize(fd: i32, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize that lives for the call.
    assert_eq!(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) }, 0);
}

impl Term {
    /// Start `cmd` on a new `rows`x`cols` pty, in its own session.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Term {
        // SAFETY: posix_openpt returns a new descriptor (or -1) that we own.
        let m = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        assert!(m >= 0, "posix_openpt");
        // SAFETY: m is a descriptor we own.
        let master = unsafe { OwnedFd::from_raw_fd(m) };
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: grantpt/unlockpt on our master; ptsname_r writes at most name.len() bytes.
        unsafe {
            assert_eq!(libc::grantpt(m), 0);
            assert_eq!(libc::unlockpt(m), 0);
            assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
        }
        // SAFETY: ptsname_r wrote a NUL-terminated path.
        let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
            .to_str()
            .unwrap()
            .to_string();
        set_winsize(m, rows, cols);
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)
            .unwrap();
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: between fork and exec only async-signal-safe calls:
        // SIGHUP back to its default, as in a login session (the suite may
        // run under `nohup`, whose SIG_IGN the command would inherit and keep,
        // so that no hang-up would reach it), a new session, then the pty
        // (now fd 0) becomes its controlling terminal.
        unsafe {
            cmd.pre_exec(|| {
                if libc::signal(libc::SIGHUP, libc::SIG_DFL) == libc::SIG_ERR
                    || libc::setsid() < 0
                    || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        Term {
            master,
            child: Some(child),
            seen: Vec::new(),
        }
    }

    /// The master end of a pty that someone else runs (`--console-socket`).
    pub fn attach(master: OwnedFd) -> Term {
        Term {
            master,
            child: None,
            seen: Vec::new(),
        }
    }

    /// Type `s` at the terminal.
    pub fn send(&self, s: &str) {
        // SAFETY: write from a live buffer to our master.
        let n = unsafe { libc::write(self.master.as_raw_fd(), s.as_ptr().cast(), s.len()) };
        assert_eq!(n, s.len() as isize);
    }

    /// Read until `want` appears in the output after `from` (DEADLINE at most).
    pub fn expect(&mut self, want: &str) -> String {
        let from = self.seen.len();
        let start = Instant::now();
        loop {
            let text = String::from_utf8_lossy(&self.seen[from..]).into_owned();
            if text.contains(want) {
                return text;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{want:?} did not appear; the terminal showed: {text:?}"
            );
            if !self.read_some(100) {
                let text = String::from_utf8_lossy(&self.seen[from..]).into_owned();
                assert!(
                    text.contains(want),
                    "terminal closed before {want:?}: {text:?}"
                );
                return text;
            }
        }
    }

    /// Poll and read once; false when the terminal is closed.
    pub fn read_some(&mut self, ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: self.master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll one pollfd that lives for the call.
        if unsafe { libc::poll(&mut p, 1, ms) } <= 0 {
            return true;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: read into our buffer from our master.
        let n = unsafe { libc::read(self.master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return false;
        }
        self.seen.extend_from_slice(&buf[..n as usize]);
        true
    }

    /// The pty's local modes (ICANON, ECHO...).
    pub fn lflag(&self) -> libc::tcflag_t {
        // The master's modes are the pty's.
        // SAFETY: a zeroed termios is valid; tcgetattr fills it.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr on our master, writing into our local.
        let r = unsafe { libc::tcgetattr(self.master.as_raw_fd(), &mut t) };
        assert_eq!(r, 0, "tcgetattr");
        t.c_lflag
    }

    /// Wait for the command, draining its output; returns the exit code.
    pub fn wait(mut self) -> (i32, libc::tcflag_t) {
        let start = Instant::now();
        loop {
            let child = self.child.as_mut().expect("a command on the terminal");
            if let Some(st) = child.try_wait().unwrap() {
                return (st.code().unwrap_or(-1), self.lflag());
            }
            assert!(start.elapsed() < DEADLINE, "did not exit");
            self.read_some(50);
        }
    }
}

/// Receive one descriptor over a unix socket (SCM_RIGHTS), as a
/// `--console-socket` listener does.
pub fn recv_fd(s: &std::os::unix::net::UnixStream) -> OwnedFd {
    let mut data = [0u8; 64];
    let mut cbuf = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: a zeroed msghdr is valid; it points at buffers that outlive recvmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.len();
    // SAFETY: recvmsg into the buffers set up above.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, 0) };
    assert!(
        n > 0,
        "recvmsg: no message (a descriptor needs a non-empty payload)"
    );
    // SAFETY: the kernel filled a control message in our buffer.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        assert!(!c.is_null(), "no descriptor received");
        assert_eq!((*c).cmsg_type, libc::SCM_RIGHTS);
        OwnedFd::from_raw_fd(*(libc::CMSG_DATA(c) as *const i32))
    }
}
