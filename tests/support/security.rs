//! Helpers shared by the security, seccomp and rootless tests: private
//! rootfs copies, the host libraries and the probe bound into a container,
//! and the checks that a failed create left nothing behind.

use crate::{rootfs, Bundle, Root, TempDir};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A program of this test crate (tests/bin/NAME.rs, built by cargo for the
/// integration tests), found beside the running test executable: cargo
/// puts tests in target/PROFILE/deps and programs in target/PROFILE.
pub fn test_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let p = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join(name))
        .expect("target/PROFILE");
    assert!(
        p.exists(),
        "{} is missing: it is built with the tests (cargo test -p nk-tests)",
        p.display()
    );
    p
}

/// A private copy of the busybox rootfs, for tests that change it.
pub fn private_rootfs() -> TempDir {
    let d = TempDir::new("nk-rootfs");
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", rootfs().display()))
        .arg(d.path())
        .status()
        .unwrap();
    assert!(st.success(), "copy of the test rootfs failed");
    d
}

/// Point the bundle at `rootfs`.
pub fn use_rootfs(b: &mut Bundle, rootfs: &Path) {
    b.edit(|c| c["root"]["path"] = json!(rootfs.display().to_string()));
}

/// Add a mount entry.
pub fn add_mount(b: &mut Bundle, m: Value) {
    b.edit(|c| c["mounts"].as_array_mut().unwrap().push(m));
}

/// A tmpfs on /tmp, so tests may write without touching the shared rootfs.
pub fn tmpfs_tmp(b: &mut Bundle) {
    add_mount(
        b,
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]}),
    );
}

