//! linux.netDevices (runtime-spec 1.2): host network devices moved into the
//! container's network namespace, renamed when asked, with their addresses
//! and up state carried over; gone from the host while the container runs,
//! destroyed with a new namespace (a virtual device), kept by a namespace
//! joined by path. runc 1.1.5 ignores the field, so there is no reference
//! run: the checks are what the spec says, as youki's contest checks them.
//!
//! Devices are veth pairs, or ifb links where the kernel makes no veth
//! (this host's kernel has no dummy driver; both are virtual, as dummy is):
//! the kinds are probed in a private network namespace first. A kernel with
//! neither leaves nothing to move: those tests say so and return; the ones
//! that need no device (a missing one, `features`) always run. Names are
//! unique per test, at most 15 bytes; whatever a test made and the
//! container did not take is deleted on drop.

use nk_tests::*;
use serde_json::json;
use std::process::Command;

/// A unique interface name (at most 15 bytes): `nk`, a tag, this test
/// process's pid and a counter.
fn ifname(tag: char) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("nk{tag}{:x}x{n:x}", std::process::id())
}

fn ip(args: &[&str]) -> (bool, String) {
    let o = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Links a test made; each one still on the host is deleted on drop.
struct Links(Vec<String>);

impl Links {
    /// A device `a` for the container to take: one end of a veth pair (its
    /// peer, `Some(b)`, stays on the host) or, on a kernel without veth, an
    /// ifb link (no peer). None (the reason printed) when the kernel makes
    /// neither: then nothing about moving a device can be exercised.
    fn device(test: &str) -> Option<(Links, String, Option<String>)> {
        let (a, b) = (ifname('a'), ifname('b'));
        match make_netdev(&a, &b) {
            Ok(peer) => {
                let mut l = vec![a.clone()];
                l.extend(peer.clone());
                Some((Links(l), a, peer))
            }
            Err(why) => {
                eprintln!("{test}: skipped, no virtual device to move: {why}");
                None
            }
        }
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        for l in &self.0 {
            if link_exists(l) {
                let _ = ip(&["link", "del", l]);
            }
        }
    }
}

/// A named network namespace (`ip netns add`), deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let n = unique_id("nk-ndns");
        let (ok, out) = ip(&["netns", "add", &n]);
        assert!(ok, "ip netns add: {out}");
        Netns(n)
    }
    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

fn nothing_left(root: &Root, id: &str) {
    let left = leftovers(root.dir.path(), id, &[], id);
    assert!(left.is_empty(), "left after {id}: {}", left.summary());
}

#[test]
fn a_device_moves_in_renamed_with_its_address_and_goes_with_the_namespace() {
    require_root();
    let Some((_links, a, peer)) = Links::device("move") else {
        return;
    };
    let (ok, out) = ip(&["addr", "add", "244.178.44.111/24", "dev", &a]);
    assert!(ok, "{out}");
    let (ok, out) = ip(&["link", "set", &a, "up"]);
    assert!(ok, "{out}");
    let root = Root::new();
    let mut bun = Bundle::new(&["sh", "-c", "ip addr show eth9; ls /sys/class/net"]);
    bun.edit(|c| c["linux"]["netDevices"] = json!({ &a: {"name": "eth9"} }));
    let id = unique_id("nd-move");
    let o = root.run(&["run", "--bundle", &bun.path(), &id]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "run failed: {err}");
    assert!(out.contains("inet 244.178.44.111/24"), "address: {out}");
    assert!(
        out.lines().next().unwrap_or("").contains(",UP"),
        "eth9 must be up, as it was: {out}"
    );
    assert!(
        out.lines().any(|l| l == "eth9") && !out.lines().any(|l| l == a),
        "renamed in the container: {out}"
    );
    // Moved out of the host; a new namespace destroys its virtual devices
    // when it goes (they do not come back), and a veth's peer with it.
    assert!(!link_exists(&a), "{a} is still on the host");
    if let Some(b) = peer {
        wait_for("the veth's peer to go with the namespace", DEADLINE, || {
            (!link_exists(&b)).then_some(())
        });
    }
    nothing_left(&root, &id);
}

