//! Terminals in the foreground, under a real pseudo-terminal: `run` of a
//! bundle with process.terminal, `exec -t`, and `exec ID` with no command
//! from a terminal. nk-runtime puts its own terminal in raw mode and bridges
//! it to the container's pty: typed input reaches the container, output
//! comes back, a window-size change is seen by `stty size` inside, Ctrl-C
//! interrupts the container's foreground job, the exit status comes back
//! and the terminal's modes are restored. runc runs the same script as the
//! reference.

use nk_tests::*;
use serde_json::json;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

/// A command running with a new pty as its controlling terminal and stdio.
struct Term {
    master: OwnedFd,
    child: std::process::Child,
    seen: Vec<u8>,
}

fn set_winsize(fd: i32, rows: u16, cols: u16) {
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
    fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Term {
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
        // SAFETY: between fork and exec only async-signal-safe calls: a new
        // session, then the pty (now fd 0) becomes its controlling terminal.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        Term {
            master,
            child,
            seen: Vec::new(),
        }
    }

    fn send(&self, s: &str) {
        // SAFETY: write from a live buffer to our master.
        let n = unsafe { libc::write(self.master.as_raw_fd(), s.as_ptr().cast(), s.len()) };
        assert_eq!(n, s.len() as isize);
    }

    /// Read until `want` appears in the output after `from` (DEADLINE at most).
    fn expect(&mut self, want: &str) -> String {
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
    fn read_some(&mut self, ms: i32) -> bool {
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

    fn lflag(&self) -> libc::tcflag_t {
        // The master's modes are the pty's.
        nix::sys::termios::tcgetattr(&self.master)
            .unwrap()
            .local_flags
            .bits()
    }

    /// Wait for the command, draining its output; returns the exit code.
    fn wait(mut self) -> (i32, libc::tcflag_t) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.code().unwrap_or(-1), self.lflag());
            }
            assert!(start.elapsed() < DEADLINE, "did not exit");
            self.read_some(50);
        }
    }
}

/// A `sleep` duration no other session of any test uses, to find it in /proc.
fn unique_sleep() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    100_000 + u64::from(std::process::id() % 100_000) * 100 + n
}

/// Is a `sleep SECS` running as the foreground process group of its
/// terminal? Only then does a typed ^C reach it: sent earlier, it lands on
/// the shell (still forking, or not even done reading the line), and the
/// tty discards the typed-ahead command with it.
fn sleep_in_foreground(secs: u64) -> bool {
    let want = format!("sleep\0{secs}\0");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let p = e.path();
            if std::fs::read(p.join("cmdline")).unwrap_or_default() != want.as_bytes() {
                return false;
            }
            let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
            let f: Vec<&str> = stat
                .rfind(')')
                .and_then(|i| stat.get(i + 2..))
                .unwrap_or("")
                .split(' ')
                .collect();
            // state ppid pgrp session tty_nr tpgid
            f.len() > 5 && f[2] == f[5]
        })
}

/// The interactive session both runtimes go through on a 30x100 terminal.
/// Every step waits for what it needs to see (a prompt, a line, a process
/// in the foreground), never for a while.
fn session(cmd: Command, who: &str) {
    let mut t = Term::spawn(cmd, 30, 100);
    // Type only once the shell prompts: input typed earlier can reach the
    // pty before the runtime has set it up (runc drops or mangles it then).
    t.expect("# ");
    t.send("stty size; tty; echo typed-$((6*7))\n");
    let out = t.expect("typed-42");
    assert!(
        out.contains("30 100"),
        "{who}: initial size not passed on: {out:?}"
    );
    assert!(
        out.contains("/dev/pts/"),
        "{who}: not on a pty inside: {out:?}"
    );
    assert_eq!(
        t.lflag() & (libc::ICANON | libc::ECHO),
        0,
        "{who}: the outer terminal is not in raw mode"
    );
    set_winsize(t.master.as_raw_fd(), 40, 120);
    // The runtime passes the new size on when its SIGWINCH arrives: ask
    // until the container's terminal shows it.
    let mut n = 0;
    wait_for(
        &format!("{who}: the new window size inside"),
        DEADLINE,
        || {
            n += 1;
            t.send(&format!("stty size; echo again-{n}-$((6*7))\n"));
            let out = t.expect(&format!("again-{n}-42"));
            out.contains("40 120").then_some(())
        },
    );
    let secs = unique_sleep();
    t.send(&format!("sleep {secs}\n"));
    wait_for(
        &format!("{who}: sleep {secs} in the foreground"),
        DEADLINE,
        || {
            // Drain what the shell echoes meanwhile.
            t.read_some(10);
            sleep_in_foreground(secs).then_some(())
        },
    );
    t.send("\x03");
    t.send("echo status-$?\n");
    t.expect("status-130");
    t.send("exit 5\n");
    let (code, lflag) = t.wait();
    assert_eq!(code, 5, "{who}: exit status");
    assert_eq!(
        lflag & (libc::ICANON | libc::ECHO),
        libc::ICANON | libc::ECHO,
        "{who}: terminal modes not restored"
    );
}

fn both() -> [String; 2] {
    [runc(), runtime().display().to_string()]
}

#[test]
fn run_bridges_the_terminal() {
    for bin in both() {
        let root = Root::with_binary(&bin);
        let mut b = Bundle::new(&["sh"]);
        b.edit(|c| c["process"]["terminal"] = json!(true));
        let id = unique_id("term");
        let mut cmd = root.cmd();
        cmd.args(["run", "--bundle", &b.path(), &id]);
        session(cmd, &bin);
        let _ = root.run(&["delete", "-f", &id]);
    }
}

#[test]
fn exec_t_bridges_the_terminal() {
    for bin in both() {
        let root = Root::with_binary(&bin);
        let b = Bundle::new(&["sleep", "1000"]);
        let id = unique_id("eterm");
        root.ok(&["run", "--detach", "--bundle", &b.path(), &id]);
        let mut cmd = root.cmd();
        cmd.args(["exec", "-t", &id, "sh"]);
        session(cmd, &bin);
        assert_eq!(root.status(&id), "running");
    }
}

#[test]
fn exec_without_a_command_opens_a_shell_on_a_pty() {
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("eshell");
    root.ok(&["run", "--detach", "--bundle", &b.path(), &id]);
    let mut cmd = root.cmd();
    cmd.args(["exec", &id]);
    session(cmd, "nk-runtime exec ID");
}

/// A process that closes its terminal early: the runtime stops reading the
/// hung-up pty instead of spinning on it, and still returns the status.
#[test]
// The child is reaped by wait4 (for its rusage), not by Child::wait.
#[allow(clippy::zombie_processes)]
fn closed_pty_is_not_polled_in_a_loop() {
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("hup");
    root.ok(&["run", "--detach", "--bundle", &b.path(), &id]);
    let child = root
        .cmd()
        .args([
            "exec",
            "-t",
            &id,
            "sh",
            "-c",
            "exec >&- 2>&- <&-; sleep 2; exit 6",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on the child we spawned, writing into our locals.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(r, child.id() as i32);
    assert_eq!(libc::WEXITSTATUS(status), 6);
    let cpu = ru.ru_utime.tv_sec as f64
        + ru.ru_stime.tv_sec as f64
        + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) as f64 / 1e6;
    // Two seconds of waiting; a busy loop on the pty burns most of them.
    assert!(
        cpu < 0.5,
        "the runtime used {cpu:.2} s of CPU while waiting 2 s"
    );
}
