//! The agent's poll loop: requests on the control port, stdio frames on the
//! stdio port, SIGCHLD through a signalfd, and the output of every watched
//! process. Writes to the ports are buffered and non-blocking; when the
//! stdio buffer is full the agent stops reading process output, so a slow
//! host slows the container down instead of stalling the control channel.

use crate::guest::{console, uptime_ms};
use crate::procs::{self, ChildIo, ParentIo, Proc};
use sandbox::container::{CreateOptions, ExecOptions, Runtime};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vm_protocol::{
    CheckpointContainer, CreateContainer, ExecProcess, FrameReader, GuestCommand, GuestMsg,
    HostMsg, ProcInfo, Ready, Reply, Request, RestoreContainer,
};

/// Where the guest keeps container state and bundles.
const STATE_ROOT: &str = "/run/nk/state";
const BUNDLES: &str = "/run/nk/bundles";
const OVERLAYS: &str = "/run/nk/overlay";
/// Stop reading process output while this much waits for the stdio port.
const SIO_HIGH_WATER: usize = 4 << 20;
/// How long to wait for the last output of a process after it exited.
const DRAIN_GRACE: Duration = Duration::from_millis(300);

/// Log lines from the library, drained into the control port by the loop.
static LOG_QUEUE: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// One virtio-serial port with its buffers.
struct Port {
    fd: OwnedFd,
    reader: FrameReader,
    out: Vec<u8>,
    closed: bool,
}

impl Port {
    fn new(fd: OwnedFd) -> Port {
        Port {
            fd,
            reader: FrameReader::new(),
            out: Vec::new(),
            closed: false,
        }
    }

    fn read(&mut self) {
        let mut buf = [0u8; 65536];
        loop {
            // SAFETY: read into our buffer from the port.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                self.reader.push(&buf[..n as usize]);
                continue;
            }
            if n == 0 {
                // The host end is no longer connected.
                self.closed = true;
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EAGAIN) && e.raw_os_error() != Some(libc::EINTR) {
                self.closed = true;
            }
            break;
        }
    }

    fn flush(&mut self) {
        while !self.out.is_empty() {
            // SAFETY: write from our buffer to the port.
            let n = unsafe {
                libc::write(
                    self.fd.as_raw_fd(),
                    self.out.as_ptr().cast(),
                    self.out.len(),
                )
            };
            if n > 0 {
                self.out.drain(..n as usize);
                continue;
            }
            break;
        }
    }

    /// Write everything, waiting up to `t` (used before powering off).
    fn flush_blocking(&mut self, t: Duration) {
        let end = Instant::now() + t;
        while !self.out.is_empty() && Instant::now() < end {
            self.flush();
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            let _ = poll(
                &mut [PollFd::new(
                    std::os::fd::AsFd::as_fd(&self.fd),
                    PollFlags::POLLOUT,
                )],
                PollTimeout::from(50u8),
            );
        }
    }
}

struct Agent {
    ctl: Port,
    sio: Port,
    rt: Runtime,
    procs: HashMap<u32, Proc>,
    by_pid: HashMap<i32, u32>,
    share_mounted: bool,
    /// Docker's DNS address in the containers that asked for it.
    dns: crate::dns::Relay,
}

