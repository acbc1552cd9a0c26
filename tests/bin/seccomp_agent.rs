//! nk-seccomp-agent: a small seccomp notify listener for the tests, speaking
//! runc's listener protocol (one JSON `ContainerProcessState` message per
//! connection, the notify descriptor attached with SCM_RIGHTS).
//!
//! Usage: `nk-seccomp-agent SOCKET LOG [--signal-first]`
//!
//! It answers intercepted syscalls itself:
//! * mkdir/mkdirat of PATH: creates `PATH-<listenerMetadata>` in the
//!   container instead, and returns success (so PATH itself never appears);
//! * chdir: with `--signal-first`, sends SIGUSR1 to the caller once, waits,
//!   then answers success; the log says whether the answer still reached the
//!   syscall (it does only under SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV);
//! * anything else: SECCOMP_USER_NOTIF_FLAG_CONTINUE.
//!
//! Every event is one line in LOG: `state <json>`, `mkdir <path>`,
//! `chdir send=ok|ENOENT`, `other <nr>`.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};

const SYS_CHDIR: i32 = libc::SYS_chdir as i32;
const SYS_MKDIR: i32 = libc::SYS_mkdir as i32;
const SYS_MKDIRAT: i32 = libc::SYS_mkdirat as i32;

type Log = Arc<Mutex<std::fs::File>>;

fn note(l: &Log, line: &str) {
    let mut f = l.lock().unwrap();
    let _ = writeln!(f, "{line}");
    let _ = f.flush();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: nk-seccomp-agent SOCKET LOG [--signal-first]");
        std::process::exit(2);
    }
    let signal_first = args.iter().any(|a| a == "--signal-first");
    let _ = std::fs::remove_file(&args[1]);
    let listener = UnixListener::bind(&args[1]).expect("bind the agent socket");
    let log: Log = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args[2])
            .expect("open the log"),
    ));
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let log = log.clone();
        std::thread::spawn(move || {
            if let Some((state, fd)) = receive(conn.as_raw_fd()) {
                note(&log, &format!("state {state}"));
                let meta = serde_json::from_str::<serde_json::Value>(&state)
                    .ok()
                    .and_then(|v| v["metadata"].as_str().map(String::from))
                    .unwrap_or_default();
                serve(fd, &meta, signal_first, &log);
            } else {
                note(&log, "error no descriptor received");
            }
        });
    }
}

/// Read the one message of a connection and the descriptor sent with it.
fn receive(sock: RawFd) -> Option<(String, OwnedFd)> {
    let mut buf = vec![0u8; 1 << 16];
    let mut cbuf = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is valid; the pointers set below outlive recvmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.len();
    // SAFETY: recvmsg into buffers we own.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n <= 0 {
        return None;
    }
    // SAFETY: walking the control messages the kernel wrote into cbuf.
    let fd = unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return None;
        }
        std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const RawFd)
    };
    let text = String::from_utf8_lossy(&buf[..n as usize]).into_owned();
    // SAFETY: SCM_RIGHTS gave us a new descriptor.
    Some((text, unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Read a NUL-terminated string from the target's memory.
fn read_string(pid: u32, addr: u64) -> Option<String> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut buf = vec![0u8; 4096];
    let n = f.read_at(&mut buf, addr).ok()?;
    let end = buf[..n].iter().position(|b| *b == 0)?;
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

fn id_valid(fd: RawFd, id: u64) -> bool {
    // SAFETY: the ioctl reads a u64 that lives for the call.
    unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0 }
}

fn respond(fd: RawFd, id: u64, error: i32, cont: bool) -> Result<(), std::io::Error> {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error,
        flags: if cont {
            libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32
        } else {
            0
        },
    };
    // SAFETY: the ioctl reads the response struct that lives for the call.
    if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn serve(fd: OwnedFd, meta: &str, signal_first: bool, log: &Log) {
    let raw = fd.as_raw_fd();
    let mut signalled = std::collections::HashSet::new();
    loop {
        let mut pfd = libc::pollfd {
            fd: raw,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one pollfd we own.
        let r = unsafe { libc::poll(&mut pfd, 1, -1) };
        if r < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        if pfd.revents & libc::POLLIN == 0 {
            // POLLHUP: every filtered process is gone.
            return;
        }
        // SAFETY: a zeroed seccomp_notif is what NOTIF_RECV expects.
        let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: the kernel fills the struct we own.
        if unsafe { libc::ioctl(raw, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n) } < 0 {
            continue;
        }
        match n.data.nr {
            SYS_MKDIR | SYS_MKDIRAT => {
                let addr = if n.data.nr == SYS_MKDIR {
                    n.data.args[0]
                } else {
                    n.data.args[1]
                };
                let path = read_string(n.pid, addr);
                // The target may have died and its pid been reused meanwhile.
                if !id_valid(raw, n.id) {
                    continue;
                }
                let Some(path) = path.filter(|p| p.starts_with('/')) else {
                    let _ = respond(raw, n.id, -libc::EINVAL, false);
                    continue;
                };
                note(log, &format!("mkdir {path}"));
                let made = format!("/proc/{}/root{path}-{meta}", n.pid);
                let err = match std::fs::create_dir(&made) {
                    Ok(()) => 0,
                    Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
                };
                let _ = respond(raw, n.id, err, false);
            }
            SYS_CHDIR if signal_first => {
                if signalled.insert(n.pid) {
                    // SAFETY: kill(2) with a pid and a signal number.
                    unsafe { libc::kill(n.pid as i32, libc::SIGUSR1) };
                    wait_signal_settled(raw, n.id, n.pid);
                }
                match respond(raw, n.id, 0, true) {
                    Ok(()) => note(log, "chdir send=ok"),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        note(log, "chdir send=ENOENT")
                    }
                    Err(e) => note(log, &format!("chdir send={e}")),
                }
            }
            other => {
                note(log, &format!("other {other}"));
                let _ = respond(raw, n.id, 0, true);
            }
        }
    }
}

/// Wait (up to 10 s) until SIGUSR1 sent to `pid` has done what it will do
/// to the notified syscall: interrupted it (the notification is no longer
/// valid), or stays pending while the task waits killably for our answer
/// (SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: state D).
fn wait_signal_settled(raw: i32, id: u64, pid: u32) {
    let settled = || {
        if !id_valid(raw, id) {
            return true;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let bit = 1u64 << (libc::SIGUSR1 - 1);
        let pending = status.lines().any(|l| {
            (l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
                && u64::from_str_radix(l[7..].trim(), 16).is_ok_and(|m| m & bit != 0)
        });
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rfind(')').and_then(|i| stat.get(i + 2..i + 3));
        pending && state == Some("D")
    };
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !settled() && std::time::Instant::now() < end {
        // A poll interval: the task's state is read again.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
