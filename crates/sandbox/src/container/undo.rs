//! The undo of a create that fails: whatever backend made the container
//! (its init, or the VM monitor), the cgroup, the mounts left on the host
//! and the state directory go, so the same id can be created again at once.

use super::Runtime;
use crate::cgroups::CgroupManager;
use crate::error::Result;
use crate::explain::{self, catalog, Phase};
use crate::linux;
use crate::process::clone;
use crate::spec::Bundle;
use crate::state::{self, ContainerState, DirLock, StaleCleanup};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// Undo a failed create: kill the child, remove cgroup and state.
pub struct Cleanup<'a> {
    pub rt: &'a Runtime,
    pub id: String,
    pub dir: PathBuf,
    pub cgroup: Option<Box<dyn CgroupManager>>,
    pub child: Option<(i32, OwnedFd)>,
    /// Without a mount namespace: the rootfs and the mount ids under it
    /// before create, to detach what the init mounted there.
    pub host_mounts: Option<(PathBuf, linux::hostmounts::HostMounts)>,
    pub armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some((pid, pidfd)) = self.child.take() {
            // SAFETY: kill(2) our own child, then reap it through its pidfd.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = clone::wait_pidfd(&pidfd);
        }
        if let Some((rootfs, hm)) = &self.host_mounts {
            linux::hostmounts::cleanup(rootfs, hm);
        }
        if let Some(cg) = &self.cgroup {
            if let Err(e) = cg.destroy(true) {
                crate::logging::warn(|| format!("cleanup of {}: {e}", self.id));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = &self.rt;
    }
}

impl Runtime {
    /// The first steps every way of making a container shares (create in
    /// container or VM mode, restore): claim the state directory with
    /// `record` in `store` (opened by the caller before anything writes
    /// under the root), keep the config copy, make the cgroup and, with
    /// `limits`, apply the config's resources to it (VM mode does not: the
    /// guest enforces them, and QEMU needs more memory than the container
    /// may use). The returned [`Cleanup`]
    /// undoes all of it if a later step fails; `record` names the cgroup
    /// as made and is saved.
    pub fn claim_state<'a>(
        &'a self,
        store: &state::Store,
        bundle: &Bundle,
        record: &mut ContainerState,
        cgroup: Option<Box<dyn CgroupManager>>,
        limits: bool,
        stale: StaleCleanup<'_>,
    ) -> Result<(PathBuf, DirLock, Cleanup<'a>)> {
        let (dir, lock, mut cleanup, cgroup) =
            self.claim_dir(store, bundle, record, cgroup, stale)?;
        if let Some(cg) = cgroup {
            let _g = explain::phase(Phase::Cgroups);
            self.make_cgroup(&mut cleanup, cg, record, &dir, bundle, limits)?;
        }
        Ok((dir, lock, cleanup))
    }

    /// [`Runtime::claim_state`] up to the cgroup, which is handed back
    /// unmade: create makes it while its child execs the runtime copy,
    /// with [`Runtime::make_cgroup`] (timed by the caller).
    pub fn claim_dir<'a>(
        &'a self,
        store: &state::Store,
        bundle: &Bundle,
        record: &mut ContainerState,
        cgroup: Option<Box<dyn CgroupManager>>,
        stale: StaleCleanup<'_>,
    ) -> Result<ClaimedDir<'a>> {
        let id = record.id.clone();
        if let Some(cg) = &cgroup {
            // Claimed with the cgroup's path: a create killed before the
            // cgroup is made still names it for the delete that follows.
            record.cgroup = Some(cg.record());
        }
        let (dir, lock) = {
            let _g = explain::phase(Phase::State);
            explain::step(&catalog::STATE_CLAIM, || {
                format!("{}", self.store.dir(&id).display())
            });
            store.claim(&id, record, stale)?
        };
        let cleanup = Cleanup {
            rt: self,
            id,
            dir: dir.clone(),
            cgroup: None,
            child: None,
            host_mounts: None,
            armed: true,
        };
        // 0600: process.env may hold secrets, and the directory is 0711.
        crate::files::create_new(&dir.join(state::CONFIG_FILE), &bundle.raw, 0o600)?;
        Ok((dir, lock, cleanup, cgroup))
    }

    /// Make the claimed container's cgroup and, with `limits`, apply the
    /// config's resources to it; `cleanup` removes it if a later step fails.
    pub fn make_cgroup(
        &self,
        cleanup: &mut Cleanup<'_>,
        mut cg: Box<dyn CgroupManager>,
        record: &mut ContainerState,
        dir: &std::path::Path,
        bundle: &Bundle,
        limits: bool,
    ) -> Result<()> {
        cg.create()?;
        // The record now names the sub-cgroups that were already there
        // (never the container's): kept at once, for a delete or the
        // clean-up of a killed create. Most often there are none and the
        // record is the one claimed: it is not written again.
        let made = Some(cg.record());
        if !same_cgroup_record(&record.cgroup, &made) {
            record.cgroup = made;
            record.save(dir)?;
        }
        let cg = cleanup.cgroup.insert(cg);
        if limits {
            self.apply_resources(cg.as_ref(), bundle)?;
        }
        Ok(())
    }
}

/// What [`Runtime::claim_dir`] gives: the directory, its lock, the undo,
/// and the cgroup still to make.
pub type ClaimedDir<'a> = (
    PathBuf,
    DirLock,
    Cleanup<'a>,
    Option<Box<dyn CgroupManager>>,
);

/// Do two cgroup records say the same on disk? Compared in their encoded
/// form, which is what a delete or a killed create's clean-up reads back.
fn same_cgroup_record(
    a: &Option<crate::cgroups::CgroupRecord>,
    b: &Option<crate::cgroups::CgroupRecord>,
) -> bool {
    match (serde_json::to_vec(a), serde_json::to_vec(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
