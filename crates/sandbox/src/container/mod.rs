//! The lifecycle verbs, as the runtime's parent side runs them: create,
//! start, state, kill, delete, exec, pause and resume. Each takes a
//! [`Runtime`] (the state root and global options) and works through the
//! cgroup manager trait and the process module.

mod checkpoint;
mod create;
mod delete;
pub mod exec;
mod launch;
mod ops;
mod undo;

pub use crate::state::hook_state;
pub use checkpoint::{CheckpointOptions, CriuFlags, RestoreOptions, Restored, VM_IMAGE_RECORD};
pub use create::{write_pid_file, CreateOptions, Handle};
pub use exec::{merge_process, ExecHandle, ExecOptions, ExecTarget};
pub use undo::Cleanup;

use crate::cgroups::{self, CgroupManager};
use crate::error::{Error, Result};
use crate::state::{ContainerState, Mode, Status, Store, Summary};
use std::path::PathBuf;

/// The runtime's global settings for one command.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub store: Store,
    /// `--systemd-cgroup`: interpret cgroupsPath as slice:prefix:name.
    pub systemd_cgroup: bool,
    /// Running without root: skip cgroups unless delegated.
    pub rootless: bool,
    /// Forwarded to the child: narrate, trace, log level.
    pub explain: bool,
    pub trace: bool,
    pub log_level: crate::logging::Level,
    /// Where compiled seccomp filters are kept (`None`: compile every time,
    /// `--no-seccomp-cache`); see [`crate::linux::seccomp::cache`].
    pub seccomp_cache: Option<PathBuf>,
}

impl Runtime {
    /// A runtime on a state root.
    pub fn new(root: PathBuf) -> Runtime {
        Runtime {
            store: Store::at(&root),
            systemd_cgroup: false,
            rootless: !nix::unistd::geteuid().is_root(),
            explain: false,
            trace: false,
            log_level: crate::logging::Level::Warn,
            seccomp_cache: crate::linux::seccomp::cache::default_dir(),
        }
    }

    /// The container's seccomp filter, compiled (or taken from the cache)
    /// here in the runtime, before anything is created: the child only
    /// loads it. Timed as the host's part of the process phase.
    fn seccomp_filter(
        &self,
        s: Option<&oci_spec::runtime::LinuxSeccomp>,
    ) -> Result<Option<crate::linux::seccomp::Prepared>> {
        let Some(s) = s else {
            return Ok(None);
        };
        let _g = crate::explain::phase(crate::explain::Phase::Process);
        crate::linux::seccomp::cache::prepare(s, self.seccomp_cache.as_deref()).map(Some)
    }

    /// Load a container's record and its current status.
    pub fn load(&self, id: &str) -> Result<(ContainerState, Status)> {
        let st = self.store.load(id)?;
        let status = self.status_of(&st);
        Ok((st, status))
    }

    /// Derive the status of a record. A VM is paused inside its guest, so
    /// its directory carries a mark instead of a frozen host cgroup.
    pub fn status_of(&self, st: &ContainerState) -> Status {
        let dir = self.store.dir(&st.id);
        st.status(&dir, |s| match s.mode {
            Mode::Container => cgroups::from_record(&s.cgroup).is_some_and(|m| m.is_frozen()),
            Mode::Vm(_) => dir.join(crate::state::PAUSED_MARK).exists(),
        })
    }

    /// The cgroup manager recorded for a container.
    pub fn cgroup_of(&self, st: &ContainerState) -> Option<Box<dyn CgroupManager>> {
        cgroups::from_record(&st.cgroup)
    }

    /// What `list` shows of every container, with its status; a record
    /// that cannot be read comes with its error, under its directory's name.
    /// Only a live, started container costs more than its summary: the
    /// cgroup record, to ask whether it is frozen, is read for it alone.
    pub fn summaries(&self) -> Result<Vec<Listed>> {
        Ok(self
            .store
            .summaries()?
            .into_iter()
            .map(|(name, r)| {
                let r = r.map(|s| {
                    let dir = self.store.dir(&name);
                    let status = s.status(&dir, |s| {
                        if s.is_vm() {
                            dir.join(crate::state::PAUSED_MARK).exists()
                        } else {
                            self.store.load(&name).is_ok_and(|st| {
                                cgroups::from_record(&st.cgroup).is_some_and(|m| m.is_frozen())
                            })
                        }
                    });
                    (s, status)
                });
                (name, r)
            })
            .collect())
    }

    /// Every container with its status.
    pub fn list(&self) -> Result<Vec<(ContainerState, Status)>> {
        Ok(self
            .store
            .list()?
            .into_iter()
            .map(|s| {
                let st = self.status_of(&s);
                (s, st)
            })
            .collect())
    }
}

/// One entry of [`Runtime::summaries`]: a directory's name, and its
/// record's summary and status or why it could not be read.
pub type Listed = (String, Result<(Summary, Status)>);

/// A send on the sync channel failed because the child is gone (its error
/// or exit is then read from the channel).
fn child_gone(e: &Error) -> bool {
    matches!(
        e,
        Error::Sys {
            cause: nix::errno::Errno::EPIPE | nix::errno::Errno::ECONNRESET,
            ..
        }
    )
}

/// Refuse an operation in the wrong status, with runc's wording.
fn bad_status(id: &str, status: Status, what: &str) -> Error {
    Error::BadStatus {
        id: id.to_string(),
        status: status.to_string(),
        what: what.to_string(),
    }
}

/// How a new child enters its cgroups: the v1 `tasks` files it writes itself
/// before running any code of its own (fast: no RCU grace period in the
/// parent), and a cgroup2 directory for clone3(CLONE_INTO_CGROUP). A child
/// born in a new user namespace may not write the host's files, so it gets
/// neither and the parent moves it.
pub(crate) fn cgroup_entry(
    cg: Option<&dyn CgroupManager>,
    userns: bool,
) -> (Vec<std::path::PathBuf>, Option<std::os::fd::OwnedFd>) {
    match cg {
        Some(cg) if !userns => (cg.self_join_files(), cg.clone_into_fd()),
        _ => (Vec::new(), None),
    }
}
