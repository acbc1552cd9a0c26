//! The VM-mode monitor: one host process per container. Its pid is the
//! container pid that engines see; it lives in the container's cgroup, owns
//! QEMU (which dies with it), holds the agent channel, forwards stdio and
//! signals, answers the runtime's other verbs on `monitor.sock` in the state
//! directory, and exits with the container's exit code.
//!
//! The bundle reaches the guest over virtio-9p. The monitor builds the shared
//! directory in a private mount namespace (so nothing shows on the host):
//! the rootfs bound read-only, plus every bind-mount source of the config.
//! The agent puts an overlay with a tmpfs upper layer on the rootfs, so a
//! writable rootfs never changes host files.

use crate::channel::{AgentConn, StdioPort};
use crate::error::{Error, Result};
use crate::qemu::{self, Accel, Vm, VmSpec};
use sandbox::process::sync::Channel;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vm_protocol::{GuestMsg, Reply, Request, INIT_STREAM};

/// Files in the container's state directory.
pub const SOCKET: &str = "monitor.sock";
pub const CONFIG: &str = "monitor.json";
/// Present while the container is paused (the host cgroup is not frozen:
/// the guest's is); the library derives the status from it.
pub use sandbox::state::PAUSED_MARK;
/// Why the VM ended early, for `run` and the log.
pub const EXIT_REASON: &str = "vm-exit";
/// The monitor's log in the state directory (`--log` of `vm-monitor`).
pub const LOG: &str = "monitor.log";
/// How long the agent gets to power the VM off before QEMU is killed.
const POWER_OFF_GRACE_MS: u64 = 300;
/// The monitor's exit code when the VM itself failed.
pub const VM_FAILED: i32 = 255;

/// Where a member's files go in the pod VM's share: `pod/<id>/`.
pub const POD_SHARE_DIR: &str = "pod";

/// The pod VM a config joins, and its namespaces as the guest names them
/// (found by crate::pod; here because the monitor's config carries it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodJoin {
    /// The pod's first container, whose monitor owns the VM.
    pub id: String,
    pub dir: PathBuf,
    pub qemu_pid: i32,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// The guest kernel's release.
    pub kernel: String,
    /// `linux.namespaces` for the guest: host paths of the pod's
    /// namespaces replaced by the guest's `/proc/<pid>/ns/<type>`.
    pub namespaces: Vec<oci_spec::runtime::LinuxNamespace>,
    /// One line per joined namespace, for `-E` and the log.
    pub joined: Vec<String>,
}

/// Everything the monitor needs, written by `create` to monitor.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorConfig {
    pub id: String,
    pub state_dir: PathBuf,
    pub bundle: PathBuf,
    /// The bundle's config.json as given.
    pub config: oci_spec::runtime::Spec,
    /// The rootfs on the host (absolute).
    pub rootfs: PathBuf,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub vmlinux: PathBuf,
    pub initramfs: PathBuf,
    pub accel: Accel,
    pub systemd_cgroup: bool,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub log_level: String,
    /// Extra kernel command line words (NK_VM_APPEND).
    pub append: Vec<String>,
    pub ready_timeout_secs: u64,
    /// A terminal for the container's stdio (a host pty slave, passed as
    /// this descriptor number) instead of the monitor's own 0, 1 and 2.
    pub tty_fd: Option<RawFd>,
    /// `--preserve-fds`: which way each descriptor carries data (the
    /// descriptors come with `create`'s go-ahead).
    #[serde(default)]
    pub preserve_fds: Vec<vm_protocol::Carry>,
    /// The share's filesystem, chosen by `create`.
    #[serde(default = "nine_p")]
    pub share_fs: crate::virtiofs::ShareFs,
    /// Set when the container runs in a pod's VM (crate::pod): this
    /// monitor then boots nothing and hands the container to that VM's.
    #[serde(default)]
    pub pod: Option<PodJoin>,
    /// The template snapshot to start from (crate::template): the VM is
    /// restored from it (or from the template of its shape with as many
    /// network cards as it gets), over 9p, unless that fails; then it
    /// boots cold with `share_fs`.
    #[serde(default)]
    pub template: Option<crate::template::Template>,
    /// Why the VM boots cold when there is no template.
    #[serde(default)]
    pub cold_why: String,
    /// The guest kernel's release (names a template's directory).
    #[serde(default)]
    pub kernel: String,
    /// Set by `restore`: the agent restores the container from this
    /// checkpoint instead of creating it.
    #[serde(default)]
    pub restore: Option<RestoreFrom>,
}

/// A checkpoint to restore the container from (`restore` of a VM image):
/// both directories are in the share from the start, the kit read-only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreFrom {
    /// The image directory (`--image-path`).
    pub images: PathBuf,
    /// The CRIU kit (crate::criu_kit).
    pub kit: PathBuf,
    pub options: vm_protocol::CriuOptions,
}

/// Where the CRIU kit and a checkpoint's image directory are in the share.
pub const KIT_SHARE_DIR: &str = "criu-kit";
pub const IMAGES_SHARE_DIR: &str = "criu-images";

fn nine_p() -> crate::virtiofs::ShareFs {
    crate::virtiofs::ShareFs::NineP
}

/// What the monitor tells `create` once the container exists (or not).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Report {
    Created {
        guest_pid: i32,
        qemu_pid: i32,
        boot_ms: u64,
        /// The network the guest got, in one line (for `-E`).
        #[serde(default)]
        net: String,
        /// How the VM started (restored from a template, or a cold boot
        /// and why), in one line (for `-E`).
        #[serde(default)]
        boot: String,
    },
    /// The monitor is in the container's network namespace on the host
    /// (the engine's, or a new one): `create` runs the prestart and
    /// createRuntime hooks now, so that what they put there (Docker's
    /// veth) is carried into the VM, and answers `boot` (or closes the
    /// channel when a hook failed).
    Netns,
    Failed(String),
}

/// A request from another nk-runtime process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClientReq {
    Start,
    Kill {
        signal: i32,
        all: bool,
    },
    /// Run a process; its stdin, stdout and stderr come attached.
    Exec {
        process: Box<oci_spec::runtime::Process>,
        /// The connection stands for the process (a detached exec's proxy,
        /// whose pid the engine holds): if it goes away before the process
        /// ends, the process is killed, as the engine's SIGKILL of that pid
        /// would kill a container-mode exec.
        #[serde(default)]
        bound: bool,
    },
    Ps,
    Pause,
    Resume,
    Stats,
    Update {
        resources: Box<oci_spec::runtime::LinuxResources>,
    },
    /// Window size of this connection's exec terminal.
    Resize {
        rows: u16,
        cols: u16,
    },
    /// A signal for this connection's exec'd process.
    Signal {
        signal: i32,
    },
    Shutdown,
    /// Checkpoint the container with CRIU in the guest. Its descriptors:
    /// detached copies (open_tree) of the image directory and of the CRIU
    /// kit, which the monitor attaches in the share for the request.
    Checkpoint {
        leave_running: bool,
        options: vm_protocol::CriuOptions,
    },
    /// A pod's later container, to create in this monitor's VM
    /// (crate::pod). Its descriptors: stdin, stdout and stderr (the pty
    /// slave three times), the listening socket of its monitor.sock, then
    /// one detached mount per `items` entry.
    Join(Box<JoinReq>),
}

/// A pod member's container, as its monitor hands it to the pod monitor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinReq {
    pub id: String,
    pub state_dir: PathBuf,
    /// The config for the guest (mount sources and namespaces rewritten).
    pub config: Box<oci_spec::runtime::Spec>,
    /// Where each detached mount goes in the share.
    pub items: Vec<ShareItem>,
    pub tty: bool,
    pub systemd_cgroup: bool,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub log_level: String,
}

/// One mount of the share: a host path at a path relative to the share
/// (`rootfs`, `m3`; a pod member's under `pod/<id>/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareItem {
    pub src: PathBuf,
    pub at: String,
    pub recursive: bool,
    pub dir: bool,
    pub read_only: bool,
}

