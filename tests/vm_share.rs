//! The bundle's share in VM mode, with real QEMU guests: the container
//! reads its rootfs and a bind mount, and writes into both, with the same
//! results over virtio-fs and over 9p (forced by the annotation, or as the
//! fallback when virtiofsd is missing); the write into the rootfs stays in
//! the guest's overlay, the one into the bind mount reaches the host.
//! virtiofsd, when used, is gone after delete, with its socket file.
//! A pod's second container, run in the same VM, reads its own rootfs and
//! bind mount over the same share, attached while the guest runs.
//! Forcing virtio-fs where virtiofsd is missing is refused by name before
//! anything is made. Three boots in all (tests/crash_vm.rs kills the
//! monitor mid-run).

use nk_tests::vm::{assert_clean, cmd as vm_cmd, virtiofs_here, virtiofsd_pids};
use nk_tests::*;
use serde_json::json;
use std::path::Path;

/// The container's side of the probe: read the rootfs and a host file,
/// write into both, report what it saw and the /out mount's line, then
/// stay up (so the host can look at the running VM's processes).
const PROBE: &str = "set -e
r=/out/result.tmp
md5sum /bin/busybox | cut -d' ' -f1 > $r
echo upper > /etc/nk-share-probe; cat /etc/nk-share-probe >> $r
md5sum /out/from-host | cut -d' ' -f1 >> $r
cp /out/from-host /out/from-guest
grep ' /out ' /proc/self/mountinfo > /out/mountinfo
mv $r /out/result
exec sleep 100000";

/// What the container reported, and the filesystem type under /out.
struct Seen {
    lines: Vec<String>,
    fstype: String,
    virtiofsd: Vec<i32>,
    /// What a pod member in the same VM printed (crate::pod: its rootfs
    /// and bind mount reach the running guest through the same share).
    member: String,
}

fn md5(p: &Path) -> String {
    let o = std::process::Command::new("md5sum")
        .arg(p)
        .output()
        .unwrap();
    stdout(&o).split_whitespace().next().unwrap().to_string()
}

/// Run the probe detached in a VM (with the annotation `share`, and the
/// extra environment), read what it saw, then delete it and check that
/// nothing is left.
fn probe(share: Option<&str>, env: &[(&str, &str)]) -> (Seen, String) {
    // Orphans come to us and stay our zombies: "gone" below then means
    // reaped by its own parent, not left to init.
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let root = Root::new();
    let out = TempDir::new("nk-vmshare");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(out.path().join("from-host"), &big).unwrap();
    let mut b = Bundle::new(&["sh", "-c", PROBE]);
    let dest = out.path().display().to_string();
    b.edit(|c| {
        c["root"]["readonly"] = json!(false);
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/out", "type": "bind", "source": dest, "options": ["rbind", "rw"]
        }));
        if let Some(s) = share {
            c["annotations"] = json!({ ::vm::virtiofs::ANNOTATION: s });
        }
    });
    let id = unique_id("vmshare");
    let mut c = vm_cmd(&root);
    c.args(["-E", "run", "-d", "--mode=vm", "--bundle", &b.path(), &id]);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = run_to_files(&mut c);
    // -E wraps its lines: compare words.
    let narration = stderr(&o).split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(o.status.code(), Some(0), "stderr: {narration}");
    let result = out.path().join("result");
    let state = root.dir.path().join(&id);
    wait_for("the probe's result", DEADLINE, || {
        if root.status(&id) == "stopped" {
            let log = std::fs::read_to_string(state.join(::vm::monitor::LOG)).unwrap_or_default();
            panic!("the probe stopped without a result:\n{log}");
        }
        std::fs::read_to_string(&result).ok()
    });
    let virtiofsd = virtiofsd_pids(&state);
    assert!(
        !state.join("virtiofs.sock").exists(),
        "the vhost-user socket file outlived QEMU's connection"
    );
    let lines = std::fs::read_to_string(&result)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let mi = std::fs::read_to_string(out.path().join("mountinfo")).unwrap();
    let fstype = mi
        .split(" - ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or("")
        .to_string();
    // The copy made in the guest reached the host whole.
    assert_eq!(
        std::fs::read(out.path().join("from-guest")).unwrap(),
        big,
        "the guest's copy into the bind mount"
    );
    let monitor = root.state(&id)["pid"].as_i64().unwrap() as i32;
    // A container joining the probe's IPC namespace runs in its VM: its
    // rootfs and bind mount are attached to the running share.
    let note = TempDir::new("nk-vmshare-note");
    std::fs::write(note.path().join("note"), "member-note\n").unwrap();
    let mut mb = Bundle::new(&[
        "sh",
        "-c",
        "md5sum /bin/busybox | cut -d' ' -f1; cat /in/note",
    ]);
    let src = note.path().display().to_string();
    mb.edit(|c| {
        for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "ipc" {
                n["path"] = json!(format!("/proc/{monitor}/ns/ipc"));
            }
        }
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/in", "type": "bind", "source": src, "options": ["rbind", "ro"]
        }));
    });
    let o = run_to_files(vm_cmd(&root).args([
        "run",
        "--mode=vm",
        "--bundle",
        &mb.path(),
        &unique_id("vmshare-member"),
    ]));
    assert_eq!(o.status.code(), Some(0), "the member: {}", stderr(&o));
    let member = stdout(&o);
    assert_eq!(
        virtiofsd_pids(&state),
        virtiofsd,
        "the member started a virtiofsd"
    );
    root.ok(&["delete", "-f", &id]);
    // virtiofsd and its server are gone (not left to init as zombies).
    let gone = |p: &i32| !Path::new(&format!("/proc/{p}")).exists();
    wait_for("virtiofsd to go", DEADLINE, || {
        virtiofsd.iter().all(gone).then_some(())
    });
    assert!(!state.exists(), "state directory left: {}", state.display());
    // The monitor was orphaned to us when `run -d` returned.
    // SAFETY: waitpid on the one pid of our orphaned monitor.
    unsafe { libc::waitpid(monitor, std::ptr::null_mut(), 0) };
    assert_clean(&root);
    (
        Seen {
            lines,
            fstype,
            virtiofsd,
            member,
        },
        narration,
    )
}

