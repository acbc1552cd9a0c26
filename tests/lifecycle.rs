//! The container lifecycle as runc defines it, on real containers: create,
//! start, state, kill, delete, run (attached, detached, --keep), start
//! --attach, pid files, hooks, console sockets, and what a container sees of
//! its config (namespaces, mounts, devices, process attributes, cgroups).

use nk_tests::term::recv_fd;
use nk_tests::*;
use serde_json::{json, Value};
use std::path::Path;

fn sh(b: &mut Bundle, script: &str) {
    b.edit(|c| c["process"]["args"] = json!(["/bin/sh", "-c", script]));
}

/// Run a bundle attached and return (exit code, stdout, stderr).
fn run_bundle(root: &Root, b: &Bundle) -> (i32, String, String) {
    let id = unique_id("run");
    let o = root.run(&["run", "--bundle", &b.path(), &id]);
    (o.status.code().unwrap_or(-1), stdout(&o), stderr(&o))
}

#[test]
fn create_start_state_kill_delete() {
    let root = Root::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.edit(|c| c["annotations"] = json!({"org.example.key": "value"}));
    let id = unique_id("life");
    let pidfile = b.dir.path().join("init.pid");
    root.ok(&[
        "create",
        "--bundle",
        &b.path(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    let s = root.state(&id);
    assert_eq!(s["status"], "created");
    assert_eq!(s["id"], id.as_str());
    let pid = s["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        pid.to_string()
    );
    assert_eq!(s["bundle"], b.path().as_str());
    assert!(s["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(s["annotations"]["org.example.key"], "value");
    assert!(s["ociVersion"].as_str().unwrap().starts_with("1."));
    // The init is parked in its namespaces: pid namespace differs from ours.
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    assert_ne!(ns, std::fs::read_link("/proc/self/ns/pid").unwrap());
    // Listed.
    let list: Value = serde_json::from_str(&root.ok(&["list", "--format", "json"])).unwrap();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == id.as_str() && c["status"] == "created" && c["owner"] == "root"));
    assert!(root.ok(&["list", "-q"]).lines().any(|l| l == id));
    // The table, as runc prints it: the owner by name from /etc/passwd.
    let table = root.ok(&["list"]);
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("{id} not in the table:\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[2], "created", "{table}");
    assert_eq!(row.last(), Some(&"root"), "{table}");
    root.ok(&["start", &id]);
    assert_eq!(root.status(&id), "running");
    // A second start is refused.
    let o = root.run(&["start", &id]);
    assert!(!o.status.success());
    // delete without force is refused while running.
    let o = root.run(&["delete", &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not stopped"), "{}", stderr(&o));
    // Signal 0 (as runc takes it): the init is checked, nothing is sent.
    root.ok(&["kill", &id, "0"]);
    assert_eq!(root.status(&id), "running");
    root.ok(&["kill", &id, "KILL"]);
    root.wait_status(&id, "stopped");
    assert_eq!(root.state(&id)["pid"], 0);
    // kill on a stopped container: runc's words, for 0 as for any signal.
    for sig in ["TERM", "0"] {
        let o = root.run(&["kill", &id, sig]);
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("container not running"),
            "kill {sig}: {}",
            stderr(&o)
        );
    }
    root.ok(&["delete", &id]);
    let o = root.run(&["state", &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"));
    assert!(!cgroup_exists(&format!("nano-sandbox/{id}")));
    // delete --force of a missing container succeeds (engines call it twice).
    root.ok(&["delete", "--force", &id]);
}

#[test]
fn delete_created_container_without_force() {
    let root = Root::new();
    let b = Bundle::new(&["true"]);
    let id = unique_id("delcreated");
    root.ok(&["create", "--bundle", &b.path(), &id]);
    let pid = root.state(&id)["pid"].as_i64().unwrap();
    root.ok(&["delete", &id]);
    assert!(
        !Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
    );
    assert!(root.ids().is_empty());
}

/// A state.json that is not a record (what a power loss can leave on a
/// /run that is not tmpfs): every verb names the file; plain delete refuses;
/// delete --force stops what the default cgroup holds and removes it all.
#[test]
fn delete_force_removes_a_corrupt_record() {
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("corrupt");
    root.ok(&["run", "-d", "--bundle", &b.path(), &id]);
    let pid = root.state(&id)["pid"].as_i64().unwrap() as i32;
    let init = proc_id(pid).expect("the init runs");
    let record = root.dir.path().join(&id).join("state.json");
    std::fs::write(&record, b"").unwrap();
    for verb in [&["state", &id][..], &["delete", &id][..]] {
        let o = root.run(verb);
        assert!(
            !o.status.success(),
            "{verb:?} of a corrupt record succeeded"
        );
        assert!(
            stderr(&o).contains("corrupt state file")
                && stderr(&o).contains(&*record.to_string_lossy()),
            "{verb:?}: {}",
            stderr(&o)
        );
    }
    let o = root.run(&["delete", "--force", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!root.dir.path().join(&id).exists());
    assert!(!cgroup_exists(&format!("nano-sandbox/{id}")));
    // Gone, or a zombie waiting for its reaper (this test, if subreaper).
    let dead = || {
        proc_gone(&init)
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.starts_with(" Z")))
    };
    wait_for("the init to be killed", DEADLINE, || dead().then_some(()));
    reap_orphan(&init);
}

#[test]
fn run_returns_exit_status_and_deletes() {
    let root = Root::new();
    for (script, want) in [
        ("exit 0", 0),
        ("exit 1", 1),
        ("exit 7", 7),
        ("exec false", 1),
    ] {
        let mut b = Bundle::new(&["true"]);
        sh(&mut b, script);
        let (code, _, err) = run_bundle(&root, &b);
        assert_eq!(code, want, "{script}: {err}");
    }
    assert!(root.ids().is_empty(), "attached run deletes its container");
}

#[test]
fn run_killed_by_signal_returns_128_plus_n() {
    // pid 1 ignores signals from inside its namespace, so the signal comes
    // from the host: `kill` while `run` waits in the foreground.
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("sig");
    let mut child = root
        .cmd()
        .args(["run", "--bundle", &b.path(), &id])
        .spawn()
        .unwrap();
    root.wait_status(&id, "running");
    root.ok(&["kill", &id, "KILL"]);
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(137));

    // A handler in pid 1 gets SIGTERM forwarded from the runtime itself.
    let mut b = Bundle::new(&["true"]);
    sh(
        &mut b,
        "trap 'exit 42' TERM; touch /dev/shm/trap-set; while :; do sleep 0.1; done",
    );
    let id = unique_id("sigfwd");
    let mut child = root
        .cmd()
        .args(["run", "--bundle", &b.path(), &id])
        .spawn()
        .unwrap();
    root.wait_status(&id, "running");
    // Signal only once the shell has set its trap.
    let pid = root.state(&id)["pid"].as_i64().unwrap();
    let mark = format!("/proc/{pid}/root/dev/shm/trap-set");
    wait_for("the trap to be set", DEADLINE, || {
        std::path::Path::new(&mark).exists().then_some(())
    });
    // SAFETY: kill(2) to our own child process (the attached runtime).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(42), "SIGTERM forwarded to the container");
    assert!(root.ids().is_empty());
}

#[test]
fn run_output_and_keep() {
    let root = Root::new();
    let b = Bundle::new(&["echo", "hello from the container"]);
    let id = unique_id("keep");
    let o = root.run(&["run", "--keep", "--bundle", &b.path(), &id]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "hello from the container\n");
    assert_eq!(root.status(&id), "stopped");
    root.ok(&["delete", &id]);
}

#[test]
fn run_detached_and_start_attach() {
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("detach");
    root.ok(&["run", "-d", "--bundle", &b.path(), &id]);
    assert_eq!(root.status(&id), "running");
    root.ok(&["delete", "-f", &id]);

    let mut b = Bundle::new(&["true"]);
    sh(&mut b, "exit 5");
    let id = unique_id("attach");
    root.ok(&["create", "--bundle", &b.path(), &id]);
    let o = root.run(&["start", "--attach", &id]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    root.ok(&["delete", &id]);
}

#[test]
fn fast_exits_are_never_missed() {
    // The wait is armed (pidfd + blocked signals) before the child can exit.
    let root = Root::new();
    let b = Bundle::new(&["true"]);
    for _ in 0..150 {
        let id = unique_id("fast");
        let mut c = root.cmd();
        c.args(["run", "--bundle", &b.path(), &id]);
        let mut child = c.spawn().unwrap();
        let start = std::time::Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                assert!(st.success());
                break;
            }
            assert!(start.elapsed() < DEADLINE, "run of /bin/true hung");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

#[test]
fn hooks_run_in_order_with_state() {
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    let log = b.dir.path().join("hooks.log");
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("read s; echo \"{name} $HOOKENV $s\" >> {}", log.display())], "env": ["HOOKENV=env-ok"], "timeout": 5});
    b.edit(|c| {
        c["hooks"] = json!({
            "prestart": [hook("prestart")],
            "createRuntime": [hook("createRuntime")],
            "createContainer": [hook("createContainer")],
            "startContainer": [{"path": "/bin/true"}],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        })
    });
    let id = unique_id("hooks");
    root.ok(&["create", "--bundle", &b.path(), &id]);
    root.ok(&["start", &id]);
    root.wait_status(&id, "stopped");
    root.ok(&["delete", &id]);
    let text = std::fs::read_to_string(&log).unwrap();
    let names: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "poststop"
        ],
        "{text}"
    );
    for l in text.lines() {
        assert!(l.contains("env-ok"), "hook env missing: {l}");
        let js: Value = serde_json::from_str(l.splitn(3, ' ').nth(2).unwrap()).unwrap();
        assert_eq!(js["id"], id.as_str());
        assert_eq!(js["bundle"], b.path().as_str());
    }
    let state = |i: usize| -> Value {
        serde_json::from_str(text.lines().nth(i).unwrap().splitn(3, ' ').nth(2).unwrap()).unwrap()
    };
    // prestart: the container is created (spec 1.0, runtime-tools'
    // hooks_stdin); createRuntime: still part of the create operation.
    assert_eq!(state(0)["status"], "created");
    assert_eq!(state(1)["status"], "creating");
    assert!(state(0)["pid"].as_i64().unwrap() > 0);
}

#[test]
fn failing_prestart_hook_fails_create_and_cleans_up() {
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["hooks"] = json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo hook-broke >&2; exit 3"]}]}));
    let id = unique_id("badhook");
    let o = root.run(&["create", "--bundle", &b.path(), &id]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("prestart") && stderr(&o).contains("hook-broke"),
        "{}",
        stderr(&o)
    );
    assert!(root.ids().is_empty(), "state left behind");
    assert!(
        !cgroup_exists(&format!("nano-sandbox/{id}")),
        "cgroup left behind"
    );
    // Same id again, now without the hook.
    b.edit(|c| {
        c.as_object_mut()
            .unwrap()
            .remove("hooks")
            .map(|_| ())
            .unwrap_or(())
    });
    root.ok(&["create", "--bundle", &b.path(), &id]);
    root.ok(&["delete", &id]);
}

#[test]
fn hook_timeout_fails_create() {
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["hooks"] = json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}));
    let id = unique_id("hooktimeout");
    let o = root.run(&["create", "--bundle", &b.path(), &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("timed out"), "{}", stderr(&o));
    assert!(root.ids().is_empty());
}

