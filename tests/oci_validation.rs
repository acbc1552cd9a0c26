//! The scenarios of the OCI runtime conformance suite (opencontainers/
//! runtime-tools `validation/`), run the way that suite runs a runtime:
//! bundles whose rootfs is the bundle directory itself (`root.path` "."),
//! the config `generate.New` writes, and only the CLI (create, start, state,
//! kill, delete). Each scenario runs under runc and under nk-runtime; where
//! runc 1.1.5 and the runtime spec agree the two must match, and where runc
//! departs from the spec (noted at each test) nk-runtime must do what the
//! suite expects.

use nk_tests::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn runc() -> PathBuf {
    for p in ["/usr/sbin/runc", "/usr/bin/runc"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("runc is not installed: the test command installs it (scripts/test-deps.sh)");
}

/// Both runtimes, runc first, each with its own state root.
fn runtimes() -> Vec<(&'static str, Root)> {
    vec![("runc", Root::with_binary(runc())), ("nk", Root::new())]
}

const CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A runtime-tools bundle: the rootfs is unpacked into the bundle directory
/// and config.json sits next to it, as `util.PrepareBundle` does.
struct SuiteBundle {
    dir: TempDir,
    config: Value,
}

impl SuiteBundle {
    /// The config of runtime-tools' `generate.New("linux")` (without its
    /// seccomp profile), running `args`.
    fn new(args: &[&str]) -> SuiteBundle {
        let dir = TempDir::new("ocitest");
        let st = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", rootfs().display()))
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "copying the test rootfs failed");
        let caps = json!(CAPS);
        let config = json!({
            "ociVersion": "1.0.2",
            "hostname": "mrsdalloway",
            "root": {"path": "."},
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
                "cwd": "/",
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "capabilities": {"bounding": caps, "permitted": caps, "inheritable": caps, "effective": caps, "ambient": caps}
            },
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
            ],
            "linux": {
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
            }
        });
        let b = SuiteBundle { dir, config };
        b.save();
        b
    }

    fn save(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    fn edit(mut self, f: impl FnOnce(&mut Value, &str)) -> Self {
        let p = self.path();
        f(&mut self.config, &p);
        self.save();
        self
    }

    fn path(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// A file in the rootfs (which is the bundle).
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.file(name)).ok()
    }

    /// A hook running `sh -c script` from the bundle's busybox.
    fn sh_hook(&self, script: &str) -> Value {
        json!({"path": self.file("bin/sh"), "args": ["sh", "-c", script]})
    }
}

fn code(root: &Root, args: &[&str]) -> i32 {
    root.run(args).status.code().unwrap_or(-1)
}

fn create(root: &Root, b: &SuiteBundle, id: &str) -> i32 {
    code(root, &["create", "--bundle", &b.path(), id])
}

/// The status, or "" when `state` fails.
fn status_of(root: &Root, id: &str) -> String {
    let o = root.run(&["state", id]);
    if !o.status.success() {
        return String::new();
    }
    let v: Value = serde_json::from_slice(&o.stdout).expect("state JSON");
    v["status"].as_str().unwrap_or("").to_string()
}

