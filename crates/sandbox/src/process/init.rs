//! The container side: `nk-runtime init`, exec'd from the sealed runtime copy
//! right after clone3. It receives an [`InitRequest`] over the channel and
//! sets itself up step by step inside the new namespaces, reporting every
//! step, log line and error to the parent. For `create` it then parks at the
//! exec barrier; for `exec` it execs at once.

use super::messages::{
    InitKind, InitRequest, ToChild, ToParent, FD_CGROUP_TASKS, FD_CONFIG, FD_EXEC_FIFO,
    FD_IDMAP_PREFIX, FD_PIDNS,
};
use super::sync::Channel;
use crate::error::{Error, Result};
use crate::explain::{self, catalog, Phase};
use crate::linux::{self, capabilities::Masks};
use crate::logging::{self, Role};
use nix::fcntl::OFlag;
use oci_spec::runtime::Spec;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static CHANNEL: OnceLock<Channel> = OnceLock::new();

/// Descriptors the parent attached to the Init message, by name (see
/// [`InitRequest::fd_names`]).
static PASSED: std::sync::Mutex<Vec<(String, OwnedFd)>> = std::sync::Mutex::new(Vec::new());

/// Take every idmapped tree the parent passed, by mount index.
fn take_idmapped() -> Vec<(usize, OwnedFd)> {
    let mut v = PASSED.lock().unwrap_or_else(|e| e.into_inner());
    let (trees, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut *v)
        .into_iter()
        .partition(|(n, _)| n.starts_with(FD_IDMAP_PREFIX));
    *v = rest;
    trees
        .into_iter()
        .filter_map(|(n, fd)| Some((n[FD_IDMAP_PREFIX.len()..].parse().ok()?, fd)))
        .collect()
}

/// Take the descriptor the parent passed under `name`.
pub(crate) fn take_passed(name: &str) -> Option<OwnedFd> {
    let mut v = PASSED.lock().unwrap_or_else(|e| e.into_inner());
    let i = v.iter().position(|(n, _)| n == name)?;
    Some(v.remove(i).1)
}

fn chan() -> &'static Channel {
    CHANNEL.get().expect("init channel")
}

/// Entry point of `nk-runtime init`. Never returns.
pub fn main() -> ! {
    // exec of the runtime copy made us dumpable again: until the container's
    // program replaces us, other processes in the container must not open
    // /proc/<pid>/exe, /proc/<pid>/fd or ptrace us (CVE-2019-5736, CVE-2016-9962).
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let fd: i32 = std::env::var(super::clone::INIT_FD_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    if fd < 0 {
        eprintln!("nk-runtime init: this command is run by the runtime itself, not by hand");
        std::process::exit(2);
    }
    // SAFETY: the parent placed the channel at this number before exec.
    let ch = unsafe { Channel::from_raw(fd) };
    // SAFETY: F_SETFD on our own descriptor.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    let _ = CHANNEL.set(ch);
    // The namespaces the parent left to us, made while it sets up the rest
    // (clone::PreExec::late_unshare); a failure is reported once the
    // request has arrived, through the usual error path.
    let late = late_unshare();
    logging::set_role(Role::Child);
    logging::set_sink(|r| {
        let _ = chan().send(&ToParent::Log(r.clone()));
    });
    explain::set_sink(|e| {
        let _ = chan().send(&ToParent::Event(e));
    });
    let req = match chan().recv::<ToChild>() {
        Ok(Some((ToChild::Init(r), fds))) => {
            let mut passed = PASSED.lock().unwrap_or_else(|e| e.into_inner());
            *passed = r.fd_names.iter().cloned().zip(fds).collect();
            r
        }
        _ => std::process::exit(1),
    };
    logging::set_level(req.log_level);
    explain::configure(req.explain, req.trace, req.log_level);
    let late = match late {
        Some(Ok((start, end))) => {
            explain::phase_span(Phase::Namespaces, start, end);
            None
        }
        Some(Err(e)) => Some(e),
        None => None,
    };
    explain::step(&catalog::INIT_EXEC, || {
        format!("{:?} request for {}", req.kind, req.id)
    });
    // As runc, every container process (init and exec) leads a new session
    // and process group: engines signal the group (conmon's --timeout kills
    // -getpgid(pid)), which must not be the runtime's or the engine's own.
    // Cannot fail: a fresh child leads no group.
    let _ = nix::unistd::setsid();
    let mut req = req;
    let r = match late {
        Some(e) => Err(e),
        None => match req.kind {
            InitKind::Create => create(&mut req),
            InitKind::Exec => exec(&req),
        },
    };
    let e = match r {
        Ok(never) => match never {},
        Err(e) => e,
    };
    explain::redirect_to_fd(-1);
    // After the parent is gone (past the barrier) the error only reaches stderr.
    if chan().send(&ToParent::Error(e.to_string())).is_err() {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "nk-runtime: {e}");
    }
    std::process::exit(127);
}

