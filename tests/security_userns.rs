//! User namespaces: uidMappings/gidMappings with a rootfs owned by the
//! mapped ids, joining an existing user namespace by path (the container's
//! other new namespaces must then belong to it), and idmapped mounts.

use nk_tests::security::*;
use nk_tests::{stderr, stdout, unique_id, Bundle, Root, TempDir};
use serde_json::json;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

const BASE: u32 = 100000;

/// A private rootfs owned by the mapped root (host uid/gid BASE).
fn mapped_rootfs() -> TempDir {
    let r = private_rootfs();
    let st = std::process::Command::new("chown")
        .args(["-R", "-h", &format!("{BASE}:{BASE}")])
        .arg(r.path())
        .status()
        .unwrap();
    assert!(st.success());
    r
}

/// A bundle in a new user namespace mapping 0..65536 to BASE.., on `rootfs`.
fn userns_bundle(args: &[&str], rootfs: &std::path::Path) -> Bundle {
    let mut b = Bundle::new(args);
    use_rootfs(&mut b, rootfs);
    b.edit(|c| {
        c["root"]["readonly"] = json!(false);
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": BASE, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": BASE, "size": 65536}]);
    });
    b
}

/// The user namespace owning the namespace file at `path` (NS_GET_USERNS),
/// as (dev, inode).
fn owner_of(path: &str) -> (u64, u64) {
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor.
    let fd = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_USERNS) };
    assert!(
        fd >= 0,
        "NS_GET_USERNS on {path}: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a new descriptor we own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let m = std::fs::File::from(owned).metadata().unwrap();
    (m.dev(), m.ino())
}

fn ns_id(path: &str) -> (u64, u64) {
    let m = std::fs::metadata(path).unwrap();
    (m.dev(), m.ino())
}

#[test]
fn uid_mappings_with_the_rootfs_used_through_the_mapping() {
    let root = Root::new();
    let r = mapped_rootfs();
    // A host file only host root may read, bound in: root in the container is
    // not host root.
    let secret = TempDir::new("nk-userns-secret");
    let sf = secret.path().join("secret");
    std::fs::write(&sf, b"host only").unwrap();
    std::fs::set_permissions(&sf, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut b = userns_bundle(
        &[
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; stat -c '%u:%g' /bin/busybox /etc/passwd; \
           touch /made-inside && stat -c 'made %u' /made-inside; \
           cat /secret >/dev/null 2>&1; echo secret=$?; stat -c 'secret %u' /secret",
        ],
        r.path(),
    );
    std::fs::write(r.path().join("secret"), b"").unwrap();
    add_mount(
        &mut b,
        json!({"destination": "/secret", "type": "bind", "source": sf, "options": ["bind"]}),
    );
    // exec joins the container's user namespace.
    let id = unique_id("userns");
    let args = b.config["process"]["args"].clone();
    b.edit(|c| c["process"]["args"] = json!(["sleep", "100"]));
    detached_ok(&root, &["run", "-d", "--bundle", &b.path(), &id]);
    b.edit(|c| c["process"]["args"] = args);
    let pid = root.state(&id)["pid"].as_i64().unwrap();
    let o = root.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "id -u; readlink /proc/self/ns/user",
    ]);
    assert_eq!(
        stdout(&o).lines().nth(1).unwrap_or(""),
        std::fs::read_link(format!("/proc/{pid}/ns/user"))
            .unwrap()
            .to_string_lossy(),
        "exec is not in the container's user namespace: {}",
        both(&o)
    );
    assert_eq!(stdout(&o).lines().next(), Some("0"));
    root.ok(&["delete", "-f", &id]);
    let _ = std::fs::remove_file(r.path().join("made-inside"));
    // Attached, to read what the init printed.
    let o = run(&root, &b, "userns");
    let out = stdout(&o);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l.first(), Some(&"0"), "{}", both(&o));
    assert!(l
        .get(1)
        .is_some_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "100000", "65536"]));
    assert_eq!(
        l.get(2),
        Some(&"0:0"),
        "the mapped rootfs is root's inside: {}",
        both(&o)
    );
    assert!(out.contains("made 0"), "{}", both(&o));
    assert!(
        out.contains("secret=1"),
        "host-root-only file readable: {}",
        both(&o)
    );
    assert!(
        out.contains("secret 65534"),
        "host root shows as the overflow id: {}",
        both(&o)
    );
    // On the host, what the container made belongs to the mapped id.
    assert_eq!(
        std::fs::metadata(r.path().join("made-inside"))
            .unwrap()
            .uid(),
        BASE
    );
}

