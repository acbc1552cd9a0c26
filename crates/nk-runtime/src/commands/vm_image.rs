//! `vm-image build|status|clean`: the VM-mode guest image.

use crate::cli::VmImageArgs;
use crate::report::Globals;

pub fn run(_g: &Globals, a: VmImageArgs) -> anyhow::Result<i32> {
    match a.action.as_str() {
        "build" | "status" | "clean" => anyhow::bail!(
            "vm-image {}: VM mode is not available in this build yet",
            a.action
        ),
        other => anyhow::bail!("vm-image {other:?}: use build, status or clean"),
    }
}
