//! Shared helpers for the integration tests: where the runtime and the test
//! rootfs are, bundles made from `nk-runtime spec`, private state roots that
//! clean up after themselves, and unique ids so tests can run in parallel.

pub mod runtime_tools;
pub mod security;
pub mod term;
pub mod vm;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The nk-runtime binary under test ($NK_RUNTIME, else target/release or target/debug).
pub fn runtime() -> PathBuf {
    if let Ok(p) = std::env::var("NK_RUNTIME") {
        return PathBuf::from(p);
    }
    for prof in ["x86_64-unknown-linux-gnu/release", "release", "debug"] {
        let p = workspace().join("target").join(prof).join("nk-runtime");
        if p.exists() {
            return p;
        }
    }
    panic!("nk-runtime is not built: run `make build` (or set NK_RUNTIME)");
}

/// The busybox rootfs ($NK_TEST_ROOTFS, else build/rootfs, made on first use).
pub fn rootfs() -> PathBuf {
    if let Ok(p) = std::env::var("NK_TEST_ROOTFS") {
        return PathBuf::from(p);
    }
    let p = workspace().join("build/rootfs");
    if !p.join("bin/busybox").exists() {
        let st = Command::new(workspace().join("scripts/mk-rootfs.sh"))
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success(), "scripts/mk-rootfs.sh failed");
    }
    p
}

/// The reference runtime, runc, for differential tests.
pub fn runc() -> String {
    for p in ["/usr/sbin/runc", "/usr/bin/runc"] {
        if Path::new(p).exists() {
            return p.to_string();
        }
    }
    panic!("runc is not installed: the test command installs it (scripts/test-deps.sh)");
}

/// Fail loudly when not root: these tests start real containers.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "integration tests must run as root");
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique id with a readable prefix.
pub fn unique_id(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n}-{:x}", std::process::id(), t)
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Make a new one under /tmp.
    pub fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique_id(prefix));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A private state root for one runtime binary; every container left in it
/// is force-deleted on drop.
pub struct Root {
    pub dir: TempDir,
    pub bin: PathBuf,
    /// Global options given before every command (after `--root`).
    pub globals: Vec<std::ffi::OsString>,
}

impl Root {
    /// A root for nk-runtime.
    pub fn new() -> Root {
        Root::with_binary(runtime())
    }

    /// A root for another runtime (runc, as a differential oracle).
    pub fn with_binary(bin: impl Into<PathBuf>) -> Root {
        require_root();
        Root {
            dir: TempDir::new("nk-root"),
            bin: bin.into(),
            globals: Vec::new(),
        }
    }

    /// A command with --root set.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.dir.path());
        c.args(&self.globals);
        c.stdin(Stdio::null());
        c
    }

    /// Run with arguments, capturing output. Output goes through files, not
    /// pipes: a created container's init inherits the runtime's stdio (as
    /// with runc), and would keep a pipe open long after create returns.
    pub fn run(&self, args: &[&str]) -> Output {
        run_to_files(self.cmd().args(args))
    }

    /// Run and assert success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{} {:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            self.bin.display(),
            args,
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The parsed `state` of a container.
    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state JSON")
    }

    /// The status word of a container.
    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap_or("").to_string()
    }

    /// Wait (up to DEADLINE) until the container reports `want`.
    pub fn wait_status(&self, id: &str, want: &str) {
        wait_for(&format!("container {id} to be {want}"), DEADLINE, || {
            let o = self.run(&["state", id]);
            let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
            (o.status.success() && v["status"] == want).then_some(())
        });
    }

    /// Ids of the containers in this root.
    pub fn ids(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path())
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str().map(String::from))
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Default for Root {
    fn default() -> Self {
        Root::new()
    }
}

impl Drop for Root {
    /// Every container left (a test that panicked midway) is force-deleted;
    /// a process that still runs in the root's state directories after
    /// that (a VM's monitor or QEMU that `delete -f` could not stop) is
    /// killed by its pid and start time, and reaped if it is our orphan.
    fn drop(&mut self) {
        let ids = self.ids();
        if ids.is_empty() {
            return;
        }
        let procs = procs_with_cwd_under(self.dir.path());
        for id in ids {
            let _ = self.cmd().args(["delete", "-f", &id]).output();
        }
        kill_procs(&procs);
    }
}