#[test]
fn joining_a_user_namespace_by_path() {
    let root = Root::new();
    let r = mapped_rootfs();
    let a = userns_bundle(&["sleep", "100"], r.path());
    let ida = unique_id("userns-a");
    detached_ok(&root, &["run", "-d", "--bundle", &a.path(), &ida]);
    let pa = root.state(&ida)["pid"].as_i64().unwrap();
    let userns = format!("/proc/{pa}/ns/user");

    // B joins A's user namespace and creates its own pid, mount, uts, ipc
    // and network namespaces; no mappings of its own.
    let mut b = Bundle::new(&["sh", "-c", "id -u; cat /proc/self/uid_map; hostname; ls /proc/1/ >/dev/null && echo proc-ok; sleep 100"]);
    use_rootfs(&mut b, r.path());
    b.edit(|c| {
        c["root"]["readonly"] = json!(false);
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user", "path": userns}));
    });
    let idb = unique_id("userns-b");
    detached_ok(&root, &["create", "--bundle", &b.path(), &idb]);
    let pb = root.state(&idb)["pid"].as_i64().unwrap();
    assert_eq!(
        ns_id(&format!("/proc/{pb}/ns/user")),
        ns_id(&userns),
        "B is not in A's user namespace"
    );
    // Every namespace B created is owned by the joined user namespace (a
    // runtime that cloned them first and joined after would leave them
    // owned by the host's, and B's root could not mount /proc in them).
    for ns in ["mnt", "pid", "uts", "ipc", "net"] {
        let p = format!("/proc/{pb}/ns/{ns}");
        assert_ne!(
            ns_id(&p),
            ns_id(&format!("/proc/{pa}/ns/{ns}")),
            "{ns} is A's"
        );
        assert_eq!(
            owner_of(&p),
            ns_id(&userns),
            "B's {ns} namespace is not owned by A's user namespace"
        );
    }
    root.ok(&["start", &idb]);
    let o = root.run(&["exec", &idb, "sh", "-c", "id -u; cat /proc/self/uid_map"]);
    assert!(stdout(&o).starts_with("0\n"), "{}", both(&o));
    assert!(stdout(&o).contains("100000"), "{}", both(&o));
    root.ok(&["delete", "-f", &idb]);

    // Attached, to see what B prints.
    b.edit(|c| {
        let script = c["process"]["args"][2]
            .as_str()
            .unwrap()
            .replace("; sleep 100", "");
        c["process"]["args"][2] = json!(script);
    });
    let o = run(&root, &b, "userns-b");
    let out = stdout(&o);
    assert!(out.starts_with("0\n"), "{}", both(&o));
    assert!(out.contains("proc-ok"), "{}", both(&o));

    // Mappings that are not the joined namespace's: refused, nothing left.
    let mut c = Bundle::new(&["true"]);
    use_rootfs(&mut c, r.path());
    c.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user", "path": userns}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 10}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 10}]);
    });
    let idc = unique_id("userns-c");
    let o = root.run(&["create", "--bundle", &c.path(), &idc]);
    assert!(
        stderr(&o).contains("linux.uidMappings") && stderr(&o).contains("other mappings"),
        "{}",
        both(&o)
    );
    assert_nothing_left(&root, &idc, r.path());
    // A path that is not a user namespace.
    c.edit(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().pop();
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user", "path": format!("/proc/{pa}/ns/net")}));
        c["linux"].as_object_mut().unwrap().remove("uidMappings");
        c["linux"].as_object_mut().unwrap().remove("gidMappings");
    });
    let o = root.run(&["create", "--bundle", &c.path(), &idc]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("user namespace"), "{}", both(&o));
    assert_nothing_left(&root, &idc, r.path());
    root.ok(&["delete", "-f", &ida]);
}

/// A host directory owned by host root (0:0) with a file, and a tmpfs
/// submount holding another; unmounted on drop.
struct HostTree {
    dir: TempDir,
}

