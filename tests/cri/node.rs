//! A private Kubernetes node without a kubelet: what the CRI test drives.
//!
//! - a network namespace of its own (`ip netns add`): containerd, the CNI
//!   plugins it runs, the bridge, the pods' veths, portmap's iptables rules
//!   and the image registry all live there, so the host's network is
//!   untouched and pod addresses are test hosts inside it;
//! - containerd 1.6 with the CRI plugin, entered into that namespace with
//!   `nsenter --net` only (the host's mount namespace stays, so every mount
//!   it makes is visible to the leak checks): its own root, state, sockets
//!   and config, with the runtimes `runc`, `nk` and `nk-vm` (the runc v2
//!   shim with BinaryName = runc, nk-runtime, and an `nk-runtime-vm` link),
//!   each with its own runtime root (and any extra handler a caller names,
//!   as bench/fixtures/capture.sh names its capture wrapper);
//! - CNI from Debian's containernetworking-plugins: bridge + host-local
//!   (its own data dir) + portmap; containerd adds loopback itself;
//! - the sandbox image: a static `pause` (tests/cri/pause.c) imported with
//!   `ctr -n k8s.io images import` under the name `sandbox_image` gives;
//! - the test image (busybox-static plus the seccomp probe), served by a
//!   tiny registry (tests/cri/registry.py) on 127.0.0.1 in the namespace, so
//!   PullImage really pulls.
//!
//! Everything is removed on drop, also when a scenario panicked: pods through
//! the CRI, then containerd, shims and container processes by pid, mounts,
//! cgroups, the network namespace, CNI cache files and directories.

use crate::client::{Cri, R};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const RUNC: &str = "/usr/sbin/runc";
pub const CNI_BIN: &str = "/usr/lib/cni";
/// The pods' subnet on the bridge inside the node's network namespace.
pub const SUBNET: &str = "10.88.0.0/24";
pub const GATEWAY: &str = "10.88.0.1";
pub const PAUSE_IMAGE: &str = "localhost/nk-pause:1";
pub const IMAGE: &str = "localhost:5000/nk/bb:1";
const REGISTRY_PORT: &str = "5000";

pub struct Node {
    /// Unique suffix of every name this node uses.
    pub u: String,
    /// Short path under /tmp: sockets (108-byte limit), config, logs,
    /// pod log directories, volumes, runtime roots.
    pub work: PathBuf,
    /// containerd's root under /var/lib (overlayfs wants a real filesystem).
    pub store: PathBuf,
    pub netns: String,
    /// The top cgroup every pod's cgroup_parent is below.
    pub cgroup_top: String,
    /// The CNI network name (it keys host-local's and libcni's files).
    pub net_name: String,
    pub cri: Option<Cri>,
    containerd: Option<Child>,
    registry: Option<Child>,
}

