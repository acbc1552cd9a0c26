//! checkpoint and restore of a VM-mode container (crates/vm/src/checkpoint.rs):
//! CRIU runs inside the guest from the host's CRIU kit, driven by the agent.
//! A counter that prints 1, 2, 3... is checkpointed: its VM goes (no QEMU or
//! monitor of it left, `state` fails) and the image directory holds the VM
//! record; it is restored under a new id from the image in a new VM and
//! prints on from the number after the last one it printed (not from 1);
//! exec runs in the restored container (its pid 1 is the counter, and the
//! file it wrote to its rootfs before the checkpoint is there again); a
//! checkpoint with --leave-running leaves it running and counting; kill and
//! delete leave nothing. The refused inputs come with their reasons: the
//! flags that cannot apply in a guest, a missing criu, a VM image restored
//! in container mode and a container image in VM mode. Two guest boots.
//! The closing line prints the checkpoint and restore times.

use nk_tests::vm as vm_support;

use nk_tests::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The guest side is slow under TCG (CRIU's first run in a guest pays for
/// its translation): the deadline for a counter's next line.
const GUEST_DEADLINE: Duration = Duration::from_secs(180);

fn nk(root: &Root) -> Command {
    vm_support::cmd(root)
}

fn output(c: &mut Command) -> Output {
    c.stdin(Stdio::null()).output().unwrap()
}

/// The numbers the counter printed so far.
fn counts(f: &Path) -> Vec<u64> {
    std::fs::read_to_string(f)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Wait until the counter's output holds a number above `n`; returns it.
fn above(f: &Path, n: u64) -> u64 {
    wait_for(
        &format!("a count above {n} in {}", f.display()),
        GUEST_DEADLINE,
        || counts(f).last().copied().filter(|v| *v > n),
    )
}

/// Start the command with stdout into `out` and stderr into `err`.
fn detached(c: &mut Command, out: &Path, err: &Path) -> (bool, Duration) {
    let t0 = Instant::now();
    let st = c
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(err).unwrap())
        .status()
        .unwrap();
    (st.success(), t0.elapsed())
}

/// Nothing of the VMs is left: no container, no process in the state
/// root (QEMU, the monitor and virtiofsd run there), no mount under it.
fn assert_nothing_left(root: &Root) {
    vm_support::assert_clean(root);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let r = root.dir.path().display().to_string();
    assert!(!mounts.contains(&r), "mounts left under {r}:\n{mounts}");
}

#[test]
fn vm_container_keeps_counting_across_checkpoint_and_restore() {
    require_root();
    let root = Root::new();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "echo written-before > /started; i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done",
    ]);
    // The counter writes to its rootfs once: that write must come back.
    b.edit(|c| c["root"]["readonly"] = false.into());
    let tmp = TempDir::new("nk-vmckpt");
    let (out1, err1) = (tmp.path().join("out1"), tmp.path().join("err1"));
    let img = tmp.path().join("img");
    let img_s = img.to_str().unwrap();
    let (c1, c2) = (unique_id("vck1"), unique_id("vck2"));

    let (ok, _) = detached(
        nk(&root).args(["run", "-d", "--mode=vm", "--bundle", &b.path(), &c1]),
        &out1,
        &err1,
    );
    assert!(ok, "run: {}", std::fs::read_to_string(&err1).unwrap());
    above(&out1, 3);

    // The flags that cannot apply in a guest are refused by name, and the
    // container runs on.
    for (flag, why) in [
        ("--pre-dump", "parent images"),
        ("--tcp-established", "network"),
        ("--page-server=127.0.0.1:1", "page server"),
    ] {
        let o = output(nk(&root).args(["checkpoint", "--image-path", img_s, flag, &c1]));
        let e = stderr(&o);
        assert!(!o.status.success(), "checkpoint {flag} succeeded");
        assert!(
            e.contains(flag.split('=').next().unwrap())
                && e.contains("not supported in VM mode")
                && e.contains(why),
            "checkpoint {flag}: {e}"
        );
    }
    // Without a criu on the host there is no kit: the error names criu
    // and its package.
    let o = output(nk(&root).args([
        "--criu",
        "/nonexistent/criu",
        "checkpoint",
        "--image-path",
        img_s,
        &c1,
    ]));
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("/nonexistent/criu") && e.contains("apt install criu"),
        "checkpoint without criu: {e}"
    );
    assert_eq!(root.status(&c1), "running");

    // Checkpoint: the VM goes with the container.
    let t0 = Instant::now();
    let o = output(nk(&root).args(["checkpoint", "--image-path", img_s, &c1]));
    let ckpt_ms = t0.elapsed().as_millis();
    assert!(o.status.success(), "checkpoint: {}", stderr(&o));
    let st = output(nk(&root).args(["state", &c1]));
    assert!(
        !st.status.success(),
        "state of a checkpointed container succeeds"
    );
    assert_nothing_left(&root);
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("nk-vm.json")).unwrap()).unwrap();
    assert_eq!(rec["mode"], "vm", "{rec}");
    assert!(rec["memory_mib"].as_u64().unwrap() >= 128, "{rec}");
    assert!(
        img.join("inventory.img").is_file(),
        "no CRIU images in {}",
        img.display()
    );
    // Everything the counter printed before the dump reached its reader.
    let before = *counts(&out1).last().expect("the counter printed");

    // The wrong mode, either way, is refused before anything is made.
    let bad = unique_id("vckbad");
    let o = output(nk(&root).args([
        "restore",
        "-d",
        "--mode=container",
        "--image-path",
        img_s,
        "--bundle",
        &b.path(),
        &bad,
    ]));
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("nk-vm.json") && e.contains("VM mode"),
        "container-mode restore of a VM image: {e}"
    );
    let plain = TempDir::new("nk-vmckpt-plain");
    let o = output(nk(&root).args([
        "restore",
        "-d",
        "--mode=vm",
        "--image-path",
        &plain.path().display().to_string(),
        "--bundle",
        &b.path(),
        &bad,
    ]));
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("is not a VM-mode checkpoint"),
        "VM-mode restore of a non-VM image: {e}"
    );
    let o = output(nk(&root).args([
        "--criu",
        "/nonexistent/criu",
        "restore",
        "-d",
        "--image-path",
        img_s,
        "--bundle",
        &b.path(),
        &bad,
    ]));
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("/nonexistent/criu") && e.contains("apt install criu"),
        "restore without criu: {e}"
    );
    assert!(
        root.ids().is_empty(),
        "a refused restore left {:?}",
        root.ids()
    );

    // Restore under a new id, in a new VM: it counts on from `before`.
    let (out2, err2) = (tmp.path().join("out2"), tmp.path().join("err2"));
    let (ok, restore_time) = detached(
        nk(&root).args([
            "restore",
            "-d",
            "--image-path",
            img_s,
            "--bundle",
            &b.path(),
            &c2,
        ]),
        &out2,
        &err2,
    );
    assert!(ok, "restore: {}", std::fs::read_to_string(&err2).unwrap());
    assert_eq!(root.status(&c2), "running");
    above(&out2, before);
    let resumed = counts(&out2);
    assert_eq!(
        resumed[0],
        before + 1,
        "the restored counter went on from {} after {before} (a counter that started over prints 1): {resumed:?}",
        resumed[0]
    );

    // exec runs in the restored container: its pid 1 is the counter, and
    // the file it wrote before the checkpoint is in its rootfs again.
    let o = output(nk(&root).args(["exec", &c2, "cat", "/started", "/proc/1/cmdline"]));
    assert!(o.status.success(), "exec: {}", stderr(&o));
    let seen = stdout(&o);
    assert!(
        seen.starts_with("written-before\n"),
        "the rootfs write is gone: {seen:?}"
    );
    assert!(seen.contains("while :"), "exec saw pid 1 as {seen:?}");

    // --leave-running: a second image, and the container counts on;
    // --work-path gets CRIU's log (written beside the images in the guest).
    let img2 = tmp.path().join("img2");
    let work = tmp.path().join("work");
    let o = output(nk(&root).args([
        "checkpoint",
        "--leave-running",
        "--image-path",
        img2.to_str().unwrap(),
        "--work-path",
        work.to_str().unwrap(),
        &c2,
    ]));
    assert!(
        o.status.success(),
        "checkpoint --leave-running: {}",
        stderr(&o)
    );
    assert!(img2.join("nk-vm.json").is_file() && img2.join("inventory.img").is_file());
    let log = std::fs::read_to_string(work.join("dump.log")).unwrap_or_default();
    assert!(
        log.contains("Dumping finished successfully"),
        "--work-path has no CRIU log: {log:?}"
    );
    assert_eq!(root.status(&c2), "running");
    let now = *counts(&out2).last().unwrap();
    above(&out2, now);

    // kill and delete leave nothing.
    let o = output(nk(&root).args(["kill", &c2, "KILL"]));
    assert!(o.status.success(), "kill: {}", stderr(&o));
    root.wait_status(&c2, "stopped");
    let o = output(nk(&root).args(["delete", &c2]));
    assert!(o.status.success(), "delete: {}", stderr(&o));
    assert_nothing_left(&root);
    eprintln!(
        "VM-mode checkpoint {ckpt_ms} ms (CRIU in the guest, then the VM stops), restore {} ms (a new VM, then CRIU in the guest), wall, the runtime's whole command",
        restore_time.as_millis()
    );
}
