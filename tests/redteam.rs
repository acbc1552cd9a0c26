//! The red-team suite, host side: each test is one attack from issue 11 that
//! a less privileged party (a local user, a container's root, a config's
//! author) mounted against the runtime running as root, stated as the
//! attack, and checked against runc 1.1.5 where runc holds. The exec-side
//! findings (the exec launch order, namespace identities, unbounded reads)
//! are in tests/redteam_exec.rs. docs/security-model.md maps every path the
//! runtime touches to the test that covers it.

use nk_tests::security::*;
use nk_tests::{require_root, unique_id, Bundle, Root, TempDir};
use serde_json::{json, Value};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const RUNC: &str = "/usr/sbin/runc";

/// The two runtimes a differential test runs: nk-runtime, and runc when it
/// is installed (scripts/test-deps.sh installs it).
fn runtimes() -> Vec<(&'static str, Root)> {
    let mut v = vec![("nk-runtime", Root::new())];
    if Path::new(RUNC).exists() {
        v.push(("runc", Root::with_binary(RUNC)));
    } else {
        eprintln!("{RUNC} is missing: checking nk-runtime alone");
    }
    v
}

/// A root-owned mode-0600 file with known contents: what an attacker wants
/// root to overwrite.
fn victim(dir: &TempDir) -> PathBuf {
    let p = dir.path().join("victim");
    std::fs::write(&p, "root's secret\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn assert_victim_intact(p: &Path, what: &str) {
    assert_eq!(
        std::fs::read_to_string(p).unwrap(),
        "root's secret\n",
        "{what}: the root-owned file was overwritten"
    );
}

// ---------------------------------------------------------------------------
// Finding 2: --pid-file's temporary file.

/// A directory a local user (nobody) owns, as a pid file's directory is when
/// it lives in a user's bundle, with symlinks to `target` planted at every
/// temporary name the runtimes have used: runc's `.<name>`, and
/// `<name>.tmp<pid>` for every pid the next process can get.
fn planted_pid_dir(target: &Path) -> TempDir {
    let d = TempDir::new("nk-pidplant");
    std::os::unix::fs::chown(d.path(), Some(65534), Some(65534)).unwrap();
    let plant = |name: String| {
        let l = d.path().join(name);
        std::os::unix::fs::symlink(target, &l).unwrap();
        let _ = std::os::unix::fs::lchown(&l, Some(65534), Some(65534));
    };
    plant(".pidfile".into());
    let read = |p: &str| -> u64 {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let max = read("/proc/sys/kernel/pid_max").max(1024);
    let last = read("/proc/sys/kernel/ns_last_pid");
    for k in 1..=max.min(65536) {
        plant(format!("pidfile.tmp{}", (last + k) % max));
    }
    d
}

/// The attack: a user who can write the pid file's directory plants symlinks
/// for the names the runtime writes through, and root truncates and
/// overwrites what they point at (shown on a root-owned 0600 file). The pid
/// file must be written through a fresh, unpredictable, O_EXCL|O_NOFOLLOW
/// name, for create and for exec alike.
#[test]
fn pid_file_planted_symlinks_do_not_clobber_root_files() {
    require_root();
    let secret = TempDir::new("nk-secret");
    let target = victim(&secret);
    for (name, root) in runtimes() {
        let b = Bundle::new(&["sleep", "1000"]);
        let id = unique_id("rt-pid");
        let dir = planted_pid_dir(&target);
        let pidf = dir.path().join("pidfile");
        let (ok, out) = detached(
            &root,
            &[
                "create",
                "--bundle",
                &b.path(),
                "--pid-file",
                pidf.to_str().unwrap(),
                &id,
            ],
        );
        assert_victim_intact(&target, &format!("{name} create --pid-file"));
        if name == "runc" {
            // runc refuses its planted `.pidfile` (O_EXCL) rather than
            // follow it: refusing is a correct answer too.
            let _ = root.run(&["delete", "-f", &id]);
            continue;
        }
        assert!(ok, "{name} create: {out}");
        let meta = std::fs::symlink_metadata(&pidf).unwrap();
        assert!(meta.is_file(), "the pid file is not a regular file");
        let pid: i32 = std::fs::read_to_string(&pidf)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(pid, root.state(&id)["pid"].as_i64().unwrap() as i32);
        // exec --pid-file, through a second planted directory.
        let dir2 = planted_pid_dir(&target);
        let pidf2 = dir2.path().join("pidfile");
        let (ok, out) = detached(
            &root,
            &[
                "exec",
                "-d",
                "--pid-file",
                pidf2.to_str().unwrap(),
                &id,
                "sleep",
                "1000",
            ],
        );
        assert_victim_intact(&target, &format!("{name} exec --pid-file"));
        assert!(ok, "{name} exec: {out}");
        assert!(std::fs::symlink_metadata(&pidf2).unwrap().is_file());
        root.ok(&["delete", "-f", &id]);
    }
}

// ---------------------------------------------------------------------------
// Finding 6: modes of the files in the state directory.

/// Every file below `dir` with its mode, following nothing.
fn modes_below(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        if m.is_dir() {
            out.extend(modes_below(&e.path()));
        } else {
            out.push((e.path(), m.mode() & 0o7777, m.file_type().is_file()));
        }
    }
    out
}

/// The attack: any local user reads `process.env` (database passwords,
/// tokens) from the container's config copy in the state directory, which
/// is traversable (0711). Every regular file the runtime keeps there must be
/// unreadable by group and others (runc keeps only state.json, 0600); the
/// exec fifo is 0622 in both (the init, possibly another uid, opens it for
/// writing; nothing can be read from it).
#[test]
fn state_directory_files_are_private() {
    require_root();
    for (name, root) in runtimes() {
        let mut b = Bundle::new(&["sleep", "1000"]);
        b.edit(|c| {
            c["process"]["env"]
                .as_array_mut()
                .unwrap()
                .push(json!("DB_PASSWORD=hunter2"))
        });
        let id = unique_id("rt-mode");
        detached_ok(&root, &["create", "--bundle", &b.path(), &id]);
        let files = modes_below(root.dir.path());
        assert!(!files.is_empty(), "{name}: nothing in the state root");
        for (p, mode, regular) in &files {
            if *regular {
                assert_eq!(
                    mode & 0o077,
                    0,
                    "{name}: {} is mode {mode:o}: other users can read it",
                    p.display()
                );
            } else {
                assert_eq!(mode & 0o044, 0, "{name}: {} is mode {mode:o}", p.display());
            }
        }
        // The container's own directory is traversable but not listable.
        let cdir = std::fs::metadata(root.dir.path().join(&id)).unwrap();
        assert_eq!(cdir.mode() & 0o077, 0o011, "{name}: state directory mode");
        root.ok(&["delete", "-f", &id]);
    }
}

// ---------------------------------------------------------------------------
// Finding 7: a hook's timeout with a state larger than a pipe.

/// The attack: a config whose annotations make the state JSON larger than a
/// pipe holds (64 KiB), with a hook that never reads its stdin, holds the
/// runtime (and the engine that called it) for as long as the hook likes,
/// whatever its `timeout`. runc stops at the timeout (about 2.05 s here).
#[test]
fn hook_timeout_holds_with_a_state_bigger_than_a_pipe() {
    require_root();
    for (name, root) in runtimes() {
        let mut b = Bundle::new(&["true"]);
        b.edit(|c| {
            let mut ann = serde_json::Map::new();
            for i in 0..160 {
                ann.insert(format!("org.example.big.{i}"), json!("a".repeat(1024)));
            }
            c["annotations"] = Value::Object(ann);
            c["hooks"] = json!({"createRuntime": [
                {"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 2}
            ]});
        });
        let id = unique_id("rt-hook");
        let t = std::time::Instant::now();
        let (ok, out) = detached(&root, &["create", "--bundle", &b.path(), &id]);
        let took = t.elapsed();
        assert!(!ok, "{name}: create succeeded past a hook that timed out");
        // Generous for a loaded machine; the hook itself runs 30 s.
        assert!(
            took < std::time::Duration::from_secs(15),
            "{name}: create returned after {took:?}, not at the hook's 2 s timeout"
        );
        if name == "nk-runtime" {
            assert!(
                out.contains("createRuntime") && out.contains("/bin/sleep"),
                "{name}: the error does not name the hook: {out}"
            );
            assert!(out.contains("timed out"), "{out}");
            assert_nothing_left(&root, &id, &nk_tests::rootfs());
        }
        let _ = root.run(&["delete", "-f", &id]);
    }
}

// ---------------------------------------------------------------------------
// Finding 3: sysctls into a namespace that is the host's own.

/// Puts a host sysctl back when dropped (for a runtime that wrote it).
struct SysctlGuard(&'static str, String);

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0, &self.1);
    }
}

