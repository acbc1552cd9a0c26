//! `resume`: thaw a paused container.

use crate::cli::IdArg;
use crate::report::Globals;

pub fn run(g: &Globals, a: IdArg) -> anyhow::Result<i32> {
    g.runtime().resume(&a.id)?;
    Ok(0)
}
