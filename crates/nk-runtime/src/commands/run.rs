//! `run`: create, start and (unless --detach) wait, forwarding signals and
//! bridging the terminal; the container is deleted afterwards unless --keep.

use crate::backend::Backend;
use crate::cli::RunArgs;
use crate::report::Globals;

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn run(g: &Globals, a: RunArgs) -> anyhow::Result<i32> {
    Backend::for_new(g, &a.common)?.run(&a)
}