/// Run a script in a container built from the default spec plus `edit`.
fn inside(edit: impl FnOnce(&mut Value), script: &str) -> (i32, String, String) {
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    b.edit(edit);
    sh(&mut b, script);
    run_bundle(&root, &b)
}

#[test]
fn namespaces_and_hostname() {
    let (code, out, err) = inside(
        |c| {
            c["hostname"] = json!("nk-test-host");
            c["domainname"] = json!("nk.example");
        },
        "echo pid=$$; hostname; cat /proc/sys/kernel/domainname; ip link 2>/dev/null | grep -c '^[0-9]'; readlink /proc/self/ns/pid",
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1");
    assert_eq!(lines[1], "nk-test-host");
    assert_eq!(lines[2], "nk.example");
    assert_eq!(lines[3], "1", "only lo in a new network namespace");
    assert_ne!(
        lines[4],
        std::fs::read_link("/proc/self/ns/pid")
            .unwrap()
            .to_str()
            .unwrap()
    );
}

#[test]
fn join_existing_namespace_by_path() {
    let root = Root::new();
    let holder = Bundle::new(&["sleep", "1000"]);
    let hid = unique_id("holder");
    root.ok(&["run", "-d", "--bundle", &holder.path(), &hid]);
    let hpid = root.state(&hid)["pid"].as_i64().unwrap();
    let want = std::fs::read_link(format!("/proc/{hpid}/ns/net")).unwrap();
    let mut b = Bundle::new(&["readlink", "/proc/self/ns/net"]);
    b.edit(|c| {
        let nss = c["linux"]["namespaces"].as_array_mut().unwrap();
        for ns in nss.iter_mut() {
            if ns["type"] == "network" {
                ns["path"] = json!(format!("/proc/{hpid}/ns/net"));
            }
        }
    });
    let (code, out, err) = run_bundle(&root, &b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), want.to_str().unwrap());
    root.ok(&["delete", "-f", &hid]);
}

