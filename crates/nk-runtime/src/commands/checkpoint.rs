//! `checkpoint` and `restore`: container mode through CRIU
//! (`sandbox::container` builds the requests, `sandbox::criu` speaks to
//! criu); VM mode through CRIU in the guest (`vm::checkpoint`), chosen by
//! the container's record and, for restore, by the image. Restore without
//! --detach waits for the restored container like `run`, forwards
//! signals, deletes it afterwards and exits with its status.

use crate::backend::Backend;
use crate::cli::{CheckpointArgs, CriuArgs, RestoreArgs};
use crate::report::Globals;
use sandbox::container::{CheckpointOptions, CriuFlags, RestoreOptions};
use sandbox::process::wait::{self, Blocked, Foreground};
use std::path::PathBuf;

/// runc's default image directory: ./checkpoint.
fn flags(g: &Globals, a: CriuArgs) -> anyhow::Result<CriuFlags> {
    let cwd = std::env::current_dir()?;
    let abs = |p: PathBuf| if p.is_absolute() { p } else { cwd.join(p) };
    Ok(CriuFlags {
        criu: g.criu.clone(),
        image_path: abs(a.image_path.unwrap_or_else(|| PathBuf::from("checkpoint"))),
        work_path: a.work_path.map(abs),
        tcp_established: a.tcp_established,
        ext_unix_sk: a.ext_unix_sk,
        shell_job: a.shell_job,
        file_locks: a.file_locks,
        manage_cgroups_mode: a.manage_cgroups_mode,
        empty_ns: a.empty_ns,
        auto_dedup: a.auto_dedup,
        lazy_pages: a.lazy_pages,
    })
}

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn checkpoint(g: &Globals, a: CheckpointArgs) -> anyhow::Result<i32> {
    let o = CheckpointOptions {
        flags: flags(g, a.criu)?,
        parent_path: a.parent_path,
        leave_running: a.leave_running,
        pre_dump: a.pre_dump,
        page_server: a.page_server,
    };
    Backend::for_id(g, &a.id).checkpoint(&a.id, &o)?;
    Ok(0)
}

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn restore(g: &Globals, a: RestoreArgs) -> anyhow::Result<i32> {
    let o = RestoreOptions {
        flags: flags(g, a.criu)?,
        id: a.id.clone(),
        bundle: a.bundle,
        pid_file: a.pid_file,
        console_socket: a.console_socket,
        lsm_profile: a.lsm_profile,
        lsm_mount_context: a.lsm_mount_context,
    };
    if let Backend::Vm(v) = Backend::for_restore(g, a.mode.as_deref(), &o.flags.image_path)? {
        return crate::backend::vm_restore(&v, &o, a.detach);
    }
    let rt = g.runtime();
    if a.detach {
        rt.restore(&o)?;
        return Ok(0);
    }
    // As run: the forwarded signals blocked before the init exists, and
    // orphans of the container reaped here.
    let _blocked = Blocked::new()?;
    if !a.no_subreaper {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    let r = rt.restore(&o)?;
    let status = wait::wait(Foreground {
        pid: r.pid,
        pidfd: &r.pidfd,
        pty: None,
        reap_orphans: !a.no_subreaper,
        winch_to_process: false,
    });
    if let Err(e) = rt.delete(&a.id, true) {
        sandbox::logging::warn(|| format!("delete after restore: {e}"));
    }
    Ok(status?)
}
