//! `kill`: send a signal to the init, or with --all to every process.

use crate::backend::Backend;
use crate::cli::KillArgs;
use crate::report::Globals;

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn run(g: &Globals, a: KillArgs) -> anyhow::Result<i32> {
    let sig = sandbox::linux::signals::parse(&a.signal)?;
    Backend::for_id(g, &a.id).kill(&a.id, sig, a.all)?;
    Ok(0)
}
