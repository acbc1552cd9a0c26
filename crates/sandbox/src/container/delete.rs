//! delete: kill what is left, remove the cgroup, run poststop hooks and free the id.
//!
//! Only the container's processes are killed: with a pid namespace of its
//! own, its init (the kernel then kills the rest of the namespace, and no
//! process outside it is touched); without one, the processes in the
//! cgroups the container owns (not in sub-cgroups that were there before
//! create, which are not removed either).

use super::{bad_status, Runtime};
use crate::error::{Error, Result};
use crate::explain::{self, catalog, Phase};
use crate::linux::hooks::pidfd_open;
use crate::state::{self, ContainerState, Status};
use std::os::fd::AsRawFd;

impl Runtime {
    /// Delete a container. A running one needs `force`; with `force`, a
    /// container that does not exist is not an error (engines call delete twice).
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let st = match self.store.load(id) {
            Ok(s) => s,
            Err(Error::NotExist(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let _lock = match self.store.lock(id) {
            Ok(l) => l,
            Err(Error::NotExist(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let _g = explain::phase(Phase::Delete);
        // Re-read under the lock: a concurrent create may have moved on.
        let st = ContainerState::read(&self.store.dir(id)).unwrap_or(st);
        let status = self.status_of(&st);
        let private_pidns = self.private_pidns(&st);
        match status {
            Status::Stopped => {}
            Status::Created => self.kill_and_wait(&st, private_pidns),
            Status::Creating | Status::Running | Status::Paused if force => {
                self.kill_and_wait(&st, private_pidns)
            }
            _ => {
                return Err(bad_status(
                    id,
                    status,
                    &format!("cannot delete container {id} that is not stopped: {status} (use delete --force)"),
                ))
            }
        }
        self.destroy(&st, !private_pidns)
    }

    /// Does the container have a pid namespace of its own (a new one, not
    /// joined by path)? Read from its config copy; without one, no.
    fn private_pidns(&self, st: &ContainerState) -> bool {
        let cfg = self.store.dir(&st.id).join(state::CONFIG_FILE);
        let Ok(raw) = std::fs::read(&cfg) else {
            return false;
        };
        let Ok(p) = crate::spec::parse(&raw, &cfg) else {
            return false;
        };
        p.spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default()
            .iter()
            .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && n.path().is_none())
    }

    fn kill_and_wait(&self, st: &ContainerState, private_pidns: bool) {
        let cg = self.cgroup_of(st);
        if let (Some(cg), false) = (&cg, private_pidns) {
            // No pid namespace: the container's processes are those in its
            // cgroups; freeze, kill, thaw, so none forks past it.
            let _ = cg.signal_all(libc::SIGKILL);
        }
        self.kill_init(st, &|| {
            // A paused container's init acts on SIGKILL only once thawed.
            if let Some(cg) = cg.as_ref().filter(|c| c.is_frozen()) {
                let _ = cg.freeze(false);
            }
        });
    }

    /// SIGKILL the init through a pidfd, run `then` (the signal is pending),
    /// and wait (up to 10 s) for the init to exit.
    fn kill_init(&self, st: &ContainerState, then: &dyn Fn()) {
        if !st.init_alive() {
            return;
        }
        let Ok(pidfd) = pidfd_open(st.pid) else {
            return;
        };
        if !st.init_alive() {
            return;
        }
        explain::step(&catalog::DELETE_KILL, || {
            format!(
                "pidfd_send_signal(pidfd of {}, SIGKILL); poll the pidfd until it exits",
                st.pid
            )
        });
        // SAFETY: pidfd_send_signal with our pidfd and no siginfo.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        then();
        let mut p = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll one pollfd that lives for the call; up to 10 s.
        unsafe { libc::poll(&mut p, 1, 10_000) };
    }

    /// Tear down a stopped container's resources; `kill`: processes left in
    /// its cgroups are the container's (it has no pid namespace of its own).
    fn destroy(&self, st: &ContainerState, kill: bool) -> Result<()> {
        let dir = self.store.dir(&st.id);
        let mut err = None;
        if let Some(hm) = &st.host_mounts {
            crate::linux::hostmounts::cleanup(&st.rootfs, hm);
        }
        if let Some(cg) = self.cgroup_of(st) {
            if let Err(e) = cg.destroy(kill) {
                err = Some(e);
            }
        }
        let cfg = dir.join(state::CONFIG_FILE);
        if let Ok(raw) = std::fs::read(&cfg) {
            if let Ok(p) = crate::spec::parse(&raw, &cfg) {
                if let Some(list) = p.spec.hooks().as_ref().and_then(|h| h.poststop().clone()) {
                    let s = super::create::hook_state(
                        &st.id,
                        "stopped",
                        0,
                        &st.bundle,
                        &st.annotations,
                    );
                    let at = crate::linux::hooks::Inherit::runtime(&st.bundle);
                    crate::linux::hooks::run_warn("poststop", &list, &s, at);
                }
            }
        }
        if let Some(e) = err {
            return Err(e);
        }
        explain::step(&catalog::DELETE_STATE, || dir.display().to_string());
        self.store.remove(&st.id)
    }
}
