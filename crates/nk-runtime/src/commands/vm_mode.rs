//! VM mode behind the runc verbs. `create` checks the host, claims the
//! state directory, makes the host cgroup and starts the monitor (`nk-runtime
//! vm-monitor`, in that cgroup), which boots the VM and creates the container
//! through the agent. The other verbs talk to the monitor over monitor.sock;
//! once it is gone the container is stopped, and `delete` cleans up as in
//! container mode (cgroup, poststop hooks, state directory).

use crate::cli::{CreateCommon, ExecArgs, RunArgs};
use crate::report::{ExitCode, Globals};
use anyhow::{anyhow, bail, Context};
use sandbox::explain::{self, catalog};
use sandbox::process::sync::Channel;
use sandbox::state::{self, ContainerState, Phase, Status};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use vm::monitor::{self, ClientMsg, ClientReq, MonitorConfig, Report};
use vm_protocol::Reply;

/// Default VM size.
const DEFAULT_VCPUS: u32 = 1;
const DEFAULT_MEMORY_MIB: u32 = 256;
/// Memory the guest kernel and agent need besides the container's limit.
const GUEST_OVERHEAD_MIB: u64 = 160;

/// The VM size from the flags, the annotations and the memory limit.
pub fn vm_size(c: &CreateCommon, cfg: &serde_json::Value) -> anyhow::Result<(u32, u32)> {
    let ann = |k: &str| -> anyhow::Result<Option<u32>> {
        match cfg.pointer(&format!("/annotations/{}", k.replace('/', "~1"))) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .and_then(|s| s.parse::<u32>().ok())
                .map(Some)
                .ok_or_else(|| anyhow!("annotation {k}={v}: give a positive whole number")),
        }
    };
    let vcpus = match c.vm_vcpus {
        Some(n) => n,
        None => ann("org.nano-sandbox.vm.vcpus")?.unwrap_or(DEFAULT_VCPUS),
    };
    let mut mem = match c.vm_memory {
        Some(n) => n,
        None => ann("org.nano-sandbox.vm.memory-mib")?.unwrap_or(DEFAULT_MEMORY_MIB),
    };
    if !(1..=64).contains(&vcpus) {
        bail!("VM vCPUs {vcpus}: use 1 to 64 (--vm-vcpus or org.nano-sandbox.vm.vcpus)");
    }
    if !(128..=262_144).contains(&mem) {
        bail!("VM memory {mem} MiB: use 128 to 262144 (--vm-memory or org.nano-sandbox.vm.memory-mib)");
    }
    if let Some(limit) = cfg
        .pointer("/linux/resources/memory/limit")
        .and_then(|v| v.as_i64())
        .filter(|l| *l > 0)
    {
        let need = ((limit as u64).div_ceil(1 << 20) + GUEST_OVERHEAD_MIB).min(262_144) as u32;
        mem = mem.max(need);
    }
    Ok((vcpus, mem))
}

/// Is `id` a VM-mode container? (False when it does not exist: the
/// container-mode path then gives the usual error.)
pub fn is_vm(g: &Globals, id: &str) -> bool {
    g.runtime().store.load(id).is_ok_and(|st| st.mode == "vm")
}

/// Status of a VM container from its state directory.
pub fn status_in(dir: &Path, base: Status) -> Status {
    if base == Status::Running && dir.join(monitor::PAUSED_MARK).exists() {
        Status::Paused
    } else {
        base
    }
}

