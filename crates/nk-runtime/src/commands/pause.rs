//! `pause`: freeze every process of the container.

use crate::cli::IdArg;
use crate::report::Globals;

pub fn run(g: &Globals, a: IdArg) -> anyhow::Result<i32> {
    g.runtime().pause(&a.id)?;
    Ok(0)
}
