//! start, kill, pause, resume and the process list.

use super::{bad_status, Handle, Runtime};
use crate::error::{Error, Result};
use crate::explain::{self, catalog, Phase};
use crate::linux::hooks::pidfd_open;
use crate::state::{self, ContainerState, Status};
use std::os::fd::{AsFd, AsRawFd};

impl Runtime {
    /// Open the exec barrier: the init execs the container's program.
    pub fn start(&self, id: &str) -> Result<()> {
        let (st, status) = self.load(id)?;
        self.start_loaded(&st, status)
    }

    /// [`Runtime::start`] of a record already loaded (with its status),
    /// as `start --attach` has it.
    pub fn start_loaded(&self, st: &ContainerState, status: Status) -> Result<()> {
        let id = st.id.as_str();
        match status {
            Status::Created => {}
            Status::Stopped => {
                return Err(bad_status(
                    id,
                    status,
                    "cannot start a container that has stopped",
                ))
            }
            Status::Running | Status::Paused => {
                return Err(bad_status(
                    id,
                    status,
                    "cannot start an already running container",
                ))
            }
            Status::Creating => {
                return Err(bad_status(
                    id,
                    status,
                    "cannot start a container that is still being created",
                ))
            }
        }
        let dir = self.store.dir(id);
        // Poststart hooks come from the config copy, read only now.
        self.release(st, || {
            crate::spec::hooks(&std::fs::read(dir.join(state::CONFIG_FILE)).unwrap_or_default())
                .and_then(|h| h.poststart().clone())
        })
    }

    /// `run`'s start of the container its create just made: the record and
    /// the poststart hooks are those create holds in memory, not read back
    /// from the state directory. The record is saved as created while the
    /// init execs: sent first, the start does not wait for a file's write
    /// and rename.
    pub fn start_created(&self, h: &mut Handle) -> Result<()> {
        match h.barrier.as_mut() {
            Some(launch) => {
                let unsaved = h.unsaved.take();
                let record = &h.record;
                launch.release(|| match unsaved {
                    Some(f) => record.save_into(f),
                    None => Ok(()),
                })?;
                h.barrier = None;
                poststart_hooks(&h.record, h.poststart.clone());
                Ok(())
            }
            None => self.release(&h.record, || h.poststart.clone()),
        }
    }

