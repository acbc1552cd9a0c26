//! Crash safety at every step. The test build of the runtime
//! (`make fault-runtime`, feature `fault-injection`) dies with SIGKILL just
//! before a chosen catalog step when NK_FAULT=<step>[:parent|child][@N] is
//! set. For every step that create, start, run, exec, delete, kill, pause
//! and update pass, on the runtime's side and on the container's side: crash
//! there, then `delete -f` (by the shipped binary) must succeed and leave no
//! state directory, cgroup directory (in any hierarchy), mount, namespace
//! bind or process, and the same id must be usable again at once.
//!
//! Which steps a command passes is not written down here: a first, clean run
//! of each flow records them (NK_FAULT_TRACE), so a step added to the code
//! is crashed at without touching this test. Bundle variants reach the
//! steps only some configurations have (user namespaces, no mount
//! namespace, --no-pivot, a terminal); the test fails if any catalog step
//! is never crashed at, except those this host cannot run, which are named.
//! VM mode's steps are crashed at in tests/crash_vm.rs.
//!
//! The table printed at the end (run with --nocapture) says, per step, what
//! the crash left before `delete -f`, and that nothing was left after.

use nk_tests::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Verb {
    Create,
    Start,
    Run,
    Exec,
    Delete,
    Kill,
    Pause,
    Update,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Start => "start",
            Verb::Run => "run",
            Verb::Exec => "exec",
            Verb::Delete => "delete",
            Verb::Kill => "kill",
            Verb::Pause => "pause",
            Verb::Update => "update",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Variant {
    /// Everything one container can have on this host: hooks of every kind,
    /// cgroup and time namespaces, sysctl, personality, limits, seccomp,
    /// scheduler, I/O priority, a read-only root.
    Full,
    /// A new user namespace with id maps and an idmapped mount.
    Userns,
    /// Joins the user namespace of another container.
    UsernsJoin,
    /// Joins the pid namespace of another container: the first init hands
    /// over to its clone in that namespace.
    PidJoin,
    /// No mount namespace: mounts are made on the host, delete detaches them.
    HostMounts,
    /// `--no-pivot`, and an existing IPC namespace joined by path.
    NoPivot,
    /// process.terminal, bridged by `run`.
    Terminal,
    /// A host network device in linux.netDevices, moved in by create.
    NetDevices,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Full => "full",
            Variant::Userns => "userns",
            Variant::UsernsJoin => "userns-join",
            Variant::PidJoin => "pid-join",
            Variant::HostMounts => "no-mountns",
            Variant::NoPivot => "no-pivot",
            Variant::Terminal => "terminal",
            Variant::NetDevices => "net-devices",
        }
    }

    fn verbs(self) -> &'static [Verb] {
        match self {
            Variant::Full => &[
                Verb::Create,
                Verb::Start,
                Verb::Run,
                Verb::Exec,
                Verb::Delete,
                Verb::Kill,
                Verb::Pause,
                Verb::Update,
            ],
            Variant::HostMounts => &[Verb::Create, Verb::Exec, Verb::Delete],
            Variant::Terminal => &[Verb::Run],
            _ => &[Verb::Create],
        }
    }
}

/// Where the step is crashed: the runtime's process, or the container's
/// process before it execs the program.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Fault {
    child: bool,
    key: String,
    nth: usize,
}

impl Fault {
    fn env(&self) -> String {
        format!(
            "{}:{}@{}",
            self.key,
            if self.child { "child" } else { "parent" },
            self.nth
        )
    }
}

/// One container's world: its own state root, bundle (with a private copy
/// of the rootfs) and a directory shared with the container (/mark).
struct World {
    dir: TempDir,
    root: PathBuf,
    bundle: PathBuf,
    mark: PathBuf,
    id: String,
    marker: String,
    /// The container whose user (Variant::UsernsJoin) or pid
    /// (Variant::PidJoin) namespace this one joins.
    holder: Option<(PathBuf, String)>,
    /// Options for create and run (`--no-pivot`).
    flags: Vec<&'static str>,
    variant: Variant,
    seq: std::cell::Cell<u32>,
    /// Variant::NetDevices: the host device each create moves in (made
    /// again before every create or run: the last one went with its
    /// container's network namespace).
    netdev: String,
}