pub fn serve(ctl: OwnedFd, sio: OwnedFd) -> Result<(), String> {
    sandbox::logging::set_sink(|r| {
        if let Ok(mut q) = LOG_QUEUE.lock() {
            q.push((r.level.as_str().to_string(), r.msg.clone()));
        }
    });
    sandbox::logging::set_role(sandbox::logging::Role::Parent);
    let _ = std::fs::create_dir_all(STATE_ROOT);
    let mut rt = Runtime::new(STATE_ROOT.into());
    rt.rootless = false;
    let mut a = Agent {
        ctl: Port::new(ctl),
        sio: Port::new(sio),
        rt,
        procs: HashMap::new(),
        by_pid: HashMap::new(),
        share_mounted: false,
        dns: crate::dns::Relay::default(),
    };
    // SIGCHLD through a signalfd; PID 1 gets no default actions anyway.
    // SAFETY: building and applying a signal mask, then creating a signalfd from it.
    let sfd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(format!("signalfd: {}", std::io::Error::last_os_error()));
        }
        OwnedFd::from_raw_fd(fd)
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    a.send(&GuestMsg::Ready(Ready {
        version: vm_protocol::VERSION,
        uptime_ms: uptime_ms(),
        kernel,
    }));
    loop {
        a.ctl.flush();
        a.sio.flush();
        let mut fds = vec![
            pfd(
                a.ctl.fd.as_raw_fd(),
                libc::POLLIN
                    | if a.ctl.out.is_empty() {
                        0
                    } else {
                        libc::POLLOUT
                    },
            ),
            pfd(
                if a.sio.closed {
                    -1
                } else {
                    a.sio.fd.as_raw_fd()
                },
                libc::POLLIN
                    | if a.sio.out.is_empty() {
                        0
                    } else {
                        libc::POLLOUT
                    },
            ),
            pfd(sfd.as_raw_fd(), libc::POLLIN),
        ];
        let dns_at = fds.len();
        let dns_fds = a.dns.fds();
        for fd in &dns_fds {
            fds.push(pfd(*fd, libc::POLLIN));
        }
        // (stream, index into outs) for each output descriptor polled.
        let mut out_at = Vec::new();
        let mut in_at = Vec::new();
        let mut feed_at = Vec::new();
        for (s, p) in &a.procs {
            if a.sio.out.len() < SIO_HIGH_WATER {
                for (i, (_, fd)) in p.outs.iter().enumerate() {
                    out_at.push((*s, i, fds.len()));
                    fds.push(pfd(fd.as_raw_fd(), libc::POLLIN));
                }
            }
            if let Some(fd) = &p.stdin {
                if !p.stdin_buf.is_empty() {
                    in_at.push((*s, fds.len()));
                    fds.push(pfd(fd.as_raw_fd(), libc::POLLOUT));
                }
            }
            for f in &p.feeds {
                if let (Some(fd), false) = (&f.fd, f.buf.is_empty()) {
                    feed_at.push((*s, f.no, fds.len()));
                    fds.push(pfd(fd.as_raw_fd(), libc::POLLOUT));
                }
            }
        }
        let waiting = a.procs.values().any(|p| p.status.is_some());
        let timeout = if waiting { 50 } else { -1 };
        // SAFETY: poll over a vector that lives for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(format!("poll: {}", std::io::Error::last_os_error()));
        }
        if fds[2].revents != 0 {
            let mut buf = [0u8; 128 * 16];
            // SAFETY: drain the signalfd into our buffer.
            while unsafe { libc::read(sfd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
            a.reap();
        }
        for i in 0..dns_fds.len() {
            if fds[dns_at + i].revents != 0 {
                for (query, data) in a.dns.take_queries(i) {
                    a.send(&GuestMsg::Dns { query, data });
                }
            }
        }
        for (s, i, at) in out_at.into_iter().rev() {
            if fds[at].revents != 0 {
                a.read_output(s, i);
            }
        }
        for (s, at) in in_at {
            if fds[at].revents != 0 {
                a.write_stdin(s);
            }
        }
        for (s, no, at) in feed_at {
            if fds[at].revents != 0 {
                if let Some(f) = a
                    .procs
                    .get_mut(&s)
                    .and_then(|p| p.feeds.iter_mut().find(|f| f.no == no))
                {
                    f.write();
                }
            }
        }
        if fds[1].revents & (libc::POLLIN | libc::POLLHUP) != 0 {
            a.sio.read();
            a.take_stdio();
        }
        if fds[0].revents & (libc::POLLIN | libc::POLLHUP) != 0 {
            a.ctl.read();
            loop {
                let body = match a.ctl.reader.next_frame() {
                    Ok(Some(b)) => b,
                    Ok(None) => break,
                    Err(e) => return Err(format!("control port: {e}")),
                };
                let msg: HostMsg = match vm_protocol::decode_json(&body) {
                    Ok(m) => m,
                    Err(e) => {
                        console(&format!("bad request: {e}"));
                        continue;
                    }
                };
                if matches!(msg.req, Request::Shutdown) {
                    a.shutdown();
                    a.reply(msg.id, Ok(Reply::Done));
                    a.ctl.flush_blocking(Duration::from_millis(500));
                    return Ok(());
                }
                // A DNS answer goes back to the query's socket; the host
                // waits for no reply to it.
                let one_way = matches!(msg.req, Request::DnsAnswer { .. });
                let r = a.handle(msg.req);
                if !one_way {
                    a.reply(msg.id, r);
                }
            }
        }
        a.report_exits();
        a.drain_logs();
        if a.ctl.closed {
            return Err("the control port closed".into());
        }
    }
}

