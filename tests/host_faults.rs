//! Faults of the host under the runtime: --root on a full filesystem, a
//! read-only --root, the state directory deleted under a running container,
//! its cgroup removed under it, and a runtime whose own executable cannot be
//! read or is deleted. Each gets a clear error (no panic), and nothing is
//! left once the container is deleted.

use nk_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for one test, unmounted (lazily) on drop.
struct Tmpfs {
    _dir: TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let dir = TempDir::new("nk-hf-mnt");
        let path = std::fs::canonicalize(dir.path()).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "nk-hostfault"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success(), "mount a tmpfs on {}", path.display());
        Tmpfs { _dir: dir, path }
    }

    fn remount(&self, opt: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(st.success(), "remount {opt}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A container's world: a state root (given), a bundle whose program has a
/// marker in its command line, and the leftover check.
struct Case {
    root: PathBuf,
    bundle: Bundle,
    id: String,
    marker: String,
}

impl Case {
    fn new(root: &Path) -> Case {
        let id = unique_id("hf");
        let marker = format!("hf-marker-{}", id.replace('-', ""));
        let script = format!("while :; do sleep 1; done; : {marker}");
        Case {
            root: root.to_path_buf(),
            bundle: Bundle::new(&["sh", "-c", &script]),
            id,
            marker,
        }
    }

    fn rt(&self, args: &[&str]) -> (Option<i32>, String) {
        let o = run_to_files(
            Command::new(runtime())
                .arg("--root")
                .arg(&self.root)
                .args(args),
        );
        (o.status.code(), stderr(&o))
    }

    fn run_d(&self) -> (Option<i32>, String) {
        self.rt(&["run", "-d", "--bundle", &self.bundle.path(), &self.id])
    }

    fn leftovers(&self) -> Leftovers {
        leftovers(
            &self.root,
            &self.id,
            &[self.bundle.dir.path()],
            &self.marker,
        )
    }

    fn pid(&self) -> i32 {
        let o = run_to_files(
            Command::new(runtime())
                .arg("--root")
                .arg(&self.root)
                .args(["state", &self.id]),
        );
        assert!(o.status.success(), "state: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["pid"].as_i64().unwrap() as i32
    }

    /// Nothing of the container anywhere (its processes may be zombies
    /// until their parent, pid 1, reaps them: dead all the same).
    fn assert_nothing_left(&self, what: &str) {
        wait_for(&format!("{what}: nothing left"), DEADLINE, || {
            let l = self.leftovers();
            l.0.iter().all(|e| e.ends_with("(Z)")).then_some(())
        });
    }
}

fn no_panic(err: &str) {
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "the runtime panicked: {err}"
    );
}

#[test]
fn root_on_a_full_filesystem() {
    require_root();
    // Fill levels from nothing free to room for part of a container's
    // state: each create either succeeds or fails saying so, and never
    // leaves a half-made container.
    for free_kib in [0u64, 4, 8, 12, 16, 24] {
        let fs = Tmpfs::new("64k");
        let root = fs.path.join("root");
        std::fs::create_dir(&root).unwrap();
        let fill = fs.path.join("fill");
        let mut f = std::fs::File::create(&fill).unwrap();
        let _ = std::io::Write::write_all(&mut f, &vec![0u8; 64 << 10]);
        drop(f);
        let full = std::fs::metadata(&fill).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fill)
            .unwrap()
            .set_len(full.saturating_sub(free_kib << 10))
            .unwrap();
        let c = Case::new(&root);
        let (code, err) = c.run_d();
        no_panic(&err);
        if code == Some(0) {
            let (code, err) = c.rt(&["delete", "-f", &c.id]);
            assert_eq!(code, Some(0), "{free_kib} KiB free: delete: {err}");
        } else {
            assert!(
                err.contains("No space left on device") && err.contains(&*root.to_string_lossy()),
                "{free_kib} KiB free: the error must name the full filesystem's path: {err}"
            );
        }
        c.assert_nothing_left(&format!("{free_kib} KiB free"));
    }
}

#[test]
fn read_only_root() {
    require_root();
    let fs = Tmpfs::new("1m");
    let root = fs.path.join("root");
    let other = fs.path.join("other");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&other).unwrap();
    // A container made while it was writable.
    let before = Case::new(&root);
    let (code, err) = before.run_d();
    assert_eq!(code, Some(0), "{err}");
    fs.remount("ro");
    // A new one (in a root of its own, so what is left is its): refused,
    // naming the path and the cause.
    let c = Case::new(&other);
    let (code, err) = c.run_d();
    no_panic(&err);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("Read-only file system") && err.contains(&*other.to_string_lossy()),
        "{err}"
    );
    c.assert_nothing_left("create on a read-only root");
    // The old one still answers; delete kills it and says why it cannot
    // finish; once writable again, delete completes.
    let (code, err) = before.rt(&["state", &before.id]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = before.rt(&["delete", "-f", &before.id]);
    no_panic(&err);
    assert_ne!(code, Some(0));
    assert!(err.contains("Read-only file system"), "{err}");
    fs.remount("rw");
    let (code, err) = before.rt(&["delete", "-f", &before.id]);
    assert_eq!(code, Some(0), "{err}");
    before.assert_nothing_left("delete after the root is writable again");
}

