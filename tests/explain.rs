//! `-E/--explain` and `--trace` on real containers.
//!
//! Each scenario runs real commands with narration on, parses the numbered
//! steps back out of the text, and maps each step's sentence to its catalog
//! key. A scenario asserts the keys it must produce (so a step emitted under
//! the wrong key, or never, fails), and `every_catalog_step_is_narrated`
//! asserts that together the scenarios cover every entry of the catalog,
//! apart from steps this host cannot exercise, each with its reason checked.

use nk_tests::*;
use sandbox::explain::catalog;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// One narrated step as printed: its number, role, key and the raw lines.
#[derive(Debug, Clone)]
struct Step {
    role: String,
    key: String,
    detail: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Part {
    What,
    Detail,
    Why,
}

/// Parse -E output back into steps. An entry starts with `NNN. [role] `;
/// its sentence runs until a `> ` detail line or the `why:` line. A step
/// repeated by the same role adds `> detail` lines to it; repeated by another
/// role it prints `NNN. [role] > detail` and takes the previous key.
fn parse_steps(text: &str) -> Vec<Step> {
    let by_what: BTreeMap<String, &str> =
        catalog::ALL.iter().map(|s| (norm(s.what), s.key)).collect();
    // (role, what, detail, part being read)
    type Cur = (String, String, String, Part);
    let mut out: Vec<Step> = Vec::new();
    let mut cur: Option<Cur> = None;
    let flush = |cur: &mut Option<Cur>, out: &mut Vec<Step>| {
        if let Some((role, what, detail, _)) = cur.take() {
            let key = if what.is_empty() {
                out.last().map(|s| s.key.clone()).unwrap_or_default()
            } else {
                by_what
                    .get(&norm(&what))
                    .map(|k| k.to_string())
                    .unwrap_or_else(|| format!("UNKNOWN: {what}"))
            };
            out.push(Step {
                role,
                key,
                detail: norm(&detail),
            });
        }
    };
    for line in text.lines() {
        let t = line.trim_start();
        if let Some((num, rest)) = t.split_once(". [") {
            if !num.is_empty() && num.chars().all(|c| c.is_ascii_digit()) {
                if let Some((role, body)) = rest.split_once("] ") {
                    flush(&mut cur, &mut out);
                    cur = Some(match body.strip_prefix("> ") {
                        Some(d) => (role.into(), String::new(), d.into(), Part::Detail),
                        None => (role.into(), body.into(), String::new(), Part::What),
                    });
                    continue;
                }
            }
        }
        if t.starts_with("== ") || t.is_empty() {
            flush(&mut cur, &mut out);
            continue;
        }
        let Some(c) = cur.as_mut() else { continue };
        if let Some(d) = t.strip_prefix("> ") {
            // One more value of the same step (one more mount, one more
            // device rule).
            if !c.2.is_empty() {
                c.2.push_str(" | ");
            }
            c.3 = Part::Detail;
            c.2.push_str(d);
        } else if t.starts_with("why:") {
            c.3 = Part::Why;
        } else if c.3 == Part::What {
            c.1.push(' ');
            c.1.push_str(t);
        } else if c.3 == Part::Detail {
            c.2.push(' ');
            c.2.push_str(t);
        }
    }
    flush(&mut cur, &mut out);
    out
}

fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn keys(steps: &[Step]) -> BTreeSet<String> {
    steps.iter().map(|s| s.key.clone()).collect()
}

/// Assert the narration is well formed and contains `want`; return the keys.
fn check(label: &str, text: &str, want: &[&str]) -> BTreeSet<String> {
    // The narration fits 80 columns; the runtime's own one-off messages
    // (VM mode building its image: "nk-runtime: ...") are not narration.
    for line in text.lines().filter(|l| !l.starts_with("nk-runtime: ")) {
        assert!(
            line.chars().count() <= 80,
            "{label}: line wider than 80 columns: {line:?}"
        );
    }
    let steps = parse_steps(text);
    let unknown: Vec<_> = steps
        .iter()
        .filter(|s| s.key.starts_with("UNKNOWN") || s.key.is_empty())
        .collect();
    assert!(
        unknown.is_empty(),
        "{label}: text that is no catalog entry: {unknown:?}\n{text}"
    );
    for s in &steps {
        assert!(
            ["host", "parent", "child"].contains(&s.role.as_str()),
            "{label}: role {:?}",
            s.role
        );
    }
    let got = keys(&steps);
    let missing: Vec<_> = want.iter().filter(|k| !got.contains(**k)).collect();
    assert!(
        missing.is_empty(),
        "{label}: steps not narrated: {missing:?}\ngot: {got:?}\n{text}"
    );
    got
}

fn role_of(text: &str, key: &str) -> String {
    parse_steps(text)
        .into_iter()
        .find(|s| s.key == key)
        .map(|s| s.role)
        .unwrap_or_default()
}

fn detail_of(text: &str, key: &str) -> String {
    parse_steps(text)
        .into_iter()
        .filter(|s| s.key == key)
        .map(|s| s.detail)
        .collect::<Vec<_>>()
        .join(" | ")
}

fn run_e(root: &Root, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["-E"];
    full.extend_from_slice(args);
    let o = root.run(&full);
    (o.status.code().unwrap_or(-1), stdout(&o), stderr(&o))
}

fn hook() -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", "cat >/dev/null"]})
}