/// A created VM container, for `run`.
pub struct Created {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

struct Undo {
    dir: std::path::PathBuf,
    cgroup: Option<Box<dyn sandbox::cgroups::CgroupManager>>,
    monitor: Option<i32>,
    armed: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.monitor {
            // SAFETY: kill(2) and reap our own child, the monitor (QEMU dies with it).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.destroy(true);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn kill_recorded(st: &ContainerState) {
    if st.pid > 0 && st.init_alive() {
        // SAFETY: kill(2) the monitor recorded for this container (pid and start time checked).
        unsafe { libc::kill(st.pid, libc::SIGKILL) };
    }
    let q = st.extra["qemu_pid"].as_i64().unwrap_or(0) as i32;
    let qs = st.extra["qemu_start"].as_u64().unwrap_or(0);
    if q > 0 && state::same_process_alive(q, qs) {
        // SAFETY: kill(2) the QEMU recorded for this container (pid and start time checked).
        unsafe { libc::kill(q, libc::SIGKILL) };
    }
}

fn pty_pair() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let m = nix::pty::posix_openpt(
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
    )?;
    nix::pty::grantpt(&m)?;
    nix::pty::unlockpt(&m)?;
    let name = nix::pty::ptsname_r(&m)?;
    let s = nix::fcntl::open(
        name.as_str(),
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: the master's descriptor is ours; PtyMaster gives it up here.
    let m = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(m)) };
    // The guest's own pty does the line discipline; this one only relays
    // bytes (cooked, it would turn the guest's \r\n into \r\r\n).
    let _ = sandbox::linux::console::make_raw(s.as_fd());
    Ok((m, s))
}

/// Send a pty master to --console-socket, as runc does.
fn send_console(sock: &Path, master: &OwnedFd) -> anyhow::Result<()> {
    let s = sandbox::linux::console::connect(sock)?;
    sandbox::linux::console::send_fd(s.as_fd(), master.as_fd(), "/dev/ptmx")?;
    Ok(())
}

/// A note on stderr; dropped if stderr is gone (eprintln! would panic).
fn note(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "nk-runtime: {msg}");
}

fn progress(p: vm::image::Progress) {
    match p {
        vm::image::Progress::Step(s) => note(&format!("{s} (once; cached afterwards)")),
        vm::image::Progress::Done(s) => note(&s),
        vm::image::Progress::Bytes(..) => {}
    }
}