/// unshare(2) the namespaces named by [`super::clone::INIT_UNSHARE_ENV`],
/// if any, timed as the child's namespace setup.
fn late_unshare() -> Option<Result<(u64, u64)>> {
    let bits: i32 = std::env::var(super::clone::INIT_UNSHARE_ENV)
        .ok()?
        .parse()
        .ok()?;
    let flags = nix::sched::CloneFlags::from_bits_truncate(bits);
    let start = crate::time::monotonic_ns();
    let r = nix::sched::unshare(flags).map_err(|e| {
        Error::sys(
            format!("unshare({})", linux::namespaces::flag_names(flags)),
            e,
        )
    });
    let end = crate::time::monotonic_ns();
    Some(r.map(|()| (start, end)))
}

fn ns_type(name: &str) -> Option<oci_spec::runtime::LinuxNamespaceType> {
    use oci_spec::runtime::LinuxNamespaceType as T;
    Some(match name {
        "mount" => T::Mount,
        "cgroup" => T::Cgroup,
        "uts" => T::Uts,
        "ipc" => T::Ipc,
        "user" => T::User,
        "pid" => T::Pid,
        "network" => T::Network,
        "time" => T::Time,
        _ => return None,
    })
}

fn join_namespaces(req: &InitRequest) -> Result<()> {
    for (name, path) in &req.join {
        let t =
            ns_type(name).ok_or_else(|| Error::msg(format!("unknown namespace type {name}")))?;
        linux::namespaces::join(t, path)?;
    }
    Ok(())
}

/// The container's config.json, read from the descriptor the parent passed:
/// in a user namespace the state directory's path may not be traversable.
fn load_spec(req: &InitRequest) -> Result<Spec> {
    use std::io::Read;
    let p = req.state_dir.join(crate::state::CONFIG_FILE);
    let mut raw = Vec::new();
    match take_passed(FD_CONFIG) {
        Some(fd) => std::fs::File::from(fd).read_to_end(&mut raw),
        None => std::fs::File::open(&p).and_then(|mut f| f.read_to_end(&mut raw)),
    }
    .map_err(|e| Error::io("read", &p, e))?;
    Ok(crate::spec::parse(&raw, &p)?.spec)
}

fn hook_state(req: &InitRequest, status: crate::state::OciStatus) -> Vec<u8> {
    crate::state::hook_state(&req.id, status, req.host_pid, &req.bundle, &req.annotations)
}

