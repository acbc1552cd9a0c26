//! `exec`, flag by flag, against runc: the same container is started by
//! runc and by nk-runtime, the same exec command line is run in each, and
//! the exit code and what the process sees (or the error text engines match)
//! must agree. Then what only nk-runtime has: the seed's `exec ID` shell and
//! `exec --exec CMD`.

use nk_tests::term::recv_fd;
use nk_tests::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};

/// A running `sleep 1000` container under one runtime.
struct Running {
    root: Root,
    id: String,
    _bundle: Bundle,
}

impl Running {
    fn start(bin: &str, edit: &dyn Fn(&mut Value)) -> Running {
        let root = Root::with_binary(bin);
        let mut b = Bundle::new(&["sleep", "1000"]);
        b.edit(|c| {
            c["hostname"] = json!("exec-test");
            c["process"]["noNewPrivileges"] = json!(false);
            edit(c)
        });
        let id = unique_id("exec");
        root.ok(&["run", "--detach", "--bundle", &b.path(), &id]);
        root.wait_status(&id, "running");
        Running {
            root,
            id,
            _bundle: b,
        }
    }

    /// `exec [flags] ID [args]` -> (code, stdout, stderr).
    fn exec(&self, flags: &[&str], args: &[&str]) -> (i32, String, String) {
        let mut v = vec!["exec"];
        v.extend_from_slice(flags);
        v.push(&self.id);
        v.extend_from_slice(args);
        let o = self.root.run(&v);
        (o.status.code().unwrap_or(-1), stdout(&o), stderr(&o))
    }
}

/// Both runtimes, each with a running container made with `edit`.
fn pair(edit: &dyn Fn(&mut Value)) -> [Running; 2] {
    [
        Running::start(&runc(), edit),
        Running::start(&runtime().display().to_string(), edit),
    ]
}

/// The same exec under both: exit codes and stdout must agree.
fn same(p: &[Running; 2], flags: &[&str], args: &[&str]) -> (i32, String) {
    let r = p[0].exec(flags, args);
    let n = p[1].exec(flags, args);
    assert_eq!(
        (r.0, &r.1),
        (n.0, &n.1),
        "exec {flags:?} {args:?} differs\nrunc: {} {:?} {}\nnk:   {} {:?} {}",
        r.0,
        r.1,
        r.2,
        n.0,
        n.1,
        n.2
    );
    (n.0, n.1)
}

#[test]
fn flags_agree_with_runc() {
    let p = pair(&|_| {});
    assert_eq!(same(&p, &["--cwd", "/tmp"], &["pwd"]).1, "/tmp\n");
    let (_, env) = same(&p, &["-e", "A=1", "-e", "PATH=/bin", "-e", "A=2"], &["env"]);
    assert!(env.contains("A=2\n") && !env.contains("A=1"), "{env}");
    assert_eq!(
        same(&p, &["-u", "1000:1000", "-g", "10", "-g", "20"], &["id"]).1,
        "uid=1000 gid=1000 groups=10,20\n"
    );
    same(&p, &["-u", "65534"], &["id"]);
    let (_, caps) = same(
        &p,
        &["--cap", "CAP_SYS_ADMIN"],
        &["grep", "^Cap", "/proc/self/status"],
    );
    assert!(caps.contains("CapInh:\t0000000000000000"), "{caps}");
    same(&p, &[], &["grep", "NoNewPrivs", "/proc/self/status"]);
    assert_eq!(
        same(
            &p,
            &["--no-new-privs"],
            &["grep", "NoNewPrivs", "/proc/self/status"]
        )
        .1,
        "NoNewPrivs:\t1\n"
    );
    // The process's rlimits from the config (RLIMIT_NOFILE 1024 in `spec`).
    assert_eq!(same(&p, &[], &["sh", "-c", "ulimit -n"]).1, "1024\n");
    assert_eq!(same(&p, &[], &["hostname"]).1, "exec-test\n");
    assert_eq!(same(&p, &[], &["sh", "-c", "exit 5"]).0, 5);
    assert_eq!(same(&p, &[], &["sh", "-c", "kill -9 $$"]).0, 137);
}