/// Make the probe runnable inside: the host's /usr/lib and /usr/lib64 bound
/// read-only (with /lib and /lib64 links in the private `rootfs`), and the
/// probe itself at /probe.
pub fn with_probe(b: &mut Bundle, rootfs: &Path) {
    for d in ["usr/lib", "usr/lib64"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    for (l, t) in [("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        let _ = std::os::unix::fs::symlink(t, rootfs.join(l));
    }
    std::fs::write(rootfs.join("probe"), b"").unwrap();
    let probe = test_bin("nk-probe");
    for (src, dst) in [
        ("/usr/lib", "/usr/lib"),
        ("/usr/lib64", "/usr/lib64"),
        (probe.to_str().unwrap(), "/probe"),
    ] {
        add_mount(
            b,
            json!({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "ro", "nosuid", "nodev"]}),
        );
    }
}

/// A bundle on a private rootfs with the probe available.
pub fn probe_bundle(args: &[&str]) -> (Bundle, TempDir) {
    let r = private_rootfs();
    let mut b = Bundle::new(args);
    use_rootfs(&mut b, r.path());
    with_probe(&mut b, r.path());
    (b, r)
}

/// `run` a container of `b` under a unique id; returns the output.
pub fn run(root: &Root, b: &Bundle, prefix: &str) -> Output {
    let id = crate::unique_id(prefix);
    root.run(&["run", "--bundle", &b.path(), &id])
}

/// Combined stdout and stderr, for messages.
pub fn both(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Lines of the kernel log (needs root).
pub fn kernel_log() -> String {
    let o = Command::new("dmesg").output().expect("dmesg");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Seccomp audit records (type=1326) of one host pid.
pub fn seccomp_audit(pid: i32) -> Vec<String> {
    let needle = format!(" pid={pid} ");
    kernel_log()
        .lines()
        .filter(|l| l.contains("type=1326") && l.contains(&needle))
        .map(String::from)
        .collect()
}

/// Run a runtime command whose container outlives it (create, run -d, exec
/// -d): the container inherits stdio, so pipes would never reach EOF. Output
/// goes to a file instead; returns (success, output).
pub fn detached(root: &Root, args: &[&str]) -> (bool, String) {
    let dir = TempDir::new("nk-out");
    let outf = dir.path().join("out");
    let out = std::fs::File::create(&outf).unwrap();
    let st = root
        .cmd()
        .args(args)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .status()
        .unwrap();
    (
        st.success(),
        std::fs::read_to_string(&outf).unwrap_or_default(),
    )
}

/// `detached` that must succeed.
pub fn detached_ok(root: &Root, args: &[&str]) {
    let (ok, out) = detached(root, args);
    assert!(ok, "{args:?} failed: {out}");
}

/// Create a container with --pid-file, start it, wait for it to stop, and
/// return (its host pid, stdout+stderr of the container in a file).
pub fn run_with_pid(root: &Root, b: &Bundle, prefix: &str) -> (i32, String) {
    let id = crate::unique_id(prefix);
    let dir = TempDir::new("nk-out");
    let pidf = dir.path().join("pid");
    let outf = dir.path().join("out");
    let out = std::fs::File::create(&outf).unwrap();
    let st = root
        .cmd()
        .args(["create", "--bundle", &b.path(), "--pid-file"])
        .arg(&pidf)
        .arg(&id)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "create failed: {}",
        std::fs::read_to_string(&outf).unwrap_or_default()
    );
    let pid: i32 = std::fs::read_to_string(&pidf)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    root.ok(&["start", &id]);
    root.wait_status(&id, "stopped");
    root.ok(&["delete", &id]);
    (pid, std::fs::read_to_string(&outf).unwrap_or_default())
}

/// Everything a create may leave behind, checked after a refused one: the
/// state directory (and private `.new-*` ones), the cgroup, host mounts of
/// the bundle or rootfs, and processes still in the container's cgroup.
pub fn assert_nothing_left(root: &Root, id: &str, rootfs: &Path) {
    let leftovers: Vec<PathBuf> = std::fs::read_dir(root.dir.path())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().unwrap_or_default().to_string_lossy();
                    n == id || n.starts_with(&format!(".new-{id}-"))
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "state left in {}: {leftovers:?}",
        root.dir.path().display()
    );
    assert!(
        !crate::cgroup_exists(&format!("nano-sandbox/{id}")),
        "cgroup nano-sandbox/{id} left behind"
    );
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let r = rootfs.display().to_string();
    assert!(
        !mi.lines().any(|l| l.contains(&r)),
        "a mount of {r} was left on the host"
    );
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Ok(cg) = std::fs::read_to_string(e.path().join("cgroup")) {
            assert!(
                !cg.contains(&format!("/{id}\n")),
                "process {} is still in the container's cgroup",
                e.file_name().to_string_lossy()
            );
        }
        // A live init holds a descriptor on its state directory.
        let holds = std::fs::read_dir(e.path().join("fd"))
            .map(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy().contains(id))
                })
            })
            .unwrap_or(false);
        assert!(
            !holds,
            "process {} holds a descriptor naming {id}",
            e.file_name().to_string_lossy()
        );
    }
}

/// Run a runtime command that inherits extra descriptors without CLOEXEC,
/// as from a careless caller: each (number, path) is opened read-only and
/// placed at that number in the runtime process. Output goes to files.
pub fn run_with_fds(root: &Root, fds: &[(i32, &Path)], args: &[&str]) -> Output {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let opened: Vec<(i32, OwnedFd)> = fds
        .iter()
        .map(|(n, p)| (*n, OwnedFd::from(std::fs::File::open(p).unwrap())))
        .collect();
    let raw: Vec<(i32, i32)> = opened.iter().map(|(n, f)| (*n, f.as_raw_fd())).collect();
    let mut c = root.cmd();
    c.args(args);
    // SAFETY: only dup2 (async-signal-safe) runs between fork and exec.
    unsafe {
        c.pre_exec(move || {
            // Out of the way first, so no target overwrites a later source.
            for (i, (_, src)) in raw.iter().enumerate() {
                if libc::dup2(*src, 900 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, (n, _)) in raw.iter().enumerate() {
                if libc::dup2(900 + i as i32, *n) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(900 + i as i32);
            }
            Ok(())
        });
    }
    let o = crate::run_to_files(&mut c);
    drop(opened);
    o
}