/// The processes whose working directory is `dir` or under it (VM mode's
/// monitor, QEMU and virtiofsd run in the container's state directory).
pub fn procs_with_cwd_under(dir: &Path) -> std::collections::BTreeSet<ProcId> {
    let mut v = std::collections::BTreeSet::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        if link_under(&e.path().join("cwd"), &[dir]) {
            v.extend(proc_id(pid));
        }
    }
    v
}

/// SIGKILL each of `procs` that is still that very process (same pid, same
/// start time: a pid reused since is left alone), then wait (DEADLINE) for
/// them to go, reaping those that are our orphans. For cleanup on drop:
/// never panics.
pub fn kill_procs(procs: &std::collections::BTreeSet<ProcId>) {
    for p in procs {
        // SAFETY: pidfd_open(2) takes a pid and flags, no pointers.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, p.0, 0) } as i32;
        if fd < 0 {
            continue;
        }
        // The pidfd pins the process it was opened on: if that is still
        // the one seen (start time), the signal goes to it and no other.
        if !proc_gone(p) {
            // SAFETY: pidfd_send_signal(2) on our own open pidfd; the
            // siginfo pointer may be null.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd,
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
        }
        // SAFETY: closing the pidfd opened above, used nowhere else.
        unsafe { libc::close(fd) };
    }
    let end = std::time::Instant::now() + DEADLINE;
    while std::time::Instant::now() < end {
        procs.iter().for_each(reap_orphan);
        if procs.iter().all(proc_gone) {
            return;
        }
        // A poll interval while the killed processes exit.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A bundle: a directory with config.json whose root is the shared rootfs.
pub struct Bundle {
    pub dir: TempDir,
    pub config: Value,
}

impl Bundle {
    /// The default spec (from `nk-runtime spec`), not a terminal, running `args`.
    pub fn new(args: &[&str]) -> Bundle {
        let dir = TempDir::new("nk-bundle");
        let st = Command::new(runtime())
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "nk-runtime spec failed");
        let raw = std::fs::read(dir.path().join("config.json")).unwrap();
        let mut config: Value = serde_json::from_slice(&raw).unwrap();
        config["root"]["path"] = Value::String(rootfs().display().to_string());
        config["process"]["terminal"] = Value::Bool(false);
        config["process"]["args"] = args.iter().map(|a| Value::String(a.to_string())).collect();
        let b = Bundle { dir, config };
        b.save();
        b
    }

    /// Write config.json after changing `config`.
    pub fn save(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// Change the config with a closure and save.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self.save();
        self
    }

    /// The bundle path as a string.
    pub fn path(&self) -> String {
        self.dir.path().display().to_string()
    }
}

/// Run a command with stdout and stderr sent to temporary files.
pub fn run_to_files(c: &mut Command) -> Output {
    let dir = TempDir::new("nk-out");
    let out = std::fs::File::create(dir.path().join("out")).unwrap();
    let err = std::fs::File::create(dir.path().join("err")).unwrap();
    let status = c.stdout(out).stderr(err).status().expect("spawn");
    Output {
        status,
        stdout: std::fs::read(dir.path().join("out")).unwrap_or_default(),
        stderr: std::fs::read(dir.path().join("err")).unwrap_or_default(),
    }
}

/// stdout of an Output as a string.
/// The `Cpus_allowed_list:` value of /proc/<pid>/status text ("" if none).
pub fn cpus_allowed(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("")
        .trim()
        .to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr of an Output as a string.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Is a cgroup directory present in any v1 hierarchy (or the unified one)?
pub fn cgroup_exists(rel: &str) -> bool {
    let rel = rel.trim_start_matches('/');
    ["memory", "pids", "cpu", "freezer", "devices", "unified", ""]
        .iter()
        .any(|h| Path::new("/sys/fs/cgroup").join(h).join(rel).exists())
}

/// Is `path` a mount point in the host's mount table?
pub fn host_mounts_contain(fragment: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .contains(fragment)
}

/// A process kept in fresh namespaces by `unshare`, killed by pid on drop.
pub struct Unshared(pub std::process::Child);

impl Unshared {
    /// `unshare FLAG --fork --kill-child sleep 1000`.
    pub fn new(flag: &str) -> Unshared {
        let child = Command::new("unshare")
            .args([flag, "--fork", "--kill-child", "sleep", "1000"])
            .spawn()
            .expect("unshare (util-linux)");
        Unshared(child)
    }

    /// The namespace link of the forked child's kind (pid: pid_for_children).
    pub fn ns(&self, file: &str) -> (String, String) {
        let path = format!("/proc/{}/ns/{file}", self.0.id());
        let own = std::fs::read_link(format!("/proc/self/ns/{file}")).unwrap();
        let l = wait_for(
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

/// The runtime built with the `fault-injection` feature ($NK_FAULT_RUNTIME,
/// else target/fault-injection/nk-runtime from `make fault-runtime`): it
/// honours NK_FAULT, which the shipped binary does not.
pub fn fault_runtime() -> PathBuf {
    if let Ok(p) = std::env::var("NK_FAULT_RUNTIME") {
        return PathBuf::from(p);
    }
    let p = workspace().join("target/fault-injection/nk-runtime");
    assert!(
        p.exists(),
        "{} is not built: run `make fault-runtime` (or set NK_FAULT_RUNTIME)",
        p.display()
    );
    p
}

/// Poll `f` until it gives a value, for at most `timeout`; panic naming
/// `what` when it never does. The way to wait for an observable state (a
/// file, a line, a process state) instead of sleeping and hoping.
pub fn wait_for<T>(
    what: &str,
    timeout: std::time::Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let end = std::time::Instant::now() + timeout;
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < end,
            "waited {timeout:?} for {what}"
        );
        // A poll interval, not a wait: the state is checked again.
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
}

/// A process as a test saw it: its pid and its start time (clock ticks
/// after boot, field 22 of /proc/PID/stat). The pair tells the process from
/// a later one that got the same pid (pids wrap at pid_max, 32768 here).
pub type ProcId = (i32, u64);

/// The process now at `pid`, if any.
pub fn proc_id(pid: i32) -> Option<ProcId> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let start = s
        .get(s.rfind(')')? + 2..)?
        .split(' ')
        .nth(19)?
        .parse()
        .ok()?;
    Some((pid, start))
}

/// Whether `p` has gone: exited and reaped, or its pid now another's.
pub fn proc_gone(p: &ProcId) -> bool {
    proc_id(p.0) != Some(*p)
}

/// Reap `p` if it is that very process, a zombie, and a child of this test
/// (an orphan handed to it as subreaper), as an init would. A pid taken
/// by another process since (say another test thread's child) has another
/// start time and is left alone, so no thread's child is reaped from under
/// it (`waitpid(-1)` or a bare pid would).
pub fn reap_orphan(p: &ProcId) {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{}/stat", p.0)) else {
        return;
    };
    let Some(rest) = s.rfind(')').and_then(|i| s.get(i + 2..)) else {
        return;
    };
    let f: Vec<&str> = rest.split(' ').collect();
    let ours = f.first() == Some(&"Z")
        && f.get(1).and_then(|v| v.parse::<u32>().ok()) == Some(std::process::id())
        && f.get(19).and_then(|v| v.parse::<u64>().ok()) == Some(p.1);
    if ours {
        // SAFETY: waitpid on one zombie child of ours, checked just above;
        // its pid cannot be reused before it is reaped, and only we reap it.
        unsafe { libc::waitpid(p.0, std::ptr::null_mut(), libc::WNOHANG) };
    }
}

/// The processes a [`Leftovers`] names, each with its start time.
pub fn procs_of(l: &Leftovers) -> std::collections::BTreeSet<ProcId> {
    l.0.iter()
        .filter_map(|e| e.strip_prefix("process "))
        .filter_map(|r| r.split(' ').next()?.parse().ok())
        .filter_map(proc_id)
        .collect()
}

/// Generous deadline for things that take milliseconds on an idle machine
/// and may take seconds on a loaded one (`make test-under-load`).
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Copy an executable to `dst` in another process (`install`), so that no
/// descriptor open for writing on the new file ever exists in this
/// multi-threaded test process: a child forked by another test in between
/// would inherit it until its exec, and executing `dst` then fails with
/// ETXTBSY (text file busy).
pub fn install_executable(src: &Path, dst: &Path, mode: &str) {
    let o = Command::new("install")
        .arg("-m")
        .arg(mode)
        .arg(src)
        .arg(dst)
        .output()
        .expect("install(1)");
    assert!(
        o.status.success(),
        "install {} {}: {}",
        src.display(),
        dst.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Write an executable script through [`install_executable`] (see there).
pub fn write_executable(dst: &Path, contents: &str) {
    let tmp = TempDir::new("nk-exe");
    let src = tmp.path().join("src");
    std::fs::write(&src, contents).unwrap();
    install_executable(&src, dst, "0755");
}

/// Mount points of the cgroup hierarchies (v1 controllers and cgroup2).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let mp = pre.split(' ').nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mp))
        })
        .collect()
}

/// Every directory below `dir` (not `dir` itself), symlinks not followed.
fn dirs_below(dir: &Path, out: &mut std::collections::BTreeSet<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let p = e.path();
            dirs_below(&p, out);
            out.insert(p);
        }
    }
}