fn create(req: &mut InitRequest) -> Result<std::convert::Infallible> {
    // Into the container's cgroup before anything else (moving oneself
    // takes no global lock; the parent moving us would).
    for t in &req.join_cgroup {
        let fd = take_passed(FD_CGROUP_TASKS).ok_or_else(|| {
            Error::msg(format!(
                "join the container's cgroup: the runtime passed no descriptor of {}",
                t.display()
            ))
        })?;
        nix::unistd::write(&fd, b"0").map_err(|e| {
            Error::msg(format!(
                "join the container's cgroup: write 0 to {}: {e}",
                t.display()
            ))
        })?;
    }
    let spec = load_spec(req)?;
    let linux = spec.linux().clone().unwrap_or_default();
    {
        let _g = explain::phase(Phase::Namespaces);
        join_namespaces(req)?;
        if req.new_timens {
            time_namespace(&linux)?;
        }
        if req.new_cgroupns {
            explain::step(&catalog::NS_CGROUP, String::new);
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| Error::sys("unshare(CLONE_NEWCGROUP)", e))?;
        }
        if !req.no_new_keyring {
            // Named as runc names it, so tools that look for it find it.
            linux::procattr::new_session_keyring(&format!("_ses.{}", req.id), true)?;
        }
        if let Some(adj) = req.process.oom_score_adj() {
            linux::procattr::oom_score_adj(adj)?;
        }
        let host = spec.hostname().clone().unwrap_or_default();
        let domain = spec.domainname().clone().unwrap_or_default();
        if !host.is_empty() || !domain.is_empty() {
            explain::step(&catalog::HOSTNAME, || {
                format!("hostname={host:?} domainname={domain:?}")
            });
        }
        if !host.is_empty() {
            nix::unistd::sethostname(&host)
                .map_err(|e| Error::sys(format!("sethostname({host:?})"), e))?;
        }
        if !domain.is_empty() {
            let c = CString::new(domain.clone()).unwrap_or_default();
            // SAFETY: setdomainname reads `len` bytes of a string that lives for the call.
            if unsafe { libc::setdomainname(c.as_ptr(), domain.len()) } < 0 {
                return Err(Error::sys(
                    format!("setdomainname({domain:?})"),
                    nix::errno::Errno::last(),
                ));
            }
        }
    }

    let mounts = spec.mounts().clone().unwrap_or_default();
    let fifo_path = if req.release_on_channel {
        None
    } else {
        Some(
            take_passed(FD_EXEC_FIFO)
                .ok_or_else(|| Error::msg("the runtime passed no exec.fifo descriptor"))?,
        )
    };
    let mut pty_master: Option<OwnedFd> = None;
    // The pid namespace joined by path: procfs is mounted for it (and the
    // init moves into it after pivot_root).
    let pidns = if req.pid_handover {
        Some(
            take_passed(FD_PIDNS)
                .ok_or_else(|| Error::msg("the runtime passed no pid namespace to enter"))?,
        )
    } else {
        None
    };
    let mut deferred: Vec<usize> = Vec::new();
    // The rootfs is built in the container's mount namespace, whether new or
    // joined by path (as runc and crun do), or without one in the runtime's.
    {
        let root_fd = {
            let _g = explain::phase(Phase::Mounts);
            let root_fd = if req.host_mountns {
                linux::rootfs::prepare_host(&req.rootfs)?
            } else {
                linux::rootfs::prepare(&req.rootfs, linux.rootfs_propagation().as_deref())?
            };
            let idmapped = take_idmapped();
            let ctx = linux::mounts::MountCtx {
                root: root_fd.as_fd(),
                rootfs: &req.rootfs,
                cgroup: &req.cgroup_mount,
                userns: req.userns,
                label: linux::lsm::mount_label(linux.mount_label().as_deref()),
                idmapped: &idmapped,
                pidns: pidns.as_ref().map(|f| f.as_fd()),
                fresh: Default::default(),
            };
            for (i, m) in mounts.iter().enumerate() {
                if linux::mounts::mount_entry(&ctx, m, i)? == linux::mounts::Mounted::Deferred {
                    deferred.push(i);
                }
            }
            if !linux::devices::dev_is_bind(&mounts) {
                let mut nodes = linux::devices::defaults();
                for d in linux.devices().iter().flatten() {
                    let n = linux::devices::from_spec(d)?;
                    nodes.retain(|x| x.path != n.path);
                    nodes.push(n);
                }
                linux::devices::create(root_fd.as_fd(), &nodes, req.userns)?;
            }
            root_fd
        };
        // The parent's work in the runtime's namespaces, now that the
        // container's exist: linux.netDevices moved in, then the prestart
        // and createRuntime hooks.
        if has_hooks(&spec, &["prestart", "createRuntime"])
            || linux::netdevices::wanted(Some(&linux))
        {
            chan().send(&ToParent::Hooks)?;
            match chan().recv::<ToChild>()? {
                Some((ToChild::HooksDone, _)) => {}
                _ => return Err(Error::msg("parent did not confirm the prestart hooks")),
            }
        }
        if let Some(h) = spec.hooks() {
            if let Some(list) = h.create_container() {
                // As runc: in the rootfs directory, with the process's environment.
                let env = req.process.env().clone().unwrap_or_default();
                let at = linux::hooks::Inherit::container(Some(&req.rootfs), &env);
                let st = hook_state(req, crate::state::OciStatus::Creating);
                linux::hooks::run("createContainer", list, &st, at)?;
            }
        }
        {
            let _g = explain::phase(Phase::PivotRoot);
            drop(root_fd);
            if req.host_mountns {
                linux::rootfs::chroot(&req.rootfs)?;
            } else if req.no_pivot {
                linux::rootfs::move_root(&req.rootfs)?;
            } else {
                linux::rootfs::pivot(&req.rootfs)?;
            }
            linux::rootfs::set_root_propagation(linux.rootfs_propagation().as_deref())?;
            if let Some(ns) = pidns {
                enter_pid_namespace(req, ns)?;
                mount_deferred(req, &mounts, &deferred)?;
            }
        }
        let _g = explain::phase(Phase::Mounts);
        if req.process.terminal() == Some(true) {
            pty_master = Some(setup_console(req)?);
        }
        if let Some(s) = linux.sysctl() {
            linux::sysctl::apply(s)?;
        }
        linux::rootfs::readonly_paths(linux.readonly_paths().as_deref().unwrap_or(&[]))?;
        linux::rootfs::mask_paths(linux.masked_paths().as_deref().unwrap_or(&[]))?;
        if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
            linux::rootfs::readonly_root()?;
        }
    }
    let prepared = finalize(req)?;
    drop(pty_master);

    explain::step(&catalog::BARRIER_WAIT, || match &fifo_path {
        Some(_) => format!(
            "open({}/exec.fifo, O_WRONLY) blocks until `nk-runtime start`",
            req.state_dir.display()
        ),
        None => "recv on the sync channel: `run` starts the container itself (no exec.fifo)".into(),
    });
    // Ready: the parent records `created` and exits; from here a dead parent
    // must not kill us.
    // SAFETY: prctl(PR_SET_PDEATHSIG, 0) takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    chan().send(&ToParent::Ready)?;

    let barrier = explain::phase(Phase::ExecBarrier);
    // Open until execve closes it.
    let mut _fifo_open = None;
    match fifo_path {
        Some(fifo_path) => {
            // Reopened through the container's /proc (as runc does): blocks
            // until `start` opens the fifo for reading.
            let reopen = linux::fs::fd_path(fifo_path.as_fd());
            let fifo = loop {
                match nix::fcntl::open(
                    reopen.as_str(),
                    OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                ) {
                    Ok(f) => break f,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        return Err(Error::sys(
                            format!(
                            "open exec.fifo through {reopen} (the container needs /proc mounted)"
                        ),
                            e,
                        ))
                    }
                }
            };
            nix::unistd::write(&fifo, b"0").map_err(|e| Error::sys("write exec.fifo", e))?;
            // The fifo stays open until execve closes it (O_CLOEXEC): `start`
            // reads to end-of-file, and our steps from here on travel in it.
            explain::redirect_to_fd(fifo.as_raw_fd());
            _fifo_open = Some(fifo);
        }
        // `run` holds the channel: Start, or end-of-file if it died (then
        // the container never starts). Steps keep travelling in the
        // channel, which execve closes.
        None => match chan().recv::<ToChild>()? {
            Some((ToChild::Start, _)) => {}
            _ => {
                return Err(Error::msg(
                    "the runtime that ran this container went away before starting it",
                ))
            }
        },
    }
    drop(barrier);
    if let Some(h) = spec.hooks() {
        if let Some(list) = h.start_container() {
            // In process.cwd (entered already) with the process's environment.
            let at = linux::hooks::Inherit::container(None, &prepared.env);
            linux::hooks::run(
                "startContainer",
                list,
                &hook_state(req, crate::state::OciStatus::Running),
                at,
            )?;
        }
    }
    do_exec(req, prepared)
}

