//! The share over virtio-fs, where it can be had. virtio-9p sends every
//! file operation through QEMU's 9p server; virtio-fs is FUSE over a
//! virtqueue, served by a separate daemon (`virtiofsd`, which Debian's QEMU
//! ships in /usr/lib/qemu) that shares the guest's memory, with the guest's
//! page cache in front. The monitor starts virtiofsd in its private mount
//! namespace (where the share directory is), sandboxed
//! (`sandbox=namespace`: its own mount, pid and network namespaces, rooted
//! in the share), and gives QEMU a connected vhost-user socket. The socket
//! file is unlinked as soon as QEMU's end is connected, and virtiofsd dies
//! with the monitor (PR_SET_PDEATHSIG), so nothing of it outlives the
//! container.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// Where Debian's QEMU installs virtiofsd (`NK_VIRTIOFSD` overrides it).
pub const DEFAULT_DAEMON: &str = "/usr/lib/qemu/virtiofsd";
/// Annotation that forces the share's filesystem: `9p` or `virtiofs`.
pub const ANNOTATION: &str = "org.nano-sandbox.vm.share";
/// virtiofsd's log in the state directory.
pub const LOG: &str = "virtiofsd.log";
/// The vhost-user socket, bound in the state directory and unlinked once QEMU's end is connected.
const SOCKET: &str = "virtiofs.sock";

/// The filesystem that carries the share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareFs {
    /// virtio-fs, served by this virtiofsd.
    VirtioFs { daemon: PathBuf },
    /// virtio-9p, served by QEMU itself.
    NineP,
}

/// The share's filesystem and why it was chosen (for `check`, `-E` and the log).
#[derive(Debug, Clone)]
pub struct Choice {
    pub fs: ShareFs,
    pub why: String,
}

/// The virtiofsd VM mode would use (`NK_VIRTIOFSD`, else Debian's path).
pub fn daemon_path() -> PathBuf {
    std::env::var_os("NK_VIRTIOFSD")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DAEMON))
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Choose the share's filesystem: the annotation, when given, decides;
/// otherwise virtio-fs when virtiofsd is installed and the guest kernel has
/// the virtiofs module, else 9p. Forcing virtio-fs where it cannot work is
/// an error.
pub fn choose(annotation: Option<&str>, kernel_has_virtiofs: bool) -> Result<Choice> {
    let daemon = daemon_path();
    let have = executable(&daemon);
    let missing = if !have {
        Some(format!("{} is not installed", daemon.display()))
    } else if !kernel_has_virtiofs {
        Some("the guest kernel has no virtiofs module".to_string())
    } else {
        None
    };
    match (annotation, missing) {
        (Some("9p"), _) => Ok(Choice {
            fs: ShareFs::NineP,
            why: format!("{ANNOTATION}=9p"),
        }),
        (Some("virtiofs"), None) => Ok(Choice {
            fs: ShareFs::VirtioFs { daemon },
            why: format!("{ANNOTATION}=virtiofs"),
        }),
        (Some("virtiofs"), Some(m)) => Err(Error::Msg(format!(
            "annotation {ANNOTATION}=virtiofs: {m} (apt-get install qemu-system-x86, or leave the annotation out to fall back to 9p)"
        ))),
        (Some(v), _) => Err(Error::Msg(format!(
            "annotation {ANNOTATION}={v:?}: use 9p or virtiofs"
        ))),
        (None, None) => Ok(Choice {
            fs: ShareFs::VirtioFs {
                daemon: daemon.clone(),
            },
            why: format!(
                "{} is installed and the guest kernel has the virtiofs module",
                daemon.display()
            ),
        }),
        (None, Some(m)) => Ok(Choice {
            fs: ShareFs::NineP,
            why: format!("{m}: 9p instead"),
        }),
    }
}

/// A running virtiofsd.
#[derive(Debug)]
pub struct Daemon {
    pub pid: i32,
    pidfd: OwnedFd,
    /// QEMU's end of the vhost-user socket (connected), until QEMU has it.
    pub qemu_end: Option<OwnedFd>,
}