/// `create` (and the first half of `run`) in VM mode.
pub fn create(g: &Globals, c: &CreateCommon, foreground: bool) -> anyhow::Result<Created> {
    let rt = g.runtime();
    state::validate_id(&c.id)?;
    let b = sandbox::spec::load(&c.bundle)?;
    explain::step(&catalog::SPEC_LOAD, || b.config_path.display().to_string());
    sandbox::spec::validate(
        &b,
        sandbox::spec::ValidateOpts {
            need_process: true,
            check_rootfs: true,
        },
    )?;
    let cfg: serde_json::Value =
        serde_json::from_slice(&b.raw).with_context(|| format!("{}", b.config_path.display()))?;
    let terminal = cfg.pointer("/process/terminal").and_then(|t| t.as_bool()) == Some(true);
    if terminal && c.console_socket.is_none() && !foreground {
        bail!("cannot allocate tty if runc will detach without setting console socket: give --console-socket, or set process.terminal to false");
    }
    if !terminal && c.console_socket.is_some() {
        bail!("cannot use console socket if runc will not detach or allocate tty: process.terminal is false");
    }
    if c.preserve_fds > 0 {
        bail!(
            "--preserve-fds is not supported in VM mode: descriptors cannot cross into the guest"
        );
    }
    let (vcpus, memory_mib) = vm_size(c, &cfg)?;
    // Check the host before anything is created, so a failure leaves nothing.
    vm::qemu::find_qemu()?;
    let img = vm::image::ensure(&progress)?;
    explain::step(&catalog::VM_IMAGE, || {
        format!(
            "kernel {}: {}, {}",
            img.kernel_version,
            img.vmlinux.display(),
            img.initramfs.display()
        )
    });
    let accel = vm::qemu::choose_accel(&img, &note);
    explain::step(&catalog::VM_ACCEL, || accel.as_str().to_string());

    let store = sandbox::state::Store::open(&rt.store.root)?;
    let me = std::process::id() as i32;
    let mut record = ContainerState {
        id: c.id.clone(),
        creator_pid: me,
        creator_start: state::proc_stat(me).map(|s| s.start).unwrap_or(0),
        bundle: b.dir.clone(),
        rootfs: b.rootfs(),
        created: sandbox::time::now_rfc3339_nanos(),
        annotations: b.annotations().into_iter().collect(),
        phase: Some(Phase::Creating),
        mode: "vm".into(),
        rootless: g.rootless,
        owner_uid: nix::unistd::geteuid().as_raw(),
        ..Default::default()
    };
    let cgroup = if g.rootless {
        None
    } else {
        let ps = sandbox::cgroups::PathSpec {
            cgroups_path: b
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.cgroups_path().clone()),
            systemd: g.systemd_cgroup,
        };
        Some(sandbox::cgroups::new_manager(
            &ps,
            &c.id,
            &Default::default(),
        )?)
    };
    if let Some(cg) = &cgroup {
        record.cgroup = Some(cg.record());
    }
    explain::step(&catalog::STATE_CLAIM, || {
        rt.store.dir(&c.id).display().to_string()
    });
    let (dir, _lock) = store.claim(&c.id, &record, &|stale| {
        kill_recorded(stale);
        if let Some(cg) = sandbox::cgroups::from_record(&stale.cgroup) {
            let _ = cg.destroy(true);
        }
    })?;
    let mut undo = Undo {
        dir: dir.clone(),
        cgroup: None,
        monitor: None,
        armed: true,
    };
    let cfg_copy = dir.join(state::CONFIG_FILE);
    // 0600: process.env may hold secrets.
    sandbox::files::create_new(&cfg_copy, &b.raw, 0o600)?;
    let fifo = dir.join(state::FIFO_FILE);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .with_context(|| format!("mkfifo {}", fifo.display()))?;
    if let Some(mut cg) = cgroup {
        // Only the cgroup, no limits: QEMU's own memory is larger than the
        // container's limit, which the guest enforces itself.
        cg.create()?;
        record.cgroup = Some(cg.record());
        undo.cgroup = Some(cg);
        record.save(&dir)?;
    }
    let tty_slave = match (&c.console_socket, terminal) {
        (Some(sock), true) => {
            let (m, s) = pty_pair()?;
            send_console(sock, &m)?;
            Some(s)
        }
        _ => None,
    };
    let mcfg = MonitorConfig {
        id: c.id.clone(),
        state_dir: dir.clone(),
        bundle: b.dir.clone(),
        config: cfg,
        rootfs: b.rootfs(),
        vcpus,
        memory_mib,
        vmlinux: img.vmlinux.clone(),
        initramfs: img.initramfs.clone(),
        accel,
        systemd_cgroup: g.systemd_cgroup,
        no_pivot: c.no_pivot,
        no_new_keyring: c.no_new_keyring,
        log_level: g.level.as_str().into(),
        append: std::env::var("NK_VM_APPEND")
            .map(|s| s.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
        ready_timeout_secs: std::env::var("NK_VM_READY_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
        tty_fd: tty_slave.as_ref().map(|_| 4),
    };
    let mpath = dir.join(monitor::CONFIG);
    sandbox::files::create_new(&mpath, &serde_json::to_vec(&mcfg)?, 0o600)?;
    // The monitor appends to its log through --log: make it private first.
    sandbox::files::create_new(&dir.join("monitor.log"), b"", 0o600)?;

    let (parent, child) = Channel::pair()?;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg("--root")
        .arg(&rt.store.root)
        .arg("--log")
        .arg(dir.join("monitor.log"))
        .arg("--log-level")
        .arg(g.level.as_str())
        .arg("vm-monitor")
        .arg(&c.id);
    if tty_slave.is_some() {
        // The container's stdio is the pty: the monitor must not hold ours.
        // (go-runc reads create's output until EOF; a held pipe hangs it.)
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
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
    let boot = explain::phase(explain::Phase::Vm);
    let child_proc = cmd.spawn().context("start the VM monitor")?;
    drop(child);
    let mpid = child_proc.id() as i32;
    std::mem::forget(child_proc);
    undo.monitor = Some(mpid);
    record.pid = mpid;
    record.pid_start = state::proc_stat(mpid).map(|s| s.start).unwrap_or(0);
    record.save(&dir)?;
    if let Some(cg) = &undo.cgroup {
        cg.add_process(mpid)?;
    }
    parent.send(&"go")?;
    drop(tty_slave);
    let report = match parent.recv::<Report>() {
        Ok(Some((r, _))) => r,
        _ => Report::Failed(format!(
            "the VM monitor exited during create; see {}",
            dir.join("monitor.log").display()
        )),
    };
    let (guest_pid, qemu_pid, boot_ms) = match report {
        Report::Created {
            guest_pid,
            qemu_pid,
            boot_ms,
        } => (guest_pid, qemu_pid, boot_ms),
        Report::Failed(e) => bail!("create failed: {e}"),
    };
    drop(boot);
    explain::step(&catalog::VM_MONITOR, || {
        format!("monitor pid {mpid}, qemu pid {qemu_pid} ({}, {vcpus} vCPU, {memory_mib} MiB), the container's init is pid {guest_pid} in the guest, booted in {boot_ms} ms", accel.as_str())
    });
    // Host-side hooks, as in container mode (the guest's copy has none):
    // prestart and createRuntime once the container exists.
    if let Some(h) = b.spec.hooks() {
        let st = sandbox::container::hook_state(
            &c.id,
            sandbox::state::OciStatus::Created,
            mpid,
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
                if let Err(e) = sandbox::linux::hooks::run(kind, list, &st, at) {
                    shutdown(&dir, &record);
                    return Err(e.into());
                }
            }
        }
    }
    record.phase = Some(Phase::Created);
    explain::step(&catalog::STATE_CREATED, || {
        format!("pid {mpid} (the monitor)")
    });
    record.extra = serde_json::json!({
        "qemu_pid": qemu_pid,
        "qemu_start": state::proc_stat(qemu_pid).map(|s| s.start).unwrap_or(0),
        "guest_pid": guest_pid,
        "vcpus": vcpus,
        "memory_mib": memory_mib,
        "accel": accel.as_str(),
        "boot_ms": boot_ms,
        "kernel": img.kernel_version,
    });
    record.save(&dir)?;
    if let Some(pf) = &c.pid_file {
        explain::step(&catalog::PID_FILE, || format!("{mpid} > {}", pf.display()));
        sandbox::container::write_pid_file(pf, mpid)?;
    }
    // pidfd_open on our own child, not yet reaped.
    let pidfd = sandbox::linux::syscall::pidfd_open(mpid)
        .map_err(|e| anyhow::anyhow!("pidfd_open({mpid}): {e}"))?;
    undo.armed = false;
    Ok(Created { pid: mpid, pidfd })
}

fn client(
    g: &Globals,
    id: &str,
    what: &str,
) -> anyhow::Result<(ContainerState, Status, monitor::Client)> {
    let rt = g.runtime();
    let (st, status) = rt.load(id)?;
    let status = status_in(&rt.store.dir(id), status);
    if status == Status::Stopped || status == Status::Creating {
        bail!("container {id} is {status}: cannot {what}");
    }
    let c = monitor::Client::connect(&rt.store.dir(id))?;
    Ok((st, status, c))
}

/// `start`.
pub fn start(g: &Globals, id: &str) -> anyhow::Result<()> {
    let rt = g.runtime();
    let (_, status) = rt.load(id)?;
    match status {
        Status::Created => {}
        Status::Stopped => bail!("cannot start a container that has stopped"),
        Status::Creating => bail!("cannot start a container that is still being created"),
        _ => bail!("cannot start an already running container"),
    }
    let (st, _, c) = client(g, id, "start")?;
    c.call(&ClientReq::Start)?;
    let dir = rt.store.dir(id);
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
            if let Err(e) = sandbox::linux::hooks::run("poststart", &list, &s, at) {
                sandbox::logging::warn(|| format!("{e}"));
            }
        }
    }
    Ok(())
}

