//! exec: start one more process inside a running container, in all of its
//! namespaces and its cgroup, with the given process attributes.

use super::{bad_status, Runtime};
use crate::error::{Error, Result};
use crate::explain::{self, catalog, Phase};
use crate::linux::{self, namespaces};
use crate::process::clone::{self, PreExec};
use crate::process::init::{InitKind, InitRequest};
use crate::process::sync::{Channel, ToChild, ToParent};
use crate::state::{self, Status};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Process};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// Options of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub id: String,
    /// The complete process to run (see [`merge_process`]).
    pub process: Option<Process>,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub preserve_fds: i32,
    /// Exec even into a paused container (the process starts frozen).
    pub ignore_paused: bool,
}

/// A started exec process.
#[derive(Debug)]
pub struct ExecHandle {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub pty: Option<OwnedFd>,
}

/// Overrides from the exec command line, applied over the container's own process.
#[derive(Debug, Clone, Default)]
pub struct ProcessOverrides {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<(u32, Option<u32>)>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub tty: bool,
    pub no_new_privs: bool,
    pub apparmor: Option<String>,
}

/// Build the exec process as runc does: start from the container's
/// process.json, replace args, set env entries (an existing name is
/// replaced in place, a new one appended), and set the rest.
pub fn merge_process(base: &Process, o: &ProcessOverrides) -> Result<Process> {
    let mut p = base.clone();
    p.set_args(Some(o.args.clone()));
    let mut env = base.env().clone().unwrap_or_default();
    for e in &o.env {
        let key = e.split('=').next().unwrap_or("");
        match env.iter_mut().find(|x| x.split('=').next() == Some(key)) {
            Some(slot) => *slot = e.clone(),
            None => env.push(e.clone()),
        }
    }
    p.set_env(Some(env));
    if let Some(c) = &o.cwd {
        if !c.is_absolute() {
            return Err(Error::msg(format!(
                "--cwd {}: Cwd must be an absolute path",
                c.display()
            )));
        }
        p.set_cwd(c.clone());
    }
    if let Some((uid, gid)) = o.user {
        let mut u = p.user().clone();
        u.set_uid(uid);
        u.set_gid(gid.unwrap_or(0));
        p.set_user(u);
    }
    if !o.additional_gids.is_empty() {
        let mut u = p.user().clone();
        u.set_additional_gids(Some(o.additional_gids.clone()));
        p.set_user(u);
    }
    if !o.caps.is_empty() {
        // As runc (since 1.1.2): bounding, effective and permitted only;
        // adding to the inheritable set would let the caps survive execve of
        // a file with inheritable file capabilities (GHSA-f3fp-gc8g-vw66).
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &o.caps {
            let up = name.to_ascii_uppercase();
            let n = if up.starts_with("CAP_") {
                up
            } else {
                format!("CAP_{up}")
            };
            let c: oci_spec::runtime::Capability =
                serde_json::from_value(serde_json::Value::String(n.clone()))
                    .map_err(|_| Error::msg(format!("--cap {name}: unknown capability")))?;
            let add = |set: Option<oci_spec::runtime::Capabilities>| {
                let mut s = set.unwrap_or_default();
                s.insert(c);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding().clone()));
            caps.set_effective(add(caps.effective().clone()));
            caps.set_permitted(add(caps.permitted().clone()));
        }
        p.set_capabilities(Some(caps));
    }
    p.set_terminal(Some(o.tty));
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(a) = &o.apparmor {
        p.set_apparmor_profile(Some(a.clone()));
    }
    validate_process(&p)?;
    Ok(p)
}

/// The checks runc makes on an exec process (also one from --process).
pub fn validate_process(p: &Process) -> Result<()> {
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::msg("process args cannot be empty"));
    }
    if p.cwd().as_os_str().is_empty() {
        return Err(Error::msg("Cwd property must not be empty"));
    }
    if !p.cwd().is_absolute() {
        return Err(Error::msg(format!(
            "Cwd must be an absolute path (process.cwd is {:?})",
            p.cwd()
        )));
    }
    Ok(())
}

impl Runtime {
    /// The container's process from its config (the base for exec).
    pub fn config_process(&self, id: &str) -> Result<Process> {
        self.store.load(id)?;
        let dir = self.store.dir(id);
        let cfg = dir.join(state::CONFIG_FILE);
        let raw = std::fs::read(&cfg).map_err(|e| Error::io("read", &cfg, e))?;
        crate::spec::parse(&raw, &cfg)?
            .spec
            .process()
            .clone()
            .ok_or_else(|| Error::msg(format!("container {id}: its config has no process")))
    }

