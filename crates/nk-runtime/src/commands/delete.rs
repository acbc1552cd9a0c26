//! `delete`: remove a container and everything it holds.

use crate::cli::DeleteArgs;
use crate::report::Globals;

pub fn run(g: &Globals, a: DeleteArgs) -> anyhow::Result<i32> {
    if super::vm_mode::is_vm(g, &a.id) {
        super::vm_mode::delete(g, &a.id, a.force)?;
        return Ok(0);
    }
    g.runtime().delete(&a.id, a.force)?;
    Ok(0)
}