/// The cgroup directories of every hierarchy (all cgroup and cgroup2
/// mounts), taken before an engine starts, so that the empty cgroups the
/// engine makes and leaves behind can be removed afterwards: Docker's
/// `/docker`, Podman's `/libpod_parent` (with `libpod_parent/conmon`, and
/// one 64-hex directory per container in name=systemd and cgroup2). The
/// Rust counterpart of tests/engines/lib.sh's cgroup_snapshot/cgroup_tidy.
pub struct CgroupSnapshot {
    before: std::collections::BTreeSet<PathBuf>,
}

/// Cgroups a tidy of this process could not remove yet (another engine
/// wrapper of the same test binary, running in parallel, still used them):
/// the next tidy tries them again. Without it, `/libpod_parent` made by one
/// test and still used by another would outlive both (the second's
/// snapshot already had it).
static CGROUPS_PENDING: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// What [`CgroupSnapshot::tidy`] did.
#[derive(Debug, Default)]
pub struct CgroupTidy {
    /// Directories removed.
    pub removed: Vec<PathBuf>,
    /// Directories that could not be: not empty (a process or a child
    /// cgroup in them, possibly another test's), with the error.
    pub left: Vec<(PathBuf, String)>,
}

impl CgroupSnapshot {
    /// Every cgroup directory there is now.
    pub fn take() -> CgroupSnapshot {
        let mut before = std::collections::BTreeSet::new();
        for root in cgroup_mounts() {
            dirs_below(&root, &mut before);
        }
        CgroupSnapshot { before }
    }

