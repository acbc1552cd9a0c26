//! Podman runs containers in VMs: once through the `nk-runtime-vm` link
//! (engines pick the runtime by path), once through the
//! `org.nano-sandbox.mode=vm` annotation on the plain binary. Podman runs
//! privately (its own storage, runroot and containers.conf in a temp dir),
//! as ../shared/engines/podman-check.sh does; `runtime_supports_json` must
//! name the runtime's basename, or podman passes no --log/--log-format.
//! The empty `/libpod_parent` cgroups podman makes are removed at the end
//! (those that were not there when the `Podman` was made).

use nk_tests::vm as vm_support;

use nk_tests::*;
use std::path::Path;
use std::process::{Command, Stdio};

fn podman_ok() -> bool {
    Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

struct Podman {
    dir: TempDir,
    runtime: std::path::PathBuf,
    /// The cgroups before this podman ran: the empty `/libpod_parent` tree
    /// (`conmon`, one 64-hex directory per container) it leaves is removed
    /// at the end.
    cgroups: CgroupSnapshot,
}

impl Podman {
    fn new(runtime: &Path) -> Podman {
        let cgroups = CgroupSnapshot::take();
        let dir = TempDir::new("nk-podman-vm");
        let name = runtime.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::write(
            dir.path().join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 runtime_supports_json = [\"crun\", \"runc\", \"{name}\"]\n\
                 [network]\nnetwork_backend = \"netavark\"\nnetwork_config_dir = \"{}\"\n",
                dir.path().join("networks").display()
            ),
        )
        .unwrap();
        let p = Podman {
            dir,
            runtime: runtime.to_path_buf(),
            cgroups,
        };
        // Import the busybox rootfs as an image.
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(rootfs())
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let st = p
            .cmd()
            .args([
                "import",
                "-q",
                "--change",
                "ENV PATH=/bin",
                "-",
                "localhost/nkvm:latest",
            ])
            .stdin(tar.stdout.take().unwrap())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(tar.wait().unwrap().success(), "tar of the rootfs");
        assert!(st.success(), "podman import");
        p
    }

    fn cmd(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("NK_VM_AGENT", vm_support::agent())
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--runtime")
            .arg(&self.runtime);
        c
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // A VM's monitor and QEMU run in their state directory, under the
        // runroot: killed by pid if podman's own cleanup left any.
        let procs = procs_with_cwd_under(self.dir.path());
        let _ = self.cmd().args(["rm", "-a", "-f", "-t", "0"]).output();
        kill_procs(&procs);
        let _ = self.cmd().args(["system", "reset", "-f"]).output();
        // Overlay mounts of podman's storage must go before the directory does.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path().join("storage/overlay"))
            .output();
        // The containers and their conmons are gone: the `/libpod_parent`
        // cgroups they made (and left, empty) go too.
        self.cgroups.tidy_on_drop("podman", "libpod_parent");
    }
}

#[test]
fn podman_runs_a_container_in_a_vm() {
    require_root();
    assert!(
        podman_ok(),
        "podman is not installed (scripts/test-deps.sh installs it)"
    );
    let links = TempDir::new("nk-vmlink");
    let link = links.path().join("nk-runtime-vm");
    std::os::unix::fs::symlink(runtime(), &link).unwrap();

    // Through the link name; `--network none` gives loopback only.
    let p = Podman::new(&link);
    let o = p
        .cmd()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--memory",
            "64m",
            "localhost/nkvm",
        ])
        .args([
            "sh",
            "-c",
            "uname -r; cat /sys/fs/cgroup/memory.max; ip -o link; exit 3",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "podman run: {}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    let mem = (64 << 20).to_string();
    assert_eq!(
        lines[..2],
        [vm_support::guest_kernel().as_str(), mem.as_str()],
        "{out}"
    );
    assert_eq!(lines.len(), 3, "--network none: not only loopback: {out}");
    // Podman gives no namespace path here: the container's new namespace
    // has its loopback down, as in container mode (docs/kernel-mechanisms.md).
    assert!(lines[2].starts_with("1: lo: <LOOPBACK>"), "{out}");

    // `--network host` (no network namespace in the config) is refused.
    let o = p
        .cmd()
        .args(["run", "--rm", "--network", "host", "localhost/nkvm", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success(), "a VM on the host's network ran");
    let err = stderr(&o);
    assert!(
        err.contains("cannot share the host's network stack") && err.contains("--network host"),
        "{err}"
    );
    drop(p);

    // Through the annotation, with the plain binary.
    let p = Podman::new(&runtime());
    let o = p
        .cmd()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--annotation",
            "org.nano-sandbox.mode=vm",
            "localhost/nkvm",
            "uname",
            "-r",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "podman run: {}", stderr(&o));
    assert_eq!(stdout(&o).trim(), vm_support::guest_kernel());
}

/// Podman's default bridge network, with runc as the reference: the
/// container fetches from a server on the host (through the bridge's
/// gateway), and a published port (`-p HOSTPORT:8080`) reaches a busybox
/// httpd in the container. In VM mode the frames cross the netns's veth,
/// the tap and the guest's virtio-net card.
#[test]
fn podman_bridge_network_reaches_the_host_and_a_published_port() {
    require_root();
    assert!(
        podman_ok(),
        "podman is not installed (scripts/test-deps.sh installs it)"
    );
    if !netdev_kinds_here(&["bridge", "veth"], "podman's bridge network") {
        return;
    }
    let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let token = unique_id("host-says");
    let body = format!("{token}\n");
    vm_support::serve_http(l, body);
    let links = TempDir::new("nk-vmlink");
    let link = links.path().join("nk-runtime-vm");
    std::os::unix::fs::symlink(runtime(), &link).unwrap();
    for (rt, kernel) in [
        (std::path::PathBuf::from(runc()), None),
        (link, Some(vm_support::guest_kernel())),
    ] {
        let what = rt.display().to_string();
        let p = Podman::new(&rt);
        let name = unique_id("nkbr");
        // A free host port for -p (taken back from the kernel just before use).
        let hostport = std::net::TcpListener::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = format!(
            "gw=$(ip route | awk '/^default/ {{print $3}}'); \
             wget -q -O - http://$gw:{port}/ && echo fetched; \
             mkdir -p /tmp/w && echo pong-$(uname -r) > /tmp/w/index.html && \
             exec httpd -f -p 8080 -h /tmp/w"
        );
        let o = p
            .cmd()
            .args(["run", "-d", "--name", &name, "-p"])
            .arg(format!("{hostport}:8080"))
            .args(["localhost/nkvm", "sh", "-c", &script])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{what}: podman run: {}", stderr(&o));
        let logs = wait_for(
            &format!("{what}: the fetch from the host"),
            DEADLINE,
            || {
                let o = p.cmd().args(["logs", &name]).output().ok()?;
                let s = stdout(&o);
                s.contains("fetched").then_some(s)
            },
        );
        assert!(logs.contains(&token), "{what}: {logs}");
        let gw = p
            .cmd()
            .args(["inspect", "--format", "{{.NetworkSettings.Gateway}}", &name])
            .output()
            .unwrap();
        let gw = stdout(&gw).trim().to_string();
        assert!(!gw.is_empty(), "{what}: no gateway in podman inspect");
        let got = wait_for(&format!("{what}: the published port"), DEADLINE, || {
            vm_support::http_get(&format!("{gw}:{hostport}"))
        });
        assert!(got.contains("pong-"), "{what}: {got}");
        if let Some(k) = kernel {
            assert!(
                got.contains(&format!("pong-{k}")),
                "{what}: not the guest: {got}"
            );
        }
        let o = p
            .cmd()
            .args(["rm", "-f", "-t", "0", &name])
            .output()
            .unwrap();
        assert!(o.status.success(), "{what}: podman rm: {}", stderr(&o));
    }
}

/// Two containers on a user-defined network, runc then VM mode: the
/// client fetches from the server by its name, which aardvark-dns answers
/// at the network's gateway (the resolv.conf's nameserver), so the query
/// crosses the bridge like any other packet; an unknown name fails. The
/// network gets a bridge name of its own and a free subnet, and the
/// private podman keeps its network configs in its temp dir.
#[test]
fn podman_user_network_resolves_container_names() {
    require_root();
    assert!(
        podman_ok(),
        "podman is not installed (scripts/test-deps.sh installs it)"
    );
    if !netdev_kinds_here(&["bridge", "veth"], "podman's user-defined network") {
        return;
    }
    let links = TempDir::new("nk-vmlink");
    let link = links.path().join("nk-runtime-vm");
    std::os::unix::fs::symlink(runtime(), &link).unwrap();
    for (rt, kernel) in [
        (std::path::PathBuf::from(runc()), None),
        (link, Some(vm_support::guest_kernel())),
    ] {
        let what = rt.display().to_string();
        let p = Podman::new(&rt);
        let net = unique_id("nkpnet");
        let bridge = format!(
            "nkp{}x{}",
            std::process::id() % 100_000,
            kernel.is_some() as u8
        );
        let sub = vm_support::free_subnet();
        // Podman 4.3 has no --interface-name: the network's file, in the
        // private network_config_dir, names a bridge of this test's own
        // (an automatic podmanN could be picked by a concurrent podman too).
        // Its id: 64 hex digits, here the name's bytes, padded.
        let hex: String = net.bytes().map(|b| format!("{b:02x}")).collect();
        let id = format!("{hex:0<64}")[..64].to_string();
        let cfg = serde_json::json!({
            "name": net, "id": id, "driver": "bridge", "network_interface": bridge,
            "created": "2026-01-01T00:00:00Z",
            "subnets": [{"subnet": format!("{sub}.0/24"), "gateway": format!("{sub}.1")}],
            "ipv6_enabled": false, "internal": false, "dns_enabled": true,
            "ipam_options": {"driver": "host-local"}
        });
        let dir = p.dir.path().join("networks");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{net}.json")), cfg.to_string()).unwrap();
        let server = unique_id("nksrv");
        let o = p
            .cmd()
            .args(["run", "-d", "--name", &server, "--network", &net])
            .args([
                "localhost/nkvm",
                "sh",
                "-c",
                "mkdir -p /tmp/w && echo pong-$(uname -r) > /tmp/w/index.html && \
                 echo serving && exec httpd -f -p 8080 -h /tmp/w",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{what}: podman run: {}", stderr(&o));
        wait_for(&format!("{what}: the server"), DEADLINE, || {
            let o = p.cmd().args(["logs", &server]).output().ok()?;
            stdout(&o).contains("serving").then_some(())
        });
        let script = format!(
            "cat /etc/resolv.conf; wget -q -O - http://{server}:8080/ && echo fetched; \
             nslookup nosuch-{server}.invalid >/dev/null 2>&1; echo unknown=$?"
        );
        let o = p
            .cmd()
            .args([
                "run",
                "--rm",
                "--network",
                &net,
                "localhost/nkvm",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let out = stdout(&o);
        assert!(o.status.success(), "{what}: podman run: {}", stderr(&o));
        assert!(
            out.contains(&format!("nameserver {sub}.1")),
            "{what}: the gateway is not the nameserver: {out}"
        );
        assert!(out.contains("fetched"), "{what}: no fetch by name: {out}");
        if let Some(k) = &kernel {
            assert!(
                out.contains(&format!("pong-{k}")),
                "{what}: not the guest: {out}"
            );
        }
        let unknown = out
            .lines()
            .find_map(|l| l.strip_prefix("unknown="))
            .unwrap_or_else(|| panic!("{what}: no lookup status: {out}"));
        assert_ne!(unknown, "0", "{what}: an unknown name resolved: {out}");
        let _ = p.cmd().args(["rm", "-f", "-t", "0", &server]).output();
        let o = p
            .cmd()
            .args(["network", "rm", "-f", &net])
            .output()
            .unwrap();
        assert!(o.status.success(), "{what}: network rm: {}", stderr(&o));
        assert!(
            !std::path::Path::new("/sys/class/net")
                .join(&bridge)
                .exists(),
            "{what}: bridge {bridge} left"
        );
    }
}

/// The parent of a process, from /proc/<pid>/stat.
fn ppid(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()
}

/// QEMU processes that descend from any of `monitors`.
fn qemus_under(monitors: &[i32]) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("qemu-system") {
            continue;
        }
        let mut p = pid;
        while let Some(up) = ppid(p).filter(|u| *u > 1) {
            if monitors.contains(&up) {
                v.push(pid);
                break;
            }
            p = up;
        }
    }
    v
}

/// A Podman pod whose infra and two containers all run through
/// `nk-runtime-vm` gets exactly one VM: the infra's monitor owns the only
/// QEMU, the two containers reach each other on localhost and share the
/// infra's IPC and pid namespaces (`--share ipc,net,uts,pid`), an exit
/// code comes back through a container's own monitor, removing one
/// container leaves the other running, and `pod rm` stops the VM and
/// leaves no process, state or mount behind.
#[test]
fn podman_pod_runs_in_one_vm() {
    require_root();
    assert!(
        podman_ok(),
        "podman is not installed (scripts/test-deps.sh installs it)"
    );
    let links = TempDir::new("nk-vmlink");
    let link = links.path().join("nk-runtime-vm");
    std::os::unix::fs::symlink(runtime(), &link).unwrap();
    let p = Podman::new(&link);
    let pod = unique_id("nkpod");
    let run = |args: &[&str]| {
        let o = p.cmd().args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            o.status.success(),
            "podman {}: {}",
            args.join(" "),
            stderr(&o)
        );
        stdout(&o).trim().to_string()
    };
    run(&[
        "pod",
        "create",
        "--name",
        &pod,
        "--share",
        "ipc,net,uts,pid",
    ]);
    let (a, b) = (format!("{pod}-a"), format!("{pod}-b"));
    run(&[
        "run", "-d", "--pod", &pod, "--name", &a, "localhost/nkvm", "sh", "-c",
        "mkdir -p /tmp/w && echo from-a-$(uname -r) > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w",
    ]);
    run(&[
        "run",
        "-d",
        "--pod",
        &pod,
        "--name",
        &b,
        "localhost/nkvm",
        "sleep",
        "1000",
    ]);
    let infra = run(&["pod", "inspect", "--format", "{{.InfraContainerID}}", &pod]);
    let pid_of = |c: &str| -> i32 {
        run(&["inspect", "--format", "{{.State.Pid}}", c])
            .parse()
            .unwrap()
    };
    let monitors = [pid_of(&infra), pid_of(&a), pid_of(&b)];
    assert!(monitors.iter().all(|m| *m > 0), "{monitors:?}");
    let q = qemus_under(&monitors);
    assert_eq!(
        q.len(),
        1,
        "QEMUs under the pod's monitors {monitors:?}: {q:?}"
    );
    assert_eq!(
        qemus_under(&monitors[..1]),
        q,
        "the infra's monitor owns the pod's VM"
    );
    let qemu_start = std::fs::read_to_string(format!("/proc/{}/stat", q[0])).unwrap();
    // QEMU runs in the infra's state directory: its parent is the state root.
    let state_root = std::fs::read_link(format!("/proc/{}/cwd", q[0]))
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();

    // b reaches a's server on localhost: one network namespace in the guest.
    let got = wait_for("b to fetch a's page over localhost", DEADLINE, || {
        let o = p
            .cmd()
            .args([
                "exec",
                &b,
                "wget",
                "-q",
                "-O",
                "-",
                "http://127.0.0.1:8080/",
            ])
            .output()
            .ok()?;
        o.status.success().then(|| stdout(&o))
    });
    assert_eq!(got.trim(), format!("from-a-{}", vm_support::guest_kernel()));
    let ns = |c: &str, t: &str| run(&["exec", c, "readlink", &format!("/proc/self/ns/{t}")]);
    for t in ["ipc", "net", "uts", "pid"] {
        assert_eq!(ns(&a, t), ns(&b, t), "{t} namespace of a and b");
    }
    assert_ne!(
        ns(&a, "mnt"),
        ns(&b, "mnt"),
        "each has its own mount namespace"
    );
    // The shared pid namespace: b sees a's httpd.
    let ps = run(&["exec", &b, "ps", "-o", "args"]);
    assert!(ps.contains("httpd -f -p 8080"), "{ps}");

    // An exit code comes back through the container's own monitor.
    let c = format!("{pod}-c");
    run(&[
        "run",
        "-d",
        "--pod",
        &pod,
        "--name",
        &c,
        "localhost/nkvm",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(run(&["wait", &c]), "7");
    let mut ours: Vec<String> = [&infra, &a, &b, &c]
        .iter()
        .map(|n| run(&["inspect", "--format", "{{.Id}}", n.as_str()]))
        .collect();
    ours.sort();
    run(&["rm", &c]);

    // Removing a leaves b (and the VM) running.
    run(&["rm", "-f", "-t", "0", &a]);
    assert_eq!(
        run(&["inspect", "--format", "{{.State.Status}}", &b]),
        "running"
    );
    assert_eq!(run(&["exec", &b, "echo", "alive"]), "alive");
    assert_eq!(qemus_under(&monitors[..1]), q);

    // Removing the pod stops the VM and leaves nothing.
    let netns = run(&[
        "inspect",
        "--format",
        "{{.NetworkSettings.SandboxKey}}",
        &infra,
    ]);
    run(&["pod", "rm", "-f", "-t", "0", &pod]);
    if std::path::Path::new(&netns).exists() {
        let o = Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .args(["ip", "-d", "link"])
            .output()
            .unwrap();
        assert!(
            !stdout(&o).contains("nktap"),
            "tap left in {netns}: {}",
            stdout(&o)
        );
        let o = Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .args(["tc", "qdisc", "show"])
            .output()
            .unwrap();
        assert!(
            !stdout(&o).contains("ingress"),
            "qdisc left in {netns}: {}",
            stdout(&o)
        );
    }
    wait_for("the pod's QEMU to go", DEADLINE, || {
        let now = std::fs::read_to_string(format!("/proc/{}/stat", q[0])).unwrap_or_default();
        (now != qemu_start).then_some(())
    });
    // Only this pod's containers: the state root is Podman's default,
    // which the other tests of this file use at the same time.
    wait_for("the pod's processes to go", DEADLINE, || {
        ours.iter()
            .all(|id| vm_support::procs_in(&state_root.join(id)).is_empty())
            .then_some(())
    });
    let left: Vec<_> = ours
        .iter()
        .filter(|id| state_root.join(id).exists())
        .collect();
    assert!(
        left.is_empty(),
        "state left in {}: {left:?}",
        state_root.display()
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(state_root.to_str().unwrap()),
        "mounts left under {}",
        state_root.display()
    );
}
