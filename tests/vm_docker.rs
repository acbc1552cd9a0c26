//! Docker runs VM-mode containers on its networks, with runc as the
//! reference in each test: the default bridge (a server on the host side
//! of the bridge is reached, a published port reaches a busybox httpd in
//! the VM), a user-defined network (two containers reach each other by
//! name through Docker's embedded DNS at 127.0.0.11, and an unknown name
//! fails rather than hangs), `--network none` (loopback only) and
//! `--network host` (refused with a clear error).
//!
//! Docker configures the network from its prestart hook (libnetwork-setkey)
//! in `/proc/<pid>/ns/net` of the pid the runtime reports, the VM monitor,
//! and names `--network host` by path. Each test runs a private dockerd of
//! its own: its socket, data root, exec root and pidfile in a temp dir, no
//! iptables of the host's touched (`--iptables=false`: published ports go
//! through docker-proxy), `--bridge` set to a bridge the test makes with a
//! unique name and a free subnet. Everything is removed at the end, by pid
//! and by name, even when the test fails, and so are the empty `/docker`
//! cgroups dockerd made (those that were not there when it started).

use nk_tests::vm as vm_support;

use nk_tests::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static BR: AtomicU32 = AtomicU32::new(0);

fn docker_ok() -> bool {
    Path::new("/usr/sbin/dockerd").exists() && Path::new("/usr/bin/docker").exists()
}

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)")
}

/// A bridge name of at most 15 bytes, unique to this process and call.
fn bridge_name(tag: &str) -> String {
    format!(
        "nk{tag}{}x{}",
        std::process::id() % 100_000,
        BR.fetch_add(1, Ordering::Relaxed)
    )
}

/// A private dockerd with the nk-runtime-vm link registered as `nkvm`,
/// on a bridge of its own.
struct Dockerd {
    dir: TempDir,
    child: Option<Child>,
    /// The default bridge, made by the test; its /24 prefix ("10.A.B").
    bridge: String,
    net: String,
    /// Bridges of user-defined networks, removed at the end if Docker left them.
    more_bridges: Vec<String>,
    _links: TempDir,
    /// The cgroups before dockerd started: the empty `/docker` it leaves
    /// in every hierarchy is removed at the end.
    cgroups: CgroupSnapshot,
}

