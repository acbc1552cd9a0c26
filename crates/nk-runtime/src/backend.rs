//! The backend a command works through, resolved once per command:
//! container mode (the `sandbox` library's [`Runtime`]) or VM mode
//! (`vm::backend`). This is the one place that names both, as crun's
//! `custom_handler_s` table is: the command files call one method and never
//! ask which mode they are in. The enum lives here, at the top, so that
//! `sandbox` never learns of `vm` (vm depends on sandbox, not the reverse).

use crate::cli::{CreateCommon, RunArgs};
use crate::report::{ExitCode, Globals};
use sandbox::cgroups::{OomWatcher, Stats};
use sandbox::container::{CreateOptions, ExecOptions, ExecTarget, Runtime};
use sandbox::process::wait::{self, Blocked, Foreground};
use sandbox::state::{ContainerState, Mode};
use vm::backend::{SizeFlags, VmBackend};

/// runc exits 255 when exec itself fails (not the program).
pub const EXEC_FAILED: i32 = 255;

/// An error of exec itself, with runc's exit code.
pub fn exec_failed(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(ExitCode(EXEC_FAILED, anyhow::anyhow!("exec failed: {e:#}")))
}

/// How a container is isolated, with what the command needs to drive it.
pub enum Backend {
    Container(Runtime),
    Vm(VmBackend),
}

/// A container's processes: host pids, or the guest's own (VM mode).
pub enum Processes {
    Host(Vec<i32>),
    Guest(Vec<vm_protocol::ProcInfo>),
}

