//! checkpoint and restore on this host, against runc. Where CRIU cannot
//! run (Debian's criu 3.17 on kernel 6.18: "vdso: Unexpected rt vDSO area
//! bounds"), checkpoint must fail as runc does (non-zero, the container
//! left running) and say why in CRIU's own words, with the log's path;
//! restore must fail and leave nothing behind; `check` and `features` must
//! say so. The real dump and restore are tests/checkpoint_vm.rs, in a guest
//! kernel where CRIU runs. Flag errors are compared with runc's texts.

use nk_tests::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Why CRIU cannot work here (`criu check`'s error lines), or None.
fn criu_broken() -> Option<String> {
    let o = Command::new("criu").arg("check").output().expect("criu");
    (!o.status.success()).then(|| String::from_utf8_lossy(&o.stderr).into_owned())
}

/// The `msg="..."` texts of runc's (or nk's) log lines.
fn msgs(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("msg=").map(|(_, m)| m))
        .map(|m| serde_json::from_str::<String>(m).unwrap_or_else(|_| m.to_string()))
        .collect()
}

fn counter() -> Bundle {
    Bundle::new(&[
        "sh",
        "-c",
        "exec </dev/null >/dev/null 2>&1; while :; do sleep 1; done",
    ])
}

#[test]
fn checkpoint_fails_with_criu_s_error_and_leaves_the_container_running() {
    require_root();
    let Some(why) = criu_broken() else {
        eprintln!("CRIU works on this host: the failure path is not exercised here (tests/checkpoint_vm.rs runs the real one)");
        return;
    };
    let b = counter();
    let img = TempDir::new("nk-ckpt-img");
    for (bin, name) in [(runc(), "runc"), (runtime().display().to_string(), "nk")] {
        let r = Root::with_binary(&bin);
        let id = unique_id("ckpt");
        r.ok(&["run", "-d", "--bundle", &b.path(), &id]);
        let dir = img.path().join(name);
        let o = r.run(&["checkpoint", "--image-path", dir.to_str().unwrap(), &id]);
        let err = stderr(&o);
        assert_ne!(o.status.code(), Some(0), "{name} checkpoint succeeded");
        assert_eq!(r.status(&id), "running", "{name}: {err}");
        assert!(err.contains("criu failed: type DUMP"), "{name}: {err}");
        let log = dir.join("dump.log");
        assert!(log.is_file(), "{name}: no {}", log.display());
        if name == "nk" {
            // The log's path in full, and CRIU's first error line from it.
            assert!(
                err.contains(&format!("log file: {}", log.display())),
                "{err}"
            );
            let text = std::fs::read_to_string(&log).unwrap();
            let first = text
                .lines()
                .find(|l| l.contains("Error ("))
                .and_then(|l| l.split_once(") ").map(|(_, r)| r))
                .expect("an Error line in dump.log");
            assert!(
                msgs(&err).iter().any(|m| m.contains(first)),
                "nk does not quote CRIU's {first:?}: {err}"
            );
            assert!(err.contains("the container is running"), "{err}");
        }
        r.ok(&["delete", "-f", &id]);
    }
    // check says CRIU cannot work here, in CRIU's words.
    let o = run_to_files(Command::new(runtime()).args(["check", "--json"]));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "criu")
        .expect("a criu check");
    assert_eq!(c["status"], "missing", "{c}");
    let first = why.lines().next().unwrap_or_default();
    assert!(c["detail"].as_str().unwrap().contains(first), "{c} / {why}");
    // VM mode's CRIU runs on the guest kernel, where it works: check says
    // so when the guest kernel is there (tests/vm_checkpoint.rs runs it).
    let g = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "criu in the guest")
        .expect("a check of VM mode's CRIU");
    if ::vm::image::find_kernel().is_ok() {
        assert_eq!(g["status"], "ok", "{g}");
    }
}