/// Every feature a single container can use on this host, at once.
fn full_bundle() -> Bundle {
    let mut b = Bundle::new(&[
        "/bin/sh",
        "-c",
        "mkdir /tmp/x 2>/dev/null && exit 9; exit 0",
    ]);
    b.edit(|c| {
        c["hooks"] = json!({
            "prestart": [hook()],
            "createRuntime": [hook()],
            "createContainer": [hook()],
            "startContainer": [hook()],
            "poststart": [hook()],
            "poststop": [hook()],
        });
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.push(json!({"type": "cgroup"}));
        ns.push(json!({"type": "time"}));
        c["linux"]["timeOffsets"] = json!({"monotonic": {"secs": 86400, "nanosecs": 0}});
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        c["linux"]["personality"] = json!({"domain": "LINUX32"});
        c["linux"]["resources"]["memory"] = json!({"limit": 268435456});
        c["linux"]["resources"]["pids"] = json!({"limit": 64});
        c["linux"]["devices"] =
            json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}]);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
        c["process"]["oomScoreAdj"] = json!(100);
        c["process"]["scheduler"] = json!({"policy": "SCHED_OTHER", "nice": 3});
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 4});
    });
    b
}

const CREATE_STEPS: &[&str] = &[
    "spec.load",
    "state.claim",
    "state.created",
    "cgroup.create",
    "cgroup.write",
    "cgroup.join",
    "exe.protect",
    "clone",
    "cpu.leave",
    "init.exec",
    "keyring",
    "hostname",
    "mount.propagation",
    "rootfs.bind",
    "mount",
    "devices",
    "devices.symlinks",
    "pivot_root",
    "paths.masked",
    "paths.readonly",
    "root.readonly",
    "rlimits",
    "no_new_privs",
    "fds.close",
    "user",
    "capabilities",
    "cwd",
    "barrier.wait",
];

fn scenario_full_run() -> BTreeSet<String> {
    let root = Root::new();
    let b = full_bundle();
    let id = unique_id("ex-full");
    let (code, out, err) = run_e(&root, &["run", "--bundle", &b.path(), &id]);
    assert_eq!(
        code, 0,
        "the seccomp rule must make mkdir fail: {out}\n{err}"
    );
    let mut want = CREATE_STEPS.to_vec();
    want.extend_from_slice(&[
        "hook",
        "ns.cgroup",
        "ns.time",
        "sysctl",
        "personality",
        "seccomp",
        "oom_score_adj",
        "scheduler",
        "ioprio",
        "barrier.open",
        "exec",
        "wait",
        "exit",
        "delete.cgroup",
        "delete.state",
    ]);
    let got = check("run (full)", &err, &want);
    // Each kind of hook is narrated with its name; the ones inside the
    // container come from the child, the others from the runtime.
    let hooks = detail_of(&err, "hook");
    for kind in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.contains(&format!("{kind}[0]")), "{kind}: {hooks}");
    }
    // Values from this config appear in the details.
    assert!(
        detail_of(&err, "cgroup.write").contains("memory.limit_in_bytes = 268435456"),
        "{}",
        detail_of(&err, "cgroup.write")
    );
    assert!(detail_of(&err, "devices").contains("/dev/fuse (10:229)"));
    assert!(detail_of(&err, "ns.time").contains("86400"));
    assert!(detail_of(&err, "sysctl").contains("net.ipv4.ip_forward=1"));
    assert!(detail_of(&err, "clone").contains("CLONE_NEWPID"));
    assert!(detail_of(&err, "exit").contains("exit status 0"));
    // Roles: who does what.
    assert_eq!(role_of(&err, "spec.load"), "host");
    assert_eq!(role_of(&err, "clone"), "parent");
    assert_eq!(role_of(&err, "pivot_root"), "child");
    assert_eq!(role_of(&err, "exec"), "child");
    assert_eq!(role_of(&err, "wait"), "parent");
    // Phase headings.
    for h in [
        "== spec parsing ==",
        "== mounts ==",
        "== pivot_root ==",
        "== exec ==",
    ] {
        assert!(err.contains(h), "{h}");
    }
    headings_say_why_they_repeat("run (full)", &err);
    // The tag names who acted: the parent's clone3 put the child in its
    // cgroup2 directory; the child wrote itself into the v1 tasks files.
    for s in parse_steps(&err).iter().filter(|s| s.key == "cgroup.join") {
        if s.detail.contains("tasks files") {
            assert_eq!(s.role, "child", "{s:?}");
        }
        if s.detail.contains("CLONE_INTO_CGROUP") {
            assert_eq!(s.role, "parent", "{s:?}");
        }
    }
    // The v1 device rules are one step, each rule a detail line.
    if v1_devices() {
        let rules: Vec<_> = parse_steps(&err)
            .into_iter()
            .filter(|s| s.key == "cgroup.device_rules")
            .collect();
        assert_eq!(rules.len(), 1, "one step for every rule: {rules:?}");
        assert!(
            rules[0]
                .detail
                .contains("devices.allow: c 1:3 rwm (/dev/null)"),
            "{rules:?}"
        );
        assert!(
            rules[0]
                .detail
                .contains("devices.allow: c 10:229 rwm (/dev/fuse)"),
            "{rules:?}"
        );
    }
    got
}

/// Is there a v1 devices hierarchy (where device rules are lines in
/// devices.allow, rather than an eBPF program)?
fn v1_devices() -> bool {
    Path::new("/sys/fs/cgroup/devices/devices.list").exists()
}

/// Each phase gets one heading; one the narration comes back to is marked
/// ", again" and followed by why.
fn headings_say_why_they_repeat(label: &str, text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    let mut first = BTreeSet::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(h) = l.strip_prefix("== ").and_then(|h| h.strip_suffix(" ==")) else {
            continue;
        };
        match h.strip_suffix(", again") {
            None => assert!(first.insert(h), "{label}: heading {h:?} twice without why"),
            Some(title) => {
                assert!(
                    first.contains(title),
                    "{label}: {h:?} before its first heading"
                );
                let phase = catalog::ALL
                    .iter()
                    .map(|s| s.phase)
                    .find(|p| p.title() == title)
                    .unwrap_or_else(|| panic!("{label}: no phase titled {title:?}"));
                let why: Vec<&str> = lines[i + 1..]
                    .iter()
                    .take_while(|l| {
                        l.starts_with("   ") && !l.trim_start().starts_with(char::is_numeric)
                    })
                    .map(|l| l.trim())
                    .collect();
                assert_eq!(
                    norm(&why.join(" ")),
                    norm(phase.again()),
                    "{label}: {h:?} must say why"
                );
            }
        }
    }
}