/// An answer to a client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClientMsg {
    Ok(Reply),
    Err(String),
    /// The exec'd process ended with this shell-style status.
    Exited(i32),
}

// ---------------------------------------------------------------- client

/// A connection to a container's monitor.
pub struct Client {
    ch: Channel,
}

impl Client {
    /// Connect to the monitor of the container whose state is in `dir`.
    pub fn connect(dir: &Path) -> Result<Client> {
        use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
        let d = std::fs::File::open(dir).map_err(|e| Error::io("open", dir, e))?;
        // Through /proc/self/fd the path stays short whatever --root is.
        let path = format!("/proc/self/fd/{}/{SOCKET}", d.as_raw_fd());
        let s = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| Error::sys("socket", e))?;
        let addr = UnixAddr::new(path.as_str()).map_err(|e| Error::sys("socket address", e))?;
        connect(s.as_raw_fd(), &addr).map_err(|e| {
            Error::Msg(format!(
                "cannot reach the VM monitor at {}: {e} (is the container still running?)",
                dir.join(SOCKET).display()
            ))
        })?;
        // SAFETY: a connected SEQPACKET socket that we own.
        let ch = unsafe { Channel::from_raw(std::os::fd::IntoRawFd::into_raw_fd(s)) };
        Ok(Client { ch })
    }

    /// Send a request (with descriptors).
    pub fn send(&self, r: &ClientReq, fds: &[RawFd]) -> Result<()> {
        self.ch
            .send_fds(r, fds)
            .map_err(|e| Error::Msg(format!("VM monitor: {e}")))
    }

    /// The next message; an error when the monitor went away.
    pub fn recv(&self) -> Result<ClientMsg> {
        match self.ch.recv::<ClientMsg>() {
            Ok(Some((m, _))) => Ok(m),
            Ok(None) => Err(Error::Msg(
                "the VM monitor closed the connection (the container stopped)".into(),
            )),
            Err(e) => Err(Error::Msg(format!("VM monitor: {e}"))),
        }
    }

    /// Send a request and wait for its answer.
    pub fn call(&self, r: &ClientReq) -> Result<Reply> {
        self.send(r, &[])?;
        match self.recv()? {
            ClientMsg::Ok(rep) => Ok(rep),
            ClientMsg::Err(e) => Err(Error::Remote(e)),
            ClientMsg::Exited(s) => Err(Error::Msg(format!("unexpected exit status {s}"))),
        }
    }

    /// The descriptor, to poll on.
    pub fn fd(&self) -> RawFd {
        self.ch.as_fd().as_raw_fd()
    }
}

// ---------------------------------------------------------------- share

fn mount(
    src: Option<&Path>,
    dst: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: &str,
) -> Result<()> {
    let flags = nix::mount::MsFlags::from_bits_retain(flags);
    let data = (!data.is_empty()).then_some(data);
    let r = nix::mount::mount(src, dst, fstype, flags, data);
    if let Err(e) = r {
        return Err(Error::sys(
            format!(
                "mount {} on {}",
                src.map(|p| p.display().to_string()).unwrap_or_default(),
                dst.display()
            ),
            e,
        ));
    }
    Ok(())
}

/// Make the bind mount at `dst` read-only (a bind remount: the flag is
/// the mount's, not the filesystem's).
fn remount_read_only(dst: &Path) -> Result<()> {
    mount(
        None,
        dst,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
        "",
    )
}

fn has_option(m: &oci_spec::runtime::Mount, any: &[&str]) -> bool {
    m.options()
        .iter()
        .flatten()
        .any(|x| any.contains(&x.as_str()))
}

/// The mounts the share needs for a config, and the config the guest
/// sees: mount sources point into the share (under `prefix`), host-side
/// hooks, LSM labels and host namespace paths are gone (a pod member's
/// namespaces are its pod's, mapped to the guest's by crate::pod).
pub fn guest_view(
    cfg: &MonitorConfig,
    prefix: &str,
) -> Result<(Vec<ShareItem>, oci_spec::runtime::Spec)> {
    let mut items = vec![ShareItem {
        src: cfg.rootfs.clone(),
        at: format!("{prefix}rootfs"),
        recursive: true,
        dir: true,
        // The guest only ever reads the rootfs: its writes go to the overlay.
        read_only: true,
    }];
    let mut g = cfg.config.clone();
    if let Some(ms) = g.mounts_mut() {
        for (i, m) in ms.iter_mut().enumerate() {
            if !sandbox::spec::is_bind(m) {
                continue;
            }
            let Some(src) = m.source().clone() else {
                continue;
            };
            let src = if src.is_absolute() {
                src
            } else {
                cfg.bundle.join(src)
            };
            if ["/dev", "/proc", "/sys"].iter().any(|p| src.starts_with(p)) {
                // The guest's own devices and kernel views stand in for the host's.
                continue;
            }
            let Ok(meta) = std::fs::metadata(&src) else {
                return Err(Error::Msg(format!(
                    "mounts[{i}].source {}: does not exist on the host",
                    src.display()
                )));
            };
            items.push(ShareItem {
                src,
                at: format!("{prefix}m{i}"),
                recursive: has_option(m, &["rbind"]),
                dir: meta.is_dir(),
                read_only: false,
            });
            m.set_source(Some(
                format!("{}/{prefix}m{i}", vm_protocol::SHARE_MOUNT).into(),
            ));
        }
    }
    // Host-side things the guest cannot use: the runtime's hooks run on the
    // host (only createContainer and startContainer, which belong inside the
    // container, go to the guest), host namespace paths do not exist in the
    // guest, LSM labels are not loaded there.
    let inside = g.hooks().as_ref().and_then(|h| {
        let mut k = oci_spec::runtime::Hooks::default();
        k.set_create_container(h.create_container().clone());
        k.set_start_container(h.start_container().clone());
        (k.create_container().is_some() || k.start_container().is_some()).then_some(k)
    });
    g.set_hooks(inside);
    if let Some(l) = g.linux_mut() {
        if let Some(pod) = &cfg.pod {
            l.set_namespaces(Some(pod.namespaces.clone()));
        } else {
            for ns in l.namespaces_mut().iter_mut().flatten() {
                if let Some(p) = ns.path().clone() {
                    ns.set_path(None);
                    if ns.typ() == oci_spec::runtime::LinuxNamespaceType::Network {
                        // The engine's interfaces follow into the guest's new
                        // namespace (crate::net, CreateContainer::network).
                        continue;
                    }
                    sandbox::logging::warn(|| {
                        format!(
                            "VM mode: the {} namespace path {} is a host namespace; the guest creates a new one",
                            sandbox::linux::namespaces::name(ns.typ()),
                            p.display()
                        )
                    });
                }
            }
        }
        l.set_mount_label(None);
    }
    if let Some(p) = g.process_mut() {
        p.set_apparmor_profile(None);
        p.set_selinux_label(None);
    }
    Ok((items, g))
}

/// Create a share item's mount point (a directory or an empty file).
fn mount_point(share: &Path, it: &ShareItem) -> Result<PathBuf> {
    let dst = share.join(&it.at);
    if let Some(d) = dst.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io("create", d, e))?;
    }
    if it.dir {
        std::fs::create_dir(&dst).map_err(|e| Error::io("create", &dst, e))?;
    } else {
        std::fs::File::create(&dst).map_err(|e| Error::io("create", &dst, e))?;
    }
    Ok(dst)
}

