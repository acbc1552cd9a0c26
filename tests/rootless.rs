//! Rootless: a throwaway user (made with useradd, removed with userdel)
//! runs `nk-runtime spec --rootless` and `run`, with state under
//! $XDG_RUNTIME_DIR/nano-sandbox, cgroups skipped unless delegated (then
//! used, limits and all), subordinate ids through newuidmap, and a clear
//! error for everything that needs root.

use nk_tests::security::*;
use nk_tests::{require_root, unique_id, TempDir};
use serde_json::{json, Value};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A user that exists for one test.
struct User {
    name: String,
    uid: u32,
    gid: u32,
    /// The runtime binary, copied where the user can execute it.
    bin: TempDir,
    /// $XDG_RUNTIME_DIR (mode 0700, the user's).
    xdg: TempDir,
}

fn retry(what: &str, mut f: impl FnMut() -> Output) {
    // useradd/userdel lock /etc/passwd; parallel tests take turns.
    nk_tests::wait_for(
        &format!("{what}: /etc/passwd to be unlocked"),
        nk_tests::DEADLINE,
        || {
            let o = f();
            if o.status.success() {
                return Some(());
            }
            if !String::from_utf8_lossy(&o.stderr).contains("lock") {
                panic!("{what}: {}", String::from_utf8_lossy(&o.stderr));
            }
            None
        },
    );
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
}

