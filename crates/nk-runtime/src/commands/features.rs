//! `features`: the OCI runtime features document (runtime-spec
//! features.md), built by `sandbox::features` from the runtime's own tables.

use crate::report::Globals;

pub fn run(_g: &Globals) -> anyhow::Result<i32> {
    let f = sandbox::features::to_json(&sandbox::features::features());
    println!("{}", serde_json::to_string_pretty(&f)?);
    Ok(0)
}