/// `kill`.
pub fn kill(g: &Globals, id: &str, signal: i32, all: bool) -> anyhow::Result<()> {
    let rt = g.runtime();
    let (_, status) = rt.load(id)?;
    if status == Status::Stopped {
        bail!("container not running");
    }
    let c = monitor::Client::connect(&rt.store.dir(id))?;
    c.call(&ClientReq::Kill { signal, all })?;
    Ok(())
}

/// `delete`: stop the VM (when asked to, or when only created), make sure no
/// monitor or QEMU is left, then remove the cgroup and state as usual.
pub fn delete(g: &Globals, id: &str, force: bool) -> anyhow::Result<()> {
    let rt = g.runtime();
    let st = match rt.store.load(id) {
        Ok(s) => s,
        Err(sandbox::Error::NotExist(_)) if force => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let status = status_in(&rt.store.dir(id), rt.status_of(&st));
    match status {
        Status::Stopped => {}
        Status::Created => shutdown(&rt.store.dir(id), &st),
        _ if force => shutdown(&rt.store.dir(id), &st),
        _ => {
            bail!("cannot delete container {id} that is not stopped: {status} (use delete --force)")
        }
    }
    kill_recorded(&st);
    rt.delete(id, true)?;
    Ok(())
}

fn shutdown(dir: &Path, st: &ContainerState) {
    if let Ok(c) = monitor::Client::connect(dir) {
        let _ = c.call(&ClientReq::Shutdown);
    }
    // Wait for the monitor to go (it powers the VM off first).
    if let Ok(pidfd) = sandbox::linux::hooks::pidfd_open(st.pid) {
        if st.init_alive() {
            let mut p = libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll one pollfd that lives for the call; up to 10 s.
            unsafe { libc::poll(&mut p, 1, 10_000) };
        }
    }
    kill_recorded(st);
}

/// `ps`.
pub fn ps(g: &Globals, id: &str, format: &str) -> anyhow::Result<()> {
    let (_, _, c) = client(g, id, "list its processes")?;
    let Reply::Procs(list) = c.call(&ClientReq::Ps)? else {
        bail!("ps: unexpected answer from the VM monitor");
    };
    match format {
        "json" => println!(
            "{}",
            serde_json::to_string(&list.iter().map(|p| p.pid).collect::<Vec<_>>())?
        ),
        "table" => {
            println!("PID   PPID  CMD  (guest pids)");
            for p in list {
                println!("{:<5} {:<5} {}", p.pid, p.ppid, p.cmd);
            }
        }
        other => bail!("invalid format {other:?}: use table or json"),
    }
    Ok(())
}

/// `pause` / `resume`.
pub fn pause(g: &Globals, id: &str, on: bool) -> anyhow::Result<()> {
    let (_, status, c) = client(g, id, if on { "pause" } else { "resume" })?;
    if on && status != Status::Running && status != Status::Created {
        bail!("container not running");
    }
    if !on && status != Status::Paused {
        bail!("container not paused");
    }
    c.call(if on {
        &ClientReq::Pause
    } else {
        &ClientReq::Resume
    })?;
    Ok(())
}

/// `events --stats`: the guest cgroup's counters.
pub fn stats(g: &Globals, id: &str) -> anyhow::Result<sandbox::cgroups::Stats> {
    let (_, _, c) = client(g, id, "report statistics")?;
    match c.call(&ClientReq::Stats)? {
        Reply::Stats(v) => Ok(serde_json::from_value(v)?),
        _ => bail!("stats: unexpected answer from the VM monitor"),
    }
}

/// `update`.
pub fn update(g: &Globals, id: &str, resources: serde_json::Value) -> anyhow::Result<()> {
    let (_, _, c) = client(g, id, "update its resources")?;
    c.call(&ClientReq::Update { resources })?;
    Ok(())
}

/// `exec`: the monitor runs the process in the guest with our stdio (or a
/// new pty sent to --console-socket); with --detach a small proxy process
/// stays behind to stand for it and exit with its status.
pub fn exec(g: &Globals, a: &ExecArgs, process: oci_spec::runtime::Process) -> anyhow::Result<i32> {
    const EXEC_FAILED: i32 = 255;
    let fail =
        |e: anyhow::Error| anyhow::Error::new(ExitCode(EXEC_FAILED, anyhow!("exec failed: {e:#}")));
    // Block the forwarded signals before the process can exist: one that
    // arrives while the request is in flight is then queued, not fatal.
    let _blocked_early = if a.detach {
        None
    } else {
        Some(sandbox::process::wait::Blocked::new()?)
    };
    let (_, status, c) = client(g, &a.id, "exec").map_err(fail)?;
    if status == Status::Paused {
        return Err(fail(anyhow!("cannot exec in a paused container")));
    }
    let tty = process.terminal() == Some(true);
    if tty && a.detach && a.console_socket.is_none() {
        return Err(fail(anyhow!(
            "cannot allocate tty if runc will detach without setting console socket"
        )));
    }
    let pv = serde_json::to_value(&process)?;
    let mut keep = Vec::new();
    let fds: Vec<i32> = match (&a.console_socket, tty) {
        (Some(sock), true) => {
            let (m, s) = pty_pair().map_err(fail)?;
            send_console(sock, &m).map_err(fail)?;
            let r = s.as_raw_fd();
            keep.push(s);
            vec![r, r, r]
        }
        (Some(_), false) => {
            return Err(fail(anyhow!(
                "cannot use console socket if runc will not detach or allocate tty"
            )))
        }
        (None, true) => vec![0, 1, 1],
        (None, false) => vec![0, 1, 2],
    };
    if !a.detach {
        let raw = if tty && sandbox::linux::console::is_tty(sandbox::linux::console::stdio(0)) {
            sandbox::linux::console::make_raw(sandbox::linux::console::stdio(0))
        } else {
            None
        };
        let r = exec_wait(&c, &pv, &fds, None, a.pid_file.as_deref());
        if let Some(t) = raw {
            sandbox::linux::console::restore(sandbox::linux::console::stdio(0), &t);
        }
        return r.map_err(fail);
    }
    // Detached: a proxy child holds the exec and exits with its status.
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: nk-runtime is single-threaded here; the child only runs this function's code.
    match unsafe { libc::fork() } {
        -1 => Err(fail(anyhow!("fork: {}", std::io::Error::last_os_error()))),
        0 => {
            drop(rd);
            let code = match exec_wait(&c, &pv, &fds, Some(wr), None) {
                Ok(s) => s,
                Err(_) => EXEC_FAILED,
            };
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
                return Err(fail(anyhow!(
                    "{}",
                    if msg.is_empty() {
                        "the exec proxy died"
                    } else {
                        &msg
                    }
                )));
            }
            if let Some(pf) = &a.pid_file {
                sandbox::container::write_pid_file(pf, child)?;
            }
            Ok(0)
        }
    }
}