/// Enter the pid namespace that the config joins by path, now that this
/// process's root and cwd are the container's: setns() then clone3 with
/// CLONE_PARENT (the runtime is the new init's parent), and this process
/// exits. The runtime records the new pid and confirms it; the new init then
/// goes on where this one stopped (a fork: it is single-threaded).
fn enter_pid_namespace(req: &mut InitRequest, fd: OwnedFd) -> Result<()> {
    explain::step(&catalog::PID_HANDOVER, || {
        "setns(pid namespace of linux.namespaces, CLONE_NEWPID); clone3(CLONE_PARENT)".into()
    });
    nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWPID)
        .map_err(|e| Error::sys("setns into the pid namespace of linux.namespaces", e))?;
    drop(fd);
    // clone3 wants exit_signal 0 with CLONE_PARENT (the child gets ours).
    let mut args = super::clone::CloneArgs {
        flags: libc::CLONE_PARENT as u64,
        ..Default::default()
    };
    // SAFETY: this process has a single thread, so the child may go on
    // running this program, as after fork.
    let r = unsafe { super::clone::clone3(&mut args) };
    if r < 0 {
        return Err(Error::sys(
            "clone3(CLONE_PARENT) into the pid namespace of linux.namespaces",
            nix::errno::Errno::last(),
        ));
    }
    if r > 0 {
        let _ = chan().send(&ToParent::Reborn(r as i32));
        // SAFETY: leave without running destructors: the clone owns the rest.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes no pointers (it is not inherited).
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // Lead a session of our own again, as the first init did.
    let _ = nix::unistd::setsid();
    match chan().recv::<ToChild>()? {
        Some((ToChild::Reborn(pid), _)) => req.host_pid = pid,
        _ => return Err(Error::msg("the runtime did not take over the new init")),
    }
    Ok(())
}

