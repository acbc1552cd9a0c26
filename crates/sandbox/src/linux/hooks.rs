//! OCI hooks: run each with the state JSON on stdin, its args and env, and a
//! timeout. Output is captured and included in the error when a hook fails.
//! Where a hook runs and what a hook without `env` inherits follow runc (the
//! spec says neither): the runtime's hooks run in the bundle directory with
//! the runtime's environment, the container's with the container process's.

use crate::error::{Error, Result};
use crate::explain::{self, catalog};
use oci_spec::runtime::Hook;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hook points of the runtime spec, in lifecycle order (the names of
/// config.json's `hooks` fields and of the `kind` given to [`run`]).
pub const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

trait ReadFd: Read + AsRawFd {}
impl<T: Read + AsRawFd> ReadFd for T {}

pub use super::syscall::pidfd_open;

/// What a hook inherits from the process that runs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inherit<'a> {
    /// Working directory; None keeps the caller's.
    pub dir: Option<&'a Path>,
    /// Environment of a hook whose config has no `env` (an empty `env` is an
    /// empty environment); None is the caller's own.
    pub env: Option<&'a [String]>,
}

impl<'a> Inherit<'a> {
    /// The runtime's hooks (prestart, createRuntime, poststart, poststop):
    /// the bundle directory while it exists, the runtime's environment.
    pub fn runtime(bundle: &'a Path) -> Self {
        Inherit {
            dir: Some(bundle).filter(|b| b.is_dir()),
            env: None,
        }
    }

    /// The container's hooks (createContainer, startContainer): the
    /// container process's environment, in `dir` (None: where init is).
    pub fn container(dir: Option<&'a Path>, env: &'a [String]) -> Self {
        Inherit {
            dir,
            env: Some(env),
        }
    }
}

/// Run the hooks of one kind in order; stop at the first failure.
pub fn run(kind: &'static str, hooks: &[Hook], state_json: &[u8], at: Inherit<'_>) -> Result<()> {
    for (i, h) in hooks.iter().enumerate() {
        run_one(kind, i, h, state_json, at)?;
    }
    Ok(())
}

/// Run every hook of one kind, logging each failure as a warning and going
/// on: the spec makes a failed poststart or poststop hook a warning after
/// which "the remaining hooks and lifecycle continue as if the hook had
/// succeeded".
pub fn run_warn(kind: &'static str, hooks: &[Hook], state_json: &[u8], at: Inherit<'_>) {
    for (i, h) in hooks.iter().enumerate() {
        if let Err(e) = run_one(kind, i, h, state_json, at) {
            crate::logging::warn(|| format!("{e}"));
        }
    }
}

/// Set O_NONBLOCK on a descriptor.
fn set_nonblocking(fd: i32) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    // SAFETY: the descriptor is open for the duration of the call.
    let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let fl = OFlag::from_bits_truncate(fcntl(b, FcntlArg::F_GETFL)?);
    fcntl(b, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK)).map(|_| ())
}

