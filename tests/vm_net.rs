//! The engine's network inside a VM-mode container, without an engine: the
//! test makes what Podman or Docker would (a network namespace holding
//! `eth0`, one end of a veth pair, with an address and a default route;
//! the other end on the host with the gateway's address), names it in
//! config.json and checks that the container in the guest reaches a server
//! on the host side, that a server in the guest is reached from the host
//! side, and that delete leaves no tap, qdisc or filter in the namespace,
//! which outlives the container as an engine's does until pod teardown.
//! A namespace with only loopback gives the guest only loopback (up, as
//! the engine left it), and a config with no network namespace (the host's
//! stack, `--network host`) is refused before any VM is started. A second
//! container in the same namespace and state root runs in the first's VM
//! (a pod's); under another root it is refused. That VM boots cold
//! (`--vm-boot=cold`); two VMs with a card each restore from the template
//! with one card, each card with its veth's MAC, both reachable at once.
//! Each test boots at most one VM (the template's build aside).

use nk_tests::vm as vm_support;

use nk_tests::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static NET: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> String {
    let o = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut a = vec!["netns", "exec", ns];
    a.extend_from_slice(args);
    ip(&a)
}

/// A network namespace as an engine makes one, removed on drop (its veth
/// goes with it).
struct EngineNet {
    name: String,
    host_if: String,
    /// The host side's address and the container's, in a /24 of their own.
    host_ip: String,
    guest_ip: String,
}

impl EngineNet {
    /// A namespace with loopback up and, when `veth`, an `eth0` whose peer
    /// is on the host.
    fn new(veth: bool) -> EngineNet {
        require_root();
        let n = NET.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = unique_id("nk-vmnet");
        // Interface names are at most 15 bytes.
        let host_if = format!("nkv{}x{n}", pid % 1_000_000);
        let (a, b) = (200 + pid % 50, (pid / 50 % 200) as u32 + n);
        let net = EngineNet {
            host_ip: format!("10.{a}.{b}.1"),
            guest_ip: format!("10.{a}.{b}.2"),
            name,
            host_if,
        };
        ip(&["netns", "add", &net.name]);
        in_ns(&net.name, &["ip", "link", "set", "lo", "up"]);
        if veth {
            ip(&[
                "link",
                "add",
                &net.host_if,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &net.name,
            ]);
            ip(&[
                "addr",
                "add",
                &format!("{}/24", net.host_ip),
                "dev",
                &net.host_if,
            ]);
            ip(&["link", "set", &net.host_if, "up"]);
            in_ns(
                &net.name,
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("{}/24", net.guest_ip),
                    "dev",
                    "eth0",
                ],
            );
            in_ns(&net.name, &["ip", "link", "set", "eth0", "up"]);
            in_ns(
                &net.name,
                &["ip", "route", "add", "default", "via", &net.host_ip],
            );
        }
        net
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for EngineNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A bundle whose network namespace is `path` (None: no network
/// namespace entry at all, the host's stack).
fn bundle_in(args: &[&str], path: Option<&str>) -> Bundle {
    let mut b = Bundle::new(args);
    b.edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "network");
        if let Some(p) = path {
            ns.push(serde_json::json!({"type": "network", "path": p}));
        }
    });
    b
}

fn vm_cmd(root: &Root) -> Command {
    let mut c = root.cmd();
    c.env("NK_VM_AGENT", vm_support::agent());
    c
}

/// GET / from `addr`, or None while nothing answers there.
fn http_get(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.contains("200").then_some(out)
}

