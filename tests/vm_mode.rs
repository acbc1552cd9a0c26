//! VM mode through the runc CLI, with real QEMU guests (TCG on this host):
//! selection by flag, link name and annotation; run with exit codes;
//! the detached lifecycle (state, start, exec, ps, pause/resume, kill,
//! delete); a memory limit seen in the guest's container; a writable rootfs
//! that never changes host files; and failures that must give clear errors
//! and leave nothing behind (qemu missing, kernel missing, a VM crash, a
//! silent agent). Each test boots at most one VM.

use nk_tests::vm as vm_support;

use nk_tests::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vm_support::{assert_clean, cmd as vm_cmd, guest_kernel};

/// A root whose commands see the static agent.
fn vm_root() -> Root {
    Root::new()
}

fn out(c: &mut Command) -> std::process::Output {
    c.stdin(Stdio::null()).output().expect("spawn nk-runtime")
}

/// Run a command that leaves a container behind (create, run -d): its
/// stdout would be the container's, held open by the monitor, so it goes to
/// /dev/null and stderr to a file. Returns (exit code, stderr).
fn detached(c: &mut Command) -> (Option<i32>, String) {
    let dir = TempDir::new("nk-vmerr");
    let p = dir.path().join("stderr");
    let st = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&p).unwrap())
        .status()
        .expect("spawn nk-runtime");
    (st.code(), std::fs::read_to_string(&p).unwrap_or_default())
}

#[test]
fn run_echo_exit_code_and_stdin() {
    let root = vm_root();
    let b = Bundle::new(&[
        "sh",
        "-c",
        "read x; echo \"got $x on $(uname -r)\"; echo err >&2; exit 7",
    ]);
    let o = vm_cmd(&root)
        .args([
            "run",
            "--mode=vm",
            "--bundle",
            &b.path(),
            &unique_id("vmrun"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"hello\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "stderr: {}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        format!("got hello on {}", guest_kernel())
    );
    assert!(stderr(&o).contains("err"), "stderr: {}", stderr(&o));
    assert_clean(&root);
}

#[test]
fn link_name_selects_vm_mode() {
    let root = vm_root();
    let dir = TempDir::new("nk-vmlink");
    let link = dir.path().join("nk-runtime-vm");
    std::os::unix::fs::symlink(runtime(), &link).unwrap();
    let b = Bundle::new(&["uname", "-r"]);
    let o = out(Command::new(&link)
        .env("NK_VM_AGENT", vm_support::agent())
        .args([
            "--root",
            &root.dir.path().display().to_string(),
            "run",
            "--bundle",
            &b.path(),
            &unique_id("vmlink"),
        ]));
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o).trim(), guest_kernel());
    assert_clean(&root);
}

