//! `create`: set the container up and park its init at the exec barrier
//! (in VM mode: boot its VM and create it in the guest).

use crate::backend::Backend;
use crate::cli::CreateArgs;
use crate::report::Globals;

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn run(g: &Globals, a: CreateArgs) -> anyhow::Result<i32> {
    Backend::for_new(g, &a.common)?.create(&a.common)?;
    Ok(0)
}
