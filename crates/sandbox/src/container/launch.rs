//! The one launch path of `create` and `exec`: everything between "the
//! config is checked" and "the child is set up". Both verbs open the same
//! sockets, make the same protected copy of the runtime, enter the cgroup
//! the same way, clone the child through `process::clone`, hand it an
//! [`InitRequest`] and listen to it; only what comes before the clone (a
//! namespace plan, or the namespaces of a running container) and the
//! requests the child makes on the way (hooks, a re-cloned init) differ.
//!
//! The phases are methods called in order by the verb, so each verb's order
//! stays visible where it is security-relevant: exec's intermediate joins
//! every namespace and enters the root before the child exists
//! (`clone::spawn_joined`); create enters a joined pid namespace around the
//! clone only.
//!
//! A started child is killed and reaped when the [`Launch`] is dropped
//! before [`Launch::finish`]: a failed create or exec leaves no process.

use crate::cgroups::CgroupManager;
use crate::error::{Error, Result};
use crate::explain::{self, catalog, Phase};
use crate::process::clone::{self, Join, PreExec};
use crate::process::messages::{InitRequest, ToChild, ToParent};
use crate::process::sync::Channel;
use nix::sched::CloneFlags;
use oci_spec::runtime::LinuxSeccomp;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// What a launch needs before the child exists.
pub(super) struct Setup<'a> {
    /// `--console-socket`: the pty master goes there.
    pub console_socket: Option<&'a Path>,
    /// The container's seccomp profile (its listenerPath is connected here).
    pub seccomp: Option<&'a LinuxSeccomp>,
    /// The cgroup the child enters.
    pub cgroup: Option<&'a dyn CgroupManager>,
    /// The child is born in a user namespace of its own (see
    /// [`super::cgroup_entry`]): the parent moves it into the cgroup.
    pub own_userns: bool,
    /// A new user namespace: the child waits for its id maps before exec.
    pub wait_for_maps: bool,
    /// `--preserve-fds`.
    pub preserve_fds: i32,
}

/// A request the child makes on the way to Ready, answered by the verb.
pub(super) enum Request {
    /// Move linux.netDevices in and run the prestart and createRuntime
    /// hooks (HooksDone is sent after).
    Hooks,
    /// The init re-cloned itself into the joined pid namespace: this is the
    /// container's init now (Reborn is sent back after).
    Reborn(i32),
}

/// How the parent listens to the child.
pub(super) struct Listen<'a> {
    /// The child in errors ("the container's init", "the exec process").
    pub what: &'a str,
    /// Go on after Ready until the channel closes (exec: the child's
    /// execve closes it), timing that as the exec phase.
    pub through_exec: bool,
    /// The verb's answer to [`Request`]s; without one they are ignored.
    pub answer: Option<&'a mut dyn FnMut(Request) -> Result<()>>,
}

/// One child on its way from clone to Ready.
pub(super) struct Launch {
    console: Option<OwnedFd>,
    listener: Option<OwnedFd>,
    exe: Option<OwnedFd>,
    /// v1 `tasks` files the child writes itself, and the cgroup2 directory
    /// for CLONE_INTO_CGROUP (see [`super::cgroup_entry`]).
    self_join: Vec<PathBuf>,
    into: Option<OwnedFd>,
    parent: Channel,
    child_end: Option<Channel>,
    wait_for_maps: bool,
    min_fd: RawFd,
    /// The started child: killed and reaped on drop unless finished.
    child: Option<(i32, OwnedFd)>,
    /// The numbers the console and listener descriptors have in the child.
    kept: Vec<RawFd>,
}

impl Launch {
    /// Open what the child inherits: the console socket, the seccomp
    /// listener, the protected runtime copy, its cgroup entry and the
    /// channel.
    pub fn prepare(s: &Setup<'_>) -> Result<Launch> {
        let console = match s.console_socket {
            Some(p) => Some(crate::linux::console::connect(p)?),
            None => None,
        };
        let listener = match s.seccomp.and_then(|s| s.listener_path().clone()) {
            Some(p) => Some(crate::linux::console::connect(&p).map_err(|e| {
                Error::msg(format!("linux.seccomp.listenerPath {}: {e}", p.display()))
            })?),
            None => None,
        };
        let exe = clone::protected_exe()?;
        let (self_join, into) = super::cgroup_entry(s.cgroup, s.own_userns);
        let (parent, child_end) = Channel::pair()?;
        Ok(Launch {
            console,
            listener,
            exe: Some(exe),
            self_join,
            into,
            parent,
            child_end: Some(child_end),
            wait_for_maps: s.wait_for_maps,
            min_fd: 3 + s.preserve_fds,
            child: None,
            kept: Vec::new(),
        })
    }