fn exec_wait(
    c: &monitor::Client,
    process: &serde_json::Value,
    fds: &[i32],
    started: Option<OwnedFd>,
    pid_file: Option<&Path>,
) -> anyhow::Result<i32> {
    c.send(
        &ClientReq::Exec {
            process: process.clone(),
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
            bail!("{e}");
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
    let _blocked = sandbox::process::wait::Blocked::new()?;
    let sfd = nix::sys::signalfd::SignalFd::with_flags(
        &sandbox::process::wait::forwarded_set(),
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    )?;
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
                if sandbox::process::wait::caused_by_us(&si) {
                    continue;
                }
                let req = match sig {
                    libc::SIGCHLD | libc::SIGURG | libc::SIGPIPE => continue,
                    libc::SIGWINCH => {
                        match sandbox::linux::console::get_winsize(sandbox::linux::console::stdio(
                            0,
                        )) {
                            Some((rows, cols)) => ClientReq::Resize { rows, cols },
                            None => continue,
                        }
                    }
                    _ => ClientReq::Signal { signal: sig },
                };
                c.send(&req, &[])?;
            }
        }
        if p[0].revents != 0 {
            match c.recv()? {
                ClientMsg::Exited(s) => return Ok(s),
                ClientMsg::Err(e) => bail!("{e}"),
                ClientMsg::Ok(_) => {}
            }
        }
    }
}