/// Poll until the status is `want` (the suite's `WaitingForStatus`).
fn wait_for(root: &Root, id: &str, want: &str) -> bool {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if status_of(root, id) == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn pid_of(root: &Root, id: &str) -> i64 {
    root.state(id)["pid"].as_i64().unwrap_or(0)
}

/// Nothing is left of a failed create: no state, no directory in the root.
fn assert_no_container(name: &str, root: &Root, id: &str, what: &str) {
    assert_eq!(status_of(root, id), "", "{name}: {what} left a container");
    assert!(
        root.ids().is_empty(),
        "{name}: {what} left state {:?}",
        root.ids()
    );
}

/// create / start / state / kill / delete transitions, and every operation
/// the suite says MUST fail (validation/create, start, state, kill, delete,
/// kill_no_effect).
#[test]
fn lifecycle_transitions_agree() {
    let mut transcripts = Vec::new();
    for (name, root) in runtimes() {
        let b = SuiteBundle::new(&["sleep", "30"]);
        let id = unique_id("ocv-life");
        let mut t: Vec<String> = Vec::new();
        let mut log = |step: &str, v: String| t.push(format!("{step}: {v}"));
        // No id: create, start, state, kill and delete are usage errors.
        for verb in ["start", "state", "kill", "delete"] {
            log(
                &format!("{verb} without id fails"),
                (code(&root, &[verb]) != 0).to_string(),
            );
        }
        log(
            "create without id fails",
            (code(&root, &["create", "--bundle", &b.path()]) != 0).to_string(),
        );
        // Nonexistent container.
        for verb in ["start", "state", "kill", "delete"] {
            log(
                &format!("{verb} missing fails"),
                (code(&root, &[verb, &id]) != 0).to_string(),
            );
        }
        log("create", create(&root, &b, &id).to_string());
        log(
            "create same id fails",
            (create(&root, &b, &id) != 0).to_string(),
        );
        log("status", status_of(&root, &id));
        let st = root.state(&id);
        log("state.id matches", (st["id"] == json!(id)).to_string());
        log(
            "state.pid > 0",
            (st["pid"].as_i64().unwrap_or(0) > 0).to_string(),
        );
        log(
            "state.bundle",
            (st["bundle"] == json!(b.path())).to_string(),
        );
        log("start", code(&root, &["start", &id]).to_string());
        log("status", status_of(&root, &id));
        log(
            "start again fails",
            (code(&root, &["start", &id]) != 0).to_string(),
        );
        log(
            "delete running fails",
            (code(&root, &["delete", &id]) != 0).to_string(),
        );
        log("status after failed delete", status_of(&root, &id));
        log("kill KILL", code(&root, &["kill", &id, "KILL"]).to_string());
        log("stopped", wait_for(&root, &id, "stopped").to_string());
        let before = root.state(&id);
        log(
            "kill stopped fails",
            (code(&root, &["kill", &id, "KILL"]) != 0).to_string(),
        );
        log(
            "kill had no effect",
            (root.state(&id) == before).to_string(),
        );
        log(
            "start stopped fails",
            (code(&root, &["start", &id]) != 0).to_string(),
        );
        log("status", status_of(&root, &id));
        log("delete stopped", code(&root, &["delete", &id]).to_string());
        log("state after delete", status_of(&root, &id));
        transcripts.push((name, t));
    }
    let (_, nk) = transcripts.pop().unwrap();
    let (_, rc) = transcripts.pop().unwrap();
    assert_eq!(rc, nk, "runc and nk-runtime disagree on the lifecycle");
    // And both do what the suite expects.
    for line in &nk {
        assert!(
            !line.ends_with(": false"),
            "the suite's expectation fails: {line}\n{nk:#?}"
        );
    }
    for want in [
        "create: 0",
        "start: 0",
        "status after failed delete: running",
        "delete stopped: 0",
        "state after delete: ",
    ] {
        assert!(nk.iter().any(|l| l == want), "missing {want:?} in {nk:#?}");
    }
}

/// validation/kill: signalling a created container is allowed and SIGKILL
/// stops it; validation/killsig: the signal named reaches the process.
#[test]
fn kill_created_and_signals_agree() {
    for (name, root) in runtimes() {
        let b = SuiteBundle::new(&["true"]);
        let id = unique_id("ocv-killc");
        assert_eq!(create(&root, &b, &id), 0, "{name}: create");
        assert_eq!(status_of(&root, &id), "created", "{name}");
        assert_eq!(
            code(&root, &["kill", &id, "KILL"]),
            0,
            "{name}: kill created"
        );
        assert!(
            wait_for(&root, &id, "stopped"),
            "{name}: SIGKILL did not stop a created container"
        );
        assert_eq!(code(&root, &["delete", &id]), 0, "{name}: delete");

        for sig in ["TERM", "USR1", "USR2"] {
            let script = format!("trap 'touch /{sig}' {sig}; touch /ready; sleep 10 & wait $!");
            let b = SuiteBundle::new(&["sh", "-c", &script]);
            let id = unique_id("ocv-sig");
            assert_eq!(create(&root, &b, &id), 0, "{name}: create");
            assert_eq!(code(&root, &["start", &id]), 0, "{name}: start");
            assert!(wait_for(&root, &id, "running"), "{name}");
            // The trap must be installed before the signal arrives.
            nk_tests::wait_for("the trap to be set", DEADLINE, || {
                b.file("ready").exists().then_some(())
            });
            assert_eq!(code(&root, &["kill", &id, sig]), 0, "{name}: kill {sig}");
            assert!(
                wait_for(&root, &id, "stopped"),
                "{name}: {sig} did not end the trap"
            );
            assert!(
                b.file(sig).exists(),
                "{name}: SIG{sig} did not reach the process"
            );
            assert_eq!(code(&root, &["delete", &id]), 0, "{name}: delete");
        }
    }
}

/// validation/start: process.args runs on start, not on create, and only once.
#[test]
fn process_runs_only_at_start() {
    for (name, root) in runtimes() {
        let b = SuiteBundle::new(&["sh", "-c", "echo 'process called' >> /output"]);
        let id = unique_id("ocv-start");
        assert_eq!(create(&root, &b, &id), 0, "{name}: create");
        assert!(
            b.read("output").is_none(),
            "{name}: the process ran at create"
        );
        assert_eq!(code(&root, &["start", &id]), 0, "{name}: start");
        assert!(wait_for(&root, &id, "stopped"), "{name}");
        assert_ne!(
            code(&root, &["start", &id]),
            0,
            "{name}: start of a stopped container"
        );
        assert_eq!(
            b.read("output").as_deref(),
            Some("process called\n"),
            "{name}"
        );
        assert_eq!(code(&root, &["delete", &id]), 0, "{name}: delete");

        // A config without process cannot be started (runc refuses it at create).
        let b = SuiteBundle::new(&["true"]).edit(|c, _| {
            c.as_object_mut().unwrap().remove("process");
        });
        let id = unique_id("ocv-noproc");
        assert_ne!(create(&root, &b, &id), 0, "{name}: create without process");
        assert_no_container(name, &root, &id, "create without process");
    }
}

/// validation/pidfile: --pid-file holds the pid `state` reports.
#[test]
fn pid_file_matches_state() {
    for (name, root) in runtimes() {
        let b = SuiteBundle::new(&["true"]);
        let dir = TempDir::new("ocv-pid");
        let pidfile = dir.path().join("pidfile");
        let id = unique_id("ocv-pidf");
        let o = root.run(&[
            "create",
            "--pid-file",
            &pidfile.display().to_string(),
            "--bundle",
            &b.path(),
            &id,
        ]);
        assert!(o.status.success(), "{name}: create: {}", stderr(&o));
        let written: i64 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .parse()
            .expect("the pid file holds only a number");
        assert_eq!(written, pid_of(&root, &id), "{name}");
        assert_eq!(code(&root, &["delete", "-f", &id]), 0, "{name}");
    }
}

/// validation/misc_props: unknown properties and annotation keys are
/// accepted.
#[test]
fn unknown_properties_and_annotations_are_accepted() {
    for (name, root) in runtimes() {
        for (what, edit) in [
            ("unknown property", json!({"unknown": "unknown"})),
            (
                "unknown annotation",
                json!({"annotations": {"org.unknown-key": ""}}),
            ),
        ] {
            let b = SuiteBundle::new(&["true"]).edit(|c, _| {
                for (k, v) in edit.as_object().unwrap() {
                    c[k] = v.clone();
                }
            });
            let id = unique_id("ocv-misc");
            assert_eq!(create(&root, &b, &id), 0, "{name}: {what} refused");
            assert_eq!(code(&root, &["start", &id]), 0, "{name}: {what}");
            assert!(wait_for(&root, &id, "stopped"), "{name}");
            assert_eq!(code(&root, &["delete", &id]), 0, "{name}: {what}");
        }
    }
}

/// A change to a suite bundle's config (given the bundle path).
type Edit = dyn Fn(&mut Value, &str);

/// Configs the suite says MUST fail, and that runc refuses too: nothing may
/// be left behind (validation/process_rlimits_fail, prestart_fail,
/// linux_ns_path_type).
#[test]
fn bad_configs_fail_in_both_and_leave_nothing() {
    let mut cases: Vec<(String, Box<Edit>)> = vec![
        (
            "unknown rlimit RLIMIT_TEST".into(),
            Box::new(|c, _| {
                c["process"]["rlimits"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "RLIMIT_TEST", "hard": 1024, "soft": 1024}))
            }),
        ),
        (
            "nonexistent prestart hook".into(),
            Box::new(|c, _| c["hooks"] = json!({"prestart": [{"path": "/nonexistent/hook"}]})),
        ),
        (
            "failing prestart hook".into(),
            Box::new(|c, b| {
                c["hooks"] =
                    json!({"prestart": [{"path": format!("{b}/bin/false"), "args": ["false"]}]});
                c["process"]["args"] = json!(["sh", "-c", "touch /output"]);
            }),
        ),
    ];
    // A namespace path of another type (validation/linux_ns_path_type; the
    // user case is left out: joining a user namespace needs its mappings).
    for (ty, wrong) in [
        ("cgroup", "ipc"),
        ("ipc", "mnt"),
        ("mount", "net"),
        ("network", "pid"),
        ("pid", "user"),
        ("uts", "cgroup"),
    ] {
        cases.push((
            format!("{ty} namespace path /proc/self/ns/{wrong}"),
            Box::new(move |c, _| {
                let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
                ns.retain(|n| n["type"] != ty);
                ns.push(json!({"type": ty, "path": format!("/proc/self/ns/{wrong}")}));
            }),
        ));
    }
    for (what, edit) in &cases {
        for (name, root) in runtimes() {
            let b = SuiteBundle::new(&["true"]).edit(edit);
            let id = unique_id("ocv-bad");
            let o = root.run(&["create", "--bundle", &b.path(), &id]);
            assert!(!o.status.success(), "{name}: {what} was accepted");
            assert!(
                !stderr(&o).trim().is_empty(),
                "{name}: {what}: no error message"
            );
            assert_no_container(name, &root, &id, what);
            assert!(
                b.read("output").is_none(),
                "{name}: {what}: the process ran"
            );
        }
    }
}

