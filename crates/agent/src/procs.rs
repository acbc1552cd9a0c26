//! The processes the agent watches (container inits, exec'd processes and
//! guest programs) and their stdio: pipes or a pty on the guest side, frames
//! on the stdio port on the host side.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

/// One watched process.
pub struct Proc {
    pub pid: i32,
    /// Where stdin frames go: a pipe's write end, or the pty master.
    pub stdin: Option<OwnedFd>,
    pub stdin_buf: Vec<u8>,
    /// The host sent end of file; close stdin once the buffer is written.
    pub stdin_eof: bool,
    /// Output descriptors with the fd number they stand for (1, 2, or a
    /// preserved descriptor the container writes to).
    pub outs: Vec<(u8, OwnedFd)>,
    /// Preserved descriptors the container reads, fed from the host.
    pub feeds: Vec<Feed>,
    /// The pty master, for window size changes.
    pub pty: Option<OwnedFd>,
    /// Exit status once reaped.
    pub status: Option<i32>,
    pub exited_at: Option<Instant>,
}

impl Proc {
    pub fn new(pid: i32, io: ParentIo) -> Proc {
        Proc {
            pid,
            stdin: io.stdin,
            stdin_buf: Vec::new(),
            stdin_eof: false,
            outs: io.outs,
            feeds: io.feeds,
            pty: io.pty,
            status: None,
            exited_at: None,
        }
    }
}

/// A pipe into the process for a preserved descriptor (`--preserve-fds`):
/// the host's bytes wait in `buf` until the pipe takes them.
pub struct Feed {
    /// The descriptor number in the container.
    pub no: u8,
    pub fd: Option<OwnedFd>,
    pub buf: Vec<u8>,
    /// The host sent end of file: close once `buf` is written.
    pub eof: bool,
}

impl Feed {
    /// Write what the pipe takes; close it at the end of the data (or
    /// when its reader is gone).
    pub fn write(&mut self) {
        let Some(fd) = &self.fd else {
            self.buf.clear();
            return;
        };
        if !self.buf.is_empty() {
            // SAFETY: write from our buffer to the pipe.
            let n =
                unsafe { libc::write(fd.as_raw_fd(), self.buf.as_ptr().cast(), self.buf.len()) };
            if n > 0 {
                self.buf.drain(..n as usize);
            } else if n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)
            {
                self.buf.clear();
                self.fd = None;
            }
        }
        if self.buf.is_empty() && self.eof {
            self.fd = None;
        }
    }
}

/// The agent's ends of a process's stdio.
pub struct ParentIo {
    pub stdin: Option<OwnedFd>,
    pub outs: Vec<(u8, OwnedFd)>,
    pub feeds: Vec<Feed>,
    pub pty: Option<OwnedFd>,
}

/// The process's ends: what becomes its 0, 1 and 2, then 3, 4... (the
/// preserved descriptors).
pub struct ChildIo {
    pub fds: [OwnedFd; 3],
    pub extra: Vec<OwnedFd>,
}

/// Pipes standing for preserved descriptors.
pub struct Preserved {
    /// The container's ends, in order from fd 3.
    pub child: Vec<OwnedFd>,
    /// The agent's ends the host's bytes go into.
    pub feeds: Vec<Feed>,
    /// The agent's ends the container's bytes come out of, with their numbers.
    pub outs: Vec<(u8, OwnedFd)>,
}

/// Pipes standing for preserved descriptors, one per entry of `carry`.
pub fn preserved(carry: &[vm_protocol::Carry]) -> std::io::Result<Preserved> {
    let (mut child, mut feeds, mut outs) = (Vec::new(), Vec::new(), Vec::new());
    for (i, c) in carry.iter().enumerate() {
        let no = vm_protocol::FD_PRESERVED + i as u8;
        let (r, w) = pipe()?;
        match c {
            vm_protocol::Carry::ToContainer => {
                set_nonblocking(w.as_raw_fd());
                child.push(r);
                feeds.push(Feed {
                    no,
                    fd: Some(w),
                    buf: Vec::new(),
                    eof: false,
                });
            }
            vm_protocol::Carry::FromContainer => {
                set_nonblocking(r.as_raw_fd());
                child.push(w);
                outs.push((no, r));
            }
        }
    }
    Ok(Preserved { child, feeds, outs })
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut p = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both are new descriptors that we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) })
}

