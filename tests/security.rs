//! Escape-class regression tests. Each names the protection it checks and
//! what it would see on a runtime without it; each plants the thing an
//! attacker would use (a host descriptor handed to the runtime, a symlink in
//! the image, a cwd naming a descriptor) and checks that it leads nowhere.

use nk_tests::security::*;
use nk_tests::{stderr, stdout, unique_id, Bundle, Root, TempDir};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;

/// A host directory holding a marker file: if a container can list it, it
/// reached the host.
fn host_secret() -> TempDir {
    let d = TempDir::new("nk-host-secret");
    std::fs::write(d.path().join("HOST-SECRET-MARKER"), b"host").unwrap();
    d
}

/// Descriptor numbers (and link targets) in `ls -l /proc/<pid>/fd` output.
fn fd_lines(out: &str) -> BTreeSet<String> {
    out.lines()
        .filter_map(|l| l.split_once(" -> "))
        .filter_map(|(a, b)| Some(format!("{} -> {}", a.split_whitespace().last()?, b)))
        .collect()
}

fn fd_numbers(out: &str) -> BTreeSet<u32> {
    fd_lines(out)
        .iter()
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect()
}

/// Protection: only stdio and --preserve-fds reach the container
/// (close_range CLOEXEC in the clone child, and again before the final
/// execve). The runtime is handed host descriptors 3, 4 (preserved), 7, 9
/// and 12 (not preserved); a runtime that let them through would show 7, 9
/// and 12 in the container, links to the host directory.
#[test]
fn no_runtime_descriptor_reaches_the_container_init_or_exec() {
    let root = Root::new();
    let secret = host_secret();
    let s = secret.path();
    let m = s.join("HOST-SECRET-MARKER");
    let fds: Vec<(i32, &Path)> = vec![(3, &m), (4, &m), (7, s), (9, s), (12, s)];
    for preserve in [0, 2] {
        let b = Bundle::new(&["sh", "-c", "ls -l /proc/$$/fd; sleep 100"]);
        let id = unique_id("fds");
        let p = preserve.to_string();
        let o = run_with_fds(
            &root,
            &fds,
            &[
                "run",
                "-d",
                "--preserve-fds",
                &p,
                "--bundle",
                &b.path(),
                &id,
            ],
        );
        assert!(o.status.success(), "{}", both(&o));
        let want: BTreeSet<u32> = (0..3 + preserve as u32).collect();
        // The init's table, as the host sees it (the shell is the init).
        let pid = root.state(&id)["pid"].as_i64().unwrap();
        let host_view: BTreeSet<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        assert_eq!(
            host_view, want,
            "init descriptors with --preserve-fds {preserve}"
        );
        // exec, with the same descriptors handed to `nk-runtime exec`.
        let o = run_with_fds(
            &root,
            &fds,
            &[
                "exec",
                "--preserve-fds",
                &p,
                &id,
                "sh",
                "-c",
                "ls -l /proc/$$/fd",
            ],
        );
        assert!(o.status.success(), "{}", both(&o));
        assert_eq!(
            fd_numbers(&stdout(&o)),
            want,
            "exec descriptors: {}",
            both(&o)
        );
        for l in fd_lines(&stdout(&o)) {
            let n: u32 = l.split(' ').next().unwrap().parse().unwrap();
            if n >= 3 + preserve as u32 {
                panic!("exec: descriptor {l} leaked");
            }
        }
        root.ok(&["delete", "-f", &id]);
    }
}