/// Values the spec says MUST be errors but runc 1.1.5 accepts (it warns
/// about an unknown capability and does not check ociVersion); the suite
/// (process_capabilities_fail, misc_props) expects nk-runtime's refusal.
#[test]
fn values_runc_lets_through_are_refused() {
    let root = Root::new();
    for (what, edit) in [
        ("capability CAP_TEST", json!({"cap": "CAP_TEST"})),
        ("ociVersion \"invalid\"", json!({"version": "invalid"})),
    ] {
        let b = SuiteBundle::new(&["true"]).edit(|c, _| {
            if let Some(cap) = edit.get("cap") {
                c["process"]["capabilities"]["bounding"]
                    .as_array_mut()
                    .unwrap()
                    .push(cap.clone());
            }
            if let Some(v) = edit.get("version") {
                c["ociVersion"] = v.clone();
            }
        });
        let id = unique_id("ocv-strict");
        let o = root.run(&["create", "--bundle", &b.path(), &id]);
        assert!(!o.status.success(), "{what} was accepted");
        let err = stderr(&o);
        assert!(
            err.contains("config.json"),
            "{what}: the error does not name the file: {err}"
        );
        assert_no_container("nk", &root, &id, what);
    }
}

/// validation/hooks and hooks_stdin: hooks run in order at their points of
/// the lifecycle, each given the state on stdin.
#[test]
fn hooks_order_and_stdin_state() {
    for (name, root) in runtimes() {
        let id = unique_id("ocv-hooks");
        let b = SuiteBundle::new(&["true"]);
        let out = b.file("output").display().to_string();
        let echo = |s: &str| b.sh_hook(&format!("echo {s} >> {out}"));
        let cat = |s: &str| {
            let mut h = b.sh_hook(&format!("cat > {}", b.file(s).display()));
            h["timeout"] = json!(1);
            h
        };
        let hooks = json!({
            "prestart": [echo("pre1"), echo("pre2"), cat("prestart")],
            "poststart": [echo("post1"), echo("post2"), cat("poststart")],
            "poststop": [echo("stop1"), echo("stop2"), cat("poststop")]
        });
        let b = b.edit(|c, _| {
            c["hooks"] = hooks;
            c["annotations"] = json!({"org.opencontainers.runtime-tools": "hook stdin test"});
        });
        assert_eq!(create(&root, &b, &id), 0, "{name}: create");
        let pid = pid_of(&root, &id);
        let lines = || b.read("output").unwrap_or_default();
        assert!(lines().starts_with("pre1\npre2\n"), "{name}: {}", lines());
        assert!(!lines().contains("stop"), "{name}: poststop ran at create");
        assert_eq!(code(&root, &["start", &id]), 0, "{name}: start");
        assert!(wait_for(&root, &id, "stopped"), "{name}");
        assert!(
            !lines().contains("stop"),
            "{name}: poststop ran before delete"
        );
        assert_eq!(code(&root, &["delete", &id]), 0, "{name}: delete");
        assert_eq!(
            lines(),
            "pre1\npre2\npost1\npost2\nstop1\nstop2\n",
            "{name}: hook order"
        );
        for hook in ["prestart", "poststart", "poststop"] {
            let raw = b
                .read(hook)
                .unwrap_or_else(|| panic!("{name}: {hook} got no stdin"));
            let st: Value = serde_json::from_str(&raw).expect("state JSON on stdin");
            assert_eq!(st["id"], json!(id), "{name}: {hook}");
            assert_eq!(st["bundle"], json!(b.path()), "{name}: {hook}");
            assert_eq!(
                st["annotations"]["org.opencontainers.runtime-tools"], "hook stdin test",
                "{name}: {hook}"
            );
            if hook != "poststop" {
                assert_eq!(st["pid"].as_i64(), Some(pid), "{name}: {hook}");
            }
            let status = st["status"].as_str().unwrap_or("");
            match hook {
                // Both runtimes report "creating" (the create operation has
                // not finished); the suite would like "created".
                "prestart" => assert_eq!(status, "creating", "{name}: {hook}"),
                "poststop" => assert_eq!(status, "stopped", "{name}: {hook}"),
                // runc 1.1.5 runs poststart hooks at the end of create and
                // says "created"; the spec runs them after start, "running".
                _ if name == "nk" => assert_eq!(status, "running", "{name}: {hook}"),
                _ => {}
            }
        }
    }
}

