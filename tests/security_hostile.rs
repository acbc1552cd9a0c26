//! Hostile configs: each is refused with an error naming the file, field or
//! value, and leaves nothing behind (no state directory, cgroup, mount or
//! process), after which the same id can be created at once. Some are
//! refused while parsing, some by validation, some only in the container's
//! init after clone (which exercises the cleanup of a half-made container).

use nk_tests::security::*;
use nk_tests::{rootfs, stderr, unique_id, Bundle, Root};
use serde_json::json;
use std::time::Instant;

/// Refused with every word of `words` in the error, quickly, nothing left,
/// and the id usable again right after.
fn refused(root: &Root, b: &Bundle, what: &str, words: &[&str]) {
    let id = unique_id("hostile");
    let t = Instant::now();
    let o = root.run(&["run", "--bundle", &b.path(), &id]);
    assert!(
        t.elapsed() < nk_tests::DEADLINE,
        "{what}: took {:?}",
        t.elapsed()
    );
    assert!(!o.status.success(), "{what}: accepted: {}", both(&o));
    let e = stderr(&o);
    for w in words {
        assert!(e.contains(w), "{what}: {w:?} not in the error: {e}");
    }
    assert!(e.lines().count() <= 3, "{what}: not one clear error: {e}");
    assert_nothing_left(root, &id, &rootfs());
    let good = Bundle::new(&["true"]);
    root.ok(&["run", "--bundle", &good.path(), &id]);
    assert_nothing_left(root, &id, &rootfs());
}

fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Bundle {
    let mut b = Bundle::new(&["true"]);
    b.edit(edit);
    b
}

fn raw(bytes: &[u8]) -> Bundle {
    let b = Bundle::new(&["true"]);
    std::fs::write(b.dir.path().join("config.json"), bytes).unwrap();
    b
}

#[test]
fn escaping_paths() {
    let root = Root::new();
    let mount = |d: &str| {
        with(|c| {
            c["mounts"]
                .as_array_mut()
                .unwrap()
                .push(json!({"destination": d, "type": "tmpfs", "source": "tmpfs"}))
        })
    };
    refused(
        &root,
        &mount("../../etc"),
        "relative destination ../../etc",
        &["mounts[7].destination", "..", "config.json"],
    );
    refused(
        &root,
        &mount("/../../etc"),
        "absolute destination climbing out",
        &["mounts[7].destination"],
    );
    refused(
        &root,
        &mount("/a/../../../etc"),
        "destination climbing in the middle",
        &["mounts[7].destination"],
    );
    refused(
        &root,
        &with(|c| c["linux"]["maskedPaths"] = json!(["/proc/../../etc/shadow"])),
        "maskedPaths",
        &["linux.maskedPaths[0]"],
    );
    refused(
        &root,
        &with(|c| c["linux"]["readonlyPaths"] = json!(["etc"])),
        "relative readonlyPaths",
        &["linux.readonlyPaths[0]"],
    );
    refused(
        &root,
        &with(|c| c["linux"]["cgroupsPath"] = json!("/../../../sys/fs/cgroup")),
        "cgroupsPath",
        &["linux.cgroupsPath"],
    );
    refused(
        &root,
        &with(|c| c["linux"]["sysctl"] = json!({"net/../../../../etc/passwd": "x"})),
        "sysctl key",
        &["linux.sysctl"],
    );
    refused(
        &root,
        &with(|c| {
            c["linux"]["devices"] =
                json!([{"path": "/dev/../../etc/x", "type": "c", "major": 1, "minor": 3}])
        }),
        "device path",
        &["linux.devices[0].path"],
    );
    refused(
        &root,
        &with(|c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "cgroup", "path": "proc/1/ns/cgroup"}))
        }),
        "relative namespace path",
        &["linux.namespaces[5].path"],
    );
    refused(
        &root,
        &with(|c| c["process"]["cwd"] = json!("tmp")),
        "relative cwd",
        &["process.cwd"],
    );
    refused(
        &root,
        &with(|c| {
            c["mounts"]
                .as_array_mut()
                .unwrap()
                .push(json!({"destination": "/a\u{0}b", "type": "tmpfs", "source": "tmpfs"}))
        }),
        "NUL in a destination",
        &["mounts[7].destination", "NUL"],
    );
}

