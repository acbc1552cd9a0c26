//! One conversation with `criu swrk`: CRIU's service mode for a single
//! client, as runc drives it. The runtime makes a SOCK_SEQPACKET socketpair,
//! starts `criu swrk <fd>` with one end, sends one request, answers every
//! notification (the action-script points: setup-namespaces,
//! post-restore, orphan-pts-master ...) until the final response, and waits
//! for CRIU to exit. Each message is one datagram of protobuf bytes
//! ([`super::rpc`]); a notification may carry a descriptor (SCM_RIGHTS).

use super::rpc::{Notify, Req, ReqType, Resp};
use super::CriuError;
use nix::sys::socket::{
    recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The largest response accepted (runc reads 40 KiB; CRIU's are far smaller).
const MAX_MSG: usize = 64 * 1024;

/// The lowest descriptor number handed to CRIU, above its stdio and the
/// runtime's own low descriptors.
const PASS_FROM: i32 = 10;

/// What CRIU's standard streams are.
pub enum Stdio3 {
    /// /dev/null for all three (dump: CRIU logs to its log file).
    Null,
    /// The runtime's own (restore: the restored process's pipes are
    /// matched to these by `inherit_fd`).
    Inherit,
}

/// A `criu swrk` about to start, with the descriptors it will inherit.
pub struct Swrk {
    criu: PathBuf,
    /// Inheritable duplicates, closed in the runtime once CRIU has them.
    passed: Vec<OwnedFd>,
}

impl Swrk {
    /// A conversation with the criu binary at `criu`.
    pub fn new(criu: &Path) -> Swrk {
        Swrk {
            criu: criu.to_path_buf(),
            passed: Vec::new(),
        }
    }

    /// Hand `fd` to CRIU; the result is the number CRIU will know it by
    /// (for images_dir_fd and work_dir_fd, which CRIU opens through this
    /// process's /proc/<pid>/fd, and inherit_fd, which are CRIU's own).
    pub fn pass(&mut self, fd: BorrowedFd<'_>) -> Result<i32, CriuError> {
        let n = crate::linux::fs::dup_inheritable(fd, PASS_FROM).map_err(|e| CriuError::Io {
            op: format!("pass descriptor {} to criu: {e}", fd.as_raw_fd()),
        })?;
        // SAFETY: n is the new descriptor fcntl(F_DUPFD) just returned.
        self.passed.push(unsafe { OwnedFd::from_raw_fd(n) });
        Ok(n)
    }

    /// Send `req` and return CRIU's final answer. `started` sees CRIU's pid
    /// before the request goes (restore moves it into the container's
    /// cgroup there, and may add to the request); `notify` answers each
    /// notification (an error there fails the request, and CRIU undoes
    /// what it did). `log` is the log file named in the request, quoted
    /// when CRIU fails.
    pub fn run(
        mut self,
        mut req: Req,
        stdio: Stdio3,
        log: Option<&Path>,
        started: impl FnOnce(u32, &mut Req) -> crate::Result<()>,
        mut notify: impl FnMut(&Notify, Option<OwnedFd>) -> crate::Result<()>,
    ) -> Result<Resp, CriuError> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| CriuError::Io {
            op: format!("socketpair(AF_UNIX, SOCK_SEQPACKET): {e}"),
        })?;
        let server = crate::linux::fs::dup_inheritable(theirs.as_fd(), PASS_FROM).map_err(|e| {
            CriuError::Io {
                op: format!("pass the socket to criu: {e}"),
            }
        })?;
        // SAFETY: the descriptor fcntl(F_DUPFD) just returned.
        let server = unsafe { OwnedFd::from_raw_fd(server) };
        drop(theirs);
        let mut cmd = Command::new(&self.criu);
        cmd.arg("swrk").arg(server.as_raw_fd().to_string());
        match stdio {
            Stdio3::Null => {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
            }
            Stdio3::Inherit => {
                cmd.stdin(Stdio::inherit())
                    .stdout(Stdio::inherit())
                    .stderr(Stdio::inherit());
            }
        }
        let mut child = cmd.spawn().map_err(|e| CriuError::Spawn {
            path: self.criu.clone(),
            cause: e,
        })?;
        // CRIU has its end of the socket: ours goes, so a CRIU that dies is
        // seen as EOF. The passed descriptors stay open under their numbers
        // until CRIU is done: it opens images_dir_fd and work_dir_fd as
        // /proc/<this pid>/fd/N. Close-on-exec now, so no hook inherits them.
        drop(server);
        for f in &self.passed {
            let _ = nix::fcntl::fcntl(
                f,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
        }
        let typ = req.typ;
        let done = (|| {
            started(child.id(), &mut req).map_err(|e| CriuError::Setup(Box::new(e)))?;
            send(&ours, &req)?;
            loop {
                let (resp, fd) = match recv(&ours)? {
                    Some(r) => r,
                    None => return Ok(None),
                };
                if !resp.success {
                    return Err(CriuError::Failed {
                        typ: typ.name(),
                        errno: resp.cr_errno.unwrap_or(0),
                        errmsg: resp.cr_errmsg.clone(),
                        log: log.map(Path::to_path_buf),
                        excerpt: log.map(log_errors).unwrap_or_default(),
                    });
                }
                match (resp.typ, &resp.notify) {
                    (ReqType::Notify, Some(n)) => {
                        let r = notify(n, fd);
                        send(&ours, &Req::notify_ack(r.is_ok()))?;
                        if let Err(e) = r {
                            return Err(CriuError::Notify {
                                script: n.script.clone(),
                                cause: Box::new(e),
                            });
                        }
                    }
                    (t, _) if t == typ => return Ok(Some(resp)),
                    (t, _) => {
                        return Err(CriuError::Unexpected(format!(
                            "a {} response to a {} request",
                            t.name(),
                            typ.name()
                        )))
                    }
                }
            }
        })();
        // Closing our end ends a CRIU that waits for more (pre-dump's loop).
        drop(ours);
        let passed = std::mem::take(&mut self.passed);
        let status = child.wait().map_err(|e| CriuError::Io {
            op: format!("wait for criu (pid {}): {e}", child.id()),
        })?;
        drop(passed);
        match done? {
            Some(resp) => {
                // After a pre-dump CRIU waits for the final dump, and exits
                // non-zero when the socket closes instead (runc ignores it).
                if !status.success() && typ != ReqType::PreDump {
                    return Err(CriuError::Exit {
                        typ: typ.name(),
                        status: status.to_string(),
                        log: log.map(Path::to_path_buf),
                        excerpt: log.map(log_errors).unwrap_or_default(),
                    });
                }
                Ok(resp)
            }
            None => Err(CriuError::NoAnswer {
                typ: typ.name(),
                status: status.to_string(),
                log: log.map(Path::to_path_buf),
                excerpt: log.map(log_errors).unwrap_or_default(),
            }),
        }
    }
}

fn send(sock: &OwnedFd, req: &Req) -> Result<(), CriuError> {
    let b = req.encode();
    let n = nix::unistd::write(sock, &b).map_err(|e| CriuError::Io {
        op: format!("send the {} request to criu: {e}", req.typ.name()),
    })?;
    if n != b.len() {
        return Err(CriuError::Io {
            op: format!("send the {} request to criu: short write", req.typ.name()),
        });
    }
    Ok(())
}

/// One response, with the descriptor it carried; None when CRIU closed
/// the socket (it exited).
fn recv(sock: &OwnedFd) -> Result<Option<(Resp, Option<OwnedFd>)>, CriuError> {
    let mut buf = vec![0u8; MAX_MSG];
    let mut cmsg = nix::cmsg_space!([RawFd; 2]);
    let (n, fds, truncated) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => {
                let mut fds = Vec::new();
                for c in m.cmsgs().into_iter().flatten() {
                    if let ControlMessageOwned::ScmRights(v) = c {
                        // SAFETY: descriptors the kernel just installed for us.
                        fds.extend(v.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                    }
                }
                break (m.bytes, fds, m.flags.contains(MsgFlags::MSG_TRUNC));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(CriuError::Io {
                    op: format!("read criu's response: {e}"),
                })
            }
        }
    };
    if n == 0 {
        return Ok(None);
    }
    if truncated {
        return Err(CriuError::Unexpected(format!(
            "a response longer than {MAX_MSG} bytes"
        )));
    }
    let resp = Resp::decode(&buf[..n]).map_err(CriuError::Decode)?;
    Ok(Some((resp, fds.into_iter().next())))
}

/// The lines of a CRIU log that say what went wrong: its `Error` lines,
/// the last few (the first error is usually the cause, the rest follow).
pub fn log_errors(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let errs: Vec<String> = text
        .lines()
        .filter(|l| l.contains("Error (") || l.contains("Error:"))
        .map(|l| {
            // "(00.025322) Error (criu/vdso.c:381): ...": the time goes.
            match l.strip_prefix('(').and_then(|r| r.split_once(") ")) {
                Some((_, rest)) => rest.to_string(),
                None => l.to_string(),
            }
        })
        .collect();
    let from = errs.len().saturating_sub(8);
    errs[from..].to_vec()
}
