//! `resume`: thaw a paused container.

use crate::backend::Backend;
use crate::cli::IdArg;
use crate::report::Globals;

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn run(g: &Globals, a: IdArg) -> anyhow::Result<i32> {
    Backend::for_id(g, &a.id).resume(&a.id)?;
    Ok(0)
}
