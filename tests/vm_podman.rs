//! Podman runs containers in VMs: once through the `nk-runtime-vm` link
//! (engines pick the runtime by path), once through the
//! `org.nano-sandbox.mode=vm` annotation on the plain binary. Podman runs
//! privately (its own storage, runroot and containers.conf in a temp dir),
//! as ../shared/engines/podman-check.sh does; `runtime_supports_json` must
//! name the runtime's basename, or podman passes no --log/--log-format.

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
}

impl Podman {
    fn new(runtime: &Path) -> Podman {
        let dir = TempDir::new("nk-podman-vm");
        let name = runtime.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::write(
            dir.path().join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 runtime_supports_json = [\"crun\", \"runc\", \"{name}\"]\n"
            ),
        )
        .unwrap();
        let p = Podman {
            dir,
            runtime: runtime.to_path_buf(),
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
        let _ = self.cmd().args(["rm", "-a", "-f", "-t", "0"]).output();
        let _ = self.cmd().args(["system", "reset", "-f"]).output();
        // Overlay mounts of podman's storage must go before the directory does.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path().join("storage/overlay"))
            .output();
    }
}

fn guest_kernel() -> String {
    let mut v: Vec<String> = std::fs::read_dir("/boot")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("vmlinuz-")
                .map(String::from)
        })
        .collect();
    v.sort();
    v.pop().unwrap()
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

    // Through the link name.
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
            "uname -r; cat /sys/fs/cgroup/memory.max; exit 3",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "podman run: {}", stderr(&o));
    assert_eq!(stdout(&o), format!("{}\n{}\n", guest_kernel(), 64 << 20));
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
    assert_eq!(stdout(&o).trim(), guest_kernel());
}

/// GET / from `addr`, or None while nothing answers there.
fn http_get(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let a = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(s, "GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.contains(" 200 ").then_some(out)
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
    let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let token = unique_id("host-says");
    let body = format!("{token}\n");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let links = TempDir::new("nk-vmlink");
    let link = links.path().join("nk-runtime-vm");
    std::os::unix::fs::symlink(runtime(), &link).unwrap();
    for (rt, kernel) in [
        (std::path::PathBuf::from(runc()), None),
        (link, Some(guest_kernel())),
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
            http_get(&format!("{gw}:{hostport}"))
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
