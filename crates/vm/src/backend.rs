//! VM mode as a backend of the runc verbs, beside the library's container
//! mode (crun's `krun` handler plays this part there). `create` takes the
//! same steps as container mode, through the same library calls (state
//! claim, cgroup, exec FIFO, hooks, pid file, the undo of a failed create),
//! but its container's pid is the monitor's (`nk-runtime vm-monitor`, in
//! that cgroup), which boots the VM and creates the container through the
//! agent. The other verbs talk to the monitor over monitor.sock; once it is
//! gone the container is stopped, and `delete` cleans up as in container
//! mode (cgroup, poststop hooks, state directory).

use crate::error::{Error, Result};
use crate::monitor::{self, ClientMsg, ClientReq, MonitorConfig, Report};
use sandbox::container::{Cleanup, CreateOptions, ExecOptions, Runtime};
use sandbox::explain::{self, catalog};
use sandbox::linux::console;
use sandbox::process::sync::Channel;
use sandbox::process::wait;
use sandbox::state::{self, ContainerState, DirLock, Mode, Phase, Status, VmRecord};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use vm_protocol::{ProcInfo, Reply};

/// Default VM size.
const DEFAULT_VCPUS: u32 = 1;
const DEFAULT_MEMORY_MIB: u32 = 256;
/// Memory the guest kernel and agent need besides the container's limit.
const GUEST_OVERHEAD_MIB: u64 = 160;
/// runc's exit code when exec itself fails (not the program).
const EXEC_FAILED: i32 = 255;

/// The VM size asked for on the command line (`--vm-vcpus`,
/// `--vm-memory`); the annotations and the defaults fill what is not.
#[derive(Debug, Clone, Copy, Default)]
pub struct SizeFlags {
    pub vcpus: Option<u32>,
    pub memory_mib: Option<u32>,
}

/// The VM backend: the library's runtime settings plus the VM size and
/// how it starts (`--vm-boot`).
#[derive(Debug, Clone)]
pub struct VmBackend {
    pub rt: Runtime,
    pub size: SizeFlags,
    pub boot: Option<crate::template::Boot>,
}

/// A created VM container, for `run`: the monitor stands for it.
pub struct Created {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

/// Annotation that sizes the VM's vCPUs (as `--vm-vcpus`).
pub const VCPUS_ANNOTATION: &str = "org.nano-sandbox.vm.vcpus";
/// Annotation that sizes the VM's memory in MiB (as `--vm-memory`).
pub const MEMORY_ANNOTATION: &str = "org.nano-sandbox.vm.memory-mib";

/// The annotations VM mode reads and the values each takes, for
/// `features`.
pub fn annotations() -> Vec<(&'static str, String)> {
    let range = |r: &std::ops::RangeInclusive<u32>| format!("{}-{}", r.start(), r.end());
    vec![
        (crate::template::ANNOTATION, "template|cold".into()),
        (crate::virtiofs::ANNOTATION, "9p|virtiofs".into()),
        (VCPUS_ANNOTATION, range(&VCPUS)),
        (MEMORY_ANNOTATION, range(&MEMORY_MIB)),
    ]
}

/// The vCPUs and MiB of memory a VM may have.
const VCPUS: std::ops::RangeInclusive<u32> = 1..=64;
const MEMORY_MIB: std::ops::RangeInclusive<u32> = 128..=262_144;

/// The VM size from the flags, the annotations and the memory limit.
pub fn vm_size(f: &SizeFlags, cfg: &oci_spec::runtime::Spec) -> Result<(u32, u32)> {
    let ann = |k: &str| -> Result<Option<u32>> {
        match cfg.annotations().as_ref().and_then(|a| a.get(k)) {
            None => Ok(None),
            Some(v) => v.parse::<u32>().map(Some).map_err(|_| {
                Error::Msg(format!(
                    "annotation {k}={v:?}: give a positive whole number"
                ))
            }),
        }
    };
    let vcpus = match f.vcpus {
        Some(n) => n,
        None => ann(VCPUS_ANNOTATION)?.unwrap_or(DEFAULT_VCPUS),
    };
    let mut mem = match f.memory_mib {
        Some(n) => n,
        None => ann(MEMORY_ANNOTATION)?.unwrap_or(DEFAULT_MEMORY_MIB),
    };
    if !VCPUS.contains(&vcpus) {
        return Err(Error::Msg(format!(
            "VM vCPUs {vcpus}: use {} to {} (--vm-vcpus or {VCPUS_ANNOTATION})",
            VCPUS.start(),
            VCPUS.end()
        )));
    }
    if !MEMORY_MIB.contains(&mem) {
        return Err(Error::Msg(format!(
            "VM memory {mem} MiB: use {} to {} (--vm-memory or {MEMORY_ANNOTATION})",
            MEMORY_MIB.start(),
            MEMORY_MIB.end()
        )));
    }
    if let Some(limit) = cfg
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|l| *l > 0)
    {
        let need = ((limit as u64).div_ceil(1 << 20) + GUEST_OVERHEAD_MIB).min(262_144) as u32;
        mem = mem.max(need);
    }
    Ok((vcpus, mem))
}

/// Kill the monitor and the QEMU a record names (each checked by its start
/// time, so a reused pid is left alone).
fn kill_recorded(st: &ContainerState) {
    if st.pid > 0 && st.init_alive() {
        // SAFETY: kill(2) the monitor recorded for this container (pid and start time checked).
        unsafe { libc::kill(st.pid, libc::SIGKILL) };
    }
    let (q, qs) = st.mode.vm().map_or((0, 0), |r| (r.qemu_pid, r.qemu_start));
    if q > 0 && state::same_process_alive(q, qs) {
        // SAFETY: kill(2) the QEMU recorded for this container (pid and start time checked).
        unsafe { libc::kill(q, libc::SIGKILL) };
    }
}