    /// Remove, deepest first, each cgroup directory that did not exist at
    /// the snapshot and lies under the top-level name `top` (`docker`,
    /// `libpod_parent`) of any hierarchy, `top` itself included, and those
    /// an earlier tidy of this process left under `top`. Call it after the
    /// engine and its containers are stopped. rmdir only: a cgroup that
    /// holds a process or a child (tests run in parallel, and another may
    /// drive the same engine) stays, is reported in [`CgroupTidy::left`]
    /// and tried again by the next tidy of this process; one already gone
    /// is skipped. Never panics.
    pub fn tidy(&self, top: &str) -> CgroupTidy {
        let mut now = std::collections::BTreeSet::new();
        let mut bases = Vec::new();
        for root in cgroup_mounts() {
            let base = root.join(top);
            if base.is_dir() {
                now.insert(base.clone());
                dirs_below(&base, &mut now);
            }
            bases.push(base);
        }
        let mut pending = CGROUPS_PENDING.lock().unwrap_or_else(|e| e.into_inner());
        let mut new: Vec<PathBuf> = now
            .difference(&self.before)
            .chain(
                pending
                    .iter()
                    .filter(|p| bases.iter().any(|b| p.starts_with(b))),
            )
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // Deepest first: children before their parents.
        new.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        let mut t = CgroupTidy::default();
        for d in new {
            match std::fs::remove_dir(&d) {
                Ok(()) => {
                    pending.remove(&d);
                    t.removed.push(d);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    pending.remove(&d);
                }
                Err(e) => {
                    pending.insert(d.clone());
                    t.left.push((d, e.to_string()));
                }
            }
        }
        t
    }