/// Build the shared directory (in a private mount namespace) and the config
/// the guest sees. Returns (share dir, guest config). The share is a
/// shared mount there, so what a pod's later container adds under it
/// propagates into virtiofsd's namespace (a slave copy) too.
pub fn prepare_share(cfg: &MonitorConfig) -> Result<(PathBuf, oci_spec::runtime::Spec)> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| Error::sys("unshare(CLONE_NEWNS) for the 9p share", e))?;
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        "",
    )?;
    let share = cfg.state_dir.join("share");
    std::fs::create_dir_all(&share).map_err(|e| Error::io("create", &share, e))?;
    mount(
        Some(Path::new("nk-share")),
        &share,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=0755",
    )?;
    mount(None, &share, None, libc::MS_SHARED, "")?;
    let (mut items, g) = guest_view(cfg, "")?;
    if let Some(r) = &cfg.restore {
        items.push(ShareItem {
            src: r.images.clone(),
            at: IMAGES_SHARE_DIR.into(),
            recursive: false,
            dir: true,
            read_only: false,
        });
        items.push(ShareItem {
            src: r.kit.clone(),
            at: KIT_SHARE_DIR.into(),
            recursive: false,
            dir: true,
            read_only: true,
        });
    }
    for it in &items {
        let dst = mount_point(&share, it)?;
        mount(
            Some(&it.src),
            &dst,
            None,
            libc::MS_BIND | if it.recursive { libc::MS_REC } else { 0 },
            "",
        )?;
        if it.read_only {
            remount_read_only(&dst)?;
        }
    }
    Ok((share, g))
}

// ---------------------------------------------------------------- monitor

/// The host side of one stream (init or exec).
struct HostStream {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    /// Preserved descriptors read on the host for the container (fd number, descriptor).
    feeds: Vec<(u8, OwnedFd)>,
    /// Preserved descriptors the container's bytes are written to.
    sinks: Vec<(u8, OwnedFd)>,
    tty: bool,
    /// The exec client waiting for the exit status.
    client: Option<u64>,
    /// Kill the process when that client goes away (ClientReq::Exec).
    bound: bool,
    out_eof: bool,
    err_eof: bool,
    exited: Option<(i32, Instant)>,
}

enum Pending {
    Plain(u64),
    ExecStart(u64, u32),
    /// The client, pausing or resuming, and the state directory for the mark.
    Pause(u64, bool, PathBuf),
    /// A pod member's create (its join client, its id).
    Join(u64, String),
    /// A checkpoint (its client), and its image directory's mount in the share.
    Checkpoint(u64, PathBuf),
    /// Nobody waits for the answer.
    Ignore,
}

/// A client connection and what it addresses.
struct Conn {
    ch: Channel,
    /// The stream of the process it runs (an exec, or a member's init).
    stream: Option<u32>,
    /// The container its requests address: ours, or a pod member's.
    target: String,
}

/// A pod's later container, running in this monitor's VM (crate::pod).
struct Member {
    state_dir: PathBuf,
    stream: u32,
    /// Its monitor.sock: connections accepted there address it.
    listener: OwnedFd,
    /// Its mounts in the share, taken away when it ends.
    mounts: Vec<PathBuf>,
}

struct Monitor {
    cfg: MonitorConfig,
    vm: Vm,
    conn: AgentConn,
    stdio: StdioPort,
    streams: HashMap<u32, HostStream>,
    clients: HashMap<u64, Conn>,
    next_client: u64,
    next_stream: u32,
    pending: HashMap<u64, Pending>,
    /// The share directory (in this process's mount namespace).
    share: PathBuf,
    /// A pod's later containers in this VM, by id.
    members: HashMap<String, Member>,
    /// virtiofsd, when the share is virtio-fs (killed when the monitor ends).
    _fs: Option<crate::virtiofs::Daemon>,
    /// Docker's DNS, relayed for the guest (crate::dns).
    dns: Option<crate::dns::Relay>,
    /// A clone of a template: nothing in it outlives it (its memory is a
    /// private copy, its share 9p without a cache), so it is stopped at
    /// once rather than powered off.
    restored: bool,
    /// The CRIU kit is attached in the share (at [`KIT_SHARE_DIR`]).
    kit_mounted: bool,
}

fn dup(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: duplicate a descriptor we hold, close-on-exec.
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    // SAFETY: a new descriptor that we own.
    (n >= 0).then(|| unsafe { OwnedFd::from_raw_fd(n) })
}

pub(crate) fn log_line(cfg: &MonitorConfig, msg: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(cfg.state_dir.join("monitor.log"))
    {
        let _ = writeln!(f, "{} {msg}", sandbox::time::now_rfc3339_nanos());
    }
}

pub(crate) fn signalfd() -> Result<OwnedFd> {
    // SAFETY: build the set of forwarded signals, block it, and read it from a signalfd.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for s in [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGTRAP,
        ] {
            libc::sigdelset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(Error::sys("signalfd", nix::errno::Errno::last()));
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

pub(crate) fn listen(dir: &Path) -> Result<OwnedFd> {
    use nix::sys::socket::{
        bind, listen as nlisten, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
    };
    let s = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| Error::sys("socket", e))?;
    let d = std::fs::File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    let path = format!("/proc/self/fd/{}/{SOCKET}", d.as_raw_fd());
    let _ = std::fs::remove_file(dir.join(SOCKET));
    let addr = UnixAddr::new(path.as_str()).map_err(|e| Error::sys("socket address", e))?;
    bind(s.as_raw_fd(), &addr)
        .map_err(|e| Error::sys(format!("bind {}", dir.join(SOCKET).display()), e))?;
    nlisten(&s, Backlog::new(16).expect("valid backlog")).map_err(|e| Error::sys("listen", e))?;
    Ok(s)
}

/// Boot the VM and create the container. On success the monitor owns the
/// VM. Returns the monitor, the agent's reply, the boot time and the
/// network summary.
fn start_vm(
    cfg: &MonitorConfig,
    preserved: Vec<OwnedFd>,
    netns: &Path,
) -> Result<(Monitor, Reply, u64, String, String)> {
    if preserved.len() != cfg.preserve_fds.len() {
        return Err(Error::Msg(format!(
            "--preserve-fds: {} descriptors expected from create, {} came",
            cfg.preserve_fds.len(),
            preserved.len()
        )));
    }
    // The network namespace the monitor entered (QEMU runs there too):
    // each interface gets a tap; the taps' descriptors live until QEMU has them.
    let mut attached = crate::net::attach(netns, &cfg.state_dir)?;
    attached.network.dns_relay =
        !attached.nics.is_empty() && crate::dns::wanted(&cfg.config, &cfg.bundle);
    let net_summary = attached.summary(netns);
    log_line(cfg, &format!("network {net_summary}"));
    let (share, guest_config) = prepare_share(cfg)?;
    let share_dir = share.clone();
    let taps: Vec<qemu::NicSpec> = attached
        .nics
        .iter()
        .map(|n| qemu::NicSpec {
            tap_fd: n.tap.as_raw_fd(),
            mac: n.mac.clone(),
        })
        .collect();
    let Booted {
        vm,
        fs,
        ms: boot_ms,
        line: boot_line,
        restored,
    } = boot(cfg, &share, taps)?;
    log_line(cfg, &boot_line);
    let conn = AgentConn::new(
        vm.control
            .try_clone()
            .map_err(|e| Error::io("dup", "control port", e))?,
    );
    let stdio = StdioPort::new(
        vm.stdio
            .try_clone()
            .map_err(|e| Error::io("dup", "stdio port", e))?,
    );
    let mut m = Monitor {
        cfg: cfg.clone(),
        vm,
        conn,
        stdio,
        streams: HashMap::new(),
        clients: HashMap::new(),
        next_client: 1,
        next_stream: INIT_STREAM + 1,
        pending: HashMap::new(),
        share: share_dir,
        members: HashMap::new(),
        restored,
        kit_mounted: false,
        _fs: fs,
        dns: attached.network.dns_relay.then(crate::dns::Relay::default),
    };
    let create = vm_protocol::CreateContainer {
        id: cfg.id.clone(),
        stream: INIT_STREAM,
        config: Box::new(guest_config),
        rootfs: "rootfs".into(),
        systemd_cgroup: cfg.systemd_cgroup,
        no_pivot: cfg.no_pivot,
        no_new_keyring: cfg.no_new_keyring,
        log_level: cfg.log_level.clone(),
        preserve_fds: cfg.preserve_fds.clone(),
        network: guest_network(&attached, restored),
    };
    let created = match &cfg.restore {
        None => m.call(Request::Create(create), Duration::from_secs(120))?,
        Some(r) => {
            m.kit_mounted = true;
            let req = Request::Restore(vm_protocol::RestoreContainer {
                create,
                images: IMAGES_SHARE_DIR.into(),
                kit: vm_protocol::CriuKit {
                    dir: KIT_SHARE_DIR.into(),
                },
                options: r.options.clone(),
            });
            // CRIU under emulation reads the whole image over 9p.
            let t0 = Instant::now();
            let reply = m.call(req, Duration::from_secs(600))?;
            log_line(
                cfg,
                &format!(
                    "restored the container from {} in {} ms",
                    r.images.display(),
                    t0.elapsed().as_millis()
                ),
            );
            // The images stay the host's: the share lets go of them.
            unmount_all(&[m.share.join(IMAGES_SHARE_DIR)]);
            reply
        }
    };
    let tty = cfg.config.process().as_ref().and_then(|p| p.terminal()) == Some(true);
    let (i, o, e) = match cfg.tty_fd {
        Some(fd) => (dup(fd), dup(fd), None),
        None => (dup(0), dup(1), if tty { None } else { dup(2) }),
    };
    let (mut feeds, mut sinks) = (Vec::new(), Vec::new());
    for (n, (fd, carry)) in preserved.into_iter().zip(&cfg.preserve_fds).enumerate() {
        let no = vm_protocol::FD_PRESERVED + n as u8;
        match carry {
            vm_protocol::Carry::ToContainer => feeds.push((no, fd)),
            vm_protocol::Carry::FromContainer => sinks.push((no, fd)),
        }
    }
    m.streams.insert(
        INIT_STREAM,
        HostStream {
            stdin: i,
            stdout: o,
            stderr: e,
            feeds,
            sinks,
            tty,
            client: None,
            bound: false,
            out_eof: false,
            err_eof: tty,
            exited: None,
        },
    );
    if tty {
        m.resize_from(INIT_STREAM);
    }
    Ok((m, created, boot_ms, net_summary, boot_line))
}

