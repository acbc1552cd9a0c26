//! Bad input is refused with an error that names the file, field or value,
//! a non-zero exit, and nothing left behind: no state directory, cgroup,
//! mount or process, so the same id can be created again. Also concurrency:
//! parallel lifecycles, racing creates of one id, and a create killed midway.

use nk_tests::*;
use serde_json::json;
use std::process::Stdio;

/// Assert nothing of `id` is left: state, cgroup, mounts, processes.
fn assert_clean(root: &Root, id: &str) {
    assert!(
        !root.dir.path().join(id).exists(),
        "state directory of {id} left behind"
    );
    assert!(
        !cgroup_exists(&format!("nano-sandbox/{id}")),
        "cgroup of {id} left behind"
    );
    assert!(
        !host_mounts_contain(id),
        "a mount mentioning {id} left behind"
    );
    // A live init holds a descriptor on its state directory: look for any
    // process with a descriptor naming this id.
    let leftovers: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| {
            std::fs::read_dir(e.path().join("fd"))
                .map(|fds| {
                    fds.flatten().any(|fd| {
                        std::fs::read_link(fd.path())
                            .is_ok_and(|l| l.to_string_lossy().contains(id))
                    })
                })
                .unwrap_or(false)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        leftovers.is_empty(),
        "processes still holding {id}: {leftovers:?}"
    );
}

/// create must fail with `needle` in its error, then succeed on a good bundle.
fn refused(edit: impl FnOnce(&mut Bundle), needle: &str) {
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    edit(&mut b);
    let id = unique_id("bad");
    let o = root.run(&["create", "--bundle", &b.path(), &id]);
    assert!(!o.status.success(), "create should fail");
    let err = stderr(&o);
    assert!(
        err.contains(needle),
        "error should mention {needle:?}: {err}"
    );
    assert_clean(&root, &id);
    let good = Bundle::new(&["true"]);
    root.ok(&["create", "--bundle", &good.path(), &id]);
    root.ok(&["delete", &id]);
    assert_clean(&root, &id);
}

#[test]
fn missing_bundle_and_config() {
    let root = Root::new();
    let id = unique_id("nobundle");
    let o = root.run(&["create", "--bundle", "/nonexistent/bundle", &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent/bundle"), "{}", stderr(&o));
    let dir = TempDir::new("nk-empty-bundle");
    let o = root.run(&["create", "--bundle", dir.path().to_str().unwrap(), &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("config.json"), "{}", stderr(&o));
    assert_clean(&root, &id);
}

#[test]
fn malformed_json() {
    refused(
        |b| {
            std::fs::write(
                b.dir.path().join("config.json"),
                "{\"ociVersion\": \"1.0.2\", \"process\": ",
            )
            .unwrap()
        },
        "invalid JSON",
    );
}

#[test]
fn unknown_namespace_type() {
    refused(
        |b| {
            b.edit(|c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "bogus"}))
            });
        },
        "linux.namespaces[5].type",
    );
}

#[test]
fn wrong_type_names_the_field() {
    refused(
        |b| {
            b.edit(|c| c["process"]["user"]["uid"] = json!("root"));
        },
        "process.user.uid",
    );
}

#[test]
fn missing_executable() {
    refused(
        |b| {
            b.edit(|c| c["process"]["args"] = json!(["/no/such/binary"]));
        },
        "no such file or directory",
    );
    refused(
        |b| {
            b.edit(|c| c["process"]["args"] = json!(["no-such-program"]));
        },
        "executable file not found",
    );
}

#[test]
fn missing_rootfs() {
    refused(
        |b| {
            b.edit(|c| c["root"]["path"] = json!("/nonexistent/rootfs"));
        },
        "root.path",
    );
}

#[test]
fn bad_ids() {
    let root = Root::new();
    let b = Bundle::new(&["true"]);
    for id in ["a/b", "..", "../escape", "", ".hidden", "sp ace"] {
        let o = root.run(&["create", "--bundle", &b.path(), id]);
        assert!(!o.status.success(), "id {id:?} accepted");
        assert!(
            stderr(&o).contains("invalid container id") || stderr(&o).contains("required"),
            "{id:?}: {}",
            stderr(&o)
        );
    }
    assert!(root.ids().is_empty());
    assert!(!std::path::Path::new("/run/escape").exists());
}