/// The attack: a config "joins" a network namespace by a path that is the
/// host's own (`/proc/<a host pid>/ns/net`) and sets `net.*` sysctls, which
/// then change the host: `net.ipv4.ip_default_ttl` of the host became 99.
/// runc refuses ("not allowed in host network namespace"); so must we.
#[test]
fn sysctls_refused_in_the_hosts_own_network_namespace() {
    require_root();
    const TTL: &str = "/proc/sys/net/ipv4/ip_default_ttl";
    let before = std::fs::read_to_string(TTL).unwrap();
    let _guard = SysctlGuard(TTL, before.clone());
    let want = if before.trim() == "99" { "98" } else { "99" };
    let host_net = format!("/proc/{}/ns/net", std::process::id());
    for (name, root) in runtimes() {
        let mut b = Bundle::new(&["true"]);
        b.edit(|c| {
            let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "network");
            ns.push(json!({"type": "network", "path": host_net}));
            c["linux"]["sysctl"] = json!({"net.ipv4.ip_default_ttl": want});
        });
        let id = unique_id("rt-sysctl");
        let (ok, out) = detached(&root, &["create", "--bundle", &b.path(), &id]);
        let _ = root.run(&["delete", "-f", &id]);
        assert_eq!(
            std::fs::read_to_string(TTL).unwrap(),
            before,
            "{name} changed the host's {TTL}"
        );
        assert!(!ok, "{name}: create accepted the host's network namespace");
        assert!(
            out.contains("not allowed in host network namespace"),
            "{name}: {out}"
        );
    }
}