#[test]
fn cgroup_and_time_namespaces() {
    let (code, out, err) = inside(
        |c| {
            let nss = c["linux"]["namespaces"].as_array_mut().unwrap();
            nss.push(json!({"type": "cgroup"}));
            nss.push(json!({"type": "time"}));
            c["linux"]["timeOffsets"] = json!({"boottime": {"secs": 864000, "nanosecs": 0}, "monotonic": {"secs": 86400, "nanosecs": 0}});
        },
        "grep memory /proc/self/cgroup; cut -d. -f1 /proc/uptime",
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].ends_with(":memory:/"),
        "cgroup namespace root: {}",
        lines[0]
    );
    let up: u64 = lines[1].parse().unwrap();
    assert!(up >= 864000, "boottime offset applied: uptime {up}");
}

#[test]
fn mounts_in_order_with_options() {
    let host = TempDir::new("nk-bindsrc");
    std::fs::write(host.path().join("file"), "from-host").unwrap();
    let src = host.path().display().to_string();
    let (code, out, err) = inside(
        |c| {
            let m = c["mounts"].as_array_mut().unwrap();
            m.push(json!({"destination": "/data", "type": "bind", "source": src, "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}));
            m.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "noexec"]}));
            // mode= holds on a new directory only (over an existing one the
            // tmpfs takes that directory's mode, as with runc); /scratch/inner
            // is always new, inside the fresh /scratch.
            m.push(json!({"destination": "/scratch/inner", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k", "mode=700"]}));
            // Over the image's 1777 /tmp and 755 /home: their modes, whatever
            // mode= says (or the 1777 tmpfs gives without one).
            m.push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k", "mode=755"]}));
            m.push(json!({"destination": "/home", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]}));
        },
        "cat /data/file; echo; (touch /data/x) 2>&1 | grep -c 'Read-only'; grep ' /data ' /proc/self/mountinfo | cut -d' ' -f6; \
         grep ' /scratch ' /proc/self/mountinfo | cut -d' ' -f6; stat -c %a /scratch/inner; grep -c ' /scratch/inner ' /proc/self/mountinfo; \
         stat -c %a /tmp /home /dev /dev/shm; grep -c ' /tmp tmpfs ' /proc/mounts",
    );
    assert_eq!(code, 0, "{err}");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "from-host");
    assert_eq!(l[1], "1", "bind is read-only");
    for f in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(l[2].split(',').any(|x| x == f), "bind options {}", l[2]);
    }
    assert!(l[3].contains("noexec"), "tmpfs options {}", l[3]);
    assert_eq!(l[4], "700");
    assert_eq!(l[5], "1", "nested mount after its parent");
    assert_eq!(&l[6..11], ["1777", "755", "755", "1777", "1"], "{out}");
}