fn run_one(
    kind: &'static str,
    idx: usize,
    h: &Hook,
    state_json: &[u8],
    at: Inherit<'_>,
) -> Result<()> {
    let path = h.path().display().to_string();
    explain::step(&catalog::HOOK, || {
        format!(
            "{kind}[{idx}]: {} {}",
            path,
            h.args()
                .as_ref()
                .map(|a| a.iter().skip(1).cloned().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        )
    });
    let _g = explain::phase(explain::Phase::Hooks);
    let fail = |reason: String| Error::Hook {
        kind,
        path: path.clone(),
        reason,
    };
    let mut cmd = Command::new(h.path());
    if let Some(args) = h.args() {
        if let Some(a0) = args.first() {
            cmd.arg0(a0);
        }
        cmd.args(args.iter().skip(1));
    }
    if let Some(env) = h.env().as_deref().or(at.env) {
        cmd.env_clear();
        for e in env {
            if let Some((k, v)) = e.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    if let Some(d) = at.dir {
        cmd.current_dir(d);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    // The state goes in through the same poll loop as the output comes out,
    // without blocking: a hook that never reads its stdin, given more state
    // than a pipe holds (big annotations), must still meet its timeout.
    let mut stdin = child.stdin.take().filter(|_| !state_json.is_empty());
    if let Some(s) = &stdin {
        set_nonblocking(s.as_raw_fd()).map_err(|e| fail(format!("stdin pipe: {e}")))?;
    }
    let mut written = 0usize;
    let timeout = h.timeout().map(|t| Duration::from_secs(t.max(1) as u64));
    let mut out = Vec::new();
    let mut err = Vec::new();
    let pidfd = pidfd_open(child.id() as i32).map_err(|e| fail(format!("pidfd_open: {e}")))?;
    let mut stdout: Option<Box<dyn ReadFd>> =
        child.stdout.take().map(|s| Box::new(s) as Box<dyn ReadFd>);
    let mut stderr: Option<Box<dyn ReadFd>> =
        child.stderr.take().map(|s| Box::new(s) as Box<dyn ReadFd>);
    let start = Instant::now();
    let mut exited = false;
    while !exited || stdout.is_some() || stderr.is_some() {
        let remaining = match timeout {
            Some(t) => {
                let el = start.elapsed();
                if el >= t {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!(
                        "timed out after {} s (hook timeout)",
                        t.as_secs()
                    )));
                }
                (t - el).as_millis().min(i32::MAX as u128) as i32
            }
            None => -1,
        };
        if exited {
            // Nobody will read what is left of the state.
            stdin = None;
        }
        let fd_of = |p: &Option<Box<dyn ReadFd>>| p.as_ref().map_or(-1, |s| s.as_raw_fd());
        // Fixed slots: the pidfd, stdout, stderr, stdin (-1 is skipped by poll).
        let mut fds = [
            libc::pollfd {
                fd: if exited { -1 } else { pidfd.as_raw_fd() },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: fd_of(&stdout),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: fd_of(&stderr),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stdin.as_ref().map_or(-1, |s| s.as_raw_fd()),
                events: libc::POLLOUT,
                revents: 0,
            },
        ];
        // SAFETY: poll over an array of pollfd that lives for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, remaining) };
        if n < 0 {
            if nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                continue;
            }
            break;
        }
        if fds[0].revents != 0 {
            exited = true;
        }
        for (k, (pipe, buf)) in [(&mut stdout, &mut out), (&mut stderr, &mut err)]
            .into_iter()
            .enumerate()
        {
            if pipe.is_some() && fds[k + 1].revents != 0 {
                let mut chunk = [0u8; 4096];
                match pipe.as_mut().map(|p| p.read(&mut chunk)) {
                    Some(Ok(0)) | Some(Err(_)) | None => *pipe = None,
                    Some(Ok(n)) => {
                        if buf.len() < 65536 {
                            buf.extend_from_slice(&chunk[..n]);
                        }
                    }
                }
            }
        }
        if fds[3].revents != 0 {
            if let Some(s) = stdin.as_mut() {
                match s.write(&state_json[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // EPIPE: the hook closed its stdin; it need not read it.
                    Err(_) => stdin = None,
                }
            }
            if written >= state_json.len() {
                stdin = None;
            }
        }
    }
    let _ = pidfd.as_fd();
    let status = child.wait().map_err(|e| fail(format!("wait: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "failed".into(),
    };
    Err(fail(format!(
        "{how}, stdout: {}, stderr: {}",
        String::from_utf8_lossy(&out).trim(),
        String::from_utf8_lossy(&err).trim()
    )))
}

/// hooks: each path absolute, each timeout positive.
pub fn check(hooks: &oci_spec::runtime::Hooks) -> crate::error::Checked {
    use crate::error::FieldError;
    #[allow(deprecated)]
    let all = [
        ("prestart", hooks.prestart()),
        ("createRuntime", hooks.create_runtime()),
        ("createContainer", hooks.create_container()),
        ("startContainer", hooks.start_container()),
        ("poststart", hooks.poststart()),
        ("poststop", hooks.poststop()),
    ];
    for (kind, list) in all {
        for (i, h) in list.iter().flatten().enumerate() {
            if !h.path().is_absolute() {
                return Err(FieldError::new(
                    format!("hooks.{kind}[{i}].path"),
                    format!("{} must be absolute", h.path().display()),
                ));
            }
            if h.timeout().is_some_and(|t| t <= 0) {
                return Err(FieldError::new(
                    format!("hooks.{kind}[{i}].timeout"),
                    "must be a positive number of seconds",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn state_on_stdin_and_env() {
        let dir = std::env::temp_dir().join(format!("nk-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c","cat > {} && echo $FOO >> {}"],"env":["FOO=bar"]}}"#,
            out.display(),
            out.display()
        ));
        run("prestart", &[h], b"{\"id\":\"x\"}", Inherit::default()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"id\":\"x\"}bar\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn inherited_dir_and_env() {
        let dir = std::env::temp_dir().join(format!("nk-hook-inh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let script = format!("pwd > {0}; echo \"$HOOKVAR\" >> {0}", out.display());
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c",{}]}}"#,
            serde_json::to_string(&script).unwrap()
        ));
        // No env in the config: the container's environment, in `dir`.
        let env = vec!["HOOKVAR=from-container".to_string()];
        run(
            "startContainer",
            std::slice::from_ref(&h),
            b"{}",
            Inherit::container(Some(&dir), &env),
        )
        .unwrap();
        let want = format!("{}\nfrom-container\n", dir.display());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), want);
        // The runtime's hooks run in the bundle with the runtime's environment
        // (which has no HOOKVAR here).
        run("prestart", &[h], b"{}", Inherit::runtime(&dir)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("{}\n\n", dir.display())
        );
        // An empty env in the config is an empty environment.
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c",{}],"env":[]}}"#,
            serde_json::to_string(&script).unwrap()
        ));
        run(
            "startContainer",
            &[h],
            b"{}",
            Inherit::container(Some(&dir), &env),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("{}\n\n", dir.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failure_and_timeout_reported() {
        let h = hook(r#"{"path":"/bin/sh","args":["sh","-c","echo oops >&2; exit 3"]}"#);
        let e = run("createRuntime", &[h], b"{}", Inherit::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("exit status 3") && e.contains("oops"), "{e}");
        let h = hook(r#"{"path":"/bin/sh","args":["sh","-c","sleep 5"],"timeout":1}"#);
        let e = run("prestart", &[h], b"{}", Inherit::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("timed out"), "{e}");
    }

    #[test]
    fn timeout_holds_when_the_hook_never_reads_a_big_state() {
        // More than a pipe holds (64 KiB), to a hook that never reads it.
        let state = vec![b'x'; 1 << 20];
        let h = hook(r#"{"path":"/bin/sleep","args":["sleep","30"],"timeout":1}"#);
        let t = Instant::now();
        let e = run("prestart", &[h], &state, Inherit::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("timed out") && e.contains("/bin/sleep"), "{e}");
        // The unfixed code blocked in write(2) for the hook's whole 30 s.
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    }

    #[test]
    fn a_big_state_reaches_a_hook_that_reads_it() {
        let dir = std::env::temp_dir().join(format!("nk-hook-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let state = vec![b'y'; 300_000];
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c","cat > {}"],"timeout":30}}"#,
            out.display()
        ));
        run("prestart", &[h], &state, Inherit::default()).unwrap();
        assert_eq!(std::fs::read(&out).unwrap().len(), state.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
