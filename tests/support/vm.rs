//! Helpers for the tests that boot guests (`nk_tests::vm`): where the static binaries are,
//! and a share directory holding what the guest runs.

use crate::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// cargo's static target dir (where `make build` and `make agent` put the
/// static binaries).
fn static_dir() -> PathBuf {
    workspace().join("target/x86_64-unknown-linux-gnu/release")
}

/// A static binary made by scripts/build-agent.sh (`make agent`).
fn static_bin(env: &str, name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    let p = static_dir().join(name);
    assert!(
        p.is_file(),
        "{} is not built: run `make agent` (scripts/build-agent.sh) or set {env}",
        p.display()
    );
    p
}

/// The static guest agent.
pub fn agent() -> PathBuf {
    static_bin("NK_VM_AGENT", "nk-agent")
}

/// A static nk-runtime that runs inside the guest.
pub fn static_runtime() -> PathBuf {
    static_bin("NK_RUNTIME_STATIC", "nk-runtime")
}

/// Copy a directory tree (symlinks as symlinks).
pub fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// Boot a guest with `share` visible at /run/nk/share.
pub fn boot(share: &Path) -> ::vm::harness::Guest {
    require_root();
    let o = ::vm::harness::BootOptions {
        share: Some(share.to_path_buf()),
        agent: Some(agent()),
        ready_timeout: Duration::from_secs(90),
        ..Default::default()
    };
    match ::vm::harness::Guest::boot(&o) {
        Ok(g) => {
            eprintln!(
                "guest ready after {} ms ({}; guest uptime {} ms; kernel {})",
                g.boot_time.as_millis(),
                g.accel.as_str(),
                g.ready.uptime_ms,
                g.ready.kernel
            );
            g
        }
        Err(e) => panic!("boot the test guest: {e}"),
    }
}

/// Parse `KEY=value` lines.
pub fn kv(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// An nk-runtime command on `root` whose guests run the static agent.
pub fn cmd(root: &Root) -> std::process::Command {
    let mut c = root.cmd();
    c.env("NK_VM_AGENT", agent());
    c
}

/// Processes whose working directory is inside `dir` (QEMU and the
/// monitor's helpers run in the container's state directory).
pub fn procs_in(dir: &Path) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(e.path().join("cwd")) {
            if cwd.starts_with(dir) {
                v.push(pid);
            }
        }
    }
    v
}

/// No container is left in `root`, and (within DEADLINE) no process runs
/// in its state directories.
pub fn assert_clean(root: &Root) {
    assert!(root.ids().is_empty(), "containers left: {:?}", root.ids());
    wait_for("the VM's processes to go", DEADLINE, || {
        procs_in(root.dir.path()).is_empty().then_some(())
    });
}

/// Is virtio-fs usable here (virtiofsd installed, the module in the guest kernel)?
pub fn virtiofs_here() -> bool {
    matches!(
        ::vm::backend::share_fs(&Default::default()).map(|c| c.fs),
        Ok(::vm::virtiofs::ShareFs::VirtioFs { .. })
    )
}

/// Pids of virtiofsd, parent and sandboxed server, named by the monitor's log.
pub fn virtiofsd_pids(state: &Path) -> Vec<i32> {
    let log = std::fs::read_to_string(state.join(::vm::monitor::LOG)).unwrap_or_default();
    let Some(pid) = log.lines().find_map(|l| {
        l.split_once("virtiofsd pid ")?
            .1
            .split(' ')
            .next()?
            .parse::<i32>()
            .ok()
    }) else {
        return vec![];
    };
    let mut v = vec![pid];
    let kids =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    v.extend(
        kids.split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok()),
    );
    v
}

/// The release of the newest guest kernel in /boot (the one VM mode boots).
pub fn guest_kernel() -> String {
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

/// GET / from `addr` (ip:port), or None while nothing answers there with 200.
pub fn http_get(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let a = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.contains(" 200 ").then_some(out)
}

/// Serve one HTTP answer, `body`, to every connection on `l` (until the
/// test process ends).
pub fn serve_http(l: std::net::TcpListener, body: String) {
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
}

/// A /24 of 10.0.0.0/8 that no route of the host's uses yet, as
/// "10.A.B" (for a test's own bridge: concurrent tests pick others).
pub fn free_subnet() -> String {
    let routes = std::process::Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
    for i in 0..500u64 {
        let x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(i * 1442695040888963407);
        // 10.150.0.0 to 10.199.255.0: away from Podman's 10.88 and 10.89
        // and from tests/vm_net.rs's 10.200 and up.
        let net = format!("10.{}.{}", 150 + (x >> 33) % 50, (x >> 17) % 256);
        if !routes.contains(&format!("{net}.")) {
            return net;
        }
    }
    panic!("no free 10.150-199.x.0/24 for a test bridge: {routes}");
}
