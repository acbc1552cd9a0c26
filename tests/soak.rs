//! Soak: for a bounded time (NK_SOAK_SECS, 300 by default), NK_SOAK_WORKERS
//! (8) threads drive one state root with a random mix of operations: run in
//! the foreground, create/start/exec/kill/delete, exec -d and kill --all,
//! pause/resume, update. Every command's exit code is checked against what
//! it must be. While containers live, the foreground runtime's descriptors
//! and the container's are checked for leaks. At the end nothing may be
//! left: no state, cgroup, mount, process or zombie.
//!
//! Not part of `make test`: `make soak` runs it (it is #[ignore]d).

use nk_tests::*;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Pids of the commands this test spawned and has not waited for yet: the
/// reaper below must leave those to their Child::wait.
static SPAWNED: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

fn spawn(c: &mut Command) -> Child {
    let mut g = SPAWNED.lock().unwrap();
    let child = c.spawn().expect("spawn");
    g.get_or_insert_with(HashSet::new).insert(child.id());
    child
}

fn waited(child: &Child) {
    if let Some(s) = SPAWNED.lock().unwrap().as_mut() {
        s.remove(&child.id());
    }
}

fn stat_of(pid: &str) -> Option<(char, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.get(s.rfind(')')? + 2..)?;
    let mut f = rest.split(' ');
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Our zombie children that no Child of ours waits for: container
/// processes orphaned to us (we are a subreaper, as a shim is).
fn orphan_zombies() -> Vec<i32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (st, ppid) = stat_of(&name)?;
            (st == 'Z' && ppid == me).then(|| name.parse().ok())?
        })
        .collect()
}

/// Reap orphaned zombies (holding the spawn lock, so none of ours is taken).
fn reap_orphans() -> u64 {
    let g = SPAWNED.lock().unwrap();
    let ours = g.clone().unwrap_or_default();
    let mut n = 0;
    for p in orphan_zombies() {
        if !ours.contains(&(p as u32)) {
            // SAFETY: waitpid on one zombie child that no Child owns.
            if unsafe { libc::waitpid(p, std::ptr::null_mut(), libc::WNOHANG) } == p {
                n += 1;
            }
        }
    }
    n
}

/// A tiny deterministic generator (no dependency): xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct Tally {
    ops: BTreeMap<&'static str, u64>,
    commands: u64,
    failures: Vec<String>,
    fd_checks: u64,
    fd_leaks: Vec<String>,
}

struct Soak {
    root: PathBuf,
    /// `sleep 1000`, with limits.
    sleeper: Bundle,
    /// `read x; exit N` for N in 0..5.
    readers: Vec<Bundle>,
    tally: Mutex<Tally>,
    seq: AtomicU64,
    prefix: String,
}

/// Descriptors this test process passes on to every command it runs
/// (those it inherited without close-on-exec, such as cargo's jobserver):
/// not the runtime's to close.
fn inherited() -> HashSet<u32> {
    std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|&n| {
            // SAFETY: F_GETFD only reads the flags of a descriptor number.
            let f = unsafe { libc::fcntl(n as i32, libc::F_GETFD) };
            f >= 0 && f & libc::FD_CLOEXEC == 0
        })
        .collect()
}

/// Descriptors of `pid` other than stdio and what we passed on, as
/// "fd -> target".
fn fds_of(pid: u32) -> Vec<String> {
    let passed = inherited();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .parse::<u32>()
                .is_ok_and(|n| n > 2 && !passed.contains(&n))
        })
        .map(|e| {
            let t = std::fs::read_link(e.path()).unwrap_or_default();
            format!("{} -> {}", e.file_name().to_string_lossy(), t.display())
        })
        .collect()
}

impl Soak {
    fn bundle(&self) -> String {
        self.sleeper.path()
    }

    fn id(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(runtime());
        c.arg("--root").arg(&self.root).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Run a command to the end; its output goes to files (a container
    /// may inherit them). Returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let d = TempDir::new("nk-soak-out");
        let (o, e) = (d.path().join("o"), d.path().join("e"));
        let mut c = self.cmd(args);
        c.stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap());
        let mut child = spawn(&mut c);
        let st = child.wait().unwrap();
        waited(&child);
        self.tally.lock().unwrap().commands += 1;
        (
            st.code(),
            std::fs::read_to_string(&o).unwrap_or_default(),
            std::fs::read_to_string(&e).unwrap_or_default(),
        )
    }

    /// Run and check the exit code; false (and a failure noted) otherwise.
    fn expect(&self, args: &[&str], code: i32) -> bool {
        let (got, _, err) = self.run(args);
        if got == Some(code) {
            return true;
        }
        self.fail(format!(
            "{args:?}: exit {got:?}, want {code}: {}",
            err.trim()
        ));
        false
    }

    fn fail(&self, what: String) {
        self.tally.lock().unwrap().failures.push(what);
    }

    fn state(&self, id: &str) -> serde_json::Value {
        let (_, out, _) = self.run(&["state", id]);
        serde_json::from_str(&out).unwrap_or(serde_json::Value::Null)
    }

