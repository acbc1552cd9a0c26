//! The VM-mode container process's surroundings, with real QEMU guests:
//! its terminal (a foreground `run` on a real pty, and `--console-socket`)
//! follows window-size changes; `--preserve-fds` passes the contents of
//! files and pipes, and refuses what cannot cross into a VM; the
//! createContainer and startContainer hooks run inside the guest, and a
//! hook the guest cannot find is refused before anything is made. Each
//! test boots at most one VM.

use nk_tests::term::{recv_fd, set_winsize, Term};
use nk_tests::vm::{assert_clean, cmd as vm_cmd};
use nk_tests::*;
use serde_json::json;
use std::os::fd::AsRawFd;

/// Ask the shell on `t` for its size until it shows `want` (the resize
/// travels through the monitor and the agent: no fixed wait fits it).
fn wait_size(t: &mut Term, want: &str) {
    let mut n = 0;
    wait_for(
        &format!("the guest terminal to be {want}"),
        DEADLINE,
        || {
            n += 1;
            t.send(&format!("stty size; echo size-{n}-$((6*7))\n"));
            let out = t.expect(&format!("size-{n}-42"));
            out.contains(want).then_some(())
        },
    );
}

/// A foreground `run` on a real terminal: the initial size reaches the
/// guest's pty, and so does a resize (the kernel's SIGWINCH to `run`,
/// passed on to the monitor, which resizes the guest's pty).
#[test]
fn foreground_run_follows_the_window_size() {
    let root = Root::new();
    let mut b = Bundle::new(&["sh"]);
    b.edit(|c| c["process"]["terminal"] = json!(true));
    let mut c = vm_cmd(&root);
    c.args([
        "run",
        "--mode=vm",
        "--bundle",
        &b.path(),
        &unique_id("vmwinch"),
    ]);
    let mut t = Term::spawn(c, 30, 100);
    t.expect("# ");
    t.send("stty size; echo typed-$((6*7))\n");
    let out = t.expect("typed-42");
    assert!(
        out.contains("30 100"),
        "initial size not passed on: {out:?}"
    );
    set_winsize(t.master.as_raw_fd(), 40, 120);
    wait_size(&mut t, "40 120");
    t.send("exit 5\n");
    let (code, _) = t.wait();
    assert_eq!(code, 5, "exit status");
    assert_clean(&root);
}

/// `--console-socket`: the pty master goes to the engine, and a resize
/// there reaches the guest (the monitor holds the pty as its controlling
/// terminal, so the kernel tells it with SIGWINCH).
#[test]
fn console_socket_pty_follows_the_window_size() {
    use std::os::unix::net::UnixListener;
    let root = Root::new();
    let mut b = Bundle::new(&["sh"]);
    b.edit(|c| c["process"]["terminal"] = json!(true));
    let dir = TempDir::new("nk-vmconsole");
    let sock = dir.path().join("console.sock");
    let l = UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || recv_fd(&l.accept().unwrap().0));
    let id = unique_id("vmcons");
    let o = run_to_files(vm_cmd(&root).args([
        "create",
        "--mode=vm",
        "--bundle",
        &b.path(),
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
    ]));
    assert!(o.status.success(), "create: {}", stderr(&o));
    let master = receiver.join().unwrap();
    set_winsize(master.as_raw_fd(), 33, 111);
    root.ok(&["start", &id]);
    let mut t = Term::attach(master);
    t.expect("# ");
    wait_size(&mut t, "33 111");
    set_winsize(t.master.as_raw_fd(), 44, 132);
    wait_size(&mut t, "44 132");
    t.send("exit 3\n");
    root.wait_status(&id, "stopped");
    root.ok(&["delete", &id]);
    assert_clean(&root);
}