#[test]
fn exec_joins_every_namespace_and_the_cgroup() {
    let p = pair(&|_| {});
    let script = "for n in cgroup ipc mnt net pid uts; do \
        [ \"$(readlink /proc/self/ns/$n)\" = \"$(readlink /proc/1/ns/$n)\" ] || echo \"not in $n\"; done; \
        [ \"$(cat /proc/self/cgroup)\" = \"$(cat /proc/1/cgroup)\" ] || echo 'not in the cgroup'; \
        tr '\\0' ' ' </proc/1/cmdline; echo";
    assert_eq!(same(&p, &[], &["sh", "-c", script]).1, "sleep 1000 \n");
    // And from the host: the exec's cgroup is the init's.
    let dir = TempDir::new("nk-epid");
    let pf = dir.path().join("pid");
    p[1].exec(&["-d", "--pid-file", pf.to_str().unwrap()], &["sleep", "5"]);
    let pid = std::fs::read_to_string(&pf).unwrap();
    let pid = pid.trim();
    let init = p[1].root.state(&p[1].id)["pid"].as_i64().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap(),
        std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap()
    );
}

#[test]
fn exec_runs_under_the_containers_seccomp_profile() {
    let p = pair(&|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        })
    });
    let (code, _) = same(&p, &[], &["mkdir", "/tmp/denied"]);
    assert_eq!(code, 1);
    assert_eq!(
        same(&p, &[], &["grep", "^Seccomp:", "/proc/self/status"]).1,
        "Seccomp:\t2\n"
    );
}

#[test]
fn preserve_fds_pass_descriptors() {
    let p = pair(&|_| {});
    let mut outs = Vec::new();
    for r in &p {
        let o = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "exec 3</etc/hostname; exec {} --root {} exec --preserve-fds 1 {} sh -c 'ls /proc/self/fd; cat <&3 >/dev/null && echo readable'",
                r.root.bin.display(),
                r.root.dir.path().display(),
                r.id
            ))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        outs.push((o.status.code(), stdout(&o)));
    }
    assert_eq!(outs[0], outs[1]);
    assert!(
        outs[1].1.contains("\n3\n") && outs[1].1.contains("readable"),
        "{:?}",
        outs[1]
    );
}

#[test]
fn process_json_replaces_the_flags() {
    let p = pair(&|_| {});
    let dir = TempDir::new("nk-proc");
    let f = dir.path().join("process.json");
    std::fs::write(
        &f,
        serde_json::to_vec(&json!({
            "terminal": false,
            "user": {"uid": 65534, "gid": 65534, "additionalGids": [7]},
            "args": ["sh", "-c", "id; pwd; echo $X"],
            "env": ["PATH=/bin", "X=from-process-json"],
            "cwd": "/tmp",
            "noNewPrivileges": true
        }))
        .unwrap(),
    )
    .unwrap();
    let (code, out) = same(&p, &["--process", f.to_str().unwrap()], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("uid=65534") && out.contains("/tmp\nfrom-process-json"),
        "{out}"
    );
    // runc's validation of the process: a relative cwd is refused.
    std::fs::write(
        &f,
        r#"{"args":["true"],"cwd":"tmp","user":{"uid":0,"gid":0}}"#,
    )
    .unwrap();
    for r in &p {
        let (code, _, err) = r.exec(&["--process", f.to_str().unwrap()], &[]);
        assert_eq!(code, 255, "{err}");
        assert!(err.contains("Cwd must be an absolute path"), "{err}");
    }
}

#[test]
fn detach_writes_the_pid_file() {
    let p = pair(&|_| {});
    for r in &p {
        let dir = TempDir::new("nk-pidf");
        let pf = dir.path().join("exec.pid");
        let (code, _, err) = r.exec(
            &["--detach", "--pid-file", pf.to_str().unwrap()],
            &["sleep", "77"],
        );
        assert_eq!(code, 0, "{err}");
        let pid = std::fs::read_to_string(&pf).unwrap();
        // runc returns once the pid is known, possibly before its init has
        // exec'd the command: wait (bounded) for the command to appear.
        wait_for(
            &format!("{}: the exec'd command", r.root.bin.display()),
            DEADLINE,
            || {
                let cmd = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap();
                (cmd == b"sleep\x0077\x00").then_some(())
            },
        );
    }
}