const HOOK_SCRIPT: &str = "cat >/dev/null";

fn hook() -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", HOOK_SCRIPT]})
}

fn shipped() -> PathBuf {
    runtime()
}

fn cp_rootfs(dst: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(rootfs())
        .arg(dst)
        .status()
        .unwrap();
    assert!(st.success(), "copy of the test rootfs failed");
}

fn spec_config(dir: &Path) -> Value {
    let st = Command::new(shipped())
        .args(["spec", "--bundle"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
}

fn ns_push(c: &mut Value, v: Value) {
    c["linux"]["namespaces"].as_array_mut().unwrap().push(v);
}

impl World {
    fn new(variant: Variant) -> World {
        let dir = TempDir::new("nk-crash");
        // Canonical: mount points and links are compared as the kernel shows them.
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let root = base.join("root");
        let bundle = base.join("bundle");
        let mark = base.join("mark");
        for d in [&root, &bundle, &mark] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::set_permissions(&mark, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        cp_rootfs(&bundle.join("rootfs"));
        let id = unique_id("crash");
        let marker = format!("crash-marker-{}", id.replace('-', ""));
        let mut w = World {
            dir,
            root,
            bundle,
            mark,
            id,
            marker,
            holder: None,
            flags: if variant == Variant::NoPivot {
                vec!["--no-pivot"]
            } else {
                Vec::new()
            },
            variant,
            seq: std::cell::Cell::new(0),
            netdev: format!("nkc{:x}x{:x}", std::process::id(), next_link()),
        };
        match variant {
            Variant::UsernsJoin => w.holder = Some(w.start_holder(true)),
            Variant::PidJoin => w.holder = Some(w.start_holder(false)),
            _ => {}
        }
        w.write_config(variant);
        w
    }

    fn script(&self) -> String {
        format!(
            "trap 'exit 3' USR1; touch /mark/ready; while :; do sleep 1; done; : {}",
            self.marker
        )
    }

    fn write_config(&self, variant: Variant) {
        let mut c = spec_config(&self.bundle);
        c["root"]["path"] = json!(self.bundle.join("rootfs"));
        c["process"]["terminal"] = json!(false);
        c["process"]["args"] = json!(["sh", "-c", self.script()]);
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/mark", "type": "bind", "source": self.mark, "options": ["rbind", "rw"]
        }));
        match variant {
            Variant::Full => {
                c["hooks"] = json!({
                    "prestart": [hook()], "createRuntime": [hook()],
                    "createContainer": [hook()], "startContainer": [hook()],
                    "poststart": [hook()], "poststop": [hook()],
                });
                ns_push(&mut c, json!({"type": "cgroup"}));
                ns_push(&mut c, json!({"type": "time"}));
                c["linux"]["timeOffsets"] = json!({"monotonic": {"secs": 86400, "nanosecs": 0}});
                c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
                c["linux"]["personality"] = json!({"domain": "LINUX"});
                c["linux"]["resources"]["memory"] = json!({"limit": 268435456});
                c["linux"]["resources"]["pids"] = json!({"limit": 64});
                c["linux"]["seccomp"] = json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "architectures": ["SCMP_ARCH_X86_64"],
                    "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
                });
                c["process"]["oomScoreAdj"] = json!(100);
                c["process"]["scheduler"] = json!({"policy": "SCHED_OTHER", "nice": 3});
                c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 4});
                if numa_here() {
                    c["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"});
                }
                c["root"]["readonly"] = json!(true);
            }
            Variant::Userns => Self::userns(&mut c, &self.mark),
            Variant::UsernsJoin => {
                let (root, id) = self.holder.as_ref().unwrap();
                let st = rt_state(root, id);
                let pid = st["pid"].as_i64().unwrap();
                ns_push(
                    &mut c,
                    json!({"type": "user", "path": format!("/proc/{pid}/ns/user")}),
                );
            }
            Variant::PidJoin => {
                let (root, id) = self.holder.as_ref().unwrap();
                let st = rt_state(root, id);
                let pid = st["pid"].as_i64().unwrap();
                let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
                ns.retain(|n| n["type"] != "pid");
                ns.push(json!({"type": "pid", "path": format!("/proc/{pid}/ns/pid")}));
            }
            Variant::HostMounts => {
                c["linux"]["namespaces"] = json!([{"type": "pid"}]);
                c["linux"]["maskedPaths"] = json!([]);
                c["linux"]["readonlyPaths"] = json!([]);
                c.as_object_mut().unwrap().remove("hostname");
            }
            Variant::NoPivot => {
                let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
                ns.retain(|n| n["type"] != "ipc");
                // The host's, through this test process.
                let path = format!("/proc/{}/ns/ipc", std::process::id());
                ns.push(json!({"type": "ipc", "path": path}));
            }
            Variant::Terminal => c["process"]["terminal"] = json!(true),
            Variant::NetDevices => c["linux"]["netDevices"] = json!({ &self.netdev: {} }),
        }
        std::fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec_pretty(&c).unwrap(),
        )
        .unwrap();
    }

    fn userns(c: &mut Value, idmapped: &Path) {
        ns_push(c, json!({"type": "user"}));
        // An identity map: no file in the rootfs copy needs another owner.
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/idmapped", "type": "bind",
            "source": idmapped, "options": ["rbind", "idmap"]
        }));
    }

    /// A running container (with a user namespace when `userns`), in a
    /// root of its own.
    fn start_holder(&self, userns: bool) -> (PathBuf, String) {
        let base = std::fs::canonicalize(self.dir.path()).unwrap();
        let hb = base.join("holder-bundle");
        let hr = base.join("holder-root");
        std::fs::create_dir_all(&hb).unwrap();
        let mut c = spec_config(&hb);
        c["root"]["path"] = json!(rootfs());
        c["process"]["terminal"] = json!(false);
        c["process"]["args"] = json!(["sleep", "100000"]);
        if userns {
            Self::userns(&mut c, &self.mark);
        }
        std::fs::write(hb.join("config.json"), serde_json::to_vec(&c).unwrap()).unwrap();
        let id = format!("{}-holder", self.id);
        let o = rt(
            &shipped(),
            &hr,
            &["run", "-d", "--bundle", hb.to_str().unwrap(), &id],
        );
        assert!(o.0 == Some(0), "holder: {}", o.2);
        (hr, id)
    }

    fn out_files(&self) -> (PathBuf, PathBuf) {
        let n = self.seq.get();
        self.seq.set(n + 1);
        (
            self.dir.path().join(format!("out{n}")),
            self.dir.path().join(format!("err{n}")),
        )
    }

    /// A command of the fault build on this world's root, its output to
    /// files kept until the world is dropped (a container's init writes
    /// its last words into the stderr of the create that made it).
    fn cmd(&self, args: &[&str], trace: &Path, fault: Option<&Fault>) -> (Command, PathBuf) {
        if matches!(args.first(), Some(&"create") | Some(&"run")) {
            self.ensure_netdev();
        }
        let (out, err) = self.out_files();
        let mut c = Command::new(fault_runtime());
        c.arg("--root").arg(&self.root).args(args);
        c.env("NK_FAULT_TRACE", trace).env_remove("NK_FAULT");
        if let Some(f) = fault {
            c.env("NK_FAULT", f.env());
        }
        c.stdin(Stdio::null())
            .stdout(std::fs::File::create(out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        (c, err)
    }

    /// Variant::NetDevices: make the host device (a veth, or an ifb where
    /// the kernel has no veth; a veth's peer gets a new name each time, as the last one may still be going with the
    /// last container's namespace) unless it is there.
    fn ensure_netdev(&self) {
        if self.variant != Variant::NetDevices
            || Path::new("/sys/class/net").join(&self.netdev).exists()
        {
            return;
        }
        let peer = format!("nkp{:x}x{:x}", std::process::id(), next_link());
        if let Err(why) = make_netdev(&self.netdev, &peer) {
            panic!("no device for the net-devices variant: {why}");
        }
    }

    fn leftovers(&self) -> Leftovers {
        leftovers(
            &self.root,
            &self.id,
            &[&self.bundle, &self.mark],
            &self.marker,
        )
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = rt(&shipped(), &self.root, &["delete", "-f", &self.id]);
        if let Some((root, id)) = &self.holder {
            let _ = rt(&shipped(), root, &["delete", "-f", id]);
        }
        if Path::new("/sys/class/net").join(&self.netdev).exists() {
            let _ = Command::new("ip")
                .args(["link", "del", &self.netdev])
                .status();
        }
    }
}

fn numa_here() -> bool {
    Path::new("/sys/devices/system/node/node0").exists()
}

/// A number for a unique interface name (at most 15 bytes with the pid).
fn next_link() -> u32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Run a runtime on a root; (exit code, stdout, stderr).
fn rt(bin: &Path, root: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut c = Command::new(bin);
    c.arg("--root").arg(root).args(args).env_remove("NK_FAULT");
    let o = run_to_files(&mut c);
    (o.status.code(), stdout(&o), stderr(&o))
}

fn rt_state(root: &Path, id: &str) -> Value {
    let (code, out, err) = rt(&shipped(), root, &["state", id]);
    assert_eq!(code, Some(0), "state {id}: {err}");
    serde_json::from_str(&out).unwrap()
}

/// Wait for a spawned command with a deadline; SIGKILL it past that.
fn finish(mut child: std::process::Child, what: &str) -> std::process::ExitStatus {
    let pid = child.id() as i32;
    let status = std::cell::Cell::new(None);
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(what, DEADLINE, || {
            let s = child.try_wait().unwrap();
            status.set(s);
            s.map(|_| ())
        })
    }));
    if done.is_err() {
        // SAFETY: kill(2) our own child by pid.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = child.wait();
        panic!("{what} did not finish within {DEADLINE:?}");
    }
    status.get().unwrap()
}

