//! Pseudo-terminals: allocate a pty inside the container's devpts, make the
//! slave the process's controlling terminal, and hand the master out, either
//! to `--console-socket` (SCM_RIGHTS, the engine's way) or to our own parent.

use crate::error::{Error, Result, SysContext};
use crate::explain::{self, catalog};
use nix::fcntl::OFlag;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// An allocated pty: the master, and the slave's path inside the container.
pub struct Pty {
    pub master: OwnedFd,
    pub slave_path: String,
}

/// Open /dev/ptmx (in the current root) and unlock a new pty.
pub fn open_pty() -> Result<Pty> {
    let master = nix::fcntl::open(
        "/dev/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .sys(|| "open /dev/ptmx (is devpts mounted on /dev/pts?)".into())?;
    let mut unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to an int that lives for the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &mut unlock) } < 0 {
        return Err(Error::sys(
            "unlock pty (TIOCSPTLCK)",
            nix::errno::Errno::last(),
        ));
    }
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes the pty number into an unsigned int we own.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) } < 0 {
        return Err(Error::sys(
            "get pty number (TIOCGPTN)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(Pty {
        master,
        slave_path: format!("/dev/pts/{n}"),
    })
}

/// Set the window size of a terminal.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the call.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// Read the window size of a terminal.
pub fn get_winsize(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes into the winsize struct we own.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some((ws.ws_row, ws.ws_col))
}

/// Open the slave and make it stdin, stdout, stderr and the controlling terminal.
pub fn attach_slave(slave_path: &str) -> Result<()> {
    let slave = nix::fcntl::open(
        slave_path,
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .sys(|| format!("open {slave_path}"))?;
    let _ = nix::unistd::setsid();
    // SAFETY: TIOCSCTTY with argument 0 on a terminal descriptor we own.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(Error::sys(
            "make the pty the controlling terminal (TIOCSCTTY)",
            nix::errno::Errno::last(),
        ));
    }
    for n in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        if unsafe { libc::dup2(slave.as_raw_fd(), n) } < 0 {
            return Err(Error::sys(
                format!("dup pty onto fd {n}"),
                nix::errno::Errno::last(),
            ));
        }
    }
    Ok(())
}

/// Bind the slave onto /dev/console (created when missing).
pub fn mount_console(slave_path: &str) -> Result<()> {
    let root = super::fs::open_dir_path(std::path::Path::new("/"))?;
    let fd = super::fs::touch_in_root(root.as_fd(), std::path::Path::new("/dev/console"))?;
    nix::mount::mount::<str, str, str, str>(
        Some(slave_path),
        super::fs::fd_path(fd.as_fd()).as_str(),
        None,
        nix::mount::MsFlags::MS_BIND,
        None,
    )
    .sys(|| format!("bind {slave_path} on /dev/console"))
}

/// Send a descriptor over a connected unix socket with a name payload, as
/// runc does for --console-socket (the master's name, "/dev/ptmx"). The
/// payload must not be empty: a zero-byte message on a stream socket carries
/// no descriptor at all.
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>, name: &str) -> Result<()> {
    explain::step(&catalog::CONSOLE, || {
        format!("sendmsg(SCM_RIGHTS, pty master) on fd {}", sock.as_raw_fd())
    });
    let name = if name.is_empty() { "/dev/ptmx" } else { name };
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .sys(|| "send the pty master over the console socket".into())?;
    Ok(())
}

/// Connect to a unix socket path (the engine's --console-socket).
pub fn connect(path: &std::path::Path) -> Result<OwnedFd> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let s = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .sys(|| "socket(AF_UNIX)".into())?;
    let addr = UnixAddr::new(path).sys(|| format!("console socket path {}", path.display()))?;
    connect(s.as_raw_fd(), &addr)
        .sys(|| format!("connect to console socket {}", path.display()))?;
    Ok(s)
}

/// Put a terminal in raw mode, returning the previous settings.
pub fn make_raw(fd: BorrowedFd<'_>) -> Option<nix::sys::termios::Termios> {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    let old = tcgetattr(fd).ok()?;
    let mut raw = old.clone();
    cfmakeraw(&mut raw);
    tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
    Some(old)
}

/// Restore terminal settings saved by `make_raw`.
pub fn restore(fd: BorrowedFd<'_>, t: &nix::sys::termios::Termios) {
    let _ = nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, t);
}

/// Is this descriptor a terminal?
pub fn is_tty(fd: BorrowedFd<'_>) -> bool {
    nix::unistd::isatty(fd).unwrap_or(false)
}

/// Borrow a standard descriptor.
pub fn stdio(n: i32) -> BorrowedFd<'static> {
    // SAFETY: 0, 1 and 2 stay open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(n) }
}

#[allow(dead_code)]
fn _assert_fd(_: impl AsFd) {}