impl Dockerd {
    fn start() -> Dockerd {
        let dir = TempDir::new("nk-dockervm");
        let links = TempDir::new("nk-vmlink");
        let link = links.path().join("nk-runtime-vm");
        std::os::unix::fs::symlink(runtime(), &link).unwrap();
        let bridge = bridge_name("db");
        let net = vm_support::free_subnet();
        let cgroups = CgroupSnapshot::take();
        let mut d = Dockerd {
            dir,
            child: None,
            bridge: bridge.clone(),
            net: net.clone(),
            more_bridges: Vec::new(),
            _links: links,
            cgroups,
        };
        for args in [
            vec!["link", "add", bridge.as_str(), "type", "bridge"],
            vec!["addr", "add", &format!("{net}.1/24"), "dev", &bridge],
            vec!["link", "set", &bridge, "up"],
        ] {
            let o = ip(&args);
            assert!(o.status.success(), "ip {args:?}: {}", stderr(&o));
        }
        let p = d.dir.path();
        std::fs::write(p.join("daemon.json"), "{}\n").unwrap();
        let log = std::fs::File::create(p.join("dockerd.log")).unwrap();
        let child = Command::new("/usr/sbin/dockerd")
            .arg("--data-root")
            .arg(p.join("data"))
            .arg("--exec-root")
            .arg(p.join("x"))
            .arg("--pidfile")
            .arg(p.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", p.join("d.sock").display()))
            .arg("--config-file")
            .arg(p.join("daemon.json"))
            .args([
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge",
                &bridge,
            ])
            .arg("--add-runtime")
            .arg(format!("nkvm={}", link.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        d.child = Some(child);
        wait_for("dockerd to answer", DEADLINE, || {
            let o = d.cmd().arg("version").output().ok()?;
            if let Some(Ok(Some(st))) = d.child.as_mut().map(|c| c.try_wait()) {
                let log = std::fs::read_to_string(d.dir.path().join("dockerd.log"));
                panic!("dockerd exited ({st}): {}", log.unwrap_or_default());
            }
            o.status.success().then_some(())
        });
        // The busybox rootfs as an image.
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(rootfs())
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let o = d
            .cmd()
            .args([
                "import",
                "--change",
                "ENV PATH=/bin",
                "-",
                "localhost/nkvm:latest",
            ])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(tar.wait().unwrap().success(), "tar of the rootfs");
        assert!(o.status.success(), "docker import: {}", stderr(&o));
        d
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("/usr/bin/docker");
        c.arg("-H").arg(format!(
            "unix://{}",
            self.dir.path().join("d.sock").display()
        ));
        c
    }

    /// `docker` with `args`; panics with its stderr when it fails.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd().args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            o.status.success(),
            "docker {}: {}",
            args.join(" "),
            stderr(&o)
        );
        stdout(&o)
    }

    /// A user-defined bridge network with its own bridge name and subnet.
    fn network(&mut self, name: &str) {
        let br = bridge_name("dn");
        let net = vm_support::free_subnet();
        self.more_bridges.push(br.clone());
        self.ok(&[
            "network",
            "create",
            "-o",
            &format!("com.docker.network.bridge.name={br}"),
            "--subnet",
            &format!("{net}.0/24"),
            name,
        ]);
    }

    /// Wait until the container's log shows `line`; its log then.
    fn wait_log(&self, name: &str, line: &str) -> String {
        wait_for(&format!("{name} to log {line:?}"), DEADLINE, || {
            let o = self.cmd().args(["logs", name]).output().ok()?;
            let s = format!("{}{}", stdout(&o), stderr(&o));
            s.contains(line).then_some(s)
        })
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // What runs under our directories now (a VM's monitor and QEMU run
        // in their state directory, under the exec root): killed by pid at
        // the end if Docker's own cleanup left any of it.
        let procs = procs_with_cwd_under(self.dir.path());
        let ids = self
            .cmd()
            .args(["ps", "-aq"])
            .output()
            .map(|o| stdout(&o))
            .unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = self.cmd().args(["rm", "-f", id]).output();
        }
        let _ = self.cmd().args(["network", "prune", "-f"]).output();
        // The managed containerd is dockerd's child: dockerd stops it on
        // SIGTERM. It is killed by its pid if it outlives dockerd.
        let ctd = std::fs::read_to_string(self.dir.path().join("x/containerd/containerd.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) of the dockerd this test started.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let end = std::time::Instant::now() + DEADLINE;
            while c.try_wait().ok().flatten().is_none() && std::time::Instant::now() < end {
                // A poll interval while dockerd shuts down, not a wait that hopes.
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(pid) = ctd {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.contains(&*self.dir.path().to_string_lossy()));
            if alive {
                // SAFETY: kill(2) of the containerd our dockerd started (its
                // command line names our exec root).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        kill_procs(&procs);
        // Mounts under the temp dir (overlays, netns files), deepest first.
        let me = self.dir.path().to_string_lossy().into_owned();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|m| m.starts_with(&me))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).output();
        }
        for b in self.more_bridges.iter().chain([&self.bridge]) {
            // Veths a killed dockerd left on the bridge go first.
            let ports = stdout(&ip(&["-o", "link", "show", "master", b]));
            for port in ports.lines().filter_map(|l| l.split(": ").nth(1)) {
                let _ = ip(&["link", "del", port.split('@').next().unwrap_or(port)]);
            }
            if Path::new("/sys/class/net").join(b).exists() {
                let _ = ip(&["link", "del", b]);
            }
        }
        // dockerd, its containerd and the containers are gone: the
        // `/docker` cgroups they made (and left, empty) go too.
        self.cgroups.tidy_on_drop("dockerd", "docker");
    }
}

fn require_docker() {
    require_root();
    assert!(
        docker_ok(),
        "docker.io is not installed (scripts/test-deps.sh installs it)"
    );
}

/// Docker's default bridge, runc then VM mode: the container fetches from
/// a server on the host side of the bridge (its gateway), and a published
/// port reaches a busybox httpd in the container through docker-proxy.
/// Then, in VM mode only: `--network none` gives loopback only, and
/// `--network host` (the host's namespace by path) is refused before
/// anything is made.
#[test]
fn docker_bridge_network_reaches_the_host_and_a_published_port() {
    require_docker();
    if !netdev_kinds_here(&["bridge", "veth"], "Docker's bridge network") {
        return;
    }
    let d = Dockerd::start();
    let gw = format!("{}.1", d.net);
    let l = std::net::TcpListener::bind(format!("{gw}:0")).unwrap();
    let port = l.local_addr().unwrap().port();
    let token = unique_id("host-says");
    vm_support::serve_http(l, format!("{token}\n"));
    for (rt, kernel) in [("runc", None), ("nkvm", Some(vm_support::guest_kernel()))] {
        let name = unique_id("nkdbr");
        // A free host port for -p (taken back from the kernel just before use).
        let hostport = std::net::TcpListener::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = format!(
            "wget -q -O - http://{gw}:{port}/ && echo fetched; \
             mkdir -p /tmp/w && echo pong-$(uname -r) > /tmp/w/index.html && \
             exec httpd -f -p 8080 -h /tmp/w"
        );
        d.ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--runtime",
            rt,
            "-p",
            &format!("{hostport}:8080"),
            "localhost/nkvm",
            "sh",
            "-c",
            &script,
        ]);
        let logs = d.wait_log(&name, "fetched");
        assert!(logs.contains(&token), "{rt}: {logs}");
        let got = wait_for(&format!("{rt}: the published port"), DEADLINE, || {
            vm_support::http_get(&format!("127.0.0.1:{hostport}"))
        });
        assert!(got.contains("pong-"), "{rt}: {got}");
        if let Some(k) = &kernel {
            assert!(
                got.contains(&format!("pong-{k}")),
                "{rt}: not the guest: {got}"
            );
        }
        d.ok(&["rm", "-f", &name]);
    }

    let links = d.ok(&[
        "run",
        "--rm",
        "--runtime",
        "nkvm",
        "--network",
        "none",
        "localhost/nkvm",
        "sh",
        "-c",
        "uname -r; ip -o link",
    ]);
    let mut lines = links.lines();
    assert_eq!(lines.next(), Some(vm_support::guest_kernel().as_str()));
    let rest: Vec<&str> = lines.collect();
    assert_eq!(rest.len(), 1, "--network none: {links}");
    assert!(rest[0].starts_with("1: lo: <LOOPBACK,UP"), "{links}");

    let o = d
        .cmd()
        .args([
            "run",
            "--rm",
            "--runtime",
            "nkvm",
            "--network",
            "host",
            "localhost/nkvm",
            "true",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success(), "a VM on the host's network ran");
    let err = stderr(&o);
    assert!(
        err.contains("cannot share the host's network stack")
            && err.contains("is the host's own")
            && err.contains("--network host"),
        "{err}"
    );
}