fn scenario_split_commands() -> BTreeSet<String> {
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("ex-split");
    let pidfile = b.dir.path().join("init.pid");
    let (code, _, err) = run_e(
        &root,
        &[
            "create",
            "--bundle",
            &b.path(),
            "--pid-file",
            pidfile.to_str().unwrap(),
            &id,
        ],
    );
    assert_eq!(code, 0, "{err}");
    // A bundle without resources may write no cgroup file: on v1 the
    // kernel fills a new cpuset cgroup from /nano-sandbox (clone_children)
    // and the device rules are a step of their own. The full run's limits
    // are written (and narrated) in scenario_full_run.
    let want: Vec<&str> = CREATE_STEPS
        .iter()
        .copied()
        .filter(|k| *k != "cgroup.write")
        .collect();
    let mut got = check("create", &err, &want);
    headings_say_why_they_repeat("create", &err);
    got.extend(check("create", &err, &["pid_file"]));
    assert!(
        !got.contains("exec"),
        "create must not claim the program ran"
    );
    let (code, _, err) = run_e(&root, &["start", &id]);
    assert_eq!(code, 0, "{err}");
    got.extend(check("start", &err, &["barrier.open", "exec"]));
    // The init's steps after the barrier reached `start` through the fifo.
    assert_eq!(role_of(&err, "exec"), "child");
    assert_eq!(role_of(&err, "barrier.open"), "host");
    assert!(detail_of(&err, "exec").contains("sleep"));
    let (code, _, err) = run_e(&root, &["kill", &id, "KILL"]);
    assert_eq!(code, 0, "{err}");
    got.extend(check("kill", &err, &["kill"]));
    assert!(detail_of(&err, "kill").contains("SIGKILL"));
    root.wait_status(&id, "stopped");
    let (code, _, err) = run_e(&root, &["delete", &id]);
    assert_eq!(code, 0, "{err}");
    got.extend(check("delete", &err, &["delete.cgroup", "delete.state"]));

    // A created container that is deleted: its parked init is killed first.
    let id = unique_id("ex-split2");
    root.ok(&["create", "--bundle", &b.path(), &id]);
    let (code, _, err) = run_e(&root, &["delete", "--force", &id]);
    assert_eq!(code, 0, "{err}");
    got.extend(check(
        "delete --force",
        &err,
        &["delete.kill", "delete.state"],
    ));
    got
}

fn scenario_userns() -> BTreeSet<String> {
    let root = Root::new();
    let src = TempDir::new("nk-ex-idmap");
    std::fs::write(src.path().join("file"), b"x").unwrap();
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        // An identity map: root in the container is root on the host, but
        // its capabilities are those of its own user namespace.
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/idmapped", "type": "bind",
            "source": src.path(), "options": ["rbind", "idmap"]
        }));
    });
    let a = unique_id("ex-user");
    let (code, _, err) = run_e(&root, &["run", "-d", "--bundle", &b.path(), &a]);
    assert_eq!(code, 0, "{err}");
    let mut got = check(
        "userns",
        &err,
        &["userns.map", "mount.idmap", "cgroup.join", "clone"],
    );
    assert!(detail_of(&err, "clone").contains("CLONE_NEWUSER"));
    assert_eq!(role_of(&err, "userns.map"), "parent");
    assert!(detail_of(&err, "userns.map").contains("0 0 65536"));

    // A second container joins the first one's user namespace by path.
    let pid = root.state(&a)["pid"].as_i64().unwrap();
    let mut j = Bundle::new(&["/bin/sh", "-c", "cat /proc/self/uid_map"]);
    j.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user", "path": format!("/proc/{pid}/ns/user")}));
    });
    let (code, out, err) = run_e(
        &root,
        &["run", "--bundle", &j.path(), &unique_id("ex-userj")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("65536"), "{out}");
    got.extend(check("userns join", &err, &["userns.join"]));
    assert_eq!(role_of(&err, "userns.join"), "parent");
    root.ok(&["delete", "--force", &a]);
    got
}