    /// Start a process in the container.
    pub fn exec(&self, o: &ExecOptions) -> Result<ExecHandle> {
        let (st, status) = self.load(&o.id)?;
        match status {
            Status::Running | Status::Created => {}
            Status::Paused if o.ignore_paused => {}
            Status::Paused => {
                return Err(bad_status(
                    &o.id,
                    status,
                    "cannot exec in a paused container (use --ignore-paused to override)",
                ))
            }
            _ => {
                return Err(bad_status(
                    &o.id,
                    status,
                    "cannot exec in a stopped container: container not running",
                ))
            }
        }
        let process = o
            .process
            .clone()
            .ok_or_else(|| Error::msg("exec: no process given"))?;
        validate_process(&process)?;
        crate::spec::check_process(&process).map_err(|(field, reason)| {
            Error::msg(format!("exec: field process.{field}: {reason}"))
        })?;
        let affinity = process.exec_cpu_affinity().clone().unwrap_or_default();
        let initial = affinity.initial().clone().filter(|l| !l.is_empty());
        if let Some(l) = &initial {
            linux::procattr::cpu_set("process.execCPUAffinity.initial", l)?;
        }
        if let Some(l) = affinity.cpu_affinity_final().as_deref() {
            linux::procattr::cpu_set("process.execCPUAffinity.final", l)?;
        }
        let terminal = process.terminal() == Some(true);
        if !terminal && o.console_socket.is_some() {
            return Err(Error::msg("cannot use console socket if runc will not detach or allocate tty: the process has no terminal"));
        }
        if terminal && o.console_socket.is_none() && o.detach {
            return Err(Error::msg(
                "cannot allocate tty if runc will detach without setting console socket",
            ));
        }
        let dir = self.store.dir(&o.id);
        let cfg = dir.join(state::CONFIG_FILE);
        let parsed = crate::spec::parse(
            &std::fs::read(&cfg).map_err(|e| Error::io("read", &cfg, e))?,
            &cfg,
        )?;
        let seccomp = parsed
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().clone());

        // Open the namespaces now: once the init dies, its /proc entries are
        // gone (and the descriptors are what the intermediate joins).
        let stopped = || {
            bad_status(
                &o.id,
                Status::Stopped,
                "cannot exec in a stopped container: container not running",
            )
        };
        // Only the namespaces of linux.namespaces, checked to be the ones
        // recorded at create (a record from an older runtime has none: the
        // types of config.json then, as the init is in them).
        let recorded = match &st.namespaces {
            Some(r) => Ok(r.clone()),
            None => {
                let types: Vec<_> = parsed
                    .spec
                    .linux()
                    .as_ref()
                    .and_then(|l| l.namespaces().clone())
                    .unwrap_or_default()
                    .iter()
                    .map(|n| n.typ())
                    .collect();
                namespaces::record(st.pid, &types)
            }
        };
        let join = match recorded.and_then(|r| namespaces::open_recorded(st.pid, &r)) {
            Ok(j) => j,
            Err(_) if !st.init_alive() => return Err(stopped()),
            Err(e) => return Err(e),
        };
        if !st.init_alive() {
            return Err(stopped());
        }
        let userns = join.iter().any(|(t, _, _)| *t == LinuxNamespaceType::User);
        let pid_ns = join.iter().any(|(t, _, _)| *t == LinuxNamespaceType::Pid);
        // No mount namespace to join: the intermediate enters the container's
        // root with chroot instead.
        let chroot = match st.host_mounts {
            Some(_) => Some(linux::fs::cstr(st.rootfs.as_os_str())?),
            None => None,
        };