/// Mount the procfs entries that could not be mounted for the joined pid
/// namespace before pivot_root (a kernel without procfs's `pidns=`): now
/// this process is in that namespace and its root is the container's, so
/// procfs shows that namespace. With a user namespace of its own the mount
/// namespace holds no visible procfs any more, and the kernel refuses a new
/// one: the error says why.
fn mount_deferred(
    req: &InitRequest,
    mounts: &[oci_spec::runtime::Mount],
    idx: &[usize],
) -> Result<()> {
    if idx.is_empty() {
        return Ok(());
    }
    for &i in idx {
        linux::mounts::mount_deferred_proc(&mounts[i], i).map_err(|e| {
            Error::msg(format!(
                "{e} (mounted from inside the pid namespace joined by path, because this kernel has no procfs pidns= option, Linux 6.15 and later{})",
                if req.userns {
                    "; in a user namespace that needs a newer kernel"
                } else {
                    ""
                }
            ))
        })?;
    }
    Ok(())
}

fn has_hooks(spec: &Spec, kinds: &[&str]) -> bool {
    let Some(h) = spec.hooks() else { return false };
    #[allow(deprecated)]
    kinds.iter().any(|k| match *k {
        "prestart" => h.prestart().as_ref().is_some_and(|v| !v.is_empty()),
        "createRuntime" => h.create_runtime().as_ref().is_some_and(|v| !v.is_empty()),
        _ => false,
    })
}

fn time_namespace(linux: &oci_spec::runtime::Linux) -> Result<()> {
    let offsets = linux.time_offsets().clone().unwrap_or_default();
    explain::step(&catalog::NS_TIME, || {
        offsets
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k} {}s {}ns",
                    v.secs().unwrap_or(0),
                    v.nanosecs().unwrap_or(0)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    });
    nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(
        libc::CLONE_NEWTIME,
    ))
    .map_err(|e| Error::sys("unshare(CLONE_NEWTIME)", e))?;
    let mut text = String::new();
    for (k, v) in &offsets {
        text.push_str(&format!(
            "{k} {} {}\n",
            v.secs().unwrap_or(0),
            v.nanosecs().unwrap_or(0)
        ));
    }
    if !text.is_empty() {
        std::fs::write("/proc/self/timens_offsets", &text).map_err(|e| {
            Error::msg(format!(
                "linux.timeOffsets: write /proc/self/timens_offsets: {e}"
            ))
        })?;
    }
    Ok(())
}