#[test]
fn devices_symlinks_and_linux_devices() {
    let (code, out, err) = inside(
        |c| {
            // One node with an owner of its own, one in a directory of
            // its own, owned as the defaults are (0:0, as created).
            c["linux"]["devices"] = json!([
                {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640, "uid": 1000, "gid": 1001},
                {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200, "fileMode": 0o600, "uid": 0, "gid": 0}
            ]);
        },
        "for d in null zero full random urandom tty fuse net/tun; do stat -c '%n %t:%T %a %u:%g' /dev/$d; done; \
         for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done; head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok",
    );
    assert_eq!(code, 0, "{err}");
    for want in [
        "/dev/null 1:3 666 0:0",
        "/dev/zero 1:5 666 0:0",
        "/dev/full 1:7 666 0:0",
        "/dev/random 1:8 666 0:0",
        "/dev/urandom 1:9 666 0:0",
        "/dev/tty 5:0 666 0:0",
        "/dev/fuse a:e5 640 1000:1001",
        "/dev/net/tun a:c8 600 0:0",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    for want in [
        "/proc/self/fd\n",
        "/proc/self/fd/0\n",
        "/proc/self/fd/1\n",
        "/proc/self/fd/2\n",
        "pts/ptmx\n",
        "null-ok",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
}

#[test]
fn masked_and_readonly_paths() {
    let (code, out, err) = inside(
        |_| {},
        "cat /proc/kcore 2>/dev/null | wc -c; cat /proc/keys | wc -c; cat /proc/timer_list | wc -c; ls /sys/firmware | wc -l; \
         (echo 1 > /proc/sys/kernel/domainname) 2>&1 | grep -c 'Read-only'; grep ' /proc/irq ' /proc/self/mountinfo | cut -d' ' -f6 | cut -d, -f1",
    );
    assert_eq!(code, 0, "{err}");
    let l: Vec<&str> = out.lines().map(|s| s.trim()).collect();
    assert_eq!(l, ["0", "0", "0", "0", "1", "ro"], "{out}");
}

#[test]
fn process_attributes() {
    let (code, out, err) = inside(
        |c| {
            c["process"]["user"] = json!({"uid": 65534, "gid": 65534, "additionalGids": [5, 100], "umask": 63});
            c["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz"]);
            c["process"]["cwd"] = json!("/tmp");
            c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000}, {"type": "RLIMIT_NPROC", "soft": 100, "hard": 200}]);
            c["process"]["oomScoreAdj"] = json!(500);
            c["process"]["noNewPrivileges"] = json!(true);
            c["process"]["capabilities"] = json!({"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_CHOWN", "CAP_KILL"], "inheritable": [], "ambient": []});
        },
        "id -u; id -g; id -G; pwd; echo \"$FOO\"; ulimit -n; ulimit -Hn; ulimit -u; cat /proc/self/oom_score_adj; \
         grep -E '^(NoNewPrivs|CapBnd|CapEff|CapPrm):' /proc/self/status; umask; echo $HOME",
    );
    assert_eq!(code, 0, "{err}");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "65534");
    assert_eq!(l[1], "65534");
    assert_eq!(
        l[2].split_whitespace().collect::<Vec<_>>(),
        ["65534", "5", "100"]
    );
    assert_eq!(l[3], "/tmp");
    assert_eq!(l[4], "bar baz");
    assert_eq!(l[5], "512");
    assert_eq!(l[6], "1000");
    assert_eq!(l[7], "100");
    assert_eq!(l[8], "500");
    assert!(out.contains("NoNewPrivs:\t1"));
    // A non-root user keeps no effective/permitted capabilities across exec (no ambient).
    assert!(out.contains("CapBnd:\t0000000000000021"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("\n0077\n"), "umask: {out}");
    assert!(
        out.trim_end().ends_with("/nonexistent"),
        "HOME from /etc/passwd: {out}"
    );
}