fn pfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

impl Agent {
    fn send(&mut self, m: &GuestMsg) {
        self.ctl.out.extend(vm_protocol::encode_json(m));
        self.ctl.flush();
    }

    fn reply(&mut self, id: u64, r: Result<Reply, String>) {
        self.drain_logs();
        let (ok, error) = match r {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        self.send(&GuestMsg::Reply { id, ok, error });
    }

    fn drain_logs(&mut self) {
        let lines = LOG_QUEUE
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default();
        for (level, msg) in lines {
            self.send(&GuestMsg::Log { level, msg });
        }
    }

    fn handle(&mut self, req: Request) -> Result<Reply, String> {
        match req {
            Request::Ping => Ok(Reply::Pong {
                uptime_ms: uptime_ms(),
            }),
            Request::Wake(w) => crate::wake::wake(&w).map(|_| Reply::Pong {
                uptime_ms: uptime_ms(),
            }),
            Request::Create(c) => self.create(c),
            Request::Start { id } => self
                .rt
                .start(&id)
                .map(|_| Reply::Done)
                .map_err(|e| e.to_string()),
            Request::Kill { id, signal, all } => self
                .rt
                .kill(&id, signal, all)
                .map(|_| Reply::Done)
                .map_err(|e| e.to_string()),
            Request::Exec(e) => self.exec(e),
            Request::Run(g) => self.run(g),
            Request::Ps { id } => {
                let pids = self.rt.pids(&id).map_err(|e| e.to_string())?;
                Ok(Reply::Procs(pids.into_iter().map(proc_info).collect()))
            }
            Request::Pause { id } => self
                .rt
                .pause(&id)
                .map(|_| Reply::Done)
                .map_err(|e| e.to_string()),
            Request::Resume { id } => self
                .rt
                .resume(&id)
                .map(|_| Reply::Done)
                .map_err(|e| e.to_string()),
            Request::Stats { id } => {
                let (st, _) = self.rt.load(&id).map_err(|e| e.to_string())?;
                let cg = self
                    .rt
                    .cgroup_of(&st)
                    .ok_or_else(|| format!("container {id} has no cgroup"))?;
                let s = cg.stats().map_err(|e| e.to_string())?;
                Ok(Reply::Stats(Box::new(s)))
            }
            Request::Update { id, resources } => {
                let res = *resources;
                sandbox::cgroups::validate_resources(&res)
                    .map_err(|e| format!("resources.{}: {}", e.field, e.reason))?;
                let (st, _) = self.rt.load(&id).map_err(|e| e.to_string())?;
                let cg = self
                    .rt
                    .cgroup_of(&st)
                    .ok_or_else(|| format!("container {id} has no cgroup"))?;
                cg.set(&res, true).map_err(|e| e.to_string())?;
                Ok(Reply::Done)
            }
            Request::Signal { stream, signal } => {
                let p = self
                    .procs
                    .get(&stream)
                    .ok_or_else(|| format!("no process on stream {stream}"))?;
                if p.status.is_none() {
                    // SAFETY: kill(2) to a process the agent started and has not reaped.
                    unsafe { libc::kill(p.pid, signal) };
                }
                Ok(Reply::Done)
            }
            Request::Resize { stream, rows, cols } => {
                let p = self
                    .procs
                    .get(&stream)
                    .ok_or_else(|| format!("no process on stream {stream}"))?;
                if let Some(m) = &p.pty {
                    sandbox::linux::console::set_winsize(std::os::fd::AsFd::as_fd(m), rows, cols);
                }
                Ok(Reply::Done)
            }
            Request::Delete { id } => self.delete(&id),
            Request::Checkpoint(c) => self.checkpoint(c),
            Request::Restore(r) => self.restore(r),
            Request::Shutdown => Ok(Reply::Done),
            Request::DnsAnswer { query, data } => {
                self.dns.answer(query, &data);
                Ok(Reply::Done)
            }
        }
    }

    /// Remove one container while the VM stays up (a pod's later
    /// container): the library kills its processes and removes its state
    /// and cgroup, then its overlay and bundle go. Its init's exit is
    /// reported as usual once the agent reaps it.
    fn delete(&mut self, id: &str) -> Result<Reply, String> {
        sandbox::state::validate_id(id).map_err(|e| e.to_string())?;
        self.rt.delete(id, true).map_err(|e| e.to_string())?;
        let bundle = format!("{BUNDLES}/{id}");
        let rootfs = format!("{bundle}/rootfs");
        if std::path::Path::new(&rootfs).exists() {
            umount(&rootfs)?;
        }
        for d in [bundle, format!("{OVERLAYS}/{id}")] {
            match std::fs::remove_dir_all(&d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(format!("remove {d}: {e}"))
                }
                _ => {}
            }
        }
        Ok(Reply::Done)
    }

