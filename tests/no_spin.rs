//! The runtime never spins and never ignores its container's exit, whatever
//! happens to its own output: a closed stdout or stderr (`nk-runtime -E run
//! x | head -1`), a terminal that hangs up, a stdin at end of file, a full
//! disk under --log. In each case the container is reaped, the exit code is
//! the container's, and the runtime's CPU time (from wait4's rusage) stays
//! small. A runtime that spins is killed at the deadline and the test fails.

use nk_tests::*;
use serde_json::json;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

/// How a foreground runtime ended.
struct Ended {
    /// Shell-style status: the code, or 128+N when killed by signal N.
    code: i32,
    /// User plus system CPU seconds of the runtime (and what it reaped).
    cpu: f64,
}

/// Wait for our child `pid` at most DEADLINE (through its pidfd, no
/// polling), then reap it with wait4 for its rusage. Past the deadline it
/// is SIGKILLed and the test fails: it was spinning or stuck.
fn wait_bounded(pid: i32, what: &str) -> Ended {
    let pidfd = sandbox::linux::syscall::pidfd_open(pid)
        .unwrap_or_else(|e| panic!("pidfd_open({pid}): {e}"));
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = DEADLINE.as_millis() as i32;
    // SAFETY: poll one pollfd that lives for the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n <= 0 {
        let where_stuck = describe_tree(pid);
        // SAFETY: kill(2) and reap our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        panic!(
            "{what}: the runtime did not exit within {DEADLINE:?} (spinning or stuck); \
             its processes then:\n{where_stuck}"
        );
    }
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our child, writing into our locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let cpu = ru.ru_utime.tv_sec as f64
        + ru.ru_stime.tv_sec as f64
        + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) as f64 / 1e6;
    Ended { code, cpu }
}

/// What `pid` and its descendants were doing: state, kernel wait channel,
/// pending, blocked and caught signals, and command line. Printed when the
/// runtime misses the deadline, so a rare hang shows where it was stuck.
fn describe_tree(pid: i32) -> String {
    let mut out = String::new();
    let mut todo = vec![(pid, 0usize)];
    while let Some((p, depth)) = todo.pop() {
        let dir = format!("/proc/{p}");
        let status = std::fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
        let fields: Vec<&str> = status
            .lines()
            .filter(|l| {
                [
                    "State:", "SigPnd:", "ShdPnd:", "SigBlk:", "SigIgn:", "SigCgt:",
                ]
                .iter()
                .any(|k| l.starts_with(k))
            })
            .collect();
        let wchan = std::fs::read_to_string(format!("{dir}/wchan")).unwrap_or_default();
        let cmd = std::fs::read(format!("{dir}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:indent$}pid {p} [{cmd}] wchan={wchan} {}\n",
            "",
            fields.join(" ").replace('\t', " "),
            indent = depth * 2
        ));
        if let Ok(tasks) = std::fs::read_dir(format!("{dir}/task")) {
            for t in tasks.flatten() {
                let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
                    todo.push((k, depth + 1));
                }
            }
        }
    }
    out
}

/// The write end of a pipe whose read end is already closed: every write
/// fails with EPIPE (and raises SIGPIPE in the writer).
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors that we own from here.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both are new descriptors we own.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(r);
    Stdio::from(w)
}

/// Start `run` of `b` in the foreground with the stdio given.
// The child is reaped by wait4 in wait_bounded, not by Child::wait.
#[allow(clippy::zombie_processes)]
fn run_fg(root: &Root, global: &[&str], b: &Bundle, id: &str, io: [Stdio; 3]) -> i32 {
    let [i, o, e] = io;
    let mut c = Command::new(&root.bin);
    c.arg("--root").arg(root.dir.path()).args(global);
    c.args(["run", "--bundle", &b.path(), id]);
    c.stdin(i).stdout(o).stderr(e);
    c.spawn().unwrap().id() as i32
}

/// After `run` returned: the container is gone, with all it held.
fn nothing_left(root: &Root, id: &str) {
    assert!(root.ids().is_empty(), "state left: {:?}", root.ids());
    assert!(
        !cgroup_exists(&format!("nano-sandbox/{id}")),
        "cgroup of {id} left"
    );
}

fn check(what: &str, e: &Ended, code: i32, max_cpu: f64) {
    assert_eq!(e.code, code, "{what}: exit status");
    assert!(
        e.cpu < max_cpu,
        "{what}: the runtime used {:.2} s of CPU (a spin)",
        e.cpu
    );
}

/// `nk-runtime -E run x 2>&1 | head -1`: narration into a pipe nobody
/// reads. The runtime once forwarded the SIGPIPE of its own write to the
/// container, narrated that, got SIGPIPE again, and spun forever.
#[test]
fn explain_into_a_closed_pipe() {
    let root = Root::new();
    let b = Bundle::new(&["sh", "-c", "exit 3"]);
    let id = unique_id("spin-e");
    let pid = run_fg(
        &root,
        &["-E"],
        &b,
        &id,
        [Stdio::null(), Stdio::null(), closed_pipe()],
    );
    check(
        "-E into a closed pipe",
        &wait_bounded(pid, "-E run"),
        3,
        1.0,
    );
    nothing_left(&root, &id);
}

/// `nk-runtime --debug run x 2>&1 | head -1`: log lines into a closed pipe.
#[test]
fn debug_log_into_a_closed_pipe() {
    let root = Root::new();
    let b = Bundle::new(&["sh", "-c", "exit 4"]);
    let id = unique_id("spin-d");
    let pid = run_fg(
        &root,
        &["--debug"],
        &b,
        &id,
        [Stdio::null(), Stdio::null(), closed_pipe()],
    );
    check(
        "--debug into a closed pipe",
        &wait_bounded(pid, "--debug run"),
        4,
        1.0,
    );
    nothing_left(&root, &id);
}