#[test]
fn failures_give_runcs_text_and_code_and_change_nothing() {
    let p = pair(&|_| {});
    for r in &p {
        let who = r.root.bin.display().to_string();
        let (code, _, err) = r.exec(&[], &["/no/such/binary"]);
        assert_eq!(code, 255, "{who}: {err}");
        assert!(err.contains("no such file or directory"), "{who}: {err}");
        let (code, _, err) = r.exec(&[], &["no-such-command"]);
        assert_eq!(code, 255, "{who}: {err}");
        assert!(
            err.contains("executable file not found in $PATH"),
            "{who}: {err}"
        );
        let (code, _, err) = r.exec(&["--cwd", "/no/such/dir"], &["true"]);
        assert_eq!(code, 255, "{who}: {err}");
        // None of it touched the container.
        assert_eq!(r.root.status(&r.id), "running", "{who}");
        assert_eq!(r.exec(&[], &["true"]).0, 0, "{who}");

        let o = r.root.run(&["exec", "no-such-container", "true"]);
        assert_eq!(o.status.code(), Some(255), "{who}");
        assert!(
            stderr(&o).contains("does not exist"),
            "{who}: {}",
            stderr(&o)
        );

        r.root.ok(&["pause", &r.id]);
        let (code, _, err) = r.exec(&[], &["true"]);
        assert_eq!(code, 255, "{who}: {err}");
        assert!(
            err.contains("cannot exec in a paused container"),
            "{who}: {err}"
        );
        r.root.ok(&["resume", &r.id]);

        r.root.ok(&["kill", &r.id, "KILL"]);
        r.root.wait_status(&r.id, "stopped");
        let (code, _, err) = r.exec(&[], &["true"]);
        assert_eq!(code, 255, "{who}: {err}");
        assert!(
            err.contains("cannot exec in a stopped container"),
            "{who}: {err}"
        );
    }
    // What engines match on: nk-runtime says "container not running" as well.
    let (_, _, err) = p[1].exec(&[], &["true"]);
    assert!(err.contains("container not running"), "{err}");
}

#[test]
fn foreground_exec_forwards_signals() {
    let p = pair(&|_| {});
    for r in &p {
        let mut child = r
            .root
            .cmd()
            .args([
                "exec",
                &r.id,
                "sh",
                "-c",
                "trap 'echo got-term; exit 9' TERM; echo ready; while :; do sleep 0.1; done",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 6];
        std::io::Read::read_exact(&mut out, &mut buf).unwrap();
        assert_eq!(&buf, b"ready\n");
        // SAFETY: kill(2) to the runtime process we spawned.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let st = child.wait().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        assert_eq!(st.code(), Some(9), "{}: {rest}", r.root.bin.display());
        assert_eq!(rest, "got-term\n");
    }
}

#[test]
fn console_socket_gets_the_exec_pty() {
    use std::os::unix::net::UnixListener;
    let p = pair(&|_| {});
    for r in &p {
        let dir = TempDir::new("nk-econs");
        let sock = dir.path().join("c.sock");
        let l = UnixListener::bind(&sock).unwrap();
        let recv = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            recv_fd(&s)
        });
        let (code, _, err) = r.exec(
            &["-t", "-d", "--console-socket", sock.to_str().unwrap()],
            &["sh", "-c", "tty; stty size; echo exec-tty-ok; sleep 1"],
        );
        assert_eq!(code, 0, "{err}");
        let master = recv.join().unwrap();
        let text = read_until(master, "exec-tty-ok");
        assert!(
            text.contains("/dev/pts/"),
            "{}: {text}",
            r.root.bin.display()
        );
        assert!(
            text.contains("exec-tty-ok"),
            "{}: {text}",
            r.root.bin.display()
        );
    }
}