    /// Clone the child with `flags`, directly or (`join`) from an
    /// intermediate process inside existing namespaces; it execs the
    /// protected copy as `nk-runtime init`, and unshares `late` itself at
    /// its start (see [`PreExec::late_unshare`]). Returns its pid.
    pub fn spawn(
        &mut self,
        flags: CloneFlags,
        late: CloneFlags,
        join: Option<&Join<'_>>,
    ) -> Result<i32> {
        let keep: Vec<RawFd> = [
            self.console.as_ref().map(|c| c.as_raw_fd()),
            self.listener.as_ref().map(|l| l.as_raw_fd()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let (Some(child_end), Some(exe)) = (&self.child_end, &self.exe) else {
            return Err(Error::msg("launch: the child was already spawned"));
        };
        let pre = PreExec {
            channel: child_end.as_fd().as_raw_fd(),
            exe,
            wait_for_maps: self.wait_for_maps,
            min_fd: self.min_fd,
            keep: &keep,
            mode: "init",
            cgroup_tasks: &self.self_join,
            late_unshare: late,
        };
        let into = self.into.as_ref().map(|f| f.as_raw_fd());
        let child = match join {
            Some(j) => clone::spawn_joined(j, flags, into, &pre)?,
            None => clone::spawn(flags, into, &pre)?,
        };
        self.child_end = None;
        self.kept = child.kept;
        self.child = Some((child.pid, child.pidfd));
        Ok(child.pid)
    }

    /// The child's pid.
    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |(p, _)| *p)
    }

    /// Put the child into `cg`: it is there already when it was born in it
    /// or wrote its v1 `tasks` files itself (narrated), else the parent
    /// moves it.
    pub fn enter_cgroup(&self, cg: Option<&dyn CgroupManager>) -> Result<()> {
        let Some(cg) = cg else {
            return Ok(());
        };
        if self.self_join.is_empty() && self.into.is_none() {
            cg.add_process(self.pid())
        } else {
            explain::cgroup_join(self.into.is_some(), self.self_join.len());
            Ok(())
        }
    }

    /// Wait until a child in a new user namespace may have its id maps
    /// written: it makes itself dumpable first (until then its /proc files
    /// are root's, and a rootless parent's write fails with EACCES).
    pub fn wait_maps_ready(&mut self) -> Result<()> {
        match self.parent.recv::<ToParent>()? {
            Some((ToParent::MapsReady, _)) => Ok(()),
            Some((ToParent::Error(m), _)) => Err(Error::Child(format!(
                "unable to start container process: {m}"
            ))),
            Some((other, _)) => Err(Error::Child(format!(
                "unable to start container process: the child sent {other:?} before asking for its id maps"
            ))),
            None => {
                let st = match self.child.take() {
                    Some((_, pidfd)) => clone::wait_pidfd(&pidfd).unwrap_or(-1),
                    None => -1,
                };
                Err(Error::Child(format!(
                    "unable to start container process: the child exited before its id maps were written (status {st})"
                )))
            }
        }
    }

    /// The parent's end of the channel.
    pub fn channel(&self) -> &Channel {
        &self.parent
    }

    /// The descriptor numbers the console socket and the seccomp listener
    /// have in the child, for [`InitRequest`].
    pub fn passed(&self) -> (Option<i32>, Option<i32>) {
        let mut ki = self.kept.iter();
        let console = self.console.as_ref().and_then(|_| ki.next().copied());
        let listener = self.listener.as_ref().and_then(|_| ki.next().copied());
        (console, listener)
    }

    /// Send the request, with `fds` attached, then close what the child
    /// has its own copies of. A child that already died shows in
    /// [`Launch::listen`] (its error or EOF); any other failure to send
    /// would leave both sides waiting, and is returned.
    pub fn send(&mut self, req: InitRequest, fds: &[RawFd]) -> Result<()> {
        self.console = None;
        self.listener = None;
        let r = match self.parent.send_fds(&ToChild::Init(Box::new(req)), fds) {
            Err(e) if !super::child_gone(&e) => Err(e),
            _ => Ok(()),
        };
        // The runtime copy is closed only now, with the request on its way:
        // it is a detached mount, and closing it unmounts it, which waits
        // for an expedited RCU grace period (0.1 to 0.2 ms here). Before
        // the request, the child, by then running its copy, waited for it.
        self.exe = None;
        r
    }

