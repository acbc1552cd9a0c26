//! Terminals in the foreground, under a real pseudo-terminal: `run` of a
//! bundle with process.terminal, `exec -t`, and `exec ID` with no command
//! from a terminal. nk-runtime puts its own terminal in raw mode and bridges
//! it to the container's pty: typed input reaches the container, output
//! comes back, a window-size change is seen by `stty size` inside, Ctrl-C
//! interrupts the container's foreground job, the exit status comes back
//! and the terminal's modes are restored. runc runs the same script as the
//! reference.

use nk_tests::term::{set_winsize, Term};
use nk_tests::*;
use serde_json::json;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

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

/// The attack surface: once the container's process is reaped, `run`
/// still drains the pty while another process holds it, and it forwarded
/// the signals it got meanwhile with kill(2) to the reaped pid, free by
/// then for any new process (pid_max is 32768 on this host kind). The test
/// makes the reuse certain: in a pid namespace of its own, which the
/// container shares, it waits until the init is reaped, sets ns_last_pid
/// so that its next child (a witness `sleep`) gets the init's pid, signals
/// `run`, waits until `run` has read the signal and exited, and looks at
/// the witness.
#[test]
fn a_signal_after_the_exit_reaches_no_reused_pid() {
    if !Path::new("/proc/sys/kernel/ns_last_pid").exists() {
        eprintln!("no /proc/sys/kernel/ns_last_pid (a kernel without CONFIG_CHECKPOINT_RESTORE): the pid reuse cannot be arranged here");
        return;
    }
    let root = Root::new();
    let mark = TempDir::new("nk-reuse");
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        // `yes`, in a session of its own (so the init's pid is free once
        // the init is reaped), keeps the pty busy after the init exits,
        // and forks nothing.
        "setsid yes & echo \"$$ $!\" > /mark/pids; while [ ! -e /mark/go ]; do sleep 0.01; done",
    ]);
    b.edit(|c| {
        c["process"]["terminal"] = json!(true);
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "pid");
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/mark", "type": "bind",
            "source": mark.path(), "options": ["rbind", "rw"]}));
    });
    let id = unique_id("reuse");
    let script = r#"
        RT=$1 ROOT=$2 BUNDLE=$3 ID=$4 MARK=$5
        "$RT" --root "$ROOT" run --bundle "$BUNDLE" "$ID" >/dev/null 2>"$MARK/err" </dev/null &
        RUN=$!
        for ((i = 0; i < 2000; i++)); do [ -s "$MARK/pids" ] && break; sleep 0.01; done
        read -r P Y < "$MARK/pids" || { echo "no pids from the container"; exit 2; }
        : > "$MARK/go"
        for ((i = 0; i < 2000; i++)); do [ -e /proc/$P ] || break; sleep 0.01; done
        [ -e /proc/$P ] && { echo "init $P was not reaped"; exit 2; }
        kill -0 $RUN || { echo "run ended before the signal"; exit 2; }
        # Nothing else in this pid namespace forks from here to the witness.
        echo $((P - 1)) > /proc/sys/kernel/ns_last_pid
        sleep 1000 &
        W=$!
        [ "$W" = "$P" ] || { echo "the witness got pid $W, not $P; processes:"; cat /proc/[0-9]*/stat; exit 2; }
        kill -USR1 $RUN
        # Blocked in run until its signalfd reads it: pending until then.
        for ((i = 0; i < 2000; i++)); do
            pend=0
            while read -r k v; do
                case $k in SigPnd:|ShdPnd:) (( 16#$v & 0x200 )) && pend=1 ;; esac
            done < /proc/$RUN/status
            [ $pend = 0 ] && break
            sleep 0.01
        done
        [ $pend = 0 ] || { echo "run never read SIGUSR1"; exit 2; }
        kill $Y
        wait $RUN
        echo "run exit $?"
        read -r _ _ st _ < /proc/$W/stat 2>/dev/null || st=gone
        echo "witness state $st"
    "#;
    let out = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "bash",
            "-c",
            script,
            "reuse",
        ])
        .arg(&root.bin)
        .arg(root.dir.path())
        .arg(b.path())
        .arg(&id)
        .arg(mark.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = std::fs::read_to_string(mark.path().join("err")).unwrap_or_default();
    assert!(
        text.contains("run exit 0"),
        "{text}\n{}\nrun's stderr: {err}",
        stderr(&out)
    );
    assert!(
        text.contains("witness state S"),
        "the signal sent to run after its container was reaped reached the process that took the pid: {text}\nrun's stderr: {err}"
    );
}
