//! Process attributes: AppArmor/SELinux labels (refused clearly on this host,
//! which has neither LSM; a mountLabel is left out with a warning),
//! personality, scheduler, ioPriority,
//! execCPUAffinity, and the session keyring with and without
//! --no-new-keyring. Each container reports the attribute as the kernel
//! sees it (/proc/self/stat, /proc/self/status, uname, ionice, /proc/keys).

use nk_tests::security::*;
use nk_tests::{cpus_allowed, rootfs, stderr, stdout, unique_id, Bundle, Root};
use serde_json::json;
use std::path::Path;

fn lsm_present(name: &str) -> bool {
    match name {
        "apparmor" => std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|s| s.trim() == "Y"),
        _ => Path::new("/sys/fs/selinux/enforce").exists(),
    }
}

#[test]
fn lsm_labels_without_the_lsm_are_refused_clearly() {
    // This host has neither AppArmor nor SELinux (checked, so the test says
    // so if run elsewhere). Like runc, asking for a label is an error; here
    // it names the field and comes before anything is created.
    assert!(
        !lsm_present("apparmor") && !lsm_present("selinux"),
        "this test expects a host without AppArmor and SELinux"
    );
    let root = Root::new();
    for (field, set) in [
        (
            "process.apparmorProfile",
            json!({"process": {"apparmorProfile": "nk-test"}}),
        ),
        (
            "process.selinuxLabel",
            json!({"process": {"selinuxLabel": "system_u:system_r:container_t:s0"}}),
        ),
    ] {
        let mut b = Bundle::new(&["true"]);
        b.edit(|c| merge(c, &set));
        let id = unique_id("lsm");
        let o = root.run(&["run", "--bundle", &b.path(), &id]);
        assert!(!o.status.success(), "{field} accepted");
        let e = stderr(&o);
        assert!(
            e.contains(field) && e.contains("not enabled on this host"),
            "{e}"
        );
        assert_nothing_left(&root, &id, &rootfs());
    }
    // A mount label cannot be set without SELinux, and no mount carries one:
    // it is left out with a warning (as crun does; runc 1.1.5 fails the tmpfs
    // mount with EINVAL), and runtime-tools' linux_mount_label runs.
    let mut b = Bundle::new(&["sh", "-c", "grep -c context= /proc/self/mountinfo"]);
    b.edit(|c| c["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0"));
    let o = run(&root, &b, "lsm-mount");
    assert_eq!(stdout(&o).trim(), "0", "{}", both(&o));
    assert!(
        stderr(&o).contains("linux.mountLabel") && stderr(&o).contains("ignored"),
        "{}",
        both(&o)
    );
    // exec --apparmor into a running container: refused, container unharmed.
    let b = Bundle::new(&["sleep", "100"]);
    let id = unique_id("lsm-exec");
    detached_ok(&root, &["run", "-d", "--bundle", &b.path(), &id]);
    let o = root.run(&["exec", "--apparmor", "nk-test", &id, "true"]);
    assert_eq!(o.status.code(), Some(255), "{}", both(&o));
    assert!(stderr(&o).contains("apparmorProfile"), "{}", both(&o));
    assert_eq!(root.status(&id), "running");
    root.ok(&["delete", "-f", &id]);
}

fn merge(dst: &mut serde_json::Value, src: &serde_json::Value) {
    match (dst, src) {
        (serde_json::Value::Object(d), serde_json::Value::Object(s)) => {
            for (k, v) in s {
                merge(d.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (d, s) => *d = s.clone(),
    }
}

#[test]
fn personality_applies_to_init_and_exec() {
    let root = Root::new();
    for (domain, machine) in [("LINUX32", "i686"), ("LINUX", "x86_64")] {
        let mut b = Bundle::new(&["sh", "-c", "uname -m; sleep 100"]);
        b.edit(|c| c["linux"]["personality"] = json!({"domain": domain}));
        let id = unique_id("pers");
        let (ok, _) = detached(&root, &["run", "-d", "--bundle", &b.path(), &id]);
        assert!(ok);
        let o = root.run(&["exec", &id, "uname", "-m"]);
        assert_eq!(stdout(&o).trim(), machine, "exec, {domain}: {}", both(&o));
        root.ok(&["delete", "-f", &id]);
        let mut b = Bundle::new(&["uname", "-m"]);
        b.edit(|c| c["linux"]["personality"] = json!({"domain": domain}));
        let o = run(&root, &b, "pers");
        assert_eq!(stdout(&o).trim(), machine, "init, {domain}: {}", both(&o));
    }
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["SHORT_INODE"]}));
    let o = run(&root, &b, "pers-flags");
    assert!(
        stderr(&o).contains("linux.personality.flags"),
        "{}",
        both(&o)
    );
}