/// validation/poststart_fail and poststop_fail: a failing poststart or
/// poststop hook is a warning, and the hooks after it still run. runc 1.1.5
/// fails the operation instead, so only nk-runtime is held to the spec.
#[test]
fn failed_poststart_and_poststop_hooks_are_warnings() {
    let root = Root::new();
    for kind in ["poststart", "poststop"] {
        let b = SuiteBundle::new(&["true"]);
        let out = b.file("output").display().to_string();
        let hooks = json!({kind: [
            {"path": b.file("bin/false"), "args": ["false"]},
            b.sh_hook(&format!("echo '{kind} called' >> {out}"))
        ]});
        let b = b.edit(|c, _| c["hooks"] = hooks);
        let id = unique_id("ocv-hookfail");
        assert_eq!(create(&root, &b, &id), 0, "{kind}: create");
        let started = root.run(&["start", &id]);
        assert!(
            started.status.success(),
            "{kind}: start failed: {}",
            stderr(&started)
        );
        assert!(wait_for(&root, &id, "stopped"), "{kind}");
        let deleted = root.run(&["delete", &id]);
        assert!(
            deleted.status.success(),
            "{kind}: delete failed: {}",
            stderr(&deleted)
        );
        let warning = stderr(if kind == "poststart" {
            &started
        } else {
            &deleted
        });
        assert!(
            warning.contains(&format!("{kind} hook")) && warning.contains("warning"),
            "{kind}: the failure was not logged as a warning: {warning}"
        );
        assert_eq!(
            b.read("output").as_deref(),
            Some(format!("{kind} called\n").as_str()),
            "{kind}: the hook after the failing one did not run"
        );
        assert_eq!(
            status_of(&root, &id),
            "",
            "{kind}: the container is still there"
        );
    }
}

/// A process kept in fresh namespaces by `unshare`, killed by pid on drop.
struct Unshared(std::process::Child);

impl Unshared {
    fn new(flag: &str) -> Unshared {
        let child = Command::new("unshare")
            .args([flag, "--fork", "--kill-child", "sleep", "1000"])
            .spawn()
            .expect("unshare (util-linux)");
        Unshared(child)
    }

    /// The namespace link of the forked child's kind (pid: pid_for_children).
    fn ns(&self, file: &str) -> (String, String) {
        let path = format!("/proc/{}/ns/{file}", self.0.id());
        let own = std::fs::read_link(format!("/proc/self/ns/{file}")).unwrap();
        let l = nk_tests::wait_for(
            &format!("unshare to enter a new {file} namespace"),
            DEADLINE,
            || std::fs::read_link(&path).ok().filter(|l| *l != own),
        );
        (path, l.display().to_string())
    }
}

impl Drop for Unshared {
    fn drop(&mut self) {
        // --kill-child makes the forked sleep die with unshare.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// validation/linux_ns_path: a namespace given by path is joined.
#[test]
fn namespace_paths_are_joined() {
    for (ty, file, flag) in [
        ("ipc", "ipc", "--ipc"),
        ("mount", "mnt", "--mount"),
        ("network", "net", "--net"),
        ("pid", "pid", "--pid"),
        ("uts", "uts", "--uts"),
    ] {
        for (name, root) in runtimes() {
            let holder = Unshared::new(flag);
            let link = if ty == "pid" {
                "pid_for_children"
            } else {
                file
            };
            let (path, want) = holder.ns(link);
            let b = SuiteBundle::new(&["sleep", "10"]).edit(|c, _| {
                let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
                ns.retain(|n| n["type"] != ty);
                ns.push(json!({"type": ty, "path": path}));
            });
            let id = unique_id("ocv-nspath");
            let o = root.run(&["create", "--bundle", &b.path(), &id]);
            assert!(o.status.success(), "{name}: join {ty}: {}", stderr(&o));
            let pid = pid_of(&root, &id);
            let got = std::fs::read_link(format!("/proc/{pid}/ns/{file}")).unwrap();
            assert_eq!(
                got.display().to_string(),
                want,
                "{name}: {ty} namespace not joined"
            );
            assert_eq!(code(&root, &["delete", "-f", &id]), 0, "{name}");
        }
    }
}

/// Where a controller file of the container's cgroup is, found the way
/// runtime-tools' cgroups package does: from /proc/PID/cgroup.
fn cgroup_file(pid: i64, subsys: &str, file: &str) -> (String, String) {
    let table = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = table
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            ctrl.split(',')
                .any(|c| c == subsys)
                .then(|| path.to_string())
        })
        .next()
        .unwrap_or_else(|| panic!("no {subsys} line in /proc/{pid}/cgroup"));
    let value = std::fs::read_to_string(format!("/sys/fs/cgroup/{subsys}{rel}/{file}"))
        .unwrap_or_else(|e| format!("unreadable: {e}"));
    (rel, value.trim().to_string())
}

fn v1_hierarchy(subsys: &str) -> bool {
    std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == subsys))
        })
}

