//! The undo of a create that fails: whatever backend made the container
//! (its init, or the VM monitor), the cgroup, the mounts left on the host
//! and the state directory go, so the same id can be created again at once.

use super::Runtime;
use crate::cgroups::CgroupManager;
use crate::linux;
use crate::process::clone;
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