impl Daemon {
    /// Start `daemon` serving `share`, logging to `state_dir`/[`LOG`]. It
    /// dies with the calling thread.
    pub fn start(daemon: &Path, share: &Path, state_dir: &Path) -> Result<Daemon> {
        use nix::sys::socket::{
            bind, connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
        };
        let d = std::fs::File::open(state_dir).map_err(|e| Error::io("open", state_dir, e))?;
        // Through /proc/self/fd the path stays short whatever --root is.
        let path = format!("/proc/self/fd/{}/{SOCKET}", d.as_raw_fd());
        let sock_file = state_dir.join(SOCKET);
        let _ = std::fs::remove_file(&sock_file);
        let addr = UnixAddr::new(path.as_str()).map_err(|e| Error::sys("socket address", e))?;
        let l = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| Error::sys("socket", e))?;
        bind(l.as_raw_fd(), &addr)
            .map_err(|e| Error::sys(format!("bind {}", sock_file.display()), e))?;
        listen(&l, Backlog::new(1).expect("valid backlog")).map_err(|e| Error::sys("listen", e))?;
        // Connected before virtiofsd even runs: it accepts from the backlog.
        let c = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| Error::sys("socket", e))?;
        let connected = connect(c.as_raw_fd(), &addr)
            .map_err(|e| Error::sys(format!("connect {}", sock_file.display()), e));
        // Nothing needs the name any more.
        let _ = std::fs::remove_file(&sock_file);
        connected?;
        let log = state_dir.join(LOG);
        let logf = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&log)
                .map_err(|e| Error::io("open", &log, e))?
        };
        let mut cmd = std::process::Command::new(daemon);
        cmd.arg("--fd=3")
            .arg("-o")
            .arg(format!(
                "source={},cache=auto,sandbox=namespace",
                share.display()
            ))
            // Keep our RLIMIT_NOFILE: raising it needs CAP_SYS_RESOURCE.
            .arg("--rlimit-nofile=0")
            // Like QEMU's, its working directory names the container.
            .current_dir(state_dir)
            .stdin(std::process::Stdio::null())
            .stdout(logf.try_clone().map_err(|e| Error::io("dup", &log, e))?)
            .stderr(logf);
        let lfd = l.as_raw_fd();
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || crate::qemu::child_setup(&[lfd]));
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::Msg(format!("start {}: {e}", daemon.display())))?;
        let pid = child.id() as i32;
        // Reaped through the pidfd (or by whoever reaps the monitor's children).
        std::mem::forget(child);
        let pidfd = sandbox::linux::syscall::pidfd_open(pid)
            .map_err(|e| Error::sys("pidfd_open(virtiofsd)", e))?;
        // SAFETY: the connected socket is ours; OwnedFd takes it over.
        let qemu_end =
            Some(unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(c)) });
        Ok(Daemon {
            pid,
            pidfd,
            qemu_end,
        })
    }
}

impl Drop for Daemon {
    /// Stop and reap it, leaving no process behind, not even a zombie for
    /// init. With `sandbox=namespace` virtiofsd forks its server into a new
    /// pid namespace and waits for it: the server goes first (its parent
    /// then reaps it and exits), the parent after. Killing only the parent
    /// would orphan the server, which follows by its own PR_SET_PDEATHSIG
    /// and stays a zombie `[virtiofsd]` until init reaps it.
    fn drop(&mut self) {
        use sandbox::linux::syscall::{pidfd_open, pidfd_send_signal};
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.pid))
            .unwrap_or_default();
        for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            // The server is the parent's child: its pid stays its own until
            // the parent reaps it.
            if let Ok(fd) = pidfd_open(c) {
                let _ = pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
            }
        }
        let mut pfd = [nix::poll::PollFd::new(
            self.pidfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        // The parent exits once it has reaped the server; if it does not
        // (no server yet, or stuck), it is killed.
        let _ = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(2000u16));
        let _ = pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
        // SAFETY: waitid on our own child's pidfd, into a zeroed siginfo.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PIDFD,
                self.pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED,
            );
        }
    }
}