/// The network the agent sets up: a template's clone has the template's
/// cards, which it finds by the template's MACs and gives the veths'.
fn guest_network(attached: &crate::net::Attached, restored: bool) -> Option<vm_protocol::Network> {
    let mut net = attached.guest_network()?;
    if restored {
        for (n, i) in net.interfaces.iter_mut().enumerate() {
            i.card_mac = Some(vm_protocol::template_mac(n));
        }
    }
    Some(net)
}

/// A started VM, ready for requests.
struct Booted {
    vm: Vm,
    /// virtiofsd, when it serves the share.
    fs: Option<crate::virtiofs::Daemon>,
    /// From QEMU's start to a ready agent.
    ms: u64,
    /// How it started, in one line (the log, `-E`).
    line: String,
    /// Restored from the template (not booted).
    restored: bool,
}

/// Start the VM: restored from a template when templates are wanted
/// (`cfg.template`, the one without network cards, which `create` made
/// sure of) and the restore works, else a cold boot. A VM with network
/// cards restores from the template with as many, built here on first use
/// (only here is the number known: Docker's hook moves the veth in after
/// `create` has checked the config).
fn boot(cfg: &MonitorConfig, share: &Path, nics: Vec<qemu::NicSpec>) -> Result<Booted> {
    let mut cold_why = cfg.cold_why.clone();
    if let Some(t0) = &cfg.template {
        let shape = crate::template::Shape {
            kernel: cfg.kernel.clone(),
            vmlinux: cfg.vmlinux.clone(),
            initramfs: cfg.initramfs.clone(),
            vcpus: cfg.vcpus,
            memory_mib: cfg.memory_mib,
            accel: cfg.accel,
            append: cfg.append.clone(),
            nics: nics.len(),
        };
        let start = Instant::now();
        let timeout = Duration::from_secs(cfg.ready_timeout_secs);
        let found = if nics.is_empty() {
            Ok((t0.clone(), String::new()))
        } else {
            use crate::template::Ensured;
            match crate::template::ensure(&shape, timeout, &|m| log_line(cfg, &m)) {
                Ok(Ensured::Cached(t)) => Ok((t, String::new())),
                Ok(Ensured::Built(t, ms)) => Ok((
                    t,
                    format!(", built now (its guest booted to the agent in {ms} ms)"),
                )),
                Err(e) => Err(e),
            }
        };
        match found {
            Ok((t, built)) => {
                let restore_start = Instant::now();
                match crate::template::restore(
                    &t,
                    &shape,
                    share,
                    &cfg.state_dir,
                    nics.clone(),
                    timeout,
                ) {
                    Ok(vm) => {
                        let ms = restore_start.elapsed().as_millis() as u64;
                        let cards = if nics.is_empty() {
                            String::new()
                        } else {
                            format!(
                                ", {} network card(s) that the agent gives the veth's MAC",
                                nics.len()
                            )
                        };
                        return Ok(Booted {
                            vm,
                            fs: None,
                            ms: start.elapsed().as_millis() as u64,
                            line: format!(
                                "restored from the template {}{built} in {ms} ms (memory mapped copy-on-write, the share over 9p{cards}, fresh entropy and clock)",
                                t.dir.display()
                            ),
                            restored: true,
                        });
                    }
                    Err(e) => {
                        // Whatever broke the restore may be in the template:
                        // the next VM of this shape builds a new one.
                        crate::template::discard(&t.dir);
                        cold_why = format!(
                            "the restore from the template {} failed ({e}); the template was removed",
                            t.dir.display()
                        );
                    }
                }
            }
            Err(e) => {
                cold_why = format!(
                    "no template with the guest's {} network card(s): {e}",
                    nics.len()
                );
            }
        }
    }
    // virtio-fs: virtiofsd serves the share from this mount namespace.
    let mut fs = match &cfg.share_fs {
        crate::virtiofs::ShareFs::VirtioFs { daemon } => {
            let d = crate::virtiofs::Daemon::start(daemon, share, &cfg.state_dir)?;
            log_line(cfg, &format!("virtiofsd pid {} serves the share", d.pid));
            Some(d)
        }
        crate::virtiofs::ShareFs::NineP => None,
    };
    let spec = VmSpec {
        vmlinux: cfg.vmlinux.clone(),
        initramfs: cfg.initramfs.clone(),
        vcpus: cfg.vcpus,
        memory_mib: cfg.memory_mib,
        share: Some(share.to_path_buf()),
        virtiofs: fs
            .as_ref()
            .and_then(|d| d.qemu_end.as_ref())
            .map(|f| f.as_raw_fd()),
        append: cfg.append.clone(),
        run_dir: cfg.state_dir.clone(),
        accel: cfg.accel,
        nics,
        snapshot: None,
    };
    let mut vm = Vm::launch(&spec)?;
    if let Some(d) = fs.as_mut() {
        // QEMU holds its end now.
        d.qemu_end = None;
    }
    log_line(
        cfg,
        &format!(
            "qemu pid {} ({}): {}",
            vm.pid,
            cfg.accel.as_str(),
            qemu::qemu_args(&spec).join(" ")
        ),
    );
    let ready = vm.wait_ready(Duration::from_secs(cfg.ready_timeout_secs))?;
    let boot_ms = vm.started.elapsed().as_millis() as u64;
    Ok(Booted {
        vm,
        fs,
        ms: boot_ms,
        line: format!(
            "cold boot: {cold_why}; the agent was ready after {boot_ms} ms (guest uptime {} ms)",
            ready.uptime_ms
        ),
        restored: false,
    })
}