/// A terminal bridged to a closed stdout: the runtime's own writes fail
/// with EPIPE. Their SIGPIPE is the runtime's, not the container's: it is
/// not forwarded (nor narrated), and the program's status comes back.
#[test]
fn closed_stdout_under_a_terminal() {
    let root = Root::new();
    let mut b = Bundle::new(&["sh", "-c", "echo one; echo two; exit 5"]);
    b.edit(|c| c["process"]["terminal"] = json!(true));
    let id = unique_id("spin-o");
    let err = TempDir::new("nk-spin-err");
    let errf = err.path().join("err");
    let pid = run_fg(
        &root,
        &["-E"],
        &b,
        &id,
        [
            Stdio::null(),
            closed_pipe(),
            Stdio::from(std::fs::File::create(&errf).unwrap()),
        ],
    );
    check(
        "terminal into a closed stdout",
        &wait_bounded(pid, "run -t"),
        5,
        1.0,
    );
    let narration = std::fs::read_to_string(&errf).unwrap();
    assert!(
        !narration.contains("forward SIGPIPE"),
        "the runtime forwarded its own SIGPIPE:\n{narration}"
    );
    nothing_left(&root, &id);
}

/// The program's own stdout is a closed pipe (no terminal): the program
/// dies of its SIGPIPE (a child of the container's init does: pid 1 of a
/// pid namespace ignores it, as it ignores every signal it has no handler
/// for), and that status is what run returns.
#[test]
fn closed_stdout_of_the_program() {
    let root = Root::new();
    let b = Bundle::new(&["sh", "-c", "sh -c 'while :; do echo x; done'; exit $?"]);
    let id = unique_id("spin-p");
    let pid = run_fg(
        &root,
        &[],
        &b,
        &id,
        [Stdio::null(), closed_pipe(), Stdio::null()],
    );
    check(
        "the program's stdout closed",
        &wait_bounded(pid, "run into a closed stdout"),
        141,
        1.0,
    );
    nothing_left(&root, &id);
}

/// stdin at end of file, with and without a terminal: the runtime stops
/// reading it (no busy poll on a descriptor at EOF) and waits quietly while
/// the program lives on for a moment (which is when a runtime polling an
/// EOF stdin in a loop would burn CPU).
#[test]
fn stdin_at_eof() {
    let root = Root::new();
    for terminal in [true, false] {
        // On the pty `cat` would never see EOF (the runtime does not type ^D
        // for a stdin that ended): no cat there.
        let script = if terminal {
            "sleep 2; exit 6"
        } else {
            "cat >/dev/null; sleep 2; exit 6"
        };
        let mut b = Bundle::new(&["sh", "-c", script]);
        b.edit(|c| c["process"]["terminal"] = json!(terminal));
        let id = unique_id("spin-i");
        let pid = run_fg(
            &root,
            &[],
            &b,
            &id,
            [Stdio::null(), Stdio::null(), Stdio::null()],
        );
        let what = format!("stdin at EOF (terminal: {terminal})");
        check(&what, &wait_bounded(pid, &what), 6, 0.5);
        nothing_left(&root, &id);
    }
}

/// A terminal that hangs up under a running container: the runtime gets
/// SIGHUP from the kernel and forwards it (the program decides, here it
/// exits 7), reads of its stdin and writes to its stdout fail with EIO and
/// are dropped, and it returns the program's status without spinning.
#[test]
// The child is reaped by wait4 in wait_bounded, not by Child::wait.
#[allow(clippy::zombie_processes)]
fn hung_up_terminal() {
    let root = Root::new();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "trap 'exit 7' HUP; echo ready; while :; do echo tick; sleep 1; done",
    ]);
    b.edit(|c| c["process"]["terminal"] = json!(true));
    let id = unique_id("spin-h");
    let mut c = Command::new(&root.bin);
    c.arg("--root")
        .arg(root.dir.path())
        .args(["run", "--bundle", &b.path(), &id]);
    // The runtime leads a session whose controlling terminal is the pty.
    let mut t = nk_tests::term::Term::spawn(c, 24, 80);
    let pid = t.child.take().unwrap().id() as i32;
    // The program's first line, then hang up: the master's last close.
    t.expect("ready");
    let what = format!(
        "run on a hung-up terminal (it had printed {:?})",
        String::from_utf8_lossy(&t.seen)
    );
    drop(t);
    check("hung-up terminal", &wait_bounded(pid, &what), 7, 1.0);
    nothing_left(&root, &id);
}

/// --log on a full filesystem: every log line fails with ENOSPC and is
/// dropped; the container runs and is reaped as usual.
#[test]
fn log_on_a_full_disk() {
    require_root();
    let d = TempDir::new("nk-spin-full");
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "nk-full"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount a small tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _u = Unmount(mnt.clone());
    // Fill it up.
    let _ = std::fs::write(mnt.join("fill"), vec![0u8; 1 << 20]);
    assert!(
        std::fs::write(mnt.join("more"), b"x").is_err(),
        "the tmpfs is not full"
    );
    let log = mnt.join("nk.log");
    let root = Root::new();
    let b = Bundle::new(&["sh", "-c", "exit 6"]);
    let id = unique_id("spin-f");
    let log_s = log.to_str().unwrap();
    let pid = run_fg(
        &root,
        &["--debug", "--log", log_s],
        &b,
        &id,
        [Stdio::null(), Stdio::null(), Stdio::null()],
    );
    check(
        "--log on a full disk",
        &wait_bounded(pid, "run --log full"),
        6,
        1.0,
    );
    nothing_left(&root, &id);
}