fn setup_console(req: &InitRequest) -> Result<OwnedFd> {
    let pty = linux::console::open_pty()?;
    if let Some(sz) = req.process.console_size() {
        linux::console::set_winsize(pty.master.as_fd(), sz.height() as u16, sz.width() as u16);
    }
    if req.kind == InitKind::Create {
        linux::console::mount_console(&pty.slave_path)?;
    }
    linux::console::attach_slave(&pty.slave_path)?;
    if let Some(fd) = req.console_fd {
        // SAFETY: the parent passed this connected socket at this number.
        let sock = unsafe { linux::fs::own(fd) };
        // The payload is the master's name, as runc sends it (a zero-byte
        // message would carry no descriptor on a stream socket).
        linux::console::send_fd(sock.as_fd(), pty.master.as_fd(), "/dev/ptmx")?;
    } else if req.tty_to_parent {
        explain::step(&catalog::CONSOLE, || {
            "pty master sent to the runtime, which bridges it to this terminal".into()
        });
        chan().send_fds(&ToParent::Pty, &[pty.master.as_raw_fd()])?;
    }
    Ok(pty.master)
}

/// What is left to do right before execve.
struct Prepared {
    path: PathBuf,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// The process's environment (HOME added), for startContainer hooks.
    env: Vec<String>,
    /// The filter, when it is still to be loaded.
    seccomp: Option<PendingFilter>,
    listener: Option<OwnedFd>,
}

/// A compiled seccomp filter waiting to be loaded.
///
/// Whatever the runtime does once the filter is in place must be allowed by
/// every profile the engines ship, many of which predate openat2,
/// close_range or statx. So the filter goes in last: right before execve
/// (after the exec barrier and the startContainer hooks), where only
/// capset, the explain write and execve follow it. With a notify listener
/// it goes in before `create` returns instead, as runc sends the listener
/// its descriptor then (the barrier's open of exec.fifo follows it).
struct PendingFilter {
    prep: linux::seccomp::Prepared,
    /// Without no_new_privs, loading needs CAP_SYS_ADMIN: the final
    /// capability sets, which CAP_SYS_ADMIN joins for the load only.
    caps: Option<Masks>,
}

impl PendingFilter {
    fn load(self, req: &InitRequest, listener: Option<&OwnedFd>) -> Result<()> {
        use linux::capabilities::{capset, SYS_ADMIN};
        if let Some(m) = &self.caps {
            capset(
                m.effective | SYS_ADMIN,
                m.permitted | SYS_ADMIN,
                m.inheritable,
            )?;
        }
        let nfd = self.prep.load()?;
        if let Some(m) = &self.caps {
            capset(m.effective, m.permitted, m.inheritable)?;
        }
        send_notify(req, &self.prep.listener_metadata, listener, nfd)
    }
}