impl Monitor {
    /// Send a request to the agent and wait for the answer, taking in
    /// everything else that arrives meanwhile.
    fn call(&mut self, req: Request, t: Duration) -> Result<Reply> {
        let id = self.conn.send(req)?;
        let end = Instant::now() + t;
        loop {
            if let Some(r) = self.conn.take_reply(id) {
                return r.map_err(Error::Remote);
            }
            if Instant::now() > end {
                return Err(Error::Timeout {
                    what: "the guest agent's answer".into(),
                    secs: t.as_secs(),
                    detail: self.vm.diagnostics(),
                });
            }
            qemu::poll_in(
                &[self.conn.ctl.as_raw_fd(), self.vm.pidfd.as_raw_fd()],
                Some(Duration::from_millis(200)),
            );
            if !self.conn.pump()? || self.vm.try_wait().is_some() {
                return Err(self.vm.exit_error());
            }
            self.take_logs();
        }
    }

    fn take_logs(&mut self) {
        let evs: Vec<GuestMsg> = self
            .conn
            .events
            .iter()
            .filter(|e| matches!(e, GuestMsg::Log { .. }))
            .cloned()
            .collect();
        self.conn
            .events
            .retain(|e| !matches!(e, GuestMsg::Log { .. }));
        for e in evs {
            if let GuestMsg::Log { level, msg } = e {
                log_line(&self.cfg, &format!("guest {level}: {msg}"));
            }
        }
    }

    fn resize_from(&mut self, stream: u32) {
        let Some(s) = self.streams.get(&stream) else {
            return;
        };
        // Whichever of the stream's descriptors is a terminal (stdin may be
        // redirected while output still goes to one).
        let size = [s.stdin.as_ref(), s.stdout.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|fd| sandbox::linux::console::get_winsize(fd.as_fd()));
        if let Some((rows, cols)) = size {
            let _ = self.conn.send(Request::Resize { stream, rows, cols });
        }
    }

    fn reply(&mut self, client: u64, m: ClientMsg) {
        if let Some(c) = self.clients.get(&client) {
            let _ = c.ch.send(&m);
        }
    }

