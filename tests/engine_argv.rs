//! The command lines engines send, replayed without the engines: the argv
//! shapes recorded from containerd's runc shim, Podman's conmon and Docker
//! (tests/engines/ drives the engines themselves), the JSON error log they
//! parse, `features`, the keyring flag, and checkpoint/restore's flags.

use nk_tests::*;
use serde_json::{json, Value};
use std::io::Write;
use std::process::Stdio;

/// The shim's sequence, flag for flag (runc v2 shim of containerd 1.6,
/// also used by Docker): global --root/--log/--log-format before the verb.
#[test]
fn containerd_shim_argv() {
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let dir = TempDir::new("nk-shim");
    let log = dir.path().join("log.json");
    let g = |v: &[&str]| -> Vec<String> {
        let mut a = vec![
            "--log".to_string(),
            log.display().to_string(),
            "--log-format".to_string(),
            "json".to_string(),
        ];
        a.extend(v.iter().map(|s| s.to_string()));
        a
    };
    let run = |v: Vec<String>| {
        let v: Vec<&str> = v.iter().map(|s| s.as_str()).collect();
        root.run(&v)
    };
    let id = unique_id("shim");
    let pid_file = dir.path().join("init.pid");
    let o = run(g(&[
        "create",
        "--bundle",
        &b.path(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--no-pivot",
        "--no-new-keyring",
        "--preserve-fds",
        "0",
        &id,
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(root.state(&id)["pid"], pid);
    assert!(run(g(&["start", &id])).status.success());
    // exec --process F --detach --pid-file P ID
    let proc_file = dir.path().join("process.json");
    std::fs::write(
        &proc_file,
        json!({"args": ["sleep", "300"], "cwd": "/", "user": {"uid": 0, "gid": 0},
               "env": ["PATH=/bin"], "terminal": false})
        .to_string(),
    )
    .unwrap();
    let exec_pid = dir.path().join("exec.pid");
    let o = run(g(&[
        "exec",
        "--process",
        proc_file.to_str().unwrap(),
        "--detach",
        "--pid-file",
        exec_pid.to_str().unwrap(),
        &id,
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let epid: i64 = std::fs::read_to_string(&exec_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // ps --format json ID: both pids.
    let o = run(g(&["ps", "--format", "json", &id]));
    let pids: Vec<i64> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        pids.contains(&pid) && pids.contains(&epid),
        "{pids:?} {pid} {epid}"
    );
    assert!(run(g(&["pause", &id])).status.success());
    assert_eq!(root.status(&id), "paused");
    assert!(run(g(&["resume", &id])).status.success());
    // update --resources - ID, the JSON on stdin (zeros mean unchanged).
    let mut c = root.cmd();
    c.args(g(&["update", "--resources", "-", &id]))
        .stdin(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"memory":{"limit":0,"reservation":0},"cpu":{"shares":0,"quota":0,"period":0},"pids":{"limit":99}}"#)
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // kill ID 15 / kill --all ID 9 (signal numbers, as the shim sends them)
    assert!(run(g(&["kill", "--all", &id, "9"])).status.success());
    root.wait_status(&id, "stopped");
    let o = run(g(&["kill", &id, "15"]));
    assert!(!o.status.success());
    // delete, then the shim's second `delete --force` must succeed too.
    assert!(run(g(&["delete", &id])).status.success());
    let o = run(g(&["delete", "--force", &id]));
    assert!(o.status.success(), "{}", stderr(&o));
    // The only thing in the JSON log: one error object per failed command.
    let text = std::fs::read_to_string(&log).unwrap();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["level"], "error", "{line}");
        assert!(v["msg"].as_str().unwrap().contains("not running"), "{line}");
        assert!(v["time"].is_string());
    }
}

/// Podman's conmon: `--log-format=json` with `=`, no --root (the default
/// root), and exec with --tty and a console socket.
#[test]
fn podman_conmon_argv() {
    let b = Bundle::new(&["sleep", "1000"]);
    let dir = TempDir::new("nk-conmon");
    let log = dir.path().join("oci-log");
    let id = unique_id("conmon");
    let rt = runtime();
    // Output through files: the init inherits create's stdio.
    let cmd = |args: &[&str]| {
        let mut c = std::process::Command::new(&rt);
        c.args(args).stdin(Stdio::null());
        run_to_files(&mut c)
    };
    let o = cmd(&[
        "--log-format=json",
        "--log",
        log.to_str().unwrap(),
        "create",
        "--bundle",
        &b.path(),
        "--pid-file",
        dir.path().join("pidfile").to_str().unwrap(),
        &id,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cleanup = || {
        let _ = cmd(&["delete", "--force", &id]);
    };
    let o = cmd(&["start", &id]);
    if !o.status.success() {
        cleanup();
        panic!("{}", stderr(&o));
    }
    let sock = dir.path().join("console.sock");
    let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let proc_file = dir.path().join("exec.json");
    std::fs::write(
        &proc_file,
        json!({"args": ["sh", "-c", "tty; sleep 1"], "cwd": "/", "user": {"uid": 0, "gid": 0},
               "env": ["PATH=/bin"], "terminal": true, "consoleSize": {"height": 24, "width": 80}})
        .to_string(),
    )
    .unwrap();
    let o = cmd(&[
        "--log-format=json",
        "--log",
        log.to_str().unwrap(),
        "exec",
        "--pid-file",
        dir.path().join("exec.pid").to_str().unwrap(),
        "--process",
        proc_file.to_str().unwrap(),
        "--detach",
        "--tty",
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
    ]);
    let got_master = l.set_nonblocking(true).is_ok() && l.accept().is_ok();
    cleanup();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(got_master, "no connection on the console socket");
}

#[test]
fn version_has_runcs_shape() {
    let o = std::process::Command::new(runtime())
        .arg("--version")
        .output()
        .unwrap();
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("nk-runtime version "), "{text}");
    assert!(lines[1].starts_with("commit: "), "{text}");
    assert!(lines[2].starts_with("spec: 1."), "{text}");
}

#[test]
fn features_document() {
    let f: Value = serde_json::from_str(&Root::new().ok(&["features"])).unwrap();
    let r: Value = serde_json::from_str(&Root::with_binary(runc()).ok(&["features"])).unwrap();
    // The same top-level shape as runc's.
    for k in [
        "ociVersionMin",
        "ociVersionMax",
        "hooks",
        "mountOptions",
        "linux",
    ] {
        assert!(f.get(k).is_some() && r.get(k).is_some(), "{k}");
    }
    // runc says true when built with CRIU; nk-runtime when criu is installed.
    let criu = ["/usr/sbin/criu", "/usr/bin/criu", "/sbin/criu"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    assert_eq!(
        f["annotations"]["org.opencontainers.runc.checkpoint.enabled"],
        if criu { "true" } else { "false" }
    );
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    assert_eq!(f["hooks"].as_array().unwrap().len(), 6);
    assert_eq!(f["annotations"]["org.nano-sandbox.mode"], "container|vm");
    assert_eq!(
        f["annotations"]["org.nano-sandbox.vm.boot"],
        "template|cold"
    );
    assert_eq!(f["annotations"]["org.nano-sandbox.vm.share"], "9p|virtiofs");
    assert_eq!(f["annotations"]["org.nano-sandbox.vm.vcpus"], "1-64");
    assert_eq!(
        f["annotations"]["org.nano-sandbox.vm.memory-mib"],
        "128-262144"
    );
    // Every org.nano-sandbox.* name in the code is an annotation that the
    // document lists, but the agent protocol's two virtio-serial ports.
    let ports = ["org.nano-sandbox.control", "org.nano-sandbox.stdio"];
    let mut seen = Vec::new();
    let mut dirs = vec![workspace().join("crates")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, _) in text.match_indices("org.nano-sandbox.") {
                    let name: String = text[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                        .collect();
                    let name = name.trim_end_matches('.').to_string();
                    if !ports.contains(&name.as_str()) && !seen.contains(&name) {
                        seen.push(name);
                    }
                }
            }
        }
    }
    assert!(seen.len() >= 5, "{seen:?}");
    for name in &seen {
        assert!(
            f["annotations"].get(name).is_some(),
            "{name} is read by the code but not listed by features: {}",
            f["annotations"]
        );
    }
}

/// The command lines engines send to checkpoint and restore (Go-style
/// `-no-subreaper` included) parse: whatever CRIU then does, the answer is
/// never a usage error, the container is left running and no restore
/// leaves a container behind (tests/checkpoint.rs checks CRIU's errors).
#[test]
fn checkpoint_and_restore_command_lines_parse() {
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("ckpt");
    root.ok(&["run", "--detach", "--bundle", &b.path(), &id]);
    // CRIU writes its log there even when the dump fails: a private dir.
    let dir = TempDir::new("nk-ckpt-argv");
    let img = dir.path().join("img").display().to_string();
    for args in [
        vec![
            "checkpoint",
            "--image-path",
            &img,
            "--leave-running",
            id.as_str(),
        ],
        vec![
            "restore",
            "-no-subreaper",
            "--detach",
            "--image-path",
            &img,
            "--bundle",
            "/tmp",
            "other",
        ],
    ] {
        let o = root.run(&args);
        let err = stderr(&o);
        assert!(
            !err.contains("unexpected argument") && !err.contains("Usage:"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(root.status(&id), "running");
    assert!(!root.ids().contains(&"other".to_string()));
}

/// create makes a session keyring named as runc names it, unless
/// --no-new-keyring; checked against runc.
#[test]
fn no_new_keyring_is_honoured() {
    for bin in [runc(), runtime().display().to_string()] {
        let root = Root::with_binary(&bin);
        let mut b = Bundle::new(&["cat", "/proc/keys"]);
        b.edit(|c| {
            let masked: Vec<Value> = c["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| *p != "/proc/keys")
                .cloned()
                .collect();
            c["linux"]["maskedPaths"] = Value::Array(masked);
        });
        let id = unique_id("keyring");
        let o = root.run(&["run", "--bundle", &b.path(), &id]);
        assert!(
            stdout(&o).contains(&format!("_ses.{id}")),
            "{bin}: {}",
            stdout(&o)
        );
        let id2 = unique_id("nokeyring");
        let o = root.run(&["run", "--no-new-keyring", "--bundle", &b.path(), &id2]);
        assert!(o.status.success(), "{bin}: {}", stderr(&o));
        assert!(
            !stdout(&o).contains(&format!("_ses.{id2}")),
            "{bin}: {}",
            stdout(&o)
        );
    }
}
