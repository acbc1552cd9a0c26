//! linux.memoryPolicy (runtime-spec 1.3): set_mempolicy() for the
//! container's processes, seen from inside in /proc/self/numa_maps (a
//! mapping without a policy of its own shows the process's); the config
//! checks that refuse what the kernel would, before anything is made; a
//! node this host does not have fails create with the kernel's answer and
//! leaves nothing. runc 1.1.5 predates the field and ignores it, so there
//! is no reference run.
//!
//! Needs a kernel with NUMA (CONFIG_NUMA: /sys/devices/system/node/node0);
//! without it set_mempolicy is ENOSYS and the test checks that error.

use nk_tests::*;
use serde_json::json;

fn numa_here() -> bool {
    std::path::Path::new("/sys/devices/system/node/node0").exists()
}

/// The policy numa_maps shows for busybox's text mapping, from inside a
/// container whose config has `mp` (or the error of a failed run).
fn policy_seen(mp: serde_json::Value) -> Result<String, String> {
    let root = Root::new();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "grep -m1 'file=/bin/busybox' /proc/self/numa_maps",
    ]);
    b.edit(|c| c["linux"]["memoryPolicy"] = mp);
    let id = unique_id("mempol");
    let o = root.run(&["run", "--bundle", &b.path(), &id]);
    let left = leftovers(root.dir.path(), &id, &[], &id);
    assert!(left.is_empty(), "left after {id}: {}", left.summary());
    if o.status.success() {
        Ok(stdout(&o)
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string())
    } else {
        Err(stderr(&o))
    }
}

#[test]
fn each_mode_and_flag_reaches_the_container() {
    require_root();
    if !numa_here() {
        let e = policy_seen(json!({"mode": "MPOL_BIND", "nodes": "0"})).unwrap_err();
        assert!(e.contains("set_mempolicy"), "{e}");
        println!("no NUMA in this kernel: checked the clear error only");
        return;
    }
    for (mp, want) in [
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}),
            "bind=static:0",
        ),
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}),
            "interleave:0",
        ),
        (
            json!({"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]}),
            "prefer=relative:0",
        ),
        (json!({"mode": "MPOL_LOCAL"}), "local"),
        (json!({"mode": "MPOL_DEFAULT", "nodes": ""}), "default"),
    ] {
        let got = policy_seen(mp.clone()).unwrap_or_else(|e| panic!("{mp}: {e}"));
        assert_eq!(got, want, "{mp}");
    }
}

#[test]
fn an_exec_gets_the_containers_policy_too() {
    require_root();
    if !numa_here() {
        println!("no NUMA in this kernel: nothing to check");
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["sleep", "100000"]);
    b.edit(|c| c["linux"]["memoryPolicy"] = json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}));
    let id = unique_id("mempol-exec");
    root.ok(&["run", "-d", "--bundle", &b.path(), &id]);
    let out = root.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "grep -m1 'file=/bin/busybox' /proc/self/numa_maps",
    ]);
    root.ok(&["delete", "-f", &id]);
    assert_eq!(out.split_whitespace().nth(1), Some("interleave:0"), "{out}");
}

#[test]
fn what_the_kernel_would_refuse_is_refused_before_anything_is_made() {
    require_root();
    for (mp, want) in [
        (
            json!({"mode": "MPOL_DEFAULT", "nodes": "0-7", "flags": ["MPOL_F_NUMA_BALANCING"]}),
            "MPOL_DEFAULT takes no nodes and no flags",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0-9876543210"}),
            "not a list of memory nodes",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "1024"}),
            "above the largest node number",
        ),
        (
            json!({"mode": "MPOL_INTERLEAVE"}),
            "needs at least one node",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}),
            "exclude each other",
        ),
        (
            json!({"mode": "INTERLEAVE", "nodes": "0"}),
            "linux.memoryPolicy.mode",
        ),
        (json!({"nodes": "0-7"}), "missing field `mode`"),
        (
            json!({"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["badflag"]}),
            "linux.memoryPolicy.flags[0]",
        ),
    ] {
        let e = policy_seen(mp.clone()).expect_err(&mp.to_string());
        assert!(e.contains("config.json") && e.contains(want), "{mp}: {e}");
    }
}

#[test]
fn a_node_this_host_lacks_fails_with_the_kernels_answer() {
    require_root();
    // The first node number this host does not have.
    let online = std::fs::read_to_string("/sys/devices/system/node/online").unwrap_or_default();
    let last = online
        .trim()
        .split([',', '-'])
        .filter_map(|n| n.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    let absent = (last + 1).to_string();
    let e = policy_seen(json!({"mode": "MPOL_BIND", "nodes": absent})).unwrap_err();
    assert!(
        e.contains("set_mempolicy") && e.contains("linux.memoryPolicy") && e.contains(&absent),
        "{e}"
    );
}

#[test]
fn features_lists_the_modes_and_flags() {
    let o = std::process::Command::new(runtime())
        .arg("features")
        .output()
        .unwrap();
    let f: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mp = &f["linux"]["memoryPolicy"];
    for m in [
        "MPOL_BIND",
        "MPOL_INTERLEAVE",
        "MPOL_PREFERRED_MANY",
        "MPOL_LOCAL",
    ] {
        assert!(mp["modes"].as_array().unwrap().contains(&json!(m)), "{mp}");
    }
    assert!(
        mp["flags"]
            .as_array()
            .unwrap()
            .contains(&json!("MPOL_F_STATIC_NODES")),
        "{mp}"
    );
}