    /// Accept a connection on our monitor.sock or a member's: it
    /// addresses that container.
    fn accept(&mut self, listener: RawFd, target: String) {
        // SAFETY: accept4 on a listening socket we hold; the new descriptor is owned below.
        let fd = unsafe {
            libc::accept4(
                listener,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: a connected SEQPACKET socket that we own.
            let ch = unsafe { Channel::from_raw(fd) };
            self.clients.insert(
                self.next_client,
                Conn {
                    ch,
                    stream: None,
                    target,
                },
            );
            self.next_client += 1;
        }
    }

    /// A pod member's container, handed over by its monitor: attach its
    /// mounts under the share's `pod/<id>/`, then have the agent create it.
    fn join(&mut self, cid: u64, j: JoinReq, fds: Vec<OwnedFd>) {
        let r = self.join_mounts(&j, fds);
        let (mut it, mounts) = match r {
            Ok(x) => x,
            Err(e) => return self.reply(cid, ClientMsg::Err(e.to_string())),
        };
        let (i, o, e, listener) = (it.next(), it.next(), it.next(), it.next());
        let Some(listener) = listener else {
            return self.reply(cid, ClientMsg::Err("join: descriptors missing".into()));
        };
        let stream = self.next_stream;
        self.next_stream += 1;
        self.streams.insert(
            stream,
            HostStream {
                stdin: i,
                stdout: o,
                err_eof: j.tty || e.is_none(),
                stderr: if j.tty { None } else { e },
                feeds: Vec::new(),
                sinks: Vec::new(),
                tty: j.tty,
                client: Some(cid),
                // Its monitor stands for it: if that goes, so does the container.
                bound: true,
                out_eof: false,
                exited: None,
            },
        );
        if let Some(c) = self.clients.get_mut(&cid) {
            c.stream = Some(stream);
            c.target = j.id.clone();
        }
        self.members.insert(
            j.id.clone(),
            Member {
                state_dir: j.state_dir.clone(),
                stream,
                listener,
                mounts,
            },
        );
        log_line(
            &self.cfg,
            &format!("pod member {} joins the VM (stream {stream})", j.id),
        );
        let req = Request::Create(vm_protocol::CreateContainer {
            id: j.id.clone(),
            stream,
            config: j.config,
            rootfs: format!("{}/{}/rootfs", POD_SHARE_DIR, j.id),
            systemd_cgroup: j.systemd_cgroup,
            no_pivot: j.no_pivot,
            no_new_keyring: j.no_new_keyring,
            log_level: j.log_level,
            preserve_fds: Vec::new(),
            network: None,
        });
        match self.conn.send(req) {
            Ok(rid) => {
                self.pending.insert(rid, Pending::Join(cid, j.id));
            }
            Err(e) => {
                self.retire(&j.id, false);
                self.reply(cid, ClientMsg::Err(e.to_string()));
            }
        }
    }

    /// Check a join's descriptors and attach its detached mounts in the
    /// share. Returns the stdio and listener descriptors, and the mounts.
    fn join_mounts(
        &mut self,
        j: &JoinReq,
        fds: Vec<OwnedFd>,
    ) -> Result<(std::vec::IntoIter<OwnedFd>, Vec<PathBuf>)> {
        sandbox::state::validate_id(&j.id)?;
        if j.id == self.cfg.id || self.members.contains_key(&j.id) {
            return Err(Error::Msg(format!(
                "container {} already runs in this VM",
                j.id
            )));
        }
        if fds.len() != 4 + j.items.len() {
            return Err(Error::Msg(format!(
                "join: {} descriptors came, {} expected",
                fds.len(),
                4 + j.items.len()
            )));
        }
        let prefix = format!("{}/{}/", POD_SHARE_DIR, j.id);
        let mut fds = fds;
        let trees = fds.split_off(4);
        let mut mounts = Vec::new();
        let mut attach = || -> Result<()> {
            for (it, tree) in j.items.iter().zip(&trees) {
                let rest = it.at.strip_prefix(&prefix).unwrap_or("");
                if rest.is_empty() || rest.contains('/') || rest == ".." {
                    return Err(Error::Msg(format!(
                        "join: share path {:?} is not under {prefix}",
                        it.at
                    )));
                }
                let dst = mount_point(&self.share, it)?;
                let target = nix::fcntl::open(
                    &dst,
                    nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(|e| Error::sys(format!("open {}", dst.display()), e))?;
                let r = sandbox::linux::syscall::move_mount(tree.as_fd(), target.as_fd());
                mounts.push(dst.clone());
                r.map_err(|e| {
                    Error::sys(
                        format!("move_mount({} to {})", it.src.display(), dst.display()),
                        e,
                    )
                })?;
            }
            Ok(())
        };
        if let Err(e) = attach() {
            unmount_all(&mounts);
            let _ = std::fs::remove_dir(self.share.join(&prefix));
            return Err(e);
        }
        Ok((fds.into_iter(), mounts))
    }

    /// Attach a detached tree at `at` in the share (read-only when asked).
    fn attach(&self, tree: &OwnedFd, at: &str, read_only: bool) -> Result<PathBuf> {
        let it = ShareItem {
            src: PathBuf::new(),
            at: at.to_string(),
            recursive: false,
            dir: true,
            read_only,
        };
        let dst = mount_point(&self.share, &it)?;
        let target = nix::fcntl::open(
            &dst,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::sys(format!("open {}", dst.display()), e))?;
        let r = sandbox::linux::syscall::move_mount(tree.as_fd(), target.as_fd())
            .map_err(|e| Error::sys(format!("move_mount(to {})", dst.display()), e))
            .and_then(|_| {
                if read_only {
                    remount_read_only(&dst)
                } else {
                    Ok(())
                }
            });
        if let Err(e) = r {
            unmount_all(&[dst]);
            return Err(e);
        }
        Ok(dst)
    }

    /// `checkpoint`: the image directory (and, the first time, the CRIU
    /// kit) are attached in the share, then the agent has CRIU dump the
    /// container there; the image directory leaves the share with the answer.
    fn checkpoint(
        &mut self,
        cid: u64,
        id: String,
        leave_running: bool,
        options: vm_protocol::CriuOptions,
        fds: Vec<OwnedFd>,
    ) {
        if id != self.cfg.id {
            return self.reply(
                cid,
                ClientMsg::Err(format!(
                    "checkpoint of {id}: it runs in the VM of pod container {}, and only a VM's own container is checkpointed",
                    self.cfg.id
                )),
            );
        }
        let [images, kit] = match <[OwnedFd; 2]>::try_from(fds) {
            Ok(x) => x,
            Err(v) => {
                return self.reply(
                    cid,
                    ClientMsg::Err(format!(
                        "checkpoint: {} descriptors came, 2 expected",
                        v.len()
                    )),
                )
            }
        };
        if !self.kit_mounted {
            if let Err(e) = self.attach(&kit, KIT_SHARE_DIR, true) {
                return self.reply(cid, ClientMsg::Err(format!("attach the CRIU kit: {e}")));
            }
            self.kit_mounted = true;
        }
        let at = format!("{IMAGES_SHARE_DIR}-{cid}");
        let dst = match self.attach(&images, &at, false) {
            Ok(d) => d,
            Err(e) => {
                return self.reply(
                    cid,
                    ClientMsg::Err(format!("attach the image directory: {e}")),
                )
            }
        };
        log_line(
            &self.cfg,
            &format!("checkpoint into {at} (leave running: {leave_running})"),
        );
        let req = Request::Checkpoint(vm_protocol::CheckpointContainer {
            id,
            images: at,
            kit: vm_protocol::CriuKit {
                dir: KIT_SHARE_DIR.into(),
            },
            leave_running,
            options,
        });
        match self.conn.send(req) {
            Ok(rid) => {
                self.pending.insert(rid, Pending::Checkpoint(cid, dst));
            }
            Err(e) => {
                unmount_all(&[dst]);
                self.reply(cid, ClientMsg::Err(e.to_string()));
            }
        }
    }

    /// A member is gone (its init exited, or its create failed): the agent
    /// removes it from the guest, its mounts leave the share, and its
    /// monitor.sock stops answering. `delete` says whether the guest still
    /// holds it.
    fn retire(&mut self, id: &str, delete: bool) {
        let Some(m) = self.members.remove(id) else {
            return;
        };
        if delete {
            if let Ok(rid) = self.conn.send(Request::Delete { id: id.to_string() }) {
                self.pending.insert(rid, Pending::Ignore);
            }
        }
        unmount_all(&m.mounts);
        let _ = std::fs::remove_dir(self.share.join(POD_SHARE_DIR).join(id));
        log_line(&self.cfg, &format!("pod member {id} left the VM"));
    }

    fn agent_req(&mut self, client: u64, req: Request, kind: fn(u64) -> Pending) {
        match self.conn.send(req) {
            Ok(id) => {
                self.pending.insert(id, kind(client));
            }
            Err(e) => self.reply(client, ClientMsg::Err(e.to_string())),
        }
    }

    fn on_client(&mut self, cid: u64, req: ClientReq, fds: Vec<OwnedFd>) {
        let id = self
            .clients
            .get(&cid)
            .map_or_else(|| self.cfg.id.clone(), |c| c.target.clone());
        let dir = self
            .members
            .get(&id)
            .map_or_else(|| self.cfg.state_dir.clone(), |m| m.state_dir.clone());
        match req {
            ClientReq::Join(j) => self.join(cid, *j, fds),
            ClientReq::Checkpoint {
                leave_running,
                options,
            } => self.checkpoint(cid, id, leave_running, options, fds),
            ClientReq::Start => self.agent_req(cid, Request::Start { id }, Pending::Plain),
            ClientReq::Kill { signal, all } => {
                self.agent_req(cid, Request::Kill { id, signal, all }, Pending::Plain)
            }
            ClientReq::Ps => self.agent_req(cid, Request::Ps { id }, Pending::Plain),
            ClientReq::Stats => self.agent_req(cid, Request::Stats { id }, Pending::Plain),
            ClientReq::Update { resources } => {
                self.agent_req(cid, Request::Update { id, resources }, Pending::Plain)
            }
            ClientReq::Pause => match self.conn.send(Request::Pause { id }) {
                Ok(rid) => {
                    self.pending.insert(rid, Pending::Pause(cid, true, dir));
                }
                Err(e) => self.reply(cid, ClientMsg::Err(e.to_string())),
            },
            ClientReq::Resume => match self.conn.send(Request::Resume { id }) {
                Ok(rid) => {
                    self.pending.insert(rid, Pending::Pause(cid, false, dir));
                }
                Err(e) => self.reply(cid, ClientMsg::Err(e.to_string())),
            },
            ClientReq::Resize { rows, cols } => {
                let stream = self.clients.get(&cid).and_then(|c| c.stream);
                match stream {
                    Some(stream) => {
                        self.agent_req(cid, Request::Resize { stream, rows, cols }, Pending::Plain)
                    }
                    None => self.reply(
                        cid,
                        ClientMsg::Err("resize: this connection runs no process".into()),
                    ),
                }
            }
            ClientReq::Signal { signal } => {
                let stream = self.clients.get(&cid).and_then(|c| c.stream);
                match stream {
                    Some(stream) => {
                        self.agent_req(cid, Request::Signal { stream, signal }, Pending::Plain)
                    }
                    None => self.reply(
                        cid,
                        ClientMsg::Err("signal: this connection runs no process".into()),
                    ),
                }
            }
            ClientReq::Exec { process, bound } => {
                let stream = self.next_stream;
                self.next_stream += 1;
                let tty = process.terminal() == Some(true);
                let mut it = fds.into_iter();
                let (i, o, e) = (it.next(), it.next(), it.next());
                self.streams.insert(
                    stream,
                    HostStream {
                        stdin: i,
                        stdout: o,
                        err_eof: tty || e.is_none(),
                        stderr: if tty { None } else { e },
                        feeds: Vec::new(),
                        sinks: Vec::new(),
                        tty,
                        client: Some(cid),
                        bound,
                        out_eof: false,
                        exited: None,
                    },
                );
                if let Some(c) = self.clients.get_mut(&cid) {
                    c.stream = Some(stream);
                }
                match self.conn.send(Request::Exec(vm_protocol::ExecProcess {
                    id,
                    stream,
                    process,
                })) {
                    Ok(rid) => {
                        self.pending.insert(rid, Pending::ExecStart(cid, stream));
                    }
                    Err(e) => {
                        self.streams.remove(&stream);
                        self.reply(cid, ClientMsg::Err(e.to_string()));
                    }
                }
            }
            ClientReq::Shutdown => {}
        }
    }

    fn on_reply(&mut self, p: Pending, r: std::result::Result<Reply, String>) {
        match p {
            Pending::Plain(c) => self.reply(
                c,
                match r {
                    Ok(v) => ClientMsg::Ok(v),
                    Err(e) => ClientMsg::Err(e),
                },
            ),
            Pending::Ignore => {}
            Pending::Checkpoint(c, images) => {
                unmount_all(&[images]);
                log_line(
                    &self.cfg,
                    &match &r {
                        Ok(_) => "checkpoint done".to_string(),
                        Err(e) => format!("checkpoint failed: {e}"),
                    },
                );
                self.reply(
                    c,
                    match r {
                        Ok(v) => ClientMsg::Ok(v),
                        Err(e) => ClientMsg::Err(e),
                    },
                );
            }
            Pending::Join(c, id) => match r {
                Ok(v) => self.reply(c, ClientMsg::Ok(v)),
                Err(e) => {
                    if let Some(m) = self.members.get(&id) {
                        self.streams.remove(&m.stream);
                    }
                    self.retire(&id, false);
                    self.reply(c, ClientMsg::Err(e));
                }
            },
            Pending::Pause(c, on, dir) => {
                if r.is_ok() {
                    let mark = dir.join(PAUSED_MARK);
                    if on {
                        let _ = sandbox::files::replace(&mark, b"", 0o600);
                    } else {
                        let _ = std::fs::remove_file(&mark);
                    }
                }
                self.reply(
                    c,
                    match r {
                        Ok(v) => ClientMsg::Ok(v),
                        Err(e) => ClientMsg::Err(e),
                    },
                );
            }
            Pending::ExecStart(c, stream) => match r {
                Ok(v) => {
                    self.reply(c, ClientMsg::Ok(v));
                    let tty = self.streams.get(&stream).is_some_and(|s| s.tty);
                    if tty {
                        self.resize_from(stream);
                    }
                }
                Err(e) => {
                    self.streams.remove(&stream);
                    self.reply(c, ClientMsg::Err(e));
                }
            },
        }
    }

    fn on_stdio(&mut self, f: vm_protocol::StdioFrame) {
        let Some(s) = self.streams.get_mut(&f.stream) else {
            return;
        };
        if f.fd >= vm_protocol::FD_PRESERVED {
            // A preserved descriptor the container writes to.
            let Some(at) = s.sinks.iter().position(|(no, _)| *no == f.fd) else {
                return;
            };
            if f.data.is_empty() || qemu::write_all_fd(s.sinks[at].1.as_raw_fd(), &f.data).is_err()
            {
                s.sinks.remove(at);
            }
            return;
        }
        let (fd, eof) = match f.fd {
            vm_protocol::FD_STDERR => (&mut s.stderr, &mut s.err_eof),
            _ => (&mut s.stdout, &mut s.out_eof),
        };
        if f.data.is_empty() {
            *eof = true;
            *fd = None;
            return;
        }
        if let Some(o) = fd {
            if qemu::write_all_fd(o.as_raw_fd(), &f.data).is_err() {
                // The reader is gone (EPIPE): drop the rest of this output.
                *fd = None;
            }
        }
    }

    /// Forward stdin data, or its end, from a host descriptor.
    fn on_stdin(&mut self, stream: u32) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let Some(fd) = &s.stdin else { return };
        let mut buf = [0u8; 32768];
        // SAFETY: one read into our buffer; poll said the descriptor is readable.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            let _ = self.stdio.send_stdin(stream, &buf[..n as usize]);
        } else if n == 0 || nix::errno::Errno::last() != nix::errno::Errno::EINTR {
            s.stdin = None;
            let _ = self.stdio.send_stdin(stream, b"");
        }
    }