/// Protection (CVE-2019-5736): the runtime's code in the container runs
/// from a sealed memfd copy and is not dumpable until the container's
/// program replaces it. While the init is parked at the exec barrier it is
/// runtime code; a process exec'd into the container tries to reach the
/// runtime binary through /proc/1/exe and /proc/1/fd. Without the memfd,
/// /proc/1/exe would name the host binary (writable once the runtime
/// exits); without non-dumpable, the reads below would succeed.
#[test]
fn runtime_binary_is_unreachable_from_the_container() {
    let root = Root::new();
    let b = Bundle::new(&["sleep", "100"]);
    let id = unique_id("exe");
    detached_ok(&root, &["create", "--bundle", &b.path(), &id]);
    let pid = root.state(&id)["pid"].as_i64().unwrap();
    // The CVE-2019-5736 sequence, from the host (as root, the strongest
    // attacker): hold /proc/<init>/exe open while the runtime code runs,
    // let the container's program replace it (which ends the ETXTBSY that
    // protects a running binary), then reopen it for writing. The init runs
    // either a read-only detached mount of the runtime or a sealed memfd
    // copy; a runtime that exec'd its own path would hand out the binary.
    let exe_path = format!("/proc/{pid}/exe");
    let held = std::fs::File::open(&exe_path).unwrap();
    let link = std::fs::read_link(&exe_path).unwrap();
    let memfd = link.to_string_lossy().starts_with("/memfd:");
    if !memfd {
        // SAFETY: an all-zero statvfs is a valid value to be overwritten.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let c = std::ffi::CString::new(exe_path.clone()).unwrap();
        // SAFETY: statvfs fills a struct we own from a NUL-terminated path.
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        assert!(
            st.f_flag & libc::ST_RDONLY != 0,
            "the init runs {} from a writable mount",
            link.display()
        );
    }
    root.ok(&["start", &id]);
    let again = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&held));
    match std::fs::OpenOptions::new().write(true).open(&again) {
        // ETXTBSY while another process (a parallel test) still runs the
        // same binary; the read-only mount checked above refuses it after.
        Err(e) => assert!(
            matches!(
                e.raw_os_error(),
                Some(libc::EROFS) | Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::ETXTBSY)
            ),
            "unexpected error reopening the runtime: {e}"
        ),
        Ok(mut f) => {
            // Only a sealed memfd may be opened; its seal refuses the write.
            assert!(
                memfd,
                "the runtime binary ({}) reopened for writing",
                link.display()
            );
            assert!(
                std::io::Write::write(&mut f, b"x").is_err(),
                "the sealed copy was written"
            );
        }
    }
    drop(held);
    root.ok(&["kill", &id, "KILL"]);
    root.wait_status(&id, "stopped");
    root.ok(&["delete", &id]);
    // Again, parked, for the checks from inside.
    detached_ok(&root, &["create", "--bundle", &b.path(), &id]);
    let pid = root.state(&id)["pid"].as_i64().unwrap();
    // No descriptor of the parked init leads to the runtime binary.
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let l = std::fs::read_link(e.path()).unwrap_or_default();
        assert!(
            !l.to_string_lossy().contains("nk-runtime"),
            "init holds {}",
            l.display()
        );
    }
    assert!(std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .contains("\nUid:\t0"),);
    // From inside: root in the container (default capabilities, no
    // CAP_SYS_PTRACE) tries every way in. `dd conv=notrunc count=0` opens for
    // writing without writing a byte, so a failing protection damages nothing.
    let o = root.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "readlink /proc/1/exe; echo readlink=$?; \
         cat /proc/1/exe >/dev/null; echo read=$?; \
         dd if=/dev/null of=/proc/1/exe conv=notrunc count=0 2>/dev/null; echo write=$?; \
         n=0; for f in /proc/1/fd/*; do n=$((n+1)); readlink $f && echo LEAK; \
           cat $f >/dev/null 2>&1 && echo LEAK; done; echo fds=$n; \
         readlink /proc/1/cwd /proc/1/root && echo LEAK",
    ]);
    let out = stdout(&o);
    assert!(!out.contains("LEAK"), "{}", both(&o));
    assert!(
        !out.contains("fds=0"),
        "no descriptor of the init was tried: {}",
        both(&o)
    );
    for want in ["readlink=1", "read=1", "write=1"] {
        assert!(out.contains(want), "{want}: {}", both(&o));
    }
    assert!(
        !out.contains("memfd") && !out.contains("nk-runtime"),
        "{}",
        both(&o)
    );
    // Once the program runs, /proc/1/exe is the program (the runtime is gone).
    root.ok(&["start", &id]);
    let o = root.run(&["exec", &id, "readlink", "/proc/1/exe"]);
    assert_eq!(stdout(&o).trim(), "/bin/busybox", "{}", both(&o));
    root.ok(&["delete", "-f", &id]);
}

/// Protection (CVE-2024-21626): process.cwd is resolved inside the root
/// (openat2 RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS), and no runtime
/// descriptor is open by then anyway. The runtime is handed a host directory
/// at descriptor N and the config asks for cwd /proc/self/fd/N: a runtime
/// that did a plain chdir would start the program in the host directory, and
/// `ls` would show the marker.
#[test]
fn cwd_cannot_lead_to_the_host_through_a_descriptor() {
    let root = Root::new();
    let secret = host_secret();
    let s = secret.path();
    let fds: Vec<(i32, &Path)> = (3..=12).map(|n| (n, s)).collect();
    for n in [3, 5, 7, 8, 10, 12] {
        let mut b = Bundle::new(&["sh", "-c", "pwd; ls -a . .. ../.. ../../.."]);
        b.edit(|c| c["process"]["cwd"] = json!(format!("/proc/self/fd/{n}")));
        let id = unique_id("cwd");
        let o = run_with_fds(&root, &fds, &["run", "--bundle", &b.path(), &id]);
        assert!(
            !stdout(&o).contains("HOST-SECRET-MARKER"),
            "cwd /proc/self/fd/{n} reached the host: {}",
            both(&o)
        );
        // Refused, naming the field.
        assert!(!o.status.success(), "{}", both(&o));
        assert!(stderr(&o).contains("process.cwd"), "{}", both(&o));
        assert_nothing_left(&root, &id, &nk_tests::rootfs());
    }
    // exec --cwd, in a running container.
    let b = Bundle::new(&["sleep", "100"]);
    let id = unique_id("cwd-exec");
    detached_ok(&root, &["run", "-d", "--bundle", &b.path(), &id]);
    for n in [3, 7, 10] {
        let cwd = format!("/proc/self/fd/{n}");
        let o = run_with_fds(
            &root,
            &fds,
            &["exec", "--cwd", &cwd, &id, "ls", "-a", "..", "."],
        );
        assert!(!stdout(&o).contains("HOST-SECRET-MARKER"), "{}", both(&o));
        assert!(
            !o.status.success() && stderr(&o).contains("process.cwd"),
            "{}",
            both(&o)
        );
    }
    // A cwd that is a symlink out of the rootfs stays inside it.
    let o = root.run(&["exec", "--cwd", "/proc/self/root/../../..", &id, "ls", "-a"]);
    assert!(!stdout(&o).contains("HOST-SECRET-MARKER"), "{}", both(&o));
    root.ok(&["delete", "-f", &id]);
}