/// What every run must have seen, read on the host.
fn expected(seen: &Seen) {
    let from_host: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let tmp = TempDir::new("nk-vmshare-md5");
    std::fs::write(tmp.path().join("f"), &from_host).unwrap();
    let want = vec![
        md5(&rootfs().join("bin/busybox")),
        "upper".to_string(),
        md5(&tmp.path().join("f")),
    ];
    assert_eq!(seen.lines, want, "what the container read and wrote");
    assert_eq!(
        seen.member,
        format!("{}\nmember-note\n", want[0]),
        "what the pod member in the same VM read"
    );
    // The write into the rootfs went to the guest's overlay upper, not the host.
    assert!(
        !rootfs().join("etc/nk-share-probe").exists(),
        "the container's write into its rootfs reached the host's rootfs"
    );
}

/// The same reads and writes over virtio-fs (where this host has it) and
/// over 9p, each forced by the annotation (virtio-fs boots cold, 9p
/// starts from the template).
#[test]
fn rootfs_and_bind_mounts_behave_the_same_over_virtiofs_and_9p() {
    require_root();
    if virtiofs_here() {
        // A VM started from a template uses 9p: virtio-fs is asked for
        // (which makes a cold boot).
        let (vfs, narration) = probe(Some("virtiofs"), &[]);
        assert!(
            narration.contains("> virtio-fs: "),
            "no vm.share narration for virtio-fs: {narration}"
        );
        assert_eq!(vfs.fstype, "virtiofs", "the bind mount's filesystem");
        assert_eq!(
            vfs.virtiofsd.len(),
            2,
            "virtiofsd and its sandboxed server: {:?}",
            vfs.virtiofsd
        );
        expected(&vfs);
    } else {
        eprintln!("virtiofsd or the guest's virtiofs module is missing: only 9p is exercised");
    }
    let (p9, narration) = probe(Some("9p"), &[]);
    assert!(
        narration.contains(&format!("> 9p: {}=9p", ::vm::virtiofs::ANNOTATION)),
        "no vm.share narration for the forced 9p: {narration}"
    );
    assert_eq!(p9.fstype, "9p", "the bind mount's filesystem");
    assert!(p9.virtiofsd.is_empty(), "virtiofsd ran for 9p");
    expected(&p9);
}