    /// Relay the child's logs and steps until it is Ready (or, with
    /// `through_exec`, until it has exec'd), answering its requests. Returns
    /// the pty master the child sent, if any.
    pub fn listen(&mut self, l: Listen<'_>) -> Result<Option<OwnedFd>> {
        let Listen {
            what,
            through_exec,
            mut answer,
        } = l;
        let mut pty = None;
        let mut ready = false;
        let mut exec_phase = None; // from Ready to end-of-file: the child's execve
        loop {
            match self.parent.recv::<ToParent>()? {
                Some((ToParent::Log(r), _)) => crate::logging::emit(&r),
                Some((ToParent::Event(e), _)) => explain::deliver(e),
                Some((ToParent::Pty, mut fds)) => pty = fds.pop(),
                Some((ToParent::Hooks, _)) => {
                    if let Some(answer) = answer.as_mut() {
                        answer(Request::Hooks)?;
                        self.parent.send(&ToChild::HooksDone)?;
                    }
                }
                Some((ToParent::Reborn(new), _)) => {
                    if let Some(answer) = answer.as_mut() {
                        self.reborn(new)?;
                        answer(Request::Reborn(new))?;
                        self.parent.send(&ToChild::Reborn(new))?;
                    }
                }
                Some((ToParent::Ready, _)) => {
                    ready = true;
                    if !through_exec {
                        break;
                    }
                    exec_phase = explain::phase(Phase::Exec);
                }
                Some((ToParent::Error(m), _)) => {
                    return Err(Error::Child(format!(
                        "unable to start container process: {m}"
                    )));
                }
                Some((ToParent::MapsReady, _)) => {
                    return Err(Error::Child(format!(
                        "unable to start container process: {what} asked for id maps twice"
                    )));
                }
                None if ready => break,
                None => {
                    let st = match self.child.take() {
                        Some((_, pidfd)) => clone::wait_pidfd(&pidfd).unwrap_or(-1),
                        None => -1,
                    };
                    return Err(Error::Child(format!(
                        "unable to start container process: {what} exited during setup (status {st})"
                    )));
                }
            }
        }
        drop(exec_phase);
        Ok(pty)
    }

    /// Take over the init the first one cloned into the joined pid
    /// namespace (that one exits and is reaped here).
    fn reborn(&mut self, new: i32) -> Result<()> {
        let fd = clone::pidfd_of_child(new, self.pid(), "the container's init")?;
        if let Some((_, old_fd)) = self.child.replace((new, fd)) {
            let _ = clone::wait_pidfd(&old_fd);
        }
        Ok(())
    }

    /// `run`'s start: release an init that waits on the channel (see
    /// InitRequest::release_on_channel), do `meanwhile`, then relay its
    /// steps and errors until its execve closes the channel. An error of
    /// `meanwhile` is returned once the channel is closed.
    pub fn release(&mut self, meanwhile: impl FnOnce() -> Result<()>) -> Result<()> {
        explain::step(&catalog::BARRIER_OPEN, || {
            "send Start on the sync channel, read to end-of-file (execve closes it)".into()
        });
        let barrier = explain::phase(Phase::ExecBarrier);
        match self.parent.send(&ToChild::Start) {
            Err(e) if !super::child_gone(&e) => return Err(e),
            _ => {}
        }
        drop(barrier);
        let _g = explain::phase(Phase::Exec);
        let done = meanwhile();
        loop {
            match self.parent.recv::<ToParent>()? {
                Some((ToParent::Log(r), _)) => crate::logging::emit(&r),
                Some((ToParent::Event(e), _)) => explain::deliver(e),
                Some((ToParent::Error(m), _)) => {
                    return Err(Error::Child(format!(
                        "unable to start container process: {m}"
                    )))
                }
                Some((other, _)) => {
                    return Err(Error::Child(format!(
                        "unable to start container process: the init sent {other:?} after its start"
                    )))
                }
                None => return done,
            }
        }
    }

    /// The child is set up: keep it (no kill on drop).
    pub fn finish(&mut self) -> Result<(i32, OwnedFd)> {
        self.child
            .take()
            .ok_or_else(|| Error::msg("launch: no child was spawned"))
    }
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("child", &self.child.as_ref().map(|(pid, _)| *pid))
            .finish_non_exhaustive()
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        if let Some((pid, pidfd)) = self.child.take() {
            // Our own child, still unreaped (its pid cannot be reused yet).
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = clone::wait_pidfd(&pidfd);
        }
    }
}