/// Someone removes the state directory of a running container: every
/// command says the container does not exist, `delete --force` kills what
/// is left in its (default) cgroup and removes it, and the id is new again.
#[test]
fn state_directory_deleted_under_a_running_container() {
    require_root();
    let root = TempDir::new("nk-hf-root");
    let c = Case::new(root.path());
    let (code, err) = c.run_d();
    assert_eq!(code, Some(0), "{err}");
    let pid = c.pid();
    std::fs::remove_dir_all(root.path().join(&c.id)).unwrap();
    for args in [vec!["state", &c.id], vec!["kill", &c.id, "KILL"]] {
        let (code, err) = c.rt(&args);
        assert_ne!(code, Some(0));
        assert!(err.contains("does not exist"), "{args:?}: {err}");
    }
    let (code, err) = c.rt(&["delete", "--force", &c.id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("no state directory") && err.contains("cgroup"),
        "delete --force should say what it cleaned: {err}"
    );
    c.assert_nothing_left("delete --force without a state directory");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "the init lives on: {stat}"
    );
    // The id again: a fresh container, alone in its cgroup.
    let (code, err) = c.run_d();
    assert_eq!(code, Some(0), "{err}");
    let procs = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/pids/nano-sandbox/{}/cgroup.procs",
        c.id
    ))
    .unwrap_or_default();
    assert!(!procs.lines().any(|l| l == pid.to_string()), "{procs}");
    let (code, err) = c.rt(&["delete", "-f", &c.id]);
    assert_eq!(code, Some(0), "{err}");
    c.assert_nothing_left("the second container");
}

/// Someone empties and removes the container's cgroup in every hierarchy:
/// what needs the cgroup fails saying it is gone, kill --all still reaches
/// the init, and delete --force cleans up.
#[test]
fn cgroup_removed_under_a_running_container() {
    require_root();
    let root = TempDir::new("nk-hf-root");
    let c = Case::new(root.path());
    let (code, err) = c.run_d();
    assert_eq!(code, Some(0), "{err}");
    let pid = c.pid();
    let rel = format!("nano-sandbox/{}", c.id);
    for m in cgroup_mounts() {
        let d = m.join(&rel);
        if !d.exists() {
            continue;
        }
        for p in std::fs::read_to_string(d.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
        {
            let _ = std::fs::write(m.join("cgroup.procs"), p);
        }
        std::fs::remove_dir(&d).unwrap_or_else(|e| panic!("rmdir {}: {e}", d.display()));
    }
    let (code, err) = c.rt(&["state", &c.id]);
    assert_eq!(code, Some(0), "{err}");
    for args in [
        vec!["pause", c.id.as_str()],
        vec!["update", "--pids-limit", "10", c.id.as_str()],
    ] {
        let (code, err) = c.rt(&args);
        no_panic(&err);
        assert_ne!(code, Some(0), "{args:?} worked without a cgroup");
        assert!(
            err.contains("gone") || err.contains("does not exist"),
            "{args:?}: the error must say the cgroup is gone: {err}"
        );
    }
    // kill --all: the cgroup lists nobody, the init gets it all the same.
    let (code, err) = c.rt(&["kill", "--all", &c.id, "KILL"]);
    assert_eq!(code, Some(0), "{err}");
    wait_for("the init to die of kill --all", DEADLINE, || {
        let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        (st.is_empty() || st.contains(") Z ")).then_some(())
    });
    let (code, err) = c.rt(&["delete", "-f", &c.id]);
    assert_eq!(code, Some(0), "{err}");
    c.assert_nothing_left("delete after the cgroup was removed");
}

/// The runtime's own executable, unreadable (root without the DAC
/// capabilities, a mode 0111 copy) or deleted while it runs: the container
/// still gets its protected copy (a read-only bind of the running file,
/// which needs no read; or a memfd copy read through /proc/self/exe), and
/// run, exec and delete work.
#[test]
fn unreadable_or_deleted_executable() {
    require_root();
    let bin = TempDir::new("nk-hf-bin");
    let x = bin.path().join("nk-runtime");
    install_executable(&runtime(), &x, "0111");
    let root = TempDir::new("nk-hf-root");
    let c = Case::new(root.path());
    // Without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH root cannot read it.
    let drop_dac = ["--bounding-set", "-dac_override,-dac_read_search"];
    let cat = run_to_files(Command::new("setpriv").args(drop_dac).arg("cat").arg(&x));
    assert!(
        !cat.status.success(),
        "the copy is readable: the test proves nothing"
    );
    let o = run_to_files(
        Command::new("setpriv")
            .args(drop_dac)
            .arg(&x)
            .arg("--root")
            .arg(root.path())
            .args(["run", "-d", "--bundle", &c.bundle.path(), &c.id]),
    );
    assert!(o.status.success(), "unreadable executable: {}", stderr(&o));
    let (code, err) = c.rt(&["exec", &c.id, "true"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = c.rt(&["delete", "-f", &c.id]);
    assert_eq!(code, Some(0), "{err}");
    c.assert_nothing_left("unreadable executable");

    // Deleted: run from a descriptor of a copy that is unlinked first.
    let d = bin.path().join("nk-deleted");
    install_executable(&runtime(), &d, "0755");
    let script = format!(
        "set -e; exec 9<{d}; rm {d}; rt() {{ /proc/self/fd/9 --root {} \"$@\"; }}; \
         rt run -d --bundle {} {id}; rt exec {id} true",
        root.path().display(),
        c.bundle.path(),
        id = c.id,
        d = d.display()
    );
    let o = run_to_files(Command::new("bash").arg("-c").arg(&script));
    assert!(o.status.success(), "deleted executable: {}", stderr(&o));
    assert!(!d.exists());
    let (code, err) = c.rt(&["delete", "-f", &c.id]);
    assert_eq!(code, Some(0), "{err}");
    c.assert_nothing_left("deleted executable");
}