    fn mount_share(&mut self) -> Result<(), String> {
        if self.share_mounted {
            return Ok(());
        }
        let target = vm_protocol::SHARE_MOUNT;
        std::fs::create_dir_all(target).map_err(|e| format!("create {target}: {e}"))?;
        // The host says on the kernel command line which device it gave us.
        if std::env::var("nk_share").is_ok_and(|v| v == "virtiofs") {
            mount(
                vm_protocol::SHARE_TAG,
                target,
                "virtiofs",
                libc::MS_NOSUID | libc::MS_NODEV,
                "",
            )?;
        } else {
            mount(
                vm_protocol::SHARE_TAG,
                target,
                "9p",
                libc::MS_NOSUID | libc::MS_NODEV,
                "trans=virtio,version=9p2000.L,msize=262144",
            )?;
        }
        self.share_mounted = true;
        Ok(())
    }

    /// The container's bundle in the guest, as create and restore make it:
    /// an overlay on the shared rootfs (tmpfs upper layer) and the config
    /// written for the library. Returns (bundle, rootfs, overlay dir,
    /// config, terminal).
    fn bundle(
        &mut self,
        c: &CreateContainer,
        seed: Option<&std::path::Path>,
    ) -> Result<(String, String, String, oci_spec::runtime::Spec, bool), String> {
        sandbox::state::validate_id(&c.id).map_err(|e| e.to_string())?;
        if self.procs.contains_key(&c.stream) {
            return Err(format!("stream {} is in use", c.stream));
        }
        self.mount_share()?;
        let lower = format!(
            "{}/{}",
            vm_protocol::SHARE_MOUNT,
            c.rootfs.trim_start_matches('/')
        );
        if c.rootfs.split('/').any(|p| p == "..") {
            return Err(format!("rootfs {:?} leaves the share", c.rootfs));
        }
        let bundle = format!("{BUNDLES}/{}", c.id);
        let rootfs = format!("{bundle}/rootfs");
        let ovl = format!("{OVERLAYS}/{}", c.id);
        for d in [&rootfs, &format!("{ovl}/upper"), &format!("{ovl}/work")] {
            std::fs::create_dir_all(d).map_err(|e| format!("create {d}: {e}"))?;
        }
        if let Some(images) = seed {
            crate::criu::load_upper(images, std::path::Path::new(&format!("{ovl}/upper")))
                .map_err(|e| format!("the checkpoint's rootfs writes: {e}"))?;
        }
        // The host's rootfs is the lower layer; writes land in tmpfs.
        mount(
            "overlay",
            &rootfs,
            "overlay",
            0,
            &format!("lowerdir={lower},upperdir={ovl}/upper,workdir={ovl}/work"),
        )?;
        let mut config = (*c.config).clone();
        let copyup = config
            .mounts()
            .iter()
            .flatten()
            .any(|m| m.options().iter().flatten().any(|o| o == "tmpcopyup"));
        if copyup {
            crate::cp::install().map_err(|e| format!("install /bin/cp for tmpcopyup: {e}"))?;
        }
        crate::hooks::route_through_rootfs(&mut config)
            .map_err(|e| format!("install the agent for createContainer hooks: {e}"))?;
        let mut root = config.root().clone().unwrap_or_default();
        root.set_path("rootfs".into());
        config.set_root(Some(root));
        let cfg = format!("{bundle}/config.json");
        std::fs::write(&cfg, serde_json::to_vec(&config).unwrap_or_default())
            .map_err(|e| format!("write {cfg}: {e}"))?;
        let terminal = config
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        if let Some(l) = sandbox::logging::Level::parse(&c.log_level) {
            sandbox::logging::set_level(l);
            self.rt.log_level = l;
        }
        self.rt.systemd_cgroup = c.systemd_cgroup;
        Ok((bundle, rootfs, ovl, config, terminal))
    }

