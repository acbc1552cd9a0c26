//! `kill`: send a signal to the init, or with --all to every process.

use crate::cli::KillArgs;
use crate::report::Globals;

pub fn run(g: &Globals, a: KillArgs) -> anyhow::Result<i32> {
    let sig = sandbox::linux::signals::parse(&a.signal)?;
    if super::vm_mode::is_vm(g, &a.id) {
        super::vm_mode::kill(g, &a.id, sig, a.all)?;
        return Ok(0);
    }
    g.runtime().kill(&a.id, sig, a.all)?;
    Ok(0)
}
