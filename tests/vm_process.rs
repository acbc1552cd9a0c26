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

/// A command that gets `fds` as its descriptors 3, 4...
fn with_fds(mut c: std::process::Command, fds: Vec<i32>) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec: copy each
    // descriptor above the target numbers first, then onto them (dup2
    // clears close-on-exec).
    unsafe {
        c.pre_exec(move || {
            let mut high = Vec::new();
            for fd in &fds {
                let h = libc::fcntl(*fd, libc::F_DUPFD, 100);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(h);
            }
            for (i, h) in high.iter().enumerate() {
                if libc::dup2(*h, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    c
}

/// Read a pipe until every writer has closed it (DEADLINE at most).
fn read_to_eof(fd: std::os::fd::OwnedFd) -> String {
    let mut out = Vec::new();
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll one pollfd that lives for the call.
        unsafe { libc::poll(&mut p, 1, 100) };
        let mut buf = [0u8; 4096];
        if p.revents != 0 {
            // SAFETY: read into our buffer from our pipe.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return String::from_utf8_lossy(&out).into_owned();
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
        assert!(
            std::time::Instant::now() < end,
            "the pipe was not closed; read so far: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}

fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut p = [0; 2];
    // SAFETY: pipe2 writes two new descriptors (close-on-exec, so no other
    // test's child holds them) into the array.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both are new descriptors that we own.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(p[0]),
            std::os::fd::OwnedFd::from_raw_fd(p[1]),
        )
    }
}

/// `--preserve-fds 2` with a file opened for reading on 3 and a pipe's
/// write end on 4: the container reads the file's contents from its fd 3
/// and writes to its fd 4 what the host reads from the pipe.
#[test]
fn preserve_fds_pass_file_contents_and_pipes() {
    let root = Root::new();
    let b = Bundle::new(&[
        "sh",
        "-c",
        "cat <&3; echo to-the-host >&4; echo fd3=$(readlink /proc/self/fd/3 | cut -c1-5)",
    ]);
    let dir = TempDir::new("nk-vmfds");
    let f = dir.path().join("input");
    std::fs::write(&f, "from-a-host-file\n").unwrap();
    let file = std::fs::File::open(&f).unwrap();
    let (r, w) = pipe();
    let mut c = with_fds(vm_cmd(&root), vec![file.as_raw_fd(), w.as_raw_fd()]);
    c.args([
        "run",
        "--mode=vm",
        "--preserve-fds",
        "2",
        "--bundle",
        &b.path(),
        &unique_id("vmfds"),
    ]);
    let o = run_to_files(&mut c);
    drop(w);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("from-a-host-file"), "stdout: {out}");
    // The container sees a pipe, not the file (documented).
    assert!(out.contains("fd3=pipe:"), "stdout: {out}");
    assert_eq!(read_to_eof(r), "to-the-host\n");
    assert_clean(&root);
}

/// A socket cannot cross into a VM: create refuses it by number and type,
/// before anything is made.
#[test]
fn preserve_fds_refuse_a_socket_clearly() {
    let root = Root::new();
    let b = Bundle::new(&["true"]);
    let (a, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut c = with_fds(vm_cmd(&root), vec![a.as_raw_fd()]);
    c.args([
        "create",
        "--mode=vm",
        "--preserve-fds",
        "1",
        "--bundle",
        &b.path(),
        &unique_id("vmfdsock"),
    ]);
    let o = run_to_files(&mut c);
    assert!(!o.status.success(), "a socket was accepted");
    let e = stderr(&o);
    assert!(e.contains("fd 3 is a socket"), "stderr: {e}");
    assert!(e.contains("regular files and pipes"), "stderr: {e}");
    assert_clean(&root);
}

/// createContainer and startContainer hooks whose programs are in the
/// image run inside the guest: they see the guest's kernel and get the
/// container's state (creating, then running) on stdin, and write through a
/// bind mount to the host.
#[test]
fn container_hooks_run_inside_the_guest() {
    let root = Root::new();
    let out = TempDir::new("nk-vmhooks");
    let mut b = Bundle::new(&["sh", "-c", "cat /out/create.kernel"]);
    let dest = out.path().display().to_string();
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/out", "type": "bind", "source": dest, "options": ["rbind", "rw"]
        }));
        c["hooks"] = json!({
            "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c",
                "cat > /out/create.json; uname -r > /out/create.kernel"]}],
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c",
                "cat > /out/start.json"]}],
        });
    });
    let id = unique_id("vmhooks");
    let o = run_to_files(vm_cmd(&root).args(["run", "--mode=vm", "--bundle", &b.path(), &id]));
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let guest = stdout(&o);
    assert!(
        !guest.trim().is_empty(),
        "the createContainer hook wrote no kernel"
    );
    assert_ne!(
        guest.trim(),
        host.trim(),
        "the hook ran on the host's kernel"
    );
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.path().join(f)).unwrap()).unwrap()
    };
    let (c, s) = (read("create.json"), read("start.json"));
    assert_eq!(c["id"], id.as_str());
    assert_eq!(c["status"], "creating", "createContainer state: {c}");
    assert_eq!(s["status"], "running", "startContainer state: {s}");
    assert_clean(&root);
}

/// A createContainer hook the guest cannot find (a host program that is not
/// in the image) is refused by name before anything is made, not skipped.
#[test]
fn container_hook_missing_from_the_image_is_refused() {
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| {
        c["hooks"] = json!({"createContainer": [{"path": "/usr/sbin/nk-no-such-hook"}]});
    });
    let o = run_to_files(vm_cmd(&root).args([
        "run",
        "--mode=vm",
        "--bundle",
        &b.path(),
        &unique_id("vmnohook"),
    ]));
    assert!(!o.status.success(), "the config was accepted");
    let e = stderr(&o);
    assert!(
        e.contains("hooks.createContainer[0].path /usr/sbin/nk-no-such-hook: no such file in the container's rootfs"),
        "stderr: {e}"
    );
    assert_clean(&root);
}