/// Create makes the parents of a relative cgroupsPath under the test's own
/// cgroup in every hierarchy and delete leaves them (runc does the same);
/// remove them, innermost first.
fn remove_relative_parents(rel: &str) {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let mount = match ctrl {
            "" => "unified".to_string(),
            c => c
                .trim_start_matches("name=")
                .split(',')
                .next()
                .unwrap_or(c)
                .to_string(),
        };
        let base = Path::new("/sys/fs/cgroup")
            .join(mount)
            .join(path.trim_start_matches('/'));
        let mut dir = base.join(rel);
        while dir.starts_with(&base) && dir != base {
            let _ = std::fs::remove_dir(&dir);
            dir.pop();
        }
    }
}

/// validation/linux_cgroups_* and linux_cgroups_relative_*: an absolute
/// cgroupsPath is relative to the hierarchy's mount point, a relative one
/// to the runtime's own cgroup, and the limits can be read back there;
/// validation/delete_resources: delete removes the cgroup create made.
#[test]
fn cgroup_paths_and_limits_read_back() {
    for sub in ["pids", "memory", "cpu", "cpuset"] {
        if !v1_hierarchy(sub) {
            eprintln!("skipped: no cgroup v1 {sub} hierarchy on this host");
            return;
        }
    }
    let mut seen = Vec::new();
    for (name, root) in runtimes() {
        let tag = unique_id("ocv");
        let mut out = Vec::new();
        for (path, resources, reads) in [
            (
                format!("/cgrouptest-{tag}"),
                json!({"pids": {"limit": 1000}}),
                vec![("pids", "pids.max")],
            ),
            (
                format!("testdir-{tag}/cgrouptest/container"),
                json!({"pids": {"limit": 1000}}),
                vec![("pids", "pids.max")],
            ),
            (
                format!("/cgrouptest-{tag}"),
                json!({"memory": {"limit": 50593792, "reservation": 50593792, "swap": 50593792, "swappiness": 10, "disableOOMKiller": true}}),
                vec![
                    ("memory", "memory.limit_in_bytes"),
                    ("memory", "memory.soft_limit_in_bytes"),
                    ("memory", "memory.memsw.limit_in_bytes"),
                    ("memory", "memory.swappiness"),
                    ("memory", "memory.oom_control"),
                ],
            ),
            (
                format!("/cgrouptest-{tag}"),
                json!({"cpu": {"shares": 2048, "period": 500000, "quota": 200000, "cpus": "0", "mems": "0"}}),
                vec![
                    ("cpu", "cpu.shares"),
                    ("cpu", "cpu.cfs_quota_us"),
                    ("cpu", "cpu.cfs_period_us"),
                    ("cpuset", "cpuset.cpus"),
                    ("cpuset", "cpuset.mems"),
                ],
            ),
        ] {
            let b = SuiteBundle::new(&["true"]).edit(|c, _| {
                c["linux"]["cgroupsPath"] = json!(path);
                for (k, v) in resources.as_object().unwrap() {
                    c["linux"]["resources"][k] = v.clone();
                }
            });
            let id = unique_id("ocv-cg");
            let o = root.run(&["create", "--bundle", &b.path(), &id]);
            assert!(o.status.success(), "{name}: {resources}: {}", stderr(&o));
            let pid = pid_of(&root, &id);
            for (sub, file) in &reads {
                let (rel, value) = cgroup_file(pid, sub, file);
                let inner = path.trim_start_matches('/');
                assert!(
                    rel.contains(inner),
                    "{name}: {sub} cgroup {rel} is not at {path}"
                );
                if path.starts_with('/') {
                    assert_eq!(
                        rel, path,
                        "{name}: an absolute path is relative to the mount"
                    );
                }
                let value = value.lines().next().unwrap_or("").to_string();
                out.push(format!("{file}={value}"));
            }
            assert_eq!(code(&root, &["start", &id]), 0, "{name}");
            assert!(wait_for(&root, &id, "stopped"), "{name}");
            assert_eq!(code(&root, &["delete", &id]), 0, "{name}");
            for (sub, _) in &reads {
                let dir = format!("/sys/fs/cgroup/{sub}/{}", path.trim_start_matches('/'));
                assert!(!Path::new(&dir).exists(), "{name}: delete left {dir}");
            }
        }
        remove_relative_parents(&format!("testdir-{tag}/cgrouptest"));
        seen.push(out);
    }
    let nk = seen.pop().unwrap();
    let rc = seen.pop().unwrap();
    assert_eq!(rc, nk, "runc and nk-runtime read back different limits");
    for want in [
        "pids.max=1000",
        "memory.limit_in_bytes=50593792",
        "memory.swappiness=10",
        "memory.oom_control=oom_kill_disable 1",
        "cpu.shares=2048",
        "cpu.cfs_quota_us=200000",
        "cpu.cfs_period_us=500000",
        "cpuset.cpus=0",
    ] {
        assert!(nk.iter().any(|l| l == want), "missing {want} in {nk:?}");
    }
}

/// validation/delete_only_create_resources: a cgroup the container was moved
/// into after create, which the runtime did not make, survives delete.
#[test]
fn delete_keeps_cgroups_it_did_not_create() {
    if !v1_hierarchy("pids") {
        eprintln!("skipped: no cgroup v1 pids hierarchy on this host");
        return;
    }
    for (name, root) in runtimes() {
        let foreign = PathBuf::from(format!("/sys/fs/cgroup/pids/{}", unique_id("ocv-foreign")));
        std::fs::create_dir(&foreign).unwrap();
        let b = SuiteBundle::new(&["true"]);
        let id = unique_id("ocv-keep");
        assert_eq!(create(&root, &b, &id), 0, "{name}");
        let pid = pid_of(&root, &id);
        std::fs::write(foreign.join("tasks"), pid.to_string()).unwrap();
        assert_eq!(code(&root, &["start", &id]), 0, "{name}");
        assert!(wait_for(&root, &id, "stopped"), "{name}");
        assert_eq!(code(&root, &["delete", &id]), 0, "{name}");
        let kept = foreign.exists();
        let _ = std::fs::remove_dir(&foreign);
        assert!(kept, "{name}: delete removed a cgroup it did not create");
    }
}