    fn wait_status(&self, id: &str, want: &str) -> bool {
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if self.state(id)["status"] == want {
                return true;
            }
            // A poll interval: the status is asked again.
            std::thread::sleep(Duration::from_millis(20));
        }
        self.fail(format!("{id} never became {want}"));
        false
    }

    /// The container's init has exactly stdio open: nothing of the runtime
    /// leaked into it.
    fn check_init_fds(&self, id: &str) {
        let pid = self.state(id)["pid"].as_u64().unwrap_or(0) as u32;
        if pid == 0 {
            return;
        }
        let fds = fds_of(pid);
        let mut t = self.tally.lock().unwrap();
        t.fd_checks += 1;
        if !fds.is_empty() {
            t.fd_leaks.push(format!("init of {id}: {fds:?}"));
        }
    }

    /// `run` in the foreground: its own descriptors, while the container
    /// waits on stdin, are stdio, the pidfd and the signalfd only.
    fn op_run(&self, rng: &mut Rng) {
        let id = self.id();
        let code = rng.below(5) as usize;
        let d = TempDir::new("nk-soak-run");
        // The program reads a line first: the runtime is looked at meanwhile.
        let mut cmd = Command::new(runtime());
        cmd.arg("--root")
            .arg(&self.root)
            .args(["run", "--bundle", &self.readers[code].path(), &id])
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(d.path().join("o")).unwrap())
            .stderr(std::fs::File::create(d.path().join("e")).unwrap());
        let mut child = spawn(&mut cmd);
        // Running once the state says so.
        let running = {
            let end = Instant::now() + DEADLINE;
            let mut ok = false;
            while Instant::now() < end {
                if self.state(&id)["status"] == "running" {
                    ok = true;
                    break;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            ok
        };
        if running {
            // "running" shows once start has removed exec.fifo, a moment
            // before it closes it: look once the runtime is in its wait
            // loop (it has its signalfd), where it stays until our line.
            let end = Instant::now() + DEADLINE;
            let mut fds = fds_of(child.id());
            while !fds.iter().any(|f| f.contains("anon_inode:[signalfd]")) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(5));
                fds = fds_of(child.id());
            }
            let bad: Vec<_> = fds
                .iter()
                .filter(|f| {
                    !f.contains("anon_inode:[pidfd]") && !f.contains("anon_inode:[signalfd]")
                })
                .cloned()
                .collect();
            let mut t = self.tally.lock().unwrap();
            t.fd_checks += 1;
            if !bad.is_empty() || fds.len() > 2 {
                t.fd_leaks.push(format!("run {id}: {fds:?}"));
            }
        }
        let _ = child.stdin.take().map(|mut s| s.write_all(b"go\n"));
        let st = child.wait().unwrap();
        waited(&child);
        self.tally.lock().unwrap().commands += 1;
        if st.code() != Some(code as i32) {
            self.fail(format!(
                "run {id}: exit {:?}, want {code}: {}",
                st.code(),
                std::fs::read_to_string(d.path().join("e")).unwrap_or_default()
            ));
        }
    }

    /// create, start, exec (its status), kill, wait for stopped, delete.
    fn op_lifecycle(&self, rng: &mut Rng) {
        let id = self.id();
        let b = self.bundle();
        if !self.expect(&["create", "--bundle", &b, &id], 0) {
            let _ = self.run(&["delete", "-f", &id]);
            return;
        }
        if self.expect(&["start", &id], 0) {
            self.check_init_fds(&id);
            let code = rng.below(4) as i32;
            self.expect(&["exec", &id, "sh", "-c", &format!("exit {code}")], code);
            self.expect(&["kill", &id, "KILL"], 0);
            if self.wait_status(&id, "stopped") {
                self.expect(&["delete", &id], 0);
                return;
            }
        }
        let _ = self.run(&["delete", "-f", &id]);
    }

    /// run -d, exec -d a second process, kill --all, delete -f.
    fn op_exec_detached(&self) {
        let id = self.id();
        let b = self.bundle();
        if self.expect(&["run", "-d", "--bundle", &b, &id], 0) {
            self.expect(&["exec", "-d", &id, "sleep", "1000"], 0);
            self.expect(&["kill", "--all", &id, "KILL"], 0);
            self.wait_status(&id, "stopped");
        }
        self.expect(&["delete", "-f", &id], 0);
    }

    /// run -d, pause, resume (statuses checked), delete -f.
    fn op_pause(&self) {
        let id = self.id();
        let b = self.bundle();
        if self.expect(&["run", "-d", "--bundle", &b, &id], 0) && self.expect(&["pause", &id], 0) {
            if self.state(&id)["status"] != "paused" {
                self.fail(format!("{id}: not paused after pause"));
            }
            self.expect(&["resume", &id], 0);
            if self.state(&id)["status"] != "running" {
                self.fail(format!("{id}: not running after resume"));
            }
        }
        self.expect(&["delete", "-f", &id], 0);
    }

    /// run -d, update the pids limit, check the cgroup file, delete -f.
    fn op_update(&self, rng: &mut Rng) {
        let id = self.id();
        let b = self.bundle();
        let n = 50 + rng.below(50);
        if self.expect(&["run", "-d", "--bundle", &b, &id], 0)
            && self.expect(&["update", "--pids-limit", &n.to_string(), &id], 0)
        {
            let f = format!("/sys/fs/cgroup/pids/nano-sandbox/{id}/pids.max");
            let got = std::fs::read_to_string(&f).unwrap_or_default();
            if Path::new("/sys/fs/cgroup/pids").exists() && got.trim() != n.to_string() {
                self.fail(format!("{id}: pids.max is {got:?}, want {n}"));
            }
        }
        self.expect(&["delete", "-f", &id], 0);
    }
}