fn scenario_no_pivot_and_console() -> BTreeSet<String> {
    let root = Root::new();
    let mut b = Bundle::new(&["/bin/sh", "-c", "tty"]);
    b.edit(|c| c["process"]["terminal"] = json!(true));
    let (code, out, err) = run_e(
        &root,
        &[
            "run",
            "--no-pivot",
            "--bundle",
            &b.path(),
            &unique_id("ex-nopivot"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/dev/pts/"), "the program has a tty: {out}");
    let got = check("--no-pivot + terminal", &err, &["no_pivot", "console"]);
    assert!(!got.contains("pivot_root"));
    got
}

/// No namespaces at all: the rootfs is mounted in the runtime's mount
/// namespace and entered with chroot (by the init and by exec), and delete
/// detaches those mounts. On a copy of the rootfs, which the other tests'
/// containers do not use.
fn scenario_no_mount_namespace() -> BTreeSet<String> {
    // Dropped after `root`, whose drop deletes a container left by a failure.
    let copy = TempDir::new("ex-nomnt-rootfs");
    let root = Root::new();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", rootfs().display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(st.success(), "copying the test rootfs failed");
    let mut b = Bundle::new(&["sleep", "100"]);
    b.edit(|c| {
        c["root"]["path"] = json!(copy.path());
        c["linux"]["namespaces"] = json!([]);
        c["linux"]["maskedPaths"] = json!([]);
        c["linux"]["readonlyPaths"] = json!([]);
        c.as_object_mut().unwrap().remove("hostname");
    });
    let id = unique_id("ex-nomnt");
    let (code, _, err) = run_e(&root, &["run", "-d", "--bundle", &b.path(), &id]);
    assert_eq!(code, 0, "{err}");
    let mut got = check("no mount namespace: run", &err, &["rootfs.bind", "chroot"]);
    assert!(!got.contains("pivot_root") && !got.contains("mount.propagation"));
    let (code, out, err) = run_e(&root, &["exec", &id, "cat", "/etc/hostname"]);
    let host = std::fs::read_to_string(copy.path().join("etc/hostname")).unwrap_or_default();
    assert_eq!((code, out), (0, host), "{err}");
    got.extend(check("no mount namespace: exec", &err, &["chroot"]));
    let (code, _, err) = run_e(&root, &["delete", "-f", &id]);
    assert_eq!(code, 0, "{err}");
    got.extend(check(
        "no mount namespace: delete",
        &err,
        &["delete.host_mounts"],
    ));
    let rootfs_dir = std::fs::canonicalize(copy.path()).unwrap();
    let d = rootfs_dir.display();
    assert!(
        !host_mounts_contain(&format!(" {d} ")) && !host_mounts_contain(&format!(" {d}/")),
        "delete left mounts under {}",
        rootfs_dir.display()
    );
    got
}

/// A detached container to join or exec into; returns its id and init pid.
fn sleeper(root: &Root) -> (String, i64, Bundle) {
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("ex-sleeper");
    root.ok(&["run", "-d", "--bundle", &b.path(), &id]);
    let pid = root.state(&id)["pid"].as_i64().unwrap();
    (id, pid, b)
}

fn scenario_join_and_exec() -> BTreeSet<String> {
    let root = Root::new();
    let (id, pid, _b) = sleeper(&root);
    // A second container in the first one's network namespace.
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = json!(format!("/proc/{pid}/ns/net"));
            }
        }
    });
    let (code, _, err) = run_e(
        &root,
        &["run", "--bundle", &b.path(), &unique_id("ex-join")],
    );
    assert_eq!(code, 0, "{err}");
    let mut got = check("join", &err, &["ns.join"]);
    assert!(detail_of(&err, "ns.join").contains(&format!("/proc/{pid}/ns/net")));

    // A third one in its pid namespace: the init moves in after pivot_root.
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "pid" {
                ns["path"] = json!(format!("/proc/{pid}/ns/pid"));
            }
        }
    });
    let (code, _, err) = run_e(
        &root,
        &["run", "--bundle", &b.path(), &unique_id("ex-joinpid")],
    );
    assert_eq!(code, 0, "{err}");
    got.extend(check("join pid", &err, &["pid.handover", "pivot_root"]));
    assert_eq!(role_of(&err, "pid.handover"), "child");

    // exec into the sleeper.
    let (code, out, err) = run_e(&root, &["exec", &id, "hostname"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.is_empty());
    got.extend(check(
        "exec",
        &err,
        &[
            "exe.protect",
            "clone.join",
            "init.exec",
            "exec.join",
            "ns.join",
            "cgroup.join",
            "capabilities",
            "user",
            "exec",
            "wait",
            "exit",
        ],
    ));
    // Narrated by the runtime before it clones the intermediate that joins.
    assert_eq!(role_of(&err, "exec.join"), "host");

    // exec --process with execCPUAffinity.
    let cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(root.dir.path().join(&id).join("config.json")).unwrap(),
    )
    .unwrap();
    let mut p = cfg["process"].clone();
    p["args"] = json!(["true"]);
    p["execCPUAffinity"] = json!({"initial": "0"});
    let pf = root.dir.path().join("process.json");
    std::fs::write(&pf, p.to_string()).unwrap();
    let (code, _, err) = run_e(&root, &["exec", "--process", pf.to_str().unwrap(), &id]);
    assert_eq!(code, 0, "{err}");
    got.extend(check("exec --process", &err, &["cpu_affinity"]));
    got
}

/// Start a command in the background with stderr to a file.
struct Bg {
    child: std::process::Child,
    err: std::path::PathBuf,
    _dir: TempDir,
}