#[test]
fn lifecycle_exec_memory_limit_pause_kill_delete() {
    let root = vm_root();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; echo ready > /tmp/flag; while :; do sleep 1; done",
    ]);
    let host_rootfs = rootfs();
    b.edit(|c| {
        c["annotations"] = serde_json::json!({"org.nano-sandbox.mode": "vm"});
        c["root"]["readonly"] = false.into();
        c["linux"]["resources"]["memory"] = serde_json::json!({"limit": 64 << 20});
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "cgroup"}));
    });
    let id = unique_id("vmlc");
    let (code, err) = detached(vm_cmd(&root).args(["create", "--bundle", &b.path(), &id]));
    assert_eq!(code, Some(0), "create: {err}");
    let st = root.state(&id);
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().unwrap() as i32;
    assert!(pid > 0);
    // The monitor (the pid engines see) is in the container's host cgroup.
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.contains(&id), "monitor cgroup: {cg}");
    root.ok(&["start", &id]);
    assert_eq!(root.status(&id), "running");

    let ex = |args: &[&str]| out(vm_cmd(&root).arg("exec").arg(&id).args(args));
    let o = ex(&[
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory.max; uname -r; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "exec: {}", stderr(&o));
    assert_eq!(stdout(&o), format!("{}\n{}\n", 64 << 20, guest_kernel()));
    // The limit is enforced in the guest: a 100 MB hog is OOM-killed. dd
    // faults its whole buffer in one read(2), inside the kernel: reclaim
    // finds only the few file pages it does not touch meanwhile, so the OOM
    // killer comes at once. (A shell growing a string refaulted its own
    // code from the share between allocations, and the cgroup thrashed at
    // its limit for minutes under TCG before the kill: 470,000 `max`
    // events in one run.)
    let o = ex(&[
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=100M count=1 && echo survived",
    ]);
    assert_ne!(o.status.code(), Some(0), "the hog survived: {}", stdout(&o));
    // Writes go to the guest's overlay, never to the host's rootfs.
    let o = ex(&[
        "sh",
        "-c",
        "cat /tmp/flag && echo vm-write > /etc/nk-vm-probe && cat /etc/nk-vm-probe",
    ]);
    assert_eq!(stdout(&o), "ready\nvm-write\n", "{}", stderr(&o));
    assert!(
        !host_rootfs.join("etc/nk-vm-probe").exists(),
        "the guest changed a host file"
    );
    assert!(!host_rootfs.join("tmp/flag").exists());

    // Signals sent to a foreground exec reach the exec'd process.
    let mut child = vm_cmd(&root)
        .args([
            "exec",
            &id,
            "sh",
            "-c",
            "trap 'exit 9' TERM; echo armed; while :; do sleep 0.1; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "armed\n");
    // SAFETY: kill(2) the nk-runtime exec this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(
        child.wait().unwrap().code(),
        Some(9),
        "SIGTERM was not forwarded to the exec'd process"
    );
    // events --stats and update reach the guest's cgroup.
    let ev: serde_json::Value =
        serde_json::from_str(&root.ok(&["events", "--stats", &id])).unwrap();
    assert_eq!(ev["data"]["memory"]["usage"]["limit"], 64u64 << 20, "{ev}");
    root.ok(&["update", "--memory", "96m", &id]);
    let o = ex(&["cat", "/sys/fs/cgroup/memory.max"]);
    assert_eq!(stdout(&o).trim(), (96u64 << 20).to_string());
    let ps: Vec<i64> = serde_json::from_str(&root.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(!ps.is_empty());
    root.ok(&["pause", &id]);
    assert_eq!(root.status(&id), "paused");
    root.ok(&["resume", &id]);
    assert_eq!(root.status(&id), "running");
    let o = out(vm_cmd(&root).args(["delete", &id]));
    assert_ne!(
        o.status.code(),
        Some(0),
        "delete of a running container must fail"
    );
    root.ok(&["kill", &id, "TERM"]);
    root.wait_status(&id, "stopped");
    assert_eq!(root.state(&id)["pid"], 0);
    root.ok(&["delete", &id]);
    assert_clean(&root);
}

#[test]
fn detached_exec_with_pid_file_reports_status() {
    let root = vm_root();
    let b = Bundle::new(&["sleep", "100"]);
    let id = unique_id("vmdx");
    let (code, err) =
        detached(vm_cmd(&root).args(["run", "-d", "--mode", "vm", "--bundle", &b.path(), &id]));
    assert_eq!(code, Some(0), "run -d: {err}");
    let dir = TempDir::new("nk-vmpid");
    let pf = dir.path().join("exec.pid");
    let log = dir.path().join("exec.out");
    let f = std::fs::File::create(&log).unwrap();
    let o = vm_cmd(&root)
        .args([
            "exec",
            "-d",
            "--pid-file",
            &pf.display().to_string(),
            &id,
            "sh",
            "-c",
            "while [ ! -e /dev/shm/nk-go ]; do sleep 0.1; done; echo late; exit 5",
        ])
        .stdout(f)
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(o.success());
    let p: i32 = std::fs::read_to_string(&pf)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The proxy stands for the process: alive while it waits for /dev/shm/nk-go
    // (so pidfd_open cannot come too late), gone once it has ended.
    let pidfd = sandbox::linux::syscall::pidfd_open(p).unwrap_or_else(|e| {
        panic!("pidfd_open({p}) of the pid file's process, still waiting: {e}")
    });
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "",
        "the exec went on before it was told to"
    );
    root.ok(&["exec", &id, "touch", "/dev/shm/nk-go"]);
    let mut pfd = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&pidfd),
        nix::poll::PollFlags::POLLIN,
    )];
    let n = nix::poll::poll(&mut pfd, 60_000u16).unwrap();
    assert_eq!(
        n, 1,
        "the pid file's process {p} still runs 60 s after it was told to end"
    );
    assert!(
        std::fs::read_to_string(&log).unwrap().contains("late"),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );

    // The engine's SIGKILL of the proxy ends the process it stands for
    // (containerd kills a timed-out ExecSync that way, then waits for its
    // output to end): the output pipe closes, the process is gone.
    let (rd, wr) = nix::unistd::pipe().unwrap();
    let pf2 = dir.path().join("exec2.pid");
    let o = vm_cmd(&root)
        .args(["exec", "-d", "--pid-file", &pf2.display().to_string(), &id])
        .args(["sleep", "300"])
        .stdout(std::fs::File::from(wr))
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(o.success());
    let proxy: i32 = std::fs::read_to_string(&pf2)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill of the proxy's pid, which the runtime wrote for us.
    assert_eq!(unsafe { libc::kill(proxy, libc::SIGKILL) }, 0);
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&rd),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll one pollfd for up to 60 s.
    let n = unsafe { libc::poll(&mut pfd, 1, 60_000) };
    assert!(
        n == 1 && pfd.revents & libc::POLLHUP != 0,
        "the exec's output is still open 60 s after its proxy was killed (the guest process lives on)"
    );
    let ps = root.ok(&["exec", &id, "ps", "-o", "args"]);
    assert!(
        !ps.contains("sleep 300"),
        "the killed exec still runs in the guest: {ps}"
    );
    root.ok(&["delete", "-f", &id]);
    assert_clean(&root);
}