    fn create(&mut self, c: CreateContainer) -> Result<Reply, String> {
        let (bundle, rootfs, ovl, _, terminal) = self.bundle(&c, None)?;
        let (mut child, parent) = stdio_for(terminal)?;
        // --preserve-fds: pipes at 3, 4... carry the host descriptors' bytes.
        let kept = procs::preserved(&c.preserve_fds).map_err(|e| format!("pipes: {e}"))?;
        child.extra = kept.child;
        let opts = CreateOptions {
            id: c.id.clone(),
            bundle: bundle.clone().into(),
            no_pivot: c.no_pivot,
            no_new_keyring: c.no_new_keyring,
            foreground: true,
            preserve_fds: c.preserve_fds.len() as i32,
            ..Default::default()
        };
        let r = procs::with_stdio(&child, || self.rt.create(&opts));
        drop(child);
        let h = match r {
            Ok(h) => h,
            Err(e) => {
                let _ = umount(&rootfs);
                let _ = std::fs::remove_dir_all(&bundle);
                let _ = std::fs::remove_dir_all(&ovl);
                return Err(e.to_string());
            }
        };
        if let Some(net) = &c.network {
            // Before `start`: the container's process waits on its exec FIFO.
            if let Err(e) = crate::net::configure(h.pid, net) {
                // SAFETY: kill(2) of the init we just created; the VM goes
                // down with the failed create.
                unsafe { libc::kill(h.pid, libc::SIGKILL) };
                return Err(format!("configure the container's network: {e}"));
            }
            if net.dns_relay {
                if let Err(e) = self.dns.listen(h.pid) {
                    // SAFETY: as above.
                    unsafe { libc::kill(h.pid, libc::SIGKILL) };
                    return Err(format!("relay Docker's DNS: {e}"));
                }
            }
        }
        let mut io = parent_io(h.pty, parent)?;
        io.outs.extend(kept.outs);
        io.feeds = kept.feeds;
        self.watch(c.stream, h.pid, io);
        Ok(Reply::Created { pid: h.pid })
    }

    /// A path the host gave relative to the share, which must stay in it.
    fn in_share(rel: &str) -> Result<std::path::PathBuf, String> {
        if rel.split('/').any(|p| p == "..") {
            return Err(format!("{rel:?} leaves the share"));
        }
        Ok(std::path::Path::new(vm_protocol::SHARE_MOUNT).join(rel.trim_start_matches('/')))
    }