#[test]
fn huge_and_negative_values() {
    let root = Root::new();
    refused(
        &root,
        &with(|c| c["process"]["user"]["uid"] = json!(99999999999u64)),
        "uid above u32",
        &["process.user.uid"],
    );
    refused(
        &root,
        &with(|c| c["process"]["user"]["uid"] = json!(-1)),
        "negative uid",
        &["process.user.uid"],
    );
    refused(
        &root,
        &with(|c| c["process"]["oomScoreAdj"] = json!(-5000)),
        "oomScoreAdj",
        &["process.oomScoreAdj", "-5000"],
    );
    refused(
        &root,
        &with(|c| c["linux"]["resources"]["memory"] = json!({"limit": -5})),
        "negative memory limit",
        &["linux.resources.memory.limit"],
    );
    refused(
        &root,
        &with(|c| c["linux"]["resources"]["memory"] = json!({"limit": 1e30})),
        "memory limit beyond i64",
        &["linux.resources.memory.limit"],
    );
    refused(
        &root,
        &with(|c| {
            c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": -1, "hard": 10}])
        }),
        "negative rlimit",
        &["process.rlimits[0].soft"],
    );
    refused(
        &root,
        &with(|c| {
            c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 10}])
        }),
        "soft above hard",
        &["process.rlimits[0]"],
    );
    refused(
        &root,
        &with(|c| {
            c["linux"]["devices"] =
                json!([{"path": "/dev/x", "type": "c", "major": -1, "minor": 3}])
        }),
        "negative device major",
        &["linux.devices[0].major"],
    );
    refused(
        &root,
        &with(|c| {
            c["linux"]["devices"] =
                json!([{"path": "/dev/x", "type": "c", "major": 1, "minor": 99999999999i64}])
        }),
        "device minor beyond 32 bits",
        &["linux.devices[0].minor"],
    );
    refused(
        &root,
        &with(|c| c["hostname"] = json!("h".repeat(10_000))),
        "10 kB hostname",
        &["hostname", "64"],
    );
    refused(
        &root,
        &with(|c| {
            c["linux"]["uidMappings"] =
                json!([{"containerID": 4294967290u64, "hostID": 0, "size": 100}])
        }),
        "mapping past the largest id",
        &["linux.uidMappings"],
    );
    refused(
        &root,
        &with(|c| c["hooks"] = json!({"prestart": [{"path": "/bin/true", "timeout": -3}]})),
        "negative hook timeout",
        &["hooks.prestart[0].timeout"],
    );
    refused(
        &root,
        &with(|c| c["process"]["consoleSize"] = json!({"height": -1, "width": 80})),
        "negative console size",
        &["process.consoleSize.height"],
    );
}

