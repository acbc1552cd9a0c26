//! Shared helpers for the integration tests: where the runtime and the test
//! rootfs are, bundles made from `nk-runtime spec`, private state roots that
//! clean up after themselves, and unique ids so tests can run in parallel.

pub mod runtime_tools;

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

/// Fail loudly when not root: these tests start real containers.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "integration tests must run as root"
    );
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
        }
    }

    /// A command with --root set.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.dir.path());
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

    /// Wait (up to 10 s) until the container reports `want`.
    pub fn wait_status(&self, id: &str, want: &str) {
        for _ in 0..1000 {
            let o = self.run(&["state", id]);
            if o.status.success() {
                let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
                if v["status"] == want {
                    return;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("container {id} did not reach {want}");
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
    fn drop(&mut self) {
        for id in self.ids() {
            let _ = self.cmd().args(["delete", "-f", &id]).output();
        }
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
        for _ in 0..150 {
            if let Ok(l) = std::fs::read_link(&path) {
                if l != own {
                    return (path, l.display().to_string());
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("unshare did not enter a new {file} namespace");
    }
}

impl Drop for Unshared {
    fn drop(&mut self) {
        // --kill-child makes the forked sleep die with unshare.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