    /// CRIU dumps the container into the host's image directory (in the
    /// share); without leave_running the library deletes the container
    /// and its init's exit is reported as usual.
    fn checkpoint(&mut self, c: CheckpointContainer) -> Result<Reply, String> {
        self.mount_share()?;
        let criu = crate::criu::install(&Self::in_share(&c.kit.dir)?)?;
        let o = sandbox::container::CheckpointOptions {
            flags: crate::criu::flags(criu, Self::in_share(&c.images)?, &c.options),
            leave_running: c.leave_running,
            ..Default::default()
        };
        self.rt.checkpoint(&c.id, &o).map_err(|e| e.to_string())?;
        crate::criu::save_upper(
            std::path::Path::new(&format!("{OVERLAYS}/{}/upper", c.id)),
            &o.flags.image_path,
        )
        .map_err(|e| format!("keep the container's rootfs writes: {e}"))?;
        Ok(Reply::Done)
    }

    /// The container's bundle as create makes it, then CRIU rebuilds the
    /// dumped tree in it, as a child of the agent with new stdio pipes in
    /// place of the dumped ones.
    fn restore(&mut self, r: RestoreContainer) -> Result<Reply, String> {
        let c = r.create;
        if c.network.as_ref().is_some_and(|n| !n.interfaces.is_empty()) {
            return Err("restore of a VM-mode container into the engine's network is not supported: CRIU restores the container's network namespace empty, and its interfaces would need the engine's set-up again".into());
        }
        if !c.preserve_fds.is_empty() {
            return Err("restore with --preserve-fds is not supported in VM mode".into());
        }
        self.mount_share()?;
        let criu = crate::criu::install(&Self::in_share(&r.kit.dir)?)?;
        let images = Self::in_share(&r.images)?;
        let (bundle, rootfs, ovl, _, terminal) = self.bundle(&c, Some(&images))?;
        if terminal {
            return Err("restore of a container with process.terminal is not supported in VM mode: the dumped terminal is the guest's, which ended with its VM".into());
        }
        let (child, parent) = stdio_for(false)?;
        let o = sandbox::container::RestoreOptions {
            flags: crate::criu::flags(criu, images, &r.options),
            id: c.id.clone(),
            bundle: bundle.clone().into(),
            ..Default::default()
        };
        let res = procs::with_stdio(&child, || self.rt.restore(&o));
        drop(child);
        let restored = match res {
            Ok(x) => x,
            Err(e) => {
                let _ = umount(&rootfs);
                let _ = std::fs::remove_dir_all(&bundle);
                let _ = std::fs::remove_dir_all(&ovl);
                return Err(e.to_string());
            }
        };
        let io = parent_io(None, parent)?;
        self.watch(c.stream, restored.pid, io);
        Ok(Reply::Created { pid: restored.pid })
    }

    fn exec(&mut self, e: ExecProcess) -> Result<Reply, String> {
        if self.procs.contains_key(&e.stream) {
            return Err(format!("stream {} is in use", e.stream));
        }
        let process = *e.process;
        let terminal = process.terminal() == Some(true);
        let (child, parent) = stdio_for(terminal)?;
        let opts = ExecOptions {
            id: e.id,
            process: Some(process),
            detach: false,
            ..Default::default()
        };
        let r = procs::with_stdio(&child, || self.rt.exec(&opts));
        drop(child);
        let h = r.map_err(|e| e.to_string())?;
        let io = parent_io(h.pty, parent)?;
        self.watch(e.stream, h.pid, io);
        Ok(Reply::Started { pid: h.pid })
    }