    /// [`CgroupSnapshot::tidy`] for an engine wrapper's `Drop`: what
    /// stays is printed (a count and the first few), not a failure: it is
    /// usually a parallel test's, and the next tidy of this process tries
    /// it again.
    pub fn tidy_on_drop(&self, engine: &str, top: &str) {
        let t = self.tidy(top);
        if let Some((_, e)) = t.left.first() {
            let some: Vec<String> = t
                .left
                .iter()
                .take(3)
                .map(|(d, _)| d.display().to_string())
                .collect();
            eprintln!(
                "{engine}: {} new cgroups under /{top} not removed yet (in use by a \
                 parallel test, or a process left behind?): {e}: {}{}",
                t.left.len(),
                some.join(", "),
                if t.left.len() > 3 { ", ..." } else { "" }
            );
        }
    }
}

/// What a container left on the host. Each entry says what it is.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Leftovers(pub Vec<String>);

impl Leftovers {
    /// Nothing at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Counted by kind, for a table: "state dir, cgroup (10 hierarchies),
    /// 2 processes".
    pub fn summary(&self) -> String {
        let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
        for e in &self.0 {
            *kinds.entry(e.split(' ').next().unwrap_or("?")).or_default() += 1;
        }
        if kinds.is_empty() {
            return "nothing".into();
        }
        kinds
            .iter()
            .map(|(k, n)| match (*k, *n) {
                ("state", _) => "state dir".to_string(),
                ("cgroup", n) => format!("cgroup ({n} hierarchies)"),
                ("process", 1) => "1 process".to_string(),
                ("process", n) => format!("{n} processes"),
                ("mount", 1) => "1 mount".to_string(),
                ("mount", n) => format!("{n} mounts"),
                (k, n) => format!("{n} {k}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&self.0.join(", "))
        }
    }
}

fn link_under(p: &Path, dirs: &[&Path]) -> bool {
    std::fs::read_link(p).is_ok_and(|t| dirs.iter().any(|d| t.starts_with(d)))
}

/// Scan the host for what container `id` (state under `root`, files under
/// the `dirs` given: bundle, rootfs, marks) left: entries in the state root,
/// its cgroup directory (default path /nano-sandbox/<id>) in any hierarchy,
/// mounts on or under those directories (network namespace binds
/// included), and processes: in its cgroup, with `marker` in their command
/// line, or with a working directory, root or descriptor under those
/// directories. Zombies count.
pub fn leftovers(root: &Path, id: &str, dirs: &[&Path], marker: &str) -> Leftovers {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root) {
        // Nothing but containers is ever kept there (the seccomp cache is
        // elsewhere): any entry is a leftover.
        for e in rd.flatten() {
            out.push(format!("state {}", e.file_name().to_string_lossy()));
        }
    }
    let rel = format!("nano-sandbox/{id}");
    for m in cgroup_mounts() {
        if m.join(&rel).exists() {
            out.push(format!("cgroup {}", m.join(&rel).display()));
        }
    }
    let mut all_dirs: Vec<&Path> = dirs.to_vec();
    all_dirs.push(root);
    for l in std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
    {
        let mp = l.split(' ').nth(4).unwrap_or("");
        if all_dirs.iter().any(|d| Path::new(mp).starts_with(d)) {
            out.push(format!("mount {mp}"));
        }
    }
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        let p = e.path();
        let cg = std::fs::read_to_string(p.join("cgroup")).unwrap_or_default();
        let cmd = std::fs::read(p.join("cmdline")).unwrap_or_default();
        let ours = cg
            .lines()
            .any(|l| l.ends_with(&format!("/{rel}")) || l.contains(&format!("/{rel}/")))
            || (!marker.is_empty() && String::from_utf8_lossy(&cmd).contains(marker))
            || link_under(&p.join("cwd"), &all_dirs)
            || link_under(&p.join("root"), &all_dirs)
            || std::fs::read_dir(p.join("fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| link_under(&fd.path(), &all_dirs));
        if ours {
            let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
            let st = stat
                .rfind(')')
                .and_then(|i| stat.get(i + 2..i + 3))
                .unwrap_or("?")
                .to_string();
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            out.push(format!("process {name} {} ({st})", comm.trim()));
        }
    }
    Leftovers(out)
}

/// Whether this kernel makes network devices of `kind` (`veth`, `ifb`,
/// `bridge`, `vxlan`, ...): one is made in a private network namespace
/// (`unshare --net`), which takes it along when the probe exits, so
/// nothing is left on the host. `Err` says why not when the kernel lacks
/// the kind (not built, module missing: "Unknown device type", EOPNOTSUPP,
/// ENODEV); any other failure of the probe panics, since then the host, not
/// the kernel build, is broken. Cached per kind. `NK_TEST_HIDE_NETDEV`
/// (kinds, comma-separated) makes them count as missing, to run the tests'
/// other paths on a kernel that has them.
pub fn netdev_kind(kind: &str) -> Result<(), String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    let hidden = std::env::var("NK_TEST_HIDE_NETDEV").unwrap_or_default();
    if hidden.split(',').any(|k| k.trim() == kind) {
        return Err(format!("{kind} devices hidden by NK_TEST_HIDE_NETDEV"));
    }
    static SEEN: OnceLock<Mutex<HashMap<String, Result<(), String>>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(r) = seen.lock().unwrap().get(kind) {
        return r.clone();
    }
    let mut args = vec!["--net", "ip", "link", "add", "nkprobe0", "type", kind];
    match kind {
        "veth" => args.extend(["peer", "name", "nkprobe1"]),
        "vxlan" => args.extend(["id", "42", "dstport", "4789"]),
        _ => {}
    }
    let o = Command::new("unshare")
        .args(&args)
        .output()
        .expect("unshare (util-linux)");
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    let r = if o.status.success() {
        Ok(())
    } else if [
        "Unknown device type",
        "Operation not supported",
        "No such device",
        "not supported",
    ]
    .iter()
    .any(|m| err.contains(m))
    {
        Err(format!(
            "this kernel ({}) makes no {kind} devices: `ip link add type {kind}` in a private network namespace said: {err}",
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
        ))
    } else {
        panic!(
            "probing for {kind} devices: unshare {args:?} failed ({:?}): {err}",
            o.status
        );
    };
    seen.lock().unwrap().insert(kind.to_string(), r.clone());
    r
}

/// Make a virtual network device named `name` on the host for a container
/// to take (linux.netDevices): one end of a veth pair whose peer is
/// `peer` (returned as `Some(peer)`), or an ifb link (`None`) where the
/// kernel makes no veth. `Err` (the probes' reasons) when it makes neither.
pub fn make_netdev(name: &str, peer: &str) -> Result<Option<String>, String> {
    let veth = netdev_kind("veth");
    let args: Vec<&str> = match (&veth, netdev_kind("ifb")) {
        (Ok(()), _) => vec!["link", "add", name, "type", "veth", "peer", "name", peer],
        (Err(_), Ok(())) => vec!["link", "add", name, "type", "ifb"],
        (Err(v), Err(i)) => return Err(format!("{v}; {i}")),
    };
    let o = Command::new("ip")
        .args(&args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        o.status.success(),
        "ip {args:?} (the probe made one): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(veth.is_ok().then(|| peer.to_string()))
}

/// Whether this kernel makes every network device kind in `kinds` (see
/// [`netdev_kind`]); when not, says on stderr that `what` is skipped and
/// why. For tests whose setup (an engine's bridge network, a veth into a
/// namespace) cannot be built without them, so that nothing of the
/// runtime's can be exercised.
pub fn netdev_kinds_here(kinds: &[&str], what: &str) -> bool {
    for k in kinds {
        if let Err(why) = netdev_kind(k) {
            eprintln!("{what}: skipped: {why}");
            return false;
        }
    }
    true
}