#[test]
fn features_report_checkpoint_like_runc() {
    let get_key = |bin: &str, key: &str| -> Value {
        let o = Command::new(bin).arg("features").output().unwrap();
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["annotations"][key].clone()
    };
    let get = |bin: &str| get_key(bin, "org.opencontainers.runc.checkpoint.enabled");
    let installed = ["/usr/sbin/criu", "/usr/bin/criu", "/sbin/criu"]
        .iter()
        .any(|p| Path::new(p).exists());
    assert_eq!(
        get(&runtime().display().to_string()),
        if installed { "true" } else { "false" }
    );
    // VM mode needs the same binary (its kit is made from it).
    assert_eq!(
        get_key(
            &runtime().display().to_string(),
            "org.nano-sandbox.checkpoint.vm"
        ),
        if installed { "true" } else { "false" }
    );
    if installed {
        assert_eq!(get(&runc()), "true");
    }
}

#[test]
fn flag_errors_are_runcs() {
    require_root();
    let b = counter();
    let img = TempDir::new("nk-ckpt-flags");
    let cases: &[&[&str]] = &[
        &["--pre-dump", "--parent-path", "/abs"],
        &["--parent-path", "nope"],
        &["--empty-ns", "bogus"],
    ];
    let mut got = Vec::new();
    for bin in [runc(), runtime().display().to_string()] {
        let r = Root::with_binary(&bin);
        let id = unique_id("ckflag");
        r.ok(&["run", "-d", "--bundle", &b.path(), &id]);
        let mut texts = Vec::new();
        for c in cases {
            let mut args = vec!["checkpoint", "--image-path", img.path().to_str().unwrap()];
            args.extend_from_slice(c);
            args.push(&id);
            let o = r.run(&args);
            assert_ne!(o.status.code(), Some(0), "{bin} {c:?}");
            // runc 1.1.5 may log "container still running" (its deferred
            // destroy) before the error itself, which comes last.
            texts.push(msgs(&stderr(&o)).last().cloned().unwrap_or_default());
            assert_eq!(r.status(&id), "running", "{bin} {c:?}");
        }
        r.ok(&["delete", "-f", &id]);
        got.push(texts);
    }
    assert_eq!(got[0], got[1], "runc's texts, then nk's");
}

#[test]
fn refusals_touch_nothing() {
    require_root();
    let r = Root::new();
    let b = counter();
    let img = TempDir::new("nk-ckpt-ref");
    let id = unique_id("ckref");
    r.ok(&["create", "--bundle", &b.path(), &id]);
    let o = r.run(&[
        "checkpoint",
        "--image-path",
        img.path().to_str().unwrap(),
        &id,
    ]);
    assert!(
        stderr(&o).contains("Container cannot be checkpointed in created state"),
        "{}",
        stderr(&o)
    );
    assert_eq!(r.status(&id), "created");
    r.ok(&["start", &id]);
    let o = r.run(&[
        "checkpoint",
        "--lazy-pages",
        "--image-path",
        img.path().to_str().unwrap(),
        &id,
    ]);
    assert!(stderr(&o).contains("--lazy-pages"), "{}", stderr(&o));
    assert_eq!(r.status(&id), "running");
    r.ok(&["delete", "-f", &id]);
}

#[test]
fn a_failed_restore_leaves_nothing() {
    require_root();
    if criu_broken().is_none() {
        eprintln!("CRIU works on this host: restore's failure path is not exercised here");
        return;
    }
    let r = Root::new();
    let b = counter();
    let img = TempDir::new("nk-rst-img");
    // A failed checkpoint still leaves descriptors.json, as runc's does.
    let id = unique_id("rst");
    r.ok(&["run", "-d", "--bundle", &b.path(), &id]);
    let _ = r.run(&[
        "checkpoint",
        "--image-path",
        img.path().to_str().unwrap(),
        &id,
    ]);
    r.ok(&["delete", "-f", &id]);
    let new = unique_id("rst-new");
    let o = r.run(&[
        "restore",
        "-d",
        "--bundle",
        &b.path(),
        "--image-path",
        img.path().to_str().unwrap(),
        &new,
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("criu failed: type RESTORE"),
        "{}",
        stderr(&o)
    );
    assert!(r.ids().is_empty(), "left: {:?}", r.ids());
    let bind = format!("{}/{new}/criu-root", r.dir.path().display());
    assert!(!host_mounts_contain(&bind), "the rootfs bind is left");
    assert!(
        !cgroup_exists(&format!("nano-sandbox/{new}")),
        "cgroup left"
    );
}