// ---------------------------------------------------------------------------
// Finding 5: a rootless state root another user prepared.

/// Start time of a pid (field 22 of /proc/<pid>/stat).
fn start_time(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(19).unwrap().parse().unwrap()
}

/// The attack: with no XDG_RUNTIME_DIR the state root of uid V is
/// `/tmp/nano-sandbox-V`, a name any local user can create first. The
/// attacker (nobody) plants a record whose pid is a process of V that the
/// attacker cannot signal, and V's own `kill web KILL` kills it. The same
/// with an explicit --root the attacker owns. runc has no /tmp fallback.
#[test]
fn a_state_root_another_user_planted_is_refused() {
    require_root();
    // A victim uid with no passwd entry (setpriv needs none), unique per run.
    let victim = 200_000 + std::process::id() % 100_000;
    let bin = TempDir::new("nk-rt-bin");
    std::fs::copy(nk_tests::runtime(), bin.path().join("nk-runtime")).unwrap();
    let mut sleeper = Command::new("setpriv")
        .args([
            &format!("--reuid={victim}"),
            &format!("--regid={victim}"),
            "--clear-groups",
            "sleep",
            "1000",
        ])
        .spawn()
        .unwrap();
    let pid = sleeper.id();
    // The attacker's planted roots: the /tmp fallback and a --root of theirs.
    let fallback = PathBuf::from(format!("/tmp/nano-sandbox-{victim}"));
    let _ = std::fs::remove_dir_all(&fallback);
    let theirs = TempDir::new("nk-rt-theirs");
    for root in [fallback.as_path(), theirs.path()] {
        let dir = root.join("web");
        std::fs::create_dir_all(&dir).unwrap();
        let rec = json!({
            "id": "web", "pid": pid, "pid_start": start_time(pid),
            "creator_pid": 1, "creator_start": 0,
            "bundle": "/", "rootfs": "/", "created": "2024-01-01T00:00:00Z",
            "phase": "created", "mode": "container", "owner_uid": victim,
        });
        std::fs::write(dir.join("state.json"), rec.to_string()).unwrap();
        for p in [root, dir.as_path(), dir.join("state.json").as_path()] {
            std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
        }
    }
    let as_victim = |bin: &Path, root: Option<&Path>| {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={victim}"),
            &format!("--regid={victim}"),
            "--clear-groups",
            "env",
            "-i",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        ])
        .arg(bin);
        if let Some(r) = root {
            c.arg("--root").arg(r);
        }
        c.args(["kill", "web", "KILL"]);
        nk_tests::run_to_files(&mut c)
    };
    let nk = bin.path().join("nk-runtime");
    let mut cases = vec![
        ("nk-runtime (no XDG_RUNTIME_DIR)", as_victim(&nk, None)),
        ("nk-runtime --root", as_victim(&nk, Some(theirs.path()))),
    ];
    if Path::new(RUNC).exists() {
        cases.push((
            "runc (no XDG_RUNTIME_DIR)",
            as_victim(Path::new(RUNC), None),
        ));
    }
    let alive = sleeper.try_wait().unwrap().is_none();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let _ = std::fs::remove_dir_all(&fallback);
    for (what, o) in &cases {
        assert!(!o.status.success(), "{what}: kill succeeded: {}", both(o));
    }
    assert!(
        alive,
        "the victim's own kill signalled the pid the attacker planted"
    );
    for (what, o) in cases.iter().filter(|(w, _)| w.starts_with("nk")) {
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains("state root") && e.contains("owned by uid 65534"),
            "{what}: {e}"
        );
    }
}

