//! `run`: create, start and (unless --detach) wait, forwarding signals and
//! bridging the terminal; the container is deleted afterwards unless --keep.

use crate::cli::RunArgs;
use crate::report::Globals;
use sandbox::process::wait::{self, Blocked, Foreground};

pub fn run(g: &Globals, a: RunArgs) -> anyhow::Result<i32> {
    let mode = super::mode_of(&a.common)?;
    if mode == "vm" {
        return super::vm_mode::run(g, &a);
    }
    let rt = g.runtime();
    let id = a.common.id.clone();
    if a.detach {
        if a.rm {
            anyhow::bail!("--rm cannot be used with --detach: nothing would be left to delete the container when it exits");
        }
        let opts = super::create_options(&a.common, false);
        rt.create(&opts)
            .map_err(|e| anyhow::anyhow!("run failed: {e}"))?;
        if let Err(e) = rt.start(&id) {
            let _ = rt.delete(&id, true);
            return Err(anyhow::anyhow!("run failed: {e}"));
        }
        return Ok(0);
    }
    // Block the signals we forward before the child exists; become the
    // subreaper so orphans of the container come back to us.
    let _blocked = Blocked::new()?;
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let opts = super::create_options(&a.common, true);
    let h = rt
        .create(&opts)
        .map_err(|e| anyhow::anyhow!("run failed: {e}"))?;
    if let Err(e) = rt.start(&id) {
        // SAFETY: kill(2) our own child.
        unsafe { libc::kill(h.pid, libc::SIGKILL) };
        let _ = sandbox::process::clone::wait_pidfd(&h.pidfd);
        let _ = rt.delete(&id, true);
        return Err(anyhow::anyhow!("run failed: {e}"));
    }
    let status = wait::wait(Foreground {
        pid: h.pid,
        pidfd: &h.pidfd,
        forward_to: h.pid,
        pty: h.pty,
        reap_orphans: true,
    });
    if !a.keep {
        if let Err(e) = rt.delete(&id, true) {
            sandbox::logging::warn(|| format!("delete after run: {e}"));
        }
    }
    Ok(status?)
}