/// A cwd that is a symlink in the image pointing at a host path resolves
/// inside the rootfs (created there when missing), never on the host.
#[test]
fn cwd_symlink_in_the_image_stays_in_the_rootfs() {
    let root = Root::new();
    let secret = host_secret();
    let r = private_rootfs();
    let up = format!("../../../../../../../..{}", secret.path().display());
    std::os::unix::fs::symlink(&up, r.path().join("evil-rel")).unwrap();
    std::os::unix::fs::symlink(secret.path(), r.path().join("evil-abs")).unwrap();
    for link in ["/evil-rel", "/evil-abs"] {
        let mut b = Bundle::new(&["ls", "-a"]);
        use_rootfs(&mut b, r.path());
        b.edit(|c| {
            c["process"]["cwd"] = json!(link);
            c["root"]["readonly"] = json!(false);
        });
        let o = run(&root, &b, "cwd-link");
        assert!(o.status.success(), "{}", both(&o));
        assert!(
            !stdout(&o).contains("HOST-SECRET-MARKER"),
            "{link}: {}",
            both(&o)
        );
    }
}

/// Protection (CVE-2021-30465): mount destinations are resolved with
/// openat2(RESOLVE_IN_ROOT), so a symlink in the image (absolute, or a
/// relative climb of ../..) at a destination resolves inside the rootfs.
/// A runtime that joined the rootfs path and the destination as strings
/// would mount onto the host directory the symlink names.
#[test]
fn symlink_at_mount_destination_stays_in_the_rootfs() {
    let root = Root::new();
    let target = TempDir::new("nk-host-target");
    let t = target.path();
    let src = host_secret();
    let r = private_rootfs();
    let up = format!("../../../../../../../..{}", t.display());
    std::os::unix::fs::symlink(t, r.path().join("evil-abs")).unwrap();
    std::os::unix::fs::symlink(&up, r.path().join("evil-rel")).unwrap();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "ls -a /evil-abs/tmpfs /evil-rel/bind; sleep 100",
    ]);
    use_rootfs(&mut b, r.path());
    add_mount(
        &mut b,
        json!({"destination": "/evil-abs/tmpfs", "type": "tmpfs", "source": "tmpfs"}),
    );
    add_mount(
        &mut b,
        json!({"destination": "/evil-rel/bind", "type": "bind", "source": src.path(), "options": ["rbind", "ro"]}),
    );
    let id = unique_id("mntlink");
    detached_ok(&root, &["create", "--bundle", &b.path(), &id]);
    // Nothing happened on the host: no directory made in the target, no
    // mount on it.
    assert_eq!(
        std::fs::read_dir(t).unwrap().count(),
        0,
        "the host target was written"
    );
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mi.lines().any(|l| l
            .split(' ')
            .nth(4)
            .is_some_and(|mp| mp.starts_with(&*t.to_string_lossy()))),
        "a mount landed on the host target"
    );
    // Inside, the mounts are where the symlinks lead within the rootfs.
    let pid = root.state(&id)["pid"].as_i64().unwrap();
    let inner = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let inside = t.display().to_string();
    assert!(
        inner
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(&format!("{inside}/tmpfs"))),
        "tmpfs not at {inside}/tmpfs inside:\n{inner}"
    );
    assert!(r
        .path()
        .join(t.strip_prefix("/").unwrap())
        .join("bind")
        .is_dir());
    root.ok(&["delete", "-f", &id]);
}