// ---------------------------------------------------------------------------
// Finding 9: the /sys/fs/cgroup tmpfs of a v1 or hybrid host.

/// The attack: the container's root (default capabilities, no
/// CAP_DAC_OVERRIDE) adds entries to the /sys/fs/cgroup tmpfs and replaces
/// the per-controller entries (the `cpu -> cpu,cpuacct` symlinks where
/// controllers are co-mounted), spoofing what tools in the container read
/// as their cgroup. runc leaves the tmpfs root 0555.
#[test]
fn cgroup_tmpfs_root_is_not_writable_by_the_container() {
    require_root();
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let v1 = mi.lines().any(|l| {
        l.split(" - ")
            .nth(1)
            .is_some_and(|t| t.starts_with("cgroup "))
    });
    if !v1 {
        eprintln!(
            "no cgroup v1 hierarchy here: /sys/fs/cgroup is a cgroup2 mount, no tmpfs to check"
        );
        return;
    }
    let script = "stat -c 'mode=%a' /sys/fs/cgroup; \
        touch /sys/fs/cgroup/planted 2>/dev/null && echo created-file; \
        mkdir /sys/fs/cgroup/planted-dir 2>/dev/null && echo created-dir; \
        ln -s /tmp /sys/fs/cgroup/cpu-fake 2>/dev/null && echo created-link; \
        echo done";
    for (name, root) in runtimes() {
        let b = Bundle::new(&["sh", "-c", script]);
        let o = run(&root, &b, "rt-cgfs");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && out.contains("done"),
            "{name}: {}",
            both(&o)
        );
        assert!(out.contains("mode=555"), "{name}: {out}");
        assert!(
            !out.contains("created"),
            "{name}: the container wrote /sys/fs/cgroup: {out}"
        );
    }
}

// ---------------------------------------------------------------------------
// Also: read-only remounts keep nosuid, nodev and noexec.

/// mount point -> (per-mount options, filesystem type), from mountinfo text.
fn mount_table(mountinfo: &str) -> std::collections::BTreeMap<String, (String, String)> {
    let mut t = std::collections::BTreeMap::new();
    for l in mountinfo.lines() {
        let Some((pre, post)) = l.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let fstype = post.split(' ').next().unwrap_or("").to_string();
        if pre.len() >= 6 {
            t.insert(pre[4].to_string(), (pre[5].to_string(), fstype));
        }
    }
    t
}

/// A tmpfs mounted nosuid,nodev,noexec on the host, unmounted on drop.
struct HostTmpfs(TempDir);

