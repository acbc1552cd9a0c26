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
use std::os::fd::AsFd;

impl Runtime {
    /// Delete a container. A running one needs `force`; with `force`, a
    /// container that does not exist is not an error (engines call delete twice).
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        // The record is read once, under the lock, so that a concurrent
        // create or delete has finished with it (it was read before the
        // lock as well, to no end but a second read).
        let _lock = match self.store.lock(id) {
            Ok(l) => l,
            Err(Error::NotExist(_)) if force => {
                self.sweep_orphaned_cgroup(id);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let st = match self.store.load(id) {
            Ok(s) => s,
            Err(Error::NotExist(_)) if force => {
                self.sweep_orphaned_cgroup(id);
                return Ok(());
            }
            // An unreadable record (cut short by a power loss on a /run
            // that is not tmpfs, or damaged by hand) names nothing to stop:
            // as with no record, the default cgroup is swept, and the
            // directory goes.
            Err(e @ Error::CorruptState { .. }) if force => {
                crate::logging::warn(|| {
                    format!("container {id}: {e}; removing its state directory")
                });
                self.sweep_orphaned_cgroup(id);
                return self.store.remove(id);
            }
            Err(e) => return Err(e),
        };
        let _g = explain::phase(Phase::Delete);
        let status = self.status_of(&st);
        // A create killed before it saved the init's pid leaves only the
        // cgroup to find the init by: kill what it holds, pid namespace or
        // not.
        let private_pidns = self.private_pidns(&st) && st.pid > 0;
        match status {
            // A create killed after its init was parked at the barrier left
            // the record at "creating" (so: stopped) with the init alive and
            // no longer bound to die with its parent; without a cgroup to
            // sweep, only this kill stops it. A really stopped init is not
            // alive, and kill_and_wait does nothing.
            // Stopped with a record past creating: status_of found the init
            // gone just now, and a pid that is not the same process never
            // becomes it again, so it is not looked up a second time.
            Status::Stopped if st.phase != Some(state::Phase::Creating) => {
                self.kill_rest(&st, private_pidns)
            }
            Status::Stopped => self.kill_and_wait(&st, private_pidns),
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

    /// `delete --force` of an id that has no state directory: if someone
    /// removed the directory under a live container, its processes and its
    /// cgroup are still there, and nothing else could ever find them again.
    /// The cgroup at the default path (linux.cgroupsPath unset) is the
    /// only trace left: its processes are killed and it is removed. A
    /// cgroupsPath the config chose cannot be known without the record.
    fn sweep_orphaned_cgroup(&self, id: &str) {
        if self.rootless || crate::state::validate_id(id).is_err() {
            return;
        }
        let ps = crate::cgroups::PathSpec {
            cgroups_path: None,
            systemd: self.systemd_cgroup,
        };
        let Ok(cg) = crate::cgroups::new_manager(&ps, id, &Default::default()) else {
            return;
        };
        let dirs: Vec<_> = cg.dirs().into_iter().filter(|(_, d)| d.exists()).collect();
        let Some((_, first)) = dirs.first() else {
            return;
        };
        let n = cg.pids().map(|p| p.len()).unwrap_or(0);
        crate::logging::warn(|| {
            format!(
                "container {id} has no state directory in {} (was it removed?), but its cgroup {} is still there with {n} processes: killing them and removing it",
                self.store.root.display(),
                first.display()
            )
        });
        if let Err(e) = cg.destroy(true) {
            crate::logging::warn(|| format!("remove the cgroup of {id}: {e}"));
        }
    }

    /// Does the container have a pid namespace of its own (a new one, not
    /// joined by path)? As recorded at create; a record from before that
    /// was recorded is answered from its config copy (without one, no).
    fn private_pidns(&self, st: &ContainerState) -> bool {
        if let Some(p) = st.private_pidns {
            return p;
        }
        let cfg = self.store.dir(&st.id).join(state::CONFIG_FILE);
        let Ok(raw) = std::fs::read(&cfg) else {
            return false;
        };
        let Ok(p) = crate::spec::parse(&raw, &cfg) else {
            return false;
        };
        super::create::private_pidns(&p.spec)
    }

    /// What is left of a container whose init is gone: without a pid
    /// namespace, the processes still in its cgroups.
    fn kill_rest(&self, st: &ContainerState, private_pidns: bool) {
        if private_pidns {
            return;
        }
        if let Some(cg) = self.cgroup_of(st) {
            let _ = cg.signal_all(libc::SIGKILL);
        }
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
        let _ = crate::linux::syscall::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
        then();
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        // Up to 10 s.
        let _ = poll(
            &mut [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)],
            PollTimeout::from(10_000u16),
        );
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
            if let Some(h) = crate::spec::hooks(&raw) {
                if let Some(list) = h.poststop().clone() {
                    let s = state::hook_state(
                        &st.id,
                        state::OciStatus::Stopped,
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