/// What runtimetest checks inside a default container: the default
/// symlinks, devices and file systems, the mounts in order with their
/// sources, the hostname, a writable root, capabilities and rlimits; plus a tmpfs with a size option
/// (validation/mounts), masked and read-only paths, sysctls, oom_score_adj.
#[test]
fn inside_view_agrees() {
    const VIEW: &str = "ls -l /dev/fd /dev/stdin /dev/stdout /dev/stderr | awk '{print $1, $(NF-2), $NF}'; \
        for d in null zero full random urandom tty ptmx; do [ -c /dev/$d ] && echo \"$d chr\" || echo \"$d missing\"; done; \
        cut -d' ' -f5,9,10 /proc/self/mountinfo; hostname; \
        touch /rootw 2>/dev/null && echo root-writable || echo root-readonly; rm -f /rootw; \
        cat /proc/self/oom_score_adj; cat /proc/sys/kernel/shmmni; \
        head -c1 /masked-file | wc -c; ls /masked-dir | wc -l; \
        touch /ro-dir/x 2>/dev/null && echo ro-dir-writable || echo ro-dir-readonly; \
        grep -E '^(Cap|NoNewPrivs)' /proc/self/status; echo nofile=$(ulimit -n)/$(ulimit -Hn)";
    let mut views = Vec::new();
    for (name, root) in runtimes() {
        let b = SuiteBundle::new(&["sh", "-c", VIEW]).edit(|c, b| {
            for d in ["masked-dir", "ro-dir"] {
                std::fs::create_dir_all(format!("{b}/{d}")).unwrap();
            }
            std::fs::write(format!("{b}/masked-dir/secret"), "x").unwrap();
            std::fs::write(format!("{b}/masked-file"), "secret").unwrap();
            c["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=1k"]
            }));
            c["linux"]["maskedPaths"] = json!(["/masked-file", "/masked-dir"]);
            c["linux"]["readonlyPaths"] = json!(["/ro-dir"]);
            c["linux"]["sysctl"] = json!({"kernel.shmmni": "8192"});
            c["process"]["oomScoreAdj"] = json!(500);
        });
        let id = unique_id("ocv-view");
        let o = root.run(&["run", "--bundle", &b.path(), &id]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        views.push(stdout(&o));
        let _ = root.run(&["delete", "-f", &id]);
    }
    let nk = views.pop().unwrap();
    let rc = views.pop().unwrap();
    assert_eq!(rc, nk, "the inside views differ");
    for want in [
        "lrwxrwxrwx /dev/fd /proc/self/fd",
        "lrwxrwxrwx /dev/stdin /proc/self/fd/0",
        "ptmx chr",
        "/proc proc",
        "/dev/shm shm",
        "/dev/pts devpts",
        "/sys sysfs",
        "/tmp tmpfs",
        "mrsdalloway",
        "root-writable",
        "500",
        "8192",
        "ro-dir-readonly",
        // The 14 capabilities of generate.New in every set, ambient too.
        "CapAmb:\t00000000a80425fb",
        "CapBnd:\t00000000a80425fb",
        "nofile=1024/1024",
    ] {
        assert!(
            nk.lines().any(|l| l.starts_with(want)),
            "missing {want:?} in:\n{nk}"
        );
    }
    assert!(
        !nk.contains("missing"),
        "a default device is missing:\n{nk}"
    );
    let mounts: Vec<&str> = nk
        .lines()
        .filter(|l| l.starts_with('/') && l.contains(' '))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let order = [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/tmp",
    ];
    let pos: Vec<usize> = order
        .iter()
        .map(|m| mounts.iter().position(|x| x == m).unwrap_or(usize::MAX))
        .collect();
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "mounts out of order: {mounts:?}"
    );
}

/// validation/linux_seccomp: a profile that makes getcwd fail with an errno
/// is loaded, and the program runs and sees the errno. runc 1.1.5 (with
/// Debian's CVE-2024-21626 patch) refuses to start: its own getcwd check
/// runs after the filter when noNewPrivileges is off. Only nk-runtime is
/// held to the suite here.
#[test]
fn seccomp_profile_denying_getcwd_still_starts() {
    let root = Root::new();
    for nnp in [false, true] {
        let b = SuiteBundle::new(&["sh", "-c", "/bin/pwd; echo pwd-exit=$?"]).edit(|c, _| {
            c["process"]["noNewPrivileges"] = json!(nnp);
            c["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]
            });
        });
        let id = unique_id("ocv-seccomp");
        let o = root.run(&["run", "--bundle", &b.path(), &id]);
        let _ = root.run(&["delete", "-f", &id]);
        assert!(o.status.success(), "noNewPrivileges={nnp}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains("pwd-exit=1"),
            "noNewPrivileges={nnp}: getcwd was not denied: {out}"
        );
    }
}

/// validation/linux_rootfs_propagation, as runtimetest checks it: bind /
/// recursively onto /target, then bind a directory onto /mnt1; only a
/// shared / propagates the second mount into /target. runc 1.1.5 leaves /
/// private whatever the config says (runc 1.2 applies the flag after
/// pivot_root, as nk-runtime does), so the shared case holds nk-runtime to
/// the spec and the others compare with runc.
#[test]
fn rootfs_propagation_is_applied_to_the_new_root() {
    const SCRIPT: &str = "mkdir /target /mnt1 /test && touch /test/example && \
        mount --rbind / /target && mount --bind /test /mnt1 && \
        if [ -e /target/mnt1/example ]; then echo propagated; else echo isolated; fi";
    for (prop, want) in [
        ("shared", "propagated"),
        ("slave", "isolated"),
        ("private", "isolated"),
    ] {
        for (name, root) in runtimes() {
            if name == "runc" && prop == "shared" {
                continue;
            }
            let b = SuiteBundle::new(&["sh", "-c", SCRIPT]).edit(|c, _| {
                c["linux"]["rootfsPropagation"] = json!(prop);
                for set in ["bounding", "effective", "permitted"] {
                    c["process"]["capabilities"][set]
                        .as_array_mut()
                        .unwrap()
                        .push(json!("CAP_SYS_ADMIN"));
                }
            });
            let id = unique_id("ocv-prop");
            let o = root.run(&["run", "--bundle", &b.path(), &id]);
            let _ = root.run(&["delete", "-f", &id]);
            assert!(o.status.success(), "{name}: {prop}: {}", stderr(&o));
            assert_eq!(stdout(&o).trim(), want, "{name}: rootfsPropagation {prop}");
        }
    }
}