#[test]
fn root_capabilities_and_readonly_rootfs() {
    let (code, out, err) = inside(
        |c| {
            c["root"]["readonly"] = json!(true);
            c["process"]["capabilities"] = json!({"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"], "effective": ["CAP_CHOWN", "CAP_KILL"], "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"], "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]});
        },
        "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status; (touch /newfile) 2>&1 | grep -c 'Read-only'",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("CapInh:\t0000000000000020"), "{out}");
    assert!(out.contains("CapPrm:\t0000000000000421"), "{out}");
    // Root's effective set becomes its permitted set at execve (the kernel's rule for uid 0).
    assert!(out.contains("CapEff:\t0000000000000421"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000421"), "{out}");
    assert!(out.contains("CapAmb:\t0000000000000020"), "{out}");
    assert!(out.trim_end().ends_with('1'), "rootfs read-only: {out}");
}

#[test]
fn sysctl_in_container_namespaces() {
    let (code, out, err) = inside(
        |c| c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmax": "12345678"}),
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1\n12345678\n");
}

#[test]
fn cgroup_limits_applied_and_removed() {
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    let id = unique_id("cglim");
    let cgpath = format!("/nk-test-{id}");
    b.edit(|c| {
        c["linux"]["cgroupsPath"] = json!(cgpath);
        c["linux"]["resources"]["memory"] =
            json!({"limit": 67108864, "reservation": 33554432, "swap": 134217728});
        c["linux"]["resources"]["cpu"] =
            json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"});
        c["linux"]["resources"]["pids"] = json!({"limit": 42});
    });
    sh(&mut b, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.soft_limit_in_bytes /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes \
        /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/pids/pids.max");
    let o = root.run(&["create", "--bundle", &b.path(), &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let host = Path::new("/sys/fs/cgroup/memory").join(cgpath.trim_start_matches('/'));
    assert_eq!(
        std::fs::read_to_string(host.join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        "67108864"
    );
    let pid = root.state(&id)["pid"].as_i64().unwrap();
    let procs = std::fs::read_to_string(host.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "init is in the cgroup before start"
    );
    let o = root.run(&["start", "--attach", &id]);
    assert_eq!(o.status.code(), Some(0));
    root.ok(&["delete", &id]);
    assert!(!host.exists(), "cgroup removed on delete");
    assert!(!cgroup_exists(&cgpath));

    // Run again attached and read the values from inside.
    let (code, out, err) = run_bundle(&root, &b);
    assert_eq!(code, 0, "{err}");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(
        l,
        [
            "67108864",
            "33554432",
            "134217728",
            "512",
            "50000",
            "100000",
            "0",
            "42"
        ]
    );
}

#[test]
fn console_socket_receives_pty_master() {
    use std::os::unix::net::UnixListener;
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    sh(&mut b, "tty; echo hello-tty");
    b.edit(|c| c["process"]["terminal"] = json!(true));
    let dir = TempDir::new("nk-console");
    let sock = dir.path().join("console.sock");
    let l = UnixListener::bind(&sock).unwrap();
    let id = unique_id("tty");
    let receiver = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        recv_fd(&s)
    });
    root.ok(&[
        "create",
        "--bundle",
        &b.path(),
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
    ]);
    let master = receiver.join().unwrap();
    root.ok(&["start", &id]);
    let mut out = Vec::new();
    let mut f = std::fs::File::from(master);
    let start = std::time::Instant::now();
    while !String::from_utf8_lossy(&out).contains("hello-tty") && start.elapsed().as_secs() < 10 {
        let mut buf = [0u8; 256];
        match std::io::Read::read(&mut f, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("hello-tty"), "{text}");
    root.wait_status(&id, "stopped");
    root.ok(&["delete", &id]);
}

#[test]
fn no_pivot_and_preserve_fds() {
    use std::os::fd::AsRawFd;
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    sh(&mut b, "ls /proc/self/fd | sort -n | tr '\\n' ' '; echo; cat /proc/self/fd/3; grep -c ' / ' /proc/self/mountinfo");
    let dir = TempDir::new("nk-preserve");
    let f = dir.path().join("extra");
    std::fs::write(&f, "preserved-content\n").unwrap();
    let extra = std::fs::File::open(&f).unwrap();
    let id = unique_id("nopivot");
    let mut c = root.cmd();
    c.args([
        "run",
        "--no-pivot",
        "--preserve-fds",
        "1",
        "--bundle",
        &b.path(),
        &id,
    ]);
    let raw = extra.as_raw_fd();
    // SAFETY: in the child before exec: put the file at fd 3 without CLOEXEC.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut c, move || {
            if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0);
            } else if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = run_to_files(&mut c);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let l: Vec<&str> = out.lines().collect();
    // stdio, the preserved fd 3 and the fd ls itself opens - nothing else of the runtime.
    assert_eq!(
        l[0].split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3", "4"],
        "{out}"
    );
    assert_eq!(l[1], "preserved-content");
    assert!(l[2].parse::<u32>().unwrap() >= 1);
}

/// A shared tmpfs mount on the host, unmounted on drop.
struct SharedMount(TempDir);

impl SharedMount {
    fn new() -> SharedMount {
        let d = TempDir::new("nk-shared");
        let p = d.path().to_str().unwrap().to_string();
        for args in [vec!["-t", "tmpfs", "tmpfs", &p], vec!["--make-shared", &p]] {
            let st = std::process::Command::new("mount")
                .args(&args)
                .status()
                .unwrap();
            assert!(st.success(), "mount {args:?}");
        }
        SharedMount(d)
    }
}

impl Drop for SharedMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn mount_propagation_options() {
    let shared = SharedMount::new();
    let src = shared.0.path().display().to_string();
    let (code, out, err) = inside(
        |c| {
            let m = c["mounts"].as_array_mut().unwrap();
            m.push(json!({"destination": "/as-slave", "type": "bind", "source": src, "options": ["rbind", "rslave"]}));
            m.push(json!({"destination": "/as-shared", "type": "bind", "source": src, "options": ["rbind", "rshared"]}));
            m.push(json!({"destination": "/as-private", "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
        },
        "for d in as-slave as-shared as-private; do grep \" /$d \" /proc/self/mountinfo | cut -d' ' -f7 | cut -d: -f1; done",
    );
    assert_eq!(code, 0, "{err}");
    // Optional fields: master:N for a slave, shared:N for a shared mount, none (-) for private.
    assert_eq!(out, "master\nshared\n-\n", "{out}");
}

/// Unmounts (detached) on drop.
struct BindGuard(std::path::PathBuf);

impl Drop for BindGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A bundle and a rootfs whose paths hold spaces, which mountinfo writes as
/// `\040`. With rootfsPropagation rshared the mount that holds the rootfs
/// (here a bind mount of its own, at a path with a space) is shared, and
/// pivot_root refuses a new root whose parent mount is shared: the runtime
/// must find that mount by its unescaped path and make it private. runc,
/// on the same bundle, runs it too.
#[test]
fn a_rootfs_path_with_a_space_runs_as_with_runc() {
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("runc is not installed: the test command installs it (scripts/test-deps.sh)");
    let tmp = TempDir::new("nk-space");
    let bundle = tmp.path().join("bundle with space");
    let rootfs = bundle.join("root fs");
    std::fs::create_dir_all(&rootfs).unwrap();
    nix::mount::mount::<Path, Path, str, str>(
        Some(&nk_tests::rootfs()),
        &rootfs,
        None,
        nix::mount::MsFlags::MS_BIND,
        None,
    )
    .expect("bind the test rootfs");
    let _bind = BindGuard(rootfs.clone());
    let mut config = Bundle::new(&["/bin/sh", "-c", "echo hello from a spaced root"]).config;
    config["root"]["path"] = json!("root fs");
    config["linux"]["rootfsPropagation"] = json!("rshared");
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    let mut seen = Vec::new();
    for root in [Root::with_binary(runc), Root::new()] {
        let id = unique_id("space");
        let o = root.run(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
        seen.push((
            root.bin.display().to_string(),
            o.status.code(),
            stdout(&o),
            stderr(&o),
        ));
    }
    let (_, runc_code, runc_out, runc_err) = &seen[0];
    assert_eq!(
        (*runc_code, runc_out.trim()),
        (Some(0), "hello from a spaced root"),
        "runc on the same bundle: {runc_err}"
    );
    let (_, code, out, err) = &seen[1];
    assert_eq!(
        (*code, out.trim()),
        (*runc_code, runc_out.trim()),
        "nk-runtime on a rootfs whose path holds a space: {err}"
    );
}