impl HostTree {
    fn new() -> HostTree {
        let dir = TempDir::new("nk-idmap-src");
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=755", "nk-idmap-sub"])
            .arg(dir.path().join("sub"))
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::write(dir.path().join("sub/subfile"), b"y").unwrap();
        HostTree { dir }
    }
}

impl Drop for HostTree {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path().join("sub"))
            .status();
    }
}

#[test]
fn idmapped_mounts_show_host_root_files_as_container_root() {
    let root = Root::new();
    let r = mapped_rootfs();
    let t = HostTree::new();
    let src = t.dir.path();
    let mut b = userns_bundle(
        &["sh", "-c", "for m in idmap ridmap own plain; do stat -c \"$m %u:%g\" /$m/file /$m/sub/subfile; done; \
           touch /idmap/made && echo made-ok; touch /plain/made2 2>/dev/null || echo plain-denied"],
        r.path(),
    );
    for (dst, opts, maps) in [
        ("/idmap", json!(["rbind", "idmap"]), None),
        ("/ridmap", json!(["rbind", "ridmap"]), None),
        (
            "/own",
            json!(["rbind", "ridmap"]),
            Some((
                json!([{"containerID": 0, "hostID": BASE + 1000, "size": 1}]),
                json!([{"containerID": 0, "hostID": BASE + 2000, "size": 1}]),
            )),
        ),
        ("/plain", json!(["rbind"]), None),
    ] {
        let mut m = json!({"destination": dst, "type": "bind", "source": src, "options": opts});
        if let Some((u, g)) = maps {
            m["uidMappings"] = u;
            m["gidMappings"] = g;
        }
        add_mount(&mut b, m);
    }
    let o = run(&root, &b, "idmap");
    assert!(o.status.success(), "{}", both(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    // idmap with the container's mappings: host root's files are root's
    // inside; the submount (not recursive) keeps the host's ids.
    assert_eq!(&lines[0..2], ["idmap 0:0", "idmap 65534:65534"], "{out}");
    // ridmap: the submount too.
    assert_eq!(&lines[2..4], ["ridmap 0:0", "ridmap 0:0"], "{out}");
    // The mount's own mappings: on-disk 0 is host BASE+1000 (uid) and
    // BASE+2000 (gid), which the container sees as 1000 and 2000.
    assert_eq!(&lines[4..6], ["own 1000:2000", "own 1000:2000"], "{out}");
    // Without idmap: the overflow ids, and no write.
    assert_eq!(
        &lines[6..8],
        ["plain 65534:65534", "plain 65534:65534"],
        "{out}"
    );
    assert!(
        out.contains("made-ok") && out.contains("plain-denied"),
        "{out}"
    );
    // Written through the idmapped mount: owned by host root on disk.
    let m = std::fs::metadata(src.join("made")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
}

#[test]
fn idmapped_mounts_refused_clearly_where_impossible() {
    let root = Root::new();
    let r = mapped_rootfs();
    let t = HostTree::new();
    let src = t.dir.path().display().to_string();
    for (userns, m, field, words) in [
        // sysfs has no idmapped mounts: the kernel's EINVAL, explained.
        (
            true,
            json!({"destination": "/mnt", "type": "bind", "source": "/sys/kernel", "options": ["rbind", "idmap"]}),
            "mounts[",
            "does not support idmapped mounts",
        ),
        (
            false,
            json!({"destination": "/mnt", "type": "bind", "source": src, "options": ["rbind", "idmap"]}),
            "options",
            "there is none",
        ),
        (
            true,
            json!({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]}),
            "options",
            "bind mounts",
        ),
        (
            true,
            json!({"destination": "/mnt", "type": "bind", "source": src, "options": ["rbind"],
                   "uidMappings": [{"containerID": 0, "hostID": BASE, "size": 10}]}),
            "gidMappings",
            "both",
        ),
    ] {
        let mut b = if userns {
            userns_bundle(&["true"], r.path())
        } else {
            let mut b = Bundle::new(&["true"]);
            use_rootfs(&mut b, r.path());
            b
        };
        add_mount(&mut b, m.clone());
        let id = unique_id("idmap-bad");
        let o = root.run(&["run", "--bundle", &b.path(), &id]);
        let e = stderr(&o);
        assert!(!o.status.success(), "{m}: accepted");
        assert!(e.contains(field) && e.contains(words), "{m}: {e}");
        assert_nothing_left(&root, &id, r.path());
    }
}