/// Two containers on a user-defined network, runc then VM mode: the
/// client fetches from the server by its name (Docker's embedded DNS,
/// 127.0.0.11 in the container's resolv.conf), and an unknown name fails
/// (Docker's resolver finds no answer; the lookup must not hang).
#[test]
fn docker_user_network_resolves_container_names() {
    require_docker();
    if !netdev_kinds_here(&["bridge", "veth"], "Docker's user-defined network") {
        return;
    }
    let mut d = Dockerd::start();
    let net = unique_id("nkdnet");
    d.network(&net);
    for rt in ["runc", "nkvm"] {
        let server = unique_id("nksrv");
        d.ok(&[
            "run",
            "-d",
            "--name",
            &server,
            "--network",
            &net,
            "--runtime",
            rt,
            "localhost/nkvm",
            "sh",
            "-c",
            "mkdir -p /tmp/w && echo pong-$(uname -r) > /tmp/w/index.html && \
             echo serving && exec httpd -f -p 8080 -h /tmp/w",
        ]);
        d.wait_log(&server, "serving");
        let script = format!(
            "cat /etc/resolv.conf; wget -q -O - http://{server}:8080/ && echo fetched; \
             nslookup nosuch-{server}.invalid >/dev/null 2>&1; echo unknown=$?"
        );
        let t0 = std::time::Instant::now();
        let out = d.ok(&[
            "run",
            "--rm",
            "--network",
            &net,
            "--runtime",
            rt,
            "localhost/nkvm",
            "sh",
            "-c",
            &script,
        ]);
        eprintln!("{rt}: the client ran in {:?}", t0.elapsed());
        assert!(out.contains("nameserver 127.0.0.11"), "{rt}: {out}");
        assert!(out.contains("fetched"), "{rt}: no fetch by name: {out}");
        if rt == "nkvm" {
            let k = vm_support::guest_kernel();
            assert!(out.contains(&format!("pong-{k}")), "{rt}: {out}");
        }
        let unknown = out
            .lines()
            .find_map(|l| l.strip_prefix("unknown="))
            .unwrap_or_else(|| panic!("{rt}: no lookup status: {out}"));
        assert_ne!(unknown, "0", "{rt}: an unknown name resolved: {out}");
        d.ok(&["rm", "-f", &server]);
    }
}