        let console = match &o.console_socket {
            Some(p) => Some(linux::console::connect(p)?),
            None => None,
        };
        let listener = match seccomp.as_ref().and_then(|s| s.listener_path().clone()) {
            Some(p) => Some(linux::console::connect(&p).map_err(|e| {
                Error::msg(format!("linux.seccomp.listenerPath {}: {e}", p.display()))
            })?),
            None => None,
        };
        let exe = clone::protected_exe()?;
        let cgroup = self.cgroup_of(&st);
        // The intermediate enters the cgroup before it joins any namespace,
        // while it still is the runtime's user (even into a user namespace).
        let (self_join, into) = super::cgroup_entry(cgroup.as_deref(), false);
        let (parent_ch, child_ch) = Channel::pair()?;
        let keep: Vec<_> = [
            console.as_ref().map(|c| c.as_raw_fd()),
            listener.as_ref().map(|l| l.as_raw_fd()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let pre = PreExec {
            channel: child_ch.as_fd().as_raw_fd(),
            exe: &exe,
            wait_for_maps: false,
            min_fd: 3 + o.preserve_fds,
            keep: &keep,
            mode: "init",
            cgroup_tasks: &self_join,
        };
        // execCPUAffinity.initial is where "the runtime parent process" runs
        // before the transition to the container's cgroup: set it on this
        // process, so the intermediate and the child start there too (final
        // is applied by the child once it is in the cgroup).
        if let Some(l) = &initial {
            linux::procattr::set_affinity(0, "process.execCPUAffinity.initial", l)?;
        }
        let fds: Vec<_> = join
            .iter()
            .map(|(t, _, fd)| (fd.as_raw_fd(), namespaces::clone_flag(*t)))
            .collect();
        let child = {
            // The joins are the intermediate's work, inside the clone.
            let _g = explain::phase(Phase::Clone);
            explain::step(&catalog::EXEC_JOIN, || {
                join.iter()
                    .map(|(t, p, _)| format!("{}:{}", crate::spec::ns_name(*t), p.display()))
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            for (t, p, _) in &join {
                explain::step(&catalog::NS_JOIN, || {
                    format!(
                        "setns({}, {})",
                        p.display(),
                        namespaces::flag_names(namespaces::clone_flag(*t))
                    )
                });
            }
            if let Some(r) = &chroot {
                explain::step(&catalog::HOST_CHROOT, || {
                    format!("chroot({}); chdir(\"/\")", r.to_string_lossy())
                });
            }
            clone::spawn_joined(
                &clone::Join {
                    namespaces: &fds,
                    chroot: chroot.as_deref(),
                },
                CloneFlags::empty(),
                into.as_ref().map(|f| f.as_raw_fd()),
                &pre,
            )
        };
        drop(join);
        let child = match child {
            // A pid namespace whose init has died takes no new members.
            Err(_) if pid_ns && !st.init_alive() => return Err(stopped()),
            Err(e) if pid_ns && e.to_string().contains("ENOMEM") => {
                return Err(bad_status(
                    &o.id,
                    Status::Stopped,
                    "cannot exec in a stopped container: container not running (its pid namespace is exiting)",
                ))
            }
            r => r?,
        };
        drop(child_ch);
        let pid = child.pid;
        let kill_child = |pidfd: &OwnedFd| {
            // SAFETY: kill(2) our own child and reap it.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = clone::wait_pidfd(pidfd);
        };
        if !self_join.is_empty() || into.is_some() {
            explain::cgroup_join(into.is_some(), self_join.len());
        }
        if let Some(cg) = cgroup
            .as_ref()
            .filter(|_| self_join.is_empty() && into.is_none())
        {
            if let Err(e) = cg.add_process(pid) {
                kill_child(&child.pidfd);
                return Err(e);
            }
        }
        let mut ki = child.kept.iter();
        let req = InitRequest {
            kind: InitKind::Exec,
            id: o.id.clone(),
            state_dir: dir.clone(),
            bundle: st.bundle.clone(),
            rootfs: st.rootfs.clone(),
            process,
            seccomp,
            // Joined by the intermediate, before the child was cloned.
            join: Vec::new(),
            new_timens: false,
            new_cgroupns: false,
            host_mountns: false,
            userns,
            no_pivot: false,
            no_new_keyring: st.no_new_keyring,
            personality: parsed
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.personality().clone()),
            preserve_fds: o.preserve_fds,
            console_fd: console.as_ref().and_then(|_| ki.next().copied()),
            seccomp_listener_fd: listener.as_ref().and_then(|_| ki.next().copied()),
            tty_to_parent: terminal && o.console_socket.is_none(),
            cgroup_mount: Default::default(),
            pid_handover: false,
            host_pid: pid,
            init_pid: st.pid,
            annotations: st.annotations.clone(),
            fd_names: Vec::new(),
            explain: self.explain,
            trace: self.trace,
            log_level: self.log_level,
        };
        drop(console);
        drop(listener);
        // If the child already died, the loop below reads its error (or EOF);
        // any other failure to send would leave both sides waiting.
        if let Err(e) = parent_ch.send(&ToChild::Init(Box::new(req))) {
            if !super::child_gone(&e) {
                kill_child(&child.pidfd);
                return Err(e);
            }
        }
        let mut pty = None;
        let mut ready = false;
        let mut exec_phase = None; // from Ready to end-of-file: the child's execve
        loop {
            match parent_ch.recv::<ToParent>() {
                Ok(Some((ToParent::Log(r), _))) => crate::logging::emit(&r),
                Ok(Some((ToParent::Event(e), _))) => explain::deliver(e),
                Ok(Some((ToParent::Pty, mut fds))) => pty = fds.pop(),
                Ok(Some((ToParent::Ready, _))) => {
                    ready = true;
                    exec_phase = explain::phase(Phase::Exec);
                }
                Ok(Some((ToParent::Hooks | ToParent::Reborn(_), _))) => {}
                Ok(Some((ToParent::Error(m), _))) => {
                    kill_child(&child.pidfd);
                    return Err(Error::Child(format!(
                        "unable to start container process: {m}"
                    )));
                }
                Ok(None) => break,
                Err(e) => {
                    kill_child(&child.pidfd);
                    return Err(e);
                }
            }
        }
        drop(exec_phase);
        if !ready {
            let st = clone::wait_pidfd(&child.pidfd).unwrap_or(-1);
            return Err(Error::Child(format!(
                "unable to start container process: the exec process exited during setup (status {st})"
            )));
        }
        if let Some(pf) = &o.pid_file {
            super::create::write_pid_file(pf, pid)?;
        }
        Ok(ExecHandle {
            pid,
            pidfd: child.pidfd,
            pty,
        })
    }
}