fn run(what: &str, cmd: &mut Command) -> R<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Wait until `ok()` holds, up to `within`.
pub fn wait_until(within: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        // Polling an observable state (a file, a process) with a short gap.
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Node {
    /// Build the images, make the namespace, start the registry and
    /// containerd, import the sandbox image and pull the test image.
    pub fn start(nk: &Path, agent: &Path) -> Node {
        Node::start_with(nk, agent, &[])
    }

    /// `start`, with extra RuntimeClass handlers (name, BinaryName) beside
    /// runc, nk and nk-vm.
    pub fn start_with(nk: &Path, agent: &Path, extra: &[(&str, &Path)]) -> Node {
        for (path, pkg) in [
            ("/usr/bin/containerd", "containerd"),
            ("/usr/bin/ctr", "containerd"),
            ("/usr/bin/containerd-shim-runc-v2", "containerd"),
            (RUNC, "runc"),
            ("/usr/lib/cni/bridge", "containernetworking-plugins"),
            ("/usr/lib/cni/portmap", "containernetworking-plugins"),
            ("/usr/sbin/iptables", "iptables"),
            ("/usr/bin/nsenter", "util-linux"),
            ("/usr/sbin/ip", "iproute2"),
            ("/usr/bin/gcc", "gcc"),
            ("/usr/bin/python3", "python3"),
            ("/bin/busybox", "busybox-static"),
        ] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: scripts/test-deps.sh installs {pkg}"
            );
        }
        let u = format!(
            "{:x}{:04x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
                & 0xffff
        );
        let mut node = Node {
            work: PathBuf::from(format!("/tmp/nkc-{u}")),
            store: PathBuf::from(format!("/var/lib/nk-cri/{u}")),
            netns: format!("nkc-{u}"),
            cgroup_top: format!("nkc-{u}"),
            net_name: format!("nkc-{u}"),
            u,
            cri: None,
            containerd: None,
            registry: None,
        };
        if let Err(e) = node.setup(nk, agent, extra) {
            let log = std::fs::read_to_string(node.work.join("containerd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!(
                "CRI node setup failed: {e}\n--- last lines of containerd.log ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        node
    }

    pub fn cri(&self) -> &Cri {
        self.cri.as_ref().expect("CRI connected")
    }

    pub fn sock(&self) -> PathBuf {
        self.work.join("c.sock")
    }

    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.netns)
    }

    /// The runtime root the shim gives the handler's binary.
    pub fn runtime_root(&self, handler: &str) -> PathBuf {
        self.work.join("rt").join(handler)
    }

    /// The config.json containerd wrote for a container (the bundle the
    /// shim hands the runtime).
    pub fn bundle_config(&self, id: &str) -> R<serde_json::Value> {
        let p = self
            .work
            .join("state/io.containerd.runtime.v2.task/k8s.io")
            .join(id)
            .join("config.json");
        let text = std::fs::read(&p).map_err(|e| format!("read {}: {e}", p.display()))?;
        serde_json::from_slice(&text).map_err(|e| format!("parse {}: {e}", p.display()))
    }

    /// A command run inside the node's network namespace.
    pub fn in_netns(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns_path().display()))
            .arg("--")
            .arg(program);
        c
    }

    fn setup(&mut self, nk: &Path, agent: &Path, extra: &[(&str, &Path)]) -> R<()> {
        for d in ["img", "cni", "rt", "bin", "pods", "vol", "ipam"] {
            std::fs::create_dir_all(self.work.join(d)).map_err(|e| format!("mkdir: {e}"))?;
        }
        std::fs::create_dir_all(&self.store).map_err(|e| format!("mkdir: {e}"))?;
        self.images()?;

        run(
            "ip netns add",
            Command::new("ip").args(["netns", "add", &self.netns]),
        )?;
        run(
            "ip link set lo up",
            Command::new("ip").args(["-n", &self.netns, "link", "set", "lo", "up"]),
        )?;
        self.write_configs(nk, extra)?;

        // The registry, listening on 127.0.0.1 inside the namespace.
        let ready = self.work.join("registry.ready");
        let log =
            std::fs::File::create(self.work.join("registry.log")).map_err(|e| e.to_string())?;
        let child = self
            .in_netns("python3")
            .arg(crate::support_file("registry.py"))
            .arg(self.work.join("img/bb-layout"))
            .arg(REGISTRY_PORT)
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start registry.py: {e}"))?;
        self.registry = Some(child);
        if !wait_until(Duration::from_secs(60), || ready.exists()) {
            return Err("registry.py did not start within 60 s (see registry.log)".into());
        }

        // containerd, in the namespace; the VM-mode runtime finds the
        // guest agent through the environment the shim passes down.
        let log =
            std::fs::File::create(self.work.join("containerd.log")).map_err(|e| e.to_string())?;
        let child = self
            .in_netns("containerd")
            .arg("--config")
            .arg(self.work.join("config.toml"))
            .env("NK_VM_AGENT", agent)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start containerd: {e}"))?;
        self.containerd = Some(child);
        self.cri = Some(Cri::connect(&self.sock(), Duration::from_secs(90))?);

        run(
            "ctr -n k8s.io images import (the sandbox image)",
            Command::new("ctr")
                .arg("--address")
                .arg(self.sock())
                .args(["-n", "k8s.io", "images", "import"])
                .arg(self.work.join("img/pause.tar")),
        )?;
        let cri = self.cri();
        if cri.image_status(PAUSE_IMAGE)?.is_none() {
            return Err(format!(
                "ImageStatus does not see the imported sandbox image {PAUSE_IMAGE}"
            ));
        }
        // The kubelet's image pull: ImageStatus (absent), PullImage, ImageStatus.
        if let Some(i) = cri.image_status(IMAGE)? {
            return Err(format!("{IMAGE} present before PullImage: {i:?}"));
        }
        let image_ref = cri.pull_image(IMAGE)?;
        let img = cri
            .image_status(IMAGE)?
            .ok_or_else(|| format!("ImageStatus: {IMAGE} absent after PullImage ({image_ref})"))?;
        if img.id != image_ref || !img.repo_tags.iter().any(|t| t == IMAGE) {
            return Err(format!(
                "ImageStatus of {IMAGE} after PullImage (ref {image_ref}) disagrees: {img:?}"
            ));
        }
        Ok(())
    }

    /// The test image and the sandbox image, as OCI archives (and the test
    /// image also as an unpacked layout for the registry).
    fn images(&self) -> R<()> {
        let img = self.work.join("img");
        let bb = img.join("bb");
        run(
            "copy the busybox rootfs",
            Command::new("cp")
                .arg("-a")
                .arg(nk_tests::rootfs())
                .arg(&bb),
        )?;
        for d in ["proc", "sys", "dev", "tmp", "etc", "root", "var/tmp", "www"] {
            std::fs::create_dir_all(bb.join(d)).map_err(|e| e.to_string())?;
        }
        run(
            "chmod 1777 tmp",
            Command::new("chmod")
                .arg("1777")
                .arg(bb.join("tmp"))
                .arg(bb.join("var/tmp")),
        )?;
        run(
            "gcc -static seccomp-probe.c",
            Command::new("gcc")
                .args(["-static", "-O2", "-o"])
                .arg(bb.join("bin/seccomp-probe"))
                .arg(nk_tests::workspace().join("tests/engines/seccomp-probe.c")),
        )?;
        let mk = nk_tests::workspace().join("tests/engines/mk-image.py");
        run(
            "mk-image.py (test image)",
            Command::new("python3")
                .arg(&mk)
                .arg(&bb)
                .arg(img.join("bb.tar"))
                .arg(IMAGE),
        )?;
        std::fs::create_dir_all(img.join("bb-layout")).map_err(|e| e.to_string())?;
        run(
            "unpack the test image's layout",
            Command::new("tar")
                .arg("-C")
                .arg(img.join("bb-layout"))
                .arg("-xf")
                .arg(img.join("bb.tar")),
        )?;

        let pause = img.join("pause");
        std::fs::create_dir_all(&pause).map_err(|e| e.to_string())?;
        run(
            "gcc -static pause.c",
            Command::new("gcc")
                .args(["-static", "-O2", "-o"])
                .arg(pause.join("pause"))
                .arg(crate::support_file("pause.c")),
        )?;
        run(
            "mk-image.py (sandbox image)",
            Command::new("python3")
                .arg(&mk)
                .arg(&pause)
                .arg(img.join("pause.tar"))
                .arg(PAUSE_IMAGE)
                .arg("/pause"),
        )?;
        Ok(())
    }

    fn write_configs(&self, nk: &Path, extra: &[(&str, &Path)]) -> R<()> {
        let w = |p: PathBuf, s: String| {
            std::fs::write(&p, s).map_err(|e| format!("write {}: {e}", p.display()))
        };
        let vm_link = self.work.join("bin/nk-runtime-vm");
        std::os::unix::fs::symlink(nk, &vm_link)
            .map_err(|e| format!("symlink nk-runtime-vm: {e}"))?;
        w(
            self.work.join("cni/10-nk.conflist"),
            format!(
                r#"{{
  "cniVersion": "1.0.0",
  "name": "{net}",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "nk0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "dataDir": "{ipam}",
        "ranges": [[{{ "subnet": "{SUBNET}", "gateway": "{GATEWAY}" }}]],
        "routes": [{{ "dst": "0.0.0.0/0" }}]
      }}
    }},
    {{ "type": "portmap", "capabilities": {{ "portMappings": true }} }}
  ]
}}
"#,
                net = self.net_name,
                ipam = self.work.join("ipam").display(),
            ),
        )?;
        let runtime = |name: &str, bin: &Path| {
            format!(
                r#"    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}.options]
        BinaryName = "{bin}"
        Root = "{root}"
"#,
                bin = bin.display(),
                root = self.runtime_root(name).display()
            )
        };
        w(
            self.work.join("config.toml"),
            format!(
                r#"version = 2
root = "{store}/root"
state = "{work}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  # Sandboxes get oom_score_adj -998 and containers the kubelet's value;
  # lowering it needs CAP_SYS_RESOURCE, which this host's bounding set
  # lacks. Restricted: never below containerd's own (as in rootless setups).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
{runc}{nk}{nkvm}{extra}  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{work}/cni"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."localhost:{REGISTRY_PORT}"]
    endpoint = ["http://127.0.0.1:{REGISTRY_PORT}"]
"#,
                store = self.store.display(),
                work = self.work.display(),
                sock = self.sock().display(),
                runc = runtime("runc", Path::new(RUNC)),
                nk = runtime("nk", nk),
                nkvm = runtime("nk-vm", &vm_link),
                extra = extra
                    .iter()
                    .map(|(name, bin)| runtime(name, bin))
                    .collect::<String>(),
            ),
        )
    }

    /// What this node's pods may have left behind, each as a line: pods and
    /// containers the CRI still lists, shim processes, container processes,
    /// mounts, container cgroups, pod network namespaces, runtime state,
    /// IPAM leases, libcni cache files, veths. Empty = clean.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let cri = self.cri();
        match cri.list_pods() {
            Ok(p) if !p.is_empty() => left.push(format!("{} pods listed", p.len())),
            Err(e) => left.push(e),
            _ => {}
        }
        match cri.list_containers(None) {
            Ok(c) if !c.is_empty() => left.push(format!("{} containers listed", c.len())),
            Err(e) => left.push(e),
            _ => {}
        }
        for (pid, cmd) in self.our_processes() {
            left.push(format!("process {pid}: {cmd}"));
        }
        for m in self.our_mounts() {
            left.push(format!("mount {m}"));
        }
        for c in self.container_cgroups() {
            left.push(format!("cgroup {c}"));
        }
        let netns = self.work.join("state/netns");
        for e in list(&netns) {
            left.push(format!("pod netns {}", netns.join(e).display()));
        }
        for h in ["runc", "nk", "nk-vm"] {
            // The shim gives the runtime <Root>/<containerd namespace>.
            let root = self.runtime_root(h).join("k8s.io");
            for e in list(&root) {
                left.push(format!("runtime state {}", root.join(e).display()));
            }
        }
        let leases = self.work.join("ipam").join(&self.net_name);
        for e in list(&leases) {
            if e != "lock" && !e.starts_with("last_reserved_ip") {
                left.push(format!("IPAM lease {e}"));
            }
        }
        for e in list(Path::new("/var/lib/cni/results")) {
            if e.starts_with(&format!("{}-", self.net_name)) {
                left.push(format!("libcni cache /var/lib/cni/results/{e}"));
            }
        }
        if let Ok(links) = run(
            "ip link",
            Command::new("ip").args(["-n", &self.netns, "-o", "link", "show", "type", "veth"]),
        ) {
            for l in links.lines().filter(|l| !l.trim().is_empty()) {
                left.push(format!("veth {}", l.split(':').nth(1).unwrap_or(l).trim()));
            }
        }
        left
    }

    /// Processes other than containerd and the registry whose command line
    /// names this node's socket or work directory (shims, runtimes,
    /// monitors, QEMU), plus every process in one of its cgroups.
    fn our_processes(&self) -> Vec<(i32, String)> {
        let keep: Vec<u32> = [&self.containerd, &self.registry]
            .iter()
            .filter_map(|c| c.as_ref().map(|c| c.id()))
            .collect();
        let work = self.work.display().to_string();
        let mut found = Vec::new();
        for e in list(Path::new("/proc")) {
            let Ok(pid) = e.parse::<i32>() else { continue };
            if keep.contains(&(pid as u32)) {
                continue;
            }
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let in_cg = cg.lines().any(|l| {
                l.split(':')
                    .nth(2)
                    .is_some_and(|p| p.starts_with(&format!("/{}/", self.cgroup_top)))
            });
            if cmd.contains(&work) || in_cg {
                found.push((pid, cmd.trim().to_string()));
            }
        }
        found
    }

    fn our_mounts(&self) -> Vec<String> {
        let work = format!("{}/", self.work.display());
        let store = format!("{}/", self.store.display());
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&work) || m.starts_with(&store))
            .map(String::from)
            .collect()
    }

    /// Cgroup directories of containers: two levels below the top (the top
    /// holds one directory per pod's cgroup_parent, which the kubelet, not
    /// the runtime, owns; the runtimes make the levels below it).
    fn container_cgroups(&self) -> Vec<String> {
        let mut found = Vec::new();
        for ctrl in list(Path::new("/sys/fs/cgroup")) {
            let top = Path::new("/sys/fs/cgroup")
                .join(ctrl)
                .join(&self.cgroup_top);
            for pod in list(&top) {
                let pd = top.join(&pod);
                if !pd.is_dir() {
                    continue;
                }
                for c in list(&pd) {
                    if pd.join(&c).is_dir() {
                        found.push(pd.join(c).display().to_string());
                    }
                }
            }
        }
        found
    }

    fn teardown(&mut self) {
        if let Some(cri) = &self.cri {
            if self
                .containerd
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_none())
            {
                for p in cri.list_pods().unwrap_or_default() {
                    let _ = cri.stop_pod(&p.id);
                    let _ = cri.remove_pod(&p.id);
                }
            }
        }
        stop_child(self.containerd.take());
        // Whatever is left (a shim of a pod that failed to go, a container
        // process, a VM monitor or QEMU): killed by pid, then reaped by init.
        for _ in 0..3 {
            let procs = self.our_processes();
            if procs.is_empty() {
                break;
            }
            for (pid, _) in procs {
                // SAFETY: kill has no memory preconditions; pid is one we found
                // in this node's cgroups or with its paths on its command line.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = wait_until(Duration::from_secs(10), || self.our_processes().is_empty());
        }
        stop_child(self.registry.take());
        self.cri = None;
        let mut mounts = self.our_mounts();
        mounts.sort();
        for m in mounts.iter().rev() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        for ctrl in list(Path::new("/sys/fs/cgroup")) {
            remove_cgroup_tree(
                &Path::new("/sys/fs/cgroup")
                    .join(ctrl)
                    .join(&self.cgroup_top),
            );
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .stderr(Stdio::null())
            .status();
        for e in list(Path::new("/var/lib/cni/results")) {
            if e.starts_with(&format!("{}-", self.net_name)) {
                let _ = std::fs::remove_file(Path::new("/var/lib/cni/results").join(e));
            }
        }
        let _ = std::fs::remove_dir_all(&self.work);
        let _ = std::fs::remove_dir_all(&self.store);
        let _ = std::fs::remove_dir(self.store.parent().unwrap());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// SIGTERM, then SIGKILL after 20 s; only the child we started.
fn stop_child(child: Option<Child>) {
    let Some(mut c) = child else { return };
    if c.try_wait().ok().flatten().is_none() {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        if !wait_until(Duration::from_secs(20), || {
            c.try_wait().ok().flatten().is_some()
        }) {
            let _ = c.kill();
        }
    }
    let _ = c.wait();
}

fn remove_cgroup_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    for e in list(dir) {
        let p = dir.join(e);
        if p.is_dir() {
            remove_cgroup_tree(&p);
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The entry names of a directory (none if it does not exist).
pub fn list(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