/// Everything from process attributes to the user switch; runs before the
/// barrier so errors still reach the parent (as in runc).
fn finalize(req: &InitRequest) -> Result<Prepared> {
    let _g = explain::phase(Phase::Process);
    let p = &req.process;
    if let Some(a) = p.apparmor_profile() {
        linux::lsm::apply_apparmor(a)?;
    }
    if let Some(l) = p.selinux_label() {
        linux::lsm::apply_selinux(l)?;
    }
    if let Some(io) = p.io_priority() {
        let class = serde_json::to_value(io.class())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        linux::procattr::set_ioprio(linux::procattr::ioprio_value(&class, io.priority())?)?;
    }
    if let Some(s) = p.scheduler() {
        linux::procattr::set_scheduler(s)?;
    }
    if let Some(pers) = &req.personality {
        linux::procattr::personality(pers)?;
    }
    if let Some(mp) = &req.memory_policy {
        linux::procattr::set_memory_policy(mp)?;
    }
    // execCPUAffinity is for exec processes only (the spec says so); the
    // parent applied `initial` before moving us into the cgroup.
    if let (InitKind::Exec, Some(a)) = (req.kind, p.exec_cpu_affinity()) {
        if let Some(l) = a.cpu_affinity_final().as_deref().filter(|l| !l.is_empty()) {
            linux::procattr::set_affinity(0, "process.execCPUAffinity.final", l)?;
        }
    }
    linux::rlimits::apply(p.rlimits().as_deref().unwrap_or(&[]))?;
    let nnp = p.no_new_privileges() == Some(true);
    if nnp {
        explain::step(&catalog::NO_NEW_PRIVS, String::new);
        // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) takes no pointers.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            return Err(Error::sys(
                "prctl(PR_SET_NO_NEW_PRIVS)",
                nix::errno::Errno::last(),
            ));
        }
    }
    let listener = req.seccomp_listener_fd.map(|fd| {
        // SAFETY: the parent connected this socket and passed it at this number.
        unsafe { linux::fs::own(fd) }
    });
    // Compiled by the parent (linux::seccomp::cache): only loaded here.
    let prep = req.seccomp.clone();
    // Close what must not reach the container: everything above stdio and
    // --preserve-fds becomes close-on-exec (CVE-2024-21626).
    explain::step(&catalog::CLOSE_FDS, || {
        format!(
            "close_range({}, ~0, CLOSE_RANGE_CLOEXEC)",
            3 + req.preserve_fds
        )
    });
    linux::fs::cloexec_from(3 + req.preserve_fds, &[]);

    let user = p.user();
    // The container's passwd, resolved inside its root and bounded (only
    // for the home directory and a user name's ids: groups are exactly
    // additionalGids).
    let root = linux::fs::open_dir_path(Path::new("/"))?;
    let passwd = linux::user::read_db(root.as_fd(), "/etc/passwd")?;
    let eu = linux::user::resolve(
        user.uid(),
        user.gid(),
        user.additional_gids().as_deref().unwrap_or(&[]),
        &passwd,
    );
    let masks = Masks::from_spec(p.capabilities().as_ref());
    // The filter's load without no_new_privs needs CAP_SYS_ADMIN, kept in
    // permitted (not effective) until then when the process is not given it.
    let filter_caps =
        (!nnp && masks.effective & linux::capabilities::SYS_ADMIN == 0).then_some(masks);
    let mut kept = masks;
    if prep.is_some() && filter_caps.is_some() {
        kept.permitted |= linux::capabilities::SYS_ADMIN;
    }
    linux::capabilities::drop_bounding(masks.bounding)?;
    linux::capabilities::keep_caps(true)?;
    linux::user::fix_stdio_owner(eu.uid, eu.gid);
    let setgroups_ok = linux::fs::read_in_root(root.as_fd(), Path::new("/proc/self/setgroups"), 64)
        .map(|s| String::from_utf8_lossy(&s).trim() != "deny")
        .unwrap_or(true);
    drop(root);
    linux::user::switch(&eu, setgroups_ok)?;
    linux::capabilities::keep_caps(false)?;
    linux::capabilities::apply(&kept)?;
    if let Some(m) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(m as libc::mode_t));
    }
    chdir_cwd(p.cwd(), req.kind == InitKind::Create)?;

    let args = p.args().clone().unwrap_or_default();
    let mut env = p.env().clone().unwrap_or_default();
    if linux::user::env_get(&env, "HOME").is_none() {
        env.push(format!("HOME={}", eu.home));
    }
    let path = linux::user::look_path(&args[0], &env)?;
    let to_c = |v: &[String]| -> Result<Vec<CString>> {
        v.iter()
            .map(|s| {
                CString::new(s.as_bytes())
                    .map_err(|_| Error::msg(format!("{s:?} contains a NUL byte")))
            })
            .collect()
    };
    let mut seccomp = prep.map(|prep| PendingFilter {
        prep,
        caps: filter_caps,
    });
    if req.kind == InitKind::Create && listener.is_some() {
        if let Some(f) = seccomp.take() {
            f.load(req, listener.as_ref())?;
        }
    }
    Ok(Prepared {
        path,
        argv: to_c(&args)?,
        envp: to_c(&env)?,
        env,
        seccomp,
        listener,
    })
}