impl User {
    fn new() -> User {
        require_root();
        let mut name = format!("nkrl{}", unique_id("").replace('-', ""));
        name.truncate(30);
        retry("useradd", || {
            Command::new("useradd")
                .args(["-M", "-U", "-s", "/bin/sh", "-d", "/nonexistent", &name])
                .output()
                .unwrap()
        });
        let id = |flag: &str| -> u32 {
            let o = Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        let bin = TempDir::new("nk-rl-bin");
        // Copied by install(1), not from this process: a child another test
        // forks meanwhile would inherit our write descriptor until its exec,
        // and running the copy would fail with ETXTBSY.
        nk_tests::install_executable(&nk_tests::runtime(), &bin.path().join("nk-runtime"), "0755");
        let xdg = TempDir::new("nk-rl-xdg");
        chown(xdg.path(), uid, gid);
        std::fs::set_permissions(
            xdg.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        User {
            name,
            uid,
            gid,
            bin,
            xdg,
        }
    }

    /// nk-runtime as this user, with its own environment (no --root).
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", &self.name, "--", "env", "-i"])
            .arg(format!("XDG_RUNTIME_DIR={}", self.xdg.path().display()))
            .arg("PATH=/usr/sbin:/usr/bin:/sbin:/bin")
            .arg(self.bin.path().join("nk-runtime"))
            .args(args)
            .stdin(std::process::Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        nk_tests::run_to_files(&mut self.cmd(args))
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{args:?} as {}: {}",
            self.name,
            both(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn state_root(&self) -> PathBuf {
        self.xdg.path().join("nano-sandbox")
    }

    /// A bundle made by `spec --rootless` as this user, on the shared
    /// rootfs, running `args`.
    fn bundle(&self, args: &[&str]) -> (TempDir, Value) {
        let dir = TempDir::new("nk-rl-bundle");
        chown(dir.path(), self.uid, self.gid);
        self.ok(&[
            "spec",
            "--rootless",
            "--bundle",
            &dir.path().display().to_string(),
        ]);
        let cfg = dir.path().join("config.json");
        assert_eq!(std::fs::metadata(&cfg).unwrap().uid(), self.uid);
        let mut c: Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
        c["root"]["path"] = json!(nk_tests::rootfs());
        c["process"]["terminal"] = json!(false);
        c["process"]["args"] = json!(args);
        let b = (dir, c);
        save(&b);
        b
    }
}

fn save(b: &(TempDir, Value)) {
    std::fs::write(
        b.0.path().join("config.json"),
        serde_json::to_vec_pretty(&b.1).unwrap(),
    )
    .unwrap();
}

impl Drop for User {
    fn drop(&mut self) {
        // Anything of ours still running is killed first (by pid).
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(m) = e.metadata() {
                if m.uid() == self.uid && e.file_name().to_string_lossy().parse::<i32>().is_ok() {
                    if let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() {
                        // SAFETY: kill(2) a process of the throwaway user.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
        let name = self.name.clone();
        retry("userdel", || {
            Command::new("userdel").arg(&name).output().unwrap()
        });
    }
}

/// The cgroup lines of a process, or of this test process.
fn cgroups_of(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default()
}

#[test]
fn spec_rootless_then_run_in_a_user_namespace() {
    let u = User::new();
    let b = u.bundle(&[
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; ls /proc/1 >/dev/null && echo proc-ok",
    ]);
    // What spec --rootless wrote: a user namespace mapping root to us.
    let c = &b.1;
    assert!(c["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["type"] == "user"));
    assert!(!c["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["type"] == "network"));
    assert_eq!(c["linux"]["uidMappings"][0]["hostID"], u.uid);
    assert_eq!(c["linux"]["gidMappings"][0]["hostID"], u.gid);
    assert!(c["linux"]["resources"].is_null());
    let bp = b.0.path().display().to_string();

    let o = u.run(&["run", "--bundle", &bp, &unique_id("rl")]);
    assert!(o.status.success(), "{}", both(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l.first(), Some(&"0"), "{out}");
    assert_eq!(
        l.get(1).map(|m| m.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["0", &u.uid.to_string(), "1"]),
        "{out}"
    );
    assert!(out.contains("proc-ok"), "{out}");

    // Detached: state lives under $XDG_RUNTIME_DIR/nano-sandbox, owned by
    // the user; every verb works as the user; no cgroup is made.
    let mut b = b;
    b.1["process"]["args"] = json!(["sleep", "100"]);
    save(&b);
    let id = unique_id("rl");
    let (ok, out) = {
        let dir = TempDir::new("nk-out");
        let f = std::fs::File::create(dir.path().join("o")).unwrap();
        let st = u
            .cmd(&["run", "-d", "--bundle", &bp, &id])
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .status()
            .unwrap();
        (
            st.success(),
            std::fs::read_to_string(dir.path().join("o")).unwrap_or_default(),
        )
    };
    assert!(ok, "{out}");
    let sdir = u.state_root().join(&id);
    assert!(
        sdir.join("state.json").is_file(),
        "no state in {}",
        sdir.display()
    );
    assert_eq!(std::fs::metadata(&sdir).unwrap().uid(), u.uid);
    assert!(u.ok(&["list", "-q"]).lines().any(|l| l == id));
    let st: Value = serde_json::from_str(&u.ok(&["state", &id])).unwrap();
    assert_eq!(st["status"], "running");
    let pid = st["pid"].as_i64().unwrap().to_string();
    assert!(
        !nk_tests::cgroup_exists(&format!("nano-sandbox/{id}")),
        "a cgroup was made"
    );
    // The init stays in the cgroups the runtime was started in (ours).
    assert_eq!(cgroups_of(&pid), cgroups_of("self"));
    assert_eq!(u.ok(&["exec", &id, "id", "-u"]).trim(), "0");
    u.ok(&["kill", &id, "KILL"]);
    nk_tests::wait_for("the container to stop", nk_tests::DEADLINE, || {
        let st: Value = serde_json::from_str(&u.ok(&["state", &id])).unwrap();
        (st["status"] == "stopped").then_some(())
    });
    u.ok(&["delete", &id]);
    assert!(!sdir.exists());
}

/// Cgroup hierarchies mounted here: (mount point, is cgroup2).
fn hierarchies() -> Vec<(PathBuf, bool)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let t = *f.get(sep + 1)?;
            (t == "cgroup" || t == "cgroup2").then(|| (PathBuf::from(f[4]), t == "cgroup2"))
        })
        .collect()
}

/// A cgroup delegated to a user in every hierarchy, removed on drop.
struct Delegated {
    name: String,
}

impl Delegated {
    fn new(u: &User) -> Delegated {
        let name = unique_id("nk-deleg");
        for (h, _) in hierarchies() {
            let d = h.join(&name);
            std::fs::create_dir(&d).unwrap();
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = std::fs::read_to_string(h.join(f)) {
                    std::fs::write(d.join(f), v.trim()).unwrap();
                }
            }
            // The directory and the files a delegate writes.
            chown(&d, u.uid, u.gid);
            for f in std::fs::read_dir(&d).unwrap().flatten() {
                chown(&f.path(), u.uid, u.gid);
            }
        }
        Delegated { name }
    }

    /// Move the process about to exec (called between fork and exec) into
    /// the delegated cgroup, as a session manager would start the user there.
    fn enter(&self, c: &mut Command) {
        use std::os::unix::process::CommandExt;
        let files: Vec<std::ffi::CString> = hierarchies()
            .iter()
            .map(|(h, _)| {
                std::ffi::CString::new(h.join(&self.name).join("cgroup.procs").to_str().unwrap())
                    .unwrap()
            })
            .collect();
        // SAFETY: open/write/close of prepared paths only, between fork and exec.
        unsafe {
            c.pre_exec(move || {
                for f in &files {
                    let fd = libc::open(f.as_ptr(), libc::O_WRONLY);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let r = libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                    if r < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}

impl Drop for Delegated {
    fn drop(&mut self) {
        for (h, _) in hierarchies() {
            let d = h.join(&self.name);
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.path().is_dir() {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&d);
        }
    }
}

#[test]
fn delegated_cgroup_is_used_with_its_limits() {
    let u = User::new();
    let deleg = Delegated::new(&u);
    let mut b = u.bundle(&["sleep", "100"]);
    let id = unique_id("rlcg");
    b.1["linux"]["cgroupsPath"] = json!(format!("/{}/{id}", deleg.name));
    b.1["linux"]["resources"] = json!({"pids": {"limit": 20}});
    save(&b);
    let bp = b.0.path().display().to_string();
    let dir = TempDir::new("nk-out");
    let f = std::fs::File::create(dir.path().join("o")).unwrap();
    let mut c = u.cmd(&["run", "-d", "--bundle", &bp, &id]);
    c.stdout(f.try_clone().unwrap()).stderr(f);
    deleg.enter(&mut c);
    let st = c.status().unwrap();
    assert!(
        st.success(),
        "{}",
        std::fs::read_to_string(dir.path().join("o")).unwrap_or_default()
    );
    let st: Value = serde_json::from_str(&u.ok(&["state", &id])).unwrap();
    let pid = st["pid"].as_i64().unwrap().to_string();
    let cg = Path::new("/sys/fs/cgroup/pids").join(&deleg.name).join(&id);
    assert_eq!(
        std::fs::read_to_string(cg.join("pids.max")).unwrap().trim(),
        "20"
    );
    assert!(std::fs::read_to_string(cg.join("cgroup.procs"))
        .unwrap()
        .lines()
        .any(|l| l == pid));
    u.ok(&["delete", "-f", &id]);
    assert!(!cg.exists(), "the container's cgroup was not removed");
}

#[test]
fn subordinate_ids_through_newuidmap() {
    let u = User::new();
    let mut b = u.bundle(&[
        "sh",
        "-c",
        "cat /proc/self/uid_map; touch /tmp/f && chown 1000:1000 /tmp/f && stat -c %u:%g /tmp/f",
    ]);
    b.1["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    b.1["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": u.uid, "size": 1}, {"containerID": 1, "hostID": 400000, "size": 65535}]);
    b.1["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": u.gid, "size": 1}, {"containerID": 1, "hostID": 400000, "size": 65535}]);
    for set in ["bounding", "effective", "permitted"] {
        b.1["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_CHOWN"));
    }
    save(&b);
    let bp = b.0.path().display().to_string();
    // Without /etc/subuid entries: a clear error, nothing left.
    let id = unique_id("rlsub");
    let o = u.run(&["run", "--bundle", &bp, &id]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        e.contains("uid_map") && e.contains("newuidmap") && e.contains("/etc/subuid"),
        "{e}"
    );
    assert!(!u.state_root().join(&id).exists());
    // With them, newuidmap/newgidmap write the maps.
    retry("usermod", || {
        Command::new("usermod")
            .args([
                "--add-subuids",
                "400000-465534",
                "--add-subgids",
                "400000-465534",
                &u.name,
            ])
            .output()
            .unwrap()
    });
    let o = u.run(&["run", "--bundle", &bp, &unique_id("rlsub")]);
    assert!(o.status.success(), "{}", both(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("400000"), "{out}");
    assert!(out.trim_end().ends_with("1000:1000"), "{out}");
}

#[test]
fn what_needs_root_fails_clearly_and_leaves_nothing() {
    let u = User::new();
    let base = u.bundle(&["true"]);
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        (
            "a memory limit without a delegated cgroup",
            Box::new(|c| c["linux"]["resources"] = json!({"memory": {"limit": 100000000}})),
            vec!["linux.resources.memory", "delegated"],
        ),
        (
            "more ids than our own, without /etc/subuid",
            Box::new(|c| {
                c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 10}])
            }),
            vec!["uid_map", "newuidmap"],
        ),
        (
            "joining the host's network namespace",
            Box::new(|c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "network", "path": "/proc/1/ns/net"}))
            }),
            vec!["namespace", "/proc/1/ns/net", "Permission denied"],
        ),
        (
            "an idmapped mount",
            Box::new(|c| {
                c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/mnt", "type": "bind", "source": "/tmp", "options": ["rbind", "idmap"]}))
            }),
            vec!["mounts[", "not available rootless"],
        ),
        (
            "a lower oom_score_adj",
            Box::new(|c| c["process"]["oomScoreAdj"] = json!(-500)),
            vec!["process.oomScoreAdj", "-500"],
        ),
        (
            "an rlimit above the hard limit",
            Box::new(|c| {
                c["process"]["rlimits"] =
                    json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1000000}])
            }),
            vec!["RLIMIT_NOFILE"],
        ),
    ];
    for (what, edit, words) in cases {
        let mut b = (TempDir::new("nk-rl-bundle"), base.1.clone());
        edit(&mut b.1);
        save(&b);
        let id = unique_id("rlbad");
        let o = u.run(&["run", "--bundle", &b.0.path().display().to_string(), &id]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{what}: accepted");
        for w in &words {
            assert!(e.contains(w), "{what}: {w:?} not in: {e}");
        }
        assert!(!u.state_root().join(&id).exists(), "{what}: state left");
        assert!(
            !nk_tests::cgroup_exists(&format!("nano-sandbox/{id}")),
            "{what}: cgroup left"
        );
    }
    // A state root the user cannot write.
    let o = u.run(&[
        "--root",
        "/run/nk-rootless-test/x",
        "run",
        "--bundle",
        &base.0.path().display().to_string(),
        "x",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && e.contains("/run/nk-rootless-test")
            && e.contains("ermission denied"),
        "{e}"
    );
    assert!(!Path::new("/run/nk-rootless-test").exists());
}

/// Without a cgroup (rootless, not delegated) nothing sweeps the
/// container's processes at delete but the runtime itself. A create killed
/// (SIGKILL, through the fault-injection build's NK_FAULT) right after its
/// init reported ready has left that init parked at the exec barrier, no
/// longer bound to die with its parent, while the record still says
/// "creating": `delete -f` must kill it all the same.
#[test]
fn create_killed_after_the_init_is_parked_leaves_no_process() {
    let u = User::new();
    let fault = u.bin.path().join("nk-runtime-fault");
    nk_tests::install_executable(&nk_tests::fault_runtime(), &fault, "0755");
    let b = u.bundle(&["sleep", "100"]);
    let bp = b.0.path().display().to_string();
    let id = unique_id("rlcrash");
    let mut c = Command::new("runuser");
    c.args(["-u", &u.name, "--", "env", "-i"])
        .arg(format!("XDG_RUNTIME_DIR={}", u.xdg.path().display()))
        .arg("PATH=/usr/sbin:/usr/bin:/sbin:/bin")
        .arg("NK_FAULT=state.created")
        .arg(&fault)
        .args(["create", "--bundle", &bp, &id])
        .stdin(std::process::Stdio::null());
    let o = nk_tests::run_to_files(&mut c);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("NK_FAULT: killed before step state.created"),
        "the fault did not fire: {}",
        both(&o)
    );
    let st: Value = serde_json::from_slice(
        &std::fs::read(u.state_root().join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    let pid = st["pid"].as_i64().unwrap();
    let dead = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
            .unwrap_or(true)
    };
    assert!(
        !dead(),
        "the parked init should still be there before delete"
    );
    u.ok(&["delete", "-f", &id]);
    assert!(!u.state_root().join(&id).exists());
    // A killed process is dead at once; reaping it is its parent's (pid 1's) job.
    nk_tests::wait_for("the parked init to die", nk_tests::DEADLINE, || {
        dead().then_some(())
    });
}

/// A runtime the user may execute but not read (mode 0711, root's): without
/// privilege for a read-only bind mount of itself, the runtime must copy
/// itself into a sealed memfd for the container, which needs reading
/// /proc/self/exe. The error says so, names the file, and nothing is left.
#[test]
fn unreadable_executable_fails_clearly_and_leaves_nothing() {
    let u = User::new();
    let x = u.bin.path().join("nk-runtime-noread");
    nk_tests::install_executable(&nk_tests::runtime(), &x, "0711");
    let b = u.bundle(&["true"]);
    let bp = b.0.path().display().to_string();
    let id = unique_id("rlnoread");
    let mut c = Command::new("runuser");
    c.args(["-u", &u.name, "--", "env", "-i"])
        .arg(format!("XDG_RUNTIME_DIR={}", u.xdg.path().display()))
        .arg("PATH=/usr/sbin:/usr/bin:/sbin:/bin")
        .arg(&x)
        .args(["run", "--bundle", &bp, &id])
        .stdin(std::process::Stdio::null());
    let o = nk_tests::run_to_files(&mut c);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "ran without reading itself: {}",
        both(&o)
    );
    assert!(
        e.contains("cannot read the runtime's own executable")
            && e.contains(&*x.to_string_lossy())
            && e.contains("Permission denied"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    assert!(!u.state_root().join(&id).exists());
}
