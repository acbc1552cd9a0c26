//! exec: start one more process inside a running container, in all of its
//! namespaces and its cgroup, with the given process attributes.

use super::launch::{Launch, Listen, Setup};
use super::{bad_status, Runtime};
use crate::error::{Error, Result};
use crate::explain::{self, catalog, Phase};
use crate::linux::{self, namespaces};
use crate::process::clone;
use crate::process::messages::{InitKind, InitRequest};
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

/// What exec reads of a container, read once: its record and its config
/// copy (the base process for command-line overrides, the seccomp profile,
/// the namespaces to join).
#[derive(Debug)]
pub struct ExecTarget {
    pub record: state::ContainerState,
    config: crate::spec::Parsed,
}

impl ExecTarget {
    /// The container's own process from its config (the base for exec).
    pub fn process(&self) -> Result<Process> {
        self.config.spec.process().clone().ok_or_else(|| {
            Error::msg(format!(
                "container {}: its config has no process",
                self.record.id
            ))
        })
    }
}

impl Runtime {
    /// The container's process from its config (the base for exec).
    pub fn config_process(&self, id: &str) -> Result<Process> {
        self.exec_target(self.store.load(id)?)?.process()
    }

    /// Read the config copy of a loaded record, for [`Runtime::exec_in`].
    pub fn exec_target(&self, record: state::ContainerState) -> Result<ExecTarget> {
        let cfg = self.store.dir(&record.id).join(state::CONFIG_FILE);
        let raw = std::fs::read(&cfg).map_err(|e| Error::io("read", &cfg, e))?;
        let config = crate::spec::parse(&raw, &cfg)?;
        Ok(ExecTarget { record, config })
    }

    /// Start a process in the container.
    pub fn exec(&self, o: &ExecOptions) -> Result<ExecHandle> {
        let t = self.exec_target(self.store.load(&o.id)?)?;
        self.exec_in(&t, o)
    }

    /// [`Runtime::exec`] into a container already read (the exec command
    /// reads it once, for its base process as well).
    pub fn exec_in(&self, t: &ExecTarget, o: &ExecOptions) -> Result<ExecHandle> {
        let st = &t.record;
        let status = self.status_of(st);
        check_can_exec(&o.id, status, o.ignore_paused)?;
        let process = o
            .process
            .clone()
            .ok_or_else(|| Error::msg("exec: no process given"))?;
        let initial = check_exec_process(&process, o)?;
        let terminal = process.terminal() == Some(true);
        let dir = self.store.dir(&o.id);
        let parsed = &t.config;
        let seccomp = parsed
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().clone());
        let filter = self.seccomp_filter(seccomp.as_ref())?;

        // Open the namespaces now: once the init dies, its /proc entries are
        // gone (and the descriptors are what the intermediate joins).
        let stopped = || {
            bad_status(
                &o.id,
                Status::Stopped,
                "cannot exec in a stopped container: container not running",
            )
        };
        let join = match open_namespaces(st, parsed) {
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

        let cgroup = self.cgroup_of(st);
        // The intermediate enters the cgroup before it joins any namespace,
        // while it still is the runtime's user (even into a user namespace).
        let mut launch = Launch::prepare(&Setup {
            console_socket: o.console_socket.as_deref(),
            seccomp: seccomp.as_ref(),
            cgroup: cgroup.as_deref(),
            own_userns: false,
            wait_for_maps: false,
            preserve_fds: o.preserve_fds,
        })?;
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
            narrate_joins(&join, chroot.as_deref());
            launch.spawn(
                CloneFlags::empty(),
                CloneFlags::empty(),
                Some(&clone::Join {
                    namespaces: &fds,
                    chroot: chroot.as_deref(),
                }),
            )
        };
        drop(join);
        let pid = match child {
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
        launch.enter_cgroup(cgroup.as_deref())?;
        let (console_fd, seccomp_listener_fd) = launch.passed();
        let req = InitRequest {
            kind: InitKind::Exec,
            id: o.id.clone(),
            state_dir: dir.clone(),
            bundle: st.bundle.clone(),
            rootfs: st.rootfs.clone(),
            process,
            seccomp: filter,
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
            memory_policy: parsed
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.memory_policy().clone()),
            preserve_fds: o.preserve_fds,
            console_fd,
            seccomp_listener_fd,
            tty_to_parent: terminal && o.console_socket.is_none(),
            cgroup_mount: Default::default(),
            pid_handover: false,
            release_on_channel: false,
            join_cgroup: Vec::new(),
            host_pid: pid,
            init_pid: st.pid,
            annotations: st.annotations.clone(),
            fd_names: Vec::new(),
            explain: self.explain,
            trace: self.trace,
            log_level: self.log_level,
        };
        launch.send(req, &[])?;
        let pty = launch.listen(Listen {
            what: "the exec process",
            through_exec: true,
            answer: None,
        })?;
        // Exec'd: from here the process is the caller's, whatever follows.
        let (pid, pidfd) = launch.finish()?;
        if let Some(pf) = &o.pid_file {
            super::create::write_pid_file(pf, pid)?;
        }
        Ok(ExecHandle { pid, pidfd, pty })
    }
}

/// Refuse exec in a container that is not running (or created, or paused
/// with --ignore-paused), with runc's wording.
fn check_can_exec(id: &str, status: Status, ignore_paused: bool) -> Result<()> {
    match status {
        Status::Running | Status::Created => Ok(()),
        Status::Paused if ignore_paused => Ok(()),
        Status::Paused => Err(bad_status(
            id,
            status,
            "cannot exec in a paused container (use --ignore-paused to override)",
        )),
        _ => Err(bad_status(
            id,
            status,
            "cannot exec in a stopped container: container not running",
        )),
    }
}

/// The checks on the exec process and its terminal; returns
/// execCPUAffinity.initial (applied to the parent before the clone).
fn check_exec_process(process: &Process, o: &ExecOptions) -> Result<Option<String>> {
    validate_process(process)?;
    crate::spec::check_process(process)
        .map_err(|e| Error::msg(format!("exec: field process.{}: {}", e.field, e.reason)))?;
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
    Ok(initial)
}

/// Open the namespaces exec joins: only those of linux.namespaces, checked
/// to be the ones recorded at create (a record from an older runtime has
/// none: the types of config.json then, as the init is in them).
fn open_namespaces(
    st: &state::ContainerState,
    parsed: &crate::spec::Parsed,
) -> Result<Vec<(LinuxNamespaceType, PathBuf, OwnedFd)>> {
    let recorded = match &st.namespaces {
        Some(r) => r.clone(),
        None => namespaces::record(st.pid, &namespaces::types(parsed.spec.linux().as_ref()))?,
    };
    namespaces::open_recorded(st.pid, &recorded)
}

/// Narrate what the intermediate process does inside the clone: join each
/// namespace, then (without a mount namespace) chroot.
fn narrate_joins(join: &[(LinuxNamespaceType, PathBuf, OwnedFd)], chroot: Option<&std::ffi::CStr>) {
    explain::step(&catalog::EXEC_JOIN, || {
        join.iter()
            .map(|(t, p, _)| format!("{}:{}", namespaces::name(*t), p.display()))
            .collect::<Vec<_>>()
            .join(" ")
    });
    for (t, p, _) in join {
        explain::step(&catalog::NS_JOIN, || {
            format!(
                "setns({}, {})",
                p.display(),
                namespaces::flag_names(namespaces::clone_flag(*t))
            )
        });
    }
    if let Some(r) = chroot {
        explain::step(&catalog::HOST_CHROOT, || {
            format!("chroot({}); chdir(\"/\")", r.to_string_lossy())
        });
    }
}