#[test]
fn missing_qemu_and_kernel_fail_cleanly() {
    let root = vm_root();
    let b = Bundle::new(&["true"]);
    let o = out(vm_cmd(&root).env("PATH", "/nonexistent").args([
        "create",
        "--mode=vm",
        "--bundle",
        &b.path(),
        &unique_id("noqemu"),
    ]));
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("qemu-system-x86_64") && e.contains("apt-get install qemu-system-x86"),
        "{e}"
    );
    let o = out(vm_cmd(&root)
        .env("NK_VM_KERNEL", "/nonexistent/vmlinuz-9.9.9")
        .args([
            "create",
            "--mode=vm",
            "--bundle",
            &b.path(),
            &unique_id("nokernel"),
        ]));
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("/nonexistent/vmlinuz-9.9.9") && e.contains("linux-image-amd64"),
        "{e}"
    );
    assert_clean(&root);
}

#[test]
fn silent_agent_times_out_and_cleans_up() {
    let root = vm_root();
    let b = Bundle::new(&["true"]);
    let id = unique_id("silent");
    let t0 = Instant::now();
    let (code, e) = detached(
        vm_cmd(&root)
            .env("NK_VM_APPEND", "nk_silent=1")
            .env("NK_VM_READY_TIMEOUT", "20")
            // The boot's own timeout: without --vm-boot=cold, the
            // template's build would wait as long first, then boot cold.
            .args([
                "create",
                "--mode=vm",
                "--vm-boot=cold",
                "--bundle",
                &b.path(),
                &id,
            ]),
    );
    assert_eq!(code, Some(1));
    assert!(
        e.contains("ready message did not happen within 20 s"),
        "{e}"
    );
    assert!(
        e.contains("nk_silent=1"),
        "the console tail is in the error: {e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(60));
    assert_clean(&root);
    assert!(!cgroup_exists(&format!("nano-sandbox/{id}")), "cgroup left");
}

#[test]
fn vm_crash_stops_the_container_with_a_reason() {
    let root = vm_root();
    let b = Bundle::new(&["sleep", "100"]);
    let id = unique_id("crash");
    let (code, err) =
        detached(vm_cmd(&root).args(["run", "-d", "--mode=vm", "--bundle", &b.path(), &id]));
    assert_eq!(code, Some(0), "run -d: {err}");
    let state_dir = root.dir.path().join(&id);
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("state.json")).unwrap()).unwrap();
    let qemu = st["extra"]["qemu_pid"].as_i64().unwrap() as i32;
    assert!(qemu > 0);
    // SAFETY: kill(2) the QEMU this test started.
    unsafe { libc::kill(qemu, libc::SIGKILL) };
    root.wait_status(&id, "stopped");
    let reason = std::fs::read_to_string(state_dir.join("vm-exit")).unwrap();
    assert!(
        reason.contains("VM exited unexpectedly") && reason.contains("signal 9"),
        "{reason}"
    );
    root.ok(&["delete", &id]);
    assert_clean(&root);
    assert!(!cgroup_exists(&format!("nano-sandbox/{id}")), "cgroup left");
}