/// What one flow did: the steps each process passed during the verb under
/// test (from the trace), and everything the commands wrote to stderr.
struct Played {
    window: Vec<(bool, String, usize)>,
    stderr: String,
    /// The steps where a fault fired (`<side> <key>`).
    fired: Vec<String>,
}

fn run_cmd(mut c: Command, err: &Path, what: &str) -> String {
    let child = c.spawn().unwrap();
    finish(child, what);
    std::fs::read_to_string(err).unwrap_or_default()
}

/// Play `verb` on a fresh container of world `w`: the setup commands, then
/// the command under test. A child-side fault goes to the command that
/// makes the child (for `start`, the create before it).
fn play(w: &World, verb: Verb, fault: Option<&Fault>) -> Played {
    let trace = w.dir.path().join(format!("trace{}", w.seq.get()));
    std::fs::write(&trace, "").unwrap();
    let _ = std::fs::remove_file(w.mark.join("ready"));
    let b = w.bundle.to_str().unwrap().to_string();
    let id = w.id.as_str();
    let with_flags = |verb: &str, rest: &[&str]| -> Vec<String> {
        let flags: &[&str] = if verb == "create" || verb == "run" {
            &w.flags
        } else {
            &[]
        };
        std::iter::once(verb)
            .chain(flags.iter().copied())
            .chain(rest.iter().copied())
            .map(String::from)
            .collect()
    };
    let parent_fault = fault.filter(|f| !f.child);
    let child_fault = fault.filter(|f| f.child);
    let errs = std::cell::RefCell::new(Vec::new());
    let setup = |args: &[String], f: Option<&Fault>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (c, err) = w.cmd(&args, &trace, f);
        errs.borrow_mut()
            .push(run_cmd(c, &err, &format!("setup {args:?}")));
    };
    match verb {
        Verb::Create | Verb::Run => {}
        Verb::Start => setup(&with_flags("create", &["--bundle", &b, id]), child_fault),
        _ => setup(&with_flags("run", &["-d", "--bundle", &b, id]), None),
    }
    let mark = std::fs::metadata(&trace).unwrap().len() as usize;
    let pf = w.dir.path().join("pid");
    let pf = pf.to_str().unwrap();
    let pj = w.dir.path().join("process.json");
    std::fs::write(
        &pj,
        json!({"args": ["sh", "-c", "exit 5"], "cwd": "/", "user": {"uid": 0, "gid": 0},
               "env": ["PATH=/bin"], "terminal": false, "noNewPrivileges": true,
               "execCPUAffinity": {"initial": "0", "final": "0"}})
        .to_string(),
    )
    .unwrap();
    let pj = pj.to_str().unwrap();
    let f = if verb == Verb::Start {
        parent_fault
    } else {
        fault
    };
    let target = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (c, err) = w.cmd(&args, &trace, f);
        errs.borrow_mut()
            .push(run_cmd(c, &err, &format!("{args:?}")));
    };
    match verb {
        Verb::Create => target(&with_flags(
            "create",
            &["--pid-file", pf, "--bundle", &b, id],
        )),
        Verb::Start => target(&with_flags("start", &[id])),
        Verb::Exec => target(&with_flags("exec", &["--process", pj, id])),
        Verb::Delete => target(&with_flags("delete", &["-f", id])),
        Verb::Kill => target(&with_flags("kill", &[id, "KILL"])),
        Verb::Pause => target(&with_flags("pause", &[id])),
        Verb::Update => target(&with_flags(
            "update",
            &["--pids-limit", "99", "--cpu-shares", "512", id],
        )),
        Verb::Run => {
            // In the foreground: once the program runs, SIGUSR1 to the
            // runtime is forwarded and ends it (exit 3).
            let args = with_flags("run", &["--bundle", &b, id]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (mut c, err) = w.cmd(&args, &trace, f);
            let mut child = c.spawn().unwrap();
            let ready = w.mark.join("ready");
            let running = wait_for(
                "the container to run or the runtime to exit",
                DEADLINE,
                || {
                    if ready.exists() {
                        return Some(true);
                    }
                    child.try_wait().unwrap().map(|_| false)
                },
            );
            if running && child.try_wait().unwrap().is_none() {
                // SAFETY: kill(2) our own child by pid.
                unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
            }
            finish(child, "run");
            errs.borrow_mut()
                .push(std::fs::read_to_string(err).unwrap_or_default());
        }
    }
    if verb == Verb::Pause {
        setup(&with_flags("resume", &[id]), None);
    }
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let mut counts: BTreeMap<(bool, String, String), usize> = BTreeMap::new();
    let mut window = Vec::new();
    let mut fired = Vec::new();
    let mut pos = 0;
    for line in text.lines() {
        let start = pos;
        pos += line.len() + 1;
        let mut p = line.split(' ');
        let (Some(side), Some(key), Some(pid)) = (p.next(), p.next(), p.next()) else {
            continue;
        };
        if pid == "fault" {
            fired.push(format!("{side} {key}"));
            continue;
        }
        let child = side == "child";
        let n = counts
            .entry((child, key.to_string(), pid.to_string()))
            .or_default();
        *n += 1;
        if start >= mark {
            window.push((child, key.to_string(), *n));
        }
    }
    // stderr files of earlier commands may have grown since (a child's).
    let mut stderr = errs.into_inner().join("\n");
    for i in 0..w.seq.get() {
        stderr.push_str(
            &std::fs::read_to_string(w.dir.path().join(format!("err{i}"))).unwrap_or_default(),
        );
    }
    Played {
        window,
        stderr,
        fired,
    }
}