fn send_notify(
    req: &InitRequest,
    metadata: &str,
    listener: Option<&OwnedFd>,
    nfd: Option<i32>,
) -> Result<()> {
    if let (Some(fd), Some(sock)) = (nfd, listener) {
        // As runc: the container's state, with the init's pid and "creating"
        // for create, the running container's for exec.
        use crate::state::OciStatus;
        let (status, pid) = match req.kind {
            InitKind::Create => (OciStatus::Creating, req.host_pid),
            InitKind::Exec => (OciStatus::Running, req.init_pid),
        };
        let state = crate::state::oci_state(&req.id, status, pid, &req.bundle, &req.annotations);
        linux::seccomp::send_to_listener(sock.as_fd(), fd, req.host_pid, &state, metadata)?;
        // SAFETY: the notify fd is ours; the listener has its own copy now.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// chdir to process.cwd, resolved inside the root: a cwd that names a
/// descriptor (/proc/self/fd/N) or a symlink out of the root cannot lead to
/// the host. A missing cwd is created for the container's init only: as with
/// runc, `exec` into a missing directory fails (`docker exec -w /nope`).
fn chdir_cwd(cwd: &Path, create: bool) -> Result<()> {
    explain::step(&catalog::CWD, || cwd.display().to_string());
    let root = linux::fs::open_dir_path(Path::new("/"))?;
    let fd = match linux::fs::open_in_root(root.as_fd(), cwd, OFlag::O_PATH | OFlag::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) if create => {
            // runc creates a missing cwd (as the container's root, before the user switch
            // would make it impossible); here the user has switched, so try and report.
            linux::fs::mkdir_all_in_root(root.as_fd(), cwd).map_err(|_| {
                Error::msg(format!(
                    "process.cwd {}: no such directory in the container",
                    cwd.display()
                ))
            })?
        }
        Err(e) => {
            return Err(Error::sys(
                format!("process.cwd {}: cannot enter", cwd.display()),
                e,
            ))
        }
    };
    nix::unistd::fchdir(fd.as_fd())
        .map_err(|e| Error::sys(format!("chdir to process.cwd {}", cwd.display()), e))?;
    // Belt and braces: the kernel reports a cwd outside our root as
    // "(unreachable)", which glibc turns into ENOENT. Any other error means
    // getcwd itself is refused (by a filter the runtime itself runs under:
    // the container's is loaded later), and the fchdir above was safe.
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        Err(e) if e != nix::errno::Errno::ENOENT => Ok(()),
        _ => Err(Error::msg(format!(
            "process.cwd {} is outside the container's root",
            cwd.display()
        ))),
    }
}

fn do_exec(req: &InitRequest, p: Prepared) -> Result<std::convert::Infallible> {
    let g = explain::phase(Phase::Exec);
    // Before the filter, which may not allow rt_sigaction.
    linux::signals::reset_for_exec();
    if let Some(f) = p.seccomp {
        f.load(req, p.listener.as_ref())?;
    }
    drop(p.listener);
    explain::step(&catalog::EXEC, || {
        format!(
            "execve({}, {:?})",
            p.path.display(),
            p.argv
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
        )
    });
    let path = CString::new(p.path.as_os_str().as_encoded_bytes()).unwrap_or_default();
    drop(g);
    let e = nix::unistd::execve(&path, &p.argv, &p.envp).unwrap_err();
    Err(Error::msg(format!("exec {}: {e}", p.path.display())))
}

fn exec(req: &InitRequest) -> Result<std::convert::Infallible> {
    // Born inside the container's namespaces and root (see clone::spawn_joined).
    if let Some(adj) = req.process.oom_score_adj() {
        linux::procattr::oom_score_adj(adj)?;
    }
    if !req.no_new_keyring {
        // runc's name for an exec process's keyring.
        linux::procattr::new_session_keyring(&format!("_ses.{}", req.id), false)?;
    }
    let mut pty = None;
    if req.process.terminal() == Some(true) {
        pty = Some(setup_console(req)?);
    }
    let prepared = finalize(req)?;
    drop(pty);
    // SAFETY: prctl(PR_SET_PDEATHSIG, 0) takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    chan().send(&ToParent::Ready)?;
    do_exec(req, prepared)
}