fn pty_pair() -> Result<(OwnedFd, OwnedFd)> {
    let sys = |op: &'static str| move |e| Error::sys(op, e);
    let m = nix::pty::posix_openpt(
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
    )
    .map_err(sys("posix_openpt"))?;
    nix::pty::grantpt(&m).map_err(sys("grantpt"))?;
    nix::pty::unlockpt(&m).map_err(sys("unlockpt"))?;
    let name = nix::pty::ptsname_r(&m).map_err(sys("ptsname"))?;
    let s = nix::fcntl::open(
        name.as_str(),
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {name}"), e))?;
    // SAFETY: the master's descriptor is ours; PtyMaster gives it up here.
    let m = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(m)) };
    // The guest's own pty does the line discipline; this one only relays
    // bytes (cooked, it would turn the guest's \r\n into \r\r\n).
    let _ = console::make_raw(s.as_fd());
    Ok((m, s))
}

/// Send a pty master to --console-socket, as runc does.
fn send_console(sock: &Path, master: &OwnedFd) -> Result<()> {
    let s = console::connect(sock)?;
    console::send_fd(s.as_fd(), master.as_fd(), "/dev/ptmx")?;
    Ok(())
}

/// The template of a VM of the default size (`vm-image build` makes it
/// ahead of the first create).
pub fn ensure_default_template(
    image: &crate::image::Image,
    accel: crate::qemu::Accel,
    progress: &dyn Fn(String),
) -> Result<crate::template::Ensured> {
    let shape = crate::template::Shape {
        kernel: image.kernel_version.clone(),
        vmlinux: image.vmlinux.clone(),
        initramfs: image.initramfs.clone(),
        vcpus: DEFAULT_VCPUS,
        memory_mib: DEFAULT_MEMORY_MIB,
        accel,
        append: append_words(),
        nics: 0,
    };
    let t = std::time::Duration::from_secs(ready_timeout_secs());
    crate::template::ensure(&shape, t, progress)
}