#[test]
fn the_engines_namespace_reaches_the_vm_and_back() {
    if !netdev_kinds_here(&["veth"], "the engine's veth into its namespace") {
        return;
    }
    let net = EngineNet::new(true);
    let l = TcpListener::bind(format!("{}:0", net.host_ip)).unwrap();
    let port = l.local_addr().unwrap().port();
    let token = unique_id("from-host");
    vm_support::serve_http(l, format!("{token}\n"));
    let script = format!(
        "ip -o addr show dev eth0; ip route; cat /sys/class/net/eth0/address; \
         wget -q -O - http://{}:{port}/ && echo fetched; \
         mkdir -p /tmp/w && echo pong-from-vm > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w",
        net.host_ip
    );
    let mut b = bundle_in(&["sh", "-c", &script], Some(&net.path()));
    // The server's page goes to /tmp: the guest's overlay takes the write.
    b.edit(|c| c["root"]["readonly"] = false.into());
    let root = Root::new();
    let id = unique_id("vmnet");
    let outdir = TempDir::new("nk-vmnet-out");
    let outp = outdir.path().join("out");
    let errp = outdir.path().join("err");
    let st = vm_cmd(&root)
        .args([
            "run",
            "-d",
            "--mode=vm",
            "--vm-boot=cold",
            "--bundle",
            &b.path(),
            &id,
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&outp).unwrap())
        .stderr(std::fs::File::create(&errp).unwrap())
        .status()
        .unwrap();
    let err = std::fs::read_to_string(&errp).unwrap_or_default();
    assert!(st.success(), "run -d --mode=vm: {err}");

    // The guest reached the host side, with the veth's MAC, address and route.
    let mac = in_ns(&net.name, &["cat", "/sys/class/net/eth0/address"]);
    let out = wait_for("the container's fetch from the host", DEADLINE, || {
        let o = std::fs::read_to_string(&outp).unwrap_or_default();
        o.contains("fetched").then_some(o)
    });
    assert!(out.contains(&token), "{out}");
    assert!(out.contains(&format!("inet {}/24", net.guest_ip)), "{out}");
    assert!(
        out.contains(&format!("default via {}", net.host_ip)),
        "{out}"
    );
    assert!(out.contains(mac.trim()), "guest MAC is not {mac}: {out}");

    // The host side reaches the server in the guest.
    let got = wait_for("the guest's httpd, from the host", DEADLINE, || {
        http_get(&format!("{}:8080", net.guest_ip))
    });
    assert!(got.contains("pong-from-vm"), "{got}");

    // While it runs: a tap, and the redirect on the veth's ingress.
    let links = in_ns(&net.name, &["ip", "-o", "link"]);
    assert!(links.contains("nktap0"), "{links}");
    let filters = in_ns(
        &net.name,
        &["tc", "filter", "show", "dev", "eth0", "ingress"],
    );
    assert!(
        filters.contains("mirred") && filters.contains("Redirect to device nktap0"),
        "{filters}"
    );

    // A second container in the same namespace and state root is one of
    // the pod's: it runs in this VM (no second tap) and reaches the host too.
    let url = format!("http://{}:{port}/", net.host_ip);
    let b2 = bundle_in(&["wget", "-q", "-O", "-", &url], Some(&net.path()));
    let o = vm_cmd(&root)
        .args([
            "run",
            "--mode=vm",
            "--bundle",
            &b2.path(),
            &unique_id("vmnet-pod"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "run of the pod's second container: {}",
        stderr(&o)
    );
    assert!(stdout(&o).contains(&token), "{}", stdout(&o));
    let links = in_ns(&net.name, &["ip", "-o", "link"]);
    assert!(!links.contains("nktap1"), "a second tap: {links}");
    // What a pod's container cannot have in that VM is refused by name:
    // more memory than it has, and a host namespace outside the pod.
    let o = vm_cmd(&root)
        .args([
            "create",
            "--mode=vm",
            "--vm-memory",
            "4096",
            "--bundle",
            &b2.path(),
        ])
        .arg(unique_id("vmnet-big"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "a member bigger than its VM was created"
    );
    assert!(
        err.contains("4096 MiB") && err.contains("cannot grow"),
        "{err}"
    );
    let mut b3 = bundle_in(&["true"], Some(&net.path()));
    b3.edit(|c| {
        for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "uts" {
                n["path"] = format!("/proc/{}/ns/uts", std::process::id()).into();
            }
        }
        c.as_object_mut().unwrap().remove("hostname");
    });
    let o = vm_cmd(&root)
        .args(["create", "--mode=vm", "--bundle", &b3.path()])
        .arg(unique_id("vmnet-host-uts"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "a member joining a host namespace was created"
    );
    assert!(
        err.contains("(uts)") && err.contains("outside that VM"),
        "{err}"
    );
    assert_eq!(root.ids(), vec![id.clone()], "containers left");
    // Under another --root that VM is unknown: the namespace is refused by
    // name, and the first VM's redirect stays.
    let other = Root::new();
    let o = vm_cmd(&other)
        .args([
            "create",
            "--mode=vm",
            "--bundle",
            &b2.path(),
            &unique_id("vmnet-other"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "created beside another root's VM");
    assert!(
        err.contains("already carried into another VM through nktap0") && err.contains("--root"),
        "{err}"
    );
    assert!(other.ids().is_empty(), "containers left: {:?}", other.ids());
    let got = wait_for("the guest's httpd, still", DEADLINE, || {
        http_get(&format!("{}:8080", net.guest_ip))
    });
    assert!(got.contains("pong-from-vm"), "{got}");

    let o = root.run(&["delete", "--force", &id]);
    assert!(o.status.success(), "delete: {}", stderr(&o));
    assert!(root.ids().is_empty(), "containers left: {:?}", root.ids());
    // The namespace outlives the container; nothing of the VM is left in it.
    let links = wait_for("the tap to go with QEMU", DEADLINE, || {
        let l = in_ns(&net.name, &["ip", "-o", "link"]);
        (!l.contains("nktap")).then_some(l)
    });
    assert!(links.contains("eth0"), "{links}");
    let qd = in_ns(&net.name, &["tc", "qdisc", "show", "dev", "eth0"]);
    assert!(!qd.contains("ingress"), "ingress qdisc left on eth0: {qd}");
    let f = in_ns(
        &net.name,
        &["tc", "filter", "show", "dev", "eth0", "ingress"],
    );
    assert!(f.trim().is_empty(), "filters left on eth0: {f}");
}

#[test]
fn a_namespace_with_only_loopback_gives_only_loopback() {
    // `--network none`: the engine's namespace has lo (up) and nothing else.
    let net = EngineNet::new(false);
    let b = bundle_in(&["ip", "-o", "link"], Some(&net.path()));
    let root = Root::new();
    let o = vm_cmd(&root)
        .args([
            "run",
            "--mode=vm",
            "--bundle",
            &b.path(),
            &unique_id("vmlo"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "run: {}", stderr(&o));
    let links: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(links.len(), 1, "{links:?}");
    assert!(
        links[0].starts_with("1: lo: <LOOPBACK,UP"),
        "lo is not up: {links:?}"
    );
    assert!(root.ids().is_empty(), "containers left: {:?}", root.ids());
}

#[test]
fn the_hosts_network_is_refused() {
    let b = bundle_in(&["true"], None);
    let root = Root::new();
    let id = unique_id("vmhost");
    let o = vm_cmd(&root)
        .args(["create", "--mode=vm", "--bundle", &b.path(), &id])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "a VM on the host's network was created"
    );
    let err = stderr(&o);
    assert!(
        err.contains("cannot share the host's network stack") && err.contains("--network host"),
        "{err}"
    );
    assert!(root.ids().is_empty(), "containers left: {:?}", root.ids());
    assert!(!root.dir.path().join(&id).exists(), "state left for {id}");
}

/// A VM-mode container started with `-E run -d` in `net`, running
/// `script`; returns its id, the file its stdout goes to, the narration
/// (without whitespace) and the bundle.
fn run_detached(
    root: &Root,
    net: &EngineNet,
    script: &str,
    outdir: &TempDir,
) -> (String, std::path::PathBuf, String, Bundle) {
    let mut b = bundle_in(&["sh", "-c", script], Some(&net.path()));
    b.edit(|c| c["root"]["readonly"] = false.into());
    let id = unique_id("vmnet-tpl");
    let outp = outdir.path().join(format!("{id}.out"));
    let errp = outdir.path().join(format!("{id}.err"));
    let st = vm_cmd(root)
        .args(["-E", "run", "-d", "--mode=vm"])
        .args(["--bundle", &b.path(), &id])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&outp).unwrap())
        .stderr(std::fs::File::create(&errp).unwrap())
        .status()
        .unwrap();
    let err = std::fs::read_to_string(&errp).unwrap_or_default();
    assert!(st.success(), "run -d --mode=vm: {err}");
    // -E wraps long lines, even inside a path: compared without whitespace.
    let narration = err.split_whitespace().collect::<String>();
    (id, outp, narration, b)
}

#[test]
fn vms_with_a_card_restore_from_the_template_with_their_own_macs() {
    // Two engine namespaces, a VM in each, both running at once. The
    // template with one card is built on first use (by the first VM's
    // monitor), then both VMs restore from it.
    if !netdev_kinds_here(&["veth"], "the engines' veths into their namespaces") {
        return;
    }
    let nets = [EngineNet::new(true), EngineNet::new(true)];
    let root = Root::new();
    let outdir = TempDir::new("nk-vmnet-tpl");
    let mut vms = Vec::new();
    for net in &nets {
        let l = TcpListener::bind(format!("{}:0", net.host_ip)).unwrap();
        let port = l.local_addr().unwrap().port();
        let token = unique_id("to-guest");
        vm_support::serve_http(l, format!("{token}\n"));
        // The card's MAC, and the neighbours it knew before any traffic
        // (a clone must not carry the template's), then traffic each way.
        let script = format!(
            "cat /sys/class/net/eth0/address; echo neigh:$(ip neigh show dev eth0):; \
             wget -q -O - http://{}:{port}/ && echo fetched; \
             mkdir -p /tmp/w && echo pong-$(cat /sys/class/net/eth0/address) > /tmp/w/index.html \
             && exec httpd -f -p 8080 -h /tmp/w",
            net.host_ip
        );
        let (id, outp, narration, b) = run_detached(&root, net, &script, &outdir);
        assert!(
            narration.contains(">restoredfromthetemplate")
                && narration.contains("1networkcard(s)thattheagentgivestheveth'sMAC"),
            "the VM with a card was not restored from a template: {narration}"
        );
        vms.push((id, outp, token, b));
    }
    let mut macs = Vec::new();
    for (net, (id, outp, token, _)) in nets.iter().zip(&vms) {
        let veth_mac = in_ns(&net.name, &["cat", "/sys/class/net/eth0/address"])
            .trim()
            .to_string();
        let out = wait_for("the container's fetch from the host", DEADLINE, || {
            let o = std::fs::read_to_string(outp).unwrap_or_default();
            o.contains("fetched").then_some(o)
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0], veth_mac,
            "{id}: the guest's card does not have the veth's MAC: {out}"
        );
        assert_eq!(
            lines[1], "neigh::",
            "{id}: neighbours before any traffic: {out}"
        );
        assert!(out.contains(token.as_str()), "{out}");
        let got = wait_for("the guest's httpd, from the host", DEADLINE, || {
            http_get(&format!("{}:8080", net.guest_ip))
        });
        assert!(got.contains(&format!("pong-{veth_mac}")), "{got}");
        macs.push(veth_mac);
    }
    assert_ne!(macs[0], macs[1], "two VMs with one MAC");
    for (id, _, _, _) in &vms {
        let o = root.run(&["delete", "--force", id]);
        assert!(o.status.success(), "delete {id}: {}", stderr(&o));
    }
    assert!(root.ids().is_empty(), "containers left: {:?}", root.ids());
    for net in &nets {
        wait_for("the tap to go with QEMU", DEADLINE, || {
            let l = in_ns(&net.name, &["ip", "-o", "link"]);
            (!l.contains("nktap")).then_some(l)
        });
    }
}