/// validation/linux_devices and linux_uid_mappings: the device nodes of
/// linux.devices (char, block, fifo) with their numbers, modes and owners,
/// and the id maps of a user namespace, as seen inside.
#[test]
fn devices_and_id_mappings_agree() {
    let cases: [(&str, Box<Edit>); 2] = [
        (
            "ls -ln /dev/test1 /dev/test2 /dev/test3 | awk '{print $1, $3, $4, $5, $6, $NF}'",
            Box::new(|c, _| {
                c["linux"]["devices"] = json!([
                    {"path": "/dev/test1", "type": "c", "major": 10, "minor": 666, "fileMode": 432, "uid": 0, "gid": 0},
                    {"path": "/dev/test2", "type": "b", "major": 8, "minor": 666, "fileMode": 432, "uid": 0, "gid": 0},
                    {"path": "/dev/test3", "type": "p", "major": 8, "minor": 666, "fileMode": 432}
                ]);
            }),
        ),
        (
            "cat /proc/self/uid_map /proc/self/gid_map",
            Box::new(|c, _| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user"}));
                c["linux"]["uidMappings"] =
                    json!([{"containerID": 0, "hostID": 1000, "size": 3200}]);
                c["linux"]["gidMappings"] =
                    json!([{"containerID": 0, "hostID": 1000, "size": 3200}]);
            }),
        ),
    ];
    for (script, edit) in &cases {
        let mut outs = Vec::new();
        for (name, root) in runtimes() {
            let b = SuiteBundle::new(&["sh", "-c", script]).edit(edit);
            let id = unique_id("ocv-dev");
            let o = root.run(&["run", "--bundle", &b.path(), &id]);
            let _ = root.run(&["delete", "-f", &id]);
            assert!(o.status.success(), "{name}: {script}: {}", stderr(&o));
            outs.push(stdout(&o));
        }
        assert_eq!(outs[0], outs[1], "runc and nk-runtime differ for {script}");
        let want = if script.contains("uid_map") {
            vec!["0 1000 3200"]
        } else {
            vec![
                "crw-rw---- 0 0 10, 666",
                "brw-rw---- 0 0 8, 666",
                "prw-rw----",
            ]
        };
        let seen = outs[1].split_whitespace().collect::<Vec<_>>().join(" ");
        for w in want {
            assert!(seen.contains(w), "{w:?} missing from {seen}");
        }
    }
}

/// The namespace files compared by validation/linux_ns_itype.
const NS_FILES: [&str; 7] = ["mnt", "pid", "net", "ipc", "uts", "cgroup", "user"];

/// A suite bundle with every namespace and the hostname removed (as
/// validation/linux_ns_itype does), running `args`.
fn no_namespaces_bundle(args: &[&str]) -> SuiteBundle {
    SuiteBundle::new(args).edit(|c, _| {
        c.as_object_mut().unwrap().remove("hostname");
        c["linux"]["namespaces"] = json!([]);
    })
}

/// Mount points at or under `dir` in this process's mount table.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(|p| p.replace("\\040", " ")))
        .filter(|p| Path::new(p).starts_with(&dir))
        .collect()
}

/// Detaches whatever is still mounted under a directory on drop, so a
/// failing test does not leave mounts on the host (or under a temp dir
/// that is about to be removed).
struct UnmountUnder(PathBuf);

impl Drop for UnmountUnder {
    fn drop(&mut self) {
        for _ in 0..50 {
            let Some(p) = mounts_under(&self.0).pop() else {
                return;
            };
            let _ = Command::new("umount").arg("-l").arg(&p).status();
        }
    }
}

