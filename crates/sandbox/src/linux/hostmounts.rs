//! Mounts a container without a mount namespace leaves in the runtime's
//! mount namespace. Its init mounts under the rootfs on the host; nothing
//! unmounts them when it exits, so `delete` (or a failed `create`) does.
//! Mount ids, not paths, tell them apart: `create` records the ids under the
//! rootfs before it starts and, once set up, the ids it added. Only those are
//! detached (with their submounts), each only while it is the top mount at
//! its path, so a mount from before create, or another container's stacked
//! on the same rootfs, is never removed.

use crate::explain::{self, catalog};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a container without a mount namespace records in its state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostMounts {
    /// Ids of the mounts at or under the rootfs before create.
    pub before: Vec<u64>,
    /// Ids of the mounts create added there, once the init was set up.
    /// Until then every mount there not in `before` counts as the container's.
    #[serde(default)]
    pub created: Option<Vec<u64>>,
}

impl HostMounts {
    fn is_ours(&self, id: u64) -> bool {
        match &self.created {
            Some(c) => c.contains(&id),
            None => !self.before.contains(&id),
        }
    }
}

/// One line of /proc/self/mountinfo: the mount id and its (unescaped) mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u64,
    pub point: PathBuf,
}

/// The mounts of a mountinfo text at or under `root`, in the file's order
/// (a mount stacked on another comes after it).
pub fn under(mountinfo: &str, root: &Path) -> Vec<MountEntry> {
    super::mountinfo::parse(mountinfo)
        .into_iter()
        .filter(|m| m.point.starts_with(root))
        .map(|m| MountEntry {
            id: m.id,
            point: m.point,
        })
        .collect()
}

/// The ids of the mounts at or under `root` right now.
pub fn snapshot(root: &Path) -> Vec<u64> {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mi = super::fs::read_proc(super::mountinfo::SELF).unwrap_or_default();
    under(&mi, &root).into_iter().map(|m| m.id).collect()
}

/// The ids of the mounts under `root` that are not in `before`: what create
/// added, recorded once the init is set up.
pub fn added(root: &Path, before: &[u64]) -> Vec<u64> {
    snapshot(root)
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect()
}

/// What to unmount, in order: the container's mounts under `root`, deepest
/// first, and of mounts stacked on one point the top one first.
pub fn plan(mountinfo: &str, root: &Path, hm: &HostMounts) -> Vec<MountEntry> {
    let mut v: Vec<(usize, MountEntry)> = under(mountinfo, root)
        .into_iter()
        .filter(|m| hm.is_ours(m.id))
        .enumerate()
        .collect();
    v.sort_by(|(ia, a), (ib, b)| {
        let (da, db) = (a.point.components().count(), b.point.components().count());
        db.cmp(&da).then(ib.cmp(ia))
    });
    v.into_iter().map(|(_, m)| m).collect()
}

/// The id of the mount `p` resolves to: the top one when several are
/// stacked there (statx STATX_MNT_ID, the id of /proc/self/mountinfo).
fn mount_id_at(p: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx is plain old data; all zeroes is a valid value.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` outlives the call, which only writes into it.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            &mut st,
        )
    };
    (r == 0 && st.stx_mask & libc::STATX_MNT_ID != 0).then_some(st.stx_mnt_id)
}

/// Detach every mount the container added under `root` (see the module
/// doc). Best effort: a mount that is gone already is fine, one covered by
/// another's is left (and logged). Returns how many were detached.
pub fn cleanup(root: &Path, hm: &HostMounts) -> usize {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let read = || super::fs::read_proc(super::mountinfo::SELF).unwrap_or_default();
    let mut done = 0;
    // Detaching a mount drops the ones below it and uncovers what it hid
    // (the rbind's copies): passes until one detaches nothing.
    for _ in 0..8 {
        let todo = plan(&read(), &root, hm);
        if todo.is_empty() {
            break;
        }
        if done == 0 {
            explain::step(&catalog::DELETE_HOST_MOUNTS, || {
                format!(
                    "umount2(MNT_DETACH) {}",
                    todo.iter()
                        .map(|m| m.point.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            });
        }
        let mut pass = 0;
        for m in &todo {
            // Only while it is the top mount at its path: what covers it
            // may be someone else's. A path that became a symlink since is
            // not followed.
            if mount_id_at(&m.point) != Some(m.id) {
                continue;
            }
            let flags = nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW;
            match nix::mount::umount2(&m.point, flags) {
                Ok(()) => pass += 1,
                Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
                Err(e) => crate::logging::warn(|| {
                    format!("unmount {} (left by the container): {e}", m.point.display())
                }),
            }
        }
        done += pass;
        if pass == 0 {
            break;
        }
    }
    let left = plan(&read(), &root, hm);
    if !left.is_empty() {
        crate::logging::warn(|| {
            format!(
                "mounts the container left under {} are covered by other mounts and stay: {}",
                root.display(),
                left.iter()
                    .map(|m| m.point.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        });
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: &str = "\
22 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw
30 22 8:1 /b/rootfs /b/rootfs rw shared:1 - ext4 /dev/sda1 rw
31 30 0:5 / /b/rootfs/proc rw - proc proc rw
32 30 0:6 / /b/rootfs/dev rw - tmpfs tmpfs rw
33 32 0:7 / /b/rootfs/dev/pts rw - devpts devpts rw
34 30 0:8 / /b/rootfs/proc rw - proc proc rw
35 22 0:9 / /b/rootfs2 rw - tmpfs tmpfs rw
36 22 0:9 / /b/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn only_under_root_and_not_before() {
        let hm = HostMounts {
            before: vec![30],
            created: None,
        };
        let p = plan(MI, Path::new("/b/rootfs"), &hm);
        let pts: Vec<(u64, &str)> = p
            .iter()
            .map(|m| (m.id, m.point.to_str().unwrap()))
            .collect();
        // Deepest first; the proc stacked later (34) before the one under it.
        assert_eq!(
            pts,
            vec![
                (33, "/b/rootfs/dev/pts"),
                (34, "/b/rootfs/proc"),
                (32, "/b/rootfs/dev"),
                (31, "/b/rootfs/proc"),
            ]
        );
        // /b/rootfs2 shares a prefix of the string but is not under it.
        assert!(p.iter().all(|m| m.id != 35));
    }

    #[test]
    fn a_rootfs_bound_onto_itself_is_ours_when_new() {
        let p = plan(MI, Path::new("/b/rootfs"), &HostMounts::default());
        assert_eq!(p.last().map(|m| m.id), Some(30));
    }

    #[test]
    fn once_recorded_only_what_create_added_is_ours() {
        // 34 came later (another container on the same rootfs).
        let hm = HostMounts {
            before: vec![30],
            created: Some(vec![31, 32, 33]),
        };
        let ids: Vec<u64> = plan(MI, Path::new("/b/rootfs"), &hm)
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, vec![33, 32, 31]);
    }

    #[test]
    fn escapes_are_undone() {
        let u = under(MI, Path::new("/b/with space"));
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].id, 36);
    }
}