#[test]
fn seed_forms_shell_and_exec_string() {
    let r = Running::start(&runtime().display().to_string(), &|_| {});
    // `exec ID`: an interactive /bin/sh (stdin here is a pipe, so no pty).
    let mut child = r
        .root
        .cmd()
        .args(["exec", &r.id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        b"echo from-shell $0; exit 4\n",
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(stdout(&o), "from-shell /bin/sh\n");
    // `exec --exec CMD ID`: CMD through /bin/sh -c.
    let o = r.root.run(&["exec", "--exec", "echo a  b; exit 3", &r.id]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(stdout(&o), "a b\n");
    // Both forms at once is a usage error.
    let o = r.root.run(&["exec", "--exec", "true", &r.id, "true"]);
    assert_eq!(o.status.code(), Some(255));
}

/// Read from a pty master until `want` shows up (10 s at most).
fn read_until(master: std::os::fd::OwnedFd, want: &str) -> String {
    let mut f = std::fs::File::from(master);
    let mut out = Vec::new();
    let start = std::time::Instant::now();
    while !String::from_utf8_lossy(&out).contains(want) && start.elapsed().as_secs() < 10 {
        let mut buf = [0u8; 256];
        match std::io::Read::read(&mut f, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Namespaces runc 1.1 cannot create (time) are joined by exec too.
#[test]
fn exec_joins_time_and_cgroup_namespaces() {
    let r = Running::start(&runtime().display().to_string(), &|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.push(json!({"type": "time"}));
        ns.push(json!({"type": "cgroup"}));
        c["linux"]["timeOffsets"] = json!({
            "boottime": {"secs": 86400 * 300, "nanosecs": 0},
            "monotonic": {"secs": 86400 * 300, "nanosecs": 0}
        });
    });
    let (code, out, err) = r.exec(
        &[],
        &[
            "sh",
            "-c",
            "for n in time cgroup; do [ \"$(readlink /proc/self/ns/$n)\" = \"$(readlink /proc/1/ns/$n)\" ] && echo same-$n; done; \
             cut -d. -f1 /proc/uptime",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["same-time", "same-cgroup"], "{out}");
    let uptime: u64 = lines[2].parse().unwrap();
    assert!(
        uptime > 86400 * 300,
        "the exec does not see the offset: {out}"
    );
}

/// A command whose process starts with SIGHUP, SIGINT and SIGQUIT ignored,
/// as one started in the background of a shell under `nohup` does.
fn with_signals_ignored(mut c: Command) -> Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: only signal(2) between fork and exec, which is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            for s in [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT] {
                libc::signal(s, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    c
}

/// What /proc/self/status says of a process with no signal blocked or ignored.
const DEFAULT_SIGNALS: &str = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n";

/// Signals the caller ignored stay behind: the container's process (run and
/// exec alike) starts with every signal at its default action and none
/// blocked, so a ^C or a `kill -INT` reaches it as it would on a fresh
/// login. (runc 1.1.5 passes an ignored SIGQUIT on.)
#[test]
fn the_container_starts_with_default_signal_actions() {
    let root = Root::new();
    // grep itself, not under sh: a shell ignores SIGQUIT on its own.
    let b = Bundle::new(&["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]);
    let id = unique_id("sigdfl");
    let mut c = with_signals_ignored(root.cmd());
    c.args(["run", "--bundle", &b.path(), &id]);
    let o = c.stdin(Stdio::null()).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), DEFAULT_SIGNALS, "run");
    let _ = root.run(&["delete", "-f", &id]);
    let r = Running::start(&runtime().display().to_string(), &|_| {});
    let mut c = with_signals_ignored(r.root.cmd());
    c.args([
        "exec",
        &r.id,
        "grep",
        "-E",
        "^Sig(Ign|Blk)",
        "/proc/self/status",
    ]);
    let o = c.stdin(Stdio::null()).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), DEFAULT_SIGNALS, "exec");
}