#[test]
fn malformed_documents() {
    let root = Root::new();
    // Deep nesting: refused outright (even in a field nobody reads), never a
    // stack overflow.
    let deep = format!(
        "{{\"ociVersion\":\"1.0.2\",\"x\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    refused(
        &root,
        &raw(deep.as_bytes()),
        "100000 nested arrays",
        &["config.json", "nested deeper than 128"],
    );
    let deep_obj = format!("{}{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    refused(
        &root,
        &raw(deep_obj.as_bytes()),
        "50000 nested objects",
        &["config.json", "nested deeper"],
    );
    let mut c = Bundle::new(&["true"]).config;
    c["annotations"] = json!({"k": "v"});
    let text = serde_json::to_string(&c).unwrap().replacen(
        "\"k\":\"v\"",
        &format!("\"k\":{}\"v\"{}", "[".repeat(200), "]".repeat(200)),
        1,
    );
    refused(
        &root,
        &raw(text.as_bytes()),
        "deep value in a typed field",
        &["config.json", "nested deeper"],
    );
    // Invalid UTF-8 inside a string.
    let mut bad = br#"{"ociVersion":"1.0.2","hostname":""#.to_vec();
    bad.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    bad.extend_from_slice(br#""}"#);
    refused(
        &root,
        &raw(&bad),
        "invalid UTF-8",
        &["config.json", "invalid JSON"],
    );
    // A 10 MB config (valid JSON: a huge annotation).
    let big = Bundle::new(&["true"]);
    let mut c = big.config.clone();
    c["annotations"] = json!({"padding": "x".repeat(10 << 20)});
    std::fs::write(
        big.dir.path().join("config.json"),
        serde_json::to_vec(&c).unwrap(),
    )
    .unwrap();
    refused(
        &root,
        &big,
        "10 MB config",
        &["config.json", "larger than the 4194304-byte limit"],
    );
    // Duplicate fields, trailing garbage, wrong types.
    refused(
        &root,
        &raw(br#"{"ociVersion":"1.0.2","ociVersion":"1.0.2"}"#),
        "duplicate field",
        &["duplicate field"],
    );
    let mut trailing = serde_json::to_vec(&Bundle::new(&["true"]).config).unwrap();
    trailing.extend_from_slice(b" {}");
    refused(
        &root,
        &raw(&trailing),
        "trailing data",
        &["config.json", "trailing"],
    );
    refused(
        &root,
        &with(|c| c["process"]["args"] = json!("sh")),
        "args not a list",
        &["process.args"],
    );
    refused(&root, &raw(b""), "empty file", &["config.json"]);
}

#[test]
fn config_that_is_not_a_regular_file() {
    let root = Root::new();
    // A FIFO: opening it must not block the runtime forever.
    let b = Bundle::new(&["true"]);
    let p = b.dir.path().join("config.json");
    std::fs::remove_file(&p).unwrap();
    nix_mkfifo(&p);
    refused(
        &root,
        &b,
        "FIFO config.json",
        &["config.json", "not a regular file"],
    );
    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
    refused(
        &root,
        &b,
        "config.json -> /dev/zero",
        &["config.json", "not a regular file"],
    );
}

fn nix_mkfifo(p: &std::path::Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a path that lives for the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

#[test]
fn refused_after_clone_is_cleaned_up_too() {
    // These pass validation and fail in the container's init, after the
    // state directory, cgroup and process exist.
    let root = Root::new();
    refused(
        &root,
        &with(|c| {
            c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/mnt", "type": "bind", "source": "/nonexistent/nk-source", "options": ["rbind"]}))
        }),
        "missing bind source",
        &["mounts[7]", "/nonexistent/nk-source"],
    );
    refused(
        &root,
        &with(|c| c["process"]["args"] = json!(["/no/such/program"])),
        "missing program",
        &["/no/such/program"],
    );
    refused(
        &root,
        &with(|c| c["process"]["args"] = json!(["sh", "a\u{0}b"])),
        "NUL in an argument",
        &["NUL"],
    );
    refused(
        &root,
        &with(|c| {
            c["mounts"]
                .as_array_mut()
                .unwrap()
                .push(json!({"destination": "/mnt", "type": "nk-no-such-fs", "source": "x"}))
        }),
        "unknown filesystem type",
        &["mounts[7]", "nk-no-such-fs"],
    );
    refused(
        &root,
        &with(|c| c["process"]["user"]["additionalGids"] = json!((0..70000).collect::<Vec<u32>>())),
        "70000 supplementary groups",
        &["process.user.additionalGids", "65536"],
    );
}

#[test]
fn cpu_list_that_expands_to_billions() {
    // "0-65535," repeated fills 4 MiB with ranges that used to be expanded
    // into one vector: about 130 GB, an OOM kill of the runtime.
    let root = Root::new();
    let list = "0-65535,".repeat(400_000);
    let b = with(|c| c["linux"]["resources"]["cpu"] = json!({"cpus": list.trim_end_matches(',')}));
    refused(
        &root,
        &b,
        "cpu list of 26 billion entries",
        &["linux.resources.cpu.cpus"],
    );
}