impl Bg {
    fn spawn(root: &Root, args: &[&str]) -> Bg {
        let dir = TempDir::new("nk-bg");
        let err = dir.path().join("err");
        let child = root
            .cmd()
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Bg {
            child,
            err,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn wait_for(&self, text: &str) {
        let t = Instant::now();
        while !self.stderr().contains(text) {
            assert!(t.elapsed() < DEADLINE, "no {text:?} in {}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait(mut self) -> (i32, String) {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.code().unwrap_or(-1), self.stderr());
            }
            if t.elapsed() > DEADLINE {
                let _ = self.child.kill();
                panic!("command did not finish: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn scenario_signal_forward() -> BTreeSet<String> {
    let root = Root::new();
    let b = Bundle::new(&[
        "/bin/sh",
        "-c",
        "trap 'exit 7' TERM; echo trap-$((6*7))-set >&2; while :; do sleep 0.1; done",
    ]);
    let bg = Bg::spawn(
        &root,
        &["-E", "run", "--bundle", &b.path(), &unique_id("ex-sig")],
    );
    bg.wait_for("== signals and exit ==");
    // The shell must have set its trap: it says so on the shared stderr,
    // in words the narration of its command line does not contain.
    bg.wait_for("trap-42-set");
    // SAFETY: kill(2) to the runtime we started.
    unsafe { libc::kill(bg.child.id() as i32, libc::SIGTERM) };
    let (code, err) = bg.wait();
    assert_eq!(code, 7, "the container's trap ran: {err}");
    let got = check("signal forward", &err, &["signal.forward", "exit"]);
    assert!(detail_of(&err, "signal.forward").contains("SIGTERM"));
    got
}

/// checkpoint and restore narrate their CRIU requests whether or not CRIU
/// can work on this kernel (where it cannot, both fail right after, and
/// their error line, which quotes CRIU's log, is not narration).
fn scenario_checkpoint() -> BTreeSet<String> {
    let narration = |err: &str| -> String {
        err.lines()
            .filter(|l| !l.starts_with("time="))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let root = Root::new();
    let b = Bundle::new(&[
        "sh",
        "-c",
        "exec </dev/null >/dev/null 2>&1; while :; do sleep 1; done",
    ]);
    let id = unique_id("ex-ckpt");
    root.ok(&["run", "-d", "--bundle", &b.path(), &id]);
    let img = TempDir::new("ex-ckpt-img");
    let dir = img.path().to_str().unwrap();
    let (_, _, err) = run_e(&root, &["checkpoint", "--image-path", dir, &id]);
    let mut got = check("checkpoint", &narration(&err), &["criu.dump"]);
    let _ = root.run(&["delete", "-f", &id]);
    let (_, _, err) = run_e(
        &root,
        &[
            "restore",
            "-d",
            "--bundle",
            &b.path(),
            "--image-path",
            dir,
            &unique_id("ex-rst"),
        ],
    );
    got.extend(check("restore", &narration(&err), &["criu.restore"]));
    got
}

/// Pure cgroup v2, in a private mount namespace where the v1 hierarchies are
/// unmounted and cgroup2 is mounted on /sys/fs/cgroup: the device rules
/// become an eBPF program, and the child is born in its cgroup.
fn scenario_cgroup_v2() -> BTreeSet<String> {
    let root = Root::new();
    let b = Bundle::new(&["true"]);
    let id = unique_id("ex-v2");
    let out = root.dir.path().join("v2.err");
    let script = format!(
        "set -e
         for m in $(awk '{{ for (i = 7; i <= NF; i++) if ($i == \"-\") {{ if ($(i+1) ~ /^cgroup2?$/) print $5; break }} }}' /proc/self/mountinfo | sort -r); do
           umount -l \"$m\"
         done
         mount -t cgroup2 none /sys/fs/cgroup
         {rt} --root {state} -E run --bundle {bundle} {id} 2> {out}",
        rt = runtime().display(),
        state = root.dir.path().join("state").display(),
        bundle = b.path(),
        out = out.display(),
    );
    let st = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .status()
        .unwrap();
    let err = std::fs::read_to_string(&out).unwrap_or_default();
    // Seen from the host, the cgroup2 tree is mounted at unified/ (hybrid) or
    // at the top: remove what a failed run may have left.
    for top in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let _ = std::fs::remove_dir(Path::new(top).join("nano-sandbox").join(&id));
    }
    assert!(st.success(), "{err}");
    let got = check(
        "cgroup v2",
        &err,
        &["cgroup.devices", "cgroup.join", "clone"],
    );
    assert!(
        detail_of(&err, "clone").contains("CLONE_INTO_CGROUP"),
        "{err}"
    );
    assert!(detail_of(&err, "cgroup.join").contains("CLONE_INTO_CGROUP"));
    assert!(detail_of(&err, "cgroup.devices").contains("eBPF"));
    got
}

/// VM mode's prerequisites, as `nk-runtime check` finds them: None when
/// everything is there, else why not.
fn vm_mode_missing() -> Option<String> {
    let o = std::process::Command::new(runtime())
        .args(["check", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let missing: Vec<String> = ["qemu", "guest kernel", "guest agent"]
        .iter()
        .filter_map(|name| {
            let c = v["checks"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == *name)?;
            (c["status"] != "ok").then(|| format!("{name}: {}", c["detail"]))
        })
        .collect();
    (!missing.is_empty()).then(|| missing.join("; "))
}

/// A container in a QEMU guest (TCG on a host without usable KVM).
fn scenario_vm() -> BTreeSet<String> {
    if vm_mode_missing().is_some() {
        return BTreeSet::new();
    }
    let root = Root::new();
    let b = Bundle::new(&["true"]);
    let pidfile = b.dir.path().join("vm.pid");
    let id = unique_id("ex-vm");
    let (code, _, err) = run_e(
        &root,
        &[
            "create",
            "--mode",
            "vm",
            "--bundle",
            &b.path(),
            "--pid-file",
            pidfile.to_str().unwrap(),
            &id,
        ],
    );
    // A container that joins the first one's IPC namespace runs in its VM.
    let member = (code == 0).then(|| {
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let ipc = format!("/proc/{}/ns/ipc", pid.trim());
        let mut b2 = Bundle::new(&["true"]);
        b2.edit(|c| {
            for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
                if n["type"] == "ipc" {
                    n["path"] = json!(ipc);
                }
            }
        });
        let id2 = unique_id("ex-vm-pod");
        let r = run_e(
            &root,
            &["create", "--mode", "vm", "--bundle", &b2.path(), &id2],
        );
        let _ = root.run(&["delete", "--force", &id2]);
        r
    });
    let _ = root.run(&["delete", "--force", &id]);
    assert_eq!(code, 0, "{err}");
    let (code2, _, err2) = member.unwrap();
    assert_eq!(code2, 0, "{err2}");
    let mut got = check(
        "VM pod member",
        &err2,
        &[
            "spec.load",
            "vm.pod",
            "state.claim",
            "vm.monitor",
            "vm.net",
            "state.created",
        ],
    );
    assert!(detail_of(&err2, "vm.pod").contains(&id), "{err2}");
    assert!(detail_of(&err2, "vm.monitor").contains(&id), "{err2}");
    got.extend(check(
        "VM mode",
        &err,
        &[
            "spec.load",
            "vm.image",
            "vm.accel",
            "vm.template",
            "state.claim",
            "cgroup.create",
            "vm.monitor",
            "vm.boot",
            "vm.net",
            "state.created",
            "pid_file",
        ],
    ));
    assert!(detail_of(&err, "vm.monitor").contains("qemu pid"), "{err}");
    assert!(detail_of(&err, "vm.net").contains("loopback only"), "{err}");
    // Started from the template (built now if there was none), or cold
    // when no template could be made: either way it says which.
    let boot = detail_of(&err, "vm.boot");
    assert!(
        boot.starts_with("restored from the template") || boot.starts_with("cold boot: "),
        "{err}"
    );
    got
}

/// VM mode's checkpoint and restore: CRIU in the guest, from the kit.
fn scenario_vm_checkpoint() -> BTreeSet<String> {
    if vm_mode_missing().is_some() || vm_criu_missing().is_some() {
        return BTreeSet::new();
    }
    let root = Root::new();
    let b = Bundle::new(&[
        "sh",
        "-c",
        "exec </dev/null >/dev/null 2>&1; while :; do sleep 1; done",
    ]);
    let (id, id2) = (unique_id("ex-vmck"), unique_id("ex-vmrs"));
    let img = TempDir::new("nk-ex-vmimg");
    let dir = img.path().to_str().unwrap();
    let o = root.run(&["run", "-d", "--mode=vm", "--bundle", &b.path(), &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (code, _, err) = run_e(&root, &["checkpoint", "--image-path", dir, &id]);
    let _ = root.run(&["delete", "-f", &id]);
    assert_eq!(code, 0, "{err}");
    let mut got = check("VM checkpoint", &err, &["vm.criu_kit", "vm.checkpoint"]);
    let (code, _, err) = run_e(
        &root,
        &[
            "restore",
            "-d",
            "--bundle",
            &b.path(),
            "--image-path",
            dir,
            &id2,
        ],
    );
    let _ = root.run(&["delete", "-f", &id2]);
    assert_eq!(code, 0, "{err}");
    got.extend(check(
        "VM restore",
        &err,
        &["vm.criu_kit", "vm.monitor", "vm.restore", "state.created"],
    ));
    got
}

/// Why VM mode cannot checkpoint here (`check`'s row), if it cannot.
fn vm_criu_missing() -> Option<String> {
    let o = std::process::Command::new(runtime())
        .args(["check", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = v["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "criu in the guest")?;
    (c["status"] != "ok").then(|| c["detail"].to_string())
}

/// Steps this host cannot exercise, each with the check that proves why.
fn host_exceptions() -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    if !numa_here() {
        m.insert(
            "mempolicy",
            "no NUMA in this kernel (/sys/devices/system/node/node0): set_mempolicy fails,              which tests/memory_policy.rs checks"
                .to_string(),
        );
    }
    if !v1_devices() {
        m.insert(
            "cgroup.device_rules",
            "no cgroup v1 devices hierarchy (/sys/fs/cgroup/devices): device rules are an \
             eBPF program here (cgroup.devices)"
                .to_string(),
        );
    }
    if let Err(why) = make_netdev_probe() {
        m.insert("netdevices", format!("no virtual device to move: {why}"));
    }
    if let Some(why) = vm_mode_missing() {
        for k in [
            "vm.image",
            "vm.accel",
            "vm.template",
            "vm.monitor",
            "vm.boot",
            "vm.pod",
        ] {
            m.insert(k, format!("VM mode is not available: {why}"));
        }
    }
    if let Some(why) = vm_mode_missing().or_else(vm_criu_missing) {
        for k in ["vm.criu_kit", "vm.checkpoint", "vm.restore"] {
            m.insert(k, format!("VM-mode checkpoint is not available: {why}"));
        }
    }
    if !sandbox::linux::lsm::apparmor_enabled() && !sandbox::linux::lsm::selinux_enabled() {
        m.insert(
            "lsm.label",
            "neither AppArmor (/sys/module/apparmor/parameters/enabled) nor SELinux \
             (/sys/fs/selinux) is enabled in this kernel, and asking for a profile without \
             them is an error"
                .to_string(),
        );
    }
    m
}

/// Whether [`make_netdev`] can make a device here (veth or ifb).
fn make_netdev_probe() -> Result<(), String> {
    match (netdev_kind("veth"), netdev_kind("ifb")) {
        (Err(v), Err(i)) => Err(format!("{v}; {i}")),
        _ => Ok(()),
    }
}

fn numa_here() -> bool {
    std::path::Path::new("/sys/devices/system/node/node0").exists()
}

/// linux.memoryPolicy, where the kernel has NUMA.
fn scenario_memory_policy() -> BTreeSet<String> {
    if !numa_here() {
        return BTreeSet::new();
    }
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"}));
    let (code, _, err) = run_e(&root, &["run", "--bundle", &b.path(), &unique_id("ex-mp")]);
    assert_eq!(code, 0, "{err}");
    check("memoryPolicy", &err, &["mempolicy"])
}

/// linux.netDevices: a veth end (an ifb where the kernel has no veth)
/// moved into the container, renamed.
fn scenario_net_devices() -> BTreeSet<String> {
    let dev = format!("nke{:x}", std::process::id());
    let peer = format!("nkf{:x}", std::process::id());
    if make_netdev(&dev, &peer).is_err() {
        return BTreeSet::new();
    }
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["linux"]["netDevices"] = json!({ &dev: {"name": "eth5"} }));
    let (code, _, err) = run_e(&root, &["run", "--bundle", &b.path(), &unique_id("ex-nd")]);
    if std::path::Path::new("/sys/class/net").join(&dev).exists() {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &dev])
            .status();
    }
    assert_eq!(code, 0, "{err}");
    let got = check("netDevices", &err, &["netdevices"]);
    let detail = detail_of(&err, "netdevices");
    assert!(detail.contains(&format!("{dev} -> eth5")), "{detail}");
    got
}

fn scenario_lsm() -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    if !sandbox::linux::lsm::apparmor_enabled() {
        return got;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["process"]["apparmorProfile"] = json!("unconfined"));
    let (code, _, err) = run_e(&root, &["run", "--bundle", &b.path(), &unique_id("ex-lsm")]);
    assert_eq!(code, 0, "{err}");
    got.extend(check("apparmor", &err, &["lsm.label"]));
    got
}

#[test]
fn every_catalog_step_is_narrated() {
    require_root();
    let mut got = BTreeSet::new();
    got.extend(scenario_full_run());
    got.extend(scenario_split_commands());
    got.extend(scenario_userns());
    got.extend(scenario_no_pivot_and_console());
    got.extend(scenario_join_and_exec());
    got.extend(scenario_no_mount_namespace());
    got.extend(scenario_signal_forward());
    got.extend(scenario_checkpoint());
    got.extend(scenario_lsm());
    got.extend(scenario_net_devices());
    got.extend(scenario_memory_policy());
    got.extend(scenario_cgroup_v2());
    got.extend(scenario_vm());
    got.extend(scenario_vm_checkpoint());
    let exceptions = host_exceptions();
    let mut missing = Vec::new();
    for s in catalog::ALL {
        if got.contains(s.key) {
            assert!(
                !exceptions.contains_key(s.key),
                "{} is listed as impossible here but was narrated",
                s.key
            );
            continue;
        }
        match exceptions.get(s.key) {
            Some(why) => eprintln!("not exercised on this host: {}: {why}", s.key),
            None => missing.push(s.key),
        }
    }
    assert!(
        missing.is_empty(),
        "catalog steps no scenario narrated: {missing:?}"
    );
}

#[test]
fn nothing_is_printed_when_off() {
    let root = Root::new();
    let b = Bundle::new(&["true"]);
    let o = root.run(&["run", "--bundle", &b.path(), &unique_id("ex-off")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "no narration, no trace, no log line");
}

#[test]
fn nk_explain_env_turns_it_on() {
    let root = Root::new();
    let b = Bundle::new(&["true"]);
    let o = root
        .cmd()
        .env("NK_EXPLAIN", "1")
        .args(["run", "--bundle", &b.path(), &unique_id("ex-env")])
        .output()
        .unwrap();
    assert!(o.status.success());
    check("NK_EXPLAIN=1", &stderr(&o), &["spec.load", "exec"]);
}

/// The trace rows of a command as (phase, role) → count.
fn trace(root: &Root, args: &[&str]) -> BTreeMap<(String, String), u64> {
    let mut full = vec!["--trace=json"];
    full.extend_from_slice(args);
    let o = root.run(&full);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    let err = stderr(&o);
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON trace: {err}"));
    let v: Value = serde_json::from_str(line).unwrap();
    assert!(v["total_ms"].as_f64().unwrap() > 0.0);
    v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r["ms"].as_f64().unwrap() >= 0.0);
            (
                (
                    r["phase"].as_str().unwrap().to_string(),
                    r["role"].as_str().unwrap().to_string(),
                ),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn rows(list: &[(&str, &str, u64)]) -> BTreeMap<(String, String), u64> {
    list.iter()
        .map(|(p, r, n)| ((p.to_string(), r.to_string()), *n))
        .collect()
}

const CREATE_ROWS: &[(&str, &str, u64)] = &[
    ("spec", "host", 1),
    ("state", "host", 1),
    ("cgroups", "host", 1),
    ("clone", "parent", 1),
    ("cgroups", "parent", 1),
    // Twice: the network namespace the init unshares at its start, then
    // the rest once its request has come.
    ("namespaces", "child", 2),
    ("mounts", "child", 2),
    ("pivot_root", "child", 1),
    ("process", "child", 1),
];

#[test]
fn trace_reports_each_phase_once_per_role() {
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("tr");
    assert_eq!(
        trace(&root, &["create", "--bundle", &b.path(), &id]),
        rows(CREATE_ROWS),
        "create"
    );
    assert_eq!(
        trace(&root, &["start", &id]),
        rows(&[
            ("exec_barrier", "host", 1),
            ("exec_barrier", "child", 1),
            ("exec", "host", 1),
            ("exec", "child", 1),
        ]),
        "start"
    );
    assert_eq!(
        trace(&root, &["exec", &id, "true"]),
        rows(&[
            // The namespaces are joined by an intermediate, inside the clone.
            ("clone", "parent", 1),
            ("process", "child", 1),
            ("exec", "parent", 1),
            ("exec", "child", 1),
            ("signals", "parent", 1),
        ]),
        "exec"
    );
    root.ok(&["delete", "-f", &id]);

    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["hooks"] = json!({"prestart": [hook()], "startContainer": [hook()]}));
    let mut want = rows(CREATE_ROWS);
    want.extend(rows(&[
        ("hooks", "parent", 1),
        ("hooks", "child", 1),
        ("exec_barrier", "parent", 1),
        ("exec_barrier", "child", 1),
        ("exec", "parent", 1),
        ("exec", "child", 1),
        ("signals", "parent", 1),
        ("delete", "parent", 1),
    ]));
    assert_eq!(
        trace(&root, &["run", "--bundle", &b.path(), &unique_id("tr-run")]),
        want,
        "run"
    );
}

#[test]
fn trace_table_fits_80_columns() {
    let root = Root::new();
    let b = Bundle::new(&["true"]);
    let o = root.run(&["--trace", "run", "--bundle", &b.path(), &unique_id("tr-t")]);
    assert!(o.status.success());
    let err = stderr(&o);
    assert!(err.contains("phase "), "{err}");
    assert!(err.contains("pivot_root"), "{err}");
    assert!(err.contains("this command, wall clock"), "{err}");
    for l in err.lines() {
        assert!(l.len() <= 80, "{l}");
    }
}

#[test]
fn explain_texts_match_catalog_even_for_parse_helpers() {
    // The parser used above must find every catalog sentence in a rendering
    // of the whole catalog: otherwise a passing test would prove nothing.
    let mut n = sandbox::explain::render::Narration::default();
    let mut text = String::new();
    for s in catalog::ALL {
        text.push_str(&n.render(&sandbox::explain::Event::Step {
            key: s.key.into(),
            role: sandbox::logging::Role::Child,
            detail: "a detail".into(),
            at_ns: 0,
        }));
    }
    let got = keys(&parse_steps(&text));
    let all: BTreeSet<String> = catalog::ALL.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(got, all);
}

/// Phase events by (phase, role), with how many.
type PhaseCounts = BTreeMap<(String, String), u64>;
/// Step markers as (key, role).
type StepMarks = BTreeSet<(String, String)>;

/// Check the shape of a Chrome trace-event document (the JSON Perfetto and
/// chrome://tracing load); return its phase events as (phase, role) → count
/// and its step markers as (key, role).
fn chrome_shape(v: &Value) -> (PhaseCounts, StepMarks) {
    assert_eq!(v["displayTimeUnit"], "ms", "{v}");
    let evs = v["traceEvents"]
        .as_array()
        .expect("traceEvents is an array");
    let mut tracks = BTreeMap::new();
    let mut spans: BTreeMap<u64, Vec<(f64, f64, String)>> = BTreeMap::new();
    let mut phases = BTreeMap::new();
    let mut steps = BTreeSet::new();
    for e in evs {
        let name = e["name"].as_str().unwrap_or_else(|| panic!("no name: {e}"));
        assert_eq!(e["pid"], 1, "{e}");
        let tid = e["tid"].as_u64().unwrap_or_else(|| panic!("no tid: {e}"));
        match e["ph"].as_str() {
            Some("M") => {
                if name == "thread_name" {
                    tracks.insert(tid, e["args"]["name"].as_str().unwrap().to_string());
                }
            }
            Some("X") => {
                let ts = e["ts"].as_f64().unwrap_or_else(|| panic!("no ts: {e}"));
                let dur = e["dur"].as_f64().unwrap_or_else(|| panic!("no dur: {e}"));
                assert!(ts >= 0.0 && dur >= 0.0, "{e}");
                spans
                    .entry(tid)
                    .or_default()
                    .push((ts, ts + dur, name.into()));
                if e["cat"] == "phase" {
                    let role = e["args"]["role"].as_str().unwrap().to_string();
                    assert_eq!(
                        tracks.get(&tid),
                        Some(&role),
                        "phase on its role's track: {e}"
                    );
                    let phase = e["args"]["phase"].as_str().unwrap().to_string();
                    *phases.entry((phase, role)).or_insert(0) += 1;
                }
            }
            Some("i") => {
                assert!(e["ts"].as_f64().is_some_and(|t| t >= 0.0), "{e}");
                assert_eq!(e["s"], "t", "{e}");
                assert!(
                    e["args"]["what"].as_str().is_some_and(|w| !w.is_empty()),
                    "{e}"
                );
                steps.insert((name.to_string(), tracks[&tid].clone()));
            }
            other => panic!("unexpected event type {other:?}: {e}"),
        }
    }
    let names: Vec<&str> = tracks.values().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        ["command", "host", "parent", "child"],
        "one track per role"
    );
    // Spans on one track nest or follow each other: a viewer draws them as
    // a stack and would misplace a partial overlap.
    for (tid, list) in &spans {
        for a in list {
            for b in list {
                let partial = a.0 < b.0 && b.0 < a.1 - 1e-3 && a.1 + 1e-3 < b.1;
                assert!(!partial, "track {tid}: {a:?} and {b:?} overlap partially");
            }
        }
    }
    (phases, steps)
}

#[test]
fn trace_chrome_is_a_timeline_with_a_track_per_role() {
    let root = Root::new();
    let b = Bundle::new(&["true"]);
    let dir = TempDir::new("nk-chrome");
    let file = dir.path().join("run.json");
    let flag = format!("--trace=chrome:{}", file.display());
    let id = unique_id("tr-chrome");
    let o = root.run(&["-E", &flag, "run", "--bundle", &b.path(), &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let (phases, steps) = chrome_shape(&v);
    // The same phases, once per role, as the --trace=json rows of a run.
    let json_rows = trace(&root, &["run", "--bundle", &b.path(), &unique_id("tr-j")]);
    assert_eq!(phases, json_rows, "chrome and json traces disagree");
    // With -E, each step is a marker on the track of who did it.
    for (key, role) in [
        ("spec.load", "host"),
        ("clone", "parent"),
        ("pivot_root", "child"),
        ("exec", "child"),
    ] {
        assert!(
            steps.contains(&(key.to_string(), role.to_string())),
            "{key} on {role}: {steps:?}"
        );
    }
    // Cause before effect: the child's phases start after the parent's
    // clone began.
    let start_of = |phase: &str, role: &str| {
        v["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["args"]["phase"] == phase && e["args"]["role"] == role)
            .and_then(|e| e["ts"].as_f64())
            .unwrap_or_else(|| panic!("no {phase} on {role}"))
    };
    assert!(start_of("clone", "parent") < start_of("mounts", "child"));
    assert!(start_of("spec", "host") < start_of("clone", "parent"));

    // Without a file, the document is the last line on stderr; without -E
    // it has phases only.
    let o = root.run(&[
        "--trace=chrome",
        "run",
        "--bundle",
        &b.path(),
        &unique_id("tr-c2"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let line = err.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {err}"));
    let (phases, steps) = chrome_shape(&v);
    assert!(phases.contains_key(&("pivot_root".to_string(), "child".to_string())));
    assert!(steps.is_empty(), "{steps:?}");

    let o = root.run(&["--trace=svg", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--trace=chrome[:FILE]"),
        "{}",
        stderr(&o)
    );
}