/// The isolation asked for by create or run: `--mode`, the binary's name
/// (`nk-runtime-vm`, as crun's `krun` link), or the bundle's annotation
/// `org.nano-sandbox.mode`.
fn wants_vm(c: &CreateCommon) -> anyhow::Result<bool> {
    if let Some(m) = &c.mode {
        return match m.as_str() {
            "container" => Ok(false),
            "vm" => Ok(true),
            other => anyhow::bail!("--mode {other:?}: use container or vm"),
        };
    }
    let argv0 = std::env::args().next().unwrap_or_default();
    if std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n == "nk-runtime-vm")
    {
        return Ok(true);
    }
    let cfg = c.bundle.join("config.json");
    // Only a regular file: reading a FIFO planted there would block forever
    // (create then refuses it with a clear error).
    let regular = std::fs::metadata(&cfg).is_ok_and(|m| m.is_file());
    if let Some(raw) = regular.then(|| std::fs::read(&cfg).ok()).flatten() {
        // Cheap check before a full parse: the annotation is rare.
        if sandbox::spec::contains(&raw, b"org.nano-sandbox.mode\"") {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&raw) {
                if v.pointer("/annotations/org.nano-sandbox.mode")
                    .and_then(|m| m.as_str())
                    == Some("vm")
                {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// Options for the library's create from the command line.
fn create_options(c: &CreateCommon, foreground: bool) -> CreateOptions {
    create_options_for(c, foreground, false)
}

/// [`create_options`] for `run` (`start_now`: it starts the container
/// itself, through the sync channel).
fn create_options_for(c: &CreateCommon, foreground: bool, start_now: bool) -> CreateOptions {
    CreateOptions {
        id: c.id.clone(),
        bundle: c.bundle.clone(),
        pid_file: c.pid_file.clone(),
        console_socket: c.console_socket.clone(),
        no_pivot: c.no_pivot,
        no_new_keyring: c.no_new_keyring,
        preserve_fds: c.preserve_fds,
        foreground,
        start_now,
    }
}

/// The container's memory.checkBeforeUpdate from its config, for updates
/// that do not say.
fn config_check_before_update(rt: &Runtime, id: &str) -> Option<bool> {
    let f = rt.store.dir(id).join(sandbox::state::CONFIG_FILE);
    let raw = std::fs::read(&f).ok()?;
    let p = sandbox::spec::parse(&raw, &f).ok()?;
    p.spec
        .linux()
        .as_ref()?
        .resources()
        .as_ref()?
        .memory()
        .as_ref()?
        .check_before_update()
}

impl Backend {
    /// The backend of a new container (create, run).
    pub fn for_new(g: &Globals, c: &CreateCommon) -> anyhow::Result<Backend> {
        let rt = g.runtime();
        Ok(if wants_vm(c)? {
            Backend::Vm(VmBackend {
                rt,
                size: SizeFlags {
                    vcpus: c.vm_vcpus,
                    memory_mib: c.vm_memory,
                },
                boot: c
                    .vm_boot
                    .as_deref()
                    .map(|v| vm::template::Boot::parse(v, "--vm-boot"))
                    .transpose()?,
            })
        } else {
            Backend::Container(rt)
        })
    }

    /// The backend of an existing container, from its record. An unknown
    /// id gets container mode, whose verbs report it in runc's words.
    pub fn for_id(g: &Globals, id: &str) -> Backend {
        Self::loaded(g, id).0
    }

    /// [`Backend::for_id`], with the record it read (or why it could not),
    /// for a command that needs the record too and reads it once.
    pub fn loaded(g: &Globals, id: &str) -> (Backend, sandbox::error::Result<ContainerState>) {
        let rt = g.runtime();
        let st = rt.store.load(id);
        let b = match &st {
            Ok(ContainerState {
                mode: Mode::Vm(_), ..
            }) => Backend::Vm(VmBackend {
                rt,
                size: SizeFlags::default(),
                boot: None,
            }),
            _ => Backend::Container(rt),
        };
        (b, st)
    }

    /// The backend of a restore: the image's mode (a VM-mode checkpoint
    /// holds its record), which an explicit --mode must agree with.
    pub fn for_restore(
        g: &Globals,
        mode: Option<&str>,
        image: &std::path::Path,
    ) -> anyhow::Result<Backend> {
        let vm_image = vm::checkpoint::is_vm_image(image);
        let want_vm = match mode {
            None => vm_image,
            Some("vm") => true,
            Some("container") if vm_image => anyhow::bail!(
                "{} holds a VM-mode checkpoint ({} is there): restore it in VM mode (without --mode=container); a container-mode restore has no VM to put its processes in",
                image.display(),
                image.join(sandbox::container::VM_IMAGE_RECORD).display()
            ),
            Some("container") => false,
            Some(other) => anyhow::bail!("--mode {other:?}: use container or vm"),
        };
        Ok(if want_vm {
            Backend::Vm(VmBackend {
                rt: g.runtime(),
                size: SizeFlags::default(),
                boot: None,
            })
        } else {
            Backend::Container(g.runtime())
        })
    }

    /// `checkpoint`.
    pub fn checkpoint(
        &self,
        id: &str,
        o: &sandbox::container::CheckpointOptions,
    ) -> anyhow::Result<()> {
        match self {
            Backend::Container(rt) => rt.checkpoint(id, o)?,
            Backend::Vm(v) => v.checkpoint(id, o)?,
        }
        Ok(())
    }

    pub fn create(&self, c: &CreateCommon) -> anyhow::Result<()> {
        let o = create_options(c, false);
        match self {
            Backend::Container(rt) => {
                rt.create(&o)
                    .map_err(|e| anyhow::anyhow!("create failed: {e}"))?;
            }
            Backend::Vm(v) => {
                v.create(&o)?;
            }
        }
        Ok(())
    }

    /// `run`: create, start and (unless --detach) wait, forwarding signals
    /// and bridging the terminal; deleted afterwards unless --keep.
    pub fn run(&self, a: &RunArgs) -> anyhow::Result<i32> {
        if a.detach && a.rm {
            anyhow::bail!("--rm cannot be used with --detach: nothing would be left to delete the container when it exits");
        }
        let id = a.common.id.clone();
        let rt = match self {
            Backend::Vm(v) if a.detach => {
                v.run_detached(&create_options(&a.common, false))?;
                return Ok(0);
            }
            Backend::Vm(v) => {
                return v
                    .run(&create_options(&a.common, true), a.keep)
                    .map_err(|e| match e {
                        vm::Error::VmEnded(r) => anyhow::Error::new(ExitCode(
                            vm::monitor::VM_FAILED,
                            anyhow::anyhow!("{r}"),
                        )),
                        e => e.into(),
                    });
            }
            Backend::Container(rt) => rt,
        };
        if a.detach {
            let mut h = rt
                .create(&create_options_for(&a.common, false, true))
                .map_err(|e| anyhow::anyhow!("run failed: {e}"))?;
            if let Err(e) = rt.start_created(&mut h) {
                let _ = rt.delete(&id, true);
                return Err(anyhow::anyhow!("run failed: {e}"));
            }
            return Ok(0);
        }
        // Block the signals we forward before the child exists; become the
        // subreaper so orphans of the container come back to us.
        let _blocked = Blocked::new()?;
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let mut h = rt
            .create(&create_options_for(&a.common, true, true))
            .map_err(|e| anyhow::anyhow!("run failed: {e}"))?;
        if let Err(e) = rt.start_created(&mut h) {
            // SAFETY: kill(2) our own child.
            unsafe { libc::kill(h.pid, libc::SIGKILL) };
            let _ = sandbox::process::clone::wait_pidfd(&h.pidfd);
            let _ = rt.delete(&id, true);
            return Err(anyhow::anyhow!("run failed: {e}"));
        }
        let status = wait::wait(Foreground {
            pid: h.pid,
            pidfd: &h.pidfd,
            pty: h.pty,
            winch_to_process: false,
            reap_orphans: true,
        });
        if !a.keep {
            if let Err(e) = rt.delete(&id, true) {
                sandbox::logging::warn(|| format!("delete after run: {e}"));
            }
        }
        Ok(status?)
    }

    /// `start`; with `attach`, wait and return the exit status. `record`
    /// is what [`Backend::loaded`] read, so the record is read once.
    pub fn start(
        &self,
        id: &str,
        attach: bool,
        record: sandbox::error::Result<ContainerState>,
    ) -> anyhow::Result<i32> {
        let rt = match self {
            Backend::Vm(v) if attach => return Ok(v.start_attached(id)?),
            Backend::Vm(v) => {
                v.start(id)?;
                return Ok(0);
            }
            Backend::Container(rt) => rt,
        };
        let (st, status) = match record {
            Ok(st) => {
                let status = rt.status_of(&st);
                (st, status)
            }
            // Read again for the error, in the words every verb uses.
            Err(_) => rt.load(id)?,
        };
        if !attach {
            rt.start_loaded(&st, status)?;
            return Ok(0);
        }
        // Open the pidfd before the program runs, so a fast exit is not missed.
        let pidfd = sandbox::linux::hooks::pidfd_open(st.pid)
            .map_err(|e| anyhow::anyhow!("pidfd_open({}): {e}", st.pid))?;
        rt.start_loaded(&st, status)?;
        Ok(wait::wait_exit_of(st.pid, &pidfd)?)
    }

    pub fn kill(&self, id: &str, sig: i32, all: bool) -> anyhow::Result<()> {
        match self {
            Backend::Container(rt) => rt.kill(id, sig, all)?,
            Backend::Vm(v) => v.kill(id, sig, all)?,
        }
        Ok(())
    }

    pub fn delete(&self, id: &str, force: bool) -> anyhow::Result<()> {
        match self {
            Backend::Container(rt) => rt.delete(id, force)?,
            Backend::Vm(v) => v.delete(id, force)?,
        }
        Ok(())
    }

    pub fn pause(&self, id: &str) -> anyhow::Result<()> {
        match self {
            Backend::Container(rt) => rt.pause(id)?,
            Backend::Vm(v) => v.pause(id, true)?,
        }
        Ok(())
    }

    pub fn resume(&self, id: &str) -> anyhow::Result<()> {
        match self {
            Backend::Container(rt) => rt.resume(id)?,
            Backend::Vm(v) => v.pause(id, false)?,
        }
        Ok(())
    }

    /// `exec`, into the container `target` (read by the caller; container
    /// mode only); every failure of exec itself exits [`EXEC_FAILED`].
    pub fn exec(&self, o: &ExecOptions, target: Option<&ExecTarget>) -> anyhow::Result<i32> {
        let rt = match self {
            Backend::Vm(v) => return v.exec(o).map_err(|e| exec_failed(e.into())),
            Backend::Container(rt) => rt,
        };
        let exec = || match target {
            Some(t) => rt.exec_in(t, o),
            None => rt.exec(o),
        };
        if o.detach {
            exec().map_err(|e| exec_failed(e.into()))?;
            return Ok(0);
        }
        // Block the forwarded signals before the process exists, so none is lost.
        let _blocked = Blocked::new()?;
        let h = exec().map_err(|e| exec_failed(e.into()))?;
        Ok(wait::wait(Foreground {
            pid: h.pid,
            pidfd: &h.pidfd,
            pty: h.pty,
            winch_to_process: false,
            reap_orphans: false,
        })?)
    }

    pub fn processes(&self, id: &str) -> anyhow::Result<Processes> {
        Ok(match self {
            Backend::Container(rt) => Processes::Host(rt.pids(id)?),
            Backend::Vm(v) => Processes::Guest(v.ps(id)?),
        })
    }

    /// The counters of the cgroup that holds the limits (the guest's in VM mode).
    pub fn stats(&self, st: &ContainerState) -> anyhow::Result<Stats> {
        match self {
            Backend::Container(rt) => {
                let cg = rt
                    .cgroup_of(st)
                    .ok_or_else(|| anyhow::anyhow!("container {} has no cgroup", st.id))?;
                Ok(cg.stats()?)
            }
            Backend::Vm(v) => Ok(v.stats(&st.id)?),
        }
    }

    /// OOM notifications, where the host sees them (not for a VM: its OOM
    /// killer acts in the guest).
    pub fn oom_watcher(&self, st: &ContainerState) -> Option<OomWatcher> {
        let Backend::Container(rt) = self else {
            return None;
        };
        match rt.cgroup_of(st)?.oom_watcher() {
            Ok(w) => w,
            Err(e) => {
                sandbox::logging::warn(|| format!("no OOM notifications for {}: {e}", st.id));
                None
            }
        }
    }

    /// `update`: new limits for the container's cgroup (the guest's in VM mode).
    pub fn update(
        &self,
        st: &ContainerState,
        mut res: oci_spec::runtime::LinuxResources,
    ) -> anyhow::Result<()> {
        let rt = match self {
            Backend::Vm(v) => return Ok(v.update(&st.id, &res)?),
            Backend::Container(rt) => rt,
        };
        if let Some(m) = res.memory_mut() {
            if m.check_before_update().is_none() {
                m.set_check_before_update(config_check_before_update(rt, &st.id));
            }
        }
        let cg = rt
            .cgroup_of(st)
            .ok_or_else(|| anyhow::anyhow!("container {} has no cgroup", st.id))?;
        cg.set(&res, true)?;
        Ok(())
    }
}

/// `restore` of a VM image: the VM starts and the agent restores the
/// container; without --detach, wait for it as `run` does (the monitor
/// exits with the container's status), then delete it.
pub fn vm_restore(
    v: &VmBackend,
    o: &sandbox::container::RestoreOptions,
    detach: bool,
) -> anyhow::Result<i32> {
    let _blocked = (!detach).then(Blocked::new).transpose()?;
    let created = v
        .restore(o)
        .map_err(|e| anyhow::anyhow!("restore failed: {e}"))?;
    if detach {
        return Ok(0);
    }
    let status = wait::wait(Foreground {
        pid: created.pid,
        pidfd: &created.pidfd,
        pty: None,
        winch_to_process: false,
        reap_orphans: false,
    });
    if let Err(e) = v.delete(&o.id, true) {
        sandbox::logging::warn(|| format!("delete after restore: {e}"));
    }
    Ok(status?)
}

/// The hidden `vm-monitor ID` verb: the VM monitor process itself, started
/// by VM mode's create.
pub fn vm_monitor(g: &Globals, args: &[String]) -> anyhow::Result<i32> {
    let id = args
        .first()
        .ok_or_else(|| anyhow::anyhow!("vm-monitor is started by the runtime itself"))?;
    let v = VmBackend {
        rt: g.runtime(),
        size: SizeFlags::default(),
        boot: None,
    };
    Ok(v.monitor_main(id)?)
}