/// `run` in VM mode.
pub fn run(g: &Globals, a: &RunArgs) -> anyhow::Result<i32> {
    let id = a.common.id.clone();
    if a.detach {
        if a.rm {
            bail!("--rm cannot be used with --detach: nothing would be left to delete the container when it exits");
        }
        create(g, &a.common, false).map_err(|e| anyhow!("run failed: {e:#}"))?;
        if let Err(e) = start(g, &id) {
            let _ = delete(g, &id, true);
            bail!("run failed: {e:#}");
        }
        return Ok(0);
    }
    let _blocked = sandbox::process::wait::Blocked::new()?;
    let created = create(g, &a.common, true).map_err(|e| anyhow!("run failed: {e:#}"))?;
    if let Err(e) = start(g, &id) {
        let _ = delete(g, &id, true);
        bail!("run failed: {e:#}");
    }
    let stdin0 = sandbox::linux::console::stdio(0);
    let tty = g
        .runtime()
        .config_process(&id)
        .ok()
        .and_then(|p| p.terminal())
        == Some(true);
    let raw = if tty && sandbox::linux::console::is_tty(stdin0) {
        sandbox::linux::console::make_raw(stdin0)
    } else {
        None
    };
    let status = sandbox::process::wait::wait(sandbox::process::wait::Foreground {
        pid: created.pid,
        pidfd: &created.pidfd,
        forward_to: created.pid,
        pty: None,
        reap_orphans: false,
    });
    if let Some(t) = raw {
        sandbox::linux::console::restore(stdin0, &t);
    }
    let dir = g.runtime().store.dir(&id);
    let reason = std::fs::read_to_string(dir.join(monitor::EXIT_REASON)).ok();
    if !a.keep {
        if let Err(e) = delete(g, &id, true) {
            sandbox::logging::warn(|| format!("delete after run: {e:#}"));
        }
    }
    if let Some(r) = reason {
        return Err(anyhow::Error::new(ExitCode(
            monitor::VM_FAILED,
            anyhow!("{r}"),
        )));
    }
    Ok(status?)
}