/// Fields 18 (priority), 19 (nice), 40 (rt_priority) and 41 (policy) of
/// /proc/self/stat, read by the process itself (no fork: DEADLINE tasks
/// may not fork).
fn sched_fields(root: &Root, sched: serde_json::Value, cgroup: Option<&str>) -> String {
    let mut b = Bundle::new(&["cut", "-d", " ", "-f18,19,40,41", "/proc/self/stat"]);
    b.edit(|c| c["process"]["scheduler"] = sched.clone());
    if let Some(cg) = cgroup {
        // cgroup v1 real-time group scheduling: a real-time task needs
        // rt_runtime in its cpu cgroup (and every parent); a cgroup straight
        // under the root gets it from the root's budget.
        b.edit(|c| {
            c["linux"]["cgroupsPath"] = json!(cg);
            c["linux"]["resources"]["cpu"] =
                json!({"realtimeRuntime": 10000, "realtimePeriod": 1000000});
        });
    }
    let o = run(root, &b, "sched");
    assert!(o.status.success(), "{sched}: {}", both(&o));
    stdout(&o).trim().to_string()
}

#[test]
fn scheduler_policies_and_parameters() {
    let root = Root::new();
    // The nice value the container inherits where the policy sets none
    // (SCHED_IDLE, real-time, deadline): ours, which `nice` may have raised.
    // SAFETY: getpriority(2) of this process takes no pointers.
    let n = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    // Default: SCHED_OTHER, nice 0 (the test can tell the difference).
    assert_eq!(
        sched_fields(&root, json!({"policy": "SCHED_OTHER"}), None),
        "20 0 0 0"
    );
    assert_eq!(
        sched_fields(&root, json!({"policy": "SCHED_BATCH", "nice": 7}), None),
        "27 7 0 3"
    );
    assert_eq!(
        sched_fields(&root, json!({"policy": "SCHED_IDLE"}), None),
        format!("20 {n} 0 5")
    );
    assert_eq!(
        sched_fields(
            &root,
            json!({"policy": "SCHED_DEADLINE", "runtime": 1000000, "deadline": 10000000, "period": 10000000}),
            None
        ),
        format!("-101 {n} 0 6")
    );
    let cg = format!("/{}", unique_id("nk-sec-rt"));
    assert_eq!(
        sched_fields(
            &root,
            json!({"policy": "SCHED_FIFO", "priority": 10}),
            Some(&cg)
        ),
        format!("-11 {n} 10 1")
    );
    let cg = format!("/{}", unique_id("nk-sec-rt"));
    assert_eq!(
        sched_fields(
            &root,
            json!({"policy": "SCHED_RR", "priority": 5, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}),
            Some(&cg)
        ),
        format!("-6 {n} 5 2")
    );
    // Refused before anything starts, naming the field.
    for (s, field) in [
        (
            json!({"policy": "SCHED_FIFO"}),
            "process.scheduler.priority",
        ),
        (
            json!({"policy": "SCHED_BATCH", "nice": 40}),
            "process.scheduler.nice",
        ),
        (json!({"policy": "SCHED_ISO"}), "process.scheduler.policy"),
    ] {
        let mut b = Bundle::new(&["true"]);
        b.edit(|c| c["process"]["scheduler"] = s.clone());
        let id = unique_id("sched-bad");
        let o = root.run(&["run", "--bundle", &b.path(), &id]);
        assert!(stderr(&o).contains(field), "{s}: {}", both(&o));
        assert_nothing_left(&root, &id, &rootfs());
    }
}