    /// Open the exec barrier of a created container, then run its poststart
    /// hooks (`poststart`, asked for once the program runs).
    fn release(
        &self,
        st: &ContainerState,
        poststart: impl FnOnce() -> Option<Vec<oci_spec::runtime::Hook>>,
    ) -> Result<()> {
        let id = st.id.as_str();
        let dir = self.store.dir(id);
        let fifo = dir.join(state::FIFO_FILE);
        explain::step(&catalog::BARRIER_OPEN, || {
            format!(
                "open({}, O_RDONLY|O_NONBLOCK), poll, read to end-of-file",
                fifo.display()
            )
        });
        let mut g = explain::phase(Phase::ExecBarrier);
        // The pidfd first: once the fifo is open the program may run and exit
        // at once, and its pid must not be looked up after that.
        let pidfd = pidfd_open(st.pid).map_err(|_| {
            Error::msg(format!(
                "container {id}: the init process exited before start (see the container's stderr)"
            ))
        })?;
        if !st.init_alive() {
            return Err(Error::msg(format!(
                "container {id}: the init process exited before start (see the container's stderr)"
            )));
        }
        let f = nix::fcntl::open(
            &fifo,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_NONBLOCK
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| match e {
            nix::errno::Errno::ENOENT => bad_status(
                id,
                Status::Running,
                "cannot start an already running container",
            ),
            e => Error::sys(format!("open {}", fifo.display()), e),
        })?;
        // Read to end-of-file, as runc does: one byte when the init is
        // released, then its narration (with -E or --trace), then EOF when
        // its execve closes the fifo.
        let mut got: Vec<u8> = Vec::new();
        let mut exec_phase = None;
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: f.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: if got.is_empty() {
                        pidfd.as_raw_fd()
                    } else {
                        -1
                    },
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: poll over an array that lives for the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                if nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                    continue;
                }
                return Err(Error::sys("poll exec.fifo", nix::errno::Errno::last()));
            }
            if fds[0].revents != 0 {
                let mut b = [0u8; 4096];
                match nix::unistd::read(f.as_fd(), &mut b) {
                    Ok(0) if !got.is_empty() => break,
                    Ok(0) | Err(nix::errno::Errno::EAGAIN) => {}
                    Ok(n) => {
                        if got.is_empty() {
                            drop(g.take());
                            exec_phase = explain::phase(Phase::Exec);
                        }
                        got.extend_from_slice(&b[..n]);
                    }
                    Err(e) => return Err(Error::sys("read exec.fifo", e)),
                }
            }
            if got.is_empty() && fds[1].revents != 0 {
                return Err(Error::msg(format!(
                    "container {id}: the init process exited before start (see the container's stderr)"
                )));
            }
        }
        drop(exec_phase);
        for ev in explain::decode_lines(&got[1..]) {
            explain::deliver(ev);
        }
        let _ = std::fs::remove_file(&fifo);
        poststart_hooks(st, poststart());
        Ok(())
    }

    /// Send a signal to the init, or with `all` to every process of the cgroup.
    pub fn kill(&self, id: &str, sig: i32, all: bool) -> Result<()> {
        let (st, status) = self.load(id)?;
        explain::step(&catalog::KILL, || {
            let name = crate::linux::signals::name(sig);
            if all {
                format!(
                    "kill(pid, {name}) for every pid in the cgroup of init {}",
                    st.pid
                )
            } else {
                format!("pidfd_send_signal(pidfd of {}, {name})", st.pid)
            }
        });
        if all {
            let cg = self
                .cgroup_of(&st)
                .ok_or_else(|| Error::msg(format!("container {id} has no cgroup to signal")))?;
            // After the init exits, processes can be left in the cgroup (no
            // pid namespace): --all still reaches them.
            if status == Status::Stopped && cg.pids().unwrap_or_default().is_empty() {
                return Err(Error::msg("container not running"));
            }
            cg.signal_all(sig)?;
            // A cgroup removed (or emptied) under the running container no
            // longer lists its init: signal that one directly, or --all
            // would reach nothing at all.
            if status != Status::Stopped && !cg.pids().unwrap_or_default().contains(&st.pid) {
                if let Ok(pidfd) = pidfd_open(st.pid) {
                    if st.init_alive() {
                        crate::logging::warn(|| {
                            format!(
                                "container {id}: its cgroup no longer holds its init {} (was it removed?): signalling the init directly",
                                st.pid
                            )
                        });
                        let _ = crate::linux::syscall::pidfd_send_signal(pidfd.as_fd(), sig);
                    }
                }
            }
            return Ok(());
        }
        if status == Status::Stopped {
            return Err(Error::msg("container not running"));
        }
        // A pidfd makes the signal go to exactly the process we checked.
        let pidfd =
            pidfd_open(st.pid).map_err(|_| Error::msg("container not running: no such process"))?;
        if !st.init_alive() {
            return Err(Error::msg("container not running: no such process"));
        }
        if let Err(e) = crate::linux::syscall::pidfd_send_signal(pidfd.as_fd(), sig) {
            if e == nix::errno::Errno::ESRCH {
                return Err(Error::msg("container not running: no such process"));
            }
            return Err(Error::sys(
                format!(
                    "signal {} to pid {}",
                    crate::linux::signals::name(sig),
                    st.pid
                ),
                e,
            ));
        }
        if status == Status::Paused && sig == libc::SIGKILL {
            if let Some(cg) = self.cgroup_of(&st) {
                let _ = cg.freeze(false);
            }
        }
        Ok(())
    }

    /// Freeze every process of the container.
    pub fn pause(&self, id: &str) -> Result<()> {
        let (st, status) = self.load(id)?;
        if status != Status::Running && status != Status::Created {
            return Err(bad_status(id, status, "container not running"));
        }
        let cg = self.cgroup_of(&st).ok_or_else(|| {
            Error::Unsupported(format!(
                "container {id} has no cgroup; pause needs the freezer"
            ))
        })?;
        cg.freeze(true)
    }

    /// Thaw a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let (st, status) = self.load(id)?;
        if status != Status::Paused {
            return Err(bad_status(id, status, "container not paused"));
        }
        let cg = self
            .cgroup_of(&st)
            .ok_or_else(|| Error::Unsupported(format!("container {id} has no cgroup")))?;
        cg.freeze(false)
    }

    /// Pids of every process in the container.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let (st, status) = self.load(id)?;
        match self.cgroup_of(&st) {
            Some(cg) => cg.pids(),
            None if status != Status::Stopped => Ok(vec![st.pid]),
            None => Ok(Vec::new()),
        }
    }
}

/// Poststart hooks, once the program runs: a failure is a warning; the
/// container keeps running and the later hooks still run.
fn poststart_hooks(st: &ContainerState, hooks: Option<Vec<oci_spec::runtime::Hook>>) {
    if let Some(list) = hooks {
        let s = state::hook_state(
            &st.id,
            state::OciStatus::Running,
            st.pid,
            &st.bundle,
            &st.annotations,
        );
        let at = crate::linux::hooks::Inherit::runtime(&st.bundle);
        crate::linux::hooks::run_warn("poststart", &list, &s, at);
    }
}