/// A virtiofsd that is not there: the share falls back to 9p (and says
/// why); forcing virtio-fs is refused, naming the annotation and the
/// missing daemon, before anything is made.
#[test]
fn missing_virtiofsd_falls_back_to_9p_and_forcing_it_is_refused() {
    require_root();
    let missing = "/nonexistent/virtiofsd";
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["annotations"] = json!({ ::vm::virtiofs::ANNOTATION: "virtiofs" }));
    let o = run_to_files(
        vm_cmd(&root)
            .args([
                "run",
                "--mode=vm",
                "--bundle",
                &b.path(),
                &unique_id("vmshare"),
            ])
            .env("NK_VIRTIOFSD", missing),
    );
    assert!(
        !o.status.success(),
        "forced virtio-fs ran without virtiofsd"
    );
    let e = stderr(&o).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        e.contains(&format!(
            "annotation {}=virtiofs: {missing} is not installed",
            ::vm::virtiofs::ANNOTATION
        )),
        "stderr: {e}"
    );
    assert_clean(&root);

    let (seen, narration) = probe(None, &[("NK_VIRTIOFSD", missing)]);
    assert!(
        narration.contains(&format!("> 9p: {missing} is not installed: 9p instead")),
        "no vm.share narration of the fallback: {narration}"
    );
    assert_eq!(seen.fstype, "9p", "the bind mount's filesystem");
    assert!(
        seen.virtiofsd.is_empty(),
        "virtiofsd ran: {:?}",
        seen.virtiofsd
    );
    expected(&seen);
}

/// Processes whose command line contains `needle`.
fn procs_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            let c = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .contains(needle)
        })
        .collect()
}

/// virtiofsd stopped while it serves (the boot failed: a stand-in QEMU
/// that holds the vhost-user socket but never boots, so the ready wait
/// times out): its sandboxed server goes first and is reaped by virtiofsd,
/// which the monitor reaps; nothing is orphaned to init as a zombie
/// `[virtiofsd]`. We are the subreaper, so an orphan would stay our
/// zombie. No boot.
#[test]
fn virtiofsd_leaves_no_zombie_when_the_boot_fails() {
    require_root();
    if !virtiofs_here() {
        eprintln!("virtiofsd or the guest's virtiofs module is missing: not exercised");
        return;
    }
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let root = Root::new();
    let tmp = TempDir::new("nk-vmshare-qemu");
    let fake = tmp.path().join("qemu");
    // It keeps every descriptor QEMU gets, virtiofsd's socket (fd 5) too,
    // and so does a copy that outlives it: virtiofsd still serves when the
    // monitor stops it.
    let holder = tmp.path().join("holder");
    write_executable(
        &fake,
        &format!(
            "#!/bin/sh\nsleep 100000 & echo $! > {}\nexec sleep 100000\n",
            holder.display()
        ),
    );
    let mut b = Bundle::new(&["true"]);
    // virtio-fs must be asked for: a VM started from a template uses 9p.
    b.edit(|c| c["annotations"] = json!({ ::vm::virtiofs::ANNOTATION: "virtiofs" }));
    let id = unique_id("vmshare");
    let create = vm_cmd(&root)
        .args(["create", "--mode=vm", "--bundle", &b.path(), &id])
        .env("NK_QEMU", &fake)
        .env("NK_VM_READY_TIMEOUT", "10")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let share = format!("source={}/", root.dir.path().display());
    let (monitor, fsd) = wait_for("virtiofsd and its server", DEADLINE, || {
        let m = procs_with(&format!("vm-monitor {id}"));
        let state = root.dir.path().join(&id);
        let v = virtiofsd_pids(&state);
        (m.len() == 1 && v.len() == 2 && procs_with(&share).len() == 2).then(|| (m[0], v))
    });
    let o = create.wait_with_output().unwrap();
    assert!(!o.status.success(), "create succeeded with a stand-in QEMU");
    let gone = |p: &i32| !Path::new(&format!("/proc/{p}")).exists();
    // The monitor is ours to reap once it is done.
    wait_for("the monitor to end", DEADLINE, || {
        // SAFETY: waitpid on the one pid of our orphaned monitor, non-blocking.
        unsafe { libc::waitpid(monitor, std::ptr::null_mut(), libc::WNOHANG) };
        gone(&monitor).then_some(())
    });
    let left: Vec<String> = fsd
        .iter()
        .filter(|p| !gone(p))
        .map(|p| {
            let st = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            format!("{p}: {st}")
        })
        .collect();
    let holder: i32 = std::fs::read_to_string(&holder)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) the stand-in's copy, which this test started.
    unsafe { libc::kill(holder, libc::SIGKILL) };
    // Reap what was orphaned to us, so a failure leaves nothing either.
    for p in fsd.iter().chain([&holder]) {
        // SAFETY: waitpid on one pid, non-blocking.
        unsafe { libc::waitpid(*p, std::ptr::null_mut(), libc::WNOHANG) };
    }
    assert!(left.is_empty(), "virtiofsd left behind: {left:?}");
    assert_clean(&root);
}