impl HostTmpfs {
    fn new() -> HostTmpfs {
        let d = TempDir::new("nk-rt-nosuid");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "nosuid,nodev,noexec", "nk-rt-nosuid"])
            .arg(d.path())
            .status()
            .unwrap();
        assert!(st.success());
        HostTmpfs(d)
    }
}

impl Drop for HostTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// The attack surface: a read-only remount replaces every per-mount flag,
/// so readonlyPaths (/proc/sys and friends), a read-only root and read-only
/// binds came out `ro,relatime` and lost the nosuid, nodev and noexec of
/// the mount they remount (seen under Podman, whose /proc is
/// nosuid,nodev,noexec): a set-uid file or a device node there would work
/// again. The whole container mount table must match runc's for the same
/// bundle; and a read-only bind of a nosuid,nodev,noexec host mount keeps
/// them even when the config does not repeat them (runc 1.1 drops them
/// there, so that part is checked on nk-runtime alone).
#[test]
fn read_only_remounts_keep_nosuid_nodev_noexec() {
    require_root();
    let data = TempDir::new("nk-rt-data");
    let locked = HostTmpfs::new();
    let mut tables = Vec::new();
    for (name, root) in runtimes() {
        let mut b = Bundle::new(&["cat", "/proc/self/mountinfo"]);
        b.edit(|c| {
            c["root"]["readonly"] = json!(true);
            for m in c["mounts"].as_array_mut().unwrap() {
                if m["destination"] == "/proc" {
                    m["options"] = json!(["nosuid", "noexec", "nodev"]);
                }
            }
            let ms = c["mounts"].as_array_mut().unwrap();
            ms.push(json!({"destination": "/data-ro", "type": "bind",
                "source": data.path(), "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}));
            ms.push(json!({"destination": "/locked-ro", "type": "bind",
                "source": locked.0.path(), "options": ["rbind", "ro"]}));
        });
        let o = run(&root, &b, "rt-ro");
        assert!(o.status.success(), "{name}: {}", both(&o));
        let t = mount_table(&String::from_utf8_lossy(&o.stdout));
        for p in ["/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"] {
            let (opts, _) = t
                .get(p)
                .unwrap_or_else(|| panic!("{name}: no {p} in {t:?}"));
            for f in ["ro", "nosuid", "nodev", "noexec"] {
                assert!(
                    opts.split(',').any(|o| o == f),
                    "{name}: readonlyPath {p} is {opts}: {f} lost"
                );
            }
        }
        if name == "nk-runtime" {
            let (opts, _) = &t["/locked-ro"];
            assert_eq!(
                opts, "ro,nosuid,nodev,noexec,relatime",
                "{name}: /locked-ro"
            );
        }
        tables.push((name, t));
    }
    if let [(_, nk), (_, runc)] = &tables[..] {
        let differ: Vec<String> = nk
            .keys()
            .chain(runc.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|p| p.as_str() != "/locked-ro" && nk.get(*p) != runc.get(*p))
            .map(|p| format!("{p}: nk-runtime {:?}, runc {:?}", nk.get(p), runc.get(p)))
            .collect();
        assert!(
            differ.is_empty(),
            "mount tables differ:\n{}",
            differ.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------
// Also: the AppArmor (and SELinux) attribute write checks it is on procfs.

/// The attack (CVE-2019-16884 class): the container's mounts put a tmpfs or
/// an image directory at /proc, so the profile the runtime writes to
/// /proc/self/attr/exec after pivot_root lands in an ordinary file and the
/// process runs unconfined, with no error. The write must go through a
/// descriptor whose fstatfs magic is procfs's. This host may have no
/// AppArmor, so the check is exercised on the library function the init
/// calls, with such a fake attr file on a real tmpfs.
#[test]
fn lsm_attribute_write_refuses_a_fake_proc() {
    require_root();
    let fake_proc = HostTmpfs::new();
    let attr = fake_proc.0.path().join("self/attr");
    std::fs::create_dir_all(&attr).unwrap();
    std::fs::write(attr.join("exec"), "").unwrap();
    let e = sandbox::linux::lsm::write_attr(&attr.join("exec"), b"exec nk-profile")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not on procfs"), "{e}");
    assert_eq!(std::fs::read_to_string(attr.join("exec")).unwrap(), "");
    if !sandbox::linux::lsm::apparmor_enabled() {
        eprintln!("AppArmor is not enabled here: no container with a profile was started");
    }
}

// ---------------------------------------------------------------------------
// Finding 4: delete kills only the container's processes.

/// The cgroup hierarchies of this host where a test parks a host process:
/// every real directory under /sys/fs/cgroup that is a cgroup (v1
/// controllers, named ones, unified), but the v1 devices one (a devices
/// cgroup with children refuses new rules, so the container could not be
/// created on top of a sub-cgroup there at all).
fn hierarchies() -> Vec<PathBuf> {
    all_hierarchies()
        .into_iter()
        .filter(|p| !p.ends_with("devices"))
        .collect()
}

/// Every cgroup hierarchy of this host (for clean-up).
fn all_hierarchies() -> Vec<PathBuf> {
    let top = Path::new("/sys/fs/cgroup");
    if top.join("cgroup.procs").exists() {
        return vec![top.to_path_buf()];
    }
    std::fs::read_dir(top)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .collect()
}

/// A host process (not the container's) parked in the cgroup `rel` of every
/// hierarchy; on drop it is moved back to the root, killed, and the
/// cgroups below `top` are removed.
struct HostProcess {
    child: std::process::Child,
    top: String,
}

impl HostProcess {
    fn new(top: &str) -> HostProcess {
        HostProcess {
            child: Command::new("sleep").arg("1000").spawn().unwrap(),
            top: top.to_string(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Make `rel` in every hierarchy (parents too; a v1 cpuset cgroup gets
    /// its parent's cpus and mems, or no task could join it).
    fn mkdir(rel: &str) {
        for h in hierarchies() {
            let mut d = h.clone();
            for c in Path::new(rel.trim_start_matches('/')).components() {
                let parent = d.clone();
                d.push(c);
                let _ = std::fs::create_dir(&d);
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let now = std::fs::read_to_string(d.join(f)).unwrap_or_default();
                    if d.join(f).exists() && now.trim().is_empty() {
                        let v = std::fs::read_to_string(parent.join(f)).unwrap();
                        std::fs::write(d.join(f), v.trim()).unwrap();
                    }
                }
            }
        }
    }

    /// Move the process into `rel` in every hierarchy.
    fn move_to(&self, rel: &str) {
        for h in hierarchies() {
            let procs = h.join(rel.trim_start_matches('/')).join("cgroup.procs");
            std::fs::write(&procs, self.pid().to_string())
                .unwrap_or_else(|e| panic!("{}: {e}", procs.display()));
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        for h in hierarchies() {
            let _ = std::fs::write(h.join("cgroup.procs"), self.pid().to_string());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for h in all_hierarchies() {
            let top = h.join(self.top.trim_start_matches('/'));
            let mut dirs: Vec<PathBuf> = Vec::new();
            let mut stack = vec![top.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
                dirs.push(d);
            }
            for d in dirs.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

/// The attack: a host process (a monitoring agent, another tenant's job)
/// sits in a sub-cgroup of the container's cgroupsPath that was there before
/// create, and `delete -f` killed it and removed its cgroup, even with the
/// container in a pid namespace of its own. Delete must kill only the
/// container's processes (the init of a private pid namespace; without
/// one, those in the cgroups the container owns) and leave cgroups it did
/// not create. runc kills only the init here.
#[test]
fn delete_spares_a_host_process_in_a_pre_existing_sub_cgroup() {
    require_root();
    let runtimes = runtimes();
    for (name, root) in &runtimes {
        // nk-runtime also without a pid namespace (runc then kills the
        // whole cgroup tree, host process included: not checked there).
        let pidns_cases: &[bool] = if *name == "runc" {
            &[true]
        } else {
            &[true, false]
        };
        for &pidns in pidns_cases {
            let top = format!("/{}", unique_id("nk-rt-cg"));
            let path = format!("{top}/ctr");
            HostProcess::mkdir(&format!("{path}/theirs"));
            let mut host = HostProcess::new(&top);
            let mut b = Bundle::new(&["sleep", "1000"]);
            b.edit(|c| {
                c["linux"]["cgroupsPath"] = json!(path);
                if !pidns {
                    let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
                    ns.retain(|n| n["type"] != "pid");
                }
            });
            let id = unique_id("rt-del");
            detached_ok(root, &["run", "-d", "--bundle", &b.path(), &id]);
            host.move_to(&format!("{path}/theirs"));
            let o = root.run(&["delete", "-f", &id]);
            let what = format!("{name} (pid namespace: {pidns})");
            assert!(
                host.alive(),
                "{what}: delete -f killed the host process: {}",
                both(&o)
            );
            for h in hierarchies() {
                let theirs = h.join(path.trim_start_matches('/')).join("theirs");
                assert!(
                    theirs.is_dir(),
                    "{what}: delete removed {}",
                    theirs.display()
                );
            }
            if *name == "nk-runtime" {
                assert!(o.status.success(), "{what}: {}", both(&o));
                assert!(root.ids().is_empty(), "{what}: state left");
            }
        }
    }
}

/// The attack: a config names, as its cgroupsPath, an existing cgroup that
/// holds a host process; it was accepted silently, and `delete -f` killed
/// that process. create must refuse a cgroup that already has processes (as
/// runc 1.2 does; runc 1.1 accepts it, but its delete kills only the init).
/// A cgroupsPath that is a hierarchy's root (every process of the host) is
/// refused outright.
#[test]
fn create_refuses_a_cgroup_with_host_processes_and_the_root_cgroup() {
    require_root();
    for (name, root) in runtimes() {
        let top = format!("/{}", unique_id("nk-rt-busy"));
        HostProcess::mkdir(&top);
        let mut host = HostProcess::new(&top);
        host.move_to(&top);
        let mut b = Bundle::new(&["sleep", "1000"]);
        b.edit(|c| c["linux"]["cgroupsPath"] = json!(top));
        let id = unique_id("rt-busy");
        let (ok, out) = detached(&root, &["run", "-d", "--bundle", &b.path(), &id]);
        let o = root.run(&["delete", "-f", &id]);
        assert!(
            host.alive(),
            "{name}: the host process was killed: {out} {}",
            both(&o)
        );
        if name == "nk-runtime" {
            assert!(!ok, "{name}: a cgroup with a host process was accepted");
            assert!(
                out.contains("already has 1 process") && out.contains(&host.pid().to_string()),
                "{out}"
            );
            assert_nothing_left(&root, &id, &nk_tests::rootfs());
        }
        drop(host);
        if name == "nk-runtime" {
            for p in ["/", "/.", "//"] {
                b.edit(|c| c["linux"]["cgroupsPath"] = json!(p));
                let id = unique_id("rt-root");
                let (ok, out) = detached(&root, &["create", "--bundle", &b.path(), &id]);
                assert!(!ok, "cgroupsPath {p:?} accepted");
                assert!(out.contains("root cgroup"), "{p}: {out}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A container that joins a pid namespace by path (a pod's shared pid
// namespace, `docker run --pid container:X`) gets a procfs of that
// namespace. One of the runtime's would show the host's processes, and
// /proc/1/root would be the host's root directory.

#[test]
fn a_joined_pid_namespace_gets_its_own_procfs_not_the_hosts() {
    require_root();
    let holder = nk_tests::Unshared::new("--pid");
    let (path, _) = holder.ns("pid_for_children");
    let host_init = std::fs::read("/proc/1/cmdline").unwrap();
    for (name, root) in runtimes() {
        let mut b = Bundle::new(&["sh", "-c", "cat /proc/1/cmdline; echo"]);
        b.edit(|c| {
            let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "pid");
            ns.push(json!({"type": "pid", "path": path}));
        });
        let id = unique_id("rt-pidjoin");
        let o = root.run(&["run", "--bundle", &b.path(), &id]);
        let _ = root.run(&["delete", "-f", &id]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{name}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let first = out.lines().next().unwrap_or("");
        assert_eq!(
            first.replace('\0', " ").trim(),
            "sleep 1000",
            "{name}: /proc/1 in the container is not the joined namespace's init"
        );
        assert_ne!(
            first.as_bytes(),
            &host_init[..],
            "{name}: the container's /proc shows the host's pid 1"
        );
    }
}
