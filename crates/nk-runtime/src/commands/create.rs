//! `create`: set the container up and park its init at the exec barrier.

use crate::cli::CreateArgs;
use crate::report::Globals;

pub fn run(g: &Globals, a: CreateArgs) -> anyhow::Result<i32> {
    let mode = super::mode_of(&a.common)?;
    if mode == "vm" {
        super::vm_mode::create(g, &a.common, false)?;
        return Ok(0);
    }
    let rt = g.runtime();
    let opts = super::create_options(&a.common, false);
    rt.create(&opts)
        .map_err(|e| anyhow::anyhow!("create failed: {e}"))?;
    Ok(0)
}
