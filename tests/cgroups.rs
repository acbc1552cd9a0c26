//! Cgroups on this host, as root: every resource checked from inside the
//! container (its /sys/fs/cgroup view) and from the host's cgroup files,
//! plus update, pause/resume, events, OOM, kill --all, delete with leftover
//! processes, cgroupsPath forms and the cgroup namespace.
//!
//! The host is hybrid (v1 controllers, cgroup2 with only hugetlb). The v2
//! manager is also run here for real: in a private mount namespace where
//! only cgroup2 is mounted, so nk-runtime sees a pure v2 host (device eBPF
//! filter, hugetlb, freezer, cgroup.kill); memory, cpu, pids and io on v2
//! need the VM test, where every controller exists.

use nk_tests::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CG: &str = "/sys/fs/cgroup";

/// The network test mounts a new v1 hierarchy for a few seconds, which every
/// process then lists in /proc/<pid>/cgroup: tests that read those lines
/// hold this for reading, that test for writing.
static PROC_CGROUP_LINES: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// A file of a cgroup on the host, trimmed ("" when missing).
fn host(ctrl: &str, path: &str, file: &str) -> String {
    std::fs::read_to_string(format!("{CG}/{ctrl}{path}/{file}"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn host_dir(ctrl: &str, path: &str) -> PathBuf {
    PathBuf::from(format!("{CG}/{ctrl}{path}"))
}

/// The hierarchies a container's cgroup lives in on this kind of host.
fn hierarchies() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(CG)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Does the cgroup exist in any hierarchy?
fn cgroup_anywhere(path: &str) -> Vec<String> {
    hierarchies()
        .into_iter()
        .filter(|h| host_dir(h, path).exists())
        .collect()
}

/// Remove empty parent cgroups a test made (ignored when others use them).
fn rmdir_parents(path: &str) {
    let mut p = Path::new(path).to_path_buf();
    while p.pop() && p != Path::new("/") {
        for h in hierarchies() {
            let _ = std::fs::remove_dir(host_dir(&h, &p.display().to_string()));
        }
    }
}

/// Huge pages as this host has them for hugetlb limits: the page size as
/// the cgroup files name it ("2MB", "1GB", "64KB"), its bytes, and the
/// hierarchy under /sys/fs/cgroup whose files take the limit ("hugetlb", a
/// v1 one, or "unified", the cgroup2 one).
struct HugeTlb {
    size: String,
    bytes: u64,
    hier: &'static str,
}

impl HugeTlb {
    /// The limit file of that page size in a cgroup of `hier`.
    fn limit_file(&self) -> String {
        match self.hier {
            "unified" => format!("hugetlb.{}.max", self.size),
            _ => format!("hugetlb.{}.limit_in_bytes", self.size),
        }
    }
}

/// The kernel's name for a huge page size (mm/hugetlb_cgroup.c, mem_fmt).
fn huge_page_name(bytes: u64) -> String {
    const K: u64 = 1 << 10;
    const M: u64 = 1 << 20;
    const G: u64 = 1 << 30;
    if bytes >= G {
        format!("{}GB", bytes / G)
    } else if bytes >= M {
        format!("{}MB", bytes / M)
    } else {
        format!("{}KB", bytes / K)
    }
}

/// The huge page sizes this kernel has, in bytes, smallest first
/// (/sys/kernel/mm/hugepages/hugepages-<n>kB); empty without huge pages.
fn huge_page_sizes() -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let kb: u64 = n
                        .strip_prefix("hugepages-")?
                        .strip_suffix("kB")?
                        .parse()
                        .ok()?;
                    Some(kb << 10)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// hugetlb on this host, or why a hugetlb check cannot run here. The page
/// size is the kernel's default one (Hugepagesize in /proc/meminfo) when it
/// has several, so that a test's pool of two pages stays small.
fn hugetlb_here() -> Result<HugeTlb, String> {
    let sizes = huge_page_sizes();
    let default = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Hugepagesize:"))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map(|kb| kb << 10);
    let bytes = match default.filter(|d| sizes.contains(d)) {
        Some(d) => d,
        None => *sizes.first().ok_or(
            "this kernel has no huge pages (/sys/kernel/mm/hugepages is empty or missing)",
        )?,
    };
    let size = huge_page_name(bytes);
    let hier = if Path::new(&format!("{CG}/hugetlb/hugetlb.{size}.limit_in_bytes")).exists() {
        "hugetlb"
    } else if std::fs::read_to_string(format!("{CG}/unified/cgroup.controllers"))
        .is_ok_and(|s| s.split_whitespace().any(|x| x == "hugetlb"))
    {
        "unified"
    } else {
        return Err(format!(
            "no hugetlb controller here ({CG}/hugetlb has no hugetlb.{size}.limit_in_bytes, \
             {CG}/unified/cgroup.controllers has no hugetlb)"
        ));
    };
    Ok(HugeTlb { size, bytes, hier })
}

/// Run a command that leaves a process behind (create, run -d, exec -d):
/// that process inherits stdout and stderr, so they go to a file, not to a
/// pipe whose end would never come. Returns success and stderr.
fn detached(mut cmd: Command) -> (bool, String) {
    let f = TempDir::new("nk-err");
    let err = f.path().join("stderr");
    let st = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    (
        st.success(),
        std::fs::read_to_string(&err).unwrap_or_default(),
    )
}

/// A runtime command with --root set, for [`detached`].
fn rcmd(root: &Root, args: &[&str]) -> Command {
    let mut c = Command::new(&root.bin);
    c.arg("--root").arg(root.dir.path()).args(args);
    c
}

/// A running container with resources, in its own root and cgroup.
struct Ctr {
    root: Root,
    id: String,
    path: String,
    _bundle: Bundle,
}

impl Ctr {
    /// `run -d` with linux.resources = `res` and a unique cgroupsPath.
    fn start(args: &[&str], res: Value, edit: impl FnOnce(&mut Value)) -> Ctr {
        let c = Ctr::create(args, res, edit, &[]);
        c.root.ok(&["start", &c.id]);
        c
    }

    fn create(args: &[&str], res: Value, edit: impl FnOnce(&mut Value), globals: &[&str]) -> Ctr {
        let root = Root::new();
        let id = unique_id("cg");
        let path = format!("/nk-cgtest/{id}");
        let mut bundle = Bundle::new(args);
        bundle.edit(|c| {
            c["linux"]["resources"] = res;
            c["linux"]["cgroupsPath"] = json!(path);
            edit(c);
        });
        let mut cmd = Command::new(&root.bin);
        cmd.arg("--root").arg(root.dir.path()).args(globals).args([
            "create",
            "--bundle",
            &bundle.path(),
            &id,
        ]);
        let (ok, err) = detached(cmd);
        assert!(ok, "create {id}: {err}");
        Ctr {
            root,
            id,
            path,
            _bundle: bundle,
        }
    }

    /// Run a shell command inside; returns stdout (asserts success).
    fn sh(&self, cmd: &str) -> String {
        let o = self.sh_out(cmd);
        assert!(
            o.status.success(),
            "exec {cmd:?} in {}: {:?}\n{}{}",
            self.id,
            o.status,
            stdout(&o),
            stderr(&o)
        );
        stdout(&o).trim().to_string()
    }

    fn sh_out(&self, cmd: &str) -> std::process::Output {
        self.root.run(&["exec", &self.id, "sh", "-c", cmd])
    }

    fn nk(&self, args: &[&str]) -> std::process::Output {
        self.root.run(args)
    }

    fn pid(&self) -> i32 {
        self.root.state(&self.id)["pid"].as_i64().unwrap() as i32
    }

    fn h(&self, ctrl: &str, file: &str) -> String {
        host(ctrl, &self.path, file)
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = self.root.run(&["delete", "-f", &self.id]);
        rmdir_parents(&self.path);
    }
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Poll for a state; `secs` is what it takes on an idle machine, and the
/// deadline is never shorter than DEADLINE (a loaded machine is slower).
fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs).max(DEADLINE);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// A loop device over a temp file, detached on drop.
struct LoopDev {
    dev: String,
    major: u32,
    minor: u32,
    _file: TempDir,
}

impl LoopDev {
    fn new() -> LoopDev {
        let d = TempDir::new("nk-loop");
        let img = d.path().join("img");
        std::fs::write(&img, vec![0u8; 16 << 20]).unwrap();
        let o = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(o.status.success(), "losetup: {}", stderr(&o));
        let dev = stdout(&o).trim().to_string();
        let name = Path::new(&dev)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mm = std::fs::read_to_string(format!("/sys/block/{name}/dev")).unwrap();
        let (ma, mi) = mm.trim().split_once(':').unwrap();
        LoopDev {
            dev,
            major: ma.parse().unwrap(),
            minor: mi.parse().unwrap(),
            _file: d,
        }
    }

    fn name(&self) -> String {
        Path::new(&self.dev)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

#[test]
fn memory_limits_seen_inside_and_on_host() {
    let _lines = PROC_CGROUP_LINES.read().unwrap_or_else(|e| e.into_inner());
    let c = Ctr::start(
        &["sleep", "1000"],
        json!({"memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                          "swappiness": 20, "disableOOMKiller": false}}),
        |_| {},
    );
    for (file, want) in [
        ("memory.limit_in_bytes", "67108864"),
        ("memory.soft_limit_in_bytes", "33554432"),
        ("memory.memsw.limit_in_bytes", "134217728"),
        ("memory.swappiness", "20"),
    ] {
        assert_eq!(c.h("memory", file), want, "host {file}");
        assert_eq!(
            c.sh(&format!("cat /sys/fs/cgroup/memory/{file}")),
            want,
            "inside {file}"
        );
    }
    assert!(c
        .sh("cat /sys/fs/cgroup/memory/memory.oom_control")
        .contains("oom_kill_disable 0"));
    // The default cgroup mount ("nosuid", "noexec", "nodev", "relatime",
    // "ro"): each hierarchy is a bind of the container's directory, a mount
    // with exactly those flags, below a tmpfs root the container's root
    // cannot add to (0555).
    let mi = c.sh("grep ' /sys/fs/cgroup/' /proc/self/mountinfo");
    let dirs = c.sh("find /sys/fs/cgroup -mindepth 1 -maxdepth 1 -type d");
    assert!(!dirs.is_empty());
    assert_eq!(mi.lines().count(), dirs.lines().count(), "{mi}\n{dirs}");
    for l in mi.lines() {
        assert_eq!(
            l.split(' ').nth(5),
            Some("ro,nosuid,nodev,noexec,relatime"),
            "{l}"
        );
    }
    assert_eq!(c.sh("stat -c %a /sys/fs/cgroup"), "555");
    // The init is in that cgroup, in every v1 hierarchy and in the unified one.
    let pc = std::fs::read_to_string(format!("/proc/{}/cgroup", c.pid())).unwrap();
    for line in pc.lines() {
        assert!(line.ends_with(&c.path), "{line} (want {})", c.path);
    }
}

#[test]
fn cpu_and_cpuset_knobs() {
    let c = Ctr::start(
        &["sleep", "1000"],
        json!({"cpu": {"shares": 512, "quota": 5000, "period": 100000, "burst": 2000,
                       "idle": 0, "cpus": "0", "mems": "0"}}),
        |_| {},
    );
    for (ctrl, file, want) in [
        ("cpu", "cpu.shares", "512"),
        ("cpu", "cpu.cfs_quota_us", "5000"),
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_burst_us", "2000"),
        ("cpu", "cpu.idle", "0"),
        ("cpuset", "cpuset.cpus", "0"),
        ("cpuset", "cpuset.mems", "0"),
    ] {
        assert_eq!(c.h(ctrl, file), want, "host {file}");
        assert_eq!(
            c.sh(&format!("cat /sys/fs/cgroup/{ctrl}/{file}")),
            want,
            "inside {file}"
        );
    }
    // The cpuset applies to the container's processes.
    assert!(c
        .sh("grep Cpus_allowed_list /proc/self/status")
        .ends_with("\t0"));
    // The quota throttles a busy loop: 5% of one CPU, which the loop
    // reaches even on a busy host.
    let before: u64 = c
        .sh("cat /sys/fs/cgroup/cpuacct/cpuacct.usage")
        .parse()
        .unwrap();
    let t = Instant::now();
    c.sh("timeout 1 sh -c 'while :; do :; done' || true");
    let wall = t.elapsed().as_nanos() as u64;
    let used = c.h("cpuacct", "cpuacct.usage").parse::<u64>().unwrap() - before;
    let throttled: u64 = c
        .h("cpu", "cpu.stat")
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(throttled > 0, "no CFS throttling under a 5% quota");
    assert!(
        used < wall / 2,
        "a 5% quota let the loop use {used} ns of {wall} ns"
    );
}

#[test]
fn realtime_runtime_in_its_parents_budget() {
    // cpu.rt_runtime_us must fit in the parent's budget: give the parent one.
    let parent = format!("/nk-cgtest-rt-{}", unique_id("p"));
    std::fs::create_dir_all(host_dir("cpu", &parent)).unwrap();
    std::fs::write(host_dir("cpu", &parent).join("cpu.rt_runtime_us"), "20000").unwrap();
    let root = Root::new();
    let id = unique_id("rt");
    let path = format!("{parent}/c");
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.edit(|c| {
        c["linux"]["resources"] =
            json!({"cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 5000}});
        c["linux"]["cgroupsPath"] = json!(path);
    });
    let (ok, err) = detached(rcmd(&root, &["run", "-d", "--bundle", &b.path(), &id]));
    let inside = root.run(&["exec", &id, "cat", "/sys/fs/cgroup/cpu/cpu.rt_runtime_us"]);
    let host_rt = host("cpu", &path, "cpu.rt_runtime_us");
    let host_period = host("cpu", &path, "cpu.rt_period_us");
    // Too large a runtime is refused with the parent's budget in the message.
    let id2 = unique_id("rt2");
    b.edit(|c| {
        c["linux"]["resources"]["cpu"]["realtimeRuntime"] = json!(50000);
        c["linux"]["cgroupsPath"] = json!(format!("{parent}/c2"));
    });
    let (ok2, err2) = detached(rcmd(&root, &["run", "-d", "--bundle", &b.path(), &id2]));
    root.run(&["delete", "-f", &id]);
    root.run(&["delete", "-f", &id2]);
    let _ = std::fs::remove_dir(host_dir("cpu", &format!("{parent}/c2")));
    for h in hierarchies() {
        let _ = std::fs::remove_dir(host_dir(&h, &parent));
    }
    assert!(ok, "run: {err}");
    assert_eq!(host_rt, "5000");
    assert_eq!(host_period, "1000000");
    assert_eq!(stdout(&inside).trim(), "5000");
    assert!(!ok2);
    assert!(err2.contains("cpu.rt_runtime_us = 20000"), "{err2}");
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let c = Ctr::start(&["sleep", "1000"], json!({"pids": {"limit": 12}}), |_| {});
    assert_eq!(c.h("pids", "pids.max"), "12");
    assert_eq!(c.sh("cat /sys/fs/cgroup/pids/pids.max"), "12");
    // The classic bomb, left to run for a moment.
    let (ok, err) = detached(rcmd(
        &c.root,
        &["exec", "-d", &c.id, "sh", "-c", "b() { b | b & }; b"],
    ));
    assert!(ok, "{err}");
    wait_until("the bomb to hit the limit", 10, || {
        c.h("pids", "pids.events")
            .strip_prefix("max ")
            .is_some_and(|n| n.parse::<u64>().unwrap_or(0) > 0)
    });
    let cur: u64 = c.h("pids", "pids.current").parse().unwrap();
    assert!(cur <= 12, "pids.current {cur} above the limit");
    // kill --all stops the bomb and the container.
    c.root.ok(&["kill", "--all", &c.id, "KILL"]);
    wait_until("the cgroup to empty", 10, || {
        c.h("pids", "pids.current") == "0"
    });
    c.root.wait_status(&c.id, "stopped");
}

/// Can BFQ schedule `dev`? It is set as the device's scheduler when the
/// kernel has it (built in, or as a module modprobe can load); false on a
/// kernel without it, where blkio weights do not exist.
fn use_bfq(dev: &str) -> bool {
    let sched = format!("/sys/block/{dev}/queue/scheduler");
    let offered = || {
        std::fs::read_to_string(&sched)
            .unwrap_or_default()
            .contains("bfq")
    };
    if !offered() {
        let _ = Command::new("modprobe")
            .arg("bfq")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    offered() && std::fs::write(&sched, "bfq").is_ok()
}

/// The blkio weight files exist only with BFQ (CFQ left Linux in 5.0).
fn blkio_weights_here() -> bool {
    ["blkio.bfq.weight", "blkio.weight"]
        .iter()
        .any(|f| Path::new(CG).join("blkio").join(f).exists())
}

#[test]
fn block_io_weights_and_throttles() {
    let l = LoopDev::new();
    // BFQ on our own loop device, so per-device weights apply to it.
    let bfq = use_bfq(&l.name());
    let (ma, mi) = (l.major, l.minor);
    let dev = format!("{ma}:{mi}");
    let weights = json!({
        "weight": 300,
        "weightDevice": [{"major": ma, "minor": mi, "weight": 200}]
    });
    let mut block_io = json!({
        "throttleWriteBpsDevice": [{"major": ma, "minor": mi, "rate": 1048576}],
        "throttleReadIOPSDevice": [{"major": ma, "minor": mi, "rate": 50}]
    });
    if bfq {
        for (k, v) in weights.as_object().unwrap() {
            block_io[k] = v.clone();
        }
    } else {
        // No BFQ in this kernel: weights cannot be set. The runtime must say
        // so, naming the field and the scheduler, and leave nothing.
        println!("BFQ is not available on this kernel: blkio weights not exercised; checked the runtime's refusal instead");
        let root = Root::new();
        let id = unique_id("cg-noweight");
        let path = format!("/nk-cgtest/{id}");
        let mut b = Bundle::new(&["sleep", "1000"]);
        b.edit(|c| {
            c["linux"]["resources"] = json!({"blockIO": weights});
            c["linux"]["cgroupsPath"] = json!(path);
        });
        let (ok, err) = detached(rcmd(&root, &["create", "--bundle", &b.path(), &id]));
        assert!(!ok, "weights were accepted without BFQ");
        assert!(
            err.contains("linux.resources.blockIO.weight") && err.contains("BFQ"),
            "{err}"
        );
        assert!(root.ids().is_empty(), "state left: {:?}", root.ids());
        assert!(cgroup_anywhere(&path).is_empty(), "cgroup left: {path}");
        rmdir_parents(&path);
    }
    let c = Ctr::start(&["sleep", "1000"], json!({ "blockIO": block_io }), |cfg| {
        cfg["linux"]["devices"] =
            json!([{"path": "/dev/nkloop", "type": "b", "major": ma, "minor": mi}]);
    });
    if bfq {
        assert_eq!(c.h("blkio", "blkio.bfq.weight"), "300");
        assert!(c
            .h("blkio", "blkio.bfq.weight_device")
            .contains(&format!("{dev} 200")));
        assert_eq!(c.sh("cat /sys/fs/cgroup/blkio/blkio.bfq.weight"), "300");
    }
    assert_eq!(
        c.h("blkio", "blkio.throttle.write_bps_device"),
        format!("{dev} 1048576")
    );
    assert_eq!(
        c.h("blkio", "blkio.throttle.read_iops_device"),
        format!("{dev} 50")
    );
    // 2 MiB of direct writes at 1 MiB/s take well over a second (a lower
    // bound: a loaded machine only makes it slower).
    let t = Instant::now();
    c.sh("dd if=/dev/zero of=/dev/nkloop bs=64k count=32 oflag=direct 2>/dev/null");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "2 MiB at 1 MiB/s took {took:?}"
    );
    // The writes are counted in the statistics.
    let ev: Value = serde_json::from_str(&stdout(&c.nk(&["events", "--stats", &c.id]))).unwrap();
    let writes = ev["data"]["blkio"]["ioServiceBytesRecursive"]
        .as_array()
        .unwrap()
        .iter()
        // Go's omitempty drops a zero minor.
        .find(|e| {
            e["major"] == ma
                && e["minor"].as_u64().unwrap_or(0) == u64::from(mi)
                && e["op"] == "Write"
        })
        .map(|e| e["value"].as_u64().unwrap())
        .unwrap_or(0);
    assert!(writes >= 2 << 20, "blkio stats: {}", ev["data"]["blkio"]);
    if bfq {
        let _ = std::fs::write(format!("/sys/block/{}/queue/scheduler", l.name()), "none");
    }
}

#[test]
fn hugetlb_limits_go_through_the_unified_hierarchy() {
    let hp = match hugetlb_here() {
        Ok(hp) if hp.hier == "unified" => hp,
        Ok(hp) => {
            eprintln!(
                "skipped: hugetlb is a v1 hierarchy here ({CG}/{}), not in the unified one",
                hp.hier
            );
            return;
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let (size, page) = (hp.size.as_str(), hp.bytes);
    let c = Ctr::start(
        &["sleep", "1000"],
        json!({"hugepageLimits": [{"pageSize": size, "limit": page}]}),
        |cfg| {
            cfg["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/tmp", "type": "hugetlbfs", "source": "hugetlbfs",
                "options": [format!("pagesize={}K", page >> 10)]
            }));
        },
    );
    assert_eq!(
        c.h("unified", &format!("hugetlb.{size}.max")),
        page.to_string()
    );
    let rsvd = format!("hugetlb.{size}.rsvd.max");
    if host_dir("unified", &c.path).join(&rsvd).exists() {
        assert_eq!(c.h("unified", &rsvd), page.to_string());
    }
    // Inside, the container is in that cgroup2 directory (runc's view of a
    // hybrid host shows only the v1 hierarchies).
    assert_eq!(
        c.sh("grep ^0:: /proc/self/cgroup"),
        format!("0::{}", c.path)
    );
    // Enforcement needs huge pages in the pool: make two, put back after.
    let nr = format!(
        "/sys/kernel/mm/hugepages/hugepages-{}kB/nr_hugepages",
        page >> 10
    );
    let before: u64 = std::fs::read_to_string(&nr)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if before < 2 {
        std::fs::write(&nr, "2").unwrap();
    }
    let have: u64 = std::fs::read_to_string(&nr)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let first = c.sh_out(&format!("fallocate -l {page} /tmp/a"));
    let second = c.sh_out(&format!("fallocate -l {page} /tmp/b"));
    let stats: Value = serde_json::from_str(&stdout(&c.nk(&["events", "--stats", &c.id]))).unwrap();
    c.sh("rm -f /tmp/a /tmp/b");
    if before < 2 {
        std::fs::write(&nr, before.to_string()).unwrap();
    }
    assert!(
        have >= 2,
        "could not reserve 2 huge pages of {size} ({nr} = {have})"
    );
    assert!(
        first.status.success(),
        "first {size} page: {}",
        stderr(&first)
    );
    assert!(
        !second.status.success(),
        "a second {size} page passed the {size} limit"
    );
    assert_eq!(
        stats["data"]["hugetlb"][size]["usage"], page,
        "{}",
        stats["data"]["hugetlb"]
    );
}

/// Device nodes from the host bound into the container's /dev: open(2)
/// on them is decided by the devices cgroup alone.
fn with_device_binds(cfg: &mut Value) {
    let mounts = cfg["mounts"].as_array_mut().unwrap();
    for (dst, src) in [
        ("/dev/nkfuse", "/dev/fuse"),
        ("/dev/nklc", "/dev/loop-control"),
    ] {
        mounts
            .push(json!({"destination": dst, "type": "bind", "source": src, "options": ["bind"]}));
    }
}

const PROBE: &str =
    "for f in nkfuse nklc; do (: < /dev/$f) 2>/dev/null && echo $f-r-ok || echo $f-r-no; \
                     (: > /dev/$f) 2>/dev/null && echo $f-w-ok || echo $f-w-no; done";

#[test]
fn devices_denied_and_allowed() {
    // Two character devices every machine of this kind has once their
    // modules are loaded (built in on Debian's kernels).
    for (d, module) in [("/dev/fuse", "fuse"), ("/dev/loop-control", "loop")] {
        if !Path::new(d).exists() {
            let _ = Command::new("modprobe").arg(module).status();
        }
        assert!(
            Path::new(d).exists(),
            "{d} is needed for this test, and modprobe {module} did not make it"
        );
    }
    let c = Ctr::start(
        &["sleep", "1000"],
        json!({"devices": [{"allow": false, "access": "rwm"},
                           {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "r"}]}),
        with_device_binds,
    );
    assert_eq!(
        c.sh(PROBE).split_whitespace().collect::<Vec<_>>(),
        ["nkfuse-r-ok", "nkfuse-w-no", "nklc-r-no", "nklc-w-no"]
    );
    let list = c.h("devices", "devices.list");
    assert!(list.lines().any(|l| l == "c 10:229 r"), "{list}");
    assert!(!list.contains("a *:* rwm"), "{list}");
    // Update: allow loop-control, drop fuse; no disruptive deny-all.
    let f = TempDir::new("nk-res");
    let res = f.path().join("r.json");
    std::fs::write(
        &res,
        json!({"devices": [{"allow": false, "access": "rwm"},
                           {"allow": true, "type": "c", "major": 10, "minor": 237, "access": "rw"},
                           {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                           {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]})
        .to_string(),
    )
    .unwrap();
    c.root
        .ok(&["update", "--resources", res.to_str().unwrap(), &c.id]);
    assert_eq!(
        c.sh(PROBE).split_whitespace().collect::<Vec<_>>(),
        ["nkfuse-r-no", "nkfuse-w-no", "nklc-r-ok", "nklc-w-ok"]
    );
    let list = c.h("devices", "devices.list");
    assert!(list.lines().any(|l| l == "c 10:237 rw"), "{list}");
}

#[test]
fn update_changes_every_knob() {
    let l = LoopDev::new();
    let c = Ctr::start(
        &["sleep", "1000"],
        json!({"memory": {"limit": 67108864}, "cpu": {"shares": 1024}, "pids": {"limit": 100}}),
        |_| {},
    );
    let cpu = if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        "1"
    } else {
        "0"
    };
    c.root.ok(&[
        "update",
        "--memory",
        "48m",
        "--memory-swap",
        "96m",
        "--memory-reservation",
        "16m",
        "--cpu-share",
        "256",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "50000",
        "--cpu-burst",
        "5000",
        "--cpuset-cpus",
        cpu,
        "--cpuset-mems",
        "0",
        "--pids-limit",
        "33",
        &c.id,
    ]);
    // blkio weights exist only with BFQ: set one where the kernel has it,
    // else check the clear refusal (and that it changed nothing).
    let weight = blkio_weights_here();
    if weight {
        c.root.ok(&["update", "--blkio-weight", "200", &c.id]);
    } else {
        println!("no blkio weight files (no BFQ in this kernel): --blkio-weight not exercised; checked the runtime's refusal instead");
        let o = c.nk(&["update", "--blkio-weight", "200", &c.id]);
        assert!(!o.status.success(), "--blkio-weight accepted without BFQ");
        assert!(
            stderr(&o).contains("blockIO.weight") && stderr(&o).contains("BFQ"),
            "{}",
            stderr(&o)
        );
    }
    for (ctrl, file, want) in [
        ("memory", "memory.limit_in_bytes", (48u64 << 20).to_string()),
        (
            "memory",
            "memory.memsw.limit_in_bytes",
            (96u64 << 20).to_string(),
        ),
        (
            "memory",
            "memory.soft_limit_in_bytes",
            (16u64 << 20).to_string(),
        ),
        ("cpu", "cpu.shares", "256".into()),
        ("cpu", "cpu.cfs_quota_us", "20000".into()),
        ("cpu", "cpu.cfs_period_us", "50000".into()),
        ("cpu", "cpu.cfs_burst_us", "5000".into()),
        ("cpuset", "cpuset.cpus", cpu.into()),
        ("cpuset", "cpuset.mems", "0".into()),
        ("pids", "pids.max", "33".into()),
    ]
    .into_iter()
    .chain(weight.then(|| ("blkio", "blkio.bfq.weight", "200".to_string())))
    {
        assert_eq!(c.h(ctrl, file), want, "host {file}");
        assert_eq!(
            c.sh(&format!("cat /sys/fs/cgroup/{ctrl}/{file}")),
            want,
            "inside {file}"
        );
    }
    // cpu.idle makes the group SCHED_IDLE: the kernel then shows the
    // minimum shares (3) and refuses new ones.
    c.root.ok(&["update", "--cpu-idle", "1", &c.id]);
    assert_eq!(c.h("cpu", "cpu.idle"), "1");
    assert_eq!(c.h("cpu", "cpu.shares"), "3");
    assert_eq!(c.sh("cat /sys/fs/cgroup/cpu/cpu.idle"), "1");
    let o = c.nk(&["update", "--cpu-share", "512", &c.id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cpu.shares"), "{}", stderr(&o));
    c.root
        .ok(&["update", "--cpu-idle", "0", "--cpu-share", "300", &c.id]);
    assert_eq!(c.h("cpu", "cpu.shares"), "300");
    // The JSON document, from a file: the knobs that have no flag.
    let f = TempDir::new("nk-res");
    let res = f.path().join("r.json");
    let (ma, mi) = (l.major, l.minor);
    let mut doc = json!({
        "memory": {"swappiness": 5, "disableOOMKiller": true, "kernelTCP": 4194304},
        "cpu": {"quota": -1},
        "blockIO": {"throttleReadBpsDevice": [{"major": ma, "minor": mi, "rate": 2097152}],
                    "throttleWriteIOPSDevice": [{"major": ma, "minor": mi, "rate": 77}]}
    });
    // Two pages of the host's size, where the host has hugetlb.
    let huge = hugetlb_here();
    match &huge {
        Ok(hp) => {
            doc["hugepageLimits"] = json!([{"pageSize": hp.size, "limit": 2 * hp.bytes}]);
        }
        Err(why) => eprintln!("hugepageLimits left out: {why}"),
    }
    std::fs::write(&res, doc.to_string()).unwrap();
    c.root.ok(&["update", "-r", res.to_str().unwrap(), &c.id]);
    assert_eq!(c.h("memory", "memory.swappiness"), "5");
    assert!(c
        .h("memory", "memory.oom_control")
        .contains("oom_kill_disable 1"));
    assert_eq!(c.h("memory", "memory.kmem.tcp.limit_in_bytes"), "4194304");
    assert_eq!(c.h("cpu", "cpu.cfs_quota_us"), "-1");
    assert_eq!(
        c.h("blkio", "blkio.throttle.read_bps_device"),
        format!("{ma}:{mi} 2097152")
    );
    assert_eq!(
        c.h("blkio", "blkio.throttle.write_iops_device"),
        format!("{ma}:{mi} 77")
    );
    if let Ok(hp) = &huge {
        assert_eq!(c.h(hp.hier, &hp.limit_file()), (2 * hp.bytes).to_string());
    }
    // From stdin.
    let mut child = c
        .root
        .cmd()
        .args(["update", "--resources", "-", &c.id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        br#"{"pids": {"limit": 44}, "memory": {"disableOOMKiller": false}}"#,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(c.h("pids", "pids.max"), "44");
    assert!(c
        .h("memory", "memory.oom_control")
        .contains("oom_kill_disable 0"));
    // checkBeforeUpdate refuses a limit below the usage, and changes nothing.
    std::fs::write(
        &res,
        r#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#,
    )
    .unwrap();
    let o = c.nk(&["update", "-r", res.to_str().unwrap(), &c.id]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("below the current usage"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        c.h("memory", "memory.limit_in_bytes"),
        (48u64 << 20).to_string()
    );
    // Kernel memory is gone from Linux: a warning, not silence.
    let o = c.nk(&["update", "--kernel-memory", "8m", &c.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("kernel memory limits were removed"),
        "{}",
        stderr(&o)
    );
    // A bad value names the field.
    let o = c.nk(&["update", "--cpu-quota", "5", &c.id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cpu.quota"), "{}", stderr(&o));
}

#[test]
fn pause_resume_and_state() {
    let c = Ctr::start(
        &[
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i > /dev/shm/n; usleep 20000; done",
        ],
        json!({}),
        |_| {},
    );
    let counter = format!("/proc/{}/root/dev/shm/n", c.pid());
    let read = || std::fs::read_to_string(&counter).unwrap_or_default();
    wait_until("the counter to start", 10, || !read().is_empty());
    c.root.ok(&["pause", &c.id]);
    assert_eq!(c.root.status(&c.id), "paused");
    assert_eq!(c.h("freezer", "freezer.state"), "FROZEN");
    let a = read();
    // A witness on the host runs the same loop: once it has moved ten
    // times, a running counter would have moved too, however loaded the
    // machine is. The frozen one must not have.
    let w = TempDir::new("nk-pause-witness");
    let wfile = w.path().join("n");
    let mut witness = Command::new("sh")
        .args([
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i > \"$0\"; sleep 0.02; done",
        ])
        .arg(&wfile)
        .spawn()
        .unwrap();
    let steps = || {
        std::fs::read_to_string(&wfile)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    wait_until("the witness to start", 10, || steps().is_some());
    let from = steps().unwrap_or(0);
    wait_until("the witness to move ten times", 10, || {
        steps().is_some_and(|n| n >= from + 10)
    });
    // SIGKILL to our own, unreaped child, then reaped.
    let _ = witness.kill();
    let _ = witness.wait();
    assert_eq!(read(), a, "a paused container kept running");
    // Pausing twice or resuming a running container is refused.
    assert!(!c.nk(&["pause", &c.id]).status.success());
    c.root.ok(&["resume", &c.id]);
    assert_eq!(c.root.status(&c.id), "running");
    assert_eq!(c.h("freezer", "freezer.state"), "THAWED");
    wait_until("the counter to move", 10, || read() != a);
    let o = c.nk(&["resume", &c.id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not paused"), "{}", stderr(&o));
}

/// The key paths of a JSON value (object keys, arrays collapsed).
fn shape(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{prefix}/{k}");
                out.push(p.clone());
                // memory.raw and hugetlb keys depend on the kernel and host.
                let opaque =
                    (prefix.ends_with("/memory") && k == "raw") || prefix.ends_with("/hugetlb");
                if !opaque {
                    shape(x, &p, out);
                }
            }
        }
        Value::Array(a) => {
            if let Some(x) = a.first() {
                shape(x, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn events_stats_match_the_cgroup_files_and_runc_shape() {
    let res = json!({"memory": {"limit": 67108864, "swap": 134217728}, "pids": {"limit": 20},
                     "cpu": {"shares": 512, "quota": 50000, "period": 100000}});
    let c = Ctr::start(
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=1M count=300 2>/dev/null; exec sleep 1000",
        ],
        res.clone(),
        |_| {},
    );
    let used = |path: &str| {
        host("cpuacct", path, "cpuacct.usage")
            .parse::<u64>()
            .unwrap_or(0)
            > 0
    };
    wait_until("CPU time in the cgroup", 10, || used(&c.path));
    // The counts are compared with the files, so wait for the steady state:
    // dd done and the shell replaced by sleep (one task), not a moment
    // while dd still runs (two).
    wait_until("dd to finish", 10, || c.h("pids", "pids.current") == "1");
    let o = c.nk(&["events", "--stats", &c.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ev: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], json!(c.id));
    let d = &ev["data"];
    assert_eq!(d["memory"]["usage"]["limit"], 67108864);
    assert_eq!(d["memory"]["swap"]["limit"], 134217728);
    assert!(d["memory"]["usage"]["usage"].as_u64().unwrap() > 0);
    assert!(d["memory"]["raw"]["total_rss"].is_u64());
    assert_eq!(d["pids"]["limit"], 20);
    assert_eq!(
        d["pids"]["current"],
        c.h("pids", "pids.current").parse::<u64>().unwrap()
    );
    let total = d["cpu"]["usage"]["total"].as_u64().unwrap();
    assert!(total > 0);
    assert!(total <= c.h("cpuacct", "cpuacct.usage").parse::<u64>().unwrap());
    let ncpu = c
        .h("cpuacct", "cpuacct.usage_percpu")
        .split_whitespace()
        .count();
    assert_eq!(d["cpu"]["usage"]["percpu"].as_array().unwrap().len(), ncpu);
    match hugetlb_here() {
        Ok(hp) => assert!(
            d["hugetlb"][&hp.size].is_object(),
            "hugetlb {} from {CG}/{}: {}",
            hp.size,
            hp.hier,
            d["hugetlb"]
        ),
        Err(why) => eprintln!("hugetlb stats not checked: {why}"),
    }
    assert_eq!(d["network_interfaces"], Value::Null);
    // Same keys as runc 1.1's events --stats on the same bundle.
    let runc_root = Root::with_binary("runc");
    let rid = unique_id("runc");
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=1M count=300 2>/dev/null; sleep 1000",
    ]);
    b.edit(|cfg| {
        cfg["linux"]["resources"] = res;
        cfg["linux"]["cgroupsPath"] = json!(format!("/nk-cgtest/{rid}"));
    });
    let (ok, err) = detached(rcmd(
        &runc_root,
        &["run", "-d", "--bundle", &b.path(), &rid],
    ));
    assert!(ok, "runc run: {err}");
    // runc omits zero counters (Go's omitempty): wait until there are some.
    wait_until("CPU time in runc's cgroup", 10, || {
        used(&format!("/nk-cgtest/{rid}"))
    });
    let r: Value = serde_json::from_str(&runc_root.ok(&["events", "--stats", &rid])).unwrap();
    runc_root.ok(&["delete", "-f", &rid]);
    let (mut a, mut b2) = (Vec::new(), Vec::new());
    shape(&ev, "", &mut a);
    shape(&r, "", &mut b2);
    a.sort();
    b2.sort();
    // Fields whose presence depends on the values of the moment (Go's
    // omitempty): compare the rest.
    let volatile = |p: &String| {
        p.ends_with("/cache")
            || p.contains("/throttling/")
            || p.contains("/kernelTCP/")
            || p.ends_with("/max")
            || p.ends_with("/usage/usage")
            || p.contains("/blkio/")
            || p.contains("/hugetlb/")
    };
    a.retain(|p| !volatile(p));
    b2.retain(|p| !volatile(p));
    assert_eq!(a, b2, "events --stats keys differ from runc's");
}

#[test]
fn oom_is_reported_by_events() {
    let c = Ctr::start(
        &["sleep", "1000"],
        json!({"memory": {"limit": 16777216, "swap": 16777216}}),
        |_| {},
    );
    let mut ev = c
        .root
        .cmd()
        .args(["events", "--interval", "1s", &c.id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = ev.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The first stats line shows events is watching.
    let first = rx.recv_timeout(DEADLINE).unwrap();
    assert!(first.contains(r#""type":"stats""#), "{first}");
    let o = c.sh_out("tail /dev/zero");
    assert_eq!(o.status.code(), Some(137), "the hog was not OOM-killed");
    let end = Instant::now() + DEADLINE;
    let mut seen = false;
    while Instant::now() < end {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) if l == format!(r#"{{"type":"oom","id":"{}"}}"#, c.id) => {
                seen = true;
                break;
            }
            _ => {}
        }
    }
    // SAFETY: kill(2) the events process we spawned, by pid.
    unsafe { libc::kill(ev.id() as i32, libc::SIGKILL) };
    let _ = ev.wait();
    assert!(seen, "no oom event");
    assert!(c.h("memory", "memory.oom_control").contains("oom_kill 1"));
}

#[test]
fn kill_all_reaches_every_process() {
    let c = Ctr::start(
        &["sh", "-c", "sleep 1001 & sleep 1002 & sleep 1003 & wait"],
        json!({}),
        |_| {},
    );
    wait_until("four processes", 10, || {
        serde_json::from_str::<Vec<i32>>(&stdout(&c.nk(&["ps", "--format", "json", &c.id])))
            .is_ok_and(|v| v.len() == 4)
    });
    let pids: Vec<i32> =
        serde_json::from_str(&stdout(&c.nk(&["ps", "--format", "json", &c.id]))).unwrap();
    let table = stdout(&c.nk(&["ps", &c.id]));
    assert!(table.lines().next().unwrap().contains("PID"), "{table}");
    for s in ["sleep 1001", "sleep 1002", "sleep 1003"] {
        assert!(table.contains(s), "{table}");
    }
    // While paused, a TERM is queued and the container stays paused.
    c.root.ok(&["pause", &c.id]);
    c.root.ok(&["kill", "--all", &c.id, "TERM"]);
    assert_eq!(c.root.status(&c.id), "paused");
    c.root.ok(&["resume", &c.id]);
    // The sleeps die of TERM; sh (pid 1) ignores it, then exits from wait.
    let init = c.pid();
    wait_until("the sleeps to die", 10, || {
        pids.iter().filter(|&&p| p != init).all(|&p| !pid_alive(p))
    });
    c.root.wait_status(&c.id, "stopped");

    let c = Ctr::start(
        &[
            "sh",
            "-c",
            "trap '' TERM; sleep 1001 & sleep 1002 & wait; wait",
        ],
        json!({}),
        |_| {},
    );
    wait_until("three processes", 10, || {
        serde_json::from_str::<Vec<i32>>(&stdout(&c.nk(&["ps", "--format", "json", &c.id])))
            .is_ok_and(|v| v.len() == 3)
    });
    let pids: Vec<i32> =
        serde_json::from_str(&stdout(&c.nk(&["ps", "--format", "json", &c.id]))).unwrap();
    c.root.ok(&["kill", "--all", &c.id, "KILL"]);
    wait_until("every process to die", 10, || {
        pids.iter().all(|&p| !pid_alive(p))
    });
    c.root.wait_status(&c.id, "stopped");
}

#[test]
fn delete_kills_processes_left_in_the_cgroup() {
    // No pid namespace: when the init dies, its children live on in the cgroup.
    let c = Ctr::start(
        &["sh", "-c", "sleep 1001 & sleep 1002 & exec sleep 1003"],
        json!({"pids": {"limit": 50}}),
        |cfg| {
            let ns = cfg["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "pid");
        },
    );
    wait_until("three processes", 10, || c.h("pids", "pids.current") == "3");
    let pids: Vec<i32> =
        serde_json::from_str(&stdout(&c.nk(&["ps", "--format", "json", &c.id]))).unwrap();
    assert_eq!(pids.len(), 3);
    c.root.ok(&["kill", &c.id, "KILL"]);
    c.root.wait_status(&c.id, "stopped");
    // The children outlive the init (pids.current may still count the
    // init's zombie until its parent reaps it; cgroup.procs does not).
    let left: Vec<i32> =
        serde_json::from_str(&stdout(&c.nk(&["ps", "--format", "json", &c.id]))).unwrap();
    assert_eq!(left.len(), 2, "{left:?} (all: {pids:?})");
    assert!(left.iter().all(|&p| pid_alive(p)));
    c.root.ok(&["delete", &c.id]);
    for p in &left {
        wait_until("a leftover process to die", 5, || !pid_alive(*p));
    }
    assert!(
        cgroup_anywhere(&c.path).is_empty(),
        "cgroup left in {:?}",
        cgroup_anywhere(&c.path)
    );
    assert!(c.root.ids().is_empty());
}

#[test]
fn cgroups_path_forms() {
    let _lines = PROC_CGROUP_LINES.read().unwrap_or_else(|e| e.into_inner());
    // Relative: below the runtime's own cgroup, hierarchy by hierarchy. The
    // runtime is started from a cgroup of this test's (memory and pids),
    // so the expected place is known and nothing goes below other cgroups.
    let own = format!("/{}", unique_id("nk-own"));
    for h in ["memory", "pids"] {
        std::fs::create_dir_all(host_dir(h, &own)).unwrap();
    }
    let rel = unique_id("nk-rel");
    let root = Root::new();
    let id = unique_id("rel");
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.edit(|cfg| {
        cfg["linux"]["cgroupsPath"] = json!(rel);
        cfg["linux"]["resources"] = json!({"pids": {"limit": 7}});
    });
    let mut o = Command::new("sh");
    o.args([
            "-c",
            "for h in memory pids; do echo $$ > /sys/fs/cgroup/$h$0/cgroup.procs || exit 9; done; exec \"$@\"",
        ])
        .arg(&own)
        .arg(&root.bin)
        .args(["--root", root.dir.path().to_str().unwrap(), "run", "-d", "--bundle", &b.path(), &id])
        .stdin(Stdio::null());
    let (ok, err) = detached(o);
    assert!(ok, "{err}");
    let pid = root.state(&id)["pid"].as_i64().unwrap();
    let pc = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let want = format!("{own}/{rel}");
    for ctrl in ["memory", "pids"] {
        assert!(
            pc.lines()
                .any(|l| l.contains(&format!(":{ctrl}:")) && l.ends_with(&want)),
            "{ctrl}: want {want} in\n{pc}"
        );
    }
    // Hierarchies where the runtime sits at the root: /<rel>.
    assert!(
        pc.lines()
            .any(|l| l.contains(":freezer:") && l.ends_with(&format!(":/{rel}"))),
        "{pc}"
    );
    assert_eq!(host("pids", &want, "pids.max"), "7");
    root.ok(&["delete", "-f", &id]);
    assert!(!host_dir("pids", &want).exists());
    assert!(cgroup_anywhere(&format!("/{rel}")).is_empty());
    for h in ["memory", "pids"] {
        std::fs::remove_dir(host_dir(h, &own)).unwrap();
    }

    // Absolute.
    let abs = format!("/{}/c", unique_id("nk-abs"));
    let c = Ctr::start(&["sleep", "1000"], json!({"pids": {"limit": 8}}), |cfg| {
        cfg["linux"]["cgroupsPath"] = json!(abs);
    });
    assert_eq!(host("pids", &abs, "pids.max"), "8");
    assert!(host_dir("unified", &abs).exists());
    c.root.ok(&["delete", "-f", &c.id]);
    assert!(cgroup_anywhere(&abs).is_empty());
    rmdir_parents(&abs);

    // systemd's slice:prefix:name, with --systemd-cgroup and no systemd.
    let u = unique_id("nks").replace('-', "");
    let c = Ctr::create(
        &["sleep", "1000"],
        json!({"pids": {"limit": 9}}),
        |cfg| {
            cfg["linux"]["cgroupsPath"] = json!(format!("nk{u}.slice:nkt:c1"));
        },
        &["--systemd-cgroup"],
    );
    let want = format!("/nk{u}.slice/nkt-c1.scope");
    assert_eq!(host("pids", &want, "pids.max"), "9");
    c.root.ok(&["delete", "-f", &c.id]);
    assert!(cgroup_anywhere(&want).is_empty());
    rmdir_parents(&want);
    // The info message says what was done.
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    b.edit(|cfg| cfg["linux"]["cgroupsPath"] = json!(format!("nk{u}.slice:nkt:c2")));
    let id = unique_id("sd");
    let (ok, err) = detached(rcmd(
        &root,
        &[
            "--systemd-cgroup",
            "--log-level",
            "info",
            "create",
            "--bundle",
            &b.path(),
            &id,
        ],
    ));
    assert!(ok, "{err}");
    assert!(err.contains("no systemd scope is created"), "{err}");
    root.ok(&["delete", "-f", &id]);
    rmdir_parents(&format!("/nk{u}.slice/nkt-c2.scope"));
    // With the flag, another form is a clear error that leaves nothing.
    b.edit(|cfg| cfg["linux"]["cgroupsPath"] = json!("/not/a/slice"));
    let o = root
        .cmd()
        .args(["--systemd-cgroup", "create", "--bundle", &b.path(), &id])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("slice:prefix:name"), "{}", stderr(&o));
    assert!(root.ids().is_empty());
}

#[test]
fn cgroup_namespace_and_read_only_view() {
    let _lines = PROC_CGROUP_LINES.read().unwrap_or_else(|e| e.into_inner());
    let res = json!({"memory": {"limit": 50331648}, "pids": {"limit": 21}});
    let c = Ctr::start(&["sleep", "1000"], res.clone(), |cfg| {
        cfg["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "cgroup"}));
    });
    // Every hierarchy is rooted at the container's cgroup.
    let pc = c.sh("cat /proc/self/cgroup");
    assert!(pc.lines().all(|l| l.ends_with(":/")), "{pc}");
    assert_eq!(
        c.sh("cat /sys/fs/cgroup/memory/memory.limit_in_bytes"),
        "50331648"
    );
    assert_eq!(c.sh("cat /sys/fs/cgroup/pids/pids.max"), "21");
    let dirs = c.sh("ls /sys/fs/cgroup");
    for h in [
        "memory", "pids", "cpu", "cpuacct", "freezer", "devices", "systemd",
    ] {
        assert!(
            dirs.split_whitespace().any(|d| d == h),
            "{h} missing: {dirs}"
        );
    }
    assert!(
        !dirs.contains("unified"),
        "runc shows no cgroup2 part: {dirs}"
    );
    // Read-only by default: the container cannot raise its own limit.
    let o = c.sh_out("echo 100 > /sys/fs/cgroup/pids/pids.max");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("Read-only"), "{}", stderr(&o));
    assert_eq!(c.h("pids", "pids.max"), "21");
    // Each hierarchy is a read-only mount (the tmpfs above them stays
    // writable, as runc leaves it).
    let mi = c.sh("grep ' /sys/fs/cgroup/' /proc/self/mountinfo");
    assert_eq!(mi.lines().count(), dirs.split_whitespace().count(), "{mi}");
    assert!(
        mi.lines()
            .all(|l| l.split(' ').nth(5).unwrap().starts_with("ro")),
        "{mi}"
    );

    // Without a cgroup namespace: the paths show, the view is the same.
    let c2 = Ctr::start(&["sleep", "1000"], res, |cfg| {
        let m = cfg["mounts"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|m| m["type"] == "cgroup")
            .unwrap();
        m["options"] = json!(["nosuid", "noexec", "nodev", "relatime", "rw"]);
    });
    let pc = c2.sh("cat /proc/self/cgroup");
    assert!(pc.lines().all(|l| l.ends_with(&c2.path)), "{pc}");
    assert_eq!(c2.sh("cat /sys/fs/cgroup/pids/pids.max"), "21");
    // "rw" asked for a writable view.
    let mi = c2.sh("grep ' /sys/fs/cgroup/pids ' /proc/self/mountinfo");
    assert!(mi.split(' ').nth(5).unwrap().starts_with("rw"), "{mi}");
}

/// Whether the host uses cgroup controller `c`: a v1 hierarchy mounted
/// with it, or a cgroup2 mount that offers it (cgroup.controllers).
fn controller_in_use(c: &str) -> bool {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mi.lines().any(|l| {
        let Some((pre, post)) = l.split_once(" - ") else {
            return false;
        };
        let mut f = post.split(' ');
        match f.next() {
            Some("cgroup") => f.nth(1).is_some_and(|o| o.split(',').any(|x| x == c)),
            Some("cgroup2") => pre.split(' ').nth(4).is_some_and(|mp| {
                std::fs::read_to_string(Path::new(mp).join("cgroup.controllers"))
                    .is_ok_and(|s| s.split_whitespace().any(|x| x == c))
            }),
            _ => false,
        }
    })
}

/// A hugetlb limit this host cannot take, and the words of its refusal: a
/// page size the kernel lacks, or (no hugetlb at all) any.
fn lacking_page_size() -> (Value, Vec<&'static str>) {
    let have: Vec<String> = huge_page_sizes().into_iter().map(huge_page_name).collect();
    let size = ["16GB", "16MB", "64KB", "32MB"]
        .into_iter()
        .find(|s| !have.iter().any(|h| h == s))
        .expect("a page size this kernel lacks");
    let res = json!({"hugepageLimits": [{"pageSize": size, "limit": 1}]});
    match hugetlb_here() {
        Ok(_) => (res, vec!["hugepageLimits[0].pageSize", "page sizes here"]),
        Err(why) => {
            eprintln!("{why}: the whole of hugepageLimits is refused");
            (
                res,
                vec![
                    "hugepageLimits",
                    "hugetlb cgroup controller is not available",
                ],
            )
        }
    }
}

#[test]
fn what_this_host_lacks_is_reported() {
    let root = Root::new();
    let run = |res: Value| {
        let mut b = Bundle::new(&["true"]);
        let id = unique_id("lack");
        let path = format!("/nk-cgtest/{id}");
        b.edit(|c| {
            c["linux"]["resources"] = res;
            c["linux"]["cgroupsPath"] = json!(path);
        });
        let o = root.run(&["run", "--bundle", &b.path(), &id]);
        let left = cgroup_anywhere(&path);
        let _ = root.run(&["delete", "-f", &id]);
        (o, left)
    };
    // Errors: nothing is left behind.
    for (res, words) in [
        (
            json!({"blockIO": {"leafWeight": 100}}),
            vec!["blockIO.leafWeight", "CFQ"],
        ),
        (
            json!({"unified": {"memory.high": "10M"}}),
            vec!["unified", "memory cgroup controller is not available"],
        ),
        lacking_page_size(),
    ] {
        let (o, left) = run(res.clone());
        assert!(!o.status.success(), "{res} was accepted");
        for w in words {
            assert!(stderr(&o).contains(w), "{res}: {w:?} not in {}", stderr(&o));
        }
        assert!(left.is_empty(), "{res}: cgroup left in {left:?}");
    }
    assert!(root.ids().is_empty());
    // Warnings: the container runs, the message says what was ignored.
    for (res, word) in [
        (
            json!({"memory": {"kernel": 1048576}}),
            "kernel memory limits were removed",
        ),
        (json!({"network": {"classID": 1048577}}), "net_cls"),
        (
            json!({"network": {"priorities": [{"name": "lo", "priority": 1}]}}),
            "net_prio",
        ),
        (json!({"rdma": {"mlx4_0": {"hcaHandles": 1}}}), "rdma"),
    ] {
        // Another kernel build or host may have the controller: then it is
        // no lack there (net_cls and net_prio are compiled in but unmounted
        // here; this kernel has no rdma).
        let ctl = if word.contains("kernel memory") {
            ""
        } else {
            word
        };
        if !ctl.is_empty() && controller_in_use(ctl) {
            eprintln!("{res}: the host mounts the {ctl} controller: no lack to report here");
            continue;
        }
        let (o, _) = run(res.clone());
        assert!(o.status.success(), "{res}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(word),
            "{res}: {word:?} not in {}",
            stderr(&o)
        );
    }
}

/// nk-runtime on a pure cgroup v2 host: a private mount namespace where
/// only cgroup2 is mounted on /sys/fs/cgroup. Every step runs in that
/// namespace (the container's records name its paths).
#[test]
fn v2_manager_on_this_kernel() {
    require_root();
    let rt = runtime();
    let state = TempDir::new("nk-v2root");
    let id = unique_id("v2");
    let path = format!("/nk-cgtest-v2/{id}");
    // hugetlb in this cgroup2 mount: only where no v1 hierarchy holds it.
    let huge = match hugetlb_here() {
        Ok(hp) if hp.hier == "unified" => Some(hp),
        Ok(hp) => {
            eprintln!(
                "hugetlb not checked: a v1 hierarchy holds it ({CG}/{})",
                hp.hier
            );
            None
        }
        Err(why) => {
            eprintln!("hugetlb not checked: {why}");
            None
        }
    };
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.edit(|c| {
        c["linux"]["cgroupsPath"] = json!(path);
        c["linux"]["resources"] = json!({
            "devices": [{"allow": false, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "r"}]
        });
        if let Some(hp) = &huge {
            c["linux"]["resources"]["hugepageLimits"] =
                json!([{"pageSize": hp.size, "limit": hp.bytes}]);
        }
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "cgroup"}));
    });
    with_device_binds(&mut b.config);
    b.save();
    let mut b_mem = Bundle::new(&["true"]);
    b_mem.edit(|c| {
        c["linux"]["cgroupsPath"] = json!(format!("{path}-mem"));
        c["linux"]["resources"] = json!({"memory": {"limit": 1000000}});
    });
    let script = format!(
        r#"
umount -R -l /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup || exit 99
NK="{rt} --root {state}"
trap '$NK delete -f {id} >/dev/null 2>&1; rmdir /sys/fs/cgroup/nk-cgtest-v2 2>/dev/null' EXIT
D=/sys/fs/cgroup{path}
$NK run -d --bundle {bundle} {id} </dev/null >/dev/null 2>/tmp/nk-v2-err-{id} && echo run=ok; cat /tmp/nk-v2-err-{id} >&2; rm -f /tmp/nk-v2-err-{id}
echo procs=$(wc -l < $D/cgroup.procs)
echo host_hugetlb=$(cat $D/hugetlb.{size}.max)
echo inside_hugetlb=$($NK exec {id} cat /sys/fs/cgroup/hugetlb.{size}.max)
echo inside_cgroup=$($NK exec {id} grep ^0:: /proc/self/cgroup)
echo probe1=$($NK exec {id} sh -c '{probe}' | tr '\n' ' ')
echo '{{"devices":[{{"allow":false,"access":"rwm"}},{{"allow":true,"type":"c","major":10,"minor":237,"access":"rw"}},{{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}}]}}' | $NK update -r - {id} && echo update=ok
echo probe2=$($NK exec {id} sh -c '{probe}' | tr '\n' ' ')
$NK pause {id} && echo paused=$($NK state {id} | grep -c '"paused"') frozen=$(grep -c 'frozen 1' $D/cgroup.events)
$NK resume {id} && echo resumed=$($NK state {id} | grep -c '"running"')
echo stats=$($NK events --stats {id} | grep -c '"{size}"')
$NK exec -d {id} sleep 999 </dev/null >/dev/null 2>&1
echo nprocs=$($NK ps --format json {id})
$NK kill --all {id} KILL && n=0 && while [ -n "$(cat $D/cgroup.procs)" ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done && echo after_kill=$(wc -l < $D/cgroup.procs)
for i in $(seq 100); do $NK state {id} | grep -q '"stopped"' && break; sleep 0.1; done
$NK delete {id} && echo deleted=$(test -d $D && echo no || echo yes)
$NK run --bundle {bmem} {id}-mem 2>&1 | tail -1 | sed 's/^/mem_error=/'
echo mem_left=$(test -d $D-mem && echo yes || echo no)
"#,
        rt = rt.display(),
        state = state.path().display(),
        bundle = b.path(),
        bmem = b_mem.path(),
        probe = PROBE,
        size = huge.as_ref().map_or("none", |hp| hp.size.as_str()),
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let out = stdout(&o);
    let get = |k: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in output:\n{out}\n{}", stderr(&o)))
            .trim()
            .to_string()
    };
    assert_eq!(get("run"), "ok");
    assert_eq!(get("procs"), "1");
    if let Some(hp) = &huge {
        assert_eq!(get("host_hugetlb"), hp.bytes.to_string());
        assert_eq!(get("inside_hugetlb"), hp.bytes.to_string());
    }
    assert_eq!(get("inside_cgroup"), "0::/");
    // The eBPF device filter decides, and update replaces it.
    assert_eq!(get("probe1"), "nkfuse-r-ok nkfuse-w-no nklc-r-no nklc-w-no");
    assert_eq!(get("update"), "ok");
    assert_eq!(get("probe2"), "nkfuse-r-no nkfuse-w-no nklc-r-ok nklc-w-ok");
    assert_eq!(get("paused"), "1 frozen=1");
    assert_eq!(get("resumed"), "1");
    if huge.is_some() {
        assert_eq!(get("stats"), "1");
    }
    assert_eq!(
        serde_json::from_str::<Vec<i32>>(&get("nprocs"))
            .unwrap()
            .len(),
        2
    );
    assert_eq!(get("after_kill"), "0");
    assert_eq!(get("deleted"), "yes");
    assert!(
        get("mem_error").contains("memory cgroup controller is not available"),
        "{}",
        get("mem_error")
    );
    assert_eq!(get("mem_left"), "no");
}

/// net_cls and net_prio are compiled in but not mounted on this host: a
/// private mount namespace mounts them (co-mounted, as many hosts do) next
/// to the usual hierarchies, and nk-runtime drives them there.
#[test]
fn network_class_and_priorities_where_mounted() {
    require_root();
    let _lines = PROC_CGROUP_LINES.write().unwrap_or_else(|e| e.into_inner());
    // The kernel must have them (/proc/cgroups lists its controllers), and
    // the host must not mount them already: a hierarchy of its own, which
    // this test's mount would join and could not take down.
    let compiled = std::fs::read_to_string("/proc/cgroups").unwrap_or_default();
    for c in ["net_cls", "net_prio"] {
        if !compiled.lines().any(|l| l.split('\t').next() == Some(c)) {
            eprintln!("skipped: this kernel has no {c} controller (/proc/cgroups); what_this_host_lacks_is_reported checks the warning");
            return;
        }
        if controller_in_use(c) {
            eprintln!("skipped: the host mounts {c} already; nk-runtime drives it like the other v1 hierarchies");
            return;
        }
    }
    let rt = runtime();
    let state = TempDir::new("nk-netroot");
    let id = unique_id("net");
    let path = format!("/nk-cgtest-net/{id}");
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.edit(|c| {
        c["linux"]["cgroupsPath"] = json!(path);
        c["linux"]["resources"] = json!({"network": {"classID": 1048577,
                                          "priorities": [{"name": "lo", "priority": 5}]}});
    });
    let mut hier = String::new();
    for h in hierarchies() {
        if h != "unified" && h != "systemd" {
            hier.push_str(&format!(
                "mkdir -p $C/{h} && mount -t cgroup -o {h} cgroup $C/{h} || exit 98\n"
            ));
        }
    }
    let script = format!(
        r#"
C=/sys/fs/cgroup
umount -R -l $C && mount -t tmpfs -o mode=755 tmpfs $C || exit 99
{hier}
mkdir -p $C/systemd && mount -t cgroup -o none,name=systemd cgroup $C/systemd || exit 97
mkdir -p $C/unified && mount -t cgroup2 cgroup2 $C/unified || exit 96
mkdir -p $C/net_cls,net_prio && mount -t cgroup -o net_cls,net_prio cgroup $C/net_cls,net_prio || exit 95
NK="{rt} --root {state}"
D="$C/net_cls,net_prio{path}"
# Leaving: the last unmount destroys the new hierarchy only if no removed
# cgroup is still being freed then, so give the kernel a moment first.
trap '$NK delete -f {id} >/dev/null 2>&1; rmdir $C/*/nk-cgtest-net 2>/dev/null; sleep 1' EXIT
$NK run -d --bundle {bundle} {id} </dev/null >/dev/null 2>/tmp/nk-net-err-{id} && echo run=ok; cat /tmp/nk-net-err-{id} >&2; rm -f /tmp/nk-net-err-{id}
echo classid=$(cat $D/net_cls.classid)
echo prio=$(grep '^lo ' $D/net_prio.ifpriomap)
echo inside_classid=$($NK exec {id} cat /sys/fs/cgroup/net_cls/net_cls.classid)
echo inside_link=$($NK exec {id} readlink /sys/fs/cgroup/net_prio)
echo inside_dir=$($NK exec {id} test -d /sys/fs/cgroup/net_cls,net_prio && echo yes)
$NK delete -f {id} && echo gone=$(test -d $D && echo no || echo yes)
"#,
        rt = rt.display(),
        state = state.path().display(),
        bundle = b.path(),
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let out = stdout(&o);
    let get = |k: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in output:\n{out}\n{}", stderr(&o)))
            .trim()
            .to_string()
    };
    // The hierarchy this test made must be gone, or every process on the
    // host would list it in /proc/<pid>/cgroup. If the kernel kept it (its
    // last unmount came while a removed cgroup was still being freed), one
    // more empty mount and unmount destroys it.
    let bound = || {
        std::fs::read_to_string("/proc/cgroups")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("net_cls\t") && l.split_whitespace().nth(1) != Some("0"))
    };
    let tmp = TempDir::new("nk-netcls");
    for attempt in 0..5 {
        let end = Instant::now() + Duration::from_secs(3);
        while bound() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100));
        }
        if !bound() || attempt == 4 {
            break;
        }
        let _ = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t cgroup -o net_cls,net_prio cgroup {0} && umount {0}",
                tmp.path().display()
            ))
            .status();
    }
    assert!(!bound(), "the net_cls,net_prio hierarchy outlived the test");
    assert_eq!(get("run"), "ok");
    assert_eq!(get("classid"), "1048577");
    assert_eq!(get("prio"), "lo 5");
    assert_eq!(get("inside_classid"), "1048577");
    assert_eq!(get("inside_link"), "net_cls,net_prio");
    assert_eq!(get("inside_dir"), "yes");
    assert_eq!(get("gone"), "yes");
}

/// A legacy (v1 only) host: a private mount namespace with the v1
/// hierarchies and no cgroup2. Resources still apply; what only cgroup2
/// offers here (hugetlb, unified keys) is a clear error.
#[test]
fn legacy_v1_only_layout() {
    require_root();
    let rt = runtime();
    let state = TempDir::new("nk-v1root");
    let id = unique_id("v1only");
    let path = format!("/nk-cgtest-v1/{id}");
    let mut ok = Bundle::new(&["sleep", "1000"]);
    ok.edit(|c| {
        c["linux"]["cgroupsPath"] = json!(path);
        c["linux"]["resources"] = json!({"memory": {"limit": 41943040}, "pids": {"limit": 17}});
    });
    // hugetlb is cgroup2's here, or missing: either way this layout lacks
    // it. (Where a v1 hierarchy holds it, the layout has it.)
    let hp = hugetlb_here();
    let v1_hugetlb = matches!(&hp, Ok(h) if h.hier != "unified");
    let (size, page) = hp.map_or(("2MB".to_string(), 2 << 20), |h| (h.size, h.bytes));
    let mut huge = Bundle::new(&["true"]);
    huge.edit(|c| {
        c["linux"]["cgroupsPath"] = json!(format!("{path}-huge"));
        c["linux"]["resources"] = json!({"hugepageLimits": [{"pageSize": size, "limit": page}]});
    });
    let mut hier = String::new();
    for h in hierarchies() {
        if h == "unified" {
            continue;
        }
        let opts = if h == "systemd" {
            "none,name=systemd".to_string()
        } else {
            h.clone()
        };
        hier.push_str(&format!(
            "mkdir -p $C/{h} && mount -t cgroup -o {opts} cgroup $C/{h} || exit 98\n"
        ));
    }
    let script = format!(
        r#"
C=/sys/fs/cgroup
umount -R -l $C && mount -t tmpfs -o mode=755 tmpfs $C || exit 99
{hier}
NK="{rt} --root {state}"
trap '$NK delete -f {id} >/dev/null 2>&1; rmdir $C/*/nk-cgtest-v1 2>/dev/null' EXIT
$NK run -d --bundle {ok} {id} </dev/null >/dev/null 2>/tmp/nk-v1-err-{id} && echo run=ok; cat /tmp/nk-v1-err-{id} >&2; rm -f /tmp/nk-v1-err-{id}
echo mem=$(cat $C/memory{path}/memory.limit_in_bytes)
echo inside_pids=$($NK exec {id} cat /sys/fs/cgroup/pids/pids.max)
echo inside_dirs=$($NK exec {id} ls /sys/fs/cgroup | tr '\n' ' ')
$NK run --bundle {huge} {id}-huge 2>&1 | tail -1 | sed 's/^/huge_error=/'
$NK delete -f {id} && echo gone=$(ls -d $C/*{path} 2>/dev/null | wc -l)
"#,
        rt = rt.display(),
        state = state.path().display(),
        ok = ok.path(),
        huge = huge.path(),
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let out = stdout(&o);
    let get = |k: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in output:\n{out}\n{}", stderr(&o)))
            .trim()
            .to_string()
    };
    assert_eq!(get("run"), "ok");
    assert_eq!(get("mem"), "41943040");
    assert_eq!(get("inside_pids"), "17");
    let dirs = get("inside_dirs");
    assert!(
        dirs.contains("memory") && !dirs.contains("unified"),
        "{dirs}"
    );
    if v1_hugetlb {
        eprintln!("hugetlb refusal not checked: a v1 hierarchy holds hugetlb here");
    } else {
        let e = get("huge_error");
        assert!(
            e.contains("hugetlb cgroup controller is not available"),
            "{e}"
        );
    }
    assert_eq!(get("gone"), "0");
}

/// Run a shell script as on a pure v1 host (the benchmark's layout): in a
/// private mount namespace where the cgroup2 mount, if there is one, is
/// unmounted first. Its output is captured.
fn on_pure_v1(script: &str) -> std::process::Output {
    let unified = Path::new(CG).join("unified");
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(unified.to_str().unwrap()));
    let umount = if mounted {
        format!("umount -l {} || exit 2\n", unified.display())
    } else {
        String::new()
    };
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!("{umount}{script}"))
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .unwrap()
}

/// A pure v1 host (the benchmark's layout): in a private mount namespace
/// without the cgroup2 mount, create makes the cgroup after the clone and
/// the init moves itself in first thing. Its limits hold, every v1
/// hierarchy lists it, the narration says who joined and when, and delete
/// removes the cgroup.
#[test]
fn pure_v1_host_cgroup_made_while_the_init_execs() {
    require_root();
    let state = TempDir::new("nk-v1root");
    let id = unique_id("purev1");
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "cat /proc/self/cgroup; cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    b.edit(|c| {
        c["linux"]["resources"] = json!({"memory": {"limit": 67108864}});
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "cgroup");
        c["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        );
    });
    let out = state.path().join("out");
    let err = state.path().join("err");
    let script = format!(
        "set -e
         {rt} --root {st} -E run --bundle {bundle} {id} > {out} 2> {err}",
        rt = runtime().display(),
        st = state.path().join("s").display(),
        bundle = b.path(),
        out = out.display(),
        err = err.display(),
    );
    let st = on_pure_v1(&script).status;
    let out = std::fs::read_to_string(&out).unwrap_or_default();
    let err = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(st.success(), "{out}\n{err}");
    // In the container's cgroup in every v1 hierarchy (no cgroup
    // namespace: the host's paths), and its limit holds.
    let mut v1 = 0;
    for l in out.lines().filter(|l| !l.starts_with("0::")) {
        if let Some((_, path)) = l.split_once(':').and_then(|(_, r)| r.split_once(':')) {
            if l.contains("pids") || l.contains("memory") || l.contains("devices") {
                assert_eq!(path, format!("/nano-sandbox/{id}"), "{out}");
                v1 += 1;
            }
        }
    }
    assert_eq!(v1, 3, "pids, memory and devices lines:\n{out}");
    assert!(out.lines().any(|l| l.trim() == "67108864"), "{out}");
    assert!(
        err.contains("v1 tasks files first thing after its exec"),
        "the init joins by itself after its exec:\n{err}"
    );
    assert!(!cgroup_exists(&format!("nano-sandbox/{id}")));
}

/// On a pure v1 host create claims the state directory after the clone
/// (while the init execs). An id already taken is still refused, the
/// container that has it is untouched, and the refused create's child is
/// gone: no init of that create is left, and no cgroup or directory.
#[test]
fn pure_v1_host_refuses_a_taken_id_and_leaves_no_child() {
    require_root();
    let state = TempDir::new("nk-v1taken");
    let id = unique_id("v1taken");
    let b = Bundle::new(&["sleep", "1000"]);
    let script = format!(
        "rt() {{ {rt} --root {st} \"$@\"; }}
         rt create --bundle {bundle} {id} </dev/null >/dev/null 2>&1 || exit 3
         echo first=$(rt state {id} | tr -d ' \\n')
         # In a pid namespace of its own, so that a child it left would
         # show: after it, that namespace holds its shell alone.
         unshare -p -f --mount-proc sh -c '{rt} --root {st} create --bundle {bundle} {id} </dev/null
             echo second=$?; set -- /proc/[0-9]*; echo procs=$#'
         echo after=$(rt state {id} | tr -d ' \\n')
         rt delete -f {id}",
        rt = runtime().display(),
        st = state.path().join("s").display(),
        bundle = b.path(),
    );
    let o = on_pure_v1(&script);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{out}\n{err}");
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        field("second"),
        "1",
        "the second create must fail:\n{out}\n{err}"
    );
    assert_eq!(
        field("procs"),
        "1",
        "the refused create left a process:\n{out}\n{err}"
    );
    assert!(
        err.contains("already exists") || err.contains("exists"),
        "the error names the taken id:\n{err}"
    );
    // The first container is as it was: same pid, still created.
    let first: Value = serde_json::from_str(&field("first")).unwrap_or(Value::Null);
    let after: Value = serde_json::from_str(&field("after")).unwrap_or(Value::Null);
    assert_eq!(first["status"], "created", "{out}");
    assert_eq!(after["status"], "created", "{out}");
    assert_eq!(first["pid"], after["pid"], "{out}");
    assert!(
        !cgroup_exists(&format!("nano-sandbox/{id}")),
        "{out}\n{err}"
    );
    assert!(!state.path().join("s").join(&id).exists());
}

/// create moves the runtime off the CPU its new child was placed on, while
/// it claims the state and makes the cgroup (linux::procattr::leave_cpu). The narrowed
/// mask must reach neither the container nor a hook the runtime runs: over
/// runs that moved (narrated as cpu.leave), the container and its prestart,
/// createRuntime, poststart and poststop hooks all see this test's mask.
#[test]
fn pure_v1_host_cpu_move_reaches_no_container_and_no_hook() {
    require_root();
    let mine = cpus_allowed(&std::fs::read_to_string("/proc/self/status").unwrap());
    if !mine.contains(['-', ',']) {
        eprintln!("one CPU allowed ({mine}): the runtime has no other CPU to move to");
        return;
    }
    let state = TempDir::new("nk-v1cpu");
    let dir = state.path().to_path_buf();
    let kinds = ["prestart", "createRuntime", "poststart", "poststop"];
    let mut b = Bundle::new(&["grep", "Cpus_allowed_list", "/proc/self/status"]);
    b.edit(|c| {
        for k in kinds {
            let to = dir.join(k);
            c["hooks"][k] = json!([{"path": "/bin/sh", "args": ["sh", "-c",
                format!("grep Cpus_allowed_list /proc/self/status >> {}", to.display())]}]);
        }
    });
    // Where the scheduler starts the child is its choice: run until three
    // runs moved (each run's narration says whether it did).
    let script = format!(
        "moved=0; i=0
         while [ $i -lt 60 ] && [ $moved -lt 3 ]; do
           i=$((i+1))
           {rt} --root {st} -E run --bundle {bundle} {id}-$i > {d}/out.$i 2> {d}/err.$i || exit 3
           grep -q 'sched_setaffinity(every' {d}/err.$i && moved=$((moved+1))
         done
         echo runs=$i moved=$moved",
        rt = runtime().display(),
        st = dir.join("s").display(),
        bundle = b.path(),
        id = unique_id("v1cpu"),
        d = dir.display(),
    );
    let o = on_pure_v1(&script);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{out}\n{err}");
    let runs: usize = out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("runs="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no run count:\n{out}\n{err}"));
    assert!(
        out.contains("moved=3"),
        "in {runs} runs the runtime never shared a CPU with its child three times, so this proves nothing:\n{out}"
    );
    // One line per run: the hooks append to their files.
    let seen = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("Cpus_allowed_list:"))
            .map(cpus_allowed)
            .collect()
    };
    let mut container = Vec::new();
    for i in 1..=runs {
        container.extend(seen(
            std::fs::read_to_string(dir.join(format!("out.{i}"))).unwrap_or_default(),
        ));
    }
    assert_eq!(container, vec![mine.clone(); runs], "the container's mask");
    for k in kinds {
        let got = seen(std::fs::read_to_string(dir.join(k)).unwrap_or_default());
        assert_eq!(got, vec![mine.clone(); runs], "the {k} hooks' mask");
    }
}