/// The runtime's namespaces against its container's, as `same`/`differs`
/// per namespace file, from a shell that runs create/start/state itself (so
/// "the runtime's namespace" is the shell's). With `private_mounts` the
/// shell runs in a new mount namespace: runc without a mount namespace makes
/// the runtime's / rslave and leaves its mounts behind, which must not
/// happen to the test host.
fn inherited_namespaces(root: &Root, b: &SuiteBundle, private_mounts: bool) -> String {
    const SCRIPT: &str = r#"
        set -e
        R="$1"; ROOT="$2"; B="$3"; ID="$4"
        "$R" --root "$ROOT" create --bundle "$B" "$ID"
        "$R" --root "$ROOT" start "$ID"
        pid=$("$R" --root "$ROOT" state "$ID" | sed -n 's/^ *"pid": *\([0-9]*\).*/\1/p')
        for t in mnt pid net ipc uts cgroup user; do
            if [ "$(readlink /proc/$$/ns/$t)" = "$(readlink /proc/$pid/ns/$t)" ]; then
                echo "$t same"
            else
                echo "$t differs"
            fi
        done
        "$R" --root "$ROOT" delete -f "$ID"
    "#;
    let id = unique_id("ocv-itype");
    let mut c = if private_mounts {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c"]);
        c
    } else {
        let mut c = Command::new("sh");
        c.arg("-c");
        c
    };
    c.args([SCRIPT, "sh"])
        .arg(&root.bin)
        .arg(root.dir.path())
        .arg(b.path())
        .arg(&id);
    let o = run_to_files(&mut c);
    assert!(
        o.status.success(),
        "{}: {}\n{}",
        root.bin.display(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// validation/linux_ns_itype: a namespace type missing from
/// linux.namespaces is the runtime's own, for all seven, mount included.
/// runc agrees on the namespaces (it runs in a private mount namespace
/// here: it would make the host's / rslave and leak its mounts).
#[test]
fn namespaces_left_out_are_inherited() {
    let want: String = NS_FILES.iter().map(|t| format!("{t} same\n")).collect();
    for (name, root) in runtimes() {
        let b = no_namespaces_bundle(&["sleep", "30"]);
        let _guard = UnmountUnder(b.dir.path().to_path_buf());
        let got = inherited_namespaces(&root, &b, name == "runc");
        assert_eq!(got, want, "{name}: namespaces not inherited");
        if name == "nk" {
            assert_eq!(
                mounts_under(b.dir.path()),
                Vec::<String>::new(),
                "nk: delete left the container's mounts on the host"
            );
        }
    }
}

/// Without a mount namespace nk-runtime mounts under the rootfs in the host's
/// mount namespace, chroots there, and removes exactly those mounts at
/// delete: a mount under the rootfs from before create stays. An exec
/// process enters the same root and the same namespaces.
#[test]
fn no_mount_namespace_lifecycle_exec_and_cleanup() {
    let root = Root::new();
    let b = no_namespaces_bundle(&["sleep", "30"]).edit(|c, _| {
        c["root"]["readonly"] = json!(true);
    });
    let guard = UnmountUnder(b.dir.path().to_path_buf());
    let marker = unique_id("marker");
    std::fs::write(b.file("marker"), &marker).unwrap();
    // The user's own mount under the rootfs, made before create.
    let mine = b.file("mnt/mine");
    std::fs::create_dir_all(&mine).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "nk-itype-mine"])
        .arg(&mine)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs on {}", mine.display());
    let before = mounts_under(b.dir.path());

    let id = unique_id("ocv-nomnt");
    assert_eq!(
        create(&root, &b, &id),
        0,
        "create without a mount namespace"
    );
    assert_eq!(status_of(&root, &id), "created");
    let during = mounts_under(b.dir.path());
    assert!(
        during.contains(&b.file("proc").display().to_string()),
        "the container's /proc is not mounted in the host's namespace: {during:?}"
    );
    assert_eq!(code(&root, &["start", &id]), 0, "start");
    assert!(wait_for(&root, &id, "running"));
    let pid = pid_of(&root, &id);
    for t in NS_FILES {
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/ns/{t}")).unwrap(),
            std::fs::read_link(format!("/proc/self/ns/{t}")).unwrap(),
            "the container's {t} namespace is not the runtime's"
        );
    }
    // The init's root is the rootfs (chroot), and it is read-only.
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/root")).unwrap(),
        std::fs::canonicalize(b.dir.path()).unwrap()
    );
    let out = root.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /marker; echo; readlink /proc/self/ns/mnt; touch /rw 2>/dev/null && echo writable || echo read-only",
    ]);
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    assert_eq!(
        out,
        format!("{marker}\n{}\nread-only\n", host_mnt.display()),
        "exec: not in the container's root, or not in the host's mount namespace"
    );

    assert_eq!(code(&root, &["delete", "-f", &id]), 0, "delete");
    assert_eq!(
        mounts_under(b.dir.path()),
        before,
        "delete must remove the container's mounts and only those"
    );
    drop(guard);
    assert!(mounts_under(b.dir.path()).is_empty());
}

/// Masked and read-only paths need a private mount namespace (runc's
/// "unable to restrict sys entries without a private MNT namespace"): both
/// refuse them, and nk-runtime names the field.
#[test]
fn masked_paths_without_a_mount_namespace_are_refused() {
    for field in ["maskedPaths", "readonlyPaths"] {
        for (name, root) in runtimes() {
            let b = no_namespaces_bundle(&["true"]).edit(|c, _| {
                c["linux"][field] = json!(["/proc/kcore"]);
            });
            let _guard = UnmountUnder(b.dir.path().to_path_buf());
            let id = unique_id("ocv-nomnt-mask");
            let o = root.run(&["create", "--bundle", &b.path(), &id]);
            assert!(
                !o.status.success(),
                "{name}: {field} without a mount namespace accepted"
            );
            assert_no_container(name, &root, &id, field);
            assert!(
                mounts_under(b.dir.path()).is_empty(),
                "{name}: {field}: mounts left"
            );
            if name == "nk" {
                let e = stderr(&o);
                assert!(
                    e.contains(&format!("linux.{field}")) && e.contains("mount namespace"),
                    "nk: the error does not name the field: {e}"
                );
            }
        }
    }
}

/// Two containers without a mount namespace on one rootfs: the second's
/// mounts are stacked on the first's. Deleting the first must leave the
/// second's alone (delete detaches only the mounts its own create added).
/// Without /sys: the second's bind of the rootfs copies the first's sysfs
/// mount, and the kernel refuses sysfs on top of itself (EBUSY, as for runc).
#[test]
fn no_mount_namespace_delete_keeps_another_containers_mounts() {
    let root = Root::new();
    let b = no_namespaces_bundle(&["sleep", "30"]).edit(|c, _| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["destination"] != "/sys");
    });
    let _guard = UnmountUnder(b.dir.path().to_path_buf());
    let (first, second) = (unique_id("ocv-nomnt-a"), unique_id("ocv-nomnt-b"));
    assert_eq!(create(&root, &b, &first), 0, "create {first}");
    let after_first = mounts_under(b.dir.path());
    assert_eq!(create(&root, &b, &second), 0, "create {second}");
    let after_second = mounts_under(b.dir.path());
    assert!(after_second.len() > after_first.len());
    assert_eq!(code(&root, &["delete", "-f", &first]), 0, "delete {first}");
    // The second's mounts are on top and stay: its /proc still works.
    assert_eq!(mounts_under(b.dir.path()), after_second);
    assert_eq!(code(&root, &["start", &second]), 0, "start {second}");
    let out = root.ok(&[
        "exec",
        &second,
        "sh",
        "-c",
        "test -r /proc/self/status && echo proc",
    ]);
    assert_eq!(out, "proc\n");
    assert_eq!(
        code(&root, &["delete", "-f", &second]),
        0,
        "delete {second}"
    );
    // What is left is the first one's, which was covered at its delete.
    assert_eq!(mounts_under(b.dir.path()), after_first);
}