    fn run(&mut self, g: GuestCommand) -> Result<Reply, String> {
        use std::os::unix::process::CommandExt;
        if self.procs.contains_key(&g.stream) {
            return Err(format!("stream {} is in use", g.stream));
        }
        let prog = g.argv.first().ok_or("run: empty argv")?;
        // The program usually lives in the share; without a 9p device this fails harmlessly.
        let _ = self.mount_share();
        let (child, parent) = procs::pipes().map_err(|e| format!("pipes: {e}"))?;
        let [i, o, er] = child.fds;
        let mut cmd = std::process::Command::new(prog);
        cmd.args(&g.argv[1..])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(i)
            .stdout(o)
            .stderr(er);
        for kv in &g.env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        if let Some(d) = &g.cwd {
            cmd.current_dir(d);
        }
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                libc::setsid();
                Ok(())
            });
        }
        let ch = cmd.spawn().map_err(|e| format!("run {prog}: {e}"))?;
        let pid = ch.id() as i32;
        // Reaped by the SIGCHLD handler, not by std.
        std::mem::forget(ch);
        self.watch(g.stream, pid, parent);
        Ok(Reply::Started { pid })
    }

    fn watch(&mut self, stream: u32, pid: i32, io: ParentIo) {
        self.by_pid.insert(pid, stream);
        self.procs.insert(stream, Proc::new(pid, io));
    }

    fn reap(&mut self) {
        loop {
            let mut st = 0;
            // SAFETY: waitpid(-1, WNOHANG) writes the status into `st`.
            let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let code = if libc::WIFEXITED(st) {
                libc::WEXITSTATUS(st)
            } else if libc::WIFSIGNALED(st) {
                128 + libc::WTERMSIG(st)
            } else {
                continue;
            };
            if let Some(s) = self.by_pid.remove(&pid) {
                if let Some(p) = self.procs.get_mut(&s) {
                    p.status = Some(code);
                    p.exited_at = Some(Instant::now());
                }
            }
        }
    }

    fn read_output(&mut self, stream: u32, i: usize) {
        let Some(p) = self.procs.get_mut(&stream) else {
            return;
        };
        let (no, fd) = (&p.outs[i].0, &p.outs[i].1);
        let mut buf = vec![0u8; 65536];
        // SAFETY: read into our buffer from the process's output.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            self.sio
                .out
                .extend(vm_protocol::encode_stdio(stream, *no, &buf[..n as usize]));
            return;
        }
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
            return;
        }
        // End of file (or EIO on a pty whose last holder closed it).
        let no = *no;
        p.outs.remove(i);
        self.sio
            .out
            .extend(vm_protocol::encode_stdio(stream, no, b""));
    }

    fn write_stdin(&mut self, stream: u32) {
        let Some(p) = self.procs.get_mut(&stream) else {
            return;
        };
        let Some(fd) = &p.stdin else {
            p.stdin_buf.clear();
            return;
        };
        // SAFETY: write from our buffer to the process's stdin.
        let n = unsafe {
            libc::write(
                fd.as_raw_fd(),
                p.stdin_buf.as_ptr().cast(),
                p.stdin_buf.len(),
            )
        };
        if n > 0 {
            p.stdin_buf.drain(..n as usize);
        } else if n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
            // The reader is gone: drop what is left.
            p.stdin_buf.clear();
            p.stdin = None;
        }
        if p.stdin_buf.is_empty() && p.stdin_eof && p.pty.is_none() {
            p.stdin = None;
        }
    }

    fn take_stdio(&mut self) {
        loop {
            let body = match self.sio.reader.next_frame() {
                Ok(Some(b)) => b,
                Ok(None) => return,
                Err(e) => {
                    console(&format!("stdio port: {e}"));
                    return;
                }
            };
            let Ok(f) = vm_protocol::decode_stdio(&body) else {
                continue;
            };
            let Some(p) = self.procs.get_mut(&f.stream) else {
                continue;
            };
            if f.fd >= vm_protocol::FD_PRESERVED {
                if let Some(feed) = p.feeds.iter_mut().find(|x| x.no == f.fd) {
                    if f.data.is_empty() {
                        feed.eof = true;
                    } else if feed.fd.is_some() {
                        feed.buf.extend_from_slice(&f.data);
                    }
                    feed.write();
                }
                continue;
            }
            if f.fd != vm_protocol::FD_STDIN {
                continue;
            }
            if f.data.is_empty() {
                p.stdin_eof = true;
                // A terminal has no end of file to pass on; a pipe is closed.
                if p.stdin_buf.is_empty() && p.pty.is_none() {
                    p.stdin = None;
                }
            } else if p.stdin.is_some() {
                p.stdin_buf.extend_from_slice(&f.data);
                self.write_stdin(f.stream);
            }
        }
    }

    /// Report processes that exited once their output is drained (or after
    /// a grace period, when a leftover child still holds the pipe).
    fn report_exits(&mut self) {
        let done: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, p)| {
                p.status.is_some()
                    && (p.outs.is_empty() || p.exited_at.is_some_and(|t| t.elapsed() > DRAIN_GRACE))
            })
            .map(|(s, _)| *s)
            .collect();
        for s in done {
            if let Some(mut p) = self.procs.remove(&s) {
                // Read what is still buffered, then end the streams.
                for (no, fd) in p.outs.drain(..) {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        // SAFETY: read into our buffer (non-blocking).
                        let n = unsafe {
                            libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                        };
                        if n <= 0 {
                            break;
                        }
                        self.sio
                            .out
                            .extend(vm_protocol::encode_stdio(s, no, &buf[..n as usize]));
                    }
                    self.sio.out.extend(vm_protocol::encode_stdio(s, no, b""));
                }
                self.sio.flush_blocking(Duration::from_secs(2));
                let status = p.status.unwrap_or(255);
                self.send(&GuestMsg::Exited { stream: s, status });
            }
        }
    }

    /// Kill every process and unmount, before power-off.
    fn shutdown(&mut self) {
        for p in self.procs.values() {
            if p.status.is_none() {
                // SAFETY: kill(2) to a process the agent started.
                unsafe { libc::kill(p.pid, libc::SIGKILL) };
            }
        }
        if let Ok(list) = self.rt.list() {
            for (st, _) in list {
                let _ = self.rt.delete(&st.id, true);
            }
        }
        self.sio.flush_blocking(Duration::from_millis(500));
    }
}