/// Reap those of `pids` that are zombies of ours (orphans, handed to us as
/// subreaper, as an init or a shim would be).
fn reap(pids: &BTreeSet<ProcId>) {
    pids.iter().for_each(reap_orphan);
}

fn pids_of(l: &Leftovers) -> BTreeSet<ProcId> {
    procs_of(l)
}

/// What `w` leaves once what is going has gone: processes that were still
/// exiting (and zombies of ours, which are reaped) are waited for, up to the
/// shared deadline; what is still there then is what was left.
fn settled(w: &World) -> Leftovers {
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let l = w.leftovers();
        if l.is_empty() || std::time::Instant::now() > end {
            return l;
        }
        reap(&pids_of(&l));
        // A poll interval: the host is looked at again.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// One crash: where, and what it left (before, after) or what went wrong.
type Outcome = (Variant, Verb, Fault, Result<(String, String), String>);

#[derive(Debug, Default)]
struct Row {
    flows: BTreeSet<String>,
    before: BTreeSet<String>,
    after: BTreeSet<String>,
}

/// Crash at one step, then check `delete -f`, the leftovers and a new
/// container of the same id. Returns (before, after) or a failure.
fn crash_case(variant: Variant, verb: Verb, f: &Fault) -> Result<(String, String), String> {
    let w = World::new(variant);
    let p = play(&w, verb, Some(f));
    let side = if f.child { "child" } else { "parent" };
    if !p.fired.contains(&format!("{side} {}", f.key)) {
        return Err(format!("the fault did not fire:\n{}", p.stderr));
    }
    let before = w.leftovers();
    let pids = pids_of(&before);
    let (code, _, err) = rt(&shipped(), &w.root, &["delete", "-f", &w.id]);
    if code != Some(0) {
        return Err(format!("delete -f failed ({code:?}): {err}"));
    }
    // The container's processes die with delete -f; those orphaned to us
    // (the create or exec that made them was killed) we reap, as an init
    // would. An exiting pid namespace waits for that, so reap until done.
    let gone = proc_gone;
    let _ = std::panic::catch_unwind(|| {
        wait_for("the container's processes to go", DEADLINE, || {
            reap(&pids);
            pids.iter().all(gone).then_some(())
        })
    });
    let after = settled(&w);
    let alive: Vec<String> = pids
        .iter()
        .filter(|p| !gone(p))
        .map(|p| {
            let st = std::fs::read_to_string(format!("/proc/{}/stat", p.0)).unwrap_or_default();
            format!("{}: {}", p.0, st.trim())
        })
        .collect();
    if !after.is_empty() || !alive.is_empty() {
        return Err(format!(
            "left after delete -f: {after}; container processes still there: {alive:?}"
        ));
    }
    // The same id again, whole: create, start, delete.
    if w.variant == Variant::Terminal {
        // A terminal needs `run` in the foreground (or a console socket).
        let p = play(&w, Verb::Run, None);
        if !p
            .window
            .iter()
            .any(|(child, key, _)| *child && key == "exec")
        {
            return Err(format!("the same id could not run again: {}", p.stderr));
        }
        let left = settled(&w);
        return if left.is_empty() {
            Ok((before.summary(), after.summary()))
        } else {
            Err(format!("the second run left {left}"))
        };
    }
    let b = w.bundle.to_str().unwrap();
    let mut args = vec!["run", "-d"];
    args.extend(w.flags.iter().copied());
    args.extend(["--bundle", b, &w.id]);
    w.ensure_netdev();
    let (code, _, err) = rt(&shipped(), &w.root, &args);
    if code != Some(0) {
        return Err(format!("the same id could not be created again: {err}"));
    }
    let again = pids_of(&w.leftovers());
    let (code, _, err) = rt(&shipped(), &w.root, &["delete", "-f", &w.id]);
    let _ = std::panic::catch_unwind(|| {
        wait_for("the new container's processes to go", DEADLINE, || {
            reap(&again);
            again.iter().all(gone).then_some(())
        })
    });
    let left = settled(&w);
    if code != Some(0) || !left.is_empty() {
        return Err(format!(
            "the new container's delete -f ({code:?}, {err}) left {left}"
        ));
    }
    Ok((before.summary(), after.summary()))
}

/// Steps this host cannot reach, with the reason (checked, not assumed).
fn unreachable_here() -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    m.insert(
        "vm.image",
        "VM mode: crashed at in tests/crash_vm.rs".to_string(),
    );
    m.insert("vm.accel", "VM mode: tests/crash_vm.rs".to_string());
    m.insert("vm.monitor", "VM mode: tests/crash_vm.rs".to_string());
    m.insert("vm.share", "VM mode: tests/crash_vm.rs".to_string());
    m.insert("vm.net", "VM mode: tests/crash_vm.rs".to_string());
    m.insert("vm.template", "VM mode: tests/crash_vm.rs".to_string());
    m.insert("vm.boot", "VM mode: tests/crash_vm.rs".to_string());
    for step in ["vm.criu_kit", "vm.checkpoint", "vm.restore"] {
        m.insert(
            step,
            "VM-mode checkpoint and restore: tests/crash_vm.rs".to_string(),
        );
    }
    m.insert(
        "vm.pod",
        "VM mode, a pod member's create: tests/crash_vm.rs".to_string(),
    );
    // No flow here checkpoints: where CRIU cannot run, a checkpoint never
    // reaches its steps (tests/checkpoint.rs checks that the failure leaves
    // nothing); where it can, these stay uncovered and the test says so.
    let criu_here = sandbox::criu::find(None)
        .map_err(|e| vec![e.to_string()])
        .and_then(|c| sandbox::criu::host_check(&c));
    if let Err(why) = criu_here {
        let why = why.first().cloned().unwrap_or_default();
        for step in ["criu.dump", "criu.restore"] {
            m.insert(
                step,
                format!(
                    "CRIU cannot run on this host ({why}); tests/checkpoint.rs checks that the failure leaves nothing, tests/checkpoint_vm.rs runs it in a guest"
                ),
            );
        }
    }
    if !numa_here() {
        m.insert(
            "mempolicy",
            "no NUMA in this kernel: set_mempolicy fails (tests/memory_policy.rs checks the error)"
                .to_string(),
        );
    }
    if !sandbox::linux::lsm::apparmor_enabled() && !sandbox::linux::lsm::selinux_enabled() {
        m.insert(
            "lsm.label",
            "no AppArmor or SELinux on this host (lsm_refused_cleanly checks the error instead)"
                .to_string(),
        );
    }
    // A v1 devices hierarchy is used when there is one (this host's hybrid
    // layout); the eBPF device program is cgroup v2's.
    let v1_devices = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(" - cgroup ") && l.split(',').any(|o| o == "devices"));
    if v1_devices {
        m.insert(
            "cgroup.devices",
            "this host has the cgroup v1 devices controller: device rules are written there (cgroup.write); the eBPF program is cgroup v2's (tests/cgroup_v2_vm.rs runs it in a guest)"
                .to_string(),
        );
    }
    m
}