/// How long a guest gets to reach its agent (NK_VM_READY_TIMEOUT, in s).
fn ready_timeout_secs() -> u64 {
    std::env::var("NK_VM_READY_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// Extra kernel command line words (NK_VM_APPEND).
fn append_words() -> Vec<String> {
    std::env::var("NK_VM_APPEND")
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// A note on stderr; dropped if stderr is gone (eprintln! would panic).
fn note(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "nk-runtime: {msg}");
}

fn progress(p: crate::image::Progress) {
    match p {
        crate::image::Progress::Step(s) => note(&format!("{s} (once; cached afterwards)")),
        crate::image::Progress::Done(s) => note(&s),
        crate::image::Progress::Bytes(..) => {}
    }
}

/// Ask the monitor to shut the VM down, wait for it (up to 10 s), then
/// kill whatever of the monitor and QEMU is left.
fn shutdown(dir: &Path, st: &ContainerState) {
    if let Ok(c) = monitor::Client::connect(dir) {
        let _ = c.call(&ClientReq::Shutdown);
    }
    // Wait for the monitor to go (it powers the VM off first).
    wait_monitor(st, 10_000);
    kill_recorded(st);
}

/// Wait up to `ms` for the container's monitor to exit.
pub(crate) fn wait_monitor(st: &ContainerState, ms: i32) {
    if let Ok(pidfd) = sandbox::linux::hooks::pidfd_open(st.pid) {
        if st.init_alive() {
            let mut p = libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll one pollfd that lives for the call.
            unsafe { libc::poll(&mut p, 1, ms) };
        }
    }
}

/// What `create` checked before making anything.
struct Checked {
    bundle: sandbox::spec::Bundle,
    /// config.json, for the monitor to rewrite for the guest.
    config: oci_spec::runtime::Spec,
    terminal: bool,
    vcpus: u32,
    memory_mib: u32,
    image: crate::image::Image,
    accel: crate::qemu::Accel,
    /// --preserve-fds: which way each of fds 3.. carries data.
    preserve_fds: Vec<vm_protocol::Carry>,
    share_fs: crate::virtiofs::ShareFs,
    /// The pod VM the container runs in, when it joins one (crate::pod).
    pod: Option<crate::monitor::PodJoin>,
    /// The template snapshot to start from; None: a cold boot, for `cold_why`.
    template: Option<crate::template::Template>,
    cold_why: String,
    /// Set by `restore`: the checkpoint the agent restores from.
    restore: Option<monitor::RestoreFrom>,
}

/// Host-side hooks, as in container mode (the guest's copy of the config
/// has none): prestart and createRuntime once the monitor is in the
/// container's network namespace, before the VM boots, with the monitor's
/// pid in their state (Docker's hook configures the network through it).
fn create_hooks(
    b: &sandbox::spec::Bundle,
    id: &str,
    pid: i32,
    record: &ContainerState,
) -> Result<()> {
    let Some(h) = b.spec.hooks() else {
        return Ok(());
    };
    let st = sandbox::container::hook_state(
        id,
        sandbox::state::OciStatus::Created,
        pid,
        &b.dir,
        &record.annotations,
    );
    #[allow(deprecated)]
    let lists = [
        ("prestart", h.prestart()),
        ("createRuntime", h.create_runtime()),
    ];
    for (kind, list) in lists {
        if let Some(list) = list {
            let at = sandbox::linux::hooks::Inherit::runtime(&b.dir);
            sandbox::linux::hooks::run(kind, list, &st, at)?;
        }
    }
    Ok(())
}

/// createContainer and startContainer hooks run inside the guest, where
/// only the container's files exist: each path must be found in the rootfs
/// (symlinks resolved inside it) or in a bind mount's source, or the config
/// is refused before anything is made, rather than the hook silently skipped.
fn guest_hooks_present(b: &sandbox::spec::Bundle) -> Result<()> {
    let Some(h) = b.spec.hooks() else {
        return Ok(());
    };
    let rootfs = b.rootfs();
    let lists = [
        ("createContainer", h.create_container()),
        ("startContainer", h.start_container()),
    ];
    for (kind, list) in lists {
        for (i, hook) in list.iter().flatten().enumerate() {
            let path = hook.path();
            // The deepest bind mount holding the path, else the rootfs.
            let (base, rest) = b
                .spec
                .mounts()
                .iter()
                .flatten()
                .filter(|m| sandbox::spec::is_bind(m) && path.starts_with(m.destination()))
                .max_by_key(|m| m.destination().components().count())
                .and_then(|m| {
                    let src = m.source().as_ref()?;
                    let rest = path.strip_prefix(m.destination()).ok()?.to_path_buf();
                    Some((b.dir.join(src), rest))
                })
                .unwrap_or_else(|| (rootfs.clone(), path.to_path_buf()));
            let found = std::fs::File::open(&base).ok().and_then(|d| {
                let f = if rest.as_os_str().is_empty() {
                    d.into()
                } else {
                    sandbox::linux::fs::open_in_root(d.as_fd(), &rest, nix::fcntl::OFlag::O_PATH)
                        .ok()?
                };
                nix::sys::stat::fstat(&f).ok()
            });
            if found.is_none_or(|st| st.st_mode & libc::S_IFMT != libc::S_IFREG) {
                return Err(Error::Msg(format!(
                    "hooks.{kind}[{i}].path {}: no such file in the container's rootfs ({}) or its bind mounts; in VM mode {kind} hooks run inside the guest, which has only the container's files: put the hook in the image, or use --mode=container",
                    path.display(),
                    rootfs.display()
                )));
            }
        }
    }
    Ok(())
}

/// The share's filesystem for a config (the annotation, virtiofsd, the
/// guest kernel's modules): the choice `check` reports too.
pub fn share_fs(config: &oci_spec::runtime::Spec) -> Result<crate::virtiofs::Choice> {
    let ann = config
        .annotations()
        .as_ref()
        .and_then(|a| a.get(crate::virtiofs::ANNOTATION))
        .map(String::as_str);
    let has = crate::image::find_kernel()
        .map(|k| crate::modules::has(&k.modules_root, &k.version, "virtiofs"))
        .unwrap_or(false);
    crate::virtiofs::choose(ann, has)
}

/// "virtio-fs" or "9p".
pub fn share_name(fs: &crate::virtiofs::ShareFs) -> &'static str {
    match fs {
        crate::virtiofs::ShareFs::VirtioFs { .. } => "virtio-fs",
        crate::virtiofs::ShareFs::NineP => "9p",
    }
}

impl VmBackend {
    /// `create` (and the first half of `run`, with `o.foreground`), in the
    /// order of container mode: check, claim, start (here: the monitor
    /// and the VM), hooks, record. A failure undoes what was made.
    pub fn create(&self, o: &CreateOptions) -> Result<Created> {
        self.create_from(o, None)
    }

    /// `create`, or with `restore` the first half of `restore`: the same
    /// steps, but the agent restores the container from a checkpoint
    /// (crate::checkpoint), which is then running (no exec FIFO).
    pub(crate) fn create_from(
        &self,
        o: &CreateOptions,
        restore: Option<monitor::RestoreFrom>,
    ) -> Result<Created> {
        let mut p = self.check(o)?;
        if let (Some(_), Some(pod)) = (&restore, &p.pod) {
            return Err(Error::Msg(format!(
                "restore of a container that joins the namespaces of VM-mode container {} (a pod): not supported; restore it as a container of its own",
                pod.id
            )));
        }
        let restoring = restore.is_some();
        p.restore = restore;
        let (dir, _lock, mut record, mut undo) = self.claim(o, &p, !restoring)?;
        let tty_slave = match (&o.console_socket, p.terminal) {
            (Some(sock), true) => {
                let (m, s) = pty_pair()?;
                send_console(sock, &m)?;
                Some(s)
            }
            _ => None,
        };
        let boot = explain::phase(explain::Phase::Vm);
        let parent = self.start_monitor(o, &p, &dir, tty_slave, &mut undo, &mut record)?;
        let mlog = dir.join(monitor::LOG);
        let recv = || match parent.recv::<Report>() {
            Ok(Some((r, _))) => r,
            _ => Report::Failed(format!(
                "the VM monitor exited during create; see {}",
                mlog.display()
            )),
        };
        let mut report = recv();
        if let Report::Netns = report {
            // The hooks see the monitor's pid, now in the container's
            // network namespace; what they put there goes into the VM.
            // On failure the undo guard stops the monitor, which waits.
            create_hooks(&p.bundle, &o.id, record.pid, &record)?;
            parent.send(&"boot")?;
            report = recv();
        }
        let (guest_pid, qemu_pid, boot_ms, net, booted) = match report {
            Report::Created {
                guest_pid,
                qemu_pid,
                boot_ms,
                net,
                boot,
            } => (guest_pid, qemu_pid, boot_ms, net, boot),
            Report::Failed(e) if restoring => {
                return Err(Error::Msg(format!("in the new VM: {e}")))
            }
            Report::Failed(e) => return Err(Error::Msg(format!("create failed: {e}"))),
            Report::Netns => return Err(Error::Msg("the VM monitor reported twice".into())),
        };
        drop(boot);
        let mpid = record.pid;
        let (vcpus, memory_mib, accel) = (p.vcpus, p.memory_mib, p.accel);
        explain::step(&catalog::VM_MONITOR, || {
            match &p.pod {
            Some(pod) => format!("monitor pid {mpid} stands for the container, which runs in the VM of pod container {} (qemu pid {qemu_pid}); its init is pid {guest_pid} in the guest", pod.id),
            None => format!("monitor pid {mpid}, qemu pid {qemu_pid} ({}, {vcpus} vCPU, {memory_mib} MiB), the container's init is pid {guest_pid} in the guest, ready in {boot_ms} ms", accel.as_str()),
        }
        });
        if p.pod.is_none() {
            explain::step(&catalog::VM_BOOT, || booted);
        }
        explain::step(&catalog::VM_NET, || net);
        if restoring {
            explain::step(&catalog::VM_RESTORE, || {
                format!("the agent had CRIU restore the container in the guest: its init is pid {guest_pid} there, running")
            });
        }
        record.phase = Some(Phase::Created);
        explain::step(&catalog::STATE_CREATED, || {
            format!("pid {mpid} (the monitor)")
        });
        // A pod member's QEMU is its pod's: not this record's to kill.
        let (qemu_pid, pod) = match &p.pod {
            Some(pod) => (0, Some(pod.id.clone())),
            None => (qemu_pid, None),
        };
        record.mode = Mode::Vm(VmRecord {
            qemu_pid,
            qemu_start: if qemu_pid > 0 {
                state::proc_stat(qemu_pid).map(|s| s.start).unwrap_or(0)
            } else {
                0
            },
            pod,
            guest_pid,
            vcpus,
            memory_mib,
            accel: accel.as_str().into(),
            boot_ms,
            kernel: p.image.kernel_version.clone(),
        });
        record.save(&dir)?;
        if let Some(pf) = &o.pid_file {
            sandbox::container::write_pid_file(pf, mpid)?;
        }
        undo.armed = false;
        let (pid, pidfd) = undo.child.take().expect("set by start_monitor");
        Ok(Created { pid, pidfd })
    }

    /// The bundle, the options and the host, checked before anything is
    /// made, so a failure leaves nothing: QEMU installed, the guest image
    /// cached (built on first use), the accelerator chosen.
    fn check(&self, o: &CreateOptions) -> Result<Checked> {
        state::validate_id(&o.id)?;
        let bundle = sandbox::spec::load(&o.bundle)?;
        explain::step(&catalog::SPEC_LOAD, || {
            bundle.config_path.display().to_string()
        });
        sandbox::spec::validate(
            &bundle,
            sandbox::spec::ValidateOpts {
                need_process: true,
                check_rootfs: true,
            },
        )?;
        let config = bundle.spec.clone();
        if sandbox::linux::netdevices::wanted(config.linux().as_ref()) {
            return Err(Error::Msg(format!(
                "{}: linux.netDevices: not supported in VM mode (the guest has its own kernel; a host device cannot be moved into it): use --mode=container",
                bundle.config_path.display()
            )));
        }
        let terminal = config.process().as_ref().and_then(|p| p.terminal()) == Some(true);
        if terminal && o.console_socket.is_none() && !o.foreground {
            return Err(Error::Msg("cannot allocate tty if runc will detach without setting console socket: give --console-socket, or set process.terminal to false".into()));
        }
        if !terminal && o.console_socket.is_some() {
            return Err(Error::Msg("cannot use console socket if runc will not detach or allocate tty: process.terminal is false".into()));
        }
        let preserve_fds = crate::fds::classify(o.preserve_fds)?;
        guest_hooks_present(&bundle)?;
        let (vcpus, memory_mib) = vm_size(&self.size, &config)?;
        crate::net::check(&config)?;
        if let Some(pod) = crate::pod::find(&config, &self.rt)? {
            return self.check_member(bundle, config, terminal, preserve_fds, pod);
        }
        crate::qemu::find_qemu()?;
        let image = crate::image::ensure(&progress)?;
        explain::step(&catalog::VM_IMAGE, || {
            format!(
                "kernel {}: {}, {}",
                image.kernel_version,
                image.vmlinux.display(),
                image.initramfs.display()
            )
        });
        let accel = crate::qemu::choose_accel(&image, &note);
        explain::step(&catalog::VM_ACCEL, || accel.as_str().to_string());
        // The share of a cold boot (which also checks the annotation).
        let share = share_fs(&config)?;
        let append = append_words();
        let (template, cold_why) =
            self.template_for(&config, &image, accel, vcpus, memory_mib, &append)?;
        explain::step(&catalog::VM_SHARE, || {
            match &template {
            Some(_) if share.fs != crate::virtiofs::ShareFs::NineP => format!(
                "9p: a VM started from a template carries its share over 9p (QEMU cannot migrate virtio-fs); a cold boot would use {} ({})",
                share_name(&share.fs),
                share.why
            ),
            _ => format!("{}: {}", share_name(&share.fs), share.why),
        }
        });
        Ok(Checked {
            bundle,
            config,
            terminal,
            vcpus,
            memory_mib,
            image,
            accel,
            preserve_fds,
            share_fs: share.fs,
            pod: None,
            template,
            cold_why,
            restore: None,
        })
    }

    /// The template snapshot this VM starts from, built on first use; or
    /// None and why the VM boots cold instead (asked for, a virtio-fs
    /// share forced, or no template could be made: never an error).
    fn template_for(
        &self,
        config: &oci_spec::runtime::Spec,
        image: &crate::image::Image,
        accel: crate::qemu::Accel,
        vcpus: u32,
        memory_mib: u32,
        append: &[String],
    ) -> Result<(Option<crate::template::Template>, String)> {
        use crate::template::{self, Boot, Ensured};
        let (boot, asked) = template::requested(self.boot, config)?;
        let forced_virtiofs = config
            .annotations()
            .as_ref()
            .and_then(|a| a.get(crate::virtiofs::ANNOTATION))
            .is_some_and(|v| v == "virtiofs");
        let cold = |why: String| {
            sandbox::logging::debug(|| format!("VM boot: cold: {why}"));
            explain::step(&catalog::VM_TEMPLATE, || format!("cold boot: {why}"));
            Ok((None, why))
        };
        if boot == Boot::Cold {
            return cold(format!("asked for ({asked})"));
        }
        if forced_virtiofs {
            return cold(format!(
                "{}=virtiofs: QEMU cannot migrate a virtio-fs device, so a template cannot carry it",
                crate::virtiofs::ANNOTATION
            ));
        }
        let shape = template::Shape {
            kernel: image.kernel_version.clone(),
            vmlinux: image.vmlinux.clone(),
            initramfs: image.initramfs.clone(),
            vcpus,
            memory_mib,
            accel,
            append: append.to_vec(),
            nics: 0,
        };
        let timeout = std::time::Duration::from_secs(ready_timeout_secs());
        match template::ensure(&shape, timeout, &|m| {
            note(&format!("{m} (once; cached afterwards)"))
        }) {
            Ok(Ensured::Cached(t)) => {
                explain::step(&catalog::VM_TEMPLATE, || {
                    format!("restore from {} ({asked})", t.dir.display())
                });
                Ok((Some(t), String::new()))
            }
            Ok(Ensured::Built(t, ms)) => {
                explain::step(&catalog::VM_TEMPLATE, || {
                    format!(
                        "restore from {}, built now: its guest booted to the agent in {ms} ms and was saved",
                        t.dir.display()
                    )
                });
                Ok((Some(t), String::new()))
            }
            Err(e) => cold(format!("no template: {e}")),
        }
    }

    /// A container that joins a pod VM's namespaces runs in that VM: it
    /// takes the VM's kernel, accelerator and share, and what it cannot
    /// have there is refused by name.
    fn check_member(
        &self,
        bundle: sandbox::spec::Bundle,
        config: oci_spec::runtime::Spec,
        terminal: bool,
        preserve_fds: Vec<vm_protocol::Carry>,
        pod: crate::monitor::PodJoin,
    ) -> Result<Checked> {
        if !preserve_fds.is_empty() {
            return Err(Error::Msg(format!(
                "--preserve-fds {}: not supported for a container that runs in a pod's VM (it joins the namespaces of VM-mode container {}); pass the data another way, or use --mode=container",
                preserve_fds.len(),
                pod.id
            )));
        }
        // The VM exists: its size is its first container's. A member that
        // asks for more than that is refused rather than silently given less.
        let ann = |k: &str| {
            config
                .annotations()
                .as_ref()
                .is_some_and(|a| a.contains_key(k))
        };
        let (vcpus, memory_mib) = vm_size(&self.size, &config)?;
        let limit = config
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .is_some_and(|l| l > 0);
        if (self.size.vcpus.is_some() || ann(VCPUS_ANNOTATION)) && vcpus > pod.vcpus {
            return Err(Error::Msg(format!(
                "{vcpus} vCPUs asked for, but this container runs in the VM of pod container {}, which has {}: a running VM cannot grow; size the pod's first container (--vm-vcpus or org.nano-sandbox.vm.vcpus)",
                pod.id, pod.vcpus
            )));
        }
        if (self.size.memory_mib.is_some() || ann(MEMORY_ANNOTATION) || limit)
            && memory_mib > pod.memory_mib
        {
            return Err(Error::Msg(format!(
                "{memory_mib} MiB of VM memory needed (the memory limit plus {GUEST_OVERHEAD_MIB} MiB, or as asked), but this container runs in the VM of pod container {}, which has {} MiB: a running VM cannot grow; size the pod's first container (--vm-memory or org.nano-sandbox.vm.memory-mib)",
                pod.id, pod.memory_mib
            )));
        }
        let pc = crate::pod::pod_config(&pod)?;
        explain::step(&catalog::VM_POD, || {
            let ns = if pod.joined.is_empty() {
                "by its sandbox annotation".to_string()
            } else {
                pod.joined.join("; ")
            };
            format!(
                "the VM of pod container {} (qemu pid {}, {} over {}): {ns}",
                pod.id,
                pod.qemu_pid,
                pc.accel.as_str(),
                share_name(&pc.share_fs)
            )
        });
        Ok(Checked {
            bundle,
            config,
            terminal,
            vcpus: pod.vcpus,
            memory_mib: pod.memory_mib,
            image: crate::image::Image {
                kernel_version: pod.kernel.clone(),
                vmlinux: pc.vmlinux,
                initramfs: pc.initramfs,
                agent: PathBuf::new(),
                agent_hash: String::new(),
            },
            accel: pc.accel,
            preserve_fds,
            share_fs: pc.share_fs,
            pod: Some(pod),
            template: None,
            cold_why: String::new(),
            restore: None,
        })
    }

    /// The library's first steps of create: the record (mode `vm`), the
    /// state claim (a killed create's monitor and QEMU are reaped too), the
    /// config copy, the exec FIFO and the host cgroup, with the undo guard.
    fn claim(
        &self,
        o: &CreateOptions,
        p: &Checked,
        fifo: bool,
    ) -> Result<(PathBuf, DirLock, ContainerState, Cleanup<'_>)> {
        let rt = &self.rt;
        let b = &p.bundle;
        let store = state::Store::open(&rt.store.root)?;
        let me = std::process::id() as i32;
        let mut record = ContainerState {
            id: o.id.clone(),
            creator_pid: me,
            creator_start: state::proc_stat(me).map(|s| s.start).unwrap_or(0),
            bundle: b.dir.clone(),
            rootfs: b.rootfs(),
            created: sandbox::time::now_rfc3339_nanos(),
            annotations: b.annotations().into_iter().collect(),
            phase: Some(Phase::Creating),
            mode: Mode::Vm(VmRecord::default()),
            rootless: rt.rootless,
            owner_uid: nix::unistd::geteuid().as_raw(),
            ..Default::default()
        };
        // Rootless VMs get no host cgroup (the guest enforces the limits).
        let cgroup = if rt.rootless {
            None
        } else {
            rt.cgroup_for(b, &o.id)?
        };
        // Only the cgroup, no limits: QEMU's own memory is larger than the
        // container's limit, which the guest enforces itself.
        let (dir, lock, undo) =
            rt.claim_state(&store, b, &mut record, cgroup, false, &|stale| {
                kill_recorded(stale);
                rt.reap_stale(stale);
            })?;
        if fifo {
            let fifo = dir.join(state::FIFO_FILE);
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| Error::sys(format!("mkfifo {}", fifo.display()), e))?;
        }
        Ok((dir, lock, record, undo))
    }

    /// Start the monitor (`nk-runtime vm-monitor ID`) in the container's
    /// cgroup, record it as the container's pid and let it boot; returns
    /// the channel on which it reports.
    fn start_monitor(
        &self,
        o: &CreateOptions,
        p: &Checked,
        dir: &Path,
        tty_slave: Option<OwnedFd>,
        undo: &mut Cleanup<'_>,
        record: &mut ContainerState,
    ) -> Result<Channel> {
        let rt = &self.rt;
        let mcfg = MonitorConfig {
            id: o.id.clone(),
            state_dir: dir.to_path_buf(),
            bundle: p.bundle.dir.clone(),
            config: p.config.clone(),
            rootfs: p.bundle.rootfs(),
            vcpus: p.vcpus,
            memory_mib: p.memory_mib,
            vmlinux: p.image.vmlinux.clone(),
            initramfs: p.image.initramfs.clone(),
            accel: p.accel,
            systemd_cgroup: rt.systemd_cgroup,
            no_pivot: o.no_pivot,
            no_new_keyring: o.no_new_keyring,
            log_level: rt.log_level.as_str().into(),
            append: append_words(),
            ready_timeout_secs: ready_timeout_secs(),
            tty_fd: tty_slave.as_ref().map(|_| 4),
            preserve_fds: p.preserve_fds.clone(),
            share_fs: p.share_fs.clone(),
            pod: p.pod.clone(),
            template: p.template.clone(),
            cold_why: p.cold_why.clone(),
            kernel: p.image.kernel_version.clone(),
            restore: p.restore.clone(),
        };
        let mpath = dir.join(monitor::CONFIG);
        let mjson = serde_json::to_vec(&mcfg)
            .map_err(|e| Error::Msg(format!("encode {}: {e}", mpath.display())))?;
        sandbox::files::create_new(&mpath, &mjson, 0o600)?;
        // The monitor appends to its log through --log: make it private first.
        let mlog = dir.join(monitor::LOG);
        sandbox::files::create_new(&mlog, b"", 0o600)?;

        let (parent, child) = Channel::pair()?;
        let mut cmd = std::process::Command::new("/proc/self/exe");
        cmd.arg("--root")
            .arg(&rt.store.root)
            .arg("--log")
            .arg(&mlog)
            .arg("--log-level")
            .arg(rt.log_level.as_str())
            .arg("vm-monitor")
            .arg(&o.id);
        if tty_slave.is_some() {
            // The container's stdio is the pty: the monitor must not hold ours.
            // (go-runc reads create's output until EOF; a held pipe hangs it.)
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
        }
        // The preserved descriptors go to the monitor with its go-ahead, not
        // by inheritance: the monitor's 3 and 4 are taken, and QEMU must not
        // hold them.
        let preserved: Vec<i32> = (3..3 + p.preserve_fds.len() as i32).collect();
        for fd in &preserved {
            // SAFETY: F_SETFD on a descriptor that check() found open.
            unsafe { libc::fcntl(*fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        let sync_fd = child.as_fd().as_raw_fd();
        let tty_fd = tty_slave.as_ref().map(|s| s.as_raw_fd()).unwrap_or(-1);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                let a = libc::fcntl(sync_fd, libc::F_DUPFD, 10);
                let t = if tty_fd >= 0 {
                    libc::fcntl(tty_fd, libc::F_DUPFD, 10)
                } else {
                    -1
                };
                if a < 0 || libc::dup2(a, 3) < 0 || (t >= 0 && libc::dup2(t, 4) < 0) {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child_proc = cmd
            .spawn()
            .map_err(|e| Error::Msg(format!("start the VM monitor: {e}")))?;
        drop(child);
        let mpid = child_proc.id() as i32;
        // The undo (and run) wait for the monitor through its pidfd.
        std::mem::forget(child_proc);
        let pidfd = sandbox::linux::hooks::pidfd_open(mpid)
            .map_err(|e| Error::sys(format!("pidfd_open({mpid})"), e))?;
        undo.child = Some((mpid, pidfd));
        record.pid = mpid;
        record.pid_start = state::proc_stat(mpid).map(|s| s.start).unwrap_or(0);
        record.save(dir)?;
        if let Some(cg) = &undo.cgroup {
            cg.add_process(mpid)?;
        }
        parent.send_fds(&"go", &preserved)?;
        drop(tty_slave);
        Ok(parent)
    }

    /// The record, its status and a connection to its monitor, for a verb
    /// that needs the VM.
    fn client(&self, id: &str, what: &str) -> Result<(ContainerState, Status, monitor::Client)> {
        let (st, status) = self.rt.load(id)?;
        if status == Status::Stopped || status == Status::Creating {
            return Err(Error::Msg(format!(
                "container {id} is {status}: cannot {what}"
            )));
        }
        let c = monitor::Client::connect(&self.rt.store.dir(id))?;
        Ok((st, status, c))
    }

    /// `start`: the monitor starts the container in the guest; the FIFO
    /// goes and the poststart hooks run, as in container mode.
    pub fn start(&self, id: &str) -> Result<()> {
        let (_, status) = self.rt.load(id)?;
        let refuse = |m: &str| Err(Error::Msg(m.into()));
        match status {
            Status::Created => {}
            Status::Stopped => return refuse("cannot start a container that has stopped"),
            Status::Creating => {
                return refuse("cannot start a container that is still being created")
            }
            _ => return refuse("cannot start an already running container"),
        }
        let (st, _, c) = self.client(id, "start")?;
        c.call(&ClientReq::Start)?;
        let dir = self.rt.store.dir(id);
        let _ = std::fs::remove_file(dir.join(state::FIFO_FILE));
        // poststart: a failure is a warning, as in container mode.
        let p = dir.join(state::CONFIG_FILE);
        if let Ok(cfg) = sandbox::spec::parse(&std::fs::read(&p).unwrap_or_default(), &p) {
            if let Some(list) = cfg
                .spec
                .hooks()
                .as_ref()
                .and_then(|h| h.poststart().clone())
            {
                let s = sandbox::container::hook_state(
                    id,
                    sandbox::state::OciStatus::Running,
                    st.pid,
                    &st.bundle,
                    &st.annotations,
                );
                let at = sandbox::linux::hooks::Inherit::runtime(&st.bundle);
                sandbox::linux::hooks::run_warn("poststart", &list, &s, at);
            }
        }
        Ok(())
    }

    /// `start --attach`: start, then wait for the monitor and return its status.
    pub fn start_attached(&self, id: &str) -> Result<i32> {
        let (st, _) = self.rt.load(id)?;
        let pidfd = sandbox::linux::hooks::pidfd_open(st.pid)
            .map_err(|e| Error::sys(format!("pidfd_open({})", st.pid), e))?;
        self.start(id)?;
        Ok(wait::wait_exit_of(st.pid, &pidfd)?)
    }

    /// `kill`.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let (_, status) = self.rt.load(id)?;
        if status == Status::Stopped {
            return Err(Error::Msg("container not running".into()));
        }
        let c = monitor::Client::connect(&self.rt.store.dir(id))?;
        c.call(&ClientReq::Kill { signal, all })?;
        Ok(())
    }

    /// `delete`: stop the VM (when asked to, or when only created), make
    /// sure no monitor or QEMU is left, then remove the cgroup and state as
    /// container mode does.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let rt = &self.rt;
        let st = match rt.store.load(id) {
            Ok(s) => s,
            Err(sandbox::Error::NotExist(_)) if force => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let status = rt.status_of(&st);
        match status {
            Status::Stopped => {}
            Status::Created => shutdown(&rt.store.dir(id), &st),
            _ if force => shutdown(&rt.store.dir(id), &st),
            _ => {
                return Err(Error::Msg(format!(
                "cannot delete container {id} that is not stopped: {status} (use delete --force)"
            )))
            }
        }
        kill_recorded(&st);
        // The monitor removes its tc setup as it exits; a killed one cannot.
        crate::net::detach(&rt.store.dir(id))?;
        rt.delete(id, true)?;
        Ok(())
    }

    /// `ps`: the guest's processes (guest pids).
    pub fn ps(&self, id: &str) -> Result<Vec<ProcInfo>> {
        let (_, _, c) = self.client(id, "list its processes")?;
        match c.call(&ClientReq::Ps)? {
            Reply::Procs(list) => Ok(list),
            _ => Err(Error::Protocol(
                "ps: unexpected answer from the VM monitor".into(),
            )),
        }
    }

    /// `pause` (`on`) and `resume`: the guest's cgroup is frozen.
    pub fn pause(&self, id: &str, on: bool) -> Result<()> {
        let (_, status, c) = self.client(id, if on { "pause" } else { "resume" })?;
        if on && status != Status::Running && status != Status::Created {
            return Err(Error::Msg("container not running".into()));
        }
        if !on && status != Status::Paused {
            return Err(Error::Msg("container not paused".into()));
        }
        c.call(if on {
            &ClientReq::Pause
        } else {
            &ClientReq::Resume
        })?;
        Ok(())
    }

    /// `events`: the guest cgroup's counters.
    pub fn stats(&self, id: &str) -> Result<sandbox::cgroups::Stats> {
        let (_, _, c) = self.client(id, "report statistics")?;
        match c.call(&ClientReq::Stats)? {
            Reply::Stats(s) => Ok(*s),
            _ => Err(Error::Protocol(
                "stats: unexpected answer from the VM monitor".into(),
            )),
        }
    }

    /// `update`: the guest's cgroup gets the new limits.
    pub fn update(&self, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let (_, _, c) = self.client(id, "update its resources")?;
        c.call(&ClientReq::Update {
            resources: Box::new(resources.clone()),
        })?;
        Ok(())
    }

    /// `exec`: the monitor runs the process in the guest with our stdio (or
    /// a new pty sent to --console-socket); with --detach a small proxy
    /// process stays behind to stand for it and exit with its status.
    pub fn exec(&self, o: &ExecOptions) -> Result<i32> {
        let process = o
            .process
            .as_ref()
            .ok_or_else(|| Error::Msg("exec: no process given".into()))?;
        // Block the forwarded signals before the process can exist: one that
        // arrives while the request is in flight is then queued, not fatal.
        let _blocked_early = if o.detach {
            None
        } else {
            Some(wait::Blocked::new()?)
        };
        if o.preserve_fds > 0 {
            return Err(Error::Msg(format!(
                "exec --preserve-fds {}: not supported in VM mode (create and run pass regular files and pipes; exec does not yet)",
                o.preserve_fds
            )));
        }
        let (_, status, c) = self.client(&o.id, "exec")?;
        if status == Status::Paused {
            return Err(Error::Msg("cannot exec in a paused container".into()));
        }
        let tty = process.terminal() == Some(true);
        if tty && o.detach && o.console_socket.is_none() {
            return Err(Error::Msg(
                "cannot allocate tty if runc will detach without setting console socket".into(),
            ));
        }
        let mut keep = Vec::new();
        let fds: Vec<i32> = match (&o.console_socket, tty) {
            (Some(sock), true) => {
                let (m, s) = pty_pair()?;
                send_console(sock, &m)?;
                let r = s.as_raw_fd();
                keep.push(s);
                vec![r, r, r]
            }
            (Some(_), false) => {
                return Err(Error::Msg(
                    "cannot use console socket if runc will not detach or allocate tty".into(),
                ))
            }
            (None, true) => vec![0, 1, 1],
            (None, false) => vec![0, 1, 2],
        };
        if !o.detach {
            let raw = if tty && console::is_tty(console::stdio(0)) {
                console::make_raw(console::stdio(0))
            } else {
                None
            };
            let r = exec_wait(&c, process, &fds, None, o.pid_file.as_deref());
            if let Some(t) = raw {
                console::restore(console::stdio(0), &t);
            }
            return r;
        }
        // Detached: a proxy child holds the exec and exits with its status.
        let (rd, wr) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
        // SAFETY: nk-runtime is single-threaded here; the child only runs this function's code.
        match unsafe { libc::fork() } {
            -1 => Err(Error::Msg(format!(
                "fork: {}",
                std::io::Error::last_os_error()
            ))),
            0 => {
                drop(rd);
                let code = exec_wait(&c, process, &fds, Some(wr), None).unwrap_or(EXEC_FAILED);
                std::process::exit(code);
            }
            child => {
                drop(wr);
                drop(c);
                let mut msg = String::new();
                let _ = std::io::Read::read_to_string(&mut std::fs::File::from(rd), &mut msg);
                if msg != "ok" {
                    // SAFETY: reap the proxy, which has exited.
                    unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
                    return Err(Error::Msg(if msg.is_empty() {
                        "the exec proxy died".into()
                    } else {
                        msg
                    }));
                }
                if let Some(pf) = &o.pid_file {
                    sandbox::container::write_pid_file(pf, child)?;
                }
                Ok(0)
            }
        }
    }

    /// `run` in the foreground: create, start, wait for the monitor (it
    /// exits with the container's status), delete unless `keep`. A VM that
    /// ended before its container is [`Error::VmEnded`].
    pub fn run(&self, o: &CreateOptions, keep: bool) -> Result<i32> {
        let id = o.id.clone();
        let _blocked = wait::Blocked::new()?;
        let created = self
            .create(o)
            .map_err(|e| Error::Msg(format!("run failed: {e}")))?;
        if let Err(e) = self.start(&id) {
            let _ = self.delete(&id, true);
            return Err(Error::Msg(format!("run failed: {e}")));
        }
        let stdin0 = console::stdio(0);
        let tty = self.rt.config_process(&id).ok().and_then(|p| p.terminal()) == Some(true);
        let raw = if tty && console::is_tty(stdin0) {
            console::make_raw(stdin0)
        } else {
            None
        };
        let status = wait::wait(wait::Foreground {
            pid: created.pid,
            pidfd: &created.pidfd,
            pty: None,
            // The monitor holds our terminal too: on SIGWINCH it reads the
            // new size there and resizes the guest's pty.
            winch_to_process: true,
            reap_orphans: false,
        });
        if let Some(t) = raw {
            console::restore(stdin0, &t);
        }
        let dir = self.rt.store.dir(&id);
        let reason = std::fs::read_to_string(dir.join(monitor::EXIT_REASON)).ok();
        if !keep {
            if let Err(e) = self.delete(&id, true) {
                sandbox::logging::warn(|| format!("delete after run: {e}"));
            }
        }
        if let Some(r) = reason {
            return Err(Error::VmEnded(r));
        }
        Ok(status?)
    }

    /// `run --detach`: create and start; a failed start deletes.
    pub fn run_detached(&self, o: &CreateOptions) -> Result<()> {
        self.create(o)
            .map_err(|e| Error::Msg(format!("run failed: {e}")))?;
        if let Err(e) = self.start(&o.id) {
            let _ = self.delete(&o.id, true);
            return Err(Error::Msg(format!("run failed: {e}")));
        }
        Ok(())
    }

    /// The hidden `vm-monitor ID` verb: the monitor process itself.
    pub fn monitor_main(&self, id: &str) -> Result<i32> {
        let dir = self.rt.store.dir(id);
        let p = dir.join(monitor::CONFIG);
        let raw = std::fs::read(&p).map_err(|e| Error::io("read", &p, e))?;
        let cfg: MonitorConfig = serde_json::from_slice(&raw)
            .map_err(|e| Error::Msg(format!("{}: {e}", p.display())))?;
        // SAFETY: fd 3 is the SEQPACKET sync socket that create placed there.
        let sync = unsafe { Channel::from_raw(3) };
        // SAFETY: F_SETFD on the descriptor we now own, so QEMU does not inherit it.
        unsafe { libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC) };
        if let Some(fd) = cfg.tty_fd {
            // SAFETY: as above, for the terminal create placed at this number.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        // A pod member's monitor boots nothing: it hands its container to
        // the pod VM's monitor (crate::pod) and stands for it.
        Ok(match cfg.pod.clone() {
            Some(pod) => crate::pod::run_member(cfg, pod, sync),
            None => monitor::run(cfg, sync),
        })
    }
}

fn exec_wait(
    c: &monitor::Client,
    process: &oci_spec::runtime::Process,
    fds: &[i32],
    started: Option<OwnedFd>,
    pid_file: Option<&Path>,
) -> Result<i32> {
    c.send(
        &ClientReq::Exec {
            process: Box::new(process.clone()),
            // A detached exec's proxy stands for the process.
            bound: started.is_some(),
        },
        fds,
    )?;
    match c.recv()? {
        ClientMsg::Ok(_) => {}
        ClientMsg::Err(e) => {
            if let Some(w) = started {
                let _ = nix::unistd::write(&w, e.as_bytes());
            }
            return Err(Error::Remote(e));
        }
        ClientMsg::Exited(s) => return Ok(s),
    }
    if let Some(pf) = pid_file {
        sandbox::container::write_pid_file(pf, std::process::id() as i32)?;
    }
    if let Some(w) = started {
        let _ = nix::unistd::write(&w, b"ok");
        drop(w);
        // The monitor holds the stdio now: let go of ours, so readers see
        // their end of file when the process's output ends.
        if let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            for n in 0..3 {
                // SAFETY: dup2 of /dev/null onto our standard descriptors.
                unsafe { libc::dup2(null.as_raw_fd(), n) };
            }
        }
    }
    // Signals we receive go to the process (as runc exec forwards them);
    // SIGWINCH resizes its terminal.
    let _blocked = wait::Blocked::new()?;
    let sfd = nix::sys::signalfd::SignalFd::with_flags(
        &wait::forwarded_set(),
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    )
    .map_err(|e| Error::sys("signalfd", e))?;
    loop {
        let mut p = [
            libc::pollfd {
                fd: c.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll over an array that lives for the call.
        unsafe { libc::poll(p.as_mut_ptr(), 2, -1) };
        if p[1].revents != 0 {
            while let Ok(Some(si)) = sfd.read_signal() {
                let sig = si.ssi_signo as i32;
                if wait::caused_by_us(&si) {
                    continue;
                }
                let req = match sig {
                    libc::SIGCHLD | libc::SIGURG | libc::SIGPIPE => continue,
                    libc::SIGWINCH => match console::get_winsize(console::stdio(0)) {
                        Some((rows, cols)) => ClientReq::Resize { rows, cols },
                        None => continue,
                    },
                    _ => ClientReq::Signal { signal: sig },
                };
                c.send(&req, &[])?;
            }
        }
        if p[0].revents != 0 {
            match c.recv()? {
                ClientMsg::Exited(s) => return Ok(s),
                ClientMsg::Err(e) => return Err(Error::Remote(e)),
                ClientMsg::Ok(_) => {}
            }
        }
    }
}