/// The agent's side of a started process's stdio: the pty master when the
/// library made one, else the pipes from `stdio_for`.
fn parent_io(pty: Option<OwnedFd>, parent: Option<ParentIo>) -> Result<ParentIo, String> {
    Ok(match (pty, parent) {
        (Some(m), _) => procs::pty_io(m).map_err(|e| format!("pty: {e}"))?,
        (None, Some(p)) => p,
        (None, None) => ParentIo {
            stdin: None,
            outs: Vec::new(),
            feeds: Vec::new(),
            pty: None,
        },
    })
}

fn stdio_for(terminal: bool) -> Result<(ChildIo, Option<ParentIo>), String> {
    if terminal {
        Ok((
            procs::null_io().map_err(|e| format!("open /dev/null: {e}"))?,
            None,
        ))
    } else {
        let (c, p) = procs::pipes().map_err(|e| format!("pipes: {e}"))?;
        Ok((c, Some(p)))
    }
}

fn proc_info(pid: i32) -> ProcInfo {
    let stat = sandbox::state::proc_stat(pid);
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    ProcInfo {
        pid,
        ppid: stat.map(|s| s.ppid).unwrap_or(0),
        cmd,
    }
}

fn mount(
    src: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<(), String> {
    let flags = nix::mount::MsFlags::from_bits_retain(flags);
    if let Err(e) = nix::mount::mount(Some(src), target, Some(fstype), flags, Some(data)) {
        return Err(format!("mount {fstype} on {target} ({data}): {e}"));
    }
    Ok(())
}

fn umount(target: &str) -> Result<(), String> {
    let t = std::ffi::CString::new(target).unwrap_or_default();
    // SAFETY: umount2 with a NUL-terminated path.
    if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(format!(
            "umount {target}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