#[test]
fn crash_at_every_step_leaves_nothing_after_delete_force() {
    require_root();
    // Orphaned containers come to us, and we reap them as an init would.
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // Discovery: which steps each verb passes, per variant.
    let variants = [
        Variant::Full,
        Variant::Userns,
        Variant::UsernsJoin,
        Variant::PidJoin,
        Variant::HostMounts,
        Variant::NoPivot,
        Variant::Terminal,
        Variant::NetDevices,
    ];
    // A kernel with neither veth nor ifb gives linux.netDevices nothing to
    // move (tests/net_devices.rs says the same).
    let netdevs = match (netdev_kind("veth"), netdev_kind("ifb")) {
        (Err(v), Err(i)) => {
            eprintln!("net-devices variant not crashed: no virtual device to move: {v}; {i}");
            false
        }
        _ => true,
    };
    let variants: Vec<Variant> = variants
        .into_iter()
        .filter(|v| netdevs || *v != Variant::NetDevices)
        .collect();
    let mut cases: Vec<(Variant, Verb, Fault)> = Vec::new();
    let mut covered: BTreeSet<(bool, String)> = BTreeSet::new();
    for v in variants {
        for &verb in v.verbs() {
            let w = World::new(v);
            let p = play(&w, verb, None);
            assert!(
                !p.window.is_empty(),
                "{} {}: no step recorded (is {} the fault-injection build?)\n{}",
                v.name(),
                verb.name(),
                fault_runtime().display(),
                p.stderr
            );
            let mut seen = BTreeSet::new();
            for (child, key, nth) in p.window {
                // Without a mount namespace, each mount the child makes is
                // on the host: crash before every one of them.
                let all_of_them = v == Variant::HostMounts && child;
                let new_here = v == Variant::Full || !covered.contains(&(child, key.clone()));
                let first = seen.insert((child, key.clone()));
                if all_of_them || (new_here && first) {
                    cases.push((v, verb, Fault { child, key, nth }));
                }
            }
        }
        for (_, _, f) in &cases {
            covered.insert((f.child, f.key.clone()));
        }
    }
    // Crash at each, four at a time.
    let queue = Mutex::new(cases.clone());
    let results: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let Some((v, verb, f)) = queue.lock().unwrap().pop() else {
                    break;
                };
                let r = std::panic::catch_unwind(|| crash_case(v, verb, &f)).unwrap_or_else(|e| {
                    Err(e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panic".into()))
                });
                results.lock().unwrap().push((v, verb, f, r));
            });
        }
    });
    let results = results.into_inner().unwrap();
    let mut table: BTreeMap<(String, &str), Row> = BTreeMap::new();
    let mut failures = Vec::new();
    for (v, verb, f, r) in &results {
        let side = if f.child { "child" } else { "parent" };
        let row = table.entry((f.key.clone(), side)).or_default();
        row.flows.insert(format!("{}:{}", v.name(), verb.name()));
        match r {
            Ok((before, after)) => {
                row.before.insert(before.clone());
                row.after.insert(after.clone());
            }
            Err(e) => {
                row.after.insert("FAILED".into());
                failures.push(format!("{} {} {}: {e}", v.name(), verb.name(), f.env()));
            }
        }
    }
    println!(
        "\ncrash at step -> left before `delete -f` -> left after ({} crashes)\n",
        results.len()
    );
    println!("| step | side | flows (variant:verb) | left before delete -f | left after |");
    println!("|---|---|---|---|---|");
    for ((key, side), row) in &table {
        println!(
            "| {key} | {side} | {} | {} | {} |",
            row.flows.iter().cloned().collect::<Vec<_>>().join(" "),
            row.before.iter().cloned().collect::<Vec<_>>().join("; "),
            row.after.iter().cloned().collect::<Vec<_>>().join("; ")
        );
    }
    let skipped = unreachable_here();
    let crashed: BTreeSet<&str> = table.keys().map(|(k, _)| k.as_str()).collect();
    for (k, why) in &skipped {
        println!("| {k} | - | not crashed at here | {why} | - |");
    }
    let missing: Vec<&str> = sandbox::explain::catalog::ALL
        .iter()
        .map(|s| s.key)
        .filter(|k| !crashed.contains(k) && !skipped.contains_key(k))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} crashes left something or failed:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
    assert!(
        missing.is_empty(),
        "catalog steps never crashed at: {missing:?} (add a variant or flow that reaches them)"
    );
}