    /// Forward the contents of a preserved descriptor, or its end, to the
    /// container.
    fn on_feed(&mut self, stream: u32, no: u8) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let Some(at) = s.feeds.iter().position(|(n, _)| *n == no) else {
            return;
        };
        let mut buf = [0u8; 32768];
        // SAFETY: one read into our buffer; poll said the descriptor is readable.
        let n = unsafe {
            libc::read(
                s.feeds[at].1.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n > 0 {
            let _ = self.stdio.send(stream, no, &buf[..n as usize]);
        } else if n == 0 || nix::errno::Errno::last() != nix::errno::Errno::EINTR {
            s.feeds.remove(at);
            let _ = self.stdio.send(stream, no, b"");
        }
    }

    /// Streams whose process exited and whose output ended (or whose grace passed).
    fn finished(&self) -> Vec<(u32, i32)> {
        self.streams
            .iter()
            .filter_map(|(id, s)| {
                let (st, at) = s.exited?;
                ((s.out_eof && s.err_eof) || at.elapsed() > Duration::from_millis(500))
                    .then_some((*id, st))
            })
            .collect()
    }

    /// End the VM. The agent gets a short grace to power off cleanly, then
    /// QEMU is killed: nothing in the guest needs saving (the rootfs upper
    /// layer is tmpfs, and 9p writes to shared host paths are synchronous),
    /// and a TCG power-off can take longer than the grace.
    fn power_off(&mut self) {
        let t0 = Instant::now();
        if self.restored {
            self.vm.kill();
            log_line(
                &self.cfg,
                &format!(
                    "VM stopped after {} ms (a template's clone: nothing in it to save)",
                    t0.elapsed().as_millis()
                ),
            );
            return;
        }
        let _ = self.conn.send(Request::Shutdown);
        let clean = self
            .vm
            .wait_timeout(Duration::from_millis(POWER_OFF_GRACE_MS))
            .is_some();
        if !clean {
            self.vm.kill();
        }
        log_line(
            &self.cfg,
            &format!(
                "VM {} after {} ms",
                if clean { "powered off" } else { "killed" },
                t0.elapsed().as_millis()
            ),
        );
    }

    fn fail(&mut self, e: &Error) -> i32 {
        let msg = format!("container {}: {e}", self.cfg.id);
        log_line(&self.cfg, &msg);
        let _ =
            sandbox::files::replace(&self.cfg.state_dir.join(EXIT_REASON), msg.as_bytes(), 0o600);
        eprintln!("nk-runtime: {msg}");
        self.vm.kill();
        VM_FAILED
    }

    /// Serve until the container's init exits; returns the exit code.
    fn serve(&mut self, listener: OwnedFd, sfd: OwnedFd) -> i32 {
        loop {
            let mut fds = vec![
                self.conn.ctl.as_raw_fd(),
                if self.stdio.closed {
                    -1
                } else {
                    self.stdio.sock.as_raw_fd()
                },
                self.vm.pidfd.as_raw_fd(),
                sfd.as_raw_fd(),
                listener.as_raw_fd(),
            ];
            let mut client_at = Vec::new();
            for (cid, c) in &self.clients {
                client_at.push((*cid, fds.len()));
                fds.push(c.ch.as_fd().as_raw_fd());
            }
            let mut listen_at = Vec::new();
            for (id, m) in &self.members {
                listen_at.push((id.clone(), m.listener.as_raw_fd(), fds.len()));
                fds.push(m.listener.as_raw_fd());
            }
            let mut dns_at = Vec::new();
            for (q, fd) in self.dns.iter().flat_map(|d| d.fds()) {
                dns_at.push((q, fds.len()));
                fds.push(fd);
            }
            let mut stdin_at = Vec::new();
            let mut feed_at = Vec::new();
            for (sid, s) in &self.streams {
                if let Some(fd) = &s.stdin {
                    stdin_at.push((*sid, fds.len()));
                    fds.push(fd.as_raw_fd());
                }
                for (no, fd) in &s.feeds {
                    feed_at.push((*sid, *no, fds.len()));
                    fds.push(fd.as_raw_fd());
                }
            }
            let mut p: Vec<libc::pollfd> = fds
                .iter()
                .map(|&fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            let draining = self.streams.values().any(|s| s.exited.is_some());
            // SAFETY: poll over a vector that lives for the call.
            unsafe {
                libc::poll(
                    p.as_mut_ptr(),
                    p.len() as libc::nfds_t,
                    if draining { 50 } else { 1000 },
                )
            };
            // Output first: it must reach the host before the exit is reported.
            match self.stdio.pump(4 << 20) {
                Ok(frames) => {
                    for f in frames {
                        self.on_stdio(f);
                    }
                }
                Err(e) => return self.fail(&e),
            }
            match self.conn.pump() {
                Ok(true) => {}
                Ok(false) => {
                    self.vm.wait_timeout(Duration::from_secs(2));
                    let e = self.vm.exit_error();
                    return self.fail(&e);
                }
                Err(e) => return self.fail(&e),
            }
            while let Some(ev) = self.conn.events.pop_front() {
                match ev {
                    GuestMsg::Exited { stream, status } => {
                        if let Some(s) = self.streams.get_mut(&stream) {
                            s.exited = Some((status, Instant::now()));
                        }
                    }
                    GuestMsg::Log { level, msg } => {
                        log_line(&self.cfg, &format!("guest {level}: {msg}"))
                    }
                    GuestMsg::Dns { query, data } => {
                        if let Some(Err(e)) = self.dns.as_mut().map(|d| d.forward(query, &data)) {
                            log_line(&self.cfg, &format!("DNS query {query} dropped: {e}"));
                        }
                    }
                    _ => {}
                }
            }
            let ids: Vec<u64> = self.pending.keys().copied().collect();
            for id in ids {
                if let Some(r) = self.conn.take_reply(id) {
                    let p = self.pending.remove(&id).expect("listed");
                    self.on_reply(p, r);
                }
            }
            for (sid, st) in self.finished() {
                let s = self.streams.remove(&sid).expect("listed");
                if sid == INIT_STREAM {
                    log_line(&self.cfg, &format!("container exited with status {st}"));
                    if !self.members.is_empty() {
                        let ids: Vec<&String> = self.members.keys().collect();
                        log_line(
                            &self.cfg,
                            &format!(
                                "the pod's VM stops with its first container: {ids:?} end with it"
                            ),
                        );
                    }
                    for (_, c) in self.clients.drain() {
                        let _ = c.ch.send(&ClientMsg::Err("the container exited".into()));
                    }
                    self.power_off();
                    return st;
                }
                if let Some(c) = s.client {
                    self.reply(c, ClientMsg::Exited(st));
                }
                let member = self
                    .members
                    .iter()
                    .find(|(_, m)| m.stream == sid)
                    .map(|(id, _)| id.clone());
                if let Some(id) = member {
                    log_line(
                        &self.cfg,
                        &format!("pod member {id} exited with status {st}"),
                    );
                    self.retire(&id, true);
                }
            }
            if self.vm.try_wait().is_some() {
                let e = self.vm.exit_error();
                return self.fail(&e);
            }
            if p[3].revents != 0 {
                let mut info = [0u8; 128];
                // SAFETY: read whole signalfd_siginfo records into our buffer.
                while unsafe { libc::read(sfd.as_raw_fd(), info.as_mut_ptr().cast(), 128) } == 128 {
                    let sig = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as i32;
                    match sig {
                        libc::SIGCHLD | libc::SIGPIPE | libc::SIGURG => {}
                        libc::SIGWINCH => self.resize_from(INIT_STREAM),
                        _ => {
                            log_line(
                                &self.cfg,
                                &format!("forwarding signal {sig} to the container"),
                            );
                            let _ = self.conn.send(Request::Kill {
                                id: self.cfg.id.clone(),
                                signal: sig,
                                all: false,
                            });
                        }
                    }
                }
            }
            if p[4].revents != 0 {
                self.accept(listener.as_raw_fd(), self.cfg.id.clone());
            }
            for (id, fd, at) in listen_at {
                // A member retired meanwhile has closed its listener.
                if p[at].revents != 0 && self.members.contains_key(&id) {
                    self.accept(fd, id);
                }
            }
            for (cid, at) in client_at {
                if p[at].revents == 0 {
                    continue;
                }
                let (msg, target) = match self.clients.get(&cid) {
                    Some(c) => (c.ch.recv::<ClientReq>(), c.target.clone()),
                    None => continue,
                };
                match msg {
                    Ok(Some((ClientReq::Shutdown, _))) if target != self.cfg.id => {
                        // A pod member's delete: only it goes; the VM stays.
                        log_line(&self.cfg, &format!("delete of pod member {target}"));
                        self.agent_req(cid, Request::Delete { id: target }, Pending::Plain);
                    }
                    Ok(Some((ClientReq::Shutdown, _))) => {
                        log_line(&self.cfg, "shutdown requested (delete)");
                        self.power_off();
                        self.reply(cid, ClientMsg::Ok(Reply::Done));
                        return 128 + libc::SIGKILL;
                    }
                    Ok(Some((req, fds))) => self.on_client(cid, req, fds),
                    _ => {
                        // The client went away. Its exec keeps running (as a
                        // runc exec outlives a killed `runc exec`), unless the
                        // client stood for it (an exec proxy, a pod member's
                        // monitor): then the process goes too.
                        self.clients.remove(&cid);
                        let mut orphans = Vec::new();
                        for (sid, s) in self.streams.iter_mut() {
                            if s.client == Some(cid) {
                                s.client = None;
                                if s.bound && s.exited.is_none() {
                                    orphans.push(*sid);
                                }
                            }
                        }
                        for stream in orphans {
                            log_line(
                                &self.cfg,
                                &format!("exec proxy of stream {stream} gone: killing its process"),
                            );
                            let _ = self.conn.send(Request::Signal {
                                stream,
                                signal: libc::SIGKILL,
                            });
                        }
                    }
                }
            }
            for (query, at) in dns_at {
                if p[at].revents == 0 {
                    continue;
                }
                if let Some(data) = self.dns.as_mut().and_then(|d| d.take_answer(query)) {
                    let _ = self.conn.send(Request::DnsAnswer { query, data });
                }
            }
            for (sid, at) in stdin_at {
                if p[at].revents != 0 {
                    self.on_stdin(sid);
                }
            }
            for (sid, no, at) in feed_at {
                if p[at].revents != 0 {
                    self.on_feed(sid, no);
                }
            }
        }
    }
}

/// The monitor process: wait for `create`'s go, boot, create the container,
/// report, then serve until it exits. Returns the exit code.
pub fn run(cfg: MonitorConfig, sync: Channel) -> i32 {
    // SAFETY: ignoring SIGPIPE: writes to a closed pipe then fail with EPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let preserved = match sync.recv::<String>() {
        Ok(Some((s, fds))) if s == "go" => fds,
        _ => return VM_FAILED,
    };
    if let Some(fd) = cfg.tty_fd {
        // The terminal's window-size changes then reach us as SIGWINCH.
        // SAFETY: TIOCSCTTY on the pty slave we were given; we are a session leader.
        unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) };
    }
    let sfd = match signalfd() {
        Ok(s) => s,
        Err(e) => {
            let _ = sync.send(&Report::Failed(e.to_string()));
            return VM_FAILED;
        }
    };
    // The container's network namespace on the host, before the hooks
    // and QEMU.
    let netns = match crate::net::enter(&crate::net::mode(&cfg.config)) {
        Ok(p) => p,
        Err(e) => {
            let _ = sync.send(&Report::Failed(e.to_string()));
            return VM_FAILED;
        }
    };
    let _ = sync.send(&Report::Netns);
    match sync.recv::<String>() {
        Ok(Some((s, _))) if s == "boot" => {}
        // A hook failed: create undoes the rest.
        _ => return VM_FAILED,
    }
    let started = start_vm(&cfg, preserved, &netns).and_then(|(m, created, boot, net, how)| {
        let l = listen(&cfg.state_dir)?;
        Ok((m, created, boot, net, how, l))
    });
    let (mut m, created, boot_ms, net, how, listener) = match started {
        Ok(x) => x,
        Err(e) => {
            log_line(&cfg, &format!("create failed: {e}"));
            undo_network(&cfg);
            let _ = sync.send(&Report::Failed(e.to_string()));
            return VM_FAILED;
        }
    };
    let guest_pid = match created {
        Reply::Created { pid } => pid,
        _ => 0,
    };
    let _ = sync.send(&Report::Created {
        guest_pid,
        qemu_pid: m.vm.pid,
        boot_ms,
        net,
        boot: how,
    });
    drop(sync);
    if let Some(fd) = cfg.tty_fd {
        // SAFETY: the stream holds its own copies of the terminal.
        unsafe { libc::close(fd) };
    }
    let code = m.serve(listener, sfd);
    // QEMU is gone and its taps with it; the veth's qdisc is ours to remove.
    drop(m);
    undo_network(&cfg);
    code
}

/// Remove what crate::net put in the engine's network namespace (delete
/// does it again, for a monitor that was killed).
fn undo_network(cfg: &MonitorConfig) {
    if let Err(e) = crate::net::detach(&cfg.state_dir) {
        log_line(cfg, &format!("network clean-up: {e}"));
    }
}

/// Take a member's mounts out of the share (lazily: the guest may still
/// hold files open) and remove their mount points, never what is below
/// one that is still mounted.
fn unmount_all(mounts: &[PathBuf]) {
    for m in mounts.iter().rev() {
        let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(m).or_else(|_| std::fs::remove_file(m));
    }
    if let Some(d) = mounts.first().and_then(|m| m.parent()) {
        let _ = std::fs::remove_dir(d);
    }
}