/// The same, racing: a host thread flips a rootfs path between a directory
/// and a symlink to a host directory while containers mount onto it. A
/// check-then-mount runtime loses this race now and then.
#[test]
fn racing_symlink_swap_at_mount_destination() {
    let root = Root::new();
    let target = TempDir::new("nk-host-target");
    let t = target.path().to_path_buf();
    let r = private_rootfs();
    let race = r.path().join("race");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (race, t, stop) = (race.clone(), t.clone(), stop.clone());
        std::thread::spawn(move || {
            let tmp = race.with_extension("tmp");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_dir_all(&tmp);
                let _ = std::fs::create_dir(&tmp);
                let _ = std::fs::rename(&tmp, &race);
                let _ = std::fs::remove_file(&tmp);
                let _ = std::os::unix::fs::symlink(&t, &tmp);
                let _ = std::fs::rename(&tmp, &race);
            }
        })
    };
    let mut b = Bundle::new(&["true"]);
    use_rootfs(&mut b, r.path());
    b.edit(|c| c["root"]["readonly"] = json!(false));
    add_mount(
        &mut b,
        json!({"destination": "/race/m", "type": "tmpfs", "source": "tmpfs"}),
    );
    let mut started = 0;
    for _ in 0..25 {
        let o = run(&root, &b, "race");
        if o.status.success() {
            started += 1;
        }
        assert_eq!(
            std::fs::read_dir(&t).unwrap().count(),
            0,
            "the host target was written"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    assert!(started > 0, "no container started during the race");
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mi.contains(&*t.to_string_lossy()),
        "a mount landed on the host target"
    );
}

/// Protection: maskedPaths read as empty and readonlyPaths refuse writes.
/// Each checked path is first shown to have content on the host (so an
/// unmasked one would differ); /proc/kcore and the others this kernel lacks
/// are reported, not silently passed.
#[test]
fn masked_paths_give_nothing_and_readonly_paths_refuse_writes() {
    let root = Root::new();
    let files = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/latency_stats",
        "/proc/timer_stats",
        "/proc/sched_debug",
    ];
    let dirs = ["/sys/firmware", "/proc/acpi", "/proc/asound", "/proc/scsi"];
    let mut script = String::new();
    let mut checked = Vec::new();
    let mut checked_mounts = Vec::new();
    for f in files {
        if std::fs::read(f).is_ok_and(|c| !c.is_empty()) {
            script.push_str(&format!("echo \"{f} $(cat {f} | wc -c)\";"));
            checked.push(f);
        } else {
            eprintln!("{f}: absent or empty on this host, not checked");
        }
    }
    for d in dirs {
        if std::fs::read_dir(d).is_ok_and(|r| r.count() > 0) {
            script.push_str(&format!("echo \"{d} $(ls -A {d} | wc -l)\";"));
            checked.push(d);
        } else if Path::new(d).exists() {
            // Empty on the host: masked means a tmpfs mounted over it.
            script.push_str(&format!(
                "echo \"{d}-mounted $(grep -c ' {d} .* - tmpfs ' /proc/self/mountinfo)\";"
            ));
            checked_mounts.push(d);
        } else {
            eprintln!("{d}: absent on this host, not checked");
        }
    }
    assert!(
        checked.len() >= 3,
        "too few masked paths exist here: {checked:?}"
    );
    // Writes: each readonly path, written with the value it already has (a
    // failed protection changes nothing).
    for (name, file) in [
        ("sys", "/proc/sys/kernel/domainname"),
        ("irq", "/proc/irq/default_smp_affinity"),
        ("sysrq", "/proc/sysrq-trigger"),
    ] {
        if Path::new(file).exists() && name != "sysrq" {
            script.push_str(&format!(
                "v=$(cat {file}); (echo \"$v\" > {file}) 2>/dev/null; echo \"w-{name} $?\";"
            ));
        }
    }
    script.push_str("touch /proc/fs/x 2>/dev/null; echo \"w-fs $?\"; touch /proc/bus/x 2>/dev/null; echo \"w-bus $?\";");
    // Masks cannot be taken off from inside.
    script.push_str("umount /proc/keys 2>/dev/null; echo \"umount $?\"; cat /proc/keys | wc -c | sed 's/^/after-umount /'");
    let b = Bundle::new(&["sh", "-c", &script]);
    let o = run(&root, &b, "masked");
    let out = stdout(&o);
    for p in checked {
        assert!(
            out.lines().any(|l| l == format!("{p} 0")),
            "{p} not masked: {}",
            both(&o)
        );
    }
    for p in checked_mounts {
        assert!(
            out.lines().any(|l| l == format!("{p}-mounted 1")),
            "{p} not masked: {}",
            both(&o)
        );
    }
    for w in [
        "w-sys 1",
        "w-irq 1",
        "w-fs 1",
        "w-bus 1",
        "umount 1",
        "after-umount 0",
    ] {
        assert!(out.lines().any(|l| l == w), "{w}: {}", both(&o));
    }
}
