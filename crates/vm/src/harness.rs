//! Boot a guest and drive it from a test: the guest runs the real agent,
//! the host shares a directory over 9p, and programs run inside the guest
//! with their output and exit status returned. One boot can serve several
//! runs, which keeps each test to one or two boots (about 2 s each under TCG).

use crate::channel::{AgentConn, StdioPort};
use crate::error::{Error, Result};
use crate::image::{self, Image};
use crate::qemu::{self, Accel, Vm, VmSpec};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vm_protocol::{GuestCommand, GuestMsg, Ready, Reply, Request};

/// How to boot.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// Host directory visible in the guest at [`vm_protocol::SHARE_MOUNT`].
    pub share: Option<PathBuf>,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// Extra kernel command line words.
    pub append: Vec<String>,
    pub ready_timeout: Duration,
    /// The agent binary (default: [`image::find_agent`]).
    pub agent: Option<PathBuf>,
}

impl Default for BootOptions {
    fn default() -> Self {
        BootOptions {
            share: None,
            vcpus: 1,
            memory_mib: 256,
            append: Vec::new(),
            ready_timeout: Duration::from_secs(60),
            agent: None,
        }
    }
}

/// What a program run in the guest did.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Shell style: exit code, or 128+signal.
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A booted guest.
pub struct Guest {
    pub vm: Vm,
    conn: AgentConn,
    stdio: StdioPort,
    out: HashMap<u32, Output>,
    /// End-of-file frames seen per stream (stdout, stderr).
    eofs: HashMap<u32, (bool, bool)>,
    exits: HashMap<u32, i32>,
    next_stream: u32,
    pub ready: Ready,
    /// From QEMU's start to the agent's ready message.
    pub boot_time: Duration,
    pub accel: Accel,
    pub image: Image,
    /// Log lines the agent sent.
    pub logs: Vec<String>,
}

static RUN_DIRS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Guest {
    /// Build (or reuse) the image, boot, and wait for the agent.
    pub fn boot(o: &BootOptions) -> Result<Guest> {
        let img = image::ensure_with(o.agent.as_deref(), &|_| {})?;
        let accel = qemu::choose_accel(&img, &|_| {});
        let run_dir = std::env::temp_dir().join(format!(
            "nk-vm-harness-{}-{}",
            std::process::id(),
            RUN_DIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let spec = VmSpec {
            vmlinux: img.vmlinux.clone(),
            initramfs: img.initramfs.clone(),
            vcpus: o.vcpus,
            memory_mib: o.memory_mib,
            share: o.share.clone(),
            virtiofs: None,
            append: o.append.clone(),
            run_dir,
            accel,
            nics: vec![],
            snapshot: None,
        };
        let mut vm = Vm::launch(&spec)?;
        let ready = vm.wait_ready(o.ready_timeout)?;
        let boot_time = vm.started.elapsed();
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
        Ok(Guest {
            vm,
            conn,
            stdio,
            out: HashMap::new(),
            eofs: HashMap::new(),
            exits: HashMap::new(),
            next_stream: 100,
            ready,
            boot_time,
            accel,
            image: img,
            logs: Vec::new(),
        })
    }

    /// Wait for input or the deadline, and take in whatever arrived.
    fn step(&mut self, deadline: Instant) -> Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        qemu::poll_in(
            &[
                self.conn.ctl.as_raw_fd(),
                self.stdio.sock.as_raw_fd(),
                self.vm.pidfd.as_raw_fd(),
            ],
            Some(left.min(Duration::from_millis(500))),
        );
        for f in self.stdio.pump(1 << 20)? {
            if f.data.is_empty() {
                let e = self.eofs.entry(f.stream).or_default();
                if f.fd == vm_protocol::FD_STDERR {
                    e.1 = true;
                } else {
                    e.0 = true;
                }
                continue;
            }
            let o = self.out.entry(f.stream).or_default();
            match f.fd {
                vm_protocol::FD_STDERR => o.stderr.extend_from_slice(&f.data),
                _ => o.stdout.extend_from_slice(&f.data),
            }
        }
        let open = self.conn.pump()?;
        while let Some(ev) = self.conn.events.pop_front() {
            match ev {
                GuestMsg::Exited { stream, status } => {
                    self.exits.insert(stream, status);
                }
                GuestMsg::Log { level, msg } => self.logs.push(format!("{level}: {msg}")),
                _ => {}
            }
        }
        if !open || self.vm.try_wait().is_some() {
            self.vm.wait_timeout(Duration::from_secs(2));
            return Err(self.vm.exit_error());
        }
        Ok(())
    }

    /// Send a request and wait for its reply.
    pub fn call(&mut self, req: Request, timeout: Duration) -> Result<Reply> {
        let what = format!("{req:?}");
        let id = self.conn.send(req)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.conn.take_reply(id) {
                return r.map_err(Error::Remote);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("the agent's reply to {what}"),
                    secs: timeout.as_secs(),
                    detail: self.vm.diagnostics(),
                });
            }
            self.step(deadline)?;
        }
    }

    /// Run a program in the guest (outside containers) and wait for it.
    pub fn run(&mut self, argv: &[&str], env: &[&str], timeout: Duration) -> Result<Output> {
        let stream = self.next_stream;
        self.next_stream += 1;
        let deadline = Instant::now() + timeout;
        self.call(
            Request::Run(GuestCommand {
                stream,
                argv: argv.iter().map(|s| s.to_string()).collect(),
                env: env.iter().map(|s| s.to_string()).collect(),
                cwd: None,
            }),
            timeout,
        )?;
        self.stdio.send_stdin(stream, b"")?;
        let mut exited_at = None;
        loop {
            if let Some(&status) = self.exits.get(&stream) {
                // The exit and the last output travel on different ports:
                // wait for both end-of-file frames (or a grace period).
                let at = *exited_at.get_or_insert_with(Instant::now);
                let eof = self.eofs.get(&stream).is_some_and(|e| e.0 && e.1);
                if eof || at.elapsed() > Duration::from_secs(1) {
                    self.exits.remove(&stream);
                    self.eofs.remove(&stream);
                    let mut o = self.out.remove(&stream).unwrap_or_default();
                    o.status = status;
                    return Ok(o);
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("the end of {argv:?} in the guest"),
                    secs: timeout.as_secs(),
                    detail: self.vm.diagnostics(),
                });
            }
            let d = if exited_at.is_some() {
                Instant::now() + Duration::from_millis(50)
            } else {
                deadline
            };
            self.step(d)?;
        }
    }

    /// Ask the agent to power off, and wait for QEMU to exit.
    pub fn shutdown(mut self) -> Result<i32> {
        let _ = self.conn.send(Request::Shutdown);
        match self.vm.wait_timeout(Duration::from_secs(10)) {
            Some(s) => Ok(s),
            None => {
                self.vm.kill();
                Err(Error::Timeout {
                    what: "the guest's power-off".into(),
                    secs: 10,
                    detail: self.vm.diagnostics(),
                })
            }
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.vm.kill();
        let _ = std::fs::remove_dir_all(&self.vm.run_dir);
    }
}