#[test]
fn duplicate_id() {
    let root = Root::new();
    let b = Bundle::new(&["sleep", "100"]);
    let id = unique_id("dup");
    root.ok(&["create", "--bundle", &b.path(), &id]);
    let o = root.run(&["create", "--bundle", &b.path(), &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    // The first container is untouched.
    assert_eq!(root.status(&id), "created");
    root.ok(&["delete", &id]);
    assert_clean(&root, &id);
}

#[test]
fn unknown_container() {
    let root = Root::new();
    for verb in [
        &["state"][..],
        &["start"],
        &["kill"],
        &["delete"],
        &["pause"],
        &["resume"],
        &["ps"],
        &["exec"],
    ] {
        let mut args: Vec<&str> = verb.to_vec();
        args.push("no-such-container");
        if verb[0] == "exec" {
            args.push("true");
        }
        let o = root.run(&args);
        assert!(!o.status.success(), "{verb:?}");
        assert!(
            stderr(&o).contains("does not exist"),
            "{verb:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn json_log_is_exactly_one_error_object() {
    let root = Root::new();
    let log = TempDir::new("nk-log");
    let logf = log.path().join("log.json");
    let o = run_to_files(root.cmd().args([
        "--log",
        logf.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "no-such-container",
    ]));
    assert!(!o.status.success());
    let text = std::fs::read_to_string(&logf).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("does not exist"));
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
    // A failed create logs one object as well, even when the child reported the error.
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["process"]["args"] = json!(["/no/such/binary"]));
    std::fs::remove_file(&logf).unwrap();
    let id = unique_id("jsonlog");
    let o = run_to_files(root.cmd().args([
        "--log",
        logf.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        &b.path(),
        &id,
    ]));
    assert!(!o.status.success());
    let text = std::fs::read_to_string(&logf).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .contains("no such file or directory"),
        "{v}"
    );
}

#[test]
fn fifty_parallel_lifecycles() {
    let root = std::sync::Arc::new(Root::new());
    let b = std::sync::Arc::new(Bundle::new(&["sleep", "100"]));
    let ids: Vec<String> = (0..50).map(|i| unique_id(&format!("par{i}"))).collect();
    let handles: Vec<_> = ids
        .iter()
        .cloned()
        .map(|id| {
            let (root, b) = (root.clone(), b.clone());
            std::thread::spawn(move || {
                root.ok(&["create", "--bundle", &b.path(), &id]);
                root.ok(&["start", &id]);
                assert_eq!(root.status(&id), "running");
                root.ok(&["delete", "--force", &id]);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for id in &ids {
        assert_clean(&root, id);
    }
}

#[test]
fn racing_creates_of_one_id() {
    for _ in 0..5 {
        let root = std::sync::Arc::new(Root::new());
        let b = std::sync::Arc::new(Bundle::new(&["sleep", "100"]));
        let id = unique_id("race");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (root, b, id) = (root.clone(), b.clone(), id.clone());
                std::thread::spawn(move || root.run(&["create", "--bundle", &b.path(), &id]))
            })
            .collect();
        let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let wins = outs.iter().filter(|o| o.status.success()).count();
        assert_eq!(wins, 1, "exactly one create wins");
        for o in outs.iter().filter(|o| !o.status.success()) {
            assert!(stderr(o).contains("already exists"), "{}", stderr(o));
        }
        assert_eq!(root.status(&id), "created");
        root.ok(&["delete", &id]);
        assert_clean(&root, &id);
    }
}

#[test]
fn create_killed_midway_leaves_nothing_blocking() {
    // A slow createRuntime hook holds create in the middle; SIGKILL it there.
    let root = Root::new();
    let mut b = Bundle::new(&["sleep", "100"]);
    let marker = b.dir.path().join("hook-started");
    b.edit(|c| {
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}; sleep 30", marker.display())]}]})
    });
    let id = unique_id("killed");
    let mut child = root
        .cmd()
        .args(["create", "--bundle", &b.path(), &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the hook to start", DEADLINE, || {
        marker.exists().then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // The init dies with its parent (parent-death signal and the closed
    // channel); whenever it does, a create whose creator is gone is stopped.
    let o = root.run(&["state", &id]);
    if o.status.success() {
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            s["status"], "stopped",
            "a killed create is not a live container"
        );
    }
    root.ok(&["delete", "-f", &id]);
    assert_clean(&root, &id);
    // A fresh create of the same id works, also straight away without delete.
    let good = Bundle::new(&["sleep", "100"]);
    root.ok(&["create", "--bundle", &good.path(), &id]);
    root.ok(&["delete", &id]);
    assert_clean(&root, &id);
}

#[test]
fn create_after_killed_create_without_delete() {
    let root = Root::new();
    let mut b = Bundle::new(&["sleep", "100"]);
    let marker = b.dir.path().join("hook-started");
    b.edit(|c| {
        c["hooks"] = json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}; sleep 30", marker.display())]}]})
    });
    let id = unique_id("reuse");
    let mut child = root
        .cmd()
        .args(["create", "--bundle", &b.path(), &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the hook to start", DEADLINE, || {
        marker.exists().then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let good = Bundle::new(&["sleep", "100"]);
    root.ok(&["create", "--bundle", &good.path(), &id]);
    assert_eq!(root.status(&id), "created");
    root.ok(&["delete", &id]);
    assert_clean(&root, &id);
}

/// A capability the runtime does not hold itself (this host's bounding set
/// has no CAP_SYS_RESOURCE) cannot be granted: the error names it instead
/// of a bare capset EPERM, and nothing is left (runtime-tools'
/// process_capabilities asks for every capability).
#[test]
fn capability_the_runtime_lacks_is_named() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap();
    if bnd & (1 << 24) != 0 {
        eprintln!(
            "CAP_SYS_RESOURCE is in this host's bounding set: the refusal cannot be exercised here"
        );
        return;
    }
    refused(
        |b| {
            b.edit(|c| {
                let caps = json!(["CAP_CHOWN", "CAP_SYS_RESOURCE"]);
                c["process"]["capabilities"] =
                    json!({"bounding": caps, "effective": caps, "permitted": caps});
            });
        },
        "CAP_SYS_RESOURCE cannot be granted",
    );
}