/// An LSM label on a host without that LSM: the child's clear error, and
/// nothing left. (On a host with AppArmor or SELinux the step is crashed at
/// like any other.)
#[test]
fn lsm_refused_cleanly() {
    require_root();
    if sandbox::linux::lsm::apparmor_enabled() {
        println!("AppArmor is enabled here: lsm.label is crashed at by the main test");
        return;
    }
    let w = World::new(Variant::NoPivot);
    let mut c: Value =
        serde_json::from_slice(&std::fs::read(w.bundle.join("config.json")).unwrap()).unwrap();
    c["process"]["apparmorProfile"] = json!("nk-test-profile");
    std::fs::write(w.bundle.join("config.json"), c.to_string()).unwrap();
    let (code, _, err) = rt(
        &shipped(),
        &w.root,
        &["create", "--bundle", w.bundle.to_str().unwrap(), &w.id],
    );
    assert_ne!(code, Some(0));
    assert!(
        err.contains("AppArmor is not enabled on this host"),
        "{err}"
    );
    assert!(w.leftovers().is_empty(), "{}", w.leftovers());
}

/// The shipped binary ignores NK_FAULT: it has no fault injection in it.
#[test]
fn shipped_binary_ignores_nk_fault() {
    require_root();
    let w = World::new(Variant::NoPivot);
    let b = w.bundle.to_str().unwrap().to_string();
    let mut c = Command::new(shipped());
    c.arg("--root")
        .arg(&w.root)
        .args(["run", "-d", "--bundle", &b, &w.id])
        .env("NK_FAULT", "spec.load");
    let o = run_to_files(&mut c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("NK_FAULT"));
    let (code, _, err) = rt(&shipped(), &w.root, &["delete", "-f", &w.id]);
    assert_eq!(code, Some(0), "{err}");
}