/// The hidden `vm-monitor ID` verb: the monitor process itself.
pub fn monitor_main(g: &Globals, args: &[String]) -> anyhow::Result<i32> {
    let id = args
        .first()
        .ok_or_else(|| anyhow!("vm-monitor is started by the runtime itself"))?;
    let dir = g.runtime().store.dir(id);
    let p = dir.join(monitor::CONFIG);
    let cfg: MonitorConfig = serde_json::from_slice(
        &std::fs::read(&p).with_context(|| format!("read {}", p.display()))?,
    )?;
    // SAFETY: fd 3 is the SEQPACKET sync socket that create placed there.
    let sync = unsafe { Channel::from_raw(3) };
    // SAFETY: F_SETFD on the descriptor we now own, so QEMU does not inherit it.
    unsafe { libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC) };
    if let Some(fd) = cfg.tty_fd {
        // SAFETY: as above, for the terminal create placed at this number.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(monitor::run(cfg, sync))
}

/// `start` (with --attach: wait for the monitor and return its status).
pub fn start_cmd(g: &Globals, id: &str, attach: bool) -> anyhow::Result<i32> {
    if !attach {
        start(g, id)?;
        return Ok(0);
    }
    let (st, _) = g.runtime().load(id)?;
    let pidfd = sandbox::linux::hooks::pidfd_open(st.pid)
        .map_err(|e| anyhow!("pidfd_open({}): {e}", st.pid))?;
    start(g, id)?;
    Ok(sandbox::process::wait::wait_exit_of(st.pid, &pidfd)?)
}
