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
    /// Output descriptors with the fd number they stand for (1 or 2).
    pub outs: Vec<(u8, OwnedFd)>,
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
            pty: io.pty,
            status: None,
            exited_at: None,
        }
    }
}

/// The agent's ends of a process's stdio.
pub struct ParentIo {
    pub stdin: Option<OwnedFd>,
    pub outs: Vec<(u8, OwnedFd)>,
    pub pty: Option<OwnedFd>,
}

/// The process's ends: what becomes its 0, 1 and 2.
pub struct ChildIo {
    pub fds: [OwnedFd; 3],
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
        },
        ParentIo {
            stdin: Some(in_w),
            outs: vec![(1, out_r), (2, err_r)],
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
        pty: Some(master),
    })
}

/// Run `f` with the child's descriptors on 0, 1 and 2, so that whatever it
/// clones inherits them; the agent's own are restored afterwards. The agent
/// is single-threaded, so nothing else sees the swap.
pub fn with_stdio<T>(io: &ChildIo, f: impl FnOnce() -> T) -> T {
    let mut saved = [-1; 3];
    for (i, s) in saved.iter_mut().enumerate() {
        // SAFETY: duplicate our own standard descriptor above 10, close-on-exec.
        *s = unsafe { libc::fcntl(i as RawFd, libc::F_DUPFD_CLOEXEC, 10) };
        // SAFETY: dup2 of a descriptor we own onto a standard number.
        unsafe { libc::dup2(io.fds[i].as_raw_fd(), i as RawFd) };
    }
    let r = f();
    for (i, s) in saved.iter().enumerate() {
        if *s >= 0 {
            // SAFETY: put back and close the saved descriptor.
            unsafe {
                libc::dup2(*s, i as RawFd);
                libc::close(*s);
            }
        }
    }
    r
}