#[test]
#[ignore = "long: run by `make soak`"]
fn soak() {
    require_root();
    let secs: u64 = std::env::var("NK_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let workers: u64 = std::env::var("NK_SOAK_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    // Orphaned container processes come to us; we reap them as a shim would.
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let root_dir = TempDir::new("nk-soak-root");
    let limits = json!({"pids": {"limit": 100}, "memory": {"limit": 134217728}});
    let mut sleeper = Bundle::new(&["sleep", "1000"]);
    sleeper.edit(|c| c["linux"]["resources"] = limits.clone());
    let readers = (0..5)
        .map(|n| {
            let mut b = Bundle::new(&["sh", "-c", &format!("read x; exit {n}")]);
            b.edit(|c| c["linux"]["resources"] = limits.clone());
            b
        })
        .collect();
    let s = Soak {
        root: std::fs::canonicalize(root_dir.path()).unwrap(),
        sleeper,
        readers,
        tally: Mutex::new(Tally::default()),
        seq: AtomicU64::new(0),
        prefix: unique_id("soak"),
    };
    let end = Instant::now() + Duration::from_secs(secs);
    let reaped = AtomicU64::new(0);
    std::thread::scope(|sc| {
        for w in 0..workers {
            let s = &s;
            let reaped = &reaped;
            sc.spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1).wrapping_mul(0x1000_0001));
                while Instant::now() < end {
                    let op = match rng.below(5) {
                        0 => {
                            s.op_run(&mut rng);
                            "run"
                        }
                        1 => {
                            s.op_lifecycle(&mut rng);
                            "create/start/exec/kill/delete"
                        }
                        2 => {
                            s.op_exec_detached();
                            "run -d/exec -d/kill --all/delete"
                        }
                        3 => {
                            s.op_pause();
                            "pause/resume"
                        }
                        _ => {
                            s.op_update(&mut rng);
                            "update"
                        }
                    };
                    *s.tally.lock().unwrap().ops.entry(op).or_default() += 1;
                    reaped.fetch_add(reap_orphans(), Ordering::Relaxed);
                }
            });
        }
    });
    // What is left: state, cgroups, mounts, processes, zombies.
    let mut leaks = Vec::new();
    let left_state: Vec<_> = std::fs::read_dir(&s.root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if !left_state.is_empty() {
        leaks.push(format!("state: {left_state:?}"));
    }
    for m in cgroup_mounts() {
        for e in std::fs::read_dir(m.join("nano-sandbox"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with(&s.prefix) {
                leaks.push(format!("cgroup {}", e.path().display()));
            }
        }
    }
    let root_s = s.root.display().to_string();
    for l in std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
    {
        if l.contains(&root_s) || l.contains(&s.prefix) {
            leaks.push(format!("mount {l}"));
        }
    }
    // Processes: in one of our cgroups (gone above) or holding our root.
    let ours = leftovers(&s.root, "-none-", &[], &s.prefix);
    for p in &ours.0 {
        if p.starts_with("process") {
            leaks.push(p.clone());
        }
    }
    let deadline = Instant::now() + DEADLINE;
    let mut zombies = orphan_zombies();
    while !zombies.is_empty() && Instant::now() < deadline {
        reaped.fetch_add(reap_orphans(), Ordering::Relaxed);
        zombies = orphan_zombies();
    }
    if !zombies.is_empty() {
        leaks.push(format!("zombies: {zombies:?}"));
    }
    let t = s.tally.into_inner().unwrap();
    let total: u64 = t.ops.values().sum();
    println!(
        "\nsoak: {secs} s, {workers} workers: {total} operations, {} runtime commands",
        t.commands
    );
    for (op, n) in &t.ops {
        println!("  {op}: {n}");
    }
    println!(
        "  failures: {}; descriptor checks: {}, leaks: {}; orphans reaped: {}; left at the end: {}",
        t.failures.len(),
        t.fd_checks,
        t.fd_leaks.len(),
        reaped.load(Ordering::Relaxed),
        if leaks.is_empty() {
            "nothing".to_string()
        } else {
            leaks.join("; ")
        }
    );
    assert!(total > 0);
    assert!(
        t.failures.is_empty(),
        "failures:\n{}",
        t.failures.join("\n")
    );
    assert!(
        t.fd_leaks.is_empty(),
        "descriptor leaks:\n{}",
        t.fd_leaks.join("\n")
    );
    assert!(leaks.is_empty(), "left behind:\n{}", leaks.join("\n"));
}