#[test]
fn io_priority_classes() {
    let root = Root::new();
    for (io, want) in [
        (None, "none: prio 0"),
        (
            Some(json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0})),
            "idle",
        ),
        (
            Some(json!({"class": "IOPRIO_CLASS_BE", "priority": 3})),
            "best-effort: prio 3",
        ),
        (
            Some(json!({"class": "IOPRIO_CLASS_RT", "priority": 2})),
            "realtime: prio 2",
        ),
    ] {
        let mut b = Bundle::new(&["ionice"]);
        if let Some(io) = &io {
            b.edit(|c| c["process"]["ioPriority"] = io.clone());
        }
        let o = run(&root, &b, "ioprio");
        assert_eq!(stdout(&o).trim(), want, "{io:?}: {}", both(&o));
    }
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 8}));
    let o = run(&root, &b, "ioprio-bad");
    assert!(
        stderr(&o).contains("process.ioPriority.priority"),
        "{}",
        both(&o)
    );
}

#[test]
fn exec_cpu_affinity_initial_and_final() {
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    assert!(ncpu >= 2, "this test needs two CPUs");
    let root = Root::new();
    let last = format!("{}", ncpu - 1);
    let all = format!("0-{}", ncpu - 1);
    let mut b = Bundle::new(&["sleep", "100"]);
    b.edit(|c| c["process"]["execCPUAffinity"] = json!({"initial": "0", "final": last.clone()}));
    let id = unique_id("aff");
    detached_ok(&root, &["run", "-d", "--bundle", &b.path(), &id]);
    // Not for the init (the spec says so).
    let st = root.state(&id);
    let init = std::fs::read_to_string(format!("/proc/{}/status", st["pid"])).unwrap();
    assert_eq!(cpus_allowed(&init), all);
    // An exec process ends on `final`.
    let o = root.run(&["exec", &id, "cat", "/proc/self/status"]);
    assert_eq!(cpus_allowed(&stdout(&o)), last, "{}", both(&o));
    root.ok(&["delete", "-f", &id]);

    // A CPU that does not exist: refused naming the field, nothing started.
    for (aff, field) in [
        (json!({"initial": "4000"}), "execCPUAffinity.initial"),
        (json!({"final": "0,4000"}), "execCPUAffinity.final"),
    ] {
        let mut b = Bundle::new(&["sleep", "100"]);
        b.edit(|c| c["process"]["execCPUAffinity"] = aff.clone());
        let id = unique_id("aff-bad");
        detached_ok(&root, &["run", "-d", "--bundle", &b.path(), &id]);
        let before = root.ok(&["ps", "--format", "json", &id]);
        let o = root.run(&["exec", &id, "true"]);
        assert_eq!(o.status.code(), Some(255), "{aff}: {}", both(&o));
        assert!(stderr(&o).contains(field), "{aff}: {}", both(&o));
        assert_eq!(
            root.ok(&["ps", "--format", "json", &id]),
            before,
            "a process was left"
        );
        root.ok(&["delete", "-f", &id]);
    }
}

/// The keyrings named `name` in the host's /proc/keys (as root sees them):
/// (permissions, uid).
fn keyrings(name: &str) -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/keys")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // id flags usage timeout perm uid gid type description...
            (f.len() >= 9 && f[7] == "keyring" && f[8].trim_end_matches(':') == name)
                .then(|| (f[4].to_string(), f[5].to_string()))
        })
        .collect()
}

#[test]
fn session_keyring_per_container_and_no_new_keyring() {
    let root = Root::new();
    for no_new in [false, true] {
        let b = Bundle::new(&["sleep", "100"]);
        let id = unique_id("keys");
        let mut args = vec!["create", "--bundle"];
        let bp = b.path();
        args.push(&bp);
        if no_new {
            args.push("--no-new-keyring");
        }
        args.push(&id);
        detached_ok(&root, &args);
        // runc's name for a container's session keyring.
        let ses = format!("_ses.{id}");
        let k = keyrings(&ses);
        if no_new {
            assert!(k.is_empty(), "--no-new-keyring, yet a keyring {id}: {k:?}");
        } else {
            // Joined by the init (so its keys are its own), user-searchable as with runc.
            assert_eq!(
                k,
                vec![("3f1b0000".to_string(), "0".to_string())],
                "keyring of {id}"
            );
        }
        root.ok(&["start", &id]);
        // exec processes join '_ses.<id>' by name: the init's keyring is
        // searchable, so the kernel joins it rather than making a second one
        // (as with runc). With --no-new-keyring there is none to join or make.
        detached_ok(&root, &["exec", "-d", &id, "sleep", "5"]);
        let k = keyrings(&ses);
        let want = if no_new { 0 } else { 1 };
        assert_eq!(k.len(), want, "exec keyring {ses}: {k:?}");
        root.ok(&["delete", "-f", &id]);
    }
}