#[test]
fn a_namespace_joined_by_path_keeps_the_device_after_delete() {
    require_root();
    let Some((_links, a, _)) = Links::device("join") else {
        return;
    };
    let ns = Netns::new();
    let (ok, out) = ip(&["addr", "add", "10.77.0.5/24", "dev", &a]);
    assert!(ok, "{out}");
    let root = Root::new();
    let mut bun = Bundle::new(&["true"]);
    let path = ns.path();
    bun.edit(|c| {
        for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "network" {
                n["path"] = json!(path);
            }
        }
        c["linux"]["netDevices"] = json!({ &a: {} });
    });
    let id = unique_id("nd-join");
    let o = root.run(&["run", "--bundle", &bun.path(), &id]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    assert!(!link_exists(&a), "{a} is still on the host");
    let (ok, out) = ip(&["-n", &ns.0, "addr", "show", "dev", &a]);
    assert!(ok, "{a} is not in the joined namespace: {out}");
    assert!(out.contains("inet 10.77.0.5/24"), "its address: {out}");
    assert!(
        !out.lines().next().unwrap_or("").contains(",UP"),
        "it was down and stays down: {out}"
    );
    nothing_left(&root, &id);
}

#[test]
fn a_missing_device_fails_create_naming_it_and_leaves_nothing() {
    require_root();
    let root = Root::new();
    let missing = ifname('m');
    let mut bun = Bundle::new(&["true"]);
    bun.edit(|c| c["linux"]["netDevices"] = json!({ &missing: {} }));
    let id = unique_id("nd-missing");
    let o = root.run(&["run", "--bundle", &bun.path(), &id]);
    let err = stderr(&o);
    assert!(!o.status.success(), "a missing device must fail create");
    assert!(
        err.contains("config.json")
            && err.contains("linux.netDevices[")
            && err.contains(&missing)
            && err.contains("no network device"),
        "{err}"
    );
    nothing_left(&root, &id);
}

#[test]
fn bad_entries_are_refused_before_anything_is_made() {
    require_root();
    let Some((_links, a, _)) = Links::device("bad entries") else {
        return;
    };
    let (_links2, c2, _) = Links::device("bad entries").unwrap();
    type Edit<'a> = Box<dyn Fn(&mut serde_json::Value) + 'a>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "no network namespace of its own",
            Box::new(|c| {
                let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
                ns.retain(|n| n["type"] != "network");
                c["linux"]["netDevices"] = json!({ &a: {} });
            }),
            "shares the runtime's network namespace",
        ),
        (
            "a name the kernel refuses",
            Box::new(|c| c["linux"]["netDevices"] = json!({ &a: {"name": "eth/0"} })),
            "is not an interface name",
        ),
        (
            "two devices, one name",
            Box::new(|c| {
                c["linux"]["netDevices"] = json!({ &a: {"name": "eth1"}, &c2: {"name": "eth1"} })
            }),
            "each device needs a name of its own",
        ),
    ];
    for (what, edit, want) in cases {
        let root = Root::new();
        let mut bun = Bundle::new(&["true"]);
        bun.edit(|c| edit(c));
        let id = unique_id("nd-bad");
        let o = root.run(&["run", "--bundle", &bun.path(), &id]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{what}: must fail");
        assert!(
            err.contains("linux.netDevices") && err.contains(want),
            "{what}: {err}"
        );
        // Refused before the move: the devices are still on the host.
        assert!(
            link_exists(&a) && link_exists(&c2),
            "{what}: a device moved"
        );
        nothing_left(&root, &id);
    }
}

#[test]
fn vm_mode_refuses_net_devices_clearly() {
    require_root();
    let Some((_links, a, _)) = Links::device("VM mode") else {
        return;
    };
    let root = Root::new();
    let mut bun = Bundle::new(&["true"]);
    bun.edit(|c| c["linux"]["netDevices"] = json!({ &a: {} }));
    let id = unique_id("nd-vm");
    let o = root.run(&["run", "--mode=vm", "--bundle", &bun.path(), &id]);
    let err = stderr(&o);
    assert!(!o.status.success(), "VM mode must refuse linux.netDevices");
    assert!(
        err.contains("linux.netDevices") && err.contains("VM mode"),
        "{err}"
    );
    assert!(link_exists(&a), "the device must stay on the host");
    nothing_left(&root, &id);
}

#[test]
fn features_says_net_devices_are_supported() {
    let o = Command::new(runtime()).arg("features").output().unwrap();
    assert!(o.status.success());
    let f: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(f["linux"]["netDevices"]["enabled"], json!(true), "{f}");
}
