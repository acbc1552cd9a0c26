//! `start`: open the exec barrier; with --attach, wait and return the exit status.

use crate::cli::StartArgs;
use crate::report::Globals;

pub fn run(g: &Globals, a: StartArgs) -> anyhow::Result<i32> {
    if super::vm_mode::is_vm(g, &a.id) {
        return super::vm_mode::start_cmd(g, &a.id, a.attach);
    }
    let rt = g.runtime();
    if !a.attach {
        rt.start(&a.id)?;
        return Ok(0);
    }
    let (st, _) = rt.load(&a.id)?;
    // Open the pidfd before the program runs, so a fast exit is not missed.
    let pidfd = sandbox::linux::hooks::pidfd_open(st.pid)
        .map_err(|e| anyhow::anyhow!("pidfd_open({}): {e}", st.pid))?;
    rt.start(&a.id)?;
    Ok(sandbox::process::wait::wait_exit_of(st.pid, &pidfd)?)
}