pub fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Three pipes: the child reads 0 and writes 1 and 2.
pub fn pipes() -> std::io::Result<(ChildIo, ParentIo)> {
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    for fd in [&in_w, &out_r, &err_r] {
        set_nonblocking(fd.as_raw_fd());
    }
    Ok((
        ChildIo {
            fds: [in_r, out_w, err_w],
            extra: Vec::new(),
        },
        ParentIo {
            stdin: Some(in_w),
            outs: vec![(1, out_r), (2, err_r)],
            feeds: Vec::new(),
            pty: None,
        },
    ))
}

/// /dev/null three times (a process whose terminal the library sets up).
pub fn null_io() -> std::io::Result<ChildIo> {
    let open = || -> std::io::Result<OwnedFd> {
        Ok(std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?
            .into())
    };
    Ok(ChildIo {
        fds: [open()?, open()?, open()?],
        extra: Vec::new(),
    })
}

/// The agent's side of a pty master that the library handed back.
pub fn pty_io(master: OwnedFd) -> std::io::Result<ParentIo> {
    set_nonblocking(master.as_raw_fd());
    let out = master.try_clone()?;
    let inp = master.try_clone()?;
    Ok(ParentIo {
        stdin: Some(inp),
        outs: vec![(1, out)],
        feeds: Vec::new(),
        pty: Some(master),
    })
}

/// Run `f` with the child's descriptors on 0, 1, 2 (and 3... for the
/// preserved ones), so that whatever it clones inherits them; the agent's
/// own descriptors on those numbers are put back afterwards, with their
/// close-on-exec flag. The agent is single-threaded, so nothing else sees
/// the swap.
pub fn with_stdio<T>(io: &ChildIo, f: impl FnOnce() -> T) -> T {
    let src: Vec<RawFd> = io
        .fds
        .iter()
        .chain(&io.extra)
        .map(|f| f.as_raw_fd())
        .collect();
    let n = src.len() as RawFd;
    // Copies above every number about to be replaced: a source may sit on one.
    let above = n + 10;
    // SAFETY: F_DUPFD_CLOEXEC of descriptors we hold.
    let moved: Vec<RawFd> = src
        .iter()
        .map(|&fd| unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, above) })
        .collect();
    // (copy of what was there, its descriptor flags), or -1 if nothing was.
    let saved: Vec<(RawFd, i32)> = (0..n)
        // SAFETY: F_GETFD and F_DUPFD_CLOEXEC of our own descriptor numbers.
        .map(|i| unsafe {
            let fl = libc::fcntl(i, libc::F_GETFD);
            if fl < 0 {
                (-1, 0)
            } else {
                (libc::fcntl(i, libc::F_DUPFD_CLOEXEC, above), fl)
            }
        })
        .collect();
    for (i, m) in moved.iter().enumerate() {
        // SAFETY: dup2 of a descriptor we own onto a number we restore below.
        unsafe { libc::dup2(*m, i as RawFd) };
    }
    let r = f();
    for (i, (s, fl)) in saved.iter().enumerate() {
        // SAFETY: put back (or close) our own descriptor numbers, then the copies.
        unsafe {
            if *s >= 0 {
                let cloexec = if fl & libc::FD_CLOEXEC != 0 {
                    libc::O_CLOEXEC
                } else {
                    0
                };
                libc::dup3(*s, i as RawFd, cloexec);
                libc::close(*s);
            } else {
                libc::close(i as RawFd);
            }
        }
    }
    for m in moved {
        // SAFETY: close the copies made above.
        unsafe { libc::close(m) };
    }
    r
}
