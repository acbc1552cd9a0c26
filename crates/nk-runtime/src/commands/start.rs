//! `start`: open the exec barrier; with --attach, wait and return the exit status.

use crate::backend::Backend;
use crate::cli::StartArgs;
use crate::report::Globals;

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn run(g: &Globals, a: StartArgs) -> anyhow::Result<i32> {
    Backend::for_id(g, &a.id).start(&a.id, a.attach)
}
