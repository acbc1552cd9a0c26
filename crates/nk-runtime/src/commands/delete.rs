//! `delete`: remove a container and everything it holds.

use crate::backend::Backend;
use crate::cli::DeleteArgs;
use crate::report::Globals;

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn run(g: &Globals, a: DeleteArgs) -> anyhow::Result<i32> {
    Backend::for_id(g, &a.id).delete(&a.id, a.force)?;
    Ok(0)
}
