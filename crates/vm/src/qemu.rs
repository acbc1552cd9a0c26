//! Launching QEMU: a `microvm` machine with the cached kernel and
//! initramfs, two virtio-serial ports wired to socketpairs we hold (no
//! socket files, no connect race), an optional 9p share, and the serial
//! console in a log file for diagnostics.
//!
//! The accelerator is KVM only when a short probe boot under KVM reaches the
//! agent (hosts such as this one have a /dev/kvm that cannot run a normal
//! guest); otherwise TCG with `-cpu max` and `tsc_early_khz`, without which
//! the guest sometimes hangs calibrating its clock. The probe's answer is
//! cached next to the image.

pub use crate::cache::{cached_accel, Accel, AccelRecord};
use crate::error::{Error, Result};
use crate::image::Image;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The QEMU program (`NK_QEMU` overrides it).
pub fn qemu_program() -> String {
    std::env::var("NK_QEMU")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "qemu-system-x86_64".into())
}

/// Resolve the QEMU program in PATH, with a clear error when it is missing.
pub fn find_qemu() -> Result<PathBuf> {
    let prog = qemu_program();
    if prog.contains('/') {
        let p = PathBuf::from(&prog);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(Error::QemuMissing {
                program: prog,
                where_: " (from NK_QEMU)".into(),
            })
        };
    }
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(&prog);
        if is_executable(&p) {
            return Ok(p);
        }
    }
    Err(Error::QemuMissing {
        program: prog,
        where_: format!(" in PATH ({path})"),
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn kvm_usable() -> bool {
    // SAFETY: open/close of a device path with a static C string.
    let fd = unsafe { libc::open(c"/dev/kvm".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return false;
    }
    // SAFETY: closing the descriptor we just opened.
    unsafe { libc::close(fd) };
    true
}

/// Pick the accelerator: `NK_VM_ACCEL`, else the cached probe, else TCG when
/// /dev/kvm cannot be opened, else a probe boot under KVM (cached).
pub fn choose_accel(img: &Image, probe_log: &dyn Fn(&str)) -> Accel {
    match std::env::var("NK_VM_ACCEL").ok().as_deref() {
        Some("kvm") => return Accel::Kvm,
        Some("tcg") => return Accel::Tcg,
        _ => {}
    }
    let cache = crate::cache::cache_dir();
    if let Some(r) = cached_accel(&cache) {
        if r.kernel == img.kernel_version {
            return r.accel;
        }
    }
    let (accel, reason) = if !kvm_usable() {
        (Accel::Tcg, "/dev/kvm cannot be opened".to_string())
    } else {
        probe_log("probing KVM with a short boot (once; the answer is cached)");
        match probe_kvm(img) {
            Ok(ms) => (
                Accel::Kvm,
                format!("a KVM probe boot reached the agent in {ms} ms"),
            ),
            Err(e) => (Accel::Tcg, format!("a KVM probe boot failed: {e}")),
        }
    };
    let rec = AccelRecord {
        accel,
        kernel: img.kernel_version.clone(),
        reason,
    };
    crate::cache::save_accel(&cache, &rec);
    accel
}

fn probe_kvm(img: &Image) -> Result<u128> {
    let dir = std::env::temp_dir().join(format!("nk-kvm-probe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let spec = VmSpec {
        vmlinux: img.vmlinux.clone(),
        initramfs: img.initramfs.clone(),
        vcpus: 1,
        memory_mib: 256,
        share: None,
        virtiofs: None,
        append: vec![],
        run_dir: dir.clone(),
        accel: Accel::Kvm,
        nics: vec![],
        snapshot: None,
    };
    let t0 = Instant::now();
    let r = Vm::launch(&spec).and_then(|mut vm| {
        let r = vm.wait_ready(Duration::from_secs(8));
        vm.kill();
        r
    });
    let _ = std::fs::remove_dir_all(&dir);
    r.map(|_| t0.elapsed().as_millis())
}

/// The host's TSC frequency in kHz, from /proc/cpuinfo.
pub fn tsc_khz() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = s
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u64)
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub vmlinux: PathBuf,
    pub initramfs: PathBuf,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// A host directory exported over virtio-9p with tag [`vm_protocol::SHARE_TAG`].
    pub share: Option<PathBuf>,
    /// A connected vhost-user socket to a virtiofsd serving the share: the
    /// share then goes over virtio-fs (same tag) instead of 9p, and the
    /// guest's memory is a shared memfd that virtiofsd maps.
    pub virtiofs: Option<RawFd>,
    /// Extra kernel command line words (`key=value` reach the agent as environment).
    pub append: Vec<String>,
    /// QEMU runs here; console.log and qemu.log are written here.
    pub run_dir: PathBuf,
    pub accel: Accel,
    /// Network cards: virtio-net devices on tap descriptors we hold.
    pub nics: Vec<NicSpec>,
    /// Guest memory in a file, for a template snapshot (crate::template):
    /// saved from, or restored into. Not with `virtiofs`.
    pub snapshot: Option<Snapshot>,
}

/// The file-backed guest memory of a template snapshot. Either way QEMU
/// also gets a QMP socket (after the taps) to drive the migration.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The memory file (`memory-backend-file,mem-path=`).
    pub memory: PathBuf,
    /// false: the template VM, which writes its memory to the file
    /// (`share=on`); true: a clone, which maps the file copy-on-write
    /// (`share=off`, so it never writes the template) and waits for its
    /// device state (`-incoming defer`).
    pub restore: bool,
}

/// One network card: the tap descriptor (QEMU gets it as fd
/// [`first_nic_fd`] + its index) and the MAC the guest's card gets.
#[derive(Debug, Clone)]
pub struct NicSpec {
    pub tap_fd: RawFd,
    pub mac: String,
}

/// QEMU's descriptor of the virtio-fs socket (3 and 4 are the two ports).
pub const VIRTIOFS_FD: i32 = 5;

/// QEMU's descriptor of the first tap: after the ports and the virtio-fs
/// socket when there is one.
pub fn first_nic_fd(s: &VmSpec) -> i32 {
    VIRTIOFS_FD + i32::from(s.virtiofs.is_some())
}

/// QEMU's descriptor of the QMP socket, when the spec has a snapshot:
/// after the taps.
pub fn qmp_fd(s: &VmSpec) -> i32 {
    first_nic_fd(s) + s.nics.len() as i32
}

/// In a helper's child between fork and exec (QEMU, virtiofsd): put `fds`
/// at 3, 4, ... in order, die with the monitor (PDEATHSIG), and unblock
/// every signal the monitor had blocked.
///
/// # Safety
/// Only between fork and exec: it makes async-signal-safe calls only, on
/// descriptors that are open in the child.
pub(crate) unsafe fn child_setup(fds: &[RawFd]) -> std::io::Result<()> {
    // Move every source above the targets first, so that no dup2
    // overwrites a source not yet moved.
    let mut moved = [-1i32; 64];
    if fds.len() > moved.len() {
        return Err(std::io::Error::from_raw_os_error(libc::EMFILE));
    }
    for (i, &fd) in fds.iter().enumerate() {
        // SAFETY: fcntl(F_DUPFD) on a descriptor open in this child.
        moved[i] = unsafe { libc::fcntl(fd, libc::F_DUPFD, 3 + fds.len() as i32 + 8) };
        if moved[i] < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    for (i, &fd) in moved[..fds.len()].iter().enumerate() {
        // SAFETY: dup2/close of descriptors this loop made.
        unsafe {
            if libc::dup2(fd, 3 + i as i32) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
        }
    }
    // SAFETY: prctl with integer arguments; a zeroed sigset_t is valid and
    // sigemptyset/sigprocmask only touch it and this thread's mask.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
    Ok(())
}

/// QEMU option values separate fields with commas: double them in paths.
fn opt_path(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// The QEMU arguments for a spec (control port on fd 3, stdio port on fd 4).
pub fn qemu_args(s: &VmSpec) -> Vec<String> {
    let mut cmdline = vec![
        "console=ttyS0".to_string(),
        "quiet".into(),
        "reboot=t".into(),
        "panic=-1".into(),
        "pci=off".into(),
    ];
    if s.accel == Accel::Tcg {
        if let Some(k) = tsc_khz() {
            cmdline.push(format!("tsc_early_khz={k}"));
        }
    }
    if s.virtiofs.is_some() {
        // Reaches the agent as nk_share=virtiofs in its environment.
        cmdline.push("nk_share=virtiofs".into());
    }
    cmdline.extend(s.append.iter().cloned());
    let mut a: Vec<String> = vec![
        "-M".into(),
        "microvm".into(),
        "-accel".into(),
        s.accel.as_str().into(),
        "-cpu".into(),
        if s.accel == Accel::Kvm { "host" } else { "max" }.into(),
        "-m".into(),
        s.memory_mib.to_string(),
        "-smp".into(),
        s.vcpus.to_string(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        // QEMU's own seccomp filter: no exec, no privilege changes.
        "-sandbox".into(),
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny".into(),
        "-global".into(),
        "virtio-mmio.force-legacy=false".into(),
        "-serial".into(),
        "file:console.log".into(),
        "-kernel".into(),
        opt_path(&s.vmlinux),
        "-initrd".into(),
        opt_path(&s.initramfs),
        "-append".into(),
        cmdline.join(" "),
        "-chardev".into(),
        "socket,id=ctl,fd=3,server=off".into(),
        "-chardev".into(),
        "socket,id=sio,fd=4,server=off".into(),
        "-device".into(),
        "virtio-serial-device".into(),
        "-device".into(),
        format!(
            "virtserialport,chardev=ctl,name={}",
            vm_protocol::CONTROL_PORT
        ),
        "-device".into(),
        format!(
            "virtserialport,chardev=sio,name={}",
            vm_protocol::STDIO_PORT
        ),
    ];
    if let Some(snap) = &s.snapshot {
        a.extend([
            "-object".into(),
            format!(
                "memory-backend-file,id=mem,size={}M,mem-path={},share={}",
                s.memory_mib,
                opt_path(&snap.memory),
                if snap.restore { "off" } else { "on" }
            ),
            "-machine".into(),
            "memory-backend=mem".into(),
            "-chardev".into(),
            format!("socket,id=qmp,fd={},server=off", qmp_fd(s)),
            "-mon".into(),
            "chardev=qmp,mode=control".into(),
        ]);
    }
    if s.virtiofs.is_some() {
        a.extend([
            "-object".into(),
            format!(
                "memory-backend-memfd,id=mem,size={}M,share=on",
                s.memory_mib
            ),
            "-machine".into(),
            "memory-backend=mem".into(),
            "-chardev".into(),
            format!("socket,id=vfs,fd={VIRTIOFS_FD}"),
            "-device".into(),
            format!(
                "vhost-user-fs-device,chardev=vfs,tag={}",
                vm_protocol::SHARE_TAG
            ),
        ]);
    } else if let Some(share) = &s.share {
        a.push("-fsdev".into());
        a.push(format!(
            "local,id=share,path={},security_model=none,multidevs=remap",
            opt_path(share)
        ));
        a.push("-device".into());
        a.push(format!(
            "virtio-9p-device,fsdev=share,mount_tag={}",
            vm_protocol::SHARE_TAG
        ));
    }
    for (i, n) in s.nics.iter().enumerate() {
        // vhost=off: the kernel's vhost-net would need /dev/vhost-net and
        // KVM's irqfd; under TCG QEMU moves the frames itself.
        a.push("-netdev".into());
        a.push(format!(
            "tap,id=net{i},fd={},vhost=off",
            first_nic_fd(s) + i as i32
        ));
        a.push("-device".into());
        a.push(format!("virtio-net-device,netdev=net{i},mac={}", n.mac));
    }
    if s.snapshot.as_ref().is_some_and(|s| s.restore) {
        // Wait for the device state (migrate-incoming over QMP).
        a.extend(["-incoming".into(), "defer".into()]);
    }
    a
}

/// A running QEMU and the host ends of its two ports.
#[derive(Debug)]
pub struct Vm {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub control: UnixStream,
    pub stdio: UnixStream,
    pub run_dir: PathBuf,
    pub started: Instant,
    /// The host end of QEMU's QMP socket (specs with a snapshot).
    pub qmp: Option<UnixStream>,
    status: Option<i32>,
}

fn socketpair() -> Result<(UnixStream, UnixStream)> {
    UnixStream::pair().map_err(|e| Error::io("socketpair", "(virtio-serial channel)", e))
}

impl Vm {
    /// Start QEMU. It dies with the calling thread (PR_SET_PDEATHSIG).
    pub fn launch(s: &VmSpec) -> Result<Vm> {
        let qemu = find_qemu()?;
        for (what, p) in [("kernel", &s.vmlinux), ("initramfs", &s.initramfs)] {
            if !p.is_file() {
                return Err(Error::KernelMissing {
                    what: format!(
                        "the cached {what} {} is missing (run `nk-runtime vm-image build`)",
                        p.display()
                    ),
                });
            }
        }
        if s.snapshot.is_some() && s.virtiofs.is_some() {
            return Err(Error::Msg(
                "a template snapshot cannot carry a virtio-fs share (QEMU cannot migrate vhost-user-fs): use 9p".into(),
            ));
        }
        std::fs::create_dir_all(&s.run_dir).map_err(|e| Error::io("create", &s.run_dir, e))?;
        let (ctl_host, ctl_guest) = socketpair()?;
        let qmp = s.snapshot.as_ref().map(|_| socketpair()).transpose()?;
        let (sio_host, sio_guest) = socketpair()?;
        let log = s.run_dir.join("qemu.log");
        let logf = private_file(&log)?;
        // QEMU opens console.log itself (O_TRUNC keeps the mode): the guest
        // console may carry the container's output, so it starts 0600.
        private_file(&s.run_dir.join("console.log"))?;
        let mut cmd = std::process::Command::new(&qemu);
        cmd.args(qemu_args(s))
            .current_dir(&s.run_dir)
            .stdin(std::process::Stdio::null())
            .stdout(logf.try_clone().map_err(|e| Error::io("dup", &log, e))?)
            .stderr(logf);
        // Descriptors for QEMU: the ports at 3 and 4, then the virtio-fs
        // socket (5) when there is one, then the taps.
        let mut fds = vec![ctl_guest.as_raw_fd(), sio_guest.as_raw_fd()];
        fds.extend(s.virtiofs);
        fds.extend(s.nics.iter().map(|n| n.tap_fd));
        fds.extend(qmp.as_ref().map(|(_, g)| g.as_raw_fd()));
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls on descriptors that exist
        // (the vector is allocated before the fork and only read).
        unsafe {
            cmd.pre_exec(move || {
                child_setup(&fds)?;
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| Error::QemuMissing {
            program: qemu.display().to_string(),
            where_: format!(" (it could not be started: {e})"),
        })?;
        drop(ctl_guest);
        drop(sio_guest);
        let qmp = qmp.map(|(h, _guest)| h);
        let pid = child.id() as i32;
        // The Child is forgotten: we reap through the pidfd.
        std::mem::forget(child);
        // Our own child's pid cannot be reused before we reap it.
        let pidfd = sandbox::linux::syscall::pidfd_open(pid)
            .map_err(|e| Error::sys("pidfd_open(qemu)", e))?;
        Ok(Vm {
            pid,
            pidfd,
            control: ctl_host,
            stdio: sio_host,
            run_dir: s.run_dir.clone(),
            started: Instant::now(),
            qmp,
            status: None,
        })
    }

    /// QEMU's exit status if it has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<i32> {
        if self.status.is_some() {
            return self.status;
        }
        // SAFETY: a zeroed siginfo is valid; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid(P_PIDFD) on our pidfd, without blocking.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                self.pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG,
            )
        };
        // SAFETY: si_pid is valid after a successful waitid.
        if r == 0 && unsafe { info.si_pid() } != 0 {
            // SAFETY: si_status is valid for a child exit.
            let st = unsafe { info.si_status() };
            self.status = Some(if info.si_code == libc::CLD_EXITED {
                st
            } else {
                128 + st
            });
        }
        self.status
    }

    /// Wait up to `t` for QEMU to exit.
    pub fn wait_timeout(&mut self, t: Duration) -> Option<i32> {
        let end = Instant::now() + t;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            poll_in(&[self.pidfd.as_raw_fd()], Some(left));
        }
    }

    /// Kill QEMU and reap it.
    pub fn kill(&mut self) {
        if self.try_wait().is_none() {
            let _ = sandbox::linux::syscall::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
            self.wait_timeout(Duration::from_secs(10));
        }
    }

    /// Describe how QEMU ended, with the tails of its logs.
    pub fn exit_error(&mut self) -> Error {
        let st = self.try_wait();
        Error::VmExited {
            status: match st {
                Some(s) if s > 128 => format!("qemu pid {} killed by signal {}", self.pid, s - 128),
                Some(s) => format!("qemu pid {} exit status {s}", self.pid),
                None => format!("qemu pid {} still running", self.pid),
            },
            detail: self.diagnostics(),
        }
    }

    /// The last lines of QEMU's own log and of the guest console.
    pub fn diagnostics(&self) -> String {
        let mut d = String::new();
        let q = tail(&self.run_dir.join("qemu.log"), 5);
        if !q.is_empty() {
            d.push_str(&format!("; qemu said: {q}"));
        }
        let c = tail(&self.run_dir.join("console.log"), 8);
        if !c.is_empty() {
            d.push_str(&format!("; guest console: {c}"));
        } else {
            d.push_str("; the guest console is empty");
        }
        d
    }

    /// Wait for the agent's ready message on the control port.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<vm_protocol::Ready> {
        self.wait_for("the guest agent's ready message", timeout, |m| match m {
            vm_protocol::GuestMsg::Ready(rd) if rd.version != vm_protocol::VERSION => {
                Some(Err(Error::Protocol(format!(
                    "the agent speaks protocol version {}, the host {}: rebuild the image (`nk-runtime vm-image build`)",
                    rd.version,
                    vm_protocol::VERSION
                ))))
            }
            vm_protocol::GuestMsg::Ready(rd) => Some(Ok(rd)),
            _ => None,
        })
    }

    /// Send the first request to a VM restored from a template (before any
    /// other, as id 0, which [`crate::channel::AgentConn`] never uses) and
    /// wait for its answer: the guest's uptime in ms.
    pub fn wake(&mut self, w: vm_protocol::Wake, timeout: Duration) -> Result<u64> {
        let req = vm_protocol::encode_json(&vm_protocol::HostMsg {
            id: 0,
            req: vm_protocol::Request::Wake(w),
        });
        write_all_fd(self.control.as_raw_fd(), &req)
            .map_err(|e| Error::Protocol(format!("write to the control port: {e}")))?;
        self.wait_for("the restored guest agent's answer", timeout, |m| match m {
            vm_protocol::GuestMsg::Reply {
                id: 0,
                error: Some(e),
                ..
            } => Some(Err(Error::Remote(format!("the restored agent: {e}")))),
            vm_protocol::GuestMsg::Reply {
                id: 0,
                ok: Some(vm_protocol::Reply::Pong { uptime_ms }),
                ..
            } => Some(Ok(uptime_ms)),
            vm_protocol::GuestMsg::Reply { id: 0, ok, .. } => Some(Err(Error::Protocol(format!(
                "the restored agent answered wake with {ok:?}"
            )))),
            _ => None,
        })
    }

    /// Read control-port messages until `pick` accepts one (other messages
    /// are dropped: nothing else is expected before the container exists).
    fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        pick: impl Fn(vm_protocol::GuestMsg) -> Option<Result<T>>,
    ) -> Result<T> {
        let end = Instant::now() + timeout;
        let mut r = vm_protocol::FrameReader::new();
        let mut buf = [0u8; 4096];
        set_nonblocking(self.control.as_raw_fd());
        loop {
            while let Some(body) = r.next_frame().map_err(|e| Error::Protocol(e.to_string()))? {
                match vm_protocol::decode_json::<vm_protocol::GuestMsg>(&body) {
                    Ok(m) => {
                        if let Some(v) = pick(m) {
                            return v;
                        }
                    }
                    Err(e) => return Err(Error::Protocol(e.to_string())),
                }
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let detail = self.diagnostics();
                return Err(Error::Timeout {
                    what: what.into(),
                    secs: timeout.as_secs(),
                    detail,
                });
            }
            poll_in(
                &[self.control.as_raw_fd(), self.pidfd.as_raw_fd()],
                Some(left),
            );
            match read_nb(self.control.as_raw_fd(), &mut buf) {
                ReadResult::Data(n) => r.push(&buf[..n]),
                ReadResult::Eof => {
                    self.wait_timeout(Duration::from_secs(2));
                    return Err(self.exit_error());
                }
                ReadResult::WouldBlock => {}
            }
            if self.try_wait().is_some() {
                return Err(self.exit_error());
            }
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Create (or empty) a file readable by its owner only.
fn private_file(p: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(p)
        .map_err(|e| Error::io("create", p, e))?;
    // An existing file keeps its mode through O_CREAT: set it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("chmod", p, e))?;
    Ok(f)
}

/// The last `n` non-empty lines of a text file, joined with " | ".
pub fn tail(p: &Path, n: usize) -> String {
    let data = std::fs::read(p).unwrap_or_default();
    let from = data.len().saturating_sub(4096);
    let text = String::from_utf8_lossy(&data[from..]);
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').trim())
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Make a descriptor non-blocking.
pub fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on a descriptor the caller owns.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// The result of a non-blocking read.
pub enum ReadResult {
    Data(usize),
    Eof,
    WouldBlock,
}

/// Read without blocking (EINTR and EAGAIN read as WouldBlock).
pub fn read_nb(fd: i32, buf: &mut [u8]) -> ReadResult {
    // SAFETY: read into a buffer we own, of its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n > 0 {
        ReadResult::Data(n as usize)
    } else if n == 0 {
        ReadResult::Eof
    } else {
        match nix::errno::Errno::last() {
            nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR => ReadResult::WouldBlock,
            // EIO: a pty whose other side closed.
            _ => ReadResult::Eof,
        }
    }
}

/// Wait until one of `fds` is readable (or hung up), or the timeout passes.
pub fn poll_in(fds: &[i32], timeout: Option<Duration>) {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout
        .map(|t| t.as_millis().min(i32::MAX as u128) as i32)
        .unwrap_or(-1);
    // SAFETY: poll over a vector that lives for the call.
    unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
}

/// Write all of `data` to a blocking-or-not descriptor, waiting when full.
pub fn write_all_fd(fd: i32, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        // SAFETY: write from a live buffer.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    let mut p = libc::pollfd {
                        fd,
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: poll one pollfd that lives for the call.
                    unsafe { libc::poll(&mut p, 1, 1000) };
                    continue;
                }
                _ => return Err(e),
            }
        }
        data = &data[n as usize..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_have_ports_share_and_tsc() {
        let s = VmSpec {
            vmlinux: "/c/vmlinux".into(),
            initramfs: "/c/a,b.cpio".into(),
            vcpus: 2,
            memory_mib: 300,
            share: Some("/s".into()),
            virtiofs: None,
            append: vec!["nk_debug=1".into()],
            run_dir: "/r".into(),
            accel: Accel::Tcg,
            nics: vec![NicSpec {
                tap_fd: 9,
                mac: "02:42:0a:58:00:05".into(),
            }],
            snapshot: None,
        };
        let a = qemu_args(&s).join(" ");
        assert!(
            a.contains("-M microvm -accel tcg -cpu max -m 300 -smp 2"),
            "{a}"
        );
        assert!(a.contains("/c/a,,b.cpio"), "{a}");
        assert!(a.contains(&format!("name={}", vm_protocol::CONTROL_PORT)));
        assert!(a.contains("mount_tag=nkshare"));
        assert!(a.contains("nk_debug=1"));
        assert!(
            a.contains("-netdev tap,id=net0,fd=5,vhost=off -device virtio-net-device,netdev=net0,mac=02:42:0a:58:00:05"),
            "{a}"
        );
        if tsc_khz().is_some() {
            assert!(a.contains("tsc_early_khz="));
        }
        let k = qemu_args(&VmSpec {
            accel: Accel::Kvm,
            share: None,
            virtiofs: None,
            nics: vec![],
            snapshot: None,
            ..s
        })
        .join(" ");
        assert!(
            k.contains("-accel kvm -cpu host")
                && !k.contains("tsc_early_khz")
                && !k.contains("9p")
                && !k.contains("netdev")
        );
    }

    #[test]
    fn missing_qemu_is_named() {
        std::env::set_var("NK_QEMU", "/nonexistent/qemu-x");
        let e = find_qemu().unwrap_err().to_string();
        std::env::remove_var("NK_QEMU");
        assert!(
            e.contains("/nonexistent/qemu-x") && e.contains("apt-get install qemu-system-x86"),
            "{e}"
        );
    }
}
