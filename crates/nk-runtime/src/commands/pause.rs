//! `pause`: freeze every process of the container.

use crate::cli::IdArg;
use crate::report::Globals;

pub fn run(g: &Globals, a: IdArg) -> anyhow::Result<i32> {
    if super::vm_mode::is_vm(g, &a.id) {
        super::vm_mode::pause(g, &a.id, true)?;
        return Ok(0);
    }
    g.runtime().pause(&a.id)?;
    Ok(0)
}
